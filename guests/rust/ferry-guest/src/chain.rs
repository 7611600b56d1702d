//! Chained calls: other functions of the same user, or another entry of
//! this module, run as calls of their own.

use crate::sys;

/// A chained call, to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId(pub i32);

/// Starts function `name` of the same user with `input`. The host reads the
/// name up to its first NUL byte.
pub fn call(name: &str, input: &[u8]) -> CallId {
    let mut name_z = Vec::with_capacity(name.len() + 1);
    name_z.extend_from_slice(name.as_bytes());
    name_z.push(0);
    // SAFETY: `name_z` is NUL-terminated; the host reads it and `input`
    // during the call only.
    CallId(unsafe { sys::chain_name(name_z.as_ptr(), input.as_ptr(), sys::len(input.len())) })
}

/// Starts a new call of this module whose entry is `f`, with `input`
/// (which `f` reads with [`crate::input`]).
pub fn call_fn(f: extern "C" fn() -> i32, input: &[u8]) -> CallId {
    // SAFETY: the host reads `input` during the call; `f` is called through
    // the table with no arguments, as its type declares.
    CallId(unsafe {
        sys::chain_ptr(
            sys::table_index(f as usize),
            input.as_ptr(),
            sys::len(input.len()),
        )
    })
}

/// Waits for a chained call and returns its return code.
pub fn await_call(id: CallId) -> i32 {
    // SAFETY: no memory is passed.
    unsafe { sys::await_call(id.0) }
}

/// Waits for a chained call and returns its return code and up to
/// `max_len` bytes of its output. The ABI does not report the output's
/// length: the buffer starts zeroed and trailing zero bytes are dropped.
pub fn await_output(id: CallId, max_len: usize) -> (i32, Vec<u8>) {
    let mut buf = vec![0; max_len];
    // SAFETY: the host writes at most `buf.len()` bytes, into `buf`.
    let code = unsafe { sys::await_call_output(id.0, buf.as_mut_ptr(), sys::len(buf.len())) };
    let used = buf.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    buf.truncate(used);
    (code, buf)
}
