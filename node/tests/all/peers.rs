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
            labels: std::collections::BTreeMap::new(),
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

/// GETs `/` of Service `b` through `router` with `caller` as the caller
/// header, over a raw connection; returns the status line and body.
async fn call_as(router: std::net::SocketAddr, caller: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(router).await.unwrap();
    let head = format!(
        "GET / HTTP/1.1\r\nhost: b.default.svc\r\nberth-caller: {caller}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    reply
}

#[tokio::test]
async fn the_receiving_node_enforces_network_policy_with_the_caller_sent_over_quic() {
    use berth_api::netpol::{NetworkPolicyRoute, PeerRule};
    use berth_node::services::policy::instance_header;

    let _serial = shared().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::load_or_create(dir.path()).unwrap();
    let runtime = WasmRuntime::new(dir.path()).unwrap();
    let b = node_b(&authority, &runtime).await;
    let peer = b.peers.listen_addr().unwrap();
    let dead = dead_address().await;
    // Node b's router holds the policy; node a's has none (older
    // assignments), so only node b can refuse.
    let router_b = ServiceRouter::new("node-b", DOMAIN);
    router_b.use_peers(Arc::clone(&b.peers));
    router_b.update(&[route_to("node-b", dead, peer)]);
    router_b.update_policies(&[NetworkPolicyRoute {
        namespace: "default".into(),
        name: "from-team-b".into(),
        selector: std::collections::BTreeMap::new(),
        allow: vec![PeerRule {
            namespaces: Some(vec!["team-b".into()]),
            labels: std::collections::BTreeMap::new(),
            anyone: false,
        }],
    }]);
    let identity = authority.issue_node("node-a").unwrap();
    let (router, router_addr, _) = router_with(&identity, authority.ca_pem()).await;
    router.update(&[route_to("node-b", dead, peer)]);

    let team_b = instance_header("team-b", &std::collections::BTreeMap::new());
    let team_c = instance_header("team-c", &std::collections::BTreeMap::new());
    let admitted = call_as(router_addr, &team_b).await;
    assert!(admitted.starts_with("HTTP/1.1 200"), "{admitted}");
    assert!(admitted.contains("Hi! (instance b-1)\n"), "{admitted}");
    let refused = call_as(router_addr, &team_c).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains(
            "no network policy allows calls from namespace team-c to deployment b in namespace default"
        ),
        "{refused}"
    );
    // A header without this node's key names nobody: node b refuses it
    // as an unidentified caller.
    let forged = call_as(router_addr, "0123 team-b").await;
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    assert!(forged.contains("from an unidentified caller"), "{forged}");
    b.ingress.stop().await;
}
