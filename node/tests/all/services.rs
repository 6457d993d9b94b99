//! The service router between two ingresses: a caller component on "node
//! a" reaches hello on "node b" by Service name, through the router.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use berth_api::wire::{ServiceEndpoint, ServiceRoute};
use berth_node::ingress::Routes;
use berth_node::outbound::ServiceAccess;
use berth_node::runtime::{InstanceConfig, WasmRuntime};
use berth_node::services::ServiceRouter;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::{DOMAIN, Ingress, digest_of, prepare_hello, request, shared};

/// A router for "node-a" serving on loopback, until the test ends.
async fn router() -> (Arc<ServiceRouter>, SocketAddr) {
    let router = ServiceRouter::new("node-a", DOMAIN);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::clone(&router).serve(listener, std::future::pending()));
    (router, addr)
}

fn endpoint(uid: &str, node: &str, address: SocketAddr, deployment: &str) -> ServiceEndpoint {
    ServiceEndpoint {
        uid: uid.into(),
        node: node.into(),
        address: address.to_string(),
        deployment: deployment.into(),
        peer_address: String::new(),
        labels: std::collections::BTreeMap::new(),
    }
}

fn route(name: &str, endpoints: Vec<ServiceEndpoint>) -> ServiceRoute {
    ServiceRoute {
        namespace: "default".into(),
        name: name.into(),
        endpoints,
    }
}

/// An address nothing listens on.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_component_calls_a_service_on_another_node_by_name() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    // Node b serves Deployment b: hello.
    let b_routes = Arc::new(Routes::default());
    b_routes.insert("default", "b", "u-b", prepare_hello(&runtime, "b-1").await);
    let node_b = Ingress::start(b_routes).await;
    let (router, router_addr) = router().await;
    router.update(&[
        route("b", vec![endpoint("u-b", "node-b", node_b.addr, "b")]),
        route("idle", Vec::new()),
    ]);

    // Node a serves callers of several upstreams; none may call anything
    // by its allow-list.
    let caller = Path::new(berth_test_programs::CALLER);
    let digest = digest_of(caller);
    let a_routes = Arc::new(Routes::default());
    for (deployment, upstream) in [
        ("full", "http://b.default.svc/"),
        ("short", "http://b/"),
        ("idle", "http://idle.default.svc/"),
        ("unknown", "http://nope.default.svc/"),
        ("outside", "http://b.default.berth.localhost/"),
    ] {
        let config = InstanceConfig {
            env: vec![
                ("UPSTREAM".to_owned(), upstream.to_owned()),
                ("BERTH_INSTANCE".to_owned(), format!("{deployment}-1")),
            ],
            services: Some(Arc::new(ServiceAccess {
                router: router_addr,
                namespace: "default".into(),
                caller: berth_node::services::policy::instance_header(
                    "default",
                    &std::collections::BTreeMap::new(),
                ),
            })),
            ..InstanceConfig::default()
        };
        let prepared = runtime.prepare(&digest, caller, config).await.unwrap();
        a_routes.insert("default", deployment, deployment, prepared);
    }
    let node_a = Ingress::start(a_routes).await;
    let get = async |deployment: &str| {
        let host = format!("{deployment}.default.{DOMAIN}");
        node_a.get(Some(&host)).await
    };

    let expected = "upstream 200 OK: Hi! (instance b-1)\n";
    assert_eq!(get("full").await, (StatusCode::OK, expected.to_owned()));
    assert_eq!(get("short").await, (StatusCode::OK, expected.to_owned()));
    let (_, body) = get("idle").await;
    assert_eq!(
        body,
        "upstream 503 Service Unavailable: no ready endpoint for service idle.default\n"
    );
    let (_, body) = get("unknown").await;
    assert_eq!(
        body,
        "upstream 404 Not Found: no service nope in namespace default\n"
    );
    let (status, body) = get("outside").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.starts_with("upstream call failed:"),
        "other hosts still need the allow-list: {body}"
    );
    assert_eq!(
        router.outstanding("u-b"),
        0,
        "finished calls are not counted"
    );
    node_a.stop().await;
    node_b.stop().await;
}

#[tokio::test]
async fn unreachable_nodes_are_skipped_for_idempotent_calls_only() {
    let _serial = shared().await;
    let data = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(data.path()).unwrap();
    let routes = Arc::new(Routes::default());
    routes.insert("default", "b", "u-b", prepare_hello(&runtime, "b-1").await);
    let node_b = Ingress::start(routes).await;
    let dead = dead_address().await;
    let (router, router_addr) = router().await;
    router.update(&[
        route(
            "b",
            vec![
                endpoint("u-dead", "node-c", dead, "b"),
                endpoint("u-b", "node-b", node_b.addr, "b"),
            ],
        ),
        route("gone", vec![endpoint("u-dead", "node-c", dead, "gone")]),
    ]);

    // Whichever endpoint power-of-two-choices draws first, every GET ends
    // at node b.
    for _ in 0..10 {
        let reply = request(router_addr, Some("b.default.svc"), "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body.unwrap(), "Hi! (instance b-1)\n");
    }
    let reply = request(router_addr, Some("gone.default.svc"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        reply.body.unwrap(),
        "cannot reach any endpoint of service gone.default\n"
    );

    // A POST is not sent again: it fails with the node it was sent to.
    let (status, body) = post(router_addr, "gone.default.svc").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.starts_with("call to service gone.default failed at node node-c: cannot connect to"),
        "{body}"
    );
    let reply = request(router_addr, Some("b.default.berth.localhost"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    node_b.stop().await;
}

/// POSTs a small body to the router with `Host: host`.
async fn post(router: SocketAddr, host: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(router).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/")
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
