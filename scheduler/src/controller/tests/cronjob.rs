//! The CronJob controller with an injected `now`: the latest due time in
//! the window, deterministic Job names, `startingDeadlineSeconds`,
//! `concurrencyPolicy`, `suspend`, history limits, and garbage collection
//! of the Jobs of a deleted CronJob.

use berth_api::cronjob::{ConcurrencyPolicy, CronJob, CronJobSpec, CronJobStatus, JobTemplate};
use berth_api::job::{Job, JobCondition, JobConditionType, JobSpec, JobStatus};
use berth_api::lifecycle::RestartPolicy;

use super::super::cronjob::{new_job, reconcile_cronjob};
use super::*;

/// An hour boundary (2023-11-14T22:00:00Z) plus `minutes`.
fn m(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_699_999_200 + minutes * 60).unwrap()
}

/// Unix minutes of `m(minutes)`, the suffix of its Job's name.
fn unix_minutes(minutes: i64) -> i64 {
    1_699_999_200 / 60 + minutes
}

fn a_cronjob(schedule: &str) -> CronJob {
    let mut template = template("sha256:job", "");
    template.spec.restart_policy = Some(RestartPolicy::Never);
    CronJob {
        api_version: API_VERSION.into(),
        kind: Kind::CronJob.as_str().into(),
        metadata: ObjectMeta {
            name: "nightly".into(),
            namespace: Some(NS.into()),
            uid: Some("nightly-uid".into()),
            resource_version: Some("10".into()),
            generation: Some(1),
            creation_timestamp: Some(m(0) + SignedDuration::from_secs(10)),
            ..ObjectMeta::default()
        },
        spec: CronJobSpec {
            schedule: schedule.into(),
            time_zone: None,
            concurrency_policy: ConcurrencyPolicy::Allow,
            suspend: false,
            starting_deadline_seconds: None,
            successful_jobs_history_limit: None,
            failed_jobs_history_limit: None,
            job_template: JobTemplate {
                metadata: TemplateMeta::default(),
                spec: JobSpec {
                    template,
                    completions: None,
                    parallelism: None,
                    backoff_limit: None,
                    active_deadline_seconds: None,
                },
            },
        },
        status: CronJobStatus::default(),
    }
}

/// A Job of `cronjob` for the run at `m(minute)`, as stored, finished as
/// `outcome` (at `m(minute) + 30 s`) or still active.
fn job_of(cronjob: &CronJob, minute: i64, outcome: Option<JobConditionType>) -> Job {
    let name = scheduled_job_name(&cronjob.metadata.name, m(minute));
    let mut job = new_job(cronjob, name.clone());
    job.metadata.uid = Some(format!("{name}-uid"));
    job.metadata.resource_version = Some("20".into());
    job.metadata.creation_timestamp = Some(m(minute));
    let ended = m(minute) + SignedDuration::from_secs(30);
    if let Some(type_) = outcome {
        job.status = JobStatus {
            completion_time: (type_ == JobConditionType::Complete).then_some(ended),
            conditions: vec![JobCondition {
                type_,
                status: "True".into(),
                reason: String::new(),
                message: String::new(),
                last_transition_time: Some(ended),
            }],
            ..JobStatus::default()
        };
    }
    job
}

fn pass(cronjob: &CronJob, jobs: Vec<Job>, at: Timestamp) -> Plan {
    let view = View {
        cronjobs: vec![cronjob.clone()],
        jobs,
        ..View::default()
    };
    let mut plan = Plan::default();
    reconcile_cronjob(cronjob, &view, at, &mut plan);
    plan
}

fn created(plan: &Plan) -> Vec<&Job> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::CreateJob(j) => Some(&**j),
            _ => None,
        })
        .collect()
}

fn removed(plan: &Plan) -> Vec<String> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Remove { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn status(plan: &Plan) -> Option<&CronJobStatus> {
    plan.commands.iter().find_map(|c| match c {
        Command::Update { object, .. } => match &**object {
            Object::CronJob(c) => Some(&c.status),
            _ => None,
        },
        _ => None,
    })
}

fn job_key(cronjob: &CronJob, minute: i64) -> String {
    key(
        Kind::Job,
        Some(NS),
        &scheduled_job_name(&cronjob.metadata.name, m(minute)),
    )
}

#[test]
fn every_minute_starts_only_the_latest_missed_run() {
    let cronjob = a_cronjob("* * * * *");
    let plan = pass(&cronjob, Vec::new(), m(3) + SignedDuration::from_secs(5));
    let jobs = created(&plan);
    assert_eq!(jobs.len(), 1, "{plan:#?}");
    let job = jobs[0];
    assert_eq!(job.metadata.name, format!("nightly-{}", unix_minutes(3)));
    assert_eq!(job.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(cronjob_owner(job), Some("nightly-uid"));
    assert_eq!(job.spec, cronjob.spec.job_template.spec);
    let status = status(&plan).unwrap();
    assert_eq!(status.last_schedule_time, Some(m(3)));
    assert_eq!(status.active, vec![job.metadata.name.clone()]);
}

#[test]
fn nothing_is_due_before_the_first_scheduled_time() {
    let cronjob = a_cronjob("* * * * *");
    let plan = pass(&cronjob, Vec::new(), m(0) + SignedDuration::from_secs(50));
    assert_eq!(plan, Plan::default());
}

#[test]
fn a_repeated_pass_never_creates_the_same_run_twice() {
    let mut cronjob = a_cronjob("* * * * *");
    let at = m(3) + SignedDuration::from_secs(5);
    let first = pass(&cronjob, Vec::new(), at);
    cronjob.status = status(&first).unwrap().clone();
    let job = job_of(&cronjob, 3, None);
    assert_eq!(created(&first)[0].metadata.name, job.metadata.name);
    assert_eq!(pass(&cronjob, vec![job.clone()], at), Plan::default());

    // The status write was lost: the Job's name gives it away.
    cronjob.status = CronJobStatus::default();
    let again = pass(&cronjob, vec![job], at);
    assert!(created(&again).is_empty(), "{again:#?}");
    assert_eq!(status(&again).unwrap().last_schedule_time, Some(m(3)));
}

#[test]
fn step_schedule_picks_the_latest_multiple() {
    let cronjob = a_cronjob("*/5 * * * *");
    let plan = pass(&cronjob, Vec::new(), m(12) + SignedDuration::from_secs(59));
    assert_eq!(
        created(&plan)[0].metadata.name,
        format!("nightly-{}", unix_minutes(10))
    );
}

#[test]
fn hourly_macro_runs_on_the_hour() {
    let cronjob = a_cronjob("@hourly");
    assert!(created(&pass(&cronjob, Vec::new(), m(59))).is_empty());
    let plan = pass(&cronjob, Vec::new(), m(130));
    assert_eq!(
        created(&plan)[0].metadata.name,
        format!("nightly-{}", unix_minutes(120))
    );
}

#[test]
fn a_run_missed_beyond_the_starting_deadline_is_skipped() {
    let mut cronjob = a_cronjob("*/5 * * * *");
    cronjob.spec.starting_deadline_seconds = Some(60);
    cronjob.status.last_schedule_time = Some(m(0));
    // m(5) was missed by four minutes: too late.
    assert_eq!(pass(&cronjob, Vec::new(), m(9)), Plan::default());
    // Within the deadline it starts.
    let plan = pass(&cronjob, Vec::new(), m(5) + SignedDuration::from_secs(59));
    assert_eq!(status(&plan).unwrap().last_schedule_time, Some(m(5)));
}

#[test]
fn forbid_skips_while_a_job_is_active() {
    let mut cronjob = a_cronjob("* * * * *");
    cronjob.spec.concurrency_policy = ConcurrencyPolicy::Forbid;
    cronjob.status.last_schedule_time = Some(m(1));
    let running = job_of(&cronjob, 1, None);
    cronjob.status.active = vec![running.metadata.name.clone()];
    let plan = pass(&cronjob, vec![running.clone()], m(2));
    assert_eq!(plan, Plan::default());

    // Once it finished, the latest time starts.
    let done = job_of(&cronjob, 1, Some(JobConditionType::Complete));
    let plan = pass(&cronjob, vec![done], m(2));
    assert_eq!(created(&plan).len(), 1);
    let status = status(&plan).unwrap();
    assert_eq!(status.last_schedule_time, Some(m(2)));
    assert_eq!(
        status.last_successful_time,
        Some(m(1) + SignedDuration::from_secs(30))
    );
}

#[test]
fn replace_removes_the_active_job_and_starts_the_new_one() {
    let mut cronjob = a_cronjob("* * * * *");
    cronjob.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    cronjob.status.last_schedule_time = Some(m(1));
    let running = job_of(&cronjob, 1, None);
    let plan = pass(&cronjob, vec![running], m(2));
    assert_eq!(removed(&plan), vec![job_key(&cronjob, 1)]);
    assert_eq!(
        created(&plan)[0].metadata.name,
        format!("nightly-{}", unix_minutes(2))
    );
    assert_eq!(
        status(&plan).unwrap().active,
        vec![format!("nightly-{}", unix_minutes(2))]
    );
}

#[test]
fn allow_runs_alongside_an_active_job() {
    let mut cronjob = a_cronjob("* * * * *");
    cronjob.status.last_schedule_time = Some(m(1));
    let running = job_of(&cronjob, 1, None);
    let plan = pass(&cronjob, vec![running.clone()], m(2));
    assert!(removed(&plan).is_empty());
    assert_eq!(created(&plan).len(), 1);
    assert_eq!(
        status(&plan).unwrap().active,
        vec![
            running.metadata.name.clone(),
            format!("nightly-{}", unix_minutes(2))
        ]
    );
}

#[test]
fn suspend_creates_nothing() {
    let mut cronjob = a_cronjob("* * * * *");
    cronjob.spec.suspend = true;
    assert_eq!(pass(&cronjob, Vec::new(), m(30)), Plan::default());
}

#[test]
fn finished_jobs_beyond_the_history_limits_are_removed_oldest_first() {
    let mut cronjob = a_cronjob("* * * * *");
    cronjob.spec.suspend = true;
    let mut jobs: Vec<Job> = (1..=5)
        .map(|minute| job_of(&cronjob, minute, Some(JobConditionType::Complete)))
        .collect();
    jobs.extend((6..=8).map(|minute| job_of(&cronjob, minute, Some(JobConditionType::Failed))));
    jobs.push(job_of(&cronjob, 9, None));
    let plan = pass(&cronjob, jobs, m(10));
    let mut gone = removed(&plan);
    gone.sort();
    // Three successful kept (3, 4, 5), one failed (8); the active stays.
    let mut expected: Vec<String> = [1, 2, 6, 7].iter().map(|&n| job_key(&cronjob, n)).collect();
    expected.sort();
    assert_eq!(gone, expected);
}

#[test]
fn jobs_of_a_deleted_cronjob_are_removed() {
    let cronjob = a_cronjob("* * * * *");
    let orphan = job_of(&cronjob, 1, None);
    let view = View {
        jobs: vec![orphan],
        ..View::default()
    };
    let plan = run(&view, &HashMap::new());
    assert_eq!(removed(&plan), vec![job_key(&cronjob, 1)]);
}

#[test]
fn time_zone_moves_the_schedule() {
    let mut cronjob = a_cronjob("30 23 * * *");
    // m(0) is 22:00 UTC, 23:00 in Berlin (UTC+1 in November).
    cronjob.spec.time_zone = Some("Europe/Berlin".into());
    let plan = pass(&cronjob, Vec::new(), m(31));
    assert_eq!(
        created(&plan)[0].metadata.name,
        format!("nightly-{}", unix_minutes(30))
    );
}
