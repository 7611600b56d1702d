//! Objects: bytes named by a key inside the calling user's namespace.

use crate::{sys, Error};

/// Maps the whole of object `key` into fresh pages at the end of linear
/// memory. `None` when the object is missing or empty, or on a storage
/// error. The bytes stay valid until [`unmap`]; inside a funclet (see
/// [`crate::near`]) they are not sent back to the caller, so copy out what
/// must outlive it.
pub fn get(key: &[u8]) -> Option<&'static [u8]> {
    let mut len: u32 = 0;
    // SAFETY: `key` is read during the call; the host writes a u32 to `len`.
    let ptr = unsafe {
        sys::get_mmap(
            key.as_ptr(),
            sys::len(key.len()),
            0,
            i64::from(u32::MAX),
            &mut len,
        )
    };
    if ptr == 0 || ptr == -1 || len == 0 {
        return None;
    }
    // SAFETY: the host grew memory by fresh pages and filled `len` bytes at
    // `ptr` with the object. Those pages lie beyond the allocator's heap, so
    // nothing else in the module writes them until they are unmapped.
    Some(unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len as usize) })
}

/// Creates or replaces object `key`; durable when it returns.
pub fn put(key: &[u8], bytes: &[u8]) -> Result<(), Error> {
    // SAFETY: the host only reads `key` and `bytes` during the call.
    let code = unsafe {
        sys::put(
            key.as_ptr(),
            sys::len(key.len()),
            bytes.as_ptr(),
            sys::len(bytes.len()),
        )
    };
    match code {
        0 => Ok(()),
        code => Err(Error::Put { code }),
    }
}

/// Hands a buffer from [`get`] back to the runtime, which may reuse its
/// pages for a later [`get`].
///
/// # Safety
/// `bytes` must be a whole buffer returned by [`get`], and neither it nor
/// anything borrowed from it may be used afterwards.
pub unsafe fn unmap(bytes: &[u8]) {
    // SAFETY: the caller gives up `bytes`; the host only takes the range back.
    unsafe { sys::unmap(bytes.as_ptr(), sys::len(bytes.len())) };
}
