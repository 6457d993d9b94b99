//! The Job controller: runs a Job's command component until `completions`
//! runs succeeded, at most `parallelism` at a time, and gives up after
//! `backoffLimit` failures or `activeDeadlineSeconds`, as Kubernetes'
//! job controller does for a NonIndexed Job.
//!
//! A run is one Instance owned by the Job. The node runs it and reports
//! it `Succeeded` (exit code 0) or `Failed`; a finished run is no longer
//! assigned to its node ([`is_finished_run`]) but stays in the store, as
//! Kubernetes keeps a Job's pods. Failures count two ways: with
//! `restartPolicy: Never` each Failed instance is one (and a replacement is
//! created while the count stays within `backoffLimit`); with `OnFailure`
//! the node restarts the instance in place, and each restart
//! (`status.restartCount`) is one. Under `OnFailure` a `Failed` phase means
//! the node is backing off before the next restart, so such an instance
//! has not finished: it stays assigned and active.
//!
//! The counts in `status` never go down: a finished instance removed
//! later (deleted, or lost with its node) stays counted, as Kubernetes'
//! finalizer-based tracking keeps it. Instances terminated by someone else
//! (eviction, `berth delete instance`) before they finished are replaced
//! and not counted as failures. See `docs/decisions/0018-jobs.md`.

use std::collections::{BTreeMap, HashSet};

use berth_api::job::{JOB_NAME_LABEL, Job, JobCondition, JobConditionType, JobStatus};
use berth_api::lifecycle::RestartPolicy;
use berth_api::{
    API_VERSION, Instance, InstanceStatus, Kind, Object, ObjectMeta, OwnerReference, Phase,
};
use jiff::{SignedDuration, Timestamp};

use super::{Command, Plan, View, instance_key, is_terminating, rv, terminate, terminate_because};

/// `Complete` reason: `completions` runs succeeded.
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

/// `Failed` reason: more failures than `backoffLimit`.
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";

/// `Failed` reason: the Job ran longer than `activeDeadlineSeconds`.
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// The uid of the Job owning `instance`, if a Job owns it.
pub fn job_owner(instance: &Instance) -> Option<&str> {
    instance
        .metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::Job.as_str())
        .map(|r| r.uid.as_str())
}

/// Whether `instance` is a Job's run that has ended: `Succeeded`, or
/// `Failed` under `restartPolicy: Never`. Its node must not run it again.
pub fn is_finished_run(instance: &Instance) -> bool {
    job_owner(instance).is_some() && is_finished(instance)
}

fn is_finished(instance: &Instance) -> bool {
    instance.status.phase == Phase::Succeeded || is_final_failure(instance)
}

/// `Failed` for good. Under `OnFailure` the node restarts a failed run in
/// place (reporting it `Failed` while it backs off), and the restart is
/// what counts.
fn is_final_failure(instance: &Instance) -> bool {
    instance.status.phase == Phase::Failed
        && instance.spec.restart_policy != Some(RestartPolicy::OnFailure)
}

/// A count of instances as a Job status field.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A non-negative spec count as a number of instances.
fn size(n: i32) -> usize {
    usize::try_from(n.max(0)).unwrap_or(0)
}

pub(super) fn reconcile_job(
    job: &Job,
    view: &View,
    evicted: &HashSet<String>,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
    plan: &mut Plan,
) {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return;
    };
    let spec = &job.spec;
    let before = &job.status;
    let owned: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| job_owner(i) == Some(uid))
        .collect();
    let succeeded_now = owned
        .iter()
        .filter(|i| i.status.phase == Phase::Succeeded)
        .count();
    // Restarts only happen under OnFailure; under Never the sum is 0.
    let restarts: u64 = owned
        .iter()
        .map(|i| u64::from(i.status.restart_count))
        .sum();
    let failed_now = owned.iter().filter(|i| is_final_failure(i)).count();
    let failed_now = u64::try_from(failed_now)
        .unwrap_or(u64::MAX)
        .saturating_add(restarts);
    let succeeded = before.succeeded.max(count(succeeded_now));
    let failed = before
        .failed
        .max(i32::try_from(failed_now).unwrap_or(i32::MAX));
    let mut active: Vec<&Instance> = owned
        .iter()
        .copied()
        .filter(|i| !is_terminating(i) && !evicted.contains(&instance_key(i)) && !is_finished(i))
        .collect();

    let start_time = before.start_time.unwrap_or(now);
    let mut conditions = before.conditions.clone();
    let mut completion_time = before.completion_time;
    let mut created = 0;
    if before.finished().is_none() {
        let ended = if succeeded >= spec.completions() {
            completion_time = Some(now);
            Some((
                JobConditionType::Complete,
                REASON_COMPLETIONS_REACHED,
                format!("Reached expected number of succeeded runs: {succeeded}"),
            ))
        } else if failed > spec.backoff_limit() {
            Some((
                JobConditionType::Failed,
                REASON_BACKOFF_LIMIT_EXCEEDED,
                "Job has reached the specified backoff limit".to_owned(),
            ))
        } else if spec.active_deadline_seconds.is_some_and(|seconds| {
            now.duration_since(start_time) >= SignedDuration::from_secs(seconds)
        }) {
            Some((
                JobConditionType::Failed,
                REASON_DEADLINE_EXCEEDED,
                "Job was active longer than specified deadline".to_owned(),
            ))
        } else {
            None
        };
        match ended {
            Some((type_, reason, message)) => conditions.push(JobCondition {
                type_,
                status: "True".into(),
                reason: reason.into(),
                message,
                last_transition_time: Some(now),
            }),
            None => {
                // As Kubernetes for a NonIndexed Job: no more runs at once
                // than are still needed, and no more than `parallelism`.
                let remaining = size(spec.completions()).saturating_sub(size(succeeded));
                let want = remaining.min(size(spec.parallelism()));
                if active.len() > want {
                    let excess = active.len() - want;
                    active.sort_by_key(|i| surplus_rank(i));
                    for instance in active.drain(..excess) {
                        terminate(instance, now, plan);
                    }
                }
                created = want.saturating_sub(active.len());
                for _ in 0..created {
                    plan.commands
                        .push(Command::Create(Box::new(new_run(job, new_name))));
                }
            }
        }
    }
    // A finished Job runs nothing more: whatever is still active stops,
    // saying why when the Job failed.
    if let Some(condition) = conditions.iter().find(|c| c.status == "True") {
        let (reason, message) = match condition.type_ {
            JobConditionType::Failed => (condition.reason.as_str(), condition.message.clone()),
            JobConditionType::Complete => ("", String::new()),
        };
        for instance in active.drain(..) {
            terminate_because(instance, now, reason, message.clone(), plan);
        }
    }

    let status = JobStatus {
        active: count(active.len().saturating_add(created)),
        succeeded,
        failed,
        start_time: Some(start_time),
        completion_time,
        conditions,
    };
    if *before != status {
        let mut updated = job.clone();
        updated.status = status;
        plan.commands.push(Command::Update {
            seen: rv(&job.metadata),
            object: Box::new(Object::Job(Box::new(updated))),
        });
    }
}

/// The order in which surplus runs stop: unplaced first, then not yet
/// running, then the newest.
fn surplus_rank(instance: &Instance) -> (u8, std::cmp::Reverse<Option<Timestamp>>) {
    let stage = match instance.status.phase {
        Phase::Pending => 0,
        Phase::Scheduled | Phase::Starting => 1,
        _ => 2,
    };
    (
        stage,
        std::cmp::Reverse(instance.metadata.creation_timestamp),
    )
}

/// A new run of `job`: the template's labels plus [`JOB_NAME_LABEL`], its
/// spec without a node, owned by the Job. The reconciler resolves its
/// priority when it stores it, as for a Deployment's instance.
pub(super) fn new_run(job: &Job, new_name: &mut dyn FnMut(&str) -> String) -> Instance {
    let mut labels: BTreeMap<String, String> = job.spec.template.metadata.labels.clone();
    labels.insert(JOB_NAME_LABEL.into(), job.metadata.name.clone());
    let mut spec = job.spec.template.spec.clone();
    spec.node_name = None;
    Instance {
        api_version: API_VERSION.into(),
        kind: Kind::Instance.as_str().into(),
        metadata: ObjectMeta {
            name: new_name(&job.metadata.name),
            namespace: job.metadata.namespace.clone(),
            labels,
            owner_references: vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: Kind::Job.as_str().into(),
                name: job.metadata.name.clone(),
                uid: job.metadata.uid.clone().unwrap_or_default(),
            }],
            ..ObjectMeta::default()
        },
        spec,
        status: InstanceStatus::default(),
    }
}
