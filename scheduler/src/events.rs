//! Events: what happened to an object, for `berth events`, `berth get
//! events` and `berth describe`.
//!
//! Events are derived from the writes themselves ([decision 0013]): when
//! the reconciler or a node report changes an object, the same transaction
//! calls [`record_change`] (or [`record_created`] for a new instance), which
//! asks [`transitions`] what the change tells of and stores it with
//! [`record`]. The sans-IO controllers stay unaware of events.
//!
//! What is told, with Kubernetes' reasons and types:
//!
//! | object   | change                                   | type    | reason                    |
//! |----------|------------------------------------------|---------|---------------------------|
//! | Instance | bound to a node                          | Normal  | `Scheduled`               |
//! | Instance | no node fits                             | Warning | `FailedScheduling`        |
//! | Instance | evicted by a higher priority             | Normal  | `Preempted`               |
//! | Instance | a `NoExecute` taint (node loss included) | Normal  | `TaintManagerEviction`    |
//! | Instance | stopped by its controller                | Normal  | `Killing`                 |
//! | Instance | container image on the node, then runs   | Normal  | `Pulled`, `Started`       |
//! | Instance | runs (again after a restart too)         | Normal  | `Started`                 |
//! | Instance | image cannot be pulled (`ErrImagePull`)  | Warning | `Failed`                  |
//! | Instance | liveness or readiness probe fails        | Warning | `Unhealthy`               |
//! | Instance | killed for a failed liveness probe       | Normal  | `Killing`                 |
//! | Instance | killed by the kernel for memory          | Warning | `OOMKilled`               |
//! | Instance | another failure (its reason)             | Warning | e.g. `Crashed`, `Error`   |
//! | Instance | waits to restart (`CrashLoopBackOff`)    | Warning | `BackOff`                 |
//! | Deployment, Job, DaemonSet | an instance created / stopped | Normal | `SuccessfulCreate`, `SuccessfulDelete` |
//! | DaemonSet | a matching node refuses it (taint)      | Warning | `FailedPlacement`         |
//! | Job      | finished                                 | Normal / Warning | `Completed` / its condition's reason |
//! | CronJob  | a Job created / removed                  | Normal  | `SuccessfulCreate`, `SuccessfulDelete` |
//! | CronJob  | a Job of it no longer active             | Normal  | `SawCompletedJob`         |
//! | Node     | Ready or not                             | Normal  | `NodeReady`, `NodeNotReady` |
//! | Node     | cordoned or uncordoned                   | Normal  | `NodeNotSchedulable`, `NodeSchedulable` |
//! | Deployment | a canary aborted / promoted            | Warning / Normal | `CanaryAborted`, `CanaryPromoted` |
//!
//! Events about a Node, which has no namespace, live in `default`, as
//! Kubernetes keeps them. Repeats of the same reason and message on the
//! same object bump `count` instead of adding rows, and events older than
//! [`EVENT_TTL`] are removed.
//!
//! [decision 0013]: ../../docs/decisions/0013-events.md

use berth_api::job::{JobConditionType, JobStatus};
use berth_api::{
    API_VERSION, DEFAULT_NAMESPACE, Deployment, Event, Instance, InstanceStatus, Kind, Node,
    Object, ObjectMeta, ObjectReference, Phase,
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

/// The reason of an instance stopped for a failed liveness probe (the
/// node's `probes::REASON_UNHEALTHY`).
pub const REASON_UNHEALTHY: &str = "Unhealthy";

/// The reason of an instance (or its sandbox) killed by the kernel for
/// going over its memory limit. Kubernetes records no Event for it (only
/// the container's `OOMKilled` status); berth tells it as a Warning event
/// with this same word, so `berth events` and `berth get instances` agree.
pub const REASON_OOM_KILLED: &str = "OOMKilled";

/// The reason of a container instance whose image could not be pulled.
pub const REASON_ERR_IMAGE_PULL: &str = "ErrImagePull";

/// Where the node's `CrashLoopBackOff` message names how the last run
/// ended: `back-off 10s restarting failed instance; last termination:
/// REASON: MESSAGE`.
const LAST_TERMINATION: &str = "; last termination: ";

/// Where the node's message of a first failure says when it restarts:
/// `MESSAGE; restarting in 1s`.
const RESTARTING_IN: &str = "; restarting in ";

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Things going as they should.
    Normal,
    /// Something a person may need to look at.
    Warning,
}

impl Severity {
    /// The event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

/// One thing that happened, before it is stored as an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happening {
    /// Normal or Warning.
    pub severity: Severity,
    /// A CamelCase word.
    pub reason: String,
    /// What happened, in a sentence.
    pub message: String,
}

impl Happening {
    fn new(severity: Severity, reason: &str, message: impl Into<String>) -> Happening {
        Happening {
            severity,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// A reference to `object` as an event's `involvedObject`.
pub fn reference(object: &Object) -> ObjectReference {
    let meta = object.metadata();
    ObjectReference {
        kind: object.kind().as_str().into(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

fn instance_reference(instance: &Instance) -> ObjectReference {
    ObjectReference {
        kind: Kind::Instance.as_str().into(),
        namespace: Some(instance.metadata.namespace_or_default().to_owned()),
        name: instance.metadata.name.clone(),
        uid: instance.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The Deployment, Job or DaemonSet owning `instance`, as an event's object.
fn owner_reference(instance: &Instance) -> Option<ObjectReference> {
    let owner = instance.metadata.owner_references.iter().find(|r| {
        r.kind == Kind::Deployment.as_str()
            || r.kind == Kind::Job.as_str()
            || r.kind == Kind::DaemonSet.as_str()
    })?;
    Some(ObjectReference {
        kind: owner.kind.clone(),
        namespace: Some(instance.metadata.namespace_or_default().to_owned()),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    })
}

/// Records (or counts again) `happening` about `involved`.
pub fn record(
    txn: &mut Txn<'_, '_>,
    involved: &ObjectReference,
    happening: &Happening,
    source: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let namespace = involved
        .namespace
        .clone()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let digest = Sha256::digest(
        format!(
            "{}\n{}\n{}\n{}",
            involved.kind, involved.uid, happening.reason, happening.message
        )
        .as_bytes(),
    );
    let name = format!(
        "{}.{}",
        involved.name,
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
                namespace: Some(namespace),
                uid: Some(uuid::Uuid::new_v4().to_string()),
                creation_timestamp: Some(now),
                ..ObjectMeta::default()
            },
            involved_object: involved.clone(),
            reason: happening.reason.clone(),
            message: happening.message.clone(),
            type_: happening.severity.as_str().into(),
            count: 1,
            first_timestamp: now,
            last_timestamp: now,
            source: source.to_owned(),
        },
    };
    txn.put(Object::Event(Box::new(event)))?;
    Ok(())
}

/// Records what the change of `before` into `after` tells of: an
/// instance's [`transitions`] (and, when it stops, `SuccessfulDelete` on
/// its owner), a Node's readiness and cordon, a Job's end.
pub fn record_change(
    txn: &mut Txn<'_, '_>,
    before: &Object,
    after: &Object,
    source: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (involved, happenings) = match (before, after) {
        (Object::Instance(b), Object::Instance(a)) => {
            if b.status.phase != Phase::Terminating
                && a.status.phase == Phase::Terminating
                && let Some(owner) = owner_reference(a)
            {
                let deleted = Happening::new(
                    Severity::Normal,
                    "SuccessfulDelete",
                    format!("Deleted instance: {}", a.metadata.name),
                );
                record(txn, &owner, &deleted, source, now)?;
            }
            (instance_reference(a), transitions(b, a))
        }
        (Object::Node(b), Object::Node(a)) => (reference(after), node_transitions(b, a)),
        (Object::Deployment(b), Object::Deployment(a)) => {
            (reference(after), canary_transitions(b, a))
        }
        (Object::Job(b), Object::Job(a)) => {
            (reference(after), job_transitions(&b.status, &a.status))
        }
        (Object::CronJob(b), Object::CronJob(a)) => {
            let saw = b
                .status
                .active
                .iter()
                .filter(|name| !a.status.active.contains(name))
                .map(|name| {
                    Happening::new(
                        Severity::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {name}"),
                    )
                })
                .collect();
            (reference(after), saw)
        }
        (Object::DaemonSet(b), Object::DaemonSet(a)) => {
            let failed = a
                .status
                .failed_placements
                .iter()
                .filter(|f| !b.status.failed_placements.contains(f))
                .map(|f| {
                    Happening::new(
                        Severity::Warning,
                        "FailedPlacement",
                        format!("failed to place instance on node {f}"),
                    )
                })
                .collect();
            (reference(after), failed)
        }
        (Object::HorizontalAutoscaler(b), Object::HorizontalAutoscaler(a)) => {
            let (was, is) = (
                b.status.clone().unwrap_or_default(),
                a.status.clone().unwrap_or_default(),
            );
            let rescaled = (is.last_scale_time.is_some()
                && is.last_scale_time != was.last_scale_time)
                .then(|| {
                    Happening::new(
                        Severity::Normal,
                        "SuccessfulRescale",
                        format!("New size: {}", is.desired_replicas),
                    )
                });
            (reference(after), rescaled.into_iter().collect())
        }
        _ => return Ok(()),
    };
    for happening in &happenings {
        record(txn, &involved, happening, source, now)?;
    }
    Ok(())
}

/// Records `SuccessfulCreate` on the Deployment, Job or DaemonSet that
/// `object`, a new instance, belongs to, and `Scheduled` on an instance
/// created bound to its node (a DaemonSet's).
pub fn record_created(
    txn: &mut Txn<'_, '_>,
    object: &Object,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Object::Job(job) = object {
        return record_on_cronjob(txn, job, "SuccessfulCreate", "Created job", now);
    }
    let Object::Instance(instance) = object else {
        return Ok(());
    };
    if let Some(node) = &instance.spec.node_name {
        let scheduled = Happening::new(
            Severity::Normal,
            "Scheduled",
            format!(
                "Successfully assigned {}/{} to {node}",
                instance.metadata.namespace_or_default(),
                instance.metadata.name
            ),
        );
        record(
            txn,
            &instance_reference(instance),
            &scheduled,
            "scheduler",
            now,
        )?;
    }
    let Some(owner) = owner_reference(instance) else {
        return Ok(());
    };
    let created = Happening::new(
        Severity::Normal,
        "SuccessfulCreate",
        format!("Created instance: {}", instance.metadata.name),
    );
    record(txn, &owner, &created, "scheduler", now)
}

/// Records `SuccessfulDelete` on the CronJob of `object`, a Job the
/// reconciler removes (past the history limit, or replaced).
pub fn record_removed(
    txn: &mut Txn<'_, '_>,
    object: &Object,
    now: Timestamp,
) -> Result<(), StoreError> {
    match object {
        Object::Job(job) => record_on_cronjob(txn, job, "SuccessfulDelete", "Deleted job", now),
        _ => Ok(()),
    }
}

/// Records `reason` with "`what` NAME" on the CronJob owning `job`, if one
/// does.
fn record_on_cronjob(
    txn: &mut Txn<'_, '_>,
    job: &berth_api::job::Job,
    reason: &str,
    what: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(owner) = job
        .metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::CronJob.as_str())
    else {
        return Ok(());
    };
    let involved = ObjectReference {
        kind: owner.kind.clone(),
        namespace: Some(job.metadata.namespace_or_default().to_owned()),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    };
    let happening = Happening::new(
        Severity::Normal,
        reason,
        format!("{what}: {}", job.metadata.name),
    );
    record(txn, &involved, &happening, "scheduler", now)
}

/// What a change of `before` into `after` tells of, in the order it
/// happened (see the table in the module docs). A status that did not
/// change tells nothing, so a node reporting the same state every second
/// adds no events.
pub fn transitions(before: &Instance, after: &Instance) -> Vec<Happening> {
    let mut told = Vec::new();
    if before.spec.node_name.is_none()
        && let Some(node) = &after.spec.node_name
    {
        told.push(Happening::new(
            Severity::Normal,
            "Scheduled",
            format!(
                "Successfully assigned {}/{} to {node}",
                after.metadata.namespace_or_default(),
                after.metadata.name
            ),
        ));
    }
    let (b, a) = (&before.status, &after.status);
    let phase_changed = a.reason != b.reason || a.message != b.message || a.phase != b.phase;
    if !phase_changed && a.ready == b.ready && a.restart_count == b.restart_count {
        return told;
    }
    if a.restart_count > b.restart_count {
        // A run ended and the node restarts it: how it ended, then the
        // back-off if the node is in one.
        let (reason, message) = last_termination(a);
        if reason == REASON_UNHEALTHY {
            told.push(Happening::new(Severity::Warning, REASON_UNHEALTHY, message));
            told.push(Happening::new(
                Severity::Normal,
                "Killing",
                "Stopping instance: it failed its liveness probe and will be restarted",
            ));
        } else {
            told.push(failure(after, reason, message));
        }
        if a.reason == REASON_CRASH_LOOP_BACK_OFF {
            told.push(back_off(a));
        }
        return told;
    }
    if a.reason == REASON_CRASH_LOOP_BACK_OFF {
        if b.reason != REASON_CRASH_LOOP_BACK_OFF {
            told.push(back_off(a));
        }
        return told;
    }
    if phase_changed {
        told.extend(phase_happenings(before, after));
    }
    // Kubernetes' `Unhealthy` for readiness: Running, and its readiness
    // probe now fails (or fails for another reason than last reported).
    if a.phase == Phase::Running
        && b.phase == Phase::Running
        && a.reason.is_empty()
        && b.reason.is_empty()
        && !a.ready
        && (b.ready || a.message != b.message)
    {
        told.push(Happening::new(
            Severity::Warning,
            REASON_UNHEALTHY,
            or_default(&a.message, "Readiness probe failed"),
        ));
    }
    told
}

/// How the last run of a restarting instance ended: its reason and message,
/// or, in `CrashLoopBackOff`, what the node's message names after
/// `last termination:`.
fn last_termination(status: &InstanceStatus) -> (&str, &str) {
    if status.reason == REASON_CRASH_LOOP_BACK_OFF {
        return status
            .message
            .split_once(LAST_TERMINATION)
            .and_then(|(_, last)| last.split_once(": "))
            .unwrap_or(("", &status.message));
    }
    let message = match status.message.rfind(RESTARTING_IN) {
        Some(at) => status.message.get(..at).unwrap_or(&status.message),
        None => &status.message,
    };
    (&status.reason, message)
}

fn back_off(status: &InstanceStatus) -> Happening {
    Happening::new(
        Severity::Warning,
        "BackOff",
        or_default(&status.message, "Back-off restarting failed instance"),
    )
}

/// A run that ended badly, told by its reason.
fn failure(instance: &Instance, reason: &str, message: &str) -> Happening {
    match reason {
        REASON_ERR_IMAGE_PULL => Happening::new(
            Severity::Warning,
            "Failed",
            format!(
                "Failed to pull image {:?}: {message}",
                instance.spec.image.as_deref().unwrap_or_default()
            ),
        ),
        "" => Happening::new(
            Severity::Warning,
            "Failed",
            or_default(message, "Instance failed"),
        ),
        "Completed" => Happening::new(Severity::Normal, "Completed", message),
        reason => Happening::new(Severity::Warning, reason, message),
    }
}

/// `text`, or `default` if it is empty.
fn or_default(text: &str, default: &str) -> String {
    if text.is_empty() { default } else { text }.to_owned()
}

/// What a change of phase, reason or message tells of, restarts aside.
fn phase_happenings(before: &Instance, after: &Instance) -> Vec<Happening> {
    let (b, a) = (&before.status, &after.status);
    match (a.phase, a.reason.as_str()) {
        (Phase::Pending, "Unschedulable") => vec![Happening::new(
            Severity::Warning,
            "FailedScheduling",
            a.message.clone(),
        )],
        // Kubernetes' kubelet event for an unresolvable env reference.
        (Phase::Pending, crate::secrets::REASON_CREATE_CONTAINER_CONFIG_ERROR) => {
            vec![Happening::new(
                Severity::Warning,
                "Failed",
                format!("Error: {}", a.message),
            )]
        }
        (Phase::Pending, "Preempted") => vec![Happening::new(
            Severity::Normal,
            "Preempted",
            a.message.clone(),
        )],
        (Phase::Terminating, "TaintEviction") => vec![Happening::new(
            Severity::Normal,
            "TaintManagerEviction",
            format!(
                "Marking for deletion Instance {}/{}: {}",
                after.metadata.namespace_or_default(),
                after.metadata.name,
                a.message
            ),
        )],
        (Phase::Terminating, reason) if b.phase != Phase::Terminating => vec![Happening::new(
            Severity::Normal,
            "Killing",
            if reason.is_empty() {
                "Stopping instance".to_owned()
            } else {
                format!("Stopping instance: {reason}: {}", a.message)
            },
        )],
        // Running again: first start, or after a restart's back-off.
        (Phase::Running, "") if b.phase != Phase::Running || !b.reason.is_empty() => {
            let mut told = Vec::new();
            if let Some(image) = &after.spec.image
                && b.phase != Phase::Running
                && a.restart_count == 0
            {
                told.push(Happening::new(
                    Severity::Normal,
                    "Pulled",
                    format!("Container image {image:?} is on the node"),
                ));
            }
            told.push(Happening::new(
                Severity::Normal,
                "Started",
                "Started instance",
            ));
            told
        }
        (Phase::Running | Phase::Failed, reason) if !reason.is_empty() => {
            let (reason, message) = last_termination(a);
            vec![failure(after, reason, message)]
        }
        (Phase::Failed, _) => vec![failure(after, "", &a.message)],
        _ => Vec::new(),
    }
}

/// A Node turning Ready or not (the node lifecycle), and cordoned or not.
pub fn node_transitions(before: &Node, after: &Node) -> Vec<Happening> {
    let mut told = Vec::new();
    let name = &after.metadata.name;
    if before.status.is_ready() != after.status.is_ready() {
        let status = if after.status.is_ready() {
            "NodeReady"
        } else {
            "NodeNotReady"
        };
        told.push(Happening::new(
            Severity::Normal,
            status,
            format!("Node {name} status is now: {status}"),
        ));
    }
    if before.spec.unschedulable != after.spec.unschedulable {
        let status = if after.spec.unschedulable {
            "NodeNotSchedulable"
        } else {
            "NodeSchedulable"
        };
        told.push(Happening::new(
            Severity::Normal,
            status,
            format!("Node {name} status is now: {status}"),
        ));
    }
    told
}

/// A canary aborted (`CanaryAborted`, Warning, with the analysis'
/// figures) or promoted (`CanaryPromoted`).
pub fn canary_transitions(before: &Deployment, after: &Deployment) -> Vec<Happening> {
    let canary = |d: &Deployment| d.status.as_ref().and_then(|s| s.canary.clone());
    let (was, now) = (canary(before).unwrap_or_default(), canary(after));
    let Some(now) = now else {
        return Vec::new();
    };
    if now.aborted && !(was.aborted && was.canary_hash == now.canary_hash) {
        return vec![Happening::new(
            Severity::Warning,
            "CanaryAborted",
            now.message,
        )];
    }
    if now.reason == crate::controller::REASON_PROMOTED && was.reason != now.reason {
        return vec![Happening::new(
            Severity::Normal,
            "CanaryPromoted",
            now.message,
        )];
    }
    Vec::new()
}

/// A Job reaching its end: `Completed`, or its `Failed` condition's reason.
pub fn job_transitions(before: &JobStatus, after: &JobStatus) -> Vec<Happening> {
    if before.finished().is_some() {
        return Vec::new();
    }
    let Some(end) = after.finished() else {
        return Vec::new();
    };
    vec![match end.type_ {
        JobConditionType::Complete => {
            Happening::new(Severity::Normal, "Completed", "Job completed")
        }
        JobConditionType::Failed => Happening::new(
            Severity::Warning,
            &or_default(&end.reason, "Failed"),
            or_default(&end.message, "Job failed"),
        ),
    }]
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
mod tests;
