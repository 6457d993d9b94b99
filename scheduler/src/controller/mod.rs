//! Controllers: from a snapshot of the cluster to a [`Plan`] of writes.
//!
//! **Architecture Invariant:** this module does no I/O and reads no clock:
//! `now`, node liveness and the name generator come in as arguments, and the
//! result is a list of [`Command`]s that the reconciler applies in one store
//! transaction, each guarded by the `resourceVersion` it was computed from.
//!
//! Start at [`reconcile`]. It runs the controllers in this order, each one
//! seeing the commands of those before it:
//! 1. node lifecycle (`nodes.rs`): a node not heard from for the grace
//!    period turns NotReady and gets the [`UNREACHABLE_TAINT`]
//!    (`berth.dev/unreachable`, `NoExecute`); one heard from again turns
//!    Ready and loses it;
//! 2. `NoExecute` eviction (`nodes.rs`): instances on nodes with `NoExecute`
//!    taints they do not tolerate, the unreachable taint of NotReady nodes
//!    included, are terminated once their `tolerationSeconds` are up, so
//!    their Deployments replace them in the same pass;
//! 3. Deployments (`deployment.rs`): create or terminate Instances to match
//!    `replicas`, roll a new template out by the Deployment's `strategy`
//!    (RollingUpdate within `maxSurge` and `maxUnavailable`, or Recreate),
//!    hold the rollout while `paused`; then (`status.rs`) keep the revision
//!    history and update `status` with its `Available` and `Progressing`
//!    conditions;
//! 4. Jobs (`job.rs`): create a Job's runs up to `parallelism` until
//!    `completions` succeeded, count failures against `backoffLimit`, stop
//!    at `activeDeadlineSeconds`, and update `status` and its `Complete` or
//!    `Failed` condition;
//! 5. DaemonSets (`daemonset.rs`): one instance bound to every node that
//!    matches the template and tolerates its taints, new nodes included,
//!    instances on nodes that stop matching terminated, template changes
//!    rolled out node by node within `maxUnavailable`;
//! 6. CronJobs (`cronjob.rs`): a Job for the latest scheduled time
//!    passed, by `concurrencyPolicy`, and finished Jobs beyond the history
//!    limits removed;
//! 7. garbage collection (`gc.rs`): instances whose Deployment, Job or
//!    DaemonSet is gone terminate, Jobs whose CronJob is gone are removed,
//!    and terminating instances are removed once their node no longer
//!    runs them;
//! 8. placement (`place.rs`, over [`crate::placement`]): pending instances
//!    are bound (or left Pending with the reason), and preemption victims go
//!    back to Pending.
//!
//! HorizontalAutoscalers (`autoscaler.rs`) run before these, from the
//! nodes' usage reports: the reconciler puts their `replicas` updates first
//! in the pass's plan; the same file decides a node's `Wake` of a
//! Deployment scaled to zero.
//!
//! This file holds the types the passes share and [`reconcile`]; `tests/`
//! drives the whole pipeline, one file a topic.

pub mod autoscaler;
mod canary;
mod cronjob;
mod daemonset;
mod deployment;
/// PodDisruptionBudgets' arithmetic and the eviction decision (used by
/// `crate::disruption`, not by a reconcile pass).
pub mod disruption;
mod gc;
mod job;
mod nodes;
mod place;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_api::cronjob::CronJob;
use berth_api::daemonset::DaemonSet;
use berth_api::job::Job;
use berth_api::quantity::{parse_cpu, parse_memory};
use berth_api::{Deployment, Instance, InstanceSpec, Kind, Node, Object, ObjectMeta, Phase};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::placement::{Demand, Framework};
use crate::store::key;

pub use canary::{
    REASON_ABORTED_BY_USER, REASON_ANALYSIS_FAILED, REASON_PROMOTED, Traffic, canary_routes,
    canary_windows, request as canary_request,
};
pub use cronjob::{cronjob_owner, scheduled_job_name};
pub use daemonset::{daemonset_owner, daemonset_template_hash};
pub use deployment::{RolloutLimits, is_available};
pub use gc::TERMINATION_TIMEOUT;
pub use job::{
    REASON_BACKOFF_LIMIT_EXCEEDED, REASON_COMPLETIONS_REACHED, REASON_DEADLINE_EXCEEDED,
    is_finished_run, job_owner,
};
pub use nodes::{REASON_TAINT_EVICTION, UNREACHABLE_TAINT};
pub use place::{REASON_PREEMPTED, REASON_UNSCHEDULABLE};
pub use status::{
    CONDITION_AVAILABLE, CONDITION_PROGRESSING, DEFAULT_PROGRESS_DEADLINE_SECONDS,
    DEFAULT_REVISION_HISTORY_LIMIT, REASON_DEPLOYMENT_PAUSED, REASON_MINIMUM_REPLICAS_AVAILABLE,
    REASON_MINIMUM_REPLICAS_UNAVAILABLE, REASON_NEW_REVISION_AVAILABLE,
    REASON_PROGRESS_DEADLINE_EXCEEDED, REASON_REVISION_UPDATED,
};

use cronjob::reconcile_cronjob;
use daemonset::reconcile_daemonset;
use deployment::reconcile_deployment;
use gc::collect_garbage;
use job::reconcile_job;
use nodes::{evict, node_lifecycle};
use place::place;

/// The label carrying the hash of the template an instance was made from.
pub const TEMPLATE_HASH_LABEL: &str = "berth.dev/template-hash";

/// One write the reconciler should make. Every command naming an existing
/// object carries the `resourceVersion` it saw; the write is skipped if the
/// object changed since.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Store a new instance.
    Create(Box<Instance>),
    /// Store a new Job (a CronJob's run), unless one of its name exists.
    CreateJob(Box<Job>),
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
    /// What placement attempted in this pass, for the metrics.
    pub placement: PlacementStats,
}

/// What the placement step of a pass attempted: every pending instance is
/// one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementStats {
    /// Pending instances given to the placement batch.
    pub attempts: u64,
    /// Of those, how many were bound to a node.
    pub bound: u64,
    /// The unschedulable message of each instance that fits nowhere.
    pub unschedulable: Vec<String>,
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
    /// Jobs.
    pub jobs: Vec<Job>,
    /// DaemonSets.
    pub daemonsets: Vec<DaemonSet>,
    /// CronJobs.
    pub cronjobs: Vec<CronJob>,
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
                Object::Job(j) => view.jobs.push(*j),
                Object::DaemonSet(d) => view.daemonsets.push(*d),
                Object::CronJob(c) => view.cronjobs.push(*c),
                // Autoscalers run before `reconcile` (`autoscaler::autoscale`).
                Object::HorizontalAutoscaler(_) => {}
                // Services are read where endpoints are needed (`crate::services`).
                Object::Namespace(_)
                | Object::PriorityClass(_)
                | Object::Event(_)
                | Object::Service(_)
                | Object::Ingress(_) => {}
                // Budgets are read by evictions (`crate::disruption`).
                Object::PodDisruptionBudget(_) => {}
                // Quotas and limit ranges are read at admission (`crate::quota`).
                Object::ResourceQuota(_) | Object::LimitRange(_) => {}
                // RBAC is read by the API server's gate (`crate::rbac`).
                Object::Role(_)
                | Object::ClusterRole(_)
                | Object::RoleBinding(_)
                | Object::ClusterRoleBinding(_) => {}
                // Network policies are compiled for the nodes (`crate::netpol`).
                Object::NetworkPolicy(_) => {}
                // Secrets and ConfigMaps are checked by `crate::secrets`.
                Object::Secret(_) | Object::ConfigMap(_) => {}
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
    let traffic = Traffic::default();
    reconcile_with_traffic(
        view,
        liveness,
        component_imports,
        settings,
        &traffic,
        now,
        new_name,
    )
}

/// [`reconcile`], with what canary instances answered over their
/// Deployments' analysis windows (see [`canary_windows`]).
pub fn reconcile_with_traffic(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    component_imports: &HashMap<String, BTreeSet<String>>,
    settings: &Settings,
    traffic: &Traffic,
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
        reconcile_deployment(
            deployment, view, &evicted, traffic, now, new_name, &mut plan,
        );
    }
    for job in &view.jobs {
        reconcile_job(job, view, &evicted, now, new_name, &mut plan);
    }
    for cronjob in &view.cronjobs {
        reconcile_cronjob(cronjob, view, now, &mut plan);
    }
    for daemonset in &view.daemonsets {
        reconcile_daemonset(daemonset, view, &ready, &evicted, now, new_name, &mut plan);
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
