//! Semantic checks on a parsed object: names, labels, replicas, selectors,
//! environment and resources, with Kubernetes' rules where the concept is
//! the same. The scheduling fields (affinity, tolerations, spread,
//! priority), Node taints and PriorityClass objects are checked in
//! [`scheduling`].
//!
//! [`validate_object`] returns the first problem as a [`FieldError`] naming
//! the field by its dotted path (`spec.replicas: must be >= 0`). Syntax and
//! types are checked earlier, by deserialisation in [`crate::manifest`].

mod scheduling;

use std::collections::{BTreeMap, HashMap};

use crate::meta::{API_VERSION, ObjectMeta};
use crate::objects::{DeploymentSpec, InstanceSpec, Kind, Object, Quantity, ResourceList};
use crate::quantity;
use crate::rollout::{IntOrPercent, StrategyType};

pub use scheduling::{MAX_PRIORITY, MAX_PRIORITY_CLASS_DESCRIPTION_LEN, MIN_PRIORITY};

/// Most replicas one Deployment may ask for.
pub const MAX_REPLICAS: i64 = 10_000;

/// Longest DNS-1123 label, and longest label value or label key name part.
const MAX_LABEL_LEN: usize = 63;

/// Longest DNS-1123 subdomain, such as a label key prefix.
const MAX_SUBDOMAIN_LEN: usize = 253;

/// One invalid field: where, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Dotted path of the field, as in the manifest: `spec.replicas`,
    /// `spec.template.spec.env[2].name`.
    pub path: String,
    /// Lowercase sentence saying what is wrong.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Checks a DNS-1123 label: 1 to 63 lowercase letters, digits or `-`,
/// starting and ending with a letter or digit.
pub fn dns1123_label(value: &str) -> Result<(), String> {
    if is_dns1123_label(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid DNS-1123 label: lowercase letters, digits and '-' only, \
             starting and ending with a letter or digit, at most {MAX_LABEL_LEN} characters"
        ))
    }
}

/// Checks a DNS-1123 subdomain: 1 to 253 characters, DNS-1123 labels joined
/// by `.`.
pub fn dns1123_subdomain(value: &str) -> Result<(), String> {
    if is_dns1123_subdomain(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid DNS-1123 subdomain: lowercase letters, digits, '-' and \
             '.' only, each part starting and ending with a letter or digit, at most \
             {MAX_SUBDOMAIN_LEN} characters"
        ))
    }
}

/// Checks `object` and returns the first invalid field.
pub fn validate_object(object: &Object) -> Result<(), FieldError> {
    let kind = object.kind();
    let (api_version, kind_field) = match object {
        Object::Namespace(o) => (&o.api_version, &o.kind),
        Object::Deployment(o) => (&o.api_version, &o.kind),
        Object::Instance(o) => (&o.api_version, &o.kind),
        Object::Node(o) => (&o.api_version, &o.kind),
        Object::PriorityClass(o) => (&o.api_version, &o.kind),
        Object::Event(o) => (&o.api_version, &o.kind),
        Object::Job(o) => (&o.api_version, &o.kind),
        Object::Service(o) => (&o.api_version, &o.kind),
        Object::Ingress(o) => (&o.api_version, &o.kind),
        Object::DaemonSet(o) => (&o.api_version, &o.kind),
        Object::CronJob(o) => (&o.api_version, &o.kind),
        Object::PodDisruptionBudget(o) => (&o.api_version, &o.kind),
        Object::HorizontalAutoscaler(o) => (&o.api_version, &o.kind),
        Object::ResourceQuota(o) => (&o.api_version, &o.kind),
        Object::LimitRange(o) => (&o.api_version, &o.kind),
        Object::Role(o) | Object::ClusterRole(o) => (&o.api_version, &o.kind),
        Object::RoleBinding(o) | Object::ClusterRoleBinding(o) => (&o.api_version, &o.kind),
        Object::Secret(o) => (&o.api_version, &o.kind),
        Object::ConfigMap(o) => (&o.api_version, &o.kind),
        Object::NetworkPolicy(o) => (&o.api_version, &o.kind),
    };
    if api_version != API_VERSION {
        return Err(FieldError::new(
            "apiVersion",
            format!("unsupported apiVersion {api_version:?}, expected {API_VERSION:?}"),
        ));
    }
    if kind_field != kind.as_str() {
        return Err(FieldError::new(
            "kind",
            format!("must be {:?}", kind.as_str()),
        ));
    }
    validate_metadata(kind, object.metadata())?;
    match object {
        Object::Namespace(namespace) => crate::capability::validate_namespace(&namespace.metadata),
        Object::Event(_) => Ok(()),
        Object::Node(node) => scheduling::validate_node_spec("spec", &node.spec),
        Object::PriorityClass(class) => scheduling::validate_priority_class(class),
        Object::Deployment(deployment) => {
            let spec = &deployment.spec;
            if spec.replicas < 0 {
                return Err(FieldError::new("spec.replicas", "must be >= 0"));
            }
            if spec.replicas > MAX_REPLICAS {
                return Err(FieldError::new(
                    "spec.replicas",
                    format!("must be <= {MAX_REPLICAS}"),
                ));
            }
            let selector = &spec.selector.match_labels;
            if selector.is_empty() {
                return Err(FieldError::new(
                    "spec.selector.matchLabels",
                    "must not be empty",
                ));
            }
            validate_labels("spec.selector.matchLabels", selector)?;
            let template_labels = &spec.template.metadata.labels;
            validate_labels("spec.template.metadata.labels", template_labels)?;
            if !spec.selector.matches(template_labels) {
                return Err(FieldError::new(
                    "spec.selector.matchLabels",
                    "does not match spec.template.metadata.labels",
                ));
            }
            validate_rollout(spec)?;
            let path = "spec.template.spec";
            validate_instance_spec(path, &spec.template.spec)?;
            crate::lifecycle::validate_deployment_restart_policy(path, &spec.template.spec)?;
            scheduling::validate_template_priority(path, &spec.template.spec)
        }
        Object::Instance(instance) => validate_instance_spec("spec", &instance.spec),
        Object::Job(job) => {
            let template = &job.spec.template;
            validate_labels("spec.template.metadata.labels", &template.metadata.labels)?;
            let path = "spec.template.spec";
            validate_instance_spec(path, &template.spec)?;
            crate::job::validate_job_spec(&job.spec)?;
            scheduling::validate_template_priority(path, &template.spec)
        }
        Object::Service(service) => crate::service::validate_service_spec(&service.spec),
        Object::Ingress(ingress) => crate::ingress::validate_ingress_spec(&ingress.spec),
        Object::PodDisruptionBudget(pdb) => crate::disruption::validate_pdb_spec(&pdb.spec),
        Object::ResourceQuota(quota) => crate::quota::validate_quota_spec(&quota.spec),
        Object::LimitRange(range) => crate::quota::validate_limit_range_spec(&range.spec),
        Object::Role(role) | Object::ClusterRole(role) => crate::rbac::validate_rules(&role.rules),
        Object::RoleBinding(binding) => crate::rbac::validate_binding(binding, false),
        Object::ClusterRoleBinding(binding) => crate::rbac::validate_binding(binding, true),
        Object::Secret(secret) => crate::secret::validate_secret(secret),
        Object::ConfigMap(map) => crate::secret::validate_config_map(map),
        Object::NetworkPolicy(policy) => crate::netpol::validate_spec(&policy.spec),
        Object::HorizontalAutoscaler(autoscaler) => {
            crate::autoscaler::validate_autoscaler_spec(&autoscaler.spec)
        }
        Object::DaemonSet(daemonset) => {
            let spec = &daemonset.spec;
            let selector = &spec.selector.match_labels;
            if selector.is_empty() {
                return Err(FieldError::new(
                    "spec.selector.matchLabels",
                    "must not be empty",
                ));
            }
            validate_labels("spec.selector.matchLabels", selector)?;
            let template_labels = &spec.template.metadata.labels;
            validate_labels("spec.template.metadata.labels", template_labels)?;
            if !spec.selector.matches(template_labels) {
                return Err(FieldError::new(
                    "spec.selector.matchLabels",
                    "does not match spec.template.metadata.labels",
                ));
            }
            crate::daemonset::validate_daemonset_spec(spec)?;
            let path = "spec.template.spec";
            validate_instance_spec(path, &spec.template.spec)?;
            crate::daemonset::validate_daemonset_restart_policy(path, &spec.template.spec)?;
            scheduling::validate_template_priority(path, &spec.template.spec)
        }
        Object::CronJob(cronjob) => {
            let spec = &cronjob.spec;
            crate::cronjob::validate_cronjob(&cronjob.metadata.name, spec)?;
            let job = &spec.job_template;
            validate_labels("spec.jobTemplate.metadata.labels", &job.metadata.labels)?;
            let template = &job.spec.template;
            validate_labels(
                "spec.jobTemplate.spec.template.metadata.labels",
                &template.metadata.labels,
            )?;
            let path = "spec.jobTemplate.spec.template.spec";
            validate_instance_spec(path, &template.spec)?;
            crate::job::validate_job_spec(&job.spec).map_err(|mut error| {
                error.path = format!("spec.jobTemplate.{}", error.path);
                error
            })?;
            scheduling::validate_template_priority(path, &template.spec)
        }
    }
}

/// `spec.strategy`, `minReadySeconds` and `progressDeadlineSeconds`, with
/// Kubernetes' rules.
fn validate_rollout(spec: &DeploymentSpec) -> Result<(), FieldError> {
    let strategy = &spec.strategy;
    crate::canary::validate(strategy)?;
    if let Some(rolling) = &strategy.rolling_update {
        let path = "spec.strategy.rollingUpdate";
        if strategy.type_ == StrategyType::Recreate {
            return Err(FieldError::new(
                path,
                "may not be specified when strategy type is Recreate",
            ));
        }
        for (field, value) in [
            ("maxSurge", rolling.max_surge),
            ("maxUnavailable", rolling.max_unavailable),
        ] {
            let path = format!("{path}.{field}");
            match value {
                Some(IntOrPercent::Int(n) | IntOrPercent::Percent(n)) if n < 0 => {
                    return Err(FieldError::new(path, "must be >= 0"));
                }
                Some(IntOrPercent::Percent(p)) if p > 100 => {
                    return Err(FieldError::new(path, "must be <= 100%"));
                }
                _ => {}
            }
        }
        // Unset, each defaults to 25%.
        if rolling.max_surge.is_some_and(|v| v.value() == 0)
            && rolling.max_unavailable.is_some_and(|v| v.value() == 0)
        {
            return Err(FieldError::new(
                format!("{path}.maxUnavailable"),
                "may not be 0 when maxSurge is 0",
            ));
        }
    }
    let deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    if deadline <= spec.min_ready_seconds {
        return Err(FieldError::new(
            "spec.progressDeadlineSeconds",
            format!(
                "must be greater than minReadySeconds ({}), default {DEFAULT_PROGRESS_DEADLINE_SECONDS}",
                spec.min_ready_seconds
            ),
        ));
    }
    Ok(())
}

/// `progressDeadlineSeconds` when the spec leaves it out.
const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

fn validate_metadata(kind: Kind, metadata: &ObjectMeta) -> Result<(), FieldError> {
    if metadata.name.is_empty() {
        return Err(FieldError::new("metadata.name", "must not be empty"));
    }
    // PriorityClass names are subdomains, as in Kubernetes, so that every
    // valid priorityClassName can name one.
    let check_name = match kind {
        Kind::PriorityClass => dns1123_subdomain,
        _ => dns1123_label,
    };
    check_name(&metadata.name).map_err(|message| FieldError::new("metadata.name", message))?;
    if let Some(namespace) = &metadata.namespace {
        if !kind.is_namespaced() {
            return Err(FieldError::new(
                "metadata.namespace",
                format!("must not be set: {kind} objects are not namespaced"),
            ));
        }
        dns1123_label(namespace)
            .map_err(|message| FieldError::new("metadata.namespace", message))?;
    }
    validate_labels("metadata.labels", &metadata.labels)
}

pub(crate) fn validate_labels(
    path: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    for (key, value) in labels {
        label_key(key).map_err(|message| FieldError::new(path, message))?;
        if !(value.is_empty() || is_label_name(value)) {
            return Err(FieldError::new(
                path,
                format!(
                    "value {value:?} of label {key:?} is invalid: at most {MAX_LABEL_LEN} \
                     letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a label key: an optional DNS-1123 subdomain and `/`, then a name.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns1123_subdomain(prefix)
    {
        return Err(format!(
            "label key {key:?} is invalid: the prefix before '/' must be a DNS-1123 subdomain \
             (lowercase letters, digits, '-' and '.', at most {MAX_SUBDOMAIN_LEN} characters)"
        ));
    }
    if !is_label_name(name) {
        return Err(format!(
            "label key {key:?} is invalid: the name must be 1 to {MAX_LABEL_LEN} letters, \
             digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or a name as in a label key.
fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid label value: at most {MAX_LABEL_LEN} letters, digits, \
             '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Environment variables with this prefix are set by the node
/// (`BERTH_INSTANCE`, `BERTH_NAMESPACE`, `BERTH_DEPLOYMENT`).
pub const RESERVED_ENV_PREFIX: &str = "BERTH_";

/// The longest per-request deadline (`timeoutSeconds`) an instance may set.
pub const MAX_TIMEOUT_SECONDS: u32 = 3600;

fn validate_instance_spec(path: &str, spec: &InstanceSpec) -> Result<(), FieldError> {
    crate::container::validate_workload(path, spec)?;
    if let Some(seconds) = spec.timeout_seconds
        && !(1..=MAX_TIMEOUT_SECONDS).contains(&seconds)
    {
        return Err(FieldError::new(
            format!("{path}.timeoutSeconds"),
            format!("must be between 1 and {MAX_TIMEOUT_SECONDS}, not {seconds}"),
        ));
    }
    crate::lifecycle::validate_lifecycle(path, spec)?;
    for (index, entry) in spec.allowed_outbound_hosts.iter().enumerate() {
        crate::outbound::AllowedHost::parse(entry)
            .map_err(|e| FieldError::new(format!("{path}.allowedOutboundHosts[{index}]"), e))?;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, var) in spec.env.iter().enumerate() {
        let field = format!("{path}.env[{index}].name");
        if var.name.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if !is_env_name(&var.name) {
            return Err(FieldError::new(
                field,
                format!(
                    "{:?} is not a valid environment variable name: letters, digits, '_', '-' \
                     and '.' only, not starting with a digit",
                    var.name
                ),
            ));
        }
        if var.name.starts_with(RESERVED_ENV_PREFIX) {
            return Err(FieldError::new(
                field,
                format!(
                    "{:?} is reserved: the node sets {RESERVED_ENV_PREFIX}* variables itself",
                    var.name
                ),
            ));
        }
        if let Some(first) = seen.insert(&var.name, index) {
            return Err(FieldError::new(
                field,
                format!("duplicate name {:?}, already set by env[{first}]", var.name),
            ));
        }
        if let Some(from) = &var.value_from {
            crate::secret::validate_value_from(&format!("{path}.env[{index}]"), &var.value, from)?;
        }
    }
    crate::secret::validate_env_from(path, &spec.env_from)?;
    let resources = format!("{path}.resources");
    let requests = parse_resources(&format!("{resources}.requests"), &spec.resources.requests)?;
    let limits = parse_resources(&format!("{resources}.limits"), &spec.resources.limits)?;
    let pairs = [
        ("cpu", requests.cpu, limits.cpu),
        ("memory", requests.memory, limits.memory),
    ];
    for (name, request, limit) in pairs {
        if let (Some((request, _)), Some((limit, limit_text))) = (request, limit)
            && request > limit
        {
            return Err(FieldError::new(
                format!("{resources}.requests.{name}"),
                format!("must be less than or equal to the {name} limit of {limit_text}"),
            ));
        }
    }
    scheduling::validate_scheduling(path, spec)
}

/// A resource list's quantities in base units, with the text as written.
struct Parsed<'a> {
    cpu: Option<(u64, &'a str)>,
    memory: Option<(u64, &'a str)>,
}

fn parse_resources<'a>(path: &str, list: &'a ResourceList) -> Result<Parsed<'a>, FieldError> {
    let parse = |name: &str,
                 quantity: &'a Option<Quantity>,
                 parser: fn(&str) -> Result<u64, quantity::QuantityError>| {
        quantity
            .as_ref()
            .map(|Quantity(text)| {
                parser(text)
                    .map(|value| (value, text.as_str()))
                    .map_err(|error| FieldError::new(format!("{path}.{name}"), error.to_string()))
            })
            .transpose()
    };
    Ok(Parsed {
        cpu: parse("cpu", &list.cpu, quantity::parse_cpu)?,
        memory: parse("memory", &list.memory, quantity::parse_memory)?,
    })
}

fn is_dns1123_label(value: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && starts_and_ends_alphanumeric(value)
}

fn is_dns1123_subdomain(value: &str) -> bool {
    (1..=MAX_SUBDOMAIN_LEN).contains(&value.len()) && value.split('.').all(is_dns1123_label)
}

/// A label value (when not empty) or the name part of a label key.
fn is_label_name(value: &str) -> bool {
    (1..=MAX_LABEL_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && starts_and_ends_alphanumeric(value)
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, as Kubernetes checks environment names.
pub fn is_env_name(value: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    value.bytes().next().is_some_and(|b| !b.is_ascii_digit()) && value.bytes().all(allowed)
}

fn starts_and_ends_alphanumeric(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::LabelSelector;
    use crate::objects::{
        Deployment, DeploymentSpec, EnvVar, Instance, InstanceStatus, InstanceTemplate, Namespace,
        Node, NodeStatus, Resources, TemplateMeta,
    };
    use crate::rollout::{DeploymentStrategy, RollingUpdate};

    pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(super) fn spec() -> InstanceSpec {
        InstanceSpec {
            component: "hello.wasm".into(),
            env: vec![],
            resources: Resources::default(),
            node_name: None,
            ..InstanceSpec::default()
        }
    }

    pub(super) fn deployment() -> Deployment {
        Deployment {
            api_version: API_VERSION.into(),
            kind: "Deployment".into(),
            metadata: ObjectMeta {
                name: "hello".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: 2,
                selector: LabelSelector {
                    match_labels: labels(&[("app", "hello")]),
                },
                template: InstanceTemplate {
                    metadata: TemplateMeta {
                        labels: labels(&[("app", "hello"), ("tier", "web")]),
                    },
                    spec: spec(),
                },
                strategy: DeploymentStrategy::default(),
                min_ready_seconds: 0,
                progress_deadline_seconds: None,
                revision_history_limit: None,
                paused: false,
            },
            status: None,
        }
    }

    /// Validates a changed copy of a good Deployment, as `path: message`.
    pub(super) fn check(change: impl FnOnce(&mut Deployment)) -> Result<(), String> {
        let mut object = deployment();
        change(&mut object);
        validate_object(&Object::Deployment(Box::new(object))).map_err(|e| e.to_string())
    }

    fn quantity(text: &str) -> Option<Quantity> {
        Some(Quantity(text.into()))
    }

    #[test]
    fn good_deployment_passes() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|d| d.metadata.namespace = None), Ok(()));
        assert_eq!(check(|d| d.spec.replicas = 0), Ok(()));
        assert_eq!(check(|d| d.spec.replicas = MAX_REPLICAS), Ok(()));
    }

    fn rolling(
        max_surge: Option<IntOrPercent>,
        max_unavailable: Option<IntOrPercent>,
    ) -> Result<(), String> {
        check(|d| {
            d.spec.strategy.rolling_update = Some(RollingUpdate {
                max_surge,
                max_unavailable,
            })
        })
    }

    #[test]
    fn checks_the_rollout_fields() {
        use IntOrPercent::{Int, Percent};
        assert_eq!(rolling(Some(Int(1)), Some(Int(0))), Ok(()));
        assert_eq!(rolling(Some(Percent(100)), Some(Percent(0))), Ok(()));
        assert_eq!(
            rolling(Some(Int(0)), None),
            Ok(()),
            "maxUnavailable defaults to 25%"
        );
        assert_eq!(
            rolling(None, Some(Percent(0))),
            Ok(()),
            "maxSurge defaults to 25%"
        );
        assert_eq!(
            rolling(Some(Int(-1)), None),
            Err("spec.strategy.rollingUpdate.maxSurge: must be >= 0".into())
        );
        assert_eq!(
            rolling(None, Some(Percent(-5))),
            Err("spec.strategy.rollingUpdate.maxUnavailable: must be >= 0".into())
        );
        assert_eq!(
            rolling(Some(Percent(101)), None),
            Err("spec.strategy.rollingUpdate.maxSurge: must be <= 100%".into())
        );
        assert_eq!(
            rolling(None, Some(Percent(150))),
            Err("spec.strategy.rollingUpdate.maxUnavailable: must be <= 100%".into())
        );
        for (surge, unavailable) in [(Int(0), Int(0)), (Percent(0), Int(0)), (Int(0), Percent(0))] {
            assert_eq!(
                rolling(Some(surge), Some(unavailable)),
                Err(
                    "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0"
                        .into()
                )
            );
        }
        assert_eq!(
            check(|d| {
                d.spec.strategy.type_ = StrategyType::Recreate;
                d.spec.strategy.rolling_update = Some(RollingUpdate::default());
            }),
            Err(
                "spec.strategy.rollingUpdate: may not be specified when strategy type is Recreate"
                    .into()
            )
        );
        assert_eq!(
            check(|d| d.spec.strategy.type_ = StrategyType::Recreate),
            Ok(())
        );

        assert_eq!(check(|d| d.spec.min_ready_seconds = 599), Ok(()));
        assert_eq!(
            check(|d| d.spec.min_ready_seconds = 600),
            Err(
                "spec.progressDeadlineSeconds: must be greater than minReadySeconds (600), \
                 default 600"
                    .into()
            )
        );
        assert_eq!(
            check(|d| {
                d.spec.min_ready_seconds = 30;
                d.spec.progress_deadline_seconds = Some(31);
            }),
            Ok(())
        );
        assert!(
            check(|d| {
                d.spec.min_ready_seconds = 30;
                d.spec.progress_deadline_seconds = Some(30);
            })
            .is_err_and(|e| e.starts_with("spec.progressDeadlineSeconds: must be greater"))
        );
        assert!(check(|d| d.spec.progress_deadline_seconds = Some(0)).is_err());
    }

    #[test]
    fn dns1123_labels() {
        for good in ["a", "hello", "hello-world", "a1", "1a", &"a".repeat(63)] {
            assert_eq!(dns1123_label(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "Hello", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(
            dns1123_label("Hello_World"),
            Err(
                "\"Hello_World\" is not a valid DNS-1123 label: lowercase letters, digits and \
                 '-' only, starting and ending with a letter or digit, at most 63 characters"
                    .into()
            )
        );
    }

    #[test]
    fn dns1123_subdomains() {
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        for good in ["a", "high", "team-a.high", "a.b.c", long.as_str()] {
            assert_eq!(dns1123_subdomain(good), Ok(()), "{good}");
        }
        let too_long = format!("{long}e");
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "A.b",
            "a_b",
            "-a.b",
            too_long.as_str(),
        ] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_api_version_kind_and_names() {
        assert_eq!(
            check(|d| d.api_version = "v1".into()),
            Err("apiVersion: unsupported apiVersion \"v1\", expected \"berth.dev/v1\"".into())
        );
        assert_eq!(
            check(|d| d.kind = "Namespace".into()),
            Err("kind: must be \"Deployment\"".into())
        );
        assert_eq!(
            check(|d| d.metadata.name.clear()),
            Err("metadata.name: must not be empty".into())
        );
        assert!(
            check(|d| d.metadata.name = "Hello_World".into())
                .is_err_and(|e| e.starts_with("metadata.name: \"Hello_World\" is not a valid"))
        );
        assert!(
            check(|d| d.metadata.namespace = Some("Prod".into()))
                .is_err_and(|e| e.starts_with("metadata.namespace: \"Prod\" is not a valid"))
        );
    }

    #[test]
    fn cluster_scoped_kinds_take_no_namespace() {
        let metadata = ObjectMeta {
            name: "prod".into(),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        };
        let namespace = Object::Namespace(Box::new(Namespace {
            api_version: API_VERSION.into(),
            kind: "Namespace".into(),
            metadata: metadata.clone(),
        }));
        assert_eq!(
            validate_object(&namespace).map_err(|e| e.to_string()),
            Err("metadata.namespace: must not be set: Namespace objects are not namespaced".into())
        );
        let node = Object::Node(Box::new(Node {
            api_version: API_VERSION.into(),
            kind: "Node".into(),
            metadata: ObjectMeta {
                namespace: None,
                ..metadata
            },
            spec: Default::default(),
            status: NodeStatus::default(),
        }));
        assert_eq!(validate_object(&node), Ok(()));
    }

    #[test]
    fn checks_labels() {
        for good in [
            ("app", "hello"),
            ("app.kubernetes.io/name", "Hello_World.2"),
            ("example.com/a", ""),
            ("A-b_c.D", "x"),
        ] {
            assert_eq!(
                check(|d| d.metadata.labels = labels(&[good])),
                Ok(()),
                "{good:?}"
            );
        }
        let long = "a".repeat(64);
        for bad in [
            ("", "x"),
            ("-app", "x"),
            ("a/b/c", "x"),
            ("Example.com/a", "x"),
            ("/a", "x"),
            ("a/", "x"),
            (long.as_str(), "x"),
            ("app", "-x"),
            ("app", "a b"),
            ("app", long.as_str()),
        ] {
            assert!(
                check(|d| d.metadata.labels = labels(&[bad]))
                    .is_err_and(|e| e.starts_with("metadata.labels: ")),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(|d| d.metadata.labels = labels(&[("a b", "x")])),
            Err(
                "metadata.labels: label key \"a b\" is invalid: the name must be 1 to 63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                    .into()
            )
        );
        assert!(
            check(|d| {
                d.spec
                    .template
                    .metadata
                    .labels
                    .insert("b@d".into(), "x".into());
            })
            .is_err_and(|e| e.starts_with("spec.template.metadata.labels: label key \"b@d\""))
        );
    }

    #[test]
    fn checks_replicas_and_selector() {
        assert_eq!(
            check(|d| d.spec.replicas = -1),
            Err("spec.replicas: must be >= 0".into())
        );
        assert_eq!(
            check(|d| d.spec.replicas = MAX_REPLICAS + 1),
            Err("spec.replicas: must be <= 10000".into())
        );
        assert_eq!(
            check(|d| d.spec.selector.match_labels.clear()),
            Err("spec.selector.matchLabels: must not be empty".into())
        );
        assert_eq!(
            check(|d| d.spec.selector.match_labels = labels(&[("app", "other")])),
            Err("spec.selector.matchLabels: does not match spec.template.metadata.labels".into())
        );
        assert_eq!(
            check(|d| d.spec.template.metadata.labels.clear()),
            Err("spec.selector.matchLabels: does not match spec.template.metadata.labels".into())
        );
    }

    #[test]
    fn checks_component_and_env() {
        assert_eq!(
            check(|d| d.spec.template.spec.component.clear()),
            Err("spec.template.spec.component: must not be empty (or give an image)".into())
        );
        let env = |names: &[&str]| -> Vec<EnvVar> {
            names
                .iter()
                .map(|name| EnvVar {
                    name: (*name).into(),
                    value: "v".into(),
                    value_from: None,
                })
                .collect()
        };
        assert_eq!(
            check(|d| d.spec.template.spec.env = env(&["A", "_b", "c.d-e", "-x", "X9"])),
            Ok(())
        );
        assert_eq!(
            check(|d| d.spec.template.spec.env = env(&["A", "1B"])),
            Err(
                "spec.template.spec.env[1].name: \"1B\" is not a valid environment variable \
                 name: letters, digits, '_', '-' and '.' only, not starting with a digit"
                    .into()
            )
        );
        assert!(check(|d| d.spec.template.spec.env = env(&["A B"])).is_err());
        assert_eq!(
            check(|d| d.spec.template.spec.env = env(&["BERTH_INSTANCE"])),
            Err(
                "spec.template.spec.env[0].name: \"BERTH_INSTANCE\" is reserved: the node sets \
                 BERTH_* variables itself"
                    .into()
            )
        );
        assert_eq!(
            check(|d| d.spec.template.spec.env = env(&[""])),
            Err("spec.template.spec.env[0].name: must not be empty".into())
        );
        assert_eq!(
            check(|d| d.spec.template.spec.env = env(&["A", "B", "A"])),
            Err(
                "spec.template.spec.env[2].name: duplicate name \"A\", already set by env[0]"
                    .into()
            )
        );
    }

    #[test]
    fn checks_resources() {
        assert_eq!(
            check(|d| {
                let resources = &mut d.spec.template.spec.resources;
                resources.requests.cpu = quantity("250m");
                resources.requests.memory = quantity("64Mi");
                resources.limits.cpu = quantity("1");
                resources.limits.memory = quantity("64Mi");
            }),
            Ok(())
        );
        assert_eq!(
            check(|d| d.spec.template.spec.resources.limits.memory = quantity("64MB")),
            Err(
                "spec.template.spec.resources.limits.memory: invalid quantity \"64MB\": \
                 unknown suffix \"MB\""
                    .into()
            )
        );
        assert!(
            check(|d| d.spec.template.spec.resources.requests.cpu = quantity("-1"))
                .is_err_and(|e| e.starts_with("spec.template.spec.resources.requests.cpu: "))
        );
        assert_eq!(
            check(|d| {
                let resources = &mut d.spec.template.spec.resources;
                resources.requests.cpu = quantity("2");
                resources.limits.cpu = quantity("500m");
            }),
            Err(
                "spec.template.spec.resources.requests.cpu: must be less than or equal to the \
                 cpu limit of 500m"
                    .into()
            )
        );
        assert_eq!(
            check(|d| {
                let resources = &mut d.spec.template.spec.resources;
                resources.requests.memory = quantity("1Gi");
                resources.limits.memory = quantity("1G");
            }),
            Err(
                "spec.template.spec.resources.requests.memory: must be less than or equal to \
                 the memory limit of 1G"
                    .into()
            )
        );
    }

    #[test]
    fn checks_timeout_seconds() {
        for seconds in [1, 30, MAX_TIMEOUT_SECONDS] {
            assert_eq!(
                check(|d| d.spec.template.spec.timeout_seconds = Some(seconds)),
                Ok(())
            );
        }
        assert_eq!(
            check(|d| d.spec.template.spec.timeout_seconds = Some(0)),
            Err("spec.template.spec.timeoutSeconds: must be between 1 and 3600, not 0".into())
        );
        assert!(
            check(|d| d.spec.template.spec.timeout_seconds = Some(3601))
                .is_err_and(|e| e.starts_with("spec.template.spec.timeoutSeconds: "))
        );
    }

    #[test]
    fn instances_are_checked_under_spec() {
        let mut instance = Instance {
            api_version: API_VERSION.into(),
            kind: "Instance".into(),
            metadata: ObjectMeta {
                name: "hello-abc12".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: spec(),
            status: InstanceStatus::default(),
        };
        assert_eq!(
            validate_object(&Object::Instance(Box::new(instance.clone()))),
            Ok(())
        );
        instance.spec.resources.requests.cpu = quantity("lots");
        assert!(
            validate_object(&Object::Instance(Box::new(instance)))
                .is_err_and(|e| e.path == "spec.resources.requests.cpu")
        );
    }
}
