//! Liveness, readiness and startup probes, as Kubernetes runs them.
//!
//! The decisions are sans-IO: a [`Prober`] is one probe's state machine
//! (when it is due, how many results in a row it has seen, whether it
//! passes), and a [`ProbeSet`] holds an instance's three and gates them as
//! kubelet does: liveness and readiness wait until the startup probe has
//! passed once. Both take `now` and the outcome of a probe and return what
//! changed ([`ProbeTransition`]); neither reads a clock nor sends a request.
//! [`run`] is the loop around them: it waits until a probe is due, sends the
//! `GET` through the instance ([`PreparedInstance::probe`], a fresh
//! instance like any request), and reports each failure and transition.
//!
//! Kubernetes' semantics, kept here:
//!
//! - a probe first runs `initialDelaySeconds` after the instance starts,
//!   then every `periodSeconds`; one that takes longer than
//!   `timeoutSeconds` fails;
//! - 2xx and 3xx pass, anything else (and no answer) fails;
//! - a probe's result changes only after `successThreshold` successes or
//!   `failureThreshold` failures in a row;
//! - an instance with a readiness or startup probe starts not ready; one
//!   with neither is ready as soon as it runs;
//! - liveness failing `failureThreshold` times in a row, or startup failing
//!   `failureThreshold` times before it first passes, restarts the instance.
//!
//! Unlike kubelet, the probes of one instance run one after the other, not
//! side by side: a slow liveness probe delays the readiness probe by at most
//! its own timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use berth_api::lifecycle::{ProbeHandler, ProbeSpec, Probes};
use http::StatusCode;

use crate::runtime::{PreparedInstance, RuntimeError, Termination, error_chain};
use crate::sandbox::protocol::HostEvent;

/// The reason a restart decided by a probe is reported with (Kubernetes'
/// event reason for a failing probe).
pub const REASON_UNHEALTHY: &str = "Unhealthy";

/// Which of an instance's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: restarts the instance when it fails.
    Liveness,
    /// `readinessProbe`: takes the instance out of routing while it fails.
    Readiness,
    /// `startupProbe`: holds the other two back until it first passes.
    Startup,
}

impl ProbeKind {
    /// The name messages use: `Liveness`, `Readiness`, `Startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A restart the probes decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// [`REASON_UNHEALTHY`].
    pub reason: &'static str,
    /// Why, as Kubernetes words it: `Liveness probe failed: HTTP probe
    /// failed with statuscode: 500`.
    pub message: String,
}

/// What a probe result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTransition {
    /// The startup probe passed: liveness and readiness probing begins.
    Started,
    /// The instance turned ready (it may be routed) or not ready. `message`
    /// says why it is not (`Readiness probe failed: ...`); empty when ready.
    Ready {
        /// Whether it is ready now.
        ready: bool,
        /// Why not, when not.
        message: String,
    },
    /// The instance must be restarted; nothing is probed after this.
    Restart(Restart),
}

/// Whether a probe answered with a passing status: 2xx or 3xx.
pub fn passes(status: StatusCode) -> bool {
    (200..400).contains(&status.as_u16())
}

/// The message for a failed probe of `kind`, as Kubernetes words it, or
/// `None` if the outcome passes. An `Err` holds the error's own text (see
/// [`run`]: `Get "/healthz": timed out after 1s`).
pub fn failure_message(kind: ProbeKind, outcome: &Result<StatusCode, String>) -> Option<String> {
    let detail = match outcome {
        Ok(status) if passes(*status) => return None,
        Ok(status) => format!("HTTP probe failed with statuscode: {}", status.as_u16()),
        Err(error) => error.clone(),
    };
    Some(format!("{} probe failed: {detail}", kind.as_str()))
}

/// One probe's state: when it is due next and whether it passes.
#[derive(Debug, Clone)]
pub struct Prober {
    kind: ProbeKind,
    spec: ProbeSpec,
    next_due: Instant,
    /// The last result (passed or not) and how many times in a row.
    last: Option<(bool, u32)>,
    passing: bool,
    /// A restart was decided, or the startup probe passed: no more probing.
    done: bool,
}

impl Prober {
    /// The probe of an instance started at `started`: first due
    /// `initialDelaySeconds` later. Readiness and startup start failing,
    /// liveness passing.
    pub fn new(kind: ProbeKind, spec: ProbeSpec, started: Instant) -> Self {
        let delay = Duration::from_secs(u64::from(spec.initial_delay_seconds));
        Self {
            kind,
            next_due: started.checked_add(delay).unwrap_or(started),
            spec,
            last: None,
            passing: kind == ProbeKind::Liveness,
            done: false,
        }
    }

    /// Which probe this is.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The probe's path, timing and thresholds.
    pub fn spec(&self) -> &ProbeSpec {
        &self.spec
    }

    /// When the probe should run next.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Whether the probe passes (after its thresholds).
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Whether the probe has nothing more to do: it decided a restart, or
    /// it is a startup probe that passed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How long one probe may take (`timeoutSeconds`).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.spec.timeout_seconds.max(1)))
    }

    /// Records the outcome of the probe that ended at `now` (a status, or
    /// the text of an error: a timeout or a failed instance) and schedules
    /// the next one, `periodSeconds` after this one was due (at once if the
    /// probe overran the period). Returns the transition it caused, if any.
    pub fn record(
        &mut self,
        now: Instant,
        outcome: Result<StatusCode, String>,
    ) -> Option<ProbeTransition> {
        if self.done {
            return None;
        }
        let period = Duration::from_secs(u64::from(self.spec.period_seconds.max(1)));
        let next = self.next_due.checked_add(period).unwrap_or(now);
        self.next_due = next.max(now);

        let message = failure_message(self.kind, &outcome);
        let success = message.is_none();
        let run = match self.last {
            Some((last, run)) if last == success => run.saturating_add(1),
            _ => 1,
        };
        self.last = Some((success, run));
        let threshold = if success {
            self.spec.success_threshold
        } else {
            self.spec.failure_threshold
        };
        if run < threshold.max(1) {
            return None;
        }
        let message = message.unwrap_or_default();
        match (self.kind, success) {
            (ProbeKind::Readiness, ready) if ready != self.passing => {
                self.passing = ready;
                Some(ProbeTransition::Ready { ready, message })
            }
            (ProbeKind::Readiness, _) | (ProbeKind::Liveness, true) => None,
            (ProbeKind::Startup, true) => {
                self.passing = true;
                self.done = true;
                Some(ProbeTransition::Started)
            }
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.passing = false;
                self.done = true;
                Some(ProbeTransition::Restart(Restart {
                    reason: REASON_UNHEALTHY,
                    message,
                }))
            }
        }
    }

    /// Holds the probe back until `at` if it would be due earlier (liveness
    /// and readiness while the startup probe has not passed).
    fn not_before(&mut self, at: Instant) {
        self.next_due = self.next_due.max(at);
    }
}

/// An instance's probes together: which is due next, whether the instance
/// is ready, and the startup gate.
#[derive(Debug, Clone)]
pub struct ProbeSet {
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
    started: bool,
    restart: bool,
}

impl ProbeSet {
    /// The probes of an instance that started at `now`.
    pub fn new(probes: &Probes, now: Instant) -> Self {
        let prober =
            |kind, spec: &Option<ProbeSpec>| spec.clone().map(|spec| Prober::new(kind, spec, now));
        Self {
            startup: prober(ProbeKind::Startup, &probes.startup),
            liveness: prober(ProbeKind::Liveness, &probes.liveness),
            readiness: prober(ProbeKind::Readiness, &probes.readiness),
            started: probes.startup.is_none(),
            restart: false,
        }
    }

    /// Whether the instance may receive traffic: its startup probe (if
    /// any) has passed and its readiness probe (if any) passes.
    pub fn ready(&self) -> bool {
        self.started && !self.restart && self.readiness.as_ref().is_none_or(Prober::passing)
    }

    /// Whether the startup probe (if any) has passed.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The probe to run next and when; `None` when there is nothing to
    /// probe (no probes, or a restart was decided).
    pub fn next(&self) -> Option<(ProbeKind, Instant)> {
        if self.restart {
            return None;
        }
        let active: [&Option<Prober>; 3] = if self.started {
            [&self.liveness, &self.readiness, &None]
        } else {
            [&self.startup, &None, &None]
        };
        active
            .into_iter()
            .flatten()
            .filter(|p| !p.is_done())
            .min_by_key(|p| p.next_due())
            .map(|p| (p.kind(), p.next_due()))
    }

    /// The probe of that kind, if the instance has one.
    pub fn prober(&self, kind: ProbeKind) -> Option<&Prober> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Startup => self.startup.as_ref(),
        }
    }

    /// Records the outcome of the `kind` probe that ended at `now`; returns
    /// what changed, in order (a passing startup probe is
    /// [`ProbeTransition::Started`], then `Ready` if the instance has no
    /// readiness probe). Liveness and readiness results from before the
    /// startup probe passed, and any result after a restart was decided,
    /// are ignored.
    pub fn record(
        &mut self,
        kind: ProbeKind,
        now: Instant,
        outcome: Result<StatusCode, String>,
    ) -> Vec<ProbeTransition> {
        if self.restart || (!self.started && kind != ProbeKind::Startup) {
            return Vec::new();
        }
        let prober = match kind {
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
            ProbeKind::Startup => self.startup.as_mut(),
        };
        let Some(transition) = prober.and_then(|p| p.record(now, outcome)) else {
            return Vec::new();
        };
        let mut transitions = Vec::new();
        match &transition {
            ProbeTransition::Started => {
                self.started = true;
                for prober in [&mut self.liveness, &mut self.readiness]
                    .into_iter()
                    .flatten()
                {
                    prober.not_before(now);
                }
                transitions.push(transition);
                if self.readiness.is_none() {
                    transitions.push(ProbeTransition::Ready {
                        ready: true,
                        message: String::new(),
                    });
                }
            }
            ProbeTransition::Restart(_) => {
                self.restart = true;
                transitions.push(transition);
            }
            ProbeTransition::Ready { .. } => transitions.push(transition),
        }
        transitions
    }
}

/// Whether an instance with these probes is ready the moment it runs: only
/// if it has neither a readiness nor a startup probe.
pub fn initially_ready(probes: &Probes) -> bool {
    probes.readiness.is_none() && probes.startup.is_none()
}

/// What [`run`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// One probe failed, whether or not that reached its threshold; the
    /// message as [`failure_message`] words it.
    Failed {
        /// Which probe.
        kind: ProbeKind,
        /// `Readiness probe failed: HTTP probe failed with statuscode: 503`.
        message: String,
    },
    /// A change the probes decided.
    Transition(ProbeTransition),
}

/// Probes `instance` until a restart is decided (returned, after it was
/// also reported as a [`ProbeTransition::Restart`]) or the instance is
/// cancelled (`None`); stops when dropped. The instance is taken to start
/// when `run` is called: initial delays count from then. An instance without
/// probes is never probed; `run` then waits for its cancellation.
///
/// The caller keeps the instance's readiness from the events: it starts at
/// [`initially_ready`] and changes with each [`ProbeTransition::Ready`].
pub async fn run(
    instance: PreparedInstance,
    probes: Probes,
    mut on_event: impl FnMut(ProbeEvent) + Send,
) -> Option<Restart> {
    run_on(&instance, &probes, &mut on_event).await
}

/// As [`run`], for any [`Target`]: a container, say.
pub(crate) async fn run_target(
    target: &impl Target,
    probes: Probes,
    mut on_event: impl FnMut(ProbeEvent) + Send,
) -> Option<Restart> {
    run_on(target, &probes, &mut on_event).await
}

/// The probe runner's callback for an instance `uid`: turns its probe
/// events into the [`HostEvent`]s the supervisor reads, and calls
/// `set_ready` on each readiness change (routing). A readiness probe that
/// fails while the instance is not ready is reported too, once per new
/// message, so that an instance that never became ready says why.
pub(crate) fn host_events(
    uid: String,
    initially_ready: bool,
    send: impl Fn(HostEvent) + Send,
    set_ready: impl Fn(bool) + Send,
) -> impl FnMut(ProbeEvent) + Send {
    let mut ready = initially_ready;
    let mut told = String::new();
    move |event| match event {
        ProbeEvent::Transition(ProbeTransition::Ready {
            ready: now,
            message,
        }) => {
            ready = now;
            set_ready(now);
            told.clone_from(&message);
            send(HostEvent::Ready {
                uid: uid.clone(),
                ready: now,
                message,
            });
        }
        ProbeEvent::Transition(ProbeTransition::Restart(restart)) => {
            set_ready(false);
            send(HostEvent::Unhealthy {
                uid: uid.clone(),
                message: restart.message,
            });
        }
        ProbeEvent::Failed {
            kind: ProbeKind::Readiness,
            message,
        } if !ready && message != told => {
            told.clone_from(&message);
            send(HostEvent::Ready {
                uid: uid.clone(),
                ready: false,
                message,
            });
        }
        ProbeEvent::Transition(ProbeTransition::Started) | ProbeEvent::Failed { .. } => {}
    }
}

/// What the runner probes: a [`PreparedInstance`], a container, or a
/// stand-in in tests.
pub(crate) trait Target: Sync {
    /// One `GET` of `spec.path` (on `spec.port` where the target has
    /// several); [`RuntimeError::Cancelled`] once the target is gone.
    fn probe(
        &self,
        spec: &ProbeSpec,
        timeout: Duration,
    ) -> impl Future<Output = Result<StatusCode, RuntimeError>> + Send;

    /// Resolves when the target stops.
    fn cancelled(&self) -> impl Future<Output = ()> + Send;
}

impl Target for PreparedInstance {
    fn probe(
        &self,
        spec: &ProbeSpec,
        timeout: Duration,
    ) -> impl Future<Output = Result<StatusCode, RuntimeError>> + Send {
        PreparedInstance::probe(self, &spec.path, timeout)
    }

    fn cancelled(&self) -> impl Future<Output = ()> + Send {
        PreparedInstance::cancelled(self)
    }
}

/// The clock the runner reads: tokio's, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn run_on(
    target: &impl Target,
    probes: &Probes,
    on_event: &mut (impl FnMut(ProbeEvent) + Send),
) -> Option<Restart> {
    let mut set = ProbeSet::new(probes, now());
    loop {
        let Some((kind, due)) = set.next() else {
            target.cancelled().await;
            return None;
        };
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            () = target.cancelled() => return None,
        }
        let (spec, timeout) = match set.prober(kind) {
            Some(prober) => (prober.spec().clone(), prober.timeout()),
            None => return None,
        };
        let outcome = match target.probe(&spec, timeout).await {
            Ok(status) => Ok(status),
            Err(RuntimeError::Cancelled) => return None,
            Err(e) => Err(describe_error(&spec, timeout, &e)),
        };
        if let Some(message) = failure_message(kind, &outcome) {
            on_event(ProbeEvent::Failed { kind, message });
        }
        for transition in set.record(kind, now(), outcome) {
            let restart = match &transition {
                ProbeTransition::Restart(restart) => Some(restart.clone()),
                _ => None,
            };
            on_event(ProbeEvent::Transition(transition));
            if restart.is_some() {
                return restart;
            }
        }
    }
}

/// A failed probe's error as Kubernetes words it: `Get "/healthz": timed
/// out after 1s`, `dial tcp 127.0.0.1:5432: ...`, `command [cat /ready]: ...`.
fn describe_error(spec: &ProbeSpec, timeout: Duration, error: &RuntimeError) -> String {
    let detail = match error.termination() {
        Some(Termination::DeadlineExceeded) => format!("timed out after {}s", timeout.as_secs()),
        _ => error_chain(error),
    };
    match &spec.handler {
        ProbeHandler::HttpGet => format!("Get {:?}: {detail}", spec.path),
        ProbeHandler::TcpSocket => match spec.port {
            Some(port) => format!("dial tcp 127.0.0.1:{port}: {detail}"),
            None => format!("dial tcp: {detail}"),
        },
        ProbeHandler::Exec(command) => format!("command [{}]: {detail}", command.join(" ")),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use tokio::sync::watch;

    use super::*;

    fn spec(path: &str) -> ProbeSpec {
        ProbeSpec {
            handler: ProbeHandler::HttpGet,
            path: path.into(),
            port: None,
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold: 3,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const OK: Result<StatusCode, String> = Ok(StatusCode::OK);
    const ERR: Result<StatusCode, String> = Ok(StatusCode::INTERNAL_SERVER_ERROR);

    #[test]
    fn status_codes_and_messages_follow_kubernetes() {
        assert!(passes(StatusCode::OK));
        assert!(passes(StatusCode::FOUND));
        assert!(!passes(StatusCode::NOT_FOUND));
        assert_eq!(failure_message(ProbeKind::Liveness, &OK), None);
        assert_eq!(
            failure_message(ProbeKind::Liveness, &ERR).unwrap(),
            "Liveness probe failed: HTTP probe failed with statuscode: 500"
        );
        assert_eq!(
            failure_message(
                ProbeKind::Readiness,
                &Err("Get \"/ready\": timed out after 1s".into())
            )
            .unwrap(),
            "Readiness probe failed: Get \"/ready\": timed out after 1s"
        );
        let timeout = RuntimeError::Terminated(Termination::DeadlineExceeded);
        assert_eq!(
            describe_error(&spec("/ready"), secs(2), &timeout),
            "Get \"/ready\": timed out after 2s"
        );
        let tcp = ProbeSpec {
            handler: ProbeHandler::TcpSocket,
            port: Some(5432),
            ..spec("")
        };
        assert_eq!(
            describe_error(&tcp, secs(1), &timeout),
            "dial tcp 127.0.0.1:5432: timed out after 1s"
        );
        let exec = ProbeSpec {
            handler: ProbeHandler::Exec(vec!["cat".into(), "/ready".into()]),
            ..spec("")
        };
        assert_eq!(
            describe_error(&exec, secs(1), &timeout),
            "command [cat /ready]: timed out after 1s"
        );
    }

    #[test]
    fn schedule_starts_after_the_initial_delay_and_keeps_the_period() {
        let t0 = Instant::now();
        let mut prober = Prober::new(
            ProbeKind::Readiness,
            ProbeSpec {
                initial_delay_seconds: 5,
                ..spec("/")
            },
            t0,
        );
        assert_eq!(prober.next_due(), t0 + secs(5));
        // A probe that took 1 s: the next is due a period after this one was.
        prober.record(t0 + secs(6), OK);
        assert_eq!(prober.next_due(), t0 + secs(15));
        // One that overran the period: the next is due at once.
        prober.record(t0 + secs(27), OK);
        assert_eq!(prober.next_due(), t0 + secs(27));
    }

    #[test]
    fn readiness_starts_not_ready_and_follows_its_thresholds() {
        let t0 = Instant::now();
        let mut prober = Prober::new(
            ProbeKind::Readiness,
            ProbeSpec {
                success_threshold: 2,
                failure_threshold: 2,
                ..spec("/ready")
            },
            t0,
        );
        assert!(!prober.passing());
        assert_eq!(prober.record(t0, OK), None, "one success of two");
        assert_eq!(
            prober.record(t0, OK),
            Some(ProbeTransition::Ready {
                ready: true,
                message: String::new()
            })
        );
        assert_eq!(prober.record(t0, OK), None, "already ready");
        assert_eq!(prober.record(t0, ERR), None, "one failure of two");
        assert_eq!(prober.record(t0, OK), None, "the run is broken");
        assert_eq!(prober.record(t0, ERR), None);
        assert_eq!(
            prober.record(t0, ERR),
            Some(ProbeTransition::Ready {
                ready: false,
                message: "Readiness probe failed: HTTP probe failed with statuscode: 500".into()
            })
        );
        assert!(!prober.is_done(), "readiness probes forever");
    }

    #[test]
    fn liveness_restarts_after_failures_in_a_row() {
        let t0 = Instant::now();
        let mut prober = Prober::new(ProbeKind::Liveness, spec("/healthz"), t0);
        assert!(prober.passing());
        assert_eq!(prober.record(t0, ERR), None);
        assert_eq!(prober.record(t0, ERR), None);
        assert_eq!(prober.record(t0, OK), None, "a success resets the run");
        assert_eq!(prober.record(t0, ERR), None);
        assert_eq!(
            prober.record(t0, Err("Get \"/healthz\": boom".into())),
            None
        );
        assert_eq!(
            prober.record(t0, ERR),
            Some(ProbeTransition::Restart(Restart {
                reason: REASON_UNHEALTHY,
                message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into()
            }))
        );
        assert!(prober.is_done());
        assert_eq!(prober.record(t0, ERR), None, "nothing after a restart");
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let t0 = Instant::now();
        let probes = Probes {
            liveness: Some(ProbeSpec {
                initial_delay_seconds: 1,
                ..spec("/live")
            }),
            readiness: Some(spec("/ready")),
            startup: Some(ProbeSpec {
                period_seconds: 2,
                ..spec("/start")
            }),
        };
        assert!(!initially_ready(&probes));
        let mut set = ProbeSet::new(&probes, t0);
        assert!(!set.ready());
        assert_eq!(set.next(), Some((ProbeKind::Startup, t0)));
        assert!(set.record(ProbeKind::Startup, t0, ERR).is_empty());
        assert_eq!(set.next(), Some((ProbeKind::Startup, t0 + secs(2))));
        // Liveness and readiness results before startup passed change nothing.
        assert!(set.record(ProbeKind::Readiness, t0, OK).is_empty());
        assert!(set.record(ProbeKind::Liveness, t0, ERR).is_empty());
        assert!(!set.prober(ProbeKind::Readiness).unwrap().passing());
        assert_eq!(
            set.record(ProbeKind::Startup, t0 + secs(2), OK),
            vec![ProbeTransition::Started]
        );
        assert!(set.started());
        assert!(!set.ready(), "readiness has not passed yet");
        // Both start once startup passed, liveness first on a tie.
        assert_eq!(set.next(), Some((ProbeKind::Liveness, t0 + secs(2))));
        set.record(ProbeKind::Liveness, t0 + secs(2), OK);
        assert_eq!(set.next(), Some((ProbeKind::Readiness, t0 + secs(2))));
        assert_eq!(
            set.record(ProbeKind::Readiness, t0 + secs(2), OK),
            vec![ProbeTransition::Ready {
                ready: true,
                message: String::new()
            }]
        );
        assert!(set.ready());
    }

    #[test]
    fn startup_without_readiness_makes_ready_and_failing_startup_restarts() {
        let t0 = Instant::now();
        let probes = Probes {
            startup: Some(ProbeSpec {
                failure_threshold: 2,
                ..spec("/start")
            }),
            ..Probes::default()
        };
        let mut set = ProbeSet::new(&probes, t0);
        assert_eq!(
            set.record(ProbeKind::Startup, t0, OK),
            vec![
                ProbeTransition::Started,
                ProbeTransition::Ready {
                    ready: true,
                    message: String::new()
                }
            ]
        );
        assert!(set.ready());
        assert_eq!(set.next(), None, "nothing left to probe");

        let mut set = ProbeSet::new(&probes, t0);
        assert!(set.record(ProbeKind::Startup, t0, ERR).is_empty());
        let transitions = set.record(ProbeKind::Startup, t0 + secs(10), ERR);
        assert_eq!(
            transitions,
            vec![ProbeTransition::Restart(Restart {
                reason: REASON_UNHEALTHY,
                message: "Startup probe failed: HTTP probe failed with statuscode: 500".into()
            })]
        );
        assert_eq!(set.next(), None);
        assert!(!set.ready());
    }

    #[test]
    fn no_probes_means_ready_and_nothing_to_do() {
        let set = ProbeSet::new(&Probes::default(), Instant::now());
        assert!(initially_ready(&Probes::default()));
        assert!(set.ready());
        assert_eq!(set.next(), None);
    }

    /// A target that answers probes from a script (a status per path, or
    /// a delay past the timeout) and logs when it was asked.
    struct Scripted {
        answers: Mutex<VecDeque<Result<StatusCode, RuntimeError>>>,
        asked: Mutex<Vec<(String, tokio::time::Instant)>>,
        cancelled: watch::Sender<bool>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<StatusCode, RuntimeError>>) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers.into()),
                asked: Mutex::new(Vec::new()),
                cancelled: watch::Sender::new(false),
            })
        }
    }

    impl Target for Arc<Scripted> {
        fn probe(
            &self,
            spec: &ProbeSpec,
            timeout: Duration,
        ) -> impl Future<Output = Result<StatusCode, RuntimeError>> + Send {
            self.asked
                .lock()
                .unwrap()
                .push((spec.path.clone(), tokio::time::Instant::now()));
            let answer = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(StatusCode::OK));
            async move {
                if answer.as_ref().is_err_and(|e| e.termination().is_some()) {
                    tokio::time::sleep(timeout).await;
                }
                answer
            }
        }

        fn cancelled(&self) -> impl Future<Output = ()> + Send {
            let mut receiver = self.cancelled.subscribe();
            async move {
                let _ = receiver.wait_for(|c| *c).await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runner_restarts_on_failing_liveness_on_schedule() {
        let timeout = || Err(RuntimeError::Terminated(Termination::DeadlineExceeded));
        let target = Scripted::new(vec![
            Ok(StatusCode::OK),
            Ok(StatusCode::INTERNAL_SERVER_ERROR),
            timeout(),
            Ok(StatusCode::INTERNAL_SERVER_ERROR),
        ]);
        let probes = Probes {
            liveness: Some(ProbeSpec {
                initial_delay_seconds: 3,
                ..spec("/healthz")
            }),
            ..Probes::default()
        };
        let start = tokio::time::Instant::now();
        let mut events = Vec::new();
        let restart = run_on(&target, &probes, &mut |e| events.push(e)).await;
        let restart = restart.unwrap();
        assert_eq!(
            restart.message,
            "Liveness probe failed: HTTP probe failed with statuscode: 500"
        );
        let asked: Vec<u64> = target
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|(path, at)| {
                assert_eq!(path, "/healthz");
                (*at - start).as_secs()
            })
            .collect();
        // The timed-out probe took its 1 s; the period counts from when each was due.
        assert_eq!(asked, [3, 13, 23, 33]);
        assert_eq!(
            events,
            vec![
                ProbeEvent::Failed {
                    kind: ProbeKind::Liveness,
                    message: "Liveness probe failed: HTTP probe failed with statuscode: 500".into()
                },
                ProbeEvent::Failed {
                    kind: ProbeKind::Liveness,
                    message: "Liveness probe failed: Get \"/healthz\": timed out after 1s".into()
                },
                ProbeEvent::Failed {
                    kind: ProbeKind::Liveness,
                    message: restart.message.clone()
                },
                ProbeEvent::Transition(ProbeTransition::Restart(restart)),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_reports_readiness_and_ends_when_cancelled() {
        let target = Scripted::new(vec![
            Ok(StatusCode::SERVICE_UNAVAILABLE),
            Ok(StatusCode::OK),
            Ok(StatusCode::SERVICE_UNAVAILABLE),
        ]);
        let probes = Probes {
            readiness: Some(ProbeSpec {
                failure_threshold: 1,
                ..spec("/ready")
            }),
            ..Probes::default()
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let target = Arc::clone(&target);
            let events = Arc::clone(&events);
            tokio::spawn(async move {
                run_on(&target, &probes, &mut |e| events.lock().unwrap().push(e)).await
            })
        };
        tokio::time::sleep(secs(25)).await;
        assert_eq!(target.asked.lock().unwrap().len(), 3);
        target.cancelled.send_replace(true);
        assert_eq!(task.await.unwrap(), None, "cancelled, not restarted");
        let transitions: Vec<ProbeEvent> = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ProbeEvent::Transition(_)))
            .cloned()
            .collect();
        let not_ready = || {
            ProbeEvent::Transition(ProbeTransition::Ready {
                ready: false,
                message: "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
            })
        };
        // Not ready from the start: the first failure changes nothing.
        assert_eq!(
            transitions,
            vec![
                ProbeEvent::Transition(ProbeTransition::Ready {
                    ready: true,
                    message: String::new()
                }),
                not_ready(),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runner_without_probes_waits_for_cancellation() {
        let target = Scripted::new(Vec::new());
        let task = {
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                run_on(&target, &Probes::default(), &mut |_: ProbeEvent| {}).await
            })
        };
        tokio::time::sleep(secs(3600)).await;
        assert!(!task.is_finished());
        target.cancelled.send_replace(true);
        assert_eq!(task.await.unwrap(), None);
        assert!(target.asked.lock().unwrap().is_empty());
    }

    /// The real `hello` component, prepared in a fresh runtime.
    async fn hello(env: &[(&str, &str)]) -> (tempfile::TempDir, PreparedInstance) {
        use sha2::Digest as _;
        let data = tempfile::tempdir().unwrap();
        let runtime = crate::runtime::WasmRuntime::new(data.path()).unwrap();
        let path = std::path::Path::new(berth_test_programs::HELLO);
        let digest = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
        );
        let config = crate::runtime::InstanceConfig {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..crate::runtime::InstanceConfig::default()
        };
        let instance = runtime.prepare(&digest, path, config).await.unwrap();
        (data, instance)
    }

    #[tokio::test]
    async fn probes_reach_the_real_component() {
        let (_data, instance) = hello(&[("UNHEALTHY", "1")]).await;
        assert_eq!(
            instance.probe("/healthz", secs(5)).await.unwrap(),
            StatusCode::OK
        );
        // Readiness passes at once; liveness, against a path that fails,
        // restarts after its second failure a second later.
        let probes = Probes {
            liveness: Some(ProbeSpec {
                period_seconds: 1,
                failure_threshold: 2,
                ..spec("/health-env")
            }),
            readiness: Some(spec("/healthz")),
            startup: None,
        };
        let mut events = Vec::new();
        let restart =
            tokio::time::timeout(secs(30), run(instance.clone(), probes, |e| events.push(e)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            restart.message,
            "Liveness probe failed: HTTP probe failed with statuscode: 503"
        );
        let transitions: Vec<&ProbeEvent> = events
            .iter()
            .filter(|e| matches!(e, ProbeEvent::Transition(_)))
            .collect();
        assert_eq!(
            transitions,
            [
                &ProbeEvent::Transition(ProbeTransition::Ready {
                    ready: true,
                    message: String::new()
                }),
                &ProbeEvent::Transition(ProbeTransition::Restart(restart)),
            ]
        );
        assert_eq!(instance.stats().requests, 0, "probes are not requests");

        // A cancelled instance ends the runner.
        instance.cancel();
        let probes = Probes {
            readiness: Some(spec("/healthz")),
            ..Probes::default()
        };
        let ended = tokio::time::timeout(secs(30), run(instance, probes, |_| {})).await;
        assert_eq!(ended.unwrap(), None);
    }

    #[test]
    fn a_never_ready_instance_says_why_once_per_message() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let routed = Arc::new(Mutex::new(Vec::new()));
        let mut on_event = {
            let (sent, routed) = (Arc::clone(&sent), Arc::clone(&routed));
            host_events(
                "u1".into(),
                false,
                move |event| sent.lock().unwrap().push(event),
                move |ready| routed.lock().unwrap().push(ready),
            )
        };
        let failed = |message: &str| ProbeEvent::Failed {
            kind: ProbeKind::Readiness,
            message: message.into(),
        };
        on_event(failed(
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
        ));
        on_event(failed(
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
        ));
        on_event(failed(
            "Readiness probe failed: HTTP probe failed with statuscode: 500",
        ));
        on_event(ProbeEvent::Transition(ProbeTransition::Ready {
            ready: true,
            message: String::new(),
        }));
        // Ready now: a single failure below the threshold changes nothing.
        on_event(failed(
            "Readiness probe failed: HTTP probe failed with statuscode: 500",
        ));
        let messages: Vec<(bool, String)> = sent
            .lock()
            .unwrap()
            .iter()
            .map(|event| match event {
                HostEvent::Ready { ready, message, .. } => (*ready, message.clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            messages,
            [
                (
                    false,
                    "Readiness probe failed: HTTP probe failed with statuscode: 503".into()
                ),
                (
                    false,
                    "Readiness probe failed: HTTP probe failed with statuscode: 500".into()
                ),
                (true, String::new()),
            ]
        );
        assert_eq!(
            *routed.lock().unwrap(),
            [true],
            "routing changes only on transitions"
        );
    }
}
