//! Content-addressed blobs: `blobs/sha256/<hex>`, each written under
//! `tmp/`, hashed as it arrives, and renamed in only when it hashes to the
//! digest that names it. A file under `blobs/` is therefore always the
//! content its name says, and is never checked again.
//!
//! Also here: the digest syntax the store accepts (`sha256:` and 64
//! lowercase hex characters; any other is refused before it can become a
//! path), unique temporary names, and per-key locks so that two pulls of
//! one image fetch and unpack each blob once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::ImageError;
use super::source::{Kind, Origin};

/// Whether `digest` is `sha256:` followed by 64 lowercase hex characters.
pub(super) fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The hex part of a digest that passed [`is_digest`].
pub(super) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// `sha256:<hex>` of `bytes`.
pub(super) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks a digest read from a manifest, an index or a reference.
pub(super) fn check_digest(image: &str, object: &str, digest: &str) -> Result<(), ImageError> {
    if is_digest(digest) {
        Ok(())
    } else {
        Err(ImageError::Invalid {
            image: image.to_owned(),
            object: object.to_owned(),
            reason: format!("unsupported digest {digest:?} (expected sha256:<64 hex characters>)"),
        })
    }
}

/// A fresh name under `tmp` for work in progress.
pub(super) fn temp_path(tmp: &Path, what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    tmp.join(format!("{what}-{}-{n}", std::process::id()))
}

/// One async mutex per key, dropped once nobody holds or waits on it.
#[derive(Debug, Default)]
pub(super) struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    pub(super) async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, weak| weak.strong_count() > 0);
            match map.get(key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_owned(), Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }
}

/// A blob being written under `tmp/`: hashed, counted, and bounded by the
/// size its descriptor gives.
#[derive(Debug)]
pub(super) struct BlobSink {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    limit: Option<u64>,
    image: String,
    object: String,
}

impl BlobSink {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.written = self.written.saturating_add(bytes.len() as u64);
        if let Some(limit) = self.limit.filter(|limit| self.written > *limit) {
            return Err(ImageError::Invalid {
                image: self.image.clone(),
                object: self.object.clone(),
                reason: format!("larger than the {limit} bytes its descriptor gives"),
            });
        }
        self.hasher.update(bytes);
        self.file
            .write_all(bytes)
            .await
            .map_err(ImageError::at("write", &self.path))
    }

    pub(super) fn written(&self) -> u64 {
        self.written
    }
}

/// The `blobs/sha256/` directory.
#[derive(Debug)]
pub(super) struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
    locks: KeyedLocks,
}

impl BlobStore {
    pub(super) fn new(dir: PathBuf, tmp: PathBuf) -> BlobStore {
        BlobStore {
            dir,
            tmp,
            locks: KeyedLocks::default(),
        }
    }

    /// Where the blob named `digest` lives once verified.
    pub(super) fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(hex_of(digest))
    }

    /// The verified blob named `digest`, fetched from `origin` unless it
    /// is on disk already. `object` names it in errors (`layer sha256:..`).
    pub(super) async fn ensure(
        &self,
        origin: &Origin,
        kind: Kind,
        image: &str,
        object: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<PathBuf, ImageError> {
        check_digest(image, object, digest)?;
        let path = self.path(digest);
        if path.is_file() {
            return Ok(path);
        }
        let _guard = self.locks.lock(digest).await;
        if path.is_file() {
            return Ok(path);
        }
        let tmp = temp_path(&self.tmp, "blob");
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(ImageError::at("create", &tmp))?;
        let mut sink = BlobSink {
            file,
            path: tmp.clone(),
            hasher: Sha256::new(),
            written: 0,
            limit: size,
            image: image.to_owned(),
            object: object.to_owned(),
        };
        let fetched = origin.fetch(kind, digest, &mut sink).await;
        let result = match fetched {
            Ok(()) => self.commit(sink, &tmp, digest, &path).await,
            Err(err) => Err(err),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| path)
    }

    async fn commit(
        &self,
        sink: BlobSink,
        tmp: &Path,
        digest: &str,
        path: &Path,
    ) -> Result<(), ImageError> {
        sink.file
            .sync_all()
            .await
            .map_err(ImageError::at("write", tmp))?;
        let actual = format!("sha256:{}", hex::encode(sink.hasher.finalize()));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                image: sink.image,
                object: sink.object,
                actual,
            });
        }
        tokio::fs::rename(tmp, path)
            .await
            .map_err(ImageError::at("rename into place", path))
    }

    /// Keeps `bytes` (a manifest a registry served for a tag) as the blob
    /// named by their digest, which is returned.
    pub(super) async fn put(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = digest_of(bytes);
        let path = self.path(&digest);
        if !path.is_file() {
            let tmp = temp_path(&self.tmp, "blob");
            tokio::fs::write(&tmp, bytes)
                .await
                .map_err(ImageError::at("write", &tmp))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(ImageError::at("rename into place", &path))?;
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_digests_are_accepted() {
        let good = format!("sha256:{}", "a1".repeat(32));
        assert!(is_digest(&good));
        assert!(!is_digest(&good.to_uppercase()));
        assert!(!is_digest("sha256:../../etc/passwd"));
        assert!(!is_digest(&format!("sha512:{}", "a1".repeat(64))));
        assert!(!is_digest(&good[..70]));
        assert_eq!(
            digest_of(b""),
            format!(
                "sha256:{}",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }
}
