//! HTTP for components: the request and response types, responses from
//! plain values ([`IntoResponse`]), routing ([`Router`]), JSON ([`Json`])
//! and outbound calls ([`send`], [`get`], [`service_url`]).
//!
//! The types are [`wstd`]'s, which are the [`::http`] crate's with a
//! `wasi:http` body: a [`Request`] is `http::Request<Body>`.
//!
//! ```ignore
//! use berth_sdk::http::{Error, IntoResponse, Json, Params, Request, Router};
//!
//! #[berth_sdk::http_component]
//! async fn handle(req: Request) -> impl IntoResponse {
//!     let mut router = Router::new();
//!     router.get("/items/:id", get_item);
//!     router.handle(req).await
//! }
//!
//! async fn get_item(_req: Request, params: Params) -> Result<impl IntoResponse, Error> {
//!     let id: u64 = params.parse("id")?;
//!     Ok(Json(serde_json::json!({ "id": id })))
//! }
//! ```

mod client;
mod json;
mod response;
mod route;
mod router;

pub use ::http::header;
pub use client::{get, send, service_url};
pub use json::Json;
pub use response::{Error, IntoResponse};
pub use route::{Params, PatternError};
pub use router::Router;
pub use wstd::http::{Body, HeaderMap, HeaderValue, Method, StatusCode, Uri};

/// An incoming (or outgoing) HTTP request.
pub type Request = wstd::http::Request<Body>;

/// An HTTP response.
pub type Response = wstd::http::Response<Body>;

/// Helpers for the unit tests: requests, bodies and a poll loop that runs
/// futures which never wait on the host (all the router's and JSON's do
/// when bodies are in memory).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod test_support {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::{Body, Method, Request, Response};

    /// Polls `future` until ready; panics if it would wait for the host.
    pub(crate) fn run<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        panic!("the future waits on the host");
    }

    /// A request with `method`, `uri` and `body`.
    pub(crate) fn request(method: Method, uri: &str, body: &str) -> Request {
        wstd::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    /// The whole body of `response` as text.
    pub(crate) fn body_text(response: &mut Response) -> String {
        run(response.body_mut().str_contents()).unwrap().to_owned()
    }
}
