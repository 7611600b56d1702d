//! wordcount_rs: input "key" outputs a "word\tcount\n" line for each
//! distinct whitespace-separated word of object key, sorted by word in byte
//! order. The twin of wordcount.c, written with the SDK's closures: the
//! counting runs in a closure near the object that borrows the caller's
//! result buffer; the words are copied out of the object's pages, which do
//! not come back from the storage node.

use std::collections::BTreeMap;

use ferry_guest::{input, near_with, object, set_output};
use ferry_guest_examples::{fail, is_space};

fn main() {
    let key = input();
    let mut result = Vec::new();
    let found = near_with(&key, || {
        let Some(text) = object::get(&key) else {
            return 1;
        };
        let mut counts = BTreeMap::<&[u8], u64>::new();
        for word in text.split(|&b| is_space(b)).filter(|w| !w.is_empty()) {
            *counts.entry(word).or_default() += 1;
        }
        for (word, count) in counts {
            result.extend_from_slice(word);
            result.extend_from_slice(format!("\t{count}\n").as_bytes());
        }
        // SAFETY: `text` is a whole buffer from `get`; the words borrowed
        // from it went with `counts`.
        unsafe { object::unmap(text) };
        0
    });
    if found != 0 {
        fail(&[b"No object ", &key]);
    }
    set_output(&result);
}
