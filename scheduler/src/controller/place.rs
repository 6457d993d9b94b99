//! Placement of pending instances: the store's view turned into a
//! [`crate::placement`] snapshot, and the framework's outcome turned into
//! bindings, reasons and preemptions.

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_api::{Instance, InstanceStatus, InstanceTemplate, Object, Phase};
use jiff::Timestamp;

use super::job::{is_finished_run, job_owner};
use super::nodes::taints_after;
use super::{
    Command, Plan, View, demand, instance_key, is_terminating, owner_uid, rv, terminated_by,
};
use crate::placement::{
    self, BoundInstance, Framework, Outcome, PendingInstance, Runtime, Snapshot,
};

/// `status.reason` of an instance no node can take.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// `status.reason` of an instance evicted for a higher-priority one.
pub const REASON_PREEMPTED: &str = "Preempted";

/// The cluster as placement sees it: every node with its readiness after
/// this pass, and every bound instance, terminating ones included (they
/// hold their room until removed), but not a Job's finished runs (they
/// hold nothing, as Kubernetes' terminated pods).
pub(super) fn snapshot(
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
        .filter(|instance| !is_finished_run(instance))
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
/// Deployment's or Job's: instances are created without one.
pub(super) fn pending_instance(
    instance: &Instance,
    owners: &HashMap<&str, &InstanceTemplate>,
    component_imports: &HashMap<String, BTreeSet<String>>,
) -> PendingInstance {
    let spec = &instance.spec;
    PendingInstance {
        key: instance_key(instance),
        namespace: instance.metadata.namespace_or_default().to_owned(),
        labels: instance.metadata.labels.clone(),
        demand: demand(spec),
        runtime: if spec.image.is_some() {
            Runtime::Oci
        } else {
            Runtime::Wasm
        },
        imports: component_imports
            .get(&spec.component)
            .cloned()
            .unwrap_or_default(),
        component: spec.component.clone(),
        node_name: owner_uid(instance)
            .or_else(|| job_owner(instance))
            .and_then(|uid| owners.get(uid))
            .and_then(|template| template.spec.node_name.clone()),
        node_selector: spec.node_selector.clone(),
        affinity: spec.affinity.clone(),
        tolerations: spec.tolerations.clone(),
        topology_spread_constraints: spec.topology_spread_constraints.clone(),
        priority: spec.priority.unwrap_or(0),
        preemption_policy: spec.preemption_policy.unwrap_or_default(),
    }
}

pub(super) fn place(
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

    let owners: HashMap<&str, &InstanceTemplate> = view
        .deployments
        .iter()
        .filter_map(|d| Some((d.metadata.uid.as_deref()?, &d.spec.template)))
        .chain(
            view.jobs
                .iter()
                .filter_map(|j| Some((j.metadata.uid.as_deref()?, &j.spec.template))),
        )
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
    plan.placement = super::PlacementStats {
        attempts: u64::try_from(inputs.len()).unwrap_or(u64::MAX),
        bound: u64::try_from(outcome.bindings.len()).unwrap_or(u64::MAX),
        unschedulable: outcome
            .unschedulable
            .iter()
            .map(|u| u.message.clone())
            .collect(),
    };
    apply_outcome(&outcome, &pending, &inputs, &by_key, plan);
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
                ..InstanceStatus::default()
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
                ..InstanceStatus::default()
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
