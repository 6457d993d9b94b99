//! Node-to-node forwarding: Service calls to an endpoint on another node
//! travel over a mutually authenticated QUIC connection to that node's
//! peer listener (`docs/decisions/0031-node-to-node-forwarding.md`).
//!
//! [`Peers`] is both ends. As a client it keeps one connection per peer
//! node and opens a bidirectional stream per HTTP/1.1 connection of the
//! router's pool ([`Peers::open`]): the stream carries the same bytes a
//! TCP connection to the peer's ingress would. As a server
//! ([`Peers::serve`]) it relays each stream another node opens to its own
//! ingress over loopback, so a forwarded call is dispatched exactly as the
//! ingress dispatches any request: to a sandbox, a container or an
//! in-process instance of the Deployment its `Host` names.
//!
//! Network policy holds here too: once the router hands its
//! [`super::policy::Policies`] over ([`Peers::enforce`]), each stream is
//! served as HTTP/1.1 rather than copied byte for byte, and every call is
//! checked, with the caller the calling node names, against this node's
//! endpoints of the Deployment its `Host` names before it goes on to the
//! ingress ([`relay_checked`]); a refused call gets 403.
//!
//! Who may connect is settled in the TLS handshake (`berth_api::quic::peer`):
//! both ends show node certificates of the cluster CA; a user's
//! certificate is refused. A node whose certificate predates node-to-node
//! forwarding (no `serverAuth`) does not listen ([`Peers::client_only`]);
//! it still calls its peers, and calls to it go as plain HTTP to its
//! ingress.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_api::quic::{self, Identity, QuicError, peer_server_name};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use http::StatusCode;
use http_body_util::BodyExt;
use hyper::Request;

use super::forward::{CONNECT_TIMEOUT, text};
use super::policy::{self, Policies};

/// The QUIC close code of a node shutting down.
const CLOSE_SHUTDOWN: u32 = 0;

/// The stream reset code when the local ingress cannot be reached.
const RESET_NO_INGRESS: u32 = 1;

/// Peer connections (and handshakes) served at once; one more is refused.
/// A cluster's nodes need one each.
pub const MAX_PEER_CONNECTIONS: usize = 1024;

/// How long a relay may take to reach the local ingress.
const INGRESS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the peer endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The node's credentials do not make a QUIC configuration.
    #[error("node-to-node tls configuration: {0}")]
    Tls(#[from] QuicError),
    /// The socket could not be bound.
    #[error("cannot listen for peer nodes on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// One connection per peer node, shared by every call to it; `None` until
/// the first call or after it closed.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// This node's end of node-to-node QUIC: a client for calls to peers and,
/// unless [`Peers::client_only`], a listener for theirs.
pub struct Peers {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    /// Whether the endpoint accepts connections.
    listening: bool,
    /// Connections to peers, by node name and peer address.
    connections: Mutex<HashMap<(String, String), Slot>>,
    /// The network policies calls from peers are checked against.
    policies: std::sync::OnceLock<Arc<Policies>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("local", &self.endpoint.local_addr().ok())
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Listens for peer nodes on `addr` with `identity` (a node certificate
    /// that [`quic::serves_peers`]), and calls them with it.
    pub fn listen(addr: SocketAddr, identity: &Identity, ca_pem: &str) -> Result<Peers, PeerError> {
        let server = quic::peer_server_config(identity, ca_pem)?;
        let endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| PeerError::Bind { addr, source })?;
        Ok(Peers {
            endpoint,
            client: quic::peer_client_config(identity, ca_pem)?,
            listening: true,
            connections: Mutex::default(),
            policies: std::sync::OnceLock::new(),
        })
    }

    /// Calls peer nodes with `identity` from an ephemeral port of `addr`'s
    /// address family, listening for none.
    pub fn client_only(
        addr: SocketAddr,
        identity: &Identity,
        ca_pem: &str,
    ) -> Result<Peers, PeerError> {
        let bind = SocketAddr::new(unspecified(addr.ip()), 0);
        let endpoint = quinn::Endpoint::client(bind)
            .map_err(|source| PeerError::Bind { addr: bind, source })?;
        Ok(Peers {
            endpoint,
            client: quic::peer_client_config(identity, ca_pem)?,
            listening: false,
            connections: Mutex::default(),
            policies: std::sync::OnceLock::new(),
        })
    }

    /// Checks peers' calls against `policies` from now on; the first set
    /// stays.
    pub fn enforce(&self, policies: Arc<Policies>) {
        let _ = self.policies.set(policies);
    }

    /// The address peers reach this node at: what it registers as
    /// `peerAddress`; `None` when it does not listen.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listening
            .then(|| self.endpoint.local_addr().ok())
            .flatten()
    }

    fn slot(&self, node: &str, address: &str) -> Slot {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.retain(|_, slot| {
            slot.try_lock().map_or(true, |c| {
                c.as_ref().is_some_and(|c| c.close_reason().is_none())
            })
        });
        Arc::clone(
            connections
                .entry((node.to_owned(), address.to_owned()))
                .or_default(),
        )
    }

    /// The open connection to node `node` at `address`, made if there is
    /// none.
    async fn connection(&self, node: &str, address: &str) -> Result<quinn::Connection, String> {
        let slot = self.slot(node, address);
        let mut current = slot.lock().await;
        if let Some(connection) = current.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        *current = None;
        let addr = resolve(address).await?;
        let name = peer_server_name(node);
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, &name)
            .map_err(|e| format!("cannot connect to node {node} at {address}: {e}"))?;
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(format!("cannot connect to node {node} at {address}: {e}")),
            Err(_) => {
                return Err(format!(
                    "cannot connect to node {node} at {address}: timed out"
                ));
            }
        };
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// A new HTTP/1.1 connection to node `node`'s ingress, over a stream of
    /// the QUIC connection to its peer listener at `address`. A pooled
    /// QUIC connection found closed is replaced once.
    pub(super) async fn open(
        &self,
        node: &str,
        address: &str,
    ) -> Result<SendRequest<super::forward::CallBody>, String> {
        let mut connection = self.connection(node, address).await?;
        let (send, recv) = match open_stream(&connection).await {
            Ok(stream) => stream,
            Err(_) => {
                connection = self.connection(node, address).await?;
                open_stream(&connection)
                    .await
                    .map_err(|e| format!("cannot open a stream to node {node}: {e}"))?
            }
        };
        let io = TokioIo::new(tokio::io::join(recv, send));
        let (sender, http) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("cannot connect to node {node}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = http.await {
                tracing::debug!(error = %e, "service router peer stream ended with an error");
            }
        });
        Ok(sender)
    }

    /// Takes peer nodes' connections until `shutdown` resolves, relaying
    /// each stream to this node's ingress at `ingress`; then closes every
    /// connection, its own calls' too. Returns at once when not listening.
    pub async fn serve(
        self: Arc<Self>,
        ingress: SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let ingress = reachable(ingress);
        tokio::pin!(shutdown);
        if self.listening {
            let limit = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CONNECTIONS));
            loop {
                let incoming = tokio::select! {
                    () = &mut shutdown => break,
                    incoming = self.endpoint.accept() => incoming,
                };
                let Some(incoming) = incoming else { break };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    incoming.refuse();
                    continue;
                };
                let policies = self.policies.get().cloned();
                tokio::spawn(async move {
                    accept(incoming, ingress, policies).await;
                    drop(permit);
                });
            }
        } else {
            shutdown.await;
        }
        self.endpoint
            .close(CLOSE_SHUTDOWN.into(), b"node shutting down");
    }
}

/// Opens a bidirectional stream, waiting at most [`CONNECT_TIMEOUT`] for
/// the peer to allow one more.
async fn open_stream(
    connection: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connection.open_bi()).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no stream available: timed out".to_owned()),
    }
}

/// Completes one peer's handshake (the verifier admits only nodes of the
/// cluster) and relays each of its streams.
async fn accept(incoming: quinn::Incoming, ingress: SocketAddr, policies: Option<Arc<Policies>>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "refused a peer connection");
            return;
        }
    };
    let node = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| {
            certs
                .first()
                .and_then(|leaf| berth_api::quic::peer::certificate_node(leaf))
        })
        .unwrap_or_default();
    tracing::debug!(%remote, %node, "peer node connected");
    while let Ok((send, recv)) = connection.accept_bi().await {
        match &policies {
            Some(policies) => {
                tokio::spawn(relay_checked(send, recv, ingress, Arc::clone(policies)));
            }
            None => {
                tokio::spawn(relay(send, recv, ingress));
            }
        }
    }
}

/// Copies one stream to a new connection to the local ingress and back,
/// until both directions end.
async fn relay(mut send: quinn::SendStream, recv: quinn::RecvStream, ingress: SocketAddr) {
    let tcp = match tokio::time::timeout(INGRESS_CONNECT_TIMEOUT, TcpStream::connect(ingress)).await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::warn!(%ingress, error = %e, "cannot relay a peer's call to the ingress");
            let _ = send.reset(RESET_NO_INGRESS.into());
            return;
        }
        Err(_) => {
            tracing::warn!(%ingress, "cannot relay a peer's call to the ingress: timed out");
            let _ = send.reset(RESET_NO_INGRESS.into());
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut tcp = tcp;
    let mut stream = tokio::io::join(recv, send);
    if let Err(e) = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await {
        tracing::debug!(error = %e, "peer relay ended with an error");
    }
}

/// Serves one stream as HTTP/1.1: each call is checked against network
/// policy, then sent on over one connection to the local ingress, opened
/// at the first admitted call.
async fn relay_checked(
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    ingress: SocketAddr,
    policies: Arc<Policies>,
) {
    let upstream: Arc<tokio::sync::Mutex<Option<SendRequest<Incoming>>>> = Arc::default();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let policies = Arc::clone(&policies);
        let upstream = Arc::clone(&upstream);
        async move {
            let origin = policy::peer_origin(req.headers_mut());
            let host = crate::ingress::request_host(&req).unwrap_or_default();
            let mut labels = host.split('.');
            let (deployment, namespace) = (
                labels.next().unwrap_or_default(),
                labels.next().unwrap_or_default(),
            );
            if let Err(denied) = policies.decide_local(namespace, deployment, &origin) {
                tracing::debug!(%host, %denied, "peer call refused by network policy");
                return Ok::<_, std::convert::Infallible>(policy::forbidden(&denied));
            }
            let mut upstream = upstream.lock().await;
            let sender = match upstream.as_mut() {
                Some(sender) if !sender.is_closed() => sender,
                _ => match super::forward::connect(&ingress.to_string()).await {
                    Ok(sender) => upstream.insert(sender),
                    Err(e) => {
                        return Ok(text(StatusCode::BAD_GATEWAY, format!("{e}\n")));
                    }
                },
            };
            if sender.ready().await.is_err() {
                return Ok(text(
                    StatusCode::BAD_GATEWAY,
                    "the local ingress closed the connection\n".to_owned(),
                ));
            }
            Ok(match sender.send_request(req).await {
                Ok(response) => response.map(BodyExt::boxed),
                Err(e) => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
            })
        }
    });
    let io = TokioIo::new(tokio::io::join(recv, send));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await
    {
        tracing::debug!(error = %e, "peer relay ended with an error");
    }
}

/// `host:port` as a socket address, resolving a name if it is one.
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("cannot resolve {address}: no address"))
}

/// The unspecified address of `ip`'s family.
fn unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Where this node reaches a listener bound to `addr`: loopback of the
/// same family when it listens on every address.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let reached = |addr: &str| reachable(addr.parse().unwrap()).to_string();
        assert_eq!(reached("0.0.0.0:80"), "127.0.0.1:80");
        assert_eq!(reached("[::]:80"), "[::1]:80");
        assert_eq!(reached("10.0.0.1:80"), "10.0.0.1:80");
    }
}
