//! `NoExecute`: bound instances that must leave nodes whose taints they do
//! not tolerate.

use std::collections::HashMap;

use berth_api::scheduling::{Taint, TaintEffect, Toleration};
use jiff::{SignedDuration, Timestamp};

use super::{NodeInfo, Snapshot};

/// A bound instance that must be evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// The instance.
    pub key: String,
    /// Its node.
    pub node: String,
    /// The `NoExecute` taint that evicts it.
    pub taint: Taint,
}

/// The bound, not yet terminating instances that must leave their node at
/// `now`: a `NoExecute` taint they do not tolerate, or tolerate for
/// `tolerationSeconds` that have run out since the taint's `timeAdded` (a
/// taint without one counts from `now`). Several matching tolerations: the
/// shortest time wins, and one without a time tolerates forever.
pub fn no_execute_evictions(snapshot: &Snapshot, now: Timestamp) -> Vec<Eviction> {
    let mut nodes: HashMap<&str, &NodeInfo> = HashMap::new();
    for node in &snapshot.nodes {
        nodes.entry(node.name.as_str()).or_insert(node);
    }
    snapshot
        .bound
        .iter()
        .filter(|b| !b.terminating)
        .filter_map(|b| {
            let node = nodes.get(b.node.as_str())?;
            let taint = node
                .taints
                .iter()
                .find(|t| t.effect == TaintEffect::NoExecute && due(t, &b.tolerations, now))?;
            Some(Eviction {
                key: b.key.clone(),
                node: b.node.clone(),
                taint: taint.clone(),
            })
        })
        .collect()
}

fn due(taint: &Taint, tolerations: &[Toleration], now: Timestamp) -> bool {
    let mut matching = tolerations.iter().filter(|t| t.tolerates(taint)).peekable();
    if matching.peek().is_none() {
        return true;
    }
    let mut shortest: Option<i64> = None;
    for toleration in matching {
        match toleration.toleration_seconds {
            None => return false,
            Some(seconds) => shortest = Some(shortest.map_or(seconds, |s| s.min(seconds))),
        }
    }
    let Some(seconds) = shortest else {
        return false;
    };
    if seconds <= 0 {
        return true;
    }
    let since = taint.time_added.unwrap_or(now);
    since
        .checked_add(SignedDuration::from_secs(seconds))
        .is_ok_and(|deadline| now >= deadline)
}

#[cfg(test)]
mod tests {
    use berth_api::scheduling::TolerationOperator;

    use super::*;
    use crate::placement::BoundInstance;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn snapshot(time_added: Option<Timestamp>, tolerations: Vec<Toleration>) -> Snapshot {
        let taint = Taint {
            key: "maint".into(),
            value: "now".into(),
            effect: TaintEffect::NoExecute,
            time_added,
        };
        let soft = Taint {
            key: "other".into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
            time_added: None,
        };
        Snapshot {
            nodes: vec![
                NodeInfo {
                    name: "tainted".into(),
                    taints: vec![soft, taint],
                    ..NodeInfo::default()
                },
                NodeInfo {
                    name: "clean".into(),
                    ..NodeInfo::default()
                },
            ],
            bound: vec![
                BoundInstance {
                    key: "a".into(),
                    node: "tainted".into(),
                    tolerations: tolerations.clone(),
                    ..BoundInstance::default()
                },
                BoundInstance {
                    key: "b".into(),
                    node: "clean".into(),
                    ..BoundInstance::default()
                },
                BoundInstance {
                    key: "c".into(),
                    node: "tainted".into(),
                    terminating: true,
                    ..BoundInstance::default()
                },
            ],
        }
    }

    fn evicted(snapshot: &Snapshot, now: Timestamp) -> Vec<String> {
        no_execute_evictions(snapshot, now)
            .into_iter()
            .map(|e| e.key)
            .collect()
    }

    fn tolerate(seconds: Option<i64>) -> Toleration {
        Toleration {
            key: "maint".into(),
            operator: TolerationOperator::Exists,
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: seconds,
            ..Toleration::default()
        }
    }

    #[test]
    fn untolerated_no_execute_evicts_at_once() {
        let s = snapshot(None, vec![]);
        let evictions = no_execute_evictions(&s, at(0));
        assert_eq!(evictions.len(), 1);
        assert_eq!(evictions[0].key, "a");
        assert_eq!(evictions[0].node, "tainted");
        assert_eq!(evictions[0].taint.key, "maint");
    }

    #[test]
    fn toleration_without_seconds_keeps_the_instance() {
        assert!(evicted(&snapshot(Some(at(0)), vec![tolerate(None)]), at(10_000)).is_empty());
    }

    #[test]
    fn toleration_seconds_count_from_the_taint() {
        let s = snapshot(Some(at(100)), vec![tolerate(Some(60))]);
        assert!(evicted(&s, at(159)).is_empty());
        assert_eq!(evicted(&s, at(160)), ["a"]);
        // The shortest of several matching tolerations wins; one without
        // seconds tolerates forever.
        let s = snapshot(Some(at(100)), vec![tolerate(Some(600)), tolerate(Some(10))]);
        assert_eq!(evicted(&s, at(110)), ["a"]);
        let s = snapshot(Some(at(100)), vec![tolerate(Some(10)), tolerate(None)]);
        assert!(evicted(&s, at(10_000)).is_empty());
        // Zero or negative seconds: at once.
        let s = snapshot(Some(at(100)), vec![tolerate(Some(0))]);
        assert_eq!(evicted(&s, at(100)), ["a"]);
    }

    #[test]
    fn taint_without_time_added_counts_from_now() {
        let s = snapshot(None, vec![tolerate(Some(60))]);
        assert!(evicted(&s, at(0)).is_empty());
    }
}
