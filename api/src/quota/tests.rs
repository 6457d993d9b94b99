//! Reading and validating ResourceQuota and LimitRange manifests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::Object;
use crate::manifest::parse_manifests;

fn error(text: &str) -> String {
    parse_manifests("quota.yaml", text).unwrap_err().to_string()
}

#[test]
fn quotas_read_with_kubernetes_names_and_drop_a_users_status() {
    let objects = parse_manifests(
        "quota.yaml",
        "apiVersion: berth.dev/v1\nkind: ResourceQuota\nmetadata: {name: compute, namespace: team-a}\n\
         spec:\n  hard: {requests.memory: 1Gi, cpu: 2, count/instances: 10, count/services: \"3\"}\n\
         status:\n  used: {cpu: \"1\"}\n",
    )
    .unwrap();
    let [Object::ResourceQuota(quota)] = objects.as_slice() else {
        panic!("one quota: {objects:?}");
    };
    assert_eq!(quota.spec.hard.len(), 4);
    assert_eq!(quota.status, ResourceQuotaStatus::default());
    assert_eq!(quota.metadata.namespace.as_deref(), Some("team-a"));
}

#[test]
fn quota_errors_name_the_key() {
    assert_eq!(
        error(
            "apiVersion: berth.dev/v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {gpus: 1}}\n"
        ),
        format!(
            "invalid manifest quota.yaml: ResourceQuota default/q: spec.hard.gpus: unsupported resource \"gpus\": expected one of {}",
            QUOTA_RESOURCE_NAMES.join(", ")
        )
    );
    assert_eq!(
        error(
            "apiVersion: berth.dev/v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {memory: 1Gx}}\n"
        ),
        "invalid manifest quota.yaml: ResourceQuota default/q: spec.hard.memory: invalid quantity \"1Gx\": unknown suffix \"Gx\""
    );
    assert_eq!(
        error(
            "apiVersion: berth.dev/v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {count/instances: 1.5}}\n"
        ),
        "invalid manifest quota.yaml: ResourceQuota default/q: spec.hard.count/instances: invalid quantity \"1.5\": expected a whole number (\"10\")"
    );
}

#[test]
fn limit_range_errors_name_the_entry_and_field() {
    assert_eq!(
        error(
            "apiVersion: berth.dev/v1\nkind: LimitRange\nmetadata: {name: l}\n\
             spec: {limits: [{type: Instance, min: {memory: 2Gi}, max: {memory: 1Gi}}]}\n"
        ),
        "invalid manifest quota.yaml: LimitRange default/l: spec.limits[0].min.memory: must be less than or equal to max.memory"
    );
    assert_eq!(
        error(
            "apiVersion: berth.dev/v1\nkind: LimitRange\nmetadata: {name: l}\n\
             spec: {limits: [{type: Container, default: {cpu: 1}, defaultRequest: {cpu: 2}}]}\n"
        ),
        "invalid manifest quota.yaml: LimitRange default/l: spec.limits[0].defaultRequest.cpu: must be less than or equal to default.cpu"
    );
    assert!(
        error("apiVersion: berth.dev/v1\nkind: LimitRange\nmetadata: {name: l}\nspec: {limits: [{type: Pod}]}\n")
            .contains("unknown variant `Pod`, expected `Instance` or `Container`")
    );
}

#[test]
fn counts_are_whole_numbers() {
    assert_eq!(QuotaResource::Instances.parse_amount("12"), Ok(12));
    assert!(QuotaResource::Instances.parse_amount("-1").is_err());
    assert!(
        QuotaResource::Count(crate::Kind::Job)
            .parse_amount("1k")
            .is_err()
    );
    assert_eq!(QuotaResource::parse("pods"), Some(QuotaResource::Instances));
    assert_eq!(
        QuotaResource::parse("memory"),
        Some(QuotaResource::RequestsMemory)
    );
    assert_eq!(QuotaResource::RequestsMemory.format(768 << 20), "768Mi");
    assert_eq!(QuotaResource::LimitsCpu.format(1500), "1500m");
}
