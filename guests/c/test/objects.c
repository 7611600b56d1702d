/* objects: puts "a" = "hello", reads it back, and shows what getMmap returns for a missing key. */
#include <stdio.h>

#include "faasm.h"

int main(void) {
    if (faasmNdpPut("a", 1, "hello", 5) != 0) {
        faasmSetOutput("put failed", 10);
        return 1;
    }
    uint32_t len = 0;
    uint8_t *object = faasmNdpGetMmap("a", 1, &len);
    uint32_t missing_len = 0;
    int32_t missing = __faasmndp_getMmap("missing", 7, 0, UINT32_MAX, &missing_len);
    char out[128];
    int n = snprintf(out, sizeof out, "%.*s missing=%d", (int)len, object ? (const char *)object : "", missing);
    faasmSetOutput(out, (size_t)n);
    return 0;
}
