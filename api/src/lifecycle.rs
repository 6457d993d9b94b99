//! How an instance lives on its node: restart policy, probes, graceful stop
//! and sandbox isolation, in the manifest's shape (Kubernetes field names
//! and defaults) and in the resolved shape the node receives.
//!
//! Manifest types keep unset fields unset, so a manifest round-trips; the
//! node gets [`ProbeSpec`] with every default filled in.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Isolation {
    /// The sandbox shared by the namespace's instances on the node.
    #[default]
    Shared,
    /// A sandbox (process and cgroup) of the instance's own.
    Dedicated,
}

/// `livenessProbe`, `readinessProbe` or `startupProbe`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// An HTTP GET against the component; 2xx and 3xx are success.
    pub http_get: HttpGetAction,
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// The request path, starting with `/`.
    pub path: String,
    /// Accepted for Kubernetes compatibility; a component has one HTTP
    /// handler, so the port only names it in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Probe {
    /// The probe with Kubernetes' defaults filled in.
    pub fn resolve(&self) -> ProbeSpec {
        ProbeSpec {
            path: self.http_get.path.clone(),
            initial_delay_seconds: self.initial_delay_seconds.unwrap_or(0),
            period_seconds: self.period_seconds.unwrap_or(10),
            timeout_seconds: self.timeout_seconds.unwrap_or(1),
            success_threshold: self.success_threshold.unwrap_or(1),
            failure_threshold: self.failure_threshold.unwrap_or(3),
        }
    }
}

/// A probe with every default resolved, as the node receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// The request path.
    pub path: String,
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
            validate_probe(&format!("{path}.{name}"), probe, single_success)?;
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

fn validate_probe(path: &str, probe: &Probe, single_success: bool) -> Result<(), FieldError> {
    if !probe.http_get.path.starts_with('/') {
        return Err(FieldError::new(
            format!("{path}.httpGet.path"),
            "must start with \"/\"",
        ));
    }
    if probe
        .http_get
        .path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(FieldError::new(
            format!("{path}.httpGet.path"),
            "must not contain spaces or control characters",
        ));
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
            http_get: HttpGetAction {
                path: path.into(),
                port: None,
            },
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
            http_get: HttpGetAction {
                path: "/healthz".into(),
                port: None,
            },
            period_seconds: Some(2),
            ..Probe::default()
        };
        assert_eq!(
            probe.resolve(),
            ProbeSpec {
                path: "/healthz".into(),
                initial_delay_seconds: 0,
                period_seconds: 2,
                timeout_seconds: 1,
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
    }
}
