//! Profiles: what instances with the same scheduling fields (the replicas
//! of one template) share, computed once per batch: the nodes that pass the
//! node-only filters with their node-only scores, and the counters their
//! affinity, anti-affinity and spread rules read and feed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;

use berth_api::scheduling::{
    Affinity, AffinityTerm, InstanceAffinity, NodeSelector, PreemptionPolicy, WhenUnsatisfiable,
};
use serde::Serialize;

use super::config::{Plugin, Resolved};
use super::filters::{self, Host, Reason};
use super::index::{
    ABSENT, Carried, CarriedKind, Clause, Counter, CounterKey, Floor, Interner, Matcher,
    MatcherIndex, Topology, fingerprint,
};
use super::{BoundInstance, Demand, NodeInfo, PendingInstance, scores};

/// The interned selectors and the counters over them.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    pub topology: Topology,
    pub matchers: Interner<Matcher>,
    counter_ids: HashMap<CounterKey, u32>,
    pub counters: Vec<Counter>,
    carried_ids: HashMap<(u32, u32, Option<u64>), u32>,
    pub carried: Vec<Carried>,
    eligibility_ids: Interner<EligibilityKey>,
    pub eligibility: Vec<Vec<bool>>,
    counters_by_matcher: Vec<Vec<u32>>,
    carried_by_matcher: Vec<Vec<u32>>,
    matcher_index: MatcherIndex,
}

/// Which nodes a spread constraint counts on: those passing the owner's
/// node selector and required node affinity and carrying every key of its
/// constraints (kube-scheduler's `nodeAffinityPolicy: Honor`,
/// `nodeTaintsPolicy: Ignore`).
#[derive(Debug, PartialEq, Serialize)]
struct EligibilityKey {
    node_selector: BTreeMap<String, String>,
    required: Option<NodeSelector>,
    keys: Vec<u32>,
}

/// The required terms of one side of an affinity.
fn required(side: Option<&InstanceAffinity>) -> &[AffinityTerm] {
    side.map_or(&[][..], |s| {
        s.required_during_scheduling_ignored_during_execution
            .as_slice()
    })
}

/// Every topology key a term of these instances names.
fn topology_keys<'a>(
    snapshot_bound: &'a [BoundInstance],
    pending: &'a [PendingInstance],
) -> BTreeSet<&'a str> {
    let mut keys = BTreeSet::new();
    let affinities = snapshot_bound
        .iter()
        .map(|b| b.affinity.as_ref())
        .chain(pending.iter().map(|p| p.affinity.as_ref()));
    for affinity in affinities.flatten() {
        for side in [
            &affinity.instance_affinity,
            &affinity.instance_anti_affinity,
        ]
        .into_iter()
        .flatten()
        {
            for term in &side.required_during_scheduling_ignored_during_execution {
                keys.insert(term.topology_key.as_str());
            }
            for weighted in &side.preferred_during_scheduling_ignored_during_execution {
                keys.insert(weighted.instance_affinity_term.topology_key.as_str());
            }
        }
    }
    for p in pending {
        for constraint in &p.topology_spread_constraints {
            keys.insert(constraint.topology_key.as_str());
        }
    }
    keys
}

impl Indexes {
    pub fn new(
        nodes: &[NodeInfo],
        bound: &[BoundInstance],
        pending: &[PendingInstance],
    ) -> Indexes {
        Indexes {
            topology: Topology::new(&topology_keys(bound, pending), nodes),
            ..Indexes::default()
        }
    }

    fn key(&self, name: &str) -> u32 {
        // Every key was interned up front; a miss reads as absent everywhere.
        self.topology.key(name).unwrap_or(ABSENT)
    }

    fn matcher(&mut self, clauses: Vec<Clause>) -> u32 {
        let matcher = Matcher { clauses };
        let hash = matcher.hash();
        self.matchers.intern(hash, matcher)
    }

    fn counter(&mut self, key: CounterKey) -> u32 {
        if let Some(&id) = self.counter_ids.get(&key) {
            return id;
        }
        let domains = self.topology.values(key.key);
        let floor = key.eligibility.map(|e| {
            let mut seen = vec![false; domains];
            let eligible = self
                .eligibility
                .get(e as usize)
                .map_or(&[][..], Vec::as_slice);
            for (node, _) in eligible.iter().enumerate().filter(|(_, ok)| **ok) {
                let domain = self.topology.domain(node as u32, key.key);
                if let Some(slot) = seen.get_mut(domain as usize) {
                    *slot = true;
                }
            }
            Floor::new(seen.iter().filter(|s| **s).count() as u32)
        });
        let id = self.counters.len() as u32;
        self.counters.push(Counter {
            key: key.key,
            include_terminating: key.include_terminating,
            eligibility: key.eligibility,
            counts: vec![0; domains],
            total: 0,
            floor,
        });
        self.counter_ids.insert(key, id);
        id
    }

    fn carried(&mut self, matcher: u32, key: u32, kind: CarriedKind) -> u32 {
        let weight = match kind {
            CarriedKind::RequiredAnti => None,
            CarriedKind::Preferred(w) => Some(w.to_bits()),
        };
        if let Some(&id) = self.carried_ids.get(&(matcher, key, weight)) {
            return id;
        }
        let id = self.carried.len() as u32;
        self.carried.push(Carried {
            matcher,
            key,
            kind,
            counts: vec![0; self.topology.values(key)],
        });
        self.carried_ids.insert((matcher, key, weight), id);
        id
    }

    fn eligibility(&mut self, nodes: &[NodeInfo], p: &PendingInstance, keys: Vec<u32>) -> u32 {
        let key = EligibilityKey {
            node_selector: p.node_selector.clone(),
            required: p
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .clone()
                }),
            keys,
        };
        let mut hasher = DefaultHasher::new();
        fingerprint(&mut hasher, &key);
        let hash = hasher.finish();
        if let Some(id) = self.eligibility_ids.find(hash, |k| *k == key) {
            return id;
        }
        let eligible = nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                filters::selector_matches(&key.node_selector, &node.labels)
                    && key
                        .required
                        .as_ref()
                        .is_none_or(|r| r.matches(&node.labels))
                    && key
                        .keys
                        .iter()
                        .all(|&k| self.topology.domain(id as u32, k) != ABSENT)
            })
            .collect();
        self.eligibility.push(eligible);
        self.eligibility_ids.push(hash, key)
    }

    /// The terms an instance carries, seen from newcomers: its required
    /// anti-affinity and its preferred affinity and anti-affinity.
    pub fn carried_terms(&mut self, namespace: &str, affinity: Option<&Affinity>) -> Vec<u32> {
        let mut ids = Vec::new();
        let Some(affinity) = affinity else {
            return ids;
        };
        if let Some(anti) = &affinity.instance_anti_affinity {
            for term in &anti.required_during_scheduling_ignored_during_execution {
                let m = self.matcher(vec![Clause::new(
                    &term.namespaces,
                    namespace,
                    &term.label_selector,
                )]);
                let key = self.key(&term.topology_key);
                ids.push(self.carried(m, key, CarriedKind::RequiredAnti));
            }
        }
        for (side, sign) in [
            (&affinity.instance_affinity, 1.0),
            (&affinity.instance_anti_affinity, -1.0),
        ] {
            for weighted in side
                .iter()
                .flat_map(|s| &s.preferred_during_scheduling_ignored_during_execution)
            {
                let term = &weighted.instance_affinity_term;
                let m = self.matcher(vec![Clause::new(
                    &term.namespaces,
                    namespace,
                    &term.label_selector,
                )]);
                let key = self.key(&term.topology_key);
                let kind = CarriedKind::Preferred(sign * f64::from(weighted.weight));
                ids.push(self.carried(m, key, kind));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Builds the lookups from matchers to counters; call once every
    /// matcher is interned.
    pub fn finish(&mut self) {
        let count = self.matchers.items().len();
        self.counters_by_matcher = vec![Vec::new(); count];
        for (key, &id) in &self.counter_ids {
            if let Some(list) = self.counters_by_matcher.get_mut(key.matcher as usize) {
                list.push(id);
            }
        }
        for list in &mut self.counters_by_matcher {
            list.sort_unstable();
        }
        self.carried_by_matcher = vec![Vec::new(); count];
        for (id, carried) in self.carried.iter().enumerate() {
            if let Some(list) = self.carried_by_matcher.get_mut(carried.matcher as usize) {
                list.push(id as u32);
            }
        }
        self.matcher_index = MatcherIndex::new(self.matchers.items());
    }

    /// The counters an instance of `(namespace, labels)` counts in.
    pub fn feeds(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<u32> {
        self.matcher_index
            .matching(self.matchers.items(), namespace, labels)
            .into_iter()
            .filter_map(|m| self.counters_by_matcher.get(m as usize))
            .flatten()
            .copied()
            .collect()
    }

    /// The carried terms that select `(namespace, labels)`.
    fn selecting(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<u32> {
        self.matcher_index
            .matching(self.matchers.items(), namespace, labels)
            .into_iter()
            .filter_map(|m| self.carried_by_matcher.get(m as usize))
            .flatten()
            .copied()
            .collect()
    }
}

/// How many nodes with the best node-only scores a bounded search looks at
/// besides its window (about 6% more work at the default 500-node window).
pub(super) const ELITE: usize = 32;

/// A topology spread constraint of a profile.
#[derive(Debug, Clone)]
pub(super) struct SpreadRule {
    pub counter: u32,
    pub max_skew: u32,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Whether the instance itself matches the constraint's selector.
    pub self_match: bool,
}

/// A placement of this profile found no node; valid while nothing is freed
/// (see [`Profile::failed`]).
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub epoch: u64,
    pub demand: Demand,
    pub priority: i32,
    pub preemption_policy: PreemptionPolicy,
    pub message: String,
}

/// What instances with the same scheduling fields share.
#[derive(Debug)]
pub(super) struct Profile {
    /// The pending instance it was built from.
    pub rep: usize,
    /// Counters of the required affinity terms (one per term, all over the
    /// instances matching every term).
    pub affinity: Vec<u32>,
    /// The instance matches its own affinity terms.
    pub affinity_self: bool,
    /// Counters of the required anti-affinity terms.
    pub anti: Vec<u32>,
    /// Counters of preferred terms, with signed weights.
    pub preferred: Vec<(u32, f64)>,
    pub spread: Vec<SpreadRule>,
    /// Terms its instances carry.
    pub carries: Vec<u32>,
    /// Counters its instances count in.
    pub feeds: Vec<u32>,
    /// Carried required anti-affinity terms that select it.
    pub carried_anti: Vec<u32>,
    /// Carried preferred terms that select it.
    pub carried_preferred: Vec<u32>,
    /// Nodes passing the node-only filters, ascending.
    pub feasible: Vec<u32>,
    /// Weighted node-only scores, one per entry of `feasible`.
    pub static_scores: Vec<f64>,
    /// Positions in `feasible` of the nodes with the best node-only
    /// scores (see [`ELITE`]).
    pub elite: Vec<usize>,
    /// Why the other nodes failed.
    pub static_reasons: BTreeMap<Reason, u32>,
    /// Where in `feasible` the next placement starts looking.
    pub next: usize,
    /// The last placement that found no node. Placements only take room
    /// and add instances, which cannot make a node pass `Fit` or
    /// anti-affinity, so until the batch's epoch moves (room freed, or an
    /// instance of lower priority placed, a possible victim) another
    /// instance of the same profile, demand, priority and preemption policy
    /// fails too. Profiles with required affinity or spread, which new
    /// instances can satisfy, never reuse it.
    pub failed: Option<Failure>,
}

impl Profile {
    /// Whether `a` and `b` can share a profile.
    pub fn same(a: &PendingInstance, b: &PendingInstance) -> bool {
        a.namespace == b.namespace
            && a.labels == b.labels
            && a.runtime == b.runtime
            && a.component == b.component
            && a.node_name == b.node_name
            && a.node_selector == b.node_selector
            && a.imports == b.imports
            && a.tolerations == b.tolerations
            && a.affinity == b.affinity
            && a.topology_spread_constraints == b.topology_spread_constraints
    }

    pub fn hash(p: &PendingInstance) -> u64 {
        let mut hasher = DefaultHasher::new();
        hasher.write(p.namespace.as_bytes());
        hasher.write(p.runtime.as_str().as_bytes());
        hasher.write(p.component.as_bytes());
        fingerprint(&mut hasher, &p.labels);
        fingerprint(&mut hasher, &p.node_name);
        fingerprint(&mut hasher, &p.node_selector);
        fingerprint(&mut hasher, &p.imports);
        fingerprint(&mut hasher, &p.tolerations);
        fingerprint(&mut hasher, &p.affinity);
        fingerprint(&mut hasher, &p.topology_spread_constraints);
        hasher.finish()
    }

    /// The counters and carried terms of `p`'s rules.
    pub fn new(
        indexes: &mut Indexes,
        nodes: &[NodeInfo],
        p: &PendingInstance,
        rep: usize,
    ) -> Profile {
        let namespace = p.namespace.as_str();
        let rules = p.affinity.as_ref();
        let affinity_terms = required(rules.and_then(|a| a.instance_affinity.as_ref()));
        let anti_terms = required(rules.and_then(|a| a.instance_anti_affinity.as_ref()));
        let mut affinity = Vec::new();
        let mut affinity_self = false;
        if !affinity_terms.is_empty() {
            let clauses: Vec<Clause> = affinity_terms
                .iter()
                .map(|t| Clause::new(&t.namespaces, namespace, &t.label_selector))
                .collect();
            affinity_self = clauses.iter().all(|c| c.matches(namespace, &p.labels));
            let m = indexes.matcher(clauses);
            for term in affinity_terms {
                let key = indexes.key(&term.topology_key);
                affinity.push(indexes.counter(CounterKey {
                    matcher: m,
                    key,
                    include_terminating: true,
                    eligibility: None,
                }));
            }
        }
        let mut anti = Vec::new();
        for term in anti_terms {
            let m = indexes.matcher(vec![Clause::new(
                &term.namespaces,
                namespace,
                &term.label_selector,
            )]);
            let key = indexes.key(&term.topology_key);
            anti.push(indexes.counter(CounterKey {
                matcher: m,
                key,
                include_terminating: true,
                eligibility: None,
            }));
        }
        let mut preferred = Vec::new();
        if let Some(a) = &p.affinity {
            for (side, sign) in [
                (&a.instance_affinity, 1.0),
                (&a.instance_anti_affinity, -1.0),
            ] {
                for weighted in side
                    .iter()
                    .flat_map(|s| &s.preferred_during_scheduling_ignored_during_execution)
                {
                    let term = &weighted.instance_affinity_term;
                    let m = indexes.matcher(vec![Clause::new(
                        &term.namespaces,
                        namespace,
                        &term.label_selector,
                    )]);
                    let key = indexes.key(&term.topology_key);
                    let counter = indexes.counter(CounterKey {
                        matcher: m,
                        key,
                        include_terminating: true,
                        eligibility: None,
                    });
                    preferred.push((counter, sign * f64::from(weighted.weight)));
                }
            }
        }
        let mut spread = Vec::new();
        if !p.topology_spread_constraints.is_empty() {
            let mut keys: Vec<u32> = p
                .topology_spread_constraints
                .iter()
                .map(|c| indexes.key(&c.topology_key))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            let eligibility = indexes.eligibility(nodes, p, keys);
            for constraint in &p.topology_spread_constraints {
                let clause = Clause::new(&[], namespace, &constraint.label_selector);
                let self_match = clause.matches(namespace, &p.labels);
                let m = indexes.matcher(vec![clause]);
                let key = indexes.key(&constraint.topology_key);
                let counter = indexes.counter(CounterKey {
                    matcher: m,
                    key,
                    include_terminating: false,
                    eligibility: Some(eligibility),
                });
                spread.push(SpreadRule {
                    counter,
                    max_skew: u32::try_from(constraint.max_skew.max(1)).unwrap_or(1),
                    hard: constraint.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule,
                    self_match,
                });
            }
        }
        let carries = indexes.carried_terms(namespace, p.affinity.as_ref());
        Profile {
            rep,
            affinity,
            affinity_self,
            anti,
            preferred,
            spread,
            carries,
            feeds: Vec::new(),
            carried_anti: Vec::new(),
            carried_preferred: Vec::new(),
            feasible: Vec::new(),
            static_scores: Vec::new(),
            elite: Vec::new(),
            static_reasons: BTreeMap::new(),
            next: 0,
            failed: None,
        }
    }

    /// Whether a failed placement can be reused (see [`Profile::failed`]).
    pub fn may_reuse_failure(&self) -> bool {
        self.affinity.is_empty() && self.spread.is_empty()
    }

    /// Fills in the counters and carried terms that select this profile;
    /// after [`Indexes::finish`].
    pub fn link(&mut self, indexes: &Indexes, p: &PendingInstance) {
        self.feeds = indexes.feeds(&p.namespace, &p.labels);
        for id in indexes.selecting(&p.namespace, &p.labels) {
            match indexes.carried.get(id as usize).map(|c| c.kind) {
                Some(CarriedKind::RequiredAnti) => self.carried_anti.push(id),
                Some(CarriedKind::Preferred(_)) => self.carried_preferred.push(id),
                None => {}
            }
        }
    }

    /// Runs the node-only filters and scores over every node.
    pub fn evaluate(
        &mut self,
        config: &Resolved,
        nodes: &[NodeInfo],
        hosts: &Hosts,
        p: &PendingInstance,
    ) {
        let mut host_results: Vec<Option<Result<(), Reason>>> = vec![None; hosts.hosts.len()];
        let holds: Vec<u32> = hosts
            .holders
            .get(p.component.as_str())
            .cloned()
            .unwrap_or_default();
        let preferred_terms = p
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .map_or(&[][..], |n| {
                &n.preferred_during_scheduling_ignored_during_execution
            });
        let node_affinity_weight = config.weight(Plugin::NodeAffinity);
        let taint_weight = config.weight(Plugin::TaintToleration);
        let locality_weight = config.weight(Plugin::ArtifactLocality);
        for (id, node) in nodes.iter().enumerate() {
            let reason = self.static_reason(config, node, p, || {
                let host = hosts.host_of.get(id).copied().unwrap_or(0) as usize;
                match host_results.get_mut(host) {
                    Some(Some(result)) => result.clone(),
                    Some(slot) => {
                        let result = hosts
                            .hosts
                            .get(host)
                            .map_or(Ok(()), |h| h.check(p.runtime, &p.imports));
                        *slot = Some(result.clone());
                        result
                    }
                    None => Ok(()),
                }
            });
            if let Some(reason) = reason {
                *self.static_reasons.entry(reason).or_default() += 1;
                continue;
            }
            let mut score = 0.0;
            if node_affinity_weight > 0.0 && !preferred_terms.is_empty() {
                score +=
                    node_affinity_weight * scores::node_affinity(preferred_terms, &node.labels);
            }
            if taint_weight > 0.0 {
                score += taint_weight * scores::taint_toleration(&node.taints, &p.tolerations);
            }
            if locality_weight > 0.0 && holds.binary_search(&(id as u32)).is_ok() {
                score += locality_weight * scores::artifact_locality(holds.len(), nodes.len());
            }
            self.feasible.push(id as u32);
            self.static_scores.push(score);
        }
        self.pick_elite();
    }

    /// The [`ELITE`] nodes with the best node-only scores, if those differ
    /// at all: a bounded search looks at them besides its window, so that
    /// a node preferred for its labels, its lack of `PreferNoSchedule`
    /// taints or the component it holds is not missed because it fell
    /// outside the window.
    fn pick_elite(&mut self) {
        let lowest = self
            .static_scores
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let mut elite: Vec<usize> = (0..self.static_scores.len())
            .filter(|&position| {
                self.static_scores
                    .get(position)
                    .is_some_and(|s| *s > lowest)
            })
            .collect();
        let score = |position: &usize| self.static_scores.get(*position).copied().unwrap_or(0.0);
        elite.sort_by(|a, b| score(b).total_cmp(&score(a)).then(a.cmp(b)));
        elite.truncate(ELITE);
        elite.sort_unstable();
        self.elite = elite;
    }

    fn static_reason(
        &self,
        config: &Resolved,
        node: &NodeInfo,
        p: &PendingInstance,
        runtime: impl FnOnce() -> Result<(), Reason>,
    ) -> Option<Reason> {
        if config.on(Plugin::NodeConditions) {
            if !node.ready {
                return Some(Reason::NotReady);
            }
            if node.unschedulable {
                return Some(Reason::Cordoned);
            }
        }
        if config.on(Plugin::NodeName) && p.node_name.as_ref().is_some_and(|n| *n != node.name) {
            return Some(Reason::NodeName);
        }
        if config.on(Plugin::TaintToleration)
            && let Some(taint) = filters::untolerated_taint(&node.taints, &p.tolerations)
        {
            return Some(Reason::Taint {
                key: taint.key.clone(),
                value: taint.value.clone(),
            });
        }
        if config.on(Plugin::NodeSelector)
            && !filters::selector_matches(&p.node_selector, &node.labels)
        {
            return Some(Reason::NodeSelector);
        }
        if config.on(Plugin::NodeAffinity)
            && !filters::node_affinity_matches(p.affinity.as_ref(), &node.labels)
        {
            return Some(Reason::NodeAffinity);
        }
        if config.on(Plugin::Runtime) {
            return runtime().err();
        }
        None
    }
}

/// The nodes' hosts, shared by nodes with the same runtimes and
/// interfaces, and which nodes hold which component.
#[derive(Debug, Default)]
pub(super) struct Hosts {
    hosts: Vec<Host>,
    host_of: Vec<u32>,
    /// Component digest → nodes holding it, ascending.
    holders: HashMap<String, Vec<u32>>,
}

impl Hosts {
    pub fn new(nodes: &[NodeInfo]) -> Hosts {
        let mut ids: Interner<(&[String], &[String])> = Interner::default();
        let mut hosts = Hosts::default();
        for (id, node) in nodes.iter().enumerate() {
            let mut hasher = DefaultHasher::new();
            fingerprint(&mut hasher, &node.runtimes);
            fingerprint(&mut hasher, &node.interfaces);
            let lists = (node.runtimes.as_slice(), node.interfaces.as_slice());
            let host = match ids.find(hasher.finish(), |l| *l == lists) {
                Some(host) => host,
                None => {
                    hosts
                        .hosts
                        .push(Host::new(&node.runtimes, &node.interfaces));
                    ids.push(hasher.finish(), lists)
                }
            };
            hosts.host_of.push(host);
            for component in &node.components {
                let holders = hosts.holders.entry(component.clone()).or_default();
                if holders.last() != Some(&(id as u32)) {
                    holders.push(id as u32);
                }
            }
        }
        hosts
    }
}
