//! Linux containers: instances whose template names an OCI `image`, run
//! through an OCI runtime command (runc by default, crun or youki by
//! choice) on nodes started with `--runtime oci` (or `wasm,oci`).
//!
//! An assigned container goes: pull the image ([`image::ImageStore`],
//! layers verified by digest and unpacked once per node), give it a root
//! filesystem of its own (overlayfs over the layers, or a copy), write the
//! bundle's `config.json` ([`bundle`]), run it in the foreground of the
//! runtime ([`runtime_cli`]) with its output going to the instance's log.
//! Each container has its own network namespace with only loopback; the
//! ingress reaches its first port by connecting from inside that namespace
//! ([`netns`]), so containers need no addresses and cannot reach each
//! other. Its cgroup (`/berth/<node>-oci/<uid>`) carries the memory, cpu
//! and pids limits; after it exits the node reads the cgroup's OOM-kill
//! count to report `OOMKilled`, then deletes the container and its files.
//!
//! Lifecycle events are the ones the sandboxes send ([`Event::Host`]), so
//! the supervisor treats both kinds alike: restart policy and back-off,
//! HTTP probes (on the probe's port, else the container's), graceful stop
//! (SIGTERM, the grace period, SIGKILL), exit codes for Jobs.
//!
//! A node restarted after a crash removes every container its runtime
//! state still lists, and their files: the supervisor then starts what is
//! assigned afresh (decision 0022).

pub mod bundle;
pub mod component;
pub mod image;
pub mod netns;
pub mod runtime_cli;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use berth_api::container::ContainerWorkload;
use berth_api::job::Workload;
use berth_api::lifecycle::{ProbeHandler, ProbeSpec};
use berth_api::wire::Assignment;
use http::StatusCode;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::ingress::ConnectionDispatch;
use crate::logs::{GuestLog, Stream};
use crate::runtime::RuntimeError;
use crate::sandbox::Event;
use crate::sandbox::protocol::HostEvent;
use image::ImageStore;
use netns::Network;
use runtime_cli::RuntimeCli;

/// How long a container's runtime may take to start its first process.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the node waits for a container to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Lines of a container's stderr kept to explain a failed start.
const KEPT_STDERR_LINES: usize = 5;

/// Where a node's containers come from.
#[derive(Debug, Clone)]
pub struct ContainerSetup {
    /// The node's name.
    pub node: String,
    /// The node's data directory: images, bundles, runtime state.
    pub data_dir: PathBuf,
    /// The OCI runtime program (`runc`, `crun`, a path).
    pub program: PathBuf,
    /// The ingress domain.
    pub domain: String,
}

/// One running container.
#[derive(Debug)]
struct Container {
    uid: String,
    namespace: String,
    deployment: String,
    port: u16,
    network: Network,
    ready: AtomicBool,
    /// Set when the node stops it: its exit is then no failure.
    stopping: AtomicBool,
    /// Turns true when the container has exited and been cleaned up.
    exited: watch::Receiver<bool>,
    /// Closed (dropped) to stop its probes.
    probes_stop: Mutex<Option<watch::Sender<()>>>,
}

/// The node's containers and the routing of client connections to them.
pub struct Containers {
    cli: RuntimeCli,
    images: ImageStore,
    dir: PathBuf,
    cgroup_base: String,
    routing_domain: Arc<str>,
    running: Mutex<HashMap<String, Arc<Container>>>,
    /// Uids loaded and not unloaded since: a container whose start
    /// finishes after its unload is stopped at once rather than left
    /// running unassigned.
    wanted: Mutex<std::collections::HashSet<String>>,
    next: AtomicUsize,
    events: mpsc::UnboundedSender<Event>,
    /// Who serves connections no container takes (the sandboxes).
    fallback: Option<Arc<dyn ConnectionDispatch>>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("cli", &self.cli)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why the node cannot run containers.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A directory could not be made.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image store could not be opened.
    #[error(transparent)]
    Images(#[from] image::ImageError),
}

impl Containers {
    /// Sets up the node's containers: removes what a crashed earlier run
    /// left (containers, their files), and opens the image store.
    pub async fn new(
        setup: ContainerSetup,
        events: mpsc::UnboundedSender<Event>,
        fallback: Option<Arc<dyn ConnectionDispatch>>,
    ) -> Result<Containers, SetupError> {
        let oci = setup.data_dir.join("oci");
        let dir = oci.join("containers");
        let state = oci.join("state");
        for path in [&dir, &state] {
            std::fs::create_dir_all(path).map_err(|source| SetupError::Dir {
                path: path.clone(),
                source,
            })?;
        }
        let images = ImageStore::new(oci.join("images"))?;
        let containers = Containers {
            cli: RuntimeCli::new(setup.program, state).await,
            images,
            cgroup_base: format!(
                "/berth/{}-oci",
                crate::sandbox::cgroup_subtree(&setup.node, &setup.data_dir)
            ),
            dir,
            routing_domain: crate::ingress::normalize_domain(&setup.domain),
            running: Mutex::new(HashMap::new()),
            wanted: Mutex::new(std::collections::HashSet::new()),
            next: AtomicUsize::new(0),
            events,
            fallback,
        };
        containers.remove_stale().await;
        Ok(containers)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `uid` is one of this node's containers, running or still
    /// starting.
    pub fn has(&self, uid: &str) -> bool {
        self.wanted().contains(uid) || self.running().contains_key(uid)
    }

    /// Deletes every container the runtime lists in the node's state
    /// directory and every container directory: a crashed run's.
    async fn remove_stale(&self) {
        match self.cli.list().await {
            Ok(ids) => {
                for id in ids {
                    let _ = self.cli.kill(&id, "KILL").await;
                    match self.cli.delete(&id).await {
                        Ok(()) => {
                            info!(container = %id, "removed a container left by an earlier run")
                        }
                        Err(e) => {
                            warn!(container = %id, error = %e, "cannot remove a stale container")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list stale containers"),
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = tokio::task::spawn_blocking({
                let path = path.clone();
                move || remove_container_dir(&path)
            })
            .await;
            if let Ok(Err(e)) = removed {
                warn!(path = %path.display(), error = %e, "cannot remove a stale container directory");
            }
        }
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the assigned container; the outcome comes as events.
    pub fn load(self: &Arc<Self>, assignment: Assignment, log: Option<GuestLog>) {
        self.wanted().insert(assignment.uid.clone());
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let uid = assignment.uid.clone();
            if let Err((reason, message)) = this.run(assignment, log).await {
                let _ = this.events.send(Event::Host(HostEvent::Loaded {
                    uid,
                    result: Err((reason.to_owned(), message)),
                }));
            }
        });
    }

    /// Stops routing to the container, sends it SIGTERM, gives it `grace`
    /// to exit, then SIGKILL; returns once it is gone.
    pub async fn unload(&self, uid: &str, grace: Duration) {
        self.wanted().remove(uid);
        let Some(container) = self.running().get(uid).cloned() else {
            return;
        };
        container.stopping.store(true, Ordering::SeqCst);
        container.ready.store(false, Ordering::SeqCst);
        container.stop_probes();
        if let Err(e) = self.cli.kill(uid, "TERM").await {
            warn!(container = %uid, error = %e, "cannot send SIGTERM");
        }
        if !container.wait_exited(grace).await {
            info!(container = %uid, "grace period over; killing");
            if let Err(e) = self.cli.kill(uid, "KILL").await {
                warn!(container = %uid, error = %e, "cannot send SIGKILL");
            }
            container.wait_exited(KILL_WAIT).await;
        }
    }

    /// Stops every container at once (the node is shutting down) and
    /// removes the node's container cgroup subtree, now empty.
    pub async fn stop_all(&self) {
        let uids: Vec<String> = self.running().keys().cloned().collect();
        let stops = uids.iter().map(|uid| self.unload(uid, Duration::ZERO));
        futures::future::join_all(stops).await;
        let relative = self.cgroup_base.trim_start_matches('/');
        let hierarchies = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join(relative));
        for dir in hierarchies.chain([Path::new("/sys/fs/cgroup").join(relative)]) {
            // Only an empty cgroup directory can be removed; anything else
            // stays as it is.
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Pulls, prepares and runs the container until it exits. `Err` is a
    /// failure to start: `(reason, message)`.
    async fn run(
        self: &Arc<Self>,
        assignment: Assignment,
        log: Option<GuestLog>,
    ) -> Result<(), (&'static str, String)> {
        let uid = assignment.uid.clone();
        let Some(workload) = assignment.container.clone() else {
            return Err((
                "CreateContainerError",
                "the assignment names no image".into(),
            ));
        };
        if !is_container_id(&uid) {
            return Err((
                "CreateContainerError",
                format!("{uid:?} cannot name a container"),
            ));
        }
        let image = self
            .images
            .pull(&workload.image)
            .await
            .map_err(|e| ("ErrImagePull", e.to_string()))?;
        let dir = self.dir.join(&uid);
        tokio::task::spawn_blocking({
            let this = Arc::clone(self);
            let assignment = assignment.clone();
            let dir = dir.clone();
            move || this.prepare(&assignment, &workload, &image, &dir)
        })
        .await
        .map_err(|e| ("CreateContainerError", e.to_string()))?
        .map_err(|e| ("CreateContainerError", e))?;

        let pid_file = dir.join("pid");
        let mut child = match self.cli.run(&uid, &dir, &pid_file) {
            Ok(child) => child,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || remove_container_dir(&dir)).await;
                return Err(("CreateContainerError", e.to_string()));
            }
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(pump(stdout, Stream::Stdout, log.clone(), None));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(pump(
                stderr,
                Stream::Stderr,
                log.clone(),
                Some(stderr_tail.clone()),
            ));
        }

        let started = wait_for_pid(&mut child, &pid_file).await;
        let pid = match started {
            Ok(pid) => pid,
            Err(why) => {
                let _ = child.kill().await;
                let tail = tail_of(&stderr_tail);
                self.clean_up(&uid, &dir).await;
                return Err(("RunContainerError", format!("{why}{tail}")));
            }
        };
        let network = if assignment
            .container
            .as_ref()
            .is_some_and(|w| w.host_network)
        {
            Ok(Network::Host)
        } else {
            Network::of_process(pid)
        };
        let network = match network {
            Ok(network) => network,
            // The first process is gone already (a command that ended at
            // once): its exit is reported below like any other.
            Err(e) => {
                tracing::debug!(container = %uid, pid, error = %e, "no network namespace to open");
                Network::Exited
            }
        };

        let (exited_tx, exited) = watch::channel(false);
        let container = Arc::new(Container {
            uid: uid.clone(),
            namespace: assignment.namespace.to_ascii_lowercase(),
            deployment: if assignment.workload == Workload::Http {
                assignment.deployment.to_ascii_lowercase()
            } else {
                String::new()
            },
            port: assignment.container.as_ref().map_or(0, |w| w.port),
            network,
            ready: AtomicBool::new(crate::probes::initially_ready(&assignment.probes)),
            stopping: AtomicBool::new(false),
            exited,
            probes_stop: Mutex::new(None),
        });
        self.running().insert(uid.clone(), Arc::clone(&container));
        if !self.wanted().contains(&uid) {
            // Unloaded while it was starting: stop it now; its exit is
            // then no failure.
            container.stopping.store(true, Ordering::SeqCst);
            if let Err(e) = self.cli.kill(&uid, "KILL").await {
                warn!(container = %uid, error = %e, "cannot stop a container no longer assigned");
            }
        }
        info!(instance = %assignment.name, pid, "container running");
        let _ = self.events.send(Event::Host(HostEvent::Loaded {
            uid: uid.clone(),
            result: Ok(()),
        }));
        self.start_probes(&container, &assignment);

        let status = child.wait().await;
        container.ready.store(false, Ordering::SeqCst);
        container.stop_probes();
        let oom_kills = read_oom_kills(&format!("{}/{uid}", self.cgroup_base));
        self.clean_up(&uid, &dir).await;
        {
            let mut running = self.running();
            if running
                .get(&uid)
                .is_some_and(|c| Arc::ptr_eq(c, &container))
            {
                running.remove(&uid);
            }
        }
        let _ = exited_tx.send(true);
        if container.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let exit_code = match status {
            Ok(status) => exit_code(status),
            Err(e) => {
                warn!(container = %uid, error = %e, "cannot wait for the container");
                None
            }
        };
        let (reason, message) = if oom_kills > 0 {
            (
                "OOMKilled",
                "the container used more memory than its limit and the kernel killed it".to_owned(),
            )
        } else if exit_code == Some(0) {
            ("Completed", "the container exited with code 0".to_owned())
        } else {
            let code = exit_code.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
            (
                "Error",
                format!(
                    "the container exited with code {code}{}",
                    tail_of(&stderr_tail)
                ),
            )
        };
        let _ = self.events.send(Event::Host(HostEvent::Exited {
            uid,
            exit_code,
            reason: reason.into(),
            message,
        }));
        Ok(())
    }

    /// The container's directory: rootfs, volumes, `config.json`.
    fn prepare(
        &self,
        assignment: &Assignment,
        workload: &ContainerWorkload,
        image: &image::Image,
        dir: &Path,
    ) -> Result<(), String> {
        remove_container_dir(dir)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let rootfs = self
            .images
            .rootfs(image, &dir.join("rootfs"))
            .map_err(|e| e.to_string())?;
        let mut volumes = Vec::new();
        for (name, _, _) in &workload.mounts {
            let path = dir.join("volumes").join(name);
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            volumes.push((name.clone(), path));
        }
        let mut env = assignment.env.clone();
        env.push(("BERTH_INSTANCE".into(), assignment.name.clone()));
        env.push(("BERTH_NAMESPACE".into(), assignment.namespace.clone()));
        env.push(("BERTH_DEPLOYMENT".into(), assignment.deployment.clone()));
        let cgroup = format!("{}/{}", self.cgroup_base, assignment.uid);
        let spec = bundle::runtime_spec(&bundle::BundleSpec {
            hostname: &assignment.name,
            workload,
            image: &image.config,
            env: &env,
            rootfs: rootfs.path(),
            volumes: &volumes,
            cgroup: &cgroup,
            memory_bytes: (assignment.limits.memory_bytes > 0)
                .then_some(assignment.limits.memory_bytes),
            cpu_millis: (assignment.limits.cpu_millis > 0).then_some(assignment.limits.cpu_millis),
        })
        .map_err(|e| e.to_string())?;
        let config = dir.join("config.json");
        spec.save(&config)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        Ok(())
    }

    /// Deletes the container from the runtime and removes its files.
    async fn clean_up(&self, uid: &str, dir: &Path) {
        // A runtime without `--keep` has deleted it already.
        if self.cli.keeps_cgroups()
            && let Err(e) = self.cli.delete(uid).await
        {
            warn!(container = %uid, error = %e, "cannot delete the container");
        }
        let dir = dir.to_owned();
        let removed = tokio::task::spawn_blocking(move || remove_container_dir(&dir)).await;
        if let Ok(Err(e)) = removed {
            warn!(container = %uid, error = %e, "cannot remove the container's files");
        }
    }

    /// Runs the container's probes, routing it by their verdict.
    fn start_probes(self: &Arc<Self>, container: &Arc<Container>, assignment: &Assignment) {
        let probes = assignment.probes.clone();
        if probes.liveness.is_none() && probes.readiness.is_none() && probes.startup.is_none() {
            return;
        }
        let (stop_tx, stop_rx) = watch::channel(());
        *container
            .probes_stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(stop_tx);
        let target = ProbeTarget {
            container: Arc::clone(container),
            cli: self.cli.clone(),
            stop: stop_rx,
        };
        let events = self.events.clone();
        let ready = crate::probes::initially_ready(&probes);
        tokio::spawn(async move {
            let container = Arc::clone(&target.container);
            let on_event = crate::probes::host_events(
                container.uid.clone(),
                ready,
                move |event| {
                    let _ = events.send(Event::Host(event));
                },
                move |ready| container.ready.store(ready, Ordering::SeqCst),
            );
            crate::probes::run_target(&target, probes, on_event).await;
        });
    }

    /// A ready container serving `deployment` in `namespace`, taken in turn.
    fn pick(&self, namespace: &str, deployment: &str) -> Option<Arc<Container>> {
        let running = self.running();
        let mut ready: Vec<&Arc<Container>> = running
            .values()
            .filter(|c| {
                c.namespace == namespace
                    && c.deployment == deployment
                    && c.ready.load(Ordering::SeqCst)
                    && !c.stopping.load(Ordering::SeqCst)
            })
            .collect();
        if ready.is_empty() {
            return None;
        }
        ready.sort_by(|a, b| a.uid.cmp(&b.uid));
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % ready.len();
        ready.get(turn).map(|c| Arc::clone(c))
    }

    /// Proxies a client connection for a container deployment to one of
    /// its containers; others go to the fallback or back to the ingress.
    async fn dispatch_stream(&self, stream: TcpStream, host: String) -> Option<TcpStream> {
        let container = crate::ingress::deployment_of(&host, &self.routing_domain)
            .and_then(|(deployment, namespace)| self.pick(namespace, deployment));
        let Some(container) = container else {
            return match &self.fallback {
                Some(fallback) => fallback.dispatch(stream, host).await,
                None => Some(stream),
            };
        };
        let mut client = stream;
        match container.network.connect(container.port).await {
            Ok(mut upstream) => {
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(container = %container.uid, error = %e, "proxied connection ended");
                }
            }
            Err(e) => {
                warn!(container = %container.uid, port = container.port, error = %e, "cannot connect to the container");
                let _ = tokio::io::AsyncWriteExt::write_all(
                    &mut client,
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            }
        }
        None
    }
}

impl ConnectionDispatch for Containers {
    fn dispatch(
        &self,
        stream: TcpStream,
        host: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<TcpStream>> + Send + '_>> {
        Box::pin(self.dispatch_stream(stream, host))
    }
}

impl Container {
    /// Waits up to `timeout` for the container to exit; whether it did.
    async fn wait_exited(&self, timeout: Duration) -> bool {
        let mut exited = self.exited.clone();
        tokio::time::timeout(timeout, exited.wait_for(|e| *e))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn stop_probes(&self) {
        self.probes_stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// A container as the probe runner sees it.
struct ProbeTarget {
    container: Arc<Container>,
    cli: RuntimeCli,
    stop: watch::Receiver<()>,
}

impl ProbeTarget {
    /// One probe of any handler; success is a 2xx or 3xx status (200 for
    /// a connection made or a command that exited 0).
    async fn check(&self, spec: &ProbeSpec) -> Result<StatusCode, RuntimeError> {
        let port = spec.port.unwrap_or(self.container.port);
        let network = &self.container.network;
        match &spec.handler {
            ProbeHandler::HttpGet => http_get(network, port, &spec.path).await,
            ProbeHandler::TcpSocket => {
                network
                    .connect(port)
                    .await
                    .map(|_| StatusCode::OK)
                    .map_err(|source| RuntimeError::Io {
                        action: "connect to",
                        path: PathBuf::from(format!("port {port}")),
                        source,
                    })
            }
            ProbeHandler::Exec(command) => {
                let status = self
                    .cli
                    .exec(&self.container.uid, command)
                    .await
                    .map_err(|e| RuntimeError::Io {
                        action: "run",
                        path: PathBuf::from(command.join(" ")),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                if status.success() {
                    return Ok(StatusCode::OK);
                }
                Err(RuntimeError::Io {
                    action: "run",
                    path: PathBuf::from(command.join(" ")),
                    source: std::io::Error::other(format!("exited with {status}")),
                })
            }
        }
    }
}

impl crate::probes::Target for ProbeTarget {
    async fn probe(&self, spec: &ProbeSpec, timeout: Duration) -> Result<StatusCode, RuntimeError> {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.changed() => Err(RuntimeError::Cancelled),
            answer = tokio::time::timeout(timeout, self.check(spec)) => match answer {
                Ok(answer) => answer,
                Err(_) => Err(RuntimeError::Terminated(crate::runtime::Termination::DeadlineExceeded)),
            },
        }
    }

    async fn cancelled(&self) {
        let mut stop = self.stop.clone();
        while stop.changed().await.is_ok() {}
    }
}

/// `GET path` on `127.0.0.1:port` in `network`: the status.
async fn http_get(network: &Network, port: u16, path: &str) -> Result<StatusCode, RuntimeError> {
    let failed = |action: &'static str, source: std::io::Error| RuntimeError::Io {
        action,
        path: PathBuf::from(format!("port {port}")),
        source,
    };
    let stream = network
        .connect(port)
        .await
        .map_err(|e| failed("connect to", e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| failed("speak HTTP on", std::io::Error::other(e)))?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::USER_AGENT, "berth-probe")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| failed("build a request for", std::io::Error::other(e)))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed("get an answer from", std::io::Error::other(e)))?;
    Ok(response.status())
}

/// Copies a container's output, line by line, into its log; keeps the
/// last lines in `tail` when given.
async fn pump(
    output: impl AsyncRead + Unpin,
    stream: Stream,
    log: Option<GuestLog>,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let mut lines = BufReader::new(output).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        if let Some(tail) = &tail {
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == KEPT_STDERR_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&line).into_owned());
        }
        if let Some(log) = &log {
            log.append(stream, &[line]);
        }
    }
}

/// `: <last stderr lines>` to end a message with, or nothing.
fn tail_of(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
    format!(": {}", lines.join(" / "))
}

/// Waits until the runtime wrote the container's pid, or says why not.
async fn wait_for_pid(child: &mut tokio::process::Child, pid_file: &Path) -> Result<u32, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = tokio::fs::read_to_string(pid_file).await
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            return Ok(pid);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                return Err(format!(
                    "the runtime exited before the container started ({status})"
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for the runtime: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the container did not start within {}s",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The container's exit code: the runtime's, which passes the container's
/// through (128 + signal for a killed one).
fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
}

/// How many times the kernel OOM-killed a process in `cgroup` (v1:
/// `memory.oom_control`; v2: `memory.events`); 0 when unreadable.
fn read_oom_kills(cgroup: &str) -> u64 {
    let relative = cgroup.trim_start_matches('/');
    let v2 = Path::new("/sys/fs/cgroup")
        .join(relative)
        .join("memory.events");
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(relative)
        .join("memory.oom_control");
    [v1, v2]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| oom_kill_count(&text))
        .unwrap_or(0)
}

/// The `oom_kill N` line of a cgroup memory file.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// Whether `uid` is usable as a runtime container id and directory name.
fn is_container_id(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && !uid.starts_with('.')
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Removes a container directory: unmounts its root filesystem first.
fn remove_container_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    image::remove_rootfs_dir(&dir.join("rootfs")).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_come_from_either_cgroup_version() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), None);
        assert_eq!(read_oom_kills("/berth/no-such-cgroup"), 0);
    }

    #[test]
    fn uids_name_containers_only_when_safe() {
        assert!(is_container_id("0b6f6c0e-5c1a-4f8e-9a51-7b5f3a1d2c4e"));
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(!is_container_id(bad), "{bad}");
        }
    }

    #[test]
    fn signals_become_128_plus() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), Some(137));
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(1 << 8)),
            Some(1)
        );
    }
}
