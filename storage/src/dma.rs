//! Block-aligned file I/O through glommio DMA files (io_uring, O_DIRECT).
//!
//! Everything here runs on the calling shard's executor. Large transfers are
//! cut into chunks of at most [`IO_CHUNK_BYTES_MAX`], with at most
//! [`IO_CHUNKS_IN_FLIGHT_MAX`] in flight, so a 64 MiB object streams through
//! 4 MiB of buffers instead of one 64 MiB allocation per direction.

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;

use glommio::io::{DmaFile, OpenOptions};

use crate::error::{os_error, StorageError};
use crate::limits::{BLOCK_BYTES, IO_CHUNKS_IN_FLIGHT_MAX, IO_CHUNK_BYTES_MAX};

pub(crate) fn align_down(v: u64) -> u64 {
    v - v % BLOCK_BYTES
}

pub(crate) fn align_up(v: u64) -> u64 {
    v.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

thread_local! {
    /// Devices (st_dev) whose polled-I/O support this thread's executor has
    /// already probed.
    static PROBED_DEVICES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Makes sure this thread's executor has probed the device under the store
/// before any object file is opened.
///
/// glommio 0.9 decides once per thread and device whether to use polled I/O,
/// by reading the first block of the first file opened for DMA there. If that
/// file is empty (a new temp file), the read succeeds without reaching the
/// device, polled I/O is switched on wrongly, and every later read on that
/// device fails with EOPNOTSUPP (os error 95). Opening a file that is known to
/// hold a full block first makes the probe reach the device and get the
/// right answer.
pub(crate) async fn ensure_probed(device: u64, probe_path: &Path) -> Result<(), StorageError> {
    if PROBED_DEVICES.with(|devices| devices.borrow().contains(&device)) {
        return Ok(());
    }
    // Plain `dma_open` is safe here (see `open_existing`): the store never
    // unlinks its probe file.
    let file = OpenOptions::new()
        .read(true)
        .dma_open(probe_path)
        .await
        .map_err(|e| StorageError::io("opening the I/O probe file", probe_path, os_error(e)))?;
    close(file, probe_path).await?;
    PROBED_DEVICES.with(|devices| {
        let mut devices = devices.borrow_mut();
        if !devices.contains(&device) {
            devices.push(device);
        }
    });
    Ok(())
}

/// Opens an existing file for DMA reads; `None` when it does not exist.
/// Use this, never `dma_open` on the path, for any file that another task
/// may unlink: object files (a delete) and the entries of a listing.
///
/// glommio 0.9's `dma_open(path)` opens the file and then looks the path up
/// again with `statfs(path).unwrap()` (to tell tmpfs apart); a delete that
/// unlinks the file in between makes that `unwrap` panic and takes the
/// whole node down. So the file is first opened with a plain open(2)
/// (`O_PATH`: it only pins the inode), and glommio is handed
/// `/proc/<pid>/fd/N` of that pin: the magic link reaches the pinned inode
/// even once its name is gone, so both glommio's open and its `statfs`
/// find it. The pin is closed as soon as the DMA file is open; the open
/// DMA file keeps the inode alive from then on.
///
/// The pin's open(2) runs on the shard, not through the ring: a path
/// lookup of a few microseconds when the dentries are cached (they are for
/// anything read lately; glommio's own `statfs` did such a lookup too), a
/// directory block read when they are not. Through the ring it would add
/// an openat, a statx and a close, punted to io-wq. Measured on a 2-core
/// VM, a `stat` of a 100-byte object (open, 4 KiB read, close) took ~85 us
/// with `dma_open(path)`, ~100 us this way, ~135 us with the pin opened
/// through the ring. A missing object costs no ring I/O at all, so a read
/// of one returns without yielding.
///
/// The `DmaFile`'s own path is that `/proc` link, dangling once the pin is
/// closed: use only its fd-based methods (reads, `alignment`, `close`),
/// never path-based ones (`file_size`, `rename`, `remove`).
pub(crate) async fn open_existing(path: &Path) -> Result<Option<DmaFile>, StorageError> {
    let pin = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
    {
        Ok(pin) => pin,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("opening", path, e)),
    };
    // `/proc/<pid>` rather than `/proc/self`: glommio's open may run on an
    // io_uring worker, and before Linux 5.12 those were kernel threads, for
    // which `self` names no process.
    let pinned = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        pin.as_raw_fd()
    ));
    let opened = OpenOptions::new().read(true).dma_open(&pinned).await;
    // The pin has done its job whether or not the DMA open worked; closing
    // an O_PATH descriptor cannot fail in any way worth reporting.
    drop(pin);
    match opened {
        Ok(file) => Ok(Some(file)),
        // Not NotFound-means-missing here: the pin holds the file, so any
        // error (no /proc mounted, say) is a real one.
        Err(e) => Err(StorageError::io("reopening for DMA", path, os_error(e))),
    }
}

/// Checks that the file's O_DIRECT alignment divides our block size, so every
/// offset and length we issue is valid for it.
pub(crate) fn check_alignment(file: &DmaFile, path: &Path) -> Result<(), StorageError> {
    let alignment = file.alignment();
    if alignment == 0 || BLOCK_BYTES % alignment != 0 {
        return Err(StorageError::io(
            "checking O_DIRECT alignment of",
            path,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("device block size {alignment} does not divide {BLOCK_BYTES}"),
            ),
        ));
    }
    Ok(())
}

pub(crate) async fn close(file: DmaFile, path: &Path) -> Result<(), StorageError> {
    file.close()
        .await
        .map_err(|e| StorageError::io("closing", path, os_error(e)))
}

/// Runs the futures from `jobs` with at most `in_flight_max` pending at once
/// and hands each output to `done` as it completes, in completion order.
/// Stops at the first error; dropping the futures still pending cancels
/// their I/O.
pub(crate) async fn for_each_bounded<J, T>(
    mut jobs: impl Iterator<Item = J>,
    in_flight_max: usize,
    mut done: impl FnMut(T) -> Result<(), StorageError>,
) -> Result<(), StorageError>
where
    J: Future<Output = Result<T, StorageError>>,
{
    debug_assert!(in_flight_max > 0);
    let mut in_flight: Vec<Pin<Box<J>>> = Vec::with_capacity(in_flight_max);
    let mut jobs_left = true;
    futures_lite::future::poll_fn(|cx| loop {
        while jobs_left && in_flight.len() < in_flight_max {
            match jobs.next() {
                Some(job) => in_flight.push(Box::pin(job)),
                None => jobs_left = false,
            }
        }
        if in_flight.is_empty() {
            return Poll::Ready(Ok(()));
        }
        // Poll every pending job: new ones must be polled once to submit
        // their I/O; finished ones free a slot for the next job.
        let mut finished_any = false;
        let mut i = 0;
        while i < in_flight.len() {
            match in_flight[i].as_mut().poll(cx) {
                Poll::Ready(output) => {
                    in_flight.swap_remove(i);
                    finished_any = true;
                    if let Err(e) = output.and_then(&mut done) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Pending => i += 1,
            }
        }
        if !finished_any {
            return Poll::Pending;
        }
    })
    .await
}

/// Reads file bytes `[pos, pos + dst.len())` into `dst`. The file must hold
/// them all: a short read means the file is shorter than its header says.
pub(crate) async fn read_exact_at(
    file: &DmaFile,
    path: &Path,
    pos: u64,
    dst: &mut [u8],
) -> Result<(), StorageError> {
    let end = pos + dst.len() as u64;
    let first = align_down(pos);
    let last = align_up(end);
    let chunk = IO_CHUNK_BYTES_MAX as u64;
    let chunks = (last - first).div_ceil(chunk);
    let jobs = (0..chunks).map(|i| {
        let at = first + i * chunk;
        let len = chunk.min(last - at) as usize;
        async move {
            let read = file
                .read_at_aligned(at, len)
                .await
                .map_err(|e| StorageError::io("reading", path, os_error(e)))?;
            Ok((at, read))
        }
    });
    for_each_bounded(jobs, IO_CHUNKS_IN_FLIGHT_MAX, |(at, read)| {
        // The part of [at, at + read.len()) that falls inside [pos, end).
        let want_from = at.max(pos);
        let want_to = (at + IO_CHUNK_BYTES_MAX as u64).min(end);
        if at + (read.len() as u64) < want_to {
            return Err(StorageError::corrupt(
                path,
                format!(
                    "file ends at byte {}, before the data it should hold (up to byte {end})",
                    at + read.len() as u64
                ),
            ));
        }
        let src = &read[(want_from - at) as usize..(want_to - at) as usize];
        let part = &mut dst[(want_from - pos) as usize..(want_to - pos) as usize];
        populate(part);
        part.copy_from_slice(src);
        Ok(())
    })
    .await
}

/// Backs the whole pages inside `dst` with memory in one system call
/// (`MADV_POPULATE_WRITE`) before a copy fills it. A destination that is
/// fresh memory (a getMmap buffer in newly grown linear memory) otherwise
/// takes one page fault per 4 KiB as the copy first touches each page,
/// which cost more CPU than the copy itself; for memory already backed it
/// is a walk of the page table. Each part is populated just before its
/// copy, while the other parts' reads are in flight, so it takes no time
/// from the disk. Best effort: a kernel without it (before 5.14) answers
/// EINVAL and the copy faults the pages in as before. Parts under 64 KiB
/// (16 faults at most) are left to the copy: there the system call would
/// cost about what it saves.
pub(crate) fn populate(dst: &mut [u8]) {
    const PAGE: usize = 4096;
    const WORTH_BYTES_MIN: usize = 64 << 10;
    let start = dst.as_mut_ptr() as usize;
    let from = start.next_multiple_of(PAGE);
    let to = (start + dst.len()) / PAGE * PAGE;
    if to >= from + WORTH_BYTES_MIN {
        // SAFETY: [from, to) lies inside `dst`, memory the caller lets us
        // write; populating it leaves its contents as they are.
        let rc = unsafe {
            libc::madvise(
                from as *mut libc::c_void,
                to - from,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc == 0 {
            POPULATED_BYTES.fetch_add((to - from) as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Bytes [`populate`] has backed, over the process's life.
static POPULATED_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
pub(crate) fn populated_bytes() -> u64 {
    POPULATED_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes `header` followed by `data` at file offset 0, zero-padded to a
/// whole number of blocks. `header.len()` must be a multiple of the block
/// size. Returns the number of file bytes written.
pub(crate) async fn write_padded(
    file: &DmaFile,
    path: &Path,
    header: &[u8],
    data: &[u8],
) -> Result<u64, StorageError> {
    write_padded_at(file, path, 0, header, data).await
}

/// [`write_padded`] at file offset `base` (a multiple of the block size).
pub(crate) async fn write_padded_at(
    file: &DmaFile,
    path: &Path,
    base: u64,
    header: &[u8],
    data: &[u8],
) -> Result<u64, StorageError> {
    debug_assert_eq!(header.len() as u64 % BLOCK_BYTES, 0);
    debug_assert_eq!(base % BLOCK_BYTES, 0);
    let header_len = header.len() as u64;
    let total = align_up(header_len + data.len() as u64);
    let chunk = IO_CHUNK_BYTES_MAX as u64;
    let chunks = total.div_ceil(chunk);
    let jobs = (0..chunks).map(|i| {
        let at = i * chunk;
        let len = chunk.min(total - at) as usize;
        async move {
            // Allocated when the job starts, so at most IO_CHUNKS_IN_FLIGHT_MAX
            // buffers exist at once.
            let mut buf = file.alloc_dma_buffer(len);
            fill_chunk(buf.as_bytes_mut(), at, header, data);
            let written = file
                .write_at(buf, base + at)
                .await
                .map_err(|e| StorageError::io("writing", path, os_error(e)))?;
            if written != len {
                return Err(StorageError::io(
                    "writing",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("short write at offset {at}: {written} of {len} bytes"),
                    ),
                ));
            }
            Ok(())
        }
    });
    for_each_bounded(jobs, IO_CHUNKS_IN_FLIGHT_MAX, Ok).await?;
    Ok(total)
}

/// Fills `buf` with file bytes `[at, at + buf.len())` of header, data and
/// zero padding.
fn fill_chunk(buf: &mut [u8], at: u64, header: &[u8], data: &[u8]) {
    let header_len = header.len() as u64;
    let end = at + buf.len() as u64;
    let mut filled = 0usize;
    if at < header_len {
        let to = end.min(header_len);
        let src = &header[at as usize..to as usize];
        buf[..src.len()].copy_from_slice(src);
        filled = src.len();
    }
    let pos = at + filled as u64;
    if pos >= header_len && ((pos - header_len) as usize) < data.len() {
        let data_from = (pos - header_len) as usize;
        let n = (buf.len() - filled).min(data.len() - data_from);
        buf[filled..filled + n].copy_from_slice(&data[data_from..data_from + n]);
        filled += n;
    }
    buf[filled..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_chunk_lays_out_header_data_and_padding() {
        let header = [7u8; 8];
        let data: Vec<u8> = (0..10).collect();
        // Whole file: 8 header bytes, 10 data bytes, zeros after.
        let mut whole = [0xaau8; 24];
        fill_chunk(&mut whole, 0, &header, &data);
        assert_eq!(&whole[..8], &header);
        assert_eq!(&whole[8..18], &data[..]);
        assert_eq!(&whole[18..], &[0u8; 6]);
        // Chunks that start inside the header, inside the data, past the data.
        for at in [3u64, 11, 20] {
            let mut chunk = [0xaau8; 4];
            fill_chunk(&mut chunk, at, &header, &data);
            assert_eq!(&chunk[..], &whole[at as usize..at as usize + 4], "at {at}");
        }
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!((align_down(0), align_up(0)), (0, 0));
        assert_eq!((align_down(1), align_up(1)), (0, 4096));
        assert_eq!((align_down(4096), align_up(4096)), (4096, 4096));
        assert_eq!((align_down(4097), align_up(4097)), (4096, 8192));
    }
}
