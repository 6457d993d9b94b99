//! Properties over random clusters: every plan keeps the invariants, the
//! same inputs give the same plan, and the cluster converges.

use super::invariants::{check_plan, check_rollouts};
use super::*;

/// xorshift64: a small deterministic generator in place of a
/// property-test crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn secs(&mut self, bound: u64) -> SignedDuration {
        SignedDuration::from_secs(self.below(bound) as i64)
    }
}

fn random_bound(rng: &mut Rng) -> Option<IntOrPercent> {
    match rng.below(3) {
        0 => None,
        1 => Some(IntOrPercent::Int(rng.below(3) as i64)),
        _ => Some(IntOrPercent::Percent(rng.below(101) as i64)),
    }
}

fn random_cluster(rng: &mut Rng) -> (View, HashMap<String, Liveness>, Settings) {
    let settings = Settings {
        started: now() - rng.secs(40),
        ..settings()
    };
    let nodes: Vec<Node> = (0..rng.below(5))
        .map(|i| {
            let mut n = node(&format!("n{i}"), rng.below(2) == 0);
            n.status.allocatable.cpu_millis = 500 + rng.below(4000);
            n.status.allocatable.memory_bytes = GI / 2 + rng.below(4 * GI);
            n.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
            n.metadata
                .labels
                .insert("disktype".into(), (*rng.pick(&["ssd", "hdd"])).into());
            if rng.below(4) == 0 {
                n.spec
                    .taints
                    .push(Taint::parse("gpu=true:NoSchedule").unwrap());
            }
            n.spec.unschedulable = rng.below(8) == 0;
            n.status.interfaces = match rng.below(3) {
                0 => vec![],
                1 => vec!["wasi:http/types@0.2".into()],
                _ => vec!["wasi:cli/environment@0.2".into()],
            };
            n
        })
        .collect();
    let deployments: Vec<Deployment> = (0..rng.below(4))
        .map(|i| {
            let mut d = deployment(&format!("d{i}"), rng.below(7) as i64 - 1);
            let component = *rng.pick(&["sha256:v1", "sha256:v2"]);
            let cpu = *rng.pick(&["", "100m", "700m", "2"]);
            d.spec.template = template(component, cpu);
            if rng.below(2) == 0 {
                d.spec.template.spec.resources.requests.memory =
                    Some(Quantity(format!("{}Mi", rng.below(2048))));
            }
            let spec = &mut d.spec.template.spec;
            if rng.below(4) == 0 {
                spec.node_selector = BTreeMap::from([("disktype".into(), "ssd".into())]);
            }
            if rng.below(3) == 0 {
                spec.tolerations = vec![gpu_toleration()];
            }
            if rng.below(3) == 0 {
                spec.priority = Some(100);
            }
            if rng.below(5) == 0 {
                spec.affinity = Some(anti_affinity("app", "web", HOSTNAME_LABEL));
            }
            d.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
            if rng.below(3) == 0 {
                d.status = Some(DeploymentStatus::default());
            }
            match rng.below(4) {
                0 => d.spec.strategy.type_ = StrategyType::Recreate,
                1 => {
                    d.spec.strategy.rolling_update = Some(RollingUpdate {
                        max_surge: random_bound(rng),
                        max_unavailable: random_bound(rng),
                    });
                }
                _ => {}
            }
            d.spec.paused = rng.below(6) == 0;
            if rng.below(3) == 0 {
                d.spec.min_ready_seconds = 30;
            }
            d
        })
        .collect();
    let node_names: Vec<String> = nodes
        .iter()
        .map(|n| n.metadata.name.clone())
        .chain(["gone".to_owned()])
        .collect();
    let instances: Vec<Instance> = (0..rng.below(16))
        .map(|k| {
            let name = format!("i{k}");
            let owner = if deployments.is_empty() || rng.below(6) == 0 {
                deployment("deleted", 1)
            } else {
                rng.pick(&deployments).clone()
            };
            let bound = rng.below(3) != 0;
            let node = bound.then(|| rng.pick(&node_names).as_str());
            let mut i = instance(
                &owner,
                &name,
                rng.below(100) as i64,
                *rng.pick(&Phase::ALL),
                node,
            );
            i.metadata.resource_version = Some(format!("{}", 1 + rng.below(50)));
            if i.status.phase == Phase::Running && rng.below(4) != 0 {
                i.status.start_time = Some(now() - rng.secs(60));
            }
            match rng.below(8) {
                0 | 4 => {
                    let stale = *rng.pick(&["stale", "older"]);
                    i.metadata
                        .labels
                        .insert(TEMPLATE_HASH_LABEL.into(), stale.into());
                }
                1 => i.metadata.owner_references.clear(),
                2 | 3 => i.metadata.deletion_timestamp = Some(now() - rng.secs(60)),
                _ => {}
            }
            i
        })
        .collect();
    let uids: Vec<String> = instances
        .iter()
        .filter_map(|i| i.metadata.uid.clone())
        .collect();
    let mut liveness = HashMap::new();
    for n in &nodes {
        if rng.below(4) == 0 {
            continue;
        }
        let reported = (rng.below(3) != 0).then(|| {
            uids.iter()
                .filter(|_| rng.below(2) == 0)
                .cloned()
                .collect::<HashSet<String>>()
        });
        let last_heard = (rng.below(5) != 0).then(|| now() - rng.secs(12));
        liveness.insert(
            n.metadata.name.clone(),
            Liveness {
                last_heard,
                reported,
            },
        );
    }
    (
        View {
            jobs: Vec::new(),
            daemonsets: Vec::new(),
            cronjobs: Vec::new(),
            deployments,
            instances,
            nodes,
        },
        liveness,
        settings,
    )
}

#[test]
fn random_clusters_keep_the_invariants() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let imports = component_imports();
    for case in 0..500 {
        let (view, liveness, settings) = random_cluster(&mut rng);
        let plan = reconcile(&view, &liveness, &imports, &settings, now(), &mut names());
        check_plan(&view, &plan, case);

        // Same inputs, same plan.
        let again = reconcile(&view, &liveness, &imports, &settings, now(), &mut names());
        assert_eq!(plan, again, "case {case}");

        // Applied, the next pass at the same instant is stable: nothing
        // more to create or terminate, no node flips back.
        let after = apply(&view, &plan);
        let mut fresh = {
            let mut count = 0;
            move |d: &str| {
                count += 1;
                format!("{d}-second-{count}")
            }
        };
        let next = reconcile(&after, &liveness, &imports, &settings, now(), &mut fresh);
        // Except where this pass changed what a rollout goes by:
        // preemption victims are no longer available, and a Recreate
        // whose last old instance was removed may start its new ones.
        let removed_keys: HashSet<&str> = removed(&plan).into_iter().collect();
        let mut unsettled: HashSet<&str> = updated_instances(&plan)
            .into_iter()
            .filter(|(_, i)| i.status.reason == REASON_PREEMPTED)
            .filter_map(|(_, i)| owner_uid(i))
            .collect();
        for d in &view.deployments {
            let hash = template_hash(d);
            let old_removed = view.instances.iter().any(|i| {
                owner_uid(i) == d.metadata.uid.as_deref()
                    && !is_from(i, &hash)
                    && removed_keys.contains(instance_key(i).as_str())
            });
            if d.spec.strategy.type_ == StrategyType::Recreate && old_removed {
                unsettled.extend(d.metadata.uid.as_deref());
            }
            // A stopping instance removed frees room under the surge.
            let stopping_removed = view.instances.iter().any(|i| {
                owner_uid(i) == d.metadata.uid.as_deref()
                    && is_terminating(i)
                    && removed_keys.contains(instance_key(i).as_str())
            });
            if stopping_removed {
                unsettled.extend(d.metadata.uid.as_deref());
            }
        }
        for i in creates(&next) {
            let owner = owner_uid(i).unwrap_or_default();
            assert!(unsettled.contains(owner), "case {case}: {next:#?}");
        }
        for (_, i) in updated_instances(&next) {
            if i.metadata.deletion_timestamp.is_some() {
                let owner = owner_uid(i).unwrap_or_default();
                assert!(unsettled.contains(owner), "case {case}: {next:#?}");
            }
        }
        assert!(updated_nodes(&next).is_empty(), "case {case}: {next:#?}");

        converge(after, &liveness, &settings, case);
    }
}

/// Runs passes over `view` as if every node ran what it is given at
/// once: terminating instances are gone by the next pass and every
/// other instance is Running (available), paused Deployments resumed.
/// Every pass keeps the rollout limits, and the cluster settles with
/// each Deployment at exactly its replicas, all of the current template.
fn converge(
    mut view: View,
    liveness: &HashMap<String, Liveness>,
    settings: &Settings,
    case: usize,
) {
    let imports = component_imports();
    let mut names = {
        let mut count = 0;
        move |d: &str| {
            count += 1;
            format!("{d}-round-{count}")
        }
    };
    for d in &mut view.deployments {
        d.spec.paused = false;
    }
    for _ in 0..100 {
        view.instances.retain(|i| !is_terminating(i));
        for i in &mut view.instances {
            i.status.phase = Phase::Running;
            i.status.ready = true;
            i.status.start_time = Some(now() - SignedDuration::from_hours(1));
        }
        let plan = reconcile(&view, liveness, &imports, settings, now(), &mut names);
        check_rollouts(&view, &plan, case);
        if creates(&plan).is_empty() && terminated(&plan).is_empty() {
            for d in &view.deployments {
                let live: Vec<&Instance> = view
                    .instances
                    .iter()
                    .filter(|i| owner_uid(i) == d.metadata.uid.as_deref())
                    .collect();
                let want = usize::try_from(d.spec.replicas.max(0)).unwrap();
                assert_eq!(live.len(), want, "case {case}: {}", d.metadata.name);
                for i in live {
                    assert!(
                        is_from(i, &template_hash(d)),
                        "case {case}: {}",
                        i.metadata.name
                    );
                }
            }
            return;
        }
        view = apply(&view, &plan);
    }
    panic!("case {case}: no convergence");
}
