//! Canary releases step by step: weights and the instances they ask for,
//! timed and open pauses, promote and abort, the automatic abort on the
//! canary's error rate, and what nodes are told. Also the rolling-update
//! invariant the canary relies on: terminating instances count toward
//! `replicas + maxSurge`.

use berth_api::canary::{
    CONDITION_ABORTED, CONDITION_PROMOTED, CanaryAnalysis, CanaryPause, CanaryStep, CanaryStrategy,
    Promotion, Rate,
};

use super::*;
use crate::traffic::Counts;

fn weight(w: u32) -> CanaryStep {
    CanaryStep {
        set_weight: Some(w),
        pause: None,
    }
}

fn pause(duration: Option<&str>) -> CanaryStep {
    CanaryStep {
        set_weight: None,
        pause: Some(CanaryPause {
            duration: duration.map(Into::into),
        }),
    }
}

/// `old` moved to `sha256:v2` under a Canary strategy with `steps`.
fn canary(
    old: &Deployment,
    steps: Vec<CanaryStep>,
    analysis: Option<CanaryAnalysis>,
) -> Deployment {
    let mut web = upgraded(old);
    web.spec.strategy.type_ = StrategyType::Canary;
    web.spec.strategy.canary = Some(CanaryStrategy { steps, analysis });
    web
}

/// Four stable instances of `old`, Running, and the Deployment `web`.
fn cluster(old: &Deployment, web: &Deployment) -> View {
    View {
        instances: (0..4)
            .map(|k| running(old, &format!("old{k}"), k, 0))
            .collect(),
        deployments: vec![web.clone()],
        ..View::default()
    }
}

/// One pass at `at` with `traffic`, applied; new instances then run.
fn step(
    view: View,
    at: Timestamp,
    traffic: &Traffic,
    names: &mut dyn FnMut(&str) -> String,
) -> (Plan, View) {
    let mut plan = Plan::default();
    for d in &view.deployments {
        reconcile_deployment(d, &view, &HashSet::new(), traffic, at, names, &mut plan);
    }
    let after = apply(&view, &plan);
    (plan, settle(after, at, |_| true))
}

fn canary_status(view: &View) -> berth_api::canary::CanaryStatus {
    view.deployments[0]
        .status
        .as_ref()
        .and_then(|s| s.canary.clone())
        .unwrap()
}

/// `(stable, canary)` live instances in `view`.
fn split(view: &View, old: &Deployment, web: &Deployment) -> (usize, usize) {
    let live = || view.instances.iter().filter(|i| !is_terminating(i));
    (
        live().filter(|i| is_from(i, &template_hash(old))).count(),
        live().filter(|i| is_from(i, &template_hash(web))).count(),
    )
}

#[test]
fn canary_replicas_follow_the_weight_with_at_least_one() {
    assert_eq!(crate::controller::canary::canary_replicas(4, 0), 0);
    assert_eq!(crate::controller::canary::canary_replicas(4, 10), 1);
    assert_eq!(crate::controller::canary::canary_replicas(4, 25), 1);
    assert_eq!(crate::controller::canary::canary_replicas(4, 50), 2);
    assert_eq!(crate::controller::canary::canary_replicas(4, 60), 3);
    assert_eq!(crate::controller::canary::canary_replicas(4, 100), 4);
    assert_eq!(crate::controller::canary::canary_replicas(0, 10), 1);
}

#[test]
fn steps_walk_from_weight_to_pause_to_promotion() {
    let old = deployment("web", 4);
    let web = canary(
        &old,
        vec![weight(25), pause(None), weight(50), pause(Some("30s"))],
        None,
    );
    let quiet = Traffic::new();
    let mut names = names();
    let view = cluster(&old, &web);

    // Weight 25: one canary instance beside the four stable ones.
    let (plan, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(creates(&plan).len(), 1);
    assert!(terminated(&plan).is_empty(), "stable keeps serving");
    assert_eq!(split(&view, &old, &web), (4, 1));
    let status = canary_status(&view);
    assert_eq!(status.weight, 25);
    assert_eq!(status.stable_hash, template_hash(&old));
    assert_eq!(status.canary_hash, template_hash(&web));

    // The canary is available: on to the open pause, which holds.
    let (_, view) = step(view, now(), &quiet, &mut names);
    let status = canary_status(&view);
    assert_eq!((status.step, status.weight), (1, 25));
    assert_eq!(status.reason, crate::controller::canary::REASON_PAUSED);
    let progressing = progressing(view.deployments[0].status.as_ref().unwrap());
    assert_eq!(
        progressing.reason, REASON_DEPLOYMENT_PAUSED,
        "a pause is no stall"
    );
    let (plan, view) = step(view, t(5000), &quiet, &mut names);
    assert!(creates(&plan).is_empty() && terminated(&plan).is_empty());
    assert_eq!(
        canary_status(&view).step,
        1,
        "an open pause waits for a promote"
    );

    // Promote: weight 50 asks for two canary instances.
    let mut view = view;
    crate::controller::canary::request(&mut view.deployments[0], Some(Promotion::Step), false)
        .unwrap();
    let (plan, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(creates(&plan).len(), 1);
    assert_eq!(split(&view, &old, &web), (4, 2));
    assert_eq!(canary_status(&view).weight, 50);

    // The timed pause: held before 30 s, passed after.
    let (_, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(canary_status(&view).step, 3);
    let (plan, view) = step(view, t(1010), &quiet, &mut names);
    assert!(creates(&plan).is_empty());
    assert_eq!(canary_status(&view).step, 3);
    let (plan, view) = step(view, t(1031), &quiet, &mut names);
    assert_eq!(creates(&plan).len(), 2, "past the last step: all replicas");
    assert_eq!(canary_status(&view).weight, 100);
    assert_eq!(split(&view, &old, &web), (4, 4));

    // All canary instances available: promoted, the old ones stop.
    let (plan, view) = step(view, t(1032), &quiet, &mut names);
    assert_eq!(terminated(&plan).len(), 4);
    assert_eq!(split(&view, &old, &web), (0, 4));
    let status = canary_status(&view);
    assert_eq!(status.stable_hash, template_hash(&web));
    assert!(status.canary_hash.is_empty());
    let conditions = &view.deployments[0].status.as_ref().unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == CONDITION_PROMOTED && c.status == "True")
    );
    // Settled: nothing more to do.
    let (plan, _) = step(view, t(1033), &quiet, &mut names);
    assert!(creates(&plan).is_empty() && terminated(&plan).is_empty());
}

#[test]
fn promote_full_skips_every_step() {
    let old = deployment("web", 2);
    let web = canary(&old, vec![weight(10), pause(None), weight(50)], None);
    let quiet = Traffic::new();
    let mut names = names();
    let (_, mut view) = step(cluster(&old, &web), now(), &quiet, &mut names);
    crate::controller::canary::request(&mut view.deployments[0], Some(Promotion::Full), false)
        .unwrap();
    let (_, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(canary_status(&view).weight, 100);
    let (_, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(split(&view, &old, &web), (0, 2));
    assert_eq!(canary_status(&view).stable_hash, template_hash(&web));
}

#[test]
fn abort_stops_the_canary_and_keeps_stable_until_the_template_changes() {
    let old = deployment("web", 4);
    let web = canary(&old, vec![weight(50), pause(None)], None);
    let quiet = Traffic::new();
    let mut names = names();
    let (_, view) = step(cluster(&old, &web), now(), &quiet, &mut names);
    assert_eq!(split(&view, &old, &web), (4, 2));
    let mut view = view;
    crate::controller::canary::request(&mut view.deployments[0], None, true).unwrap();
    let (plan, view) = step(view, now(), &quiet, &mut names);
    assert_eq!(terminated(&plan).len(), 2);
    assert_eq!(split(&view, &old, &web), (4, 0));
    let status = canary_status(&view);
    assert!(status.aborted);
    assert_eq!(status.weight, 0);
    assert_eq!(
        status.reason,
        crate::controller::canary::REASON_ABORTED_BY_USER
    );
    let conditions = &view.deployments[0].status.as_ref().unwrap().conditions;
    assert!(conditions.iter().any(|c| c.type_ == CONDITION_ABORTED));
    // It stays aborted; another abort or promote has nothing to act on.
    let (plan, mut view) = step(view, t(2000), &quiet, &mut names);
    assert!(creates(&plan).is_empty());
    assert!(
        crate::controller::canary::request(&mut view.deployments[0], Some(Promotion::Full), false)
            .is_err()
    );
    assert!(canary_routes(&view.deployments, &view.instances).is_empty());

    // A new template starts a new canary from the first step.
    view.deployments[0].spec.template.spec.component = "sha256:v3".into();
    let (plan, view) = step(view, t(2001), &quiet, &mut names);
    assert_eq!(creates(&plan).len(), 2);
    let status = canary_status(&view);
    assert!(!status.aborted);
    assert_eq!(status.stable_hash, template_hash(&old));
}

fn analysis(min_requests: u64) -> CanaryAnalysis {
    CanaryAnalysis {
        max_error_rate: Some(Rate { ppm: 50_000 }),
        max_trap_rate: None,
        window: Some("30s".into()),
        min_requests: Some(min_requests),
    }
}

#[test]
fn an_erroring_canary_is_aborted_with_its_figures() {
    let old = deployment("web", 4);
    let web = canary(&old, vec![weight(10), pause(None)], Some(analysis(20)));
    let mut names = names();
    let (_, view) = step(cluster(&old, &web), now(), &Traffic::new(), &mut names);
    let canary_uid = view
        .instances
        .iter()
        .find(|i| is_from(i, &template_hash(&web)))
        .and_then(|i| i.metadata.uid.clone())
        .unwrap();
    assert_eq!(
        canary_windows(&view),
        [(canary_uid.clone(), SignedDuration::from_secs(30))]
    );

    // Too few requests to judge.
    let few = Traffic::from([(
        canary_uid.clone(),
        Counts {
            requests: 10,
            errors: 10,
            traps: 0,
        },
    )]);
    let (plan, view) = step(view, now(), &few, &mut names);
    assert!(terminated(&plan).is_empty());
    assert!(!canary_status(&view).aborted);

    // Within the threshold.
    let fine = Traffic::from([(
        canary_uid.clone(),
        Counts {
            requests: 100,
            errors: 5,
            traps: 0,
        },
    )]);
    let (plan, view) = step(view, now(), &fine, &mut names);
    assert!(terminated(&plan).is_empty());

    let failing = Traffic::from([(
        canary_uid.clone(),
        Counts {
            requests: 40,
            errors: 40,
            traps: 0,
        },
    )]);
    let (plan, view) = step(view, now(), &failing, &mut names);
    assert_eq!(terminated(&plan).len(), 1, "the canary stops");
    assert_eq!(split(&view, &old, &web), (4, 0), "stable serves on");
    let status = canary_status(&view);
    assert!(status.aborted);
    assert_eq!(
        status.reason,
        crate::controller::canary::REASON_ANALYSIS_FAILED
    );
    assert!(
        status
            .message
            .contains("error rate 100.0% (40 of 40 requests in the last 30s)")
            && status.message.contains("maxErrorRate 5%"),
        "{}",
        status.message
    );
    let before = &cluster(&old, &web).deployments[0];
    let told = crate::events::canary_transitions(before, &view.deployments[0]);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].reason, "CanaryAborted");
    assert!(canary_windows(&view).is_empty());
}

#[test]
fn nodes_learn_the_weight_and_the_canary_instances() {
    let old = deployment("web", 4);
    let web = canary(&old, vec![weight(10), pause(None)], None);
    let mut names = names();
    let (_, view) = step(cluster(&old, &web), now(), &Traffic::new(), &mut names);
    let routes = canary_routes(&view.deployments, &view.instances);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].weight, 10);
    assert_eq!(routes[0].revision, template_hash(&web));
    assert_eq!(routes[0].instances, ["web-1-uid"]);
    assert_eq!(
        (routes[0].namespace.as_str(), routes[0].deployment.as_str()),
        (NS, "web")
    );
}

#[test]
fn a_first_canary_deployment_just_scales() {
    let mut web = deployment("web", 3);
    web.spec.strategy.type_ = StrategyType::Canary;
    web.spec.strategy.canary = Some(CanaryStrategy {
        steps: vec![weight(10)],
        analysis: None,
    });
    let view = View {
        deployments: vec![web.clone()],
        ..View::default()
    };
    let (plan, view) = step(view, now(), &Traffic::new(), &mut names());
    assert_eq!(creates(&plan).len(), 3);
    let status = canary_status(&view);
    assert_eq!(status.stable_hash, template_hash(&web));
    assert!(status.canary_hash.is_empty());
}

/// Rolling update: an old instance stopping in its grace period may still
/// serve, so it counts toward `replicas + maxSurge` until it is gone.
#[test]
fn rolling_update_counts_terminating_instances_toward_the_surge() {
    let old = deployment("web", 4);
    let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
    let mut view = View {
        instances: (0..4)
            .map(|k| running(&old, &format!("old{k}"), k, 0))
            .chain([running(&web, "new0", 5, 5)])
            .collect(),
        deployments: vec![web.clone()],
        ..View::default()
    };
    // One old instance is already stopping (on its node, in its grace
    // period): 4 live + 1 stopping = the ceiling of 5.
    view.instances[0] = terminating(view.instances[0].clone(), t(999));
    let plan = pass(&view, now(), &mut names());
    assert!(
        creates(&plan).is_empty(),
        "nothing new while the stopping one may serve: {plan:#?}"
    );
    // The pass may stop another old one (the new one is available), but
    // then creates nothing either: the stopped one still serves.
    let stopping = 1 + terminated(&plan).len();
    let live = 4 - terminated(&plan).len();
    assert!(live + stopping <= 5);

    // Once it is gone, the room is used.
    view.instances.remove(0);
    let plan = pass(&view, now(), &mut names());
    let serving = 4 + creates(&plan).len();
    assert!(serving <= 5);
    assert!(
        !creates(&plan).is_empty() || !terminated(&plan).is_empty(),
        "the rollout goes on"
    );
    // Whatever this pass stops counts too: creating and stopping in the
    // same pass never exceeds the ceiling.
    assert!(4 + creates(&plan).len() <= 5);
}

#[test]
fn a_trapping_canary_is_aborted_on_its_trap_rate() {
    let old = deployment("web", 2);
    let analysis = CanaryAnalysis {
        max_error_rate: None,
        max_trap_rate: Some(Rate { ppm: 10_000 }),
        window: None,
        min_requests: None,
    };
    let web = canary(&old, vec![weight(50), pause(None)], Some(analysis));
    let mut names = names();
    let (_, view) = step(cluster(&old, &web), now(), &Traffic::new(), &mut names);
    let traffic: Traffic = view
        .instances
        .iter()
        .filter(|i| is_from(i, &template_hash(&web)))
        .filter_map(|i| i.metadata.uid.clone())
        .map(|uid| {
            let counts = Counts {
                requests: 50,
                errors: 2,
                traps: 2,
            };
            (uid, counts)
        })
        .collect();
    let (_, view) = step(view, now(), &traffic, &mut names);
    let status = canary_status(&view);
    assert!(status.aborted);
    assert!(
        status
            .message
            .contains("trap rate 4.0% (2 of 50 requests in the last 30s)")
            && status.message.contains("exceeds maxTrapRate 1%"),
        "{}",
        status.message
    );
}
