//! What `get -o yaml|json` prints, `apply -f -` takes back without change,
//! for every kind a user applies: one object by name, or the whole kind as
//! a `List`; `diff -f -` of the same finds nothing; no resourceVersion
//! moves. The templates without resources take the LimitRange's
//! defaults. Also the short kind names (`deploy`, `inst`, `svc`, `ns`) for
//! `get`, `describe` and `delete`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_api::Kind;

use crate::harness::{Cluster, hello_wasm};

/// Each user-applied kind by the name `get` takes, with a manifest of one
/// object of it (`{hello}` and `{job}` stand for component paths).
const KINDS: [(&str, &str); 19] = [
    (
        "namespaces",
        "apiVersion: berth.dev/v1
kind: Namespace
metadata:
  name: team
  labels: {owner: web}
",
    ),
    (
        "priorityclasses",
        "apiVersion: berth.dev/v1
kind: PriorityClass
metadata:
  name: important
value: 1000
description: what must keep running
",
    ),
    (
        "limitranges",
        "apiVersion: berth.dev/v1
kind: LimitRange
metadata:
  name: defaults
  namespace: team
spec:
  limits:
    - type: Instance
      default: {memory: 64Mi}
      defaultRequest: {cpu: 50m, memory: 32Mi}
      max: {memory: 1Gi}
",
    ),
    (
        "resourcequotas",
        "apiVersion: berth.dev/v1
kind: ResourceQuota
metadata:
  name: team
  namespace: team
spec:
  hard:
    count/instances: \"50\"
    count/deployments: \"10\"
",
    ),
    (
        "deployments",
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hello
  namespace: team
  labels: {app: hello}
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      component: {hello}
      priorityClassName: important
      env:
        - name: GREETING
          value: Hello from berth
      resources:
        requests: {cpu: 100m, memory: 32Mi}
        limits: {memory: 64Mi}
",
    ),
    (
        "jobs",
        "apiVersion: berth.dev/v1
kind: Job
metadata:
  name: once
  namespace: team
spec:
  completions: 2
  backoffLimit: 3
  template:
    spec:
      component: {job}
      restartPolicy: Never
",
    ),
    (
        "services",
        "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: hello
  namespace: team
spec:
  selector: {app: hello}
  ports:
    - name: http
      port: 80
",
    ),
    (
        "daemonsets",
        "apiVersion: berth.dev/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: team
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      component: {hello}
      nodeSelector: {role: agent}
",
    ),
    (
        "cronjobs",
        "apiVersion: berth.dev/v1
kind: CronJob
metadata:
  name: yearly
  namespace: team
spec:
  schedule: \"0 0 1 1 *\"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          component: {job}
          restartPolicy: Never
",
    ),
    (
        "ingresses",
        "apiVersion: berth.dev/v1
kind: Ingress
metadata:
  name: shop
  namespace: team
spec:
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend:
              service:
                name: hello
                port: {number: 80}
",
    ),
    (
        "poddisruptionbudgets",
        "apiVersion: berth.dev/v1
kind: PodDisruptionBudget
metadata:
  name: hello
  namespace: team
spec:
  selector:
    matchLabels: {app: hello}
  minAvailable: 1
",
    ),
    (
        "horizontalautoscalers",
        "apiVersion: berth.dev/v1
kind: HorizontalAutoscaler
metadata:
  name: hello
  namespace: team
spec:
  scaleTargetRef: {kind: Deployment, name: hello}
  minReplicas: 2
  maxReplicas: 4
  targetRequestsPerSecond: 50
",
    ),
    (
        "roles",
        "apiVersion: berth.dev/v1
kind: Role
metadata:
  name: reader
  namespace: team
rules:
- verbs: [get, list]
  resources: [deployments, services]
- verbs: [get]
  resources: [instances]
  resourceNames: [hello-0]
",
    ),
    (
        "rolebindings",
        "apiVersion: berth.dev/v1
kind: RoleBinding
metadata:
  name: readers
  namespace: team
roleRef:
  kind: Role
  name: reader
subjects:
- kind: User
  name: alice
",
    ),
    (
        "clusterroles",
        "apiVersion: berth.dev/v1
kind: ClusterRole
metadata:
  name: node-reader
rules:
- verbs: [get, list, watch]
  resources: [nodes]
",
    ),
    (
        "clusterrolebindings",
        "apiVersion: berth.dev/v1
kind: ClusterRoleBinding
metadata:
  name: node-readers
roleRef:
  kind: ClusterRole
  name: node-reader
subjects:
- kind: User
  name: alice
",
    ),
    (
        "configmaps",
        "apiVersion: berth.dev/v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
  labels: {app: hello}
data:
  MODE: fast
  LEVEL: \"3\"
",
    ),
    // `get` empties a Secret's values, so only a Secret whose values are
    // empty reads back as applied (`--show-secrets` shows the others).
    (
        "secrets",
        "apiVersion: berth.dev/v1
kind: Secret
metadata:
  name: placeholder
  namespace: team
  labels: {app: hello}
type: Opaque
data:
  token: \"\"
",
    ),
    (
        "networkpolicies",
        "apiVersion: berth.dev/v1
kind: NetworkPolicy
metadata:
  name: web-from-team
  namespace: team
  labels: {app: hello}
spec:
  podSelector:
    matchLabels: {app: hello}
  policyTypes: [Ingress]
  ingress:
    - from:
        - namespaceSelector:
            matchLabels: {tenant: team}
          podSelector:
            matchLabels: {role: client}
        - podSelector:
            matchLabels: {app: hello}
",
    ),
];

/// Every user-applied object's resourceVersion, by `Kind namespace/name`.
fn versions(cluster: &Cluster) -> BTreeMap<String, String> {
    KINDS
        .iter()
        .flat_map(|(kind, _)| cluster.objects(kind))
        .map(|o| {
            let version = o.metadata().resource_version.clone().unwrap_or_default();
            (o.describe(), version)
        })
        .collect()
}

/// The resourceVersions once the controllers have stopped writing: two
/// reads a second and a half apart agree.
fn settled_versions(cluster: &Cluster) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = versions(cluster);
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = versions(cluster);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "objects keep changing: {now:?}");
        last = now;
    }
}

/// Applies `text` through stdin; asserts success and that every object
/// it names is `unchanged`; returns how many.
fn apply_unchanged(cluster: &Cluster, what: &str, text: &str) -> usize {
    let out = cluster.berth_with_stdin(&["apply", "-f", "-"], text);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().all(|l| l.ends_with(" unchanged")),
        "{what}: {stdout}"
    );
    let out = cluster.berth_with_stdin(&["diff", "-f", "-"], text);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: diff: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().count()
}

#[test]
fn get_output_applies_back_unchanged_for_every_kind() {
    // Every kind a user applies has a manifest here.
    for kind in Kind::ALL.into_iter().filter(|k| k.is_user_managed()) {
        assert!(
            KINDS
                .iter()
                .any(|(name, _)| Kind::from_cli_name(name) == Some(kind)),
            "no round-trip manifest for {kind}"
        );
    }
    // No node: instances stay Pending and nothing rewrites the objects
    // once the controllers have set their status.
    let cluster = Cluster::start(0);
    let manifest = KINDS
        .iter()
        .map(|(_, yaml)| {
            yaml.replace("{hello}", &hello_wasm().display().to_string())
                .replace("{job}", berth_test_programs::JOB)
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let path = cluster.dir.path().join("all.yaml");
    std::fs::write(&path, manifest).unwrap();
    let out = cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(out.lines().count(), KINDS.len(), "{out}");
    assert!(out.lines().all(|l| l.ends_with(" created")), "{out}");

    let before = settled_versions(&cluster);
    for (kind, _) in KINDS {
        // The whole kind, as a List, in YAML and JSON, in all namespaces
        // and in the default one.
        let objects = cluster.objects(kind);
        assert!(!objects.is_empty(), "no {kind}");
        for format in ["yaml", "json"] {
            let text = cluster.ok(&["get", kind, "-A", "-o", format]);
            assert!(
                text.contains("kind: List") || text.contains("\"kind\": \"List\""),
                "{text}"
            );
            let applied = apply_unchanged(&cluster, &format!("get {kind} -A -o {format}"), &text);
            assert_eq!(applied, objects.len(), "{kind}");
        }
        let in_default = cluster.ok(&["get", kind, "-o", "yaml"]);
        if objects
            .iter()
            .any(|o| o.namespace().is_none_or(|ns| ns == "default"))
        {
            apply_unchanged(&cluster, &format!("get {kind} -o yaml"), &in_default);
        }
        // Each object by name.
        for object in &objects {
            let name = &object.metadata().name;
            let mut args = vec!["get", kind, name.as_str(), "-o", "yaml"];
            if let Some(namespace) = object.namespace() {
                args.extend(["-n", namespace]);
            }
            let text = cluster.ok(&args);
            assert!(!text.contains("kind: List"), "{text}");
            let applied = apply_unchanged(&cluster, &format!("{args:?}"), &text);
            assert_eq!(applied, 1);
        }
    }
    assert_eq!(versions(&cluster), before, "a round trip changed an object");

    // The cluster's own kinds print as Lists too, but are not applied.
    let text = cluster.ok(&["get", "instances", "-A", "-o", "yaml"]);
    assert!(text.starts_with("apiVersion: v1\nkind: List\n"), "{text}");
    let out = cluster.berth_with_stdin(&["apply", "-f", "-"], &text);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("items[0].kind: Instance objects are created by the cluster"),
        "{stderr}"
    );

    // Short names: get, describe and delete.
    let instance = cluster.objects("instances")[0].metadata().name.clone();
    for (short, name) in [
        ("deploy", "hello"),
        ("inst", instance.as_str()),
        ("svc", "hello"),
    ] {
        let listed = cluster.ok(&["get", short, "-n", "team", "-o", "name"]);
        assert!(listed.contains(&format!("/{name}\n")), "{short}: {listed}");
        let described = cluster.ok(&["describe", short, name, "-n", "team"]);
        assert!(
            described.starts_with(&format!("Name:             {name}\n")),
            "{described}"
        );
    }
    let described = cluster.ok(&["describe", "ns", "team"]);
    assert!(
        described.starts_with("Name:             team\n"),
        "{described}"
    );
    assert_eq!(
        cluster.ok(&["get", "ns", "team", "-o", "name"]),
        "namespace/team\n"
    );
    for (short, name) in [
        ("svc", "hello"),
        ("inst", instance.as_str()),
        ("deploy", "hello"),
    ] {
        let out = cluster.ok(&["delete", short, name, "-n", "team"]);
        assert!(out.ends_with(" deleted\n"), "{short}: {out}");
    }
    cluster.ok(&["delete", "ns", "team"]);
    let out = cluster.berth(&["get", "deploy", "hello", "-n", "team"]);
    assert!(!out.status.success());
}
