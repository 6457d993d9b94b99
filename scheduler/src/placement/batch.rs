//! A batch: the running state of one placement pass over one snapshot.

use std::collections::{BTreeMap, HashMap};

use berth_api::scheduling::PreemptionPolicy;

use super::config::Resolved;
use super::filters::{Dyn, Reason, unschedulable_message};
use super::index::{ABSENT, Interner};
use super::profile::{Failure, Hosts, Indexes, Profile};
use super::scores::nonzero;
use super::{
    Binding, DEFAULT_SCORE_CPU_MILLIS, DEFAULT_SCORE_MEMORY_BYTES, Demand, Outcome,
    PendingInstance, Preemption, Snapshot, Unschedulable,
};

/// What became of one pending instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bound to `node`.
    Bound {
        /// The node.
        node: String,
    },
    /// Bound to `node` once `victims` (keys of bound instances) leave it.
    Preempted {
        /// The node.
        node: String,
        /// The instances evicted.
        victims: Vec<String>,
    },
    /// No node fits.
    Unschedulable {
        /// Why, as kube-scheduler words it.
        message: String,
    },
}

/// What a node holds in this batch.
#[derive(Debug, Clone, Default)]
pub(super) struct Load {
    pub cpu: u64,
    pub memory: u64,
    /// Requests as scores count them (zero reads as the default).
    pub score_cpu: u64,
    pub score_memory: u64,
    pub instances: u64,
    /// Ids in [`Batch::placed`].
    pub placed: Vec<u32>,
}

/// A feasible node and how it ranks.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    score: f64,
    instances: u64,
    name: &'a str,
    node: u32,
}

impl Candidate<'_> {
    /// Higher score, then fewer instances, then the lower name.
    fn beats(&self, other: &Candidate<'_>) -> bool {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.instances.cmp(&self.instances))
            .then_with(|| other.name.cmp(self.name))
            .is_gt()
    }
}

/// Where a placed instance's counters come from.
#[derive(Debug)]
enum Source {
    /// Bound in this batch: its profile's.
    Profile(u32),
    /// Bound before: its own.
    Own { feeds: Vec<u32>, carries: Vec<u32> },
}

/// An instance on a node: bound before the batch or in it.
#[derive(Debug)]
pub(super) struct Placed<'a> {
    pub key: &'a str,
    pub node: u32,
    pub demand: Demand,
    pub priority: i32,
    pub terminating: bool,
    source: Source,
    /// Preempted in this batch.
    pub gone: bool,
}

/// Places pending instances one at a time against one snapshot, keeping
/// every index up to date; [`super::Framework::place`] drives it.
#[derive(Debug)]
pub struct Batch<'a> {
    pub(super) config: &'a Resolved,
    pub(super) snapshot: &'a Snapshot,
    pending: &'a [PendingInstance],
    pub(super) indexes: Indexes,
    pub(super) profiles: Vec<Profile>,
    profile_of: Vec<u32>,
    pub(super) loads: Vec<Load>,
    pub(super) placed: Vec<Placed<'a>>,
    to_find: usize,
    /// Bumped whenever something may have become possible that was not:
    /// room freed by preemption, or a placement of lower priority than the
    /// one before (which adds possible victims for the next one up).
    pub(super) epoch: u64,
    /// The priority of the last placement.
    last_priority: Option<i32>,
    decisions: Vec<Option<Decision>>,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Add,
    Remove,
}

impl<'a> Batch<'a> {
    pub(super) fn new(
        config: &'a Resolved,
        snapshot: &'a Snapshot,
        pending: &'a [PendingInstance],
    ) -> Batch<'a> {
        let nodes = &snapshot.nodes;
        let mut indexes = Indexes::new(nodes, &snapshot.bound, pending);

        // Replicas of one template usually come in a row: compare with the
        // previous instance before hashing.
        let mut ids: Interner<usize> = Interner::default();
        let mut profiles: Vec<Profile> = Vec::new();
        let mut profile_of = Vec::with_capacity(pending.len());
        let mut previous: Option<(usize, u32)> = None;
        for (index, p) in pending.iter().enumerate() {
            if let Some((before, id)) = previous
                && pending.get(before).is_some_and(|q| Profile::same(q, p))
            {
                profile_of.push(id);
                previous = Some((index, id));
                continue;
            }
            let hash = Profile::hash(p);
            let same = |rep: &usize| pending.get(*rep).is_some_and(|q| Profile::same(q, p));
            let id = match ids.find(hash, same) {
                Some(id) => id,
                None => {
                    profiles.push(Profile::new(&mut indexes, nodes, p, index));
                    ids.push(hash, index)
                }
            };
            profile_of.push(id);
            previous = Some((index, id));
        }

        let mut node_ids: HashMap<&str, u32> = HashMap::with_capacity(nodes.len());
        for (id, node) in nodes.iter().enumerate() {
            node_ids.entry(node.name.as_str()).or_insert(id as u32);
        }
        let bound: Vec<(usize, u32, Vec<u32>)> = snapshot
            .bound
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let node = *node_ids.get(b.node.as_str())?;
                Some((
                    i,
                    node,
                    indexes.carried_terms(&b.namespace, b.affinity.as_ref()),
                ))
            })
            .collect();
        indexes.finish();

        let hosts = Hosts::new(nodes);
        for profile in &mut profiles {
            if let Some(p) = pending.get(profile.rep) {
                profile.link(&indexes, p);
                profile.evaluate(config, nodes, &hosts, p);
            }
        }

        let mut batch = Batch {
            config,
            snapshot,
            pending,
            indexes,
            profiles,
            profile_of,
            loads: vec![Load::default(); nodes.len()],
            placed: Vec::with_capacity(bound.len() + pending.len()),
            to_find: config.feasible_to_find(nodes.len()),
            epoch: 0,
            last_priority: None,
            decisions: vec![None; pending.len()],
            outcome: Outcome::default(),
        };
        for (index, node, carries) in bound {
            let Some(b) = snapshot.bound.get(index) else {
                continue;
            };
            let feeds = batch.indexes.feeds(&b.namespace, &b.labels);
            let id = batch.placed.len() as u32;
            batch.placed.push(Placed {
                key: &b.key,
                node,
                demand: b.demand,
                priority: b.priority,
                terminating: b.terminating,
                source: Source::Own { feeds, carries },
                gone: false,
            });
            batch.change(id, Change::Add);
        }
        batch
    }

    /// The order [`super::Framework::place`] places in: highest priority
    /// first, as given otherwise.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.pending.len()).collect();
        order.sort_by_key(|&i| {
            std::cmp::Reverse(self.pending.get(i).map_or(i32::MIN, |p| p.priority))
        });
        order
    }

    /// Places pending instance `index` (of the slice the batch was made
    /// with). Placing the same instance again returns the first decision.
    pub fn place(&mut self, index: usize) -> Decision {
        if let Some(Some(decision)) = self.decisions.get(index) {
            return decision.clone();
        }
        let (Some(p), Some(&profile)) = (self.pending.get(index), self.profile_of.get(index))
        else {
            return Decision::Unschedulable {
                message: format!("no pending instance {index}"),
            };
        };
        let decision = self.decide(p, index, profile);
        match &decision {
            Decision::Bound { node } => self.outcome.bindings.push(Binding {
                key: p.key.clone(),
                node: node.clone(),
            }),
            Decision::Preempted { node, victims } => {
                self.outcome.bindings.push(Binding {
                    key: p.key.clone(),
                    node: node.clone(),
                });
                self.outcome.preemptions.push(Preemption {
                    preemptor: p.key.clone(),
                    node: node.clone(),
                    victims: victims.clone(),
                });
            }
            Decision::Unschedulable { message } => self.outcome.unschedulable.push(Unschedulable {
                key: p.key.clone(),
                message: message.clone(),
            }),
        }
        if let Some(slot) = self.decisions.get_mut(index) {
            *slot = Some(decision.clone());
        }
        decision
    }

    /// Every decision made so far.
    pub fn into_outcome(self) -> Outcome {
        self.outcome
    }

    /// The score of every feasible node for pending instance `index`, as an
    /// exhaustive search sees them in the current state: what benchmarks
    /// compare a bounded search's choice with.
    pub fn exhaustive_scores(&self, index: usize) -> Vec<(&'a str, f64)> {
        let snapshot: &'a Snapshot = self.snapshot;
        let (Some(p), Some(profile)) = (
            self.pending.get(index),
            self.profile_of
                .get(index)
                .and_then(|&id| self.profiles.get(id as usize)),
        ) else {
            return Vec::new();
        };
        profile
            .feasible
            .iter()
            .zip(&profile.static_scores)
            .filter(|(node, _)| self.check(profile, p.demand, **node).is_ok())
            .filter_map(|(&node, &static_score)| {
                let name = snapshot.nodes.get(node as usize)?.name.as_str();
                Some((name, self.score(profile, p.demand, node, static_score)))
            })
            .collect()
    }

    fn decide(&mut self, p: &PendingInstance, index: usize, profile: u32) -> Decision {
        if self.last_priority.is_some_and(|last| p.priority < last) {
            self.epoch += 1;
        }
        self.last_priority = Some(p.priority);
        if let Some(failure) = self.profiles.get(profile as usize).and_then(|pr| {
            pr.failed
                .as_ref()
                .filter(|f| pr.may_reuse_failure() && f.epoch == self.epoch)
                .filter(|f| {
                    f.demand == p.demand
                        && f.priority == p.priority
                        && f.preemption_policy == p.preemption_policy
                })
        }) {
            return Decision::Unschedulable {
                message: failure.message.clone(),
            };
        }
        let failures = match self.search(profile, p.demand) {
            Ok(node) => {
                self.bind(index, profile, node);
                return Decision::Bound {
                    node: self.node_name(node),
                };
            }
            Err(failures) => failures,
        };
        if p.preemption_policy == PreemptionPolicy::PreemptLowerPriority
            && let Some((node, victims)) = self.preempt(profile, p)
        {
            let keys = victims
                .iter()
                .filter_map(|&v| self.placed.get(v as usize).map(|v| v.key.to_owned()))
                .collect();
            for victim in victims {
                if let Some(placed) = self.placed.get_mut(victim as usize) {
                    placed.gone = true;
                }
                self.change(victim, Change::Remove);
            }
            self.epoch += 1;
            self.bind(index, profile, node);
            return Decision::Preempted {
                node: self.node_name(node),
                victims: keys,
            };
        }
        let message = self.message(profile, &failures);
        if let Some(pr) = self.profiles.get_mut(profile as usize) {
            pr.failed = Some(Failure {
                epoch: self.epoch,
                demand: p.demand,
                priority: p.priority,
                preemption_policy: p.preemption_policy,
                message: message.clone(),
            });
        }
        Decision::Unschedulable { message }
    }

    fn node_name(&self, node: u32) -> String {
        self.snapshot
            .nodes
            .get(node as usize)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    fn message(&self, profile: u32, failures: &[u32; Dyn::ALL.len()]) -> String {
        let mut reasons: BTreeMap<Reason, u32> = self
            .profiles
            .get(profile as usize)
            .map(|p| p.static_reasons.clone())
            .unwrap_or_default();
        for (reason, count) in Dyn::ALL.iter().zip(failures) {
            if *count > 0 {
                *reasons.entry(Reason::Dynamic(*reason)).or_default() += count;
            }
        }
        unschedulable_message(self.snapshot.nodes.len(), &reasons)
    }

    /// Looks through the profile's nodes from where its last placement
    /// stopped until `to_find` feasible ones are found; the best of those,
    /// or how many nodes failed each dynamic filter.
    fn search(&mut self, profile_id: u32, demand: Demand) -> Result<u32, [u32; Dyn::ALL.len()]> {
        let mut failures = [0u32; Dyn::ALL.len()];
        let Some(profile) = self.profiles.get(profile_id as usize) else {
            return Err(failures);
        };
        let len = profile.feasible.len();
        if len == 0 {
            return Err(failures);
        }
        let start = profile.next % len;
        let mut found = 0;
        let mut processed = 0;
        let mut best: Option<Candidate<'_>> = None;
        for position in (start..len).chain(0..start) {
            processed += 1;
            match self.candidate(profile, demand, position) {
                Ok(candidate) => {
                    found += 1;
                    if best.as_ref().is_none_or(|b| candidate.beats(b)) {
                        best = Some(candidate);
                    }
                    if found >= self.to_find {
                        break;
                    }
                }
                Err(Some(reason)) => {
                    if let Some(count) = failures.get_mut(reason.index()) {
                        *count += 1;
                    }
                }
                Err(None) => {}
            }
        }
        if processed < len {
            let seen = |position: usize| (position + len - start) % len < processed;
            for &position in profile.elite.iter().filter(|p| !seen(**p)) {
                if let Ok(candidate) = self.candidate(profile, demand, position)
                    && best.as_ref().is_none_or(|b| candidate.beats(b))
                {
                    best = Some(candidate);
                }
            }
        }
        let chosen = best.map(|c| c.node);
        if let Some(profile) = self.profiles.get_mut(profile_id as usize) {
            profile.next = (start + processed) % len;
        }
        chosen.ok_or(failures)
    }

    /// The node at `position` of the profile's list, scored, or the
    /// dynamic filter it fails.
    fn candidate(
        &self,
        profile: &Profile,
        demand: Demand,
        position: usize,
    ) -> Result<Candidate<'a>, Option<Dyn>> {
        let snapshot: &'a Snapshot = self.snapshot;
        let (Some(&node), Some(&static_score)) = (
            profile.feasible.get(position),
            profile.static_scores.get(position),
        ) else {
            return Err(None);
        };
        self.check(profile, demand, node).map_err(Some)?;
        Ok(Candidate {
            score: self.score(profile, demand, node, static_score),
            instances: self.loads.get(node as usize).map_or(0, |l| l.instances),
            name: snapshot
                .nodes
                .get(node as usize)
                .map_or("", |n| n.name.as_str()),
            node,
        })
    }

    fn bind(&mut self, index: usize, profile: u32, node: u32) {
        let Some(p) = self.pending.get(index) else {
            return;
        };
        let id = self.placed.len() as u32;
        self.placed.push(Placed {
            key: &p.key,
            node,
            demand: p.demand,
            priority: p.priority,
            terminating: false,
            source: Source::Profile(profile),
            gone: false,
        });
        self.change(id, Change::Add);
    }

    /// Puts placed instance `id` on its node or takes it off, updating the
    /// node's load and every counter the instance feeds.
    pub(super) fn change(&mut self, id: u32, change: Change) {
        let Batch {
            indexes,
            profiles,
            placed,
            loads,
            ..
        } = self;
        let Some(instance) = placed.get(id as usize) else {
            return;
        };
        let node = instance.node;
        let (feeds, carries) = match &instance.source {
            Source::Profile(p) => profiles.get(*p as usize).map_or((&[][..], &[][..]), |p| {
                (p.feeds.as_slice(), p.carries.as_slice())
            }),
            Source::Own { feeds, carries } => (feeds.as_slice(), carries.as_slice()),
        };
        let super::profile::Indexes {
            topology,
            counters,
            carried,
            eligibility,
            ..
        } = indexes;
        for &c in feeds {
            let Some(counter) = counters.get_mut(c as usize) else {
                continue;
            };
            if instance.terminating && !counter.include_terminating {
                continue;
            }
            if let Some(e) = counter.eligibility
                && !eligibility
                    .get(e as usize)
                    .and_then(|e| e.get(node as usize))
                    .copied()
                    .unwrap_or(false)
            {
                continue;
            }
            let domain = topology.domain(node, counter.key);
            if domain == ABSENT {
                continue;
            }
            match change {
                Change::Add => counter.add(domain),
                Change::Remove => counter.remove(domain),
            }
        }
        for &c in carries {
            let Some(carried) = carried.get_mut(c as usize) else {
                continue;
            };
            let domain = topology.domain(node, carried.key);
            if let Some(count) = carried.counts.get_mut(domain as usize) {
                match change {
                    Change::Add => *count += 1,
                    Change::Remove => *count = count.saturating_sub(1),
                }
            }
        }
        let Some(load) = loads.get_mut(node as usize) else {
            return;
        };
        let demand = instance.demand;
        let score_cpu = nonzero(demand.cpu_millis, DEFAULT_SCORE_CPU_MILLIS);
        let score_memory = nonzero(demand.memory_bytes, DEFAULT_SCORE_MEMORY_BYTES);
        match change {
            Change::Add => {
                load.cpu = load.cpu.saturating_add(demand.cpu_millis);
                load.memory = load.memory.saturating_add(demand.memory_bytes);
                load.score_cpu = load.score_cpu.saturating_add(score_cpu);
                load.score_memory = load.score_memory.saturating_add(score_memory);
                load.instances += 1;
                load.placed.push(id);
            }
            Change::Remove => {
                load.cpu = load.cpu.saturating_sub(demand.cpu_millis);
                load.memory = load.memory.saturating_sub(demand.memory_bytes);
                load.score_cpu = load.score_cpu.saturating_sub(score_cpu);
                load.score_memory = load.score_memory.saturating_sub(score_memory);
                load.instances = load.instances.saturating_sub(1);
                load.placed.retain(|&p| p != id);
            }
        }
    }
}
