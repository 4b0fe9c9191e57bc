/*
 * The idempotency window: remembers the last N ids, forgets older ones.
 */
#include <criterion/criterion.h>

#include "dedup.h"

#include <string.h>

TestSuite(dedup);

Test(dedup, remembers_the_window_and_forgets_the_oldest) {
    struct cc_dedup d;
    char id[32];
    int i, n;

    cr_assert_eq(cc_dedup_init(&d, 1000, 42), 0);
    for (i = 0; i < 5000; i++) {
        n = snprintf(id, sizeof(id), "event-%d", i);
        uint64_t fp = cc_dedup_fingerprint(&d, id, (size_t)n);
        cr_assert(!cc_dedup_seen(&d, fp), "%s", id);
        cc_dedup_add(&d, fp);
        cr_assert(cc_dedup_seen(&d, fp));
    }
    cr_assert_eq(d.count, 1000);
    for (i = 0; i < 5000; i++) {
        n = snprintf(id, sizeof(id), "event-%d", i);
        cr_assert_eq(cc_dedup_seen(&d, cc_dedup_fingerprint(&d, id, (size_t)n)),
                     i >= 4000, "%s", id);
    }
    cc_dedup_fini(&d);
}

Test(dedup, zero_window_disables) {
    struct cc_dedup d;
    cr_assert_eq(cc_dedup_init(&d, 0, 1), 0);
    cc_dedup_add(&d, cc_dedup_fingerprint(&d, "a", 1));
    cr_assert(!cc_dedup_seen(&d, cc_dedup_fingerprint(&d, "a", 1)));
    cc_dedup_fini(&d);
}

/*
 * The map form. Fingerprints are chosen so that many share a home slot
 * (the window of 100 has 256 slots: a fingerprint's home is its low byte),
 * so that evictions shift probe runs back: every value must stay with its
 * fingerprint through the shifts. Three layouts of four home slots: apart
 * (runs that never meet), adjacent across the end of the table (runs that
 * merge and wrap, so that a removal leaves some later entries in place and
 * moves others), and adjacent in the middle.
 */
static const unsigned homes[][4] = {
    {0, 64, 128, 192}, {254, 255, 0, 1}, {100, 101, 102, 103}};

static uint64_t
colliding_fp(int i, unsigned layout) {
    return ((uint64_t)(i + 1) << 8) | homes[layout][i % 4];
}

Test(dedup, map_keeps_each_value_with_its_key_through_evictions) {
    struct cc_dedup d;
    uint64_t v;
    unsigned lay;
    int i, j;

    for (lay = 0; lay < sizeof(homes) / sizeof(homes[0]); lay++) {
        cr_assert_eq(cc_dedup_init_map(&d, 100, 7), 0);
        cr_assert_eq(d.mask, 255);
        for (i = 0; i < 1000; i++) {
            cc_dedup_put(&d, colliding_fp(i, lay), 1000000 + (uint64_t)i);
            /* Everything in the window is there with its own value; what
             * left it is gone. */
            for (j = i - 120; j <= i; j++) {
                if (j < 0)
                    continue;
                if (j > i - 100) {
                    cr_assert(cc_dedup_get(&d, colliding_fp(j, lay), &v),
                              "layout %u: key %d lost after put %d", lay, j, i);
                    cr_assert_eq(v, 1000000 + (uint64_t)j,
                                 "layout %u: key %d has value %llu after put "
                                 "%d",
                                 lay, j, (unsigned long long)v, i);
                } else {
                    cr_assert(!cc_dedup_get(&d, colliding_fp(j, lay), &v),
                              "layout %u: key %d still held after put %d", lay,
                              j, i);
                }
            }
        }
        cc_dedup_fini(&d);
    }
}

Test(dedup, map_put_of_a_held_key_takes_the_value_and_keeps_the_age) {
    struct cc_dedup d;
    uint64_t v;
    int i;

    cr_assert_eq(cc_dedup_init_map(&d, 10, 7), 0);
    for (i = 0; i < 10; i++)
        cc_dedup_put(&d, colliding_fp(i, 0), (uint64_t)i);
    /* The oldest takes a new value but stays the oldest. */
    cc_dedup_put(&d, colliding_fp(0, 0), 99);
    cr_assert(cc_dedup_get(&d, colliding_fp(0, 0), &v));
    cr_assert_eq(v, 99);
    cc_dedup_put(&d, colliding_fp(10, 0), 10);
    cr_assert(!cc_dedup_get(&d, colliding_fp(0, 0), &v));
    cr_assert(cc_dedup_get(&d, colliding_fp(1, 0), &v));
    cr_assert_eq(v, 1);
    cr_assert_eq(cc_dedup_bytes(&d), (32 * 2 + 10) * sizeof(uint64_t));
    cc_dedup_fini(&d);
}

/*
 * Against a reference that remembers each key's last insertion: random keys
 * from a universe four times the window, their fingerprints crowded onto 64
 * home slots so that probe runs are long, merge and wrap, and evictions
 * shift them back. Every answer must be the reference's, and the table must
 * hold exactly the window's entries (no leftovers from shifts).
 */
static void
check_against_reference(bool map) {
    enum { N = 1000, KEYS = 4000 };
    static uint64_t last[KEYS], val[KEYS];
    struct cc_dedup d;
    uint64_t rng = 12345, ins = 0, v, i, used;
    int step, k;

    memset(last, 0, sizeof(last));
    cr_assert_eq(map ? cc_dedup_init_map(&d, N, 1) : cc_dedup_init(&d, N, 1),
                 0);
    cr_assert_eq(d.mask, 2047);
    for (step = 0; step < 200000; step++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        k = (int)((rng >> 33) % KEYS);
        /* Home slots 32 apart, one of them 8 before the end. */
        uint64_t fp = ((uint64_t)(k + 1) << 11) |
                      (((uint64_t)(k % 64) * 32 + 2040) & 2047);
        bool held = last[k] != 0 && last[k] + N > ins;
        if (!map) {
            cr_assert_eq(cc_dedup_seen(&d, fp), held, "step %d key %d", step,
                         k);
            if (!held) {
                cc_dedup_add(&d, fp);
                last[k] = ++ins;
            }
        } else {
            cr_assert_eq(cc_dedup_get(&d, fp, &v), held, "step %d key %d", step,
                         k);
            if (held)
                cr_assert_eq(v, val[k], "step %d key %d", step, k);
            if (!held)
                last[k] = ++ins;
            val[k] = (uint64_t)step;
            cc_dedup_put(&d, fp, val[k]);
        }
        cr_assert_eq(d.count, ins < N ? ins : N);
        if (step % 997 == 0) {
            for (i = used = 0; i <= d.mask; i++)
                used += d.set[i << d.shift] != 0;
            cr_assert_eq(used, d.count, "step %d: %llu slots used", step,
                         (unsigned long long)used);
        }
    }
    cc_dedup_fini(&d);
}

Test(dedup, set_matches_a_reference_of_the_last_n_ids) {
    check_against_reference(false);
}

Test(dedup, map_matches_a_reference_of_the_last_n_keys) {
    check_against_reference(true);
}
