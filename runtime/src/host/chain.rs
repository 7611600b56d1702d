//! Chaining: `__faasm_chain_name`, `__faasm_chain_ptr`, `__faasm_await_call`,
//! `__faasm_await_call_output`. Chained calls run on the caller's shard.

use wasmtime::{bail, Result};
use wasmtime::{Caller, Linker};

use super::guest::{guest_range, memory, on_shard, read_bytes, read_cstr};
use crate::exec::{CallCtx, Entry};
use crate::shard::{ChainTarget, LocalShard};

/// Function names are short; a longer string is a guest bug.
const FUNCTION_NAME_BYTES_MAX: usize = 256;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    linker.func_wrap("env", "__faasm_chain_name", chain_name)?;
    linker.func_wrap("env", "__faasm_chain_ptr", chain_ptr)?;
    linker.func_wrap_async(
        "env",
        "__faasm_await_call",
        |mut caller: Caller<'_, CallCtx>, (id,): (i32,)| {
            on_shard(async move {
                let result = await_call(&mut caller, id, "__faasm_await_call").await?;
                Ok(result.return_code)
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "__faasm_await_call_output",
        |mut caller: Caller<'_, CallCtx>, (id, buf, len): (i32, i32, i32)| {
            on_shard(async move {
                const IMPORT: &str = "__faasm_await_call_output";
                let mem = memory(&mut caller, IMPORT)?;
                let range = guest_range(mem.data_size(&caller), buf, i64::from(len), IMPORT)?;
                let result = await_call(&mut caller, id, IMPORT).await?;
                let n = range.len().min(result.output.len());
                mem.data_mut(&mut caller)[range.start..range.start + n]
                    .copy_from_slice(&result.output[..n]);
                Ok(result.return_code)
            })
        },
    )?;
    Ok(())
}

fn chain_name(mut caller: Caller<'_, CallCtx>, name: i32, input: i32, len: i32) -> Result<i32> {
    const IMPORT: &str = "__faasm_chain_name";
    let function = read_cstr(&mut caller, name, FUNCTION_NAME_BYTES_MAX, IMPORT)?;
    check_input_len(len, IMPORT)?;
    let input = read_bytes(&mut caller, input, len, IMPORT)?;
    start(caller, ChainTarget::Named(function), input, IMPORT)
}

fn chain_ptr(mut caller: Caller<'_, CallCtx>, func: i32, input: i32, len: i32) -> Result<i32> {
    const IMPORT: &str = "__faasm_chain_ptr";
    check_input_len(len, IMPORT)?;
    let input = read_bytes(&mut caller, input, len, IMPORT)?;
    if func < 0 {
        bail!("env::{IMPORT}: negative function pointer {func}");
    }
    start(
        caller,
        ChainTarget::SameModule(Entry::TableIndex(func as u32)),
        input,
        IMPORT,
    )
}

/// A chained call's input obeys the same cap as a call's from outside.
fn check_input_len(len: i32, import: &str) -> Result<()> {
    let max = LocalShard::current(import)?
        .node
        .config
        .limits
        .input_bytes_max;
    if len as u32 as usize > max {
        bail!("env::{import}: chained input of {len} bytes exceeds the input cap of {max} bytes");
    }
    Ok(())
}

fn start(
    mut caller: Caller<'_, CallCtx>,
    target: ChainTarget,
    input: Vec<u8>,
    import: &str,
) -> Result<i32> {
    let shard = LocalShard::current(import)?;
    let id = shard.start_chained(caller.data(), target, input)?;
    caller.data_mut().chained.push(id);
    Ok(id as i32)
}

async fn await_call(
    caller: &mut Caller<'_, CallCtx>,
    id: i32,
    import: &str,
) -> Result<crate::exec::CallResult> {
    let id = id as u32;
    if !caller.data().chained.contains(&id) {
        bail!("env::{import}: call {id} was not chained by this call");
    }
    let shard = LocalShard::current(import)?;
    shard.await_chained(id).await
}
