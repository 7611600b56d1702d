//! Funclets: the part of a call that `storageCallAndAwait*` runs near an
//! object (ABI.md, "What near the object means"; DESIGN.md, "Offload").
//!
//! The compute side lives here: decide where a funclet runs and, when that
//! is another node, ship the caller's snapshot there and apply what comes
//! back. `serve.rs` is the storage side; `snapshot.rs` what travels.
//!
//! ```text
//! Offer{snapshot inline} -------------------------> run, Done | Decline
//! Offer{no pages} -> Accept -> Pages{snapshot} ---> run, Done
//!   a snapshot over one part: Pages{more} -> Accept, ..., Pages{last}
//!   changes over one part: Done{first part, n to follow},
//!                          then n x (FetchPages -> Pages)
//! ```
//! Until Done is applied nothing of the caller changes, so a Decline, a
//! dead peer or a timeout runs the funclet here from the untouched state.

pub mod serve;
pub mod snapshot;

use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use wasmtime::{format_err as anyhow, Caller};

use crate::config::PeerNode;
use crate::exec::{call_i32, lookup_table, rewrite, CallCtx};
use crate::limits;
use crate::objects::Objects;
use crate::peers::{module_hash, push_module};
use crate::shard::LocalShard;
use ferry_storage::ObjectStore;
use ferry_transport::{ErrorCode, Message, Offer, Pages};
use snapshot::{Base, WASM_PAGE_BYTES};

/// One `storageCallAndAwait*`: table element `index` called with `args`,
/// near object `key` of the calling user.
pub struct Funclet<'a> {
    pub key: &'a [u8],
    pub index: u32,
    pub args: &'a [i32],
}

/// Why a funclet ran on this node.
#[derive(Debug, Clone, Copy)]
pub enum Here {
    /// The call asked for `forbid_ndp`: the baseline. (The order is that
    /// of `Metrics::funclets_here_by_reason`.)
    ForbidNdp,
    /// This node holds the object (or reads it as directly as any node).
    HoldsObject,
    /// The storage node declined, failed or could not be reached.
    Fallback,
}

const IMPORT: &str = "__faasmndp_storageCallAndAwait";

/// Runs the funclet where it belongs and returns its result.
pub async fn run(caller: &mut Caller<'_, CallCtx>, funclet: Funclet<'_>) -> wasmtime::Result<i32> {
    let shard = LocalShard::current(IMPORT)?;
    let here = match site(
        &shard,
        &caller.data().spec.user,
        caller.data().spec.forbid_ndp,
        funclet.key,
    )
    .await
    {
        Site::Here(why) => why,
        Site::Peer(peer) => {
            let span = tracing::debug_span!(
                "offload",
                call = caller.data().spec.id,
                peer = %peer.name,
                sent_bytes = tracing::field::Empty,
                received_bytes = tracing::field::Empty,
                rtt_us = tracing::field::Empty,
            );
            match offload(caller, &shard, &peer, &funclet)
                .instrument(span)
                .await
            {
                Ok(value) => {
                    caller.data_mut().funclets_offloaded += 1;
                    return Ok(value);
                }
                Err(Failure::Trap(reason)) => {
                    shard
                        .node
                        .metrics
                        .offloads
                        .with_label_values(&["trapped"])
                        .inc();
                    return Err(anyhow!(
                        "env::{IMPORT}: the funclet trapped on {}: {reason}",
                        peer.name
                    ));
                }
                Err(Failure::Declined(reason)) => {
                    shard
                        .node
                        .metrics
                        .offloads
                        .with_label_values(&["declined"])
                        .inc();
                    tracing::debug!(peer = %peer.name, %reason, "offload declined; running the funclet here");
                }
                Err(Failure::Failed(reason)) => {
                    shard
                        .node
                        .metrics
                        .offloads
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::debug!(peer = %peer.name, %reason, "offload failed; running the funclet here");
                }
            }
            Here::Fallback
        }
    };
    run_here(caller, &shard, &funclet, here).await
}

enum Site {
    Here(Here),
    Peer(PeerNode),
}

/// `forbid_ndp`: here, reading objects over the network. Otherwise the
/// storage node that placement names: on the embedded store the node that
/// keeps the object, on Ceph the node on the host of the object's primary
/// OSD. Here when that is this node, when this node keeps its own objects
/// (an embedded store's storage node) and when placement cannot answer (the
/// funclet's own reads will report what is wrong).
async fn site(shard: &LocalShard, user: &str, forbid_ndp: bool, key: &[u8]) -> Site {
    if forbid_ndp {
        return Site::Here(Here::ForbidNdp);
    }
    let named = match (shard.objects(), &shard.placement) {
        (Objects::Remote(remote), _) => remote.node_for(user, key).await.ok().map(|n| &*n.name),
        // Every node can read RADOS; the primary OSD's host reads it there.
        (Objects::Local(ObjectStore::Rados(_)), Some(placement)) => {
            placement.locate(user, key).await.ok().map(|l| l.node)
        }
        (Objects::Local(_), _) => return Site::Here(Here::HoldsObject),
    };
    let Some(name) = named else {
        return Site::Here(Here::Fallback);
    };
    if name == shard.node.config.name {
        return Site::Here(Here::HoldsObject);
    }
    match shard.peers.as_ref().and_then(|peers| peers.by_name(name)) {
        Some(peer) => Site::Peer(peer.clone()),
        None => Site::Here(Here::Fallback),
    }
}

/// Runs the funclet in the caller's own instance: memory and globals are
/// exactly as it leaves them, as the ABI requires of an offloaded run.
async fn run_here(
    caller: &mut Caller<'_, CallCtx>,
    shard: &Rc<LocalShard>,
    funclet: &Funclet<'_>,
    here: Here,
) -> wasmtime::Result<i32> {
    let table = caller
        .get_export(rewrite::TABLE_EXPORT)
        .and_then(|e| e.into_table())
        .ok_or_else(|| anyhow!("env::{IMPORT}: the module has no function table"))?;
    let func = lookup_table(&mut *caller, &table, funclet.index)
        .map_err(|e| anyhow!("env::{IMPORT}: {e}"))?;
    caller.data_mut().funclets_here += 1;
    shard.node.metrics.funclets_local.inc();
    shard.node.metrics.funclets_here_by_reason[here as usize].inc();
    call_i32(&mut *caller, &func, funclet.args).await
}

enum Failure {
    /// The storage node ran the funclet and it trapped: the guest traps.
    Trap(String),
    /// The storage node is busy: run here.
    Declined(String),
    /// Nothing came back that can be applied: run here.
    Failed(String),
}

fn failed(what: &str) -> impl FnOnce(String) -> Failure + '_ {
    move |reason| Failure::Failed(format!("{what}: {reason}"))
}

/// Ships the snapshot to `peer`, waits for Done and applies it.
async fn offload(
    caller: &mut Caller<'_, CallCtx>,
    shard: &Rc<LocalShard>,
    peer: &PeerNode,
    funclet: &Funclet<'_>,
) -> Result<i32, Failure> {
    let started = Instant::now();
    let node = &shard.node;
    let peers = shard
        .peers
        .as_ref()
        .ok_or_else(|| Failure::Failed("this node has no peers".into()))?;
    let function = caller.data().function.clone();
    let image = snapshot::image(&node.executor, &function)
        .await
        .map_err(|e| Failure::Failed(format!("taking the module image: {e}")))?;
    let memory = crate::exec::memory(caller, IMPORT).map_err(|e| Failure::Failed(e.to_string()))?;
    let globals = snapshot::globals_of(&function.facts, |name| {
        caller.get_export(name).and_then(|e| e.into_global())
    })
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let pages = snapshot::dirty_pages(
        memory.data(&*caller),
        &Base {
            image: &image,
            applied: &[],
        },
        &[],
    )
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let sent_bytes = pages.data().len();
    let inline = sent_bytes <= limits::OFFER_INLINE_BYTES_MAX;
    let global_values = snapshot::read_globals(&mut *caller, &globals);
    let spec = &caller.data().spec;
    let call_id = (u64::from(node.name_tag) << 32) | u64::from(spec.id);
    let wait = Duration::from_millis(node.config.limits.offload_ms_max)
        .min(spec.deadline.saturating_duration_since(Instant::now()));
    let offer = Offer {
        call_id,
        user: spec.user.to_string(),
        function: function.name.clone(),
        module_hash: module_hash(&function).map_err(|e| Failure::Failed(e.to_string()))?,
        key: funclet.key.to_vec(),
        funclet_index: funclet.index,
        args: funclet.args.to_vec(),
        memory_pages: (memory.data_size(&*caller) / WASM_PAGE_BYTES) as u32,
        globals: global_values,
        inline_pages: inline.then(|| pages.clone()),
        // The storage node stops the funclet once this node stops waiting.
        wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1),
    };
    let deadline = Instant::now() + wait;
    let left = || deadline.saturating_duration_since(Instant::now());
    let connection = peers
        .pool
        .peer(peer.transport)
        .map_err(|e| Failure::Failed(e.to_string()))?
        .connection(deadline)
        .await
        .map_err(|e| failed("connecting")(e.to_string()))?;
    let offer = Message::Offer(offer);
    let mut reply = connection
        .request(&offer, left())
        .await
        .map_err(|e| failed("offering")(e.to_string()))?;
    if let Message::Error {
        code: ErrorCode::NotFound,
        ..
    } = reply
    {
        // The storage node lacks this module: send it, then offer again.
        push_module(shard, peer.transport, &function)
            .await
            .map_err(|e| Failure::Failed(format!("{e:#}")))?;
        reply = connection
            .request(&offer, left())
            .await
            .map_err(|e| failed("offering")(e.to_string()))?;
    }
    if let Message::Accept { .. } = reply {
        if inline {
            return Err(Failure::Failed(
                "accepted an Offer that carried its pages".into(),
            ));
        }
        let parts = snapshot::split(&pages, limits::PAGES_PART_BYTES_MAX)
            .map_err(|e| Failure::Failed(e.to_string()))?;
        let last = parts.len() - 1;
        for (n, part) in parts.into_iter().enumerate() {
            let more = n < last;
            let message = Message::Pages(Pages {
                call_id,
                pages: part,
                more,
            });
            reply = connection
                .request(&message, left())
                .await
                .map_err(|e| failed("sending pages")(e.to_string()))?;
            if more && !matches!(reply, Message::Accept { .. }) {
                break;
            }
        }
    }
    let done = match reply {
        Message::Done(done) if done.call_id == call_id => done,
        Message::Decline { reason, .. } => return Err(Failure::Declined(reason)),
        Message::Error {
            code: ErrorCode::Trap,
            message,
        } => return Err(Failure::Trap(message)),
        Message::Error { code, message } => {
            return Err(Failure::Failed(format!("{code:?}: {message}")))
        }
        other => return Err(Failure::Failed(format!("unexpected {:?}", other.kind()))),
    };
    // The rest of the changes, all fetched before any is applied, so a
    // peer lost on the way still leaves the caller untouched.
    let mut changes = vec![done.dirty_pages.clone()];
    for _ in 0..done.pages_to_follow {
        let fetch = Message::FetchPages { call_id };
        let part = connection
            .request(&fetch, left())
            .await
            .map_err(|e| failed("fetching changed pages")(e.to_string()))?;
        match part {
            Message::Pages(part) if part.call_id == call_id => changes.push(part.pages),
            Message::Error { code, message } => {
                return Err(Failure::Failed(format!(
                    "fetching changed pages: {code:?}: {message}"
                )))
            }
            other => {
                return Err(Failure::Failed(format!(
                    "fetching changed pages: unexpected {:?}",
                    other.kind()
                )))
            }
        }
    }
    // From here on the caller's state changes: a failure is the call's.
    let received_bytes: usize = changes.iter().map(|part| part.data().len()).sum();
    let mut apply = || -> wasmtime::Result<i32> {
        let current = memory.size(&*caller);
        if u64::from(done.memory_pages) > current {
            memory.grow(&mut *caller, u64::from(done.memory_pages) - current)?;
        }
        for part in &changes {
            snapshot::apply_pages(memory.data_mut(&mut *caller), part)?;
        }
        snapshot::write_globals(&mut *caller, &globals, &done.globals)?;
        Ok(done.return_value)
    };
    let value =
        apply().map_err(|e| Failure::Trap(format!("applying the funclet's changes: {e}")))?;
    let rtt = started.elapsed();
    let metrics = &node.metrics;
    metrics.offloads.with_label_values(&["accepted"]).inc();
    metrics
        .offload_bytes
        .with_label_values(&["sent"])
        .inc_by(sent_bytes as u64);
    metrics
        .offload_bytes
        .with_label_values(&["received"])
        .inc_by(received_bytes as u64);
    metrics.offload_seconds.observe(rtt.as_secs_f64());
    let span = tracing::Span::current();
    span.record("sent_bytes", sent_bytes);
    span.record("received_bytes", received_bytes);
    span.record("rtt_us", rtt.as_micros() as u64);
    Ok(value)
}
