/* funclet: a one-argument funclet changes a global; main sees the change and the result. */
#include <stdio.h>

#include "faasm.h"

int counter = 5;

static int add(int a) {
    counter += a;
    return counter * 2;
}

int main(void) {
    int ret = faasmNdpStorageCall1("k", 1, add, 10);
    char out[64];
    int len = snprintf(out, sizeof out, "ret=%d counter=%d", ret, counter);
    faasmSetOutput(out, (size_t)len);
    return 0;
}
