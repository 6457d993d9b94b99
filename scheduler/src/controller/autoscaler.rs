//! The HorizontalAutoscaler controller: from the nodes' usage reports to a
//! Deployment's `replicas`, and the wake path that takes a Deployment
//! scaled to zero back to one instance.
//!
//! Each pass, for every autoscaler ([`autoscale`]):
//! 1. the metric is the mean over the target's ready instances with a fresh
//!    report: requests in flight (the reports' rate times mean latency, the
//!    time-averaged concurrency by Little's law), requests per second, or
//!    cpu as a percent of the instance's cpu request;
//! 2. the recommendation is Kubernetes' `ceil(ready * metric / target)`,
//!    kept at the current count within a 10% tolerance, clamped to
//!    `[max(minReplicas, 1), maxReplicas]`; without a metric (instances
//!    starting, reports missing) the current `replicas` stay;
//! 3. a scale-up applies at once; a scale-down takes the highest
//!    recommendation of the stabilization window, so a dip does not
//!    terminate instances a burst needs back;
//! 4. with `minReplicas: 0`, a Deployment whose instances served no request
//!    for `scaleToZeroAfterSeconds` (counted from the latest request, the
//!    last pass that saw an instance not ready yet, the newest instance or
//!    the latest scale, whichever is last) goes to 0, and stays there until
//!    a node sends `Wake` ([`wake`]).
//!
//! The autoscaler owns the Deployment's `replicas` while it exists: a
//! `berth scale` is overridden by the next pass (as in Kubernetes).
//!
//! Recommendations and the last time a request was seen live in an
//! [`AutoscalerMemory`] the caller keeps between passes (the scheduler, in
//! memory, as Kubernetes' controller does): a restart forgets them, which
//! only delays the next scale-down by one window.

use std::collections::{HashMap, HashSet};

use berth_api::autoscaler::{AutoscalerStatus, HorizontalAutoscaler, Target};
use berth_api::wire::InstanceUsage;
use berth_api::{Deployment, Instance, InstanceStatus, Object, Phase};
use jiff::{SignedDuration, Timestamp};

use super::deployment::{is_ready, new_instance};
use super::{Command, Plan, View, demand, is_terminating, owner_uid, rv, template_hash};
use crate::placement::{Framework, Snapshot};

/// A ratio of metric to target within this distance of 1 changes nothing
/// (Kubernetes' default tolerance), so noise does not flap replicas.
pub const TOLERANCE: f64 = 0.1;

/// What the controller remembers between passes, by autoscaler uid.
#[derive(Debug, Default, Clone)]
pub struct AutoscalerMemory {
    entries: HashMap<String, Memory>,
}

#[derive(Debug, Default, Clone)]
struct Memory {
    /// Recommendations within the stabilization window, oldest first.
    recommendations: Vec<(Timestamp, i64)>,
    /// The last time one of the target's instances served a request.
    last_active: Option<Timestamp>,
}

/// Each instance's latest usage from a fresh report, by instance uid.
pub type Usage = HashMap<String, InstanceUsage>;

/// The autoscalers among a snapshot's objects.
pub fn autoscalers(objects: &[Object]) -> Vec<HorizontalAutoscaler> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::HorizontalAutoscaler(a) => Some((**a).clone()),
            _ => None,
        })
        .collect()
}

/// One pass over `autoscalers`: updates of the Deployments whose
/// `replicas` change and of the autoscalers whose `status` changes.
pub fn autoscale(
    autoscalers: &[HorizontalAutoscaler],
    view: &View,
    usage: &Usage,
    memory: &mut AutoscalerMemory,
    now: Timestamp,
) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut alive = HashSet::new();
    for autoscaler in autoscalers {
        let Some(uid) = autoscaler.metadata.uid.clone() else {
            continue;
        };
        let entry = memory.entries.entry(uid.clone()).or_default();
        alive.insert(uid);
        scale_one(autoscaler, view, usage, entry, now, &mut commands);
    }
    memory.entries.retain(|uid, _| alive.contains(uid));
    commands
}

/// The Deployment `autoscaler` targets, if it exists.
fn target<'a>(autoscaler: &HorizontalAutoscaler, view: &'a View) -> Option<&'a Deployment> {
    let namespace = autoscaler.metadata.namespace_or_default();
    view.deployments.iter().find(|d| {
        d.metadata.namespace_or_default() == namespace
            && d.metadata.name == autoscaler.spec.scale_target_ref.name
    })
}

fn seconds(n: u32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(n))
}

fn scale_one(
    autoscaler: &HorizontalAutoscaler,
    view: &View,
    usage: &Usage,
    memory: &mut Memory,
    now: Timestamp,
    commands: &mut Vec<Command>,
) {
    let Some(deployment) = target(autoscaler, view) else {
        return;
    };
    let spec = &autoscaler.spec;
    let owned: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| owner_uid(i).is_some() && owner_uid(i) == deployment.metadata.uid.as_deref())
        .filter(|i| !is_terminating(i))
        .collect();
    let current = i64::try_from(owned.len()).unwrap_or(i64::MAX);
    let ready: Vec<&Instance> = owned.iter().copied().filter(|i| is_ready(i)).collect();
    let previous = autoscaler.status.clone().unwrap_or_default();

    // Activity: a request served, an instance not ready yet (asked for,
    // it has not had its chance to serve), a new instance (a wake), or a
    // scale.
    let starting = ready.len() < owned.len();
    let served = owned.iter().any(|i| {
        i.metadata
            .uid
            .as_ref()
            .and_then(|uid| usage.get(uid))
            .is_some_and(|u| u.millirequests_per_second > 0)
    });
    if served || starting {
        memory.last_active = Some(now);
    }
    let newest = owned
        .iter()
        .filter_map(|i| i.metadata.creation_timestamp)
        .max();
    let active = [memory.last_active, newest, previous.last_scale_time]
        .into_iter()
        .flatten()
        .max();
    // Never seen active: count from the first pass that sees it.
    let active = *memory.last_active.get_or_insert(active.unwrap_or(now));
    let idle = now.duration_since(active) >= seconds(spec.scale_to_zero_after_seconds());

    let metric = spec.target().and_then(|t| metric(t, &ready, usage));
    let replicas = deployment.spec.replicas;
    let floor = spec.min_replicas.max(1);
    let desired = if spec.min_replicas == 0 && replicas == 0 {
        // Asleep: only a wake brings it back.
        0
    } else if spec.min_replicas == 0 && idle {
        0
    } else {
        let recommendation = match (metric, spec.target()) {
            (Some(value), Some(target)) => {
                let ready_count = i64::try_from(ready.len()).unwrap_or(i64::MAX);
                recommend(ready_count, value, target.value())
            }
            _ => replicas,
        }
        .clamp(floor, spec.max_replicas.max(floor));
        stabilize(memory, recommendation, replicas, spec, now)
    };

    let scaled = desired != replicas;
    if scaled {
        let mut updated = deployment.clone();
        updated.spec.replicas = desired;
        commands.push(Command::Update {
            seen: rv(&deployment.metadata),
            object: Box::new(Object::Deployment(Box::new(updated))),
        });
    }
    let status = AutoscalerStatus {
        current_replicas: current,
        desired_replicas: desired,
        last_scale_time: if scaled {
            Some(now)
        } else {
            previous.last_scale_time
        },
        current_metric_value: metric.map(|m| (m * 1000.0).round() / 1000.0),
    };
    if autoscaler.status.as_ref() != Some(&status) {
        let mut updated = autoscaler.clone();
        updated.status = Some(status);
        commands.push(Command::Update {
            seen: rv(&autoscaler.metadata),
            object: Box::new(Object::HorizontalAutoscaler(Box::new(updated))),
        });
    }
}

/// The mean per ready instance with a report, in the target's unit; `None`
/// when no ready instance has one (or, for cpu, has a cpu request).
fn metric(target: Target, ready: &[&Instance], usage: &Usage) -> Option<f64> {
    let values: Vec<f64> = ready
        .iter()
        .filter_map(|instance| {
            let sample = usage.get(instance.metadata.uid.as_deref()?)?;
            #[allow(clippy::cast_precision_loss, reason = "rates as floats")]
            let rate = sample.millirequests_per_second as f64 / 1000.0;
            #[allow(clippy::cast_precision_loss, reason = "latency as a float")]
            let latency = sample.mean_latency_micros as f64 / 1e6;
            match target {
                Target::Concurrency(_) => Some(rate * latency),
                Target::RequestsPerSecond(_) => Some(rate),
                Target::CpuUtilization(_) => {
                    let request = demand(&instance.spec).cpu_millis;
                    #[allow(clippy::cast_precision_loss, reason = "percent as a float")]
                    let percent = (request > 0)
                        .then(|| sample.cpu_millicores as f64 * 100.0 / request as f64);
                    percent
                }
            }
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    #[allow(clippy::cast_precision_loss, reason = "a count as a float")]
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some(mean)
}

/// Kubernetes' formula: `ceil(current * metric / target)`, or `current`
/// when the ratio is within [`TOLERANCE`] of 1.
pub fn recommend(current: i64, metric: f64, target: f64) -> i64 {
    if target <= 0.0 || !metric.is_finite() {
        return current;
    }
    let ratio = metric / target;
    if current > 0 && (ratio - 1.0).abs() <= TOLERANCE {
        return current;
    }
    #[allow(clippy::cast_precision_loss, reason = "replica counts are small")]
    let wanted = (current.max(1) as f64 * ratio).ceil();
    #[allow(
        clippy::cast_possible_truncation,
        reason = "clamped to the replica limit first"
    )]
    let wanted = wanted.clamp(0.0, berth_api::autoscaler::MAX_REPLICAS as f64) as i64;
    wanted
}

/// Records `recommendation` and returns what to scale to: up at once, down
/// only to the highest recommendation of the window.
fn stabilize(
    memory: &mut Memory,
    recommendation: i64,
    replicas: i64,
    spec: &berth_api::autoscaler::AutoscalerSpec,
    now: Timestamp,
) -> i64 {
    let window = seconds(spec.stabilization_window_seconds());
    memory
        .recommendations
        .retain(|(at, _)| now.duration_since(*at) < window);
    memory.recommendations.push((now, recommendation));
    if recommendation >= replicas {
        return recommendation;
    }
    let highest = memory
        .recommendations
        .iter()
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(recommendation);
    highest.min(replicas)
}

/// Why a wake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WakeError {
    /// No such Deployment.
    #[error("deployment {0} not found")]
    NotFound(String),
    /// The Deployment has no autoscaler allowing zero.
    #[error("deployment {0} is not scaled to zero by a horizontalautoscaler")]
    NotScaledToZero(String),
}

/// What a node's `Wake` for `namespace/name` does: when the Deployment is at
/// 0 replicas, 1, and its instance created already bound to `node` when it
/// fits there (the node asking holds the component compiled), else left
/// for placement. Nothing when it is awake already.
pub fn wake(
    autoscalers: &[HorizontalAutoscaler],
    view: &View,
    namespace: &str,
    name: &str,
    node: &str,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Result<Plan, WakeError> {
    let described = format!("{namespace}/{name}");
    let deployment = view
        .deployments
        .iter()
        .find(|d| d.metadata.namespace_or_default() == namespace && d.metadata.name == name)
        .ok_or_else(|| WakeError::NotFound(described.clone()))?;
    let autoscaler = autoscalers
        .iter()
        .find(|a| target(a, view).is_some_and(|d| d.metadata.uid == deployment.metadata.uid))
        .filter(|a| a.spec.min_replicas == 0)
        .ok_or(WakeError::NotScaledToZero(described))?;
    let mut plan = Plan::default();
    if deployment.spec.replicas > 0 {
        return Ok(plan);
    }
    let mut updated = deployment.clone();
    updated.spec.replicas = 1;
    plan.commands.push(Command::Update {
        seen: rv(&deployment.metadata),
        object: Box::new(Object::Deployment(Box::new(updated))),
    });
    let mut instance = new_instance(deployment, &template_hash(deployment), new_name);
    if fits(view, &instance, node, now) {
        instance.spec.node_name = Some(node.to_owned());
        instance.status = InstanceStatus {
            phase: Phase::Scheduled,
            ..InstanceStatus::default()
        };
    }
    plan.commands.push(Command::Create(Box::new(instance)));
    let mut status = autoscaler.status.clone().unwrap_or_default();
    status.desired_replicas = 1;
    status.last_scale_time = Some(now);
    let mut woken = autoscaler.clone();
    woken.status = Some(status);
    plan.commands.push(Command::Update {
        seen: rv(&autoscaler.metadata),
        object: Box::new(Object::HorizontalAutoscaler(Box::new(woken))),
    });
    Ok(plan)
}

/// Whether the placement filters let `instance` onto `node` now.
fn fits(view: &View, instance: &Instance, node: &str, now: Timestamp) -> bool {
    let ready: HashMap<String, bool> = view
        .nodes
        .iter()
        .map(|n| (n.metadata.name.clone(), n.status.is_ready()))
        .collect();
    let snapshot: Snapshot = super::place::snapshot(view, &ready, &HashSet::new(), now);
    let owners = HashMap::new();
    let mut pending = super::place::pending_instance(instance, &owners, &HashMap::new());
    pending.node_name = Some(node.to_owned());
    let outcome = Framework::default().place(&snapshot, &[pending]);
    outcome.bindings.iter().any(|b| b.node == node)
}
