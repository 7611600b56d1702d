/* chain: with no input, chains itself by name with input "child" and outputs what the child output. */
#include <stdio.h>
#include <string.h>

#include "faasm.h"

int main(void) {
    char input[16] = {0};
    size_t len = faasmGetInput(input, sizeof input - 1);
    if (len == 5 && memcmp(input, "child", 5) == 0) {
        faasmSetOutput("child ran", 9);
        return 0;
    }
    if (len != 0) {
        faasmSetOutput("unexpected input", 16);
        return 1;
    }
    int id = faasmChainNamed("chain", "child", 5);
    char got[256] = {0};
    int rc = faasmAwaitCallOutput(id, got, sizeof got - 1);
    char out[300];
    int n = snprintf(out, sizeof out, "parent got: %s", got);
    faasmSetOutput(out, (size_t)n);
    return rc;
}
