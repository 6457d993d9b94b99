//! The node's session with the scheduler: register, watch assignments,
//! report status, and reconnect whenever the connection drops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use berth_api::quic;
use berth_api::wire::{NodeInfo, Request, Response};
use tracing::{info, warn};

use crate::supervisor::Supervisor;

/// How often the node reports when nothing changes: its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Keeps a session with the scheduler until `shutdown` resolves.
pub async fn run(
    endpoint: quinn::Endpoint,
    scheduler: SocketAddr,
    info: NodeInfo,
    supervisor: Arc<Supervisor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let began = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = session(&endpoint, scheduler, &info, &supervisor) => outcome,
        };
        if let Err(e) = outcome {
            warn!(%scheduler, error = %format!("{e:#}"), "scheduler session ended; instances keep serving");
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        // A session that lasted a while was healthy: start over quickly.
        backoff = if began.elapsed() > MAX_BACKOFF * 5 {
            Duration::from_millis(100)
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
    }
    endpoint.close(0u32.into(), b"node shutting down");
}

async fn session(
    endpoint: &quinn::Endpoint,
    scheduler: SocketAddr,
    info: &NodeInfo,
    supervisor: &Arc<Supervisor>,
) -> Result<()> {
    let connection = quic::connect(endpoint, scheduler).await?;
    match quic::call(&connection, &Request::Register(info.clone())).await? {
        Response::Ok => {}
        Response::Error(e) => bail!("registering: {e}"),
        other => bail!("registering: unexpected answer {other:?}"),
    }
    info!(%scheduler, "registered");
    let (mut send, mut recv) = connection.open_bi().await?;
    quic::send_frame(&mut send, &Request::Watch).await?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = quic::recv_frame::<Response>(&mut recv) => match frame? {
                Some(Response::Assignments(assignments)) => {
                    supervisor.apply(assignments, &connection);
                }
                Some(Response::Error(e)) => bail!("watch: {e}"),
                Some(other) => bail!("watch: unexpected frame {other:?}"),
                None => return Err(anyhow!("the scheduler ended the watch")),
            },
            _ = heartbeat.tick() => {
                supervisor.retry_fetches(&connection);
                report(&connection, supervisor).await?;
            }
            () = supervisor.changed.notified() => report(&connection, supervisor).await?,
        }
    }
}

async fn report(connection: &quinn::Connection, supervisor: &Supervisor) -> Result<()> {
    match quic::call(connection, &Request::Report(supervisor.report())).await? {
        Response::Ok => Ok(()),
        Response::Error(e) => bail!("reporting: {e}"),
        other => bail!("reporting: unexpected answer {other:?}"),
    }
}
