//! The Canary strategy: a Deployment whose template changed keeps its
//! stable revision's instances serving, starts instances of the new
//! (canary) revision, and walks `spec.strategy.canary.steps`:
//!
//! - `setWeight: W` sets the share of requests nodes send the canary and
//!   scales it to `ceil(replicas * W / 100)` instances (at least one); the
//!   step is done once they are all available;
//! - `pause: {duration}` waits that long, `pause: {}` until a
//!   `berth rollout promote`;
//! - past the last step (or with `promote --full`) the canary takes all
//!   requests, is scaled to `replicas`, and once those are available it
//!   becomes the stable revision and the old instances stop (`Promoted`).
//!
//! An abort (`berth rollout abort`, or the analysis finding the canary's
//! error or trap rate over its window above a threshold) stops the canary
//! instances and leaves the stable ones serving (`Aborted`), until the
//! template changes again. Where it stands is `status.canary`, written
//! every pass the way the Deployment controller writes the rest of
//! `status`; nodes learn the weight from [`canary_routes`].
//!
//! Sans-IO like every controller: what the canary instances answered
//! comes in as [`Traffic`], measured by the reconciler over the windows
//! [`canary_windows`] asks for.

use std::collections::{BTreeMap, HashMap};

use berth_api::canary::{
    CONDITION_ABORTED, CONDITION_PROMOTED, CanaryAnalysis, CanaryStatus, DEFAULT_MIN_REQUESTS,
    Promotion, Rate, parse_duration,
};
use berth_api::rollout::{DeploymentCondition, StrategyType};
use berth_api::wire::CanaryRoute;
use berth_api::{Deployment, Instance, InstanceTemplate, Object};
use jiff::{SignedDuration, Timestamp};

use super::deployment::{Live, RolloutLimits, is_from, new_instance, scale_down_rank, take};
use super::status::next_status;
use super::{
    Command, Plan, TEMPLATE_HASH_LABEL, View, is_terminating, owner_uid, rv, template_hash,
    terminate,
};
use crate::traffic::Counts;

/// What each canary instance answered over its Deployment's analysis
/// window, by uid.
pub type Traffic = HashMap<String, Counts>;

/// `status.canary.reason` once promoted.
pub const REASON_PROMOTED: &str = "Promoted";

/// `status.canary.reason` when the analysis aborted it.
pub const REASON_ANALYSIS_FAILED: &str = "AnalysisFailed";

/// `status.canary.reason` when `berth rollout abort` aborted it.
pub const REASON_ABORTED_BY_USER: &str = "AbortedByUser";

/// `status.canary.reason` while it moves through its steps.
pub const REASON_PROGRESSING: &str = "CanaryProgressing";

/// `status.canary.reason` while a pause step holds it.
pub const REASON_PAUSED: &str = "CanaryPaused";

/// What a pass of the canary controller sees besides the Deployment.
pub(super) struct Inputs<'a> {
    /// The current template's hash: the canary's, unless it is stable.
    pub(super) hash: &'a str,
    /// Whether an instance is available (`minReadySeconds` applied).
    pub(super) available: &'a dyn Fn(&Instance) -> bool,
    /// What canary instances answered lately.
    pub(super) traffic: &'a Traffic,
    /// The pass's time.
    pub(super) now: Timestamp,
}

/// What one pass decides.
#[derive(Default)]
struct Decision<'a> {
    terminate: Vec<&'a Instance>,
    /// Instances to create: their template hash and template.
    create: Vec<(String, InstanceTemplate)>,
    /// Held by a pause step: shown as paused in the `Progressing`
    /// condition, so that a long pause is no stalled rollout.
    held: bool,
}

/// One pass over a Canary Deployment (not paused): `live` holds its
/// instances neither terminating nor evicted, `new` from the current
/// template.
pub(super) fn reconcile_canary<'a>(
    deployment: &Deployment,
    live: Live<'a>,
    inputs: &Inputs<'_>,
    new_name: &mut dyn FnMut(&str) -> String,
    plan: &mut Plan,
) {
    let mut instances: Vec<&'a Instance> = live.new;
    instances.extend(live.old);
    let before = deployment
        .status
        .as_ref()
        .and_then(|s| s.canary.clone())
        .unwrap_or_default();
    let (mut decision, canary) = decide(deployment, &instances, before, inputs);
    let mut seen = std::collections::HashSet::new();
    decision
        .terminate
        .retain(|i| seen.insert(std::ptr::from_ref::<Instance>(*i)));
    for instance in &decision.terminate {
        terminate(instance, inputs.now, plan);
    }
    for (hash, template) in &decision.create {
        let mut model = deployment.clone();
        model.spec.template = template.clone();
        let instance = new_instance(&model, hash, new_name);
        plan.commands.push(Command::Create(Box::new(instance)));
    }
    // The status counts what is left: current-template instances as
    // updated, the rest as old.
    let left: Vec<&Instance> = instances
        .into_iter()
        .filter(|i| !decision.terminate.iter().any(|t| std::ptr::eq(*t, *i)))
        .collect();
    let (new, old) = left.into_iter().partition(|i| is_from(i, inputs.hash));
    let live = Live { new, old };
    let acted = !decision.terminate.is_empty() || !decision.create.is_empty();
    let mut shown = deployment.clone();
    shown.spec.paused = decision.held;
    let limits = RolloutLimits::of(&deployment.spec);
    let mut status = next_status(
        &shown,
        inputs.hash,
        &live,
        acted,
        inputs.available,
        limits,
        inputs.now,
    );
    let previous = deployment.status.as_ref().map(|s| s.conditions.as_slice());
    status.conditions.extend(outcome_condition(
        &canary,
        previous.unwrap_or_default(),
        inputs.now,
    ));
    status.canary = Some(canary);
    if deployment.status.as_ref() != Some(&status) {
        let mut updated = deployment.clone();
        updated.status = Some(status);
        plan.commands.push(Command::Update {
            seen: rv(&deployment.metadata),
            object: Box::new(Object::Deployment(Box::new(updated))),
        });
    }
}

fn hash_of(instance: &Instance) -> &str {
    instance
        .metadata
        .labels
        .get(TEMPLATE_HASH_LABEL)
        .map_or("", String::as_str)
}

/// The stable revision: the one the status names, else the most common
/// revision among instances of other templates (a Deployment switching
/// to Canary mid-life), else the current one.
fn stable_hash(before: &CanaryStatus, instances: &[&Instance], hash: &str) -> String {
    if !before.stable_hash.is_empty() {
        return before.stable_hash.clone();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for instance in instances {
        let of = hash_of(instance);
        if of != hash {
            *counts.entry(of).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map_or_else(|| hash.to_owned(), |(h, _)| h.to_owned())
}

/// The stable revision's template: the current one when it is stable,
/// else from the revision history, else copied from one of its
/// instances.
fn stable_template(
    deployment: &Deployment,
    stable: &str,
    instances: &[&Instance],
) -> Option<InstanceTemplate> {
    if template_hash(deployment) == stable {
        return Some(deployment.spec.template.clone());
    }
    let history = deployment.status.as_ref().map(|s| s.history.as_slice());
    if let Some(revision) = history
        .unwrap_or_default()
        .iter()
        .find(|r| r.template_hash == stable)
    {
        return Some(revision.template.clone());
    }
    instances
        .iter()
        .find(|i| hash_of(i) == stable)
        .map(|i| InstanceTemplate {
            metadata: berth_api::TemplateMeta {
                labels: i
                    .metadata
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != TEMPLATE_HASH_LABEL)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            spec: {
                let mut spec = i.spec.clone();
                spec.node_name = None;
                spec
            },
        })
}

/// Scales the instances of one revision to `wanted`: the creations to
/// make, and the surplus (unavailable first, then the newest) to stop.
fn scale<'a>(
    mut of_revision: Vec<&'a Instance>,
    wanted: usize,
    hash: &str,
    template: Option<&InstanceTemplate>,
    available: &dyn Fn(&Instance) -> bool,
    decision: &mut Decision<'a>,
) {
    if of_revision.len() > wanted {
        let excess = of_revision.len() - wanted;
        decision
            .terminate
            .extend(take(&mut of_revision, excess, scale_down_rank(available)));
    } else if let Some(template) = template {
        for _ in of_revision.len()..wanted {
            decision.create.push((hash.to_owned(), template.clone()));
        }
    }
}

/// The canary instances a weight asks for: `ceil(replicas * weight /
/// 100)`, at least one for any weight above 0.
pub fn canary_replicas(replicas: usize, weight: u32) -> usize {
    if weight == 0 {
        return 0;
    }
    let weight = usize::try_from(weight.min(100)).unwrap_or(100);
    replicas.saturating_mul(weight).div_ceil(100).max(1)
}

fn decide<'a>(
    deployment: &Deployment,
    instances: &[&'a Instance],
    before: CanaryStatus,
    inputs: &Inputs<'_>,
) -> (Decision<'a>, CanaryStatus) {
    let mut decision = Decision::default();
    let spec = &deployment.spec;
    let replicas = usize::try_from(spec.replicas.max(0)).unwrap_or(0);
    let hash = inputs.hash;
    let available = inputs.available;
    let stable = stable_hash(&before, instances, hash);
    let of = |h: &str| -> Vec<&'a Instance> {
        instances
            .iter()
            .copied()
            .filter(|i| hash_of(i) == h)
            .collect()
    };
    // Instances of neither revision (an earlier canary) stop.
    decision.terminate.extend(
        instances
            .iter()
            .copied()
            .filter(|i| hash_of(i) != stable && hash_of(i) != hash),
    );
    let stable_instances = of(&stable);
    let template = stable_template(deployment, &stable, instances);
    // Stable stays at `replicas` until a promotion replaces it.
    if stable == hash {
        scale(
            stable_instances,
            replicas,
            &stable,
            template.as_ref(),
            available,
            &mut decision,
        );
        let status = CanaryStatus {
            stable_hash: stable,
            canary_hash: String::new(),
            step: 0,
            weight: 0,
            step_started: None,
            promote: None,
            aborted: false,
            reason: before.reason,
            message: before.message,
        };
        return (decision, status);
    }
    let mut status = if before.canary_hash == hash {
        CanaryStatus {
            stable_hash: stable.clone(),
            ..before
        }
    } else {
        // A new canary revision: start at the first step.
        CanaryStatus {
            stable_hash: stable.clone(),
            canary_hash: hash.to_owned(),
            step: 0,
            weight: 0,
            step_started: Some(inputs.now),
            promote: None,
            aborted: false,
            reason: REASON_PROGRESSING.into(),
            message: format!("canary revision {hash} started"),
        }
    };
    let canary_instances = of(hash);
    let canary = spec.strategy.canary.clone().unwrap_or_default();
    if !status.aborted
        && let Some(analysis) = &canary.analysis
        && let Some(message) = analyze(analysis, &canary_instances, inputs.traffic, hash)
    {
        status.aborted = true;
        status.reason = REASON_ANALYSIS_FAILED.into();
        status.message = message;
    }
    if status.aborted {
        decision.terminate.extend(canary_instances);
        scale(
            stable_instances,
            replicas,
            &stable,
            template.as_ref(),
            available,
            &mut decision,
        );
        status.weight = 0;
        status.promote = None;
        return (decision, status);
    }
    scale(
        stable_instances.clone(),
        replicas,
        &stable,
        template.as_ref(),
        available,
        &mut decision,
    );
    let steps = &canary.steps;
    let last = u32::try_from(steps.len()).unwrap_or(u32::MAX);
    if status.promote == Some(Promotion::Full) {
        status.step = last;
        status.promote = None;
    }
    let ready = canary_instances.iter().filter(|i| available(i)).count();
    // Walk the steps that are already done, one pass may pass several.
    let held = loop {
        let index = usize::try_from(status.step).unwrap_or(usize::MAX);
        let Some(step) = steps.get(index) else {
            break false;
        };
        let mut advance = false;
        let mut held = false;
        if let Some(weight) = step.set_weight {
            status.weight = weight.min(100);
            advance = ready >= canary_replicas(replicas, status.weight)
                && canary_instances.len() == canary_replicas(replicas, status.weight);
        } else if let Some(pause) = &step.pause {
            let duration = pause.duration.as_deref().and_then(parse_duration);
            let started = status.step_started.unwrap_or(inputs.now);
            if status.promote == Some(Promotion::Step) {
                status.promote = None;
                advance = true;
            } else if let Some(duration) = duration {
                advance = inputs.now.duration_since(started) >= duration;
            }
            held = !advance;
        } else {
            advance = true;
        }
        if !advance {
            break held;
        }
        status.step = status.step.saturating_add(1);
        status.step_started = Some(inputs.now);
    };
    // A promote with no pause to end has nothing to do.
    if status.promote == Some(Promotion::Step) && !held {
        status.promote = None;
    }
    let past_steps = usize::try_from(status.step).unwrap_or(usize::MAX) >= steps.len();
    if past_steps {
        status.weight = 100;
    }
    let wanted = if past_steps || status.weight >= 100 {
        replicas
    } else {
        canary_replicas(replicas, status.weight)
    };
    if status.weight >= 100
        && canary_instances.len() >= replicas
        && ready >= replicas
        && decision.create.is_empty()
    {
        // Promoted: the canary is the stable revision from now on.
        decision.terminate.extend(stable_instances);
        decision.terminate.extend(take(
            &mut canary_instances.clone(),
            canary_instances.len().saturating_sub(replicas),
            scale_down_rank(available),
        ));
        let status = CanaryStatus {
            stable_hash: hash.to_owned(),
            canary_hash: String::new(),
            step: 0,
            weight: 0,
            step_started: None,
            promote: None,
            aborted: false,
            reason: REASON_PROMOTED.into(),
            message: format!("canary revision {hash} promoted to stable"),
        };
        return (decision, status);
    }
    scale(
        canary_instances,
        wanted,
        hash,
        Some(&deployment.spec.template),
        available,
        &mut decision,
    );
    decision.held = held;
    if held {
        status.reason = REASON_PAUSED.into();
        status.message = format!("paused at step {} of {}", status.step, steps.len());
    } else {
        status.reason = REASON_PROGRESSING.into();
        status.message = format!(
            "step {} of {}, weight {}%",
            status.step,
            steps.len(),
            status.weight
        );
    }
    (decision, status)
}

/// Why the canary must be aborted, if its error or trap rate over the
/// window is above a threshold (with at least `minRequests` requests).
fn analyze(
    analysis: &CanaryAnalysis,
    canary: &[&Instance],
    traffic: &Traffic,
    hash: &str,
) -> Option<String> {
    let counts = canary
        .iter()
        .filter_map(|i| i.metadata.uid.as_ref())
        .filter_map(|uid| traffic.get(uid))
        .fold(Counts::default(), |sum, c| sum.plus(*c));
    let min = analysis.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS).max(1);
    if counts.requests < min {
        return None;
    }
    let window = analysis
        .window
        .clone()
        .unwrap_or_else(|| berth_api::canary::DEFAULT_WINDOW.to_owned());
    let checks = [
        (
            "error rate",
            "maxErrorRate",
            counts.errors,
            analysis.max_error_rate,
        ),
        (
            "trap rate",
            "maxTrapRate",
            counts.traps,
            analysis.max_trap_rate,
        ),
    ];
    checks.into_iter().find_map(|(what, field, part, max)| {
        let max = max?;
        let rate = Rate::of(part, counts.requests);
        (rate > max).then(|| {
            format!(
                "canary revision {hash}: {what} {rate} ({part} of {} requests in the last {window}) exceeds {field} {max}",
                counts.requests,
                max = serde_json::to_value(max)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            )
        })
    })
}

/// The `Promoted` or `Aborted` condition the canary's last outcome asks
/// for, keeping its time while it holds.
fn outcome_condition(
    canary: &CanaryStatus,
    previous: &[DeploymentCondition],
    now: Timestamp,
) -> Option<DeploymentCondition> {
    let type_ = if canary.aborted {
        CONDITION_ABORTED
    } else if canary.reason == REASON_PROMOTED {
        CONDITION_PROMOTED
    } else {
        return None;
    };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.reason == canary.reason && c.message == canary.message)
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    Some(DeploymentCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: canary.reason.clone(),
        message: canary.message.clone(),
        last_update_time: Some(since),
    })
}

fn is_canary(deployment: &Deployment) -> bool {
    deployment.spec.strategy.type_ == StrategyType::Canary
}

/// The running canary of `deployment`: its status, when a canary of the
/// current template runs and is not aborted.
fn running_canary(deployment: &Deployment) -> Option<&CanaryStatus> {
    let canary = deployment.status.as_ref()?.canary.as_ref()?;
    (is_canary(deployment) && !canary.canary_hash.is_empty() && !canary.aborted).then_some(canary)
}

/// The live instances of `deployment` made from `hash`.
fn instances_of<'a>(
    deployment: &Deployment,
    instances: &'a [Instance],
    hash: &'a str,
) -> impl Iterator<Item = &'a Instance> {
    let uid = deployment.metadata.uid.clone();
    instances.iter().filter(move |i| {
        owner_uid(i).is_some()
            && owner_uid(i) == uid.as_deref()
            && !is_terminating(i)
            && is_from(i, hash)
    })
}

/// The canary instances whose traffic the analysis needs, each with its
/// Deployment's window.
pub fn canary_windows(view: &View) -> Vec<(String, SignedDuration)> {
    let mut wanted = Vec::new();
    for deployment in &view.deployments {
        let Some(canary) = running_canary(deployment) else {
            continue;
        };
        let Some(window) = deployment
            .spec
            .strategy
            .canary
            .as_ref()
            .and_then(|c| c.analysis.as_ref())
            .and_then(CanaryAnalysis::window)
        else {
            continue;
        };
        for instance in instances_of(deployment, &view.instances, &canary.canary_hash) {
            if let Some(uid) = &instance.metadata.uid {
                wanted.push((uid.clone(), window));
            }
        }
    }
    wanted
}

/// How nodes split the requests of each Deployment with a running
/// canary, sorted by namespace and name.
pub fn canary_routes(deployments: &[Deployment], instances: &[Instance]) -> Vec<CanaryRoute> {
    let mut routes: Vec<CanaryRoute> = deployments
        .iter()
        .filter_map(|deployment| {
            let canary = running_canary(deployment)?;
            let mut uids: Vec<String> = instances_of(deployment, instances, &canary.canary_hash)
                .filter_map(|i| i.metadata.uid.clone())
                .collect();
            uids.sort();
            Some(CanaryRoute {
                namespace: deployment.metadata.namespace_or_default().to_owned(),
                deployment: deployment.metadata.name.clone(),
                revision: canary.canary_hash.clone(),
                weight: canary.weight,
                instances: uids,
            })
        })
        .collect();
    routes.sort_by(|a, b| (&a.namespace, &a.deployment).cmp(&(&b.namespace, &b.deployment)));
    routes
}

/// Records a `berth rollout promote` or `abort` in `deployment`'s
/// `status.canary`, for the next pass to act on. Fails (with a message
/// naming what is missing) when no canary runs.
pub fn request(
    deployment: &mut Deployment,
    promote: Option<Promotion>,
    abort: bool,
) -> Result<(), String> {
    if !is_canary(deployment) {
        return Err("spec.strategy.type is not Canary".into());
    }
    let Some(canary) = deployment
        .status
        .as_mut()
        .and_then(|s| s.canary.as_mut())
        .filter(|c| !c.canary_hash.is_empty() && !c.aborted)
    else {
        return Err("no canary is running".into());
    };
    if abort {
        canary.aborted = true;
        canary.reason = REASON_ABORTED_BY_USER.into();
        canary.message = format!(
            "canary revision {} aborted by berth rollout abort",
            canary.canary_hash
        );
    } else if promote.is_some() {
        canary.promote = promote;
    }
    Ok(())
}
