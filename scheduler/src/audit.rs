//! The audit log: one JSON line per mutating request (who, what, when,
//! result), appended to `audit.log` in the data directory (or the path
//! `berth scheduler --audit-log` names) and rotated by size.
//!
//! [`Entry`] is what one line says; [`Entry::of`] reads it from a request
//! before it is answered and [`Entry::answered`] completes it from the
//! response. [`AuditLog::record`] appends the line, rotating first when
//! the file would pass [`MAX_BYTES`]: `audit.log` becomes `audit.log.1`,
//! `.1` becomes `.2`, and so on up to [`KEEP`] old files; the oldest is
//! dropped. Reads (`get`, `logs`, `events`, `top`, watches) and a node's
//! own `register` and `report` are not recorded: they change nothing a
//! user asked for. Every other request is, including ones added later.
//!
//! A line that cannot be written is logged as a warning; the request is
//! not refused for it. See `docs/decisions/0038-audit-log.md`.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use berth_api::Kind;
use berth_api::wire::{ApiError, ErrorCode, Request, Response};
use serde::Serialize;

/// Size at which the log is rotated: 10 MiB.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Rotated files kept besides the current one.
pub const KEEP: u32 = 5;

/// The file name in the data directory.
pub const FILE_NAME: &str = "audit.log";

/// One object a request names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Its kind, as manifests spell it; empty when unknown.
    pub kind: String,
    /// Its namespace; empty for a cluster-scoped object.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// When the request was answered, RFC 3339 UTC.
    pub time: String,
    /// Who asked: `user:NAME`, `node:NAME` or `anonymous`.
    pub user: String,
    /// The request: `apply`, `delete`, `patch-deployment`, `evict`, ...
    pub verb: String,
    /// The kind of the first object named; empty when none.
    pub kind: String,
    /// The namespace of the first object named.
    pub namespace: String,
    /// The name of the first object named.
    pub name: String,
    /// Every object named (an apply may carry several).
    pub objects: Vec<Target>,
    /// `allowed`, `denied` (refused as forbidden or unauthenticated) or
    /// `error`.
    pub result: String,
    /// The error code when not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The error message when not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The W3C `traceparent` the request was handled under, when traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Entry {
    /// The line for `request` by `user`, or `None` when the request is a
    /// read the log leaves out.
    pub fn of(user: &str, verb: &str, request: &Request) -> Option<Entry> {
        let objects = match request {
            Request::Get { .. }
            | Request::GetBlob { .. }
            | Request::Watch
            | Request::Logs { .. }
            | Request::ReadLogs { .. }
            | Request::Top { .. }
            | Request::Events { .. }
            | Request::Register(_)
            | Request::Report(_) => return None,
            Request::Apply { objects } => objects.iter().map(|bytes| target_of(bytes)).collect(),
            Request::Delete {
                kind,
                namespace,
                name,
            } => vec![target(*kind, namespace.as_deref(), name)],
            Request::PatchDeployment {
                namespace, name, ..
            } => vec![target(Kind::Deployment, Some(namespace), name)],
            Request::PatchNode { name, .. } => vec![target(Kind::Node, None, name)],
            Request::Evict {
                namespace, name, ..
            } => vec![target(Kind::Instance, Some(namespace), name)],
            Request::PutBlob { digest, .. } => vec![Target {
                kind: "Blob".into(),
                namespace: String::new(),
                name: digest.clone(),
            }],
            Request::Join { node_name, .. } => vec![target(Kind::Node, None, node_name)],
            Request::Wake {
                namespace,
                deployment,
            } => vec![target(Kind::Deployment, Some(namespace), deployment)],
            // Requests added later (users, tokens, ...) are recorded by
            // their verb alone until they are given their objects here.
            _ => Vec::new(),
        };
        let first = objects.first().cloned().unwrap_or(Target {
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
        });
        Some(Entry {
            time: String::new(),
            user: user.to_owned(),
            verb: verb.to_owned(),
            kind: first.kind,
            namespace: first.namespace,
            name: first.name,
            objects,
            result: String::new(),
            code: None,
            message: None,
            traceparent: None,
        })
    }

    /// Completes the line with the answer, the time and the trace.
    pub fn answered(
        mut self,
        response: &Response,
        time: jiff::Timestamp,
        traceparent: Option<String>,
    ) -> Entry {
        self.time = time.to_string();
        self.traceparent = traceparent;
        match response {
            Response::Error(ApiError { code, message }) => {
                self.result = match code {
                    ErrorCode::Forbidden | ErrorCode::Unauthenticated => "denied",
                    _ => "error",
                }
                .into();
                self.code = Some(format!("{code:?}"));
                self.message = Some(message.clone());
            }
            _ => self.result = "allowed".into(),
        }
        self
    }

    /// The JSON line, newline included.
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

fn target(kind: Kind, namespace: Option<&str>, name: &str) -> Target {
    Target {
        kind: kind.as_str().to_owned(),
        namespace: namespace.unwrap_or_default().to_owned(),
        name: name.to_owned(),
    }
}

/// Kind, namespace and name of an applied object's JSON form, as far as
/// they can be read.
fn target_of(bytes: &[u8]) -> Target {
    #[derive(serde::Deserialize, Default)]
    struct Metadata {
        #[serde(default)]
        name: String,
        #[serde(default)]
        namespace: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        kind: String,
        #[serde(default)]
        metadata: Metadata,
    }
    match serde_json::from_slice::<Head>(bytes) {
        Ok(head) => {
            let namespaced = Kind::from_manifest_name(&head.kind).is_some_and(Kind::is_namespaced);
            let namespace = match head.metadata.namespace {
                Some(namespace) => namespace,
                None if namespaced => berth_api::DEFAULT_NAMESPACE.to_owned(),
                None => String::new(),
            };
            Target {
                kind: head.kind,
                namespace,
                name: head.metadata.name,
            }
        }
        Err(_) => Target {
            kind: String::new(),
            namespace: String::new(),
            name: String::new(),
        },
    }
}

/// Why a line could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, written or rotated.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// The open file and its size; `None` until the first line.
    file: Mutex<Option<(File, u64)>>,
}

impl AuditLog {
    /// A log at `path`, rotated at [`MAX_BYTES`] keeping [`KEEP`] old
    /// files. Nothing is opened until the first line.
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog::with_limits(path, MAX_BYTES, KEEP)
    }

    /// A log at `path`, rotated at `max_bytes` keeping `keep` old files.
    pub fn with_limits(path: PathBuf, max_bytes: u64, keep: u32) -> AuditLog {
        AuditLog {
            path,
            max_bytes,
            keep,
            file: Mutex::new(None),
        }
    }

    /// Where the current file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as one line, rotating first if the file would pass
    /// its size limit.
    pub fn record(&self, entry: &Entry) -> Result<(), AuditError> {
        let line = entry.line();
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            *file = Some(self.open().map_err(io)?);
        }
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if let Some((_, size)) = file.as_ref()
            && *size > 0
            && size.saturating_add(len) > self.max_bytes
        {
            *file = None;
            self.rotate().map_err(io)?;
            *file = Some(self.open().map_err(io)?);
        }
        if let Some((open, size)) = file.as_mut() {
            open.write_all(line.as_bytes()).map_err(io)?;
            *size = size.saturating_add(len);
        }
        Ok(())
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// The path of rotated file `n` (1 is the newest).
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts every file one place older, dropping the oldest.
    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path).or_else(ignore_missing);
        }
        std::fs::remove_file(self.rotated(self.keep)).or_else(ignore_missing)?;
        for n in (1..self.keep).rev() {
            std::fs::rename(self.rotated(n), self.rotated(n + 1)).or_else(ignore_missing)?;
        }
        std::fs::rename(&self.path, self.rotated(1)).or_else(ignore_missing)
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;

    fn delete(name: &str) -> Request {
        Request::Delete {
            kind: Kind::Deployment,
            namespace: Some("team-a".into()),
            name: name.into(),
        }
    }

    #[test]
    fn reads_are_left_out() {
        let get = Request::Get {
            kind: Kind::Deployment,
            namespace: None,
            name: None,
        };
        assert!(Entry::of("user:alice", "get", &get).is_none());
        assert!(Entry::of("node:n1", "watch", &Request::Watch).is_none());
    }

    #[test]
    fn a_line_says_who_what_when_and_the_result() {
        let time: jiff::Timestamp = "2026-11-22T23:00:00Z".parse().unwrap();
        let entry = Entry::of("user:alice", "delete", &delete("web"))
            .unwrap()
            .answered(
                &Response::Deleted {
                    object: "Deployment team-a/web".into(),
                },
                time,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            );
        let value: serde_json::Value = serde_json::from_str(&entry.line()).unwrap();
        assert_eq!(value["time"], "2026-11-22T23:00:00Z");
        assert_eq!(value["user"], "user:alice");
        assert_eq!(value["verb"], "delete");
        assert_eq!(value["kind"], "Deployment");
        assert_eq!(value["namespace"], "team-a");
        assert_eq!(value["name"], "web");
        assert_eq!(value["result"], "allowed");
        assert!(value.get("code").is_none());
        assert!(
            value["traceparent"]
                .as_str()
                .unwrap()
                .starts_with("00-4bf9")
        );
        assert!(entry.line().ends_with("}\n"));
        assert_eq!(entry.line().matches('\n').count(), 1, "one line");

        let refused = Entry::of("user:bob", "delete", &delete("web"))
            .unwrap()
            .answered(
                &Response::Error(ApiError::new(ErrorCode::Forbidden, "no")),
                time,
                None,
            );
        assert_eq!(refused.result, "denied");
        assert_eq!(refused.code.as_deref(), Some("Forbidden"));
        let failed = Entry::of("user:bob", "delete", &delete("web"))
            .unwrap()
            .answered(
                &Response::Error(ApiError::new(ErrorCode::NotFound, "gone")),
                time,
                None,
            );
        assert_eq!(failed.result, "error");
        assert_eq!(failed.code.as_deref(), Some("NotFound"));
    }

    #[test]
    fn applies_name_each_object() {
        let apply = Request::Apply {
            objects: vec![
                br#"{"kind":"Deployment","metadata":{"name":"web","namespace":"a"}}"#.to_vec(),
                br#"{"kind":"Namespace","metadata":{"name":"a"}}"#.to_vec(),
                br#"{"kind":"Service","metadata":{"name":"web"}}"#.to_vec(),
                b"not json".to_vec(),
            ],
        };
        let entry = Entry::of("user:admin", "apply", &apply).unwrap();
        assert_eq!(
            (
                entry.kind.as_str(),
                entry.namespace.as_str(),
                entry.name.as_str()
            ),
            ("Deployment", "a", "web")
        );
        assert_eq!(entry.objects[1].namespace, "", "cluster-scoped");
        assert_eq!(entry.objects[2].namespace, "default");
        assert_eq!(entry.objects[3].name, "");
    }

    #[test]
    fn the_log_rotates_by_size_keeping_a_few_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let time: jiff::Timestamp = "2026-11-22T23:00:00Z".parse().unwrap();
        let entry = Entry::of("user:alice", "delete", &delete("web"))
            .unwrap()
            .answered(
                &Response::Deleted {
                    object: "Deployment team-a/web".into(),
                },
                time,
                None,
            );
        let len = u64::try_from(entry.line().len()).unwrap();
        // Three lines fit in a file.
        let log = AuditLog::with_limits(path.clone(), len * 3, 2);
        for _ in 0..10 {
            log.record(&entry).unwrap();
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&path), 1, "10 = 3 + 3 + 3 + 1");
        assert_eq!(lines(&log.rotated(1)), 3);
        assert_eq!(lines(&log.rotated(2)), 3);
        assert!(!log.rotated(3).exists(), "only two old files are kept");
        // A log reopened appends to the current file and counts its size.
        let again = AuditLog::with_limits(path.clone(), len * 3, 2);
        again.record(&entry).unwrap();
        again.record(&entry).unwrap();
        assert_eq!(lines(&path), 3);
        again.record(&entry).unwrap();
        assert_eq!(lines(&path), 1);
    }
}
