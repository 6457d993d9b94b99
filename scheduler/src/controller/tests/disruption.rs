//! PodDisruptionBudgets: the status arithmetic, the eviction decision, and
//! the status the reconcile pass writes.

use berth_api::disruption::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};

use super::super::disruption::{
    OwnerScales, REASON_EVICTED, budget_status, decide_eviction, evicted, owner_scales,
};
use super::*;

fn budget(min: Option<IntOrPercent>, max: Option<IntOrPercent>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        api_version: API_VERSION.into(),
        kind: Kind::PodDisruptionBudget.as_str().into(),
        metadata: ObjectMeta {
            name: "web-pdb".into(),
            namespace: Some(NS.into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        spec: PodDisruptionBudgetSpec {
            selector: LabelSelector {
                match_labels: BTreeMap::from([("app".into(), "web".into())]),
            },
            min_available: min,
            max_unavailable: max,
        },
        status: PodDisruptionBudgetStatus::default(),
    }
}

/// `web` with three Running, ready instances on `a`, `a` and `b`.
fn three() -> (Deployment, Vec<Instance>) {
    let web = deployment("web", 3);
    let instances = vec![
        instance(&web, "web-1", 1, Phase::Running, Some("a")),
        instance(&web, "web-2", 2, Phase::Running, Some("a")),
        instance(&web, "web-3", 3, Phase::Running, Some("b")),
    ];
    (web, instances)
}

fn scales(web: &Deployment) -> OwnerScales {
    owner_scales(std::slice::from_ref(web), &[])
}

fn status(healthy: u64, desired: u64, allowed: u64, expected: u64) -> PodDisruptionBudgetStatus {
    PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_instances: expected,
    }
}

#[test]
fn min_available_counts_leave_the_surplus_to_disrupt() {
    let (web, instances) = three();
    let scales = scales(&web);
    let pdb = budget(Some(IntOrPercent::Int(2)), None);
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 2, 1, 3));
    let pdb = budget(Some(IntOrPercent::Int(3)), None);
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 3, 0, 3));
    let pdb = budget(Some(IntOrPercent::Int(5)), None);
    assert_eq!(
        budget_status(&pdb, &instances, &scales),
        status(3, 5, 0, 3),
        "never below zero"
    );
}

#[test]
fn percentages_and_max_unavailable_use_the_owners_scale() {
    let (mut web, mut instances) = three();
    // Four asked for, three exist: the missing one is already unavailable.
    web.spec.replicas = 4;
    let scales = scales(&web);
    let pdb = budget(Some(IntOrPercent::Percent(50)), None);
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 2, 1, 4));
    // 60% of 4 is 2.4, rounded up to 3.
    let pdb = budget(Some(IntOrPercent::Percent(60)), None);
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 3, 0, 4));
    let pdb = budget(None, Some(IntOrPercent::Int(1)));
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 3, 0, 4));
    let pdb = budget(None, Some(IntOrPercent::Int(2)));
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 2, 1, 4));
    // 25% of 4 is exactly 1; 30% of 4 rounds up to 2.
    let pdb = budget(None, Some(IntOrPercent::Percent(30)));
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 2, 1, 4));
    // An instance without a known owner counts itself.
    instances[2].metadata.owner_references.clear();
    let pdb = budget(None, Some(IntOrPercent::Int(0)));
    assert_eq!(budget_status(&pdb, &instances, &scales), status(3, 5, 0, 5));
}

#[test]
fn only_running_ready_live_instances_of_the_namespace_are_healthy() {
    let (web, mut instances) = three();
    let scales = scales(&web);
    let pdb = budget(Some(IntOrPercent::Int(1)), None);
    instances[0].status.ready = false;
    instances[1].metadata.deletion_timestamp = Some(now());
    let mut elsewhere = instances[2].clone();
    elsewhere.metadata.namespace = Some("other".into());
    elsewhere.metadata.name = "web-9".into();
    let mut unselected = instances[2].clone();
    unselected.metadata.labels.insert("app".into(), "db".into());
    unselected.metadata.name = "db-1".into();
    instances.extend([elsewhere, unselected]);
    // web-1 (not ready) and web-3 count as expected; web-2 is going.
    assert_eq!(budget_status(&pdb, &instances, &scales), status(1, 1, 0, 2));
}

#[test]
fn an_eviction_is_granted_only_while_every_budget_allows_one() {
    let (web, instances) = three();
    let scales = scales(&web);
    let pdb = budget(Some(IntOrPercent::Int(2)), None);
    assert_eq!(
        decide_eviction(
            &instances[0],
            std::slice::from_ref(&pdb),
            &instances,
            &scales
        ),
        Ok(())
    );
    // After the first eviction only two are healthy: the next must wait.
    let mut after = instances.clone();
    after[0] = evicted(&instances[0], now());
    assert_eq!(after[0].status.reason, REASON_EVICTED);
    assert_eq!(after[0].status.phase, Phase::Terminating);
    let refusal =
        decide_eviction(&after[1], std::slice::from_ref(&pdb), &after, &scales).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "cannot evict instance prod/web-2: would violate PodDisruptionBudget prod/web-pdb \
         (minAvailable 2, healthy 2)"
    );
    // Its replacement ready, the budget allows one again.
    let mut replaced = after.clone();
    replaced.push(instance(&web, "web-4", 10, Phase::Running, Some("b")));
    assert_eq!(
        decide_eviction(&replaced[1], std::slice::from_ref(&pdb), &replaced, &scales),
        Ok(())
    );
    // A second budget that allows nothing refuses, whatever the first says.
    let mut strict = budget(None, Some(IntOrPercent::Int(0)));
    strict.metadata.name = "strict".into();
    let refusal = decide_eviction(&replaced[1], &[pdb, strict], &replaced, &scales).unwrap_err();
    assert!(
        refusal
            .to_string()
            .ends_with("PodDisruptionBudget prod/strict (maxUnavailable 0, expected 3, healthy 3)"),
        "{refusal}"
    );
}

#[test]
fn budgets_of_other_instances_do_not_hold_an_eviction() {
    let (web, instances) = three();
    let scales = scales(&web);
    let mut other = budget(Some(IntOrPercent::Int(3)), None);
    other.spec.selector.match_labels = BTreeMap::from([("app".into(), "db".into())]);
    let mut elsewhere = budget(Some(IntOrPercent::Int(3)), None);
    elsewhere.metadata.namespace = Some("other".into());
    assert_eq!(
        decide_eviction(&instances[0], &[other, elsewhere], &instances, &scales),
        Ok(())
    );
    assert_eq!(
        decide_eviction(&instances[0], &[], &instances, &scales),
        Ok(())
    );
}

#[test]
fn instances_not_serving_yet_or_already_going_need_no_budget() {
    let (web, mut instances) = three();
    let scales = scales(&web);
    let pdb = budget(Some(IntOrPercent::Int(3)), None);
    for phase in [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Starting,
        Phase::Failed,
    ] {
        let mut waiting = instance(&web, "web-9", 9, phase, Some("a"));
        waiting.status.ready = false;
        assert_eq!(
            decide_eviction(&waiting, std::slice::from_ref(&pdb), &instances, &scales),
            Ok(()),
            "{phase}"
        );
    }
    let going = evicted(&instances[0], now());
    assert_eq!(
        decide_eviction(&going, std::slice::from_ref(&pdb), &instances, &scales),
        Ok(())
    );
    // Running but not ready: it may go only while the budget is met
    // without it (Kubernetes' IfHealthyBudget).
    instances[0].status.ready = false;
    let min_two = budget(Some(IntOrPercent::Int(2)), None);
    assert_eq!(
        decide_eviction(&instances[0], &[min_two], &instances, &scales),
        Ok(())
    );
    assert!(decide_eviction(&instances[0], &[pdb], &instances, &scales).is_err());
}
