//! HorizontalAutoscaler: an idle Deployment goes to zero instances and the
//! next request through the ingress wakes it and is answered; load above
//! the target raises replicas, and they come back down after the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_api::Object;

use crate::harness::{Cluster, HELLO_HOST, http_get, http_get_path};

fn manifest(autoscaler: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 1
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      component: {{component}}
      env:
        - {{name: GREETING, value: Hello from berth}}
      resources:
        requests: {{cpu: 100m, memory: 32Mi}}
---
apiVersion: berth.dev/v1
kind: HorizontalAutoscaler
metadata:
  name: hello
spec:
  scaleTargetRef: {{kind: Deployment, name: hello}}
{autoscaler}"
    )
}

/// The hello Deployment's `spec.replicas`.
fn replicas(cluster: &Cluster) -> i64 {
    cluster
        .objects("deployments")
        .into_iter()
        .find_map(|o| match o {
            Object::Deployment(d) if d.metadata.name == "hello" => Some(d.spec.replicas),
            _ => None,
        })
        .expect("the hello deployment")
}

#[test]
fn an_idle_deployment_scales_to_zero_and_the_next_request_wakes_it() {
    let cluster = Cluster::start(1);
    let path = cluster.manifest(
        "autoscaled",
        &manifest(
            "  minReplicas: 0
  maxReplicas: 2
  targetConcurrency: 10
  scaleToZeroAfterSeconds: 2
  behavior:
    scaleDown: {stabilizationWindowSeconds: 1}
",
        ),
    );
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    cluster.wait_ready(1);
    let ingress = cluster.nodes[0].ingress;
    assert_eq!(http_get(ingress, HELLO_HOST).unwrap().0, 200);

    cluster.wait_for("scale to zero", Duration::from_secs(60), || {
        replicas(&cluster) == 0
            && cluster.live_instances() == 0
            && cluster.ok(&["get", "deployment", "hello"]).contains("0/0")
    });
    let described = cluster.ok(&["get", "hpa", "hello"]);
    assert!(described.contains("Deployment/hello"), "{described}");

    // The next request is held while the scheduler wakes the Deployment.
    let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("Hello from berth!"), "{body}");
    assert!(replicas(&cluster) >= 1);
    // Awake, it serves as before.
    assert_eq!(http_get(ingress, HELLO_HOST).unwrap().0, 200);
}

#[test]
fn load_above_the_target_scales_up_and_its_end_scales_down_after_the_window() {
    let cluster = Cluster::start(1);
    let path = cluster.manifest(
        "autoscaled",
        &manifest(
            "  minReplicas: 1
  maxReplicas: 3
  targetConcurrency: 1
  behavior:
    scaleDown: {stabilizationWindowSeconds: 3}
",
        ),
    );
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    cluster.wait_ready(1);
    let ingress = cluster.nodes[0].ingress;

    // Six clients, each always waiting on a 300 ms request: about six in
    // flight for one instance whose target is one.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = http_get_path(ingress, HELLO_HOST, "/sleep/300");
                }
            })
        })
        .collect();
    cluster.wait_for("a scale-up", Duration::from_secs(60), || {
        replicas(&cluster) >= 2
    });
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert!(replicas(&cluster) <= 3, "never above maxReplicas");

    cluster.wait_for("the scale-down", Duration::from_secs(60), || {
        replicas(&cluster) == 1
    });
    let autoscaler = cluster
        .objects("horizontalautoscalers")
        .into_iter()
        .find_map(|o| match o {
            Object::HorizontalAutoscaler(a) => a.status,
            _ => None,
        })
        .expect("the autoscaler's status");
    assert!(autoscaler.last_scale_time.is_some());
    assert_eq!(autoscaler.desired_replicas, 1);
    let events = cluster.ok(&["events"]);
    assert!(events.contains("SuccessfulRescale"), "{events}");
}
