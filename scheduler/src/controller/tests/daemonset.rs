//! The DaemonSet controller: one instance bound to every node that fits,
//! nodes coming and going, taints, runtimes, rolling updates node by node
//! and the status counts.

use berth_api::daemonset::{
    DAEMONSET_NAME_LABEL, DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetStrategyType,
    DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use berth_api::scheduling::TolerationOperator;

use super::super::daemonset::new_instance;
use super::*;

fn a_daemonset() -> DaemonSet {
    DaemonSet {
        api_version: API_VERSION.into(),
        kind: Kind::DaemonSet.as_str().into(),
        metadata: ObjectMeta {
            name: "agent".into(),
            namespace: Some(NS.into()),
            uid: Some("agent-uid".into()),
            resource_version: Some("10".into()),
            generation: Some(1),
            creation_timestamp: Some(t(0)),
            ..ObjectMeta::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector::default(),
            template: template("sha256:v1", "100m"),
            update_strategy: DaemonSetUpdateStrategy::default(),
        },
        status: DaemonSetStatus::default(),
    }
}

/// An instance of `ds`'s current template on `node`, as the controller
/// made it and the reconciler stored it.
fn on(ds: &DaemonSet, name: &str, node: &str, phase: Phase) -> Instance {
    let hash = daemonset_template_hash(ds);
    let mut instance = new_instance(ds, &hash, node, &mut |_| name.into());
    instance.metadata.uid = Some(format!("{name}-uid"));
    instance.metadata.resource_version = Some("20".into());
    instance.metadata.creation_timestamp = Some(t(100));
    instance.status.phase = phase;
    instance.status.ready = phase == Phase::Running;
    instance
}

fn labelled(name: &str, key: &str, value: &str) -> Node {
    let mut node = node(name, true);
    node.metadata.labels.insert(key.into(), value.into());
    node
}

/// Every node heard just now.
fn all_heard(nodes: &[Node]) -> HashMap<String, Liveness> {
    nodes
        .iter()
        .map(|n| (n.metadata.name.clone(), reporting(&[])))
        .collect()
}

fn pass(ds: &DaemonSet, nodes: Vec<Node>, instances: Vec<Instance>) -> Plan {
    let live = all_heard(&nodes);
    let view = View {
        daemonsets: vec![ds.clone()],
        nodes,
        instances,
        ..View::default()
    };
    run(&view, &live)
}

/// The nodes of the instances `plan` creates, sorted.
fn created_on(plan: &Plan) -> Vec<String> {
    let mut nodes: Vec<String> = creates(plan)
        .iter()
        .map(|i| i.spec.node_name.clone().unwrap_or_default())
        .collect();
    nodes.sort();
    nodes
}

/// The names of the instances `plan` terminates, sorted.
fn terminated(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = updated_instances(plan)
        .iter()
        .filter(|(_, i)| i.metadata.deletion_timestamp.is_some())
        .map(|(_, i)| i.metadata.name.clone())
        .collect();
    names.sort();
    names
}

fn ds_status(plan: &Plan) -> Option<DaemonSetStatus> {
    plan.commands.iter().find_map(|c| match c {
        Command::Update { object, .. } => match &**object {
            Object::DaemonSet(d) => Some(d.status.clone()),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn one_instance_bound_to_every_matching_node() {
    let mut ds = a_daemonset();
    ds.spec
        .template
        .spec
        .node_selector
        .insert("role".into(), "edge".into());
    let nodes = vec![
        labelled("n1", "role", "edge"),
        labelled("n2", "role", "core"),
        labelled("n3", "role", "edge"),
    ];
    let plan = pass(&ds, nodes, vec![]);
    assert_eq!(created_on(&plan), ["n1", "n3"], "{plan:#?}");
    for instance in creates(&plan) {
        // Bound directly: placement never scores it.
        assert_eq!(instance.status.phase, Phase::Scheduled);
        assert_eq!(instance.metadata.owner_references[0].kind, "DaemonSet");
        assert_eq!(instance.metadata.owner_references[0].uid, "agent-uid");
        assert_eq!(
            instance
                .metadata
                .labels
                .get(DAEMONSET_NAME_LABEL)
                .map(String::as_str),
            Some("agent")
        );
        assert_eq!(
            instance.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
    }
    assert_eq!(plan.placement.attempts, 0, "nothing goes through placement");
    let status = ds_status(&plan).unwrap();
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled,
            status.updated_number_scheduled,
            status.number_ready,
            status.number_available,
        ),
        (2, 2, 2, 0, 0)
    );
}

#[test]
fn a_new_node_gets_one_and_the_others_keep_theirs() {
    let ds = a_daemonset();
    let nodes = vec![node("n1", true), node("n2", true), node("n3", true)];
    let existing = vec![
        on(&ds, "agent-a", "n1", Phase::Running),
        on(&ds, "agent-b", "n2", Phase::Running),
    ];
    let plan = pass(&ds, nodes, existing);
    assert_eq!(created_on(&plan), ["n3"]);
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
}

#[test]
fn a_node_that_stops_matching_or_goes_away_loses_it() {
    let mut ds = a_daemonset();
    ds.spec
        .template
        .spec
        .node_selector
        .insert("role".into(), "edge".into());
    let nodes = vec![labelled("n1", "role", "edge"), node("n2", true)];
    let existing = vec![
        on(&ds, "agent-a", "n1", Phase::Running),
        // n2 lost its label.
        on(&ds, "agent-b", "n2", Phase::Running),
        // n9 was deleted.
        on(&ds, "agent-c", "n9", Phase::Running),
    ];
    let plan = pass(&ds, nodes, existing);
    assert_eq!(terminated(&plan), ["agent-b", "agent-c"]);
    assert!(creates(&plan).is_empty());
    let status = ds_status(&plan).unwrap();
    assert_eq!(status.desired_number_scheduled, 1);
    assert_eq!(status.number_misscheduled, 2);
}

#[test]
fn a_surplus_instance_on_one_node_goes() {
    let ds = a_daemonset();
    let mut newer = on(&ds, "agent-b", "n1", Phase::Scheduled);
    newer.metadata.creation_timestamp = Some(t(200));
    let existing = vec![on(&ds, "agent-a", "n1", Phase::Running), newer];
    let plan = pass(&ds, vec![node("n1", true)], existing);
    assert_eq!(terminated(&plan), ["agent-b"]);
    assert!(creates(&plan).is_empty());
}

#[test]
fn untolerated_no_schedule_taint_keeps_new_ones_off_and_says_so() {
    let ds = a_daemonset();
    let taint = Taint {
        key: "gpu".into(),
        value: "true".into(),
        effect: TaintEffect::NoSchedule,
        time_added: None,
    };
    let mut tainted = node("n2", true);
    tainted.spec.taints.push(taint.clone());
    let mut cordoned = node("n3", true);
    cordoned.spec.unschedulable = true;
    let plan = pass(
        &ds,
        vec![node("n1", true), tainted.clone(), cordoned.clone()],
        vec![],
    );
    // Cordoning does not stop a DaemonSet, as in Kubernetes.
    assert_eq!(created_on(&plan), ["n1", "n3"]);
    let status = ds_status(&plan).unwrap();
    assert_eq!(status.desired_number_scheduled, 2);
    assert_eq!(
        status.failed_placements,
        ["n2: node had untolerated taint {gpu: true}"]
    );

    // An instance already there stays: NoSchedule does not evict.
    let plan = pass(
        &ds,
        vec![tainted.clone()],
        vec![on(&ds, "agent-a", "n2", Phase::Running)],
    );
    assert!(terminated(&plan).is_empty(), "{plan:#?}");

    // Tolerated, it gets one.
    let mut tolerant = a_daemonset();
    tolerant.spec.template.spec.tolerations.push(Toleration {
        key: "gpu".into(),
        operator: TolerationOperator::Exists,
        ..Toleration::default()
    });
    let plan = pass(&tolerant, vec![tainted], vec![]);
    assert_eq!(created_on(&plan), ["n2"]);
    assert!(ds_status(&plan).unwrap().failed_placements.is_empty());
}

#[test]
fn a_not_ready_node_loses_its_instance_and_gets_none() {
    let ds = a_daemonset();
    let nodes = vec![node("n1", true), node("n2", false)];
    let mut live = all_heard(&nodes);
    live.insert("n2".into(), heard(60));
    let view = View {
        daemonsets: vec![ds.clone()],
        nodes,
        instances: vec![
            on(&ds, "agent-a", "n1", Phase::Running),
            on(&ds, "agent-b", "n2", Phase::Running),
        ],
        ..View::default()
    };
    let plan = run(&view, &live);
    assert_eq!(terminated(&plan), ["agent-b"]);
    assert!(creates(&plan).is_empty(), "{plan:#?}");
    assert_eq!(ds_status(&plan).unwrap().desired_number_scheduled, 1);
}

#[test]
fn only_nodes_offering_the_runtime() {
    let mut ds = a_daemonset();
    ds.spec.template.spec.component.clear();
    ds.spec.template.spec.image = Some("docker.io/library/nginx:1".into());
    let mut oci = node("n2", true);
    oci.status.runtimes = vec!["wasm".into(), "oci".into()];
    let plan = pass(&ds, vec![node("n1", true), oci], vec![]);
    assert_eq!(created_on(&plan), ["n2"]);

    let plan = pass(&a_daemonset(), vec![node("n1", true)], vec![]);
    assert_eq!(created_on(&plan), ["n1"], "a component takes a wasm node");
}

/// `ds` with a changed template, and Running instances of the old one on
/// `nodes`.
fn changed(nodes: &[&str]) -> (DaemonSet, Vec<Instance>) {
    let old = a_daemonset();
    let instances = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| on(&old, &format!("old-{k}"), n, Phase::Running))
        .collect();
    let mut new = old;
    new.spec.template.spec.component = "sha256:v2".into();
    (new, instances)
}

#[test]
fn rolling_update_replaces_one_node_at_a_time() {
    let names = ["n1", "n2", "n3"];
    let nodes = || names.iter().map(|n| node(n, true)).collect::<Vec<_>>();
    let (ds, mut instances) = changed(&names);
    let plan = pass(&ds, nodes(), instances.clone());
    assert_eq!(terminated(&plan), ["old-0"]);
    assert_eq!(created_on(&plan), ["n1"], "replaced in the same pass");
    let status = ds_status(&plan).unwrap();
    assert_eq!(status.updated_number_scheduled, 1);
    assert_eq!(status.number_available, 2);

    // While n1's new instance is not available, nothing else moves.
    instances.remove(0);
    instances.push(on(&ds, "new-0", "n1", Phase::Starting));
    let plan = pass(&ds, nodes(), instances.clone());
    assert!(terminated(&plan).is_empty(), "{plan:#?}");
    assert!(creates(&plan).is_empty());

    // Once it is, the next node follows.
    instances.pop();
    instances.push(on(&ds, "new-0", "n1", Phase::Running));
    let plan = pass(&ds, nodes(), instances);
    assert_eq!(terminated(&plan), ["old-1"]);
    assert_eq!(created_on(&plan), ["n2"]);
}

#[test]
fn rolling_update_takes_max_unavailable_nodes_and_unavailable_old_ones_first() {
    let names = ["n1", "n2", "n3", "n4"];
    let nodes = || names.iter().map(|n| node(n, true)).collect::<Vec<_>>();
    let (mut ds, mut instances) = changed(&names);
    ds.spec.update_strategy.rolling_update = Some(RollingUpdateDaemonSet {
        max_unavailable: Some(IntOrPercent::Int(2)),
    });
    let plan = pass(&ds, nodes(), instances.clone());
    assert_eq!(terminated(&plan), ["old-0", "old-1"]);

    // An old instance that is not available anyway is replaced at once,
    // and counts against the budget.
    instances[3].status.phase = Phase::Failed;
    instances[3].status.ready = false;
    let plan = pass(&ds, nodes(), instances);
    assert_eq!(terminated(&plan), ["old-0", "old-3"]);
}

#[test]
fn on_delete_replaces_only_deleted_instances() {
    let names = ["n1", "n2"];
    let nodes = || names.iter().map(|n| node(n, true)).collect::<Vec<_>>();
    let (mut ds, mut instances) = changed(&names);
    ds.spec.update_strategy.type_ = DaemonSetStrategyType::OnDelete;
    let plan = pass(&ds, nodes(), instances.clone());
    assert!(terminated(&plan).is_empty());
    assert!(creates(&plan).is_empty());
    assert_eq!(ds_status(&plan).unwrap().updated_number_scheduled, 0);

    // Deleted by hand: its replacement has the new template.
    instances[0].metadata.deletion_timestamp = Some(t(900));
    instances[0].status.phase = Phase::Terminating;
    let plan = pass(&ds, nodes(), instances);
    let created = creates(&plan);
    assert_eq!(created_on(&plan), ["n1"]);
    assert_eq!(created[0].spec.component, "sha256:v2");
}

#[test]
fn status_counts_ready_and_available_nodes() {
    let ds = a_daemonset();
    let nodes = vec![node("n1", true), node("n2", true), node("n3", true)];
    let mut unready = on(&ds, "agent-b", "n2", Phase::Running);
    unready.status.ready = false;
    let instances = vec![
        on(&ds, "agent-a", "n1", Phase::Running),
        unready,
        on(&ds, "agent-c", "n3", Phase::Starting),
    ];
    let plan = pass(&ds, nodes.clone(), instances.clone());
    let counts = ds_status(&plan).unwrap();
    assert_eq!(
        counts,
        DaemonSetStatus {
            desired_number_scheduled: 3,
            current_number_scheduled: 3,
            number_misscheduled: 0,
            number_ready: 1,
            updated_number_scheduled: 3,
            number_available: 1,
            number_unavailable: 2,
            failed_placements: vec![],
        }
    );
    // Written only when it changes.
    let mut settled = ds.clone();
    settled.status = counts;
    let plan = pass(&settled, nodes, instances);
    assert_eq!(ds_status(&plan), None, "{plan:#?}");
}

#[test]
fn a_deleted_daemonset_loses_its_instances() {
    let ds = a_daemonset();
    let nodes = vec![node("n1", true)];
    let live = all_heard(&nodes);
    let view = View {
        nodes,
        instances: vec![on(&ds, "agent-a", "n1", Phase::Running)],
        ..View::default()
    };
    let plan = run(&view, &live);
    assert_eq!(terminated(&plan), ["agent-a"]);
}
