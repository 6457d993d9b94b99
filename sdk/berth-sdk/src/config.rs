//! The configuration the platform gives an instance.
//!
//! berth passes configuration as environment variables: the Deployment's
//! (or Job's) `env`, in order, then `BERTH_INSTANCE`, `BERTH_NAMESPACE` and
//! `BERTH_DEPLOYMENT`, which the node adds. Nothing else of the node's
//! environment is visible. Secrets and ConfigMaps arrive the same way:
//! a template's `env[].valueFrom` (`secretKeyRef`, `configMapKeyRef`) and
//! `envFrom` entries become variables before the node starts the instance,
//! and are read like any other. [`get`] reads one value, [`require`] fails with
//! a typed error naming the variable, and [`parse`] converts to any
//! [`FromStr`] type:
//!
//! ```ignore
//! let greeting = berth_sdk::config::get("GREETING").unwrap_or_else(|| "hello".into());
//! let limit: u32 = berth_sdk::config::parse("LIMIT")?.unwrap_or(10);
//! ```
//!
//! A [`ConfigError`] converts into [`crate::http::Error`] (a 500), so `?`
//! works in handlers that return `Result<_, http::Error>`.

use std::str::FromStr;

/// The instance's name, from `BERTH_INSTANCE` (set by berth; empty under
/// other hosts).
pub fn instance() -> String {
    get("BERTH_INSTANCE").unwrap_or_default()
}

/// The instance's namespace, from `BERTH_NAMESPACE` (empty under other
/// hosts).
pub fn namespace() -> String {
    get("BERTH_NAMESPACE").unwrap_or_default()
}

/// The Deployment (or Job) the instance belongs to, from
/// `BERTH_DEPLOYMENT` (empty under other hosts).
pub fn deployment() -> String {
    get("BERTH_DEPLOYMENT").unwrap_or_default()
}

/// The value of `name`; `None` when unset or not valid UTF-8.
pub fn get(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of `name`, or [`ConfigError::Missing`].
pub fn require(name: &str) -> Result<String, ConfigError> {
    get(name).ok_or_else(|| ConfigError::Missing {
        name: name.to_owned(),
    })
}

/// The value of `name` parsed as `T`: `Ok(None)` when unset,
/// [`ConfigError::Invalid`] when it does not parse.
pub fn parse<T>(name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    get(name).map(|value| parse_value(name, &value)).transpose()
}

/// `value`, the value of `name`, parsed as `T`.
fn parse_value<T>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// A configuration value that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The variable is not set.
    #[error("error: config {name} is not set")]
    Missing {
        /// The variable's name.
        name: String,
    },
    /// The variable is set but its value does not parse.
    #[error("error: config {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: String,
        /// Its value.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn parse_value_trims_and_names_the_variable_on_error() {
        assert_eq!(parse_value::<u32>("LIMIT", " 12 "), Ok(12));
        let error = parse_value::<u32>("LIMIT", "lots").unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { ref name, .. } if name == "LIMIT"));
        assert!(
            error
                .to_string()
                .starts_with("error: config LIMIT=\"lots\" is invalid")
        );
    }

    #[test]
    fn missing_names_the_variable() {
        let error = require("BERTH_SDK_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(
            error.to_string(),
            "error: config BERTH_SDK_TEST_SURELY_UNSET is not set"
        );
        assert_eq!(parse::<u32>("BERTH_SDK_TEST_SURELY_UNSET"), Ok(None));
    }
}
