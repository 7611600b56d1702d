//! The engine's epoch ticker: every [`limits::EPOCH_TICK_MS`], running
//! guests yield their shard and their deadline callback checks the clock.
//!
//! It ticks only while a call's store is alive anywhere on the node. With
//! none for [`IDLE_TICKS_BEFORE_PARK`] ticks it parks, and the next store
//! ([`EpochTicker::ticking`]) wakes it: a 1 ms ticker on an idle node woke
//! ~940 times a second, most of an idle node's CPU.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::IntCounter;
use wasmtime::Engine;

use crate::limits;

/// Ticks with no store alive before the ticker parks (100 ms).
const IDLE_TICKS_BEFORE_PARK: u32 = 100;

pub struct EpochTicker {
    engine: Engine,
    /// Stores alive, on every shard.
    stores: AtomicUsize,
    /// The ticker is parked (or about to be) and waits for a store.
    parked: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// Epochs the ticker has advanced (`ferry_epoch_ticks_total`).
    ticks: IntCounter,
}

/// Held by a call's store: while any is alive, the ticker ticks.
pub struct Ticking(Arc<EpochTicker>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.stores.fetch_sub(1, Ordering::Release);
    }
}

impl EpochTicker {
    pub fn new(engine: Engine) -> prometheus::Result<Arc<EpochTicker>> {
        Ok(Arc::new(EpochTicker {
            engine,
            stores: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: OnceLock::new(),
            ticks: IntCounter::new(
                "ferry_epoch_ticks_total",
                "Epochs the engine's ticker advanced (it parks while no call's store is alive)",
            )?,
        }))
    }

    /// Starts the ticker's thread (once; a second call does nothing).
    pub fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        if self.thread.get().is_some() {
            return Ok(());
        }
        let ticker = self.clone();
        let handle = std::thread::Builder::new()
            .name("ferry-epoch".into())
            .spawn(move || ticker.run())
            .map_err(|e| anyhow::anyhow!("starting the epoch ticker thread: {e}"))?;
        let _ = self.thread.set(handle.thread().clone());
        Ok(())
    }

    /// Epochs advanced so far, as the node's metrics report them.
    pub fn ticks(&self) -> &IntCounter {
        &self.ticks
    }

    /// Marks a store alive until the guard drops, waking a parked ticker.
    pub fn ticking(self: &Arc<Self>) -> Ticking {
        // SeqCst on both sides: either the ticker sees this store in its
        // check after setting `parked`, or this sees `parked` set.
        self.stores.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        Ticking(self.clone())
    }

    fn run(&self) {
        let mut idle = 0u32;
        loop {
            std::thread::sleep(Duration::from_millis(limits::EPOCH_TICK_MS));
            self.engine.increment_epoch();
            self.ticks.inc();
            if self.stores.load(Ordering::SeqCst) > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < IDLE_TICKS_BEFORE_PARK {
                continue;
            }
            self.parked.store(true, Ordering::SeqCst);
            if self.stores.load(Ordering::SeqCst) > 0 {
                // A store came between the two checks; if its `ticking`
                // saw `parked`, it cleared it (and unparked: harmless).
                self.parked.store(false, Ordering::SeqCst);
            } else {
                while self.parked.load(Ordering::SeqCst) {
                    std::thread::park();
                }
            }
            idle = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ticks_over(ticker: &EpochTicker, wait: Duration) -> u64 {
        let before = ticker.ticks().get();
        std::thread::sleep(wait);
        ticker.ticks().get() - before
    }

    #[test]
    fn the_ticker_parks_on_an_idle_node_and_a_store_wakes_it() -> anyhow::Result<()> {
        let ticker = EpochTicker::new(Engine::default())?;
        ticker.start()?;
        // Idle from the start: parked after ~100 ticks (slack for a loaded
        // machine), then no tick at all.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ticker.parked.load(Ordering::SeqCst) {
            anyhow::ensure!(Instant::now() < deadline, "never parked");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(20));
        let idle = ticks_over(&ticker, Duration::from_millis(300));
        anyhow::ensure!(idle == 0, "{idle} ticks while parked");

        // A store wakes it, and it ticks while the store lives, past the
        // idle limit.
        let store = ticker.ticking();
        let busy = ticks_over(&ticker, Duration::from_millis(300));
        anyhow::ensure!(busy >= 30, "{busy} ticks in 300 ms with a store alive");
        anyhow::ensure!(
            !ticker.parked.load(Ordering::SeqCst),
            "parked with a store alive"
        );

        // Gone: parked again.
        drop(store);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ticker.parked.load(Ordering::SeqCst) {
            anyhow::ensure!(Instant::now() < deadline, "never parked again");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    #[test]
    fn stores_coming_and_going_never_leave_the_ticker_parked_under_one() -> anyhow::Result<()> {
        let ticker = EpochTicker::new(Engine::default())?;
        ticker.start()?;
        // Many short stores around the moment the ticker parks: whenever one
        // is alive after its `ticking` returned, the ticker must not stay
        // parked.
        // Idle gaps of 90-120 ms straddle the ~100-110 ms the ticker waits
        // before it parks.
        for round in 0..48u64 {
            std::thread::sleep(Duration::from_millis(90 + 2 * (round % 16)));
            let store = ticker.ticking();
            let deadline = Instant::now() + Duration::from_secs(5);
            let before = ticker.ticks().get();
            while ticker.ticks().get() < before + 2 {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "round {round}: no tick within 5 s with a store alive"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(store);
        }
        Ok(())
    }
}
