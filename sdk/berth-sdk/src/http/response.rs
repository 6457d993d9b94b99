//! Responses from plain values, and the error type handlers return.

use std::fmt;

use ::http::header::{CONTENT_TYPE, HeaderValue};
use wstd::http::{Body, StatusCode};

use super::Response;
use crate::config::ConfigError;

/// A value a handler may return: the SDK turns it into the response.
///
/// Implemented for [`Response`], `&'static str` and `String` (`200`,
/// `text/plain`), `Vec<u8>` (`200`, `application/octet-stream`),
/// [`StatusCode`] (an empty body), `()` (`204`), `(StatusCode, T)` (`T`'s
/// response with that status), [`Json`](super::Json), [`Error`], and
/// `Result<T, E>` of any two of these.
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text(StatusCode::OK, self.to_owned())
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text(StatusCode::OK, self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_type(StatusCode::OK, "application/octet-stream", Body::from(self))
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let (status, inner) = self;
        let mut response = inner.into_response();
        *response.status_mut() = status;
        response
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

/// A response with `status`, `text/plain` body `body`.
pub(crate) fn text(status: StatusCode, body: String) -> Response {
    with_type(status, "text/plain; charset=utf-8", Body::from(body))
}

/// A response with `status`, content type `content_type` and `body`.
pub(crate) fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error a handler answers with: a status and a message, sent as a
/// `text/plain` body ending in a newline.
///
/// `?` converts into it from [`ConfigError`] (500), a failed outbound call
/// (`wstd::http::Error`, 502) and [`serde_json::Error`] (500); JSON bodies
/// that do not parse become 400 in [`Json::from_request`](super::Json::from_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// `400 Bad Request` with `message`.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404 Not Found` with `message`.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, message)
    }

    /// `500 Internal Server Error` with `message`.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message answered.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = self.message;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        text(self.status, body)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Error {
        Error::internal(error.to_string())
    }
}

impl From<wstd::http::Error> for Error {
    fn from(error: wstd::http::Error) -> Error {
        Error::new(
            StatusCode::BAD_GATEWAY,
            format!("error: outbound request: {error:#}"),
        )
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error::internal(format!("error: json: {error}"))
    }
}
