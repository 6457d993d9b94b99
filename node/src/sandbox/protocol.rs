//! What the node and a sandbox (worker process) say to each other over the
//! sandbox's control connection: length-prefixed postcard frames, at most
//! [`MAX_FRAME`] bytes each.
//!
//! The node sends [`ToWorker`]; the worker answers with [`FromWorker`].
//! Client connections travel on a second Unix connection, as file
//! descriptors (`SCM_RIGHTS`), one byte each; see [`super::handoff`].
//! Both ends are the same `berth` binary, so the format has no version.

use std::path::PathBuf;

use berth_api::lifecycle::Probes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// The largest frame either side accepts: 16 MiB (a batch of log lines or
/// request samples stays far below).
pub const MAX_FRAME: u32 = 16 * 1024 * 1024;

/// An instance to load into a sandbox: everything the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// Instance uid.
    pub uid: String,
    /// Instance name, for logs.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Deployment whose host routes to it; empty for a command.
    pub deployment: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Where the component's bytes are on disk.
    pub wasm: PathBuf,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Bound on each linear memory.
    pub memory_limit_bytes: Option<u64>,
    /// `allowedOutboundHosts`, as written.
    pub allowed_outbound_hosts: Vec<String>,
    /// The node's service router, where the instance's calls to Services
    /// (`http://NAME.NAMESPACE.svc`, `http://NAME`) go; `None` when the
    /// node routes no Services.
    pub service_router: Option<std::net::SocketAddr>,
    /// The caller header its calls to Services carry
    /// (`crate::services::policy::instance_header`).
    pub service_caller: String,
    /// Per-request deadline, in milliseconds.
    pub request_timeout_ms: u64,
    /// Probes, resolved.
    pub probes: Probes,
    /// A command (`wasi:cli/run`) to run to completion, not an HTTP handler.
    pub command: bool,
}

/// Node to worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Prepare this instance and route to it.
    Load(Box<LoadSpec>),
    /// Stop routing to it, give in-flight requests `grace_ms`, then drop it.
    Unload {
        /// Instance uid.
        uid: String,
        /// Milliseconds in-flight requests get.
        grace_ms: u64,
    },
    /// How to split Deployments' requests between canary and stable
    /// revisions from now on (all of them, replacing the last).
    Canaries(Vec<berth_api::wire::CanaryRoute>),
}

/// Something that happened to an instance in a host (in a worker or in the
/// node's own process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostEvent {
    /// Loading ended: `Ok` means it serves (or runs).
    Loaded {
        /// Instance uid.
        uid: String,
        /// `Err((reason, message))` when it could not be prepared.
        result: Result<(), (String, String)>,
    },
    /// Its readiness changed.
    Ready {
        /// Instance uid.
        uid: String,
        /// Whether it receives traffic.
        ready: bool,
        /// Why, when not ready.
        message: String,
    },
    /// Its liveness or startup probe failed: restart it.
    Unhealthy {
        /// Instance uid.
        uid: String,
        /// Kubernetes-style message ("Liveness probe failed: ...").
        message: String,
    },
    /// A command ended.
    Exited {
        /// Instance uid.
        uid: String,
        /// Its exit code, when it exited rather than trapped.
        exit_code: Option<i32>,
        /// `Completed`, `Error` or a termination reason.
        reason: String,
        /// Details.
        message: String,
    },
}

/// One request a worker served, for the node's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSample {
    /// Namespace, empty when no deployment served it.
    pub namespace: String,
    /// Deployment, empty when none served it.
    pub deployment: String,
    /// Response status.
    pub status: u16,
    /// Seconds from arrival to response head.
    pub seconds: f64,
    /// The termination reason, when the node stopped the component.
    pub terminated: Option<String>,
    /// The instance that answered; empty when not known.
    pub uid: String,
    /// Whether the node stopped the instance's component for it.
    pub trapped: bool,
}

/// Worker to node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// An instance event.
    Event(HostEvent),
    /// Lines an instance wrote (`stream` 1 is stdout, 2 stderr).
    Log {
        /// Instance uid.
        uid: String,
        /// 1 stdout, 2 stderr.
        stream: u8,
        /// The lines, without newlines.
        lines: Vec<Vec<u8>>,
    },
    /// Requests served since the last batch.
    Requests(Vec<RequestSample>),
    /// Seconds each instantiation for a request took since the last
    /// batch (sent with the requests).
    Instantiations(Vec<f64>),
    /// Components compiled, and loaded from compiled artifacts on disk,
    /// since the last report.
    Compiles {
        /// Compiled with cranelift.
        compiled: u64,
        /// Loaded from disk.
        disk: u64,
    },
}

/// Errors of the control connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or closed.
    #[error("sandbox connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over [`MAX_FRAME`].
    #[error("sandbox frame of {0} bytes is over the limit")]
    TooLarge(u32),
    /// Bytes that are not a message.
    #[error("sandbox frame does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// Writes one frame and flushes.
pub async fn send<T: Serialize>(
    writer: &mut (impl AsyncWrite + Unpin),
    message: &T,
) -> Result<(), FrameError> {
    write(writer, message).await?;
    writer.flush().await?;
    Ok(())
}

/// Writes one frame without flushing (into a buffered writer).
pub async fn write<T: Serialize>(
    writer: &mut (impl AsyncWrite + Unpin),
    message: &T,
) -> Result<(), FrameError> {
    let bytes = postcard::to_stdvec(message)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME)
        .ok_or(FrameError::TooLarge(u32::MAX))?;
    writer.write_u32(len).await?;
    writer.write_all(&bytes).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn recv<T: for<'de> Deserialize<'de>>(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<Option<T>, FrameError> {
    let len = match reader.read_u32().await {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut bytes = vec![0; len as usize];
    reader.read_exact(&mut bytes).await?;
    Ok(Some(postcard::from_bytes(&bytes)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_roundtrip_and_garbage_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let message = ToWorker::Unload {
            uid: "u".into(),
            grace_ms: 5,
        };
        send(&mut a, &message).await.unwrap();
        assert_eq!(recv::<ToWorker>(&mut b).await.unwrap(), Some(message));
        a.write_u32(MAX_FRAME + 1).await.unwrap();
        assert!(matches!(
            recv::<ToWorker>(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));
        drop(a);
        assert_eq!(recv::<ToWorker>(&mut b).await.unwrap(), None);
    }
}
