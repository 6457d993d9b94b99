//! The durable store: one redb file holding objects, uploaded components and
//! the identities behind issued certificates.
//!
//! Schema (all keys are UTF-8 strings):
//!
//! | table        | key                          | value                               |
//! |--------------|------------------------------|-------------------------------------|
//! | `objects`    | `Kind/namespace/name` (`Kind//name` when cluster-scoped) | JSON of the object |
//! | `meta`       | `revision`                   | u64, the last committed revision    |
//! | `blobs`      | `sha256:<hex>`               | component bytes                     |
//! | `identities` | SHA-256 of a client cert DER | `node:NAME` or `user:NAME`          |
//! | `tokens`     | SHA-256 of a token's secret  | `USER EXPIRES NAME` (Unix seconds)  |
//! | `imports`    | `sha256:<hex>`               | JSON list of the interfaces the component imports |
//!
//! Objects of kind Secret are sealed (AES-256-GCM, [`crate::secrets`])
//! on their way into `objects` and opened on their way out, here and
//! nowhere else, so every path that reads or writes objects is covered.
//!
//! Every write transaction that changes an object takes the next revision;
//! each object it writes carries that revision as its `resourceVersion`.
//! A write is acknowledged only after redb commits it durably.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use berth_api::{Kind, Object};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::metrics::Metrics;
use crate::secrets::SecretsKey;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const IDENTITIES: TableDefinition<&str, &str> = TableDefinition::new("identities");
const IMPORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("imports");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");

const REVISION: &str = "revision";

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A stored object no longer decodes.
    #[error("store: object {key} is corrupt: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A sealed Secret does not open, or one could not be sealed.
    #[error("store: object {key}: {source}")]
    Sealed {
        /// Its key.
        key: String,
        /// Why.
        source: crate::secrets::SecretsError,
    },
    /// A Secret is read or written by a store opened without a key.
    #[error("store: object {key}: no secrets key to seal or open it with")]
    NoSecretsKey {
        /// Its key.
        key: String,
    },
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The key of an object: `Kind/namespace/name`.
pub fn key(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or(""))
}

/// The key of a stored object.
pub fn object_key(object: &Object) -> String {
    key(object.kind(), object.namespace(), &object.metadata().name)
}

fn prefix(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => format!("{kind}/{namespace}/"),
        None => format!("{kind}/"),
    }
}

fn decode(key: &str, bytes: &[u8], secrets: Option<&SecretsKey>) -> Result<Object, StoreError> {
    let opened;
    let json = if crate::secrets::is_sealed(bytes) {
        let secrets = secrets.ok_or_else(|| StoreError::NoSecretsKey {
            key: key.to_owned(),
        })?;
        opened = secrets
            .open(key, bytes)
            .map_err(|source| StoreError::Sealed {
                key: key.to_owned(),
                source,
            })?;
        opened.as_slice()
    } else {
        bytes
    };
    Object::from_json(json).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}

/// The bytes `object` is stored as under `key`: its JSON, sealed for a
/// Secret.
fn encode(key: &str, object: &Object, secrets: Option<&SecretsKey>) -> Result<Vec<u8>, StoreError> {
    let json = object.to_json();
    if object.kind() != Kind::Secret {
        return Ok(json);
    }
    let secrets = secrets.ok_or_else(|| StoreError::NoSecretsKey {
        key: key.to_owned(),
    })?;
    secrets
        .seal(key, &json)
        .map_err(|source| StoreError::Sealed {
            key: key.to_owned(),
            source,
        })
}

/// The redb-backed store.
pub struct Store {
    db: Database,
    /// Where commit latency is recorded, once the cluster attaches it.
    metrics: Option<Arc<Metrics>>,
    /// What Secrets are sealed with; without it, reading or writing one
    /// fails.
    secrets: Option<Arc<SecretsKey>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Every object at one revision, as controllers see the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The revision read.
    pub revision: u64,
    /// All objects, in key order.
    pub objects: Vec<Object>,
}

impl Store {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(OBJECTS)?;
            txn.open_table(META)?;
            txn.open_table(BLOBS)?;
            txn.open_table(IDENTITIES)?;
            txn.open_table(IMPORTS)?;
            txn.open_table(TOKENS)?;
        }
        txn.commit()?;
        Ok(Store {
            db,
            metrics: None,
            secrets: None,
        })
    }

    /// Seals and opens Secrets with `key`.
    pub fn with_secrets_key(self, key: Arc<SecretsKey>) -> Store {
        Store {
            secrets: Some(key),
            ..self
        }
    }

    fn secrets(&self) -> Option<&SecretsKey> {
        self.secrets.as_deref()
    }

    /// Records the latency of every committing [`write`](Store::write) in `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Store {
        Store {
            metrics: Some(metrics),
            ..self
        }
    }

    /// The last committed revision.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(REVISION)?.map(|v| v.value()).unwrap_or(0))
    }

    /// One object.
    pub fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        table
            .get(key)?
            .map(|v| decode(key, v.value(), self.secrets()))
            .transpose()
    }

    /// Objects of `kind`, in `namespace` or in all namespaces.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OBJECTS)?;
        let prefix = prefix(kind, namespace);
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(key.value(), value.value(), self.secrets())?);
        }
        Ok(out)
    }

    /// Every object, consistently at one revision.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let revision = meta.get(REVISION)?.map(|v| v.value()).unwrap_or(0);
        let table = txn.open_table(OBJECTS)?;
        let mut objects = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            objects.push(decode(key.value(), value.value(), self.secrets())?);
        }
        Ok(Snapshot { revision, objects })
    }

    /// Runs `f` in one write transaction and commits if it returns `Ok`;
    /// on `Err` nothing is written. Returns the revision after the commit.
    pub fn write<T, E>(
        &self,
        f: impl FnOnce(&mut Txn<'_, '_>) -> Result<T, E>,
    ) -> Result<(T, u64), E>
    where
        E: From<StoreError>,
    {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        let (value, revision) = {
            let mut objects = txn.open_table(OBJECTS).map_err(StoreError::from)?;
            let mut meta = txn.open_table(META).map_err(StoreError::from)?;
            let current = meta
                .get(REVISION)
                .map_err(StoreError::from)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut writer = Txn {
                objects: &mut objects,
                next: current + 1,
                changed: false,
                secrets: self.secrets.as_deref(),
            };
            let value = f(&mut writer)?;
            let revision = if writer.changed {
                meta.insert(REVISION, current + 1)
                    .map_err(StoreError::from)?;
                current + 1
            } else {
                current
            };
            (value, (revision, writer.changed))
        };
        let (revision, changed) = revision;
        if changed {
            let began = Instant::now();
            txn.commit().map_err(StoreError::from)?;
            if let Some(metrics) = &self.metrics {
                metrics.store_commit(began.elapsed().as_secs_f64());
            }
        } else {
            // Nothing to make durable: skip the fsync a commit costs.
            txn.abort().map_err(StoreError::from)?;
        }
        Ok((value, revision))
    }

    /// Stores a component under its digest, with the interfaces it imports.
    pub fn put_blob(
        &self,
        digest: &str,
        bytes: &[u8],
        imports: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(BLOBS)?.insert(digest, bytes)?;
        let imports = serde_json::to_vec(imports).unwrap_or_default();
        txn.open_table(IMPORTS)?
            .insert(digest, imports.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The imports of every stored component, by digest.
    pub fn imports(&self) -> Result<HashMap<String, BTreeSet<String>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IMPORTS)?;
        let mut out = HashMap::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let imports =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Corrupt {
                    key: format!("imports/{}", key.value()),
                    source,
                })?;
            out.insert(key.value().to_owned(), imports);
        }
        Ok(out)
    }

    /// A blob's bytes.
    pub fn get_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        Ok(table.get(digest)?.map(|v| v.value().to_vec()))
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, digest: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        Ok(table.get(digest)?.is_some())
    }

    /// Records who a certificate fingerprint belongs to.
    pub fn put_identity(&self, fingerprint: &str, subject: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(IDENTITIES)?.insert(fingerprint, subject)?;
        txn.commit()?;
        Ok(())
    }

    /// Who a certificate fingerprint belongs to.
    pub fn identity(&self, fingerprint: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IDENTITIES)?;
        Ok(table.get(fingerprint)?.map(|v| v.value().to_owned()))
    }

    /// Whether some unrevoked certificate was issued to `subject`.
    pub fn has_subject(&self, subject: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(IDENTITIES)?;
        for entry in table.iter()? {
            if entry?.1.value() == subject {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records a bearer token: the SHA-256 of its secret (hex) and
    /// `USER EXPIRES NAME` (expiry in Unix seconds).
    pub fn put_token(&self, hash: &str, record: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(TOKENS)?.insert(hash, record)?;
        txn.commit()?;
        Ok(())
    }

    /// The record of the token whose secret hashes to `hash`.
    pub fn token(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TOKENS)?;
        Ok(table.get(hash)?.map(|v| v.value().to_owned()))
    }

    /// Forgets every token of `user`.
    pub fn revoke_tokens(&self, user: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(TOKENS)?;
            table.retain(|_, record| record.split(' ').next() != Some(user))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Forgets every certificate issued to `subject` (a node re-joining).
    pub fn revoke_subject(&self, subject: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(IDENTITIES)?;
            table.retain(|_, value| value != subject)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// A write transaction over objects.
pub struct Txn<'a, 't> {
    objects: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
    next: u64,
    changed: bool,
    secrets: Option<&'a SecretsKey>,
}

impl Txn<'_, '_> {
    /// The revision this transaction's writes will carry.
    pub fn revision(&self) -> u64 {
        self.next
    }

    /// Reads an object, including this transaction's own writes.
    pub fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.objects
            .get(key)?
            .map(|v| decode(key, v.value(), self.secrets))
            .transpose()
    }

    /// Objects of `kind` in `namespace` (or all), including this
    /// transaction's own writes.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        let prefix = prefix(kind, namespace);
        let mut out = Vec::new();
        for entry in self.objects.range(prefix.as_str()..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            out.push(decode(key.value(), value.value(), self.secrets)?);
        }
        Ok(out)
    }

    /// Writes `object`, stamping it with this transaction's revision.
    pub fn put(&mut self, mut object: Object) -> Result<Object, StoreError> {
        object.metadata_mut().resource_version = Some(self.next.to_string());
        let key = object_key(&object);
        let bytes = encode(&key, &object, self.secrets)?;
        self.objects.insert(key.as_str(), bytes.as_slice())?;
        self.changed = true;
        Ok(object)
    }

    /// Deletes the object at `key`; whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let existed = self.objects.remove(key)?.is_some();
        self.changed |= existed;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{API_VERSION, Namespace, ObjectMeta};

    fn namespace(name: &str) -> Object {
        Object::Namespace(Box::new(Namespace {
            api_version: API_VERSION.into(),
            kind: "Namespace".into(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
        }))
    }

    #[test]
    fn writes_survive_reopen_with_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let store = Store::open(&path).unwrap();
            let (_, rev) = store
                .write(|txn| -> Result<(), StoreError> {
                    txn.put(namespace("a"))?;
                    txn.put(namespace("b"))?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(rev, 1);
            let (_, rev) = store
                .write(|txn| -> Result<(), StoreError> {
                    txn.put(namespace("c"))?;
                    Ok(())
                })
                .unwrap();
            assert_eq!(rev, 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.revision().unwrap(), 2);
        let all = store.list(Kind::Namespace, None).unwrap();
        let versions: Vec<_> = all
            .iter()
            .map(|o| o.metadata().resource_version.clone().unwrap())
            .collect();
        assert_eq!(versions, ["1", "1", "2"]);
    }

    #[test]
    fn failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let result = store.write(|txn| -> Result<(), StoreError> {
            txn.put(namespace("a"))?;
            Err(StoreError::Db(redb::Error::Corrupted("test abort".into())))
        });
        assert!(result.is_err());
        assert!(store.list(Kind::Namespace, None).unwrap().is_empty());
        assert_eq!(store.revision().unwrap(), 0);
    }

    #[test]
    fn a_write_without_changes_keeps_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        let (_, rev) = store
            .write(|txn| -> Result<bool, StoreError> { txn.delete("Namespace//x") })
            .unwrap();
        assert_eq!(rev, 0);
    }

    #[test]
    fn identities_and_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.redb")).unwrap();
        store.put_identity("f1", "node:a").unwrap();
        store.put_identity("f2", "node:a").unwrap();
        store.put_identity("f3", "user:admin").unwrap();
        store.revoke_subject("node:a").unwrap();
        assert_eq!(store.identity("f1").unwrap(), None);
        assert_eq!(store.identity("f3").unwrap().as_deref(), Some("user:admin"));
        let imports = BTreeSet::from(["wasi:http/types@0.2.0".to_owned()]);
        store.put_blob("sha256:00", b"abc", &imports).unwrap();
        assert_eq!(store.imports().unwrap()["sha256:00"], imports);
        assert!(store.has_blob("sha256:00").unwrap());
        assert_eq!(store.get_blob("sha256:00").unwrap().unwrap(), b"abc");
    }
}
