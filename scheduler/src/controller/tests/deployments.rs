//! Scaling a Deployment up and down, and what a template change does.

use super::*;

// Scaling up.

#[test]
fn new_deployment_gets_its_replicas_created() {
    let web = deployment("web", 3);
    let view = View {
        deployments: vec![web.clone()],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&[]))]));

    let created = creates(&plan);
    assert_eq!(created.len(), 3, "{plan:#?}");
    let mut names: Vec<&str> = created.iter().map(|i| i.metadata.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    for instance in &created {
        assert_eq!(instance.metadata.namespace.as_deref(), Some(NS));
        assert_eq!(
            instance.metadata.labels.get(TEMPLATE_HASH_LABEL),
            Some(&template_hash(&web))
        );
        assert_eq!(
            instance.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(owner_uid(instance), Some("web-uid"));
        assert_eq!(instance.metadata.owner_references[0].name, "web");
        assert_eq!(instance.spec, web.spec.template.spec);
        assert_eq!(instance.status, InstanceStatus::default());
        assert_eq!(instance.kind, "Instance");
    }

    let deployments = updated_deployments(&plan);
    assert_eq!(deployments.len(), 1);
    let (seen, updated) = deployments[0];
    assert_eq!(seen, "10");
    let status = updated.status.clone().unwrap();
    assert_eq!(
        (status.observed_generation, status.replicas, status.revision),
        (2, 0, 1),
        "the instances created are not stored yet"
    );
    assert_eq!(
        status.history,
        [Revision {
            revision: 1,
            template_hash: template_hash(&web),
            template: web.spec.template.clone(),
            change_cause: "component sha256:v1".into(),
        }]
    );
    assert_eq!(
        status.conditions,
        [
            DeploymentCondition {
                type_: CONDITION_AVAILABLE.into(),
                status: "False".into(),
                reason: REASON_MINIMUM_REPLICAS_UNAVAILABLE.into(),
                message: "deployment does not have minimum availability".into(),
                last_update_time: Some(now()),
            },
            DeploymentCondition {
                type_: CONDITION_PROGRESSING.into(),
                status: "True".into(),
                reason: REASON_REVISION_UPDATED.into(),
                message: "revision 1 is progressing".into(),
                last_update_time: Some(now()),
            },
        ]
    );
    assert_eq!(updated.spec, web.spec);
    // Nothing else: the new instances are placed once they are stored.
    assert_eq!(plan.commands.len(), 4, "{plan:#?}");
}

#[test]
fn created_instances_do_not_inherit_a_templated_node_name() {
    let mut web = deployment("web", 1);
    web.spec.template.spec.node_name = Some("n1".into());
    let view = View {
        deployments: vec![web],
        ..View::default()
    };
    let plan = run(&view, &HashMap::new());
    assert_eq!(creates(&plan)[0].spec.node_name, None);
}

#[test]
fn negative_replicas_count_as_zero() {
    let web = deployment("web", -3);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid"]))]));
    assert!(creates(&plan).is_empty());
    assert_eq!(terminated(&plan), ["a"]);
}

#[test]
fn steady_deployment_produces_no_commands() {
    let web = deployment("web", 2);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "a", 1, Phase::Running, Some("n1")),
            instance(&web, "b", 2, Phase::Starting, Some("n1")),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let l = liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]);
    let plan = run(&view, &l);
    let status = updated_deployments(&plan)[0].1.status.clone().unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (2, 2, 1, 1, 1)
    );
    // Status written, the same pass later is a no-op.
    let mut view = view;
    view.deployments[0].status = Some(status);
    let later = now() + SignedDuration::from_secs(30);
    let mut l = l;
    for node in l.values_mut() {
        node.last_heard = Some(later);
    }
    let plan = reconcile(&view, &l, &HashMap::new(), &settings(), later, &mut names());
    assert_eq!(plan, Plan::default());
}

#[test]
fn status_follows_a_new_generation() {
    let mut web = deployment("web", 1);
    web.status = Some(DeploymentStatus {
        observed_generation: 1,
        replicas: 1,
        updated_replicas: 1,
        ready_replicas: 1,
        available_replicas: 1,
        ..DeploymentStatus::default()
    });
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![instance(&web, "a", 1, Phase::Running, Some("n1"))],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid"]))]));
    let deployments = updated_deployments(&plan);
    assert_eq!(deployments.len(), 1, "{plan:#?}");
    assert_eq!(
        deployments[0]
            .1
            .status
            .as_ref()
            .map(|s| s.observed_generation),
        Some(2)
    );
}

// Scaling down.

#[test]
fn scale_down_terminates_unplaced_instances_then_the_newest() {
    let web = deployment("web", 2);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "r1", 1, Phase::Running, Some("n1")),
            instance(&web, "r2", 3, Phase::Running, Some("n1")),
            instance(&web, "r3", 2, Phase::Running, Some("n1")),
            instance(&web, "p1", 0, Phase::Pending, None),
            instance(&web, "p2", 4, Phase::Pending, None),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let uids = ["r1-uid", "r2-uid", "r3-uid"];
    let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));

    assert_eq!(terminated(&plan), ["p1", "p2", "r2"], "{plan:#?}");
    assert!(creates(&plan).is_empty());
    for (seen, updated) in updated_instances(&plan) {
        let before = view
            .instances
            .iter()
            .find(|i| i.metadata.name == updated.metadata.name)
            .unwrap();
        assert_eq!(seen, "20");
        assert_eq!(updated.metadata.deletion_timestamp, Some(now()));
        assert_eq!(updated.status.phase, Phase::Terminating);
        // Only the deletion mark and the phase change.
        assert_eq!(updated.spec, before.spec);
        assert_eq!(updated.metadata.uid, before.metadata.uid);
        assert_eq!(updated.metadata.labels, before.metadata.labels);
    }
    let deployments = updated_deployments(&plan);
    let status = deployments[0].1.status.clone().unwrap();
    assert_eq!((status.replicas, status.ready_replicas), (2, 2));
}

#[test]
fn scale_down_of_running_instances_terminates_the_newest() {
    let web = deployment("web", 1);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "c5", 5, Phase::Running, Some("n1")),
            instance(&web, "c1", 1, Phase::Running, Some("n1")),
            instance(&web, "c7", 7, Phase::Running, Some("n1")),
            instance(&web, "c3", 3, Phase::Running, Some("n1")),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let uids = ["c1-uid", "c3-uid", "c5-uid", "c7-uid"];
    let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
    assert_eq!(terminated(&plan), ["c3", "c5", "c7"], "{plan:#?}");
}

#[test]
fn scale_down_terminates_failed_and_starting_before_running() {
    let web = deployment("web", 1);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "running", 9, Phase::Running, Some("n1")),
            instance(&web, "starting", 1, Phase::Starting, Some("n1")),
            instance(&web, "failed", 2, Phase::Failed, Some("n1")),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&[]))]));
    assert_eq!(terminated(&plan), ["failed", "starting"], "{plan:#?}");
}

#[test]
fn terminating_instances_do_not_count_as_replicas() {
    let web = deployment("web", 2);
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "a", 1, Phase::Running, Some("n1")),
            terminating(instance(&web, "b", 2, Phase::Running, Some("n1")), now()),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]));
    assert_eq!(creates(&plan).len(), 1, "{plan:#?}");
    assert!(terminated(&plan).is_empty());
}

// Template changes.

#[test]
fn template_hash_tracks_the_template_only() {
    let web = deployment("web", 1);
    let mut scaled = web.clone();
    scaled.spec.replicas = 7;
    scaled.metadata.generation = Some(9);
    assert_eq!(template_hash(&web), template_hash(&scaled));
    assert_eq!(template_hash(&web).len(), 10);

    let mut env = web.clone();
    env.spec.template.spec.env.push(EnvVar {
        name: "MODE".into(),
        value: "fast".into(),
        value_from: None,
    });
    let mut component = web.clone();
    component.spec.template.spec.component = "sha256:v2".into();
    assert_ne!(template_hash(&web), template_hash(&env));
    assert_ne!(template_hash(&web), template_hash(&component));
}

#[test]
fn recreate_terminates_every_old_instance_first() {
    for change in ["env", "component"] {
        let old = deployment("web", 2);
        let mut web = old.clone();
        web.spec.strategy.type_ = StrategyType::Recreate;
        match change {
            "env" => web.spec.template.spec.env.push(EnvVar {
                name: "MODE".into(),
                value: "fast".into(),
                value_from: None,
            }),
            _ => web.spec.template.spec.component = "sha256:v2".into(),
        }
        let view = View {
            jobs: Vec::new(),
            daemonsets: Vec::new(),
            cronjobs: Vec::new(),
            instances: vec![
                instance(&old, "a", 1, Phase::Running, Some("n1")),
                instance(&old, "b", 2, Phase::Running, Some("n1")),
                instance(&old, "c", 3, Phase::Pending, None),
            ],
            deployments: vec![web.clone()],
            nodes: vec![node("n1", true)],
        };
        let plan = run(&view, &liveness(&[("n1", reporting(&["a-uid", "b-uid"]))]));

        assert_eq!(terminated(&plan), ["a", "b", "c"], "{change}: {plan:#?}");
        assert!(creates(&plan).is_empty(), "{change}: {plan:#?}");
        assert_ne!(template_hash(&old), template_hash(&web));
    }
}

#[test]
fn rolling_update_keeps_instances_already_current() {
    // 2 replicas: maxSurge 25% is 1, maxUnavailable 25% is 0.
    let old = deployment("web", 2);
    let mut web = old.clone();
    web.spec.template.spec.component = "sha256:v2".into();
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&old, "old1", 1, Phase::Running, Some("n1")),
            instance(&old, "old2", 2, Phase::Running, Some("n1")),
            instance(&web, "new1", 3, Phase::Running, Some("n1")),
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let uids = ["old1-uid", "old2-uid", "new1-uid"];
    let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
    // Three available, two needed: the oldest goes; its replacement
    // waits until it is gone, as it may serve until then.
    assert_eq!(terminated(&plan), ["old1"], "{plan:#?}");
    assert_eq!(creates(&plan).len(), 0);
}
