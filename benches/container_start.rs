//! Container start against component start, two ways.
//!
//! - On the node alone, in this process: from handing the node the
//!   assignment until the first 200 through the ingress's connection
//!   dispatch, for the busybox `httpd` container (`Containers`: root
//!   filesystem, bundle, `runc run`, namespaces, cgroup); against loading
//!   the hello component from its compiled artifact and serving its first
//!   request (`WasmRuntime::prepare` + `handle`).
//! - End to end: apply-to-first-200 for both on the same cluster (a
//!   scheduler and one `--runtime wasm,oci` node as separate processes),
//!   which adds the CLI, QUIC, the store, placement and the watch push.
//!
//! Plus `runc run` of `/bin/true` alone, for scale.
//!
//! The image is packed from Debian's busybox-static and pushed to a local
//! registry (Debian's `docker-registry`) first, and pulled once by a warm-up
//! round, so the rounds measure starting, not pulling: the layers are on the
//! node, as the component's compiled artifact is for the wasm rounds.
//! Each of 20 rounds per kind applies a Deployment with a new name through
//! the real `berth` binary and polls the ingress every 2 ms until it
//! answers 200. Figures go to `docs/benchmarks.md` between the
//! `container-start` markers.
//!
//! Needs root, runc, busybox-static and docker-registry.
//! Run: `cargo bench -p berth --bench container_start`.

// A measurement harness, not a service: failing loudly on a broken setup is
// what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use berth_api::container::ContainerWorkload;
use berth_api::wire::Assignment;
use berth_node::oci::image::{ImageConfig, pack_directory, push_layout};
use berth_node::oci::{ContainerSetup, Containers};
use berth_node::runtime::{InstanceConfig, WasmRuntime};
use berth_node::sandbox::Event;
use berth_node::sandbox::protocol::HostEvent;
use http_body_util::{BodyExt as _, Empty};
use sha2::{Digest as _, Sha256};
use support::{Split, deployment, guest, record, status};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROUNDS: usize = 20;

/// A registry on a free loopback port, killed on drop.
struct Registry(Child, String);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry(dir: &Path) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    while std::net::TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Registry(child, addr)
}

/// Packs busybox serving `/www` on 8080 and pushes it; the reference.
fn push_image(dir: &Path, registry: &Registry) -> String {
    let root = dir.join("image-root");
    for sub in ["bin", "www"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "httpd", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "hello\n").unwrap();
    let config = ImageConfig {
        entrypoint: vec!["/bin/httpd".into()],
        cmd: vec![
            "-f".into(),
            "-p".into(),
            "8080".into(),
            "-h".into(),
            "/www".into(),
        ],
        env: vec!["PATH=/bin".into()],
        working_dir: None,
        user: None,
        exposed_ports: vec![8080],
    };
    let layout = dir.join("layout");
    pack_directory(&root, &config, &layout, "1").unwrap();
    let reference = format!("{}/bench:1", registry.1);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push_layout(&layout, "1", &reference))
        .unwrap();
    reference
}

fn container_deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      image: {image}\n      ports:\n        - containerPort: 8080\n      terminationGracePeriodSeconds: 0\n"
    )
}

/// Applies `manifest` and waits for the first 200 from `host`.
fn apply_to_first_200(cluster: &Split, manifest: &Path, host: &str) -> Duration {
    let start = Instant::now();
    cluster.berth(&["apply", "-f", manifest.to_str().unwrap()]);
    while status(cluster.ingress, host) != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{host} never served"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// `runc run` of a bundle whose process is `/bin/true`, 20 times: the
/// runtime's own floor.
fn runc_true(dir: &Path) -> f64 {
    let bundle = dir.join("true-bundle");
    let rootfs = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("true")).unwrap();
    let status = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .unwrap();
    assert!(status.success());
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", "\"/bin/true\"");
    std::fs::write(&config, text).unwrap();
    let state = dir.join("true-state");
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let start = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("true-{round}"))
            .stdin(Stdio::null())
            .status()
            .unwrap();
        samples.push(start.elapsed());
        assert!(status.success());
    }
    median_ms(&mut samples)
}

/// One GET of `/index.html` for `host` through the containers' connection
/// dispatch, as the ingress hands it a client connection; the status.
async fn get_through(containers: &Arc<Containers>, host: &str) -> Option<u16> {
    use berth_node::ingress::ConnectionDispatch as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let mut client = tokio::net::TcpStream::connect(listener.local_addr().ok()?)
        .await
        .ok()?;
    let (server, _) = listener.accept().await.ok()?;
    client
        .write_all(
            format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
    // The proxy runs until both ends close: the client's end closes when
    // this function returns.
    let proxy = Arc::clone(containers);
    let host = host.to_ascii_lowercase();
    tokio::spawn(async move { proxy.dispatch(server, host).await });
    let mut head = [0u8; 12];
    client.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse::<u16>().ok()
}

/// Node-side container starts: assignment to first 200, median ms.
async fn node_side_container(dir: &Path, image: &str) -> f64 {
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let containers = Arc::new(
        Containers::new(
            ContainerSetup {
                node: "bench-node-side".into(),
                data_dir: dir.join("node-side"),
                program: "runc".into(),
                domain: "berth.localhost".into(),
            },
            events_tx,
            None,
        )
        .await
        .unwrap(),
    );
    let mut samples = Vec::new();
    for round in 0..=ROUNDS {
        let name = format!("direct-{round}");
        let assignment = Assignment {
            uid: format!("bench-direct-{round}-{}", std::process::id()),
            name: name.clone(),
            namespace: "default".into(),
            deployment: name.clone(),
            container: Some(ContainerWorkload {
                image: image.to_owned(),
                command: vec![],
                args: vec![],
                port: 8080,
                read_only_root: false,
                run_as: None,
                mounts: vec![],
                host_network: false,
            }),
            ..Assignment::default()
        };
        let uid = assignment.uid.clone();
        let host = format!("{name}.default.berth.localhost");
        let start = Instant::now();
        containers.load(assignment, None);
        loop {
            match events.recv().await.unwrap() {
                Event::Host(HostEvent::Loaded {
                    uid: loaded,
                    result,
                }) if loaded == uid => {
                    result.unwrap();
                    break;
                }
                _ => {}
            }
        }
        while get_through(&containers, &host).await != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} never served"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Round 0 warms up: the pull.
        if round > 0 {
            samples.push(start.elapsed());
        }
        containers.unload(&uid, Duration::ZERO).await;
    }
    containers.stop_all().await;
    median_ms(&mut samples)
}

/// Node-side component starts: loading from the compiled artifact on disk
/// and serving the first request, median ms.
async fn node_side_component(dir: &Path, wasm: &Path) -> f64 {
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(wasm).unwrap()))
    );
    let data = dir.join("node-side-wasm");
    let mut samples = Vec::new();
    for round in 0..=ROUNDS {
        let start = Instant::now();
        let runtime = WasmRuntime::new(&data).unwrap();
        let instance = runtime
            .prepare(&digest, wasm, InstanceConfig::default())
            .await
            .unwrap();
        let request = hyper::Request::get("http://localhost/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = instance.handle(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.into_body().collect().await.unwrap();
        // Round 0 warms up: the compile.
        if round > 0 {
            samples.push(start.elapsed());
        }
    }
    median_ms(&mut samples)
}

fn main() {
    let component = guest("hello");
    let cluster = Split::start_with("bench-containers", &["--runtime", "wasm,oci"]);
    let registry = registry(&cluster.dir);
    let image = push_image(&cluster.dir, &registry);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let direct_oci = runtime.block_on(node_side_container(&cluster.dir, &image));
    let direct_wasm = runtime.block_on(node_side_component(&cluster.dir, &component));

    let rounds = |kind: &str, yaml: &dyn Fn(&str) -> String| {
        let mut samples = Vec::with_capacity(ROUNDS);
        // Round 0 warms up: the pull or the compile.
        for round in 0..=ROUNDS {
            let name = format!("{kind}-{round}");
            let manifest = cluster.dir.join(format!("{name}.yaml"));
            std::fs::write(&manifest, yaml(&name)).unwrap();
            let took = apply_to_first_200(
                &cluster,
                &manifest,
                &format!("{name}.default.berth.localhost"),
            );
            if round > 0 {
                samples.push(took);
            }
        }
        samples
    };
    let mut wasm = rounds("wasm", &|name| deployment(name, "default", &component));
    let mut oci = rounds("oci", &|name| container_deployment(name, &image));
    let (wasm, oci) = (median_ms(&mut wasm), median_ms(&mut oci));
    let floor = runc_true(&cluster.dir);
    let report = format!(
        "on the node, assignment to first 200, {ROUNDS} rounds each: component median {direct_wasm:.2} ms, \
         container (runc, busybox httpd) median {direct_oci:.1} ms: the component starts {:.0}x faster. \
         End to end, apply-to-first-200 (scheduler and node as separate processes): component median {wasm:.1} ms, \
         container median {oci:.1} ms. `runc run` of `/bin/true` alone: median {floor:.1} ms",
        direct_oci / direct_wasm
    );
    println!("{report}");
    record("container-start", &report);
}
