/*
 * diskhog: writes 1 MiB blocks to /tmp/hog until a write fails, then one
 * byte to /tmp/small. Output: "wrote <bytes>: <why the write failed>;
 * small: <ok or why it failed>".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "faasm.h"

#define BLOCK (1 << 20)
/* Stops here if nothing refuses: far past any cap a test sets. */
#define BLOCKS_MAX 4096

int main(void) {
    static char out[256];
    char *block = calloc(BLOCK, 1);
    int fd = open("/tmp/hog", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (block == NULL || fd < 0) {
        snprintf(out, sizeof(out), "setup failed: %s", strerror(errno));
        faasmSetOutput(out, strlen(out));
        return 1;
    }
    long long total = 0;
    const char *why = "no write failed";
    for (int i = 0; i < BLOCKS_MAX; i++) {
        ssize_t n = write(fd, block, BLOCK);
        if (n < 0) {
            why = strerror(errno);
            break;
        }
        total += n;
    }
    close(fd);
    int small = open("/tmp/small", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *small_result = "ok";
    if (small < 0 || write(small, "x", 1) != 1) {
        small_result = strerror(errno);
    }
    snprintf(out, sizeof(out), "wrote %lld: %s; small: %s", total, why, small_result);
    faasmSetOutput(out, strlen(out));
    return 0;
}
