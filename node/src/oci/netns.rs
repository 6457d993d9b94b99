//! Reaching a container's port inside its network namespace.
//!
//! A container has a network namespace of its own with only loopback in
//! it: no addresses to allocate, no bridge, nothing another container can
//! reach. The node keeps a handle on that namespace (`/proc/PID/ns/net`
//! of the container's first process) and, to connect, creates the socket
//! inside it: a short-lived thread enters the namespace, opens the socket
//! and ends; the socket stays in that namespace whatever thread uses it
//! next, so tokio connects it to `127.0.0.1:PORT` like any other.
//!
//! The thread is thrown away rather than returned to a pool because
//! `setns` changes the calling thread for good.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::PathBuf;

use tokio::net::{TcpSocket, TcpStream};

/// Where connections to one container go.
#[derive(Debug)]
pub enum Network {
    /// Its own namespace.
    Namespace(File),
    /// The node's (`hostNetwork: true`).
    Host,
    /// None: the container exited before its namespace could be opened.
    Exited,
}

impl Network {
    /// The network namespace of process `pid`.
    pub fn of_process(pid: u32) -> io::Result<Network> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        File::open(&path).map(Network::Namespace)
    }

    /// Connects to `127.0.0.1:port` in this network.
    pub async fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let socket = match self {
            Network::Exited => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the container has exited",
                ));
            }
            Network::Host => TcpSocket::new_v4()?,
            Network::Namespace(namespace) => {
                let namespace = namespace.try_clone()?;
                let socket = tokio::task::spawn_blocking(move || {
                    std::thread::scope(|scope| {
                        scope
                            .spawn(|| socket_in(&namespace))
                            .join()
                            .unwrap_or_else(|_| Err(io::Error::other("socket thread panicked")))
                    })
                })
                .await
                .map_err(io::Error::other)??;
                TcpSocket::from_std_stream(socket.into())
            }
        };
        socket.connect(addr).await
    }
}

/// A non-blocking TCP socket created inside `namespace`; the calling thread
/// enters the namespace and must not be used for anything else afterwards.
fn socket_in(namespace: &File) -> io::Result<socket2::Socket> {
    rustix::thread::move_into_link_name_space(
        namespace.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_network_connects_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = Network::Host.connect(port).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
    }

    #[tokio::test]
    async fn our_own_namespace_is_reachable_through_its_handle() {
        // The node's own namespace stands in for a container's: entering
        // it changes nothing, so the listener here is what answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = Network::of_process(std::process::id()).unwrap();
        let stream = own.connect(port).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap().port(), port);
    }
}
