//! The API server: accepts QUIC connections, authenticates the peer by its
//! client certificate, and serves one request per stream. `Watch`, `Logs`
//! and `Events` keep their stream open; `Logs` is relayed from the nodes in
//! [`logs`], `Events` streamed from the store in [`events`].

mod events;
mod logs;
mod top;
mod trace;
mod wake;

use std::sync::Arc;
use std::time::Instant;

use berth_api::Kind;
use berth_api::quic::{recv_request_limited, send_frame};
use berth_api::wire::{ApiError, ErrorCode, Request, Response};
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;
use tracing::{Instrument as _, debug, info, info_span, instrument, warn};

use crate::admission;
use crate::cluster::Cluster;
use crate::nodes;
use crate::pki::{Subject, der_fingerprint};

/// Connections served at once; more are refused until one ends.
pub const MAX_CONNECTIONS: usize = 4096;

/// Largest frame read from a peer without a client certificate.
pub const ANONYMOUS_FRAME_LEN: usize = 16 * 1024;

/// QUIC close code: the peer presented no usable client certificate.
pub const CLOSE_UNAUTHENTICATED: u32 = 0x101;

/// QUIC close code: the scheduler is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0x102;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    /// No client certificate: may only join.
    Anonymous,
    /// A node, by name.
    Node(String),
    /// A user, by name.
    User(String),
}

/// Serves `endpoint` until `shutdown` resolves, then closes every connection.
pub async fn serve(
    endpoint: quinn::Endpoint,
    cluster: Arc<Cluster>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            _ = &mut shutdown => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let cluster = cluster.clone();
        tokio::spawn(async move {
            connection(cluster, incoming).await;
            drop(permit);
        });
    }
    endpoint.close(CLOSE_SHUTDOWN.into(), b"scheduler shutting down");
}

/// Why a connection is refused: a certificate the cluster revoked (or
/// never issued) is told apart, so that a deleted node learns it.
enum Refused {
    Revoked(String),
    Other(String),
}

fn authenticate(cluster: &Cluster, connection: &quinn::Connection) -> Result<Caller, Refused> {
    let Some(certs) = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
    else {
        return Ok(Caller::Anonymous);
    };
    let Some(leaf) = certs.first() else {
        return Ok(Caller::Anonymous);
    };
    let fingerprint = der_fingerprint(leaf);
    match cluster.store.identity(&fingerprint) {
        Ok(Some(subject)) => match Subject::decode(&subject) {
            Some(Subject::Node(name)) => Ok(Caller::Node(name)),
            Some(Subject::User(name)) => Ok(Caller::User(name)),
            None => Err(Refused::Other(
                "client certificate has an unknown subject".into(),
            )),
        },
        Ok(None) => Err(Refused::Revoked(
            "client certificate is not known to this cluster (revoked?)".into(),
        )),
        Err(e) => Err(Refused::Other(format!(
            "cannot check client certificate: {e}"
        ))),
    }
}

async fn connection(cluster: Arc<Cluster>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    let caller = match authenticate(&cluster, &connection) {
        Ok(caller) => caller,
        Err(refused) => {
            let (code, reason) = match refused {
                Refused::Revoked(reason) => (berth_api::wire::CLOSE_REVOKED, reason),
                Refused::Other(reason) => (CLOSE_UNAUTHENTICATED, reason),
            };
            warn!(%remote, %reason, "refusing connection");
            connection.close(code.into(), reason.as_bytes());
            return;
        }
    };
    debug!(%remote, ?caller, "connected");
    let session = crate::users::Session::new(&connection);
    if let Caller::Node(name) = &caller {
        cluster.node_connected(name, connection.clone());
    }
    while let Ok((send, recv)) = connection.accept_bi().await {
        let cluster = cluster.clone();
        let caller = caller.clone();
        let connection = connection.clone();
        let session = session.clone();
        tokio::spawn(async move {
            stream(cluster, caller, session, connection, send, recv).await;
        });
    }
    if let Caller::Node(name) = &caller {
        cluster.node_disconnected(name, &connection);
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::new(ErrorCode::Internal, e.to_string())))
}

fn forbidden(caller: &Caller, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("{caller:?} may not {what}").to_lowercase(),
    )
}

#[instrument(skip_all, fields(?caller))]
async fn stream(
    cluster: Arc<Cluster>,
    caller: Caller,
    session: Arc<crate::users::Session>,
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // A connection a bearer token authenticated is its user's.
    let caller = match (caller, session.token_user()) {
        (Caller::Anonymous, Some(user)) => Caller::User(user),
        (caller, _) => caller,
    };
    // Before a caller is known, only a small Join fits in a frame.
    let limit = if caller == Caller::Anonymous {
        ANONYMOUS_FRAME_LEN
    } else {
        berth_api::wire::MAX_FRAME_LEN
    };
    let (request, remote) = match recv_request_limited(&mut recv, limit).await {
        Ok(Some(received)) => received,
        Ok(None) => return,
        Err(e) => {
            let error = ApiError::new(ErrorCode::Invalid, format!("malformed request: {e}"));
            let _ = send_frame(&mut send, &Response::Error(error)).await;
            let _ = send.finish();
            return;
        }
    };
    // Authorization, in this one place: what a user may do (RBAC), and
    // the requests about users and tokens, are answered by the gate.
    let user = match &caller {
        Caller::User(name) => Some(name.as_str()),
        _ => None,
    };
    let gated = crate::users::gate(&cluster, user, &session, request, &connection, &mut send);
    let Some(request) = gated.await else { return };
    let response = match (caller.clone(), request) {
        (Caller::Node(name), Request::Watch) => {
            watch(&cluster, &name, &mut send).await;
            let _ = send.finish();
            return;
        }
        (
            Caller::User(_),
            Request::Logs {
                namespace,
                instance,
                deployment,
                tail,
                since_seconds,
                follow,
            },
        ) => {
            let target = match (instance, deployment) {
                (Some(name), None) => logs::Target::Instance(name),
                (None, Some(name)) => logs::Target::Deployment(name),
                _ => {
                    let error = ApiError::new(
                        ErrorCode::Invalid,
                        "logs: name exactly one of an instance and a deployment",
                    );
                    let _ = send_frame(&mut send, &Response::Error(error)).await;
                    let _ = send.finish();
                    return;
                }
            };
            let query = logs::Query {
                namespace,
                target,
                tail,
                since_seconds,
                follow,
            };
            logs::relay(&cluster, query, &mut send).await;
            let _ = send.finish();
            return;
        }
        (
            Caller::User(_),
            Request::Events {
                namespace,
                involved,
                watch,
            },
        ) => {
            let query = events::Query {
                namespace,
                involved,
                watch,
            };
            events::stream(&cluster, query, &mut send).await;
            let _ = send.finish();
            return;
        }
        (caller, request) => {
            // The request's span continues the caller's trace, and what an
            // Apply creates carries it on to the nodes.
            let span = info_span!("handle request", verb = request_name(&request));
            if let Some(remote) = &remote {
                berth_api::trace::set_parent(&span, remote);
            }
            let request = trace::annotate(request, &span);
            handle(&cluster, &caller, request).instrument(span).await
        }
    };
    let unauthenticated = match &response {
        Response::Error(e) if e.code == ErrorCode::Unauthenticated => Some(e.message.clone()),
        _ => None,
    };
    if send_frame(&mut send, &response).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
    if let (Some(reason), Caller::Anonymous) = (unauthenticated, &caller) {
        connection.close(CLOSE_UNAUTHENTICATED.into(), reason.as_bytes());
    }
}

/// Answers one request and records it in the API metrics.
async fn handle(cluster: &Arc<Cluster>, caller: &Caller, request: Request) -> Response {
    let verb = request_name(&request);
    let kind = request_kind(&request);
    let began = Instant::now();
    // The audit log records every mutating request and its result.
    let user = match caller {
        Caller::Anonymous => "anonymous".to_owned(),
        Caller::Node(name) => format!("node:{name}"),
        Caller::User(name) => format!("user:{name}"),
    };
    let audit = crate::audit::Entry::of(&user, verb, &request);
    let response = answer(cluster, caller, request).await;
    if let (Some(entry), Some(log)) = (audit, cluster.audit.get()) {
        let trace = berth_api::trace::of(&tracing::Span::current()).map(|t| t.to_string());
        let entry = entry.answered(&response, jiff::Timestamp::now(), trace);
        if let Err(e) = log.record(&entry) {
            warn!(error = %e, "cannot write the audit log");
        }
    }
    let code = match &response {
        Response::Error(e) => code_name(e.code),
        _ => "ok",
    };
    cluster
        .metrics
        .api_request(verb, kind, code, began.elapsed().as_secs_f64());
    response
}

async fn answer(cluster: &Arc<Cluster>, caller: &Caller, request: Request) -> Response {
    let cluster = cluster.clone();
    let result = match (caller, request) {
        (Caller::Anonymous, Request::Join { secret, node_name }) => {
            info!(node = %node_name, "node joining");
            blocking(move || nodes::join(&cluster, &secret, &node_name)).await
        }
        (Caller::Anonymous, _) => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "client certificate required",
        )),
        (Caller::Node(name), Request::Register(info)) => {
            let name = name.clone();
            blocking(move || {
                if let Some(revision) = nodes::register(&cluster, &name, info)? {
                    cluster.changed(revision);
                }
                Ok(Response::Ok)
            })
            .await
        }
        (Caller::Node(name), Request::Report(mut report)) => {
            let name = name.clone();
            let usage = std::mem::take(&mut report.usage);
            cluster.record_usage(&name, jiff::Timestamp::now(), usage);
            blocking(move || {
                let revision = nodes::report(&cluster, &name, report)?;
                cluster.changed(revision);
                Ok(Response::Ok)
            })
            .await
        }
        (Caller::Node(_) | Caller::User(_), Request::GetBlob { digest }) => {
            blocking(move || match cluster.store.get_blob(&digest)? {
                Some(bytes) => Ok(Response::Blob(bytes)),
                None => Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("component {digest} not found"),
                )),
            })
            .await
        }
        (Caller::User(_), Request::PutBlob { digest, bytes }) => {
            blocking(move || {
                admission::put_blob(&cluster, &digest, &bytes)?;
                Ok(Response::BlobStored)
            })
            .await
        }
        (
            Caller::User(_),
            Request::PatchDeployment {
                namespace,
                name,
                patch,
            },
        ) => {
            blocking(move || {
                let (object, revision) =
                    admission::patch_deployment(&cluster, &namespace, &name, &patch)?;
                cluster.changed(revision);
                Ok(Response::Object(object))
            })
            .await
        }
        (Caller::User(_), Request::PatchNode { name, patch }) => {
            blocking(move || {
                let (object, revision) = nodes::patch(&cluster, &name, &patch)?;
                cluster.changed(revision);
                Ok(Response::Object(object))
            })
            .await
        }
        (Caller::User(_), Request::Apply { objects }) => {
            blocking(move || {
                let (outcomes, revision) = admission::apply(&cluster, &objects)?;
                cluster.changed(revision);
                Ok(Response::Applied(outcomes))
            })
            .await
        }
        (
            Caller::User(_),
            Request::Get {
                kind,
                namespace,
                name,
            },
        ) => {
            blocking(move || {
                let objects =
                    admission::get(&cluster, kind, namespace.as_deref(), name.as_deref())?;
                Ok(Response::Objects(
                    objects.iter().map(|o| o.to_json()).collect(),
                ))
            })
            .await
        }
        // Secrets with their values (`get --show-secrets`). Who may send
        // this is decided before dispatch, by the RBAC gate
        // (`crate::rbac::attributes`); `Get` above answers Secrets
        // redacted. Nodes never may: their environment values come only
        // with their own assignments (`nodes::assignments`).
        (Caller::User(_), Request::RevealSecrets { namespace, name }) => {
            blocking(move || {
                let objects =
                    admission::reveal_secrets(&cluster, namespace.as_deref(), name.as_deref())?;
                Ok(Response::Objects(
                    objects.iter().map(|o| o.to_json()).collect(),
                ))
            })
            .await
        }
        (Caller::User(_), Request::Evict { namespace, name }) => {
            blocking(move || {
                let (object, revision) = crate::disruption::evict(&cluster, &namespace, &name)?;
                cluster.changed(revision);
                Ok(Response::Deleted { object })
            })
            .await
        }
        (
            Caller::User(_),
            Request::Delete {
                kind: Kind::Node,
                name,
                ..
            },
        ) => {
            blocking(move || {
                let (object, revision) = crate::disruption::delete_node(&cluster, &name)?;
                cluster.changed(revision);
                Ok(Response::Deleted { object })
            })
            .await
        }
        (
            Caller::User(_),
            Request::Delete {
                kind,
                namespace,
                name,
            },
        ) => {
            blocking(move || {
                let (object, revision) =
                    admission::delete(&cluster, kind, namespace.as_deref(), &name)?;
                cluster.changed(revision);
                Ok(Response::Deleted { object })
            })
            .await
        }
        (Caller::User(_), Request::Top { what, namespace }) => blocking(move || {
            top::rows(&cluster, what, namespace.as_deref(), jiff::Timestamp::now())
        })
        .await
        .map(Response::Top),
        (
            Caller::Node(name),
            Request::Wake {
                namespace,
                deployment,
            },
        ) => {
            let name = name.clone();
            blocking(move || wake::answer(&cluster, &name, &namespace, &deployment)).await
        }
        (caller, Request::Join { .. }) => Err(forbidden(caller, "join: already has credentials")),
        (caller, Request::ReadLogs { .. }) => Err(forbidden(
            caller,
            "send read-logs: the scheduler sends it to nodes",
        )),
        (caller @ Caller::User(_), request) => Err(forbidden(
            caller,
            &format!("send node request {}", request_name(&request)),
        )),
        (caller @ Caller::Node(_), request) => Err(forbidden(
            caller,
            &format!("send user request {}", request_name(&request)),
        )),
    };
    result.unwrap_or_else(Response::Error)
}

/// An error code as the `code` label of the API metrics.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Invalid => "Invalid",
        ErrorCode::NotFound => "NotFound",
        ErrorCode::Forbidden => "Forbidden",
        ErrorCode::Unauthenticated => "Unauthenticated",
        ErrorCode::Internal => "Internal",
        ErrorCode::Unavailable => "Unavailable",
        ErrorCode::TooManyRequests => "TooManyRequests",
    }
}

/// The kind a request is about, for the API metrics: empty when it names
/// none, or an apply of several kinds.
fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Get { kind, .. } | Request::Delete { kind, .. } => kind.as_str(),
        Request::PatchDeployment { .. } => Kind::Deployment.as_str(),
        Request::PatchNode { .. } => Kind::Node.as_str(),
        Request::RevealSecrets { .. } => Kind::Secret.as_str(),
        Request::Evict { .. } => Kind::Instance.as_str(),
        Request::Apply { objects } => {
            #[derive(serde::Deserialize)]
            struct Head {
                kind: String,
            }
            let mut kinds = objects.iter().map(|bytes| {
                serde_json::from_slice::<Head>(bytes)
                    .ok()
                    .and_then(|head| Kind::from_manifest_name(&head.kind))
            });
            match kinds.next().flatten() {
                Some(first) if kinds.all(|kind| kind == Some(first)) => first.as_str(),
                _ => "",
            }
        }
        _ => "",
    }
}

pub(crate) fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Apply { .. } => "apply",
        Request::Get { .. } => "get",
        Request::Delete { .. } => "delete",
        Request::PutBlob { .. } => "put-blob",
        Request::GetBlob { .. } => "get-blob",
        Request::Join { .. } => "join",
        Request::Register(_) => "register",
        Request::Watch => "watch",
        Request::Report(_) => "report",
        Request::PatchNode { .. } => "patch-node",
        Request::PatchDeployment { .. } => "patch-deployment",
        Request::Logs { .. } => "logs",
        Request::ReadLogs { .. } => "read-logs",
        Request::Top { .. } => "top",
        Request::Events { .. } => "events",
        Request::Wake { .. } => "wake",
        Request::IssueCertificate { .. } => "issue-certificate",
        Request::RevokeUser { .. } => "revoke-user",
        Request::CreateToken { .. } => "create-token",
        Request::Authenticate { .. } => "authenticate",
        Request::CanI { .. } => "can-i",
        Request::RevealSecrets { .. } => "reveal-secrets",
        Request::Evict { .. } => "evict",
    }
}

/// Streams `node`'s assignments: now, and again whenever they or the
/// cluster's service routes change.
async fn watch(cluster: &Arc<Cluster>, node: &str, send: &mut quinn::SendStream) {
    let mut changes = cluster.subscribe();
    let mut last = None;
    loop {
        changes.mark_unchanged();
        let snapshot_cluster = cluster.clone();
        let name = node.to_owned();
        let current = match blocking(move || nodes::assignments(&snapshot_cluster, &name)).await {
            Ok(current) => current,
            Err(e) => {
                warn!(%node, error = %e, "cannot compute assignments");
                let _ = send_frame(send, &Response::Error(e)).await;
                return;
            }
        };
        // A new revision that changes neither the node's instances nor any
        // Service's endpoints sends nothing.
        if last.as_ref().map(|a: &berth_api::wire::Assignments| {
            (
                &a.instances,
                &a.services,
                &a.ingresses,
                &a.scale_to_zero,
                &a.network_policies,
            )
        }) != Some((
            &current.instances,
            &current.services,
            &current.ingresses,
            &current.scale_to_zero,
            &current.network_policies,
        )) {
            if send_frame(send, &Response::Assignments(current.clone()))
                .await
                .is_err()
            {
                return;
            }
            last = Some(current);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = send.stopped() => return,
        }
    }
}
