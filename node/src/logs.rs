//! Guest output: each instance's stdout and stderr, captured line by line
//! with a timestamp into a file of its own, bounded by rotation, and read
//! back for `berth logs`.
//!
//! Start at [`LogStore`]: the supervisor [`open`](LogStore::open)s a
//! [`GuestLog`] for each instance it starts and hands it to the runtime
//! (`InstanceConfig::log`); each request's stdout and stderr then write
//! through a [`GuestOutput`] into it. The agent answers the scheduler's
//! `ReadLogs` with [`LogStore::read`].
//!
//! On disk, `<data_dir>/logs/<instance-uid>.log` holds one line per line
//! of output, `<time> <stream> <text>\n`: the time in RFC 3339, UTC, with
//! nanoseconds (`2025-01-02T03:04:05.123456789Z`), taken when the line is
//! written, so that a file is in time order; the stream `stdout` or
//! `stderr`; the text as the guest wrote it, invalid UTF-8 replaced. A file
//! that would grow past [`MAX_LOG_BYTES`] is first renamed to
//! `<uid>.log.1`, replacing the one before, so an instance keeps at most
//! about twice that. Files stay after their instance stops, until the data
//! directory is cleaned.
//!
//! Out of scope: removing old logs, shipping logs off the node, structured
//! logs.

mod capture;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use tokio::sync::broadcast;
use tracing::warn;

pub use self::capture::{GuestOutput, WRITE_PERMIT};

/// A log file is rotated before it grows past this: 1 MiB. With the one
/// rotated file kept, an instance's output takes at most about 2 MiB of
/// disk (a file may pass the limit by one write of the guest, at most
/// [`WRITE_PERMIT`] bytes, when it is the first in its file).
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// The longest line kept whole: 16 KiB. Longer output without a newline is
/// cut into lines of this size, so that no line, and no frame of lines,
/// grows without bound.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How long the logs of an instance that no longer runs here are kept
/// after their last line: 24 hours, so that `berth logs` still reads a
/// finished Job or a replaced instance the next day. Then
/// [`LogStore::remove_expired`] deletes them.
pub const LOG_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// New lines a follower (`berth logs -f`) may fall behind by before it
/// misses some; it then goes on with the newest.
pub const FOLLOW_BACKLOG: usize = 1024;

/// Which guest stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `wasi:cli/stdout`.
    Stdout,
    /// `wasi:cli/stderr`.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Why a log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The uid would not make a plain file name.
    #[error("invalid instance uid {0:?}")]
    InvalidUid(String),
    /// No log of this instance is on this node.
    #[error("no log of instance {0} on this node")]
    NotFound(String),
    /// Reading a log file failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What to read of a log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only the last this many lines (of those at or after `since`).
    pub tail: Option<u64>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Also return a receiver of the lines written from now on.
    pub follow: bool,
}

/// The answer to a [`LogQuery`].
#[derive(Debug)]
pub struct LogRead {
    /// The lines already written that the query selects, oldest first.
    pub lines: Vec<String>,
    /// With `follow`, each line written after `lines` were read; `None` if
    /// the instance no longer runs here. The channel closes when it stops.
    pub follow: Option<broadcast::Receiver<Arc<str>>>,
}

/// The node's instance logs, under `<data_dir>/logs`.
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    max_bytes: u64,
    /// The logs of instances that run here now, by uid.
    live: Mutex<HashMap<String, GuestLog>>,
}

impl LogStore {
    /// A store in `dir` (created if missing) rotating at [`MAX_LOG_BYTES`].
    pub fn new(dir: PathBuf) -> std::io::Result<LogStore> {
        LogStore::with_max_bytes(dir, MAX_LOG_BYTES)
    }

    /// A store in `dir` rotating at `max_bytes` (tests use a small one).
    pub fn with_max_bytes(dir: PathBuf, max_bytes: u64) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogStore {
            dir,
            max_bytes,
            live: Mutex::new(HashMap::new()),
        })
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, GuestLog>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the files of instances not running here whose last write
    /// is older than `retention`; returns how many files went.
    pub fn remove_expired(&self, retention: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let uid = name
                .strip_suffix(".log")
                .or_else(|| name.strip_suffix(".log.1"));
            let Some(uid) = uid else { continue };
            if self.live().contains_key(uid) {
                continue;
            }
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > retention);
            if expired && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The log of instance `uid`, which is starting: the same one for as
    /// long as it is not [`close`](LogStore::close)d. Writing appends to
    /// any file an earlier run of the instance left.
    pub fn open(&self, uid: &str) -> Result<GuestLog, LogError> {
        let path = self.path(uid)?;
        let mut live = self.live();
        let log = live.entry(uid.to_owned()).or_insert_with(|| {
            GuestLog(Arc::new(Shared {
                path,
                max_bytes: self.max_bytes,
                file: Mutex::new(FileState::default()),
                lines: broadcast::channel(FOLLOW_BACKLOG).0,
                forward: None,
            }))
        });
        Ok(log.clone())
    }

    /// Instance `uid` stopped here. Its requests still running write on;
    /// followers see their channel close once the last of them ends. The
    /// files stay.
    pub fn close(&self, uid: &str) {
        self.live().remove(uid);
    }

    /// Reads instance `uid`'s log as `query` asks. Blocking file I/O: call
    /// it off the async threads.
    pub fn read(&self, uid: &str, query: &LogQuery) -> Result<LogRead, LogError> {
        let path = self.path(uid)?;
        let rotated = rotated_path(&path);
        let live = self.live().get(uid).cloned();
        // Open both files, note how far the current one goes and subscribe
        // under the writer's lock: no line is both read and followed, and
        // none is missed. The files are read after the lock is released;
        // a rotation meanwhile renames them, but open files stay the same.
        let (older, current, follow) = match &live {
            Some(log) => {
                let state = log.0.lock();
                let older = open_existing(&rotated)?;
                let current = open_with_len(&path)?;
                let follow = query.follow.then(|| log.0.lines.subscribe());
                drop(state);
                (older, current, follow)
            }
            None => (open_existing(&rotated)?, open_with_len(&path)?, None),
        };
        if older.is_none() && current.is_none() && live.is_none() {
            return Err(LogError::NotFound(uid.to_owned()));
        }
        // Rotation bounds the files; the cap guards against files that
        // something else wrote.
        let cap = self.max_bytes.saturating_mul(2);
        let mut text = Vec::new();
        if let Some(file) = older {
            read_into(file, cap, &rotated, &mut text)?;
        }
        if let Some((file, len)) = current {
            read_into(file, len.min(cap), &path, &mut text)?;
        }
        let text = String::from_utf8_lossy(&text);
        Ok(LogRead {
            lines: select(&text, query),
            follow,
        })
    }

    /// `<dir>/<uid>.log`, for a uid of letters, digits and `-` only (a uuid).
    fn path(&self, uid: &str) -> Result<PathBuf, LogError> {
        let plain = !uid.is_empty()
            && uid.len() <= 64
            && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plain {
            return Err(LogError::InvalidUid(uid.to_owned()));
        }
        Ok(self.dir.join(format!("{uid}.log")))
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn open_existing(path: &Path) -> Result<Option<File>, LogError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LogError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The file at `path` if it exists, with its length now.
fn open_with_len(path: &Path) -> Result<Option<(File, u64)>, LogError> {
    let Some(file) = open_existing(path)? else {
        return Ok(None);
    };
    let len = file.metadata().map_err(|source| LogError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Some((file, len.len())))
}

fn read_into(file: File, limit: u64, path: &Path, out: &mut Vec<u8>) -> Result<(), LogError> {
    file.take(limit)
        .read_to_end(out)
        .map_err(|source| LogError::Io {
            path: path.to_owned(),
            source,
        })?;
    // A line cut by a crash (or by `limit`) must not run into the next file.
    if out.last().is_some_and(|b| *b != b'\n') {
        out.push(b'\n');
    }
    Ok(())
}

/// The lines of `text` that `query` selects: at or after `since` (a line
/// whose time does not parse counts as old), then the last `tail`.
fn select(text: &str, query: &LogQuery) -> Vec<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    if let Some(since) = query.since {
        lines.retain(|line| line_time(line).is_some_and(|time| time >= since));
    }
    if let Some(tail) = query.tail {
        let keep = usize::try_from(tail).unwrap_or(usize::MAX);
        let skip = lines.len().saturating_sub(keep);
        lines.drain(..skip);
    }
    lines.into_iter().map(str::to_owned).collect()
}

/// The time a log line was written.
fn line_time(line: &str) -> Option<Timestamp> {
    line.split_once(' ')?.0.parse().ok()
}

/// `<time> <stream> <text>`, the time with nanoseconds so that every line's
/// time has the same width.
fn format_line(time: Timestamp, stream: Stream, text: &[u8]) -> String {
    format!(
        "{time:.9} {} {}",
        stream.as_str(),
        String::from_utf8_lossy(text)
    )
}

/// One instance's log: cheap to clone, shared by all its requests.
#[derive(Debug, Clone)]
pub struct GuestLog(Arc<Shared>);

impl PartialEq for GuestLog {
    /// The same log, not merely the same file.
    fn eq(&self, other: &GuestLog) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for GuestLog {}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<FileState>,
    /// Every line written, for followers.
    lines: broadcast::Sender<Arc<str>>,
    /// Where lines go instead of the file: a sandbox sends them to the node.
    forward: Option<Forward>,
}

/// A sink for a sandbox's guest output, which the node writes.
struct Forward(Box<ForwardFn>);

/// What a forwarding log calls with each batch of whole lines.
type ForwardFn = dyn Fn(Stream, &[Vec<u8>]) + Send + Sync;

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forward")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The file being written, opened at the first line.
#[derive(Debug, Default)]
struct FileState {
    file: Option<File>,
    /// Bytes in `file`.
    size: u64,
    /// Whether the last write failed (warned once until one succeeds).
    failing: bool,
}

impl FileState {
    fn write(&mut self, path: &Path, max_bytes: u64, bytes: &[u8]) -> std::io::Result<()> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let file = append_to(path)?;
                self.size = file.metadata()?.len();
                file
            }
        };
        let len = bytes.len() as u64;
        let mut file = if self.size > 0 && self.size.saturating_add(len) > max_bytes {
            drop(file);
            std::fs::rename(path, rotated_path(path))?;
            self.size = 0;
            append_to(path)?
        } else {
            file
        };
        file.write_all(bytes)?;
        self.size = self.size.saturating_add(len);
        self.file = Some(file);
        Ok(())
    }
}

fn append_to(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl GuestLog {
    /// A log whose whole lines go to `forward` instead of a file: a
    /// sandbox's, which the node writes with [`GuestLog::append`].
    pub fn forwarding(forward: impl Fn(Stream, &[Vec<u8>]) + Send + Sync + 'static) -> GuestLog {
        GuestLog(Arc::new(Shared {
            path: PathBuf::new(),
            max_bytes: 0,
            file: Mutex::new(FileState::default()),
            lines: broadcast::channel(1).0,
            forward: Some(Forward(Box::new(forward))),
        }))
    }

    /// A stream for one request's `stream` (stdout or stderr): it keeps
    /// the request's unfinished line and writes whole lines here.
    pub fn output(&self, stream: Stream) -> GuestOutput {
        GuestOutput::new(self.clone(), stream)
    }

    /// Appends lines (without their newlines), stamped now, in one write.
    /// A failed write is logged on the node and the lines are lost: the
    /// guest goes on either way.
    pub fn append(&self, stream: Stream, texts: &[Vec<u8>]) {
        self.append_with(stream, texts, Timestamp::now);
    }

    fn append_with(&self, stream: Stream, texts: &[Vec<u8>], now: impl FnOnce() -> Timestamp) {
        if texts.is_empty() {
            return;
        }
        if let Some(Forward(forward)) = &self.0.forward {
            forward(stream, texts);
            return;
        }
        let mut state = self.0.lock();
        // Stamped under the lock, so that a file is in time order.
        let time = now();
        let lines: Vec<String> = texts
            .iter()
            .map(|text| format_line(time, stream, text))
            .collect();
        let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in &lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
        }
        match state.write(&self.0.path, self.0.max_bytes, &bytes) {
            Ok(()) => state.failing = false,
            Err(e) => {
                if !state.failing {
                    warn!(path = %self.0.path.display(), error = %e, "cannot write guest output; dropping it");
                }
                state.failing = true;
            }
        }
        if self.0.lines.receiver_count() > 0 {
            for line in lines {
                let _ = self.0.lines.send(Arc::from(line));
            }
        }
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

    #[test]
    fn expired_logs_of_stopped_instances_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let live = store.open("live").unwrap();
        live.append(Stream::Stdout, &texts(&["running"]));
        let gone = store.open("gone").unwrap();
        gone.append(Stream::Stdout, &texts(&["finished"]));
        store.close("gone");
        std::fs::write(dir.path().join("gone.log.1"), "old\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a log\n").unwrap();
        assert_eq!(
            store.remove_expired(std::time::Duration::from_secs(3600)),
            0
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(store.remove_expired(std::time::Duration::from_millis(1)), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["live.log", "notes.txt"]);
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn texts(lines: &[&str]) -> Vec<Vec<u8>> {
        lines.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    /// The text of each line, without time and stream.
    fn bodies(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn lines_carry_an_rfc3339_utc_time_and_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let log = store.open("u1").unwrap();
        log.append_with(Stream::Stdout, &texts(&["hello"]), || at(0));
        log.append_with(Stream::Stderr, &texts(&["oops", ""]), || at(1));
        let text = std::fs::read_to_string(dir.path().join("u1.log")).unwrap();
        assert_eq!(
            text,
            "2023-11-14T22:13:20.000000000Z stdout hello\n\
             2023-11-14T22:13:21.000000000Z stderr oops\n\
             2023-11-14T22:13:21.000000000Z stderr \n"
        );
        let read = store.read("u1", &LogQuery::default()).unwrap();
        assert_eq!(read.lines, text.lines().collect::<Vec<_>>());
        assert_eq!(line_time(&read.lines[0]), Some(at(0)));
    }

    #[test]
    fn rotation_keeps_one_previous_file_and_reads_across_both() {
        let dir = tempfile::tempdir().unwrap();
        // Each line is 45 bytes with its newline: two fit in 100 bytes.
        let store = LogStore::with_max_bytes(dir.path().to_owned(), 100).unwrap();
        let log = store.open("u1").unwrap();
        for i in 0..7 {
            log.append_with(Stream::Stdout, &texts(&[&format!("line {i}")]), || at(i));
        }
        let current = dir.path().join("u1.log");
        let previous = dir.path().join("u1.log.1");
        assert!(std::fs::metadata(&current).unwrap().len() <= 100);
        assert!(std::fs::metadata(&previous).unwrap().len() <= 100);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let read = store.read("u1", &LogQuery::default()).unwrap();
        assert_eq!(bodies(&read.lines), ["line 4", "line 5", "line 6"]);
    }

    #[test]
    fn rotation_happens_across_restarts_too() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::with_max_bytes(dir.path().to_owned(), 100).unwrap();
            let log = store.open("u1").unwrap();
            log.append_with(Stream::Stdout, &texts(&["a", "b"]), || at(0));
        }
        // A new node process appends to the file and counts its size.
        let store = LogStore::with_max_bytes(dir.path().to_owned(), 100).unwrap();
        let log = store.open("u1").unwrap();
        log.append_with(Stream::Stdout, &texts(&["c"]), || at(1));
        assert!(dir.path().join("u1.log.1").exists());
        let read = store.read("u1", &LogQuery::default()).unwrap();
        assert_eq!(bodies(&read.lines), ["a", "b", "c"]);
    }

    #[test]
    fn tail_and_since_select_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let log = store.open("u1").unwrap();
        for i in 0..5 {
            log.append_with(Stream::Stdout, &texts(&[&format!("line {i}")]), || at(i));
        }
        let read = |query: LogQuery| bodies(&store.read("u1", &query).unwrap().lines);
        let tail = |n| LogQuery {
            tail: Some(n),
            ..LogQuery::default()
        };
        assert_eq!(read(tail(2)), ["line 3", "line 4"]);
        assert_eq!(read(tail(0)), Vec::<String>::new());
        assert_eq!(read(tail(100)).len(), 5);
        let since = LogQuery {
            since: Some(at(3)),
            ..LogQuery::default()
        };
        assert_eq!(read(since), ["line 3", "line 4"]);
        let both = LogQuery {
            since: Some(at(1)),
            tail: Some(1),
            follow: false,
        };
        assert_eq!(read(both), ["line 4"]);
    }

    #[test]
    fn follow_sees_each_later_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let log = store.open("u1").unwrap();
        log.append(Stream::Stdout, &texts(&["before"]));
        let query = LogQuery {
            follow: true,
            ..LogQuery::default()
        };
        let mut read = store.read("u1", &query).unwrap();
        assert_eq!(bodies(&read.lines), ["before"]);
        log.append(Stream::Stdout, &texts(&["after"]));
        let follow = read.follow.as_mut().unwrap();
        let line = follow.try_recv().unwrap();
        assert!(line.ends_with(" stdout after"), "{line}");
        assert!(follow.try_recv().is_err());

        // Closed and unused: followers see the end.
        store.close("u1");
        drop(log);
        assert!(matches!(
            follow.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        // The file stays readable; following a stopped instance ends at once.
        let read = store.read("u1", &query).unwrap();
        assert_eq!(bodies(&read.lines), ["before", "after"]);
        assert!(read.follow.is_none());
    }

    #[test]
    fn unknown_and_unsafe_uids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        assert!(matches!(
            store.read("nope", &LogQuery::default()),
            Err(LogError::NotFound(_))
        ));
        for bad in ["", "../x", "a/b", "a.log", &"a".repeat(65)] {
            assert!(
                matches!(store.open(bad), Err(LogError::InvalidUid(_))),
                "{bad:?}"
            );
        }
        // A started instance that wrote nothing yet has an empty log.
        store.open("quiet").unwrap();
        assert!(
            store
                .read("quiet", &LogQuery::default())
                .unwrap()
                .lines
                .is_empty()
        );
    }
}
