//! Ingress objects end to end: host and path rules on two real nodes send
//! requests to Services whose endpoints run on either node, through either
//! node's ingress, while deployment hosts keep working.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Cluster, hello_wasm, http_get, http_get_path};

/// A one-replica Deployment `name` of hello, pinned to `node`, greeting
/// with its own name.
fn deployment(name: &str, component: &Path, node: &str) -> String {
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
        - {{name: GREETING, value: {name}}}
---
apiVersion: berth.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
",
        component.display()
    )
}

const INGRESS: &str = "apiVersion: berth.dev/v1
kind: Ingress
metadata:
  name: shop
spec:
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend:
              service:
                name: api
                port: {number: 80}
          - path: /
            pathType: Prefix
            backend:
              service: {name: web}
    - host: \"*.example.com\"
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: api}
";

/// GETs `path` with `Host: host` from `node`'s ingress until the answer
/// contains `want`; returns it.
fn answer(cluster: &Cluster, node: usize, host: &str, path: &str, want: &str) -> String {
    let mut last = String::new();
    cluster.wait_for(
        &format!("{host}{path} on node {node} to answer {want:?}"),
        Duration::from_secs(90),
        || {
            last = match http_get_path(cluster.nodes[node].ingress, host, path) {
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            last.contains(want)
        },
    );
    last
}

#[test]
fn ingress_rules_route_hosts_and_paths_to_services_from_every_node() {
    let cluster = Cluster::start(2);
    let hello = hello_wasm();
    let manifest = [
        deployment("api", &hello, "node-0"),
        deployment("web", &hello, "node-1"),
        INGRESS.to_owned(),
    ]
    .join("---\n");
    let path = cluster.dir.path().join("ingress.yaml");
    std::fs::write(&path, manifest).unwrap();
    let out = cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("ingress/shop created\n"), "{out}");

    // hello greets on `/` only and answers other paths 404 "not found"
    // itself (the ingress's own 404s say which host or rule is missing);
    // its log says which instance served which path.
    for node in 0..2 {
        answer(&cluster, node, "shop.example.com", "/", "200 web! ");
        answer(&cluster, node, "Shop.Example.COM:8080", "/", "200 web! ");
        answer(&cluster, node, "blog.example.com", "/", "200 api! ");
        answer(
            &cluster,
            node,
            "shop.example.com",
            "/api/x",
            "404 not found",
        );
        answer(&cluster, node, "shop.example.com", "/apix", "404 not found");
    }
    let logs_of = |deployment: &str, served: &str| {
        let mut logs = String::new();
        cluster.wait_for(
            &format!("{deployment} to log {served:?}"),
            Duration::from_secs(30),
            || {
                let read = cluster.berth(&["logs", &format!("deployment/{deployment}")]);
                logs = String::from_utf8_lossy(&read.stdout).into_owned();
                logs.contains(served)
            },
        );
        logs
    };
    let logs = logs_of("api", "served /api/x as api-");
    assert!(!logs.contains("served /apix"), "{logs}");
    let logs = logs_of("web", "served /apix as web-");
    assert!(!logs.contains("served /api/x"), "{logs}");
    // An unknown host is still the ingress's 404.
    let (status, body) = http_get(cluster.nodes[0].ingress, "shop.example.org").unwrap();
    assert_eq!(status, 404, "{body}");
    // The deployment-host convention still works, on the instance's node.
    answer(&cluster, 1, "web.default.berth.localhost", "/", "200 web! ");

    let table = cluster.ok(&["get", "ing"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "HOSTS", "PATHS", "BACKENDS", "AGE"],
        "{table}"
    );
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..4],
        [
            "shop",
            "shop.example.com,*.example.com",
            "/api,/",
            "api,web"
        ],
        "{table}"
    );
    let described = cluster.ok(&["describe", "ingress", "shop"]);
    assert!(described.contains("/api (Prefix) -> api"), "{described}");

    // Without its Service, a rule's backend has no endpoint.
    cluster.ok(&["delete", "deployment", "api"]);
    answer(
        &cluster,
        1,
        "shop.example.com",
        "/api",
        "503 no ready endpoint for service api.default",
    );
}
