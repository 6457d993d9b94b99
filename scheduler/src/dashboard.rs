//! The web dashboard, served under `/dashboard/` by the scheduler's admin
//! listener: nodes with their capacity and instances, Deployments with
//! their rollout, pending instances with placement's reasons and the latest
//! events, pushed live to the page.
//!
//! The page is three small files with no dependencies (`dashboard/index.html`,
//! `app.js`, `style.css`), compiled into the binary with `include_str!`:
//! no build step, nothing fetched from elsewhere, so it works offline. Its
//! data comes from two read-only endpoints:
//!
//! - `/dashboard/api/state`: the [`View`] of the store as JSON;
//! - `/dashboard/api/stream`: Server-Sent Events, one `state` event with
//!   the view on connect, another after every store change (at most one
//!   per [`MIN_PUSH_INTERVAL`]) and one every [`REFRESH`] regardless, since
//!   ages and the nodes' usage reports move outside the store.
//!
//! Every route wants the token of [`auth`]. [`route`] decides what a
//! request gets from its head alone; [`routes`] does the I/O. There is no
//! mutating endpoint: only GET and HEAD reach these routes at all.

pub mod auth;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use berth_api::admin::{self, Answer, Body, Routes};
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

pub use auth::Token;
pub use view::View;

use crate::cluster::Cluster;

/// Where the dashboard is mounted.
pub const PREFIX: &str = "/dashboard";

/// Least time between two pushes on one stream: a burst of store changes
/// (a rollout of many instances) becomes a few pushes, each with the
/// latest state.
pub const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(250);

/// A stream with no change this long gets the state again: usage figures
/// move without a store change, and idle proxies keep a busy stream open.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Streams open at once. Each holds one of the admin listener's
/// connections (`berth_api::admin::MAX_CONNECTIONS`); the rest stay for
/// scrapers and probes. More get 503 and their browsers retry.
pub const MAX_STREAMS: usize = 16;

/// Pushes queued for a slow client before the stream waits for it.
const STREAM_BUFFER: usize = 2;

/// How long a browser waits before reconnecting a dropped stream.
const RETRY_MILLIS: u64 = 1000;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

/// Scripts, styles and data from this origin only; no frames, no inline
/// code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// What a request to the dashboard gets, decided from its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not a dashboard path: left to the admin listener.
    Elsewhere,
    /// Go to `location`, first keeping the token in a cookie when `cookie`.
    Redirect {
        /// Where to.
        location: String,
        /// Set the token cookie on the way.
        cookie: bool,
    },
    /// No valid token.
    Unauthorized,
    /// A dashboard path that does not exist.
    NotFound,
    /// One of the page's files.
    Asset {
        /// Its content type.
        content_type: &'static str,
        /// Its text.
        body: &'static str,
    },
    /// The view, as JSON.
    State,
    /// The view, pushed on every change.
    Stream,
}

/// Decides what the request for `path?query` with `headers` gets.
pub fn route(path: &str, query: Option<&str>, headers: &HeaderMap, token: &Token) -> Route {
    if path == PREFIX {
        let location = match query {
            Some(query) => format!("{PREFIX}/?{query}"),
            None => format!("{PREFIX}/"),
        };
        return Route::Redirect {
            location,
            cookie: false,
        };
    }
    let Some(rest) = path.strip_prefix(PREFIX).and_then(|p| p.strip_prefix('/')) else {
        return Route::Elsewhere;
    };
    if let Some(given) = auth::query_token(query) {
        // Trade the token in the address for a cookie, and drop it from
        // the address bar and history.
        return if token.matches(given) {
            Route::Redirect {
                location: path.to_owned(),
                cookie: true,
            }
        } else {
            Route::Unauthorized
        };
    }
    if !token.admits(headers) {
        return Route::Unauthorized;
    }
    match rest {
        "" | "index.html" => Route::Asset {
            content_type: "text/html; charset=utf-8",
            body: INDEX_HTML,
        },
        "app.js" => Route::Asset {
            content_type: "text/javascript; charset=utf-8",
            body: APP_JS,
        },
        "style.css" => Route::Asset {
            content_type: "text/css; charset=utf-8",
            body: STYLE_CSS,
        },
        "api/state" => Route::State,
        "api/stream" => Route::Stream,
        _ => Route::NotFound,
    }
}

/// The dashboard's routes for the admin listener, reading `cluster` and
/// admitting holders of `token`.
pub fn routes(cluster: Arc<Cluster>, token: Token) -> Routes {
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    Arc::new(move |request| {
        let route = route(
            request.uri.path(),
            request.uri.query(),
            &request.headers,
            &token,
        );
        if route == Route::Elsewhere {
            return None;
        }
        let cluster = cluster.clone();
        let token = token.clone();
        let permit = if route == Route::Stream {
            streams.clone().try_acquire_owned().ok()
        } else {
            None
        };
        let answer: Answer =
            Box::pin(async move { respond(route, &cluster, &token, permit).await });
        Some(answer)
    })
}

/// Answers `route`; a [`Route::Stream`] comes with its permit, or none when
/// [`MAX_STREAMS`] are open.
async fn respond(
    route: Route,
    cluster: &Arc<Cluster>,
    token: &Token,
    permit: Option<OwnedSemaphorePermit>,
) -> Response<Body> {
    let mut response = match route {
        Route::Elsewhere | Route::NotFound => {
            admin::text(StatusCode::NOT_FOUND, "not found\n".into())
        }
        Route::Unauthorized => admin::text(
            StatusCode::UNAUTHORIZED,
            "the dashboard needs its token: open the address `berth dashboard` prints\n".into(),
        ),
        Route::Redirect { location, cookie } => {
            let mut response = Response::new(admin::full(Bytes::new()));
            *response.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, location);
            }
            if cookie && let Ok(value) = HeaderValue::from_str(&token.set_cookie()) {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            response
        }
        Route::Asset { content_type, body } => {
            with_type(Response::new(admin::full(body)), content_type)
        }
        Route::State => match state_json(cluster).await {
            Ok(json) => with_type(
                Response::new(admin::full(json)),
                "application/json; charset=utf-8",
            ),
            Err(message) => admin::text(StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")),
        },
        Route::Stream => match permit {
            Some(permit) => {
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    push(cluster, tx).await;
                    drop(permit);
                });
                with_type(
                    Response::new(admin::streamed(rx)),
                    "text/event-stream; charset=utf-8",
                )
            }
            None => admin::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_STREAMS} dashboard streams are open already\n"),
            ),
        },
    };
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn with_type(mut response: Response<Body>, content_type: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The current [`View`] as JSON, read off the async threads.
async fn state_json(cluster: &Arc<Cluster>) -> Result<Vec<u8>, String> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let snapshot = cluster.store.snapshot().map_err(|e| e.to_string())?;
        let view = View::build(
            snapshot.revision,
            &snapshot.objects,
            &cluster.usage(),
            jiff::Timestamp::now(),
        );
        serde_json::to_vec(&view).map_err(|e| format!("cannot encode the view: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(format!("dashboard view failed: {e}")))
}

/// One Server-Sent Event; `data` holds no newline (compact JSON, or a
/// message of ours).
fn event(name: &str, data: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(data.len() + name.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(name.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// Feeds one stream: the view now and after every change, until the
/// client goes away (its body, holding the receiver, is dropped) or the
/// scheduler stops.
async fn push(cluster: Arc<Cluster>, tx: mpsc::Sender<Bytes>) {
    let mut changes = cluster.subscribe();
    if tx
        .send(Bytes::from(format!("retry: {RETRY_MILLIS}\n\n")))
        .await
        .is_err()
    {
        return;
    }
    loop {
        changes.borrow_and_update();
        let frame = match state_json(&cluster).await {
            Ok(json) => event("state", &json),
            Err(message) => event("problem", message.replace('\n', " ").as_bytes()),
        };
        if tx.send(frame).await.is_err() {
            return;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(MIN_PUSH_INTERVAL) => {}
        }
        tokio::select! {
            () = tx.closed() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
