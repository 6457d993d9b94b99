//! Talking to registries: resolving a tag to its manifest, and
//! [`push_layout`]. Blobs are fetched by
//! [`Origin::fetch`](super::source::Origin::fetch).

use std::path::Path;

use bytes::Bytes;
use http::HeaderValue;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncReadExt as _;

use super::ImageError;
use super::blobs::{check_digest, digest_of, hex_of};
use super::config::{MAX_JSON_BYTES, Manifest, parse_manifest};
use super::layout::{find_tag, read_bounded};
use super::source::{MANIFEST_MEDIA_TYPES, Source, client_for, registry_error};

/// The size of each chunk a blob is pushed in.
const PUSH_CHUNK: usize = 1 << 20;

/// A client for `reference`'s registry, ready for anonymous access.
pub(in crate::oci) async fn anonymous_client(reference: &Reference) -> Result<Client, ImageError> {
    let client = client_for(reference)?;
    // Anonymous access still takes a token from some registries (Docker
    // Hub); the client asks for one only for registries it has auth for.
    client
        .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
        .await;
    Ok(client)
}

/// The manifest the registry serves for `reference` (a tag): its bytes.
pub(super) async fn fetch_tag(
    client: &Client,
    reference: &Reference,
    image: &str,
) -> Result<Bytes, ImageError> {
    let (bytes, _) = client
        .pull_manifest_raw(reference, &RegistryAuth::Anonymous, MANIFEST_MEDIA_TYPES)
        .await
        .map_err(|source| registry_error(reference, source))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(ImageError::Invalid {
            image: image.to_owned(),
            object: "manifest".to_owned(),
            reason: format!("over {MAX_JSON_BYTES} bytes"),
        });
    }
    Ok(bytes)
}

/// Whether `err` is the registry being out of reach (rather than refusing).
pub(super) fn is_unreachable(err: &ImageError) -> bool {
    match err {
        ImageError::Registry { source, .. } => match source.as_ref() {
            OciDistributionError::RequestError(err) => err.is_connect() || err.is_timeout(),
            OciDistributionError::IoError(_) => true,
            _ => false,
        },
        _ => false,
    }
}

/// Pushes the image tagged `tag` in the OCI image layout at `layout` to
/// `reference` (`REGISTRY/REPO:TAG`; plain HTTP to a loopback registry),
/// skipping the blobs the registry has; returns the manifest digest.
pub async fn push_layout(layout: &Path, tag: &str, reference: &str) -> Result<String, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    let target = match Source::parse(reference)? {
        Source::Registry(target) if target.digest().is_none() => target,
        Source::Registry(_) => return Err(invalid("a push names a tag, not a digest")),
        _ => return Err(invalid("a push goes to REGISTRY/REPO:TAG")),
    };
    let (digest, _) = find_tag(layout, Some(tag))?;
    let blobs = layout.join("blobs/sha256");
    let manifest_path = blobs.join(hex_of(&digest));
    let manifest_bytes =
        read_bounded(&manifest_path).map_err(ImageError::at("read", &manifest_path))?;
    let object = format!("manifest {digest}");
    let actual = digest_of(&manifest_bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            image: reference.to_owned(),
            object,
            actual,
        });
    }
    let manifest = match parse_manifest(reference, &object, &manifest_bytes)? {
        Manifest::Image(manifest) => *manifest,
        Manifest::Index(_) => {
            return Err(ImageError::Invalid {
                image: reference.to_owned(),
                object,
                reason: "pushing an image index is not supported".to_owned(),
            });
        }
    };
    let client = anonymous_client(&target).await?;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        check_digest(reference, "blob", &blob.digest)?;
        let exists = client
            .blob_exists(&target, &blob.digest)
            .await
            .map_err(|source| registry_error(&target, source))?;
        if !exists {
            push_blob(
                &client,
                &target,
                &blobs.join(hex_of(&blob.digest)),
                &blob.digest,
            )
            .await?;
        }
    }
    let content_type = manifest
        .media_type
        .as_deref()
        .unwrap_or(OCI_IMAGE_MEDIA_TYPE);
    let content_type = HeaderValue::from_str(content_type).map_err(|_| ImageError::Invalid {
        image: reference.to_owned(),
        object: format!("manifest {digest}"),
        reason: format!("media type {content_type:?} is not a header value"),
    })?;
    client
        .push_manifest_raw(&target, manifest_bytes, content_type)
        .await
        .map_err(|source| registry_error(&target, source))?;
    Ok(digest)
}

/// Streams the blob file at `path` to the registry in chunks.
async fn push_blob(
    client: &Client,
    target: &Reference,
    path: &Path,
    digest: &str,
) -> Result<(), ImageError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(ImageError::at("open", path))?;
    let size = file
        .metadata()
        .await
        .map_err(ImageError::at("read", path))?
        .len();
    let chunks = futures::stream::try_unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; PUSH_CHUNK];
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok::<_, OciDistributionError>(Some((Bytes::from(chunk), file)))
    });
    client
        .push_blob_stream(target, chunks, digest, Some(size))
        .await
        .map_err(|source| registry_error(target, source))?;
    Ok(())
}
