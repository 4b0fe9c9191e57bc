/*
 * The timing wheel against a simple reference (a flat array scanned for due
 * deadlines), with random arms, re-arms, cancels and time steps of every
 * scale.
 */
#include <criterion/criterion.h>

#include "wheel.h"

TestSuite(wheel);

#define N 2000

struct item {
    struct cc_timer t;
    int fired; /* times fired */
    uint64_t fired_at;
};

static struct item items[N];
static uint64_t ref_due[N]; /* 0 = not armed */

static void
item_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct item *it = CC_CONTAINER_OF(t, struct item, t);
    (void)w;
    it->fired++;
    it->fired_at = now;
}

static uint64_t rng = 88172645463325252ULL;
static uint64_t
xorshift(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

Test(wheel, matches_reference_under_random_operations) {
    struct cc_wheel w;
    uint64_t now = 1700000000000ULL;
    int step, i;

    cc_wheel_init(&w, now);
    for (i = 0; i < N; i++)
        cc_timer_init(&items[i].t, item_cb);
    for (step = 0; step < 20000; step++) {
        unsigned op = (unsigned)(xorshift() % 10);
        i = (int)(xorshift() % N);
        if (op < 5) {
            /* Deadlines from the past to years ahead. */
            static const uint64_t scales[] = {1,      64,       4096,
                                              262144, 16777216, 1ULL << 34};
            uint64_t scale = scales[xorshift() % CC_ARRAY_SIZE(scales)];
            uint64_t due = now + xorshift() % scale;
            if (xorshift() % 20 == 0)
                due = now - xorshift() % 1000;
            cc_wheel_arm(&w, &items[i].t, due);
            ref_due[i] = due;
        } else if (op < 7) {
            cc_wheel_cancel(&w, &items[i].t);
            ref_due[i] = 0;
        } else {
            static const uint64_t steps[] = {1,  7,    63,     64,
                                             65, 5000, 300000, 20000000};
            uint64_t next = cc_wheel_next(&w), want = UINT64_MAX;
            int j, expect_fire[N];
            now += xorshift() % steps[xorshift() % CC_ARRAY_SIZE(steps)];
            /* cc_wheel_next must never be later than the earliest due. */
            for (j = 0; j < N; j++) {
                if (ref_due[j] && ref_due[j] < want)
                    want = ref_due[j];
            }
            if (want != UINT64_MAX)
                cr_assert_leq(next, want < w.now ? w.now : want,
                              "next %llu later than due %llu",
                              (unsigned long long)next,
                              (unsigned long long)want);
            for (j = 0; j < N; j++) {
                expect_fire[j] = ref_due[j] != 0 && ref_due[j] <= now;
                items[j].fired = 0;
            }
            cc_wheel_advance(&w, now);
            for (j = 0; j < N; j++) {
                cr_assert_eq(items[j].fired, expect_fire[j],
                             "timer %d due %llu now %llu fired %d", j,
                             (unsigned long long)ref_due[j],
                             (unsigned long long)now, items[j].fired);
                if (expect_fire[j])
                    ref_due[j] = 0;
                cr_assert_eq(cc_timer_armed(&items[j].t), ref_due[j] != 0);
            }
        }
    }
}

Test(wheel, fires_at_the_exact_millisecond) {
    struct cc_wheel w;
    struct item it;
    uint64_t t0 = 1700000000123ULL, now;

    cc_wheel_init(&w, t0);
    cc_timer_init(&it.t, item_cb);
    it.fired = 0;
    cc_wheel_arm(&w, &it.t, t0 + 60000);
    /* Stepping by the wheel's own next deadline lands exactly on time. */
    for (now = t0; it.fired == 0;) {
        now = cc_wheel_next(&w);
        cr_assert_leq(now, t0 + 60000);
        cc_wheel_advance(&w, now);
    }
    cr_assert_eq(it.fired_at, t0 + 60000);
    cr_assert_eq(cc_wheel_next(&w), CC_WHEEL_NEVER);
    cr_assert_eq(w.count, 0);
}

Test(wheel, rearm_moves_and_past_deadlines_fire_next_advance) {
    struct cc_wheel w;
    struct item a;

    cc_wheel_init(&w, 1000);
    cc_timer_init(&a.t, item_cb);
    a.fired = 0;
    cc_wheel_arm(&w, &a.t, 5000);
    cc_wheel_arm(&w, &a.t, 2000);
    cr_assert_eq(w.count, 1);
    cc_wheel_advance(&w, 1999);
    cr_assert_eq(a.fired, 0);
    cc_wheel_advance(&w, 2000);
    cr_assert_eq(a.fired, 1);
    cc_wheel_advance(&w, 6000);
    cr_assert_eq(a.fired, 1);
    cc_wheel_arm(&w, &a.t, 10);
    cr_assert_eq(cc_wheel_next(&w), 6000);
    cc_wheel_advance(&w, 6000);
    cr_assert_eq(a.fired, 2);
}

static struct cc_timer pair[2];
static int pair_fired;

/* Whichever of the pair runs first cancels the other. */
static void
cancel_other_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    (void)now;
    pair_fired++;
    cc_wheel_cancel(w, t == &pair[0] ? &pair[1] : &pair[0]);
}

Test(wheel, callback_may_cancel_a_timer_due_in_the_same_advance) {
    struct cc_wheel w;

    cc_wheel_init(&w, 0);
    cc_timer_init(&pair[0], cancel_other_cb);
    cc_timer_init(&pair[1], cancel_other_cb);
    pair_fired = 0;
    cc_wheel_arm(&w, &pair[0], 100);
    cc_wheel_arm(&w, &pair[1], 90);
    cc_wheel_advance(&w, 100);
    cr_assert_eq(pair_fired, 1);
    cr_assert_eq(w.count, 0);
    cr_assert_eq(cc_wheel_next(&w), CC_WHEEL_NEVER);
}
