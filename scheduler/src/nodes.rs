//! The node-facing verbs: join, register, report and the assignment watch.

use std::collections::HashSet;

use berth_api::container::ContainerWorkload;
use berth_api::job::Workload;
use berth_api::lifecycle::{DEFAULT_TERMINATION_GRACE_SECONDS, Probe, Probes};
use berth_api::quantity::{parse_cpu, parse_memory};
use berth_api::validate::dns1123_label;
use berth_api::wire::{
    ApiError, Assignment, Assignments, ErrorCode, NodeInfo, NodePatch, NodeReport, Response,
    ServiceRoute, WakeTarget,
};
use berth_api::{
    API_VERSION, Instance, Kind, Node, NodeResources, NodeStatus, Object, ObjectMeta, Phase,
    scheduling::{NodeSpec, Taint},
};
use jiff::Timestamp;

use crate::cluster::Cluster;
use crate::controller;
use crate::events;
use crate::pki::{Subject, identity_fingerprint};
use crate::store::key;

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Trades a bootstrap secret for node credentials.
pub fn join(cluster: &Cluster, secret: &str, node_name: &str) -> Result<Response, ApiError> {
    if !same_secret(secret, cluster.authority.join_secret()) {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "invalid join token",
        ));
    }
    dns1123_label(node_name)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("node name: {e}")))?;
    let subject = Subject::Node(node_name.to_owned());
    let identity = cluster
        .authority
        .issue_node(node_name)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let fingerprint = identity_fingerprint(&identity)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    // A node that joins again gets new credentials; the old ones stop working.
    cluster.store.revoke_subject(&subject.encode())?;
    cluster
        .store
        .put_identity(&fingerprint, &subject.encode())?;
    Ok(Response::Joined {
        cert_pem: identity.cert_chain_pem,
        key_pem: identity.key_pem,
        ca_pem: cluster.authority.ca_pem().to_owned(),
    })
}

/// The label every node carries with its own name: the topology key that
/// makes each node its own domain (`kubernetes.io/hostname` in Kubernetes).
pub const HOSTNAME_LABEL: &str = "berth.dev/hostname";

/// Creates or updates the Node object of a connecting node. Taints in
/// `info` apply only when the Node object is created; afterwards they are
/// changed with `berth taint`.
pub fn register(cluster: &Cluster, name: &str, info: NodeInfo) -> Result<Option<u64>, ApiError> {
    let now = Timestamp::now();
    let registration_taints = info
        .taints
        .iter()
        .map(|text| parse_taint(name, text, now))
        .collect::<Result<Vec<_>, _>>()?;
    cluster.heard(name, Timestamp::now(), None);
    let ((), revision) = cluster.store.write(|txn| {
        let key = key(Kind::Node, None, name);
        let existing = match txn.get(&key)? {
            Some(Object::Node(node)) => Some(*node),
            _ => None,
        };
        let mut node = existing.clone().unwrap_or_else(|| Node {
            api_version: API_VERSION.into(),
            kind: Kind::Node.as_str().into(),
            metadata: ObjectMeta {
                name: name.to_owned(),
                uid: Some(uuid::Uuid::new_v4().to_string()),
                creation_timestamp: Some(Timestamp::now()),
                ..ObjectMeta::default()
            },
            spec: NodeSpec {
                taints: registration_taints.clone(),
                unschedulable: false,
            },
            status: NodeStatus::default(),
        });
        node.metadata.labels = info.labels;
        node.metadata
            .labels
            .insert(HOSTNAME_LABEL.into(), name.to_owned());
        node.status.interfaces = info.interfaces;
        node.status.max_instances = info.max_instances;
        node.status.capacity = info.capacity;
        node.status.allocatable = info.allocatable;
        node.status.runtimes = info.runtimes;
        node.status.ingress_address = info.ingress_address;
        node.status.peer_address = info.peer_address;
        if existing.as_ref() != Some(&node) {
            txn.put(Object::Node(Box::new(node)))?;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(Some(revision))
}

/// Records a node's heartbeat and the state of its instances.
pub fn report(cluster: &Cluster, name: &str, report: NodeReport) -> Result<u64, ApiError> {
    let held: HashSet<String> = report.instances.iter().map(|i| i.uid.clone()).collect();
    cluster.heard(name, Timestamp::now(), Some(held));
    let now = Timestamp::now();
    let ((), revision) = cluster.store.write(|txn| {
        let mine: Vec<Instance> = txn
            .list(Kind::Instance, None)?
            .into_iter()
            .filter_map(|o| match o {
                Object::Instance(i) if i.spec.node_name.as_deref() == Some(name) => Some(*i),
                _ => None,
            })
            .collect();
        if let Some(Object::Node(mut node)) = txn.get(&key(Kind::Node, None, name))? {
            let mut components = report.components.clone();
            components.sort();
            components.dedup();
            if node.status.components != components {
                node.status.components = components;
                txn.put(Object::Node(node))?;
            }
        }
        for reported in report.instances {
            let Some(instance) = mine
                .iter()
                .find(|i| i.metadata.uid.as_deref() == Some(reported.uid.as_str()))
            else {
                continue;
            };
            if instance.metadata.deletion_timestamp.is_some()
                || !matches!(
                    reported.phase,
                    Phase::Starting | Phase::Running | Phase::Failed | Phase::Succeeded
                )
            {
                continue;
            }
            // Held back for unresolvable Secret or ConfigMap references:
            // the node is about to stop it; a last report of it running
            // must not undo the hold.
            if instance.status.reason == crate::secrets::REASON_CREATE_CONTAINER_CONFIG_ERROR {
                continue;
            }
            let status = &instance.status;
            if status.phase == reported.phase
                && status.reason == reported.reason
                && status.message == reported.message
                && status.ready == reported.ready
                && status.restart_count == reported.restart_count
                && status.exit_code == reported.exit_code
            {
                continue;
            }
            let mut updated = instance.clone();
            if reported.phase == Phase::Running && status.phase != Phase::Running {
                updated.status.start_time = Some(now);
            }
            updated.status.phase = reported.phase;
            updated.status.reason = reported.reason;
            updated.status.message = reported.message;
            updated.status.ready = reported.ready;
            updated.status.restart_count = reported.restart_count;
            updated.status.exit_code = reported.exit_code;
            let before = Object::Instance(Box::new(instance.clone()));
            let after = Object::Instance(Box::new(updated));
            events::record_change(txn, &before, &after, &format!("node/{name}"), now)?;
            txn.put(after)?;
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(revision)
}

fn limits(instance: &Instance) -> NodeResources {
    let limits = &instance.spec.resources.limits;
    NodeResources {
        cpu_millis: limits
            .cpu
            .as_ref()
            .and_then(|q| parse_cpu(&q.0).ok())
            .unwrap_or(0),
        memory_bytes: limits
            .memory
            .as_ref()
            .and_then(|q| parse_memory(&q.0).ok())
            .unwrap_or(0),
    }
}

/// What `node` should run now.
pub fn assignments(cluster: &Cluster, node: &str) -> Result<Assignments, ApiError> {
    let revision = cluster.store.revision()?;
    let all: Vec<Instance> = cluster
        .store
        .list(Kind::Instance, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i) => Some(*i),
            _ => None,
        })
        .collect();
    let services = service_routes(cluster, &all)?;
    let ingresses = crate::services::ingress_routes(
        cluster
            .store
            .list(Kind::Ingress, None)?
            .into_iter()
            .filter_map(|o| match o {
                Object::Ingress(i) => Some(*i),
                _ => None,
            }),
    );
    let traces = owner_traces(cluster)?;
    let mut instances: Vec<Assignment> = all
        .iter()
        .filter(|i| {
            i.spec.node_name.as_deref() == Some(node)
                && i.metadata.deletion_timestamp.is_none()
                && !controller::is_finished_run(i)
        })
        .filter_map(|instance| {
            // Secret and ConfigMap references are resolved here, for this
            // node's instances only; one whose references do not resolve
            // is held back (the reconciler marks it
            // CreateContainerConfigError).
            let env = match crate::secrets::instance_env(&cluster.store, instance) {
                Ok(Some(env)) => env,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            Some(Ok(Assignment {
                uid: instance.metadata.uid.clone().unwrap_or_default(),
                name: instance.metadata.name.clone(),
                namespace: instance.metadata.namespace_or_default().to_owned(),
                deployment: instance
                    .metadata
                    .owner_references
                    .iter()
                    .find(|r| {
                        r.kind == Kind::Deployment.as_str() || r.kind == Kind::DaemonSet.as_str()
                    })
                    .map(|r| r.name.clone())
                    .unwrap_or_default(),
                workload: if controller::job_owner(instance).is_some() {
                    Workload::Command
                } else {
                    Workload::Http
                },
                component: instance.spec.component.clone(),
                container: ContainerWorkload::from_spec(&instance.spec),
                env,
                limits: limits(instance),
                allowed_outbound_hosts: instance.spec.allowed_outbound_hosts.clone(),
                request_timeout_seconds: instance.spec.timeout_seconds.unwrap_or(0),
                restart_policy: instance.spec.restart_policy.unwrap_or_default(),
                probes: Probes {
                    liveness: instance.spec.liveness_probe.as_ref().map(Probe::resolve),
                    readiness: instance.spec.readiness_probe.as_ref().map(Probe::resolve),
                    startup: instance.spec.startup_probe.as_ref().map(Probe::resolve),
                },
                termination_grace_seconds: instance
                    .spec
                    .termination_grace_period_seconds
                    .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS),
                isolation: instance.spec.isolation.unwrap_or_default(),
                traceparent: instance
                    .metadata
                    .owner_references
                    .iter()
                    .find_map(|r| traces.get(&r.uid))
                    .cloned()
                    .unwrap_or_default(),
                labels: instance.metadata.labels.clone(),
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    instances.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(Assignments {
        revision,
        instances,
        services,
        ingresses,
        canaries: canary_routes(cluster, &all)?,
        scale_to_zero: scale_to_zero_targets(cluster)?,
        network_policies: crate::netpol::cluster_routes(cluster)?,
    })
}

/// The Deployments an autoscaler with `minReplicas: 0` targets, sorted:
/// a node's ingress holds requests for them while they have no instance
/// (see `node/src/wake.rs`).
fn scale_to_zero_targets(cluster: &Cluster) -> Result<Vec<WakeTarget>, ApiError> {
    let mut targets: Vec<WakeTarget> = cluster
        .store
        .list(Kind::HorizontalAutoscaler, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::HorizontalAutoscaler(a) if a.spec.min_replicas == 0 => Some(WakeTarget {
                namespace: a.metadata.namespace_or_default().to_owned(),
                deployment: a.spec.scale_target_ref.name.clone(),
            }),
            _ => None,
        })
        .collect();
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// How nodes split the requests of Deployments with a running canary.
fn canary_routes(
    cluster: &Cluster,
    instances: &[Instance],
) -> Result<Vec<berth_api::wire::CanaryRoute>, ApiError> {
    let deployments: Vec<berth_api::Deployment> = cluster
        .store
        .list(Kind::Deployment, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(*d),
            _ => None,
        })
        .collect();
    Ok(controller::canary_routes(&deployments, instances))
}

/// The `berth.dev/traceparent` annotation of every Deployment and Job that
/// has one, by uid: their instances' assignments carry it (see
/// `server::trace`).
fn owner_traces(cluster: &Cluster) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut traces = std::collections::HashMap::new();
    for kind in [Kind::Deployment, Kind::Job, Kind::DaemonSet] {
        for object in cluster.store.list(kind, None)? {
            let meta = object.metadata();
            if let (Some(uid), Some(trace)) = (
                &meta.uid,
                meta.annotations.get(berth_api::trace::ANNOTATION),
            ) {
                traces.insert(uid.clone(), trace.clone());
            }
        }
    }
    Ok(traces)
}

/// Every Service's ready endpoints (see [`crate::services`]).
fn service_routes(
    cluster: &Cluster,
    instances: &[Instance],
) -> Result<Vec<ServiceRoute>, ApiError> {
    let mut services = Vec::new();
    for object in cluster.store.list(Kind::Service, None)? {
        if let Object::Service(service) = object {
            services.push(*service);
        }
    }
    let mut nodes = Vec::new();
    for object in cluster.store.list(Kind::Node, None)? {
        if let Object::Node(node) = object {
            nodes.push(*node);
        }
    }
    Ok(crate::services::routes(&services, instances, &nodes))
}

/// Applies a taint or cordon change to a Node.
pub fn patch(cluster: &Cluster, name: &str, patch: &NodePatch) -> Result<(Vec<u8>, u64), ApiError> {
    let now = Timestamp::now();
    let (json, revision) = cluster.store.write(|txn| {
        let Some(Object::Node(mut node)) = txn.get(&key(Kind::Node, None, name))? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("Node {name} not found"),
            ));
        };
        let before = node.spec.clone();
        for (key, effect) in &patch.remove_taints {
            let had = node.spec.taints.len();
            node.spec
                .taints
                .retain(|t| !(t.key == *key && effect.is_none_or(|e| e == t.effect)));
            if node.spec.taints.len() == had {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("Node {name}: taint {key:?} not found"),
                ));
            }
        }
        for text in &patch.add_taints {
            let taint = parse_taint(name, text, now)?;
            node.spec
                .taints
                .retain(|t| !(t.key == taint.key && t.effect == taint.effect));
            node.spec.taints.push(taint);
        }
        if let Some(unschedulable) = patch.unschedulable {
            node.spec.unschedulable = unschedulable;
        }
        let object = if node.spec == before {
            Object::Node(node)
        } else {
            let mut original = node.clone();
            original.spec = before;
            let (original, node) = (Object::Node(original), Object::Node(node));
            events::record_change(txn, &original, &node, "scheduler", now)?;
            txn.put(node)?
        };
        Ok(object.to_json())
    })?;
    Ok((json, revision))
}

/// Parses and checks a taint sent as text, stamping when it was added.
fn parse_taint(node: &str, text: &str, now: Timestamp) -> Result<Taint, ApiError> {
    let mut taint = Taint::parse(text)
        .map_err(|e| ApiError::new(ErrorCode::Invalid, format!("Node {node}: {e}")))?;
    validate_taint(node, &taint)?;
    taint.time_added = Some(now);
    Ok(taint)
}

fn validate_taint(node: &str, taint: &Taint) -> Result<(), ApiError> {
    let labels = std::collections::BTreeMap::from([(taint.key.clone(), taint.value.clone())]);
    let probe = Object::Node(Box::new(Node {
        api_version: API_VERSION.into(),
        kind: Kind::Node.as_str().into(),
        metadata: ObjectMeta {
            name: node.to_owned(),
            labels,
            ..ObjectMeta::default()
        },
        spec: NodeSpec::default(),
        status: NodeStatus::default(),
    }));
    berth_api::validate::validate_object(&probe).map_err(|e| {
        ApiError::new(
            ErrorCode::Invalid,
            format!("Node {node}: taint {taint}: {}", e.message),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Authority;
    use crate::store::Store;
    use berth_api::{InstanceSpec, InstanceStatus, OwnerReference};

    #[test]
    fn assignments_carry_what_the_node_enforces() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let cluster = Cluster::new(store, Authority::load_or_create(dir.path()).unwrap()).unwrap();
        let instance = |name: &str, node: &str, terminating: bool| {
            Object::Instance(Box::new(Instance {
                api_version: API_VERSION.into(),
                kind: "Instance".into(),
                metadata: ObjectMeta {
                    name: name.into(),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    deletion_timestamp: terminating.then(Timestamp::now),
                    owner_references: vec![OwnerReference {
                        api_version: API_VERSION.into(),
                        kind: "Deployment".into(),
                        name: "web".into(),
                        uid: "d1".into(),
                    }],
                    ..ObjectMeta::default()
                },
                spec: InstanceSpec {
                    component: "sha256:00".into(),
                    node_name: Some(node.into()),
                    timeout_seconds: Some(7),
                    allowed_outbound_hosts: vec!["https://api.example.com".into()],
                    ..InstanceSpec::default()
                },
                status: InstanceStatus::default(),
            }))
        };
        cluster
            .store
            .write(|txn| -> Result<(), crate::store::StoreError> {
                txn.put(instance("a", "n1", false))?;
                txn.put(instance("b", "n2", false))?;
                txn.put(instance("c", "n1", true))?;
                Ok(())
            })
            .unwrap();
        let mine = assignments(&cluster, "n1").unwrap();
        assert_eq!(
            mine.instances.len(),
            1,
            "terminating and foreign instances are not assigned"
        );
        let a = &mine.instances[0];
        assert_eq!((a.name.as_str(), a.deployment.as_str()), ("a", "web"));
        assert_eq!(a.workload, Workload::Http);
        assert_eq!(a.request_timeout_seconds, 7);
        assert_eq!(a.allowed_outbound_hosts, ["https://api.example.com"]);
    }

    #[test]
    fn a_jobs_runs_are_commands_and_finished_ones_are_not_assigned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let cluster = Cluster::new(store, Authority::load_or_create(dir.path()).unwrap()).unwrap();
        let run = |name: &str, phase: Phase| {
            Object::Instance(Box::new(Instance {
                api_version: API_VERSION.into(),
                kind: "Instance".into(),
                metadata: ObjectMeta {
                    name: name.into(),
                    namespace: Some("default".into()),
                    uid: Some(format!("uid-{name}")),
                    owner_references: vec![OwnerReference {
                        api_version: API_VERSION.into(),
                        kind: "Job".into(),
                        name: "report".into(),
                        uid: "j1".into(),
                    }],
                    ..ObjectMeta::default()
                },
                spec: InstanceSpec {
                    component: "sha256:00".into(),
                    node_name: Some("n1".into()),
                    ..InstanceSpec::default()
                },
                status: InstanceStatus {
                    phase,
                    ..InstanceStatus::default()
                },
            }))
        };
        cluster
            .store
            .write(|txn| -> Result<(), crate::store::StoreError> {
                txn.put(run("running", Phase::Running))?;
                txn.put(run("done", Phase::Succeeded))?;
                txn.put(run("failed", Phase::Failed))?;
                Ok(())
            })
            .unwrap();
        let mine = assignments(&cluster, "n1").unwrap();
        let names: Vec<&str> = mine.instances.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["running"], "finished runs are not run again");
        let a = &mine.instances[0];
        assert_eq!(a.workload, Workload::Command);
        assert_eq!(a.deployment, "", "no Deployment routes to a Job's run");
    }

    #[test]
    fn every_node_gets_every_services_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let cluster = Cluster::new(store, Authority::load_or_create(dir.path()).unwrap()).unwrap();
        let node = |name: &str| {
            Object::Node(Box::new(Node {
                api_version: API_VERSION.into(),
                kind: "Node".into(),
                metadata: ObjectMeta {
                    name: name.into(),
                    ..ObjectMeta::default()
                },
                spec: NodeSpec::default(),
                status: NodeStatus {
                    ingress_address: format!("{name}:8080"),
                    conditions: vec![berth_api::NodeCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        reason: String::new(),
                        last_transition_time: None,
                    }],
                    ..NodeStatus::default()
                },
            }))
        };
        let service = Object::Service(Box::new(berth_api::service::Service {
            api_version: API_VERSION.into(),
            kind: "Service".into(),
            metadata: ObjectMeta {
                name: "b".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: berth_api::service::ServiceSpec {
                selector: [("app".to_owned(), "b".to_owned())].into(),
                ports: Vec::new(),
            },
            status: berth_api::service::ServiceStatus::default(),
        }));
        let b = Object::Instance(Box::new(Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: "b-1".into(),
                namespace: Some("default".into()),
                uid: Some("uid-b-1".into()),
                labels: [("app".to_owned(), "b".to_owned())].into(),
                owner_references: vec![OwnerReference {
                    api_version: API_VERSION.into(),
                    kind: "Deployment".into(),
                    name: "b".into(),
                    uid: "d1".into(),
                }],
                ..ObjectMeta::default()
            },
            spec: InstanceSpec {
                component: "sha256:00".into(),
                node_name: Some("n2".into()),
                ..InstanceSpec::default()
            },
            status: InstanceStatus {
                phase: Phase::Running,
                ready: true,
                ..InstanceStatus::default()
            },
        }));
        cluster
            .store
            .write(|txn| -> Result<(), crate::store::StoreError> {
                txn.put(node("n1"))?;
                txn.put(node("n2"))?;
                txn.put(service)?;
                txn.put(b)?;
                Ok(())
            })
            .unwrap();
        let mine = assignments(&cluster, "n1").unwrap();
        assert!(mine.instances.is_empty());
        assert_eq!(
            mine.services,
            [ServiceRoute {
                namespace: "default".into(),
                name: "b".into(),
                endpoints: vec![berth_api::wire::ServiceEndpoint {
                    uid: "uid-b-1".into(),
                    node: "n2".into(),
                    address: "n2:8080".into(),
                    deployment: "b".into(),
                    peer_address: String::new(),
                    labels: [("app".to_owned(), "b".to_owned())].into(),
                }],
            }],
            "a node routes to Services it runs nothing of"
        );
        assert_eq!(assignments(&cluster, "n2").unwrap().services, mine.services);
        let shown = crate::admission::get(&cluster, Kind::Service, Some("default"), None).unwrap();
        let Some(Object::Service(shown)) = shown.first() else {
            panic!("the Service: {shown:?}");
        };
        assert_eq!(
            shown.status.endpoints,
            [berth_api::service::EndpointStatus {
                instance: "b-1".into(),
                node: "n2".into(),
            }],
            "get shows the endpoints"
        );
    }
}
