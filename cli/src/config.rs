//! The client configuration file, kubeconfig-like: where the scheduler is
//! and the credentials to reach it. Written by `berth scheduler` and
//! `berth dev`; read by every user verb. Found at `--config`, else
//! `$BERTH_CONFIG`, else `~/.config/berth/config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use berth_api::API_VERSION;
use berth_api::quic::Identity;
use serde::{Deserialize, Serialize};

/// The client configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// The scheduler's QUIC address.
    pub server: SocketAddr,
    /// The cluster CA, PEM.
    pub certificate_authority: String,
    /// The user's certificate chain, PEM.
    pub client_certificate: String,
    /// The user's private key, PEM.
    pub client_key: String,
}

impl ClientConfig {
    /// A configuration for `server` with `identity`.
    pub fn new(server: SocketAddr, ca_pem: &str, identity: &Identity) -> ClientConfig {
        ClientConfig {
            api_version: API_VERSION.into(),
            kind: "Config".into(),
            server,
            certificate_authority: ca_pem.into(),
            client_certificate: identity.cert_chain_pem.clone(),
            client_key: identity.key_pem.clone(),
        }
    }

    /// The user's identity.
    pub fn identity(&self) -> Identity {
        Identity {
            cert_chain_pem: self.client_certificate.clone(),
            key_pem: self.client_key.clone(),
        }
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<ClientConfig> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read client config {} (start a cluster with `berth dev`, or set BERTH_CONFIG)",
                path.display()
            )
        })?;
        serde_yaml_ng::from_str(&text)
            .with_context(|| format!("invalid client config {}", path.display()))
    }

    /// Writes the file at `path`, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = serde_yaml_ng::to_string(self).context("cannot encode client config")?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Where the client config lives: `explicit`, else `$BERTH_CONFIG`, else
/// `~/.config/berth/config`.
pub fn path(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os("BERTH_CONFIG") {
        return PathBuf::from(path);
    }
    config_home().join("berth").join("config")
}

fn config_home() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
}

/// The default data directory for `name` (`~/.local/share/berth/NAME`).
pub fn data_home(name: &str) -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))
        .unwrap_or_else(|| PathBuf::from(".local/share"))
        .join("berth")
        .join(name)
}
