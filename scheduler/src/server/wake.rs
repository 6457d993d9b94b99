//! `Wake`: a node's ingress holds a request for a Deployment scaled to
//! zero and asks for an instance. The decision is the sans-IO
//! [`crate::controller::autoscaler::wake`]; this applies it in one store
//! transaction, so the watch stream brings the node its instance (bound to
//! it when it fits there) with the next assignments, without waiting for a
//! reconcile pass.

use berth_api::wire::{ApiError, ErrorCode, Response};
use jiff::Timestamp;
use tracing::info;

use crate::cluster::Cluster;
use crate::controller::View;
use crate::controller::autoscaler::{WakeError, autoscalers, wake};

/// Raises `namespace/deployment` to one instance if it is at zero.
pub(super) fn answer(
    cluster: &Cluster,
    node: &str,
    namespace: &str,
    deployment: &str,
) -> Result<Response, ApiError> {
    let snapshot = cluster.store.snapshot()?;
    let autoscalers = autoscalers(&snapshot.objects);
    let view = View::new(snapshot.objects);
    let now = Timestamp::now();
    let plan = wake(
        &autoscalers,
        &view,
        namespace,
        deployment,
        node,
        now,
        &mut |name| crate::reconciler::new_name(name),
    )
    .map_err(|e| match e {
        WakeError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        WakeError::NotScaledToZero(_) => ApiError::new(ErrorCode::Invalid, e.to_string()),
    })?;
    if plan.commands.is_empty() {
        return Ok(Response::Ok);
    }
    info!(%node, %namespace, %deployment, "waking a deployment scaled to zero");
    let (_, revision) = crate::reconciler::apply(cluster, plan, now)?;
    cluster.changed(revision);
    Ok(Response::Ok)
}
