//! Engine tests: the seed scenarios, preemption and batches
//! (`seeds.rs`), each plugin (`plugins.rs`), and properties over random
//! clusters checked against a naive re-implementation of every rule
//! (`properties.rs`).

mod plugins;
mod properties;
mod seeds;

use std::collections::BTreeMap;

use berth_api::NodeResources;
use berth_api::scheduling::{
    Affinity, AffinityTerm, InstanceAffinity, NodeAffinity, NodeSelector, NodeSelectorTerm,
    Operator, Requirement, Selector, Taint, Toleration, TopologySpreadConstraint,
    WhenUnsatisfiable,
};

use super::*;

pub(super) const GI: u64 = 1 << 30;
pub(super) const MI: u64 = 1 << 20;
pub(super) const HOSTNAME: &str = "berth.dev/hostname";
pub(super) const ZONE: &str = "topology.berth.dev/zone";

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A Ready wasm node with its hostname label.
pub(super) fn node(name: &str, cpu_millis: u64, memory_bytes: u64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: labels(&[(HOSTNAME, name)]),
        ready: true,
        runtimes: vec!["wasm".into()],
        allocatable: NodeResources {
            cpu_millis,
            memory_bytes,
        },
        ..NodeInfo::default()
    }
}

pub(super) fn with_label(mut node: NodeInfo, key: &str, value: &str) -> NodeInfo {
    node.labels.insert(key.into(), value.into());
    node
}

pub(super) fn tainted(mut node: NodeInfo, taint: &str) -> NodeInfo {
    node.taints.push(Taint::parse(taint).unwrap());
    node
}

/// A pending instance of app `app` in `default`.
pub(super) fn pending(key: &str, app: &str, cpu_millis: u64, memory_bytes: u64) -> PendingInstance {
    PendingInstance {
        key: key.into(),
        namespace: "default".into(),
        labels: labels(&[("app", app)]),
        demand: Demand {
            cpu_millis,
            memory_bytes,
        },
        component: format!("sha256:{app}"),
        ..PendingInstance::default()
    }
}

/// An instance of app `app` bound to `node`.
pub(super) fn bound(
    key: &str,
    app: &str,
    node: &str,
    cpu_millis: u64,
    priority: i32,
) -> BoundInstance {
    BoundInstance {
        key: key.into(),
        node: node.into(),
        namespace: "default".into(),
        labels: labels(&[("app", app)]),
        demand: Demand {
            cpu_millis,
            memory_bytes: 0,
        },
        priority,
        ..BoundInstance::default()
    }
}

pub(super) fn select(app: &str) -> Selector {
    Selector {
        match_labels: labels(&[("app", app)]),
        match_expressions: vec![],
    }
}

pub(super) fn term(app: &str, topology_key: &str) -> AffinityTerm {
    AffinityTerm {
        label_selector: select(app),
        namespaces: vec![],
        topology_key: topology_key.into(),
    }
}

pub(super) fn required(terms: Vec<AffinityTerm>) -> Option<InstanceAffinity> {
    Some(InstanceAffinity {
        required_during_scheduling_ignored_during_execution: terms,
        preferred_during_scheduling_ignored_during_execution: vec![],
    })
}

pub(super) fn anti_affinity(app: &str, topology_key: &str) -> Option<Affinity> {
    Some(Affinity {
        instance_anti_affinity: required(vec![term(app, topology_key)]),
        ..Affinity::default()
    })
}

pub(super) fn affinity(app: &str, topology_key: &str) -> Option<Affinity> {
    Some(Affinity {
        instance_affinity: required(vec![term(app, topology_key)]),
        ..Affinity::default()
    })
}

pub(super) fn requirement(key: &str, operator: Operator, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        operator,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

pub(super) fn node_affinity(requirements: Vec<Requirement>) -> Option<Affinity> {
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: requirements,
                }],
            }),
            preferred_during_scheduling_ignored_during_execution: vec![],
        }),
        ..Affinity::default()
    })
}

pub(super) fn spread(
    app: &str,
    key: &str,
    max_skew: i32,
    when: WhenUnsatisfiable,
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: key.into(),
        when_unsatisfiable: when,
        label_selector: select(app),
    }
}

pub(super) fn toleration(key: &str, value: &str) -> Toleration {
    Toleration {
        key: key.into(),
        value: value.into(),
        ..Toleration::default()
    }
}

/// Node of each binding, by instance key.
pub(super) fn placements(outcome: &Outcome) -> BTreeMap<&str, &str> {
    outcome
        .bindings
        .iter()
        .map(|b| (b.key.as_str(), b.node.as_str()))
        .collect()
}

pub(super) fn place(snapshot: &Snapshot, pending: &[PendingInstance]) -> Outcome {
    Framework::default().place(snapshot, pending)
}
