//! `berth dev`: a scheduler and one node in one process, for one machine.
//! Both still talk over QUIC with mutual TLS on loopback, exactly as
//! separate processes do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use berth_api::Kind;
use berth_node::Node;
use berth_scheduler::Config;

use crate::client::Client;
use crate::commands::{apply, get};
use crate::config::ClientConfig;

/// Settings of `berth dev`.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Data directory; the scheduler and node live in subdirectories.
    pub data_dir: PathBuf,
    /// Scheduler QUIC address.
    pub listen: SocketAddr,
    /// Node ingress address.
    pub ingress: SocketAddr,
    /// Ingress domain.
    pub domain: String,
    /// Manifests to apply once the cluster is up.
    pub files: Vec<PathBuf>,
}

/// Runs `berth dev` until interrupted.
pub async fn run(dev: DevConfig, config_out: &Path) -> Result<()> {
    let scheduler_config = Config {
        data_dir: dev.data_dir.join("scheduler"),
        listen: dev.listen,
        node_grace: berth_scheduler::DEFAULT_NODE_GRACE,
        placement: Default::default(),
        admin: None,
        audit_log: None,
        secrets_key: None,
    };
    let (scheduler, addr) = super::scheduler::start(&scheduler_config, config_out)?;
    let token = scheduler.join_token().to_owned();
    let scheduler_task = tokio::spawn(scheduler.run(crate::shutdown_signal()));
    let node = Node::start(berth_node::Config {
        name: "dev".into(),
        scheduler: addr,
        token: Some(token),
        data_dir: dev.data_dir.join("node"),
        ingress: dev.ingress,
        peer_listen: None,
        domain: dev.domain.clone(),
        labels: Default::default(),
        capacity: None,
        max_instances: 0,
        taints: Vec::new(),
        admin: None,
        sandbox: Some(crate::sandbox_program()?),
        wasm: true,
        oci_runtime: None,
    })
    .await?;
    let ingress = node.ingress_addr()?;
    let node_task = tokio::spawn(node.run(crate::shutdown_signal()));
    println!("berth dev: scheduler on {addr} (quic), ingress on http://{ingress}");
    println!(
        "data in {}, client config in {}",
        dev.data_dir.display(),
        config_out.display()
    );
    if !dev.files.is_empty() {
        let client = Client::connect(&ClientConfig::load(config_out)?).await?;
        for outcome in apply::apply(&client, &apply::sources(&dev.files)?).await? {
            println!("{}", crate::outcome_line(&outcome));
        }
        let deployments = get::get(
            &client,
            &get::Query {
                kind: Kind::Deployment,
                name: None,
                namespace: None,
            },
        )
        .await?;
        wait_ready(&client, Duration::from_secs(120)).await?;
        for deployment in deployments {
            let meta = deployment.metadata();
            println!(
                "try: curl -H 'Host: {}.{}.{}' http://{ingress}/",
                meta.name,
                meta.namespace_or_default(),
                dev.domain
            );
        }
        client.close().await;
    }
    println!("press ctrl-c to stop");
    node_task.await.context("node task")??;
    scheduler_task.await.context("scheduler task")?;
    Ok(())
}

/// Waits until every Deployment reports all replicas ready.
async fn wait_ready(client: &Client, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let deployments = get::get(
            client,
            &get::Query {
                kind: Kind::Deployment,
                name: None,
                namespace: None,
            },
        )
        .await?;
        let ready = deployments.iter().all(|o| match o {
            berth_api::Object::Deployment(d) => d
                .status
                .as_ref()
                .is_some_and(|s| i64::try_from(s.ready_replicas).unwrap_or(0) >= d.spec.replicas),
            _ => true,
        });
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("deployments not ready after {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
