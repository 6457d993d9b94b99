//! `berth auth can-i VERB RESOURCE [NAME] [-n NS] [--as USER]`: whether
//! the scheduler would allow a request, answered `yes` (exit 0) or `no`
//! (exit 1), as `kubectl auth can-i`.

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response};

use crate::client::Client;

/// The answer is no: `main` exits 1 without an error message.
#[derive(Debug)]
pub struct No;

impl std::fmt::Display for No {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no")
    }
}

impl std::error::Error for No {}

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The verb.
    pub verb: String,
    /// The resource, as a rule names it.
    pub resource: String,
    /// One object.
    pub name: Option<String>,
    /// The namespace.
    pub namespace: Option<String>,
    /// Another user (needs `impersonate` on `users`).
    pub as_user: Option<String>,
}

/// The scheduler's answer: allowed, and why not.
pub async fn can_i(client: &Client, question: Question) -> Result<(bool, String)> {
    let request = Request::CanI {
        verb: question.verb,
        resource: question.resource,
        namespace: question.namespace,
        name: question.name,
        as_user: question.as_user,
    };
    match client.call(&request).await? {
        Response::Review { allowed, reason } => Ok((allowed, reason)),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// `berth auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Whether you (or USER) may do VERB on RESOURCE: prints yes (exit 0)
    /// or no (exit 1).
    #[command(
        after_help = "Verbs: get, list, watch, create, update, delete, impersonate. \
        Resources: deployments, instances, services, roles, rolebindings, ..., users, tokens.\n\n\
        Examples:\n  \
        berth auth can-i create deployments -n team-a\n  \
        berth auth can-i delete deployments web -n team-b --as alice"
    )]
    CanI {
        /// The verb.
        verb: String,
        /// The resource (`deployments`, `nodes`, ...).
        resource: String,
        /// One object by name.
        name: Option<String>,
        /// Namespace (default: `default`).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Ask for another user (needs `impersonate` on `users`).
        #[arg(long = "as")]
        as_user: Option<String>,
    },
}
