//! berth-node's integration tests: the real `hello` component compiled by
//! wasmtime and served through the ingress over loopback TCP; the
//! hostile-component suite is in [`hostile`].

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod hostile;
mod jobs;
mod lifecycle;
mod oci_image;
mod peers;
mod services;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_node::ingress::{self, Routes};
use berth_node::logs::{LogQuery, LogStore};
use berth_node::runtime::{InstanceConfig, PreparedInstance, RuntimeError, WasmRuntime};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{RwLock, RwLockReadGuard, oneshot};
use tokio::task::JoinHandle;

const DOMAIN: &str = "berth.localhost";
const HELLO_HOST: &str = "hello.default.berth.localhost";

/// Tests run in parallel, except the one that measures latency: it takes
/// this lock for writing, every other test for reading, so that no compile
/// or hostile guest of another test skews its figures.
static SERIAL: RwLock<()> = RwLock::const_new(());

async fn shared() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().await
}

fn hello() -> &'static Path {
    Path::new(berth_test_programs::HELLO)
}

fn digest_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

fn config(env: &[(&str, &str)]) -> InstanceConfig {
    InstanceConfig {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..InstanceConfig::default()
    }
}

async fn prepare_hello(runtime: &WasmRuntime, instance: &str) -> PreparedInstance {
    let hello = hello();
    runtime
        .prepare(
            &digest_of(hello),
            hello,
            config(&[("GREETING", "Hi"), ("BERTH_INSTANCE", instance)]),
        )
        .await
        .unwrap()
}

/// A running ingress on a loopback port chosen by the OS.
struct Ingress {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Ingress {
    async fn start(routes: Arc<Routes>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ingress::serve(
            listener,
            routes,
            DOMAIN.to_owned(),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }

    /// GET `/` with the given `Host` header (none if `None`); returns status and body.
    async fn get(&self, host: Option<&str>) -> (StatusCode, String) {
        let reply = self.request(host, "/").await;
        (reply.status, reply.body.unwrap())
    }

    /// GET `path` on a new connection; the body may fail (a cut stream).
    async fn request(&self, host: Option<&str>, path: &str) -> Reply {
        request(self.addr, host, path).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// GET `path` from the ingress at `addr` on a new connection; the body may
/// fail (a cut stream).
async fn request(addr: SocketAddr, host: Option<&str>, path: &str) -> Reply {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().uri(path);
    if let Some(host) = host {
        req = req.header(http::header::HOST, host);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = match resp.into_body().collect().await {
        Ok(body) => Ok(String::from_utf8(body.to_bytes().to_vec()).unwrap()),
        Err(e) => Err(e.to_string()),
    };
    Reply {
        status,
        body,
        elapsed: start.elapsed(),
    }
}

/// What a client got for one request.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    /// The body, or the error that cut it short.
    body: Result<String, String>,
    elapsed: Duration,
}

#[tokio::test]
async fn serves_hello_by_host_and_404s_unknown_hosts() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert(
        "default",
        "hello",
        "i-1",
        prepare_hello(&runtime, "i-1").await,
    );
    assert_eq!(routes.len(), 1);
    let ingress = Ingress::start(Arc::clone(&routes)).await;

    let (status, body) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, "Hi! (instance i-1)\n");

    // Port stripped, case-insensitive.
    let (status, body) = ingress
        .get(Some("Hello.DEFAULT.berth.localhost:8080"))
        .await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, "Hi! (instance i-1)\n");

    let (status, body) = ingress.get(Some("nope.default.berth.localhost")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        "no deployment serves host \"nope.default.berth.localhost\"\n"
    );

    let (status, _) = ingress.get(Some("example.com")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = ingress.get(None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, "missing host header\n");

    routes.remove("i-1");
    assert!(routes.is_empty());
    let (status, body) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        format!("no deployment serves host \"{HELLO_HOST}\"\n")
    );

    ingress.stop().await;
}

#[tokio::test]
async fn guest_output_goes_to_the_instance_log() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let logs = LogStore::new(data.path().join("logs")).unwrap();
    let prepared = runtime
        .prepare(
            &digest_of(hello()),
            hello(),
            InstanceConfig {
                log: Some(logs.open("uid-1").unwrap()),
                ..config(&[("BERTH_INSTANCE", "i-1")])
            },
        )
        .await
        .unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert("default", "hello", "uid-1", prepared);
    let ingress = Ingress::start(Arc::clone(&routes)).await;
    for _ in 0..3 {
        assert_eq!(ingress.get(Some(HELLO_HOST)).await.0, StatusCode::OK);
    }
    ingress.stop().await;

    let lines = logs.read("uid-1", &LogQuery::default()).unwrap().lines;
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        let (time, rest) = line.split_once(' ').unwrap();
        let time: jiff::Timestamp = time.parse().unwrap();
        assert!(time <= jiff::Timestamp::now());
        assert!(
            line.starts_with(&format!("{time:.9}")),
            "RFC 3339 UTC: {line}"
        );
        assert_eq!(rest, "stdout served / as i-1");
    }
    assert!(data.path().join("logs").join("uid-1.log").exists());
}

#[tokio::test]
async fn round_robins_over_a_deployments_instances() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert(
        "default",
        "hello",
        "i-a",
        prepare_hello(&runtime, "i-a").await,
    );
    routes.insert(
        "default",
        "hello",
        "i-b",
        prepare_hello(&runtime, "i-b").await,
    );
    assert_eq!(runtime.compiled_count(), 1, "one compile per digest");
    let ingress = Ingress::start(Arc::clone(&routes)).await;

    let mut seen = HashSet::new();
    for _ in 0..4 {
        let (status, body) = ingress.get(Some(HELLO_HOST)).await;
        assert_eq!(status, StatusCode::OK, "body: {body}");
        seen.insert(body);
    }
    let expected: HashSet<String> = ["Hi! (instance i-a)\n", "Hi! (instance i-b)\n"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(seen, expected);

    // Re-inserting a uid replaces it instead of adding a third instance.
    routes.insert(
        "default",
        "hello",
        "i-b",
        prepare_hello(&runtime, "i-b").await,
    );
    assert_eq!(routes.len(), 2);
    routes.remove("i-a");
    for _ in 0..2 {
        assert_eq!(
            ingress.get(Some(HELLO_HOST)).await.1,
            "Hi! (instance i-b)\n"
        );
    }

    ingress.stop().await;
}

#[tokio::test]
async fn compiled_artifact_is_reused_from_disk() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    {
        let runtime = WasmRuntime::new(data.path()).unwrap();
        prepare_hello(&runtime, "i-1").await;
        assert_eq!(runtime.compiled_count(), 1);
        // In memory too: a second prepare neither compiles nor fails.
        prepare_hello(&runtime, "i-2").await;
        assert_eq!(runtime.compiled_count(), 1);
    }
    let artifacts: Vec<PathBuf> = std::fs::read_dir(data.path().join("compiled"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0].file_name().unwrap().to_str().unwrap();
    let hex = digest_of(hello()).trim_start_matches("sha256:").to_owned();
    assert!(name.starts_with(&format!("{hex}-")), "{name}");
    assert!(name.ends_with(".cwasm"), "{name}");

    let runtime = WasmRuntime::new(data.path()).unwrap();
    let instance = prepare_hello(&runtime, "i-3").await;
    assert_eq!(
        runtime.compiled_count(),
        0,
        "loaded from disk, not compiled"
    );

    let routes = Arc::new(Routes::default());
    routes.insert("default", "hello", "i-3", instance);
    let ingress = Ingress::start(routes).await;
    let (status, body) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, "Hi! (instance i-3)\n");
    ingress.stop().await;
}

#[tokio::test]
async fn unusable_artifact_on_disk_is_recompiled() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    {
        let runtime = WasmRuntime::new(data.path()).unwrap();
        prepare_hello(&runtime, "i-1").await;
    }
    let compiled = data.path().join("compiled");
    for entry in std::fs::read_dir(&compiled).unwrap() {
        std::fs::write(entry.unwrap().path(), b"truncated").unwrap();
    }
    let runtime = WasmRuntime::new(data.path()).unwrap();
    prepare_hello(&runtime, "i-1").await;
    assert_eq!(runtime.compiled_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prepares_of_one_digest_compile_once() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let (a, b) = tokio::join!(
        prepare_hello(&runtime, "i-a"),
        prepare_hello(&runtime, "i-b")
    );
    assert_eq!(runtime.compiled_count(), 1);

    let routes = Arc::new(Routes::default());
    routes.insert("default", "hello", "i-a", a);
    routes.insert("default", "hello", "i-b", b);
    let ingress = Ingress::start(routes).await;
    let (status, _) = ingress.get(Some(HELLO_HOST)).await;
    assert_eq!(status, StatusCode::OK);
    ingress.stop().await;
}

async fn prepare_bytes(runtime: &WasmRuntime, dir: &Path, bytes: &[u8]) -> RuntimeError {
    let path = dir.join("input.wasm");
    std::fs::write(&path, bytes).unwrap();
    match runtime
        .prepare(&digest_of(&path), &path, InstanceConfig::default())
        .await
    {
        Ok(_) => panic!("prepared {bytes:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn rejects_what_is_not_an_http_component() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();

    let err = prepare_bytes(&runtime, data.path(), b"not wasm").await;
    assert!(matches!(err, RuntimeError::NotAComponent { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is not a binary wasm component"),
        "{err}"
    );

    // An empty core module.
    let err = prepare_bytes(&runtime, data.path(), b"\0asm\x01\x00\x00\x00").await;
    assert!(matches!(err, RuntimeError::NotAComponent { .. }), "{err:?}");

    // A component header followed by garbage.
    let err = prepare_bytes(&runtime, data.path(), b"\0asm\x0d\x00\x01\x00garbage").await;
    assert!(matches!(err, RuntimeError::Compile { .. }), "{err:?}");

    // `(component)`: valid, but it exports no `wasi:http/incoming-handler`.
    let err = prepare_bytes(&runtime, data.path(), b"\0asm\x0d\x00\x01\x00").await;
    assert!(
        matches!(err, RuntimeError::NotAnHttpComponent { .. }),
        "{err:?}"
    );

    let err = runtime
        .prepare("sha256:../../etc", hello(), InstanceConfig::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::InvalidDigest { .. }), "{err:?}");

    let missing = data.path().join("missing.wasm");
    let err = runtime
        .prepare(
            &format!("sha256:{}", "0".repeat(64)),
            &missing,
            InstanceConfig::default(),
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::Io { .. }), "{err:?}");
    assert_eq!(
        runtime.compiled_count(),
        1,
        "only the empty component compiled"
    );
}

#[tokio::test]
async fn memory_limit_applies_to_each_instance() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let digest = digest_of(hello());
    let limited = |limit| InstanceConfig {
        env: vec![("BERTH_INSTANCE".to_owned(), "i-1".to_owned())],
        memory_limit_bytes: Some(limit),
        ..InstanceConfig::default()
    };
    let routes = Arc::new(Routes::default());
    // Far below the initial memory of any Rust component: instantiation
    // fails, and the refused memory is the reason.
    let tiny = runtime
        .prepare(&digest, hello(), limited(64 * 1024))
        .await
        .unwrap();
    let tiny_stats = tiny.clone();
    routes.insert("default", "tiny", "i-tiny", tiny);
    let roomy = runtime
        .prepare(&digest, hello(), limited(64 * 1024 * 1024))
        .await
        .unwrap();
    routes.insert("default", "roomy", "i-roomy", roomy);
    let ingress = Ingress::start(routes).await;

    let (status, body) = ingress.get(Some("tiny.default.berth.localhost")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "component failed: MemoryLimitExceeded\n");
    let stats = tiny_stats.stats();
    assert_eq!((stats.requests, stats.memory_limit_exceeded), (1, 1));

    let (status, body) = ingress.get(Some("roomy.default.berth.localhost")).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, "Hello from berth! (instance i-1)\n");
    ingress.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert(
        "default",
        "hello",
        "i-1",
        prepare_hello(&runtime, "i-1").await,
    );
    let ingress = Ingress::start(routes).await;
    let addr = ingress.addr;

    // A client that keeps its keep-alive connection open after one request.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let client_conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/")
        .header(http::header::HOST, HELLO_HOST)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();

    // Well under the drain timeout: the idle connection is closed at once.
    tokio::time::timeout(ingress::DRAIN_TIMEOUT / 2, ingress.stop())
        .await
        .expect("ingress did not stop");
    tokio::time::timeout(ingress::DRAIN_TIMEOUT / 2, client_conn)
        .await
        .expect("server kept the idle connection open")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    drop(sender);
}

/// An HTTP server on loopback answering every request with `pong`, and
/// counting the requests that reach it.
async fn upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"pong")),
                        ))
                    }
                }),
            ));
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn outbound_http_goes_only_where_allowed() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let caller = Path::new(berth_test_programs::CALLER);
    let (upstream, hits) = upstream().await;
    let url = format!("http://{upstream}/");
    let digest = digest_of(caller);
    let prepare = |allowed: Vec<&str>| {
        let config = InstanceConfig {
            env: vec![("UPSTREAM".to_owned(), url.clone())],
            allowed_outbound_hosts: Arc::new(
                allowed
                    .into_iter()
                    .map(|a| berth_api::outbound::AllowedHost::parse(a).unwrap())
                    .collect(),
            ),
            ..InstanceConfig::default()
        };
        runtime.prepare(&digest, caller, config)
    };
    let allowed = prepare(vec![&format!("http://{upstream}")]).await.unwrap();
    let denied = prepare(vec![]).await.unwrap();
    let elsewhere = prepare(vec!["http://127.0.0.1:1"]).await.unwrap();

    let routes = Arc::new(Routes::default());
    routes.insert("default", "allowed", "u1", allowed);
    routes.insert("default", "denied", "u2", denied);
    routes.insert("default", "elsewhere", "u3", elsewhere);
    let ingress = Ingress::start(routes).await;

    let (status, body) = ingress.get(Some("allowed.default.berth.localhost")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "upstream 200 OK: pong")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    for host in [
        "denied.default.berth.localhost",
        "elsewhere.default.berth.localhost",
    ] {
        let (status, body) = ingress.get(Some(host)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{host}: {body}");
        assert!(body.starts_with("upstream call failed:"), "{host}: {body}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "denied calls never reach the upstream"
    );
    ingress.stop().await;
}
