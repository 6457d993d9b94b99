//! [`pack_directory`]: a directory tree as a single-layer image in an OCI
//! image layout, for tests and `berth push`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use flate2::Compression as Level;
use flate2::write::GzEncoder;
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageManifest,
};
use sha2::{Digest as _, Sha256};

use super::blobs::temp_path;
use super::config::config_file;
use super::layout::{tag_manifest, write_blob};
use super::{ImageConfig, ImageError};

/// Hashes and counts what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or_default();
        self.hasher.update(written);
        self.written = self.written.saturating_add(written.len() as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

/// Packs the tree at `root` into a single-layer image in the OCI image
/// layout at `layout` (created if need be; other tags are kept), runs it
/// with `config`, tags it `tag`, and returns the manifest digest.
///
/// The layer holds directories, regular files and symlinks with their
/// modes and modification times, all owned by root (like `tar --owner=0
/// --group=0`); hard links become copies. Anything else is refused.
pub fn pack_directory(
    root: &Path,
    config: &ImageConfig,
    layout: &Path,
    tag: &str,
) -> Result<String, ImageError> {
    let valid_tag = tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid_tag {
        return Err(ImageError::Layout {
            path: layout.to_owned(),
            reason: format!("invalid tag {tag:?}"),
        });
    }
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(ImageError::at("create", &blobs))?;

    let staged = temp_path(&blobs, ".layer");
    let layer = write_layer(root, &staged);
    let (layer_digest, layer_size, diff_id) = match layer {
        Ok(layer) => layer,
        Err(err) => {
            let _ = fs::remove_file(&staged);
            return Err(err);
        }
    };
    let layer_path = blobs.join(layer_digest.trim_start_matches("sha256:"));
    fs::rename(&staged, &layer_path).map_err(ImageError::at("write", &layer_path))?;

    let config_bytes =
        serde_json::to_vec(&config_file(config, diff_id)).map_err(|err| ImageError::Layout {
            path: layout.to_owned(),
            reason: format!("cannot encode the image config: {err}"),
        })?;
    let config_digest = write_blob(layout, &config_bytes)?;
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: descriptor(
            IMAGE_CONFIG_MEDIA_TYPE,
            config_digest,
            config_bytes.len() as u64,
        ),
        layers: vec![descriptor(
            IMAGE_LAYER_GZIP_MEDIA_TYPE,
            layer_digest,
            layer_size,
        )],
        ..OciImageManifest::default()
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|err| ImageError::Layout {
        path: layout.to_owned(),
        reason: format!("cannot encode the manifest: {err}"),
    })?;
    let manifest_digest = write_blob(layout, &manifest_bytes)?;
    tag_manifest(
        layout,
        tag,
        &manifest_digest,
        manifest_bytes.len(),
        OCI_IMAGE_MEDIA_TYPE,
    )?;
    Ok(manifest_digest)
}

fn descriptor(media_type: &str, digest: String, size: u64) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_owned(),
        digest,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    }
}

/// Writes the gzipped tar of `root` to `path`: returns its digest, its
/// size and the digest of the uncompressed tar.
fn write_layer(root: &Path, path: &Path) -> Result<(String, u64, String), ImageError> {
    let file = fs::File::create(path).map_err(ImageError::at("create", path))?;
    let gzip = GzEncoder::new(HashingWriter::new(file), Level::default());
    let mut builder = tar::Builder::new(HashingWriter::new(gzip));
    builder.follow_symlinks(false);
    append_tree(&mut builder, root, PathBuf::new())?;
    let written = |err| ImageError::at("write", path)(err);
    let tar = builder.into_inner().map_err(written)?;
    let diff_id = tar.digest();
    let compressed = tar.inner.finish().map_err(written)?;
    compressed.inner.sync_all().map_err(written)?;
    Ok((compressed.digest(), compressed.written, diff_id))
}

/// Appends what is under `root/relative`, sorted, so that a tree packs to
/// the same bytes each time.
fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    relative: PathBuf,
) -> Result<(), ImageError> {
    let dir = root.join(&relative);
    let mut entries = fs::read_dir(&dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(ImageError::at("read", &dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = relative.join(entry.file_name());
        let meta = entry.metadata().map_err(ImageError::at("read", &path))?;
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        let kind = meta.file_type();
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            builder
                .append_data(&mut header, &name, io::empty())
                .map_err(ImageError::at("pack", &path))?;
            append_tree(builder, root, name)?;
        } else if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            fs::read_link(&path)
                .and_then(|target| builder.append_link(&mut header, &name, target))
                .map_err(ImageError::at("pack", &path))?;
        } else if kind.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            fs::File::open(&path)
                .and_then(|file| builder.append_data(&mut header, &name, file))
                .map_err(ImageError::at("pack", &path))?;
        } else {
            return Err(ImageError::Pack {
                path,
                reason: "not a file, directory or symlink".to_owned(),
            });
        }
    }
    Ok(())
}
