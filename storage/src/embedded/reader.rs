//! [`EmbeddedReader`]: one object file, opened once and read any number of
//! times.
//!
//! Everything a read of the embedded store returns comes through one of
//! these, so that the size a caller goes by and the bytes it gets are from
//! the same file. A put replaces an object by renaming a new file over the
//! name and a delete unlinks the name; neither touches the inode an open
//! reader holds, which the kernel keeps until the reader closes it. So a
//! reader sees the one version it opened, whole, whatever happens to the
//! key meanwhile.

use std::path::PathBuf;

use glommio::io::{DmaFile, ReadResult};

use crate::dma;
use crate::error::{os_error, StorageError};
use crate::header;
use crate::limits::HEADER_BYTES;

/// One version of an object of the [`crate::EmbeddedStore`], held open:
/// its size and its bytes stay those of the version opened, even when the
/// key is replaced or deleted before the reader is closed.
///
/// Holds an open file and up to 64 KiB of the object's first bytes. It
/// belongs to the shard that opened it (glommio files are not `Send`).
/// Close it with [`EmbeddedReader::close`], which reports errors; a reader
/// that is only dropped still has its file closed, on the executor's next
/// I/O cycle.
pub struct EmbeddedReader {
    file: DmaFile,
    /// The object's file, for errors.
    path: PathBuf,
    /// The first read: the header block and, when asked for at open, the
    /// first data bytes.
    head: ReadResult,
    len_bytes: u64,
}

impl std::fmt::Debug for EmbeddedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedReader")
            .field("path", &self.path)
            .field("len_bytes", &self.len_bytes)
            .finish_non_exhaustive()
    }
}

impl EmbeddedReader {
    /// Opens the object file at `path`, reads its header together with
    /// `head_data_bytes` (a multiple of the block size) of data, and checks
    /// that the header names `user` and `key`. `None` when there is no file.
    pub(super) async fn open(
        path: PathBuf,
        user: &str,
        key: &[u8],
        head_data_bytes: u64,
    ) -> Result<Option<EmbeddedReader>, StorageError> {
        debug_assert_eq!(head_data_bytes, dma::align_up(head_data_bytes));
        let Some(file) = dma::open_existing(&path).await? else {
            return Ok(None);
        };
        let checked = async {
            dma::check_alignment(&file, &path)?;
            let head = file
                .read_at_aligned(0, HEADER_BYTES + head_data_bytes as usize)
                .await
                .map_err(|e| StorageError::io("reading object header", &path, os_error(e)))?;
            let header =
                header::decode(&head).map_err(|reason| StorageError::corrupt(&path, reason))?;
            if header.user != user.as_bytes() || header.key != key {
                return Err(StorageError::corrupt(
                    &path,
                    "header names another user or key (hash collision or misplaced file)",
                ));
            }
            let len_bytes = header.data_len;
            Ok((head, len_bytes))
        }
        .await;
        match checked {
            Ok((head, len_bytes)) => Ok(Some(EmbeddedReader {
                file,
                path,
                head,
                len_bytes,
            })),
            Err(e) => {
                // The first error is the one worth reporting.
                let _ = dma::close(file, &path).await;
                Err(e)
            }
        }
    }

    /// Size of the object in bytes, as its header says.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Reads `min(dst.len(), len_bytes - offset)` bytes from `offset` into
    /// the start of `dst` and returns how many; 0 at or past the end. The
    /// rest of `dst` is left as it was. Several reads may run at once.
    pub async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, StorageError> {
        let len = self.len_bytes.saturating_sub(offset).min(dst.len() as u64) as usize;
        let dst = &mut dst[..len];
        if dst.is_empty() {
            return Ok(0);
        }
        // Data bytes the head read holds (it may reach into the padding).
        let head_data = (self.head.len().saturating_sub(HEADER_BYTES) as u64).min(self.len_bytes);
        let mut done = 0usize;
        if offset < head_data {
            done = (head_data - offset).min(len as u64) as usize;
            let from = HEADER_BYTES + offset as usize;
            dst[..done].copy_from_slice(&self.head[from..from + done]);
        }
        if done < len {
            let pos = HEADER_BYTES as u64 + offset + done as u64;
            dma::read_exact_at(&self.file, &self.path, pos, &mut dst[done..]).await?;
        }
        Ok(len)
    }

    /// Closes the file.
    pub async fn close(self) -> Result<(), StorageError> {
        dma::close(self.file, &self.path).await
    }
}
