//! ferry-transport carries messages between ferry nodes: offload offers and
//! their answers, memory pages, uploaded modules, and object bytes, listings
//! and deletions. It frames Cap'n Proto messages (schemas in `ferry-schemas`)
//! on glommio TCP streams, multiplexes concurrent requests on a connection by
//! correlation id, pools connections per peer on each shard with bounded
//! reconnect backoff, and, built with the `rdma` feature on a node with a
//! verbs device, moves page payloads by RDMA WRITE with immediate over a
//! reliable-connection queue pair negotiated in the Hello exchange. Every
//! frame, queue and wait has a limit (`limits.rs`); bad input from a peer
//! closes that connection with an error, never a panic or an unbounded
//! allocation.
//!
//! With a cluster secret in its config, a node proves it to every peer in
//! Hello and demands the same proof back before it serves or sends
//! anything (`auth.rs`); the secret itself never travels.
//!
//! It knows nothing of functions, wasm, objects' storage or placement: a
//! message is a value to deliver (a module's bytes and hash are carried, not
//! checked), and what an Offer or a page means is the runtime's business.
//! Cap'n Proto types stay inside this crate; callers see [`Message`] and its
//! parts, with large payloads as [`bytes::Bytes`] slices of the receive
//! buffer (not copies).
//!
//! Everything here runs inside a glommio executor (one per shard) and is
//! shard-local (`!Send`): a shard owns its connections and its pool.
//!
//! Prerequisites: the `capnp` compiler to build (`ferry-schemas`); for the
//! `rdma` feature, Debian's `libibverbs-dev` and `librdmacm-dev` and libclang
//! (`LIBCLANG_PATH`) to build, and a verbs device to use RDMA at run time
//! (without one the node logs that once and uses TCP).

mod auth;
mod codec;
mod config;
mod connection;
mod error;
mod frame;
pub mod limits;
mod link;
mod message;
mod pool;
#[cfg(feature = "rdma")]
pub mod rdma;
mod server;
#[doc(hidden)]
pub mod testing;

pub use auth::{ClusterSecret, Nonce, Proof};
pub use config::TransportConfig;
pub use connection::Connection;
pub use error::TransportError;
pub use frame::{Frame, FrameFlags, FrameHeader, FRAME_MAGIC, FRAME_VERSION};
pub use link::{tcp_notices, Link, LinkKind, LinkOffer};
pub use message::{
    Capabilities, Done, ErrorCode, Global, Hello, Message, MessageKind, ModuleHash, ModuleUpload,
    ObjectEntry, Offer, PageSet, Pages, RdmaEndpoint, StateChange, StateUpdate, Store, PAGE_BYTES,
    PROTOCOL_VERSION,
};
pub use pool::{Peer, PeerPool};
pub use server::serve;
