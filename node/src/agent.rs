//! The node's session with the scheduler: register, watch assignments (and
//! the Services' endpoints that come with them), report status, answer the
//! scheduler's log reads, and reconnect whenever the connection drops.
//! A connection the scheduler closes with `CLOSE_REVOKED` (the node was
//! deleted, or joined again elsewhere) is the one ending that stops every
//! instance: they run elsewhere now (decision 0029).
//!
//! The scheduler may open streams to the node on the node's connection;
//! on each the node reads one `ReadLogs` and answers with `LogLines`
//! frames (see [`crate::logs`]). It answers nothing else: every stream on
//! this connection comes from the scheduler it verified at connect time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use berth_api::quic;
use berth_api::wire::{
    ApiError, Assignments, CLOSE_REVOKED, ErrorCode, NodeInfo, Request, Response,
};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{debug, info, warn};

use crate::logs::{LogError, LogQuery};
use crate::metrics::Metrics;
use crate::metrics::usage::UsageTracker;
use crate::services::ServiceRouter;
use crate::supervisor::Supervisor;

/// How often the node reports when nothing changes: its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Most lines in one `LogLines` frame.
pub const LOG_FRAME_LINES: usize = 1000;

/// Bytes of text after which a `LogLines` frame is sent: 256 KiB, so a
/// frame stays under that plus one line ([`crate::logs::MAX_LINE_BYTES`]).
pub const LOG_FRAME_BYTES: usize = 256 * 1024;

/// Largest frame the node reads on a stream the scheduler opened: a
/// `ReadLogs` is a few dozen bytes.
pub const MAX_INCOMING_FRAME: usize = 16 * 1024;

/// Keeps a session with the scheduler until `shutdown` resolves.
pub async fn run(
    endpoint: quinn::Endpoint,
    scheduler: SocketAddr,
    info: NodeInfo,
    supervisor: Arc<Supervisor>,
    services: Arc<ServiceRouter>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut usage = UsageTracker::default();
    loop {
        let began = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = session(&endpoint, scheduler, &info, &supervisor, &services, &metrics, &mut usage) => outcome,
        };
        let mut wait = backoff;
        match outcome {
            Err(e) if e.is::<Revoked>() => {
                warn!(%scheduler, error = %e, "refused by the scheduler");
                wait = REVOKED_RETRY;
            }
            Err(e) => {
                warn!(%scheduler, error = %format!("{e:#}"), "scheduler session ended; instances keep serving");
            }
            Ok(()) => {}
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(wait) => {}
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
    services: &ServiceRouter,
    metrics: &Metrics,
    usage: &mut UsageTracker,
) -> Result<()> {
    let connection = quic::connect(endpoint, scheduler).await?;
    let outcome = registered_session(
        &connection,
        scheduler,
        info,
        supervisor,
        services,
        metrics,
        usage,
    )
    .await;
    if outcome.is_err() && is_revoked(&connection) {
        // The scheduler no longer knows this node (deleted, or joined
        // again elsewhere under its name): what it runs was replaced
        // elsewhere, so it stops serving rather than double up.
        supervisor.apply(Assignments::default(), &connection);
        return Err(Revoked.into());
    }
    outcome
}

/// The scheduler closed the connection with [`CLOSE_REVOKED`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the scheduler revoked this node's certificate (the node was deleted or joined again \
     elsewhere): its instances are stopped; join again with a bootstrap token after removing \
     node.crt from the data directory"
)]
struct Revoked;

/// How long a node whose certificate was revoked waits between attempts:
/// it cannot get back in without joining again, so it tries seldom.
pub const REVOKED_RETRY: Duration = Duration::from_secs(30);

/// Whether the scheduler closed `connection` because this node's
/// certificate is no longer one of the cluster's.
fn is_revoked(connection: &quinn::Connection) -> bool {
    matches!(
        connection.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == quinn::VarInt::from_u32(CLOSE_REVOKED)
    )
}

async fn registered_session(
    connection: &quinn::Connection,
    scheduler: SocketAddr,
    info: &NodeInfo,
    supervisor: &Arc<Supervisor>,
    services: &ServiceRouter,
    metrics: &Metrics,
    usage: &mut UsageTracker,
) -> Result<()> {
    let connection = connection.clone();
    match quic::call(&connection, &Request::Register(info.clone())).await? {
        Response::Ok => {}
        Response::Error(e) => bail!("registering: {e}"),
        other => bail!("registering: unexpected answer {other:?}"),
    }
    info!(%scheduler, "registered");
    metrics.registered();
    let (mut send, mut recv) = connection.open_bi().await?;
    quic::send_frame(&mut send, &Request::Watch).await?;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = quic::recv_frame::<Response>(&mut recv) => match frame? {
                Some(Response::Assignments(assignments)) => {
                    // Every Service's endpoints; kept when the scheduler
                    // is gone, as the instances are.
                    services.update(&assignments.services);
                    services.update_ingresses(&assignments.ingresses);
                    services.update_policies(&assignments.network_policies);
                    supervisor.apply(assignments, &connection);
                }
                Some(Response::Error(e)) => bail!("watch: {e}"),
                Some(other) => bail!("watch: unexpected frame {other:?}"),
                None => return Err(anyhow!("the scheduler ended the watch")),
            },
            _ = heartbeat.tick() => {
                supervisor.retry_fetches(&connection);
                report(&connection, supervisor, metrics, usage).await?;
            }
            () = supervisor.changed.notified() => report(&connection, supervisor, metrics, usage).await?,
            incoming = connection.accept_bi() => {
                let (send, recv) = incoming?;
                tokio::spawn(answer(supervisor.clone(), send, recv));
            }
        }
    }
}

async fn report(
    connection: &quinn::Connection,
    supervisor: &Supervisor,
    metrics: &Metrics,
    usage: &mut UsageTracker,
) -> Result<()> {
    let mut report = supervisor.report();
    metrics.report(&report);
    // Usage over the interval since the last report: sandboxes' cgroups
    // and requests (see `crate::metrics::usage`).
    report.usage = usage.sample(std::time::Instant::now(), &metrics.sandbox_usage());
    match quic::call(connection, &Request::Report(report)).await? {
        Response::Ok => Ok(()),
        Response::Error(e) => bail!("reporting: {e}"),
        other => bail!("reporting: unexpected answer {other:?}"),
    }
}

/// Answers one stream the scheduler opened.
async fn answer(
    supervisor: Arc<Supervisor>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request = quic::recv_frame_limited::<Request>(&mut recv, MAX_INCOMING_FRAME).await;
    let outcome = match request {
        Ok(Some(Request::ReadLogs {
            uid,
            tail,
            since_seconds,
            follow,
        })) => {
            let since = since_seconds.and_then(|seconds| {
                let seconds = i64::try_from(seconds).ok()?;
                Timestamp::now()
                    .checked_sub(SignedDuration::from_secs(seconds))
                    .ok()
            });
            let query = LogQuery {
                tail,
                since,
                follow,
            };
            read_logs(&supervisor, uid, query, &mut send).await
        }
        Ok(Some(_)) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "a node answers only read-logs",
        )),
        Ok(None) => return,
        Err(e) => Err(ApiError::new(
            ErrorCode::Invalid,
            format!("malformed request: {e}"),
        )),
    };
    if let Err(error) = outcome {
        let _ = quic::send_frame(&mut send, &Response::Error(error)).await;
    }
    let _ = send.finish();
}

/// Sends the lines `query` selects, then, when following, each new line
/// until the instance stops or the scheduler stops the stream. Errs only
/// before the first frame; a scheduler gone away ends it quietly.
async fn read_logs(
    supervisor: &Arc<Supervisor>,
    uid: String,
    query: LogQuery,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let reader = supervisor.clone();
    let read = tokio::task::spawn_blocking(move || reader.logs().read(&uid, &query))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| {
            let code = match e {
                LogError::NotFound(_) => ErrorCode::NotFound,
                LogError::InvalidUid(_) => ErrorCode::Invalid,
                LogError::Io { .. } => ErrorCode::Internal,
            };
            ApiError::new(code, crate::runtime::error_chain(&e))
        })?;
    for frame in frames(read.lines) {
        if quic::send_frame(send, &Response::LogLines(frame))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    let Some(mut follow) = read.follow else {
        return Ok(());
    };
    let stopped = send.stopped();
    tokio::pin!(stopped);
    loop {
        let first = tokio::select! {
            line = follow.recv() => line,
            _ = &mut stopped => return Ok(()),
        };
        let mut frame = match first {
            Ok(line) => vec![line.to_string()],
            Err(RecvError::Lagged(missed)) => {
                debug!(missed, "a log follower fell behind");
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        let mut bytes = frame.iter().map(String::len).sum::<usize>();
        while frame.len() < LOG_FRAME_LINES && bytes < LOG_FRAME_BYTES {
            match follow.try_recv() {
                Ok(line) => {
                    bytes += line.len();
                    frame.push(line.to_string());
                }
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        if quic::send_frame(send, &Response::LogLines(frame))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Cuts `lines` into frames of at most [`LOG_FRAME_LINES`] lines, each
/// ending once it holds [`LOG_FRAME_BYTES`].
fn frames(lines: Vec<String>) -> Vec<Vec<String>> {
    let mut frames = Vec::new();
    let mut frame = Vec::new();
    let mut bytes = 0;
    for line in lines {
        bytes += line.len();
        frame.push(line);
        if frame.len() >= LOG_FRAME_LINES || bytes >= LOG_FRAME_BYTES {
            frames.push(std::mem::take(&mut frame));
            bytes = 0;
        }
    }
    if !frame.is_empty() {
        frames.push(frame);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_bounded_by_lines_and_bytes() {
        let short: Vec<String> = (0..2500).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = frames(short).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let long: Vec<String> = (0..5).map(|_| "x".repeat(100 * 1024)).collect();
        let sizes: Vec<usize> = frames(long).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2]);
        assert!(frames(Vec::new()).is_empty());
    }
}
