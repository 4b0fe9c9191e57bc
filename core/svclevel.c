/*
 * Service level over sliding windows. See svclevel.h.
 */
#include "svclevel.h"

#include <string.h>

/* The bucket of now's minute, emptied if it last held an older minute.
 * Minutes count from 1 so that 0 marks a bucket never written. */
static struct cc_sl_bucket *
bucket(struct cc_sl *s, uint64_t now) {
    uint64_t minute = now / 60000 + 1;
    struct cc_sl_bucket *b = &s->b[minute % CC_SL_MINUTES];

    if (b->minute != minute) {
        memset(b, 0, sizeof(*b));
        b->minute = minute;
    }
    return b;
}

void
cc_sl_offered(struct cc_sl *s, uint64_t now) {
    bucket(s, now)->offered++;
}

void
cc_sl_answered(struct cc_sl *s, uint64_t now, uint64_t wait_ms, int in_target) {
    struct cc_sl_bucket *b = bucket(s, now);

    b->answered++;
    b->wait_ms += wait_ms;
    if (in_target >= 0) {
        b->with_target++;
        b->in_target += (uint32_t)in_target;
    }
}

void
cc_sl_abandoned(struct cc_sl *s, uint64_t now, bool short_abandon,
                bool with_target) {
    struct cc_sl_bucket *b = bucket(s, now);

    b->abandoned++;
    b->short_abandoned += short_abandon;
    b->abandoned_wt += with_target;
    b->short_wt += with_target && short_abandon;
}

void
cc_sl_window(const struct cc_sl *s, uint64_t now, unsigned minutes,
             struct cc_sl_window *out) {
    uint64_t minute = now / 60000 + 1;
    unsigned i;

    memset(out, 0, sizeof(*out));
    if (minutes > CC_SL_MINUTES)
        minutes = CC_SL_MINUTES;
    /* Only the window's own buckets, newest first; each counts if it
     * holds its minute and not one an hour older. */
    for (i = 0; i < minutes && i < minute; i++) {
        const struct cc_sl_bucket *b = &s->b[(minute - i) % CC_SL_MINUTES];
        if (b->minute != minute - i)
            continue;
        out->offered += b->offered;
        out->answered += b->answered;
        out->in_target += b->in_target;
        out->with_target += b->with_target;
        out->abandoned += b->abandoned;
        out->short_abandoned += b->short_abandoned;
        out->wait_ms += b->wait_ms;
        out->abandoned_wt += b->abandoned_wt;
        out->short_wt += b->short_wt;
    }
}

int
cc_sl_level(const struct cc_sl_window *w) {
    if (w->with_target == 0)
        return -1;
    return (int)(w->in_target * 1000 / w->with_target);
}

int
cc_sl_level_short(const struct cc_sl_window *w) {
    uint64_t d = w->with_target + w->abandoned_wt;
    if (d == 0)
        return -1;
    return (int)((w->in_target + w->short_wt) * 1000 / d);
}
