/*
 * wordcount: input "key" outputs a "word\tcount\n" line for each distinct
 * whitespace-separated word of object key, sorted by word in byte order.
 *
 * The counting runs in a funclet near the object. Arguments and result go
 * through globals, since the funclet sees and leaves memory as an ordinary
 * call would; but the object's pages do not come back from the storage
 * node, so the result is built in a malloc'd buffer, not left pointing
 * into them.
 */
#include "ndp.h"

static const char *key;
static size_t key_len;
static struct ndp_buf result;

/* A distinct word and how often it occurs. */
struct word {
    const uint8_t *start; /* NULL: a free slot */
    size_t len;
    size_t count;
};

/* Open-addressing hash table of words, at most half full. */
struct table {
    struct word *slots;
    size_t cap, used;
};

/* The bytes isspace() takes in the C locale. */
static int is_space(uint8_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* FNV-1a. */
static uint32_t hash(const uint8_t *p, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

static struct word *slot(struct table *t, const uint8_t *start, size_t len) {
    size_t mask = t->cap - 1;
    for (size_t i = hash(start, len) & mask;; i = (i + 1) & mask) {
        struct word *w = &t->slots[i];
        if (w->start == NULL || (w->len == len && memcmp(w->start, start, len) == 0)) {
            return w;
        }
    }
}

static void add(struct table *t, const uint8_t *start, size_t len, size_t count) {
    if (2 * (t->used + 1) > t->cap) {
        struct table bigger = {calloc(t->cap ? 2 * t->cap : 1024, sizeof(struct word)),
                               t->cap ? 2 * t->cap : 1024, 0};
        if (bigger.slots == NULL) {
            abort();
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (t->slots[i].start != NULL) {
                add(&bigger, t->slots[i].start, t->slots[i].len, t->slots[i].count);
            }
        }
        free(t->slots);
        *t = bigger;
    }
    struct word *w = slot(t, start, len);
    if (w->start == NULL) {
        *w = (struct word){start, len, 0};
        t->used++;
    }
    w->count += count;
}

static int compare_words(const void *a, const void *b) {
    const struct word *x = a, *y = b;
    int order = memcmp(x->start, y->start, x->len < y->len ? x->len : y->len);
    if (order != 0) {
        return order;
    }
    return (x->len > y->len) - (x->len < y->len);
}

static int count_words(void) {
    uint32_t len;
    uint8_t *object = faasmNdpGetMmap(key, key_len, &len);
    if (object == NULL) {
        return 1;
    }
    struct table words = {0};
    for (size_t i = 0; i < len;) {
        while (i < len && is_space(object[i])) {
            i++;
        }
        size_t start = i;
        while (i < len && !is_space(object[i])) {
            i++;
        }
        if (i > start) {
            add(&words, object + start, i - start, 1);
        }
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
