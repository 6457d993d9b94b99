//! How the ingress splits a Deployment's requests between its stable and
//! canary revisions while a canary runs ([`Splits`]), as the scheduler
//! says in `Assignments.canaries`.
//!
//! The split is exact rather than random: of every 100 requests a
//! Deployment gets here, `weight` go to the canary, spread evenly
//! (the canary's turn comes when `floor((n + 1) * weight / 100)` steps
//! up). When this node holds ready instances of one side only, that side
//! serves everything: a request is never refused for a weight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use berth_api::wire::CanaryRoute;

/// One Deployment's split.
#[derive(Debug)]
pub struct Split {
    /// Percentage of requests for the canary, `0..=100`.
    weight: u64,
    /// The canary revision's instances.
    canary: HashSet<String>,
    /// Requests split so far.
    turn: AtomicU64,
}

impl Split {
    /// Whether instance `uid` is of the canary revision.
    pub fn is_canary(&self, uid: &str) -> bool {
        self.canary.contains(uid)
    }

    /// Whether the next request goes to the canary.
    pub fn next_is_canary(&self) -> bool {
        let n = self.turn.fetch_add(1, Ordering::Relaxed) % 100;
        (n + 1) * self.weight / 100 > n * self.weight / 100
    }

    /// Picks the side for the next request among `candidates` (by uid):
    /// the indexes of the canary's or the stable's, or all of them when
    /// only one side is present.
    pub fn side<'a>(&self, candidates: impl Iterator<Item = &'a str>) -> Vec<usize> {
        let mut canary = Vec::new();
        let mut stable = Vec::new();
        for (index, uid) in candidates.enumerate() {
            if self.is_canary(uid) {
                canary.push(index);
            } else {
                stable.push(index);
            }
        }
        match (canary.is_empty(), stable.is_empty()) {
            (false, false) => {
                if self.next_is_canary() {
                    canary
                } else {
                    stable
                }
            }
            (false, true) => canary,
            _ => stable,
        }
    }
}

/// Every Deployment's split, by lowercase `(namespace, deployment)`.
#[derive(Debug, Default)]
pub struct Splits {
    by_deployment: RwLock<HashMap<(String, String), Arc<Split>>>,
}

impl Splits {
    /// Replaces the splits with `routes`, keeping the turn of those
    /// whose weight did not change.
    pub fn set(&self, routes: &[CanaryRoute]) {
        let mut splits = self
            .by_deployment
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::new();
        for route in routes {
            let key = (
                route.namespace.to_ascii_lowercase(),
                route.deployment.to_ascii_lowercase(),
            );
            let turn = splits
                .get(&key)
                .filter(|s| s.weight == u64::from(route.weight.min(100)))
                .map_or(0, |s| s.turn.load(Ordering::Relaxed));
            next.insert(
                key,
                Arc::new(Split {
                    weight: u64::from(route.weight.min(100)),
                    canary: route.instances.iter().cloned().collect(),
                    turn: AtomicU64::new(turn),
                }),
            );
        }
        *splits = next;
    }

    /// The split of a Deployment (keys lowercase), if a canary runs.
    pub fn get(&self, namespace: &str, deployment: &str) -> Option<Arc<Split>> {
        let splits = self
            .by_deployment
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if splits.is_empty() {
            // No canary runs: the common case costs no allocation.
            return None;
        }
        splits
            .get(&(namespace.to_owned(), deployment.to_owned()))
            .cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn route(weight: u32, canary: &[&str]) -> CanaryRoute {
        CanaryRoute {
            namespace: "Default".into(),
            deployment: "web".into(),
            revision: "abc".into(),
            weight,
            instances: canary.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn exactly_weight_of_every_hundred_go_to_the_canary() {
        for weight in [0, 1, 10, 33, 50, 99, 100] {
            let splits = Splits::default();
            splits.set(&[route(weight, &["c"])]);
            let split = splits.get("default", "web").unwrap();
            let canary = (0..1000)
                .filter(|_| split.side(["s1", "c", "s2"].into_iter()) == [1])
                .count();
            assert_eq!(
                canary,
                usize::try_from(weight).unwrap() * 10,
                "weight {weight}"
            );
        }
    }

    #[test]
    fn one_side_present_serves_everything() {
        let splits = Splits::default();
        splits.set(&[route(90, &["c"])]);
        let split = splits.get("default", "web").unwrap();
        assert_eq!(split.side(["s1", "s2"].into_iter()), [0, 1]);
        assert_eq!(split.side(["c"].into_iter()), [0]);
        splits.set(&[]);
        assert!(splits.get("default", "web").is_none());
    }
}
