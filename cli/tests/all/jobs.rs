//! Jobs end to end: a real scheduler and node run the `job` command
//! component (see `sdk/examples/job`) to completion, and the Job's status
//! counts the runs.

use std::path::PathBuf;
use std::time::Duration;

use berth_api::job::{Job, JobConditionType};
use berth_api::{Instance, Object, Phase};

use crate::harness::Cluster;

/// The example command component, built from source by berth-test-programs.
fn job_wasm() -> PathBuf {
    PathBuf::from(berth_test_programs::JOB)
}

/// Writes a Job manifest named `name` running the job component with
/// `spec` (indented under `spec:`) and `env` (`NAME: value` pairs) into
/// the cluster's directory; returns its path.
fn job_manifest(cluster: &Cluster, name: &str, spec: &str, env: &[(&str, &str)]) -> PathBuf {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - {{name: {k}, value: \"{v}\"}}\n"))
        .collect();
    let yaml = format!(
        "apiVersion: berth.dev/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    spec:
      component: {}
      restartPolicy: Never
      env:
{env}",
        job_wasm().display()
    );
    let path = cluster.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn job(cluster: &Cluster, name: &str) -> Option<Job> {
    cluster.objects("jobs").into_iter().find_map(|o| match o {
        Object::Job(j) if j.metadata.name == name => Some(*j),
        _ => None,
    })
}

/// The instances a Job made.
fn runs(cluster: &Cluster, name: &str) -> Vec<Instance> {
    cluster
        .objects("instances")
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i)
                if i.metadata
                    .owner_references
                    .iter()
                    .any(|r| r.kind == "Job" && r.name == name) =>
            {
                Some(*i)
            }
            _ => None,
        })
        .collect()
}

/// Waits until the Job `name` has finished, and checks that it ended with
/// a condition of `type_`; returns it.
fn wait_finished(cluster: &Cluster, name: &str, type_: JobConditionType) -> Job {
    let mut last = None;
    cluster.wait_for(
        &format!("job {name} to finish"),
        Duration::from_secs(90),
        || {
            last = job(cluster, name);
            last.as_ref().is_some_and(|j| j.status.finished().is_some())
        },
    );
    let job = last.unwrap();
    assert!(
        job.status.is(type_),
        "job {name} did not end {type_:?}: {:#?}\nits runs: {:#?}",
        job.status,
        runs(cluster, name)
    );
    job
}

#[test]
fn a_job_runs_to_its_completions_one_at_a_time() {
    let cluster = Cluster::start(1);
    let manifest = job_manifest(
        &cluster,
        "report",
        "  completions: 2\n  parallelism: 1",
        &[("WORK_MS", "200")],
    );
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "job/report created\n");

    let done = wait_finished(&cluster, "report", JobConditionType::Complete);
    let status = &done.status;
    assert_eq!((status.succeeded, status.failed, status.active), (2, 0, 0));
    assert!(status.completion_time.is_some() && status.start_time.is_some());

    let made = runs(&cluster, "report");
    assert_eq!(made.len(), 2, "{made:#?}");
    for run in &made {
        assert_eq!(run.status.phase, Phase::Succeeded, "{run:#?}");
        assert_eq!(run.status.exit_code, Some(0), "{run:#?}");
    }

    let table = cluster.ok(&["get", "jobs"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "COMPLETIONS", "DURATION", "AGE"]);
    let row: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["report", "2/2"], "{table}");

    let yaml = cluster.ok(&["get", "job", "report", "-o", "yaml"]);
    assert!(yaml.contains("type: Complete"), "{yaml}");
    let described = cluster.ok(&["describe", "job", "report"]);
    assert!(
        described.contains("0 Active / 2 Succeeded / 0 Failed"),
        "{described}"
    );

    // The same file again changes nothing; deleting the Job takes its runs.
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "job/report unchanged\n");
    cluster.ok(&["delete", "job", "report"]);
    cluster.wait_for(
        "the Job's runs to be collected",
        Duration::from_secs(60),
        || runs(&cluster, "report").is_empty(),
    );
}

#[test]
fn failed_runs_count_against_the_backoff_limit() {
    let cluster = Cluster::start(1);
    let manifest = job_manifest(
        &cluster,
        "broken",
        "  backoffLimit: 1",
        &[("EXIT_CODE", "1")],
    );
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    let failed = wait_finished(&cluster, "broken", JobConditionType::Failed);
    let status = &failed.status;
    assert_eq!((status.failed, status.succeeded, status.active), (2, 0, 0));
    let condition = status.finished().unwrap();
    assert_eq!(condition.reason, "BackoffLimitExceeded");
    assert_eq!(status.completion_time, None);

    let made = runs(&cluster, "broken");
    assert_eq!(made.len(), 2, "one run and one replacement: {made:#?}");
    assert!(
        made.iter()
            .any(|r| r.status.phase == Phase::Failed && r.status.exit_code == Some(1)),
        "{made:#?}"
    );
}
