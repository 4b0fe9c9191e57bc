/*
 * Service level over sliding windows: a queue's (or a channel's) answers
 * and abandons in one-minute buckets covering the last hour, summed over
 * the last 15, 30 or 60 minutes on demand. A bucket remembers its minute,
 * so one that has slid out of the window is reset when next written and
 * skipped when read: nothing ticks. Engine time throughout (ms).
 */
#ifndef CC_SVCLEVEL_H
#define CC_SVCLEVEL_H

#include "cc.h"

#define CC_SL_MINUTES 60

struct cc_sl_bucket {
    uint64_t minute; /* now / 60000 + 1 of its counts; 0: never written */
    uint32_t offered, answered, in_target, with_target;
    uint32_t abandoned, short_abandoned;
    /* abandons of callers with an answer clock, short ones among them */
    uint32_t abandoned_wt, short_wt;
    uint32_t handled;   /* contacts closed after an answer */
    uint64_t handle_ms; /* their answer-to-close times */
    uint64_t wait_ms;   /* of the answered */
};

struct cc_sl_window {
    uint64_t offered, answered, in_target, with_target;
    uint64_t abandoned, short_abandoned, wait_ms;
    uint64_t abandoned_wt, short_wt;
    uint64_t handled, handle_ms;
};

struct cc_sl {
    struct cc_sl_bucket b[CC_SL_MINUTES];
    bool below;      /* a queue.service_level alert is outstanding */
    uint64_t alerts; /* queue.service_level alerts sent */
    /* The alert's window kept summed as events come, so that checking it
     * after every answer costs O(1): its length in minutes (0: not kept
     * yet), and the minute its sums are current for. */
    unsigned run_minutes;
    uint64_t run_minute;
    struct cc_sl_window run;
};

void cc_sl_offered(struct cc_sl *s, uint64_t now);
/* in_target: 1 answered by its answer clock's breach, 0 after it, -1 it
 * had no answer clock (it counts in neither). */
void cc_sl_answered(struct cc_sl *s, uint64_t now, uint64_t wait_ms,
                    int in_target);
/* with_target: the caller had an answer clock. */
void cc_sl_abandoned(struct cc_sl *s, uint64_t now, bool short_abandon,
                     bool with_target);
/* A contact answered earlier closed after handle_ms with an agent. */
void cc_sl_handled(struct cc_sl *s, uint64_t now, uint64_t handle_ms);
/* Sums the last `minutes` (1 to 60) minutes up to now, this one included. */
void cc_sl_window(const struct cc_sl *s, uint64_t now, unsigned minutes,
                  struct cc_sl_window *out);
/* The same for the alert's window, from the running sums: O(1) per call
 * while the window keeps its length. */
const struct cc_sl_window *cc_sl_running(struct cc_sl *s, uint64_t now,
                                         unsigned minutes);

/*
 * Response times (a customer's wait for an agent's reply), per minute over
 * the last hour, in buckets two per doubling (1 ms to 49 days): a
 * percentile is read as its bucket's upper bound, at most a third above
 * the true value.
 */
#define CC_RT_BUCKETS 64

struct cc_rt {
    uint64_t minute[CC_SL_MINUTES]; /* as in struct cc_sl_bucket */
    uint32_t n[CC_SL_MINUTES][CC_RT_BUCKETS];
};

void cc_rt_add(struct cc_rt *r, uint64_t now, uint64_t ms);
/* The per-mille-th response time over the last `minutes` minutes (ms; -1
 * with none), and how many there were into *count. */
int64_t cc_rt_percentile(const struct cc_rt *r, uint64_t now, unsigned minutes,
                         unsigned permille, uint64_t *count);

/* Answered within target / answered with a target, in per mille; -1 with
 * none answered. */
int cc_sl_level(const struct cc_sl_window *w);
/* The variant that counts abandons too, short ones as met: (within target
 * + short abandons) / (answered with a target + abandons), all of callers
 * with an answer clock; -1 with none. */
int cc_sl_level_short(const struct cc_sl_window *w);

#endif
