//! berth's example of a service calling another by name, written with
//! berth-sdk: `GET /` (or any path) calls the same path on the Service
//! named by the config `SERVICE` (`hello` by default; `NAME.NAMESPACE` for
//! another namespace) and answers with its status and body. Calls to
//! Services need no `allowedOutboundHosts` entry.

use berth_sdk::http::{self, Error, IntoResponse, Request};

#[berth_sdk::http_component]
async fn handle(req: Request) -> Result<impl IntoResponse, Error> {
    let service = berth_sdk::config::get("SERVICE").unwrap_or_else(|| "hello".to_owned());
    let url = http::service_url(&service, req.uri().path());
    let mut response = http::get(&url).await?;
    let status = response.status();
    let body = response.body_mut().str_contents().await?.to_owned();
    berth_sdk::info!(url = url, status = status.as_u16(); "called service {service}");
    Ok(format!("{service} answered {}: {body}", status.as_u16()))
}
