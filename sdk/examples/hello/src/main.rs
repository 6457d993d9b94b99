//! The example berth service: answers `/` with a greeting that names the
//! instance serving it (from the `BERTH_INSTANCE` env var the platform
//! sets), and echoes `GREETING` if the Deployment sets it. It prints one line
//! per request to stdout, for `berth logs`.
//!
//! A few more paths serve probe and graceful-stop tests:
//!
//! - `/`: answers with the status in the env var `STATUS` when set
//!   (`STATUS=500`: a release that fails, for canary tests).
//! - `/healthz`: `200 ok`.
//! - `/health-env`: `200 ok`, or `503` when the env var `UNHEALTHY` is set.
//! - `/status/<code>`: answers with that status code (`/status/500`).
//! - `/sleep/<ms>`: waits that many milliseconds (a host timer, not a busy
//!   loop), then answers `200`.
//!
//! Anything else is `404`.

use wstd::http::{Body, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello from berth".to_owned());
    let instance = std::env::var("BERTH_INSTANCE").unwrap_or_default();
    let path = request.uri().path();
    println!("served {path} as {instance}");
    if path == "/" {
        if let Some(status) = std::env::var("STATUS")
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            return text(status, &format!("{greeting}! (instance {instance})\n"));
        }
        return Ok(Response::new(
            format!("{greeting}! (instance {instance})\n").into(),
        ));
    }
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    if path == "/health-env" {
        return if std::env::var_os("UNHEALTHY").is_some() {
            text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
        } else {
            text(StatusCode::OK, "ok\n")
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) => text(status, &format!("{}\n", status.as_u16())),
            None => text(StatusCode::BAD_REQUEST, "bad status code\n"),
        };
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return text(StatusCode::BAD_REQUEST, "bad milliseconds\n");
        };
        wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
        return text(StatusCode::OK, &format!("slept {ms} ms\n"));
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn text(status: StatusCode, body: &str) -> Result<Response<Body>, wstd::http::Error> {
    Ok(Response::builder()
        .status(status)
        .body(body.to_owned().into())?)
}
