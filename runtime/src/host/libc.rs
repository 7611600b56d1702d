//! The parts of Faasm's C library emulation that ferry implements: fixed
//! identities, process exit, anonymous memory and single-threaded pthread
//! no-ops. Every other Faasm import links as a trap that names it.

use wasmtime::{bail, Result};
use wasmtime::{Caller, Linker};

use super::guest::{memory, write_bytes};
use crate::exec::CallCtx;
use crate::limits::WASM_PAGE_BYTES;

/// The identities Faasm reports to guests.
const FAKE_PID: i32 = 23;
const FAKE_UID: i32 = 1000;
const FAKE_GID: i32 = 1000;
/// wasi-libc's `_SC_NPROCESSORS_ONLN`.
const SC_NPROCESSORS_ONLN: i32 = 84;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    linker.func_wrap("env", "getpid", || FAKE_PID)?;
    for name in ["getuid", "geteuid"] {
        linker.func_wrap("env", name, || FAKE_UID)?;
    }
    for name in ["getgid", "getegid"] {
        linker.func_wrap("env", name, || FAKE_GID)?;
    }
    linker.func_wrap("env", "getgrgid", |_: i32| FAKE_GID)?;
    // Calls Faasm answers with 0 whatever the arguments.
    for name in [
        "dlclose",
        "getgrnam",
        "pthread_mutex_init",
        "pthread_mutex_destroy",
        "pthread_mutexattr_init",
        "pthread_mutexattr_destroy",
        "pthread_cond_init",
        "pthread_cond_signal",
        "pthread_cond_destroy",
        "pthread_cond_broadcast",
        "pthread_key_delete",
        "pthread_getspecific",
        "pthread_mutex_lock",
        "pthread_mutex_trylock",
        "pthread_mutex_unlock",
        "_Unwind_RaiseException",
    ] {
        linker.func_wrap("env", name, |_: i32| 0i32)?;
    }
    for name in ["pthread_key_create", "pthread_setspecific", "signal"] {
        linker.func_wrap("env", name, |_: i32, _: i32| 0i32)?;
    }
    linker.func_wrap("env", "pthread_self", || 0i32)?;
    linker.func_wrap("env", "getgrent", || 0i32)?;
    linker.func_wrap("env", "confstr", |_: i32, _: i32, _: i32| 0i32)?;
    linker.func_wrap("env", "ioctl", |_: i32, _: i32, _: i32| 0i32)?;
    linker.func_wrap(
        "env",
        "ffi_prep_closure_loc",
        |_: i32, _: i32, _: i32, _: i32, _: i32| 0i32,
    )?;
    for name in ["setgrent", "endgrent"] {
        linker.func_wrap("env", name, || {})?;
    }
    for name in [
        "pthread_exit",
        "_Unwind_DeleteException",
        "__faasm_backtrace",
    ] {
        linker.func_wrap("env", name, |_: i32| {})?;
    }
    linker.func_wrap("env", "__faasm_conf_flag", |_: i32| 0i32)?;
    for name in ["exit", "_Exit"] {
        linker.func_wrap("env", name, |code: i32| -> Result<()> {
            Err(wasmtime_wasi::I32Exit(code).into())
        })?;
    }
    linker.func_wrap("env", "sysconf", |name: i32| -> Result<i32> {
        if name == SC_NPROCESSORS_ONLN {
            return Ok(std::thread::available_parallelism().map_or(1, |n| n.get() as i32));
        }
        bail!("env::sysconf: name {name} is not supported")
    })?;
    linker.func_wrap(
        "env",
        "gethostname",
        |mut caller: Caller<'_, CallCtx>, buf: i32, len: i32| -> Result<i32> {
            let name = b"ferry\0";
            if len < name.len() as i32 {
                return Ok(-1);
            }
            write_bytes(&mut caller, buf, name, "gethostname")?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "env",
        "__sbrk",
        |mut caller: Caller<'_, CallCtx>, increment: i32| -> Result<i32> {
            let mem = memory(&mut caller, "__sbrk")?;
            let old = mem.data_size(&caller) as u64;
            if increment <= 0 {
                return Ok(old as i32);
            }
            let pages = (increment as u64).div_ceil(WASM_PAGE_BYTES as u64);
            mem.grow(&mut caller, pages)?;
            Ok(old as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "mmap",
        |mut caller: Caller<'_, CallCtx>,
         _addr: i32,
         len: i32,
         _prot: i32,
         _flags: i32,
         fd: i32,
         _off: i64|
         -> Result<i32> {
            if fd != -1 || len <= 0 {
                return Ok(-1); // MAP_FAILED: only anonymous mappings are emulated
            }
            let mem = memory(&mut caller, "mmap")?;
            let pages = (len as u64).div_ceil(WASM_PAGE_BYTES as u64);
            let old_pages = mem.grow(&mut caller, pages)?;
            Ok((old_pages * WASM_PAGE_BYTES as u64) as i32)
        },
    )?;
    linker.func_wrap("env", "munmap", |_: i32, _: i32| 0i32)?;
    Ok(())
}
