//! Role-based access control, as Kubernetes' `rbac.authorization.k8s.io/v1`:
//! `Role` (namespaced) and `ClusterRole` hold [`PolicyRule`]s; `RoleBinding`
//! (namespaced) and `ClusterRoleBinding` grant a role to users.
//!
//! A rule names `verbs` ([`VERBS`]), `resources` and optionally
//! `resourceNames`. Resources are Kubernetes' lowercase plural names
//! (`deployments`, `instances`, `rolebindings`); any name the command line
//! takes for a kind (`deploy`, `Deployment`) is accepted too, and `kinds`
//! is read as a synonym of `resources`. Two resources are not kinds:
//! `users` (certificates: `create`, `delete`, and `impersonate` for
//! `berth auth can-i --as`) and `tokens` (for another user). `*` matches
//! every verb or resource. A rule with `resourceNames` matches only
//! requests naming one of them, so never `list`.
//!
//! The decision itself, default deny, is the scheduler's
//! (`scheduler/src/rbac.rs`); why in
//! `docs/decisions/0035-users-tokens-and-rbac.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::objects::Kind;
use crate::validate::FieldError;

/// The verbs a rule may grant.
pub const VERBS: [&str; 7] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "delete",
    "impersonate",
];

/// The ClusterRole bound to the `admin` user at start: every verb on
/// everything.
pub const CLUSTER_ADMIN: &str = "cluster-admin";

/// The ClusterRole that, bound in a namespace, makes a tenant admin of it.
pub const NAMESPACE_ADMIN: &str = "admin";

/// The read-only ClusterRole.
pub const VIEW: &str = "view";

/// A `Role` or a `ClusterRole`: the struct is shared; `kind` tells them
/// apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// `Role` or `ClusterRole`.
    pub kind: String,
    /// Name (and namespace, for a Role) and labels.
    pub metadata: ObjectMeta,
    /// What the role allows; nothing else is.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// One rule of a role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// Kubernetes' API groups; read and ignored (berth has one group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Verbs of [`VERBS`], or `*`.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Lowercase plural resources (`deployments`), or `*`.
    #[serde(default, alias = "kinds")]
    pub resources: Vec<String>,
    /// Only these objects, by name; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// A `RoleBinding` or a `ClusterRoleBinding`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBinding {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// `RoleBinding` or `ClusterRoleBinding`.
    pub kind: String,
    /// Name (and namespace, for a RoleBinding) and labels.
    pub metadata: ObjectMeta,
    /// The role granted.
    pub role_ref: RoleRef,
    /// Who it is granted to.
    #[serde(default)]
    pub subjects: Vec<RbacSubject>,
}

/// The role a binding grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    /// Kubernetes' API group; read and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// `Role` (of the binding's namespace) or `ClusterRole`.
    pub kind: String,
    /// The role's name.
    pub name: String,
}

/// Who a binding grants its role to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RbacSubject {
    /// Kubernetes' API group; read and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Always `User`.
    pub kind: String,
    /// The user's name.
    pub name: String,
}

/// What a request acts on: a kind, or one of the two resources that are
/// not objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Objects of a kind.
    Kind(Kind),
    /// Users' certificates.
    Users,
    /// Bearer tokens.
    Tokens,
}

impl Resource {
    /// Kubernetes' lowercase plural name: `deployments`, `ingresses`.
    pub fn plural(self) -> String {
        match self {
            Resource::Kind(kind) => plural(kind.as_str()),
            Resource::Users => "users".into(),
            Resource::Tokens => "tokens".into(),
        }
    }

    /// Whether the resource lives in a namespace.
    pub fn is_namespaced(self) -> bool {
        matches!(self, Resource::Kind(kind) if kind.is_namespaced())
    }

    /// Parses a resource as a rule or `berth auth can-i` names it.
    pub fn parse(name: &str) -> Option<Resource> {
        match name.to_ascii_lowercase().as_str() {
            "user" | "users" => Some(Resource::Users),
            "token" | "tokens" => Some(Resource::Tokens),
            lower => Kind::from_cli_name(lower)
                .or_else(|| {
                    Kind::ALL
                        .into_iter()
                        .find(|kind| plural(kind.as_str()) == lower || kind.as_str() == name)
                })
                .map(Resource::Kind),
        }
    }
}

/// `Deployment` to `deployments`, `Ingress` to `ingresses`,
/// `NetworkPolicy` to `networkpolicies`.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

impl PolicyRule {
    /// Whether the rule allows `verb` on `resource`, for the object `name`
    /// when the request names one.
    pub fn allows(&self, verb: &str, resource: Resource, name: Option<&str>) -> bool {
        let verb_ok = self.verbs.iter().any(|v| v == "*" || v == verb);
        let resource_ok = self
            .resources
            .iter()
            .any(|r| r == "*" || Resource::parse(r) == Some(resource));
        let name_ok = self.resource_names.is_empty()
            || name.is_some_and(|name| self.resource_names.iter().any(|n| n == name));
        verb_ok && resource_ok && name_ok
    }
}

/// A rule of every verb on every resource.
fn everything() -> PolicyRule {
    PolicyRule {
        verbs: vec!["*".into()],
        resources: vec!["*".into()],
        ..PolicyRule::default()
    }
}

/// The ClusterRoles the scheduler creates at start when absent:
/// `cluster-admin` (everything), `admin` (everything, meant to be bound
/// in one namespace) and `view` (get, list and watch of every kind but
/// Secrets).
pub fn builtin_cluster_roles() -> Vec<Role> {
    let role = |name: &str, rules: Vec<PolicyRule>| Role {
        api_version: crate::API_VERSION.into(),
        kind: Kind::ClusterRole.as_str().into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        },
        rules,
    };
    vec![
        role(CLUSTER_ADMIN, vec![everything()]),
        role(NAMESPACE_ADMIN, vec![everything()]),
        role(
            VIEW,
            vec![PolicyRule {
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                // Every kind but Secrets, as Kubernetes' `view`.
                resources: Kind::ALL
                    .into_iter()
                    .filter(|kind| *kind != Kind::Secret)
                    .map(|kind| Resource::Kind(kind).plural())
                    .collect(),
                ..PolicyRule::default()
            }],
        ),
    ]
}

/// Checks a role's rules.
pub fn validate_rules(rules: &[PolicyRule]) -> Result<(), FieldError> {
    for (index, rule) in rules.iter().enumerate() {
        let path = format!("rules[{index}]");
        if rule.verbs.is_empty() {
            return Err(FieldError::new(
                format!("{path}.verbs"),
                "must not be empty",
            ));
        }
        if let Some(verb) = rule
            .verbs
            .iter()
            .find(|v| *v != "*" && !VERBS.contains(&v.as_str()))
        {
            return Err(FieldError::new(
                format!("{path}.verbs"),
                format!(
                    "unknown verb {verb:?}, expected one of {}",
                    VERBS.join(", ")
                ),
            ));
        }
        if rule.resources.is_empty() {
            return Err(FieldError::new(
                format!("{path}.resources"),
                "must not be empty",
            ));
        }
        if let Some(resource) = rule
            .resources
            .iter()
            .find(|r| *r != "*" && Resource::parse(r).is_none())
        {
            return Err(FieldError::new(
                format!("{path}.resources"),
                format!("unknown resource {resource:?}"),
            ));
        }
    }
    Ok(())
}

/// Checks a binding: a `ClusterRoleBinding` grants only a `ClusterRole`;
/// subjects are named users.
pub fn validate_binding(binding: &RoleBinding, cluster: bool) -> Result<(), FieldError> {
    let allowed: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !allowed.contains(&binding.role_ref.kind.as_str()) {
        return Err(FieldError::new(
            "roleRef.kind",
            format!("must be one of {}", allowed.join(", ")),
        ));
    }
    if binding.role_ref.name.is_empty() {
        return Err(FieldError::new("roleRef.name", "must not be empty"));
    }
    for (index, subject) in binding.subjects.iter().enumerate() {
        if subject.kind != "User" {
            return Err(FieldError::new(
                format!("subjects[{index}].kind"),
                "must be \"User\"",
            ));
        }
        if subject.name.is_empty() {
            return Err(FieldError::new(
                format!("subjects[{index}].name"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_parsing() {
        assert_eq!(Resource::Kind(Kind::Ingress).plural(), "ingresses");
        assert_eq!(Resource::Kind(Kind::Deployment).plural(), "deployments");
        assert_eq!(Resource::Kind(Kind::RoleBinding).plural(), "rolebindings");
        assert_eq!(
            Resource::parse("deployments"),
            Some(Resource::Kind(Kind::Deployment))
        );
        assert_eq!(
            Resource::parse("Deployment"),
            Some(Resource::Kind(Kind::Deployment))
        );
        assert_eq!(
            Resource::parse("clusterrolebindings"),
            Some(Resource::Kind(Kind::ClusterRoleBinding))
        );
        assert_eq!(Resource::parse("users"), Some(Resource::Users));
        assert_eq!(Resource::parse("widgets"), None);
    }

    #[test]
    fn rules_match_verbs_resources_and_names() {
        let rule = PolicyRule {
            verbs: vec!["get".into()],
            resources: vec!["deployments".into()],
            resource_names: vec!["web".into()],
            ..PolicyRule::default()
        };
        let deployments = Resource::Kind(Kind::Deployment);
        assert!(rule.allows("get", deployments, Some("web")));
        assert!(!rule.allows("get", deployments, Some("db")));
        assert!(!rule.allows("get", deployments, None));
        assert!(!rule.allows("delete", deployments, Some("web")));
        assert!(!rule.allows("get", Resource::Kind(Kind::Service), Some("web")));
        assert!(everything().allows("impersonate", Resource::Users, None));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = PolicyRule {
            verbs: vec!["destroy".into()],
            resources: vec!["deployments".into()],
            ..PolicyRule::default()
        };
        let e = validate_rules(&[bad]).unwrap_err();
        assert!(e.to_string().contains("rules[0].verbs"), "{e}");
        let unknown = PolicyRule {
            verbs: vec!["get".into()],
            resources: vec!["widgets".into()],
            ..PolicyRule::default()
        };
        let e = validate_rules(&[unknown]).unwrap_err();
        assert!(e.to_string().contains("unknown resource"), "{e}");
    }
}
