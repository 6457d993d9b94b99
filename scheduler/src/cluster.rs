//! The scheduler's shared state: the store, the CA, change notification,
//! what live node connections told us, and those connections themselves
//! (the scheduler opens streams on them to read instance logs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use berth_api::wire::NodeUsage;
use jiff::Timestamp;
use tokio::sync::watch;

use crate::controller::Liveness;
use crate::metrics::Metrics;
use crate::pki::Authority;
use crate::store::{Store, StoreError};

/// Everything request handlers and the reconciler share.
#[derive(Debug)]
pub struct Cluster {
    /// The durable store.
    pub store: Store,
    /// The scheduler's Prometheus series.
    pub metrics: Arc<Metrics>,
    /// The CA and the scheduler's credentials.
    pub authority: Authority,
    /// Carries the store revision after every committed change.
    changes: watch::Sender<u64>,
    /// Node heartbeats and reports, kept in memory only.
    liveness: Mutex<HashMap<String, Liveness>>,
    /// Each connected node's connection, by node name: the newest one
    /// when a node reconnects before its old connection timed out.
    connections: Mutex<HashMap<String, quinn::Connection>>,
    /// Each node's latest usage report and when it came, kept in memory
    /// only (it is not desired state), for `berth top`.
    usage: Mutex<HashMap<String, (Timestamp, NodeUsage)>>,
    /// Recent request counters of every instance, for canary analysis.
    traffic: Mutex<crate::traffic::Traffic>,
    /// Where mutating requests are recorded; unset, they are not.
    pub audit: std::sync::OnceLock<crate::audit::AuditLog>,
}

impl Cluster {
    /// Wraps an opened store and CA.
    pub fn new(store: Store, authority: Authority) -> Result<Arc<Cluster>, StoreError> {
        let revision = store.revision()?;
        let metrics = Arc::new(Metrics::new());
        Ok(Arc::new(Cluster {
            store: store.with_metrics(metrics.clone()),
            metrics,
            authority,
            changes: watch::channel(revision).0,
            liveness: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            traffic: Mutex::new(crate::traffic::Traffic::default()),
            audit: std::sync::OnceLock::new(),
        }))
    }

    /// Announces that the store reached `revision`.
    pub fn changed(&self, revision: u64) {
        self.changes.send_if_modified(|current| {
            if revision > *current {
                *current = revision;
                true
            } else {
                false
            }
        });
    }

    /// A receiver woken on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records a heartbeat from `node`, with the instances it holds when the
    /// heartbeat is a report. Returns whether the node was not live before.
    pub fn heard(&self, node: &str, now: Timestamp, held: Option<HashSet<String>>) -> bool {
        let mut liveness = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = liveness.entry(node.to_owned()).or_default();
        let was_new = entry.last_heard.is_none();
        entry.last_heard = Some(now);
        if held.is_some() {
            entry.reported = held;
        }
        was_new
    }

    /// `node` connected (and authenticated) on `connection`.
    pub fn node_connected(&self, node: &str, connection: quinn::Connection) {
        self.connections().insert(node.to_owned(), connection);
    }

    /// `connection` of `node` closed; a newer one of the node stays.
    pub fn node_disconnected(&self, node: &str, connection: &quinn::Connection) {
        let mut connections = self.connections();
        if connections
            .get(node)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            connections.remove(node);
        }
    }

    /// The live connection of `node`, if it is connected.
    pub fn node_connection(&self, node: &str) -> Option<quinn::Connection> {
        self.connections().get(node).cloned()
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<String, quinn::Connection>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `usage`, reported by `node` at `now`, as its latest.
    pub fn record_usage(&self, node: &str, now: Timestamp, usage: NodeUsage) {
        self.traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(&usage, now);
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned(), (now, usage));
    }

    /// Every node's latest usage report and when it came.
    pub fn usage(&self) -> HashMap<String, (Timestamp, NodeUsage)> {
        self.usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What each instance of `wanted` answered over its window up to `now`.
    pub fn traffic_over(
        &self,
        wanted: &[(String, jiff::SignedDuration)],
        now: Timestamp,
    ) -> HashMap<String, crate::traffic::Counts> {
        let traffic = self.traffic.lock().unwrap_or_else(PoisonError::into_inner);
        wanted
            .iter()
            .map(|(uid, window)| (uid.clone(), traffic.over(uid, *window, now)))
            .collect()
    }

    /// A copy of what node connections told us.
    pub fn liveness(&self) -> HashMap<String, Liveness> {
        self.liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
