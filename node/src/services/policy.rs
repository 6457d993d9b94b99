//! Network policy at the node: who calls, and whether the policies the
//! scheduler sent admit the call (`berth_api::netpol::decide`).
//!
//! **Who calls.** A component's outbound hook ([`crate::outbound`]) sets
//! the [`CALLER_HEADER`] on every call to a Service, replacing any the
//! guest set: [`instance_header`], this node process's random key
//! ([`node_key`]) followed by the instance's namespace and labels. The
//! router trusts the header only when the key matches ([`local_caller`]),
//! so a container or another process on the node that reaches the
//! loopback router is an unidentified caller, whatever it sends. Between
//! nodes the router sends the caller without the key ([`peer_value`]):
//! the QUIC link is mutually authenticated and only nodes connect, so the
//! receiving peer listener trusts it ([`peer_origin`]). The header never
//! reaches a component: it is removed before a call goes to an ingress.
//!
//! **Where it is checked.** The router checks each call against the
//! endpoints' labels before sending it ([`super::forward`]); the peer
//! listener of the endpoint's node checks it again against the labels of
//! its own endpoints of the called Deployment ([`super::peer`]), so a node
//! holding older policies than the caller's still refuses. Calls through
//! Ingress objects are not service-to-service calls: they carry
//! [`Origin::Ingress`] and no policy applies to them, as none applies to
//! a Deployment's own ingress host. See
//! `docs/decisions/0037-network-and-capability-policy.md`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use berth_api::netpol::{Caller, Denied, NetworkPolicyRoute, decode_caller, encode_caller};
use berth_api::wire::ServiceRoute;
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::Response;

use super::forward::{RouterBody, text};

/// The header naming who calls a Service.
pub const CALLER_HEADER: &str = "berth-caller";

/// The header value between nodes for a call through an Ingress object.
const INGRESS_VALUE: &str = "ingress";

/// Where a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A client of the node's ingress, through an Ingress object's rule:
    /// not policed.
    Ingress,
    /// A caller of a Service.
    Caller(Caller),
}

/// This node process's key, 32 hex digits, which proves that a caller
/// header was set by the node's own outbound hook.
pub fn node_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if read.is_err() {
            // SipHash under the process's random keys.
            use std::hash::{BuildHasher as _, Hasher as _};
            for (i, chunk) in bytes.chunks_mut(8).enumerate() {
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_usize(i);
                hasher.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                for (b, h) in chunk.iter_mut().zip(hasher.finish().to_le_bytes()) {
                    *b = h;
                }
            }
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The caller header an instance of `namespace` with `labels` sends.
pub fn instance_header(namespace: &str, labels: &BTreeMap<String, String>) -> String {
    let caller = Caller::Instance {
        namespace: namespace.to_owned(),
        labels: labels.clone(),
    };
    format!("{} {}", node_key(), encode_caller(&caller))
}

/// Takes the caller header off a call that reached the router on
/// loopback: the instance it names when it carries this node's key,
/// otherwise [`Caller::Unknown`].
pub fn local_caller(headers: &mut HeaderMap) -> Caller {
    let value = headers.remove(CALLER_HEADER);
    let Some(value) = value.as_ref().and_then(|v| v.to_str().ok()) else {
        return Caller::Unknown;
    };
    match value.split_once(' ') {
        Some((key, rest)) if key == node_key() => decode_caller(rest),
        _ => Caller::Unknown,
    }
}

/// The caller header value sent to another node.
pub fn peer_value(origin: &Origin) -> Option<HeaderValue> {
    let value = match origin {
        Origin::Ingress => INGRESS_VALUE.to_owned(),
        Origin::Caller(caller) => encode_caller(caller),
    };
    HeaderValue::from_str(&value).ok()
}

/// Takes the caller header off a call another node forwarded.
pub fn peer_origin(headers: &mut HeaderMap) -> Origin {
    let value = headers.remove(CALLER_HEADER);
    match value.as_ref().and_then(|v| v.to_str().ok()) {
        Some(INGRESS_VALUE) => Origin::Ingress,
        Some(value) => Origin::Caller(decode_caller(value)),
        None => Origin::Caller(Caller::Unknown),
    }
}

/// The 403 answer to a refused call.
pub fn forbidden(denied: &Denied) -> Response<RouterBody> {
    text(StatusCode::FORBIDDEN, format!("{denied}\n"))
}

/// The policies the scheduler sent, and the labels of this node's
/// endpoints by namespace and Deployment (what the peer listener checks
/// against).
#[derive(Debug, Default)]
pub struct Policies {
    policies: RwLock<Arc<[NetworkPolicyRoute]>>,
    local: RwLock<LocalLabels>,
}

/// The label sets of this node's endpoints, by namespace and Deployment.
type LocalLabels = HashMap<(String, String), Vec<BTreeMap<String, String>>>;

impl Policies {
    /// Replaces the policies.
    pub fn update(&self, policies: &[NetworkPolicyRoute]) {
        *self
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::from(policies);
    }

    /// Records the labels of `node`'s endpoints in `routes`.
    pub fn update_local(&self, node: &str, routes: &[ServiceRoute]) {
        let mut local = LocalLabels::new();
        for route in routes {
            for endpoint in route.endpoints.iter().filter(|e| e.node == node) {
                let labels = local
                    .entry((route.namespace.clone(), endpoint.deployment.clone()))
                    .or_default();
                if !labels.contains(&endpoint.labels) {
                    labels.push(endpoint.labels.clone());
                }
            }
        }
        *self.local.write().unwrap_or_else(PoisonError::into_inner) = local;
    }

    /// The current policies.
    pub fn current(&self) -> Arc<[NetworkPolicyRoute]> {
        Arc::clone(&self.policies.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether `origin` may call an instance of `namespace` with `labels`.
    pub fn decide(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        target: &str,
        origin: &Origin,
    ) -> Result<(), Denied> {
        match origin {
            Origin::Ingress => Ok(()),
            Origin::Caller(caller) => {
                berth_api::netpol::decide(&self.current(), namespace, labels, target, caller)
            }
        }
    }

    /// Whether `origin` may call Deployment `deployment` of `namespace`
    /// on this node: every one of its local endpoints' label sets must
    /// admit it (without any known, the labels are taken as empty, which
    /// only namespace-wide policies select).
    pub fn decide_local(
        &self,
        namespace: &str,
        deployment: &str,
        origin: &Origin,
    ) -> Result<(), Denied> {
        let sets = self
            .local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), deployment.to_owned()))
            .cloned()
            .unwrap_or_else(|| vec![BTreeMap::new()]);
        let target = format!("deployment {deployment}");
        sets.iter()
            .try_for_each(|labels| self.decide(namespace, labels, &target, origin))
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
    use berth_api::netpol::PeerRule;
    use berth_api::wire::ServiceEndpoint;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_nodes_own_key_identifies_a_local_caller() {
        let mut headers = HeaderMap::new();
        let header = instance_header("team-b", &labels(&[("app", "caller")]));
        headers.insert(CALLER_HEADER, HeaderValue::from_str(&header).unwrap());
        assert_eq!(
            local_caller(&mut headers),
            Caller::Instance {
                namespace: "team-b".into(),
                labels: labels(&[("app", "caller")]),
            }
        );
        assert!(headers.is_empty(), "the header goes no further");
        headers.insert(
            CALLER_HEADER,
            HeaderValue::from_static("0000 team-a app=trusted"),
        );
        assert_eq!(local_caller(&mut headers), Caller::Unknown, "forged");
        assert_eq!(local_caller(&mut headers), Caller::Unknown, "absent");
        assert_eq!(node_key().len(), 32);
    }

    #[test]
    fn origins_cross_to_peers() {
        for origin in [
            Origin::Ingress,
            Origin::Caller(Caller::Unknown),
            Origin::Caller(Caller::Instance {
                namespace: "team-b".into(),
                labels: labels(&[("app", "x")]),
            }),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CALLER_HEADER, peer_value(&origin).unwrap());
            assert_eq!(peer_origin(&mut headers), origin);
            assert!(headers.is_empty());
        }
        assert_eq!(
            peer_origin(&mut HeaderMap::new()),
            Origin::Caller(Caller::Unknown)
        );
    }

    #[test]
    fn the_peer_side_checks_every_local_endpoint_of_the_deployment() {
        let policies = Policies::default();
        policies.update(&[NetworkPolicyRoute {
            namespace: "team-a".into(),
            name: "web-from-b".into(),
            selector: labels(&[("app", "web")]),
            allow: vec![PeerRule {
                namespaces: Some(vec!["team-b".into()]),
                labels: BTreeMap::new(),
                anyone: false,
            }],
        }]);
        let endpoint = |uid: &str, node: &str, app: &str| ServiceEndpoint {
            uid: uid.into(),
            node: node.into(),
            address: String::new(),
            deployment: "web".into(),
            peer_address: String::new(),
            labels: labels(&[("app", app)]),
        };
        policies.update_local(
            "n1",
            &[ServiceRoute {
                namespace: "team-a".into(),
                name: "web".into(),
                endpoints: vec![endpoint("u1", "n1", "web"), endpoint("u2", "n2", "other")],
            }],
        );
        let from = |ns: &str| {
            Origin::Caller(Caller::Instance {
                namespace: ns.into(),
                labels: BTreeMap::new(),
            })
        };
        assert!(
            policies
                .decide_local("team-a", "web", &from("team-b"))
                .is_ok()
        );
        let refused = policies
            .decide_local("team-a", "web", &from("team-c"))
            .unwrap_err();
        assert!(
            refused.to_string().starts_with(
                "no network policy allows calls from namespace team-c to deployment web"
            )
        );
        assert!(
            policies
                .decide_local("team-a", "web", &Origin::Ingress)
                .is_ok()
        );
        // Unknown Deployments are checked as unlabelled: this policy
        // selects app=web only.
        assert!(
            policies
                .decide_local("team-a", "db", &from("team-c"))
                .is_ok()
        );
    }
}
