/* argv: outputs argv[1..] joined with ",". */
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

int main(int argc, char **argv) {
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        len += strlen(argv[i]) + 1;
    }
    char *out = malloc(len + 1);
    if (out == NULL) {
        return 2;
    }
    size_t at = 0;
    for (int i = 1; i < argc; i++) {
        if (i > 1) {
            out[at++] = ',';
        }
        size_t n = strlen(argv[i]);
        memcpy(out + at, argv[i], n);
        at += n;
    }
    faasmSetOutput(out, at);
    return 0;
}
