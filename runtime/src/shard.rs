//! A shard: one glommio executor pinned to one core, owning its listeners,
//! its calls in flight, the chained calls they start and its handles on the
//! object store. Shards share only [`NodeShared`] (read-mostly).
//!
//! **Architecture invariant:** a call runs on the shard that accepted it,
//! start to end, chained calls included; nothing of a shard crosses threads
//! except through `NodeShared`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{FutureExt, Shared};
use wasmtime::{bail, format_err as anyhow, Result};

use crate::budget::{ByteBudget, Quotas};
use crate::cluster::Peers;
use crate::config::Config;
use crate::exec::{CallCtx, CallResult, CallSpec, Entry, Executor, Function};
use crate::invocation::{AsyncCalls, CallIds};
use crate::limits;
use crate::metrics::{FunctionMetrics, Metrics};
use crate::objects::Objects;
use crate::registry::Registry;
use crate::slots::Slots;
use ferry_storage::Placement;

thread_local! {
    static CURRENT: RefCell<Option<Rc<LocalShard>>> = const { RefCell::new(None) };
}

/// What a chained call runs.
pub enum ChainTarget {
    /// Another function of the same user, by name.
    Named(String),
    /// The caller's own module from another entry (`chain_ptr`).
    SameModule(Entry),
}

type ChainedCall = Shared<glommio::task::JoinHandle<CallResult>>;

/// What every shard shares: immutable or internally synchronised.
pub struct NodeShared {
    pub config: Config,
    pub executor: Arc<Executor>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub async_calls: AsyncCalls,
    pub call_ids: CallIds,
    /// HTTP body bytes all shards' requests hold at once.
    pub http_buffers: Arc<ByteBudget>,
    /// Per-user quotas and what each user holds against them.
    pub quotas: Arc<Quotas>,
    /// Set once the start-up uploads are done; `/healthz` answers 200 after.
    pub ready: AtomicBool,
    /// Which storage node holds an object (None: this node alone).
    pub placement: Option<Placement>,
    /// This node's name hashed to 32 bits: the high half of the call ids
    /// its offers carry, so offers from two compute nodes never share one.
    pub name_tag: u32,
    /// wasmtime-wasi drives some WASI calls (clocks, sleeps) on tokio; each
    /// shard enters this one small runtime so those calls find it.
    pub(crate) tokio: tokio::runtime::Runtime,
}

/// A shard's handles: objects and state as its calls reach them, and the
/// node's own state store (stores.rs makes them).
pub struct ShardStores {
    pub objects: Objects,
    pub state: Objects,
    pub state_here: Objects,
}

pub struct LocalShard {
    pub id: usize,
    pub node: Arc<NodeShared>,
    objects: Objects,
    state: Objects,
    /// The node's own state store, which the transport's state requests
    /// reach (`state` may be another node's).
    state_here: Objects,
    /// This shard's lookups of the node's placement (with its own cache).
    pub placement: Option<ferry_storage::LocalPlacement>,
    /// The other nodes of the cluster (None for a node started alone).
    pub peers: Option<Peers>,
    /// Slots for funclets other nodes offload to this one.
    pub funclets: Slots,
    in_flight: Cell<usize>,
    metrics: RefCell<HashMap<String, HashMap<String, Rc<FunctionMetrics>>>>,
    chained: RefCell<HashMap<u32, ChainedCall>>,
}

/// A call's slot on its shard; the slot is released on drop.
pub struct Admission {
    shard: Rc<LocalShard>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shard.in_flight.set(self.shard.in_flight.get() - 1);
        self.shard.node.metrics.calls_in_flight.dec();
    }
}

impl LocalShard {
    /// Creates the shard's state and makes it this thread's current shard.
    pub fn install(
        id: usize,
        node: Arc<NodeShared>,
        stores: ShardStores,
    ) -> anyhow::Result<Rc<LocalShard>> {
        let ShardStores {
            objects,
            state,
            state_here,
        } = stores;
        let placement = node.placement.as_ref().map(|p| p.local());
        let peers = Peers::new(&node.config)?;
        let limits = &node.config.limits;
        let funclets = Slots::new(limits.offload_slots_max, limits.offload_queue_max);
        let shard = Rc::new(LocalShard {
            id,
            node,
            objects,
            state,
            state_here,
            placement,
            peers,
            funclets,
            in_flight: Cell::new(0),
            metrics: RefCell::new(HashMap::new()),
            chained: RefCell::new(HashMap::new()),
        });
        CURRENT.with(|current| *current.borrow_mut() = Some(shard.clone()));
        Ok(shard)
    }

    /// The shard of this thread; host functions run only on shards.
    pub fn current(import: &str) -> Result<Rc<LocalShard>> {
        CURRENT
            .with(|current| current.borrow().clone())
            .ok_or_else(|| anyhow!("env::{import}: called outside a shard"))
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn state(&self) -> &Objects {
        &self.state
    }

    /// The node's own state store (what the transport's state requests
    /// read and change).
    pub fn state_here(&self) -> &Objects {
        &self.state_here
    }

    /// A slot for one more call, or None when the shard is at its limit.
    pub fn try_admit(self: &Rc<Self>) -> Option<Admission> {
        if self.in_flight.get() >= self.node.config.limits.calls_in_flight_max {
            return None;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        self.node.metrics.calls_in_flight.inc();
        Some(Admission {
            shard: self.clone(),
        })
    }

    /// Runs a call and records its outcome.
    pub async fn invoke(&self, function: Arc<Function>, spec: CallSpec) -> CallResult {
        let user = spec.user.clone();
        let name = spec.function.clone();
        let id = spec.id;
        // DEBUG, so the default filter keeps the call path free of it.
        let span = tracing::debug_span!(
            "call",
            call = id,
            %user,
            function = %name,
            shard = self.id,
            forbid_ndp = spec.forbid_ndp,
            return_code = tracing::field::Empty,
            funclets_offloaded = tracing::field::Empty,
            funclets_here = tracing::field::Empty,
            duration_us = tracing::field::Empty,
        );
        let result = {
            use tracing::Instrument;
            self.node
                .executor
                .run(function, spec)
                .instrument(span.clone())
                .await
        };
        self.release_chained(&result.chained);
        span.record("return_code", result.return_code);
        span.record("funclets_offloaded", result.funclets_offloaded);
        span.record("funclets_here", result.funclets_here);
        span.record("duration_us", result.duration.as_micros() as u64);
        let metrics = self.function_metrics(&user, &name);
        metrics
            .outcome(result.failure.is_some(), result.return_code)
            .inc();
        metrics.seconds.observe(result.duration.as_secs_f64());
        if !result.log.is_empty() {
            tracing::debug!(call = id, %user, function = %name, log = %result.log, "call log");
        }
        result
    }

    /// This shard's handles on a function's metrics (looked up by borrowed
    /// names; one entry per function called here, at most the registry's).
    fn function_metrics(&self, user: &str, name: &str) -> Rc<FunctionMetrics> {
        if let Some(found) = self
            .metrics
            .borrow()
            .get(user)
            .and_then(|fns| fns.get(name))
        {
            return found.clone();
        }
        let made = Rc::new(self.node.metrics.function(user, name));
        self.metrics
            .borrow_mut()
            .entry(user.to_owned())
            .or_default()
            .insert(name.to_owned(), made.clone());
        made
    }

    /// Starts a chained call on this shard; its result is kept until the
    /// parent call ends.
    pub fn start_chained(
        &self,
        parent: &CallCtx,
        target: ChainTarget,
        input: Vec<u8>,
    ) -> Result<u32> {
        let depth = parent.spec.depth + 1;
        if depth > limits::CHAIN_DEPTH_MAX {
            bail!(
                "chained calls nest deeper than {} levels",
                limits::CHAIN_DEPTH_MAX
            );
        }
        if parent.chained.len() >= limits::CHAINED_CALLS_MAX {
            bail!(
                "a call may chain at most {} calls",
                limits::CHAINED_CALLS_MAX
            );
        }
        let (function, entry) = match target {
            ChainTarget::Named(name) => (
                self.node.registry.get(&parent.spec.user, &name).ok_or(name),
                Entry::Start,
            ),
            ChainTarget::SameModule(entry) => (Ok(parent.function.clone()), entry),
        };
        let id = self.node.call_ids.next();
        let spec = CallSpec {
            id,
            user: parent.spec.user.clone(),
            function: match &function {
                Ok(f) => f.name.as_str().into(),
                Err(name) => name.as_str().into(),
            },
            input: input.into(),
            cmdline: String::new(),
            entry,
            forbid_ndp: parent.spec.forbid_ndp,
            deadline: parent.spec.deadline,
            depth,
        };
        let shard = LocalShard::current("__faasm_chain")?;
        let handle = glommio::spawn_local(async move {
            match function {
                Ok(function) => shard.invoke(function, spec).await,
                Err(name) => {
                    CallResult::failed(format!("No function {}/{name}", spec.user), Instant::now())
                }
            }
        })
        .detach();
        self.chained.borrow_mut().insert(id, handle.shared());
        Ok(id)
    }

    pub async fn await_chained(&self, id: u32) -> Result<CallResult> {
        let call = self
            .chained
            .borrow()
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow!("no chained call {id}"))?;
        call.await
            .ok_or_else(|| anyhow!("chained call {id} was cancelled"))
    }

    /// Forgets a finished parent's chained calls (running ones go on).
    fn release_chained(&self, ids: &[u32]) {
        let mut chained = self.chained.borrow_mut();
        for id in ids {
            chained.remove(id);
        }
    }
}
