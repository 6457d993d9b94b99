//! Placement throughput, latency and quality with simulated nodes, in one
//! process on one core.
//!
//! For 1,000, 5,000 and 10,000 nodes and two workloads:
//! - **resources**: requests only;
//! - **mix**: 30% of the Deployments carry inter-instance affinity or
//!   anti-affinity (required anti-affinity on the hostname, required
//!   affinity to another app's zone, or preferred anti-affinity), 10% of
//!   the nodes are tainted `gpu=true:NoSchedule` (a tenth of the
//!   Deployments tolerate it), and half the Deployments spread over 10
//!   zones (`maxSkew: 2`, half `DoNotSchedule`, half `ScheduleAnyway`);
//!   some select `disktype: ssd`.
//!
//! Each run starts from two bound instances per node and places a batch of
//! pending replicas of 100 Deployments with the default config (adaptive
//! `percentageOfNodesToScore`). Placements/s counts the batch's setup (the
//! indexes) and every placement; p50/p99 are per placement. Quality: for
//! every 50th placement, the chosen node's score over the best feasible
//! node's score under exhaustive search on the same state (1.0: the best).
//!
//! Run: `cargo bench -p berth-scheduler --bench placement`.

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_api::NodeResources;
use berth_api::scheduling::{
    Affinity, AffinityTerm, InstanceAffinity, Selector, Taint, Toleration,
    TopologySpreadConstraint, WeightedAffinityTerm, WhenUnsatisfiable,
};
use berth_scheduler::placement::{
    BoundInstance, Config, Decision, Demand, Framework, NodeInfo, PendingInstance, Snapshot,
};

const GI: u64 = 1 << 30;
const MI: u64 = 1 << 20;
const HOSTNAME: &str = "berth.dev/hostname";
const ZONE: &str = "topology.berth.dev/zone";
const ZONES: usize = 10;
const DEPLOYMENTS: usize = 100;
const QUALITY_EVERY: usize = 50;

/// xorshift64*: deterministic, so every run places the same cluster.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Resources,
    Mix,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Resources => "resources",
            Workload::Mix => "mix",
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn nodes(count: usize, workload: Workload, rng: &mut Rng) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| {
            let name = format!("node-{i:05}");
            let zone = format!("zone-{}", i % ZONES);
            let disk = if rng.chance(50) { "ssd" } else { "hdd" };
            let mut taints = Vec::new();
            if workload == Workload::Mix && rng.chance(10) {
                taints.push(Taint::parse("gpu=true:NoSchedule").unwrap());
            }
            NodeInfo {
                labels: labels(&[(HOSTNAME, &name), (ZONE, &zone), ("disktype", disk)]),
                name,
                taints,
                ready: true,
                runtimes: vec!["wasm".into()],
                allocatable: NodeResources {
                    cpu_millis: [8_000, 16_000, 32_000][rng.below(3) as usize],
                    memory_bytes: [16 * GI, 32 * GI, 64 * GI][rng.below(3) as usize],
                },
                max_instances: 110,
                components: if rng.chance(20) {
                    vec![format!("sha256:app-{}", rng.below(DEPLOYMENTS as u64))]
                } else {
                    vec![]
                },
                ..NodeInfo::default()
            }
        })
        .collect()
}

fn select(app: &str) -> Selector {
    Selector {
        match_labels: labels(&[("app", app)]),
        match_expressions: vec![],
    }
}

fn term(app: &str, key: &str) -> AffinityTerm {
    AffinityTerm {
        label_selector: select(app),
        namespaces: vec![],
        topology_key: key.into(),
    }
}

/// One Deployment's template, as a pending instance without a key.
fn template(index: usize, workload: Workload, rng: &mut Rng) -> PendingInstance {
    let app = format!("app-{index}");
    let mut p = PendingInstance {
        namespace: format!("team-{}", index % 5),
        labels: labels(&[("app", &app), ("berth.dev/template-hash", "0123456789")]),
        demand: Demand {
            cpu_millis: [100, 250, 500, 1000][rng.below(4) as usize],
            memory_bytes: [128 * MI, 256 * MI, 512 * MI, GI][rng.below(4) as usize],
        },
        component: format!("sha256:{app}"),
        ..PendingInstance::default()
    };
    if workload == Workload::Resources {
        return p;
    }
    // 30% with affinity or anti-affinity.
    match index % 10 {
        0 => {
            p.affinity = Some(Affinity {
                instance_anti_affinity: Some(InstanceAffinity {
                    required_during_scheduling_ignored_during_execution: vec![term(&app, HOSTNAME)],
                    preferred_during_scheduling_ignored_during_execution: vec![],
                }),
                ..Affinity::default()
            });
        }
        1 => {
            // Next to the previous Deployment's instances (same namespace
            // only when it is the same team; otherwise name it).
            let target = format!("app-{}", index - 1);
            let mut t = term(&target, ZONE);
            t.namespaces = vec![format!("team-{}", (index - 1) % 5)];
            p.affinity = Some(Affinity {
                instance_affinity: Some(InstanceAffinity {
                    required_during_scheduling_ignored_during_execution: vec![t],
                    preferred_during_scheduling_ignored_during_execution: vec![],
                }),
                ..Affinity::default()
            });
        }
        2 => {
            p.affinity = Some(Affinity {
                instance_anti_affinity: Some(InstanceAffinity {
                    required_during_scheduling_ignored_during_execution: vec![],
                    preferred_during_scheduling_ignored_during_execution: vec![
                        WeightedAffinityTerm {
                            weight: 50,
                            instance_affinity_term: term(&app, HOSTNAME),
                        },
                    ],
                }),
                ..Affinity::default()
            });
        }
        _ => {}
    }
    // Half spread over zones.
    if index.is_multiple_of(2) {
        p.topology_spread_constraints = vec![TopologySpreadConstraint {
            max_skew: 2,
            topology_key: ZONE.into(),
            when_unsatisfiable: if index.is_multiple_of(4) {
                WhenUnsatisfiable::DoNotSchedule
            } else {
                WhenUnsatisfiable::ScheduleAnyway
            },
            label_selector: select(&app),
        }];
    }
    if index % 10 == 7 {
        p.tolerations = vec![Toleration {
            key: "gpu".into(),
            value: "true".into(),
            ..Toleration::default()
        }];
    }
    if index % 10 == 9 {
        p.node_selector = labels(&[("disktype", "ssd")]);
    }
    p
}

struct Run {
    nodes: usize,
    workload: Workload,
    looked_at: usize,
    placements: usize,
    unschedulable: usize,
    setup: Duration,
    total: Duration,
    p50: Duration,
    p99: Duration,
    quality_mean: f64,
    quality_min: f64,
    position_mean: f64,
    best_share: f64,
}

fn run(node_count: usize, workload: Workload, percentage: u32, batch_size: usize) -> Run {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ node_count as u64);
    let nodes = nodes(node_count, workload, &mut rng);
    let templates: Vec<PendingInstance> = (0..DEPLOYMENTS)
        .map(|i| template(i, workload, &mut rng))
        .collect();
    // Two bound instances per node, of random Deployments (ignoring their
    // rules: what is already there need not be where placement would put
    // it, as after a node joins).
    let bound: Vec<BoundInstance> = (0..node_count * 2)
        .map(|i| {
            let t = &templates[rng.below(DEPLOYMENTS as u64) as usize];
            BoundInstance {
                key: format!("bound-{i}"),
                node: nodes[rng.below(node_count as u64) as usize].name.clone(),
                namespace: t.namespace.clone(),
                labels: t.labels.clone(),
                demand: t.demand,
                priority: 0,
                tolerations: t.tolerations.clone(),
                affinity: None,
                terminating: false,
            }
        })
        .collect();
    // Replicas of one Deployment arrive together, as the controller makes
    // them.
    let per_deployment = batch_size / DEPLOYMENTS;
    let pending: Vec<PendingInstance> = templates
        .iter()
        .enumerate()
        .flat_map(|(d, t)| {
            (0..per_deployment).map(move |r| PendingInstance {
                key: format!("pending-{d}-{r}"),
                ..t.clone()
            })
        })
        .collect();
    let snapshot = Snapshot { nodes, bound };
    let framework = Framework::new(&Config {
        percentage_of_nodes_to_score: percentage,
        ..Config::default()
    })
    .unwrap();

    let started = Instant::now();
    let mut batch = framework.batch(&snapshot, &pending);
    let setup = started.elapsed();
    let mut latencies = Vec::with_capacity(pending.len());
    let mut ratios = Vec::new();
    let mut positions = Vec::new();
    let mut best_hits = 0usize;
    let mut unschedulable = 0;
    for (n, index) in batch.order().into_iter().enumerate() {
        let sample = n % QUALITY_EVERY == 0;
        let exhaustive = if sample {
            batch.exhaustive_scores(index)
        } else {
            Vec::new()
        };
        let start = Instant::now();
        let decision = batch.place(index);
        latencies.push(start.elapsed());
        match decision {
            Decision::Bound { node } | Decision::Preempted { node, .. } if sample => {
                let best = exhaustive.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
                let worst = exhaustive.iter().map(|(_, s)| *s).fold(f64::MAX, f64::min);
                let chosen = exhaustive
                    .iter()
                    .find(|(name, _)| *name == node)
                    .map(|(_, s)| *s)
                    .expect("the chosen node is feasible");
                let ratio = if best > 0.0 { chosen / best } else { 1.0 };
                if (best - chosen).abs() < 1e-9 {
                    best_hits += 1;
                }
                ratios.push(ratio);
                positions.push(if best > worst {
                    (chosen - worst) / (best - worst)
                } else {
                    1.0
                });
            }
            Decision::Unschedulable { .. } => unschedulable += 1,
            _ => {}
        }
    }
    let placing: Duration = latencies.iter().sum();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        nodes: node_count,
        workload,
        looked_at: framework.feasible_to_find(node_count),
        placements: pending.len(),
        unschedulable,
        setup,
        total: setup + placing,
        p50: at(0.50),
        p99: at(0.99),
        quality_mean: ratios.iter().sum::<f64>() / ratios.len().max(1) as f64,
        quality_min: ratios.iter().copied().fold(1.0, f64::min),
        position_mean: positions.iter().sum::<f64>() / positions.len().max(1) as f64,
        best_share: best_hits as f64 / ratios.len().max(1) as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter may follow.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "| nodes | workload | feasible nodes sought | placements/s | p50 (µs) | p99 (µs) | setup (ms) | score / best (mean) | score / best (min) | worst (0) to best (1), mean | chose a best node |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let runs = [
        (Workload::Resources, 0),
        (Workload::Mix, 0),
        (Workload::Mix, 100),
    ];
    for nodes in [1_000, 5_000, 10_000] {
        for (workload, percentage) in runs {
            let name = format!("{nodes}-{}-{percentage}", workload.name());
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let r = run(nodes, workload, percentage, 20_000);
            assert_eq!(
                r.unschedulable, 0,
                "{name}: the cluster has room for every placement"
            );
            println!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} | {:.3} | {:.0}% |",
                r.nodes,
                r.workload.name(),
                if percentage == 100 {
                    format!("all ({})", r.looked_at)
                } else {
                    r.looked_at.to_string()
                },
                r.placements as f64 / r.total.as_secs_f64(),
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6,
                r.setup.as_secs_f64() * 1e3,
                r.quality_mean,
                r.quality_min,
                r.position_mean,
                r.best_share * 100.0,
            );
        }
    }
}
