//! The controllers driven through [`reconcile`] over hand-built
//! clusters, one file a topic; the fixtures they share are here.

mod autoscaler;
mod canary;
mod cronjob;
mod daemonset;
mod deployments;
mod disruption;
mod gc;
mod invariants;
mod job;
mod nodes;
mod placement;
mod properties;
mod rollout;
mod status;

use std::collections::BTreeMap;

use berth_api::rollout::{
    DeploymentCondition, DeploymentStrategy, IntOrPercent, Revision, RollingUpdate, StrategyType,
};
use berth_api::scheduling::{
    Affinity, AffinityTerm, InstanceAffinity, Selector, Taint, TaintEffect, Toleration,
};
use berth_api::{
    API_VERSION, DeploymentSpec, DeploymentStatus, EnvVar, InstanceStatus, InstanceTemplate,
    LabelSelector, NodeCondition, NodeResources, NodeStatus, Quantity, ResourceList, Resources,
    TemplateMeta,
};

use super::deployment::{is_from, new_instance};
use super::status::record_revision;
use super::*;
use crate::nodes::HOSTNAME_LABEL;
use crate::store::object_key;

const NS: &str = "prod";
const GI: u64 = 1024 * 1024 * 1024;

/// Seconds after an arbitrary epoch; every test runs at `t(1000)`.
fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn now() -> Timestamp {
    t(1000)
}

fn settings() -> Settings {
    Settings {
        node_grace: SignedDuration::from_secs(5),
        started: t(0),
        reconnect_allowance: SignedDuration::from_secs(10),
        placement: Framework::default(),
    }
}

fn template(component: &str, cpu: &str) -> InstanceTemplate {
    InstanceTemplate {
        metadata: TemplateMeta {
            labels: BTreeMap::from([("app".into(), "web".into())]),
        },
        spec: InstanceSpec {
            component: component.into(),
            env: vec![],
            resources: Resources {
                requests: ResourceList {
                    cpu: (!cpu.is_empty()).then(|| Quantity(cpu.into())),
                    memory: None,
                },
                limits: ResourceList::default(),
            },
            node_name: None,
            ..InstanceSpec::default()
        },
    }
}

fn deployment(name: &str, replicas: i64) -> Deployment {
    Deployment {
        api_version: API_VERSION.into(),
        kind: Kind::Deployment.as_str().into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(NS.into()),
            uid: Some(format!("{name}-uid")),
            resource_version: Some("10".into()),
            generation: Some(2),
            creation_timestamp: Some(t(0)),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector::default(),
            template: template("sha256:v1", "100m"),
            strategy: DeploymentStrategy::default(),
            min_ready_seconds: 0,
            progress_deadline_seconds: None,
            revision_history_limit: None,
            paused: false,
        },
        status: None,
    }
}

/// An instance made from `owner`'s current template, as the controller
/// would have made it and the reconciler stored it.
fn instance(
    owner: &Deployment,
    name: &str,
    created: i64,
    phase: Phase,
    node: Option<&str>,
) -> Instance {
    let mut instance = new_instance(owner, &template_hash(owner), &mut |_| name.into());
    instance.metadata.uid = Some(format!("{name}-uid"));
    instance.metadata.resource_version = Some("20".into());
    instance.metadata.creation_timestamp = Some(t(created));
    instance.spec.node_name = node.map(Into::into);
    instance.status.phase = phase;
    // As a node reports an instance without a readiness probe.
    instance.status.ready = phase == Phase::Running;
    instance
}

fn node(name: &str, ready: bool) -> Node {
    Node {
        api_version: API_VERSION.into(),
        kind: Kind::Node.as_str().into(),
        metadata: ObjectMeta {
            name: name.into(),
            labels: BTreeMap::from([(HOSTNAME_LABEL.to_owned(), name.to_owned())]),
            resource_version: Some("5".into()),
            ..ObjectMeta::default()
        },
        // A node that is not Ready carries the unreachable taint, as the
        // node lifecycle leaves it.
        spec: berth_api::scheduling::NodeSpec {
            taints: if ready {
                Vec::new()
            } else {
                vec![Taint {
                    key: UNREACHABLE_TAINT.into(),
                    value: String::new(),
                    effect: TaintEffect::NoExecute,
                    time_added: Some(t(0)),
                }]
            },
            unschedulable: false,
        },
        status: NodeStatus {
            capacity: NodeResources {
                cpu_millis: 2000,
                memory_bytes: 4 * GI,
            },
            allocatable: NodeResources {
                cpu_millis: 2000,
                memory_bytes: 4 * GI,
            },
            runtimes: vec!["wasm".into()],
            conditions: vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "Unknown" }.into(),
                reason: String::new(),
                last_transition_time: Some(t(0)),
            }],
            ..NodeStatus::default()
        },
    }
}

/// A connected node heard just now, reporting these instance uids.
fn reporting(uids: &[&str]) -> Liveness {
    Liveness {
        last_heard: Some(now()),
        reported: Some(uids.iter().map(|u| (*u).to_owned()).collect()),
    }
}

fn liveness(entries: &[(&str, Liveness)]) -> HashMap<String, Liveness> {
    entries
        .iter()
        .map(|(name, l)| ((*name).to_owned(), l.clone()))
        .collect()
}

fn heard(ago: i64) -> Liveness {
    Liveness {
        last_heard: Some(now() - SignedDuration::from_secs(ago)),
        reported: Some(HashSet::new()),
    }
}

/// Names `web-1`, `web-2`, ...: unique for the life of the closure.
fn names() -> impl FnMut(&str) -> String {
    let mut count = 0;
    move |deployment| {
        count += 1;
        format!("{deployment}-{count}")
    }
}

fn run(view: &View, liveness: &HashMap<String, Liveness>) -> Plan {
    run_with(view, liveness, &settings())
}

fn run_with(view: &View, liveness: &HashMap<String, Liveness>, settings: &Settings) -> Plan {
    reconcile(
        view,
        liveness,
        &HashMap::new(),
        settings,
        now(),
        &mut names(),
    )
}

fn creates(plan: &Plan) -> Vec<&Instance> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Create(i) => Some(&**i),
            _ => None,
        })
        .collect()
}

fn updated_instances(plan: &Plan) -> Vec<(&str, &Instance)> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Update { seen, object } => match &**object {
                Object::Instance(i) => Some((seen.as_str(), &**i)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn updated_nodes(plan: &Plan) -> Vec<(&str, &Node)> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Update { seen, object } => match &**object {
                Object::Node(n) => Some((seen.as_str(), &**n)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn updated_deployments(plan: &Plan) -> Vec<(&str, &Deployment)> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Update { seen, object } => match &**object {
                Object::Deployment(d) => Some((seen.as_str(), &**d)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Names of the instances the plan terminates, sorted.
fn terminated(plan: &Plan) -> Vec<&str> {
    let mut names: Vec<&str> = updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.metadata.deletion_timestamp.is_some())
        .map(|(_, i)| i.metadata.name.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// `(instance, node)` for every binding in the plan.
fn bindings(plan: &Plan) -> Vec<(&str, &str)> {
    updated_instances(plan)
        .into_iter()
        .filter(|(_, i)| i.status.phase == Phase::Scheduled)
        .map(|(_, i)| {
            (
                i.metadata.name.as_str(),
                i.spec.node_name.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

fn removed(plan: &Plan) -> Vec<&str> {
    plan.commands
        .iter()
        .filter_map(|c| match c {
            Command::Remove { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

fn key_of(name: &str) -> String {
    key(Kind::Instance, Some(NS), name)
}

fn command_key(command: &Command) -> String {
    match command {
        Command::Create(i) => object_key(&Object::Instance(i.clone())),
        Command::CreateJob(j) => object_key(&Object::Job(j.clone())),
        Command::Update { object, .. } => object_key(object),
        Command::Remove { key, .. } => key.clone(),
    }
}

fn terminating(mut instance: Instance, since: Timestamp) -> Instance {
    instance.metadata.deletion_timestamp = Some(since);
    instance.status.phase = Phase::Terminating;
    instance
}

/// `sha256:v2` imports `wasi:http`; other components import nothing.
fn component_imports() -> HashMap<String, BTreeSet<String>> {
    HashMap::from([(
        "sha256:v2".to_owned(),
        BTreeSet::from(["wasi:http/types@0.2.6".to_owned()]),
    )])
}

fn gpu_toleration() -> Toleration {
    Toleration {
        key: "gpu".into(),
        value: "true".into(),
        effect: Some(TaintEffect::NoSchedule),
        ..Toleration::default()
    }
}

/// Required anti-affinity to instances labelled `key=value`, per
/// `topology_key` domain.
fn anti_affinity(key: &str, value: &str, topology_key: &str) -> Affinity {
    Affinity {
        instance_anti_affinity: Some(InstanceAffinity {
            required_during_scheduling_ignored_during_execution: vec![AffinityTerm {
                label_selector: Selector {
                    match_labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
                    match_expressions: vec![],
                },
                namespaces: vec![],
                topology_key: topology_key.into(),
            }],
            preferred_during_scheduling_ignored_during_execution: vec![],
        }),
        ..Affinity::default()
    }
}

fn rolling(
    mut d: Deployment,
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
) -> Deployment {
    d.spec.strategy.rolling_update = Some(RollingUpdate {
        max_surge: Some(max_surge),
        max_unavailable: Some(max_unavailable),
    });
    d
}

/// `old` with the component changed to `sha256:v2`.
fn upgraded(old: &Deployment) -> Deployment {
    let mut web = old.clone();
    web.spec.template.spec.component = "sha256:v2".into();
    web
}

/// An instance of `owner` Running since `started` seconds after the epoch.
fn running(owner: &Deployment, name: &str, created: i64, started: i64) -> Instance {
    let mut i = instance(owner, name, created, Phase::Running, Some("n1"));
    i.status.start_time = Some(t(started));
    i
}

/// One pass of the Deployment controller alone over `view`, at `at`.
fn pass(view: &View, at: Timestamp, names: &mut dyn FnMut(&str) -> String) -> Plan {
    let mut plan = Plan::default();
    for d in &view.deployments {
        reconcile_deployment(
            d,
            view,
            &HashSet::new(),
            &Traffic::default(),
            at,
            names,
            &mut plan,
        );
    }
    plan
}

/// What nodes do between passes: terminating instances are gone, and
/// the live ones `runs` picks turn Running at `at`.
fn settle(mut view: View, at: Timestamp, runs: impl Fn(&Instance) -> bool) -> View {
    view.instances.retain(|i| !is_terminating(i));
    for i in &mut view.instances {
        if runs(i) && i.status.phase != Phase::Running {
            i.status.phase = Phase::Running;
            i.status.ready = true;
            i.status.start_time = Some(at);
        }
    }
    view
}

fn status_of(plan: &Plan) -> DeploymentStatus {
    updated_deployments(plan)[0].1.status.clone().unwrap()
}

fn progressing(status: &DeploymentStatus) -> &DeploymentCondition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_PROGRESSING)
        .unwrap()
}

fn view_objects(view: &View) -> BTreeMap<String, Object> {
    let deployments = view
        .deployments
        .iter()
        .map(|d| Object::Deployment(Box::new(d.clone())));
    let instances = view
        .instances
        .iter()
        .map(|i| Object::Instance(Box::new(i.clone())));
    let nodes = view.nodes.iter().map(|n| Object::Node(Box::new(n.clone())));
    deployments
        .chain(instances)
        .chain(nodes)
        .map(|o| (object_key(&o), o))
        .collect()
}

/// Applies a plan as the reconciler does, guards included: creates get
/// a uid and a creation time, every write the next resourceVersion.
fn apply(view: &View, plan: &Plan) -> View {
    let mut objects = view_objects(view);
    let revision = "1000".to_owned();
    for command in plan.commands.clone() {
        match command {
            Command::Create(mut i) => {
                i.metadata.uid = Some(format!("{}-uid", i.metadata.name));
                i.metadata.creation_timestamp = Some(now());
                i.metadata.resource_version = Some(revision.clone());
                let object = Object::Instance(i);
                objects.entry(object_key(&object)).or_insert(object);
            }
            Command::CreateJob(mut j) => {
                j.metadata.uid = Some(format!("{}-uid", j.metadata.name));
                j.metadata.creation_timestamp = Some(now());
                j.metadata.resource_version = Some(revision.clone());
                let object = Object::Job(j);
                objects.entry(object_key(&object)).or_insert(object);
            }
            Command::Update { seen, mut object } => {
                let key = object_key(&object);
                if objects
                    .get(&key)
                    .map(|o| o.metadata().resource_version.clone())
                    == Some(Some(seen))
                {
                    object.metadata_mut().resource_version = Some(revision.clone());
                    objects.insert(key, *object);
                }
            }
            Command::Remove { key, seen } => {
                if objects
                    .get(&key)
                    .map(|o| o.metadata().resource_version.clone())
                    == Some(Some(seen))
                {
                    objects.remove(&key);
                }
            }
        }
    }
    View::new(objects.into_values().collect())
}
