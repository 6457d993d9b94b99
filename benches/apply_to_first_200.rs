//! Apply-to-first-200: how long from `berth apply` of a new Deployment until
//! the ingress answers 200 for it, on a `berth dev` cluster.
//!
//! Each of 20 rounds applies a Deployment with a new name (one replica of
//! the hello example) through the real `berth` binary, then polls the
//! ingress every 2 ms until it answers 200. The first round also compiles
//! the component, so it is reported on its own; the median covers all 20.
//! The figures go to `docs/benchmarks.md` between the
//! `apply-to-first-200` markers.
//!
//! Run: `make bench` (or `cargo bench -p berth --bench apply_to_first_200`).

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{Dev, deployment, guest, record, status};

const ROUNDS: usize = 20;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let component = guest("hello");
    let dev = Dev::start("bench-apply");
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let name = format!("bench-{round}");
        let manifest = dev.dir.join(format!("{name}.yaml"));
        std::fs::write(&manifest, deployment(&name, "default", &component)).unwrap();
        let host = format!("{name}.default.berth.localhost");
        let start = Instant::now();
        dev.berth(&["apply", "-f", manifest.to_str().unwrap()]);
        while status(dev.ingress, &host) != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} never served"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(start.elapsed());
    }
    let first = samples[0];
    let mut sorted = samples.clone();
    let median = median(&mut sorted);
    let (min, max) = (sorted[0], sorted[ROUNDS - 1]);
    let report = format!(
        "apply-to-first-200 on `berth dev`, {ROUNDS} rounds: median {:.1} ms, min {:.1} ms, max {:.1} ms, first (cold compile) {:.1} ms",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
    );
    println!("{report}");
    record("apply-to-first-200", &report);
}
