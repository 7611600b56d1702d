//! Faasm's state API (`__faasm_*_state*`): values named by a key (a
//! NUL-terminated string) in the calling user's namespace of the shard's
//! state store, the same values `PUT/GET /s/<user>/<key>` reach. On a
//! compute node of an embedded-store cluster that store is the state store
//! of the storage node placement names for (user, key), reached over the
//! transport (`stores.rs`); elsewhere it is the node's own.
//!
//! The store is the master copy, as the master host's value is in Faasm:
//! `write_state`, `write_state_offset` and `append_state` write through to
//! it at once. The pointer variants (`read_state_ptr`,
//! `read_state_offset_ptr`) map the whole value into fresh pages of linear
//! memory, once per key and call: every later pointer to that key in the
//! call is into the same memory, reads of the key in the call read it, and
//! writes to the key update it. What the guest writes through a pointer
//! reaches the store, and so later calls, when it pushes the key:
//! `push_state` sends the whole mapping, `push_state_partial` the ranges
//! flagged dirty since the last push (`flag_state_dirty`,
//! `flag_state_offset_dirty`), `push_state_partial_mask` the bytes whose
//! byte in a mask value is non-zero; partial pushes write over the
//! store's value, so others' writes to the rest stay. `pull_state`
//! refreshes the mapping from the store. Appended state is a second value
//! beside the key, the appended bytes one after another.
//!
//! Updates (`write_state_offset`, partial pushes, `append_state`) are
//! applied by the node that stores the value, under its apply lock for the
//! value (`state_store.rs`; over the transport, one `StateUpdate` message
//! each), as a Faasm master host applies the chunks others push: updates
//! from any nodes to one value never lose each other's bytes. A partial
//! push of more than [`UPDATE_RANGES_MAX`] ranges or [`UPDATE_BYTES_MAX`]
//! bytes is applied in parts of that size, each whole.
//!
//! `lock_state_read` (shared) / `lock_state_write` (exclusive) take the
//! key's lock on this node until the matching unlock or the call's end.
//! As Faasm's, they are each node's own: they order the calls of one node,
//! not those of two compute nodes.
//!
//! Every size is checked: a key is at most [`STATE_KEY_BYTES_MAX`] bytes, a
//! value at most [`STATE_VALUE_BYTES_MAX`], offsets and lengths inside the
//! value's declared size and every buffer inside linear memory; a refused
//! argument or a store error traps the call with a message naming the
//! import.

use bytes::Bytes;
use ferry_transport::StateChange;
use wasmtime::{bail, format_err as anyhow, Result};
use wasmtime::{Caller, Linker};

use super::guest::{guest_range, memory, on_shard, read_bytes, read_cstr, write_bytes};
use crate::exec::call_state::{GuestLock, Mapped};
use crate::exec::CallCtx;
use crate::limits::{STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX, WASM_PAGE_BYTES};
use crate::shard::LocalShard;
use crate::state_store;

/// Appended state is stored under the key followed by this suffix: a NUL
/// no guest key can contain.
const APPENDED_SUFFIX: &[u8] = b"\0appended";
/// Longest file path `write_state_from_file` takes (Linux's PATH_MAX).
const PATH_BYTES_MAX: usize = 4096;
/// Dirty ranges one mapping keeps; past it the whole mapping is dirty.
const DIRTY_RANGES_MAX: usize = 1024;
/// Ranges and bytes of one update message; a larger partial push is
/// applied in parts.
const UPDATE_RANGES_MAX: usize = 4096;
const UPDATE_BYTES_MAX: usize = 16 << 20;

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    macro_rules! wrap {
        ($name:literal, ($($arg:ident),*), $body:expr) => {
            linker.func_wrap_async(
                "env",
                $name,
                |mut caller: Caller<'_, CallCtx>, ($($arg,)*): ($(wrap!(@ty $arg),)*)| {
                    on_shard(async move { $body(&mut caller, $name, $($arg),*).await })
                },
            )?;
        };
        (@ty $arg:ident) => { i32 };
    }
    wrap!("__faasm_write_state", (key, data, len), write_state);
    wrap!(
        "__faasm_write_state_offset",
        (key, total, offset, data, len),
        write_state_offset
    );
    wrap!("__faasm_read_state", (key, buf, len), read_state);
    wrap!(
        "__faasm_read_state_offset",
        (key, total, offset, buf, len),
        read_state_offset
    );
    wrap!("__faasm_read_state_ptr", (key, total), read_state_ptr);
    wrap!(
        "__faasm_read_state_offset_ptr",
        (key, total, offset, len),
        read_state_offset_ptr
    );
    wrap!("__faasm_push_state", (key), push_state);
    wrap!("__faasm_push_state_partial", (key), push_state_partial);
    wrap!(
        "__faasm_push_state_partial_mask",
        (key, mask),
        push_state_partial_mask
    );
    wrap!("__faasm_pull_state", (key, total), pull_state);
    wrap!("__faasm_append_state", (key, data, len), append_state);
    wrap!(
        "__faasm_read_appended_state",
        (key, buf, len, elems),
        read_appended_state
    );
    wrap!("__faasm_clear_appended_state", (key), clear_appended_state);
    wrap!("__faasm_lock_state_read", (key), lock_state);
    wrap!("__faasm_lock_state_write", (key), lock_state);
    wrap!("__faasm_unlock_state_read", (key), unlock_state);
    wrap!("__faasm_unlock_state_write", (key), unlock_state);
    wrap!("__faasm_flag_state_dirty", (key, total), flag_state_dirty);
    wrap!(
        "__faasm_write_state_from_file",
        (key, path),
        write_state_from_file
    );
    wrap!(
        "__faasm_flag_state_offset_dirty",
        (key, total, offset, len),
        flag_state_offset_dirty
    );
    Ok(())
}

// ---- helpers ----------------------------------------------------------

fn read_key(caller: &mut Caller<'_, CallCtx>, key: i32, import: &str) -> Result<Vec<u8>> {
    Ok(read_cstr(caller, key, STATE_KEY_BYTES_MAX, import)?.into_bytes())
}

/// A value size the guest declares (`total`, or a write's length).
fn value_len(len: i32, import: &str) -> Result<usize> {
    if len < 0 || len as usize > STATE_VALUE_BYTES_MAX {
        bail!("env::{import}: state size {len} is outside 0..={STATE_VALUE_BYTES_MAX} bytes");
    }
    Ok(len as usize)
}

/// `[offset, offset + len)` inside a value of `total` bytes.
fn chunk(total: i32, offset: i32, len: i32, import: &str) -> Result<(usize, usize)> {
    let total = value_len(total, import)?;
    if offset < 0 || len < 0 || offset as usize + len as usize > total {
        bail!("env::{import}: chunk [{offset}, +{len}) is outside the value's {total} bytes");
    }
    Ok((offset as usize, len as usize))
}

fn display(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

async fn load(user: &str, key: &[u8], import: &str) -> Result<Option<Vec<u8>>> {
    let shard = LocalShard::current(import)?;
    shard
        .state()
        .get(user, key, 0, STATE_VALUE_BYTES_MAX as u64 + 1)
        .await
        .map_err(|e| anyhow!("env::{import}: reading state {}: {e}", display(key)))
}

async fn save(user: &str, key: &[u8], bytes: &[u8], import: &str) -> Result<()> {
    if bytes.len() > STATE_VALUE_BYTES_MAX {
        bail!(
            "env::{import}: state {} would be {} bytes, over the cap of {STATE_VALUE_BYTES_MAX}",
            display(key),
            bytes.len()
        );
    }
    let shard = LocalShard::current(import)?;
    let locks = shard.node.executor.state_locks();
    let written = state_store::put(shard.state(), locks, user, key, bytes).await;
    written.map_err(|e| anyhow!("env::{import}: writing state {}: {e}", display(key)))
}

/// Applies `change` to (user, key) where the value is stored.
async fn update(user: &str, key: &[u8], change: StateChange, import: &str) -> Result<()> {
    let shard = LocalShard::current(import)?;
    let locks = shard.node.executor.state_locks();
    let updated = state_store::apply(shard.state(), locks, user, key, change).await;
    updated
        .map(drop)
        .map_err(|e| anyhow!("env::{import}: updating state {}: {e}", display(key)))
}

/// Copies `bytes` into the key's mapping in this call, if there is one
/// (zeros past their end, as a value shorter than the mapping reads).
fn refresh_mapping(
    caller: &mut Caller<'_, CallCtx>,
    key: &[u8],
    bytes: &[u8],
    import: &str,
) -> Result<()> {
    let Some((addr, len)) = caller.data().state.mapping(key) else {
        return Ok(());
    };
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), addr as i32, i64::from(len), import)?;
    let dst = &mut mem.data_mut(&mut *caller)[range];
    let n = dst.len().min(bytes.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    dst[n..].fill(0);
    Ok(())
}

/// The key's bytes as this call sees them: its mapping when it has one,
/// else the store's value (empty when there is none).
async fn current(caller: &mut Caller<'_, CallCtx>, key: &[u8], import: &str) -> Result<Vec<u8>> {
    if let Some((addr, len)) = caller.data().state.mapping(key) {
        return read_bytes(caller, addr as i32, len as i32, import);
    }
    let user = caller.data().spec.user.clone();
    Ok(load(&user, key, import).await?.unwrap_or_default())
}

// ---- imports ------------------------------------------------------------

async fn write_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    data: i32,
    len: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    value_len(len, import)?;
    let bytes = read_bytes(caller, data, len, import)?;
    let user = caller.data().spec.user.clone();
    save(&user, &key, &bytes, import).await?;
    refresh_mapping(caller, &key, &bytes, import)
}

async fn write_state_offset(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
    offset: i32,
    data: i32,
    len: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let (offset, len) = chunk(total, offset, len, import)?;
    let bytes = read_bytes(caller, data, len as i32, import)?;
    let user = caller.data().spec.user.clone();
    let change = StateChange::Ranges {
        value_bytes: total as u64,
        ranges: vec![(offset as u64, len as u64)],
        data: Bytes::copy_from_slice(&bytes),
    };
    update(&user, &key, change, import).await?;
    if let Some((addr, map_len)) = caller.data().state.mapping(&key) {
        // Only the chunk: the rest of the mapping may hold unpushed writes.
        if offset + len <= map_len as usize {
            write_bytes(caller, addr as i32 + offset as i32, &bytes, import)?;
        }
    }
    Ok(())
}

/// `len == 0`: the value's size. Otherwise copies `min(len, size)` bytes
/// to `buf` and returns the size (0 for a key with no value).
async fn read_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    buf: i32,
    len: i32,
) -> Result<i32> {
    let key = read_key(caller, key, import)?;
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), buf, i64::from(len), import)?;
    let value = current(caller, &key, import).await?;
    let n = range.len().min(value.len());
    mem.data_mut(&mut *caller)[range.start..range.start + n].copy_from_slice(&value[..n]);
    Ok(value.len() as i32)
}

async fn read_state_offset(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
    offset: i32,
    buf: i32,
    len: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let (offset, len) = chunk(total, offset, len, import)?;
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), buf, len as i64, import)?;
    let value = current(caller, &key, import).await?;
    let dst = &mut mem.data_mut(&mut *caller)[range];
    let src = value.get(offset..).unwrap_or_default();
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
    Ok(())
}

/// The address of the key's value mapped in this call, mapping it first.
async fn map_value(
    caller: &mut Caller<'_, CallCtx>,
    key: Vec<u8>,
    total: usize,
    import: &str,
) -> Result<u32> {
    if let Some((addr, len)) = caller.data().state.mapping(&key) {
        if total > len as usize {
            bail!(
                "env::{import}: state {} is mapped with {len} bytes in this call; {total} asked",
                display(&key)
            );
        }
        return Ok(addr);
    }
    let user = caller.data().spec.user.clone();
    let value = load(&user, &key, import).await?.unwrap_or_default();
    let mem = memory(caller, import)?;
    let pages = (total as u64).div_ceil(WASM_PAGE_BYTES as u64).max(1);
    let addr = (mem.grow(&mut *caller, pages)? * WASM_PAGE_BYTES as u64) as u32;
    let n = total.min(value.len());
    write_bytes(caller, addr as i32, &value[..n], import)?;
    caller.data_mut().state.maps.push(Mapped {
        key,
        addr,
        len: total as u32,
        dirty: Vec::new(),
    });
    Ok(addr)
}

async fn read_state_ptr(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
) -> Result<i32> {
    let key = read_key(caller, key, import)?;
    let total = value_len(total, import)?;
    Ok(map_value(caller, key, total, import).await? as i32)
}

async fn read_state_offset_ptr(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
    offset: i32,
    len: i32,
) -> Result<i32> {
    let key = read_key(caller, key, import)?;
    let (offset, _) = chunk(total, offset, len, import)?;
    let addr = map_value(caller, key, total as usize, import).await?;
    Ok((addr + offset as u32) as i32)
}

/// Writes the key's mapping in this call to the store; nothing to do for a
/// key this call did not map (its writes went through already).
async fn push_state(caller: &mut Caller<'_, CallCtx>, import: &str, key: i32) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let Some((addr, len)) = caller.data().state.mapping(&key) else {
        return Ok(());
    };
    let bytes = read_bytes(caller, addr as i32, len as i32, import)?;
    let user = caller.data().spec.user.clone();
    save(&user, &key, &bytes, import).await?;
    if let Some(mapped) = caller.data_mut().state.mapped_mut(&key) {
        mapped.dirty.clear();
    }
    Ok(())
}

/// Writes the byte ranges (start, end) of the key's mapping that `ranges`
/// names over the stored value: a partial push, applied where the value
/// is stored (in parts of at most [`UPDATE_RANGES_MAX`] ranges and
/// [`UPDATE_BYTES_MAX`] bytes). Each range's bytes are copied once.
async fn push_bytes(
    caller: &mut Caller<'_, CallCtx>,
    key: &[u8],
    ranges: &[(usize, usize)],
    import: &str,
) -> Result<()> {
    let Some((addr, len)) = caller.data().state.mapping(key) else {
        return Ok(());
    };
    let mapped = read_bytes(caller, addr as i32, len as i32, import)?;
    let user = caller.data().spec.user.clone();
    let mut part: Vec<(u64, u64)> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let pieces = ranges.iter().flat_map(|&(start, end)| {
        // A range over the part's byte budget is cut into pieces that fit.
        let end = end.min(mapped.len());
        (start..end)
            .step_by(UPDATE_BYTES_MAX)
            .map(move |at| (at, end.min(at + UPDATE_BYTES_MAX)))
    });
    for (start, end) in pieces {
        if part.len() == UPDATE_RANGES_MAX || data.len() + (end - start) > UPDATE_BYTES_MAX {
            let change = StateChange::Ranges {
                value_bytes: mapped.len() as u64,
                ranges: std::mem::take(&mut part),
                data: Bytes::from(std::mem::take(&mut data)),
            };
            update(&user, key, change, import).await?;
        }
        part.push((start as u64, (end - start) as u64));
        data.extend_from_slice(&mapped[start..end]);
    }
    let change = StateChange::Ranges {
        value_bytes: mapped.len() as u64,
        ranges: part,
        data: Bytes::from(data),
    };
    update(&user, key, change, import).await
}

/// Pushes the ranges flagged dirty since the last push (Faasm's
/// `pushPartial`): others' writes to the rest of the value stay.
async fn push_state_partial(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let dirty = match caller.data_mut().state.mapped_mut(&key) {
        Some(mapped) => std::mem::take(&mut mapped.dirty),
        None => return Ok(()),
    };
    if dirty.is_empty() {
        return Ok(());
    }
    push_bytes(caller, &key, &dirty, import).await
}

/// Pushes the bytes of the key whose byte in the mask value (`mask`, as
/// this call sees it) is not zero.
async fn push_state_partial_mask(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    mask: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let mask_key = read_key(caller, mask, import)?;
    let mask = current(caller, &mask_key, import).await?;
    push_bytes(caller, &key, &runs_of_nonzero(&mask), import).await
}

/// The runs of non-zero bytes of a mask value, as (start, end) ranges.
fn runs_of_nonzero(mask: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, byte) in mask.iter().enumerate() {
        match (start, *byte != 0) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, mask.len()));
    }
    runs
}

async fn pull_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    value_len(total, import)?;
    let user = caller.data().spec.user.clone();
    let value = load(&user, &key, import).await?.unwrap_or_default();
    refresh_mapping(caller, &key, &value, import)
}

fn appended_key(key: &[u8]) -> Vec<u8> {
    [key, APPENDED_SUFFIX].concat()
}

async fn append_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    data: i32,
    len: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    value_len(len, import)?;
    let bytes = read_bytes(caller, data, len, import)?;
    let user = caller.data().spec.user.clone();
    let change = StateChange::Append(Bytes::from(bytes));
    update(&user, &appended_key(&key), change, import).await
}

/// Writes the whole of a file the guest names (resolved in its sandbox, as
/// its own `open` would) as the key's value; returns the file's size, as
/// Faasm does, or -1 with the reason in the call's log when it cannot be
/// read (no filesystem for this module, no such file, a path out of the
/// sandbox, over the state value cap).
async fn write_state_from_file(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    path: i32,
) -> Result<i32> {
    let key = read_key(caller, key, import)?;
    let path = read_cstr(caller, path, PATH_BYTES_MAX, import)?;
    let read = match caller.data().dirs.as_ref().map(|d| d.reader()) {
        // File I/O runs on the shard's blocking pool, not its thread.
        Some(reader) => {
            let path = path.clone();
            glommio::executor()
                .spawn_blocking(move || reader.read(&path, STATE_VALUE_BYTES_MAX as u64))
                .await
        }
        None => Err(std::io::Error::other(
            "the module has no filesystem (it imports no WASI path function)",
        )),
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(error) => {
            caller
                .data_mut()
                .log_host(format_args!("env::{import}: reading {path}: {error}"));
            return Ok(-1);
        }
    };
    let user = caller.data().spec.user.clone();
    save(&user, &key, &bytes, import).await?;
    refresh_mapping(caller, &key, &bytes, import)?;
    Ok(bytes.len() as i32)
}

/// Copies up to `len` bytes of the appended values (one after another) to
/// `buf`; `elems` is how many the guest expects, as in Faasm.
async fn read_appended_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    buf: i32,
    len: i32,
    elems: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    if elems < 0 {
        bail!("env::{import}: negative element count {elems}");
    }
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), buf, i64::from(len), import)?;
    let user = caller.data().spec.user.clone();
    let value = load(&user, &appended_key(&key), import)
        .await?
        .unwrap_or_default();
    let dst = &mut mem.data_mut(&mut *caller)[range];
    let n = dst.len().min(value.len());
    dst[..n].copy_from_slice(&value[..n]);
    dst[n..].fill(0);
    Ok(())
}

async fn clear_appended_state(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let user = caller.data().spec.user.clone();
    let shard = LocalShard::current(import)?;
    let appended = appended_key(&key);
    let locks = shard.node.executor.state_locks();
    let cleared = state_store::delete(shard.state(), locks, &user, &appended).await;
    cleared.map(drop).map_err(|e| {
        anyhow!(
            "env::{import}: clearing appended state {}: {e}",
            display(&key)
        )
    })
}

async fn lock_state(caller: &mut Caller<'_, CallCtx>, import: &str, key: i32) -> Result<()> {
    let key = read_key(caller, key, import)?;
    if caller.data().state.holds(&key) {
        bail!(
            "env::{import}: state {} is already locked by this call",
            display(&key)
        );
    }
    let locks = caller
        .data()
        .state
        .locks_table
        .locks_for(&caller.data().spec.user, &key)?;
    let held = if import == "__faasm_lock_state_read" {
        GuestLock::Read {
            _guard: locks.guest.read_owned().await,
        }
    } else {
        GuestLock::Write {
            _guard: locks.guest.write_owned().await,
        }
    };
    caller.data_mut().state.locks.push((key, held));
    Ok(())
}

async fn unlock_state(caller: &mut Caller<'_, CallCtx>, import: &str, key: i32) -> Result<()> {
    let key = read_key(caller, key, import)?;
    caller.data_mut().state.locks.retain(|(k, _)| *k != key);
    Ok(())
}

/// Flags the whole mapping dirty: the next partial push sends it.
async fn flag_state_dirty(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let total = value_len(total, import)?;
    if let Some(mapped) = caller.data_mut().state.mapped_mut(&key) {
        let end = total.min(mapped.len as usize);
        mapped.dirty.push((0, end));
    }
    Ok(())
}

/// Flags `[offset, offset + len)` of the mapping dirty.
async fn flag_state_offset_dirty(
    caller: &mut Caller<'_, CallCtx>,
    import: &str,
    key: i32,
    total: i32,
    offset: i32,
    len: i32,
) -> Result<()> {
    let key = read_key(caller, key, import)?;
    let (offset, len) = chunk(total, offset, len, import)?;
    if let Some(mapped) = caller.data_mut().state.mapped_mut(&key) {
        if mapped.dirty.len() < DIRTY_RANGES_MAX {
            mapped.dirty.push((offset, offset + len));
        } else {
            mapped.dirty = vec![(0, mapped.len as usize)];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{chunk, runs_of_nonzero};

    #[test]
    fn a_mask_is_its_runs_of_nonzero_bytes() {
        assert_eq!(runs_of_nonzero(&[]), vec![]);
        assert_eq!(runs_of_nonzero(&[0, 0]), vec![]);
        assert_eq!(
            runs_of_nonzero(&[1, 1, 0, 2, 0, 0, 3]),
            vec![(0, 2), (3, 4), (6, 7)]
        );
        assert_eq!(runs_of_nonzero(&[0, 5, 5]), vec![(1, 3)]);
    }

    #[test]
    fn chunks_are_checked() {
        assert!(chunk(7, 2, 3, "t").is_ok());
        assert!(chunk(7, 4, 3, "t").is_ok());
        assert!(chunk(7, 5, 3, "t").is_err());
        assert!(chunk(7, -1, 3, "t").is_err());
        assert!(chunk(7, 1, -3, "t").is_err());
        assert!(chunk(-7, 0, 0, "t").is_err());
        assert!(chunk(i32::MAX, i32::MAX, i32::MAX, "t").is_err());
    }
}
