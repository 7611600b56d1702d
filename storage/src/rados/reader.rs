//! [`RadosReader`]: one version of a RADOS object, read in parts.
//!
//! RADOS keeps a single version of each object (no snapshot is taken for
//! reads), so a reader cannot hold an old version open the way a file
//! descriptor does. What it can do, and does:
//!
//! - The open is one operation that stats the object, reads its first
//!   [`RADOS_GET_FIRST_BYTES`] and returns its version. An object that fits
//!   there is held whole: every read is served from memory, and sees that
//!   version whatever happens to the object after.
//! - Each later read of a larger object is one operation that first
//!   asserts the object is still at the version opened. Its bytes are of
//!   that version, or, if the object was replaced or removed meanwhile, the
//!   read fails with [`StorageError::ObjectChanged`]. Never a mix, never a
//!   length of one version with bytes of another.

use std::ffi::CString;

use super::cluster::{Cluster, Errno};
use super::RadosStore;
use crate::error::StorageError;
use crate::limits::{RADOS_GET_FIRST_BYTES, RADOS_READ_OP_BYTES_MAX};

/// One version of an object of a [`RadosStore`]: its size and bytes, or an
/// error, never bytes of another version. See the module docs for what
/// holds when the object is replaced or removed while the reader is open:
/// objects of up to 64 KiB are read whole at open; larger ones fail with
/// [`StorageError::ObjectChanged`] from the first read after the change.
///
/// Holds up to 64 KiB of the object's first bytes and nothing on the
/// cluster; `close` exists so that callers treat every backend's reader
/// alike.
pub struct RadosReader {
    store: RadosStore,
    name: String,
    c_name: CString,
    len_bytes: u64,
    /// The object's version at open; later reads assert it.
    version: u64,
    /// The object's first bytes, up to [`RADOS_GET_FIRST_BYTES`].
    head: Vec<u8>,
}

impl std::fmt::Debug for RadosReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadosReader")
            .field("name", &self.name)
            .field("len_bytes", &self.len_bytes)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RadosReader {
    /// Stats the object and reads its first bytes in one operation. `None`
    /// when it does not exist.
    pub(super) async fn open(
        store: RadosStore,
        name: String,
        c_name: CString,
    ) -> Result<Option<RadosReader>, StorageError> {
        let c_name_call = c_name.clone();
        let read = store
            .call("reading object", &name, move |cluster| {
                let mut head = vec![0u8; RADOS_GET_FIRST_BYTES];
                // SAFETY: `head` is RADOS_GET_FIRST_BYTES writable bytes, at
                // most RADOS_READ_OP_BYTES_MAX.
                let read = unsafe {
                    cluster.stat_and_read(&c_name_call, 0, head.as_mut_ptr(), head.len(), None)?
                };
                Ok(read.map(|read| (read, head)))
            })
            .await?;
        let Some((read, mut head)) = read else {
            return Ok(None);
        };
        // One operation: the read covers the whole object or the whole head.
        let want = read.size.min(head.len() as u64);
        // Later reads assert the version; librados gives 0 only when it has
        // none, and asserting 0 is refused (EINVAL).
        if read.read as u64 != want || (read.size > want && read.version == 0) {
            return Err(StorageError::rados("reading object", name, -libc::EIO));
        }
        head.truncate(read.read);
        // A small object should not hold on to the whole 64 KiB.
        head.shrink_to_fit();
        Ok(Some(RadosReader {
            store,
            name,
            c_name,
            len_bytes: read.size,
            version: read.version,
            head,
        }))
    }

    /// Size of the object in bytes, at the version opened.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Reads `min(dst.len(), len_bytes - offset)` bytes from `offset` into
    /// the start of `dst` and returns how many; 0 at or past the end. The
    /// rest of `dst` is left as it was. Bytes past the open's first read
    /// come from the cluster, from the version opened or not at all
    /// ([`StorageError::ObjectChanged`]); librados writes them into a
    /// buffer of the worker's, copied into `dst`.
    pub async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, StorageError> {
        let len = self.len_bytes.saturating_sub(offset).min(dst.len() as u64) as usize;
        let dst = &mut dst[..len];
        let head_len = self.head.len() as u64;
        let mut done = 0usize;
        if offset < head_len {
            done = (head_len - offset).min(len as u64) as usize;
            let from = offset as usize;
            dst[..done].copy_from_slice(&self.head[from..from + done]);
        }
        if done == len {
            return Ok(len);
        }
        let pos = offset + done as u64;
        let rest_len = len - done;
        let (c_name, version) = (self.c_name.clone(), self.version);
        let outcome = self
            .store
            .call("reading object", &self.name, move |cluster| {
                read_at_version_blocking(cluster, &c_name, version, pos, rest_len)
            })
            .await?;
        match outcome {
            Read::Done(bytes) => {
                // Backed in one call, not a fault per page (dma::populate).
                crate::dma::populate(&mut dst[done..]);
                dst[done..].copy_from_slice(&bytes);
                Ok(len)
            }
            Read::Changed => Err(StorageError::ObjectChanged {
                object: self.name.clone(),
            }),
        }
    }

    /// Lets the reader go. Nothing is held on the cluster, so nothing can
    /// fail; here so that every backend's reader is used alike.
    pub async fn close(self) -> Result<(), StorageError> {
        Ok(())
    }
}

enum Read {
    /// Every byte asked for.
    Done(Vec<u8>),
    /// The object is no longer at the version asserted.
    Changed,
}

/// Reads `len` bytes from `pos` with operations that each assert
/// `version`, of at most [`RADOS_READ_OP_BYTES_MAX`] bytes. The caller has
/// cut `len` to what the object holds at that version.
fn read_at_version_blocking(
    cluster: &Cluster,
    name: &std::ffi::CStr,
    version: u64,
    pos: u64,
    len: usize,
) -> Result<Read, Errno> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let want = (len - done).min(RADOS_READ_OP_BYTES_MAX);
        // SAFETY: `buf` has room for `len` bytes, so for `want` past
        // `done`; `want` is at most RADOS_READ_OP_BYTES_MAX.
        let read = unsafe {
            cluster.stat_and_read(
                name,
                pos + done as u64,
                buf.as_mut_ptr().add(done),
                want,
                Some(version),
            )
        };
        match read {
            Ok(Some(read)) => {
                // Same version, so the same size: every byte asked for is
                // there.
                if read.read != want {
                    return Err(-libc::EIO);
                }
                // SAFETY: librados wrote those `want` bytes.
                unsafe { buf.set_len(done + want) };
            }
            Ok(None) => return Ok(Read::Changed),
            Err(code) if code == -libc::ERANGE || code == -libc::EOVERFLOW => {
                return Ok(Read::Changed)
            }
            Err(code) => return Err(code),
        }
    }
    Ok(Read::Done(buf))
}
