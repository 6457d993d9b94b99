//! Outbound HTTP from components: denied unless the instance's
//! `allowedOutboundHosts` lists the destination, except calls to Services.
//!
//! A request to `http://NAME.NAMESPACE.svc/...` or `http://NAME/...` (see
//! [`crate::services::service_host`]) goes to the node's service router
//! with `Host: NAME.NAMESPACE.svc`, whatever the allow-list says: Services
//! are the cluster's own, and who may call which is network policy's job,
//! not this list's (decision 0021).

use std::net::SocketAddr;
use std::sync::Arc;

use berth_api::outbound::AllowedHost;
use http::HeaderValue;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How an instance reaches Services: its node's router and its namespace,
/// which a single-label host (`http://NAME/`) is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccess {
    /// The node's service router (a loopback address).
    pub router: SocketAddr,
    /// The instance's namespace.
    pub namespace: String,
    /// The caller header value naming the instance to the router
    /// (`crate::services::policy::instance_header`); it replaces any
    /// the guest sets.
    pub caller: String,
}

/// The `wasi:http` hooks of one instance: its outbound allow-list and its
/// way to Services.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Arc<Vec<AllowedHost>>,
    services: Option<Arc<ServiceAccess>>,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed`, and no Services.
    pub fn new(allowed: Arc<Vec<AllowedHost>>) -> OutboundPolicy {
        OutboundPolicy {
            allowed,
            services: None,
        }
    }

    /// The policy, also sending calls to Services through `services`.
    pub fn with_services(mut self, services: Option<Arc<ServiceAccess>>) -> OutboundPolicy {
        self.services = services;
        self
    }

    /// Whether a request to `uri` may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|entry| entry.allows(scheme, host, uri.port_u16()))
    }

    /// Redirects `request` to the service router if it calls a Service;
    /// whether it did.
    fn to_service<B>(&self, request: &mut http::Request<B>) -> bool {
        let Some(access) = &self.services else {
            return false;
        };
        let Some(host) = crate::services::service_host(request.uri(), &access.namespace) else {
            return false;
        };
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let (Ok(uri), Ok(host)) = (
            http::Uri::try_from(format!("http://{}{target}", access.router)),
            HeaderValue::from_str(&host),
        ) else {
            return false;
        };
        *request.uri_mut() = uri;
        request.headers_mut().insert(http::header::HOST, host);
        let caller = crate::services::policy::CALLER_HEADER;
        match HeaderValue::from_str(&access.caller) {
            Ok(value) => {
                request.headers_mut().insert(caller, value);
            }
            Err(_) => {
                request.headers_mut().remove(caller);
            }
        }
        true
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if !self.to_service(&mut request) && !self.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let span = tracing::info_span!("outbound request", uri = %request.uri());
        inject_trace(&span, &mut request);
        Box::new(tracing::Instrument::instrument(
            async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
                ))
            },
            span,
        ))
    }
}

/// Gives `request` a `traceparent` header naming `span`, when the span is
/// part of a trace and the component set none of its own.
fn inject_trace<B>(span: &tracing::Span, request: &mut http::Request<B>) {
    if request.headers().contains_key(berth_api::trace::HEADER) {
        return;
    }
    if let Some(value) =
        berth_api::trace::of(span).and_then(|trace| HeaderValue::from_str(&trace.to_string()).ok())
    {
        request
            .headers_mut()
            .insert(berth_api::trace::HEADER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_goes_out_by_default() {
        let uri: http::Uri = "http://127.0.0.1:8080/x".parse().unwrap();
        assert!(!OutboundPolicy::default().allows(&uri));
        let policy = OutboundPolicy::new(Arc::new(vec![
            AllowedHost::parse("http://127.0.0.1:8080").unwrap(),
        ]));
        assert!(policy.allows(&uri));
        assert!(!policy.allows(&"http://127.0.0.1:8081/".parse().unwrap()));
        assert!(!policy.allows(&"/relative".parse().unwrap()));
    }

    fn request(uri: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut request = http::Request::new(body);
        *request.uri_mut() = uri.parse().unwrap();
        request
            .headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("original"));
        request
    }

    #[test]
    fn outbound_calls_carry_their_span_as_traceparent() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let header = berth_api::trace::HEADER;
        // Without an OpenTelemetry layer nothing is added.
        let mut plain = request("http://a/");
        inject_trace(&tracing::info_span!("outbound request"), &mut plain);
        assert!(!plain.headers().contains_key(header));

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let ingress = tracing::info_span!("ingress request");
            let parent = berth_api::trace::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .unwrap();
            berth_api::trace::set_parent(&ingress, &parent);
            let span = ingress.in_scope(|| tracing::info_span!("outbound request"));
            let mut traced = request("http://a/");
            inject_trace(&span, &mut traced);
            let sent =
                berth_api::trace::TraceParent::parse(traced.headers()[header].to_str().unwrap())
                    .unwrap();
            assert_eq!(
                sent.trace_id, parent.trace_id,
                "the ingress's trace goes on"
            );
            assert_eq!(Some(sent), berth_api::trace::of(&span));
            // A component's own trace context is left alone.
            let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let mut mine = request("http://a/");
            mine.headers_mut()
                .insert(header, HeaderValue::from_static(own));
            inject_trace(&span, &mut mine);
            assert_eq!(mine.headers()[header], own);
        });
    }

    #[test]
    fn service_calls_go_to_the_router_with_the_service_host() {
        let policy = OutboundPolicy::default().with_services(Some(Arc::new(ServiceAccess {
            router: "127.0.0.1:4000".parse().unwrap(),
            namespace: "team".into(),
            caller: "key team app=a".into(),
        })));
        let mut routed = request("http://b.default.svc/x?y=1");
        routed.headers_mut().insert(
            crate::services::policy::CALLER_HEADER,
            HeaderValue::from_static("forged"),
        );
        assert!(policy.to_service(&mut routed));
        assert_eq!(routed.uri(), "http://127.0.0.1:4000/x?y=1");
        assert_eq!(routed.headers()[http::header::HOST], "b.default.svc");
        assert_eq!(
            routed.headers()[crate::services::policy::CALLER_HEADER],
            "key team app=a",
            "the node names the caller, not the guest"
        );
        let mut routed = request("http://b");
        assert!(policy.to_service(&mut routed));
        assert_eq!(routed.uri(), "http://127.0.0.1:4000/");
        assert_eq!(routed.headers()[http::header::HOST], "b.team.svc");
        let mut other = request("http://api.example.com/");
        assert!(!policy.to_service(&mut other));
        assert_eq!(other.uri(), "http://api.example.com/");
        assert!(
            !OutboundPolicy::default().to_service(&mut request("http://b.default.svc/")),
            "without a router, a Service host is an ordinary host"
        );
    }
}
