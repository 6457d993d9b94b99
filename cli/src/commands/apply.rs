//! `berth apply -f FILE`: upload components, then create or update objects.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use berth_api::Object;
use berth_api::manifest::{InvalidManifest, ManifestError, parse_manifest_file};
use berth_api::wire::{ApplyOutcome, Request, Response};
use berth_scheduler::admission::validate_component;
use sha2::{Digest, Sha256};

use crate::client::Client;

/// A component referenced by a manifest, read and checked.
struct Component {
    digest: String,
    bytes: Vec<u8>,
}

fn component_error(file: &Path, object: &Object, message: String) -> ManifestError {
    ManifestError::from(InvalidManifest {
        file: file.display().to_string(),
        document: 0,
        object: Some(object.describe()),
        path: Some("spec.template.spec.component".into()),
        message,
        location: None,
    })
}

/// Reads and checks the component a Deployment names, relative to its
/// manifest's directory.
fn read_component(
    file: &Path,
    object: &Object,
    reference: &str,
) -> Result<Component, ManifestError> {
    let base = file.parent().unwrap_or(Path::new("."));
    let path: PathBuf = base.join(reference.trim_start_matches("./"));
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

/// Objects with the file each came from.
type Loaded = Vec<(PathBuf, Object)>;

/// Loads every file, resolving components to digests. Nothing is sent
/// until every file and component is known to be good.
fn load(files: &[PathBuf]) -> Result<(Loaded, Vec<Component>)> {
    let mut objects = Vec::new();
    let mut components: Vec<Component> = Vec::new();
    for file in files {
        for mut object in parse_manifest_file(file)? {
            if let Object::Deployment(deployment) = &object {
                let reference = deployment.spec.template.spec.component.clone();
                let component = read_component(file, &object, &reference)?;
                if let Object::Deployment(deployment) = &mut object {
                    deployment.spec.template.spec.component = component.digest.clone();
                }
                if !components.iter().any(|c| c.digest == component.digest) {
                    components.push(component);
                }
            }
            objects.push((file.clone(), object));
        }
    }
    Ok((objects, components))
}

/// Applies `files` through `client`.
pub async fn apply(client: &Client, files: &[PathBuf]) -> Result<Vec<ApplyOutcome>> {
    let (objects, components) = load(files)?;
    if objects.is_empty() {
        bail!(
            "no objects found in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
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
            Some((file, _)) => bail!("{}: {e}", file.display()),
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
