//! Sandboxes: the worker processes instances run in, each inside a cgroup
//! of its own.
//!
//! By default a namespace's instances on a node share one sandbox
//! (density); `isolation: dedicated` gives an instance its own. The node
//! starts a worker (`berth sandbox`) when a sandbox gets its first
//! instance, puts it into `berth/<node>/<sandbox>` with limits derived from
//! what runs inside ([`cgroup`]), sends it the instances to load
//! ([`protocol`]), and hands it the client connections for the hosts it
//! serves ([`handoff`]). A worker that dies takes down only what ran
//! inside it: each of its instances is reported with the reason
//! (`OOMKilled` when the cgroup's OOM counter moved, else `Crashed`) and
//! restarted by the supervisor per its policy.
//!
//! **Architecture Invariant:** no guest code runs in the node process when
//! sandboxes are in use; a guest can take down at most its own sandbox.

pub mod cgroup;
pub mod handoff;
pub mod protocol;
pub mod worker;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use berth_api::lifecycle::Isolation;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

use self::cgroup::{CgroupRoot, SANDBOX_BASE_MEMORY, SandboxCgroup, SandboxLimits};
use self::protocol::{FromWorker, HostEvent, LoadSpec, ToWorker};
use crate::ingress::ConnectionDispatch;
use crate::logs::{LogStore, Stream};
use crate::metrics::Metrics;

/// How long a started worker gets to connect back.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a worker: the `berth` binary and `sandbox`.
#[derive(Debug, Clone)]
pub struct SandboxProgram {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the worker's own (`["sandbox"]`).
    pub args: Vec<OsString>,
}

/// What happened in a sandbox, for the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An instance event from the sandbox's host.
    Host(HostEvent),
    /// The sandbox's worker died with the instance in it.
    Died {
        /// Instance uid.
        uid: String,
        /// `OOMKilled` or `Crashed`.
        reason: String,
        /// Details.
        message: String,
    },
}

/// Compiles across the node's sandboxes, for metrics.
#[derive(Debug, Default)]
pub struct CompileTotals {
    compiled: AtomicU64,
    disk: AtomicU64,
}

impl CompileTotals {
    /// The totals so far.
    pub fn counts(&self) -> crate::metrics::CompileCounts {
        crate::metrics::CompileCounts {
            compiled: self.compiled.load(Ordering::Relaxed),
            disk: self.disk.load(Ordering::Relaxed),
        }
    }
}

/// Which sandbox an instance goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SandboxKey {
    Namespace(String),
    Dedicated(String),
}

impl SandboxKey {
    fn of(spec: &LoadSpec, isolation: Isolation) -> SandboxKey {
        match isolation {
            Isolation::Shared => SandboxKey::Namespace(spec.namespace.clone()),
            Isolation::Dedicated => SandboxKey::Dedicated(spec.uid.clone()),
        }
    }
}

/// An instance in a sandbox, with what bounds it.
#[derive(Debug, Clone)]
struct Member {
    namespace: String,
    deployment: String,
    memory_bytes: Option<u64>,
    cpu_millis: Option<u64>,
    /// Routed as soon as it is loaded: it has no readiness or startup probe.
    ready_at_load: bool,
    /// Requests credited to it, for usage reports: a sandbox's samples
    /// name the deployment, not the instance, so they are credited to the
    /// deployment's members in turn, as the worker's round-robin spreads
    /// them.
    requests: u64,
    /// The summed latency of those requests, in microseconds.
    latency_micros: u64,
    /// Of those requests, answers with a 5xx status.
    errors: u64,
    /// Of those requests, ones whose component the node stopped.
    traps: u64,
}

/// One worker process.
struct Sandbox {
    id: String,
    key: SandboxKey,
    control: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    connections: UnixStream,
    cgroup: Option<SandboxCgroup>,
    members: Mutex<HashMap<String, Member>>,
    /// Turns of the request crediting among members.
    credits: AtomicUsize,
}

impl Sandbox {
    fn members(&self) -> std::sync::MutexGuard<'_, HashMap<String, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cgroup limits for the current members: the sum of theirs plus
    /// the worker's base, unbounded if any member is.
    fn limits(&self) -> SandboxLimits {
        let members = self.members();
        let memory: Option<u64> = members
            .values()
            .map(|m| m.memory_bytes)
            .sum::<Option<u64>>()
            .map(|sum| sum.saturating_add(SANDBOX_BASE_MEMORY));
        let cpu = members.values().map(|m| m.cpu_millis).sum();
        SandboxLimits {
            memory_bytes: memory,
            cpu_millis: cpu,
        }
    }

    async fn send(&self, message: &ToWorker) -> Result<()> {
        let mut control = self.control.lock().await;
        protocol::send(&mut *control, message)
            .await
            .with_context(|| format!("sandbox {}", self.id))
    }
}

/// The sandboxes holding each `(namespace, deployment)`'s ready
/// instances, with the instances' uids.
type RoutingTable = HashMap<(String, String), Vec<(String, Arc<Sandbox>)>>;

/// Where a node's sandboxes come from.
#[derive(Debug, Clone)]
pub struct SandboxSetup {
    /// The node's name.
    pub node: String,
    /// How to start a worker.
    pub program: SandboxProgram,
    /// The node's data directory (compiled artifacts).
    pub data_dir: PathBuf,
    /// The ingress domain.
    pub domain: String,
}

/// The node's sandboxes and the routing of client connections to them.
pub struct Sandboxes {
    program: SandboxProgram,
    data_dir: PathBuf,
    domain: String,
    /// `domain` as routing compares it, normalised once.
    routing_domain: Arc<str>,
    cgroups: Option<CgroupRoot>,
    /// Why cgroups are not used, when they are not.
    cgroups_unavailable: Option<String>,
    listener: UnixListener,
    socket_name: String,
    /// Serialises worker start-ups, so each connects back in turn.
    starting: tokio::sync::Mutex<()>,
    /// Shared with the usage source installed in the metrics.
    sandboxes: Arc<Mutex<HashMap<SandboxKey, Arc<Sandbox>>>>,
    /// Ready instances by lowercase `(namespace, deployment)`.
    table: RwLock<RoutingTable>,
    /// The canaries the scheduler announced last, sent to every worker.
    canaries: Mutex<Vec<berth_api::wire::CanaryRoute>>,
    /// Their weights, for handing connections to sandboxes.
    splits: crate::ingress::weights::Splits,
    /// Serialises sending them to the workers.
    pushing_canaries: tokio::sync::Mutex<()>,
    next: AtomicUsize,
    serial: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
    metrics: Arc<Metrics>,
    compiles: Arc<CompileTotals>,
    logs: Arc<LogStore>,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("cgroups", &self.cgroups)
            .finish_non_exhaustive()
    }
}

impl Sandboxes {
    /// Sets up the node's sandboxes: finds cgroups (or says why not) and
    /// opens the socket workers connect back to.
    pub fn new(
        setup: SandboxSetup,
        events: mpsc::UnboundedSender<Event>,
        metrics: Arc<Metrics>,
        compiles: Arc<CompileTotals>,
        logs: Arc<LogStore>,
    ) -> Result<Sandboxes> {
        let SandboxSetup {
            node,
            program,
            data_dir,
            domain,
        } = setup;
        let node = node.as_str();
        let subtree = cgroup_subtree(node, &data_dir);
        let (cgroups, cgroups_unavailable) = match CgroupRoot::detect(&subtree) {
            Ok(root) => (Some(root), None),
            Err(why) => {
                tracing::warn!(reason = %why, "cgroups unavailable: sandboxes run without kernel limits");
                (None, Some(why))
            }
        };
        let socket_name = format!(
            "berth-sandboxes-{}-{}",
            std::process::id(),
            node_suffix(node)
        );
        let listener = {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket_name.as_bytes())?;
            let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
                .with_context(|| format!("cannot listen on @{socket_name}"))?;
            listener.set_nonblocking(true)?;
            UnixListener::from_std(listener)?
        };
        let sandboxes = Arc::new(Mutex::new(HashMap::new()));
        metrics.set_sandbox_source(usage_source(Arc::clone(&sandboxes), subtree.clone()));
        Ok(Sandboxes {
            program,
            data_dir,
            routing_domain: crate::ingress::normalize_domain(&domain),
            domain,
            cgroups,
            cgroups_unavailable,
            listener,
            socket_name,
            starting: tokio::sync::Mutex::new(()),
            sandboxes,
            table: RwLock::new(HashMap::new()),
            canaries: Mutex::new(Vec::new()),
            splits: crate::ingress::weights::Splits::default(),
            pushing_canaries: tokio::sync::Mutex::new(()),
            next: AtomicUsize::new(0),
            serial: AtomicU64::new(0),
            events,
            metrics,
            compiles,
            logs,
        })
    }

    /// `v1`, `v2`, or why cgroups are unavailable.
    pub fn cgroups(&self) -> Result<&'static str, &str> {
        match (&self.cgroups, &self.cgroups_unavailable) {
            (Some(root), _) => Ok(root.version().as_str()),
            (None, why) => Err(why.as_deref().unwrap_or("unknown")),
        }
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxKey, Arc<Sandbox>>> {
        self.sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the instance into its sandbox, starting the sandbox first if
    /// needed. Failures come back as a `Loaded` error event.
    pub async fn load(
        self: &Arc<Self>,
        spec: LoadSpec,
        isolation: Isolation,
        cpu_millis: Option<u64>,
    ) {
        let uid = spec.uid.clone();
        if let Err(e) = self.try_load(spec, isolation, cpu_millis).await {
            let _ = self.events.send(Event::Host(HostEvent::Loaded {
                uid,
                result: Err(("SandboxFailed".into(), format!("{e:#}"))),
            }));
        }
    }

    async fn try_load(
        self: &Arc<Self>,
        spec: LoadSpec,
        isolation: Isolation,
        cpu_millis: Option<u64>,
    ) -> Result<()> {
        let key = SandboxKey::of(&spec, isolation);
        let sandbox = self.sandbox(key).await?;
        sandbox.members().insert(
            spec.uid.clone(),
            Member {
                namespace: spec.namespace.to_ascii_lowercase(),
                deployment: spec.deployment.to_ascii_lowercase(),
                memory_bytes: spec.memory_limit_bytes,
                cpu_millis,
                ready_at_load: spec.probes.readiness.is_none() && spec.probes.startup.is_none(),
                requests: 0,
                latency_micros: 0,
                errors: 0,
                traps: 0,
            },
        );
        if let Some(cgroup) = &sandbox.cgroup
            && let Err(e) = cgroup.set_limits(sandbox.limits())
        {
            tracing::warn!(sandbox = %sandbox.id, error = %e, "cannot raise sandbox limits");
        }
        let canaries = self.canaries().clone();
        sandbox.send(&ToWorker::Canaries(canaries)).await?;
        sandbox.send(&ToWorker::Load(Box::new(spec))).await
    }

    fn canaries(&self) -> std::sync::MutexGuard<'_, Vec<berth_api::wire::CanaryRoute>> {
        self.canaries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every sandbox (and the connection dispatch here) how to
    /// split Deployments' requests between canary and stable revisions.
    /// The sending happens in a task, which sends whatever is newest
    /// when it runs, so that updates never arrive out of order.
    pub fn set_canaries(self: &Arc<Self>, canaries: &[berth_api::wire::CanaryRoute]) {
        {
            let mut current = self.canaries();
            if *current == canaries {
                return;
            }
            *current = canaries.to_vec();
        }
        self.splits.set(canaries);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _pushing = this.pushing_canaries.lock().await;
            let canaries = this.canaries().clone();
            let all: Vec<Arc<Sandbox>> = this.sandboxes().values().cloned().collect();
            for sandbox in all {
                if let Err(e) = sandbox.send(&ToWorker::Canaries(canaries.clone())).await {
                    tracing::debug!(sandbox = %sandbox.id, error = %format!("{e:#}"), "canary weights");
                }
            }
        });
    }

    /// The sandbox for `key`, started if it is not running.
    async fn sandbox(self: &Arc<Self>, key: SandboxKey) -> Result<Arc<Sandbox>> {
        let _starting = self.starting.lock().await;
        if let Some(sandbox) = self.sandboxes().get(&key) {
            return Ok(Arc::clone(sandbox));
        }
        let sandbox = self.start(key.clone()).await?;
        self.sandboxes().insert(key, Arc::clone(&sandbox));
        Ok(sandbox)
    }

    async fn start(self: &Arc<Self>, key: SandboxKey) -> Result<Arc<Sandbox>> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let id = match &key {
            // The node's pid tells this run's sandboxes from a crashed one's.
            SandboxKey::Namespace(ns) => format!("ns-{ns}-{}-{serial}", std::process::id()),
            SandboxKey::Dedicated(uid) => {
                format!("dedicated-{uid}-{}-{serial}", std::process::id())
            }
        };
        let cgroup = match &self.cgroups {
            Some(root) => Some(
                root.create(&id, SandboxLimits::default())
                    .map_err(|e| anyhow!("cannot create the cgroup of sandbox {id}: {e}"))?,
            ),
            None => None,
        };
        let mut child = tokio::process::Command::new(&self.program.program)
            .args(&self.program.args)
            .arg("--socket")
            .arg(&self.socket_name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--domain")
            .arg(&self.domain)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.program.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("sandbox {id} exited at once"))?;
        if let Some(cgroup) = &cgroup
            && let Err(e) = cgroup.add(pid)
        {
            let _ = child.start_kill();
            cgroup.delete();
            return Err(anyhow!("cannot put sandbox {id} into its cgroup: {e}"));
        }
        let (control, connections) =
            match tokio::time::timeout(CONNECT_TIMEOUT, self.accept_pair(pid)).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    let _ = child.start_kill();
                    return Err(e);
                }
                Err(_) => {
                    let _ = child.start_kill();
                    return Err(anyhow!("sandbox {id} did not connect back"));
                }
            };
        let (reader, writer) = control.into_split();
        let sandbox = Arc::new(Sandbox {
            id: id.clone(),
            key,
            control: tokio::sync::Mutex::new(writer),
            connections,
            cgroup,
            members: Mutex::new(HashMap::new()),
            credits: AtomicUsize::new(0),
        });
        tracing::info!(sandbox = %id, pid, "sandbox started");
        let this = Arc::clone(self);
        let watched = Arc::clone(&sandbox);
        tokio::spawn(async move { this.watch(watched, child, reader).await });
        Ok(sandbox)
    }

    /// Accepts the worker's two connections, checking each comes from it.
    async fn accept_pair(&self, pid: u32) -> Result<(UnixStream, UnixStream)> {
        let mut control = None;
        let mut connections = None;
        while control.is_none() || connections.is_none() {
            let (mut stream, _) = self.listener.accept().await?;
            let peer = stream.peer_cred()?.pid();
            if peer.and_then(|p| u32::try_from(p).ok()) != Some(pid) {
                tracing::warn!(
                    ?peer,
                    expected = pid,
                    "refusing a sandbox connection from another process"
                );
                continue;
            }
            match stream.read_u8().await? {
                handoff::ROLE_CONTROL => control = Some(stream),
                handoff::ROLE_CONNECTIONS => connections = Some(stream),
                other => return Err(anyhow!("sandbox sent unknown role {other}")),
            }
        }
        control
            .zip(connections)
            .ok_or_else(|| anyhow!("sandbox connections missing"))
    }

    /// Relays the worker's messages until it exits, then reports its
    /// instances and cleans up.
    async fn watch(
        self: Arc<Self>,
        sandbox: Arc<Sandbox>,
        mut child: tokio::process::Child,
        reader: tokio::net::unix::OwnedReadHalf,
    ) {
        let mut reader = tokio::io::BufReader::new(reader);
        let oom_before = sandbox.cgroup.as_ref().map_or(0, SandboxCgroup::oom_kills);
        loop {
            match protocol::recv::<FromWorker>(&mut reader).await {
                Ok(Some(message)) => self.relay(&sandbox, message),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "bad message from sandbox; stopping it");
                    let _ = child.start_kill();
                    break;
                }
            }
        }
        let status = child.wait().await;
        let oom = sandbox.cgroup.as_ref().map_or(0, SandboxCgroup::oom_kills) > oom_before;
        let (reason, message) = if oom {
            (
                "OOMKilled",
                format!(
                    "sandbox {} exceeded its cgroup memory limit and was killed by the kernel",
                    sandbox.id
                ),
            )
        } else {
            (
                "Crashed",
                match status {
                    Ok(status) => format!("sandbox {} exited: {status}", sandbox.id),
                    Err(e) => format!("sandbox {} vanished: {e}", sandbox.id),
                },
            )
        };
        {
            let mut sandboxes = self.sandboxes();
            if sandboxes
                .get(&sandbox.key)
                .is_some_and(|s| Arc::ptr_eq(s, &sandbox))
            {
                sandboxes.remove(&sandbox.key);
            }
        }
        let members: Vec<String> = sandbox.members().drain().map(|(uid, _)| uid).collect();
        for uid in &members {
            self.unroute(uid);
        }
        if !members.is_empty() {
            tracing::warn!(sandbox = %sandbox.id, %reason, %message, "sandbox died");
        }
        for uid in members {
            let _ = self.events.send(Event::Died {
                uid,
                reason: reason.to_owned(),
                message: message.clone(),
            });
        }
        if let Some(cgroup) = &sandbox.cgroup {
            cgroup.delete();
        }
    }

    fn relay(&self, sandbox: &Arc<Sandbox>, message: FromWorker) {
        match message {
            FromWorker::Event(event) => {
                match &event {
                    HostEvent::Loaded {
                        uid,
                        result: Ok(()),
                    } => self.route_if_ready(sandbox, uid),
                    HostEvent::Ready { uid, ready, .. } => {
                        if *ready {
                            self.route(sandbox, uid);
                        } else {
                            self.unroute(uid);
                        }
                    }
                    HostEvent::Unhealthy { uid, .. } => self.unroute(uid),
                    _ => {}
                }
                let _ = self.events.send(Event::Host(event));
            }
            FromWorker::Log { uid, stream, lines } => {
                // Only instances of this sandbox may write logs, to their own.
                if !sandbox.members().contains_key(&uid) {
                    return;
                }
                let stream = if stream == 2 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                if let Ok(log) = self.logs.open(&uid) {
                    log.append(stream, &lines);
                }
            }
            FromWorker::Compiles { compiled, disk } => {
                self.compiles
                    .compiled
                    .fetch_add(compiled, Ordering::Relaxed);
                self.compiles.disk.fetch_add(disk, Ordering::Relaxed);
            }
            FromWorker::Instantiations(seconds) => {
                for seconds in seconds {
                    self.metrics.instantiated(seconds);
                }
            }
            FromWorker::Requests(samples) => {
                let mut members = sandbox.members();
                for sample in samples {
                    if let Some(reason) = sample.terminated {
                        self.metrics.terminated(static_reason(&reason));
                        continue;
                    }
                    // Label values come from this node's own table, never
                    // from what a sandbox says alone.
                    let mut serving: Vec<&mut Member> = members
                        .iter_mut()
                        .filter(|(uid, m)| {
                            m.namespace == sample.namespace
                                && m.deployment == sample.deployment
                                && (sample.uid.is_empty() || **uid == sample.uid)
                        })
                        .map(|(_, m)| m)
                        .collect();
                    let known = !serving.is_empty();
                    // A sample naming its instance is credited to it; one
                    // that does not, to the deployment's members in turn.
                    let turn = sandbox.credits.fetch_add(1, Ordering::Relaxed);
                    if let Some(count) = turn.checked_rem(serving.len())
                        && let Some(member) = serving.get_mut(count)
                    {
                        member.requests = member.requests.saturating_add(1);
                        member.latency_micros =
                            member.latency_micros.saturating_add(micros(sample.seconds));
                        if sample.status >= 500 {
                            member.errors = member.errors.saturating_add(1);
                        }
                        if sample.trapped {
                            member.traps = member.traps.saturating_add(1);
                        }
                    }
                    let (namespace, deployment) = if known {
                        (sample.namespace.as_str(), sample.deployment.as_str())
                    } else {
                        ("", "")
                    };
                    self.metrics
                        .request(namespace, deployment, sample.status, sample.seconds);
                }
            }
        }
    }

    /// Routes a loaded instance unless a probe must pass first (the
    /// worker says so with a `Ready` event).
    fn route_if_ready(&self, sandbox: &Arc<Sandbox>, uid: &str) {
        if sandbox.members().get(uid).is_some_and(|m| m.ready_at_load) {
            self.route(sandbox, uid);
        }
    }

    fn route(&self, sandbox: &Arc<Sandbox>, uid: &str) {
        let Some(member) = sandbox.members().get(uid).cloned() else {
            return;
        };
        if member.deployment.is_empty() {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let entry = table
            .entry((member.namespace, member.deployment))
            .or_default();
        if !entry.iter().any(|(u, _)| u == uid) {
            entry.push((uid.to_owned(), Arc::clone(sandbox)));
        }
    }

    fn unroute(&self, uid: &str) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.retain(|_, entries| {
            entries.retain(|(u, _)| u != uid);
            !entries.is_empty()
        });
    }

    /// Stops routing to the instance and unloads it from its sandbox; a
    /// sandbox left empty is stopped after the grace period.
    pub async fn unload(self: &Arc<Self>, uid: &str, grace: Duration) {
        self.unroute(uid);
        let sandbox = self
            .sandboxes()
            .values()
            .find(|s| s.members().contains_key(uid))
            .cloned();
        let Some(sandbox) = sandbox else { return };
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = sandbox
            .send(&ToWorker::Unload {
                uid: uid.to_owned(),
                grace_ms,
            })
            .await
        {
            tracing::debug!(error = %format!("{e:#}"), "unload");
        }
        sandbox.members().remove(uid);
        if sandbox.members().is_empty() {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(grace + Duration::from_millis(100)).await;
                this.stop_if_empty(&sandbox);
            });
        } else if let Some(cgroup) = &sandbox.cgroup {
            let _ = cgroup.set_limits(sandbox.limits());
        }
    }

    fn stop_if_empty(&self, sandbox: &Arc<Sandbox>) {
        let mut sandboxes = self.sandboxes();
        if sandbox.members().is_empty()
            && sandboxes
                .get(&sandbox.key)
                .is_some_and(|s| Arc::ptr_eq(s, sandbox))
        {
            // Dropping the last handle closes the control connection: the
            // worker exits, and its watcher removes the cgroup.
            sandboxes.remove(&sandbox.key);
            tracing::info!(sandbox = %sandbox.id, "sandbox stopping: no instances left");
            let sandbox = Arc::clone(sandbox);
            tokio::spawn(async move {
                let mut control = sandbox.control.lock().await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut *control).await;
            });
        }
    }

    fn pick(&self, namespace: &str, deployment: &str) -> Option<Arc<Sandbox>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let entries = table.get(&(namespace.to_owned(), deployment.to_owned()))?;
        // While a canary runs, a connection goes to the canary's or the
        // stable's sandboxes by weight (the worker splits again per
        // request among the instances it holds).
        let entries: Vec<&(String, Arc<Sandbox>)> = match self.splits.get(namespace, deployment) {
            Some(split) => split
                .side(entries.iter().map(|(uid, _)| uid.as_str()))
                .into_iter()
                .filter_map(|i| entries.get(i))
                .collect(),
            None => entries.iter().collect(),
        };
        let count = entries.len();
        if count == 0 {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % count;
        entries.get(index).map(|(_, sandbox)| Arc::clone(sandbox))
    }

    async fn dispatch_stream(&self, stream: TcpStream, host: String) -> Option<TcpStream> {
        let Some((deployment, namespace)) =
            crate::ingress::deployment_of(&host, &self.routing_domain)
        else {
            return Some(stream);
        };
        let Some(sandbox) = self.pick(namespace, deployment) else {
            // Nobody here serves it: the node answers (404).
            return Some(stream);
        };
        if let Err(e) = handoff::send(&sandbox.connections, stream).await {
            tracing::warn!(sandbox = %sandbox.id, error = %e, "cannot hand a connection to its sandbox");
        }
        None
    }

    /// Stops every worker (they exit when their control connection
    /// closes) and waits up to a few seconds for them to go.
    pub async fn stop_all(&self) {
        let all: Vec<Arc<Sandbox>> = self.sandboxes().drain().map(|(_, s)| s).collect();
        for sandbox in &all {
            let mut control = sandbox.control.lock().await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut *control).await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for sandbox in &all {
            while Arc::strong_count(sandbox) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Removes the node's cgroup subtree; call after every worker exited.
    pub fn remove_cgroups(&self) {
        if let Some(root) = &self.cgroups {
            root.remove();
        }
    }
}

impl ConnectionDispatch for Sandboxes {
    fn dispatch(
        &self,
        stream: TcpStream,
        host: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<TcpStream>> + Send + '_>> {
        Box::pin(self.dispatch_stream(stream, host))
    }
}

/// Reads each sandbox's cgroup usage and its members' request counts, for
/// the metrics and the usage reports.
/// Containers count as sandboxes of one instance each (`oci-<uid>`), from
/// the cgroups `crate::oci` makes beside the node's subtree; their requests
/// are not counted.
fn usage_source(
    sandboxes: Arc<Mutex<HashMap<SandboxKey, Arc<Sandbox>>>>,
    subtree: String,
) -> impl Fn() -> Vec<crate::metrics::SandboxUsage> + Send + Sync + 'static {
    move || {
        let all: Vec<Arc<Sandbox>> = sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.iter()
            .map(|sandbox| {
                let usage = sandbox
                    .cgroup
                    .as_ref()
                    .map(SandboxCgroup::usage)
                    .unwrap_or_default();
                crate::metrics::SandboxUsage {
                    id: sandbox.id.clone(),
                    memory_bytes: usage.memory_bytes,
                    cpu_nanos: usage.cpu_nanos,
                    members: sandbox
                        .members()
                        .iter()
                        .map(|(uid, member)| crate::metrics::MemberUsage {
                            uid: uid.clone(),
                            requests: member.requests,
                            latency_micros: member.latency_micros,
                            errors: member.errors,
                            traps: member.traps,
                        })
                        .collect(),
                }
            })
            .chain(
                cgroup::container_usage(&subtree)
                    .into_iter()
                    .map(|(uid, usage)| crate::metrics::SandboxUsage {
                        id: format!("oci-{uid}"),
                        memory_bytes: usage.memory_bytes,
                        cpu_nanos: usage.cpu_nanos,
                        members: vec![crate::metrics::MemberUsage {
                            uid,
                            ..crate::metrics::MemberUsage::default()
                        }],
                    }),
            )
            .collect()
    }
}

/// Seconds as whole microseconds; nonsense (negative, NaN) is 0.
fn micros(seconds: f64) -> u64 {
    let micros = (seconds * 1e6).round();
    if micros.is_finite() && micros > 0.0 {
        // In range: checked above, and u64 saturates on the cast.
        micros as u64
    } else {
        0
    }
}

/// A termination reason from a worker as one of the node's label values.
fn static_reason(reason: &str) -> &'static str {
    const REASONS: [&str; 7] = [
        "DeadlineExceeded",
        "MemoryLimitExceeded",
        "TableLimitExceeded",
        "StackOverflow",
        "FuelExhausted",
        "Trap",
        "Cancelled",
    ];
    REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("Other")
}

/// The name of the node's cgroup subtree (under `berth/`): the node's
/// across restarts (name and data directory), and no other node's on the
/// same machine.
pub fn cgroup_subtree(node: &str, data_dir: &std::path::Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!(
        "{}-{}",
        node_suffix(node),
        hex::encode(digest.get(..4).unwrap_or_default())
    )
}

/// The node name, cut to what fits an abstract socket name comfortably.
fn node_suffix(node: &str) -> String {
    node.chars().take(40).collect()
}
