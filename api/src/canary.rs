//! Canary releases: `spec.strategy.type: Canary` with
//! `spec.strategy.canary`, shaped after Argo Rollouts' canary.
//!
//! ```yaml
//! strategy:
//!   type: Canary
//!   canary:
//!     steps:
//!     - setWeight: 10
//!     - pause: {duration: 30s}
//!     - setWeight: 50
//!     - pause: {}            # waits for `berth rollout promote`
//!     analysis:
//!       maxErrorRate: "5%"   # or 0.05
//!       maxTrapRate: "1%"
//!       window: 30s
//!       minRequests: 20
//! ```
//!
//! The scheduler keeps the stable revision's instances, starts canary
//! instances in proportion to the weight, and tells every node the weight
//! so that its ingress splits requests between the two revisions. What the
//! controller did last is in `status.canary` ([`CanaryStatus`]). How it
//! runs is in `docs/decisions/0028-canary.md`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type a Deployment carries once its last canary was
/// promoted.
pub const CONDITION_PROMOTED: &str = "Promoted";

/// The condition type a Deployment carries once its last canary was
/// aborted.
pub const CONDITION_ABORTED: &str = "Aborted";

/// `spec.strategy.canary`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStrategy {
    /// What to do, in order; after the last step the canary is promoted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// When to abort on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,
}

/// One step: exactly one of `setWeight` and `pause`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStep {
    /// Percentage of requests the canary gets, `0..=100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<u32>,
    /// Wait a while, or until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<CanaryPause>,
}

/// `pause: {duration: 30s}`, or `pause: {}` to wait for a promote.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryPause {
    /// How long (`30s`, `2m`, `1h 30m`); absent waits for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// `spec.strategy.canary.analysis`: the thresholds over the canary's
/// requests in the last `window` above which it is aborted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryAnalysis {
    /// Most answers with a 5xx status, as a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Rate>,
    /// Most requests whose component trapped, as a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_trap_rate: Option<Rate>,
    /// How far back to look (default [`DEFAULT_WINDOW`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Fewer requests than this in the window judge nothing (default
    /// [`DEFAULT_MIN_REQUESTS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
}

/// `analysis.window` when left out.
pub const DEFAULT_WINDOW: &str = "30s";

/// `analysis.minRequests` when left out.
pub const DEFAULT_MIN_REQUESTS: u64 = 10;

impl CanaryAnalysis {
    /// The window, default applied; `None` if it does not parse.
    pub fn window(&self) -> Option<jiff::SignedDuration> {
        parse_duration(self.window.as_deref().unwrap_or(DEFAULT_WINDOW))
    }
}

/// A share written as a percentage (`"5%"`) or a fraction (`0.05`),
/// kept in parts per million so that it compares exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    /// Parts per million: 50,000 is 5%.
    pub ppm: u64,
}

impl Rate {
    /// `part / whole` in parts per million (0 for an empty whole).
    pub fn of(part: u64, whole: u64) -> Rate {
        let ppm = u128::from(part)
            .saturating_mul(1_000_000)
            .checked_div(u128::from(whole))
            .unwrap_or(0);
        Rate {
            ppm: u64::try_from(ppm).unwrap_or(u64::MAX),
        }
    }
}

impl fmt::Display for Rate {
    /// As a percentage with one decimal (`5.0%`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.ppm.saturating_add(500) / 1000;
        write!(f, "{}.{}%", tenths / 10, tenths % 10)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Exact: a percentage with up to four decimals.
        let whole = self.ppm / 10_000;
        let rest = self.ppm % 10_000;
        let text = if rest == 0 {
            format!("{whole}%")
        } else {
            let decimals = format!("{rest:04}");
            format!("{whole}.{}%", decimals.trim_end_matches('0'))
        };
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction such as 0.05 or a percentage such as \"5%\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Rate, E> {
                fraction(v).ok_or_else(|| E::custom(format!("{v} is not between 0 and 1")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                match v {
                    0 => Ok(Rate { ppm: 0 }),
                    1 => Ok(Rate { ppm: 1_000_000 }),
                    _ => Err(E::custom(format!(
                        "{v} is not between 0 and 1 (write a percentage as \"{v}%\")"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("{v} is not between 0 and 1"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                parse_rate(v).ok_or_else(|| {
                    E::custom(format!(
                        "{v:?} is not a percentage (\"5%\") or a fraction (0.05)"
                    ))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `0.05` as a rate, if it is a number between 0 and 1.
fn fraction(v: f64) -> Option<Rate> {
    if !(0.0..=1.0).contains(&v) {
        return None;
    }
    let ppm = (v * 1_000_000.0).round();
    // In range: 0 ..= 1,000,000, checked above.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    Some(Rate { ppm: ppm as u64 })
}

/// `"5%"`, `"0.5%"` or `"0.05"` as a rate.
fn parse_rate(text: &str) -> Option<Rate> {
    let text = text.trim();
    match text.strip_suffix('%') {
        Some(percent) => {
            let v: f64 = percent.trim().parse().ok()?;
            fraction(v / 100.0)
        }
        None => fraction(text.parse().ok()?),
    }
}

/// `30s`, `2m`, `1h 30m` (jiff's friendly format, or ISO 8601) as a
/// duration; negative ones are refused.
pub fn parse_duration(text: &str) -> Option<jiff::SignedDuration> {
    let duration: jiff::SignedDuration = text.trim().parse().ok()?;
    (!duration.is_negative()).then_some(duration)
}

/// `status.canary`: where the canary stands, written by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStatus {
    /// The template hash of the revision serving as stable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stable_hash: String,
    /// The template hash of the canary revision; empty when none runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub canary_hash: String,
    /// The index of the current step in `steps` (`steps.len()` once past
    /// the last).
    #[serde(default)]
    pub step: u32,
    /// The percentage of requests the canary gets now.
    #[serde(default)]
    pub weight: u32,
    /// When the current step began (a timed pause counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started: Option<jiff::Timestamp>,
    /// A `berth rollout promote` not yet acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<Promotion>,
    /// A `berth rollout abort` asked for, or an abort decided: the canary
    /// revision `canary_hash` stays stopped until the template changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
    /// Why it stands as it does (`Promoted`, `AnalysisFailed`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Details, with the figures of an analysis.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What a `berth rollout promote` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Promotion {
    /// End the current pause (`berth rollout promote`).
    Step,
    /// Skip every remaining step (`--full`).
    Full,
}

/// Checks `spec.strategy.canary` against `spec.strategy.type`: present
/// only for `Canary`, each step exactly one of `setWeight` (at most 100)
/// and `pause`, durations and the analysis window readable.
pub(crate) fn validate(
    strategy: &crate::rollout::DeploymentStrategy,
) -> Result<(), crate::validate::FieldError> {
    use crate::rollout::StrategyType;
    use crate::validate::FieldError;
    let path = "spec.strategy.canary";
    let Some(canary) = &strategy.canary else {
        return Ok(());
    };
    if strategy.type_ != StrategyType::Canary {
        return Err(FieldError::new(
            path,
            "may be specified only when strategy type is Canary",
        ));
    }
    if strategy.rolling_update.is_some() {
        return Err(FieldError::new(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy type is Canary",
        ));
    }
    for (index, step) in canary.steps.iter().enumerate() {
        let at = format!("{path}.steps[{index}]");
        match (step.set_weight, &step.pause) {
            (Some(weight), None) if weight > 100 => {
                return Err(FieldError::new(
                    format!("{at}.setWeight"),
                    "must be between 0 and 100",
                ));
            }
            (Some(_), None) => {}
            (None, Some(pause)) => {
                if let Some(text) = &pause.duration
                    && parse_duration(text).is_none()
                {
                    return Err(FieldError::new(
                        format!("{at}.pause.duration"),
                        format!("{text:?} is not a duration such as 30s or 2m"),
                    ));
                }
            }
            _ => {
                return Err(FieldError::new(
                    at,
                    "must set exactly one of setWeight and pause",
                ));
            }
        }
    }
    if let Some(analysis) = &canary.analysis
        && analysis.window().is_none_or(|w| w.is_zero())
    {
        return Err(FieldError::new(
            format!("{path}.analysis.window"),
            "must be a positive duration such as 30s",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_percentages_or_fractions() {
        let read = |yaml: &str| serde_json::from_str::<Rate>(yaml);
        assert_eq!(read("\"5%\"").unwrap(), Rate { ppm: 50_000 });
        assert_eq!(read("0.05").unwrap(), Rate { ppm: 50_000 });
        assert_eq!(read("\"0.5%\"").unwrap(), Rate { ppm: 5_000 });
        assert_eq!(read("\"0.05\"").unwrap(), Rate { ppm: 50_000 });
        assert_eq!(read("0").unwrap(), Rate { ppm: 0 });
        assert!(read("5").is_err());
        assert!(read("\"150%\"").is_err());
        assert!(read("-0.1").is_err());
        assert_eq!(
            serde_json::to_string(&Rate { ppm: 50_000 }).unwrap(),
            "\"5%\""
        );
        assert_eq!(
            serde_json::to_string(&Rate { ppm: 1_250 }).unwrap(),
            "\"0.125%\""
        );
        assert_eq!(Rate::of(1, 8).to_string(), "12.5%");
        assert_eq!(Rate::of(3, 0), Rate { ppm: 0 });
    }

    #[test]
    fn validation_names_the_field() {
        use crate::rollout::{DeploymentStrategy, RollingUpdate, StrategyType};
        let strategy = |steps: Vec<CanaryStep>| DeploymentStrategy {
            type_: StrategyType::Canary,
            rolling_update: None,
            canary: Some(CanaryStrategy {
                steps,
                analysis: None,
            }),
        };
        let weight = |w| CanaryStep {
            set_weight: Some(w),
            pause: None,
        };
        let pause = |d: &str| CanaryStep {
            set_weight: None,
            pause: Some(CanaryPause {
                duration: Some(d.into()),
            }),
        };
        let error = |s: &DeploymentStrategy| {
            let e = validate(s).unwrap_err();
            format!("{}: {}", e.path, e.message)
        };
        assert!(validate(&strategy(vec![weight(10), pause("30s")])).is_ok());
        assert_eq!(
            error(&strategy(vec![weight(101)])),
            "spec.strategy.canary.steps[0].setWeight: must be between 0 and 100"
        );
        assert_eq!(
            error(&strategy(vec![weight(5), pause("later")])),
            "spec.strategy.canary.steps[1].pause.duration: \"later\" is not a duration such as 30s or 2m"
        );
        assert_eq!(
            error(&strategy(vec![CanaryStep::default()])),
            "spec.strategy.canary.steps[0]: must set exactly one of setWeight and pause"
        );
        let mut rolling = strategy(vec![]);
        rolling.type_ = StrategyType::RollingUpdate;
        assert_eq!(
            error(&rolling),
            "spec.strategy.canary: may be specified only when strategy type is Canary"
        );
        let mut both = strategy(vec![]);
        both.rolling_update = Some(RollingUpdate::default());
        assert!(validate(&both).is_err());
        let mut analysis = strategy(vec![]);
        if let Some(c) = analysis.canary.as_mut() {
            c.analysis = Some(CanaryAnalysis {
                window: Some("0s".into()),
                ..CanaryAnalysis::default()
            });
        }
        assert_eq!(
            error(&analysis),
            "spec.strategy.canary.analysis.window: must be a positive duration such as 30s"
        );
    }

    #[test]
    fn canary_routes_and_patches_cross_the_wire() {
        use crate::wire::{Assignments, CanaryRoute, DeploymentPatch};
        let assignments = Assignments {
            canaries: vec![CanaryRoute {
                namespace: "default".into(),
                deployment: "web".into(),
                revision: "0123456789".into(),
                weight: 10,
                instances: vec!["u1".into()],
            }],
            ..Assignments::default()
        };
        let bytes = postcard::to_stdvec(&assignments).unwrap();
        assert_eq!(
            postcard::from_bytes::<Assignments>(&bytes).unwrap(),
            assignments
        );
        let patch = DeploymentPatch {
            promote: Some(Promotion::Full),
            abort: true,
            ..DeploymentPatch::default()
        };
        let bytes = postcard::to_stdvec(&patch).unwrap();
        assert_eq!(
            postcard::from_bytes::<DeploymentPatch>(&bytes).unwrap(),
            patch
        );
    }

    #[test]
    fn durations_read_in_the_friendly_form() {
        assert_eq!(
            parse_duration("30s"),
            Some(jiff::SignedDuration::from_secs(30))
        );
        assert_eq!(
            parse_duration("1m 30s"),
            Some(jiff::SignedDuration::from_secs(90))
        );
        assert_eq!(parse_duration("soon"), None);
    }
}
