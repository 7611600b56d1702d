//! Invocations as the HTTP API sees them: call ids, and the table of
//! asynchronous calls that clients poll (from any shard).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::CallResult;
use crate::limits;

/// Call ids are positive i32 (guests see them through the ABI).
pub struct CallIds(AtomicU32);

impl CallIds {
    pub fn new() -> CallIds {
        // Start from a time-derived value so ids from a restarted node do
        // not repeat the previous run's.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| (d.as_micros() % 1_000_000_000) as u32);
        CallIds(AtomicU32::new(seed.max(1)))
    }

    pub fn next(&self) -> u32 {
        loop {
            let id = self.0.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if id != 0 {
                return id;
            }
        }
    }
}

/// What a status poll sees.
pub enum AsyncStatus {
    Running,
    Done(Arc<CallResult>),
}

enum Entry {
    Running,
    Done(Arc<CallResult>),
}

/// Asynchronous calls by id. Touched only by async calls and polls, never
/// by the synchronous hot path; finished results stay for the retention.
pub struct AsyncCalls {
    inner: Mutex<Inner>,
    retention: Duration,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<u32, Entry>,
    finished: VecDeque<(Instant, u32)>,
}

#[derive(Debug)]
pub struct AsyncTableFull;

impl AsyncCalls {
    pub fn new(retention: Duration) -> AsyncCalls {
        AsyncCalls {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }

    pub fn start(&self, id: u32) -> Result<(), AsyncTableFull> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((at, id)) = inner.finished.front().copied() {
            if now.duration_since(at) < self.retention {
                break;
            }
            inner.finished.pop_front();
            inner.calls.remove(&id);
        }
        if inner.calls.len() >= limits::ASYNC_RESULTS_MAX {
            return Err(AsyncTableFull);
        }
        inner.calls.insert(id, Entry::Running);
        Ok(())
    }

    pub fn finish(&self, id: u32, result: CallResult) {
        let mut inner = self.lock();
        inner.calls.insert(id, Entry::Done(Arc::new(result)));
        inner.finished.push_back((Instant::now(), id));
    }

    pub fn status(&self, id: u32) -> Option<AsyncStatus> {
        match self.lock().calls.get(&id)? {
            Entry::Running => Some(AsyncStatus::Running),
            Entry::Done(result) => Some(AsyncStatus::Done(result.clone())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters: take the data either way.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
