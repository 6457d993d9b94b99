//! Placement through the controllers: bindings, reasons, taints,
//! selectors, imports, preemption, eviction and anti-affinity.

use super::*;

#[test]
fn pending_instances_are_bound_to_ready_nodes_only() {
    let web = deployment("web", 3);
    let mut big_but_down = node("down", false);
    big_but_down.status.allocatable.cpu_millis = 64_000;
    let mut big_but_silent = node("silent", true);
    big_but_silent.status.allocatable.cpu_millis = 64_000;
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "a", 1, Phase::Pending, None),
            instance(&web, "b", 2, Phase::Pending, None),
            instance(&web, "c", 3, Phase::Pending, None),
        ],
        deployments: vec![web],
        nodes: vec![big_but_down, big_but_silent, node("up", true)],
    };
    let plan = run(
        &view,
        &liveness(&[("down", heard(60)), ("silent", heard(60)), ("up", heard(0))]),
    );
    assert_eq!(
        bindings(&plan),
        [("a", "up"), ("b", "up"), ("c", "up")],
        "{plan:#?}"
    );
    for (seen, updated) in updated_instances(&plan) {
        assert_eq!(seen, "20");
        assert_eq!(
            updated.status,
            InstanceStatus {
                phase: Phase::Scheduled,
                ..InstanceStatus::default()
            }
        );
        assert_eq!(updated.metadata.deletion_timestamp, None);
    }
}

#[test]
fn placement_counts_what_bound_instances_reserve() {
    let mut web = deployment("web", 2);
    web.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
    // Were `a-full` seen as empty, it would win the tie on its name.
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "running", 1, Phase::Running, Some("a-full")),
            instance(&web, "pending", 2, Phase::Pending, None),
        ],
        deployments: vec![web],
        nodes: vec![node("a-full", true), node("b-free", true)],
    };
    let plan = run(
        &view,
        &liveness(&[
            ("a-full", reporting(&["running-uid"])),
            ("b-free", heard(0)),
        ]),
    );
    assert_eq!(bindings(&plan), [("pending", "b-free")], "{plan:#?}");
}

#[test]
fn unschedulable_instance_says_why_once() {
    let mut web = deployment("web", 1);
    web.spec.template.spec.resources.requests.cpu = Some(Quantity("8".into()));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web],
        nodes: vec![node("n1", true), node("n2", false)],
    };
    let l = liveness(&[("n1", heard(0))]);
    let plan = run(&view, &l);
    let updates = updated_instances(&plan);
    assert_eq!(updates.len(), 1, "{plan:#?}");
    let (seen, updated) = updates[0];
    assert_eq!(seen, "20");
    assert_eq!(updated.status.phase, Phase::Pending);
    assert_eq!(updated.status.reason, "Unschedulable");
    assert!(
        updated
            .status
            .message
            .starts_with("0/2 nodes are available:"),
        "{}",
        updated.status.message
    );
    assert!(
        updated.status.message.contains("1 insufficient cpu"),
        "{}",
        updated.status.message
    );
    assert_eq!(updated.spec.node_name, None);

    // The status written, the next pass has nothing to say about it.
    let mut again = view;
    again.instances = vec![updated.clone()];
    let plan = run(&again, &l);
    assert!(updated_instances(&plan).is_empty(), "{plan:#?}");

    // Once a node fits, it is bound.
    let mut roomy = again;
    roomy.nodes[0].status.allocatable.cpu_millis = 16_000;
    let plan = run(&roomy, &l);
    assert_eq!(bindings(&plan), [("a", "n1")], "{plan:#?}");
    assert_eq!(updated_instances(&plan)[0].1.status.reason, "");
}

#[test]
fn unschedulable_without_nodes() {
    let web = deployment("web", 1);
    let view = View {
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web],
        ..View::default()
    };
    let plan = run(&view, &HashMap::new());
    let updates = updated_instances(&plan);
    assert_eq!(updates.len(), 1, "{plan:#?}");
    assert_eq!(updates[0].1.status.reason, "Unschedulable");
    assert!(updates[0].1.status.message.starts_with("0/0 "));
}

#[test]
fn placement_skips_instances_the_same_pass_terminates() {
    // `old` is scaled to zero while its instances still wait for room;
    // `web`'s instance, created later, must get that room in this same
    // pass, and no instance may get two commands (the second would be
    // dropped by the resourceVersion guard anyway).
    let mut old = deployment("old", 0);
    old.spec.template.spec.resources.requests.cpu = Some(Quantity("1".into()));
    let mut web = deployment("web", 1);
    web.spec.template.spec.resources.requests.cpu = Some(Quantity("1".into()));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&old, "old-a", 1, Phase::Pending, None),
            instance(&old, "old-b", 2, Phase::Pending, None),
            instance(&web, "web-a", 3, Phase::Pending, None),
        ],
        deployments: vec![old, web],
        nodes: vec![node("n1", true)],
    };
    let plan = run(&view, &liveness(&[("n1", heard(0))]));
    assert_eq!(terminated(&plan), ["old-a", "old-b"], "{plan:#?}");
    assert_eq!(bindings(&plan), [("web-a", "n1")], "{plan:#?}");
    let mut keys: Vec<String> = plan.commands.iter().map(command_key).collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), count, "{plan:#?}");
}

/// Runs `view` with every node connected and heard just now.
fn run_connected(view: &View) -> Plan {
    let heard_now: Vec<(&str, Liveness)> = view
        .nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), heard(0)))
        .collect();
    reconcile(
        view,
        &liveness(&heard_now),
        &component_imports(),
        &settings(),
        now(),
        &mut names(),
    )
}

fn unschedulable_messages(plan: &Plan) -> Vec<(&str, &str)> {
    updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.status.reason == REASON_UNSCHEDULABLE)
        .map(|(_, i)| (i.metadata.name.as_str(), i.status.message.as_str()))
        .collect()
}

#[test]
fn memory_request_larger_than_every_node_stays_pending() {
    let mut web = deployment("web", 1);
    web.spec.template.spec.resources.requests.memory = Some(Quantity("8000Mi".into()));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web],
        nodes: vec![node("n1", true), node("n2", true), node("n3", true)],
    };
    let plan = run_connected(&view);
    assert_eq!(
        unschedulable_messages(&plan),
        [("a", "0/3 nodes are available: 3 insufficient memory.")],
        "{plan:#?}"
    );
}

#[test]
fn tainted_node_takes_only_instances_that_tolerate_it() {
    let mut gpu = node("gpu", true);
    gpu.spec.taints = vec![Taint::parse("gpu=true:NoSchedule").unwrap()];
    let plain = deployment("plain", 1);
    let mut tolerant = deployment("tolerant", 1);
    tolerant.spec.template.spec.tolerations = vec![gpu_toleration()];
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&plain, "plain-a", 1, Phase::Pending, None),
            instance(&tolerant, "tolerant-a", 2, Phase::Pending, None),
        ],
        deployments: vec![plain, tolerant],
        nodes: vec![gpu],
    };
    let plan = run_connected(&view);
    assert_eq!(bindings(&plan), [("tolerant-a", "gpu")], "{plan:#?}");
    assert_eq!(
        unschedulable_messages(&plan),
        [(
            "plain-a",
            "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."
        )]
    );
}

#[test]
fn node_selector_and_cordon_are_honoured() {
    let mut ssd = node("z-ssd", true);
    ssd.metadata.labels.insert("disktype".into(), "ssd".into());
    let mut cordoned = node("a-ssd-cordoned", true);
    cordoned
        .metadata
        .labels
        .insert("disktype".into(), "ssd".into());
    cordoned.spec.unschedulable = true;
    let mut web = deployment("web", 3);
    web.spec.template.spec.node_selector = BTreeMap::from([("disktype".into(), "ssd".into())]);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..3)
            .map(|k| instance(&web, &format!("w{k}"), k, Phase::Pending, None))
            .collect(),
        deployments: vec![web],
        nodes: vec![node("b-hdd", true), cordoned, ssd],
    };
    let plan = run_connected(&view);
    assert_eq!(
        bindings(&plan),
        [("w0", "z-ssd"), ("w1", "z-ssd"), ("w2", "z-ssd")],
        "{plan:#?}"
    );
}

#[test]
fn the_templates_node_name_pins_its_instances() {
    let mut web = deployment("web", 1);
    web.spec.template.spec.node_name = Some("n2".into());
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web],
        nodes: vec![node("n1", true), node("n2", true)],
    };
    assert_eq!(bindings(&run_connected(&view)), [("a", "n2")]);
}

#[test]
fn components_go_only_where_their_imports_are_provided() {
    let mut web = deployment("web", 1);
    web.spec.template.spec.component = "sha256:v2".into();
    let mut cli_only = node("cli-only", true);
    cli_only.status.interfaces = vec!["wasi:cli/environment@0.2".into()];
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Pending, None)],
        deployments: vec![web.clone()],
        nodes: vec![cli_only.clone()],
    };
    assert_eq!(
        unschedulable_messages(&run_connected(&view)),
        [(
            "a",
            "0/1 nodes are available: 1 node(s) did not provide interface wasi:http/types@0.2.6."
        )]
    );
    let mut http = node("http", true);
    http.status.interfaces = vec!["wasi:http/types@0.2".into()];
    let view = View {
        nodes: vec![cli_only, http],
        ..view
    };
    assert_eq!(bindings(&run_connected(&view)), [("a", "http")]);
}

#[test]
fn higher_priority_preempts_and_the_victims_go_pending() {
    let mut low = deployment("low", 2);
    low.spec.template.spec.resources.requests.cpu = Some(Quantity("900m".into()));
    low.spec.template.spec.priority = Some(0);
    let mut high = deployment("high", 1);
    high.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
    high.spec.template.spec.priority = Some(1000);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&low, "low-a", 1, Phase::Running, Some("n1")),
            instance(&low, "low-b", 2, Phase::Running, Some("n1")),
            instance(&high, "high-a", 3, Phase::Pending, None),
        ],
        deployments: vec![low, high],
        nodes: vec![node("n1", true)],
    };
    let plan = run_connected(&view);
    let updates = updated_instances(&plan);
    let victims: Vec<&Instance> = updates
        .iter()
        .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
        .map(|(_, i)| *i)
        .collect();
    // 1500m needs both 900m instances gone.
    assert_eq!(victims.len(), 2, "{plan:#?}");
    for victim in &victims {
        assert_eq!(victim.spec.node_name, None);
        assert_eq!(victim.status.phase, Phase::Pending);
        assert_eq!(victim.status.message, "preempted by high-a on n1");
        assert_eq!(victim.metadata.deletion_timestamp, None);
    }
    assert_eq!(bindings(&plan), [("high-a", "n1")]);
    // Victims are written before the binding that takes their room.
    let position = |name: &str| {
        plan.commands
            .iter()
            .position(|c| command_key(c) == key_of(name))
            .unwrap()
    };
    assert!(position("low-a") < position("high-a"));
    assert!(position("low-b") < position("high-a"));
}

#[test]
fn equal_priority_never_preempts() {
    let mut low = deployment("low", 1);
    low.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
    low.spec.template.spec.priority = Some(5);
    let mut same = deployment("same", 1);
    same.spec.template.spec.resources.requests.cpu = Some(Quantity("1500m".into()));
    same.spec.template.spec.priority = Some(5);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&low, "low-a", 1, Phase::Running, Some("n1")),
            instance(&same, "same-a", 3, Phase::Pending, None),
        ],
        deployments: vec![low, same],
        nodes: vec![node("n1", true)],
    };
    let plan = run_connected(&view);
    assert!(bindings(&plan).is_empty(), "{plan:#?}");
    assert_eq!(
        unschedulable_messages(&plan),
        [("same-a", "0/1 nodes are available: 1 insufficient cpu.")]
    );
}

#[test]
fn no_execute_taint_evicts_and_the_deployment_replaces() {
    let web = deployment("web", 1);
    let mut tainted = node("n1", true);
    tainted.spec.taints = vec![Taint::parse("maintenance=now:NoExecute").unwrap()];
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
        deployments: vec![web.clone()],
        nodes: vec![tainted.clone(), node("n2", true)],
    };
    let plan = run_connected(&view);
    assert_eq!(terminated(&plan), ["a"], "{plan:#?}");
    // The replacement is created in the same pass, and goes away from
    // the taint once placed.
    assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
    let (_, evicted) = updated_instances(&plan)
        .into_iter()
        .find(|(_, i)| i.metadata.name == "a")
        .unwrap();
    assert_eq!(evicted.status.phase, Phase::Terminating);
    assert_eq!(evicted.status.reason, REASON_TAINT_EVICTION);
    assert_eq!(
        evicted.status.message,
        "node n1 has taint maintenance=now:NoExecute that the instance does not tolerate"
    );
    let after = apply(&view, &plan);
    let next = run_connected(&after);
    assert!(creates(&next).is_empty(), "{next:#?}");
    let bound: Vec<_> = updated_instances(&next)
        .into_iter()
        .filter_map(|(_, i)| i.spec.node_name.clone())
        .collect();
    assert_eq!(bound, ["n2"], "{next:#?}");

    // Tolerated for a while: it stays until the time runs out.
    let mut patient = web;
    patient.spec.template.spec.tolerations = vec![Toleration {
        key: "maintenance".into(),
        operator: berth_api::scheduling::TolerationOperator::Exists,
        toleration_seconds: Some(60),
        ..Toleration::default()
    }];
    tainted.spec.taints[0].time_added = Some(now() - SignedDuration::from_secs(30));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&patient, "b", 1, Phase::Running, Some("n1"))],
        deployments: vec![patient],
        nodes: vec![tainted.clone()],
    };
    assert!(terminated(&run_connected(&view)).is_empty());
    let mut later = view;
    later.nodes[0].spec.taints[0].time_added = Some(now() - SignedDuration::from_secs(60));
    assert_eq!(terminated(&run_connected(&later)), ["b"]);
}

#[test]
fn anti_affinity_replicas_take_distinct_nodes() {
    let mut web = deployment("web", 5);
    web.spec.template.spec.affinity = Some(anti_affinity("app", "web", HOSTNAME_LABEL));
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: (0..5)
            .map(|k| instance(&web, &format!("w{k}"), k, Phase::Pending, None))
            .collect(),
        deployments: vec![web],
        nodes: (1..=4).map(|k| node(&format!("n{k}"), true)).collect(),
    };
    let plan = run_connected(&view);
    let mut nodes: Vec<&str> = bindings(&plan).into_iter().map(|(_, n)| n).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["n1", "n2", "n3", "n4"], "{plan:#?}");
    assert_eq!(
        unschedulable_messages(&plan),
        [(
            "w4",
            "0/4 nodes are available: 4 node(s) didn't match instance anti-affinity rules."
        )]
    );
}
