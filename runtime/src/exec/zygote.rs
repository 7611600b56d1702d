//! The zygote: a module's state after `__wasm_call_ctors` and
//! `_faasm_zygote`, captured once at upload (ABI.md, "Life of a module").

use std::sync::Arc;
use std::time::Instant;

use wasmtime::error::Context;
use wasmtime::Val;
use wasmtime::{bail, Result};

use super::rewrite::{GlobalValue, GLOBAL_EXPORT_PREFIX};
use super::{CallSpec, Entry, Executor, Function};

/// Memory and mutable globals of a pre-initialised instance.
pub struct ZygoteState {
    pub memory: Vec<u8>,
    pub globals: Vec<(u32, GlobalValue)>,
}

/// Runs the module's initialisers in a fresh instance. Returns the state
/// they left when it differs from the module's own initial state (None
/// when there is nothing to run or nothing changed).
pub async fn run_zygote(
    executor: &Executor,
    function: Arc<Function>,
) -> Result<Option<ZygoteState>> {
    let facts = &function.facts;
    if !facts.exports_ctors && !facts.exports_zygote {
        return Ok(None);
    }
    let spec = CallSpec {
        id: 0,
        user: function.user.as_str().into(),
        function: function.name.as_str().into(),
        input: Arc::from(Vec::new()),
        cmdline: String::new(),
        entry: Entry::Start,
        forbid_ndp: false,
        deadline: Instant::now() + std::time::Duration::from_millis(executor.limits.call_ms_max),
        depth: 0,
    };
    let mut store = executor.store(function.clone(), spec);
    let instance = function
        .pre
        .instantiate_async(&mut store)
        .await
        .context("instantiating")?;
    let before = capture(&mut store, &instance, facts)?;
    if facts.exports_ctors {
        let ctors = instance
            .get_typed_func::<(), ()>(&mut store, "__wasm_call_ctors")
            .context("`__wasm_call_ctors` must have type () -> ()")?;
        ctors
            .call_async(&mut store, ())
            .await
            .context("running __wasm_call_ctors")?;
    }
    if facts.exports_zygote {
        let zygote = instance
            .get_typed_func::<(), i32>(&mut store, "_faasm_zygote")
            .context("`_faasm_zygote` must have type () -> i32")?;
        let code = zygote
            .call_async(&mut store, ())
            .await
            .context("running _faasm_zygote")?;
        if code != 0 {
            bail!("_faasm_zygote failed with return value {code}");
        }
    }
    let after = capture(&mut store, &instance, facts)?;
    if after.memory == before.memory && after.globals == before.globals {
        return Ok(None);
    }
    Ok(Some(after))
}

fn capture(
    store: &mut wasmtime::Store<super::CallCtx>,
    instance: &wasmtime::Instance,
    facts: &super::ModuleFacts,
) -> Result<ZygoteState> {
    let memory = instance
        .get_memory(&mut *store, "memory")
        .context("the module exports no memory named `memory`")?
        .data(&*store)
        .to_vec();
    let mut globals = Vec::with_capacity(facts.mutable_globals.len());
    for index in &facts.mutable_globals {
        let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
        let global = instance
            .get_global(&mut *store, &name)
            .with_context(|| format!("reading exported global {name}"))?;
        let value = match global.get(&mut *store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            _ => continue, // reference globals are not part of the image
        };
        globals.push((*index, value));
    }
    Ok(ZygoteState { memory, globals })
}
