//! The DaemonSet controller: one instance of a DaemonSet's template on
//! every node that can run it, following nodes as they come, go and
//! change, as Kubernetes' daemon set controller.
//!
//! Which nodes ([`fit`]): those matching the template's `nodeName` (if
//! any), `nodeSelector` and required node affinity, offering its runtime
//! (`wasm` for a component, `oci` for an image), and carrying no
//! `NoSchedule` or `NoExecute` taint it does not tolerate (the unreachable
//! taint of a NotReady node included). Cordoned nodes count, as in
//! Kubernetes. A node that refuses only by an untolerated `NoSchedule`
//! taint keeps an instance it already runs but gets no new one, and is
//! listed in `status.failedPlacements` (told as a `FailedPlacement` event).
//!
//! Instances are created bound to their node (`nodeName` set, phase
//! `Scheduled`): placement's scoring never sees them, as Kubernetes' pins
//! a daemon pod with node affinity. Instances on nodes that no longer fit
//! (label removed, node deleted, untolerated `NoExecute`) terminate, and
//! surplus instances on one node terminate down to one.
//!
//! Template changes roll out by `updateStrategy`: `RollingUpdate`
//! terminates old instances node by node, at most `maxUnavailable` nodes
//! without an available instance at a time (old instances that are not
//! available go first, they cost nothing), replacing each in the same
//! pass; `OnDelete` replaces an old instance only once someone deletes it.
//! See `docs/decisions/0025-daemonsets.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use berth_api::daemonset::{
    DAEMONSET_NAME_LABEL, DaemonSet, DaemonSetStatus, DaemonSetStrategyType,
};
use berth_api::scheduling::TaintEffect;
use berth_api::{
    API_VERSION, Instance, InstanceStatus, Kind, Node, Object, ObjectMeta, OwnerReference, Phase,
};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::deployment::{is_available, is_from, is_ready};
use super::nodes::taints_after;
use super::{
    Command, Plan, TEMPLATE_HASH_LABEL, View, instance_key, is_terminating, rv, terminate,
};

/// The uid of the DaemonSet owning `instance`, if a DaemonSet owns it.
pub fn daemonset_owner(instance: &Instance) -> Option<&str> {
    instance
        .metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::DaemonSet.as_str())
        .map(|r| r.uid.as_str())
}

/// A short stable hash of a DaemonSet's template.
pub fn daemonset_template_hash(daemonset: &DaemonSet) -> String {
    let bytes = serde_json::to_vec(&daemonset.spec.template).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

/// Whether a node should run the DaemonSet's instance.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fit {
    /// It should run one.
    Run,
    /// It matches, but an untolerated `NoSchedule` taint keeps new
    /// instances off; one already there stays.
    KeepOnly(String),
    /// It should not run one.
    No,
}

/// Whether `node` (Ready or not, as this pass decided) should run an
/// instance of `daemonset`'s template.
fn fit(daemonset: &DaemonSet, node: &Node, ready: bool, now: Timestamp) -> Fit {
    let spec = &daemonset.spec.template.spec;
    let labels = &node.metadata.labels;
    if spec
        .node_name
        .as_deref()
        .is_some_and(|name| name != node.metadata.name)
    {
        return Fit::No;
    }
    if !spec
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return Fit::No;
    }
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| required.matches(labels));
    if !affinity_ok {
        return Fit::No;
    }
    let runtime = if spec.image.is_some() { "oci" } else { "wasm" };
    if !node.status.runtimes.iter().any(|r| r == runtime) {
        return Fit::No;
    }
    let taints = taints_after(node, ready, now);
    let untolerated = |effect: TaintEffect| {
        taints.iter().find(|taint| {
            taint.effect == effect && !spec.tolerations.iter().any(|t| t.tolerates(taint))
        })
    };
    if untolerated(TaintEffect::NoExecute).is_some() {
        return Fit::No;
    }
    match untolerated(TaintEffect::NoSchedule) {
        Some(taint) if taint.value.is_empty() => {
            Fit::KeepOnly(format!("node had untolerated taint {{{}}}", taint.key))
        }
        Some(taint) => Fit::KeepOnly(format!(
            "node had untolerated taint {{{}: {}}}",
            taint.key, taint.value
        )),
        None => Fit::Run,
    }
}

pub(super) fn reconcile_daemonset(
    daemonset: &DaemonSet,
    view: &View,
    ready: &HashMap<String, bool>,
    evicted: &HashSet<String>,
    now: Timestamp,
    new_name: &mut dyn FnMut(&str) -> String,
    plan: &mut Plan,
) {
    let Some(uid) = daemonset.metadata.uid.as_deref() else {
        return;
    };
    let hash = daemonset_template_hash(daemonset);
    let mut on_node: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    let mut unbound: Vec<&Instance> = Vec::new();
    for instance in view.instances.iter().filter(|i| {
        daemonset_owner(i) == Some(uid) && !is_terminating(i) && !evicted.contains(&instance_key(i))
    }) {
        match instance.spec.node_name.as_deref() {
            Some(node) => on_node.entry(node).or_default().push(instance),
            None => unbound.push(instance),
        }
    }

    let mut status = DaemonSetStatus::default();
    // The node's one kept instance (if any) for every node that should
    // run one, in node-name order.
    let mut wanted: Vec<(&str, Option<&Instance>)> = Vec::new();
    let mut stop: Vec<&Instance> = unbound;
    let mut nodes: Vec<&Node> = view.nodes.iter().collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for node in nodes {
        let name = node.metadata.name.as_str();
        let node_ready = ready.get(name).copied().unwrap_or(false);
        let mut here = on_node.remove(name).unwrap_or_default();
        let keep = match fit(daemonset, node, node_ready, now) {
            Fit::Run => true,
            Fit::KeepOnly(reason) => {
                status.failed_placements.push(format!("{name}: {reason}"));
                !here.is_empty()
            }
            Fit::No => false,
        };
        if !keep {
            stop.append(&mut here);
            continue;
        }
        // One instance a node: the current template's available one first,
        // then the oldest.
        here.sort_by_key(|i| {
            (
                !is_from(i, &hash),
                !is_ready(i),
                i.metadata.creation_timestamp,
                i.metadata.name.clone(),
            )
        });
        let mut rest = here.into_iter();
        let kept = rest.next();
        stop.extend(rest);
        wanted.push((name, kept));
    }
    // Instances on nodes that are gone.
    stop.extend(on_node.into_values().flatten());
    status.number_misscheduled = count(stop.len());

    // Rolling update: old instances are replaced node by node.
    let desired = wanted.len();
    let mut replace: HashSet<&str> = HashSet::new();
    if daemonset.spec.update_strategy.type_ == DaemonSetStrategyType::RollingUpdate {
        let max_unavailable = daemonset.spec.update_strategy.max_unavailable(desired);
        let available = |i: &Instance| is_available(i, 0, now);
        let mut unavailable = wanted
            .iter()
            .filter(|(_, kept)| kept.is_none_or(|i| !available(i)))
            .count();
        for (node, kept) in &wanted {
            if let Some(instance) = kept
                && !is_from(instance, &hash)
                && !available(instance)
            {
                replace.insert(node);
            }
        }
        for (node, kept) in &wanted {
            if unavailable >= max_unavailable {
                break;
            }
            if let Some(instance) = kept
                && !is_from(instance, &hash)
                && available(instance)
            {
                replace.insert(node);
                unavailable += 1;
            }
        }
    }

    for instance in &stop {
        terminate(instance, now, plan);
    }
    for (node, kept) in &wanted {
        let current = match kept {
            Some(instance) if replace.contains(node) => {
                terminate(instance, now, plan);
                None
            }
            other => *other,
        };
        match current {
            Some(instance) => {
                status.current_number_scheduled += 1;
                if is_from(instance, &hash) {
                    status.updated_number_scheduled += 1;
                }
                if is_ready(instance) {
                    status.number_ready += 1;
                }
                if is_available(instance, 0, now) {
                    status.number_available += 1;
                }
            }
            None => {
                let instance = new_instance(daemonset, &hash, node, new_name);
                plan.commands.push(Command::Create(Box::new(instance)));
                status.current_number_scheduled += 1;
                status.updated_number_scheduled += 1;
            }
        }
    }
    status.desired_number_scheduled = count(desired);
    status.number_unavailable = status
        .desired_number_scheduled
        .saturating_sub(status.number_available);

    if daemonset.status != status {
        let mut updated = daemonset.clone();
        updated.status = status;
        plan.commands.push(Command::Update {
            seen: rv(&daemonset.metadata),
            object: Box::new(Object::DaemonSet(Box::new(updated))),
        });
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A new instance of `daemonset` bound to `node`: the template's labels
/// plus the template hash and [`DAEMONSET_NAME_LABEL`], owned by the
/// DaemonSet.
pub(super) fn new_instance(
    daemonset: &DaemonSet,
    hash: &str,
    node: &str,
    new_name: &mut dyn FnMut(&str) -> String,
) -> Instance {
    let mut labels = daemonset.spec.template.metadata.labels.clone();
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    labels.insert(DAEMONSET_NAME_LABEL.into(), daemonset.metadata.name.clone());
    let mut spec = daemonset.spec.template.spec.clone();
    spec.node_name = Some(node.to_owned());
    Instance {
        api_version: API_VERSION.into(),
        kind: Kind::Instance.as_str().into(),
        metadata: ObjectMeta {
            name: new_name(&daemonset.metadata.name),
            namespace: daemonset.metadata.namespace.clone(),
            labels,
            owner_references: vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: Kind::DaemonSet.as_str().into(),
                name: daemonset.metadata.name.clone(),
                uid: daemonset.metadata.uid.clone().unwrap_or_default(),
            }],
            ..ObjectMeta::default()
        },
        spec,
        status: InstanceStatus {
            phase: Phase::Scheduled,
            ..InstanceStatus::default()
        },
    }
}
