//! The scheduler's Prometheus metrics: one [`Metrics`] per scheduler, shared
//! as an `Arc` by the API server, the store and the reconciler, and encoded
//! in the OpenMetrics text format by the admin listener ([`crate::admin`]).
//!
//! Clock-free: callers measure durations and pass seconds in. No globals:
//! two schedulers in one process (tests) keep separate registries.
//!
//! Placement series come from each pass's [`PlacementStats`]: every
//! pending instance given to the placement batch is one attempt, so an
//! instance that fits nowhere is counted unschedulable at every pass (each
//! change of the store, and every second) until it fits, as
//! kube-scheduler counts its attempts. Controller queue depths are read
//! from each pass's snapshot ([`queue_depths`]).

use berth_api::{Object, Phase};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::controller::PlacementStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbCode {
    verb: &'static str,
    kind: &'static str,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

/// The reason kinds of `berth_placement_unschedulable_total`: one per
/// placement filter reason, recognised by the words the unschedulable
/// message uses for it (`crate::placement`'s filters), most specific
/// first. A message naming none (`0/0 nodes are available.`) is `NoNodes`
/// when the cluster has no node, else `Other`.
const REASON_KINDS: [(&str, &str); 15] = [
    ("were not ready", "NotReady"),
    ("were unschedulable", "Cordoned"),
    ("requested node name", "NodeName"),
    ("untolerated taint", "Taint"),
    ("node selector", "NodeSelector"),
    ("node affinity", "NodeAffinity"),
    ("did not offer runtime", "Runtime"),
    ("did not provide interface", "Interface"),
    ("too many instances", "TooManyInstances"),
    ("insufficient cpu", "InsufficientCpu"),
    ("insufficient memory", "InsufficientMemory"),
    ("existing instances' anti-affinity", "ExistingAntiAffinity"),
    ("instance anti-affinity", "InstanceAntiAffinity"),
    ("instance affinity", "InstanceAffinity"),
    ("topology spread", "TopologySpread"),
];

/// The reason kinds an unschedulable message names, each once.
pub fn reason_kinds(message: &str) -> Vec<&'static str> {
    // Each `N reason` part, after `0/M nodes are available: `.
    let parts = message
        .split_once(": ")
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('.');
    let mut kinds: Vec<&'static str> = Vec::new();
    for part in parts.split(", ").filter(|p| !p.is_empty()) {
        let kind = REASON_KINDS
            .iter()
            .find(|(words, _)| part.contains(words))
            .map_or("Other", |(_, kind)| *kind);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        kinds.push(if message.starts_with("0/0 ") {
            "NoNodes"
        } else {
            "Other"
        });
    }
    kinds
}

/// Work each controller has pending in a snapshot, the
/// `berth_controller_queue_depth` gauges:
/// - `placement`: instances without a node that are not terminating;
/// - `deployment`: Deployments not converged (status behind the spec's
///   generation, or replicas, updated or ready replicas differing from
///   `spec.replicas`);
/// - `job`: Jobs not finished (neither Complete nor Failed);
/// - `gc`: instances terminating, not yet removed.
pub fn queue_depths(objects: &[Object]) -> [(&'static str, i64); 4] {
    let (mut placement, mut deployment, mut job, mut gc) = (0, 0, 0, 0);
    for object in objects {
        match object {
            Object::Instance(instance) if instance.metadata.deletion_timestamp.is_some() => {
                gc += 1;
            }
            Object::Instance(instance) if instance.spec.node_name.is_none() => placement += 1,
            Object::Deployment(d) => {
                let want = u64::try_from(d.spec.replicas).unwrap_or(0);
                let converged = d.status.as_ref().is_some_and(|status| {
                    status.observed_generation >= d.metadata.generation.unwrap_or(0)
                        && status.replicas == want
                        && status.updated_replicas == want
                        && status.ready_replicas == want
                });
                if !converged {
                    deployment += 1;
                }
            }
            Object::Job(j) if j.status.finished().is_none() => job += 1,
            _ => {}
        }
    }
    [
        ("placement", placement),
        ("deployment", deployment),
        ("job", job),
        ("gc", gc),
    ]
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
    placement_duration: Histogram,
    placement_attempts: Counter,
    unschedulable: Family<ReasonLabel, Counter>,
    queue_depth: Family<ControllerLabel, Gauge>,
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
            "API requests answered, by verb, kind (empty when none or several) and result code (ok or the error code)",
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
        let placement_duration = berth_api::admin::latency_histogram();
        registry.register(
            "berth_placement_duration_seconds",
            "Time to compute a reconcile pass that had pending instances to place \
             (controllers and the placement batch, without store I/O)",
            placement_duration.clone(),
        );
        let placement_attempts = Counter::default();
        registry.register(
            "berth_placement_attempts",
            "Pending instances given to placement, counted at every pass",
            placement_attempts.clone(),
        );
        let unschedulable = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "berth_placement_unschedulable",
            "Placement attempts that found no node, by each reason kind in their message",
            unschedulable.clone(),
        );
        let queue_depth = Family::<ControllerLabel, Gauge>::default();
        registry.register(
            "berth_controller_queue_depth",
            "Work pending per controller as of the last reconcile pass",
            queue_depth.clone(),
        );
        Metrics {
            registry,
            api_requests,
            api_duration,
            store_commit,
            placement_passes,
            nodes,
            instances,
            placement_duration,
            placement_attempts,
            unschedulable,
            queue_depth,
        }
    }

    /// Counts one API request of `verb` about `kind` answered with `code`
    /// in `seconds`.
    pub fn api_request(
        &self,
        verb: &'static str,
        kind: &'static str,
        code: &'static str,
        seconds: f64,
    ) {
        self.api_requests
            .get_or_create(&VerbCode { verb, kind, code })
            .inc();
        self.api_duration
            .get_or_create(&Verb { verb })
            .observe(seconds);
    }

    /// Records one store commit that took `seconds`.
    pub fn store_commit(&self, seconds: f64) {
        self.store_commit.observe(seconds);
    }

    /// Records what placement attempted in a pass whose plan took
    /// `seconds` to compute; a pass with nothing pending is not timed.
    pub fn placement(&self, stats: &PlacementStats, seconds: f64) {
        if stats.attempts == 0 {
            return;
        }
        self.placement_duration.observe(seconds);
        self.placement_attempts.inc_by(stats.attempts);
        for message in &stats.unschedulable {
            for reason in reason_kinds(message) {
                self.unschedulable
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
        }
    }

    /// Counts one reconcile pass and sets the node, instance and queue
    /// gauges from the snapshot it read.
    pub fn reconcile_pass(&self, objects: &[Object]) {
        self.placement_passes.inc();
        for (controller, depth) in queue_depths(objects) {
            self.queue_depth
                .get_or_create(&ControllerLabel { controller })
                .set(depth);
        }
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
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
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
        metrics.api_request("apply", "Deployment", "ok", 0.002);
        metrics.api_request("apply", "Deployment", "ok", 0.004);
        metrics.api_request("get", "Instance", "NotFound", 0.001);
        metrics.store_commit(0.01);
        metrics.reconcile_pass(&[node("a", true), node("b", false), node("c", true)]);
        let text = metrics.encode();
        for line in [
            "berth_api_requests_total{verb=\"apply\",kind=\"Deployment\",code=\"ok\"} 2",
            "berth_api_requests_total{verb=\"get\",kind=\"Instance\",code=\"NotFound\"} 1",
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
    fn unschedulable_messages_become_reason_kinds() {
        assert_eq!(
            reason_kinds(
                "0/3 nodes are available: 2 insufficient memory, \
                 1 node(s) had untolerated taint {gpu: true}."
            ),
            ["InsufficientMemory", "Taint"]
        );
        assert_eq!(
            reason_kinds(
                "0/2 nodes are available: 1 node(s) didn't satisfy existing instances' \
                 anti-affinity rules, 1 node(s) didn't match instance anti-affinity rules."
            ),
            ["ExistingAntiAffinity", "InstanceAntiAffinity"]
        );
        assert_eq!(reason_kinds("0/0 nodes are available."), ["NoNodes"]);
        assert_eq!(
            reason_kinds("0/1 nodes are available: 1 martians."),
            ["Other"]
        );
        assert_eq!(reason_kinds("no pending instance 3"), ["Other"]);
    }

    #[test]
    fn placement_counts_attempts_and_reasons() {
        let metrics = Metrics::new();
        metrics.placement(&PlacementStats::default(), 1.0);
        metrics.placement(
            &PlacementStats {
                attempts: 3,
                bound: 2,
                unschedulable: vec!["0/1 nodes are available: 1 insufficient cpu.".into()],
            },
            0.002,
        );
        let text = metrics.encode();
        for line in [
            "berth_placement_attempts_total 3",
            "berth_placement_duration_seconds_count 1",
            "berth_placement_unschedulable_total{reason=\"InsufficientCpu\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn queue_depths_count_pending_work() {
        let pending = Object::from_json(
            &serde_json::to_vec(&serde_json::json!({
                "apiVersion": "berth.dev/v1",
                "kind": "Instance",
                "metadata": {"name": "i", "namespace": "default"},
                "spec": {"component": "sha256:00"}
            }))
            .unwrap(),
        )
        .unwrap();
        let depths = queue_depths(&[pending, node("a", true)]);
        assert_eq!(depths[0], ("placement", 1));
        assert_eq!(depths[3], ("gc", 0));
        let metrics = Metrics::new();
        metrics.reconcile_pass(&[]);
        assert!(
            metrics
                .encode()
                .contains("berth_controller_queue_depth{controller=\"placement\"} 0")
        );
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
