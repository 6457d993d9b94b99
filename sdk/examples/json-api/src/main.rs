//! berth's example JSON API, written with berth-sdk: a catalogue of items
//! showing routing with path parameters, JSON in and out, configuration
//! and structured logs.
//!
//! - `GET /items`: the items, as a JSON array.
//! - `GET /items/:id`: one item, or `404`; a non-numeric id is `400`.
//! - `POST /items` with `{"name": "..."}`: echoes the item it would create
//!   (`201`), with the next id. A component instance keeps no state between
//!   requests, so nothing is stored.
//! - `GET /info`: which instance answered, and the `CATALOGUE` config.
//!
//! Another method on a known path is `405`; any other path, `404`.

use berth_sdk::http::{Error, IntoResponse, Json, Params, Request, Router, StatusCode};
use serde::{Deserialize, Serialize};

/// An item of the catalogue.
#[derive(Debug, Clone, Serialize)]
struct Item {
    id: u32,
    name: String,
}

/// The body of `POST /items`.
#[derive(Debug, Deserialize)]
struct NewItem {
    name: String,
}

#[berth_sdk::http_component]
async fn handle(req: Request) -> impl IntoResponse {
    let mut router = Router::new();
    router
        .get("/items", list)
        .get("/items/:id", show)
        .post("/items", create)
        .get("/info", info);
    router.handle(req).await
}

/// The fixed catalogue.
fn items() -> Vec<Item> {
    ["anchor", "buoy", "capstan"]
        .iter()
        .zip(1..)
        .map(|(name, id)| Item {
            id,
            name: (*name).to_owned(),
        })
        .collect()
}

async fn list(_req: Request, _params: Params) -> impl IntoResponse {
    Json(items())
}

async fn show(_req: Request, params: Params) -> Result<impl IntoResponse, Error> {
    let id: u32 = params.parse("id")?;
    let item = items().into_iter().find(|item| item.id == id);
    item.map(Json)
        .ok_or_else(|| Error::not_found(format!("error: no item {id}")))
}

async fn create(req: Request, _params: Params) -> Result<impl IntoResponse, Error> {
    let Json(new) = Json::<NewItem>::from_request(req).await?;
    if new.name.trim().is_empty() {
        return Err(Error::bad_request("error: item name is empty"));
    }
    let item = Item {
        id: items().len() as u32 + 1,
        name: new.name,
    };
    berth_sdk::info!(id = item.id, name = item.name; "created item");
    Ok((StatusCode::CREATED, Json(item)))
}

async fn info(_req: Request, _params: Params) -> impl IntoResponse {
    Json(serde_json_value(&[
        ("instance", berth_sdk::config::instance()),
        ("namespace", berth_sdk::config::namespace()),
        (
            "catalogue",
            berth_sdk::config::get("CATALOGUE").unwrap_or_else(|| "default".to_owned()),
        ),
    ]))
}

/// A JSON object of string pairs.
fn serde_json_value(pairs: &[(&str, String)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}
