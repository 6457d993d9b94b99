//! Linux containers end to end: an image built from Debian's busybox-static,
//! pushed to a real registry (Debian's `docker-registry`), run by runc on a
//! node offering `oci`, served through the ingress and called by a
//! component through a Service; OOM kills, restarts
//! with back-off, logs, a Wasm-only node that never gets a container, and
//! a node restarted after `kill -9` that removes what it left.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_api::{Instance, Object, Phase};
use berth_node::oci::image::{ImageConfig, pack_directory, push_layout};

use crate::harness::{Cluster, NodeProc, Registry, http_get_path};

const WEB_HOST: &str = "web.default.berth.localhost";

/// Whether this machine can run the tests: busybox, runc and the registry
/// are installed (`.ci/run` installs them) and we are root.
fn prerequisites() -> bool {
    let missing: Vec<&str> = ["/bin/busybox", "/usr/sbin/runc", "/usr/bin/docker-registry"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("BERTH_REQUIRE_CONTAINERS").is_none(),
        "{} not installed",
        missing.join(", ")
    );
    eprintln!("skipping: {} not installed", missing.join(", "));
    false
}

/// A busybox image whose `/www/index.html` says `text`; the default
/// command serves `/www` on port 8080 and writes the instance's name to
/// `/run/www/who` first.
fn busybox_layout(dir: &Path, text: &str) -> PathBuf {
    let root = dir.join("image-root");
    for sub in ["bin", "www", "run", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "httpd", "cat", "echo", "mkdir", "cp", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), text).unwrap();
    let config = ImageConfig {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec![
            "mkdir -p /run/www && cp /www/index.html /run/www/ && echo $BERTH_INSTANCE > /run/www/who && echo serving $BERTH_INSTANCE && exec httpd -f -p 8080 -h /run/www".into(),
        ],
        env: vec!["PATH=/bin".into()],
        working_dir: Some("/".into()),
        user: None,
        exposed_ports: vec![8080],
    };
    let layout = dir.join("layout");
    pack_directory(&root, &config, &layout, "1").unwrap();
    layout
}

/// Builds the image and pushes it as `REGISTRY/web:1`; returns that name.
fn push_web_image(dir: &Path, registry: &Registry) -> String {
    let layout = busybox_layout(dir, "hello from a container\n");
    let reference = format!("{}/web:1", registry.addr);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(push_layout(&layout, "1", &reference))
        .unwrap();
    reference
}

/// A scheduler, a Wasm-only `node-0` and a `node-1` running containers.
fn mixed_cluster() -> Cluster {
    let mut cluster = Cluster::start(1);
    let node = NodeProc::start_with(
        cluster.dir.path(),
        &cluster.scheduler,
        "node-1",
        &["--runtime", "wasm,oci"],
    );
    cluster.nodes.push(node);
    cluster
}

fn web_yaml(image: &str, replicas: u32, extra: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      image: {image}
      ports:
        - containerPort: 8080
      terminationGracePeriodSeconds: 2
      readinessProbe:
        httpGet: {{path: /index.html}}
        periodSeconds: 1
{extra}"
    )
}

/// A Deployment of the caller component pinned to `node`, calling the
/// `web` Service.
fn caller_yaml(name: &str, node: &str) -> String {
    format!(
        "---
apiVersion: berth.dev/v1
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
      component: {}
      nodeName: {node}
      env:
        - {{name: UPSTREAM, value: \"http://web.default.svc/index.html\"}}
",
        berth_test_programs::CALLER
    )
}

fn instances_of(cluster: &Cluster, owner: &str) -> Vec<Instance> {
    cluster
        .objects("instances")
        .into_iter()
        .filter_map(|o| match o {
            Object::Instance(i)
                if i.metadata.deletion_timestamp.is_none()
                    && i.metadata.owner_references.iter().any(|r| r.name == owner) =>
            {
                Some(*i)
            }
            _ => None,
        })
        .collect()
}

/// The container ids in a node's runtime state directory.
fn runc_list(cluster: &Cluster, node: &str) -> Vec<String> {
    let state = cluster.dir.path().join(format!("node-{node}/oci/state"));
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["list", "--quiet"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The pid of container `id`'s first process, from `runc state`.
fn container_pid(cluster: &Cluster, node: &str, id: &str) -> Option<u32> {
    let state = cluster.dir.path().join(format!("node-{node}/oci/state"));
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["state", id])
        .output()
        .ok()?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    state
        .get("pid")?
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

#[test]
fn containers_from_a_registry_serve_through_the_ingress() {
    if !prerequisites() {
        return;
    }
    let cluster = mixed_cluster();
    let registry = Registry::start(cluster.dir.path());
    let image = push_web_image(cluster.dir.path(), &registry);
    let manifest = cluster.manifest("web.yaml", &web_yaml(&image, 2, ""));
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "deployment/web created\n");

    cluster.wait_for("2 ready containers", Duration::from_secs(90), || {
        let instances = instances_of(&cluster, "web");
        instances.len() == 2
            && instances
                .iter()
                .all(|i| i.status.phase == Phase::Running && i.status.ready)
    });
    for instance in instances_of(&cluster, "web") {
        assert_eq!(
            instance.spec.node_name.as_deref(),
            Some("node-1"),
            "only the oci node runs containers"
        );
    }
    let ingress = cluster.nodes[1].ingress;
    let (status, body) = http_get_path(ingress, WEB_HOST, "/index.html").unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from a container\n"));

    // Both replicas answer: each wrote its own name.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        let (status, body) = http_get_path(ingress, WEB_HOST, "/who").unwrap();
        assert_eq!(status, 200, "{body}");
        seen.insert(body.trim().to_owned());
    }
    assert!(seen.iter().all(|name| name.starts_with("web-")), "{seen:?}");
    let logs = cluster.ok(&["logs", "deployment/web"]);
    assert!(logs.contains("serving web-"), "{logs}");

    // A component calls the containers by Service name, from the
    // Wasm-only node and from the containers' own node.
    let callers = format!(
        "apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
{}{}",
        caller_yaml("caller-0", "node-0"),
        caller_yaml("caller-1", "node-1")
    );
    let path = cluster.manifest("callers.yaml", &callers);
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);
    for (node, caller) in [(0, "caller-0"), (1, "caller-1")] {
        let host = format!("{caller}.default.berth.localhost");
        let mut last = String::new();
        cluster.wait_for(
            &format!("{caller} answered"),
            Duration::from_secs(90),
            || {
                last = match http_get_path(cluster.nodes[node].ingress, &host, "/") {
                    Ok((status, body)) => format!("{status} {body}"),
                    Err(e) => e,
                };
                last.starts_with("200 ")
            },
        );
        assert_eq!(last, "200 upstream 200 OK: hello from a container\n");
    }

    // A container pinned to the Wasm-only node stays Pending, saying why.
    let pinned = cluster.manifest(
        "pinned.yaml",
        &web_yaml(
            &image,
            1,
            "      nodeSelector: {berth.dev/hostname: node-0}\n",
        )
        .replace("name: web", "name: pinned")
        .replace("app: web", "app: pinned"),
    );
    cluster.ok(&["apply", "-f", pinned.to_str().unwrap()]);
    cluster.wait_for(
        "the pinned container Pending",
        Duration::from_secs(30),
        || {
            instances_of(&cluster, "pinned").iter().any(|i| {
                i.status.phase == Phase::Pending
                    && i.status.message.contains("did not offer runtime oci")
            })
        },
    );
    let pending = &instances_of(&cluster, "pinned")[0];
    assert_eq!(pending.spec.node_name, None, "{:?}", pending.status);

    // Deleted: the containers and their files are gone from the node.
    cluster.ok(&["delete", "deployment", "web"]);
    cluster.wait_for("the containers removed", Duration::from_secs(60), || {
        runc_list(&cluster, "node-1").is_empty()
    });
    let subtree =
        berth_node::sandbox::cgroup_subtree("node-1", &cluster.dir.path().join("node-node-1"));
    let cgroups = Path::new("/sys/fs/cgroup/memory/berth").join(format!("{subtree}-oci"));
    if cgroups.exists() {
        let left: Vec<_> = std::fs::read_dir(&cgroups)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "container cgroups left: {left:?}");
    }
    let containers = cluster.dir.path().join("node-node-1/oci/containers");
    cluster.wait_for(
        "container directories removed",
        Duration::from_secs(10),
        || std::fs::read_dir(&containers).unwrap().next().is_none(),
    );
}

#[test]
fn containers_are_oom_killed_restarted_probed_and_logged() {
    if !prerequisites() {
        return;
    }
    let cluster = mixed_cluster();
    let registry = Registry::start(cluster.dir.path());
    let image = push_web_image(cluster.dir.path(), &registry);
    let manifests = format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: hog
spec:
  replicas: 1
  selector:
    matchLabels: {{app: hog}}
  template:
    metadata:
      labels: {{app: hog}}
    spec:
      image: {image}
      command: [/bin/sh, -c]
      args: ['echo eating; x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done']
      resources:
        limits: {{memory: 32Mi}}
---
apiVersion: berth.dev/v1
kind: Job
metadata:
  name: flaky
spec:
  backoffLimit: 10
  template:
    spec:
      image: {image}
      command: [/bin/sh, -c, 'echo failing run; exit 1']
      restartPolicy: OnFailure
---
apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: probed
spec:
  replicas: 1
  selector:
    matchLabels: {{app: probed}}
  template:
    metadata:
      labels: {{app: probed}}
    spec:
      image: {image}
      ports:
        - containerPort: 8080
      readinessProbe:
        exec: {{command: [cat, /run/www/who]}}
        periodSeconds: 1
      livenessProbe:
        tcpSocket: {{port: 9999}}
        initialDelaySeconds: 4
        periodSeconds: 1
        failureThreshold: 2
"
    );
    let path = cluster.manifest("lifecycle.yaml", &manifests);
    cluster.ok(&["apply", "-f", path.to_str().unwrap()]);

    cluster.wait_for(
        "the hog OOMKilled and restarted",
        Duration::from_secs(90),
        || {
            instances_of(&cluster, "hog").iter().any(|i| {
                i.status.restart_count >= 1
                    && (i.status.reason == "OOMKilled"
                        || i.status.message.contains("last termination: OOMKilled"))
            })
        },
    );
    let hog = &instances_of(&cluster, "hog")[0];
    assert_eq!(hog.status.exit_code, Some(137), "{:?}", hog.status);

    cluster.wait_for(
        "the flaky Job restarted with back-off",
        Duration::from_secs(90),
        || {
            instances_of(&cluster, "flaky")
                .iter()
                .any(|i| i.status.restart_count >= 2 && i.status.reason == "CrashLoopBackOff")
        },
    );
    let flaky = &instances_of(&cluster, "flaky")[0];
    assert_eq!(flaky.status.exit_code, Some(1), "{:?}", flaky.status);
    assert!(
        flaky.status.message.contains("back-off"),
        "{}",
        flaky.status.message
    );
    let logs = cluster.ok(&["logs", &flaky.metadata.name]);
    assert!(
        logs.matches("failing run").count() >= 2,
        "each run's output is kept: {logs}"
    );

    // The exec readiness probe passes (the file exists once it serves);
    // the tcpSocket liveness probe on a closed port restarts it.
    cluster.wait_for(
        "the probed container ready",
        Duration::from_secs(60),
        || {
            instances_of(&cluster, "probed")
                .iter()
                .any(|i| i.status.ready)
        },
    );
    cluster.wait_for(
        "the probed container restarted by liveness",
        Duration::from_secs(90),
        || {
            instances_of(&cluster, "probed").iter().any(|i| {
                i.status.restart_count >= 1
                    && (i.status.message.contains("dial tcp 127.0.0.1:9999")
                        || i.status.message.contains("Liveness probe failed"))
            })
        },
    );
}

#[test]
fn a_node_restarted_after_kill_removes_the_containers_it_left() {
    if !prerequisites() {
        return;
    }
    let mut cluster = mixed_cluster();
    let registry = Registry::start(cluster.dir.path());
    let image = push_web_image(cluster.dir.path(), &registry);
    let manifest = cluster.manifest("web.yaml", &web_yaml(&image, 1, ""));
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for("a ready container", Duration::from_secs(90), || {
        instances_of(&cluster, "web")
            .iter()
            .any(|i| i.status.phase == Phase::Running && i.status.ready)
    });
    let before = runc_list(&cluster, "node-1");
    assert_eq!(before.len(), 1, "{before:?}");
    let old_pid = container_pid(&cluster, "node-1", &before[0]).unwrap();

    cluster.nodes[1].kill();
    assert!(
        Path::new(&format!("/proc/{old_pid}")).exists(),
        "the container outlives its node"
    );
    let node = NodeProc::start_with(
        cluster.dir.path(),
        &cluster.scheduler,
        "node-1",
        &["--runtime", "wasm,oci"],
    );
    cluster.nodes[1] = node;
    cluster.wait_for("the old container gone", Duration::from_secs(60), || {
        !Path::new(&format!("/proc/{old_pid}")).exists()
    });
    cluster.wait_for("the instance served again", Duration::from_secs(90), || {
        matches!(
            http_get_path(cluster.nodes[1].ingress, WEB_HOST, "/index.html"),
            Ok((200, _))
        )
    });
    let listed = runc_list(&cluster, "node-1");
    assert_eq!(listed.len(), 1, "exactly one container runs: {listed:?}");
}

/// Also an oci-only node (no `wasm`), with the runtime named explicitly.
#[test]
fn a_read_only_container_writes_to_its_volume() {
    if !prerequisites() {
        return;
    }
    let mut cluster = Cluster::start(0);
    let node = NodeProc::start_with(
        cluster.dir.path(),
        &cluster.scheduler,
        "node-1",
        &["--runtime", "oci", "--oci-runtime", "/usr/sbin/runc"],
    );
    cluster.nodes.push(node);
    let registry = Registry::start(cluster.dir.path());
    let image = push_web_image(cluster.dir.path(), &registry);
    let extra = "      command: [/bin/sh, -c]
      args:
        - (echo > /written) 2>/dev/null && echo root writable || echo root read-only;
          mkdir -p /run/www && cp /www/index.html /run/www/ && exec httpd -f -p 8080 -h /run/www
      securityContext: {readOnlyRootFilesystem: true}
      volumes:
        - name: scratch
          emptyDir: {}
      volumeMounts:
        - {name: scratch, mountPath: /run/www}
";
    let manifest = cluster.manifest("web.yaml", &web_yaml(&image, 1, extra));
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for("a ready container", Duration::from_secs(90), || {
        instances_of(&cluster, "web")
            .iter()
            .any(|i| i.status.phase == Phase::Running && i.status.ready)
    });
    let (status, body) = http_get_path(cluster.nodes[0].ingress, WEB_HOST, "/index.html").unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from a container\n"));
    let logs = cluster.ok(&["logs", "deployment/web"]);
    assert!(logs.contains("root read-only"), "{logs}");
    let nodes = cluster.ok(&["get", "nodes", "-o", "yaml"]);
    assert!(nodes.contains("- oci"), "{nodes}");
    assert!(!nodes.contains("- wasm"), "an oci-only node: {nodes}");

    // hostNetwork: the container listens in the node's own namespace.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host_net = web_yaml(&image, 1, "      hostNetwork: true\n")
        .replace("name: web", "name: hostnet")
        .replace("app: web", "app: hostnet")
        .replace("containerPort: 8080", &format!("containerPort: {port}"))
        .replace(
            "      terminationGracePeriodSeconds: 2",
            &format!(
                "      command: [/bin/httpd, -f, -p, '127.0.0.1:{port}', -h, /www]\n      terminationGracePeriodSeconds: 2"
            ),
        );
    let manifest = cluster.manifest("hostnet.yaml", &host_net);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.wait_for(
        "the host-network container ready",
        Duration::from_secs(90),
        || {
            instances_of(&cluster, "hostnet")
                .iter()
                .any(|i| i.status.phase == Phase::Running && i.status.ready)
        },
    );
    let direct = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(direct.is_ok(), "it listens on the node's loopback");
    let (status, body) = http_get_path(
        cluster.nodes[0].ingress,
        "hostnet.default.berth.localhost",
        "/index.html",
    )
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from a container\n"));

    // Deleted while its container may still be starting: nothing is left
    // running once the node has caught up.
    let flash = web_yaml(&image, 2, "")
        .replace("name: web", "name: flash")
        .replace("app: web", "app: flash");
    let manifest = cluster.manifest("flash.yaml", &flash);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cluster.ok(&["delete", "deployment", "flash"]);
    cluster.ok(&["delete", "deployment", "web"]);
    cluster.ok(&["delete", "deployment", "hostnet"]);
    cluster.wait_for("no container left", Duration::from_secs(60), || {
        runc_list(&cluster, "node-1").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        runc_list(&cluster, "node-1").is_empty(),
        "a container started after its delete"
    );
}
