//! How an instance lives on its node: restart policy, probes, graceful stop
//! and sandbox isolation, in the manifest's shape (Kubernetes field names
//! and defaults) and in the resolved shape the node receives.
//!
//! Manifest types keep unset fields unset, so a manifest round-trips; the
//! node gets [`ProbeSpec`] with every default filled in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::objects::InstanceSpec;
use crate::validate::FieldError;

/// The node label saying which cgroup version bounds the node's sandboxes
/// (`v1`, `v2`) or that none does (`unavailable`); select on it to keep
/// workloads off nodes without kernel limits.
pub const CGROUPS_LABEL: &str = "berth.dev/cgroups";

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: u32 = 30;

/// The longest grace period accepted: one hour.
pub const MAX_TERMINATION_GRACE_SECONDS: u32 = 3600;

/// What the node does when an instance ends or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Restart whatever the outcome (the only policy a Deployment takes).
    #[default]
    Always,
    /// Restart only after a failure (Jobs).
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The policy as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

/// Which worker process ("sandbox") an instance runs in on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Isolation {
    /// The sandbox shared by the namespace's instances on the node.
    #[default]
    Shared,
    /// A sandbox (process and cgroup) of the instance's own.
    Dedicated,
}

/// `livenessProbe`, `readinessProbe` or `startupProbe`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// An HTTP GET against the instance; 2xx and 3xx are success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// A TCP connection to a container's port; connecting is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// A command run in a container; exit code 0 is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// Seconds after start before the first probe (0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// Seconds between probes (10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Seconds one probe may take (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Successes in a row that make a failing probe pass (1; 1 for
    /// liveness and startup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Failures in a row that make a passing probe fail (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

/// `httpGet`: which path the node asks the component for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// The request path, starting with `/`.
    pub path: String,
    /// The port a container is probed on; a component has one HTTP
    /// handler, so for it the port only names it in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `tcpSocket`: which container port the node connects to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// The port; the container's first port when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `exec`: the command the node runs in the container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    /// The command and its arguments, not run in a shell.
    pub command: Vec<String>,
}

/// How a resolved probe checks its instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum ProbeHandler {
    /// `GET path` on `port`.
    #[default]
    HttpGet,
    /// Connect to `port`.
    TcpSocket,
    /// Run the command in the container.
    Exec(Vec<String>),
}

impl Probe {
    /// The probe with Kubernetes' defaults filled in.
    pub fn resolve(&self) -> ProbeSpec {
        let (handler, path, port) = match (&self.http_get, &self.tcp_socket, &self.exec) {
            (Some(get), _, _) => (ProbeHandler::HttpGet, get.path.clone(), get.port),
            (None, Some(tcp), _) => (ProbeHandler::TcpSocket, String::new(), tcp.port),
            (None, None, Some(exec)) => (
                ProbeHandler::Exec(exec.command.clone()),
                String::new(),
                None,
            ),
            (None, None, None) => (ProbeHandler::HttpGet, "/".to_owned(), None),
        };
        ProbeSpec {
            handler,
            path,
            port,
            initial_delay_seconds: self.initial_delay_seconds.unwrap_or(0),
            period_seconds: self.period_seconds.unwrap_or(10),
            timeout_seconds: self.timeout_seconds.unwrap_or(1),
            success_threshold: self.success_threshold.unwrap_or(1),
            failure_threshold: self.failure_threshold.unwrap_or(3),
        }
    }
}

/// A probe with every default resolved, as the node receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeSpec {
    /// How it checks.
    pub handler: ProbeHandler,
    /// The request path of an HTTP probe.
    pub path: String,
    /// The port a container is probed on (its first port when `None`);
    /// a component has one handler and ignores it.
    pub port: Option<u16>,
    /// Seconds after start before the first probe.
    pub initial_delay_seconds: u32,
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Seconds one probe may take.
    pub timeout_seconds: u32,
    /// Successes in a row that make a failing probe pass.
    pub success_threshold: u32,
    /// Failures in a row that make a passing probe fail.
    pub failure_threshold: u32,
}

/// The three probes of one instance, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Probes {
    /// Restarts the instance when it fails.
    pub liveness: Option<ProbeSpec>,
    /// Takes the instance out of routing while it fails.
    pub readiness: Option<ProbeSpec>,
    /// Holds the other two back until it first passes; failing it
    /// `failure_threshold` times restarts the instance.
    pub startup: Option<ProbeSpec>,
}

/// Checks the probes and the grace period of an instance spec at `path`.
pub(crate) fn validate_lifecycle(path: &str, spec: &InstanceSpec) -> Result<(), FieldError> {
    for (name, probe, single_success) in [
        ("livenessProbe", &spec.liveness_probe, true),
        ("readinessProbe", &spec.readiness_probe, false),
        ("startupProbe", &spec.startup_probe, true),
    ] {
        if let Some(probe) = probe {
            let path = format!("{path}.{name}");
            validate_handler(&path, probe, spec.image.is_some())?;
            validate_probe(&path, probe, single_success)?;
        }
    }
    if let Some(seconds) = spec.termination_grace_period_seconds
        && seconds > MAX_TERMINATION_GRACE_SECONDS
    {
        return Err(FieldError::new(
            format!("{path}.terminationGracePeriodSeconds"),
            format!("must be at most {MAX_TERMINATION_GRACE_SECONDS}, not {seconds}"),
        ));
    }
    Ok(())
}

/// A Deployment's instances serve until replaced: only `Always` fits, as
/// in Kubernetes.
pub(crate) fn validate_deployment_restart_policy(
    path: &str,
    spec: &InstanceSpec,
) -> Result<(), FieldError> {
    match spec.restart_policy {
        None | Some(RestartPolicy::Always) => Ok(()),
        Some(other) => Err(FieldError::new(
            format!("{path}.restartPolicy"),
            format!(
                "unsupported value {:?}: a Deployment takes only \"Always\"",
                other.as_str()
            ),
        )),
    }
}

/// Exactly one of `httpGet`, `tcpSocket` and `exec`; the last two only
/// for containers, which have ports and processes of their own.
fn validate_handler(path: &str, probe: &Probe, container: bool) -> Result<(), FieldError> {
    let given = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if given != 1 {
        return Err(FieldError::new(
            path,
            "must have exactly one of httpGet, tcpSocket and exec",
        ));
    }
    if !container && probe.http_get.is_none() {
        let field = if probe.tcp_socket.is_some() {
            "tcpSocket"
        } else {
            "exec"
        };
        return Err(FieldError::new(
            format!("{path}.{field}"),
            "only container workloads (image) take it: a component is probed with httpGet",
        ));
    }
    if let Some(exec) = &probe.exec
        && exec.command.first().is_none_or(String::is_empty)
    {
        return Err(FieldError::new(
            format!("{path}.exec.command"),
            "must not be empty",
        ));
    }
    Ok(())
}

fn validate_probe(path: &str, probe: &Probe, single_success: bool) -> Result<(), FieldError> {
    if let Some(get) = &probe.http_get {
        if !get.path.starts_with('/') {
            return Err(FieldError::new(
                format!("{path}.httpGet.path"),
                "must start with \"/\"",
            ));
        }
        if get
            .path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(FieldError::new(
                format!("{path}.httpGet.path"),
                "must not contain spaces or control characters",
            ));
        }
    }
    for (field, value) in [
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if value == Some(0) {
            return Err(FieldError::new(format!("{path}.{field}"), "must be >= 1"));
        }
    }
    if single_success && probe.success_threshold.is_some_and(|n| n != 1) {
        return Err(FieldError::new(
            format!("{path}.successThreshold"),
            "must be 1 for liveness and startup probes",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn spec_with(change: impl FnOnce(&mut InstanceSpec)) -> InstanceSpec {
        let mut spec = InstanceSpec {
            component: "sha256:00".into(),
            ..InstanceSpec::default()
        };
        change(&mut spec);
        spec
    }

    fn error(spec: &InstanceSpec) -> String {
        let e = validate_lifecycle("spec", spec)
            .and_then(|()| validate_deployment_restart_policy("spec", spec))
            .unwrap_err();
        format!("{}: {}", e.path, e.message)
    }

    #[test]
    fn probes_and_policies_are_checked() {
        let probe = |path: &str| Probe {
            http_get: Some(HttpGetAction {
                path: path.into(),
                port: None,
            }),
            ..Probe::default()
        };
        let good = spec_with(|s| {
            s.readiness_probe = Some(probe("/ready"));
            s.restart_policy = Some(RestartPolicy::Always);
            s.termination_grace_period_seconds = Some(0);
        });
        assert!(validate_lifecycle("spec", &good).is_ok());
        assert_eq!(
            error(&spec_with(|s| s.liveness_probe = Some(probe("healthz")))),
            "spec.livenessProbe.httpGet.path: must start with \"/\""
        );
        assert_eq!(
            error(&spec_with(|s| s.readiness_probe = Some(Probe {
                period_seconds: Some(0),
                ..probe("/")
            }))),
            "spec.readinessProbe.periodSeconds: must be >= 1"
        );
        assert_eq!(
            error(&spec_with(|s| s.startup_probe = Some(Probe {
                success_threshold: Some(2),
                ..probe("/")
            }))),
            "spec.startupProbe.successThreshold: must be 1 for liveness and startup probes"
        );
        assert_eq!(
            error(&spec_with(
                |s| s.termination_grace_period_seconds = Some(3601)
            )),
            "spec.terminationGracePeriodSeconds: must be at most 3600, not 3601"
        );
        assert_eq!(
            error(&spec_with(|s| s.restart_policy = Some(RestartPolicy::Never))),
            "spec.restartPolicy: unsupported value \"Never\": a Deployment takes only \"Always\""
        );
    }

    #[test]
    fn resolve_fills_kubernetes_defaults() {
        let probe = Probe {
            http_get: Some(HttpGetAction {
                path: "/healthz".into(),
                port: None,
            }),
            period_seconds: Some(2),
            ..Probe::default()
        };
        assert_eq!(
            probe.resolve(),
            ProbeSpec {
                handler: ProbeHandler::HttpGet,
                path: "/healthz".into(),
                port: None,
                initial_delay_seconds: 0,
                period_seconds: 2,
                timeout_seconds: 1,
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }

    #[test]
    fn tcp_and_exec_probes_are_for_containers_only() {
        let tcp = Probe {
            tcp_socket: Some(TcpSocketAction { port: Some(8080) }),
            ..Probe::default()
        };
        assert_eq!(
            error(&spec_with(|s| s.liveness_probe = Some(tcp.clone()))),
            "spec.livenessProbe.tcpSocket: only container workloads (image) take it: a component \
             is probed with httpGet"
        );
        let container = |probe: Probe| {
            spec_with(|s| {
                s.component.clear();
                s.image = Some("web:1".into());
                s.liveness_probe = Some(probe);
            })
        };
        assert_eq!(validate_lifecycle("spec", &container(tcp.clone())), Ok(()));
        assert_eq!(tcp.resolve().handler, ProbeHandler::TcpSocket);
        assert_eq!(tcp.resolve().port, Some(8080));
        let exec = Probe {
            exec: Some(ExecAction {
                command: vec!["cat".into(), "/tmp/healthy".into()],
            }),
            ..Probe::default()
        };
        assert_eq!(validate_lifecycle("spec", &container(exec.clone())), Ok(()));
        assert_eq!(
            exec.resolve().handler,
            ProbeHandler::Exec(vec!["cat".into(), "/tmp/healthy".into()])
        );
        let both = Probe {
            exec: exec.exec.clone(),
            ..tcp
        };
        assert_eq!(
            validate_lifecycle("spec", &container(both))
                .unwrap_err()
                .to_string(),
            "spec.livenessProbe: must have exactly one of httpGet, tcpSocket and exec"
        );
        let empty = Probe {
            exec: Some(ExecAction { command: vec![] }),
            ..Probe::default()
        };
        assert_eq!(
            validate_lifecycle("spec", &container(empty))
                .unwrap_err()
                .to_string(),
            "spec.livenessProbe.exec.command: must not be empty"
        );
    }
}
