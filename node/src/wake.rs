//! Scale from zero: the ingress holds a request for a Deployment an
//! autoscaler took to zero instances, asks the scheduler for one over the
//! node's QUIC connection (`Request::Wake`), and serves the request once
//! an instance is ready here.
//!
//! [`Waker`] knows which Deployments may be at zero (the assignments'
//! `scale_to_zero`, kept when the scheduler is gone) and holds the
//! connection to ask on; [`WakeDispatch`] sits first in the ingress's
//! dispatch chain. A connection nobody serves whose host names such a
//! Deployment, with no ready instance here, is held: the dispatch chain is
//! tried again every [`POLL`] until it takes the connection (the instance
//! is loaded and ready) or [`HOLD_TIMEOUT`] passes (then 503). The
//! scheduler binds the woken instance to the node that asked when it fits
//! (the node holds the component compiled), so the wait is the watch
//! push, one instantiation and a readiness check.
//!
//! Out of scope: requests reaching the Deployment through an Ingress rule
//! or a Service (they are answered as before, 503 without endpoints), and
//! waking when the Deployment runs on another node only (the host
//! convention routes to this node's instances; the request waits for the
//! timeout).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use berth_api::quic;
use berth_api::wire::{Request, Response, WakeTarget};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::ingress::{ConnectionDispatch, Routes, deployment_of, normalize_domain};

/// How long a request is held for an instance before it is answered 503.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a held connection is offered to the dispatch chain again:
/// a table lookup, so short enough not to add to the wait.
pub const POLL: Duration = Duration::from_millis(1);

/// A wake not followed by a ready instance is asked again after this long
/// (the first may have gone to a scheduler that was restarting).
pub const REWAKE: Duration = Duration::from_secs(2);

/// `(namespace, deployment)`, lowercase.
type Key = (String, String);

/// Which Deployments may be at zero, and the scheduler to wake them with.
#[derive(Debug, Default)]
pub struct Waker {
    targets: RwLock<HashSet<Key>>,
    connection: Mutex<Option<quinn::Connection>>,
    /// When each Deployment was last asked for.
    asked: Mutex<HashMap<Key, Instant>>,
    /// Deployments the scheduler said it will not wake (no autoscaler at
    /// zero any more); forgotten with the next assignments.
    refused: Mutex<HashSet<Key>>,
}

fn key(namespace: &str, deployment: &str) -> Key {
    (
        namespace.to_ascii_lowercase(),
        deployment.to_ascii_lowercase(),
    )
}

impl Waker {
    /// A waker with no targets and no connection yet.
    pub fn new() -> Arc<Waker> {
        Arc::new(Waker::default())
    }

    /// The agent's session connected on `connection`: wakes go there.
    pub fn connected(&self, connection: &quinn::Connection) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
    }

    /// The assignments' `scale_to_zero`.
    pub fn update(&self, targets: &[WakeTarget]) {
        let targets: HashSet<Key> = targets
            .iter()
            .map(|t| key(&t.namespace, &t.deployment))
            .collect();
        *self.targets.write().unwrap_or_else(PoisonError::into_inner) = targets;
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Whether requests for `namespace/deployment` are held when nothing
    /// here serves it.
    pub fn holds(&self, namespace: &str, deployment: &str) -> bool {
        let key = key(namespace, deployment);
        self.targets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
            && !self
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&key)
    }

    /// A held request for `namespace/deployment` found its instance: the
    /// next hold asks at once.
    pub fn woken(&self, namespace: &str, deployment: &str) {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(namespace, deployment));
    }

    /// Sends `Wake` for `namespace/deployment` unless one went less than
    /// [`REWAKE`] ago and no held request found its instance since; does
    /// not wait for the answer.
    pub fn ask(self: &Arc<Self>, namespace: &str, deployment: &str) {
        let key = key(namespace, deployment);
        let now = Instant::now();
        {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            if asked
                .get(&key)
                .is_some_and(|at| now.saturating_duration_since(*at) < REWAKE)
            {
                return;
            }
            asked.insert(key.clone(), now);
        }
        let Some(connection) = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            debug!(namespace = %key.0, deployment = %key.1, "no scheduler connection to wake with");
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let request = Request::Wake {
                namespace: key.0.clone(),
                deployment: key.1.clone(),
            };
            match quic::call(&connection, &request).await {
                Ok(Response::Ok) => {}
                Ok(Response::Error(e)) => {
                    warn!(namespace = %key.0, deployment = %key.1, error = %e, "the scheduler refused a wake");
                    this.refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key);
                }
                Ok(other) => warn!(?other, "unexpected answer to a wake"),
                Err(e) => warn!(error = %e, "cannot send a wake"),
            }
        });
    }
}

/// The first link of the ingress's dispatch chain: passes every connection
/// to `inner`, and holds those for Deployments at zero (see the module
/// docs).
pub struct WakeDispatch {
    inner: Option<Arc<dyn ConnectionDispatch>>,
    routes: Arc<Routes>,
    waker: Arc<Waker>,
    domain: Arc<str>,
}

impl std::fmt::Debug for WakeDispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeDispatch")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl WakeDispatch {
    /// Wraps `inner`; `routes` are the in-process instances (a node
    /// without sandboxes), `domain` the routing domain.
    pub fn new(
        inner: Option<Arc<dyn ConnectionDispatch>>,
        routes: Arc<Routes>,
        waker: Arc<Waker>,
        domain: &str,
    ) -> Arc<WakeDispatch> {
        Arc::new(WakeDispatch {
            inner,
            routes,
            waker,
            domain: normalize_domain(domain),
        })
    }

    /// Offers `stream` to the chain once: `None` when taken.
    async fn offer(&self, stream: TcpStream, host: &str) -> Option<TcpStream> {
        match &self.inner {
            Some(inner) => inner.dispatch(stream, host.to_owned()).await,
            None => Some(stream),
        }
    }

    async fn dispatch_stream(&self, stream: TcpStream, host: String) -> Option<TcpStream> {
        let mut stream = self.offer(stream, &host).await?;
        let Some((deployment, namespace)) = deployment_of(&host, &self.domain) else {
            return Some(stream);
        };
        if !self.waker.holds(namespace, deployment) || self.routes.has_ready(namespace, deployment)
        {
            return Some(stream);
        }
        self.waker.ask(namespace, deployment);
        let deadline = tokio::time::Instant::now() + HOLD_TIMEOUT;
        loop {
            tokio::time::sleep(POLL).await;
            if self.routes.has_ready(namespace, deployment) {
                self.waker.woken(namespace, deployment);
                return Some(stream);
            }
            if !self.waker.holds(namespace, deployment) {
                return Some(stream);
            }
            stream = match self.offer(stream, &host).await {
                Some(stream) => stream,
                None => {
                    self.waker.woken(namespace, deployment);
                    return None;
                }
            };
            if tokio::time::Instant::now() >= deadline {
                unavailable(stream, namespace, deployment).await;
                return None;
            }
            self.waker.ask(namespace, deployment);
        }
    }
}

impl ConnectionDispatch for WakeDispatch {
    fn dispatch(
        &self,
        stream: TcpStream,
        host: String,
    ) -> Pin<Box<dyn Future<Output = Option<TcpStream>> + Send + '_>> {
        Box::pin(self.dispatch_stream(stream, host))
    }
}

/// Answers a held connection 503 and closes it.
async fn unavailable(mut stream: TcpStream, namespace: &str, deployment: &str) {
    let body = format!(
        "no instance of deployment {namespace}/{deployment} became ready within {}s\n",
        HOLD_TIMEOUT.as_secs()
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(response.as_bytes()).await {
        debug!(error = %e, "cannot answer a held request");
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn targets_are_held_until_refused_and_refusals_end_with_new_assignments() {
        let waker = Waker::new();
        assert!(!waker.holds("default", "web"));
        let targets = [WakeTarget {
            namespace: "default".into(),
            deployment: "web".into(),
        }];
        waker.update(&targets);
        assert!(waker.holds("Default", "WEB"), "case-insensitive as hosts");
        assert!(!waker.holds("default", "api"));
        waker.refused.lock().unwrap().insert(key("default", "web"));
        assert!(!waker.holds("default", "web"));
        waker.update(&targets);
        assert!(waker.holds("default", "web"));
    }

    #[tokio::test]
    async fn a_served_hold_lets_the_next_one_ask_at_once() {
        let waker = Waker::new();
        waker.ask("default", "web");
        let asked = |w: &Waker| w.asked.lock().unwrap().get(&key("default", "web")).copied();
        let first = asked(&waker).unwrap();
        waker.ask("default", "web");
        assert_eq!(asked(&waker), Some(first), "within REWAKE: not asked again");
        waker.woken("default", "web");
        assert_eq!(asked(&waker), None);
        waker.ask("default", "web");
        assert!(asked(&waker).is_some(), "asked again at once");
    }

    #[tokio::test]
    async fn a_held_request_without_an_instance_is_answered_503_after_the_timeout() {
        tokio::time::pause();
        let waker = Waker::new();
        waker.update(&[WakeTarget {
            namespace: "default".into(),
            deployment: "web".into(),
        }]);
        let dispatch =
            WakeDispatch::new(None, Arc::new(Routes::default()), waker, "berth.localhost");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut client = TcpStream::connect(address).await.unwrap();
            let mut answer = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut client, &mut answer)
                .await
                .unwrap();
            answer
        });
        let (server, _) = listener.accept().await.unwrap();
        let outcome = dispatch
            .dispatch(server, "web.default.berth.localhost".into())
            .await;
        assert!(outcome.is_none(), "the held connection is answered");
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("default/web"), "{answer}");
        // Another host is passed on at once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(
            dispatch
                .dispatch(server, "api.default.berth.localhost".into())
                .await
                .is_some()
        );
    }
}
