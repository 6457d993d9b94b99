//! berth's multi-process tests: real `berth scheduler` and `berth node`
//! processes on loopback, driven through the `berth` CLI and real HTTP.

// Test support code outside #[test] functions fails loudly on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod bad_input;
mod bluegreen;
mod cli_output;
mod cluster;
mod containers;
mod cronjob;
mod daemonset;
mod dashboard;
mod dev;
mod events;
mod harness;
mod healing;
mod ingress;
mod jobs;
mod lifecycle;
mod logs;
mod metrics;
mod partition;
mod placement;
mod rollout;
mod sandbox;
mod services;
mod tls;
mod top;
mod tracing;
