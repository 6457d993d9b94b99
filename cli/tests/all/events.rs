//! Events on a real cluster: `berth events -A -w`, started before anything
//! happens, prints lines for instances being scheduled and started, failing
//! their liveness probe, OOM-killed (where cgroups are writable), evicted by
//! a `NoExecute` taint and then unschedulable; and `berth describe` shows
//! the events of Deployments and Nodes.
//!
//! The `gated` instance never passes its readiness probe: a node reports a
//! readiness failure's message only when an instance turns from ready to
//! not ready, so it has `Started` and no `Unhealthy` (the scheduler's side
//! of readiness events is unit-tested in `scheduler/src/events.rs`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_api::Object;

use crate::harness::{Cluster, Proc, berth_bin, hostile_wasm, http_get_path};

const HOSTILE_HOST: &str = "hostile.default.berth.localhost";

const MANIFEST: &str = "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: 1
  selector:
    matchLabels: {app: probed}
  template:
    metadata:
      labels: {app: probed}
    spec:
      component: {component}
      livenessProbe:
        httpGet: {path: /nope}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: berth.dev/v1
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
  name: hostile
spec:
  replicas: 1
  selector:
    matchLabels: {app: hostile}
  template:
    metadata:
      labels: {app: hostile}
    spec:
      component: {hostile}
      isolation: dedicated
      timeoutSeconds: 2
      resources:
        limits: {memory: 32Mi}
";

/// The lines of a running `berth events -w`, read as they are printed.
struct Watch {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(cluster: &Cluster) -> Watch {
        let mut child = Command::new(berth_bin())
            .args(["events", "-A", "-w"])
            .env("BERTH_CONFIG", &cluster.scheduler.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch {
            _proc: Proc::new(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line (printed before or after this call) with every one
    /// of `words`; returns it.
    fn expect(&mut self, words: &[&str], timeout: Duration) -> String {
        let has = |line: &str| words.iter().all(|w| line.contains(w));
        if let Some(line) = self.seen.iter().find(|l| has(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if has(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line of `berth events -w` has {words:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn cgroups_available(cluster: &Cluster) -> bool {
    cluster.objects("nodes").iter().all(|o| {
        matches!(o, Object::Node(n)
            if n.metadata.labels.get("berth.dev/cgroups").is_some_and(|v| v != "unavailable"))
    })
}

#[test]
fn events_are_told_for_every_step_and_streamed_by_events_watch() {
    let cluster = Cluster::start(1);
    let ingress = cluster.nodes[0].ingress;
    let mut watch = Watch::start(&cluster);
    cluster.wait_for("the node to register", Duration::from_secs(30), || {
        !cluster.objects("nodes").is_empty()
    });
    let header = watch.expect(&["NodeReady"], Duration::from_secs(30));
    assert!(header.contains("node/node-0"), "{header}");
    assert!(
        watch.seen[0].starts_with("NAMESPACE") && watch.seen[0].contains("LAST SEEN"),
        "{:?}",
        watch.seen
    );

    let yaml = MANIFEST.replace("{hostile}", &hostile_wasm().display().to_string());
    let manifest = cluster.manifest("events", &yaml);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    let wait = Duration::from_secs(30);
    let scheduled = watch.expect(&["Normal", "Scheduled", "instance/gated-"], wait);
    assert!(scheduled.contains("to node-0"), "{scheduled}");
    watch.expect(&["Normal", "Started", "instance/gated-"], wait);
    watch.expect(&["Normal", "SuccessfulCreate", "deployment/gated"], wait);
    watch.expect(
        &[
            "Warning",
            "Unhealthy",
            "instance/probed-",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
        ],
        wait,
    );
    watch.expect(&["Normal", "Started", "instance/hostile-"], wait);

    if cgroups_available(&cluster) {
        // Six requests holding 24 MiB each are far over the dedicated
        // sandbox's cgroup limit (32 MiB + 64 MiB): the kernel kills it.
        let holders: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn(move || http_get_path(ingress, HOSTILE_HOST, "/hold/24/4000"))
            })
            .collect();
        let oom = watch.expect(&["Warning", "OOMKilled", "instance/hostile-"], wait);
        assert!(oom.contains("memory limit"), "{oom}");
        for holder in holders {
            let _ = holder.join().unwrap();
        }
    } else {
        eprintln!("not checking OOMKilled: cgroups are not writable here");
    }

    // A NoExecute taint evicts every instance; their replacements find no
    // node.
    cluster.ok(&["taint", "node", "node-0", "drain=now:NoExecute"]);
    let evicted = watch.expect(&["Normal", "TaintManagerEviction", "instance/gated-"], wait);
    assert!(evicted.contains("drain=now:NoExecute"), "{evicted}");
    watch.expect(&["Warning", "FailedScheduling", "untolerated taint"], wait);

    // describe shows the events of the object itself.
    let described = cluster.ok(&["describe", "deployment", "gated"]);
    let events: Vec<&str> = described
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .collect();
    assert!(
        events.iter().any(|l| l.contains("SuccessfulCreate")),
        "{described}"
    );
    assert!(
        events.iter().any(|l| l.contains("SuccessfulDelete")),
        "{described}"
    );
    let described = cluster.ok(&["describe", "node", "node-0"]);
    assert!(described.contains("NodeReady"), "{described}");

    // Without -w: what exists, then the command ends.
    let listed = cluster.ok(&["events", "--for", "deployment/gated"]);
    assert!(listed.starts_with("LAST SEEN"), "{listed}");
    assert!(
        listed
            .lines()
            .skip(1)
            .all(|l| l.contains("deployment/gated")),
        "{listed}"
    );
}
