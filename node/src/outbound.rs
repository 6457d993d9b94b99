//! Outbound HTTP from components: denied unless the instance's
//! `allowedOutboundHosts` lists the destination.

use std::sync::Arc;

use berth_api::outbound::AllowedHost;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The `wasi:http` hooks of one instance: its outbound allow-list.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Arc<Vec<AllowedHost>>,
}

impl OutboundPolicy {
    /// A policy allowing exactly `allowed`.
    pub fn new(allowed: Arc<Vec<AllowedHost>>) -> OutboundPolicy {
        OutboundPolicy { allowed }
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
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::debug!(uri = %request.uri(), "outbound request denied");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
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
}
