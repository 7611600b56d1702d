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

/// Bytes of fixed fields at the start of the header; user and key follow.
pub const HEADER_FIXED_BYTES: usize = 64;

const _: () = assert!(HEADER_FIXED_BYTES + USER_BYTES_MAX + KEY_BYTES_MAX <= HEADER_BYTES);
const _: () = assert!(HEADER_BYTES as u64 % BLOCK_BYTES == 0);
const _: () = assert!(IO_CHUNK_BYTES_MAX as u64 % BLOCK_BYTES == 0);
const _: () = assert!(HEAD_DATA_BYTES_MAX as u64 % BLOCK_BYTES == 0);
const _: () = assert!(HEADER_BYTES + HEAD_DATA_BYTES_MAX <= IO_CHUNK_BYTES_MAX);
const _: () = assert!(IO_CHUNKS_IN_FLIGHT_MAX > 0);
