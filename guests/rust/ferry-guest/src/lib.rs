//! Safe wrappers over ferry's guest ABI (the `env` imports of Faasm and its
//! near-data fork, see ABI.md) for functions built with
//! `cargo build --target wasm32-wasip1`.
//!
//! A function is an ordinary `main`: it reads [`input`], sets its output
//! with [`set_output`], and returns its code through
//! `std::process::exit` (0 when `main` returns). Objects live in [`object`],
//! chained calls in [`chain`], and [`near`] runs a funclet next to an
//! object's data.
//!
//! ```ignore
//! fn main() {
//!     let input = ferry_guest::input();
//!     ferry_guest::set_output(&input);
//! }
//! ```

pub mod chain;
pub mod object;
mod sys;

use std::fmt;

/// The call's input bytes.
pub fn input() -> Vec<u8> {
    // SAFETY: with a zero length the host only returns the input's size.
    let size = unsafe { sys::read_input(std::ptr::null_mut(), 0) };
    let mut buf = vec![0; usize::try_from(size).unwrap_or(0)];
    if buf.is_empty() {
        return buf;
    }
    // SAFETY: the host writes at most `buf.len()` bytes, into `buf`.
    let copied = unsafe { sys::read_input(buf.as_mut_ptr(), sys::len(buf.len())) };
    buf.truncate(usize::try_from(copied).unwrap_or(0));
    buf
}

/// Sets the call's output; a later call replaces it.
pub fn set_output(bytes: &[u8]) {
    // SAFETY: the host only reads `bytes` during the call.
    unsafe { sys::write_output(bytes.as_ptr(), sys::len(bytes.len())) }
}

/// Runs funclet `f` near object `key` (on the storage node that holds it,
/// or locally) and returns its result. To the caller it is an ordinary call
/// of `f`: statics and the heap are as `f` left them, except the buffers
/// that [`object::get`] filled inside `f`, which must not be read after it
/// returns. Pass arguments and results through statics.
pub fn near(key: &[u8], f: extern "C" fn() -> i32) -> i32 {
    // SAFETY: `key` is read during the call only; the host calls `f` through
    // the table with no arguments, as its type declares.
    unsafe {
        sys::storage_call(
            key.as_ptr(),
            sys::len(key.len()),
            sys::table_index(f as usize),
        )
    }
}

/// [`near`] for a funclet of one argument, called with `a1`.
pub fn near1(key: &[u8], f: extern "C" fn(i32) -> i32, a1: i32) -> i32 {
    // SAFETY: as in `near`, with the one argument `f` declares.
    unsafe {
        sys::storage_call1(
            key.as_ptr(),
            sys::len(key.len()),
            sys::table_index(f as usize),
            a1,
        )
    }
}

/// [`near`] for a funclet of two arguments, called with `a1` and `a2`.
pub fn near2(key: &[u8], f: extern "C" fn(i32, i32) -> i32, a1: i32, a2: i32) -> i32 {
    // SAFETY: as in `near`, with the two arguments `f` declares.
    unsafe {
        sys::storage_call2(
            key.as_ptr(),
            sys::len(key.len()),
            sys::table_index(f as usize),
            a1,
            a2,
        )
    }
}

/// Runs closure `f` near object `key` and returns its result: [`near`]
/// without statics. The closure and what it borrows live in linear memory,
/// which travels with the funclet and comes back changed, so it may borrow
/// the caller's locals mutably; buffers from [`object::get`] taken inside
/// it must not outlive it.
pub fn near_with<F: FnMut() -> i32>(key: &[u8], mut f: F) -> i32 {
    extern "C" fn trampoline<F: FnMut() -> i32>(closure: i32) -> i32 {
        // SAFETY: `closure` is the address of `f` in `near_with`'s frame,
        // which outlives this call; nothing else touches `f` meanwhile.
        let f = unsafe { &mut *(closure as usize as *mut F) };
        f()
    }
    let closure = &mut f as *mut F as usize;
    near1(key, trampoline::<F>, sys::len(closure))
}

/// What the host refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `__faasmndp_put` returned `code`; the reason is in the call's log.
    Put { code: i32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Put { code } => write!(f, "storing the object failed (code {code})"),
        }
    }
}

impl std::error::Error for Error {}
