//! Turns assignments into running instances and remembers how each is doing.
//!
//! An assigned instance goes Starting (fetch the component by digest unless
//! it is on disk, from the scheduler or, for `oci://`, from its registry;
//! then load it into its sandbox, where it is compiled or
//! loaded from the compiled artifact and pre-instantiated) then Running or
//! Failed. What runs it is an [`Executor`]: sandboxes (worker processes in
//! cgroups, what `berth node` uses) or, for embedders and tests, the node's
//! own process. An instance no longer assigned stops taking new requests at
//! once; its requests in flight get its grace period.
//!
//! Restarts follow the instance's `restartPolicy` with back-off
//! ([`crate::backoff`]): a sandbox that died (`OOMKilled`, `Crashed`), a
//! failed liveness or startup probe, a command that exited. A component
//! that cannot be fetched or prepared is not restarted: fetches are retried
//! at each heartbeat, and an invalid component stays `Failed`.
//!
//! Nothing here depends on the scheduler being reachable once an instance
//! runs: the node keeps serving what it has.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use berth_api::Phase;
use berth_api::lifecycle::RestartPolicy;
use berth_api::quic;
use berth_api::wire::{Assignment, Assignments, InstanceReport, NodeReport, Request, Response};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use crate::backoff::{CRASH_LOOP_BACK_OFF, RestartBackoff};
use crate::host::InstanceHost;
use crate::logs::LogStore;
use crate::oci::Containers;
use crate::sandbox::protocol::{HostEvent, LoadSpec};
use crate::sandbox::{Event, Sandboxes};

/// What runs instances.
#[derive(Debug, Clone)]
pub enum Executor {
    /// Worker processes in cgroups.
    Sandboxed(Arc<Sandboxes>),
    /// The node's own process.
    InProcess(Arc<InstanceHost>),
}

#[derive(Debug)]
struct State {
    assignment: Assignment,
    phase: Phase,
    reason: String,
    message: String,
    ready: bool,
    exit_code: Option<i32>,
    backoff: RestartBackoff,
    /// Bumped at each (re)start, so that a late restart timer of an earlier
    /// run does nothing.
    generation: u64,
}

impl State {
    fn new(assignment: Assignment) -> State {
        State {
            assignment,
            phase: Phase::Starting,
            reason: String::new(),
            message: String::new(),
            ready: false,
            exit_code: None,
            backoff: RestartBackoff::default(),
            generation: 0,
        }
    }
}

/// The node's instances.
pub struct Supervisor {
    executor: Executor,
    /// What runs container instances, on nodes offering `oci`.
    containers: Option<Arc<Containers>>,
    components: PathBuf,
    logs: Arc<LogStore>,
    states: Mutex<HashMap<String, State>>,
    /// Digests of the components on disk.
    held: Mutex<BTreeSet<String>>,
    /// The node's service router, given to every instance loaded.
    service_router: std::sync::OnceLock<std::net::SocketAddr>,
    /// Told the Deployments that may be at zero, and the connection to
    /// wake them on, with every assignments (see [`crate::wake`]).
    waker: std::sync::OnceLock<Arc<crate::wake::Waker>>,
    /// Woken whenever an instance changes phase, so the agent reports at once.
    pub changed: Notify,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor keeping components under `data_dir/components`,
    /// running instances with `executor` (containers with `containers`),
    /// and learning what happens to them from `events`.
    pub fn new(
        executor: Executor,
        containers: Option<Arc<Containers>>,
        logs: Arc<LogStore>,
        data_dir: &Path,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> Result<Arc<Supervisor>> {
        let components = data_dir.join("components");
        std::fs::create_dir_all(&components)
            .with_context(|| format!("cannot create {}", components.display()))?;
        let held = std::fs::read_dir(&components)
            .with_context(|| format!("cannot read {}", components.display()))?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let hex = name.strip_suffix(".wasm")?;
                (hex.len() == 64).then(|| format!("sha256:{hex}"))
            })
            .collect();
        let supervisor = Arc::new(Supervisor {
            executor,
            containers,
            components,
            logs,
            held: Mutex::new(held),
            states: Mutex::new(HashMap::new()),
            service_router: std::sync::OnceLock::new(),
            waker: std::sync::OnceLock::new(),
            changed: Notify::new(),
        });
        let weak = Arc::downgrade(&supervisor);
        tokio::spawn(handle_events(weak, events));
        tokio::spawn(expire_logs(Arc::downgrade(&supervisor)));
        Ok(supervisor)
    }

    /// Sends the calls to Services of every instance loaded from now on to
    /// `router` (the node's [`crate::services::ServiceRouter`]); the first
    /// router given stays.
    pub fn route_services_through(&self, router: std::net::SocketAddr) {
        let _ = self.service_router.set(router);
    }

    /// Keeps `waker` up to date with every assignments; the first given
    /// stays.
    pub fn wake_through(&self, waker: Arc<crate::wake::Waker>) {
        let _ = self.waker.set(waker);
    }

    /// The instances' logs.
    pub fn logs(&self) -> &LogStore {
        &self.logs
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the node reports in its heartbeat.
    pub fn report(&self) -> NodeReport {
        let mut instances: Vec<InstanceReport> = self
            .states()
            .iter()
            .map(|(uid, state)| InstanceReport {
                uid: uid.clone(),
                phase: state.phase,
                reason: state.reason.clone(),
                message: state.message.clone(),
                ready: state.ready && state.phase == Phase::Running,
                restart_count: state.backoff.restarts(),
                exit_code: state.exit_code,
            })
            .collect();
        instances.sort_by(|a, b| a.uid.cmp(&b.uid));
        let components = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        NodeReport {
            instances,
            components,
            // Filled in by the agent (`crate::metrics::usage`).
            usage: Default::default(),
        }
    }

    /// Starts again the instances whose component could not be fetched.
    pub fn retry_fetches(self: &Arc<Self>, connection: &quinn::Connection) {
        let mut to_start = Vec::new();
        for state in self.states().values_mut() {
            if is_retried(state) {
                state.phase = Phase::Starting;
                state.reason.clear();
                state.message.clear();
                to_start.push(state.assignment.clone());
            }
        }
        for assignment in to_start {
            let this = self.clone();
            let connection = connection.clone();
            tokio::spawn(async move { this.start(assignment, Some(connection)).await });
        }
    }

    /// Starts what is newly assigned and stops what no longer is. Instances
    /// that failed to fetch are retried.
    pub fn apply(self: &Arc<Self>, assignments: Assignments, connection: &quinn::Connection) {
        // Canary weights first: a canary instance starting below is
        // split by them as soon as it is routed.
        match &self.executor {
            Executor::Sandboxed(sandboxes) => sandboxes.set_canaries(&assignments.canaries),
            Executor::InProcess(host) => host.routes().set_canaries(&assignments.canaries),
        }
        if let Some(waker) = self.waker.get() {
            waker.connected(connection);
            waker.update(&assignments.scale_to_zero);
        }
        let wanted: HashMap<String, Assignment> = assignments
            .instances
            .into_iter()
            .map(|a| (a.uid.clone(), a))
            .collect();
        let mut to_start = Vec::new();
        let mut to_stop = Vec::new();
        {
            let mut states = self.states();
            states.retain(|uid, state| {
                let keep = wanted.contains_key(uid);
                if !keep {
                    to_stop.push((uid.clone(), state.assignment.termination_grace_seconds));
                    info!(instance = %state.assignment.name, "stopping");
                }
                keep
            });
            for (uid, assignment) in wanted {
                let retry = states.get(&uid).is_some_and(is_retried);
                if states.contains_key(&uid) && !retry {
                    continue;
                }
                states.insert(uid, State::new(assignment.clone()));
                to_start.push(assignment);
            }
        }
        self.changed.notify_one();
        for (uid, grace) in to_stop {
            let this = self.clone();
            tokio::spawn(async move {
                this.unload(&uid, Duration::from_secs(u64::from(grace)))
                    .await;
                this.logs.close(&uid);
            });
        }
        for assignment in to_start {
            let this = self.clone();
            let connection = connection.clone();
            tokio::spawn(async move { this.start(assignment, Some(connection)).await });
        }
    }

    async fn unload(&self, uid: &str, grace: Duration) {
        if let Some(containers) = &self.containers
            && containers.has(uid)
        {
            containers.unload(uid, grace).await;
            return;
        }
        match &self.executor {
            Executor::Sandboxed(sandboxes) => sandboxes.unload(uid, grace).await,
            Executor::InProcess(host) => host.unload(uid, grace),
        }
    }

    /// Starts the instance in a "start instance" span, a child of the trace
    /// that created it (`Assignment::traceparent`).
    async fn start(self: Arc<Self>, assignment: Assignment, connection: Option<quinn::Connection>) {
        let span = tracing::info_span!("start instance", instance = %assignment.name);
        berth_api::trace::set_parent_text(&span, &assignment.traceparent);
        tracing::Instrument::instrument(self.start_traced(assignment, connection), span).await;
    }

    /// Fetches the component (unless on disk; without a connection it must
    /// be) and loads the instance.
    async fn start_traced(
        self: Arc<Self>,
        assignment: Assignment,
        connection: Option<quinn::Connection>,
    ) {
        let uid = assignment.uid.clone();
        if assignment.container.is_some() {
            match &self.containers {
                Some(containers) => containers.load(assignment.clone(), self.log(&assignment)),
                None => self.update(&uid, |state| {
                    state.phase = Phase::Failed;
                    state.reason = "CreateContainerError".into();
                    state.message =
                        "this node does not run containers (start it with --runtime oci)".into();
                }),
            }
            return;
        }
        let fetched = if crate::oci::component::is_oci(&assignment.component) {
            self.pulled(&assignment.component).await
        } else {
            match &connection {
                Some(connection) => self.fetch(&assignment.component, connection).await,
                None => self.on_disk(&assignment.component),
            }
            .map(|path| (path, assignment.component.clone()))
        };
        let (path, digest) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                warn!(instance = %assignment.name, error = %format!("{e:#}"), "cannot fetch component");
                self.update(&uid, |state| {
                    state.phase = Phase::Failed;
                    // A registry pull fails as a container image's does.
                    state.reason = if crate::oci::component::is_oci(&assignment.component) {
                        "ErrImagePull".into()
                    } else {
                        "FetchFailed".into()
                    };
                    state.message = format!("{e:#}");
                });
                return;
            }
        };
        if !self.states().contains_key(&uid) {
            return;
        }
        let spec = LoadSpec {
            service_router: self.service_router.get().copied(),
            digest,
            ..load_spec(&assignment, path)
        };
        match &self.executor {
            Executor::Sandboxed(sandboxes) => {
                let cpu =
                    (assignment.limits.cpu_millis > 0).then_some(assignment.limits.cpu_millis);
                sandboxes.load(spec, assignment.isolation, cpu).await;
            }
            Executor::InProcess(host) => host.load(spec, self.log(&assignment)),
        }
    }

    /// Changes the state of `uid`, if still assigned, and reports.
    fn update(&self, uid: &str, change: impl FnOnce(&mut State)) {
        if let Some(state) = self.states().get_mut(uid) {
            change(state);
        }
        self.changed.notify_one();
    }

    fn on_event(self: &Arc<Self>, event: Event) {
        match event {
            Event::Host(HostEvent::Loaded { uid, result }) => match result {
                Ok(()) => self.update(&uid, |state| {
                    state.phase = Phase::Running;
                    state.reason.clear();
                    state.message.clear();
                    state.ready = crate::probes::initially_ready(&state.assignment.probes);
                    state.backoff.started(Instant::now());
                    info!(instance = %state.assignment.name, "running");
                }),
                Err((reason, message)) => self.update(&uid, |state| {
                    warn!(instance = %state.assignment.name, %reason, %message, "failed to start");
                    state.phase = Phase::Failed;
                    state.reason = reason;
                    state.message = message;
                    state.ready = false;
                }),
            },
            Event::Host(HostEvent::Ready {
                uid,
                ready,
                message,
            }) => self.update(&uid, |state| {
                state.ready = ready;
                if state.phase == Phase::Running {
                    state.message = message;
                }
            }),
            Event::Host(HostEvent::Unhealthy { uid, message }) => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    this.unload(&uid, Duration::ZERO).await;
                    this.fail_and_restart(&uid, Phase::Running, "Unhealthy", message, None);
                });
            }
            Event::Host(HostEvent::Exited {
                uid,
                exit_code,
                reason,
                message,
            }) => {
                let succeeded = exit_code == Some(0);
                let phase = if succeeded {
                    Phase::Succeeded
                } else {
                    Phase::Failed
                };
                self.fail_and_restart(&uid, phase, &reason, message, exit_code);
            }
            Event::Died {
                uid,
                reason,
                message,
            } => self.fail_and_restart(&uid, Phase::Failed, &reason, message, None),
        }
    }

    /// Records how a run ended and restarts the instance if its policy
    /// says so, after its back-off.
    fn fail_and_restart(
        self: &Arc<Self>,
        uid: &str,
        phase: Phase,
        reason: &str,
        message: String,
        exit_code: Option<i32>,
    ) {
        let mut restart = None;
        self.update(uid, |state| {
            let restarts = match state.assignment.restart_policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => phase != Phase::Succeeded,
                RestartPolicy::Never => false,
            };
            state.exit_code = exit_code;
            state.ready = false;
            if !restarts {
                state.phase = phase;
                state.reason = reason.to_owned();
                state.message = message;
                return;
            }
            let first = state.backoff.restarts() == 0;
            let delay = state.backoff.failed(Instant::now());
            state.generation += 1;
            restart = Some((state.assignment.clone(), state.generation, delay));
            state.phase = if phase == Phase::Running {
                Phase::Running
            } else {
                Phase::Failed
            };
            if first {
                state.reason = reason.to_owned();
                state.message = format!("{message}; restarting in {}s", delay.as_secs());
            } else {
                state.reason = CRASH_LOOP_BACK_OFF.into();
                state.message = format!(
                    "back-off {}s restarting failed instance; last termination: {reason}: {message}",
                    delay.as_secs()
                );
            }
            warn!(instance = %state.assignment.name, %reason, delay = ?delay, "restarting");
        });
        if let Some((assignment, generation, delay)) = restart {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let current = this
                    .states()
                    .get(&assignment.uid)
                    .is_some_and(|s| s.generation == generation);
                if current {
                    this.start(assignment, None).await;
                }
            });
        }
    }

    /// The instance's log; without one (a uid that makes no file name,
    /// which the scheduler never sends) its output is discarded.
    fn log(&self, assignment: &Assignment) -> Option<crate::logs::GuestLog> {
        self.logs
            .open(&assignment.uid)
            .inspect_err(|e| warn!(instance = %assignment.name, error = %e, "no log file"))
            .ok()
    }

    /// Where the component with `digest` is (or would be) kept, and the
    /// digest's hex part; a digest that names no file is an error.
    fn component_path<'d>(&self, digest: &'d str) -> Result<(PathBuf, &'d str)> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("invalid component digest {digest:?}"))?;
        Ok((self.components.join(format!("{hex}.wasm")), hex))
    }

    /// The component's path, which must be on disk already.
    fn on_disk(&self, digest: &str) -> Result<PathBuf> {
        let (path, _) = self.component_path(digest)?;
        if !path.exists() {
            bail!("component {digest} is no longer on disk");
        }
        Ok(path)
    }

    /// The component's path on disk, fetched from the scheduler if needed
    /// and verified against its digest.
    async fn fetch(&self, digest: &str, connection: &quinn::Connection) -> Result<PathBuf> {
        let (path, hex) = self.component_path(digest)?;
        if path.exists() {
            return Ok(path);
        }
        let response = quic::call(
            connection,
            &Request::GetBlob {
                digest: digest.to_owned(),
            },
        )
        .await?;
        let bytes = match response {
            Response::Blob(bytes) => bytes,
            Response::Error(e) => bail!("fetching {digest}: {e}"),
            other => bail!("fetching {digest}: unexpected answer {other:?}"),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != hex {
            bail!("fetching {digest}: content has digest sha256:{actual}");
        }
        self.keep(digest, &path, &bytes).await
    }

    /// The component a registry holds at `reference`
    /// (`oci://REGISTRY/REPO@sha256:...`, pinned at apply) and its content
    /// digest. Pulled once by this node, `pull` checking the manifest and
    /// layer digests; kept like an uploaded component under its content
    /// digest, with `oci-<manifest hex>.ref` naming that digest so later
    /// starts need no registry.
    async fn pulled(&self, reference: &str) -> Result<(PathBuf, String)> {
        let manifest_hex = reference
            .rsplit_once("@sha256:")
            .map(|(_, hex)| hex)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("component {reference:?} is not pinned to a digest"))?;
        let pointer = self.components.join(format!("oci-{manifest_hex}.ref"));
        if let Ok(digest) = tokio::fs::read_to_string(&pointer).await
            && let Ok((path, _)) = self.component_path(digest.trim())
            && path.exists()
        {
            return Ok((path, digest.trim().to_owned()));
        }
        let pulled = crate::oci::component::pull(reference)
            .await
            .with_context(|| format!("pulling {reference}"))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&pulled.bytes)));
        let (path, _) = self.component_path(&digest)?;
        let path = self.keep(&digest, &path, &pulled.bytes).await?;
        let partial = pointer.with_extension(format!("partial-{}", unique_suffix()));
        tokio::fs::write(&partial, &digest)
            .await
            .with_context(|| format!("cannot write {}", partial.display()))?;
        tokio::fs::rename(&partial, &pointer)
            .await
            .with_context(|| format!("cannot write {}", pointer.display()))?;
        Ok((path, digest))
    }

    /// Writes the fetched component `bytes` to `path` and notes it held.
    async fn keep(&self, digest: &str, path: &Path, bytes: &[u8]) -> Result<PathBuf> {
        // Instances of one component may fetch it at once: each writes its
        // own temporary file, and the renames replace one another atomically.
        let partial = path.with_extension(format!("partial-{}", unique_suffix()));
        tokio::fs::write(&partial, bytes)
            .await
            .with_context(|| format!("cannot write {}", partial.display()))?;
        tokio::fs::rename(&partial, path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest.to_owned());
        Ok(path.to_path_buf())
    }
}

/// Whether a failed start is tried again at the next heartbeat: a
/// component that could not be fetched, an image that could not be pulled.
fn is_retried(state: &State) -> bool {
    state.phase == Phase::Failed
        && (state.reason == "FetchFailed" || state.reason == "ErrImagePull")
}

/// Feeds what executors report to the supervisor, while it lives.
async fn handle_events(supervisor: Weak<Supervisor>, mut events: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        let Some(supervisor) = supervisor.upgrade() else {
            return;
        };
        supervisor.on_event(event);
    }
}

/// Removes old logs of instances gone from this node, at start and then
/// hourly.
async fn expire_logs(supervisor: Weak<Supervisor>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60 * 60));
    loop {
        tick.tick().await;
        let Some(supervisor) = supervisor.upgrade() else {
            return;
        };
        let removed = tokio::task::spawn_blocking(move || {
            supervisor.logs.remove_expired(crate::logs::LOG_RETENTION)
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            info!(removed, "removed expired instance logs");
        }
    }
}

/// What a sandbox needs to load the assigned instance from `wasm`.
fn load_spec(assignment: &Assignment, wasm: PathBuf) -> LoadSpec {
    let mut env = assignment.env.clone();
    env.push(("BERTH_INSTANCE".into(), assignment.name.clone()));
    env.push(("BERTH_NAMESPACE".into(), assignment.namespace.clone()));
    env.push(("BERTH_DEPLOYMENT".into(), assignment.deployment.clone()));
    let timeout = match assignment.request_timeout_seconds {
        0 => crate::runtime::DEFAULT_REQUEST_TIMEOUT,
        seconds => Duration::from_secs(u64::from(seconds)),
    };
    LoadSpec {
        uid: assignment.uid.clone(),
        name: assignment.name.clone(),
        namespace: assignment.namespace.clone(),
        deployment: assignment.deployment.clone(),
        digest: assignment.component.clone(),
        wasm,
        env,
        memory_limit_bytes: (assignment.limits.memory_bytes > 0)
            .then_some(assignment.limits.memory_bytes),
        allowed_outbound_hosts: assignment.allowed_outbound_hosts.clone(),
        service_router: None,
        service_caller: crate::services::policy::instance_header(
            &assignment.namespace,
            &assignment.labels,
        ),
        request_timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        probes: assignment.probes.clone(),
        command: assignment.workload == berth_api::job::Workload::Command,
    }
}

/// A name part unique within this process and across restarts.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
