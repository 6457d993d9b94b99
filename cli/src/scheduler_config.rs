//! The scheduler's config file (`berth scheduler --config-file FILE`):
//!
//! ```yaml
//! apiVersion: berth.dev/v1
//! kind: SchedulerConfiguration
//! nodeGraceSeconds: 5
//! placement:
//!   strategy: MostAllocated
//!   plugins:
//!     ArtifactLocality: { enabled: false }
//! ```
//!
//! Flags given on the command line win over the file.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use berth_api::API_VERSION;
use serde::Deserialize;

/// The file's contents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerFile {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `SchedulerConfiguration`.
    pub kind: String,
    /// Seconds a node may be silent before it turns NotReady.
    #[serde(default)]
    pub node_grace_seconds: Option<u64>,
    /// Placement plugins, weights and strategy.
    #[serde(default)]
    pub placement: berth_scheduler::placement::Config,
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<SchedulerFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read scheduler config {}", path.display()))?;
    // serde_yaml_ng's message already names the field path and position.
    let file: SchedulerFile = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow::anyhow!("invalid scheduler config {}: {e}", path.display()))?;
    if file.api_version != API_VERSION {
        bail!(
            "invalid scheduler config {}: apiVersion: unsupported apiVersion {:?}, expected {API_VERSION:?}",
            path.display(),
            file.api_version
        );
    }
    if file.kind != "SchedulerConfiguration" {
        bail!(
            "invalid scheduler config {}: kind: must be \"SchedulerConfiguration\"",
            path.display()
        );
    }
    berth_scheduler::placement::Framework::new(&file.placement)
        .map_err(|e| anyhow::anyhow!("invalid scheduler config {}: {e}", path.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_scheduler::placement::Strategy;

    fn load_text(text: &str) -> Result<SchedulerFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.yaml");
        std::fs::write(&path, text).unwrap();
        load(&path).map_err(|e| {
            anyhow::anyhow!(e.to_string().replace(&path.display().to_string(), "FILE"))
        })
    }

    #[test]
    fn a_valid_file_sets_placement_and_grace() {
        let file = load_text(
            "apiVersion: berth.dev/v1\nkind: SchedulerConfiguration\nnodeGraceSeconds: 9\nplacement:\n  strategy: MostAllocated\n  plugins:\n    ArtifactLocality: {enabled: false}\n",
        )
        .unwrap();
        assert_eq!(file.node_grace_seconds, Some(9));
        assert_eq!(file.placement.strategy, Strategy::MostAllocated);
        assert!(!file.placement.plugins["ArtifactLocality"].enabled);
    }

    #[test]
    fn bad_files_name_the_field() {
        let head = "apiVersion: berth.dev/v1\nkind: SchedulerConfiguration\n";
        let err = load_text(&format!("{head}placement:\n  strategy: Random\n")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid scheduler config FILE: placement.strategy: unknown variant `Random`"
            ),
            "{err}"
        );
        let err =
            load_text(&format!("{head}placement:\n  plugins:\n    Magic: {{}}\n")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid scheduler config FILE: placement.plugins.Magic: unknown plugin"
            ),
            "{err}"
        );
        let err = load_text(&format!("{head}nodeGrace: 3\n")).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `nodeGrace`"),
            "{err}"
        );
        let err = load_text("apiVersion: v1\nkind: SchedulerConfiguration\n").unwrap_err();
        assert!(err.to_string().contains("apiVersion"), "{err}");
    }
}
