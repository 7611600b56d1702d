//! The host ABI's pointer checks: `host::guest::guest_range` (every pointer and
//! length a guest hands an import) and `host::guest::cstr_at` (`read_cstr`'s NUL
//! and UTF-8 checks), against an independent statement of what they must
//! accept.
//!
//! Input, little-endian: memory size u64, pointer i32, length i64, string
//! max u64, then the bytes of a small memory for the string check.
//!
//! Invariants: nothing panics; a range is Ok exactly when it lies inside the
//! memory, and then it is `[ptr as u32, +len)`; a string is Ok exactly when
//! a NUL follows within `max` bytes of an in-bounds pointer and the bytes
//! before it are UTF-8, and then it is those bytes.
#![no_main]

use ferry_runtime::host::guest::{cstr_at, guest_range};
use libfuzzer_sys::fuzz_target;

const HEADER_BYTES: usize = 8 + 4 + 8 + 8;

fuzz_target!(|data: &[u8]| {
    let mut header = [0u8; HEADER_BYTES];
    let n = data.len().min(HEADER_BYTES);
    header[..n].copy_from_slice(&data[..n]);
    let memory = &data[n..];
    let size = u64::from_le_bytes(header[0..8].try_into().unwrap_or_default());
    let ptr = i32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
    let len = i64::from_le_bytes(header[12..20].try_into().unwrap_or_default());
    let max = u64::from_le_bytes(header[20..28].try_into().unwrap_or_default());

    // Any memory size a usize holds (wasm32 memories are at most 4 GiB).
    check_range(size as usize, ptr, len);
    // The host reads and writes through i32 lengths widened to i64.
    check_range(size as usize, ptr, i64::from(len as i32));
    // Against a real memory: indexing with an Ok range must not panic.
    if let Ok(range) = guest_range(memory.len(), ptr, len, "fuzz") {
        let _ = &memory[range];
    }
    check_cstr(memory, ptr, max as usize);
});

fn check_range(size: usize, ptr: i32, len: i64) {
    let start = ptr as u32 as u128;
    let inside = len >= 0 && start + len as u128 <= size as u128;
    match guest_range(size, ptr, len, "fuzz") {
        Ok(range) => {
            assert!(inside, "accepted [{start:#x}, +{len}) in {size} bytes");
            assert_eq!(range.start as u128, start);
            assert_eq!((range.end - range.start) as u128, len as u128);
            assert!(range.end <= size);
        }
        Err(_) => assert!(!inside, "refused [{start:#x}, +{len}) in {size} bytes"),
    }
}

fn check_cstr(memory: &[u8], ptr: i32, max: usize) {
    let expected = (|| {
        let tail = memory.get(ptr as u32 as usize..)?;
        let window = &tail[..tail.len().min(max.saturating_add(1))];
        let nul = window.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&tail[..nul]).ok()
    })();
    let got = cstr_at(memory, ptr, max, "fuzz").ok();
    assert_eq!(got.as_deref(), expected, "ptr {ptr:#x} max {max}");
}
