//! berth's multi-process tests: real `berth scheduler` and `berth node`
//! processes on loopback, driven through the `berth` CLI and real HTTP.

// Test support code outside #[test] functions fails loudly on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod audit;
mod autoscale;
mod bad_input;
mod bluegreen;
mod canary;
mod cli_output;
mod cluster;
mod containers;
mod contexts;
mod cronjob;
mod daemonset;
mod dashboard;
mod dev;
mod diff;
mod drain;
mod events;
mod harness;
mod healing;
mod ingress;
mod jobs;
mod lifecycle;
mod logs;
mod metrics;
mod netpol;
mod new_build_deploy;
mod oci_components;
mod partition;
mod placement;
mod quota;
mod rbac;
mod rollout;
mod roundtrip;
mod sandbox;
mod sdk;
mod secrets;
mod services;
mod tls;
mod top;
mod tracing;
mod tutorial;
