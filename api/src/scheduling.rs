//! Scheduling fields of an instance template, shaped as Kubernetes' so that
//! a user's manifests and habits carry over: `nodeSelector`, `affinity`,
//! `tolerations`, `topologySpreadConstraints`, `priorityClassName`, and the
//! node side: `taints` and `unschedulable`.
//!
//! Kubernetes calls the inter-pod terms `podAffinity` and `podAntiAffinity`;
//! berth's unit is the instance, so they read `instanceAffinity` and
//! `instanceAntiAffinity`, and the Kubernetes names are accepted as aliases.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.template.spec.affinity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    /// Rules about node labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    /// Rules to run near instances matching a selector.
    #[serde(
        default,
        alias = "podAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_affinity: Option<InstanceAffinity>,
    /// Rules to run away from instances matching a selector.
    #[serde(
        default,
        alias = "podAntiAffinity",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_anti_affinity: Option<InstanceAffinity>,
}

/// `affinity.nodeAffinity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    /// A node must match one of these terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    /// Nodes matching these terms score their weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms OR-ed together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    /// At least one term must match.
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Requirements AND-ed together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorTerm {
    /// Every requirement must hold.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// A weighted preferred node term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    /// 1 to 100.
    pub weight: i32,
    /// The term.
    pub preference: NodeSelectorTerm,
}

/// `key operator values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// How the label is compared.
    pub operator: Operator,
    /// Values for In/NotIn (one or more), Gt/Lt (exactly one integer);
    /// empty for Exists/DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Operators of a [`Requirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Operator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value, as an integer, is greater than `values[0]`.
    Gt,
    /// The label's value, as an integer, is less than `values[0]`.
    Lt,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        let number = |v: &String| v.parse::<i64>().ok();
        let bound = self.values.first().and_then(number);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v > b),
            Operator::Lt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v < b),
        }
    }
}

impl NodeSelectorTerm {
    /// Whether every requirement holds (an empty term matches nothing, as
    /// in Kubernetes).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.match_expressions.is_empty()
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl NodeSelector {
    /// Whether any term matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector_terms.iter().any(|t| t.matches(labels))
    }
}

/// `instanceAffinity` / `instanceAntiAffinity`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceAffinity {
    /// Terms that must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<AffinityTerm>,
    /// Terms that score their weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedAffinityTerm>,
}

/// Instances matching `labelSelector` (in `namespaces`, default: the
/// instance's own) define the topology domains, by `topologyKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AffinityTerm {
    /// Which instances count.
    #[serde(default)]
    pub label_selector: Selector,
    /// Namespaces to look in; empty means the instance's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Node label that defines a domain (`kubernetes.io/hostname`,
    /// `topology.kubernetes.io/zone`).
    pub topology_key: String,
}

/// A weighted preferred affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedAffinityTerm {
    /// 1 to 100.
    pub weight: i32,
    /// The term (Kubernetes: `podAffinityTerm`).
    #[serde(alias = "podAffinityTerm")]
    pub instance_affinity_term: AffinityTerm,
}

/// A label selector with `matchLabels` and `matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// Every pair must be present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Every requirement must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

impl Selector {
    /// Whether `labels` are selected (an empty selector selects everything).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// A toleration of node taints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Taint key; empty with `Exists` tolerates everything.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// `Equal` (default) or `Exists`.
    #[serde(default)]
    pub operator: TolerationOperator,
    /// Taint value, for `Equal`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Only taints of this effect; none means all effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// For `NoExecute`: how long the instance may stay after the taint
    /// appears; none means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Operators of a [`Toleration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    /// Key and value must equal the taint's.
    #[default]
    Equal,
    /// The key must equal the taint's (any value).
    Exists,
}

impl Toleration {
    /// Whether this toleration tolerates `taint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

/// A node taint: instances that do not tolerate it stay off (or leave).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// What the taint does.
    pub effect: TaintEffect,
    /// When it was added (for `tolerationSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<jiff::Timestamp>,
}

impl Taint {
    /// Parses `key=value:Effect` or `key:Effect`, as `kubectl taint` takes.
    pub fn parse(text: &str) -> Result<Taint, String> {
        let (kv, effect) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("taint {text:?} must read key=value:Effect"))?;
        let effect = match effect {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            other => {
                return Err(format!(
                    "taint {text:?}: unknown effect {other:?}, expected NoSchedule, PreferNoSchedule or NoExecute"
                ));
            }
        };
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(format!("taint {text:?}: the key is empty"));
        }
        Ok(Taint {
            key: key.to_owned(),
            value: value.to_owned(),
            effect,
            time_added: None,
        })
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{:?}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{:?}", self.key, self.value, self.effect)
        }
    }
}

/// Effects of a [`Taint`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TaintEffect {
    /// New instances that do not tolerate it are not placed here.
    NoSchedule,
    /// Placement avoids the node if it can.
    PreferNoSchedule,
    /// As NoSchedule, and running instances that do not tolerate it are
    /// evicted (after their `tolerationSeconds`).
    NoExecute,
}

/// `topologySpreadConstraints[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologySpreadConstraint {
    /// Largest allowed difference between the most and least loaded domain.
    pub max_skew: i32,
    /// Node label defining the domains.
    pub topology_key: String,
    /// What to do when no node keeps the skew.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// Which instances are counted.
    #[serde(default)]
    pub label_selector: Selector,
}

/// `whenUnsatisfiable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum WhenUnsatisfiable {
    /// A filter: nodes that would break the skew are out.
    #[default]
    DoNotSchedule,
    /// A score: placement prefers nodes that keep the skew.
    ScheduleAnyway,
}

/// `Node.spec`: what operators set on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Cordoned: no new instances.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
}

/// Whether an instance may preempt lower-priority ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum PreemptionPolicy {
    /// It may.
    #[default]
    PreemptLowerPriority,
    /// It waits instead.
    Never,
}
