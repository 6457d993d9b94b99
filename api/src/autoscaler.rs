//! `HorizontalAutoscaler`: keeps a Deployment's `replicas` between a
//! minimum and a maximum by one load metric per instance, as Kubernetes'
//! `autoscaling/v2` HorizontalPodAutoscaler, and takes it to zero when
//! `minReplicas` is 0 and no request came for `scaleToZeroAfterSeconds`.
//!
//! The metric is one of `targetConcurrency` (requests in flight per
//! instance), `targetRequestsPerSecond` (per instance) or
//! `targetCPUUtilization` (percent of each instance's cpu request). The
//! controller is `scheduler/src/controller/autoscaler.rs`; the wake path
//! from zero is `node/src/wake.rs`; the choices are in
//! `docs/decisions/0030-autoscaling-and-scale-to-zero.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::validate::FieldError;

/// Seconds a scale-down waits for, taking the highest recommendation made
/// in that window (Kubernetes' default).
pub const DEFAULT_STABILIZATION_WINDOW_SECONDS: u32 = 300;

/// Seconds without a request before a Deployment whose autoscaler allows
/// `minReplicas: 0` goes to zero instances.
pub const DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS: u32 = 300;

/// The longest window or idle period accepted: one hour.
pub const MAX_WINDOW_SECONDS: u32 = 3600;

/// The most replicas an autoscaler may ask for (as a Deployment's limit).
pub const MAX_REPLICAS: i64 = 10_000;

/// Scales one Deployment by load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HorizontalAutoscaler {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `HorizontalAutoscaler`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: AutoscalerSpec,
    /// What the controller observed and decided; owned by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AutoscalerStatus>,
}

/// `HorizontalAutoscaler.spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerSpec {
    /// The Deployment it scales, in its own namespace.
    pub scale_target_ref: ScaleTargetRef,
    /// Fewest replicas; 0 allows scale to zero. Default 1.
    #[serde(default = "default_min_replicas")]
    pub min_replicas: i64,
    /// Most replicas.
    pub max_replicas: i64,
    /// Requests in flight per instance to aim for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency: Option<f64>,
    /// Requests per second per instance to aim for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_requests_per_second: Option<f64>,
    /// Percent of each instance's cpu request to aim for.
    #[serde(
        default,
        rename = "targetCPUUtilization",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_cpu_utilization: Option<u32>,
    /// How fast it scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<AutoscalerBehavior>,
    /// Seconds without a request before scaling to zero (with
    /// `minReplicas: 0`); default [`DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero_after_seconds: Option<u32>,
}

fn default_min_replicas() -> i64 {
    1
}

/// `spec.scaleTargetRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTargetRef {
    /// Always `Deployment`.
    pub kind: String,
    /// The Deployment's name.
    pub name: String,
}

/// `spec.behavior`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerBehavior {
    /// How scale-downs are damped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
}

/// `spec.behavior.scaleDown`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Seconds of recommendations a scale-down takes the highest of;
    /// default [`DEFAULT_STABILIZATION_WINDOW_SECONDS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<u32>,
}

/// `HorizontalAutoscaler.status`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerStatus {
    /// The Deployment's instances that are not terminating.
    #[serde(default)]
    pub current_replicas: i64,
    /// What the autoscaler last asked for.
    #[serde(default)]
    pub desired_replicas: i64,
    /// When it last changed the Deployment's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<jiff::Timestamp>,
    /// The metric's mean per instance, in the target's unit (requests in
    /// flight, requests/s or percent); none without fresh reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_metric_value: Option<f64>,
}

/// Which metric an autoscaler follows, and its target per instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Requests in flight per instance.
    Concurrency(f64),
    /// Requests per second per instance.
    RequestsPerSecond(f64),
    /// Percent of the cpu request.
    CpuUtilization(u32),
}

impl Target {
    /// The target as a number in the metric's unit.
    pub fn value(self) -> f64 {
        match self {
            Target::Concurrency(v) | Target::RequestsPerSecond(v) => v,
            Target::CpuUtilization(p) => f64::from(p),
        }
    }
}

impl AutoscalerSpec {
    /// The one target given (validation ensures there is exactly one).
    pub fn target(&self) -> Option<Target> {
        self.target_concurrency
            .map(Target::Concurrency)
            .or(self
                .target_requests_per_second
                .map(Target::RequestsPerSecond))
            .or(self.target_cpu_utilization.map(Target::CpuUtilization))
    }

    /// The scale-down stabilization window, default applied.
    pub fn stabilization_window_seconds(&self) -> u32 {
        self.behavior
            .as_ref()
            .and_then(|b| b.scale_down.as_ref())
            .and_then(|s| s.stabilization_window_seconds)
            .unwrap_or(DEFAULT_STABILIZATION_WINDOW_SECONDS)
    }

    /// The idle period before scaling to zero, default applied.
    pub fn scale_to_zero_after_seconds(&self) -> u32 {
        self.scale_to_zero_after_seconds
            .unwrap_or(DEFAULT_SCALE_TO_ZERO_AFTER_SECONDS)
    }
}

pub(crate) fn validate_autoscaler_spec(spec: &AutoscalerSpec) -> Result<(), FieldError> {
    let target = &spec.scale_target_ref;
    if target.kind != "Deployment" {
        return Err(FieldError::new(
            "spec.scaleTargetRef.kind",
            format!("must be \"Deployment\", not {:?}", target.kind),
        ));
    }
    crate::validate::dns1123_label(&target.name)
        .map_err(|m| FieldError::new("spec.scaleTargetRef.name", m))?;
    if spec.min_replicas < 0 {
        return Err(FieldError::new("spec.minReplicas", "must be >= 0"));
    }
    if spec.max_replicas < 1 {
        return Err(FieldError::new("spec.maxReplicas", "must be >= 1"));
    }
    if spec.max_replicas > MAX_REPLICAS {
        return Err(FieldError::new(
            "spec.maxReplicas",
            format!("must be <= {MAX_REPLICAS}"),
        ));
    }
    if spec.min_replicas > spec.max_replicas {
        return Err(FieldError::new(
            "spec.minReplicas",
            format!("must be <= spec.maxReplicas ({})", spec.max_replicas),
        ));
    }
    let given = [
        spec.target_concurrency.is_some(),
        spec.target_requests_per_second.is_some(),
        spec.target_cpu_utilization.is_some(),
    ]
    .into_iter()
    .filter(|g| *g)
    .count();
    if given != 1 {
        return Err(FieldError::new(
            "spec",
            "give exactly one of targetConcurrency, targetRequestsPerSecond and targetCPUUtilization",
        ));
    }
    for (path, value) in [
        ("spec.targetConcurrency", spec.target_concurrency),
        (
            "spec.targetRequestsPerSecond",
            spec.target_requests_per_second,
        ),
    ] {
        if let Some(value) = value
            && !(value.is_finite() && value > 0.0)
        {
            return Err(FieldError::new(path, "must be a number > 0"));
        }
    }
    if let Some(percent) = spec.target_cpu_utilization
        && !(1..=1000).contains(&percent)
    {
        return Err(FieldError::new(
            "spec.targetCPUUtilization",
            "must be between 1 and 1000 (percent of the cpu request)",
        ));
    }
    let window = spec
        .behavior
        .as_ref()
        .and_then(|b| b.scale_down.as_ref())
        .and_then(|s| s.stabilization_window_seconds);
    if window.is_some_and(|w| w > MAX_WINDOW_SECONDS) {
        return Err(FieldError::new(
            "spec.behavior.scaleDown.stabilizationWindowSeconds",
            format!("must be <= {MAX_WINDOW_SECONDS}"),
        ));
    }
    if let Some(idle) = spec.scale_to_zero_after_seconds {
        if idle == 0 || idle > MAX_WINDOW_SECONDS {
            return Err(FieldError::new(
                "spec.scaleToZeroAfterSeconds",
                format!("must be between 1 and {MAX_WINDOW_SECONDS}"),
            ));
        }
        if spec.min_replicas != 0 {
            return Err(FieldError::new(
                "spec.scaleToZeroAfterSeconds",
                "applies only with spec.minReplicas: 0",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use crate::Object;
    use crate::manifest::parse_manifests;

    fn parse(yaml: &str) -> Result<Object, String> {
        parse_manifests("a.yaml", yaml)
            .map(|mut objects| objects.remove(0))
            .map_err(|e| e.to_string())
    }

    const HEAD: &str = "apiVersion: berth.dev/v1\nkind: HorizontalAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {kind: Deployment, name: web}\n";

    #[test]
    fn a_scale_to_zero_autoscaler_parses_with_defaults() {
        let object = parse(&format!(
            "{HEAD}  minReplicas: 0\n  maxReplicas: 5\n  targetConcurrency: 2\n  scaleToZeroAfterSeconds: 5\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 3\n"
        ))
        .unwrap();
        let Object::HorizontalAutoscaler(autoscaler) = object else {
            panic!("not an autoscaler: {object:?}");
        };
        let spec = &autoscaler.spec;
        assert_eq!(spec.target(), Some(super::Target::Concurrency(2.0)));
        assert_eq!(spec.stabilization_window_seconds(), 3);
        assert_eq!(spec.scale_to_zero_after_seconds(), 5);
        let cpu = parse(&format!(
            "{HEAD}  maxReplicas: 5\n  targetCPUUtilization: 80\n"
        ))
        .unwrap();
        let Object::HorizontalAutoscaler(cpu) = cpu else {
            panic!("not an autoscaler");
        };
        assert_eq!(cpu.spec.min_replicas, 1);
        assert_eq!(cpu.spec.target(), Some(super::Target::CpuUtilization(80)));
        assert_eq!(cpu.spec.stabilization_window_seconds(), 300);
    }

    #[test]
    fn invalid_autoscalers_name_the_field() {
        for (body, field) in [
            ("  maxReplicas: 5\n", "spec: give exactly one"),
            (
                "  maxReplicas: 5\n  targetConcurrency: 1\n  targetRequestsPerSecond: 1\n",
                "spec: give exactly one",
            ),
            (
                "  maxReplicas: 0\n  targetConcurrency: 1\n",
                "spec.maxReplicas",
            ),
            (
                "  minReplicas: 4\n  maxReplicas: 2\n  targetConcurrency: 1\n",
                "spec.minReplicas",
            ),
            (
                "  maxReplicas: 2\n  targetConcurrency: 0\n",
                "spec.targetConcurrency",
            ),
            (
                "  maxReplicas: 2\n  targetCPUUtilization: 0\n",
                "spec.targetCPUUtilization",
            ),
            (
                "  maxReplicas: 2\n  targetConcurrency: 1\n  scaleToZeroAfterSeconds: 5\n",
                "spec.scaleToZeroAfterSeconds",
            ),
        ] {
            let error = parse(&format!("{HEAD}{body}")).unwrap_err();
            assert!(error.contains(field), "{body}: {error}");
        }
        let wrong = "apiVersion: berth.dev/v1\nkind: HorizontalAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {kind: Job, name: web}\n  maxReplicas: 2\n  targetConcurrency: 1\n";
        assert!(
            parse(wrong)
                .unwrap_err()
                .contains("spec.scaleTargetRef.kind")
        );
    }
}
