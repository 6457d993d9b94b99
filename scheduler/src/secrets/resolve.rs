//! From a template's `env` and `envFrom` to one instance's variables, and
//! the instances held back because theirs do not resolve.
//!
//! Both take the Secrets and ConfigMaps through a lookup, so they do no
//! I/O: the server looks values up in the store for the instances of one
//! node; the reconciler passes [`Sources`], which knows keys but holds no
//! values.

use std::collections::{BTreeMap, HashMap};

use berth_api::secret::SourceKind;
use berth_api::{Instance, InstanceSpec, Object, Phase};

use crate::controller::{self, Command};

/// The reason of an instance whose Secret or ConfigMap references do not
/// resolve, as Kubernetes names it.
pub const REASON_CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// The prefix the node reserves for its own variables.
const RESERVED_PREFIX: &str = "BERTH_";

/// Decoded values of one Secret or ConfigMap, by key.
pub type Data = BTreeMap<String, Vec<u8>>;

/// Why an instance's environment cannot be made, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The Secret or ConfigMap does not exist.
    #[error("{} {name:?} not found", kind.as_str().to_ascii_lowercase())]
    NotFound {
        /// Which kind.
        kind: SourceKind,
        /// Its name.
        name: String,
    },
    /// It exists without the key.
    #[error("couldn't find key {key} in {} {namespace}/{name}", kind.as_str())]
    MissingKey {
        /// Which kind.
        kind: SourceKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// The value is bytes that are not text, which an environment
    /// variable cannot hold.
    #[error("key {key} in {} {namespace}/{name} is not valid UTF-8", kind.as_str())]
    NotText {
        /// Which kind.
        kind: SourceKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
}

/// The variables of an instance of `spec` in `namespace`: every key of
/// its `envFrom` sources (a later source wins over an earlier; keys that
/// are not valid variable names, or would start with `BERTH_`, are
/// skipped, as Kubernetes skips invalid ones), then its `env` entries in
/// order, which win over `envFrom`. `lookup` answers a Secret's or
/// ConfigMap's decoded data by name, in `namespace`.
pub fn resolve(
    namespace: &str,
    spec: &InstanceSpec,
    lookup: &mut dyn FnMut(SourceKind, &str) -> Option<Data>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = Env::default();
    for source in &spec.env_from {
        let Some((kind, reference)) = source.reference() else {
            continue;
        };
        let Some(data) = lookup(kind, &reference.name) else {
            if reference.optional {
                continue;
            }
            return Err(ConfigError::NotFound {
                kind,
                name: reference.name.clone(),
            });
        };
        for (key, value) in data {
            let name = format!("{}{key}", source.prefix);
            if !berth_api::validate::is_env_name(&name) || name.starts_with(RESERVED_PREFIX) {
                continue;
            }
            let value = text(kind, namespace, &reference.name, &key, value)?;
            env.set(name, value);
        }
    }
    for var in &spec.env {
        let Some((kind, selector)) = var.value_from.as_ref().and_then(|f| f.reference()) else {
            env.set(var.name.clone(), var.value.clone());
            continue;
        };
        let data = match lookup(kind, &selector.name) {
            Some(data) => data,
            None if selector.optional => continue,
            None => {
                return Err(ConfigError::NotFound {
                    kind,
                    name: selector.name.clone(),
                });
            }
        };
        let Some(value) = data.get(&selector.key) else {
            if selector.optional {
                continue;
            }
            return Err(ConfigError::MissingKey {
                kind,
                namespace: namespace.to_owned(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            });
        };
        let value = text(
            kind,
            namespace,
            &selector.name,
            &selector.key,
            value.clone(),
        )?;
        env.set(var.name.clone(), value);
    }
    Ok(env.vars)
}

fn text(
    kind: SourceKind,
    namespace: &str,
    name: &str,
    key: &str,
    value: Vec<u8>,
) -> Result<String, ConfigError> {
    String::from_utf8(value).map_err(|_| ConfigError::NotText {
        kind,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key: key.to_owned(),
    })
}

/// Variables in first-set order; setting one again replaces its value.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
    at: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.at.get(&name).and_then(|&i| self.vars.get_mut(i)) {
            Some(slot) => slot.1 = value,
            None => {
                self.at.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }
}

/// What the reconciler knows of every Secret and ConfigMap: its keys, and
/// whether each value is text. No values.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    keys: HashMap<(SourceKind, String, String), BTreeMap<String, bool>>,
}

impl Sources {
    /// The keys of the Secrets and ConfigMaps among `objects`.
    pub fn from_objects(objects: &[Object]) -> Sources {
        let mut sources = Sources::default();
        for object in objects {
            let (kind, keys): (SourceKind, BTreeMap<String, bool>) = match object {
                Object::Secret(secret) => (
                    SourceKind::Secret,
                    secret
                        .data
                        .keys()
                        .map(|key| {
                            let text = secret
                                .value(key)
                                .is_some_and(|v| std::str::from_utf8(&v).is_ok());
                            (key.clone(), text)
                        })
                        .collect(),
                ),
                Object::ConfigMap(map) => (
                    SourceKind::ConfigMap,
                    map.data.keys().map(|key| (key.clone(), true)).collect(),
                ),
                _ => continue,
            };
            let meta = object.metadata();
            sources.keys.insert(
                (
                    kind,
                    meta.namespace_or_default().to_owned(),
                    meta.name.clone(),
                ),
                keys,
            );
        }
        sources
    }

    /// Stand-in data for one object: every key, with an empty value where
    /// the real one is text and a byte that is not where it is not.
    fn data(&self, kind: SourceKind, namespace: &str, name: &str) -> Option<Data> {
        self.keys
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .map(|keys| {
                keys.iter()
                    .map(|(key, text)| (key.clone(), if *text { Vec::new() } else { vec![0xff] }))
                    .collect()
            })
    }
}

/// Whether resolving `instance`'s references can succeed with `sources`.
pub fn check(instance: &Instance, sources: &Sources) -> Result<(), ConfigError> {
    if instance.spec.env_from.is_empty() && instance.spec.env.iter().all(|v| v.value_from.is_none())
    {
        return Ok(());
    }
    let namespace = instance.metadata.namespace_or_default();
    resolve(namespace, &instance.spec, &mut |kind, name| {
        sources.data(kind, namespace, name)
    })
    .map(|_| ())
}

/// Updates for the bound instances whose references stopped or started
/// resolving: the former go back to `Pending` with
/// [`REASON_CREATE_CONTAINER_CONFIG_ERROR`] and the error as message (the
/// server sends them to no node, so their node does not start them, or
/// stops them), the latter to `Scheduled` with the reason cleared.
pub fn config_errors(instances: &[Instance], sources: &Sources) -> Vec<Command> {
    let mut commands = Vec::new();
    for instance in instances {
        if instance.spec.node_name.is_none()
            || instance.metadata.deletion_timestamp.is_some()
            || controller::is_finished_run(instance)
        {
            continue;
        }
        let status = &instance.status;
        let held = status.reason == REASON_CREATE_CONTAINER_CONFIG_ERROR;
        let updated = match check(instance, sources) {
            Err(e) => {
                let message = e.to_string();
                if held && status.phase == Phase::Pending && status.message == message {
                    continue;
                }
                let mut updated = instance.clone();
                updated.status.phase = Phase::Pending;
                updated.status.reason = REASON_CREATE_CONTAINER_CONFIG_ERROR.to_owned();
                updated.status.message = message;
                updated.status.ready = false;
                updated
            }
            Ok(()) if held => {
                let mut updated = instance.clone();
                updated.status.phase = Phase::Scheduled;
                updated.status.reason.clear();
                updated.status.message.clear();
                updated
            }
            Ok(()) => continue,
        };
        commands.push(Command::Update {
            seen: instance
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default(),
            object: Box::new(Object::Instance(Box::new(updated))),
        });
    }
    commands
}
