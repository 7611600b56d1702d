/*
 * grep: input "key regex" outputs the byte offsets at which the
 * non-overlapping matches of the POSIX extended regex start in object key,
 * separated by spaces. The object is searched as text, up to its first NUL
 * byte. The search runs in a funclet near the object, as in wordcount.
 */
#include <regex.h>

#include "ndp.h"

enum { GREP_OK, GREP_NO_OBJECT, GREP_BAD_REGEX };

static const char *key;
static size_t key_len;
static const char *pattern;
static struct ndp_buf result;

static int grep(void) {
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED) != 0) {
        return GREP_BAD_REGEX;
    }
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        regfree(&re);
        return GREP_NO_OBJECT;
    }
    /* regexec wants a NUL-terminated string: the byte after a mapped
     * object is 0, so the text is searched in place, not copied (a copy
     * would be pages the funclet changed, shipped back to the caller). */
    const char *text = (const char *)object;
    size_t n = strnlen(text, len);

    regmatch_t m;
    for (size_t pos = 0; pos <= n && regexec(&re, text + pos, 1, &m, pos > 0 ? REG_NOTBOL : 0) == 0;) {
        size_t start = pos + (size_t)m.rm_so;
        if (result.len > 0) {
            ndp_append(&result, " ", 1);
        }
        ndp_append_number(&result, start);
        /* After an empty match, move on one byte. */
        pos = m.rm_eo > m.rm_so ? pos + (size_t)m.rm_eo : start + 1;
    }
    faasmNdpUnmap(object, len);
    regfree(&re);
    return GREP_OK;
}

int main(void) {
    size_t len, pattern_len;
    char *input = ndp_input(&len);
    char *rest;
    if (ndp_split(input, len, &key_len, &rest, &pattern_len) != 0) {
        return ndp_fail("Bad input: expected \"<key> <regex>\"");
    }
    key = input;
    pattern = rest;
    switch (faasmNdpStorageCall(key, key_len, grep)) {
    case GREP_OK:
        faasmSetOutput(result.data, result.len);
        return 0;
    case GREP_NO_OBJECT:
        return ndp_fail("No object %.*s", (int)key_len, key);
    default:
        return ndp_fail("Bad regex %s", pattern);
    }
}
