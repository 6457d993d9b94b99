//! The JSON documents of an image: manifests and indexes (OCI and Docker
//! v2, as `oci-client` types), the choice of a platform in an index, layer
//! media types, and the image config, read tolerantly into
//! [`ImageConfig`] and written by [`pack_directory`](super::pack_directory).

use std::collections::BTreeMap;

use oci_client::manifest::{ImageIndexEntry, OciImageIndex, OciImageManifest};
use serde::{Deserialize, Serialize};

use super::{ImageConfig, ImageError};

/// The most bytes a manifest, an index or a config may have (containerd's
/// limit for manifests; configs with long histories stay well under it).
pub(super) const MAX_JSON_BYTES: u64 = 4 << 20;

/// `org.opencontainers.image.ref.name`: a manifest's tag in a layout's
/// `index.json`.
pub(super) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A manifest document: one image, or an index of per-platform images.
#[derive(Debug)]
pub(super) enum Manifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
}

/// Parses a manifest or index, telling them apart by `mediaType` where
/// given and by shape otherwise (OCI allows omitting it).
pub(super) fn parse_manifest(
    image: &str,
    object: &str,
    bytes: &[u8],
) -> Result<Manifest, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let invalid = |reason: String| ImageError::Invalid {
        image: image.to_owned(),
        object: object.to_owned(),
        reason,
    };
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|err| invalid(format!("not a manifest: {err}")))?;
    match probe.schema_version {
        Some(2) => {}
        Some(version) => {
            return Err(invalid(format!(
                "unsupported schemaVersion {version} (expected 2)"
            )));
        }
        None => return Err(invalid("no schemaVersion".to_owned())),
    }
    let index = match probe.media_type.as_deref() {
        Some(oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE)
        | Some(oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
        Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE)
        | Some(oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE) => false,
        Some(other) => return Err(invalid(format!("unsupported media type {other}"))),
        None => probe.manifests.is_some(),
    };
    if index {
        serde_json::from_slice(bytes)
            .map(Manifest::Index)
            .map_err(|err| invalid(format!("not an image index: {err}")))
    } else {
        serde_json::from_slice(bytes)
            .map(|manifest| Manifest::Image(Box::new(manifest)))
            .map_err(|err| invalid(format!("not an image manifest: {err}")))
    }
}

/// The GOARCH name of this machine's architecture, as indexes spell it.
pub(super) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The index entry for linux on this machine's architecture.
pub(super) fn select_platform<'a>(
    image: &str,
    object: &str,
    index: &'a OciImageIndex,
) -> Result<&'a ImageIndexEntry, ImageError> {
    let arch = host_arch();
    index
        .manifests
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|p| p.os.to_string() == "linux" && p.architecture.to_string() == arch)
        })
        .ok_or_else(|| {
            let offered: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|entry| entry.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            ImageError::Invalid {
                image: image.to_owned(),
                object: object.to_owned(),
                reason: format!("no image for linux/{arch} (offers {})", offered.join(", ")),
            }
        })
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
}

/// The compression of a layer of media type `media_type`, or `None` for
/// a media type that is not a layer this store can unpack (zstd included).
pub(super) fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        _ => None,
    }
}

/// An image config: the fields this store reads or writes, in the OCI
/// (and Docker) spelling. Unknown fields are ignored, `null`s accepted.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct ConfigFile {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// Reads an image config: what runs, and the uncompressed digest of each
/// layer (`rootfs.diff_ids`).
pub(super) fn parse_config(
    image: &str,
    object: &str,
    bytes: &[u8],
) -> Result<(ImageConfig, Vec<String>), ImageError> {
    let file: ConfigFile = serde_json::from_slice(bytes).map_err(|err| ImageError::Invalid {
        image: image.to_owned(),
        object: object.to_owned(),
        reason: format!("not an image config: {err}"),
    })?;
    let run = file.config.unwrap_or_default();
    let mut exposed_ports: Vec<u16> = run
        .exposed_ports
        .unwrap_or_default()
        .keys()
        .filter_map(|port| match port.split_once('/') {
            Some((number, "tcp")) => number.parse().ok(),
            Some(_) => None,
            None => port.parse().ok(),
        })
        .collect();
    exposed_ports.sort_unstable();
    exposed_ports.dedup();
    let config = ImageConfig {
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.filter(|dir| !dir.is_empty()),
        user: run.user.filter(|user| !user.is_empty()),
        exposed_ports,
    };
    Ok((config, file.rootfs.diff_ids))
}

/// The config document for a single-layer image of `config`.
pub(super) fn config_file(config: &ImageConfig, diff_id: String) -> ConfigFile {
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let ports = config
        .exposed_ports
        .iter()
        .map(|port| (format!("{port}/tcp"), serde_json::json!({})))
        .collect::<BTreeMap<_, _>>();
    ConfigFile {
        architecture: host_arch().to_owned(),
        os: "linux".to_owned(),
        config: Some(RunConfig {
            user: config.user.clone(),
            exposed_ports: (!ports.is_empty()).then_some(ports),
            env: non_empty(&config.env),
            entrypoint: non_empty(&config.entrypoint),
            cmd: non_empty(&config.cmd),
            working_dir: config.working_dir.clone(),
        }),
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: vec![diff_id],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_configs_are_read_tolerantly() {
        let docker = br#"{
            "architecture": "amd64", "os": "linux", "container_config": {"Hostname": "x"},
            "config": {"Entrypoint": null, "Cmd": ["nginx", "-g", "daemon off;"],
                       "Env": ["PATH=/usr/bin"], "WorkingDir": "", "User": "101",
                       "ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": [{"created": "2024-01-01T00:00:00Z", "empty_layer": true}]
        }"#;
        let (config, diff_ids) = parse_config("nginx", "config", docker).unwrap();
        assert_eq!(
            config,
            ImageConfig {
                entrypoint: vec![],
                cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
                env: vec!["PATH=/usr/bin".into()],
                working_dir: None,
                user: Some("101".into()),
                exposed_ports: vec![80, 443],
            }
        );
        assert_eq!(diff_ids, vec!["sha256:aa".to_owned()]);
    }

    #[test]
    fn written_configs_read_back() {
        let config = ImageConfig {
            entrypoint: vec!["/bin/httpd".into()],
            cmd: vec!["-f".into()],
            env: vec!["A=1".into()],
            working_dir: Some("/www".into()),
            user: None,
            exposed_ports: vec![8080],
        };
        let bytes = serde_json::to_vec(&config_file(&config, "sha256:bb".into())).unwrap();
        let (read, diff_ids) = parse_config("x", "config", &bytes).unwrap();
        assert_eq!(read, config);
        assert_eq!(diff_ids, vec!["sha256:bb".to_owned()]);
    }

    #[test]
    fn indexes_give_this_machines_linux_image() {
        let index = format!(
            r#"{{"schemaVersion": 2, "mediaType": "{}", "manifests": [
                {{"mediaType": "m", "digest": "sha256:aa", "size": 1, "platform": {{"architecture": "s390x", "os": "linux"}}}},
                {{"mediaType": "m", "digest": "sha256:bb", "size": 1, "platform": {{"architecture": "{}", "os": "windows"}}}},
                {{"mediaType": "m", "digest": "sha256:cc", "size": 1, "platform": {{"architecture": "{}", "os": "linux"}}}}
            ]}}"#,
            oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
            host_arch(),
            host_arch()
        );
        let Manifest::Index(index) = parse_manifest("i", "index", index.as_bytes()).unwrap() else {
            panic!("not an index");
        };
        assert_eq!(
            select_platform("i", "index", &index).unwrap().digest,
            "sha256:cc"
        );
        let only_s390x = OciImageIndex {
            manifests: index.manifests[..1].to_vec(),
            ..index
        };
        let err = select_platform("i", "index", &only_s390x).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image i: index: no image for linux/{} (offers linux/s390x)",
                host_arch()
            )
        );
    }

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let index = br#"{"schemaVersion": 2, "manifests": []}"#;
        assert!(matches!(
            parse_manifest("i", "m", index).unwrap(),
            Manifest::Index(_)
        ));
        let v1 = br#"{"schemaVersion": 1, "fsLayers": []}"#;
        let err = parse_manifest("i", "manifest", v1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image i: manifest: unsupported schemaVersion 1 (expected 2)"
        );
    }
}
