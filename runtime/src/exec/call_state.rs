//! One call's view of Faasm state (host/state.rs has the imports): the
//! values it mapped into linear memory and the per-key locks it holds, and
//! the node's table of those locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use wasmtime::{format_err as anyhow, Result};

/// Per-key locks kept before the unused ones are dropped.
const LOCKS_KEPT_MAX: usize = 10_000;

/// A state value's name: user and key.
type UserKey = (Arc<str>, Vec<u8>);

/// The node's per-key state locks, shared by every shard. They stay this
/// node's alone on a cluster whose state values live on storage nodes:
/// they order this node's calls, not those of other compute nodes.
#[derive(Default)]
pub struct StateLocks {
    keys: Mutex<HashMap<UserKey, Arc<AsyncMutex<()>>>>,
}

impl StateLocks {
    pub(crate) fn lock_for(&self, user: &Arc<str>, key: &[u8]) -> Result<Arc<AsyncMutex<()>>> {
        let mut keys = self
            .keys
            .lock()
            .map_err(|_| anyhow!("the state lock table is poisoned"))?;
        if keys.len() >= LOCKS_KEPT_MAX {
            keys.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        Ok(keys
            .entry((user.clone(), key.to_vec()))
            .or_default()
            .clone())
    }
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
    pub(crate) locks: Vec<(Vec<u8>, OwnedMutexGuard<()>)>,
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
