//! Writes to Faasm state values where they are stored. Whole writes and
//! updates (an offset write, a partial push, an append) each run under the
//! storing node's apply lock for the value ([`KeyLocks`]): an update reads
//! the value, changes its bytes and writes it back with no other write to
//! that value in between. A compute node sends its updates to the storage
//! node that holds the value as one [`Message::StateUpdate`] each, which
//! that node applies here, so updates from any number of nodes to one value
//! never lose each other's bytes.
//!
//! Every write to a state value goes through here, whatever store it
//! reaches: a store on another node gets the write over the transport (and
//! applies it here, on its side); a store on this node takes the value's
//! apply lock.
//!
//! [`Message::StateUpdate`]: ferry_transport::Message::StateUpdate

use ferry_transport::StateChange;

use crate::exec::call_state::{KeyLocks, StateLocks};
use crate::limits::STATE_VALUE_BYTES_MAX;
use crate::objects::{ObjectError, Objects};

#[derive(Debug, thiserror::Error)]
pub enum StateWriteError {
    #[error("the value would be {bytes} bytes, over the cap of {STATE_VALUE_BYTES_MAX}")]
    TooLarge { bytes: u64 },
    #[error("the state lock table: {0}")]
    Locks(String),
    #[error(transparent)]
    Store(#[from] ObjectError),
}

impl StateWriteError {
    /// As an object store's error (for the HTTP routes' status codes).
    pub fn into_object_error(self) -> ObjectError {
        use ferry_storage::StorageError;
        match self {
            StateWriteError::Store(error) => error,
            StateWriteError::TooLarge { bytes } => {
                ObjectError::Storage(StorageError::ObjectTooLarge {
                    len_bytes: bytes,
                    max_bytes: STATE_VALUE_BYTES_MAX as u64,
                })
            }
            StateWriteError::Locks(reason) => ObjectError::Storage(StorageError::Io {
                op: "locking",
                path: "a state value".into(),
                source: std::io::Error::other(reason),
            }),
        }
    }
}

fn locks(table: &StateLocks, user: &str, key: &[u8]) -> Result<KeyLocks, StateWriteError> {
    table
        .locks_for(user, key)
        .map_err(|e| StateWriteError::Locks(e.to_string()))
}

fn check_size(bytes: u64) -> Result<(), StateWriteError> {
    if bytes > STATE_VALUE_BYTES_MAX as u64 {
        return Err(StateWriteError::TooLarge { bytes });
    }
    Ok(())
}

/// Writes the whole value (user, key) of `store`.
pub async fn put(
    store: &Objects,
    table: &StateLocks,
    user: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<(), StateWriteError> {
    check_size(bytes.len() as u64)?;
    if let Objects::Remote(_) = store {
        return Ok(store.put(user, key, bytes).await?);
    }
    let locks = locks(table, user, key)?;
    let _apply = locks.apply.lock().await;
    Ok(store.put(user, key, bytes).await?)
}

/// Removes the value (user, key) of `store`; whether there was one.
pub async fn delete(
    store: &Objects,
    table: &StateLocks,
    user: &str,
    key: &[u8],
) -> Result<bool, StateWriteError> {
    if let Objects::Remote(_) = store {
        return Ok(store.delete(user, key).await?);
    }
    let locks = locks(table, user, key)?;
    let _apply = locks.apply.lock().await;
    Ok(store.delete(user, key).await?)
}

/// Applies `change` to the value (user, key) of `store`; returns the
/// value's size after it.
pub async fn apply(
    store: &Objects,
    table: &StateLocks,
    user: &str,
    key: &[u8],
    change: StateChange,
) -> Result<u64, StateWriteError> {
    if let Objects::Remote(remote) = store {
        return Ok(remote.update_state(user, key, change).await?);
    }
    let locks = locks(table, user, key)?;
    let _apply = locks.apply.lock().await;
    let mut value = store
        .get(user, key, 0, STATE_VALUE_BYTES_MAX as u64 + 1)
        .await?
        .unwrap_or_default();
    check_size(value.len() as u64)?;
    match &change {
        StateChange::Ranges {
            value_bytes,
            ranges,
            data,
        } => {
            check_size(*value_bytes)?;
            value.resize(value.len().max(*value_bytes as usize), 0);
            let mut at = 0usize;
            for &(offset, len) in ranges {
                // The decoder (or the sender's own checks) put every range
                // inside `value_bytes`, and the lengths add up to `data`.
                let (offset, len) = (offset as usize, len as usize);
                value[offset..offset + len].copy_from_slice(&data[at..at + len]);
                at += len;
            }
        }
        StateChange::Append(data) => {
            check_size(value.len() as u64 + data.len() as u64)?;
            value.extend_from_slice(data);
        }
    }
    store.put(user, key, &value).await?;
    Ok(value.len() as u64)
}

/// The apply lock of (user, key), held while a streamed write publishes
/// the value on this node's `store`; None for a store on another node
/// (which locks on its side).
pub async fn publish_lock(
    store: &Objects,
    table: &StateLocks,
    user: &str,
    key: &[u8],
) -> Result<Option<futures::lock::OwnedMutexGuard<()>>, StateWriteError> {
    if let Objects::Remote(_) = store {
        return Ok(None);
    }
    Ok(Some(locks(table, user, key)?.apply.lock_owned().await))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ranges(value_bytes: u64, ranges: &[(u64, &[u8])]) -> StateChange {
        StateChange::Ranges {
            value_bytes,
            ranges: ranges.iter().map(|(o, d)| (*o, d.len() as u64)).collect(),
            data: Bytes::from(
                ranges
                    .iter()
                    .flat_map(|(_, d)| d.to_vec())
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    #[test]
    fn updates_apply_one_at_a_time_and_keep_every_byte() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        glommio::LocalExecutorBuilder::default()
            .spawn({
                let path = dir.path().to_owned();
                move || async move {
                    let store = Objects::Local(ferry_storage::ObjectStore::Embedded(
                        ferry_storage::EmbeddedStore::open(ferry_storage::StoreConfig::new(&path))?,
                    ));
                    let table = StateLocks::default();
                    // 64 writers of one byte each at their own offset, and
                    // 64 appends, all at once on one value each.
                    let writes = (0..64u64).map(|i| {
                        let (store, table) = (&store, &table);
                        async move {
                            let byte = [i as u8 + 1];
                            apply(store, table, "u", b"v", ranges(64, &[(i, &byte)])).await
                        }
                    });
                    let appends = (0..64u8).map(|i| {
                        let (store, table) = (&store, &table);
                        async move {
                            apply(
                                store,
                                table,
                                "u",
                                b"log",
                                StateChange::Append(Bytes::from(vec![i; 3])),
                            )
                            .await
                        }
                    });
                    for result in futures::future::join_all(writes).await {
                        result?;
                    }
                    for result in futures::future::join_all(appends).await {
                        result?;
                    }
                    let value = store.get("u", b"v", 0, 1 << 20).await?.unwrap_or_default();
                    assert_eq!(value, (1..=64u8).collect::<Vec<u8>>());
                    let mut log = store
                        .get("u", b"log", 0, 1 << 20)
                        .await?
                        .unwrap_or_default();
                    assert_eq!(log.len(), 64 * 3);
                    log.sort_unstable();
                    let mut want: Vec<u8> = (0..64u8).flat_map(|i| [i; 3]).collect();
                    want.sort_unstable();
                    assert_eq!(log, want);
                    // Past the cap: refused, the value untouched.
                    let big = ranges(STATE_VALUE_BYTES_MAX as u64 + 1, &[]);
                    assert!(matches!(
                        apply(&store, &table, "u", b"v", big).await,
                        Err(StateWriteError::TooLarge { .. })
                    ));
                    assert_eq!(
                        store.get("u", b"v", 0, 1 << 20).await?.map(|v| v.len()),
                        Some(64)
                    );
                    anyhow::Ok(())
                }
            })
            .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("executor: {e:?}"))??;
        Ok(())
    }
}
