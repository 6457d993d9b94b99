//! The seed scenarios, preemption and batches.

use std::collections::BTreeSet;

use berth_api::scheduling::PreemptionPolicy;

use super::*;

// Seed scenarios.

#[test]
fn memory_larger_than_every_node_stays_pending() {
    let snapshot = Snapshot {
        nodes: (1..=3)
            .map(|k| node(&format!("n{k}"), 4000, 4 * GI))
            .collect(),
        bound: vec![],
    };
    let outcome = place(&snapshot, &[pending("big", "web", 100, 8000 * MI)]);
    assert!(outcome.bindings.is_empty());
    assert_eq!(
        outcome.unschedulable,
        [Unschedulable {
            key: "big".into(),
            message: "0/3 nodes are available: 3 insufficient memory.".into()
        }]
    );
}

#[test]
fn reasons_are_grouped_counted_and_sorted() {
    let mut nodes: Vec<NodeInfo> = (1..=3)
        .map(|k| node(&format!("small{k}"), 4000, GI))
        .collect();
    nodes.push(tainted(node("gpu1", 4000, 16 * GI), "gpu=true:NoSchedule"));
    nodes.push(tainted(node("gpu2", 4000, 16 * GI), "gpu=true:NoSchedule"));
    let snapshot = Snapshot {
        nodes,
        bound: vec![],
    };
    let outcome = place(&snapshot, &[pending("a", "web", 100, 2 * GI)]);
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/5 nodes are available: 3 insufficient memory, 2 node(s) had untolerated taint {gpu: true}."
    );
}

#[test]
fn no_schedule_taint_repels_unless_tolerated() {
    let snapshot = Snapshot {
        nodes: vec![tainted(node("gpu", 4000, 4 * GI), "gpu=true:NoSchedule")],
        bound: vec![],
    };
    let plain = pending("plain", "web", 100, MI);
    let mut tolerant = pending("tolerant", "ml", 100, MI);
    tolerant.tolerations = vec![toleration("gpu", "true")];
    let outcome = place(&snapshot, &[plain, tolerant]);
    assert_eq!(placements(&outcome), BTreeMap::from([("tolerant", "gpu")]));
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
    );
}

#[test]
fn node_selector_lands_only_on_matching_nodes() {
    let snapshot = Snapshot {
        nodes: vec![
            with_label(node("a", 8000, 8 * GI), "disktype", "hdd"),
            with_label(node("b", 1000, GI), "disktype", "ssd"),
            node("c", 8000, 8 * GI),
            with_label(node("d", 1000, GI), "disktype", "ssd"),
        ],
        bound: vec![],
    };
    let replicas: Vec<PendingInstance> = (0..6)
        .map(|k| PendingInstance {
            node_selector: labels(&[("disktype", "ssd")]),
            ..pending(&format!("w{k}"), "web", 100, MI)
        })
        .collect();
    let outcome = place(&snapshot, &replicas);
    assert_eq!(outcome.bindings.len(), 6);
    assert!(
        outcome
            .bindings
            .iter()
            .all(|b| b.node == "b" || b.node == "d"),
        "{outcome:?}"
    );
    // Spread by the least-allocated score.
    let on_b = outcome.bindings.iter().filter(|b| b.node == "b").count();
    assert_eq!(on_b, 3);
}

#[test]
fn required_anti_affinity_puts_replicas_on_distinct_nodes() {
    let snapshot = Snapshot {
        nodes: (1..=4)
            .map(|k| node(&format!("n{k}"), 4000, 4 * GI))
            .collect(),
        bound: vec![],
    };
    let replicas: Vec<PendingInstance> = (0..5)
        .map(|k| PendingInstance {
            affinity: anti_affinity("web", HOSTNAME),
            ..pending(&format!("w{k}"), "web", 100, MI)
        })
        .collect();
    let outcome = place(&snapshot, &replicas);
    let nodes: BTreeSet<&str> = outcome.bindings.iter().map(|b| b.node.as_str()).collect();
    assert_eq!(outcome.bindings.len(), 4);
    assert_eq!(nodes.len(), 4);
    assert_eq!(
        outcome.unschedulable,
        [Unschedulable {
            key: "w4".into(),
            message:
                "0/4 nodes are available: 4 node(s) didn't match instance anti-affinity rules."
                    .into()
        }]
    );
}

#[test]
fn higher_priority_preempts_lower_and_never_equal() {
    // Three full nodes: n1 holds priority 10 instances, n2 priority 50, n3
    // priority 100.
    let snapshot = Snapshot {
        nodes: (1..=3)
            .map(|k| node(&format!("n{k}"), 2000, 4 * GI))
            .collect(),
        bound: vec![
            bound("n1-a", "low", "n1", 1000, 10),
            bound("n1-b", "low", "n1", 1000, 10),
            bound("n2-a", "mid", "n2", 1000, 50),
            bound("n2-b", "mid", "n2", 1000, 50),
            bound("n3-a", "top", "n3", 2000, 100),
        ],
    };
    let mut urgent = pending("urgent", "urgent", 1000, 0);
    urgent.priority = 100;
    let outcome = place(&snapshot, std::slice::from_ref(&urgent));
    assert_eq!(
        outcome.preemptions,
        [Preemption {
            preemptor: "urgent".into(),
            node: "n1".into(),
            // Of equals, the one reprieved first (lower key) stays.
            victims: vec!["n1-b".into()],
        }]
    );
    assert_eq!(placements(&outcome), BTreeMap::from([("urgent", "n1")]));

    // Equal priority never preempts: 100 cannot evict n3's 100.
    let mut equal = Snapshot {
        bound: vec![bound("n3-a", "top", "n3", 2000, 100)],
        ..snapshot.clone()
    };
    equal.nodes.truncate(3);
    equal.nodes[0].allocatable.cpu_millis = 0;
    equal.nodes[1].allocatable.cpu_millis = 0;
    let outcome = place(&equal, std::slice::from_ref(&urgent));
    assert!(outcome.preemptions.is_empty());
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/3 nodes are available: 3 insufficient cpu."
    );

    // Policy Never waits instead.
    let mut polite = urgent.clone();
    polite.preemption_policy = PreemptionPolicy::Never;
    let outcome = place(&snapshot, &[polite]);
    assert!(outcome.preemptions.is_empty());
    assert_eq!(outcome.unschedulable.len(), 1);
}

#[test]
fn preemption_takes_the_fewest_and_lowest_victims() {
    let snapshot = Snapshot {
        nodes: vec![
            node("n1", 3000, GI),
            node("n2", 3000, GI),
            node("n3", 3000, GI),
        ],
        bound: vec![
            // n1: three small low ones would all have to go.
            bound("n1-a", "x", "n1", 1000, 1),
            bound("n1-b", "x", "n1", 1000, 1),
            bound("n1-c", "x", "n1", 1000, 1),
            // n2: one big low one plus a small higher one that can stay.
            bound("n2-big", "x", "n2", 2000, 1),
            bound("n2-keep", "x", "n2", 1000, 5),
            // n3: one big one of higher priority.
            bound("n3-big", "x", "n3", 3000, 7),
        ],
    };
    let mut p = pending("p", "p", 2000, 0);
    p.priority = 10;
    let outcome = place(&snapshot, &[p]);
    assert_eq!(
        outcome.preemptions,
        [Preemption {
            preemptor: "p".into(),
            node: "n2".into(),
            victims: vec!["n2-big".into()],
        }]
    );
}

#[test]
fn victims_room_is_freed_for_the_rest_of_the_batch() {
    let snapshot = Snapshot {
        nodes: vec![node("n1", 2000, GI)],
        bound: vec![bound("low", "x", "n1", 2000, 0)],
    };
    let mut high = pending("high", "h", 1000, 0);
    high.priority = 10;
    let mut next = pending("next", "n", 1000, 0);
    next.priority = 5;
    let outcome = place(&snapshot, &[next, high]);
    assert_eq!(outcome.preemptions.len(), 1);
    assert_eq!(
        placements(&outcome),
        BTreeMap::from([("high", "n1"), ("next", "n1")])
    );
    // Higher priority placed first.
    assert_eq!(outcome.bindings[0].key, "high");
}

#[test]
fn a_failure_is_not_reused_for_an_instance_that_may_preempt() {
    let snapshot = Snapshot {
        nodes: vec![node("n1", 1000, GI)],
        bound: vec![bound("low", "x", "n1", 1000, 0)],
    };
    let mut polite = pending("polite", "w", 1000, 0);
    polite.priority = 5;
    polite.preemption_policy = PreemptionPolicy::Never;
    let mut pushy = pending("pushy", "w", 1000, 0);
    pushy.priority = 5;
    let mut later = pending("later", "w", 1000, 0);
    later.priority = 5;
    later.preemption_policy = PreemptionPolicy::Never;
    let outcome = place(&snapshot, &[polite, pushy, later]);
    assert_eq!(placements(&outcome), BTreeMap::from([("pushy", "n1")]));
    assert_eq!(outcome.preemptions.len(), 1);
    assert_eq!(outcome.unschedulable.len(), 2);
}

#[test]
fn batch_places_highest_priority_first_and_never_overcommits() {
    let snapshot = Snapshot {
        nodes: vec![node("n1", 1000, GI)],
        bound: vec![],
    };
    let mut vip = pending("vip", "v", 600, 0);
    vip.priority = 5;
    vip.preemption_policy = PreemptionPolicy::Never;
    let early = pending("early", "e", 600, 0);
    let outcome = place(&snapshot, &[early, vip]);
    assert_eq!(placements(&outcome), BTreeMap::from([("vip", "n1")]));
    assert_eq!(outcome.unschedulable[0].key, "early");
    assert_eq!(
        outcome.unschedulable[0].message,
        "0/1 nodes are available: 1 insufficient cpu."
    );
}
