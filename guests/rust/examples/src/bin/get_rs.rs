//! get_rs: input "key" outputs the bytes of object key. The twin of get.c.

use ferry_guest::{input, object, set_output};
use ferry_guest_examples::fail;

fn main() {
    let key = input();
    let Some(bytes) = object::get(&key) else {
        fail(&[b"No object ", &key])
    };
    set_output(bytes);
    // SAFETY: `bytes` is a whole buffer from `get` and is not used again.
    unsafe { object::unmap(bytes) };
}
