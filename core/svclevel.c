/*
 * Service level over sliding windows. See svclevel.h.
 */
#include "svclevel.h"

#include <string.h>

static void
add(struct cc_sl_window *w, const struct cc_sl_bucket *b, int sign) {
    w->offered += (uint64_t)(sign * (int64_t)b->offered);
    w->answered += (uint64_t)(sign * (int64_t)b->answered);
    w->in_target += (uint64_t)(sign * (int64_t)b->in_target);
    w->with_target += (uint64_t)(sign * (int64_t)b->with_target);
    w->abandoned += (uint64_t)(sign * (int64_t)b->abandoned);
    w->short_abandoned += (uint64_t)(sign * (int64_t)b->short_abandoned);
    w->wait_ms += (uint64_t)(sign * (int64_t)b->wait_ms);
    w->abandoned_wt += (uint64_t)(sign * (int64_t)b->abandoned_wt);
    w->short_wt += (uint64_t)(sign * (int64_t)b->short_wt);
    w->handled += (uint64_t)(sign * (int64_t)b->handled);
    w->handle_ms += (uint64_t)(sign * (int64_t)b->handle_ms);
}

/* Brings the running sums to `minute`: the buckets that slid out of the
 * window leave them, each once. */
static void
run_advance(struct cc_sl *s, uint64_t minute) {
    uint64_t x, from, to;

    if (s->run_minutes == 0 || minute <= s->run_minute)
        return;
    /* The sums hold minutes run_minute - W + 1 .. run_minute; those up to
     * minute - W leave (at most W of them: nothing came after run_minute,
     * and no bucket of theirs has been written over since). */
    from = s->run_minute + 1 > s->run_minutes
               ? s->run_minute + 1 - s->run_minutes
               : 1;
    to = minute > s->run_minutes ? minute - s->run_minutes : 0;
    if (to > s->run_minute)
        to = s->run_minute;
    for (x = from; x <= to; x++) {
        const struct cc_sl_bucket *b = &s->b[x % CC_SL_MINUTES];
        if (b->minute == x)
            add(&s->run, b, -1);
    }
    s->run_minute = minute;
}

/* The bucket of now's minute, emptied if it last held an older minute.
 * Minutes count from 1 so that 0 marks a bucket never written. */
static struct cc_sl_bucket *
bucket(struct cc_sl *s, uint64_t now) {
    uint64_t minute = now / 60000 + 1;
    struct cc_sl_bucket *b;

    /* Time does not go back here: an event stamped before the running
     * sums' minute counts in that minute. */
    if (s->run_minutes != 0 && minute < s->run_minute)
        minute = s->run_minute;
    b = &s->b[minute % CC_SL_MINUTES];
    if (b->minute > minute) /* an hour or more old: never wipe newer */
        minute = b->minute;
    run_advance(s, minute);
    if (b->minute != minute) {
        memset(b, 0, sizeof(*b));
        b->minute = minute;
    }
    return b;
}

/* Whether the running sums take in bucket b (now's): they count every
 * bucket of their window, this one included. */
static bool
running(const struct cc_sl *s, const struct cc_sl_bucket *b) {
    return s->run_minutes != 0 && b->minute == s->run_minute;
}

void
cc_sl_offered(struct cc_sl *s, uint64_t now) {
    struct cc_sl_bucket *b = bucket(s, now);

    b->offered++;
    if (running(s, b))
        s->run.offered++;
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
    if (running(s, b)) {
        s->run.answered++;
        s->run.wait_ms += wait_ms;
        if (in_target >= 0) {
            s->run.with_target++;
            s->run.in_target += (uint64_t)in_target;
        }
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
    if (running(s, b)) {
        s->run.abandoned++;
        s->run.short_abandoned += short_abandon;
        s->run.abandoned_wt += with_target;
        s->run.short_wt += with_target && short_abandon;
    }
}

void
cc_sl_handled(struct cc_sl *s, uint64_t now, uint64_t handle_ms) {
    struct cc_sl_bucket *b = bucket(s, now);

    b->handled++;
    b->handle_ms += handle_ms;
    if (running(s, b)) {
        s->run.handled++;
        s->run.handle_ms += handle_ms;
    }
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
        out->handled += b->handled;
        out->handle_ms += b->handle_ms;
    }
}

const struct cc_sl_window *
cc_sl_running(struct cc_sl *s, uint64_t now, unsigned minutes) {
    uint64_t minute = now / 60000 + 1;

    if (minutes > CC_SL_MINUTES)
        minutes = CC_SL_MINUTES;
    if (s->run_minutes != 0 && minute < s->run_minute)
        minute = s->run_minute, now = (minute - 1) * 60000;
    if (s->run_minutes != minutes) {
        /* First use, or a new window length: sum the buckets once. */
        cc_sl_window(s, now, minutes, &s->run);
        s->run_minutes = minutes;
        s->run_minute = minute;
    } else {
        run_advance(s, minute);
    }
    return &s->run;
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

/* Two buckets per doubling: 0 and 1 ms exactly, then [2^e, 1.5 2^e) and
 * [1.5 2^e, 2^(e+1)). */
static unsigned
rt_bucket(uint64_t ms) {
    unsigned e, i;

    if (ms < 2)
        return (unsigned)ms;
    e = 63 - (unsigned)__builtin_clzll(ms);
    i = 2 * e + (unsigned)((ms >> (e - 1)) & 1);
    return i < CC_RT_BUCKETS ? i : CC_RT_BUCKETS - 1;
}

/* The largest value bucket i holds. */
static uint64_t
rt_upper(unsigned i) {
    unsigned e = i / 2;

    if (i < 2)
        return i;
    return (i % 2 ? (uint64_t)2 << e : ((uint64_t)3 << (e - 1))) - 1;
}

void
cc_rt_add(struct cc_rt *r, uint64_t now, uint64_t ms) {
    uint64_t minute = now / 60000 + 1;
    unsigned slot = (unsigned)(minute % CC_SL_MINUTES);

    if (r->minute[slot] > minute)
        return; /* an hour older than what the slot holds: out of range */
    if (r->minute[slot] != minute) {
        memset(r->n[slot], 0, sizeof(r->n[slot]));
        r->minute[slot] = minute;
    }
    r->n[slot][rt_bucket(ms)]++;
}

int64_t
cc_rt_percentile(const struct cc_rt *r, uint64_t now, unsigned minutes,
                 unsigned permille, uint64_t *count) {
    uint64_t minute = now / 60000 + 1, sum[CC_RT_BUCKETS] = {0}, total = 0;
    uint64_t want, seen = 0;
    unsigned i, k;

    if (minutes > CC_SL_MINUTES)
        minutes = CC_SL_MINUTES;
    for (i = 0; i < minutes && i < minute; i++) {
        unsigned slot = (unsigned)((minute - i) % CC_SL_MINUTES);
        if (r->minute[slot] != minute - i)
            continue;
        for (k = 0; k < CC_RT_BUCKETS; k++) {
            sum[k] += r->n[slot][k];
            total += r->n[slot][k];
        }
    }
    *count = total;
    if (total == 0)
        return -1;
    /* The smallest value with at least permille of the times at or below
     * it. */
    want = (total * permille + 999) / 1000;
    if (want == 0)
        want = 1;
    for (k = 0; k < CC_RT_BUCKETS; k++) {
        seen += sum[k];
        if (seen >= want)
            return (int64_t)rt_upper(k);
    }
    return (int64_t)rt_upper(CC_RT_BUCKETS - 1);
}
