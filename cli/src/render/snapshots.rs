//! Snapshot tests of `berth get` and `berth describe` for representative
//! objects (a Deployment, an Instance, a Node and a Service): each fixed
//! object rendered at a fixed `now` must print exactly the text below.
//! A change of layout shows here as a failing test with the new text.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use berth_api::{Kind, Object};
use jiff::Timestamp;

use super::{Format, describe, objects};

fn now() -> Timestamp {
    "2026-01-02T00:00:00Z".parse().unwrap()
}

fn object(json: serde_json::Value) -> Object {
    Object::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
}

fn deployment() -> Object {
    object(serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "default",
                     "labels": {"app": "hello", "team": "web"},
                     "uid": "0b0e6f43-8c2d-4c3e-9a52-0d5f4e2a1b10",
                     "resourceVersion": "17", "generation": 2,
                     "creationTimestamp": "2026-01-01T21:30:00Z"},
        "spec": {"replicas": 3,
                 "selector": {"matchLabels": {"app": "hello"}},
                 "template": {"metadata": {"labels": {"app": "hello"}},
                              "spec": {"component": format!("sha256:{}", "5e1f".repeat(16))}}},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                   "availableReplicas": 2}
    }))
}

fn instance() -> Object {
    object(serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Instance",
        "metadata": {"name": "hello-7f9c2", "namespace": "default",
                     "labels": {"app": "hello"},
                     "uid": "5c1d2e3f-0000-4000-8000-00000000c0de",
                     "creationTimestamp": "2026-01-01T23:55:00Z",
                     "ownerReferences": [{"apiVersion": "berth.dev/v1", "kind": "Deployment",
                                          "name": "hello", "uid": "0b0e6f43"}]},
        "spec": {"component": format!("sha256:{}", "5e1f".repeat(16)), "nodeName": "node-0"},
        "status": {"phase": "Running", "ready": true, "restartCount": 1}
    }))
}

fn node() -> Object {
    object(serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Node",
        "metadata": {"name": "node-0",
                     "labels": {"topology.kubernetes.io/zone": "a"},
                     "uid": "9a9a9a9a-1111-4222-8333-444455556666",
                     "creationTimestamp": "2025-12-30T00:00:00Z"},
        "spec": {"taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
                 "unschedulable": true},
        "status": {"capacity": {"cpuMillis": 4000, "memoryBytes": 8589934592_u64},
                   "allocatable": {"cpuMillis": 3500, "memoryBytes": 7516192768_u64},
                   "runtimes": ["wasm", "oci"],
                   "ingressAddress": "127.0.0.1:8080",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
}

fn service() -> Object {
    object(serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Service",
        "metadata": {"name": "hello", "namespace": "default",
                     "uid": "3e3e3e3e-aaaa-4bbb-8ccc-dddddddddddd",
                     "creationTimestamp": "2026-01-01T22:00:00Z"},
        "spec": {"selector": {"app": "hello"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        "status": {"endpoints": [{"instance": "hello-7f9c2", "node": "node-0"},
                                 {"instance": "hello-k2m4p", "node": "node-1"}]}
    }))
}

/// An event about `kind/name`, seen `count` times.
fn event(kind: &str, name: &str, reason: &str, message: &str, count: u64) -> Object {
    object(serde_json::json!({
        "apiVersion": "berth.dev/v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{reason}"), "namespace": "default"},
        "involvedObject": {"kind": kind, "namespace": "default", "name": name},
        "reason": reason, "message": message, "type": "Normal", "count": count,
        "firstTimestamp": "2026-01-01T23:50:00Z", "lastTimestamp": "2026-01-01T23:59:30Z",
        "source": "scheduler"
    }))
}

fn get(kind: Kind, object: Object, format: Format) -> String {
    objects(kind, &[object], format, false, false, now()).unwrap()
}

#[test]
fn get_deployment() {
    assert_eq!(
        get(Kind::Deployment, deployment(), Format::Table),
        "NAME    READY   UP-TO-DATE   AVAILABLE   AGE\n\
hello   2/3     3            2           2h\n"
    );
    assert_eq!(
        get(Kind::Deployment, deployment(), Format::Wide),
        "NAME    READY   UP-TO-DATE   AVAILABLE   AGE   COMPONENT             SELECTOR\n\
hello   2/3     3            2           2h    sha256:5e1f5e1f5e1f   app=hello\n"
    );
}

#[test]
fn describe_deployment() {
    let events = [event(
        "Deployment",
        "hello",
        "SuccessfulCreate",
        "Created instance: hello-7f9c2",
        3,
    )];
    assert_eq!(
        describe(&deployment(), &events, now()),
        "Name:             hello\n\
Namespace:        default\n\
Kind:             Deployment\n\
Labels:           app=hello, team=web\n\
UID:              0b0e6f43-8c2d-4c3e-9a52-0d5f4e2a1b10\n\
Age:              2h\n\
Replicas:         3 desired | 3 updated | 3 total | 2 available\n\
Component:        sha256:5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f\n\
Events:\n\
\x20 Type     Reason             Age                 From        Message\n\
\x20 Normal   SuccessfulCreate   30s (x3 over 10m)   scheduler   Created instance: hello-7f9c2\n"
    );
}

#[test]
fn get_instance() {
    assert_eq!(
        get(Kind::Instance, instance(), Format::Table),
        "NAME          READY   STATUS    RESTARTS   NODE     AGE\n\
hello-7f9c2   1/1     Running   1          node-0   5m\n"
    );
    assert_eq!(
        get(Kind::Instance, instance(), Format::Wide),
        "NAME          READY   STATUS    RESTARTS   NODE     AGE   REASON   MESSAGE\n\
hello-7f9c2   1/1     Running   1          node-0   5m    <none>   <none>\n"
    );
}

#[test]
fn describe_instance() {
    let events = [
        event(
            "Instance",
            "hello-7f9c2",
            "Scheduled",
            "Successfully assigned default/hello-7f9c2 to node-0",
            1,
        ),
        event("Instance", "hello-7f9c2", "Started", "Started instance", 2),
    ];
    assert_eq!(
        describe(&instance(), &events, now()),
        "Name:             hello-7f9c2\n\
Namespace:        default\n\
Kind:             Instance\n\
Labels:           app=hello\n\
UID:              5c1d2e3f-0000-4000-8000-00000000c0de\n\
Age:              5m\n\
Node:             node-0\n\
Status:           Running\n\
Ready:            true\n\
Restart Count:    1\n\
Reason:           <none>\n\
Message:          <none>\n\
Priority:         0\n\
Component:        sha256:5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f\n\
Controlled By:    Deployment/hello\n\
Events:\n\
\x20 Type     Reason      Age                 From        Message\n\
\x20 Normal   Scheduled   30s                 scheduler   Successfully assigned default/hello-7f9c2 to node-0\n\
\x20 Normal   Started     30s (x2 over 10m)   scheduler   Started instance\n"
    );
}

#[test]
fn get_node() {
    assert_eq!(
        get(Kind::Node, node(), Format::Table),
        "NAME     STATUS                     RUNTIMES   INGRESS          AGE\n\
node-0   Ready,SchedulingDisabled   wasm,oci   127.0.0.1:8080   3d\n"
    );
    assert_eq!(
        get(Kind::Node, node(), Format::Wide),
        "NAME     STATUS                     RUNTIMES   INGRESS          AGE   LABELS   TAINTS\n\
node-0   Ready,SchedulingDisabled   wasm,oci   127.0.0.1:8080   3d    1        dedicated=web:NoSchedule\n"
    );
}

#[test]
fn describe_node() {
    assert_eq!(
        describe(&node(), &[], now()),
        "Name:             node-0\n\
Kind:             Node\n\
Labels:           topology.kubernetes.io/zone=a\n\
UID:              9a9a9a9a-1111-4222-8333-444455556666\n\
Age:              3d\n\
Ready:            true\n\
Unschedulable:    true\n\
Taints:           dedicated=web:NoSchedule\n\
Runtimes:         wasm, oci\n\
Ingress:          127.0.0.1:8080\n\
Allocatable:      cpu 3500m, memory 7Gi\n\
Events:           <none>\n"
    );
}

#[test]
fn get_service() {
    assert_eq!(
        get(Kind::Service, service(), Format::Table),
        "NAME    SELECTOR    ENDPOINTS                 AGE\n\
hello   app=hello   hello-7f9c2,hello-k2m4p   2h\n"
    );
    assert_eq!(
        get(Kind::Service, service(), Format::Wide),
        "NAME    SELECTOR    ENDPOINTS                 AGE   PORT(S)\n\
hello   app=hello   hello-7f9c2,hello-k2m4p   2h    80\n"
    );
}

#[test]
fn describe_service() {
    assert_eq!(
        describe(&service(), &[], now()),
        "Name:             hello\n\
Namespace:        default\n\
Kind:             Service\n\
Labels:           <none>\n\
UID:              3e3e3e3e-aaaa-4bbb-8ccc-dddddddddddd\n\
Age:              2h\n\
Selector:         app=hello\n\
Ports:            http 80->8080\n\
Endpoints:        hello-7f9c2 (node-0), hello-k2m4p (node-1)\n\
Events:           <none>\n"
    );
}

#[test]
fn get_all_namespaces_adds_the_namespace_column() {
    let text = objects(
        Kind::Instance,
        &[instance()],
        Format::Table,
        false,
        true,
        now(),
    )
    .unwrap();
    assert_eq!(
        text,
        "NAMESPACE   NAME          READY   STATUS    RESTARTS   NODE     AGE\n\
default     hello-7f9c2   1/1     Running   1          node-0   5m\n"
    );
}

#[test]
fn yaml_and_json_of_several_objects_are_a_list() {
    let both = [service(), service()];
    let yaml = objects(Kind::Service, &both, Format::Yaml, false, false, now()).unwrap();
    assert!(
        yaml.starts_with(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: berth.dev/v1\n  kind: Service\n"
        ),
        "{yaml}"
    );
    let json = objects(Kind::Service, &both, Format::Json, false, false, now()).unwrap();
    assert!(
        json.starts_with("{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n"),
        "{json}"
    );
    let one = objects(Kind::Service, &both[..1], Format::Yaml, true, false, now()).unwrap();
    assert!(
        one.starts_with("apiVersion: berth.dev/v1\nkind: Service\n"),
        "{one}"
    );
    // What `get` prints, `apply` reads back: the List's items, status dropped.
    let read = berth_api::manifest::parse_manifests("<stdin>", &yaml).unwrap();
    assert_eq!(read.len(), 2);
    assert!(matches!(&read[0], Object::Service(s) if s.status.endpoints.is_empty()));
}
