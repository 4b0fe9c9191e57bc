/*
 * The MessagePack reader against well-formed, truncated and hostile input.
 */
#include <criterion/criterion.h>

#include "mp.h"
#include "testutil.h"

TestSuite(mp);

Test(mp, reads_every_integer_width) {
    static const int64_t values[] = {
        0,         1,      127,    128,          255,
        256,       65535,  65536,  4294967295LL, 4294967296LL,
        INT64_MAX, -1,     -32,    -33,          -128,
        -129,      -32768, -32769, INT32_MIN,    INT64_MIN};
    struct tb t;
    struct cc_mp m;
    size_t i;
    int64_t v;

    tb_init(&t);
    for (i = 0; i < CC_ARRAY_SIZE(values); i++)
        msgpack_pack_int64(&t.pk, values[i]);
    cc_mp_init(&m, t.sb.data, t.sb.size);
    for (i = 0; i < CC_ARRAY_SIZE(values); i++) {
        cr_assert_eq(cc_mp_read_int(&m, &v), 0, "value %zu", i);
        cr_assert_eq(v, values[i], "value %zu", i);
    }
    cr_assert_eq(cc_mp_left(&m), 0);
    tb_fini(&t);
}

Test(mp, uint64_above_int64_is_not_an_int) {
    struct tb t;
    struct cc_mp m;
    int64_t v;

    tb_init(&t);
    msgpack_pack_uint64(&t.pk, UINT64_MAX);
    cc_mp_init(&m, t.sb.data, t.sb.size);
    cr_assert_eq(cc_mp_peek(&m), CC_MP_UINT);
    cr_assert_eq(cc_mp_read_int(&m, &v), CC_EINVAL);
    tb_fini(&t);
}

Test(mp, strings_of_every_header_size) {
    static const size_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
    char *big = malloc(65536);
    struct tb t;
    struct cc_mp m;
    struct cc_str s;
    size_t i;

    memset(big, 'x', 65536);
    tb_init(&t);
    for (i = 0; i < CC_ARRAY_SIZE(lens); i++) {
        msgpack_pack_str(&t.pk, lens[i]);
        msgpack_pack_str_body(&t.pk, big, lens[i]);
    }
    cc_mp_init(&m, t.sb.data, t.sb.size);
    for (i = 0; i < CC_ARRAY_SIZE(lens); i++) {
        cr_assert_eq(cc_mp_read_str(&m, &s), 0);
        cr_assert_eq(s.n, lens[i]);
    }
    tb_fini(&t);
    free(big);
}

Test(mp, floats_and_ints_read_as_double) {
    struct tb t;
    struct cc_mp m;
    double d;

    tb_init(&t);
    msgpack_pack_float(&t.pk, 0.5f);
    msgpack_pack_double(&t.pk, -0.25);
    msgpack_pack_int(&t.pk, 1);
    cc_mp_init(&m, t.sb.data, t.sb.size);
    cr_assert_eq(cc_mp_read_double(&m, &d), 0);
    cr_assert_float_eq(d, 0.5, 1e-9);
    cr_assert_eq(cc_mp_read_double(&m, &d), 0);
    cr_assert_float_eq(d, -0.25, 1e-9);
    cr_assert_eq(cc_mp_read_double(&m, &d), 0);
    cr_assert_float_eq(d, 1.0, 1e-9);
    tb_fini(&t);
}

/* Hostile headers: each declares far more than the buffer holds. */
Test(mp, huge_declared_lengths_fail_without_allocating) {
    static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    static const uint8_t bin32[] = {0xc6, 0x7f, 0xff, 0xff, 0xff};
    static const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t arr16[] = {0xdc, 0x00, 0x03, 0x01, 0x02};
    static const uint8_t map16[] = {0xde, 0x00, 0x02, 0xa1, 'a', 0x01};
    const struct {
        const uint8_t *p;
        size_t n;
    } cases[] = {{arr32, sizeof(arr32)}, {map32, sizeof(map32)},
                 {str32, sizeof(str32)}, {bin32, sizeof(bin32)},
                 {ext32, sizeof(ext32)}, {arr16, sizeof(arr16)},
                 {map16, sizeof(map16)}};
    struct cc_mp m;
    uint32_t n;
    struct cc_str s;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(cases); i++) {
        cc_mp_init(&m, cases[i].p, cases[i].n);
        cr_assert_eq(cc_mp_skip(&m), CC_EPROTO, "case %zu", i);
        cr_assert_eq(cc_mp_offset(&m), 0, "skip must not move on failure");
    }
    cc_mp_init(&m, arr32, sizeof(arr32));
    cr_assert_eq(cc_mp_read_array(&m, &n), CC_EPROTO);
    cc_mp_init(&m, map32, sizeof(map32));
    cr_assert_eq(cc_mp_read_map(&m, &n), CC_EPROTO);
    cc_mp_init(&m, str32, sizeof(str32));
    cr_assert_eq(cc_mp_read_str(&m, &s), CC_EPROTO);
}

Test(mp, every_truncation_of_a_valid_value_fails) {
    struct tb t;
    struct cc_mp m;
    size_t cut;

    tb_init(&t);
    tb_event(&t, "e-1", 1700000000000LL, "phone", "contact.open", "c-1",
             "+15551230000");
    for (cut = 0; cut < t.sb.size; cut++) {
        cc_mp_init(&m, t.sb.data, cut);
        cr_assert_eq(cc_mp_skip(&m), CC_EPROTO, "cut at %zu", cut);
    }
    cc_mp_init(&m, t.sb.data, t.sb.size);
    cr_assert_eq(cc_mp_skip(&m), 0);
    tb_fini(&t);
}

Test(mp, nesting_deeper_than_the_limit_fails) {
    uint8_t buf[CC_MP_MAX_DEPTH + 3];
    struct cc_mp m;
    size_t i;

    for (i = 0; i < sizeof(buf) - 1; i++)
        buf[i] = 0x91; /* array of one */
    buf[sizeof(buf) - 1] = 0x01;
    cc_mp_init(&m, buf, sizeof(buf));
    cr_assert_eq(cc_mp_skip(&m), CC_EPROTO);
    /* At the limit it is fine. */
    cc_mp_init(&m, buf + 2, sizeof(buf) - 2);
    cr_assert_eq(cc_mp_skip(&m), 0);
}

Test(mp, reserved_byte_is_invalid) {
    static const uint8_t b[] = {0xc1};
    struct cc_mp m;
    cc_mp_init(&m, b, 1);
    cr_assert_eq(cc_mp_peek(&m), CC_MP_INVALID);
    cr_assert_eq(cc_mp_skip(&m), CC_EPROTO);
}

Test(mp, wrong_type_consumes_nothing) {
    struct tb t;
    struct cc_mp m;
    struct cc_str s;
    int64_t v;

    tb_init(&t);
    msgpack_pack_int(&t.pk, 5);
    cc_mp_init(&m, t.sb.data, t.sb.size);
    cr_assert_eq(cc_mp_read_str(&m, &s), CC_EINVAL);
    cr_assert_eq(cc_mp_offset(&m), 0);
    cr_assert_eq(cc_mp_read_int(&m, &v), 0);
    tb_fini(&t);
}

/* The in-line integer paths (positive fixint, uint 64) check the bytes
 * present like the others: a uint 64 cut short fails without moving, one
 * above INT64_MAX is refused, a fixint as the last byte reads. */
Test(mp, inline_integer_paths_check_bounds) {
    static const uint8_t cut[] = {0xcf, 0, 0, 1, 0x8b, 0xfc};
    static const uint8_t big[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t max[] = {0xcf, 0x7f, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x05};
    struct cc_mp m;
    int64_t v;

    cc_mp_init(&m, cut, sizeof(cut));
    cr_assert_neq(cc_mp_read_int(&m, &v), 0);
    cr_assert_eq(cc_mp_offset(&m), 0);
    cc_mp_init(&m, big, sizeof(big));
    cr_assert_eq(cc_mp_read_int(&m, &v), CC_EINVAL);
    cr_assert_eq(cc_mp_offset(&m), 0);
    cc_mp_init(&m, max, sizeof(max));
    cr_assert_eq(cc_mp_read_int(&m, &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(cc_mp_read_int(&m, &v), 0);
    cr_assert_eq(v, 5);
    cr_assert_eq(cc_mp_left(&m), 0);
    cr_assert_neq(cc_mp_read_int(&m, &v), 0);
}
