//! [`Json`]: JSON request bodies in, JSON responses out.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wstd::http::{Body, StatusCode};

use super::response::with_type;
use super::{Error, IntoResponse, Request, Response};

/// A value sent or received as JSON.
///
/// As a response (`Json(value)`), it is `value` serialized with
/// `Content-Type: application/json` and status `200` (pair it with a status,
/// `(StatusCode::CREATED, Json(value))`, for another); a value that cannot
/// be serialized answers `500`. From a request, [`Json::from_request`]
/// reads and parses the body; a body that is not valid JSON for `T` is a
/// `400` [`Error`] saying why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// Reads `request`'s whole body and parses it as `T`.
    pub async fn from_request(request: Request) -> Result<Json<T>, Error> {
        let mut body = request.into_body();
        let bytes = body
            .contents()
            .await
            .map_err(|e| Error::bad_request(format!("error: reading the request body: {e:#}")))?;
        Json::from_slice(bytes)
    }

    /// Parses `bytes` as `T`.
    pub fn from_slice(bytes: &[u8]) -> Result<Json<T>, Error> {
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| Error::bad_request(format!("error: invalid JSON body: {e}")))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => with_type(StatusCode::OK, "application/json", Body::from(bytes)),
            Err(e) => Error::internal(format!("error: serializing the JSON response: {e}"))
                .into_response(),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::http::test_support::body_text;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Item {
        name: String,
        count: u32,
    }

    #[test]
    fn parses_bodies_and_answers_400_with_the_reason() {
        let Json(item) = Json::<Item>::from_slice(br#"{"name":"a","count":2}"#).unwrap();
        assert_eq!(
            item,
            Item {
                name: "a".into(),
                count: 2
            }
        );
        let error = Json::<Item>::from_slice(br#"{"name":"a"}"#).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.message().contains("missing field `count`"), "{error}");
        assert_eq!(
            Json::<Item>::from_slice(b"not json").unwrap_err().status(),
            400
        );
    }

    #[test]
    fn responses_are_json_with_status() {
        let mut response = Json(Item {
            name: "b".into(),
            count: 1,
        })
        .into_response();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body_text(&mut response), r#"{"name":"b","count":1}"#);
        let response = (StatusCode::CREATED, Json(1)).into_response();
        assert_eq!(response.status(), 201);
        // Maps with non-string keys cannot be JSON: 500, not a panic.
        let map: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        assert_eq!(Json(map).into_response().status(), 500);
    }
}
