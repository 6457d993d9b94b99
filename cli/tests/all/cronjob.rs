//! CronJobs end to end: a real scheduler and node, a CronJob scheduled
//! every minute running the `job` command component (see
//! `sdk/examples/job`); its first Job is created at the next minute and
//! its run succeeds.

use std::time::Duration;

use berth_api::Object;
use berth_api::cronjob::CronJob;
use berth_api::job::{Job, JobConditionType};

use crate::harness::Cluster;

fn cronjob(cluster: &Cluster, name: &str) -> Option<CronJob> {
    cluster
        .objects("cronjobs")
        .into_iter()
        .find_map(|o| match o {
            Object::CronJob(c) if c.metadata.name == name => Some(*c),
            _ => None,
        })
}

/// The Jobs the CronJob `name` created.
fn jobs_of(cluster: &Cluster, name: &str) -> Vec<Job> {
    cluster
        .objects("jobs")
        .into_iter()
        .filter_map(|o| match o {
            Object::Job(j)
                if j.metadata
                    .owner_references
                    .iter()
                    .any(|r| r.kind == "CronJob" && r.name == name) =>
            {
                Some(*j)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn an_every_minute_cronjob_creates_a_job_that_succeeds() {
    let cluster = Cluster::start(1);
    let yaml = format!(
        "apiVersion: berth.dev/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: \"* * * * *\"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          component: {}
          restartPolicy: Never
          env:
          - {{name: WORK_MS, value: \"100\"}}
",
        berth_test_programs::JOB
    );
    let manifest = cluster.manifest("tick", &yaml);
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "cronjob/tick created\n");

    // The first scheduled time is at most a minute away.
    let mut succeeded = None;
    cluster.wait_for(
        "a job of cronjob tick to succeed",
        Duration::from_secs(90),
        || {
            succeeded = jobs_of(&cluster, "tick")
                .into_iter()
                .find(|j| j.status.is(JobConditionType::Complete));
            succeeded.is_some()
        },
    );
    let job = succeeded.unwrap();
    let minutes: i64 = job
        .metadata
        .name
        .strip_prefix("tick-")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("job name {:?} is not tick-<minutes>", job.metadata.name));
    let cronjob = cronjob(&cluster, "tick").unwrap();
    let last = cronjob.status.last_schedule_time.unwrap();
    assert!(last.as_second() / 60 >= minutes, "{cronjob:#?}");
    assert_eq!(last.as_second() % 60, 0, "{cronjob:#?}");

    let jobs = cluster.ok(&["get", "jobs"]);
    assert!(jobs.contains(&job.metadata.name), "{jobs}");
    let table = cluster.ok(&["get", "cj"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ]
    );
    // NAME, the five schedule fields, TIMEZONE, SUSPEND, ACTIVE, LAST
    // SCHEDULE, AGE.
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row.len(), 11, "{table}");
    assert_eq!(
        row[..8],
        ["tick", "*", "*", "*", "*", "*", "<none>", "False"],
        "{table}"
    );
    assert_ne!(row[9], "<none>", "{table}");

    let described = cluster.ok(&["describe", "cronjob", "tick"]);
    assert!(described.contains("Concurrency Policy:"), "{described}");
    let events = cluster.ok(&["get", "events"]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains(&job.metadata.name),
        "{events}"
    );

    // Deleting the CronJob removes its Jobs.
    cluster.ok(&["delete", "cronjob", "tick"]);
    cluster.wait_for(
        "the jobs of cronjob tick to be removed",
        Duration::from_secs(30),
        || jobs_of(&cluster, "tick").is_empty(),
    );
}
