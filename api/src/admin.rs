//! The admin HTTP listener every berth process can run: `/metrics`
//! (OpenMetrics text from the caller's registry), `/livez` (the process
//! answers) and `/readyz` (the caller's readiness check holds). HTTP/1.1
//! only, GET only, no authentication: bind it to an address only operators
//! reach. A caller may mount more read-only routes with [`serve_with`]
//! (the scheduler's dashboard does, and checks its own token there).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The histogram every berth latency series uses: buckets from 0.5 ms to
/// about 16 s, doubling.
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 16),
    )
}

/// Admin connections served at once; scrapers are few.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept`, which is usually transient.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A response body: whole ([`full`]) or sent as it is produced
/// ([`streamed`]).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole response body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A body sent chunk by chunk as they arrive on `chunks`; it ends when
/// every sender is dropped. When the client goes away the body, and with
/// it the receiver, is dropped: senders see their channel closed.
pub fn streamed(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    ChannelBody { chunks }.boxed_unsync()
}

struct ChannelBody {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// What a mounted route answers, computed on the connection's task.
pub type Answer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Routes a caller mounts beside the built-in ones: `Some` answers the
/// request (GET or HEAD only reach it), `None` leaves it to the built-in
/// routes and their 404.
pub type Routes = Arc<dyn Fn(&http::request::Parts) -> Option<Answer> + Send + Sync>;

/// Serves the admin endpoints on `listener` until `shutdown` resolves;
/// open connections are then cut (scrapes are short).
pub async fn serve(
    listener: TcpListener,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    ready: impl Fn() -> bool + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, metrics, ready, Arc::new(|_: &_| None), shutdown).await;
}

/// As [`serve`], with `routes` tried before the built-in endpoints. Open
/// connections, long-lived streams among them, are cut at `shutdown`.
pub async fn serve_with(
    listener: TcpListener,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    ready: impl Fn() -> bool + Send + Sync + 'static,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = Arc::new(metrics);
    let ready = Arc::new(ready);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
                let metrics = Arc::clone(&metrics);
                let ready = Arc::clone(&ready);
                let routes = Arc::clone(&routes);
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (parts, _) = req.into_parts();
                        let mounted = (parts.method == Method::GET || parts.method == Method::HEAD)
                            .then(|| routes(&parts))
                            .flatten();
                        let answer = match mounted {
                            Some(mounted) => mounted,
                            None => {
                                let answer = answer(&parts, &*metrics, &*ready);
                                Box::pin(async move { answer })
                            }
                        };
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    let result = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin listener cannot accept; retrying");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
    connections.shutdown().await;
}

fn answer(
    req: &http::request::Parts,
    metrics: &dyn Fn() -> String,
    ready: &dyn Fn() -> bool,
) -> Response<Body> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri.path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
            );
            response
        }
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if ready() => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
