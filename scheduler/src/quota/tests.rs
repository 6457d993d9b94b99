//! Quota arithmetic, the refusal message, LimitRange defaulting and
//! bounds, and admission against a real store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use berth_api::quota::{LimitRange, QuotaResource, ResourceQuota};
use berth_api::wire::{ApplyAction, ErrorCode};
use berth_api::{Kind, Object, Quantity, Resources};
use serde_json::json;

use super::limits::{apply_defaults, check_bounds};
use super::*;

fn object(value: serde_json::Value) -> Object {
    Object::from_json(&serde_json::to_vec(&value).unwrap()).unwrap()
}

fn deployment(name: &str, replicas: i64, resources: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "berth.dev/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"image": "busybox", "resources": resources}
            }
        }
    })
}

fn quota(hard: serde_json::Value) -> ResourceQuota {
    let Object::ResourceQuota(quota) = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "ResourceQuota",
        "metadata": {"name": "compute", "namespace": "team-a"},
        "spec": {"hard": hard}
    })) else {
        panic!("a ResourceQuota");
    };
    *quota
}

fn limit_range(limits: serde_json::Value) -> LimitRange {
    let Object::LimitRange(range) = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "LimitRange",
        "metadata": {"name": "limits", "namespace": "team-a"},
        "spec": {"limits": limits}
    })) else {
        panic!("a LimitRange");
    };
    *range
}

const MI: u64 = 1 << 20;

#[test]
fn a_deployment_charges_replicas_times_its_template() {
    let web = object(deployment(
        "web",
        3,
        json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}),
    ));
    let usage = demand(&web, 0);
    assert_eq!(usage[&QuotaResource::Instances], 3);
    assert_eq!(usage[&QuotaResource::RequestsCpu], 750);
    assert_eq!(usage[&QuotaResource::RequestsMemory], 768 * MI);
    assert_eq!(usage[&QuotaResource::LimitsMemory], 1536 * MI);
    assert_eq!(usage[&QuotaResource::LimitsCpu], 0);
    assert_eq!(usage[&QuotaResource::Count(Kind::Deployment)], 1);
}

#[test]
fn usage_sums_workloads_and_counts_services() {
    let web = object(deployment(
        "web",
        2,
        json!({"requests": {"memory": "100Mi"}}),
    ));
    let job = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Job",
        "metadata": {"name": "batch", "namespace": "team-a"},
        "spec": {"parallelism": 4, "completions": 3, "template": {"spec": {
            "image": "busybox", "restartPolicy": "Never",
            "resources": {"requests": {"memory": "10Mi"}}
        }}}
    }));
    let daemon = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"image": "busybox", "resources": {"requests": {"memory": "1Mi"}}}
        }}
    }));
    let service = object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }));
    let total = usage([&web, &job, &daemon, &service], 5);
    // 2 web + min(4, 3) batch + one agent on each of 5 nodes.
    assert_eq!(total[&QuotaResource::Instances], 2 + 3 + 5);
    assert_eq!(total[&QuotaResource::RequestsMemory], (200 + 30 + 5) * MI);
    assert_eq!(total[&QuotaResource::Count(Kind::Service)], 1);
    assert_eq!(total[&QuotaResource::Count(Kind::Job)], 1);
}

#[test]
fn an_update_requests_only_its_growth() {
    let before = demand(
        &object(deployment(
            "web",
            3,
            json!({"requests": {"memory": "256Mi"}}),
        )),
        0,
    );
    let after = demand(
        &object(deployment(
            "web",
            4,
            json!({"requests": {"memory": "256Mi"}}),
        )),
        0,
    );
    let adds = requested(Some(&before), &after);
    assert_eq!(adds[&QuotaResource::RequestsMemory], 256 * MI);
    assert_eq!(adds[&QuotaResource::Instances], 1);
    assert_eq!(adds[&QuotaResource::Count(Kind::Deployment)], 0);
    let shrink = requested(Some(&after), &before);
    assert!(shrink.values().all(|amount| *amount == 0));
}

#[test]
fn the_refusal_reads_as_kubernetes_writes_it() {
    let quota = quota(json!({"requests.memory": "1Gi", "count/instances": 10, "cpu": "2"}));
    let used = Usage::from([
        (QuotaResource::RequestsMemory, 768 * MI),
        (QuotaResource::Instances, 3),
    ]);
    let adds = Usage::from([
        (QuotaResource::RequestsMemory, 512 * MI),
        (QuotaResource::Instances, 2),
    ]);
    let error = check(&quota, &used, &adds).unwrap_err();
    assert_eq!(
        error.to_string(),
        "exceeded quota: compute, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi"
    );
    let over_two = Usage::from([
        (QuotaResource::RequestsMemory, 512 * MI),
        (QuotaResource::Instances, 8),
    ]);
    assert_eq!(
        check(&quota, &used, &over_two).unwrap_err().to_string(),
        "exceeded quota: compute, requested: count/instances=8,requests.memory=512Mi, used: count/instances=3,requests.memory=768Mi, limited: count/instances=10,requests.memory=1Gi"
    );
    let fits = Usage::from([(QuotaResource::RequestsMemory, 256 * MI)]);
    assert_eq!(check(&quota, &used, &fits), Ok(()));
    // A namespace already over may still shrink or stay.
    let over = Usage::from([(QuotaResource::RequestsMemory, 2048 * MI)]);
    assert_eq!(check(&quota, &over, &Usage::new()), Ok(()));
}

#[test]
fn a_quota_on_limits_needs_templates_to_set_them() {
    let quota = quota(json!({"limits.memory": "1Gi", "memory": "1Gi"}));
    let web = object(deployment("web", 1, json!({"requests": {"memory": "1Mi"}})));
    let missing = unspecified(&quota, web.template().unwrap());
    assert_eq!(missing, ["limits.memory"]);
    let error = QuotaError::MustSpecify {
        quota: "compute".into(),
        resources: missing,
    };
    assert_eq!(
        error.to_string(),
        "failed quota: compute: must specify limits.memory"
    );
}

#[test]
fn status_shows_use_by_the_quota_names() {
    let quota = quota(json!({"memory": "1Gi", "count/deployments": "2", "cpu": "500m"}));
    let used = Usage::from([
        (QuotaResource::RequestsMemory, 768 * MI),
        (QuotaResource::Count(Kind::Deployment), 1),
    ]);
    let status = status(&quota, &used);
    assert_eq!(status.hard, quota.spec.hard);
    let shown: Vec<(&str, &str)> = status
        .used
        .iter()
        .map(|(k, Quantity(v))| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("count/deployments", "1"),
            ("cpu", "0"),
            ("memory", "768Mi")
        ]
    );
}

fn resources(value: serde_json::Value) -> Resources {
    serde_json::from_value(value).unwrap()
}

#[test]
fn limit_ranges_fill_in_what_templates_leave_unset() {
    let range = limit_range(json!([{
        "type": "Instance",
        "default": {"memory": "256Mi"},
        "defaultRequest": {"memory": "128Mi"},
        "max": {"cpu": "2", "memory": "1Gi"}
    }]));
    let mut empty = Resources::default();
    apply_defaults(std::slice::from_ref(&range), &mut empty);
    assert_eq!(
        empty,
        resources(json!({
            "requests": {"cpu": "2", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "256Mi"}
        })),
        "limits from default, else max; requests from defaultRequest, else the default limit"
    );
    let mut limit_only = resources(json!({"limits": {"memory": "64Mi", "cpu": "1"}}));
    apply_defaults(std::slice::from_ref(&range), &mut limit_only);
    assert_eq!(
        limit_only,
        resources(json!({
            "requests": {"cpu": "1", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "64Mi"}
        })),
        "a request left unset takes the template's own limit"
    );
    let explicit = resources(json!({
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "200m", "memory": "64Mi"}
    }));
    let mut kept = explicit.clone();
    apply_defaults(&[range], &mut kept);
    assert_eq!(kept, explicit);
}

#[test]
fn limit_ranges_bound_what_templates_ask() {
    let range = limit_range(json!([{
        "type": "Container",
        "min": {"memory": "16Mi"},
        "max": {"memory": "1Gi"}
    }]));
    let path = "spec.template.spec";
    let ranges = std::slice::from_ref(&range);
    let fine = resources(json!({"requests": {"memory": "16Mi"}, "limits": {"memory": "1Gi"}}));
    assert_eq!(check_bounds(ranges, path, &fine), Ok(()));
    let big = resources(json!({"requests": {"memory": "16Mi"}, "limits": {"memory": "2Gi"}}));
    assert_eq!(
        check_bounds(ranges, path, &big).unwrap_err(),
        "spec.template.spec.resources.limits.memory: 2Gi is over the maximum 1Gi of LimitRange limits"
    );
    let small = resources(json!({"requests": {"memory": "1Mi"}, "limits": {"memory": "1Mi"}}));
    assert_eq!(
        check_bounds(ranges, path, &small).unwrap_err(),
        "spec.template.spec.resources.requests.memory: 1Mi is under the minimum 16Mi of LimitRange limits"
    );
}

fn cluster() -> (tempfile::TempDir, std::sync::Arc<Cluster>) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(&dir.path().join("berth.redb")).unwrap();
    let authority = crate::pki::Authority::load_or_create(dir.path()).unwrap();
    let cluster = Cluster::new(store, authority).unwrap();
    (dir, cluster)
}

fn raw(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn admission_refuses_the_whole_apply_and_spares_other_namespaces() {
    use crate::admission::{apply, get};
    let (_dir, cluster) = cluster();
    let namespace = |name: &str| {
        raw(json!({"apiVersion": "berth.dev/v1", "kind": "Namespace", "metadata": {"name": name}}))
    };
    let setup = [
        namespace("team-a"),
        namespace("team-b"),
        raw(json!({
            "apiVersion": "berth.dev/v1", "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": "team-a"},
            "spec": {"hard": {"requests.memory": "1Gi", "count/instances": "4"}}
        })),
        raw(json!({
            "apiVersion": "berth.dev/v1", "kind": "LimitRange",
            "metadata": {"name": "limits", "namespace": "team-a"},
            "spec": {"limits": [{"type": "Instance", "defaultRequest": {"memory": "256Mi"}}]}
        })),
    ];
    apply(&cluster, &setup).unwrap();
    // Three instances take the default request: 768Mi of 1Gi.
    let (outcomes, _) = apply(&cluster, &[raw(deployment("small", 3, json!({})))]).unwrap();
    assert_eq!(outcomes[0].action, ApplyAction::Created);
    let service = raw(json!({
        "apiVersion": "berth.dev/v1", "kind": "Service",
        "metadata": {"name": "big", "namespace": "team-a"},
        "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}
    }));
    let big = deployment("big", 1, json!({"requests": {"memory": "512Mi"}}));
    let error = apply(&cluster, &[service.clone(), raw(big.clone())]).unwrap_err();
    assert_eq!(error.code, ErrorCode::Forbidden);
    assert_eq!(
        error.message,
        "Deployment team-a/big: exceeded quota: compute, requested: requests.memory=512Mi, used: requests.memory=768Mi, limited: requests.memory=1Gi"
    );
    assert!(
        get(&cluster, Kind::Service, Some("team-a"), None)
            .unwrap()
            .is_empty(),
        "the Service earlier in the refused apply is not created"
    );
    let mut other = big.clone();
    other["metadata"]["namespace"] = json!("team-b");
    apply(&cluster, &[raw(other)]).unwrap();

    let quotas = get(&cluster, Kind::ResourceQuota, Some("team-a"), None).unwrap();
    let [Object::ResourceQuota(quota)] = quotas.as_slice() else {
        panic!("one quota: {quotas:?}");
    };
    assert_eq!(
        quota.status.used.get("requests.memory"),
        Some(&Quantity("768Mi".into()))
    );
    assert_eq!(
        quota.status.used.get("count/instances"),
        Some(&Quantity("3".into()))
    );

    let scale = |replicas: i64| berth_api::wire::DeploymentPatch {
        replicas: Some(replicas),
        ..Default::default()
    };
    let error =
        crate::admission::patch_deployment(&cluster, "team-a", "small", &scale(5)).unwrap_err();
    assert_eq!(
        error.message,
        "Deployment team-a/small: exceeded quota: compute, requested: count/instances=2,requests.memory=512Mi, used: count/instances=3,requests.memory=768Mi, limited: count/instances=4,requests.memory=1Gi"
    );
    crate::admission::patch_deployment(&cluster, "team-a", "small", &scale(4)).unwrap();
}
