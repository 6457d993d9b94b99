//! A guest's stdout or stderr as wasmtime-wasi sees it: a stream that cuts
//! what one request writes into lines and appends whole lines to its
//! instance's [`GuestLog`].
//!
//! Each request gets its own [`GuestOutput`] per stream (wasi's
//! `get-stdout` may hand the guest several handles; they share it), so the
//! unfinished line of one request never mixes with another's: concurrent
//! requests of an instance interleave in the log by whole lines. A line the
//! guest leaves unfinished is written when the request's store is dropped.
//!
//! Writes go to the file synchronously, as wasmtime-wasi's own
//! `OutputFile` does: a line reaches the page cache before the guest's
//! write returns, so nothing is lost when a request is cut short.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::{GuestLog, MAX_LINE_BYTES, Stream};

/// Bytes the guest may write in one `write` call (wasi's `check-write`
/// permit); wasmtime-wasi's own streams allow about as much.
pub const WRITE_PERMIT: usize = 64 * 1024;

/// One request's stdout or stderr.
#[derive(Clone)]
pub struct GuestOutput {
    buffer: Arc<LineBuffer>,
}

impl std::fmt::Debug for GuestOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestOutput")
            .field("stream", &self.buffer.stream)
            .finish_non_exhaustive()
    }
}

/// The unfinished line of one request's stream; written out when dropped.
struct LineBuffer {
    log: GuestLog,
    stream: Stream,
    pending: Mutex<Vec<u8>>,
}

impl GuestOutput {
    pub(super) fn new(log: GuestLog, stream: Stream) -> GuestOutput {
        GuestOutput {
            buffer: Arc::new(LineBuffer {
                log,
                stream,
                pending: Mutex::new(Vec::new()),
            }),
        }
    }

    fn push(&self, bytes: &[u8]) {
        self.buffer.write(bytes);
    }
}

impl LineBuffer {
    fn write(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        let lines = take_lines(&mut pending);
        self.log.append(self.stream, &lines);
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let pending = std::mem::take(
            self.pending
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !pending.is_empty() {
            self.log.append(self.stream, &[pending]);
        }
    }
}

/// Takes the finished lines out of `pending` (without their `\n` or
/// `\r\n`), cutting any line longer than [`MAX_LINE_BYTES`]; leaves the
/// unfinished rest, shorter than that.
fn take_lines(pending: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    if let Some(last) = pending.iter().rposition(|b| *b == b'\n') {
        let rest = pending.split_off(last + 1);
        let finished = std::mem::replace(pending, rest);
        let finished = finished.strip_suffix(b"\n").unwrap_or(&finished);
        for line in finished.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                lines.push(Vec::new());
            }
            lines.extend(line.chunks(MAX_LINE_BYTES).map(<[u8]>::to_vec));
        }
    }
    while pending.len() >= MAX_LINE_BYTES {
        let rest = pending.split_off(MAX_LINE_BYTES);
        lines.push(std::mem::replace(pending, rest));
    }
    lines
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    /// Always ready: a write completes before it returns.
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Whole lines are already written; an unfinished one waits for its
        // newline or the end of the request.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
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
    use crate::logs::{LogQuery, LogStore};

    fn bodies(store: &LogStore) -> Vec<String> {
        store
            .read("u1", &LogQuery::default())
            .unwrap()
            .lines
            .iter()
            .map(|l| {
                let mut parts = l.splitn(3, ' ');
                let _time = parts.next();
                format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
            })
            .collect()
    }

    #[test]
    fn concurrent_requests_interleave_by_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let log = store.open("u1").unwrap();
        let mut a = log.output(Stream::Stdout);
        let mut b = log.output(Stream::Stdout);
        let mut err = log.output(Stream::Stderr);
        a.write(Bytes::from_static(b"a: one ")).unwrap();
        b.write(Bytes::from_static(b"b: one")).unwrap();
        err.write(Bytes::from_static(b"warn")).unwrap();
        a.write(Bytes::from_static(b"line\r\na: two")).unwrap();
        b.write(Bytes::from_static(b"\n\nb: three\n")).unwrap();
        assert_eq!(
            bodies(&store),
            [
                "stdout a: one line",
                "stdout b: one",
                "stdout ",
                "stdout b: three"
            ]
        );
        // Unfinished lines are written when their request ends.
        drop(a);
        drop(err);
        assert_eq!(bodies(&store)[4..], ["stdout a: two", "stderr warn"]);
    }

    #[test]
    fn handles_of_one_request_share_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path().to_owned()).unwrap();
        let output = store.open("u1").unwrap().output(Stream::Stdout);
        let mut first = output.p2_stream();
        let mut second = output.p2_stream();
        first.write(Bytes::from_static(b"half ")).unwrap();
        second.write(Bytes::from_static(b"and half\n")).unwrap();
        assert_eq!(bodies(&store), ["stdout half and half"]);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut pending = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let lines = take_lines(&mut pending);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LINE_BYTES));
        assert_eq!(pending.len(), 10);

        let mut pending = vec![b'y'; MAX_LINE_BYTES + 1];
        pending.push(b'\n');
        let lines = take_lines(&mut pending);
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, 1]
        );
        assert!(pending.is_empty());
    }
}
