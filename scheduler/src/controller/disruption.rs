//! Disruption budgets, sans-IO: a PodDisruptionBudget's status from the
//! instances it selects, and whether one instance may be evicted.
//!
//! The arithmetic is Kubernetes' disruption controller's:
//! - an instance is *healthy* when it is Running, ready and not
//!   terminating;
//! - *expected* is the number of selected instances when `minAvailable` is
//!   a count; otherwise (a percentage, or `maxUnavailable`) the replicas
//!   their owners ask for (a Deployment's `replicas`, a DaemonSet's
//!   `desiredNumberScheduled`), an instance without such an owner counting
//!   one;
//! - *desired healthy* is `minAvailable` (a percentage of expected, rounded
//!   up), or expected minus `maxUnavailable` (a percentage rounded up);
//! - *disruptions allowed* is healthy minus desired healthy, at least 0.
//!
//! [`decide_eviction`] is the eviction API's rule: an instance that is not
//! running yet (Pending, Scheduled, Starting), has finished or is already
//! terminating may always go; a healthy one only if every budget selecting
//! it allows a disruption; an unhealthy one only if every such budget is
//! met without it (Kubernetes' default `IfHealthyBudget`).
//!
//! The status is computed when a budget is read (`berth get pdb`), as a
//! Service's endpoints are, rather than written on every readiness
//! change; the eviction decision is taken on the instances of the write
//! transaction that carries it out, so two evictions can never both spend
//! the same allowed disruption.

use std::collections::HashMap;

use berth_api::daemonset::DaemonSet;
use berth_api::disruption::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use berth_api::rollout::IntOrPercent;
use berth_api::{Deployment, Instance, Phase};

use super::is_terminating;

/// `status.reason` of an instance evicted through the eviction API.
pub const REASON_EVICTED: &str = "Evicted";

/// What a budget's arithmetic needs besides its instances: the replicas
/// each owner asks for, by owner uid.
pub type OwnerScales = HashMap<String, u64>;

/// The replicas each of `deployments` and `daemonsets` asks for.
pub fn owner_scales(deployments: &[Deployment], daemonsets: &[DaemonSet]) -> OwnerScales {
    let deployments = deployments.iter().filter_map(|d| {
        let uid = d.metadata.uid.clone()?;
        Some((uid, u64::try_from(d.spec.replicas).unwrap_or(0)))
    });
    let daemonsets = daemonsets.iter().filter_map(|d| {
        let uid = d.metadata.uid.clone()?;
        Some((uid, d.status.desired_number_scheduled))
    });
    deployments.chain(daemonsets).collect()
}

/// Whether `instance` counts as healthy for a budget.
pub fn is_healthy(instance: &Instance) -> bool {
    instance.status.phase == Phase::Running && instance.status.ready && !is_terminating(instance)
}

/// Whether an eviction of `instance` needs no budget: it is not running
/// yet, has finished, or is already terminating.
fn ignores_budgets(instance: &Instance) -> bool {
    is_terminating(instance)
        || matches!(
            instance.status.phase,
            Phase::Pending
                | Phase::Scheduled
                | Phase::Starting
                | Phase::Succeeded
                | Phase::Failed
                | Phase::Terminating
        )
}

/// The instances of `budget`'s namespace it selects that have not
/// finished, terminating ones included (they are never healthy, and
/// [`budget_status`] leaves them out of expected).
fn selected<'a>(
    budget: &'a PodDisruptionBudget,
    instances: &'a [Instance],
) -> impl Iterator<Item = &'a Instance> + 'a {
    let namespace = budget.metadata.namespace_or_default();
    instances.iter().filter(move |i| {
        i.metadata.namespace_or_default() == namespace
            && budget.selects(&i.metadata.labels)
            && !matches!(i.status.phase, Phase::Succeeded | Phase::Failed)
    })
}

/// `budget`'s status over `instances` (any namespaces: only its own are
/// looked at).
pub fn budget_status(
    budget: &PodDisruptionBudget,
    instances: &[Instance],
    scales: &OwnerScales,
) -> PodDisruptionBudgetStatus {
    let chosen: Vec<&Instance> = selected(budget, instances).collect();
    let healthy = chosen.iter().filter(|i| is_healthy(i)).count();
    let counted =
        i64::try_from(chosen.iter().filter(|i| !is_terminating(i)).count()).unwrap_or(i64::MAX);
    let spec = &budget.spec;
    let expected = match spec.min_available {
        Some(IntOrPercent::Int(_)) => counted,
        _ => {
            // Each owner's scale once; an instance without a known owner
            // counts itself.
            let mut owners = std::collections::BTreeSet::new();
            let mut total: i64 = 0;
            for instance in chosen.iter().filter(|i| !is_terminating(i)) {
                let owner = instance
                    .metadata
                    .owner_references
                    .iter()
                    .find_map(|r| scales.get(&r.uid).map(|scale| (r.uid.as_str(), *scale)));
                match owner {
                    Some((uid, scale)) => {
                        if owners.insert(uid) {
                            total = total.saturating_add(i64::try_from(scale).unwrap_or(i64::MAX));
                        }
                    }
                    None => total = total.saturating_add(1),
                }
            }
            total
        }
    };
    let desired = match (spec.min_available, spec.max_unavailable) {
        (Some(IntOrPercent::Int(n)), _) => n,
        (Some(min @ IntOrPercent::Percent(_)), _) => min.resolve(expected, true),
        (None, Some(max)) => expected - max.resolve(expected, true),
        (None, None) => expected,
    }
    .max(0);
    let healthy = i64::try_from(healthy).unwrap_or(i64::MAX);
    let to_u64 = |n: i64| u64::try_from(n.max(0)).unwrap_or(0);
    PodDisruptionBudgetStatus {
        current_healthy: to_u64(healthy),
        desired_healthy: to_u64(desired),
        disruptions_allowed: to_u64(healthy - desired),
        expected_instances: to_u64(expected),
    }
}

/// Why an eviction was refused: the message names the instance, the
/// budget and its figures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Whether `instance` may be evicted now, given every budget and instance
/// of the cluster (see the module docs for the rule).
pub fn decide_eviction(
    instance: &Instance,
    budgets: &[PodDisruptionBudget],
    instances: &[Instance],
    scales: &OwnerScales,
) -> Result<(), Refusal> {
    if ignores_budgets(instance) {
        return Ok(());
    }
    let namespace = instance.metadata.namespace_or_default();
    let healthy = is_healthy(instance);
    for budget in budgets {
        if budget.metadata.namespace_or_default() != namespace
            || !budget.selects(&instance.metadata.labels)
        {
            continue;
        }
        let status = budget_status(budget, instances, scales);
        let allowed = if healthy {
            status.disruptions_allowed >= 1
        } else {
            status.current_healthy >= status.desired_healthy
        };
        if !allowed {
            let bound = match (budget.spec.min_available, budget.spec.max_unavailable) {
                (Some(min), _) => format!("minAvailable {min}"),
                (None, Some(max)) => format!(
                    "maxUnavailable {max}, expected {}",
                    status.expected_instances
                ),
                (None, None) => String::new(),
            };
            return Err(Refusal(format!(
                "cannot evict instance {namespace}/{}: would violate PodDisruptionBudget {} \
                 ({bound}, healthy {})",
                instance.metadata.name,
                describe_budget(budget),
                status.current_healthy
            )));
        }
    }
    Ok(())
}

/// `namespace/name` of a budget.
fn describe_budget(budget: &PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        budget.metadata.namespace_or_default(),
        budget.metadata.name
    )
}

/// `instance` as evicted: terminating, saying so in its status.
pub fn evicted(instance: &Instance, now: jiff::Timestamp) -> Instance {
    let mut evicted = instance.clone();
    evicted.metadata.deletion_timestamp = Some(now);
    evicted.status.phase = Phase::Terminating;
    evicted.status.reason = REASON_EVICTED.into();
    evicted.status.message = format!(
        "evicted from node {} through the eviction API",
        instance.spec.node_name.as_deref().unwrap_or("<none>")
    );
    evicted
}
