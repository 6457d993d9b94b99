//! Command components (`wasi:cli/command`, a plain `fn main` built for
//! `wasm32-wasip2`): a Job's runs. [`WasmRuntime::prepare_command`] links
//! the component from the same compile cache as an HTTP component's and
//! checks that it exports `wasi:cli/run` and is not an HTTP component;
//! [`PreparedCommand::run`] calls `run` once in a fresh store and returns
//! the exit code.
//!
//! A run gets the instance's environment, its log for stdout and stderr,
//! the memory and table limits, the wasm stack limit and fuel, as a
//! request does. It has no deadline of its own:
//! [`InstanceConfig::request_timeout`] bounds one HTTP request, not a
//! program, and a Job's `activeDeadlineSeconds` is enforced by the
//! scheduler, which then takes the run away from its node. The epoch
//! still ticks, so a guest that computes without pause yields its thread
//! every [`EPOCH_TICK`](super::EPOCH_TICK); that is also where a run stops
//! when its future is dropped (cancelled).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::limits::{self, EpochTicker};
use super::{InstanceConfig, InstanceState, RuntimeError, WasmRuntime, instantiate_error};

impl WasmRuntime {
    /// Compiles the command component with content digest `digest`
    /// ("sha256:<hex>", already verified by the caller) whose bytes are at
    /// `wasm`, or loads it from the compile cache (shared with
    /// [`WasmRuntime::prepare`]), and pre-instantiates it for runs.
    ///
    /// A component that does not export `wasi:cli/run`, or that exports
    /// `wasi:http/incoming-handler`, is
    /// [`RuntimeError::NotACommandComponent`]: a Rust HTTP server built for
    /// `wasm32-wasip2` exports a `run` too, which only traps, so an HTTP
    /// component given to a Job is refused here rather than failing at
    /// every run. The other errors are [`WasmRuntime::prepare`]'s.
    pub async fn prepare_command(
        &self,
        digest: &str,
        wasm: &std::path::Path,
        config: InstanceConfig,
    ) -> Result<PreparedCommand, RuntimeError> {
        let instance_pre = self.instance_pre(digest, wasm, &config).await?;
        let not_a_command = |reason| RuntimeError::NotACommandComponent {
            digest: digest.to_owned(),
            reason,
        };
        if ProxyPre::new(instance_pre.clone()).is_ok() {
            return Err(not_a_command(
                "exports wasi:http/incoming-handler: an HTTP component runs in a Deployment, \
                 not a Job",
            ));
        }
        let pre = CommandPre::new(instance_pre)
            .map_err(|_| not_a_command("does not export wasi:cli/run"))?;
        Ok(PreparedCommand {
            inner: Arc::new(Command {
                pre,
                config,
                fuel: self.options.fuel,
                _ticker: Arc::clone(&self.ticker),
            }),
        })
    }
}

/// A command component ready to run: cheap to clone, a fresh instance
/// for every [`PreparedCommand::run`].
#[derive(Clone)]
pub struct PreparedCommand {
    inner: Arc<Command>,
}

impl std::fmt::Debug for PreparedCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCommand")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Command {
    pre: CommandPre<InstanceState>,
    config: InstanceConfig,
    /// Whether the engine meters fuel: then every store needs some.
    fuel: bool,
    /// Keeps the engine's epoch ticking while this command can run.
    _ticker: Arc<EpochTicker>,
}

impl PreparedCommand {
    /// Runs the component's `wasi:cli/run` once, in a fresh instance, to
    /// its end; returns its exit code.
    ///
    /// `run` returning success is 0 and returning an error 1; a guest that
    /// calls `wasi:cli/exit` (`std::process::exit` in Rust) ends with the
    /// code it gave. A trap or a broken limit is
    /// [`RuntimeError::Terminated`], classified as a request's
    /// ([`limits::classify`]); an instantiation that fails otherwise is
    /// [`RuntimeError::Instantiate`].
    ///
    /// Dropping the future stops the guest at its next yield (an epoch
    /// tick, or a wait on the host).
    pub async fn run(&self) -> Result<i32, RuntimeError> {
        let command = &self.inner;
        // The deadline in the state is for HTTP requests; the callback
        // below never reads it.
        let state = InstanceState::new(&command.config, Instant::now());
        let mut store = Store::new(command.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // At each epoch tick: let other tasks run, then go on, holding a
        // long-running slot from the first tick on (see `limits`).
        store.set_epoch_deadline(1);
        let slot = super::limits::CpuSlot::default();
        store.epoch_deadline_callback(move |_| {
            Ok(UpdateDeadline::YieldCustom(1, slot.after_tick()))
        });
        if command.fuel {
            store
                .set_fuel(command.config.fuel.unwrap_or(u64::MAX))
                .map_err(|e| RuntimeError::Engine(e.into()))?;
        }
        let instance = match command.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(instantiate_error(e, &store.data().limits)),
        };
        match instance.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => Ok(*code),
                None => Err(RuntimeError::Terminated(limits::classify(
                    &e,
                    &store.data().limits,
                ))),
            },
        }
    }
}
