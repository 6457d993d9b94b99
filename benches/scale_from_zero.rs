//! Scale from zero: how long a request for a Deployment an autoscaler took
//! to zero instances waits for its answer, on a warm node (the component
//! already compiled there), with a scheduler and a node as separate
//! processes on loopback.
//!
//! The Deployment (the hello example) has a HorizontalAutoscaler with
//! `minReplicas: 0` and a one-second idle period. Each of the rounds waits,
//! through the CLI only (a request would keep it awake), until the
//! Deployment is at 0 replicas and its instance is gone, then times one
//! `GET /` through the node's ingress: held there, `Wake` to the scheduler
//! over QUIC, the instance bound to the node and started, the request
//! served. The first request (cold compile) is not counted.
//!
//! Run: `cargo bench -p berth --bench scale_from_zero` (release build).
//! The figures go to `docs/benchmarks.md` between the `scale-from-zero`
//! markers when they exist.

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Split, guest, record, status};

const ROUNDS: usize = 20;
const HOST: &str = "wake.default.berth.localhost";

fn manifest(component: &std::path::Path) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: wake
spec:
  replicas: 1
  selector:
    matchLabels: {{app: wake}}
  template:
    metadata:
      labels: {{app: wake}}
    spec:
      component: {}
---
apiVersion: berth.dev/v1
kind: HorizontalAutoscaler
metadata:
  name: wake
spec:
  scaleTargetRef: {{kind: Deployment, name: wake}}
  minReplicas: 0
  maxReplicas: 1
  targetConcurrency: 10
  scaleToZeroAfterSeconds: 1
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 1}}
",
        component.display()
    )
}

/// Whether the Deployment is at zero and no instance of it is left.
fn asleep(cluster: &Split) -> bool {
    let deployment: serde_json::Value =
        serde_json::from_str(&cluster.berth(&["get", "deployment", "wake", "-o", "json"])).unwrap();
    let instances: serde_json::Value =
        serde_json::from_str(&cluster.berth(&["get", "instances", "-o", "json"])).unwrap();
    deployment["spec"]["replicas"] == 0
        && instances["items"]
            .as_array()
            .is_none_or(|items| items.is_empty())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let index = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let component = guest("hello");
    let cluster = Split::start("bench-scale-from-zero");
    let path = cluster.dir.join("wake.yaml");
    std::fs::write(&path, manifest(&component)).unwrap();
    cluster.berth(&["apply", "-f", path.to_str().unwrap()]);
    // Warm: the first instance compiles the component on the node.
    let start = Instant::now();
    while status(cluster.ingress, HOST) != Some(200) {
        assert!(start.elapsed() < Duration::from_secs(120), "never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let waiting = Instant::now();
        while !asleep(&cluster) {
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "round {round}: never scaled to zero"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Let the node's assignments catch up with the removal.
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        let answer = status(cluster.ingress, HOST);
        let took = start.elapsed();
        assert_eq!(answer, Some(200), "round {round}");
        samples.push(took);
    }
    samples.sort();
    let report = format!(
        "scale-from-zero (scheduler and node processes, warm node), {ROUNDS} rounds: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(percentile(&samples, 50)),
        ms(percentile(&samples, 99)),
        ms(samples[0]),
        ms(samples[ROUNDS - 1]),
    );
    println!("{report}");
    record("scale-from-zero", &report);
}
