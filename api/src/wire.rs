//! Messages between the CLI, nodes and the scheduler, and their codec.
//!
//! Every message travels on its own QUIC stream as one or more frames: a
//! 4-byte big-endian length, then a postcard-encoded [`Envelope`] whose
//! `version` must equal [`PROTOCOL_VERSION`]. Objects travel inside messages
//! as their JSON form ([`crate::Object::to_json`]), as Kubernetes carries raw
//! objects, so that optional fields and future fields stay readable.
//!
//! Byte layout of a frame:
//!
//! ```text
//! +----------------+---------------------------------------------+
//! | len: u32 (BE)  | postcard(Envelope { version: u16, body: T }) |
//! +----------------+---------------------------------------------+
//! ```
//!
//! A frame longer than [`MAX_FRAME_LEN`] is refused before it is read.
//!
//! A request frame may carry a trailer after its envelope: the caller's
//! trace context ([`RequestTrailer`], see [`encode_request_frame`]). postcard
//! ignores bytes after a value, so a peer that does not know the trailer
//! reads the request as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::job::Workload;
use crate::lifecycle::{Isolation, Probes, RestartPolicy};
use crate::objects::{Kind, NodeResources, Phase};

/// Version of the message set; a peer speaking another version is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The QUIC ALPN protocol id.
pub const ALPN: &[u8] = b"berth/1";

/// The TLS server name every client checks the scheduler's certificate for.
pub const SERVER_NAME: &str = "berth-scheduler";

/// Largest frame accepted: room for a 64 MiB component plus its message.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024 + 4096;

/// The versioned wrapper around every message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The message.
    pub body: T,
}

/// A request to the scheduler. Each opens its own stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Create or update objects (JSON form), all or nothing.
    Apply {
        /// The objects, components already uploaded and named by digest.
        objects: Vec<Vec<u8>>,
    },
    /// List or read objects.
    Get {
        /// Which kind.
        kind: Kind,
        /// A namespace, or `None` for all namespaces.
        namespace: Option<String>,
        /// One object by name, or `None` for all.
        name: Option<String>,
    },
    /// Delete one object (and, for a Deployment, its instances).
    Delete {
        /// Which kind.
        kind: Kind,
        /// The namespace of a namespaced kind.
        namespace: Option<String>,
        /// The object's name.
        name: String,
    },
    /// Upload a component; the scheduler checks the digest and that the
    /// bytes are a valid WebAssembly component.
    PutBlob {
        /// `sha256:<hex>` of `bytes`.
        digest: String,
        /// The component.
        bytes: Vec<u8>,
    },
    /// Download a component by digest (nodes).
    GetBlob {
        /// `sha256:<hex>`.
        digest: String,
    },
    /// First contact of a node: trade the bootstrap token for credentials.
    /// The only request accepted without a client certificate.
    Join {
        /// The bootstrap token's secret part.
        secret: String,
        /// The node's name (DNS-1123).
        node_name: String,
    },
    /// A node announces itself and what it offers.
    Register(NodeInfo),
    /// A node asks for its assignments; the scheduler answers with an
    /// [`Response::Assignments`] frame now and another on every change, on
    /// the same stream, until either side closes it.
    Watch,
    /// A node's heartbeat with the state of its instances.
    Report(NodeReport),
    /// Scale, pause, resume, set the component of, or roll back a
    /// Deployment (users).
    PatchDeployment {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What to change.
        patch: DeploymentPatch,
    },
    /// Change a Node's taints or cordon it (users).
    PatchNode {
        /// The node's name.
        name: String,
        /// What to change.
        patch: NodePatch,
    },
    /// Read the guest output of one instance or of a Deployment's instances
    /// (users). The scheduler answers with [`Response::LogLines`] frames on
    /// the same stream, then finishes it; with `follow`, it keeps sending
    /// new lines until the caller stops the stream or the instances stop.
    /// Exactly one of `instance` and `deployment` is given.
    Logs {
        /// The namespace of the instance or Deployment.
        namespace: String,
        /// One instance, by name.
        instance: Option<String>,
        /// Every instance of this Deployment; each line is prefixed with
        /// `[INSTANCE] `.
        deployment: Option<String>,
        /// Only the last this many lines of each instance (of those left
        /// after `since_seconds`); `None` is all.
        tail: Option<u64>,
        /// Only lines written in the last this many seconds.
        since_seconds: Option<u64>,
        /// Keep the stream open and send new lines as they are written.
        follow: bool,
    },
    /// Read one instance's log on a node. Sent by the scheduler to a node, on
    /// a stream the scheduler opens on the node's connection; the node
    /// answers with [`Response::LogLines`] frames and finishes the stream
    /// (with `follow`, once the instance stops or the scheduler stops the
    /// stream). Nodes answer nothing else; the scheduler refuses it.
    ReadLogs {
        /// The instance's uid.
        uid: String,
        /// As in [`Request::Logs`].
        tail: Option<u64>,
        /// As in [`Request::Logs`].
        since_seconds: Option<u64>,
        /// As in [`Request::Logs`].
        follow: bool,
    },
    /// Live usage from the nodes' latest reports (users), as `berth top`
    /// shows it; answered with [`Response::Top`].
    Top {
        /// Nodes or instances.
        what: TopKind,
        /// Instances of this namespace only; `None` for all (ignored for
        /// nodes).
        namespace: Option<String>,
    },
    /// Read Events (users), as `berth events` does. The scheduler answers
    /// with one [`Response::Objects`] frame holding the events that match,
    /// oldest `lastTimestamp` first; with `watch`, it then sends another
    /// `Objects` frame with the events added or counted again on every
    /// change, until the caller stops the stream. Without, it finishes the
    /// stream after the first frame.
    Events {
        /// A namespace, or `None` for all. Events about Nodes are in
        /// `default`.
        namespace: Option<String>,
        /// Only events about this object: its kind and name.
        involved: Option<(Kind, String)>,
        /// Keep the stream open and send events as they happen.
        watch: bool,
    },
    /// Evict one instance (users), as Kubernetes' eviction API: granted
    /// only if every PodDisruptionBudget selecting it allows a disruption,
    /// otherwise refused with [`ErrorCode::TooManyRequests`] and a message
    /// naming the budget. A granted eviction stops the instance gracefully
    /// (its controller replaces it elsewhere) and is answered with
    /// [`Response::Deleted`].
    Evict {
        /// The instance's namespace.
        namespace: String,
        /// The instance's name.
        name: String,
    },
    /// A node's ingress holds a request for a Deployment scaled to zero
    /// (one of [`Assignments::scale_to_zero`]) and asks for an instance
    /// (nodes). The scheduler raises `replicas` to 1 if it is 0, binds the
    /// new instance to the asking node when it fits there, and answers
    /// [`Response::Ok`]; see `docs/decisions/0030-autoscaling-and-scale-to-zero.md`.
    Wake {
        /// The Deployment's namespace.
        namespace: String,
        /// The Deployment's name.
        deployment: String,
    },
    /// Issue a client certificate for user `user` (users with `create` on
    /// `users`), answered with [`Response::Credentials`]. With `create`,
    /// the user must not exist yet (hold no unrevoked certificate);
    /// without, it must.
    IssueCertificate {
        /// The user's name (DNS-1123).
        user: String,
        /// Days the certificate is valid, at least 1.
        days: u32,
        /// Whether this creates the user.
        create: bool,
    },
    /// Revoke every certificate and token of `user` (users with `delete`
    /// on `users`): refused from the next request on.
    RevokeUser {
        /// The user's name.
        user: String,
    },
    /// Create a bearer token for `user` (for oneself, or with `create` on
    /// `tokens`), answered with [`Response::Token`]. The scheduler keeps
    /// only the secret's SHA-256.
    CreateToken {
        /// The token's name, for listing and messages.
        name: String,
        /// The user the token acts as; empty for the caller.
        user: String,
        /// Seconds until the token expires, at least 1.
        ttl_seconds: u64,
    },
    /// Authenticate a connection opened without a client certificate with
    /// a bearer token: from the answer on, the connection's requests are
    /// the token's user's. Answered with [`Response::Ok`], or
    /// [`ErrorCode::Unauthenticated`] (and the connection closed).
    Authenticate {
        /// The token's secret, as [`Response::Token`] gave it.
        token: String,
    },
    /// Whether a user may do something (`berth auth can-i`), answered with
    /// [`Response::Review`]. `as_user` asks for another user and needs
    /// `impersonate` on `users`.
    CanI {
        /// A verb of `berth_api::rbac::VERBS`.
        verb: String,
        /// A resource as a rule names it (`deployments`).
        resource: String,
        /// The namespace, for a namespaced resource.
        namespace: Option<String>,
        /// One object by name.
        name: Option<String>,
        /// Ask for this user instead of the caller.
        as_user: Option<String>,
    },
    /// Read Secrets with their values (users; `berth get secret
    /// --show-secrets`), answered with [`Response::Objects`] as
    /// [`Request::Get`] is. `Get` answers Secrets with every value
    /// emptied; this is the one request that returns them.
    RevealSecrets {
        /// A namespace, or `None` for all namespaces.
        namespace: Option<String>,
        /// One Secret by name, or `None` for all.
        name: Option<String>,
    },
}

/// QUIC close code: the peer's client certificate is not (or no longer)
/// one of this cluster's: revoked when its node was deleted or joined
/// again. A node closed with it stops its instances (they were replaced
/// elsewhere) and must join again with a bootstrap token.
pub const CLOSE_REVOKED: u32 = 0x103;

/// What [`Request::Top`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopKind {
    /// One row per node.
    Nodes,
    /// One row per instance a node reported usage for.
    Instances,
}

/// A change to a Deployment's spec, as `berth scale`, `berth rollout
/// pause|resume|undo` and `berth set component` make.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeploymentPatch {
    /// New `spec.replicas`.
    pub replicas: Option<i64>,
    /// New `spec.paused`.
    pub paused: Option<bool>,
    /// New `spec.template.spec.component`: an uploaded digest.
    pub component: Option<String>,
    /// Roll back to this revision; 0 means the previous one.
    pub undo_to: Option<u64>,
    /// Promote a canary (`berth rollout promote`, `--full`).
    pub promote: Option<crate::canary::Promotion>,
    /// Abort a canary (`berth rollout abort`).
    pub abort: bool,
}

/// A change to a Node's spec, as `berth taint` and `berth cordon` make.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodePatch {
    /// Taints to add as `key=value:Effect` (replacing one with the same key
    /// and effect).
    pub add_taints: Vec<String>,
    /// Taints to remove, by key and, if given, effect.
    pub remove_taints: Vec<(String, Option<crate::scheduling::TaintEffect>)>,
    /// Cordon (`true`) or uncordon (`false`).
    pub unschedulable: Option<bool>,
}

/// What a node tells the scheduler about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Whole machine.
    pub capacity: NodeResources,
    /// What instances may use.
    pub allocatable: NodeResources,
    /// Runtime kinds: `wasm`.
    pub runtimes: Vec<String>,
    /// `host:port` of the node's HTTP ingress.
    pub ingress_address: String,
    /// WIT interfaces the node's host provides.
    pub interfaces: Vec<String>,
    /// Most instances the node takes; 0 means no limit.
    pub max_instances: u64,
    /// Taints to register with, as `key=value:Effect` (applied when the
    /// Node object is created; later changes go through `berth taint`).
    /// Text, because postcard cannot carry the optional fields of `Taint`.
    pub taints: Vec<String>,
    /// `host:port` (UDP) where the node takes Service calls from other
    /// nodes over QUIC; empty when it takes none (see
    /// `docs/decisions/0031-node-to-node-forwarding.md`).
    pub peer_address: String,
}

/// The components a node holds compiled, sent with each report.
pub type ComponentDigests = Vec<String>;

/// A node's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Every instance the node holds, by uid.
    pub instances: Vec<InstanceReport>,
    /// Digests of the components the node holds compiled.
    pub components: ComponentDigests,
    /// What its instances used since the previous report.
    pub usage: NodeUsage,
}

/// What a node's instances use, measured over the interval between two
/// reports. How a shared sandbox's usage is divided among its instances
/// is in `docs/decisions/0017-metrics.md`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeUsage {
    /// CPU of all its sandboxes, in millicores.
    pub cpu_millicores: u64,
    /// Memory of all its sandboxes, in bytes.
    pub memory_bytes: u64,
    /// Per instance, by uid.
    pub instances: Vec<InstanceUsage>,
}

/// What one instance uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// The instance's uid.
    pub uid: String,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Requests served per second, in thousandths (1500 is 1.5/s).
    pub millirequests_per_second: u64,
    /// Mean time to answer those requests, in microseconds (0 when it
    /// served none).
    pub mean_latency_micros: u64,
    /// Requests it answered since it was loaded (a counter: the scheduler
    /// differences two reports for a window's figures).
    pub requests_total: u64,
    /// Of those, answers with a 5xx status.
    pub errors_total: u64,
    /// Of those, requests whose component trapped or was stopped.
    pub traps_total: u64,
}

/// One node's row of `berth top nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTop {
    /// The node's name.
    pub name: String,
    /// Its usage, `None` when it has not reported lately.
    pub usage: Option<NodeResources>,
    /// What instances may use on it (the percentages' base).
    pub allocatable: NodeResources,
}

/// One instance's row of `berth top instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTop {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Requests served per second, in thousandths.
    pub millirequests_per_second: u64,
}

/// The answer to [`Request::Top`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopRows {
    /// Nodes, by name.
    Nodes(Vec<NodeTop>),
    /// Instances, by namespace and name.
    Instances(Vec<InstanceTop>),
}

/// State of one instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance's uid.
    pub uid: String,
    /// Starting, Running or Failed.
    pub phase: Phase,
    /// CamelCase reason when not Running.
    pub reason: String,
    /// Details.
    pub message: String,
    /// Whether it passes its readiness probe (or has none) and is routed.
    pub ready: bool,
    /// How many times the node restarted it.
    pub restart_count: u32,
    /// The exit code of a command component that has ended.
    pub exit_code: Option<i32>,
}

/// Everything one node should run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assignments {
    /// The store revision these assignments were computed at.
    pub revision: u64,
    /// The instances, sorted by uid.
    pub instances: Vec<Assignment>,
    /// Every Service in the cluster with its ready endpoints, sorted by
    /// namespace and name, so that any node can route any call.
    pub services: Vec<ServiceRoute>,
    /// Every Ingress in the cluster, sorted by namespace and name, so that
    /// any node's ingress serves every rule.
    pub ingresses: Vec<IngressRoute>,
    /// Every Deployment with a canary running, sorted by namespace and
    /// name: how the ingress splits its requests.
    pub canaries: Vec<CanaryRoute>,
    /// Every Deployment an autoscaler may take to zero instances, sorted
    /// by namespace and name: a node's ingress holds a request for one
    /// that has no ready instance and sends [`Request::Wake`].
    pub scale_to_zero: Vec<WakeTarget>,
    /// Every NetworkPolicy of the cluster, compiled, sorted by namespace
    /// and name: which callers the node's router and peer listener admit
    /// to which instances.
    pub network_policies: Vec<crate::netpol::NetworkPolicyRoute>,
}

/// A Deployment whose autoscaler has `minReplicas: 0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WakeTarget {
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
}

/// How a node's ingress splits one Deployment's requests while a canary
/// runs: `weight` percent to the canary revision's instances, the rest
/// to the others (when a node holds only one side, that side serves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryRoute {
    /// The Deployment's namespace.
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// The canary revision's template hash.
    pub revision: String,
    /// Percentage of requests for the canary, `0..=100`.
    pub weight: u32,
    /// The uids of the canary revision's instances, sorted.
    pub instances: Vec<String>,
}

/// One Ingress as nodes route it: its host rules, each path pointing at a
/// Service of its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRoute {
    /// The Ingress's namespace, which is its Services' too.
    pub namespace: String,
    /// The Ingress's name.
    pub name: String,
    /// Its rules, in the order written.
    pub rules: Vec<IngressHostRoute>,
    /// The Service serving the rules' hosts when no path matches.
    pub default_service: Option<String>,
}

/// One host of an Ingress and its paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressHostRoute {
    /// `shop.example.com` or `*.example.com`, lowercase.
    pub host: String,
    /// Its paths, in the order written.
    pub paths: Vec<IngressPathRoute>,
}

/// One path of an Ingress rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressPathRoute {
    /// An absolute path.
    pub path: String,
    /// `Exact` rather than `Prefix` (or `ImplementationSpecific`).
    pub exact: bool,
    /// The backend Service's name.
    pub service: String,
}

/// Where a node's service router sends calls to one Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRoute {
    /// The Service's namespace, which is its endpoints' too.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// Its ready endpoints, sorted by node, then uid; empty when none is.
    pub endpoints: Vec<ServiceEndpoint>,
}

/// One ready instance behind a Service, and how to reach it: through its
/// node's ingress, with `Host: <deployment>.<namespace>.<domain>`, over a
/// QUIC stream to the node's peer listener when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    /// The instance's uid.
    pub uid: String,
    /// The node it runs on.
    pub node: String,
    /// `host:port` of that node's ingress (`NodeInfo.ingress_address`).
    pub address: String,
    /// The Deployment owning the instance, whose host the ingress routes.
    pub deployment: String,
    /// `host:port` of that node's QUIC peer listener
    /// (`NodeInfo.peer_address`); empty when it has none, and calls go as
    /// plain HTTP to `address`.
    pub peer_address: String,
    /// The instance's labels, which network policies select by.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One instance a node should run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Assignment {
    /// Instance uid.
    pub uid: String,
    /// Instance name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The owning Deployment, whose host name routes to this instance;
    /// empty for a Job's instance.
    pub deployment: String,
    /// Serve HTTP (a Deployment's instance) or run the component's
    /// `wasi:cli/run` once to completion (a Job's).
    pub workload: Workload,
    /// `sha256:<hex>` of the component; empty for a container.
    pub component: String,
    /// What a container instance runs; `None` for a component.
    pub container: Option<crate::container::ContainerWorkload>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Enforced limits; zero means no explicit limit.
    pub limits: NodeResources,
    /// Hosts the instance may call (`allowedOutboundHosts`).
    pub allowed_outbound_hosts: Vec<String>,
    /// Seconds one request may take (`timeoutSeconds`); 0 is the node's
    /// default (30).
    pub request_timeout_seconds: u32,
    /// What to do when the instance ends or fails.
    pub restart_policy: RestartPolicy,
    /// Its probes, defaults resolved.
    pub probes: Probes,
    /// Seconds in-flight requests get when it stops.
    pub termination_grace_seconds: u32,
    /// Which sandbox it runs in.
    pub isolation: Isolation,
    /// The W3C `traceparent` of the request that created the instance's
    /// owner (its `berth.dev/traceparent` annotation); empty when none.
    pub traceparent: String,
    /// The instance's labels: who it is when it calls a Service under
    /// network policy.
    pub labels: BTreeMap<String, String>,
}

/// The scheduler's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Outcome of an apply, one line per object.
    Applied(Vec<ApplyOutcome>),
    /// Objects in JSON form.
    Objects(Vec<Vec<u8>>),
    /// The object as it is after a change.
    Object(Vec<u8>),
    /// An object was deleted (or marked for deletion).
    Deleted {
        /// `Kind namespace/name`.
        object: String,
    },
    /// A blob was stored (or was already there).
    BlobStored,
    /// A blob's bytes.
    Blob(Vec<u8>),
    /// Credentials for a joining node, PEM encoded.
    Joined {
        /// The node's certificate.
        cert_pem: String,
        /// The node's private key.
        key_pem: String,
        /// The cluster CA certificate.
        ca_pem: String,
    },
    /// Nothing more to say.
    Ok,
    /// The node's assignments (on a watch stream).
    Assignments(Assignments),
    /// The request failed.
    Error(ApiError),
    /// Lines of guest output, oldest first (on a logs stream): each
    /// `<RFC 3339 UTC time> <stdout|stderr> <text>`, prefixed with
    /// `[INSTANCE] ` when the request named a Deployment.
    LogLines(Vec<String>),
    /// Usage rows, for [`Request::Top`].
    Top(TopRows),
    /// A user's new client certificate, for [`Request::IssueCertificate`].
    Credentials {
        /// The certificate chain, PEM.
        cert_chain_pem: String,
        /// The private key, PEM.
        key_pem: String,
        /// The cluster CA, PEM.
        ca_pem: String,
        /// When the certificate expires, RFC 3339.
        not_after: String,
    },
    /// A new bearer token, for [`Request::CreateToken`]: the secret is
    /// shown this once.
    Token {
        /// The secret to send in [`Request::Authenticate`].
        secret: String,
        /// When it expires, RFC 3339.
        expires: String,
    },
    /// The answer to [`Request::CanI`].
    Review {
        /// Whether the request would be allowed.
        allowed: bool,
        /// Why not, when it would not.
        reason: String,
    },
}

/// What happened to one applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// `Kind namespace/name`.
    pub object: String,
    /// `created`, `configured` or `unchanged`.
    pub action: ApplyAction,
}

/// The three outcomes of applying an object, as kubectl prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyAction {
    /// New object.
    Created,
    /// Existing object changed.
    Configured,
    /// Existing object already as asked.
    Unchanged,
}

impl ApplyAction {
    /// The word kubectl prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Created => "created",
            ApplyAction::Configured => "configured",
            ApplyAction::Unchanged => "unchanged",
        }
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What class of failure.
    pub code: ErrorCode,
    /// Lowercase message naming the object and field.
    pub message: String,
}

impl ApiError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Classes of failure, as HTTP status classes in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request or an object in it is malformed or invalid.
    Invalid,
    /// The object does not exist.
    NotFound,
    /// The caller may not do this.
    Forbidden,
    /// The caller's credentials are missing or wrong.
    Unauthenticated,
    /// The scheduler failed.
    Internal,
    /// The object exists, but the node holding it cannot be reached.
    Unavailable,
    /// Refused for now, worth retrying later: an eviction a
    /// PodDisruptionBudget does not allow yet (HTTP 429 in Kubernetes).
    TooManyRequests,
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Announced length over [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes is over the {MAX_FRAME_LEN} byte limit")]
    TooLong(usize),
    /// Postcard could not decode the envelope.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {0}, this build speaks {PROTOCOL_VERSION}")]
    Version(u16),
}

/// Encodes `body` as a frame: length prefix and envelope.
pub fn encode_frame<T: Serialize>(body: &T) -> Result<Vec<u8>, CodecError> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        body,
    };
    let mut frame = vec![0; 4];
    frame = postcard::to_extend(&envelope, frame)?;
    let len = frame.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLong(len));
    }
    let prefix = u32::try_from(len).map_err(|_| CodecError::TooLong(len))?;
    if let Some(head) = frame.get_mut(..4) {
        head.copy_from_slice(&prefix.to_be_bytes());
    }
    Ok(frame)
}

/// What may follow a request's envelope in its frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTrailer {
    /// The caller's W3C `traceparent` ([`crate::trace::TraceParent`]).
    pub traceparent: String,
}

/// Encodes `request` as a frame, with a [`RequestTrailer`] after the
/// envelope when `trace` is given (without, the frame is
/// [`encode_frame`]'s).
pub fn encode_request_frame(
    request: &Request,
    trace: Option<&crate::trace::TraceParent>,
) -> Result<Vec<u8>, CodecError> {
    let mut frame = encode_frame(request)?;
    let Some(trace) = trace else {
        return Ok(frame);
    };
    let trailer = RequestTrailer {
        traceparent: trace.to_string(),
    };
    frame = postcard::to_extend(&trailer, frame)?;
    let len = frame.len() - 4;
    let prefix = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_FRAME_LEN)
        .ok_or(CodecError::TooLong(len))?;
    if let Some(head) = frame.get_mut(..4) {
        head.copy_from_slice(&prefix.to_be_bytes());
    }
    Ok(frame)
}

/// Decodes a request frame's body and its trailer's trace context. A
/// trailer that is missing, malformed or holds an invalid `traceparent`
/// gives `None`: trace context is advice, never a reason to refuse.
pub fn decode_request_body(
    bytes: &[u8],
) -> Result<(Request, Option<crate::trace::TraceParent>), CodecError> {
    check_version(bytes)?;
    let (envelope, rest) = postcard::take_from_bytes::<Envelope<Request>>(bytes)?;
    let trace = postcard::from_bytes::<RequestTrailer>(rest)
        .ok()
        .and_then(|t| crate::trace::TraceParent::parse(&t.traceparent));
    Ok((envelope.body, trace))
}

/// Reads a frame's length prefix, refusing lengths over the limit.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLong(len));
    }
    Ok(len)
}

/// Decodes a frame's body (the bytes after the length prefix).
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_version(bytes)?;
    let envelope: Envelope<T> = postcard::from_bytes(bytes)?;
    Ok(envelope.body)
}

/// Checks the envelope's version before the body, so that a newer peer
/// gets a version error rather than a confusing decode error.
fn check_version(bytes: &[u8]) -> Result<(), CodecError> {
    #[derive(Deserialize)]
    struct Version {
        version: u16,
    }
    let (head, _) = postcard::take_from_bytes::<Version>(bytes)?;
    if head.version != PROTOCOL_VERSION {
        return Err(CodecError::Version(head.version));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(request: &Request) -> Request {
        let frame = encode_frame(request).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        decode_body(&frame[4..]).unwrap()
    }

    #[test]
    fn node_messages_roundtrip() {
        // Every message type must survive postcard, which cannot skip
        // fields: this guards against optional-field types sneaking in.
        let register = Request::Register(NodeInfo {
            labels: [("a".to_owned(), "b".to_owned())].into(),
            capacity: NodeResources::default(),
            allocatable: NodeResources::default(),
            runtimes: vec!["wasm".into()],
            ingress_address: "127.0.0.1:1".into(),
            interfaces: vec!["wasi:http/types@0.2".into()],
            max_instances: 3,
            taints: vec!["gpu=true:NoSchedule".into()],
            peer_address: "127.0.0.1:2".into(),
        });
        assert_eq!(roundtrip(&register), register);
        let patch = Request::PatchNode {
            name: "n".into(),
            patch: NodePatch {
                add_taints: vec!["a=b:NoExecute".into()],
                remove_taints: vec![("c".into(), Some(crate::scheduling::TaintEffect::NoSchedule))],
                unschedulable: Some(true),
            },
        };
        assert_eq!(roundtrip(&patch), patch);
    }

    #[test]
    fn requests_roundtrip() {
        let get = Request::Get {
            kind: Kind::Deployment,
            namespace: Some("default".into()),
            name: None,
        };
        assert_eq!(roundtrip(&get), get);
        let report = Request::Report(NodeReport {
            instances: vec![InstanceReport {
                uid: "u1".into(),
                phase: Phase::Running,
                reason: String::new(),
                message: String::new(),
                ready: true,
                restart_count: 0,
                exit_code: None,
            }],
            components: vec!["sha256:00".into()],
            usage: NodeUsage {
                cpu_millicores: 250,
                memory_bytes: 64 << 20,
                instances: vec![InstanceUsage {
                    uid: "u1".into(),
                    cpu_millicores: 250,
                    memory_bytes: 64 << 20,
                    millirequests_per_second: 1500,
                    mean_latency_micros: 0,
                    ..InstanceUsage::default()
                }],
            },
        });
        assert_eq!(roundtrip(&report), report);
        let top = Request::Top {
            what: TopKind::Instances,
            namespace: None,
        };
        assert_eq!(roundtrip(&top), top);
        let wake = Request::Wake {
            namespace: "default".into(),
            deployment: "web".into(),
        };
        assert_eq!(roundtrip(&wake), wake);
        let evict = Request::Evict {
            namespace: "default".into(),
            name: "web-abc".into(),
        };
        assert_eq!(roundtrip(&evict), evict);
        let refused = Response::Error(ApiError::new(ErrorCode::TooManyRequests, "budget"));
        let frame = encode_frame(&refused).unwrap();
        assert_eq!(decode_body::<Response>(&frame[4..]).unwrap(), refused);
        let rows = Response::Top(TopRows::Nodes(vec![NodeTop {
            name: "n".into(),
            usage: None,
            allocatable: NodeResources::default(),
        }]));
        let frame = encode_frame(&rows).unwrap();
        assert_eq!(decode_body::<Response>(&frame[4..]).unwrap(), rows);
    }

    #[test]
    fn service_routes_roundtrip() {
        let assignments = Response::Assignments(Assignments {
            revision: 7,
            instances: Vec::new(),
            services: vec![
                ServiceRoute {
                    namespace: "default".into(),
                    name: "b".into(),
                    endpoints: vec![ServiceEndpoint {
                        uid: "u1".into(),
                        node: "n2".into(),
                        address: "10.0.0.2:8080".into(),
                        deployment: "b".into(),
                        peer_address: "10.0.0.2:7444".into(),
                        labels: [("app".to_owned(), "b".to_owned())].into(),
                    }],
                },
                ServiceRoute {
                    namespace: "default".into(),
                    name: "idle".into(),
                    endpoints: Vec::new(),
                },
            ],
            ingresses: vec![IngressRoute {
                namespace: "default".into(),
                name: "shop".into(),
                rules: vec![IngressHostRoute {
                    host: "shop.example.com".into(),
                    paths: vec![IngressPathRoute {
                        path: "/api".into(),
                        exact: false,
                        service: "api".into(),
                    }],
                }],
                default_service: Some("web".into()),
            }],
            canaries: Vec::new(),
            scale_to_zero: vec![WakeTarget {
                namespace: "default".into(),
                deployment: "idle".into(),
            }],
            network_policies: vec![crate::netpol::NetworkPolicyRoute {
                namespace: "default".into(),
                name: "deny".into(),
                selector: BTreeMap::new(),
                allow: vec![crate::netpol::PeerRule {
                    namespaces: Some(vec!["team-b".into()]),
                    labels: BTreeMap::new(),
                    anyone: false,
                }],
            }],
        });
        let frame = encode_frame(&assignments).unwrap();
        assert_eq!(decode_body::<Response>(&frame[4..]).unwrap(), assignments);
        // The bytes docs/wire-protocol.md shows.
        let empty = Response::Assignments(Assignments {
            revision: 300,
            instances: Vec::new(),
            services: Vec::new(),
            ingresses: Vec::new(),
            canaries: Vec::new(),
            scale_to_zero: Vec::new(),
            network_policies: Vec::new(),
        });
        assert_eq!(
            encode_frame(&empty).unwrap(),
            [0, 0, 0, 10, 1, 8, 0xac, 2, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn log_messages_roundtrip() {
        // Every optional field both absent and present: postcard cannot
        // skip a field, so either form must decode to itself.
        let logs = Request::Logs {
            namespace: "default".into(),
            instance: None,
            deployment: Some("hello".into()),
            tail: Some(1),
            since_seconds: None,
            follow: true,
        };
        assert_eq!(roundtrip(&logs), logs);
        let logs = Request::Logs {
            namespace: "default".into(),
            instance: Some("hello-abc12".into()),
            deployment: None,
            tail: None,
            since_seconds: Some(600),
            follow: false,
        };
        assert_eq!(roundtrip(&logs), logs);
        let read = Request::ReadLogs {
            uid: "0b6f0c1e-uid".into(),
            tail: None,
            since_seconds: Some(10),
            follow: false,
        };
        assert_eq!(roundtrip(&read), read);
        let lines = Response::LogLines(vec![
            "2025-01-02T03:04:05.000000006Z stdout served / as hello-abc12".into(),
            String::new(),
        ]);
        let frame = encode_frame(&lines).unwrap();
        assert_eq!(decode_body::<Response>(&frame[4..]).unwrap(), lines);
        // The bytes docs/wire-protocol.md shows.
        let read = Request::ReadLogs {
            uid: "u".into(),
            tail: Some(1),
            since_seconds: None,
            follow: true,
        };
        assert_eq!(
            encode_frame(&read).unwrap(),
            [0, 0, 0, 8, 1, 0x0c, 1, b'u', 1, 1, 0, 1]
        );
        assert_eq!(
            encode_frame(&Response::LogLines(vec!["a".into()])).unwrap(),
            [0, 0, 0, 5, 1, 0x0a, 1, 1, b'a']
        );
        let unavailable = Response::Error(ApiError::new(ErrorCode::Unavailable, "node n1"));
        let frame = encode_frame(&unavailable).unwrap();
        assert_eq!(decode_body::<Response>(&frame[4..]).unwrap(), unavailable);
    }

    #[test]
    fn request_trailer_carries_trace_context() {
        let trace = crate::trace::TraceParent::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        let frame = encode_request_frame(&Request::Watch, trace.as_ref()).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        // The bytes docs/wire-protocol.md shows: the plain frame, then the
        // trailer, the length prefix counting both.
        assert_eq!(&frame[..7], &[0, 0, 0, 58, 1, 7, 55]);
        assert_eq!(&frame[7..9], b"00");
        let (request, decoded) = decode_request_body(&frame[4..]).unwrap();
        assert_eq!(request, Request::Watch);
        assert_eq!(decoded, trace);
        // A peer that knows no trailer reads the request all the same.
        assert_eq!(decode_body::<Request>(&frame[4..]).unwrap(), Request::Watch);
        // Without trace context the frame is the plain one.
        let plain = encode_request_frame(&Request::Watch, None).unwrap();
        assert_eq!(plain, encode_frame(&Request::Watch).unwrap());
        assert_eq!(
            decode_request_body(&plain[4..]).unwrap(),
            (Request::Watch, None)
        );
        // A garbled trailer is ignored, not refused.
        let mut garbled = plain.clone();
        garbled.extend_from_slice(&[9, b'x']);
        assert_eq!(
            decode_request_body(&garbled[4..]).unwrap(),
            (Request::Watch, None)
        );
    }

    #[test]
    fn other_version_is_refused() {
        let envelope = Envelope {
            version: PROTOCOL_VERSION + 1,
            body: Request::Watch,
        };
        let bytes = postcard::to_allocvec(&envelope).unwrap();
        assert!(matches!(
            decode_body::<Request>(&bytes),
            Err(CodecError::Version(v)) if v == PROTOCOL_VERSION + 1
        ));
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        assert!(matches!(
            frame_len(u32::MAX.to_be_bytes()),
            Err(CodecError::TooLong(_))
        ));
        assert!(decode_body::<Request>(&[1, 0, 200, 200, 200]).is_err());
        assert!(decode_body::<Request>(&[]).is_err());
    }
}
