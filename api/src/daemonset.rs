//! `DaemonSet`: one instance of a template on every node that can run it,
//! as Kubernetes' `apps/v1` DaemonSet.
//!
//! A node can run it when it matches the template's `nodeSelector` and
//! required node affinity, tolerates no `NoSchedule`/`NoExecute` taint the
//! template does not tolerate, and offers the template's runtime (`wasm`
//! for a component, `oci` for an image). Cordoned nodes still take one,
//! as in Kubernetes. The controller is `scheduler/src/controller/daemonset.rs`;
//! why berth binds these instances itself is in
//! `docs/decisions/0025-daemonsets.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{LabelSelector, ObjectMeta};
use crate::objects::InstanceTemplate;
use crate::rollout::IntOrPercent;
use crate::validate::FieldError;

/// The label every instance of a DaemonSet carries with the DaemonSet's
/// name, so that `berth get instances -l` finds them.
pub const DAEMONSET_NAME_LABEL: &str = "berth.dev/daemonset-name";

/// One instance per matching node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSet {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `DaemonSet`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: DaemonSetSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: DaemonSetStatus,
}

/// `DaemonSet.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetSpec {
    /// Which instances belong to this DaemonSet; must match the template's
    /// labels.
    pub selector: LabelSelector,
    /// The instance every node runs; its `nodeSelector`, node affinity and
    /// tolerations say which nodes.
    pub template: InstanceTemplate,
    /// How instances move to a new template.
    #[serde(default, skip_serializing_if = "is_default")]
    pub update_strategy: DaemonSetUpdateStrategy,
}

/// `DaemonSet.spec.updateStrategy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetUpdateStrategy {
    /// `RollingUpdate` (the default) or `OnDelete`.
    #[serde(default, rename = "type")]
    pub type_: DaemonSetStrategyType,
    /// Only with `RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDaemonSet>,
}

impl DaemonSetUpdateStrategy {
    /// How many nodes' instances may be unavailable during a rolling
    /// update, out of `desired` (1 by default, at least 1; percentages
    /// round down, as in Kubernetes).
    pub fn max_unavailable(&self, desired: usize) -> usize {
        let desired_i = i64::try_from(desired).unwrap_or(i64::MAX);
        let value = self
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable)
            .unwrap_or(IntOrPercent::Int(1))
            .resolve(desired_i, false);
        usize::try_from(value.max(1)).unwrap_or(1)
    }
}

/// `DaemonSet.spec.updateStrategy.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum DaemonSetStrategyType {
    /// Replace instances of an old template node by node.
    #[default]
    RollingUpdate,
    /// Replace an instance only when someone deletes it.
    OnDelete,
}

/// `DaemonSet.spec.updateStrategy.rollingUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdateDaemonSet {
    /// Nodes whose instance may be unavailable at once during an update:
    /// a number or a percentage of the desired nodes (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

/// `DaemonSet.status`, Kubernetes' counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetStatus {
    /// Nodes that should run an instance.
    #[serde(default)]
    pub desired_number_scheduled: u64,
    /// Nodes that should and do run an instance.
    #[serde(default)]
    pub current_number_scheduled: u64,
    /// Nodes running an instance that should not.
    #[serde(default, skip_serializing_if = "is_default")]
    pub number_misscheduled: u64,
    /// Nodes whose instance is Running and ready.
    #[serde(default)]
    pub number_ready: u64,
    /// Nodes running an instance of the current template.
    #[serde(default)]
    pub updated_number_scheduled: u64,
    /// Nodes whose instance is available.
    #[serde(default)]
    pub number_available: u64,
    /// Nodes that should run an instance and have none available.
    #[serde(default, skip_serializing_if = "is_default")]
    pub number_unavailable: u64,
    /// Nodes that match the template's node selector and runtime but
    /// refuse it (a taint it does not tolerate), each as
    /// `NODE: REASON`; told as `FailedPlacement` events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_placements: Vec<String>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Checks a DaemonSet's own fields; the template's labels and instance
/// spec are checked by the caller, as a Deployment's.
pub(crate) fn validate_daemonset_spec(spec: &DaemonSetSpec) -> Result<(), FieldError> {
    let strategy = &spec.update_strategy;
    let path = "spec.updateStrategy.rollingUpdate";
    match (&strategy.type_, &strategy.rolling_update) {
        (DaemonSetStrategyType::OnDelete, Some(_)) => Err(FieldError::new(
            path,
            "may not be specified when strategy type is OnDelete",
        )),
        (_, Some(rolling)) => match rolling.max_unavailable {
            Some(IntOrPercent::Int(n) | IntOrPercent::Percent(n)) if n < 0 => Err(FieldError::new(
                format!("{path}.maxUnavailable"),
                "must be >= 0",
            )),
            Some(IntOrPercent::Percent(p)) if p > 100 => Err(FieldError::new(
                format!("{path}.maxUnavailable"),
                "must be <= 100%",
            )),
            Some(IntOrPercent::Int(0) | IntOrPercent::Percent(0)) => Err(FieldError::new(
                format!("{path}.maxUnavailable"),
                "must be > 0",
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A DaemonSet's instances run for as long as their node does: its
/// template takes only `restartPolicy: Always`, as a Deployment's.
pub(crate) fn validate_daemonset_restart_policy(
    path: &str,
    spec: &crate::objects::InstanceSpec,
) -> Result<(), FieldError> {
    use crate::lifecycle::RestartPolicy;
    match spec.restart_policy {
        None | Some(RestartPolicy::Always) => Ok(()),
        Some(other) => Err(FieldError::new(
            format!("{path}.restartPolicy"),
            format!(
                "unsupported value {:?}: a DaemonSet takes only \"Always\"",
                other.as_str()
            ),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::manifest::parse_manifests;

    #[test]
    fn restart_policy_errors_name_the_daemonset() {
        let text = "apiVersion: berth.dev/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  \
                    selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      \
                    labels:\n        app: agent\n    spec:\n      component: sha256:ab\n      \
                    restartPolicy: Never\n";
        let error = parse_manifests("ds.yaml", text).unwrap_err().to_string();
        assert!(
            error.ends_with(
                "spec.template.spec.restartPolicy: unsupported value \"Never\": a DaemonSet \
                 takes only \"Always\""
            ),
            "{error}"
        );
    }

    #[test]
    fn max_unavailable_defaults_to_one_and_rounds_down() {
        let mut strategy = DaemonSetUpdateStrategy::default();
        assert_eq!(strategy.max_unavailable(10), 1);
        strategy.rolling_update = Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrPercent::Percent(25)),
        });
        assert_eq!(strategy.max_unavailable(10), 2);
        assert_eq!(strategy.max_unavailable(2), 1, "never below one");
    }

    #[test]
    fn status_is_left_out_when_empty() {
        let status = DaemonSetStatus::default();
        assert!(is_default(&status));
        let json = serde_json::to_value(DaemonSetStatus {
            desired_number_scheduled: 2,
            ..DaemonSetStatus::default()
        })
        .unwrap();
        assert_eq!(json["desiredNumberScheduled"], 2);
        assert!(json.get("numberMisscheduled").is_none());
    }

    #[test]
    fn a_manifest_parses_and_checks_the_strategy() {
        let text = "apiVersion: berth.dev/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  \
                    selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      \
                    labels:\n        app: agent\n    spec:\n      component: sha256:ab\n  \
                    updateStrategy:\n    type: OnDelete\n    rollingUpdate:\n      maxUnavailable: 2\n";
        let error = parse_manifests("ds.yaml", text).unwrap_err().to_string();
        assert!(
            error.contains("spec.updateStrategy.rollingUpdate: may not be specified"),
            "{error}"
        );
        let ok = text.replace("    type: OnDelete\n", "");
        let objects = parse_manifests("ds.yaml", &ok).unwrap();
        assert_eq!(objects.len(), 1);
        let crate::Object::DaemonSet(ds) = &objects[0] else {
            panic!("not a DaemonSet: {objects:?}");
        };
        assert_eq!(ds.spec.update_strategy.max_unavailable(5), 2);
        assert_eq!(ds.metadata.namespace.as_deref(), Some("default"));
    }
}
