//! Density: how many deployed HTTP apps one node holds, and what each
//! costs in resident memory.
//!
//! Applies `BERTH_DENSITY_APPS` (default 10,000) Deployments of one
//! replica each of the hello component, in one namespace (so in one
//! sandbox), to a `berth scheduler` and one `berth node` (separate
//! processes) in batches of 500 documents; waits until every instance is
//! Running; serves one request to each of 200 apps spread over the set;
//! then reads resident memory from `/proc`: the node process with its
//! sandbox workers, before and after. The figures go to
//! `docs/benchmarks.md` between the `density` markers.
//!
//! Run: `cargo bench -p berth --bench density` (`BERTH_DENSITY_APPS=1000`
//! for a quicker run).

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Split, children, deployment, guest, record, rss_kib, status, tree_rss_kib};

const BATCH: usize = 500;

fn running(dev: &Split) -> usize {
    let text = dev.berth(&["get", "instances", "-n", "density", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"]["phase"] == "Running")
        .count()
}

fn main() {
    let apps: usize = std::env::var("BERTH_DENSITY_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let component = guest("hello");
    let dev = Split::start("bench-density");
    let namespace = dev.dir.join("namespace.yaml");
    std::fs::write(
        &namespace,
        "apiVersion: berth.dev/v1\nkind: Namespace\nmetadata:\n  name: density\n",
    )
    .unwrap();
    dev.berth(&["apply", "-f", namespace.to_str().unwrap()]);
    let before = tree_rss_kib(dev.node_pid());

    let start = Instant::now();
    for first in (0..apps).step_by(BATCH) {
        let docs: Vec<String> = (first..(first + BATCH).min(apps))
            .map(|i| deployment(&format!("app-{i}"), "density", &component))
            .collect();
        let manifest = dev.dir.join(format!("batch-{first}.yaml"));
        std::fs::write(&manifest, docs.join("---\n")).unwrap();
        dev.berth(&["apply", "-f", manifest.to_str().unwrap()]);
    }
    let applied = start.elapsed();
    let mut up = running(&dev);
    while up < apps {
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "only {up} of {apps} running after an hour"
        );
        std::thread::sleep(Duration::from_secs(2));
        up = running(&dev);
    }
    let all_running = start.elapsed();
    let step = (apps / 200).max(1);
    for i in (0..apps).step_by(step) {
        let host = format!("app-{i}.density.berth.localhost");
        assert_eq!(status(dev.ingress, &host), Some(200), "{host}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = tree_rss_kib(dev.node_pid());
    let node = rss_kib(dev.node_pid());
    let sandboxes: u64 = children(dev.node_pid()).into_iter().map(tree_rss_kib).sum();
    let grown = after.saturating_sub(before);
    let report = format!(
        "{apps} apps (one Deployment of one replica each, one namespace): applied in {:.1} s, all Running after {:.1} s, 200 of them served; node RSS {:.1} MiB (node process {:.1} MiB, sandbox {:.1} MiB), {:.1} MiB more than with no apps = {:.1} KiB per app",
        applied.as_secs_f64(),
        all_running.as_secs_f64(),
        after as f64 / 1024.0,
        node as f64 / 1024.0,
        sandboxes as f64 / 1024.0,
        grown as f64 / 1024.0,
        grown as f64 / apps as f64,
    );
    println!("{report}");
    record("density", &report);
}
