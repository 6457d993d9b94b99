//! Paths of berth's example components, built from source by this crate's
//! build script for `wasm32-wasip2`. Tests depend on this crate instead of on
//! checked-in binaries.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
