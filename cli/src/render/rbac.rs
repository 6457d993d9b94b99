//! How `get` and `describe` show Roles, ClusterRoles and their bindings,
//! as kubectl does, and what `berth user create|cert` prints.

use std::path::Path;

use berth_api::rbac::{Role, RoleBinding};

use crate::commands::user::Issued;

/// A binding's ROLE cell: `ClusterRole/admin`.
pub(super) fn role_cell(binding: &RoleBinding) -> String {
    format!("{}/{}", binding.role_ref.kind, binding.role_ref.name)
}

/// A binding's USERS cell.
pub(super) fn users_cell(binding: &RoleBinding) -> String {
    let users: Vec<&str> = binding.subjects.iter().map(|s| s.name.as_str()).collect();
    users.join(",")
}

/// `describe`'s lines for a role: one per rule.
pub(super) fn describe_role(role: &Role) -> Vec<(String, String)> {
    role.rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let mut text = format!(
                "verbs: {}; resources: {}",
                rule.verbs.join(","),
                rule.resources.join(",")
            );
            if !rule.resource_names.is_empty() {
                text.push_str(&format!("; names: {}", rule.resource_names.join(",")));
            }
            (format!("Rule {index}"), text)
        })
        .collect()
}

/// `describe`'s lines for a binding.
pub(super) fn describe_binding(binding: &RoleBinding) -> Vec<(String, String)> {
    vec![
        ("Role".into(), role_cell(binding)),
        ("Users".into(), users_cell(binding)),
    ]
}

/// `user/alice created: context "alice" written to PATH (certificate
/// expires ...)`.
pub fn issued(issued: &Issued, config: &Path) -> String {
    let action = if issued.created {
        "created"
    } else {
        "certificate issued"
    };
    format!(
        "user/{} {action}: context {:?} written to {} (certificate expires {})\n",
        issued.user,
        issued.context,
        config.display(),
        issued.not_after
    )
}
