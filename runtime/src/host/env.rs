//! Faasm's environment as its guests ask for it (faasm/faasm `faasm.cpp`,
//! `env.cpp`): the configuration flags of `__faasm_conf_flag` and the
//! working directory that `env::getcwd` reports. Its environment variables
//! and terminals are in the call's WASI context (exec/sandbox.rs).

use wasmtime::{Caller, Linker, Result};

use super::guest::{guest_range, memory, read_cstr};
use crate::exec::CallCtx;

/// What Faasm's `env::getcwd` writes (`FAKE_WORKING_DIR`). wasi-libc's own
/// `getcwd` does not import it and answers its own cwd, `/`.
pub const FAKE_WORKING_DIR: &str = "/bin";

/// Flag names are short; a longer string is a guest bug.
const CONF_FLAG_BYTES_MAX: usize = 256;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    linker.func_wrap("env", "__faasm_conf_flag", conf_flag)?;
    linker.func_wrap("env", "getcwd", getcwd)?;
    Ok(())
}

/// 1 for `ALWAYS_ON`; 0 for `ALWAYS_OFF`, `PYTHON_PRELOAD` (off, Faasm's
/// default) and any flag Faasm does not know.
fn conf_flag(mut caller: Caller<'_, CallCtx>, key: i32) -> Result<i32> {
    let key = read_cstr(&mut caller, key, CONF_FLAG_BYTES_MAX, "__faasm_conf_flag")?;
    Ok(i32::from(key == "ALWAYS_ON"))
}

/// Writes [`FAKE_WORKING_DIR`] and its NUL to `buf` and returns `buf`, as
/// Faasm does; 0 (NULL) when `len` is too small for it.
fn getcwd(mut caller: Caller<'_, CallCtx>, buf: i32, len: i32) -> Result<i32> {
    const IMPORT: &str = "getcwd";
    let mem = memory(&mut caller, IMPORT)?;
    let range = guest_range(mem.data_size(&caller), buf, i64::from(len), IMPORT)?;
    let dir = FAKE_WORKING_DIR.as_bytes();
    if range.len() < dir.len() + 1 {
        return Ok(0);
    }
    let data = &mut mem.data_mut(&mut caller)[range];
    data[..dir.len()].copy_from_slice(dir);
    data[dir.len()] = 0;
    Ok(buf)
}
