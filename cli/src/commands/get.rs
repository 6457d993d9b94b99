//! `berth get KIND [NAME] [-l SELECTOR]`.
//!
//! The scheduler answers `get` with every Secret value emptied; with
//! `--show-secrets`, [`reveal`] asks for them with the one request that
//! returns them (`RevealSecrets`), which RBAC may refuse.

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response};
use berth_api::{Kind, Object};

use crate::client::Client;
use crate::selector::Selector;

/// Which objects to read.
#[derive(Debug, Clone)]
pub struct Query {
    /// The kind.
    pub kind: Kind,
    /// One object by name.
    pub name: Option<String>,
    /// A namespace, or `None` for all.
    pub namespace: Option<String>,
}

/// Reads the objects `query` asks for.
pub async fn get(client: &Client, query: &Query) -> Result<Vec<Object>> {
    let response = client
        .call(&Request::Get {
            kind: query.kind,
            namespace: query.namespace.clone(),
            name: query.name.clone(),
        })
        .await?;
    objects(response)
}

/// Reads Secrets with their values (`berth get secret --show-secrets`).
pub async fn reveal(client: &Client, query: &Query) -> Result<Vec<Object>> {
    if query.kind != Kind::Secret {
        bail!(
            "--show-secrets applies only to kind secret, not {}",
            query.kind
        );
    }
    let response = client
        .call(&Request::RevealSecrets {
            namespace: query.namespace.clone(),
            name: query.name.clone(),
        })
        .await?;
    objects(response)
}

/// The objects of a [`Response::Objects`].
fn objects(response: Response) -> Result<Vec<Object>> {
    let Response::Objects(raw) = response else {
        bail!("unexpected answer {response:?}");
    };
    raw.iter()
        .map(|bytes| {
            Object::from_json(bytes)
                .map_err(|e| anyhow::anyhow!("scheduler sent a malformed object: {e}"))
        })
        .collect()
}

/// Keeps the objects whose labels meet `selector` (client-side: the
/// scheduler answers the whole kind; see [`crate::selector`]).
pub fn select(objects: Vec<Object>, selector: &Selector) -> Vec<Object> {
    objects
        .into_iter()
        .filter(|o| selector.matches(&o.metadata().labels))
        .collect()
}
