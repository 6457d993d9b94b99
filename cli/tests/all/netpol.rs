//! Tenant boundaries end to end: network policy between two tenants'
//! namespaces (a component of team-b calls team-a's Service, on the same
//! node and across nodes; default-deny in team-a refuses it with 403; an
//! allow rule for team-b's namespace restores it), and the capability
//! policy at admission (a namespace denying outbound HTTP refuses the
//! caller component, which imports it, and accepts the hello one).

use std::path::Path;
use std::time::Duration;

use crate::harness::{Cluster, hello_wasm, http_get};

/// Namespaces team-a and team-b, labelled by tenant; in team-a
/// Deployment `web` (hello) on node-1 behind Service `web`; in team-b the
/// caller component calling it, `near` on node-1 and `far` on node-0.
fn tenants(caller: &Path, hello: &Path) -> String {
    let caller = caller.display();
    let deployment = |name: &str, namespace: &str, node: &str, component: &str, env: &str| {
        format!(
            "apiVersion: berth.dev/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      component: {component}
      nodeName: {node}
      env: [{env}]
"
        )
    };
    let upstream = "{name: UPSTREAM, value: \"http://web.team-a.svc/\"}";
    [
        "apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-a, labels: {tenant: a}}
"
        .to_owned(),
        "apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-b, labels: {tenant: b}}
"
        .to_owned(),
        deployment("web", "team-a", "node-1", &hello.display().to_string(), ""),
        "apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"
        .to_owned(),
        deployment("near", "team-b", "node-1", &caller.to_string(), upstream),
        deployment("far", "team-b", "node-0", &caller.to_string(), upstream),
    ]
    .join("---\n")
}

/// Default-deny for every instance of team-a.
const DEFAULT_DENY: &str = "apiVersion: berth.dev/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: team-a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

/// team-a's `web` admits instances of namespaces labelled tenant=b.
const ALLOW_B: &str = "apiVersion: berth.dev/v1
kind: NetworkPolicy
metadata: {name: web-from-team-b, namespace: team-a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {tenant: b}}
";

/// Waits until `name` of team-b, through `node`'s ingress, answers text
/// containing `want`.
fn answers(cluster: &Cluster, node: usize, name: &str, want: &str) {
    let host = format!("{name}.team-b.berth.localhost");
    let ingress = cluster.nodes[node].ingress;
    let mut last = String::new();
    cluster.wait_for(
        &format!("{name} to answer {want:?}"),
        Duration::from_secs(90),
        || {
            last = match http_get(ingress, &host) {
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            last.contains(want)
        },
    );
}

#[test]
fn default_deny_refuses_another_tenants_calls_until_a_rule_allows_them() {
    let cluster = Cluster::start(2);
    let caller = std::path::PathBuf::from(berth_test_programs::CALLER);
    let path = cluster.manifest("tenants", &tenants(&caller, &hello_wasm()));
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);

    let served = "200 upstream 200 OK: Hello from berth!";
    // Without a policy: on web's own node and across nodes.
    answers(&cluster, 1, "near", served);
    answers(&cluster, 0, "far", served);

    let deny = cluster.manifest("deny", DEFAULT_DENY);
    let out = cluster.ok(&["apply", "-f", deny.to_str().unwrap()]);
    assert!(out.contains("networkpolicy/default-deny created"), "{out}");
    let refused =
        "upstream 403 Forbidden: denied by network policy default-deny in namespace team-a";
    answers(&cluster, 1, "near", refused);
    answers(&cluster, 0, "far", refused);
    let table = cluster.ok(&["get", "netpol", "-n", "team-a"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("default-deny"), "{table}");

    let allow = cluster.manifest("allow", ALLOW_B);
    cluster.ok(&["apply", "-f", allow.to_str().unwrap()]);
    answers(&cluster, 1, "near", served);
    answers(&cluster, 0, "far", served);

    // Relabelled, team-b's namespace no longer matches the rule.
    let relabel = cluster.manifest(
        "relabel",
        "apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-b, labels: {tenant: other}}
",
    );
    cluster.ok(&["apply", "-f", relabel.to_str().unwrap()]);
    let not_allowed = "upstream 403 Forbidden: no network policy allows calls from namespace team-b with labels app=far";
    answers(&cluster, 0, "far", not_allowed);

    // Without the policies, calls go through again.
    cluster.ok(&["delete", "netpol", "default-deny", "-n", "team-a"]);
    cluster.ok(&["delete", "netpol", "web-from-team-b", "-n", "team-a"]);
    answers(&cluster, 0, "far", served);
}

#[test]
fn a_namespace_denying_outbound_http_refuses_components_that_import_it() {
    let cluster = Cluster::start(0);
    let namespace = cluster.manifest(
        "locked",
        "apiVersion: berth.dev/v1
kind: Namespace
metadata:
  name: locked
  annotations:
    berth.dev/denied-imports: \"wasi:http/outgoing-handler, wasi:filesystem/*, wasi:sockets/*\"
",
    );
    cluster.ok(&["apply", "-f", namespace.to_str().unwrap()]);
    let workload = |name: &str, component: &Path| {
        format!(
            "apiVersion: berth.dev/v1
kind: Deployment
metadata: {{name: {name}, namespace: locked}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      component: {}
",
            component.display()
        )
    };
    let caller = std::path::PathBuf::from(berth_test_programs::CALLER);
    let path = cluster.manifest("caller", &workload("caller", &caller));
    let out = cluster.berth(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("component imports wasi:http/outgoing-handler@")
            && stderr.contains(
                "which namespace locked denies (berth.dev/denied-imports: wasi:http/outgoing-handler)"
            ),
        "{stderr}"
    );
    let listed = cluster.ok(&["get", "deployments", "-n", "locked"]);
    assert!(!listed.contains("caller"), "nothing was written: {listed}");

    let path = cluster.manifest("hello", &workload("hello", &hello_wasm()));
    let out = cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("deployment/hello created"), "{out}");
    // Nor can an admitted Deployment be switched to such a component.
    let out = cluster.berth(&[
        "set",
        "component",
        "deployment/hello",
        caller.to_str().unwrap(),
        "-n",
        "locked",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("component imports wasi:http/outgoing-handler@"),
        "{stderr}"
    );

    // A pattern that is not one is refused when the Namespace is applied.
    let bad = cluster.manifest(
        "bad",
        "apiVersion: berth.dev/v1
kind: Namespace
metadata:
  name: bad
  annotations: {berth.dev/denied-imports: \"outgoing\"}
",
    );
    let out = cluster.berth(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metadata.annotations[berth.dev/denied-imports]: \"outgoing\" is not an interface pattern"),
        "{stderr}"
    );
}
