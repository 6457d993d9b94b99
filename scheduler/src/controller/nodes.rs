//! Node lifecycle and `NoExecute` eviction: nodes turn Ready or NotReady
//! by heartbeat, a NotReady node carries the unreachable taint, and the
//! instances on a node with a `NoExecute` taint they do not tolerate are
//! terminated.

use std::collections::HashMap;

use berth_api::scheduling::{Taint, TaintEffect};
use berth_api::{Instance, Node, NodeCondition, Object};
use jiff::Timestamp;

use super::place::snapshot;
use super::{
    Command, Liveness, Plan, Settings, View, instance_key, rv, terminate_because, terminated_by,
};
use crate::placement;

/// `status.reason` of an instance evicted by a `NoExecute` taint.
pub const REASON_TAINT_EVICTION: &str = "TaintEviction";

/// Turns nodes Ready or NotReady by heartbeat; returns each node's readiness
/// after this pass.
pub(super) fn node_lifecycle(
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
        let cgroups = cgroups_condition(node);
        let cgroups_changed = node
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == CGROUPS_UNAVAILABLE)
            .map(|c| c.status.as_str())
            != cgroups.as_ref().map(|c| c.status.as_str());
        if want != node.status.is_ready() || taints != node.spec.taints || cgroups_changed {
            let mut updated = node.clone();
            updated.spec.taints = taints;
            let ready_changed = want != node.status.is_ready();
            let mut conditions = vec![NodeCondition {
                type_: "Ready".into(),
                status: if want { "True" } else { "Unknown" }.into(),
                reason: if want {
                    "NodeReady"
                } else {
                    "NodeStatusUnknown"
                }
                .into(),
                last_transition_time: node
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .and_then(|c| c.last_transition_time)
                    .filter(|_| !ready_changed)
                    .or(Some(now)),
            }];
            conditions.extend(cgroups.map(|mut c| {
                c.last_transition_time = Some(now);
                c
            }));
            updated.status.conditions = conditions;
            plan.commands.push(Command::Update {
                seen: rv(&node.metadata),
                object: Box::new(Object::Node(Box::new(updated))),
            });
        }
    }
    ready
}

/// The condition of a node whose sandboxes run without kernel limits.
pub const CGROUPS_UNAVAILABLE: &str = "CgroupsUnavailable";

pub use berth_api::lifecycle::CGROUPS_LABEL;

/// `CgroupsUnavailable` from the node's cgroups label; none for a node
/// that does not say (registered before sandboxes existed).
fn cgroups_condition(node: &Node) -> Option<NodeCondition> {
    let value = node.metadata.labels.get(CGROUPS_LABEL)?;
    let unavailable = value == "unavailable";
    Some(NodeCondition {
        type_: CGROUPS_UNAVAILABLE.into(),
        status: if unavailable { "True" } else { "False" }.into(),
        reason: if unavailable {
            "CgroupsNotWritable"
        } else {
            "CgroupsReady"
        }
        .into(),
        last_transition_time: None,
    })
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
pub(super) fn taints_after(node: &Node, ready: bool, now: Timestamp) -> Vec<Taint> {
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

/// Terminates the instances on nodes with NoExecute taints they do not
/// tolerate (after their `tolerationSeconds`), including the unreachable
/// taint of nodes that are not Ready: their Deployments replace them.
pub(super) fn evict(view: &View, ready: &HashMap<String, bool>, now: Timestamp, plan: &mut Plan) {
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
