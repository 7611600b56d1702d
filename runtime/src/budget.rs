//! Node-wide budgets every shard draws from: the bytes of HTTP bodies held
//! in memory at once ([`ByteBudget`]), and the per-user quotas of
//! `[quotas]` ([`Quotas`]: calls in flight, object bytes).
//!
//! A budget is taken before the work it covers starts (before a body is
//! read, before a call is admitted) and given back when the returned
//! ticket drops, so a refused request costs nothing but its headers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{QuotaConfig, QuotaLimits};
use crate::objects::{ObjectError, Objects};

/// Bytes the node's requests may hold at once, shared by every shard.
#[derive(Debug)]
pub struct ByteBudget {
    held: AtomicU64,
    max_bytes: u64,
}

/// Why a budget refused: what it holds and its cap, for the reply.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub held_bytes: u64,
    pub max_bytes: u64,
}

/// A share of a [`ByteBudget`], given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<ByteBudget>,
    bytes: u64,
}

impl ByteBudget {
    pub fn new(max_bytes: u64) -> Arc<ByteBudget> {
        Arc::new(ByteBudget {
            held: AtomicU64::new(0),
            max_bytes,
        })
    }

    /// Takes `bytes`, or refuses when that would pass the cap.
    pub fn take(self: &Arc<Self>, bytes: u64) -> Result<Share, Refused> {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let after = held.saturating_add(bytes);
            if after > self.max_bytes {
                return Err(Refused {
                    held_bytes: held,
                    max_bytes: self.max_bytes,
                });
            }
            match self
                .held
                .compare_exchange_weak(held, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Share {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(now) => held = now,
            }
        }
    }

    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

use crate::limits::{
    QUOTA_USAGE_FRESH_MS as USAGE_FRESH_MS, QUOTA_USAGE_USERS_SWEEP as USAGE_USERS_SWEEP,
};

/// The per-user quotas of one node, and what each user holds against them.
pub struct Quotas {
    config: QuotaConfig,
    calls: Mutex<HashMap<String, usize>>,
    usage: Mutex<HashMap<String, Usage>>,
}

/// A user's object bytes as last listed, plus what puts through this node
/// changed since.
struct Usage {
    bytes: u64,
    /// Bytes of puts admitted and not yet finished.
    pending_bytes: u64,
    listed_at: Instant,
}

/// Why a quota refused, said in the reply.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("user {user} has {in_flight} calls in flight, the quota is {max}")]
    Calls {
        user: String,
        in_flight: usize,
        max: usize,
    },
    #[error("user {user} holds {held_bytes} bytes of objects; {more_bytes} more would pass the quota of {max_bytes} bytes")]
    ObjectBytes {
        user: String,
        held_bytes: u64,
        more_bytes: u64,
        max_bytes: u64,
    },
    #[error("summing the objects of user {user}: {source}")]
    Listing { user: String, source: ObjectError },
}

/// One call of a user counted against their quota until it drops.
pub struct CallTicket {
    quotas: Arc<Quotas>,
    user: String,
}

/// A put admitted against the user's object quota. [`PutTicket::done`]
/// records what it changed; dropped without it, the put failed and its
/// reservation goes back.
pub struct PutTicket {
    quotas: Option<Arc<Quotas>>,
    user: String,
    bytes: u64,
    replaced_bytes: u64,
}

impl Quotas {
    pub fn new(config: QuotaConfig) -> Arc<Quotas> {
        Arc::new(Quotas {
            config,
            calls: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
        })
    }

    fn limits(&self, user: &str) -> &QuotaLimits {
        self.config.users.get(user).unwrap_or(&self.config.default)
    }

    /// Counts a call of `user`, or refuses it past their quota.
    pub fn start_call(self: &Arc<Self>, user: &str) -> Result<Option<CallTicket>, QuotaError> {
        let Some(max) = self.limits(user).calls_in_flight_max else {
            return Ok(None);
        };
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let in_flight = calls.entry(user.to_owned()).or_insert(0);
        if *in_flight >= max {
            return Err(QuotaError::Calls {
                user: user.to_owned(),
                in_flight: *in_flight,
                max,
            });
        }
        *in_flight += 1;
        Ok(Some(CallTicket {
            quotas: self.clone(),
            user: user.to_owned(),
        }))
    }

    /// Admits a put of `bytes` as `key` of `user`, or refuses it when the
    /// user's objects would pass their quota (what `key` holds now is
    /// counted as given back).
    pub async fn admit_put(
        self: &Arc<Self>,
        objects: &Objects,
        user: &str,
        key: &[u8],
        bytes: u64,
    ) -> Result<PutTicket, QuotaError> {
        let Some(max_bytes) = self.limits(user).object_bytes_max else {
            return Ok(PutTicket::unlimited());
        };
        let listing = |source| QuotaError::Listing {
            user: user.to_owned(),
            source,
        };
        let fresh = self
            .usage_guard()
            .get(user)
            .is_some_and(|u| u.listed_at.elapsed() < Duration::from_millis(USAGE_FRESH_MS));
        if !fresh {
            let listed: u64 = objects
                .list(user)
                .await
                .map_err(listing)?
                .iter()
                .map(|o| o.size_bytes)
                .sum();
            let mut usage = self.usage_guard();
            if usage.len() >= USAGE_USERS_SWEEP {
                // A stale figure is listed afresh before it is used, so
                // dropping the stale ones with no put in flight loses
                // nothing: the map holds the users of the last window,
                // not every user name ever seen.
                let fresh = Duration::from_millis(USAGE_FRESH_MS);
                usage.retain(|_, u| u.pending_bytes > 0 || u.listed_at.elapsed() < fresh);
            }
            let entry = usage.entry(user.to_owned()).or_insert(Usage {
                bytes: 0,
                pending_bytes: 0,
                listed_at: Instant::now(),
            });
            entry.bytes = listed;
            entry.listed_at = Instant::now();
        }
        let replaced_bytes = objects.stat(user, key).await.map_err(listing)?.unwrap_or(0);
        let mut usage = self.usage_guard();
        let Some(entry) = usage.get_mut(user) else {
            // Only `forget` removes entries; a delete meanwhile: list again next time.
            return Err(listing(ObjectError::Peer {
                peer: "this node".into(),
                status: 0,
                body: "the usage figure changed while it was read; try again".into(),
            }));
        };
        let held_bytes = (entry.bytes + entry.pending_bytes).saturating_sub(replaced_bytes);
        if held_bytes.saturating_add(bytes) > max_bytes {
            return Err(QuotaError::ObjectBytes {
                user: user.to_owned(),
                held_bytes,
                more_bytes: bytes,
                max_bytes,
            });
        }
        entry.pending_bytes += bytes;
        Ok(PutTicket {
            quotas: Some(self.clone()),
            user: user.to_owned(),
            bytes,
            replaced_bytes,
        })
    }

    /// An object of `user` was deleted: their figure is listed afresh at
    /// the next put.
    pub fn forget(&self, user: &str) {
        if let Some(usage) = self.usage_guard().get_mut(user) {
            usage.listed_at = Instant::now() - Duration::from_millis(USAGE_FRESH_MS);
        }
    }

    fn usage_guard(&self) -> std::sync::MutexGuard<'_, HashMap<String, Usage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for CallTicket {
    fn drop(&mut self) {
        let mut calls = self.quotas.calls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(in_flight) = calls.get_mut(&self.user) {
            *in_flight = in_flight.saturating_sub(1);
            if *in_flight == 0 {
                calls.remove(&self.user);
            }
        }
    }
}

impl PutTicket {
    /// A put no quota counts.
    pub fn unlimited() -> PutTicket {
        PutTicket {
            quotas: None,
            user: String::new(),
            bytes: 0,
            replaced_bytes: 0,
        }
    }

    /// The put landed: the object now holds `bytes`, replacing what it held.
    pub fn done(mut self) {
        if let Some(quotas) = self.quotas.take() {
            let mut usage = quotas.usage_guard();
            if let Some(entry) = usage.get_mut(&self.user) {
                entry.pending_bytes = entry.pending_bytes.saturating_sub(self.bytes);
                entry.bytes = (entry.bytes + self.bytes).saturating_sub(self.replaced_bytes);
            }
        }
    }
}

impl Drop for PutTicket {
    fn drop(&mut self) {
        if let Some(quotas) = self.quotas.take() {
            let mut usage = quotas.usage_guard();
            if let Some(entry) = usage.get_mut(&self.user) {
                entry.pending_bytes = entry.pending_bytes.saturating_sub(self.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteBudget;

    #[test]
    fn a_budget_refuses_past_its_cap_and_takes_back_what_drops() {
        let budget = ByteBudget::new(100);
        let a = budget.take(60).expect("60 of 100");
        let refused = budget.take(41).expect_err("101 of 100");
        assert_eq!((refused.held_bytes, refused.max_bytes), (60, 100));
        let b = budget.take(40).expect("100 of 100");
        assert_eq!(budget.held_bytes(), 100);
        drop(a);
        drop(b);
        assert_eq!(budget.held_bytes(), 0);
        assert!(budget.take(100).is_ok());
    }
}
