//! Node-to-node QUIC: how nodes forward Service calls to each other
//! (`docs/decisions/0031-node-to-node-forwarding.md`).
//!
//! Both ends present their node certificate, signed by the cluster CA.
//! The calling node verifies the peer as a TLS server by name: node
//! `NAME` is reached as [`peer_server_name`]`(NAME)`, a DNS name the CA
//! puts only in node certificates (with the `serverAuth` usage), so the
//! scheduler's and users' certificates never pass. The listening node
//! verifies the caller's chain and then its subject, which must be
//! `node:NAME` ([`NodeClientVerifier`]): a user's certificate, signed by
//! the same CA, is refused in the handshake.
//!
//! Out of scope: revocation. A node deleted or joined again keeps a
//! certificate its peers accept until it expires; the scheduler refuses it.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{
    Identity, QuicError, certs, client_tls, client_with, provider, roots, server_with,
    transport_with,
};

/// The ALPN protocol id of node-to-node connections: HTTP/1.1, one
/// connection per bidirectional stream.
pub const PEER_ALPN: &[u8] = b"berth-peer/1";

/// The DNS suffix of nodes' peer names: node `n1` is `n1.nodes.berth`.
pub const PEER_DOMAIN: &str = "nodes.berth";

/// Streams one node may have open to another at once: calls in flight
/// plus pooled idle streams (each an HTTP/1.1 connection).
pub const PEER_MAX_STREAMS: u32 = 4096;

/// The name node `node` is verified by when another node connects to it,
/// and the DNS name its certificate carries.
pub fn peer_server_name(node: &str) -> String {
    format!("{node}.{PEER_DOMAIN}")
}

/// The prefix of a node certificate's common name, `node:NAME`.
const NODE_SUBJECT_PREFIX: &str = "node:";

/// The node named by a certificate's subject (`CN=node:NAME`), if it names
/// one. Says nothing of who signed it.
pub fn certificate_node(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    let name = common_name.strip_prefix(NODE_SUBJECT_PREFIX)?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether `identity`'s certificate lets node `node` serve its peers: it
/// carries [`peer_server_name`]`(node)` and the `serverAuth` usage.
/// Certificates issued before node-to-node forwarding do not.
pub fn serves_peers(identity: &Identity, node: &str) -> Result<bool, QuicError> {
    let chain = certs("certificate chain", &identity.cert_chain_pem)?;
    let Some(leaf) = chain.first() else {
        return Ok(false);
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return Ok(false);
    };
    let server_auth = matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth);
    let wanted = peer_server_name(node);
    let named = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().any(|name| {
            matches!(name, x509_parser::extensions::GeneralName::DNSName(dns) if dns.eq_ignore_ascii_case(&wanted))
        }),
        _ => false,
    };
    Ok(server_auth && named)
}

/// The transport of node-to-node connections: the scheduler's keep-alive
/// and idle timeout, and room for [`PEER_MAX_STREAMS`] streams.
fn peer_transport() -> Arc<quinn::TransportConfig> {
    transport_with(|transport| {
        transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(PEER_MAX_STREAMS));
        transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    })
}

/// A node's peer listener configuration: its own certificate, and only
/// other nodes' certificates (CA-signed, subject `node:NAME`) accepted.
pub fn peer_server_config(
    identity: &Identity,
    ca_pem: &str,
) -> Result<quinn::ServerConfig, QuicError> {
    let inner =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .build()?;
    let verifier = NodeClientVerifier { inner };
    server_with(identity, Arc::new(verifier), PEER_ALPN, peer_transport())
}

/// A node's configuration for connecting to its peers: it presents
/// `identity` and accepts a peer only by its [`peer_server_name`] under
/// the cluster CA.
pub fn peer_client_config(
    identity: &Identity,
    ca_pem: &str,
) -> Result<quinn::ClientConfig, QuicError> {
    client_with(client_tls(identity, ca_pem)?, PEER_ALPN, peer_transport())
}

/// Verifies a client certificate against the cluster CA, then requires its
/// subject to name a node: users' certificates are signed by the same CA
/// and must not pass.
#[derive(Debug)]
pub struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match certificate_node(end_entity) {
            Some(_) => Ok(verified),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
