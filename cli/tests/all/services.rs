//! Services end to end: components on two real nodes call Deployment `b`
//! by Service name, across nodes and on the same node, through each node's
//! service router; the call across nodes travels over the nodes' QUIC
//! connection, as the caller's node's forward counter shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Cluster, Proc, Scheduler, hello_wasm, http_get};
use crate::metrics::{addr_after, scrape, spawn};

/// A running node: its process, ingress and admin listener.
struct AdminNode {
    _proc: Proc,
    ingress: SocketAddr,
    admin: SocketAddr,
}

/// A scheduler and `n` nodes (`node-0`...), each node with an admin
/// listener; the cluster's own node list stays empty.
fn cluster_with_admin(n: usize) -> (Cluster, Vec<AdminNode>) {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::start(dir.path(), "127.0.0.1:0");
    let nodes = (0..n)
        .map(|i| {
            let name = format!("node-{i}");
            let data = dir.path().join(&name);
            let (proc, admin, line) = spawn(
                &[
                    "node",
                    "--join",
                    &scheduler.addr.to_string(),
                    "--token",
                    &scheduler.token(),
                    "--name",
                    &name,
                    "--data",
                    data.to_str().unwrap(),
                    "--ingress",
                    "127.0.0.1:0",
                    "--admin",
                    "127.0.0.1:0",
                ],
                &scheduler.config,
                "serving http on",
            );
            AdminNode {
                _proc: proc,
                ingress: addr_after(&line, "serving http on "),
                admin,
            }
        })
        .collect();
    let cluster = Cluster {
        dir,
        scheduler,
        nodes: Vec::new(),
    };
    (cluster, nodes)
}

/// Service calls `node` forwarded by `transport`, as its metrics say (0
/// before the first).
fn forwards(node: &AdminNode, transport: &str) -> f64 {
    scrape(node.admin)
        .samples
        .iter()
        .filter(|s| {
            s.metric == "berth_node_service_forwards_total"
                && s.labels.get("transport") == Some(transport)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("not a counter: {other:?}"),
        })
        .sum()
}

/// The caller example: `GET /` fetches `UPSTREAM` and answers
/// `upstream <status>: <body>`.
fn caller_wasm() -> PathBuf {
    PathBuf::from(berth_test_programs::CALLER)
}

/// A one-replica Deployment `name` of `component`, pinned to `node`, with
/// `env` (`NAME: value` pairs).
fn deployment(name: &str, component: &Path, node: &str, env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - {{name: {k}, value: \"{v}\"}}\n"))
        .collect();
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {}
      nodeName: {node}
      env:
{env}",
        component.display()
    )
}

/// A Service `name` selecting `app: app`.
fn service(name: &str, app: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {app}
  ports:
    - port: 80
"
    )
}

/// GETs `/` of Deployment `name` through `node`'s ingress until it answers
/// `want`-prefixed text (endpoints reach nodes a moment after the
/// instances run); returns the last answer.
fn answer_of(cluster: &Cluster, node: &AdminNode, name: &str, want: &str) -> String {
    let host = format!("{name}.default.berth.localhost");
    let mut last = String::new();
    cluster.wait_for(
        &format!("{name} to answer {want:?}"),
        Duration::from_secs(90),
        || {
            last = match http_get(node.ingress, &host) {
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            last.contains(want)
        },
    );
    last
}

#[test]
fn components_call_a_service_across_nodes_and_on_their_own() {
    let (cluster, nodes) = cluster_with_admin(2);
    let (hello, caller) = (hello_wasm(), caller_wasm());
    let manifest = [
        deployment("b", &hello, "node-1", &[]),
        service("b", "b"),
        deployment(
            "a",
            &caller,
            "node-0",
            &[("UPSTREAM", "http://b.default.svc/")],
        ),
        deployment(
            "a-local",
            &caller,
            "node-1",
            &[("UPSTREAM", "http://b.default.svc/")],
        ),
        deployment("a-short", &caller, "node-0", &[("UPSTREAM", "http://b/")]),
        service("idle", "nobody"),
        deployment(
            "a-idle",
            &caller,
            "node-0",
            &[("UPSTREAM", "http://idle.default.svc/")],
        ),
    ]
    .join("---\n");
    let path = cluster.dir.path().join("services.yaml");
    std::fs::write(&path, manifest).unwrap();
    let out = cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("service/b created\n"), "{out}");

    let from_b = "200 upstream 200 OK: Hello from berth! (instance b-";
    // Across nodes: a on node-0, b on node-1.
    answer_of(&cluster, &nodes[0], "a", from_b);
    // On b's own node.
    answer_of(&cluster, &nodes[1], "a-local", from_b);
    // A single label is a Service of the caller's namespace.
    answer_of(&cluster, &nodes[0], "a-short", from_b);
    // Node-0's calls went to node-1 over QUIC, none as plain HTTP to its
    // ingress; node-1's own call stayed local.
    let quic = forwards(&nodes[0], "quic");
    assert!(quic >= 2.0, "{quic} calls over quic");
    for transport in ["local", "http"] {
        let found = forwards(&nodes[0], transport);
        assert_eq!(found, 0.0, "node-0 forwarded {found} calls by {transport}");
    }
    assert!(forwards(&nodes[1], "local") >= 1.0);
    let nodes_yaml = cluster.ok(&["get", "node", "node-1", "-o", "yaml"]);
    assert!(
        nodes_yaml.contains("peerAddress: 127.0.0.1:"),
        "{nodes_yaml}"
    );
    // A Service that selects nothing.
    answer_of(
        &cluster,
        &nodes[0],
        "a-idle",
        "upstream 503 Service Unavailable: no ready endpoint for service idle.default",
    );

    // `get svc` shows each Service's selector and endpoints.
    let table = cluster.ok(&["get", "svc"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SELECTOR", "ENDPOINTS", "AGE"], "{table}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][..2], ["b", "app=b"], "{table}");
    assert!(rows[0][2].starts_with("b-"), "{table}");
    assert_eq!(rows[1][..3], ["idle", "app=nobody", "<none>"], "{table}");
    let yaml = cluster.ok(&["get", "service", "b", "-o", "yaml"]);
    assert!(yaml.contains("node: node-1"), "{yaml}");
    let described = cluster.ok(&["describe", "services", "b"]);
    assert!(described.contains("Selector:         app=b"), "{described}");
    assert!(described.contains("80->80"), "{described}");

    // Without the Service, the name means nothing any more.
    assert_eq!(
        cluster.ok(&["delete", "svc", "b"]),
        "Service default/b deleted\n"
    );
    answer_of(
        &cluster,
        &nodes[0],
        "a",
        "upstream 404 Not Found: no service b in namespace default",
    );
}

#[test]
fn a_node_certificate_from_before_peers_is_renewed_with_the_token() {
    use berth_scheduler::pki::{Authority, Subject};

    let dir = tempfile::tempdir().unwrap();
    let scheduler = Scheduler::start(dir.path(), "127.0.0.1:0");
    // What `Join` issued before node-to-node forwarding: a client-only
    // certificate.
    let authority = Authority::load_or_create(&scheduler.data).unwrap();
    let old = authority
        .issue_client(&Subject::Node("node-0".into()))
        .unwrap();
    let data = dir.path().join("node-node-0");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("node.crt"), &old.cert_chain_pem).unwrap();
    std::fs::write(data.join("node.key"), &old.key_pem).unwrap();
    std::fs::write(data.join("ca.crt"), authority.ca_pem()).unwrap();

    let node = crate::harness::NodeProc::start(dir.path(), &scheduler, "node-0");
    let renewed = std::fs::read_to_string(data.join("node.crt")).unwrap();
    assert_ne!(renewed, old.cert_chain_pem, "the certificate was renewed");
    let cluster = Cluster {
        dir,
        scheduler,
        nodes: vec![node],
    };
    cluster.wait_for(
        "node-0 to register its peer address",
        Duration::from_secs(30),
        || {
            cluster
                .ok(&["get", "node", "node-0", "-o", "yaml"])
                .contains("peerAddress: 127.0.0.1:")
        },
    );
}
