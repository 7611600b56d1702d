//! Objects and funclets (Faasm's NDP fork): `__faasmndp_put`,
//! `__faasmndp_getMmap`, `__faasmndp_unmap`, `__faasmndp_storageCallAndAwait*`.
//! Objects live in the calling user's namespace of the node's object store.

use wasmtime::{format_err as anyhow, Result};
use wasmtime::{Caller, Linker};

use super::guest::{guest_range, memory, on_shard, read_bytes, write_bytes};
use crate::exec::{CallCtx, Mapping};
use crate::limits::WASM_PAGE_BYTES;
use crate::shard::LocalShard;

/// Object keys are short names; the store refuses longer ones too.
const KEY_BYTES_MAX: usize = ferry_storage::limits::KEY_BYTES_MAX;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    linker.func_wrap_async(
        "env",
        "__faasmndp_put",
        |mut caller: Caller<'_, CallCtx>, (key, key_len, data, data_len): (i32, i32, i32, i32)| {
            on_shard(async move { put(&mut caller, key, key_len, data, data_len).await })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "__faasmndp_getMmap",
        |mut caller: Caller<'_, CallCtx>,
         (key, key_len, offset, max_len, out_len): (i32, i32, i64, i64, i32)| {
            on_shard(
                async move { get_mmap(&mut caller, key, key_len, offset, max_len, out_len).await },
            )
        },
    )?;
    linker.func_wrap("env", "__faasmndp_unmap", unmap)?;
    linker.func_wrap_async(
        "env",
        "__faasmndp_storageCallAndAwait",
        |mut caller: Caller<'_, CallCtx>, (key, key_len, func): (i32, i32, i32)| {
            on_shard(async move { storage_call(&mut caller, key, key_len, func, &[]).await })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "__faasmndp_storageCallAndAwait1",
        |mut caller: Caller<'_, CallCtx>, (key, key_len, func, a1): (i32, i32, i32, i32)| {
            on_shard(async move { storage_call(&mut caller, key, key_len, func, &[a1]).await })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "__faasmndp_storageCallAndAwait2",
        |mut caller: Caller<'_, CallCtx>,
         (key, key_len, func, a1, a2): (i32, i32, i32, i32, i32)| {
            on_shard(async move { storage_call(&mut caller, key, key_len, func, &[a1, a2]).await })
        },
    )?;
    Ok(())
}

fn read_key(
    caller: &mut Caller<'_, CallCtx>,
    key: i32,
    key_len: i32,
    import: &str,
) -> Result<Vec<u8>> {
    if usize::try_from(key_len).map_or(true, |len| len > KEY_BYTES_MAX) {
        return Err(anyhow!(
            "env::{import}: key length {key_len} is outside 0..={KEY_BYTES_MAX}"
        ));
    }
    read_bytes(caller, key, key_len, import)
}

/// 0 on success; -1 with the reason in the call's log.
async fn put(
    caller: &mut Caller<'_, CallCtx>,
    key: i32,
    key_len: i32,
    data: i32,
    data_len: i32,
) -> Result<i32> {
    const IMPORT: &str = "__faasmndp_put";
    let key = read_key(caller, key, key_len, IMPORT)?;
    let mem = memory(caller, IMPORT)?;
    let range = guest_range(mem.data_size(&*caller), data, i64::from(data_len), IMPORT)?;
    let shard = LocalShard::current(IMPORT)?;
    let user = caller.data().spec.user.clone();
    let quotas = shard.node.quotas.clone();
    let ticket = match quotas
        .admit_put(shard.objects(), &user, &key, range.len() as u64)
        .await
    {
        Ok(ticket) => ticket,
        Err(error) => {
            caller
                .data_mut()
                .log_host(format_args!("env::{IMPORT}: {error}"));
            return Ok(-1);
        }
    };
    // The store copies straight out of guest memory: no staging copy here.
    let result = shard
        .objects()
        .put(&user, &key, &mem.data(&*caller)[range])
        .await;
    match result {
        Ok(()) => {
            ticket.done();
            Ok(0)
        }
        Err(error) => {
            caller
                .data_mut()
                .log_host(format_args!("env::{IMPORT}: {error}"));
            Ok(-1)
        }
    }
}

/// Maps `min(size - offset, max_len)` bytes of the object at the end of
/// linear memory (or in a region freed by `unmap` that is large enough)
/// and reads them there directly.
async fn get_mmap(
    caller: &mut Caller<'_, CallCtx>,
    key: i32,
    key_len: i32,
    offset: i64,
    max_len: i64,
    out_len: i32,
) -> Result<i32> {
    const IMPORT: &str = "__faasmndp_getMmap";
    let key = read_key(caller, key, key_len, IMPORT)?;
    let mem = memory(caller, IMPORT)?;
    // Check the out pointer before doing any work.
    guest_range(mem.data_size(&*caller), out_len, 4, IMPORT)?;
    let write_len = |caller: &mut Caller<'_, CallCtx>, n: u32| {
        write_bytes(caller, out_len, &n.to_le_bytes(), IMPORT)
    };
    if offset < 0 || max_len < 0 {
        write_len(caller, 0)?;
        return Ok(0);
    }
    let shard = LocalShard::current(IMPORT)?;
    let user = caller.data().spec.user.clone();
    let offset = offset as u64;
    // One open: the size that sizes the buffer and the bytes read into it
    // are of the same version of the object.
    let reader = match shard
        .objects()
        .open_read(&user, &key, offset, max_len as u64)
        .await
    {
        Ok(Some(reader)) => reader,
        Ok(None) => {
            write_len(caller, 0)?;
            return Ok(0);
        }
        Err(error) => {
            caller
                .data_mut()
                .log_host(format_args!("env::{IMPORT}: {error}"));
            return Ok(-1);
        }
    };
    let len = reader
        .len_bytes()
        .saturating_sub(offset)
        .min(max_len as u64);
    if len == 0 {
        let _ = reader.close().await;
        write_len(caller, 0)?;
        return Ok(0);
    }
    let cap = caller.data().memory_bytes_max;
    if len > cap {
        let _ = reader.close().await;
        return Err(anyhow!(
            "env::{IMPORT}: mapping {len} bytes of the object exceeds the memory cap of {cap} bytes"
        ));
    }
    // One byte more than the data: a zero after it, so text can be read
    // as a C string in place (grep's regexec) without a copy.
    let pages = (len + 1).div_ceil(WASM_PAGE_BYTES as u64) as u32;
    let addr = match reuse_mapping(caller.data_mut(), pages) {
        Some(addr) => addr,
        None => {
            let old_pages = match mem.grow(&mut *caller, u64::from(pages)) {
                Ok(old_pages) => old_pages,
                Err(error) => {
                    let _ = reader.close().await;
                    return Err(error);
                }
            };
            let addr = (old_pages * WASM_PAGE_BYTES as u64) as u32;
            caller.data_mut().maps.push(Mapping {
                addr,
                pages,
                free: false,
            });
            addr
        }
    };
    let start = addr as usize;
    let dst = &mut mem.data_mut(&mut *caller)[start..start + len as usize];
    let read = reader.read_into(offset, dst).await;
    let closed = reader.close().await;
    match read.and_then(|n| closed.map(|()| n)) {
        Ok(n) => {
            // A reused mapping may hold older bytes past the data.
            mem.data_mut(&mut *caller)[start + n] = 0;
            write_len(caller, n as u32)?;
            Ok(addr as i32)
        }
        Err(error) => {
            release_mapping(caller.data_mut(), addr);
            caller
                .data_mut()
                .log_host(format_args!("env::{IMPORT}: {error}"));
            Ok(-1)
        }
    }
}

/// A freed mapping of at least `pages` pages, taken for reuse.
fn reuse_mapping(ctx: &mut CallCtx, pages: u32) -> Option<u32> {
    let map = ctx
        .maps
        .iter_mut()
        .filter(|m| m.free && m.pages >= pages)
        .min_by_key(|m| m.pages)?;
    map.free = false;
    Some(map.addr)
}

fn release_mapping(ctx: &mut CallCtx, addr: u32) -> bool {
    match ctx.maps.iter_mut().find(|m| m.addr == addr && !m.free) {
        Some(map) => {
            map.free = true;
            true
        }
        None => false,
    }
}

/// 0 when `ptr` is a live getMmap buffer (now reusable), -1 otherwise.
fn unmap(mut caller: Caller<'_, CallCtx>, ptr: i32, _len: i32) -> i32 {
    if release_mapping(caller.data_mut(), ptr as u32) {
        0
    } else {
        -1
    }
}

/// Runs table element `func` near the object `key`: on the storage node
/// that holds it, or here (`crate::funclet` decides).
async fn storage_call(
    caller: &mut Caller<'_, CallCtx>,
    key: i32,
    key_len: i32,
    func: i32,
    args: &[i32],
) -> Result<i32> {
    const IMPORT: &str = "__faasmndp_storageCallAndAwait";
    let key = read_key(caller, key, key_len, IMPORT)?;
    crate::funclet::run(
        caller,
        crate::funclet::Funclet {
            key: &key,
            index: func as u32,
            args,
        },
    )
    .await
}
