/*
 * bigmem: grows linear memory to 3 GiB (Faasm's cap is 4 GiB less one
 * page) and writes the last byte. Output "grew to 3072 MiB".
 */
#include <stdio.h>
#include <string.h>

#include "faasm.h"

#define PAGE_BYTES 65536u
#define TARGET_PAGES (3u * 16384u) /* 3 GiB */

int main(void) {
    size_t pages = __builtin_wasm_memory_size(0);
    if (pages < TARGET_PAGES && __builtin_wasm_memory_grow(0, TARGET_PAGES - pages) == (size_t)-1) {
        faasmSetOutput("grow refused", 12);
        return 2;
    }
    volatile char *last = (volatile char *)(uintptr_t)(TARGET_PAGES * PAGE_BYTES - 1);
    *last = 1;
    char out[64];
    int n = snprintf(out, sizeof(out), "grew to %u MiB",
                     (unsigned)(__builtin_wasm_memory_size(0) / 16));
    faasmSetOutput(out, (size_t)n);
    return 0;
}
