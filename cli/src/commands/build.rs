//! `berth build [--dir DIR] [--debug]`: builds a Cargo project for
//! `wasm32-wasip2` and names the component it made.
//!
//! Cargo runs with its own output on stderr, as a user would see it, and
//! its JSON messages on stdout, read here to find the `.wasm` the
//! project's own package produced (wherever `CARGO_TARGET_DIR` puts it).
//! The file must be a valid component; its digest is the one `apply`
//! would upload it under. Release is the default: components are copied
//! to every node that runs them. `CARGO_NET_OFFLINE=true` builds offline.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use berth_scheduler::admission::validate_component;
use sha2::{Digest as _, Sha256};

/// The target components are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// What `berth build` is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project's directory (its `Cargo.toml`).
    pub dir: PathBuf,
    /// Cargo's dev profile instead of release.
    pub debug: bool,
}

/// What a component serves, from the interfaces it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Exports `wasi:http/incoming-handler`: a service.
    Http,
    /// Exports `wasi:cli/run` only: a command.
    Command,
}

/// A component `berth build` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The Cargo target's name: the package's, for its main binary.
    pub name: String,
    /// The `.wasm` file.
    pub path: PathBuf,
    /// `sha256:` and the file's hex digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// What it serves.
    pub world: World,
}

/// Builds the project in `options.dir`.
pub fn build(options: &Options) -> Result<Built> {
    let manifest = options.dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no Cargo.toml in {}: run berth build in a project (berth new NAME makes one) or pass --dir",
            options.dir.display()
        );
    }
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", manifest.display()))?;
    let mut command = Command::new("cargo");
    command
        .current_dir(&options.dir)
        .args(["build", "--target", TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !options.debug {
        command.arg("--release");
    }
    let mut child = command
        .spawn()
        .context("cannot run cargo: is the Rust toolchain installed (https://rustup.rs)?")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut wasm = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo's output")?;
        if let Some(artifact) = component_artifact(&line, &manifest) {
            wasm.push(artifact);
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); its messages are above");
    }
    let (name, path) = match wasm.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "cargo built no .wasm for {}: the package needs a binary (src/main.rs) or a cdylib",
            manifest.display()
        ),
        many => bail!(
            "the package builds several components ({}); berth build takes one",
            many.iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    inspect(&name, &path)
}

/// Reads and checks a built component.
pub fn inspect(name: &str, path: &Path) -> Result<Built> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    validate_component(&bytes).map_err(|e| anyhow::anyhow!("{} {e}", path.display()))?;
    let world = world(&bytes).with_context(|| {
        format!(
            "{} exports neither wasi:http/incoming-handler nor wasi:cli/run",
            path.display()
        )
    })?;
    Ok(Built {
        name: name.to_owned(),
        path: path.to_owned(),
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        world,
    })
}

/// The target name and `.wasm` file of a `compiler-artifact` message for
/// the package of `manifest` (binaries and cdylibs).
fn component_artifact(line: &str, manifest: &Path) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let from = PathBuf::from(message.get("manifest_path")?.as_str()?);
    if from.canonicalize().ok()? != manifest {
        return None;
    }
    let target = message.get("target")?;
    let kinds = target.get("kind")?.as_array()?;
    if !kinds
        .iter()
        .any(|k| k.as_str() == Some("bin") || k.as_str() == Some("cdylib"))
    {
        return None;
    }
    let name = target.get("name")?.as_str()?.to_owned();
    let file = message
        .get("filenames")?
        .as_array()?
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wasm"))?;
    Some((name, PathBuf::from(file)))
}

/// What the component exports at its top level: a service or a command.
pub fn world(bytes: &[u8]) -> Option<World> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let (mut http, mut run) = (false, false);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                for export in exports {
                    let name = export.ok()?.name.name;
                    http |= name.starts_with("wasi:http/incoming-handler@");
                    run |= name.starts_with("wasi:cli/run@");
                }
            }
            _ => {}
        }
    }
    match (http, run) {
        (true, _) => Some(World::Http),
        (false, true) => Some(World::Command),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_come_from_top_level_exports() {
        let read = |path: &str| std::fs::read(path).unwrap();
        assert_eq!(
            world(&read(berth_test_programs::HELLO_SDK)),
            Some(World::Http)
        );
        assert_eq!(world(&read(berth_test_programs::HELLO)), Some(World::Http));
        assert_eq!(
            world(&read(berth_test_programs::JOB_SDK)),
            Some(World::Command)
        );
        assert_eq!(world(b"not wasm"), None);
    }

    #[test]
    fn artifacts_of_other_packages_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "").unwrap();
        let manifest = manifest.canonicalize().unwrap();
        let message = |from: &Path, kind: &str| {
            serde_json::json!({
                "reason": "compiler-artifact",
                "manifest_path": from,
                "target": {"name": "greeter", "kind": [kind]},
                "filenames": ["/t/greeter.wasm"],
            })
            .to_string()
        };
        assert_eq!(
            component_artifact(&message(&manifest, "bin"), &manifest),
            Some(("greeter".into(), PathBuf::from("/t/greeter.wasm")))
        );
        assert_eq!(
            component_artifact(&message(&manifest, "lib"), &manifest),
            None
        );
        assert_eq!(
            component_artifact(
                &message(Path::new("/elsewhere/Cargo.toml"), "bin"),
                &manifest
            ),
            None
        );
        assert_eq!(component_artifact("Compiling", &manifest), None);
    }
}
