//! An instance's requests in progress, and the cancellation that ends them
//! when its grace period is over.
//!
//! Each request served by [`super::PreparedInstance::handle`] holds an
//! [`InFlightGuard`] while its guest runs and while its response body
//! streams, so [`InFlight::count`] falls to 0 only when the client has the
//! whole answer (or has gone). [`InFlight::cancel`] is one-way: every
//! request of the instance, in flight or still to come, then ends with
//! [`super::RuntimeError::Cancelled`]; one cut after its head was sent
//! ends its body with an error instead ([`TrackedBody`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use wasmtime_wasi_http::Error;

/// The body error a client sees when a cancelled request's response is cut.
const CUT_MESSAGE: &str = "instance stopped: request cancelled after its grace period";

/// Requests in progress on one instance, and whether it was cancelled.
pub(crate) struct InFlight {
    count: watch::Sender<usize>,
    cancelled: watch::Sender<bool>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            count: watch::Sender::new(0),
            cancelled: watch::Sender::new(false),
        }
    }
}

impl InFlight {
    /// Counts one more request until the guard (and its clones) are dropped.
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.count.send_modify(|n| *n = n.saturating_add(1));
        InFlightGuard {
            count: self.count.clone(),
        }
    }

    /// Requests in progress, response bodies still streaming included.
    pub(crate) fn count(&self) -> usize {
        *self.count.borrow()
    }

    /// Resolves once no request is in progress.
    pub(crate) async fn idle(&self) {
        // The sender lives in `self`, so the wait cannot fail.
        let _ = self.count.subscribe().wait_for(|n| *n == 0).await;
    }

    /// Ends every request of the instance, now and from now on.
    pub(crate) fn cancel(&self) {
        self.cancelled.send_replace(true);
    }

    /// Whether [`InFlight::cancel`] was called.
    pub(crate) fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }

    /// Resolves once the instance is cancelled.
    pub(crate) async fn cancelled(&self) {
        let _ = self.cancelled.subscribe().wait_for(|c| *c).await;
    }
}

/// One request counted in [`InFlight::count`] until dropped.
pub(crate) struct InFlightGuard {
    count: watch::Sender<usize>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in flight until it is
/// dropped, and that ends in an error if cancellation cut it short.
pub(crate) struct TrackedBody<B> {
    body: B,
    _guard: Arc<InFlightGuard>,
    /// Set by the request's task, before it drops the store, when
    /// cancellation stopped the guest.
    cut: Arc<AtomicBool>,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(body: B, guard: Arc<InFlightGuard>, cut: Arc<AtomicBool>) -> Self {
        Self {
            body,
            _guard: guard,
            cut,
        }
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(None) if this.cut.load(Ordering::Acquire) => Poll::Ready(Some(Err(
                Error::InternalError(Some(CUT_MESSAGE.to_owned())),
            ))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt as _, Empty};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_guards_and_waits_for_idle() {
        let in_flight = Arc::new(InFlight::default());
        let one = in_flight.enter();
        let two = Arc::new(in_flight.enter());
        let two_again = Arc::clone(&two);
        assert_eq!(in_flight.count(), 2);
        drop(one);
        drop(two);
        assert_eq!(in_flight.count(), 1, "a clone still holds the request");
        let waiter = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move { in_flight.idle().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(two_again);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(in_flight.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_is_seen_by_waiters_and_later_callers() {
        let in_flight = Arc::new(InFlight::default());
        assert!(!in_flight.is_cancelled());
        let waiter = {
            let in_flight = Arc::clone(&in_flight);
            tokio::spawn(async move { in_flight.cancelled().await })
        };
        in_flight.cancel();
        waiter.await.unwrap();
        assert!(in_flight.is_cancelled());
        in_flight.cancelled().await;
    }

    #[tokio::test]
    async fn a_cut_body_ends_in_an_error_and_releases_its_request() {
        let in_flight = InFlight::default();
        let empty = || Empty::<Bytes>::new().map_err(|never| match never {});
        let cut = Arc::new(AtomicBool::new(false));
        let body = TrackedBody::new(empty(), Arc::new(in_flight.enter()), Arc::clone(&cut));
        assert_eq!(in_flight.count(), 1);
        assert!(body.collect().await.is_ok());
        assert_eq!(in_flight.count(), 0);

        let cut = Arc::new(AtomicBool::new(true));
        let body = TrackedBody::new(empty(), Arc::new(in_flight.enter()), cut);
        let error = body.collect().await.err().unwrap();
        assert!(error.to_string().contains("cancelled"), "{error}");
        assert_eq!(in_flight.count(), 0);
    }
}
