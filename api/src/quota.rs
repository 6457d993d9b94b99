//! `ResourceQuota` and `LimitRange`: a namespace's ceiling and its
//! per-instance defaults, as Kubernetes' kinds of the same names.
//!
//! A [`ResourceQuota`] caps what one namespace may ask for: `spec.hard`
//! maps a resource name (see [`QuotaResource`]) to a quantity. The
//! scheduler refuses, at admission, any apply or scale that would take the
//! namespace past one (`exceeded quota: NAME, requested: ..., used: ...,
//! limited: ...`), and fills in `status.hard` and `status.used` when the
//! quota is read. A [`LimitRange`] gives templates without explicit
//! resources their requests and limits (`default`, `defaultRequest`) and
//! bounds them (`min`, `max`).
//!
//! This module holds the types, the resource names and validation; the
//! arithmetic and the admission checks live in the scheduler
//! (`scheduler/src/quota.rs`). Why instances are charged by what their
//! workloads declare: `docs/decisions/0034-quotas-and-limit-ranges.md`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::objects::{Kind, Quantity, ResourceList};
use crate::quantity::{self, QuantityError};
use crate::validate::FieldError;

/// A namespace's ceiling on resources and object counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuota {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `ResourceQuota`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the namespace may use.
    #[serde(default)]
    pub spec: ResourceQuotaSpec,
    /// What it uses now; filled in by the scheduler when read.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: ResourceQuotaStatus,
}

/// `ResourceQuota.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuotaSpec {
    /// Resource name (`requests.memory`, `count/instances`) to its ceiling.
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
}

/// `ResourceQuota.status`: the ceilings and the current use, by the same
/// names as `spec.hard`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuotaStatus {
    /// The ceilings enforced, as `spec.hard`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, Quantity>,
    /// What the namespace uses of each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, Quantity>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// What a `spec.hard` key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaResource {
    /// `requests.cpu` or `cpu`: millicores requested by instances.
    RequestsCpu,
    /// `requests.memory` or `memory`: bytes requested by instances.
    RequestsMemory,
    /// `limits.cpu`: millicores of instances' limits.
    LimitsCpu,
    /// `limits.memory`: bytes of instances' limits.
    LimitsMemory,
    /// `count/instances`, `instances` or `pods`: how many instances.
    Instances,
    /// `count/<plural>`: how many objects of a kind.
    Count(Kind),
}

/// The names `spec.hard` takes, in the order error messages list them.
pub const QUOTA_RESOURCE_NAMES: [&str; 15] = [
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "cpu",
    "memory",
    "count/instances",
    "instances",
    "pods",
    "count/deployments",
    "count/jobs",
    "count/cronjobs",
    "count/daemonsets",
    "count/services",
    "count/ingresses",
];

impl QuotaResource {
    /// Reads a `spec.hard` key; `None` for a name berth does not track.
    pub fn parse(name: &str) -> Option<QuotaResource> {
        Some(match name {
            "requests.cpu" | "cpu" => QuotaResource::RequestsCpu,
            "requests.memory" | "memory" => QuotaResource::RequestsMemory,
            "limits.cpu" => QuotaResource::LimitsCpu,
            "limits.memory" => QuotaResource::LimitsMemory,
            "count/instances" | "instances" | "pods" => QuotaResource::Instances,
            "count/deployments" => QuotaResource::Count(Kind::Deployment),
            "count/jobs" => QuotaResource::Count(Kind::Job),
            "count/cronjobs" => QuotaResource::Count(Kind::CronJob),
            "count/daemonsets" => QuotaResource::Count(Kind::DaemonSet),
            "count/services" => QuotaResource::Count(Kind::Service),
            "count/ingresses" => QuotaResource::Count(Kind::Ingress),
            _ => return None,
        })
    }

    /// Reads a quantity of this resource in base units: millicores, bytes
    /// or a whole count.
    pub fn parse_amount(self, text: &str) -> Result<u64, QuantityError> {
        match self {
            QuotaResource::RequestsCpu | QuotaResource::LimitsCpu => quantity::parse_cpu(text),
            QuotaResource::RequestsMemory | QuotaResource::LimitsMemory => {
                quantity::parse_memory(text)
            }
            QuotaResource::Instances | QuotaResource::Count(_) => parse_count(text),
        }
    }

    /// Writes an amount in base units as Kubernetes prints it: `500m`,
    /// `1Gi`, `3`.
    pub fn format(self, amount: u64) -> String {
        match self {
            QuotaResource::RequestsCpu | QuotaResource::LimitsCpu => quantity::format_cpu(amount),
            QuotaResource::RequestsMemory | QuotaResource::LimitsMemory => {
                quantity::format_memory(amount)
            }
            QuotaResource::Instances | QuotaResource::Count(_) => amount.to_string(),
        }
    }
}

/// A count: a whole, non-negative number without suffix.
fn parse_count(text: &str) -> Result<u64, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    if text.starts_with('-') {
        return Err(QuantityError::Negative(text.to_owned()));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::Malformed {
            quantity: text.to_owned(),
            expected: "a whole number (\"10\")",
        });
    }
    text.parse()
        .map_err(|_| QuantityError::TooLarge(text.to_owned()))
}

/// Checks a quota's spec: every key is a name berth tracks and every value
/// a quantity of that resource.
pub(crate) fn validate_quota_spec(spec: &ResourceQuotaSpec) -> Result<(), FieldError> {
    for (name, Quantity(text)) in &spec.hard {
        let path = format!("spec.hard.{name}");
        let Some(resource) = QuotaResource::parse(name) else {
            return Err(FieldError::new(
                path,
                format!(
                    "unsupported resource {name:?}: expected one of {}",
                    QUOTA_RESOURCE_NAMES.join(", ")
                ),
            ));
        };
        resource
            .parse_amount(text)
            .map_err(|e| FieldError::new(path, e.to_string()))?;
    }
    Ok(())
}

/// Defaults and bounds for the instances of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRange {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `LimitRange`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The limits.
    #[serde(default)]
    pub spec: LimitRangeSpec,
}

/// `LimitRange.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRangeSpec {
    /// One entry per type; berth has one type of workload unit.
    #[serde(default)]
    pub limits: Vec<LimitRangeItem>,
}

/// What a [`LimitRangeItem`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum LimitType {
    /// Each instance's resources.
    #[default]
    Instance,
    /// Kubernetes' name, accepted so that manifests carry over: an
    /// instance is berth's container.
    Container,
}

/// One entry of `LimitRange.spec.limits`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRangeItem {
    /// `Instance` (or `Container`).
    #[serde(rename = "type", default)]
    pub type_: LimitType,
    /// Limits given to templates that set none; falls back to `max`.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub default: ResourceList,
    /// Requests given to templates that set none; falls back to `default`,
    /// then `min`.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub default_request: ResourceList,
    /// Most an instance may request or be limited to.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub max: ResourceList,
    /// Least an instance may request.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub min: ResourceList,
}

/// A resource list in base units: millicores and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    /// CPU in millicores.
    pub cpu: Option<u64>,
    /// Memory in bytes.
    pub memory: Option<u64>,
}

impl Amounts {
    /// Parses a list; `path` names it in the error.
    pub fn parse(path: &str, list: &ResourceList) -> Result<Amounts, FieldError> {
        let cpu = list
            .cpu
            .as_ref()
            .map(|Quantity(text)| quantity::parse_cpu(text))
            .transpose()
            .map_err(|e| FieldError::new(format!("{path}.cpu"), e.to_string()))?;
        let memory = list
            .memory
            .as_ref()
            .map(|Quantity(text)| quantity::parse_memory(text))
            .transpose()
            .map_err(|e| FieldError::new(format!("{path}.memory"), e.to_string()))?;
        Ok(Amounts { cpu, memory })
    }
}

/// Checks each entry: quantities parse, `min <= defaultRequest <= default
/// <= max` where given.
pub(crate) fn validate_limit_range_spec(spec: &LimitRangeSpec) -> Result<(), FieldError> {
    for (index, item) in spec.limits.iter().enumerate() {
        let path = format!("spec.limits[{index}]");
        let min = Amounts::parse(&format!("{path}.min"), &item.min)?;
        let max = Amounts::parse(&format!("{path}.max"), &item.max)?;
        let default = Amounts::parse(&format!("{path}.default"), &item.default)?;
        let request = Amounts::parse(&format!("{path}.defaultRequest"), &item.default_request)?;
        let pairs = [
            ("min", min, "defaultRequest", request),
            ("defaultRequest", request, "default", default),
            ("default", default, "max", max),
            ("min", min, "default", default),
            ("defaultRequest", request, "max", max),
            ("min", min, "max", max),
        ];
        for (low_name, low, high_name, high) in pairs {
            for (resource, low, high) in [
                ("cpu", low.cpu, high.cpu),
                ("memory", low.memory, high.memory),
            ] {
                if let (Some(low), Some(high)) = (low, high)
                    && low > high
                {
                    return Err(FieldError::new(
                        format!("{path}.{low_name}.{resource}"),
                        format!("must be less than or equal to {high_name}.{resource}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
