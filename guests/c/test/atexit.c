/*
 * atexit: exit-time work. An atexit handler sets the output, and stdout
 * ends without a newline, so both arrive only if the runtime runs
 * wasi-libc's exit-time work after main returns. Built twice: plain, and
 * with Faasm's link flags (atexit_faasm), which export __wasm_call_ctors
 * and so lose the linker's _start wrapper that does that work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

static void on_exit_set_output(void) {
    const char *msg = "atexit ran";
    faasmSetOutput(msg, strlen(msg));
}

int main(void) {
    if (atexit(on_exit_set_output) != 0) {
        return 2;
    }
    printf("partial line, no newline");
    return 0;
}
