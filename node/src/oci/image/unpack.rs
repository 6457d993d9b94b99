//! Unpacking one layer tarball into a directory, safely.
//!
//! A layer comes from outside and may be hostile. No entry may land
//! outside the layer directory: an entry with a `..` component is refused,
//! a leading `/` is dropped, and every entry is written through `tar`'s
//! `unpack_in`, which refuses to write through a symlink that leads out
//! (and hard links to outside targets). The uncompressed stream must hash
//! to the layer's `diff_id` from the image config.
//!
//! Deletions (OCI whiteouts, `.wh.NAME` and `.wh..wh..opq`) are stored in
//! one of two [`Whiteouts`] formats, fixed for a store when it is first
//! opened: overlayfs's own (a `0:0` character device, the
//! `trusted.overlay.opaque` xattr), so that layer directories can be
//! overlayfs lower directories as they are, where the process may create
//! those (root); otherwise the OCI files are kept as they are, and root
//! filesystems are made by copying ([`super::rootfs`] reads both).
//!
//! Limits: a layer's unpacked size is bounded only by the disk; extended
//! attributes in layers (file capabilities) are not unpacked.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use rustix::fs::{CWD, FileType, Mode, XattrFlags, makedev, mknodat};
use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::blobs::temp_path;
use super::config::Compression;

/// The xattr that makes an overlayfs directory hide what lower layers have.
pub(super) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The prefix of an OCI whiteout file's name.
pub(super) const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of an OCI opaque-directory marker.
pub(super) const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How unpacked layers record deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Whiteouts {
    /// overlayfs's format: layers can be mounted as lower directories.
    Overlay,
    /// The OCI files as they are: root filesystems are copies.
    Oci,
}

impl Whiteouts {
    /// The format recorded in `file`, or, for a new store, the one this
    /// process can make (probed under `tmp`), recorded.
    pub(super) fn load_or_probe(file: &Path, tmp: &Path) -> Result<Whiteouts, ImageError> {
        match fs::read_to_string(file) {
            Ok(text) => match text.trim() {
                "overlay" => Ok(Whiteouts::Overlay),
                "oci" => Ok(Whiteouts::Oci),
                other => Err(ImageError::Io {
                    action: "read",
                    path: file.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unknown whiteout format {other:?} (expected overlay or oci)"),
                    ),
                }),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let whiteouts = Whiteouts::probe(tmp);
                let text = match whiteouts {
                    Whiteouts::Overlay => "overlay\n",
                    Whiteouts::Oci => "oci\n",
                };
                let staged = temp_path(tmp, "whiteouts");
                fs::write(&staged, text).map_err(ImageError::at("write", &staged))?;
                fs::rename(&staged, file).map_err(ImageError::at("write", file))?;
                Ok(whiteouts)
            }
            Err(err) => Err(ImageError::at("read", file)(err)),
        }
    }

    fn probe(tmp: &Path) -> Whiteouts {
        if !rustix::process::geteuid().is_root() {
            return Whiteouts::Oci;
        }
        let dir = temp_path(tmp, "probe");
        let works = fs::create_dir(&dir).is_ok()
            && overlay_whiteout(&dir.join("gone")).is_ok()
            && rustix::fs::lsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty()).is_ok();
        let _ = fs::remove_dir_all(&dir);
        if works {
            Whiteouts::Overlay
        } else {
            Whiteouts::Oci
        }
    }
}

/// Creates an overlayfs whiteout (a `0:0` character device) at `path`.
fn overlay_whiteout(path: &Path) -> io::Result<()> {
    mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
    .map_err(io::Error::from)
}

/// Why a layer could not be unpacked; the caller names image and layer.
#[derive(Debug)]
pub(super) enum UnpackError {
    Io(io::Error),
    /// A hostile or malformed entry.
    Refused(String),
    /// The uncompressed stream hashes to this, not to the `diff_id`.
    DiffIdMismatch(String),
}

impl From<io::Error> for UnpackError {
    fn from(err: io::Error) -> Self {
        UnpackError::Io(err)
    }
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Unpacks the layer blob at `blob` into `dest` (created; the caller
/// renames it into place, or removes it on error).
pub(super) fn unpack_layer(
    blob: &Path,
    compression: Compression,
    dest: &Path,
    whiteouts: Whiteouts,
    diff_id: &str,
) -> Result<(), UnpackError> {
    let file = BufReader::new(fs::File::open(blob)?);
    let inner: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(MultiGzDecoder::new(file)),
    };
    let mut reader = HashingReader {
        inner,
        hasher: Sha256::new(),
    };
    fs::create_dir(dest)?;
    unpack_entries(&mut reader, dest, whiteouts)?;
    // The digest covers the whole stream, padding after the end included.
    io::copy(&mut reader, &mut io::sink())?;
    let actual = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
    if actual != diff_id {
        return Err(UnpackError::DiffIdMismatch(actual));
    }
    Ok(())
}

fn unpack_entries(reader: impl Read, dest: &Path, whiteouts: Whiteouts) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(rustix::process::geteuid().is_root());
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    // Directories come last, as `tar::Archive::unpack` does it: a
    // read-only directory must not stop its own entries.
    let mut directories = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let Some(relative) = inside(&path)? else {
            continue;
        };
        let name = relative.file_name().and_then(OsStr::to_str).unwrap_or("");
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name != OPAQUE_MARKER && matches!(hidden, "" | "." | "..") {
                return Err(UnpackError::Refused(format!(
                    "whiteout {} names no file",
                    path.display()
                )));
            }
            if whiteouts == Whiteouts::Overlay {
                let parent = directory_in(dest, relative.parent())?;
                if name == OPAQUE_MARKER {
                    rustix::fs::lsetxattr(&parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(io::Error::from)?;
                } else {
                    let target = parent.join(hidden);
                    remove_any(&target)?;
                    overlay_whiteout(&target)?;
                }
                continue;
            }
        }
        if kind.is_dir() {
            directories.push(entry);
        } else if !entry.unpack_in(dest)? {
            return Err(refused_path(&path));
        }
    }
    for mut directory in directories {
        directory.unpack_in(dest)?;
    }
    Ok(())
}

/// `path` relative to the layer root, or `None` for the root itself;
/// refused if it climbs out.
fn inside(path: &Path) -> Result<Option<PathBuf>, UnpackError> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(refused_path(path)),
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

fn refused_path(path: &Path) -> UnpackError {
    UnpackError::Refused(format!("entry {} leaves the layer", path.display()))
}

/// The directory `relative` under `root`, created as needed; refused if a
/// component on the way is not a directory (a symlink included).
fn directory_in(root: &Path, relative: Option<&Path>) -> Result<PathBuf, UnpackError> {
    let mut dir = root.to_path_buf();
    for component in relative.into_iter().flat_map(Path::components) {
        let Component::Normal(part) = component else {
            return Err(UnpackError::Refused(format!(
                "entry under {} leaves the layer",
                dir.display()
            )));
        };
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Refused(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir(&dir)?,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(dir)
}

/// Removes whatever is at `path` (a directory with its contents), if
/// anything; never follows a symlink.
pub(super) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}
