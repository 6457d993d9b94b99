//! `berth top` end to end: after traffic, `berth top instances` shows the
//! running hello instance with its memory and a request rate, and `berth
//! top nodes` the node with its usage as a share of its allocatable.

use std::time::Duration;

use crate::harness::{Cluster, HELLO_HOST, http_get};

/// The cells of the row whose first cell is `name`, if any.
fn row(table: &str, name: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|c| name(c)))
}

/// `96Mi` or `512Ki` in bytes.
fn bytes(cell: &str) -> u64 {
    if let Some(mi) = cell.strip_suffix("Mi") {
        mi.parse::<u64>().unwrap() << 20
    } else {
        cell.strip_suffix("Ki").unwrap().parse::<u64>().unwrap() << 10
    }
}

#[test]
fn top_shows_instances_and_nodes_after_traffic() {
    let cluster = Cluster::start(1);
    let manifest = cluster.hello_manifest(1);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(1);
    let ingress = cluster.nodes[0].ingress;

    let header = cluster.ok(&["top", "instances"]);
    let header: Vec<&str> = header.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CPU(cores)", "MEMORY(bytes)", "REQUESTS/S"]
    );

    // Keep traffic flowing while waiting for a report that saw it.
    let mut instances = String::new();
    cluster.wait_for(
        "berth top instances to show hello serving",
        Duration::from_secs(30),
        || {
            for _ in 0..5 {
                let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
                assert_eq!(status, 200, "{body}");
            }
            instances = cluster.ok(&["top", "instances"]);
            row(&instances, |name| name.starts_with("hello-"))
                .is_some_and(|cells| cells[3] != "0.0")
        },
    );
    let cells = row(&instances, |name| name.starts_with("hello-")).unwrap();
    assert!(cells[1].ends_with('m'), "{instances}");
    assert!(bytes(&cells[2]) > 0, "{instances}");

    let all = cluster.ok(&["top", "instances", "-A"]);
    assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
    assert!(row(&all, |ns| ns == "default").is_some(), "{all}");
    let other = cluster.ok(&["top", "instances", "-n", "kube-system"]);
    assert_eq!(other.lines().count(), 1, "{other}");

    let nodes = cluster.ok(&["top", "nodes"]);
    let header: Vec<&str> = nodes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    );
    let cells = row(&nodes, |name| name == "node-0").unwrap_or_else(|| panic!("{nodes}"));
    assert!(cells[1].ends_with('m'), "{nodes}");
    assert!(cells[2].ends_with('%'), "{nodes}");
    assert!(bytes(&cells[3]) > 0, "{nodes}");
    let memory_percent: u64 = cells[4].trim_end_matches('%').parse().unwrap();
    assert!(memory_percent <= 100, "{nodes}");
}
