//! The wasm executor: one wasmtime [`Engine`] per node (shared read-only by
//! every shard), the pooling allocator with copy-on-write memory images, and
//! the life of one call in a fresh [`Store`].
//!
//! **Architecture invariant:** a call never compiles. Modules are compiled
//! once at upload (on a blocking thread) and loaded from their artifact by
//! mmap; a call only instantiates an `InstancePre` from the pool.

pub mod call_state;
pub mod rewrite;
pub(crate) mod sandbox;
pub mod ticker;
pub mod zygote;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::error::Context;
use wasmtime::{bail, format_err as anyhow, Result};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline, Val,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

pub use rewrite::ModuleFacts;

use crate::config::Limits;
use crate::limits;

/// A function as uploaded, compiled and ready to instantiate.
pub struct Function {
    pub user: String,
    pub name: String,
    /// sha256 of the wasm as uploaded (what `GET /f/...` returns).
    pub wasm_sha256: String,
    pub module: Module,
    pub pre: InstancePre<CallCtx>,
    pub facts: ModuleFacts,
    /// Linear memory of a fresh instance (the zygote image), taken the
    /// first time a funclet of this module is offloaded or run for
    /// another node: the base its snapshots are measured against.
    pub image: std::sync::OnceLock<Arc<[u8]>>,
}

/// Where a call starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `_start`, which runs `main(argc, argv)`.
    Start,
    /// Table element `n`, type `() -> i32` (`func_ptr`, `chain_ptr`).
    TableIndex(u32),
}

/// Everything one call needs, as the invocation layer hands it over.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub id: u32,
    pub user: Arc<str>,
    pub function: Arc<str>,
    pub input: Arc<[u8]>,
    pub cmdline: String,
    pub entry: Entry,
    pub forbid_ndp: bool,
    pub deadline: Instant,
    /// 0 for a call from outside; parent's depth + 1 for a chained call.
    pub depth: u32,
}

/// How a call ended.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub return_code: i32,
    pub output: Vec<u8>,
    /// Whether the guest set an output (an empty one counts).
    pub output_set: bool,
    /// Captured stdout then stderr.
    pub log: String,
    /// Why the call failed when it did not return normally (trap, deadline,
    /// memory cap, a host call's refusal).
    pub failure: Option<String>,
    pub duration: Duration,
    /// Where this call's funclets ran: on other nodes, and on this one.
    pub funclets_offloaded: u32,
    pub funclets_here: u32,
    /// Ids of the calls this call chained: the shard that ran it forgets
    /// them once the call is over.
    pub chained: Vec<u32>,
}

impl CallResult {
    pub fn failed(reason: String, started: Instant) -> CallResult {
        CallResult {
            return_code: 1,
            output: Vec::new(),
            output_set: false,
            log: String::new(),
            failure: Some(reason),
            duration: started.elapsed(),
            funclets_offloaded: 0,
            funclets_here: 0,
            chained: Vec::new(),
        }
    }
}

/// A region of linear memory handed out by `getMmap`, reusable after `unmap`.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub addr: u32,
    pub pages: u32,
    pub free: bool,
}

/// Linear memory held by every call of the node, against its budget.
#[derive(Debug)]
pub struct NodeMemory {
    pub held: AtomicU64,
    pub max_bytes: u64,
}

/// The store data of one call: what host functions reach through `Caller`.
pub struct CallCtx {
    pub wasi: WasiP1Ctx,
    pub spec: CallSpec,
    pub function: Arc<Function>,
    pub output: Option<Vec<u8>>,
    pub memory_bytes_max: u64,
    memory_share: MemoryShare,
    pub output_bytes_max: usize,
    log_bytes_max: usize,
    /// Faasm's `CAPTURE_STDOUT`: stdout goes before the output.
    capture_stdout: bool,
    pub maps: Vec<Mapping>,
    /// Ids of the calls this call chained, for await and for clean-up.
    pub chained: Vec<u32>,
    /// Lines for the call's log written by host functions (e.g. why a put
    /// failed); use [`CallCtx::log_host`], which keeps it within the log cap.
    pub host_log: String,
    /// Funclets of this call run on other nodes / on this one.
    pub funclets_offloaded: u32,
    pub funclets_here: u32,
    /// Keeps the epoch ticker ticking while this store lives.
    _ticking: ticker::Ticking,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// The call's own directories, removed when the call's store goes.
    pub(crate) dirs: Option<sandbox::CallDirs>,
    /// Bytes the call wrote to files, and its cap (host/files.rs).
    pub(crate) file_bytes_written: u64,
    pub(crate) file_bytes_max: u64,
    /// Why the call's environment could not be set up; the call fails with it.
    setup_error: Option<String>,
    /// The state values this call mapped and the state locks it holds.
    pub state: call_state::CallState,
}

impl CallCtx {
    /// Appends a line to the call's log; past the log cap, lines are dropped
    /// (a guest looping on a failing host call must not grow it forever).
    pub fn log_host(&mut self, line: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        if self.host_log.len() < self.log_bytes_max {
            let _ = self.host_log.write_fmt(line);
            self.host_log.push('\n');
        }
    }
}

/// One call's share of the node's memory budget, given back when the
/// call's store goes.
struct MemoryShare {
    held_bytes: u64,
    node: Arc<NodeMemory>,
}

impl Drop for MemoryShare {
    fn drop(&mut self) {
        self.node.held.fetch_sub(self.held_bytes, Ordering::Relaxed);
    }
}

impl ResourceLimiter for CallCtx {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired as u64 > self.memory_bytes_max {
            bail!(
                "memory cap exceeded: growing linear memory from {current} to {desired} bytes, cap is {} bytes",
                self.memory_bytes_max
            );
        }
        // The node's budget, shared by every call on every shard.
        let more = (desired as u64).saturating_sub(self.memory_share.held_bytes);
        let budget = &self.memory_share.node;
        let held = budget.held.fetch_add(more, Ordering::Relaxed) + more;
        if held > budget.max_bytes {
            budget.held.fetch_sub(more, Ordering::Relaxed);
            bail!(
                "node memory budget exhausted: growing linear memory to {desired} bytes would bring the node's calls to {held} bytes, budget is {} bytes",
                budget.max_bytes
            );
        }
        self.memory_share.held_bytes += more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= limits::TABLE_ELEMENTS_MAX)
    }
}

/// Work on a call's store once its entry returned normally.
pub type AfterCall =
    for<'a> fn(
        &'a mut Store<CallCtx>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>;

/// The node's executor: engine, base linker and limits.
pub struct Executor {
    pub engine: Engine,
    linker: Linker<CallCtx>,
    /// The calls' filesystem (sandbox.rs); None: no preopens at all.
    sandbox: Option<sandbox::Sandbox>,
    /// Faasm state's per-key locks, node-wide (host/state.rs).
    state_locks: Arc<call_state::StateLocks>,
    /// Work after a call's entry returned normally, before its result.
    after_call: Option<AfterCall>,
    pub limits: Limits,
    /// Linear memory every call holds, against the node's budget.
    pub memory: Arc<NodeMemory>,
    /// Advances the engine's epoch while any store is alive.
    pub ticker: Arc<ticker::EpochTicker>,
}

impl Executor {
    /// Builds the engine with a pool sized for `shards` shards; `imports`
    /// links the host functions (Faasm's ABI, `crate::host`) beside WASI.
    ///
    /// Each pooled memory reserves 4 GiB of address space plus guards (so
    /// bounds checks compile away): 2 shards x 96 slots is ~0.8 TiB of the
    /// 128 TiB user address space, reserved not committed.
    pub fn new(
        limits: Limits,
        shards: usize,
        imports: impl FnOnce(&mut Linker<CallCtx>) -> Result<()>,
    ) -> Result<Executor> {
        // Calls from outside, funclets run for other nodes, and headroom for
        // chained calls and uploads.
        let slots_per_shard = (limits.calls_in_flight_max + limits.offload_slots_max) as u32
            + limits::INSTANCES_HEADROOM_PER_SHARD;
        let slots = slots_per_shard.saturating_mul(shards as u32);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(limits::TABLE_ELEMENTS_MAX)
            .max_memory_size(limits.memory_bytes_max as usize);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .memory_init_cow(true)
            .async_stack_size(limits::ASYNC_STACK_BYTES)
            .max_wasm_stack(limits::WASM_STACK_BYTES_MAX)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).context("creating the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx: &mut CallCtx| &mut ctx.wasi)
            .context("linking WASI preview 1")?;
        imports(&mut linker).context("linking the Faasm imports")?;
        Ok(Executor {
            ticker: ticker::EpochTicker::new(engine.clone())
                .context("the epoch ticker's counter")?,
            engine,
            linker,
            sandbox: None,
            state_locks: Arc::default(),
            after_call: None,
            memory: Arc::new(NodeMemory {
                held: AtomicU64::new(0),
                max_bytes: limits.node_memory_bytes_max,
            }),
            limits,
        })
    }

    /// Runs `after` when a call's entry has returned normally (or exited
    /// through `proc_exit`); an error from it fails the call (host/files.rs
    /// writes shared files back).
    pub fn with_after_call(mut self, after: AfterCall) -> Executor {
        self.after_call = Some(after);
        self
    }

    /// Faasm state's per-key locks, node-wide.
    pub fn state_locks(&self) -> &call_state::StateLocks {
        &self.state_locks
    }

    /// Gives every call the sandboxed filesystem kept under `dir`.
    pub fn with_sandbox(mut self, dir: &std::path::Path) -> anyhow::Result<Executor> {
        self.sandbox = Some(sandbox::Sandbox::open(dir)?);
        Ok(self)
    }

    /// Compiles a module. Slow (Cranelift): call it on a blocking thread.
    pub fn compile(&self, wasm: &[u8]) -> Result<Module> {
        Module::new(&self.engine, wasm).context("compiling the module")
    }

    /// Links a module: the host's imports, and every other import a trap
    /// that names it, so no module fails to load for a name it never calls.
    pub fn prepare(&self, module: &Module) -> Result<InstancePre<CallCtx>> {
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(module)
            .context("linking unknown imports")?;
        linker.instantiate_pre(module).context("linking the module")
    }

    /// A fresh store for one call, with limits, WASI and the deadline set.
    pub fn store(&self, function: Arc<Function>, spec: CallSpec) -> Store<CallCtx> {
        let stdout = MemoryOutputPipe::new(self.limits.log_bytes_max);
        let stderr = MemoryOutputPipe::new(self.limits.log_bytes_max);
        // Faasm's argv: the module's file name, then the cmdline's words.
        let mut args = vec!["function.wasm".to_owned()];
        args.extend(
            spec.cmdline
                .split(' ')
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
        );
        // Faasm's environment: its variables, stdio as terminals, its
        // filesystem.
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&args)
            .envs(&sandbox::FAASM_ENV)
            .stdout(sandbox::Terminal(stdout.clone()))
            .stderr(sandbox::Terminal(stderr.clone()));
        let sandbox = self
            .sandbox
            .as_ref()
            .filter(|_| sandbox::uses_files(&function.module));
        let (dirs, setup_error) = match sandbox {
            None => (None, None),
            Some(sandbox) => match sandbox.preopen(&spec.user, &mut builder) {
                Ok(dirs) => (Some(dirs), None),
                Err(error) => (
                    None,
                    Some(format!("setting up the call's filesystem: {error:#}")),
                ),
            },
        };
        let wasi = builder.build_p1();
        let deadline = spec.deadline;
        let ctx = CallCtx {
            wasi,
            spec,
            function,
            output: None,
            memory_bytes_max: self.limits.memory_bytes_max,
            memory_share: MemoryShare {
                held_bytes: 0,
                node: self.memory.clone(),
            },
            output_bytes_max: self.limits.output_bytes_max,
            log_bytes_max: self.limits.log_bytes_max,
            capture_stdout: self.limits.capture_stdout,
            maps: Vec::new(),
            chained: Vec::new(),
            host_log: String::new(),
            funclets_offloaded: 0,
            funclets_here: 0,
            _ticking: self.ticker.ticking(),
            stdout,
            stderr,
            dirs,
            file_bytes_written: 0,
            file_bytes_max: self.limits.file_bytes_max,
            state: call_state::CallState::new(self.state_locks.clone()),
            setup_error,
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|ctx| ctx);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(anyhow!("deadline exceeded"))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs one call to completion: instantiate, run the entry, collect
    /// output and log. Never fails: every failure is a [`CallResult`].
    pub async fn run(&self, function: Arc<Function>, spec: CallSpec) -> CallResult {
        let started = Instant::now();
        let entry = spec.entry;
        let deadline = spec.deadline;
        let mut store = self.store(function.clone(), spec);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let run = run_entry(&mut store, &function, entry);
        // The epoch callback stops a guest that computes; this timer also
        // stops one that waits in a host call.
        let outcome = match glommio::timer::timeout(remaining, async { Ok(run.await) }).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow!("deadline exceeded")),
        };
        // A call ends normally by returning or through `proc_exit`.
        let normal = match &outcome {
            Ok(_) => true,
            Err(error) => error.downcast_ref::<wasmtime_wasi::I32Exit>().is_some(),
        };
        let outcome = match self.after_call {
            Some(after) if normal => match after(&mut store).await {
                Ok(()) => outcome,
                Err(error) => Err(error),
            },
            _ => outcome,
        };
        finish(store, outcome, started)
    }
}

async fn run_entry(store: &mut Store<CallCtx>, function: &Function, entry: Entry) -> Result<i32> {
    if let Some(error) = store.data().setup_error.clone() {
        bail!("{error}");
    }
    let instance = function
        .pre
        .instantiate_async(&mut *store)
        .await
        .context("instantiating")?;
    match entry {
        Entry::Start => {
            let start = instance
                .get_typed_func::<(), ()>(&mut *store, "_start")
                .context("the module has no `_start` export of type () -> ()")?;
            start.call_async(&mut *store, ()).await?;
            if function.facts.exports_ctors {
                run_exit(&mut *store, &instance).await?;
            }
            Ok(0)
        }
        Entry::TableIndex(index) => {
            let func = table_func(&mut *store, &instance, index)?;
            call_i32(&mut *store, &func, &[]).await
        }
    }
}

/// The exit-time work `_start` skipped (exit.rs): wasi-libc's `exit(0)`
/// runs the atexit handlers and flushes stdio, then ends the call through
/// `proc_exit(0)`, which is return code 0. A module without a C `exit` has
/// none of that work to do.
async fn run_exit(store: &mut Store<CallCtx>, instance: &wasmtime::Instance) -> Result<()> {
    let Some(exit) = instance.get_func(&mut *store, rewrite::exit::EXIT_EXPORT) else {
        return Ok(());
    };
    let exit = exit
        .typed::<i32, ()>(&*store)
        .context("the module's `exit` must have type (i32) -> ()")?;
    exit.call_async(&mut *store, 0).await
}

/// Table element `index` of an instance, through the export the rewrite added.
pub fn table_func(
    store: &mut Store<CallCtx>,
    instance: &wasmtime::Instance,
    index: u32,
) -> Result<wasmtime::Func> {
    let table = instance
        .get_table(&mut *store, rewrite::TABLE_EXPORT)
        .ok_or_else(|| anyhow!("the module has no function table"))?;
    lookup_table(store, &table, index)
}

pub fn lookup_table(
    mut store: impl wasmtime::AsContextMut,
    table: &wasmtime::Table,
    index: u32,
) -> Result<wasmtime::Func> {
    let size = table.size(&store);
    let element = table.get(&mut store, u64::from(index)).ok_or_else(|| {
        anyhow!("function pointer {index} is outside the table of {size} elements")
    })?;
    element
        .as_func()
        .flatten()
        .copied()
        .ok_or_else(|| anyhow!("function pointer {index} is a null table element"))
}

/// Calls `func` with i32 arguments, checking its type is `(i32 * n) -> i32`.
pub async fn call_i32(
    mut store: impl wasmtime::AsContextMut<Data = CallCtx>,
    func: &wasmtime::Func,
    args: &[i32],
) -> Result<i32> {
    let ty = func.ty(&store);
    let params_ok =
        ty.params().len() == args.len() && ty.params().all(|p| matches!(p, wasmtime::ValType::I32));
    let results: Vec<_> = ty.results().collect();
    if !params_ok || results.len() != 1 || !matches!(results[0], wasmtime::ValType::I32) {
        bail!(
            "function pointer has type {ty:?}; expected {} i32 parameter(s) and an i32 result",
            args.len()
        );
    }
    let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
    let mut out = [Val::I32(0)];
    func.call_async(&mut store, &params, &mut out).await?;
    match out[0] {
        Val::I32(v) => Ok(v),
        _ => Err(anyhow!("function pointer returned a non-i32 value")),
    }
}

fn finish(store: Store<CallCtx>, outcome: Result<i32>, started: Instant) -> CallResult {
    let ctx = store.into_data();
    let mut log = String::from_utf8_lossy(&ctx.stdout.contents()).into_owned();
    log.push_str(&String::from_utf8_lossy(&ctx.stderr.contents()));
    log.push_str(&ctx.host_log);
    let (return_code, failure) = match outcome {
        Ok(code) => (code, None),
        Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => (exit.0, None),
            None => (1, Some(describe_failure(&error))),
        },
    };
    if let Some(reason) = &failure {
        log.push_str(reason);
        log.push('\n');
    }
    let mut output_set = ctx.output.is_some();
    let mut output = ctx.output.unwrap_or_default();
    let stdout = ctx.stdout.contents();
    if ctx.capture_stdout && !stdout.is_empty() {
        // As Faasm: stdout, "\n", then the output, or for a failed call
        // the text it would have answered.
        let tail = if output_set || return_code == 0 {
            output
        } else {
            format!("Call failed (return value={return_code})").into_bytes()
        };
        output = [&stdout[..], b"\n", &tail[..]].concat();
        output_set = true;
    }
    CallResult {
        return_code,
        output,
        output_set,
        log,
        failure,
        duration: started.elapsed(),
        funclets_offloaded: ctx.funclets_offloaded,
        funclets_here: ctx.funclets_here,
        chained: ctx.chained,
    }
}

/// The guest's linear memory (exported as `memory` by every toolchain),
/// for a host function named `import`.
pub fn memory(
    caller: &mut wasmtime::Caller<'_, CallCtx>,
    import: &str,
) -> Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| anyhow!("env::{import}: the module exports no memory"))
}

/// One line: the root cause (our own message for deadlines, memory caps
/// and host refusals; wasmtime's for traps), without the wasm backtrace.
pub fn describe_failure(error: &wasmtime::Error) -> String {
    let root = error.root_cause().to_string();
    root.lines().next().unwrap_or("call failed").to_owned()
}
