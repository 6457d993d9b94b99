//! Write berth components in Rust.
//!
//! A component built with this crate targets `wasm32-wasip2` and the
//! standard `wasi:http/proxy` world, so it runs on berth and equally under
//! `wasmtime serve`. The async runtime, HTTP types and outbound client are
//! [`wstd`]'s; this crate adds what a service on berth needs around them:
//!
//! - [`http_component`]: turns `async fn handle(req: Request) -> impl
//!   IntoResponse` into the component's HTTP export.
//! - [`http::Router`]: method and path routing with parameters
//!   (`/items/:id`) and a trailing wildcard (`/files/*path`).
//! - [`http::Json`]: read a JSON body, answer with JSON.
//! - [`config`]: the configuration the platform gives an instance (the
//!   Deployment's `env`, and `BERTH_INSTANCE`, `BERTH_NAMESPACE`,
//!   `BERTH_DEPLOYMENT`).
//! - [`http::send`], [`http::get`] and [`http::service_url`]: outbound HTTP
//!   to other Services by name (`http://NAME`) and to allowed hosts.
//! - [`info!`], [`warn!`], [`error!`], [`debug!`]: structured log lines (one
//!   JSON object per line on stderr), which `berth logs` shows.
//! - [`#[job]`](macro@job) and [`job`](mod@job): the `main` of a component
//!   run to completion as a Job.
//!
//! The smallest service:
//!
//! ```ignore
//! use berth_sdk::http::{IntoResponse, Request};
//!
//! #[berth_sdk::http_component]
//! async fn handle(_req: Request) -> impl IntoResponse {
//!     "Hello from berth\n"
//! }
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the
//! examples under `sdk/examples/` (`hello-sdk`, `json-api`, `call-service`,
//! `job-sdk`) are complete projects.

#![deny(missing_docs)]

pub mod config;
pub mod http;
pub mod job;
pub mod log;

#[doc(hidden)]
pub mod __private;

pub use berth_sdk_macros::{http_component, job};
/// The async runtime this crate builds on, for timers, tasks and I/O.
pub use wstd;
