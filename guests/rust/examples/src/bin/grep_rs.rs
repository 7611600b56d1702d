//! grep_rs: input "key regex" outputs the byte offsets at which the
//! non-overlapping matches of the regex start in object key, separated by
//! spaces. The twin of grep.c: the object is searched as text up to its
//! first NUL byte, `.` matches any byte, and `^`/`$` hold only at the ends,
//! as regexec does with REG_EXTENDED. The search runs in a funclet near the
//! object.

use std::sync::Mutex;

use ferry_guest::{input, near, object, set_output};
use ferry_guest_examples::{fail, lock, split_key};
use regex::bytes::RegexBuilder;

const GREP_OK: i32 = 0;
const GREP_NO_OBJECT: i32 = 1;
const GREP_BAD_REGEX: i32 = 2;

/// The funclet's arguments and result.
static KEY: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static PATTERN: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static RESULT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Bytes up to the first NUL, as C reads a string.
fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

extern "C" fn grep() -> i32 {
    let pattern = lock(&PATTERN);
    let Ok(pattern) = std::str::from_utf8(until_nul(&pattern)) else {
        return GREP_BAD_REGEX;
    };
    let Ok(re) = RegexBuilder::new(pattern)
        .unicode(false)
        .dot_matches_new_line(true)
        .build()
    else {
        return GREP_BAD_REGEX;
    };
    let Some(object) = object::get(&lock(&KEY)) else {
        return GREP_NO_OBJECT;
    };
    let text = until_nul(object);
    let mut offsets = Vec::new();
    let mut pos = 0;
    while let Some(m) = re.find_at(text, pos) {
        offsets.push(m.start().to_string());
        // After an empty match, move on one byte.
        pos = if m.end() > m.start() {
            m.end()
        } else {
            m.start() + 1
        };
        if pos > text.len() {
            break;
        }
    }
    // SAFETY: `object` is a whole buffer from `get`; the matches borrowed
    // from it are gone.
    unsafe { object::unmap(object) };
    *lock(&RESULT) = offsets.join(" ").into_bytes();
    GREP_OK
}

fn main() {
    let input = input();
    let Some((key, pattern)) = split_key(&input) else {
        fail(&[b"Bad input: expected \"<key> <regex>\""])
    };
    *lock(&KEY) = key.to_vec();
    *lock(&PATTERN) = pattern.to_vec();
    match near(key, grep) {
        GREP_OK => set_output(&lock(&RESULT)),
        GREP_NO_OBJECT => fail(&[b"No object ", key]),
        _ => fail(&[b"Bad regex ", until_nul(pattern)]),
    }
}
