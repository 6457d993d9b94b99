//! A component that misbehaves on purpose: the node's hostile-component
//! tests serve it next to well-behaved neighbours. The request path picks
//! the misbehaviour:
//!
//! - `/loop`: spins forever (the per-request deadline must stop it)
//! - `/memory`: allocates 1 MiB chunks until a `memory.grow` is refused,
//!   then aborts (a trap) like any Rust program out of memory
//! - `/recurse`: recurses without bound (the wasm stack limit must stop it)
//! - `/panic`: panics, which is a trap (`unreachable`) in wasm
//! - `/file`: opens `/etc/passwd`; without a preopen it must fail: 403
//! - `/socket`: connects to 127.0.0.1:1; without network access it must
//!   fail: 403
//! - `/stream`: a response body that never ends (a chunk every 10 ms)
//! - `/alloc-loop`: allocates and frees 64 KiB in a tight loop forever
//!   (the deadline must stop it; memory stays flat)
//! - `/hold/<mib>/<ms>`: fills `mib` MiB of memory, holds it for `ms`
//!   milliseconds, then answers `held`: concurrent requests add up, which
//!   is how a sandbox's cgroup limit is reached
//! - `/ok`: answers `ok`
//!
//! A denial the guest observes is answered with 403 and a body starting
//! `PermissionDenied`; a capability it was wrongly given, with 200.

use std::hint::black_box;
use std::time::Duration as StdDuration;

use wstd::http::{Body, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, wstd::http::Error> {
    match request.uri().path() {
        "/ok" => Ok(Response::new("ok".into())),
        "/loop" => spin_forever(),
        "/memory" => grow_until_refused(),
        "/recurse" => {
            let depth = recurse(0);
            text(StatusCode::OK, format!("returned from depth {depth}\n"))
        }
        "/panic" => panic!("the hostile component panics on purpose"),
        "/file" => match std::fs::File::open("/etc/passwd") {
            Ok(_) => text(StatusCode::OK, "opened /etc/passwd\n".to_owned()),
            Err(e) => denied("open /etc/passwd", &e),
        },
        "/socket" => match wstd::net::TcpStream::connect("127.0.0.1:1").await {
            Ok(_) => text(StatusCode::OK, "connected to 127.0.0.1:1\n".to_owned()),
            Err(e) => denied("connect to 127.0.0.1:1", &e),
        },
        "/stream" => Ok(Response::new(Body::from_stream(endless_chunks()))),
        "/alloc-loop" => allocate_forever(),
        path if path.starts_with("/hold/") => {
            let mut parts = path.trim_start_matches("/hold/").split('/');
            let mib: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
            let ms: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let held = black_box(vec![7u8; mib << 20]);
            wstd::task::sleep(Duration::from(StdDuration::from_millis(ms))).await;
            text(StatusCode::OK, format!("held {} MiB\n", black_box(&held).len() >> 20))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, wstd::http::Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}

/// 403 naming the operation and the error the guest got.
fn denied(what: &str, error: &std::io::Error) -> Result<Response<Body>, wstd::http::Error> {
    text(
        StatusCode::FORBIDDEN,
        format!("PermissionDenied: {what}: {error} ({:?})\n", error.kind()),
    )
}

fn spin_forever() -> ! {
    let mut count = 0u64;
    loop {
        count = black_box(count.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    loop {
        black_box(vec![1u8; 64 << 10]);
    }
}

fn grow_until_refused() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // `vec!` aborts when the allocator cannot grow the memory.
        chunks.push(black_box(vec![1u8; 1 << 20]));
        black_box(&chunks);
    }
}

/// Recurses until the stack runs out; `black_box` keeps the compiler from
/// turning the recursion into a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(recurse(black_box(depth + 1))).wrapping_add(1)
}

fn endless_chunks() -> impl futures_lite::Stream<Item = String> + Send {
    futures_lite::stream::unfold(0u64, |n| async move {
        wstd::task::sleep(Duration::from(StdDuration::from_millis(10))).await;
        Some((format!("chunk {n}\n"), n + 1))
    })
}
