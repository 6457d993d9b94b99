//! HTTP throughput: requests per second through a `berth dev` node's
//! ingress (connection handed to the namespace's sandbox, one fresh
//! instance per request) against `wasmtime serve -Scli` on the same hello
//! component, with the same load generator (`wrk`, 1 thread, 16
//! connections, 10 s) in one run on the same machine.
//!
//! Needs `wrk` on `PATH`; finds `wasmtime` in `BERTH_WASMTIME`, else on
//! `PATH` (`cargo install wasmtime-cli --version 48.0.8 --locked` builds
//! it), and measures berth alone, saying so, when it cannot. The figures go
//! to `docs/benchmarks.md` between the `throughput` markers.
//!
//! Run: `cargo bench -p berth --bench throughput`.

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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Dev, deployment, guest, record, status};

const SECONDS: u32 = 10;
const CONNECTIONS: u32 = 16;

/// Runs wrk against `url` with `host`; returns requests per second and the
/// p99 latency wrk prints.
fn wrk(url: &str, host: &str) -> (f64, String) {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            "-H",
            &format!("Host: {host}"),
            url,
        ])
        .output()
        .expect("wrk is needed: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    (rps, p99)
}

fn wasmtime() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_WASMTIME") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wasmtime"))
            .find(|p| p.exists())
    })
}

fn wait_for_200(addr: SocketAddr, host: &str) {
    let start = Instant::now();
    while status(addr, host) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{host} never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let component = guest("hello");
    let dev = Dev::start("bench-throughput");
    let manifest = dev.dir.join("hello.yaml");
    std::fs::write(&manifest, deployment("hello", "default", &component)).unwrap();
    dev.berth(&["apply", "-f", manifest.to_str().unwrap()]);
    let host = "hello.default.berth.localhost";
    wait_for_200(dev.ingress, host);
    let url = format!("http://{}/", dev.ingress);
    let _ = wrk(&url, host); // warm-up
    let (berth_rps, berth_p99) = wrk(&url, host);
    println!("berth: {berth_rps:.0} requests/s, p99 {berth_p99}");
    drop(dev);

    let report = match wasmtime() {
        None => format!(
            "berth node ingress: {berth_rps:.0} requests/s (p99 {berth_p99}); `wasmtime serve` not found (set BERTH_WASMTIME), no comparison"
        ),
        Some(wasmtime) => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let mut serve = Command::new(&wasmtime)
                .args(["serve", "-Scli", "--addr", &addr.to_string()])
                .arg(&component)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_for_200(addr, "localhost");
            let url = format!("http://{addr}/");
            let _ = wrk(&url, "localhost");
            let (serve_rps, serve_p99) = wrk(&url, "localhost");
            let _ = serve.kill();
            let _ = serve.wait();
            println!("wasmtime serve: {serve_rps:.0} requests/s, p99 {serve_p99}");
            format!(
                "hello, wrk -t1 -c{CONNECTIONS} -d{SECONDS}s: berth node ingress {berth_rps:.0} requests/s (p99 {berth_p99}), `wasmtime serve -Scli` {serve_rps:.0} requests/s (p99 {serve_p99}): ratio {:.2}",
                berth_rps / serve_rps
            )
        }
    };
    println!("{report}");
    record("throughput", &report);
}
