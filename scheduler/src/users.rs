//! Users, bearer tokens and the gate every user request passes before
//! dispatch.
//!
//! A connection is authenticated by its client certificate (`node:NAME`
//! or `user:NAME`, see [`crate::pki`]) or, opened without one, by a
//! [`Request::Authenticate`] carrying a bearer token; its [`Session`]
//! remembers which. [`gate`] then, for every request of a user:
//! re-checks the credential (a revoked certificate or token, or an
//! expired token, is refused from the next request on, not only at the
//! next connection), asks [`crate::rbac`] whether the request is allowed,
//! and answers the requests about users and tokens itself. Tokens are
//! stored as the SHA-256 of their secret only. The reasons are in
//! `docs/decisions/0035-users-tokens-and-rbac.md`.

use std::sync::{Arc, OnceLock};

use berth_api::quic::send_frame;
use berth_api::rbac::{
    CLUSTER_ADMIN, RbacSubject, Resource, RoleBinding, RoleRef, VERBS, builtin_cluster_roles,
};
use berth_api::wire::{ApiError, ErrorCode, Request, Response};
use berth_api::{API_VERSION, Kind, Object, ObjectMeta};
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use tracing::info;

use crate::cluster::Cluster;
use crate::pki::{Subject, der_fingerprint, identity_fingerprint, random_hex};
use crate::rbac::{Attributes, Need, Policy};
use crate::store::{Store, StoreError, key};

/// The user `berth scheduler` writes credentials for, bound to
/// `cluster-admin` at start.
pub const ADMIN_USER: &str = "admin";

/// How one connection proved who it is.
#[derive(Debug, Default)]
pub struct Session {
    /// The fingerprint of its client certificate, if it has one.
    fingerprint: Option<String>,
    /// The user and token hash, once a token authenticated it.
    token: OnceLock<(String, String)>,
}

impl Session {
    /// The session of `connection`, as its handshake left it.
    pub fn new(connection: &quinn::Connection) -> Arc<Session> {
        let fingerprint = connection
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|certs| certs.first().map(|leaf| der_fingerprint(leaf)));
        Arc::new(Session {
            fingerprint,
            token: OnceLock::new(),
        })
    }

    /// The user a token authenticated the connection as.
    pub fn token_user(&self) -> Option<String> {
        self.token.get().map(|(user, _)| user.clone())
    }
}

/// Creates the built-in ClusterRoles and binds [`ADMIN_USER`] to
/// `cluster-admin`, each only if absent (a changed built-in is kept).
pub fn ensure_builtin_roles(store: &Store) -> Result<(), StoreError> {
    let meta = |name: &str| ObjectMeta {
        name: name.into(),
        uid: Some(uuid::Uuid::new_v4().to_string()),
        creation_timestamp: Some(jiff::Timestamp::now()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    let mut objects: Vec<Object> = builtin_cluster_roles()
        .into_iter()
        .map(|mut role| {
            role.metadata = meta(&role.metadata.name);
            Object::ClusterRole(Box::new(role))
        })
        .collect();
    objects.push(Object::ClusterRoleBinding(Box::new(RoleBinding {
        api_version: API_VERSION.into(),
        kind: Kind::ClusterRoleBinding.as_str().into(),
        metadata: meta(CLUSTER_ADMIN),
        role_ref: RoleRef {
            api_group: None,
            kind: Kind::ClusterRole.as_str().into(),
            name: CLUSTER_ADMIN.into(),
        },
        subjects: vec![RbacSubject {
            api_group: None,
            kind: "User".into(),
            name: ADMIN_USER.into(),
        }],
    })));
    store.write(|txn| {
        for object in objects {
            let stored = key(object.kind(), None, &object.metadata().name);
            if txn.get(&stored)?.is_none() {
                txn.put(object)?;
            }
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(())
}

fn error(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    error(ErrorCode::Internal, e.to_string())
}

/// The SHA-256 of a token's secret, as the store keys it.
fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The user of a stored token record, if it has not expired at `now`.
fn token_user(record: &str, now: i64) -> Result<String, ApiError> {
    let mut fields = record.split(' ');
    let (Some(user), Some(expires)) = (fields.next(), fields.next()) else {
        return Err(internal("corrupt token record"));
    };
    let name = fields.next().unwrap_or("");
    let expires: i64 = expires.parse().map_err(internal)?;
    if expires <= now {
        return Err(error(
            ErrorCode::Unauthenticated,
            format!("token {name:?} of user {user:?} has expired"),
        ));
    }
    Ok(user.to_owned())
}

/// Checks that the session's credential is still good.
fn verify(cluster: &Cluster, user: &str, session: &Session) -> Result<(), ApiError> {
    if let Some((_, hash)) = session.token.get() {
        let record = cluster
            .store
            .token(hash)
            .map_err(internal)?
            .ok_or_else(|| {
                error(
                    ErrorCode::Unauthenticated,
                    format!("the token of user {user:?} was revoked"),
                )
            })?;
        return token_user(&record, jiff::Timestamp::now().as_second()).map(drop);
    }
    if let Some(fingerprint) = &session.fingerprint
        && cluster
            .store
            .identity(fingerprint)
            .map_err(internal)?
            .is_none()
    {
        return Err(error(
            ErrorCode::Unauthenticated,
            format!("the client certificate of user {user:?} was revoked"),
        ));
    }
    Ok(())
}

/// Lets `request` through to dispatch (`Some`), or answers it here: a
/// refusal, or a request about users and tokens. `user` is the caller
/// when it is a user; nodes and anonymous callers pass untouched, but
/// for an anonymous [`Request::Authenticate`].
pub async fn gate(
    cluster: &Arc<Cluster>,
    user: Option<&str>,
    session: &Arc<Session>,
    request: Request,
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
) -> Option<Request> {
    let answer = match (user, request) {
        (None, Request::Authenticate { token }) => {
            let (cluster, session) = (cluster.clone(), session.clone());
            let answer = run(move || authenticate(&cluster, &session, &token)).await;
            if let Response::Error(e) = &answer {
                let _ = send_frame(send, &answer).await;
                let _ = send.finish();
                let _ = send.stopped().await;
                connection.close(
                    crate::server::CLOSE_UNAUTHENTICATED.into(),
                    e.message.as_bytes(),
                );
                return None;
            }
            answer
        }
        (None, request) => return Some(request),
        (Some(user), request) => {
            let verb = crate::server::request_name(&request);
            let audit = crate::audit::Entry::of(&format!("user:{user}"), verb, &request);
            let (gated, session, name) = (cluster.clone(), session.clone(), user.to_owned());
            let answer =
                match tokio::task::spawn_blocking(move || decide(&gated, &name, &session, request))
                    .await
                {
                    Ok(Ok(Decision::Dispatch(request))) => return Some(request),
                    Ok(Ok(Decision::Answer(answer))) => answer,
                    Ok(Err(e)) => Response::Error(e),
                    Err(e) => Response::Error(internal(e)),
                };
            // What dispatch serves, it records; what the gate answers
            // (refusals, users and tokens) is recorded here.
            if let (Some(entry), Some(log)) = (audit, cluster.audit.get()) {
                let entry = entry.answered(&answer, jiff::Timestamp::now(), None);
                if let Err(e) = log.record(&entry) {
                    tracing::warn!(error = %e, "cannot write the audit log");
                }
            }
            answer
        }
    };
    if send_frame(send, &answer).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
    None
}

async fn run(f: impl FnOnce() -> Result<Response, ApiError> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => Response::Error(e),
        Err(e) => Response::Error(internal(e)),
    }
}

/// What [`gate`] does with a user's request.
enum Decision {
    /// Pass it on to dispatch.
    Dispatch(Request),
    /// Answer it here.
    Answer(Response),
}

/// The gate's decision, or the error to answer with.
fn decide(
    cluster: &Cluster,
    user: &str,
    session: &Session,
    request: Request,
) -> Result<Decision, ApiError> {
    verify(cluster, user, session)?;
    let policy = Policy::load(&cluster.store).map_err(internal)?;
    let exists = |object: &Object| {
        let stored = key(object.kind(), object.namespace(), &object.metadata().name);
        // An unreadable store fails the apply itself; count it as absent.
        cluster.store.get(&stored).ok().flatten().is_some()
    };
    let need = crate::rbac::attributes(user, &request, exists);
    if let Some(message) = policy.check(user, &need) {
        info!(%user, %message, "forbidden");
        return Err(error(ErrorCode::Forbidden, message));
    }
    let answer = match request {
        Request::IssueCertificate {
            user: subject,
            days,
            create,
        } => issue(cluster, &subject, days, create),
        Request::RevokeUser { user: subject } => revoke(cluster, user, &subject),
        Request::CreateToken {
            name,
            user: subject,
            ttl_seconds,
        } => {
            let subject = if subject.is_empty() { user } else { &subject };
            create_token(cluster, &name, subject, ttl_seconds)
        }
        Request::CanI {
            verb,
            resource,
            namespace,
            name,
            as_user,
        } => can_i(&policy, user, &verb, &resource, namespace, name, as_user),
        Request::Authenticate { .. } => Err(error(
            ErrorCode::Forbidden,
            format!("user {user:?} is already authenticated"),
        )),
        request => return Ok(Decision::Dispatch(request)),
    };
    answer.map(Decision::Answer)
}

fn authenticate(cluster: &Cluster, session: &Session, secret: &str) -> Result<Response, ApiError> {
    let hash = token_hash(secret);
    let record = cluster
        .store
        .token(&hash)
        .map_err(internal)?
        .ok_or_else(|| error(ErrorCode::Unauthenticated, "unknown or revoked token"))?;
    let user = token_user(&record, jiff::Timestamp::now().as_second())?;
    info!(%user, "authenticated by token");
    session
        .token
        .set((user, hash))
        .map_err(|_| error(ErrorCode::Forbidden, "connection already authenticated"))?;
    Ok(Response::Ok)
}

fn check_user_name(name: &str) -> Result<(), ApiError> {
    berth_api::validate::dns1123_label(name)
        .map_err(|message| error(ErrorCode::Invalid, format!("user {name:?}: {message}")))
}

fn user_exists(cluster: &Cluster, name: &str) -> Result<bool, ApiError> {
    cluster
        .store
        .has_subject(&Subject::User(name.to_owned()).encode())
        .map_err(internal)
}

fn issue(cluster: &Cluster, name: &str, days: u32, create: bool) -> Result<Response, ApiError> {
    check_user_name(name)?;
    if days == 0 {
        return Err(error(ErrorCode::Invalid, "days: must be at least 1"));
    }
    match (create, user_exists(cluster, name)?) {
        (true, true) => {
            return Err(error(
                ErrorCode::Invalid,
                format!("user {name:?} already exists"),
            ));
        }
        (false, false) => {
            return Err(error(
                ErrorCode::NotFound,
                format!("user {name:?} not found (create it with `berth user create {name}`)"),
            ));
        }
        _ => {}
    }
    let identity = cluster
        .authority
        .issue_user(name, i64::from(days))
        .map_err(internal)?;
    let fingerprint = identity_fingerprint(&identity).map_err(internal)?;
    cluster
        .store
        .put_identity(&fingerprint, &Subject::User(name.to_owned()).encode())
        .map_err(internal)?;
    let not_after = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .map_err(internal)?;
    info!(user = %name, days, "issued a user certificate");
    Ok(Response::Credentials {
        cert_chain_pem: identity.cert_chain_pem,
        key_pem: identity.key_pem,
        ca_pem: cluster.authority.ca_pem().to_owned(),
        not_after: not_after.to_string(),
    })
}

fn revoke(cluster: &Cluster, caller: &str, name: &str) -> Result<Response, ApiError> {
    if name == caller {
        return Err(error(
            ErrorCode::Invalid,
            format!("user {name:?} cannot revoke itself"),
        ));
    }
    if !user_exists(cluster, name)? {
        return Err(error(
            ErrorCode::NotFound,
            format!("user {name:?} not found"),
        ));
    }
    let subject = Subject::User(name.to_owned()).encode();
    cluster.store.revoke_subject(&subject).map_err(internal)?;
    cluster.store.revoke_tokens(name).map_err(internal)?;
    info!(user = %name, "revoked a user");
    Ok(Response::Ok)
}

fn create_token(
    cluster: &Cluster,
    name: &str,
    user: &str,
    ttl_seconds: u64,
) -> Result<Response, ApiError> {
    berth_api::validate::dns1123_label(name)
        .map_err(|message| error(ErrorCode::Invalid, format!("token {name:?}: {message}")))?;
    if !user_exists(cluster, user)? {
        return Err(error(
            ErrorCode::NotFound,
            format!("user {user:?} not found"),
        ));
    }
    let ttl = i64::try_from(ttl_seconds)
        .ok()
        .filter(|ttl| *ttl > 0)
        .ok_or_else(|| error(ErrorCode::Invalid, "ttl: must be at least 1 second"))?;
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(ttl))
        .map_err(|_| error(ErrorCode::Invalid, "ttl: too long"))?;
    let secret = format!("berth_{}", random_hex(32));
    let record = format!("{user} {} {name}", expires.as_second());
    cluster
        .store
        .put_token(&token_hash(&secret), &record)
        .map_err(internal)?;
    info!(%user, token = %name, "created a token");
    Ok(Response::Token {
        secret,
        expires: expires.to_string(),
    })
}

fn can_i(
    policy: &Policy,
    caller: &str,
    verb: &str,
    resource: &str,
    namespace: Option<String>,
    name: Option<String>,
    as_user: Option<String>,
) -> Result<Response, ApiError> {
    let Some(verb) = VERBS.into_iter().find(|v| *v == verb) else {
        return Err(error(
            ErrorCode::Invalid,
            format!(
                "unknown verb {verb:?}, expected one of {}",
                VERBS.join(", ")
            ),
        ));
    };
    let Some(resource) = Resource::parse(resource) else {
        return Err(error(
            ErrorCode::Invalid,
            format!("unknown resource {resource:?}"),
        ));
    };
    let user = as_user.as_deref().unwrap_or(caller);
    let attributes = Attributes::of(verb, resource, namespace.as_deref(), name.as_deref());
    let need = Need::All(vec![attributes]);
    let refused = policy.check(user, &need);
    Ok(Response::Review {
        allowed: refused.is_none(),
        reason: refused.unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_records_expire() {
        assert_eq!(token_user("alice 100 ci", 99).unwrap(), "alice");
        let e = token_user("alice 100 ci", 100).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        assert_eq!(e.message, r#"token "ci" of user "alice" has expired"#);
        assert_eq!(token_hash("s").len(), 64);
    }
}
