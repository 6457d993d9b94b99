//! A cluster end to end: deploy, serve, survive a scheduler crash, scale,
//! delete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use berth_api::Object;

use crate::harness::{Cluster, HELLO_HOST, Scheduler, http_get};

#[test]
fn three_replicas_serve_through_every_node() {
    let cluster = Cluster::start(2);
    let manifest = cluster.hello_manifest(3);
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "deployment/hello created\n");
    cluster.wait_ready(3);

    let instances = cluster.objects("instances");
    let on_nodes: std::collections::BTreeSet<_> = instances
        .iter()
        .filter_map(|o| match o {
            Object::Instance(i) => i.spec.node_name.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(on_nodes.len(), 2, "placement spreads over both nodes");

    for node in &cluster.nodes {
        let (status, body) = http_get(node.ingress, HELLO_HOST).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("Hello from berth! (instance hello-"),
            "{body}"
        );
        let (status, body) = http_get(node.ingress, "nope.default.berth.localhost").unwrap();
        assert_eq!(status, 404);
        assert!(body.contains("no deployment serves host"), "{body}");
    }

    // The same file again changes nothing.
    let before = cluster.objects("deployments");
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "deployment/hello unchanged\n");
    assert_eq!(cluster.objects("deployments"), before);

    // Tables look like kubectl's.
    let table = cluster.ok(&["get", "deployments"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["hello", "3/3", "3", "3"]);
    let nodes = cluster.ok(&["get", "nodes"]);
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        2,
        "{nodes}"
    );
}

/// The identity of an object for comparison across a restart.
fn identities(cluster: &Cluster, kind: &str) -> BTreeMap<String, (String, String)> {
    cluster
        .objects(kind)
        .iter()
        .map(|o| {
            let m = o.metadata();
            (
                m.name.clone(),
                (
                    m.uid.clone().unwrap_or_default(),
                    m.resource_version.clone().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

#[test]
fn scheduler_crash_loses_nothing_and_the_app_keeps_serving() {
    let mut cluster = Cluster::start(2);
    let manifest = cluster.hello_manifest(3);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(3);
    let kinds = ["namespaces", "deployments", "instances"];
    let before: Vec<_> = kinds.iter().map(|k| identities(&cluster, k)).collect();

    // Hammer both ingresses for the whole crash and restart.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ingresses: Vec<_> = cluster.nodes.iter().map(|n| n.ingress).collect();
    let load = {
        let (stop, served, failures) = (stop.clone(), served.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for ingress in &ingresses {
                    match http_get(*ingress, HELLO_HOST) {
                        Ok((200, _)) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let addr = cluster.scheduler.addr;
    cluster.scheduler.proc.kill();
    std::thread::sleep(Duration::from_secs(2));
    let during_outage = served.load(Ordering::Relaxed);
    assert!(
        cluster.berth(&["get", "deployments"]).status.code() != Some(0),
        "the scheduler is really down"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        served.load(Ordering::Relaxed) > during_outage,
        "nodes serve while the scheduler is down"
    );

    cluster.scheduler = Scheduler::start(cluster.dir.path(), &addr.to_string());
    let after: Vec<_> = kinds.iter().map(|k| identities(&cluster, k)).collect();
    assert_eq!(before, after, "uids and resourceVersions survive the crash");

    // The nodes reconnect by themselves: their heartbeats reach the new
    // scheduler process.
    cluster.wait_for("nodes to reconnect", Duration::from_secs(60), || {
        cluster.objects("nodes").iter().all(|o| match o {
            Object::Node(n) => n.status.last_heartbeat_time.is_some() && n.status.is_ready(),
            _ => false,
        })
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(
        *failures.lock().unwrap(),
        Vec::<String>::new(),
        "no request failed"
    );
    assert!(served.load(Ordering::Relaxed) > 10);

    // And the cluster still works: scaling goes through the new process.
    let manifest = cluster.hello_manifest(4);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_ready(4);
}

#[test]
fn scale_up_down_and_delete() {
    let cluster = Cluster::start(2);
    let three = cluster.hello_manifest(3);
    cluster.ok(&["apply", "-f", three.to_str().unwrap()]);
    cluster.wait_ready(3);

    let five = cluster.hello_manifest(5);
    assert_eq!(
        cluster.ok(&["apply", "-f", five.to_str().unwrap()]),
        "deployment/hello configured\n"
    );
    cluster.wait_ready(5);

    let one = cluster.hello_manifest(1);
    cluster.ok(&["apply", "-f", one.to_str().unwrap()]);
    cluster.wait_ready(1);
    cluster.wait_for(
        "terminated instances to go",
        Duration::from_secs(30),
        || cluster.objects("instances").len() == 1,
    );

    let out = cluster.ok(&["delete", "-f", one.to_str().unwrap()]);
    assert_eq!(out, "Deployment default/hello deleted\n");
    cluster.wait_for("instances to stop", Duration::from_secs(30), || {
        cluster.objects("instances").is_empty()
    });
    for node in &cluster.nodes {
        cluster.wait_for("ingress to forget hello", Duration::from_secs(10), || {
            matches!(http_get(node.ingress, HELLO_HOST), Ok((404, _)))
        });
    }
    assert!(cluster.objects("deployments").is_empty());
    let out = cluster.berth(&["delete", "deployment", "hello"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: Deployment default/hello not found\n"
    );
}
