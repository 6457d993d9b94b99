//! berth's API: the object model users write in manifests, its validation,
//! and the messages scheduler, nodes and CLI exchange.
//!
//! Start with [`objects`] (the kinds), then [`manifest`] (YAML in, typed
//! objects or an error naming file, object and field out) and [`wire`] (the
//! framed, versioned postcard protocol). With the `quic` feature, [`quic`]
//! adds the QUIC and mutual-TLS plumbing every berth process shares.
//!
//! Out of scope: I/O other than the `quic` feature, policy, storage.

#[cfg(feature = "admin")]
pub mod admin;
pub mod autoscaler;
pub mod canary;
pub mod capability;
pub mod container;
pub mod cronjob;
pub mod daemonset;
pub mod disruption;
pub mod ingress;
pub mod job;
pub mod lifecycle;
pub mod manifest;
pub mod meta;
pub mod netpol;
pub mod objects;
pub mod outbound;
pub mod quantity;
#[cfg(feature = "quic")]
pub mod quic;
pub mod quota;
pub mod rbac;
pub mod rollout;
pub mod scheduling;
pub mod schema;
pub mod secret;
pub mod service;
pub mod trace;
pub mod validate;
pub mod wire;

pub use meta::{API_VERSION, DEFAULT_NAMESPACE, LabelSelector, ObjectMeta, OwnerReference};
pub use objects::*;
