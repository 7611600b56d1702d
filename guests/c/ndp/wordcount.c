/*
 * wordcount: input "key" outputs a "word\tcount\n" line for each distinct
 * whitespace-separated word of object key, sorted by word in byte order.
 *
 * The counting runs in a funclet near the object. Arguments and result go
 * through globals, since the funclet sees and leaves memory as an ordinary
 * call would; but the object's pages do not come back from the storage
 * node, so the result is built in a malloc'd buffer, not left pointing
 * into them.
 *
 * One pass over the object, 64 bytes at a time: eight 64-bit loads and a
 * few bit operations on each give a mask of the block's whitespace
 * (isspace() in the C locale), and the loop jumps from one word edge to
 * the next with count-trailing-zeros instead of branching on every byte.
 * A word's first 8 bytes, loaded as one 64-bit integer, are both its hash
 * and, for a word of up to 8 bytes (the common case in text), its whole
 * identity, so a lookup compares two integers and calls no memcmp.
 */
#include <stdint.h>

#include "ndp.h"

static const char *key;
static size_t key_len;
static struct ndp_buf result;

/* The bytes isspace() takes in the C locale: \t \n \v \f \r and space. */
static const uint8_t is_space[256] = {['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1, [' '] = 1};

/* A distinct word and how often it occurs. */
struct word {
    uint64_t head;        /* its first 8 bytes, zero-padded */
    const uint8_t *start; /* NULL: a free slot */
    uint32_t len;
    uint32_t hash;
    size_t count;
};

/* Open-addressing hash table of words, linear probing, at most half full. */
struct table {
    struct word *slots;
    size_t cap, used;
};

/* The first min(len, 8) bytes of p as a little-endian integer, the rest zero. */
static inline uint64_t head_of(const uint8_t *p, size_t len, const uint8_t *end) {
    uint64_t v;
    if (__builtin_expect(end - p >= 8, 1)) {
        memcpy(&v, p, 8);
        /* Shifting left then right keeps the low len bytes without a branch. */
        unsigned drop = len >= 8 ? 0 : 64 - 8 * (unsigned)len;
        return (v << drop) >> drop;
    }
    v = 0;
    for (size_t i = 0; i < len && i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* A word's hash: its head and length, and past 8 bytes its other bytes too. */
static inline uint32_t hash_of(const uint8_t *p, size_t len, uint64_t head) {
    uint64_t h = head ^ ((uint64_t)len << 56);
    for (size_t i = 8; __builtin_expect(i < len, 0); i += 8) {
        uint64_t v = 0;
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(&v, p + i, n);
        h = (h ^ v) * UINT64_C(0x9E3779B97F4A7C15) + (h >> 29);
    }
    return (uint32_t)((h * UINT64_C(0x9E3779B97F4A7C15)) >> 32);
}

static void grow(struct table *t);

static inline void add(struct table *t, const uint8_t *start, size_t len, const uint8_t *end) {
    uint64_t head = head_of(start, len, end);
    uint32_t hash = hash_of(start, len, head);
    struct word *slots = t->slots;
    size_t mask = t->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        struct word *w = &slots[i];
        if (__builtin_expect(w->head == head && w->len == len, 1) &&
            (len <= 8 || memcmp(w->start + 8, start + 8, len - 8) == 0)) {
            w->count++;
            return;
        }
        if (w->start == NULL) {
            *w = (struct word){head, start, (uint32_t)len, hash, 1};
            if (2 * ++t->used > t->cap) {
                grow(t);
            }
            return;
        }
    }
}

static void grow(struct table *t) {
    size_t cap = 2 * t->cap;
    struct word *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) {
        abort();
    }
    for (size_t i = 0; i < t->cap; i++) {
        struct word *w = &t->slots[i];
        if (w->start != NULL) {
            size_t j = w->hash & (cap - 1);
            while (slots[j].start != NULL) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = *w;
        }
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

static int compare_words(const void *a, const void *b) {
    const struct word *x = a, *y = b;
    int order = memcmp(x->start, y->start, x->len < y->len ? x->len : y->len);
    if (order != 0) {
        return order;
    }
    return (x->len > y->len) - (x->len < y->len);
}

/* Bit i set: byte i of the 64 at p is whitespace. Eight bytes at a time,
 * with no carry between bytes: a byte is whitespace if its low 7 bits are
 * 0x20 or in 9..13 and its top bit is clear. */
static inline uint64_t space_mask(const uint8_t *p) {
    const uint64_t low7 = UINT64_C(0x7f7f7f7f7f7f7f7f), top = UINT64_C(0x8080808080808080);
    const uint64_t ones = UINT64_C(0x0101010101010101);
    uint64_t mask = 0;
    for (int k = 0; k < 8; k++) {
        uint64_t x;
        memcpy(&x, p + 8 * k, 8);
        uint64_t lo = x & low7;
        uint64_t t = lo ^ (0x20 * ones);
        uint64_t is_20 = ~((t + low7) | t) & top;
        uint64_t ge_9 = (lo + (0x80 - 9) * ones) & top;
        uint64_t ge_14 = (lo + (0x80 - 14) * ones) & top;
        uint64_t space = (is_20 | (ge_9 & ~ge_14)) & ~x;
        /* The top bits (7, 15, .., 63) to bits 0..7. */
        mask |= (((space >> 7) * UINT64_C(0x0102040810204080)) >> 56) << (8 * k);
    }
    return mask;
}

static int count_words(void) {
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return 1;
    }
    struct table words = {calloc(1024, sizeof(struct word)), 1024, 0};
    if (words.slots == NULL) {
        abort();
    }
    const uint8_t *end = object + len;
    /* 64 bytes at a time: a bit mask of their whitespace gives where words
     * start and end, and the loop visits those places only, so its
     * branches follow the blocks and the words, not every byte. */
    const uint8_t *word = NULL; /* the start of a word not yet ended */
    uint64_t space_before = 1;  /* whether the byte before the block is whitespace */
    const uint8_t *p = object;
    for (; end - p >= 64; p += 64) {
        uint64_t space = space_mask(p);
        uint64_t shifted = (space << 1) | space_before;
        uint64_t edges = (~space & shifted) | (space & ~shifted); /* starts and ends alternate */
        space_before = space >> 63;
        while (edges != 0) {
            const uint8_t *at = p + __builtin_ctzll(edges);
            if (word == NULL) {
                word = at;
            } else {
                add(&words, word, (size_t)(at - word), end);
                word = NULL;
            }
            edges &= edges - 1;
        }
    }
    for (; p < end; p++) {
        if (is_space[*p]) {
            if (word != NULL) {
                add(&words, word, (size_t)(p - word), end);
                word = NULL;
            }
        } else if (word == NULL) {
            word = p;
        }
    }
    if (word != NULL) {
        add(&words, word, (size_t)(end - word), end);
    }
    /* Gather the distinct words at the front and sort them. */
    size_t n = 0;
    for (size_t i = 0; i < words.cap; i++) {
        if (words.slots[i].start != NULL) {
            words.slots[n++] = words.slots[i];
        }
    }
    qsort(words.slots, n, sizeof *words.slots, compare_words);
    for (size_t i = 0; i < n; i++) {
        ndp_append(&result, words.slots[i].start, words.slots[i].len);
        ndp_append(&result, "\t", 1);
        ndp_append_number(&result, words.slots[i].count);
        ndp_append(&result, "\n", 1);
    }
    free(words.slots);
    faasmNdpUnmap(object, len);
    return 0;
}

int main(void) {
    key = ndp_input(&key_len);
    if (faasmNdpStorageCall(key, key_len, count_words) != 0) {
        return ndp_fail("No object %.*s", (int)key_len, key);
    }
    faasmSetOutput(result.data, result.len);
    return 0;
}
