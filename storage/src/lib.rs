//! Object storage for ferry nodes: named byte objects in per-user namespaces,
//! stored, read, listed and removed from inside a shard's glommio executor
//! without blocking it. The runtime reaches every kind of store through
//! [`ObjectStore`]; today that is the [`EmbeddedStore`] on local disk, with
//! Ceph RADOS to follow. This crate knows nothing of wasm, functions, calls
//! or offloading: an object is a user, a key of arbitrary bytes and its
//! data, and a read can land in any caller-provided buffer (a guest's linear
//! memory included) without the store knowing what it is.
//!
//! Prerequisites, which the node checks at start-up:
//! - Linux with io_uring (5.8 or later): all file I/O goes through glommio's
//!   ring with O_DIRECT, on a filesystem that supports O_DIRECT (ext4, xfs).
//! - Locked memory for glommio: each executor registers its I/O buffers
//!   (`io_memory`, 10 MiB by default) and its rings with the kernel, so
//!   `RLIMIT_MEMLOCK` must cover that per shard, or the process needs
//!   `CAP_IPC_LOCK`.
//!
//! Errors are one enum, [`StorageError`]; limits and format sizes live in
//! [`limits`].

mod dma;
mod embedded;
mod error;
mod header;
pub mod limits;
mod object_store;

pub use embedded::{EmbeddedStore, ObjectInfo, StoreConfig};
pub use error::StorageError;
pub use object_store::ObjectStore;
