//! `Top` on the scheduler: live usage rows for `berth top nodes` and
//! `berth top instances`, from the usage each node sent with its latest
//! report ([`crate::cluster::Cluster::usage`], memory only) joined with the
//! stored Nodes (for their allocatable) and Instances (for their names).
//!
//! A node whose latest report is older than [`USAGE_STALE`] has no usage
//! (shown `<unknown>`, as kubectl does), and neither have its instances.

use std::collections::HashMap;

use berth_api::wire::{ApiError, InstanceTop, NodeTop, NodeUsage, TopKind, TopRows};
use berth_api::{Kind, NodeResources, Object};
use jiff::{SignedDuration, Timestamp};

use crate::cluster::Cluster;

/// Usage reported longer ago than this is not shown: nodes report every
/// second, so the node has been silent for ten heartbeats.
pub const USAGE_STALE: SignedDuration = SignedDuration::from_secs(10);

/// The rows `what` asks for, from the store and the latest reports.
pub(super) fn rows(
    cluster: &Cluster,
    what: TopKind,
    namespace: Option<&str>,
    now: Timestamp,
) -> Result<TopRows, ApiError> {
    let usage = fresh(cluster.usage(), now);
    Ok(match what {
        TopKind::Nodes => TopRows::Nodes(nodes(&cluster.store.list(Kind::Node, None)?, &usage)),
        TopKind::Instances => TopRows::Instances(instances(
            &cluster.store.list(Kind::Instance, namespace)?,
            &usage,
        )),
    })
}

/// The reports newer than [`USAGE_STALE`].
fn fresh(
    usage: HashMap<String, (Timestamp, NodeUsage)>,
    now: Timestamp,
) -> HashMap<String, NodeUsage> {
    usage
        .into_iter()
        .filter(|(_, (at, _))| now.duration_since(*at) <= USAGE_STALE)
        .map(|(node, (_, usage))| (node, usage))
        .collect()
}

/// One row per stored Node, by name.
fn nodes(objects: &[Object], usage: &HashMap<String, NodeUsage>) -> Vec<NodeTop> {
    let mut rows: Vec<NodeTop> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Node(node) => Some(node),
            _ => None,
        })
        .map(|node| NodeTop {
            name: node.metadata.name.clone(),
            usage: usage.get(&node.metadata.name).map(|u| NodeResources {
                cpu_millis: u.cpu_millicores,
                memory_bytes: u.memory_bytes,
            }),
            allocatable: node.status.allocatable,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// One row per stored Instance its node reported usage for, by namespace
/// and name. A report about an instance bound elsewhere is ignored.
fn instances(objects: &[Object], usage: &HashMap<String, NodeUsage>) -> Vec<InstanceTop> {
    let mut rows: Vec<InstanceTop> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Instance(instance) => Some(instance),
            _ => None,
        })
        .filter_map(|instance| {
            let node = instance.spec.node_name.as_deref()?;
            let uid = instance.metadata.uid.as_deref()?;
            let reported = usage.get(node)?.instances.iter().find(|i| i.uid == uid)?;
            Some(InstanceTop {
                namespace: instance.metadata.namespace_or_default().to_owned(),
                name: instance.metadata.name.clone(),
                node: node.to_owned(),
                cpu_millicores: reported.cpu_millicores,
                memory_bytes: reported.memory_bytes,
                millirequests_per_second: reported.millirequests_per_second,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use berth_api::wire::InstanceUsage;

    use super::*;

    fn object(json: serde_json::Value) -> Object {
        Object::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    fn node(name: &str) -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"allocatable": {"cpuMillis": 2000, "memoryBytes": 1024}}
        }))
    }

    fn instance(name: &str, uid: &str, node: &str) -> Object {
        object(serde_json::json!({
            "apiVersion": "berth.dev/v1",
            "kind": "Instance",
            "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"component": "sha256:00", "nodeName": node}
        }))
    }

    fn usage() -> HashMap<String, NodeUsage> {
        let report = NodeUsage {
            cpu_millicores: 500,
            memory_bytes: 256,
            instances: vec![
                InstanceUsage {
                    uid: "u1".into(),
                    cpu_millicores: 500,
                    memory_bytes: 256,
                    millirequests_per_second: 2000,
                    mean_latency_micros: 0,
                    ..InstanceUsage::default()
                },
                InstanceUsage {
                    uid: "gone".into(),
                    ..InstanceUsage::default()
                },
            ],
        };
        [("a".to_owned(), report)].into()
    }

    #[test]
    fn nodes_without_a_fresh_report_have_no_usage() {
        let now = Timestamp::now();
        let old = now.checked_sub(SignedDuration::from_secs(60)).unwrap();
        let reports: HashMap<String, (Timestamp, NodeUsage)> = [
            ("a".to_owned(), (now, usage().remove("a").unwrap())),
            ("b".to_owned(), (old, NodeUsage::default())),
        ]
        .into();
        let rows = nodes(&[node("b"), node("a")], &fresh(reports, now));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a");
        assert_eq!(rows[0].usage.unwrap().cpu_millis, 500);
        assert_eq!(rows[0].allocatable.cpu_millis, 2000);
        assert_eq!(rows[1].usage, None);
    }

    #[test]
    fn instances_are_named_and_reports_from_elsewhere_ignored() {
        let rows = instances(
            &[
                instance("hello-b", "u1", "a"),
                instance("hello-c", "u2", "a"),
                instance("hello-d", "u1", "b"),
            ],
            &usage(),
        );
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].name, "hello-b");
        assert_eq!(rows[0].memory_bytes, 256);
        assert_eq!(rows[0].millirequests_per_second, 2000);
    }
}
