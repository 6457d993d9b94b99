//! What every plan must keep, checked by the property tests.

use super::*;

pub(super) fn check_plan(view: &View, plan: &Plan, case: usize) {
    let objects = view_objects(view);
    let imports = component_imports();

    // Every command names an object of the snapshot (but creates), with
    // the resourceVersion it had, and no object gets two commands.
    let mut seen_keys = HashSet::new();
    for command in &plan.commands {
        let key = command_key(command);
        assert!(
            seen_keys.insert(key.clone()),
            "case {case}: {key} twice: {plan:#?}"
        );
        match command {
            Command::Create(i) => {
                assert!(!objects.contains_key(&key), "case {case}: create of {key}");
                let owner = view
                    .deployments
                    .iter()
                    .find(|d| d.metadata.uid.as_deref() == owner_uid(i))
                    .unwrap_or_else(|| panic!("case {case}: {key} has no owner"));
                // A paused Deployment may scale its old template.
                if !owner.spec.paused {
                    assert_eq!(
                        i.metadata.labels.get(TEMPLATE_HASH_LABEL),
                        Some(&template_hash(owner))
                    );
                }
                assert_eq!(i.metadata.namespace, owner.metadata.namespace);
                assert_eq!(i.spec.node_name, None);
            }
            Command::CreateJob(j) => {
                panic!("case {case}: job {} without a cronjob", j.metadata.name)
            }
            Command::Update { seen, .. } | Command::Remove { seen, .. } => {
                let before = objects
                    .get(&key)
                    .unwrap_or_else(|| panic!("case {case}: {key} is not in the view"));
                assert_eq!(
                    before.metadata().resource_version.as_ref(),
                    Some(seen),
                    "case {case}: {key}"
                );
                if let Command::Remove { .. } = command {
                    assert!(
                        before.metadata().deletion_timestamp.is_some(),
                        "case {case}: removed {key} while not terminating"
                    );
                }
            }
        }
    }

    check_rollouts(view, plan, case);

    // Bindings go to nodes Ready after this pass, and fit in the room
    // the node had left.
    let after = apply(view, plan);
    let ready: HashMap<&str, bool> = after
        .nodes
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.status.is_ready()))
        .collect();
    let mut added: HashMap<&str, (u64, u64)> = HashMap::new();
    let victims: HashSet<&str> = updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
        .map(|(_, i)| i.metadata.name.as_str())
        .collect();
    for (_, i) in updated_instances(plan) {
        if i.status.phase != Phase::Scheduled {
            continue;
        }
        let node = i.spec.node_name.as_deref().unwrap();
        assert_eq!(ready.get(node), Some(&true), "case {case}: bound to {node}");
        // The node as this plan leaves it (readiness and the
        // unreachable taint change in the same pass).
        let n = updated_nodes(plan)
            .into_iter()
            .map(|(_, n)| n)
            .find(|n| n.metadata.name == node)
            .or_else(|| view.nodes.iter().find(|n| n.metadata.name == node))
            .unwrap();
        assert!(
            !n.spec.unschedulable,
            "case {case}: bound to cordoned {node}"
        );
        for (key, value) in &i.spec.node_selector {
            assert_eq!(n.metadata.labels.get(key), Some(value), "case {case}");
        }
        for taint in &n.spec.taints {
            assert!(
                i.spec.tolerations.iter().any(|t| t.tolerates(taint)),
                "case {case}: {} on {node} with {taint}",
                i.metadata.name
            );
        }
        for import in imports.get(&i.spec.component).into_iter().flatten() {
            assert!(
                n.status.interfaces.is_empty()
                    || n.status
                        .interfaces
                        .iter()
                        .any(|p| import.starts_with(p.as_str())),
                "case {case}: {import} on {node}"
            );
        }
        let d = demand(&i.spec);
        let entry = added.entry(node).or_default();
        entry.0 += d.cpu_millis;
        entry.1 += d.memory_bytes;
    }
    for (node, (cpu, memory)) in added {
        let n = view.nodes.iter().find(|n| n.metadata.name == node).unwrap();
        let (used_cpu, used_memory) = view
            .instances
            .iter()
            .filter(|i| i.spec.node_name.as_deref() == Some(node))
            .filter(|i| !victims.contains(i.metadata.name.as_str()))
            .map(|i| demand(&i.spec))
            .fold((0, 0), |(c, m), d| (c + d.cpu_millis, m + d.memory_bytes));
        let alloc = n.status.allocatable;
        assert!(
            cpu <= alloc.cpu_millis.saturating_sub(used_cpu),
            "case {case}: {node} cpu"
        );
        assert!(
            memory <= alloc.memory_bytes.saturating_sub(used_memory),
            "case {case}: {node} memory"
        );
    }

    // Once applied, no live instance lacks an owner.
    let owners: HashSet<&str> = after
        .deployments
        .iter()
        .filter_map(|d| d.metadata.uid.as_deref())
        .collect();
    for i in after.instances.iter().filter(|i| !is_terminating(i)) {
        assert!(
            owner_uid(i).is_some_and(|uid| owners.contains(uid)),
            "case {case}: orphan {} survives",
            i.metadata.name
        );
    }
}

/// What each Deployment's instances become under `plan`, counting the
/// instances this pass evicts as gone (they are replaced at once):
/// - never more than `replicas + maxSurge` live, nor more than
///   `replicas` of the current template;
/// - a RollingUpdate creates all the room allows and keeps at least
///   `replicas - maxUnavailable` available (or what it had);
/// - a Recreate keeps no old instance and creates only when none is
///   left, terminating ones included;
/// - a paused Deployment only brings its count to `replicas`.
pub(super) fn check_rollouts(view: &View, plan: &Plan, case: usize) {
    let evicted: HashSet<String> = updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.status.reason == REASON_TAINT_EVICTION)
        .map(|(_, i)| instance_key(i))
        .collect();
    let gone = terminated_by(plan);
    for d in &view.deployments {
        let name = &d.metadata.name;
        let hash = template_hash(d);
        let replicas = usize::try_from(d.spec.replicas.max(0)).unwrap();
        let limits = RolloutLimits::of(&d.spec);
        let ceiling = replicas + limits.max_surge;
        let owned = |i: &&Instance| owner_uid(i) == d.metadata.uid.as_deref();
        let live: Vec<&Instance> = view
            .instances
            .iter()
            .filter(owned)
            .filter(|i| !is_terminating(i) && !evicted.contains(&instance_key(i)))
            .collect();
        let kept: Vec<&Instance> = live
            .iter()
            .copied()
            .filter(|i| !gone.contains(&instance_key(i)))
            .collect();
        let created: Vec<&Instance> = creates(plan).into_iter().filter(owned).collect();
        let total = kept.len() + created.len();
        let new = kept
            .iter()
            .chain(&created)
            .filter(|i| is_from(i, &hash))
            .count();
        assert!(
            total <= ceiling,
            "case {case}: {name} has {total} instances, more than {ceiling}: {plan:#?}"
        );
        if d.spec.paused {
            assert!(
                created.is_empty() || total == replicas,
                "case {case}: {name}"
            );
            for i in &created {
                assert!(
                    live.iter().any(|l| l.metadata.labels == i.metadata.labels),
                    "case {case}: {name} paused created a template it did not run"
                );
            }
            continue;
        }
        assert!(new <= replicas, "case {case}: {name}");
        match d.spec.strategy.type_ {
            StrategyType::RollingUpdate => {
                // Terminating instances may still serve in their grace
                // period: they count toward the ceiling.
                let stopping = view
                    .instances
                    .iter()
                    .filter(owned)
                    .filter(|i| {
                        is_terminating(i)
                            && i.spec.node_name.is_some()
                            && i.status.ready
                            && i.status.reason != REASON_TAINT_EVICTION
                            && !evicted.contains(&instance_key(i))
                    })
                    .count();
                let stopped_serving = live
                    .iter()
                    .filter(|i| {
                        gone.contains(&instance_key(i))
                            && crate::controller::deployment::is_ready(i)
                    })
                    .count();
                let serving = total + stopping + stopped_serving;
                assert!(
                    new == replicas || serving >= ceiling,
                    "case {case}: {name} could create more: {plan:#?}"
                );
                assert!(
                    created.is_empty() || serving <= ceiling,
                    "case {case}: {name} serves {serving}, more than {ceiling}: {plan:#?}"
                );
                let available = |i: &&&Instance| is_available(i, d.spec.min_ready_seconds, now());
                let before = live.iter().filter(available).count();
                let after = kept.iter().filter(available).count();
                assert!(
                    after >= before.min(limits.min_available(replicas)),
                    "case {case}: {name} down to {after} available from {before}: {plan:#?}"
                );
            }
            // Checked in `canary.rs`.
            StrategyType::Canary => {}
            StrategyType::Recreate => {
                assert!(
                    kept.iter().all(|i| is_from(i, &hash)),
                    "case {case}: {name}"
                );
                let old_remains = view
                    .instances
                    .iter()
                    .filter(owned)
                    .any(|i| !is_from(i, &hash));
                if old_remains {
                    assert!(created.is_empty(), "case {case}: {name}: {plan:#?}");
                } else {
                    assert_eq!(new, replicas, "case {case}: {name}");
                }
            }
        }
    }
}
