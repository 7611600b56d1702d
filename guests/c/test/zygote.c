/* zygote: _faasm_zygote runs once at upload; every call starts from the memory it left. */
#include <stdio.h>

#include "faasm.h"

int initialised = 0;

__attribute__((export_name("_faasm_zygote"))) int faasm_zygote(void) {
    initialised = 42;
    return 0;
}

int main(void) {
    char out[32];
    int n = snprintf(out, sizeof out, "initialised=%d", initialised);
    faasmSetOutput(out, (size_t)n);
    return 0;
}
