//! The sandbox side: `berth sandbox`, the worker process a node starts per
//! sandbox. It connects back to the node twice (control, then client
//! connections), loads the instances the node sends, serves the client
//! connections the node hands over with the same ingress code as the node,
//! and exits when the node's end of the control connection closes, so that
//! no worker outlives its node.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use super::handoff;
use super::protocol::{self, FromWorker, RequestSample, ToWorker};
use crate::host::InstanceHost;
use crate::ingress::{self, Observer, Routes};
use crate::logs::{GuestLog, Stream};
use crate::runtime::WasmRuntime;

/// How often the worker sends the node its request samples.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Samples kept between two batches; past it, requests go uncounted
/// rather than grow the worker's memory.
const MAX_SAMPLES: usize = 65_536;

/// What `berth sandbox` is given by the node.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// The node's abstract Unix socket name.
    pub socket: String,
    /// The node's data directory (compiled artifacts).
    pub data_dir: std::path::PathBuf,
    /// The ingress domain.
    pub domain: String,
}

/// What the worker sends the node at each tick: request samples and
/// guest output.
struct Batch {
    samples: std::sync::Mutex<Vec<RequestSample>>,
    logs: std::sync::Mutex<Vec<FromWorker>>,
}

impl Observer for Batch {
    fn request(&self, namespace: &str, deployment: &str, status: u16, seconds: f64) {
        self.served("", namespace, deployment, status, seconds, false);
    }

    fn served(
        &self,
        uid: &str,
        namespace: &str,
        deployment: &str,
        status: u16,
        seconds: f64,
        trapped: bool,
    ) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            samples.push(RequestSample {
                namespace: namespace.to_owned(),
                deployment: deployment.to_owned(),
                status,
                seconds,
                terminated: None,
                uid: uid.to_owned(),
                trapped,
            });
        }
    }

    fn terminated(&self, reason: &'static str) {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES {
            samples.push(RequestSample {
                namespace: String::new(),
                deployment: String::new(),
                status: 0,
                seconds: 0.0,
                terminated: Some(reason.to_owned()),
                uid: String::new(),
                trapped: false,
            });
        }
    }
}

/// Runs the worker until the node goes away.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let control = connect(&args.socket, handoff::ROLE_CONTROL).await?;
    let connections = connect(&args.socket, handoff::ROLE_CONNECTIONS).await?;
    let runtime = Arc::new(WasmRuntime::new(&args.data_dir)?);
    let routes = Arc::new(Routes::default());
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let host = InstanceHost::new(Arc::clone(&runtime), Arc::clone(&routes), events_tx);
    let batch = Arc::new(Batch {
        samples: std::sync::Mutex::new(Vec::new()),
        logs: std::sync::Mutex::new(Vec::new()),
    });
    let (mut reader, writer) = control.into_split();
    let mut writer = tokio::io::BufWriter::new(writer);

    // Everything for the node goes through one writer.
    let writing = tokio::spawn({
        let batch = Arc::clone(&batch);
        async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            let mut reported = (0, 0);
            loop {
                let compiles = (runtime.compiled_count(), runtime.from_disk_count());
                if compiles != reported {
                    let message = FromWorker::Compiles {
                        compiled: compiles.0.saturating_sub(reported.0),
                        disk: compiles.1.saturating_sub(reported.1),
                    };
                    reported = compiles;
                    if protocol::send(&mut writer, &message).await.is_err() {
                        break;
                    }
                }
                let message = tokio::select! {
                    Some(event) = events.recv() => {
                        // Output written before the event goes first: once
                        // a job's run has exited, the node forgets the
                        // instance and would drop its last lines.
                        let logs = std::mem::take(&mut *batch.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                        let mut failed = false;
                        for message in logs {
                            failed |= protocol::write(&mut writer, &message).await.is_err();
                        }
                        if failed {
                            break;
                        }
                        FromWorker::Event(event)
                    }
                    _ = tick.tick() => {
                        // Guest output and request samples go in one
                        // write per tick, not one per line or request.
                        let logs = std::mem::take(&mut *batch.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                        let mut failed = false;
                        for message in logs {
                            failed |= protocol::write(&mut writer, &message).await.is_err();
                        }
                        let samples = std::mem::take(&mut *batch.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
                        if !samples.is_empty() {
                            failed |= protocol::write(&mut writer, &FromWorker::Requests(samples)).await.is_err();
                        }
                        let instantiations = runtime.take_instantiations();
                        if !instantiations.is_empty() {
                            failed |= protocol::write(&mut writer, &FromWorker::Instantiations(instantiations)).await.is_err();
                        }
                        if failed || writer.flush().await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                if protocol::send(&mut writer, &message).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        }
    });

    let (drain_tx, drain) = watch::channel(false);
    let domain = ingress::normalize_domain(&args.domain);
    let serving = tokio::spawn({
        let routes = Arc::clone(&routes);
        let observer: Arc<dyn Observer> = Arc::clone(&batch) as Arc<dyn Observer>;
        async move {
            loop {
                let streams = match handoff::receive(&connections).await {
                    Ok(streams) => streams,
                    Err(e) => {
                        tracing::debug!(error = %e, "sandbox connection channel closed");
                        break;
                    }
                };
                for stream in streams {
                    let peer = stream
                        .peer_addr()
                        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                    tokio::spawn(ingress::serve_connection(
                        stream,
                        peer,
                        Arc::clone(&routes),
                        Arc::clone(&domain),
                        Arc::clone(&observer),
                        drain.clone(),
                    ));
                }
            }
        }
    });

    loop {
        match protocol::recv::<ToWorker>(&mut reader).await {
            Ok(Some(ToWorker::Load(spec))) => {
                let log = forwarding_log(&spec.uid, Arc::clone(&batch));
                host.load(*spec, Some(log));
            }
            Ok(Some(ToWorker::Unload { uid, grace_ms })) => {
                host.unload(&uid, Duration::from_millis(grace_ms));
            }
            Ok(Some(ToWorker::Canaries(canaries))) => routes.set_canaries(&canaries),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "sandbox control connection failed");
                break;
            }
        }
    }
    // The node is gone or told us to stop: nothing here may outlive it.
    let _ = drain_tx.send(true);
    serving.abort();
    writing.abort();
    Ok(())
}

/// Connects to the node's socket and says which connection this is.
async fn connect(name: &str, role: u8) -> Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .with_context(|| format!("invalid sandbox socket name {name:?}"))?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)
        .with_context(|| format!("cannot connect to the node at @{name}"))?;
    stream.set_nonblocking(true)?;
    let mut stream = UnixStream::from_std(stream)?;
    stream.write_all(&[role]).await?;
    if role != handoff::ROLE_CONTROL && role != handoff::ROLE_CONNECTIONS {
        bail!("unknown role {role}");
    }
    Ok(stream)
}

/// A log whose lines go to the node in `Log` messages, at the next tick.
fn forwarding_log(uid: &str, batch: Arc<Batch>) -> GuestLog {
    let uid = uid.to_owned();
    GuestLog::forwarding(move |stream, lines| {
        let mut logs = batch
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logs.len() >= MAX_SAMPLES {
            return;
        }
        logs.push(FromWorker::Log {
            uid: uid.clone(),
            stream: match stream {
                Stream::Stdout => 1,
                Stream::Stderr => 2,
            },
            lines: lines.to_vec(),
        });
    })
}
