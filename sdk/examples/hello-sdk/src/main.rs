//! The smallest berth service written with berth-sdk: every request is
//! answered with a greeting naming the instance that served it.

use berth_sdk::http::{IntoResponse, Request};

#[berth_sdk::http_component]
async fn handle(_req: Request) -> impl IntoResponse {
    format!(
        "Hello from berth-sdk! (instance {})\n",
        berth_sdk::config::instance()
    )
}
