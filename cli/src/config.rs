//! The client configuration file, kubeconfig-like: where the scheduler is
//! and the credentials to reach it. Written by `berth scheduler` and
//! `berth dev`; read by every user verb. Found at `--config`, else
//! `$BERTH_CONFIG`, else `~/.config/berth/config`.
//!
//! A file may name several clusters (decision 0032). Its top-level
//! `server`, `certificateAuthority`, `clientCertificate` and `clientKey`
//! are the context named `default`, as the single-cluster file has always
//! had them, so an old file still loads; `contexts:` lists more, each
//! with a `name` and the same four fields; `currentContext` says which
//! one the user verbs talk to (`default` when unset). `berth scheduler`
//! and `berth dev` write their cluster as `default` and make it current,
//! keeping the other contexts; `berth config use-context` switches.
//!
//! ```yaml
//! apiVersion: berth.dev/v1
//! kind: Config
//! server: 127.0.0.1:7443
//! certificateAuthority: ...
//! clientCertificate: ...
//! clientKey: ...
//! currentContext: prod
//! contexts:
//! - name: prod
//!   server: 10.0.0.5:7443
//!   certificateAuthority: ...
//!   clientCertificate: ...
//!   clientKey: ...
//! ```

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

    /// Reads the current context of the file at `path`.
    pub fn load(path: &Path) -> Result<ClientConfig> {
        let file = ConfigFile::load(path)?;
        let name = file.current_name().with_context(|| {
            format!(
                "client config {} has no current context (choose one with `berth config use-context NAME`)",
                path.display()
            )
        })?;
        file.cluster(name).with_context(|| {
            format!(
                "client config {}: current context {name:?} not found (see `berth config get-contexts`)",
                path.display()
            )
        })
    }

    /// Writes this cluster into the file at `path` as the context
    /// `default` and makes it current, keeping the file's other contexts.
    /// A file that cannot be read as a client config is replaced.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut file = match ConfigFile::load(path) {
            Ok(file) => file,
            Err(e) => {
                if path.exists() {
                    tracing::warn!("replacing client config {}: {e:#}", path.display());
                }
                ConfigFile::empty()
            }
        };
        file.set_default(self);
        file.save(path)
    }
}

/// The name of the context held in the file's top-level fields.
pub const DEFAULT_CONTEXT: &str = "default";

/// The client config file: the context `default` in its top-level fields,
/// more in `contexts`, and which one is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// The `default` context's scheduler address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<SocketAddr>,
    /// The `default` context's cluster CA, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// The `default` context's certificate chain, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// The `default` context's private key, PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// The context user verbs talk to; `default` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Named contexts besides `default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<Context>,
}

/// One named cluster and the credentials to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    /// The name `use-context` takes.
    pub name: String,
    /// The scheduler's QUIC address.
    pub server: SocketAddr,
    /// The cluster CA, PEM.
    pub certificate_authority: String,
    /// The user's certificate chain, PEM.
    pub client_certificate: String,
    /// The user's private key, PEM.
    pub client_key: String,
}

/// One line of `berth config get-contexts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRow {
    /// Whether it is the current context.
    pub current: bool,
    /// Its name.
    pub name: String,
    /// Its scheduler.
    pub server: SocketAddr,
}

impl ConfigFile {
    /// A file with no context.
    pub fn empty() -> ConfigFile {
        ConfigFile {
            api_version: API_VERSION.into(),
            kind: "Config".into(),
            server: None,
            certificate_authority: None,
            client_certificate: None,
            client_key: None,
            current_context: None,
            contexts: Vec::new(),
        }
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read client config {} (start a cluster with `berth dev`, or set BERTH_CONFIG)",
                path.display()
            )
        })?;
        let file: ConfigFile = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("invalid client config {}", path.display()))?;
        file.check()
            .map_err(|e| anyhow::anyhow!("invalid client config {}: {e}", path.display()))?;
        Ok(file)
    }

    /// The top-level fields are all set or all unset; names are unique.
    fn check(&self) -> std::result::Result<(), String> {
        let set = [
            ("server", self.server.is_some()),
            ("certificateAuthority", self.certificate_authority.is_some()),
            ("clientCertificate", self.client_certificate.is_some()),
            ("clientKey", self.client_key.is_some()),
        ];
        let has_default = set.iter().any(|(_, set)| *set);
        if has_default && let Some((field, _)) = set.iter().find(|(_, set)| !set) {
            return Err(format!(
                "{field}: must be set along with the other top-level fields"
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        if has_default {
            seen.push(DEFAULT_CONTEXT);
        }
        for (index, context) in self.contexts.iter().enumerate() {
            if context.name.is_empty() {
                return Err(format!("contexts[{index}].name: must not be empty"));
            }
            if seen.contains(&context.name.as_str()) {
                return Err(format!(
                    "contexts[{index}].name: context {:?} is given twice",
                    context.name
                ));
            }
            seen.push(&context.name);
        }
        Ok(())
    }

    /// The current context's name: `currentContext`, else `default` when
    /// the top-level fields are set.
    pub fn current_name(&self) -> Option<&str> {
        match &self.current_context {
            Some(name) => Some(name),
            None => self.server.is_some().then_some(DEFAULT_CONTEXT),
        }
    }

    /// The cluster of the context `name`.
    pub fn cluster(&self, name: &str) -> Option<ClientConfig> {
        let config = |server, ca: &str, cert: &str, key: &str| ClientConfig {
            api_version: API_VERSION.into(),
            kind: "Config".into(),
            server,
            certificate_authority: ca.into(),
            client_certificate: cert.into(),
            client_key: key.into(),
        };
        if name == DEFAULT_CONTEXT
            && let (Some(server), Some(ca), Some(cert), Some(key)) = (
                self.server,
                &self.certificate_authority,
                &self.client_certificate,
                &self.client_key,
            )
        {
            return Some(config(server, ca, cert, key));
        }
        self.contexts.iter().find(|c| c.name == name).map(|c| {
            config(
                c.server,
                &c.certificate_authority,
                &c.client_certificate,
                &c.client_key,
            )
        })
    }

    /// Every context, `default` first, then as listed.
    pub fn rows(&self) -> Vec<ContextRow> {
        let current = self.current_name();
        let default = self.server.map(|server| (DEFAULT_CONTEXT, server));
        default
            .into_iter()
            .chain(self.contexts.iter().map(|c| (c.name.as_str(), c.server)))
            .map(|(name, server)| ContextRow {
                current: current == Some(name),
                name: name.to_owned(),
                server,
            })
            .collect()
    }

    /// Makes `name` the current context; `false` if there is no such
    /// context.
    pub fn use_context(&mut self, name: &str) -> bool {
        if self.cluster(name).is_none() {
            return false;
        }
        self.current_context = Some(name.to_owned());
        true
    }

    /// Adds `context`, replacing one of the same name (the top-level
    /// fields, for `default`); the current context stays.
    pub fn set_context(&mut self, context: Context) {
        if context.name == DEFAULT_CONTEXT {
            self.server = Some(context.server);
            self.certificate_authority = Some(context.certificate_authority);
            self.client_certificate = Some(context.client_certificate);
            self.client_key = Some(context.client_key);
            return;
        }
        // The file read as one cluster so far: keep `default` current.
        if self.current_context.is_none() && self.server.is_some() {
            self.current_context = Some(DEFAULT_CONTEXT.to_owned());
        }
        match self.contexts.iter_mut().find(|c| c.name == context.name) {
            Some(existing) => *existing = context,
            None => self.contexts.push(context),
        }
    }

    /// Sets the `default` context to `config` and makes it current.
    pub fn set_default(&mut self, config: &ClientConfig) {
        self.server = Some(config.server);
        self.certificate_authority = Some(config.certificate_authority.clone());
        self.client_certificate = Some(config.client_certificate.clone());
        self.client_key = Some(config.client_key.clone());
        // A file with one cluster reads as it always has.
        self.current_context = (!self.contexts.is_empty()).then(|| DEFAULT_CONTEXT.to_owned());
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cluster(port: u16) -> ClientConfig {
        ClientConfig {
            api_version: API_VERSION.into(),
            kind: "Config".into(),
            server: SocketAddr::from(([127, 0, 0, 1], port)),
            certificate_authority: format!("ca-{port}"),
            client_certificate: format!("cert-{port}"),
            client_key: format!("key-{port}"),
        }
    }

    /// A file as `berth scheduler` wrote it before contexts existed.
    const SINGLE: &str = "apiVersion: berth.dev/v1
kind: Config
server: 127.0.0.1:7443
certificateAuthority: ca
clientCertificate: cert
clientKey: key
";

    #[test]
    fn a_single_cluster_file_loads_and_is_written_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, SINGLE).unwrap();
        let config = ClientConfig::load(&path).unwrap();
        assert_eq!(config.server, SocketAddr::from(([127, 0, 0, 1], 7443)));
        assert_eq!(config.client_key, "key");
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.current_name(), Some(DEFAULT_CONTEXT));
        let fresh = dir.path().join("fresh");
        config.save(&fresh).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), SINGLE);
    }

    #[test]
    fn contexts_switch_and_survive_a_new_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let prod = cluster(9000);
        let text = format!(
            "{SINGLE}contexts:\n- name: prod\n  server: {}\n  certificateAuthority: ca-9000\n  \
             clientCertificate: cert-9000\n  clientKey: key-9000\n",
            prod.server
        );
        std::fs::write(&path, text).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        assert!(!file.use_context("staging"));
        assert!(file.use_context("prod"));
        file.save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), prod);
        let rows = ConfigFile::load(&path).unwrap().rows();
        let names: Vec<(bool, &str)> = rows.iter().map(|r| (r.current, r.name.as_str())).collect();
        assert_eq!(names, [(false, "default"), (true, "prod")]);

        // A scheduler writing its config takes `default` and makes it
        // current; `prod` stays.
        cluster(7000).save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), cluster(7000));
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.current_context.as_deref(), Some(DEFAULT_CONTEXT));
        assert_eq!(file.cluster("prod"), Some(prod));
    }

    #[test]
    fn a_file_of_named_contexts_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let context = "- name: a\n  server: 127.0.0.1:1\n  certificateAuthority: ca\n  \
                       clientCertificate: cert\n  clientKey: key\n";
        let head = "apiVersion: berth.dev/v1\nkind: Config\n";
        std::fs::write(&path, format!("{head}contexts:\n{context}")).unwrap();
        let error = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("has no current context"), "{error}");
        std::fs::write(
            &path,
            format!("{head}currentContext: b\ncontexts:\n{context}"),
        )
        .unwrap();
        let error = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("current context \"b\" not found"), "{error}");
        std::fs::write(
            &path,
            format!("{head}currentContext: a\ncontexts:\n{context}"),
        )
        .unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap().server.port(), 1);
    }

    #[test]
    fn inconsistent_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, SINGLE.replace("clientKey: key\n", "")).unwrap();
        let error = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(
            error.ends_with("clientKey: must be set along with the other top-level fields"),
            "{error}"
        );
        let twice = format!(
            "{SINGLE}contexts:\n- name: default\n  server: 127.0.0.1:1\n  certificateAuthority: ca\n  \
             clientCertificate: cert\n  clientKey: key\n"
        );
        std::fs::write(&path, twice).unwrap();
        let error = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(
            error.ends_with("contexts[0].name: context \"default\" is given twice"),
            "{error}"
        );
    }
}
