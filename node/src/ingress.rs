//! HTTP ingress: routes `Host: <deployment>.<namespace>.<domain>` to one of
//! that deployment's ready instances on this node.
//!
//! [`Routes`] is the routing table the node updates as instances start,
//! turn ready or not, and stop; [`serve`] accepts HTTP/1.1 connections until
//! shutdown. Responses the ingress makes itself (400, 404, 500, 503 for an
//! instance stopped mid-request, and 504 for a request past its deadline)
//! are short `text/plain` bodies of the same type as a
//! component's, so a connection has one response type.
//! Out of scope for now: HTTP/2, TLS, and routing to instances on other nodes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::uri::Authority;
use http::{HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::metrics::{CompileCounts, Metrics};
use crate::runtime::{PreparedInstance, RuntimeError, Termination, error_chain};
use crate::sandbox::handoff::Peek;

pub mod weights;

/// Open connections the ingress serves at once; further clients wait in the
/// listen backlog until one closes.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long a client may take to send a request head (slow-loris bound).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// After shutdown, how long open connections get to finish their current
/// request before they are cut.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (such as too many open files), which is
/// usually transient: the ingress keeps serving instead of exiting.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The instances serving one deployment on this node.
#[derive(Default)]
struct Route {
    instances: Vec<Routed>,
    next: AtomicUsize,
}

/// One instance of a deployment, and whether it may receive requests.
struct Routed {
    uid: String,
    instance: PreparedInstance,
    /// Passes its readiness probe (or has none): [`Routes::pick`] skips it
    /// while false.
    ready: bool,
}

/// Which instances serve which deployment, keyed by lowercase
/// `(namespace, deployment)`, and which of them are ready.
///
/// Only ready instances are picked. An instance leaves in one of two ways:
/// [`Routes::remove`] at once, or [`Routes::drain`], which stops routing to
/// it, lets its requests in flight finish within a grace period and then
/// cancels the rest.
#[derive(Default)]
pub struct Routes {
    routes: RwLock<HashMap<(String, String), Route>>,
    /// How requests split between a canary and its stable revision.
    splits: weights::Splits,
}

impl Routes {
    /// Adds instance `uid` to the deployment's instances, ready, replacing
    /// any instance already registered under that uid.
    pub fn insert(&self, namespace: &str, deployment: &str, uid: &str, instance: PreparedInstance) {
        self.insert_with_readiness(namespace, deployment, uid, instance, true);
    }

    /// Adds instance `uid` to the deployment's instances, replacing any
    /// instance already registered under that uid; it is picked only once
    /// `ready` (see [`Routes::set_ready`]).
    pub fn insert_with_readiness(
        &self,
        namespace: &str,
        deployment: &str,
        uid: &str,
        instance: PreparedInstance,
        ready: bool,
    ) {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        remove_uid(&mut routes, uid);
        let key = (
            namespace.to_ascii_lowercase(),
            deployment.to_ascii_lowercase(),
        );
        routes.entry(key).or_default().instances.push(Routed {
            uid: uid.to_owned(),
            instance,
            ready,
        });
    }

    /// Marks instance `uid` ready (picked) or not; returns whether it is
    /// routed here at all.
    pub fn set_ready(&self, uid: &str, ready: bool) -> bool {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let routed = routes
            .values_mut()
            .flat_map(|route| route.instances.iter_mut())
            .find(|routed| routed.uid == uid);
        match routed {
            Some(routed) => {
                routed.ready = ready;
                true
            }
            None => false,
        }
    }

    /// Whether instance `uid` is ready; `None` if it is not routed here.
    pub fn is_ready(&self, uid: &str) -> Option<bool> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes
            .values()
            .flat_map(|route| route.instances.iter())
            .find(|routed| routed.uid == uid)
            .map(|routed| routed.ready)
    }

    /// Removes instance `uid` wherever it is; unknown uids are ignored.
    /// Its requests in flight go on (see [`Routes::drain`]).
    pub fn remove(&self, uid: &str) {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        remove_uid(&mut routes, uid);
    }

    /// Stops instance `uid` gracefully: takes it out of routing at once,
    /// waits until its requests in flight (response bodies included) have
    /// finished or `grace` has passed, then cancels it, so that whatever is
    /// left ends with [`RuntimeError::Cancelled`] (a 503, or a cut body).
    ///
    /// Returns `None` if no instance is routed under `uid`, else how many
    /// requests were still in flight when the grace period ended (0 if all
    /// finished). A request picked just before the drain began may still
    /// reach the instance; after the cancel it is answered 503.
    pub async fn drain(&self, uid: &str, grace: Duration) -> Option<usize> {
        let instance = {
            let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
            let instance = routes
                .values()
                .flat_map(|route| route.instances.iter())
                .find(|routed| routed.uid == uid)
                .map(|routed| routed.instance.clone());
            remove_uid(&mut routes, uid);
            instance?
        };
        let left = match tokio::time::timeout(grace, instance.idle()).await {
            Ok(()) => 0,
            Err(_) => instance.in_flight(),
        };
        instance.cancel();
        Some(left)
    }

    /// Picks the next of the deployment's ready instances, round-robin;
    /// `None` if none on this node is ready.
    pub fn pick(&self, namespace: &str, deployment: &str) -> Option<PreparedInstance> {
        self.pick_with_uid(namespace, deployment)
            .map(|(_, instance)| instance)
    }

    /// [`Routes::pick`], with the picked instance's uid. While a canary
    /// runs, the side (canary or stable) is chosen by its weight first
    /// ([`weights`]).
    pub fn pick_with_uid(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Option<(String, PreparedInstance)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let key = (
            namespace.to_ascii_lowercase(),
            deployment.to_ascii_lowercase(),
        );
        let route = routes.get(&key)?;
        let Some(split) = self.splits.get(&key.0, &key.1) else {
            // No canary: round-robin over the ready instances, allocating
            // nothing.
            let ready = || route.instances.iter().filter(|r| r.ready);
            let count = ready().count();
            if count == 0 {
                return None;
            }
            let index = route.next.fetch_add(1, Ordering::Relaxed) % count;
            return ready()
                .nth(index)
                .map(|routed| (routed.uid.clone(), routed.instance.clone()));
        };
        let mut ready: Vec<&Routed> = route.instances.iter().filter(|r| r.ready).collect();
        let side = split.side(ready.iter().map(|r| r.uid.as_str()));
        ready = side
            .into_iter()
            .filter_map(|i| ready.get(i).copied())
            .collect();
        let count = ready.len();
        if count == 0 {
            return None;
        }
        let index = route.next.fetch_add(1, Ordering::Relaxed) % count;
        ready
            .get(index)
            .map(|routed| (routed.uid.clone(), routed.instance.clone()))
    }

    /// Whether one of the deployment's instances on this node is ready.
    /// Unlike [`Routes::pick`], it takes no turn.
    pub fn has_ready(&self, namespace: &str, deployment: &str) -> bool {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let key = (
            namespace.to_ascii_lowercase(),
            deployment.to_ascii_lowercase(),
        );
        routes
            .get(&key)
            .is_some_and(|route| route.instances.iter().any(|r| r.ready))
    }

    /// Sets how requests split between canary and stable revisions.
    pub fn set_canaries(&self, canaries: &[berth_api::wire::CanaryRoute]) {
        self.splits.set(canaries);
    }

    /// Number of instances across all deployments, ready or not.
    pub fn len(&self) -> usize {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes.values().map(|route| route.instances.len()).sum()
    }

    /// Whether no instance is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Routes {
    /// Lists each deployment's instance uids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_map()
            .entries(routes.iter().map(|((namespace, deployment), route)| {
                let uids: Vec<String> = route
                    .instances
                    .iter()
                    .map(|routed| {
                        if routed.ready {
                            routed.uid.clone()
                        } else {
                            format!("{} (not ready)", routed.uid)
                        }
                    })
                    .collect();
                (format!("{namespace}/{deployment}"), uids)
            }))
            .finish()
    }
}

fn remove_uid(routes: &mut HashMap<(String, String), Route>, uid: &str) {
    routes.retain(|_, route| {
        route.instances.retain(|routed| routed.uid != uid);
        !route.instances.is_empty()
    });
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves; routes
/// `Host: <deployment>.<namespace>.<domain>` (port stripped,
/// case-insensitive) to a picked instance.
///
/// On shutdown it stops accepting, lets open connections finish their
/// current request for up to [`DRAIN_TIMEOUT`], then returns `Ok`. Accept
/// errors are logged and retried, never returned: a node must keep serving
/// through a burst of `EMFILE`.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<Routes>,
    domain: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new(CompileCounts::default));
    serve_observed(listener, routes, domain, metrics, shutdown).await
}

/// As [`serve`], counting requests, their latency and terminations in `metrics`.
pub async fn serve_observed(
    listener: TcpListener,
    routes: Arc<Routes>,
    domain: String,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, routes, domain, metrics, None, shutdown).await
}

/// Sees each request the ingress answers: the node's [`Metrics`], or a
/// sandbox's batch for the node.
pub trait Observer: Send + Sync + 'static {
    /// One answered request; `namespace` and `deployment` are empty when
    /// no deployment served it.
    fn request(&self, namespace: &str, deployment: &str, status: u16, seconds: f64);
    /// The node stopped a component (`DeadlineExceeded`, ...).
    fn terminated(&self, reason: &'static str);
    /// One request instance `uid` answered (`trapped` when the node
    /// stopped its component): counted as [`Observer::request`], and per
    /// instance by observers that keep such counts (a sandbox's batch,
    /// for canary analysis).
    fn served(
        &self,
        uid: &str,
        namespace: &str,
        deployment: &str,
        status: u16,
        seconds: f64,
        trapped: bool,
    ) {
        let _ = (uid, trapped);
        self.request(namespace, deployment, status, seconds);
    }
}

impl Observer for Metrics {
    fn request(&self, namespace: &str, deployment: &str, status: u16, seconds: f64) {
        Metrics::request(self, namespace, deployment, status, seconds);
    }

    fn terminated(&self, reason: &'static str) {
        Metrics::terminated(self, reason);
    }
}

/// How long the ingress waits for a connection's first request head
/// before dispatching it.
pub(crate) const PEEK_TIMEOUT: Duration = Duration::from_secs(30);

/// Hands an accepted connection to whoever serves its host (Ingress rules,
/// a container, a sandbox): `None` when handed over, the stream back when
/// the ingress itself should answer it. The ingress peeks the first
/// request's host once and passes it along the chain.
pub trait ConnectionDispatch: Send + Sync + 'static {
    /// Takes the connection whose first request names `host` (lowercase,
    /// without port), or gives it back.
    fn dispatch(
        &self,
        stream: TcpStream,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<TcpStream>> + Send + '_>>;
}

/// As [`serve_observed`], offering each connection to `dispatch` first.
pub async fn serve_with(
    listener: TcpListener,
    routes: Arc<Routes>,
    domain: String,
    metrics: Arc<dyn Observer>,
    dispatch: Option<Arc<dyn ConnectionDispatch>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let domain: Arc<str> = normalize_domain(&domain);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let routes = Arc::clone(&routes);
                let domain = Arc::clone(&domain);
                let metrics = Arc::clone(&metrics);
                let drain = drain_rx.clone();
                let dispatch = dispatch.clone();
                connections.spawn(async move {
                    let stream = match dispatch {
                        Some(dispatch) => {
                            let deadline = Instant::now() + PEEK_TIMEOUT;
                            match crate::sandbox::handoff::peek_host(&stream, deadline).await {
                                Peek::Host(host) => dispatch.dispatch(stream, host).await,
                                Peek::Local => Some(stream),
                                Peek::Closed => None,
                            }
                        }
                        None => Some(stream),
                    };
                    if let Some(stream) = stream {
                        serve_connection(stream, peer, routes, domain, metrics, drain).await;
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingress cannot accept a connection; retrying");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }

    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "ingress drain timed out; closing open connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The domain as routing compares it: lowercase, without a final dot.
pub fn normalize_domain(domain: &str) -> Arc<str> {
    domain.trim_end_matches('.').to_ascii_lowercase().into()
}

/// Serves one HTTP/1.1 connection until the client closes it or `drain`
/// turns true (then after its current request).
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Arc<Routes>,
    domain: Arc<str>,
    metrics: Arc<dyn Observer>,
    mut drain: watch::Receiver<bool>,
) {
    // A component may send its response head before its body, in separate
    // writes; with Nagle's algorithm the second waits for the client's
    // delayed ACK (40 ms on Linux).
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let service = service_fn(move |req| {
        let routes = Arc::clone(&routes);
        let domain = Arc::clone(&domain);
        let metrics = Arc::clone(&metrics);
        async move { Ok::<_, Infallible>(route(req, &routes, &domain, metrics.as_ref()).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let draining = async move {
        // An error means the ingress is gone: drain as well.
        let _ = drain.wait_for(|draining| *draining).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = draining => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Peers cause these (resets, malformed requests, timeouts).
        tracing::debug!(%peer, error = %e, "ingress connection ended with an error");
    }
}

/// Answers one request: finds the deployment from the host, picks an
/// instance, and lets it handle the request. Counts it in `metrics`, by
/// deployment only when one serves it (a client cannot mint label values).
async fn route(
    req: Request<Incoming>,
    routes: &Routes,
    domain: &str,
    metrics: &dyn Observer,
) -> Response<HyperOutgoingBody> {
    let began = Instant::now();
    let host = match request_host(&req) {
        Ok(host) => host,
        Err(message) => {
            let response = text(StatusCode::BAD_REQUEST, message.to_owned());
            metrics.request(
                "",
                "",
                response.status().as_u16(),
                began.elapsed().as_secs_f64(),
            );
            return response;
        }
    };
    let picked = deployment_of(&host, domain).and_then(|(deployment, namespace)| {
        let (uid, instance) = routes.pick_with_uid(namespace, deployment)?;
        Some((namespace.to_owned(), deployment.to_owned(), uid, instance))
    });
    let Some((namespace, deployment, uid, instance)) = picked else {
        let response = text(
            StatusCode::NOT_FOUND,
            format!("no deployment serves host {host:?}\n"),
        );
        metrics.request(
            "",
            "",
            response.status().as_u16(),
            began.elapsed().as_secs_f64(),
        );
        return response;
    };
    // The request's span continues the caller's trace (a `traceparent`
    // header); the component's outbound calls carry it on (`outbound`).
    let span = tracing::info_span!("ingress request", %namespace, %deployment);
    if let Some(parent) = req
        .headers()
        .get(berth_api::trace::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        berth_api::trace::set_parent_text(&span, parent);
    }
    let mut trapped = false;
    let response = match tracing::Instrument::instrument(instance.handle(req), span).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(%host, error = %error_chain(&e), "component failed");
            if let Some(termination) = e.termination() {
                metrics.terminated(termination.reason());
                trapped = true;
            }
            failure_response(&e)
        }
    };
    metrics.served(
        &uid,
        &namespace,
        &deployment,
        response.status().as_u16(),
        began.elapsed().as_secs_f64(),
        trapped,
    );
    response
}

/// The answer for a request the component failed: 504 if it ran out of
/// time, 503 if its instance was stopped, else 500, with the reason
/// (`component failed: DeadlineExceeded`).
fn failure_response(error: &RuntimeError) -> Response<HyperOutgoingBody> {
    if let RuntimeError::Cancelled = error {
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n"));
    }
    match error.termination() {
        Some(termination) => {
            let status = match termination {
                Termination::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            text(status, format!("component failed: {termination}\n"))
        }
        None => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("component failed: {error}\n"),
        ),
    }
}

/// The request's host, lowercase and without port: from the absolute-form
/// URI if there is one, else from the `Host` header.
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<String, &'static str> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.clone(),
        None => {
            let header = req.headers().get(HOST).ok_or("missing host header\n")?;
            Authority::try_from(header.as_bytes()).map_err(|_| "invalid host header\n")?
        }
    };
    Ok(authority.host().trim_end_matches('.').to_ascii_lowercase())
}

/// Splits `<deployment>.<namespace>.<domain>` into `(deployment, namespace)`.
pub fn deployment_of<'a>(host: &'a str, domain: &str) -> Option<(&'a str, &'a str)> {
    let prefix = host.strip_suffix(domain)?.strip_suffix('.')?;
    let (deployment, namespace) = prefix.split_once('.')?;
    if deployment.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return None;
    }
    Some((deployment, namespace))
}

/// A short `text/plain` response in the components' body type.
fn text(status: StatusCode, body: String) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn deployment_of_splits_host() {
        let domain = "berth.localhost";
        assert_eq!(
            deployment_of("hello.default.berth.localhost", domain),
            Some(("hello", "default"))
        );
        assert_eq!(deployment_of("berth.localhost", domain), None);
        assert_eq!(deployment_of("default.berth.localhost", domain), None);
        assert_eq!(deployment_of("a.b.c.berth.localhost", domain), None);
        assert_eq!(deployment_of(".default.berth.localhost", domain), None);
        assert_eq!(deployment_of("hello.defaultberth.localhost", domain), None);
        assert_eq!(deployment_of("hello.default.example.com", domain), None);
    }

    #[tokio::test]
    async fn failures_answer_504_for_deadlines_and_500_otherwise() {
        let cases = [
            (
                RuntimeError::Terminated(Termination::DeadlineExceeded),
                StatusCode::GATEWAY_TIMEOUT,
                "component failed: DeadlineExceeded\n",
            ),
            (
                RuntimeError::Terminated(Termination::StackOverflow),
                StatusCode::INTERNAL_SERVER_ERROR,
                "component failed: StackOverflow\n",
            ),
            (
                RuntimeError::NoResponse,
                StatusCode::INTERNAL_SERVER_ERROR,
                "component failed: component returned without sending a response\n",
            ),
        ];
        for (error, status, body) in cases {
            let response = failure_response(&error);
            assert_eq!(response.status(), status);
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(bytes, body.as_bytes());
        }
    }

    #[test]
    fn request_host_strips_port_and_case() {
        let req = Request::builder()
            .uri("/")
            .header(HOST, "Hello.Default.Berth.Localhost:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).unwrap(), "hello.default.berth.localhost");
        let req = Request::builder().uri("/").body(()).unwrap();
        assert!(request_host(&req).is_err());
        let req = Request::builder()
            .uri("http://a.b.berth.localhost/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).unwrap(), "a.b.berth.localhost");
    }

    /// The real `hello` component, prepared in a fresh runtime (with real
    /// time: compiling runs on the blocking pool).
    async fn hello() -> (tempfile::TempDir, PreparedInstance) {
        use sha2::Digest as _;
        let data = tempfile::tempdir().unwrap();
        let runtime = crate::runtime::WasmRuntime::new(data.path()).unwrap();
        let path = std::path::Path::new(berth_test_programs::HELLO);
        let digest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
        );
        let instance = runtime
            .prepare(&digest, path, crate::runtime::InstanceConfig::default())
            .await
            .unwrap();
        (data, instance)
    }

    #[tokio::test]
    async fn only_ready_instances_are_picked() {
        let (_data, instance) = hello().await;
        let routes = Routes::default();
        routes.insert_with_readiness("default", "web", "a", instance.clone(), false);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes.is_ready("a"), Some(false));
        assert!(routes.pick("default", "web").is_none());
        assert!(routes.set_ready("a", true));
        assert!(routes.pick("default", "web").is_some());
        assert!(!routes.set_ready("nope", true));
        assert_eq!(routes.is_ready("nope"), None);

        // Round-robin skips the instance that is not ready.
        routes.insert("default", "web", "b", instance.clone());
        routes.insert_with_readiness("default", "web", "c", instance, false);
        assert_eq!(
            format!("{routes:?}"),
            r#"{"default/web": ["a", "b", "c (not ready)"]}"#
        );
        routes.set_ready("a", false);
        for _ in 0..3 {
            assert!(routes.pick("default", "web").is_some());
        }
        routes.set_ready("b", false);
        assert!(routes.pick("default", "web").is_none());
        assert_eq!(routes.len(), 3, "not ready is still routed here");
    }

    #[tokio::test]
    async fn drain_waits_for_requests_in_flight_then_cancels() {
        let (_data, instance) = hello().await;
        tokio::time::pause();
        let routes = Arc::new(Routes::default());
        routes.insert("default", "web", "a", instance.clone());
        let request = instance.hold_in_flight();
        assert_eq!(instance.in_flight(), 1);

        let began = tokio::time::Instant::now();
        let drain = {
            let routes = Arc::clone(&routes);
            tokio::spawn(async move { routes.drain("a", Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        assert!(
            routes.pick("default", "web").is_none(),
            "out of routing at once"
        );
        assert!(routes.is_empty());
        assert!(!instance.is_cancelled(), "the request may finish");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(request);
        assert_eq!(drain.await.unwrap(), Some(0));
        let took = began.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "no longer than the request: {took:?}"
        );
        assert!(instance.is_cancelled());
        assert_eq!(routes.drain("a", Duration::from_secs(30)).await, None);
    }

    #[tokio::test]
    async fn drain_cancels_what_outlives_the_grace_period() {
        let (_data, instance) = hello().await;
        tokio::time::pause();
        let routes = Routes::default();
        routes.insert("default", "web", "a", instance.clone());
        let _request = instance.hold_in_flight();
        let began = tokio::time::Instant::now();
        assert_eq!(routes.drain("a", Duration::from_secs(5)).await, Some(1));
        let took = began.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "{took:?}"
        );
        assert!(instance.is_cancelled());
        // A request that arrives after the cancel is refused.
        let req = Request::get("/")
            .header(HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let error = instance.handle(req).await.err().unwrap();
        assert!(matches!(error, RuntimeError::Cancelled), "{error}");
        let response = failure_response(&error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            "instance stopped: request cancelled after its grace period\n"
        );
    }
}
