//! The scheduler's Prometheus metrics: one [`Metrics`] per scheduler, shared
//! as an `Arc` by the API server, the store and the reconciler, and encoded
//! in the OpenMetrics text format by the admin listener ([`crate::admin`]).
//!
//! Clock-free: callers measure durations and pass seconds in. No globals:
//! two schedulers in one process (tests) keep separate registries.

use berth_api::{Object, Phase};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbCode {
    verb: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verb {
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Condition {
    condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// The scheduler's registry and the series in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_requests: Family<VerbCode, Counter>,
    api_duration: Family<Verb, Histogram, fn() -> Histogram>,
    store_commit: Histogram,
    placement_passes: Counter,
    nodes: Family<Condition, Gauge>,
    instances: Family<PhaseLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every scheduler series registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let api_requests = Family::<VerbCode, Counter>::default();
        registry.register(
            "berth_api_requests",
            "API requests answered, by verb and result code (ok or the error code)",
            api_requests.clone(),
        );
        let api_duration = Family::<Verb, Histogram, fn() -> Histogram>::new_with_constructor(
            berth_api::admin::latency_histogram,
        );
        registry.register(
            "berth_api_request_duration_seconds",
            "Time to answer an API request, by verb",
            api_duration.clone(),
        );
        let store_commit = berth_api::admin::latency_histogram();
        registry.register(
            "berth_store_commit_duration_seconds",
            "Time of store write transactions that committed a change",
            store_commit.clone(),
        );
        let placement_passes = Counter::default();
        registry.register(
            "berth_placement_passes",
            "Reconcile passes run (controllers and placement)",
            placement_passes.clone(),
        );
        let nodes = Family::<Condition, Gauge>::default();
        registry.register(
            "berth_nodes",
            "Nodes by Ready condition, as of the last reconcile pass",
            nodes.clone(),
        );
        let instances = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "berth_instances",
            "Instances by phase, as of the last reconcile pass",
            instances.clone(),
        );
        Metrics {
            registry,
            api_requests,
            api_duration,
            store_commit,
            placement_passes,
            nodes,
            instances,
        }
    }

    /// Counts one API request of `verb` answered with `code` in `seconds`.
    pub fn api_request(&self, verb: &'static str, code: &'static str, seconds: f64) {
        self.api_requests
            .get_or_create(&VerbCode { verb, code })
            .inc();
        self.api_duration
            .get_or_create(&Verb { verb })
            .observe(seconds);
    }

    /// Records one store commit that took `seconds`.
    pub fn store_commit(&self, seconds: f64) {
        self.store_commit.observe(seconds);
    }

    /// Counts one reconcile pass and sets the node and instance gauges from
    /// the snapshot it read.
    pub fn reconcile_pass(&self, objects: &[Object]) {
        self.placement_passes.inc();
        let (mut ready, mut not_ready) = (0, 0);
        let mut phases = [0i64; Phase::ALL.len()];
        for object in objects {
            match object {
                Object::Node(node) if node.status.is_ready() => ready += 1,
                Object::Node(_) => not_ready += 1,
                Object::Instance(instance) => {
                    if let Some(count) = Phase::ALL
                        .iter()
                        .position(|p| *p == instance.status.phase)
                        .and_then(|i| phases.get_mut(i))
                    {
                        *count += 1;
                    }
                }
                _ => {}
            }
        }
        self.nodes
            .get_or_create(&Condition { condition: "Ready" })
            .set(ready);
        self.nodes
            .get_or_create(&Condition {
                condition: "NotReady",
            })
            .set(not_ready);
        for (phase, count) in Phase::ALL.iter().zip(phases) {
            self.instances
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str(),
                })
                .set(count);
        }
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
    use super::*;

    fn node(name: &str, ready: bool) -> Object {
        let json = serde_json::json!({
            "apiVersion": "berth.dev/v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        });
        Object::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn encodes_requests_commits_and_cluster_state() {
        let metrics = Metrics::new();
        metrics.api_request("apply", "ok", 0.002);
        metrics.api_request("apply", "ok", 0.004);
        metrics.api_request("get", "NotFound", 0.001);
        metrics.store_commit(0.01);
        metrics.reconcile_pass(&[node("a", true), node("b", false), node("c", true)]);
        let text = metrics.encode();
        for line in [
            "berth_api_requests_total{verb=\"apply\",code=\"ok\"} 2",
            "berth_api_requests_total{verb=\"get\",code=\"NotFound\"} 1",
            "berth_api_request_duration_seconds_count{verb=\"apply\"} 2",
            "berth_store_commit_duration_seconds_count 1",
            "berth_placement_passes_total 1",
            "berth_nodes{condition=\"Ready\"} 2",
            "berth_nodes{condition=\"NotReady\"} 1",
            "berth_instances{phase=\"Running\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn gauges_follow_the_latest_pass() {
        let metrics = Metrics::new();
        metrics.reconcile_pass(&[node("a", true)]);
        metrics.reconcile_pass(&[]);
        let text = metrics.encode();
        assert!(
            text.contains("berth_nodes{condition=\"Ready\"} 0"),
            "{text}"
        );
        assert!(text.contains("berth_placement_passes_total 2"), "{text}");
    }
}
