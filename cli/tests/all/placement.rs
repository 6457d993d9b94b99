//! Placement on real nodes: taints and tolerations, labels and affinity,
//! and an explained Pending instance.

use std::time::Duration;

use berth_api::{Object, Phase};

use crate::harness::{Cluster, NodeProc};

const GI4: &str = "4294967296";

fn cluster() -> Cluster {
    let mut cluster = Cluster::start(0);
    let dir = cluster.dir.path().to_owned();
    let memory = ["--memory-bytes", GI4, "--cpu-millis", "2000"];
    fn with<'a>(memory: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [memory, extra].concat()
    }
    cluster.nodes.push(NodeProc::start_with(
        &dir,
        &cluster.scheduler,
        "gpu-node",
        &with(&memory, &["--taint", "gpu=true:NoSchedule"]),
    ));
    cluster.nodes.push(NodeProc::start_with(
        &dir,
        &cluster.scheduler,
        "ssd-node",
        &with(&memory, &["--label", "disktype=ssd"]),
    ));
    cluster.nodes.push(NodeProc::start_with(
        &dir,
        &cluster.scheduler,
        "plain-node",
        &with(&memory, &[]),
    ));
    cluster.wait_for("three ready nodes", Duration::from_secs(30), || {
        cluster
            .objects("nodes")
            .iter()
            .filter(|o| matches!(o, Object::Node(n) if n.status.is_ready()))
            .count()
            == 3
    });
    cluster
}

const DEPLOYMENTS: &str = "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: on-ssd
spec:
  replicas: 2
  selector:
    matchLabels: {app: on-ssd}
  template:
    metadata:
      labels: {app: on-ssd}
    spec:
      component: {component}
      nodeSelector: {disktype: ssd}
---
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: on-gpu
spec:
  replicas: 2
  selector:
    matchLabels: {app: on-gpu}
  template:
    metadata:
      labels: {app: on-gpu}
    spec:
      component: {component}
      tolerations:
        - {key: gpu, operator: Equal, value: 'true', effect: NoSchedule}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: berth.dev/hostname, operator: In, values: [gpu-node]}
---
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: anywhere
spec:
  replicas: 4
  selector:
    matchLabels: {app: anywhere}
  template:
    metadata:
      labels: {app: anywhere}
    spec:
      component: {component}
";

#[test]
fn tolerations_affinity_and_selectors_place_as_specified() {
    let cluster = cluster();
    let manifest = cluster.manifest("placed", DEPLOYMENTS);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for("every instance placed", Duration::from_secs(60), || {
        ["on-ssd", "on-gpu", "anywhere"].iter().all(|d| {
            let placed = cluster.placements(d);
            !placed.is_empty() && placed.iter().all(Option::is_some)
        })
    });
    let on = |d: &str| -> Vec<String> { cluster.placements(d).into_iter().flatten().collect() };
    assert_eq!(on("on-ssd"), ["ssd-node", "ssd-node"]);
    assert_eq!(on("on-gpu"), ["gpu-node", "gpu-node"]);
    let anywhere = on("anywhere");
    assert_eq!(anywhere.len(), 4);
    assert!(
        anywhere.iter().all(|n| n != "gpu-node"),
        "nothing without the toleration lands on the tainted node: {anywhere:?}"
    );

    let events = cluster.ok(&["get", "events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("Scheduled") && l.contains("to gpu-node")),
        "{events}"
    );

    // Cordoning keeps new instances off a node.
    cluster.ok(&["cordon", "plain-node"]);
    let nodes = cluster.ok(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    let more = cluster.manifest(
        "more",
        &DEPLOYMENTS
            .split("---")
            .nth(2)
            .unwrap()
            .replace("replicas: 4", "replicas: 6"),
    );
    cluster.ok(&["apply", "-f", more.to_str().unwrap()]);
    cluster.wait_for("six placed", Duration::from_secs(60), || {
        let placed = cluster.placements("anywhere");
        placed.len() == 6 && placed.iter().all(Option::is_some)
    });
    let anywhere = on("anywhere");
    assert_eq!(
        anywhere.iter().filter(|n| *n == "plain-node").count(),
        anywhere.len() - 4,
        "the two new instances avoid the cordoned node: {anywhere:?}"
    );
}

#[test]
fn an_instance_that_fits_nowhere_stays_pending_and_says_why() {
    let cluster = cluster();
    let manifest = cluster.manifest(
        "big",
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: big
spec:
  replicas: 1
  selector:
    matchLabels: {app: big}
  template:
    metadata:
      labels: {app: big}
    spec:
      component: {component}
      resources:
        requests: {memory: 8000Mi}
",
    );
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for(
        "an explained Pending instance",
        Duration::from_secs(30),
        || {
            cluster.objects("instances").iter().any(|o| match o {
                Object::Instance(i) => {
                    i.status.phase == Phase::Pending && i.status.reason == "Unschedulable"
                }
                _ => false,
            })
        },
    );
    let instance = cluster
        .objects("instances")
        .into_iter()
        .find_map(|o| match o {
            Object::Instance(i) => Some(i),
            _ => None,
        })
        .unwrap();
    // The tainted node fails the taint check first; the other two lack memory.
    assert_eq!(
        instance.status.message,
        "0/3 nodes are available: 2 insufficient memory, 1 node(s) had untolerated taint {gpu: true}."
    );
    let table = cluster.ok(&["get", "instances"]);
    assert!(table.contains("Unschedulable"), "{table}");
    let described = cluster.ok(&["describe", "instance", &instance.metadata.name]);
    assert!(
        described.contains("0/3 nodes are available: 2 insufficient memory"),
        "{described}"
    );
    let events: Vec<&str> = described
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .collect();
    assert!(
        events
            .iter()
            .any(|l| l.contains("Warning") && l.contains("FailedScheduling")),
        "{described}"
    );
}
