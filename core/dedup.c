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
    d->shift = map ? 1 : 0;
    d->set = cc_alloc_table((slots << d->shift) * sizeof(uint64_t));
    d->ring = cc_alloc_table(window * sizeof(uint64_t));
    /* Both before the check: cc_dedup_fini() frees by them. */
    d->mask = slots - 1;
    d->cap = window;
    if (d->set == NULL || d->ring == NULL) {
        cc_dedup_fini(d);
        return CC_ENOMEM;
    }
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
    cc_free_table(d->set, ((d->mask + 1) << d->shift) * sizeof(uint64_t));
    cc_free_table(d->ring, d->cap * sizeof(uint64_t));
    memset(d, 0, sizeof(*d));
}

size_t
cc_dedup_bytes(const struct cc_dedup *d) {
    if (d->cap == 0)
        return 0;
    return (size_t)(((d->mask + 1) << d->shift) + d->cap) * sizeof(uint64_t);
}

uint64_t
cc_dedup_fingerprint(const struct cc_dedup *d, const void *id, size_t len) {
    uint64_t f = cc_hash(id, len, d->seed);
    return f ? f : 1;
}

/*
 * Every function below takes the layout's shift as a constant (the public
 * entry points choose between 0 and 1), so that a set's code has no
 * multiplications or branches for the map it is not.
 */
#define INL static inline __attribute__((always_inline))

/* Slot i's fingerprint; its value (maps) is the word after. */
INL uint64_t *
slot(const struct cc_dedup *d, uint64_t i, unsigned sh) {
    return &d->set[i << sh];
}

/* The slot holding f, or -1. */
INL int64_t
find(const struct cc_dedup *d, uint64_t f, unsigned sh) {
    uint64_t i;

    if (d->cap == 0)
        return -1;
    for (i = f & d->mask; *slot(d, i, sh) != 0; i = (i + 1) & d->mask) {
        if (*slot(d, i, sh) == f)
            return (int64_t)i;
    }
    return -1;
}

bool
cc_dedup_seen(const struct cc_dedup *d, uint64_t f) {
    return (d->shift ? find(d, f, 1) : find(d, f, 0)) >= 0;
}

INL void
set_remove(struct cc_dedup *d, uint64_t f, unsigned sh) {
    uint64_t i, j, home, fj;

    for (i = f & d->mask; *slot(d, i, sh) != f; i = (i + 1) & d->mask) {
        if (*slot(d, i, sh) == 0)
            return;
    }
    /* Shift later members of the probe run back into the hole when their
     * home slot does not lie cyclically in (hole, j]. */
    for (j = (i + 1) & d->mask; (fj = *slot(d, j, sh)) != 0;
         j = (j + 1) & d->mask) {
        home = fj & d->mask;
        if (((j - home) & d->mask) >= ((j - i) & d->mask)) {
            *slot(d, i, sh) = fj;
            if (sh)
                slot(d, i, sh)[1] = slot(d, j, sh)[1];
            i = j;
        }
    }
    *slot(d, i, sh) = 0;
}

/* x mod cap for x < 2 cap, without a division: this runs per event. */
static inline uint64_t
ring_wrap(const struct cc_dedup *d, uint64_t x) {
    return x >= d->cap ? x - d->cap : x;
}

/* Inserts f (with val for maps); a held f keeps its age. */
INL void
insert(struct cc_dedup *d, uint64_t f, uint64_t val, unsigned sh) {
    uint64_t i, r;

    if (d->cap == 0)
        return;
    if (sh) {
        /* A map's put often names a held key: take the value before
         * anything is evicted, so the key keeps its age and no other
         * entry leaves early. (Sets are added to only after a miss.) */
        int64_t h = find(d, f, sh);
        if (h >= 0) {
            slot(d, (uint64_t)h, sh)[1] = val;
            return;
        }
    }
    r = ring_wrap(d, d->head + d->count);
    if (d->count == d->cap) {
        /* The ring says which ids leave next: start loading the slot of
         * one a few evictions ahead so that its removal does not wait on
         * memory. */
        if (d->cap > DEDUP_AHEAD) {
            uint64_t k = d->ring[ring_wrap(d, d->head + DEDUP_AHEAD)] & d->mask;
            __builtin_prefetch(slot(d, k, sh), 1);
        }
        set_remove(d, d->ring[d->head], sh);
        d->head = ring_wrap(d, d->head + 1);
        d->count--;
    }
    for (i = f & d->mask; *slot(d, i, sh) != 0; i = (i + 1) & d->mask) {
        /* Only a set can get here with f held, against the rule of
         * cc_dedup_add(): never hold it twice. */
        if (*slot(d, i, sh) == f)
            return;
    }
    *slot(d, i, sh) = f;
    if (sh)
        slot(d, i, sh)[1] = val;
    d->ring[r] = f;
    d->count++;
}

void
cc_dedup_add(struct cc_dedup *d, uint64_t f) {
    if (d->shift)
        insert(d, f, 0, 1);
    else
        insert(d, f, 0, 0);
}

void
cc_dedup_put(struct cc_dedup *d, uint64_t f, uint64_t val) {
    CC_ASSERT(d->shift == 1);
    insert(d, f, val, 1);
}

bool
cc_dedup_get(const struct cc_dedup *d, uint64_t f, uint64_t *val) {
    int64_t i;

    CC_ASSERT(d->shift == 1);
    i = find(d, f, 1);
    if (i < 0)
        return false;
    *val = slot(d, (uint64_t)i, 1)[1];
    return true;
}
