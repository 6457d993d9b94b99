//! The Deployment controller: creates and terminates a Deployment's
//! instances to match `replicas`, and rolls a new template out by its
//! `strategy` (RollingUpdate or Recreate), or only scales while `paused`.
//! Its `status` is computed in `status.rs`.

use std::collections::{BTreeMap, HashSet};

use berth_api::rollout::{IntOrPercent, StrategyType};
use berth_api::{
    API_VERSION, Deployment, DeploymentSpec, Instance, InstanceStatus, Kind, Object, ObjectMeta,
    OwnerReference, Phase,
};
use jiff::{SignedDuration, Timestamp};

use super::status::next_status;
use super::{
    Command, Plan, TEMPLATE_HASH_LABEL, View, instance_key, is_terminating, owner_uid, rv,
    template_hash, terminate,
};

/// How far a rollout may stray from `replicas`, resolved as Kubernetes
/// does: `maxSurge` rounds up, `maxUnavailable` rounds down, both default
/// to 25%, and when both come to 0 one instance may be unavailable.
/// `Recreate` allows neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutLimits {
    /// Instances allowed above `replicas`.
    pub max_surge: usize,
    /// Instances of `replicas` allowed to be unavailable.
    pub max_unavailable: usize,
}

impl RolloutLimits {
    /// The limits of `spec` at its current `replicas`.
    pub fn of(spec: &DeploymentSpec) -> RolloutLimits {
        let replicas = spec.replicas.max(0);
        if spec.strategy.type_ == StrategyType::Recreate {
            return RolloutLimits {
                max_surge: 0,
                max_unavailable: 0,
            };
        }
        let rolling = spec.strategy.rolling_update.clone().unwrap_or_default();
        let quarter = IntOrPercent::Percent(25);
        let surge = rolling.max_surge.unwrap_or(quarter).resolve(replicas, true);
        let mut unavailable = rolling
            .max_unavailable
            .unwrap_or(quarter)
            .resolve(replicas, false);
        if surge <= 0 && unavailable <= 0 {
            unavailable = 1;
        }
        let count = |n: i64| usize::try_from(n.max(0)).unwrap_or(usize::MAX);
        RolloutLimits {
            max_surge: count(surge),
            max_unavailable: count(unavailable.min(replicas)),
        }
    }

    /// The instances that must stay available out of `replicas`.
    pub fn min_available(self, replicas: usize) -> usize {
        replicas.saturating_sub(self.max_unavailable)
    }
}

/// Whether `instance` counts as available: Running and ready (its node
/// reports it passing its readiness probe, or having none) for at least
/// `min_ready_seconds` (a Running instance without a start time counts
/// only when no wait is asked).
pub fn is_available(instance: &Instance, min_ready_seconds: u32, now: Timestamp) -> bool {
    let wait = SignedDuration::from_secs(i64::from(min_ready_seconds));
    is_ready(instance)
        && (min_ready_seconds == 0
            || instance
                .status
                .start_time
                .is_some_and(|started| now.duration_since(started) >= wait))
}

/// Whether `instance` serves: Running, and ready by its node's report
/// (which is Running itself for an instance without a readiness probe).
pub fn is_ready(instance: &Instance) -> bool {
    instance.status.phase == Phase::Running && instance.status.ready
}

pub(super) fn is_from(instance: &Instance, hash: &str) -> bool {
    instance
        .metadata
        .labels
        .get(TEMPLATE_HASH_LABEL)
        .is_some_and(|h| h == hash)
}

/// A Deployment's live instances (neither terminating nor evicted by this
/// pass): `new` are made from the current template, `old` from any other.
pub(super) struct Live<'a> {
    pub(super) new: Vec<&'a Instance>,
    pub(super) old: Vec<&'a Instance>,
}

impl Live<'_> {
    pub(super) fn total(&self) -> usize {
        self.new.len() + self.old.len()
    }
}

/// What one pass does to a Deployment's instances.
#[derive(Default)]
struct Step<'a> {
    /// Instances to terminate, each taken out of [`Live`].
    terminate: Vec<&'a Instance>,
    /// How many instances to create.
    create: usize,
    /// Whose template the creations copy, when it is not the current one
    /// (a paused Deployment scaling its old instances).
    model: Option<&'a Instance>,
}

/// Takes the first `count` instances of `from` in `rank` order.
pub(super) fn take<'a, K: Ord>(
    from: &mut Vec<&'a Instance>,
    count: usize,
    rank: impl Fn(&Instance) -> K,
) -> Vec<&'a Instance> {
    from.sort_by_cached_key(|i| rank(i));
    from.drain(..count.min(from.len())).collect()
}

fn oldest_first(instance: &Instance) -> (Option<Timestamp>, String) {
    (
        instance.metadata.creation_timestamp,
        instance.metadata.name.clone(),
    )
}

pub(super) fn reconcile_deployment(
    deployment: &Deployment,
    view: &View,
    evicted: &HashSet<String>,
    traffic: &super::canary::Traffic,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
    plan: &mut Plan,
) {
    let Some(uid) = deployment.metadata.uid.as_deref() else {
        return;
    };
    let hash = template_hash(deployment);
    let owned: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| owner_uid(i) == Some(uid))
        .collect();
    let (new, old) = owned
        .iter()
        .copied()
        .filter(|i| !is_terminating(i) && !evicted.contains(&instance_key(i)))
        .partition(|i| is_from(i, &hash));
    let mut live = Live { new, old };
    let spec = &deployment.spec;
    let replicas = usize::try_from(spec.replicas.max(0)).unwrap_or(0);
    let limits = RolloutLimits::of(spec);
    let available = |i: &Instance| is_available(i, spec.min_ready_seconds, now);
    if spec.strategy.type_ == StrategyType::Canary && !spec.paused {
        let inputs = super::canary::Inputs {
            hash: &hash,
            available: &available,
            traffic,
            now,
        };
        super::canary::reconcile_canary(deployment, live, &inputs, new_name, plan);
        return;
    }
    // Instances stopping within their grace period may still serve: they
    // count toward `replicas + maxSurge`.
    let stopping = owned
        .iter()
        .filter(|i| is_terminating(i) && may_serve(i) && !evicted.contains(&instance_key(i)))
        .count();
    let step = if spec.paused {
        scale_paused(&mut live, replicas, limits)
    } else {
        match spec.strategy.type_ {
            StrategyType::RollingUpdate => {
                roll(&mut live, &hash, replicas, limits, stopping, &available)
            }
            // Handled above.
            StrategyType::Canary => Step::default(),
            StrategyType::Recreate => {
                // Terminating and just evicted old instances count: they
                // may still be serving.
                let old_remains = owned.iter().any(|i| !is_from(i, &hash));
                recreate(&mut live, replicas, old_remains, &available)
            }
        }
    };
    for instance in &step.terminate {
        terminate(instance, now, plan);
    }
    for _ in 0..step.create {
        let instance = match step.model {
            Some(model) => instance_like(deployment, model, new_name),
            None => new_instance(deployment, &hash, new_name),
        };
        plan.commands.push(Command::Create(Box::new(instance)));
    }
    let acted = !step.terminate.is_empty() || step.create > 0;
    let status = next_status(deployment, &hash, &live, acted, &available, limits, now);
    if deployment.status.as_ref() != Some(&status) {
        let mut updated = deployment.clone();
        updated.status = Some(status);
        plan.commands.push(Command::Update {
            seen: rv(&deployment.metadata),
            object: Box::new(Object::Deployment(Box::new(updated))),
        });
    }
}

/// Whether a terminating instance may still be serving: it was placed
/// and ready when last reported, and not taken off a lost or tainted
/// node (whose instances the node fences itself).
fn may_serve(instance: &Instance) -> bool {
    instance.spec.node_name.is_some()
        && instance.status.ready
        && instance.status.reason != super::REASON_TAINT_EVICTION
}

/// The order in which surplus instances are terminated: unplaced first,
/// then not running, then the newest.
fn surplus_rank(instance: &Instance) -> (u8, std::cmp::Reverse<Option<Timestamp>>) {
    let stage = match instance.status.phase {
        Phase::Pending => 0,
        Phase::Failed => 1,
        Phase::Scheduled | Phase::Starting => 2,
        _ => 3,
    };
    (
        stage,
        std::cmp::Reverse(instance.metadata.creation_timestamp),
    )
}

/// The order in which a scale-down takes instances: unavailable ones
/// first, then as [`surplus_rank`].
pub(super) fn scale_down_rank(
    available: &dyn Fn(&Instance) -> bool,
) -> impl Fn(&Instance) -> (bool, u8, std::cmp::Reverse<Option<Timestamp>>) {
    move |i| {
        let (stage, newest) = surplus_rank(i);
        (available(i), stage, newest)
    }
}

/// RollingUpdate, as Kubernetes' `rolloutRolling` with instances for
/// replica sets: new instances are created while the total stays within
/// `replicas + maxSurge`, and old ones terminated while at least
/// `replicas - maxUnavailable` stay available. Without old instances this
/// is a plain scale to `replicas`. The `stopping` instances (terminating
/// but perhaps still serving) and the ready ones this pass terminates
/// count toward `replicas + maxSurge` until they are gone.
fn roll<'a>(
    live: &mut Live<'a>,
    hash: &str,
    replicas: usize,
    limits: RolloutLimits,
    stopping: usize,
    available: &dyn Fn(&Instance) -> bool,
) -> Step<'a> {
    let mut step = Step::default();
    let rank = scale_down_rank(available);
    if live.new.len() > replicas {
        let excess = live.new.len() - replicas;
        step.terminate.extend(take(&mut live.new, excess, &rank));
    }
    // Above the surge, after a scale-down mid-rollout: unavailable before
    // available, old before new (they go anyway), then as a scale-down.
    let ceiling = replicas.saturating_add(limits.max_surge);
    if live.total() > ceiling {
        let excess = live.total() - ceiling;
        let mut all: Vec<&Instance> = live.old.drain(..).chain(live.new.drain(..)).collect();
        step.terminate.extend(take(&mut all, excess, |i| {
            let (serving, stage, newest) = rank(i);
            (serving, is_from(i, hash), stage, newest)
        }));
        (live.new, live.old) = all.into_iter().partition(|i| is_from(i, hash));
    }
    // Old instances that are not available cost no availability. As in
    // Kubernetes' cleanup of unhealthy replicas, they may go as long as
    // the instances left, less the new ones not yet available, make the
    // minimum: old instances that never became available do not block
    // the rollout, nor do they all go at once.
    let min_available = limits.min_available(replicas);
    let new_unavailable = live.new.iter().filter(|i| !available(i)).count();
    let total = live.total();
    let (mut usable, mut broken): (Vec<&Instance>, Vec<&Instance>) =
        live.old.drain(..).partition(|i| available(i));
    let budget = total.saturating_sub(min_available.saturating_add(new_unavailable));
    step.terminate
        .extend(take(&mut broken, budget, surplus_rank));
    // Then the oldest available ones, while the minimum stays available.
    let still_available = usable.len() + live.new.len() - new_unavailable;
    let spare = still_available.saturating_sub(min_available);
    step.terminate
        .extend(take(&mut usable, spare, oldest_first));
    live.old = broken;
    live.old.append(&mut usable);
    let stopped_serving = step.terminate.iter().filter(|i| is_ready(i)).count();
    let serving = live
        .total()
        .saturating_add(stopping)
        .saturating_add(stopped_serving);
    step.create = replicas
        .saturating_sub(live.new.len())
        .min(ceiling.saturating_sub(serving));
    step
}

/// Recreate: every old instance is terminated, and new ones are created
/// only once no old instance exists at all, terminating ones included.
fn recreate<'a>(
    live: &mut Live<'a>,
    replicas: usize,
    old_remains: bool,
    available: &dyn Fn(&Instance) -> bool,
) -> Step<'a> {
    let mut step = Step::default();
    step.terminate.append(&mut live.old);
    if live.new.len() > replicas {
        let excess = live.new.len() - replicas;
        step.terminate
            .extend(take(&mut live.new, excess, scale_down_rank(available)));
    }
    if !old_remains {
        step.create = replicas.saturating_sub(live.new.len());
    }
    step
}

/// Paused: no rollout step, only `replicas` applied to the instances
/// there are, to the new ones if any, else to the old ones (creations
/// copy the newest old instance). A mix of both may keep its surge, as
/// Kubernetes lets several replica sets keep theirs; a Deployment with no
/// instance at all gets none until resumed, as in Kubernetes.
fn scale_paused<'a>(live: &mut Live<'a>, replicas: usize, limits: RolloutLimits) -> Step<'a> {
    let mut step = Step::default();
    let ceiling = |live: &Live| {
        if live.new.is_empty() || live.old.is_empty() {
            replicas
        } else {
            replicas.saturating_add(limits.max_surge)
        }
    };
    let excess = live.total().saturating_sub(ceiling(live));
    let from_new = excess.min(live.new.len());
    step.terminate
        .extend(take(&mut live.new, from_new, surplus_rank));
    let excess = live.total().saturating_sub(ceiling(live));
    step.terminate
        .extend(take(&mut live.old, excess, surplus_rank));
    if live.total() < replicas {
        if live.new.is_empty() {
            step.model = live.old.iter().copied().max_by_key(|i| oldest_first(i));
            if step.model.is_none() {
                return step;
            }
        }
        step.create = replicas - live.total();
    }
    step
}

pub(super) fn new_instance(
    deployment: &Deployment,
    hash: &str,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Instance {
    let mut labels: BTreeMap<String, String> = deployment.spec.template.metadata.labels.clone();
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    let mut spec = deployment.spec.template.spec.clone();
    spec.node_name = None;
    Instance {
        api_version: API_VERSION.into(),
        kind: Kind::Instance.as_str().into(),
        metadata: ObjectMeta {
            name: new_name(&deployment.metadata.name),
            namespace: deployment.metadata.namespace.clone(),
            labels,
            owner_references: vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: Kind::Deployment.as_str().into(),
                name: deployment.metadata.name.clone(),
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
            }],
            ..ObjectMeta::default()
        },
        spec,
        status: InstanceStatus::default(),
    }
}

/// A new instance with `model`'s template (its labels, hash included, and
/// spec), for a paused Deployment scaling instances of an old template.
fn instance_like(
    deployment: &Deployment,
    model: &Instance,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Instance {
    let mut instance = new_instance(deployment, "", new_name);
    instance.metadata.labels = model.metadata.labels.clone();
    instance.spec = model.spec.clone();
    instance.spec.node_name = None;
    instance
}
