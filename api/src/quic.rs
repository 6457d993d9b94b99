//! QUIC transport with mutual TLS, shared by the scheduler, nodes and CLI.
//!
//! Every connection is TLS 1.3 inside QUIC; there is no plain-text mode.
//! The scheduler presents a certificate for [`SERVER_NAME`] signed by the
//! cluster CA and asks every client for a certificate signed by the same CA.
//! The one exception is a node's first contact ([`join_client_config`]): it
//! has no certificate yet, so it connects without one and pins the cluster
//! CA by the SHA-256 in its bootstrap token instead; the scheduler accepts
//! only a `Join` request on such a connection.
//!
//! Nodes also connect to each other, to forward Service calls ([`peer`]):
//! another ALPN, both ends presenting node certificates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::wire::{self, ALPN, CodecError, Request, Response, SERVER_NAME};

pub mod peer;
pub use peer::{peer_client_config, peer_server_config, peer_server_name, serves_peers};

/// How often an idle connection sends a keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// A connection silent this long is dead; a node notices a lost scheduler
/// (and the scheduler a lost node) within this time.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(6);

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// A PEM file or string could not be read.
    #[error("invalid {what}: {source}")]
    Pem {
        /// Which credential.
        what: &'static str,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// TLS configuration was refused.
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A verifier could not be built.
    #[error("tls verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// QUIC refused the TLS configuration.
    #[error("quic tls configuration: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// Binding a socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Starting a connection failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectError,
    },
    /// The connection failed or was closed.
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// A stream failed.
    #[error("stream failed: {0}")]
    Stream(String),
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A bootstrap token is malformed.
    #[error("invalid join token: {0}")]
    Token(&'static str),
    /// The stream ended where a frame was expected.
    #[error("peer closed the stream without answering")]
    NoAnswer,
}

/// PEM-encoded certificate chain and key of one party.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Leaf first, then intermediates (the cluster CA).
    pub cert_chain_pem: String,
    /// The private key.
    pub key_pem: String,
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, QuicError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| QuicError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(QuicError::Pem {
            what,
            source: rustls::pki_types::pem::Error::NoItemsFound,
        });
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, QuicError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| QuicError::Pem {
        what: "private key",
        source,
    })
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, QuicError> {
    let mut roots = RootCertStore::empty();
    for cert in certs("ca certificate", ca_pem)? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<quinn::TransportConfig> {
    transport_with(|_| {})
}

/// The keep-alive and idle timeout every connection has, with `adjust`'s
/// changes.
fn transport_with(adjust: impl FnOnce(&mut quinn::TransportConfig)) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    // Six seconds fit in a VarInt, so the conversion cannot fail.
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    adjust(&mut transport);
    Arc::new(transport)
}

/// The SHA-256 of a DER certificate, hex encoded: how bootstrap tokens pin
/// the cluster CA and how the scheduler names client certificates.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of the first certificate in `pem`.
pub fn pem_fingerprint(pem: &str) -> Result<String, QuicError> {
    let certs = certs("certificate", pem)?;
    Ok(certs.first().map(|c| fingerprint(c)).unwrap_or_default())
}

/// A parsed bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA certificate, hex.
    pub ca_fingerprint: String,
    /// The secret.
    pub secret: String,
}

impl JoinToken {
    /// Parses `berth1.<ca-sha256>.<secret>`.
    pub fn parse(token: &str) -> Result<JoinToken, QuicError> {
        let mut parts = token.trim().split('.');
        let (Some("berth1"), Some(ca), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(QuicError::Token("expected berth1.<ca-sha256>.<secret>"));
        };
        if ca.len() != 64 || !ca.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QuicError::Token("the CA fingerprint must be 64 hex digits"));
        }
        if secret.is_empty() {
            return Err(QuicError::Token("the secret is empty"));
        }
        Ok(JoinToken {
            ca_fingerprint: ca.to_ascii_lowercase(),
            secret: secret.to_owned(),
        })
    }
}

/// The scheduler's server configuration: its identity, and client
/// certificates verified against `ca_pem` (optional at the TLS layer so that
/// a joining node can reach the `Join` request; everything else requires one).
pub fn server_config(identity: &Identity, ca_pem: &str) -> Result<quinn::ServerConfig, QuicError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .allow_unauthenticated()
            .build()?;
    server_with(identity, verifier, ALPN, transport())
}

/// A QUIC server configuration: TLS 1.3 presenting `identity`, client
/// certificates checked by `verifier`, protocol `alpn`.
fn server_with(
    identity: &Identity,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    alpn: &[u8],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, QuicError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("certificate chain", &identity.cert_chain_pem)?,
            key(&identity.key_pem)?,
        )?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

/// A client configuration that trusts `ca_pem` for the scheduler and
/// presents `identity`.
pub fn client_config(identity: &Identity, ca_pem: &str) -> Result<quinn::ClientConfig, QuicError> {
    finish_client(client_tls(identity, ca_pem)?)
}

/// TLS 1.3 trusting certificates under `ca_pem` and presenting `identity`.
fn client_tls(identity: &Identity, ca_pem: &str) -> Result<rustls::ClientConfig, QuicError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certs("certificate chain", &identity.cert_chain_pem)?,
            key(&identity.key_pem)?,
        )?)
}

/// A client configuration that trusts `ca_pem` but presents no certificate:
/// all the scheduler accepts from it is a `Join`.
pub fn anonymous_client_config(ca_pem: &str) -> Result<quinn::ClientConfig, QuicError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    finish_client(tls)
}

/// A joining node's configuration: no client certificate, and the
/// scheduler's chain accepted only if it carries the CA whose fingerprint the
/// bootstrap token pins, and the leaf verifies against that CA.
pub fn join_client_config(ca_fingerprint: &str) -> Result<quinn::ClientConfig, QuicError> {
    let verifier = PinnedCa {
        fingerprint: ca_fingerprint.to_ascii_lowercase(),
        provider: provider(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    finish_client(tls)
}

fn finish_client(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, QuicError> {
    client_with(tls, ALPN, transport())
}

/// A QUIC client configuration from `tls`, speaking `alpn`.
fn client_with(
    mut tls: rustls::ClientConfig,
    alpn: &[u8],
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, QuicError> {
    tls.alpn_protocols = vec![alpn.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| fingerprint(cert) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the scheduler's certificate chain does not carry the CA pinned by the join token"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client endpoint on an ephemeral port of the same address family as `server`.
pub fn client_endpoint(
    server: SocketAddr,
    config: quinn::ClientConfig,
) -> Result<quinn::Endpoint, QuicError> {
    let bind: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint =
        quinn::Endpoint::client(bind).map_err(|source| QuicError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Connects to the scheduler at `addr`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<quinn::Connection, QuicError> {
    endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|source| QuicError::Connect { addr, source })?
        .await
        .map_err(|source| QuicError::Connection { addr, source })
}

/// Writes one frame.
pub async fn send_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), QuicError> {
    let frame = wire::encode_frame(message)?;
    send.write_all(&frame)
        .await
        .map_err(|e| QuicError::Stream(e.to_string()))
}

/// Reads one frame; `None` when the peer finished the stream cleanly
/// before a new frame began.
pub async fn recv_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<Option<T>, QuicError> {
    recv_frame_limited(recv, wire::MAX_FRAME_LEN).await
}

/// Like [`recv_frame`], refusing frames longer than `limit` before reading
/// them (for peers not yet authenticated).
pub async fn recv_frame_limited<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<T>, QuicError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(QuicError::Stream(e.to_string())),
    }
    let len = wire::frame_len(prefix)?;
    if len > limit {
        return Err(CodecError::TooLong(len).into());
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| QuicError::Stream(e.to_string()))?;
    Ok(Some(wire::decode_body(&body)?))
}

/// Reads one request frame and the trace context of its trailer (see
/// [`wire::decode_request_body`]), refusing frames longer than `limit`;
/// `None` when the peer finished the stream before a frame began.
pub async fn recv_request_limited(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<(Request, Option<crate::trace::TraceParent>)>, QuicError> {
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(QuicError::Stream(e.to_string())),
    }
    let len = wire::frame_len(prefix)?;
    if len > limit {
        return Err(CodecError::TooLong(len).into());
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| QuicError::Stream(e.to_string()))?;
    Ok(Some(wire::decode_request_body(&body)?))
}

/// The trace context a request made now carries: the current span's, with
/// the `otel` feature.
fn outgoing_trace() -> Option<crate::trace::TraceParent> {
    #[cfg(feature = "otel")]
    return crate::trace::current();
    #[cfg(not(feature = "otel"))]
    return None;
}

/// Sends `request` on a new stream and reads the one response. The current
/// span's trace context, if any, travels in the frame's trailer.
pub async fn call(
    connection: &quinn::Connection,
    request: &Request,
) -> Result<Response, QuicError> {
    let (mut send, mut recv) =
        connection
            .open_bi()
            .await
            .map_err(|source| QuicError::Connection {
                addr: connection.remote_address(),
                source,
            })?;
    let frame = wire::encode_request_frame(request, outgoing_trace().as_ref())?;
    // A write fails when the peer closed the connection (a refused client
    // certificate, say): its reason says more than "connection lost".
    let stream_failed = |e: &dyn std::fmt::Display| {
        close_reason(connection).unwrap_or_else(|| QuicError::Stream(e.to_string()))
    };
    send.write_all(&frame)
        .await
        .map_err(|e| stream_failed(&e))?;
    send.finish().map_err(|e| stream_failed(&e))?;
    match recv_frame(&mut recv).await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(close_reason(connection).unwrap_or(QuicError::NoAnswer)),
        Err(e) => Err(close_reason(connection).unwrap_or(e)),
    }
}

/// If the connection was closed, the reason as an error.
fn close_reason(connection: &quinn::Connection) -> Option<QuicError> {
    connection
        .close_reason()
        .map(|source| QuicError::Connection {
            addr: connection.remote_address(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "berth1",
            "berth2.aa.bb",
            "berth1.zz.secret",
            "berth1.00.secret",
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?} parsed");
        }
        let ok = format!("berth1.{}.s3cret", "a".repeat(64));
        assert!(JoinToken::parse(&ok).is_ok());
    }
}
