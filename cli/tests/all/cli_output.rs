//! The CLI's script-facing output against a real cluster: `-l` selectors,
//! `-o name`, `get -o yaml|json | apply -f -` round trips, `apply -f DIR`
//! and shell completions.

use berth_api::Object;

use crate::harness::{Cluster, hello_wasm};

/// The hello Deployment as `get -o json` shows it, less what controllers
/// keep rewriting (status and the resourceVersion it bumps).
fn hello_deployment(cluster: &Cluster) -> Object {
    let text = cluster.ok(&["get", "deployment", "hello", "-o", "json"]);
    let mut object = Object::from_json(text.as_bytes()).unwrap();
    if let Object::Deployment(d) = &mut object {
        d.status = None;
        d.metadata.resource_version = None;
    }
    object
}

#[test]
fn selectors_names_round_trips_directories_and_completions() {
    let cluster = Cluster::start(1);
    let manifest = cluster.hello_manifest(2);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(2);

    // `-l` with `-o name`.
    let names = cluster.ok(&["get", "instances", "-l", "app=hello", "-o", "name"]);
    let lines: Vec<&str> = names.lines().collect();
    assert_eq!(lines.len(), 2, "{names}");
    assert!(
        lines.iter().all(|l| l.starts_with("instance/hello-")),
        "{names}"
    );
    let out = cluster.berth(&["get", "instances", "-l", "app=nope", "-o", "name"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No resources found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wide = cluster.ok(&["get", "deployments", "-o", "wide"]);
    assert!(
        wide.contains("COMPONENT") && wide.contains("app=hello"),
        "{wide}"
    );

    // YAML and JSON from `get` apply back unchanged.
    let before = hello_deployment(&cluster);
    for format in ["yaml", "json"] {
        let text = cluster.ok(&["get", "deployment", "hello", "-o", format]);
        let out = cluster.berth_with_stdin(&["apply", "-f", "-"], &text);
        assert!(
            out.status.success(),
            "apply -f - ({format}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "deployment/hello unchanged\n"
        );
        assert_eq!(hello_deployment(&cluster), before, "{format}");
    }
    let out = cluster.berth_with_stdin(&["apply", "-f", "-"], "kind: Deployment\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<stdin>"), "{stderr}");

    // A directory: its manifests in name order, other files ignored.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a-namespace.yaml"),
        "apiVersion: berth.dev/v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b-web.yml"),
        format!(
            "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      component: {}
",
            hello_wasm().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a manifest").unwrap();
    let out = cluster.ok(&["apply", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out, "namespace/team-a created\ndeployment/web created\n");
    let names = cluster.ok(&["get", "deploy", "-A", "-o", "name"]);
    assert!(names.contains("deployment/web"), "{names}");

    // Completions.
    let script = cluster.ok(&["completion", "bash"]);
    assert!(script.contains("berth"), "{script}");
    assert!(script.contains("complete"), "{script}");
}
