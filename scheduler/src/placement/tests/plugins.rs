//! One or more tests per plugin, the config, and the bounded search.

use std::collections::BTreeSet;

use berth_api::scheduling::{
    Affinity, InstanceAffinity, NodeAffinity, NodeSelectorTerm, Operator, PreferredSchedulingTerm,
    TaintEffect, TolerationOperator, WeightedAffinityTerm, WhenUnsatisfiable,
};

use super::*;

// Filters.

#[test]
fn fit_counts_max_instances_and_terminating_room() {
    let mut small = node("small", 4000, 4 * GI);
    small.max_instances = 2;
    let mut terminating = bound("old", "x", "full", 3000, 0);
    terminating.terminating = true;
    let snapshot = Snapshot {
        nodes: vec![small, node("full", 4000, 4 * GI)],
        bound: vec![bound("s1", "x", "small", 0, 0), terminating],
    };
    let outcome = place(
        &snapshot,
        &[pending("a", "w", 500, 0), pending("b", "w", 1500, 0)],
    );
    assert_eq!(placements(&outcome), BTreeMap::from([("a", "small")]));
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/2 nodes are available: 1 insufficient cpu, 1 too many instances."
    );
}

#[test]
fn node_conditions_and_node_name() {
    let mut down = node("down", 4000, GI);
    down.ready = false;
    let mut cordoned = node("cordoned", 4000, GI);
    cordoned.unschedulable = true;
    let snapshot = Snapshot {
        nodes: vec![
            down,
            cordoned,
            node("up", 4000, GI),
            node("other", 4000, GI),
        ],
        bound: vec![],
    };
    let mut pinned = pending("pinned", "w", 0, 0);
    pinned.node_name = Some("up".into());
    let mut pinned_down = pending("pinned-down", "w", 0, 0);
    pinned_down.node_name = Some("down".into());
    let outcome = place(&snapshot, &[pinned, pinned_down]);
    assert_eq!(placements(&outcome), BTreeMap::from([("pinned", "up")]));
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/4 nodes are available: 2 node(s) didn't match the requested node name, 1 node(s) were not ready, 1 node(s) were unschedulable."
    );
}

#[test]
fn node_affinity_operators() {
    let snapshot = Snapshot {
        nodes: vec![
            with_label(
                with_label(node("a", 1000, GI), "cores", "4"),
                "tier",
                "gold",
            ),
            with_label(
                with_label(node("b", 1000, GI), "cores", "16"),
                "tier",
                "silver",
            ),
            with_label(node("c", 1000, GI), "cores", "64"),
        ],
        bound: vec![],
    };
    let case = |requirements: Vec<Requirement>| {
        let p = PendingInstance {
            affinity: node_affinity(requirements),
            ..pending("p", "w", 0, 0)
        };
        let outcome = place(&snapshot, &[p]);
        outcome
            .bindings
            .first()
            .map(|b| b.node.clone())
            .unwrap_or_else(|| outcome.unschedulable[0].message.clone())
    };
    assert_eq!(
        case(vec![requirement("tier", Operator::In, &["gold"])]),
        "a"
    );
    assert_eq!(
        case(vec![requirement(
            "tier",
            Operator::NotIn,
            &["gold", "silver"]
        )]),
        "c"
    );
    assert_eq!(
        case(vec![requirement("tier", Operator::DoesNotExist, &[])]),
        "c"
    );
    assert_eq!(
        case(vec![
            requirement("tier", Operator::Exists, &[]),
            requirement("cores", Operator::Gt, &["8"])
        ]),
        "b"
    );
    assert_eq!(case(vec![requirement("cores", Operator::Lt, &["8"])]), "a");
    assert_eq!(
        case(vec![requirement("cores", Operator::Gt, &["100"])]),
        "0/3 nodes are available: 3 node(s) didn't match the node affinity."
    );
}

#[test]
fn runtime_and_imports() {
    let mut oci = node("oci", 1000, GI);
    oci.runtimes = vec!["oci".into()];
    let mut cli = node("cli", 1000, GI);
    cli.interfaces = vec!["wasi:cli/environment@0.2".into()];
    let mut http = node("http", 1000, GI);
    http.interfaces = vec![
        "wasi:cli/environment@0.2".into(),
        "wasi:http/types@0.2".into(),
    ];
    let snapshot = Snapshot {
        nodes: vec![oci, cli, http],
        bound: vec![],
    };
    let mut p = pending("p", "w", 0, 0);
    p.imports = BTreeSet::from([
        "wasi:cli/environment@0.2.3".to_owned(),
        "wasi:http/types@0.2.6".to_owned(),
    ]);
    let outcome = place(&snapshot, std::slice::from_ref(&p));
    assert_eq!(placements(&outcome), BTreeMap::from([("p", "http")]));
    let outcome = place(
        &Snapshot {
            nodes: snapshot.nodes[..2].to_vec(),
            bound: vec![],
        },
        &[p],
    );
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/2 nodes are available: 1 node(s) did not offer runtime wasm, 1 node(s) did not provide interface wasi:http/types@0.2.6."
    );
}

#[test]
fn no_execute_taints_also_filter() {
    let snapshot = Snapshot {
        nodes: vec![tainted(node("n", 1000, GI), "maint:NoExecute")],
        bound: vec![],
    };
    let outcome = place(&snapshot, &[pending("p", "w", 0, 0)]);
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/1 nodes are available: 1 node(s) had untolerated taint {maint}."
    );
    let mut tolerant = pending("p", "w", 0, 0);
    tolerant.tolerations = vec![Toleration {
        key: "maint".into(),
        operator: TolerationOperator::Exists,
        effect: Some(TaintEffect::NoExecute),
        ..Toleration::default()
    }];
    assert_eq!(place(&snapshot, &[tolerant]).bindings.len(), 1);
}

#[test]
fn required_affinity_follows_its_target_and_admits_the_first_of_a_group() {
    let zoned = |name: &str, zone: &str| with_label(node(name, 4000, 4 * GI), ZONE, zone);
    let snapshot = Snapshot {
        nodes: vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("b1", "b"),
            node("nozone", 4000, 4 * GI),
        ],
        bound: vec![bound("db", "db", "b1", 3500, 0)],
    };
    // Next to the database's zone, even though b1 is nearly full: the
    // other node of zone b does not exist, so only b1.
    let cache = PendingInstance {
        affinity: affinity("db", ZONE),
        ..pending("cache", "cache", 100, 0)
    };
    let outcome = place(&snapshot, &[cache]);
    assert_eq!(placements(&outcome), BTreeMap::from([("cache", "b1")]));

    // Affinity to something that exists nowhere: unschedulable...
    let lonely = PendingInstance {
        affinity: affinity("ghost", ZONE),
        ..pending("lonely", "lonely", 0, 0)
    };
    let outcome = place(&snapshot, &[lonely]);
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/4 nodes are available: 4 node(s) didn't match instance affinity rules."
    );
    // ...unless it points at its own group: the first goes anywhere with
    // the key, the next follow it.
    let group: Vec<PendingInstance> = (0..3)
        .map(|k| PendingInstance {
            affinity: affinity("team", ZONE),
            ..pending(&format!("t{k}"), "team", 0, 0)
        })
        .collect();
    let outcome = place(&snapshot, &group);
    let zones: BTreeSet<&str> = outcome.bindings.iter().map(|b| &b.node[..1]).collect();
    assert_eq!(outcome.bindings.len(), 3, "{outcome:?}");
    assert_eq!(zones.len(), 1, "{outcome:?}");
    assert!(outcome.bindings.iter().all(|b| b.node != "nozone"));
}

#[test]
fn existing_instances_anti_affinity_repels_newcomers() {
    let mut loner = bound("loner", "loner", "n1", 0, 0);
    loner.affinity = anti_affinity("web", HOSTNAME);
    let snapshot = Snapshot {
        nodes: vec![node("n1", 4000, 4 * GI), node("n2", 1000, GI)],
        bound: vec![loner],
    };
    // n1 has far more room, yet the loner repels web.
    let outcome = place(&snapshot, &[pending("w", "web", 100, 0)]);
    assert_eq!(placements(&outcome), BTreeMap::from([("w", "n2")]));
    let only_n1 = Snapshot {
        nodes: snapshot.nodes[..1].to_vec(),
        bound: snapshot.bound.clone(),
    };
    let outcome = place(&only_n1, &[pending("w", "web", 100, 0)]);
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/1 nodes are available: 1 node(s) didn't satisfy existing instances' anti-affinity rules."
    );
    // Other namespaces are not repelled (the term names none: its own).
    let mut elsewhere = pending("w", "web", 100, 0);
    elsewhere.namespace = "other".into();
    assert_eq!(place(&only_n1, &[elsewhere]).bindings.len(), 1);
}

#[test]
fn topology_spread_keeps_the_skew_and_needs_the_key() {
    let zoned = |name: &str, zone: &str| with_label(node(name, 8000, 8 * GI), ZONE, zone);
    let snapshot = Snapshot {
        nodes: vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("b1", "b"),
            zoned("c1", "c"),
            node("bare", 64_000, 64 * GI),
        ],
        bound: vec![
            bound("x1", "web", "a1", 0, 0),
            bound("x2", "web", "a2", 0, 0),
        ],
    };
    let replicas: Vec<PendingInstance> = (0..4)
        .map(|k| PendingInstance {
            topology_spread_constraints: vec![spread(
                "web",
                ZONE,
                1,
                WhenUnsatisfiable::DoNotSchedule,
            )],
            ..pending(&format!("w{k}"), "web", 100, 0)
        })
        .collect();
    let outcome = place(&snapshot, &replicas);
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::from([("a", 2)]);
    for binding in &outcome.bindings {
        *per_zone.entry(&binding.node[..1]).or_default() += 1;
    }
    // a has 2 already: b and c catch up to 2 each... then one more where
    // the skew allows (any zone at the minimum).
    assert_eq!(outcome.bindings.len(), 4, "{outcome:?}");
    let counts: Vec<usize> = per_zone.values().copied().collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{per_zone:?}"
    );
    assert!(outcome.bindings.iter().all(|b| b.node != "bare"));

    // With only the bare node and a: a is too far ahead, bare lacks the key.
    let cramped = Snapshot {
        nodes: vec![
            zoned("a1", "a"),
            zoned("b1", "b"),
            node("bare", 64_000, 64 * GI),
        ],
        bound: vec![
            bound("x1", "web", "a1", 0, 0),
            bound("x2", "web", "a1", 0, 0),
        ],
    };
    let mut b_full = cramped.clone();
    b_full.nodes[1].allocatable.cpu_millis = 0;
    let outcome = place(&b_full, &replicas[..1]);
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/3 nodes are available: 1 insufficient cpu, 1 node(s) didn't match instance topology spread constraints, 1 node(s) didn't match instance topology spread constraints (missing required label)."
    );
}

#[test]
fn spread_ignores_terminating_instances_and_ineligible_nodes() {
    let zoned = |name: &str, zone: &str| with_label(node(name, 8000, 8 * GI), ZONE, zone);
    let mut leaving = bound("leaving", "web", "a1", 0, 0);
    leaving.terminating = true;
    let snapshot = Snapshot {
        nodes: vec![
            with_label(zoned("a1", "a"), "disktype", "ssd"),
            with_label(zoned("b1", "b"), "disktype", "ssd"),
            // Zone c has no ssd node: not a domain for an ssd-only spread.
            zoned("c1", "c"),
        ],
        bound: vec![leaving, bound("x", "web", "b1", 0, 0)],
    };
    let p = PendingInstance {
        node_selector: labels(&[("disktype", "ssd")]),
        topology_spread_constraints: vec![spread("web", ZONE, 1, WhenUnsatisfiable::DoNotSchedule)],
        ..pending("w", "web", 100, 0)
    };
    // Counts: a 0 (the terminating one does not count), b 1; c is no
    // domain, so the minimum is 0 and a is the only place within skew...
    // and b too (1 + 1 - 0 = 2 > 1 is out).
    let outcome = place(&snapshot, &[p]);
    assert_eq!(placements(&outcome), BTreeMap::from([("w", "a1")]));
}

// Scores.

#[test]
fn schedule_anyway_prefers_the_least_loaded_domain() {
    let zoned = |name: &str, zone: &str| with_label(node(name, 8000, 8 * GI), ZONE, zone);
    let snapshot = Snapshot {
        nodes: vec![zoned("a1", "a"), zoned("b1", "b")],
        // a1 is emptier by resources, but zone a already has two.
        bound: vec![
            bound("x1", "web", "a1", 0, 0),
            bound("x2", "web", "a1", 0, 0),
            bound("load", "other", "b1", 2000, 0),
        ],
    };
    let p = PendingInstance {
        topology_spread_constraints: vec![spread(
            "web",
            ZONE,
            1,
            WhenUnsatisfiable::ScheduleAnyway,
        )],
        ..pending("w", "web", 100, 0)
    };
    assert_eq!(
        placements(&place(&snapshot, &[p])),
        BTreeMap::from([("w", "b1")])
    );
}

#[test]
fn preferred_node_affinity_and_prefer_no_schedule_and_locality_steer() {
    let snapshot = Snapshot {
        nodes: vec![
            node("a-plain", 8000, 8 * GI),
            with_label(node("b-fast", 4000, 4 * GI), "speed", "fast"),
        ],
        bound: vec![],
    };
    let mut p = pending("p", "w", 100, 0);
    p.affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: None,
            preferred_during_scheduling_ignored_during_execution: vec![PreferredSchedulingTerm {
                weight: 50,
                preference: NodeSelectorTerm {
                    match_expressions: vec![requirement("speed", Operator::In, &["fast"])],
                },
            }],
        }),
        ..Affinity::default()
    });
    assert_eq!(
        placements(&place(&snapshot, &[p])),
        BTreeMap::from([("p", "b-fast")])
    );

    let soft = Snapshot {
        nodes: vec![
            tainted(node("a-spot", 8000, 8 * GI), "spot:PreferNoSchedule"),
            node("b-plain", 4000, 4 * GI),
        ],
        bound: vec![],
    };
    assert_eq!(
        placements(&place(&soft, &[pending("p", "w", 100, 0)])),
        BTreeMap::from([("p", "b-plain")])
    );
    // Only the tainted node left: still used.
    let only = Snapshot {
        nodes: soft.nodes[..1].to_vec(),
        bound: vec![],
    };
    assert_eq!(place(&only, &[pending("p", "w", 100, 0)]).bindings.len(), 1);

    let mut warm = node("b-warm", 4000, 4 * GI);
    warm.components = vec!["sha256:w".into()];
    let cached = Snapshot {
        nodes: vec![node("a-cold", 4000, 4 * GI), warm],
        bound: vec![],
    };
    assert_eq!(
        placements(&place(&cached, &[pending("p", "w", 100, 0)])),
        BTreeMap::from([("p", "b-warm")])
    );
}

#[test]
fn preferred_inter_instance_terms_attract_and_repel() {
    let snapshot = Snapshot {
        nodes: vec![
            node("a", 4000, 4 * GI),
            node("b", 4000, 4 * GI),
            node("c", 4000, 4 * GI),
        ],
        bound: vec![
            bound("db", "db", "b", 500, 0),
            bound("noisy", "noisy", "a", 0, 0),
        ],
    };
    let weighted = |app: &str| WeightedAffinityTerm {
        weight: 100,
        instance_affinity_term: term(app, HOSTNAME),
    };
    let near_db = PendingInstance {
        affinity: Some(Affinity {
            instance_affinity: Some(InstanceAffinity {
                required_during_scheduling_ignored_during_execution: vec![],
                preferred_during_scheduling_ignored_during_execution: vec![weighted("db")],
            }),
            ..Affinity::default()
        }),
        ..pending("near", "app", 100, 0)
    };
    assert_eq!(
        placements(&place(&snapshot, &[near_db])),
        BTreeMap::from([("near", "b")])
    );

    // Symmetric: the noisy one prefers to stay away from `quiet`, so a
    // quiet newcomer avoids a... and the least-allocated tie-break of b and
    // c goes to c (b holds the db).
    let mut noisy = bound("noisy", "noisy", "a", 0, 0);
    noisy.affinity = Some(Affinity {
        instance_anti_affinity: Some(InstanceAffinity {
            required_during_scheduling_ignored_during_execution: vec![],
            preferred_during_scheduling_ignored_during_execution: vec![weighted("quiet")],
        }),
        ..Affinity::default()
    });
    let snapshot = Snapshot {
        nodes: vec![node("a", 4000, 4 * GI), node("c", 4000, 4 * GI)],
        bound: vec![noisy],
    };
    assert_eq!(
        placements(&place(&snapshot, &[pending("q", "quiet", 100, 0)])),
        BTreeMap::from([("q", "c")])
    );
}

#[test]
fn most_allocated_bin_packs_and_least_allocated_spreads() {
    let snapshot = Snapshot {
        nodes: vec![node("a", 4000, 4 * GI), node("b", 4000, 4 * GI)],
        bound: vec![bound("x", "x", "b", 1000, 0)],
    };
    let pack = Framework::new(&Config {
        strategy: Strategy::MostAllocated,
        ..Config::default()
    })
    .unwrap();
    let replicas: Vec<PendingInstance> = (0..3)
        .map(|k| pending(&format!("p{k}"), "w", 1000, 0))
        .collect();
    let packed = pack.place(&snapshot, &replicas);
    assert!(packed.bindings.iter().all(|b| b.node == "b"), "{packed:?}");
    let spread = place(&snapshot, &replicas);
    let on_a = spread.bindings.iter().filter(|b| b.node == "a").count();
    assert_eq!(on_a, 2, "{spread:?}");
}

#[test]
fn ties_go_to_fewer_instances_then_the_lower_name() {
    let snapshot = Snapshot {
        nodes: vec![
            node("b", 4000, 4 * GI),
            node("a", 4000, 4 * GI),
            node("c", 4000, 4 * GI),
        ],
        bound: vec![bound("x", "x", "a", 0, 0)],
    };
    let balanced = Framework::new(&Config {
        strategy: Strategy::Balanced,
        ..Config::default()
    })
    .unwrap();
    // Balanced scores all three alike: b and c have no instance, b < c.
    let outcome = balanced.place(&snapshot, &[pending("p", "w", 0, 0)]);
    assert_eq!(placements(&outcome), BTreeMap::from([("p", "b")]));
}

// Config.

#[test]
fn disabled_plugins_do_not_filter() {
    let snapshot = Snapshot {
        nodes: vec![tainted(node("gpu", 4000, 4 * GI), "gpu=true:NoSchedule")],
        bound: vec![],
    };
    let lax = Framework::new(&Config {
        plugins: BTreeMap::from([(
            "TaintToleration".to_owned(),
            PluginConfig {
                enabled: false,
                weight: None,
            },
        )]),
        ..Config::default()
    })
    .unwrap();
    assert_eq!(
        lax.place(&snapshot, &[pending("p", "w", 0, 0)])
            .bindings
            .len(),
        1
    );
    assert!(
        place(&snapshot, &[pending("p", "w", 0, 0)])
            .bindings
            .is_empty()
    );
}

// Scale.

#[test]
fn bounded_search_stays_feasible_and_close_to_the_best() {
    // 1,000 nodes: a placement looks at 420 feasible ones.
    let nodes: Vec<NodeInfo> = (0..1000)
        .map(|k| node(&format!("n{k:04}"), 2000 + (k % 7) * 500, 4 * GI))
        .collect();
    let snapshot = Snapshot {
        nodes,
        bound: vec![],
    };
    let replicas: Vec<PendingInstance> = (0..300)
        .map(|k| pending(&format!("p{k}"), "w", 500, GI / 4))
        .collect();
    let framework = Framework::default();
    assert_eq!(framework.feasible_to_find(1000), 420);
    let mut batch = framework.batch(&snapshot, &replicas);
    let mut worst = 1.0f64;
    for index in batch.order() {
        let scores = batch.exhaustive_scores(index);
        let best = scores.iter().map(|(_, s)| *s).fold(f64::MIN, f64::max);
        let Decision::Bound { node } = batch.place(index) else {
            panic!("unplaced {index}");
        };
        let chosen = scores.iter().find(|(n, _)| *n == node).unwrap().1;
        worst = worst.min(chosen / best);
    }
    assert!(worst > 0.9, "{worst}");
}

#[test]
fn the_same_input_gives_the_same_outcome() {
    let nodes: Vec<NodeInfo> = (0..300)
        .map(|k| {
            with_label(
                node(&format!("n{k}"), 4000, 4 * GI),
                ZONE,
                ["a", "b", "c"][k % 3],
            )
        })
        .collect();
    let snapshot = Snapshot {
        nodes,
        bound: vec![],
    };
    let replicas: Vec<PendingInstance> = (0..500)
        .map(|k| PendingInstance {
            topology_spread_constraints: vec![spread(
                "w",
                ZONE,
                1,
                WhenUnsatisfiable::DoNotSchedule,
            )],
            affinity: (k % 2 == 0).then(|| anti_affinity("w", HOSTNAME)).flatten(),
            ..pending(&format!("p{k}"), "w", 100, MI)
        })
        .collect();
    let first = place(&snapshot, &replicas);
    assert_eq!(first, place(&snapshot, &replicas));
    assert_eq!(first.bindings.len() + first.unschedulable.len(), 500);
}
