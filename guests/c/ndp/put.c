/* put: input "key value..." stores the value (everything after the first space) as object key. */
#include "ndp.h"

int main(void) {
    size_t len, key_len, value_len;
    char *value;
    char *input = ndp_input(&len);
    if (ndp_split(input, len, &key_len, &value, &value_len) != 0) {
        return ndp_fail("Bad input: expected \"<key> <value>\"");
    }
    if (faasmNdpPut(input, key_len, value, value_len) != 0) {
        return ndp_fail("Put failed for %.*s", (int)key_len, input);
    }
    faasmSetOutput("OK", 2);
    return 0;
}
