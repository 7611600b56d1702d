//! What the NDP example functions share: splitting the input, failing with
//! a message, and the statics that carry a funclet's arguments and result.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Splits `input` at its first space into a non-empty key and the rest.
pub fn split_key(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = input.iter().position(|&b| b == b' ')?;
    (space > 0).then(|| (&input[..space], &input[space + 1..]))
}

/// Sets `message` as the output and ends the call with code 1.
pub fn fail(message: &[&[u8]]) -> ! {
    ferry_guest::set_output(&message.concat());
    std::process::exit(1)
}

/// Locks a static. Funclets run on the one thread, so it never waits, and
/// panics abort, so it is never poisoned.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bytes C's isspace() takes in the C locale (which, unlike
/// `u8::is_ascii_whitespace`, include vertical tab).
pub fn is_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}
