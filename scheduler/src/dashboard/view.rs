//! What the dashboard shows, built from one store snapshot and the nodes'
//! latest usage reports: a pure function of those and `now`, serialised
//! as the JSON the page renders. The shape is the dashboard's own
//! (camelCase, read by `app.js` only), not an API: it may change with the
//! page.
//!
//! Request rates and latency come from the nodes' reports (`NodeUsage`:
//! requests per second and their mean latency per instance): a
//! Deployment's rate is the sum over its instances, its latency their mean
//! weighted by rate (`null` while it serves nothing).

use std::collections::{BTreeMap, HashMap};

use berth_api::wire::NodeUsage;
use berth_api::{Instance, Object, Phase};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::controller::demand;

/// Most events sent, newest first: the page shows a live tail, and
/// `berth events` has the rest.
pub const MAX_EVENTS: usize = 50;

/// A usage report older than this is not shown, as `berth top` does not:
/// nodes report every second, so the node has missed ten reports.
pub const USAGE_STALE: SignedDuration = SignedDuration::from_secs(10);

/// Everything the page shows at one revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// The store revision read.
    pub revision: u64,
    /// When the view was built.
    pub generated_at: Timestamp,
    /// Nodes, by name.
    pub nodes: Vec<NodeView>,
    /// Deployments, by namespace and name.
    pub deployments: Vec<DeploymentView>,
    /// Instances not bound to a node yet, oldest first.
    pub pending: Vec<PendingView>,
    /// The latest events, newest first, at most [`MAX_EVENTS`].
    pub events: Vec<EventView>,
}

/// CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Millicores.
    pub cpu_millis: u64,
    /// Bytes.
    pub memory_bytes: u64,
}

/// One node with what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its `Ready` condition is `True`.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Runtime kinds it offers (`wasm`, `oci`).
    pub runtimes: Vec<String>,
    /// What placement may hand out.
    pub allocatable: Resources,
    /// The requests of the live instances bound to it.
    pub allocated: Resources,
    /// What its sandboxes use, from its latest report, if fresh.
    pub used: Option<Resources>,
    /// Most instances it takes; 0 is no limit.
    pub max_instances: u64,
    /// Its instances, by namespace and name.
    pub instances: Vec<InstanceView>,
}

/// One instance on a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The owning Deployment or Job, if any.
    pub owner: Option<String>,
    /// Lifecycle phase; `Terminating` once deletion started.
    pub phase: Phase,
    /// Receives traffic.
    pub ready: bool,
    /// Restarts by the node.
    pub restart_count: u32,
}

/// One Deployment and its rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Desired replicas.
    pub desired: u64,
    /// Live instances.
    pub replicas: u64,
    /// Instances of the current template.
    pub updated: u64,
    /// Running instances.
    pub ready: u64,
    /// Instances ready for `minReadySeconds`.
    pub available: u64,
    /// The current template's revision.
    pub revision: u64,
    /// Rollouts are paused.
    pub paused: bool,
    /// `Progressing` and `Available`.
    pub conditions: Vec<ConditionView>,
    /// Requests per second over its instances, when nodes report it.
    pub requests_per_second: Option<f64>,
    /// Mean request latency in milliseconds, when nodes report it.
    pub latency_ms: Option<f64>,
}

/// A Deployment condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    /// `Progressing` or `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Details.
    pub message: String,
}

/// An instance waiting for a node, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The owning Deployment or Job, if any.
    pub owner: Option<String>,
    /// CamelCase reason (`Unschedulable`), empty before placement tried.
    pub reason: String,
    /// Placement's explanation.
    pub message: String,
    /// When it was created.
    pub created: Option<Timestamp>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// CamelCase reason.
    pub reason: String,
    /// `kind/name` of the object it is about.
    pub object: String,
    /// The object's namespace, if it has one.
    pub namespace: Option<String>,
    /// What happened.
    pub message: String,
    /// How many times it happened.
    pub count: u64,
    /// When it last happened.
    pub last_seen: Timestamp,
}

impl View {
    /// The view of `objects` (a snapshot at `revision`) and of the nodes'
    /// `usage` reports (by node name, with when each came) at `now`.
    pub fn build(
        revision: u64,
        objects: &[Object],
        usage: &HashMap<String, (Timestamp, NodeUsage)>,
        now: Timestamp,
    ) -> View {
        let usage: HashMap<&str, &NodeUsage> = usage
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) <= USAGE_STALE)
            .map(|(node, (_, usage))| (node.as_str(), usage))
            .collect();
        let reported: HashMap<&str, (u64, u64)> = usage
            .values()
            .flat_map(|u| &u.instances)
            .map(|i| {
                (
                    i.uid.as_str(),
                    (i.millirequests_per_second, i.mean_latency_micros),
                )
            })
            .collect();
        // Requests per second (in thousandths) by owner uid, over the live
        // instances a fresh report covers, with their latency summed
        // weighted by rate (µs × millirequests/s) for the owner's mean.
        let mut rates: HashMap<&str, (u64, u128)> = HashMap::new();
        for object in objects {
            if let Object::Instance(i) = object
                && i.metadata.deletion_timestamp.is_none()
                && let Some((rate, latency)) =
                    i.metadata.uid.as_deref().and_then(|uid| reported.get(uid))
            {
                for owner in &i.metadata.owner_references {
                    let entry = rates.entry(owner.uid.as_str()).or_default();
                    entry.0 += rate;
                    entry.1 += u128::from(*rate) * u128::from(*latency);
                }
            }
        }
        let mut nodes: BTreeMap<&str, NodeView> = BTreeMap::new();
        let mut deployments = Vec::new();
        let mut events = Vec::new();
        let mut instances = Vec::new();
        for object in objects {
            match object {
                Object::Node(node) => {
                    nodes.insert(
                        &node.metadata.name,
                        NodeView {
                            name: node.metadata.name.clone(),
                            ready: node
                                .status
                                .conditions
                                .iter()
                                .any(|c| c.type_ == "Ready" && c.status == "True"),
                            unschedulable: node.spec.unschedulable,
                            runtimes: node.status.runtimes.clone(),
                            allocatable: Resources {
                                cpu_millis: node.status.allocatable.cpu_millis,
                                memory_bytes: node.status.allocatable.memory_bytes,
                            },
                            allocated: Resources::default(),
                            used: usage.get(node.metadata.name.as_str()).map(|u| Resources {
                                cpu_millis: u.cpu_millicores,
                                memory_bytes: u.memory_bytes,
                            }),
                            max_instances: node.status.max_instances,
                            instances: Vec::new(),
                        },
                    );
                }
                Object::Deployment(d) => {
                    let status = d.status.clone().unwrap_or_default();
                    let rate = d.metadata.uid.as_deref().and_then(|uid| rates.get(uid));
                    deployments.push(DeploymentView {
                        namespace: d.metadata.namespace_or_default().to_owned(),
                        name: d.metadata.name.clone(),
                        desired: u64::try_from(d.spec.replicas).unwrap_or(0),
                        replicas: status.replicas,
                        updated: status.updated_replicas,
                        ready: status.ready_replicas,
                        available: status.available_replicas,
                        revision: status.revision,
                        paused: d.spec.paused,
                        conditions: status
                            .conditions
                            .into_iter()
                            .map(|c| ConditionView {
                                type_: c.type_,
                                status: c.status,
                                reason: c.reason,
                                message: c.message,
                            })
                            .collect(),
                        requests_per_second: rate.map(|(r, _)| *r as f64 / 1000.0),
                        // Only where requests were served to average over.
                        latency_ms: rate
                            .filter(|(r, _)| *r > 0)
                            .map(|(r, weighted)| *weighted as f64 / *r as f64 / 1000.0),
                    });
                }
                Object::Event(e) => events.push(EventView {
                    type_: e.type_.clone(),
                    reason: e.reason.clone(),
                    object: format!(
                        "{}/{}",
                        e.involved_object.kind.to_lowercase(),
                        e.involved_object.name
                    ),
                    namespace: e.involved_object.namespace.clone(),
                    message: e.message.clone(),
                    count: e.count,
                    last_seen: e.last_timestamp,
                }),
                Object::Instance(i) => instances.push(i.as_ref()),
                _ => {}
            }
        }
        let mut pending = Vec::new();
        for instance in instances {
            match instance.spec.node_name.as_deref() {
                Some(node_name) => {
                    if let Some(node) = nodes.get_mut(node_name) {
                        if holds_resources(instance) {
                            let want = demand(&instance.spec);
                            node.allocated.cpu_millis += want.cpu_millis;
                            node.allocated.memory_bytes += want.memory_bytes;
                        }
                        node.instances.push(instance_view(instance));
                    }
                }
                None if instance.metadata.deletion_timestamp.is_none() => {
                    pending.push(PendingView {
                        namespace: instance.metadata.namespace_or_default().to_owned(),
                        name: instance.metadata.name.clone(),
                        owner: owner(instance),
                        reason: instance.status.reason.clone(),
                        message: instance.status.message.clone(),
                        created: instance.metadata.creation_timestamp,
                    });
                }
                None => {}
            }
        }
        pending.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        events.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        events.truncate(MAX_EVENTS);
        View {
            revision,
            generated_at: now,
            nodes: nodes.into_values().collect(),
            deployments,
            pending,
            events,
        }
    }
}

/// Whether a bound instance still counts against its node: not finished.
fn holds_resources(instance: &Instance) -> bool {
    !matches!(instance.status.phase, Phase::Succeeded | Phase::Failed)
}

fn owner(instance: &Instance) -> Option<String> {
    instance
        .metadata
        .owner_references
        .first()
        .map(|r| format!("{}/{}", r.kind.to_lowercase(), r.name))
}

fn instance_view(instance: &Instance) -> InstanceView {
    InstanceView {
        namespace: instance.metadata.namespace_or_default().to_owned(),
        name: instance.metadata.name.clone(),
        owner: owner(instance),
        phase: if instance.metadata.deletion_timestamp.is_some() {
            Phase::Terminating
        } else {
            instance.status.phase
        },
        ready: instance.status.ready,
        restart_count: instance.status.restart_count,
    }
}
