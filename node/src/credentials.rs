//! The node's identity: obtained once by joining with the bootstrap token,
//! then kept in the data directory (`node.crt`, `node.key`, `ca.crt`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use berth_api::quic::{self, Identity, JoinToken};
use berth_api::wire::{Request, Response};

/// The node's certificate chain and key, and the cluster CA.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Client identity.
    pub identity: Identity,
    /// The CA the scheduler's certificate must chain to.
    pub ca_pem: String,
}

/// Loads credentials from `dir`, if the node joined before.
pub fn load(dir: &Path) -> Result<Option<Credentials>> {
    let cert = dir.join("node.crt");
    let key = dir.join("node.key");
    let ca = dir.join("ca.crt");
    if !(cert.exists() && key.exists() && ca.exists()) {
        return Ok(None);
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Some(Credentials {
        identity: Identity {
            cert_chain_pem: read(&cert)?,
            key_pem: read(&key)?,
        },
        ca_pem: read(&ca)?,
    }))
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Joins the cluster at `scheduler` as `name` with `token`, and keeps the
/// credentials it gets in `dir`.
pub async fn join(
    dir: &Path,
    scheduler: SocketAddr,
    token: &str,
    name: &str,
) -> Result<Credentials> {
    let token = JoinToken::parse(token)?;
    let endpoint =
        quic::client_endpoint(scheduler, quic::join_client_config(&token.ca_fingerprint)?)?;
    let connection = quic::connect(&endpoint, scheduler).await?;
    let response = quic::call(
        &connection,
        &Request::Join {
            secret: token.secret.clone(),
            node_name: name.to_owned(),
        },
    )
    .await?;
    connection.close(0u32.into(), b"joined");
    endpoint.wait_idle().await;
    let (cert_pem, key_pem, ca_pem) = match response {
        Response::Joined {
            cert_pem,
            key_pem,
            ca_pem,
        } => (cert_pem, key_pem, ca_pem),
        Response::Error(e) => bail!("joining {scheduler} failed: {e}"),
        other => bail!("joining {scheduler} failed: unexpected answer {other:?}"),
    };
    if quic::pem_fingerprint(&ca_pem)? != token.ca_fingerprint {
        bail!("joining {scheduler} failed: the CA sent is not the one the token pins");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write(&dir.join("node.key"), &key_pem, true)?;
    write(&dir.join("node.crt"), &cert_pem, false)?;
    write(&dir.join("ca.crt"), &ca_pem, false)?;
    Ok(Credentials {
        identity: Identity {
            cert_chain_pem: cert_pem,
            key_pem,
        },
        ca_pem,
    })
}

/// Credentials whose certificate lets the node serve its peers
/// ([`quic::serves_peers`]): `credentials` when it does; otherwise, when
/// the node was given a bootstrap token, new ones from joining again
/// (certificates issued before node-to-node forwarding lack the
/// `serverAuth` usage); otherwise `credentials`, with a warning.
pub async fn renew_for_peers(
    credentials: Credentials,
    config: &crate::Config,
) -> Result<Credentials> {
    if quic::serves_peers(&credentials.identity, &config.name)? {
        return Ok(credentials);
    }
    let Some(token) = config.token.as_deref() else {
        tracing::warn!(
            node = %config.name,
            path = %config.data_dir.join("node.crt").display(),
            "node certificate predates node-to-node forwarding: other nodes call this node's Services as plain HTTP to its ingress; restart with --token to renew it"
        );
        return Ok(credentials);
    };
    tracing::info!(node = %config.name, "renewing the node certificate for node-to-node forwarding");
    join(&config.data_dir, config.scheduler, token, &config.name).await
}

/// The node's QUIC endpoint for its peers: listening on `--peer-listen`
/// (by default the ingress's IP address, `ingress`, on a port the OS
/// picks) when its certificate serves peers, calling them only otherwise.
pub fn peers(
    credentials: &Credentials,
    config: &crate::Config,
    ingress: SocketAddr,
) -> Result<crate::services::peer::Peers> {
    use crate::services::peer::Peers;
    let (identity, ca) = (&credentials.identity, credentials.ca_pem.as_str());
    if quic::serves_peers(identity, &config.name)? {
        let listen = config
            .peer_listen
            .unwrap_or_else(|| SocketAddr::new(ingress.ip(), 0));
        Ok(Peers::listen(listen, identity, ca)?)
    } else {
        Ok(Peers::client_only(ingress, identity, ca)?)
    }
}
