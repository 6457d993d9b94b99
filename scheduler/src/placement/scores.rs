//! Scores: how much a node suits an instance, each 0 to [`MAX`], absolute
//! (never normalised over the nodes a placement happened to look at).
//!
//! Node-only scores (preferred node affinity, `PreferNoSchedule`, artifact
//! locality) are computed once per profile and node when a batch starts;
//! the others read the batch's running state, in [`Batch::score`].

use std::collections::BTreeMap;

use berth_api::NodeResources;
use berth_api::scheduling::{PreferredSchedulingTerm, Taint, TaintEffect, Toleration};

use super::batch::{Batch, Load};
use super::config::{Plugin, Strategy};
use super::index::ABSENT;
use super::profile::Profile;
use super::{DEFAULT_SCORE_CPU_MILLIS, DEFAULT_SCORE_MEMORY_BYTES, Demand};

/// The best score of one plugin.
pub(super) const MAX: f64 = 100.0;

/// `NodeAffinity`: the share of preferred-term weight the node matches.
pub(super) fn node_affinity(
    terms: &[PreferredSchedulingTerm],
    labels: &BTreeMap<String, String>,
) -> f64 {
    let weight = |t: &PreferredSchedulingTerm| f64::from(t.weight.max(0));
    let total: f64 = terms.iter().map(weight).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let matched: f64 = terms
        .iter()
        .filter(|t| t.preference.matches(labels))
        .map(weight)
        .sum();
    MAX * matched / total
}

/// `TaintToleration`: full marks without untolerated `PreferNoSchedule`
/// taints, half with one, a third with two...
pub(super) fn taint_toleration(taints: &[Taint], tolerations: &[Toleration]) -> f64 {
    let untolerated = taints
        .iter()
        .filter(|taint| {
            taint.effect == TaintEffect::PreferNoSchedule
                && !tolerations.iter().any(|t| t.tolerates(taint))
        })
        .count();
    MAX / (1.0 + untolerated as f64)
}

/// `ArtifactLocality` of a node that holds the component: the share of
/// nodes holding it, as kube-scheduler's `ImageLocality` scales by spread,
/// so that replicas do not pile onto the few nodes that hold a component
/// nobody else does (compiling it elsewhere costs a second, not a pull).
pub(super) fn artifact_locality(holders: usize, nodes: usize) -> f64 {
    if nodes == 0 {
        return 0.0;
    }
    MAX * holders.min(nodes) as f64 / nodes as f64
}

/// Used share of one resource, 0 to 1 (1 when nothing is allocatable).
fn used(allocatable: u64, requested: u64) -> f64 {
    if allocatable == 0 {
        return 1.0;
    }
    (requested.min(allocatable) as f64) / (allocatable as f64)
}

/// `Fit`: the strategy's score once `demand` is added, counting a request
/// of zero as [`DEFAULT_SCORE_CPU_MILLIS`] and
/// [`DEFAULT_SCORE_MEMORY_BYTES`], as kube-scheduler does.
pub(super) fn resources(
    strategy: Strategy,
    allocatable: NodeResources,
    load: &Load,
    demand: Demand,
) -> f64 {
    let cpu = used(
        allocatable.cpu_millis,
        load.score_cpu
            .saturating_add(nonzero(demand.cpu_millis, DEFAULT_SCORE_CPU_MILLIS)),
    );
    let memory = used(
        allocatable.memory_bytes,
        load.score_memory
            .saturating_add(nonzero(demand.memory_bytes, DEFAULT_SCORE_MEMORY_BYTES)),
    );
    match strategy {
        Strategy::LeastAllocated => MAX * (2.0 - cpu - memory) / 2.0,
        Strategy::MostAllocated => MAX * (cpu + memory) / 2.0,
        Strategy::Balanced => MAX * (1.0 - (cpu - memory).abs() / 2.0),
    }
}

/// A request as scoring counts it: zero reads as the default.
pub(super) fn nonzero(request: u64, default: u64) -> u64 {
    if request == 0 { default } else { request }
}

/// How much `count` matching instances weigh in a preferred term: the first
/// half, and each further one less (1/2, 2/3, 3/4...), so that a score
/// stays bounded without normalising over nodes.
fn presence(count: u32) -> f64 {
    let count = f64::from(count);
    count / (count + 1.0)
}

impl Batch<'_> {
    /// The weighted total of a node that passed every filter;
    /// `static_score` holds the node-only scores.
    pub(super) fn score(
        &self,
        profile: &Profile,
        demand: Demand,
        node: u32,
        static_score: f64,
    ) -> f64 {
        let mut total = static_score;
        let fit = self.config.weight(Plugin::Fit);
        if fit > 0.0
            && let (Some(info), Some(load)) = (
                self.snapshot.nodes.get(node as usize),
                self.loads.get(node as usize),
            )
        {
            total += fit * resources(self.config.strategy, info.allocatable, load, demand);
        }
        let affinity = self.config.weight(Plugin::InterInstanceAffinity);
        if affinity > 0.0 && !(profile.preferred.is_empty() && profile.carried_preferred.is_empty())
        {
            total += affinity * self.preference(profile, node);
        }
        let spread = self.config.weight(Plugin::TopologySpread);
        if spread > 0.0 && profile.spread.iter().any(|r| !r.hard) {
            total += spread * self.spread_score(profile, node);
        }
        total
    }

    /// `InterInstanceAffinity`: 50 when no preferred term says anything,
    /// towards 100 near instances it prefers (or that prefer it), towards 0
    /// near instances it avoids (or that avoid it).
    fn preference(&self, profile: &Profile, node: u32) -> f64 {
        let topology = &self.indexes.topology;
        let mut raw = 0.0;
        let mut norm = 0.0;
        for &(id, weight) in &profile.preferred {
            let Some(counter) = self.indexes.counters.get(id as usize) else {
                continue;
            };
            let domain = topology.domain(node, counter.key);
            if domain != ABSENT {
                raw += weight * presence(counter.count(domain));
            }
            norm += weight.abs();
        }
        for carried in profile
            .carried_preferred
            .iter()
            .filter_map(|&id| self.indexes.carried.get(id as usize))
        {
            let super::index::CarriedKind::Preferred(weight) = carried.kind else {
                continue;
            };
            let domain = topology.domain(node, carried.key);
            if domain != ABSENT {
                raw += weight * presence(carried.count(domain));
            }
            norm += weight.abs();
        }
        if norm <= 0.0 {
            return 0.0;
        }
        MAX / 2.0 + MAX / 2.0 * raw / norm
    }

    /// `TopologySpread` for `ScheduleAnyway` constraints: full marks in the
    /// least loaded domain, less the further a domain is above it (relative
    /// to `maxSkew`), 0 on nodes without the key.
    fn spread_score(&self, profile: &Profile, node: u32) -> f64 {
        let mut sum = 0.0;
        let mut rules = 0.0;
        for rule in profile.spread.iter().filter(|r| !r.hard) {
            rules += 1.0;
            let Some(counter) = self.indexes.counters.get(rule.counter as usize) else {
                continue;
            };
            let domain = self.indexes.topology.domain(node, counter.key);
            if domain == ABSENT {
                continue;
            }
            let min = counter.floor.as_ref().map_or(0, |f| f.min());
            let excess = f64::from(counter.count(domain).saturating_sub(min));
            let skew = f64::from(rule.max_skew);
            sum += MAX * skew / (skew + excess);
        }
        if rules > 0.0 { sum / rules } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use berth_api::scheduling::{NodeSelectorTerm, Operator, Requirement};

    use super::*;

    const GI: u64 = 1 << 30;

    fn load(cpu: u64, memory: u64) -> Load {
        Load {
            score_cpu: cpu,
            score_memory: memory,
            ..Load::default()
        }
    }

    #[test]
    fn strategies_rank_as_their_names_say() {
        let alloc = NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 * GI,
        };
        let demand = Demand {
            cpu_millis: 1000,
            memory_bytes: GI,
        };
        let empty = load(0, 0);
        let half = load(2000, 4 * GI);
        let least = |l: &Load| resources(Strategy::LeastAllocated, alloc, l, demand);
        let most = |l: &Load| resources(Strategy::MostAllocated, alloc, l, demand);
        assert!(least(&empty) > least(&half));
        assert!(most(&empty) < most(&half));
        assert_eq!(least(&empty), 100.0 * (2.0 - 0.25 - 0.125) / 2.0);
        // Balanced: cpu and memory equally used score best.
        let skewed = load(3000, 0);
        let even = load(1000, 3 * GI);
        let balanced = |l: &Load| resources(Strategy::Balanced, alloc, l, demand);
        assert!(balanced(&even) > balanced(&skewed));
        // Zero requests count as the defaults.
        let zero = resources(Strategy::LeastAllocated, alloc, &empty, Demand::default());
        assert!(zero < 100.0);
        // Nothing allocatable scores nothing left.
        assert_eq!(
            resources(
                Strategy::LeastAllocated,
                NodeResources::default(),
                &empty,
                demand
            ),
            0.0
        );
    }

    #[test]
    fn artifact_locality_grows_with_the_share_of_holders() {
        assert_eq!(artifact_locality(1, 4), 25.0);
        assert_eq!(artifact_locality(4, 4), 100.0);
        assert_eq!(artifact_locality(0, 0), 0.0);
    }

    #[test]
    fn preferred_node_affinity_is_the_matched_share_of_weight() {
        let term = |weight, value: &str| PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: vec![Requirement {
                    key: "disk".into(),
                    operator: Operator::In,
                    values: vec![value.into()],
                }],
            },
        };
        let terms = [term(30, "ssd"), term(10, "hdd")];
        let ssd = BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]);
        let none = BTreeMap::new();
        assert_eq!(node_affinity(&terms, &ssd), 75.0);
        assert_eq!(node_affinity(&terms, &none), 0.0);
        assert_eq!(node_affinity(&[], &ssd), 0.0);
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score_unless_tolerated() {
        let spot = Taint {
            key: "spot".into(),
            value: String::new(),
            effect: TaintEffect::PreferNoSchedule,
            time_added: None,
        };
        let hard = Taint {
            effect: TaintEffect::NoSchedule,
            ..spot.clone()
        };
        assert_eq!(taint_toleration(&[], &[]), 100.0);
        assert_eq!(taint_toleration(std::slice::from_ref(&hard), &[]), 100.0);
        assert_eq!(taint_toleration(std::slice::from_ref(&spot), &[]), 50.0);
        let tolerate = Toleration {
            key: "spot".into(),
            ..Toleration::default()
        };
        assert_eq!(taint_toleration(&[spot], &[tolerate]), 100.0);
    }
}
