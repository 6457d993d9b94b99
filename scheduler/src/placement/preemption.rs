//! Preemption: when an instance fits nowhere, the node where evicting
//! strictly lower-priority instances makes every filter pass, at the least
//! cost.

use std::cmp::Reverse;

use super::PendingInstance;
use super::batch::{Batch, Change};

/// What evicting a node's victims costs, compared in order: the highest
/// victim priority, the number of victims, the sum of their priorities
/// (kube-scheduler's order, less disruption budgets and start times), then
/// the node's name.
type Cost<'a> = (i32, usize, i64, &'a str);

impl<'a> Batch<'a> {
    /// The node and victims (ids in `placed`) for `p`, or `None`. The state
    /// is left as it was; the caller evicts.
    pub(super) fn preempt(&mut self, profile: u32, p: &PendingInstance) -> Option<(u32, Vec<u32>)> {
        let feasible = self.profiles.get(profile as usize)?.feasible.clone();
        let snapshot: &'a super::Snapshot = self.snapshot;
        let mut best: Option<(Cost<'a>, u32, Vec<u32>)> = None;
        for node in feasible {
            let Some(victims) = self.victims(profile, p, node) else {
                continue;
            };
            let cost: Cost = (
                victims
                    .iter()
                    .filter_map(|&v| self.placed.get(v as usize).map(|v| v.priority))
                    .max()
                    .unwrap_or(i32::MIN),
                victims.len(),
                victims
                    .iter()
                    .filter_map(|&v| self.placed.get(v as usize).map(|v| i64::from(v.priority)))
                    .sum(),
                snapshot
                    .nodes
                    .get(node as usize)
                    .map_or("", |n| n.name.as_str()),
            );
            if best.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                best = Some((cost, node, victims));
            }
        }
        best.map(|(_, node, victims)| (node, victims))
    }

    /// The fewest lower-priority instances whose eviction lets `p` pass
    /// every filter on `node`: remove them all, then put back the most
    /// important first while `p` still fits (kube-scheduler's reprieve).
    fn victims(&mut self, profile: u32, p: &PendingInstance, node: u32) -> Option<Vec<u32>> {
        let mut candidates: Vec<u32> = self
            .loads
            .get(node as usize)?
            .placed
            .iter()
            .copied()
            .filter(|&id| {
                self.placed
                    .get(id as usize)
                    .is_some_and(|i| !i.gone && !i.terminating && i.priority < p.priority)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by_key(|&id| {
            let placed = self.placed.get(id as usize);
            (
                Reverse(placed.map_or(i32::MIN, |i| i.priority)),
                placed.map(|i| i.key),
            )
        });
        for &id in &candidates {
            self.change(id, Change::Remove);
        }
        if !self.fits(profile, p, node) {
            for &id in &candidates {
                self.change(id, Change::Add);
            }
            return None;
        }
        let mut victims = Vec::new();
        for &id in &candidates {
            self.change(id, Change::Add);
            if !self.fits(profile, p, node) {
                self.change(id, Change::Remove);
                victims.push(id);
            }
        }
        for &id in &victims {
            self.change(id, Change::Add);
        }
        (!victims.is_empty()).then_some(victims)
    }

    fn fits(&self, profile: u32, p: &PendingInstance, node: u32) -> bool {
        self.profiles
            .get(profile as usize)
            .is_some_and(|pr| self.check(pr, p.demand, node).is_ok())
    }
}
