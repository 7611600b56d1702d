//! The storage side of an offload: admit an Offer into one of this shard's
//! bounded slots (or decline it at once), instantiate the module from its
//! zygote image, apply the caller's pages and globals, run the funclet with
//! `getMmap` served from this node's store, and answer Done with what it
//! changed.
//!
//! A slot is held from admission to Done. An Offer whose pages follow holds
//! it until they arrive, at most `OFFER_PAGES_WAIT_MS_MAX`; an Offer that
//! waits for a slot waits at most `OFFER_QUEUE_WAIT_MS_MAX`, then is
//! declined, so a compute node that gave up never leaves work behind here.
//!
//! Pages larger than one part (`PAGES_PART_BYTES_MAX`) travel in parts
//! both ways: the compute node sends Pages with `more` set, each answered
//! with Accept, then the last; a Done whose changes are larger carries the
//! first part and says how many follow, which the compute node fetches
//! with FetchPages. Unfetched parts are dropped after
//! `OFFER_PAGES_WAIT_MS_MAX`.

use std::collections::VecDeque;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::StaticPermit;
use wasmtime::Store;

use super::snapshot::{self, Base, WASM_PAGE_BYTES};
use crate::exec::{call_i32, describe_failure, table_func, CallCtx, CallSpec, Entry, Function};
use crate::limits;
use crate::shard::LocalShard;
use crate::slots::{Part, PartRefused, Snapshot};
use ferry_transport::{Done, ErrorCode, Message, Offer, PageSet, Pages};

/// Answers an Offer: Done (pages rode along), Accept (pages follow),
/// Decline (busy) or an error (NotFound: send the module first).
pub async fn answer_offer(shard: &Rc<LocalShard>, mut offer: Offer) -> Message {
    let Some(function) = module(shard, &offer) else {
        return Message::error(
            ErrorCode::NotFound,
            format!(
                "no module {} for {}/{}",
                hex::encode(offer.module_hash),
                offer.user,
                offer.function
            ),
        );
    };
    let slots = &shard.funclets;
    let Some(permit) = slots.admit().await else {
        let (running, waiting) = slots.occupancy();
        shard
            .node
            .metrics
            .offers
            .with_label_values(&["declined"])
            .inc();
        return Message::Decline {
            call_id: offer.call_id,
            reason: format!("busy: {running} funclets running and {waiting} waiting"),
        };
    };
    shard
        .node
        .metrics
        .offers
        .with_label_values(&["accepted"])
        .inc();
    if let Some(pages) = offer.inline_pages.take() {
        return run(shard, &function, &offer, &[pages], permit).await;
    }
    let call_id = offer.call_id;
    let Some(slot) = slots.hold(offer, function, permit) else {
        return Message::error(
            ErrorCode::BadRequest,
            format!("call {call_id} already has an accepted offer"),
        );
    };
    // Give the slot back if the pages never come.
    let owner = shard.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_millis(limits::OFFER_PAGES_WAIT_MS_MAX)).await;
        if owner.funclets.give_back(call_id, slot) {
            owner
                .node
                .metrics
                .offers
                .with_label_values(&["abandoned"])
                .inc();
        }
    })
    .detach();
    Message::Accept { call_id, slot }
}

/// Answers the pages of an accepted Offer: Accept while more parts
/// follow, then Done.
pub async fn answer_pages(shard: &Rc<LocalShard>, pages: Pages) -> Message {
    let call_id = pages.call_id;
    match shard.funclets.add_part(call_id, pages.pages, pages.more) {
        Ok(Part::More(slot)) => Message::Accept { call_id, slot },
        // The parts are applied one after the other, not joined into one copy.
        Ok(Part::Last(snapshot)) => {
            let Snapshot {
                offer,
                function,
                parts,
                permit,
            } = *snapshot;
            run(shard, &function, &offer, &parts, permit).await
        }
        Err(PartRefused::NoOffer(reason)) => Message::error(ErrorCode::NotFound, reason),
        Err(PartRefused::Bad(reason)) => Message::error(ErrorCode::BadRequest, reason),
    }
}

/// Answers FetchPages with the next part of a Done's changes.
pub fn answer_fetch(shard: &Rc<LocalShard>, call_id: u64) -> Message {
    match shard.funclets.next_part(call_id) {
        Some((pages, more)) => Message::Pages(Pages {
            call_id,
            pages,
            more,
        }),
        None => Message::error(
            ErrorCode::NotFound,
            format!("no changes of call {call_id} to fetch (expired?)"),
        ),
    }
}

/// The function the Offer names, if this node has that very module.
fn module(shard: &LocalShard, offer: &Offer) -> Option<Arc<Function>> {
    let function = shard.node.registry.get(&offer.user, &offer.function)?;
    (function.wasm_sha256 == hex::encode(offer.module_hash)).then_some(function)
}

enum RunError {
    /// The funclet trapped (or ran past its deadline): the guest traps.
    Trap(String),
    /// This node could not run it (pool full, a bad snapshot): the compute
    /// node runs it itself.
    Refused(String),
}

async fn run(
    shard: &Rc<LocalShard>,
    function: &Arc<Function>,
    offer: &Offer,
    pages: &[PageSet],
    permit: StaticPermit,
) -> Message {
    let node = &shard.node;
    node.metrics.funclets_local.inc();
    let executor = &node.executor;
    let image = match snapshot::image(executor, function).await {
        Ok(image) => image,
        Err(error) => {
            return Message::error(
                ErrorCode::Internal,
                format!("taking the module image: {error}"),
            )
        }
    };
    // No longer than the compute node waits for it (it runs the funclet
    // itself after that), nor than a call may run here.
    let mut limit = Duration::from_millis(node.config.limits.call_ms_max);
    if offer.wait_ms > 0 {
        limit = limit.min(Duration::from_millis(u64::from(offer.wait_ms)));
    }
    let deadline = Instant::now() + limit;
    let spec = CallSpec {
        id: offer.call_id as u32,
        user: offer.user.as_str().into(),
        function: offer.function.as_str().into(),
        input: Arc::from(Vec::new()),
        cmdline: String::new(),
        entry: Entry::TableIndex(offer.funclet_index),
        forbid_ndp: false,
        deadline,
        depth: 0,
    };
    let mut store = executor.store(function.clone(), spec);
    let ran = glommio::timer::timeout(deadline.saturating_duration_since(Instant::now()), async {
        Ok(run_in(&mut store, function, offer, pages, &image).await)
    })
    .await
    .unwrap_or_else(|_| Err(RunError::Trap("deadline exceeded".into())));
    let log = store.data().host_log.clone();
    if !log.is_empty() {
        tracing::debug!(call = offer.call_id, user = %offer.user, function = %offer.function, %log, "funclet log");
    }
    let outcome = match &ran {
        Ok(_) => "done",
        Err(RunError::Trap(_)) if Instant::now() >= deadline => "deadline",
        Err(RunError::Trap(_)) => "trapped",
        Err(RunError::Refused(_)) => "refused",
    };
    node.metrics
        .funclets_ended
        .with_label_values(&[outcome])
        .inc();
    match ran {
        Ok(done) => send_in_parts(shard, done, permit),
        Err(RunError::Trap(reason)) => Message::error(ErrorCode::Trap, reason),
        Err(RunError::Refused(reason)) => Message::error(ErrorCode::Internal, reason),
    }
}

/// Done as it travels: its changes beyond the first part are kept for
/// FetchPages, with the slot, and dropped (the slot freed) if not fetched
/// in time.
fn send_in_parts(shard: &Rc<LocalShard>, mut done: Done, permit: StaticPermit) -> Message {
    if done.dirty_pages.data().len() <= limits::PAGES_PART_BYTES_MAX {
        return Message::Done(done);
    }
    let mut parts: VecDeque<PageSet> =
        match snapshot::split(&done.dirty_pages, limits::PAGES_PART_BYTES_MAX) {
            Ok(parts) => parts.into(),
            Err(error) => return Message::error(ErrorCode::Internal, error.to_string()),
        };
    let Some(first) = parts.pop_front() else {
        return Message::Done(done);
    };
    done.dirty_pages = first;
    done.pages_to_follow = parts.len() as u32;
    let call_id = done.call_id;
    let serial = shard.funclets.keep_parts(call_id, parts, permit);
    let owner = shard.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(Duration::from_millis(limits::OFFER_PAGES_WAIT_MS_MAX)).await;
        owner.funclets.drop_parts(call_id, serial);
    })
    .detach();
    Message::Done(done)
}

async fn run_in(
    store: &mut Store<CallCtx>,
    function: &Function,
    offer: &Offer,
    pages: &[PageSet],
    image: &[u8],
) -> Result<Done, RunError> {
    let refused = |what: &str, e: wasmtime::Error| RunError::Refused(format!("{what}: {e}"));
    let instance = function
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| refused("instantiating", e))?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| RunError::Refused("the module exports no memory".into()))?;
    let size = memory.size(&*store);
    if u64::from(offer.memory_pages) > size {
        memory
            .grow(&mut *store, u64::from(offer.memory_pages) - size)
            .map_err(|e| refused("growing memory to the caller's size", e))?;
    }
    for part in pages {
        snapshot::apply_pages(memory.data_mut(&mut *store), part)
            .map_err(|e| refused("applying the caller's pages", e))?;
    }
    let globals = snapshot::globals_of(&function.facts, |name| {
        instance.get_global(&mut *store, name)
    })
    .map_err(|e| refused("finding globals", e))?;
    snapshot::write_globals(&mut *store, &globals, &offer.globals)
        .map_err(|e| refused("applying the caller's globals", e))?;
    let trap = |e: wasmtime::Error| RunError::Trap(describe_failure(&e));
    let func = table_func(store, &instance, offer.funclet_index)
        .map_err(|e| RunError::Trap(format!("env::__faasmndp_storageCallAndAwait: {e}")))?;
    let return_value = call_i32(&mut *store, &func, &offer.args)
        .await
        .map_err(trap)?;
    // getMmap buffers hold the object's bytes: they do not travel back.
    let skip: Vec<Range<usize>> = store
        .data()
        .maps
        .iter()
        .map(|m| m.addr as usize..m.addr as usize + m.pages as usize * WASM_PAGE_BYTES)
        .collect();
    let dirty_pages = snapshot::dirty_pages(
        memory.data(&*store),
        &Base {
            image,
            applied: pages,
        },
        &skip,
    )
    .map_err(|e| refused("collecting changed pages", e))?;
    Ok(Done {
        call_id: offer.call_id,
        return_value,
        globals: snapshot::read_globals(&mut *store, &globals),
        memory_pages: (memory.data_size(&*store) / WASM_PAGE_BYTES) as u32,
        dirty_pages,
        pages_to_follow: 0,
    })
}
