//! The OCI runtime bundle of one container: its `config.json`, generated
//! with the `oci-spec` crate from the assignment and the image's config.
//!
//! Starting point is oci-spec's default spec (the same as `runc spec`:
//! pid, ipc, uts, mount and network namespaces, a minimal capability set,
//! masked and read-only kernel paths, `noNewPrivileges`). On top of it:
//! the process (Kubernetes' rules: `command` replaces `ENTRYPOINT`, `args`
//! replaces `CMD`), environment (image, then template, then the node's
//! `BERTH_*`), user, root, emptyDir mounts, cgroup path and limits.

use std::path::{Path, PathBuf};

use berth_api::container::ContainerWorkload;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, RootBuilder, Spec, UserBuilder,
};

use super::image::ImageConfig;

/// Processes and threads one container may have; a fork bomb stops here.
pub const CONTAINER_PIDS_LIMIT: i64 = 1024;

/// The CFS period cpu quotas are expressed in: 100 ms.
const CPU_PERIOD_MICROS: u64 = 100_000;

/// Everything a container's `config.json` is made of.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    /// The instance's name, also its hostname.
    pub hostname: &'a str,
    /// What the template asks for.
    pub workload: &'a ContainerWorkload,
    /// What the image says.
    pub image: &'a ImageConfig,
    /// The template's environment then the node's, in order.
    pub env: &'a [(String, String)],
    /// The root filesystem.
    pub rootfs: &'a Path,
    /// Host directories of the emptyDir volumes, by volume name.
    pub volumes: &'a [(String, PathBuf)],
    /// The cgroup, relative to the hierarchy's root (`/berth/...`).
    pub cgroup: &'a str,
    /// Memory limit in bytes, if any.
    pub memory_bytes: Option<u64>,
    /// CPU limit in millicores, if any.
    pub cpu_millis: Option<u64>,
}

/// Why a bundle cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The image and the template give nothing to run.
    #[error("no command: the image has no ENTRYPOINT or CMD and the template gives none")]
    NoCommand,
    /// The image's user is a name, which needs the image's /etc/passwd.
    #[error("image user {0:?} is not numeric: set securityContext.runAsUser")]
    UserName(String),
    /// A mount names a volume the node did not create.
    #[error("volume {0:?} has no directory")]
    MissingVolume(String),
    /// oci-spec refused a value.
    #[error("invalid runtime spec: {0}")]
    Spec(#[from] OciSpecError),
}

/// The process arguments by Kubernetes' rules.
fn process_args(workload: &ContainerWorkload, image: &ImageConfig) -> Vec<String> {
    let (entrypoint, cmd) = match (workload.command.is_empty(), workload.args.is_empty()) {
        (true, true) => (&image.entrypoint, &image.cmd),
        (true, false) => (&image.entrypoint, &workload.args),
        (false, _) => (&workload.command, &workload.args),
    };
    entrypoint.iter().chain(cmd).cloned().collect()
}

/// `uid[:gid]` from the image's `User`, numeric only.
fn image_user(user: Option<&str>) -> Result<(u32, u32), BundleError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(BundleError::UserName(user.to_owned())),
    }
}

/// The container's `config.json` content.
pub fn runtime_spec(bundle: &BundleSpec<'_>) -> Result<Spec, BundleError> {
    let workload = bundle.workload;
    let args = process_args(workload, bundle.image);
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    let (uid, gid) = match workload.run_as {
        Some((uid, gid)) => (uid, gid.unwrap_or(0)),
        None => image_user(bundle.image.user.as_deref())?,
    };
    let mut env: Vec<String> = bundle.image.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    for (name, value) in bundle.env {
        let prefix = format!("{name}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{name}={value}"));
    }

    let mut spec = Spec::default();
    spec.set_hostname(Some(bundle.hostname.to_owned()));
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(args));
        process.set_env(Some(env));
        process.set_cwd(
            bundle
                .image
                .working_dir
                .clone()
                .filter(|d| d.starts_with('/'))
                .unwrap_or_else(|| "/".into())
                .into(),
        );
        process.set_user(UserBuilder::default().uid(uid).gid(gid).build()?);
        process.set_terminal(Some(false));
    }
    spec.set_root(Some(
        RootBuilder::default()
            .path(bundle.rootfs)
            .readonly(workload.read_only_root)
            .build()?,
    ));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (name, destination, read_only) in &workload.mounts {
        let source = bundle
            .volumes
            .iter()
            .find(|(volume, _)| volume == name)
            .map(|(_, dir)| dir.clone())
            .ok_or_else(|| BundleError::MissingVolume(name.clone()))?;
        let mode = if *read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(destination)
                .typ("bind")
                .source(source)
                .options(vec!["rbind".into(), mode.into()])
                .build()?,
        );
    }
    spec.set_mounts(Some(mounts));

    let mut resources = LinuxResourcesBuilder::default().pids(
        LinuxPidsBuilder::default()
            .limit(CONTAINER_PIDS_LIMIT)
            .build()?,
    );
    if let Some(bytes) = bundle.memory_bytes.and_then(|b| i64::try_from(b).ok()) {
        // No swap beyond the limit: memory+swap equals memory.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
                .build()?,
        );
    }
    if let Some(millis) = bundle.cpu_millis {
        let quota =
            i64::try_from(millis.saturating_mul(CPU_PERIOD_MICROS) / 1000).unwrap_or(i64::MAX);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_MICROS)
                .build()?,
        );
    }
    let default_linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = default_linux.namespaces().clone().unwrap_or_default();
    if workload.host_network {
        namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    }
    let mut linux = LinuxBuilder::default()
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(bundle.cgroup))
        .namespaces(namespaces)
        .build()?;
    linux.set_masked_paths(default_linux.masked_paths().clone());
    linux.set_readonly_paths(default_linux.readonly_paths().clone());
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> ContainerWorkload {
        ContainerWorkload {
            image: "web:1".into(),
            command: vec![],
            args: vec![],
            port: 8080,
            read_only_root: false,
            run_as: None,
            mounts: vec![],
            host_network: false,
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/bin/httpd".into()],
            cmd: vec!["-f".into(), "-p".into(), "80".into()],
            env: vec!["PATH=/bin".into(), "MODE=image".into()],
            working_dir: Some("/www".into()),
            user: Some("1000:1000".into()),
            exposed_ports: vec![80],
        }
    }

    fn spec_of(workload: &ContainerWorkload, image: &ImageConfig) -> Result<Spec, BundleError> {
        let env = [("MODE".to_owned(), "template".to_owned())];
        let volumes = [("cache".to_owned(), PathBuf::from("/data/volumes/cache"))];
        runtime_spec(&BundleSpec {
            hostname: "web-abc12",
            workload,
            image,
            env: &env,
            rootfs: Path::new("/data/rootfs"),
            volumes: &volumes,
            cgroup: "/berth/n-1234/web",
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
        })
    }

    #[test]
    fn command_and_args_follow_kubernetes() {
        let image = image();
        let mut w = workload();
        assert_eq!(process_args(&w, &image), ["/bin/httpd", "-f", "-p", "80"]);
        w.args = vec!["-v".into()];
        assert_eq!(process_args(&w, &image), ["/bin/httpd", "-v"]);
        w.command = vec!["/bin/sh".into()];
        w.args = vec![];
        assert_eq!(process_args(&w, &image), ["/bin/sh"]);
        let empty = ImageConfig::default();
        assert!(matches!(
            spec_of(&workload(), &empty),
            Err(BundleError::NoCommand)
        ));
    }

    #[test]
    fn the_spec_carries_limits_user_env_and_mounts() {
        let mut w = workload();
        w.read_only_root = true;
        w.mounts = vec![("cache".into(), "/var/cache".into(), false)];
        let spec = spec_of(&w, &image()).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.user().uid(), 1000);
        let env = process.env().as_ref().unwrap();
        assert!(env.contains(&"MODE=template".to_owned()), "{env:?}");
        assert!(!env.contains(&"MODE=image".to_owned()), "{env:?}");
        assert_eq!(process.cwd(), Path::new("/www"));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = spec.mounts().as_ref().unwrap();
        let cache = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/var/cache"))
            .unwrap();
        assert_eq!(
            cache.source().as_deref(),
            Some(Path::new("/data/volumes/cache"))
        );
        let linux = spec.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(resources.pids().unwrap().limit(), CONTAINER_PIDS_LIMIT);
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/berth/n-1234/web"))
        );
        let has_network = |spec: &Spec| {
            spec.linux()
                .as_ref()
                .and_then(|l| l.namespaces().clone())
                .unwrap()
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Network)
        };
        assert!(has_network(&spec), "a network namespace of its own");
        w.host_network = true;
        assert!(!has_network(&spec_of(&w, &image()).unwrap()));
    }

    #[test]
    fn user_names_and_unknown_volumes_are_refused() {
        let mut image = image();
        image.user = Some("www-data".into());
        assert!(matches!(
            spec_of(&workload(), &image),
            Err(BundleError::UserName(_))
        ));
        let mut w = workload();
        w.run_as = Some((33, Some(33)));
        assert!(spec_of(&w, &image).is_ok(), "runAsUser overrides the name");
        w.mounts = vec![("nope".into(), "/x".into(), true)];
        assert!(matches!(
            spec_of(&w, &image),
            Err(BundleError::MissingVolume(_))
        ));
    }
}
