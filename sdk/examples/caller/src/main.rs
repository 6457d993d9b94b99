//! An example berth service that calls another: `GET /` fetches the URL in
//! the `UPSTREAM` env var and answers with what it said. The node lets the
//! call out only if the Deployment lists the host in `allowedOutboundHosts`;
//! otherwise the answer is 502 with the reason.

use wstd::http::{Body, Client, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let Ok(upstream) = std::env::var("UPSTREAM") else {
        return Ok(Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body("UPSTREAM is not set\n".into())?);
    };
    let outbound = Request::get(upstream.as_str()).body(Body::empty())?;
    match Client::new().send(outbound).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let text = body.str_contents().await?.to_owned();
            Ok(Response::new(format!("upstream {status}: {text}").into()))
        }
        Err(error) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(format!("upstream call failed: {error}\n").into())?),
    }
}
