//! Instances inside one process: prepares each loaded instance with the
//! wasm runtime, routes to it, and reports what happens to it as
//! [`HostEvent`]s.
//!
//! The same host runs in every sandbox (worker process, see
//! [`crate::sandbox`]) and, for embedders and tests without a `berth`
//! binary to start workers from, in the node's own process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::ingress::Routes;
use crate::logs::GuestLog;
use crate::runtime::{InstanceConfig, WasmRuntime};
use crate::sandbox::protocol::{HostEvent, LoadSpec};

/// Loads, routes and unloads instances in this process.
pub struct InstanceHost {
    runtime: Arc<WasmRuntime>,
    routes: Arc<Routes>,
    events: mpsc::UnboundedSender<HostEvent>,
    /// The task of each loaded instance (preparing, probing or running a
    /// command): aborted when it is unloaded.
    tasks: Mutex<HashMap<String, AbortHandle>>,
}

impl std::fmt::Debug for InstanceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceHost")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl InstanceHost {
    /// A host preparing with `runtime` and routing through `routes`.
    pub fn new(
        runtime: Arc<WasmRuntime>,
        routes: Arc<Routes>,
        events: mpsc::UnboundedSender<HostEvent>,
    ) -> Arc<InstanceHost> {
        Arc::new(InstanceHost {
            runtime,
            routes,
            events,
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// The routing table it routes through.
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prepares the instance and routes to it (an HTTP component) or runs
    /// it (a command); the outcome comes as events.
    pub fn load(self: &Arc<Self>, spec: LoadSpec, log: Option<GuestLog>) {
        let uid = spec.uid.clone();
        let this = Arc::clone(self);
        let task = tokio::spawn(async move { this.run(spec, log).await });
        if let Some(old) = self.tasks().insert(uid, task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops routing to the instance, gives its in-flight requests `grace`,
    /// then drops it.
    pub fn unload(self: &Arc<Self>, uid: &str, grace: Duration) {
        if let Some(task) = self.tasks().remove(uid) {
            task.abort();
        }
        let routes = Arc::clone(&self.routes);
        let uid = uid.to_owned();
        tokio::spawn(async move {
            if let Some(cancelled) = routes.drain(&uid, grace).await
                && cancelled > 0
            {
                tracing::info!(instance = %uid, cancelled, "grace period over; requests cancelled");
            }
        });
    }

    fn send(&self, event: HostEvent) {
        let _ = self.events.send(event);
    }

    async fn run(self: Arc<Self>, spec: LoadSpec, log: Option<GuestLog>) {
        let config = instance_config(&spec, log);
        if spec.command {
            self.run_command(spec, config).await;
            return;
        }
        match self.runtime.prepare(&spec.digest, &spec.wasm, config).await {
            Ok(prepared) => {
                let ready = crate::probes::initially_ready(&spec.probes);
                self.routes.insert_with_readiness(
                    &spec.namespace,
                    &spec.deployment,
                    &spec.uid,
                    prepared.clone(),
                    ready,
                );
                self.send(HostEvent::Loaded {
                    uid: spec.uid.clone(),
                    result: Ok(()),
                });
                self.probe(spec, prepared).await;
            }
            Err(e) => self.send(HostEvent::Loaded {
                uid: spec.uid,
                result: Err(("ComponentInvalid".into(), crate::runtime::error_chain(&e))),
            }),
        }
    }

    /// Runs the instance's probes until it is unloaded or one says restart.
    async fn probe(&self, spec: LoadSpec, prepared: crate::runtime::PreparedInstance) {
        let probes = spec.probes.clone();
        if probes.liveness.is_none() && probes.readiness.is_none() && probes.startup.is_none() {
            return;
        }
        let routes = Arc::clone(&self.routes);
        let events = self.events.clone();
        let uid = spec.uid.clone();
        let ready = crate::probes::initially_ready(&probes);
        let on_event = crate::probes::host_events(
            uid.clone(),
            ready,
            move |event| {
                let _ = events.send(event);
            },
            move |ready| {
                routes.set_ready(&uid, ready);
            },
        );
        crate::probes::run(prepared, probes, on_event).await;
    }

    async fn run_command(&self, spec: LoadSpec, config: InstanceConfig) {
        let outcome = match self
            .runtime
            .prepare_command(&spec.digest, &spec.wasm, config)
            .await
        {
            Ok(command) => {
                self.send(HostEvent::Loaded {
                    uid: spec.uid.clone(),
                    result: Ok(()),
                });
                crate::jobs::run_to_completion(&command).await
            }
            Err(e) => {
                self.send(HostEvent::Loaded {
                    uid: spec.uid.clone(),
                    result: Err(("ComponentInvalid".into(), crate::runtime::error_chain(&e))),
                });
                return;
            }
        };
        self.send(HostEvent::Exited {
            uid: spec.uid,
            exit_code: outcome.exit_code,
            reason: outcome.reason,
            message: outcome.message,
        });
    }
}

/// What the runtime grants an instance, from what the node was told.
pub fn instance_config(spec: &LoadSpec, log: Option<GuestLog>) -> InstanceConfig {
    let allowed = spec
        .allowed_outbound_hosts
        .iter()
        .filter_map(|entry| berth_api::outbound::AllowedHost::parse(entry).ok())
        .collect();
    let services = spec.service_router.map(|router| {
        Arc::new(crate::outbound::ServiceAccess {
            router,
            namespace: spec.namespace.clone(),
            caller: spec.service_caller.clone(),
        })
    });
    InstanceConfig {
        env: spec.env.clone(),
        memory_limit_bytes: spec.memory_limit_bytes,
        allowed_outbound_hosts: Arc::new(allowed),
        services,
        request_timeout: Duration::from_millis(spec.request_timeout_ms),
        fuel: None,
        log,
    }
}
