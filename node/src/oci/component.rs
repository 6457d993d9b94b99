//! Components in OCI registries, in the Wasm OCI artifact format that
//! `wkg`, wasmCloud and Spin use: an image manifest whose config has the
//! media type `application/vnd.wasm.config.v0+json` and whose one layer,
//! `application/wasm`, is the component's bytes (so the layer digest is
//! the component's own `sha256:` digest).
//!
//! A manifest names such a component `oci://REGISTRY/REPO:TAG` or
//! `oci://REGISTRY/REPO@sha256:...`. [`resolve`] turns a tag into its
//! manifest digest (at apply, so a moved tag never changes running
//! instances), [`pull`] fetches a component by reference and checks every
//! digest on the way, and [`push`] publishes one (`berth push`). The
//! registry client is the container images' one
//! ([`super::image`]): anonymous, plain HTTP on loopback, HTTPS elsewhere.

use futures::StreamExt as _;
use http::HeaderValue;
use oci_client::Reference;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::image::{ImageError, anonymous_client, registry_error};

/// How a manifest names a component in a registry.
pub const SCHEME: &str = "oci://";
/// The media type of a Wasm artifact's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of a Wasm artifact's layer: the component itself.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The largest component pulled, as large as an uploaded one may be.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// The largest manifest read.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Whether `component` names a component in a registry (`oci://...`).
pub fn is_oci(component: &str) -> bool {
    component.starts_with(SCHEME)
}

/// A component pulled from a registry.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference by digest: `oci://REGISTRY/REPO@sha256:...`.
    pub reference: String,
    /// The component's bytes, checked against the layer digest.
    pub bytes: Vec<u8>,
}

/// Parses `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:...`.
/// The registry must be named: a bare `REPO:TAG` would silently mean
/// Docker Hub.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = reference.strip_prefix(SCHEME).ok_or_else(|| {
        invalid("expected oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:...")
    })?;
    let (host, _) = rest
        .split_once('/')
        .ok_or_else(|| invalid("expected oci://REGISTRY/REPO:TAG"))?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(invalid(
            "the first path part must name a registry (HOST[:PORT])",
        ));
    }
    let parsed: Reference = rest
        .parse()
        .map_err(|e: oci_client::ParseError| invalid(&e.to_string()))?;
    if parsed.tag().is_none() && parsed.digest().is_none() {
        return Err(invalid("give a tag (:TAG) or a digest (@sha256:...)"));
    }
    Ok(parsed)
}

/// `oci://` and the registry and repository of `reference`, at `digest`.
fn by_digest(reference: &Reference, digest: &str) -> String {
    format!(
        "{SCHEME}{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn invalid(image: &str, object: &str, reason: impl Into<String>) -> ImageError {
    ImageError::Invalid {
        image: image.to_owned(),
        object: object.to_owned(),
        reason: reason.into(),
    }
}

/// The Wasm artifact manifest at `reference`, checked against the digest
/// when the reference names one; the manifest's digest and its one layer.
async fn manifest(
    client: &oci_client::Client,
    reference: &Reference,
    name: &str,
) -> Result<(String, OciDescriptor), ImageError> {
    let (bytes, served) = client
        .pull_manifest_raw(reference, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|source| registry_error(reference, source))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(
            name,
            "manifest",
            format!("over {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    let digest = sha256(&bytes);
    let expected = reference.digest().unwrap_or(&served);
    if digest != expected {
        return Err(ImageError::DigestMismatch {
            image: name.to_owned(),
            object: format!("manifest {expected}"),
            actual: digest,
        });
    }
    let object = format!("manifest {digest}");
    let manifest: OciImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| invalid(name, &object, e.to_string()))?;
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(invalid(
            name,
            &object,
            format!(
                "not a Wasm component artifact: config media type is {:?}, expected {CONFIG_MEDIA_TYPE:?}",
                manifest.config.media_type
            ),
        ));
    }
    let mut layers = manifest.layers.into_iter();
    match (layers.next(), layers.next()) {
        (Some(layer), None) if layer.media_type == LAYER_MEDIA_TYPE => Ok((digest, layer)),
        _ => Err(invalid(
            name,
            &object,
            format!("a Wasm component artifact has exactly one {LAYER_MEDIA_TYPE} layer"),
        )),
    }
}

/// Resolves `reference` (a tag or a digest) to `oci://REGISTRY/REPO@sha256:...`,
/// checking that the registry holds a Wasm component artifact there.
pub async fn resolve(reference: &str) -> Result<String, ImageError> {
    let parsed = parse(reference)?;
    let client = anonymous_client(&parsed).await?;
    let (digest, _) = manifest(&client, &parsed, reference).await?;
    Ok(by_digest(&parsed, &digest))
}

/// Pulls the component at `reference`; every digest is checked, and the
/// layer may be at most [`MAX_COMPONENT_BYTES`].
pub async fn pull(reference: &str) -> Result<Pulled, ImageError> {
    let parsed = parse(reference)?;
    let client = anonymous_client(&parsed).await?;
    let (digest, layer) = manifest(&client, &parsed, reference).await?;
    let object = format!("layer {}", layer.digest);
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > MAX_COMPONENT_BYTES {
        return Err(invalid(
            reference,
            &object,
            format!(
                "{} bytes is over the {MAX_COMPONENT_BYTES} byte limit",
                layer.size
            ),
        ));
    }
    let mut stream = client
        .pull_blob_stream(&parsed, &layer)
        .await
        .map_err(|source| registry_error(&parsed, source))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| invalid(reference, &object, e.to_string()))?;
        if (bytes.len() + chunk.len()) as u64 > size {
            return Err(invalid(
                reference,
                &object,
                "longer than its descriptor says",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = sha256(&bytes);
    if actual != layer.digest {
        return Err(ImageError::DigestMismatch {
            image: reference.to_owned(),
            object,
            actual,
        });
    }
    Ok(Pulled {
        reference: by_digest(&parsed, &digest),
        bytes,
    })
}

/// The config of a Wasm component artifact.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
}

/// Pushes the component `bytes` to `reference` (`oci://REGISTRY/REPO:TAG`)
/// as a Wasm component artifact; its reference by digest. The caller checks
/// that `bytes` are a component.
pub async fn push(bytes: Vec<u8>, reference: &str) -> Result<String, ImageError> {
    let parsed = parse(reference)?;
    if parsed.digest().is_some() {
        return Err(ImageError::InvalidReference {
            reference: reference.to_owned(),
            reason: "a push names a tag, not a digest".to_owned(),
        });
    }
    let client = anonymous_client(&parsed).await?;
    let layer_digest = sha256(&bytes);
    let config = WasmConfig {
        created: jiff::Timestamp::now().to_string(),
        architecture: "wasm",
        os: "wasip2",
        layer_digests: vec![layer_digest.clone()],
    };
    let config =
        serde_json::to_vec(&config).map_err(|e| invalid(reference, "config", e.to_string()))?;
    let descriptor = |media_type: &str, digest: String, size: usize| OciDescriptor {
        media_type: media_type.to_owned(),
        digest,
        size: i64::try_from(size).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        artifact_type: None,
    };
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: descriptor(CONFIG_MEDIA_TYPE, sha256(&config), config.len()),
        layers: vec![descriptor(
            LAYER_MEDIA_TYPE,
            layer_digest.clone(),
            bytes.len(),
        )],
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    for (blob, digest) in [
        (config.clone(), manifest.config.digest.clone()),
        (bytes, layer_digest),
    ] {
        let exists = client
            .blob_exists(&parsed, &digest)
            .await
            .map_err(|source| registry_error(&parsed, source))?;
        if !exists {
            client
                .push_blob(&parsed, blob, &digest)
                .await
                .map_err(|source| registry_error(&parsed, source))?;
        }
    }
    let manifest =
        serde_json::to_vec(&manifest).map_err(|e| invalid(reference, "manifest", e.to_string()))?;
    let digest = sha256(&manifest);
    client
        .push_manifest_raw(
            &parsed,
            manifest,
            HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(|source| registry_error(&parsed, source))?;
    Ok(by_digest(&parsed, &digest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_tag_or_digest() {
        let tag = parse("oci://127.0.0.1:5000/hello:v1").unwrap();
        assert_eq!(tag.registry(), "127.0.0.1:5000");
        assert_eq!(tag.repository(), "hello");
        assert_eq!(tag.tag(), Some("v1"));
        let hex = "a".repeat(64);
        let pinned = parse(&format!("oci://ghcr.io/org/hello@sha256:{hex}")).unwrap();
        assert_eq!(pinned.digest(), Some(format!("sha256:{hex}").as_str()));
        assert_eq!(
            by_digest(&tag, "sha256:00"),
            "oci://127.0.0.1:5000/hello@sha256:00"
        );
        for bad in [
            "hello:v1",
            "oci://hello:v1",
            "oci://hello/world:v1",
            "oci://127.0.0.1:5000/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
