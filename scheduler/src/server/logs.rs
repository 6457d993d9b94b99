//! `Logs` on the scheduler: finds the instances a request names and their
//! nodes, asks each node with `ReadLogs` on a stream the scheduler opens on
//! the node's own connection, and relays the `LogLines` frames to the
//! caller's stream.
//!
//! Without `follow`, instances are read one after the other, each whole,
//! in name order; with it, all at once, lines relayed as they come. Lines
//! of a Deployment's instances are prefixed with `[INSTANCE] `. Every node
//! must be connected before the first line goes out: a Deployment with an
//! instance on an unreachable node fails as a whole (its other instances
//! can be read one by one).

use std::sync::Arc;
use std::time::Duration;

use berth_api::quic::{recv_frame_limited, send_frame};
use berth_api::wire::{ApiError, ErrorCode, Request, Response};
use berth_api::{Instance, Kind, Object};
use tokio::sync::mpsc;

use super::blocking;
use crate::cluster::Cluster;
use crate::store::key;

/// How long a node may take for each frame of a log it reads (not when
/// following, where silence is normal).
pub const NODE_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest frame accepted from a node on a log stream: 1 MiB, well above
/// what a node sends (`berth_node::agent::LOG_FRAME_BYTES` plus one line).
pub const MAX_LOG_FRAME: usize = 1024 * 1024;

/// Frames from followed instances waiting to be relayed.
const FOLLOW_QUEUE: usize = 16;

/// Whose logs.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// One instance, by name.
    Instance(String),
    /// Every placed instance of a Deployment, by its name.
    Deployment(String),
}

/// A `Logs` request.
#[derive(Debug, Clone)]
pub(super) struct Query {
    pub namespace: String,
    pub target: Target,
    pub tail: Option<u64>,
    pub since_seconds: Option<u64>,
    pub follow: bool,
}

/// One instance to read, and where.
#[derive(Debug, Clone)]
struct Source {
    instance: String,
    uid: String,
    node: String,
}

/// Answers a `Logs` request on `send`: lines, then the end of the stream,
/// or an `Error` frame.
pub(super) async fn relay(cluster: &Arc<Cluster>, query: Query, send: &mut quinn::SendStream) {
    if let Err(error) = try_relay(cluster, query, send).await {
        let _ = send_frame(send, &Response::Error(error)).await;
    }
}

async fn try_relay(
    cluster: &Arc<Cluster>,
    query: Query,
    send: &mut quinn::SendStream,
) -> Result<(), ApiError> {
    let sources = {
        let cluster = cluster.clone();
        let (namespace, target) = (query.namespace.clone(), query.target.clone());
        blocking(move || sources(&cluster, &namespace, &target)).await?
    };
    let prefixed = matches!(query.target, Target::Deployment(_));
    let connected = sources
        .into_iter()
        .map(|source| match cluster.node_connection(&source.node) {
            Some(connection) => Ok((source, connection)),
            None => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "node {} of instance {} is not connected",
                    source.node, source.instance
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = |uid: &str| Request::ReadLogs {
        uid: uid.to_owned(),
        tail: query.tail,
        since_seconds: query.since_seconds,
        follow: query.follow,
    };
    if !query.follow {
        for (source, connection) in connected {
            let mut recv = open(&connection, &source, &request(&source.uid)).await?;
            loop {
                let frame = tokio::time::timeout(NODE_ANSWER_TIMEOUT, next(&mut recv, &source))
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            ErrorCode::Unavailable,
                            format!(
                                "node {} did not answer in {}s for instance {}",
                                source.node,
                                NODE_ANSWER_TIMEOUT.as_secs(),
                                source.instance
                            ),
                        )
                    })??;
                let Some(lines) = frame else { break };
                let lines = prefix(&source, lines, prefixed);
                if send_frame(send, &Response::LogLines(lines)).await.is_err() {
                    // The caller went away.
                    return Ok(());
                }
            }
        }
        return Ok(());
    }

    let (tx, mut rx) = mpsc::channel(FOLLOW_QUEUE);
    // Dropped on return, which aborts every task, drops its node stream and
    // so stops the node's side.
    let mut tasks = tokio::task::JoinSet::new();
    for (source, connection) in connected {
        let tx = tx.clone();
        let request = request(&source.uid);
        tasks.spawn(async move {
            let outcome = async {
                let mut recv = open(&connection, &source, &request).await?;
                while let Some(lines) = next(&mut recv, &source).await? {
                    if tx.send(Ok(prefix(&source, lines, prefixed))).await.is_err() {
                        break;
                    }
                }
                Ok::<_, ApiError>(())
            }
            .await;
            if let Err(error) = outcome {
                let _ = tx.send(Err(error)).await;
            }
        });
    }
    drop(tx);
    let stopped = send.stopped();
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            _ = &mut stopped => return Ok(()),
        };
        match frame {
            // Every instance's log ended: they all stopped.
            None => return Ok(()),
            Some(Ok(lines)) => {
                if send_frame(send, &Response::LogLines(lines)).await.is_err() {
                    return Ok(());
                }
            }
            Some(Err(error)) => return Err(error),
        }
    }
}

fn prefix(source: &Source, lines: Vec<String>, prefixed: bool) -> Vec<String> {
    if !prefixed {
        return lines;
    }
    lines
        .into_iter()
        .map(|line| format!("[{}] {line}", source.instance))
        .collect()
}

/// Opens a stream to the node and sends it `request`.
async fn open(
    connection: &quinn::Connection,
    source: &Source,
    request: &Request,
) -> Result<quinn::RecvStream, ApiError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot reach node {} of instance {}: {e}",
                source.node, source.instance
            ),
        )
    };
    let (mut send, recv) = connection.open_bi().await.map_err(|e| unreachable(&e))?;
    send_frame(&mut send, request)
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = send.finish();
    Ok(recv)
}

/// The node's next frame of lines; `None` at the end of its log.
async fn next(
    recv: &mut quinn::RecvStream,
    source: &Source,
) -> Result<Option<Vec<String>>, ApiError> {
    match recv_frame_limited::<Response>(recv, MAX_LOG_FRAME).await {
        Ok(Some(Response::LogLines(lines))) => Ok(Some(lines)),
        Ok(None) => Ok(None),
        Ok(Some(Response::Error(e))) if e.code == ErrorCode::NotFound => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "instance {} has no log on node {} (yet)",
                source.instance, source.node
            ),
        )),
        Ok(Some(Response::Error(e))) => Err(ApiError::new(
            e.code,
            format!(
                "node {} reading instance {}: {}",
                source.node, source.instance, e.message
            ),
        )),
        Ok(Some(_)) => Err(ApiError::new(
            ErrorCode::Internal,
            format!(
                "node {} answered a log read with an unexpected frame",
                source.node
            ),
        )),
        Err(e) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "lost node {} while reading instance {}: {e}",
                source.node, source.instance
            ),
        )),
    }
}

/// The instances `target` names, with their uids and nodes.
fn sources(cluster: &Cluster, namespace: &str, target: &Target) -> Result<Vec<Source>, ApiError> {
    let instances: Vec<Instance> = match target {
        Target::Instance(name) => {
            match cluster
                .store
                .get(&key(Kind::Instance, Some(namespace), name))?
            {
                Some(Object::Instance(instance)) => vec![*instance],
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("Instance {namespace}/{name} not found"),
                    ));
                }
            }
        }
        Target::Deployment(name) => {
            if cluster
                .store
                .get(&key(Kind::Deployment, Some(namespace), name))?
                .is_none()
            {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("Deployment {namespace}/{name} not found"),
                ));
            }
            let mut owned: Vec<Instance> = cluster
                .store
                .list(Kind::Instance, Some(namespace))?
                .into_iter()
                .filter_map(|object| match object {
                    Object::Instance(instance)
                        if instance.spec.node_name.is_some()
                            && instance.metadata.owner_references.iter().any(|owner| {
                                owner.kind == Kind::Deployment.as_str() && owner.name == *name
                            }) =>
                    {
                        Some(*instance)
                    }
                    _ => None,
                })
                .collect();
            if owned.is_empty() {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("Deployment {namespace}/{name} has no instances on nodes"),
                ));
            }
            owned.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            owned
        }
    };
    instances
        .into_iter()
        .map(|instance| {
            let name = instance.metadata.name;
            let node = instance.spec.node_name.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("Instance {namespace}/{name} is not on a node yet"),
                )
            })?;
            let uid = instance.metadata.uid.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Internal,
                    format!("Instance {namespace}/{name} has no uid"),
                )
            })?;
            Ok(Source {
                instance: name,
                uid,
                node,
            })
        })
        .collect()
}
