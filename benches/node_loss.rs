//! Node loss: how long after `kill -9` of a node its instances are Running
//! on the other nodes, over repeated runs, for the default grace period
//! (5 s) and a short one (2 s).
//!
//! Each round starts a scheduler and three nodes on loopback, applies three
//! replicas of the hello example (one lands on each node), kills one node
//! and polls `berth get instances` until three instances are Running on the
//! other two. The figures go to `docs/benchmarks.md` between the
//! `node-loss` markers.
//!
//! Run: `cargo bench -p berth --bench node_loss`.

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[allow(dead_code)]
#[path = "../cli/tests/all/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{Cluster, NodeProc, Scheduler};

const ROUNDS: usize = 10;

fn running_elsewhere(cluster: &Cluster, dead: &str) -> bool {
    let running = cluster.running_nodes();
    running.len() == 3 && running.iter().all(|n| n != dead)
}

fn round(grace: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let scheduler =
        Scheduler::start_with(dir.path(), "127.0.0.1:0", &["--node-grace-seconds", grace]);
    let mut cluster = Cluster {
        nodes: (0..3)
            .map(|i| NodeProc::start(dir.path(), &scheduler, &format!("node-{i}")))
            .collect(),
        scheduler,
        dir,
    };
    let manifest = cluster.hello_manifest(3);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(3);
    // Let a heartbeat or two pass, so the kill lands at a random point of
    // the heartbeat cycle rather than right after registration.
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Instant::now();
    cluster.nodes[2].kill();
    while !running_elsewhere(&cluster, "node-2") {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "never recovered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let mut lines = Vec::new();
    for grace in ["5", "2"] {
        let mut samples: Vec<Duration> = (0..ROUNDS).map(|_| round(grace)).collect();
        samples.sort();
        let line = format!(
            "| {grace} s | {ROUNDS} | {:.2} s | {:.2} s | {:.2} s |",
            percentile(&samples, 0.5).as_secs_f64(),
            percentile(&samples, 0.99).as_secs_f64(),
            samples[0].as_secs_f64(),
        );
        println!("{line}");
        lines.push(line);
    }
    let report = format!(
        "| grace (`nodeMonitorGracePeriod`) | runs | p50 | p99 | min |\n|---:|---:|---:|---:|---:|\n{}",
        lines.join("\n")
    );
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    if let Ok(text) = std::fs::read_to_string(&doc) {
        let (open, close) = ("<!-- node-loss -->", "<!-- /node-loss -->");
        if let (Some(a), Some(b)) = (text.find(open), text.find(close)) {
            let updated = format!("{}{open}\n{report}\n{}", &text[..a], &text[b..]);
            std::fs::write(&doc, updated).unwrap();
            println!("written to {}", doc.display());
        }
    }
}
