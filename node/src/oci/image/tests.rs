//! Tests of the store as a whole, on OCI image layouts made here: the
//! registry path is in `node/tests/all/oci_image.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_client::manifest::{IMAGE_LAYER_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor};
use tempfile::TempDir;

use super::blobs::digest_of;
use super::config::config_file;
use super::layout::{tag_manifest, write_blob};
use super::*;

/// One entry of a hand-made layer tarball.
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

/// A tar of `entries`, names written as given (`..` included).
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (name, data, kind, mode): (&str, &[u8], _, u32) = match entry {
            Entry::File(name, data, mode) => (name, data, tar::EntryType::Regular, *mode),
            Entry::Dir(name) => (name, &[], tar::EntryType::Directory, 0o755),
            Entry::Symlink(name, target) => {
                header.set_link_name(target).unwrap();
                (name, &[], tar::EntryType::Symlink, 0o777)
            }
            Entry::HardLink(name, target) => {
                header.set_link_name(target).unwrap();
                (name, &[], tar::EntryType::Link, 0o644)
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A layout at `dir` holding one image of uncompressed `layers`, tagged
/// `t`.
fn layout_of(dir: &Path, layers: &[Vec<u8>]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let mut descriptors = Vec::new();
    for layer in layers {
        descriptors.push(OciDescriptor {
            media_type: IMAGE_LAYER_MEDIA_TYPE.to_owned(),
            digest: write_blob(dir, layer).unwrap(),
            size: layer.len() as i64,
            ..OciDescriptor::default()
        });
    }
    let mut config = config_file(&ImageConfig::default(), String::new());
    config.rootfs.diff_ids = layers.iter().map(|l| digest_of(l)).collect();
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: OciDescriptor {
            digest: write_blob(dir, &config).unwrap(),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: descriptors,
        ..OciImageManifest::default()
    };
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = write_blob(dir, &manifest).unwrap();
    tag_manifest(dir, "t", &digest, manifest.len(), OCI_IMAGE_MEDIA_TYPE).unwrap();
}

fn store(tmp: &TempDir) -> ImageStore {
    ImageStore::new(tmp.path().join("images")).unwrap()
}

fn reference(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// Type, mode, owner, content or target of everything under `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in fs::read_dir(root.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let name = relative.join(entry.file_name());
            let meta = entry.metadata().unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_dir() {
                pending.push(name.clone());
                format!("dir {mode:o}")
            } else if meta.is_symlink() {
                format!("symlink {}", fs::read_link(entry.path()).unwrap().display())
            } else {
                let content =
                    String::from_utf8_lossy(&fs::read(entry.path()).unwrap()).into_owned();
                format!("file {mode:o} {content:?}")
            };
            found.insert(name, what);
        }
    }
    found
}

/// Both kinds of rootfs this store can make of `image`, when it can.
fn rootfses(store: &ImageStore, image: &Image, parent: &Path) -> Vec<Rootfs> {
    let copy = rootfs::create(&image.layers, store.whiteouts, &parent.join("copy"), false).unwrap();
    assert!(!copy.is_mounted());
    let mut made = vec![copy];
    let overlay = store.rootfs(image, &parent.join("overlay")).unwrap();
    if overlay.is_mounted() {
        made.push(overlay);
    } else {
        eprintln!(
            "no overlayfs rootfs ({:?} whiteouts): only the copy is checked",
            store.whiteouts
        );
        overlay.remove().unwrap();
    }
    made
}

#[tokio::test]
async fn packed_directories_pull_back_with_modes_and_symlinks() {
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("secret"), b"s").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(src.join("empty"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("tool", src.join("bin/sh")).unwrap();
    symlink("/etc/passwd", src.join("absolute")).unwrap();
    let config = ImageConfig {
        entrypoint: vec!["/bin/tool".into()],
        cmd: vec!["x".into()],
        env: vec!["A=1".into()],
        working_dir: Some("/bin".into()),
        user: Some("1000:1000".into()),
        exposed_ports: vec![80, 8080],
    };
    let layout = tmp.path().join("layout");
    let digest = pack_directory(&src, &config, &layout, "v1").unwrap();
    let store = store(&tmp);
    let image = store.pull(&reference(&layout, "v1")).await.unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.config, config);
    assert_eq!(image.layers.len(), 1);
    for rootfs in rootfses(&store, &image, &tmp.path().join("containers")) {
        assert_eq!(tree(rootfs.path()), tree(&src), "{rootfs:?}");
        let dir = rootfs.path().parent().unwrap().to_owned();
        rootfs.remove().unwrap();
        assert!(!dir.exists());
    }
    // A second pull needs nothing from the layout but its manifest.
    let layer = image.layers[0].file_name().unwrap().to_owned();
    fs::remove_file(layout.join("blobs/sha256").join(layer)).unwrap();
    assert_eq!(store.pull(&reference(&layout, "v1")).await.unwrap(), image);
}

#[tokio::test]
async fn archives_of_layouts_pull_too() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    layout_of(&layout, &[tar_of(&[Entry::File("hello", b"hi", 0o644)])]);
    let archive = tmp.path().join("image.tar");
    let mut builder = tar::Builder::new(fs::File::create(&archive).unwrap());
    builder.append_dir_all(".", &layout).unwrap();
    builder.into_inner().unwrap();
    let store = store(&tmp);
    let image = store
        .pull(&format!("oci-archive:{}", archive.display()))
        .await
        .unwrap();
    assert_eq!(fs::read(image.layers[0].join("hello")).unwrap(), b"hi");
    assert_eq!(
        fs::read_dir(tmp.path().join("images/tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_refused() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let layer = tar_of(&[Entry::File("a", b"good", 0o644)]);
    layout_of(&layout, std::slice::from_ref(&layer));
    let blob = layout
        .join("blobs/sha256")
        .join(&digest_of(&layer)["sha256:".len()..]);
    let tampered = tar_of(&[Entry::File("a", b"evil", 0o644)]);
    fs::write(&blob, &tampered).unwrap();
    let store = store(&tmp);
    let err = store.pull(&reference(&layout, "t")).await.unwrap_err();
    let expected = format!(
        "image {}: layer {}: digest mismatch (got {})",
        reference(&layout, "t"),
        digest_of(&layer),
        digest_of(&tampered)
    );
    assert_eq!(err.to_string(), expected);
    let images = tmp.path().join("images");
    assert_eq!(
        fs::read_dir(images.join("layers/sha256")).unwrap().count(),
        0
    );
    assert_eq!(fs::read_dir(images.join("tmp")).unwrap().count(), 0);
    assert!(
        !images
            .join("blobs/sha256")
            .join(&digest_of(&layer)[7..])
            .exists()
    );
}

#[tokio::test]
async fn entries_leaving_the_layer_are_refused() {
    let tmp = TempDir::new().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let outside_file = outside.join("file");
    let hostile = [
        (
            tar_of(&[Entry::File("../../../../escaped", b"x", 0o644)]),
            "entry ../../../../escaped leaves the layer",
        ),
        (
            tar_of(&[
                Entry::Symlink("out", outside.to_str().unwrap()),
                Entry::File("out/escaped", b"x", 0o644),
            ]),
            "outside of destination path",
        ),
        (
            tar_of(&[
                Entry::Symlink("up", ".."),
                Entry::File("up/escaped", b"x", 0o644),
            ]),
            "outside of destination path",
        ),
        (
            tar_of(&[Entry::HardLink("linked", outside_file.to_str().unwrap())]),
            "outside of destination path",
        ),
        (
            tar_of(&[Entry::File("a/.wh...", b"", 0o644)]),
            "whiteout a/.wh... names no file",
        ),
    ];
    fs::write(&outside_file, b"host").unwrap();
    for (n, (layer, why)) in hostile.into_iter().enumerate() {
        let layout = tmp.path().join(format!("layout{n}"));
        layout_of(&layout, &[layer]);
        let store = store(&tmp);
        let err = store.pull(&reference(&layout, "t")).await.unwrap_err();
        assert!(
            matches!(err, ImageError::Invalid { .. } | ImageError::Unpack { .. }),
            "{n}: {err}"
        );
        assert!(format!("{err:?}").contains(why), "{n}: {err:?}");
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"], "{n}");
        assert_eq!(fs::read(&outside_file).unwrap(), b"host");
        let images = tmp.path().join("images");
        assert_eq!(
            fs::read_dir(images.join("layers/sha256")).unwrap().count(),
            0
        );
    }
    let layout = tmp.path().join("layout-dotdot");
    layout_of(&layout, &[tar_of(&[Entry::File("a/../../x", b"x", 0o644)])]);
    let err = store(&tmp)
        .pull(&reference(&layout, "t"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with(": entry a/../../x leaves the layer"),
        "{err}"
    );
}

#[tokio::test]
async fn whiteouts_delete_what_lower_layers_have() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let base = tar_of(&[
        Entry::Dir("a"),
        Entry::File("a/keep", b"k", 0o644),
        Entry::File("a/gone", b"g", 0o644),
        Entry::Dir("opaque"),
        Entry::File("opaque/old", b"o", 0o644),
        Entry::Symlink("link", "/etc"),
    ]);
    let top = tar_of(&[
        Entry::File("a/.wh.gone", b"", 0o644),
        Entry::File("opaque/.wh..wh..opq", b"", 0o644),
        Entry::File("opaque/new", b"n", 0o644),
        // A directory where a lower layer has a symlink replaces it.
        Entry::File("link/inside", b"i", 0o644),
    ]);
    layout_of(&layout, &[base, top]);
    let expected: Vec<PathBuf> = ["a", "a/keep", "link", "link/inside", "opaque", "opaque/new"]
        .iter()
        .map(PathBuf::from)
        .collect();
    // This store's own format, then OCI's (kept as files, copied).
    let mut store = store(&tmp);
    for whiteouts in [store.whiteouts, Whiteouts::Oci] {
        store.whiteouts = whiteouts;
        let image = store.pull(&reference(&layout, "t")).await.unwrap();
        for rootfs in rootfses(&store, &image, &tmp.path().join(format!("{whiteouts:?}"))) {
            let found: Vec<PathBuf> = tree(rootfs.path()).into_keys().collect();
            assert_eq!(found, expected, "{whiteouts:?} {rootfs:?}");
            assert!(!Path::new("/etc/inside").exists());
            rootfs.remove().unwrap();
        }
        // The next format unpacks afresh.
        fs::remove_dir_all(tmp.path().join("images/layers/sha256")).unwrap();
        fs::create_dir(tmp.path().join("images/layers/sha256")).unwrap();
    }
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_its_layers() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    layout_of(
        &layout,
        &[
            tar_of(&[Entry::File("big", &big, 0o644)]),
            tar_of(&[Entry::File("small", b"s", 0o644)]),
        ],
    );
    let store = Arc::new(store(&tmp));
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let reference = reference(&layout, "t");
            tokio::spawn(async move { store.pull(&reference).await })
        })
        .collect();
    let mut images = Vec::new();
    for pull in pulls {
        images.push(pull.await.unwrap().unwrap());
    }
    assert!(images.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fs::read(images[0].layers[0].join("big")).unwrap(), big);
    let images_dir = tmp.path().join("images");
    assert_eq!(
        fs::read_dir(images_dir.join("layers/sha256"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(fs::read_dir(images_dir.join("tmp")).unwrap().count(), 0);
}

#[test]
fn removing_a_missing_rootfs_dir_is_fine() {
    let tmp = TempDir::new().unwrap();
    remove_rootfs_dir(&tmp.path().join("never")).unwrap();
}

/// An overlayfs mount made by a test, unmounted on drop.
struct TestMount(PathBuf);

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[tokio::test]
async fn where_overlayfs_cannot_write_the_layers_are_copied() {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    layout_of(&layout, &[tar_of(&[Entry::File("hello", b"hi", 0o644)])]);
    let store = store(&tmp);
    let image = store.pull(&reference(&layout, "t")).await.unwrap();
    // overlayfs cannot take an upper directory on overlayfs.
    let (lower, upper, work, merged) = ["l", "u", "w", "m"].map(|d| tmp.path().join(d)).into();
    for dir in [&lower, &upper, &work, &merged] {
        fs::create_dir(dir).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(data).unwrap();
    let flags = rustix::mount::MountFlags::empty();
    if let Err(err) = rustix::mount::mount("overlay", &merged, "overlay", flags, data.as_c_str()) {
        eprintln!("skipping: cannot mount overlayfs here: {err}");
        return;
    }
    let _mounted = TestMount(merged.clone());
    let rootfs = store.rootfs(&image, &merged.join("container")).unwrap();
    assert!(!rootfs.is_mounted());
    assert_eq!(fs::read(rootfs.path().join("hello")).unwrap(), b"hi");
    assert_eq!(fs::read_dir(merged.join("container")).unwrap().count(), 1);
    rootfs.remove().unwrap();
    assert!(!merged.join("container").exists());
}
