//! OCI image layouts on disk: `oci-layout`, `index.json` (each image
//! tagged with the `org.opencontainers.image.ref.name` annotation) and
//! `blobs/sha256/<hex>`. Read for `oci:` and `oci-archive:` references and
//! by [`push_layout`](super::push_layout), written by
//! [`pack_directory`](super::pack_directory).

use std::fs;
use std::io::{self, Read as _};
use std::path::Path;

use oci_client::manifest::{ImageIndexEntry, OCI_IMAGE_INDEX_MEDIA_TYPE, OciImageIndex};

use super::ImageError;
use super::blobs::{digest_of, is_digest, temp_path};
use super::config::{MAX_JSON_BYTES, REF_NAME};

/// The `oci-layout` file's content.
const LAYOUT_VERSION: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

fn layout_error(dir: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Layout {
        path: dir.to_owned(),
        reason: reason.into(),
    }
}

/// Reads a file of at most [`MAX_JSON_BYTES`].
pub(super) fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("over {MAX_JSON_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// The layout's `index.json`; `None` if it has none yet.
pub(super) fn read_index(dir: &Path) -> Result<Option<OciImageIndex>, ImageError> {
    let path = dir.join("index.json");
    let bytes = match read_bounded(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(layout_error(dir, format!("cannot read index.json: {err}"))),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| layout_error(dir, format!("index.json: {err}")))
}

/// The manifest tagged `tag` (with no tag: the only one, else `latest`):
/// its digest and size.
pub(super) fn find_tag(dir: &Path, tag: Option<&str>) -> Result<(String, Option<u64>), ImageError> {
    let index = read_index(dir)?.ok_or_else(|| layout_error(dir, "no index.json"))?;
    let tagged = |name: &str| {
        index.manifests.iter().find(|entry| {
            entry
                .annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|n| n == name)
        })
    };
    let entry = match (tag, index.manifests.as_slice()) {
        (Some(tag), _) => {
            tagged(tag).ok_or_else(|| layout_error(dir, format!("no image tagged {tag}")))?
        }
        (None, [only]) => only,
        (None, _) => tagged("latest").ok_or_else(|| {
            layout_error(
                dir,
                format!(
                    "{} images and none tagged latest: name one with :TAG",
                    index.manifests.len()
                ),
            )
        })?,
    };
    if !is_digest(&entry.digest) {
        return Err(layout_error(
            dir,
            format!("unsupported digest {:?}", entry.digest),
        ));
    }
    Ok((entry.digest.clone(), u64::try_from(entry.size).ok()))
}

/// Unpacks the tar of a layout at `archive` into `dir`: directories and
/// regular files only, none outside `dir`.
pub(super) fn extract_archive(archive: &Path, dir: &Path) -> Result<(), ImageError> {
    let unreadable = |err: io::Error| layout_error(archive, format!("cannot unpack: {err}"));
    let file = fs::File::open(archive).map_err(ImageError::at("open", archive))?;
    fs::create_dir(dir).map_err(ImageError::at("create", dir))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            // `unpack_in` skips an entry that would leave `dir`.
            entry.unpack_in(dir).map_err(unreadable)?;
        }
    }
    Ok(())
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its digest.
pub(super) fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String, ImageError> {
    let digest = digest_of(bytes);
    let blobs = dir.join("blobs/sha256");
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    if !path.is_file() {
        let staged = temp_path(&blobs, ".blob");
        fs::write(&staged, bytes).map_err(ImageError::at("write", &staged))?;
        fs::rename(&staged, &path).map_err(ImageError::at("write", &path))?;
    }
    Ok(digest)
}

/// Tags the manifest `digest` (of `size` bytes, media type `media_type`)
/// as `tag` in the layout at `dir`, replacing any image of that tag.
pub(super) fn tag_manifest(
    dir: &Path,
    tag: &str,
    digest: &str,
    size: usize,
    media_type: &str,
) -> Result<(), ImageError> {
    let mut index = read_index(dir)?.unwrap_or(OciImageIndex {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_INDEX_MEDIA_TYPE.to_owned()),
        manifests: Vec::new(),
        artifact_type: None,
        annotations: None,
    });
    index.manifests.retain(|entry| {
        entry
            .annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
            != Some(tag)
    });
    index.manifests.push(ImageIndexEntry {
        media_type: media_type.to_owned(),
        digest: digest.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform: None,
        annotations: Some([(REF_NAME.to_owned(), tag.to_owned())].into()),
        artifact_type: None,
    });
    let bytes = serde_json::to_vec_pretty(&index)
        .map_err(|err| layout_error(dir, format!("cannot encode index.json: {err}")))?;
    for (name, content) in [
        ("index.json", bytes.as_slice()),
        ("oci-layout", LAYOUT_VERSION.as_bytes()),
    ] {
        let path = dir.join(name);
        let staged = temp_path(dir, ".index");
        fs::write(&staged, content).map_err(ImageError::at("write", &staged))?;
        fs::rename(&staged, &path).map_err(ImageError::at("write", &path))?;
    }
    Ok(())
}
