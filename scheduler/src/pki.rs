//! The cluster's certificate authority and the credentials it issues.
//!
//! On first start the scheduler creates a CA, its own server certificate,
//! an admin client certificate and a bootstrap token, all kept in the data
//! directory (keys with mode 0600). A bootstrap token reads
//! `berth1.<ca-sha256>.<secret>`: the first part pins the CA for a node that
//! has nothing else to trust yet, the second proves the node may join.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use berth_api::quic::{Identity, fingerprint, peer_server_name, pem_fingerprint};
use berth_api::wire::SERVER_NAME;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long issued node and user certificates stay valid.
pub const LEAF_VALIDITY_DAYS: i64 = 365;

/// How long the cluster CA stays valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;

/// Failures creating or loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A stored certificate is unreadable.
    #[error("certificate: {0}")]
    Quic(#[from] berth_api::quic::QuicError),
}

/// Who a client certificate was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A node, by name.
    Node(String),
    /// A user, by name.
    User(String),
}

impl Subject {
    /// The stored form: `node:NAME` or `user:NAME`.
    pub fn encode(&self) -> String {
        match self {
            Subject::Node(name) => format!("node:{name}"),
            Subject::User(name) => format!("user:{name}"),
        }
    }

    /// Parses the stored form.
    pub fn decode(text: &str) -> Option<Subject> {
        match text.split_once(':')? {
            ("node", name) => Some(Subject::Node(name.to_owned())),
            ("user", name) => Some(Subject::User(name.to_owned())),
            _ => None,
        }
    }
}

/// The CA with its key, able to issue certificates.
pub struct Authority {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The scheduler's own server identity.
    pub server: Identity,
    /// The admin user's client identity.
    pub admin: Identity,
    /// The bootstrap token nodes join with.
    pub join_token: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`, readable by the owner only when `secret`.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn validity(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    // Back-date by an hour to tolerate clock skew between machines.
    (now - Duration::hours(1), now + Duration::days(days))
}

/// `bytes` random bytes as lowercase hex (from v4 UUIDs).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

impl Authority {
    /// Loads the CA and credentials from `dir`, creating them on first start.
    pub fn load_or_create(dir: &Path) -> Result<Authority, PkiError> {
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        if !ca_cert.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "berth cluster CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            (params.not_before, params.not_after) = validity(CA_VALIDITY_DAYS);
            let cert = params.self_signed(&key)?;
            write_file(&ca_key, &key.serialize_pem(), true)?;
            write_file(&ca_cert, &cert.pem(), false)?;
        }
        let ca_pem = read(&ca_cert)?;
        let key = KeyPair::from_pem(&read(&ca_key)?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
        let mut authority = Authority {
            ca_pem,
            issuer,
            server: Identity {
                cert_chain_pem: String::new(),
                key_pem: String::new(),
            },
            admin: Identity {
                cert_chain_pem: String::new(),
                key_pem: String::new(),
            },
            join_token: String::new(),
        };
        authority.server = authority.load_or_issue(dir, "scheduler", |a| a.issue_server())?;
        authority.admin = authority.load_or_issue(dir, "admin", |a| {
            a.issue_client(&Subject::User("admin".into()))
        })?;
        let token_path = dir.join("join-token");
        if !token_path.exists() {
            let token = format!("berth1.{}.{}", authority.ca_fingerprint()?, random_hex(16));
            write_file(&token_path, &format!("{token}\n"), true)?;
        }
        authority.join_token = read(&token_path)?.trim().to_owned();
        Ok(authority)
    }

    fn load_or_issue(
        &self,
        dir: &Path,
        name: &str,
        issue: impl FnOnce(&Authority) -> Result<Identity, PkiError>,
    ) -> Result<Identity, PkiError> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        if !cert.exists() || !key.exists() {
            let identity = issue(self)?;
            write_file(&key, &identity.key_pem, true)?;
            write_file(&cert, &identity.cert_chain_pem, false)?;
        }
        Ok(Identity {
            cert_chain_pem: read(&cert)?,
            key_pem: read(&key)?,
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// SHA-256 of the CA certificate, hex.
    pub fn ca_fingerprint(&self) -> Result<String, PkiError> {
        Ok(pem_fingerprint(&self.ca_pem)?)
    }

    /// The secret part of the bootstrap token.
    pub fn join_secret(&self) -> &str {
        self.join_token.rsplit('.').next().unwrap_or_default()
    }

    fn issue_server(&self) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, CA_VALIDITY_DAYS)
    }

    /// Issues a client certificate for `subject`; the caller records its
    /// fingerprint so the scheduler knows who presents it.
    pub fn issue_client(&self, subject: &Subject) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, subject.encode());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, LEAF_VALIDITY_DAYS)
    }

    /// Issues user `name` a client certificate valid for `days` days
    /// (`berth user create`); the caller records its fingerprint.
    pub fn issue_user(&self, name: &str, days: i64) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, Subject::User(name.to_owned()).encode());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, days)
    }

    /// Issues node `name`'s certificate: a client certificate for the
    /// scheduler, and a server certificate for the node's peers, who reach
    /// it by [`peer_server_name`] (see
    /// `docs/decisions/0031-node-to-node-forwarding.md`). The caller records
    /// its fingerprint, as for [`Authority::issue_client`].
    pub fn issue_node(&self, name: &str) -> Result<Identity, PkiError> {
        let mut params = CertificateParams::new(vec![peer_server_name(name)])?;
        params
            .distinguished_name
            .push(DnType::CommonName, Subject::Node(name.to_owned()).encode());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        self.sign(params, LEAF_VALIDITY_DAYS)
    }

    fn sign(&self, mut params: CertificateParams, days: i64) -> Result<Identity, PkiError> {
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity(days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            // The chain carries the CA so that a joining node can find the
            // CA its token pins.
            cert_chain_pem: format!("{}{}", cert.pem(), self.ca_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The fingerprint of an identity's leaf certificate.
pub fn identity_fingerprint(identity: &Identity) -> Result<String, PkiError> {
    Ok(pem_fingerprint(&identity.cert_chain_pem)?)
}

/// The fingerprint of a DER certificate presented by a peer.
pub fn der_fingerprint(der: &[u8]) -> String {
    fingerprint(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::quic::JoinToken;

    #[test]
    fn creates_once_then_loads_the_same_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        let second = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.join_token, second.join_token);
        assert_eq!(
            first.admin.cert_chain_pem, second.admin.cert_chain_pem,
            "the admin certificate is issued once"
        );
        let token = JoinToken::parse(&first.join_token).unwrap();
        assert_eq!(token.ca_fingerprint, first.ca_fingerprint().unwrap());
        assert_eq!(token.secret, first.join_secret());
    }

    #[test]
    fn node_certificates_serve_peers_and_users_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::load_or_create(dir.path()).unwrap();
        let node = authority.issue_node("n1").unwrap();
        assert!(berth_api::quic::serves_peers(&node, "n1").unwrap());
        assert!(!berth_api::quic::serves_peers(&node, "n2").unwrap());
        let leaf = rustls_leaf(&node);
        assert_eq!(
            berth_api::quic::peer::certificate_node(&leaf).as_deref(),
            Some("n1")
        );
        let before = authority.issue_client(&Subject::Node("n1".into())).unwrap();
        assert!(
            !berth_api::quic::serves_peers(&before, "n1").unwrap(),
            "node certificates issued before node-to-node forwarding"
        );
        let user = authority.issue_client(&Subject::User("n1".into())).unwrap();
        assert!(!berth_api::quic::serves_peers(&user, "n1").unwrap());
        assert_eq!(
            berth_api::quic::peer::certificate_node(&rustls_leaf(&user)),
            None
        );
        assert!(!berth_api::quic::serves_peers(&authority.server, "berth-scheduler").unwrap());
    }

    /// The DER of an identity's leaf certificate.
    fn rustls_leaf(identity: &Identity) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        CertificateDer::pem_slice_iter(identity.cert_chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn subjects_roundtrip() {
        for subject in [Subject::Node("n1".into()), Subject::User("admin".into())] {
            assert_eq!(Subject::decode(&subject.encode()), Some(subject));
        }
        assert_eq!(Subject::decode("robot:x"), None);
    }
}
