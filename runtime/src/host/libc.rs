//! The parts of Faasm's C library emulation that ferry implements: fixed
//! identities, process exit, anonymous memory and single-threaded pthread
//! no-ops. Every other Faasm import links as a trap that names it.

use wasmtime::{bail, Result};
use wasmtime::{Caller, Linker};

use super::guest::{memory, on_shard, write_bytes};
use crate::exec::CallCtx;
use crate::limits::WASM_PAGE_BYTES;
use wasmtime_wasi::p1::{self, wasi_snapshot_preview1::WasiSnapshotPreview1};

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
    linker.func_wrap_async(
        "env",
        "mmap",
        |mut caller: Caller<'_, CallCtx>,
         (_addr, len, _prot, _flags, fd, off): (i32, i32, i32, i32, i32, i64)| {
            on_shard(async move {
                if len <= 0 {
                    return Ok(-1); // MAP_FAILED
                }
                if fd == -1 {
                    let mem = memory(&mut caller, "mmap")?;
                    let pages = (len as u64).div_ceil(WASM_PAGE_BYTES as u64);
                    let old_pages = mem.grow(&mut caller, pages)?;
                    return Ok((old_pages * WASM_PAGE_BYTES as u64) as i32);
                }
                map_file(&mut caller, len as u32, fd, off).await
            })
        },
    )?;
    linker.func_wrap("env", "munmap", |_: i32, _: i32| 0i32)?;
    Ok(())
}

/// A file-backed mapping, as Faasm's `mmapFile`: fresh pages at the end of
/// linear memory hold `len` bytes of the file from `off` (zeros past its
/// end); a private copy, so writes to them do not reach the file. The bytes
/// come through WASI's own `fd_pread`, so the descriptor's rights and the
/// sandbox apply as to any read. MAP_FAILED (-1) when the read fails.
async fn map_file(caller: &mut Caller<'_, CallCtx>, len: u32, fd: i32, off: i64) -> Result<i32> {
    const IMPORT: &str = "mmap";
    /// An iovec (buf, len), in the mapping's last page, past the bytes.
    const SCRATCH_BYTES: u64 = 8;
    if off < 0 {
        return Ok(-1);
    }
    let mem = memory(caller, IMPORT)?;
    let page = WASM_PAGE_BYTES as u64;
    let pages = (u64::from(len) + SCRATCH_BYTES).div_ceil(page);
    let start = mem.grow(&mut *caller, pages)? * page;
    let scratch = start + pages * page - SCRATCH_BYTES;
    // Guest pointers are u32 offsets handed over as i32 bits.
    let (start32, scratch32) = (start as u32 as i32, scratch as u32);
    // Reads until the mapping is full or the file ends (a read may return
    // less than asked).
    let mut done = 0u32;
    while done < len {
        let mut iovec = [0u8; 8];
        iovec[..4].copy_from_slice(&(start as u32 + done).to_le_bytes());
        iovec[4..].copy_from_slice(&(len - done).to_le_bytes());
        write_bytes(caller, scratch32 as i32, &iovec, IMPORT)?;
        // wasmtime-wasi's p1 implementation, called as the guest's own
        // `fd_pread` would be (a host function called from the host has
        // no caller instance, hence no memory to hand it).
        let (data, ctx) = mem.data_and_store_mut(&mut *caller);
        let mut guest = wiggle::GuestMemory::Unshared(data);
        let read = WasiSnapshotPreview1::fd_pread(
            &mut ctx.wasi,
            &mut guest,
            p1::types::Fd::from(fd as u32),
            wiggle::GuestPtr::new((scratch32, 1)),
            off as u64 + u64::from(done),
        )
        .await;
        match read {
            Ok(0) => break,
            Ok(n) => done += n.min(len - done),
            Err(_) => {
                write_bytes(caller, scratch32 as i32, &[0u8; 8], IMPORT)?;
                return Ok(-1);
            }
        }
    }
    write_bytes(caller, scratch32 as i32, &[0u8; 8], IMPORT)?;
    Ok(start32)
}
