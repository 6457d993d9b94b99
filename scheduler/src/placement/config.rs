//! The placement section of the scheduler's config file: which plugins run,
//! how much each score weighs, the resource strategy and how many nodes a
//! placement looks at.
//!
//! ```yaml
//! placement:
//!   strategy: MostAllocated
//!   percentageOfNodesToScore: 0   # 0: kube-scheduler's adaptive default
//!   plugins:
//!     ArtifactLocality: { enabled: false }
//!     NodeAffinity: { weight: 5 }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How the `Fit` plugin scores the room a node has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Strategy {
    /// Prefer the emptiest node: spreads load (kube-scheduler's default).
    #[default]
    LeastAllocated,
    /// Prefer the fullest node that still fits: bin-packs, leaving whole
    /// nodes free.
    MostAllocated,
    /// Prefer the node whose cpu and memory stay equally used.
    Balanced,
}

/// One plugin's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginConfig {
    /// Whether the plugin runs (filter and score alike).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The weight of its score; only for plugins that score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

fn enabled_by_default() -> bool {
    true
}

/// `placement:` in the scheduler's config file. The default runs every
/// plugin with its default weight.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// How `Fit` scores.
    pub strategy: Strategy,
    /// Share of the nodes (1 to 100) a placement stops at once that many
    /// feasible nodes are found; 0 picks kube-scheduler's adaptive share
    /// (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    /// Per plugin name: enabled or not, and weight.
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// Why a placement config is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A plugin name no plugin has.
    #[error(
        "placement.plugins.{name}: unknown plugin, expected one of {}",
        Plugin::names()
    )]
    UnknownPlugin {
        /// The name given.
        name: String,
    },
    /// A weight for a plugin that only filters.
    #[error("placement.plugins.{name}.weight: {name} only filters and has no score to weigh")]
    NotAScore {
        /// The plugin.
        name: String,
    },
    /// `percentageOfNodesToScore` above 100.
    #[error("placement.percentageOfNodesToScore: {value} is above 100")]
    Percentage {
        /// The value given.
        value: u32,
    },
}

/// Every built-in plugin. A plugin may filter, score, or both, as in
/// kube-scheduler; disabling it turns off both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plugin {
    /// Filter: the node is Ready and not cordoned.
    NodeConditions,
    /// Filter: the node is the one the template names (`nodeName`).
    NodeName,
    /// Filter: `NoSchedule`/`NoExecute` taints are tolerated. Score:
    /// fewer untolerated `PreferNoSchedule` taints.
    TaintToleration,
    /// Filter: the node carries every `nodeSelector` label.
    NodeSelector,
    /// Filter: required node affinity. Score: preferred terms.
    NodeAffinity,
    /// Filter: the runtime kind is offered and every import provided.
    Runtime,
    /// Filter: cpu, memory and instance count fit. Score: the strategy.
    Fit,
    /// Filter: required inter-instance affinity and anti-affinity (also
    /// that of instances already placed). Score: preferred terms.
    InterInstanceAffinity,
    /// Filter: `DoNotSchedule` spread constraints. Score: `ScheduleAnyway`.
    TopologySpread,
    /// Score: the node already holds the compiled component.
    ArtifactLocality,
}

impl Plugin {
    /// All plugins, filters in the order they run.
    pub const ALL: [Plugin; 10] = [
        Plugin::NodeConditions,
        Plugin::NodeName,
        Plugin::TaintToleration,
        Plugin::NodeSelector,
        Plugin::NodeAffinity,
        Plugin::Runtime,
        Plugin::Fit,
        Plugin::InterInstanceAffinity,
        Plugin::TopologySpread,
        Plugin::ArtifactLocality,
    ];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Plugin::NodeConditions => "NodeConditions",
            Plugin::NodeName => "NodeName",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeSelector => "NodeSelector",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::Runtime => "Runtime",
            Plugin::Fit => "Fit",
            Plugin::InterInstanceAffinity => "InterInstanceAffinity",
            Plugin::TopologySpread => "TopologySpread",
            Plugin::ArtifactLocality => "ArtifactLocality",
        }
    }

    /// The plugin of that name.
    pub fn from_name(name: &str) -> Option<Plugin> {
        Plugin::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The weight of its score by default; `None` for filter-only plugins.
    /// As kube-scheduler's defaults: taints weigh 3, affinity and spread 2.
    pub fn default_weight(self) -> Option<u32> {
        match self {
            Plugin::NodeConditions | Plugin::NodeName | Plugin::NodeSelector | Plugin::Runtime => {
                None
            }
            Plugin::TaintToleration => Some(3),
            Plugin::NodeAffinity | Plugin::InterInstanceAffinity | Plugin::TopologySpread => {
                Some(2)
            }
            Plugin::Fit | Plugin::ArtifactLocality => Some(1),
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    fn names() -> String {
        Plugin::ALL.map(Plugin::name).join(", ")
    }
}

impl fmt::Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated config: per plugin on/off and weight.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resolved {
    pub enabled: [bool; Plugin::ALL.len()],
    pub weights: [f64; Plugin::ALL.len()],
    pub strategy: Strategy,
    pub percentage: u32,
}

impl Resolved {
    /// Every plugin on, default weights.
    pub fn all() -> Resolved {
        Resolved {
            enabled: [true; Plugin::ALL.len()],
            weights: Plugin::ALL.map(|p| f64::from(p.default_weight().unwrap_or(0))),
            strategy: Strategy::default(),
            percentage: 0,
        }
    }

    pub fn new(config: &Config) -> Result<Resolved, ConfigError> {
        if config.percentage_of_nodes_to_score > 100 {
            return Err(ConfigError::Percentage {
                value: config.percentage_of_nodes_to_score,
            });
        }
        let Resolved {
            mut enabled,
            mut weights,
            ..
        } = Resolved::all();
        for (name, settings) in &config.plugins {
            let plugin = Plugin::from_name(name)
                .ok_or_else(|| ConfigError::UnknownPlugin { name: name.clone() })?;
            if let Some(slot) = enabled.get_mut(plugin.index()) {
                *slot = settings.enabled;
            }
            if let Some(weight) = settings.weight {
                if plugin.default_weight().is_none() {
                    return Err(ConfigError::NotAScore { name: name.clone() });
                }
                if let Some(slot) = weights.get_mut(plugin.index()) {
                    *slot = f64::from(weight);
                }
            }
        }
        Ok(Resolved {
            enabled,
            weights,
            strategy: config.strategy,
            percentage: config.percentage_of_nodes_to_score,
        })
    }

    pub fn on(&self, plugin: Plugin) -> bool {
        self.enabled.get(plugin.index()).copied().unwrap_or(false)
    }

    /// The weight of an enabled plugin's score, 0 when disabled.
    pub fn weight(&self, plugin: Plugin) -> f64 {
        if self.on(plugin) {
            self.weights.get(plugin.index()).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }

    /// How many feasible nodes a placement looks for before it stops
    /// (kube-scheduler's `numFeasibleNodesToFind`).
    pub fn feasible_to_find(&self, nodes: usize) -> usize {
        const MIN_FEASIBLE: usize = 100;
        const MIN_PERCENTAGE: usize = 5;
        if nodes < MIN_FEASIBLE || self.percentage >= 100 {
            return nodes;
        }
        let percentage = if self.percentage == 0 {
            50usize.saturating_sub(nodes / 125).max(MIN_PERCENTAGE)
        } else {
            self.percentage as usize
        };
        (nodes * percentage / 100).max(MIN_FEASIBLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn default_runs_everything_with_default_weights() {
        let resolved = Resolved::new(&Config::default()).unwrap();
        assert!(Plugin::ALL.iter().all(|p| resolved.on(*p)));
        assert_eq!(resolved.weight(Plugin::TaintToleration), 3.0);
        assert_eq!(resolved.weight(Plugin::Fit), 1.0);
        assert_eq!(resolved.weight(Plugin::NodeName), 0.0);
        assert_eq!(resolved.strategy, Strategy::LeastAllocated);
    }

    #[test]
    fn reads_camel_case_fields() {
        let config = parse(
            r#"{"strategy": "MostAllocated", "percentageOfNodesToScore": 30,
                "plugins": {"ArtifactLocality": {"enabled": false}, "NodeAffinity": {"weight": 7}}}"#,
        );
        let resolved = Resolved::new(&config).unwrap();
        assert_eq!(resolved.strategy, Strategy::MostAllocated);
        assert!(!resolved.on(Plugin::ArtifactLocality));
        assert_eq!(resolved.weight(Plugin::ArtifactLocality), 0.0);
        assert_eq!(resolved.weight(Plugin::NodeAffinity), 7.0);
        assert_eq!(resolved.feasible_to_find(1000), 300);
    }

    #[test]
    fn refuses_unknown_plugins_weights_of_filters_and_big_percentages() {
        let err =
            Resolved::new(&parse(r#"{"plugins": {"Magic": {"enabled": false}}}"#)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "placement.plugins.Magic: unknown plugin, expected one of NodeConditions, NodeName,"
            ),
            "{err}"
        );
        let err = Resolved::new(&parse(r#"{"plugins": {"NodeName": {"weight": 2}}}"#)).unwrap_err();
        assert_eq!(
            err,
            ConfigError::NotAScore {
                name: "NodeName".into()
            }
        );
        let err = Resolved::new(&parse(r#"{"percentageOfNodesToScore": 101}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "placement.percentageOfNodesToScore: 101 is above 100"
        );
        assert!(serde_json::from_str::<Config>(r#"{"strategy": "Random"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"percentage": 3}"#).is_err());
    }

    #[test]
    fn adaptive_share_follows_kube_scheduler() {
        let resolved = Resolved::new(&Config::default()).unwrap();
        assert_eq!(resolved.feasible_to_find(50), 50);
        assert_eq!(resolved.feasible_to_find(100), 100);
        assert_eq!(resolved.feasible_to_find(1000), 420);
        assert_eq!(resolved.feasible_to_find(5000), 500);
        assert_eq!(resolved.feasible_to_find(10_000), 500);
        let all = Resolved::new(&Config {
            percentage_of_nodes_to_score: 100,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(all.feasible_to_find(10_000), 10_000);
    }
}
