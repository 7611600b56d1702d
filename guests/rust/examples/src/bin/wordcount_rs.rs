//! wordcount_rs: input "key" outputs a "word\tcount\n" line for each
//! distinct whitespace-separated word of object key, sorted by word in byte
//! order. The twin of wordcount.c: the counting runs in a funclet near the
//! object, and its result is copied out of the object's pages, which do not
//! come back from the storage node.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ferry_guest::{input, near, object, set_output};
use ferry_guest_examples::{fail, is_space, lock};

/// The funclet's argument and result.
static KEY: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static RESULT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

extern "C" fn count_words() -> i32 {
    let key = lock(&KEY);
    let Some(text) = object::get(&key) else {
        return 1;
    };
    let mut counts = BTreeMap::<&[u8], u64>::new();
    for word in text.split(|&b| is_space(b)).filter(|w| !w.is_empty()) {
        *counts.entry(word).or_default() += 1;
    }
    let mut result = lock(&RESULT);
    for (word, count) in counts {
        result.extend_from_slice(word);
        result.extend_from_slice(format!("\t{count}\n").as_bytes());
    }
    // SAFETY: `text` is a whole buffer from `get`; the words borrowed from it
    // went with `counts`.
    unsafe { object::unmap(text) };
    0
}

fn main() {
    let key = input();
    lock(&KEY).clone_from(&key);
    if near(&key, count_words) != 0 {
        fail(&[b"No object ", &key]);
    }
    set_output(&lock(&RESULT));
}
