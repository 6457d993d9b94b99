//! What the expansions of `#[http_component]` and `#[job]` call. Not part
//! of the API: names here may change in any release.

use std::future::Future;

use wstd::http::server::Responder;

use crate::http::{IntoResponse, Request};

pub use wstd::__internal::wasip2;
pub use wstd::runtime::block_on;

/// Serves one incoming request: converts it, runs `handler` on it and sends
/// its response. A request that cannot be converted (bad headers) is
/// answered with an HTTP error code by the host; a response body that
/// fails midway is logged, as the status has already gone out.
pub fn serve<F, Fut, R>(
    request: wasip2::http::types::IncomingRequest,
    response_out: wasip2::http::types::ResponseOutparam,
    handler: F,
) where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = R>,
    R: IntoResponse,
{
    let responder = Responder::new(response_out);
    block_on(async move {
        match wstd::http::request::try_from_incoming(request) {
            Ok(request) => {
                let response = handler(request).await.into_response();
                if let Err(e) = responder.respond(response).await {
                    crate::error!("error: sending the response body: {e}");
                }
            }
            Err(e) => responder.fail(e),
        }
    });
}

/// The `main` of an HTTP component run as a command: says so and fails.
pub fn not_a_command() {
    eprintln!(
        "error: this component serves HTTP (wasi:http/incoming-handler); \
         deploy it as a Deployment or run it with `wasmtime serve`"
    );
    std::process::exit(1);
}
