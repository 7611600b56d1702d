/* zygote_huge: a small module whose _faasm_zygote fills 96 MiB of memory;
 * baking that into the module would store a ~100 MB artifact, so the
 * upload is refused. */
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

static char *filled;

__attribute__((export_name("_faasm_zygote"))) int faasm_zygote(void) {
    size_t len = 96u << 20;
    filled = malloc(len);
    if (filled == NULL) {
        return 1;
    }
    memset(filled, 7, len);
    return 0;
}

int main(void) {
    faasmSetOutput(filled, 1);
    return 0;
}
