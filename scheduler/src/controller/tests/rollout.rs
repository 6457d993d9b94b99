//! Rollouts pass by pass: RollingUpdate within its limits, Recreate, and
//! pausing.

use super::*;

/// `(new, old, available)` live instances of `d` in `view`.
fn counts(view: &View, d: &Deployment, at: Timestamp) -> (usize, usize, usize) {
    let hash = template_hash(d);
    let live: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| !is_terminating(i))
        .collect();
    let new = live.iter().filter(|i| is_from(i, &hash)).count();
    let available = live
        .iter()
        .filter(|i| is_available(i, d.spec.min_ready_seconds, at))
        .count();
    (new, live.len() - new, available)
}

/// Drives `view` pass by pass at `now()`, new instances turning
/// Running after each, until a pass neither creates nor terminates;
/// checks every pass against `within(new, old, available)` and returns
/// `(created, terminated)` per pass and the settled view.
fn drive(mut view: View, within: impl Fn(usize, usize, usize)) -> (Vec<(usize, usize)>, View) {
    let web = view.deployments[0].clone();
    let hash = template_hash(&web);
    let mut names = names();
    let mut trace = Vec::new();
    for _ in 0..20 {
        let plan = pass(&view, now(), &mut names);
        let after = apply(&view, &plan);
        let (new, old, available) = counts(&after, &web, now());
        within(new, old, available);
        trace.push((creates(&plan).len(), terminated(&plan).len()));
        view = settle(after, now(), |i| is_from(i, &hash));
        if creates(&plan).is_empty() && terminated(&plan).is_empty() {
            return (trace, view);
        }
    }
    panic!("no convergence: {trace:?}");
}

#[test]
fn rolling_update_with_surge_never_drops_below_replicas() {
    let old = deployment("web", 4);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let (trace, settled) = drive(view, |new, old, available| {
        assert!(new + old <= 5, "{new} new and {old} old");
        assert!(available >= 4, "{available} available");
    });
    // One new instance first, then one old out, and the next new one
    // only once it is gone: a stopping instance may still serve, so it
    // counts toward the surge.
    assert_eq!(
        trace,
        [
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 1),
            (0, 0)
        ]
    );
    assert_eq!(counts(&settled, &web, now()), (4, 0, 4));
    // Old instances go oldest first.
    let mut order = Vec::new();
    let mut view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), 10 - k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let mut names = names();
    for _ in 0..8 {
        let plan = pass(&view, now(), &mut names);
        order.extend(terminated(&plan).into_iter().map(str::to_owned));
        view = settle(apply(&view, &plan), now(), |_| true);
    }
    assert_eq!(order, ["old3", "old2", "old1", "old0"]);

    // Settled, the status says the rollout is complete.
    let status = settled.deployments[0].status.clone().unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (4, 4, 4)
    );
    assert_eq!(status.unavailable_replicas, 0);
    let condition = progressing(&status);
    assert_eq!(condition.status, "True");
    assert_eq!(condition.reason, REASON_NEW_REVISION_AVAILABLE);
    assert_eq!(condition.message, "revision 1 has successfully progressed");
}

#[test]
fn rolling_update_without_surge_keeps_replicas_less_max_unavailable() {
    let old = deployment("web", 4);
    let web = rolling(
        upgraded(&old),
        IntOrPercent::Int(0),
        IntOrPercent::Percent(25),
    );
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let (trace, settled) = drive(view, |new, old, available| {
        assert!(new + old <= 4, "{new} new and {old} old");
        assert!(available >= 3, "{available} available");
    });
    // An old one out, its replacement once it is gone.
    assert_eq!(
        trace,
        [
            (0, 1),
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 1),
            (1, 0),
            (0, 0)
        ]
    );
    assert_eq!(counts(&settled, &web, now()), (4, 0, 4));
}

#[test]
fn rolling_update_waits_for_new_instances_to_be_available() {
    let old = deployment("web", 4);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut names());
    assert_eq!((creates(&plan).len(), terminated(&plan).len()), (1, 0));
    // The new instance never starts: nothing more happens.
    let stuck = apply(&view, &plan);
    let plan = pass(&stuck, now(), &mut names());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
}

#[test]
fn rolling_update_replaces_old_instances_that_never_became_available() {
    // Old instances that never ran do not hold the rollout up, but go
    // no faster than the new ones become available.
    let old = deployment("web", 2);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&old, "broken1", 1, Phase::Failed, Some("n1")),
            instance(&old, "broken2", 2, Phase::Failed, Some("n1")),
        ],
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut |d| format!("{d}-first"));
    assert_eq!((creates(&plan).len(), terminated(&plan).len()), (1, 0));
    let hash = template_hash(&web);
    let started = settle(apply(&view, &plan), now(), |i| is_from(i, &hash));
    let (trace, settled) = drive(started, |new, old, _| {
        assert!(new + old <= 3);
    });
    assert_eq!(trace, [(1, 1), (0, 1), (0, 0)]);
    assert_eq!(counts(&settled, &web, now()), (2, 0, 2));
}

#[test]
fn scale_down_mid_rollout_respects_the_surge() {
    let old = deployment("web", 4);
    let mut web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    web.spec.replicas = 2;
    let mut view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    view.instances
        .push(instance(&web, "new0", 5, Phase::Pending, None));
    let plan = pass(&view, now(), &mut names());
    // At most 3 (2 + 1 surge) and 2 available stay: the pending new
    // instance and the newest old one go to the surplus, then an
    // available old one goes; its replacement waits until the stopped
    // ones, which may still serve, are gone.
    let after = apply(&view, &plan);
    let (new, old_left, available) = counts(&after, &web, now());
    assert!(new + old_left <= 3, "{plan:#?}");
    assert!(available >= 2, "{plan:#?}");
    assert_eq!(terminated(&plan), ["new0", "old0", "old3"], "{plan:#?}");
    assert_eq!(creates(&plan).len(), 0);
}

#[test]
fn recreate_waits_for_old_instances_to_be_removed() {
    let old = deployment("web", 3);
    let mut web = upgraded(&old);
    web.spec.strategy.type_ = StrategyType::Recreate;
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..3)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut names());
    assert_eq!(terminated(&plan), ["old0", "old1", "old2"]);
    assert!(creates(&plan).is_empty());

    // Terminating, the old instances may still serve: wait.
    let terminating_view = apply(&view, &plan);
    let plan = pass(&terminating_view, now(), &mut names());
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    let one_left = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![terminating_view.instances[0].clone()],
        deployments: terminating_view.deployments.clone(),
        nodes: vec![],
    };
    assert!(creates(&pass(&one_left, now(), &mut names())).is_empty());

    // Removed: the new ones come, all at once.
    let gone = settle(terminating_view, now(), |_| false);
    let plan = pass(&gone, now(), &mut names());
    assert_eq!(creates(&plan).len(), 3, "{plan:#?}");
    assert!(
        creates(&plan)
            .iter()
            .all(|i| is_from(i, &template_hash(&web)))
    );
}

#[test]
fn paused_rollout_stops_and_resumes() {
    let old = deployment("web", 4);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    let hash = template_hash(&web);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let mut names = names();
    let plan = pass(&view, now(), &mut names);
    assert_eq!(creates(&plan).len(), 1);
    let mut view = settle(apply(&view, &plan), now(), |i| is_from(i, &hash));

    // Paused with a new instance available: no old one goes, no new
    // one comes.
    view.deployments[0].spec.paused = true;
    let plan = pass(&view, now(), &mut names);
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    let condition = progressing(&status_of(&plan)).clone();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("Unknown", REASON_DEPLOYMENT_PAUSED)
    );
    view = apply(&view, &plan);
    let later = now() + SignedDuration::from_secs(3600);
    assert_eq!(pass(&view, later, &mut names), Plan::default());

    // Resumed an hour later: the rollout goes on, its clock restarted.
    view.deployments[0].spec.paused = false;
    let plan = pass(&view, later, &mut names);
    assert_eq!(terminated(&plan), ["old0"]);
    // Its replacement comes once it is gone (it may serve till then).
    assert_eq!(creates(&plan).len(), 0);
    let condition = progressing(&status_of(&plan)).clone();
    assert_eq!(condition.reason, REASON_REVISION_UPDATED);
    assert_eq!(condition.last_update_time, Some(later));
}

#[test]
fn paused_deployment_still_scales() {
    // Paused before its new template rolled out: the scale applies to
    // the old instances, copying the newest one.
    let old = deployment("web", 2);
    let mut web = upgraded(&old);
    web.spec.paused = true;
    web.spec.replicas = 3;
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![running(&old, "old0", 0, 0), running(&old, "old1", 1, 0)],
        deployments: vec![web.clone()],
        nodes: vec![],
    };
    let plan = pass(&view, now(), &mut names());
    let created = creates(&plan);
    assert_eq!(created.len(), 1, "{plan:#?}");
    assert!(is_from(created[0], &template_hash(&old)));
    assert_eq!(created[0].spec.component, "sha256:v1");
    assert_eq!(created[0].spec.node_name, None);
    assert_eq!(owner_uid(created[0]), Some("web-uid"));

    let mut fewer = view;
    fewer.deployments[0].spec.replicas = 1;
    let plan = pass(&fewer, now(), &mut names());
    assert_eq!(terminated(&plan), ["old1"]);
    assert!(creates(&plan).is_empty());

    // A paused Deployment without instances starts none, as in
    // Kubernetes.
    let mut empty = web;
    empty.spec.replicas = 2;
    let view = View {
        deployments: vec![empty],
        ..View::default()
    };
    assert!(creates(&pass(&view, now(), &mut names())).is_empty());
}

#[test]
fn rollout_limits_resolve_as_kubernetes() {
    let limits = |d: &Deployment| {
        let l = RolloutLimits::of(&d.spec);
        (l.max_surge, l.max_unavailable)
    };
    assert_eq!(limits(&deployment("web", 4)), (1, 1));
    assert_eq!(limits(&deployment("web", 10)), (3, 2));
    assert_eq!(limits(&deployment("web", 1)), (1, 0));
    assert_eq!(limits(&deployment("web", 0)), (0, 0));
    let zero = IntOrPercent::Int(0);
    assert_eq!(limits(&rolling(deployment("web", 4), zero, zero)), (0, 1));
    let many = IntOrPercent::Int(5);
    assert_eq!(limits(&rolling(deployment("web", 2), many, many)), (5, 2));
    let mut recreate = deployment("web", 4);
    recreate.spec.strategy.type_ = StrategyType::Recreate;
    assert_eq!(limits(&recreate), (0, 0));
    assert_eq!(RolloutLimits::of(&recreate.spec).min_available(4), 4);
}
