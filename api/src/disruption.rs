//! `PodDisruptionBudget`: how many of the instances a selector matches may
//! be down at once through voluntary disruptions, as Kubernetes'
//! `policy/v1` PodDisruptionBudget.
//!
//! A voluntary disruption is an eviction (`berth drain`, or a
//! [`crate::wire::Request::Evict`]): the scheduler grants it only if every
//! budget selecting the instance allows one more disruption. Involuntary
//! ones (a node lost, an instance crashing) are not held back, but they
//! count: an instance that is not healthy uses up the budget.
//!
//! The kind is named as in Kubernetes so that manifests carry over; on the
//! command line it is `poddisruptionbudget` or `pdb`. Where berth departs:
//! `spec.selector.matchLabels` must not be empty (Kubernetes' empty
//! selector selects every pod of the namespace), and there is no
//! `unhealthyPodEvictionPolicy` (berth behaves as its default,
//! `IfHealthyBudget`). The arithmetic and the eviction decision live in
//! the scheduler (`scheduler/src/controller/disruption.rs`); why and how in
//! `docs/decisions/0029-drain-and-disruption-budgets.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{LabelSelector, ObjectMeta};
use crate::rollout::IntOrPercent;
use crate::validate::FieldError;

/// How many of the selected instances may be disrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudget {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `PodDisruptionBudget`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: PodDisruptionBudgetSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: PodDisruptionBudgetStatus,
}

impl PodDisruptionBudget {
    /// Whether the budget covers an instance carrying `labels`: every pair
    /// of the selector is among them. An empty selector covers nothing.
    pub fn selects(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        let selector = &self.spec.selector;
        !selector.match_labels.is_empty() && selector.matches(labels)
    }
}

/// `PodDisruptionBudget.spec`: a selector and exactly one of `minAvailable`
/// and `maxUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudgetSpec {
    /// The instances of the namespace the budget covers.
    #[serde(default)]
    pub selector: LabelSelector,
    /// Instances that must stay healthy: a count, or a percentage of the
    /// expected instances (rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrPercent>,
    /// Instances that may be unhealthy: a count, or a percentage of the
    /// expected instances (rounded up, as Kubernetes does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

/// `PodDisruptionBudget.status`, Kubernetes' fields, written by the
/// scheduler when they change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudgetStatus {
    /// Selected instances that are Running, ready and not terminating.
    #[serde(default)]
    pub current_healthy: u64,
    /// Healthy instances the budget requires.
    #[serde(default)]
    pub desired_healthy: u64,
    /// Evictions allowed now: `currentHealthy - desiredHealthy`, at least 0.
    #[serde(default)]
    pub disruptions_allowed: u64,
    /// How many instances there should be: the selected instances, or the
    /// replicas their owners ask for when a percentage or `maxUnavailable`
    /// needs the total (Kubernetes' `expectedPods`).
    #[serde(default)]
    pub expected_instances: u64,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Checks a budget's spec: a non-empty, valid selector and exactly one of
/// `minAvailable` and `maxUnavailable`, each at least 0 and a percentage at
/// most 100%.
pub(crate) fn validate_pdb_spec(spec: &PodDisruptionBudgetSpec) -> Result<(), FieldError> {
    let selector = &spec.selector.match_labels;
    if selector.is_empty() {
        return Err(FieldError::new(
            "spec.selector.matchLabels",
            "must not be empty: a PodDisruptionBudget selects instances by label",
        ));
    }
    crate::validate::validate_labels("spec.selector.matchLabels", selector)?;
    let value = match (spec.min_available, spec.max_unavailable) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "spec.maxUnavailable",
                "may not be set together with spec.minAvailable: give exactly one",
            ));
        }
        (None, None) => {
            return Err(FieldError::new(
                "spec",
                "one of minAvailable and maxUnavailable is required",
            ));
        }
        (Some(min), None) => ("spec.minAvailable", min),
        (None, Some(max)) => ("spec.maxUnavailable", max),
    };
    match value {
        (path, IntOrPercent::Int(n) | IntOrPercent::Percent(n)) if n < 0 => {
            Err(FieldError::new(path, "must be >= 0"))
        }
        (path, IntOrPercent::Percent(p)) if p > 100 => {
            Err(FieldError::new(path, "must be <= 100%"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifests;
    use crate::objects::Object;

    const PDB: &str = "apiVersion: berth.dev/v1
kind: PodDisruptionBudget
metadata:
  name: web-pdb
spec:
  selector:
    matchLabels:
      app: web
";

    fn parse(extra: &str) -> Result<PodDisruptionBudget, String> {
        let text = format!("{PDB}{extra}");
        let objects = parse_manifests("pdb.yaml", &text).map_err(|e| e.to_string())?;
        match objects.into_iter().next() {
            Some(Object::PodDisruptionBudget(pdb)) => Ok(*pdb),
            other => panic!("not a PodDisruptionBudget: {other:?}"),
        }
    }

    #[test]
    fn a_manifest_reads_like_kubernetes() {
        let pdb = parse("  minAvailable: 2\n").unwrap();
        assert_eq!(pdb.spec.min_available, Some(IntOrPercent::Int(2)));
        assert_eq!(pdb.metadata.namespace.as_deref(), Some("default"));
        assert!(pdb.selects(&[("app".into(), "web".into()), ("x".into(), "y".into())].into()));
        assert!(!pdb.selects(&[("app".into(), "db".into())].into()));
        let pdb = parse("  maxUnavailable: \"25%\"\n").unwrap();
        assert_eq!(pdb.spec.max_unavailable, Some(IntOrPercent::Percent(25)));
        let json = serde_json::to_value(&pdb).unwrap();
        assert!(json.get("status").is_none(), "{json}");
        assert_eq!(json["spec"]["maxUnavailable"], "25%");
    }

    #[test]
    fn exactly_one_bound_is_required() {
        assert_eq!(
            parse("").unwrap_err(),
            "invalid manifest pdb.yaml: PodDisruptionBudget default/web-pdb: spec: one of \
             minAvailable and maxUnavailable is required"
        );
        assert_eq!(
            parse("  minAvailable: 1\n  maxUnavailable: 1\n").unwrap_err(),
            "invalid manifest pdb.yaml: PodDisruptionBudget default/web-pdb: spec.maxUnavailable: \
             may not be set together with spec.minAvailable: give exactly one"
        );
    }

    #[test]
    fn bounds_and_selector_are_checked() {
        let error = parse("  minAvailable: -1\n").unwrap_err();
        assert!(
            error.ends_with("spec.minAvailable: must be >= 0"),
            "{error}"
        );
        let error = parse("  maxUnavailable: \"150%\"\n").unwrap_err();
        assert!(
            error.ends_with("spec.maxUnavailable: must be <= 100%"),
            "{error}"
        );
        let error = parse("  minAvailable: lots\n").unwrap_err();
        assert!(error.contains("spec.minAvailable"), "{error}");
        let empty = PDB.replace(
            "    matchLabels:\n      app: web\n",
            "    matchLabels: {}\n",
        );
        let error = parse_manifests("pdb.yaml", &format!("{empty}  minAvailable: 1\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("spec.selector.matchLabels: must not be empty: a PodDisruptionBudget selects instances by label"),
            "{error}"
        );
        assert!(parse("  minAvailable: 0\n").is_ok());
        assert!(parse("  maxUnavailable: \"100%\"\n").is_ok());
    }
}
