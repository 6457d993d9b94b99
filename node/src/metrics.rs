//! The node's Prometheus metrics: one [`Metrics`] per node, shared as an
//! `Arc` by the ingress and the agent, and encoded in the OpenMetrics text
//! format by the admin listener ([`crate::admin`]).
//!
//! Clock-free: callers measure durations and pass seconds in. No globals.
//! Compile counts are read from the runtime at scrape time (a collector),
//! so the runtime needs no handle on the registry.
//!
//! Out of scope for now: instantiation latency, sandbox cgroup usage, and
//! terminations of a request after its response head was sent (the
//! ingress no longer sees those; the instance's own stats count them).

use std::sync::atomic::{AtomicBool, Ordering};

use berth_api::Phase;
use berth_api::wire::NodeReport;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
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
        registry.register_collector(Box::new(Compiles(Box::new(compiles))));
        Metrics {
            registry,
            requests,
            request_duration,
            instances,
            terminations,
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
    pub fn terminated(&self, reason: &'static str) {
        self.terminations
            .get_or_create(&ReasonLabel { reason })
            .inc();
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
        metrics.report(&NodeReport {
            instances: vec![
                instance("a", Phase::Running),
                instance("b", Phase::Running),
                instance("c", Phase::Failed),
            ],
            components: Default::default(),
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
