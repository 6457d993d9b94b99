//! The hostile-component suite: the `hostile` guest misbehaves in the way
//! its request path names (see `sdk/examples/hostile`), in namespace `evil`,
//! while the well-behaved `hello` serves in namespace `good` on the same
//! node. Each misbehaviour must end with a precise reason and status, the
//! node (this test process) must stay up, and `hello` must keep serving
//! with its latency within a generous bound of its baseline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_node::ingress::Routes;
use berth_node::runtime::{
    EngineOptions, InstanceConfig, PreparedInstance, RuntimeError, Termination, WasmRuntime,
};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Ingress, Reply, SERIAL, digest_of, hello, request, shared};

const EVIL_HOST: &str = "hostile.evil.berth.localhost";
const GOOD_HOST: &str = "hello.good.berth.localhost";

/// The hostile instance's per-request deadline: short, to keep the suite quick.
const HOSTILE_TIMEOUT: Duration = Duration::from_secs(1);

/// The hostile instance's memory limit.
const HOSTILE_MEMORY: u64 = 32 << 20;

/// How late past its deadline a request may end: the epoch tick is 10 ms,
/// the rest is room for a busy machine.
const DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// Every path of the hostile guest.
const PATHS: [&str; 9] = [
    "/ok",
    "/loop",
    "/alloc-loop",
    "/memory",
    "/recurse",
    "/panic",
    "/file",
    "/socket",
    "/stream",
];

fn hostile() -> &'static Path {
    Path::new(berth_test_programs::HOSTILE)
}

fn hostile_config() -> InstanceConfig {
    InstanceConfig {
        memory_limit_bytes: Some(HOSTILE_MEMORY),
        request_timeout: HOSTILE_TIMEOUT,
        ..InstanceConfig::default()
    }
}

/// The hostile instance in namespace `evil` and hello in `good`, behind
/// one ingress on the current runtime.
async fn serve_both(runtime: &WasmRuntime) -> (Ingress, PreparedInstance, PreparedInstance) {
    let hostile_instance = runtime
        .prepare(&digest_of(hostile()), hostile(), hostile_config())
        .await
        .unwrap();
    let hello_instance = runtime
        .prepare(
            &digest_of(hello()),
            hello(),
            InstanceConfig {
                env: vec![("BERTH_INSTANCE".to_owned(), "good-1".to_owned())],
                ..InstanceConfig::default()
            },
        )
        .await
        .unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert("evil", "hostile", "evil-1", hostile_instance.clone());
    routes.insert("good", "hello", "good-1", hello_instance.clone());
    (
        Ingress::start(routes).await,
        hostile_instance,
        hello_instance,
    )
}

/// Checks the answer to a hostile request against what its path must come to.
fn check(path: &str, reply: &Reply) {
    let body = reply.body.as_deref();
    let failed = |reason: &str| format!("component failed: {reason}\n");
    match path {
        "/ok" => assert_eq!((reply.status, body), (StatusCode::OK, Ok("ok"))),
        "/loop" | "/alloc-loop" => {
            assert_eq!(
                (reply.status, body),
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    Ok(failed("DeadlineExceeded").as_str())
                )
            );
            check_deadline(path, reply);
        }
        "/stream" => {
            // The head went out before the deadline; the body is cut there.
            assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
            assert!(reply.body.is_err(), "{path}: body ended cleanly: {reply:?}");
            check_deadline(path, reply);
        }
        "/memory" => assert_eq!(
            (reply.status, body),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Ok(failed("MemoryLimitExceeded").as_str())
            )
        ),
        "/recurse" => assert_eq!(
            (reply.status, body),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Ok(failed("StackOverflow").as_str())
            )
        ),
        "/panic" => {
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{reply:?}");
            assert!(
                body.is_ok_and(
                    |b| b.starts_with("component failed: Trap: ") && b.contains("unreachable")
                ),
                "{path}: {reply:?}"
            );
        }
        // No preopen: `/etc/passwd` does not exist in the guest's world.
        "/file" => {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {reply:?}");
            assert!(
                body.is_ok_and(|b| b.starts_with("PermissionDenied: open /etc/passwd: ")),
                "{path}: {reply:?}"
            );
        }
        // No network granted: wasi:sockets answers `access-denied`.
        "/socket" => {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {reply:?}");
            assert!(
                body.is_ok_and(
                    |b| b.starts_with("PermissionDenied: connect to 127.0.0.1:1: ")
                        && b.ends_with("(PermissionDenied)\n")
                ),
                "{path}: {reply:?}"
            );
        }
        other => panic!("no expectation for {other}"),
    }
}

fn check_deadline(path: &str, reply: &Reply) {
    assert!(
        reply.elapsed >= HOSTILE_TIMEOUT && reply.elapsed < HOSTILE_TIMEOUT + DEADLINE_SLACK,
        "{path} ended after {:?}, deadline {HOSTILE_TIMEOUT:?}",
        reply.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_end_with_precise_reasons() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let (ingress, hostile_instance, hello_instance) = serve_both(&runtime).await;

    let addr = ingress.addr;
    let tasks: Vec<_> = PATHS
        .iter()
        .map(|path| tokio::spawn(async move { (path, request(addr, Some(EVIL_HOST), path).await) }))
        .collect();
    for task in tasks {
        let (path, reply) = task.await.unwrap();
        println!(
            "{path}: {} {:?} after {:?}",
            reply.status, reply.body, reply.elapsed
        );
        check(path, &reply);
    }

    let stats = hostile_instance.stats();
    assert_eq!(stats.requests, 9, "{stats:?}");
    assert_eq!(
        stats.deadline_exceeded, 3,
        "/loop, /alloc-loop and /stream: {stats:?}"
    );
    assert_eq!(stats.memory_limit_exceeded, 1, "{stats:?}");
    assert_eq!(stats.stack_overflow, 1, "{stats:?}");
    assert_eq!(stats.traps, 1, "/panic: {stats:?}");
    assert_eq!(stats.failures(), 6, "{stats:?}");
    assert!(stats.last_termination.is_some(), "{stats:?}");

    // The node is still up: the neighbour and the hostile instance's
    // well-behaved path both answer.
    let (status, body) = ingress.get(Some(GOOD_HOST)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "Hello from berth! (instance good-1)\n")
    );
    check("/ok", &ingress.request(Some(EVIL_HOST), "/ok").await);
    assert_eq!(hello_instance.stats().failures(), 0);
    ingress.stop().await;
}

#[tokio::test]
async fn fuel_ends_a_request_when_the_engine_meters_it() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let digest = digest_of(hostile());
    let metered_config = InstanceConfig {
        fuel: Some(100_000_000),
        // Far beyond the time the fuel lasts: fuel must end `/loop`.
        request_timeout: Duration::from_secs(20),
        ..InstanceConfig::default()
    };

    let unmetered = WasmRuntime::new(data.path()).unwrap();
    let err = unmetered
        .prepare(&digest, hostile(), metered_config.clone())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, RuntimeError::FuelNotEnabled), "{err:?}");

    let runtime = WasmRuntime::with_options(data.path(), EngineOptions { fuel: true }).unwrap();
    let metered = runtime
        .prepare(&digest, hostile(), metered_config)
        .await
        .unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert("evil", "hostile", "evil-1", metered.clone());
    let ingress = Ingress::start(routes).await;

    check("/ok", &ingress.request(Some(EVIL_HOST), "/ok").await);
    let reply = ingress.request(Some(EVIL_HOST), "/loop").await;
    assert_eq!(
        (reply.status, reply.body.as_deref()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Ok("component failed: FuelExhausted\n")
        )
    );
    assert!(reply.elapsed < Duration::from_secs(10), "{reply:?}");
    let stats = metered.stats();
    assert_eq!((stats.requests, stats.fuel_exhausted), (2, 1), "{stats:?}");
    assert_eq!(stats.last_termination, Some(Termination::FuelExhausted));
    ingress.stop().await;
}

/// One keep-alive connection sending `GET /` to one host.
struct Client {
    sender: SendRequest<Empty<Bytes>>,
    host: &'static str,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, host: &'static str) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender, host }
    }

    /// Sends requests for `window`; returns each one's latency, sorted.
    async fn measure(&mut self, window: Duration, expected_body: &str) -> Vec<Duration> {
        let mut latencies = Vec::new();
        let end = Instant::now() + window;
        while Instant::now() < end {
            self.sender.ready().await.unwrap();
            let req = hyper::Request::builder()
                .uri("/")
                .header(http::header::HOST, self.host)
                .body(Empty::<Bytes>::new())
                .unwrap();
            let start = Instant::now();
            let resp = self.sender.send_request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            latencies.push(start.elapsed());
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, expected_body.as_bytes());
        }
        latencies.sort();
        latencies
    }
}

/// The `q` quantile of sorted `latencies` (nearest rank).
fn quantile(latencies: &[Duration], q: f64) -> Duration {
    let rank = (latencies.len() as f64 * q).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

/// The node runs on a runtime of its own, as in the `berth node` process;
/// the clients on another, so that measuring does not wait on the guests.
#[test]
fn neighbour_keeps_serving_while_hostile_requests_run() {
    let _serial = SERIAL.blocking_write();
    let node = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("node")
        .enable_all()
        .build()
        .unwrap();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let (ingress, hostile_instance, hello_instance) = node.block_on(async {
        let runtime = WasmRuntime::new(data.path()).unwrap();
        serve_both(&runtime).await
    });
    let addr = ingress.addr;
    let expected = "Hello from berth! (instance good-1)\n";

    let (baseline, attacked, replies) = clients.block_on(async move {
        let mut neighbour = Client::connect(addr, GOOD_HOST).await;
        neighbour
            .measure(Duration::from_millis(200), expected)
            .await;
        let baseline = neighbour.measure(Duration::from_secs(1), expected).await;

        // Attackers: one always looping, one always streaming, one cycling
        // through the quick failures, each request after the last.
        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = [
            &["/loop", "/alloc-loop"][..],
            &["/stream"][..],
            &["/memory", "/recurse", "/panic", "/file", "/socket", "/ok"][..],
        ]
        .into_iter()
        .map(|paths| {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut replies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for path in paths {
                        replies.push((*path, request(addr, Some(EVIL_HOST), path).await));
                    }
                }
                replies
            })
        })
        .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let attacked = neighbour.measure(Duration::from_secs(2), expected).await;
        stop.store(true, Ordering::Relaxed);
        let mut replies = Vec::new();
        for attacker in attackers {
            replies.extend(attacker.await.unwrap());
        }
        (baseline, attacked, replies)
    });

    for (path, reply) in &replies {
        check(path, reply);
    }
    let figures = |latencies: &[Duration]| {
        (
            quantile(latencies, 0.5),
            quantile(latencies, 0.99),
            latencies.len(),
        )
    };
    let (base_p50, base_p99, base_n) = figures(&baseline);
    let (attack_p50, attack_p99, attack_n) = figures(&attacked);
    let stats = hostile_instance.stats();
    println!(
        "neighbour latency: baseline p50 {base_p50:?} p99 {base_p99:?} ({base_n} requests); \
         under attack p50 {attack_p50:?} p99 {attack_p99:?} ({attack_n} requests, \
         {} hostile requests: {} deadline, {} memory, {} stack, {} trap)",
        replies.len(),
        stats.deadline_exceeded,
        stats.memory_limit_exceeded,
        stats.stack_overflow,
        stats.traps,
    );
    assert!(
        stats.deadline_exceeded >= 2 && stats.memory_limit_exceeded >= 1,
        "{stats:?}"
    );
    assert_eq!(hello_instance.stats().failures(), 0);
    let bound = base_p99 * 2 + Duration::from_millis(50);
    assert!(
        attack_p99 <= bound,
        "neighbour p99 {attack_p99:?} under attack exceeds {bound:?} (baseline p99 {base_p99:?})"
    );

    node.block_on(ingress.stop());
}
