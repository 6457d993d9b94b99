//! Bad manifests: a clear error naming the file and field, a non-zero exit,
//! and nothing changed in the cluster.
//!
//! Each `tests/fixtures/bad/NAME.yaml` has `NAME.error`, the exact stderr
//! of `berth apply -f` on it. `BLESS=1` rewrites the expected files.

use std::path::Path;

use crate::harness::Cluster;

#[test]
fn bad_manifests_are_refused_and_change_nothing() {
    let cluster = Cluster::start(0);
    let before: Vec<_> = ["namespaces", "deployments", "instances"]
        .iter()
        .map(|k| cluster.objects(k))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures found: {cases:?}");
    let bless = std::env::var_os("BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in &cases {
        let relative = case.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let out = cluster.berth(&["apply", "-f", relative.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{} was accepted", relative.display());
        assert!(
            out.stdout.is_empty(),
            "{} printed {:?}",
            relative.display(),
            out.stdout
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        let expected_path = case.with_extension("error");
        if bless {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if stderr != expected {
            mismatches.push(format!(
                "{}:\n  expected: {expected:?}\n  actual:   {stderr:?}",
                relative.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    let after: Vec<_> = ["namespaces", "deployments", "instances"]
        .iter()
        .map(|k| cluster.objects(k))
        .collect();
    assert_eq!(before, after, "a refused apply changes nothing");
}

#[test]
fn unknown_kind_and_missing_config_are_clear() {
    let cluster = Cluster::start(0);
    let out = cluster.berth(&["get", "pods"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: unknown kind \"pods\": expected namespaces, deployments, daemonsets, jobs, cronjobs, services, ingresses, poddisruptionbudgets, resourcequotas, limitranges, instances, nodes, priorityclasses or events\n"
    );
    let out = std::process::Command::new(crate::harness::berth_bin())
        .args(["get", "deployments"])
        .env("BERTH_CONFIG", cluster.dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: cannot read client config "),
        "{stderr}"
    );
}
