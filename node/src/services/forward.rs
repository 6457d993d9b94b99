//! The router's HTTP side: serves its loopback listener and forwards each
//! call to an endpoint's ingress over a pooled HTTP/1.1 connection, bodies
//! streamed both ways.
//!
//! How the connection travels ([`Transport`]): over TCP to this node's own
//! ingress for a local endpoint; over a stream of the QUIC connection to
//! the endpoint's node ([`super::peer`]) for a remote one; as plain TCP to
//! the remote ingress only when that node has no peer listener (its
//! certificate predates node-to-node forwarding). Each call is counted in
//! `berth_node_service_forwards_total` by transport.
//!
//! Pooled connections are keyed by the endpoint's address *and* the
//! rewritten host: an ingress may hand a whole connection to the sandbox
//! serving its first request's host, so a connection must not carry calls
//! for another Deployment.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use berth_api::wire::ServiceEndpoint;
use bytes::Bytes;
use http::header::{self, HOST, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt as _, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::policy::{self, Origin};
use super::{Lookup, ServiceRouter, service_of};

/// Connections the router serves at once; its callers are this node's
/// components, each call one connection.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long connecting to an endpoint's ingress may take before the call
/// counts as a connection failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept per endpoint address and host.
pub const POOL_IDLE_PER_TARGET: usize = 32;

/// How long a caller may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body a Service call may carry. The router reads a
/// call's whole body before sending it on (as nginx buffers request
/// bodies): the caller's connection is then never closed under a body it
/// is still sending, the endpoint gets a `content-length` rather than a
/// chunked body, and an idempotent call can go to another endpoint after a
/// connection failure.
pub const MAX_CALL_BODY: usize = 8 * 1024 * 1024;

/// A call's body, read whole.
pub(super) type CallBody = Full<Bytes>;

/// After shutdown, how long open connections get to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept`.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Headers that describe one hop, not the call: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The body of the router's answers: an endpoint's, streamed, or its own.
pub type RouterBody = BoxBody<Bytes, hyper::Error>;

/// An endpoint's ingress (with the transport reaching it) and the host
/// calls to it carry.
type Target = (String, String);

/// How a call reaches an endpoint's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// This node's own ingress, over loopback TCP.
    Local,
    /// Another node's, over a stream of the nodes' QUIC connection.
    Quic,
    /// Another node's, as plain HTTP over TCP: only when that node has no
    /// peer listener, or this one has no QUIC endpoint.
    Http,
}

impl Transport {
    /// The `transport` label of `berth_node_service_forwards_total`.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Local => "local",
            Transport::Quic => "quic",
            Transport::Http => "http",
        }
    }
}

/// Idle connections to one target, each with when it went idle.
type Idle = Vec<(SendRequest<CallBody>, Instant)>;

/// Idle connections to endpoints' ingresses, by [`Target`].
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<Target, Idle>>,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle, open connection to `target`, if one is kept.
    fn checkout(&self, target: &Target) -> Option<SendRequest<CallBody>> {
        let mut idle = self.idle();
        let senders = idle.get_mut(target)?;
        while let Some((sender, since)) = senders.pop() {
            if sender.is_ready() && since.elapsed() < POOL_IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender`, ready for another call, unless enough are kept.
    fn checkin(&self, target: Target, sender: SendRequest<CallBody>) {
        let mut idle = self.idle();
        idle.retain(|_, senders| {
            senders.retain(|(s, since)| !s.is_closed() && since.elapsed() < POOL_IDLE_TIMEOUT);
            !senders.is_empty()
        });
        let senders = idle.entry(target).or_default();
        if senders.len() < POOL_IDLE_PER_TARGET {
            senders.push((sender, Instant::now()));
        }
    }
}

/// Why a call to one endpoint failed.
enum Failure {
    /// Nothing was sent (no connection): the request comes back.
    Unsent(Box<Request<CallBody>>, String),
    /// The request went, at least in part; it cannot be sent again.
    Failed(String),
}

/// One call in flight to an endpoint, counted for [`super::pick`].
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint's response body, holding its call in flight until the body
/// ends or is dropped.
struct Tracked {
    body: Incoming,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl ServiceRouter {
    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then lets
    /// open connections finish for up to 10 s. Accept errors are logged
    /// and retried, never returned.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
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
                    let router = Arc::clone(&self);
                    let drain = drain_rx.clone();
                    connections.spawn(async move {
                        router.serve_connection(stream, peer, drain).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "service router cannot accept a connection; retrying");
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
            connections.shutdown().await;
        }
        Ok(())
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut drain: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let service = service_fn(move |req| {
            let router = Arc::clone(&self);
            async move { Ok::<_, Infallible>(router.handle(req).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let draining = async move {
            // An error means the router is gone: drain as well.
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
            tracing::debug!(%peer, error = %e, "service router connection ended with an error");
        }
    }

    /// Answers one call: finds the Service from `Host`, checks network
    /// policy for the caller the request names ([`policy::local_caller`]),
    /// then sends the call to endpoints until one answers or none is left
    /// to try.
    pub async fn handle(self: &Arc<Self>, mut req: Request<Incoming>) -> Response<RouterBody> {
        let origin = Origin::Caller(policy::local_caller(req.headers_mut()));
        let host = match crate::ingress::request_host(&req) {
            Ok(host) => host,
            Err(message) => return text(StatusCode::BAD_REQUEST, message.to_owned()),
        };
        let Some((name, namespace)) = service_of(&host) else {
            return text(
                StatusCode::BAD_REQUEST,
                format!("host {host:?} names no service: expected NAME.NAMESPACE.svc\n"),
            );
        };
        self.route(namespace, name, req, &origin).await
    }

    /// Sends one call to Service `name` of `namespace`: to endpoints until
    /// one answers or none is left to try. The node's ingress uses it for
    /// Ingress rules (`crate::ingress_rules`); network policy does not
    /// apply to those ([`Origin::Ingress`]).
    pub async fn call(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        mut req: Request<Incoming>,
    ) -> Response<RouterBody> {
        req.headers_mut().remove(policy::CALLER_HEADER);
        self.route(namespace, name, req, &Origin::Ingress).await
    }

    /// [`ServiceRouter::call`] from `origin`: only to endpoints network
    /// policy lets it call; 403 when there is none.
    async fn route(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        req: Request<Incoming>,
        origin: &Origin,
    ) -> Response<RouterBody> {
        // Read first, so that every answer, refusals included, comes after
        // the caller has sent its whole request.
        let host = format!("{name}.{namespace}.svc");
        let req = match read_body(req, &host).await {
            Ok(req) => req,
            Err(response) => return response,
        };
        let endpoints = match self.lookup(namespace, name) {
            Lookup::Unknown => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("no service {name} in namespace {namespace}\n"),
                );
            }
            Lookup::Endpoints(endpoints) if endpoints.is_empty() => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no ready endpoint for service {name}.{namespace}\n"),
                );
            }
            Lookup::Endpoints(endpoints) => endpoints,
        };
        let target = format!("service {name}");
        let mut refusal = None;
        let admitted: Vec<ServiceEndpoint> = endpoints
            .iter()
            .filter(
                |e| match self.policies.decide(namespace, &e.labels, &target, origin) {
                    Ok(()) => true,
                    Err(denied) => {
                        refusal.get_or_insert(denied);
                        false
                    }
                },
            )
            .cloned()
            .collect();
        if let (true, Some(denied)) = (admitted.is_empty(), &refusal) {
            tracing::debug!(service = %host, %denied, "call refused by network policy");
            return policy::forbidden(denied);
        }
        let endpoints = admitted;
        let retries = is_idempotent(req.method());
        let mut failed: Vec<String> = Vec::new();
        let mut req = req;
        loop {
            let Some(endpoint) = self.choose(&endpoints, &failed) else {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot reach any endpoint of service {name}.{namespace}\n"),
                );
            };
            let error = match self.send(endpoint, namespace, req, origin).await {
                Ok(response) => return response,
                Err(Failure::Unsent(unsent, error)) if retries => {
                    tracing::debug!(service = %host, endpoint = %endpoint.address, %error, "endpoint unreachable; trying another");
                    failed.push(endpoint.address.clone());
                    req = *unsent;
                    continue;
                }
                Err(Failure::Unsent(_, error) | Failure::Failed(error)) => error,
            };
            tracing::debug!(service = %host, endpoint = %endpoint.address, %error, "call failed");
            return text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "call to service {name}.{namespace} failed at node {}: {error}\n",
                    endpoint.node
                ),
            );
        }
    }

    /// Sends `req` to `endpoint`'s ingress with `Host` rewritten to its
    /// Deployment's host. A pooled connection that turns out closed before
    /// the request went is replaced by a new one.
    async fn send(
        self: &Arc<Self>,
        endpoint: &ServiceEndpoint,
        namespace: &str,
        mut req: Request<CallBody>,
        origin: &Origin,
    ) -> Result<Response<RouterBody>, Failure> {
        let host = format!("{}.{namespace}.{}", endpoint.deployment, self.domain);
        let Ok(value) = HeaderValue::from_str(&host) else {
            return Err(Failure::Failed(format!("invalid host {host:?}")));
        };
        prepare(&mut req, value);
        let transport = self.transport(endpoint);
        // The peer listener checks the call again with the caller this
        // node vouches for; an ingress never sees the header.
        req.headers_mut().remove(policy::CALLER_HEADER);
        if transport == Transport::Quic
            && let Some(value) = policy::peer_value(origin)
        {
            req.headers_mut().insert(policy::CALLER_HEADER, value);
        }
        let key = match transport {
            Transport::Quic => format!("quic {}@{}", endpoint.node, endpoint.peer_address),
            Transport::Local | Transport::Http => endpoint.address.clone(),
        };
        let target = (key, host);
        let in_flight = InFlight::new(self.counter(&endpoint.uid));
        let (mut sender, pooled) = match self.pool.checkout(&target) {
            Some(sender) => (sender, true),
            None => match self.connect(transport, endpoint).await {
                Ok(sender) => (sender, false),
                Err(error) => return Err(Failure::Unsent(Box::new(req), error)),
            },
        };
        let mut outcome = sender.try_send_request(req).await;
        if pooled
            && let Err(e) = &mut outcome
            && let Some(req) = e.take_message()
        {
            sender = match self.connect(transport, endpoint).await {
                Ok(sender) => sender,
                Err(error) => return Err(Failure::Unsent(Box::new(req), error)),
            };
            outcome = sender.try_send_request(req).await;
        }
        match outcome {
            Ok(mut response) => {
                if let Some(metrics) = self.metrics.get() {
                    metrics.service_forward(transport.label());
                }
                strip_hop_by_hop(response.headers_mut());
                let pool = Arc::clone(&self.pool);
                tokio::spawn(async move {
                    // Ready again once the response body has been read.
                    if sender.ready().await.is_ok() {
                        pool.checkin(target, sender);
                    }
                });
                Ok(response.map(|body| {
                    Tracked {
                        body,
                        _in_flight: in_flight,
                    }
                    .boxed()
                }))
            }
            Err(mut e) => match e.take_message() {
                Some(req) => Err(Failure::Unsent(Box::new(req), e.into_error().to_string())),
                None => Err(Failure::Failed(e.into_error().to_string())),
            },
        }
    }
}

impl ServiceRouter {
    /// How a call to `endpoint` travels: see [`Transport`].
    pub fn transport(&self, endpoint: &ServiceEndpoint) -> Transport {
        if endpoint.node == self.node {
            Transport::Local
        } else if !endpoint.peer_address.is_empty() && self.peers.get().is_some() {
            Transport::Quic
        } else {
            Transport::Http
        }
    }

    /// A new HTTP/1.1 connection to `endpoint`'s ingress by `transport`.
    async fn connect(
        &self,
        transport: Transport,
        endpoint: &ServiceEndpoint,
    ) -> Result<SendRequest<CallBody>, String> {
        match (transport, self.peers.get()) {
            (Transport::Quic, Some(peers)) => {
                peers.open(&endpoint.node, &endpoint.peer_address).await
            }
            _ => connect(&endpoint.address).await,
        }
    }
}

/// Opens an HTTP/1.1 connection to `address`, for requests with bodies of
/// type `B`.
pub(super) async fn connect<B>(address: &str) -> Result<SendRequest<B>, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("cannot connect to {address}: {e}")),
        Err(_) => return Err(format!("cannot connect to {address}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "service router upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// `req` with its body read whole, up to [`MAX_CALL_BODY`]; a response
/// for the caller when the body is too large or cannot be read.
async fn read_body(
    req: Request<Incoming>,
    service: &str,
) -> Result<Request<CallBody>, Response<RouterBody>> {
    let (mut parts, body) = req.into_parts();
    match Limited::new(body, MAX_CALL_BODY).collect().await {
        Ok(collected) => {
            // The body now has a known length; `prepare` drops the
            // hop-by-hop `transfer-encoding`.
            parts.headers.remove(header::CONTENT_LENGTH);
            Ok(Request::from_parts(parts, Full::new(collected.to_bytes())))
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a call to service {service} carries at most {MAX_CALL_BODY} bytes of body\n"),
        )),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body of a call to service {service}: {e}\n"),
        )),
    }
}

/// Turns a call to the router into one to an ingress: origin-form target,
/// HTTP/1.1, no hop-by-hop headers, `Host: host`.
fn prepare(req: &mut Request<CallBody>, host: HeaderValue) {
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| http::uri::PathAndQuery::from_static("/"), Clone::clone);
    *req.uri_mut() = http::Uri::from(target);
    *req.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    req.headers_mut().insert(HOST, host);
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The methods a call may be sent again with after a connection failure.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// A short `text/plain` answer of the router itself.
pub(crate) fn text(status: StatusCode, body: String) -> Response<RouterBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_are_retried() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&method), "{method}");
        }
        for method in [Method::POST, Method::PATCH, Method::CONNECT, Method::TRACE] {
            assert!(!is_idempotent(&method), "{method}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
