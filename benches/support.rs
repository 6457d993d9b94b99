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
        berth_with(&self.config, args)
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

/// Resident memory of `pid` alone, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// The child processes of `pid`, whichever of its threads started them.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Resident memory of `pid` and all its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    rss_kib(pid) + children(pid).into_iter().map(tree_rss_kib).sum::<u64>()
}

/// A scheduler and one node as separate processes, killed on drop, so
/// that the node's memory can be read apart from the scheduler's.
pub struct Split {
    scheduler: Child,
    node: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ingress: SocketAddr,
}

impl Drop for Split {
    /// Stops the node as an operator would (SIGTERM), so that it stops its
    /// containers and removes its cgroups, then the scheduler.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.node.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while matches!(self.node.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for child in [&mut self.node, &mut self.scheduler] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `berth args` and returns it with the address printed after `marker`.
fn spawn_until(args: &[&str], config: &Path, marker: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(BERTH)
        .args(args)
        .env("BERTH_CONFIG", config)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("berth exited").unwrap();
        if let Some(rest) = line.split(marker).nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

impl Split {
    /// Starts `berth scheduler` and `berth node` on loopback.
    pub fn start(name: &str) -> Split {
        Split::start_with(name, &[])
    }

    /// As [`Split::start`], with extra `berth node` flags.
    pub fn start_with(name: &str, node_flags: &[&str]) -> Split {
        let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config");
        let data = dir.join("scheduler");
        let (scheduler, addr) = spawn_until(
            &[
                "scheduler",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data.to_str().unwrap(),
            ],
            &config,
            "listening on ",
        );
        let token = std::fs::read_to_string(data.join("join-token")).unwrap();
        let node_data = dir.join("node");
        let addr = addr.to_string();
        let mut node_args = vec![
            "node",
            "--join",
            &addr,
            "--token",
            token.trim(),
            "--name",
            "bench",
            "--ingress",
            "127.0.0.1:0",
            "--data",
            node_data.to_str().unwrap(),
        ];
        node_args.extend_from_slice(node_flags);
        let (node, ingress) = spawn_until(&node_args, &config, "serving http on ");
        Split {
            scheduler,
            node,
            dir,
            config,
            ingress,
        }
    }

    /// The node process id.
    pub fn node_pid(&self) -> u32 {
        self.node.id()
    }

    /// Runs `berth args` against this cluster, asserting success.
    pub fn berth(&self, args: &[&str]) -> String {
        berth_with(&self.config, args)
    }
}

fn berth_with(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BERTH)
        .args(args)
        .env("BERTH_CONFIG", config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
