//! Secrets at rest, and Secrets and ConfigMaps on their way to instances.
//!
//! **At rest.** Every `Secret` the store writes is sealed with AES-256-GCM
//! ([`SecretsKey::seal`], `ring`'s AEAD, already in the tree through
//! rustls) under a 32-byte key kept outside `berth.redb`: `secrets.key` in
//! the data directory (mode 0600, created on first start) or the file
//! given with `--secrets-key`. The sealing happens in the store itself
//! (`crate::store`), for objects of kind Secret only, so no write or read
//! path can bypass it; the redb value is [`SEALED_MAGIC`], a random 96-bit
//! nonce, then the ciphertext of the object's JSON and the tag, with the
//! object's store key as associated data (a sealed value moved under
//! another key does not open). Layout in `docs/store.md`.
//!
//! **On the way to instances.** [`resolve`] turns a template's `env`
//! (`valueFrom`) and `envFrom` into the variables of one instance; the
//! scheduler calls it when it computes a node's assignments, so a node
//! only ever receives the values of the instances bound to it, and only
//! the keys they declare. [`config_errors`] (sans-IO, run by the
//! reconciler) holds back bound instances whose references do not resolve:
//! `Pending` with reason [`REASON_CREATE_CONTAINER_CONFIG_ERROR`], as
//! Kubernetes says it. See `docs/decisions/0036-secrets-and-configmaps.md`.

mod resolve;
#[cfg(test)]
mod tests;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

pub use resolve::{
    ConfigError, REASON_CREATE_CONTAINER_CONFIG_ERROR, Sources, config_errors, resolve,
};

/// The file name of the key in the scheduler's data directory.
pub const KEY_FILE: &str = "secrets.key";

/// Bytes in a key (AES-256).
pub const KEY_LEN: usize = 32;

/// How a sealed value in the `objects` table begins. Object JSON always
/// begins with `{`, so the two never mix.
pub const SEALED_MAGIC: &[u8] = b"\0berth-sealed-v1\0";

/// Why the key could not be loaded or a value not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key file could not be read or written.
    #[error("secrets key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold a key.
    #[error("secrets key {path}: expected {KEY_LEN} bytes, found {found}")]
    Length {
        /// The file.
        path: PathBuf,
        /// How many bytes it holds.
        found: usize,
    },
    /// The system's random source or the cipher failed.
    #[error("secrets key: the system's random source or cipher failed")]
    Random,
    /// A sealed value does not open: a different key, or altered bytes.
    #[error("cannot decrypt: wrong secrets key, or the stored bytes were altered")]
    Open,
    /// A sealed value is too short to hold a nonce and a tag.
    #[error("cannot decrypt: sealed value is truncated")]
    Truncated,
}

/// The key Secrets are sealed with. Its bytes are never printed.
pub struct SecretsKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<SecretsKey, SecretsError> {
        // AES-256 takes any 32 bytes: `UnboundKey::new` fails only on a
        // wrong length, which the type rules out.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecretsError::Random)?;
        Ok(SecretsKey {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// Reads the key at `path`, or, when `create` and the file does not
    /// exist, makes a random one there (mode 0600).
    pub fn load_or_create(path: &Path, create: bool) -> Result<SecretsKey, SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let found = bytes.len();
                let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SecretsError::Length {
                    path: path.to_owned(),
                    found,
                })?;
                SecretsKey::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut bytes = [0u8; KEY_LEN];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| SecretsError::Random)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    options.mode(0o600);
                }
                let mut file = options.open(path).map_err(io)?;
                file.write_all(&bytes).map_err(io)?;
                file.sync_all().map_err(io)?;
                SecretsKey::from_bytes(&bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plaintext`, bound to `aad` (the store key):
    /// [`SEALED_MAGIC`] ‖ nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .map_err(|_| SecretsError::Random)?;
        let mut out = Vec::with_capacity(SEALED_MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(SEALED_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens what [`seal`](SecretsKey::seal) made under the same `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        let rest = sealed
            .strip_prefix(SEALED_MAGIC)
            .ok_or(SecretsError::Truncated)?;
        let (nonce, body) = rest
            .split_at_checked(NONCE_LEN)
            .ok_or(SecretsError::Truncated)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Truncated)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| SecretsError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(SEALED_MAGIC)
}

/// Where the key lives: `explicit` if given, else `secrets.key` in
/// `data_dir`. Only the default place is created when missing: a key
/// named on the command line that is not there is an error, not a fresh
/// key that opens nothing stored.
pub fn key_path(data_dir: &Path, explicit: Option<&Path>) -> (PathBuf, bool) {
    match explicit {
        Some(path) => (path.to_owned(), false),
        None => (data_dir.join(KEY_FILE), true),
    }
}

/// The environment of `instance` with its Secret and ConfigMap references
/// resolved from `store`; `None` when they do not resolve (the instance is
/// held back, and [`config_errors`] says why).
pub fn instance_env(
    store: &crate::store::Store,
    instance: &berth_api::Instance,
) -> Result<Option<Vec<(String, String)>>, crate::store::StoreError> {
    use berth_api::secret::SourceKind;
    use berth_api::{Kind, Object};

    let namespace = instance.metadata.namespace_or_default();
    let mut failed = None;
    let mut lookup = |kind: SourceKind, name: &str| -> Option<resolve::Data> {
        let store_kind = match kind {
            SourceKind::Secret => Kind::Secret,
            SourceKind::ConfigMap => Kind::ConfigMap,
        };
        let object = match store.get(&crate::store::key(store_kind, Some(namespace), name)) {
            Ok(object) => object,
            Err(e) => {
                failed = Some(e);
                return None;
            }
        };
        match object? {
            // A value that is not base64 was refused at admission; were
            // one stored, its key reads as missing.
            Object::Secret(secret) => Some(
                secret
                    .data
                    .keys()
                    .filter_map(|key| secret.value(key).map(|v| (key.clone(), v)))
                    .collect(),
            ),
            Object::ConfigMap(map) => Some(
                map.data
                    .into_iter()
                    .map(|(key, value)| (key, value.into_bytes()))
                    .collect(),
            ),
            _ => None,
        }
    };
    let env = resolve(namespace, &instance.spec, &mut lookup);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(env.ok())
}
