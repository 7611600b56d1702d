//! ferry's node: configuration, shards, the HTTP API, the function
//! registry, the wasm executor with the Faasm host ABI, and the `ferry` CLI.
//!
//! The runtime knows functions and calls; it reaches objects only through
//! `ferry-storage`'s `ObjectStore` and other nodes only through
//! `ferry-transport`. It never sees a Cap'n Proto reader or a file layout.
//!
//! Prerequisites (checked at start): Linux with io_uring (5.8+, not disabled
//! by `kernel.io_uring_disabled`), and a locked-memory limit of about 5 MiB
//! per shard for glommio's registered buffers and rings.

pub mod budget;
pub mod client;
pub mod cluster;
pub mod config;
pub mod exec;
pub mod funclet;
pub mod host;
pub mod http;
pub mod invocation;
pub mod limits;
pub mod machine;
pub mod metrics;
pub mod node;
pub mod objects;
pub mod peer_server;
pub mod peers;
pub mod registry;
pub mod shard;
pub mod slots;
pub mod state_store;
pub mod stores;
