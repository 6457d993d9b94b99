//! Services end to end: components on two real nodes call Deployment `b`
//! by Service name, across nodes and on the same node, through each node's
//! service router.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Cluster, hello_wasm, http_get};

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
fn answer_of(cluster: &Cluster, node: usize, name: &str, want: &str) -> String {
    let host = format!("{name}.default.berth.localhost");
    let mut last = String::new();
    cluster.wait_for(
        &format!("{name} to answer {want:?}"),
        Duration::from_secs(90),
        || {
            last = match http_get(cluster.nodes[node].ingress, &host) {
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
    let cluster = Cluster::start(2);
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
    answer_of(&cluster, 0, "a", from_b);
    // On b's own node.
    answer_of(&cluster, 1, "a-local", from_b);
    // A single label is a Service of the caller's namespace.
    answer_of(&cluster, 0, "a-short", from_b);
    // A Service that selects nothing.
    answer_of(
        &cluster,
        0,
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
        0,
        "a",
        "upstream 404 Not Found: no service b in namespace default",
    );
}
