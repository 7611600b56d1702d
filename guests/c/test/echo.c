/* echo: the output is the input, byte for byte. */
#include <stdlib.h>

#include "faasm.h"

int main(void) {
    size_t size = faasmGetInputSize();
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 2;
    }
    faasmSetOutput(buf, faasmGetInput(buf, size));
    return 0;
}
