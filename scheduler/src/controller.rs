//! Controllers: from a snapshot of the cluster to a [`Plan`] of writes.
//!
//! **Architecture Invariant:** this module does no I/O and reads no clock:
//! `now`, node liveness and the name generator come in as arguments, and the
//! result is a list of [`Command`]s that the reconciler applies in one store
//! transaction, each guarded by the `resourceVersion` it was computed from.
//!
//! What runs here, in order:
//! 1. node lifecycle: a node not heard from for the grace period turns
//!    NotReady, one heard from again turns Ready;
//! 2. Deployments: create or terminate Instances to match `replicas`, roll
//!    a new template out by the Deployment's `strategy` (RollingUpdate
//!    within `maxSurge` and `maxUnavailable`, or Recreate), keep the
//!    revision history, and update `status` with its conditions;
//! 3. garbage collection: instances whose Deployment is gone terminate, and
//!    terminating instances are removed once their node no longer runs them;
//! 4. placement ([`crate::placement`]): instances on nodes with `NoExecute`
//!    taints they do not tolerate are terminated, pending instances are
//!    bound (or left Pending with the reason), and preemption victims go
//!    back to Pending.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use berth_api::quantity::{parse_cpu, parse_memory};
use berth_api::rollout::{DeploymentCondition, IntOrPercent, Revision, StrategyType};
use berth_api::scheduling::{Taint, TaintEffect};
use berth_api::{
    API_VERSION, Deployment, DeploymentSpec, DeploymentStatus, Instance, InstanceSpec,
    InstanceStatus, InstanceTemplate, Kind, Node, NodeCondition, Object, ObjectMeta,
    OwnerReference, Phase,
};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::placement::{
    self, BoundInstance, Demand, Framework, Outcome, PendingInstance, Runtime, Snapshot,
};
use crate::store::key;

/// The label carrying the hash of the template an instance was made from.
pub const TEMPLATE_HASH_LABEL: &str = "berth.dev/template-hash";

/// How long a terminating instance may wait for its node to confirm it
/// stopped before the scheduler removes it anyway.
pub const TERMINATION_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);

/// `status.reason` of an instance no node can take.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// `status.reason` of an instance evicted for a higher-priority one.
pub const REASON_PREEMPTED: &str = "Preempted";

/// `status.reason` of an instance evicted by a `NoExecute` taint.
pub const REASON_TAINT_EVICTION: &str = "TaintEviction";

/// One write the reconciler should make. Every command naming an existing
/// object carries the `resourceVersion` it saw; the write is skipped if the
/// object changed since.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Store a new instance.
    Create(Box<Instance>),
    /// Replace an object (status updates, bindings, terminations).
    Update {
        /// The `resourceVersion` the change was computed from.
        seen: String,
        /// The object as it should be.
        object: Box<Object>,
    },
    /// Remove an object.
    Remove {
        /// Its key.
        key: String,
        /// The `resourceVersion` the removal was decided on.
        seen: String,
    },
}

/// The commands of one reconcile pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// In the order they should be applied.
    pub commands: Vec<Command>,
}

/// What the scheduler knows of a node from its connection, outside the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Last heartbeat, or when the scheduler started if none came since.
    pub last_heard: Option<Timestamp>,
    /// The instance uids the node said it holds in its last report, if it
    /// reported since the scheduler started.
    pub reported: Option<HashSet<String>>,
}

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A node silent this long turns NotReady.
    pub node_grace: SignedDuration,
    /// When the scheduler started: nodes not yet heard count from here.
    pub started: Timestamp,
    /// Extra time nodes get after a scheduler start to notice the old
    /// connection is gone and reconnect (their QUIC idle timeout).
    pub reconnect_allowance: SignedDuration,
    /// The placement plugins, from the config file's `placement:`.
    pub placement: Framework,
}

/// The typed objects of one snapshot.
#[derive(Debug, Default)]
pub struct View {
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Nodes.
    pub nodes: Vec<Node>,
}

impl View {
    /// Sorts a snapshot's objects by kind.
    pub fn new(objects: Vec<Object>) -> View {
        let mut view = View::default();
        for object in objects {
            match object {
                Object::Deployment(d) => view.deployments.push(*d),
                Object::Instance(i) => view.instances.push(*i),
                Object::Node(n) => view.nodes.push(*n),
                Object::Namespace(_) | Object::PriorityClass(_) | Object::Event(_) => {}
            }
        }
        view
    }
}

fn rv(meta: &ObjectMeta) -> String {
    meta.resource_version.clone().unwrap_or_default()
}

/// The Deployment owning `instance`, by uid.
pub fn owner_uid(instance: &Instance) -> Option<&str> {
    instance
        .metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::Deployment.as_str())
        .map(|r| r.uid.as_str())
}

/// A short stable hash of a Deployment's template.
pub fn template_hash(deployment: &Deployment) -> String {
    let bytes = serde_json::to_vec(&deployment.spec.template).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

/// The resources an instance requests, for placement.
pub fn demand(spec: &InstanceSpec) -> Demand {
    let requests = &spec.resources.requests;
    Demand {
        cpu_millis: requests
            .cpu
            .as_ref()
            .and_then(|q| parse_cpu(&q.0).ok())
            .unwrap_or(0),
        memory_bytes: requests
            .memory
            .as_ref()
            .and_then(|q| parse_memory(&q.0).ok())
            .unwrap_or(0),
    }
}

fn is_terminating(instance: &Instance) -> bool {
    instance.metadata.deletion_timestamp.is_some()
}

fn instance_key(instance: &Instance) -> String {
    key(
        Kind::Instance,
        Some(instance.metadata.namespace_or_default()),
        &instance.metadata.name,
    )
}

/// Computes the controllers' plan. `component_imports` maps a component
/// digest to the interfaces it imports (for the `Runtime` filter; a
/// component missing from it imports nothing). `new_name` turns a Deployment
/// name into a fresh instance name (the caller supplies the randomness).
pub fn reconcile(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    component_imports: &HashMap<String, BTreeSet<String>>,
    settings: &Settings,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Plan {
    let mut plan = Plan::default();
    let ready = node_lifecycle(view, liveness, settings, now, &mut plan);
    evict(view, &ready, now, &mut plan);
    // Instances this pass already terminates (evicted) count as gone, so
    // their Deployments replace them in the same pass.
    let evicted = terminated_by(&plan);
    for deployment in &view.deployments {
        reconcile_deployment(deployment, view, &evicted, now, new_name, &mut plan);
    }
    collect_garbage(view, liveness, &ready, now, &mut plan);
    place(
        view,
        &ready,
        component_imports,
        &settings.placement,
        now,
        &mut plan,
    );
    plan
}

/// Turns nodes Ready or NotReady by heartbeat; returns each node's readiness
/// after this pass.
fn node_lifecycle(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    settings: &Settings,
    now: Timestamp,
    plan: &mut Plan,
) -> HashMap<String, bool> {
    let mut ready = HashMap::new();
    for node in &view.nodes {
        let heard = liveness.get(&node.metadata.name).and_then(|l| l.last_heard);
        let alive = match heard {
            Some(heard) => now.duration_since(heard) <= settings.node_grace,
            None => {
                now.duration_since(settings.started)
                    <= settings.node_grace + settings.reconnect_allowance
            }
        };
        let connected = liveness.contains_key(&node.metadata.name);
        // Ready needs a live connection; a node merely inside its grace
        // period after a scheduler restart keeps whatever it had.
        let want = if connected {
            alive
        } else {
            alive && node.status.is_ready()
        };
        ready.insert(node.metadata.name.clone(), want);
        let taints = taints_after(node, want, now);
        if want != node.status.is_ready() || taints != node.spec.taints {
            let mut updated = node.clone();
            updated.spec.taints = taints;
            updated.status.conditions = vec![NodeCondition {
                type_: "Ready".into(),
                status: if want { "True" } else { "Unknown" }.into(),
                reason: if want {
                    "NodeReady"
                } else {
                    "NodeStatusUnknown"
                }
                .into(),
                last_transition_time: Some(now),
            }];
            plan.commands.push(Command::Update {
                seen: rv(&node.metadata),
                object: Box::new(Object::Node(Box::new(updated))),
            });
        }
    }
    ready
}

/// The taint the node lifecycle puts on a node that is not Ready.
pub const UNREACHABLE_TAINT: &str = "berth.dev/unreachable";

fn is_unreachable_taint(taint: &Taint) -> bool {
    taint.key == UNREACHABLE_TAINT && taint.effect == TaintEffect::NoExecute
}

/// A node's taints given its readiness after this pass: a node that is not
/// Ready carries the unreachable NoExecute taint, so the instances on it
/// that do not tolerate it are evicted and replaced elsewhere in the same
/// pass (Kubernetes' taint-based eviction); a Ready node does not.
fn taints_after(node: &Node, ready: bool, now: Timestamp) -> Vec<Taint> {
    let existing = node.spec.taints.iter().find(|t| is_unreachable_taint(t));
    let mut taints: Vec<Taint> = node
        .spec
        .taints
        .iter()
        .filter(|t| !is_unreachable_taint(t))
        .cloned()
        .collect();
    if !ready {
        taints.push(existing.cloned().unwrap_or_else(|| Taint {
            key: UNREACHABLE_TAINT.into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            time_added: Some(now),
        }));
    }
    taints
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

fn terminate(instance: &Instance, now: Timestamp, plan: &mut Plan) {
    let mut updated = instance.clone();
    updated.metadata.deletion_timestamp = Some(now);
    updated.status.phase = Phase::Terminating;
    plan.commands.push(Command::Update {
        seen: rv(&instance.metadata),
        object: Box::new(Object::Instance(Box::new(updated))),
    });
}

/// [`terminate`], saying why in the status.
fn terminate_because(
    instance: &Instance,
    now: Timestamp,
    reason: &str,
    message: String,
    plan: &mut Plan,
) {
    let mut explained = instance.clone();
    explained.status.reason = reason.to_owned();
    explained.status.message = message;
    terminate(&explained, now, plan);
}

/// The Deployment condition that tells whether enough instances serve.
pub const CONDITION_AVAILABLE: &str = "Available";

/// The Deployment condition that tells how its rollout goes.
pub const CONDITION_PROGRESSING: &str = "Progressing";

/// `Available` reason: at least `replicas - maxUnavailable` are available.
pub const REASON_MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";

/// `Available` reason: fewer than `replicas - maxUnavailable` are available.
pub const REASON_MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// `Progressing` reason: every replica runs the current template and is
/// available (Kubernetes' name, though berth has no ReplicaSets).
pub const REASON_NEW_REVISION_AVAILABLE: &str = "NewReplicaSetAvailable";

/// `Progressing` reason: the rollout is under way.
pub const REASON_REVISION_UPDATED: &str = "ReplicaSetUpdated";

/// `Progressing` reason: nothing progressed for `progressDeadlineSeconds`.
pub const REASON_PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// `Progressing` reason: `spec.paused`.
pub const REASON_DEPLOYMENT_PAUSED: &str = "DeploymentPaused";

/// `progressDeadlineSeconds` when the spec leaves it out, as Kubernetes.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

/// `revisionHistoryLimit` when the spec leaves it out, as Kubernetes.
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 10;

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

/// Whether `instance` counts as available: Running for at least
/// `min_ready_seconds` (a Running instance without a start time counts
/// only when no wait is asked).
pub fn is_available(instance: &Instance, min_ready_seconds: u32, now: Timestamp) -> bool {
    let wait = SignedDuration::from_secs(i64::from(min_ready_seconds));
    instance.status.phase == Phase::Running
        && (min_ready_seconds == 0
            || instance
                .status
                .start_time
                .is_some_and(|started| now.duration_since(started) >= wait))
}

fn is_from(instance: &Instance, hash: &str) -> bool {
    instance
        .metadata
        .labels
        .get(TEMPLATE_HASH_LABEL)
        .is_some_and(|h| h == hash)
}

/// A Deployment's live instances (neither terminating nor evicted by this
/// pass): `new` are made from the current template, `old` from any other.
struct Live<'a> {
    new: Vec<&'a Instance>,
    old: Vec<&'a Instance>,
}

impl Live<'_> {
    fn total(&self) -> usize {
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
fn take<'a, K: Ord>(
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

fn reconcile_deployment(
    deployment: &Deployment,
    view: &View,
    evicted: &HashSet<String>,
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
    let step = if spec.paused {
        scale_paused(&mut live, replicas, limits)
    } else {
        match spec.strategy.type_ {
            StrategyType::RollingUpdate => roll(&mut live, &hash, replicas, limits, &available),
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

/// The order in which a scale-down takes instances: unavailable ones
/// first, then as [`surplus_rank`].
fn scale_down_rank(
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
/// is a plain scale to `replicas`.
fn roll<'a>(
    live: &mut Live<'a>,
    hash: &str,
    replicas: usize,
    limits: RolloutLimits,
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
    step.create = replicas
        .saturating_sub(live.new.len())
        .min(ceiling.saturating_sub(live.total()));
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

/// The status after this pass: counts of the instances left live (the
/// ones created this pass are not stored yet), the revision history and
/// the conditions.
fn next_status(
    deployment: &Deployment,
    hash: &str,
    live: &Live,
    acted: bool,
    available: &dyn Fn(&Instance) -> bool,
    limits: RolloutLimits,
    now: Timestamp,
) -> DeploymentStatus {
    let spec = &deployment.spec;
    let before = deployment.status.as_ref();
    let history = record_revision(
        before.map_or(&[], |s| s.history.as_slice()),
        hash,
        &spec.template,
        spec.revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT),
    );
    let revision = history.last().map_or(0, |r| r.revision);
    let all = || live.new.iter().chain(&live.old);
    let replicas = live.total() as u64;
    let updated = live.new.len() as u64;
    let ready = all().filter(|i| i.status.phase == Phase::Running).count() as u64;
    let available_count = all().filter(|i| available(i)).count() as u64;
    let wanted = u64::try_from(spec.replicas.max(0)).unwrap_or(0);
    let wanted_usize = usize::try_from(wanted).unwrap_or(usize::MAX);
    let min_available = limits.min_available(wanted_usize) as u64;
    // Kubernetes' `DeploymentProgressing`: more instances updated, ready
    // or available than last written, or a new revision.
    let progressed = acted
        || before.is_none_or(|s| {
            s.revision != revision
                || updated > s.updated_replicas
                || ready > s.ready_replicas
                || available_count > s.available_replicas
        });
    let complete = updated == wanted && replicas == wanted && available_count == wanted;
    let previous =
        |type_: &str| before.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    let deadline = SignedDuration::from_secs(i64::from(
        spec.progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
    ));
    let progressing = progressing_condition(
        previous(CONDITION_PROGRESSING),
        Progress {
            paused: spec.paused,
            complete,
            progressed,
            deadline,
            revision,
        },
        now,
    );
    let has_minimum = available_count >= min_available;
    let (status, reason, message) = if has_minimum {
        (
            "True",
            REASON_MINIMUM_REPLICAS_AVAILABLE,
            "deployment has minimum availability",
        )
    } else {
        (
            "False",
            REASON_MINIMUM_REPLICAS_UNAVAILABLE,
            "deployment does not have minimum availability",
        )
    };
    let since = previous(CONDITION_AVAILABLE)
        .filter(|c| c.status == status)
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    let available_condition = condition(CONDITION_AVAILABLE, status, reason, message.into(), since);
    DeploymentStatus {
        observed_generation: deployment.metadata.generation.unwrap_or(0),
        replicas,
        updated_replicas: updated,
        ready_replicas: ready,
        available_replicas: available_count,
        unavailable_replicas: replicas.saturating_sub(available_count),
        revision,
        conditions: vec![available_condition, progressing],
        history,
    }
}

/// What the `Progressing` condition is decided from.
struct Progress {
    paused: bool,
    complete: bool,
    progressed: bool,
    deadline: SignedDuration,
    revision: u64,
}

/// `Progressing`: `lastUpdateTime` is when the rollout last progressed;
/// past the deadline without progress it turns False. A condition that
/// keeps its reason keeps its time, so a pass with nothing new writes
/// nothing.
fn progressing_condition(
    previous: Option<&DeploymentCondition>,
    progress: Progress,
    now: Timestamp,
) -> DeploymentCondition {
    let revision = progress.revision;
    let since = |reason: &str| {
        previous
            .filter(|c| c.reason == reason)
            .and_then(|c| c.last_update_time)
            .unwrap_or(now)
    };
    if progress.paused {
        let reason = REASON_DEPLOYMENT_PAUSED;
        let message = "deployment is paused".to_owned();
        return condition(
            CONDITION_PROGRESSING,
            "Unknown",
            reason,
            message,
            since(reason),
        );
    }
    if progress.complete {
        let reason = REASON_NEW_REVISION_AVAILABLE;
        let message = format!("revision {revision} has successfully progressed");
        return condition(
            CONDITION_PROGRESSING,
            "True",
            reason,
            message,
            since(reason),
        );
    }
    // The clock restarts on progress, and when a rollout starts after a
    // complete one or a pause.
    let last = previous
        .filter(|c| {
            !progress.progressed
                && [REASON_REVISION_UPDATED, REASON_PROGRESS_DEADLINE_EXCEEDED]
                    .contains(&c.reason.as_str())
        })
        .and_then(|c| c.last_update_time)
        .unwrap_or(now);
    if now.duration_since(last) > progress.deadline {
        let message = format!("revision {revision} has timed out progressing");
        let reason = REASON_PROGRESS_DEADLINE_EXCEEDED;
        condition(CONDITION_PROGRESSING, "False", reason, message, last)
    } else {
        let message = format!("revision {revision} is progressing");
        condition(
            CONDITION_PROGRESSING,
            "True",
            REASON_REVISION_UPDATED,
            message,
            last,
        )
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    since: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_update_time: Some(since),
    }
}

/// `history` with the current template as its newest entry. A template
/// seen before (a rollback) moves to the end with the next number, as
/// Kubernetes renumbers the replica set it scales back up; a new one is
/// appended. At most `limit` entries besides the current one are kept.
fn record_revision(
    history: &[Revision],
    hash: &str,
    template: &InstanceTemplate,
    limit: u32,
) -> Vec<Revision> {
    let mut history = history.to_vec();
    if history.last().is_none_or(|r| r.template_hash != hash) {
        let next = history.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let entry = match history.iter().position(|r| r.template_hash == hash) {
            Some(index) => Revision {
                revision: next,
                ..history.remove(index)
            },
            None => Revision {
                revision: next,
                template_hash: hash.to_owned(),
                template: template.clone(),
                change_cause: change_cause(history.last(), template),
            },
        };
        history.push(entry);
    }
    let keep = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let excess = history.len().saturating_sub(keep);
    history.drain(..excess);
    history
}

/// Longest component digest prefix a change cause shows
/// (`sha256:` and 12 hex digits).
const CHANGE_CAUSE_DIGEST_LEN: usize = 19;

/// `component sha256:0123456789ab` when the component changed since the
/// previous revision (or there is none), else `template changed`.
fn change_cause(previous: Option<&Revision>, template: &InstanceTemplate) -> String {
    let component = &template.spec.component;
    if previous.is_some_and(|r| r.template.spec.component == *component) {
        "template changed".into()
    } else {
        let prefix: String = component.chars().take(CHANGE_CAUSE_DIGEST_LEN).collect();
        format!("component {prefix}")
    }
}

fn new_instance(
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

fn collect_garbage(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    ready: &HashMap<String, bool>,
    now: Timestamp,
    plan: &mut Plan,
) {
    let owners: HashSet<&str> = view
        .deployments
        .iter()
        .filter_map(|d| d.metadata.uid.as_deref())
        .collect();
    let terminated = terminated_by(plan);
    for instance in &view.instances {
        let Some(since) = instance.metadata.deletion_timestamp else {
            if owner_uid(instance).is_none_or(|uid| !owners.contains(uid))
                && !terminated.contains(&instance_key(instance))
            {
                terminate(instance, now, plan);
            }
            continue;
        };
        let uid = instance.metadata.uid.as_deref().unwrap_or_default();
        let stopped = match instance.spec.node_name.as_deref() {
            None => true,
            Some(node) if !ready.get(node).copied().unwrap_or(false) => true,
            Some(node) => liveness
                .get(node)
                .and_then(|l| l.reported.as_ref())
                .is_some_and(|held| !held.contains(uid)),
        };
        if stopped || now.duration_since(since) > TERMINATION_TIMEOUT {
            plan.commands.push(Command::Remove {
                key: instance_key(instance),
                seen: rv(&instance.metadata),
            });
        }
    }
}

/// The keys of the instances `plan` already terminates.
fn terminated_by(plan: &Plan) -> HashSet<String> {
    plan.commands
        .iter()
        .filter_map(|command| match command {
            Command::Update { object, .. } => match &**object {
                Object::Instance(i) if is_terminating(i) => Some(instance_key(i)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The cluster as placement sees it: every node with its readiness after
/// this pass, and every bound instance, terminating ones included (they
/// hold their room until removed).
fn snapshot(
    view: &View,
    ready: &HashMap<String, bool>,
    terminated: &HashSet<String>,
    now: Timestamp,
) -> Snapshot {
    let nodes = view
        .nodes
        .iter()
        .map(|node| {
            let ready = ready.get(&node.metadata.name).copied().unwrap_or(false);
            (node, ready)
        })
        .map(|(node, ready)| placement::NodeInfo {
            name: node.metadata.name.clone(),
            labels: node.metadata.labels.clone(),
            taints: taints_after(node, ready, now),
            unschedulable: node.spec.unschedulable,
            ready,
            runtimes: node.status.runtimes.clone(),
            interfaces: node.status.interfaces.clone(),
            components: node.status.components.clone(),
            allocatable: node.status.allocatable,
            max_instances: node.status.max_instances,
        })
        .collect();
    let bound = view
        .instances
        .iter()
        .filter_map(|instance| {
            let node = instance.spec.node_name.clone()?;
            let key = instance_key(instance);
            Some(BoundInstance {
                terminating: is_terminating(instance) || terminated.contains(&key),
                key,
                node,
                namespace: instance.metadata.namespace_or_default().to_owned(),
                labels: instance.metadata.labels.clone(),
                demand: demand(&instance.spec),
                priority: instance.spec.priority.unwrap_or(0),
                tolerations: instance.spec.tolerations.clone(),
                affinity: instance.spec.affinity.clone(),
            })
        })
        .collect();
    Snapshot { nodes, bound }
}

/// What placement needs of a pending instance. Its `nodeName` is its
/// Deployment's: instances are created without one.
fn pending_instance(
    instance: &Instance,
    owners: &HashMap<&str, &Deployment>,
    component_imports: &HashMap<String, BTreeSet<String>>,
) -> PendingInstance {
    let spec = &instance.spec;
    PendingInstance {
        key: instance_key(instance),
        namespace: instance.metadata.namespace_or_default().to_owned(),
        labels: instance.metadata.labels.clone(),
        demand: demand(spec),
        runtime: Runtime::Wasm,
        imports: component_imports
            .get(&spec.component)
            .cloned()
            .unwrap_or_default(),
        component: spec.component.clone(),
        node_name: owner_uid(instance)
            .and_then(|uid| owners.get(uid))
            .and_then(|owner| owner.spec.template.spec.node_name.clone()),
        node_selector: spec.node_selector.clone(),
        affinity: spec.affinity.clone(),
        tolerations: spec.tolerations.clone(),
        topology_spread_constraints: spec.topology_spread_constraints.clone(),
        priority: spec.priority.unwrap_or(0),
        preemption_policy: spec.preemption_policy.unwrap_or_default(),
    }
}

fn place(
    view: &View,
    ready: &HashMap<String, bool>,
    component_imports: &HashMap<String, BTreeSet<String>>,
    framework: &Framework,
    now: Timestamp,
    plan: &mut Plan,
) {
    // Instances this pass terminates are not placed: the resourceVersion
    // guard would drop their binding, but placing them would first take
    // room from the instances placed after them. Nor are they evicted or
    // preempted again.
    let terminated = terminated_by(plan);
    let by_key: HashMap<String, &Instance> = view
        .instances
        .iter()
        .map(|i| (instance_key(i), i))
        .collect();
    let snapshot = snapshot(view, ready, &terminated, now);

    let owners: HashMap<&str, &Deployment> = view
        .deployments
        .iter()
        .filter_map(|d| Some((d.metadata.uid.as_deref()?, d)))
        .collect();
    let mut pending: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| {
            i.spec.node_name.is_none()
                && !is_terminating(i)
                && !terminated.contains(&instance_key(i))
        })
        .collect();
    pending.sort_by_key(|i| (i.metadata.creation_timestamp, i.metadata.name.clone()));
    let inputs: Vec<PendingInstance> = pending
        .iter()
        .map(|i| pending_instance(i, &owners, component_imports))
        .collect();
    let outcome = framework.place(&snapshot, &inputs);
    apply_outcome(&outcome, &pending, &inputs, &by_key, plan);
}

/// Terminates the instances on nodes with NoExecute taints they do not
/// tolerate (after their `tolerationSeconds`), including the unreachable
/// taint of nodes that are not Ready: their Deployments replace them.
fn evict(view: &View, ready: &HashMap<String, bool>, now: Timestamp, plan: &mut Plan) {
    let terminated = terminated_by(plan);
    let snapshot = snapshot(view, ready, &terminated, now);
    let by_key: HashMap<String, &Instance> = view
        .instances
        .iter()
        .map(|i| (instance_key(i), i))
        .collect();
    for eviction in placement::no_execute_evictions(&snapshot, now) {
        let Some(instance) = by_key.get(&eviction.key) else {
            continue;
        };
        let message = format!(
            "node {} has taint {} that the instance does not tolerate",
            eviction.node, eviction.taint
        );
        terminate_because(instance, now, REASON_TAINT_EVICTION, message, plan);
    }
}

/// Victims go back to Pending first, then bindings and reasons in the
/// order the instances were pending.
fn apply_outcome(
    outcome: &Outcome,
    pending: &[&Instance],
    inputs: &[PendingInstance],
    by_key: &HashMap<String, &Instance>,
    plan: &mut Plan,
) {
    for preemption in &outcome.preemptions {
        let preemptor = by_key
            .get(&preemption.preemptor)
            .map_or(preemption.preemptor.as_str(), |i| i.metadata.name.as_str());
        for victim in preemption.victims.iter().filter_map(|key| by_key.get(key)) {
            let mut updated = (*victim).clone();
            updated.spec.node_name = None;
            updated.status = InstanceStatus {
                phase: Phase::Pending,
                reason: REASON_PREEMPTED.into(),
                message: format!("preempted by {preemptor} on {}", preemption.node),
                start_time: None,
            };
            plan.commands.push(Command::Update {
                seen: rv(&victim.metadata),
                object: Box::new(Object::Instance(Box::new(updated))),
            });
        }
    }
    let bindings: HashMap<&str, &str> = outcome
        .bindings
        .iter()
        .map(|b| (b.key.as_str(), b.node.as_str()))
        .collect();
    let unschedulable: HashMap<&str, &str> = outcome
        .unschedulable
        .iter()
        .map(|u| (u.key.as_str(), u.message.as_str()))
        .collect();
    for (instance, input) in pending.iter().zip(inputs) {
        let mut updated = (*instance).clone();
        if let Some(node) = bindings.get(input.key.as_str()) {
            updated.spec.node_name = Some((*node).to_owned());
            updated.status = InstanceStatus {
                phase: Phase::Scheduled,
                ..InstanceStatus::default()
            };
        } else if let Some(message) = unschedulable.get(input.key.as_str()) {
            if instance.status.phase == Phase::Pending
                && instance.status.reason == REASON_UNSCHEDULABLE
                && instance.status.message == *message
            {
                continue;
            }
            updated.status = InstanceStatus {
                phase: Phase::Pending,
                reason: REASON_UNSCHEDULABLE.into(),
                message: (*message).to_owned(),
                start_time: None,
            };
        } else {
            continue;
        }
        plan.commands.push(Command::Update {
            seen: rv(&instance.metadata),
            object: Box::new(Object::Instance(Box::new(updated))),
        });
    }
}

#[cfg(test)]
mod tests {
    use berth_api::rollout::{DeploymentStrategy, RollingUpdate};
    use berth_api::scheduling::{
        Affinity, AffinityTerm, InstanceAffinity, Selector, Taint, TaintEffect, Toleration,
    };
    use berth_api::{
        EnvVar, LabelSelector, NodeResources, NodeStatus, Quantity, ResourceList, Resources,
        TemplateMeta,
    };

    use super::*;
    use crate::nodes::HOSTNAME_LABEL;
    use crate::store::object_key;

    const NS: &str = "prod";
    const GI: u64 = 1024 * 1024 * 1024;

    /// Seconds after an arbitrary epoch; every test runs at `t(1000)`.
    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn now() -> Timestamp {
        t(1000)
    }

    fn settings() -> Settings {
        Settings {
            node_grace: SignedDuration::from_secs(5),
            started: t(0),
            reconnect_allowance: SignedDuration::from_secs(10),
            placement: Framework::default(),
        }
    }

    fn template(component: &str, cpu: &str) -> InstanceTemplate {
        InstanceTemplate {
            metadata: TemplateMeta {
                labels: BTreeMap::from([("app".into(), "web".into())]),
            },
            spec: InstanceSpec {
                component: component.into(),
                env: vec![],
                resources: Resources {
                    requests: ResourceList {
                        cpu: (!cpu.is_empty()).then(|| Quantity(cpu.into())),
                        memory: None,
                    },
                    limits: ResourceList::default(),
                },
                node_name: None,
                ..InstanceSpec::default()
            },
        }
    }

    fn deployment(name: &str, replicas: i64) -> Deployment {
        Deployment {
            api_version: API_VERSION.into(),
            kind: Kind::Deployment.as_str().into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(NS.into()),
                uid: Some(format!("{name}-uid")),
                resource_version: Some("10".into()),
                generation: Some(2),
                creation_timestamp: Some(t(0)),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas,
                selector: LabelSelector::default(),
                template: template("sha256:v1", "100m"),
                strategy: DeploymentStrategy::default(),
                min_ready_seconds: 0,
                progress_deadline_seconds: None,
                revision_history_limit: None,
                paused: false,
            },
            status: None,
        }
    }

    /// An instance made from `owner`'s current template, as the controller
    /// would have made it and the reconciler stored it.
    fn instance(
        owner: &Deployment,
        name: &str,
        created: i64,
        phase: Phase,
        node: Option<&str>,
    ) -> Instance {
        let mut instance = new_instance(owner, &template_hash(owner), &mut |_| name.into());
        instance.metadata.uid = Some(format!("{name}-uid"));
        instance.metadata.resource_version = Some("20".into());
        instance.metadata.creation_timestamp = Some(t(created));
        instance.spec.node_name = node.map(Into::into);
        instance.status.phase = phase;
        instance
    }

    fn node(name: &str, ready: bool) -> Node {
        Node {
            api_version: API_VERSION.into(),
            kind: Kind::Node.as_str().into(),
            metadata: ObjectMeta {
                name: name.into(),
                labels: BTreeMap::from([(HOSTNAME_LABEL.to_owned(), name.to_owned())]),
                resource_version: Some("5".into()),
                ..ObjectMeta::default()
            },
            // A node that is not Ready carries the unreachable taint, as the
            // node lifecycle leaves it.
            spec: berth_api::scheduling::NodeSpec {
                taints: if ready {
                    Vec::new()
                } else {
                    vec![Taint {
                        key: UNREACHABLE_TAINT.into(),
                        value: String::new(),
                        effect: TaintEffect::NoExecute,
                        time_added: Some(t(0)),
                    }]
                },
                unschedulable: false,
            },
            status: NodeStatus {
                capacity: NodeResources {
                    cpu_millis: 2000,
                    memory_bytes: 4 * GI,
                },
                allocatable: NodeResources {
                    cpu_millis: 2000,
                    memory_bytes: 4 * GI,
                },
                runtimes: vec!["wasm".into()],
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "Unknown" }.into(),
                    reason: String::new(),
                    last_transition_time: Some(t(0)),
                }],
                ..NodeStatus::default()
            },
        }
    }

    /// A connected node heard just now, reporting these instance uids.
    fn reporting(uids: &[&str]) -> Liveness {
        Liveness {
            last_heard: Some(now()),
            reported: Some(uids.iter().map(|u| (*u).to_owned()).collect()),
        }
    }

    fn liveness(entries: &[(&str, Liveness)]) -> HashMap<String, Liveness> {
        entries
            .iter()
            .map(|(name, l)| ((*name).to_owned(), l.clone()))
            .collect()
    }

    /// Names `web-1`, `web-2`, ...: unique for the life of the closure.
    fn names() -> impl FnMut(&str) -> String {
        let mut count = 0;
        move |deployment| {
            count += 1;
            format!("{deployment}-{count}")
        }
    }

    fn run(view: &View, liveness: &HashMap<String, Liveness>) -> Plan {
        run_with(view, liveness, &settings())
    }

    fn run_with(view: &View, liveness: &HashMap<String, Liveness>, settings: &Settings) -> Plan {
        reconcile(
            view,
            liveness,
            &HashMap::new(),
            settings,
            now(),
            &mut names(),
        )
    }

    fn creates(plan: &Plan) -> Vec<&Instance> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::Create(i) => Some(&**i),
                _ => None,
            })
            .collect()
    }

    fn updated_instances(plan: &Plan) -> Vec<(&str, &Instance)> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::Update { seen, object } => match &**object {
                    Object::Instance(i) => Some((seen.as_str(), &**i)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn updated_nodes(plan: &Plan) -> Vec<(&str, &Node)> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::Update { seen, object } => match &**object {
                    Object::Node(n) => Some((seen.as_str(), &**n)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn updated_deployments(plan: &Plan) -> Vec<(&str, &Deployment)> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::Update { seen, object } => match &**object {
                    Object::Deployment(d) => Some((seen.as_str(), &**d)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Names of the instances the plan terminates, sorted.
    fn terminated(plan: &Plan) -> Vec<&str> {
        let mut names: Vec<&str> = updated_instances(plan)
            .into_iter()
            .filter(|(_, i)| i.metadata.deletion_timestamp.is_some())
            .map(|(_, i)| i.metadata.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// `(instance, node)` for every binding in the plan.
    fn bindings(plan: &Plan) -> Vec<(&str, &str)> {
        updated_instances(plan)
            .into_iter()
            .filter(|(_, i)| i.status.phase == Phase::Scheduled)
            .map(|(_, i)| {
                (
                    i.metadata.name.as_str(),
                    i.spec.node_name.as_deref().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn removed(plan: &Plan) -> Vec<&str> {
        plan.commands
            .iter()
            .filter_map(|c| match c {
                Command::Remove { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect()
    }

    fn key_of(name: &str) -> String {
        key(Kind::Instance, Some(NS), name)
    }

    fn command_key(command: &Command) -> String {
        match command {
            Command::Create(i) => object_key(&Object::Instance(i.clone())),
            Command::Update { object, .. } => object_key(object),
            Command::Remove { key, .. } => key.clone(),
        }
    }

    fn terminating(mut instance: Instance, since: Timestamp) -> Instance {
        instance.metadata.deletion_timestamp = Some(since);
        instance.status.phase = Phase::Terminating;
        instance
    }

    /// `sha256:v2` imports `wasi:http`; other components import nothing.
    fn component_imports() -> HashMap<String, BTreeSet<String>> {
        HashMap::from([(
            "sha256:v2".to_owned(),
            BTreeSet::from(["wasi:http/types@0.2.6".to_owned()]),
        )])
    }

    fn gpu_toleration() -> Toleration {
        Toleration {
            key: "gpu".into(),
            value: "true".into(),
            effect: Some(TaintEffect::NoSchedule),
            ..Toleration::default()
        }
    }

    /// Required anti-affinity to instances labelled `key=value`, per
    /// `topology_key` domain.
    fn anti_affinity(key: &str, value: &str, topology_key: &str) -> Affinity {
        Affinity {
            instance_anti_affinity: Some(InstanceAffinity {
                required_during_scheduling_ignored_during_execution: vec![AffinityTerm {
                    label_selector: Selector {
                        match_labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
                        match_expressions: vec![],
                    },
                    namespaces: vec![],
                    topology_key: topology_key.into(),
                }],
                preferred_during_scheduling_ignored_during_execution: vec![],
            }),
            ..Affinity::default()
        }
    }

    // 1. Scaling up.

    #[test]
    fn new_deployment_gets_its_replicas_created() {
        let web = deployment("web", 3);
        let view = View {
            deployments: vec![web.clone()],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&[]))]));

        let created = creates(&plan);
        assert_eq!(created.len(), 3, "{plan:#?}");
        let mut names: Vec<&str> = created.iter().map(|i| i.metadata.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["web-1", "web-2", "web-3"]);
        for instance in &created {
            assert_eq!(instance.metadata.namespace.as_deref(), Some(NS));
            assert_eq!(
                instance.metadata.labels.get(TEMPLATE_HASH_LABEL),
                Some(&template_hash(&web))
            );
            assert_eq!(
                instance.metadata.labels.get("app").map(String::as_str),
                Some("web")
            );
            assert_eq!(owner_uid(instance), Some("web-uid"));
            assert_eq!(instance.metadata.owner_references[0].name, "web");
            assert_eq!(instance.spec, web.spec.template.spec);
            assert_eq!(instance.status, InstanceStatus::default());
            assert_eq!(instance.kind, "Instance");
        }

        let deployments = updated_deployments(&plan);
        assert_eq!(deployments.len(), 1);
        let (seen, updated) = deployments[0];
        assert_eq!(seen, "10");
        let status = updated.status.clone().unwrap();
        assert_eq!(
            (status.observed_generation, status.replicas, status.revision),
            (2, 0, 1),
            "the instances created are not stored yet"
        );
        assert_eq!(
            status.history,
            [Revision {
                revision: 1,
                template_hash: template_hash(&web),
                template: web.spec.template.clone(),
                change_cause: "component sha256:v1".into(),
            }]
        );
        assert_eq!(
            status.conditions,
            [
                DeploymentCondition {
                    type_: CONDITION_AVAILABLE.into(),
                    status: "False".into(),
                    reason: REASON_MINIMUM_REPLICAS_UNAVAILABLE.into(),
                    message: "deployment does not have minimum availability".into(),
                    last_update_time: Some(now()),
                },
                DeploymentCondition {
                    type_: CONDITION_PROGRESSING.into(),
                    status: "True".into(),
                    reason: REASON_REVISION_UPDATED.into(),
                    message: "revision 1 is progressing".into(),
                    last_update_time: Some(now()),
                },
            ]
        );
        assert_eq!(updated.spec, web.spec);
        // Nothing else: the new instances are placed once they are stored.
        assert_eq!(plan.commands.len(), 4, "{plan:#?}");
    }

    #[test]
    fn created_instances_do_not_inherit_a_templated_node_name() {
        let mut web = deployment("web", 1);
        web.spec.template.spec.node_name = Some("n1".into());
        let view = View {
            deployments: vec![web],
            ..View::default()
        };
        let plan = run(&view, &HashMap::new());
        assert_eq!(creates(&plan)[0].spec.node_name, None);
    }

    #[test]
    fn negative_replicas_count_as_zero() {
        let web = deployment("web", -3);
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid"]))]));
        assert!(creates(&plan).is_empty());
        assert_eq!(terminated(&plan), ["a"]);
    }

    #[test]
    fn steady_deployment_produces_no_commands() {
        let web = deployment("web", 2);
        let view = View {
            instances: vec![
                instance(&web, "a", 1, Phase::Running, Some("n1")),
                instance(&web, "b", 2, Phase::Starting, Some("n1")),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let l = liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]);
        let plan = run(&view, &l);
        let status = updated_deployments(&plan)[0].1.status.clone().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.ready_replicas,
                status.available_replicas,
                status.unavailable_replicas
            ),
            (2, 2, 1, 1, 1)
        );
        // Status written, the same pass later is a no-op.
        let mut view = view;
        view.deployments[0].status = Some(status);
        let later = now() + SignedDuration::from_secs(30);
        let mut l = l;
        for node in l.values_mut() {
            node.last_heard = Some(later);
        }
        let plan = reconcile(&view, &l, &HashMap::new(), &settings(), later, &mut names());
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn status_follows_a_new_generation() {
        let mut web = deployment("web", 1);
        web.status = Some(DeploymentStatus {
            observed_generation: 1,
            replicas: 1,
            updated_replicas: 1,
            ready_replicas: 1,
            available_replicas: 1,
            ..DeploymentStatus::default()
        });
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid"]))]));
        let deployments = updated_deployments(&plan);
        assert_eq!(deployments.len(), 1, "{plan:#?}");
        assert_eq!(
            deployments[0]
                .1
                .status
                .as_ref()
                .map(|s| s.observed_generation),
            Some(2)
        );
    }

    // 2. Scaling down.

    #[test]
    fn scale_down_terminates_unplaced_instances_then_the_newest() {
        let web = deployment("web", 2);
        let view = View {
            instances: vec![
                instance(&web, "r1", 1, Phase::Running, Some("n1")),
                instance(&web, "r2", 3, Phase::Running, Some("n1")),
                instance(&web, "r3", 2, Phase::Running, Some("n1")),
                instance(&web, "p1", 0, Phase::Pending, None),
                instance(&web, "p2", 4, Phase::Pending, None),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let uids = ["r1-uid", "r2-uid", "r3-uid"];
        let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));

        assert_eq!(terminated(&plan), ["p1", "p2", "r2"], "{plan:#?}");
        assert!(creates(&plan).is_empty());
        for (seen, updated) in updated_instances(&plan) {
            let before = view
                .instances
                .iter()
                .find(|i| i.metadata.name == updated.metadata.name)
                .unwrap();
            assert_eq!(seen, "20");
            assert_eq!(updated.metadata.deletion_timestamp, Some(now()));
            assert_eq!(updated.status.phase, Phase::Terminating);
            // Only the deletion mark and the phase change.
            assert_eq!(updated.spec, before.spec);
            assert_eq!(updated.metadata.uid, before.metadata.uid);
            assert_eq!(updated.metadata.labels, before.metadata.labels);
        }
        let deployments = updated_deployments(&plan);
        let status = deployments[0].1.status.clone().unwrap();
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
    }

    #[test]
    fn scale_down_of_running_instances_terminates_the_newest() {
        let web = deployment("web", 1);
        let view = View {
            instances: vec![
                instance(&web, "c5", 5, Phase::Running, Some("n1")),
                instance(&web, "c1", 1, Phase::Running, Some("n1")),
                instance(&web, "c7", 7, Phase::Running, Some("n1")),
                instance(&web, "c3", 3, Phase::Running, Some("n1")),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let uids = ["c1-uid", "c3-uid", "c5-uid", "c7-uid"];
        let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
        assert_eq!(terminated(&plan), ["c3", "c5", "c7"], "{plan:#?}");
    }

    #[test]
    fn scale_down_terminates_failed_and_starting_before_running() {
        let web = deployment("web", 1);
        let view = View {
            instances: vec![
                instance(&web, "running", 9, Phase::Running, Some("n1")),
                instance(&web, "starting", 1, Phase::Starting, Some("n1")),
                instance(&web, "failed", 2, Phase::Failed, Some("n1")),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&[]))]));
        assert_eq!(terminated(&plan), ["failed", "starting"], "{plan:#?}");
    }

    #[test]
    fn terminating_instances_do_not_count_as_replicas() {
        let web = deployment("web", 2);
        let view = View {
            instances: vec![
                instance(&web, "a", 1, Phase::Running, Some("n1")),
                terminating(instance(&web, "b", 2, Phase::Running, Some("n1")), now()),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]));
        assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
        assert!(terminated(&plan).is_empty());
    }

    // 3. Template changes.

    #[test]
    fn template_hash_tracks_the_template_only() {
        let web = deployment("web", 1);
        let mut scaled = web.clone();
        scaled.spec.replicas = 7;
        scaled.metadata.generation = Some(9);
        assert_eq!(template_hash(&web), template_hash(&scaled));
        assert_eq!(template_hash(&web).len(), 10);

        let mut env = web.clone();
        env.spec.template.spec.env.push(EnvVar {
            name: "MODE".into(),
            value: "fast".into(),
        });
        let mut component = web.clone();
        component.spec.template.spec.component = "sha256:v2".into();
        assert_ne!(template_hash(&web), template_hash(&env));
        assert_ne!(template_hash(&web), template_hash(&component));
    }

    #[test]
    fn recreate_terminates_every_old_instance_first() {
        for change in ["env", "component"] {
            let old = deployment("web", 2);
            let mut web = old.clone();
            web.spec.strategy.type_ = StrategyType::Recreate;
            match change {
                "env" => web.spec.template.spec.env.push(EnvVar {
                    name: "MODE".into(),
                    value: "fast".into(),
                }),
                _ => web.spec.template.spec.component = "sha256:v2".into(),
            }
            let view = View {
                instances: vec![
                    instance(&old, "a", 1, Phase::Running, Some("n1")),
                    instance(&old, "b", 2, Phase::Running, Some("n1")),
                    instance(&old, "c", 3, Phase::Pending, None),
                ],
                deployments: vec![web.clone()],
                nodes: vec![node("n1", true)],
            };
            let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]));

            assert_eq!(terminated(&plan), ["a", "b", "c"], "{change}: {plan:#?}");
            assert!(creates(&plan).is_empty(), "{change}: {plan:#?}");
            assert_ne!(template_hash(&old), template_hash(&web));
        }
    }

    #[test]
    fn rolling_update_keeps_instances_already_current() {
        // 2 replicas: maxSurge 25% is 1, maxUnavailable 25% is 0.
        let old = deployment("web", 2);
        let mut web = old.clone();
        web.spec.template.spec.component = "sha256:v2".into();
        let view = View {
            instances: vec![
                instance(&old, "old1", 1, Phase::Running, Some("n1")),
                instance(&old, "old2", 2, Phase::Running, Some("n1")),
                instance(&web, "new1", 3, Phase::Running, Some("n1")),
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let uids = ["old1-uid", "old2-uid", "new1-uid"];
        let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
        // Three available, two needed: the oldest goes, and its
        // replacement fits within the surge.
        assert_eq!(terminated(&plan), ["old1"], "{plan:#?}");
        assert_eq!(creates(&plan).len(), 1);
    }

    // 4. Rollouts.

    fn rolling(
        mut d: Deployment,
        max_surge: IntOrPercent,
        max_unavailable: IntOrPercent,
    ) -> Deployment {
        d.spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: Some(max_surge),
            max_unavailable: Some(max_unavailable),
        });
        d
    }

    /// `old` with the component changed to `sha256:v2`.
    fn upgraded(old: &Deployment) -> Deployment {
        let mut web = old.clone();
        web.spec.template.spec.component = "sha256:v2".into();
        web
    }

    /// An instance of `owner` Running since `started` seconds after the epoch.
    fn running(owner: &Deployment, name: &str, created: i64, started: i64) -> Instance {
        let mut i = instance(owner, name, created, Phase::Running, Some("n1"));
        i.status.start_time = Some(t(started));
        i
    }

    /// One pass of the Deployment controller alone over `view`, at `at`.
    fn pass(view: &View, at: Timestamp, names: &mut dyn FnMut(&str) -> String) -> Plan {
        let mut plan = Plan::default();
        for d in &view.deployments {
            reconcile_deployment(d, view, &HashSet::new(), at, names, &mut plan);
        }
        plan
    }

    /// What nodes do between passes: terminating instances are gone, and
    /// the live ones `runs` picks turn Running at `at`.
    fn settle(mut view: View, at: Timestamp, runs: impl Fn(&Instance) -> bool) -> View {
        view.instances.retain(|i| !is_terminating(i));
        for i in &mut view.instances {
            if runs(i) && i.status.phase != Phase::Running {
                i.status.phase = Phase::Running;
                i.status.start_time = Some(at);
            }
        }
        view
    }

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

    fn status_of(plan: &Plan) -> DeploymentStatus {
        updated_deployments(plan)[0].1.status.clone().unwrap()
    }

    fn progressing(status: &DeploymentStatus) -> &DeploymentCondition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_PROGRESSING)
            .unwrap()
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
        // One new instance first, then one old out and one new in per
        // pass, then the last old one out.
        assert_eq!(trace, [(1, 0), (1, 1), (1, 1), (1, 1), (0, 1), (0, 0)]);
        assert_eq!(counts(&settled, &web, now()), (4, 0, 4));
        // Old instances go oldest first.
        let mut order = Vec::new();
        let mut view = View {
            instances: (0..4)
                .map(|k| running(&old, &format!("old{k}"), 10 - k, 0))
                .collect(),
            deployments: vec![web.clone()],
            nodes: vec![],
        };
        let mut names = names();
        for _ in 0..6 {
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
        assert_eq!(trace, [(1, 1), (1, 1), (1, 1), (1, 1), (0, 0)]);
        assert_eq!(counts(&settled, &web, now()), (4, 0, 4));
    }

    #[test]
    fn rolling_update_waits_for_new_instances_to_be_available() {
        let old = deployment("web", 4);
        let web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
        let view = View {
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
        // available old one makes room for a new one.
        let after = apply(&view, &plan);
        let (new, old_left, available) = counts(&after, &web, now());
        assert!(new + old_left <= 3, "{plan:#?}");
        assert!(available >= 2, "{plan:#?}");
        assert_eq!(terminated(&plan), ["new0", "old0", "old3"], "{plan:#?}");
        assert_eq!(creates(&plan).len(), 1);
    }

    #[test]
    fn recreate_waits_for_old_instances_to_be_removed() {
        let old = deployment("web", 3);
        let mut web = upgraded(&old);
        web.spec.strategy.type_ = StrategyType::Recreate;
        let view = View {
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
        assert_eq!(creates(&plan).len(), 1);
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
    fn stalled_rollout_exceeds_its_progress_deadline() {
        let old = deployment("web", 2);
        let mut web = rolling(upgraded(&old), IntOrPercent::Int(1), IntOrPercent::Int(0));
        web.spec.progress_deadline_seconds = Some(60);
        let view = View {
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

    #[test]
    fn history_appends_moves_back_on_rollback_and_is_limited() {
        let v1 = deployment("web", 1);
        let v2 = upgraded(&v1);
        let mut v3 = v2.clone();
        v3.spec.template.spec.env.push(EnvVar {
            name: "MODE".into(),
            value: "fast".into(),
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
        let row =
            |n: u64, component: &str, cause: &str| (n, component.to_owned(), cause.to_owned());

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

    // 5. Garbage collection.

    #[test]
    fn orphans_are_terminated() {
        let web = deployment("web", 1);
        let gone = deployment("gone", 1);
        let mut ownerless = instance(&web, "ownerless", 1, Phase::Running, Some("n1"));
        ownerless.metadata.owner_references.clear();
        // Same name as a live Deployment but an old uid: not adopted.
        let mut renamed = deployment("web", 1);
        renamed.metadata.uid = Some("web-old-uid".into());
        let view = View {
            instances: vec![
                instance(&web, "kept", 1, Phase::Running, Some("n1")),
                instance(&gone, "orphan", 1, Phase::Running, Some("n1")),
                instance(&renamed, "old-web", 1, Phase::Running, Some("n1")),
                ownerless,
            ],
            deployments: vec![web],
            nodes: vec![node("n1", true)],
        };
        let uids = ["kept-uid", "orphan-uid", "old-web-uid", "ownerless-uid"];
        let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
        assert_eq!(
            terminated(&plan),
            ["old-web", "orphan", "ownerless"],
            "{plan:#?}"
        );
        assert!(removed(&plan).is_empty());
        for (seen, updated) in updated_instances(&plan) {
            assert_eq!(seen, "20");
            assert_eq!(updated.status.phase, Phase::Terminating);
            assert_eq!(updated.metadata.deletion_timestamp, Some(now()));
        }
    }

    #[test]
    fn terminating_instance_without_a_node_is_removed() {
        let gone = deployment("gone", 1);
        let view = View {
            instances: vec![terminating(
                instance(&gone, "x", 1, Phase::Pending, None),
                now(),
            )],
            ..View::default()
        };
        let plan = run(&view, &HashMap::new());
        assert_eq!(
            plan.commands,
            [Command::Remove {
                key: "Instance/prod/x".into(),
                seen: "20".into(),
            }]
        );
    }

    #[test]
    fn terminating_instance_on_a_node_not_ready_is_removed() {
        let gone = deployment("gone", 1);
        let on = |name: &str, node: &str| {
            terminating(instance(&gone, name, 1, Phase::Running, Some(node)), now())
        };
        let view = View {
            instances: vec![on("a", "down"), on("b", "silent"), on("c", "missing")],
            nodes: vec![node("down", false), node("silent", true)],
            ..View::default()
        };
        // `silent` was Ready but is past its grace: it turns NotReady in this
        // very pass, and what it held goes with it.
        let mut silent = reporting(&["b-uid"]);
        silent.last_heard = Some(now() - SignedDuration::from_secs(60));
        let plan = run(&view, &liveness(&[("silent", silent)]));
        let mut gone_keys = removed(&plan);
        gone_keys.sort_unstable();
        assert_eq!(
            gone_keys,
            [key_of("a"), key_of("b"), key_of("c")],
            "{plan:#?}"
        );
    }

    #[test]
    fn terminating_instance_no_longer_reported_is_removed() {
        let gone = deployment("gone", 1);
        let view = View {
            instances: vec![terminating(
                instance(&gone, "x", 1, Phase::Running, Some("n1")),
                now(),
            )],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["other-uid"]))]));
        assert_eq!(removed(&plan), [key_of("x")], "{plan:#?}");
    }

    #[test]
    fn terminating_instance_is_kept_while_its_ready_node_runs_it() {
        let gone = deployment("gone", 1);
        let view = View {
            instances: vec![terminating(
                instance(&gone, "x", 1, Phase::Running, Some("n1")),
                now() - SignedDuration::from_secs(10),
            )],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["x-uid"]))]));
        assert_eq!(plan, Plan::default());

        // Connected but not reported since the scheduler started: no
        // evidence it stopped, so it waits too.
        let unreported = Liveness {
            last_heard: Some(now()),
            reported: None,
        };
        let plan = run(&view, &liveness(&[("n1", unreported)]));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn terminating_instance_is_removed_after_the_timeout() {
        let gone = deployment("gone", 1);
        let since = |ago: i64| {
            terminating(
                instance(&gone, "x", 1, Phase::Running, Some("n1")),
                now() - SignedDuration::from_secs(ago),
            )
        };
        let l = liveness(&[("n1", reporting(&["x-uid"]))]);
        let at_limit = View {
            instances: vec![since(TERMINATION_TIMEOUT.as_secs())],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        assert_eq!(run(&at_limit, &l), Plan::default());
        let past = View {
            instances: vec![since(TERMINATION_TIMEOUT.as_secs() + 1)],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        assert_eq!(removed(&run(&past, &l)), [key_of("x")]);
    }

    #[test]
    fn terminating_instance_is_not_terminated_again() {
        let gone = deployment("gone", 1);
        let view = View {
            instances: vec![terminating(
                instance(&gone, "x", 1, Phase::Running, Some("n1")),
                now(),
            )],
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["x-uid"]))]));
        assert!(updated_instances(&plan).is_empty(), "{plan:#?}");
    }

    // 6. Node lifecycle.

    fn heard(ago: i64) -> Liveness {
        Liveness {
            last_heard: Some(now() - SignedDuration::from_secs(ago)),
            reported: Some(HashSet::new()),
        }
    }

    #[test]
    fn silent_node_turns_not_ready() {
        let view = View {
            nodes: vec![node("n1", true)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", heard(6))]));
        let nodes = updated_nodes(&plan);
        assert_eq!(nodes.len(), 1, "{plan:#?}");
        let (seen, updated) = nodes[0];
        assert_eq!(seen, "5");
        assert!(!updated.status.is_ready());
        assert_eq!(
            updated.status.conditions,
            [NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                reason: "NodeStatusUnknown".into(),
                last_transition_time: Some(now()),
            }]
        );
        assert_eq!(updated.status.allocatable, view.nodes[0].status.allocatable);
        assert_eq!(updated.metadata, view.nodes[0].metadata);
        assert_eq!(
            updated.spec.taints,
            [Taint {
                key: UNREACHABLE_TAINT.into(),
                value: String::new(),
                effect: TaintEffect::NoExecute,
                time_added: Some(now()),
            }],
            "a node that is not Ready is tainted unreachable"
        );

        // Heard exactly `node_grace` ago is still alive.
        let plan = run(&view, &liveness(&[("n1", heard(5))]));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn node_heard_again_turns_ready() {
        let view = View {
            nodes: vec![node("n1", false)],
            ..View::default()
        };
        let plan = run(&view, &liveness(&[("n1", heard(1))]));
        let nodes = updated_nodes(&plan);
        assert_eq!(nodes.len(), 1, "{plan:#?}");
        assert_eq!(
            nodes[0].1.status.conditions,
            [NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: "NodeReady".into(),
                last_transition_time: Some(now()),
            }]
        );
        assert!(
            nodes[0].1.spec.taints.is_empty(),
            "the unreachable taint goes"
        );
        // Still silent: stays as it is.
        let plan = run(&view, &liveness(&[("n1", heard(6))]));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn unconnected_node_keeps_its_state_until_the_restart_allowance_ends() {
        let view = View {
            nodes: vec![node("up", true), node("down", false)],
            ..View::default()
        };
        let grace = settings().node_grace + settings().reconnect_allowance;
        let started = |ago: SignedDuration| Settings {
            started: now() - ago,
            ..settings()
        };

        let within = run_with(&view, &HashMap::new(), &started(grace));
        assert_eq!(within, Plan::default());

        let after = run_with(
            &view,
            &HashMap::new(),
            &started(grace + SignedDuration::from_secs(1)),
        );
        let nodes = updated_nodes(&after);
        assert_eq!(nodes.len(), 1, "{after:#?}");
        assert_eq!(nodes[0].1.metadata.name, "up");
        assert!(!nodes[0].1.status.is_ready());
    }

    #[test]
    fn unconnected_node_inside_the_allowance_takes_no_new_instances_when_not_ready() {
        let web = deployment("web", 1);
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web],
            nodes: vec![node("up", true), node("down", false)],
        };
        let recent = Settings {
            started: now() - SignedDuration::from_secs(1),
            ..settings()
        };
        let plan = run_with(&view, &HashMap::new(), &recent);
        assert_eq!(bindings(&plan), [("a", "up")], "{plan:#?}");
    }

    // 7. Placement.

    #[test]
    fn pending_instances_are_bound_to_ready_nodes_only() {
        let web = deployment("web", 3);
        let mut big_but_down = node("down", false);
        big_but_down.status.allocatable.cpu_millis = 64_000;
        let mut big_but_silent = node("silent", true);
        big_but_silent.status.allocatable.cpu_millis = 64_000;
        let view = View {
            instances: vec![
                instance(&web, "a", 1, Phase::Pending, None),
                instance(&web, "b", 2, Phase::Pending, None),
                instance(&web, "c", 3, Phase::Pending, None),
            ],
            deployments: vec![web],
            nodes: vec![big_but_down, big_but_silent, node("up", true)],
        };
        let plan = run(
            &view,
            &liveness(&[("down", heard(60)), ("silent", heard(60)), ("up", heard(0))]),
        );
        assert_eq!(
            bindings(&plan),
            [("a", "up"), ("b", "up"), ("c", "up")],
            "{plan:#?}"
        );
        for (seen, updated) in updated_instances(&plan) {
            assert_eq!(seen, "20");
            assert_eq!(
                updated.status,
                InstanceStatus {
                    phase: Phase::Scheduled,
                    ..InstanceStatus::default()
                }
            );
            assert_eq!(updated.metadata.deletion_timestamp, None);
        }
    }

    #[test]
    fn placement_counts_what_bound_instances_reserve() {
        let mut web = deployment("web", 2);
        web.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
        // Were `a-full` seen as empty, it would win the tie on its name.
        let view = View {
            instances: vec![
                instance(&web, "running", 1, Phase::Running, Some("a-full")),
                instance(&web, "pending", 2, Phase::Pending, None),
            ],
            deployments: vec![web],
            nodes: vec![node("a-full", true), node("b-free", true)],
        };
        let plan = run(
            &view,
            &liveness(&[
                ("a-full", reporting(&["running-uid"])),
                ("b-free", heard(0)),
            ]),
        );
        assert_eq!(bindings(&plan), [("pending", "b-free")], "{plan:#?}");
    }

    #[test]
    fn unschedulable_instance_says_why_once() {
        let mut web = deployment("web", 1);
        web.spec.template.spec.resources.requests.cpu = Some(Quantity("8".into()));
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web],
            nodes: vec![node("n1", true), node("n2", false)],
        };
        let l = liveness(&[("n1", heard(0))]);
        let plan = run(&view, &l);
        let updates = updated_instances(&plan);
        assert_eq!(updates.len(), 1, "{plan:#?}");
        let (seen, updated) = updates[0];
        assert_eq!(seen, "20");
        assert_eq!(updated.status.phase, Phase::Pending);
        assert_eq!(updated.status.reason, "Unschedulable");
        assert!(
            updated
                .status
                .message
                .starts_with("0/2 nodes are available:"),
            "{}",
            updated.status.message
        );
        assert!(
            updated.status.message.contains("1 insufficient cpu"),
            "{}",
            updated.status.message
        );
        assert_eq!(updated.spec.node_name, None);

        // The status written, the next pass has nothing to say about it.
        let mut again = view;
        again.instances = vec![updated.clone()];
        let plan = run(&again, &l);
        assert!(updated_instances(&plan).is_empty(), "{plan:#?}");

        // Once a node fits, it is bound.
        let mut roomy = again;
        roomy.nodes[0].status.allocatable.cpu_millis = 16_000;
        let plan = run(&roomy, &l);
        assert_eq!(bindings(&plan), [("a", "n1")], "{plan:#?}");
        assert_eq!(updated_instances(&plan)[0].1.status.reason, "");
    }

    #[test]
    fn unschedulable_without_nodes() {
        let web = deployment("web", 1);
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web],
            ..View::default()
        };
        let plan = run(&view, &HashMap::new());
        let updates = updated_instances(&plan);
        assert_eq!(updates.len(), 1, "{plan:#?}");
        assert_eq!(updates[0].1.status.reason, "Unschedulable");
        assert!(updates[0].1.status.message.starts_with("0/0 "));
    }

    #[test]
    fn placement_skips_instances_the_same_pass_terminates() {
        // `old` is scaled to zero while its instances still wait for room;
        // `web`'s instance, created later, must get that room in this same
        // pass, and no instance may get two commands (the second would be
        // dropped by the resourceVersion guard anyway).
        let mut old = deployment("old", 0);
        old.spec.template.spec.resources.requests.cpu = Some(Quantity("1".into()));
        let mut web = deployment("web", 1);
        web.spec.template.spec.resources.requests.cpu = Some(Quantity("1".into()));
        let view = View {
            instances: vec![
                instance(&old, "old-a", 1, Phase::Pending, None),
                instance(&old, "old-b", 2, Phase::Pending, None),
                instance(&web, "web-a", 3, Phase::Pending, None),
            ],
            deployments: vec![old, web],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", heard(0))]));
        assert_eq!(terminated(&plan), ["old-a", "old-b"], "{plan:#?}");
        assert_eq!(bindings(&plan), [("web-a", "n1")], "{plan:#?}");
        let mut keys: Vec<String> = plan.commands.iter().map(command_key).collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), count, "{plan:#?}");
    }

    /// Runs `view` with every node connected and heard just now.
    fn run_connected(view: &View) -> Plan {
        let heard_now: Vec<(&str, Liveness)> = view
            .nodes
            .iter()
            .map(|n| (n.metadata.name.as_str(), heard(0)))
            .collect();
        reconcile(
            view,
            &liveness(&heard_now),
            &component_imports(),
            &settings(),
            now(),
            &mut names(),
        )
    }

    fn unschedulable_messages(plan: &Plan) -> Vec<(&str, &str)> {
        updated_instances(plan)
            .into_iter()
            .filter(|(_, i)| i.status.reason == REASON_UNSCHEDULABLE)
            .map(|(_, i)| (i.metadata.name.as_str(), i.status.message.as_str()))
            .collect()
    }

    #[test]
    fn memory_request_larger_than_every_node_stays_pending() {
        let mut web = deployment("web", 1);
        web.spec.template.spec.resources.requests.memory = Some(Quantity("8000Mi".into()));
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web],
            nodes: vec![node("n1", true), node("n2", true), node("n3", true)],
        };
        let plan = run_connected(&view);
        assert_eq!(
            unschedulable_messages(&plan),
            [("a", "0/3 nodes are available: 3 insufficient memory.")],
            "{plan:#?}"
        );
    }

    #[test]
    fn tainted_node_takes_only_instances_that_tolerate_it() {
        let mut gpu = node("gpu", true);
        gpu.spec.taints = vec![Taint::parse("gpu=true:NoSchedule").unwrap()];
        let plain = deployment("plain", 1);
        let mut tolerant = deployment("tolerant", 1);
        tolerant.spec.template.spec.tolerations = vec![gpu_toleration()];
        let view = View {
            instances: vec![
                instance(&plain, "plain-a", 1, Phase::Pending, None),
                instance(&tolerant, "tolerant-a", 2, Phase::Pending, None),
            ],
            deployments: vec![plain, tolerant],
            nodes: vec![gpu],
        };
        let plan = run_connected(&view);
        assert_eq!(bindings(&plan), [("tolerant-a", "gpu")], "{plan:#?}");
        assert_eq!(
            unschedulable_messages(&plan),
            [(
                "plain-a",
                "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
            )]
        );
    }

    #[test]
    fn node_selector_and_cordon_are_honoured() {
        let mut ssd = node("z-ssd", true);
        ssd.metadata.labels.insert("disktype".into(), "ssd".into());
        let mut cordoned = node("a-ssd-cordoned", true);
        cordoned
            .metadata
            .labels
            .insert("disktype".into(), "ssd".into());
        cordoned.spec.unschedulable = true;
        let mut web = deployment("web", 3);
        web.spec.template.spec.node_selector = BTreeMap::from([("disktype".into(), "ssd".into())]);
        let view = View {
            instances: (0..3)
                .map(|k| instance(&web, &format!("w{k}"), k, Phase::Pending, None))
                .collect(),
            deployments: vec![web],
            nodes: vec![node("b-hdd", true), cordoned, ssd],
        };
        let plan = run_connected(&view);
        assert_eq!(
            bindings(&plan),
            [("w0", "z-ssd"), ("w1", "z-ssd"), ("w2", "z-ssd")],
            "{plan:#?}"
        );
    }

    #[test]
    fn the_templates_node_name_pins_its_instances() {
        let mut web = deployment("web", 1);
        web.spec.template.spec.node_name = Some("n2".into());
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web],
            nodes: vec![node("n1", true), node("n2", true)],
        };
        assert_eq!(bindings(&run_connected(&view)), [("a", "n2")]);
    }

    #[test]
    fn components_go_only_where_their_imports_are_provided() {
        let mut web = deployment("web", 1);
        web.spec.template.spec.component = "sha256:v2".into();
        let mut cli_only = node("cli-only", true);
        cli_only.status.interfaces = vec!["wasi:cli/environment@0.2".into()];
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
            deployments: vec![web.clone()],
            nodes: vec![cli_only.clone()],
        };
        assert_eq!(
            unschedulable_messages(&run_connected(&view)),
            [(
                "a",
                "0/1 nodes are available: 1 node(s) did not provide interface wasi:http/types@0.2.6."
            )]
        );
        let mut http = node("http", true);
        http.status.interfaces = vec!["wasi:http/types@0.2".into()];
        let view = View {
            nodes: vec![cli_only, http],
            ..view
        };
        assert_eq!(bindings(&run_connected(&view)), [("a", "http")]);
    }

    #[test]
    fn higher_priority_preempts_and_the_victims_go_pending() {
        let mut low = deployment("low", 2);
        low.spec.template.spec.resources.requests.cpu = Some(Quantity("900m".into()));
        low.spec.template.spec.priority = Some(0);
        let mut high = deployment("high", 1);
        high.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
        high.spec.template.spec.priority = Some(1000);
        let view = View {
            instances: vec![
                instance(&low, "low-a", 1, Phase::Running, Some("n1")),
                instance(&low, "low-b", 2, Phase::Running, Some("n1")),
                instance(&high, "high-a", 3, Phase::Pending, None),
            ],
            deployments: vec![low, high],
            nodes: vec![node("n1", true)],
        };
        let plan = run_connected(&view);
        let updates = updated_instances(&plan);
        let victims: Vec<&Instance> = updates
            .iter()
            .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
            .map(|(_, i)| *i)
            .collect();
        // 1500m needs both 900m instances gone.
        assert_eq!(victims.len(), 2, "{plan:#?}");
        for victim in &victims {
            assert_eq!(victim.spec.node_name, None);
            assert_eq!(victim.status.phase, Phase::Pending);
            assert_eq!(victim.status.message, "preempted by high-a on n1");
            assert_eq!(victim.metadata.deletion_timestamp, None);
        }
        assert_eq!(bindings(&plan), [("high-a", "n1")]);
        // Victims are written before the binding that takes their room.
        let position = |name: &str| {
            plan.commands
                .iter()
                .position(|c| command_key(c) == key_of(name))
                .unwrap()
        };
        assert!(position("low-a") < position("high-a"));
        assert!(position("low-b") < position("high-a"));
    }

    #[test]
    fn equal_priority_never_preempts() {
        let mut low = deployment("low", 1);
        low.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
        low.spec.template.spec.priority = Some(5);
        let mut same = deployment("same", 1);
        same.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
        same.spec.template.spec.priority = Some(5);
        let view = View {
            instances: vec![
                instance(&low, "low-a", 1, Phase::Running, Some("n1")),
                instance(&same, "same-a", 3, Phase::Pending, None),
            ],
            deployments: vec![low, same],
            nodes: vec![node("n1", true)],
        };
        let plan = run_connected(&view);
        assert!(bindings(&plan).is_empty(), "{plan:#?}");
        assert_eq!(
            unschedulable_messages(&plan),
            [("same-a", "0/1 nodes are available: 1 insufficient cpu.")]
        );
    }

    #[test]
    fn no_execute_taint_evicts_and_the_deployment_replaces() {
        let web = deployment("web", 1);
        let mut tainted = node("n1", true);
        tainted.spec.taints = vec![Taint::parse("maintenance=now:NoExecute").unwrap()];
        let view = View {
            instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
            deployments: vec![web.clone()],
            nodes: vec![tainted.clone(), node("n2", true)],
        };
        let plan = run_connected(&view);
        assert_eq!(terminated(&plan), ["a"], "{plan:#?}");
        // The replacement is created in the same pass, and goes away from
        // the taint once placed.
        assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
        let (_, evicted) = updated_instances(&plan)
            .into_iter()
            .find(|(_, i)| i.metadata.name == "a")
            .unwrap();
        assert_eq!(evicted.status.phase, Phase::Terminating);
        assert_eq!(evicted.status.reason, REASON_TAINT_EVICTION);
        assert_eq!(
            evicted.status.message,
            "node n1 has taint maintenance=now:NoExecute that the instance does not tolerate"
        );
        let after = apply(&view, &plan);
        let next = run_connected(&after);
        assert!(creates(&next).is_empty(), "{next:#?}");
        let bound: Vec<_> = updated_instances(&next)
            .into_iter()
            .filter_map(|(_, i)| i.spec.node_name.clone())
            .collect();
        assert_eq!(bound, ["n2"], "{next:#?}");

        // Tolerated for a while: it stays until the time runs out.
        let mut patient = web;
        patient.spec.template.spec.tolerations = vec![Toleration {
            key: "maintenance".into(),
            operator: berth_api::scheduling::TolerationOperator::Exists,
            toleration_seconds: Some(60),
            ..Toleration::default()
        }];
        tainted.spec.taints[0].time_added = Some(now() - SignedDuration::from_secs(30));
        let view = View {
            instances: vec![instance(&patient, "b", 1, Phase::Running, Some("n1"))],
            deployments: vec![patient],
            nodes: vec![tainted.clone()],
        };
        assert!(terminated(&run_connected(&view)).is_empty());
        let mut later = view;
        later.nodes[0].spec.taints[0].time_added = Some(now() - SignedDuration::from_secs(60));
        assert_eq!(terminated(&run_connected(&later)), ["b"]);
    }

    #[test]
    fn anti_affinity_replicas_take_distinct_nodes() {
        let mut web = deployment("web", 5);
        web.spec.template.spec.affinity = Some(anti_affinity("app", "web", HOSTNAME_LABEL));
        let view = View {
            instances: (0..5)
                .map(|k| instance(&web, &format!("w{k}"), k, Phase::Pending, None))
                .collect(),
            deployments: vec![web],
            nodes: (1..=4).map(|k| node(&format!("n{k}"), true)).collect(),
        };
        let plan = run_connected(&view);
        let mut nodes: Vec<&str> = bindings(&plan).into_iter().map(|(_, n)| n).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, ["n1", "n2", "n3", "n4"], "{plan:#?}");
        assert_eq!(
            unschedulable_messages(&plan),
            [(
                "w4",
                "0/4 nodes are available: 4 node(s) didn't match instance anti-affinity rules."
            )]
        );
    }

    // 8. Properties over random clusters.

    /// xorshift64: a small deterministic generator in place of a
    /// property-test crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }

        fn secs(&mut self, bound: u64) -> SignedDuration {
            SignedDuration::from_secs(self.below(bound) as i64)
        }
    }

    const PHASES: [Phase; 7] = [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Starting,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Terminating,
    ];

    fn random_bound(rng: &mut Rng) -> Option<IntOrPercent> {
        match rng.below(3) {
            0 => None,
            1 => Some(IntOrPercent::Int(rng.below(3) as i64)),
            _ => Some(IntOrPercent::Percent(rng.below(101) as i64)),
        }
    }

    fn random_cluster(rng: &mut Rng) -> (View, HashMap<String, Liveness>, Settings) {
        let settings = Settings {
            started: now() - rng.secs(40),
            ..settings()
        };
        let nodes: Vec<Node> = (0..rng.below(5))
            .map(|i| {
                let mut n = node(&format!("n{i}"), rng.below(2) == 0);
                n.status.allocatable.cpu_millis = 500 + rng.below(4000);
                n.status.allocatable.memory_bytes = GI / 2 + rng.below(4 * GI);
                n.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
                n.metadata
                    .labels
                    .insert("disktype".into(), (*rng.pick(&["ssd", "hdd"])).into());
                if rng.below(4) == 0 {
                    n.spec
                        .taints
                        .push(Taint::parse("gpu=true:NoSchedule").unwrap());
                }
                n.spec.unschedulable = rng.below(8) == 0;
                n.status.interfaces = match rng.below(3) {
                    0 => vec![],
                    1 => vec!["wasi:http/types@0.2".into()],
                    _ => vec!["wasi:cli/environment@0.2".into()],
                };
                n
            })
            .collect();
        let deployments: Vec<Deployment> = (0..rng.below(4))
            .map(|i| {
                let mut d = deployment(&format!("d{i}"), rng.below(7) as i64 - 1);
                let component = *rng.pick(&["sha256:v1", "sha256:v2"]);
                let cpu = *rng.pick(&["", "100m", "700m", "2"]);
                d.spec.template = template(component, cpu);
                if rng.below(2) == 0 {
                    d.spec.template.spec.resources.requests.memory =
                        Some(Quantity(format!("{}Mi", rng.below(2048))));
                }
                let spec = &mut d.spec.template.spec;
                if rng.below(4) == 0 {
                    spec.node_selector = BTreeMap::from([("disktype".into(), "ssd".into())]);
                }
                if rng.below(3) == 0 {
                    spec.tolerations = vec![gpu_toleration()];
                }
                if rng.below(3) == 0 {
                    spec.priority = Some(100);
                }
                if rng.below(5) == 0 {
                    spec.affinity = Some(anti_affinity("app", "web", HOSTNAME_LABEL));
                }
                d.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
                if rng.below(3) == 0 {
                    d.status = Some(DeploymentStatus::default());
                }
                match rng.below(4) {
                    0 => d.spec.strategy.type_ = StrategyType::Recreate,
                    1 => {
                        d.spec.strategy.rolling_update = Some(RollingUpdate {
                            max_surge: random_bound(rng),
                            max_unavailable: random_bound(rng),
                        });
                    }
                    _ => {}
                }
                d.spec.paused = rng.below(6) == 0;
                if rng.below(3) == 0 {
                    d.spec.min_ready_seconds = 30;
                }
                d
            })
            .collect();
        let node_names: Vec<String> = nodes
            .iter()
            .map(|n| n.metadata.name.clone())
            .chain(["gone".to_owned()])
            .collect();
        let instances: Vec<Instance> = (0..rng.below(16))
            .map(|k| {
                let name = format!("i{k}");
                let owner = if deployments.is_empty() || rng.below(6) == 0 {
                    deployment("deleted", 1)
                } else {
                    rng.pick(&deployments).clone()
                };
                let bound = rng.below(3) != 0;
                let node = bound.then(|| rng.pick(&node_names).as_str());
                let mut i = instance(
                    &owner,
                    &name,
                    rng.below(100) as i64,
                    *rng.pick(&PHASES),
                    node,
                );
                i.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
                if i.status.phase == Phase::Running && rng.below(4) != 0 {
                    i.status.start_time = Some(now() - rng.secs(60));
                }
                match rng.below(8) {
                    0 | 4 => {
                        let stale = *rng.pick(&["stale", "older"]);
                        i.metadata
                            .labels
                            .insert(TEMPLATE_HASH_LABEL.into(), stale.into());
                    }
                    1 => i.metadata.owner_references.clear(),
                    2 | 3 => i.metadata.deletion_timestamp = Some(now() - rng.secs(60)),
                    _ => {}
                }
                i
            })
            .collect();
        let uids: Vec<String> = instances
            .iter()
            .filter_map(|i| i.metadata.uid.clone())
            .collect();
        let mut liveness = HashMap::new();
        for n in &nodes {
            if rng.below(4) == 0 {
                continue;
            }
            let reported = (rng.below(3) != 0).then(|| {
                uids.iter()
                    .filter(|_| rng.below(2) == 0)
                    .cloned()
                    .collect::<HashSet<String>>()
            });
            let last_heard = (rng.below(5) != 0).then(|| now() - rng.secs(12));
            liveness.insert(
                n.metadata.name.clone(),
                Liveness {
                    last_heard,
                    reported,
                },
            );
        }
        (
            View {
                deployments,
                instances,
                nodes,
            },
            liveness,
            settings,
        )
    }

    fn view_objects(view: &View) -> BTreeMap<String, Object> {
        let deployments = view
            .deployments
            .iter()
            .map(|d| Object::Deployment(Box::new(d.clone())));
        let instances = view
            .instances
            .iter()
            .map(|i| Object::Instance(Box::new(i.clone())));
        let nodes = view.nodes.iter().map(|n| Object::Node(Box::new(n.clone())));
        deployments
            .chain(instances)
            .chain(nodes)
            .map(|o| (object_key(&o), o))
            .collect()
    }

    /// Applies a plan as the reconciler does, guards included: creates get
    /// a uid and a creation time, every write the next resourceVersion.
    fn apply(view: &View, plan: &Plan) -> View {
        let mut objects = view_objects(view);
        let revision = "1000".to_owned();
        for command in plan.commands.clone() {
            match command {
                Command::Create(mut i) => {
                    i.metadata.uid = Some(format!("{}-uid", i.metadata.name));
                    i.metadata.creation_timestamp = Some(now());
                    i.metadata.resource_version = Some(revision.clone());
                    let object = Object::Instance(i);
                    objects.entry(object_key(&object)).or_insert(object);
                }
                Command::Update { seen, mut object } => {
                    let key = object_key(&object);
                    if objects
                        .get(&key)
                        .map(|o| o.metadata().resource_version.clone())
                        == Some(Some(seen))
                    {
                        object.metadata_mut().resource_version = Some(revision.clone());
                        objects.insert(key, *object);
                    }
                }
                Command::Remove { key, seen } => {
                    if objects
                        .get(&key)
                        .map(|o| o.metadata().resource_version.clone())
                        == Some(Some(seen))
                    {
                        objects.remove(&key);
                    }
                }
            }
        }
        View::new(objects.into_values().collect())
    }

    fn check_plan(view: &View, plan: &Plan, case: usize) {
        let objects = view_objects(view);
        let imports = component_imports();

        // Every command names an object of the snapshot (but creates), with
        // the resourceVersion it had, and no object gets two commands.
        let mut seen_keys = HashSet::new();
        for command in &plan.commands {
            let key = command_key(command);
            assert!(
                seen_keys.insert(key.clone()),
                "case {case}: {key} twice: {plan:#?}"
            );
            match command {
                Command::Create(i) => {
                    assert!(!objects.contains_key(&key), "case {case}: create of {key}");
                    let owner = view
                        .deployments
                        .iter()
                        .find(|d| d.metadata.uid.as_deref() == owner_uid(i))
                        .unwrap_or_else(|| panic!("case {case}: {key} has no owner"));
                    // A paused Deployment may scale its old template.
                    if !owner.spec.paused {
                        assert_eq!(
                            i.metadata.labels.get(TEMPLATE_HASH_LABEL),
                            Some(&template_hash(owner))
                        );
                    }
                    assert_eq!(i.metadata.namespace, owner.metadata.namespace);
                    assert_eq!(i.spec.node_name, None);
                }
                Command::Update { seen, .. } | Command::Remove { seen, .. } => {
                    let before = objects
                        .get(&key)
                        .unwrap_or_else(|| panic!("case {case}: {key} is not in the view"));
                    assert_eq!(
                        before.metadata().resource_version.as_ref(),
                        Some(seen),
                        "case {case}: {key}"
                    );
                    if let Command::Remove { .. } = command {
                        assert!(
                            before.metadata().deletion_timestamp.is_some(),
                            "case {case}: removed {key} while not terminating"
                        );
                    }
                }
            }
        }

        check_rollouts(view, plan, case);

        // Bindings go to nodes Ready after this pass, and fit in the room
        // the node had left.
        let after = apply(view, plan);
        let ready: HashMap<&str, bool> = after
            .nodes
            .iter()
            .map(|n| (n.metadata.name.as_str(), n.status.is_ready()))
            .collect();
        let mut added: HashMap<&str, (u64, u64)> = HashMap::new();
        let victims: HashSet<&str> = updated_instances(plan)
            .into_iter()
            .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
            .map(|(_, i)| i.metadata.name.as_str())
            .collect();
        for (_, i) in updated_instances(plan) {
            if i.status.phase != Phase::Scheduled {
                continue;
            }
            let node = i.spec.node_name.as_deref().unwrap();
            assert_eq!(ready.get(node), Some(&true), "case {case}: bound to {node}");
            // The node as this plan leaves it (readiness and the
            // unreachable taint change in the same pass).
            let n = updated_nodes(plan)
                .into_iter()
                .map(|(_, n)| n)
                .find(|n| n.metadata.name == node)
                .or_else(|| view.nodes.iter().find(|n| n.metadata.name == node))
                .unwrap();
            assert!(
                !n.spec.unschedulable,
                "case {case}: bound to cordoned {node}"
            );
            for (key, value) in &i.spec.node_selector {
                assert_eq!(n.metadata.labels.get(key), Some(value), "case {case}");
            }
            for taint in &n.spec.taints {
                assert!(
                    i.spec.tolerations.iter().any(|t| t.tolerates(taint)),
                    "case {case}: {} on {node} with {taint}",
                    i.metadata.name
                );
            }
            for import in imports.get(&i.spec.component).into_iter().flatten() {
                assert!(
                    n.status.interfaces.is_empty()
                        || n.status
                            .interfaces
                            .iter()
                            .any(|p| import.starts_with(p.as_str())),
                    "case {case}: {import} on {node}"
                );
            }
            let d = demand(&i.spec);
            let entry = added.entry(node).or_default();
            entry.0 += d.cpu_millis;
            entry.1 += d.memory_bytes;
        }
        for (node, (cpu, memory)) in added {
            let n = view.nodes.iter().find(|n| n.metadata.name == node).unwrap();
            let (used_cpu, used_memory) = view
                .instances
                .iter()
                .filter(|i| i.spec.node_name.as_deref() == Some(node))
                .filter(|i| !victims.contains(i.metadata.name.as_str()))
                .map(|i| demand(&i.spec))
                .fold((0, 0), |(c, m), d| (c + d.cpu_millis, m + d.memory_bytes));
            let alloc = n.status.allocatable;
            assert!(
                cpu <= alloc.cpu_millis.saturating_sub(used_cpu),
                "case {case}: {node} cpu"
            );
            assert!(
                memory <= alloc.memory_bytes.saturating_sub(used_memory),
                "case {case}: {node} memory"
            );
        }

        // Once applied, no live instance lacks an owner.
        let owners: HashSet<&str> = after
            .deployments
            .iter()
            .filter_map(|d| d.metadata.uid.as_deref())
            .collect();
        for i in after.instances.iter().filter(|i| !is_terminating(i)) {
            assert!(
                owner_uid(i).is_some_and(|uid| owners.contains(uid)),
                "case {case}: orphan {} survives",
                i.metadata.name
            );
        }
    }

    /// What each Deployment's instances become under `plan`, counting the
    /// instances this pass evicts as gone (they are replaced at once):
    /// - never more than `replicas + maxSurge` live, nor more than
    ///   `replicas` of the current template;
    /// - a RollingUpdate creates all the room allows and keeps at least
    ///   `replicas - maxUnavailable` available (or what it had);
    /// - a Recreate keeps no old instance and creates only when none is
    ///   left, terminating ones included;
    /// - a paused Deployment only brings its count to `replicas`.
    fn check_rollouts(view: &View, plan: &Plan, case: usize) {
        let evicted: HashSet<String> = updated_instances(plan)
            .into_iter()
            .filter(|(_, i)| i.status.reason == REASON_TAINT_EVICTION)
            .map(|(_, i)| instance_key(i))
            .collect();
        let gone = terminated_by(plan);
        for d in &view.deployments {
            let name = &d.metadata.name;
            let hash = template_hash(d);
            let replicas = usize::try_from(d.spec.replicas.max(0)).unwrap();
            let limits = RolloutLimits::of(&d.spec);
            let ceiling = replicas + limits.max_surge;
            let owned = |i: &&Instance| owner_uid(i) == d.metadata.uid.as_deref();
            let live: Vec<&Instance> = view
                .instances
                .iter()
                .filter(owned)
                .filter(|i| !is_terminating(i) && !evicted.contains(&instance_key(i)))
                .collect();
            let kept: Vec<&Instance> = live
                .iter()
                .copied()
                .filter(|i| !gone.contains(&instance_key(i)))
                .collect();
            let created: Vec<&Instance> = creates(plan).into_iter().filter(owned).collect();
            let total = kept.len() + created.len();
            let new = kept
                .iter()
                .chain(&created)
                .filter(|i| is_from(i, &hash))
                .count();
            assert!(
                total <= ceiling,
                "case {case}: {name} has {total} instances, more than {ceiling}: {plan:#?}"
            );
            if d.spec.paused {
                assert!(
                    created.is_empty() || total == replicas,
                    "case {case}: {name}"
                );
                for i in &created {
                    assert!(
                        live.iter().any(|l| l.metadata.labels == i.metadata.labels),
                        "case {case}: {name} paused created a template it did not run"
                    );
                }
                continue;
            }
            assert!(new <= replicas, "case {case}: {name}");
            match d.spec.strategy.type_ {
                StrategyType::RollingUpdate => {
                    assert!(
                        new == replicas || total == ceiling,
                        "case {case}: {name} could create more: {plan:#?}"
                    );
                    let available =
                        |i: &&&Instance| is_available(i, d.spec.min_ready_seconds, now());
                    let before = live.iter().filter(available).count();
                    let after = kept.iter().filter(available).count();
                    assert!(
                        after >= before.min(limits.min_available(replicas)),
                        "case {case}: {name} down to {after} available from {before}: {plan:#?}"
                    );
                }
                StrategyType::Recreate => {
                    assert!(
                        kept.iter().all(|i| is_from(i, &hash)),
                        "case {case}: {name}"
                    );
                    let old_remains = view
                        .instances
                        .iter()
                        .filter(owned)
                        .any(|i| !is_from(i, &hash));
                    if old_remains {
                        assert!(created.is_empty(), "case {case}: {name}: {plan:#?}");
                    } else {
                        assert_eq!(new, replicas, "case {case}: {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_clusters_keep_the_invariants() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let imports = component_imports();
        for case in 0..500 {
            let (view, liveness, settings) = random_cluster(&mut rng);
            let plan = reconcile(&view, &liveness, &imports, &settings, now(), &mut names());
            check_plan(&view, &plan, case);

            // Same inputs, same plan.
            let again = reconcile(&view, &liveness, &imports, &settings, now(), &mut names());
            assert_eq!(plan, again, "case {case}");

            // Applied, the next pass at the same instant is stable: nothing
            // more to create or terminate, no node flips back.
            let after = apply(&view, &plan);
            let mut fresh = {
                let mut count = 0;
                move |d: &str| {
                    count += 1;
                    format!("{d}-second-{count}")
                }
            };
            let next = reconcile(&after, &liveness, &imports, &settings, now(), &mut fresh);
            // Except where this pass changed what a rollout goes by:
            // preemption victims are no longer available, and a Recreate
            // whose last old instance was removed may start its new ones.
            let removed_keys: HashSet<&str> = removed(&plan).into_iter().collect();
            let mut unsettled: HashSet<&str> = updated_instances(&plan)
                .into_iter()
                .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
                .filter_map(|(_, i)| owner_uid(i))
                .collect();
            for d in &view.deployments {
                let hash = template_hash(d);
                let old_removed = view.instances.iter().any(|i| {
                    owner_uid(i) == d.metadata.uid.as_deref()
                        && !is_from(i, &hash)
                        && removed_keys.contains(instance_key(i).as_str())
                });
                if d.spec.strategy.type_ == StrategyType::Recreate && old_removed {
                    unsettled.extend(d.metadata.uid.as_deref());
                }
            }
            for i in creates(&next) {
                let owner = owner_uid(i).unwrap_or_default();
                assert!(unsettled.contains(owner), "case {case}: {next:#?}");
            }
            for (_, i) in updated_instances(&next) {
                if i.metadata.deletion_timestamp.is_some() {
                    let owner = owner_uid(i).unwrap_or_default();
                    assert!(unsettled.contains(owner), "case {case}: {next:#?}");
                }
            }
            assert!(updated_nodes(&next).is_empty(), "case {case}: {next:#?}");

            converge(after, &liveness, &settings, case);
        }
    }

    /// Runs passes over `view` as if every node ran what it is given at
    /// once: terminating instances are gone by the next pass and every
    /// other instance is Running (available), paused Deployments resumed.
    /// Every pass keeps the rollout limits, and the cluster settles with
    /// each Deployment at exactly its replicas, all of the current template.
    fn converge(
        mut view: View,
        liveness: &HashMap<String, Liveness>,
        settings: &Settings,
        case: usize,
    ) {
        let imports = component_imports();
        let mut names = {
            let mut count = 0;
            move |d: &str| {
                count += 1;
                format!("{d}-round-{count}")
            }
        };
        for d in &mut view.deployments {
            d.spec.paused = false;
        }
        for _ in 0..100 {
            view.instances.retain(|i| !is_terminating(i));
            for i in &mut view.instances {
                i.status.phase = Phase::Running;
                i.status.start_time = Some(now() - SignedDuration::from_hours(1));
            }
            let plan = reconcile(&view, liveness, &imports, settings, now(), &mut names);
            check_rollouts(&view, &plan, case);
            if creates(&plan).is_empty() && terminated(&plan).is_empty() {
                for d in &view.deployments {
                    let live: Vec<&Instance> = view
                        .instances
                        .iter()
                        .filter(|i| owner_uid(i) == d.metadata.uid.as_deref())
                        .collect();
                    let want = usize::try_from(d.spec.replicas.max(0)).unwrap();
                    assert_eq!(live.len(), want, "case {case}: {}", d.metadata.name);
                    for i in live {
                        assert!(
                            is_from(i, &template_hash(d)),
                            "case {case}: {}",
                            i.metadata.name
                        );
                    }
                }
                return;
            }
            view = apply(&view, &plan);
        }
        panic!("case {case}: no convergence");
    }
}
