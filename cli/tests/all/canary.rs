//! Canary releases on a real cluster: the ingress gives a canary at
//! weight 10 about a tenth of the requests, `rollout promote --full`
//! replaces the stable revision, and a canary answering 500s is aborted
//! by the scheduler's analysis while the stable revision keeps serving.
//!
//! One node, so that both revisions are behind the ingress the requests
//! use (how nodes split with instances elsewhere is in
//! `docs/decisions/0028-canary.md`).

use std::time::{Duration, Instant};

use berth_api::Object;
use berth_api::canary::CanaryStatus;

use crate::harness::{Cluster, HELLO_HOST, http_get};

/// The hello Deployment, 2 replicas, greeting `greeting`, under a Canary
/// strategy with `canary` (YAML under `canary:`), `env` extra variables.
fn manifest(greeting: &str, canary: &str, env: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  strategy:
    type: Canary
    canary:
{canary}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      component: {{component}}
      env:
        - {{name: GREETING, value: {greeting}}}
{env}"
    )
}

fn canary_status(cluster: &Cluster) -> Option<CanaryStatus> {
    cluster
        .objects("deployments")
        .into_iter()
        .find_map(|o| match o {
            Object::Deployment(d) => d.status.and_then(|s| s.canary),
            _ => None,
        })
}

fn greeting(body: &str) -> &str {
    body.split('!').next().unwrap_or_default()
}

/// Live instances by greeting: `(v1, v2)`.
fn live_by_greeting(cluster: &Cluster) -> (usize, usize) {
    let mut counts = (0, 0);
    for object in cluster.objects("instances") {
        if let Object::Instance(i) = object
            && i.metadata.deletion_timestamp.is_none()
        {
            match i.spec.env.iter().find(|e| e.name == "GREETING") {
                Some(e) if e.value == "v1" => counts.0 += 1,
                Some(e) if e.value == "v2" => counts.1 += 1,
                _ => {}
            }
        }
    }
    counts
}

const STEPS: &str = "      steps:
      - setWeight: 10
      - pause: {}";

#[test]
fn a_canary_at_weight_10_gets_a_tenth_and_promote_replaces_stable() {
    let cluster = Cluster::start(1);
    let ingress = cluster.nodes[0].ingress;
    let v1 = cluster.manifest("v1", &manifest("v1", STEPS, ""));
    cluster.ok(&["apply", "-f", v1.to_str().unwrap()]);
    cluster.wait_ready(2);

    let v2 = cluster.manifest("v2", &manifest("v2", STEPS, ""));
    cluster.ok(&["apply", "-f", v2.to_str().unwrap()]);
    cluster.wait_for(
        "the canary paused at weight 10",
        Duration::from_secs(60),
        || canary_status(&cluster).is_some_and(|c| c.step == 1 && c.weight == 10),
    );
    assert_eq!(
        live_by_greeting(&cluster),
        (2, 1),
        "stable keeps its replicas"
    );
    // The node learns the weight with the canary's readiness: wait for
    // the first canary answer, then count.
    cluster.wait_for("a canary answer", Duration::from_secs(20), || {
        http_get(ingress, HELLO_HOST).is_ok_and(|(_, body)| greeting(&body) == "v2")
    });
    let total = 2000;
    let mut canary = 0;
    for _ in 0..total {
        let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
        assert_eq!(status, 200, "{body}");
        match greeting(&body) {
            "v2" => canary += 1,
            "v1" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        (total * 5 / 100..=total * 15 / 100).contains(&canary),
        "the canary answered {canary} of {total}"
    );
    println!("the canary answered {canary} of {total} requests");
    let described = cluster.ok(&["describe", "deployment", "hello"]);
    assert!(described.contains("weight 10%"), "{described}");

    let promoted = cluster.ok(&["rollout", "promote", "deployment/hello", "--full"]);
    assert_eq!(promoted, "deployment/hello fully promoted\n");
    cluster.wait_for("v2 to replace v1", Duration::from_secs(60), || {
        live_by_greeting(&cluster) == (0, 2)
            && canary_status(&cluster).is_some_and(|c| c.canary_hash.is_empty())
    });
    for _ in 0..20 {
        let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
        assert_eq!((status, greeting(&body)), (200, "v2"));
    }
    let deployment = cluster
        .objects("deployments")
        .into_iter()
        .find_map(|o| match o {
            Object::Deployment(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let conditions = deployment.status.unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Promoted" && c.status == "True"),
        "{conditions:?}"
    );
    // Nothing left to promote.
    let out = cluster.berth(&["rollout", "promote", "deployment/hello"]);
    assert!(!out.status.success());
}

#[test]
fn a_canary_answering_errors_is_aborted_and_stable_serves_everything() {
    let cluster = Cluster::start(1);
    let ingress = cluster.nodes[0].ingress;
    let canary = "      steps:
      - setWeight: 50
      - pause: {}
      analysis: {maxErrorRate: \"5%\", window: 30s, minRequests: 20}";
    let v1 = cluster.manifest("v1", &manifest("v1", canary, ""));
    cluster.ok(&["apply", "-f", v1.to_str().unwrap()]);
    cluster.wait_ready(2);

    let failing = manifest("v2", canary, "        - {name: STATUS, value: \"500\"}\n");
    let v2 = cluster.manifest("v2", &failing);
    cluster.ok(&["apply", "-f", v2.to_str().unwrap()]);
    cluster.wait_for("the canary", Duration::from_secs(60), || {
        canary_status(&cluster).is_some_and(|c| c.step == 1)
    });

    // Traffic until the scheduler aborts the canary.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut errors = 0;
    for sent in 1.. {
        let (status, _) = http_get(ingress, HELLO_HOST).unwrap();
        errors += usize::from(status == 500);
        if sent % 20 == 0 && canary_status(&cluster).is_some_and(|c| c.aborted) {
            break;
        }
        assert!(Instant::now() < deadline, "no abort after {errors} errors");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = canary_status(&cluster).unwrap();
    assert_eq!(status.reason, "AnalysisFailed");
    assert!(
        status.message.contains("error rate 100.0%")
            && status.message.contains("exceeds maxErrorRate 5%"),
        "{}",
        status.message
    );
    cluster.wait_for("the canary instances gone", Duration::from_secs(30), || {
        live_by_greeting(&cluster) == (2, 0)
    });
    // All traffic is back on stable.
    cluster.wait_for("only stable answering", Duration::from_secs(10), || {
        http_get(ingress, HELLO_HOST).is_ok_and(|(s, body)| s == 200 && greeting(&body) == "v1")
    });
    for _ in 0..50 {
        let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
        assert_eq!((status, greeting(&body)), (200, "v1"));
    }
    let events = cluster.ok(&["events", "--for", "deployment/hello"]);
    assert!(
        events.contains("CanaryAborted") && events.contains("of"),
        "{events}"
    );
}

#[test]
fn rollout_abort_stops_the_canary_and_stable_keeps_serving() {
    let cluster = Cluster::start(1);
    let ingress = cluster.nodes[0].ingress;
    let v1 = cluster.manifest("v1", &manifest("v1", STEPS, ""));
    cluster.ok(&["apply", "-f", v1.to_str().unwrap()]);
    cluster.wait_ready(2);
    let v2 = cluster.manifest("v2", &manifest("v2", STEPS, ""));
    cluster.ok(&["apply", "-f", v2.to_str().unwrap()]);
    cluster.wait_for("the canary paused", Duration::from_secs(60), || {
        canary_status(&cluster).is_some_and(|c| c.step == 1)
    });

    let aborted = cluster.ok(&["rollout", "abort", "deployment/hello"]);
    assert_eq!(aborted, "deployment/hello aborted\n");
    cluster.wait_for("the canary instances gone", Duration::from_secs(30), || {
        live_by_greeting(&cluster) == (2, 0)
    });
    let status = canary_status(&cluster).unwrap();
    assert!(status.aborted);
    assert_eq!(
        (status.reason.as_str(), status.weight),
        ("AbortedByUser", 0)
    );
    cluster.wait_for("only stable answering", Duration::from_secs(10), || {
        http_get(ingress, HELLO_HOST).is_ok_and(|(s, body)| s == 200 && greeting(&body) == "v1")
    });
    for _ in 0..50 {
        let (status, body) = http_get(ingress, HELLO_HOST).unwrap();
        assert_eq!((status, greeting(&body)), (200, "v1"));
    }
    let events = cluster.ok(&["events", "--for", "deployment/hello"]);
    assert!(events.contains("CanaryAborted"), "{events}");
    // Nothing left to abort.
    let out = cluster.berth(&["rollout", "abort", "deployment/hello"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: Deployment default/hello: no canary is running\n"
    );
}
