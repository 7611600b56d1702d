//! Invocations as the HTTP API sees them: call ids, and the table of
//! asynchronous calls that clients poll (from any shard) by a random id
//! of their own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::CallResult;
use crate::limits;

/// The ids calls run under: positive i32, sequential (guests see them
/// through the ABI; chained calls are awaited by them). HTTP clients never
/// see one: an asynchronous call is polled by its random [`AsyncCalls`] id.
pub struct CallIds(AtomicU32);

impl Default for CallIds {
    fn default() -> CallIds {
        CallIds::new()
    }
}

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

/// Bits of an asynchronous call's id: random, so one client cannot read
/// another's result by counting (with the table full, 100,000 live ids in
/// 2^53 make a hit ~1 in 9*10^10 a guess), and at most 2^53 - 1 so the
/// decimal id Faasm clients get survives any JSON parser (JavaScript's
/// safe integers). Kept apart from [`CallIds`]: the guest ABI sees i32
/// call ids for chained calls, and those need not be secret.
pub const ASYNC_ID_BITS: u32 = 53;

/// Where an asynchronous call is: what a status poll sees.
#[derive(Clone)]
pub enum AsyncStatus {
    Running,
    Done(Arc<CallResult>),
}

/// One asynchronous call as the table keeps it.
struct AsyncCall {
    /// Who started the call: only they may poll it when the node has
    /// tokens (None: started on a node without them).
    user: Option<Arc<str>>,
    status: AsyncStatus,
}

/// Asynchronous calls by their random id. Touched only by async calls and
/// polls, never by the synchronous hot path; finished results stay for the
/// retention.
pub struct AsyncCalls {
    inner: Mutex<Inner>,
    retention: Duration,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<u64, AsyncCall>,
    finished: VecDeque<(Instant, u64)>,
    /// Output and log bytes of the results kept.
    kept_bytes: usize,
}

fn result_bytes(result: &CallResult) -> usize {
    result.output.len() + result.log.len()
}

/// Why an asynchronous call could not start.
#[derive(Debug)]
pub enum AsyncStartError {
    /// `ASYNC_RESULTS_MAX` calls are running or kept.
    Full,
    /// The kernel gave no random bytes for the id.
    Random(getrandom::Error),
}

impl AsyncCalls {
    pub fn new(retention: Duration) -> AsyncCalls {
        AsyncCalls {
            inner: Mutex::new(Inner::default()),
            retention,
        }
    }

    /// Registers a running call of `user` and returns its id: random,
    /// non-zero, below 2^ASYNC_ID_BITS, and not in the table.
    pub fn start(&self, user: Option<Arc<str>>) -> Result<u64, AsyncStartError> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some((at, id)) = inner.finished.front().copied() {
            if now.duration_since(at) < self.retention {
                break;
            }
            inner.finished.pop_front();
            if let Some(AsyncCall {
                status: AsyncStatus::Done(result),
                ..
            }) = inner.calls.remove(&id)
            {
                inner.kept_bytes -= result_bytes(&result);
            }
        }
        if inner.calls.len() >= limits::ASYNC_RESULTS_MAX {
            return Err(AsyncStartError::Full);
        }
        let id = loop {
            let mut bytes = [0u8; 8];
            getrandom::getrandom(&mut bytes).map_err(AsyncStartError::Random)?;
            let id = u64::from_le_bytes(bytes) >> (64 - ASYNC_ID_BITS);
            if id != 0 && !inner.calls.contains_key(&id) {
                break id;
            }
        };
        inner.calls.insert(
            id,
            AsyncCall {
                user,
                status: AsyncStatus::Running,
            },
        );
        Ok(id)
    }

    pub fn finish(&self, id: u64, result: CallResult) {
        let mut inner = self.lock();
        let bytes = result_bytes(&result);
        let Some(entry) = inner.calls.get_mut(&id) else {
            return;
        };
        entry.status = AsyncStatus::Done(Arc::new(result));
        inner.finished.push_back((Instant::now(), id));
        inner.kept_bytes += bytes;
        // Past the byte budget, the oldest results give way: each is
        // replaced by a short failure that says why, so its id still
        // answers.
        let mut oldest = 0;
        while inner.kept_bytes > limits::ASYNC_RESULT_BYTES_MAX && oldest < inner.finished.len() {
            let (_, old_id) = inner.finished[oldest];
            oldest += 1;
            let dropped = match inner.calls.get_mut(&old_id) {
                Some(entry) => match &entry.status {
                    AsyncStatus::Done(old) if result_bytes(old) > 0 => {
                        let freed = result_bytes(old);
                        let reason = format!(
                            "result of {freed} bytes no longer kept: the node keeps at most {} bytes of asynchronous results",
                            limits::ASYNC_RESULT_BYTES_MAX
                        );
                        entry.status =
                            AsyncStatus::Done(Arc::new(CallResult::failed(reason, Instant::now())));
                        freed
                    }
                    _ => 0,
                },
                None => 0,
            };
            inner.kept_bytes -= dropped;
        }
    }

    /// The call's status as `caller` may see it: a call started by another
    /// user is not there for them (the same answer as an unknown id, so a
    /// poll tells no one whether someone else's call exists).
    pub fn status(&self, id: u64, caller: Option<&str>) -> Option<AsyncStatus> {
        let inner = self.lock();
        let entry = inner.calls.get(&id)?;
        if let Some(owner) = &entry.user {
            if caller != Some(&**owner) {
                return None;
            }
        }
        Some(entry.status.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters: take the data either way.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_within_53_bits_and_polls_are_per_user() -> Result<(), AsyncStartError> {
        let calls = AsyncCalls::new(Duration::from_secs(60));
        let alice: Arc<str> = "alice".into();
        let ids: Vec<u64> = (0..64)
            .map(|_| calls.start(Some(alice.clone())))
            .collect::<Result<_, _>>()?;
        assert!(ids.iter().all(|id| (1..1 << ASYNC_ID_BITS).contains(id)));
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "an id repeated");
        // 64 draws of 53 bits all below 2^32: about 2^-1344.
        assert!(ids.iter().any(|id| *id > u64::from(u32::MAX)));
        assert!(matches!(
            calls.status(ids[0], Some("alice")),
            Some(AsyncStatus::Running)
        ));
        assert!(calls.status(ids[0], Some("bob")).is_none());
        assert!(calls.status(ids[0], None).is_none());
        let open = calls.start(None)?;
        assert!(calls.status(open, None).is_some());
        assert!(calls.status(open, Some("bob")).is_some());
        Ok(())
    }

    #[test]
    fn kept_results_stay_within_their_byte_budget() -> Result<(), AsyncStartError> {
        let calls = AsyncCalls::new(Duration::from_secs(600));
        let each = 40 << 20;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = calls.start(None)?;
            let mut result = CallResult::failed(String::new(), Instant::now());
            (result.return_code, result.failure) = (0, None);
            result.output = vec![7; each];
            calls.finish(id, result);
            ids.push(id);
        }
        assert!(calls.lock().kept_bytes <= limits::ASYNC_RESULT_BYTES_MAX);
        let kept: Vec<bool> = ids
            .iter()
            .map(|id| match calls.status(*id, None) {
                Some(AsyncStatus::Done(r)) => r.output.len() == each,
                _ => false,
            })
            .collect();
        // The newest three fit 128 MiB; the two oldest gave way and say so.
        assert_eq!(kept, [false, false, true, true, true]);
        match calls.status(ids[0], None) {
            Some(AsyncStatus::Done(r)) => {
                assert!(r
                    .failure
                    .as_deref()
                    .is_some_and(|f| f.contains("no longer kept")))
            }
            _ => panic!("the oldest id must still answer"),
        }
        Ok(())
    }
}
