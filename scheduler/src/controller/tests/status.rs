//! A Deployment's status: the progress deadline, availability and its
//! condition, and the revision history.

use super::*;

#[test]
fn stalled_rollout_exceeds_its_progress_deadline() {
    let old = deployment("web", 2);
    let mut web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    web.spec.progress_deadline_seconds = Some(60);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![running(&old, "old0", 0, 0), running(&old, "old1", 1, 0)],
        deployments: vec![web],
        nodes: vec![],
    };
    let at = |secs: i64| now() + SignedDuration::from_secs(secs);
    let mut names = names();
    let plan = pass(&view, at(0), &mut names);
    assert_eq!(creates(&plan).len(), 1);
    assert_eq!(progressing(&status_of(&plan)).last_update_time, Some(at(0)));
    let view = apply(&view, &plan);

    // The new instance is stored: one more updated replica counts as
    // progress.
    let plan = pass(&view, at(30), &mut names);
    let status = status_of(&plan);
    assert_eq!(status.updated_replicas, 1);
    assert_eq!(progressing(&status).last_update_time, Some(at(30)));
    let view = apply(&view, &plan);

    // It never starts. At the deadline, still progressing; past it,
    // failed, with the time of the last progress.
    assert_eq!(pass(&view, at(90), &mut names), Plan::default());
    let plan = pass(&view, at(91), &mut names);
    let status = status_of(&plan);
    assert_eq!(
        *progressing(&status),
        DeploymentCondition {
            type_: CONDITION_PROGRESSING.into(),
            status: "False".into(),
            reason: REASON_PROGRESS_DEADLINE_EXCEEDED.into(),
            message: "revision 1 has timed out progressing".into(),
            last_update_time: Some(at(30)),
        }
    );
    assert!(creates(&plan).is_empty() && terminated(&plan).is_empty());
    let view = apply(&view, &plan);
    assert_eq!(pass(&view, at(500), &mut names), Plan::default());

    // It finally runs: progress again.
    let view = settle(view, at(600), |i| i.spec.component == "sha256:v2");
    let plan = pass(&view, at(600), &mut names);
    assert_eq!(terminated(&plan), ["old0"]);
    let condition = progressing(&status_of(&plan)).clone();
    assert_eq!(condition.reason, REASON_REVISION_UPDATED);
    assert_eq!(condition.last_update_time, Some(at(600)));
}

#[test]
fn min_ready_seconds_delays_availability() {
    let old = deployment("web", 1);
    let mut web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    web.spec.min_ready_seconds = 30;
    // Started 10 s ago.
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![running(&old, "old", 0, 0), running(&web, "new", 1, 990)],
        deployments: vec![web],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut names());
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    let status = status_of(&plan);
    assert_eq!(
        (
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (2, 1, 1)
    );
    let plan = pass(&view, now() + SignedDuration::from_secs(19), &mut names());
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    let plan = pass(&view, now() + SignedDuration::from_secs(20), &mut names());
    assert_eq!(terminated(&plan), ["old"]);
}

#[test]
fn running_instances_count_only_once_ready() {
    let old = deployment("web", 1);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    // The new instance runs but fails its readiness probe.
    let mut new = running(&web, "new", 1, 990);
    new.status.ready = false;
    new.status.message = "Readiness probe failed: HTTP probe failed with statuscode: 503".into();
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![running(&old, "old", 0, 0), new],
        deployments: vec![web],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut names());
    assert!(
        terminated(&plan).is_empty(),
        "the old one keeps serving: {plan:#?}"
    );
    let status = status_of(&plan);
    assert_eq!(
        (
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (1, 1, 1)
    );

    // Once ready, it replaces the old one.
    let mut view = view;
    view.instances[1].status.ready = true;
    let plan = pass(&view, now(), &mut names());
    assert_eq!(terminated(&plan), ["old"]);
}

#[test]
fn available_condition_follows_the_minimum() {
    let web = rolling(
        deployment("web", 4),
        IntOrPercent::Int(1),
        IntOrPercent::Int(1),
    );
    let mut instances: Vec<Instance> = (0..3)
        .map(|k| running(&web, &format!("w{k}"), k, 0))
        .collect();
    instances.push(instance(&web, "w3", 3, Phase::Starting, Some("n1")));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances,
        deployments: vec![web],
        nodes: vec![],
    };
    let status = status_of(&pass(&view, now(), &mut names()));
    let available = &status.conditions[0];
    assert_eq!(available.type_, CONDITION_AVAILABLE);
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("True", REASON_MINIMUM_REPLICAS_AVAILABLE),
        "3 of 4 with maxUnavailable 1"
    );
    let mut worse = view;
    worse.instances[0].status.phase = Phase::Failed;
    let status = status_of(&pass(&worse, now(), &mut names()));
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("False", REASON_MINIMUM_REPLICAS_UNAVAILABLE)
    );
}

#[test]
fn history_appends_moves_back_on_rollback_and_is_limited() {
    let v1 = deployment("web", 1);
    let v2 = upgraded(&v1);
    let mut v3 = v2.clone();
    v3.spec.template.spec.env.push(EnvVar {
        name: "MODE".into(),
        value: "fast".into(),
        value_from: None,
    });
    let record = |history: &[Revision], d: &Deployment, limit: u32| {
        record_revision(history, &template_hash(d), &d.spec.template, limit)
    };
    let summary = |history: &[Revision]| -> Vec<(u64, String, String)> {
        history
            .iter()
            .map(|r| {
                (
                    r.revision,
                    r.template.spec.component.clone(),
                    r.change_cause.clone(),
                )
            })
            .collect()
    };
    let row = |n: u64, component: &str, cause: &str| (n, component.to_owned(), cause.to_owned());

    let history = record(&[], &v1, 10);
    assert_eq!(
        summary(&history),
        [row(1, "sha256:v1", "component sha256:v1")]
    );
    assert_eq!(record(&history, &v1, 10), history, "unchanged template");
    let history = record(&history, &v2, 10);
    let history = record(&history, &v3, 10);
    assert_eq!(
        summary(&history),
        [
            row(1, "sha256:v1", "component sha256:v1"),
            row(2, "sha256:v2", "component sha256:v2"),
            row(3, "sha256:v2", "template changed"),
        ]
    );
    // Back to v1: its entry moves to the end with the next number.
    let history = record(&history, &v1, 10);
    assert_eq!(
        summary(&history),
        [
            row(2, "sha256:v2", "component sha256:v2"),
            row(3, "sha256:v2", "template changed"),
            row(4, "sha256:v1", "component sha256:v1"),
        ]
    );
    assert_eq!(history[2].template_hash, template_hash(&v1));
    assert_eq!(history[2].template, v1.spec.template);
    // One old revision kept besides the current one.
    let history = record(&history, &v2, 1);
    assert_eq!(
        summary(&history),
        [
            row(4, "sha256:v1", "component sha256:v1"),
            row(5, "sha256:v2", "component sha256:v2"),
        ]
    );
    assert_eq!(record(&history, &v2, 0).len(), 1);

    // A digest shows its first 19 characters.
    let mut long = v1.clone();
    long.spec.template.spec.component = format!("sha256:{}", "0123456789abcdef".repeat(4));
    assert_eq!(
        record(&[], &long, 10)[0].change_cause,
        "component sha256:0123456789ab"
    );
}

#[test]
fn status_keeps_the_history_and_the_revision() {
    let v1 = deployment("web", 1);
    let mut web = upgraded(&v1);
    web.status = Some(DeploymentStatus {
        revision: 1,
        history: record_revision(&[], &template_hash(&v1), &v1.spec.template, 10),
        ..DeploymentStatus::default()
    });
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![running(&v1, "old", 0, 0)],
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let status = status_of(&pass(&view, now(), &mut names()));
    assert_eq!(status.revision, 2);
    assert_eq!(
        status
            .history
            .iter()
            .map(|r| r.revision)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(status.history[1].template_hash, template_hash(&web));
}
