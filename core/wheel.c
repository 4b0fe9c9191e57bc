/*
 * The timing wheel. See wheel.h for the layout.
 *
 * Invariant: a timer at level L, slot s, satisfies
 *   now >> 6L < expires >> 6L < (now >> 6L) + 64 and (expires >> 6L) & 63 == s,
 * so within one level a slot names exactly one future 64^L-millisecond span
 * and advancing time from a to b only has to visit the slots whose span
 * starts in (a, b].
 */
#include "wheel.h"

#include <string.h>

static inline void
list_push(struct cc_timer **head, struct cc_timer *t) {
    t->next = *head;
    if (t->next != NULL)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

static inline void
list_unlink(struct cc_timer *t) {
    *t->pprev = t->next;
    if (t->next != NULL)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void
cc_wheel_init(struct cc_wheel *w, uint64_t now) {
    memset(w, 0, sizeof(*w));
    w->now = now;
}

static void
wheel_place(struct cc_wheel *w, struct cc_timer *t) {
    uint64_t diff = t->expires ^ w->now;
    unsigned level, slot;

    if (t->expires <= w->now) {
        list_push(&w->expired, t);
        return;
    }
    level = (unsigned)(63 - __builtin_clzll(diff)) / CC_WHEEL_BITS;
    slot = (unsigned)(t->expires >> (level * CC_WHEEL_BITS)) &
           (CC_WHEEL_SLOTS - 1);
    list_push(&w->slots[level][slot], t);
    w->pending[level] |= 1ULL << slot;
}

void
cc_wheel_arm(struct cc_wheel *w, struct cc_timer *t, uint64_t expires) {
    if (cc_timer_armed(t))
        cc_wheel_cancel(w, t);
    t->expires = expires;
    wheel_place(w, t);
    w->count++;
}

void
cc_wheel_cancel(struct cc_wheel *w, struct cc_timer *t) {
    struct cc_timer **head;
    uint64_t tl;
    unsigned level, slot;

    if (!cc_timer_armed(t))
        return;
    head = t->pprev;
    list_unlink(t);
    w->count--;
    /* If t emptied its slot, clear the slot's pending bit. A head pointer
     * that lies inside the slot table tells us which slot it was. */
    if (*head == NULL && head >= &w->slots[0][0] &&
        head < &w->slots[0][0] + CC_WHEEL_LEVELS * CC_WHEEL_SLOTS) {
        tl = (uint64_t)(head - &w->slots[0][0]);
        level = (unsigned)(tl / CC_WHEEL_SLOTS);
        slot = (unsigned)(tl % CC_WHEEL_SLOTS);
        w->pending[level] &= ~(1ULL << slot);
    }
}

/* Moves every timer of one slot onto *out. */
static void
take_slot(struct cc_wheel *w, unsigned level, unsigned slot,
          struct cc_timer **out) {
    struct cc_timer *t;
    while ((t = w->slots[level][slot]) != NULL) {
        list_unlink(t);
        list_push(out, t);
    }
    w->pending[level] &= ~(1ULL << slot);
}

uint64_t
cc_wheel_advance(struct cc_wheel *w, uint64_t now) {
    struct cc_timer *moved = NULL, *due = NULL, *t;
    uint64_t fired = 0;
    unsigned level, shift, i, slot;

    if (now > w->now) {
        for (level = 0; level < CC_WHEEL_LEVELS; level++) {
            uint64_t from, to, span;
            shift = level * CC_WHEEL_BITS;
            if (w->pending[level] == 0)
                continue;
            from = w->now >> shift;
            to = now >> shift;
            if (from == to)
                continue;
            span = to - from;
            if (span >= CC_WHEEL_SLOTS) {
                for (slot = 0; slot < CC_WHEEL_SLOTS; slot++) {
                    if (w->pending[level] & (1ULL << slot))
                        take_slot(w, level, slot, &moved);
                }
                continue;
            }
            for (i = 1; i <= span; i++) {
                slot = (unsigned)((from + i) & (CC_WHEEL_SLOTS - 1));
                if (w->pending[level] & (1ULL << slot))
                    take_slot(w, level, slot, &moved);
            }
        }
        w->now = now;
        /* Re-place what was reached: due timers land on the expired list,
         * the rest drop to a lower level. */
        while ((t = moved) != NULL) {
            list_unlink(t);
            wheel_place(w, t);
        }
    }
    /* Detach the expired list so callbacks that arm timers at or before
     * now are fired on the next advance rather than looping here. */
    while ((t = w->expired) != NULL) {
        list_unlink(t);
        list_push(&due, t);
    }
    while ((t = due) != NULL) {
        list_unlink(t);
        w->count--;
        fired++;
        t->cb(w, t, w->now);
    }
    return fired;
}

uint64_t
cc_wheel_next(const struct cc_wheel *w) {
    unsigned level, shift, cur, k;

    if (w->expired != NULL)
        return w->now;
    for (level = 0; level < CC_WHEEL_LEVELS; level++) {
        uint64_t pend = w->pending[level], rot, at;
        if (pend == 0)
            continue;
        shift = level * CC_WHEEL_BITS;
        cur = (unsigned)((w->now >> shift) & (CC_WHEEL_SLOTS - 1));
        /* Rotate so that bit 0 is the slot after the current one. */
        k = (cur + 1) & (CC_WHEEL_SLOTS - 1);
        rot = k ? (pend >> k) | (pend << (64 - k)) : pend;
        k = (unsigned)__builtin_ctzll(rot) + 1; /* slots ahead, 1..64 */
        at = (w->now >> shift) + k;
        if (at > (UINT64_MAX >> shift))
            return UINT64_MAX - 1;
        /* Timers of a lower level fall due before the next span of any
         * higher level begins, so the first occupied level decides. */
        return at << shift;
    }
    return CC_WHEEL_NEVER;
}

/* ---- snapshot support ------------------------------------------------- */

bool
cc_wheel_slot_fits(const struct cc_wheel *w, unsigned level, unsigned slot,
                   uint64_t expires) {
    unsigned shift;
    uint64_t at, cur;

    if (level == CC_WHEEL_LEVELS)
        return slot == 0 && expires <= w->now;
    if (level > CC_WHEEL_LEVELS || slot >= CC_WHEEL_SLOTS)
        return false;
    shift = level * CC_WHEEL_BITS;
    at = expires >> shift;
    cur = w->now >> shift;
    return cur < at && at - cur < CC_WHEEL_SLOTS &&
           (at & (CC_WHEEL_SLOTS - 1)) == slot;
}

int
cc_wheel_restore_slot(struct cc_wheel *w, unsigned level, unsigned slot,
                      struct cc_timer *const *ts, const uint64_t *expires,
                      size_t n) {
    struct cc_timer **head, *tail = NULL;
    size_t i;

    if (n == 0 || !cc_wheel_slot_fits(w, level, slot, expires[0]))
        return CC_EINVAL;
    head = level == CC_WHEEL_LEVELS ? &w->expired : &w->slots[level][slot];
    if (*head != NULL)
        return CC_EINVAL;
    /* Appended one by one, so that a timer named twice is seen armed. */
    for (i = 0; i < n; i++) {
        struct cc_timer *t = ts[i];
        if (cc_timer_armed(t) ||
            !cc_wheel_slot_fits(w, level, slot, expires[i]))
            return CC_EINVAL;
        t->expires = expires[i];
        t->next = NULL;
        t->pprev = tail != NULL ? &tail->next : head;
        *t->pprev = t;
        tail = t;
        w->count++;
        if (level < CC_WHEEL_LEVELS)
            w->pending[level] |= 1ULL << slot;
    }
    return 0;
}
