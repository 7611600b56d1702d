//! `faasm://` shared files backed by the object store. `faasm://PATH` is
//! the user's object `faasm/PATH` (`PUT /o/USER/faasm/PATH` uploads one);
//! the node keeps a copy of each in the user's shared directory
//! (exec/sandbox.rs), which the guest's WASI file calls reach.
//!
//! - Opening `faasm://PATH` first brings that copy up to date: the
//!   object's bytes replace it (written beside it and renamed, so a call
//!   that has it open keeps reading what it opened), or, with no such
//!   object, the copy is removed; then WASI's own `path_open` runs. A file
//!   this call already opened to write is left as the call made it.
//! - A file opened to write (created, truncated or with write rights) is
//!   put back as object `faasm/PATH` when the call ends normally (its
//!   entry returns or it exits through `proc_exit`); a call that traps or
//!   runs out of time writes nothing back.
//!   A failed write back fails the call; the put counts against the
//!   user's object quota like any other.
//! - A file over [`SHARED_FILE_BYTES_MAX`] is neither fetched nor written
//!   back: opening it fails with EFBIG, writing it back fails the call.
//!
//! What is not carried over: removing or renaming a copy changes this
//! node's copy only; the object stays until a write back replaces it.
//!
//! Writes to files (`fd_write`, `fd_pwrite` on any descriptor but stdio)
//! count against the call's `limits.file_bytes_max`: a write that would
//! pass it fails with ENOSPC and writes nothing, so a call cannot fill the
//! node's disk. Every byte written counts, also over bytes written before.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::{format_err as anyhow, Result};
use wasmtime::{Caller, Linker, Store};
use wasmtime_wasi::p1::{self, wasi_snapshot_preview1::WasiSnapshotPreview1};

use super::guest::{guest_range, memory, on_shard, read_bytes, write_bytes};
use crate::exec::sandbox::SHARED_FD;
use crate::exec::CallCtx;
use crate::limits::SHARED_FILE_BYTES_MAX;
use crate::shard::LocalShard;

/// The object key prefix of a user's shared files.
pub const SHARED_KEY_PREFIX: &str = "faasm/";

/// WASI's `oflags` bits that create or truncate, and the write right.
const OFLAGS_CREAT: i32 = 1;
const OFLAGS_TRUNC: i32 = 8;
const RIGHT_FD_WRITE: i64 = 1 << 6;
/// WASI errno values answered here.
const ERRNO_FBIG: i32 = 22;
const ERRNO_IO: i32 = 29;
const ERRNO_NOSPC: i32 = 51;
/// Descriptors 0 to 2 are stdio, never files.
const FIRST_FILE_FD: i32 = 3;

const IMPORT: &str = "path_open";

pub(super) fn add(linker: &mut Linker<CallCtx>) -> Result<()> {
    // Replaces WASI's own `path_open`, which it calls in turn.
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        IMPORT,
        |mut caller: Caller<'_, CallCtx>,
         (fd, dirflags, path, path_len, oflags, rights, inheriting, fdflags, opened): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            on_shard(async move {
                let open = Open {
                    fd,
                    dirflags,
                    path,
                    path_len,
                    oflags,
                    rights,
                    inheriting,
                    fdflags,
                    opened,
                };
                path_open(&mut caller, open).await
            })
        },
    )?;
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, CallCtx>, (fd, iovs, iovs_len, written): (i32, i32, i32, i32)| {
            on_shard(
                async move { counted_write(&mut caller, fd, iovs, iovs_len, None, written).await },
            )
        },
    )?;
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "fd_pwrite",
        |mut caller: Caller<'_, CallCtx>,
         (fd, iovs, iovs_len, offset, written): (i32, i32, i32, i64, i32)| {
            on_shard(async move {
                counted_write(&mut caller, fd, iovs, iovs_len, Some(offset), written).await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// WASI's `fd_write` (or `fd_pwrite` at `offset`), refused with ENOSPC when
/// a write to a file would take the call past its file bytes cap.
async fn counted_write(
    caller: &mut Caller<'_, CallCtx>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: Option<i64>,
    written: i32,
) -> Result<i32> {
    const WRITE: &str = "fd_write";
    let counted = fd >= FIRST_FILE_FD && caller.data().dirs.is_some();
    if counted {
        // WASI writes the first non-empty buffer only: that is the most
        // this write can add.
        // The (ptr, len) array is checked once and read in place; one
        // outside memory is left to WASI, which answers it with an errno
        // and writes nothing.
        let mem = memory(caller, WRITE)?;
        let size = mem.data_size(&*caller);
        let asked = guest_range(size, iovs, i64::from(iovs_len as u32) * 8, WRITE)
            .map(|array| {
                mem.data(&*caller)[array]
                    .chunks_exact(8)
                    .map(|entry| u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]))
                    .find(|len| *len > 0)
                    .map_or(0, u64::from)
            })
            .unwrap_or(0);
        let ctx = caller.data();
        if ctx.file_bytes_written.saturating_add(asked) > ctx.file_bytes_max {
            let max = ctx.file_bytes_max;
            caller.data_mut().log_host(format_args!(
                "{WRITE}: the call's files would pass its cap of {max} bytes (limits.file_bytes_max)"
            ));
            return Ok(ERRNO_NOSPC);
        }
    }
    let mem = memory(caller, WRITE)?;
    let (data, ctx) = mem.data_and_store_mut(&mut *caller);
    let mut guest = wiggle::GuestMemory::Unshared(data);
    let ciovs = wiggle::GuestPtr::new((iovs as u32, iovs_len as u32));
    let fd = p1::types::Fd::from(fd as u32);
    let result = match offset {
        None => WasiSnapshotPreview1::fd_write(&mut ctx.wasi, &mut guest, fd, ciovs).await,
        Some(offset) => {
            WasiSnapshotPreview1::fd_pwrite(&mut ctx.wasi, &mut guest, fd, ciovs, offset as u64)
                .await
        }
    };
    match result {
        Ok(n) => {
            write_bytes(caller, written, &n.to_le_bytes(), WRITE)?;
            if counted {
                caller.data_mut().file_bytes_written += u64::from(n);
            }
            Ok(0)
        }
        Err(error) => match error.downcast() {
            Ok(errno) => Ok(errno as i32),
            Err(trap) => Err(trap),
        },
    }
}

/// `path_open`'s arguments as the guest passed them.
struct Open {
    fd: i32,
    dirflags: i32,
    path: i32,
    path_len: i32,
    oflags: i32,
    rights: i64,
    inheriting: i64,
    fdflags: i32,
    opened: i32,
}

async fn path_open(caller: &mut Caller<'_, CallCtx>, open: Open) -> Result<i32> {
    let mut writes_shared = None;
    if open.fd as u32 == SHARED_FD && caller.data().dirs.is_some() {
        let path = read_bytes(caller, open.path, open.path_len, IMPORT)?;
        if let Some(relative) = std::str::from_utf8(&path).ok().and_then(relative_path) {
            let written = caller
                .data()
                .dirs
                .as_ref()
                .is_some_and(|d| d.shared_written.contains(&relative));
            if !written {
                if let Err(errno) = fetch(caller, &relative).await {
                    return Ok(errno);
                }
            }
            let writes = open.oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0
                || open.rights & RIGHT_FD_WRITE != 0;
            if writes && !written {
                writes_shared = Some(relative);
            }
        }
    }
    let errno = wasi_path_open(caller, &open).await?;
    if let (0, Some(relative)) = (errno, writes_shared) {
        if let Some(dirs) = caller.data_mut().dirs.as_mut() {
            dirs.shared_written.push(relative);
        }
    }
    Ok(errno)
}

/// WASI's own `path_open`, called as the guest's would be.
async fn wasi_path_open(caller: &mut Caller<'_, CallCtx>, open: &Open) -> Result<i32> {
    let mem = memory(caller, IMPORT)?;
    let (data, ctx) = mem.data_and_store_mut(&mut *caller);
    let mut guest = wiggle::GuestMemory::Unshared(data);
    let opened = WasiSnapshotPreview1::path_open(
        &mut ctx.wasi,
        &mut guest,
        p1::types::Fd::from(open.fd as u32),
        p1::types::Lookupflags::from_bits_truncate(open.dirflags as u32),
        wiggle::GuestPtr::new((open.path as u32, open.path_len as u32)),
        p1::types::Oflags::from_bits_truncate(open.oflags as u16),
        p1::types::Rights::from_bits_truncate(open.rights as u64),
        p1::types::Rights::from_bits_truncate(open.inheriting as u64),
        p1::types::Fdflags::from_bits_truncate(open.fdflags as u16),
    )
    .await;
    match opened {
        Ok(fd) => {
            write_bytes(caller, open.opened, &u32::from(fd).to_le_bytes(), IMPORT)?;
            Ok(0)
        }
        Err(error) => match error.downcast() {
            Ok(errno) => Ok(errno as i32),
            Err(trap) => Err(trap),
        },
    }
}

/// A guest path inside the shared directory as a plain relative path
/// (`a/b`), or None for one this layer leaves to WASI: empty, absolute,
/// or with `..` (WASI refuses what would leave the directory).
fn relative_path(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty() && !path.starts_with('/')).then(|| parts.join("/"))
}

fn host_path(caller: &Caller<'_, CallCtx>, relative: &str) -> Option<PathBuf> {
    let dirs = caller.data().dirs.as_ref()?;
    Some(dirs.shared.join(relative))
}

/// Brings this node's copy of `faasm://relative` up to date with its
/// object; Err is the errno to answer the open with.
async fn fetch(caller: &mut Caller<'_, CallCtx>, relative: &str) -> Result<(), i32> {
    let Some(target) = host_path(caller, relative) else {
        return Ok(());
    };
    let user = caller.data().spec.user.clone();
    let key = format!("{SHARED_KEY_PREFIX}{relative}");
    let fail = |caller: &mut Caller<'_, CallCtx>, errno: i32, why: String| {
        caller
            .data_mut()
            .log_host(format_args!("faasm://{relative}: {why}"));
        Err(errno)
    };
    let shard = match LocalShard::current(IMPORT) {
        Ok(shard) => shard,
        Err(error) => return fail(caller, ERRNO_IO, error.to_string()),
    };
    let object = shard
        .objects()
        .get(&user, key.as_bytes(), 0, SHARED_FILE_BYTES_MAX + 1)
        .await;
    match object {
        Ok(Some(bytes)) if bytes.len() as u64 > SHARED_FILE_BYTES_MAX => fail(
            caller,
            ERRNO_FBIG,
            format!("the object is over the shared file cap of {SHARED_FILE_BYTES_MAX} bytes"),
        ),
        Ok(Some(bytes)) => {
            // File I/O runs on the shard's blocking pool, not its thread.
            let updated = glommio::executor()
                .spawn_blocking(move || replace(&target, &bytes))
                .await;
            match updated {
                Ok(()) => Ok(()),
                Err(error) => fail(
                    caller,
                    ERRNO_IO,
                    format!("updating this node's copy: {error}"),
                ),
            }
        }
        Ok(None) => {
            // A directory, or a copy that cannot go, is left to WASI's
            // open.
            glommio::executor()
                .spawn_blocking(move || drop(std::fs::remove_file(&target)))
                .await;
            Ok(())
        }
        Err(error) => fail(caller, ERRNO_IO, format!("reading the object: {error}")),
    }
}

/// Writes `bytes` beside `target` and renames it over `target`.
fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("a shared file with no directory"))?;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".ferry-fetch-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, target));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// A shared file's bytes; None when it is no longer a file.
fn read_capped(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) if file.metadata()?.is_file() => file,
        _ => return Ok(None),
    };
    let mut bytes = Vec::new();
    file.take(SHARED_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > SHARED_FILE_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "over the shared file cap of {SHARED_FILE_BYTES_MAX} bytes"
        )));
    }
    Ok(Some(bytes))
}

/// Puts every shared file the call opened to write back as its object
/// (run once the call's entry has returned normally).
pub fn write_back(
    store: &mut Store<CallCtx>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + '_>> {
    Box::pin(async move {
        let Some(dirs) = store.data_mut().dirs.as_mut() else {
            return Ok(());
        };
        let written = std::mem::take(&mut dirs.shared_written);
        if written.is_empty() {
            return Ok(());
        }
        let shared = dirs.shared.clone();
        let user = store.data().spec.user.clone();
        let shard = LocalShard::current("faasm:// write back")?;
        for relative in written {
            let path = shared.join(&relative);
            // File I/O runs on the shard's blocking pool, not its thread.
            let read = glommio::executor()
                .spawn_blocking(move || read_capped(&path))
                .await;
            let bytes = match read {
                Ok(Some(bytes)) => bytes,
                // Removed or replaced by a directory since: nothing to put.
                Ok(None) => continue,
                Err(e) => return Err(anyhow!("writing back faasm://{relative}: {e}")),
            };
            let len = bytes.len() as u64;
            let key = format!("{SHARED_KEY_PREFIX}{relative}");
            // Counted against the user's object quota, as every put.
            let ticket = shard
                .node
                .quotas
                .admit_put(shard.objects(), &user, key.as_bytes(), len)
                .await
                .map_err(|e| anyhow!("writing back faasm://{relative}: {e}"))?;
            shard
                .objects()
                .put(&user, key.as_bytes(), &bytes)
                .await
                .map_err(|e| anyhow!("writing back faasm://{relative}: {e}"))?;
            ticket.done();
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::relative_path;

    #[test]
    fn only_plain_relative_paths_are_synced() {
        assert_eq!(relative_path("a/b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(relative_path("./a//b.txt").as_deref(), Some("a/b.txt"));
        for refused in ["", ".", "/etc/passwd", "a/../../x", "..", "a/.."] {
            assert_eq!(relative_path(refused), None, "{refused}");
        }
    }
}
