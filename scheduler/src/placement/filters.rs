//! Filters: why a node cannot take an instance.
//!
//! Node-only filters (conditions, nodeName, taints, selector, node
//! affinity, runtime) are plain functions, run once per profile and node
//! when a batch starts; the others (`Fit`, `InterInstanceAffinity`,
//! `TopologySpread`) read the batch's running state and are run per
//! placement, in [`Batch::check`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use berth_api::scheduling::{Affinity, Taint, TaintEffect, Toleration};

use super::batch::Batch;
use super::config::Plugin;
use super::index::ABSENT;
use super::profile::Profile;
use super::{Demand, Runtime};

/// Why a node was ruled out, worded as in the unschedulable message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Reason {
    NotReady,
    Cordoned,
    NodeName,
    Taint { key: String, value: String },
    NodeSelector,
    NodeAffinity,
    Runtime(Runtime),
    Interface(String),
    Dynamic(Dyn),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Cordoned => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::Taint { key, value } if value.is_empty() => {
                write!(f, "node(s) had untolerated taint {{{key}}}")
            }
            Reason::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeSelector => f.write_str("node(s) didn't match the node selector"),
            Reason::NodeAffinity => f.write_str("node(s) didn't match the node affinity"),
            Reason::Runtime(runtime) => {
                write!(f, "node(s) did not offer runtime {}", runtime.as_str())
            }
            Reason::Interface(import) => {
                write!(f, "node(s) did not provide interface {import}")
            }
            Reason::Dynamic(reason) => f.write_str(reason.text()),
        }
    }
}

/// Reasons of the filters that depend on what is already placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dyn {
    TooManyInstances,
    Cpu,
    Memory,
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
    Spread,
    SpreadLabel,
}

impl Dyn {
    pub const ALL: [Dyn; 8] = [
        Dyn::TooManyInstances,
        Dyn::Cpu,
        Dyn::Memory,
        Dyn::Affinity,
        Dyn::AntiAffinity,
        Dyn::ExistingAntiAffinity,
        Dyn::Spread,
        Dyn::SpreadLabel,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    fn text(self) -> &'static str {
        match self {
            Dyn::TooManyInstances => "too many instances",
            Dyn::Cpu => "insufficient cpu",
            Dyn::Memory => "insufficient memory",
            Dyn::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing instances' anti-affinity rules"
            }
            Dyn::Affinity => "node(s) didn't match instance affinity rules",
            Dyn::AntiAffinity => "node(s) didn't match instance anti-affinity rules",
            Dyn::Spread => "node(s) didn't match instance topology spread constraints",
            Dyn::SpreadLabel => {
                "node(s) didn't match instance topology spread constraints (missing required label)"
            }
        }
    }
}

/// `0/5 nodes are available: 3 insufficient memory, 2 node(s) had
/// untolerated taint {gpu: true}.`: reasons by count, most first, then by
/// wording.
pub(super) fn unschedulable_message(nodes: usize, reasons: &BTreeMap<Reason, u32>) -> String {
    let mut parts: Vec<(u32, String)> = reasons
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(reason, count)| (*count, reason.to_string()))
        .collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if parts.is_empty() {
        return format!("0/{nodes} nodes are available.");
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(count, text)| format!("{count} {text}"))
        .collect();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// The first `NoSchedule` or `NoExecute` taint no toleration tolerates.
pub(super) fn untolerated_taint<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
) -> Option<&'t Taint> {
    taints.iter().find(|taint| {
        taint.effect != TaintEffect::PreferNoSchedule
            && !tolerations.iter().any(|t| t.tolerates(taint))
    })
}

/// Whether the node carries every `nodeSelector` pair.
pub(super) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the node passes the required node affinity (none: it does).
pub(super) fn node_affinity_matches(
    affinity: Option<&Affinity>,
    labels: &BTreeMap<String, String>,
) -> bool {
    affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| required.matches(labels))
}

/// An interface name and its major.minor version:
/// `wasi:http/types@0.2.6` → (`wasi:http/types`, `Some((0, 2))`).
fn parse_interface(text: &str) -> (&str, Option<Version>) {
    let Some((name, version)) = text.split_once('@') else {
        return (text, None);
    };
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse().ok());
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (name, major.map(|major| (major, minor)))
}

/// An interface's major.minor version.
type Version = (u64, u64);

/// What a node's host offers: runtime kinds and WIT interfaces. Nodes with
/// the same lists share one, so a profile checks each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Host {
    runtimes: Vec<String>,
    /// Interface name → versions provided (`None`: any). `None` for the
    /// whole map: the node lists no interfaces and counts as providing all.
    provided: Option<HashMap<String, Vec<Option<Version>>>>,
}

impl Host {
    pub fn new(runtimes: &[String], interfaces: &[String]) -> Host {
        let provided = (!interfaces.is_empty()).then(|| {
            let mut provided: HashMap<String, Vec<Option<Version>>> = HashMap::new();
            for interface in interfaces {
                let (name, version) = parse_interface(interface);
                provided.entry(name.to_owned()).or_default().push(version);
            }
            provided
        });
        Host {
            runtimes: runtimes.to_vec(),
            provided,
        }
    }

    /// Whether `import` is provided: same name and, where both give one,
    /// the same major.minor version (`@0.2.6` is satisfied by `@0.2`).
    pub fn provides(&self, import: &str) -> bool {
        let Some(provided) = &self.provided else {
            return true;
        };
        let (name, wanted) = parse_interface(import);
        provided.get(name).is_some_and(|versions| {
            versions.iter().any(|offered| match (wanted, offered) {
                (Some(wanted), Some(offered)) => wanted == *offered,
                _ => true,
            })
        })
    }

    /// The `Runtime` filter.
    pub fn check(&self, runtime: Runtime, imports: &BTreeSet<String>) -> Result<(), Reason> {
        if !self.runtimes.iter().any(|r| r == runtime.as_str()) {
            return Err(Reason::Runtime(runtime));
        }
        match imports.iter().find(|import| !self.provides(import)) {
            Some(missing) => Err(Reason::Interface(missing.clone())),
            None => Ok(()),
        }
    }
}

impl Batch<'_> {
    /// The filters that depend on what is placed, in order: `Fit`, then
    /// `InterInstanceAffinity` (own affinity, own anti-affinity, then that
    /// of the instances already placed, as kube-scheduler), then
    /// `TopologySpread`.
    pub(super) fn check(&self, profile: &Profile, demand: Demand, node: u32) -> Result<(), Dyn> {
        if self.config.on(Plugin::Fit) {
            self.fit(demand, node)?;
        }
        if self.config.on(Plugin::InterInstanceAffinity) {
            self.inter_instance(profile, node)?;
        }
        if self.config.on(Plugin::TopologySpread) {
            self.spread(profile, node)?;
        }
        Ok(())
    }

    fn fit(&self, demand: Demand, node: u32) -> Result<(), Dyn> {
        let (Some(load), Some(info)) = (
            self.loads.get(node as usize),
            self.snapshot.nodes.get(node as usize),
        ) else {
            return Err(Dyn::TooManyInstances);
        };
        if info.max_instances > 0 && load.instances >= info.max_instances {
            return Err(Dyn::TooManyInstances);
        }
        if load.cpu.saturating_add(demand.cpu_millis) > info.allocatable.cpu_millis {
            return Err(Dyn::Cpu);
        }
        if load.memory.saturating_add(demand.memory_bytes) > info.allocatable.memory_bytes {
            return Err(Dyn::Memory);
        }
        Ok(())
    }

    fn inter_instance(&self, profile: &Profile, node: u32) -> Result<(), Dyn> {
        let topology = &self.indexes.topology;
        let counters = &self.indexes.counters;
        if !profile.affinity.is_empty() {
            let mut present = true;
            for counter in profile
                .affinity
                .iter()
                .filter_map(|&id| counters.get(id as usize))
            {
                let domain = topology.domain(node, counter.key);
                if domain == ABSENT {
                    return Err(Dyn::Affinity);
                }
                present &= counter.count(domain) > 0;
            }
            // The first of a group whose affinity points at itself may go
            // anywhere that has the keys, as in kube-scheduler.
            let first_of_group = profile.affinity_self
                && profile
                    .affinity
                    .iter()
                    .filter_map(|&id| counters.get(id as usize))
                    .all(|c| c.total == 0);
            if !present && !first_of_group {
                return Err(Dyn::Affinity);
            }
        }
        for counter in profile
            .anti
            .iter()
            .filter_map(|&id| counters.get(id as usize))
        {
            let domain = topology.domain(node, counter.key);
            if domain != ABSENT && counter.count(domain) > 0 {
                return Err(Dyn::AntiAffinity);
            }
        }
        for carried in profile
            .carried_anti
            .iter()
            .filter_map(|&id| self.indexes.carried.get(id as usize))
        {
            let domain = topology.domain(node, carried.key);
            if domain != ABSENT && carried.count(domain) > 0 {
                return Err(Dyn::ExistingAntiAffinity);
            }
        }
        Ok(())
    }

    fn spread(&self, profile: &Profile, node: u32) -> Result<(), Dyn> {
        for rule in profile.spread.iter().filter(|r| r.hard) {
            let Some(counter) = self.indexes.counters.get(rule.counter as usize) else {
                continue;
            };
            let domain = self.indexes.topology.domain(node, counter.key);
            if domain == ABSENT {
                return Err(Dyn::SpreadLabel);
            }
            let min = counter.floor.as_ref().map_or(0, |f| f.min());
            let skew =
                i64::from(counter.count(domain)) + i64::from(rule.self_match) - i64::from(min);
            if skew > i64::from(rule.max_skew) {
                return Err(Dyn::Spread);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use berth_api::scheduling::TolerationOperator;

    use super::*;

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        }
    }

    #[test]
    fn taints_filter_unless_tolerated_and_prefer_no_schedule_never_filters() {
        let gpu = taint("gpu", "true", TaintEffect::NoSchedule);
        let soft = taint("spot", "", TaintEffect::PreferNoSchedule);
        let evict = taint("maint", "", TaintEffect::NoExecute);
        let taints = [soft.clone(), gpu.clone(), evict.clone()];
        assert_eq!(untolerated_taint(&taints, &[]), Some(&gpu));
        let tolerate_gpu = Toleration {
            key: "gpu".into(),
            value: "true".into(),
            ..Toleration::default()
        };
        assert_eq!(
            untolerated_taint(&taints, std::slice::from_ref(&tolerate_gpu)),
            Some(&evict)
        );
        let everything = Toleration {
            operator: TolerationOperator::Exists,
            ..Toleration::default()
        };
        assert_eq!(untolerated_taint(&taints, &[everything]), None);
        assert_eq!(untolerated_taint(&[soft], &[]), None);
        assert_eq!(
            Reason::Taint {
                key: "gpu".into(),
                value: "true".into()
            }
            .to_string(),
            "node(s) had untolerated taint {gpu: true}"
        );
        assert_eq!(
            Reason::Taint {
                key: "maint".into(),
                value: String::new()
            }
            .to_string(),
            "node(s) had untolerated taint {maint}"
        );
    }

    #[test]
    fn imports_match_on_name_and_major_minor() {
        let host = Host::new(
            &["wasm".into()],
            &[
                "wasi:http/types@0.2".into(),
                "wasi:cli/environment@0.2.3".into(),
                "acme:kv/store".into(),
            ],
        );
        assert!(host.provides("wasi:http/types@0.2.6"));
        assert!(host.provides("wasi:http/types@0.2.0"));
        assert!(!host.provides("wasi:http/types@0.3.0-rc-2025-08-15"));
        assert!(host.provides("wasi:cli/environment@0.2.0"));
        assert!(host.provides("acme:kv/store@1.4.0"));
        assert!(!host.provides("wasi:keyvalue/store@0.2.0"));
        let imports = BTreeSet::from([
            "wasi:http/types@0.2.6".to_owned(),
            "wasi:sockets/tcp@0.2.0".to_owned(),
        ]);
        assert_eq!(
            host.check(Runtime::Wasm, &imports),
            Err(Reason::Interface("wasi:sockets/tcp@0.2.0".into()))
        );
        let old = Host::new(&["wasm".into()], &[]);
        assert_eq!(old.check(Runtime::Wasm, &imports), Ok(()));
        let oci_only = Host::new(&["oci".into()], &[]);
        assert_eq!(
            oci_only.check(Runtime::Wasm, &BTreeSet::new()),
            Err(Reason::Runtime(Runtime::Wasm))
        );
        assert_eq!(
            Reason::Interface("wasi:sockets/tcp@0.2.0".into()).to_string(),
            "node(s) did not provide interface wasi:sockets/tcp@0.2.0"
        );
    }

    #[test]
    fn messages_group_count_and_sort() {
        let reasons = BTreeMap::from([
            (
                Reason::Taint {
                    key: "gpu".into(),
                    value: "true".into(),
                },
                2,
            ),
            (Reason::Dynamic(Dyn::Memory), 3),
            (Reason::NotReady, 0),
        ]);
        assert_eq!(
            unschedulable_message(5, &reasons),
            "0/5 nodes are available: 3 insufficient memory, 2 node(s) had untolerated taint {gpu: true}."
        );
        let tied = BTreeMap::from([(Reason::NotReady, 1), (Reason::Dynamic(Dyn::Cpu), 1)]);
        assert_eq!(
            unschedulable_message(2, &tied),
            "0/2 nodes are available: 1 insufficient cpu, 1 node(s) were not ready."
        );
        assert_eq!(
            unschedulable_message(0, &BTreeMap::new()),
            "0/0 nodes are available."
        );
    }
}
