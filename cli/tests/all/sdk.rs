//! Components written with berth-sdk, end to end on a real scheduler and
//! node: the `json-api` example's routes answer through the ingress (JSON,
//! 404, 405, 400), its structured log line reaches `berth logs`; the
//! `call-service` example calls `hello` through a Service by name (short
//! and namespaced); `hello-sdk` answers; the `job-sdk` example runs as a
//! Job and its output, logs and exit code are recorded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_api::job::JobConditionType;
use berth_api::{Object, Phase};

use crate::harness::{Cluster, hello_wasm};

/// An HTTP response as the tests see it.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    allow: String,
    body: String,
}

/// Sends `method path` with `body` to `host` through `ingress`.
fn request(
    ingress: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        use http_body_util::BodyExt as _;
        let stream = tokio::net::TcpStream::connect(ingress)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (status, content_type, allow) = (
            response.status().as_u16(),
            header("content-type"),
            header("allow"),
        );
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            allow,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    })
}

/// A one-replica Deployment `name` of `component` labelled `app: name`,
/// with `env` (`NAME: value` pairs).
fn deployment(name: &str, component: &str, env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - {{name: {k}, value: \"{v}\"}}\n"))
        .collect();
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {component}
      env:
{env}"
    )
}

/// GETs `path` of Deployment `name` until the answer's status is `status`
/// (instances and Service endpoints come up a moment after `apply`);
/// returns that answer.
fn answer_when(cluster: &Cluster, name: &str, path: &str, status: u16) -> Answer {
    let host = format!("{name}.default.berth.localhost");
    let mut last = Err(String::new());
    cluster.wait_for(
        &format!("{name}{path} to answer {status}"),
        Duration::from_secs(90),
        || {
            last = request(cluster.nodes[0].ingress, &host, "GET", path, "");
            last.as_ref().is_ok_and(|a| a.status == status)
        },
    );
    last.unwrap()
}

#[test]
fn sdk_components_route_json_and_call_a_service() {
    let cluster = Cluster::start(1);
    let json_api = berth_test_programs::JSON_API;
    let call_service = berth_test_programs::CALL_SERVICE;
    let manifest = [
        deployment("json-api", json_api, &[("CATALOGUE", "harbour")]),
        deployment("hello", &hello_wasm().display().to_string(), &[]),
        "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: hello
spec:
  selector:
    app: hello
  ports:
    - port: 80
"
        .to_owned(),
        deployment("call-service", call_service, &[]),
        deployment(
            "call-service-ns",
            call_service,
            &[("SERVICE", "hello.default")],
        ),
        deployment("hello-sdk", berth_test_programs::HELLO_SDK, &[]),
    ]
    .join("---\n");
    let path = cluster.dir.path().join("sdk.yaml");
    std::fs::write(&path, manifest).unwrap();
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);

    // Routing and JSON.
    let list = answer_when(&cluster, "json-api", "/items", 200);
    assert_eq!(list.content_type, "application/json", "{list:?}");
    let items: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    assert_eq!(items.as_array().map(Vec::len), Some(3), "{list:?}");
    assert_eq!(items[0], serde_json::json!({"id": 1, "name": "anchor"}));

    let ingress = cluster.nodes[0].ingress;
    let host = "json-api.default.berth.localhost";
    let call =
        |method: &str, path: &str, body: &str| request(ingress, host, method, path, body).unwrap();
    let item = call("GET", "/items/2", "");
    assert_eq!(item.status, 200, "{item:?}");
    let item: serde_json::Value = serde_json::from_str(&item.body).unwrap();
    assert_eq!(item, serde_json::json!({"id": 2, "name": "buoy"}));

    let missing = call("GET", "/items/9", "");
    assert_eq!(
        (missing.status, missing.body.as_str()),
        (404, "error: no item 9\n")
    );
    let unknown = call("GET", "/nowhere", "");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.body, "error: no route for /nowhere\n");
    let bad_id = call("GET", "/items/two", "");
    assert_eq!(bad_id.status, 400, "{bad_id:?}");
    assert!(bad_id.body.contains("path parameter id"), "{bad_id:?}");
    let wrong_method = call("DELETE", "/items", "");
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_eq!(wrong_method.allow, "GET, POST", "{wrong_method:?}");

    let created = call("POST", "/items", r#"{"name": "davit"}"#);
    assert_eq!(created.status, 201, "{created:?}");
    let created: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    assert_eq!(created, serde_json::json!({"id": 4, "name": "davit"}));
    let invalid = call("POST", "/items", r#"{"title": "davit"}"#);
    assert_eq!(invalid.status, 400, "{invalid:?}");
    assert!(invalid.body.contains("missing field `name`"), "{invalid:?}");

    // Configuration given by the platform.
    let info = call("GET", "/info", "");
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["catalogue"], "harbour", "{info}");
    assert_eq!(info["namespace"], "default", "{info}");
    assert!(
        info["instance"].as_str().unwrap().starts_with("json-api-"),
        "{info}"
    );

    // The structured log line of the POST reached `berth logs`.
    let logs = logs_containing(&cluster, "deployment/json-api", "\"msg\":\"created item\"");
    let line = logs.lines().find(|l| l.contains("created item")).unwrap();
    assert!(line.contains(" stderr "), "{logs}");
    let json: serde_json::Value = serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap();
    assert_eq!(json["level"], "info", "{line}");
    assert_eq!(json["id"], 4, "{line}");
    assert_eq!(json["name"], "davit", "{line}");

    // A service calling another by name, no allowedOutboundHosts needed.
    let called = answer_when(&cluster, "call-service", "/", 200);
    assert!(
        called
            .body
            .starts_with("hello answered 200: Hello from berth! (instance hello-"),
        "{called:?}"
    );
    let not_found = answer_when(&cluster, "call-service", "/nowhere", 200);
    assert_eq!(
        not_found.body, "hello answered 404: not found\n",
        "{not_found:?}"
    );
    // The namespaced form, `NAME.NAMESPACE`, reaches it too.
    let called = answer_when(&cluster, "call-service-ns", "/", 200);
    assert!(
        called
            .body
            .starts_with("hello.default answered 200: Hello from berth!"),
        "{called:?}"
    );

    // The smallest component.
    let hello = answer_when(&cluster, "hello-sdk", "/anything", 200);
    assert!(
        hello
            .body
            .starts_with("Hello from berth-sdk! (instance hello-sdk-"),
        "{hello:?}"
    );
    assert_eq!(hello.content_type, "text/plain; charset=utf-8");
}

/// What `berth logs target` prints; empty while the instance has no log
/// yet (a sandbox sends its output to the node every 100 ms).
fn logs_of(cluster: &Cluster, target: &str) -> String {
    let out = cluster.berth(&["logs", target]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        eprintln!(
            "berth logs {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::new()
    }
}

/// The logs of `instance` once they contain `want`.
fn logs_containing(cluster: &Cluster, instance: &str, want: &str) -> String {
    let mut logs = String::new();
    cluster.wait_for(
        &format!("{instance}'s logs to contain {want:?}"),
        Duration::from_secs(30),
        || {
            logs = logs_of(cluster, instance);
            logs.contains(want)
        },
    );
    logs
}

/// The `job-sdk` example.
fn job_sdk_wasm() -> PathBuf {
    PathBuf::from(berth_test_programs::JOB_SDK)
}

/// A Job `name` running job-sdk once with `env`.
fn job_yaml(name: &str, env: &[(&str, &str)]) -> String {
    let env: String = env
        .iter()
        .map(|(k, v)| format!("        - {{name: {k}, value: \"{v}\"}}\n"))
        .collect();
    format!(
        "apiVersion: berth.dev/v1
kind: Job
metadata:
  name: {name}
spec:
  backoffLimit: 0
  template:
    spec:
      component: {}
      restartPolicy: Never
      env:
{env}",
        job_sdk_wasm().display()
    )
}

/// The single run of Job `name` once it has finished: its instance name,
/// phase and exit code.
fn finished_run(cluster: &Cluster, name: &str) -> (String, Phase, Option<i32>) {
    let mut run = None;
    cluster.wait_for(
        &format!("job {name} to finish"),
        Duration::from_secs(90),
        || {
            run = cluster
                .objects("instances")
                .into_iter()
                .find_map(|o| match o {
                    Object::Instance(i)
                        if i.metadata
                            .owner_references
                            .iter()
                            .any(|r| r.kind == "Job" && r.name == name)
                            && matches!(i.status.phase, Phase::Succeeded | Phase::Failed) =>
                    {
                        Some((i.metadata.name.clone(), i.status.phase, i.status.exit_code))
                    }
                    _ => None,
                });
            run.is_some()
        },
    );
    run.unwrap()
}

#[test]
fn an_sdk_job_runs_to_completion_with_its_exit_code_and_logs() {
    let cluster = Cluster::start(1);
    let manifest = [
        job_yaml("sum", &[("COUNT", "100")]),
        job_yaml("bad-count", &[("COUNT", "lots")]),
        job_yaml("code", &[("COUNT", "3"), ("EXIT_CODE", "7")]),
    ]
    .join("---\n");
    let path = cluster.dir.path().join("jobs.yaml");
    std::fs::write(&path, manifest).unwrap();
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);

    let (instance, phase, code) = finished_run(&cluster, "sum");
    assert_eq!((phase, code), (Phase::Succeeded, Some(0)));
    let logs = logs_containing(&cluster, &instance, "job done");
    assert!(logs.contains(" stdout sum 1..=100 = 5050\n"), "{logs}");
    assert!(
        logs.contains(r#" stderr {"level":"info","msg":"job done","total":5050,"#),
        "{logs}"
    );

    let (instance, phase, code) = finished_run(&cluster, "bad-count");
    assert_eq!((phase, code), (Phase::Failed, Some(1)));
    let logs = logs_containing(&cluster, &instance, "error");
    assert!(
        logs.contains(r#"{"level":"error","msg":"error: config COUNT=\"lots\" is invalid"#),
        "{logs}"
    );

    let (_, phase, code) = finished_run(&cluster, "code");
    assert_eq!((phase, code), (Phase::Failed, Some(7)));
    let job = cluster.objects("jobs").into_iter().find_map(|o| match o {
        Object::Job(j) if j.metadata.name == "sum" => Some(j),
        _ => None,
    });
    assert!(job.unwrap().status.is(JobConditionType::Complete));
}
