//! The wasm host: one wasmtime [`Engine`] per node, a compile cache on disk,
//! and per-request instantiation of `wasi:http/proxy` components.
//!
//! Start at [`WasmRuntime::prepare`]: it turns a component's bytes into a
//! [`PreparedInstance`] (compiling with cranelift once per digest, then
//! loading the compiled artifact from `<data_dir>/compiled/`), and
//! [`PreparedInstance::handle`] serves one HTTP request in a fresh instance.
//! A Job's `wasi:cli/command` component goes through
//! [`WasmRuntime::prepare_command`] instead (same compile cache), and
//! [`PreparedCommand::run`] runs it once to its exit code (`command.rs`).
//!
//! Capabilities are granted, not ambient: an instance sees only the
//! environment variables of its [`InstanceConfig`], no files and no sockets;
//! outgoing `wasi:http` requests go only to its allowed hosts. Its stdout
//! and stderr go to its log ([`InstanceConfig::log`], see [`crate::logs`]),
//! or nowhere when it has none.
//!
//! Each request is bounded by a deadline, a wasm stack limit, memory and
//! table limits and optionally fuel ([`limits`]); a request stopped by one is
//! reported as a [`Termination`] and counted in [`PreparedInstance::stats`].
//!
//! An instance also answers probes ([`PreparedInstance::probe`]: a `GET`
//! served in a fresh instance like any request, counted apart), and stops
//! gracefully: [`PreparedInstance::in_flight`] counts its requests until
//! their bodies are sent, and [`PreparedInstance::cancel`] ends them all
//! with [`RuntimeError::Cancelled`].
//! Out of scope here: the kernel's limits (cgroups) around the node's worker
//! processes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OnceCell, oneshot};
use wasmtime::component::{Component, InstancePre, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline, WasmBacktraceDetails};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::logs::{GuestLog, Stream};
use crate::outbound::OutboundPolicy;

mod body;
mod command;
mod in_flight;
pub mod limits;
mod stats;

use self::body::InstanceBody;
pub use self::command::PreparedCommand;
use self::in_flight::{InFlight, TrackedBody};
pub use self::limits::{
    DEFAULT_REQUEST_TIMEOUT, EPOCH_TICK, MAX_REQUEST_TIMEOUT, MAX_WASM_STACK, TABLE_ELEMENTS_LIMIT,
    Termination,
};
use self::limits::{EpochTicker, InstanceLimiter};
pub use self::stats::InstanceStats;

/// The first 8 bytes of every binary component: `\0asm`, the component-model
/// version (0x0d) and the component layer (1). Core modules have version 1,
/// layer 0 instead.
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

/// The only digest algorithm berth uses for artifacts.
const DIGEST_PREFIX: &str = "sha256:";

/// Hex characters in a sha256 digest.
const DIGEST_HEX_LEN: usize = 64;

/// Boxed error from wasmtime or tokio, kept as the `source` of a [`RuntimeError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from preparing a component or from serving a request with it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine or linker could not be set up.
    #[error("cannot set up the wasm engine")]
    Engine(#[source] BoxError),
    /// The digest is not `sha256:` followed by 64 lowercase hex characters.
    #[error("invalid component digest {digest:?}: expected sha256:<64 hex characters>")]
    InvalidDigest { digest: String },
    /// Reading the component, or writing the compiled-artifact cache, failed.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a binary WebAssembly component (a core module, text, or not wasm at all).
    #[error("component {digest} is not a binary wasm component")]
    NotAComponent { digest: String },
    /// Cranelift rejected the component (invalid or unsupported wasm).
    #[error("cannot compile component {digest}")]
    Compile {
        digest: String,
        #[source]
        source: BoxError,
    },
    /// A compiled artifact could not be loaded.
    #[error("cannot load compiled component {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    /// The component imports an interface this node does not provide.
    #[error("component {digest} imports interfaces this node does not provide")]
    Link {
        digest: String,
        #[source]
        source: BoxError,
    },
    /// The component does not export `wasi:http/incoming-handler`.
    #[error("component {digest} does not export wasi:http/incoming-handler")]
    NotAnHttpComponent {
        digest: String,
        #[source]
        source: BoxError,
    },
    /// The component is not a `wasi:cli/command` a Job can run: it does not
    /// export `wasi:cli/run`, or it is an HTTP component (it exports
    /// `wasi:http/incoming-handler`; a Rust HTTP server's `run` only traps).
    #[error("component {digest} {reason}")]
    NotACommandComponent {
        digest: String,
        /// `does not export wasi:cli/run`, or why an HTTP component is refused.
        reason: &'static str,
    },
    /// A compile or load task on the blocking pool failed.
    #[error("compile or load task for component {digest} failed")]
    Task {
        digest: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The request could not be handed to the component.
    #[error("cannot pass the request to the component")]
    Request(#[source] BoxError),
    /// The instance was given fuel, but the runtime was created without
    /// [`EngineOptions::fuel`].
    #[error("instance has a fuel budget but this node's engine does not meter fuel")]
    FuelNotEnabled,
    /// Instantiation failed for a reason other than a trap or a limit.
    #[error("cannot instantiate the component")]
    Instantiate(#[source] BoxError),
    /// The node stopped the instance: it trapped, hit a limit or ran past
    /// its deadline, while instantiating or handling the request.
    #[error("component terminated: {0}")]
    Terminated(Termination),
    /// The component returned without setting a response.
    #[error("component returned without sending a response")]
    NoResponse,
    /// The component set its response to an error code.
    #[error("component answered with error code {0:?}")]
    ErrorResponse(ErrorCode),
    /// The task running the instance was cancelled or panicked.
    #[error("the task running the component failed")]
    Join(#[source] tokio::task::JoinError),
    /// The instance was stopped ([`PreparedInstance::cancel`]) before the
    /// request finished, or before it began; the ingress answers 503.
    #[error("instance stopped: request cancelled after its grace period")]
    Cancelled,
    /// A probe's response body failed after its head was sent.
    #[error("the component's response body failed")]
    Body(#[source] BoxError),
}

impl RuntimeError {
    /// The termination, if the node stopped the instance.
    pub fn termination(&self) -> Option<&Termination> {
        match self {
            RuntimeError::Terminated(termination) => Some(termination),
            _ => None,
        }
    }
}

/// What one instance is granted.
#[derive(Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The instance's whole environment; nothing is inherited from the node.
    pub env: Vec<(String, String)>,
    /// Upper bound on each linear memory of the instance; `None` is the
    /// wasm32 maximum (4 GiB). A `memory.grow` past it fails inside the
    /// guest; a trap after that is [`Termination::MemoryLimitExceeded`].
    pub memory_limit_bytes: Option<u64>,
    /// Hosts the instance may call over HTTP; nothing else goes out but
    /// calls to Services, when `services` is set.
    pub allowed_outbound_hosts: Arc<Vec<berth_api::outbound::AllowedHost>>,
    /// Where calls to Services (`http://NAME.NAMESPACE.svc`) go; `None`
    /// treats such hosts as any other.
    pub services: Option<Arc<crate::outbound::ServiceAccess>>,
    /// How long one request may take, from its arrival to the end of the
    /// response body, computing or waiting ([`DEFAULT_REQUEST_TIMEOUT`];
    /// at most [`MAX_REQUEST_TIMEOUT`]). Past it the instance is stopped:
    /// [`Termination::DeadlineExceeded`].
    pub request_timeout: Duration,
    /// Fuel for each request (roughly one unit per wasm instruction); past
    /// it, [`Termination::FuelExhausted`]. Needs a runtime created with
    /// [`EngineOptions::fuel`]; `None` is unmetered.
    pub fuel: Option<u64>,
    /// Where the guest's stdout and stderr go, line by line with a
    /// timestamp; with `None` they are discarded (tests, benchmarks).
    pub log: Option<GuestLog>,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            memory_limit_bytes: None,
            allowed_outbound_hosts: Arc::default(),
            services: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            fuel: None,
            log: None,
        }
    }
}

impl std::fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Env values may be secrets: show only the names.
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("InstanceConfig")
            .field("env", &env)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("services", &self.services)
            .field("request_timeout", &self.request_timeout)
            .field("fuel", &self.fuel)
            .field("log", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

/// Engine-wide choices, fixed when a [`WasmRuntime`] is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Meter fuel, so that instances can be given [`InstanceConfig::fuel`].
    /// Off by default: metering makes all wasm code slower (every block
    /// counts its instructions), and the deadline already bounds CPU time.
    pub fuel: bool,
}

/// The node's wasm host: one engine and linker, a compile cache by digest.
pub struct WasmRuntime {
    engine: Engine,
    options: EngineOptions,
    /// Advances the engine's epoch; request deadlines depend on it.
    ticker: Arc<EpochTicker>,
    linker: Linker<InstanceState>,
    compiled_dir: PathBuf,
    /// `engine.precompile_compatibility_hash()` as hex: artifacts compiled by
    /// another wasmtime version or configuration get another file name.
    engine_hash: String,
    /// One cell per digest: concurrent `prepare` and `prepare_command`
    /// calls for a digest wait for one compile, and the linked component
    /// stays in memory; each call then looks up the exports it needs
    /// (`ProxyPre` or `CommandPre`).
    loaded: Mutex<HashMap<String, Arc<OnceCell<InstancePre<InstanceState>>>>>,
    compiled: AtomicU64,
    /// Components loaded from an artifact on disk: compile-cache hits.
    from_disk: AtomicU64,
    /// How long request instantiations took, until taken for metrics.
    instantiations: Arc<stats::Instantiations>,
}

impl WasmRuntime {
    /// Creates the engine and linker with default [`EngineOptions`];
    /// compiled artifacts go to `data_dir/compiled/`.
    pub fn new(data_dir: &Path) -> Result<Self, RuntimeError> {
        Self::with_options(data_dir, EngineOptions::default())
    }

    /// Creates the engine and linker, and starts the engine's epoch ticker;
    /// compiled artifacts go to `data_dir/compiled/`. Artifacts compiled
    /// with other options are kept apart (the file name has the engine's
    /// compatibility hash).
    pub fn with_options(data_dir: &Path, options: EngineOptions) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .wasm_backtrace_details(WasmBacktraceDetails::Disable)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .consume_fuel(options.fuel);
        let engine = match pooled_engine(&config) {
            Some(engine) => engine,
            None => Engine::new(&config).map_err(|e| RuntimeError::Engine(e.into()))?,
        };
        let ticker =
            EpochTicker::start(engine.clone()).map_err(|e| RuntimeError::Engine(Box::new(e)))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.into()))?;

        let compiled_dir = data_dir.join("compiled");
        std::fs::create_dir_all(&compiled_dir).map_err(|source| RuntimeError::Io {
            action: "create directory",
            path: compiled_dir.clone(),
            source,
        })?;

        let mut hasher = Sha256Hasher::default();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hex::encode(hasher.0.finalize());

        Ok(Self {
            engine,
            options,
            ticker: Arc::new(ticker),
            linker,
            compiled_dir,
            engine_hash,
            loaded: Mutex::new(HashMap::new()),
            compiled: AtomicU64::new(0),
            from_disk: AtomicU64::new(0),
            instantiations: Arc::default(),
        })
    }

    /// Compiles the component with content digest `digest` ("sha256:<hex>",
    /// already verified by the caller) whose bytes are at `wasm`, or loads
    /// the compiled artifact kept on disk from an earlier compile; then
    /// pre-instantiates it.
    pub async fn prepare(
        &self,
        digest: &str,
        wasm: &Path,
        config: InstanceConfig,
    ) -> Result<PreparedInstance, RuntimeError> {
        let instance_pre = self.instance_pre(digest, wasm, &config).await?;
        let pre = ProxyPre::new(instance_pre).map_err(|e| RuntimeError::NotAnHttpComponent {
            digest: digest.to_owned(),
            source: e.into(),
        })?;
        Ok(PreparedInstance {
            inner: Arc::new(Prepared {
                pre,
                config,
                fuel: self.options.fuel,
                counters: stats::Counters::default(),
                in_flight: InFlight::default(),
                _ticker: Arc::clone(&self.ticker),
                instantiations: Arc::clone(&self.instantiations),
            }),
        })
    }

    /// The seconds each request's instantiation took since the last call
    /// (probes included; at most 65,536 are
    /// kept between calls).
    pub fn take_instantiations(&self) -> Vec<f64> {
        self.instantiations.take()
    }

    /// How many components this runtime compiled with cranelift (not loaded
    /// from disk) since it started.
    pub fn compiled_count(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// How many components this runtime loaded from a compiled artifact on
    /// disk (without compiling) since it started.
    pub fn from_disk_count(&self) -> u64 {
        self.from_disk.load(Ordering::Relaxed)
    }

    /// The component of `digest`, compiled or loaded once and linked
    /// against the node's host, after the checks every prepare makes.
    async fn instance_pre(
        &self,
        digest: &str,
        wasm: &Path,
        config: &InstanceConfig,
    ) -> Result<InstancePre<InstanceState>, RuntimeError> {
        let hex = digest_hex(digest)?;
        if config.fuel.is_some() && !self.options.fuel {
            return Err(RuntimeError::FuelNotEnabled);
        }
        let cell = {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(loaded.entry(digest.to_owned()).or_default())
        };
        Ok(cell
            .get_or_try_init(|| self.load_or_compile(digest, hex, wasm))
            .await?
            .clone())
    }

    async fn load_or_compile(
        &self,
        digest: &str,
        hex: &str,
        wasm: &Path,
    ) -> Result<InstancePre<InstanceState>, RuntimeError> {
        let artifact = self
            .compiled_dir
            .join(format!("{hex}-{}.cwasm", self.engine_hash));
        let component = if tokio::fs::try_exists(&artifact).await.unwrap_or(false) {
            match self.load(digest, &artifact).await {
                Ok(component) => {
                    self.from_disk.fetch_add(1, Ordering::Relaxed);
                    component
                }
                Err(e) => {
                    // A truncated or foreign file: compile again and replace it.
                    tracing::warn!(%digest, path = %artifact.display(), error = %error_chain(&e),
                        "discarding unusable compiled artifact");
                    self.compile(digest, wasm, &artifact).await?
                }
            }
        } else {
            self.compile(digest, wasm, &artifact).await?
        };
        self.linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::Link {
                digest: digest.to_owned(),
                source: e.into(),
            })
    }

    async fn compile(
        &self,
        digest: &str,
        wasm: &Path,
        artifact: &Path,
    ) -> Result<Component, RuntimeError> {
        let bytes = tokio::fs::read(wasm)
            .await
            .map_err(|source| RuntimeError::Io {
                action: "read component",
                path: wasm.to_owned(),
                source,
            })?;
        if !bytes.starts_with(&COMPONENT_HEADER) {
            return Err(RuntimeError::NotAComponent {
                digest: digest.to_owned(),
            });
        }
        let engine = self.engine.clone();
        let owned_digest = digest.to_owned();
        let compiled = tokio::task::spawn_blocking(move || {
            engine
                .precompile_component(&bytes)
                .map_err(|e| RuntimeError::Compile {
                    digest: owned_digest,
                    source: e.into(),
                })
        })
        .await
        .map_err(|source| RuntimeError::Task {
            digest: digest.to_owned(),
            source,
        })??;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%digest, bytes = compiled.len(), "compiled component");

        let path = artifact.to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&path, &compiled))
            .await
            .map_err(|source| RuntimeError::Task {
                digest: digest.to_owned(),
                source,
            })??;
        self.load(digest, artifact).await
    }

    async fn load(&self, digest: &str, artifact: &Path) -> Result<Component, RuntimeError> {
        let engine = self.engine.clone();
        let path = artifact.to_owned();
        tokio::task::spawn_blocking(move || deserialize_artifact(&engine, &path))
            .await
            .map_err(|source| RuntimeError::Task {
                digest: digest.to_owned(),
                source,
            })?
    }
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("options", &self.options)
            .field("compiled_dir", &self.compiled_dir)
            .field("compiled_count", &self.compiled_count())
            .finish_non_exhaustive()
    }
}

/// Requests one sandbox (one runtime) serves at once with the pooling
/// allocator: each takes a component instance slot from the pool.
pub const POOL_CONCURRENT_INSTANCES: u32 = 128;

/// An engine with wasmtime's pooling instance allocator: linear memories,
/// tables and fiber stacks come from slots reserved when the engine is
/// created, and memory initialisation is copy-on-write from the compiled
/// artifact, so that an instantiation is a few page-table updates. The pool
/// reserves virtual address space (about 4 GiB per memory slot); where that
/// fails (a small address space, a strict overcommit policy) the caller
/// falls back to on-demand allocation. A request arriving while every slot
/// is in use fails to instantiate (answered 500) rather than wait.
fn pooled_engine(config: &Config) -> Option<Engine> {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_CONCURRENT_INSTANCES)
        .total_core_instances(POOL_CONCURRENT_INSTANCES * 8)
        .total_memories(POOL_CONCURRENT_INSTANCES * 2)
        .total_tables(POOL_CONCURRENT_INSTANCES * 4)
        .total_stacks(POOL_CONCURRENT_INSTANCES)
        .max_memories_per_component(4)
        .max_tables_per_component(8);
    let mut config = config.clone();
    config
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true);
    match Engine::new(&config) {
        Ok(engine) => Some(engine),
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; allocating instances on demand");
            None
        }
    }
}

/// Maps a compiled artifact written by [`WasmRuntime`] into memory.
#[allow(unsafe_code)]
fn deserialize_artifact(engine: &Engine, path: &Path) -> Result<Component, RuntimeError> {
    // SAFETY: `Component::deserialize_file` trusts the file to be output of
    // `Engine::precompile_component` that nobody modifies while it is mapped.
    // Only this node writes to its private `<data_dir>/compiled/` directory:
    // the file is its own compiler output, written to a temporary name and
    // renamed into place, so a mapped file is never rewritten (a replacement
    // is a new inode). Wasmtime itself checks the header and that the engine
    // configuration matches, so a truncated or foreign file is an error.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| RuntimeError::Load {
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Writes `bytes` to a temporary file next to `path`, syncs it, then renames
/// it over `path`, so readers see either no file or the whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = PathBuf::from(temp_name);
    let io_error = |source| RuntimeError::Io {
        action: "write compiled artifact",
        path: path.to_owned(),
        source,
    };
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(e));
    }
    Ok(())
}

/// Returns the hex part of a `sha256:<hex>` digest; it becomes part of a
/// file name, so anything else (a `/`, `..`) is refused.
fn digest_hex(digest: &str) -> Result<&str, RuntimeError> {
    digest
        .strip_prefix(DIGEST_PREFIX)
        .filter(|hex| {
            hex.len() == DIGEST_HEX_LEN
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| RuntimeError::InvalidDigest {
            digest: digest.to_owned(),
        })
}

/// Renders an error with its sources, `outer: inner: root`, for logs and
/// short response bodies.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(out, ": {e}");
        source = e.source();
    }
    out
}

/// Feeds [`Hash`] output into sha256, so the engine's compatibility hash
/// becomes a file-name part that is stable across Rust versions.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        for (to, from) in first.iter_mut().zip(digest.iter()) {
            *to = *from;
        }
        u64::from_le_bytes(first)
    }
}

/// A component ready to serve requests: cheap to clone, one fresh instance per request.
#[derive(Clone)]
pub struct PreparedInstance {
    inner: Arc<Prepared>,
}

impl std::fmt::Debug for PreparedInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedInstance")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Prepared {
    pre: ProxyPre<InstanceState>,
    config: InstanceConfig,
    /// Whether the engine meters fuel: then every store needs some.
    fuel: bool,
    counters: stats::Counters,
    /// Requests in progress, and the instance's cancellation.
    in_flight: InFlight,
    /// Keeps the engine's epoch ticking while this instance can serve.
    _ticker: Arc<EpochTicker>,
    /// The runtime's instantiation samples.
    instantiations: Arc<stats::Instantiations>,
}

impl PreparedInstance {
    /// What this instance's requests came to since it was prepared.
    pub fn stats(&self) -> InstanceStats {
        self.inner.counters.snapshot()
    }

    /// Serves one HTTP request in a fresh wasm instance (per-request
    /// instantiation from the pre-instantiated component), within the
    /// instance's limits.
    ///
    /// A failure before the response head is the error returned. After the
    /// head was sent, a terminated instance ends the body with an error
    /// instead of its end, so the client sees a truncated response; either
    /// way the termination is counted in [`PreparedInstance::stats`].
    ///
    /// The request counts in [`PreparedInstance::in_flight`] until its guest
    /// has finished and its response body is sent or dropped. Once the
    /// instance is [cancelled](PreparedInstance::cancel) it ends with
    /// [`RuntimeError::Cancelled`] (a body already streaming ends with an
    /// error); cancellations are not counted as failures in the stats.
    ///
    /// Any request body type will do: the ingress passes hyper's
    /// [`hyper::body::Incoming`], probes an empty body.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, RuntimeError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let timeout = self.inner.config.request_timeout.min(MAX_REQUEST_TIMEOUT);
        self.serve(req, timeout, Purpose::Request).await
    }

    /// Probes the instance: serves a synthetic `GET path` (`Host:
    /// localhost`, empty body) in a fresh instance exactly as
    /// [`PreparedInstance::handle`] serves a request, within `timeout`
    /// instead of the request timeout, and returns the status once the
    /// whole body has been read (and discarded).
    ///
    /// Probes are not counted in [`PreparedInstance::stats`] (neither as
    /// requests nor as failures: a failing probe is the prober's to report)
    /// nor in [`PreparedInstance::in_flight`], so they never hold up a
    /// drain. A probe past `timeout` is
    /// `Terminated(Termination::DeadlineExceeded)`; after
    /// [`PreparedInstance::cancel`] it is [`RuntimeError::Cancelled`].
    pub async fn probe(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<http::StatusCode, RuntimeError> {
        let req = hyper::Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| RuntimeError::Request(e.into()))?;
        let response = self
            .serve(req, timeout.min(MAX_REQUEST_TIMEOUT), Purpose::Probe)
            .await?;
        let status = response.status();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| RuntimeError::Body(e.into()))?;
        }
        Ok(status)
    }

    /// Stops the instance: every request in flight, and every later one,
    /// ends with [`RuntimeError::Cancelled`]. Cannot be undone; routing
    /// should have stopped first (see [`crate::ingress::Routes::drain`]).
    pub fn cancel(&self) {
        self.inner.in_flight.cancel();
    }

    /// Whether [`PreparedInstance::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.in_flight.is_cancelled()
    }

    /// Resolves once the instance is cancelled.
    pub async fn cancelled(&self) {
        self.inner.in_flight.cancelled().await;
    }

    /// Requests in progress: guests still running and response bodies
    /// still streaming. Probes are not counted.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.count()
    }

    /// Resolves once no request is in progress ([`PreparedInstance::in_flight`] is 0).
    pub async fn idle(&self) {
        self.inner.in_flight.idle().await;
    }

    /// Counts a request in flight until the guard is dropped, for tests of
    /// drains that need no guest.
    #[cfg(test)]
    pub(crate) fn hold_in_flight(&self) -> in_flight::InFlightGuard {
        self.inner.in_flight.enter()
    }

    /// Serves one request or probe in a fresh instance, within `timeout`.
    async fn serve<B>(
        &self,
        req: hyper::Request<B>,
        timeout: Duration,
        purpose: Purpose,
    ) -> Result<hyper::Response<HyperOutgoingBody>, RuntimeError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if self.inner.in_flight.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let counted = purpose == Purpose::Request;
        // Shared by the task and the response body: the request is in
        // flight until both are done.
        let guard = counted.then(|| Arc::new(self.inner.in_flight.enter()));
        let counters = &self.inner.counters;
        if counted {
            counters.request();
        }
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let (sender, receiver) = oneshot::channel();
        let (mut store, (req, out)) = match self.inner.new_store(deadline, req, sender) {
            Ok(parts) => parts,
            Err(e) => {
                if counted {
                    counters.failed();
                }
                return Err(e);
            }
        };

        // The instance runs in its own task so that it can keep streaming the
        // body after it has handed over the response head; the deadline
        // covers the whole task.
        let (outcome_sender, outcome) = oneshot::channel();
        let cut = Arc::new(AtomicBool::new(false));
        let task_cut = Arc::clone(&cut);
        let task_guard = guard.clone();
        let prepared = Arc::clone(&self.inner);
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let run = async {
                let began = Instant::now();
                let instantiated = prepared.pre.instantiate_async(&mut store).await;
                prepared
                    .instantiations
                    .record(began.elapsed().as_secs_f64());
                let proxy = match instantiated {
                    Ok(proxy) => proxy,
                    Err(e) => return Err(instantiate_error(e, &store.data().limits)),
                };
                let handled = proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await;
                handled.map_err(|e| {
                    RuntimeError::Terminated(limits::classify(&e, &store.data().limits))
                })
            };
            // A guest computing is stopped by the epoch callback; a guest
            // waiting on the host (a timer, a slow stream) by this timeout;
            // either by the instance's cancellation.
            let timed = tokio::time::timeout_at(deadline.into(), run);
            let result = tokio::select! {
                timed = timed => {
                    timed.unwrap_or(Err(RuntimeError::Terminated(Termination::DeadlineExceeded)))
                }
                () = prepared.in_flight.cancelled() => {
                    task_cut.store(true, Ordering::Release);
                    Err(RuntimeError::Cancelled)
                }
            };
            match &result {
                Ok(()) | Err(RuntimeError::Cancelled) => {}
                Err(_) if !counted => {}
                Err(RuntimeError::Terminated(termination)) => {
                    prepared.counters.terminated(termination)
                }
                Err(_) => prepared.counters.failed(),
            }
            // Sent before the store, and the response body's sender in it,
            // is dropped: see `InstanceBody`.
            let termination = result.as_ref().err().and_then(RuntimeError::termination);
            let _ = outcome_sender.send(termination.cloned());
            drop(store);
            drop(task_guard);
            result
        }));

        match receiver.await {
            Ok(Ok(response)) => {
                // Nobody else sees a failure after the head was sent; log it.
                tokio::spawn(async move {
                    match task.await {
                        Ok(Ok(()) | Err(RuntimeError::Cancelled)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %error_chain(&e),
                            "component failed after sending its response"),
                        Err(e) => tracing::warn!(error = %e, "component task failed"),
                    }
                });
                Ok(response.map(|body| {
                    let body = InstanceBody::new(body, outcome);
                    match guard {
                        Some(guard) => TrackedBody::new(body, guard, cut).boxed_unsync(),
                        None => body.boxed_unsync(),
                    }
                }))
            }
            // The guest's own answer, not a failure of the instance.
            Ok(Err(code)) => Err(RuntimeError::ErrorResponse(code)),
            // The sender was dropped with the store: the task has ended.
            Err(_) => match task.await {
                Ok(Ok(())) => {
                    if counted {
                        counters.failed();
                    }
                    Err(RuntimeError::NoResponse)
                }
                Ok(Err(e)) => Err(e),
                Err(e) => {
                    if counted {
                        counters.failed();
                    }
                    Err(RuntimeError::Join(e))
                }
            },
        }
    }
}

/// Whether a request is a client's or the prober's: probes are not counted
/// in the stats or as in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Request,
    Probe,
}

/// Where the guest's response head (or error code) goes.
type ResponseSender = oneshot::Sender<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>;

/// The request and response handles the guest's handler is called with.
type HandlerArgs = (
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
);

impl Prepared {
    /// A store for one request, with its limits, deadline and fuel, and the
    /// request and response handles in its table.
    fn new_store<B>(
        &self,
        deadline: Instant,
        req: hyper::Request<B>,
        sender: ResponseSender,
    ) -> Result<(Store<InstanceState>, HandlerArgs), RuntimeError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut store = Store::new(
            self.pre.engine(),
            InstanceState::new(&self.config, deadline),
        );
        store.limiter(|state| &mut state.limits);
        // At each epoch tick: stop the guest if its deadline has passed,
        // else let other tasks run before it goes on.
        store.set_epoch_deadline(1);
        let slot = limits::CpuSlot::default();
        store.epoch_deadline_callback(move |store| {
            if Instant::now() >= store.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(1, slot.after_tick()))
            }
        });
        if self.fuel {
            store
                .set_fuel(self.config.fuel.unwrap_or(u64::MAX))
                .map_err(|e| RuntimeError::Engine(e.into()))?;
        }
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| RuntimeError::Request(e.into()))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| RuntimeError::Request(e.into()))?;
        Ok((store, (req, out)))
    }
}

/// An instantiation error: a termination if it was a trap or a refused
/// limit (an initial memory above the limit), else the error itself.
fn instantiate_error(error: wasmtime::Error, limiter: &InstanceLimiter) -> RuntimeError {
    if limits::is_limit_or_trap(&error, limiter) {
        RuntimeError::Terminated(limits::classify(&error, limiter))
    } else {
        RuntimeError::Instantiate(error.into())
    }
}

/// The data of one request's [`Store`].
struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: InstanceLimiter,
    outbound: OutboundPolicy,
    /// When the request's time is up.
    deadline: Instant,
}

impl InstanceState {
    fn new(config: &InstanceConfig, deadline: Instant) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&config.env);
        // Without a log, wasi's default: writes succeed and go nowhere.
        if let Some(log) = &config.log {
            wasi.stdout(log.output(Stream::Stdout))
                .stderr(log.output(Stream::Stderr));
        }
        let wasi = wasi.build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: InstanceLimiter::new(config.memory_limit_bytes),
            outbound: OutboundPolicy::new(config.allowed_outbound_hosts.clone())
                .with_services(config.services.clone()),
            deadline,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_accepts_only_sha256_hex() {
        let hex = "ab".repeat(32);
        assert_eq!(
            digest_hex(&format!("sha256:{hex}")).ok(),
            Some(hex.as_str())
        );
        assert!(digest_hex(&hex).is_err());
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex(&format!("sha256:{}", "AB".repeat(32))).is_err());
        assert!(digest_hex(&format!("sha256:{}/", "ab".repeat(32))).is_err());
    }

    #[test]
    fn write_atomically_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
