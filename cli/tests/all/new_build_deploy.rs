//! `berth new`, `berth build` and `berth deploy` on fresh projects, as a
//! user runs them: a service whose printed URL answers, redeployed from a
//! `berth.yaml` of the project's own; a Job project that builds, deploys
//! and runs to completion.
//!
//! Cargo builds offline (`CARGO_NET_OFFLINE`) into `target/guest`, where
//! berth-test-programs has already built berth-sdk and its dependencies
//! for `wasm32-wasip2` with the same lock file, profile and toolchain: only
//! the new package itself is compiled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Cluster, berth_bin};

/// The directory the example components are built in, shared.
fn guest_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("guest")
}

/// Runs `berth args` in `dir` against `cluster` (if any), building offline.
fn berth_in(dir: &Path, cluster: Option<&Cluster>, args: &[&str]) -> Output {
    let mut command = Command::new(berth_bin());
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .env("NO_COLOR", "1")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    match cluster {
        Some(cluster) => command.env("BERTH_CONFIG", &cluster.scheduler.config),
        None => command.env("BERTH_CONFIG", dir.join("no-cluster")),
    };
    command.output().expect("run berth")
}

/// As [`berth_in`], asserting success; returns stdout.
fn ok_in(dir: &Path, cluster: Option<&Cluster>, args: &[&str]) -> String {
    let out = berth_in(dir, cluster, args);
    assert!(
        out.status.success(),
        "berth {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value after `label` on a line of `text`.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

/// GETs `/` of `url` (`http://HOST:PORT/`) on loopback, with its `Host`.
fn get(url: &str) -> Result<(u16, String), String> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let (host, port) = authority.rsplit_once(':').ok_or("no port")?;
    let port: u16 = port.parse().map_err(|e| format!("port: {e}"))?;
    crate::harness::http_get(SocketAddr::from(([127, 0, 0, 1], port)), host)
}

#[test]
fn a_new_service_builds_deploys_and_answers_at_its_url() {
    let started = std::time::Instant::now();
    let cluster = Cluster::start(1);
    let work = tempfile::tempdir().unwrap();

    let created = ok_in(work.path(), None, &["new", "greeter"]);
    assert!(
        created.contains("Created http project \"greeter\""),
        "{created}"
    );
    let project = work.path().join("greeter");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "rust-toolchain.toml",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file} missing:\n{created}");
    }
    // A second project of the same name is refused, not overwritten.
    let again = berth_in(work.path(), None, &["new", "greeter"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"),
        "{again:?}"
    );

    let built = ok_in(&project, None, &["build"]);
    let path = PathBuf::from(field(&built, "path:"));
    let digest = field(&built, "digest:");
    assert!(path.is_file(), "{built}");
    assert!(
        path.ends_with("wasm32-wasip2/release/greeter.wasm"),
        "{built}"
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 64,
        "{built}"
    );
    assert!(built.contains("http service"), "{built}");
    eprintln!("new + build took {:?}", started.elapsed());

    let deployed = ok_in(&project, Some(&cluster), &["deploy"]);
    assert!(
        deployed.contains("deployment/greeter created"),
        "{deployed}"
    );
    assert!(
        deployed.contains("deployment \"greeter\" successfully rolled out"),
        "{deployed}"
    );
    let url = field(&deployed, "greeter:");
    let ingress = cluster.nodes[0].ingress;
    assert_eq!(
        url,
        format!("http://greeter.default.berth.localhost:{}/", ingress.port()),
        "{deployed}"
    );
    assert!(
        deployed.contains(&format!(
            "try: curl -H 'Host: greeter.default.berth.localhost' http://{ingress}/"
        )),
        "{deployed}"
    );
    let (status, body) = get(url).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("Hello from greeter! (instance greeter-"),
        "{body}"
    );
    eprintln!("through deploy: {:?}", started.elapsed());

    // The project's own manifest wins over the generated Deployment.
    let manifest = format!(
        "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: greeter
spec:
  replicas: 2
  selector:
    matchLabels: {{app: greeter}}
  template:
    metadata:
      labels: {{app: greeter}}
    spec:
      component: {}
",
        path.display()
    );
    std::fs::write(project.join("berth.yaml"), manifest).unwrap();
    let refused = berth_in(&project, Some(&cluster), &["deploy", "--replicas", "3"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--replicas and -n are for a project"),
        "{refused:?}"
    );
    let redeployed = ok_in(&project, Some(&cluster), &["deploy"]);
    assert!(
        redeployed.contains("deployment/greeter configured"),
        "{redeployed}"
    );
    let deployment = cluster
        .objects("deployments")
        .into_iter()
        .find_map(|o| match o {
            berth_api::Object::Deployment(d) if d.metadata.name == "greeter" => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(deployment.spec.replicas, 2);
    assert_eq!(deployment.spec.template.spec.component, digest);
    assert_eq!(get(field(&redeployed, "greeter:")).unwrap().0, 200);
    eprintln!("whole test: {:?}", started.elapsed());
}

#[test]
fn a_new_job_builds_and_runs_to_completion() {
    let cluster = Cluster::start(1);
    let work = tempfile::tempdir().unwrap();
    ok_in(
        work.path(),
        None,
        &["new", "job-thing", "--template", "job"],
    );
    let project = work.path().join("job-thing");

    let built = ok_in(&project, None, &["build"]);
    assert!(built.contains("Built job-thing (command"), "{built}");
    assert!(PathBuf::from(field(&built, "path:")).is_file(), "{built}");

    let deployed = ok_in(&project, Some(&cluster), &["deploy", "-n", "default"]);
    assert!(deployed.contains("job/job-thing created"), "{deployed}");
    assert!(
        deployed.contains("job \"job-thing\" completed: 1 succeeded"),
        "{deployed}"
    );
    assert!(deployed.contains("job-thing: finished"), "{deployed}");
}
