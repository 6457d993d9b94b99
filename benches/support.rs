//! What the benchmarks that drive real `berth` processes share: a `berth
//! dev` cluster on loopback, plain HTTP probes, process memory from
//! `/proc`, and writing a figure into `docs/benchmarks.md` between markers.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A guest example built by `make guest` (or any test build).
pub fn guest(name: &str) -> PathBuf {
    let path = root().join(format!("target/guest/wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.exists(),
        "build the examples first: make guest ({} missing)",
        path.display()
    );
    path
}

/// A `berth dev` process, killed on drop, with its scratch directory.
pub struct Dev {
    child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ingress: SocketAddr,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Dev {
    /// Starts `berth dev` on OS-chosen loopback ports in a fresh directory.
    pub fn start(name: &str) -> Dev {
        let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
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
        let mut lines = BufReader::new(stdout).lines();
        let ingress: SocketAddr = loop {
            let line = lines.next().expect("berth dev exited").unwrap();
            if let Some(rest) = line.split("ingress on http://").nth(1) {
                break rest.trim().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Dev {
            child,
            dir,
            config,
            ingress,
        }
    }

    /// The `berth dev` process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `berth args` against this cluster, asserting success.
    pub fn berth(&self, args: &[&str]) -> String {
        let out = Command::new(BERTH)
            .args(args)
            .env("BERTH_CONFIG", &self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A one-replica Deployment of `component` named `name`, as YAML.
pub fn deployment(name: &str, namespace: &str, component: &Path) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      component: {}\n",
        component.display()
    )
}

/// Status code of `GET /` with `Host: host`, over plain HTTP/1.1.
pub fn status(ingress: SocketAddr, host: &str) -> Option<u16> {
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

/// Resident memory of `pid` and all its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    let mut total = 0;
    let mut pending = vec![pid];
    while let Some(pid) = pending.pop() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        pending.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    total
}

/// Replaces what is between `<!-- marker -->` and `<!-- /marker -->` in
/// `docs/benchmarks.md` with `report`.
pub fn record(marker: &str, report: &str) {
    let doc = root().join("docs/benchmarks.md");
    let Ok(text) = std::fs::read_to_string(&doc) else {
        return;
    };
    let (open, close) = (format!("<!-- {marker} -->"), format!("<!-- /{marker} -->"));
    if let (Some(a), Some(b)) = (text.find(&open), text.find(&close)) {
        let updated = format!("{}{open}\n{report}\n{}", &text[..a], &text[b..]);
        std::fs::write(&doc, updated).unwrap();
        println!("written to {}", doc.display());
    }
}
