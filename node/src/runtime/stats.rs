//! What an instance's requests came to: counts by outcome, and the last
//! termination, for the supervisor to report; and how long instantiations
//! took, for the node's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::limits::Termination;

/// A snapshot of one prepared instance's requests since it was prepared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Requests handed to the instance.
    pub requests: u64,
    /// Requests stopped at their deadline.
    pub deadline_exceeded: u64,
    /// Requests that trapped after a refused memory grow.
    pub memory_limit_exceeded: u64,
    /// Requests that trapped after a refused table grow.
    pub table_limit_exceeded: u64,
    /// Requests whose wasm stack overflowed.
    pub stack_overflow: u64,
    /// Requests that used up their fuel.
    pub fuel_exhausted: u64,
    /// Requests ended by any other trap.
    pub traps: u64,
    /// Requests that failed without a termination: no response, an error
    /// code instead of one, an instantiation error.
    pub other_failures: u64,
    /// The most recent termination, if any.
    pub last_termination: Option<Termination>,
}

impl InstanceStats {
    /// Requests that failed, for whatever reason.
    pub fn failures(&self) -> u64 {
        self.deadline_exceeded
            + self.memory_limit_exceeded
            + self.table_limit_exceeded
            + self.stack_overflow
            + self.fuel_exhausted
            + self.traps
            + self.other_failures
    }
}

/// The live counters behind [`InstanceStats`]: the request count is an
/// atomic (every request touches it), failures take a lock (they are rare).
#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    failures: Mutex<InstanceStats>,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn terminated(&self, termination: &Termination) {
        let mut failures = self.failures();
        let count = match termination {
            Termination::DeadlineExceeded => &mut failures.deadline_exceeded,
            Termination::MemoryLimitExceeded => &mut failures.memory_limit_exceeded,
            Termination::TableLimitExceeded => &mut failures.table_limit_exceeded,
            Termination::StackOverflow => &mut failures.stack_overflow,
            Termination::FuelExhausted => &mut failures.fuel_exhausted,
            Termination::Trap(_) => &mut failures.traps,
        };
        *count += 1;
        failures.last_termination = Some(termination.clone());
    }

    pub(crate) fn failed(&self) {
        self.failures().other_failures += 1;
    }

    pub(crate) fn snapshot(&self) -> InstanceStats {
        InstanceStats {
            requests: self.requests.load(Ordering::Relaxed),
            ..self.failures().clone()
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, InstanceStats> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Instantiation samples kept between two takes; past it, instantiations
/// go unmeasured rather than grow memory (a worker takes them every
/// 100 ms).
pub const MAX_INSTANTIATION_SAMPLES: usize = 65_536;

/// How long instantiations took, in seconds, until taken.
#[derive(Debug, Default)]
pub(crate) struct Instantiations {
    seconds: Mutex<Vec<f64>>,
}

impl Instantiations {
    pub(crate) fn record(&self, seconds: f64) {
        let mut all = self.seconds.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() < MAX_INSTANTIATION_SAMPLES {
            all.push(seconds);
        }
    }

    pub(crate) fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.seconds.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_keeps_the_last_termination() {
        let counters = Counters::default();
        for _ in 0..3 {
            counters.request();
        }
        counters.terminated(&Termination::DeadlineExceeded);
        counters.terminated(&Termination::Trap("boom".into()));
        counters.failed();
        let stats = counters.snapshot();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.deadline_exceeded, 1);
        assert_eq!(stats.traps, 1);
        assert_eq!(stats.other_failures, 1);
        assert_eq!(stats.failures(), 3);
        assert_eq!(
            stats.last_termination,
            Some(Termination::Trap("boom".into()))
        );
    }

    #[test]
    fn instantiations_are_taken_once_and_bounded() {
        let samples = Instantiations::default();
        samples.record(0.5);
        samples.record(0.25);
        assert_eq!(samples.take(), [0.5, 0.25]);
        assert!(samples.take().is_empty());
        for _ in 0..=MAX_INSTANTIATION_SAMPLES {
            samples.record(1.0);
        }
        assert_eq!(samples.take().len(), MAX_INSTANTIATION_SAMPLES);
    }
}
