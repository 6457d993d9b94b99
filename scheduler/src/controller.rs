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
//! 2. Deployments: create or terminate Instances to match `replicas`,
//!    replace instances of an old template, and update `status`;
//! 3. garbage collection: instances whose Deployment is gone terminate, and
//!    terminating instances are removed once their node no longer runs them;
//! 4. placement of pending instances ([`crate::placement`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use berth_api::quantity::{parse_cpu, parse_memory};
use berth_api::{
    API_VERSION, Deployment, DeploymentStatus, Instance, InstanceSpec, InstanceStatus, Kind,
    Node, NodeCondition, NodeResources, Object, ObjectMeta, OwnerReference, Phase,
};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::placement::{Decision, Demand, Framework, NodeState, Runtime};
use crate::store::key;

/// The label carrying the hash of the template an instance was made from.
pub const TEMPLATE_HASH_LABEL: &str = "berth.dev/template-hash";

/// How long a terminating instance may wait for its node to confirm it
/// stopped before the scheduler removes it anyway.
pub const TERMINATION_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);

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
                Object::Namespace(_) => {}
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
        runtime: Runtime::Wasm,
    }
}

fn is_terminating(instance: &Instance) -> bool {
    instance.metadata.deletion_timestamp.is_some()
}

/// Computes the controllers' plan. `new_name` turns a Deployment name into a
/// fresh instance name (the caller supplies the randomness).
pub fn reconcile(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    settings: &Settings,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Plan {
    let mut plan = Plan::default();
    let ready = node_lifecycle(view, liveness, settings, now, &mut plan);
    for deployment in &view.deployments {
        reconcile_deployment(deployment, view, now, new_name, &mut plan);
    }
    collect_garbage(view, liveness, &ready, now, &mut plan);
    place(view, &ready, &mut plan);
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
        let heard = liveness
            .get(&node.metadata.name)
            .and_then(|l| l.last_heard);
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
        if want != node.status.is_ready() {
            let mut updated = node.clone();
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

fn reconcile_deployment(
    deployment: &Deployment,
    view: &View,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
    plan: &mut Plan,
) {
    let Some(uid) = deployment.metadata.uid.as_deref() else {
        return;
    };
    let hash = template_hash(deployment);
    let active: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| owner_uid(i) == Some(uid) && !is_terminating(i))
        .collect();
    let (mut current, stale): (Vec<&Instance>, Vec<&Instance>) = active
        .iter()
        .partition(|i| i.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&hash));
    // A new template replaces the old instances. Rolling updates with
    // surge and availability limits belong to the releases work.
    for instance in &stale {
        terminate(instance, now, plan);
    }
    let want = usize::try_from(deployment.spec.replicas.max(0)).unwrap_or(0);
    if current.len() > want {
        current.sort_by_key(|i| surplus_rank(i));
        for instance in current.drain(..current.len() - want) {
            terminate(instance, now, plan);
        }
    }
    for _ in current.len()..want {
        plan.commands
            .push(Command::Create(Box::new(new_instance(deployment, &hash, new_name))));
    }
    let ready = current
        .iter()
        .filter(|i| i.status.phase == Phase::Running)
        .count() as u64;
    let status = DeploymentStatus {
        observed_generation: deployment.metadata.generation.unwrap_or(0),
        replicas: current.len() as u64,
        updated_replicas: current.len() as u64,
        ready_replicas: ready,
        available_replicas: ready,
    };
    if deployment.status.as_ref() != Some(&status) {
        let mut updated = deployment.clone();
        updated.status = Some(status);
        plan.commands.push(Command::Update {
            seen: rv(&deployment.metadata),
            object: Box::new(Object::Deployment(Box::new(updated))),
        });
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
    for instance in &view.instances {
        let Some(since) = instance.metadata.deletion_timestamp else {
            if owner_uid(instance).is_none_or(|uid| !owners.contains(uid)) {
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
                key: key(
                    Kind::Instance,
                    Some(instance.metadata.namespace_or_default()),
                    &instance.metadata.name,
                ),
                seen: rv(&instance.metadata),
            });
        }
    }
}

fn place(view: &View, ready: &HashMap<String, bool>, plan: &mut Plan) {
    let mut nodes: Vec<NodeState> = view
        .nodes
        .iter()
        .map(|node| NodeState {
            name: node.metadata.name.clone(),
            ready: ready.get(&node.metadata.name).copied().unwrap_or(false),
            runtimes: node.status.runtimes.clone(),
            allocatable: node.status.allocatable,
            requested: NodeResources::default(),
            instances: 0,
        })
        .collect();
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for instance in &view.instances {
        let Some(node) = instance
            .spec
            .node_name
            .as_ref()
            .and_then(|n| index.get(n))
            .and_then(|&i| nodes.get_mut(i))
        else {
            continue;
        };
        let demand = demand(&instance.spec);
        node.requested.cpu_millis += demand.cpu_millis;
        node.requested.memory_bytes += demand.memory_bytes;
        node.instances += 1;
    }
    let mut pending: Vec<&Instance> = view
        .instances
        .iter()
        .filter(|i| i.spec.node_name.is_none() && !is_terminating(i))
        .collect();
    pending.sort_by_key(|i| (i.metadata.creation_timestamp, i.metadata.name.clone()));
    let demands: Vec<Demand> = pending.iter().map(|i| demand(&i.spec)).collect();
    let decisions = Framework::default().place(&mut nodes, &demands);
    for (instance, decision) in pending.into_iter().zip(decisions) {
        let mut updated = instance.clone();
        match decision {
            Decision::Bind(node) => {
                updated.spec.node_name = Some(node);
                updated.status = InstanceStatus {
                    phase: Phase::Scheduled,
                    ..InstanceStatus::default()
                };
            }
            Decision::Unschedulable(message) => {
                if instance.status.reason == "Unschedulable" && instance.status.message == message {
                    continue;
                }
                updated.status = InstanceStatus {
                    phase: Phase::Pending,
                    reason: "Unschedulable".into(),
                    message,
                    start_time: None,
                };
            }
        }
        plan.commands.push(Command::Update {
            seen: rv(&instance.metadata),
            object: Box::new(Object::Instance(Box::new(updated))),
        });
    }
}
