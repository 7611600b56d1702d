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

/// Whether `part`'s first page comes after the last page of `parts` (page
/// indices ascend across a snapshot's parts, as within one).
fn follows(parts: &[PageSet], part: &PageSet) -> bool {
    let last = parts.iter().rev().find_map(|p| p.indices().last());
    match (last, part.indices().first()) {
        (Some(last), Some(first)) => first > last,
        _ => true,
    }
}

/// What [`Slots::add_part`] made of a part.
pub enum Part {
    /// More parts follow; the slot's serial.
    More(u32),
    /// The last part: the whole snapshot.
    Last(Box<Snapshot>),
}

/// An accepted Offer's whole snapshot, with its function and the slot's
/// permit (held while the funclet runs and its changes wait to be fetched).
pub struct Snapshot {
    pub offer: Offer,
    pub function: Arc<Function>,
    /// In order; page indices ascend across parts.
    pub parts: Vec<PageSet>,
    pub permit: StaticPermit,
}

/// Why [`Slots::add_part`] refused a part.
pub enum PartRefused {
    /// No accepted Offer for the call (never made, or expired).
    NoOffer(String),
    /// The part itself is wrong; the Offer is dropped with its slot.
    Bad(String),
}

/// An accepted Offer waiting for its pages: the snapshot so far (holding
/// the slot's permit) and the slot's serial.
struct Pending {
    snapshot: Snapshot,
    slot: u32,
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
                snapshot: Snapshot {
                    offer,
                    function,
                    parts: Vec::new(),
                    permit,
                },
                slot,
            },
        );
        Some(slot)
    }

    /// Takes one part of an accepted Offer's snapshot, refusing one that
    /// runs past the offered memory or does not follow the previous part;
    /// with the last part (`more` false), hands the whole snapshot over.
    pub fn add_part(&self, call_id: u64, part: PageSet, more: bool) -> Result<Part, PartRefused> {
        let mut pending = self.pending.borrow_mut();
        let Some(Pending {
            snapshot: mut held,
            slot,
        }) = pending.remove(&call_id)
        else {
            return Err(PartRefused::NoOffer(format!(
                "no accepted offer for call {call_id} (expired?)"
            )));
        };
        let memory_bytes = u64::from(held.offer.memory_pages) * limits::WASM_PAGE_BYTES as u64;
        let held_bytes: u64 = held.parts.iter().map(|p| p.data().len() as u64).sum();
        // A refused part drops the Offer, and its slot, with it.
        if held_bytes + part.data().len() as u64 > memory_bytes {
            return Err(PartRefused::Bad(format!(
                "call {call_id}: pages past the offered memory of {memory_bytes} bytes"
            )));
        }
        if !follows(&held.parts, &part) {
            return Err(PartRefused::Bad(format!(
                "call {call_id}: a part's pages do not come after the previous part's"
            )));
        }
        held.parts.push(part);
        if more {
            pending.insert(
                call_id,
                Pending {
                    snapshot: held,
                    slot,
                },
            );
            return Ok(Part::More(slot));
        }
        Ok(Part::Last(Box::new(held)))
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

    /// A function for an Offer to name: an empty module.
    fn function() -> anyhow::Result<Arc<Function>> {
        let config = crate::config::Config::validate(Default::default())?;
        let executor = crate::exec::Executor::new(config.limits, 1, |_| Ok(()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let module = executor
            .compile(b"\0asm\x01\0\0\0")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let pre = executor
            .prepare(&module)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Arc::new(Function {
            user: "u".into(),
            name: "f".into(),
            wasm_sha256: String::new(),
            module,
            pre,
            facts: Default::default(),
            image: Default::default(),
        }))
    }

    /// Every part of a snapshot, the last included, is checked before it is
    /// kept; a refused part drops the Offer and gives its slot back; the
    /// last part hands the whole snapshot over with the slot.
    #[test]
    fn every_part_is_checked_and_the_last_hands_the_snapshot_over() -> anyhow::Result<()> {
        let function = function()?;
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let slots = Slots::new(1, 0);
                // 1 wasm page offered: 16 pages of 4 KiB at most.
                let offer = |call_id| Offer {
                    call_id,
                    memory_pages: 1,
                    ..ferry_transport::testing::offer(None)
                };
                let hold = |call_id: u64| {
                    let (slots, function) = (&slots, function.clone());
                    async move {
                        let permit = slots.admit().await.context("the one slot")?;
                        slots.hold(offer(call_id), function, permit).context("held")
                    }
                };
                let refused = |outcome: Result<Part, PartRefused>| match outcome {
                    Err(PartRefused::Bad(reason)) => Ok(reason),
                    Err(PartRefused::NoOffer(reason)) => Err(anyhow::anyhow!("no offer: {reason}")),
                    Ok(_) => Err(anyhow::anyhow!("a bad part was taken")),
                };

                // A last part that does not follow the one before.
                hold(1).await?;
                anyhow::ensure!(matches!(
                    slots.add_part(1, pages(&[4, 5]), true),
                    Ok(Part::More(_))
                ));
                let reason = refused(slots.add_part(1, pages(&[2]), false))?;
                anyhow::ensure!(reason.contains("do not come after"), "{reason}");
                anyhow::ensure!(
                    matches!(
                        slots.add_part(1, pages(&[9]), false),
                        Err(PartRefused::NoOffer(_))
                    ),
                    "the Offer outlived its refused part"
                );

                // A last part past the offered memory (17 pages of 16).
                hold(2).await?;
                let seventeen: Vec<u32> = (0..17).collect();
                let reason = refused(slots.add_part(2, pages(&seventeen), false))?;
                anyhow::ensure!(reason.contains("past the offered memory"), "{reason}");

                // A good snapshot: the last part hands it over, with the slot.
                hold(3).await?;
                anyhow::ensure!(matches!(
                    slots.add_part(3, pages(&[0, 1]), true),
                    Ok(Part::More(_))
                ));
                let Ok(Part::Last(snapshot)) = slots.add_part(3, pages(&[7]), false) else {
                    anyhow::bail!("the last part did not hand the snapshot over");
                };
                let Snapshot {
                    offer,
                    parts,
                    permit,
                    ..
                } = *snapshot;
                anyhow::ensure!(offer.call_id == 3);
                let indices: Vec<u32> = parts.iter().flat_map(|p| p.indices().to_vec()).collect();
                anyhow::ensure!(indices == [0, 1, 7], "{indices:?}");
                anyhow::ensure!(
                    slots.admit().await.is_none(),
                    "the slot went with the snapshot"
                );
                drop(permit);
                anyhow::ensure!(slots.admit().await.is_some(), "the slot is back");
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
        assert!(follows(&[], &pages(&[0])));
        assert!(follows(&held, &pages(&[9, 10])));
        assert!(follows(&held, &pages(&[])));
        assert!(!follows(&held, &pages(&[8])));
        assert!(!follows(&held, &pages(&[3])));
    }
}
