//! Node lifecycle: readiness by heartbeat, and after a scheduler restart.

use super::*;
use crate::controller::nodes::{CGROUPS_LABEL, CGROUPS_UNAVAILABLE};

#[test]
fn silent_node_turns_not_ready() {
    let view = View {
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", heard(6))]));
    let nodes = updated_nodes(&plan);
    assert_eq!(nodes.len(), 1, "{plan:#?}");
    let (seen, updated) = nodes[0];
    assert_eq!(seen, "5");
    assert!(!updated.status.is_ready());
    assert_eq!(
        updated.status.conditions,
        [NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: "NodeStatusUnknown".into(),
            last_transition_time: Some(now()),
        }]
    );
    assert_eq!(updated.status.allocatable, view.nodes[0].status.allocatable);
    assert_eq!(updated.metadata, view.nodes[0].metadata);
    assert_eq!(
        updated.spec.taints,
        [Taint {
            key: UNREACHABLE_TAINT.into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            time_added: Some(now()),
        }],
        "a node that is not Ready is tainted unreachable"
    );

    // Heard exactly `node_grace` ago is still alive.
    let plan = run(&view, &liveness(&[("n1", heard(5))]));
    assert_eq!(plan, Plan::default());
}

#[test]
fn node_heard_again_turns_ready() {
    let view = View {
        nodes: vec![node("n1", false)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", heard(1))]));
    let nodes = updated_nodes(&plan);
    assert_eq!(nodes.len(), 1, "{plan:#?}");
    assert_eq!(
        nodes[0].1.status.conditions,
        [NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "NodeReady".into(),
            last_transition_time: Some(now()),
        }]
    );
    assert!(
        nodes[0].1.spec.taints.is_empty(),
        "the unreachable taint goes"
    );
    // Still silent: stays as it is.
    let plan = run(&view, &liveness(&[("n1", heard(6))]));
    assert_eq!(plan, Plan::default());
}

#[test]
fn unconnected_node_keeps_its_state_until_the_restart_allowance_ends() {
    let view = View {
        nodes: vec![node("up", true), node("down", false)],
        ..View::default()
    };
    let grace = settings().node_grace + settings().reconnect_allowance;
    let started = |ago: SignedDuration| Settings {
        started: now() - ago,
        ..settings()
    };

    let within = run_with(&view, &HashMap::new(), &started(grace));
    assert_eq!(within, Plan::default());

    let after = run_with(
        &view,
        &HashMap::new(),
        &started(grace + SignedDuration::from_secs(1)),
    );
    let nodes = updated_nodes(&after);
    assert_eq!(nodes.len(), 1, "{after:#?}");
    assert_eq!(nodes[0].1.metadata.name, "up");
    assert!(!nodes[0].1.status.is_ready());
}

#[test]
fn unconnected_node_inside_the_allowance_takes_no_new_instances_when_not_ready() {
    let web = deployment("web", 1);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web],
        nodes: vec![node("up", true), node("down", false)],
    };
    let recent = Settings {
        started: now() - SignedDuration::from_secs(1),
        ..settings()
    };
    let plan = run_with(&view, &HashMap::new(), &recent);
    assert_eq!(bindings(&plan), [("a", "up")], "{plan:#?}");
}

#[test]
fn a_node_without_writable_cgroups_gets_the_cgroups_unavailable_condition() {
    let mut unbounded = node("n1", true);
    unbounded
        .metadata
        .labels
        .insert(CGROUPS_LABEL.into(), "unavailable".into());
    let view = View {
        nodes: vec![unbounded],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", heard(1))]));
    let nodes = updated_nodes(&plan);
    assert_eq!(nodes.len(), 1, "{plan:#?}");
    let updated = nodes[0].1;
    assert!(updated.status.is_ready(), "it still runs instances");
    let condition = updated
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CGROUPS_UNAVAILABLE)
        .unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "CgroupsNotWritable")
    );

    // Once recorded, nothing changes until the label does.
    let mut recorded = updated.clone();
    recorded.metadata.resource_version = Some("6".into());
    let view = View {
        nodes: vec![recorded],
        ..View::default()
    };
    assert_eq!(run(&view, &liveness(&[("n1", heard(1))])), Plan::default());
}
