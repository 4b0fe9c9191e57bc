/*
 * The small helpers of the hot path: decimal formatting without snprintf,
 * the sbuffer writer the outbox packs with, and blob size accounting.
 */
#include <criterion/criterion.h>

#include "cc.h"
#include "mem.h"
#include "outbox.h"

#include <inttypes.h>
#include <stdio.h>

TestSuite(util);

Test(util, decimal_formatting_matches_printf) {
    static const uint64_t u[] = {
        0,         1, 9, 10, 99, 100, 4294967295, 4294967296, 1700000000000ULL,
        UINT64_MAX};
    static const int64_t s[] = {0, -1, 7, -10, INT64_MAX, INT64_MIN, -4096};
    char got[24], want[24];
    size_t i, n;

    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        n = cc_fmt_u64(got, u[i]);
        snprintf(want, sizeof(want), "%" PRIu64, u[i]);
        cr_assert_eq(n, strlen(want));
        cr_assert(memcmp(got, want, n) == 0, "%" PRIu64, u[i]);
    }
    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        n = cc_fmt_i64(got, s[i]);
        snprintf(want, sizeof(want), "%" PRId64, s[i]);
        cr_assert_eq(n, strlen(want));
        cr_assert(memcmp(got, want, n) == 0, "%" PRId64, s[i]);
    }
}

/* The same maps packed through msgpack's writer and ours come out the
 * same, across many growths of the buffer, and msgpack frees ours. */
Test(util, sbuffer_writer_packs_what_msgpack_packs) {
    msgpack_sbuffer a, b;
    msgpack_packer pa, pb;
    char big[3000];
    int i;

    memset(big, 'x', sizeof(big));
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
    msgpack_packer_init(&pb, &b, cc_sbuffer_write);
    for (i = 0; i < 20000; i++) {
        msgpack_packer *pk[2] = {&pa, &pb};
        int k;
        for (k = 0; k < 2; k++) {
            msgpack_pack_map(pk[k], 3);
            cc_pack_kv_u64(pk[k], "n", (uint64_t)i * 977);
            cc_pack_str(pk[k], "s");
            cc_pack_strn(pk[k], big, (size_t)(i % 40 == 0 ? 3000 : i % 13));
            cc_pack_str(pk[k], "neg");
            msgpack_pack_int64(pk[k], -i);
        }
    }
    cr_assert_eq(a.size, b.size);
    cr_assert(memcmp(a.data, b.data, a.size) == 0);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* The in-place encodings are msgpack-c's, byte for byte, at every
 * boundary of the integer forms and of fixstr. */
Test(util, in_place_packing_matches_msgpack) {
    static const uint64_t u[] = {0,
                                 1,
                                 127,
                                 128,
                                 255,
                                 256,
                                 65535,
                                 65536,
                                 4294967295ULL,
                                 4294967296ULL,
                                 1700000000000ULL,
                                 UINT64_MAX};
    char str[40];
    msgpack_sbuffer a, b;
    msgpack_packer pa, pb;
    size_t i;

    memset(str, 'k', sizeof(str));
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
    msgpack_packer_init(&pb, &b, cc_sbuffer_write);
    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        msgpack_pack_uint64(&pa, u[i]);
        cc_pack_u64(&pb, u[i]);
    }
    for (i = 0; i <= sizeof(str); i++) {
        msgpack_pack_str(&pa, i);
        msgpack_pack_str_body(&pa, str, i);
        cc_pack_strn(&pb, str, i);
    }
    cr_assert_eq(a.size, b.size);
    cr_assert(memcmp(a.data, b.data, a.size) == 0);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

Test(util, blobs_are_accounted_at_their_class_size) {
    cr_assert_eq(cc_blob_size(0), 0);
    cr_assert_eq(cc_blob_size(1), 16);
    cr_assert_eq(cc_blob_size(64), 64);
    cr_assert_eq(cc_blob_size(65), 80);
    cr_assert_eq(cc_blob_size(81), 96);
    cr_assert_eq(cc_blob_size(512), 512);
    cr_assert_eq(cc_blob_size(513), 513); /* malloc'd as asked */
}
