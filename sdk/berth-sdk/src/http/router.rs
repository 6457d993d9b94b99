//! [`Router`]: dispatches a request to the handler of its method and path.

use std::future::Future;
use std::pin::Pin;

use ::http::header::{ALLOW, HeaderValue};
use wstd::http::{Method, StatusCode};

use super::response::text;
use super::route::{Lookup, Params, Table};
use super::{IntoResponse, Request, Response};

/// A boxed async handler.
type Handler = Box<dyn Fn(Request, Params) -> Pin<Box<dyn Future<Output = Response>>>>;

/// Routes requests by method and path to async handlers
/// `async fn(Request, Params) -> impl IntoResponse`.
///
/// Patterns are paths whose segments may be parameters (`/items/:id`) or,
/// last, a wildcard taking the rest of the path (`/files/*path`); the most
/// specific matching route wins (literal before parameter before
/// wildcard). A path no route matches is answered `404`; a path matched
/// only under other methods, `405` with an `Allow` header. `HEAD` is served
/// by a `GET` route when there is no `HEAD` route.
///
/// Adding a route never fails: a malformed pattern (not starting with `/`,
/// a parameter without a name, a wildcard before the end, a name used
/// twice) makes every request answer `500` naming it, so the mistake shows
/// on the first request instead of panicking.
///
/// ```ignore
/// let mut router = Router::new();
/// router
///     .get("/items", list)
///     .post("/items", create)
///     .get("/items/:id", show);
/// router.handle(req).await
/// ```
#[derive(Default)]
pub struct Router {
    table: Table<Handler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("errors", &self.table.errors())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router without routes (everything is `404`).
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds a route for `method` (`None`: any method) and `pattern`.
    pub fn route<H, Fut, R>(
        &mut self,
        method: Option<Method>,
        pattern: &str,
        handler: H,
    ) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        let handler: Handler = Box::new(move |request, params| {
            let future = handler(request, params);
            Box::pin(async move { future.await.into_response() })
        });
        self.table.insert(method, pattern, handler);
        self
    }

    /// Adds a `GET` route (also serving `HEAD`).
    pub fn get<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(Some(Method::GET), pattern, handler)
    }

    /// Adds a `POST` route.
    pub fn post<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(Some(Method::POST), pattern, handler)
    }

    /// Adds a `PUT` route.
    pub fn put<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(Some(Method::PUT), pattern, handler)
    }

    /// Adds a `PATCH` route.
    pub fn patch<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(Some(Method::PATCH), pattern, handler)
    }

    /// Adds a `DELETE` route.
    pub fn delete<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(Some(Method::DELETE), pattern, handler)
    }

    /// Adds a route for any method.
    pub fn any<H, Fut, R>(&mut self, pattern: &str, handler: H) -> &mut Self
    where
        H: Fn(Request, Params) -> Fut + 'static,
        Fut: Future<Output = R> + 'static,
        R: IntoResponse,
    {
        self.route(None, pattern, handler)
    }

    /// Answers `request` with the handler of its route, or `404`, `405`, or
    /// `500` if a pattern was malformed.
    pub async fn handle(&self, request: Request) -> Response {
        if let Some(error) = self.table.errors().first() {
            crate::error!("{error}");
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n"));
        }
        let path = request.uri().path().to_owned();
        match self.table.lookup(request.method(), &path) {
            Lookup::Found(handler, params) => handler(request, params).await,
            Lookup::NotFound => text(
                StatusCode::NOT_FOUND,
                format!("error: no route for {path}\n"),
            ),
            Lookup::MethodNotAllowed(methods) => {
                let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                let allow = allow.join(", ");
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "error: method {} not allowed for {path} (allowed: {allow})\n",
                        request.method()
                    ),
                );
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(ALLOW, value);
                }
                response
            }
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
    use super::*;
    use crate::http::test_support::{body_text, request, run};
    use crate::http::{Error, Json};

    async fn show(_req: Request, params: Params) -> Result<String, Error> {
        let id: u32 = params.parse("id")?;
        Ok(format!("item {id}"))
    }

    async fn create(req: Request, _params: Params) -> Result<impl IntoResponse, Error> {
        let Json(value): Json<serde_json::Value> = Json::from_request(req).await?;
        Ok((StatusCode::CREATED, Json(value)))
    }

    fn router() -> Router {
        let mut router = Router::new();
        router
            .get("/items/:id", show)
            .post("/items", create)
            .get("/", |_req, _params| async { "root" });
        router
    }

    #[test]
    fn routes_answer_with_their_handlers() {
        let router = router();
        let mut response = run(router.handle(request(Method::GET, "/items/7?x=1", "")));
        assert_eq!(response.status(), 200);
        assert_eq!(body_text(&mut response), "item 7");
        let mut response = run(router.handle(request(Method::POST, "/items", r#"{"a":1}"#)));
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body_text(&mut response), r#"{"a":1}"#);
        let mut response = run(router.handle(request(Method::GET, "/items/x", "")));
        assert_eq!(response.status(), 400);
        assert!(body_text(&mut response).contains("path parameter id"));
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        let router = router();
        let mut response = run(router.handle(request(Method::GET, "/nothing", "")));
        assert_eq!(response.status(), 404);
        assert_eq!(body_text(&mut response), "error: no route for /nothing\n");
        let response = run(router.handle(request(Method::DELETE, "/items", "")));
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
    }

    #[test]
    fn a_malformed_pattern_answers_500_naming_it() {
        let mut router = router();
        router.get("items/:id", show);
        let mut response = run(router.handle(request(Method::GET, "/", "")));
        assert_eq!(response.status(), 500);
        assert!(body_text(&mut response).contains("\"items/:id\""));
    }
}
