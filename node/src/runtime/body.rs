//! A component's response body that ends in an error when its instance is
//! stopped after the response head went out.
//!
//! wasmtime's outgoing body ends cleanly when its store is dropped, so a
//! stream cut by a deadline or a trap would look complete to the client.
//! [`InstanceBody`] turns that end into an error frame instead; hyper then
//! closes the connection without the final chunk, and the client sees a
//! truncated response.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::limits::Termination;

/// The body of a response whose instance may still fail while streaming.
pub(crate) struct InstanceBody {
    body: HyperOutgoingBody,
    /// How the instance's request ended: `Some` if it was terminated. The
    /// instance sends it before dropping its store, so it is ready by the
    /// time a body cut short by that drop ends.
    outcome: oneshot::Receiver<Option<Termination>>,
}

impl InstanceBody {
    pub(crate) fn new(
        body: HyperOutgoingBody,
        outcome: oneshot::Receiver<Option<Termination>>,
    ) -> Self {
        Self { body, outcome }
    }
}

impl Body for InstanceBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        // The guest finished its body, or its store was dropped. A finished
        // guest may still be running: no outcome yet means no failure.
        match this.outcome.try_recv() {
            Ok(Some(termination)) => Poll::Ready(Some(Err(Error::InternalError(Some(format!(
                "component failed: {termination}"
            )))))),
            _ => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only a finished guest's body knows it is at its end.
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
