/*
 * The idempotency window: remembers the last N ids, forgets older ones.
 */
#include <criterion/criterion.h>

#include "dedup.h"

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
