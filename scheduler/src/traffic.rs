//! What each instance answered over a recent window, from the nodes'
//! usage reports, for canary analysis (`controller/canary.rs`).
//!
//! Nodes report per-instance counters since the instance was loaded
//! (`InstanceUsage.requests_total`, `errors_total`, `traps_total`);
//! [`Traffic`] keeps a short history of them per uid and answers
//! "how many in the last `window`" by differencing the newest reading
//! with the last one taken before the window began (or with zero, the
//! counters' start, when there is none). It lives in memory only, like
//! the reports themselves: just after a scheduler restart a window may
//! reach back to the instance's load. Clock-free: callers pass the times.

use std::collections::{HashMap, VecDeque};

use berth_api::wire::NodeUsage;
use jiff::{SignedDuration, Timestamp};

/// How far back readings are kept; a longer analysis window counts from
/// the oldest reading.
pub const MAX_HISTORY: SignedDuration = SignedDuration::from_mins(10);

/// Readings closer than this to the previous one of the same instance
/// replace it rather than add one, so the history stays small.
pub const MIN_SPACING: SignedDuration = SignedDuration::from_secs(2);

/// Requests an instance answered, and how many failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Requests answered.
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Requests whose component trapped or was stopped.
    pub traps: u64,
}

impl Counts {
    /// `self - before`, or `self` when a counter went back (the instance
    /// was loaded again and counts from zero).
    fn since(self, before: Counts) -> Counts {
        if self.requests < before.requests
            || self.errors < before.errors
            || self.traps < before.traps
        {
            return self;
        }
        Counts {
            requests: self.requests - before.requests,
            errors: self.errors - before.errors,
            traps: self.traps - before.traps,
        }
    }

    /// The sum of two counts.
    pub fn plus(self, other: Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_add(other.requests),
            errors: self.errors.saturating_add(other.errors),
            traps: self.traps.saturating_add(other.traps),
        }
    }
}

/// Recent readings of every instance's counters, by uid.
#[derive(Debug, Default)]
pub struct Traffic {
    readings: HashMap<String, VecDeque<(Timestamp, Counts)>>,
}

impl Traffic {
    /// Keeps the counters of one node's report, received at `now`, and
    /// forgets readings older than [`MAX_HISTORY`].
    pub fn record(&mut self, usage: &NodeUsage, now: Timestamp) {
        for instance in &usage.instances {
            let counts = Counts {
                requests: instance.requests_total,
                errors: instance.errors_total,
                traps: instance.traps_total,
            };
            let history = self.readings.entry(instance.uid.clone()).or_default();
            // The newest reading always goes in; the one it follows stays
            // only if it is [`MIN_SPACING`] past the reading before it.
            let len = history.len();
            let crowded = match (
                len.checked_sub(2).and_then(|i| history.get(i)),
                history.back(),
            ) {
                (Some((earlier, _)), Some((last, _))) => {
                    last.duration_since(*earlier) < MIN_SPACING
                }
                _ => false,
            };
            if crowded {
                history.pop_back();
            }
            history.push_back((now, counts));
        }
        let oldest = now.checked_sub(MAX_HISTORY).unwrap_or(now);
        self.readings.retain(|_, history| {
            while history.len() > 1 && history.get(1).is_some_and(|(at, _)| *at <= oldest) {
                history.pop_front();
            }
            history.back().is_some_and(|(at, _)| *at > oldest)
        });
    }

    /// What `uid` answered between `now - window` and its newest reading.
    /// An instance first seen inside the window counts from zero (its
    /// counters start when it is loaded); one never seen answered nothing.
    pub fn over(&self, uid: &str, window: SignedDuration, now: Timestamp) -> Counts {
        let Some(history) = self.readings.get(uid) else {
            return Counts::default();
        };
        let Some((_, newest)) = history.back() else {
            return Counts::default();
        };
        let start = now.checked_sub(window).unwrap_or(now);
        let before = history
            .iter()
            .rev()
            .find(|(at, _)| *at <= start)
            .map(|(_, counts)| *counts)
            .unwrap_or_default();
        newest.since(before)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use berth_api::wire::InstanceUsage;

    use super::*;

    fn report(uid: &str, requests: u64, errors: u64) -> NodeUsage {
        NodeUsage {
            instances: vec![InstanceUsage {
                uid: uid.into(),
                requests_total: requests,
                errors_total: errors,
                ..InstanceUsage::default()
            }],
            ..NodeUsage::default()
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_window_counts_from_the_last_reading_before_it() {
        let mut traffic = Traffic::default();
        traffic.record(&report("a", 100, 0), at(0));
        traffic.record(&report("a", 150, 5), at(10));
        traffic.record(&report("a", 200, 20), at(40));
        let window = SignedDuration::from_secs(30);
        // From the reading at 10 s (the last before 40 - 30).
        assert_eq!(
            traffic.over("a", window, at(40)),
            Counts {
                requests: 50,
                errors: 15,
                traps: 0
            }
        );
        // A young instance counts from zero; an unknown one is silent.
        let long = SignedDuration::from_secs(300);
        assert_eq!(traffic.over("a", long, at(40)).requests, 200);
        assert_eq!(traffic.over("b", window, at(40)), Counts::default());
    }

    #[test]
    fn reloaded_instances_and_old_readings() {
        let mut traffic = Traffic::default();
        traffic.record(&report("a", 100, 0), at(0));
        traffic.record(&report("a", 7, 1), at(5));
        let window = SignedDuration::from_secs(3);
        assert_eq!(traffic.over("a", window, at(5)).requests, 7);
        // Close readings replace each other; the history stays bounded.
        for second in 6..1000 {
            traffic.record(&report("a", 7, 1), at(second));
        }
        let kept = traffic.readings.get("a").unwrap().len();
        assert!(kept <= 302, "{kept} readings kept");
        traffic.record(&report("b", 1, 0), at(2000));
        assert!(!traffic.readings.contains_key("a"), "stale instances go");
    }
}
