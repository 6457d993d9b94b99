//! Where an image comes from: the reference forms [`ImageStore::pull`]
//! takes ([`Source`]), and the place its blobs are fetched from
//! ([`Origin`]): a registry spoken to with `oci-client`, or an OCI image
//! layout on disk.
//!
//! A registry on a loopback address (`127.0.0.0/8`, `localhost`, `[::1]`)
//! is spoken to over plain HTTP, as Docker and containerd treat loopback
//! registries; any other over HTTPS with the system's roots.
//!
//! [`ImageStore::pull`]: super::ImageStore::pull

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncReadExt as _;

use super::ImageError;
use super::blobs::{BlobSink, hex_of};

/// The manifest media types asked of registries, images and indexes alike.
pub(super) const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a registry may leave a response without a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed image reference.
#[derive(Debug)]
pub(super) enum Source {
    /// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:HEX`.
    Registry(Reference),
    /// `oci:PATH[:TAG]`: an OCI image layout directory.
    Layout { dir: PathBuf, tag: Option<String> },
    /// `oci-archive:PATH[:TAG]`: a tar of an OCI image layout.
    Archive { file: PathBuf, tag: Option<String> },
}

impl Source {
    pub(super) fn parse(reference: &str) -> Result<Source, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = reference.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(rest);
            if path.is_empty() {
                return Err(invalid("no archive path after oci-archive:"));
            }
            return Ok(Source::Archive {
                file: PathBuf::from(path),
                tag,
            });
        }
        if let Some(rest) = reference.strip_prefix("oci:") {
            let (path, tag) = split_tag(rest);
            if path.is_empty() {
                return Err(invalid("no layout path after oci:"));
            }
            return Ok(Source::Layout {
                dir: PathBuf::from(path),
                tag,
            });
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid("contains whitespace"));
        }
        reference
            .parse::<Reference>()
            .map(Source::Registry)
            .map_err(|err| invalid(&err.to_string()))
    }
}

/// Splits `PATH[:TAG]`: a tag is what follows the last `:` when it holds no
/// `/` (so `oci:/srv/a:b/layout` is all path).
fn split_tag(rest: &str) -> (&str, Option<String>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.is_empty() && !tag.contains('/') && !path.is_empty() => {
            (path, Some(tag.to_owned()))
        }
        _ => (rest, None),
    }
}

/// Whether `registry` (`HOST[:PORT]`) names this machine.
pub(super) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => registry.split_once(':').map_or(registry, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A registry client for `reference`'s registry: plain HTTP on loopback.
pub(super) fn client_for(reference: &Reference) -> Result<Client, ImageError> {
    // reqwest is built without a crypto provider of its own: it takes the
    // process default, which is the workspace's ring (already installed
    // is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback(reference.registry()) {
        ClientProtocol::Http
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        // Indexes are resolved here, with a choice that errors clearly.
        platform_resolver: None,
        ..ClientConfig::default()
    };
    Client::try_from(config).map_err(|source| registry_error(reference, source))
}

pub(in crate::oci) fn registry_error(
    reference: &Reference,
    source: oci_client::errors::OciDistributionError,
) -> ImageError {
    ImageError::Registry {
        registry: reference.registry().to_owned(),
        source: Box::new(source),
    }
}

/// What a blob is fetched as: registries serve manifests apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Manifest,
    Blob,
}

/// Where an image's blobs come from.
pub(super) enum Origin {
    Registry {
        client: Box<Client>,
        reference: Reference,
    },
    /// An OCI image layout: blobs are files under `blobs/sha256/`.
    Layout { dir: PathBuf },
}

impl Origin {
    /// Writes the blob named `digest` (already checked to be `sha256:HEX`)
    /// into `sink`, which hashes and bounds it.
    pub(super) async fn fetch(
        &self,
        kind: Kind,
        digest: &str,
        sink: &mut BlobSink,
    ) -> Result<(), ImageError> {
        match self {
            Origin::Registry { client, reference } => match kind {
                Kind::Manifest => {
                    let by_digest = reference.clone_with_digest(digest.to_owned());
                    let (bytes, _) = client
                        .pull_manifest_raw(
                            &by_digest,
                            &RegistryAuth::Anonymous,
                            MANIFEST_MEDIA_TYPES,
                        )
                        .await
                        .map_err(|source| registry_error(reference, source))?;
                    sink.write(&bytes).await
                }
                Kind::Blob => {
                    let descriptor = OciDescriptor {
                        digest: digest.to_owned(),
                        ..OciDescriptor::default()
                    };
                    let mut stream = client
                        .pull_blob_stream(reference, &descriptor)
                        .await
                        .map_err(|source| registry_error(reference, source))?;
                    let length = stream.content_length;
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => sink.write(&chunk).await?,
                            // oci-client ends a whole body that does not
                            // hash to its digest with an error: report it
                            // as the mismatch it is.
                            Err(_) if length == Some(sink.written()) => {
                                return Ok(());
                            }
                            Err(err) => return Err(registry_error(reference, err.into())),
                        }
                    }
                    Ok(())
                }
            },
            Origin::Layout { dir } => {
                let path = dir.join("blobs/sha256").join(hex_of(digest));
                let missing = |source| ImageError::Layout {
                    path: dir.clone(),
                    reason: format!("cannot read blob {digest}: {source}"),
                };
                let mut file = tokio::fs::File::open(&path).await.map_err(missing)?;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = file.read(&mut buf).await.map_err(missing)?;
                    let Some(chunk) = buf.get(..n) else { break };
                    if chunk.is_empty() {
                        break;
                    }
                    sink.write(chunk).await?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for host in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:80",
            "LOCALHOST",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "ghcr.io",
            "docker.io",
            "localhost.evil.com",
            "[::2]:1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn references_parse_into_sources() {
        match Source::parse("oci:/srv/layout:v1").unwrap() {
            Source::Layout { dir, tag } => {
                assert_eq!(dir, PathBuf::from("/srv/layout"));
                assert_eq!(tag.as_deref(), Some("v1"));
            }
            other => panic!("{other:?}"),
        }
        match Source::parse("oci-archive:/srv/a:b/image.tar").unwrap() {
            Source::Archive { file, tag } => {
                assert_eq!(file, PathBuf::from("/srv/a:b/image.tar"));
                assert_eq!(tag, None);
            }
            other => panic!("{other:?}"),
        }
        match Source::parse("127.0.0.1:5000/web:1").unwrap() {
            Source::Registry(r) => {
                assert_eq!(r.registry(), "127.0.0.1:5000");
                assert_eq!(r.repository(), "web");
                assert_eq!(r.tag(), Some("1"));
            }
            other => panic!("{other:?}"),
        }
        let err = Source::parse("127.0.0.1:5000/Web:1").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid image reference \"127.0.0.1:5000/Web:1\""),
            "{err}"
        );
        assert!(Source::parse("oci:").is_err());
        assert!(Source::parse("a b").is_err());
    }
}
