//! berth's control plane.
//!
//! The scheduler keeps desired state in a redb file ([`store`]), serves the
//! API over QUIC with mutual TLS ([`server`], with the verbs in
//! [`admission`] and [`nodes`]), and runs the controllers ([`controller`])
//! and placement ([`placement`]) — both sans-IO — from [`reconciler`].
//! Service endpoints, pushed to every node, come from [`services`].
//! Prometheus series live in [`metrics`], served with `/livez` and
//! `/readyz` by the optional admin HTTP listener ([`berth_api::admin`]),
//! which also serves the web [`dashboard`].
//! Start at [`Scheduler::start`].
//!
//! Out of scope here: the wasm runtime (the `berth-node` crate) and the
//! command line (the `berth` crate).

pub mod admission;
pub mod audit;
pub mod cluster;
pub mod controller;
pub mod dashboard;
pub mod disruption;
pub mod events;
pub mod metrics;
pub mod netpol;
pub mod nodes;
pub mod pki;
pub mod placement;
pub mod quota;
pub mod rbac;
pub mod reconciler;
pub mod secrets;
pub mod server;
pub mod services;
pub mod store;
pub mod traffic;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_api::quic::{self, Identity};
use berth_api::{API_VERSION, DEFAULT_NAMESPACE, Kind, Namespace, Object, ObjectMeta};

use crate::cluster::Cluster;
use crate::controller::Settings;
use crate::store::{Store, key};

/// A node silent this long turns NotReady (Kubernetes' `nodeMonitorGracePeriod`).
pub const DEFAULT_NODE_GRACE: Duration = Duration::from_secs(5);

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store, CA and credentials live.
    pub data_dir: PathBuf,
    /// UDP address to serve QUIC on.
    pub listen: SocketAddr,
    /// How long a node may be silent before it turns NotReady.
    pub node_grace: Duration,
    /// Placement plugins, weights and strategy.
    pub placement: placement::Config,
    /// TCP address of the admin HTTP listener (`/metrics`, `/livez`,
    /// `/readyz`); none when `None`.
    pub admin: Option<SocketAddr>,
    /// The audit log file; `audit.log` in `data_dir` when `None`.
    pub audit_log: Option<PathBuf>,
    /// The key Secrets are sealed with at rest; `secrets.key` in
    /// `data_dir` (created on first start) when `None`.
    pub secrets_key: Option<PathBuf>,
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Credentials could not be created or loaded.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The secrets key could not be loaded or created.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// QUIC could not be set up.
    #[error(transparent)]
    Quic(#[from] quic::QuicError),
    /// The placement configuration is invalid.
    #[error("invalid scheduler config: {0}")]
    Placement(#[from] placement::ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started scheduler, ready to [`run`](Scheduler::run).
#[derive(Debug)]
pub struct Scheduler {
    cluster: Arc<Cluster>,
    endpoint: quinn::Endpoint,
    settings: Settings,
    admin: Option<std::net::TcpListener>,
    /// The dashboard's token, when there is an admin listener to serve it.
    dashboard: Option<dashboard::Token>,
}

impl Scheduler {
    /// Opens the data directory (creating the CA and store on first start)
    /// and binds the QUIC endpoint.
    pub fn start(config: &Config) -> Result<Scheduler, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let authority = pki::Authority::load_or_create(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join("berth.redb"))?;
        let (key_path, create) = secrets::key_path(&config.data_dir, config.secrets_key.as_deref());
        let secrets_key = secrets::SecretsKey::load_or_create(&key_path, create)?;
        let store = store.with_secrets_key(Arc::new(secrets_key));
        // Every stored Secret must open with this key: a wrong key stops
        // the start here rather than every reconcile pass later.
        store.list(Kind::Secret, None)?;
        let admin = pki::identity_fingerprint(&authority.admin)?;
        store.put_identity(&admin, &pki::Subject::User("admin".into()).encode())?;
        ensure_default_namespace(&store)?;
        users::ensure_builtin_roles(&store)?;
        let server_config = quic::server_config(&authority.server, authority.ca_pem())?;
        let cluster = Cluster::new(store, authority)?;
        let audit_path = match &config.audit_log {
            Some(path) => path.clone(),
            None => config.data_dir.join(audit::FILE_NAME),
        };
        let _ = cluster.audit.set(audit::AuditLog::new(audit_path));
        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(|source| {
            StartError::Listen {
                addr: config.listen,
                source,
            }
        })?;
        let admin = config
            .admin
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                    .map_err(|source| StartError::Listen { addr, source })
            })
            .transpose()?;
        let dashboard = admin
            .as_ref()
            .map(|_| dashboard::Token::load_or_create(&config.data_dir))
            .transpose()?;
        dashboard::auth::publish_address(
            &config.data_dir,
            admin.as_ref().and_then(|l| l.local_addr().ok()),
        )?;
        let settings = Settings {
            node_grace: jiff::SignedDuration::try_from(config.node_grace)
                .unwrap_or(jiff::SignedDuration::from_secs(5)),
            started: jiff::Timestamp::now(),
            reconnect_allowance: jiff::SignedDuration::try_from(
                quic::IDLE_TIMEOUT + quic::KEEP_ALIVE * 2,
            )
            .unwrap_or_default(),
            placement: placement::Framework::new(&config.placement)?,
        };
        Ok(Scheduler {
            cluster,
            endpoint,
            settings,
            admin,
            dashboard,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.endpoint.local_addr()
    }

    /// The address the admin HTTP listener bound, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The admin user's client credentials.
    pub fn admin(&self) -> &Identity {
        &self.cluster.authority.admin
    }

    /// The cluster CA, PEM.
    pub fn ca_pem(&self) -> &str {
        self.cluster.authority.ca_pem()
    }

    /// The bootstrap token nodes join with.
    pub fn join_token(&self) -> &str {
        &self.cluster.authority.join_token
    }

    /// Serves and reconciles until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let reconciler = {
            let mut stop = stop_rx.clone();
            tokio::spawn(reconciler::run(
                self.cluster.clone(),
                self.settings.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            ))
        };
        let admin = self.admin.and_then(|listener| {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(
                    |e| tracing::warn!(error = %e, "admin listener unusable; serving without it"),
                )
                .ok()?;
            let cluster = self.cluster.clone();
            // Ready while the store can be read.
            let ready = move || cluster.store.revision().is_ok();
            let mut stop = stop_rx.clone();
            let routes: berth_api::admin::Routes = match self.dashboard.clone() {
                Some(token) => dashboard::routes(self.cluster.clone(), token),
                None => Arc::new(|_: &_| None),
            };
            Some(tokio::spawn(berth_api::admin::serve_with(
                listener,
                {
                    let metrics = self.cluster.metrics.clone();
                    move || metrics.encode()
                },
                ready,
                routes,
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        });
        server::serve(self.endpoint.clone(), self.cluster.clone(), shutdown).await;
        let _ = stop_tx.send(true);
        let _ = reconciler.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        self.endpoint.wait_idle().await;
    }
}

fn ensure_default_namespace(store: &Store) -> Result<(), store::StoreError> {
    store.write(|txn| {
        if txn
            .get(&key(Kind::Namespace, None, DEFAULT_NAMESPACE))?
            .is_none()
        {
            txn.put(Object::Namespace(Box::new(Namespace {
                api_version: API_VERSION.into(),
                kind: Kind::Namespace.as_str().into(),
                metadata: ObjectMeta {
                    name: DEFAULT_NAMESPACE.into(),
                    uid: Some(uuid::Uuid::new_v4().to_string()),
                    creation_timestamp: Some(jiff::Timestamp::now()),
                    generation: Some(1),
                    ..ObjectMeta::default()
                },
            })))?;
        }
        Ok::<_, store::StoreError>(())
    })?;
    Ok(())
}
