//! A storage shard's offload slots: how many offered funclets run at once,
//! a bounded queue for Offers waiting for a slot, the accepted Offers
//! whose pages have not all arrived yet (each holding its slot), and the
//! parts of finished funclets' changes not yet fetched. The shard holds
//! one; `funclet::serve` admits and answers through it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::sync::{Semaphore, StaticPermit};

use crate::exec::Function;
use crate::limits;
use ferry_transport::{Offer, PageSet};

/// This shard's offload slots and the accepted Offers whose pages have not
/// arrived yet.
pub struct Slots {
    semaphore: Rc<Semaphore>,
    slots_max: usize,
    waiting: Cell<usize>,
    queue_max: usize,
    pending: RefCell<HashMap<u64, Pending>>,
    /// Finished funclets' changed pages still to fetch, by call.
    finished: RefCell<HashMap<u64, Finished>>,
    serial: Cell<u32>,
}

/// The parts of a Done's changed pages the compute node has not fetched,
/// and the slot they hold until it has (so what waits to be fetched is
/// bounded by the slots, as what runs is).
struct Finished {
    parts: VecDeque<PageSet>,
    serial: u32,
    _permit: StaticPermit,
}

impl Pending {
    /// Whether `part`'s first page comes after the last page of `parts`
    /// (page indices ascend across a snapshot's parts, as within one).
    pub fn follows(parts: &[PageSet], part: &PageSet) -> bool {
        let last = parts.iter().rev().find_map(|p| p.indices().last());
        match (last, part.indices().first()) {
            (Some(last), Some(first)) => first > last,
            _ => true,
        }
    }

    /// The Offer, its function, the snapshot's parts and the slot's
    /// permit (held while the funclet runs and its changes wait to be
    /// fetched).
    pub fn into_parts(self) -> (Offer, Arc<Function>, Vec<PageSet>, StaticPermit) {
        (self.offer, self.function, self.parts, self._permit)
    }
}

/// An accepted Offer waiting for its pages, and the slot it holds.
pub struct Pending {
    pub offer: Offer,
    pub function: Arc<Function>,
    /// The parts of the snapshot received so far, in order.
    pub parts: Vec<PageSet>,
    slot: u32,
    _permit: StaticPermit,
}

impl Slots {
    pub fn new(slots_max: usize, queue_max: usize) -> Slots {
        Slots {
            semaphore: Rc::new(Semaphore::new(slots_max as u64)),
            slots_max,
            waiting: Cell::new(0),
            queue_max,
            pending: RefCell::new(HashMap::new()),
            finished: RefCell::new(HashMap::new()),
            serial: Cell::new(0),
        }
    }

    /// Slots free now (for metrics and tests).
    pub fn free(&self) -> usize {
        self.semaphore.available() as usize
    }

    /// A slot, after waiting in the bounded queue if none is free; None
    /// means decline.
    pub async fn admit(&self) -> Option<StaticPermit> {
        if let Ok(permit) = self.semaphore.try_acquire_static_permit(1) {
            return Some(permit);
        }
        if self.waiting.get() >= self.queue_max {
            return None;
        }
        self.waiting.set(self.waiting.get() + 1);
        let waited = glommio::timer::timeout(
            Duration::from_millis(limits::OFFER_QUEUE_WAIT_MS_MAX),
            async {
                self.semaphore
                    .acquire_static_permit(1)
                    .await
                    .map_err(|e| glommio::GlommioError::from(std::io::Error::other(e.to_string())))
            },
        )
        .await;
        self.waiting.set(self.waiting.get() - 1);
        waited.ok()
    }

    /// (slots, Offers waiting for one): what a Decline says.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.slots_max, self.waiting.get())
    }

    /// Keeps an accepted Offer, with its slot, until its pages come; its
    /// serial, or None when the call already has one here.
    pub fn hold(&self, offer: Offer, function: Arc<Function>, permit: StaticPermit) -> Option<u32> {
        let call_id = offer.call_id;
        if self.pending.borrow().contains_key(&call_id) {
            return None;
        }
        let slot = self.serial.get().wrapping_add(1);
        self.serial.set(slot);
        self.pending.borrow_mut().insert(
            call_id,
            Pending {
                offer,
                function,
                parts: Vec::new(),
                slot,
                _permit: permit,
            },
        );
        Some(slot)
    }

    /// The accepted Offer of `call_id`, when its last pages arrive.
    pub fn take(&self, call_id: u64) -> Option<Pending> {
        self.pending.borrow_mut().remove(&call_id)
    }

    /// Keeps one part of an accepted Offer's snapshot (more follow); the
    /// slot's serial, or Err with why the part is refused.
    pub fn add_part(&self, call_id: u64, part: PageSet) -> Result<u32, String> {
        let mut pending = self.pending.borrow_mut();
        let Some(held) = pending.get_mut(&call_id) else {
            return Err(format!("no accepted offer for call {call_id} (expired?)"));
        };
        let memory_bytes = u64::from(held.offer.memory_pages) * limits::WASM_PAGE_BYTES as u64;
        let held_bytes: u64 = held.parts.iter().map(|p| p.data().len() as u64).sum();
        if held_bytes + part.data().len() as u64 > memory_bytes {
            pending.remove(&call_id);
            return Err(format!(
                "call {call_id}: pages past the offered memory of {memory_bytes} bytes"
            ));
        }
        if !Pending::follows(&held.parts, &part) {
            pending.remove(&call_id);
            return Err(format!(
                "call {call_id}: a part's pages do not come after the previous part's"
            ));
        }
        held.parts.push(part);
        Ok(held.slot)
    }

    /// Keeps the parts of a funclet's changes still to fetch; the serial
    /// that [`Slots::drop_parts`] takes.
    pub fn keep_parts(&self, call_id: u64, parts: VecDeque<PageSet>, permit: StaticPermit) -> u32 {
        let serial = self.serial.get().wrapping_add(1);
        self.serial.set(serial);
        self.finished.borrow_mut().insert(
            call_id,
            Finished {
                parts,
                serial,
                _permit: permit,
            },
        );
        serial
    }

    /// The next part of `call_id`'s changes and whether more follow.
    pub fn next_part(&self, call_id: u64) -> Option<(PageSet, bool)> {
        let mut finished = self.finished.borrow_mut();
        let entry = finished.get_mut(&call_id)?;
        let part = entry.parts.pop_front()?;
        let more = !entry.parts.is_empty();
        if !more {
            finished.remove(&call_id);
        }
        Some((part, more))
    }

    /// Drops `call_id`'s unfetched changes if they are still those kept
    /// as `serial`; whether they were.
    pub fn drop_parts(&self, call_id: u64, serial: u32) -> bool {
        let mut finished = self.finished.borrow_mut();
        if finished.get(&call_id).is_some_and(|f| f.serial == serial) {
            finished.remove(&call_id);
            return true;
        }
        false
    }

    /// Gives back the slot of `call_id`'s Offer if it is still the one
    /// held as `slot` (its pages never came); whether it was.
    pub fn give_back(&self, call_id: u64, slot: u32) -> bool {
        let mut pending = self.pending.borrow_mut();
        if pending.get(&call_id).is_some_and(|p| p.slot == slot) {
            pending.remove(&call_id);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use bytes::Bytes;
    use ferry_transport::PAGE_BYTES;

    fn pages(indices: &[u32]) -> PageSet {
        let data = Bytes::from(vec![7u8; indices.len() * PAGE_BYTES]);
        PageSet::new(indices.to_vec(), data).expect("a valid page set")
    }

    /// Changes that wait to be fetched keep their slot: with one slot,
    /// nothing more is admitted until the last part is fetched, or until
    /// the unfetched parts are dropped.
    #[test]
    fn unfetched_changes_hold_their_slot() -> anyhow::Result<()> {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let slots = Slots::new(1, 0);
                let permit = slots.admit().await.context("the one slot")?;
                let parts = VecDeque::from([pages(&[1]), pages(&[2])]);
                slots.keep_parts(9, parts, permit);
                anyhow::ensure!(slots.admit().await.is_none(), "admitted past the held slot");
                let (_, more) = slots.next_part(9).context("part 1")?;
                anyhow::ensure!(more, "a part follows");
                anyhow::ensure!(slots.admit().await.is_none(), "the slot went with part 1");
                let (_, more) = slots.next_part(9).context("part 2")?;
                anyhow::ensure!(!more, "the last part");
                let permit = slots
                    .admit()
                    .await
                    .context("the slot is back after the last part")?;
                let serial = slots.keep_parts(10, VecDeque::from([pages(&[3])]), permit);
                anyhow::ensure!(slots.admit().await.is_none(), "admitted past the held slot");
                anyhow::ensure!(slots.drop_parts(10, serial), "the parts were kept");
                anyhow::ensure!(
                    slots.admit().await.is_some(),
                    "the slot is back after a drop"
                );
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("starting an executor: {e}"))?
            .join()
            .map_err(|e| anyhow::anyhow!("the executor failed: {e:?}"))?
    }

    /// A snapshot's parts must continue one another: a part whose first
    /// page is not past the previous part's last is refused.
    #[test]
    fn parts_must_follow_one_another() {
        let held = [pages(&[1, 5]), pages(&[]), pages(&[8])];
        assert!(Pending::follows(&[], &pages(&[0])));
        assert!(Pending::follows(&held, &pages(&[9, 10])));
        assert!(Pending::follows(&held, &pages(&[])));
        assert!(!Pending::follows(&held, &pages(&[8])));
        assert!(!Pending::follows(&held, &pages(&[3])));
    }
}
