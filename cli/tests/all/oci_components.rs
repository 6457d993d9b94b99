//! Components from an OCI registry, end to end against a real registry
//! (Debian's `docker-registry`): `berth push` publishes the hello
//! component as a Wasm component artifact, a Deployment naming it
//! `oci://REGISTRY/REPO:TAG` is pinned to the manifest digest at apply and
//! pulled by the node, a Deployment naming `@sha256:` directly runs too,
//! and a tag the registry lacks is refused at apply.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_api::Object;

use crate::harness::{Cluster, NodeProc, Registry, hello_wasm, hello_yaml, http_get_path};

/// Whether Debian's `docker-registry` is installed (`.ci/run` installs it).
fn prerequisites() -> bool {
    if Path::new("/usr/bin/docker-registry").exists() {
        return true;
    }
    assert!(
        std::env::var_os("BERTH_REQUIRE_CONTAINERS").is_none(),
        "/usr/bin/docker-registry not installed"
    );
    eprintln!("skipping: /usr/bin/docker-registry not installed");
    false
}

/// The component each Deployment's template names, by Deployment name.
fn components(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .objects("deployments")
        .into_iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some((d.metadata.name, d.spec.template.spec.component)),
            _ => None,
        })
        .collect()
}

/// The hello Deployment `yaml` named `name` (its component reference
/// left alone).
fn renamed(yaml: &str, name: &str) -> String {
    yaml.replace("name: hello", &format!("name: {name}"))
        .replace("app: hello", &format!("app: {name}"))
}

/// Waits until `host` answers through the node's ingress with the hello
/// greeting.
fn wait_answers(cluster: &Cluster, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let last = match http_get_path(cluster.nodes[0].ingress, host, "/") {
            Ok((200, body)) if body.starts_with("Hello from berth!") => return,
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            let instances: Vec<String> = cluster
                .objects("instances")
                .into_iter()
                .filter_map(|o| match o {
                    Object::Instance(i) => Some(format!(
                        "{}: {:?} {} {}",
                        i.metadata.name, i.status.phase, i.status.reason, i.status.message
                    )),
                    _ => None,
                })
                .collect();
            panic!("{host} did not answer: {last}; instances: {instances:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn components_pushed_to_a_registry_are_pulled_by_the_node() {
    if !prerequisites() {
        return;
    }
    let cluster = Cluster::start(1);
    let registry = Registry::start(cluster.dir.path());
    let wasm = hello_wasm();
    let tag = format!("oci://{}/apps/hello:v1", registry.addr);

    // `berth push` prints the reference by digest, and pushing the same
    // component again gives the same one.
    let pushed = cluster.ok(&["push", wasm.to_str().unwrap(), &tag]);
    let pinned = pushed.trim().to_owned();
    let prefix = format!("oci://{}/apps/hello@sha256:", registry.addr);
    assert!(
        pinned.starts_with(&prefix) && pinned.len() == prefix.len() + 64,
        "{pushed}"
    );

    // A tag in a manifest is pinned to its digest at apply; the node pulls
    // the component from the registry and the ingress answers.
    let manifest = cluster.manifest("hello.yaml", &hello_yaml(1, Path::new(&tag)));
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "deployment/hello created\n");
    assert_eq!(
        components(&cluster),
        vec![("hello".to_owned(), pinned.clone())]
    );
    wait_answers(&cluster, "hello.default.berth.localhost");
    // Applying the same manifest again changes nothing: the tag resolves
    // to the same digest.
    let out = cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out, "deployment/hello unchanged\n");

    // A Deployment naming the digest directly.
    let by_digest = renamed(&hello_yaml(1, Path::new(&pinned)), "pinned");
    let manifest = cluster.manifest("pinned.yaml", &by_digest);
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    wait_answers(&cluster, "pinned.default.berth.localhost");

    // A tag the registry does not have is refused at apply, naming it.
    let missing = format!("oci://{}/apps/hello:v2", registry.addr);
    let bad = renamed(&hello_yaml(1, Path::new(&missing)), "missing");
    let manifest = cluster.manifest("missing.yaml", &bad);
    let out = cluster.berth(&["apply", "-f", manifest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("spec.template.spec.component: cannot resolve")
            && stderr.contains(&missing),
        "{stderr}"
    );
    assert_eq!(components(&cluster).len(), 2, "nothing was applied");

    // Pushing a file that is not a component is refused before any upload.
    let not_wasm = cluster.dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"hello").unwrap();
    let out = cluster.berth(&["push", not_wasm.to_str().unwrap(), &tag]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is not a WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn a_pull_that_fails_is_err_image_pull_and_retried() {
    if !prerequisites() {
        return;
    }
    // No node yet: the Deployment is applied (its tag pinned) while the
    // registry is up, and the node comes after the registry went away.
    let mut cluster = Cluster::start(0);
    let registry = Registry::start(cluster.dir.path());
    let tag = format!("oci://{}/hello:v1", registry.addr);
    cluster.ok(&["push", hello_wasm().to_str().unwrap(), &tag]);
    let manifest = cluster.manifest("hello.yaml", &hello_yaml(1, Path::new(&tag)));
    cluster.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let addr = registry.addr.clone();
    drop(registry);
    let node = NodeProc::start(cluster.dir.path(), &cluster.scheduler, "node-0");
    cluster.nodes.push(node);

    let mut last = String::new();
    cluster.wait_for("ErrImagePull", Duration::from_secs(90), || {
        last = cluster
            .objects("instances")
            .into_iter()
            .filter_map(|o| match o {
                Object::Instance(i) => Some(format!("{} {}", i.status.reason, i.status.message)),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; ");
        last.starts_with("ErrImagePull ") && last.contains(&addr)
    });
    assert!(last.contains("pulling oci://"), "{last}");

    // The registry comes back on the same address: the next retry pulls.
    let _registry = Registry::start_at(cluster.dir.path(), &addr);
    wait_answers(&cluster, "hello.default.berth.localhost");
}
