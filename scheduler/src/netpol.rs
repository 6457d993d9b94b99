//! Network policies as nodes enforce them: every NetworkPolicy of the
//! cluster compiled ([`berth_api::netpol::compile`]) with the labels of
//! every namespace, sent to every node with its assignments
//! (`Assignments.network_policies`).
//!
//! Namespace selectors are resolved here, against Namespace objects'
//! labels, so that a node needs no Namespace objects: a namespace labelled
//! later changes the compiled form and a new assignments frame goes out.
//! The enforcement is the nodes' (`node/src/services/policy.rs`). See
//! `docs/decisions/0037-network-and-capability-policy.md`.

use std::collections::BTreeMap;

use berth_api::netpol::{NetworkPolicy, NetworkPolicyRoute, compile};
use berth_api::wire::ApiError;
use berth_api::{Kind, Object};

use crate::cluster::Cluster;

/// Every policy compiled against `namespaces` (name to labels), sorted by
/// namespace and name.
pub fn routes(
    policies: &[NetworkPolicy],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<NetworkPolicyRoute> {
    let mut routes: Vec<NetworkPolicyRoute> =
        policies.iter().map(|p| compile(p, namespaces)).collect();
    routes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    routes
}

/// [`routes`] for the cluster's stored policies and namespaces.
pub fn cluster_routes(cluster: &Cluster) -> Result<Vec<NetworkPolicyRoute>, ApiError> {
    let policies: Vec<NetworkPolicy> = cluster
        .store
        .list(Kind::NetworkPolicy, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::NetworkPolicy(p) => Some(*p),
            _ => None,
        })
        .collect();
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let namespaces = cluster
        .store
        .list(Kind::Namespace, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Namespace(n) => Some((n.metadata.name.clone(), n.metadata.labels.clone())),
            _ => None,
        })
        .collect();
    Ok(routes(&policies, &namespaces))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    fn policy(namespace: &str, name: &str, spec: &str) -> NetworkPolicy {
        NetworkPolicy {
            api_version: berth_api::API_VERSION.into(),
            kind: "NetworkPolicy".into(),
            metadata: berth_api::ObjectMeta {
                name: name.into(),
                namespace: Some(namespace.into()),
                ..berth_api::ObjectMeta::default()
            },
            spec: serde_json::from_str(spec).unwrap(),
        }
    }

    #[test]
    fn namespace_selectors_resolve_to_labelled_namespaces_in_order() {
        let namespaces = BTreeMap::from([
            (
                "team-b".to_owned(),
                BTreeMap::from([("tenant".to_owned(), "b".to_owned())]),
            ),
            ("team-c".to_owned(), BTreeMap::new()),
        ]);
        let allow_b =
            r#"{"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"tenant":"b"}}}]}]}"#;
        let compiled = routes(
            &[
                policy("team-a", "z-allow-b", allow_b),
                policy("team-a", "default-deny", "{}"),
            ],
            &namespaces,
        );
        assert_eq!(compiled[0].name, "default-deny");
        assert!(compiled[0].allow.is_empty());
        assert_eq!(compiled[1].name, "z-allow-b");
        assert_eq!(
            compiled[1].allow[0].namespaces,
            Some(vec!["team-b".to_owned()])
        );
    }
}
