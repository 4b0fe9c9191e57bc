/*
 * A hierarchical timing wheel holding every deadline of the engine. Timers
 * are intrusive nodes embedded in the objects they belong to: arming,
 * re-arming and cancelling are O(1) and allocate nothing. Time is an
 * unsigned millisecond count supplied by the caller (the wheel reads no
 * clock); cc_wheel_advance() fires every timer that fell due. The shell
 * advances to each deadline as it comes, so timers fire in deadline order;
 * one advance across many deadlines fires them in an order that is
 * deterministic but not sorted. cc_wheel_next() gives the time of
 * the wheel's next piece of work, which the shell uses to arm its single
 * uv_timer.
 *
 * Eleven levels of 64 slots cover all 64 bits of time: level L holds timers
 * whose deadline first differs from "now" in bits 6L..6L+5. A timer moves
 * down a level when time reaches its slot, at most ten times in its life.
 * Not thread-safe.
 */
#ifndef CC_WHEEL_H
#define CC_WHEEL_H

#include "cc.h"

#include <stdbool.h>

#define CC_WHEEL_BITS 6
#define CC_WHEEL_SLOTS (1u << CC_WHEEL_BITS)
#define CC_WHEEL_LEVELS 11
#define CC_WHEEL_NEVER UINT64_MAX

struct cc_timer;
struct cc_wheel;
/* Called from cc_wheel_advance() with the timer already disarmed; it may
 * re-arm this timer or arm and cancel any other. The owner of the wheel
 * finds itself from w with CC_CONTAINER_OF. */
typedef void (*cc_timer_cb)(struct cc_wheel *w, struct cc_timer *t,
                            uint64_t now);

struct cc_timer {
    struct cc_timer *next;
    struct cc_timer **pprev; /* NULL while disarmed */
    uint64_t expires;
    cc_timer_cb cb;
};

struct cc_wheel {
    uint64_t now;
    uint64_t count;                    /* armed timers */
    uint64_t pending[CC_WHEEL_LEVELS]; /* occupied slots */
    struct cc_timer *slots[CC_WHEEL_LEVELS][CC_WHEEL_SLOTS];
    struct cc_timer *expired; /* armed at or before now: fire next advance */
};

void cc_wheel_init(struct cc_wheel *w, uint64_t now);

static inline void
cc_timer_init(struct cc_timer *t, cc_timer_cb cb) {
    t->next = NULL;
    t->pprev = NULL;
    t->expires = 0;
    t->cb = cb;
}

static inline bool
cc_timer_armed(const struct cc_timer *t) {
    return t->pprev != NULL;
}

/* Arms (or re-arms) t to fire at expires. A deadline at or before the
 * wheel's time fires on the next cc_wheel_advance(). */
void cc_wheel_arm(struct cc_wheel *w, struct cc_timer *t, uint64_t expires);
/* Disarms t; harmless if it is not armed. */
void cc_wheel_cancel(struct cc_wheel *w, struct cc_timer *t);
/* Moves time to now (never backwards: an earlier now is treated as the
 * current time) and fires what fell due. Returns how many fired. */
uint64_t cc_wheel_advance(struct cc_wheel *w, uint64_t now);
/* The earliest time at which cc_wheel_advance() has work: exact for timers
 * due within 64 ms of now, otherwise a lower bound (the time a timer
 * cascades). CC_WHEEL_NEVER when empty. */
uint64_t cc_wheel_next(const struct cc_wheel *w);

/*
 * Snapshot support. A snapshot keeps every slot's list in order, because
 * timers that fall due in one advance fire in list order. Level
 * CC_WHEEL_LEVELS (slot 0) names the list of timers armed at or before the
 * wheel's time.
 *
 * Whether a timer due at expires may sit in that slot at the wheel's time
 * (the invariant of wheel.c).
 */
bool cc_wheel_slot_fits(const struct cc_wheel *w, unsigned level, unsigned slot,
                        uint64_t expires);
/* Arms ts[0..n) with their expires into that slot, which must be empty, in
 * that order (the first fires first). CC_EINVAL, with nothing armed from
 * the failing timer on, when the slot is not empty, a timer is armed
 * already (named twice) or does not fit the slot. */
int cc_wheel_restore_slot(struct cc_wheel *w, unsigned level, unsigned slot,
                          struct cc_timer *const *ts, const uint64_t *expires,
                          size_t n);

#endif
