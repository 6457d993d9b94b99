//! `berth get KIND [NAME]`.

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response};
use berth_api::{Kind, Object};

use crate::client::Client;

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
