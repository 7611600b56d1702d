//! One call's view of Faasm state (host/state.rs has the imports): the
//! values it mapped into linear memory and the per-key locks it holds, and
//! the node's table of those locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::lock::Mutex as AsyncMutex;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use wasmtime::{format_err as anyhow, Result};

/// Per-key locks kept before the unused ones are dropped.
const LOCKS_KEPT_MAX: usize = 10_000;

/// A state value's name: user and key.
type UserKey = (Arc<str>, Vec<u8>);

/// One key's two locks.
///
/// - `guest`: what `__faasm_lock_state_read` (shared) and
///   `__faasm_lock_state_write` (exclusive) take, held until the unlock or
///   the call's end. As Faasm's, these are the node's own: they order the
///   calls on this node, not those of other nodes.
/// - `apply`: held by the node that stores the value while it reads,
///   changes and writes back an update (an offset write, a partial push,
///   an append) or writes it whole, never across guest code; so updates
///   from every node apply one at a time and none loses another's bytes.
#[derive(Clone, Default)]
pub struct KeyLocks {
    pub(crate) guest: Arc<RwLock<()>>,
    pub(crate) apply: Arc<AsyncMutex<()>>,
}

impl KeyLocks {
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.guest) > 1 || Arc::strong_count(&self.apply) > 1
    }
}

/// The node's per-key state locks, shared by every shard.
#[derive(Default)]
pub struct StateLocks {
    keys: Mutex<HashMap<UserKey, KeyLocks>>,
}

impl StateLocks {
    pub(crate) fn locks_for(&self, user: &str, key: &[u8]) -> Result<KeyLocks> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| anyhow!("the state lock table is poisoned"))?;
        if keys.len() >= LOCKS_KEPT_MAX {
            keys.retain(|_, locks| locks.in_use());
        }
        Ok(keys
            .entry((Arc::from(user), key.to_vec()))
            .or_default()
            .clone())
    }
}

/// A guest's hold on a key's lock.
/// The guards are held for what they keep locked, never read.
pub(crate) enum GuestLock {
    Read { _guard: OwnedRwLockReadGuard<()> },
    Write { _guard: OwnedRwLockWriteGuard<()> },
}

/// A state value mapped into linear memory, and the ranges of it the guest
/// flagged dirty since its last push.
pub(crate) struct Mapped {
    pub(crate) key: Vec<u8>,
    pub(crate) addr: u32,
    pub(crate) len: u32,
    pub(crate) dirty: Vec<(usize, usize)>,
}

/// One call's view of state: its mappings and the locks it holds.
pub struct CallState {
    pub(crate) locks_table: Arc<StateLocks>,
    /// Every value mapped in this call.
    pub(crate) maps: Vec<Mapped>,
    /// Locks this call holds, released at unlock or when the call ends.
    pub(crate) locks: Vec<(Vec<u8>, GuestLock)>,
}

impl CallState {
    pub fn new(locks_table: Arc<StateLocks>) -> CallState {
        CallState {
            locks_table,
            maps: Vec::new(),
            locks: Vec::new(),
        }
    }

    pub(crate) fn mapping(&self, key: &[u8]) -> Option<(u32, u32)> {
        self.maps
            .iter()
            .find(|m| m.key == key)
            .map(|m| (m.addr, m.len))
    }

    pub(crate) fn mapped_mut(&mut self, key: &[u8]) -> Option<&mut Mapped> {
        self.maps.iter_mut().find(|m| m.key == key)
    }

    pub(crate) fn holds(&self, key: &[u8]) -> bool {
        self.locks.iter().any(|(k, _)| k == key)
    }
}
