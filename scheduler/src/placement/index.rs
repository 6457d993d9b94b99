//! The indexes a batch keeps so that a placement costs a few array lookups
//! per node: interned topology domains, selectors ("matchers"), and
//! counters of matching instances per domain, updated as instances are
//! bound and evicted.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hasher;

use berth_api::scheduling::Selector;
use serde::Serialize;

use super::NodeInfo;

/// A node that lacks a topology key has no domain for it.
pub(super) const ABSENT: u32 = u32::MAX;

/// A hash of any serialisable value, for interning API types that do not
/// implement `Hash`; equality is still checked on the values themselves.
pub(super) fn fingerprint<T: Serialize + ?Sized>(hasher: &mut DefaultHasher, value: &T) {
    struct Sink<'h>(&'h mut DefaultHasher);
    impl std::io::Write for Sink<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Writing to the hasher cannot fail, and every map these types hold is
    // keyed by strings, so serialisation cannot fail either.
    let _ = serde_json::to_writer(Sink(hasher), value);
    hasher.write_u8(0xff);
}

/// Values interned by a caller-computed hash, compared with `PartialEq`.
#[derive(Debug)]
pub(super) struct Interner<T> {
    items: Vec<T>,
    by_hash: HashMap<u64, Vec<u32>>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            items: Vec::new(),
            by_hash: HashMap::new(),
        }
    }
}

impl<T> Interner<T> {
    /// The id of the item that `same` says equals the one hashed to `hash`,
    /// if interned.
    pub fn find(&self, hash: u64, same: impl Fn(&T) -> bool) -> Option<u32> {
        self.by_hash
            .get(&hash)?
            .iter()
            .copied()
            .find(|&id| self.items.get(id as usize).is_some_and(&same))
    }

    /// Adds an item not interned yet; returns its id.
    pub fn push(&mut self, hash: u64, item: T) -> u32 {
        let id = self.items.len() as u32;
        self.items.push(item);
        self.by_hash.entry(hash).or_default().push(id);
        id
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }
}

impl<T: PartialEq> Interner<T> {
    /// The id of `item`, adding it if new.
    pub fn intern(&mut self, hash: u64, item: T) -> u32 {
        match self.find(hash, |existing| *existing == item) {
            Some(id) => id,
            None => self.push(hash, item),
        }
    }
}

/// Topology keys and their values, interned: a node's domain for a key is
/// one lookup in a flat table.
#[derive(Debug, Default)]
pub(super) struct Topology {
    keys: HashMap<String, u32>,
    /// Number of distinct values per key.
    values: Vec<u32>,
    /// `domains[node * keys + key]`: the value id, or [`ABSENT`].
    domains: Vec<u32>,
    stride: usize,
}

impl Topology {
    /// Interns `keys` (sorted, so ids are deterministic) and the values the
    /// nodes carry for them, in node order.
    pub fn new(keys: &BTreeSet<&str>, nodes: &[NodeInfo]) -> Topology {
        let stride = keys.len();
        let mut ids: Vec<HashMap<&str, u32>> = vec![HashMap::new(); stride];
        let mut domains = Vec::with_capacity(nodes.len() * stride);
        for node in nodes {
            for (key, values) in keys.iter().zip(ids.iter_mut()) {
                let domain = match node.labels.get(*key) {
                    Some(value) => {
                        let next = values.len() as u32;
                        *values.entry(value.as_str()).or_insert(next)
                    }
                    None => ABSENT,
                };
                domains.push(domain);
            }
        }
        Topology {
            keys: keys
                .iter()
                .enumerate()
                .map(|(id, key)| ((*key).to_owned(), id as u32))
                .collect(),
            values: ids.iter().map(|v| v.len() as u32).collect(),
            domains,
            stride,
        }
    }

    pub fn key(&self, name: &str) -> Option<u32> {
        self.keys.get(name).copied()
    }

    /// The node's value id for `key`, or [`ABSENT`].
    pub fn domain(&self, node: u32, key: u32) -> u32 {
        if key as usize >= self.stride {
            return ABSENT;
        }
        self.domains
            .get(node as usize * self.stride + key as usize)
            .copied()
            .unwrap_or(ABSENT)
    }

    /// How many distinct values `key` has.
    pub fn values(&self, key: u32) -> usize {
        self.values.get(key as usize).copied().unwrap_or(0) as usize
    }
}

/// `namespaces` and `selector` of one affinity term or spread constraint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Clause {
    /// Sorted, never empty: a term without namespaces means its owner's.
    pub namespaces: Vec<String>,
    pub selector: Selector,
}

impl Clause {
    pub fn new(namespaces: &[String], own: &str, selector: &Selector) -> Clause {
        let mut namespaces = if namespaces.is_empty() {
            vec![own.to_owned()]
        } else {
            namespaces.to_vec()
        };
        namespaces.sort_unstable();
        namespaces.dedup();
        Clause {
            namespaces,
            selector: selector.clone(),
        }
    }

    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces.iter().any(|n| n == namespace) && self.selector.matches(labels)
    }
}

/// Which instances count: those matching every clause (kube-scheduler
/// counts an affinity's instances only if they match all its terms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Matcher {
    pub clauses: Vec<Clause>,
}

impl Matcher {
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.clauses.iter().all(|c| c.matches(namespace, labels))
    }

    pub fn hash(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        fingerprint(&mut hasher, self);
        hasher.finish()
    }
}

/// Finds the matchers an instance matches without trying them all: a
/// matcher whose first clause requires a label pair is tried only by
/// instances carrying that pair.
#[derive(Debug, Default)]
pub(super) struct MatcherIndex {
    anchored: HashMap<String, HashMap<String, Vec<u32>>>,
    unanchored: Vec<u32>,
}

impl MatcherIndex {
    pub fn new(matchers: &[Matcher]) -> MatcherIndex {
        let mut index = MatcherIndex::default();
        for (id, matcher) in matchers.iter().enumerate() {
            let anchor = matcher
                .clauses
                .first()
                .and_then(|c| c.selector.match_labels.iter().next());
            match anchor {
                Some((key, value)) => index
                    .anchored
                    .entry(key.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(id as u32),
                None => index.unanchored.push(id as u32),
            }
        }
        index
    }

    /// The ids of the matchers `(namespace, labels)` matches, ascending.
    pub fn matching(
        &self,
        matchers: &[Matcher],
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<u32> {
        let anchored = labels.iter().filter_map(|(key, value)| {
            self.anchored
                .get(key.as_str())
                .and_then(|values| values.get(value.as_str()))
        });
        let mut ids: Vec<u32> = anchored
            .flatten()
            .chain(&self.unanchored)
            .copied()
            .filter(|&id| {
                matchers
                    .get(id as usize)
                    .is_some_and(|m| m.matches(namespace, labels))
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The smallest count over a spread constraint's domains, kept up to date
/// as counts move by one: a histogram of how many domains hold each count.
#[derive(Debug, Clone, Default)]
pub(super) struct Floor {
    histogram: Vec<u32>,
    min: u32,
}

impl Floor {
    pub fn new(domains: u32) -> Floor {
        Floor {
            histogram: vec![domains],
            min: 0,
        }
    }

    pub fn min(&self) -> u32 {
        self.min
    }

    /// A domain went from `old` to `old + 1`.
    pub fn raise(&mut self, old: u32) {
        let old = old as usize;
        if self.histogram.len() <= old + 1 {
            self.histogram.resize(old + 2, 0);
        }
        if let Some(slot) = self.histogram.get_mut(old) {
            *slot = slot.saturating_sub(1);
        }
        if let Some(slot) = self.histogram.get_mut(old + 1) {
            *slot += 1;
        }
        if old == self.min as usize && self.histogram.get(old) == Some(&0) {
            self.min += 1;
        }
    }

    /// A domain went from `old` (at least 1) to `old - 1`.
    pub fn lower(&mut self, old: u32) {
        let Some(new) = old.checked_sub(1) else {
            return;
        };
        if let Some(slot) = self.histogram.get_mut(old as usize) {
            *slot = slot.saturating_sub(1);
        }
        if let Some(slot) = self.histogram.get_mut(new as usize) {
            *slot += 1;
        }
        self.min = self.min.min(new);
    }
}

/// How many instances matching a matcher sit in each domain of a key.
#[derive(Debug, Clone)]
pub(super) struct Counter {
    pub key: u32,
    /// Terminating instances count for affinity (as in kube-scheduler) but
    /// not for spread.
    pub include_terminating: bool,
    /// Spread counts only instances on nodes eligible for the constraint's
    /// owner (node selector and affinity pass, every spread key present).
    pub eligibility: Option<u32>,
    pub counts: Vec<u32>,
    /// Sum of `counts`.
    pub total: u64,
    /// For spread: the minimum over the eligible domains.
    pub floor: Option<Floor>,
}

impl Counter {
    pub fn count(&self, domain: u32) -> u32 {
        self.counts.get(domain as usize).copied().unwrap_or(0)
    }

    pub fn add(&mut self, domain: u32) {
        if let Some(count) = self.counts.get_mut(domain as usize) {
            if let Some(floor) = &mut self.floor {
                floor.raise(*count);
            }
            *count += 1;
            self.total += 1;
        }
    }

    pub fn remove(&mut self, domain: u32) {
        if let Some(count) = self.counts.get_mut(domain as usize)
            && *count > 0
        {
            if let Some(floor) = &mut self.floor {
                floor.lower(*count);
            }
            *count -= 1;
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// The identity of a [`Counter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct CounterKey {
    pub matcher: u32,
    pub key: u32,
    pub include_terminating: bool,
    pub eligibility: Option<u32>,
}

/// How many instances carrying one affinity term sit in each domain: the
/// symmetric side, seen by newcomers the term's matcher selects.
#[derive(Debug, Clone)]
pub(super) struct Carried {
    pub matcher: u32,
    pub key: u32,
    /// Required anti-affinity, or a preferred term with its signed weight
    /// (negative for anti-affinity).
    pub kind: CarriedKind,
    pub counts: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum CarriedKind {
    RequiredAnti,
    Preferred(f64),
}

impl Carried {
    pub fn count(&self, domain: u32) -> u32 {
        self.counts.get(domain as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_tracks_the_minimum() {
        let mut counts = [0u32; 3];
        let mut floor = Floor::new(3);
        let bump = |counts: &mut [u32; 3], floor: &mut Floor, d: usize, up: bool| {
            if up {
                floor.raise(counts[d]);
                counts[d] += 1;
            } else {
                floor.lower(counts[d]);
                counts[d] -= 1;
            }
            assert_eq!(floor.min(), *counts.iter().min().unwrap(), "{counts:?}");
        };
        for (d, up) in [
            (0, true),
            (1, true),
            (2, true),
            (2, true),
            (0, true),
            (1, true),
            (1, false),
            (1, false),
            (2, false),
            (1, true),
            (1, true),
        ] {
            bump(&mut counts, &mut floor, d, up);
        }
    }

    #[test]
    fn topology_interns_values_per_key() {
        let node = |name: &str, zone: Option<&str>| NodeInfo {
            name: name.into(),
            labels: zone
                .map(|z| BTreeMap::from([("zone".to_owned(), z.to_owned())]))
                .unwrap_or_default(),
            ..NodeInfo::default()
        };
        let nodes = [
            node("a", Some("z1")),
            node("b", None),
            node("c", Some("z1")),
            node("d", Some("z2")),
        ];
        let topology = Topology::new(&BTreeSet::from(["zone"]), &nodes);
        let zone = topology.key("zone").unwrap();
        assert_eq!(topology.values(zone), 2);
        assert_eq!(topology.domain(0, zone), topology.domain(2, zone));
        assert_eq!(topology.domain(1, zone), ABSENT);
        assert_ne!(topology.domain(3, zone), topology.domain(0, zone));
        assert_eq!(topology.key("rack"), None);
    }

    #[test]
    fn matcher_index_finds_what_a_scan_finds() {
        let clause = |ns: &str, labels: &[(&str, &str)]| Clause {
            namespaces: vec![ns.into()],
            selector: Selector {
                match_labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                match_expressions: vec![],
            },
        };
        let matchers = vec![
            Matcher {
                clauses: vec![clause("a", &[("app", "web")])],
            },
            Matcher {
                clauses: vec![clause("a", &[])],
            },
            Matcher {
                clauses: vec![clause("b", &[("app", "web")])],
            },
            Matcher {
                clauses: vec![clause("a", &[("app", "web"), ("tier", "1")])],
            },
            Matcher {
                clauses: vec![clause("a", &[("tier", "1")]), clause("a", &[("app", "db")])],
            },
        ];
        let index = MatcherIndex::new(&matchers);
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "1")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(index.matching(&matchers, "a", &labels), [0, 1, 3]);
        assert_eq!(index.matching(&matchers, "b", &labels), [2]);
    }
}
