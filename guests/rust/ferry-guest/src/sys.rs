//! The host imports in module `env`, exactly as ABI.md declares them.
//! Pointers are i32 offsets into linear memory (a Rust pointer on wasm32),
//! lengths are i32, and a function pointer is an index into the table.

#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "__faasm_read_input"]
    pub fn read_input(buf: *mut u8, len: i32) -> i32;
    #[link_name = "__faasm_write_output"]
    pub fn write_output(buf: *const u8, len: i32);

    #[link_name = "__faasm_chain_name"]
    pub fn chain_name(name: *const u8, input: *const u8, len: i32) -> i32;
    #[link_name = "__faasm_chain_ptr"]
    pub fn chain_ptr(func: i32, input: *const u8, len: i32) -> i32;
    #[link_name = "__faasm_await_call"]
    pub fn await_call(id: i32) -> i32;
    #[link_name = "__faasm_await_call_output"]
    pub fn await_call_output(id: i32, buf: *mut u8, len: i32) -> i32;

    #[link_name = "__faasmndp_put"]
    pub fn put(key: *const u8, key_len: i32, data: *const u8, data_len: i32) -> i32;
    #[link_name = "__faasmndp_getMmap"]
    pub fn get_mmap(
        key: *const u8,
        key_len: i32,
        offset: i64,
        max_len: i64,
        out_len: *mut u32,
    ) -> i32;
    #[link_name = "__faasmndp_unmap"]
    pub fn unmap(ptr: *const u8, len: i32) -> i32;
    #[link_name = "__faasmndp_storageCallAndAwait"]
    pub fn storage_call(key: *const u8, key_len: i32, func: i32) -> i32;
    #[link_name = "__faasmndp_storageCallAndAwait1"]
    pub fn storage_call1(key: *const u8, key_len: i32, func: i32, a1: i32) -> i32;
    #[link_name = "__faasmndp_storageCallAndAwait2"]
    pub fn storage_call2(key: *const u8, key_len: i32, func: i32, a1: i32, a2: i32) -> i32;
}

/// A length as the ABI's i32. Slices over 2 GiB turn negative, which the
/// host refuses by faulting the call rather than reading a wrong range.
pub fn len(n: usize) -> i32 {
    n as i32
}

/// A function's index in the module's table, which is what a function
/// pointer is on wasm32.
pub fn table_index(f: usize) -> i32 {
    f as i32
}
