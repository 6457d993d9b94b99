//! A container's root filesystem, made from an image's unpacked layers.
//!
//! Under the container's `dir`: `rootfs/` is the root (what goes in
//! `config.json`'s `root.path`). Where the kernel allows it, `rootfs/` is
//! an overlayfs mount of the layer directories (read-only lower
//! directories, shared by every container of the image) with `upper/` and
//! `work/` of its own beside it. Otherwise (not root, overlayfs missing,
//! `dir` on a filesystem overlayfs cannot write to, such as overlayfs
//! itself, or too many layers for one mount) `rootfs/` is a copy of the
//! layers applied in order, whiteouts deleting what lower layers had.
//!
//! The copy never follows a symlink: it walks the target tree itself and
//! replaces whatever is not a directory where a layer has one. A process
//! of the node writing into a mounted `rootfs/` must not follow the
//! image's symlinks either: they are the container's, not the host's.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, FileTimes};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, mknodat};
use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};
use tracing::debug;

use super::ImageError;
use super::unpack::{OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX, Whiteouts, remove_any};

/// The root filesystem's directory under a container's `dir`.
const ROOTFS: &str = "rootfs";
/// overlayfs's upper and work directories under a container's `dir`.
const UPPER: &str = "upper";
const WORK: &str = "work";
/// The longest mount data the kernel takes (one page, with its NUL).
const MAX_MOUNT_DATA: usize = 4095;
/// The most mounts stacked on one `rootfs/` that removal unmounts.
const MAX_STACKED_MOUNTS: usize = 8;

/// One container's root filesystem; see the module docs.
#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    path: PathBuf,
    mounted: bool,
}

impl Rootfs {
    /// The root directory: `config.json`'s `root.path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is an overlayfs mount (rather than a copy).
    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Unmounts (if mounted) and removes the whole `dir`.
    pub fn remove(self) -> Result<(), ImageError> {
        remove_rootfs_dir(&self.dir)
    }
}

/// Unmounts and removes a container's rootfs `dir`, such as one left by a
/// node that crashed; a missing `dir` is fine.
pub fn remove_rootfs_dir(dir: &Path) -> Result<(), ImageError> {
    let rootfs = dir.join(ROOTFS);
    unmount_all(dir, &rootfs)?;
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(ImageError::at("remove", dir)(err))
        }
        _ => Ok(()),
    }
}

/// Unmounts whatever is mounted on `rootfs`: something is while it is on
/// another device than its parent `dir`.
fn unmount_all(dir: &Path, rootfs: &Path) -> Result<(), ImageError> {
    for _ in 0..MAX_STACKED_MOUNTS {
        let (Ok(parent), Ok(root)) = (fs::metadata(dir), fs::symlink_metadata(rootfs)) else {
            return Ok(());
        };
        if parent.dev() == root.dev() {
            return Ok(());
        }
        // Lazily: a process still inside keeps its view, and the
        // directory is free for removal at once.
        unmount(rootfs, UnmountFlags::DETACH)
            .map_err(|err| ImageError::at("unmount", rootfs)(err.into()))?;
    }
    Ok(())
}

/// Makes the root filesystem at `dir`: overlayfs if `overlay` allows it
/// and the kernel agrees, else a copy.
pub(super) fn create(
    layers: &[PathBuf],
    whiteouts: Whiteouts,
    dir: &Path,
    overlay: bool,
) -> Result<Rootfs, ImageError> {
    fs::create_dir_all(dir).map_err(ImageError::at("create", dir))?;
    let path = dir.join(ROOTFS);
    fs::create_dir(&path).map_err(ImageError::at("create", &path))?;
    if overlay && whiteouts == Whiteouts::Overlay && !layers.is_empty() {
        match mount_overlay(layers, dir, &path) {
            Ok(()) => {
                return Ok(Rootfs {
                    dir: dir.to_owned(),
                    path,
                    mounted: true,
                });
            }
            Err(reason) => {
                debug!(dir = %dir.display(), %reason, "no overlayfs here: copying the layers");
                for made in [UPPER, WORK] {
                    let _ = fs::remove_dir_all(dir.join(made));
                }
            }
        }
    }
    let copied = copy_layers(layers, &path);
    if let Err(err) = copied {
        let _ = fs::remove_dir_all(&path);
        return Err(ImageError::at("copy image layers into", &path)(err));
    }
    Ok(Rootfs {
        dir: dir.to_owned(),
        path,
        mounted: false,
    })
}

/// Mounts overlayfs on `target`, or says why not.
fn mount_overlay(layers: &[PathBuf], dir: &Path, target: &Path) -> Result<(), String> {
    let upper = dir.join(UPPER);
    let work = dir.join(WORK);
    for made in [&upper, &work] {
        fs::create_dir(made).map_err(|err| format!("cannot create {}: {err}", made.display()))?;
    }
    // overlayfs takes the topmost lower directory first.
    let mut lower = Vec::new();
    for layer in layers.iter().rev() {
        lower.push(option_path(layer)?);
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        option_path(&upper)?,
        option_path(&work)?
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(format!(
            "{} layers make mount options over a page",
            layers.len()
        ));
    }
    let data = CString::new(data).map_err(|_| "a path holds a NUL".to_owned())?;
    mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|err| format!("mount: {err}"))
}

/// `path` as overlayfs mount data takes it: UTF-8 without its separators.
fn option_path(path: &Path) -> Result<&str, String> {
    path.to_str()
        .filter(|s| !s.contains([',', ':', '\\']))
        .ok_or_else(|| format!("{} cannot be written in mount options", path.display()))
}

/// Applies each layer in order onto `target`.
fn copy_layers(layers: &[PathBuf], target: &Path) -> io::Result<()> {
    let owners = rustix::process::geteuid().is_root();
    for layer in layers {
        apply_dir(layer, target, owners, &mut HashMap::new())?;
    }
    Ok(())
}

/// Whether `meta` is an overlayfs whiteout.
fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let mut value = [0u8; 1];
    rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut value[..]).is_ok_and(|n| n == 1) && value == *b"y"
}

/// The name an OCI whiteout hides, if `name` is one (markers excluded).
fn hidden_name(name: &OsStr) -> Option<&OsStr> {
    let hidden = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    (name.as_bytes() != OPAQUE_MARKER.as_bytes() && !matches!(hidden, b"" | b"." | b".."))
        .then(|| OsStr::from_bytes(hidden))
}

/// Merges the layer directory `src` into `dst`, a real directory.
/// `links` maps a hard-linked source inode to its first copy.
fn apply_dir(
    src: &Path,
    dst: &Path,
    owners: bool,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut entries = fs::read_dir(src)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    // What lower layers had goes first: all of it for an opaque
    // directory, then each whited-out name.
    let marker = entries.iter().any(|e| e.file_name() == OPAQUE_MARKER);
    if marker || is_opaque(src) {
        for entry in fs::read_dir(dst)? {
            remove_any(&entry?.path())?;
        }
    }
    let mut contents = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let meta = entry.metadata()?;
        if let Some(hidden) = hidden_name(&name) {
            remove_any(&dst.join(hidden))?;
        } else if is_whiteout(&meta) {
            remove_any(&dst.join(&name))?;
        } else if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // A marker, or a whiteout naming nothing: not content.
        } else {
            contents.push((entry.path(), dst.join(&name), meta));
        }
    }
    for (from, to, meta) in contents {
        let kind = meta.file_type();
        if kind.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(existing) if existing.is_dir() => {}
                Ok(_) => {
                    remove_any(&to)?;
                    fs::create_dir(&to)?;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => fs::create_dir(&to)?,
                Err(err) => return Err(err),
            }
            apply_dir(&from, &to, owners, links)?;
            if owners {
                std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            }
            fs::set_permissions(&to, meta.permissions())?;
            continue;
        }
        remove_any(&to)?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
            if owners {
                std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            }
        } else if kind.is_file() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key).filter(|_| meta.nlink() > 1)
                && fs::hard_link(first, &to).is_ok()
            {
                continue;
            }
            copy_file(&from, &to, &meta, owners)?;
            if meta.nlink() > 1 {
                links.insert(key, to);
            }
        } else if let Some(file_type) = special_type(&meta) {
            let mode = Mode::from_raw_mode(meta.permissions().mode() & 0o7777);
            mknodat(CWD, &to, file_type, mode, meta.rdev()).map_err(io::Error::from)?;
            if owners {
                std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            }
        }
        // Sockets are not content: they are skipped.
    }
    Ok(())
}

fn special_type(meta: &fs::Metadata) -> Option<FileType> {
    let kind = meta.file_type();
    if kind.is_char_device() {
        Some(FileType::CharacterDevice)
    } else if kind.is_block_device() {
        Some(FileType::BlockDevice)
    } else if kind.is_fifo() {
        Some(FileType::Fifo)
    } else {
        None
    }
}

/// Copies a regular file with its mode, owner and modification time.
fn copy_file(from: &Path, to: &Path, meta: &fs::Metadata, owners: bool) -> io::Result<()> {
    let mut source = fs::File::open(from)?;
    let mut copy = fs::File::options().write(true).create_new(true).open(to)?;
    io::copy(&mut source, &mut copy)?;
    copy.set_times(FileTimes::new().set_modified(meta.modified()?))?;
    // Owner before mode: a change of owner clears set-user-ID bits.
    if owners {
        std::os::unix::fs::fchown(&copy, Some(meta.uid()), Some(meta.gid()))?;
    }
    copy.set_permissions(meta.permissions())
}
