/* chainbig: chains `echo` with an input of the size given (in MiB) as its
 * own input; outputs the chained call's output length. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

int main(void) {
    char arg[16] = {0};
    faasmGetInput(arg, sizeof arg - 1);
    size_t len = (size_t)atoi(arg) << 20;
    char *input = malloc(len ? len : 1);
    memset(input, 'x', len);
    int id = faasmChainNamed("echo", input, len);
    static char out[1];
    int code = __faasm_await_call_output(id, out, 0);
    char msg[48];
    int n = snprintf(msg, sizeof msg, "code=%d", code);
    faasmSetOutput(msg, (size_t)n);
    return 0;
}
