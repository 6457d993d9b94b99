//! `berth top nodes` and `berth top instances [-n NS | -A]`: live CPU,
//! memory and request rates from the nodes' latest reports, which the
//! scheduler keeps in memory. Rendered by [`crate::render::top`].

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response, TopKind, TopRows};

use crate::client::Client;

/// What `berth top` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// One row per node: usage against allocatable.
    #[value(alias = "node", alias = "no")]
    Nodes,
    /// One row per running instance.
    #[value(alias = "instance", alias = "inst")]
    Instances,
}

impl Target {
    /// The kind the request asks for.
    pub fn kind(self) -> TopKind {
        match self {
            Target::Nodes => TopKind::Nodes,
            Target::Instances => TopKind::Instances,
        }
    }
}

/// Asks the scheduler for the rows; `namespace` `None` is all namespaces.
pub async fn top(client: &Client, target: Target, namespace: Option<String>) -> Result<TopRows> {
    match client
        .call(&Request::Top {
            what: target.kind(),
            namespace,
        })
        .await?
    {
        Response::Top(rows) => Ok(rows),
        other => bail!("unexpected answer {other:?}"),
    }
}
