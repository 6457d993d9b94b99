//! `NetworkPolicy`: which callers may reach a namespace's instances
//! through the Service router, as Kubernetes' kind of the same name
//! (ingress rules only).
//!
//! [`NetworkPolicy`] is what users write: `spec.podSelector` picks the
//! instances it guards (empty: all of the namespace), `spec.ingress` lists
//! rules whose `from` entries admit callers by `namespaceSelector` (labels
//! of Namespace objects), `podSelector` (labels of the calling instance,
//! in the policy's namespace unless a namespaceSelector is given too) or
//! both at once (AND). Semantics are Kubernetes': an instance no policy
//! selects accepts every call; one selected by any policy accepts a call
//! only if some selecting policy's rule admits it. A policy with no rules
//! is a default-deny.
//!
//! The scheduler compiles policies into [`NetworkPolicyRoute`]s (namespace
//! selectors resolved to namespace names) and sends them to every node
//! with the assignments; [`decide`] is the check the node's router and
//! peer listener make for each call, given the [`Caller`] and the
//! destination instance's labels. See
//! `docs/decisions/0037-network-and-capability-policy.md`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{LabelSelector, ObjectMeta};
use crate::validate::FieldError;

/// Rules for calls to a namespace's instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `NetworkPolicy`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// Which instances, and who may call them.
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

/// `NetworkPolicy.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// The instances of the namespace the policy guards; empty: all.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Only `Ingress` (the default) is supported.
    #[serde(default)]
    pub policy_types: Vec<String>,
    /// Who may call; none at all: nobody.
    #[serde(default)]
    pub ingress: Vec<NetworkPolicyIngressRule>,
}

/// One ingress rule: callers matching any `from` entry are admitted; no
/// `from` at all admits every caller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    /// The admitted callers.
    #[serde(default)]
    pub from: Vec<NetworkPolicyPeer>,
}

/// Callers by namespace labels, instance labels, or both (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    /// Namespaces whose Namespace object carries these labels; `{}`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Calling instances carrying these labels; `{}`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
}

/// Checks a policy's spec.
pub fn validate_spec(spec: &NetworkPolicySpec) -> Result<(), FieldError> {
    for (i, kind) in spec.policy_types.iter().enumerate() {
        if kind != "Ingress" {
            return Err(FieldError::new(
                format!("spec.policyTypes[{i}]"),
                format!("{kind:?} is not supported: only \"Ingress\""),
            ));
        }
    }
    for (i, rule) in spec.ingress.iter().enumerate() {
        for (j, peer) in rule.from.iter().enumerate() {
            if peer.namespace_selector.is_none() && peer.pod_selector.is_none() {
                return Err(FieldError::new(
                    format!("spec.ingress[{i}].from[{j}]"),
                    "must set namespaceSelector, podSelector or both",
                ));
            }
        }
    }
    Ok(())
}

/// A policy as nodes enforce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicyRoute {
    /// The policy's namespace: the instances it guards are there.
    pub namespace: String,
    /// The policy's name, for refusals.
    pub name: String,
    /// Labels an instance must carry to be guarded; empty: every one.
    pub selector: BTreeMap<String, String>,
    /// Who may call; empty: nobody.
    pub allow: Vec<PeerRule>,
}

/// Callers one `from` entry admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRule {
    /// The namespaces a calling instance may be in; `None`: any.
    pub namespaces: Option<Vec<String>>,
    /// Labels the calling instance must carry; empty: any.
    pub labels: BTreeMap<String, String>,
    /// Whether callers that are no instance are admitted too (an ingress
    /// rule without `from`).
    pub anyone: bool,
}

impl PeerRule {
    /// Whether `caller` is admitted.
    pub fn admits(&self, caller: &Caller) -> bool {
        match caller {
            Caller::Instance { namespace, labels } => {
                self.namespaces
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == namespace))
                    && self
                        .labels
                        .iter()
                        .all(|(key, value)| labels.get(key) == Some(value))
            }
            Caller::Unknown => self.anyone,
        }
    }
}

/// Who makes a call, as far as the node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An instance of the cluster: its namespace and labels.
    Instance {
        /// Its namespace.
        namespace: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
    },
    /// Anything else: a process on a node, a container, a client of the
    /// ingress through an Ingress rule. Only rules admitting every caller
    /// admit it.
    Unknown,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Instance { namespace, labels } if labels.is_empty() => {
                write!(f, "namespace {namespace}")
            }
            Caller::Instance { namespace, labels } => {
                write!(f, "namespace {namespace} with labels ")?;
                let mut first = true;
                for (key, value) in labels {
                    if !first {
                        f.write_str(",")?;
                    }
                    first = false;
                    write!(f, "{key}={value}")?;
                }
                Ok(())
            }
            Caller::Unknown => f.write_str("an unidentified caller"),
        }
    }
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The one policy guarding the destination admits no caller.
    #[error("denied by network policy {policy} in namespace {namespace}: it admits no caller")]
    DenyAll {
        /// The policy's name.
        policy: String,
        /// Its namespace.
        namespace: String,
    },
    /// Policies guard the destination and none admits the caller.
    #[error(
        "no network policy allows calls from {caller} to {target} in namespace {namespace} (guarded by {policies})"
    )]
    NotAllowed {
        /// Who called.
        caller: String,
        /// What was called (a Deployment or Service).
        target: String,
        /// The destination's namespace.
        namespace: String,
        /// The guarding policies, comma-separated.
        policies: String,
    },
}

/// Whether `caller` may call an instance of `namespace` carrying `labels`
/// (`target` names it in a refusal), under `policies` (any namespace's).
pub fn decide(
    policies: &[NetworkPolicyRoute],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    target: &str,
    caller: &Caller,
) -> Result<(), Denied> {
    let guarding: Vec<&NetworkPolicyRoute> = policies
        .iter()
        .filter(|p| p.namespace == namespace)
        .filter(|p| {
            p.selector
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
        })
        .collect();
    if guarding.is_empty()
        || guarding
            .iter()
            .any(|p| p.allow.iter().any(|rule| rule.admits(caller)))
    {
        return Ok(());
    }
    match guarding.as_slice() {
        [only] if only.allow.is_empty() => Err(Denied::DenyAll {
            policy: only.name.clone(),
            namespace: namespace.to_owned(),
        }),
        _ => Err(Denied::NotAllowed {
            caller: caller.to_string(),
            target: target.to_owned(),
            namespace: namespace.to_owned(),
            policies: guarding
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Compiles `policy` for the nodes; `namespaces` are every namespace with
/// its labels (a namespace without a Namespace object has none).
pub fn compile(
    policy: &NetworkPolicy,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> NetworkPolicyRoute {
    let own = policy.metadata.namespace.clone().unwrap_or_default();
    let mut allow = Vec::new();
    for rule in &policy.spec.ingress {
        if rule.from.is_empty() {
            allow.push(PeerRule {
                namespaces: None,
                labels: BTreeMap::new(),
                anyone: true,
            });
        }
        for peer in &rule.from {
            let names = match &peer.namespace_selector {
                None => Some(vec![own.clone()]),
                Some(selector) if selector.match_labels.is_empty() => None,
                Some(selector) => Some(
                    namespaces
                        .iter()
                        .filter(|(_, labels)| selector.matches(labels))
                        .map(|(name, _)| name.clone())
                        .collect(),
                ),
            };
            let labels = peer
                .pod_selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .unwrap_or_default();
            allow.push(PeerRule {
                namespaces: names,
                labels,
                anyone: false,
            });
        }
    }
    NetworkPolicyRoute {
        namespace: own,
        name: policy.metadata.name.clone(),
        selector: policy.spec.pod_selector.match_labels.clone(),
        allow,
    }
}

/// The value of the caller header between nodes: `NAMESPACE` and the
/// labels as `key=value` pairs, separated by spaces; `-` for an unknown
/// caller.
pub fn encode_caller(caller: &Caller) -> String {
    match caller {
        Caller::Instance { namespace, labels } => {
            let mut out = namespace.clone();
            for (key, value) in labels {
                out.push(' ');
                out.push_str(key);
                out.push('=');
                out.push_str(value);
            }
            out
        }
        Caller::Unknown => "-".to_owned(),
    }
}

/// Reads [`encode_caller`]'s form; anything unreadable is
/// [`Caller::Unknown`].
pub fn decode_caller(value: &str) -> Caller {
    let mut parts = value.split(' ').filter(|p| !p.is_empty());
    let Some(namespace) = parts.next().filter(|n| *n != "-") else {
        return Caller::Unknown;
    };
    let mut labels = BTreeMap::new();
    for pair in parts {
        let Some((key, value)) = pair.split_once('=') else {
            return Caller::Unknown;
        };
        labels.insert(key.to_owned(), value.to_owned());
    }
    Caller::Instance {
        namespace: namespace.to_owned(),
        labels,
    }
}

#[cfg(test)]
mod tests;
