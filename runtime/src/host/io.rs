//! Input and output: `__faasm_read_input`, `__faasm_write_output`.

use wasmtime::{bail, Result};
use wasmtime::{Caller, Linker};

use super::guest::{guest_range, memory, read_bytes};
use crate::exec::CallCtx;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    linker.func_wrap("env", "__faasm_read_input", read_input)?;
    linker.func_wrap("env", "__faasm_write_output", write_output)?;
    Ok(())
}

/// `len == 0` asks for the input's size; otherwise copies min(len, size).
fn read_input(mut caller: Caller<'_, CallCtx>, buf: i32, len: i32) -> Result<i32> {
    const IMPORT: &str = "__faasm_read_input";
    let input = caller.data().spec.input.clone();
    if len == 0 {
        return Ok(input.len() as i32);
    }
    let mem = memory(&mut caller, IMPORT)?;
    let range = guest_range(mem.data_size(&caller), buf, i64::from(len), IMPORT)?;
    let n = range.len().min(input.len());
    mem.data_mut(&mut caller)[range.start..range.start + n].copy_from_slice(&input[..n]);
    Ok(n as i32)
}

fn write_output(mut caller: Caller<'_, CallCtx>, buf: i32, len: i32) -> Result<()> {
    const IMPORT: &str = "__faasm_write_output";
    let max = caller.data().output_bytes_max;
    if len > 0 && len as usize > max {
        bail!("env::{IMPORT}: output of {len} bytes exceeds the cap of {max} bytes");
    }
    let bytes = read_bytes(&mut caller, buf, len, IMPORT)?;
    caller.data_mut().output = Some(bytes);
    Ok(())
}
