/*
 * countstr: input "key needle" outputs, in decimal, the number of
 * non-overlapping occurrences of the fixed string needle (every byte after
 * the first space, spaces included) in object key, counted from the start
 * of the object. The count runs in a funclet near the object, as in
 * wordcount.
 *
 * A scan at memory speed: candidates for the needle's first byte are found
 * eight bytes at a time, and only there are its last byte, then the rest,
 * compared.
 */
#include <stdint.h>

#include "ndp.h"

static const char *key;
static size_t key_len;
static const uint8_t *needle;
static size_t needle_len;
static unsigned long long count;

/* Whether the needle starts at q, its first byte already matched. */
static inline int match_at(const uint8_t *q) {
    return q[needle_len - 1] == needle[needle_len - 1] &&
           (needle_len <= 2 || memcmp(q + 1, needle + 1, needle_len - 2) == 0);
}

static int count_needle(void) {
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return 1;
    }
    unsigned long long n = 0;
    if (len >= needle_len) {
        const uint8_t *p = object;
        const uint8_t *last = object + len - needle_len; /* the last place the needle can start */
        const uint8_t *next = object;                    /* the first place the next match may start */
        /* Eight bytes at a time: a mask with the top bit of each byte equal
         * to the needle's first byte set (borrows can also flag the byte
         * above a true one, so each candidate is checked again), then each
         * candidate in order. When the first byte is rare this runs at
         * memory speed; when it is common, no call per candidate. */
        const uint64_t ones = UINT64_C(0x0101010101010101), top = UINT64_C(0x8080808080808080);
        const uint64_t first = ones * needle[0];
        for (; last - p >= 7; p += 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            x ^= first;
            uint64_t zero = (x - ones) & ~x & top;
            while (zero != 0) {
                const uint8_t *q = p + (__builtin_ctzll(zero) >> 3);
                zero &= zero - 1;
                if (q >= next && *q == needle[0] && match_at(q)) {
                    n++;
                    next = q + needle_len;
                }
            }
        }
        for (; p <= last; p++) {
            if (p >= next && *p == needle[0] && match_at(p)) {
                n++;
                next = p + needle_len;
            }
        }
    }
    count = n;
    faasmNdpUnmap(object, len);
    return 0;
}

int main(void) {
    size_t len;
    char *input = ndp_input(&len);
    char *rest;
    if (ndp_split(input, len, &key_len, &rest, &needle_len) != 0 || needle_len == 0) {
        return ndp_fail("Bad input: expected \"<key> <needle>\" with a non-empty needle");
    }
    key = input;
    needle = (const uint8_t *)rest;
    if (faasmNdpStorageCall(key, key_len, count_needle) != 0) {
        return ndp_fail("No object %.*s", (int)key_len, key);
    }
    struct ndp_buf out = {0};
    ndp_append_number(&out, count);
    faasmSetOutput(out.data, out.len);
    return 0;
}
