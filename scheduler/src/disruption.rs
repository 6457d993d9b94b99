//! The voluntary-disruption verbs: evicting an instance (what `berth
//! drain` sends for each instance of a node) and deleting a Node.
//!
//! Both write in one store transaction; the decision whether an eviction
//! is allowed is [`crate::controller::disruption::decide_eviction`], taken
//! on the instances of that same transaction, so concurrent evictions
//! cannot both spend one allowed disruption. See
//! `docs/decisions/0029-drain-and-disruption-budgets.md`.

use berth_api::daemonset::DaemonSet;
use berth_api::disruption::PodDisruptionBudget;
use berth_api::wire::{ApiError, CLOSE_REVOKED, ErrorCode};
use berth_api::{Deployment, Instance, Kind, Object, Phase, describe};
use jiff::Timestamp;
use tracing::info;

use crate::cluster::Cluster;
use crate::controller::disruption::{
    OwnerScales, budget_status, decide_eviction, evicted, owner_scales,
};
use crate::events;
use crate::pki::Subject;
use crate::store::{Txn, key};

/// `status.reason` of an instance whose node was deleted.
pub const REASON_NODE_DELETED: &str = "NodeDeleted";

fn typed<T>(objects: Vec<Object>, pick: impl Fn(Object) -> Option<T>) -> Vec<T> {
    objects.into_iter().filter_map(pick).collect()
}

/// Evicts one instance if every PodDisruptionBudget selecting it allows:
/// it turns Terminating (reason `Evicted`), its node stops it gracefully
/// and its controller replaces it. An instance already terminating is
/// left as it is. Refusals are [`ErrorCode::TooManyRequests`].
pub fn evict(cluster: &Cluster, namespace: &str, name: &str) -> Result<(String, u64), ApiError> {
    let described = describe(Kind::Instance, Some(namespace), name);
    let now = Timestamp::now();
    let ((), revision) = cluster.store.write(|txn| {
        let Some(Object::Instance(instance)) =
            txn.get(&key(Kind::Instance, Some(namespace), name))?
        else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{described} not found"),
            ));
        };
        if instance.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let instances: Vec<Instance> =
            typed(txn.list(Kind::Instance, Some(namespace))?, |o| match o {
                Object::Instance(i) => Some(*i),
                _ => None,
            });
        let budgets: Vec<PodDisruptionBudget> = typed(
            txn.list(Kind::PodDisruptionBudget, Some(namespace))?,
            |o| match o {
                Object::PodDisruptionBudget(b) => Some(*b),
                _ => None,
            },
        );
        let scales = scales(txn, namespace)?;
        decide_eviction(&instance, &budgets, &instances, &scales)
            .map_err(|refusal| ApiError::new(ErrorCode::TooManyRequests, refusal.0))?;
        let before = Object::Instance(instance.clone());
        let after = Object::Instance(Box::new(evicted(&instance, now)));
        events::record_change(txn, &before, &after, "scheduler", now)?;
        txn.put(after)?;
        Ok(())
    })?;
    info!(instance = %described, "evicted");
    Ok((described, revision))
}

/// The replicas each Deployment and DaemonSet of `namespace` asks for.
fn scales(txn: &Txn<'_, '_>, namespace: &str) -> Result<OwnerScales, ApiError> {
    let deployments: Vec<Deployment> =
        typed(txn.list(Kind::Deployment, Some(namespace))?, |o| match o {
            Object::Deployment(d) => Some(*d),
            _ => None,
        });
    let daemonsets: Vec<DaemonSet> =
        typed(txn.list(Kind::DaemonSet, Some(namespace))?, |o| match o {
            Object::DaemonSet(d) => Some(*d),
            _ => None,
        });
    Ok(owner_scales(&deployments, &daemonsets))
}

/// Sets each PodDisruptionBudget's `status` from the current instances:
/// computed when read, as a Service's endpoints.
pub fn show_status(cluster: &Cluster, objects: &mut [Object]) -> Result<(), ApiError> {
    let store = &cluster.store;
    let instances: Vec<Instance> = typed(store.list(Kind::Instance, None)?, |o| match o {
        Object::Instance(i) => Some(*i),
        _ => None,
    });
    let deployments: Vec<Deployment> = typed(store.list(Kind::Deployment, None)?, |o| match o {
        Object::Deployment(d) => Some(*d),
        _ => None,
    });
    let daemonsets: Vec<DaemonSet> = typed(store.list(Kind::DaemonSet, None)?, |o| match o {
        Object::DaemonSet(d) => Some(*d),
        _ => None,
    });
    let scales = owner_scales(&deployments, &daemonsets);
    for object in objects {
        if let Object::PodDisruptionBudget(budget) = object {
            budget.status = budget_status(budget, &instances, &scales);
        }
    }
    Ok(())
}

/// Deletes a Node: the node's certificates are revoked and its live
/// connection closed with [`CLOSE_REVOKED`] (the node then stops what it
/// runs), the Node object is removed, and every instance bound to it
/// turns Terminating (reason `NodeDeleted`) in the same transaction, so
/// its controllers replace them elsewhere at once. The node may come back
/// only by joining again with a bootstrap token.
pub fn delete_node(cluster: &Cluster, name: &str) -> Result<(String, u64), ApiError> {
    let described = describe(Kind::Node, None, name);
    let node_key = key(Kind::Node, None, name);
    if cluster.store.get(&node_key)?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{described} not found"),
        ));
    }
    // Revoke first: from here on the node cannot connect (or register
    // again) until it joins anew.
    cluster
        .store
        .revoke_subject(&Subject::Node(name.to_owned()).encode())?;
    if let Some(connection) = cluster.node_connection(name) {
        connection.close(
            CLOSE_REVOKED.into(),
            format!("node {name} was deleted from the cluster").as_bytes(),
        );
    }
    let now = Timestamp::now();
    let ((), revision) = cluster.store.write(|txn| {
        txn.delete(&node_key)?;
        let bound: Vec<Instance> = typed(txn.list(Kind::Instance, None)?, |o| match o {
            Object::Instance(i) if i.spec.node_name.as_deref() == Some(name) => Some(*i),
            _ => None,
        });
        for instance in bound {
            if instance.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let mut gone = instance.clone();
            gone.metadata.deletion_timestamp = Some(now);
            gone.status.phase = Phase::Terminating;
            gone.status.reason = REASON_NODE_DELETED.into();
            gone.status.message = format!("node {name} was deleted");
            let before = Object::Instance(Box::new(instance));
            let after = Object::Instance(Box::new(gone));
            events::record_change(txn, &before, &after, "scheduler", now)?;
            txn.put(after)?;
        }
        Ok::<_, ApiError>(())
    })?;
    info!(node = %name, "node deleted");
    Ok((described, revision))
}
