//! Cap'n Proto schemas for every node-to-node message (`ferry.capnp` beside
//! this crate's `Cargo.toml`) and the Rust that `capnpc` generates from them at
//! build time. The wire format is plain Cap'n Proto, so any implementation can
//! read a frame's payload given the schema file and the frame's kind.
//!
//! Only `ferry-transport` depends on this crate: it turns these readers and
//! builders into ferry's own types, so nothing else in the workspace sees a
//! Cap'n Proto type. This crate knows nothing of framing, connections or what
//! the messages mean.
//!
//! Prerequisite to build: the `capnp` compiler (Debian package `capnproto`).

/// The path of the schema file, for tools outside Rust that decode frames
/// (the transport's independent-decoder test hands it to pycapnp).
pub const SCHEMA_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ferry.capnp");

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    unused_qualifications,
    unsafe_op_in_unsafe_fn
)]
pub mod ferry_capnp {
    include!(concat!(env!("OUT_DIR"), "/ferry_capnp.rs"));
}
