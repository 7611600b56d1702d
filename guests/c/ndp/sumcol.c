/*
 * sumcol: input "key N" outputs "sum S lines L bad B" for the CSV object
 * key: S is the sum of the N-th (0-based) comma-separated field of every
 * line, each parsed as a signed 64-bit decimal integer (an optional + or -
 * then digits, nothing else); L counts the lines, B those among them whose
 * N-th field is missing, not such a number, or out of range (they add
 * nothing to S). Lines end at "\n" (one "\r" before it is dropped); text
 * after the last "\n" is a line if it is not empty. No quoting: a comma
 * always separates fields. The sum runs in a funclet near the object, as
 * in wordcount; a sum that overflows 64 bits fails the call.
 *
 * Per line: one byte loop up to the field and through it, no call, then
 * memchr (a word at a time) over what is left of the line, so fields past
 * the one summed cost little.
 */
#include <stdint.h>

#include "ndp.h"

enum { SUM_OK, SUM_NO_OBJECT, SUM_OVERFLOW };

static const char *key;
static size_t key_len;
static unsigned long column;
static long long sum;
static unsigned long long lines, bad;

/* Parses [p, end) as a signed decimal integer into *value; -1 if it is not one. */
static int parse(const uint8_t *p, const uint8_t *end, long long *value) {
    int negative = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        negative = *p == '-';
        p++;
    }
    if (p == end) {
        return -1;
    }
    /* The magnitude, unsigned: at most 2^63 (for INT64_MIN). A check
     * before each digit keeps it from wrapping without an overflow builtin,
     * which on wasm32 is a call into compiler-rt per digit. */
    uint64_t u = 0;
    for (; p < end; p++) {
        unsigned digit = (unsigned)*p - '0';
        if (digit > 9 || u > UINT64_C(922337203685477580)) {
            return -1;
        }
        u = u * 10 + digit;
    }
    uint64_t limit = negative ? UINT64_C(1) << 63 : (UINT64_C(1) << 63) - 1;
    if (u > limit) {
        return -1;
    }
    *value = negative ? (long long)(0 - u) : (long long)u;
    return 0;
}

static int sum_column(void) {
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return SUM_NO_OBJECT;
    }
    const uint8_t *p = object, *end = object + len;
    long long s = 0;
    unsigned long long l = 0, b = 0;
    int status = SUM_OK;
    while (p < end) {
        l++;
        /* Skip `column` commas, unless the line ends first. */
        unsigned long commas = column;
        for (; commas > 0 && p < end && *p != '\n'; p++) {
            commas -= *p == ',';
        }
        if (commas > 0) {
            b++;
        } else {
            const uint8_t *field = p;
            while (p < end && *p != ',' && *p != '\n') {
                p++;
            }
            const uint8_t *field_end = p;
            if (field_end > field && field_end[-1] == '\r' && (p == end || *p == '\n')) {
                field_end--;
            }
            long long v;
            if (parse(field, field_end, &v) != 0) {
                b++;
            } else if (__builtin_add_overflow(s, v, &s)) {
                status = SUM_OVERFLOW;
                break;
            }
        }
        /* On to the next line. */
        while (p < end && *p != '\n') {
            p++;
        }
        p += p < end;
    }
    sum = s;
    lines = l;
    bad = b;
    faasmNdpUnmap(object, len);
    return status;
}

int main(void) {
    size_t len, arg_len;
    char *input = ndp_input(&len);
    char *rest;
    if (ndp_split(input, len, &key_len, &rest, &arg_len) != 0) {
        return ndp_fail("Bad input: expected \"<key> <column>\"");
    }
    char *arg_end;
    column = strtoul(rest, &arg_end, 10);
    if (arg_len == 0 || rest[0] < '0' || rest[0] > '9' || arg_end != rest + arg_len || column > 1000000) {
        return ndp_fail("Bad column %s: expected a number from 0 to 1000000", rest);
    }
    key = input;
    switch (faasmNdpStorageCall(key, key_len, sum_column)) {
    case SUM_OK: {
        char out[96];
        int n = snprintf(out, sizeof out, "sum %lld lines %llu bad %llu", sum, lines, bad);
        faasmSetOutput(out, (size_t)n);
        return 0;
    }
    case SUM_NO_OBJECT:
        return ndp_fail("No object %.*s", (int)key_len, key);
    default:
        return ndp_fail("The sum of column %lu of %.*s overflows 64 bits", column, (int)key_len, key);
    }
}
