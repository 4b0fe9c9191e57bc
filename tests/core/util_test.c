/*
 * The small helpers of the hot path: decimal formatting without snprintf,
 * the sbuffer writer the outbox packs with, blob size accounting and the
 * memory reserve.
 */
#include <criterion/criterion.h>

#include "cc.h"
#include "mem.h"
#include "outbox.h"
#include "svclevel.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

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

/* The writers into reserved room (cc_w_*) are msgpack-c's encodings too,
 * at every boundary of every form they write, through both kinds of
 * packer: one writing with cc_sbuffer_write (in place) and one with
 * msgpack-c's own writer (through the scratch buffer). */
Test(util, reserved_room_writers_match_msgpack) {
    static const uint64_t u[] = {
        0,     1,     127,           128,           255,       256,
        65535, 65536, 4294967295ULL, 4294967296ULL, UINT64_MAX};
    static const int64_t s[] = {
        0,         -1,     -32,    -33,       -128,
        -129,      -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1,
        INT64_MIN, 127,    65536,  INT64_MAX};
    static const size_t lens[] = {0,  1,  2,  3,  4,   7,   8,     9,    15,
                                  16, 17, 31, 32, 255, 256, 65535, 65536};
    static const uint32_t counts[] = {0, 15, 16, 65535, 65536};
    static char str[65536 + 32]; /* lens[i] bytes from str + i */
    msgpack_sbuffer want, got_in, got_cb;
    msgpack_packer pw, pin, pcb;
    int round;
    size_t i;

    for (i = 0; i < sizeof(str); i++)
        str[i] = (char)('a' + i % 26);
    msgpack_sbuffer_init(&want);
    msgpack_sbuffer_init(&got_in);
    msgpack_sbuffer_init(&got_cb);
    msgpack_packer_init(&pw, &want, msgpack_sbuffer_write);
    msgpack_packer_init(&pin, &got_in, cc_sbuffer_write);
    msgpack_packer_init(&pcb, &got_cb, msgpack_sbuffer_write);

    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        msgpack_pack_uint64(&pw, u[i]);
    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
        msgpack_pack_int64(&pw, s[i]);
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        msgpack_pack_str(&pw, lens[i]);
        msgpack_pack_str_body(&pw, str + i, lens[i]);
    }
    for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        msgpack_pack_map(&pw, counts[i]);
        msgpack_pack_array(&pw, counts[i]);
    }
    msgpack_pack_double(&pw, -0.25);
    msgpack_pack_double(&pw, 0.8f);
    msgpack_pack_nil(&pw);
    msgpack_pack_true(&pw);
    msgpack_pack_false(&pw);
    msgpack_pack_str(&pw, 5);
    msgpack_pack_str_body(&pw, "cv-17", 5);
    msgpack_pack_str(&pw, 3 + 20);
    msgpack_pack_str_body(&pw, "cu-18446744073709551615", 23);
    msgpack_pack_str(&pw, 5);
    msgpack_pack_str_body(&pw, "topic", 5);

    for (round = 0; round < 2; round++) {
        msgpack_packer *pk = round == 0 ? &pin : &pcb;
        char *d = cc_pack_reserve(pk, 4 * sizeof(str));
        for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
            d = cc_w_u64(d, u[i]);
        for (i = 0; i < sizeof(s) / sizeof(s[0]); i++)
            d = cc_w_i64(d, s[i]);
        for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
            d = cc_w_str(d, str + i, lens[i]);
        for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
            d = cc_w_map(d, counts[i]);
            d = cc_w_array(d, counts[i]);
        }
        d = cc_w_double(d, -0.25);
        d = cc_w_double(d, 0.8f);
        d = cc_w_nil(d);
        d = cc_w_bool(d, true);
        d = cc_w_bool(d, false);
        d = cc_w_prefixed_u64(d, "cv-", 3, 17);
        d = cc_w_prefixed_u64(d, "cu-", 3, UINT64_MAX);
        d = cc_w_lit(d, "topic");
        cc_pack_finish(pk, d);
    }
    cr_assert_eq(got_in.size, want.size);
    cr_assert(memcmp(got_in.data, want.data, want.size) == 0);
    cr_assert_eq(got_cb.size, want.size);
    cr_assert(memcmp(got_cb.data, want.data, want.size) == 0);
    msgpack_sbuffer_destroy(&want);
    msgpack_sbuffer_destroy(&got_in);
    msgpack_sbuffer_destroy(&got_cb);
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

static bool
all_zero(const unsigned char *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* Pool chunks (one huge page each) come from the reserve, zeroed, and
 * nothing else does; the fill is claimed by one caller at a time. */
Test(util, reserve_serves_pool_chunks_zeroed) {
    struct cc_mem_reserve_stats rs;
    struct cc_mem_stats m0, m1;
    unsigned char *p, *big;

    cc_mem_stats(&m0);
    cc_mem_reserve_target(3);
    cr_assert(cc_mem_reserve_wanted());
    cr_assert(!cc_mem_reserve_wanted(), "a second fill while one is claimed");
    cr_assert_eq(cc_mem_reserve_fill(), 0);
    cr_assert(!cc_mem_reserve_wanted(), "full");
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 3);
    cc_mem_stats(&m1);
    cr_assert_eq(m1.bytes_live - m0.bytes_live, 3 * CC_HUGE_PAGE);

    p = cc_alloc_table(CC_HUGE_PAGE - 100);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % CC_HUGE_PAGE, 0);
    cr_assert(all_zero(p, CC_HUGE_PAGE - 100));
    memset(p, 0xa5, CC_HUGE_PAGE - 100);
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 2);
    cr_assert_eq(rs.taken, 1);
    cr_assert_eq(rs.missed, 0);

    /* Larger tables map their own. */
    big = cc_alloc_table(2 * CC_HUGE_PAGE);
    cr_assert_not_null(big);
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 2);
    cr_assert_eq(rs.taken, 1);
    cc_free_table(big, 2 * CC_HUGE_PAGE);

    cr_assert(cc_mem_reserve_wanted());
    cr_assert_eq(cc_mem_reserve_fill(), 0);
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 3);
    cc_free_table(p, CC_HUGE_PAGE - 100);

    cc_mem_reserve_release();
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 0);
    cr_assert_eq(rs.target, 0);
    cr_assert(!cc_mem_reserve_wanted());
    cc_mem_stats(&m1);
    cr_assert_eq(m1.bytes_live, m0.bytes_live);
}

/* Lowering the target unmaps what is held beyond it. */
Test(util, lowering_the_reserve_unmaps_the_excess) {
    struct cc_mem_reserve_stats rs;
    struct cc_mem_stats m0, m1;

    cc_mem_stats(&m0);
    cc_mem_reserve_target(3);
    cr_assert(cc_mem_reserve_wanted());
    cr_assert_eq(cc_mem_reserve_fill(), 0);
    cc_mem_reserve_target(1);
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.held, 1);
    cc_mem_stats(&m1);
    cr_assert_eq(m1.bytes_live - m0.bytes_live, CC_HUGE_PAGE);
    cr_assert_eq(rs.bytes_outside, m0.bytes_live);
    cc_mem_reserve_release();
}

/* Every pool chunk sized to fill a huge page fits in one, header
 * included, whatever the object size: the reserve serves only those. */
Test(util, huge_pool_chunks_fit_one_huge_page) {
    static const size_t sizes[] = {1,  8,  16,  24,  32,  40,  48,
                                   64, 96, 128, 192, 256, 512, 1000};
    struct cc_pool p;
    size_t i, bytes;

    for (i = 0; i < CC_ARRAY_SIZE(sizes); i++) {
        cc_pool_init(&p, sizes[i], cc_pool_huge_chunk(sizes[i]));
        bytes = cc_pool_chunk_bytes(&p);
        cr_assert_leq(bytes, CC_HUGE_PAGE, "size %zu: %zu bytes", sizes[i],
                      bytes);
        /* and not much less: one more object would not fit */
        cr_assert_gt(bytes + p.obj_size, CC_HUGE_PAGE, "size %zu", sizes[i]);
        cc_pool_fini(&p);
    }
}

/* An empty reserve is a miss, counted, and the chunk is still served. */
Test(util, empty_reserve_maps_on_the_spot) {
    struct cc_mem_reserve_stats rs;
    unsigned char *p;

    cc_mem_reserve_target(2);
    p = cc_alloc_table(CC_HUGE_PAGE);
    cr_assert_not_null(p);
    cr_assert(all_zero(p, CC_HUGE_PAGE));
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.missed, 1);
    cr_assert_eq(rs.taken, 0);
    cc_free_table(p, CC_HUGE_PAGE);
    cc_mem_reserve_release();
}

struct filler {
    atomic_int stop;
    int fills, failed;
};

static void *
fill_main(void *arg) {
    struct filler *f = arg;
    while (!atomic_load(&f->stop)) {
        if (cc_mem_reserve_wanted()) {
            /* No assertions off the test's thread: note and check after. */
            if (cc_mem_reserve_fill() != 0)
                f->failed++;
            f->fills++;
        } else {
            usleep(100);
        }
    }
    return NULL;
}

/* One thread fills while another takes: every chunk is served once, and
 * what the reserve counts adds up. */
Test(util, reserve_filled_from_another_thread) {
    enum { N = 40 };
    struct cc_mem_reserve_stats rs;
    struct filler f = {.fills = 0, .failed = 0};
    unsigned char *p[N];
    pthread_t t;
    int i, j;

    atomic_init(&f.stop, 0);
    cc_mem_reserve_target(2);
    cr_assert_eq(pthread_create(&t, NULL, fill_main, &f), 0);
    for (i = 0; i < 5000; i++) {
        cc_mem_reserve_stats(&rs);
        if (rs.held == 2)
            break;
        usleep(1000);
    }
    cr_assert_eq(rs.held, 2, "the other thread did not fill the reserve");
    for (i = 0; i < N; i++) {
        p[i] = cc_alloc_table(CC_HUGE_PAGE);
        cr_assert_not_null(p[i]);
        cr_assert(all_zero(p[i], 4096));
        p[i][0] = (unsigned char)i; /* in use */
        for (j = 0; j < i; j++)
            cr_assert_neq(p[i], p[j]);
    }
    atomic_store(&f.stop, 1);
    pthread_join(t, NULL);
    cc_mem_reserve_stats(&rs);
    cr_assert_eq(rs.taken + rs.missed, N);
    cr_assert_geq(rs.taken, 2);
    cr_assert_leq(rs.held, 2);
    cr_assert(f.fills > 0);
    cr_assert_eq(f.failed, 0);
    for (i = 0; i < N; i++) {
        cr_assert_eq(p[i][0], (unsigned char)i);
        cc_free_table(p[i], CC_HUGE_PAGE);
    }
    cc_mem_reserve_release();
}

/* Every byte of a key counts, whatever the key's length: the hash reads
 * keys as overlapping words, so flip each bit of keys of every length from
 * 0 to 40 bytes and check the hash changes, in about half its bits. */
Test(util, hash_depends_on_every_bit) {
    unsigned char key[40];
    size_t len, bit, i;
    uint64_t total = 0, flips = 0;

    for (i = 0; i < sizeof(key); i++)
        key[i] = (unsigned char)(i * 37 + 11);
    for (len = 0; len <= sizeof(key); len++) {
        uint64_t h = cc_hash(key, len, 0x5eed);
        for (bit = 0; bit < len * 8; bit++) {
            uint64_t g;
            key[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            g = cc_hash(key, len, 0x5eed);
            key[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            cr_assert_neq(g, h, "length %zu, bit %zu", len, bit);
            total += (uint64_t)__builtin_popcountll(g ^ h);
            flips++;
        }
        /* Keys that are prefixes of each other differ; so do seeds. */
        if (len > 0)
            cr_assert_neq(h, cc_hash(key, len - 1, 0x5eed), "length %zu", len);
        cr_assert_neq(h, cc_hash(key, len, 0x5eee), "seed, length %zu", len);
    }
    /* Runs of zero bytes of different lengths differ (the words read are
     * the same: only the length tells them apart). */
    {
        static const unsigned char zeros[40];
        for (len = 1; len <= sizeof(zeros); len++)
            cr_assert_neq(cc_hash(zeros, len, 0x5eed),
                          cc_hash(zeros, len - 1, 0x5eed), "%zu zeros", len);
    }
    /* An average near 32 of 64 output bits changed. */
    cr_assert(total > flips * 30 && total < flips * 34, "%.2f bits",
              (double)total / (double)flips);
}

/* Sequential ids, the commonest keys, spread evenly over buckets. */
Test(util, hash_spreads_sequential_ids) {
    enum { BUCKETS = 1024, KEYS = 1024 * 64 };
    static unsigned count[BUCKETS];
    char id[32];
    double chi = 0;
    unsigned i;

    for (i = 0; i < KEYS; i++) {
        int n = snprintf(id, sizeof(id), "ev-%u", i);
        count[cc_hash(id, (size_t)n, 1) & (BUCKETS - 1)]++;
    }
    for (i = 0; i < BUCKETS; i++) {
        double d = (double)count[i] - KEYS / BUCKETS;
        chi += d * d / (KEYS / BUCKETS);
    }
    /* 1023 degrees of freedom: the 99.99th percentile is near 1200. */
    cr_assert(chi < 1200, "chi-square %.1f", chi);
}

/* cc_bytes_eq agrees with memcmp for every length from 0 to 40 and a
 * difference at every position, read from unaligned addresses. */
Test(util, bytes_eq_agrees_with_memcmp) {
    unsigned char a[48], b[48];
    size_t len, pos, off;

    for (off = 0; off < 3; off++) {
        for (len = 0; len <= 40; len++) {
            memset(a, 'q', sizeof(a));
            memset(b, 'q', sizeof(b));
            cr_assert(cc_bytes_eq(a + off, b + 1, len), "length %zu", len);
            for (pos = 0; pos < len; pos++) {
                b[1 + pos] = 'r';
                cr_assert_not(cc_bytes_eq(a + off, b + 1, len),
                              "length %zu, byte %zu", len, pos);
                b[1 + pos] = 'q';
            }
            /* Bytes beyond n do not count. */
            b[1 + len] = 'z';
            cr_assert(cc_bytes_eq(a + off, b + 1, len), "length %zu", len);
        }
    }
}

/* The running sums the service-level alert reads agree with summing the
 * buckets, through random answers and abandons, minute edges, quiet spells
 * longer than the hour, and every window length. */
Test(util, service_level_running_sums_match_the_buckets) {
    static const unsigned windows[] = {1, 2, 15, 30, 59, 60};
    size_t wi;

    for (wi = 0; wi < sizeof(windows) / sizeof(windows[0]); wi++) {
        static struct cc_sl s;
        uint64_t now = 1700000000000ULL;
        unsigned i;

        memset(&s, 0, sizeof(s));
        srand(11 + (unsigned)wi);
        for (i = 0; i < 20000; i++) {
            struct cc_sl_window w;
            const struct cc_sl_window *r;
            int op = rand() % 4;
            /* Mostly seconds apart, sometimes minutes, now and then more
             * than an hour. */
            int jump = rand() % 100;
            now += jump < 90   ? (uint64_t)(rand() % 20000)
                   : jump < 99 ? (uint64_t)(rand() % 600000)
                               : 4000000;
            if (op == 0)
                cc_sl_offered(&s, now);
            else if (op == 1)
                cc_sl_answered(&s, now, (uint64_t)(rand() % 60000),
                               rand() % 3 - 1);
            else if (op == 2)
                cc_sl_abandoned(&s, now, rand() % 2, rand() % 2);
            else
                cc_sl_handled(&s, now, (uint64_t)(rand() % 600000));
            r = cc_sl_running(&s, now, windows[wi]);
            cc_sl_window(&s, now, windows[wi], &w);
            cr_assert_eq(memcmp(r, &w, sizeof(w)), 0,
                         "window %u, step %u: running sums differ", windows[wi],
                         i);
        }
    }
}

/* Response-time percentiles: never below the true value, at most half
 * above it (two buckets per doubling), and gone when the window slides
 * past their minute. */
Test(util, response_time_percentiles) {
    static struct cc_rt r;
    static const unsigned pm[] = {10, 500, 900, 990, 1000};
    uint64_t v[1000], now = 1700000000000ULL / 60000 * 60000, n;
    size_t i, j, k;

    memset(&r, 0, sizeof(r));
    srand(5);
    for (i = 0; i < 1000; i++) {
        v[i] = 1 + (uint64_t)(rand() % 100000);
        cc_rt_add(&r, now + i, v[i]);
    }
    for (i = 0; i < 1000; i++) /* sorted, for the true percentiles */
        for (j = i + 1; j < 1000; j++)
            if (v[j] < v[i]) {
                uint64_t x = v[i];
                v[i] = v[j];
                v[j] = x;
            }
    for (k = 0; k < sizeof(pm) / sizeof(pm[0]); k++) {
        int64_t got = cc_rt_percentile(&r, now + 1000, 15, pm[k], &n);
        uint64_t truth = v[(1000 * pm[k] + 999) / 1000 - 1];
        cr_assert_eq(n, 1000);
        cr_assert_geq((uint64_t)got, truth, "p%u: %lld < %llu", pm[k],
                      (long long)got, (unsigned long long)truth);
        cr_assert_leq((uint64_t)got, truth + truth / 2, "p%u: %lld vs %llu",
                      pm[k], (long long)got, (unsigned long long)truth);
    }
    cr_assert_eq(cc_rt_percentile(&r, now + 15 * 60000 - 1, 15, 500, &n) > 0,
                 true);
    cr_assert_eq(cc_rt_percentile(&r, now + 15 * 60000, 15, 500, &n), -1);
    cr_assert_eq(n, 0);
}
