/*
 * probe: exercises the offload path. Input "KEY SPIN DIRTY_KIB TRAP [GATE]":
 * main fills DIRTY_KIB KiB of heap with a pattern (pages that must travel
 * to the storage node), then runs a funclet near KEY that spins SPIN
 * million iterations (with GATE 1: until object KEY exists or cannot be
 * read, checking every 2 ms), checks the pattern arrived, rewrites every byte
 * (pages that must travel back) and traps when TRAP is 1. The output
 * "ret=R sum=S calls=C" shows the funclet's result, a checksum of the
 * heap after it and a global it incremented.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../ndp/ndp.h"

static uint8_t *buf;
static size_t buf_len;
static unsigned spin;
static int trap;
static int gate;
static const char *key;
static int calls;

static int funclet(int seed) {
    calls++;
    volatile unsigned x = 0;
    for (unsigned i = 0; i < spin; i++) {
        for (unsigned j = 0; j < 1000000; j++) {
            x += j;
        }
    }
    while (gate) {
        uint32_t len = 0;
        int32_t object = __faasmndp_getMmap(key, (int32_t)strlen(key), 0, UINT32_MAX, &len);
        if (object != 0) {
            break; /* there, or -1: the store cannot be read */
        }
        usleep(2000); /* waits without holding the core */
    }
    for (size_t i = 0; i < buf_len; i++) {
        if (buf[i] != (uint8_t)(i * 7)) {
            return -1; /* the caller's pages did not arrive */
        }
        buf[i] = (uint8_t)(i * 13 + (size_t)seed);
    }
    if (trap) {
        __builtin_trap();
    }
    return seed + 1;
}

int main(void) {
    size_t len;
    char *input = ndp_input(&len);
    char *space = strchr(input, ' ');
    if (space == NULL) {
        return ndp_fail("usage: KEY SPIN DIRTY_KIB TRAP [GATE]");
    }
    *space = '\0';
    unsigned long kib = 0;
    sscanf(space + 1, "%u %lu %d %d", &spin, &kib, &trap, &gate);
    key = input;
    buf_len = kib * 1024;
    buf = malloc(buf_len ? buf_len : 1);
    for (size_t i = 0; i < buf_len; i++) {
        buf[i] = (uint8_t)(i * 7);
    }
    int ret = faasmNdpStorageCall1(input, strlen(input), funclet, 41);
    uint64_t sum = 0;
    for (size_t i = 0; i < buf_len; i++) {
        sum = sum * 31 + buf[i];
    }
    char out[96];
    int n = snprintf(out, sizeof out, "ret=%d sum=%llu calls=%d", ret, (unsigned long long)sum, calls);
    faasmSetOutput(out, (size_t)n);
    return 0;
}
