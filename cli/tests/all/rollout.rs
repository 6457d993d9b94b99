//! Releases: a rolling update under load drops no request, `rollout undo`
//! returns, and a rollout that cannot progress fails `rollout status` while
//! the old version keeps serving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Cluster, HELLO_HOST, http_get};

fn manifest(greeting: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 3
  progressDeadlineSeconds: 4
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      component: {{component}}
      env:
        - {{name: GREETING, value: {greeting}}}
{extra}"
    )
}

/// Sends requests to `ingress` until stopped; returns the bodies' greetings
/// and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(ingress: std::net::SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen, failures) = (stop.clone(), seen.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http_get(ingress, HELLO_HOST) {
                        Ok((200, body)) => {
                            let greeting = body.split('!').next().unwrap_or_default().to_owned();
                            seen.lock().unwrap().push(greeting);
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Load {
            stop,
            seen,
            failures,
            thread: Some(thread),
        }
    }

    fn last(&self) -> Option<String> {
        self.seen.lock().unwrap().last().cloned()
    }

    fn finish(mut self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let seen = self.seen.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (seen, failures)
    }
}

#[test]
fn a_rolling_update_under_load_drops_nothing_and_undo_returns() {
    // One node, so every instance is behind the ingress the load uses.
    let cluster = Cluster::start(1);
    let v1 = cluster.manifest("v1", &manifest("v1", ""));
    cluster.ok(&["apply", "-f", v1.to_str().unwrap()]);
    cluster.wait_ready(3);
    let load = Load::start(cluster.nodes[0].ingress);

    let v2 = cluster.manifest("v2", &manifest("v2", ""));
    cluster.ok(&["apply", "-f", v2.to_str().unwrap()]);
    let status = cluster.ok(&["rollout", "status", "deployment/hello", "--timeout", "60"]);
    assert!(
        status.ends_with("deployment \"hello\" successfully rolled out\n"),
        "{status}"
    );
    cluster.wait_for("v2 answering", Duration::from_secs(10), || {
        load.last().as_deref() == Some("v2")
    });
    let history = cluster.ok(&["rollout", "history", "deployment/hello"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );

    cluster.ok(&["rollout", "undo", "deployment/hello"]);
    cluster.ok(&["rollout", "status", "deployment/hello", "--timeout", "60"]);
    cluster.wait_for("v1 answering again", Duration::from_secs(10), || {
        load.last().as_deref() == Some("v1")
    });
    let (seen, failures) = load.finish();
    assert_eq!(failures, Vec::<String>::new(), "no request failed");
    assert!(
        seen.iter().any(|g| g == "v2") && seen.len() > 20,
        "{} requests",
        seen.len()
    );
    assert_eq!(cluster.live_instances(), 3);
}

#[test]
fn a_rollout_that_cannot_progress_fails_and_the_old_version_keeps_serving() {
    let cluster = Cluster::start(1);
    let v1 = cluster.manifest("v1", &manifest("v1", ""));
    cluster.ok(&["apply", "-f", v1.to_str().unwrap()]);
    cluster.wait_ready(3);
    // v2 can run nowhere: its instances stay Pending, never available.
    let stuck = cluster.manifest(
        "stuck",
        &manifest("v2", "      nodeSelector: {disktype: none-has-this}\n"),
    );
    cluster.ok(&["apply", "-f", stuck.to_str().unwrap()]);
    let out = cluster.berth(&["rollout", "status", "deployment/hello", "--timeout", "60"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "error: deployment \"hello\" exceeded its progress deadline\n"
    );
    for _ in 0..20 {
        let (status, body) = http_get(cluster.nodes[0].ingress, HELLO_HOST).unwrap();
        assert_eq!((status, body.starts_with("v1!")), (200, true), "{body}");
    }
}
