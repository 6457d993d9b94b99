//! `berth diff -f FILE|DIR|-`: what `apply` would change, object by
//! object, without changing anything.
//!
//! The manifests are read exactly as `apply` reads them (components
//! resolved to digests, nothing uploaded), each object is compared with
//! the live one, and [`crate::render::diff`] prints a unified diff of YAML
//! for each object that would change. Only what `apply` writes is
//! compared: `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`,
//! `metadata.labels` and every top-level field but `status` (the spec, and
//! a PriorityClass's value and policy). What the cluster owns is left out:
//! `status` and the rest of `metadata` (`uid`, `resourceVersion`,
//! `generation`, `creationTimestamp`, `deletionTimestamp`,
//! `ownerReferences`, and `annotations`, which `apply` keeps from creation
//! and the scheduler adds its own to). What admission adds to an object
//! is added here too, with the scheduler's own code ([`admitted`]: the
//! namespace's LimitRange defaults for a template's resources), so that a
//! manifest that leaves them out does not differ. See decision 0032.
//!
//! Exit status, as `kubectl diff`: 0 when nothing would change, 1 when
//! something would ([`Changes`]), 2 on any error.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use berth_api::quota::LimitRange;
use berth_api::{Kind, Object};
use serde_yaml_ng::Value;

use crate::client::Client;
use crate::commands::apply::{self, Source};
use crate::commands::get;

/// One object of the manifests, beside the live one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDiff {
    /// `Deployment.default.hello`: names the object in the diff headers.
    pub path: String,
    /// The live object's compared fields as YAML; `None` when it does not
    /// exist yet.
    pub live: Option<String>,
    /// The manifest's compared fields as YAML: what `apply` would store.
    pub merged: String,
}

impl ObjectDiff {
    /// Whether applying the manifest would create or change the object.
    pub fn changed(&self) -> bool {
        self.live.as_deref() != Some(self.merged.as_str())
    }
}

/// The error `berth diff` ends with when something would change: exit
/// status 1, and no `error:` line.
#[derive(Debug)]
pub struct Changes;

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the manifests differ from the live objects")
    }
}

impl std::error::Error for Changes {}

/// The exit status of `berth diff` when it fails: above 1, which means
/// "something would change".
pub const ERROR_EXIT: u8 = 2;

/// Compares every object of `sources` with its live version.
pub async fn diff(client: &Client, sources: &[Source]) -> Result<Vec<ObjectDiff>> {
    let mut objects = apply::objects(sources)?;
    crate::commands::push::resolve_components(&mut objects).await?;
    if objects.is_empty() {
        bail!(
            "no objects found in {}",
            sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // One list per kind and namespace: a missing object is then simply
    // absent, not an error to tell apart from others.
    let mut live: HashMap<(Kind, Option<String>), Vec<Object>> = HashMap::new();
    let mut diffs = Vec::with_capacity(objects.len());
    for (_, object) in objects {
        let namespace = object.namespace().map(str::to_owned);
        let key = (object.kind(), namespace.clone());
        let current = list(client, &mut live, key)
            .await?
            .iter()
            .find(|o| o.metadata().name == object.metadata().name)
            .map(compared_yaml)
            .transpose()?;
        let ranges: Vec<LimitRange> = match (&namespace, object.template()) {
            (Some(_), Some(_)) => list(client, &mut live, (Kind::LimitRange, namespace))
                .await?
                .iter()
                .filter_map(|o| match o {
                    Object::LimitRange(r) => Some((**r).clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        diffs.push(ObjectDiff {
            path: path(&object),
            live: current,
            merged: compared_yaml(&admitted(object, &ranges))?,
        });
    }
    Ok(diffs)
}

/// The live objects of a kind in a namespace, read once.
async fn list<'a>(
    client: &Client,
    live: &'a mut HashMap<(Kind, Option<String>), Vec<Object>>,
    key: (Kind, Option<String>),
) -> Result<&'a [Object]> {
    if !live.contains_key(&key) {
        let query = get::Query {
            kind: key.0,
            name: None,
            namespace: key.1.clone(),
        };
        let found = get::get(client, &query)
            .await
            .with_context(|| match &key.1 {
                Some(namespace) => format!("cannot read the live {} objects in {namespace}", key.0),
                None => format!("cannot read the live {} objects", key.0),
            })?;
        live.insert(key.clone(), found);
    }
    Ok(live.get(&key).map(Vec::as_slice).unwrap_or_default())
}

/// `object` as admission would store it: a template's resources given
/// the defaults of its namespace's LimitRanges (`ranges`), with the
/// scheduler's own code. Nothing changes without a LimitRange.
pub fn admitted(mut object: Object, ranges: &[LimitRange]) -> Object {
    if !ranges.is_empty()
        && let Some(template) = object.template_mut()
    {
        berth_scheduler::quota::limits::apply_defaults(ranges, &mut template.spec.resources);
    }
    object
}

/// `Deployment.default.hello` or `Namespace.team`.
fn path(object: &Object) -> String {
    match object.namespace() {
        Some(namespace) => format!("{}.{namespace}.{}", object.kind(), object.metadata().name),
        None => format!("{}.{}", object.kind(), object.metadata().name),
    }
}

/// The metadata fields `apply` writes; the others are the cluster's.
const COMPARED_METADATA: [&str; 3] = ["name", "namespace", "labels"];

/// The fields of `object` that `apply` writes, as YAML, in the order
/// `get -o yaml` prints them.
pub fn compared_yaml(object: &Object) -> Result<String> {
    let mut value = serde_yaml_ng::to_value(object)
        .with_context(|| format!("cannot encode {} as yaml", object.describe()))?;
    if let Value::Mapping(fields) = &mut value {
        fields.remove("status");
        if let Some(Value::Mapping(metadata)) = fields.get_mut("metadata") {
            metadata.retain(|key, _| {
                key.as_str()
                    .is_some_and(|key| COMPARED_METADATA.contains(&key))
            });
        }
    }
    serde_yaml_ng::to_string(&value)
        .with_context(|| format!("cannot encode {} as yaml", object.describe()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn deployment(replicas: u32, extra_metadata: &str) -> Object {
        let text = format!(
            "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
  labels: {{team: a}}
{extra_metadata}spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      component: sha256:{}
",
            "ab".repeat(32)
        );
        let objects = berth_api::manifest::parse_manifests("a.yaml", &text).unwrap();
        objects.into_iter().next().unwrap()
    }

    #[test]
    fn cluster_owned_fields_are_not_compared() {
        let manifest = deployment(2, "");
        let mut live = deployment(2, "  annotations: {berth.dev/trace: x}\n");
        if let Object::Deployment(d) = &mut live {
            d.metadata.uid = Some("u-1".into());
            d.metadata.resource_version = Some("42".into());
            d.metadata.generation = Some(3);
            d.metadata.creation_timestamp = Some("2026-01-01T00:00:00Z".parse().unwrap());
            d.status = Some(berth_api::DeploymentStatus {
                ready_replicas: 2,
                ..Default::default()
            });
        }
        assert_eq!(
            compared_yaml(&manifest).unwrap(),
            compared_yaml(&live).unwrap()
        );
        let text = compared_yaml(&live).unwrap();
        assert!(text.starts_with("apiVersion: berth.dev/v1\nkind: Deployment\nmetadata:\n  name: hello\n  namespace: default\n  labels:\n    team: a\nspec:\n"), "{text}");
    }

    #[test]
    fn limit_range_defaults_are_part_of_what_apply_stores() {
        let text = "apiVersion: berth.dev/v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
    - type: Instance
      default: {memory: 64Mi}
      defaultRequest: {cpu: 50m}
";
        let ranges: Vec<LimitRange> = berth_api::manifest::parse_manifests("r.yaml", text)
            .unwrap()
            .into_iter()
            .filter_map(|o| match o {
                Object::LimitRange(r) => Some(*r),
                _ => None,
            })
            .collect();
        assert_eq!(ranges.len(), 1);
        let plain = compared_yaml(&deployment(2, "")).unwrap();
        assert!(!plain.contains("resources"), "{plain}");
        let defaulted = compared_yaml(&admitted(deployment(2, ""), &ranges)).unwrap();
        assert!(
            defaulted.contains("64Mi") && defaulted.contains("50m"),
            "{defaulted}"
        );
        assert_eq!(
            compared_yaml(&admitted(deployment(2, ""), &[])).unwrap(),
            plain
        );
    }

    #[test]
    fn spec_and_labels_are_compared() {
        let live = compared_yaml(&deployment(2, "")).unwrap();
        let diff = ObjectDiff {
            path: "Deployment.default.hello".into(),
            live: Some(live.clone()),
            merged: compared_yaml(&deployment(3, "")).unwrap(),
        };
        assert!(diff.changed());
        let mut relabelled = deployment(2, "");
        if let Object::Deployment(d) = &mut relabelled {
            d.metadata.labels.insert("team".into(), "b".into());
        }
        assert_ne!(compared_yaml(&relabelled).unwrap(), live);
        let new = ObjectDiff { live: None, ..diff };
        assert!(new.changed());
        assert_eq!(path(&deployment(1, "")), "Deployment.default.hello");
    }
}
