//! The Job controller: runs up to `parallelism` until `completions`
//! succeeded, failures against `backoffLimit` (Failed instances under
//! `Never`, restarts under `OnFailure`), `activeDeadlineSeconds`, and the
//! status it writes only when it changes.

use berth_api::job::{JOB_NAME_LABEL, Job, JobCondition, JobConditionType, JobSpec, JobStatus};
use berth_api::lifecycle::RestartPolicy;

use super::super::job::new_run;
use super::*;

fn a_job(completions: i32, parallelism: i32, backoff_limit: i32, policy: RestartPolicy) -> Job {
    let mut template = template("sha256:job", "");
    template.spec.restart_policy = Some(policy);
    Job {
        api_version: API_VERSION.into(),
        kind: Kind::Job.as_str().into(),
        metadata: ObjectMeta {
            name: "report".into(),
            namespace: Some(NS.into()),
            uid: Some("report-uid".into()),
            resource_version: Some("10".into()),
            generation: Some(1),
            creation_timestamp: Some(t(0)),
            ..ObjectMeta::default()
        },
        spec: JobSpec {
            template,
            completions: Some(completions),
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff_limit),
            active_deadline_seconds: None,
        },
        status: JobStatus {
            start_time: Some(t(500)),
            ..JobStatus::default()
        },
    }
}

/// A run of `job` as the controller made it and the reconciler stored it.
fn run_of(job: &Job, name: &str, phase: Phase) -> Instance {
    let mut instance = new_run(job, &mut |_| name.into());
    instance.metadata.uid = Some(format!("{name}-uid"));
    instance.metadata.resource_version = Some("20".into());
    instance.metadata.creation_timestamp = Some(t(600));
    instance.spec.node_name = (phase != Phase::Pending).then(|| "n1".into());
    instance.status.phase = phase;
    instance
}

fn with(job: &Job, instances: Vec<Instance>) -> View {
    View {
        jobs: vec![job.clone()],
        instances,
        ..View::default()
    }
}

/// One pass of the Job controller alone over `view`, at `at`.
fn job_pass(view: &View, at: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let mut names = names();
    for job in &view.jobs {
        reconcile_job(job, view, &HashSet::new(), at, &mut names, &mut plan);
    }
    plan
}

fn updated_jobs(plan: &Plan) -> Vec<(&str, &Job)> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Update { seen, object } => match &**object {
                Object::Job(j) => Some((seen.as_str(), &**j)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn job_status(plan: &Plan) -> JobStatus {
    let updates = updated_jobs(plan);
    assert_eq!(updates.len(), 1, "{plan:#?}");
    assert_eq!(updates[0].0, "10", "guarded by the Job's resourceVersion");
    updates[0].1.status.clone()
}

fn condition(status: &JobStatus) -> (JobConditionType, &str) {
    let [condition] = status.conditions.as_slice() else {
        panic!("one condition expected: {status:#?}");
    };
    assert_eq!(condition.status, "True");
    assert_eq!(condition.last_transition_time, Some(now()));
    (condition.type_, condition.reason.as_str())
}

/// `(name, reason)` of the instances the plan terminates, sorted.
fn terminated_with_reasons(plan: &Plan) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.metadata.deletion_timestamp.is_some())
        .map(|(_, i)| (i.metadata.name.as_str(), i.status.reason.as_str()))
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn creates_runs_up_to_parallelism_owned_by_the_job() {
    let mut job = a_job(3, 2, 6, RestartPolicy::Never);
    job.status = JobStatus::default();
    let view = with(&job, vec![]);
    let plan = job_pass(&view, now());
    let created = creates(&plan);
    assert_eq!(created.len(), 2, "{plan:#?}");
    let run = created[0];
    assert_eq!(run.metadata.name, "report-1");
    assert_eq!(run.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(
        run.metadata.labels.get(JOB_NAME_LABEL).map(String::as_str),
        Some("report")
    );
    assert_eq!(
        run.metadata.labels.get("app").map(String::as_str),
        Some("web")
    );
    assert_eq!(run.metadata.owner_references.len(), 1);
    let owner = &run.metadata.owner_references[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Job", "report", "report-uid")
    );
    assert_eq!(run.spec.restart_policy, Some(RestartPolicy::Never));
    assert_eq!(run.spec.node_name, None);
    assert_eq!(run.status.phase, Phase::Pending);
    assert_eq!(job_owner(run), Some("report-uid"));

    let status = job_status(&plan);
    assert_eq!(status.active, 2);
    assert_eq!(status.start_time, Some(now()), "set on the first pass");
    assert!(status.conditions.is_empty());
}

#[test]
fn the_whole_pipeline_keeps_job_runs_and_counts_them() {
    // Through `reconcile`: garbage collection must not take a Job's runs
    // for orphans, and a finished run is left alone.
    let job = a_job(3, 1, 6, RestartPolicy::Never);
    let view = View {
        nodes: vec![node("n1", true)],
        ..with(
            &job,
            vec![
                run_of(&job, "report-a", Phase::Succeeded),
                run_of(&job, "report-b", Phase::Running),
            ],
        )
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["report-b-uid"]))]));
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    assert!(creates(&plan).is_empty(), "one at a time: {plan:#?}");
    let status = job_status(&plan);
    assert_eq!((status.active, status.succeeded, status.failed), (1, 1, 0));
}

#[test]
fn stops_creating_once_completions_succeeded() {
    let job = a_job(2, 2, 6, RestartPolicy::Never);
    // One succeeded, one running: only one more is needed, and it runs.
    let view = with(
        &job,
        vec![
            run_of(&job, "report-a", Phase::Succeeded),
            run_of(&job, "report-b", Phase::Running),
        ],
    );
    let plan = job_pass(&view, now());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert_eq!(job_status(&plan).succeeded, 1);

    let view = with(
        &job,
        vec![
            run_of(&job, "report-a", Phase::Succeeded),
            run_of(&job, "report-b", Phase::Succeeded),
        ],
    );
    let plan = job_pass(&view, now());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    let status = job_status(&plan);
    assert_eq!((status.active, status.succeeded, status.failed), (0, 2, 0));
    assert_eq!(
        condition(&status),
        (JobConditionType::Complete, REASON_COMPLETIONS_REACHED)
    );
    assert_eq!(status.completion_time, Some(now()));
    assert_eq!(status.start_time, Some(t(500)), "kept");
}

#[test]
fn zero_completions_complete_at_once() {
    let job = a_job(0, 1, 6, RestartPolicy::Never);
    let plan = job_pass(&with(&job, vec![]), now());
    assert!(creates(&plan).is_empty());
    assert_eq!(
        condition(&job_status(&plan)),
        (JobConditionType::Complete, REASON_COMPLETIONS_REACHED)
    );
}

#[test]
fn never_replaces_failed_runs_within_the_backoff_limit() {
    let job = a_job(1, 1, 1, RestartPolicy::Never);
    let mut failed = run_of(&job, "report-a", Phase::Failed);
    failed.status.exit_code = Some(1);
    let plan = job_pass(&with(&job, vec![failed.clone()]), now());
    assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
    let status = job_status(&plan);
    assert_eq!((status.active, status.failed), (1, 1));
    assert!(status.conditions.is_empty());
    assert!(terminated(&plan).is_empty(), "a failed run is kept");

    // The second failure is one more than backoffLimit 1.
    let mut again = run_of(&job, "report-b", Phase::Failed);
    again.status.exit_code = Some(1);
    let plan = job_pass(&with(&job, vec![failed, again]), now());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    let status = job_status(&plan);
    assert_eq!((status.active, status.succeeded, status.failed), (0, 0, 2));
    assert_eq!(
        condition(&status),
        (JobConditionType::Failed, REASON_BACKOFF_LIMIT_EXCEEDED)
    );
    assert_eq!(status.completion_time, None, "only a complete Job has one");
}

#[test]
fn on_failure_counts_restarts_and_stops_the_run_past_the_limit() {
    let job = a_job(1, 1, 2, RestartPolicy::OnFailure);
    let mut restarting = run_of(&job, "report-a", Phase::Running);
    restarting.status.restart_count = 2;
    let plan = job_pass(&with(&job, vec![restarting.clone()]), now());
    assert!(creates(&plan).is_empty(), "restarted in place: {plan:#?}");
    assert!(terminated(&plan).is_empty());
    assert_eq!(job_status(&plan).failed, 2);

    // Failed again: the node reports Failed while it backs off before the
    // restart. The run is still the Job's one active run, counted by its
    // restarts only.
    restarting.status.phase = Phase::Failed;
    restarting.status.reason = "CrashLoopBackOff".into();
    let plan = job_pass(&with(&job, vec![restarting.clone()]), now());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert!(terminated(&plan).is_empty());
    assert!(!is_finished_run(&restarting), "still assigned to its node");
    let status = job_status(&plan);
    assert_eq!((status.active, status.failed), (1, 2));

    restarting.status.restart_count = 3;
    let plan = job_pass(&with(&job, vec![restarting]), now());
    assert!(creates(&plan).is_empty());
    assert_eq!(
        terminated_with_reasons(&plan),
        [("report-a", REASON_BACKOFF_LIMIT_EXCEEDED)]
    );
    let status = job_status(&plan);
    assert_eq!((status.active, status.failed), (0, 3));
    assert_eq!(
        condition(&status),
        (JobConditionType::Failed, REASON_BACKOFF_LIMIT_EXCEEDED)
    );
}

#[test]
fn active_deadline_fails_the_job_and_stops_its_runs() {
    let mut job = a_job(2, 2, 6, RestartPolicy::Never);
    job.spec.active_deadline_seconds = Some(500);
    let runs = vec![
        run_of(&job, "report-a", Phase::Running),
        run_of(&job, "report-b", Phase::Pending),
        run_of(&job, "report-c", Phase::Failed),
    ];
    // Started at t(500): the deadline is t(1000), now.
    let plan = job_pass(&with(&job, runs.clone()), now());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert_eq!(
        terminated_with_reasons(&plan),
        [
            ("report-a", REASON_DEADLINE_EXCEEDED),
            ("report-b", REASON_DEADLINE_EXCEEDED)
        ]
    );
    let status = job_status(&plan);
    assert_eq!((status.active, status.failed), (0, 1));
    assert_eq!(
        condition(&status),
        (JobConditionType::Failed, REASON_DEADLINE_EXCEEDED)
    );

    // A second earlier, nothing happens.
    let plan = job_pass(&with(&job, runs), t(999));
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
}

#[test]
fn status_is_written_only_when_it_changes() {
    let job = a_job(2, 1, 6, RestartPolicy::Never);
    let view = with(&job, vec![run_of(&job, "report-a", Phase::Running)]);
    let plan = job_pass(&view, now());
    let status = job_status(&plan);
    assert_eq!(status.active, 1);

    let mut settled = job.clone();
    settled.status = status;
    let view = with(&settled, vec![run_of(&settled, "report-a", Phase::Running)]);
    assert_eq!(job_pass(&view, now()), Plan::default());
    // Later passes change nothing either.
    assert_eq!(job_pass(&view, t(5000)), Plan::default());
}

#[test]
fn a_finished_job_runs_nothing_more() {
    let mut job = a_job(1, 2, 6, RestartPolicy::Never);
    job.status = JobStatus {
        active: 1,
        succeeded: 1,
        start_time: Some(t(500)),
        completion_time: Some(t(900)),
        conditions: vec![JobCondition {
            type_: JobConditionType::Complete,
            status: "True".into(),
            reason: REASON_COMPLETIONS_REACHED.into(),
            message: String::new(),
            last_transition_time: Some(t(900)),
        }],
        ..JobStatus::default()
    };
    // A stray run still going (it lost a race with the last success).
    let view = with(
        &job,
        vec![
            run_of(&job, "report-a", Phase::Succeeded),
            run_of(&job, "report-b", Phase::Running),
        ],
    );
    let plan = job_pass(&view, now());
    assert!(creates(&plan).is_empty());
    assert_eq!(terminated(&plan), ["report-b"]);
    let status = job_status(&plan);
    assert_eq!(status.active, 0);
    assert_eq!(status.completion_time, Some(t(900)), "kept");
    assert_eq!(status.conditions, job.status.conditions);
}

#[test]
fn counts_never_go_down() {
    // Two successes and a failure were counted, and their instances are
    // gone since (deleted, or lost with their node).
    let mut job = a_job(3, 1, 6, RestartPolicy::Never);
    job.status.succeeded = 2;
    job.status.failed = 1;
    let plan = job_pass(&with(&job, vec![]), now());
    assert_eq!(creates(&plan).len(), 1, "one more run is needed");
    let status = job_status(&plan);
    assert_eq!((status.active, status.succeeded, status.failed), (1, 2, 1));
}

#[test]
fn runs_stopped_by_others_are_replaced_not_counted() {
    let job = a_job(1, 1, 0, RestartPolicy::Never);
    let evicted = terminating(run_of(&job, "report-a", Phase::Running), t(990));
    let plan = job_pass(&with(&job, vec![evicted]), now());
    assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
    let status = job_status(&plan);
    assert_eq!((status.active, status.failed), (1, 0));
    assert!(status.conditions.is_empty());
}

#[test]
fn lowering_parallelism_stops_the_surplus_unplaced_first() {
    let job = a_job(5, 1, 6, RestartPolicy::Never);
    let view = with(
        &job,
        vec![
            run_of(&job, "report-a", Phase::Running),
            run_of(&job, "report-b", Phase::Pending),
            run_of(&job, "report-c", Phase::Running),
        ],
    );
    let plan = job_pass(&view, now());
    let stopped = terminated(&plan);
    assert_eq!(stopped.len(), 2, "{plan:#?}");
    assert!(stopped.contains(&"report-b"), "{stopped:?}");
    assert!(creates(&plan).is_empty());
    assert_eq!(job_status(&plan).active, 1);
}

#[test]
fn runs_of_a_deleted_job_are_collected() {
    let job = a_job(1, 1, 6, RestartPolicy::Never);
    let view = View {
        instances: vec![
            run_of(&job, "report-a", Phase::Succeeded),
            run_of(&job, "report-b", Phase::Running),
        ],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["report-b-uid"]))]));
    assert_eq!(terminated(&plan), ["report-a", "report-b"], "{plan:#?}");
}

#[test]
fn finished_runs_are_told_apart() {
    let job = a_job(1, 1, 6, RestartPolicy::Never);
    assert!(is_finished_run(&run_of(&job, "a", Phase::Succeeded)));
    assert!(is_finished_run(&run_of(&job, "b", Phase::Failed)));
    assert!(!is_finished_run(&run_of(&job, "c", Phase::Running)));
    // Under OnFailure the node restarts a failed run in place.
    let restarting = a_job(1, 1, 6, RestartPolicy::OnFailure);
    assert!(!is_finished_run(&run_of(&restarting, "d", Phase::Failed)));
    assert!(is_finished_run(&run_of(&restarting, "e", Phase::Succeeded)));
    // A Deployment's failed instance is restarted by its node, not finished.
    let web = deployment("web", 1);
    let failed = instance(&web, "web-a", 1, Phase::Failed, Some("n1"));
    assert!(!is_finished_run(&failed));
    assert_eq!(job_owner(&failed), None);
}

#[test]
fn finished_runs_hold_no_room_on_their_node() {
    let job = a_job(3, 1, 6, RestartPolicy::Never);
    let mut n1 = node("n1", true);
    n1.status.max_instances = 1;
    let mut pending = run_of(&job, "report-c", Phase::Pending);
    pending.metadata.creation_timestamp = Some(t(900));
    let view = View {
        nodes: vec![n1],
        ..with(
            &job,
            vec![
                run_of(&job, "report-a", Phase::Succeeded),
                run_of(&job, "report-b", Phase::Failed),
                pending,
            ],
        )
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&[]))]));
    assert_eq!(bindings(&plan), [("report-c", "n1")], "{plan:#?}");
}

#[test]
fn a_template_node_name_binds_the_runs_there() {
    let mut job = a_job(1, 1, 6, RestartPolicy::Never);
    job.spec.template.spec.node_name = Some("n2".into());
    let view = View {
        nodes: vec![node("n1", true), node("n2", true)],
        ..with(&job, vec![run_of(&job, "report-a", Phase::Pending)])
    };
    let l = liveness(&[("n1", reporting(&[])), ("n2", reporting(&[]))]);
    let plan = run(&view, &l);
    assert_eq!(bindings(&plan), [("report-a", "n2")], "{plan:#?}");
}
