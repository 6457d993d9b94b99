//! The user-facing verbs: apply, get, delete and component upload.
//!
//! Admission validates everything before writing anything, and writes an
//! apply in one transaction, so a request with one bad object changes
//! nothing.

use std::collections::BTreeSet;

use berth_api::validate::validate_object;
use berth_api::wire::{ApiError, ApplyAction, ApplyOutcome, DeploymentPatch, ErrorCode};
use berth_api::{DEFAULT_NAMESPACE, Kind, Object, ObjectMeta, describe};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::cluster::Cluster;
use crate::store::{StoreError, Txn, key, object_key};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(ErrorCode::Internal, e.to_string())
    }
}

/// An object whose labels and `spec` a user's apply owns.
trait UserSpec: Clone {
    /// The type of its `spec`.
    type Spec: PartialEq + Clone;
    /// Its metadata and spec.
    fn parts(&self) -> (&ObjectMeta, &Self::Spec);
    /// The same, to change.
    fn parts_mut(&mut self) -> (&mut ObjectMeta, &mut Self::Spec);
}

macro_rules! user_spec {
    ($($ty:ty => $spec:ty),* $(,)?) => {$(
        impl UserSpec for $ty {
            type Spec = $spec;
            fn parts(&self) -> (&ObjectMeta, &$spec) {
                (&self.metadata, &self.spec)
            }
            fn parts_mut(&mut self) -> (&mut ObjectMeta, &mut $spec) {
                (&mut self.metadata, &mut self.spec)
            }
        }
    )*};
}

user_spec!(
    berth_api::Deployment => berth_api::DeploymentSpec,
    berth_api::job::Job => berth_api::job::JobSpec,
    berth_api::daemonset::DaemonSet => berth_api::daemonset::DaemonSetSpec,
    berth_api::service::Service => berth_api::service::ServiceSpec,
    berth_api::cronjob::CronJob => berth_api::cronjob::CronJobSpec,
    berth_api::disruption::PodDisruptionBudget => berth_api::disruption::PodDisruptionBudgetSpec,
    berth_api::ingress::Ingress => berth_api::ingress::IngressSpec,
    berth_api::autoscaler::HorizontalAutoscaler => berth_api::autoscaler::AutoscalerSpec,
    berth_api::quota::ResourceQuota => berth_api::quota::ResourceQuotaSpec,
    berth_api::quota::LimitRange => berth_api::quota::LimitRangeSpec,
    berth_api::netpol::NetworkPolicy => berth_api::netpol::NetworkPolicySpec,
);

/// A ConfigMap's and a Secret's user-owned part is `data` (a Secret's
/// after [`berth_api::secret::Secret::normalize`]; `type` is always
/// `Opaque`).
macro_rules! user_data {
    ($($ty:ty),* $(,)?) => {$(
        impl UserSpec for $ty {
            type Spec = std::collections::BTreeMap<String, String>;
            fn parts(&self) -> (&ObjectMeta, &Self::Spec) {
                (&self.metadata, &self.data)
            }
            fn parts_mut(&mut self) -> (&mut ObjectMeta, &mut Self::Spec) {
                (&mut self.metadata, &mut self.data)
            }
        }
    )*};
}

user_data!(berth_api::secret::Secret, berth_api::secret::ConfigMap);

impl<T: UserSpec> UserSpec for Box<T> {
    type Spec = T::Spec;
    fn parts(&self) -> (&ObjectMeta, &T::Spec) {
        T::parts(self)
    }
    fn parts_mut(&mut self) -> (&mut ObjectMeta, &mut T::Spec) {
        T::parts_mut(self)
    }
}

/// The stored object `old` with the labels and spec of the applied `new`,
/// its `generation` advanced if the spec changed; `None` if neither did.
/// Everything else (`uid`, `status`, ...) stays as stored.
fn merged<T: UserSpec>(old: &T, new: &T) -> Option<T> {
    let (new_meta, new_spec) = new.parts();
    let (old_meta, old_spec) = old.parts();
    let spec_changed = old_spec != new_spec;
    if !spec_changed && old_meta.labels == new_meta.labels {
        return None;
    }
    let mut updated = old.clone();
    let (meta, spec) = updated.parts_mut();
    meta.labels = new_meta.labels.clone();
    if spec_changed {
        *spec = new_spec.clone();
        meta.generation = Some(meta.generation.unwrap_or(0) + 1);
    }
    Some(updated)
}

/// Writes `updated` if there is one: what an apply of an existing object
/// did.
fn update(txn: &mut Txn<'_, '_>, updated: Option<Object>) -> Result<ApplyAction, ApiError> {
    Ok(match updated {
        Some(object) => {
            txn.put(object)?;
            ApplyAction::Configured
        }
        None => ApplyAction::Unchanged,
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::Invalid, message)
}

/// Whether `digest` reads `sha256:` and 64 lowercase hex digits.
pub fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Whether `component` names a component in a registry by digest:
/// `oci://REGISTRY/REPO@sha256:<64 hex digits>`.
pub fn is_oci_pinned(component: &str) -> bool {
    component
        .strip_prefix("oci://")
        .and_then(|rest| rest.rsplit_once('@'))
        .is_some_and(|(name, digest)| name.contains('/') && is_digest(digest))
}

/// Checks an uploaded component and stores it under its digest.
pub fn put_blob(cluster: &Cluster, digest: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if !is_digest(digest) {
        return Err(invalid(format!(
            "invalid digest {digest:?}: expected sha256:<64 hex digits>"
        )));
    }
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if actual != digest {
        return Err(invalid(format!(
            "digest mismatch: announced {digest}, content is {actual}"
        )));
    }
    validate_component(bytes).map_err(|e| invalid(format!("component {digest}: {e}")))?;
    if !cluster.store.has_blob(digest)? {
        let imports =
            component_imports(bytes).map_err(|e| invalid(format!("component {digest}: {e}")))?;
        cluster.store.put_blob(digest, bytes, &imports)?;
    }
    Ok(())
}

/// The interfaces a component imports at its top level
/// (`wasi:http/types@0.2.6`), which a node must provide to run it.
pub fn component_imports(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut imports = BTreeSet::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    imports.insert(import.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(imports)
}

/// Checks that `bytes` are a valid WebAssembly component (not a core module).
pub fn validate_component(bytes: &[u8]) -> Result<(), String> {
    if !wasmparser::Parser::is_component(bytes) {
        return Err(if wasmparser::Parser::is_core_wasm(bytes) {
            "is a core WebAssembly module, not a component (build for wasm32-wasip2)".into()
        } else {
            "is not a WebAssembly component".into()
        });
    }
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| format!("is not a valid WebAssembly component: {e}"))
}

/// Parses and validates objects as sent by a client.
fn admit(raw: &[Vec<u8>], cluster: &Cluster) -> Result<Vec<Object>, ApiError> {
    let mut objects = Vec::with_capacity(raw.len());
    for (index, bytes) in raw.iter().enumerate() {
        let mut object =
            Object::from_json(bytes).map_err(|e| invalid(format!("object {}: {e}", index + 1)))?;
        if !object.kind().is_user_managed() {
            return Err(invalid(format!(
                "{}: {} objects are created by the cluster and cannot be applied",
                object.describe(),
                object.kind()
            )));
        }
        if object.kind().is_namespaced() && object.metadata().namespace.is_none() {
            object.metadata_mut().namespace = Some(DEFAULT_NAMESPACE.into());
        }
        validate_object(&object).map_err(|e| invalid(format!("{}: {e}", object.describe())))?;
        if let Object::Secret(secret) = &mut object {
            secret.normalize();
        }
        if let Some(template) = object.template()
            && template.spec.image.is_none()
        {
            let component = &template.spec.component;
            // Pulled by the nodes from a registry (decision 0039); `apply`
            // has resolved any tag to its manifest digest.
            if is_oci_pinned(component) {
                objects.push(object);
                continue;
            }
            if !is_digest(component) {
                return Err(invalid(format!(
                    "{}: spec.template.spec.component: {component:?} is not an uploaded component digest",
                    object.describe()
                )));
            }
            if !cluster.store.has_blob(component)? {
                return Err(invalid(format!(
                    "{}: spec.template.spec.component: component {component} has not been uploaded",
                    object.describe()
                )));
            }
        }
        objects.push(object);
    }
    Ok(objects)
}

fn namespace_exists(txn: &Txn<'_, '_>, namespace: &str) -> Result<bool, StoreError> {
    Ok(txn.get(&key(Kind::Namespace, None, namespace))?.is_some())
}

/// Creates or updates `raw` objects, all or nothing.
pub fn apply(cluster: &Cluster, raw: &[Vec<u8>]) -> Result<(Vec<ApplyOutcome>, u64), ApiError> {
    let objects = admit(raw, cluster)?;
    let now = Timestamp::now();
    let imports = if objects.iter().any(|o| o.template().is_some()) {
        cluster.store.imports()?
    } else {
        std::collections::HashMap::new()
    };
    cluster.store.write(|txn| {
        let mut outcomes = Vec::with_capacity(objects.len());
        for mut object in objects {
            if let Some(namespace) = object.namespace()
                && !namespace_exists(txn, namespace)?
            {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("{}: namespace {namespace:?} not found", object.describe()),
                ));
            }
            check_priority_class(txn, &object)?;
            crate::quota::limits::admit(txn, &mut object)?;
            crate::quota::admit(txn, &object)?;
            check_capabilities(txn, &object, &imports)?;
            let action = apply_one(txn, object, now)?;
            outcomes.push(action);
        }
        Ok(outcomes)
    })
}

/// A workload's component must import nothing its namespace's capability
/// policy (`berth_api::capability`) denies.
fn check_capabilities(
    txn: &Txn<'_, '_>,
    object: &Object,
    imports: &std::collections::HashMap<String, BTreeSet<String>>,
) -> Result<(), ApiError> {
    let (Some(template), Some(namespace)) = (object.template(), object.namespace()) else {
        return Ok(());
    };
    if template.spec.image.is_some() {
        return Ok(());
    }
    let Some(Object::Namespace(ns)) = txn.get(&key(Kind::Namespace, None, namespace))? else {
        return Ok(());
    };
    let Some(policy) = ns
        .metadata
        .annotations
        .get(berth_api::capability::DENIED_IMPORTS)
        .filter(|p| !p.trim().is_empty())
    else {
        return Ok(());
    };
    let component = &template.spec.component;
    let Some(imports) = imports.get(component) else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{}: spec.template.spec.component: the imports of {component} are not known at admission, \
                 and namespace {namespace} restricts imports ({}: {policy})",
                object.describe(),
                berth_api::capability::DENIED_IMPORTS
            ),
        ));
    };
    berth_api::capability::check(namespace, policy, imports.iter().map(String::as_str)).map_err(
        |e| {
            ApiError::new(
                ErrorCode::Forbidden,
                format!("{}: spec.template.spec.component: {e}", object.describe()),
            )
        },
    )
}

/// A Deployment's or Job's priorityClassName must name a PriorityClass,
/// and at most one PriorityClass may be the global default.
fn check_priority_class(txn: &Txn<'_, '_>, object: &Object) -> Result<(), ApiError> {
    match object {
        Object::Deployment(_) | Object::Job(_) | Object::DaemonSet(_) | Object::CronJob(_) => {
            if let Some(class) = object
                .template()
                .and_then(|t| t.spec.priority_class_name.as_ref())
                && txn.get(&key(Kind::PriorityClass, None, class))?.is_none()
            {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "{}: spec.template.spec.priorityClassName: PriorityClass {class:?} not found",
                        object.describe()
                    ),
                ));
            }
        }
        Object::PriorityClass(class) if class.global_default => {
            for other in txn.list(Kind::PriorityClass, None)? {
                if let Object::PriorityClass(other) = other
                    && other.global_default
                    && other.metadata.name != class.metadata.name
                {
                    return Err(invalid(format!(
                        "{}: globalDefault: PriorityClass {:?} is already the global default",
                        object.describe(),
                        other.metadata.name
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn apply_one(
    txn: &mut Txn<'_, '_>,
    mut object: Object,
    now: Timestamp,
) -> Result<ApplyOutcome, ApiError> {
    let described = object.describe();
    let existing = txn.get(&object_key(&object))?;
    let action = match (existing, &mut object) {
        (None, _) => {
            let meta = object.metadata_mut();
            meta.uid = Some(uuid::Uuid::new_v4().to_string());
            meta.creation_timestamp = Some(now);
            meta.generation = Some(1);
            meta.resource_version = None;
            meta.deletion_timestamp = None;
            meta.owner_references.clear();
            if let Object::Deployment(d) = &mut object {
                d.status = None;
            }
            if let Object::Job(j) = &mut object {
                j.status = berth_api::job::JobStatus::default();
            }
            if let Object::Service(s) = &mut object {
                s.status = berth_api::service::ServiceStatus::default();
            }
            if let Object::DaemonSet(d) = &mut object {
                d.status = berth_api::daemonset::DaemonSetStatus::default();
            }
            if let Object::CronJob(c) = &mut object {
                c.status = berth_api::cronjob::CronJobStatus::default();
            }
            if let Object::PodDisruptionBudget(b) = &mut object {
                b.status = berth_api::disruption::PodDisruptionBudgetStatus::default();
            }
            if let Object::HorizontalAutoscaler(a) = &mut object {
                a.status = None;
            }
            if let Object::ResourceQuota(q) = &mut object {
                q.status = berth_api::quota::ResourceQuotaStatus::default();
            }
            txn.put(object)?;
            ApplyAction::Created
        }
        (Some(Object::Namespace(old)), Object::Namespace(new)) => {
            if old.metadata.labels == new.metadata.labels {
                ApplyAction::Unchanged
            } else {
                let mut updated = old.clone();
                updated.metadata.labels = new.metadata.labels.clone();
                txn.put(Object::Namespace(updated))?;
                ApplyAction::Configured
            }
        }
        (Some(Object::Deployment(old)), Object::Deployment(new)) => {
            update(txn, merged(&old, new).map(Object::Deployment))?
        }
        (Some(Object::Job(old)), Object::Job(new)) => {
            berth_api::job::validate_job_update(&old.spec, &new.spec)
                .map_err(|e| invalid(format!("{described}: {e}")))?;
            update(txn, merged(&old, new).map(Object::Job))?
        }
        // For the kinds below, `status` stays as stored: their controllers
        // own it, or it is computed when the object is read.
        (Some(Object::DaemonSet(old)), Object::DaemonSet(new)) => {
            update(txn, merged(&old, new).map(Object::DaemonSet))?
        }
        (Some(Object::Service(old)), Object::Service(new)) => {
            update(txn, merged(&old, new).map(Object::Service))?
        }
        (Some(Object::CronJob(old)), Object::CronJob(new)) => {
            update(txn, merged(&old, new).map(Object::CronJob))?
        }
        (Some(Object::PodDisruptionBudget(old)), Object::PodDisruptionBudget(new)) => {
            update(txn, merged(&old, new).map(Object::PodDisruptionBudget))?
        }
        (Some(Object::Ingress(old)), Object::Ingress(new)) => {
            update(txn, merged(&old, new).map(Object::Ingress))?
        }
        (Some(Object::HorizontalAutoscaler(old)), Object::HorizontalAutoscaler(new)) => {
            update(txn, merged(&old, new).map(Object::HorizontalAutoscaler))?
        }
        (Some(Object::ResourceQuota(old)), Object::ResourceQuota(new)) => {
            let quota = merged(&old, new).map(|mut quota| {
                quota.status = berth_api::quota::ResourceQuotaStatus::default();
                Object::ResourceQuota(quota)
            });
            update(txn, quota)?
        }
        (Some(Object::LimitRange(old)), Object::LimitRange(new)) => {
            update(txn, merged(&old, new).map(Object::LimitRange))?
        }
        // A changed value reaches instances started after the change;
        // running ones keep theirs (decision 0036).
        (Some(Object::Secret(old)), Object::Secret(new)) => {
            update(txn, merged(&old, new).map(Object::Secret))?
        }
        (Some(Object::ConfigMap(old)), Object::ConfigMap(new)) => {
            update(txn, merged(&old, new).map(Object::ConfigMap))?
        }
        (Some(Object::Role(old)), Object::Role(new)) => {
            update(txn, crate::rbac::merged_role(&old, new).map(Object::Role))?
        }
        (Some(Object::ClusterRole(old)), Object::ClusterRole(new)) => update(
            txn,
            crate::rbac::merged_role(&old, new).map(Object::ClusterRole),
        )?,
        (Some(Object::RoleBinding(old)), Object::RoleBinding(new)) => {
            let binding = crate::rbac::merged_binding(&old, new).map_err(invalid)?;
            update(txn, binding.map(Object::RoleBinding))?
        }
        (Some(Object::ClusterRoleBinding(old)), Object::ClusterRoleBinding(new)) => {
            let binding = crate::rbac::merged_binding(&old, new).map_err(invalid)?;
            update(txn, binding.map(Object::ClusterRoleBinding))?
        }
        (Some(Object::NetworkPolicy(old)), Object::NetworkPolicy(new)) => {
            update(txn, merged(&old, new).map(Object::NetworkPolicy))?
        }
        (Some(Object::PriorityClass(old)), Object::PriorityClass(new)) => {
            let mut updated = old.clone();
            updated.metadata.labels = new.metadata.labels.clone();
            updated.value = new.value;
            updated.global_default = new.global_default;
            updated.preemption_policy = new.preemption_policy;
            updated.description = new.description.clone();
            if updated == old {
                ApplyAction::Unchanged
            } else {
                txn.put(Object::PriorityClass(updated))?;
                ApplyAction::Configured
            }
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                format!("{described}: stored object has another kind"),
            ));
        }
    };
    Ok(ApplyOutcome {
        object: described,
        action,
    })
}

/// Objects of `kind`, in one namespace or all, or one by name.
/// Secrets come back with every value emptied ([`reveal_secrets`] is the
/// one way to read them).
pub fn get(
    cluster: &Cluster,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Object>, ApiError> {
    let mut objects = read(cluster, kind, namespace, name)?;
    for object in &mut objects {
        if let Object::Secret(secret) = object {
            **secret = secret.redacted();
        }
    }
    Ok(objects)
}

/// Secrets, in one namespace or all, or one by name, with their values.
pub fn reveal_secrets(
    cluster: &Cluster,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Object>, ApiError> {
    read(cluster, Kind::Secret, namespace, name)
}

fn read(
    cluster: &Cluster,
    kind: Kind,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<Object>, ApiError> {
    let namespace = if kind.is_namespaced() {
        namespace
    } else {
        None
    };
    let mut objects = match name {
        Some(name) => {
            let namespace = kind
                .is_namespaced()
                .then(|| namespace.unwrap_or(DEFAULT_NAMESPACE));
            match cluster.store.get(&key(kind, namespace, name))? {
                Some(object) => vec![object],
                None => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("{} not found", describe(kind, namespace, name)),
                    ));
                }
            }
        }
        None => cluster.store.list(kind, namespace)?,
    };
    if kind == Kind::Service {
        show_endpoints(cluster, &mut objects)?;
    }
    if kind == Kind::PodDisruptionBudget {
        crate::disruption::show_status(cluster, &mut objects)?;
    }
    if kind == Kind::ResourceQuota {
        crate::quota::show_status(cluster, &mut objects)?;
    }
    if kind == Kind::Node {
        let liveness = cluster.liveness();
        for object in &mut objects {
            if let Object::Node(node) = object {
                node.status.last_heartbeat_time =
                    liveness.get(&node.metadata.name).and_then(|l| l.last_heard);
            }
        }
    }
    Ok(objects)
}

/// Sets each Service's `status.endpoints` from the current instances and
/// nodes: computed when read, as a Node's `lastHeartbeatTime`, rather than
/// written on every readiness change.
fn show_endpoints(cluster: &Cluster, objects: &mut [Object]) -> Result<(), ApiError> {
    let instances: Vec<berth_api::Instance> = cluster
        .store
        .list(Kind::Instance, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i) => Some(*i),
            _ => None,
        })
        .collect();
    let nodes: Vec<berth_api::Node> = cluster
        .store
        .list(Kind::Node, None)?
        .into_iter()
        .filter_map(|o| match o {
            Object::Node(n) => Some(*n),
            _ => None,
        })
        .collect();
    let ready = crate::services::ready_nodes(&nodes);
    let endpoints = crate::services::Endpoints::new(&instances, |n| ready.get(n).copied());
    for object in objects {
        if let Object::Service(service) = object {
            let mut shown: Vec<_> = endpoints
                .of(service)
                .map(crate::services::Endpoint::to_status)
                .collect();
            shown.sort();
            service.status.endpoints = shown;
        }
    }
    Ok(())
}

/// Deletes an object. A Namespace takes its Deployments, Jobs and
/// Services with it; an Instance is marked Terminating (its Deployment
/// replaces it); the controllers stop what deleted Deployments and Jobs
/// owned.
pub fn delete(
    cluster: &Cluster,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<(String, u64), ApiError> {
    let namespace = kind
        .is_namespaced()
        .then(|| namespace.unwrap_or(DEFAULT_NAMESPACE));
    let described = describe(kind, namespace, name);
    if kind == Kind::Namespace && name == DEFAULT_NAMESPACE {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{described}: the default namespace cannot be deleted"),
        ));
    }
    let now = Timestamp::now();
    let ((), revision) = cluster.store.write(|txn| {
        let key = key(kind, namespace, name);
        let Some(object) = txn.get(&key)? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{described} not found"),
            ));
        };
        match object {
            Object::Instance(mut instance) => {
                if instance.metadata.deletion_timestamp.is_none() {
                    instance.metadata.deletion_timestamp = Some(now);
                    instance.status.phase = berth_api::Phase::Terminating;
                    txn.put(Object::Instance(instance))?;
                }
            }
            Object::Event(_) => {
                txn.delete(&key)?;
            }
            Object::Namespace(_) => {
                for owner in txn
                    .list(Kind::Deployment, Some(name))?
                    .into_iter()
                    .chain(txn.list(Kind::Job, Some(name))?)
                    .chain(txn.list(Kind::Service, Some(name))?)
                    .chain(txn.list(Kind::Ingress, Some(name))?)
                    .chain(txn.list(Kind::DaemonSet, Some(name))?)
                    .chain(txn.list(Kind::CronJob, Some(name))?)
                    .chain(txn.list(Kind::PodDisruptionBudget, Some(name))?)
                    .chain(txn.list(Kind::HorizontalAutoscaler, Some(name))?)
                    .chain(txn.list(Kind::ResourceQuota, Some(name))?)
                    .chain(txn.list(Kind::LimitRange, Some(name))?)
                    .chain(txn.list(Kind::Role, Some(name))?)
                    .chain(txn.list(Kind::RoleBinding, Some(name))?)
                    .chain(txn.list(Kind::Secret, Some(name))?)
                    .chain(txn.list(Kind::ConfigMap, Some(name))?)
                    .chain(txn.list(Kind::NetworkPolicy, Some(name))?)
                {
                    txn.delete(&object_key(&owner))?;
                }
                txn.delete(&key)?;
            }
            Object::Deployment(_)
            | Object::Job(_)
            | Object::Service(_)
            | Object::Ingress(_)
            | Object::DaemonSet(_)
            | Object::CronJob(_)
            | Object::PodDisruptionBudget(_)
            | Object::HorizontalAutoscaler(_)
            | Object::ResourceQuota(_)
            | Object::LimitRange(_)
            | Object::Role(_)
            | Object::ClusterRole(_)
            | Object::RoleBinding(_)
            | Object::ClusterRoleBinding(_)
            | Object::NetworkPolicy(_)
            | Object::Secret(_)
            | Object::ConfigMap(_)
            | Object::Node(_)
            | Object::PriorityClass(_) => {
                txn.delete(&key)?;
            }
        }
        Ok(())
    })?;
    Ok((described, revision))
}

/// Scales, pauses, resumes, sets the component of, or rolls back a
/// Deployment. The result is validated like an applied object.
pub fn patch_deployment(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    patch: &DeploymentPatch,
) -> Result<(Vec<u8>, u64), ApiError> {
    let described = describe(Kind::Deployment, Some(namespace), name);
    if let Some(component) = &patch.component {
        if !is_digest(component) {
            return Err(invalid(format!(
                "{described}: spec.template.spec.component: {component:?} is not an uploaded component digest"
            )));
        }
        if !cluster.store.has_blob(component)? {
            return Err(invalid(format!(
                "{described}: spec.template.spec.component: component {component} has not been uploaded"
            )));
        }
    }
    // A new component (set or rolled back to) passes the capability policy.
    let imports = if patch.component.is_some() || patch.undo_to.is_some() {
        cluster.store.imports()?
    } else {
        std::collections::HashMap::new()
    };
    cluster.store.write(|txn| {
        let key = key(Kind::Deployment, Some(namespace), name);
        let Some(Object::Deployment(mut deployment)) = txn.get(&key)? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{described} not found"),
            ));
        };
        let before = deployment.spec.clone();
        if let Some(replicas) = patch.replicas {
            deployment.spec.replicas = replicas;
        }
        if let Some(paused) = patch.paused {
            deployment.spec.paused = paused;
        }
        if let Some(component) = &patch.component {
            deployment
                .spec
                .template
                .spec
                .component
                .clone_from(component);
        }
        if let Some(to) = patch.undo_to {
            let history = deployment
                .status
                .as_ref()
                .map(|s| s.history.as_slice())
                .unwrap_or_default();
            let target = if to == 0 {
                // The previous revision: the one before the current.
                history.iter().rev().nth(1)
            } else {
                history.iter().find(|r| r.revision == to)
            };
            let Some(target) = target else {
                return Err(invalid(if to == 0 {
                    format!("{described}: no previous revision to roll back to")
                } else {
                    format!("{described}: revision {to} not found in its history")
                }));
            };
            deployment.spec.template = target.template.clone();
        }
        let original = Object::Deployment(deployment.clone());
        let status_before = deployment.status.clone();
        if patch.promote.is_some() || patch.abort {
            crate::controller::canary_request(&mut deployment, patch.promote, patch.abort)
                .map_err(|e| invalid(format!("{described}: {e}")))?;
        }
        let status_changed = deployment.status != status_before;
        let object = Object::Deployment(deployment);
        validate_object(&object).map_err(|e| invalid(format!("{described}: {e}")))?;
        crate::quota::admit(txn, &object)?;
        if object.template().map(|t| &t.spec.component) != Some(&before.template.spec.component) {
            check_capabilities(txn, &object, &imports)?;
        }
        let Object::Deployment(mut deployment) = object else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "patched object changed kind",
            ));
        };
        if deployment.spec == before {
            if status_changed {
                let object = Object::Deployment(deployment);
                let now = jiff::Timestamp::now();
                crate::events::record_change(txn, &original, &object, "scheduler", now)?;
                return Ok(txn.put(object)?.to_json());
            }
            return Ok(Object::Deployment(deployment).to_json());
        }
        deployment.metadata.generation = Some(deployment.metadata.generation.unwrap_or(0) + 1);
        Ok(txn.put(Object::Deployment(deployment))?.to_json())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked() {
        assert!(is_digest(&format!("sha256:{}", "0".repeat(64))));
        assert!(!is_digest(&format!("sha256:{}", "G".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("./hello.wasm"));
    }

    #[test]
    fn registry_components_are_admitted_only_by_digest() {
        let hex = "0".repeat(64);
        assert!(is_oci_pinned(&format!(
            "oci://127.0.0.1:5000/hello@sha256:{hex}"
        )));
        assert!(!is_oci_pinned("oci://127.0.0.1:5000/hello:v1"));
        assert!(!is_oci_pinned(&format!("oci://hello@sha256:{hex}")));
        assert!(!is_oci_pinned(&format!(
            "127.0.0.1:5000/hello@sha256:{hex}"
        )));
    }

    #[test]
    fn components_are_told_from_modules_and_garbage() {
        assert!(
            validate_component(b"not wasm")
                .unwrap_err()
                .contains("not a WebAssembly component")
        );
        let module = b"\0asm\x01\0\0\0";
        assert!(
            validate_component(module)
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        let truncated_component = b"\0asm\x0d\0\x01\0\x01";
        assert!(validate_component(truncated_component).is_err());
    }

    #[test]
    fn services_are_applied_like_kubectl_and_go_with_their_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
        let authority = crate::pki::Authority::load_or_create(dir.path()).unwrap();
        let cluster = Cluster::new(store, authority).unwrap();
        let json = |namespace: &str, app: &str| {
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "berth.dev/v1", "kind": "Service",
                "metadata": {"name": "b", "namespace": namespace},
                "spec": {"selector": {"app": app}, "ports": [{"port": 80}]},
                "status": {"endpoints": [{"instance": "forged", "node": "n1"}]}
            }))
            .unwrap()
        };
        let namespace = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Namespace", "metadata": {"name": "team"}
        }))
        .unwrap();
        let actions = |raw: &[Vec<u8>]| -> Vec<ApplyAction> {
            let (outcomes, _) = apply(&cluster, raw).unwrap();
            outcomes.into_iter().map(|o| o.action).collect()
        };
        assert_eq!(
            actions(&[namespace, json("team", "b")]),
            [ApplyAction::Created, ApplyAction::Created]
        );
        assert_eq!(actions(&[json("team", "b")]), [ApplyAction::Unchanged]);
        assert_eq!(actions(&[json("team", "c")]), [ApplyAction::Configured]);
        let stored = cluster
            .store
            .get(&key(Kind::Service, Some("team"), "b"))
            .unwrap();
        let Some(Object::Service(stored)) = stored else {
            panic!("the Service is stored: {stored:?}");
        };
        assert!(
            stored.status.endpoints.is_empty(),
            "a user's status is dropped"
        );
        assert_eq!(stored.metadata.generation, Some(2));
        let (deleted, _) = delete(&cluster, Kind::Namespace, None, "team").unwrap();
        assert_eq!(deleted, "Namespace team");
        assert!(
            cluster
                .store
                .list(Kind::Service, Some("team"))
                .unwrap()
                .is_empty()
        );
        let bad = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "berth.dev/v1", "kind": "Service",
            "metadata": {"name": "b"}, "spec": {"selector": {}}
        }))
        .unwrap();
        assert_eq!(
            apply(&cluster, &[bad]).unwrap_err().message,
            "Service default/b: spec.selector: must not be empty: a Service selects instances by label"
        );
    }
}
