//! The example berth service: answers every request with a greeting that
//! names the instance serving it (from the `BERTH_INSTANCE` env var the platform
//! sets), and echoes `GREETING` if the Deployment sets it. It prints one line
//! per request to stdout, for `berth logs`.

use wstd::http::{Body, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello from berth".to_owned());
    let instance = std::env::var("BERTH_INSTANCE").unwrap_or_default();
    let path = request.uri().path();
    println!("served {path} as {instance}");
    match path {
        "/" => Ok(Response::new(format!("{greeting}! (instance {instance})\n").into())),
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n".into())?),
    }
}
