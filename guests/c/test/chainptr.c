/* chainptr: chains a function of this module by pointer with input "abc" and outputs what it output. */
#include <stdio.h>

#include "faasm.h"

static int child(void) {
    char input[64];
    size_t len = faasmGetInput(input, sizeof input);
    char out[80];
    int n = snprintf(out, sizeof out, "child:%.*s", (int)len, input);
    faasmSetOutput(out, (size_t)n);
    return 0;
}

int main(void) {
    int id = faasmChainPtr(child, "abc", 3);
    char got[256] = {0};
    int rc = faasmAwaitCallOutput(id, got, sizeof got - 1);
    char out[300];
    int n = snprintf(out, sizeof out, "parent got: %s", got);
    faasmSetOutput(out, (size_t)n);
    return rc;
}
