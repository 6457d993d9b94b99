//! `berth dev -f examples/hello.yaml`, the README's first command, serves
//! the example.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{HELLO_HOST, Proc, berth_bin, http_get};

#[test]
fn dev_applies_the_example_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.yaml");
    // The example names the component the guest build writes; building the
    // test fixtures built it.
    let _ = berth_test_programs::HELLO;
    let mut child = Command::new(berth_bin())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--ingress",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .args(["-f", example])
        .env("BERTH_CONFIG", dir.path().join("config"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _dev = Proc::new(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = Vec::new();
    let curl = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no curl line; output so far: {lines:?}"));
        if line.starts_with("try: curl") {
            break line;
        }
        lines.push(line);
    };
    assert!(
        lines.iter().any(|l| l == "deployment/hello created"),
        "{lines:?}"
    );
    assert!(curl.contains(&format!("Host: {HELLO_HOST}")), "{curl}");
    let ingress = curl
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap();
    let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
    assert_eq!(status, 200);
    assert!(
        body.starts_with("Hello from berth! (instance hello-"),
        "{body}"
    );
}
