//! The kinds berth stores: `Namespace`, `Deployment`, `Instance`, `Node`,
//! `PriorityClass`, `Event`, `Job` (its types are in [`crate::job`]),
//! `Service` (in [`crate::service`]), `DaemonSet` (in
//! [`crate::daemonset`]), `CronJob` (in [`crate::cronjob`]) and
//! `PodDisruptionBudget` (in [`crate::disruption`]).
//!
//! Field names follow Kubernetes wherever the concept is the same, so a
//! Deployment manifest reads like one a Kubernetes user already knows.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::autoscaler::HorizontalAutoscaler;
use crate::container::{ContainerPort, SecurityContext, Volume, VolumeMount};
use crate::cronjob::CronJob;
use crate::daemonset::DaemonSet;
use crate::disruption::PodDisruptionBudget;
use crate::ingress::Ingress;
use crate::job::Job;
use crate::lifecycle::{Isolation, Probe, RestartPolicy};
use crate::meta::{LabelSelector, ObjectMeta};
use crate::quota::{LimitRange, ResourceQuota};
use crate::rbac::{Role, RoleBinding};
use crate::rollout::{DeploymentCondition, DeploymentStrategy, Revision};
use crate::scheduling::{
    Affinity, NodeSpec, PreemptionPolicy, Toleration, TopologySpreadConstraint,
};
use crate::service::Service;

/// Every kind the API knows, in the order `berth get` lists them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Kind {
    /// A tenant's scope for names, quotas and policy.
    Namespace,
    /// Desired replicas of one component.
    Deployment,
    /// One replica, bound to a node.
    Instance,
    /// A machine that runs instances.
    Node,
    /// A named priority for instances.
    PriorityClass,
    /// Something that happened to an object.
    Event,
    /// Runs of a command component to completion.
    Job,
    /// A stable name for the ready instances a selector matches.
    Service,
    /// One instance on every matching node.
    DaemonSet,
    /// Jobs created on a cron schedule.
    CronJob,
    /// Host and path rules to Services.
    Ingress,
    /// How many selected instances voluntary disruptions may take down.
    PodDisruptionBudget,
    /// Scales a Deployment by load, to zero and back.
    HorizontalAutoscaler,
    /// A namespace's ceiling on resources and object counts.
    ResourceQuota,
    /// Defaults and bounds for a namespace's instances.
    LimitRange,
    /// What a namespace's users may do (RBAC).
    Role,
    /// What users may do anywhere, or in a namespace it is bound in.
    ClusterRole,
    /// Grants a Role or ClusterRole in one namespace.
    RoleBinding,
    /// Grants a ClusterRole everywhere.
    ClusterRoleBinding,
    /// Confidential key-value data, encrypted at rest.
    Secret,
    /// Plain key-value configuration.
    ConfigMap,
    /// Who may call a namespace's instances through Services.
    NetworkPolicy,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 22] = [
        Kind::Namespace,
        Kind::Deployment,
        Kind::Instance,
        Kind::Node,
        Kind::PriorityClass,
        Kind::Event,
        Kind::Job,
        Kind::Service,
        Kind::DaemonSet,
        Kind::CronJob,
        Kind::Ingress,
        Kind::PodDisruptionBudget,
        Kind::HorizontalAutoscaler,
        Kind::ResourceQuota,
        Kind::LimitRange,
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::NetworkPolicy,
    ];

    /// The kind's name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Deployment => "Deployment",
            Kind::Instance => "Instance",
            Kind::Node => "Node",
            Kind::PriorityClass => "PriorityClass",
            Kind::Event => "Event",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::DaemonSet => "DaemonSet",
            Kind::Ingress => "Ingress",
            Kind::CronJob => "CronJob",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::HorizontalAutoscaler => "HorizontalAutoscaler",
            Kind::ResourceQuota => "ResourceQuota",
            Kind::LimitRange => "LimitRange",
            Kind::Role => "Role",
            Kind::ClusterRole => "ClusterRole",
            Kind::RoleBinding => "RoleBinding",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            Kind::Deployment
                | Kind::Instance
                | Kind::Event
                | Kind::Job
                | Kind::Service
                | Kind::DaemonSet
                | Kind::Ingress
                | Kind::CronJob
                | Kind::PodDisruptionBudget
                | Kind::HorizontalAutoscaler
                | Kind::ResourceQuota
                | Kind::LimitRange
                | Kind::Role
                | Kind::RoleBinding
                | Kind::Secret
                | Kind::ConfigMap
                | Kind::NetworkPolicy
        )
    }

    /// Whether users may create this kind with `apply`; the others are
    /// written only by the cluster itself.
    pub fn is_user_managed(self) -> bool {
        matches!(
            self,
            Kind::Namespace
                | Kind::Deployment
                | Kind::PriorityClass
                | Kind::Job
                | Kind::Service
                | Kind::DaemonSet
                | Kind::Ingress
                | Kind::CronJob
                | Kind::PodDisruptionBudget
                | Kind::HorizontalAutoscaler
                | Kind::ResourceQuota
                | Kind::LimitRange
                | Kind::Role
                | Kind::ClusterRole
                | Kind::RoleBinding
                | Kind::ClusterRoleBinding
                | Kind::Secret
                | Kind::ConfigMap
                | Kind::NetworkPolicy
        )
    }

    /// Parses a kind as written in manifests (`Deployment`).
    pub fn from_manifest_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Parses a kind as typed on the command line: `deployment`,
    /// `deployments`, `deploy`, `Deployment`, `ns`, `inst`, `no` and so on.
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "namespace" | "namespaces" | "ns" => Some(Kind::Namespace),
            "deployment" | "deployments" | "deploy" => Some(Kind::Deployment),
            "instance" | "instances" | "inst" => Some(Kind::Instance),
            "node" | "nodes" | "no" => Some(Kind::Node),
            "priorityclass" | "priorityclasses" | "pc" => Some(Kind::PriorityClass),
            "event" | "events" | "ev" => Some(Kind::Event),
            "job" | "jobs" => Some(Kind::Job),
            "service" | "services" | "svc" => Some(Kind::Service),
            "daemonset" | "daemonsets" | "ds" => Some(Kind::DaemonSet),
            "ingress" | "ingresses" | "ing" => Some(Kind::Ingress),
            "cronjob" | "cronjobs" | "cj" => Some(Kind::CronJob),
            "poddisruptionbudget" | "poddisruptionbudgets" | "pdb" => {
                Some(Kind::PodDisruptionBudget)
            }
            "horizontalautoscaler"
            | "horizontalautoscalers"
            | "hpa"
            | "autoscaler"
            | "autoscalers" => Some(Kind::HorizontalAutoscaler),
            "resourcequota" | "resourcequotas" | "quota" | "quotas" => Some(Kind::ResourceQuota),
            "limitrange" | "limitranges" | "limits" => Some(Kind::LimitRange),
            "role" | "roles" => Some(Kind::Role),
            "clusterrole" | "clusterroles" => Some(Kind::ClusterRole),
            "rolebinding" | "rolebindings" => Some(Kind::RoleBinding),
            "clusterrolebinding" | "clusterrolebindings" => Some(Kind::ClusterRoleBinding),
            "secret" | "secrets" => Some(Kind::Secret),
            "configmap" | "configmaps" | "cm" => Some(Kind::ConfigMap),
            "networkpolicy" | "networkpolicies" | "netpol" => Some(Kind::NetworkPolicy),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Namespace`.
    pub kind: String,
    /// Name and labels.
    pub metadata: ObjectMeta,
}

/// Desired replicas of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Deployment`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: DeploymentSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

/// `Deployment.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Number of instances; signed so that a negative value gets a clear
    /// validation error rather than a type error.
    #[serde(default = "default_replicas")]
    pub replicas: i64,
    /// Which instances belong to this Deployment.
    #[serde(default)]
    pub selector: LabelSelector,
    /// The instance every replica is made from.
    pub template: InstanceTemplate,
    /// How instances move to a new template.
    #[serde(default, skip_serializing_if = "is_default")]
    pub strategy: DeploymentStrategy,
    /// Seconds an instance must be Running before it counts as available.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_ready_seconds: u32,
    /// Seconds a rollout may go without progress before it is marked
    /// failed (`ProgressDeadlineExceeded`); default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    /// How many old templates to keep for `rollout undo`; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// A paused Deployment does not roll out template changes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub paused: bool,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn default_replicas() -> i64 {
    1
}

/// `Deployment.spec.template`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceTemplate {
    /// Labels given to every instance.
    #[serde(default)]
    pub metadata: TemplateMeta,
    /// What each instance runs.
    pub spec: InstanceSpec,
}

/// `Deployment.spec.template.metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMeta {
    /// Labels given to every instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What an instance runs, with which environment and resources.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    /// In a manifest: a path to a `.wasm` component, relative to the
    /// manifest's directory, or a component in an OCI registry,
    /// `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:...`. Once
    /// applied: `sha256:<hex>` of the uploaded component, or the registry
    /// component pinned to its manifest digest. Empty for a container
    /// (`image`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub component: String,
    /// An OCI image to run as a Linux container instead of a component
    /// (see [`crate::container`]); placed only on nodes offering `oci`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A container's command, replacing the image's `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A container's arguments, replacing the image's `CMD`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The ports a container listens on; requests go to the first (80 when
    /// none is given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// A container's read-only root and user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Volumes of a container (`emptyDir`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Where a container's volumes are mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Runs a container in the node's network namespace instead of one of
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Environment variables the component sees, and nothing else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Every key of these Secrets and ConfigMaps as a variable (`env`
    /// wins over them; see [`crate::secret`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<crate::secret::EnvFromSource>,
    /// Requests (for placement) and limits (enforced on the node).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// The node the instance is bound to; set by placement. In a template,
    /// the one node its instances may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Hosts the instance may call over HTTP (`https://api.example.com`,
    /// `http://127.0.0.1:8080`, `*://*.example.com:*`); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Node labels the node must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Node and inter-instance affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints this instance tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How instances spread over topology domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// The PriorityClass to take the priority from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// The priority, resolved from the PriorityClass when an instance is
    /// created; higher places first and may preempt lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whether this instance may preempt; resolved with the priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Option<PreemptionPolicy>,
    /// Seconds one request may take, from its arrival to the end of the
    /// response, before the node stops it (`DeadlineExceeded`, answered
    /// 504); 30 if unset, 1 to 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// What the node does when the instance ends or fails: `Always` (the
    /// default, and the only policy a Deployment takes), `OnFailure` or
    /// `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Restarts the instance when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Keeps the instance out of routing while it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds liveness and readiness back until it first passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Seconds in-flight requests get to finish when the instance stops
    /// (30), before they are cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u32>,
    /// `shared` (the namespace's sandbox on the node, the default) or
    /// `dedicated` (a worker process and cgroup of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
    /// Where the value comes from instead: one key of a Secret or
    /// ConfigMap, resolved by the scheduler when it sends the instance to
    /// its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<crate::secret::EnvVarSource>,
}

/// `resources` of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// What placement reserves on a node.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,
    /// What the node enforces.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
}

impl Resources {
    /// No requests and no limits.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.limits.is_empty()
    }
}

/// cpu (`250m`, `1`, `0.5`) and memory (`64Mi`, `1G`, `1048576`) quantities
/// as written by the user; [`crate::quantity`] parses them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    /// CPU quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

impl ResourceList {
    /// Neither cpu nor memory given.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none()
    }
}

/// A quantity as the user wrote it; YAML numbers (`cpu: 1`) are accepted
/// and kept as their decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 250m or 64Mi")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `Deployment.status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStatus {
    /// The spec generation this status describes.
    #[serde(default)]
    pub observed_generation: u64,
    /// Instances that exist and are not terminating.
    #[serde(default)]
    pub replicas: u64,
    /// Instances made from the current template.
    #[serde(default)]
    pub updated_replicas: u64,
    /// Instances that are Running.
    #[serde(default)]
    pub ready_replicas: u64,
    /// Instances Running for at least `minReadySeconds`.
    #[serde(default)]
    pub available_replicas: u64,
    /// Instances short of `replicas` being available.
    #[serde(default, skip_serializing_if = "is_default")]
    pub unavailable_replicas: u64,
    /// The revision of the current template.
    #[serde(default, skip_serializing_if = "is_default")]
    pub revision: u64,
    /// `Progressing` and `Available`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<DeploymentCondition>,
    /// The templates rolled out, newest last, at most
    /// `revisionHistoryLimit` old ones plus the current one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Revision>,
    /// Where a `Canary` release stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<crate::canary::CanaryStatus>,
}

/// One replica of a Deployment, as Kubernetes' Pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Instance`.
    pub kind: String,
    /// Name, namespace, labels and owner.
    pub metadata: ObjectMeta,
    /// What runs, and where.
    pub spec: InstanceSpec,
    /// The instance's lifecycle as last reported.
    #[serde(default)]
    pub status: InstanceStatus,
}

/// Lifecycle phase of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Waiting for placement.
    #[default]
    Pending,
    /// Bound to a node that has not started it yet.
    Scheduled,
    /// The node is fetching, compiling or instantiating it.
    Starting,
    /// Serving.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed; `reason` says why.
    Failed,
    /// Being stopped before removal.
    Terminating,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Scheduled,
        Phase::Starting,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Terminating,
    ];

    /// The phase's name as shown by `berth get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Scheduled => "Scheduled",
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Instance.status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceStatus {
    /// Where the instance is in its lifecycle.
    #[serde(default)]
    pub phase: Phase,
    /// A CamelCase word saying why (`Unschedulable`, `FetchFailed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human sentence with details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the node reported the instance Running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// Whether the instance passes its readiness probe (or has none) and
    /// receives traffic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ready: bool,
    /// How many times the node restarted the instance.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
    /// The exit code of a command component that has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A machine that runs instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Node`.
    pub kind: String,
    /// Name and labels.
    pub metadata: ObjectMeta,
    /// Taints and cordoning, set by operators.
    #[serde(default)]
    pub spec: NodeSpec,
    /// What the node offers and how it is doing.
    #[serde(default)]
    pub status: NodeStatus,
}

/// `Node.status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    /// The node's whole capacity.
    #[serde(default)]
    pub capacity: NodeResources,
    /// What instances may reserve.
    #[serde(default)]
    pub allocatable: NodeResources,
    /// Runtime kinds offered: `wasm`, later `oci`.
    #[serde(default)]
    pub runtimes: Vec<String>,
    /// WIT interfaces the node's host provides (`wasi:http/types@0.2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Digests of the components the node holds compiled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Where the node's HTTP ingress listens.
    #[serde(default)]
    pub ingress_address: String,
    /// Where the node takes Service calls from other nodes (QUIC); empty
    /// when it takes none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    /// `Ready` and friends.
    #[serde(default)]
    pub conditions: Vec<NodeCondition>,
    /// Most instances the node takes; 0 means no limit.
    #[serde(default)]
    pub max_instances: u64,
    /// Last heartbeat the scheduler received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<jiff::Timestamp>,
}

impl NodeStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.conditions
            .iter()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True")
    }
}

/// Node capacity in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResources {
    /// CPU in millicores.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
}

/// A condition as in Kubernetes: a type, a status and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeCondition {
    /// `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase word saying why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<jiff::Timestamp>,
}

/// A named priority: instances whose template names it get its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriorityClass {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `PriorityClass`.
    pub kind: String,
    /// Name (cluster-scoped).
    pub metadata: ObjectMeta,
    /// The priority; higher is more important.
    pub value: i32,
    /// Whether instances without a class get this one.
    #[serde(default)]
    pub global_default: bool,
    /// Whether its instances may preempt lower-priority ones.
    #[serde(default)]
    pub preemption_policy: PreemptionPolicy,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Something that happened to an object, as Kubernetes' Event: repeated
/// occurrences bump `count` and `lastTimestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Event`.
    pub kind: String,
    /// Name (`<object>.<hash>`) and the object's namespace.
    pub metadata: ObjectMeta,
    /// The object it happened to.
    pub involved_object: ObjectReference,
    /// A CamelCase word (`Scheduled`, `FailedScheduling`, `Preempted`).
    pub reason: String,
    /// What happened.
    pub message: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// How many times it happened.
    pub count: u64,
    /// First time.
    pub first_timestamp: jiff::Timestamp,
    /// Last time.
    pub last_timestamp: jiff::Timestamp,
    /// Who reported it: `scheduler` or `node/<name>`.
    pub source: String,
}

/// A reference to an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    /// Kind.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Uid.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// Any stored object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// A Namespace.
    Namespace(Box<Namespace>),
    /// A Deployment.
    Deployment(Box<Deployment>),
    /// An Instance.
    Instance(Box<Instance>),
    /// A Node.
    Node(Box<Node>),
    /// A PriorityClass.
    PriorityClass(Box<PriorityClass>),
    /// An Event.
    Event(Box<Event>),
    /// A Job.
    Job(Box<Job>),
    /// A Service.
    Service(Box<Service>),
    /// A DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// A CronJob.
    CronJob(Box<CronJob>),
    /// An Ingress.
    Ingress(Box<Ingress>),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    /// A HorizontalAutoscaler.
    HorizontalAutoscaler(Box<HorizontalAutoscaler>),
    /// A ResourceQuota.
    ResourceQuota(Box<ResourceQuota>),
    /// A LimitRange.
    LimitRange(Box<LimitRange>),
    /// A Role.
    Role(Box<Role>),
    /// A ClusterRole.
    ClusterRole(Box<Role>),
    /// A RoleBinding.
    RoleBinding(Box<RoleBinding>),
    /// A ClusterRoleBinding.
    ClusterRoleBinding(Box<RoleBinding>),
    /// A Secret.
    Secret(Box<crate::secret::Secret>),
    /// A ConfigMap.
    ConfigMap(Box<crate::secret::ConfigMap>),
    /// A NetworkPolicy.
    NetworkPolicy(Box<crate::netpol::NetworkPolicy>),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Deployment(_) => Kind::Deployment,
            Object::Instance(_) => Kind::Instance,
            Object::Node(_) => Kind::Node,
            Object::PriorityClass(_) => Kind::PriorityClass,
            Object::Event(_) => Kind::Event,
            Object::Job(_) => Kind::Job,
            Object::Service(_) => Kind::Service,
            Object::DaemonSet(_) => Kind::DaemonSet,
            Object::Ingress(_) => Kind::Ingress,
            Object::CronJob(_) => Kind::CronJob,
            Object::PodDisruptionBudget(_) => Kind::PodDisruptionBudget,
            Object::HorizontalAutoscaler(_) => Kind::HorizontalAutoscaler,
            Object::ResourceQuota(_) => Kind::ResourceQuota,
            Object::LimitRange(_) => Kind::LimitRange,
            Object::Role(_) => Kind::Role,
            Object::ClusterRole(_) => Kind::ClusterRole,
            Object::RoleBinding(_) => Kind::RoleBinding,
            Object::ClusterRoleBinding(_) => Kind::ClusterRoleBinding,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Instance(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::PriorityClass(o) => &o.metadata,
            Object::Event(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Ingress(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            Object::HorizontalAutoscaler(o) => &o.metadata,
            Object::ResourceQuota(o) => &o.metadata,
            Object::LimitRange(o) => &o.metadata,
            Object::Role(o) | Object::ClusterRole(o) => &o.metadata,
            Object::RoleBinding(o) | Object::ClusterRoleBinding(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
        }
    }

    /// The object's metadata, mutable.
    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Namespace(o) => &mut o.metadata,
            Object::Deployment(o) => &mut o.metadata,
            Object::Instance(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
            Object::PriorityClass(o) => &mut o.metadata,
            Object::Event(o) => &mut o.metadata,
            Object::Job(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::DaemonSet(o) => &mut o.metadata,
            Object::Ingress(o) => &mut o.metadata,
            Object::CronJob(o) => &mut o.metadata,
            Object::PodDisruptionBudget(o) => &mut o.metadata,
            Object::HorizontalAutoscaler(o) => &mut o.metadata,
            Object::ResourceQuota(o) => &mut o.metadata,
            Object::LimitRange(o) => &mut o.metadata,
            Object::Role(o) | Object::ClusterRole(o) => &mut o.metadata,
            Object::RoleBinding(o) | Object::ClusterRoleBinding(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::NetworkPolicy(o) => &mut o.metadata,
        }
    }

    /// The template instances are made from, for the kinds that have one
    /// (Deployment, Job, DaemonSet).
    pub fn template(&self) -> Option<&InstanceTemplate> {
        match self {
            Object::Deployment(d) => Some(&d.spec.template),
            Object::Job(j) => Some(&j.spec.template),
            Object::DaemonSet(d) => Some(&d.spec.template),
            Object::CronJob(c) => Some(&c.spec.job_template.spec.template),
            _ => None,
        }
    }

    /// [`Object::template`], mutable.
    pub fn template_mut(&mut self) -> Option<&mut InstanceTemplate> {
        match self {
            Object::Deployment(d) => Some(&mut d.spec.template),
            Object::Job(j) => Some(&mut j.spec.template),
            Object::DaemonSet(d) => Some(&mut d.spec.template),
            Object::CronJob(c) => Some(&mut c.spec.job_template.spec.template),
            _ => None,
        }
    }

    /// The object's namespace if its kind is namespaced.
    pub fn namespace(&self) -> Option<&str> {
        self.kind()
            .is_namespaced()
            .then(|| self.metadata().namespace_or_default())
    }

    /// `Kind namespace/name` or `Kind name`, for messages.
    pub fn describe(&self) -> String {
        describe(self.kind(), self.namespace(), &self.metadata().name)
    }

    /// Encodes as JSON, the form objects take in the store and on the wire.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain data types to JSON cannot fail: every map
        // key is a string and no custom serializer returns an error.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes the JSON form, dispatching on `kind`.
    pub fn from_json(bytes: &[u8]) -> Result<Object, serde_json::Error> {
        #[derive(Deserialize, JsonSchema)]
        struct Head {
            kind: String,
        }
        let head: Head = serde_json::from_slice(bytes)?;
        Ok(match head.kind.as_str() {
            "Namespace" => Object::Namespace(serde_json::from_slice(bytes)?),
            "Deployment" => Object::Deployment(serde_json::from_slice(bytes)?),
            "Instance" => Object::Instance(serde_json::from_slice(bytes)?),
            "Node" => Object::Node(serde_json::from_slice(bytes)?),
            "PriorityClass" => Object::PriorityClass(serde_json::from_slice(bytes)?),
            "Event" => Object::Event(serde_json::from_slice(bytes)?),
            "Job" => Object::Job(serde_json::from_slice(bytes)?),
            "Service" => Object::Service(serde_json::from_slice(bytes)?),
            "DaemonSet" => Object::DaemonSet(serde_json::from_slice(bytes)?),
            "Ingress" => Object::Ingress(serde_json::from_slice(bytes)?),
            "CronJob" => Object::CronJob(serde_json::from_slice(bytes)?),
            "PodDisruptionBudget" => Object::PodDisruptionBudget(serde_json::from_slice(bytes)?),
            "HorizontalAutoscaler" => Object::HorizontalAutoscaler(serde_json::from_slice(bytes)?),
            "ResourceQuota" => Object::ResourceQuota(serde_json::from_slice(bytes)?),
            "LimitRange" => Object::LimitRange(serde_json::from_slice(bytes)?),
            "Role" => Object::Role(serde_json::from_slice(bytes)?),
            "ClusterRole" => Object::ClusterRole(serde_json::from_slice(bytes)?),
            "RoleBinding" => Object::RoleBinding(serde_json::from_slice(bytes)?),
            "ClusterRoleBinding" => Object::ClusterRoleBinding(serde_json::from_slice(bytes)?),
            "Secret" => Object::Secret(serde_json::from_slice(bytes)?),
            "ConfigMap" => Object::ConfigMap(serde_json::from_slice(bytes)?),
            "NetworkPolicy" => Object::NetworkPolicy(serde_json::from_slice(bytes)?),
            other => {
                return Err(serde::de::Error::custom(format!("unknown kind {other:?}")));
            }
        })
    }
}

/// `Kind namespace/name` or `Kind name`, for messages.
pub fn describe(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}
