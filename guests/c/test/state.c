/*
 * state: Faasm's state API. Input "OP KEY [ARG]":
 *   write K V      write_state(K, V)                       -> "ok"
 *   read K         read_state size, then the value         -> "<size>:<value>"
 *   ptr K V        maps K (7 bytes) twice and a chunk at offset 2, writes
 *                  V (3 bytes) through the chunk, pushes    -> "same=1 chunk=1 view=<value>"
 *   nopush K V     the same without the push                -> "view=<value>"
 *   pull K         maps K, another write_state, pull_state  -> "<mapped value after pull>"
 *   offset K V     write_state_offset(K, 7, 4, V, 3), read_state_offset -> "<3 bytes>"
 *   append K N     appends the 4-byte integers 0..N-1       -> "ok"
 *   appended K N   read_appended_state of N integers        -> "sum=<sum>"
 *   clear K        clear_appended_state                     -> "ok"
 *   partial K      value "abcdefg", writes X and Y at 0 and 5 through a
 *                  pointer, flags only byte 0 dirty, partial push -> "ok"
 *   mask K         value "abcdefg", writes "1234567" through a pointer,
 *                  pushes with mask 1000001 (key K_mask)    -> "ok"
 *   lock K         lock/write/unlock, then lock twice (traps)
 *   oob K          read_state into a buffer outside memory (traps)
 *   huge K         write_state of 128 MiB (traps on the size cap)
 *   chunk K        read_state_offset_ptr past the value's size (traps)
 *   fromfile K T   writes T to /tmp/from.txt, write_state_from_file(K, it),
 *                  then from "../../../../etc/passwd"    -> "<size>:<value> escape=<ret>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

FAASM_IMPORT("__faasm_write_state")
void __faasm_write_state(const char *key, const void *data, int32_t len);
FAASM_IMPORT("__faasm_read_state")
int32_t __faasm_read_state(const char *key, void *buf, int32_t len);
FAASM_IMPORT("__faasm_read_state_ptr")
int32_t __faasm_read_state_ptr(const char *key, int32_t total);
FAASM_IMPORT("__faasm_read_state_offset_ptr")
int32_t __faasm_read_state_offset_ptr(const char *key, int32_t total, int32_t offset, int32_t len);
FAASM_IMPORT("__faasm_write_state_offset")
void __faasm_write_state_offset(const char *key, int32_t total, int32_t offset, const void *data,
                                int32_t len);
FAASM_IMPORT("__faasm_read_state_offset")
void __faasm_read_state_offset(const char *key, int32_t total, int32_t offset, void *buf,
                               int32_t len);
FAASM_IMPORT("__faasm_push_state")
void __faasm_push_state(const char *key);
FAASM_IMPORT("__faasm_pull_state")
void __faasm_pull_state(const char *key, int32_t total);
FAASM_IMPORT("__faasm_append_state")
void __faasm_append_state(const char *key, const void *data, int32_t len);
FAASM_IMPORT("__faasm_read_appended_state")
void __faasm_read_appended_state(const char *key, void *buf, int32_t len, int32_t elems);
FAASM_IMPORT("__faasm_clear_appended_state")
void __faasm_clear_appended_state(const char *key);
FAASM_IMPORT("__faasm_lock_state_write")
void __faasm_lock_state_write(const char *key);
FAASM_IMPORT("__faasm_unlock_state_write")
void __faasm_unlock_state_write(const char *key);
FAASM_IMPORT("__faasm_push_state_partial")
void __faasm_push_state_partial(const char *key);
FAASM_IMPORT("__faasm_push_state_partial_mask")
void __faasm_push_state_partial_mask(const char *key, const char *mask_key);
FAASM_IMPORT("__faasm_flag_state_offset_dirty")
void __faasm_flag_state_offset_dirty(const char *key, int32_t total, int32_t offset, int32_t len);
FAASM_IMPORT("__faasm_flag_state_dirty")
void __faasm_flag_state_dirty(const char *key, int32_t total);
FAASM_IMPORT("__faasm_write_state_from_file")
int32_t __faasm_write_state_from_file(const char *key, const char *path);

#define VALUE_BYTES 7

static void out(const char *s) { faasmSetOutput(s, strlen(s)); }

static char *ptr_of(int32_t p) { return (char *)(uintptr_t)(uint32_t)p; }

int main(void) {
    size_t n = faasmGetInputSize();
    char *input = calloc(n + 1, 1);
    faasmGetInput(input, n);
    char *op = strtok(input, " ");
    char *key = strtok(NULL, " ");
    char *arg = strtok(NULL, "");
    if (op == NULL || key == NULL) {
        out("usage: OP KEY [ARG]");
        return 1;
    }
    char buf[256] = {0};
    if (strcmp(op, "write") == 0 && arg != NULL) {
        __faasm_write_state(key, arg, (int32_t)strlen(arg));
        out("ok");
    } else if (strcmp(op, "read") == 0) {
        int32_t size = __faasm_read_state(key, NULL, 0);
        char value[128] = {0};
        __faasm_read_state(key, value, sizeof(value) - 1);
        snprintf(buf, sizeof(buf), "%d:%s", size, value);
        out(buf);
    } else if ((strcmp(op, "ptr") == 0 || strcmp(op, "nopush") == 0) && arg != NULL) {
        char *a = ptr_of(__faasm_read_state_ptr(key, VALUE_BYTES));
        char *b = ptr_of(__faasm_read_state_ptr(key, VALUE_BYTES));
        char *chunk = ptr_of(__faasm_read_state_offset_ptr(key, VALUE_BYTES, 2, 3));
        char *chunk2 = ptr_of(__faasm_read_state_offset_ptr(key, VALUE_BYTES, 2, 3));
        memcpy(chunk, arg, 3);
        __faasm_flag_state_dirty(key, VALUE_BYTES);
        char view[VALUE_BYTES + 1] = {0};
        __faasm_read_state(key, view, VALUE_BYTES);
        if (strcmp(op, "ptr") == 0) {
            __faasm_push_state(key);
            snprintf(buf, sizeof(buf), "same=%d chunk=%d view=%s", a == b,
                     chunk == a + 2 && chunk2 == chunk, view);
        } else {
            snprintf(buf, sizeof(buf), "view=%s", view);
        }
        out(buf);
    } else if (strcmp(op, "pull") == 0 && arg != NULL) {
        char *a = ptr_of(__faasm_read_state_ptr(key, VALUE_BYTES));
        a[0] = '!'; /* a local write, lost at the pull */
        __faasm_write_state(key, arg, (int32_t)strlen(arg));
        __faasm_pull_state(key, VALUE_BYTES);
        memcpy(buf, a, VALUE_BYTES);
        out(buf);
    } else if (strcmp(op, "offset") == 0 && arg != NULL) {
        __faasm_write_state_offset(key, VALUE_BYTES, 4, arg, 3);
        __faasm_read_state_offset(key, VALUE_BYTES, 4, buf, 3);
        out(buf);
    } else if (strcmp(op, "append") == 0 && arg != NULL) {
        int count = atoi(arg);
        for (int32_t i = 0; i < count; i++) {
            __faasm_append_state(key, &i, sizeof(i));
        }
        out("ok");
    } else if (strcmp(op, "appended") == 0 && arg != NULL) {
        int count = atoi(arg);
        int32_t *values = calloc((size_t)count, sizeof(int32_t));
        __faasm_read_appended_state(key, values, count * (int32_t)sizeof(int32_t), count);
        long sum = 0;
        for (int i = 0; i < count; i++) {
            sum += values[i];
        }
        snprintf(buf, sizeof(buf), "sum=%ld", sum);
        out(buf);
    } else if (strcmp(op, "clear") == 0) {
        __faasm_clear_appended_state(key);
        out("ok");
    } else if (strcmp(op, "partial") == 0) {
        __faasm_write_state(key, "abcdefg", VALUE_BYTES);
        char *p = ptr_of(__faasm_read_state_ptr(key, VALUE_BYTES));
        p[0] = 'X';
        p[5] = 'Y';
        __faasm_flag_state_offset_dirty(key, VALUE_BYTES, 0, 1);
        __faasm_push_state_partial(key);
        out("ok");
    } else if (strcmp(op, "mask") == 0) {
        char mask_key[128];
        snprintf(mask_key, sizeof(mask_key), "%s_mask", key);
        const char mask[VALUE_BYTES] = {1, 0, 0, 0, 0, 0, 1};
        __faasm_write_state(mask_key, mask, VALUE_BYTES);
        __faasm_write_state(key, "abcdefg", VALUE_BYTES);
        char *p = ptr_of(__faasm_read_state_ptr(key, VALUE_BYTES));
        memcpy(p, "1234567", VALUE_BYTES);
        __faasm_push_state_partial_mask(key, mask_key);
        out("ok");
    } else if (strcmp(op, "lock") == 0) {
        __faasm_lock_state_write(key);
        __faasm_write_state(key, "locked", 6);
        __faasm_unlock_state_write(key);
        __faasm_lock_state_write(key);
        __faasm_lock_state_write(key);
        out("locked twice");
    } else if (strcmp(op, "oob") == 0) {
        __faasm_read_state(key, (void *)0x7fffff00, 4096);
        out("read outside memory");
    } else if (strcmp(op, "huge") == 0) {
        __faasm_write_state(key, "", 128 << 20);
        out("wrote 128 MiB");
    } else if (strcmp(op, "chunk") == 0) {
        __faasm_read_state_offset_ptr(key, VALUE_BYTES, 5, 3);
        out("chunk past the end");
    } else if (strcmp(op, "fromfile") == 0 && arg != NULL) {
        FILE *f = fopen("/tmp/from.txt", "w");
        if (f == NULL || fputs(arg, f) < 0 || fclose(f) != 0) {
            out("could not write /tmp/from.txt");
            return 1;
        }
        int32_t size = __faasm_write_state_from_file(key, "/tmp/from.txt");
        int32_t escape = __faasm_write_state_from_file(key, "../../../../etc/passwd");
        char value[128] = {0};
        __faasm_read_state(key, value, sizeof(value) - 1);
        snprintf(buf, sizeof(buf), "%d:%s escape=%d", size, value, escape);
        out(buf);
    } else {
        out("unknown op");
        return 1;
    }
    return 0;
}
