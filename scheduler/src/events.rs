//! Events: what happened to an object, for `berth describe` and
//! `berth get events`.
//!
//! Events are derived from the writes themselves: when the reconciler or a
//! node report changes an instance (bound to a node, found unschedulable,
//! preempted, evicted, started, failed, restarted, backing off before a
//! restart, failing its readiness probe), the same transaction records an
//! Event. Repeats of the same reason and message on the same object bump
//! `count` instead of adding rows, and events older than [`EVENT_TTL`] are
//! removed, as Kubernetes does.

use berth_api::{
    API_VERSION, Event, Instance, InstanceStatus, Kind, Object, ObjectMeta, ObjectReference, Phase,
};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::store::{StoreError, Txn, key, object_key};

/// How long events are kept.
pub const EVENT_TTL: SignedDuration = SignedDuration::from_hours(1);

/// The reason a node reports an instance with while it waits to restart it
/// (the node's `backoff::CRASH_LOOP_BACK_OFF`); turning to it is a `BackOff`
/// event, as in Kubernetes.
pub const REASON_CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Things going as they should.
    Normal,
    /// Something a person may need to look at.
    Warning,
}

/// Records (or counts again) an event about `instance`.
pub fn record(
    txn: &mut Txn<'_, '_>,
    instance: &Instance,
    severity: Severity,
    reason: &str,
    message: &str,
    source: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let namespace = instance.metadata.namespace_or_default().to_owned();
    let uid = instance.metadata.uid.clone().unwrap_or_default();
    let digest = Sha256::digest(format!("{uid}\n{reason}\n{message}").as_bytes());
    let name = format!(
        "{}.{}",
        instance.metadata.name,
        hex::encode(digest).get(..12).unwrap_or_default()
    );
    let existing = match txn.get(&key(Kind::Event, Some(&namespace), &name))? {
        Some(Object::Event(event)) => Some(*event),
        _ => None,
    };
    let event = match existing {
        Some(mut event) => {
            event.count += 1;
            event.last_timestamp = now;
            event
        }
        None => Event {
            api_version: API_VERSION.into(),
            kind: Kind::Event.as_str().into(),
            metadata: ObjectMeta {
                name,
                namespace: Some(namespace.clone()),
                uid: Some(uuid::Uuid::new_v4().to_string()),
                creation_timestamp: Some(now),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: Kind::Instance.as_str().into(),
                namespace: Some(namespace),
                name: instance.metadata.name.clone(),
                uid,
            },
            reason: reason.to_owned(),
            message: message.to_owned(),
            type_: match severity {
                Severity::Normal => "Normal",
                Severity::Warning => "Warning",
            }
            .into(),
            count: 1,
            first_timestamp: now,
            last_timestamp: now,
            source: source.to_owned(),
        },
    };
    txn.put(Object::Event(Box::new(event)))?;
    Ok(())
}

/// The event, if any, that a change of `before` into `after` tells of: at
/// most one, the most telling. In order: `Scheduled`; `BackOff` (Warning)
/// when the reason turns `CrashLoopBackOff`; the phase's own (placement,
/// termination, `Started`, a failure); `Restarted` when `restartCount`
/// grew; `Unhealthy` (Warning, with the node's message) when a Running
/// instance turns not ready, or stays not ready with a new message.
pub fn transition(before: &Instance, after: &Instance) -> Option<(Severity, String, String)> {
    let (b, a) = (&before.status, &after.status);
    if before.spec.node_name.is_none()
        && let Some(node) = &after.spec.node_name
    {
        return Some((
            Severity::Normal,
            "Scheduled".into(),
            format!(
                "Successfully assigned {}/{} to {node}",
                after.metadata.namespace_or_default(),
                after.metadata.name
            ),
        ));
    }
    let phase_changed = a.reason != b.reason || a.message != b.message || a.phase != b.phase;
    if !phase_changed && a.ready == b.ready && a.restart_count == b.restart_count {
        return None;
    }
    if a.reason == REASON_CRASH_LOOP_BACK_OFF && b.reason != REASON_CRASH_LOOP_BACK_OFF {
        return Some((
            Severity::Warning,
            "BackOff".into(),
            or_default(&a.message, "Back-off restarting failed instance"),
        ));
    }
    let restarted = a.restart_count > b.restart_count;
    if phase_changed && let Some(event) = phase_event(b, a, restarted) {
        return Some(event);
    }
    if restarted {
        return Some((
            Severity::Normal,
            "Restarted".into(),
            if a.message.is_empty() {
                "Restarted instance".to_owned()
            } else {
                format!("Restarted instance: {}", a.message)
            },
        ));
    }
    // Kubernetes' `Unhealthy`: Running, and its readiness probe now fails
    // (or fails for another reason than last reported).
    if a.phase == Phase::Running && !a.ready && (b.ready || a.message != b.message) {
        return Some((
            Severity::Warning,
            "Unhealthy".into(),
            or_default(&a.message, "Readiness probe failed"),
        ));
    }
    None
}

/// `text`, or `default` if it is empty.
fn or_default(text: &str, default: &str) -> String {
    if text.is_empty() { default } else { text }.to_owned()
}

/// The event a change of phase, reason or message from `b` to `a` tells
/// of; a restarted instance's return to Running is told as `Restarted`,
/// not `Started`.
fn phase_event(
    b: &InstanceStatus,
    a: &InstanceStatus,
    restarted: bool,
) -> Option<(Severity, String, String)> {
    match (a.phase, a.reason.as_str()) {
        (Phase::Pending, "Unschedulable") => Some((
            Severity::Warning,
            "FailedScheduling".into(),
            a.message.clone(),
        )),
        (Phase::Pending, "Preempted") => {
            Some((Severity::Normal, "Preempted".into(), a.message.clone()))
        }
        (Phase::Terminating, reason) if !reason.is_empty() => {
            Some((Severity::Warning, reason.to_owned(), a.message.clone()))
        }
        (Phase::Terminating, _) => Some((
            Severity::Normal,
            "Killing".into(),
            "Stopping instance".into(),
        )),
        (Phase::Running, _) if b.phase != Phase::Running && !restarted => Some((
            Severity::Normal,
            "Started".into(),
            "Started instance".into(),
        )),
        (Phase::Failed, reason) => Some((
            Severity::Warning,
            if reason.is_empty() { "Failed" } else { reason }.to_owned(),
            a.message.clone(),
        )),
        _ => None,
    }
}

/// Removes events whose last occurrence is older than [`EVENT_TTL`].
pub fn expire(txn: &mut Txn<'_, '_>, now: Timestamp) -> Result<usize, StoreError> {
    let mut removed = 0;
    for object in txn.list(Kind::Event, None)? {
        if let Object::Event(event) = &object
            && now.duration_since(event.last_timestamp) > EVENT_TTL
        {
            txn.delete(&object_key(&object))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::InstanceSpec;

    fn instance(node: Option<&str>, phase: Phase, reason: &str) -> Instance {
        Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: "web-abcde".into(),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                node_name: node.map(str::to_owned),
                ..InstanceSpec::default()
            },
            status: InstanceStatus {
                phase,
                reason: reason.into(),
                message: format!("{reason} message"),
                ..InstanceStatus::default()
            },
        }
    }

    #[test]
    fn transitions_name_what_happened() {
        let pending = instance(None, Phase::Pending, "");
        let bound = instance(Some("n1"), Phase::Scheduled, "");
        let (severity, reason, message) = transition(&pending, &bound).unwrap();
        assert_eq!((severity, reason.as_str()), (Severity::Normal, "Scheduled"));
        assert_eq!(message, "Successfully assigned default/web-abcde to n1");

        let unschedulable = instance(None, Phase::Pending, "Unschedulable");
        let (severity, reason, _) = transition(&pending, &unschedulable).unwrap();
        assert_eq!(
            (severity, reason.as_str()),
            (Severity::Warning, "FailedScheduling")
        );
        assert_eq!(transition(&unschedulable, &unschedulable), None);

        let running = instance(Some("n1"), Phase::Running, "");
        assert_eq!(transition(&bound, &running).unwrap().1, "Started");
        let preempted = instance(None, Phase::Pending, "Preempted");
        assert_eq!(transition(&running, &preempted).unwrap().1, "Preempted");
        let evicted = instance(Some("n1"), Phase::Terminating, "TaintEviction");
        assert_eq!(transition(&running, &evicted).unwrap().1, "TaintEviction");
        let failed = instance(Some("n1"), Phase::Failed, "FetchFailed");
        assert_eq!(transition(&bound, &failed).unwrap().0, Severity::Warning);
    }

    /// `running` with its status changed by `change`.
    fn with(running: &Instance, change: impl FnOnce(&mut InstanceStatus)) -> Instance {
        let mut after = running.clone();
        change(&mut after.status);
        after
    }

    #[test]
    fn probes_and_restarts_are_told() {
        let bound = instance(Some("n1"), Phase::Scheduled, "");
        let mut running = instance(Some("n1"), Phase::Running, "");
        running.status.message.clear();
        running.status.ready = true;
        // Started not ready (a readiness probe not passed yet): Started.
        let unready = with(&running, |s| s.ready = false);
        assert_eq!(transition(&bound, &unready).unwrap().1, "Started");
        // Turning ready tells nothing.
        assert_eq!(transition(&unready, &running), None);

        let failing = "Readiness probe failed: HTTP probe failed with statuscode: 503";
        let unhealthy = with(&running, |s| {
            s.ready = false;
            s.message = failing.into();
        });
        assert_eq!(
            transition(&running, &unhealthy),
            Some((Severity::Warning, "Unhealthy".into(), failing.into()))
        );
        assert_eq!(transition(&unhealthy, &unhealthy), None);
        let other = with(&unhealthy, |s| {
            s.message = "Readiness probe failed: HTTP probe failed with statuscode: 500".into();
        });
        assert_eq!(transition(&unhealthy, &other).unwrap().1, "Unhealthy");
        let quiet = with(&running, |s| s.ready = false);
        assert_eq!(
            transition(&running, &quiet).unwrap().2,
            "Readiness probe failed"
        );

        let backing_off = with(&running, |s| {
            s.phase = Phase::Starting;
            s.ready = false;
            s.reason = REASON_CRASH_LOOP_BACK_OFF.into();
            s.message = "back-off 10s restarting failed instance".into();
            s.restart_count = 1;
        });
        assert_eq!(
            transition(&running, &backing_off),
            Some((
                Severity::Warning,
                "BackOff".into(),
                "back-off 10s restarting failed instance".into()
            ))
        );
        let failed_backoff = with(&backing_off, |s| s.phase = Phase::Failed);
        assert_eq!(
            transition(&backing_off, &failed_backoff).unwrap().1,
            REASON_CRASH_LOOP_BACK_OFF,
            "only turning to CrashLoopBackOff is BackOff"
        );

        let restarted = with(&running, |s| {
            s.restart_count = 1;
            s.message = "Liveness probe failed: HTTP probe failed with statuscode: 500".into();
        });
        assert_eq!(
            transition(&running, &restarted),
            Some((
                Severity::Normal,
                "Restarted".into(),
                "Restarted instance: Liveness probe failed: HTTP probe failed with statuscode: 500"
                    .into()
            ))
        );
        // Back to Running after a restart: Restarted, not Started.
        let starting = with(&running, |s| {
            s.phase = Phase::Starting;
            s.ready = false;
        });
        let again = with(&running, |s| s.restart_count = 2);
        assert_eq!(
            transition(&starting, &again).unwrap().2,
            "Restarted instance"
        );
    }

    #[test]
    fn repeats_are_counted_and_old_events_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
        let pending = instance(None, Phase::Pending, "Unschedulable");
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for minutes in [0, 1] {
            store
                .write(|txn| {
                    record(
                        txn,
                        &pending,
                        Severity::Warning,
                        "FailedScheduling",
                        "0/1 nodes are available",
                        "scheduler",
                        t0 + SignedDuration::from_mins(minutes),
                    )
                })
                .unwrap();
        }
        let events = store.list(Kind::Event, None).unwrap();
        assert_eq!(events.len(), 1);
        let Object::Event(event) = &events[0] else {
            panic!()
        };
        assert_eq!(event.count, 2);
        assert_eq!(event.first_timestamp, t0);
        assert_eq!(event.involved_object.name, "web-abcde");
        let (removed, _) = store
            .write(|txn| expire(txn, t0 + SignedDuration::from_mins(30)))
            .unwrap();
        assert_eq!(removed, 0);
        let (removed, _) = store
            .write(|txn| expire(txn, t0 + SignedDuration::from_mins(62)))
            .unwrap();
        assert_eq!(removed, 1);
        assert!(store.list(Kind::Event, None).unwrap().is_empty());
    }
}
