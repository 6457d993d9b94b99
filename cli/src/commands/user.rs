//! `berth user create|cert|revoke NAME`: users' client certificates. The
//! scheduler issues them (its CA key never leaves it); the CLI writes the
//! new credentials into the client config as a context of their own.

use std::path::Path;

use anyhow::{Result, bail};
use berth_api::wire::{Request, Response};

use crate::client::Client;
use crate::config::{ConfigFile, Context};

/// What `user create` and `user cert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The user.
    pub user: String,
    /// Whether the user is new.
    pub created: bool,
    /// The context written.
    pub context: String,
    /// When the certificate expires, RFC 3339.
    pub not_after: String,
}

/// Asks for a certificate for `user` (a new user with `create`) valid
/// `days` days, and writes it as context `context` (the user's name when
/// `None`) into the client config at `config_path`, keeping its current
/// context.
pub async fn issue(
    client: &Client,
    config_path: &Path,
    user: &str,
    days: u32,
    create: bool,
    context: Option<String>,
) -> Result<Issued> {
    let request = Request::IssueCertificate {
        user: user.to_owned(),
        days,
        create,
    };
    let Response::Credentials {
        cert_chain_pem,
        key_pem,
        ca_pem,
        not_after,
    } = client.call(&request).await?
    else {
        bail!("unexpected answer to issue-certificate");
    };
    let context = context.unwrap_or_else(|| user.to_owned());
    let mut file = ConfigFile::load(config_path)?;
    file.set_context(Context {
        name: context.clone(),
        server: client.server(),
        certificate_authority: ca_pem,
        client_certificate: cert_chain_pem,
        client_key: key_pem,
    });
    file.save(config_path)?;
    Ok(Issued {
        user: user.to_owned(),
        created: create,
        context,
        not_after,
    })
}

/// Revokes every certificate and token of `user`.
pub async fn revoke(client: &Client, user: &str) -> Result<()> {
    let request = Request::RevokeUser {
        user: user.to_owned(),
    };
    match client.call(&request).await? {
        Response::Ok => Ok(()),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// `berth user ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create a user: the scheduler issues it a client certificate, written
    /// into the client config as a context (cluster-admin only).
    #[command(after_help = "Examples:\n  \
        berth user create alice\n  \
        berth user create ci --days 30 --context ci")]
    Create {
        /// The user's name (DNS-1123).
        name: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The context to write (default: the user's name).
        #[arg(long)]
        context: Option<String>,
    },
    /// Issue an existing user a new certificate, written as a context.
    #[command(after_help = "Examples:\n  berth user cert alice --context alice-laptop")]
    Cert {
        /// The user's name.
        name: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The context to write (default: the user's name).
        #[arg(long)]
        context: Option<String>,
    },
    /// Revoke every certificate and token of a user, at once.
    #[command(after_help = "Examples:\n  berth user revoke alice")]
    Revoke {
        /// The user's name.
        name: String,
    },
}
