//! `berth node`: a node agent as its own process.

use anyhow::Result;
use berth_node::{Config, Node};

/// Runs `berth node` until interrupted.
pub async fn run(config: Config) -> Result<()> {
    let node = Node::start(config.clone()).await?;
    if let Some(admin) = node.admin_addr() {
        println!("admin on http://{admin}");
    }
    if let Some(peer) = node.peer_addr() {
        println!("peer nodes on quic://{peer}");
    }
    println!(
        "node {} serving http on {} (hosts *.{}), scheduler {}",
        config.name,
        node.ingress_addr()?,
        config.domain,
        config.scheduler
    );
    node.run(crate::shutdown_signal()).await
}
