//! [`ObjectStore`]: the one type the runtime holds to reach objects, and
//! [`ObjectReader`], one object opened for reading through it.

use crate::embedded::{EmbeddedReader, EmbeddedStore, EmbeddedWriter, ObjectInfo};
use crate::error::StorageError;
use crate::rados::{RadosReader, RadosStore};

/// An object store of one of the supported kinds. Every method behaves the
/// same whichever kind is behind it (`tests/conformance.rs` holds both to
/// one suite), except where its docs say otherwise (`open_read` on large
/// objects); see [`EmbeddedStore`] and [`RadosStore`] for the details of
/// each.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    /// Objects as files on this node's disk.
    Embedded(EmbeddedStore),
    /// Objects in a Ceph pool, through librados.
    Rados(RadosStore),
}

impl From<RadosStore> for ObjectStore {
    fn from(store: RadosStore) -> Self {
        ObjectStore::Rados(store)
    }
}

impl From<EmbeddedStore> for ObjectStore {
    fn from(store: EmbeddedStore) -> Self {
        ObjectStore::Embedded(store)
    }
}

impl ObjectStore {
    /// Starts writing a whole object of `total_bytes` in parts; see
    /// [`PutStream`].
    pub async fn put_stream(
        &self,
        user: &str,
        key: &[u8],
        total_bytes: u64,
    ) -> Result<PutStream, StorageError> {
        match self {
            ObjectStore::Embedded(store) => Ok(PutStream::Embedded(
                store.put_stream(user, key, total_bytes).await?,
            )),
            ObjectStore::Rados(store) => {
                crate::error::check_object_len(total_bytes, crate::limits::OBJECT_BYTES_MAX)?;
                Ok(PutStream::Rados {
                    store: store.clone(),
                    user: user.to_owned(),
                    key: key.to_vec(),
                    total_bytes,
                    parts: Vec::new(),
                })
            }
        }
    }

    /// Stores `data` as `key` of `user`, replacing any object there; durable
    /// when it returns `Ok`. The RADOS store copies `data` once (its worker
    /// threads own what they touch); [`ObjectStore::put_bytes`] spares that
    /// copy when the caller owns its data.
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.put(user, key, data).await,
            ObjectStore::Rados(store) => store.put(user, key, data).await,
        }
    }

    /// [`ObjectStore::put`] of data the caller hands over: the RADOS store
    /// writes it without a copy.
    pub async fn put_bytes(
        &self,
        user: &str,
        key: &[u8],
        data: bytes::Bytes,
    ) -> Result<(), StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.put(user, key, &data).await,
            ObjectStore::Rados(store) => store.put_bytes(user, key, data).await,
        }
    }

    /// Opens the object for reading in parts: a reader knows the object's
    /// size and reads from that one version, however many reads it takes,
    /// while puts and deletes of the key go on. Use it, not `stat` and then
    /// `read_into` (two opens, which a put in between makes disagree),
    /// whenever the size decides what is read. `None` when the object does
    /// not exist.
    ///
    /// The embedded store always reads the version opened. The RADOS store
    /// reads it when the object fits its first read (64 KiB); for a larger
    /// object replaced or removed while the reader is open, reads fail
    /// with [`StorageError::ObjectChanged`] (see [`RadosReader`]).
    pub async fn open_read(
        &self,
        user: &str,
        key: &[u8],
    ) -> Result<Option<ObjectReader>, StorageError> {
        Ok(match self {
            ObjectStore::Embedded(store) => store
                .open_read(user, key)
                .await?
                .map(ObjectReader::Embedded),
            ObjectStore::Rados(store) => store.open_read(user, key).await?.map(ObjectReader::Rados),
        })
    }

    /// Size of the object in bytes, or `None` when it does not exist.
    pub async fn stat(&self, user: &str, key: &[u8]) -> Result<Option<u64>, StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.stat(user, key).await,
            ObjectStore::Rados(store) => store.stat(user, key).await,
        }
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
        match self {
            ObjectStore::Embedded(store) => store.read_into(user, key, offset, dst).await,
            ObjectStore::Rados(store) => store.read_into(user, key, offset, dst).await,
        }
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
        match self {
            ObjectStore::Embedded(store) => store.get(user, key, offset, len_max).await,
            ObjectStore::Rados(store) => store.get(user, key, offset, len_max).await,
        }
    }

    /// Removes the object. `false` when it did not exist.
    pub async fn delete(&self, user: &str, key: &[u8]) -> Result<bool, StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.delete(user, key).await,
            ObjectStore::Rados(store) => store.delete(user, key).await,
        }
    }

    /// The user's objects, sorted by key.
    pub async fn list(&self, user: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.list(user).await,
            ObjectStore::Rados(store) => store.list(user).await,
        }
    }
}

/// One version of an object, opened by [`ObjectStore::open_read`]: its size
/// and its bytes, read in as many parts as the caller likes. Close it with
/// [`ObjectReader::close`]. It belongs to the shard that opened it.
#[derive(Debug)]
pub enum ObjectReader {
    /// An object file held open.
    Embedded(EmbeddedReader),
    /// A RADOS object's size, version and first bytes.
    Rados(RadosReader),
}

impl ObjectReader {
    /// Size of the object in bytes, at the version opened.
    pub fn len_bytes(&self) -> u64 {
        match self {
            ObjectReader::Embedded(reader) => reader.len_bytes(),
            ObjectReader::Rados(reader) => reader.len_bytes(),
        }
    }

    /// Reads `min(dst.len(), len_bytes - offset)` bytes from `offset` into
    /// the start of `dst` and returns how many; 0 at or past the end.
    pub async fn read_into(&self, offset: u64, dst: &mut [u8]) -> Result<usize, StorageError> {
        match self {
            ObjectReader::Embedded(reader) => reader.read_into(offset, dst).await,
            ObjectReader::Rados(reader) => reader.read_into(offset, dst).await,
        }
    }

    /// Closes the reader, reporting what closing its file found.
    pub async fn close(self) -> Result<(), StorageError> {
        match self {
            ObjectReader::Embedded(reader) => reader.close().await,
            ObjectReader::Rados(reader) => reader.close().await,
        }
    }
}

/// An object being written in parts ([`ObjectStore::put_stream`]): parts
/// in order, then `finish`; the old object stays until then.
#[derive(Debug)]
pub enum PutStream {
    Embedded(EmbeddedWriter),
    /// RADOS has no rename to make a partly written object appear whole,
    /// so the parts gather in memory (bounded by the object cap) and go to
    /// the cluster in one `write_full` at the end.
    Rados {
        store: RadosStore,
        user: String,
        key: Vec<u8>,
        total_bytes: u64,
        parts: Vec<u8>,
    },
}

impl PutStream {
    pub async fn write(&mut self, part: &[u8]) -> Result<(), StorageError> {
        match self {
            PutStream::Embedded(writer) => writer.write(part).await,
            PutStream::Rados {
                total_bytes, parts, ..
            } => {
                let after = parts.len() as u64 + part.len() as u64;
                if after > *total_bytes {
                    return Err(StorageError::ObjectTooLarge {
                        len_bytes: after,
                        max_bytes: *total_bytes,
                    });
                }
                parts.extend_from_slice(part);
                Ok(())
            }
        }
    }

    pub async fn finish(self) -> Result<(), StorageError> {
        match self {
            PutStream::Embedded(writer) => writer.finish().await,
            PutStream::Rados {
                store,
                user,
                key,
                total_bytes,
                parts,
            } => {
                if parts.len() as u64 != total_bytes {
                    return Err(StorageError::ObjectTooLarge {
                        len_bytes: parts.len() as u64,
                        max_bytes: total_bytes,
                    });
                }
                store.put_bytes(&user, &key, parts.into()).await
            }
        }
    }

    pub async fn abort(self) {
        if let PutStream::Embedded(writer) = self {
            writer.abort().await;
        }
    }
}
