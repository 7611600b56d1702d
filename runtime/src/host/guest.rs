//! What every host function does with the guest first: find its memory,
//! check a pointer and length against it, read or write bytes or a C
//! string there, and run its async body on the shard's executor.

use std::future::Future;
use std::ops::Range;

use send_wrapper::SendWrapper;
use wasmtime::Caller;
use wasmtime::{bail, format_err as anyhow, Result};

use crate::exec::CallCtx;

pub(crate) use crate::exec::memory;

/// The byte range `[ptr, ptr + len)` of a memory of `size` bytes, or the
/// fault that names the import. Pointers are unsigned 32-bit offsets.
/// Public for the fuzz target (`fuzz/fuzz_targets/host.rs`).
#[doc(hidden)]
pub fn guest_range(size: usize, ptr: i32, len: i64, import: &str) -> Result<Range<usize>> {
    if len < 0 {
        bail!("env::{import}: negative length {len}");
    }
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as usize)
        .filter(|end| *end <= size)
        .ok_or_else(|| {
            anyhow!(
                "env::{import}: guest range [{start:#x}, +{len}) is outside linear memory of {size} bytes"
            )
        })?;
    Ok(start..end)
}

/// Copies `[ptr, ptr + len)` out of the guest.
pub(crate) fn read_bytes(
    caller: &mut Caller<'_, CallCtx>,
    ptr: i32,
    len: i32,
    import: &str,
) -> Result<Vec<u8>> {
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), ptr, i64::from(len), import)?;
    Ok(mem.data(&*caller)[range].to_vec())
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write_bytes(
    caller: &mut Caller<'_, CallCtx>,
    ptr: i32,
    bytes: &[u8],
    import: &str,
) -> Result<()> {
    let mem = memory(caller, import)?;
    let range = guest_range(mem.data_size(&*caller), ptr, bytes.len() as i64, import)?;
    mem.data_mut(&mut *caller)[range].copy_from_slice(bytes);
    Ok(())
}

/// A NUL-terminated UTF-8 string of at most `max` bytes at `ptr`.
pub(crate) fn read_cstr(
    caller: &mut Caller<'_, CallCtx>,
    ptr: i32,
    max: usize,
    import: &str,
) -> Result<String> {
    let mem = memory(caller, import)?;
    cstr_at(mem.data(&*caller), ptr, max, import)
}

/// [`read_cstr`]'s checks on a memory's bytes: the string at `ptr`, NUL
/// within `max` bytes, UTF-8. Public for the fuzz target.
#[doc(hidden)]
pub fn cstr_at(data: &[u8], ptr: i32, max: usize, import: &str) -> Result<String> {
    let start = ptr as u32 as usize;
    let tail = data.get(start..).ok_or_else(|| {
        anyhow!("env::{import}: string pointer {start:#x} is outside linear memory")
    })?;
    // `max` is the host's own bound, but `max + 1` must not overflow for
    // any of them (found by the host fuzz target with usize::MAX).
    let len = tail
        .iter()
        .take(max.saturating_add(1))
        .position(|b| *b == 0)
        .ok_or_else(|| {
            anyhow!("env::{import}: string at {start:#x} is not NUL-terminated within {max} bytes")
        })?;
    String::from_utf8(tail[..len].to_vec())
        .map_err(|_| anyhow!("env::{import}: string at {start:#x} is not UTF-8"))
}

/// Host futures run on the shard's glommio executor and may hold its
/// (!Send) handles; wasmtime asks for `Send`. The fiber that polls them
/// never leaves the shard's thread, and `SendWrapper` checks exactly that
/// at run time.
pub(crate) fn on_shard<'a, T: 'a>(
    future: impl Future<Output = Result<T>> + 'a,
) -> Box<dyn Future<Output = Result<T>> + Send + 'a> {
    Box::new(SendWrapper::new(future))
}

#[cfg(test)]
mod tests {
    use super::{cstr_at, guest_range};

    #[test]
    fn ranges_are_checked() {
        let check = |ptr: i32, len: i64, ok: bool| {
            assert_eq!(guest_range(65536, ptr, len, "t").is_ok(), ok, "{ptr} {len}")
        };
        check(0, 0, true);
        check(0, 65536, true);
        check(1, 65536, false);
        check(65536, 0, true);
        check(65537, 0, false);
        check(-1, 1, false); // 0xffffffff
        check(0x7fff_ff00, 4096, false);
        check(0, -1, false);
        check(100, i64::from(i32::MAX), false);
    }

    #[test]
    fn strings_are_checked() {
        let memory = b"ab\0\xff\0cd";
        let check = |ptr: i32, max: usize, expected: Option<&str>| {
            let got = cstr_at(memory, ptr, max, "t").ok();
            assert_eq!(got.as_deref(), expected, "{ptr} {max}")
        };
        check(0, 2, Some("ab"));
        check(0, 1, None); // the NUL is past max
        check(2, 0, Some(""));
        check(3, 8, None); // not UTF-8
        check(5, 8, None); // no NUL before the end
        check(8, 8, None); // pointer at the end
        check(-1, 8, None); // 0xffffffff
        check(0, usize::MAX, Some("ab")); // `max + 1` overflowed (host fuzz target)
    }
}
