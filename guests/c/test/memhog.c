/*
 * memhog: allocates and touches 16 MiB blocks until malloc fails. The
 * runtime is expected to end the call at its memory cap first; output
 * "malloc failed" (and 2) means it did not.
 */
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

#define BLOCK_BYTES (16u << 20)

/* The blocks form a list from here, so the allocations are not optimised away. */
static void *volatile head;

int main(void) {
    for (;;) {
        void **block = malloc(BLOCK_BYTES);
        if (block == NULL) {
            faasmSetOutput("malloc failed", 13);
            return 2;
        }
        memset(block, 0xa5, BLOCK_BYTES);
        *block = head;
        head = block;
    }
}
