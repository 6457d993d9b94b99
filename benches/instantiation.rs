//! Per-request instantiation: how long the wasm host takes to serve one
//! request in a fresh instance of the hello component (new store, instance
//! from the pre-instantiated component with the pooling allocator and
//! copy-on-write memory, the guest's handler, the whole response body),
//! measured in-process without HTTP or sockets, so that the figure is the
//! runtime's own. Also: preparing the component cold (cranelift compile)
//! and warm (compiled artifact on disk).
//!
//! 200 warm-up requests, then 5,000 one after another; p50, p99 and max.
//! The figures go to `docs/benchmarks.md` between the `instantiation`
//! markers.
//!
//! Run: `cargo bench -p berth-node --bench instantiation`.

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use berth_node::runtime::{InstanceConfig, WasmRuntime};
use http_body_util::{BodyExt as _, Empty};
use sha2::{Digest as _, Sha256};

const WARM_UP: usize = 200;
const REQUESTS: usize = 5_000;

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let wasm = Path::new(berth_test_programs::HELLO);
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(wasm).unwrap()))
    );
    let dir = tempfile::tempdir().unwrap();

    let began = Instant::now();
    let runtime = WasmRuntime::new(dir.path()).unwrap();
    runtime
        .prepare(&digest, wasm, InstanceConfig::default())
        .await
        .unwrap();
    let cold = began.elapsed();
    drop(runtime);
    let began = Instant::now();
    let runtime = WasmRuntime::new(dir.path()).unwrap();
    let instance = runtime
        .prepare(&digest, wasm, InstanceConfig::default())
        .await
        .unwrap();
    let warm = began.elapsed();

    let mut samples = Vec::with_capacity(REQUESTS);
    for i in 0..WARM_UP + REQUESTS {
        let request = hyper::Request::get("http://localhost/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let began = Instant::now();
        let response = instance.handle(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let took = began.elapsed();
        assert!(body.starts_with(b"Hello from berth"));
        if i >= WARM_UP {
            samples.push(took);
        }
    }
    samples.sort();
    let report = format!(
        "hello, {REQUESTS} requests one after another in-process: instantiate + handle + body p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; prepare cold (compile) {:.0} ms, warm (artifact on disk) {:.1} ms",
        ms(percentile(&samples, 50)),
        ms(percentile(&samples, 99)),
        ms(*samples.last().unwrap()),
        ms(cold),
        ms(warm),
    );
    println!("{report}");
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    if let Ok(text) = std::fs::read_to_string(&doc) {
        let (open, close) = ("<!-- instantiation -->", "<!-- /instantiation -->");
        if let (Some(a), Some(b)) = (text.find(open), text.find(close)) {
            std::fs::write(
                &doc,
                format!("{}{open}\n{report}\n{}", &text[..a], &text[b..]),
            )
            .unwrap();
        }
    }
}
