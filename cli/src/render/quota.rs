//! How `get` and `describe` show ResourceQuotas and LimitRanges, as
//! kubectl does: a quota's REQUEST and LIMIT columns read `name: used/hard`.

use berth_api::quota::{LimitRange, ResourceQuota};
use berth_api::{Quantity, ResourceList};

/// A quota's REQUEST and LIMIT cells: every `spec.hard` entry as
/// `name: used/hard`, the `limits.*` ones under LIMIT.
pub(super) fn quota_cells(quota: &ResourceQuota) -> [String; 2] {
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for (name, Quantity(hard)) in &quota.spec.hard {
        let used = quota
            .status
            .used
            .get(name)
            .map_or("0", |Quantity(used)| used.as_str());
        let cell = format!("{name}: {used}/{hard}");
        if name.starts_with("limits.") {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    [request.join(", "), limit.join(", ")]
}

/// `describe`'s lines for a quota: each resource, its use and ceiling.
pub(super) fn describe_quota(quota: &ResourceQuota) -> Vec<(String, String)> {
    quota
        .spec
        .hard
        .iter()
        .map(|(name, Quantity(hard))| {
            let used = quota
                .status
                .used
                .get(name)
                .map_or("0", |Quantity(used)| used.as_str());
            (name.clone(), format!("{used} used of {hard}"))
        })
        .collect()
}

fn list(resources: &ResourceList) -> String {
    let pairs: Vec<String> = [("cpu", &resources.cpu), ("memory", &resources.memory)]
        .into_iter()
        .filter_map(|(name, q)| q.as_ref().map(|Quantity(q)| format!("{name}={q}")))
        .collect();
    if pairs.is_empty() {
        "-".to_owned()
    } else {
        pairs.join(", ")
    }
}

/// `describe`'s lines for a LimitRange: each entry's type and bounds.
pub(super) fn describe_limit_range(range: &LimitRange) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for item in &range.spec.limits {
        lines.push(("Type".to_owned(), format!("{:?}", item.type_)));
        lines.push(("  Min".to_owned(), list(&item.min)));
        lines.push(("  Max".to_owned(), list(&item.max)));
        lines.push(("  Default Request".to_owned(), list(&item.default_request)));
        lines.push(("  Default Limit".to_owned(), list(&item.default)));
    }
    lines
}
