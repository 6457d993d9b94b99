//! Node-to-node forwarding: a router on "node-a" reaches hello on "node-b"
//! over QUIC, even though node b's ingress address is unreachable; only
//! node certificates of the cluster CA pass the peer listener.

use std::sync::Arc;
use std::time::Duration;

use berth_api::quic::{self, Identity};
use berth_api::wire::{ServiceEndpoint, ServiceRoute};
use berth_node::ingress::Routes;
use berth_node::metrics::{CompileCounts, Metrics};
use berth_node::runtime::WasmRuntime;
use berth_node::services::ServiceRouter;
use berth_node::services::forward::Transport;
use berth_node::services::peer::Peers;
use berth_scheduler::pki::{Authority, Subject};
use http::StatusCode;
use tokio::net::TcpListener;

use crate::{DOMAIN, Ingress, prepare_hello, request, shared};

/// Node b: hello behind its ingress, and its peer listener relaying to it.
struct NodeB {
    ingress: Ingress,
    peers: Arc<Peers>,
}

async fn node_b(authority: &Authority, runtime: &WasmRuntime) -> NodeB {
    let routes = Arc::new(Routes::default());
    routes.insert("default", "b", "u-b", prepare_hello(runtime, "b-1").await);
    let ingress = Ingress::start(routes).await;
    let identity = authority.issue_node("node-b").unwrap();
    assert!(quic::serves_peers(&identity, "node-b").unwrap());
    let peers = Arc::new(
        Peers::listen(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            authority.ca_pem(),
        )
        .unwrap(),
    );
    tokio::spawn(Arc::clone(&peers).serve(ingress.addr, std::future::pending()));
    NodeB { ingress, peers }
}

/// A router for "node-a" calling its peers with `identity`.
async fn router_with(
    identity: &Identity,
    ca_pem: &str,
) -> (Arc<ServiceRouter>, std::net::SocketAddr, Arc<Metrics>) {
    let router = ServiceRouter::new("node-a", DOMAIN);
    let peers = Peers::client_only("127.0.0.1:0".parse().unwrap(), identity, ca_pem).unwrap();
    router.use_peers(Arc::new(peers));
    let metrics = Arc::new(Metrics::new(CompileCounts::default));
    router.count_in(Arc::clone(&metrics));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Arc::clone(&router).serve(listener, std::future::pending()));
    (router, addr, metrics)
}

/// Service `b` with one endpoint on node `node` whose ingress is `dead`
/// (nothing listens there) and whose peer listener is `peer`.
fn route_to(node: &str, dead: std::net::SocketAddr, peer: std::net::SocketAddr) -> ServiceRoute {
    ServiceRoute {
        namespace: "default".into(),
        name: "b".into(),
        endpoints: vec![ServiceEndpoint {
            uid: "u-b".into(),
            node: node.into(),
            address: dead.to_string(),
            deployment: "b".into(),
            peer_address: peer.to_string(),
        }],
    }
}

async fn dead_address() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn calls_to_another_node_travel_over_quic() {
    let _serial = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::load_or_create(dir.path()).unwrap();
    let runtime = WasmRuntime::new(dir.path()).unwrap();
    let b = node_b(&authority, &runtime).await;
    let peer = b.peers.listen_addr().unwrap();
    let identity = authority.issue_node("node-a").unwrap();
    let (router, router_addr, metrics) = router_with(&identity, authority.ca_pem()).await;
    let dead = dead_address().await;
    router.update(&[route_to("node-b", dead, peer)]);

    for _ in 0..5 {
        let reply = request(router_addr, Some("b.default.svc"), "/").await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body.unwrap(), "Hi! (instance b-1)\n");
    }
    let text = metrics.encode();
    assert!(
        text.contains("berth_node_service_forwards_total{transport=\"quic\"} 5"),
        "{text}"
    );
    let endpoint = &route_to("node-b", dead, peer).endpoints[0];
    assert_eq!(router.transport(endpoint), Transport::Quic);

    // The peer is verified by name: node b's listener is not node c.
    router.update(&[route_to("node-c", dead, peer)]);
    let reply = request(router_addr, Some("b.default.svc"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{:?}", reply.body);
    b.ingress.stop().await;
}

#[tokio::test]
async fn the_peer_listener_refuses_user_certificates() {
    let _serial = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::load_or_create(dir.path()).unwrap();
    let runtime = WasmRuntime::new(dir.path()).unwrap();
    let b = node_b(&authority, &runtime).await;
    let peer = b.peers.listen_addr().unwrap();

    // A user's certificate, signed by the same CA.
    let user = authority
        .issue_client(&Subject::User("alice".into()))
        .unwrap();
    assert!(!quic::serves_peers(&user, "alice").unwrap());
    let (router, router_addr, _) = router_with(&user, authority.ca_pem()).await;
    let dead = dead_address().await;
    router.update(&[route_to("node-b", dead, peer)]);
    let reply = request(router_addr, Some("b.default.svc"), "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{:?}", reply.body);

    // Directly: the handshake fails, or the listener closes the connection
    // before it carries anything.
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = quic::peer_client_config(&user, authority.ca_pem()).unwrap();
    let name = quic::peer_server_name("node-b");
    let refused = async {
        let connection = match endpoint.connect_with(config, peer, &name).unwrap().await {
            Ok(connection) => connection,
            Err(e) => return e.to_string(),
        };
        let (mut send, mut recv) = match connection.open_bi().await {
            Ok(stream) => stream,
            Err(e) => return e.to_string(),
        };
        let _ = send
            .write_all(b"GET / HTTP/1.1\r\nhost: b.default.berth.localhost\r\n\r\n")
            .await;
        match recv.read_to_end(1 << 16).await {
            Ok(bytes) => panic!("answered a user: {}", String::from_utf8_lossy(&bytes)),
            Err(_) => connection
                .close_reason()
                .map(|reason| reason.to_string())
                .unwrap_or_default(),
        }
    };
    let error = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the listener ends a user's connection at once");
    // The listener's TLS alert: the subject names no node.
    assert!(error.contains("invalid peer certificate"), "{error}");

    // The scheduler's own certificate is no node either.
    let scheduler = quic::peer_client_config(&authority.server, authority.ca_pem()).unwrap();
    let outcome = async {
        let connection = endpoint
            .connect_with(scheduler, peer, &name)
            .unwrap()
            .await?;
        let (_, mut recv) = connection.open_bi().await?;
        let _ = recv.read_to_end(16).await;
        Ok::<_, quinn::ConnectionError>(connection.close_reason())
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .unwrap();
    assert!(!matches!(closed, Ok(None)), "{closed:?}");
    b.ingress.stop().await;
}
