//! A network partition, made with a network namespace: the node is alive
//! but cannot reach the scheduler. It keeps serving what it runs (static
//! stability), its instance is replaced elsewhere, and when the partition
//! heals it learns of the replacement and stops its copy (fencing).
//!
//! Needs root (network namespaces and veth pairs), as CI runs; elsewhere
//! the test says so and returns.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use berth_api::Object;

use crate::harness::{Cluster, HELLO_HOST, NodeProc, Scheduler};

/// A namespace joined to the host by a veth pair:
/// host side `10.201.N.1` (scheduler) and `10.201.N.3` (test client),
/// namespace side `10.201.N.2` (the node). Removed on drop.
struct Netns {
    name: String,
    host_veth: String,
    subnet: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 250;
        let net = Netns {
            name: format!("berth-part-{id}"),
            host_veth: format!("bph{id}"),
            subnet: format!("10.201.{id}"),
        };
        let peer = format!("bpn{id}");
        let s = &net.subnet;
        ip(&["netns", "add", &net.name]);
        ip(&[
            "link",
            "add",
            &net.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &net.name]);
        ip(&["addr", "add", &format!("{s}.1/24"), "dev", &net.host_veth]);
        ip(&["addr", "add", &format!("{s}.3/24"), "dev", &net.host_veth]);
        ip(&["link", "set", &net.host_veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &net.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{s}.2/24"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        net
    }

    fn addr(&self, host: u8) -> IpAddr {
        format!("{}.{host}", self.subnet).parse().unwrap()
    }

    /// Drops (or restores) the namespace's traffic to the scheduler only.
    fn partition(&self, on: bool) {
        let route = format!("{}.1/32", self.subnet);
        let verb = if on { "add" } else { "del" };
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "route",
            verb,
            "blackhole",
            &route,
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// GET `/` from a given source address (so that the partition, which only
/// cuts the scheduler's address, does not cut the test's requests).
fn get_from(source: IpAddr, ingress: SocketAddr) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(source, 0)).ok()?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(ingress))
            .await
            .ok()?
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/")
            .header("host", HELLO_HOST)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_partitioned_node_keeps_serving_is_replaced_and_is_fenced_when_it_returns() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs as root)");
        return;
    }
    let net = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::start_with(
        dir.path(),
        &format!("{}:0", net.addr(1)),
        &["--node-grace-seconds", "2"],
    );
    let inside = NodeProc::start_in_netns(
        dir.path(),
        &scheduler,
        "island",
        &net.name,
        &format!("{}:0", net.addr(2)),
    );
    let outside = NodeProc::start(dir.path(), &scheduler, "mainland");
    let cluster = Cluster {
        nodes: vec![inside, outside],
        scheduler,
        dir,
    };
    let manifest = cluster.hello_manifest(2);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(2);
    let island = cluster.nodes[0].ingress;
    assert_eq!(
        cluster
            .running_nodes()
            .iter()
            .filter(|n| *n == "island")
            .count(),
        1
    );
    assert_eq!(get_from(net.addr(3), island).map(|r| r.0), Some(200));
    // `ip netns exec` gives the island its own /sys without the cgroup
    // mounts: it runs its sandboxes unbounded and says so.
    let island_node = cluster
        .objects("nodes")
        .into_iter()
        .find_map(|o| match o {
            berth_api::Object::Node(n) if n.metadata.name == "island" => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        island_node
            .metadata
            .labels
            .get("berth.dev/cgroups")
            .map(String::as_str),
        Some("unavailable")
    );
    assert!(
        island_node
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "CgroupsUnavailable" && c.status == "True"),
        "{:?}",
        island_node.status.conditions
    );

    net.partition(true);
    cluster.wait_for(
        "the island's instance replaced",
        Duration::from_secs(30),
        || {
            let running = cluster.running_nodes();
            running.len() == 2 && running.iter().all(|n| n == "mainland")
        },
    );
    // Static stability: cut off from the scheduler, the island still serves.
    let (status, body) = get_from(net.addr(3), island).expect("island reachable");
    assert_eq!(status, 200, "{body}");

    net.partition(false);
    cluster.wait_for(
        "the island to stop its replaced copy",
        Duration::from_secs(40),
        || get_from(net.addr(3), island).is_some_and(|(status, _)| status == 404),
    );
    assert_eq!(cluster.live_instances(), 2);
    cluster.wait_for("the island Ready again", Duration::from_secs(20), || {
        cluster.objects("nodes").iter().all(|o| match o {
            Object::Node(n) => n.status.is_ready(),
            _ => true,
        })
    });
    assert_eq!(cluster.live_instances(), 2, "never more than the replicas");
}
