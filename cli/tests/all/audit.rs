//! The audit log end to end: the scheduler writes one JSON line per
//! mutating request to `audit.log` in its data directory, with the user,
//! the verb, the object and the result; reads are not recorded.

use crate::harness::Cluster;

/// The audit log's lines, parsed.
fn lines(cluster: &Cluster) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(cluster.scheduler.data.join("audit.log")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn mutating_requests_are_recorded_with_who_what_and_the_result() {
    let cluster = Cluster::start(0);
    let manifest = cluster.hello_manifest(1);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.ok(&["get", "deployments"]);
    cluster.ok(&["scale", "deployment/hello", "--replicas", "2"]);
    cluster.ok(&["delete", "deployment", "hello"]);
    let out = cluster.berth(&["delete", "deployment", "hello"]);
    assert!(!out.status.success());

    let lines = lines(&cluster);
    let of = |verb: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["verb"] == verb).collect()
    };
    assert!(of("get").is_empty(), "reads are not recorded: {lines:?}");
    let apply = of("apply");
    let apply = apply
        .iter()
        .find(|l| l["kind"] == "Deployment")
        .unwrap_or_else(|| panic!("no apply of the Deployment: {lines:?}"));
    assert_eq!(apply["user"], "user:admin");
    assert_eq!(apply["namespace"], "default");
    assert_eq!(apply["name"], "hello");
    assert_eq!(apply["result"], "allowed");
    assert!(apply["time"].as_str().unwrap().ends_with('Z'), "{apply}");
    let scale = of("patch-deployment");
    assert_eq!(scale.len(), 1, "{lines:?}");
    assert_eq!(scale[0]["name"], "hello");
    let deletes = of("delete");
    assert_eq!(deletes.len(), 2, "{lines:?}");
    assert_eq!(deletes[0]["result"], "allowed");
    assert_eq!(deletes[1]["result"], "error");
    assert_eq!(deletes[1]["code"], "NotFound");
    assert_eq!(deletes[1]["user"], "user:admin");
}
