//! [`ObjectStore`]: the one type the runtime holds to reach objects.

use crate::embedded::{EmbeddedStore, ObjectInfo};
use crate::error::StorageError;
use crate::rados::RadosStore;

/// An object store of one of the supported kinds. Every method behaves the
/// same whichever kind is behind it (`tests/conformance.rs` holds both to
/// one suite); see [`EmbeddedStore`] and [`RadosStore`] for the details of
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
    /// Stores `data` as `key` of `user`, replacing any object there; durable
    /// when it returns `Ok`.
    pub async fn put(&self, user: &str, key: &[u8], data: &[u8]) -> Result<(), StorageError> {
        match self {
            ObjectStore::Embedded(store) => store.put(user, key, data).await,
            ObjectStore::Rados(store) => store.put(user, key, data).await,
        }
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
