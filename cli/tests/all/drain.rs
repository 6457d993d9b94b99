//! Draining and deleting nodes end to end: `berth drain` evicts a node's
//! instances one PodDisruptionBudget allows at a time (and waits, then
//! gives up, when the budget allows none); a DaemonSet's instances stop
//! a drain unless `--ignore-daemonsets`; `berth delete node` replaces the
//! node's instances elsewhere at once and the still-running node stops
//! serving them, at once or when it comes back from being cut off.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_api::{Instance, Object, Phase};

use crate::harness::{Cluster, NodeProc, Scheduler, berth_bin, http_get};

const WEB: &str = "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      component: {component}
      terminationGracePeriodSeconds: 1
      readinessProbe:
        httpGet: {path: /healthz}
        periodSeconds: 1
---
apiVersion: berth.dev/v1
kind: PodDisruptionBudget
metadata:
  name: web-pdb
spec:
  minAvailable: MIN
  selector:
    matchLabels: {app: web}
";

const AGENT: &str = "apiVersion: berth.dev/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      component: {component}
";

const WEB_HOST: &str = "web.default.berth.localhost";

/// A scheduler and two nodes, `node-a` and `node-b`.
fn two_nodes() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let scheduler =
        Scheduler::start_with(dir.path(), "127.0.0.1:0", &["--node-grace-seconds", "3"]);
    let nodes = ["node-a", "node-b"]
        .iter()
        .map(|name| NodeProc::start(dir.path(), &scheduler, name))
        .collect();
    Cluster {
        dir,
        scheduler,
        nodes,
    }
}

/// `web`'s live instances.
fn web(cluster: &Cluster) -> Vec<Instance> {
    cluster
        .objects("instances")
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i)
                if i.metadata.deletion_timestamp.is_none()
                    && i.metadata.owner_references.iter().any(|r| r.name == "web") =>
            {
                Some(*i)
            }
            _ => None,
        })
        .collect()
}

/// How many of `web`'s instances are Running and ready, on which nodes.
fn ready_on(cluster: &Cluster) -> Vec<String> {
    web(cluster)
        .into_iter()
        .filter(|i| i.status.phase == Phase::Running && i.status.ready)
        .filter_map(|i| i.spec.node_name)
        .collect()
}

/// Applies `web` with `min` as its budget's `minAvailable`, all three
/// instances on `node-a` (node-b cordoned meanwhile), and waits until
/// they are ready.
fn web_on_node_a(cluster: &Cluster, min: u32) {
    cluster.ok(&["cordon", "node-b"]);
    let manifest = cluster.manifest("web", &WEB.replace("MIN", &min.to_string()));
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for("3 ready on node-a", Duration::from_secs(90), || {
        let ready = ready_on(cluster);
        ready.len() == 3 && ready.iter().all(|n| n == "node-a")
    });
    cluster.ok(&["uncordon", "node-b"]);
}

#[test]
fn drain_waits_for_the_budget_and_never_leaves_fewer_than_it_asks() {
    let cluster = two_nodes();
    web_on_node_a(&cluster, 3);
    let pdb = cluster.ok(&["get", "pdb"]);
    let row: Vec<&str> = pdb.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["web-pdb", "3", "N/A", "0"], "{pdb}");

    // A budget that allows no disruption: the drain retries, then gives up.
    let blocked = cluster.berth(&["drain", "node-a", "--timeout", "4s"]);
    let stdout = String::from_utf8_lossy(&blocked.stdout);
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(!blocked.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("node/node-a cordoned"), "{stdout}");
    assert!(
        stdout.contains("evicting instance default/web-"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error when evicting instance default/web-")
            && stderr.contains("(will retry after 1s): cannot evict instance default/web-")
            && stderr.contains(
                "would violate PodDisruptionBudget default/web-pdb (minAvailable 3, healthy 3)"
            ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: unable to drain node \"node-a\": global timeout reached"),
        "{stderr}"
    );
    assert_eq!(ready_on(&cluster), ["node-a"; 3], "nothing was evicted");

    // Budget two of three: the drain moves them one at a time.
    let manifest = cluster.manifest("web", &WEB.replace("MIN", "2"));
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let done = Arc::new(AtomicBool::new(false));
    let drain = {
        let config = cluster.scheduler.config.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let out = Command::new(berth_bin())
                .args(["drain", "node-a", "--timeout", "120s"])
                .env("BERTH_CONFIG", config)
                .output()
                .unwrap();
            done.store(true, Ordering::SeqCst);
            out
        })
    };
    let mut fewest = usize::MAX;
    while !done.load(Ordering::SeqCst) {
        fewest = fewest.min(ready_on(&cluster).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = drain.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(fewest >= 2, "only {fewest} ready at one point of the drain");
    assert!(stdout.contains("node/node-a already cordoned"), "{stdout}");
    assert_eq!(
        stdout.matches("evicting instance default/web-").count(),
        3,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(" evicted\n").count(),
        3,
        "each instance reported gone: {stdout}"
    );
    assert!(stdout.ends_with("node/node-a drained\n"), "{stdout}");
    assert!(
        stderr.contains(
            "would violate PodDisruptionBudget default/web-pdb (minAvailable 2, healthy 2)"
        ),
        "the second eviction waited for a replacement: {stderr}"
    );
    cluster.wait_for("3 ready on node-b", Duration::from_secs(60), || {
        let ready = ready_on(&cluster);
        ready.len() == 3 && ready.iter().all(|n| n == "node-b")
    });
    assert!(
        cluster
            .placements("web")
            .iter()
            .all(|n| n.as_deref() == Some("node-b")),
        "no instance left on node-a"
    );
    let (status, _) = http_get(cluster.nodes[1].ingress, WEB_HOST).unwrap();
    assert_eq!(status, 200);
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-a") && l.contains("SchedulingDisabled")),
        "{nodes}"
    );
}

#[test]
fn daemonset_instances_stop_a_drain_unless_ignored() {
    let cluster = two_nodes();
    let manifest = cluster.manifest("agent", AGENT);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for("an agent on each node", Duration::from_secs(90), || {
        cluster
            .running_nodes()
            .iter()
            .filter(|n| *n == "node-a")
            .count()
            == 1
    });
    let refused = cluster.berth(&["drain", "node-a"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(
            "cannot evict DaemonSet-managed instances (use --ignore-daemonsets to ignore): \
             default/agent-"
        ),
        "{stderr}"
    );
    let out = cluster.berth(&["drain", "node-a", "--ignore-daemonsets"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("Warning: ignoring DaemonSet-managed instances: default/agent-"),
        "{stderr}"
    );
    assert!(stdout.ends_with("node/node-a drained\n"), "{stdout}");
    assert!(
        cluster.running_nodes().iter().any(|n| n == "node-a"),
        "the agent stays on its node"
    );
}

#[test]
fn deleting_a_node_replaces_its_instances_and_the_node_stops_them() {
    let cluster = two_nodes();
    web_on_node_a(&cluster, 1);
    let (status, _) = http_get(cluster.nodes[0].ingress, WEB_HOST).unwrap();
    assert_eq!(status, 200, "node-a serves web before it is deleted");

    let out = cluster.ok(&["delete", "node", "node-a"]);
    assert_eq!(out, "Node node-a deleted\n");
    cluster.wait_for("3 ready on node-b", Duration::from_secs(60), || {
        let ready = ready_on(&cluster);
        ready.len() == 3 && ready.iter().all(|n| n == "node-b")
    });
    assert_eq!(web(&cluster).len(), 3, "never more than replicas");
    // The node process still runs, but its certificate is revoked: it
    // stopped what it ran and does not come back as a Node.
    cluster.wait_for("node-a to stop serving", Duration::from_secs(30), || {
        matches!(http_get(cluster.nodes[0].ingress, WEB_HOST), Ok((404, _)))
    });
    std::thread::sleep(Duration::from_secs(3));
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(!nodes.contains("node-a"), "{nodes}");
    let missing = cluster.berth(&["delete", "node", "node-a"]);
    assert!(!missing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "error: Node node-a not found\n"
    );
}

#[test]
fn a_node_deleted_while_cut_off_stops_its_instances_when_it_returns() {
    let cluster = two_nodes();
    web_on_node_a(&cluster, 1);
    let (status, _) = http_get(cluster.nodes[0].ingress, WEB_HOST).unwrap();
    assert_eq!(status, 200, "node-a serves web before it is cut off");
    // Frozen, node-a hears nothing: neither the deletion nor the close of
    // its connection. Its sandboxes keep running the instances.
    cluster.nodes[0].signal("STOP");
    cluster.ok(&["delete", "node", "node-a"]);
    cluster.wait_for("3 ready on node-b", Duration::from_secs(60), || {
        let ready = ready_on(&cluster);
        ready.len() == 3 && ready.iter().all(|n| n == "node-b")
    });
    cluster.nodes[0].signal("CONT");
    // Back, it learns its certificate is revoked and stops what it ran.
    cluster.wait_for("node-a to stop serving", Duration::from_secs(60), || {
        matches!(http_get(cluster.nodes[0].ingress, WEB_HOST), Ok((404, _)))
    });
    assert_eq!(web(&cluster).len(), 3, "never more than replicas");
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(!nodes.contains("node-a"), "{nodes}");
}
