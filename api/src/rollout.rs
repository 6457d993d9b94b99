//! How a Deployment moves from one template to the next, as Kubernetes'
//! `strategy`, `minReadySeconds`, `progressDeadlineSeconds`,
//! `revisionHistoryLimit` and `paused`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.strategy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// Limits of a rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// The steps of a `Canary` release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanaryStrategy>,
}

/// `spec.strategy.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum StrategyType {
    /// Replace instances a few at a time, keeping the app available.
    #[default]
    RollingUpdate,
    /// Stop every old instance, then start the new ones.
    Recreate,
    /// Run the new template beside the stable one, sending it a share of
    /// the requests by `canary.steps` (see [`crate::canary`]).
    Canary,
}

/// `spec.strategy.rollingUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    /// How many instances above `replicas` may exist during the update
    /// (default 25%, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrPercent>,
    /// How many of `replicas` may be unavailable during the update
    /// (default 25%, rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

/// A count or a percentage of `replicas` (`1`, `"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    /// An absolute count.
    Int(i64),
    /// A percentage of `replicas`.
    Percent(i64),
}

impl IntOrPercent {
    /// The absolute value for `replicas`, rounding a percentage up or down.
    pub fn resolve(self, replicas: i64, round_up: bool) -> i64 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => {
                let scaled = replicas.saturating_mul(p);
                if round_up {
                    (scaled + 99).div_euclid(100)
                } else {
                    scaled.div_euclid(100)
                }
            }
        }
    }

    /// The value as written.
    pub fn value(self) -> i64 {
        match self {
            IntOrPercent::Int(n) | IntOrPercent::Percent(n) => n,
        }
    }
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Int(n) => write!(f, "{n}"),
            IntOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for IntOrPercent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrPercent::Int(n) => serializer.serialize_i64(*n),
            IntOrPercent::Percent(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IntOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count such as 1 or a percentage such as \"25%\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrPercent, E> {
                Ok(IntOrPercent::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrPercent, E> {
                i64::try_from(v)
                    .map(IntOrPercent::Int)
                    .map_err(|_| E::custom("count too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrPercent, E> {
                let number = v.strip_suffix('%').unwrap_or(v);
                let n = number
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| E::custom(format!("{v:?} is not a count or a percentage")))?;
                Ok(if v.ends_with('%') {
                    IntOrPercent::Percent(n)
                } else {
                    IntOrPercent::Int(n)
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A Deployment condition (`Progressing`, `Available`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentCondition {
    /// `Progressing` or `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason (`NewReplicaSetAvailable`, `ProgressDeadlineExceeded`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the rollout last made progress (for `Progressing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<jiff::Timestamp>,
}

/// One template a Deployment ran, kept for `rollout history` and `undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Revision {
    /// 1, 2, 3... in the order the templates were first rolled out.
    pub revision: u64,
    /// The template's hash (the instances' `berth.dev/template-hash`).
    pub template_hash: String,
    /// The template itself.
    pub template: crate::InstanceTemplate,
    /// What changed, for `rollout history` (`component sha256:…`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change_cause: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_kubernetes() {
        assert_eq!(IntOrPercent::Percent(25).resolve(10, true), 3);
        assert_eq!(IntOrPercent::Percent(25).resolve(10, false), 2);
        assert_eq!(IntOrPercent::Percent(25).resolve(1, true), 1);
        assert_eq!(IntOrPercent::Percent(25).resolve(1, false), 0);
        assert_eq!(IntOrPercent::Int(2).resolve(10, false), 2);
        let parsed: IntOrPercent = serde_json::from_str("\"30%\"").unwrap();
        assert_eq!(parsed, IntOrPercent::Percent(30));
        let parsed: IntOrPercent = serde_json::from_str("3").unwrap();
        assert_eq!(parsed, IntOrPercent::Int(3));
        assert_eq!(
            serde_json::to_string(&IntOrPercent::Percent(30)).unwrap(),
            "\"30%\""
        );
        assert!(serde_json::from_str::<IntOrPercent>("\"lots\"").is_err());
    }
}
