//! Quota arithmetic and admission: what each object charges its namespace,
//! whether an apply or a scale fits under the namespace's ResourceQuotas,
//! and the `status` a quota shows when read.
//!
//! The arithmetic is sans-IO: [`demand`], [`usage`], [`requested`] and
//! [`check`] take objects and return amounts or a [`QuotaError`]. The glue
//! ([`admit`], [`show_status`]) reads the store. LimitRange defaulting and
//! bounds are in [`limits`].
//!
//! An object is charged by what it declares, not by the instances that
//! exist at the moment (decision 0034): a Deployment charges `replicas`
//! times its template's requests and limits, a Job or a CronJob its
//! `parallelism` (at most `completions`; nothing once finished), a
//! DaemonSet one instance per Node. So the refusal comes at admission, for
//! the whole apply, rather than later as instances a controller could not
//! create. Jobs a CronJob created are charged to the CronJob.

pub mod limits;

use std::collections::BTreeMap;

use berth_api::quota::{Amounts, QuotaResource, ResourceQuota};
use berth_api::wire::{ApiError, ErrorCode};
use berth_api::{InstanceTemplate, Kind, Object, Quantity};

use crate::cluster::Cluster;
use crate::store::{StoreError, Txn, object_key};

/// Amounts by resource, in base units (millicores, bytes, counts).
pub type Usage = BTreeMap<QuotaResource, u64>;

/// The kinds that charge a namespace.
pub const CHARGED: [Kind; 6] = [
    Kind::Deployment,
    Kind::Job,
    Kind::CronJob,
    Kind::DaemonSet,
    Kind::Service,
    Kind::Ingress,
];

/// Why an object does not fit under a quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The object would take the namespace past the quota.
    #[error(
        "exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
        pretty(requested),
        pretty(used),
        pretty(limited)
    )]
    Exceeded {
        /// The quota's name.
        quota: String,
        /// What the object adds, for each exceeded resource.
        requested: Vec<(String, String)>,
        /// What the namespace uses now.
        used: Vec<(String, String)>,
        /// The ceilings.
        limited: Vec<(String, String)>,
    },
    /// The quota tracks requests or limits the template does not set.
    #[error("failed quota: {quota}: must specify {}", resources.join(","))]
    MustSpecify {
        /// The quota's name.
        quota: String,
        /// The resource names missing, as the quota writes them.
        resources: Vec<String>,
    },
}

/// `a=1,b=2`, as Kubernetes prints resource lists in quota messages.
fn pretty(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

/// How many instances `object` asks for; `nodes` is the cluster's node
/// count, a DaemonSet's reach.
fn instance_count(object: &Object, nodes: u64) -> u64 {
    let runs = |parallelism: Option<i32>, completions: Option<i32>| {
        let parallelism = parallelism.unwrap_or(1).max(0);
        let runs = completions.map_or(parallelism, |c| parallelism.min(c.max(0)));
        u64::try_from(runs).unwrap_or(0)
    };
    match object {
        Object::Deployment(d) => u64::try_from(d.spec.replicas).unwrap_or(0),
        Object::Job(j) => {
            let by_cronjob = j
                .metadata
                .owner_references
                .iter()
                .any(|owner| owner.kind == Kind::CronJob.as_str());
            if by_cronjob || j.status.finished().is_some() {
                0
            } else {
                runs(j.spec.parallelism, j.spec.completions)
            }
        }
        Object::CronJob(c) => {
            let spec = &c.spec.job_template.spec;
            runs(spec.parallelism, spec.completions)
        }
        Object::DaemonSet(_) => nodes,
        _ => 0,
    }
}

/// One instance's requests and limits in base units. Quantities were
/// validated at admission; one that does not parse counts as unset.
fn per_instance(template: &InstanceTemplate) -> [(QuotaResource, Option<u64>); 4] {
    let resources = &template.spec.resources;
    let requests = Amounts::parse("", &resources.requests).unwrap_or_default();
    let limits = Amounts::parse("", &resources.limits).unwrap_or_default();
    [
        (QuotaResource::RequestsCpu, requests.cpu),
        (QuotaResource::RequestsMemory, requests.memory),
        (QuotaResource::LimitsCpu, limits.cpu),
        (QuotaResource::LimitsMemory, limits.memory),
    ]
}

/// What one object charges its namespace.
pub fn demand(object: &Object, nodes: u64) -> Usage {
    let mut usage = Usage::new();
    let kind = object.kind();
    if CHARGED.contains(&kind) {
        usage.insert(QuotaResource::Count(kind), 1);
    }
    if let Some(template) = object.template() {
        let count = instance_count(object, nodes);
        usage.insert(QuotaResource::Instances, count);
        for (resource, amount) in per_instance(template) {
            usage.insert(resource, amount.unwrap_or(0).saturating_mul(count));
        }
    }
    usage
}

/// What `objects` charge together.
pub fn usage<'a>(objects: impl IntoIterator<Item = &'a Object>, nodes: u64) -> Usage {
    let mut total = Usage::new();
    for object in objects {
        for (resource, amount) in demand(object, nodes) {
            let sum = total.entry(resource).or_insert(0);
            *sum = sum.saturating_add(amount);
        }
    }
    total
}

/// What replacing `old` (none when creating) with `new` adds: each
/// resource's increase, zero where it does not grow.
pub fn requested(old: Option<&Usage>, new: &Usage) -> Usage {
    new.iter()
        .map(|(resource, amount)| {
            let before = old.and_then(|o| o.get(resource)).copied().unwrap_or(0);
            (*resource, amount.saturating_sub(before))
        })
        .collect()
}

/// The resources a template leaves unset that the quota tracks, by the
/// quota's names: Kubernetes refuses such an object rather than count it
/// as zero.
pub fn unspecified(quota: &ResourceQuota, template: &InstanceTemplate) -> Vec<String> {
    let missing = per_instance(template);
    quota
        .spec
        .hard
        .keys()
        .filter(|name| {
            QuotaResource::parse(name).is_some_and(|resource| {
                missing
                    .iter()
                    .any(|(r, amount)| *r == resource && amount.is_none())
            })
        })
        .cloned()
        .collect()
}

/// Checks that `requested` fits under `quota` given what the namespace
/// `used`: every resource the object adds to must stay at or under its
/// ceiling. Resources it does not add to are not checked, so a namespace
/// already over a lowered quota may still shrink.
pub fn check(quota: &ResourceQuota, used: &Usage, requested: &Usage) -> Result<(), QuotaError> {
    let mut exceeded = (Vec::new(), Vec::new(), Vec::new());
    for (name, Quantity(text)) in &quota.spec.hard {
        let Some(resource) = QuotaResource::parse(name) else {
            continue;
        };
        let Ok(hard) = resource.parse_amount(text) else {
            continue;
        };
        let adds = requested.get(&resource).copied().unwrap_or(0);
        let now = used.get(&resource).copied().unwrap_or(0);
        if adds > 0 && now.saturating_add(adds) > hard {
            exceeded.0.push((name.clone(), resource.format(adds)));
            exceeded.1.push((name.clone(), resource.format(now)));
            exceeded.2.push((name.clone(), resource.format(hard)));
        }
    }
    if exceeded.0.is_empty() {
        Ok(())
    } else {
        Err(QuotaError::Exceeded {
            quota: quota.metadata.name.clone(),
            requested: exceeded.0,
            used: exceeded.1,
            limited: exceeded.2,
        })
    }
}

/// A quota's `status`: its ceilings and the namespace's use of each.
pub fn status(quota: &ResourceQuota, used: &Usage) -> berth_api::quota::ResourceQuotaStatus {
    let used = quota
        .spec
        .hard
        .keys()
        .filter_map(|name| {
            let resource = QuotaResource::parse(name)?;
            let amount = used.get(&resource).copied().unwrap_or(0);
            Some((name.clone(), Quantity(resource.format(amount))))
        })
        .collect();
    berth_api::quota::ResourceQuotaStatus {
        hard: quota.spec.hard.clone(),
        used,
    }
}

fn quotas(objects: Vec<Object>) -> Vec<ResourceQuota> {
    objects
        .into_iter()
        .filter_map(|o| match o {
            Object::ResourceQuota(q) => Some(*q),
            _ => None,
        })
        .collect()
}

fn node_count(objects: &[Object]) -> u64 {
    u64::try_from(objects.len()).unwrap_or(u64::MAX)
}

/// Refuses `object` if creating or updating it would take its namespace
/// past a ResourceQuota, or if it leaves unset a request or limit a quota
/// tracks. Reads the namespace inside the apply's transaction, so objects
/// earlier in the same apply count.
pub fn admit(txn: &Txn<'_, '_>, object: &Object) -> Result<(), ApiError> {
    let Some(namespace) = object.namespace() else {
        return Ok(());
    };
    let quotas = quotas(txn.list(Kind::ResourceQuota, Some(namespace))?);
    if quotas.is_empty() || !CHARGED.contains(&object.kind()) {
        return Ok(());
    }
    let forbidden =
        |e: QuotaError| ApiError::new(ErrorCode::Forbidden, format!("{}: {e}", object.describe()));
    if let Some(template) = object.template() {
        for quota in &quotas {
            let resources = unspecified(quota, template);
            if !resources.is_empty() {
                return Err(forbidden(QuotaError::MustSpecify {
                    quota: quota.metadata.name.clone(),
                    resources,
                }));
            }
        }
    }
    let nodes = node_count(&txn.list(Kind::Node, None)?);
    let mut charged = Vec::new();
    for kind in CHARGED {
        charged.extend(txn.list(kind, Some(namespace))?);
    }
    let used = usage(&charged, nodes);
    let old = txn.get(&object_key(object))?.map(|o| demand(&o, nodes));
    let requested = requested(old.as_ref(), &demand(object, nodes));
    for quota in &quotas {
        check(quota, &used, &requested).map_err(forbidden)?;
    }
    Ok(())
}

/// Sets each ResourceQuota's `status` from its namespace's objects:
/// computed when read, as a Service's endpoints, so it is always current.
pub fn show_status(cluster: &Cluster, objects: &mut [Object]) -> Result<(), StoreError> {
    let nodes = node_count(&cluster.store.list(Kind::Node, None)?);
    let mut by_namespace: BTreeMap<String, Usage> = BTreeMap::new();
    for object in objects {
        let Object::ResourceQuota(quota) = object else {
            continue;
        };
        let namespace = quota.metadata.namespace_or_default().to_owned();
        if !by_namespace.contains_key(&namespace) {
            let mut charged = Vec::new();
            for kind in CHARGED {
                charged.extend(cluster.store.list(kind, Some(&namespace))?);
            }
            by_namespace.insert(namespace.clone(), usage(&charged, nodes));
        }
        if let Some(used) = by_namespace.get(&namespace) {
            quota.status = status(quota, used);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
