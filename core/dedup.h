/*
 * The idempotency window: remembers the ids of the last N accepted events so
 * that a producer's retry is ignored instead of applied twice. Ids are kept
 * as 64-bit seeded fingerprints in an open-addressing set, with a ring that
 * evicts the oldest once N are held: 24 bytes per remembered id whatever the
 * id's length (40 for a map). Two different ids share a fingerprint with
 * probability about N / 2^64 per event (5e-14 for a million), an accepted risk
 * documented in docs/protocol.md.
 *
 * The same structure, created with cc_dedup_init_map(), also keeps a 64-bit
 * value with each fingerprint: a bounded map that forgets its oldest entry
 * when full (the conversation layer's index of native message ids). Not
 * thread-safe.
 */
#ifndef CC_DEDUP_H
#define CC_DEDUP_H

#include "cc.h"

#include <stdbool.h>

struct cc_dedup {
    /* Slot i's fingerprint (0 = empty) is set[i << shift]; a map (shift 1)
     * keeps the slot's value right after it, in the same cache line, so
     * that a put touches one line, not two in two tables. */
    uint64_t *set;
    uint64_t mask;
    unsigned shift; /* 0: a set, 1: a map */
    uint64_t *ring; /* insertion order */
    uint64_t cap, head, count;
    uint64_t seed;
};

/* window = 0 disables the check. */
int cc_dedup_init(struct cc_dedup *d, uint64_t window, uint64_t seed);
/* A bounded map of window entries (fingerprint -> value); window > 0. */
int cc_dedup_init_map(struct cc_dedup *d, uint64_t window, uint64_t seed);
void cc_dedup_fini(struct cc_dedup *d);
/* The fingerprint under which an id is remembered: compute it once per
 * event and pass it to both calls below. */
uint64_t cc_dedup_fingerprint(const struct cc_dedup *d, const void *id,
                              size_t len);
bool cc_dedup_seen(const struct cc_dedup *d, uint64_t fp);
/* Starts loading the memory cc_dedup_seen(fp) will read. */
static inline void
cc_dedup_prefetch(const struct cc_dedup *d, uint64_t fp) {
    if (d->cap != 0)
        __builtin_prefetch(&d->set[(fp & d->mask) << d->shift]);
}
/* Starts loading the memory cc_dedup_put(fp) will write. */
static inline void
cc_dedup_prefetch_put(const struct cc_dedup *d, uint64_t fp) {
    if (d->cap != 0)
        __builtin_prefetch(&d->set[(fp & d->mask) << d->shift], 1);
}
/* Remembers fp, forgetting the oldest when full. fp must not be held
 * already (ask cc_dedup_seen() first, as ingest does): a held fp is not
 * added twice, but on a full set the oldest id is forgotten anyway. */
void cc_dedup_add(struct cc_dedup *d, uint64_t fp);
/* Maps: remembers fp with val (a held fp keeps its age, takes val). */
void cc_dedup_put(struct cc_dedup *d, uint64_t fp, uint64_t val);
/* Maps: the value held for fp, if any. */
bool cc_dedup_get(const struct cc_dedup *d, uint64_t fp, uint64_t *val);
size_t cc_dedup_bytes(const struct cc_dedup *d);

#endif
