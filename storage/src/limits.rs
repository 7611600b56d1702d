//! Default limits and the fixed sizes of the on-disk format.
//!
//! The three `*_MAX` defaults are what [`crate::StoreConfig::new`] uses; a
//! node may lower them in its config. The I/O sizes bound what one shard holds
//! in flight for a single object.

/// Largest object a `put` accepts by default: 1 GiB. A whole object passes
/// through one shard's memory on `put` and on an unbounded `get`.
pub const OBJECT_BYTES_MAX: u64 = 1 << 30;

/// Longest key, in bytes. Keys are arbitrary bytes and are stored in full in
/// the object's header block.
pub const KEY_BYTES_MAX: usize = 1024;

/// Longest user name, in bytes. Stored in full in the object's header block.
pub const USER_BYTES_MAX: usize = 256;

/// Size of the header block at the start of every object file. Data starts
/// right after it, so data offsets keep the block alignment O_DIRECT needs.
pub const HEADER_BYTES: usize = 4096;

/// The block size every object file is laid out and padded in. O_DIRECT needs
/// offsets and lengths aligned to the device's logical block size, which is
/// 512 or 4096 on the devices we run on; 4096 covers both.
pub const BLOCK_BYTES: u64 = 4096;

/// Largest single read or write issued for one object. Together with
/// [`IO_CHUNKS_IN_FLIGHT_MAX`] it bounds the buffers one object read holds:
/// 4 x 1 MiB. At ~2 GB/s per NVMe device a 1 MiB request takes ~0.5 ms, so
/// four in flight keep the device queue busy while a finished chunk is copied
/// out (~0.1 ms at 10 GB/s memcpy).
pub const IO_CHUNK_BYTES_MAX: usize = 1 << 20;

/// Most chunk reads or writes in flight for one object at a time.
pub const IO_CHUNKS_IN_FLIGHT_MAX: usize = 4;

/// Reads that end within this many data bytes are served together with the
/// header in a single I/O: one round trip for small objects instead of two.
pub const HEAD_DATA_BYTES_MAX: usize = 60 * 1024;

/// Most objects `list` returns for one user. Each entry costs one header read
/// (~0.1 ms on NVMe, four in flight) and a key of up to 1 KiB of memory, so
/// the largest listing takes a few seconds and ~64 MiB at worst.
pub const LIST_OBJECTS_MAX: usize = 65_536;

/// Threads a [`crate::RadosStore`] runs its blocking librados calls on. A
/// call mostly waits on the network (~0.1-1 ms per small op on 10GbE), so a
/// few threads keep a node's shards' calls flowing; the queue in front of
/// them holds the rest.
pub const RADOS_THREADS: usize = 4;

/// librados calls that may wait for a [`crate::RadosStore`] worker thread.
/// A shard whose call finds the queue full waits (asynchronously) for room.
pub const RADOS_QUEUE_CALLS_MAX: usize = 64;

/// Longest a librados call may take before it fails with ETIMEDOUT
/// (`rados_osd_op_timeout`, `rados_mon_op_timeout`, and the connect timeout
/// `client_mount_timeout`). librados' own default is to wait forever.
pub const RADOS_OP_MS_MAX: u64 = 30_000;

/// Longest RADOS object name the OSDs accept (`osd_max_object_name_len`).
pub const RADOS_OBJECT_NAME_BYTES_MAX: usize = 2048;

/// Most bytes one RADOS read operation asks for. librados refuses reads of
/// more than `i32::MAX` bytes; larger `read_into`s are cut into several.
pub const RADOS_READ_OP_BYTES_MAX: usize = 1 << 30;

/// Bytes a `get` asks for in its first operation, which also stats the
/// object: smaller objects take one round trip, larger ones two (the
/// second sized exactly).
pub const RADOS_GET_FIRST_BYTES: usize = 64 * 1024;

/// How often a Ceph [`crate::Placement`] reads the OSD map epoch (one small
/// monitor command). Until it sees a change, shards keep using cached
/// answers: after an OSD goes down, requests may go to the old node for up
/// to this long, and that node serves them through RADOS or declines.
pub const PLACEMENT_EPOCH_CHECK_MS: u64 = 1000;

/// Objects one shard's Ceph placement cache remembers (~100 bytes each:
/// ~6 MiB per shard when full). A full cache starts over.
pub const PLACEMENT_CACHE_ENTRIES_MAX: usize = 65_536;

/// Bytes of fixed fields at the start of the header; user and key follow.
pub const HEADER_FIXED_BYTES: usize = 64;

const _: () = assert!(HEADER_FIXED_BYTES + USER_BYTES_MAX + KEY_BYTES_MAX <= HEADER_BYTES);
const _: () = assert!(HEADER_BYTES as u64 % BLOCK_BYTES == 0);
const _: () = assert!(IO_CHUNK_BYTES_MAX as u64 % BLOCK_BYTES == 0);
const _: () = assert!(HEAD_DATA_BYTES_MAX as u64 % BLOCK_BYTES == 0);
const _: () = assert!(HEADER_BYTES + HEAD_DATA_BYTES_MAX <= IO_CHUNK_BYTES_MAX);
const _: () = assert!(IO_CHUNKS_IN_FLIGHT_MAX > 0);
const _: () = assert!(RADOS_THREADS > 0 && RADOS_QUEUE_CALLS_MAX > 0);
const _: () = assert!(RADOS_READ_OP_BYTES_MAX <= i32::MAX as usize);
const _: () = assert!(RADOS_GET_FIRST_BYTES <= RADOS_READ_OP_BYTES_MAX);
