//! Placement: which node each pending instance goes to.
//!
//! **Architecture Invariant:** this module does no I/O, reads no clock and
//! holds no locks. It takes a [`Snapshot`] of the nodes and of the instances
//! already bound, plus the [`PendingInstance`]s to place, and returns an
//! [`Outcome`]; time comes in as an argument ([`no_execute_evictions`]). It
//! can be tested with property tests and benchmarked with 10,000 simulated
//! nodes in one process, and the same input always gives the same outcome.
//!
//! # Where to start
//! [`Framework::new`] validates a [`Config`]; [`Framework::place`] places a
//! batch. A [`Batch`] is the same thing one instance at a time, for
//! benchmarks and for comparing a choice with an exhaustive search.
//!
//! # The framework
//! A filter/score pipeline in kube-scheduler's manner. Every rule is a
//! [`Plugin`] with a name that the config file can disable; filters say why a
//! node cannot take an instance, scores rank the nodes left (each 0 to 100,
//! times the plugin's weight). Filters run in the order of [`Plugin::ALL`];
//! a node that fails is counted under its first failing filter in the
//! unschedulable message (`0/5 nodes are available: 3 insufficient memory,
//! 2 node(s) had untolerated taint {gpu: true}.`). Ties go to the node with
//! fewer instances, then to the lower name.
//!
//! The plugins are a closed enum rather than trait objects: they share the
//! indexes below, and each is a branch of one tight loop. A new plugin is a
//! new variant plus its filter (`filters.rs`) and score (`scores.rs`).
//!
//! Unlike kube-scheduler, scores are absolute (a function of the node and
//! the instance only, never normalised over the nodes looked at), so a
//! score found by a bounded search compares directly with the best score
//! an exhaustive search finds.
//!
//! # Batches
//! A batch places instances highest priority first (stable otherwise)
//! against one snapshot, accounting for each binding as it is made: no node
//! is overcommitted within a batch, and affinity and spread see the
//! earlier bindings of the same batch. An instance that fits nowhere and may
//! preempt ([`PreemptionPolicy::PreemptLowerPriority`]) evicts strictly
//! lower-priority instances on the node where that costs least (lowest
//! highest-victim priority, then fewest victims, then lowest priority sum,
//! then name); the victims' room is freed for the rest of the batch.
//!
//! # Scale: indexes and a bounded search
//! Per batch, in `Batch::new`:
//! - instances with the same scheduling fields (in practice: replicas of
//!   one template) share a *profile*. Its node-only filters (conditions,
//!   nodeName, taints, selector, node affinity, runtime and imports) and
//!   node-only scores (preferred node affinity, `PreferNoSchedule`, artifact
//!   locality) are evaluated once per node, leaving the list of nodes that
//!   pass them;
//! - topology keys and their values are interned, so a node's domain for a
//!   key is an array lookup;
//! - for every selector an instance's affinity, anti-affinity or spread
//!   rule counts with, a counter holds the matching instances per domain;
//!   for every required or preferred term an instance *carries* (the
//!   symmetric side: an existing instance's anti-affinity repels), a counter
//!   holds the carriers per domain. Spread counters also keep the minimum
//!   over their domains (a histogram of counts), as `maxSkew` needs it.
//!   Binding or evicting an instance updates the few counters it feeds.
//!
//! A placement then costs a handful of array lookups per node it looks at,
//! with no work proportional to the number of instances. It looks at nodes
//! in the profile's list, from where the previous placement of the profile
//! stopped, until it has found `feasible_to_find` feasible nodes
//! (kube-scheduler's `percentageOfNodesToScore`: by default 50% minus 1%
//! per 125 nodes, at least 5% and at least 100 nodes: 420 of 1,000, 500 of
//! 5,000 or 10,000). **Trade-off:** beyond that share the best node may go
//! unseen, so a placement is a good node rather than the best one; the
//! rotation spreads successive placements over the whole list, and the
//! benchmark (`benches/placement.rs`) reports how the chosen node's score
//! compares with the best under exhaustive search on the same state. Node-only
//! scores are the one thing a window can miss badly (the few nodes matching a
//! preferred term, or holding the component), so besides its window a
//! placement also looks at the profile's 32 nodes with the best node-only
//! scores. Set `percentageOfNodesToScore: 100` for exhaustive search. The
//! price of the indexes is a setup per batch, linear in nodes × profiles and
//! in bound instances, and memory of a few bytes per node and profile.
//!
//! Measured on 2 vCPU x86_64, one core, 100 Deployments, 20,000 placements
//! per batch (`cargo bench -p berth-scheduler --bench placement`): about
//! 100,000 placements/s for requests only and 70,000/s for the mix at 10,000
//! nodes (7,000/s if exhaustive), p99 under 60 µs, the chosen node's score
//! within 1% of the best.
//!
//! Out of scope: volumes, ports, the `minDomains` and `matchLabelKeys`
//! refinements of spread, `namespaceSelector` in affinity terms, and
//! re-placing preemption victims in the same batch (they go back to
//! Pending and are placed by the next pass).

mod batch;
mod config;
mod eviction;
mod filters;
mod index;
mod preemption;
mod profile;
mod scores;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use berth_api::NodeResources;
use berth_api::scheduling::{
    Affinity, PreemptionPolicy, Taint, Toleration, TopologySpreadConstraint,
};

pub use batch::{Batch, Decision};
pub use config::{Config, ConfigError, Plugin, PluginConfig, Strategy};
pub use eviction::{Eviction, no_execute_evictions};

/// The CPU an instance without a request counts as when scoring, as in
/// Kubernetes (`100m`), so that request-less instances still spread.
pub const DEFAULT_SCORE_CPU_MILLIS: u64 = 100;

/// The memory an instance without a request counts as when scoring (`200Mi`).
pub const DEFAULT_SCORE_MEMORY_BYTES: u64 = 200 * 1024 * 1024;

/// What an instance reserves on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    /// CPU request in millicores.
    pub cpu_millis: u64,
    /// Memory request in bytes.
    pub memory_bytes: u64,
}

/// Runtime kinds an instance can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Runtime {
    /// A WebAssembly component.
    #[default]
    Wasm,
    /// A Linux container from an OCI image.
    Oci,
}

impl Runtime {
    /// The name nodes advertise.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Wasm => berth_api::container::WASM_RUNTIME,
            Runtime::Oci => berth_api::container::OCI_RUNTIME,
        }
    }
}

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Labels, topology keys among them.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// Cordoned.
    pub unschedulable: bool,
    /// Ready in this pass.
    pub ready: bool,
    /// Runtime kinds offered.
    pub runtimes: Vec<String>,
    /// WIT interfaces provided (`wasi:http/types@0.2`); empty: all.
    pub interfaces: Vec<String>,
    /// Digests of the components the node holds compiled.
    pub components: Vec<String>,
    /// What instances may reserve.
    pub allocatable: NodeResources,
    /// Most instances the node takes; 0 means no limit.
    pub max_instances: u64,
}

/// An instance already bound to a node. Terminating instances still hold
/// their room until they are gone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundInstance {
    /// Store key, as reported in preemption victims and evictions.
    pub key: String,
    /// The node it is bound to.
    pub node: String,
    /// Namespace.
    pub namespace: String,
    /// Labels, matched by affinity and spread selectors.
    pub labels: BTreeMap<String, String>,
    /// What it reserves.
    pub demand: Demand,
    /// Priority (0 when none was resolved).
    pub priority: i32,
    /// Tolerations, for `NoExecute` evictions.
    pub tolerations: Vec<Toleration>,
    /// Its own affinity: its anti-affinity repels newcomers, its preferred
    /// terms attract or repel them.
    pub affinity: Option<Affinity>,
    /// Being shut down: holds room, is never a victim, and does not count
    /// for topology spread.
    pub terminating: bool,
}

/// An instance to place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PendingInstance {
    /// Store key, as reported in the outcome.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What it reserves.
    pub demand: Demand,
    /// Runtime kind required.
    pub runtime: Runtime,
    /// Interfaces its component imports (`wasi:http/types@0.2.6`).
    pub imports: BTreeSet<String>,
    /// Its component's digest, for artifact locality.
    pub component: String,
    /// The one node it may run on.
    pub node_name: Option<String>,
    /// Labels the node must carry.
    pub node_selector: BTreeMap<String, String>,
    /// Node and inter-instance affinity.
    pub affinity: Option<Affinity>,
    /// Taints it tolerates.
    pub tolerations: Vec<Toleration>,
    /// How it spreads over topology domains.
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Priority: higher places first and may preempt lower.
    pub priority: i32,
    /// Whether it may preempt.
    pub preemption_policy: PreemptionPolicy,
}

/// The cluster as one batch sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Every node, Ready or not.
    pub nodes: Vec<NodeInfo>,
    /// Every instance bound to a node.
    pub bound: Vec<BoundInstance>,
}

/// A pending instance goes to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The instance.
    pub key: String,
    /// The node.
    pub node: String,
}

/// A pending instance takes the room of lower-priority ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preemption {
    /// The instance that preempts (also in the bindings).
    pub preemptor: String,
    /// The node it is bound to.
    pub node: String,
    /// The bound instances that must leave the node, by key.
    pub victims: Vec<String>,
}

/// A pending instance that fits nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// The instance.
    pub key: String,
    /// Why, as kube-scheduler words it.
    pub message: String,
}

/// The result of a batch, each list in placement order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Bindings, preemptors included.
    pub bindings: Vec<Binding>,
    /// Preemptions.
    pub preemptions: Vec<Preemption>,
    /// Instances left pending.
    pub unschedulable: Vec<Unschedulable>,
}

/// The configured plugins; cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct Framework {
    config: config::Resolved,
}

impl Default for Framework {
    fn default() -> Self {
        Framework {
            config: config::Resolved::all(),
        }
    }
}

impl Framework {
    /// Validates `config`.
    pub fn new(config: &Config) -> Result<Framework, ConfigError> {
        Ok(Framework {
            config: config::Resolved::new(config)?,
        })
    }

    /// Places `pending` against `snapshot`, highest priority first.
    pub fn place(&self, snapshot: &Snapshot, pending: &[PendingInstance]) -> Outcome {
        let mut batch = self.batch(snapshot, pending);
        for index in batch.order() {
            batch.place(index);
        }
        batch.into_outcome()
    }

    /// A batch to place `pending` one at a time.
    pub fn batch<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        pending: &'a [PendingInstance],
    ) -> Batch<'a> {
        Batch::new(&self.config, snapshot, pending)
    }

    /// How many feasible nodes a placement looks for among `nodes` before
    /// it stops.
    pub fn feasible_to_find(&self, nodes: usize) -> usize {
        self.config.feasible_to_find(nodes)
    }
}
