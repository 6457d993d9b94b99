//! The loop that runs the controllers on every change and applies their plan.

use std::sync::Arc;
use std::time::Duration;

use berth_api::{InstanceSpec, Kind, Object};
use jiff::Timestamp;
use tracing::{debug, warn};

use crate::cluster::Cluster;
use crate::controller::autoscaler::{AutoscalerMemory, Usage, autoscale};
use crate::controller::{self, Command, Plan, Settings, View};
use crate::events;
use crate::store::{StoreError, Txn, key, object_key};

/// How often old events are removed.
pub const EVENT_EXPIRY: Duration = Duration::from_secs(60);

/// How often the controllers run when nothing changes: node liveness is
/// judged by the clock. Every change of the store runs them at once, so a
/// pending instance is placed again as soon as a node joins or room frees.
pub const RESYNC: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves.
pub async fn run(
    cluster: Arc<Cluster>,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut changes = cluster.subscribe();
    let memory = Arc::new(std::sync::Mutex::new(AutoscalerMemory::default()));
    tokio::pin!(shutdown);
    let mut expiry = tokio::time::interval(EVENT_EXPIRY);
    loop {
        let cluster_for_pass = cluster.clone();
        let settings_for_pass = settings.clone();
        let memory = memory.clone();
        let pass = tokio::task::spawn_blocking(move || {
            pass(&cluster_for_pass, &settings_for_pass, &memory)
        });
        match pass.await {
            Ok(Ok(Some(revision))) => cluster.changed(revision),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => warn!(error = %e, "reconcile pass failed"),
            Err(e) => warn!(error = %e, "reconcile pass panicked"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(RESYNC) => {}
            _ = expiry.tick() => {
                let cluster = cluster.clone();
                let expired = tokio::task::spawn_blocking(move || {
                    cluster.store.write(|txn| events::expire(txn, Timestamp::now()))
                })
                .await;
                if let Ok(Err(e)) = expired {
                    warn!(error = %e, "expiring events failed");
                }
            }
        }
    }
}

/// Fresh instance names: the Deployment's name and five random characters,
/// as Kubernetes names pods.
pub(crate) fn new_name(deployment: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'x'),
            )
        })
        .collect();
    // Keep the name a DNS-1123 label (63 characters at most).
    let base: String = deployment.chars().take(57).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

/// One reconcile pass; the new revision if it wrote anything.
fn pass(
    cluster: &Cluster,
    settings: &Settings,
    memory: &std::sync::Mutex<AutoscalerMemory>,
) -> Result<Option<u64>, StoreError> {
    let snapshot = cluster.store.snapshot()?;
    cluster.metrics.reconcile_pass(&snapshot.objects);
    let autoscalers = controller::autoscaler::autoscalers(&snapshot.objects);
    // Keys only: the config check needs no Secret values.
    let sources = crate::secrets::Sources::from_objects(&snapshot.objects);
    let view = View::new(snapshot.objects);
    let now = Timestamp::now();
    let imports = cluster.store.imports()?;
    let began = std::time::Instant::now();
    // Autoscalers first: their Deployment updates win over this pass's
    // status updates (the guard skips those), and the next pass scales.
    let scaled = {
        let mut memory = memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        autoscale(
            &autoscalers,
            &view,
            &fresh_usage(cluster, &autoscalers, now),
            &mut memory,
            now,
        )
    };
    let traffic = cluster.traffic_over(&controller::canary_windows(&view), now);
    let mut plan = controller::reconcile_with_traffic(
        &view,
        &cluster.liveness(),
        &imports,
        settings,
        &traffic,
        now,
        &mut new_name,
    );
    cluster
        .metrics
        .placement(&plan.placement, began.elapsed().as_secs_f64());
    plan.commands.splice(0..0, scaled);
    // Last, so that a command of the controllers on the same instance wins.
    plan.commands
        .extend(crate::secrets::config_errors(&view.instances, &sources));
    if plan.commands.is_empty() {
        return Ok(None);
    }
    let before = snapshot.revision;
    let (applied, revision) = apply(cluster, plan, now)?;
    debug!(applied, before, revision, "reconciled");
    Ok((revision != before).then_some(revision))
}

/// Applies a plan in one transaction, skipping commands whose object changed
/// since the snapshot; returns how many were applied.
pub(crate) fn apply(
    cluster: &Cluster,
    plan: Plan,
    now: Timestamp,
) -> Result<(usize, u64), StoreError> {
    cluster.store.write(|txn| {
        let mut applied = 0;
        for command in plan.commands {
            match command {
                Command::Create(mut instance) => {
                    resolve_priority(txn, &mut instance.spec)?;
                    instance.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
                    instance.metadata.creation_timestamp = Some(now);
                    instance.metadata.generation = Some(1);
                    let object = Object::Instance(instance);
                    if txn.get(&object_key(&object))?.is_none() {
                        events::record_created(txn, &object, now)?;
                        txn.put(object)?;
                        applied += 1;
                    }
                }
                Command::CreateJob(mut job) => {
                    job.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
                    job.metadata.creation_timestamp = Some(now);
                    job.metadata.generation = Some(1);
                    let object = Object::Job(job);
                    if txn.get(&object_key(&object))?.is_none() {
                        events::record_created(txn, &object, now)?;
                        txn.put(object)?;
                        applied += 1;
                    }
                }
                Command::Update { seen, object } => {
                    let current = txn.get(&object_key(&object))?;
                    let Some(current) =
                        current.filter(|c| c.metadata().resource_version.as_deref() == Some(&seen))
                    else {
                        continue;
                    };
                    events::record_change(txn, &current, &object, "scheduler", now)?;
                    txn.put(*object)?;
                    applied += 1;
                }
                Command::Remove { key, seen } => {
                    let current = txn.get(&key)?;
                    if let Some(current) =
                        current.filter(|c| c.metadata().resource_version.as_deref() == Some(&seen))
                    {
                        events::record_removed(txn, &current, now)?;
                        txn.delete(&key)?;
                        applied += 1;
                    }
                }
            }
        }
        Ok(applied)
    })
}

/// How old a node's usage report may be for autoscalers to use it: a few
/// heartbeats.
pub const USAGE_FRESHNESS: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// Every instance's usage from node reports at most [`USAGE_FRESHNESS`] old;
/// nothing when no autoscaler would read it.
fn fresh_usage(
    cluster: &Cluster,
    autoscalers: &[berth_api::autoscaler::HorizontalAutoscaler],
    now: Timestamp,
) -> Usage {
    if autoscalers.is_empty() {
        return Usage::default();
    }
    cluster
        .usage()
        .into_values()
        .filter(|(at, _)| now.duration_since(*at) <= USAGE_FRESHNESS)
        .flat_map(|(_, usage)| usage.instances)
        .map(|instance| (instance.uid.clone(), instance))
        .collect()
}

/// Sets an instance's priority and preemption policy from the PriorityClass
/// its template names, or from the global default class, or to 0.
fn resolve_priority(txn: &Txn<'_, '_>, spec: &mut InstanceSpec) -> Result<(), StoreError> {
    let class = match &spec.priority_class_name {
        Some(name) => match txn.get(&key(Kind::PriorityClass, None, name))? {
            Some(Object::PriorityClass(class)) => Some(*class),
            _ => None,
        },
        None => txn
            .list(Kind::PriorityClass, None)?
            .into_iter()
            .find_map(|o| match o {
                Object::PriorityClass(class) if class.global_default => Some(*class),
                _ => None,
            }),
    };
    spec.priority = Some(class.as_ref().map_or(0, |c| c.value));
    spec.preemption_policy = Some(class.map(|c| c.preemption_policy).unwrap_or_default());
    Ok(())
}
