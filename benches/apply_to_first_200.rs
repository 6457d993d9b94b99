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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Status code of `GET /` with `Host: host`, over plain HTTP/1.1.
fn status(ingress: SocketAddr, host: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(ingress).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = root.join("target/guest/wasm32-wasip2/release/hello.wasm");
    assert!(
        component.exists(),
        "build the example first: make guest ({} missing)",
        component.display()
    );
    let dir = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    let mut child = Command::new(BERTH)
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--ingress",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.join("data"))
        .env("BERTH_CONFIG", &config)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _dev = Dev(child);
    let mut lines = BufReader::new(stdout).lines();
    let ingress: SocketAddr = loop {
        let line = lines.next().expect("berth dev exited").unwrap();
        if let Some(rest) = line.split("ingress on http://").nth(1) {
            break rest.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let name = format!("bench-{round}");
        let manifest = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      component: {}\n",
                component.display()
            ),
        )
        .unwrap();
        let host = format!("{name}.default.berth.localhost");
        let start = Instant::now();
        let out = Command::new(BERTH)
            .args(["apply", "-f"])
            .arg(&manifest)
            .env("BERTH_CONFIG", &config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        while status(ingress, &host) != Some(200) {
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
    let doc = root.join("docs/benchmarks.md");
    if let Ok(text) = std::fs::read_to_string(&doc) {
        let (open, close) = (
            "<!-- apply-to-first-200 -->",
            "<!-- /apply-to-first-200 -->",
        );
        if let (Some(a), Some(b)) = (text.find(open), text.find(close)) {
            let updated = format!("{}{open}\n{report}\n{}", &text[..a], &text[b..]);
            std::fs::write(&doc, updated).unwrap();
            println!("written to {}", doc.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
