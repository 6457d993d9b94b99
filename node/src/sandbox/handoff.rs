//! Client connections from the node's ingress to a sandbox: the node reads
//! (without consuming) the first request head to learn its host, then
//! passes the socket itself to the worker serving that host, which serves
//! the connection from its first byte. A connection belongs to one origin
//! (HTTP/1.1 clients pool connections per host), so it stays with the
//! sandbox that got it; a later request on it for a host that sandbox does
//! not serve is answered 404 there.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use sendfd::{RecvWithFd as _, SendWithFd as _};
use tokio::net::{TcpStream, UnixStream};

/// The first byte of the worker's control connection.
pub const ROLE_CONTROL: u8 = b'C';
/// The first byte of the worker's client-connection channel.
pub const ROLE_CONNECTIONS: u8 = b'F';

/// The most of a request head the node reads to find its host: 16 KiB.
/// A longer head is answered by the node itself (431 from hyper).
pub const MAX_PEEK: usize = 16 * 1024;

/// Descriptors received in one go.
const FDS_PER_READ: usize = 32;

/// Why the host could not be read.
#[derive(Debug)]
pub enum Peek {
    /// The host, lowercase, without port.
    Host(String),
    /// The node should answer itself (bad or oversized head, no host).
    Local,
    /// The client went away.
    Closed,
}

/// Reads the first request head on `stream` without consuming it and
/// returns its host, waiting at most until `deadline`.
pub async fn peek_host(stream: &TcpStream, deadline: Instant) -> Peek {
    let mut buf = vec![0u8; MAX_PEEK];
    let mut pause = Duration::from_millis(1);
    loop {
        if stream.readable().await.is_err() {
            return Peek::Closed;
        }
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return Peek::Closed,
            Ok(n) => n,
        };
        let head = buf.get(..n).unwrap_or_default();
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {
                return host_of(&request).map_or(Peek::Local, Peek::Host);
            }
            Ok(httparse::Status::Partial) if n < MAX_PEEK => {}
            _ => return Peek::Local,
        }
        // The rest of the head has not arrived: peeking again at once would
        // spin, so wait a little longer each time.
        if Instant::now() >= deadline {
            return Peek::Local;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn host_of(request: &httparse::Request<'_, '_>) -> Option<String> {
    let from_uri = request
        .path
        .and_then(|path| path.parse::<http::Uri>().ok())
        .and_then(|uri| uri.host().map(str::to_owned));
    let host = match from_uri {
        Some(host) => host,
        None => {
            let value = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))?
                .value;
            let authority: http::uri::Authority = std::str::from_utf8(value).ok()?.parse().ok()?;
            authority.host().to_owned()
        }
    };
    Some(host.to_ascii_lowercase())
}

/// Sends `stream`'s socket to the worker on `channel`; the node's copy is
/// closed on return.
pub async fn send(channel: &UnixStream, stream: TcpStream) -> std::io::Result<()> {
    let stream = stream.into_std()?;
    let fd: RawFd = stream.as_raw_fd();
    loop {
        channel.writable().await?;
        match channel.send_with_fd(&[1], &[fd]) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receives the next sockets the node sent on `channel`.
pub async fn receive(channel: &UnixStream) -> std::io::Result<Vec<TcpStream>> {
    let mut bytes = [0u8; FDS_PER_READ];
    let mut fds: [RawFd; FDS_PER_READ] = [-1; FDS_PER_READ];
    loop {
        channel.readable().await?;
        match channel.recv_with_fd(&mut bytes, &mut fds) {
            Ok((0, _)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok((_, count)) => {
                let mut streams = Vec::with_capacity(count);
                for fd in fds.iter().take(count) {
                    streams.push(tcp_stream(*fd)?);
                }
                return Ok(streams);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Takes ownership of a received descriptor as a tokio stream.
#[allow(unsafe_code)]
fn tcp_stream(fd: RawFd) -> std::io::Result<TcpStream> {
    // SAFETY: `fd` was just created in this process by the kernel for an
    // SCM_RIGHTS message (`recv_with_fd` returns only descriptors it
    // received), so nothing else owns or will close it. The node sends only
    // TCP sockets, so wrapping it as one is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stream = std::net::TcpStream::from(owned);
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn peeks_host_and_passes_the_socket_with_its_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: Hello.Default.berth.localhost:8080\r\n\r\n";
        let client = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(HEAD).await.unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            answer
        });
        let (server, _) = listener.accept().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        match peek_host(&server, deadline).await {
            Peek::Host(host) => assert_eq!(host, "hello.default.berth.localhost"),
            other => panic!("unexpected {other:?}"),
        }
        let (node_end, worker_end) = UnixStream::pair().unwrap();
        send(&node_end, server).await.unwrap();
        let mut received = receive(&worker_end).await.unwrap();
        assert_eq!(received.len(), 1);
        let mut stream = received.pop().unwrap();
        // Nothing was consumed by the peek: the worker reads the whole head.
        let mut head = vec![0u8; HEAD.len()];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head, HEAD);
        stream.write_all(b"done").await.unwrap();
        drop(stream);
        assert_eq!(client.await.unwrap(), "done");
    }

    #[tokio::test]
    async fn garbage_heads_are_answered_locally() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"\x00\x01 not http\r\n\r\n")
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(peek_host(&server, deadline).await, Peek::Local));
    }
}
