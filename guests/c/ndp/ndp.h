/* What the NDP examples share: reading the input, building output, reporting errors. */
#ifndef NDP_H
#define NDP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faasm.h"

/* The call's input, NUL-terminated (the input itself may hold NUL bytes). */
static inline char *ndp_input(size_t *len) {
    size_t size = faasmGetInputSize();
    char *buf = malloc(size + 1);
    if (buf == NULL) {
        abort();
    }
    *len = faasmGetInput(buf, size);
    buf[*len] = '\0';
    return buf;
}

/* Splits `input` at its first space into a key and the rest; -1 if none or the key is empty. */
static inline int ndp_split(char *input, size_t len, size_t *key_len, char **rest, size_t *rest_len) {
    char *space = memchr(input, ' ', len);
    if (space == NULL || space == input) {
        return -1;
    }
    *key_len = (size_t)(space - input);
    *rest = space + 1;
    *rest_len = len - *key_len - 1;
    return 0;
}

/* Sets a formatted one-line message as the output and returns 1, the error code. */
__attribute__((format(printf, 1, 2))) static inline int ndp_fail(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    char *msg = len < 0 ? NULL : malloc((size_t)len + 1);
    if (msg == NULL) {
        abort();
    }
    va_start(args, fmt);
    vsnprintf(msg, (size_t)len + 1, fmt, args);
    va_end(args);
    faasmSetOutput(msg, (size_t)len);
    free(msg);
    return 1;
}

/* A growable byte buffer on the heap. */
struct ndp_buf {
    char *data;
    size_t len, cap;
};

static inline void ndp_append(struct ndp_buf *b, const void *data, size_t n) {
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            cap *= 2;
        }
        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            abort();
        }
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static inline void ndp_append_number(struct ndp_buf *b, unsigned long long n) {
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%llu", n);
    ndp_append(b, digits, (size_t)len);
}

#endif /* NDP_H */
