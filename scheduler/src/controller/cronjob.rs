//! The CronJob controller: creates a CronJob's Jobs on its schedule, as
//! Kubernetes' cronjob controller (v2) does.
//!
//! Each pass looks for the latest scheduled time in the window that starts
//! at `status.lastScheduleTime` (or the CronJob's creation) and, with
//! `startingDeadlineSeconds`, no earlier than that many seconds ago, and
//! ends now. Earlier missed times in the window are skipped: only the
//! latest one runs. The Job is named `<cronjob>-<scheduled time in unix
//! minutes>`, so a repeated pass (or two schedulers' passes) can never
//! create the same run twice: a name already in the store is not created
//! again.
//!
//! `concurrencyPolicy` decides what happens while an earlier Job is still
//! active: `Allow` starts the new one anyway, `Forbid` skips the time
//! (leaving `lastScheduleTime` alone, so the run starts once the active one
//! ends if the schedule still allows it), `Replace` removes the active Jobs
//! (their instances are then garbage collected) and starts the new one.
//! `suspend` creates nothing. Finished Jobs beyond
//! `successfulJobsHistoryLimit` and `failedJobsHistoryLimit` are removed,
//! oldest first. Jobs whose CronJob is gone are removed by `gc.rs`.

use berth_api::cronjob::{ConcurrencyPolicy, CronJob, CronJobStatus, Schedule};
use berth_api::job::{Job, JobConditionType, JobStatus};
use berth_api::{API_VERSION, Kind, Object, ObjectMeta, OwnerReference};
use jiff::{SignedDuration, Timestamp};

use super::{Command, Plan, View, rv};
use crate::store::key;

/// The uid of the CronJob owning `job`, if a CronJob owns it.
pub fn cronjob_owner(job: &Job) -> Option<&str> {
    job.metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::CronJob.as_str())
        .map(|r| r.uid.as_str())
}

/// The name of the Job a CronJob creates for the run scheduled at
/// `scheduled`: the CronJob's name and the time in minutes since the Unix
/// epoch, as Kubernetes names them.
pub fn scheduled_job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

pub(super) fn reconcile_cronjob(cronjob: &CronJob, view: &View, now: Timestamp, plan: &mut Plan) {
    let Some(uid) = cronjob.metadata.uid.as_deref() else {
        return;
    };
    let Ok(schedule) = Schedule::of(&cronjob.spec) else {
        // Validation refuses such a schedule; a stored one runs nothing.
        return;
    };
    let spec = &cronjob.spec;
    let before = &cronjob.status;
    let owned: Vec<&Job> = view
        .jobs
        .iter()
        .filter(|j| cronjob_owner(j) == Some(uid))
        .collect();
    let (finished, mut active): (Vec<&Job>, Vec<&Job>) = owned
        .iter()
        .copied()
        .partition(|j| j.status.finished().is_some());

    let mut status = CronJobStatus {
        active: Vec::new(),
        last_schedule_time: before.last_schedule_time,
        last_successful_time: finished
            .iter()
            .filter(|j| j.status.is(JobConditionType::Complete))
            .filter_map(|j| j.status.completion_time)
            .chain(before.last_successful_time)
            .max(),
    };

    if !spec.suspend {
        let mut since = before
            .last_schedule_time
            .or(cronjob.metadata.creation_timestamp)
            .unwrap_or(now);
        if let Some(seconds) = spec.starting_deadline_seconds {
            since = since.max(now - SignedDuration::from_secs(seconds));
        }
        if let Some(due) = schedule.latest_between(since, now) {
            let name = scheduled_job_name(&cronjob.metadata.name, due);
            let exists = view.jobs.iter().any(|j| {
                j.metadata.name == name
                    && j.metadata.namespace_or_default() == cronjob.metadata.namespace_or_default()
            });
            let start = exists
                || match spec.concurrency_policy {
                    ConcurrencyPolicy::Allow => true,
                    ConcurrencyPolicy::Forbid => active.is_empty(),
                    ConcurrencyPolicy::Replace => {
                        for job in active.drain(..) {
                            remove(job, plan);
                        }
                        true
                    }
                };
            if start {
                if !exists {
                    plan.commands
                        .push(Command::CreateJob(Box::new(new_job(cronjob, name.clone()))));
                    status.active.push(name);
                }
                status.last_schedule_time = Some(due);
            }
        }
    }

    remove_beyond_history(
        &finished,
        JobConditionType::Complete,
        spec.successful_jobs_history_limit(),
        plan,
    );
    remove_beyond_history(
        &finished,
        JobConditionType::Failed,
        spec.failed_jobs_history_limit(),
        plan,
    );

    let mut names: Vec<String> = active.iter().map(|j| j.metadata.name.clone()).collect();
    names.append(&mut status.active);
    names.sort();
    names.dedup();
    status.active = names;
    if *before != status {
        let mut updated = cronjob.clone();
        updated.status = status;
        plan.commands.push(Command::Update {
            seen: rv(&cronjob.metadata),
            object: Box::new(Object::CronJob(Box::new(updated))),
        });
    }
}

/// Removes the oldest finished Jobs ending in `outcome` beyond `limit`.
fn remove_beyond_history(
    finished: &[&Job],
    outcome: JobConditionType,
    limit: i32,
    plan: &mut Plan,
) {
    let mut ended: Vec<&Job> = finished
        .iter()
        .copied()
        .filter(|j| j.status.is(outcome))
        .collect();
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    if ended.len() <= keep {
        return;
    }
    ended.sort_by_key(|j| (ended_at(&j.status), j.metadata.creation_timestamp));
    let excess = ended.len() - keep;
    for job in ended.into_iter().take(excess) {
        remove(job, plan);
    }
}

/// When a finished Job ended: its completion time, or the time its
/// terminal condition was set.
fn ended_at(status: &JobStatus) -> Option<Timestamp> {
    status.completion_time.or_else(|| {
        status
            .finished()
            .and_then(|condition| condition.last_transition_time)
    })
}

/// Removes `job` (its instances are then garbage collected).
pub(super) fn remove(job: &Job, plan: &mut Plan) {
    plan.commands.push(Command::Remove {
        key: key(
            Kind::Job,
            Some(job.metadata.namespace_or_default()),
            &job.metadata.name,
        ),
        seen: rv(&job.metadata),
    });
}

/// The Job for one scheduled run: the template's labels and spec, owned by
/// the CronJob.
pub(super) fn new_job(cronjob: &CronJob, name: String) -> Job {
    let template = &cronjob.spec.job_template;
    Job {
        api_version: API_VERSION.into(),
        kind: Kind::Job.as_str().into(),
        metadata: ObjectMeta {
            name,
            namespace: cronjob.metadata.namespace.clone(),
            labels: template.metadata.labels.clone(),
            owner_references: vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: Kind::CronJob.as_str().into(),
                name: cronjob.metadata.name.clone(),
                uid: cronjob.metadata.uid.clone().unwrap_or_default(),
            }],
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: JobStatus::default(),
    }
}
