//! The node's Prometheus metrics: one [`Metrics`] per node, shared as an
//! `Arc` by the ingress and the agent, and encoded in the OpenMetrics text
//! format by the admin listener ([`crate::admin`]).
//!
//! Clock-free: callers measure durations and pass seconds in. No globals.
//! Compile counts are read from the runtime at scrape time (a collector),
//! so the runtime needs no handle on the registry.
//!
//! Sandbox cgroup usage is read at scrape time too, through a source the
//! sandboxes install ([`Metrics::set_sandbox_source`]); the agent reads
//! the same source for the usage it reports ([`usage`]). Instantiation
//! latency is measured in the workers and arrives with their request
//! samples.
//!
//! Out of scope for now: terminations of a request after its response
//! head was sent (the ingress no longer sees those; the instance's own
//! stats count them).

pub mod usage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use berth_api::Phase;
use berth_api::wire::NodeReport;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    namespace: String,
    deployment: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    namespace: String,
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabel {
    sandbox: String,
}

/// One sandbox's usage as its cgroup tells it, and its instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    /// The sandbox's id (`ns-default-1234-0`), its cgroup's name.
    pub id: String,
    /// Memory charged to its cgroup now.
    pub memory_bytes: u64,
    /// CPU time its processes used so far, in nanoseconds.
    pub cpu_nanos: u64,
    /// Its instances, with the requests each served so far.
    pub members: Vec<MemberUsage>,
}

/// One instance in a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberUsage {
    /// Instance uid.
    pub uid: String,
    /// Requests it served since it was loaded.
    pub requests: u64,
    /// Their summed latency, in microseconds.
    pub latency_micros: u64,
    /// Of those, answers with a 5xx status.
    pub errors: u64,
    /// Of those, requests whose component the node stopped.
    pub traps: u64,
}

/// Reads every sandbox's usage (installed by [`crate::sandbox::Sandboxes`]).
type SandboxSource = Box<dyn Fn() -> Vec<SandboxUsage> + Send + Sync>;

/// Where the source is, once installed; shared by the metrics and their
/// collector. Encodes the sandboxes' cgroup usage on every scrape.
#[derive(Clone, Default)]
struct SandboxCollector(Arc<OnceLock<SandboxSource>>);

impl std::fmt::Debug for SandboxCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCollector")
            .field("installed", &self.0.get().is_some())
            .finish()
    }
}

impl prometheus_client::collector::Collector for SandboxCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sandboxes = self.0.get().map(|source| source()).unwrap_or_default();
        let mut memory = encoder.encode_descriptor(
            "berth_node_sandbox_memory_bytes",
            "Memory charged to each sandbox's cgroup, page cache included",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for sandbox in &sandboxes {
            let bytes = i64::try_from(sandbox.memory_bytes).unwrap_or(i64::MAX);
            ConstGauge::new(bytes).encode(memory.encode_family(&SandboxLabel {
                sandbox: sandbox.id.clone(),
            })?)?;
        }
        let mut cpu = encoder.encode_descriptor(
            "berth_node_sandbox_cpu_seconds",
            "CPU time used by each sandbox's cgroup since it was created",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for sandbox in &sandboxes {
            // Nanoseconds to seconds; f64 is exact far past any uptime.
            #[allow(clippy::cast_precision_loss, reason = "seconds as a float")]
            let seconds = sandbox.cpu_nanos as f64 / 1e9;
            ConstCounter::new(seconds).encode(cpu.encode_family(&SandboxLabel {
                sandbox: sandbox.id.clone(),
            })?)?;
        }
        Ok(())
    }
}

/// The limit a termination reason tells of, for `berth_node_limit_hits_total`.
fn limit_of(reason: &str) -> Option<&'static str> {
    match reason {
        "MemoryLimitExceeded" => Some("memory"),
        "DeadlineExceeded" => Some("deadline"),
        "FuelExhausted" => Some("fuel"),
        "TableLimitExceeded" => Some("table"),
        _ => None,
    }
}

/// The trap kind a termination reason tells of, for
/// `berth_node_traps_total`: the terminations that are wasm traps (a
/// deadline or fuel stop is an interrupt, a cancellation neither).
fn trap_kind(reason: &str) -> Option<&'static str> {
    match reason {
        "StackOverflow" => Some("StackOverflow"),
        "MemoryLimitExceeded" => Some("MemoryLimitExceeded"),
        "TableLimitExceeded" => Some("TableLimitExceeded"),
        "Trap" => Some("Trap"),
        _ => None,
    }
}

/// Buckets for instantiation: it takes microseconds with the pooling
/// allocator, so they double from 10 µs to about 0.33 s.
fn instantiation_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_01, 2.0, 16,
    ))
}

/// How many components the runtime compiled and loaded from disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileCounts {
    /// Compiled with cranelift.
    pub compiled: u64,
    /// Loaded as a compiled artifact kept on disk (cache hits).
    pub disk: u64,
}

/// Reads [`CompileCounts`] on every scrape.
struct Compiles(Box<dyn Fn() -> CompileCounts + Send + Sync>);

impl std::fmt::Debug for Compiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiles").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for Compiles {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = (self.0)();
        let mut family = encoder.encode_descriptor(
            "berth_node_compiles",
            "Components made ready to run, by source: compiled or loaded from the disk cache",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (source, count) in [("compiled", counts.compiled), ("disk", counts.disk)] {
            ConstCounter::new(count).encode(family.encode_family(&SourceLabel { source })?)?;
        }
        Ok(())
    }
}

/// The node's registry and the series in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<DeploymentLabels, Histogram, fn() -> Histogram>,
    instances: Family<PhaseLabel, Gauge>,
    terminations: Family<ReasonLabel, Counter>,
    traps: Family<KindLabel, Counter>,
    limit_hits: Family<LimitLabel, Counter>,
    instantiation: Histogram,
    sandboxes: SandboxCollector,
    service_forwards: Family<TransportLabel, Counter>,
    /// Set once the node has registered with the scheduler: `/readyz`.
    registered: AtomicBool,
}

impl Metrics {
    /// A registry with every node series; `compiles` is read on each scrape.
    pub fn new(compiles: impl Fn() -> CompileCounts + Send + Sync + 'static) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "berth_node_requests",
            "Ingress requests by deployment and HTTP status; unrouted requests have empty labels",
            requests.clone(),
        );
        let request_duration =
            Family::<DeploymentLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                berth_api::admin::latency_histogram,
            );
        registry.register(
            "berth_node_request_duration_seconds",
            "Time from a request's arrival to its response head, by deployment",
            request_duration.clone(),
        );
        let instances = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "berth_node_instances",
            "Instances on this node by phase, as last reported to the scheduler",
            instances.clone(),
        );
        let terminations = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "berth_node_terminations",
            "Requests whose instance was stopped by a limit or a trap, by reason",
            terminations.clone(),
        );
        let traps = Family::<KindLabel, Counter>::default();
        registry.register(
            "berth_node_traps",
            "Requests ended by a wasm trap, by kind (a subset of berth_node_terminations_total)",
            traps.clone(),
        );
        let limit_hits = Family::<LimitLabel, Counter>::default();
        registry.register(
            "berth_node_limit_hits",
            "Requests stopped by a per-request limit: memory, deadline, fuel or table",
            limit_hits.clone(),
        );
        for limit in ["memory", "deadline", "fuel", "table"] {
            drop(limit_hits.get_or_create(&LimitLabel { limit }));
        }
        let instantiation = instantiation_histogram();
        registry.register(
            "berth_node_instantiation_duration_seconds",
            "Time to instantiate a component for one request, in the sandboxes",
            instantiation.clone(),
        );
        registry.register_collector(Box::new(Compiles(Box::new(compiles))));
        let sandboxes = SandboxCollector::default();
        registry.register_collector(Box::new(sandboxes.clone()));
        let service_forwards = Family::<TransportLabel, Counter>::default();
        registry.register(
            "berth_node_service_forwards",
            "Service calls the router sent to an endpoint, by transport: local, quic (another node), http (another node without a peer listener)",
            service_forwards.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            instances,
            terminations,
            traps,
            limit_hits,
            instantiation,
            sandboxes,
            service_forwards,
            registered: AtomicBool::new(false),
        }
    }

    /// Counts one ingress request for `namespace/deployment` answered with
    /// `status` after `seconds`.
    pub fn request(&self, namespace: &str, deployment: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                namespace: namespace.to_owned(),
                deployment: deployment.to_owned(),
                code: status,
            })
            .inc();
        self.request_duration
            .get_or_create(&DeploymentLabels {
                namespace: namespace.to_owned(),
                deployment: deployment.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one request ended by `reason` ([`crate::runtime::Termination::reason`]).
    /// Also counts it as a trap by kind and as a limit hit, when it is one.
    pub fn terminated(&self, reason: &'static str) {
        self.terminations
            .get_or_create(&ReasonLabel { reason })
            .inc();
        if let Some(kind) = trap_kind(reason) {
            self.traps.get_or_create(&KindLabel { kind }).inc();
        }
        if let Some(limit) = limit_of(reason) {
            self.limit_hits.get_or_create(&LimitLabel { limit }).inc();
        }
    }

    /// Counts one Service call sent by `transport`
    /// (`crate::services::forward::Transport::label`).
    pub fn service_forward(&self, transport: &'static str) {
        self.service_forwards
            .get_or_create(&TransportLabel { transport })
            .inc();
    }

    /// Records one instantiation that took `seconds`.
    pub fn instantiated(&self, seconds: f64) {
        self.instantiation.observe(seconds);
    }

    /// Installs what reads the sandboxes' usage; the first one stays.
    pub fn set_sandbox_source(
        &self,
        source: impl Fn() -> Vec<SandboxUsage> + Send + Sync + 'static,
    ) {
        let _ = self.sandboxes.0.set(Box::new(source));
    }

    /// Every sandbox's usage now; empty without sandboxes.
    pub fn sandbox_usage(&self) -> Vec<SandboxUsage> {
        self.sandboxes
            .0
            .get()
            .map(|source| source())
            .unwrap_or_default()
    }

    /// Sets the instance gauges from a report to the scheduler.
    pub fn report(&self, report: &NodeReport) {
        for phase in Phase::ALL {
            let count = report.instances.iter().filter(|i| i.phase == phase).count();
            self.instances
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Notes that the node registered with the scheduler.
    pub fn registered(&self) {
        self.registered.store(true, Ordering::Relaxed);
    }

    /// Whether the node has registered with the scheduler at least once.
    pub fn is_ready(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    /// Every series in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use berth_api::wire::InstanceReport;

    use super::*;

    fn instance(uid: &str, phase: Phase) -> InstanceReport {
        InstanceReport {
            uid: uid.into(),
            phase,
            reason: String::new(),
            message: String::new(),
            ready: true,
            restart_count: 0,
            exit_code: None,
        }
    }

    #[test]
    fn encodes_requests_instances_terminations_and_compiles() {
        let metrics = Metrics::new(|| CompileCounts {
            compiled: 2,
            disk: 5,
        });
        metrics.request("default", "hello", 200, 0.003);
        metrics.request("default", "hello", 200, 0.001);
        metrics.request("default", "hello", 504, 1.0);
        metrics.terminated("DeadlineExceeded");
        metrics.terminated("MemoryLimitExceeded");
        metrics.terminated("Trap");
        metrics.instantiated(0.0001);
        metrics.set_sandbox_source(|| {
            vec![SandboxUsage {
                id: "ns-default-1-0".into(),
                memory_bytes: 4096,
                cpu_nanos: 1_500_000_000,
                members: Vec::new(),
            }]
        });
        metrics.report(&NodeReport {
            instances: vec![
                instance("a", Phase::Running),
                instance("b", Phase::Running),
                instance("c", Phase::Failed),
            ],
            components: Default::default(),
            usage: Default::default(),
        });
        let text = metrics.encode();
        for line in [
            "berth_node_requests_total{namespace=\"default\",deployment=\"hello\",code=\"200\"} 2",
            "berth_node_requests_total{namespace=\"default\",deployment=\"hello\",code=\"504\"} 1",
            "berth_node_request_duration_seconds_count{namespace=\"default\",deployment=\"hello\"} 3",
            "berth_node_instances{phase=\"Running\"} 2",
            "berth_node_instances{phase=\"Failed\"} 1",
            "berth_node_instances{phase=\"Pending\"} 0",
            "berth_node_terminations_total{reason=\"DeadlineExceeded\"} 1",
            "berth_node_compiles_total{source=\"compiled\"} 2",
            "berth_node_compiles_total{source=\"disk\"} 5",
            "berth_node_traps_total{kind=\"MemoryLimitExceeded\"} 1",
            "berth_node_traps_total{kind=\"Trap\"} 1",
            "berth_node_limit_hits_total{limit=\"memory\"} 1",
            "berth_node_limit_hits_total{limit=\"deadline\"} 1",
            "berth_node_limit_hits_total{limit=\"fuel\"} 0",
            "berth_node_instantiation_duration_seconds_count 1",
            "berth_node_sandbox_memory_bytes{sandbox=\"ns-default-1-0\"} 4096",
            "berth_node_sandbox_cpu_seconds_total{sandbox=\"ns-default-1-0\"} 1.5",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn ready_once_registered() {
        let metrics = Metrics::new(CompileCounts::default);
        assert!(!metrics.is_ready());
        metrics.registered();
        assert!(metrics.is_ready());
    }
}
