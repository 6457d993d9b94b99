//! Turns assignments into running instances and remembers how each is doing.
//!
//! An assigned instance goes Starting (fetch the component by digest unless
//! it is on disk, compile or load the compiled artifact, pre-instantiate)
//! then Running (its prepared handle is in the ingress routes) or Failed.
//! An instance no longer assigned leaves the routes at once. Each instance
//! writes its guest output to its log in [`crate::logs`]. Nothing here
//! depends on the scheduler being reachable once an instance runs: the node
//! keeps serving what it has.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, Result, anyhow, bail};
use berth_api::Phase;
use berth_api::quic;
use berth_api::wire::{Assignment, Assignments, InstanceReport, NodeReport, Request, Response};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::ingress::Routes;
use crate::logs::LogStore;
use crate::runtime::{InstanceConfig, WasmRuntime};

#[derive(Debug, Clone)]
struct State {
    assignment: Assignment,
    phase: Phase,
    reason: String,
    message: String,
}

/// The node's instances.
pub struct Supervisor {
    runtime: Arc<WasmRuntime>,
    routes: Arc<Routes>,
    components: PathBuf,
    logs: LogStore,
    states: Mutex<HashMap<String, State>>,
    /// Digests of the components on disk.
    held: Mutex<BTreeSet<String>>,
    /// Woken whenever an instance changes phase, so the agent reports at once.
    pub changed: Notify,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor keeping components under `data_dir/components` and
    /// instance logs under `data_dir/logs`.
    pub fn new(
        runtime: Arc<WasmRuntime>,
        routes: Arc<Routes>,
        data_dir: &Path,
    ) -> Result<Supervisor> {
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
        let logs_dir = data_dir.join("logs");
        let logs = LogStore::new(logs_dir.clone())
            .with_context(|| format!("cannot create {}", logs_dir.display()))?;
        Ok(Supervisor {
            runtime,
            routes,
            components,
            logs,
            held: Mutex::new(held),
            states: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
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
                ready: state.phase == Phase::Running,
                restart_count: 0,
                exit_code: None,
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
        }
    }

    /// Starts again the instances whose component could not be fetched.
    pub fn retry_fetches(self: &Arc<Self>, connection: &quinn::Connection) {
        let mut to_start = Vec::new();
        for state in self.states().values_mut() {
            if state.phase == Phase::Failed && state.reason == "FetchFailed" {
                state.phase = Phase::Starting;
                state.reason.clear();
                state.message.clear();
                to_start.push(state.assignment.clone());
            }
        }
        for assignment in to_start {
            let this = self.clone();
            let connection = connection.clone();
            tokio::spawn(async move { this.start(assignment, connection).await });
        }
    }

    /// Starts what is newly assigned and stops what no longer is. Instances
    /// that failed to fetch are retried.
    pub fn apply(self: &Arc<Self>, assignments: Assignments, connection: &quinn::Connection) {
        let wanted: HashMap<String, Assignment> = assignments
            .instances
            .into_iter()
            .map(|a| (a.uid.clone(), a))
            .collect();
        let mut to_start = Vec::new();
        {
            let mut states = self.states();
            states.retain(|uid, state| {
                let keep = wanted.contains_key(uid);
                if !keep {
                    self.routes.remove(uid);
                    self.logs.close(uid);
                    info!(instance = %state.assignment.name, "stopped");
                }
                keep
            });
            for (uid, assignment) in wanted {
                let retry = states
                    .get(&uid)
                    .is_some_and(|s| s.phase == Phase::Failed && s.reason == "FetchFailed");
                if states.contains_key(&uid) && !retry {
                    continue;
                }
                states.insert(
                    uid,
                    State {
                        assignment: assignment.clone(),
                        phase: Phase::Starting,
                        reason: String::new(),
                        message: String::new(),
                    },
                );
                to_start.push(assignment);
            }
        }
        self.changed.notify_one();
        for assignment in to_start {
            let this = self.clone();
            let connection = connection.clone();
            tokio::spawn(async move { this.start(assignment, connection).await });
        }
    }

    async fn start(self: Arc<Self>, assignment: Assignment, connection: quinn::Connection) {
        let uid = assignment.uid.clone();
        let outcome = match self.fetch(&assignment.component, &connection).await {
            Err(e) => Err(("FetchFailed", e)),
            Ok(path) => {
                let mut env = assignment.env.clone();
                env.push(("BERTH_INSTANCE".into(), assignment.name.clone()));
                env.push(("BERTH_NAMESPACE".into(), assignment.namespace.clone()));
                env.push(("BERTH_DEPLOYMENT".into(), assignment.deployment.clone()));
                let allowed = assignment
                    .allowed_outbound_hosts
                    .iter()
                    .filter_map(|entry| berth_api::outbound::AllowedHost::parse(entry).ok())
                    .collect();
                let config = InstanceConfig {
                    env,
                    memory_limit_bytes: (assignment.limits.memory_bytes > 0)
                        .then_some(assignment.limits.memory_bytes),
                    allowed_outbound_hosts: Arc::new(allowed),
                    request_timeout: match assignment.request_timeout_seconds {
                        0 => crate::runtime::DEFAULT_REQUEST_TIMEOUT,
                        seconds => std::time::Duration::from_secs(u64::from(seconds)),
                    },
                    fuel: None,
                    log: self.log(&assignment),
                };
                self.runtime
                    .prepare(&assignment.component, &path, config)
                    .await
                    .map_err(|e| ("ComponentInvalid", anyhow!(e)))
            }
        };
        let mut states = self.states();
        // The instance may have been unassigned while it started.
        let Some(state) = states.get_mut(&uid) else {
            self.logs.close(&uid);
            return;
        };
        match outcome {
            Ok(prepared) => {
                self.routes.insert(
                    &assignment.namespace,
                    &assignment.deployment,
                    &uid,
                    prepared,
                );
                state.phase = Phase::Running;
                state.reason.clear();
                state.message.clear();
                info!(instance = %assignment.name, "running");
            }
            Err((reason, error)) => {
                warn!(instance = %assignment.name, %reason, error = %format!("{error:#}"), "failed to start");
                state.phase = Phase::Failed;
                state.reason = reason.into();
                state.message = format!("{error:#}");
            }
        }
        drop(states);
        self.changed.notify_one();
    }

    /// The instance's log; without one (a uid that makes no file name,
    /// which the scheduler never sends) its output is discarded.
    fn log(&self, assignment: &Assignment) -> Option<crate::logs::GuestLog> {
        self.logs
            .open(&assignment.uid)
            .inspect_err(|e| warn!(instance = %assignment.name, error = %e, "no log file"))
            .ok()
    }

    /// The component's path on disk, fetched from the scheduler if needed
    /// and verified against its digest.
    async fn fetch(&self, digest: &str, connection: &quinn::Connection) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("invalid component digest {digest:?}"))?;
        let path = self.components.join(format!("{hex}.wasm"));
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
        // Instances of one component may fetch it at once: each writes its
        // own temporary file, and the renames replace one another atomically.
        let partial = path.with_extension(format!("partial-{}", unique_suffix()));
        tokio::fs::write(&partial, &bytes)
            .await
            .with_context(|| format!("cannot write {}", partial.display()))?;
        tokio::fs::rename(&partial, &path)
            .await
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest.to_owned());
        Ok(path)
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
