/*
 * The idempotency window. See dedup.h. Deletion uses backward shifting, so
 * the set never fills with tombstones.
 */
#include "dedup.h"

#include "mem.h"

#include <string.h>

/* How many evictions ahead cc_dedup_add() prefetches. */
#define DEDUP_AHEAD 8

static int
init(struct cc_dedup *d, uint64_t window, uint64_t seed, bool map) {
    uint64_t slots = 16;

    memset(d, 0, sizeof(*d));
    d->seed = seed;
    if (window == 0)
        return 0;
    while (slots < window * 2)
        slots <<= 1;
    d->set = cc_alloc_table(slots * sizeof(uint64_t));
    d->ring = cc_alloc_table(window * sizeof(uint64_t));
    if (map)
        d->vals = cc_alloc_table(slots * sizeof(uint64_t));
    if (d->set == NULL || d->ring == NULL || (map && d->vals == NULL)) {
        cc_dedup_fini(d);
        return CC_ENOMEM;
    }
    d->mask = slots - 1;
    d->cap = window;
    return 0;
}

int
cc_dedup_init(struct cc_dedup *d, uint64_t window, uint64_t seed) {
    return init(d, window, seed, false);
}

int
cc_dedup_init_map(struct cc_dedup *d, uint64_t window, uint64_t seed) {
    CC_ASSERT(window > 0);
    return init(d, window, seed, true);
}

void
cc_dedup_fini(struct cc_dedup *d) {
    cc_free_table(d->set, (d->mask + 1) * sizeof(uint64_t));
    cc_free_table(d->vals, (d->mask + 1) * sizeof(uint64_t));
    cc_free_table(d->ring, d->cap * sizeof(uint64_t));
    memset(d, 0, sizeof(*d));
}

size_t
cc_dedup_bytes(const struct cc_dedup *d) {
    if (d->cap == 0)
        return 0;
    return (size_t)((d->mask + 1) * (d->vals ? 2 : 1) + d->cap) *
           sizeof(uint64_t);
}

uint64_t
cc_dedup_fingerprint(const struct cc_dedup *d, const void *id, size_t len) {
    uint64_t f = cc_hash(id, len, d->seed);
    return f ? f : 1;
}

/* The slot holding f, or -1. */
static inline int64_t
find(const struct cc_dedup *d, uint64_t f) {
    uint64_t i;

    if (d->cap == 0)
        return -1;
    for (i = f & d->mask; d->set[i] != 0; i = (i + 1) & d->mask) {
        if (d->set[i] == f)
            return (int64_t)i;
    }
    return -1;
}

bool
cc_dedup_seen(const struct cc_dedup *d, uint64_t f) {
    return find(d, f) >= 0;
}

static void
set_remove(struct cc_dedup *d, uint64_t f) {
    uint64_t i, j, home;

    for (i = f & d->mask; d->set[i] != f; i = (i + 1) & d->mask) {
        if (d->set[i] == 0)
            return;
    }
    /* Shift later members of the probe run back into the hole when their
     * home slot does not lie cyclically in (hole, j]. */
    for (j = (i + 1) & d->mask; d->set[j] != 0; j = (j + 1) & d->mask) {
        home = d->set[j] & d->mask;
        if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
            d->set[i] = d->set[j];
            if (d->vals != NULL)
                d->vals[i] = d->vals[j];
            i = j;
        }
    }
    d->set[i] = 0;
}

/* x mod cap for x < 2 cap, without a division: this runs per event. */
static inline uint64_t
ring_wrap(const struct cc_dedup *d, uint64_t x) {
    return x >= d->cap ? x - d->cap : x;
}

/* Inserts f (with val for maps); a held f keeps its age. */
static void
insert(struct cc_dedup *d, uint64_t f, uint64_t val) {
    uint64_t i, slot;

    if (d->cap == 0)
        return;
    slot = ring_wrap(d, d->head + d->count);
    if (d->count == d->cap) {
        /* The ring says which ids leave next: start loading the slot of
         * one a few evictions ahead so that its removal does not wait on
         * memory. */
        if (d->cap > DEDUP_AHEAD) {
            uint64_t k = d->ring[ring_wrap(d, d->head + DEDUP_AHEAD)] & d->mask;
            __builtin_prefetch(&d->set[k], 1);
            if (d->vals != NULL)
                __builtin_prefetch(&d->vals[k], 1);
        }
        set_remove(d, d->ring[d->head]);
        d->head = ring_wrap(d, d->head + 1);
        d->count--;
    }
    for (i = f & d->mask; d->set[i] != 0; i = (i + 1) & d->mask) {
        if (d->set[i] == f) {
            if (d->vals != NULL)
                d->vals[i] = val;
            return; /* already held: keep its original age */
        }
    }
    d->set[i] = f;
    if (d->vals != NULL)
        d->vals[i] = val;
    d->ring[slot] = f;
    d->count++;
}

void
cc_dedup_add(struct cc_dedup *d, uint64_t f) {
    insert(d, f, 0);
}

void
cc_dedup_put(struct cc_dedup *d, uint64_t f, uint64_t val) {
    CC_ASSERT(d->vals != NULL);
    insert(d, f, val);
}

bool
cc_dedup_get(const struct cc_dedup *d, uint64_t f, uint64_t *val) {
    int64_t i = find(d, f);

    if (i < 0)
        return false;
    *val = d->vals[i];
    return true;
}
