//! The node's service router: where a component's call to a Service goes.
//!
//! The scheduler sends every node the routes of every Service (its ready
//! endpoints, each an instance on some node) with each assignments frame;
//! the agent hands them to [`ServiceRouter::update`]. The router serves
//! HTTP/1.1 on a loopback listener of its own ([`ServiceRouter::serve`], in
//! [`forward`]): a request whose `Host` is `NAME.NAMESPACE.svc` goes to one
//! of the Service's endpoints, through the ingress of the endpoint's node,
//! with `Host` rewritten to `<deployment>.<namespace>.<domain>`. A call to
//! another node travels over the nodes' mutually authenticated QUIC
//! connection ([`peer`]), which that node relays to its ingress.
//!
//! Components reach the router without knowing it: their outbound hook
//! ([`crate::outbound`]) sends `http://NAME.NAMESPACE.svc/...` and
//! `http://NAME/...` (a single label: the caller's own namespace) to it,
//! whatever `allowedOutboundHosts` says; [`service_host`] is that rule.
//!
//! Which endpoint ([`pick`]): one on this node if there is any, otherwise
//! the less busy (fewer calls in flight from this node) of two remote ones
//! drawn at random, power-of-two-choices. A call whose connection fails
//! before it was sent is tried on another node, for idempotent methods
//! only. Answers of the router itself: 400 (no service host), 404 (no such
//! Service), 403 (network policy admits the caller to no endpoint,
//! [`policy`]), 503 (no ready endpoint), 502 (no endpoint reachable).
//!
//! Out of scope for now: routing by `ports`. Ingress objects use
//! [`ServiceRouter::call`] too (`crate::ingress_rules`). See
//! `docs/decisions/0021-services.md` and
//! `docs/decisions/0031-node-to-node-forwarding.md`.

pub mod forward;
pub mod peer;
pub mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use berth_api::service::SERVICE_HOST_SUFFIX;
use berth_api::wire::{ServiceEndpoint, ServiceRoute};

/// Every Service's endpoints, by `(namespace, name)`.
type RouteTable = HashMap<(String, String), Arc<[ServiceEndpoint]>>;

/// The endpoints of every Service, by `(namespace, name)`, and the calls in
/// flight to each endpoint.
pub struct ServiceRouter {
    /// This node's name: its endpoints are preferred.
    node: String,
    /// The ingress domain, lowercase, without a final dot.
    domain: Arc<str>,
    routes: RwLock<RouteTable>,
    /// Calls in flight, by endpoint uid.
    in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// State of the random draws of [`pick`].
    seed: AtomicU64,
    /// Idle connections to endpoints' ingresses.
    pool: Arc<forward::Pool>,
    /// The QUIC endpoint calls to other nodes travel by; without it they
    /// go as plain HTTP to their ingresses.
    peers: OnceLock<Arc<peer::Peers>>,
    /// Where forwarded calls are counted.
    metrics: OnceLock<Arc<crate::metrics::Metrics>>,
    /// Every Ingress's rules, which the node's ingress serves
    /// (`crate::ingress_rules`).
    pub(crate) ingresses: RwLock<Arc<[berth_api::wire::IngressRoute]>>,
    /// Network policies and this node's endpoints' labels ([`policy`]).
    pub(crate) policies: Arc<policy::Policies>,
}

impl std::fmt::Debug for ServiceRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ServiceRouter")
            .field("node", &self.node)
            .field("services", &routes.len())
            .finish_non_exhaustive()
    }
}

/// What the router knows of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No such Service.
    Unknown,
    /// Its ready endpoints; empty when none is.
    Endpoints(Arc<[ServiceEndpoint]>),
}

impl ServiceRouter {
    /// A router for node `node`, whose ingresses serve under `domain`, with
    /// no routes yet.
    pub fn new(node: &str, domain: &str) -> Arc<ServiceRouter> {
        let seed = {
            use std::hash::{BuildHasher as _, Hasher as _};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write(node.as_bytes());
            hasher.finish()
        };
        Arc::new(ServiceRouter {
            node: node.to_owned(),
            domain: crate::ingress::normalize_domain(domain),
            routes: RwLock::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            seed: AtomicU64::new(seed),
            pool: Arc::default(),
            peers: OnceLock::new(),
            metrics: OnceLock::new(),
            ingresses: RwLock::new(Arc::from([])),
            policies: Arc::default(),
        })
    }

    /// Sends calls to other nodes' endpoints through `peers` from now on;
    /// the first set stays.
    pub fn use_peers(&self, peers: Arc<peer::Peers>) {
        peers.enforce(Arc::clone(&self.policies));
        let _ = self.peers.set(peers);
    }

    /// Replaces the network policies with those the scheduler sent.
    pub fn update_policies(&self, policies: &[berth_api::netpol::NetworkPolicyRoute]) {
        self.policies.update(policies);
    }

    /// Counts forwarded calls in `metrics`; the first set stays.
    pub fn count_in(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Replaces the routes with those the scheduler sent.
    pub fn update(&self, routes: &[ServiceRoute]) {
        let table: RouteTable = routes
            .iter()
            .map(|route| {
                (
                    (route.namespace.clone(), route.name.clone()),
                    Arc::from(route.endpoints.as_slice()),
                )
            })
            .collect();
        let uids: HashSet<&str> = routes
            .iter()
            .flat_map(|route| route.endpoints.iter().map(|e| e.uid.as_str()))
            .collect();
        self.in_flight()
            .retain(|uid, count| count.load(Ordering::Relaxed) > 0 || uids.contains(uid.as_str()));
        self.policies.update_local(&self.node, routes);
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = table;
    }

    /// The endpoints of Service `name` in `namespace`.
    pub fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        match routes.get(&(namespace.to_owned(), name.to_owned())) {
            Some(endpoints) => Lookup::Endpoints(Arc::clone(endpoints)),
            None => Lookup::Unknown,
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AtomicUsize>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The counter of calls in flight to endpoint `uid`.
    fn counter(&self, uid: &str) -> Arc<AtomicUsize> {
        Arc::clone(self.in_flight().entry(uid.to_owned()).or_default())
    }

    /// Calls in flight to endpoint `uid` from this node.
    pub fn outstanding(&self, uid: &str) -> usize {
        self.in_flight()
            .get(uid)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// [`pick`] with this node, its counts and its random draws.
    fn choose<'e>(
        &self,
        endpoints: &'e [ServiceEndpoint],
        failed: &[String],
    ) -> Option<&'e ServiceEndpoint> {
        let counts = self.in_flight();
        let outstanding = |e: &ServiceEndpoint| {
            counts
                .get(&e.uid)
                .map_or(0, |count| count.load(Ordering::Relaxed))
        };
        pick(endpoints, &self.node, failed, outstanding, &mut |n| {
            self.random_below(n)
        })
    }

    /// A pseudo-random number in `0..n` (splitmix64): good enough to
    /// spread load, not for secrets.
    fn random_below(&self, n: usize) -> usize {
        let mut x = self
            .seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        match u64::try_from(n) {
            Ok(n) if n > 0 => usize::try_from(x % n).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Picks the endpoint a call goes to, leaving out those whose node's
/// address is in `failed`: an endpoint on `local_node` if there is one,
/// otherwise power-of-two-choices among the others: two drawn at random
/// (`random(n)` is in `0..n`), the one with fewer calls `outstanding`
/// wins, the first drawn on a tie. `None` when no endpoint is left.
pub fn pick<'e>(
    endpoints: &'e [ServiceEndpoint],
    local_node: &str,
    failed: &[String],
    outstanding: impl Fn(&ServiceEndpoint) -> usize,
    random: &mut dyn FnMut(usize) -> usize,
) -> Option<&'e ServiceEndpoint> {
    let usable: Vec<&ServiceEndpoint> = endpoints
        .iter()
        .filter(|e| !failed.contains(&e.address))
        .collect();
    let local: Vec<&ServiceEndpoint> = usable
        .iter()
        .copied()
        .filter(|e| e.node == local_node)
        .collect();
    let candidates = if local.is_empty() { usable } else { local };
    match candidates.as_slice() {
        [] => None,
        [only] => Some(only),
        _ => {
            let n = candidates.len();
            let first = random(n) % n;
            let mut second = random(n - 1) % (n - 1);
            if second >= first {
                second += 1;
            }
            let (a, b) = (candidates.get(first)?, candidates.get(second)?);
            Some(if outstanding(b) < outstanding(a) {
                b
            } else {
                a
            })
        }
    }
}

/// Splits a router host, `NAME.NAMESPACE.svc` (lowercase, without port),
/// into `(name, namespace)`.
pub fn service_of(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(SERVICE_HOST_SUFFIX)?.strip_suffix('.')?;
    let (name, namespace) = rest.split_once('.')?;
    (is_label(name) && is_label(namespace)).then_some((name, namespace))
}

/// The router host a component's outbound request names, if it names a
/// Service: `http://NAME.NAMESPACE.svc[:port]/...`, or `http://NAME/...`
/// or `http://NAME.svc/...` (NAME one DNS label other than `localhost`),
/// which are Service `NAME` of the caller's `namespace`. Other schemes and hosts are not Services.
pub fn service_host(uri: &http::Uri, namespace: &str) -> Option<String> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
        return None;
    }
    let host = uri.host()?.trim_end_matches('.').to_ascii_lowercase();
    if let Some((name, namespace)) = service_of(&host) {
        return Some(format!("{name}.{namespace}.{SERVICE_HOST_SUFFIX}"));
    }
    // `NAME.svc` names a Service of the caller's namespace, as `NAME` does.
    let name = host
        .strip_suffix(SERVICE_HOST_SUFFIX)
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or(&host);
    (name != "localhost" && is_label(name) && is_label(namespace))
        .then(|| format!("{name}.{namespace}.{SERVICE_HOST_SUFFIX}"))
}

/// A DNS-1123 label: 1 to 63 lowercase letters, digits or `-`, starting and
/// ending with a letter or digit.
fn is_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alphanumeric =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=63).contains(&bytes.len())
        && alphanumeric(bytes.first())
        && alphanumeric(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    fn endpoint(uid: &str, node: &str) -> ServiceEndpoint {
        ServiceEndpoint {
            uid: uid.into(),
            node: node.into(),
            address: format!("{node}:8080"),
            deployment: "b".into(),
            peer_address: String::new(),
            labels: std::collections::BTreeMap::new(),
        }
    }

    /// Draws `values` in turn.
    fn draws(values: &[usize]) -> impl FnMut(usize) -> usize + '_ {
        let mut next = values.iter().cycle();
        move |_| *next.next().unwrap()
    }

    #[test]
    fn a_local_endpoint_wins() {
        let endpoints = [
            endpoint("a", "n1"),
            endpoint("b", "n2"),
            endpoint("c", "n3"),
        ];
        let busy = |_: &ServiceEndpoint| 100;
        let picked = pick(&endpoints, "n2", &[], busy, &mut draws(&[0, 0])).unwrap();
        assert_eq!(picked.uid, "b", "even when it is busy");
        let failed = vec!["n2:8080".to_owned()];
        let picked = pick(&endpoints, "n2", &failed, busy, &mut draws(&[0, 0])).unwrap();
        assert_ne!(picked.node, "n2", "unless its node failed");
    }

    #[test]
    fn two_choices_take_the_less_busy() {
        let endpoints = [
            endpoint("a", "n1"),
            endpoint("b", "n2"),
            endpoint("c", "n3"),
        ];
        let load = |e: &ServiceEndpoint| match e.uid.as_str() {
            "a" => 5,
            "b" => 1,
            _ => 3,
        };
        // Draws 0 and 0: the second skips the first, so a and b.
        let picked = pick(&endpoints, "n9", &[], load, &mut draws(&[0, 0])).unwrap();
        assert_eq!(picked.uid, "b");
        // Draws 2 and 0: c and a.
        let picked = pick(&endpoints, "n9", &[], load, &mut draws(&[2, 0])).unwrap();
        assert_eq!(picked.uid, "c");
        // A tie keeps the first drawn.
        let even = |_: &ServiceEndpoint| 1;
        let picked = pick(&endpoints, "n9", &[], even, &mut draws(&[2, 0])).unwrap();
        assert_eq!(picked.uid, "c");
    }

    #[test]
    fn failed_nodes_are_left_out_until_none_is_left() {
        let endpoints = [endpoint("a", "n1"), endpoint("b", "n2")];
        let idle = |_: &ServiceEndpoint| 0;
        let failed = vec!["n1:8080".to_owned()];
        let picked = pick(&endpoints, "n9", &failed, idle, &mut draws(&[0])).unwrap();
        assert_eq!(picked.uid, "b");
        let failed = vec!["n1:8080".to_owned(), "n2:8080".to_owned()];
        assert!(pick(&endpoints, "n9", &failed, idle, &mut draws(&[0])).is_none());
        assert!(pick(&[], "n9", &[], idle, &mut draws(&[0])).is_none());
    }

    #[test]
    fn random_draws_spread_over_every_endpoint() {
        let router = ServiceRouter::new("n9", "berth.localhost");
        let endpoints = [
            endpoint("a", "n1"),
            endpoint("b", "n2"),
            endpoint("c", "n3"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(router.choose(&endpoints, &[]).unwrap().uid.clone());
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        for n in 1..10 {
            assert!(router.random_below(n) < n);
        }
    }

    #[test]
    fn router_hosts_name_a_service_and_namespace() {
        assert_eq!(service_of("b.default.svc"), Some(("b", "default")));
        assert_eq!(service_of("b.default.svc.cluster"), None);
        assert_eq!(service_of("b.svc"), None);
        assert_eq!(service_of("a.b.default.svc"), None);
        assert_eq!(service_of("b.default.berth.localhost"), None);
        assert_eq!(service_of("-b.default.svc"), None);
    }

    #[test]
    fn outbound_urls_that_name_services() {
        let host = |url: &str| service_host(&url.parse().unwrap(), "team");
        assert_eq!(host("http://b.default.svc/x"), Some("b.default.svc".into()));
        assert_eq!(host("http://B.Default.SVC./"), Some("b.default.svc".into()));
        assert_eq!(
            host("http://b.default.svc:8080/"),
            Some("b.default.svc".into())
        );
        assert_eq!(
            host("http://b/"),
            Some("b.team.svc".into()),
            "own namespace"
        );
        assert_eq!(host("http://b"), Some("b.team.svc".into()));
        assert_eq!(host("http://b.svc/x"), Some("b.team.svc".into()));
        assert_eq!(host("https://b.default.svc/"), None, "http only");
        assert_eq!(host("http://localhost:8080/"), None);
        assert_eq!(host("http://127.0.0.1:8080/"), None);
        assert_eq!(host("http://api.example.com/"), None);
        assert_eq!(host("http://under_score/"), None);
        assert_eq!(host("/relative"), None);
    }

    #[test]
    fn updates_replace_routes_and_forget_idle_counters() {
        let router = ServiceRouter::new("n1", "berth.localhost");
        let route = |name: &str, endpoints: Vec<ServiceEndpoint>| ServiceRoute {
            namespace: "default".into(),
            name: name.into(),
            endpoints,
        };
        router.update(&[
            route("b", vec![endpoint("u1", "n2")]),
            route("idle", vec![]),
        ]);
        assert_eq!(
            router.lookup("default", "idle"),
            Lookup::Endpoints(Arc::from([]))
        );
        assert_eq!(router.lookup("other", "b"), Lookup::Unknown);
        let busy = router.counter("u1");
        busy.fetch_add(1, Ordering::Relaxed);
        let _ = router.counter("gone");
        assert_eq!(router.outstanding("u1"), 1);
        router.update(&[route("b", vec![endpoint("u2", "n2")])]);
        assert_eq!(router.lookup("default", "idle"), Lookup::Unknown);
        assert_eq!(
            router.outstanding("u1"),
            1,
            "a call in flight is still counted"
        );
        assert!(!router.in_flight().contains_key("gone"));
    }
}
