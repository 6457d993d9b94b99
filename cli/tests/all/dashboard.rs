//! The web dashboard end to end in a real browser: a scheduler started with
//! `--admin` and one node run the hello Deployment with 1 replica;
//! `tests/dashboard/scale.mjs` opens the address `berth dashboard` prints
//! in Debian's chromium (driven by playwright-core), sees 1 ready replica,
//! and, after `berth scale deployment/hello --replicas 3`, sees 3 without
//! the page reloading; its screenshot lands in
//! `target/test-artifacts/dashboard.png`.
//!
//! Needs `/usr/bin/chromium`, `node` and `npm ci --prefix tests/dashboard`.
//! Without them the test is skipped with a reason, unless
//! `BERTH_REQUIRE_DASHBOARD` is set (CI), where it fails instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Cluster, HELLO_HOST, NodeProc, Proc, Scheduler, http_get};

const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser may take to see each replica count.
const SEE_TIMEOUT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(scripts: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("node is missing (apt-get install nodejs)".into());
    }
    if !scripts.join("node_modules/playwright-core").exists() {
        return Some(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            scripts.display()
        ));
    }
    None
}

/// GETs `path` with extra header lines; returns the status and body.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Sends requests to the hello Deployment until dropped, so that the nodes
/// report a request rate.
struct Traffic {
    stop: Arc<AtomicBool>,
}

impl Traffic {
    fn start(ingress: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = http_get(ingress, HELLO_HOST);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic { stop }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The hello Deployment in the dashboard's state, read with the token.
fn hello_state(admin: SocketAddr, token: &str) -> serde_json::Value {
    let (status, body) = get(
        admin,
        "/dashboard/api/state",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    state["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "hello")
        .cloned()
        .unwrap_or_else(|| panic!("no hello in {state}"))
}

/// A scheduler with `--admin` and one node running hello with 1 replica;
/// returns the cluster, the address `berth dashboard` prints, the admin
/// listener and the token.
fn start_with_hello() -> (Cluster, String, SocketAddr, String) {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::start_with(dir.path(), "127.0.0.1:0", &["--admin", "127.0.0.1:0"]);
    let node = NodeProc::start(dir.path(), &scheduler, "node-0");
    let cluster = Cluster {
        dir,
        scheduler,
        nodes: vec![node],
    };
    let manifest = cluster.hello_manifest(1);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let url = cluster.ok(&[
        "dashboard",
        "--data",
        cluster.scheduler.data.to_str().unwrap(),
    ]);
    let url = url.trim().to_owned();
    let (admin, token) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once("/dashboard/?token="))
        .unwrap_or_else(|| panic!("unexpected dashboard address {url:?}"));
    let admin: SocketAddr = admin.parse().unwrap();
    let token = token.to_owned();
    (cluster, url, admin, token)
}

/// Reads the first `state` event of the stream; returns the response head
/// and the event's data.
fn first_streamed_state(admin: SocketAddr, token: &str) -> (String, serde_json::Value) {
    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /dashboard/api/stream HTTP/1.1\r\nHost: {admin}\r\n\
         Cookie: berth_dashboard={token}\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n")
            && let Some(data) = rest
                .split("event: state\ndata: ")
                .nth(1)
                .and_then(|d| d.split_once("\n\n"))
                .map(|(d, _)| d)
        {
            // Each event is one chunk of the chunked body, so its data
            // ends before the chunk's CRLF.
            return (head.to_owned(), serde_json::from_str(data).unwrap());
        }
        let n = stream.read(&mut buf).expect("the stream sends a state");
        assert!(n > 0, "the stream ended: {text}");
        received.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn dashboard_api_is_read_only_behind_its_token_and_streams_the_state() {
    let (_cluster, _url, admin, token) = start_with_hello();
    for path in [
        "/dashboard/",
        "/dashboard/app.js",
        "/dashboard/api/state",
        "/dashboard/api/stream",
    ] {
        assert_eq!(get(admin, path, "").0, 401, "{path} without the token");
        assert_eq!(
            get(admin, path, "Authorization: Bearer wrong\r\n").0,
            401,
            "{path} with a wrong token"
        );
    }
    assert_eq!(get(admin, "/metrics", "").0, 200, "the admin routes stay");

    let (status, page) = get(admin, &format!("/dashboard/?token={token}"), "");
    assert_eq!(status, 303, "the token is traded for a cookie: {page}");
    let (status, page) = get(
        admin,
        "/dashboard/",
        &format!("Cookie: berth_dashboard={token}\r\n"),
    );
    assert_eq!(status, 200);
    assert!(page.contains("app.js"), "{page}");

    let hello = hello_state(admin, &token);
    assert_eq!(hello["desired"], 1);

    let (head, state) = first_streamed_state(admin, &token);
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(
        state["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "hello"),
        "{state}"
    );

    let mut stream = TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /dashboard/api/state HTTP/1.1\r\nHost: {admin}\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 405"),
        "nothing is writable: {response}"
    );
}

#[test]
fn dashboard_shows_a_deployment_scale_live_in_a_browser() {
    let scripts = repo_root().join("tests/dashboard");
    if let Some(reason) = missing_prerequisite(&scripts) {
        assert!(
            std::env::var_os("BERTH_REQUIRE_DASHBOARD").is_none(),
            "BERTH_REQUIRE_DASHBOARD is set but {reason}"
        );
        eprintln!("skipping the dashboard browser test: {reason}");
        return;
    }

    let (cluster, url, admin, token) = start_with_hello();
    assert_eq!(hello_state(admin, &token)["desired"], 1);
    let traffic = Traffic::start(cluster.nodes[0].ingress);

    let screenshot = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from)
        .join("test-artifacts/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut child = Command::new("node")
        .arg(scripts.join("scale.mjs"))
        .arg(&url)
        .arg("default/hello")
        .arg(&screenshot)
        .current_dir(&scripts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().unwrap();
    let mut browser = Proc::new(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |wanted: &str| loop {
        match rx.recv_timeout(SEE_TIMEOUT) {
            Ok(line) if line == wanted => return,
            Ok(line) => eprintln!("scale.mjs: {line}"),
            Err(_) => panic!("the browser did not print {wanted:?} (see its stderr above)"),
        }
    };

    wait_for("SEEN 1");
    cluster.ok(&["scale", "deployment/hello", "--replicas", "3"]);
    wait_for("SEEN 3");
    let status = browser.wait();
    assert!(status.success(), "scale.mjs failed: {status}");

    // The request rate the nodes report reaches the view.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hello = hello_state(admin, &token);
        if hello["requestsPerSecond"].as_f64().is_some_and(|r| r > 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request rate for hello under traffic: {hello}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(traffic);

    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        screenshot.display()
    );
    eprintln!("dashboard screenshot saved to {}", screenshot.display());
}
