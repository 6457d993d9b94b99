//! LimitRange at admission: templates without explicit resources get the
//! namespace's defaults, then every template must lie within its bounds.
//!
//! Defaulting follows Kubernetes, for cpu and memory each: a request left
//! unset takes the template's own limit if it sets one; a limit left unset
//! takes the range's `default` (or its `max`); a request still unset takes
//! `defaultRequest` (or `default`, or `max`, or `min`). With several
//! LimitRanges or entries, the first (by name, then order) that gives a
//! value wins. Bounds: `min` <= request and request, limit <= `max`.

use berth_api::quota::{Amounts, LimitRange, LimitRangeItem};
use berth_api::validate::validate_object;
use berth_api::wire::{ApiError, ErrorCode};
use berth_api::{Kind, Object, Quantity, ResourceList, Resources};

use crate::store::Txn;

/// One resource of a list: cpu or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    const BOTH: [Resource; 2] = [Resource::Cpu, Resource::Memory];

    fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    fn of(self, list: &ResourceList) -> &Option<Quantity> {
        match self {
            Resource::Cpu => &list.cpu,
            Resource::Memory => &list.memory,
        }
    }

    fn of_mut(self, list: &mut ResourceList) -> &mut Option<Quantity> {
        match self {
            Resource::Cpu => &mut list.cpu,
            Resource::Memory => &mut list.memory,
        }
    }

    fn amount(self, amounts: Amounts) -> Option<u64> {
        match self {
            Resource::Cpu => amounts.cpu,
            Resource::Memory => amounts.memory,
        }
    }

    fn format(self, amount: u64) -> String {
        match self {
            Resource::Cpu => berth_api::quantity::format_cpu(amount),
            Resource::Memory => berth_api::quantity::format_memory(amount),
        }
    }
}

/// The limit an entry gives a template that sets none: `default`, else
/// `max`.
fn default_limit(item: &LimitRangeItem, resource: Resource) -> Option<&Quantity> {
    resource
        .of(&item.default)
        .as_ref()
        .or(resource.of(&item.max).as_ref())
}

/// The request an entry gives a template that sets none:
/// `defaultRequest`, else the default limit, else `min`.
fn default_request(item: &LimitRangeItem, resource: Resource) -> Option<&Quantity> {
    resource
        .of(&item.default_request)
        .as_ref()
        .or(default_limit(item, resource))
        .or(resource.of(&item.min).as_ref())
}

/// Fills in the requests and limits `resources` leaves unset from
/// `ranges` (sorted by name), as the module documentation says.
pub fn apply_defaults(ranges: &[LimitRange], resources: &mut Resources) {
    let items: Vec<&LimitRangeItem> = ranges.iter().flat_map(|r| &r.spec.limits).collect();
    for resource in Resource::BOTH {
        if resource.of(&resources.requests).is_none()
            && let Some(limit) = resource.of(&resources.limits).clone()
        {
            *resource.of_mut(&mut resources.requests) = Some(limit);
        }
        if resource.of(&resources.limits).is_none() {
            *resource.of_mut(&mut resources.limits) = items
                .iter()
                .find_map(|i| default_limit(i, resource))
                .cloned();
        }
        if resource.of(&resources.requests).is_none() {
            *resource.of_mut(&mut resources.requests) = items
                .iter()
                .find_map(|i| default_request(i, resource))
                .cloned();
        }
    }
}

/// Checks `resources` against every entry's `min` and `max`; the error
/// names the field under `path` (the template's spec) and the LimitRange.
pub fn check_bounds(
    ranges: &[LimitRange],
    path: &str,
    resources: &Resources,
) -> Result<(), String> {
    let requests = Amounts::parse("", &resources.requests).unwrap_or_default();
    let limits = Amounts::parse("", &resources.limits).unwrap_or_default();
    for range in ranges {
        let name = &range.metadata.name;
        for item in &range.spec.limits {
            let min = Amounts::parse("", &item.min).unwrap_or_default();
            let max = Amounts::parse("", &item.max).unwrap_or_default();
            for resource in Resource::BOTH {
                let field = resource.name();
                if let Some(min) = resource.amount(min) {
                    match resource.amount(requests) {
                        Some(request) if request < min => {
                            return Err(format!(
                                "{path}.resources.requests.{field}: {} is under the minimum {} of LimitRange {name}",
                                resource.format(request),
                                resource.format(min)
                            ));
                        }
                        None => {
                            return Err(format!(
                                "{path}.resources.requests.{field}: must be set: LimitRange {name} has a minimum of {}",
                                resource.format(min)
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if let Some(max) = resource.amount(max) {
                    for (list, amount) in [
                        ("limits", resource.amount(limits)),
                        ("requests", resource.amount(requests)),
                    ] {
                        match amount {
                            Some(amount) if amount > max => {
                                return Err(format!(
                                    "{path}.resources.{list}.{field}: {} is over the maximum {} of LimitRange {name}",
                                    resource.format(amount),
                                    resource.format(max)
                                ));
                            }
                            None => {
                                return Err(format!(
                                    "{path}.resources.{list}.{field}: must be set: LimitRange {name} has a maximum of {}",
                                    resource.format(max)
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a kind keeps its template's spec, for messages.
fn template_path(kind: Kind) -> &'static str {
    match kind {
        Kind::CronJob => "spec.jobTemplate.spec.template.spec",
        _ => "spec.template.spec",
    }
}

/// Applies the namespace's LimitRanges to `object`'s template: defaults,
/// then bounds, then validation of the result (a default limit may not
/// fall under the template's own request).
pub fn admit(txn: &Txn<'_, '_>, object: &mut Object) -> Result<(), ApiError> {
    let Some(namespace) = object.namespace().map(str::to_owned) else {
        return Ok(());
    };
    if object.template().is_none() {
        return Ok(());
    }
    let ranges: Vec<LimitRange> = txn
        .list(Kind::LimitRange, Some(&namespace))?
        .into_iter()
        .filter_map(|o| match o {
            Object::LimitRange(r) => Some(*r),
            _ => None,
        })
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let path = template_path(object.kind());
    if let Some(template) = object.template_mut() {
        apply_defaults(&ranges, &mut template.spec.resources);
    }
    let described = object.describe();
    let invalid = |message: String| ApiError::new(ErrorCode::Invalid, message);
    if let Some(template) = object.template() {
        check_bounds(&ranges, path, &template.spec.resources)
            .map_err(|e| invalid(format!("{described}: {e}")))?;
    }
    validate_object(object).map_err(|e| invalid(format!("{described}: {e}")))?;
    Ok(())
}
