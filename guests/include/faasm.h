/*
 * faasm.h: the guest ABI of ferry (and of Faasm and its near-data fork) for
 * C functions built with clang --target=wasm32-wasi against wasi-libc.
 *
 * The first half declares the host imports exactly as the runtime defines
 * them (module "env"; pointers and lengths are i32, getMmap's offset and
 * max_len are i64). The second half has static inline helpers with C types:
 * sizes as size_t, function pointers instead of table indices, and getMmap
 * returning a pointer or NULL.
 */
#ifndef FAASM_H
#define FAASM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAASM_IMPORT(name) __attribute__((import_module("env"), import_name(name)))

/* Input and output */
FAASM_IMPORT("__faasm_read_input")
int32_t __faasm_read_input(void *buf, int32_t len);
FAASM_IMPORT("__faasm_write_output")
void __faasm_write_output(const void *buf, int32_t len);

/* Chaining. `fn` is an index into the module's function table. */
FAASM_IMPORT("__faasm_chain_name")
int32_t __faasm_chain_name(const char *name, const void *input, int32_t len);
FAASM_IMPORT("__faasm_chain_ptr")
int32_t __faasm_chain_ptr(int32_t fn, const void *input, int32_t len);
FAASM_IMPORT("__faasm_await_call")
int32_t __faasm_await_call(int32_t id);
FAASM_IMPORT("__faasm_await_call_output")
int32_t __faasm_await_call_output(int32_t id, void *buf, int32_t len);

/* Objects (near-data). Keys are bytes, not NUL-terminated. */
FAASM_IMPORT("__faasmndp_put")
int32_t __faasmndp_put(const void *key, int32_t key_len, const void *data, int32_t data_len);
/* Returns the buffer's address, 0 when missing or empty, -1 on a storage error.
 * The byte after the *out_len bytes of data is 0 (ferry). */
FAASM_IMPORT("__faasmndp_getMmap")
int32_t __faasmndp_getMmap(const void *key, int32_t key_len, int64_t offset, int64_t max_len,
                           uint32_t *out_len);
FAASM_IMPORT("__faasmndp_unmap")
int32_t __faasmndp_unmap(const void *ptr, int32_t len);
FAASM_IMPORT("__faasmndp_storageCallAndAwait")
int32_t __faasmndp_storageCallAndAwait(const void *key, int32_t key_len, int32_t fn);
FAASM_IMPORT("__faasmndp_storageCallAndAwait1")
int32_t __faasmndp_storageCallAndAwait1(const void *key, int32_t key_len, int32_t fn, int32_t a1);
FAASM_IMPORT("__faasmndp_storageCallAndAwait2")
int32_t __faasmndp_storageCallAndAwait2(const void *key, int32_t key_len, int32_t fn, int32_t a1,
                                        int32_t a2);

/* A C function pointer is an index into the module's function table. */
#define FAASM_TABLE_INDEX(fn) ((int32_t)(uintptr_t)(fn))

/* The size of the call's input in bytes. */
static inline size_t faasmGetInputSize(void) {
    return (size_t)__faasm_read_input(NULL, 0);
}

/* Copies up to `len` bytes of the input to `buf`; returns the count. */
static inline size_t faasmGetInput(void *buf, size_t len) {
    return len == 0 ? 0 : (size_t)__faasm_read_input(buf, (int32_t)len);
}

/* Sets the call's output (a later call replaces it). */
static inline void faasmSetOutput(const void *buf, size_t len) {
    __faasm_write_output(buf, (int32_t)len);
}

/* Starts function `name` of the same user with that input; returns a call id. */
static inline int faasmChainNamed(const char *name, const void *input, size_t len) {
    return __faasm_chain_name(name, input, (int32_t)len);
}

/* Starts a new call of this module whose entry is `fn`; returns a call id. */
static inline int faasmChainPtr(int (*fn)(void), const void *input, size_t len) {
    return __faasm_chain_ptr(FAASM_TABLE_INDEX(fn), input, (int32_t)len);
}

/* Waits for a chained call; returns its return code. */
static inline int faasmAwaitCall(int id) {
    return __faasm_await_call(id);
}

/*
 * Waits for a chained call and copies up to `len` bytes of its output to
 * `buf`; returns its return code. The ABI does not report the output's
 * length: zero the buffer first to read the output as a string.
 */
static inline int faasmAwaitCallOutput(int id, void *buf, size_t len) {
    return __faasm_await_call_output(id, buf, (int32_t)len);
}

/* Creates or replaces object `key`. 0 on success, -1 on error. */
static inline int faasmNdpPut(const char *key, size_t key_len, const void *data, size_t len) {
    return __faasmndp_put(key, (int32_t)key_len, data, (int32_t)len);
}

/*
 * Maps the whole of object `key` into fresh pages at the end of linear
 * memory and stores its size in `*out_len`; the byte after it is 0, so a
 * text object reads as a C string in place. Returns NULL (and 0 in
 * `*out_len`) when the object is missing or empty, or on a storage error.
 * Inside a funclet the buffer is not sent back to the caller: copy out what
 * must outlive the funclet.
 */
static inline uint8_t *faasmNdpGetMmap(const char *key, size_t key_len, uint32_t *out_len) {
    int32_t ptr = __faasmndp_getMmap(key, (int32_t)key_len, 0, UINT32_MAX, out_len);
    if (ptr == 0 || ptr == -1) {
        *out_len = 0;
        return NULL;
    }
    return (uint8_t *)(uintptr_t)(uint32_t)ptr;
}

/* Hands a buffer from faasmNdpGetMmap back to the runtime. */
static inline int faasmNdpUnmap(const void *ptr, size_t len) {
    return __faasmndp_unmap(ptr, (int32_t)len);
}

/* Runs `fn` near object `key` (possibly on its storage node); returns its result. */
static inline int faasmNdpStorageCall(const char *key, size_t key_len, int (*fn)(void)) {
    return __faasmndp_storageCallAndAwait(key, (int32_t)key_len, FAASM_TABLE_INDEX(fn));
}

/* faasmNdpStorageCall for a funclet of one argument. */
static inline int faasmNdpStorageCall1(const char *key, size_t key_len, int (*fn)(int), int a1) {
    return __faasmndp_storageCallAndAwait1(key, (int32_t)key_len, FAASM_TABLE_INDEX(fn), a1);
}

/* faasmNdpStorageCall for a funclet of two arguments. */
static inline int faasmNdpStorageCall2(const char *key, size_t key_len, int (*fn)(int, int), int a1,
                                       int a2) {
    return __faasmndp_storageCallAndAwait2(key, (int32_t)key_len, FAASM_TABLE_INDEX(fn), a1, a2);
}

#ifdef __cplusplus
}
#endif

#endif /* FAASM_H */
