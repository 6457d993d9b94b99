//! The node's OCI image store: images pulled from registries and OCI image
//! layouts, kept on disk as verified blobs and unpacked layers, and made
//! into each container's root filesystem.
//!
//! Start at [`ImageStore::pull`]: it resolves a reference (the forms, and
//! registries over HTTP or HTTPS, are in `image/source.rs`) to one image
//! manifest, fetches what `blobs/` lacks, each blob checked against its
//! sha256 digest before it is kept (`blobs.rs`), and unpacks each layer
//! once, refusing hostile tarballs (`unpack.rs`). [`ImageStore::rootfs`]
//! then gives a container its root filesystem: an overlayfs mount of the
//! layers, or a copy where overlayfs is unavailable ([`Rootfs`],
//! `rootfs.rs`). [`pack_directory`] and [`push_layout`] go the other way,
//! for tests and `berth push`; manifests and configs are read in
//! `config.rs`, OCI image layouts in `layout.rs`.
//!
//! On disk, under the store's root (`<data_dir>/images`):
//! - `blobs/sha256/<hex>`: manifests, configs and compressed layers;
//! - `layers/sha256/<hex>`: each layer unpacked, named by its compressed
//!   digest, so images sharing a layer share its directory;
//! - `refs/<hex>`: the manifest digest a registry tag last resolved to
//!   (named by the sha256 of the reference), used when the registry is out
//!   of reach: a node that restarts offline still runs what it had;
//! - `whiteouts`: how layers record deletions (overlayfs's format, or
//!   OCI's where the process cannot make overlayfs whiteouts), fixed when
//!   the store is first opened (`unpack.rs`);
//! - `tmp/`: downloads and unpacks in progress, emptied on opening.
//!
//! **Architecture Invariant:** nothing under `blobs/` or `layers/` is
//! written in place: each is made under `tmp/` and renamed in once
//! verified, so a crash or a bad blob leaves nothing half-made, and a name
//! always is its content.
//!
//! Out of scope: registry credentials (pulls and pushes are anonymous),
//! garbage collection of blobs and layers no image uses, zstd layers,
//! signatures. One store per root: opening one empties its `tmp/`.

mod blobs;
mod config;
mod layout;
mod pack;
mod registry;
mod rootfs;
mod source;
#[cfg(test)]
mod tests;
mod unpack;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use tracing::warn;

pub use pack::pack_directory;
/// Shared with [`super::component`]: one registry client setup.
pub(in crate::oci) use registry::anonymous_client;
pub use registry::push_layout;
pub use rootfs::{Rootfs, remove_rootfs_dir};
pub(in crate::oci) use source::registry_error;

use blobs::{BlobStore, KeyedLocks, check_digest, hex_of, is_digest, temp_path};
use config::{Manifest, layer_compression, parse_config, parse_manifest, select_platform};
use layout::read_bounded;
use source::{Kind, Origin, Source};
use unpack::{UnpackError, Whiteouts};

/// An image ready to run: its layers are unpacked on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>` of the manifest (the platform's, for an index).
    pub digest: String,
    /// What the image runs.
    pub config: ImageConfig,
    /// Unpacked layer directories, base layer first.
    pub layers: Vec<PathBuf>,
}

/// What an image's config says to run, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// The program and its first arguments (`Entrypoint`).
    pub entrypoint: Vec<String>,
    /// Arguments after the entrypoint, or the program and its arguments
    /// when there is none (`Cmd`).
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// `None` when the config gives none or an empty one.
    pub working_dir: Option<String>,
    /// `USER[:GROUP]`, by name or number, as the config gives it.
    pub user: Option<String>,
    /// The TCP ports of `ExposedPorts`, sorted (UDP ports are left out).
    pub exposed_ports: Vec<u16>,
}

/// Why an image could not be pulled, pushed, packed or made a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference is none of the forms [`ImageStore::pull`] takes.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The registry refused a request or could not be reached.
    #[error("registry {registry}")]
    Registry {
        registry: String,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// A blob does not hash to the digest that names it (`object` is
    /// `manifest sha256:..`, `config sha256:..` or `layer sha256:..`).
    #[error("image {image}: {object}: digest mismatch (got {actual})")]
    DigestMismatch {
        image: String,
        object: String,
        actual: String,
    },
    /// A manifest, config or layer is malformed, unsupported or hostile.
    #[error("image {image}: {object}: {reason}")]
    Invalid {
        image: String,
        object: String,
        reason: String,
    },
    /// A layer could not be read or unpacked.
    #[error("image {image}: {object}: cannot unpack")]
    Unpack {
        image: String,
        object: String,
        #[source]
        source: io::Error,
    },
    /// An OCI image layout (or archive of one) is missing or malformed.
    #[error("oci layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },
    /// [`pack_directory`] met something it cannot put in a layer.
    #[error("cannot pack {path}: {reason}")]
    Pack { path: PathBuf, reason: String },
    /// The store's own files, or a rootfs's.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An unpacking task on the blocking pool panicked or was cancelled.
    #[error("image unpacking task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl ImageError {
    /// An I/O error on `path` met by a caller handling a store's or a
    /// rootfs's files.
    pub fn io(path: &Path, source: io::Error) -> ImageError {
        ImageError::Io {
            action: "access",
            path: path.to_owned(),
            source,
        }
    }

    /// Wraps an I/O error on `path` (for `map_err`).
    fn at(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError + use<> {
        let path = path.to_owned();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }
}

/// Where images live: `<data_dir>/images`; see the module docs.
#[derive(Debug)]
pub struct ImageStore {
    blobs: BlobStore,
    layers: PathBuf,
    refs: PathBuf,
    tmp: PathBuf,
    whiteouts: Whiteouts,
    layer_locks: KeyedLocks,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn new(root: PathBuf) -> Result<ImageStore, ImageError> {
        let tmp = root.join("tmp");
        if let Err(err) = fs::remove_dir_all(&tmp)
            && err.kind() != io::ErrorKind::NotFound
        {
            return Err(ImageError::at("empty", &tmp)(err));
        }
        let blobs = root.join("blobs/sha256");
        let layers = root.join("layers/sha256");
        let refs = root.join("refs");
        for dir in [&blobs, &layers, &refs, &tmp] {
            fs::create_dir_all(dir).map_err(ImageError::at("create", dir))?;
        }
        let whiteouts = Whiteouts::load_or_probe(&root.join("whiteouts"), &tmp)?;
        Ok(ImageStore {
            blobs: BlobStore::new(blobs, tmp.clone()),
            layers,
            refs,
            tmp,
            whiteouts,
            layer_locks: KeyedLocks::default(),
        })
    }

    /// Resolves `reference` and makes sure every layer is unpacked,
    /// fetching only what is missing. Forms: `REGISTRY/REPO:TAG`,
    /// `REGISTRY/REPO@sha256:HEX`, `oci:PATH[:TAG]` (an OCI image layout
    /// directory) and `oci-archive:PATH[:TAG]` (a tar of one). A registry
    /// tag is resolved again each time; a digest already on disk is not.
    /// Safe to call for one image from several tasks at once.
    pub async fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        match Source::parse(reference)? {
            Source::Registry(target) => {
                let client = registry::anonymous_client(&target).await?;
                let top = self.resolve(reference, &target, &client).await?;
                let origin = Origin::Registry {
                    client: Box::new(client),
                    reference: target,
                };
                self.pull_from(reference, &origin, &top, None).await
            }
            Source::Layout { dir, tag } => {
                let (top, size) = layout::find_tag(&dir, tag.as_deref())?;
                self.pull_from(reference, &Origin::Layout { dir }, &top, size)
                    .await
            }
            Source::Archive { file, tag } => {
                let dir = temp_path(&self.tmp, "archive");
                let pulled = self
                    .pull_archive(reference, &file, &dir, tag.as_deref())
                    .await;
                let _ = tokio::task::spawn_blocking(move || fs::remove_dir_all(dir)).await;
                pulled.map_err(|err| match err {
                    ImageError::Layout { reason, .. } => ImageError::Layout { path: file, reason },
                    other => other,
                })
            }
        }
    }

    /// A root filesystem for one container at `dir` (created); see
    /// [`Rootfs`]. Blocking: a copy may take a while.
    pub fn rootfs(&self, image: &Image, dir: &Path) -> Result<Rootfs, ImageError> {
        rootfs::create(&image.layers, self.whiteouts, dir, true)
    }

    async fn pull_archive(
        &self,
        image: &str,
        file: &Path,
        dir: &Path,
        tag: Option<&str>,
    ) -> Result<Image, ImageError> {
        let (file, extracted) = (file.to_owned(), dir.to_owned());
        tokio::task::spawn_blocking(move || layout::extract_archive(&file, &extracted))
            .await
            .map_err(ImageError::Task)??;
        let (top, size) = layout::find_tag(dir, tag)?;
        let origin = Origin::Layout {
            dir: dir.to_owned(),
        };
        self.pull_from(image, &origin, &top, size).await
    }

    /// The digest a registry reference names: its own, or what its tag
    /// resolves to now (or did last, if the registry is out of reach).
    async fn resolve(
        &self,
        image: &str,
        target: &Reference,
        client: &Client,
    ) -> Result<String, ImageError> {
        if let Some(digest) = target.digest() {
            check_digest(image, "reference", digest)?;
            return Ok(digest.to_owned());
        }
        let record = self.refs.join(hex::encode(Sha256::digest(target.whole())));
        match registry::fetch_tag(client, target, image).await {
            Ok(bytes) => {
                let digest = self.blobs.put(&bytes).await?;
                let staged = temp_path(&self.tmp, "ref");
                tokio::fs::write(&staged, &digest)
                    .await
                    .map_err(ImageError::at("write", &staged))?;
                tokio::fs::rename(&staged, &record)
                    .await
                    .map_err(ImageError::at("write", &record))?;
                Ok(digest)
            }
            Err(err) if registry::is_unreachable(&err) => {
                let Ok(text) = tokio::fs::read_to_string(&record).await else {
                    return Err(err);
                };
                let digest = text.trim();
                if !is_digest(digest) {
                    return Err(err);
                }
                warn!(image, %digest, error = %err, "registry out of reach: using the manifest last pulled");
                Ok(digest.to_owned())
            }
            Err(err) => Err(err),
        }
    }

    async fn pull_from(
        &self,
        image: &str,
        origin: &Origin,
        top: &str,
        size: Option<u64>,
    ) -> Result<Image, ImageError> {
        let (digest, manifest) = self.image_manifest(image, origin, top, size).await?;
        let config = &manifest.config;
        let object = format!("config {}", config.digest);
        let size = u64::try_from(config.size).ok();
        let path = self
            .blobs
            .ensure(origin, Kind::Blob, image, &object, &config.digest, size)
            .await?;
        let bytes = read_bounded(&path).map_err(ImageError::at("read", &path))?;
        let (config, diff_ids) = parse_config(image, &object, &bytes)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Invalid {
                image: image.to_owned(),
                object,
                reason: format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&diff_ids)
            .map(|(layer, diff_id)| self.layer(image, origin, layer, diff_id));
        let layers = futures::future::try_join_all(layers).await?;
        Ok(Image {
            digest,
            config,
            layers,
        })
    }

    /// The image manifest `digest` names, through an index if it is one.
    async fn image_manifest(
        &self,
        image: &str,
        origin: &Origin,
        digest: &str,
        size: Option<u64>,
    ) -> Result<(String, OciImageManifest), ImageError> {
        let index = match self.manifest(image, origin, digest, size).await? {
            Manifest::Image(manifest) => return Ok((digest.to_owned(), *manifest)),
            Manifest::Index(index) => index,
        };
        let entry = select_platform(image, &format!("index {digest}"), &index)?;
        let size = u64::try_from(entry.size).ok();
        match self.manifest(image, origin, &entry.digest, size).await? {
            Manifest::Image(manifest) => Ok((entry.digest.clone(), *manifest)),
            Manifest::Index(_) => Err(ImageError::Invalid {
                image: image.to_owned(),
                object: format!("manifest {}", entry.digest),
                reason: "an index within an index is not supported".to_owned(),
            }),
        }
    }

    async fn manifest(
        &self,
        image: &str,
        origin: &Origin,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Manifest, ImageError> {
        let object = format!("manifest {digest}");
        let path = self
            .blobs
            .ensure(origin, Kind::Manifest, image, &object, digest, size)
            .await?;
        let bytes = read_bounded(&path).map_err(ImageError::at("read", &path))?;
        parse_manifest(image, &object, &bytes)
    }

    /// The unpacked directory of `layer`, unpacking it if need be.
    async fn layer(
        &self,
        image: &str,
        origin: &Origin,
        layer: &OciDescriptor,
        diff_id: &str,
    ) -> Result<PathBuf, ImageError> {
        let object = format!("layer {}", layer.digest);
        check_digest(image, &object, &layer.digest)?;
        check_digest(image, &object, diff_id)?;
        let compression =
            layer_compression(&layer.media_type).ok_or_else(|| ImageError::Invalid {
                image: image.to_owned(),
                object: object.clone(),
                reason: format!("unsupported media type {}", layer.media_type),
            })?;
        let dir = self.layers.join(hex_of(&layer.digest));
        if dir.is_dir() {
            return Ok(dir);
        }
        let _guard = self.layer_locks.lock(&layer.digest).await;
        if dir.is_dir() {
            return Ok(dir);
        }
        let size = u64::try_from(layer.size).ok();
        let blob = self
            .blobs
            .ensure(origin, Kind::Blob, image, &object, &layer.digest, size)
            .await?;
        let staged = temp_path(&self.tmp, "layer");
        let (whiteouts, into, expected) = (self.whiteouts, staged.clone(), diff_id.to_owned());
        let unpacked = tokio::task::spawn_blocking(move || {
            let unpacked = unpack::unpack_layer(&blob, compression, &into, whiteouts, &expected);
            if unpacked.is_err() {
                let _ = fs::remove_dir_all(&into);
            }
            unpacked
        })
        .await
        .map_err(ImageError::Task)?;
        unpacked.map_err(|err| match err {
            UnpackError::Io(source) => ImageError::Unpack {
                image: image.to_owned(),
                object: object.clone(),
                source,
            },
            UnpackError::Refused(reason) => ImageError::Invalid {
                image: image.to_owned(),
                object: object.clone(),
                reason,
            },
            UnpackError::DiffIdMismatch(actual) => ImageError::DigestMismatch {
                image: image.to_owned(),
                object: format!("{object} uncompressed (diff_id {diff_id})"),
                actual,
            },
        })?;
        if let Err(err) = fs::rename(&staged, &dir) {
            let _ = fs::remove_dir_all(&staged);
            return Err(ImageError::at("rename into place", &dir)(err));
        }
        Ok(dir)
    }
}
