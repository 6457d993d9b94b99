//! Structured logs that land in `berth logs`.
//!
//! berth captures each instance's stdout and stderr line by line
//! (`berth logs INSTANCE` prints `<time> <stdout|stderr> <text>`). The
//! macros here write one JSON object per line to stderr, written whole so
//! concurrent requests never interleave within a line:
//!
//! ```text
//! {"level":"info","msg":"created item","id":7,"target":"json_api"}
//! ```
//!
//! `msg` is formatted like `format!`; fields go before it, separated by a
//! `;`, each any [`serde::Serialize`] value:
//!
//! ```ignore
//! berth_sdk::info!("served {path}");
//! berth_sdk::warn!(id = id, attempts = 3; "retrying {}", url);
//! ```
//!
//! `debug!` lines are written only when the config `LOG_LEVEL` is `debug`;
//! `LOG_LEVEL=warn` or `error` also drops the levels below.

use std::io::Write as _;

use serde::Serialize;
use serde_json::Value;

/// How severe a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for debugging, off unless `LOG_LEVEL=debug`.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected the component recovered from.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The level's name as written in a line: `debug`, `info`, `warn`,
    /// `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The level named by `name` (any case); `None` for any other name.
    pub fn from_name(name: &str) -> Option<Level> {
        match name.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// The lowest level written: from the config `LOG_LEVEL`, `info` when unset
/// or unknown.
pub fn max_level() -> Level {
    crate::config::get("LOG_LEVEL")
        .and_then(|name| Level::from_name(&name))
        .unwrap_or(Level::Info)
}

/// One log line being built; the macros build and emit these.
#[derive(Debug, Clone)]
pub struct Record {
    level: Level,
    msg: String,
    fields: Vec<(String, Value)>,
}

impl Record {
    /// A line at `level` with message `msg`.
    pub fn new(level: Level, msg: impl Into<String>) -> Record {
        Record {
            level,
            msg: msg.into(),
            fields: Vec::new(),
        }
    }

    /// Adds field `key`, or replaces it (a value that cannot be serialized
    /// is written as its error). `level` and `msg` cannot be replaced.
    pub fn field(mut self, key: &str, value: impl Serialize) -> Record {
        if key == "level" || key == "msg" {
            return self;
        }
        let value = serde_json::to_value(value)
            .unwrap_or_else(|e| Value::from(format!("error: unserializable field: {e}")));
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.fields.push((key.to_owned(), value)),
        }
        self
    }

    /// The line as written, without its newline: `level` and `msg` first,
    /// then the fields in the order added.
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{{\"level\":\"{}\",\"msg\":{}",
            self.level.as_str(),
            Value::from(self.msg.as_str())
        );
        for (key, value) in &self.fields {
            line.push(',');
            line.push_str(&Value::from(key.as_str()).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        line
    }

    /// Writes the line to stderr if its level is enabled.
    pub fn emit(self) {
        if self.level < max_level() {
            return;
        }
        let mut line = self.to_line();
        line.push('\n');
        // One write of the whole line: the node appends whole lines only.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// Logs at a given [`Level`]; [`info!`](crate::info) and friends are
/// shorthands.
#[macro_export]
macro_rules! log {
    ($level:expr, $($key:ident = $value:expr),+ ; $($arg:tt)+) => {
        $crate::log::Record::new($level, ::std::format!($($arg)+))
            $(.field(::std::stringify!($key), &$value))+
            .field("target", ::std::module_path!())
            .emit()
    };
    ($level:expr, $($arg:tt)+) => {
        $crate::log::Record::new($level, ::std::format!($($arg)+))
            .field("target", ::std::module_path!())
            .emit()
    };
}

/// Logs at `debug` level (written only with `LOG_LEVEL=debug`).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// Logs at `info` level: `info!("msg {x}")` or `info!(key = value; "msg")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// Logs at `warn` level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// Logs at `error` level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
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
    fn a_record_is_one_json_line_with_level_msg_and_fields() {
        let line = Record::new(Level::Warn, "two\nlines")
            .field("id", 7)
            .field("tags", ["a", "b"])
            .field("level", "ignored")
            .to_line();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with(r#"{"level":"warn","msg":"two\nlines","id":7,"#),
            "{line}"
        );
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "warn");
        assert_eq!(value["msg"], "two\nlines");
        assert_eq!(value["id"], 7);
        assert_eq!(value["tags"][1], "b");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::from_name(" DEBUG"), Some(Level::Debug));
        assert_eq!(Level::from_name("warning"), Some(Level::Warn));
        assert_eq!(Level::from_name("loud"), None);
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
    }

    #[test]
    fn the_macros_accept_messages_and_fields() {
        let n = 3;
        crate::info!("served {n} items");
        crate::warn!(count = n, name = "x"; "retrying {}", n + 1);
        crate::debug!("hidden unless LOG_LEVEL=debug");
    }
}
