//! Garbage collection: orphans and terminating instances.

use super::*;

#[test]
fn orphans_are_terminated() {
    let web = deployment("web", 1);
    let gone = deployment("gone", 1);
    let mut ownerless = instance(&web, "ownerless", 1, Phase::Running, Some("n1"));
    ownerless.metadata.owner_references.clear();
    // Same name as a live Deployment but an old uid: not adopted.
    let mut renamed = deployment("web", 1);
    renamed.metadata.uid = Some("web-old-uid".into());
    let view = View {
        jobs: Vec::new(),
        daemonsets: Vec::new(),
        cronjobs: Vec::new(),
        instances: vec![
            instance(&web, "kept", 1, Phase::Running, Some("n1")),
            instance(&gone, "orphan", 1, Phase::Running, Some("n1")),
            instance(&renamed, "old-web", 1, Phase::Running, Some("n1")),
            ownerless,
        ],
        deployments: vec![web],
        nodes: vec![node("n1", true)],
    };
    let uids = ["kept-uid", "orphan-uid", "old-web-uid", "ownerless-uid"];
    let plan = run(&view, &liveness(&[("n1", reporting(&uids))]));
    assert_eq!(
        terminated(&plan),
        ["old-web", "orphan", "ownerless"],
        "{plan:#?}"
    );
    assert!(removed(&plan).is_empty());
    for (seen, updated) in updated_instances(&plan) {
        assert_eq!(seen, "20");
        assert_eq!(updated.status.phase, Phase::Terminating);
        assert_eq!(updated.metadata.deletion_timestamp, Some(now()));
    }
}

#[test]
fn terminating_instance_without_a_node_is_removed() {
    let gone = deployment("gone", 1);
    let view = View {
        instances: vec![terminating(
            instance(&gone, "x", 1, Phase::Pending, None),
            now(),
        )],
        ..View::default()
    };
    let plan = run(&view, &HashMap::new());
    assert_eq!(
        plan.commands,
        [Command::Remove {
            key: "Instance/prod/x".into(),
            seen: "20".into(),
        }]
    );
}

#[test]
fn terminating_instance_on_a_node_not_ready_is_removed() {
    let gone = deployment("gone", 1);
    let on = |name: &str, node: &str| {
        terminating(instance(&gone, name, 1, Phase::Running, Some(node)), now())
    };
    let view = View {
        instances: vec![on("a", "down"), on("b", "silent"), on("c", "missing")],
        nodes: vec![node("down", false), node("silent", true)],
        ..View::default()
    };
    // `silent` was Ready but is past its grace: it turns NotReady in this
    // very pass, and what it held goes with it.
    let mut silent = reporting(&["b-uid"]);
    silent.last_heard = Some(now() - SignedDuration::from_secs(60));
    let plan = run(&view, &liveness(&[("silent", silent)]));
    let mut gone_keys = removed(&plan);
    gone_keys.sort_unstable();
    assert_eq!(
        gone_keys,
        [key_of("a"), key_of("b"), key_of("c")],
        "{plan:#?}"
    );
}

#[test]
fn terminating_instance_no_longer_reported_is_removed() {
    let gone = deployment("gone", 1);
    let view = View {
        instances: vec![terminating(
            instance(&gone, "x", 1, Phase::Running, Some("n1")),
            now(),
        )],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["other-uid"]))]));
    assert_eq!(removed(&plan), [key_of("x")], "{plan:#?}");
}

#[test]
fn terminating_instance_is_kept_while_its_ready_node_runs_it() {
    let gone = deployment("gone", 1);
    let view = View {
        instances: vec![terminating(
            instance(&gone, "x", 1, Phase::Running, Some("n1")),
            now() - SignedDuration::from_secs(10),
        )],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["x-uid"]))]));
    assert_eq!(plan, Plan::default());

    // Connected but not reported since the scheduler started: no
    // evidence it stopped, so it waits too.
    let unreported = Liveness {
        last_heard: Some(now()),
        reported: None,
    };
    let plan = run(&view, &liveness(&[("n1", unreported)]));
    assert_eq!(plan, Plan::default());
}

#[test]
fn terminating_instance_is_removed_after_the_timeout() {
    let gone = deployment("gone", 1);
    let since = |ago: i64| {
        terminating(
            instance(&gone, "x", 1, Phase::Running, Some("n1")),
            now() - SignedDuration::from_secs(ago),
        )
    };
    let l = liveness(&[("n1", reporting(&["x-uid"]))]);
    let at_limit = View {
        instances: vec![since(TERMINATION_TIMEOUT.as_secs())],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    assert_eq!(run(&at_limit, &l), Plan::default());
    let past = View {
        instances: vec![since(TERMINATION_TIMEOUT.as_secs() + 1)],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    assert_eq!(removed(&run(&past, &l)), [key_of("x")]);
}

#[test]
fn terminating_instance_is_not_terminated_again() {
    let gone = deployment("gone", 1);
    let view = View {
        instances: vec![terminating(
            instance(&gone, "x", 1, Phase::Running, Some("n1")),
            now(),
        )],
        nodes: vec![node("n1", true)],
        ..View::default()
    };
    let plan = run(&view, &liveness(&[("n1", reporting(&["x-uid"]))]));
    assert!(updated_instances(&plan).is_empty(), "{plan:#?}");
}
