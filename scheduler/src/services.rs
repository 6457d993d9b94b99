//! Service endpoints, sans-IO: from a snapshot of Services, Instances and
//! Nodes to the routes every node's service router holds.
//!
//! An instance is an endpoint of a Service when it is in the Service's
//! namespace, its labels carry every pair of the selector, it is Running
//! and ready (its node says it passes its readiness probe), it is not being
//! deleted, it belongs to a Deployment (whose host name the ingress routes
//! by; a Job's run serves nothing), and its node is Ready. Each endpoint
//! says how to reach it: the node's ingress and peer addresses
//! ([`NodeAddresses`]) and the Deployment.
//!
//! [`routes`] is what [`crate::nodes::assignments`] sends to every node;
//! `get` ([`crate::admission::get`]) uses [`Endpoints`] to show each
//! Service's `status.endpoints`, computed when read rather than stored.
//! Nothing here does I/O or reads a clock.

use std::collections::HashMap;

use berth_api::ingress::Ingress;
use berth_api::service::{EndpointStatus, Service};
use berth_api::wire::{
    IngressHostRoute, IngressPathRoute, IngressRoute, ServiceEndpoint, ServiceRoute,
};
use berth_api::{Instance, Kind, Node, Phase};

/// One endpoint, borrowed from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Endpoint<'a> {
    /// The instance.
    pub instance: &'a Instance,
    /// The Ready node it runs on.
    pub node: &'a str,
    /// That node's ingress address.
    pub address: &'a str,
    /// That node's QUIC peer address; empty when it has none.
    pub peer_address: &'a str,
    /// The Deployment owning it.
    pub deployment: &'a str,
}

impl Endpoint<'_> {
    /// The endpoint as it travels to nodes.
    pub fn to_wire(&self) -> ServiceEndpoint {
        ServiceEndpoint {
            uid: self.instance.metadata.uid.clone().unwrap_or_default(),
            node: self.node.to_owned(),
            address: self.address.to_owned(),
            deployment: self.deployment.to_owned(),
            peer_address: self.peer_address.to_owned(),
            labels: self.instance.metadata.labels.clone(),
        }
    }

    /// The endpoint as a Service's status shows it.
    pub fn to_status(&self) -> EndpointStatus {
        EndpointStatus {
            instance: self.instance.metadata.name.clone(),
            node: self.node.to_owned(),
        }
    }
}

/// Where a Ready node takes calls: its ingress, and its QUIC peer
/// listener (empty when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddresses<'a> {
    /// `NodeStatus.ingress_address`.
    pub ingress: &'a str,
    /// `NodeStatus.peer_address`.
    pub peer: &'a str,
}

/// The instances that can take calls, by namespace: an index built once
/// per snapshot and asked once per Service.
#[derive(Debug, Default)]
pub struct Endpoints<'a> {
    by_namespace: HashMap<&'a str, Vec<Endpoint<'a>>>,
}

impl<'a> Endpoints<'a> {
    /// Indexes the `instances` that serve, given the Ready nodes and their
    /// addresses (`ready_nodes(name)` is `None` for a node that is not
    /// Ready or not known).
    pub fn new(
        instances: &'a [Instance],
        ready_nodes: impl Fn(&str) -> Option<NodeAddresses<'a>>,
    ) -> Endpoints<'a> {
        let mut by_namespace: HashMap<&str, Vec<Endpoint<'a>>> = HashMap::new();
        for instance in instances {
            if !is_serving(instance) {
                continue;
            }
            let Some(deployment) = deployment_of(instance) else {
                continue;
            };
            let Some(node) = instance.spec.node_name.as_deref() else {
                continue;
            };
            let Some(addresses) = ready_nodes(node) else {
                continue;
            };
            by_namespace
                .entry(instance.metadata.namespace_or_default())
                .or_default()
                .push(Endpoint {
                    instance,
                    node,
                    address: addresses.ingress,
                    peer_address: addresses.peer,
                    deployment,
                });
        }
        for endpoints in by_namespace.values_mut() {
            endpoints.sort_by(|a, b| {
                (a.node, &a.instance.metadata.uid).cmp(&(b.node, &b.instance.metadata.uid))
            });
        }
        Endpoints { by_namespace }
    }

    /// The endpoints of `service`, sorted by node, then instance uid.
    pub fn of(&self, service: &Service) -> impl Iterator<Item = &Endpoint<'a>> {
        self.by_namespace
            .get(service.metadata.namespace_or_default())
            .into_iter()
            .flatten()
            .filter(|endpoint| service.selects(&endpoint.instance.metadata.labels))
    }
}

/// Whether `instance` can take calls: Running, ready and not being deleted.
pub fn is_serving(instance: &Instance) -> bool {
    instance.status.phase == Phase::Running
        && instance.status.ready
        && instance.metadata.deletion_timestamp.is_none()
}

/// The Deployment (or DaemonSet) owning `instance`, by name.
fn deployment_of(instance: &Instance) -> Option<&str> {
    instance
        .metadata
        .owner_references
        .iter()
        .find(|r| r.kind == Kind::Deployment.as_str() || r.kind == Kind::DaemonSet.as_str())
        .map(|r| r.name.as_str())
}

/// The Ready nodes among `nodes`, with their addresses.
pub fn ready_nodes(nodes: &[Node]) -> HashMap<&str, NodeAddresses<'_>> {
    nodes
        .iter()
        .filter(|node| node.status.is_ready())
        .map(|node| {
            (
                node.metadata.name.as_str(),
                NodeAddresses {
                    ingress: node.status.ingress_address.as_str(),
                    peer: node.status.peer_address.as_str(),
                },
            )
        })
        .collect()
}

/// Every Service's route, sorted by namespace and name: what each node's
/// service router holds. A Service without endpoints gets an empty route,
/// so that the router tells "no ready endpoint" from "no such Service".
pub fn routes(services: &[Service], instances: &[Instance], nodes: &[Node]) -> Vec<ServiceRoute> {
    let ready = ready_nodes(nodes);
    let endpoints = Endpoints::new(instances, |node| ready.get(node).copied());
    let mut routes: Vec<ServiceRoute> = services
        .iter()
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .map(|service| ServiceRoute {
            namespace: service.metadata.namespace_or_default().to_owned(),
            name: service.metadata.name.clone(),
            endpoints: endpoints.of(service).map(Endpoint::to_wire).collect(),
        })
        .collect();
    routes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    routes
}

/// Every Ingress's rules, sorted by namespace and name: what each node's
/// ingress serves (see `docs/decisions/0027-ingress-objects.md`).
pub fn ingress_routes(ingresses: impl IntoIterator<Item = Ingress>) -> Vec<IngressRoute> {
    let mut routes: Vec<IngressRoute> = ingresses
        .into_iter()
        .filter(|ingress| ingress.metadata.deletion_timestamp.is_none())
        .map(|ingress| IngressRoute {
            namespace: ingress.metadata.namespace_or_default().to_owned(),
            name: ingress.metadata.name.clone(),
            rules: ingress
                .spec
                .rules
                .iter()
                .map(|rule| IngressHostRoute {
                    host: rule.host.clone().unwrap_or_default().to_ascii_lowercase(),
                    paths: rule
                        .http
                        .iter()
                        .flat_map(|http| http.paths.iter())
                        .map(|path| IngressPathRoute {
                            path: path.path().to_owned(),
                            exact: path.path_type.is_exact(),
                            service: path.backend.service.name.clone(),
                        })
                        .collect(),
                })
                .collect(),
            default_service: ingress
                .spec
                .default_backend
                .as_ref()
                .map(|backend| backend.service.name.clone()),
        })
        .collect();
    routes.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    routes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use berth_api::service::{ServiceSpec, ServiceStatus};
    use berth_api::{
        API_VERSION, InstanceSpec, InstanceStatus, NodeCondition, NodeStatus, ObjectMeta,
        OwnerReference,
    };

    fn service(namespace: &str, name: &str, selector: &[(&str, &str)]) -> Service {
        Service {
            api_version: API_VERSION.into(),
            kind: "Service".into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: ServiceSpec {
                selector: selector
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ports: Vec::new(),
            },
            status: ServiceStatus::default(),
        }
    }

    /// A ready, Running instance of Deployment `owner` on `node`, labelled
    /// `app: owner`.
    fn instance(namespace: &str, name: &str, owner: &str, node: &str) -> Instance {
        Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(namespace.into()),
                uid: Some(format!("uid-{name}")),
                labels: [("app".to_owned(), owner.to_owned())].into(),
                owner_references: vec![OwnerReference {
                    api_version: API_VERSION.into(),
                    kind: "Deployment".into(),
                    name: owner.into(),
                    uid: format!("d-{owner}"),
                }],
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                component: "sha256:00".into(),
                node_name: Some(node.into()),
                ..InstanceSpec::default()
            },
            status: InstanceStatus {
                phase: Phase::Running,
                ready: true,
                ..InstanceStatus::default()
            },
        }
    }

    fn node(name: &str, ready: bool) -> Node {
        Node {
            api_version: API_VERSION.into(),
            kind: "Node".into(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
            spec: berth_api::scheduling::NodeSpec::default(),
            status: NodeStatus {
                ingress_address: format!("{name}.example:8080"),
                peer_address: format!("{name}.example:7444"),
                conditions: vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    reason: String::new(),
                    last_transition_time: None,
                }],
                ..NodeStatus::default()
            },
        }
    }

    fn uids(route: &ServiceRoute) -> Vec<&str> {
        route.endpoints.iter().map(|e| e.uid.as_str()).collect()
    }

    #[test]
    fn endpoints_are_the_ready_matching_instances_of_the_namespace() {
        let services = [service("default", "b", &[("app", "b")])];
        let nodes = [node("n1", true), node("n2", true)];
        let mut not_ready = instance("default", "b-3", "b", "n1");
        not_ready.status.ready = false;
        let mut starting = instance("default", "b-4", "b", "n1");
        starting.status.phase = Phase::Starting;
        let mut deleting = instance("default", "b-5", "b", "n1");
        deleting.metadata.deletion_timestamp = Some(jiff::Timestamp::UNIX_EPOCH);
        let mut job_run = instance("default", "b-6", "b", "n1");
        job_run.metadata.owner_references[0].kind = "Job".into();
        let instances = [
            instance("default", "b-2", "b", "n2"),
            instance("default", "b-1", "b", "n1"),
            instance("other", "b-9", "b", "n1"),
            instance("default", "c-1", "c", "n1"),
            not_ready,
            starting,
            deleting,
            job_run,
        ];
        let routes = routes(&services, &instances, &nodes);
        assert_eq!(routes.len(), 1);
        let route = &routes[0];
        assert_eq!(
            (route.namespace.as_str(), route.name.as_str()),
            ("default", "b")
        );
        assert_eq!(uids(route), ["uid-b-1", "uid-b-2"], "sorted by node");
        assert_eq!(
            route.endpoints[1],
            ServiceEndpoint {
                uid: "uid-b-2".into(),
                node: "n2".into(),
                address: "n2.example:8080".into(),
                deployment: "b".into(),
                peer_address: "n2.example:7444".into(),
                labels: [("app".to_owned(), "b".to_owned())].into(),
            }
        );
    }

    #[test]
    fn instances_on_nodes_that_are_not_ready_are_left_out() {
        let services = [service("default", "b", &[("app", "b")])];
        let instances = [
            instance("default", "b-1", "b", "n1"),
            instance("default", "b-2", "b", "gone"),
            instance("default", "b-3", "b", "n2"),
        ];
        let routes = routes(
            &services,
            &instances,
            &[node("n1", true), node("n2", false)],
        );
        assert_eq!(uids(&routes[0]), ["uid-b-1"]);
    }

    #[test]
    fn every_label_of_the_selector_must_match() {
        let mut canary = instance("default", "b-2", "b", "n1");
        canary
            .metadata
            .labels
            .insert("track".into(), "canary".into());
        let instances = [instance("default", "b-1", "b", "n1"), canary];
        let services = [
            service("default", "all", &[("app", "b")]),
            service("default", "canary", &[("app", "b"), ("track", "canary")]),
            service("default", "none", &[("app", "nope")]),
        ];
        let routes = routes(&services, &instances, &[node("n1", true)]);
        let by_name: Vec<(&str, Vec<&str>)> =
            routes.iter().map(|r| (r.name.as_str(), uids(r))).collect();
        assert_eq!(
            by_name,
            [
                ("all", vec!["uid-b-1", "uid-b-2"]),
                ("canary", vec!["uid-b-2"]),
                ("none", vec![]),
            ],
            "a Service without endpoints still has a route"
        );
    }

    #[test]
    fn routes_are_sorted_and_skip_deleted_services() {
        let mut deleted = service("a", "x", &[("app", "x")]);
        deleted.metadata.deletion_timestamp = Some(jiff::Timestamp::UNIX_EPOCH);
        let services = [
            service("z", "b", &[("app", "b")]),
            service("default", "b", &[("app", "b")]),
            service("default", "a", &[("app", "a")]),
            deleted,
        ];
        let routes = routes(&services, &[], &[]);
        let names: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| (r.namespace.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(names, [("default", "a"), ("default", "b"), ("z", "b")]);
    }

    #[test]
    fn statuses_name_instance_and_node() {
        let instances = [instance("default", "b-1", "b", "n1")];
        let nodes = [node("n1", true)];
        let ready = ready_nodes(&nodes);
        let endpoints = Endpoints::new(&instances, |n| ready.get(n).copied());
        let statuses: Vec<EndpointStatus> = endpoints
            .of(&service("default", "b", &[("app", "b")]))
            .map(Endpoint::to_status)
            .collect();
        assert_eq!(
            statuses,
            [EndpointStatus {
                instance: "b-1".into(),
                node: "n1".into(),
            }]
        );
    }

    #[test]
    fn ingress_routes_flatten_rules_sorted_by_namespace_and_name() {
        let yaml = "apiVersion: berth.dev/v1
kind: Ingress
metadata: {name: shop, namespace: team}
spec:
  defaultBackend: {service: {name: web}}
  rules:
    - host: shop.example.com
      http:
        paths:
          - {path: /api, pathType: Exact, backend: {service: {name: api}}}
          - {pathType: ImplementationSpecific, backend: {service: {name: web}}}
---
apiVersion: berth.dev/v1
kind: Ingress
metadata: {name: blog}
spec:
  rules:
    - host: \"*.example.com\"
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: blog}}}
";
        let ingresses = berth_api::manifest::parse_manifests("ing.yaml", yaml)
            .unwrap()
            .into_iter()
            .filter_map(|o| match o {
                berth_api::Object::Ingress(i) => Some(*i),
                _ => None,
            });
        let routes = ingress_routes(ingresses);
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (routes[0].namespace.as_str(), routes[0].name.as_str()),
            ("default", "blog")
        );
        let shop = &routes[1];
        assert_eq!(shop.default_service.as_deref(), Some("web"));
        assert_eq!(
            shop.rules[0].paths,
            [
                IngressPathRoute {
                    path: "/api".into(),
                    exact: true,
                    service: "api".into(),
                },
                IngressPathRoute {
                    path: "/".into(),
                    exact: false,
                    service: "web".into(),
                },
            ]
        );
    }
}
