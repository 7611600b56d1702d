//! [`EmbeddedWriter`]: one object written in parts (a streamed write from
//! another node), into a temp file that becomes the object, whole and
//! durable, only when the last part is in, exactly as a one-shot `put`.

use std::path::PathBuf;

use glommio::io::DmaFile;

use super::{discard_temp, sync_dir};
use crate::dma;
use crate::error::{os_error, StorageError};
use crate::limits::{BLOCK_BYTES, HEADER_BYTES};

/// An object being written in parts. Parts must come in order; part sizes
/// need not be block-aligned (an unaligned tail waits for the next part).
/// Finish it with [`EmbeddedWriter::finish`] or drop the attempt with
/// [`EmbeddedWriter::abort`]; only dropped, it leaves a temp file that the
/// store removes when it next opens.
pub struct EmbeddedWriter {
    file: DmaFile,
    temp_path: PathBuf,
    final_path: PathBuf,
    dir: PathBuf,
    total_bytes: u64,
    written_bytes: u64,
    /// Where the next aligned write goes in the file.
    file_at: u64,
    /// Bytes past the last block boundary, written with the next part.
    tail: Vec<u8>,
}

impl std::fmt::Debug for EmbeddedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedWriter")
            .field("final_path", &self.final_path)
            .field("total_bytes", &self.total_bytes)
            .field("written_bytes", &self.written_bytes)
            .finish_non_exhaustive()
    }
}

impl EmbeddedWriter {
    /// A writer for a temp file whose header block is already written.
    pub(super) fn new(
        file: DmaFile,
        temp_path: PathBuf,
        final_path: PathBuf,
        dir: PathBuf,
        total_bytes: u64,
    ) -> EmbeddedWriter {
        EmbeddedWriter {
            file,
            temp_path,
            final_path,
            dir,
            total_bytes,
            written_bytes: 0,
            file_at: HEADER_BYTES as u64,
            tail: Vec::new(),
        }
    }

    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// Appends the next part.
    pub async fn write(&mut self, part: &[u8]) -> Result<(), StorageError> {
        let after = self.written_bytes + part.len() as u64;
        if after > self.total_bytes {
            return Err(StorageError::io(
                "writing",
                &self.temp_path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{after} bytes of an object announced as {}",
                        self.total_bytes
                    ),
                ),
            ));
        }
        // Only a part after an unaligned one is copied (a sender that sends
        // block-multiple parts never pays for it).
        let joined;
        let bytes: &[u8] = if self.tail.is_empty() {
            part
        } else {
            self.tail.extend_from_slice(part);
            joined = std::mem::take(&mut self.tail);
            &joined
        };
        let aligned = bytes.len() as u64 / BLOCK_BYTES * BLOCK_BYTES;
        if aligned > 0 {
            dma::write_padded_at(
                &self.file,
                &self.temp_path,
                self.file_at,
                &[],
                &bytes[..aligned as usize],
            )
            .await?;
            self.file_at += aligned;
        }
        self.tail = bytes[aligned as usize..].to_vec();
        self.written_bytes = after;
        Ok(())
    }

    /// Makes the object appear, whole and durable; an object still short
    /// of its announced size is refused (and dropped).
    pub async fn finish(mut self) -> Result<(), StorageError> {
        if self.written_bytes != self.total_bytes {
            let error = StorageError::io(
                "finishing",
                &self.temp_path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} of {} bytes written",
                        self.written_bytes, self.total_bytes
                    ),
                ),
            );
            self.abort().await;
            return Err(error);
        }
        let tail = std::mem::take(&mut self.tail);
        let mut done = Ok(0);
        if !tail.is_empty() {
            done =
                dma::write_padded_at(&self.file, &self.temp_path, self.file_at, &[], &tail).await;
        }
        let synced = match done {
            Ok(_) => self
                .file
                .fdatasync()
                .await
                .map_err(|e| StorageError::io("syncing", &self.temp_path, os_error(e))),
            Err(e) => Err(e),
        };
        let closed = dma::close(self.file, &self.temp_path).await;
        if let Err(e) = synced.and(closed) {
            discard_temp(&self.temp_path).await;
            return Err(e);
        }
        if let Err(e) = glommio::io::rename(&self.temp_path, &self.final_path).await {
            discard_temp(&self.temp_path).await;
            return Err(StorageError::io(
                "renaming temp object to",
                &self.final_path,
                os_error(e),
            ));
        }
        sync_dir(&self.dir).await
    }

    /// Drops the attempt; the old object, if any, stays.
    pub async fn abort(self) {
        let _ = dma::close(self.file, &self.temp_path).await;
        discard_temp(&self.temp_path).await;
    }
}
