//! A shard's connections to its peers, keyed by address.
//!
//! Each [`Peer`] keeps up to `connections_per_peer_max` multiplexed
//! connections. A request takes an idle one, opens another when all are busy
//! (so a 64 MiB transfer does not hold small requests behind it), or shares
//! the least busy. A connection that fails is dropped; the next request
//! reconnects. Failed connects back off exponentially (from `backoff_ms_min`,
//! doubling, at most `backoff_ms_max`, with jitter so shards do not retry in
//! step), and only one connect per peer runs at a time.
//!
//! A request is never retried here: an offer or a write may have reached the
//! peer before the failure, and only the caller knows whether repeating it
//! is safe.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;

use crate::config::TransportConfig;
use crate::connection::{with_deadline, Connection};
use crate::error::TransportError;
use crate::message::Message;

/// Per-shard pool of connections, one [`Peer`] per address.
pub struct PeerPool {
    config: Rc<TransportConfig>,
    peers: RefCell<HashMap<SocketAddr, Rc<Peer>>>,
}

impl PeerPool {
    pub fn new(config: TransportConfig) -> Result<PeerPool, TransportError> {
        config.validate()?;
        Ok(PeerPool {
            config: Rc::new(config),
            peers: RefCell::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The peer at `addr`, tracked from now on. When `peers_max` peers are
    /// tracked, those without a live connection make room.
    pub fn peer(&self, addr: SocketAddr) -> Result<Rc<Peer>, TransportError> {
        let mut peers = self.peers.borrow_mut();
        if let Some(peer) = peers.get(&addr) {
            return Ok(peer.clone());
        }
        if peers.len() >= self.config.peers_max {
            peers.retain(|_, peer| peer.connections() > 0);
            if peers.len() >= self.config.peers_max {
                return Err(TransportError::LimitReached {
                    what: "peers_max",
                    max: self.config.peers_max as u64,
                });
            }
        }
        let peer = Rc::new(Peer::new(addr, self.config.clone()));
        peers.insert(addr, peer.clone());
        Ok(peer)
    }

    /// Sends `message` to `addr` and waits for the answer; connecting (and
    /// waiting out a backoff) counts against `timeout`.
    pub async fn request(
        &self,
        addr: SocketAddr,
        message: &Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        self.peer(addr)?.request(message, timeout).await
    }
}

/// One remote node as seen from this shard.
pub struct Peer {
    addr: SocketAddr,
    config: Rc<TransportConfig>,
    connections: RefCell<Vec<Rc<Connection>>>,
    /// Connect failures since the last success.
    failures: Cell<u32>,
    connects: Cell<u64>,
    retry_at: Cell<Option<Instant>>,
    connecting: Semaphore,
}

enum Pick {
    Use(Rc<Connection>),
    /// Open another connection; fall back to the given one if that fails.
    Grow(Option<Rc<Connection>>),
}

impl Peer {
    fn new(addr: SocketAddr, config: Rc<TransportConfig>) -> Peer {
        Peer {
            addr,
            config,
            connections: RefCell::new(Vec::new()),
            failures: Cell::new(0),
            connects: Cell::new(0),
            retry_at: Cell::new(None),
            connecting: Semaphore::new(1),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live connections.
    pub fn connections(&self) -> usize {
        self.connections
            .borrow()
            .iter()
            .filter(|c| c.is_alive())
            .count()
    }

    /// Connect failures since the last successful connect.
    pub fn connect_failures(&self) -> u32 {
        self.failures.get()
    }

    /// Successful connects over the peer's life.
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    /// Sends `message` on one of this peer's connections.
    pub async fn request(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        let deadline = Instant::now() + timeout;
        let connection = self.connection(deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransportError::Timeout {
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        connection.request(message, left).await
    }

    fn pick(&self) -> Pick {
        let mut connections = self.connections.borrow_mut();
        connections.retain(|c| c.is_alive());
        let least_busy = connections.iter().min_by_key(|c| c.in_flight()).cloned();
        match least_busy {
            Some(c)
                if c.in_flight() == 0
                    || connections.len() >= self.config.connections_per_peer_max =>
            {
                Pick::Use(c)
            }
            other => Pick::Grow(other),
        }
    }

    /// A connection to use, opened if needed before `deadline`.
    pub async fn connection(&self, deadline: Instant) -> Result<Rc<Connection>, TransportError> {
        loop {
            let fallback = match self.pick() {
                Pick::Use(connection) => return Ok(connection),
                Pick::Grow(fallback) => fallback,
            };
            let now = Instant::now();
            if let Some(retry_at) = self.retry_at.get().filter(|at| *at > now) {
                if let Some(connection) = fallback {
                    return Ok(connection);
                }
                if retry_at >= deadline {
                    return Err(TransportError::Backoff {
                        addr: self.addr,
                        retry_in_ms: millis(retry_at - now),
                    });
                }
                glommio::timer::sleep(retry_at - now).await;
                continue;
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(TransportError::Timeout { ms: 0 });
            }
            // One connect per peer at a time; the others wait and look again.
            let permit = with_deadline(left, async {
                self.connecting
                    .acquire_permit(1)
                    .await
                    .map_err(|_| TransportError::PeerClosed)
            })
            .await?;
            if let Pick::Use(connection) = self.pick() {
                return Ok(connection);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let connected = with_deadline(
                left,
                Connection::connect_shared(self.addr, self.config.clone()),
            )
            .await;
            drop(permit);
            match connected {
                Ok(connection) => {
                    if self.failures.replace(0) > 0 {
                        tracing::info!(peer = %self.addr, "reconnected");
                    }
                    self.retry_at.set(None);
                    self.connects.set(self.connects.get() + 1);
                    let connection = Rc::new(connection);
                    self.connections.borrow_mut().push(connection.clone());
                    return Ok(connection);
                }
                Err(error) => {
                    let failures = self.failures.get().saturating_add(1);
                    self.failures.set(failures);
                    let delay = self.backoff(failures);
                    self.retry_at.set(Some(Instant::now() + delay));
                    if failures == 1 {
                        tracing::warn!(peer = %self.addr, %error, "connect failed; backing off");
                    }
                    if let Some(connection) = fallback {
                        return Ok(connection);
                    }
                    // A peer that refused our proof of the cluster secret
                    // (or could not prove its own) will again: fail now
                    // rather than retry until the deadline.
                    let refused = matches!(error, TransportError::Unauthenticated { .. });
                    if refused || Instant::now() + delay >= deadline {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// `backoff_ms_min * 2^(failures - 1)`, at most `backoff_ms_max`, minus up
    /// to a quarter of jitter.
    fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        let ms = self
            .config
            .backoff_ms_min
            .saturating_mul(1 << shift)
            .min(self.config.backoff_ms_max);
        // Jitter spreads the reconnects of many shards apart; should the
        // OS have no randomness to give, the backoff is taken whole.
        let mut random = [0u8; 8];
        let jitter = match getrandom::getrandom(&mut random) {
            Ok(()) => u64::from_le_bytes(random) % (ms / 4 + 1),
            Err(_) => 0,
        };
        Duration::from_millis(ms - jitter)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() -> Result<(), TransportError> {
        let mut config = TransportConfig::new("n1");
        config.backoff_ms_min = 8;
        config.backoff_ms_max = 100;
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 9)), Rc::new(config));
        let expect = [(1, 8), (2, 16), (3, 32), (4, 64), (5, 100), (30, 100)];
        for (failures, ms) in expect {
            let delay = peer.backoff(failures).as_millis() as u64;
            assert!(
                delay <= ms && delay >= ms - ms / 4,
                "failures {failures}: {delay} ms, expected {ms} minus at most a quarter"
            );
        }
        Ok(())
    }
}
