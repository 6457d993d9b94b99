//! berth's node agent.
//!
//! A node joins the scheduler over QUIC, receives its assignments on a
//! watch stream, runs each assigned instance in its wasmtime host, serves
//! them through its HTTP ingress, and reports status back.
//!
//! Code map: [`credentials`] (joining and the node's identity), [`agent`]
//! (the session with the scheduler), [`supervisor`] (assignments to running
//! instances), [`runtime`] (wasmtime engine, compile cache, per-request
//! instantiation), [`ingress`] (HTTP routing by `Host`), [`services`] (the
//! loopback router components call Services through), [`logs`] (each
//! instance's stdout and stderr on disk, read back for `berth logs`),
//! [`metrics`] and [`admin`] (Prometheus series, `/livez` and `/readyz` on
//! the optional admin listener). Start at [`Node::start`].
//!
//! **Architecture Invariant:** once an instance runs, serving it needs
//! nothing from the scheduler; a node cut off from the scheduler keeps
//! serving what it has.

pub mod agent;
pub mod backoff;
pub mod credentials;
pub mod host;
pub mod ingress;
pub mod ingress_rules;
pub mod jobs;
pub mod logs;
pub mod metrics;
pub mod oci;
pub mod outbound;
pub mod probes;
pub mod runtime;
pub mod sandbox;
pub mod services;
pub mod supervisor;
pub mod wake;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use berth_api::NodeResources;
use berth_api::quic;
use berth_api::scheduling::Taint;
use berth_api::wire::NodeInfo;
use tracing::info;

use crate::host::InstanceHost;
use crate::ingress::Routes;
use crate::logs::LogStore;
use crate::metrics::{CompileCounts, Metrics};
use crate::runtime::WasmRuntime;
use crate::sandbox::{SandboxProgram, Sandboxes};
use crate::services::ServiceRouter;
use crate::supervisor::{Executor, Supervisor};

/// The default domain the ingress serves `<deployment>.<namespace>.` under.
pub const DEFAULT_DOMAIN: &str = "berth.localhost";

/// The node's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's name (DNS-1123 label).
    pub name: String,
    /// The scheduler's QUIC address.
    pub scheduler: SocketAddr,
    /// Bootstrap token; needed only until the node has joined once.
    pub token: Option<String>,
    /// Where credentials, components and compiled artifacts live.
    pub data_dir: PathBuf,
    /// Where the HTTP ingress listens.
    pub ingress: SocketAddr,
    /// Where the node takes Service calls from other nodes (QUIC, UDP);
    /// `None`: the ingress's IP address, on a port the OS picks.
    pub peer_listen: Option<SocketAddr>,
    /// The domain under which deployments are served.
    pub domain: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Capacity to advertise instead of the machine's.
    pub capacity: Option<NodeResources>,
    /// Most instances to take; 0 means no limit.
    pub max_instances: u64,
    /// Taints to register with.
    pub taints: Vec<Taint>,
    /// TCP address of the admin HTTP listener (`/metrics`, `/livez`,
    /// `/readyz`); none when `None`.
    pub admin: Option<SocketAddr>,
    /// How to start sandbox worker processes (`berth sandbox`). With
    /// `None`, instances run in the node's own process without cgroups:
    /// for embedders and tests only.
    pub sandbox: Option<SandboxProgram>,
    /// Whether the node runs WebAssembly components (runtime `wasm`).
    pub wasm: bool,
    /// The OCI runtime program (`runc`, `crun`, a path) when the node runs
    /// containers (runtime `oci`).
    pub oci_runtime: Option<PathBuf>,
}

pub use berth_api::lifecycle::CGROUPS_LABEL;

impl Config {
    /// The runtime kinds the node advertises.
    pub fn runtimes(&self) -> Vec<String> {
        let mut runtimes = Vec::new();
        if self.wasm {
            runtimes.push(berth_api::container::WASM_RUNTIME.to_owned());
        }
        if self.oci_runtime.is_some() {
            runtimes.push(berth_api::container::OCI_RUNTIME.to_owned());
        }
        runtimes
    }
}

/// The WIT interfaces this node's host provides to components: WASI 0.2's
/// CLI, clocks, filesystem, I/O, random, sockets and HTTP, as wasmtime 48
/// links them. Placement sends a component only to nodes providing every
/// interface it imports.
pub const PROVIDED_INTERFACES: &[&str] = &[
    "wasi:cli/environment@0.2",
    "wasi:cli/exit@0.2",
    "wasi:cli/stderr@0.2",
    "wasi:cli/stdin@0.2",
    "wasi:cli/stdout@0.2",
    "wasi:cli/terminal-input@0.2",
    "wasi:cli/terminal-output@0.2",
    "wasi:cli/terminal-stderr@0.2",
    "wasi:cli/terminal-stdin@0.2",
    "wasi:cli/terminal-stdout@0.2",
    "wasi:clocks/monotonic-clock@0.2",
    "wasi:clocks/wall-clock@0.2",
    "wasi:filesystem/preopens@0.2",
    "wasi:filesystem/types@0.2",
    "wasi:http/outgoing-handler@0.2",
    "wasi:http/types@0.2",
    "wasi:io/error@0.2",
    "wasi:io/poll@0.2",
    "wasi:io/streams@0.2",
    "wasi:random/insecure-seed@0.2",
    "wasi:random/insecure@0.2",
    "wasi:random/random@0.2",
    "wasi:sockets/instance-network@0.2",
    "wasi:sockets/ip-name-lookup@0.2",
    "wasi:sockets/network@0.2",
    "wasi:sockets/tcp-create-socket@0.2",
    "wasi:sockets/tcp@0.2",
    "wasi:sockets/udp-create-socket@0.2",
    "wasi:sockets/udp@0.2",
];

/// A started node, ready to [`run`](Node::run).
pub struct Node {
    config: Config,
    listener: tokio::net::TcpListener,
    endpoint: quinn::Endpoint,
    routes: Arc<Routes>,
    supervisor: Arc<Supervisor>,
    metrics: Arc<Metrics>,
    admin: Option<tokio::net::TcpListener>,
    /// Where components' calls to Services go, and its loopback listener.
    services: Arc<ServiceRouter>,
    services_listener: tokio::net::TcpListener,
    /// Node-to-node QUIC: calls to other nodes' endpoints, and theirs.
    peers: Arc<services::peer::Peers>,
    sandboxes: Option<Arc<Sandboxes>>,
    containers: Option<Arc<oci::Containers>>,
    /// What the ingress offers each connection to first.
    dispatch: Option<Arc<dyn ingress::ConnectionDispatch>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("config", &self.config)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// The machine's CPUs (in millicores) and memory (from `/proc/meminfo`).
pub fn machine_capacity() -> NodeResources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(0);
    NodeResources {
        cpu_millis: cpus * 1000,
        memory_bytes: memory_kib * 1024,
    }
}

impl Node {
    /// Binds the ingress, joins the cluster if this data directory has no
    /// credentials yet, and prepares the wasm runtime.
    pub async fn start(config: Config) -> Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(config.ingress)
            .await
            .with_context(|| format!("cannot listen on {}", config.ingress))?;
        let admin = match config.admin {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ),
            None => None,
        };
        // Components call Services through this router, on loopback only.
        let services_listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .context("cannot listen for the service router")?;
        let services = ServiceRouter::new(&config.name, &config.domain);
        let credentials = match credentials::load(&config.data_dir)? {
            Some(credentials) => credentials::renew_for_peers(credentials, &config)
                .await
                .context("cannot renew the node certificate")?,
            None => {
                let Some(token) = config.token.as_deref() else {
                    bail!(
                        "node {} has not joined yet: pass --token (from the scheduler's data dir, file join-token)",
                        config.name
                    );
                };
                credentials::join(&config.data_dir, config.scheduler, token, &config.name)
                    .await
                    .context("cannot join the cluster")?
            }
        };
        let client = quic::client_config(&credentials.identity, &credentials.ca_pem)?;
        let endpoint = quic::client_endpoint(config.scheduler, client)?;
        let ingress_addr = listener.local_addr()?;
        let peers = Arc::new(credentials::peers(&credentials, &config, ingress_addr)?);
        services.use_peers(Arc::clone(&peers));
        // Compiles happen where instances load: in the node's own runtime,
        // or in the sandboxes, which report theirs.
        let runtime = match config.sandbox {
            Some(_) => None,
            None => Some(Arc::new(WasmRuntime::new(&config.data_dir)?)),
        };
        let compiles = Arc::new(sandbox::CompileTotals::default());
        let metrics = {
            let runtime = runtime.clone();
            let compiles = Arc::clone(&compiles);
            Arc::new(Metrics::new(move || match &runtime {
                Some(runtime) => CompileCounts {
                    compiled: runtime.compiled_count(),
                    disk: runtime.from_disk_count(),
                },
                None => compiles.counts(),
            }))
        };
        let routes = Arc::new(Routes::default());
        let logs_dir = config.data_dir.join("logs");
        let logs = Arc::new(
            LogStore::new(logs_dir.clone())
                .with_context(|| format!("cannot create {}", logs_dir.display()))?,
        );
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let container_events = events_tx.clone();
        let (executor, sandboxes) = match &config.sandbox {
            Some(program) => {
                let sandboxes = Arc::new(Sandboxes::new(
                    sandbox::SandboxSetup {
                        node: config.name.clone(),
                        program: program.clone(),
                        data_dir: config.data_dir.clone(),
                        domain: config.domain.clone(),
                    },
                    events_tx,
                    metrics.clone(),
                    compiles,
                    logs.clone(),
                )?);
                (Executor::Sandboxed(sandboxes.clone()), Some(sandboxes))
            }
            None => {
                let runtime = runtime.ok_or_else(|| anyhow::anyhow!("no wasm runtime"))?;
                let (host_tx, mut host_events) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Some(event) = host_events.recv().await {
                        if events_tx.send(sandbox::Event::Host(event)).is_err() {
                            break;
                        }
                    }
                });
                let host = InstanceHost::new(runtime, routes.clone(), host_tx);
                (Executor::InProcess(host), None)
            }
        };
        let dispatch = sandboxes
            .clone()
            .map(|s| s as Arc<dyn ingress::ConnectionDispatch>);
        let containers = match &config.oci_runtime {
            Some(program) => Some(Arc::new(
                oci::Containers::new(
                    oci::ContainerSetup {
                        node: config.name.clone(),
                        data_dir: config.data_dir.clone(),
                        program: program.clone(),
                        domain: config.domain.clone(),
                    },
                    container_events,
                    dispatch.clone(),
                )
                .await
                .context("cannot set up containers")?,
            )),
            None => None,
        };
        let dispatch = match &containers {
            Some(containers) => Some(containers.clone() as Arc<dyn ingress::ConnectionDispatch>),
            None => dispatch,
        };
        // Ingress hosts first: their connections are served per request.
        let dispatch: Option<Arc<dyn ingress::ConnectionDispatch>> = Some(
            ingress_rules::IngressDispatch::new(Arc::clone(&services), dispatch),
        );
        // Before all: requests for a Deployment scaled to zero are held
        // while the scheduler wakes it (`wake`).
        let waker = wake::Waker::new();
        let dispatch: Option<Arc<dyn ingress::ConnectionDispatch>> = Some(wake::WakeDispatch::new(
            dispatch,
            Arc::clone(&routes),
            Arc::clone(&waker),
            &config.domain,
        ));
        let supervisor =
            Supervisor::new(executor, containers.clone(), logs, &config.data_dir, events)?;
        supervisor.wake_through(waker);
        supervisor.route_services_through(services_listener.local_addr()?);
        services.count_in(Arc::clone(&metrics));
        Ok(Node {
            config,
            listener,
            endpoint,
            routes,
            supervisor,
            metrics,
            admin,
            services,
            services_listener,
            peers,
            sandboxes,
            containers,
            dispatch,
        })
    }

    /// Where the ingress listens.
    pub fn ingress_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Where the node takes other nodes' Service calls (QUIC), if it does.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peers.listen_addr()
    }

    /// Where the admin HTTP listener listens, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves and keeps the scheduler session until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let ingress_addr = self.ingress_addr()?;
        let capacity = self.config.capacity.unwrap_or_else(machine_capacity);
        let mut labels = self.config.labels.clone();
        let cgroups = match &self.sandboxes {
            Some(sandboxes) => sandboxes.cgroups().unwrap_or("unavailable"),
            None => "unavailable",
        };
        labels.insert(CGROUPS_LABEL.to_owned(), cgroups.to_owned());
        let info = NodeInfo {
            labels,
            capacity,
            allocatable: capacity,
            runtimes: self.config.runtimes(),
            ingress_address: ingress_addr.to_string(),
            interfaces: PROVIDED_INTERFACES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            max_instances: self.config.max_instances,
            taints: self.config.taints.iter().map(ToString::to_string).collect(),
            peer_address: self
                .peers
                .listen_addr()
                .map(|addr| addr.to_string())
                .unwrap_or_default(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let ingress = tokio::spawn(ingress::serve_with(
            self.listener,
            self.routes.clone(),
            self.config.domain.clone(),
            self.metrics.clone(),
            self.dispatch.clone(),
            stopped(),
        ));
        let service_router =
            tokio::spawn(Arc::clone(&self.services).serve(self.services_listener, stopped()));
        let peers = tokio::spawn(Arc::clone(&self.peers).serve(ingress_addr, stopped()));
        let admin = self.admin.map(|listener| {
            let metrics = self.metrics.clone();
            // Ready once registered with the scheduler; a node that lost it
            // later stays ready: it keeps serving what it has.
            let ready = move || metrics.is_ready();
            tokio::spawn(berth_api::admin::serve(
                listener,
                {
                    let metrics = self.metrics.clone();
                    move || metrics.encode()
                },
                ready,
                stopped(),
            ))
        });
        info!(name = %self.config.name, ingress = %ingress_addr, "node started");
        let agent = tokio::spawn(agent::run(
            self.endpoint,
            self.config.scheduler,
            info,
            self.supervisor,
            self.services,
            self.metrics,
            stopped(),
        ));
        shutdown.await;
        let _ = stop_tx.send(true);
        let _ = agent.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        ingress.await.context("ingress task")?.context("ingress")?;
        service_router
            .await
            .context("service router task")?
            .context("service router")?;
        peers.await.context("peer listener task")?;
        if let Some(containers) = &self.containers {
            containers.stop_all().await;
        }
        if let Some(sandboxes) = self.sandboxes {
            sandboxes.stop_all().await;
            sandboxes.remove_cgroups();
        }
        Ok(())
    }
}
