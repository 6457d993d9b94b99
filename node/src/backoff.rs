//! How long the node waits before it restarts an instance that failed:
//! Kubernetes' crash-loop back-off, sans-IO.
//!
//! [`RestartBackoff`] holds no timer and reads no clock: the supervisor
//! tells it when the instance started ([`RestartBackoff::started`]) and when
//! it failed ([`RestartBackoff::failed`], which answers how long to wait),
//! each with `now`. The first restart waits [`INITIAL_BACKOFF`], each
//! further one twice as long, up to [`MAX_BACKOFF`]; an instance that ran
//! [`BACKOFF_RESET_AFTER`] without failing starts over at the first delay.
//! While it waits, the node reports the instance with reason
//! [`CRASH_LOOP_BACK_OFF`].

use std::time::{Duration, Instant};

/// The wait before the first restart (kubelet's 10 s).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);

/// The longest wait between restarts (kubelet's 5 min); the delay doubles
/// until it reaches this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// An instance that ran this long without failing has its back-off
/// forgotten: its next failure waits [`INITIAL_BACKOFF`] again (kubelet's
/// 10 min, twice [`MAX_BACKOFF`]).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10 * 60);

/// The reason an instance waiting to be restarted is reported with.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// The restart back-off of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartBackoff {
    /// The delay the last failure was given; `None` before any failure or
    /// after a reset.
    delay: Option<Duration>,
    /// When the instance last started; `None` while it is not running.
    started: Option<Instant>,
    /// Restarts decided since the instance was assigned (never reset).
    restarts: u32,
}

impl RestartBackoff {
    /// Notes that the instance started (or restarted) at `now`.
    pub fn started(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// Notes that the instance failed at `now`, and returns how long to
    /// wait before starting it again. Each call counts one restart.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let ran_long = self
            .started
            .take()
            .is_some_and(|started| now.saturating_duration_since(started) >= BACKOFF_RESET_AFTER);
        let delay = match self.delay {
            Some(previous) if !ran_long => previous.saturating_mul(2).min(MAX_BACKOFF),
            _ => INITIAL_BACKOFF,
        };
        self.delay = Some(delay);
        self.restarts = self.restarts.saturating_add(1);
        delay
    }

    /// How many restarts [`RestartBackoff::failed`] decided: the instance's
    /// `restartCount`.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The delay the last failure was given, if the back-off was not reset
    /// since.
    pub fn current_delay(&self) -> Option<Duration> {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn doubles_from_ten_seconds_to_five_minutes() {
        let mut backoff = RestartBackoff::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..8 {
            backoff.started(now);
            now += secs(1);
            let delay = backoff.failed(now);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff.restarts(), 8);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut backoff = RestartBackoff::default();
        let t0 = Instant::now();
        backoff.started(t0);
        assert_eq!(backoff.failed(t0 + secs(1)), secs(10));
        backoff.started(t0 + secs(11));
        assert_eq!(backoff.failed(t0 + secs(12)), secs(20));
        // Just short of ten minutes: still doubling.
        backoff.started(t0 + secs(40));
        assert_eq!(backoff.failed(t0 + secs(40) + secs(599)), secs(40));
        // Ten minutes without failing: back to the first delay.
        let started = t0 + secs(1000);
        backoff.started(started);
        assert_eq!(backoff.failed(started + BACKOFF_RESET_AFTER), secs(10));
        assert_eq!(backoff.restarts(), 4);
        assert_eq!(backoff.current_delay(), Some(secs(10)));
    }

    #[test]
    fn a_failure_without_a_start_keeps_doubling() {
        // An instance that fails while starting (a fetch or a compile that
        // fails) never ran: its failures still back off.
        let mut backoff = RestartBackoff::default();
        let now = Instant::now();
        assert_eq!(backoff.failed(now), secs(10));
        assert_eq!(backoff.failed(now + secs(10)), secs(20));
    }
}
