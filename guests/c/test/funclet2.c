/* funclet2: a two-argument funclet; the result shows the arguments arrived in order. */
#include <stdio.h>

#include "faasm.h"

int counter = 5;

static int sub(int a, int b) {
    counter += a - b;
    return a - b;
}

int main(void) {
    int ret = faasmNdpStorageCall2("k", 1, sub, 10, 3);
    char out[64];
    int len = snprintf(out, sizeof out, "ret=%d counter=%d", ret, counter);
    faasmSetOutput(out, (size_t)len);
    return 0;
}
