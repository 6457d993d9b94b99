//! Linux container workloads: the instance template fields that run an OCI
//! image instead of a component, their validation, and what a node receives.
//!
//! An instance template names either `component:` (WebAssembly, run by
//! wasmtime) or `image:` (an OCI image, run by an OCI runtime such as runc
//! on nodes offering the `oci` runtime). The container fields follow a
//! Kubernetes container's: `command` replaces the image's `ENTRYPOINT`,
//! `args` its `CMD`, `ports` lists what the container listens on (the first
//! is where the ingress and services send requests), `securityContext.
//! readOnlyRootFilesystem`, `volumes` and `volumeMounts`, `hostNetwork`.
//!
//! Out of scope: pulling and running (the node's `oci` module).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::objects::InstanceSpec;
use crate::validate::FieldError;

/// The runtime kind nodes advertise for containers.
pub const OCI_RUNTIME: &str = "oci";

/// The runtime kind nodes advertise for components.
pub const WASM_RUNTIME: &str = "wasm";

/// The port the ingress uses for a container that declares none.
pub const DEFAULT_CONTAINER_PORT: u16 = 80;

/// `ports[]`: one port the container listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// The port inside the container's network namespace.
    pub container_port: u16,
    /// A name for the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (the only protocol served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `securityContext`: what the container may do to its own files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    /// Mounts the root filesystem read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// The user id the process runs as (the image's user, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// The group id the process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
}

/// `volumes[]`: storage an instance declares. Only `emptyDir`: a directory
/// that lives as long as the instance on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// The name `volumeMounts` refer to.
    pub name: String,
    /// An empty directory created for the instance.
    pub empty_dir: EmptyDir,
}

/// `emptyDir: {}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDir {}

/// `volumeMounts[]`: where a volume appears in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// An absolute path in the container.
    pub mount_path: String,
    /// Mounts it read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// What a node needs to run a container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerWorkload {
    /// The image reference (`REGISTRY/REPO:TAG`, `...@sha256:...`,
    /// `oci-archive:PATH`, `oci:PATH[:TAG]`).
    pub image: String,
    /// Replaces the image's `ENTRYPOINT` when not empty.
    pub command: Vec<String>,
    /// Replaces the image's `CMD` when not empty.
    pub args: Vec<String>,
    /// The port requests go to.
    pub port: u16,
    /// Mount the root filesystem read-only.
    pub read_only_root: bool,
    /// User and group ids, when set.
    pub run_as: Option<(u32, Option<u32>)>,
    /// `(mount path, read only)` of each emptyDir mount, by volume name.
    pub mounts: Vec<(String, String, bool)>,
    /// Share the node's network namespace.
    pub host_network: bool,
}

impl ContainerWorkload {
    /// The workload of a template with `image` set; `None` for a component.
    pub fn from_spec(spec: &InstanceSpec) -> Option<ContainerWorkload> {
        let image = spec.image.clone()?;
        let context = spec.security_context.clone().unwrap_or_default();
        Some(ContainerWorkload {
            image,
            command: spec.command.clone(),
            args: spec.args.clone(),
            port: spec
                .ports
                .first()
                .map_or(DEFAULT_CONTAINER_PORT, |p| p.container_port),
            read_only_root: context.read_only_root_filesystem.unwrap_or(false),
            run_as: context.run_as_user.map(|uid| (uid, context.run_as_group)),
            mounts: spec
                .volume_mounts
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.mount_path.clone(),
                        m.read_only.unwrap_or(false),
                    )
                })
                .collect(),
            host_network: spec.host_network.unwrap_or(false),
        })
    }
}

/// Checks the workload fields of a template: exactly one of `component`
/// and `image`, and container fields only with an image.
pub fn validate_workload(path: &str, spec: &InstanceSpec) -> Result<(), FieldError> {
    let Some(image) = &spec.image else {
        if spec.component.is_empty() {
            return Err(FieldError::new(
                format!("{path}.component"),
                "must not be empty (or give an image)",
            ));
        }
        let container_only = [
            ("command", !spec.command.is_empty()),
            ("args", !spec.args.is_empty()),
            ("ports", !spec.ports.is_empty()),
            ("securityContext", spec.security_context.is_some()),
            ("volumes", !spec.volumes.is_empty()),
            ("volumeMounts", !spec.volume_mounts.is_empty()),
            ("hostNetwork", spec.host_network.is_some()),
        ];
        if let Some((field, _)) = container_only.iter().find(|(_, set)| *set) {
            return Err(FieldError::new(
                format!("{path}.{field}"),
                "only container workloads (image) take it",
            ));
        }
        return Ok(());
    };
    if !spec.component.is_empty() {
        return Err(FieldError::new(
            format!("{path}.image"),
            "give either component or image, not both",
        ));
    }
    validate_image_reference(image).map_err(|e| FieldError::new(format!("{path}.image"), e))?;
    if spec.isolation.is_some() {
        return Err(FieldError::new(
            format!("{path}.isolation"),
            "a container always runs in a cgroup of its own",
        ));
    }
    for (index, port) in spec.ports.iter().enumerate() {
        if port.container_port == 0 {
            return Err(FieldError::new(
                format!("{path}.ports[{index}].containerPort"),
                "must be between 1 and 65535",
            ));
        }
        if let Some(protocol) = &port.protocol
            && protocol != "TCP"
        {
            return Err(FieldError::new(
                format!("{path}.ports[{index}].protocol"),
                format!("{protocol:?} is not supported: only TCP"),
            ));
        }
    }
    for (index, volume) in spec.volumes.iter().enumerate() {
        crate::validate::dns1123_label(&volume.name)
            .map_err(|e| FieldError::new(format!("{path}.volumes[{index}].name"), e))?;
        if spec
            .volumes
            .iter()
            .take(index)
            .any(|v| v.name == volume.name)
        {
            return Err(FieldError::new(
                format!("{path}.volumes[{index}].name"),
                format!("{:?} is declared twice", volume.name),
            ));
        }
    }
    for (index, mount) in spec.volume_mounts.iter().enumerate() {
        if !spec.volumes.iter().any(|v| v.name == mount.name) {
            return Err(FieldError::new(
                format!("{path}.volumeMounts[{index}].name"),
                format!("no volume named {:?}", mount.name),
            ));
        }
        let clean = mount.mount_path.starts_with('/')
            && mount.mount_path != "/"
            && !mount.mount_path.split('/').any(|part| part == "..");
        if !clean {
            return Err(FieldError::new(
                format!("{path}.volumeMounts[{index}].mountPath"),
                format!(
                    "{:?} must be an absolute path other than / without '..'",
                    mount.mount_path
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the shape of an image reference; whether it exists is for the
/// node to find out.
pub fn validate_image_reference(image: &str) -> Result<(), String> {
    if let Some(path) = image
        .strip_prefix("oci-archive:")
        .or_else(|| image.strip_prefix("oci:"))
    {
        return if path.is_empty() {
            Err(format!("{image:?} names no path"))
        } else {
            Ok(())
        };
    }
    let valid_chars = image
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "./:-_@".contains(c));
    if image.is_empty() || !valid_chars || image.starts_with(['/', ':', '@', '.', '-']) {
        return Err(format!(
            "{image:?} is not an image reference (REGISTRY/REPO:TAG, REPO@sha256:..., oci-archive:PATH)"
        ));
    }
    if let Some((_, digest)) = image.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{image:?}: the digest must be sha256:<64 hex digits>"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str) -> InstanceSpec {
        InstanceSpec {
            image: Some(image.into()),
            ..InstanceSpec::default()
        }
    }

    #[test]
    fn either_component_or_image() {
        let neither = InstanceSpec::default();
        assert_eq!(
            validate_workload("spec", &neither).unwrap_err().to_string(),
            "spec.component: must not be empty (or give an image)"
        );
        let mut both = container("127.0.0.1:5000/web:1");
        both.component = "sha256:00".into();
        assert_eq!(
            validate_workload("spec", &both).unwrap_err().to_string(),
            "spec.image: give either component or image, not both"
        );
        let mut wasm_with_args = InstanceSpec {
            component: "app.wasm".into(),
            ..InstanceSpec::default()
        };
        wasm_with_args.args = vec!["-v".into()];
        assert_eq!(
            validate_workload("spec", &wasm_with_args)
                .unwrap_err()
                .to_string(),
            "spec.args: only container workloads (image) take it"
        );
    }

    #[test]
    fn image_references() {
        for good in [
            "127.0.0.1:5000/web:1",
            "registry.example.com/team/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "oci-archive:/tmp/web.tar",
            "oci:/var/images/web:1",
            "busybox",
        ] {
            assert_eq!(validate_image_reference(good), Ok(()), "{good}");
        }
        for bad in ["", "web app", "/abs", "web@sha256:12", "oci-archive:"] {
            assert!(validate_image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_name_declared_volumes_at_clean_paths() {
        let mut spec = container("web:1");
        spec.volumes = vec![Volume {
            name: "cache".into(),
            empty_dir: EmptyDir {},
        }];
        spec.volume_mounts = vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: None,
        }];
        assert_eq!(
            validate_workload("s", &spec).unwrap_err().to_string(),
            "s.volumeMounts[0].name: no volume named \"data\""
        );
        spec.volume_mounts[0].name = "cache".into();
        spec.volume_mounts[0].mount_path = "/../etc".into();
        assert!(
            validate_workload("s", &spec)
                .unwrap_err()
                .to_string()
                .starts_with("s.volumeMounts[0].mountPath:")
        );
        spec.volume_mounts[0].mount_path = "/var/cache".into();
        assert_eq!(validate_workload("s", &spec), Ok(()));
    }

    #[test]
    fn the_workload_takes_the_first_port_and_the_mounts() {
        let mut spec = container("web:1");
        spec.ports = vec![
            ContainerPort {
                container_port: 8080,
                name: None,
                protocol: None,
            },
            ContainerPort {
                container_port: 9090,
                name: None,
                protocol: None,
            },
        ];
        spec.security_context = Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            run_as_user: Some(1000),
            run_as_group: None,
        });
        let workload = ContainerWorkload::from_spec(&spec).unwrap();
        assert_eq!(workload.port, 8080);
        assert!(workload.read_only_root);
        assert_eq!(workload.run_as, Some((1000, None)));
        assert_eq!(
            ContainerWorkload::from_spec(&container("web:1"))
                .unwrap()
                .port,
            DEFAULT_CONTAINER_PORT
        );
        assert_eq!(ContainerWorkload::from_spec(&InstanceSpec::default()), None);
    }
}
