//! `berth drain NODE [--timeout 60s] [--ignore-daemonsets] [--force]`, as
//! `kubectl drain`: cordon the node, then evict each of its instances
//! through the eviction API (`Request::Evict`), retrying the evictions a
//! PodDisruptionBudget refuses every [`RETRY`], until none is left on the
//! node or the timeout passes.
//!
//! As kubectl, it refuses to start evicting when the node runs DaemonSet
//! instances (their DaemonSet would put them right back) unless
//! `--ignore-daemonsets` says to leave them, or instances that no
//! controller owns (nothing would replace them) unless `--force`. A Job's
//! finished runs are left alone: they hold nothing on the node. The steps
//! it takes are reported as [`Step`]s, which `render::drain_step` prints.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail};
use berth_api::wire::{ErrorCode, NodePatch, Request, Response};
use berth_api::{Instance, Kind, Object, Phase};

use crate::client::Client;
use crate::commands::get::{self, Query};
use crate::commands::node_admin;

/// How long a refused eviction waits before it is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What `berth drain` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node.
    pub node: String,
    /// Give up after this long; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// Leave DaemonSet instances on the node rather than refuse.
    pub ignore_daemonsets: bool,
    /// Evict instances that no controller owns too.
    pub force: bool,
}

/// One thing drain did, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The node is cordoned (`already` if it was before).
    Cordoned {
        /// The node.
        node: String,
        /// It was cordoned before drain ran.
        already: bool,
    },
    /// DaemonSet instances left on the node (`namespace/name`).
    IgnoringDaemonSets(Vec<String>),
    /// An eviction is asked for (`namespace/name`).
    Evicting(String),
    /// An eviction was refused and will be tried again.
    Refused {
        /// `namespace/name`.
        instance: String,
        /// The scheduler's reason.
        message: String,
        /// When it is tried again.
        retry: Duration,
    },
    /// An evicted instance is gone from the node (`namespace/name`).
    Evicted(String),
}

/// The outcome of a drain that finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The node, now cordoned and empty of evictable instances.
    pub node: String,
}

/// The instances bound to a node, sorted by what drain does with them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OnNode {
    /// To evict (or being evicted: `true` when already terminating), by
    /// `namespace/name`.
    pub evict: Vec<(String, bool)>,
    /// Instances of DaemonSets.
    pub daemonsets: Vec<String>,
    /// Instances no controller owns.
    pub unowned: Vec<String>,
}

/// Sorts the instances among `objects` bound to `node`.
pub fn on_node(objects: &[Object], node: &str) -> OnNode {
    let mut sorted = OnNode::default();
    for object in objects {
        let Object::Instance(instance) = object else {
            continue;
        };
        if instance.spec.node_name.as_deref() != Some(node) || is_finished(instance) {
            continue;
        }
        let name = format!(
            "{}/{}",
            instance.metadata.namespace_or_default(),
            instance.metadata.name
        );
        let owners = &instance.metadata.owner_references;
        let terminating = instance.metadata.deletion_timestamp.is_some();
        if owners.iter().any(|r| r.kind == Kind::DaemonSet.as_str()) {
            sorted.daemonsets.push(name);
        } else if owners.is_empty() && !terminating {
            sorted.unowned.push(name.clone());
            sorted.evict.push((name, terminating));
        } else {
            sorted.evict.push((name, terminating));
        }
    }
    sorted
}

/// A Job's run that has ended: it holds nothing on its node.
fn is_finished(instance: &Instance) -> bool {
    matches!(instance.status.phase, Phase::Succeeded | Phase::Failed)
        && instance.metadata.deletion_timestamp.is_none()
}

/// Cordons and drains `options.node`, telling each step to `step`.
pub async fn drain(
    client: &Client,
    options: &Options,
    step: &mut dyn FnMut(Step),
) -> Result<Drained> {
    let node = &options.node;
    let began = tokio::time::Instant::now();
    let nodes = get::get(
        client,
        &Query {
            kind: Kind::Node,
            name: Some(node.clone()),
            namespace: None,
        },
    )
    .await?;
    let already = matches!(nodes.first(), Some(Object::Node(n)) if n.spec.unschedulable);
    if !already {
        let patch = NodePatch {
            unschedulable: Some(true),
            ..NodePatch::default()
        };
        node_admin::patch(client, node, patch).await?;
    }
    step(Step::Cordoned {
        node: node.clone(),
        already,
    });
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut granted: BTreeSet<String> = BTreeSet::new();
    let mut warned = false;
    let mut last_refusal = None;
    loop {
        let instances = get::get(
            client,
            &Query {
                kind: Kind::Instance,
                name: None,
                namespace: None,
            },
        )
        .await?;
        let sorted = on_node(&instances, node);
        if !sorted.daemonsets.is_empty() {
            if !options.ignore_daemonsets {
                bail!(
                    "unable to drain node {node:?}: cannot evict DaemonSet-managed instances \
                     (use --ignore-daemonsets to ignore): {}",
                    sorted.daemonsets.join(", ")
                );
            }
            if !warned {
                step(Step::IgnoringDaemonSets(sorted.daemonsets.clone()));
                warned = true;
            }
        }
        if !sorted.unowned.is_empty() && !options.force {
            bail!(
                "unable to drain node {node:?}: cannot evict instances that declare no \
                 controller (use --force to override): {}",
                sorted.unowned.join(", ")
            );
        }
        let left: BTreeSet<&str> = sorted.evict.iter().map(|(n, _)| n.as_str()).collect();
        for gone in granted.iter().filter(|n| !left.contains(n.as_str())) {
            step(Step::Evicted(gone.clone()));
        }
        granted.retain(|n| left.contains(n.as_str()));
        if sorted.evict.is_empty() {
            return Ok(Drained { node: node.clone() });
        }
        for (name, terminating) in &sorted.evict {
            if *terminating {
                // Being stopped (evicted, or deleted by someone else):
                // wait for it to go.
                granted.insert(name.clone());
                continue;
            }
            let Some((namespace, instance)) = name.split_once('/') else {
                continue;
            };
            if asked.insert(name.clone()) {
                step(Step::Evicting(name.clone()));
            }
            let request = Request::Evict {
                namespace: namespace.to_owned(),
                name: instance.to_owned(),
            };
            match client.call_answer(&request).await? {
                Response::Deleted { .. } => {
                    granted.insert(name.clone());
                }
                Response::Error(e) if e.code == ErrorCode::TooManyRequests => {
                    step(Step::Refused {
                        instance: name.clone(),
                        message: e.message.clone(),
                        retry: RETRY,
                    });
                    last_refusal = Some(e.message);
                }
                // Gone meanwhile: the next listing says so.
                Response::Error(e) if e.code == ErrorCode::NotFound => {}
                Response::Error(e) => bail!("error when evicting instance {name}: {e}"),
                other => bail!("error when evicting instance {name}: unexpected answer {other:?}"),
            }
        }
        if let Some(timeout) = options.timeout
            && began.elapsed() >= timeout
        {
            let left: Vec<&str> = sorted.evict.iter().map(|(n, _)| n.as_str()).collect();
            let why = last_refusal.map(|m| format!(": {m}")).unwrap_or_default();
            bail!(
                "unable to drain node {node:?}: global timeout reached ({}s) with {} still \
                 on the node{why}",
                timeout.as_secs(),
                left.join(", ")
            );
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use berth_api::{API_VERSION, InstanceSpec, InstanceStatus, ObjectMeta, OwnerReference};

    fn instance(name: &str, node: &str, owner: Option<&str>, phase: Phase) -> Object {
        Object::Instance(Box::new(Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some("default".into()),
                owner_references: owner
                    .map(|kind| OwnerReference {
                        api_version: API_VERSION.into(),
                        kind: kind.into(),
                        name: "owner".into(),
                        uid: "uid".into(),
                    })
                    .into_iter()
                    .collect(),
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                node_name: Some(node.into()),
                ..InstanceSpec::default()
            },
            status: InstanceStatus {
                phase,
                ..InstanceStatus::default()
            },
        }))
    }

    #[test]
    fn instances_on_the_node_are_sorted_by_what_drain_does() {
        let objects = [
            instance("web-1", "a", Some("Deployment"), Phase::Running),
            instance("web-2", "b", Some("Deployment"), Phase::Running),
            instance("agent-1", "a", Some("DaemonSet"), Phase::Running),
            instance("run-1", "a", Some("Job"), Phase::Succeeded),
            instance("run-2", "a", Some("Job"), Phase::Running),
            instance("loose", "a", None, Phase::Running),
        ];
        let sorted = on_node(&objects, "a");
        assert_eq!(
            sorted.evict,
            [
                ("default/web-1".to_owned(), false),
                ("default/run-2".to_owned(), false),
                ("default/loose".to_owned(), false),
            ]
        );
        assert_eq!(sorted.daemonsets, ["default/agent-1"]);
        assert_eq!(sorted.unowned, ["default/loose"]);
        assert_eq!(on_node(&objects, "c"), OnNode::default());
    }
}
