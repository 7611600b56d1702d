/*
 * mmapread: input "key" maps the whole of object key with getMmap and
 * touches none of its bytes; outputs the length mapped in decimal. What
 * it costs is the read into linear memory and nothing else (see
 * bench/getmmap.sh).
 */
#include "../ndp/ndp.h"

int main(void) {
    size_t key_len;
    char *key = ndp_input(&key_len);
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return ndp_fail("No object %.*s", (int)key_len, key);
    }
    char out[16];
    int n = snprintf(out, sizeof out, "%u", (unsigned)len);
    faasmSetOutput(out, (size_t)n);
    faasmNdpUnmap(object, len);
    return 0;
}
