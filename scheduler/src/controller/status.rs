//! A Deployment's `status` after a pass: the counts of its instances, the
//! revision history, and the `Available` and `Progressing` conditions.

use berth_api::rollout::{DeploymentCondition, Revision};
use berth_api::{Deployment, DeploymentStatus, Instance, InstanceTemplate};
use jiff::{SignedDuration, Timestamp};

use super::deployment::{Live, RolloutLimits, is_ready};

/// The Deployment condition that tells whether enough instances serve.
pub const CONDITION_AVAILABLE: &str = "Available";

/// The Deployment condition that tells how its rollout goes.
pub const CONDITION_PROGRESSING: &str = "Progressing";

/// `Available` reason: at least `replicas - maxUnavailable` are available.
pub const REASON_MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";

/// `Available` reason: fewer than `replicas - maxUnavailable` are available.
pub const REASON_MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `Progressing` reason: every replica runs the current template and is
/// available (Kubernetes' name, though berth has no ReplicaSets).
pub const REASON_NEW_REVISION_AVAILABLE: &str = "NewReplicaSetAvailable";

/// `Progressing` reason: the rollout is under way.
pub const REASON_REVISION_UPDATED: &str = "ReplicaSetUpdated";

/// `Progressing` reason: nothing progressed for `progressDeadlineSeconds`.
pub const REASON_PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// `Progressing` reason: `spec.paused`.
pub const REASON_DEPLOYMENT_PAUSED: &str = "DeploymentPaused";

/// `progressDeadlineSeconds` when the spec leaves it out, as Kubernetes.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

/// `revisionHistoryLimit` when the spec leaves it out, as Kubernetes.
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 10;

/// The status after this pass: counts of the instances left live (the
/// ones created this pass are not stored yet), the revision history and
/// the conditions.
pub(super) fn next_status(
    deployment: &Deployment,
    hash: &str,
    live: &Live,
    acted: bool,
    available: &dyn Fn(&Instance) -> bool,
    limits: RolloutLimits,
    now: Timestamp,
) -> DeploymentStatus {
    let spec = &deployment.spec;
    let before = deployment.status.as_ref();
    let history = record_revision(
        before.map_or(&[], |s| s.history.as_slice()),
        hash,
        &spec.template,
        spec.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT),
    );
    let revision = history.last().map_or(0, |r| r.revision);
    let all = || live.new.iter().chain(&live.old);
    let replicas = live.total() as u64;
    let updated = live.new.len() as u64;
    let ready = all().filter(|i| is_ready(i)).count() as u64;
    let available_count = all().filter(|i| available(i)).count() as u64;
    let wanted = u64::try_from(spec.replicas.max(0)).unwrap_or(0);
    let wanted_usize = usize::try_from(wanted).unwrap_or(usize::MAX);
    let min_available = limits.min_available(wanted_usize) as u64;
    // Kubernetes' `DeploymentProgressing`: more instances updated, ready
    // or available than last written, or a new revision.
    let progressed = acted
        || before.is_none_or(|s| {
            s.revision != revision
                || updated > s.updated_replicas
                || ready > s.ready_replicas
                || available_count > s.available_replicas
        });
    let complete = updated == wanted && replicas == wanted && available_count == wanted;
    let previous =
        |type_: &str| before.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let deadline = SignedDuration::from_secs(i64::from(
        spec.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
    ));
    let progressing = progressing_condition(
        previous(CONDITION_PROGRESSING),
        Progress {
            paused: spec.paused,
            complete,
            progressed,
            deadline,
            revision,
        },
        now,
    );
    let has_minimum = available_count >= min_available;
    let (status, reason, message) = if has_minimum {
        (
            "True",
            REASON_MINIMUM_REPLICAS_AVAILABLE,
            "deployment has minimum availability",
        )
    } else {
        (
            "False",
            REASON_MINIMUM_REPLICAS_UNAVAILABLE,
            "deployment does not have minimum availability",
        )
    };
    let since = previous(CONDITION_AVAILABLE)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    let available_condition = condition(CONDITION_AVAILABLE, status, reason, message.into(), since);
    DeploymentStatus {
        observed_generation: deployment.metadata.generation.unwrap_or(0),
        replicas,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: available_count,
        unavailable_replicas: replicas.saturating_sub(available_count),
        revision,
        conditions: vec![available_condition, progressing],
        history,
        // The canary controller (`canary.rs`) writes its own.
        canary: before.and_then(|s| s.canary.clone()),
    }
}

/// What the `Progressing` condition is decided from.
struct Progress {
    paused: bool,
    complete: bool,
    progressed: bool,
    deadline: SignedDuration,
    revision: u64,
}

/// `Progressing`: `lastUpdateTime` is when the rollout last progressed;
/// past the deadline without progress it turns False. A condition that
/// keeps its reason keeps its time, so a pass with nothing new writes
/// nothing.
fn progressing_condition(
    previous: Option<&DeploymentCondition>,
    progress: Progress,
    now: Timestamp,
) -> DeploymentCondition {
    let revision = progress.revision;
    let since = |reason: &str| {
        previous
            .filter(|c| c.reason == reason)
            .and_then(|c| c.last_update_time)
            .unwrap_or(now)
    };
    if progress.paused {
        let reason = REASON_DEPLOYMENT_PAUSED;
        let message = "deployment is paused".to_owned();
        return condition(
            CONDITION_PROGRESSING,
            "Unknown",
            reason,
            message,
            since(reason),
        );
    }
    if progress.complete {
        let reason = REASON_NEW_REVISION_AVAILABLE;
        let message = format!("revision {revision} has successfully progressed");
        return condition(
            CONDITION_PROGRESSING,
            "True",
            reason,
            message,
            since(reason),
        );
    }
    // The clock restarts on progress, and when a rollout starts after a
    // complete one or a pause.
    let last = previous
        .filter(|c| {
            !progress.progressed
                && [REASON_REVISION_UPDATED, REASON_PROGRESS_DEADLINE_EXCEEDED]
                    .contains(&c.reason.as_str())
        })
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    if now.duration_since(last) > progress.deadline {
        let message = format!("revision {revision} has timed out progressing");
        let reason = REASON_PROGRESS_DEADLINE_EXCEEDED;
        condition(CONDITION_PROGRESSING, "False", reason, message, last)
    } else {
        let message = format!("revision {revision} is progressing");
        condition(
            CONDITION_PROGRESSING,
            "True",
            REASON_REVISION_UPDATED,
            message,
            last,
        )
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    since: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_update_time: Some(since),
    }
}

/// `history` with the current template as its newest entry. A template
/// seen before (a rollback) moves to the end with the next number, as
/// Kubernetes renumbers the replica set it scales back up; a new one is
/// appended. At most `limit` entries besides the current one are kept.
pub(super) fn record_revision(
    history: &[Revision],
    hash: &str,
    template: &InstanceTemplate,
    limit: u32,
) -> Vec<Revision> {
    let mut history = history.to_vec();
    if history.last().is_none_or(|r| r.template_hash != hash) {
        let next = history.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let entry = match history.iter().position(|r| r.template_hash == hash) {
            Some(index) => Revision {
                revision: next,
                ..history.remove(index)
            },
            None => Revision {
                revision: next,
                template_hash: hash.to_owned(),
                template: template.clone(),
                change_cause: change_cause(history.last(), template),
            },
        };
        history.push(entry);
    }
    let keep = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let excess = history.len().saturating_sub(keep);
    history.drain(..excess);
    history
}

/// Longest component digest prefix a change cause shows
/// (`sha256:` and 12 hex digits).
const CHANGE_CAUSE_DIGEST_LEN: usize = 19;

/// `component sha256:0123456789ab` when the component changed since the
/// previous revision (or there is none), else `template changed`.
fn change_cause(previous: Option<&Revision>, template: &InstanceTemplate) -> String {
    let component = &template.spec.component;
    if previous.is_some_and(|r| r.template.spec.component == *component) {
        "template changed".into()
    } else {
        let prefix: String = component.chars().take(CHANGE_CAUSE_DIGEST_LEN).collect();
        format!("component {prefix}")
    }
}
