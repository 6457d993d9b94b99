//! berth's multi-process tests: real `berth scheduler` and `berth node`
//! processes on loopback, driven through the `berth` CLI and real HTTP.

mod bad_input;
mod cluster;
mod harness;
mod tls;
