//! The authorizer: whether a user may make a request, from the Roles,
//! ClusterRoles and their bindings in the store. Default deny: a request
//! is allowed only if some rule of some role bound to the user allows
//! each of its [`Attributes`].
//!
//! A `ClusterRoleBinding` grants its ClusterRole everywhere: in every
//! namespace, across all namespaces and on cluster-scoped resources. A
//! `RoleBinding` grants its Role (of its own namespace) or ClusterRole
//! only on namespaced resources of its namespace; so
//! `berth create rolebinding alice-admin --clusterrole admin --user alice
//! -n team-a` makes alice admin of team-a and of nothing else.
//!
//! [`attributes`] maps each request to what it does, `(verb, resource,
//! namespace, name)`, as the request's handlers will resolve it (an unset
//! namespace of a named object is `default`). The sessions, tokens and
//! certificates around it are in [`crate::users`]; the reasons in
//! `docs/decisions/0035-users-tokens-and-rbac.md`.

#[cfg(test)]
mod tests;

use berth_api::rbac::{Resource, Role, RoleBinding};
use berth_api::wire::{Request, TopKind};
use berth_api::{DEFAULT_NAMESPACE, Kind, Object};

use crate::store::{Store, StoreError};

/// What a request does, as a rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// A verb of [`berth_api::rbac::VERBS`].
    pub verb: &'static str,
    /// What it acts on.
    pub resource: Resource,
    /// The namespace of a namespaced resource; `None` for all namespaces
    /// (or a cluster-scoped resource).
    pub namespace: Option<String>,
    /// The object, when the request names one.
    pub name: Option<String>,
}

impl Attributes {
    fn new(verb: &'static str, kind: Kind, namespace: Option<&str>, name: Option<&str>) -> Self {
        Attributes::of(verb, Resource::Kind(kind), namespace, name)
    }

    /// What a request does to `resource`.
    pub fn of(
        verb: &'static str,
        resource: Resource,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let namespace = if resource.is_namespaced() {
            namespace.map(str::to_owned)
        } else {
            None
        };
        Attributes {
            verb,
            resource,
            namespace,
            name: name.map(str::to_owned),
        }
    }

    /// A named namespaced object's namespace as the handlers resolve it.
    fn named(verb: &'static str, kind: Kind, namespace: Option<&str>, name: &str) -> Self {
        let namespace = namespace.unwrap_or(DEFAULT_NAMESPACE);
        Attributes::new(verb, kind, Some(namespace), Some(name))
    }
}

/// What authorization a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// None beyond being an authenticated user (blobs are addressed by
    /// digest; a user's own token; requests only nodes may send, which
    /// dispatch refuses).
    Nothing,
    /// Every one of these.
    All(Vec<Attributes>),
    /// A request this authorizer does not map: cluster admins only.
    Unrestricted,
}

/// What `user`'s `request` needs; `exists` tells whether an object is
/// stored (an apply of it is an `update`, else a `create`).
pub fn attributes(user: &str, request: &Request, exists: impl Fn(&Object) -> bool) -> Need {
    let one = |attributes| Need::All(vec![attributes]);
    match request {
        Request::Apply { objects } => Need::All(
            objects
                .iter()
                // What does not decode is refused by admission, and with
                // it the whole apply.
                .filter_map(|bytes| Object::from_json(bytes).ok())
                .map(|object| {
                    let verb = if exists(&object) { "update" } else { "create" };
                    Attributes::new(
                        verb,
                        object.kind(),
                        object.namespace(),
                        Some(&object.metadata().name),
                    )
                })
                .collect(),
        ),
        Request::Get {
            kind,
            namespace,
            name: Some(name),
        } => one(Attributes::named("get", *kind, namespace.as_deref(), name)),
        Request::Get {
            kind,
            namespace,
            name: None,
        } => one(Attributes::new("list", *kind, namespace.as_deref(), None)),
        Request::Delete {
            kind,
            namespace,
            name,
        } => one(Attributes::named(
            "delete",
            *kind,
            namespace.as_deref(),
            name,
        )),
        Request::PatchDeployment {
            namespace, name, ..
        } => one(Attributes::named(
            "update",
            Kind::Deployment,
            Some(namespace),
            name,
        )),
        Request::PatchNode { name, .. } => {
            one(Attributes::new("update", Kind::Node, None, Some(name)))
        }
        Request::Evict { namespace, name } => one(Attributes::named(
            "delete",
            Kind::Instance,
            Some(namespace),
            name,
        )),
        Request::Logs {
            namespace,
            instance,
            deployment,
            follow,
            ..
        } => {
            let verb = if *follow { "watch" } else { "get" };
            let (kind, name) = match (instance, deployment) {
                (Some(instance), _) => (Kind::Instance, instance),
                (None, Some(deployment)) => (Kind::Deployment, deployment),
                // The handler refuses it; nothing to read.
                (None, None) => return Need::Nothing,
            };
            one(Attributes::named(verb, kind, Some(namespace), name))
        }
        Request::Top {
            what: TopKind::Nodes,
            ..
        } => one(Attributes::new("list", Kind::Node, None, None)),
        Request::Top {
            what: TopKind::Instances,
            namespace,
        } => one(Attributes::new(
            "list",
            Kind::Instance,
            namespace.as_deref(),
            None,
        )),
        Request::Events {
            namespace, watch, ..
        } => {
            let verb = if *watch { "watch" } else { "list" };
            one(Attributes::new(
                verb,
                Kind::Event,
                namespace.as_deref(),
                None,
            ))
        }
        // Secrets' values: `get` or `list` of secrets, which the built-in
        // `view` role does not grant.
        Request::RevealSecrets {
            namespace,
            name: Some(name),
        } => one(Attributes::named(
            "get",
            Kind::Secret,
            namespace.as_deref(),
            name,
        )),
        Request::RevealSecrets {
            namespace,
            name: None,
        } => one(Attributes::new(
            "list",
            Kind::Secret,
            namespace.as_deref(),
            None,
        )),
        Request::IssueCertificate { user: subject, .. } => one(Attributes::of(
            "create",
            Resource::Users,
            None,
            Some(subject),
        )),
        Request::RevokeUser { user: subject } => one(Attributes::of(
            "delete",
            Resource::Users,
            None,
            Some(subject),
        )),
        // A token for oneself (an empty user is the caller).
        Request::CreateToken { user: subject, .. } if subject.is_empty() || subject == user => {
            Need::Nothing
        }
        Request::CreateToken { user: subject, .. } => one(Attributes::of(
            "create",
            Resource::Tokens,
            None,
            Some(subject),
        )),
        Request::CanI {
            as_user: Some(subject),
            ..
        } => one(Attributes::of(
            "impersonate",
            Resource::Users,
            None,
            Some(subject),
        )),
        Request::CanI { as_user: None, .. }
        | Request::PutBlob { .. }
        | Request::GetBlob { .. }
        | Request::Authenticate { .. }
        | Request::Join { .. }
        | Request::Register(_)
        | Request::Watch
        | Request::Report(_)
        | Request::ReadLogs { .. }
        | Request::Wake { .. } => Need::Nothing,
        #[allow(unreachable_patterns)]
        _ => Need::Unrestricted,
    }
}

/// Every role and binding, read once per decision.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Roles, of every namespace.
    pub roles: Vec<Role>,
    /// ClusterRoles.
    pub cluster_roles: Vec<Role>,
    /// RoleBindings, of every namespace.
    pub bindings: Vec<RoleBinding>,
    /// ClusterRoleBindings.
    pub cluster_bindings: Vec<RoleBinding>,
}

impl Policy {
    /// Reads the policy from the store.
    pub fn load(store: &Store) -> Result<Policy, StoreError> {
        let mut policy = Policy::default();
        for kind in [
            Kind::Role,
            Kind::ClusterRole,
            Kind::RoleBinding,
            Kind::ClusterRoleBinding,
        ] {
            for object in store.list(kind, None)? {
                match object {
                    Object::Role(role) => policy.roles.push(*role),
                    Object::ClusterRole(role) => policy.cluster_roles.push(*role),
                    Object::RoleBinding(binding) => policy.bindings.push(*binding),
                    Object::ClusterRoleBinding(binding) => {
                        policy.cluster_bindings.push(*binding);
                    }
                    _ => {}
                }
            }
        }
        Ok(policy)
    }

    fn cluster_role(&self, name: &str) -> Option<&Role> {
        self.cluster_roles.iter().find(|r| r.metadata.name == name)
    }

    /// The roles bound to `user` everywhere.
    fn cluster_grants<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a Role> + 'a {
        self.cluster_bindings
            .iter()
            .filter(move |b| binds(b, user))
            .filter_map(|b| self.cluster_role(&b.role_ref.name))
    }

    /// Whether `user` may do what `attributes` say.
    pub fn allows(&self, user: &str, attributes: &Attributes) -> bool {
        let Attributes {
            verb,
            resource,
            namespace,
            name,
        } = attributes;
        let role_allows = |role: &Role| {
            role.rules
                .iter()
                .any(|r| r.allows(verb, *resource, name.as_deref()))
        };
        if self.cluster_grants(user).any(role_allows) {
            return true;
        }
        let Some(namespace) = namespace.as_deref().filter(|_| resource.is_namespaced()) else {
            return false;
        };
        self.bindings
            .iter()
            .filter(|b| b.metadata.namespace_or_default() == namespace && binds(b, user))
            .filter_map(|b| match b.role_ref.kind.as_str() {
                "ClusterRole" => self.cluster_role(&b.role_ref.name),
                _ => self.roles.iter().find(|r| {
                    r.metadata.name == b.role_ref.name
                        && r.metadata.namespace_or_default() == namespace
                }),
            })
            .any(role_allows)
    }

    /// Whether `user` holds every verb on every resource everywhere.
    pub fn unrestricted(&self, user: &str) -> bool {
        self.cluster_grants(user).any(|role| {
            role.rules.iter().any(|r| {
                r.verbs.iter().any(|v| v == "*")
                    && r.resources.iter().any(|v| v == "*")
                    && r.resource_names.is_empty()
            })
        })
    }

    /// `None` if `user` may make a request that needs `need`, else the
    /// message saying what is refused.
    pub fn check(&self, user: &str, need: &Need) -> Option<String> {
        match need {
            Need::Nothing => None,
            Need::Unrestricted => (!self.unrestricted(user))
                .then(|| format!("user {user:?} cannot make this request: cluster-admin only")),
            Need::All(all) => all
                .iter()
                .find(|attributes| !self.allows(user, attributes))
                .map(|attributes| forbidden(user, attributes)),
        }
    }
}

fn binds(binding: &RoleBinding, user: &str) -> bool {
    binding
        .subjects
        .iter()
        .any(|s| s.kind == "User" && s.name == user)
}

/// `user "alice" cannot delete deployments in namespace "team-b"`.
pub fn forbidden(user: &str, attributes: &Attributes) -> String {
    let Attributes {
        verb,
        resource,
        namespace,
        name,
    } = attributes;
    let what = match name {
        Some(name) => format!("{} {name:?}", resource.plural()),
        None => resource.plural(),
    };
    match namespace {
        Some(namespace) => {
            format!("user {user:?} cannot {verb} {what} in namespace {namespace:?}")
        }
        None if resource.is_namespaced() => {
            format!("user {user:?} cannot {verb} {what} in all namespaces")
        }
        None => format!("user {user:?} cannot {verb} {what} at the cluster scope"),
    }
}

/// The stored Role `old` with the labels and rules of the applied `new`;
/// `None` if neither changed.
pub fn merged_role(old: &Role, new: &Role) -> Option<Box<Role>> {
    if old.rules == new.rules && old.metadata.labels == new.metadata.labels {
        return None;
    }
    let mut updated = old.clone();
    updated.metadata.labels = new.metadata.labels.clone();
    if updated.rules != new.rules {
        updated.rules = new.rules.clone();
        updated.metadata.generation = Some(updated.metadata.generation.unwrap_or(0) + 1);
    }
    Some(Box::new(updated))
}

/// The stored binding `old` with the labels and subjects of the applied
/// `new`; `None` if neither changed. `roleRef` cannot change, as in
/// Kubernetes: delete the binding and create it again.
pub fn merged_binding(
    old: &RoleBinding,
    new: &RoleBinding,
) -> Result<Option<Box<RoleBinding>>, String> {
    if old.role_ref.kind != new.role_ref.kind || old.role_ref.name != new.role_ref.name {
        return Err(format!(
            "{} {}: roleRef cannot change (delete the binding and create it again)",
            old.kind, old.metadata.name
        ));
    }
    if old.subjects == new.subjects && old.metadata.labels == new.metadata.labels {
        return Ok(None);
    }
    let mut updated = old.clone();
    updated.metadata.labels = new.metadata.labels.clone();
    if updated.subjects != new.subjects {
        updated.subjects = new.subjects.clone();
        updated.metadata.generation = Some(updated.metadata.generation.unwrap_or(0) + 1);
    }
    Ok(Some(Box::new(updated)))
}
