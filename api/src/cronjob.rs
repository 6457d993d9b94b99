//! `CronJob`: a [`Job`](crate::job::Job) created on a cron schedule, as
//! Kubernetes' `batch/v1` CronJob.
//!
//! `spec.schedule` is a standard five-field cron expression (minute, hour,
//! day of month, month, day of week) or a macro (`@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly`), read in `spec.timeZone` (an IANA
//! name, UTC when unset). [`Schedule`] parses it and answers the one
//! question the controller asks: the latest scheduled time in a window
//! ([`Schedule::latest_between`]). The controller is
//! `scheduler/src/controller/cronjob.rs`; the choices are in
//! `docs/decisions/0026-cronjobs.md`.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::JobSpec;
use crate::meta::ObjectMeta;
use crate::objects::TemplateMeta;
use crate::validate::FieldError;

/// `successfulJobsHistoryLimit` when the spec leaves it out.
pub const DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT: i32 = 3;

/// `failedJobsHistoryLimit` when the spec leaves it out.
pub const DEFAULT_FAILED_JOBS_HISTORY_LIMIT: i32 = 1;

/// Longest CronJob name: its Jobs append `-` and up to ten digits, and a
/// Job's name must stay a DNS-1123 label (Kubernetes' limit too).
pub const MAX_CRONJOB_NAME: usize = 52;

/// Jobs made on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJob {
    /// Always `berth.dev/v1`.
    pub api_version: String,
    /// Always `CronJob`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// What the user asks for.
    pub spec: CronJobSpec,
    /// What the cluster observed; owned by the scheduler.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: CronJobStatus,
}

/// `CronJob.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJobSpec {
    /// Five-field cron expression or `@hourly`-style macro.
    pub schedule: String,
    /// IANA time zone the schedule is read in (UTC when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// What to do when a run is due while the previous one still runs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub concurrency_policy: ConcurrencyPolicy,
    /// No new Jobs while true; running ones carry on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub suspend: bool,
    /// A run missed by more than this many seconds is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<i64>,
    /// Finished successful Jobs kept (3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i32>,
    /// Finished failed Jobs kept (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i32>,
    /// The Job every run creates.
    pub job_template: JobTemplate,
}

impl CronJobSpec {
    /// `successfulJobsHistoryLimit`, defaulted.
    pub fn successful_jobs_history_limit(&self) -> i32 {
        self.successful_jobs_history_limit
            .unwrap_or(DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT)
    }

    /// `failedJobsHistoryLimit`, defaulted.
    pub fn failed_jobs_history_limit(&self) -> i32 {
        self.failed_jobs_history_limit
            .unwrap_or(DEFAULT_FAILED_JOBS_HISTORY_LIMIT)
    }
}

/// `CronJob.spec.jobTemplate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobTemplate {
    /// Labels given to every Job.
    #[serde(default, skip_serializing_if = "is_default")]
    pub metadata: TemplateMeta,
    /// The Job's spec.
    pub spec: JobSpec,
}

/// `CronJob.spec.concurrencyPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    #[default]
    Allow,
    /// A due run is skipped while another is active.
    Forbid,
    /// The active runs are deleted and the due one starts.
    Replace,
}

impl ConcurrencyPolicy {
    /// The policy as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Allow => "Allow",
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Replace => "Replace",
        }
    }
}

/// `CronJob.status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJobStatus {
    /// Names of the Jobs still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// The scheduled time of the latest Job created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Timestamp>,
    /// When a Job of this CronJob last completed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Timestamp>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Why a schedule or time zone cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron schedule {schedule:?}: {reason}")]
    Cron {
        /// The expression.
        schedule: String,
        /// What croner said.
        reason: String,
    },
    /// The time zone is not a known IANA name.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed `spec.schedule` in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses a CronJob's schedule and time zone.
    pub fn of(spec: &CronJobSpec) -> Result<Schedule, ScheduleError> {
        Schedule::parse(&spec.schedule, spec.time_zone.as_deref())
    }

    /// Parses a five-field expression or macro, read in `zone` (UTC if
    /// `None`).
    pub fn parse(schedule: &str, zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(schedule)
            .map_err(|error| ScheduleError::Cron {
                schedule: schedule.to_owned(),
                reason: error.to_string(),
            })?;
        let zone = match zone {
            None => TimeZone::UTC,
            Some(name) => {
                TimeZone::get(name).map_err(|_| ScheduleError::TimeZone(name.to_owned()))?
            }
        };
        Ok(Schedule { cron, zone })
    }

    /// The latest scheduled time in `(after, until]`, if any: the one run
    /// a controller starts when it has missed several (Kubernetes skips
    /// the earlier ones too).
    pub fn latest_between(&self, after: Timestamp, until: Timestamp) -> Option<Timestamp> {
        if until <= after {
            return None;
        }
        let latest = self
            .cron
            .find_previous_occurrence(&until.to_zoned(self.zone.clone()), true)
            .ok()?
            .timestamp();
        (latest > after).then_some(latest)
    }

    /// The first scheduled time after `after`, if any.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&after.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// Checks a CronJob's own fields: its name length, schedule, time zone,
/// deadline and history limits. The Job template is checked by the
/// caller.
pub(crate) fn validate_cronjob(name: &str, spec: &CronJobSpec) -> Result<(), FieldError> {
    if name.len() > MAX_CRONJOB_NAME {
        return Err(FieldError::new(
            "metadata.name",
            format!("must be no more than {MAX_CRONJOB_NAME} characters"),
        ));
    }
    if let Err(error) = Schedule::of(spec) {
        let path = match error {
            ScheduleError::Cron { .. } => "spec.schedule",
            ScheduleError::TimeZone(_) => "spec.timeZone",
        };
        return Err(FieldError::new(path, error.to_string()));
    }
    if spec.starting_deadline_seconds.is_some_and(|s| s < 0) {
        return Err(FieldError::new(
            "spec.startingDeadlineSeconds",
            "must be >= 0",
        ));
    }
    let limits = [
        (
            "successfulJobsHistoryLimit",
            spec.successful_jobs_history_limit,
        ),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
    ];
    for (field, value) in limits {
        if value.is_some_and(|n| n < 0) {
            return Err(FieldError::new(format!("spec.{field}"), "must be >= 0"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_minute_picks_the_latest_minute() {
        let s = Schedule::parse("* * * * *", None).unwrap();
        assert_eq!(
            s.latest_between(at("2026-01-01T00:00:30Z"), at("2026-01-01T00:03:10Z")),
            Some(at("2026-01-01T00:03:00Z"))
        );
        assert_eq!(
            s.latest_between(at("2026-01-01T00:03:00Z"), at("2026-01-01T00:03:59Z")),
            None
        );
    }

    #[test]
    fn steps_and_macros() {
        let s = Schedule::parse("*/5 * * * *", None).unwrap();
        assert_eq!(
            s.latest_between(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:09:59Z")),
            Some(at("2026-01-01T00:05:00Z"))
        );
        let hourly = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(
            hourly.latest_between(at("2026-01-01T00:00:00Z"), at("2026-01-01T02:30:00Z")),
            Some(at("2026-01-01T02:00:00Z"))
        );
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            daily.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn time_zone_shifts_the_schedule() {
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T08:00:00Z"))
        );
    }

    /// The field path `berth apply` blames for a CronJob whose spec has
    /// `extra` (indented under `spec:`) and whose Job template has
    /// `restartPolicy: POLICY`.
    fn blamed(extra: &str, policy: &str) -> Option<String> {
        let yaml = format!(
            "apiVersion: berth.dev/v1
kind: CronJob
metadata:
  name: tick
spec:
{extra}
  jobTemplate:
    spec:
      template:
        spec:
          component: sha256:0000000000000000000000000000000000000000000000000000000000000000
          restartPolicy: {policy}
"
        );
        match crate::manifest::parse_manifests("c.yaml", &yaml) {
            Ok(_) => None,
            Err(crate::manifest::ManifestError::Invalid(e)) => e.path.clone(),
            Err(other) => Some(format!("{other}")),
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(blamed("  schedule: \"*/5 * * * *\"", "Never"), None);
        assert_eq!(
            blamed("  schedule: \"every minute\"", "Never").as_deref(),
            Some("spec.schedule")
        );
        assert_eq!(
            blamed("  schedule: \"@daily\"\n  timeZone: Mars/Olympus", "Never").as_deref(),
            Some("spec.timeZone")
        );
        assert_eq!(
            blamed(
                "  schedule: \"@daily\"\n  startingDeadlineSeconds: -1",
                "Never"
            )
            .as_deref(),
            Some("spec.startingDeadlineSeconds")
        );
        assert_eq!(
            blamed(
                "  schedule: \"@daily\"\n  failedJobsHistoryLimit: -1",
                "Never"
            )
            .as_deref(),
            Some("spec.failedJobsHistoryLimit")
        );
        assert!(
            blamed("  schedule: \"@daily\"", "Always")
                .is_some_and(|p| p.starts_with("spec.jobTemplate.spec.template.spec"))
        );
    }

    #[test]
    fn bad_schedules_and_zones_are_refused() {
        assert!(matches!(
            Schedule::parse("61 * * * *", None),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("0 * * * * *", None),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("* * * * *", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
