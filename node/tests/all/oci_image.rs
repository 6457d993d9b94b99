//! The image store against a real registry (Debian's `docker-registry`
//! on a loopback port) with a real image: Debian's static busybox packed
//! into an OCI layout, pushed, pulled back, and run from its rootfs.
//!
//! Skipped, saying why, only when `/bin/busybox` (busybox-static) is
//! missing; a missing `docker-registry` fails.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_node::oci::image::{ImageConfig, ImageStore, pack_directory, push_layout};

use super::shared;

const BUSYBOX: &str = "/bin/busybox";
const REGISTRY: &str = "/usr/bin/docker-registry";

/// A `docker-registry` serving on `127.0.0.1:<port>`, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    storage: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            // It logs every 404 (a push asks for each blob first): kept
            // in a file, shown if it never comes up.
            .stderr(std::fs::File::create(storage.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY} (apt-get install docker-registry): {e}")
            });
        let registry = Registry {
            child,
            addr,
            storage,
        };
        registry.wait_until_up();
        registry
    }

    /// Polls `GET /v2/` until it answers 200.
    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = TcpStream::connect(&self.addr).and_then(|mut stream| {
                stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")?;
                let mut reply = String::new();
                stream.read_to_string(&mut reply)?;
                Ok(reply)
            });
            if answer.is_ok_and(|reply| {
                reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
            }) {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.storage.path().join("registry.log"));
                panic!("the registry at {} never answered: {log:?}", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busybox with `sh` and `httpd` links and a page to serve, packed into a
/// layout at `layout` as tag `1`; returns the manifest digest.
fn busybox_layout(root: &Path, layout: &Path, config: &ImageConfig) -> String {
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    std::fs::create_dir_all(tree.join("www")).unwrap();
    std::fs::copy(BUSYBOX, tree.join("bin/busybox")).unwrap();
    symlink("busybox", tree.join("bin/sh")).unwrap();
    symlink("busybox", tree.join("bin/httpd")).unwrap();
    std::fs::write(tree.join("www/index.html"), "<h1>berth</h1>\n").unwrap();
    pack_directory(&tree, config, layout, "1").unwrap()
}

fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(output.status.success(), "{}: {output:?}", program.display());
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn busybox_goes_through_a_registry_and_runs_from_its_rootfs() {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} is missing (apt-get install busybox-static)");
        return;
    }
    let _serial = shared().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = ImageConfig {
        entrypoint: vec!["/bin/httpd".into(), "-f".into(), "-p".into(), "8080".into()],
        cmd: vec!["-h".into(), "/www".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: Some("/www".into()),
        user: None,
        exposed_ports: vec![8080],
    };
    let layout = tmp.path().join("layout");
    let digest = busybox_layout(tmp.path(), &layout, &config);

    let registry = Registry::start();
    let reference = format!("{}/web:1", registry.addr);
    let pushed = push_layout(&layout, "1", &reference).await.unwrap();
    assert_eq!(pushed, digest);
    // Pushing again finds every blob there.
    assert_eq!(push_layout(&layout, "1", &reference).await.unwrap(), digest);

    // Two containers of the image start at once.
    let store = Arc::new(ImageStore::new(tmp.path().join("images")).unwrap());
    let pulls: Vec<_> = (0..2)
        .map(|_| {
            let (store, reference) = (Arc::clone(&store), reference.clone());
            tokio::spawn(async move { store.pull(&reference).await })
        })
        .collect();
    let mut images = Vec::new();
    for pull in pulls {
        images.push(pull.await.unwrap().unwrap());
    }
    let image = images.pop().unwrap();
    assert_eq!(images.pop().unwrap(), image);
    assert_eq!(image.digest, digest);
    assert_eq!(image.config, config);
    let by_digest = format!("{}/web@{digest}", registry.addr);
    assert_eq!(store.pull(&by_digest).await.unwrap(), image);

    let dir = tmp.path().join("containers/a");
    let rootfs = store.rootfs(&image, &dir).unwrap();
    eprintln!(
        "rootfs: {} (overlayfs: {})",
        rootfs.path().display(),
        rootfs.is_mounted()
    );
    let root = rootfs.path().to_owned();
    assert_eq!(run(&root.join("bin/busybox"), &["echo", "ok"]), "ok\n");
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        PathBuf::from("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("www/index.html")).unwrap(),
        "<h1>berth</h1>\n"
    );
    // The container's writes stay its own.
    std::fs::write(root.join("www/index.html"), "changed").unwrap();
    let other = store
        .rootfs(&image, &tmp.path().join("containers/b"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(other.path().join("www/index.html")).unwrap(),
        "<h1>berth</h1>\n"
    );
    rootfs.remove().unwrap();
    other.remove().unwrap();
    assert!(!dir.exists());

    // An unknown tag is the registry's refusal, named.
    let err = store
        .pull(&format!("{}/web:nope", registry.addr))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("registry {}", registry.addr)),
        "{err}"
    );
    drop(registry);

    // The same layout, tarred, pulls as an oci-archive.
    let archive = tmp.path().join("web.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    builder.append_dir_all(".", &layout).unwrap();
    builder.into_inner().unwrap();
    let fresh = ImageStore::new(tmp.path().join("fresh")).unwrap();
    let from_archive = fresh
        .pull(&format!("oci-archive:{}:1", archive.display()))
        .await
        .unwrap();
    assert_eq!(from_archive.digest, digest);
    let rootfs = fresh
        .rootfs(&from_archive, &tmp.path().join("containers/c"))
        .unwrap();
    assert_eq!(
        run(&rootfs.path().join("bin/busybox"), &["echo", "ok"]),
        "ok\n"
    );
    rootfs.remove().unwrap();
}

#[tokio::test]
async fn a_tag_pulled_once_still_pulls_with_its_registry_gone() {
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} is missing (apt-get install busybox-static)");
        return;
    }
    let _serial = shared().await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let digest = busybox_layout(tmp.path(), &layout, &ImageConfig::default());
    let registry = Registry::start();
    let reference = format!("{}/offline:1", registry.addr);
    push_layout(&layout, "1", &reference).await.unwrap();
    let store = ImageStore::new(tmp.path().join("images")).unwrap();
    let image = store.pull(&reference).await.unwrap();
    drop(registry);
    let again = store.pull(&reference).await.unwrap();
    assert_eq!(again, image);
    assert_eq!(again.digest, digest);
}
