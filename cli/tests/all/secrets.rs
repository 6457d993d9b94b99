//! Secrets and ConfigMaps end to end: a Secret's value reaches the hello
//! component as `GREETING` and a ConfigMap's keys as variables, `get`
//! never prints the value unless asked with `--show-secrets`, the redb
//! file never holds it, a node's identity cannot read Secrets, and an
//! instance whose Secret is missing waits with Kubernetes' reason until
//! the Secret is applied.

use std::time::Duration;

use berth_api::quic;
use berth_api::wire::{ErrorCode, Request, Response};
use berth_api::{Kind, Object, Phase};

use crate::harness::{Cluster, http_get, http_get_path};

const VALUE: &str = "Greetings from a sealed secret";
/// `VALUE` in base64, as `data` holds it.
const ENCODED: &str = "R3JlZXRpbmdzIGZyb20gYSBzZWFsZWQgc2VjcmV0";

fn deployment(name: &str, secret: &str) -> String {
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
      component: {{component}}
      env:
        - name: GREETING
          valueFrom:
            secretKeyRef: {{name: {secret}, key: greeting}}
      envFrom:
        - configMapRef: {{name: flags}}
"
    )
}

const OBJECTS: &str = "apiVersion: berth.dev/v1
kind: Secret
metadata:
  name: greeting
type: Opaque
stringData:
  greeting: Greetings from a sealed secret
---
apiVersion: berth.dev/v1
kind: ConfigMap
metadata:
  name: flags
data:
  UNHEALTHY: \"yes\"
";

fn running(cluster: &Cluster, deployment: &str) -> bool {
    cluster.objects("instances").iter().any(|o| match o {
        Object::Instance(i) => {
            i.metadata.name.starts_with(&format!("{deployment}-"))
                && i.status.phase == Phase::Running
        }
        _ => false,
    })
}

#[test]
fn a_secret_reaches_the_component_and_is_shown_only_when_asked() {
    let cluster = Cluster::start(1);
    let objects = cluster.manifest("objects", OBJECTS);
    let app = cluster.manifest("app", &deployment("hello", "greeting"));
    let out = cluster.ok(&[
        "apply",
        "-f",
        objects.to_str().unwrap(),
        "-f",
        app.to_str().unwrap(),
    ]);
    assert!(out.contains("secret/greeting created"), "{out}");
    assert!(out.contains("configmap/flags created"), "{out}");
    cluster.wait_ready(1);

    // The Secret's value is the greeting; the ConfigMap's key is set.
    let ingress = cluster.nodes[0].ingress;
    let (status, body) = http_get(ingress, "hello.default.berth.localhost").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with(&format!("{VALUE}! (instance hello-")),
        "{body}"
    );
    let (status, _) =
        http_get_path(ingress, "hello.default.berth.localhost", "/health-env").unwrap();
    assert_eq!(status, 503, "UNHEALTHY from the ConfigMap is set");

    // `get` shows the type and how many keys, never the value.
    let table = cluster.ok(&["get", "secret", "greeting"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["greeting", "Opaque", "1"], "{table}");
    for format in ["yaml", "json"] {
        let shown = cluster.ok(&["get", "secret", "greeting", "-o", format]);
        assert!(shown.contains("greeting"), "{shown}");
        assert!(
            !shown.contains(VALUE) && !shown.contains(ENCODED),
            "{shown}"
        );
    }
    let described = cluster.ok(&["describe", "secret", "greeting"]);
    assert!(
        !described.contains(VALUE) && !described.contains(ENCODED),
        "{described}"
    );
    let configs = cluster.ok(&["get", "configmap", "flags", "-o", "yaml"]);
    assert!(
        configs.contains("UNHEALTHY: yes"),
        "ConfigMap values are shown: {configs}"
    );

    // Asked for, the value is there, base64 as Kubernetes shows it.
    let revealed = cluster.ok(&["get", "secret", "greeting", "-o", "yaml", "--show-secrets"]);
    assert!(
        revealed.contains(&format!("greeting: {ENCODED}")),
        "{revealed}"
    );
    let refused = cluster.berth(&["get", "configmap", "flags", "--show-secrets"]);
    assert!(!refused.status.success());
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "error: --show-secrets applies only to kind secret, not ConfigMap"
    );

    // At rest: the key lives beside the store, private; the store file
    // holds neither the value nor its base64.
    let data = &cluster.scheduler.data;
    let key = std::fs::metadata(data.join("secrets.key")).unwrap();
    assert_eq!(key.len(), 32);
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
    let raw = std::fs::read(data.join("berth.redb")).unwrap();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds(VALUE), "the redb file holds the secret value");
    assert!(
        !holds(ENCODED),
        "the redb file holds the secret value in base64"
    );

    // A node's identity reads no Secrets: neither redacted nor revealed.
    let node_dir = cluster.dir.path().join("node-node-0");
    let identity = quic::Identity {
        cert_chain_pem: std::fs::read_to_string(node_dir.join("node.crt")).unwrap(),
        key_pem: std::fs::read_to_string(node_dir.join("node.key")).unwrap(),
    };
    let ca = std::fs::read_to_string(node_dir.join("ca.crt")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = cluster.scheduler.addr;
        let endpoint =
            quic::client_endpoint(addr, quic::client_config(&identity, &ca).unwrap()).unwrap();
        let connection = quic::connect(&endpoint, addr).await.unwrap();
        let requests = [
            Request::Get {
                kind: Kind::Secret,
                namespace: Some("default".into()),
                name: Some("greeting".into()),
            },
            Request::Get {
                kind: Kind::Secret,
                namespace: None,
                name: None,
            },
            Request::RevealSecrets {
                namespace: None,
                name: None,
            },
        ];
        for request in requests {
            match quic::call(&connection, &request).await.unwrap() {
                Response::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{e}"),
                other => panic!("a node read secrets with {request:?}: {other:?}"),
            }
        }
    });
}

#[test]
fn an_instance_whose_secret_is_missing_waits_with_the_reason() {
    let cluster = Cluster::start(1);
    let flags = cluster.manifest(
        "flags",
        "apiVersion: berth.dev/v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  MODE: fast\n",
    );
    let app = cluster.manifest("waiting", &deployment("waiting", "later"));
    cluster.ok(&[
        "apply",
        "-f",
        flags.to_str().unwrap(),
        "-f",
        app.to_str().unwrap(),
    ]);

    let held = |cluster: &Cluster| {
        cluster
            .objects("instances")
            .into_iter()
            .find_map(|o| match o {
                Object::Instance(i)
                    if i.metadata.name.starts_with("waiting-")
                        && i.status.reason == "CreateContainerConfigError" =>
                {
                    Some(i)
                }
                _ => None,
            })
    };
    cluster.wait_for(
        "the instance held with CreateContainerConfigError",
        Duration::from_secs(60),
        || held(&cluster).is_some(),
    );
    let instance = held(&cluster).unwrap();
    assert_eq!(instance.status.phase, Phase::Pending);
    assert_eq!(instance.status.message, "secret \"later\" not found");
    assert!(instance.spec.node_name.is_some(), "bound, and held back");
    let described = cluster.ok(&["describe", "instance", &instance.metadata.name]);
    assert!(
        described.contains("CreateContainerConfigError"),
        "{described}"
    );
    assert!(
        described.contains("Error: secret \"later\" not found"),
        "{described}"
    );
    // Never started: the node has nothing to serve.
    let (status, _) =
        http_get(cluster.nodes[0].ingress, "waiting.default.berth.localhost").unwrap();
    assert_ne!(status, 200);

    // The Secret arrives: the instance starts with its value.
    let secret = cluster.manifest(
        "later",
        &format!(
            "apiVersion: berth.dev/v1\nkind: Secret\nmetadata:\n  name: later\ndata:\n  greeting: {ENCODED}\n"
        ),
    );
    cluster.ok(&["apply", "-f", secret.to_str().unwrap()]);
    cluster.wait_for("the instance running", Duration::from_secs(90), || {
        running(&cluster, "waiting")
    });
    let (status, body) =
        http_get(cluster.nodes[0].ingress, "waiting.default.berth.localhost").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(VALUE), "{body}");

    // Deleted while in use: the instance is taken off its node and held
    // again, rather than left to run on config that no longer exists.
    cluster.ok(&["delete", "secret", "later"]);
    cluster.wait_for("the instance held again", Duration::from_secs(60), || {
        held(&cluster).is_some_and(|i| i.status.phase == Phase::Pending)
    });
    cluster.wait_for(
        "the node to stop serving it",
        Duration::from_secs(60),
        || {
            http_get(cluster.nodes[0].ingress, "waiting.default.berth.localhost")
                .is_ok_and(|(status, _)| status != 200)
        },
    );
}
