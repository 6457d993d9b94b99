//! `berth apply -f FILE|DIR|-`: upload components, then create or update
//! objects.
//!
//! A directory stands for its `.yaml` and `.yml` files (not its
//! subdirectories), in name order; `-` for standard input, named `<stdin>`
//! in messages. A component given as a digest (`sha256:...`, as `get -o
//! yaml` prints it) is taken to be on the scheduler already, so the output
//! of `get` applies back unchanged.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use berth_api::Object;
use berth_api::manifest::{InvalidManifest, ManifestError, parse_manifests};
use berth_api::wire::{ApplyOutcome, Request, Response};
use berth_scheduler::admission::validate_component;
use sha2::{Digest, Sha256};

use crate::client::Client;

/// A component referenced by a manifest, read and checked.
struct Component {
    digest: String,
    bytes: Vec<u8>,
}

/// One manifest's text, with the name messages give it and the directory
/// its components are read from.
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// Where relative component paths start.
    pub base: PathBuf,
    /// The YAML.
    pub text: String,
}

/// Reads `-f` arguments: files, directories (their `.yaml`/`.yml` files,
/// sorted) and `-` (standard input, once).
pub fn sources(args: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            if sources.iter().any(|s: &Source| s.name == STDIN) {
                bail!("-f - given twice: standard input can be read once");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read <stdin>")?;
            sources.push(Source {
                name: STDIN.into(),
                base: PathBuf::from("."),
                text,
            });
        } else if arg.is_dir() {
            let entries = std::fs::read_dir(arg)
                .with_context(|| format!("cannot read directory {}", arg.display()))?;
            let mut files = Vec::new();
            for entry in entries {
                let path = entry
                    .with_context(|| format!("cannot read directory {}", arg.display()))?
                    .path();
                let manifest = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if manifest && path.is_file() {
                    files.push(path);
                }
            }
            if files.is_empty() {
                bail!("no .yaml or .yml files in directory {}", arg.display());
            }
            files.sort();
            for file in &files {
                sources.push(read_file(file)?);
            }
        } else {
            sources.push(read_file(arg)?);
        }
    }
    Ok(sources)
}

/// How messages name standard input.
const STDIN: &str = "<stdin>";

fn read_file(path: &Path) -> Result<Source> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
        file: name.clone(),
        error,
    })?;
    Ok(Source {
        name,
        base: path.parent().unwrap_or(Path::new(".")).to_owned(),
        text,
    })
}

fn component_error(file: &str, object: &Object, message: String) -> ManifestError {
    ManifestError::from(InvalidManifest {
        file: file.to_owned(),
        document: 0,
        object: Some(object.describe()),
        path: Some("spec.template.spec.component".into()),
        message,
        location: None,
    })
}

/// Whether `reference` is already a digest (`sha256:` and 64 hex digits).
fn is_digest(reference: &str) -> bool {
    reference
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads and checks the component a Deployment or Job names, relative to
/// its manifest's directory.
fn read_component(
    source: &Source,
    object: &Object,
    reference: &str,
) -> Result<Component, ManifestError> {
    let file = source.name.as_str();
    let path: PathBuf = source.base.join(reference.trim_start_matches("./"));
    let bytes = std::fs::read(&path).map_err(|e| {
        component_error(
            file,
            object,
            format!("cannot read component {}: {e}", path.display()),
        )
    })?;
    validate_component(&bytes)
        .map_err(|e| component_error(file, object, format!("{} {e}", path.display())))?;
    Ok(Component {
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        bytes,
    })
}

/// Objects with the name of the file each came from.
pub type Loaded = Vec<(String, Object)>;

/// Loads every source, resolving components to digests. Nothing is sent
/// until every file and component is known to be good.
fn load(sources: &[Source]) -> Result<(Loaded, Vec<Component>)> {
    let mut objects = Vec::new();
    let mut components: Vec<Component> = Vec::new();
    for source in sources {
        for mut object in parse_manifests(&source.name, &source.text)? {
            if let Some(template) = object.template()
                && template.spec.image.is_none()
            {
                let reference = template.spec.component.clone();
                // `oci://` components are resolved by `push::resolve_components`.
                if is_digest(&reference) || berth_node::oci::component::is_oci(&reference) {
                    objects.push((source.name.clone(), object));
                    continue;
                }
                let component = read_component(source, &object, &reference)?;
                if let Some(template) = object.template_mut() {
                    template.spec.component = component.digest.clone();
                }
                if !components.iter().any(|c| c.digest == component.digest) {
                    components.push(component);
                }
            }
            objects.push((source.name.clone(), object));
        }
    }
    Ok((objects, components))
}

/// The objects of `sources` as `apply` would send them, each with the name
/// of its file: components resolved to digests, nothing uploaded
/// (`berth diff`).
pub fn objects(sources: &[Source]) -> Result<Loaded> {
    Ok(load(sources)?.0)
}

/// Applies the manifests of `sources` through `client`.
pub async fn apply(client: &Client, sources: &[Source]) -> Result<Vec<ApplyOutcome>> {
    let (mut objects, components) = load(sources)?;
    crate::commands::push::resolve_components(&mut objects).await?;
    if objects.is_empty() {
        bail!(
            "no objects found in {}",
            sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for component in components {
        client
            .call(&Request::PutBlob {
                digest: component.digest,
                bytes: component.bytes,
            })
            .await?;
    }
    let request = Request::Apply {
        objects: objects.iter().map(|(_, o)| o.to_json()).collect(),
    };
    match client.call(&request).await {
        Ok(Response::Applied(outcomes)) => Ok(outcomes),
        Ok(other) => bail!("unexpected answer {other:?}"),
        // Name the file of the object the scheduler refused.
        Err(e) => match objects
            .iter()
            .find(|(_, o)| e.to_string().starts_with(&format!("{}:", o.describe())))
        {
            Some((file, _)) => bail!("{file}: {e}"),
            None => Err(e),
        },
    }
}

/// Reads, checks and uploads the component at `path`; its digest.
pub async fn upload_component(client: &Client, path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read component {}: {e}", path.display()))?;
    validate_component(&bytes).map_err(|e| anyhow::anyhow!("{} {e}", path.display()))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    client
        .call(&Request::PutBlob {
            digest: digest.clone(),
            bytes,
        })
        .await?;
    Ok(digest)
}
