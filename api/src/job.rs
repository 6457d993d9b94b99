//! `Job`: a command component (`wasi:cli/run`) run to completion, as
//! Kubernetes' `batch/v1` Job: `completions` successful runs, at most
//! `parallelism` at a time, given up after `backoffLimit` failures or
//! `activeDeadlineSeconds`.
//!
//! Field names, defaults and validation follow Kubernetes. Where berth
//! departs (no `selector`, no indexed or work-queue Jobs, no HTTP probes or
//! `timeoutSeconds` in the template), see `docs/decisions/0018-jobs.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::lifecycle::RestartPolicy;
use crate::meta::ObjectMeta;
use crate::objects::{InstanceSpec, InstanceTemplate};
use crate::validate::{FieldError, MAX_REPLICAS};

/// `completions` when the spec leaves it out.
pub const DEFAULT_COMPLETIONS: i32 = 1;

/// `parallelism` when the spec leaves it out.
pub const DEFAULT_PARALLELISM: i32 = 1;

/// `backoffLimit` when the spec leaves it out, as in Kubernetes.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;

/// The label every instance of a Job carries with the Job's name
/// (Kubernetes' `batch.kubernetes.io/job-name`).
pub const JOB_NAME_LABEL: &str = "berth.dev/job-name";

/// What a node runs an assigned instance as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum Workload {
    /// A `wasi:http/proxy` component serving requests (a Deployment's).
    #[default]
    Http,
    /// A `wasi:cli/command` component run once to completion (a Job's).
    Command,
}

/// Runs of a command component until enough of them succeed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `Job`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: JobSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: JobStatus,
}

/// `Job.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// The instance every run is made from; its `restartPolicy` must be
    /// `OnFailure` or `Never`.
    pub template: InstanceTemplate,
    /// Successful runs needed for the Job to complete (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<i32>,
    /// Most instances running at once (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i32>,
    /// Failures tolerated before the Job fails (6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<i32>,
    /// Seconds from `status.startTime` after which a Job still running
    /// fails (`DeadlineExceeded`); no limit if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
}

impl JobSpec {
    /// `completions`, defaulted.
    pub fn completions(&self) -> i32 {
        self.completions.unwrap_or(DEFAULT_COMPLETIONS)
    }

    /// `parallelism`, defaulted.
    pub fn parallelism(&self) -> i32 {
        self.parallelism.unwrap_or(DEFAULT_PARALLELISM)
    }

    /// `backoffLimit`, defaulted.
    pub fn backoff_limit(&self) -> i32 {
        self.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT)
    }

    /// The template's restart policy (validation makes it `OnFailure` or
    /// `Never`; `Never` if a stored object somehow lacks it).
    pub fn restart_policy(&self) -> RestartPolicy {
        self.template
            .spec
            .restart_policy
            .unwrap_or(RestartPolicy::Never)
    }
}

/// `Job.status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobStatus {
    /// Instances not yet finished (pending or running).
    #[serde(default, skip_serializing_if = "is_default")]
    pub active: i32,
    /// Runs that exited with code 0.
    #[serde(default, skip_serializing_if = "is_default")]
    pub succeeded: i32,
    /// Failed runs: instances that ended Failed, plus the restarts of
    /// `OnFailure` instances.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failed: i32,
    /// When the scheduler started working on the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<jiff::Timestamp>,
    /// When the Job completed (set only for `Complete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<jiff::Timestamp>,
    /// `Complete` or `Failed`, once the Job has finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<JobCondition>,
}

impl JobStatus {
    /// The condition that ended the Job, if it has ended.
    pub fn finished(&self) -> Option<&JobCondition> {
        self.conditions.iter().find(|c| c.status == "True")
    }

    /// Whether the condition of `type_` is `True`.
    pub fn is(&self, type_: JobConditionType) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }
}

/// A Job's terminal condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobCondition {
    /// `Complete` or `Failed`.
    #[serde(rename = "type")]
    pub type_: JobConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason: `CompletionsReached`, `BackoffLimitExceeded` or
    /// `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<jiff::Timestamp>,
}

/// `JobCondition.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum JobConditionType {
    /// `completions` runs succeeded.
    Complete,
    /// The Job gave up.
    Failed,
}

impl JobConditionType {
    /// The type as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            JobConditionType::Complete => "Complete",
            JobConditionType::Failed => "Failed",
        }
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Checks a Job's own fields: the counts, the template's restart policy
/// and the template fields a command has no use for. The template's
/// labels and instance spec are checked by the caller, as a Deployment's.
pub(crate) fn validate_job_spec(spec: &JobSpec) -> Result<(), FieldError> {
    let counts = [
        ("completions", spec.completions, 0),
        ("parallelism", spec.parallelism, 0),
        ("backoffLimit", spec.backoff_limit, 0),
    ];
    for (field, value, min) in counts {
        let path = format!("spec.{field}");
        match value {
            Some(n) if n < min => return Err(FieldError::new(path, format!("must be >= {min}"))),
            Some(n) if field != "backoffLimit" && i64::from(n) > MAX_REPLICAS => {
                return Err(FieldError::new(path, format!("must be <= {MAX_REPLICAS}")));
            }
            _ => {}
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && seconds < 1
    {
        return Err(FieldError::new(
            "spec.activeDeadlineSeconds",
            "must be >= 1",
        ));
    }
    validate_command_template("spec.template.spec", &spec.template.spec)
}

/// Checks a change of a stored Job's spec: as in Kubernetes, the template
/// and `completions` are fixed once the Job exists; `parallelism`,
/// `backoffLimit` and `activeDeadlineSeconds` may change.
pub fn validate_job_update(old: &JobSpec, new: &JobSpec) -> Result<(), FieldError> {
    if old.template != new.template {
        return Err(FieldError::new("spec.template", "field is immutable"));
    }
    if old.completions != new.completions {
        return Err(FieldError::new("spec.completions", "field is immutable"));
    }
    Ok(())
}

/// A Job's instances run once: `restartPolicy` must say what happens after
/// a failure, and fields that only mean something to an HTTP component
/// are refused rather than ignored.
fn validate_command_template(path: &str, spec: &InstanceSpec) -> Result<(), FieldError> {
    const TAKES: &str = "a Job takes \"OnFailure\" or \"Never\"";
    let policy = format!("{path}.restartPolicy");
    match spec.restart_policy {
        None => return Err(FieldError::new(policy, format!("required value: {TAKES}"))),
        Some(RestartPolicy::Always) => {
            return Err(FieldError::new(
                policy,
                format!("unsupported value \"Always\": {TAKES}"),
            ));
        }
        Some(RestartPolicy::OnFailure | RestartPolicy::Never) => {}
    }
    let http_only = [
        ("livenessProbe", spec.liveness_probe.is_some()),
        ("readinessProbe", spec.readiness_probe.is_some()),
        ("startupProbe", spec.startup_probe.is_some()),
    ];
    if let Some((field, _)) = http_only.into_iter().find(|(_, set)| *set) {
        return Err(FieldError::new(
            format!("{path}.{field}"),
            "must not be set: a Job runs a command component, which serves no HTTP",
        ));
    }
    if spec.timeout_seconds.is_some() {
        return Err(FieldError::new(
            format!("{path}.timeoutSeconds"),
            "must not be set: a Job's run is bounded by spec.activeDeadlineSeconds",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::lifecycle::{HttpGetAction, Probe};
    use crate::meta::API_VERSION;
    use crate::objects::{Object, TemplateMeta};
    use crate::validate::validate_object;

    fn job() -> Job {
        Job {
            api_version: API_VERSION.into(),
            kind: "Job".into(),
            metadata: ObjectMeta {
                name: "report".into(),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: JobSpec {
                template: InstanceTemplate {
                    metadata: TemplateMeta::default(),
                    spec: InstanceSpec {
                        component: "job.wasm".into(),
                        restart_policy: Some(RestartPolicy::Never),
                        ..InstanceSpec::default()
                    },
                },
                completions: None,
                parallelism: None,
                backoff_limit: None,
                active_deadline_seconds: None,
            },
            status: JobStatus::default(),
        }
    }

    fn check(change: impl FnOnce(&mut Job)) -> Result<(), String> {
        let mut object = job();
        change(&mut object);
        validate_object(&Object::Job(Box::new(object))).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let spec = job().spec;
        assert_eq!(
            (spec.completions(), spec.parallelism(), spec.backoff_limit()),
            (1, 1, 6)
        );
        assert_eq!(spec.restart_policy(), RestartPolicy::Never);
    }

    #[test]
    fn good_jobs_pass() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(
            check(|j| {
                j.spec.completions = Some(0);
                j.spec.parallelism = Some(0);
                j.spec.backoff_limit = Some(0);
                j.spec.active_deadline_seconds = Some(1);
                j.spec.template.spec.restart_policy = Some(RestartPolicy::OnFailure);
            }),
            Ok(())
        );
    }

    #[test]
    fn checks_the_counts() {
        assert_eq!(
            check(|j| j.spec.completions = Some(-1)),
            Err("spec.completions: must be >= 0".into())
        );
        assert_eq!(
            check(|j| j.spec.parallelism = Some(-1)),
            Err("spec.parallelism: must be >= 0".into())
        );
        assert_eq!(
            check(|j| j.spec.parallelism = Some(10_001)),
            Err("spec.parallelism: must be <= 10000".into())
        );
        assert_eq!(
            check(|j| j.spec.completions = Some(10_001)),
            Err("spec.completions: must be <= 10000".into())
        );
        assert_eq!(
            check(|j| j.spec.backoff_limit = Some(-1)),
            Err("spec.backoffLimit: must be >= 0".into())
        );
        assert_eq!(check(|j| j.spec.backoff_limit = Some(100_000)), Ok(()));
        assert_eq!(
            check(|j| j.spec.active_deadline_seconds = Some(0)),
            Err("spec.activeDeadlineSeconds: must be >= 1".into())
        );
    }

    #[test]
    fn restart_policy_is_required_and_never_always() {
        assert_eq!(
            check(|j| j.spec.template.spec.restart_policy = None),
            Err(
                "spec.template.spec.restartPolicy: required value: a Job takes \"OnFailure\" \
                 or \"Never\""
                    .into()
            )
        );
        assert_eq!(
            check(|j| j.spec.template.spec.restart_policy = Some(RestartPolicy::Always)),
            Err(
                "spec.template.spec.restartPolicy: unsupported value \"Always\": a Job takes \
                 \"OnFailure\" or \"Never\""
                    .into()
            )
        );
    }

    #[test]
    fn the_template_is_checked_as_an_instance_spec() {
        assert_eq!(
            check(|j| j.spec.template.spec.component.clear()),
            Err("spec.template.spec.component: must not be empty (or give an image)".into())
        );
        assert!(
            check(|j| {
                j.spec
                    .template
                    .metadata
                    .labels
                    .insert("b@d".into(), "x".into());
            })
            .is_err_and(|e| e.starts_with("spec.template.metadata.labels: "))
        );
        assert_eq!(
            check(|j| j.spec.template.spec.priority = Some(5)),
            Err(
                "spec.template.spec.priority: must not be set: derived from priorityClassName"
                    .into()
            )
        );
        assert_eq!(
            check(|j| j.spec.template.spec.timeout_seconds = Some(5)),
            Err(
                "spec.template.spec.timeoutSeconds: must not be set: a Job's run is bounded by \
                 spec.activeDeadlineSeconds"
                    .into()
            )
        );
        assert_eq!(
            check(|j| {
                j.spec.template.spec.readiness_probe = Some(Probe {
                    http_get: Some(HttpGetAction {
                        path: "/".into(),
                        port: None,
                    }),
                    ..Probe::default()
                });
            }),
            Err(
                "spec.template.spec.readinessProbe: must not be set: a Job runs a command \
                 component, which serves no HTTP"
                    .into()
            )
        );
    }

    #[test]
    fn template_and_completions_are_immutable() {
        let old = job().spec;
        let mut new = old.clone();
        new.parallelism = Some(3);
        new.backoff_limit = Some(0);
        new.active_deadline_seconds = Some(60);
        assert_eq!(validate_job_update(&old, &new), Ok(()));
        new.completions = Some(2);
        assert_eq!(
            validate_job_update(&old, &new).map_err(|e| e.to_string()),
            Err("spec.completions: field is immutable".into())
        );
        new.template.spec.component = "other.wasm".into();
        assert_eq!(
            validate_job_update(&old, &new).map_err(|e| e.to_string()),
            Err("spec.template: field is immutable".into())
        );
    }

    #[test]
    fn status_reads_like_kubernetes() {
        let mut job = job();
        job.status = JobStatus {
            succeeded: 2,
            conditions: vec![JobCondition {
                type_: JobConditionType::Complete,
                status: "True".into(),
                reason: "CompletionsReached".into(),
                message: String::new(),
                last_transition_time: None,
            }],
            ..JobStatus::default()
        };
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(
            json["status"],
            serde_json::json!({
                "succeeded": 2,
                "conditions": [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]
            })
        );
        assert!(job.status.is(JobConditionType::Complete));
        assert!(!job.status.is(JobConditionType::Failed));
        let back: Job = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
        let fresh = serde_json::to_value(self::job()).unwrap();
        assert!(fresh.get("status").is_none(), "{fresh}");
    }
}
