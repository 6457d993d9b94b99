//! `berth deploy [--dir DIR] [--replicas N] [-n NS] [--wait 2m]`: build
//! the project, apply it, wait until it runs, and say where it answers.
//!
//! With a `berth.yaml` (or `berth.yml`) in the project, that manifest is
//! applied as `berth apply -f` would, and every Deployment and Job in it is
//! waited for. Without one, the object is made from the component built:
//! a Deployment named after the Cargo target, labelled `app: NAME`, when
//! the component exports `wasi:http/incoming-handler`; a Job when it is a
//! command (`wasi:cli/run` only). Waiting reuses `rollout status`'s
//! judgement ([`rollout::progress`]). The URL is
//! `http://NAME.NAMESPACE.DOMAIN:PORT/`, `PORT` that of the ingress of a
//! Ready node running an instance (decision 0040).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use berth_api::wire::ApplyOutcome;
use berth_api::{DEFAULT_NAMESPACE, Kind, Object};

use crate::client::Client;
use crate::commands::apply::{self, Source};
use crate::commands::build::{Built, World};
use crate::commands::get;
use crate::commands::rollout::{self, Progress};

/// Names a project manifest may have, in the order looked for.
pub const MANIFESTS: &[&str] = &["berth.yaml", "berth.yml"];

/// What `berth deploy` is asked for, besides the build.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project's directory.
    pub dir: PathBuf,
    /// Replicas of the generated Deployment (1).
    pub replicas: Option<i64>,
    /// Namespace of the generated object (`default`).
    pub namespace: Option<String>,
    /// How long to wait for the rollout; `None`: as long as it takes.
    pub wait: Option<Duration>,
    /// The ingress domain of the nodes.
    pub domain: String,
}

/// What happened while deploying, as it happens.
#[derive(Debug)]
pub enum Step<'a> {
    /// An object was applied.
    Applied(&'a ApplyOutcome),
    /// The project manifest does not use the component just built.
    Unused {
        /// The manifest.
        manifest: &'a str,
        /// The component built.
        component: &'a Path,
    },
    /// A rollout or a Job moved on.
    Progress(&'a Progress),
}

/// Where a deployed Deployment answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The Deployment.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `NAME.NAMESPACE.DOMAIN`, the host the ingress routes by.
    pub host: String,
    /// The ingress address (`host:port`) of a node running it.
    pub ingress: String,
}

impl Endpoint {
    /// `http://HOST:PORT/`.
    pub fn url(&self) -> String {
        let port = self.ingress.rsplit_once(':').map_or("80", |(_, port)| port);
        format!("http://{}:{port}/", self.host)
    }
}

/// The outcome of `berth deploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// Where each Deployment answers.
    pub endpoints: Vec<Endpoint>,
    /// Deployments with no Ready node running them (scaled to zero).
    pub unreachable: Vec<String>,
    /// Jobs that ran to completion.
    pub jobs: Vec<String>,
}

/// The project manifest in `dir`, if there is one.
pub fn manifest(dir: &Path) -> Option<PathBuf> {
    MANIFESTS
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// The manifest `deploy` applies for a project without one.
pub fn generated(built: &Built, replicas: i64, namespace: &str) -> String {
    let name = &built.name;
    let component = serde_json::Value::String(built.path.display().to_string());
    match built.world {
        World::Http => format!(
            "apiVersion: berth.dev/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {component}
"
        ),
        World::Command => format!(
            "apiVersion: berth.dev/v1
kind: Job
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app: {name}}}
spec:
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      component: {component}
      restartPolicy: Never
"
        ),
    }
}

/// Applies the project (its manifest, or the generated object for
/// `built`), waits, and finds the URLs.
pub async fn deploy(
    client: &Client,
    options: &Options,
    built: &Built,
    step: &mut dyn FnMut(Step<'_>),
) -> Result<Deployed> {
    let sources = match manifest(&options.dir) {
        Some(path) => {
            if options.replicas.is_some() || options.namespace.is_some() {
                bail!(
                    "{} sets replicas and namespaces: --replicas and -n are for a project without one",
                    path.display()
                );
            }
            apply::sources(&[path])?
        }
        None => {
            let namespace = options.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            vec![Source {
                name: format!("<generated {}>", built.name),
                base: options.dir.clone(),
                text: generated(built, options.replicas.unwrap_or(1), namespace),
            }]
        }
    };
    let objects = apply::objects(&sources)?;
    let uses_built = objects.iter().any(|(_, o)| {
        o.template()
            .is_some_and(|t| t.spec.component == built.digest)
    });
    if let (false, Some(source)) = (uses_built, sources.first()) {
        step(Step::Unused {
            manifest: &source.name,
            component: &built.path,
        });
    }
    for outcome in apply::apply(client, &sources).await? {
        step(Step::Applied(&outcome));
    }
    let deadline = options.wait.map(|w| tokio::time::Instant::now() + w);
    let mut deployed = Deployed {
        endpoints: Vec::new(),
        unreachable: Vec::new(),
        jobs: Vec::new(),
    };
    for (_, object) in &objects {
        let meta = object.metadata();
        let namespace = meta.namespace_or_default().to_owned();
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        match object.kind() {
            Kind::Deployment => {
                rollout::status(client, &namespace, &meta.name, left, &mut |p| {
                    step(Step::Progress(p));
                })
                .await?;
                match endpoint(client, &namespace, &meta.name, &options.domain).await? {
                    Some(endpoint) => deployed.endpoints.push(endpoint),
                    None => deployed.unreachable.push(meta.name.clone()),
                }
            }
            Kind::Job => {
                wait_job(client, &namespace, &meta.name, left, step).await?;
                deployed.jobs.push(meta.name.clone());
            }
            _ => {}
        }
    }
    Ok(deployed)
}

/// Where Deployment `name` answers: the ingress of a Ready node running
/// one of its instances, else of any Ready node (an instance may come up
/// there later); `None` without a Ready node.
async fn endpoint(
    client: &Client,
    namespace: &str,
    name: &str,
    domain: &str,
) -> Result<Option<Endpoint>> {
    let query = |kind, namespace: Option<&str>| get::Query {
        kind,
        namespace: namespace.map(str::to_owned),
        name: None,
    };
    let nodes = get::get(client, &query(Kind::Node, None)).await?;
    let instances = get::get(client, &query(Kind::Instance, Some(namespace))).await?;
    let hosting: Vec<String> = instances
        .iter()
        .filter_map(|o| match o {
            Object::Instance(i)
                if i.metadata.deletion_timestamp.is_none()
                    && i.metadata.owner_references.iter().any(|r| r.name == name) =>
            {
                i.spec.node_name.clone()
            }
            _ => None,
        })
        .collect();
    let ready: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|o| match o {
            Object::Node(n)
                if !n.status.ingress_address.is_empty()
                    && n.status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True") =>
            {
                Some((n.metadata.name.clone(), n.status.ingress_address.clone()))
            }
            _ => None,
        })
        .collect();
    let chosen = ready
        .iter()
        .find(|(node, _)| hosting.contains(node))
        .or(ready.first());
    Ok(chosen.map(|(_, ingress)| Endpoint {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        host: format!("{name}.{namespace}.{domain}"),
        ingress: ingress.clone(),
    }))
}

/// Judges a Job from its status, in `rollout status`'s words.
pub fn job_progress(job: &berth_api::job::Job) -> Progress {
    let name = &job.metadata.name;
    let status = &job.status;
    match status.finished() {
        Some(c) if c.type_ == berth_api::job::JobConditionType::Complete => Progress::Done(
            format!("job {name:?} completed: {} succeeded", status.succeeded),
        ),
        Some(c) => Progress::Failed(format!("job {name:?} failed: {} {}", c.reason, c.message)),
        None => Progress::Waiting(format!(
            "Waiting for job {name:?} to finish: {} active, {} succeeded, {} failed...",
            status.active, status.succeeded, status.failed
        )),
    }
}

/// Waits until Job `name` finishes: Ok when it completed.
async fn wait_job(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Option<Duration>,
    step: &mut dyn FnMut(Step<'_>),
) -> Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut last = None;
    loop {
        let objects = get::get(
            client,
            &get::Query {
                kind: Kind::Job,
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
            },
        )
        .await?;
        let Some(Object::Job(job)) = objects.into_iter().next() else {
            bail!("Job {namespace}/{name} not found");
        };
        let progress = job_progress(&job);
        match &progress {
            Progress::Failed(line) => bail!("{line}"),
            Progress::Done(_) => {
                step(Step::Progress(&progress));
                return Ok(());
            }
            Progress::Waiting(_) if last.as_ref() != Some(&progress) => {
                step(Step::Progress(&progress));
                last = Some(progress);
            }
            Progress::Waiting(_) => {}
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bail!("timed out waiting for job {name:?} to finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(world: World) -> Built {
        Built {
            name: "greeter".into(),
            path: PathBuf::from("/t/greeter: \"x\".wasm"),
            digest: "sha256:00".into(),
            size: 1,
            world,
        }
    }

    #[test]
    fn generated_manifests_parse() {
        for (world, kind) in [(World::Http, Kind::Deployment), (World::Command, Kind::Job)] {
            let text = generated(&built(world), 3, "team");
            let objects = berth_api::manifest::parse_manifests("generated", &text).unwrap();
            let [object] = objects.as_slice() else {
                panic!("one object expected")
            };
            assert_eq!(object.kind(), kind);
            assert_eq!(object.metadata().name, "greeter");
            assert_eq!(object.metadata().namespace.as_deref(), Some("team"));
            assert_eq!(
                object.template().unwrap().spec.component,
                "/t/greeter: \"x\".wasm"
            );
            if let Object::Deployment(d) = object {
                assert_eq!(d.spec.replicas, 3);
            }
        }
    }

    #[test]
    fn urls_name_the_host_and_the_ingress_port() {
        let endpoint = Endpoint {
            name: "greeter".into(),
            namespace: "default".into(),
            host: "greeter.default.berth.localhost".into(),
            ingress: "127.0.0.1:8080".into(),
        };
        assert_eq!(
            endpoint.url(),
            "http://greeter.default.berth.localhost:8080/"
        );
    }
}
