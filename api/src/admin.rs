//! The admin HTTP listener every berth process can run: `/metrics`
//! (OpenMetrics text from the caller's registry), `/livez` (the process
//! answers) and `/readyz` (the caller's readiness check holds). HTTP/1.1
//! only, GET only, no authentication: bind it to an address only operators
//! reach.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
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

/// Serves the admin endpoints on `listener` until `shutdown` resolves;
/// open connections are then cut (scrapes are short).
pub async fn serve(
    listener: TcpListener,
    metrics: impl Fn() -> String + Send + Sync + 'static,
    ready: impl Fn() -> bool + Send + Sync + 'static,
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
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let answer = answer(&req, &*metrics, &*ready);
                        async move { Ok::<_, Infallible>(answer) }
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
    req: &Request<Incoming>,
    metrics: &dyn Fn() -> String,
    ready: &dyn Fn() -> bool,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
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

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
