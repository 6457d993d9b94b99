//! Garbage collection: instances whose Deployment, Job or DaemonSet is gone
//! terminate, Jobs whose CronJob is gone are removed (their instances
//! follow in the next pass), and terminating instances are removed once
//! their node no longer runs them.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

use super::cronjob::{cronjob_owner, remove};
use super::daemonset::daemonset_owner;
use super::job::job_owner;
use super::{Command, Liveness, Plan, View, instance_key, owner_uid, rv, terminate, terminated_by};

/// How long a terminating instance may wait for its node to confirm it
/// stopped before the scheduler removes it anyway.
pub const TERMINATION_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);

pub(super) fn collect_garbage(
    view: &View,
    liveness: &HashMap<String, Liveness>,
    ready: &HashMap<String, bool>,
    now: Timestamp,
    plan: &mut Plan,
) {
    let owners: HashSet<&str> = view
        .deployments
        .iter()
        .filter_map(|d| d.metadata.uid.as_deref())
        .chain(view.jobs.iter().filter_map(|j| j.metadata.uid.as_deref()))
        .chain(
            view.daemonsets
                .iter()
                .filter_map(|d| d.metadata.uid.as_deref()),
        )
        .collect();
    let cronjobs: HashSet<&str> = view
        .cronjobs
        .iter()
        .filter_map(|c| c.metadata.uid.as_deref())
        .collect();
    for job in &view.jobs {
        if cronjob_owner(job).is_some_and(|uid| !cronjobs.contains(uid)) {
            remove(job, plan);
        }
    }
    let terminated = terminated_by(plan);
    for instance in &view.instances {
        let Some(since) = instance.metadata.deletion_timestamp else {
            let owner = owner_uid(instance)
                .or_else(|| job_owner(instance))
                .or_else(|| daemonset_owner(instance));
            if owner.is_none_or(|uid| !owners.contains(uid))
                && !terminated.contains(&instance_key(instance))
            {
                terminate(instance, now, plan);
            }
            continue;
        };
        let uid = instance.metadata.uid.as_deref().unwrap_or_default();
        let stopped = match instance.spec.node_name.as_deref() {
            None => true,
            Some(node) if !ready.get(node).copied().unwrap_or(false) => true,
            Some(node) => liveness
                .get(node)
                .and_then(|l| l.reported.as_ref())
                .is_some_and(|held| !held.contains(uid)),
        };
        if stopped || now.duration_since(since) > TERMINATION_TIMEOUT {
            plan.commands.push(Command::Remove {
                key: instance_key(instance),
                seen: rv(&instance.metadata),
            });
        }
    }
}
