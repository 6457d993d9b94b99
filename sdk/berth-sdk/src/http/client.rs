//! Outbound HTTP: calls to other Services by name and to allowed hosts.
//!
//! berth sends a component's outbound requests through the node:
//! `http://NAME` (a Service of the caller's namespace) and
//! `http://NAME.NAMESPACE.svc` go to one of the Service's ready instances,
//! wherever it runs; any other host must be listed in the Deployment's
//! `allowedOutboundHosts`, or the call fails. [`service_url`] builds the
//! former; [`get`] and [`send`] are [`wstd`]'s client.

use wstd::http::{Body, Client};

use super::{Error, Request, Response};

/// Sends `request` and returns the response, whatever its status. A call
/// that gets no response (refused, host not allowed, unknown Service) is a
/// `502` [`Error`] with the reason.
pub async fn send(request: Request) -> Result<Response, Error> {
    Ok(Client::new().send(request).await?)
}

/// `GET url`, as [`send`].
pub async fn get(url: &str) -> Result<Response, Error> {
    let request = wstd::http::Request::get(url)
        .body(Body::empty())
        .map_err(|e| Error::internal(format!("error: url {url:?}: {e}")))?;
    send(request).await
}

/// The URL of `path` on Service `service`: `http://NAME/PATH` for a Service
/// in the caller's namespace, `http://NAME.NAMESPACE.svc/PATH` when
/// `service` is `NAME.NAMESPACE`. `path` gets a leading `/` if it lacks
/// one.
pub fn service_url(service: &str, path: &str) -> String {
    let host = match service.split_once('.') {
        Some((name, namespace)) => format!("{name}.{namespace}.svc"),
        None => service.to_owned(),
    };
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("http://{host}{slash}{path}")
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

    #[test]
    fn service_urls_use_the_short_or_namespaced_form() {
        assert_eq!(service_url("hello", "/"), "http://hello/");
        assert_eq!(service_url("hello", "items/1"), "http://hello/items/1");
        assert_eq!(
            service_url("hello.team", "/x?y=1"),
            "http://hello.team.svc/x?y=1"
        );
        assert_eq!(service_url("hello", ""), "http://hello/");
    }
}
