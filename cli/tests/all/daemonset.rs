//! DaemonSets end to end: a real scheduler and nodes, one instance of the
//! hello component on every node, a node joining later getting its own,
//! each node's ingress serving its local instance under the DaemonSet's
//! name, and deletion removing them all.

use std::time::Duration;

use berth_api::daemonset::DaemonSet;
use berth_api::{Instance, Object, Phase};

use crate::harness::{Cluster, NodeProc, http_get};

const DAEMONSET: &str = "apiVersion: berth.dev/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      component: {component}
      env:
        - name: GREETING
          value: Hello from berth
      resources:
        requests: {cpu: 100m, memory: 32Mi}
";

const HOST: &str = "agent.default.berth.localhost";

/// The DaemonSet's live instances.
fn instances(cluster: &Cluster) -> Vec<Instance> {
    cluster
        .objects("instances")
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i)
                if i.metadata.deletion_timestamp.is_none()
                    && i.metadata
                        .owner_references
                        .iter()
                        .any(|r| r.kind == "DaemonSet" && r.name == "agent") =>
            {
                Some(*i)
            }
            _ => None,
        })
        .collect()
}

fn daemonset(cluster: &Cluster) -> Option<DaemonSet> {
    cluster
        .objects("daemonsets")
        .into_iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) if d.metadata.name == "agent" => Some(*d),
            _ => None,
        })
}

/// Waits until every one of `nodes` runs exactly one Running instance
/// and the DaemonSet counts them all ready.
fn wait_one_per_node(cluster: &Cluster, nodes: &[&str]) {
    let mut last = Vec::new();
    cluster.wait_for(
        &format!("one running instance on each of {nodes:?}"),
        Duration::from_secs(90),
        || {
            last = instances(cluster);
            let mut placed: Vec<String> = last
                .iter()
                .filter(|i| i.status.phase == Phase::Running)
                .filter_map(|i| i.spec.node_name.clone())
                .collect();
            placed.sort();
            let ready = daemonset(cluster).is_some_and(|d| {
                let n = nodes.len() as u64;
                d.status.desired_number_scheduled == n && d.status.number_ready == n
            });
            last.len() == nodes.len() && placed == nodes && ready
        },
    );
}

/// Asserts that `node`'s ingress answers for the DaemonSet with the
/// instance that runs on that node.
fn serves_its_own(cluster: &Cluster, node: &NodeProc, name: &str) {
    let local = instances(cluster)
        .into_iter()
        .find(|i| i.spec.node_name.as_deref() == Some(name))
        .unwrap();
    let mut answer = Err(String::new());
    cluster.wait_for(
        &format!("{name}'s ingress to serve {HOST}"),
        Duration::from_secs(30),
        || {
            answer = http_get(node.ingress, HOST);
            matches!(&answer, Ok((200, _)))
        },
    );
    let (_, body) = answer.unwrap();
    assert!(
        body.contains(&format!("(instance {}", local.metadata.name)),
        "{name} answered {body:?}, not from its own instance {}",
        local.metadata.name
    );
}

#[test]
fn daemonset_runs_on_every_node_and_follows_new_ones() {
    let mut cluster = Cluster::start(2);
    let manifest = cluster.manifest("agent", DAEMONSET);
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(out.lines().any(|l| l == "daemonset/agent created"), "{out}");

    wait_one_per_node(&cluster, &["node-0", "node-1"]);
    for (k, node) in cluster.nodes.iter().enumerate() {
        serves_its_own(&cluster, node, &format!("node-{k}"));
    }

    let node = NodeProc::start(cluster.dir.path(), &cluster.scheduler, "node-2");
    cluster.nodes.push(node);
    wait_one_per_node(&cluster, &["node-0", "node-1", "node-2"]);
    serves_its_own(&cluster, &cluster.nodes[2], "node-2");

    let table = cluster.ok(&["get", "ds"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..7],
        ["agent", "3", "3", "3", "3", "3", "<none>"],
        "{table}"
    );

    let described = cluster.ok(&["describe", "ds", "agent"]);
    for expected in [
        "Nodes:            3 desired / 3 current / 3 up-to-date / 3 available",
        "SuccessfulCreate",
        "Created instance: agent-",
    ] {
        assert!(
            described.contains(expected),
            "no {expected:?} in\n{described}"
        );
    }

    let out = cluster.ok(&["delete", "daemonset", "agent"]);
    assert_eq!(out, "DaemonSet default/agent deleted\n");
    cluster.wait_for(
        "the DaemonSet's instances to go",
        Duration::from_secs(60),
        || {
            instances(&cluster).is_empty()
                && cluster
                    .nodes
                    .iter()
                    .all(|n| matches!(http_get(n.ingress, HOST), Ok((404, _))))
        },
    );
    assert!(daemonset(&cluster).is_none());
}

#[test]
fn a_node_with_an_untolerated_taint_is_skipped_and_told() {
    let mut cluster = Cluster::start(1);
    let tainted = NodeProc::start_with(
        cluster.dir.path(),
        &cluster.scheduler,
        "tainted",
        &["--taint", "gpu=true:NoSchedule"],
    );
    cluster.nodes.push(tainted);
    cluster.wait_for("both nodes", Duration::from_secs(30), || {
        cluster.objects("nodes").len() == 2
    });
    let manifest = cluster.manifest("agent", DAEMONSET);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    wait_one_per_node(&cluster, &["node-0"]);
    cluster.wait_for("a FailedPlacement event", Duration::from_secs(30), || {
        let described = cluster.ok(&["describe", "daemonset", "agent"]);
        described.contains("FailedPlacement")
            && described.contains("tainted: node had untolerated taint {gpu: true}")
    });
}
