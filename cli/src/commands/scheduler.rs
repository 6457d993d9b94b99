//! `berth scheduler`: the control plane as its own process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::Result;
use berth_scheduler::{Config, Scheduler};

use crate::config::ClientConfig;

/// The address clients should dial for a scheduler bound to `bound`: a
/// wildcard bind is reached on loopback.
pub fn dial_address(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
    }
}

/// Starts the scheduler and writes the admin client config to `config_out`.
pub fn start(config: &Config, config_out: &Path) -> Result<(Scheduler, SocketAddr)> {
    let scheduler = Scheduler::start(config)?;
    let addr = dial_address(scheduler.local_addr()?);
    ClientConfig::new(addr, scheduler.ca_pem(), scheduler.admin()).save(config_out)?;
    Ok((scheduler, addr))
}

/// Runs `berth scheduler` until interrupted.
pub async fn run(config: Config, config_out: &Path) -> Result<()> {
    let (scheduler, addr) = start(&config, config_out)?;
    println!("scheduler listening on {addr} (quic, mutual tls)");
    if let Some(admin) = scheduler.admin_addr() {
        println!("admin on http://{admin}");
    }
    println!("data in {}", config.data_dir.display());
    println!("client config written to {}", config_out.display());
    println!(
        "join nodes with: berth node --join {addr} --token {}",
        scheduler.join_token()
    );
    scheduler.run(crate::shutdown_signal()).await;
    Ok(())
}
