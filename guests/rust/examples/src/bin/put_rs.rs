//! put_rs: input "key value..." stores the value (everything after the
//! first space) as object key. The twin of put.c.

use ferry_guest::{input, object, set_output};
use ferry_guest_examples::{fail, split_key};

fn main() {
    let input = input();
    let Some((key, value)) = split_key(&input) else {
        fail(&[b"Bad input: expected \"<key> <value>\""])
    };
    if object::put(key, value).is_err() {
        fail(&[b"Put failed for ", key]);
    }
    set_output(b"OK");
}
