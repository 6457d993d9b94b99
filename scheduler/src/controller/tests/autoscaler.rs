//! The autoscaler: Kubernetes' formula from usage reports, the
//! stabilization window on the way down, scale to zero after the idle
//! period, and the wake that brings one instance back on the asking node.

use berth_api::autoscaler::{
    AutoscalerBehavior, AutoscalerSpec, AutoscalerStatus, HorizontalAutoscaler, ScaleTargetRef,
    ScalingRules,
};
use berth_api::wire::InstanceUsage;

use super::super::autoscaler::{AutoscalerMemory, Usage, WakeError, autoscale, recommend, wake};
use super::*;

fn autoscaler(min: i64, max: i64, concurrency: f64) -> HorizontalAutoscaler {
    HorizontalAutoscaler {
        api_version: API_VERSION.into(),
        kind: Kind::HorizontalAutoscaler.as_str().into(),
        metadata: ObjectMeta {
            name: "web".into(),
            namespace: Some(NS.into()),
            uid: Some("hpa-uid".into()),
            resource_version: Some("30".into()),
            ..ObjectMeta::default()
        },
        spec: AutoscalerSpec {
            scale_target_ref: ScaleTargetRef {
                kind: "Deployment".into(),
                name: "web".into(),
            },
            min_replicas: min,
            max_replicas: max,
            target_concurrency: Some(concurrency),
            target_requests_per_second: None,
            target_cpu_utilization: None,
            behavior: Some(AutoscalerBehavior {
                scale_down: Some(ScalingRules {
                    stabilization_window_seconds: Some(60),
                }),
            }),
            scale_to_zero_after_seconds: (min == 0).then_some(30),
        },
        status: None,
    }
}

/// A view with `web` at `replicas`, that many Running instances created at
/// `t(0)`, and its autoscaler.
fn cluster(replicas: i64, hpa: HorizontalAutoscaler) -> (Vec<HorizontalAutoscaler>, View) {
    let web = deployment("web", replicas);
    let mut objects = vec![
        Object::Node(Box::new(node("n1", true))),
        Object::Node(Box::new(node("n2", true))),
    ];
    for n in 0..replicas {
        let i = instance(&web, &format!("web-{n}"), 0, Phase::Running, Some("n1"));
        objects.push(Object::Instance(Box::new(i)));
    }
    objects.push(Object::Deployment(Box::new(web)));
    (vec![hpa], View::new(objects))
}

/// Every instance of `view` serving `rps` requests a second of `latency_ms`
/// each: `rps * latency` requests in flight on average.
fn load(view: &View, rps: u64, latency_ms: u64) -> Usage {
    view.instances
        .iter()
        .map(|i| {
            let uid = i.metadata.uid.clone().unwrap();
            let usage = InstanceUsage {
                uid: uid.clone(),
                millirequests_per_second: rps * 1000,
                mean_latency_micros: latency_ms * 1000,
                ..InstanceUsage::default()
            };
            (uid, usage)
        })
        .collect()
}

fn scaled_to(commands: &[Command]) -> Option<i64> {
    commands.iter().find_map(|c| match c {
        Command::Update { object, .. } => match &**object {
            Object::Deployment(d) => Some(d.spec.replicas),
            _ => None,
        },
        _ => None,
    })
}

fn status(commands: &[Command]) -> Option<AutoscalerStatus> {
    commands.iter().find_map(|c| match c {
        Command::Update { object, .. } => match &**object {
            Object::HorizontalAutoscaler(a) => a.status.clone(),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn the_formula_is_kubernetes_with_a_tolerance() {
    assert_eq!(recommend(2, 4.0, 1.0), 8);
    assert_eq!(recommend(3, 1.0, 2.0), 2, "ceil(1.5)");
    assert_eq!(recommend(4, 1.05, 1.0), 4, "within 10%: unchanged");
    assert_eq!(recommend(4, 0.0, 1.0), 0);
    assert_eq!(recommend(1, f64::NAN, 1.0), 1);
}

#[test]
fn load_above_target_scales_up_at_once_within_max() {
    let (hpas, view) = cluster(2, autoscaler(1, 5, 1.0));
    // 20 requests/s of 200 ms: 4 in flight per instance, target 1.
    let usage = load(&view, 20, 200);
    let mut memory = AutoscalerMemory::default();
    let commands = autoscale(&hpas, &view, &usage, &mut memory, now());
    assert_eq!(scaled_to(&commands), Some(5), "8 wanted, max 5");
    let status = status(&commands).unwrap();
    assert_eq!(status.current_replicas, 2);
    assert_eq!(status.desired_replicas, 5);
    assert_eq!(status.last_scale_time, Some(now()));
    assert_eq!(status.current_metric_value, Some(4.0));
}

#[test]
fn requests_per_second_and_cpu_targets_follow_their_metric() {
    let mut hpa = autoscaler(1, 10, 1.0);
    hpa.spec.target_concurrency = None;
    hpa.spec.target_requests_per_second = Some(10.0);
    let (hpas, view) = cluster(2, hpa.clone());
    let commands = autoscale(
        &hpas,
        &view,
        &load(&view, 30, 1),
        &mut AutoscalerMemory::default(),
        now(),
    );
    assert_eq!(scaled_to(&commands), Some(6));

    hpa.spec.target_requests_per_second = None;
    hpa.spec.target_cpu_utilization = Some(50);
    let (hpas, view) = cluster(2, hpa);
    // The template requests 100m; each instance uses 150m: 150%.
    let usage: Usage = load(&view, 1, 1)
        .into_iter()
        .map(|(uid, mut u)| {
            u.cpu_millicores = 150;
            (uid, u)
        })
        .collect();
    let commands = autoscale(
        &hpas,
        &view,
        &usage,
        &mut AutoscalerMemory::default(),
        now(),
    );
    assert_eq!(scaled_to(&commands), Some(6));
    assert_eq!(status(&commands).unwrap().current_metric_value, Some(150.0));
}

#[test]
fn without_reports_replicas_stay_within_bounds() {
    let (hpas, view) = cluster(3, autoscaler(1, 5, 1.0));
    let commands = autoscale(
        &hpas,
        &view,
        &Usage::new(),
        &mut AutoscalerMemory::default(),
        now(),
    );
    assert_eq!(scaled_to(&commands), None);
    assert_eq!(status(&commands).unwrap().current_metric_value, None);
    // Below the minimum: raised to it.
    let (hpas, view) = cluster(1, autoscaler(2, 5, 1.0));
    let commands = autoscale(
        &hpas,
        &view,
        &Usage::new(),
        &mut AutoscalerMemory::default(),
        now(),
    );
    assert_eq!(scaled_to(&commands), Some(2));
}

#[test]
fn scale_down_waits_for_the_highest_recommendation_of_the_window() {
    let (hpas, view) = cluster(4, autoscaler(1, 10, 1.0));
    let mut memory = AutoscalerMemory::default();
    // 4 in flight in all: steady at 4.
    let steady = autoscale(&hpas, &view, &load(&view, 10, 100), &mut memory, t(1000));
    assert_eq!(scaled_to(&steady), None);
    // The load halves: 2 wanted, but 4 was recommended within the window.
    let dip = autoscale(&hpas, &view, &load(&view, 5, 100), &mut memory, t(1030));
    assert_eq!(scaled_to(&dip), None, "held by the window");
    // Once the 4 left the window (60 s), the highest left is 2.
    let later = autoscale(&hpas, &view, &load(&view, 5, 100), &mut memory, t(1061));
    assert_eq!(scaled_to(&later), Some(2));
}

#[test]
fn idle_for_the_period_goes_to_zero_and_stays_there() {
    let (hpas, view) = cluster(2, autoscaler(0, 5, 1.0));
    let mut memory = AutoscalerMemory::default();
    let busy = autoscale(&hpas, &view, &load(&view, 5, 100), &mut memory, t(1000));
    assert_eq!(
        scaled_to(&busy),
        Some(1),
        "1 in flight in all: one instance"
    );
    let quiet = load(&view, 0, 0);
    let soon = autoscale(&hpas, &view, &quiet, &mut memory, t(1020));
    assert_ne!(scaled_to(&soon), Some(0), "idle only 20 s of 30");
    let idle = autoscale(&hpas, &view, &quiet, &mut memory, t(1031));
    assert_eq!(scaled_to(&idle), Some(0));

    let (hpas, asleep) = cluster(0, autoscaler(0, 5, 1.0));
    let commands = autoscale(&hpas, &asleep, &Usage::new(), &mut memory, t(2000));
    assert_eq!(scaled_to(&commands), None, "only a wake raises it");
    assert_eq!(status(&commands).unwrap().desired_replicas, 0);
}

#[test]
fn a_new_instance_counts_as_activity() {
    // Woken at t(1000): no request reported yet, but the instance is new.
    let (hpas, mut view) = cluster(1, autoscaler(0, 5, 1.0));
    view.instances[0].metadata.creation_timestamp = Some(t(1000));
    let mut memory = AutoscalerMemory::default();
    let commands = autoscale(&hpas, &view, &Usage::new(), &mut memory, t(1010));
    assert_eq!(scaled_to(&commands), None);
    let commands = autoscale(&hpas, &view, &Usage::new(), &mut memory, t(1031));
    assert_eq!(scaled_to(&commands), Some(0));
}

#[test]
fn an_instance_not_ready_yet_keeps_the_deployment_awake() {
    let (hpas, mut view) = cluster(1, autoscaler(0, 5, 1.0));
    view.instances[0].status.phase = Phase::Starting;
    view.instances[0].status.ready = false;
    let mut memory = AutoscalerMemory::default();
    let commands = autoscale(&hpas, &view, &Usage::new(), &mut memory, t(1000));
    assert_eq!(scaled_to(&commands), None, "still compiling");
    let commands = autoscale(&hpas, &view, &Usage::new(), &mut memory, t(1100));
    assert_eq!(scaled_to(&commands), None, "still not ready");
}

#[test]
fn a_missing_target_changes_nothing() {
    let mut hpa = autoscaler(1, 5, 1.0);
    hpa.spec.scale_target_ref.name = "gone".into();
    let (hpas, view) = cluster(2, hpa);
    assert!(
        autoscale(
            &hpas,
            &view,
            &Usage::new(),
            &mut AutoscalerMemory::default(),
            now()
        )
        .is_empty()
    );
}

#[test]
fn a_wake_creates_one_instance_bound_to_the_asking_node() {
    let (hpas, view) = cluster(0, autoscaler(0, 5, 1.0));
    let plan = wake(&hpas, &view, NS, "web", "n2", now(), &mut names()).unwrap();
    assert_eq!(scaled_to(&plan.commands), Some(1));
    let created = creates(&plan);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].spec.node_name.as_deref(), Some("n2"));
    assert_eq!(created[0].status.phase, Phase::Scheduled);
    let status = status(&plan.commands).unwrap();
    assert_eq!(status.desired_replicas, 1);
    assert_eq!(status.last_scale_time, Some(now()));
    // The next controller pass sees its replica: nothing more to create.
    let after = apply(&view, &plan);
    assert!(creates(&pass(&after, now(), &mut names())).is_empty());
}

#[test]
fn a_wake_leaves_placement_to_choose_when_the_asking_node_is_full() {
    let (hpas, mut view) = cluster(0, autoscaler(0, 5, 1.0));
    view.nodes[1].status.allocatable.cpu_millis = 50;
    let plan = wake(&hpas, &view, NS, "web", "n2", now(), &mut names()).unwrap();
    let created = creates(&plan);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].spec.node_name, None, "pending for placement");
}

#[test]
fn waking_an_awake_or_unscaled_deployment_does_nothing_or_is_refused() {
    let (hpas, view) = cluster(2, autoscaler(0, 5, 1.0));
    assert!(
        wake(&hpas, &view, NS, "web", "n1", now(), &mut names())
            .unwrap()
            .commands
            .is_empty()
    );
    let (hpas, view) = cluster(0, autoscaler(1, 5, 1.0));
    assert!(matches!(
        wake(&hpas, &view, NS, "web", "n1", now(), &mut names()),
        Err(WakeError::NotScaledToZero(_))
    ));
    assert!(matches!(
        wake(&hpas, &view, NS, "nope", "n1", now(), &mut names()),
        Err(WakeError::NotFound(_))
    ));
}
