//! Instance lifecycle on a real cluster: readiness probes gate traffic, a
//! failing liveness probe restarts the instance with back-off until it is
//! reported `CrashLoopBackOff`, and a stopped instance's request in flight
//! finishes within its grace period.

use std::time::Duration;

use berth_api::{Object, Phase};

use crate::harness::{Cluster, http_get_path};

const MANIFEST: &str = "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: gated
spec:
  replicas: 1
  selector:
    matchLabels: {app: gated}
  template:
    metadata:
      labels: {app: gated}
    spec:
      component: {component}
      readinessProbe:
        httpGet: {path: /status/503}
        periodSeconds: 1
---
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: healthy
spec:
  replicas: 1
  selector:
    matchLabels: {app: healthy}
  template:
    metadata:
      labels: {app: healthy}
    spec:
      component: {component}
      terminationGracePeriodSeconds: 10
      readinessProbe:
        httpGet: {path: /healthz}
        periodSeconds: 1
---
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: sick
spec:
  replicas: 1
  selector:
    matchLabels: {app: sick}
  template:
    metadata:
      labels: {app: sick}
    spec:
      component: {component}
      env:
        - {name: UNHEALTHY, value: \"1\"}
      livenessProbe:
        httpGet: {path: /health-env}
        periodSeconds: 1
        failureThreshold: 1
";

fn instance(cluster: &Cluster, prefix: &str) -> Option<berth_api::Instance> {
    cluster
        .objects("instances")
        .into_iter()
        .find_map(|o| match o {
            Object::Instance(i) if i.metadata.name.starts_with(prefix) => Some(*i),
            _ => None,
        })
}

#[test]
fn probes_gate_traffic_restart_with_back_off_and_stops_are_graceful() {
    let cluster = Cluster::start(1);
    let ingress = cluster.nodes[0].ingress;
    let manifest = cluster.manifest("lifecycle", MANIFEST);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    cluster.wait_for("healthy ready", Duration::from_secs(60), || {
        instance(&cluster, "healthy-").is_some_and(|i| i.status.ready)
    });
    let (status, _) = http_get_path(ingress, "healthy.default.berth.localhost", "/").unwrap();
    assert_eq!(status, 200);

    // Running but never ready: no traffic, and the table says 0/1.
    let gated = instance(&cluster, "gated-").unwrap();
    assert_eq!(gated.status.phase, Phase::Running);
    assert!(!gated.status.ready);
    let (status, _) = http_get_path(ingress, "gated.default.berth.localhost", "/").unwrap();
    assert_ne!(status, 200, "a not-ready instance gets no traffic");
    let table = cluster.ok(&["get", "instances"]);
    let line = table.lines().find(|l| l.starts_with("gated-")).unwrap();
    assert!(line.contains("0/1"), "{table}");

    // Liveness fails at every probe: restarted, then in CrashLoopBackOff.
    cluster.wait_for("sick in CrashLoopBackOff", Duration::from_secs(60), || {
        instance(&cluster, "sick-")
            .is_some_and(|i| i.status.reason == "CrashLoopBackOff" && i.status.restart_count >= 2)
    });
    let events = cluster.ok(&["get", "events"]);
    assert!(
        events.contains("Unhealthy") && events.contains("Liveness probe failed"),
        "{events}"
    );

    // A request in flight when its instance is stopped still completes.
    let slow = std::thread::spawn(move || {
        http_get_path(ingress, "healthy.default.berth.localhost", "/sleep/3000")
    });
    std::thread::sleep(Duration::from_millis(500));
    cluster.ok(&["delete", "deployment", "healthy"]);
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    cluster.wait_for(
        "healthy gone from the ingress",
        Duration::from_secs(30),
        || {
            http_get_path(ingress, "healthy.default.berth.localhost", "/")
                .is_ok_and(|(status, _)| status == 404)
        },
    );
}
