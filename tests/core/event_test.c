/*
 * The protocol v1 decoder: every required key missing, every wrong type,
 * ranges, unknown channels and types, whole-message failures (not
 * MessagePack, truncated, trailing bytes, hostile headers), and values in
 * MessagePack's wider forms.
 */
#include <criterion/criterion.h>

#include "event.h"
#include "testutil.h"

TestSuite(event);

enum fk { F_STR, F_INT, F_DBL, F_NIL, F_BOOL, F_STRS, F_INTS, F_CUST };

struct field {
    const char *key;
    enum fk kind;
    const char *s;
    int64_t i;
};

static void
pack_fields(struct tb *t, const struct field *f, size_t n) {
    size_t i;
    msgpack_pack_map(&t->pk, (uint32_t)n);
    for (i = 0; i < n; i++) {
        tb_str(t, f[i].key);
        switch (f[i].kind) {
        case F_STR:
            tb_str(t, f[i].s);
            break;
        case F_INT:
            msgpack_pack_int64(&t->pk, f[i].i);
            break;
        case F_DBL:
            msgpack_pack_double(&t->pk, (double)f[i].i / 10.0);
            break;
        case F_NIL:
            msgpack_pack_nil(&t->pk);
            break;
        case F_BOOL:
            msgpack_pack_true(&t->pk);
            break;
        case F_STRS:
            msgpack_pack_array(&t->pk, 2);
            tb_str(t, "complaint");
            tb_str(t, f[i].s);
            break;
        case F_INTS:
            msgpack_pack_array(&t->pk, 1);
            msgpack_pack_int(&t->pk, 1);
            break;
        case F_CUST:
            msgpack_pack_map(&t->pk, 2);
            tb_kv_str(t, "phone", f[i].s);
            tb_kv_str(t, "loyalty_tier", "gold"); /* unknown: ignored */
            break;
        }
    }
}

static struct channels_fixture { struct cc_channels ch; } fx;

static void
setup(void) {
    cc_channels_init(&fx.ch);
    cc_channels_add(&fx.ch, "sms");
}

/* Decodes one message holding one event; returns cc_msg_next's result. */
static int
decode(struct tb *t, struct cc_event *ev, struct cc_reject *rej) {
    struct cc_msg_iter it;
    const char *err = NULL;
    int rc;
    cr_assert_eq(cc_msg_open(&it, t->sb.data, t->sb.size, &err), 0, "%s",
                 err ? err : "");
    rc = cc_msg_next(&it, &fx.ch, ev, rej);
    cr_assert_eq(cc_msg_next(&it, &fx.ch, ev, rej), -1);
    return rc;
}

static const struct field base[] = {
    {"id", F_STR, "ev-1", 0},
    {"ts", F_INT, NULL, 1700000000000LL},
    {"channel", F_STR, "phone", 0},
    {"type", F_STR, "queue.join", 0},
    {"contact", F_STR, "call-1", 0},
    {"queue", F_STR, "billing", 0},
    {"customer", F_CUST, "+15551234567", 0},
    {"priority", F_INT, NULL, 3},
    {"tags", F_STRS, "vip", 0},
    {"sentiment", F_DBL, NULL, -5},
    {"topic", F_STR, "refund", 0},
    {"extra_unknown", F_STR, "ignored", 0},
};
#define NBASE CC_ARRAY_SIZE(base)

Test(event, full_event_decodes, .init = setup) {
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;

    tb_init(&t);
    pack_fields(&t, base, NBASE);
    cr_assert_eq(decode(&t, &ev, &rej), 1);
    cr_assert(cc_str_eq(ev.id, "ev-1"));
    cr_assert_eq(ev.ts, 1700000000000LL);
    cr_assert_eq(ev.channel, 0);
    cr_assert_eq(ev.type, CC_EV_QUEUE_JOIN);
    cr_assert(cc_str_eq(ev.contact, "call-1"));
    cr_assert(cc_str_eq(ev.queue, "billing"));
    cr_assert(cc_str_eq(ev.ident[CC_IDENT_PHONE], "+15551234567"));
    cr_assert_eq(ev.priority, 3);
    cr_assert_eq(ev.ntags, 2);
    cr_assert_float_eq(ev.sentiment, -0.5, 1e-9);
    cr_assert(cc_str_eq(ev.topic, "refund"));
    tb_fini(&t);
}

Test(event, each_required_key_missing_is_named, .init = setup) {
    static const char *const required[] = {"id",   "ts",      "channel",
                                           "type", "contact", "queue"};
    struct field f[NBASE];
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;
    size_t r, i, n;

    tb_init(&t);
    for (r = 0; r < CC_ARRAY_SIZE(required); r++) {
        n = 0;
        for (i = 0; i < NBASE; i++) {
            if (strcmp(base[i].key, required[r]) != 0)
                f[n++] = base[i];
        }
        tb_reset(&t);
        pack_fields(&t, f, n);
        cr_assert_eq(decode(&t, &ev, &rej), 0, "without %s", required[r]);
        cr_assert_eq(rej.code, CC_R_MISSING, "without %s", required[r]);
        cr_assert_str_eq(rej.key, required[r]);
    }
    tb_fini(&t);
}

/* Every typed key given a value of the wrong MessagePack type. */
Test(event, each_wrong_type_is_named, .init = setup) {
    static const struct field wrong[] = {
        {"id", F_INT, NULL, 5},        {"ts", F_STR, "yesterday", 0},
        {"ts", F_DBL, NULL, 17},       {"channel", F_INT, NULL, 1},
        {"type", F_NIL, NULL, 0},      {"contact", F_BOOL, NULL, 0},
        {"customer", F_STR, "bob", 0}, {"queue", F_INTS, NULL, 0},
        {"agent", F_INT, NULL, 7},     {"priority", F_STR, "high", 0},
        {"tags", F_STR, "vip", 0},     {"tags", F_INTS, NULL, 0},
        {"topic", F_INT, NULL, 1},     {"sentiment", F_STR, "good", 0},
        {"reply_to", F_INT, NULL, 1},  {"score", F_STR, "5", 0},
        {"scale", F_INT, NULL, 1},     {"state", F_BOOL, NULL, 0},
        {"queues", F_STR, "a", 0},
    };
    struct field f[NBASE + 1];
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;
    size_t w, i, n;

    tb_init(&t);
    for (w = 0; w < CC_ARRAY_SIZE(wrong); w++) {
        n = 0;
        for (i = 0; i < NBASE; i++) {
            if (strcmp(base[i].key, wrong[w].key) != 0)
                f[n++] = base[i];
        }
        f[n++] = wrong[w];
        tb_reset(&t);
        pack_fields(&t, f, n);
        cr_assert_eq(decode(&t, &ev, &rej), 0, "wrong %s", wrong[w].key);
        cr_assert_eq(rej.code, CC_R_WRONG_TYPE, "wrong %s: got %s",
                     wrong[w].key, cc_reason_name(rej.code));
        cr_assert_str_eq(rej.key, wrong[w].key);
    }
    tb_fini(&t);
}

Test(event, values_out_of_range_and_unknown_names, .init = setup) {
    static const struct {
        struct field f;
        enum cc_reason code;
    } cases[] = {
        {{"ts", F_INT, NULL, -1}, CC_R_OUT_OF_RANGE},
        {{"ts", F_INT, NULL, 0}, CC_R_OUT_OF_RANGE},
        {{"ts", F_INT, NULL, 253402300800000LL}, CC_R_OUT_OF_RANGE},
        {{"priority", F_INT, NULL, 10}, CC_R_OUT_OF_RANGE},
        {{"priority", F_INT, NULL, -1}, CC_R_OUT_OF_RANGE},
        {{"sentiment", F_DBL, NULL, 11}, CC_R_OUT_OF_RANGE},
        {{"channel", F_STR, "fax", 0}, CC_R_UNKNOWN_CHANNEL},
        {{"type", F_STR, "contact.explode", 0}, CC_R_UNKNOWN_TYPE},
        {{"id", F_STR, "", 0}, CC_R_EMPTY},
        {{"queue", F_STR, "", 0}, CC_R_EMPTY},
    };
    struct field f[NBASE + 1];
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;
    size_t c, i, n;

    tb_init(&t);
    for (c = 0; c < CC_ARRAY_SIZE(cases); c++) {
        n = 0;
        for (i = 0; i < NBASE; i++) {
            if (strcmp(base[i].key, cases[c].f.key) != 0)
                f[n++] = base[i];
        }
        f[n++] = cases[c].f;
        tb_reset(&t);
        pack_fields(&t, f, n);
        cr_assert_eq(decode(&t, &ev, &rej), 0, "case %zu", c);
        cr_assert_eq(rej.code, cases[c].code, "case %zu: got %s", c,
                     cc_reason_name(rej.code));
    }
    tb_fini(&t);
}

Test(event, configured_channel_is_accepted, .init = setup) {
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;

    tb_init(&t);
    tb_event(&t, "e", 1700000000000LL, "sms", "message.in", "thread-9", NULL);
    cr_assert_eq(decode(&t, &ev, &rej), 1);
    cr_assert_eq(ev.channel, 4);
    tb_fini(&t);
}

Test(event, too_long_strings_are_rejected, .init = setup) {
    char id[300];
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;

    memset(id, 'a', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    tb_init(&t);
    tb_event(&t, id, 1700000000000LL, "chat", "message.in", "s", NULL);
    cr_assert_eq(decode(&t, &ev, &rej), 0);
    cr_assert_eq(rej.code, CC_R_TOO_LONG);
    cr_assert_str_eq(rej.key, "id");
    tb_fini(&t);
}

Test(event, feedback_and_agent_status_semantics, .init = setup) {
    static const struct field fb_bad[] = {
        {"id", F_STR, "f", 0},         {"ts", F_INT, NULL, 1700000000000LL},
        {"channel", F_STR, "chat", 0}, {"type", F_STR, "feedback", 0},
        {"score", F_INT, NULL, 9},     {"scale", F_STR, "csat", 0}};
    static const struct field st_bad[] = {
        {"id", F_STR, "s", 0},          {"ts", F_INT, NULL, 1700000000000LL},
        {"channel", F_STR, "phone", 0}, {"type", F_STR, "agent.status", 0},
        {"agent", F_STR, "ann", 0},     {"state", F_STR, "asleep", 0}};
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;

    tb_init(&t);
    pack_fields(&t, fb_bad, CC_ARRAY_SIZE(fb_bad));
    cr_assert_eq(decode(&t, &ev, &rej), 0);
    cr_assert_eq(rej.code, CC_R_OUT_OF_RANGE);
    cr_assert_str_eq(rej.key, "score");
    tb_reset(&t);
    pack_fields(&t, st_bad, CC_ARRAY_SIZE(st_bad));
    cr_assert_eq(decode(&t, &ev, &rej), 0);
    cr_assert_eq(rej.code, CC_R_BAD_VALUE);
    tb_fini(&t);
}

Test(event, batch_reports_each_event_by_index, .init = setup) {
    struct tb t;
    struct cc_msg_iter it;
    struct cc_event ev;
    struct cc_reject rej;
    const char *err;

    tb_init(&t);
    msgpack_pack_array(&t.pk, 4);
    tb_event(&t, "a", 1700000000000LL, "chat", "message.in", "s1", NULL);
    msgpack_pack_int(&t.pk, 42); /* not a map */
    tb_event(&t, "c", 1700000000000LL, "pigeon", "message.in", "s1", NULL);
    tb_event(&t, "d", 1700000000000LL, "email", "message.in", "m1", NULL);
    cr_assert_eq(cc_msg_open(&it, t.sb.data, t.sb.size, &err), 0);
    cr_assert(it.batch);
    cr_assert_eq(it.count, 4);
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), 1);
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), 0);
    cr_assert_eq(rej.code, CC_R_NOT_MAP);
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), 0);
    cr_assert_eq(rej.code, CC_R_UNKNOWN_CHANNEL);
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), 1);
    cr_assert(cc_str_eq(ev.id, "d"));
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), -1);
    tb_fini(&t);
}

/* Whether the message is refused as a whole: by cc_msg_open() or, for a
 * single event, by the first cc_msg_next(). */
static bool
refused(const void *buf, size_t len, const char **err) {
    struct cc_msg_iter it;
    struct cc_event ev;
    struct cc_reject rej;

    if (cc_msg_open(&it, buf, len, err) != 0)
        return true;
    if (cc_msg_next(&it, &fx.ch, &ev, &rej) == CC_MSG_MALFORMED) {
        cr_assert_not_null(it.error);
        *err = it.error;
        cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), -1);
        return true;
    }
    return false;
}

Test(event, whole_message_failures, .init = setup) {
    static const uint8_t not_mp[] = "hello, world";
    static const uint8_t scalar[] = {0x05};
    /* A batch whose 5-byte header declares 4 billion events. */
    static const uint8_t huge_batch[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x80};
    /* An event whose map declares 65535 pairs in 3 bytes. */
    static const uint8_t huge_map[] = {0xde, 0xff, 0xff, 0xa1, 'a'};
    struct tb t;
    struct cc_msg_iter it;
    const char *err;

    cr_assert_eq(cc_msg_open(&it, not_mp, sizeof(not_mp) - 1, &err), CC_EPROTO);
    cr_assert_not_null(err);
    cr_assert_eq(cc_msg_open(&it, scalar, 1, &err), CC_EPROTO);
    cr_assert_eq(cc_msg_open(&it, huge_batch, sizeof(huge_batch), &err),
                 CC_EPROTO);
    err = NULL;
    cr_assert(refused(huge_map, sizeof(huge_map), &err));
    cr_assert(strstr(err, "malformed") != NULL);
    cr_assert_eq(cc_msg_open(&it, "", 0, &err), CC_EPROTO);

    tb_init(&t);
    tb_event(&t, "a", 1700000000000LL, "chat", "message.in", "s1", NULL);
    msgpack_pack_int(&t.pk, 1); /* trailing */
    cr_assert(refused(t.sb.data, t.sb.size, &err));
    cr_assert(strstr(err, "trailing") != NULL);
    /* A single event cut anywhere is a malformed message, never a rejected
     * event. */
    {
        size_t full = t.sb.size - 1, cut;
        for (cut = 1; cut < full; cut++) {
            err = NULL;
            cr_assert(refused(t.sb.data, cut, &err), "cut at %zu", cut);
            cr_assert_not_null(err);
        }
        cr_assert_not(refused(t.sb.data, full, &err));
    }
    /* Truncated batch: nothing in it may be applied, so open fails. */
    tb_reset(&t);
    msgpack_pack_array(&t.pk, 2);
    tb_event(&t, "a", 1700000000000LL, "chat", "message.in", "s1", NULL);
    tb_event(&t, "b", 1700000000000LL, "chat", "message.in", "s1", NULL);
    cr_assert_eq(cc_msg_open(&it, t.sb.data, t.sb.size - 3, &err), CC_EPROTO);
    tb_fini(&t);
}

Test(event, reject_reasons_read_well) {
    struct cc_reject r = {CC_R_MISSING, "ts", NULL};
    char buf[128];
    cc_reject_format(&r, buf, sizeof(buf));
    cr_assert_str_eq(buf, "missing required key 'ts'");
    r.code = CC_R_WRONG_TYPE;
    r.detail = "an integer";
    cc_reject_format(&r, buf, sizeof(buf));
    cr_assert_str_eq(buf, "key 'ts' must be an integer");
}

/* Every type name decodes to its type; names one byte off (one short, one
 * long, or any one byte changed) do not. */
Test(event, every_type_name_and_no_near_miss, .init = setup) {
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;
    char name[64];
    int ty;
    size_t v;

    tb_init(&t);
    for (ty = 0; ty < CC_EV__COUNT; ty++) {
        const char *tn = cc_event_type_name((enum cc_event_type)ty);
        size_t n = strlen(tn);
        for (v = 0; v < n + 3; v++) {
            memcpy(name, tn, n + 1);
            if (v == 1)
                name[n - 1] = '\0'; /* one byte short */
            else if (v == 2)
                memcpy(name + n, "s", 2); /* one byte long */
            else if (v >= 3)
                name[v - 3] = (char)(name[v - 3] ^ 0x20); /* case, '.' */
            tb_reset(&t);
            msgpack_pack_map(&t.pk, 5);
            tb_kv_str(&t, "id", "ev-1");
            tb_kv_int(&t, "ts", 1700000000000LL);
            tb_kv_str(&t, "channel", "phone");
            tb_kv_str(&t, "type", name);
            tb_kv_str(&t, "contact", "call-1");
            if (v == 0) {
                /* Decodes, or is rejected for what the type needs. */
                if (decode(&t, &ev, &rej) == 1)
                    cr_assert_eq(ev.type, ty, "%s", tn);
                else
                    cr_assert_neq(rej.code, CC_R_UNKNOWN_TYPE, "%s", tn);
            } else {
                cr_assert_eq(decode(&t, &ev, &rej), 0, "%s", name);
                cr_assert_eq(rej.code, CC_R_UNKNOWN_TYPE, "%s", name);
            }
        }
    }
    tb_fini(&t);
}

/* Channel names of every length up to the longest (31 bytes) are found;
 * the same names with any one byte changed, one byte short or with a NUL
 * appended are not. */
Test(event, channel_names_are_matched_exactly) {
    struct cc_channels ch;
    struct cc_str s;
    char names[28][32], probe[40];
    size_t len, i;

    cc_channels_init(&ch);
    for (len = 4; len < 32; len++) {
        for (i = 0; i < len; i++)
            names[len - 4][i] = (char)('a' + (len + i) % 26);
        names[len - 4][len] = '\0';
        cr_assert_eq(cc_channels_add(&ch, names[len - 4]), 0, "%zu", len);
    }
    for (len = 4; len < 32; len++) {
        const char *nm = names[len - 4];
        s = (struct cc_str){nm, (uint32_t)len};
        cr_assert_eq(cc_channels_find(&ch, s), (int)(len - 4 + 4), "%s", nm);
        for (i = 0; i < len; i++) {
            memcpy(probe, nm, len);
            probe[i] = (char)(probe[i] ^ 0x20);
            s = (struct cc_str){probe, (uint32_t)len};
            cr_assert_lt(cc_channels_find(&ch, s), 0, "%zu %zu", len, i);
        }
        memcpy(probe, nm, len);
        probe[len] = '\0';
        s = (struct cc_str){probe, (uint32_t)(len + 1)};
        cr_assert_lt(cc_channels_find(&ch, s), 0, "%s with a NUL", nm);
        s = (struct cc_str){nm, (uint32_t)(len - 1)};
        if (len > 4)
            cr_assert_lt(cc_channels_find(&ch, s), 0, "%s short", nm);
    }
    s = (struct cc_str){"chat\0", 5};
    cr_assert_lt(cc_channels_find(&ch, s), 0);
    s = (struct cc_str){"chat", 4};
    cr_assert_eq(cc_channels_find(&ch, s), 1);
}

/* Keys are recognised at the very end of a message too, and keys that
 * differ from a known one by a byte, or are longer, are ignored like any
 * unknown key. */
Test(event, keys_are_read_exactly_at_any_position, .init = setup) {
    static const char *const near[] = {
        "i",        "idd",       "tss",   "typ",     "channe",
        "contactt", "customers", "Queue", "priorit", "reply_tO"};
    struct tb t;
    struct cc_event ev;
    struct cc_reject rej;
    size_t i;

    tb_init(&t);
    /* The last key of the message, with its value, in fewer than 9 bytes:
     * "ts" then a fixint; "tags" then an empty array. */
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6);
    tb_kv_str(&t, "id", "ev-1");
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "contact.open");
    tb_kv_str(&t, "contact", "c");
    tb_str(&t, "tags");
    msgpack_pack_array(&t.pk, 0);
    tb_kv_int(&t, "ts", 5);
    cr_assert_eq(decode(&t, &ev, &rej), 1);
    cr_assert_eq(ev.ts, 5);
    cr_assert(cc_str_eq(ev.contact, "c"));
    for (i = 0; i < CC_ARRAY_SIZE(near); i++) {
        tb_reset(&t);
        msgpack_pack_map(&t.pk, 6);
        tb_kv_str(&t, near[i], "x");
        tb_kv_str(&t, "id", "ev-1");
        tb_kv_int(&t, "ts", 1700000000000LL);
        tb_kv_str(&t, "channel", "phone");
        tb_kv_str(&t, "type", "contact.open");
        tb_kv_str(&t, "contact", "call-1");
        cr_assert_eq(decode(&t, &ev, &rej), 1, "%s", near[i]);
        cr_assert(cc_str_eq(ev.contact, "call-1"), "%s", near[i]);
        cr_assert_eq(ev.queue.n, 0, "%s", near[i]);
        cr_assert_eq(ev.flags, 0, "%s", near[i]);
    }
    tb_fini(&t);
}

/* Appends raw bytes: MessagePack's wider forms, which msgpack-c's packer
 * does not choose for short values. */
static void
raw(struct tb *t, const void *p, size_t n) {
    msgpack_sbuffer_write(&t->sb, p, n);
}

/* One event with every value in a form the decoder reads out of line (map
 * 16, str 8/16/32, int 64, uint 8, float 32, array 16, a nested unknown
 * value to skip), twice in a batch: each value must leave the reader right
 * after it, or the keys that follow and the second event are misread. */
static void
pack_wide_event(struct tb *t, char idch) {
    static const uint8_t map16[] = {0xde, 0x00, 0x0b};
    static const uint8_t ts_i64[] = {
        0xd3, 0x00, 0x00, 0x01, 0x8b,
        0xcf, 0xe5, 0x68, 0x00}; /* 1700000000000 */
    static const uint8_t ch_str16[] = {0xda, 0x00, 0x05, 'p',
                                       'h',  'o',  'n',  'e'};
    static const uint8_t type_str8[] = {0xd9, 0x0a, 'q', 'u', 'e', 'u',
                                        'e',  '.',  'j', 'o', 'i', 'n'};
    static const uint8_t contact_str32[] = {0xdb, 0x00, 0x00, 0x00, 0x06, 'c',
                                            'a',  'l',  'l',  '-',  '1'};
    static const uint8_t queue_str8[] = {0xd9, 0x07, 'b', 'i', 'l',
                                         'l',  'i',  'n', 'g'};
    static const uint8_t prio_u8[] = {0xcc, 0x03};
    static const uint8_t sent_f32[] = {0xca, 0xbf, 0x00, 0x00, 0x00}; /* -0.5 */
    static const uint8_t tags_arr16[] = {0xdc, 0x00, 0x01, 0xd9,
                                         0x03, 'v',  'i',  'p'};
    static const uint8_t cust_map16[] = {
        0xde, 0x00, 0x01, 0xa5, 'p', 'h', 'o', 'n', 'e', 0xd9, 0x0c, '+',
        '1',  '5',  '5',  '5',  '1', '2', '3', '4', '5', '6',  '7'};
    static const uint8_t nested[] = {0x81, 0xa1, 'a',  0x92, 0xcd,
                                     0x01, 0x00, 0xd9, 0x01, 'b'};
    uint8_t id[2 + 40];

    id[0] = 0xd9;
    id[1] = 40;
    memset(id + 2, idch, 40);
    raw(t, map16, sizeof(map16));
    tb_str(t, "id");
    raw(t, id, sizeof(id));
    tb_str(t, "ts");
    raw(t, ts_i64, sizeof(ts_i64));
    tb_str(t, "channel");
    raw(t, ch_str16, sizeof(ch_str16));
    tb_str(t, "type");
    raw(t, type_str8, sizeof(type_str8));
    tb_str(t, "contact");
    raw(t, contact_str32, sizeof(contact_str32));
    tb_str(t, "queue");
    raw(t, queue_str8, sizeof(queue_str8));
    tb_str(t, "priority");
    raw(t, prio_u8, sizeof(prio_u8));
    tb_str(t, "sentiment");
    raw(t, sent_f32, sizeof(sent_f32));
    tb_str(t, "tags");
    raw(t, tags_arr16, sizeof(tags_arr16));
    tb_str(t, "customer");
    raw(t, cust_map16, sizeof(cust_map16));
    tb_str(t, "later_version_field");
    raw(t, nested, sizeof(nested));
}

Test(event, wide_forms_decode_and_leave_the_reader_after_each_value,
     .init = setup) {
    struct tb t;
    struct cc_msg_iter it;
    struct cc_event ev;
    struct cc_reject rej;
    const char *err = NULL;
    int i;

    tb_init(&t);
    msgpack_pack_array(&t.pk, 2);
    pack_wide_event(&t, 'a');
    pack_wide_event(&t, 'b');
    cr_assert_eq(cc_msg_open(&it, t.sb.data, t.sb.size, &err), 0, "%s",
                 err ? err : "");
    for (i = 0; i < 2; i++) {
        cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), 1, "event %d: %d", i,
                     rej.code);
        cr_assert_eq(ev.id.n, 40);
        cr_assert_eq(ev.id.p[0], i == 0 ? 'a' : 'b');
        cr_assert_eq(ev.ts, 1700000000000LL);
        cr_assert_eq(ev.channel, 0);
        cr_assert_eq(ev.type, CC_EV_QUEUE_JOIN);
        cr_assert(cc_str_eq(ev.contact, "call-1"));
        cr_assert(cc_str_eq(ev.queue, "billing"));
        cr_assert_eq(ev.priority, 3);
        cr_assert_float_eq(ev.sentiment, -0.5, 1e-9);
        cr_assert_eq(ev.ntags, 1);
        cr_assert(cc_str_eq(ev.ident[CC_IDENT_PHONE], "+15551234567"));
    }
    cr_assert_eq(cc_msg_next(&it, &fx.ch, &ev, &rej), -1);
    /* The same event alone: decoded in one pass, nothing left over. */
    tb_reset(&t);
    pack_wide_event(&t, 'c');
    cr_assert_eq(decode(&t, &ev, &rej), 1, "%d", rej.code);
    cr_assert_eq(ev.id.p[39], 'c');
    tb_fini(&t);
}
