//! `berth delete -f FILE` and `berth delete KIND NAME`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use berth_api::Kind;
use berth_api::manifest::parse_manifest_file;
use berth_api::wire::{Request, Response};

use crate::client::Client;

/// One object to delete.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// The objects named in manifest files, last first (so a Namespace goes
/// after what is in it).
pub fn targets_from_files(files: &[PathBuf]) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for file in files {
        for object in parse_manifest_file(file)? {
            targets.push(Target {
                kind: object.kind(),
                namespace: object.namespace().map(str::to_owned),
                name: object.metadata().name.clone(),
            });
        }
    }
    targets.reverse();
    Ok(targets)
}

/// Deletes one object; the scheduler's description of what it deleted.
pub async fn delete(client: &Client, target: &Target) -> Result<String> {
    match client
        .call(&Request::Delete {
            kind: target.kind,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        })
        .await?
    {
        Response::Deleted { object } => Ok(object),
        other => bail!("unexpected answer {other:?}"),
    }
}
