//! Placement: which node each pending instance goes to.
//!
//! **Architecture Invariant:** this module does no I/O, reads no clock and
//! holds no locks. It takes the nodes as the scheduler last saw them plus the
//! instances to place and returns decisions, so it can be tested with
//! thousands of simulated nodes and replays the same way every time.
//!
//! The engine is a filter/score framework in kube-scheduler's manner: every
//! rule is a plugin with a name; filters say why a node cannot take an
//! instance, scorers rank the nodes left (0 to 100, times the plugin's
//! weight). Today's plugins: `NodeReady`, `Runtime` and `Fit` (filters),
//! `LeastAllocated` (scorer). Ties go to the node with fewer instances, then
//! to the lower name, so placement is deterministic.

use std::collections::BTreeMap;

use berth_api::NodeResources;

/// The CPU an instance without a request counts as when scoring, as in
/// Kubernetes (`100m`), so that request-less instances still spread.
pub const DEFAULT_SCORE_CPU_MILLIS: u64 = 100;

/// The memory an instance without a request counts as when scoring (`200Mi`).
pub const DEFAULT_SCORE_MEMORY_BYTES: u64 = 200 * 1024 * 1024;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Node name.
    pub name: String,
    /// Whether the node is Ready.
    pub ready: bool,
    /// Runtime kinds it offers.
    pub runtimes: Vec<String>,
    /// What instances may reserve.
    pub allocatable: NodeResources,
    /// What bound instances already reserve.
    pub requested: NodeResources,
    /// How many instances are bound to it.
    pub instances: u64,
}

/// What an instance asks of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    /// CPU request in millicores.
    pub cpu_millis: u64,
    /// Memory request in bytes.
    pub memory_bytes: u64,
    /// Runtime kind required.
    pub runtime: Runtime,
}

/// Runtime kinds an instance can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// A WebAssembly component.
    #[default]
    Wasm,
}

impl Runtime {
    /// The name nodes advertise.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Wasm => "wasm",
        }
    }
}

/// A rule that rules nodes out.
pub trait Filter: Send + Sync {
    /// Plugin name, as in the config file.
    fn name(&self) -> &'static str;
    /// `Err(reason)` when `node` cannot take `demand`; reasons are grouped
    /// in the unschedulable message (`2 Insufficient cpu`).
    fn filter(&self, node: &NodeState, demand: &Demand) -> Result<(), &'static str>;
}

/// A rule that ranks the nodes left.
pub trait Scorer: Send + Sync {
    /// Plugin name, as in the config file.
    fn name(&self) -> &'static str;
    /// 0 (worst) to 100 (best).
    fn score(&self, node: &NodeState, demand: &Demand) -> u64;
}

/// Rejects nodes that are not Ready.
#[derive(Debug)]
pub struct NodeReady;

impl Filter for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }
    fn filter(&self, node: &NodeState, _: &Demand) -> Result<(), &'static str> {
        if node.ready {
            Ok(())
        } else {
            Err("node(s) were not ready")
        }
    }
}

/// Rejects nodes that do not offer the instance's runtime kind.
#[derive(Debug)]
pub struct RuntimeFilter;

impl Filter for RuntimeFilter {
    fn name(&self) -> &'static str {
        "Runtime"
    }
    fn filter(&self, node: &NodeState, demand: &Demand) -> Result<(), &'static str> {
        if node.runtimes.iter().any(|r| r == demand.runtime.as_str()) {
            Ok(())
        } else {
            Err("node(s) did not offer the runtime")
        }
    }
}

/// Rejects nodes without room for the instance's requests.
#[derive(Debug)]
pub struct Fit;

impl Filter for Fit {
    fn name(&self) -> &'static str {
        "Fit"
    }
    fn filter(&self, node: &NodeState, demand: &Demand) -> Result<(), &'static str> {
        let free_cpu = node
            .allocatable
            .cpu_millis
            .saturating_sub(node.requested.cpu_millis);
        let free_memory = node
            .allocatable
            .memory_bytes
            .saturating_sub(node.requested.memory_bytes);
        if demand.cpu_millis > free_cpu {
            Err("Insufficient cpu")
        } else if demand.memory_bytes > free_memory {
            Err("Insufficient memory")
        } else {
            Ok(())
        }
    }
}

/// Prefers the node with the most room left after placing, averaging cpu
/// and memory (kube-scheduler's `LeastAllocated`).
#[derive(Debug)]
pub struct LeastAllocated;

fn free_share(allocatable: u64, requested: u64, asked: u64) -> u64 {
    if allocatable == 0 {
        return 0;
    }
    let used = requested.saturating_add(asked).min(allocatable);
    (allocatable - used).saturating_mul(100) / allocatable
}

impl Scorer for LeastAllocated {
    fn name(&self) -> &'static str {
        "LeastAllocated"
    }
    fn score(&self, node: &NodeState, demand: &Demand) -> u64 {
        let cpu = free_share(
            node.allocatable.cpu_millis,
            node.requested.cpu_millis,
            demand.cpu_millis.max(DEFAULT_SCORE_CPU_MILLIS),
        );
        let memory = free_share(
            node.allocatable.memory_bytes,
            node.requested.memory_bytes,
            demand.memory_bytes.max(DEFAULT_SCORE_MEMORY_BYTES),
        );
        (cpu + memory) / 2
    }
}

/// The outcome for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// No node fits; the message says why, as kube-scheduler does
    /// (`0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready.`).
    Unschedulable(String),
}

/// The configured plugins.
pub struct Framework {
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<(Box<dyn Scorer>, u64)>,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framework")
            .field(
                "filters",
                &self.filters.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field(
                "scorers",
                &self
                    .scorers
                    .iter()
                    .map(|(p, w)| (p.name(), *w))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Framework {
    fn default() -> Self {
        Framework {
            filters: vec![Box::new(NodeReady), Box::new(RuntimeFilter), Box::new(Fit)],
            scorers: vec![(Box::new(LeastAllocated), 1)],
        }
    }
}

impl Framework {
    /// Places `demands` in order, updating `nodes` as each binding takes
    /// room, so later instances see earlier ones.
    pub fn place(&self, nodes: &mut [NodeState], demands: &[Demand]) -> Vec<Decision> {
        demands
            .iter()
            .map(|demand| self.place_one(nodes, demand))
            .collect()
    }

    fn place_one(&self, nodes: &mut [NodeState], demand: &Demand) -> Decision {
        let mut rejected: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut best: Option<(usize, u64)> = None;
        for (index, node) in nodes.iter().enumerate() {
            if let Some(reason) = self
                .filters
                .iter()
                .find_map(|f| f.filter(node, demand).err())
            {
                *rejected.entry(reason).or_default() += 1;
                continue;
            }
            let score: u64 = self
                .scorers
                .iter()
                .map(|(s, weight)| s.score(node, demand).saturating_mul(*weight))
                .sum();
            let better = match best.and_then(|(i, s)| nodes.get(i).map(|n| (n, s))) {
                None => true,
                Some((current, current_score)) => {
                    (
                        score,
                        std::cmp::Reverse(node.instances),
                        std::cmp::Reverse(&node.name),
                    ) > (
                        current_score,
                        std::cmp::Reverse(current.instances),
                        std::cmp::Reverse(&current.name),
                    )
                }
            };
            if better {
                best = Some((index, score));
            }
        }
        match best.and_then(|(index, _)| nodes.get_mut(index)) {
            Some(node) => {
                node.requested.cpu_millis += demand.cpu_millis;
                node.requested.memory_bytes += demand.memory_bytes;
                node.instances += 1;
                Decision::Bind(node.name.clone())
            }
            None => {
                let reasons: Vec<String> = rejected
                    .iter()
                    .map(|(reason, count)| format!("{count} {reason}"))
                    .collect();
                let detail = if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" {}.", reasons.join(", "))
                };
                Decision::Unschedulable(format!("0/{} nodes are available:{detail}", nodes.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: u64, memory: u64) -> NodeState {
        NodeState {
            name: name.into(),
            ready: true,
            runtimes: vec!["wasm".into()],
            allocatable: NodeResources {
                cpu_millis: cpu,
                memory_bytes: memory,
            },
            requested: NodeResources::default(),
            instances: 0,
        }
    }

    const GI: u64 = 1024 * 1024 * 1024;

    fn demand(cpu: u64, memory: u64) -> Demand {
        Demand {
            cpu_millis: cpu,
            memory_bytes: memory,
            runtime: Runtime::Wasm,
        }
    }

    #[test]
    fn spreads_over_equal_nodes() {
        let mut nodes = vec![node("a", 2000, 4 * GI), node("b", 2000, 4 * GI)];
        let decisions = Framework::default().place(&mut nodes, &[demand(0, 0); 3]);
        let on_a = decisions
            .iter()
            .filter(|d| **d == Decision::Bind("a".into()))
            .count();
        assert_eq!(on_a, 2, "{decisions:?}");
        assert_eq!(nodes[1].instances, 1);
    }

    #[test]
    fn prefers_the_least_allocated_node() {
        let mut nodes = vec![node("a", 1000, GI), node("b", 4000, 8 * GI)];
        let decisions = Framework::default().place(&mut nodes, &[demand(500, GI / 4)]);
        assert_eq!(decisions, [Decision::Bind("b".into())]);
    }

    #[test]
    fn explains_why_nothing_fits() {
        let mut nodes = vec![
            node("a", 1000, GI),
            node("b", 1000, GI),
            node("c", 8000, GI),
        ];
        nodes[2].ready = false;
        let decisions = Framework::default().place(&mut nodes, &[demand(2000, 0)]);
        assert_eq!(
            decisions,
            [Decision::Unschedulable(
                "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready.".into()
            )]
        );
    }

    #[test]
    fn bindings_consume_room() {
        let mut nodes = vec![node("a", 1000, GI)];
        let decisions = Framework::default().place(&mut nodes, &[demand(600, 0), demand(600, 0)]);
        assert_eq!(decisions[0], Decision::Bind("a".into()));
        assert!(matches!(decisions[1], Decision::Unschedulable(_)));
    }

    #[test]
    fn never_overcommits_random_clusters() {
        // A small deterministic generator stands in for a property-test
        // crate: the invariant is that no node is ever given more than it
        // has, whatever the mix.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..200 {
            let mut nodes: Vec<_> = (0..1 + next(8))
                .map(|i| node(&format!("n{i}"), 500 + next(4000), GI / 2 + next(4 * GI)))
                .collect();
            let demands: Vec<_> = (0..next(40))
                .map(|_| demand(next(1500), next(GI)))
                .collect();
            Framework::default().place(&mut nodes, &demands);
            for n in &nodes {
                assert!(n.requested.cpu_millis <= n.allocatable.cpu_millis);
                assert!(n.requested.memory_bytes <= n.allocatable.memory_bytes);
            }
        }
    }
}
