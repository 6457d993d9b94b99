//! {{name}}: a berth service. Every request is answered with a greeting
//! naming the instance that served it. Add routes with
//! `berth_sdk::http::Router`, JSON with `berth_sdk::http::Json`.

use berth_sdk::http::{IntoResponse, Request};

#[berth_sdk::http_component]
async fn handle(req: Request) -> impl IntoResponse {
    berth_sdk::info!(path = req.uri().path(); "request");
    format!(
        "Hello from {{name}}! (instance {})\n",
        berth_sdk::config::instance()
    )
}
