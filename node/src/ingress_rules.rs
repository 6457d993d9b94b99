//! Ingress objects on the node: which Service a request for an Ingress host
//! goes to, and the connections that carry such requests.
//!
//! The scheduler sends every Ingress's rules with each assignments frame;
//! the agent hands them to [`ServiceRouter::update_ingresses`]. Matching
//! ([`resolve`]) follows Kubernetes: the request's host (lowercase, port
//! stripped) matches a rule's host exactly, or `*.example.com` with one
//! label in place of the `*`; exact hosts beat wildcards; among the
//! matching hosts' paths the longest wins, `Exact` before `Prefix` of the
//! same length; `Prefix` matches by path element (`/api` matches `/api`
//! and `/api/x`, not `/apix`). A host matched by no path goes to the
//! Ingress's `defaultBackend`, else 404. An Ingress host wins over a
//! deployment host (`<deployment>.<namespace>.<domain>`) that equals it.
//!
//! Connections are dispatched by their first request's host before HTTP is
//! parsed ([`IngressDispatch`]): one for an Ingress host is served here,
//! each request forwarded through the Service router
//! ([`ServiceRouter::call`]: a local endpoint first, else another node's
//! ingress with the deployment's host, which no Ingress rule matches, so
//! requests never loop); any other connection goes on to the sandboxes or
//! containers, or to the ingress itself. A later request on an Ingress
//! connection for a host no Ingress serves is answered 421 (Misdirected
//! Request): clients open another connection. See
//! `docs/decisions/0027-ingress-objects.md`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use berth_api::wire::IngressRoute;
use http::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::ingress::ConnectionDispatch;
use crate::services::ServiceRouter;
use crate::services::forward::{RouterBody, text};

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an Ingress sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'r> {
    /// No Ingress rule names the host: the deployment-host convention.
    NoRule,
    /// A rule names the host but neither a path nor a default backend
    /// matches.
    NoPath,
    /// Service `name` of `namespace`.
    Service {
        /// The Ingress's namespace.
        namespace: &'r str,
        /// The backend Service.
        name: &'r str,
    },
}

/// How a rule's host matches `host`: `Some(true)` exactly, `Some(false)` by
/// wildcard, `None` not at all.
fn host_match(rule: &str, host: &str) -> Option<bool> {
    if rule == host {
        return Some(true);
    }
    let domain = rule.strip_prefix("*.")?;
    let (label, rest) = host.split_once('.')?;
    (!label.is_empty() && rest == domain).then_some(false)
}

/// The length a path of a rule matches `path` with, if it does.
fn path_match(rule: &str, exact: bool, path: &str) -> Option<usize> {
    if exact {
        return (rule == path).then_some(rule.len());
    }
    let prefix = rule.trim_end_matches('/');
    let matches = prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'));
    matches.then_some(prefix.len())
}

/// Whether some Ingress rule names `host` (lowercase, without port).
pub fn serves_host(routes: &[IngressRoute], host: &str) -> bool {
    routes
        .iter()
        .flat_map(|route| route.rules.iter())
        .any(|rule| host_match(&rule.host, host).is_some())
}

/// Where a request for `host` (lowercase, without port) and `path` goes;
/// `routes` sorted by namespace and name, the first winning a tie.
pub fn resolve<'r>(routes: &'r [IngressRoute], host: &str, path: &str) -> Resolution<'r> {
    let matching = |exact: bool| {
        routes.iter().flat_map(move |route| {
            route
                .rules
                .iter()
                .filter(move |rule| host_match(&rule.host, host) == Some(exact))
                .map(move |rule| (route, rule))
        })
    };
    let exact_hosts: Vec<_> = matching(true).collect();
    let candidates = if exact_hosts.is_empty() {
        matching(false).collect()
    } else {
        exact_hosts
    };
    if candidates.is_empty() {
        return Resolution::NoRule;
    }
    let mut best: Option<((usize, bool), &IngressRoute, &str)> = None;
    for (route, rule) in &candidates {
        for entry in &rule.paths {
            let Some(length) = path_match(&entry.path, entry.exact, path) else {
                continue;
            };
            let score = (length, entry.exact);
            if best.as_ref().is_none_or(|(top, _, _)| score > *top) {
                best = Some((score, route, &entry.service));
            }
        }
    }
    if let Some((_, route, service)) = best {
        return Resolution::Service {
            namespace: &route.namespace,
            name: service,
        };
    }
    candidates
        .iter()
        .find_map(|(route, _)| {
            route
                .default_service
                .as_deref()
                .map(|name| Resolution::Service {
                    namespace: &route.namespace,
                    name,
                })
        })
        .unwrap_or(Resolution::NoPath)
}

impl ServiceRouter {
    /// Replaces the Ingress rules with those the scheduler sent.
    pub fn update_ingresses(&self, routes: &[IngressRoute]) {
        *self
            .ingresses
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::from(routes);
    }

    /// The Ingress rules held now.
    pub fn ingresses(&self) -> Arc<[IngressRoute]> {
        Arc::clone(
            &self
                .ingresses
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Answers one request that came to the ingress on a connection for an
    /// Ingress host.
    pub async fn ingress(
        self: &Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Response<RouterBody> {
        let host = match crate::ingress::request_host(&req) {
            Ok(host) => host,
            Err(message) => return text(StatusCode::BAD_REQUEST, message.to_owned()),
        };
        let routes = self.ingresses();
        let path = req.uri().path().to_owned();
        match resolve(&routes, &host, &path) {
            Resolution::Service { namespace, name } => self.call(namespace, name, req).await,
            Resolution::NoPath => text(
                StatusCode::NOT_FOUND,
                format!("no ingress rule serves host {host:?} path {path:?}\n"),
            ),
            Resolution::NoRule => text(
                StatusCode::MISDIRECTED_REQUEST,
                format!("no ingress serves host {host:?} on this connection: open another\n"),
            ),
        }
    }
}

/// Offers each ingress connection to the Ingress rules first, then to
/// `inner` (sandboxes, containers), else gives it back to the ingress.
pub struct IngressDispatch {
    router: Arc<ServiceRouter>,
    inner: Option<Arc<dyn ConnectionDispatch>>,
}

impl IngressDispatch {
    /// A dispatcher serving `router`'s Ingress rules before `inner`.
    pub fn new(
        router: Arc<ServiceRouter>,
        inner: Option<Arc<dyn ConnectionDispatch>>,
    ) -> Arc<IngressDispatch> {
        Arc::new(IngressDispatch { router, inner })
    }

    async fn dispatch_stream(&self, stream: TcpStream, host: String) -> Option<TcpStream> {
        if !serves_host(&self.router.ingresses(), &host) {
            return match &self.inner {
                Some(inner) => inner.dispatch(stream, host).await,
                None => Some(stream),
            };
        }
        let _ = stream.set_nodelay(true);
        let router = Arc::clone(&self.router);
        let service = service_fn(move |req| {
            let router = Arc::clone(&router);
            async move { Ok::<_, Infallible>(router.ingress(req).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        if let Err(e) = builder
            .serve_connection(TokioIo::new(stream), service)
            .await
        {
            tracing::debug!(error = %e, "ingress connection ended with an error");
        }
        None
    }
}

impl ConnectionDispatch for IngressDispatch {
    fn dispatch(
        &self,
        stream: TcpStream,
        host: String,
    ) -> Pin<Box<dyn Future<Output = Option<TcpStream>> + Send + '_>> {
        Box::pin(self.dispatch_stream(stream, host))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use berth_api::wire::{IngressHostRoute, IngressPathRoute};

    fn path(path: &str, exact: bool, service: &str) -> IngressPathRoute {
        IngressPathRoute {
            path: path.into(),
            exact,
            service: service.into(),
        }
    }

    fn ingress(
        name: &str,
        rules: Vec<(&str, Vec<IngressPathRoute>)>,
        default: Option<&str>,
    ) -> IngressRoute {
        IngressRoute {
            namespace: "default".into(),
            name: name.into(),
            rules: rules
                .into_iter()
                .map(|(host, paths)| IngressHostRoute {
                    host: host.into(),
                    paths,
                })
                .collect(),
            default_service: default.map(str::to_owned),
        }
    }

    fn service(name: &str) -> Resolution<'_> {
        Resolution::Service {
            namespace: "default",
            name,
        }
    }

    #[test]
    fn the_longest_prefix_wins_by_path_element() {
        let routes = [ingress(
            "shop",
            vec![(
                "shop.example.com",
                vec![
                    path("/", false, "web"),
                    path("/api", false, "api"),
                    path("/api/v2/", false, "v2"),
                ],
            )],
            None,
        )];
        let at = |p| resolve(&routes, "shop.example.com", p);
        assert_eq!(at("/"), service("web"));
        assert_eq!(at("/api"), service("api"));
        assert_eq!(at("/api/x"), service("api"));
        assert_eq!(at("/apix"), service("web"), "prefixes match whole elements");
        assert_eq!(at("/api/v2"), service("v2"), "a trailing slash is ignored");
        assert_eq!(at("/api/v2/users"), service("v2"));
    }

    #[test]
    fn exact_beats_prefix_of_the_same_length() {
        let routes = [ingress(
            "shop",
            vec![(
                "shop.example.com",
                vec![
                    path("/login", false, "prefix"),
                    path("/login", true, "exact"),
                ],
            )],
            None,
        )];
        assert_eq!(
            resolve(&routes, "shop.example.com", "/login"),
            service("exact")
        );
        assert_eq!(
            resolve(&routes, "shop.example.com", "/login/x"),
            service("prefix")
        );
    }

    #[test]
    fn exact_hosts_beat_wildcards_of_one_label() {
        let routes = [
            ingress(
                "a",
                vec![("*.example.com", vec![path("/", false, "any")])],
                None,
            ),
            ingress(
                "b",
                vec![("shop.example.com", vec![path("/api", false, "api")])],
                None,
            ),
        ];
        assert_eq!(resolve(&routes, "shop.example.com", "/api"), service("api"));
        assert_eq!(
            resolve(&routes, "shop.example.com", "/"),
            Resolution::NoPath,
            "the exact host's rules alone apply"
        );
        assert_eq!(resolve(&routes, "blog.example.com", "/"), service("any"));
        assert_eq!(resolve(&routes, "a.b.example.com", "/"), Resolution::NoRule);
        assert_eq!(resolve(&routes, "example.com", "/"), Resolution::NoRule);
        assert!(serves_host(&routes, "blog.example.com"));
        assert!(!serves_host(&routes, "hello.default.berth.localhost"));
    }

    #[test]
    fn the_default_backend_serves_unmatched_paths() {
        let routes = [ingress(
            "shop",
            vec![
                ("shop.example.com", vec![path("/api", true, "api")]),
                ("www.example.com", vec![]),
            ],
            Some("web"),
        )];
        assert_eq!(resolve(&routes, "shop.example.com", "/api"), service("api"));
        assert_eq!(
            resolve(&routes, "shop.example.com", "/api/x"),
            service("web")
        );
        assert_eq!(resolve(&routes, "www.example.com", "/"), service("web"));
        assert_eq!(
            resolve(&routes, "other.example.com", "/"),
            Resolution::NoRule
        );
    }

    #[tokio::test]
    async fn hosts_are_compared_lowercase_without_port() {
        let router = ServiceRouter::new("n1", "berth.localhost");
        router.update_ingresses(&[ingress(
            "shop",
            vec![("shop.example.com", vec![path("/x", true, "x")])],
            None,
        )]);
        let request = Request::builder()
            .uri("/nothing")
            .header("host", "Shop.Example.COM:8080")
            .body(())
            .unwrap();
        let host = crate::ingress::request_host(&request).unwrap();
        assert_eq!(host, "shop.example.com");
        assert!(serves_host(&router.ingresses(), &host));
        assert_eq!(
            resolve(&router.ingresses(), &host, "/x"),
            Resolution::Service {
                namespace: "default",
                name: "x"
            }
        );
    }
}
