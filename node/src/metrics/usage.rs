//! Per-instance usage for the node's reports (`berth top`), from the
//! sandboxes' cgroups: [`UsageTracker::sample`] turns two readings of
//! cumulative counters (cgroup CPU time, requests served) into rates.
//!
//! A shared sandbox has one cgroup for several instances, so its usage is
//! divided, honestly but approximately:
//! - **cpu**: the sandbox's CPU over the interval, split by each
//!   instance's share of the requests the sandbox served in it (evenly
//!   when it served none: idle overhead);
//! - **memory**: the sandbox's memory, split evenly among its instances
//!   (wasm linear memory lives only while a request runs, so most of a
//!   sandbox's memory is the worker, compiled code and caches they share);
//! - **requests per second**: each instance's own count over the interval.
//!
//! A dedicated sandbox's usage is its instance's, exactly, and so is a
//! container's (a sandbox `oci-<uid>` whose requests are not counted).
//! The node's totals are the sum of its sandboxes (what berth runs, not
//! the machine). Clock-free: the caller passes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_api::wire::{InstanceUsage, NodeUsage};

use super::SandboxUsage;

/// The shortest interval rates are measured over. Reports also go out
/// at once when an instance changes phase, sometimes milliseconds after
/// the previous one; such a report repeats the previous usage rather than
/// a rate over a sliver of time.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The previous reading, to difference against.
#[derive(Debug, Default)]
pub struct UsageTracker {
    last: Option<Reading>,
    /// What the previous reading gave.
    usage: NodeUsage,
}

#[derive(Debug)]
struct Reading {
    at: Instant,
    /// CPU nanoseconds by sandbox id.
    cpu: HashMap<String, u64>,
    /// Requests and their summed latency (µs) by instance uid.
    requests: HashMap<String, (u64, u64)>,
}

impl UsageTracker {
    /// The usage since the previous call (CPU and request rates are 0 on
    /// the first call, or for a sandbox not seen before).
    pub fn sample(&mut self, now: Instant, sandboxes: &[SandboxUsage]) -> NodeUsage {
        if let Some(last) = &self.last
            && now.saturating_duration_since(last.at) < MIN_INTERVAL
        {
            return self.usage.clone();
        }
        let elapsed_nanos = self
            .last
            .as_ref()
            .map_or(0, |last| now.saturating_duration_since(last.at).as_nanos());
        let mut usage = NodeUsage::default();
        for sandbox in sandboxes {
            let cpu_millicores = self
                .last
                .as_ref()
                .and_then(|l| l.cpu.get(&sandbox.id))
                .and_then(|before| {
                    let used = u128::from(sandbox.cpu_nanos.saturating_sub(*before));
                    used.saturating_mul(1000).checked_div(elapsed_nanos)
                })
                .map_or(0, |millis| u64::try_from(millis).unwrap_or(u64::MAX));
            usage.cpu_millicores = usage.cpu_millicores.saturating_add(cpu_millicores);
            usage.memory_bytes = usage.memory_bytes.saturating_add(sandbox.memory_bytes);
            // Requests served in the interval and their summed latency.
            let intervals: Vec<(u64, u64)> = sandbox
                .members
                .iter()
                .map(|member| {
                    let (requests, latency) = self
                        .last
                        .as_ref()
                        .and_then(|l| l.requests.get(&member.uid))
                        .copied()
                        .unwrap_or((member.requests, member.latency_micros));
                    (
                        member.requests.saturating_sub(requests),
                        member.latency_micros.saturating_sub(latency),
                    )
                })
                .collect();
            let served: Vec<u64> = intervals.iter().map(|(n, _)| *n).collect();
            let total_served: u64 = served.iter().sum();
            let count = u64::try_from(sandbox.members.len()).unwrap_or(u64::MAX);
            for ((member, served), (_, latency)) in
                sandbox.members.iter().zip(&served).zip(&intervals)
            {
                let cpu = if total_served > 0 {
                    share(cpu_millicores, *served, total_served)
                } else {
                    share(cpu_millicores, 1, count)
                };
                // Thousandths of a request per second.
                let rate = u128::from(*served)
                    .saturating_mul(1_000_000_000_000)
                    .checked_div(elapsed_nanos)
                    .map_or(0, |rate| u64::try_from(rate).unwrap_or(u64::MAX));
                usage.instances.push(InstanceUsage {
                    uid: member.uid.clone(),
                    cpu_millicores: cpu,
                    memory_bytes: share(sandbox.memory_bytes, 1, count),
                    millirequests_per_second: rate,
                    mean_latency_micros: latency.checked_div(*served).unwrap_or(0),
                    requests_total: member.requests,
                    errors_total: member.errors,
                    traps_total: member.traps,
                });
            }
        }
        usage.instances.sort_by(|a, b| a.uid.cmp(&b.uid));
        self.last = Some(Reading {
            at: now,
            cpu: sandboxes
                .iter()
                .map(|s| (s.id.clone(), s.cpu_nanos))
                .collect(),
            requests: sandboxes
                .iter()
                .flat_map(|s| &s.members)
                .map(|m| (m.uid.clone(), (m.requests, m.latency_micros)))
                .collect(),
        });
        self.usage = usage.clone();
        usage
    }
}

/// `value * part / whole`, without overflow; 0 when `whole` is 0.
fn share(value: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let exact = u128::from(value) * u128::from(part) / u128::from(whole);
    u64::try_from(exact).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly"
)]
mod tests {
    use std::time::Duration;

    use super::super::MemberUsage;
    use super::*;

    fn sandbox(id: &str, memory: u64, cpu_nanos: u64, members: &[(&str, u64)]) -> SandboxUsage {
        SandboxUsage {
            id: id.into(),
            memory_bytes: memory,
            cpu_nanos,
            members: members
                .iter()
                .map(|(uid, requests)| MemberUsage {
                    uid: (*uid).into(),
                    requests: *requests,
                    // 2 ms a request.
                    latency_micros: *requests * 2_000,
                    ..MemberUsage::default()
                })
                .collect(),
        }
    }

    #[test]
    fn first_sample_has_memory_but_no_rates() {
        let mut tracker = UsageTracker::default();
        let usage = tracker.sample(
            Instant::now(),
            &[sandbox("s", 100, 5, &[("a", 3), ("b", 0)])],
        );
        assert_eq!(usage.memory_bytes, 100);
        assert_eq!(usage.cpu_millicores, 0);
        assert_eq!(usage.instances.len(), 2);
        assert_eq!(usage.instances[0].memory_bytes, 50);
        assert_eq!(usage.instances[0].millirequests_per_second, 0);
    }

    #[test]
    fn cpu_follows_requests_and_memory_is_split_evenly() {
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        tracker.sample(
            start,
            &[sandbox("s", 300, 0, &[("a", 0), ("b", 0), ("c", 0)])],
        );
        // Half a core for 2 s; a served 3 requests, b 1, c none.
        let usage = tracker.sample(
            start + Duration::from_secs(2),
            &[sandbox(
                "s",
                300,
                1_000_000_000,
                &[("a", 3), ("b", 1), ("c", 0)],
            )],
        );
        assert_eq!(usage.cpu_millicores, 500);
        let by_uid: HashMap<&str, &InstanceUsage> = usage
            .instances
            .iter()
            .map(|i| (i.uid.as_str(), i))
            .collect();
        assert_eq!(by_uid["a"].cpu_millicores, 375);
        assert_eq!(by_uid["b"].cpu_millicores, 125);
        assert_eq!(by_uid["c"].cpu_millicores, 0);
        assert_eq!(by_uid["a"].millirequests_per_second, 1500);
        assert_eq!(by_uid["b"].millirequests_per_second, 500);
        assert_eq!(by_uid["a"].mean_latency_micros, 2_000);
        assert_eq!(by_uid["c"].mean_latency_micros, 0, "no requests, no mean");
        assert!(usage.instances.iter().all(|i| i.memory_bytes == 100));
    }

    #[test]
    fn idle_cpu_is_split_evenly_and_new_sandboxes_start_at_zero() {
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        tracker.sample(start, &[sandbox("s", 0, 0, &[("a", 5), ("b", 5)])]);
        let usage = tracker.sample(
            start + Duration::from_secs(1),
            &[
                sandbox("s", 0, 200_000_000, &[("a", 5), ("b", 5)]),
                sandbox("t", 10, 900_000_000, &[("c", 7)]),
            ],
        );
        assert_eq!(usage.cpu_millicores, 200);
        assert_eq!(usage.memory_bytes, 10);
        let cpu: Vec<u64> = usage.instances.iter().map(|i| i.cpu_millicores).collect();
        assert_eq!(cpu, [100, 100, 0]);
    }

    #[test]
    fn readings_closer_than_the_minimum_interval_repeat_the_last() {
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        tracker.sample(start, &[sandbox("s", 0, 0, &[("a", 0)])]);
        let second = start + Duration::from_secs(1);
        let usage = tracker.sample(second, &[sandbox("s", 10, 0, &[("a", 4)])]);
        assert_eq!(usage.instances[0].millirequests_per_second, 4000);
        let soon = tracker.sample(
            second + Duration::from_millis(10),
            &[sandbox("s", 10, 0, &[("a", 5)])],
        );
        assert_eq!(soon, usage);
        // The request in between is counted in the next interval.
        let later = tracker.sample(
            second + Duration::from_secs(1),
            &[sandbox("s", 10, 0, &[("a", 5)])],
        );
        assert_eq!(later.instances[0].millirequests_per_second, 1000);
    }

    #[test]
    fn latency_is_the_mean_over_the_interval_only() {
        let mut tracker = UsageTracker::default();
        let start = Instant::now();
        let member = |requests, latency_micros| SandboxUsage {
            id: "s".into(),
            memory_bytes: 0,
            cpu_nanos: 0,
            members: vec![MemberUsage {
                uid: "a".into(),
                requests,
                latency_micros,
                ..MemberUsage::default()
            }],
        };
        tracker.sample(start, &[member(10, 1_000_000)]);
        // Two requests since, 10 ms in all: the earlier slow ones don't count.
        let usage = tracker.sample(start + Duration::from_secs(1), &[member(12, 1_010_000)]);
        assert_eq!(usage.instances[0].mean_latency_micros, 5_000);
    }

    #[test]
    fn counters_since_load_pass_through_for_canary_analysis() {
        let mut tracker = UsageTracker::default();
        let member = MemberUsage {
            uid: "a".into(),
            requests: 40,
            latency_micros: 0,
            errors: 7,
            traps: 2,
        };
        let usage = tracker.sample(
            Instant::now(),
            &[SandboxUsage {
                id: "s".into(),
                members: vec![member],
                ..SandboxUsage::default()
            }],
        );
        let a = &usage.instances[0];
        assert_eq!(
            (a.requests_total, a.errors_total, a.traps_total),
            (40, 7, 2)
        );
    }

    #[test]
    fn share_rounds_down_and_tolerates_zero() {
        assert_eq!(share(10, 1, 3), 3);
        assert_eq!(share(10, 1, 0), 0);
        assert_eq!(share(u64::MAX, 2, 2), u64::MAX);
    }
}
