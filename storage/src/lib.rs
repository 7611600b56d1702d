//! Object storage for ferry nodes: named byte objects in per-user namespaces,
//! stored, read, listed and removed from inside a shard's glommio executor
//! without blocking it, and the placement that says which storage node holds
//! an object. The runtime reaches every kind of store through
//! [`ObjectStore`]: the [`EmbeddedStore`] on local disk, or the
//! [`RadosStore`] in a Ceph pool; both pass one conformance suite. This
//! crate knows nothing of wasm, functions, calls or offloading: an object is
//! a user, a key of arbitrary bytes and its data, and a read can land in any
//! caller-provided buffer (a guest's linear memory included) without the
//! store knowing what it is.
//!
//! Prerequisites, which the node checks at start-up:
//! - Linux with io_uring (5.8 or later): all file I/O goes through glommio's
//!   ring with O_DIRECT, on a filesystem that supports O_DIRECT (ext4, xfs).
//!   `/proc` mounted: object files are reopened for DMA through
//!   `/proc/<pid>/fd` (see `dma::open_existing`).
//! - Locked memory for glommio: each executor registers its I/O buffers
//!   (`io_memory`, 10 MiB by default) and its rings with the kernel, so
//!   `RLIMIT_MEMLOCK` must cover that per shard, or the process needs
//!   `CAP_IPC_LOCK`.
//! - librados (Debian: `librados2` to run, `librados-dev` to build): the
//!   crate links it whichever store a node uses. The Ceph store also needs
//!   a reachable cluster (Ceph 16 or later), its config file and an
//!   existing pool; [`RadosStore::connect`] fails at start-up otherwise.
//!   Its blocking librados calls run on a few threads of the store's own,
//!   never on a shard. Tests start a throwaway cluster with
//!   `deploy/ceph/start.sh` (Debian's `ceph-mon`, `ceph-osd`, `ceph-common`).
//!
//! Errors are one enum, [`StorageError`]; limits and format sizes live in
//! [`limits`].

mod dma;
mod embedded;
mod error;
mod header;
pub mod limits;
mod object_store;
mod placement;
mod rados;

pub use embedded::{EmbeddedReader, EmbeddedStore, EmbeddedWriter, ObjectInfo, StoreConfig};
pub use error::StorageError;
pub use object_store::{ObjectReader, ObjectStore, PutStream};
pub use placement::{
    CephLocation, CephNode, CephPlacementConfig, LocalPlacement, Location, Placement,
};
pub use rados::{RadosConfig, RadosReader, RadosStore};
