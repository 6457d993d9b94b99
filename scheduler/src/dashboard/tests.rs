use std::collections::HashMap;

use berth_api::Object;
use berth_api::wire::{InstanceUsage, NodeUsage};
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use serde_json::json;

use super::*;

fn object(value: serde_json::Value) -> Object {
    Object::from_json(&serde_json::to_vec(&value).unwrap()).unwrap()
}

fn token() -> Token {
    Token::new("t0ken")
}

fn with(name: http::HeaderName, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

#[test]
fn the_token_in_the_address_becomes_a_cookie_and_leaves_the_address() {
    let none = HeaderMap::new();
    assert_eq!(
        route("/dashboard", Some("token=t0ken"), &none, &token()),
        Route::Redirect {
            location: "/dashboard/?token=t0ken".into(),
            cookie: false
        }
    );
    assert_eq!(
        route("/dashboard/", Some("token=t0ken"), &none, &token()),
        Route::Redirect {
            location: "/dashboard/".into(),
            cookie: true
        }
    );
    assert_eq!(
        route("/dashboard/", Some("token=wrong"), &none, &token()),
        Route::Unauthorized
    );
    assert!(token().set_cookie().contains("HttpOnly"));
    assert!(token().set_cookie().contains("SameSite=Strict"));
}

#[test]
fn every_dashboard_path_wants_the_token() {
    let none = HeaderMap::new();
    for path in [
        "/dashboard/",
        "/dashboard/app.js",
        "/dashboard/api/state",
        "/dashboard/api/stream",
        "/dashboard/nope",
    ] {
        assert_eq!(
            route(path, None, &none, &token()),
            Route::Unauthorized,
            "{path}"
        );
    }
    let cookie = with(COOKIE, "berth_dashboard=t0ken");
    let bearer = with(AUTHORIZATION, "Bearer t0ken");
    assert_eq!(
        route("/dashboard/api/state", None, &bearer, &token()),
        Route::State
    );
    assert_eq!(
        route("/dashboard/api/stream", None, &cookie, &token()),
        Route::Stream
    );
    assert!(matches!(
        route("/dashboard/", None, &cookie, &token()),
        Route::Asset { content_type, .. } if content_type.starts_with("text/html")
    ));
    assert_eq!(
        route("/dashboard/nope", None, &cookie, &token()),
        Route::NotFound
    );
}

#[test]
fn other_paths_are_left_to_the_admin_listener() {
    let none = HeaderMap::new();
    for path in ["/metrics", "/livez", "/dashboardx", "/"] {
        assert_eq!(
            route(path, None, &none, &token()),
            Route::Elsewhere,
            "{path}"
        );
    }
}

#[test]
fn the_page_fetches_nothing_from_elsewhere() {
    for (name, text) in [
        ("index.html", INDEX_HTML),
        ("app.js", APP_JS),
        ("style.css", STYLE_CSS),
    ] {
        for banned in ["http://", "https://", "//cdn", "@import"] {
            let allowed = name == "app.js" && text.contains("http://www.w3.org/2000/svg");
            let count = text.matches(banned).count();
            let expected = if allowed && banned == "http://" { 1 } else { 0 };
            assert_eq!(count, expected, "{name} mentions {banned}");
        }
    }
    assert!(!INDEX_HTML.contains("<script>"), "no inline script");
}

#[test]
fn server_sent_events_are_framed() {
    assert_eq!(
        event("state", br#"{"a":1}"#),
        Bytes::from_static(b"event: state\ndata: {\"a\":1}\n\n")
    );
}

fn deployment(name: &str, replicas: i64, ready: u64) -> Object {
    object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"component": "sha256:00"}}
        },
        "status": {"replicas": ready, "updatedReplicas": ready, "readyReplicas": ready,
                   "availableReplicas": ready, "revision": 2,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}
    }))
}

fn instance(name: &str, node: Option<&str>, phase: &str, cpu: &str) -> Object {
    object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Instance",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-11-22T10:00:00Z",
                     "ownerReferences": [{"apiVersion": "berth.dev/v1", "kind": "Deployment",
                                          "name": "hello", "uid": "uid-hello"}]},
        "spec": {"component": "sha256:00", "nodeName": node,
                 "resources": {"requests": {"cpu": cpu, "memory": "32Mi"}}},
        "status": {"phase": phase, "reason": if node.is_none() { "Unschedulable" } else { "" },
                   "message": if node.is_none() { "0/1 nodes fit: cpu" } else { "" }}
    }))
}

fn node(name: &str) -> Object {
    object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Node",
        "metadata": {"name": name},
        "status": {"capacity": {"cpuMillis": 2000, "memoryBytes": 1073741824u64},
                   "allocatable": {"cpuMillis": 1000, "memoryBytes": 536870912u64},
                   "runtimes": ["wasm"],
                   "conditions": [{"type": "Ready", "status": "True", "reason": "NodeReady"}]}
    }))
}

fn event_at(reason: &str, at: &str) -> Object {
    object(json!({
        "apiVersion": "berth.dev/v1", "kind": "Event",
        "metadata": {"name": format!("e-{reason}"), "namespace": "default"},
        "involvedObject": {"kind": "Deployment", "namespace": "default", "name": "hello", "uid": "u"},
        "reason": reason, "message": "something", "type": "Normal", "count": 1,
        "firstTimestamp": at, "lastTimestamp": at, "source": "scheduler"
    }))
}

#[test]
fn the_view_puts_instances_on_their_nodes_and_lists_the_pending() {
    let objects = vec![
        deployment("hello", 3, 2),
        event_at("ScalingReplicaSet", "2026-11-22T10:00:00Z"),
        event_at("Scheduled", "2026-11-22T10:00:05Z"),
        instance("hello-a", Some("n1"), "Running", "100m"),
        instance("hello-b", Some("n1"), "Running", "250m"),
        instance("hello-c", None, "Pending", "4"),
        instance("hello-d", Some("n1"), "Succeeded", "500m"),
        node("n1"),
    ];
    let now: jiff::Timestamp = "2026-11-22T10:01:00Z".parse().unwrap();
    let view = View::build(7, &objects, &HashMap::new(), now);
    assert_eq!(view.revision, 7);

    assert_eq!(view.nodes.len(), 1);
    let n1 = &view.nodes[0];
    assert!(n1.ready);
    assert_eq!(n1.allocatable.cpu_millis, 1000);
    assert_eq!(
        n1.allocated.cpu_millis, 350,
        "a finished instance no longer holds its requests"
    );
    assert_eq!(n1.allocated.memory_bytes, 64 << 20);
    assert_eq!(n1.instances.len(), 3);
    assert_eq!(n1.instances[0].owner.as_deref(), Some("deployment/hello"));
    assert_eq!(n1.used, None, "no report, no usage");

    assert_eq!(view.pending.len(), 1);
    assert_eq!(view.pending[0].name, "hello-c");
    assert_eq!(view.pending[0].reason, "Unschedulable");
    assert_eq!(view.pending[0].message, "0/1 nodes fit: cpu");

    let hello = &view.deployments[0];
    assert_eq!((hello.desired, hello.ready, hello.revision), (3, 2, 2));
    assert_eq!(hello.conditions[0].type_, "Available");
    assert_eq!(hello.requests_per_second, None);
    assert_eq!(hello.latency_ms, None);

    let reasons: Vec<&str> = view.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Scheduled", "ScalingReplicaSet"], "newest first");
    assert_eq!(view.events[0].object, "deployment/hello");

    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["deployments"][0]["ready"], 2);
    assert_eq!(json["nodes"][0]["allocated"]["cpuMillis"], 350);
    assert_eq!(json["events"][0]["type"], "Normal");
}

#[test]
fn the_view_keeps_only_the_latest_events() {
    let objects: Vec<Object> = (0..view::MAX_EVENTS + 10)
        .map(|i| {
            event_at(
                &format!("R{i:03}"),
                &format!("2026-11-22T10:{:02}:{:02}Z", i / 60, i % 60),
            )
        })
        .collect();
    let view = View::build(1, &objects, &HashMap::new(), jiff::Timestamp::UNIX_EPOCH);
    assert_eq!(view.events.len(), view::MAX_EVENTS);
    assert_eq!(
        view.events[0].reason,
        format!("R{:03}", view::MAX_EVENTS + 9)
    );
}

/// An instance's report: `millirequests` a second, 2 ms each on average
/// per 1,000 millirequests/s (so busier instances here are slower).
fn usage(uid: &str, millirequests: u64) -> InstanceUsage {
    InstanceUsage {
        uid: uid.into(),
        cpu_millicores: 10,
        memory_bytes: 1 << 20,
        millirequests_per_second: millirequests,
        mean_latency_micros: millirequests * 2,
        ..InstanceUsage::default()
    }
}

#[test]
fn request_rates_are_summed_over_a_deployments_instances_from_fresh_reports() {
    let objects = vec![
        deployment("hello", 2, 2),
        instance("hello-a", Some("n1"), "Running", "100m"),
        instance("hello-b", Some("n2"), "Running", "100m"),
        node("n1"),
        node("n2"),
    ];
    let now: jiff::Timestamp = "2026-11-22T10:01:00Z".parse().unwrap();
    let report = |instances| NodeUsage {
        cpu_millicores: 30,
        memory_bytes: 8 << 20,
        instances,
    };
    let mut reports = HashMap::from([
        (
            "n1".to_owned(),
            (now, report(vec![usage("uid-hello-a", 1500)])),
        ),
        (
            "n2".to_owned(),
            (now, report(vec![usage("uid-hello-b", 500)])),
        ),
    ]);
    let view = View::build(1, &objects, &reports, now);
    assert_eq!(view.deployments[0].requests_per_second, Some(2.0));
    // 1.5/s at 3 ms and 0.5/s at 1 ms: 2.5 ms weighted by rate.
    assert_eq!(view.deployments[0].latency_ms, Some(2.5));
    assert_eq!(view.nodes[0].used.unwrap().cpu_millis, 30);

    let long_ago = now - view::USAGE_STALE - jiff::SignedDuration::from_secs(1);
    reports.get_mut("n2").unwrap().0 = long_ago;
    let view = View::build(1, &objects, &reports, now);
    assert_eq!(
        view.deployments[0].requests_per_second,
        Some(1.5),
        "a stale report does not count"
    );
    assert_eq!(view.nodes[1].used, None);
}
