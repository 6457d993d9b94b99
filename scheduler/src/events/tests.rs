//! Which change tells which event, and how events are stored.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use berth_api::InstanceSpec;
use berth_api::meta::OwnerReference;

fn instance(node: Option<&str>, phase: Phase, reason: &str) -> Instance {
    Instance {
        api_version: API_VERSION.into(),
        kind: "Instance".into(),
        metadata: ObjectMeta {
            name: "web-abcde".into(),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            owner_references: vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: "d1".into(),
            }],
            ..ObjectMeta::default()
        },
        spec: InstanceSpec {
            node_name: node.map(str::to_owned),
            ..InstanceSpec::default()
        },
        status: InstanceStatus {
            phase,
            reason: reason.into(),
            message: if reason.is_empty() {
                String::new()
            } else {
                format!("{reason} message")
            },
            ..InstanceStatus::default()
        },
    }
}

/// `running` with its status changed by `change`.
fn with(running: &Instance, change: impl FnOnce(&mut InstanceStatus)) -> Instance {
    let mut after = running.clone();
    change(&mut after.status);
    after
}

/// The (type, reason) pairs of a transition.
fn told(before: &Instance, after: &Instance) -> Vec<(Severity, String)> {
    transitions(before, after)
        .into_iter()
        .map(|h| (h.severity, h.reason))
        .collect()
}

fn warning(reason: &str) -> (Severity, String) {
    (Severity::Warning, reason.to_owned())
}

fn normal(reason: &str) -> (Severity, String) {
    (Severity::Normal, reason.to_owned())
}

fn running() -> Instance {
    let mut running = instance(Some("n1"), Phase::Running, "");
    running.status.ready = true;
    running
}

#[test]
fn scheduling_tells_scheduled_failed_scheduling_and_preempted() {
    let pending = instance(None, Phase::Pending, "");
    let bound = instance(Some("n1"), Phase::Scheduled, "");
    let happened = transitions(&pending, &bound);
    assert_eq!(
        happened,
        vec![Happening::new(
            Severity::Normal,
            "Scheduled",
            "Successfully assigned default/web-abcde to n1"
        )]
    );
    let unschedulable = instance(None, Phase::Pending, "Unschedulable");
    assert_eq!(
        told(&pending, &unschedulable),
        vec![warning("FailedScheduling")]
    );
    assert_eq!(told(&unschedulable, &unschedulable), vec![]);
    let preempted = instance(None, Phase::Pending, "Preempted");
    assert_eq!(told(&running(), &preempted), vec![normal("Preempted")]);
}

#[test]
fn starts_tell_started_and_containers_pulled() {
    let bound = instance(Some("n1"), Phase::Scheduled, "");
    assert_eq!(told(&bound, &running()), vec![normal("Started")]);
    // Started, not ready yet (a readiness probe not passed): Started only.
    let unready = with(&running(), |s| s.ready = false);
    assert_eq!(told(&bound, &unready), vec![normal("Started")]);
    // Turning ready tells nothing.
    assert_eq!(told(&unready, &running()), vec![]);

    let mut container = bound.clone();
    container.spec.image = Some("localhost:5000/busybox:1".into());
    let mut up = running();
    up.spec.image = container.spec.image.clone();
    let happened = transitions(&container, &up);
    assert_eq!(happened.len(), 2);
    assert_eq!(happened[0].reason, "Pulled");
    assert_eq!(
        happened[0].message,
        "Container image \"localhost:5000/busybox:1\" is on the node"
    );
    assert_eq!(happened[1].reason, "Started");
}

#[test]
fn image_pull_failures_are_failed_warnings() {
    let mut bound = instance(Some("n1"), Phase::Scheduled, "");
    bound.spec.image = Some("nowhere/none:1".into());
    let failed = with(&bound, |s| {
        s.phase = Phase::Failed;
        s.reason = REASON_ERR_IMAGE_PULL.into();
        s.message = "manifest unknown".into();
    });
    assert_eq!(
        transitions(&bound, &failed),
        vec![Happening::new(
            Severity::Warning,
            "Failed",
            "Failed to pull image \"nowhere/none:1\": manifest unknown"
        )]
    );
    // Retried at the next heartbeat: Starting tells nothing, failing
    // again tells the same event (counted, not added).
    let retrying = with(&failed, |s| {
        s.phase = Phase::Starting;
        s.reason.clear();
        s.message.clear();
    });
    assert_eq!(told(&failed, &retrying), vec![]);
    assert_eq!(
        transitions(&retrying, &failed),
        transitions(&bound, &failed)
    );
}

#[test]
fn readiness_failures_are_unhealthy() {
    let failing = "Readiness probe failed: HTTP probe failed with statuscode: 503";
    let unhealthy = with(&running(), |s| {
        s.ready = false;
        s.message = failing.into();
    });
    assert_eq!(
        transitions(&running(), &unhealthy),
        vec![Happening::new(Severity::Warning, "Unhealthy", failing)]
    );
    assert_eq!(told(&unhealthy, &unhealthy), vec![]);
    let other = with(&unhealthy, |s| {
        s.message = "Readiness probe failed: HTTP probe failed with statuscode: 500".into();
    });
    assert_eq!(told(&unhealthy, &other), vec![warning("Unhealthy")]);
    let quiet = with(&running(), |s| s.ready = false);
    assert_eq!(
        transitions(&running(), &quiet)[0].message,
        "Readiness probe failed"
    );
}

#[test]
fn liveness_failures_are_unhealthy_then_killing_then_started_again() {
    let liveness = "Liveness probe failed: HTTP probe failed with statuscode: 404";
    // The node's report of a first liveness failure: still Running,
    // reason Unhealthy, restarting after its back-off.
    let killed = with(&running(), |s| {
        s.ready = false;
        s.reason = REASON_UNHEALTHY.into();
        s.message = format!("{liveness}; restarting in 1s");
        s.restart_count = 1;
    });
    let happened = transitions(&running(), &killed);
    assert_eq!(
        happened[0],
        Happening::new(Severity::Warning, "Unhealthy", liveness)
    );
    assert_eq!(happened[1].reason, "Killing");
    assert_eq!(happened.len(), 2);
    // Running again after the back-off: Started, no readiness warning.
    let again = with(&killed, |s| {
        s.reason.clear();
        s.message.clear();
    });
    assert_eq!(told(&killed, &again), vec![normal("Started")]);
    // Failing again: the node reports CrashLoopBackOff naming how the
    // last run ended.
    let looping = with(&again, |s| {
        s.reason = REASON_CRASH_LOOP_BACK_OFF.into();
        s.message = format!(
            "back-off 2s restarting failed instance; last termination: Unhealthy: {liveness}"
        );
        s.restart_count = 2;
    });
    let happened = transitions(&again, &looping);
    assert_eq!(
        happened
            .iter()
            .map(|h| h.reason.as_str())
            .collect::<Vec<_>>(),
        ["Unhealthy", "Killing", "BackOff"]
    );
    assert_eq!(happened[0].message, liveness);
    assert_eq!(happened[0], transitions(&running(), &killed)[0]);
}

#[test]
fn oom_kills_are_told_first_time_and_in_back_off() {
    let oom = "sandbox default/1 exceeded its cgroup memory limit and was killed by the kernel";
    let killed = with(&running(), |s| {
        s.phase = Phase::Failed;
        s.ready = false;
        s.reason = REASON_OOM_KILLED.into();
        s.message = format!("{oom}; restarting in 1s");
        s.restart_count = 1;
    });
    assert_eq!(
        transitions(&running(), &killed),
        vec![Happening::new(Severity::Warning, "OOMKilled", oom)]
    );
    let again = with(&killed, |s| {
        s.phase = Phase::Running;
        s.reason.clear();
        s.message.clear();
    });
    assert_eq!(told(&killed, &again), vec![normal("Started")]);
    let looping = with(&again, |s| {
        s.phase = Phase::Failed;
        s.reason = REASON_CRASH_LOOP_BACK_OFF.into();
        s.message =
            format!("back-off 2s restarting failed instance; last termination: OOMKilled: {oom}");
        s.restart_count = 2;
    });
    assert_eq!(
        told(&again, &looping),
        vec![warning("OOMKilled"), warning("BackOff")]
    );
    // A run that is not restarted (restartPolicy: Never).
    let never = with(&running(), |s| {
        s.phase = Phase::Failed;
        s.reason = REASON_OOM_KILLED.into();
        s.message = oom.into();
    });
    assert_eq!(told(&running(), &never), vec![warning("OOMKilled")]);
    // Other failures keep their reason.
    let crashed = with(&running(), |s| {
        s.phase = Phase::Failed;
        s.reason = "Crashed".into();
        s.message = "sandbox exited: signal 9".into();
        s.restart_count = 1;
    });
    assert_eq!(told(&running(), &crashed), vec![warning("Crashed")]);
}

#[test]
fn back_off_is_told_when_it_begins() {
    let backing_off = with(&running(), |s| {
        s.phase = Phase::Starting;
        s.ready = false;
        s.reason = REASON_CRASH_LOOP_BACK_OFF.into();
        s.message = "back-off 10s restarting failed instance".into();
    });
    assert_eq!(
        transitions(&running(), &backing_off),
        vec![Happening::new(
            Severity::Warning,
            "BackOff",
            "back-off 10s restarting failed instance"
        )]
    );
    let still = with(&backing_off, |s| s.phase = Phase::Failed);
    assert_eq!(told(&backing_off, &still), vec![]);
}

#[test]
fn evictions_and_stops_are_told() {
    let evicted = with(&running(), |s| {
        s.phase = Phase::Terminating;
        s.reason = "TaintEviction".into();
        s.message =
            "node n1 has taint berth.dev/unreachable:NoExecute that the instance does not tolerate"
                .into();
    });
    let happened = transitions(&running(), &evicted);
    assert_eq!(happened.len(), 1);
    assert_eq!(
        (happened[0].severity, happened[0].reason.as_str()),
        (Severity::Normal, "TaintManagerEviction")
    );
    assert!(
        happened[0]
            .message
            .starts_with("Marking for deletion Instance default/web-abcde: node n1 has taint"),
        "{}",
        happened[0].message
    );
    let stopped = with(&running(), |s| s.phase = Phase::Terminating);
    assert_eq!(
        transitions(&running(), &stopped),
        vec![Happening::new(
            Severity::Normal,
            "Killing",
            "Stopping instance"
        )]
    );
}

fn node(ready: bool, unschedulable: bool) -> Node {
    let mut node = Node {
        api_version: API_VERSION.into(),
        kind: "Node".into(),
        metadata: ObjectMeta {
            name: "n1".into(),
            ..ObjectMeta::default()
        },
        spec: berth_api::scheduling::NodeSpec::default(),
        status: berth_api::NodeStatus::default(),
    };
    node.spec.unschedulable = unschedulable;
    node.status.conditions = vec![berth_api::NodeCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "Unknown" }.into(),
        reason: String::new(),
        last_transition_time: None,
    }];
    node
}

#[test]
fn nodes_tell_readiness_and_cordons() {
    let happened = node_transitions(&node(true, false), &node(false, false));
    assert_eq!(
        happened,
        vec![Happening::new(
            Severity::Normal,
            "NodeNotReady",
            "Node n1 status is now: NodeNotReady"
        )]
    );
    assert_eq!(
        node_transitions(&node(false, false), &node(true, true))
            .into_iter()
            .map(|h| h.reason)
            .collect::<Vec<_>>(),
        ["NodeReady", "NodeNotSchedulable"]
    );
    assert_eq!(node_transitions(&node(true, true), &node(true, true)), []);
}

#[test]
fn jobs_tell_their_end_once() {
    use berth_api::job::JobCondition;
    let running = JobStatus::default();
    let ended = |type_, reason: &str| JobStatus {
        conditions: vec![JobCondition {
            type_,
            status: "True".into(),
            reason: reason.into(),
            message: "Job has reached the specified backoff limit".into(),
            last_transition_time: None,
        }],
        ..JobStatus::default()
    };
    let complete = ended(JobConditionType::Complete, "CompletionsReached");
    assert_eq!(job_transitions(&running, &complete)[0].reason, "Completed");
    assert_eq!(job_transitions(&complete, &complete), []);
    let failed = ended(JobConditionType::Failed, "BackoffLimitExceeded");
    assert_eq!(
        job_transitions(&running, &failed)[0],
        Happening::new(
            Severity::Warning,
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit"
        )
    );
}

fn events(store: &crate::store::Store) -> Vec<Event> {
    store
        .list(Kind::Event, None)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            Object::Event(e) => *e,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn changes_record_on_the_instance_and_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let pending = instance(None, Phase::Pending, "");
    let stopped = with(&running(), |s| s.phase = Phase::Terminating);
    store
        .write(|txn| {
            record_created(txn, &Object::Instance(Box::new(pending)), t0)?;
            record_change(
                txn,
                &Object::Instance(Box::new(running())),
                &Object::Instance(Box::new(stopped.clone())),
                "scheduler",
                t0,
            )
        })
        .unwrap();
    let mut told: Vec<(String, String, String)> = events(&store)
        .into_iter()
        .map(|e| (e.involved_object.kind, e.involved_object.name, e.reason))
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            ("Deployment".into(), "web".into(), "SuccessfulCreate".into()),
            ("Deployment".into(), "web".into(), "SuccessfulDelete".into()),
            ("Instance".into(), "web-abcde".into(), "Killing".into()),
        ]
    );
    // Node events live in `default`.
    store
        .write(|txn| {
            record_change(
                txn,
                &Object::Node(Box::new(node(true, false))),
                &Object::Node(Box::new(node(true, true))),
                "scheduler",
                t0,
            )
        })
        .unwrap();
    let cordoned = events(&store)
        .into_iter()
        .find(|e| e.reason == "NodeNotSchedulable")
        .unwrap();
    assert_eq!(cordoned.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(cordoned.involved_object.kind, "Node");
}

#[test]
fn repeats_are_counted_and_old_events_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
    let pending = instance(None, Phase::Pending, "Unschedulable");
    let involved = instance_reference(&pending);
    let happening = Happening::new(
        Severity::Warning,
        "FailedScheduling",
        "0/1 nodes are available",
    );
    let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    for minutes in [0, 1] {
        store
            .write(|txn| {
                record(
                    txn,
                    &involved,
                    &happening,
                    "scheduler",
                    t0 + SignedDuration::from_mins(minutes),
                )
            })
            .unwrap();
    }
    let all = events(&store);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].count, 2);
    assert_eq!(all[0].first_timestamp, t0);
    assert_eq!(all[0].involved_object.name, "web-abcde");
    let (removed, _) = store
        .write(|txn| expire(txn, t0 + SignedDuration::from_mins(30)))
        .unwrap();
    assert_eq!(removed, 0);
    let (removed, _) = store
        .write(|txn| expire(txn, t0 + SignedDuration::from_mins(62)))
        .unwrap();
    assert_eq!(removed, 1);
    assert!(events(&store).is_empty());
}
