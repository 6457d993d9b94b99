//! `berth create rolebinding|clusterrolebinding NAME`: a binding in one
//! command, as `kubectl create rolebinding`. A tenant admin of one
//! namespace is `berth create rolebinding NAME --clusterrole admin --user
//! U -n NS`.

use anyhow::{Result, bail};
use berth_api::rbac::{RbacSubject, RoleBinding, RoleRef};
use berth_api::wire::{ApplyOutcome, Request, Response};
use berth_api::{API_VERSION, Kind, Object, ObjectMeta};

use crate::client::Client;

/// A binding to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Its name.
    pub name: String,
    /// Its namespace; `None` makes a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// A ClusterRole to grant.
    pub cluster_role: Option<String>,
    /// A Role (of the namespace) to grant.
    pub role: Option<String>,
    /// The users to grant it to.
    pub users: Vec<String>,
}

/// The binding's object.
pub fn object(binding: &Binding) -> Result<Object> {
    let role_ref = match (&binding.cluster_role, &binding.role, &binding.namespace) {
        (Some(name), None, _) => ("ClusterRole", name),
        (None, Some(name), Some(_)) => ("Role", name),
        (None, Some(_), None) => bail!("a clusterrolebinding grants a --clusterrole only"),
        _ => bail!("give exactly one of --clusterrole and --role"),
    };
    if binding.users.is_empty() {
        bail!("give at least one --user");
    }
    let kind = match binding.namespace {
        Some(_) => Kind::RoleBinding,
        None => Kind::ClusterRoleBinding,
    };
    let object = RoleBinding {
        api_version: API_VERSION.into(),
        kind: kind.as_str().into(),
        metadata: ObjectMeta {
            name: binding.name.clone(),
            namespace: binding.namespace.clone(),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: None,
            kind: role_ref.0.into(),
            name: role_ref.1.clone(),
        },
        subjects: binding
            .users
            .iter()
            .map(|user| RbacSubject {
                api_group: None,
                kind: "User".into(),
                name: user.clone(),
            })
            .collect(),
    };
    Ok(match kind {
        Kind::RoleBinding => Object::RoleBinding(Box::new(object)),
        _ => Object::ClusterRoleBinding(Box::new(object)),
    })
}

/// Creates the binding (an apply: an existing one is updated).
pub async fn create(client: &Client, binding: &Binding) -> Result<Vec<ApplyOutcome>> {
    let object = object(binding)?;
    berth_api::validate::validate_object(&object)
        .map_err(|e| anyhow::anyhow!("{}: {e}", object.describe()))?;
    let request = Request::Apply {
        objects: vec![object.to_json()],
    };
    match client.call(&request).await? {
        Response::Applied(outcomes) => Ok(outcomes),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// `berth create ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Grant a Role or ClusterRole to users in one namespace.
    #[command(after_help = "Examples:\n  \
        berth create rolebinding alice-admin --clusterrole admin --user alice -n team-a\n  \
        berth create rolebinding viewers --clusterrole view --user bob --user carol -n team-a")]
    Rolebinding {
        /// The binding's name.
        name: String,
        /// A ClusterRole to grant (`admin`, `view`, ...).
        #[arg(long)]
        clusterrole: Option<String>,
        /// A Role of the namespace to grant.
        #[arg(long)]
        role: Option<String>,
        /// A user to grant it to (repeatable).
        #[arg(long = "user", required = true)]
        users: Vec<String>,
        /// Namespace (default: `default`).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Grant a ClusterRole to users everywhere.
    #[command(after_help = "Examples:\n  \
        berth create clusterrolebinding ops --clusterrole cluster-admin --user carol")]
    Clusterrolebinding {
        /// The binding's name.
        name: String,
        /// The ClusterRole to grant.
        #[arg(long, required = true)]
        clusterrole: String,
        /// A user to grant it to (repeatable).
        #[arg(long = "user", required = true)]
        users: Vec<String>,
    },
}
