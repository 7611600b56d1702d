/* get: input "key" outputs the bytes of object key. */
#include "ndp.h"

int main(void) {
    size_t key_len;
    char *key = ndp_input(&key_len);
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return ndp_fail("No object %.*s", (int)key_len, key);
    }
    faasmSetOutput(object, len);
    faasmNdpUnmap(object, len);
    return 0;
}
