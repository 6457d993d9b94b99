//! Self-healing: a node that dies has its instances replaced elsewhere
//! within seconds, and a node that comes back is fenced.

use std::time::{Duration, Instant};

use berth_api::Object;

use crate::harness::{Cluster, HELLO_HOST, NodeProc, Scheduler, http_get};

#[test]
fn a_dead_nodes_instances_are_replaced_within_seconds_and_it_is_fenced_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler =
        Scheduler::start_with(dir.path(), "127.0.0.1:0", &["--node-grace-seconds", "2"]);
    let mut cluster = Cluster {
        nodes: (0..3)
            .map(|i| NodeProc::start(dir.path(), &scheduler, &format!("node-{i}")))
            .collect(),
        scheduler,
        dir,
    };
    let manifest = cluster.hello_manifest(3);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(3);
    let before = cluster.running_nodes();
    assert!(
        before.iter().any(|n| n == "node-2"),
        "one instance per node: {before:?}"
    );

    let killed = Instant::now();
    cluster.nodes[2].kill();
    cluster.wait_for(
        "replacements running elsewhere",
        Duration::from_secs(30),
        || {
            let now = cluster.running_nodes();
            now.len() == 3 && now.iter().all(|n| n != "node-2")
        },
    );
    let recovered = killed.elapsed();
    eprintln!("node loss: 3 instances Running again {recovered:?} after kill -9 (grace 2 s)");
    for node in &cluster.nodes[..2] {
        let (status, _) = http_get(node.ingress, HELLO_HOST).unwrap();
        assert_eq!(status, 200);
    }
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-2") && l.contains("NotReady")),
        "{nodes}"
    );

    // The node comes back on its data directory: it rejoins by itself, runs
    // none of the replaced instances, and the Deployment keeps 3.
    let returned = NodeProc::start(cluster.dir.path(), &cluster.scheduler, "node-2");
    cluster.wait_for("node-2 Ready again", Duration::from_secs(30), || {
        cluster.objects("nodes").iter().any(
            |o| matches!(o, Object::Node(n) if n.metadata.name == "node-2" && n.status.is_ready()),
        )
    });
    let (status, _) = http_get(returned.ingress, HELLO_HOST).unwrap();
    assert_eq!(
        status, 404,
        "the returned node serves none of the replaced instances"
    );
    assert_eq!(cluster.live_instances(), 3, "never more than replicas");
    let describe = cluster.ok(&["describe", "node", "node-2"]);
    assert!(describe.contains("Taints:           <none>"), "{describe}");
    cluster.nodes[2] = returned;
}
