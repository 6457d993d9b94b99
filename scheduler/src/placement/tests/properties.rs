//! Properties over random clusters and workloads, checked against a naive
//! re-implementation of every required rule: the outcome is replayed in
//! placement order, and at each step every binding must pass every rule,
//! every instance left pending must fit nowhere (clusters here are under
//! 100 nodes, so the search is exhaustive), and every preemption must evict
//! only strictly lower priorities on its node. The same input must give the
//! same outcome.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_api::scheduling::{
    AffinityTerm, InstanceAffinity, PreemptionPolicy, TaintEffect, TolerationOperator,
    WeightedAffinityTerm, WhenUnsatisfiable,
};
use proptest::prelude::{
    ProptestConfig, TestCaseError, any, prop, prop_assert, prop_assert_eq, proptest,
};
use proptest::strategy::Strategy;

use super::*;

const APPS: [&str; 3] = ["web", "db", "cache"];
const ZONES: [&str; 3] = ["z0", "z1", "z2"];
const PRIORITIES: [i32; 3] = [0, 10, 100];

#[derive(Debug, Clone)]
struct NodeGen {
    cpu: u64,
    memory: u64,
    zone: Option<usize>,
    ssd: bool,
    taint: u8,
    ready: bool,
    cordoned: bool,
    max_instances: u64,
    interfaces: u8,
    holds: bool,
}

#[derive(Debug, Clone)]
struct TemplateGen {
    app: usize,
    namespace: usize,
    ssd: bool,
    node_affinity: u8,
    tolerate: u8,
    affinity: u8,
    anti: u8,
    spread: u8,
    preferred: u8,
    imports: bool,
    never: bool,
}

#[derive(Debug, Clone)]
struct InstanceGen {
    template: usize,
    node: usize,
    priority: usize,
    cpu: u64,
    memory: u64,
    terminating: bool,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        (
            0u64..=4,
            0u64..=4,
            prop::option::of(0usize..3),
            any::<bool>(),
        ),
        (
            0u8..6,
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.1),
            0u64..=4,
        ),
        (0u8..3, any::<bool>()),
    )
        .prop_map(
            |(
                (cpu, memory, zone, ssd),
                (taint, ready, cordoned, max_instances),
                (interfaces, holds),
            )| {
                NodeGen {
                    cpu: cpu * 1000,
                    memory: memory * GI,
                    zone,
                    ssd,
                    taint,
                    ready,
                    cordoned,
                    max_instances,
                    interfaces,
                    holds,
                }
            },
        )
}

fn template_gen() -> impl Strategy<Value = TemplateGen> {
    (
        (
            0usize..3,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.25),
            0u8..4,
        ),
        (0u8..3, 0u8..5, 0u8..5, 0u8..6),
        (0u8..4, prop::bool::weighted(0.3), prop::bool::weighted(0.2)),
    )
        .prop_map(
            |(
                (app, other_ns, ssd, node_affinity),
                (tolerate, affinity, anti, spread),
                (preferred, imports, never),
            )| {
                TemplateGen {
                    app,
                    namespace: usize::from(other_ns),
                    ssd,
                    node_affinity,
                    tolerate,
                    affinity,
                    anti,
                    spread,
                    preferred,
                    imports,
                    never,
                }
            },
        )
}

fn instance_gen() -> impl Strategy<Value = InstanceGen> {
    (
        0usize..8,
        0usize..16,
        0usize..3,
        0u64..=6,
        0u64..=3,
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(template, node, priority, cpu, memory, terminating)| InstanceGen {
                template,
                node,
                priority,
                cpu: cpu * 250,
                memory: memory * GI / 2,
                terminating,
            },
        )
}

fn build_node(index: usize, g: &NodeGen) -> NodeInfo {
    let mut n = node(&format!("n{index:02}"), g.cpu, g.memory);
    if let Some(zone) = g.zone {
        n.labels.insert(ZONE.into(), ZONES[zone].into());
    }
    if g.ssd {
        n.labels.insert("disktype".into(), "ssd".into());
    }
    match g.taint {
        1 => n.taints.push(Taint::parse("gpu=true:NoSchedule").unwrap()),
        2 => n
            .taints
            .push(Taint::parse("spot:PreferNoSchedule").unwrap()),
        3 => n.taints.push(Taint::parse("maint=now:NoExecute").unwrap()),
        _ => {}
    }
    n.ready = g.ready;
    n.unschedulable = g.cordoned;
    n.max_instances = g.max_instances;
    n.interfaces = match g.interfaces {
        0 => vec![],
        1 => vec!["wasi:cli/environment@0.2".into()],
        _ => vec![
            "wasi:cli/environment@0.2".into(),
            "wasi:http/types@0.2".into(),
        ],
    };
    if g.holds {
        n.components = vec!["sha256:web".into()];
    }
    n
}

fn affinity_of(t: &TemplateGen) -> Option<Affinity> {
    let other = APPS[(t.app + 1) % APPS.len()];
    let own = APPS[t.app];
    let instance_affinity = match t.affinity {
        1 => required(vec![term(other, HOSTNAME)]),
        2 => required(vec![term(other, ZONE)]),
        3 => required(vec![term(own, ZONE)]),
        _ => None,
    };
    let mut instance_anti_affinity = match t.anti {
        1 => required(vec![term(own, HOSTNAME)]),
        2 => required(vec![term(other, ZONE)]),
        3 => required(vec![AffinityTerm {
            namespaces: vec!["default".into(), "team".into()],
            ..term(other, HOSTNAME)
        }]),
        _ => None,
    };
    if t.preferred > 0 {
        let weighted = WeightedAffinityTerm {
            weight: 40,
            instance_affinity_term: term(other, if t.preferred == 1 { HOSTNAME } else { ZONE }),
        };
        instance_anti_affinity
            .get_or_insert_with(InstanceAffinity::default)
            .preferred_during_scheduling_ignored_during_execution
            .push(weighted);
    }
    let node = match t.node_affinity {
        1 => node_affinity(vec![requirement(ZONE, Operator::In, &["z0", "z1"])]),
        2 => node_affinity(vec![requirement(ZONE, Operator::NotIn, &["z0"])]),
        3 => node_affinity(vec![requirement(ZONE, Operator::DoesNotExist, &[])]),
        _ => None,
    }
    .and_then(|a| a.node_affinity);
    let affinity = Affinity {
        node_affinity: node,
        instance_affinity,
        instance_anti_affinity,
    };
    (affinity != Affinity::default()).then_some(affinity)
}

fn build_pending(key: String, t: &TemplateGen, g: &InstanceGen) -> PendingInstance {
    let app = APPS[t.app];
    let mut p = pending(&key, app, g.cpu, g.memory);
    p.namespace = ["default", "team"][t.namespace].into();
    if t.ssd {
        p.node_selector = labels(&[("disktype", "ssd")]);
    }
    p.tolerations = match t.tolerate {
        1 => vec![toleration("gpu", "true")],
        2 => vec![Toleration {
            operator: TolerationOperator::Exists,
            ..Toleration::default()
        }],
        _ => vec![],
    };
    p.affinity = affinity_of(t);
    p.topology_spread_constraints = match t.spread {
        1 => vec![spread(app, ZONE, 1, WhenUnsatisfiable::DoNotSchedule)],
        2 => vec![spread(app, HOSTNAME, 2, WhenUnsatisfiable::DoNotSchedule)],
        3 => vec![spread(app, ZONE, 1, WhenUnsatisfiable::ScheduleAnyway)],
        _ => vec![],
    };
    if t.imports {
        p.imports = BTreeSet::from(["wasi:http/types@0.2.6".to_owned()]);
    }
    p.priority = PRIORITIES[g.priority];
    if t.never {
        p.preemption_policy = PreemptionPolicy::Never;
    }
    p
}

fn build(
    nodes: &[NodeGen],
    templates: &[TemplateGen],
    bound: &[InstanceGen],
    pending: &[InstanceGen],
) -> (Snapshot, Vec<PendingInstance>) {
    let nodes: Vec<NodeInfo> = nodes
        .iter()
        .enumerate()
        .map(|(i, g)| build_node(i, g))
        .collect();
    let template = |g: &InstanceGen| &templates[g.template % templates.len()];
    let bound = bound
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let p = build_pending(format!("b{i}"), template(g), g);
            BoundInstance {
                key: p.key,
                // One in a few is bound to a node the snapshot lacks.
                node: nodes
                    .get(g.node)
                    .map_or_else(|| "ghost".to_owned(), |n| n.name.clone()),
                namespace: p.namespace,
                labels: p.labels,
                demand: p.demand,
                priority: p.priority,
                tolerations: p.tolerations,
                affinity: p.affinity,
                terminating: g.terminating,
            }
        })
        .collect();
    let pending = pending
        .iter()
        .enumerate()
        .map(|(i, g)| build_pending(format!("p{i}"), template(g), g))
        .collect();
    (Snapshot { nodes, bound }, pending)
}

/// An instance in the oracle's world.
#[derive(Debug, Clone)]
struct Inst {
    key: String,
    node: usize,
    namespace: String,
    labels: BTreeMap<String, String>,
    demand: Demand,
    priority: i32,
    terminating: bool,
    affinity: Option<Affinity>,
}

struct World<'a> {
    nodes: &'a [NodeInfo],
    placed: Vec<Inst>,
}

fn term_selects(
    term: &AffinityTerm,
    owner_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let in_namespace = if term.namespaces.is_empty() {
        namespace == owner_namespace
    } else {
        term.namespaces.iter().any(|n| n == namespace)
    };
    in_namespace && term.label_selector.matches(labels)
}

fn provides(interfaces: &[String], import: &str) -> bool {
    let split = |s: &str| -> (String, Option<String>) {
        match s.split_once('@') {
            Some((name, version)) => (
                name.to_owned(),
                Some(version.split('.').take(2).collect::<Vec<_>>().join(".")),
            ),
            None => (s.to_owned(), None),
        }
    };
    let (name, version) = split(import);
    interfaces.is_empty()
        || interfaces.iter().any(|offered| {
            let (offered_name, offered_version) = split(offered);
            offered_name == name
                && (version.is_none() || offered_version.is_none() || version == offered_version)
        })
}

impl World<'_> {
    fn label(&self, node: usize, key: &str) -> Option<&String> {
        self.nodes[node].labels.get(key)
    }

    fn passes_node_rules(&self, p: &PendingInstance, node: usize) -> bool {
        let n = &self.nodes[node];
        let selector = p
            .node_selector
            .iter()
            .all(|(k, v)| n.labels.get(k) == Some(v));
        let affinity = p
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_none_or(|r| {
                r.node_selector_terms.iter().any(|t| {
                    !t.match_expressions.is_empty()
                        && t.match_expressions.iter().all(|e| e.matches(&n.labels))
                })
            });
        selector && affinity
    }

    /// Why `p` cannot go to `node` now, or `None` if it can.
    fn violation(&self, p: &PendingInstance, node: usize) -> Option<&'static str> {
        let n = &self.nodes[node];
        if !n.ready || n.unschedulable {
            return Some("condition");
        }
        if p.node_name.as_ref().is_some_and(|name| *name != n.name) {
            return Some("node name");
        }
        for taint in &n.taints {
            if taint.effect != TaintEffect::PreferNoSchedule
                && !p.tolerations.iter().any(|t| t.tolerates(taint))
            {
                return Some("taint");
            }
        }
        if !self.passes_node_rules(p, node) {
            return Some("selector or node affinity");
        }
        if !n.runtimes.iter().any(|r| r == "wasm")
            || !p.imports.iter().all(|i| provides(&n.interfaces, i))
        {
            return Some("runtime");
        }
        let here: Vec<&Inst> = self.placed.iter().filter(|i| i.node == node).collect();
        let cpu: u64 = here.iter().map(|i| i.demand.cpu_millis).sum();
        let memory: u64 = here.iter().map(|i| i.demand.memory_bytes).sum();
        if cpu + p.demand.cpu_millis > n.allocatable.cpu_millis
            || memory + p.demand.memory_bytes > n.allocatable.memory_bytes
            || (n.max_instances > 0 && here.len() as u64 >= n.max_instances)
        {
            return Some("fit");
        }
        self.inter_instance(p, node)
            .or_else(|| self.spread(p, node))
    }

    fn inter_instance(&self, p: &PendingInstance, node: usize) -> Option<&'static str> {
        let affinity = p.affinity.as_ref();
        let required = |side: Option<&InstanceAffinity>| {
            side.map_or(Vec::new(), |s| {
                s.required_during_scheduling_ignored_during_execution
                    .clone()
            })
        };
        let terms = required(affinity.and_then(|a| a.instance_affinity.as_ref()));
        if !terms.is_empty() {
            if terms
                .iter()
                .any(|t| self.label(node, &t.topology_key).is_none())
            {
                return Some("affinity: missing key");
            }
            let matches_all = |i: &Inst| {
                terms
                    .iter()
                    .all(|t| term_selects(t, &p.namespace, &i.namespace, &i.labels))
            };
            let satisfied = terms.iter().all(|t| {
                self.placed.iter().any(|i| {
                    matches_all(i)
                        && self.label(i.node, &t.topology_key) == self.label(node, &t.topology_key)
                })
            });
            if !satisfied {
                let any_matching = self.placed.iter().any(|i| {
                    matches_all(i)
                        && terms
                            .iter()
                            .any(|t| self.label(i.node, &t.topology_key).is_some())
                });
                let self_match = terms
                    .iter()
                    .all(|t| term_selects(t, &p.namespace, &p.namespace, &p.labels));
                if any_matching || !self_match {
                    return Some("affinity");
                }
            }
        }
        for t in required(affinity.and_then(|a| a.instance_anti_affinity.as_ref())) {
            let Some(value) = self.label(node, &t.topology_key) else {
                continue;
            };
            if self.placed.iter().any(|i| {
                term_selects(&t, &p.namespace, &i.namespace, &i.labels)
                    && self.label(i.node, &t.topology_key) == Some(value)
            }) {
                return Some("anti-affinity");
            }
        }
        for i in &self.placed {
            let terms = required(
                i.affinity
                    .as_ref()
                    .and_then(|a| a.instance_anti_affinity.as_ref()),
            );
            for t in terms {
                if term_selects(&t, &i.namespace, &p.namespace, &p.labels)
                    && self.label(node, &t.topology_key).is_some()
                    && self.label(node, &t.topology_key) == self.label(i.node, &t.topology_key)
                {
                    return Some("existing anti-affinity");
                }
            }
        }
        None
    }

    fn spread(&self, p: &PendingInstance, node: usize) -> Option<&'static str> {
        let constraints = &p.topology_spread_constraints;
        let eligible = |m: usize| {
            self.passes_node_rules(p, m)
                && constraints
                    .iter()
                    .all(|c| self.label(m, &c.topology_key).is_some())
        };
        for c in constraints
            .iter()
            .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
        {
            let Some(value) = self.label(node, &c.topology_key) else {
                return Some("spread: missing key");
            };
            let mut domains: HashMap<&String, i64> = HashMap::new();
            for m in (0..self.nodes.len()).filter(|m| eligible(*m)) {
                domains
                    .entry(self.label(m, &c.topology_key).unwrap())
                    .or_insert(0);
            }
            for i in &self.placed {
                if !i.terminating
                    && i.namespace == p.namespace
                    && c.label_selector.matches(&i.labels)
                    && eligible(i.node)
                {
                    *domains
                        .get_mut(self.label(i.node, &c.topology_key).unwrap())
                        .unwrap() += 1;
                }
            }
            let min = domains.values().copied().min().unwrap_or(0);
            let own = domains.get(value).copied().unwrap_or(0);
            let self_match = i64::from(c.label_selector.matches(&p.labels));
            if own + self_match - min > i64::from(c.max_skew) {
                return Some("spread");
            }
        }
        None
    }
}

fn check(
    snapshot: &Snapshot,
    pending: &[PendingInstance],
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    let node_index: HashMap<&str, usize> = snapshot
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut world = World {
        nodes: &snapshot.nodes,
        placed: snapshot
            .bound
            .iter()
            .filter_map(|b| {
                Some(Inst {
                    key: b.key.clone(),
                    node: *node_index.get(b.node.as_str())?,
                    namespace: b.namespace.clone(),
                    labels: b.labels.clone(),
                    demand: b.demand,
                    priority: b.priority,
                    terminating: b.terminating,
                    affinity: b.affinity.clone(),
                })
            })
            .collect(),
    };
    let bindings: HashMap<&str, &str> = outcome
        .bindings
        .iter()
        .map(|b| (b.key.as_str(), b.node.as_str()))
        .collect();
    let unschedulable: BTreeSet<&str> = outcome
        .unschedulable
        .iter()
        .map(|u| u.key.as_str())
        .collect();
    let preemptions: HashMap<&str, &Preemption> = outcome
        .preemptions
        .iter()
        .map(|p| (p.preemptor.as_str(), p))
        .collect();
    prop_assert_eq!(
        bindings.len(),
        outcome.bindings.len(),
        "an instance bound twice"
    );
    prop_assert_eq!(bindings.len() + unschedulable.len(), pending.len());

    // Replay in the order the batch placed: highest priority first.
    let mut order: Vec<&PendingInstance> = pending.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let bound_order: Vec<&str> = order
        .iter()
        .map(|p| p.key.as_str())
        .filter(|k| bindings.contains_key(k))
        .collect();
    let listed: Vec<&str> = outcome.bindings.iter().map(|b| b.key.as_str()).collect();
    prop_assert_eq!(bound_order, listed, "bindings out of priority order");

    for p in order {
        let Some(&node_name) = bindings.get(p.key.as_str()) else {
            prop_assert!(unschedulable.contains(p.key.as_str()));
            for m in 0..world.nodes.len() {
                prop_assert!(
                    world.violation(p, m).is_some(),
                    "{} left pending but fits {}",
                    p.key,
                    world.nodes[m].name
                );
            }
            continue;
        };
        let node = node_index[node_name];
        if let Some(preemption) = preemptions.get(p.key.as_str()) {
            prop_assert_eq!(preemption.node.as_str(), node_name);
            prop_assert!(p.preemption_policy == PreemptionPolicy::PreemptLowerPriority);
            for m in 0..world.nodes.len() {
                prop_assert!(
                    world.violation(p, m).is_some(),
                    "{} preempted but fits {}",
                    p.key,
                    m
                );
            }
            prop_assert!(!preemption.victims.is_empty());
            for victim in &preemption.victims {
                let at = world.placed.iter().position(|i| i.key == *victim);
                prop_assert!(at.is_some(), "victim {} is not placed", victim);
                let v = world.placed.remove(at.unwrap());
                prop_assert_eq!(v.node, node, "victim on another node");
                prop_assert!(!v.terminating, "terminating victim");
                prop_assert!(
                    v.priority < p.priority,
                    "victim {} of priority {} >= {}",
                    v.key,
                    v.priority,
                    p.priority
                );
            }
        }
        if let Some(rule) = world.violation(p, node) {
            return Err(TestCaseError::fail(format!(
                "{} on {node_name} breaks {rule}",
                p.key
            )));
        }
        world.placed.push(Inst {
            key: p.key.clone(),
            node,
            namespace: p.namespace.clone(),
            labels: p.labels.clone(),
            demand: p.demand,
            priority: p.priority,
            terminating: false,
            affinity: p.affinity.clone(),
        });
    }
    prop_assert!(
        outcome
            .preemptions
            .iter()
            .all(|p| bindings.contains_key(p.preemptor.as_str()))
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_batches_keep_every_rule(
        nodes in prop::collection::vec(node_gen(), 1..12),
        templates in prop::collection::vec(template_gen(), 1..6),
        bound in prop::collection::vec(instance_gen(), 0..20),
        pending in prop::collection::vec(instance_gen(), 0..24),
    ) {
        let (snapshot, pending) = build(&nodes, &templates, &bound, &pending);
        let outcome = place(&snapshot, &pending);
        check(&snapshot, &pending, &outcome)?;
        prop_assert_eq!(&outcome, &place(&snapshot, &pending), "not deterministic");
    }

    #[test]
    fn no_execute_evictions_are_exactly_the_untolerated(
        nodes in prop::collection::vec(node_gen(), 1..6),
        templates in prop::collection::vec(template_gen(), 1..4),
        bound in prop::collection::vec(instance_gen(), 0..12),
    ) {
        let (snapshot, _) = build(&nodes, &templates, &bound, &[]);
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let evicted: BTreeSet<String> =
            no_execute_evictions(&snapshot, now).into_iter().map(|e| e.key).collect();
        for b in &snapshot.bound {
            let node = snapshot.nodes.iter().find(|n| n.name == b.node);
            let must = !b.terminating
                && node.is_some_and(|n| {
                    n.taints.iter().any(|t| {
                        t.effect == TaintEffect::NoExecute && !b.tolerations.iter().any(|x| x.tolerates(t))
                    })
                });
            prop_assert_eq!(evicted.contains(&b.key), must, "{}", b.key);
        }
    }
}
