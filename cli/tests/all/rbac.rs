//! The authorization matrix, end to end: users created by the admin with
//! `berth user create`, each made admin of one namespace with one
//! `berth create rolebinding`. For alice's credentials, every verb on
//! every namespaced kind in bob's namespace is refused with a Forbidden
//! message and changes nothing (the resourceVersions stay), while in her
//! own namespace she may do everything; `berth auth can-i` agrees; a
//! revoked user and an expired token are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_api::Kind;
use berth_api::rbac::Resource;

use crate::harness::{Cluster, berth_bin, hello_wasm};

const NAMESPACES: &str = "apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-b}
";

/// A Deployment, a Service, a Role and a RoleBinding named `name` in
/// `namespace`; `replicas` tells two versions apart.
fn objects(name: &str, namespace: &str, replicas: u32) -> String {
    let component = hello_wasm();
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {component}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: {port}}}]
---
apiVersion: berth.dev/v1
kind: Role
metadata: {{name: {name}, namespace: {namespace}}}
rules:
  - verbs: [get]
    resources: [deployments]
    resourceNames: [{name}-{replicas}]
---
apiVersion: berth.dev/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: {namespace}}}
roleRef: {{kind: Role, name: {name}}}
subjects: [{{kind: User, name: u{replicas}}}]
",
        component = component.display(),
        port = 8000 + replicas,
    )
}

/// Runs berth with the client config at `config` and, if given, a token.
fn run(config: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(berth_bin());
    command.args(args).env("BERTH_CONFIG", config);
    match token {
        Some(token) => command.env("BERTH_TOKEN", token),
        None => command.env_remove("BERTH_TOKEN"),
    };
    command.output().expect("run berth")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = run(config, None, args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "berth {args:?}: {stderr}");
    stdout
}

/// Asserts `args` is refused with `expected` in its error.
fn refused(config: &Path, token: Option<&str>, args: &[&str], expected: &str) {
    let out = run(config, token, args);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "berth {args:?} was allowed");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(expected),
        "berth {args:?}: expected {expected:?}, got {stderr}"
    );
}

/// The user's own client config: a copy of the admin's, switched to the
/// context `berth user create` wrote.
fn config_of(cluster: &Cluster, user: &str) -> PathBuf {
    let path = cluster.dir.path().join(format!("{user}.config"));
    std::fs::copy(&cluster.scheduler.config, &path).unwrap();
    ok(&path, &["config", "use-context", user]);
    path
}

/// Every user-managed namespaced kind's objects in `namespace`, as
/// `(kind, name, resourceVersion)`.
fn versions(admin: &Path, namespace: &str) -> Vec<(Kind, String, String)> {
    let mut all = Vec::new();
    for kind in Kind::ALL
        .into_iter()
        .filter(|k| k.is_namespaced() && k.is_user_managed())
    {
        let json = ok(
            admin,
            &["get", kind.as_str(), "-n", namespace, "-o", "json"],
        );
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let items = match value["kind"].as_str() {
            Some("List") => value["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![value],
        };
        for item in items {
            let meta = &item["metadata"];
            all.push((
                kind,
                meta["name"].as_str().unwrap_or_default().to_owned(),
                meta["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    all
}

fn can_i(config: &Path, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let out = run(config, None, &full);
    let (stdout, stderr) = text(&out);
    match out.status.code() {
        Some(0) => assert_eq!(stdout, "yes\n"),
        Some(1) => assert_eq!(stdout, "no\n", "{stderr}"),
        other => panic!("can-i {args:?}: exit {other:?}: {stderr}"),
    }
    out.status.success()
}

#[test]
fn tenants_are_confined_to_their_namespaces() {
    let cluster = Cluster::start(0);
    let admin = cluster.scheduler.config.clone();
    let dir = cluster.dir.path();
    let manifest = |name: &str, yaml: &str| {
        let path = dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    };
    ok(&admin, &["apply", "-f", &manifest("ns.yaml", NAMESPACES)]);
    for (user, namespace) in [("alice", "team-a"), ("bob", "team-b")] {
        let created = ok(&admin, &["user", "create", user, "--days", "30"]);
        assert!(
            created.starts_with(&format!("user/{user} created")),
            "{created}"
        );
        ok(
            &admin,
            &[
                "create",
                "rolebinding",
                &format!("{user}-admin"),
                "--clusterrole",
                "admin",
                "--user",
                user,
                "-n",
                namespace,
            ],
        );
    }
    // The admin's own context is still current.
    assert_eq!(ok(&admin, &["config", "current-context"]), "default\n");
    let alice = config_of(&cluster, "alice");
    let bob = config_of(&cluster, "bob");
    ok(
        &bob,
        &[
            "apply",
            "-f",
            &manifest("b.yaml", &objects("web", "team-b", 0)),
        ],
    );

    // Every verb on every namespaced kind in team-b: refused, unchanged.
    let before = versions(&admin, "team-b");
    assert!(before.len() >= 5, "{before:?}");
    let cannot = |verb: &str, kind: Kind, name: Option<&str>| {
        let plural = Resource::Kind(kind).plural();
        match name {
            Some(name) => {
                format!("user \"alice\" cannot {verb} {plural} \"{name}\" in namespace \"team-b\"")
            }
            None => format!("user \"alice\" cannot {verb} {plural} in namespace \"team-b\""),
        }
    };
    for kind in Kind::ALL.into_iter().filter(|k| k.is_namespaced()) {
        if Kind::from_cli_name(kind.as_str()).is_none() {
            continue;
        }
        let k = kind.as_str();
        refused(
            &alice,
            None,
            &["get", k, "-n", "team-b"],
            &cannot("list", kind, None),
        );
        refused(
            &alice,
            None,
            &["get", k, "web", "-n", "team-b"],
            &cannot("get", kind, Some("web")),
        );
        refused(
            &alice,
            None,
            &["delete", k, "web", "-n", "team-b"],
            &cannot("delete", kind, Some("web")),
        );
        let plural = Resource::Kind(kind).plural();
        for verb in ["get", "list", "watch", "create", "update", "delete"] {
            assert!(
                !can_i(&alice, &[verb, &plural, "-n", "team-b"]),
                "{verb} {plural}"
            );
            assert!(
                can_i(&alice, &[verb, &plural, "-n", "team-a"]),
                "{verb} {plural}"
            );
        }
    }
    // Updates of what exists, creations of what does not.
    let update = manifest("b-update.yaml", &objects("web", "team-b", 1));
    refused(
        &alice,
        None,
        &["apply", "-f", &update],
        &cannot("update", Kind::Deployment, Some("web")),
    );
    let create = manifest("b-create.yaml", &objects("new", "team-b", 1));
    refused(
        &alice,
        None,
        &["apply", "-f", &create],
        &cannot("create", Kind::Deployment, Some("new")),
    );
    refused(
        &alice,
        None,
        &["scale", "deployment/web", "--replicas", "3", "-n", "team-b"],
        "deployments \"web\" in namespace \"team-b\"",
    );
    refused(
        &alice,
        None,
        &["events", "-n", "team-b"],
        &cannot("list", Kind::Event, None),
    );
    refused(
        &alice,
        None,
        &["logs", "deployment/web", "-n", "team-b"],
        &cannot("get", Kind::Deployment, Some("web")),
    );
    refused(
        &alice,
        None,
        &["top", "instances", "-n", "team-b"],
        &cannot("list", Kind::Instance, None),
    );
    // Nor anything across namespaces or cluster-wide.
    refused(
        &alice,
        None,
        &["get", "deployments", "-A"],
        "user \"alice\" cannot list deployments in all namespaces",
    );
    refused(
        &alice,
        None,
        &["get", "nodes"],
        "user \"alice\" cannot list nodes at the cluster scope",
    );
    refused(
        &alice,
        None,
        &["user", "create", "eve"],
        "cannot create users \"eve\"",
    );
    refused(
        &alice,
        None,
        &[
            "create",
            "clusterrolebinding",
            "me",
            "--clusterrole",
            "cluster-admin",
            "--user",
            "alice",
        ],
        "cannot create clusterrolebindings \"me\"",
    );
    refused(
        &alice,
        None,
        &["auth", "can-i", "get", "deployments", "--as", "bob"],
        "cannot impersonate users \"bob\"",
    );
    assert_eq!(versions(&admin, "team-b"), before, "alice changed team-b");

    // In team-a, alice does everything.
    let own = manifest("a.yaml", &objects("web", "team-a", 0));
    let created = ok(&alice, &["apply", "-f", &own]);
    assert!(created.contains("deployment/web created"), "{created}");
    let changed = ok(
        &alice,
        &[
            "apply",
            "-f",
            &manifest("a2.yaml", &objects("web", "team-a", 2)),
        ],
    );
    assert!(changed.contains("deployment/web configured"), "{changed}");
    ok(
        &alice,
        &["scale", "deployment/web", "--replicas", "0", "-n", "team-a"],
    );
    ok(&alice, &["get", "deployments", "-n", "team-a"]);
    ok(
        &alice,
        &["get", "rolebindings", "alice-admin", "-n", "team-a"],
    );
    ok(&alice, &["events", "-n", "team-a"]);
    ok(&alice, &["delete", "service", "web", "-n", "team-a"]);
    ok(&alice, &["delete", "deployment", "web", "-n", "team-a"]);

    // The admin may ask on another's behalf.
    assert!(!can_i(
        &admin,
        &["delete", "deployments", "-n", "team-b", "--as", "alice"]
    ));
    assert!(can_i(
        &admin,
        &["delete", "deployments", "-n", "team-a", "--as", "alice"]
    ));
    assert!(can_i(&admin, &["list", "nodes"]));

    // Tokens: act as their user; expire.
    let token = ok(
        &admin,
        &["token", "create", "ci", "--user", "alice", "--ttl", "1h"],
    );
    let token = token.trim();
    let out = run(&admin, Some(token), &["get", "deployments", "-n", "team-a"]);
    assert!(out.status.success(), "{}", text(&out).1);
    refused(
        &admin,
        Some(token),
        &["get", "deployments", "-n", "team-b"],
        &cannot("list", Kind::Deployment, None),
    );
    let short = ok(&alice, &["token", "create", "short", "--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2500));
    refused(
        &admin,
        Some(short.trim()),
        &["get", "deployments", "-n", "team-a"],
        "token \"short\" of user \"alice\" has expired",
    );
    refused(
        &admin,
        Some("berth_not-a-token"),
        &["get", "deployments"],
        "unknown or revoked token",
    );

    // A revoked user is refused at once, certificate and token alike.
    let bob_token = ok(&bob, &["token", "create", "bot"]);
    ok(&bob, &["get", "deployments", "-n", "team-b"]);
    ok(&admin, &["user", "revoke", "bob"]);
    refused(
        &bob,
        None,
        &["get", "deployments", "-n", "team-b"],
        "revoked",
    );
    refused(
        &admin,
        Some(bob_token.trim()),
        &["get", "deployments", "-n", "team-b"],
        "revoked",
    );
    refused(
        &admin,
        None,
        &["user", "cert", "bob"],
        "user \"bob\" not found",
    );
    // A new certificate brings bob back.
    ok(&admin, &["user", "create", "bob"]);
    refused(
        &admin,
        None,
        &["user", "create", "bob"],
        "user \"bob\" already exists",
    );
    let issued = ok(&admin, &["user", "cert", "alice", "--context", "alice-2"]);
    assert!(
        issued.starts_with("user/alice certificate issued: context \"alice-2\""),
        "{issued}"
    );
    let bob = config_of(&cluster, "bob");
    ok(&bob, &["get", "deployments", "-n", "team-b"]);
}

/// A node's own certificate reaches only node requests: every user
/// request, reads included, is refused.
#[test]
fn a_node_identity_cannot_send_user_requests() {
    let cluster = Cluster::start(1);
    let data = cluster.dir.path().join("node-node-0");
    let read = |file: &str| std::fs::read_to_string(data.join(file)).unwrap();
    let config = cluster.dir.path().join("node.config");
    let yaml = format!(
        "apiVersion: berth.dev/v1\nkind: Config\nserver: {}\ncertificateAuthority: {}\n\
         clientCertificate: {}\nclientKey: {}\n",
        cluster.scheduler.addr,
        serde_json::to_string(&read("ca.crt")).unwrap(),
        serde_json::to_string(&read("node.crt")).unwrap(),
        serde_json::to_string(&read("node.key")).unwrap(),
    );
    std::fs::write(&config, yaml).unwrap();
    for args in [
        &["get", "deployments", "-A"][..],
        &["get", "nodes"],
        &["get", "namespaces"],
        &["delete", "namespace", "default"],
        &["events", "-A"],
        &["user", "create", "mallory"],
        &["token", "create", "mine"],
        &["auth", "can-i", "get", "deployments"],
        &[
            "create",
            "clusterrolebinding",
            "me",
            "--clusterrole",
            "cluster-admin",
            "--user",
            "x",
        ],
    ] {
        refused(&config, None, args, "may not send user request");
    }
}
