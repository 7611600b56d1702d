//! The invocation API's JSON message: the body of any request to port 8080
//! through `http::invoke::parse_message`, exactly what a request does before
//! it reaches the registry.
//!
//! Invariants: nothing panics (deep nesting, huge numbers, bad UTF-8,
//! duplicate fields); an accepted body is a JSON object or array (serde
//! reads a struct from either); a refusal says why.
//!
//! Not asserted: that an accepted body is strict JSON. serde_json skips a
//! value it ignores without checking its strings, so an unknown field whose
//! string holds invalid UTF-8 or a lone surrogate escape (`"\ude00"`) is
//! accepted. The first runs found both; the fields ferry reads are
//! `String`s and are checked, so this is serde_json's leniency, not a fault.
#![no_main]

use ferry_runtime::http::invoke::parse_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match parse_message(body) {
        Ok(message) => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            assert!(
                matches!(first, Some(b'{' | b'[')),
                "accepted a body that is not an object or array: {message:?}"
            );
        }
        Err(reason) => {
            assert!(
                reason == "Empty request" || reason.starts_with("Invalid JSON message: "),
                "{reason}"
            );
        }
    }
});
