//! ResourceQuota and LimitRange end to end: a tenant over its quota is
//! refused with Kubernetes' message and nothing of the refused apply is
//! written, a scale past it is refused too, and the same Deployment runs
//! in another namespace.

use std::time::Duration;

use berth_api::Object;

use crate::harness::Cluster;

/// Namespaces `team-a` and `team-b`; in `team-a` a quota of 1Gi of
/// requested memory and 4 instances, and a LimitRange whose default
/// request is 256Mi.
const TENANTS: &str = "apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: berth.dev/v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: berth.dev/v1
kind: ResourceQuota
metadata: {name: compute, namespace: team-a}
spec:
  hard:
    requests.memory: 1Gi
    count/instances: 4
---
apiVersion: berth.dev/v1
kind: LimitRange
metadata: {name: limits, namespace: team-a}
spec:
  limits:
    - type: Instance
      defaultRequest: {memory: 256Mi}
      max: {memory: 1Gi}
";

/// A Deployment `name` of the hello component in `namespace`; `memory`
/// is its request, or none when empty.
fn deployment(name: &str, namespace: &str, replicas: u32, memory: &str) -> String {
    let resources = if memory.is_empty() {
        String::new()
    } else {
        format!("      resources: {{requests: {{memory: {memory}}}}}\n")
    };
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {{component}}
{resources}"
    )
}

/// A Service `name` in `namespace`.
fn service(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80}}]
"
    )
}

fn names(cluster: &Cluster, kind: &str, namespace: &str) -> Vec<String> {
    let text = cluster.ok(&["get", kind, "-n", namespace, "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = match value.get("items") {
        Some(items) => items.as_array().unwrap().clone(),
        None => vec![value],
    };
    items
        .iter()
        .map(|item| Object::from_json(&serde_json::to_vec(item).unwrap()).unwrap())
        .map(|o| o.metadata().name.clone())
        .collect()
}

#[test]
fn a_tenant_over_quota_is_refused_and_others_are_not() {
    let cluster = Cluster::start(1);
    let tenants = cluster.manifest("tenants", TENANTS);
    cluster.ok(&["apply", "-f", tenants.to_str().unwrap()]);

    // Three instances at the LimitRange's default request: 768Mi of 1Gi.
    let web = cluster.manifest("web", &deployment("web", "team-a", 3, ""));
    cluster.ok(&["apply", "-f", web.to_str().unwrap()]);

    // A Service and a Deployment asking 512Mi more, in one apply.
    let big = format!(
        "{}---\n{}",
        service("big", "team-a"),
        deployment("big", "team-a", 1, "512Mi")
    );
    let big = cluster.manifest("big-a", &big);
    let out = cluster.berth(&["apply", "-f", big.to_str().unwrap()]);
    assert!(!out.status.success(), "the apply over quota is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Deployment team-a/big: exceeded quota: compute, requested: requests.memory=512Mi, \
             used: requests.memory=768Mi, limited: requests.memory=1Gi"
        ),
        "stderr: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert_eq!(names(&cluster, "deployments", "team-a"), ["web"]);
    assert!(
        names(&cluster, "services", "team-a").is_empty(),
        "nothing of the refused apply is written"
    );

    // Scaling past the quota is refused as well; within it, it is not.
    let out = cluster.berth(&["scale", "deployment/web", "--replicas", "5", "-n", "team-a"]);
    assert!(!out.status.success(), "the scale over quota is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "exceeded quota: compute, requested: count/instances=2,requests.memory=512Mi, \
             used: count/instances=3,requests.memory=768Mi, \
             limited: count/instances=4,requests.memory=1Gi"
        ),
        "stderr: {stderr}"
    );

    // The same Deployment is welcome in team-b and runs there.
    let other = format!(
        "{}---\n{}",
        service("big", "team-b"),
        deployment("big", "team-b", 1, "512Mi")
    );
    let other = cluster.manifest("big-b", &other);
    cluster.ok(&["apply", "-f", other.to_str().unwrap()]);
    cluster.wait_for("big running in team-b", Duration::from_secs(90), || {
        cluster.objects("deployments").iter().any(|o| match o {
            Object::Deployment(d) => {
                d.metadata.namespace.as_deref() == Some("team-b")
                    && d.status.as_ref().is_some_and(|s| s.ready_replicas == 1)
            }
            _ => false,
        })
    });

    // The quota shows what team-a uses, and the LimitRange's default
    // request is in web's stored template.
    let yaml = cluster.ok(&["get", "quota", "compute", "-n", "team-a", "-o", "yaml"]);
    let quota: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        quota["status"]["used"]["requests.memory"], "768Mi",
        "{yaml}"
    );
    assert_eq!(quota["status"]["used"]["count/instances"], "3", "{yaml}");
    assert_eq!(quota["status"]["hard"]["requests.memory"], "1Gi", "{yaml}");
    let table = cluster.ok(&["get", "resourcequotas", "-n", "team-a"]);
    assert!(
        table.contains("count/instances: 3/4, requests.memory: 768Mi/1Gi"),
        "{table}"
    );
    let web = cluster.ok(&["get", "deploy", "web", "-n", "team-a", "-o", "json"]);
    let web: serde_json::Value = serde_json::from_str(&web).unwrap();
    assert_eq!(
        web["spec"]["template"]["spec"]["resources"]["requests"]["memory"],
        "256Mi"
    );
    assert_eq!(names(&cluster, "limits", "team-a"), ["limits"]);
    let described = cluster.ok(&["describe", "quota", "compute", "-n", "team-a"]);
    assert!(described.contains("768Mi used of 1Gi"), "{described}");

    // The LimitRange's maximum holds too, naming the field.
    let huge = cluster.manifest("huge", &deployment("huge", "team-a", 0, "2Gi"));
    let out = cluster.berth(&["apply", "-f", huge.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Deployment team-a/huge: spec.template.spec.resources.requests.memory: \
             2Gi is over the maximum 1Gi of LimitRange limits"
        ),
        "stderr: {stderr}"
    );
}
