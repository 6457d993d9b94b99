//! Logs and traces of every berth process: the `tracing` subscriber.
//!
//! Logs go to stderr, filtered by `BERTH_LOG` (an `EnvFilter`), as text or,
//! with `--log-format json` (`BERTH_LOG_FORMAT=json`), as one JSON object a
//! line. When `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, spans are also exported over
//! OTLP/HTTP (protobuf), with `service.name` `berth-cli`,
//! `berth-scheduler`, `berth-node` or `berth-dev` unless `OTEL_SERVICE_NAME`
//! says otherwise; the other standard `OTEL_*` variables (headers, timeout,
//! `OTEL_BSP_*` batching) apply as the OpenTelemetry SDK reads them.
//!
//! Start at [`init`]; [`Telemetry::shutdown`] flushes the spans still
//! batched and must run before the process exits. Trace context crosses
//! processes through `berth_api::trace` (decision 0023).
//!
//! Out of scope: OTLP over gRPC, `https` endpoints (the exporter's client is
//! plain HTTP on hyper: no second TLS stack), metrics and logs over OTLP.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, fmt as log_fmt};

/// The log filter when `BERTH_LOG` is unset.
const DEFAULT_FILTER: &str = "warn,berth=info,berth_node=info,berth_scheduler=info";

/// The variables that turn OTLP export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Longest wait for the collector's answer to one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, with the span context.
    Json,
}

/// The installed subscriber's exporter, flushed by [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still batched and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: cannot flush traces: {e}");
        }
    }
}

/// Installs the global subscriber for a process whose `service.name` is
/// `service`; exports run on `runtime`.
pub fn init(
    format: LogFormat,
    service: &'static str,
    runtime: &tokio::runtime::Handle,
) -> Telemetry {
    let filter =
        EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let text = (format == LogFormat::Text).then(|| log_fmt::layer().with_writer(std::io::stderr));
    let json = (format == LogFormat::Json).then(|| {
        log_fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
    });
    let provider = if otlp_requested() {
        match provider(service, runtime) {
            Ok(provider) => Some(provider),
            Err(e) => {
                eprintln!("warning: traces are not exported: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("berth")));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .init();
    Telemetry { provider }
}

fn otlp_requested() -> bool {
    ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

fn provider(
    service: &'static str,
    runtime: &tokio::runtime::Handle,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(HyperExporterClient::new(runtime.clone()))
        .build()?;
    let mut resource = Resource::builder();
    // The SDK's own detector reads OTEL_SERVICE_NAME; ours is the fallback.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The exporter's HTTP client: hyper on the process's tokio runtime. The
/// SDK's batch processor exports from a thread of its own, outside the
/// runtime, so each request is spawned onto it.
struct HyperExporterClient {
    runtime: tokio::runtime::Handle,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HyperExporterClient {
    fn new(runtime: tokio::runtime::Handle) -> HyperExporterClient {
        HyperExporterClient {
            runtime,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl fmt::Debug for HyperExporterClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperExporterClient")
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl HttpClient for HyperExporterClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (head, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(head, body))
        };
        // The timer, like the socket, needs the runtime: both run there.
        let bounded = async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err("the collector did not answer in time".into()))
        };
        self.runtime
            .spawn(bounded)
            .await
            .unwrap_or_else(|join| Err(Box::new(join)))
    }
}
