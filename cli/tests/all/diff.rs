//! `berth diff -f` against a real scheduler: a unified diff of what
//! `apply` would change, exit 0 when nothing would, 1 when something
//! would, 2 on error; and nothing changed by looking.

use std::process::{Command, Output};

use crate::harness::{Cluster, berth_bin};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The hello Deployment's resourceVersion.
fn resource_version(cluster: &Cluster) -> String {
    let text = cluster.ok(&["get", "deploy", "hello", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&text).unwrap();
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn diff_shows_what_apply_would_change_and_exits_accordingly() {
    // No node: the objects need none, and nothing rewrites them.
    let cluster = Cluster::start(0);
    let manifest = cluster.hello_manifest(2);
    let path = manifest.to_str().unwrap();

    // Nothing live yet: the whole object is added; exit 1.
    let out = cluster.berth(&["diff", "-f", path]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "--- live/Deployment.default.hello\n+++ merged/Deployment.default.hello\n@@ -0,0 +1,"
        ),
        "{text}"
    );
    assert!(text.contains("\n+  replicas: 2\n"), "{text}");
    assert!(text.contains("\n+      component: sha256:"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour without a terminal: {text:?}"
    );
    assert_eq!(stderr(&out), "");
    assert!(cluster.objects("deployments").is_empty(), "diff applied");

    // Applied: nothing to show; exit 0.
    cluster.ok(&["apply", "-f", path]);
    let before = resource_version(&cluster);
    let out = cluster.berth(&["diff", "-f", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    // What `get` prints diffs clean too, one object or a List.
    for args in [
        &["get", "deploy", "hello", "-o", "yaml"][..],
        &["get", "deploy", "-o", "yaml"][..],
        &["get", "deploy", "-o", "json"][..],
    ] {
        let text = cluster.ok(args);
        let out = cluster.berth_with_stdin(&["diff", "-f", "-"], &text);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }

    // A changed spec and label: only those lines, no cluster-owned fields.
    let changed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("replicas: 2", "replicas: 3")
        .replace("  name: hello\n", "  name: hello\n  labels: {team: web}\n");
    let changed_path = cluster.dir.path().join("hello-changed.yaml");
    std::fs::write(&changed_path, &changed).unwrap();
    let out = cluster.berth(&["diff", "-f", changed_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\n-  replicas: 2\n+  replicas: 3\n"),
        "{text}"
    );
    assert!(text.contains("\n+  labels:\n+    team: web\n"), "{text}");
    for owned in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "status",
    ] {
        assert!(!text.contains(owned), "{owned} in {text}");
    }
    let removed = text.lines().filter(|l| l.starts_with("-  ")).count();
    assert_eq!(removed, 1, "{text}");

    // Looking changed nothing.
    assert_eq!(resource_version(&cluster), before);

    // A directory: the unchanged object prints nothing, the new one all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&manifest, dir.path().join("a-hello.yaml")).unwrap();
    std::fs::write(
        dir.path().join("b-team.yaml"),
        "apiVersion: berth.dev/v1\nkind: Namespace\nmetadata:\n  name: team\n",
    )
    .unwrap();
    let out = cluster.berth(&["diff", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "--- live/Namespace.team\n\
         +++ merged/Namespace.team\n\
         @@ -0,0 +1,4 @@\n\
         +apiVersion: berth.dev/v1\n\
         +kind: Namespace\n\
         +metadata:\n\
         +  name: team\n"
    );

    // Admission's LimitRange defaults are what apply stores: a template
    // without resources does not differ from its defaulted live self.
    let limits = cluster.dir.path().join("limits.yaml");
    std::fs::write(
        &limits,
        "apiVersion: berth.dev/v1
kind: LimitRange
metadata: {name: defaults, namespace: team}
spec:
  limits:
    - type: Instance
      default: {memory: 64Mi}
      defaultRequest: {cpu: 50m, memory: 32Mi}
",
    )
    .unwrap();
    let team = dir.path().join("b-team.yaml");
    cluster.ok(&["apply", "-f", team.to_str().unwrap()]);
    cluster.ok(&["apply", "-f", limits.to_str().unwrap()]);
    let bare = std::fs::read_to_string(&manifest).unwrap();
    let start = bare.find("      env:").unwrap();
    let bare = bare[..start].replace("  name: hello\n", "  name: hello\n  namespace: team\n");
    let bare_path = cluster.dir.path().join("bare.yaml");
    std::fs::write(&bare_path, &bare).unwrap();
    cluster.ok(&["apply", "-f", bare_path.to_str().unwrap()]);
    let live = cluster.ok(&["get", "deploy", "hello", "-n", "team", "-o", "yaml"]);
    assert!(live.contains("memory: 64Mi"), "no defaults: {live}");
    let out = cluster.berth(&["diff", "-f", bare_path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // Errors exit 2 with an `error:` line: a missing file, a bad
    // manifest, an unreachable scheduler.
    let out = cluster.berth(&["diff", "-f", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    let out = cluster.berth_with_stdin(&["diff", "-f", "-"], "kind: Deployment\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<stdin>"), "{}", stderr(&out));
    let out = Command::new(berth_bin())
        .args(["diff", "-f", path])
        .env("BERTH_CONFIG", cluster.dir.path().join("no-such-config"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));

    // The exit codes are in the help.
    let help = cluster.ok(&["diff", "--help"]);
    assert!(
        help.contains("0 when nothing would change, 1 when something would, 2 on error"),
        "{help}"
    );
    let help = cluster.ok(&["--help"]);
    assert!(help.contains("Exit status:"), "{help}");
}
