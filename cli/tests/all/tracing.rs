//! OpenTelemetry export across processes: `berth apply`, the scheduler and
//! a node, each exporting spans over OTLP/HTTP to a small receiver in this
//! test, put their work for one apply into one trace, one tree.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;

use crate::harness::{Cluster, NodeProc, Scheduler, berth_bin};

/// One exported span, as the test looks at it.
#[derive(Debug, Clone)]
struct SeenSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
}

/// An OTLP/HTTP receiver: keeps the body of every `POST /v1/traces`.
struct Collector {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let kept = bodies.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let post = request.uri().path() == "/v1/traces";
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if post {
                                kept.lock().unwrap().push(body);
                            }
                            // An empty ExportTraceServiceResponse.
                            let response = Response::builder()
                                .status(if post { 200 } else { 404 })
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            bodies,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<SeenSpan> {
        let bodies = self.bodies.lock().unwrap().clone();
        let mut spans = Vec::new();
        for body in bodies {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                    .map(|v| match v {
                        any_value::Value::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        spans.push(SeenSpan {
                            service: service.clone(),
                            name: span.name,
                            trace_id: hex::encode(&span.trace_id),
                            span_id: hex::encode(&span.span_id),
                            parent_id: hex::encode(&span.parent_span_id),
                        });
                    }
                }
            }
        }
        spans
    }
}

/// The spans of the trace rooted at the CLI's `apply`, once that trace
/// holds a node's "start instance" span.
fn apply_trace(spans: &[SeenSpan]) -> Option<Vec<SeenSpan>> {
    let root = spans
        .iter()
        .find(|s| s.service == "berth-cli" && s.name == "apply")?;
    let trace: Vec<SeenSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .cloned()
        .collect();
    trace
        .iter()
        .any(|s| s.service == "berth-node" && s.name == "start instance")
        .then_some(trace)
}

#[test]
fn one_trace_spans_cli_apply_scheduler_and_node() {
    let collector = Collector::start();
    let endpoint = collector.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export batches every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::start_with_env(dir.path(), "127.0.0.1:0", &[], &env);
    let node = NodeProc::start_with_env(dir.path(), &scheduler, "node-0", &[], &env);
    let cluster = Cluster {
        dir,
        scheduler,
        nodes: vec![node],
    };
    let manifest = cluster.hello_manifest(1);
    let applied = Command::new(berth_bin())
        .args(["apply", "-f", manifest.to_str().unwrap()])
        .env("BERTH_CONFIG", &cluster.scheduler.config)
        .env_remove("BERTH_LOG")
        .envs(env)
        .output()
        .unwrap();
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    cluster.wait_ready(1);

    let deadline = Instant::now() + Duration::from_secs(60);
    let trace = loop {
        if let Some(trace) = apply_trace(&collector.spans()) {
            break trace;
        }
        assert!(
            Instant::now() < deadline,
            "no trace from apply to a node's start; spans seen: {:#?}",
            collector.spans()
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Every process has spans in the trace.
    let services: HashSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["berth-cli", "berth-scheduler", "berth-node"] {
        assert!(
            services.contains(service),
            "no {service} span in {trace:#?}"
        );
    }
    // One tree: one root (the CLI's apply), and every other span's parent
    // is a span of the trace.
    let ids: HashMap<&str, &SeenSpan> = trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let roots: Vec<&SeenSpan> = trace.iter().filter(|s| s.parent_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "roots: {roots:#?}");
    assert_eq!(
        (roots[0].service.as_str(), roots[0].name.as_str()),
        ("berth-cli", "apply")
    );
    for span in &trace {
        if !span.parent_id.is_empty() {
            assert!(
                ids.contains_key(span.parent_id.as_str()),
                "{span:?} has a parent outside the trace"
            );
        }
    }
    // The links cross processes in order: CLI -> scheduler -> node.
    let start = trace.iter().find(|s| s.name == "start instance").unwrap();
    let handler = ids[start.parent_id.as_str()];
    assert_eq!(
        (handler.service.as_str(), handler.name.as_str()),
        ("berth-scheduler", "handle request"),
        "the node's start is not a child of the scheduler's handler"
    );
    let caller = ids[handler.parent_id.as_str()];
    assert_eq!(
        (caller.service.as_str(), caller.name.as_str()),
        ("berth-cli", "apply")
    );

    // The ingress (in the node's sandbox worker) continues a caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (status, _) = traced_get(
        cluster.nodes[0].ingress,
        "hello.default.berth.localhost",
        &format!("00-{caller_trace}-{caller_span}-01"),
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !collector.spans().iter().any(|s| {
        s.service == "berth-node"
            && s.name == "ingress request"
            && s.trace_id == caller_trace
            && s.parent_id == caller_span
    }) {
        assert!(
            Instant::now() < deadline,
            "no ingress span continues the request's traceparent"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A component's outbound call carries the trace on: the caller
    // component fetches a server here that answers with the traceparent
    // it received.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{BufRead as _, Write as _};
        for stream in echo.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut seen = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("traceparent:") {
                    seen = value.trim().to_owned();
                }
                line.clear();
            }
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{seen}",
                seen.len()
            );
        }
    });
    let caller = format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: caller
spec:
  replicas: 1
  selector:
    matchLabels: {{app: caller}}
  template:
    metadata:
      labels: {{app: caller}}
    spec:
      component: {}
      env:
        - {{name: UPSTREAM, value: \"http://{echo_addr}/\"}}
      allowedOutboundHosts: [\"http://{echo_addr}\"]
",
        berth_test_programs::CALLER
    );
    let path = cluster.manifest("caller.yaml", &caller);
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (status, body) = traced_get(
            cluster.nodes[0].ingress,
            "caller.default.berth.localhost",
            &traceparent,
        );
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the caller never answered: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let sent = body
        .strip_prefix("upstream 200 OK: ")
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        sent.starts_with(&format!("00-{caller_trace}-")),
        "the outbound call is in the caller's trace: {sent}"
    );
    assert!(
        !sent.contains(caller_span),
        "its parent is the node's span, not the caller's: {sent}"
    );
}

/// `GET /` with `Host: host` and a `traceparent` header; the status and body.
fn traced_get(ingress: SocketAddr, host: &str, traceparent: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(ingress).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/")
            .header("host", host)
            .header("traceparent", traceparent)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .expect("the ingress answers in time")
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}
