//! The JSON Schema of every kind, derived from the Rust types themselves
//! (`schemars`, which reads the same `serde` attributes the manifest
//! reader obeys: `rename_all = "camelCase"`, `default`, `rename`), so the
//! field names, types, defaults and descriptions it gives cannot drift
//! from what `berth apply` accepts. The descriptions are the types' and
//! fields' doc comments.
//!
//! `berth explain` walks these schemas, and the field reference in
//! `docs/guide/` is generated from them. Types that serialize by hand
//! ([`Rate`], [`IntOrPercent`]) describe themselves here.
//!
//! Every type reachable from a kind must derive `JsonSchema`, and every
//! [`Kind`] must have an arm in [`kind_schema`]: the compiler enforces both.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::Kind;
use crate::canary::Rate;
use crate::rollout::IntOrPercent;

/// The schema of `kind`'s manifest, with the types it uses under `$defs`.
/// `Option` fields are described by their inner type (absent means unset).
pub fn kind_schema(kind: Kind) -> Schema {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.meta_schema = None;
        })
        .into_generator();
    match kind {
        Kind::Namespace => root::<crate::Namespace>(generator),
        Kind::Deployment => root::<crate::Deployment>(generator),
        Kind::Instance => root::<crate::Instance>(generator),
        Kind::Node => root::<crate::Node>(generator),
        Kind::PriorityClass => root::<crate::PriorityClass>(generator),
        Kind::Event => root::<crate::Event>(generator),
        Kind::Job => root::<crate::job::Job>(generator),
        Kind::Service => root::<crate::service::Service>(generator),
        Kind::DaemonSet => root::<crate::daemonset::DaemonSet>(generator),
        Kind::CronJob => root::<crate::cronjob::CronJob>(generator),
        Kind::Ingress => root::<crate::ingress::Ingress>(generator),
        Kind::PodDisruptionBudget => root::<crate::disruption::PodDisruptionBudget>(generator),
        Kind::HorizontalAutoscaler => root::<crate::autoscaler::HorizontalAutoscaler>(generator),
        Kind::ResourceQuota => root::<crate::quota::ResourceQuota>(generator),
        Kind::LimitRange => root::<crate::quota::LimitRange>(generator),
        Kind::Secret => root::<crate::secret::Secret>(generator),
        Kind::ConfigMap => root::<crate::secret::ConfigMap>(generator),
        Kind::NetworkPolicy => root::<crate::netpol::NetworkPolicy>(generator),
        Kind::Role | Kind::ClusterRole => root::<crate::rbac::Role>(generator),
        Kind::RoleBinding | Kind::ClusterRoleBinding => root::<crate::rbac::RoleBinding>(generator),
    }
}

/// The kind's own doc comment (its [`Kind`] variant's), which tells a
/// `ClusterRole` from a `Role` though they share a type.
pub fn kind_description(kind: Kind) -> String {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Kind>();
    schema
        .get("oneOf")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .find(|v| v.get("const").and_then(|c| c.as_str()) == Some(kind.as_str()))
        .and_then(|v| v.get("description"))
        .and_then(|d| d.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn root<T: JsonSchema>(generator: SchemaGenerator) -> Schema {
    generator.into_root_schema_for::<T>()
}

impl JsonSchema for IntOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "IntOrPercent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "string"],
            "description": "A count (`1`) or a percentage of `replicas` (`\"25%\"`).",
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["number", "string"],
            "description": "A fraction (`0.05`) or a percentage (`\"5%\"`).",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn every_kind_has_an_object_schema() {
        for kind in Kind::ALL {
            let schema = kind_schema(kind);
            assert_eq!(
                schema.get("type").and_then(|t| t.as_str()),
                Some("object"),
                "{kind}"
            );
            let properties = schema.get("properties").unwrap();
            assert!(properties.get("apiVersion").is_some(), "{kind}");
            assert!(properties.get("metadata").is_some(), "{kind}");
        }
    }

    #[test]
    fn field_names_defaults_and_docs_come_from_serde_and_comments() {
        let schema = kind_schema(Kind::Deployment).to_value();
        let spec = &schema["$defs"]["DeploymentSpec"];
        assert_eq!(spec["properties"]["replicas"]["default"], 1);
        assert!(spec["properties"]["minReadySeconds"].is_object());
        let strategy = &schema["$defs"]["DeploymentStrategy"]["properties"];
        assert!(strategy["type"].is_object());
        assert!(
            strategy["rollingUpdate"]["description"]
                .as_str()
                .unwrap()
                .contains("rolling update")
        );
    }
}
