//! The embedded object store: one file per object under the node's data
//! directory, read and written through io_uring with O_DIRECT.
//!
//! Layout under `root`:
//!
//! ```text
//! objects/.dma-probe                      one zero block, see dma::ensure_probed
//! objects/<sha256(user)>/                 one directory per user
//! objects/<sha256(user)>/<object name>    header block + data, padded to a block
//! objects/<sha256(user)>/.tmp-<unique>    a put in progress
//! ```
//!
//! The object name is `sha256(user_len as u64 LE || user || key)` in hex, so
//! any key bytes (`/`, NUL, non-UTF-8) make a valid file name and no two
//! (user, key) pairs share one. The header repeats user and key (see
//! [`crate::header`]); a read checks them, so a hash collision or a misplaced
//! file is reported as corruption instead of returning another object's data.
//!
//! **Architecture invariant:** an object file is complete whenever it exists
//! under its final name. `put` writes a temp file in the same directory,
//! fdatasyncs it, renames it over the final name and fsyncs the directory; a
//! crash leaves the old object or the new one, plus at worst a temp file,
//! which the next `open` removes.
//!
//! **Architecture invariant:** every read of an object goes through one
//! open file, an [`EmbeddedReader`], whose header gives the size: the size a
//! read goes by and its bytes are of one version, since puts and deletes
//! change names, never an inode a reader holds. Object files are opened
//! through [`dma::open_existing`], never glommio's `dma_open` on the path
//! (which panics if a delete unlinks the file while it opens it).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use glommio::io::{DmaFile, OpenOptions};
use sha2::{Digest, Sha256};

use crate::dma::{self, align_up};
use crate::error::{os_error, StorageError};
use crate::header;
use crate::limits::{
    BLOCK_BYTES, HEADER_BYTES, HEADER_FIXED_BYTES, HEAD_DATA_BYTES_MAX, IO_CHUNKS_IN_FLIGHT_MAX,
    KEY_BYTES_MAX, LIST_OBJECTS_MAX, OBJECT_BYTES_MAX, USER_BYTES_MAX,
};

mod reader;
mod writer;

pub use reader::EmbeddedReader;
pub use writer::EmbeddedWriter;

const OBJECTS_DIR: &str = "objects";
const PROBE_FILE: &str = ".dma-probe";
const TEMP_PREFIX: &str = ".tmp-";

/// Settings of an [`EmbeddedStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Data directory; objects live under `root/objects`.
    pub root: PathBuf,
    /// Largest object `put` accepts.
    pub object_bytes_max: u64,
    /// Longest key accepted.
    pub key_bytes_max: usize,
    /// Longest user name accepted. Together with `key_bytes_max` it must fit
    /// the header block: at most 4032 bytes for both.
    pub user_bytes_max: usize,
}

impl StoreConfig {
    /// A config for `root` with the default limits of [`crate::limits`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            root: root.into(),
            object_bytes_max: OBJECT_BYTES_MAX,
            key_bytes_max: KEY_BYTES_MAX,
            user_bytes_max: USER_BYTES_MAX,
        }
    }
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: Vec<u8>,
    pub size_bytes: u64,
}

/// The object store on local disk. Cheap to clone; open it once per node and
/// hand a clone to each shard. Its async methods must run inside a glommio
/// executor, and do their I/O on that executor's ring.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    objects_dir: PathBuf,
    probe_path: PathBuf,
    /// st_dev of `objects_dir`.
    device: u64,
    object_bytes_max: u64,
    key_bytes_max: usize,
    user_bytes_max: usize,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `config.root` and removes
    /// temp files left by puts that a crash interrupted.
    ///
    /// Synchronous and callable outside an executor: it runs once at start-up.
    /// Open a root once per process and clone the store to the shards;
    /// opening it again while puts are running would remove their temp files.
    pub fn open(config: StoreConfig) -> Result<Self, StorageError> {
        let StoreConfig {
            root,
            object_bytes_max,
            key_bytes_max,
            user_bytes_max,
        } = config;
        // glommio resolves some paths (directory handles) away from the
        // working directory: keep every path absolute.
        let root = std::path::absolute(&root)
            .map_err(|e| StorageError::io("resolving the store's root", &root, e))?;
        let names_room = HEADER_BYTES - HEADER_FIXED_BYTES;
        if user_bytes_max > names_room {
            return Err(StorageError::LimitTooLarge {
                name: "user_bytes_max",
                value: user_bytes_max as u64,
                max: names_room as u64,
            });
        }
        if key_bytes_max > names_room - user_bytes_max {
            return Err(StorageError::LimitTooLarge {
                name: "key_bytes_max",
                value: key_bytes_max as u64,
                max: (names_room - user_bytes_max) as u64,
            });
        }

        let objects_dir = root.join(OBJECTS_DIR);
        std::fs::create_dir_all(&objects_dir)
            .map_err(|e| StorageError::io("creating directory", &objects_dir, e))?;
        // Make the directories themselves durable before any object relies
        // on them.
        sync_dir_blocking(&root)?;
        sync_dir_blocking(&objects_dir)?;
        let stale_temp_files = remove_stale_temps(&objects_dir)?;

        let probe_path = objects_dir.join(PROBE_FILE);
        std::fs::write(&probe_path, [0u8; BLOCK_BYTES as usize])
            .map_err(|e| StorageError::io("writing", &probe_path, e))?;
        let device = std::fs::metadata(&objects_dir)
            .map_err(|e| StorageError::io("reading metadata of", &objects_dir, e))?
            .dev();

        tracing::info!(
            root = %root.display(),
            stale_temp_files,
            object_bytes_max,
            "opened embedded object store"
        );
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                objects_dir,
                probe_path,
                device,
                object_bytes_max,
                key_bytes_max,
                user_bytes_max,
            }),
        })
    }

    /// Stores `data` as `key` of `user`, replacing any object there. When this
    /// returns `Ok` the object is on stable storage.
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        crate::error::check_object_len(data.len() as u64, self.inner.object_bytes_max)?;
        self.probe().await?;

        let dir = self.user_dir(user);
        let final_path = dir.join(object_file_name(user, key));
        let mut header_block = vec![0u8; HEADER_BYTES];
        header::encode(&mut header_block, user.as_bytes(), key, data.len() as u64);

        let (file, temp_path) = self.create_temp(&dir).await?;
        let written = write_and_sync(&file, &temp_path, &header_block, data).await;
        let closed = dma::close(file, &temp_path).await;
        if let Err(e) = written.and(closed) {
            discard_temp(&temp_path).await;
            return Err(e);
        }
        if let Err(e) = glommio::io::rename(&temp_path, &final_path).await {
            discard_temp(&temp_path).await;
            return Err(StorageError::io(
                "renaming temp object to",
                final_path,
                os_error(e),
            ));
        }
        sync_dir(&dir).await
    }

    /// Opens the object for reading: one version of it, held until the
    /// reader is closed, whose size and bytes stay the same whatever puts
    /// and deletes of the key happen meanwhile (see [`EmbeddedReader`]).
    /// `None` when the object does not exist.
    ///
    /// The open reads the header together with the first
    /// [`HEAD_DATA_BYTES_MAX`] data bytes, in one I/O: reading a small
    /// object whole takes no further I/O.
    pub async fn open_read(
        &self,
        user: &str,
        key: &[u8],
    ) -> Result<Option<EmbeddedReader>, StorageError> {
        self.open_reader(user, key, HEAD_DATA_BYTES_MAX as u64)
            .await
    }

    /// Starts writing `key` of `user` in parts: `total_bytes` bytes to come
    /// through [`EmbeddedWriter::write`] in order, then
    /// [`EmbeddedWriter::finish`] makes the object appear whole and
    /// durable (as [`EmbeddedStore::put`] does); until then, and after
    /// [`EmbeddedWriter::abort`], the old object stays.
    pub async fn put_stream(
        &self,
        user: &str,
        key: &[u8],
        total_bytes: u64,
    ) -> Result<EmbeddedWriter, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        crate::error::check_object_len(total_bytes, self.inner.object_bytes_max)?;
        self.probe().await?;
        let dir = self.user_dir(user);
        let final_path = dir.join(object_file_name(user, key));
        let mut header_block = vec![0u8; HEADER_BYTES];
        header::encode(&mut header_block, user.as_bytes(), key, total_bytes);
        let (file, temp_path) = self.create_temp(&dir).await?;
        if let Err(e) = dma::write_padded(&file, &temp_path, &header_block, &[]).await {
            let _ = dma::close(file, &temp_path).await;
            discard_temp(&temp_path).await;
            return Err(e);
        }
        Ok(EmbeddedWriter::new(
            file,
            temp_path,
            final_path,
            dir,
            total_bytes,
        ))
    }

    /// Size of the object in bytes, or `None` when it does not exist.
    pub async fn stat(&self, user: &str, key: &[u8]) -> Result<Option<u64>, StorageError> {
        let Some(reader) = self.open_reader(user, key, 0).await? else {
            return Ok(None);
        };
        let len_bytes = reader.len_bytes();
        reader.close().await?;
        Ok(Some(len_bytes))
    }

    /// Reads `min(dst.len(), size - offset)` bytes from `offset` into `dst`.
    /// `None` when the object does not exist; `Some(0)` at or past its end.
    pub async fn read_into(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        dst: &mut [u8],
    ) -> Result<Option<usize>, StorageError> {
        let want_end = offset.saturating_add(dst.len() as u64);
        let head_data_bytes = head_data_bytes(offset, want_end);
        let Some(reader) = self.open_reader(user, key, head_data_bytes).await? else {
            return Ok(None);
        };
        let read = reader.read_into(offset, dst).await;
        let closed = reader.close().await;
        let n = read?;
        closed?;
        Ok(Some(n))
    }

    /// Reads up to `len_max` bytes from `offset`. `None` when the object does
    /// not exist; an empty vector at or past its end.
    pub async fn get(
        &self,
        user: &str,
        key: &[u8],
        offset: u64,
        len_max: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let want_end = offset.saturating_add(len_max);
        let head_data_bytes = head_data_bytes(offset, want_end);
        let Some(reader) = self.open_reader(user, key, head_data_bytes).await? else {
            return Ok(None);
        };
        let len = reader.len_bytes().saturating_sub(offset).min(len_max);
        // The header is checksummed, so its length is one a put accepted;
        // still, never size an allocation past what the store would accept.
        let read = if len > self.inner.object_bytes_max {
            Err(StorageError::ObjectTooLarge {
                len_bytes: len,
                max_bytes: self.inner.object_bytes_max,
            })
        } else {
            let mut data = vec![0u8; len as usize];
            reader.read_into(offset, &mut data).await.map(|n| {
                debug_assert_eq!(n, data.len());
                data
            })
        };
        let closed = reader.close().await;
        let data = read?;
        closed?;
        Ok(Some(data))
    }

    /// Removes the object. `false` when it did not exist.
    pub async fn delete(&self, user: &str, key: &[u8]) -> Result<bool, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        let dir = self.user_dir(user);
        let path = dir.join(object_file_name(user, key));
        match glommio::io::remove(&path).await {
            Ok(()) => {}
            Err(e) => {
                let e = os_error(e);
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(false);
                }
                return Err(StorageError::io("removing object", path, e));
            }
        }
        // Without this a crash could bring the object back.
        sync_dir(&dir).await?;
        Ok(true)
    }

    /// The user's objects, sorted by key.
    pub async fn list(&self, user: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        self.check_user(user)?;
        self.probe().await?;
        let dir = self.user_dir(user);
        // glommio 0.9 has no asynchronous readdir. Reading a directory is a
        // few getdents calls on an inode that is usually cached; listing is
        // not on the data path.
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("listing directory", dir, e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("listing directory", &dir, e))?;
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                continue; // temp files of puts in progress
            }
            let file_type = entry
                .file_type()
                .map_err(|e| StorageError::io("reading file type of", entry.path(), e))?;
            if !file_type.is_file() {
                continue;
            }
            if paths.len() == LIST_OBJECTS_MAX {
                return Err(StorageError::TooManyObjects {
                    max_objects: LIST_OBJECTS_MAX,
                });
            }
            paths.push(entry.path());
        }

        let mut objects = Vec::with_capacity(paths.len());
        let jobs = paths.iter().map(|path| self.list_entry(user, path));
        dma::for_each_bounded(jobs, IO_CHUNKS_IN_FLIGHT_MAX, |entry| {
            objects.extend(entry);
            Ok(())
        })
        .await?;
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Reads the header of one file of a listing; `None` if the file went
    /// away in the meantime (deleted or replaced by a concurrent put).
    async fn list_entry(
        &self,
        user: &str,
        path: &Path,
    ) -> Result<Option<ObjectInfo>, StorageError> {
        // Not `dma_open(path)`: a delete may unlink the file at any moment
        // (see `dma::open_existing`).
        let Some(file) = dma::open_existing(path).await? else {
            return Ok(None);
        };
        let checked = async {
            dma::check_alignment(&file, path)?;
            let block = file
                .read_at_aligned(0, HEADER_BYTES)
                .await
                .map_err(|e| StorageError::io("reading object header", path, os_error(e)))?;
            let header =
                header::decode(&block).map_err(|reason| StorageError::corrupt(path, reason))?;
            if header.user != user.as_bytes() {
                return Err(StorageError::corrupt(path, "header names another user"));
            }
            let expected = object_file_name(user, header.key);
            if path.file_name() != Some(expected.as_ref()) {
                return Err(StorageError::corrupt(
                    path,
                    "file name does not match the key in its header",
                ));
            }
            Ok(ObjectInfo {
                key: header.key.to_vec(),
                size_bytes: header.data_len,
            })
        }
        .await;
        let closed = dma::close(file, path).await;
        let info = checked?;
        closed?;
        Ok(Some(info))
    }

    /// Opens a reader on the object after checking user and key; its first
    /// read fetches `head_data_bytes` of data with the header.
    async fn open_reader(
        &self,
        user: &str,
        key: &[u8],
        head_data_bytes: u64,
    ) -> Result<Option<EmbeddedReader>, StorageError> {
        self.check_user(user)?;
        self.check_key(key)?;
        self.probe().await?;
        let path = self.user_dir(user).join(object_file_name(user, key));
        EmbeddedReader::open(path, user, key, head_data_bytes).await
    }

    /// Creates a temp file in `dir`, creating `dir` on a user's first put.
    async fn create_temp(&self, dir: &Path) -> Result<(DmaFile, PathBuf), StorageError> {
        // Names are unique within the process; a clash can only be with a
        // file from an earlier process, so a few tries are plenty.
        const TRIES: usize = 4;
        let mut created_dir = false;
        let mut tries = 0;
        loop {
            tries += 1;
            let path = dir.join(temp_file_name());
            // `dma_open` on the path is safe here, unlike for object files
            // (see `dma::open_existing`): nothing but this put knows the
            // fresh name, so nothing unlinks it before glommio's statfs
            // (only a second `open` of the root would, which `open` rules
            // out while puts run).
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .dma_open(&path)
                .await;
            let e = match opened {
                Ok(file) => {
                    if let Err(e) = dma::check_alignment(&file, &path) {
                        let _ = dma::close(file, &path).await;
                        discard_temp(&path).await;
                        return Err(e);
                    }
                    return Ok((file, path));
                }
                Err(e) => os_error(e),
            };
            let retry = match e.kind() {
                // A user's first put.
                std::io::ErrorKind::NotFound if !created_dir => {
                    self.create_user_dir(dir).await?;
                    created_dir = true;
                    true
                }
                std::io::ErrorKind::AlreadyExists => true,
                _ => false,
            };
            if !retry || tries == TRIES {
                return Err(StorageError::io("creating temp object", path, e));
            }
        }
    }

    async fn create_user_dir(&self, dir: &Path) -> Result<(), StorageError> {
        // Succeeds when another shard created it first.
        let created = glommio::io::Directory::create(dir)
            .await
            .map_err(|e| StorageError::io("creating directory", dir, os_error(e)))?;
        created
            .close()
            .await
            .map_err(|e| StorageError::io("closing directory", dir, os_error(e)))?;
        sync_dir(&self.inner.objects_dir).await
    }

    async fn probe(&self) -> Result<(), StorageError> {
        dma::ensure_probed(self.inner.device, &self.inner.probe_path).await
    }

    fn user_dir(&self, user: &str) -> PathBuf {
        self.inner
            .objects_dir
            .join(hex::encode(Sha256::digest(user.as_bytes())))
    }

    fn check_user(&self, user: &str) -> Result<(), StorageError> {
        crate::error::check_user(user, self.inner.user_bytes_max)
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StorageError> {
        crate::error::check_key(key, self.inner.key_bytes_max)
    }
}

/// Data bytes a read of `[offset, want_end)` fetches with the header: up to
/// `want_end` when the range starts within the first
/// [`HEAD_DATA_BYTES_MAX`] bytes, so a small object costs one I/O.
fn head_data_bytes(offset: u64, want_end: u64) -> u64 {
    if offset < HEAD_DATA_BYTES_MAX as u64 {
        align_up(want_end.min(HEAD_DATA_BYTES_MAX as u64))
    } else {
        0
    }
}

async fn write_and_sync(
    file: &DmaFile,
    path: &Path,
    header_block: &[u8],
    data: &[u8],
) -> Result<(), StorageError> {
    dma::write_padded(file, path, header_block, data).await?;
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("syncing", path, os_error(e)))
}

/// Removes a temp file after a failed put. A failure here leaves the file
/// for the next `open` to remove.
async fn discard_temp(path: &Path) {
    if let Err(e) = glommio::io::remove(path).await {
        tracing::warn!(path = %path.display(), error = %os_error(e), "could not remove temp object");
    }
}

/// Makes renames, creations and removals in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| StorageError::io("opening directory", dir, os_error(e)))?;
    let synced = handle
        .sync()
        .await
        .map_err(|e| StorageError::io("syncing directory", dir, os_error(e)));
    let closed = handle
        .close()
        .await
        .map_err(|e| StorageError::io("closing directory", dir, os_error(e)));
    synced.and(closed)
}

fn sync_dir_blocking(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| StorageError::io("syncing directory", dir, e))
}

/// Removes `.tmp-*` files from every user directory; returns how many.
fn remove_stale_temps(objects_dir: &Path) -> Result<usize, StorageError> {
    let list_error = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |e| StorageError::io("listing directory", dir, e)
    };
    let mut removed = 0;
    for user_dir in std::fs::read_dir(objects_dir).map_err(list_error(objects_dir))? {
        let user_dir = user_dir.map_err(list_error(objects_dir))?;
        let is_dir = user_dir
            .file_type()
            .map_err(|e| StorageError::io("reading file type of", user_dir.path(), e))?
            .is_dir();
        if !is_dir {
            continue;
        }
        let user_dir = user_dir.path();
        let mut removed_here = 0;
        for entry in std::fs::read_dir(&user_dir).map_err(list_error(&user_dir))? {
            let entry = entry.map_err(list_error(&user_dir))?;
            if entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(TEMP_PREFIX.as_bytes())
            {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| StorageError::io("removing", &path, e))?;
                removed_here += 1;
            }
        }
        if removed_here > 0 {
            sync_dir_blocking(&user_dir)?;
            removed += removed_here;
        }
    }
    Ok(removed)
}

/// File name of an object: sha256 over the user's length, the user and the
/// key, so that no two (user, key) pairs share a name.
fn object_file_name(user: &str, key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update((user.len() as u64).to_le_bytes());
    hasher.update(user.as_bytes());
    hasher.update(key);
    hex::encode(hasher.finalize())
}

/// A temp file name unique within this process (pid, time, sequence).
fn temp_file_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{TEMP_PREFIX}{:x}-{nanos:x}-{sequence:x}",
        std::process::id()
    )
}

#[cfg(test)]
mod tests;
