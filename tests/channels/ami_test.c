/*
 * The AMI adapter: the framing parser on real captures and on bad input,
 * the mapper driving a real engine through queue calls, and the client
 * against a fake Asterisk on the loopback interface.
 */
#include "chtest.h"
#include "phone/ami.h"
#include "testutil.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define PANORAMISK TEST_DATA_DIR "/realdata/ami/panoramisk/"
#define T0 1700000000000ULL /* the test host's clock */

/* ---- parsing helpers ------------------------------------------------------
 */

#define RANDOM_SPLITS ((size_t)-1)

static void
sb_str(msgpack_sbuffer *sb, struct cc_str s) {
    msgpack_sbuffer_write(sb, s.p != NULL ? s.p : "", s.n);
}

/* Appends a message as "key=value" lines and a blank line: two parses are
 * the same when their digests are. */
static void
digest_msg(msgpack_sbuffer *sb, const struct cc_ami_msg *m) {
    uint32_t i;

    for (i = 0; i < m->n; i++) {
        sb_str(sb, m->f[i].key);
        msgpack_sbuffer_write(sb, "=", 1);
        sb_str(sb, m->f[i].value);
        msgpack_sbuffer_write(sb, "\n", 1);
    }
    msgpack_sbuffer_write(sb, "\n", 1);
}

/* Feeds data in chunks of `chunk` bytes (0: all at once; RANDOM_SPLITS:
 * 1 to 97 bytes drawn with seed) and digests every message into sb.
 * Returns the number of messages. */
static uint32_t
parse_into(struct cc_ami_parser *p, const char *data, size_t len, size_t chunk,
           unsigned seed, msgpack_sbuffer *sb) {
    const struct cc_ami_msg *msg;
    uint32_t msgs = 0;
    size_t off = 0;

    while (off < len) {
        size_t n = len - off, used;
        if (chunk == RANDOM_SPLITS)
            n = (size_t)(rand_r(&seed) % 97) + 1;
        else if (chunk != 0)
            n = chunk;
        if (n > len - off)
            n = len - off;
        /* A chunk ends where TCP says; the parser may stop at each
         * message within it. */
        while (n > 0) {
            used = cc_ami_parser_feed(p, data + off, n, &msg);
            cr_assert(used > 0 && used <= n);
            off += used;
            n -= used;
            if (msg != NULL) {
                msgs++;
                if (sb != NULL)
                    digest_msg(sb, msg);
            }
        }
    }
    return msgs;
}

/* Collects the messages of one whole text, each kept as its own copy. */
struct msgs {
    uint32_t n;
    struct {
        char text[8192]; /* "key=value\n" lines */
    } m[256];
};

static void
collect(const char *data, size_t len, size_t max_message, size_t max_line,
        struct cc_adapter_stats *st, struct msgs *out, size_t chunk) {
    struct cc_ami_parser *p;
    const struct cc_ami_msg *msg;
    size_t off = 0;

    memset(out, 0, sizeof(*out));
    cr_assert_eq(cc_ami_parser_new(&p, max_message, max_line, st), 0);
    while (off < len) {
        size_t n = chunk != 0 && chunk < len - off ? chunk : len - off;
        while (n > 0) {
            size_t used = cc_ami_parser_feed(p, data + off, n, &msg);
            off += used;
            n -= used;
            if (msg != NULL && out->n < 256) {
                msgpack_sbuffer sb;
                msgpack_sbuffer_init(&sb);
                digest_msg(&sb, msg);
                snprintf(out->m[out->n].text, sizeof(out->m[0].text), "%.*s",
                         (int)sb.size, sb.data);
                msgpack_sbuffer_destroy(&sb);
                out->n++;
            }
        }
    }
    cc_ami_parser_free(p);
}

/* The first message of data, kept in *m with the parser, for field
 * lookups. */
static struct cc_ami_parser *
first_msg(const char *data, const struct cc_ami_msg **m) {
    struct cc_ami_parser *p;
    size_t used;

    cr_assert_eq(cc_ami_parser_new(&p, 65536, 0, NULL), 0);
    used = cc_ami_parser_feed(p, data, strlen(data), m);
    cr_assert_not_null(*m, "no message in: %s", data);
    (void)used;
    return p;
}

static bool
field_is(const struct cc_ami_msg *m, const char *key, const char *want) {
    struct cc_str v;
    return cc_ami_get(m, key, &v) && v.n == strlen(want) &&
           memcmp(v.p, want, v.n) == 0;
}

/* ---- the real captures -----------------------------------------------------
 */

/*
 * The panoramisk fixtures are named .yaml but hold the raw AMI stream of a
 * session (both directions, LF line ends, as recorded), with no YAML
 * structure around it: each file is fed whole, exactly as it is on disk.
 * pjsip_show_endpoint.yaml ends without the blank line of its last
 * message, which therefore never completes.
 */
static const struct {
    const char *file;
    uint32_t messages; /* counted independently (a script over the file) */
} captures[] = {
    {"agent_loggued_in.yaml", 163}, {"asyncagi_get_var.yaml", 5},
    {"login_ok.yaml", 3},           {"pjsip_show_endpoint.yaml", 6},
    {"queue_add.yaml", 1},          {"queue_status.yaml", 9},
};

Test(ami_parser, captures_in_every_chunking) {
    static const size_t fixed[] = {1, 2, 3, 7, 13, 64, 4096};
    size_t i, k;

    for (i = 0; i < CC_ARRAY_SIZE(captures); i++) {
        char path[512];
        struct cc_adapter_stats st;
        struct cc_ami_parser *p;
        msgpack_sbuffer whole;
        size_t len;
        char *data;
        unsigned seed;

        snprintf(path, sizeof(path), PANORAMISK "%s", captures[i].file);
        data = read_file(path, &len);
        memset(&st, 0, sizeof(st));
        msgpack_sbuffer_init(&whole);
        cr_assert_eq(cc_ami_parser_new(&p, 65536, 0, &st), 0);
        cr_assert_eq(parse_into(p, data, len, 0, 0, &whole),
                     captures[i].messages, "%s", captures[i].file);
        cr_assert_eq(st.rejected, 0, "%s: a drop", captures[i].file);
        cr_assert_eq(cc_ami_parser_stats(p)->bytes, len);
        cc_ami_parser_free(p);

        for (k = 0; k < CC_ARRAY_SIZE(fixed) + 8; k++) {
            msgpack_sbuffer sb;
            size_t chunk = k < CC_ARRAY_SIZE(fixed) ? fixed[k] : RANDOM_SPLITS;
            seed = (unsigned)(k * 7919 + i);
            msgpack_sbuffer_init(&sb);
            cr_assert_eq(cc_ami_parser_new(&p, 65536, 0, &st), 0);
            cr_assert_eq(parse_into(p, data, len, chunk, seed, &sb),
                         captures[i].messages, "%s in chunks of %zu",
                         captures[i].file, chunk);
            cr_assert_eq(sb.size, whole.size);
            cr_assert(memcmp(sb.data, whole.data, sb.size) == 0,
                      "%s differs in chunks of %zu", captures[i].file, chunk);
            cr_assert_eq(st.rejected, 0);
            cc_ami_parser_free(p);
            msgpack_sbuffer_destroy(&sb);
        }
        msgpack_sbuffer_destroy(&whole);
        free(data);
    }
}

Test(ami_parser, login_ok_greeting_and_fields) {
    size_t len;
    char *data = read_file(PANORAMISK "login_ok.yaml", &len);
    struct cc_ami_parser *p;
    const struct cc_ami_msg *m;
    size_t off = 0, used;

    cr_assert_eq(cc_ami_parser_new(&p, 65536, 0, NULL), 0);
    /* The greeting has no colon and no blank line after it: it is not a
     * message, and the Login right after it is one. */
    used = cc_ami_parser_feed(p, data, len, &m);
    off += used;
    cr_assert_not_null(m);
    cr_assert_str_eq(cc_ami_parser_greeting(p), "Asterisk Call Manager/1.3");
    cr_assert_eq(cc_ami_parser_stats(p)->greetings, 1);
    cr_assert_eq(m->n, 5);
    /* Keys are case-insensitive: the capture writes them in lower case. */
    cr_assert(field_is(m, "Action", "login"));
    cr_assert(field_is(m, "USERNAME", "nnnnnnnnn"));
    cr_assert(field_is(m, "Events", "on"));
    used = cc_ami_parser_feed(p, data + off, len - off, &m);
    off += used;
    cr_assert_not_null(m);
    cr_assert(field_is(m, "Response", "Success"));
    cr_assert(field_is(m, "ActionID", "action/transaction_uid/1/1"));
    cr_assert(field_is(m, "Message", "Authentication accepted"));
    used = cc_ami_parser_feed(p, data + off, len - off, &m);
    off += used;
    cr_assert_not_null(m);
    cr_assert(field_is(m, "Event", "FullyBooted"));
    cr_assert(field_is(m, "Status", "Fully Booted"));
    cr_assert(field_is(m, "Privilege", "system,all"));
    cr_assert_eq(off, len);
    cc_ami_parser_free(p);
    free(data);
}

Test(ami_parser, queue_status_fields) {
    static struct msgs ms;
    size_t len;
    char *data = read_file(PANORAMISK "queue_status.yaml", &len);
    const struct cc_ami_msg *m;
    struct cc_ami_parser *p;
    uint32_t i, members = 0;

    collect(data, len, 65536, 0, NULL, &ms, 0);
    cr_assert_eq(ms.n, 9);
    cr_assert(strstr(ms.m[0].text, "Message=Queue status will follow\n"));
    cr_assert(strstr(ms.m[1].text, "Event=QueueParams\n"));
    cr_assert(strstr(ms.m[1].text, "ServicelevelPerf=0.0\n"));
    for (i = 0; i < ms.n; i++)
        members += strstr(ms.m[i].text, "Event=QueueMember\n") != NULL;
    cr_assert_eq(members, 6);
    cr_assert(strstr(ms.m[7].text, "Name=Agent/999\n"));
    cr_assert(strstr(ms.m[7].text, "Status=5\n"));
    cr_assert(strstr(ms.m[7].text, "Paused=1\n"));
    cr_assert(strstr(ms.m[8].text, "Event=QueueStatusComplete\n"));

    /* Field lookup on the first member. */
    p = first_msg(strstr(data, "Event: QueueMember\n"), &m);
    cr_assert(field_is(m, "name", "Agent/220"));
    cr_assert(field_is(m, "Location", "Local/id-9@agentcallback"));
    cr_assert(field_is(m, "LastCall", "1413884970"));
    cc_ami_parser_free(p);
    free(data);
}

Test(ami_parser, space_only_first_line_and_empty_values) {
    static struct msgs ms;
    struct cc_adapter_stats st;
    size_t len;
    char *data = read_file(PANORAMISK "agent_loggued_in.yaml", &len);
    uint32_t i;
    bool empty_account = false, address = false;

    /* The capture begins with a line holding one space. */
    cr_assert_eq(data[0], ' ');
    cr_assert_eq(data[1], '\n');
    memset(&st, 0, sizeof(st));
    collect(data, len, 65536, 0, &st, &ms, 0);
    cr_assert_eq(ms.n, 163);
    cr_assert_eq(st.rejected, 0);
    /* Nothing came of the space: the first message is the Ping. */
    cr_assert_str_eq(ms.m[0].text, "Action=Ping\n"
                                   "ActionID=b4856f7a-e61e-483b-84e6-"
                                   "12e7d26ea73d/1/22\n\n");
    cr_assert(strstr(ms.m[1].text, "Timestamp=1409169929.412068\n"));
    for (i = 0; i < ms.n; i++) {
        /* "AccountCode:" with nothing after the colon is an empty value. */
        empty_account |= strstr(ms.m[i].text, "\nAccountCode=\n") != NULL;
        /* A value with a colon keeps it. */
        address |= strstr(ms.m[i].text, "\nAddress=192.168.1.5:5060\n") != NULL;
    }
    cr_assert(empty_account);
    cr_assert(address);
    free(data);
}

Test(ami_parser, pjsip_values_with_colons_and_unterminated_end) {
    static struct msgs ms;
    size_t len;
    char *data = read_file(PANORAMISK "pjsip_show_endpoint.yaml", &len);

    collect(data, len, 65536, 0, NULL, &ms, 0);
    cr_assert_eq(ms.n, 6);
    cr_assert(strstr(ms.m[3].text, "\nBind=0.0.0.0:5060\n"));
    cr_assert(strstr(ms.m[5].text, "\nURI=sip:XXXXX@A.B.C.D:46365;transport="
                                   "TCP;rinstance=RRRRRR\n"));
    cr_assert(strstr(ms.m[1].text, "\nCallerid=\"XXXX\" <YYYYYY>\n"));
    free(data);
}

/* ---- framing edge cases
 * ------------------------------------------------------ */

Test(ami_parser, line_endings_blanks_and_repeated_keys) {
    static struct msgs ms;
    static const char text[] =
        "Asterisk Call Manager/5.0.1\r\n"
        " \t \r\n"             /* blanks before a message: nothing */
        "\r\n\n"               /* empty lines: nothing */
        "Event: VarSet\r\n"    /* CRLF */
        "Channel: PJSIP/a-1\n" /* LF */
        "ChanVariable: A=1\r\n"
        "chanvariable:B=2\r\n" /* no space after the colon */
        "ChanVariable:   C=3:4  \r\n"
        "\r\n"
        "Event: Second\n"
        "Uri: sip:a@b:5060\r\r\n" /* stray CR before the end */
        "  \t\n"                  /* a blank line of spaces ends it */
        "Response: Follows\r\n"   /* Asterisk before 14 */
        "Privilege: Command\r\n"
        "ActionID: 7\r\n"
        "Name/username   Host: x\n"
        "\n"
        "2 sip peers\n"
        "--END COMMAND--\r\n"
        "\r\n"
        "Event: Third\r\n"
        "\r\n";
    struct cc_adapter_stats st;
    const struct cc_ami_msg *m;
    struct cc_ami_parser *p;
    struct cc_str v;
    uint32_t i = 0;
    size_t k;

    memset(&st, 0, sizeof(st));
    for (k = 0; k <= 5; k++) {
        collect(text, sizeof(text) - 1, 4096, 0, &st, &ms, k);
        cr_assert_eq(ms.n, 4, "chunks of %zu", k);
        cr_assert_str_eq(ms.m[0].text, "Event=VarSet\nChannel=PJSIP/a-1\n"
                                       "ChanVariable=A=1\nchanvariable=B=2\n"
                                       "ChanVariable=C=3:4\n\n");
        cr_assert_str_eq(ms.m[1].text, "Event=Second\nUri=sip:a@b:5060\n\n");
        cr_assert_str_eq(ms.m[2].text, "Response=Follows\nPrivilege=Command\n"
                                       "ActionID=7\n"
                                       "Output=Name/username   Host: x\n"
                                       "Output=2 sip peers\n\n");
        cr_assert_str_eq(ms.m[3].text, "Event=Third\n\n");
        cr_assert_eq(st.rejected, 0);
    }
    /* Repeated keys are all kept, in order. */
    p = first_msg(text, &m);
    cr_assert(cc_ami_next(m, "CHANVARIABLE", &i, &v));
    cr_assert(cc_str_eq(v, "A=1"));
    cr_assert(cc_ami_next(m, "ChanVariable", &i, &v));
    cr_assert(cc_str_eq(v, "B=2"));
    cr_assert(cc_ami_next(m, "ChanVariable", &i, &v));
    cr_assert(cc_str_eq(v, "C=3:4"));
    cr_assert_not(cc_ami_next(m, "ChanVariable", &i, &v));
    cr_assert_not(cc_ami_get(m, "Missing", &v));
    cr_assert_str_eq(cc_ami_parser_greeting(p), "Asterisk Call Manager/5.0.1");
    cc_ami_parser_free(p);
}

/* ---- bad input
 * ------------------------------------------------------------------ */

static const char good[] = "Event: Good\r\nA: 1\r\n\r\n";

/* Parses text then a good message, whole and a byte at a time: the same
 * messages and the same counts both ways; the last message is the good
 * one. Returns the stats of the whole parse. */
static struct cc_adapter_stats
bad_then_good(const char *text, size_t len, size_t max_message, size_t max_line,
              uint32_t want_msgs) {
    static struct msgs a, b;
    struct cc_adapter_stats sa, sb;
    char *buf = malloc(len + sizeof(good));

    memcpy(buf, text, len);
    memcpy(buf + len, good, sizeof(good));
    memset(&sa, 0, sizeof(sa));
    memset(&sb, 0, sizeof(sb));
    collect(buf, len + sizeof(good) - 1, max_message, max_line, &sa, &a, 0);
    collect(buf, len + sizeof(good) - 1, max_message, max_line, &sb, &b, 1);
    cr_assert_eq(a.n, want_msgs);
    cr_assert_eq(b.n, a.n);
    cr_assert_str_eq(a.m[a.n - 1].text, "Event=Good\nA=1\n\n");
    cr_assert_str_eq(b.m[b.n - 1].text, "Event=Good\nA=1\n\n");
    cr_assert_eq(sa.rejected, sb.rejected);
    free(buf);
    return sa;
}

Test(ami_parser, over_long_line) {
    char text[8192];
    struct cc_adapter_stats st;
    size_t n;

    /* Inside a message: the message goes, up to its blank line. */
    n = (size_t)snprintf(text, sizeof(text), "Event: Big\r\nBody: ");
    memset(text + n, 'a', 5000);
    n += 5000;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\nMore: 1\r\n\r\n");
    st = bad_then_good(text, n, 65536, 1024, 1);
    cr_assert_eq(st.rejected, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_LONG_LINE), 1);

    /* Between messages, with no line end for a long while: that line
     * alone goes. */
    memset(text, 'b', 5000);
    text[5000] = '\n';
    st = bad_then_good(text, 5001, 65536, 1024, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_LONG_LINE), 1);
}

Test(ami_parser, message_over_max_message) {
    char text[8192];
    struct cc_adapter_stats st;
    struct cc_ami_parser *p;
    const struct cc_ami_msg *m;
    size_t n = 0;
    int i;

    n += (size_t)snprintf(text, sizeof(text), "Event: Huge\r\n");
    for (i = 0; i < 40; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "Field%02d: %090d\r\n", i, i);
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
    cr_assert_gt(n, 2048);
    st = bad_then_good(text, n, 2048, 0, 1);
    cr_assert_eq(st.rejected, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_TOO_BIG), 1);

    /* The same message fits a larger bound. */
    cr_assert_eq(cc_ami_parser_new(&p, 8192, 0, NULL), 0);
    cc_ami_parser_feed(p, text, n, &m);
    cr_assert_not_null(m);
    cr_assert_eq(m->n, 41);
    cr_assert_eq(m->bytes, n);
    cc_ami_parser_free(p);
}

Test(ami_parser, too_many_fields) {
    size_t cap = 64 * 1024, n = 0;
    char *text = malloc(cap);
    struct cc_adapter_stats st;
    int i;

    n += (size_t)snprintf(text, cap, "Event: Many\r\n");
    for (i = 0; i < CC_AMI_MAX_FIELDS + 10; i++)
        n += (size_t)snprintf(text + n, cap - n, "ChanVariable: V%d=1\r\n", i);
    n += (size_t)snprintf(text + n, cap - n, "\r\n");
    st = bad_then_good(text, n, 65536, 0, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_FIELDS), 1);
    free(text);
}

Test(ami_parser, nul_bytes_and_lines_without_colon) {
    static const char in_msg[] = "Event: A\r\nKey: va\0lue\r\nB: 2\r\n\r\n";
    static const char before[] = "\0\0\0\r\nEvent: B\r\n\r\n";
    static const char no_colon[] = "Event: C\r\njust text\r\nD: 1\r\n\r\n";
    static const char keys[] = "  : no key\r\n\x01\x02: ctl\r\n";
    struct cc_adapter_stats st;

    st = bad_then_good(in_msg, sizeof(in_msg) - 1, 4096, 0, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_NUL), 1);
    /* A NUL line between messages goes alone: B still parses. */
    st = bad_then_good(before, sizeof(before) - 1, 4096, 0, 2);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_NUL), 1);
    st = bad_then_good(no_colon, sizeof(no_colon) - 1, 4096, 0, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_NO_COLON), 1);
    st = bad_then_good(keys, sizeof(keys) - 1, 4096, 0, 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_EMPTY_KEY), 1);
    cr_assert_eq(cc_adapter_rejected(&st, CC_AMI_R_CTRL_KEY), 1);
}

Test(ami_parser, binary_garbage) {
    static char text[256 * 1024];
    static const char crlf2[] = "\r\n\r\n";
    struct cc_adapter_stats st;
    struct cc_ami_parser *p;
    const struct cc_ami_msg *m;
    unsigned seed = 12345;
    size_t i, off, goods = 0;
    int round;

    for (round = 0; round < 4; round++) {
        for (i = 0; i < sizeof(text); i++)
            text[i] = (char)(rand_r(&seed) & 0xff);
        /* Mostly binary; some rounds rich in line ends and colons. */
        if (round >= 2) {
            for (i = 0; i < sizeof(text); i += 1 + (size_t)(rand_r(&seed) % 40))
                text[i] = (rand_r(&seed) & 1) ? '\n' : ':';
        }
        memset(&st, 0, sizeof(st));
        cr_assert_eq(cc_ami_parser_new(&p, 4096, 512, &st), 0);
        for (off = 0; off < sizeof(text);) {
            size_t n = 1 + (size_t)(rand_r(&seed) % 3000);
            if (n > sizeof(text) - off)
                n = sizeof(text) - off;
            while (n > 0) {
                size_t used = cc_ami_parser_feed(p, text + off, n, &m);
                off += used;
                n -= used;
                /* Whatever comes out stays within the bounds. */
                if (m != NULL) {
                    cr_assert_leq(m->bytes, 4096);
                    cr_assert_leq(m->n, CC_AMI_MAX_FIELDS);
                }
            }
        }
        cr_assert_gt(st.rejected, 0);
        cr_assert_eq(st.rejected, cc_ami_parser_stats(p)->dropped_lines +
                                      cc_ami_parser_stats(p)->dropped_messages);
        /* A blank line, and the parser is itself again. */
        off = 0;
        while (off < 4) {
            off += cc_ami_parser_feed(p, crlf2 + off, 4 - off, &m);
        }
        off = 0;
        while (off < sizeof(good) - 1) {
            off +=
                cc_ami_parser_feed(p, good + off, sizeof(good) - 1 - off, &m);
            if (m != NULL && field_is(m, "Event", "Good") &&
                field_is(m, "A", "1") && m->n == 2)
                goods++;
        }
        cc_ami_parser_free(p);
    }
    cr_assert_eq(goods, 4);
}

/* ---- queue calls through the mapper into an engine
 * ----------------------------- */

/*
 * No openly licensed capture of an Asterisk queue call exists (the
 * realdata README says so). These transcripts are built from the field
 * lists of tests/data/realdata/ami/asterisk-docs/AMI_Events/ (Asterisk
 * 18), with the values a PJSIP trunk call to queue "sales", answered by the
 * member "Alice", would carry; line ends are CRLF as Asterisk sends them.
 */
#define L(s) s "\r\n"
#define CALLER(uid, num, tag)                                                  \
    L("Channel: PJSIP/trunk-0000000" tag)                                      \
    L("ChannelState: 6")                                                       \
    L("ChannelStateDesc: Up")                                                  \
    L("CallerIDNum: " num)                                                     \
    L("CallerIDName: Ann Lee")                                                 \
    L("ConnectedLineNum: <unknown>")                                           \
    L("ConnectedLineName: <unknown>")                                          \
    L("Language: en")                                                          \
    L("AccountCode: ")                                                         \
    L("Context: from-trunk")                                                   \
    L("Exten: 5000")                                                           \
    L("Priority: 3")                                                           \
    L("Uniqueid: " uid)                                                        \
    L("Linkedid: " uid)
#define AGENT_CHAN(uid, linked)                                                \
    L("Channel: PJSIP/alice-00000002")                                         \
    L("ChannelState: 6")                                                       \
    L("ChannelStateDesc: Up")                                                  \
    L("CallerIDNum: 1001")                                                     \
    L("CallerIDName: Alice")                                                   \
    L("ConnectedLineNum: +15551234567")                                        \
    L("ConnectedLineName: Ann Lee")                                            \
    L("Language: en")                                                          \
    L("AccountCode: ")                                                         \
    L("Context: from-internal")                                                \
    L("Exten: 5000")                                                           \
    L("Priority: 1")                                                           \
    L("Uniqueid: " uid)                                                        \
    L("Linkedid: " linked)
#define DEST(uid, linked)                                                      \
    L("DestChannel: PJSIP/alice-00000002")                                     \
    L("DestChannelState: 6")                                                   \
    L("DestChannelStateDesc: Up")                                              \
    L("DestCallerIDNum: 1001")                                                 \
    L("DestCallerIDName: Alice")                                               \
    L("DestConnectedLineNum: +15551234567")                                    \
    L("DestConnectedLineName: Ann Lee")                                        \
    L("DestLanguage: en")                                                      \
    L("DestAccountCode: ")                                                     \
    L("DestContext: from-internal")                                            \
    L("DestExten: 5000")                                                       \
    L("DestPriority: 1")                                                       \
    L("DestUniqueid: " uid)                                                    \
    L("DestLinkedid: " linked)
#define MEMBER                                                                 \
    L("Queue: sales") L("MemberName: Alice") L("Interface: PJSIP/alice")
#define TS(t) L("Timestamp: " t)
#define END L("")

#define A_CALLER CALLER("1700000000.1", "+15551234567", "1")
#define A_AGENT AGENT_CHAN("1700000000.2", "1700000000.1")
#define A_DEST DEST("1700000000.2", "1700000000.1")

#define A_NEWCHANNEL                                                           \
    L("Event: Newchannel")                                                     \
    L("Privilege: call,all") A_CALLER TS("1700000000.100000") END
#define A_JOIN                                                                 \
    L("Event: QueueCallerJoin")                                                \
    L("Privilege: agent,all")                                                  \
    A_CALLER L("Queue: sales") L("Position: 1") L("Count: 1")                  \
        TS("1700000001.000000") END
#define A_CALLED                                                               \
    L("Event: AgentCalled")                                                    \
    L("Privilege: agent,all") A_CALLER A_DEST MEMBER TS("1700000001.010000") END
#define A_LEAVE                                                                \
    L("Event: QueueCallerLeave")                                               \
    L("Privilege: agent,all")                                                  \
    A_CALLER L("Queue: sales") L("Count: 0") L("Position: 1")                  \
        TS("1700000021.000000") END
#define A_CONNECT                                                              \
    L("Event: AgentConnect")                                                   \
    L("Privilege: agent,all")                                                  \
    A_CALLER A_DEST MEMBER L("RingTime: 3") L("HoldTime: 20")                  \
        TS("1700000021.010000") END
#define A_HOLD                                                                 \
    L("Event: Hold")                                                           \
    L("Privilege: call,all")                                                   \
    A_AGENT L("MusicClass: default") TS("1700000060.000000") END
#define A_UNHOLD                                                               \
    L("Event: Unhold")                                                         \
    L("Privilege: call,all") A_AGENT TS("1700000090.000000") END
#define A_COMPLETE                                                             \
    L("Event: AgentComplete")                                                  \
    L("Privilege: agent,all")                                                  \
    A_CALLER A_DEST MEMBER L("HoldTime: 20") L("TalkTime: 99")                 \
        L("Reason: agent") TS("1700000120.000000") END
#define A_HANGUP_AGENT                                                         \
    L("Event: Hangup")                                                         \
    L("Privilege: call,all")                                                   \
    A_AGENT L("Cause: 16") L("Cause-txt: Normal Clearing")                     \
        TS("1700000120.100000") END
#define A_HANGUP                                                               \
    L("Event: Hangup")                                                         \
    L("Privilege: call,all")                                                   \
    A_CALLER L("Cause: 16") L("Cause-txt: Normal Clearing")                    \
        TS("1700000120.200000") END

static const char answered_call[] = A_NEWCHANNEL A_JOIN A_CALLED A_LEAVE
    A_CONNECT A_HOLD A_UNHOLD A_COMPLETE A_HANGUP_AGENT A_HANGUP;

#define B_CALLER CALLER("1700000100.5", "anonymous", "5")
#define B_DEST DEST("1700000100.6", "1700000100.5")
#define B_NEWCHANNEL                                                           \
    L("Event: Newchannel")                                                     \
    L("Privilege: call,all") B_CALLER TS("1700000100.000000") END
#define B_JOIN                                                                 \
    L("Event: QueueCallerJoin")                                                \
    L("Privilege: agent,all")                                                  \
    B_CALLER L("Queue: sales") L("Position: 1") L("Count: 1")                  \
        TS("1700000100.500000") END
#define B_CALLED                                                               \
    L("Event: AgentCalled")                                                    \
    L("Privilege: agent,all") B_CALLER B_DEST MEMBER TS("1700000101.000000") END
#define B_ABANDON                                                              \
    L("Event: QueueCallerAbandon")                                             \
    L("Privilege: agent,all")                                                  \
    B_CALLER L("Queue: sales") L("Position: 1") L("OriginalPosition: 1")       \
        L("HoldTime: 30") TS("1700000130.500000") END
#define B_LEAVE                                                                \
    L("Event: QueueCallerLeave")                                               \
    L("Privilege: agent,all")                                                  \
    B_CALLER L("Queue: sales") L("Count: 0") L("Position: 1")                  \
        TS("1700000130.500000") END
#define B_HANGUP                                                               \
    L("Event: Hangup")                                                         \
    L("Privilege: call,all")                                                   \
    B_CALLER L("Cause: 16") L("Cause-txt: Normal Clearing")                    \
        TS("1700000130.600000") END

static const char abandoned_call[] =
    B_NEWCHANNEL B_JOIN B_CALLED B_ABANDON B_LEAVE B_HANGUP;

/* A parser, a mapper and a real engine behind a test host. */
struct flow {
    struct thost h;
    struct cc_ami_parser *p;
    struct cc_ami_map *m;
    struct cc_evbuf eb;
    struct cc_adapter_stats st;
    struct cc_submit last;
    msgpack_unpacked u; /* the last batch */
    uint32_t nev;
    char types[2048]; /* its types, comma-separated */
};

static void
flow_init_with(struct flow *f, const struct cc_ami_map_config *mc) {
    memset(f, 0, sizeof(*f));
    thost_init(&f->h, NULL, T0);
    cr_assert_eq(cc_ami_parser_new(&f->p, 65536, 0, &f->st), 0);
    cr_assert_eq(cc_ami_map_new(&f->m, mc), 0);
    cc_evbuf_init(&f->eb);
    msgpack_unpacked_init(&f->u);
}

static void
flow_init(struct flow *f, bool moh) {
    struct cc_ami_map_config mc;

    memset(&mc, 0, sizeof(mc));
    mc.channel = "phone";
    mc.moh_as_hold = moh;
    mc.start_ms = 42;
    mc.seed = 7;
    flow_init_with(f, &mc);
}

static void
flow_fini(struct flow *f) {
    msgpack_unpacked_destroy(&f->u);
    cc_evbuf_fini(&f->eb);
    cc_ami_map_free(f->m);
    cc_ami_parser_free(f->p);
    thost_fini(&f->h);
}

/* Submits what the batch holds and keeps a decoded copy of it. */
static uint32_t
flow_submit(struct flow *f) {
    const void *msg;
    size_t len, off = 0;
    uint32_t i;

    f->types[0] = '\0';
    f->nev = f->eb.n;
    memset(&f->last, 0, sizeof(f->last));
    if (f->eb.n == 0)
        return 0;
    msg = cc_evbuf_msg(&f->eb, &len);
    f->h.host.submit(f->h.host.ctx, msg, len, &f->last);
    cc_adapter_count_submit(&f->st, &f->last);
    cr_assert_eq(msgpack_unpack_next(&f->u, msg, len, &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(f->u.data.type, MSGPACK_OBJECT_ARRAY);
    for (i = 0; i < f->u.data.via.array.size; i++) {
        msgpack_object t;
        cr_assert(tmap_get(&f->u.data.via.array.ptr[i], "type", &t));
        if (i != 0)
            strcat(f->types, ",");
        strncat(f->types, t.via.str.ptr, t.via.str.size);
    }
    return f->last.accepted;
}

/* Feeds text in chunks of `chunk` bytes (0: whole), maps every message at
 * the host's time, and submits the batch. Returns the events accepted. */
static uint32_t
flow_feed(struct flow *f, const char *text, size_t chunk) {
    const struct cc_ami_msg *m;
    size_t len = strlen(text), off = 0;

    cc_evbuf_reset(&f->eb);
    while (off < len) {
        size_t n = chunk != 0 && chunk < len - off ? chunk : len - off;
        while (n > 0) {
            size_t used = cc_ami_parser_feed(f->p, text + off, n, &m);
            off += used;
            n -= used;
            if (m != NULL)
                cc_ami_map_msg(f->m, m, f->h.now, &f->eb, &f->st);
        }
    }
    return flow_submit(f);
}

static const msgpack_object *
flow_ev(const struct flow *f, uint32_t i) {
    cr_assert_lt(i, f->u.data.via.array.size);
    return &f->u.data.via.array.ptr[i];
}

static int64_t
flow_stat(const struct flow *f, const char *path) {
    return tstat_int(f->h.e, path);
}

static const char *
call_state(const struct flow *f, const char *contact) {
    return cc_ami_map_call_state(f->m, cc_str_of(contact));
}

Test(ami_map, answered_call) {
    static const size_t chunks[] = {0, 1, 5, 100};
    size_t k;

    for (k = 0; k < CC_ARRAY_SIZE(chunks); k++) {
        struct flow f;
        msgpack_object cust, v;
        const msgpack_object *ev;

        flow_init(&f, false);
        cr_assert_eq(flow_feed(&f, answered_call, chunks[k]), 6);
        cr_assert_str_eq(f.types, "contact.open,queue.join,agent.answer,"
                                  "hold.start,hold.end,contact.close");
        cr_assert_eq(f.last.rejected, 0);
        cr_assert_eq(f.st.rejected, 0);
        cr_assert_eq(f.st.received, 10);
        cr_assert_eq(f.st.mapped, 6);
        /* AgentCalled, QueueCallerLeave (resolved by the AgentConnect)
         * and both Hangups (the call closed at AgentComplete) made
         * nothing. */
        cr_assert_eq(f.st.ignored, 4);

        ev = flow_ev(&f, 0);
        cr_assert(tmap_str_is(ev, "contact", "1700000000.1"));
        cr_assert(tmap_str_is(ev, "channel", "phone"));
        cr_assert_eq(tmap_int(ev, "ts"), 1700000000100);
        cr_assert(tmap_get(ev, "customer", &cust));
        cr_assert(tmap_str_is(&cust, "phone", "+15551234567"));
        ev = flow_ev(&f, 1);
        cr_assert(tmap_str_is(ev, "queue", "sales"));
        cr_assert_not(tmap_get(ev, "priority", &v));
        ev = flow_ev(&f, 2);
        cr_assert(tmap_str_is(ev, "agent", "Alice"));
        cr_assert_eq(tmap_int(ev, "ts"), 1700000021010);
        cr_assert_eq(tmap_int(flow_ev(&f, 5), "ts"), 1700000120000);

        cr_assert_eq(flow_stat(&f, "queues/sales/joined"), 1);
        cr_assert_eq(flow_stat(&f, "queues/sales/answered"), 1);
        cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 0);
        cr_assert_eq(flow_stat(&f, "queues/sales/waiting"), 0);
        cr_assert_eq(flow_stat(&f, "channels/phone/holds"), 1);
        cr_assert_eq(flow_stat(&f, "channels/phone/closed"), 1);
        cr_assert_eq(flow_stat(&f, "contacts/open"), 0);
        cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
        cr_assert_eq(flow_stat(&f, "events/implicit_opens"), 0);
        /* The caller's channel hung up: the call left the table. */
        cr_assert_null(call_state(&f, "1700000000.1"));
        flow_fini(&f);
    }
}

Test(ami_map, answered_call_conversation) {
    struct flow f;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object last;
    const char *why = NULL;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, answered_call, 0), 6);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(cc_engine_pack_conversation_by_ident(f.h.e, CC_IDENT_PHONE,
                                                      cc_str_of("+15551234567"),
                                                      &pk, &why),
                 0);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(tmap_int(&u.data, "holds"), 1);
    cr_assert_eq(tmap_int(&u.data, "hold_ms"), 30000);
    cr_assert(tmap_get(&u.data, "last_contact", &last));
    cr_assert(tmap_str_is(&last, "outcome", "answered"));
    cr_assert(tmap_str_is(&last, "agent", "Alice"));
    cr_assert(tmap_str_is(&last, "contact", "1700000000.1"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    flow_fini(&f);
}

Test(ami_map, leave_then_connect_in_separate_reads) {
    struct flow f;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN A_CALLED A_LEAVE, 0), 2);
    cr_assert_str_eq(f.types, "contact.open,queue.join");
    /* The leave waits for what follows. */
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "leaving");
    cr_assert_eq(cc_ami_map_next_flush(f.m), T0 + CC_AMI_LEAVE_GRACE_MS);
    cr_assert_eq(flow_feed(&f, A_CONNECT, 0), 1);
    cr_assert_str_eq(f.types, "agent.answer");
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "connected");
    cr_assert_eq(cc_ami_map_next_flush(f.m), UINT64_MAX);
    cc_evbuf_reset(&f.eb);
    cr_assert_eq(cc_ami_map_flush(f.m, T0 + 60000, &f.eb), 0);
    cr_assert_eq(flow_stat(&f, "queues/sales/answered"), 1);
    cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 0);
    flow_fini(&f);
}

Test(ami_map, abandoned_call) {
    struct flow f;
    msgpack_object cust;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, abandoned_call, 0), 4);
    cr_assert_str_eq(f.types,
                     "contact.open,queue.join,queue.leave,contact.close");
    cr_assert_eq(f.last.rejected, 0);
    /* "anonymous" is no phone number: no customer at all. */
    cr_assert_not(tmap_get(flow_ev(&f, 0), "customer", &cust));
    cr_assert_not(tmap_get(flow_ev(&f, 1), "customer", &cust));
    cr_assert_eq(tmap_int(flow_ev(&f, 2), "ts"), 1700000130500);
    cr_assert_eq(flow_stat(&f, "queues/sales/joined"), 1);
    cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 1);
    cr_assert_eq(flow_stat(&f, "queues/sales/answered"), 0);
    cr_assert_eq(flow_stat(&f, "contacts/open"), 0);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    cr_assert_null(call_state(&f, "1700000100.5"));
    flow_fini(&f);
}

Test(ami_map, leave_without_answer_after_grace) {
    struct flow f;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN A_LEAVE, 0), 2);
    cc_evbuf_reset(&f.eb);
    /* A queue timeout: no AgentConnect, no Abandon. */
    cr_assert_eq(cc_ami_map_flush(f.m, T0 + CC_AMI_LEAVE_GRACE_MS - 1, &f.eb),
                 0);
    cr_assert_eq(cc_ami_map_flush(f.m, T0 + CC_AMI_LEAVE_GRACE_MS, &f.eb), 1);
    cr_assert_eq(flow_submit(&f), 1);
    cr_assert_str_eq(f.types, "queue.leave");
    /* At the leave's own time, not the flush's. */
    cr_assert_eq(tmap_int(flow_ev(&f, 0), "ts"), 1700000021000);
    cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 1);
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "open");
    /* Voicemail, then the caller hangs up. */
    cr_assert_eq(flow_feed(&f, A_HANGUP, 0), 1);
    cr_assert_str_eq(f.types, "contact.close");
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

#define JOIN_SUPPORT                                                           \
    L("Event: QueueCallerJoin")                                                \
    A_CALLER L("Queue: support") L("Position: 1") L("Count: 1")                \
        TS("1700000031.000000") END

Test(ami_map, leave_then_hangup_and_leave_then_join) {
    struct flow f;

    /* The caller hangs up within the grace: the leave, then the close. */
    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN A_LEAVE A_HANGUP, 0), 4);
    cr_assert_str_eq(f.types,
                     "contact.open,queue.join,queue.leave,contact.close");
    cr_assert_eq(tmap_int(flow_ev(&f, 2), "ts"), 1700000021000);
    cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 1);
    flow_fini(&f);

    /* A timeout that sends the caller to another queue: a transfer. */
    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN A_LEAVE, 0), 2);
    cr_assert_eq(flow_feed(&f, JOIN_SUPPORT, 0), 1);
    cr_assert_str_eq(f.types, "transfer");
    cr_assert(tmap_str_is(flow_ev(&f, 0), "queue", "support"));
    cr_assert_eq(flow_stat(&f, "queues/sales/abandoned"), 0);
    cr_assert_eq(flow_stat(&f, "queues/support/waiting"), 1);
    cr_assert_eq(flow_stat(&f, "channels/phone/transfers"), 1);
    cr_assert_eq(cc_ami_map_next_flush(f.m), UINT64_MAX);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

#define MOH_CALLER_START                                                       \
    L("Event: MusicOnHoldStart")                                               \
    A_CALLER L("Class: default") TS("1700000005.000000") END

#define MOH_CALLER_STOP                                                        \
    L("Event: MusicOnHoldStop") A_CALLER TS("1700000021.005000") END

#define MOH_AGENT_START                                                        \
    L("Event: MusicOnHoldStart")                                               \
    A_AGENT L("Class: default") TS("1700000050.000000") END

#define MOH_AGENT_STOP                                                         \
    L("Event: MusicOnHoldStop") A_AGENT TS("1700000055.000000") END

Test(ami_map, hold_only_while_connected_and_music_on_hold) {
    struct flow f;

    /* moh_as_hold off: music is never a hold. Hold while queued is not
     * one either, nor an Unhold with no hold. */
    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN, 0), 2);
    cr_assert_eq(flow_feed(&f, A_HOLD A_UNHOLD MOH_CALLER_START, 0), 0);
    cr_assert_eq(flow_feed(&f, A_LEAVE MOH_CALLER_STOP A_CONNECT, 0), 1);
    cr_assert_eq(flow_feed(&f, MOH_AGENT_START MOH_AGENT_STOP A_UNHOLD, 0), 0);
    cr_assert_eq(flow_feed(&f, A_HOLD A_HOLD A_UNHOLD A_UNHOLD, 0), 2);
    cr_assert_str_eq(f.types, "hold.start,hold.end");
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);

    /* moh_as_hold on: the queue's music while waiting is no hold; music
     * once connected is. */
    flow_init(&f, true);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN MOH_CALLER_START, 0), 2);
    cr_assert_eq(flow_feed(&f, A_LEAVE MOH_CALLER_STOP A_CONNECT, 0), 1);
    cr_assert_str_eq(f.types, "agent.answer");
    cr_assert_eq(flow_feed(&f, MOH_AGENT_START, 0), 1);
    cr_assert_str_eq(f.types, "hold.start");
    /* An Unhold does not end a hold that music began. */
    cr_assert_eq(flow_feed(&f, A_UNHOLD MOH_AGENT_STOP, 0), 1);
    cr_assert_str_eq(f.types, "hold.end");
    cr_assert_eq(flow_stat(&f, "channels/phone/holds"), 1);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

#define COMPLETE_TRANSFER                                                      \
    L("Event: AgentComplete")                                                  \
    A_CALLER A_DEST MEMBER L("HoldTime: 20") L("TalkTime: 9")                  \
        L("Reason: transfer") TS("1700000030.000000") END

#define CONNECT_BOB                                                            \
    L("Event: AgentConnect")                                                   \
    A_CALLER A_DEST L("Queue: support") L("MemberName: Bob")                   \
        L("Interface: PJSIP/bob") L("RingTime: 2") L("HoldTime: 4")            \
            TS("1700000035.000000") END

Test(ami_map, transfer_complete_keeps_call_and_rejoin) {
    struct flow f;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN A_LEAVE A_CONNECT, 0), 3);
    /* A transfer away from the agent keeps the call open... */
    cr_assert_eq(flow_feed(&f, COMPLETE_TRANSFER, 0), 0);
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "connected");
    /* ... and its arrival in another queue is a transfer there. */
    cr_assert_eq(flow_feed(&f, JOIN_SUPPORT, 0), 1);
    cr_assert_str_eq(f.types, "transfer");
    cr_assert_eq(flow_feed(&f, CONNECT_BOB, 0), 1);
    cr_assert_str_eq(f.types, "agent.answer");
    cr_assert(tmap_str_is(flow_ev(&f, 0), "agent", "Bob"));
    cr_assert_eq(flow_feed(&f, A_HANGUP, 0), 1);
    cr_assert_str_eq(f.types, "contact.close");
    cr_assert_eq(flow_stat(&f, "queues/support/answered"), 1);
    cr_assert_eq(flow_stat(&f, "channels/phone/transfers"), 1);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

Test(ami_map, sweep_closes_calls_not_listed) {
    struct flow f;

    flow_init(&f, false);
    cr_assert_eq(
        flow_feed(&f, A_NEWCHANNEL A_JOIN B_NEWCHANNEL B_JOIN B_LEAVE, 0), 4);
    cc_evbuf_reset(&f.eb);
    cr_assert_eq(cc_ami_map_sweep_end(f.m, T0, &f.eb), 0);
    cc_ami_map_sweep_begin(f.m);
    cr_assert_eq(flow_feed(&f,
                           L("Event: CoreShowChannel") L("ActionID: s1")
                               L("Channel: PJSIP/trunk-00000001")
                                   L("Uniqueid: 1700000000.1")
                                       L("Linkedid: 1700000000.1") END,
                           0),
                 0);
    cc_evbuf_reset(&f.eb);
    cr_assert_eq(cc_ami_map_sweep_end(f.m, T0 + 1000, &f.eb), 1);
    cr_assert_eq(flow_submit(&f), 2);
    /* B had left its queue: that leave, then the close. */
    cr_assert_str_eq(f.types, "queue.leave,contact.close");
    cr_assert(tmap_str_is(flow_ev(&f, 1), "contact", "1700000100.5"));
    cr_assert_eq(tmap_int(flow_ev(&f, 1), "ts"), (int64_t)T0 + 1000);
    cr_assert_null(call_state(&f, "1700000100.5"));
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "queued");
    cr_assert_eq(flow_stat(&f, "queues/sales/waiting"), 1);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

Test(ami_map, withdraw_marks_the_call) {
    struct flow f;
    struct cc_str chan, queue;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL A_JOIN, 0), 2);
    cr_assert_eq(cc_ami_map_withdraw(f.m, cc_str_of("nope"), &chan, &queue),
                 CC_ENOENT);
    cr_assert_eq(
        cc_ami_map_withdraw(f.m, cc_str_of("1700000000.1"), &chan, &queue), 0);
    cr_assert(cc_str_eq(chan, "PJSIP/trunk-00000001"));
    cr_assert(cc_str_eq(queue, "sales"));
    cr_assert_str_eq(call_state(&f, "1700000000.1"), "open");
    /* Once is enough. */
    cr_assert_eq(
        cc_ami_map_withdraw(f.m, cc_str_of("1700000000.1"), &chan, &queue),
        CC_ESTATE);
    /* Asterisk's leave for the withdrawn caller makes nothing. */
    cr_assert_eq(flow_feed(&f, A_LEAVE, 0), 0);
    cr_assert_eq(cc_ami_map_next_flush(f.m), UINT64_MAX);
    cr_assert_eq(flow_feed(&f, A_HANGUP, 0), 1);
    cr_assert_str_eq(f.types, "contact.close");
    flow_fini(&f);
}

#define SECOND_CHANNEL                                                         \
    L("Event: Newchannel") A_AGENT TS("1700000001.500000") END

#define JOIN_PRIO                                                              \
    L("Event: QueueCallerJoin")                                                \
    A_CALLER L("Queue: sales") L("Position: 1") L("Count: 1")                  \
        L("ChanVariable: OTHER=1") L("ChanVariable: QUEUE_PRIO=7") END

#define NO_TS_INTERNAL                                                         \
    L("Event: Newchannel") CALLER("1700000200.9", "1002", "9") END

Test(ami_map, first_channel_only_priority_and_ids) {
    struct flow f;
    msgpack_object id, cust;
    char want[64];
    uint32_t i;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, A_NEWCHANNEL SECOND_CHANNEL JOIN_PRIO, 0), 2);
    /* The agent's channel (Uniqueid != Linkedid) opened nothing. */
    cr_assert_str_eq(f.types, "contact.open,queue.join");
    cr_assert_eq(tmap_int(flow_ev(&f, 1), "priority"), 7);
    /* No Timestamp: the host's clock. */
    cr_assert_eq(tmap_int(flow_ev(&f, 1), "ts"), (int64_t)T0);
    for (i = 0; i < 2; i++) {
        cr_assert(tmap_get(flow_ev(&f, i), "id", &id));
        snprintf(want, sizeof(want), "ami:42:%u", i + 1);
        cr_assert_eq(id.via.str.size, strlen(want));
        cr_assert(memcmp(id.via.str.ptr, want, strlen(want)) == 0);
    }
    /* An extension is not a phone number. */
    cr_assert_eq(flow_feed(&f, NO_TS_INTERNAL, 0), 1);
    cr_assert_not(tmap_get(flow_ev(&f, 0), "customer", &cust));
    cr_assert(tmap_get(flow_ev(&f, 0), "id", &id));
    cr_assert(memcmp(id.via.str.ptr, "ami:42:3", 8) == 0);
    flow_fini(&f);
}

Test(ami_map, bounded_call_table_and_long_ids) {
    struct cc_ami_map_config mc;
    struct cc_ami_map_stats ms;
    struct flow f;
    char text[4096];
    int i;

    memset(&mc, 0, sizeof(mc));
    mc.channel = "phone";
    mc.max_calls = 2;
    flow_init_with(&f, &mc);
    for (i = 1; i <= 3; i++) {
        snprintf(text, sizeof(text),
                 L("Event: Newchannel") L("Channel: PJSIP/t-%d")
                     L("CallerIDNum: 1000") L("Uniqueid: 17.%d")
                         L("Linkedid: 17.%d") END,
                 i, i, i);
        cr_assert_eq(flow_feed(&f, text, 0), 1);
    }
    cc_ami_map_stats(f.m, &ms);
    cr_assert_eq(ms.calls, 2);
    cr_assert_eq(ms.evicted_calls, 1);
    /* The least recently active went. */
    cr_assert_null(call_state(&f, "17.1"));
    cr_assert_str_eq(call_state(&f, "17.3"), "open");

    snprintf(text, sizeof(text),
             L("Event: Newchannel") L("Uniqueid: %070d") L("Linkedid: %070d")
                 END,
             1, 1);
    cr_assert_eq(flow_feed(&f, text, 0), 0);
    cr_assert_eq(cc_adapter_rejected(&f.st, CC_AMI_R_LONG_ID), 1);
    /* Responses and unknown events: ignored. */
    cr_assert_eq(flow_feed(&f,
                           L("Response: Success") L("Ping: Pong")
                               END L("Event: VarSet") L("Uniqueid: 17.3") END,
                           0),
                 0);
    cr_assert_eq(f.st.ignored, 2);
    flow_fini(&f);
}

/* Random opens and hangups over a small table, against a model of it:
 * the table's index and its least-recently-used order stay right through
 * many deletions and evictions. */
Test(ami_map, call_table_against_a_model) {
    enum { IDS = 200, CAP = 64, OPS = 20000 };
    static uint64_t last_use[IDS];
    static bool present[IDS];
    struct cc_ami_map_config mc;
    struct cc_ami_map_stats ms;
    struct cc_adapter_stats st;
    struct cc_ami_parser *p;
    struct cc_ami_map *m;
    struct cc_evbuf eb;
    unsigned seed = 99;
    uint64_t clock = 0;
    uint32_t count = 0, i, evictions = 0;
    int op;

    memset(&mc, 0, sizeof(mc));
    mc.channel = "phone";
    mc.max_calls = CAP;
    memset(&st, 0, sizeof(st));
    cr_assert_eq(cc_ami_parser_new(&p, 4096, 0, &st), 0);
    cr_assert_eq(cc_ami_map_new(&m, &mc), 0);
    cc_evbuf_init(&eb);
    for (op = 0; op < OPS; op++) {
        uint32_t id = (uint32_t)rand_r(&seed) % IDS;
        bool open = rand_r(&seed) % 3 != 0;
        const struct cc_ami_msg *msg = NULL;
        char text[256], key[32];
        size_t len, off = 0;

        snprintf(key, sizeof(key), "1700.%u", id);
        len = (size_t)snprintf(text, sizeof(text),
                               "Event: %s\r\nUniqueid: %s\r\nLinkedid: "
                               "%s\r\n\r\n",
                               open ? "Newchannel" : "Hangup", key, key);
        while (off < len) {
            off += cc_ami_parser_feed(p, text + off, len - off, &msg);
            if (msg != NULL)
                cc_ami_map_msg(m, msg, T0, &eb, &st);
        }
        cc_evbuf_reset(&eb);
        /* The model: a lookup counts as a use; a full table forgets the
         * least recently used call. */
        if (present[id]) {
            last_use[id] = ++clock;
            if (!open) {
                present[id] = false;
                count--;
            }
        } else if (open) {
            if (count == CAP) {
                uint32_t lru = IDS;
                for (i = 0; i < IDS; i++) {
                    if (present[i] &&
                        (lru == IDS || last_use[i] < last_use[lru]))
                        lru = i;
                }
                present[lru] = false;
                count--;
                evictions++;
            }
            present[id] = true;
            last_use[id] = ++clock;
            count++;
        }
        if (op % 97 == 0 || op == OPS - 1) {
            for (i = 0; i < IDS; i++) {
                snprintf(key, sizeof(key), "1700.%u", i);
                cr_assert_eq(cc_ami_map_call_state(m, cc_str_of(key)) != NULL,
                             present[i], "op %d, call %u", op, i);
            }
        }
    }
    cc_ami_map_stats(m, &ms);
    cr_assert_eq(ms.calls, count);
    cr_assert_eq(ms.evicted_calls, evictions);
    cr_assert_gt(evictions, 100);
    cr_assert_eq(st.rejected, 0);
    cc_evbuf_fini(&eb);
    cc_ami_map_free(m);
    cc_ami_parser_free(p);
}

/* ---- queue members
 * ------------------------------------------------------------------ */

Test(ami_map, members_from_a_real_session) {
    struct flow f;
    size_t len;
    char *data = read_file(PANORAMISK "agent_loggued_in.yaml", &len);

    flow_init(&f, false);
    /* Asterisk 11: a Newchannel without Linkedid (keyed by Uniqueid), and
     * three member events of which the last repeats the state before. */
    cr_assert_eq(flow_feed(&f, data, 0), 4);
    cr_assert_str_eq(f.types,
                     "agent.status,contact.open,agent.status,agent.status");
    cr_assert_eq(f.last.rejected, 0);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "agent", "Agent/401"));
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "available"));
    cr_assert(tmap_str_is(flow_ev(&f, 1), "contact", "1409169987.2"));
    cr_assert(tmap_str_is(flow_ev(&f, 2), "agent", "Agent/402"));
    cr_assert(tmap_str_is(flow_ev(&f, 2), "state", "busy"));
    cr_assert(tmap_str_is(flow_ev(&f, 3), "state", "available"));
    cr_assert_eq(flow_stat(&f, "agents/known"), 2);
    cr_assert_eq(flow_stat(&f, "agents/available"), 2);
    free(data);
    flow_fini(&f);
}

Test(ami_map, members_from_queue_status) {
    struct flow f;
    msgpack_object qs;
    size_t len;
    char *data = read_file(PANORAMISK "queue_status.yaml", &len);

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, data, 0), 6);
    cr_assert(tmap_str_is(flow_ev(&f, 5), "agent", "Agent/999"));
    cr_assert(tmap_str_is(flow_ev(&f, 5), "state", "away"));
    cr_assert(tmap_get(flow_ev(&f, 5), "queues", &qs));
    cr_assert_eq(qs.via.array.size, 1);
    cr_assert_eq(flow_stat(&f, "agents/known"), 6);
    cr_assert_eq(flow_stat(&f, "agents/available"), 5);
    cr_assert_eq(flow_stat(&f, "agents/away"), 1);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    free(data);
    flow_fini(&f);
}

#define QMS(q, status, paused)                                                 \
    L("Event: QueueMemberStatus")                                              \
    L("Queue: " q)                                                             \
    L("MemberName: Carol")                                                     \
    L("Interface: PJSIP/carol") L("Status: " status) L("Paused: " paused) END

#define REMOVED_A                                                              \
    L("Event: QueueMemberRemoved")                                             \
    L("Queue: A") L("MemberName: Carol") L("Interface: PJSIP/carol") END

#define REMOVED_B                                                              \
    L("Event: QueueMemberRemoved")                                             \
    L("Queue: B") L("MemberName: Carol") L("Interface: PJSIP/carol") END

Test(ami_map, member_queues_pause_and_removal) {
    struct flow f;
    msgpack_object qs;

    flow_init(&f, false);
    cr_assert_eq(flow_feed(&f, QMS("A", "1", "0"), 0), 1);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "available"));
    /* A second queue: the set grows and is sent whole. */
    cr_assert_eq(flow_feed(&f, QMS("B", "1", "0"), 0), 1);
    cr_assert(tmap_get(flow_ev(&f, 0), "queues", &qs));
    cr_assert_eq(qs.via.array.size, 2);
    /* A device change comes once per queue: sent once. */
    cr_assert_eq(flow_feed(&f, QMS("A", "2", "0") QMS("B", "2", "0"), 0), 1);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "busy"));
    /* Paused in one queue, serving the other: still busy. */
    cr_assert_eq(flow_feed(&f, QMS("A", "2", "1"), 0), 0);
    cr_assert_eq(flow_feed(&f, QMS("B", "2", "1"), 0), 1);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "away"));
    cr_assert_eq(flow_stat(&f, "agents/away"), 1);
    cr_assert_eq(flow_feed(&f, REMOVED_A, 0), 1);
    cr_assert(tmap_get(flow_ev(&f, 0), "queues", &qs));
    cr_assert_eq(qs.via.array.size, 1);
    cr_assert(qs.via.array.ptr[0].via.str.size == 1 &&
              qs.via.array.ptr[0].via.str.ptr[0] == 'B');
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "away"));
    cr_assert_eq(flow_feed(&f, REMOVED_B, 0), 1);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "offline"));
    cr_assert_eq(flow_stat(&f, "agents/offline"), 1);
    cr_assert_eq(flow_stat(&f, "events/rejected"), 0);
    flow_fini(&f);
}

Test(ami_map, device_states) {
    static const char *const want[] = {"offline", "available", "busy",
                                       "busy",    "offline",   "offline",
                                       "busy",    "busy",      "busy"};
    struct flow f;
    char text[512];
    int s;

    flow_init(&f, false);
    for (s = 0; s <= 8; s++) {
        snprintf(text, sizeof(text),
                 L("Event: QueueMemberStatus") L("Queue: q")
                     L("MemberName: m%d") L("Status: %d") L("Paused: 0") END,
                 s, s);
        cr_assert_eq(flow_feed(&f, text, 0), 1);
        cr_assert(tmap_str_is(flow_ev(&f, 0), "state", want[s]), "status %d",
                  s);
    }
    /* Paused wins over any device state. */
    cr_assert_eq(flow_feed(&f,
                           L("Event: QueueMemberPause") L("Queue: q")
                               L("MemberName: m1") L("Paused: 1") END,
                           0),
                 1);
    cr_assert(tmap_str_is(flow_ev(&f, 0), "state", "away"));
    flow_fini(&f);
}

/* ---- the client against a fake Asterisk
 * --------------------------------------------- */

struct fsrv;

struct fconn {
    uv_tcp_t tcp;
    struct fsrv *s;
    struct cc_ami_parser *p;
};

struct fsrv {
    uv_loop_t *loop;
    uv_tcp_t listen;
    int port;
    struct fconn *cur;
    int accepts, eofs, server_closes;
    uint64_t accept_ms[16], close_ms;
    uint64_t last_write_ms, ping_ms;
    uint64_t first_ping_silence; /* ms from the last write to the 1st Ping */
    int logins_ok, logins_failed, pings, queue_status, withdraws, core_show;
    /* behaviour */
    int fail_logins;
    bool no_ping_reply;
    int close_after_login; /* close this many sessions after their login */
    const char *after_login;
    bool after_login_once; /* only after the first login */
    /* what the client sent */
    char username[64], secret[64], events[16];
    char wd_queue[128], wd_caller[128];
};

struct fwrite {
    uv_write_t req;
    char data[];
};

static void
fw_done(uv_write_t *req, int status) {
    (void)status;
    free(CC_CONTAINER_OF(req, struct fwrite, req));
}

static void
fconn_write(struct fconn *fc, const char *text) {
    size_t n = strlen(text);
    struct fwrite *w = malloc(sizeof(*w) + n);
    uv_buf_t b;

    memcpy(w->data, text, n);
    b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&fc->tcp, &b, 1, fw_done) != 0)
        free(w);
    fc->s->last_write_ms = uv_now(fc->s->loop);
}

static void
fconn_closed(uv_handle_t *h) {
    struct fconn *fc = CC_CONTAINER_OF(h, struct fconn, tcp);

    cc_ami_parser_free(fc->p);
    free(fc);
}

static void
fconn_close(struct fconn *fc) {
    if (fc->s->cur == fc)
        fc->s->cur = NULL;
    if (!uv_is_closing((uv_handle_t *)&fc->tcp))
        uv_close((uv_handle_t *)&fc->tcp, fconn_closed);
}

static void
copy_field(const struct cc_ami_msg *m, const char *key, char *dst, size_t cap) {
    struct cc_str v = {"", 0};

    cc_ami_get(m, key, &v);
    snprintf(dst, cap, "%.*s", (int)v.n, v.p);
}

static void
fsrv_action(struct fconn *fc, const struct cc_ami_msg *m) {
    struct fsrv *s = fc->s;
    char id[128], out[1024];
    struct cc_str action;

    if (!cc_ami_get(m, "Action", &action))
        return;
    copy_field(m, "ActionID", id, sizeof(id));
    if (cc_ami_is(action, "Login")) {
        copy_field(m, "Username", s->username, sizeof(s->username));
        copy_field(m, "Secret", s->secret, sizeof(s->secret));
        copy_field(m, "Events", s->events, sizeof(s->events));
        if (s->fail_logins > 0) {
            s->fail_logins--;
            s->logins_failed++;
            snprintf(out, sizeof(out),
                     "Response: Error\r\nActionID: %s\r\n"
                     "Message: Authentication failed\r\n\r\n",
                     id);
            fconn_write(fc, out);
            return;
        }
        s->logins_ok++;
        snprintf(out, sizeof(out),
                 "Response: Success\r\nActionID: %s\r\n"
                 "Message: Authentication accepted\r\n\r\n"
                 "Event: FullyBooted\r\nPrivilege: system,all\r\n"
                 "Uptime: 5\r\nLastReload: 5\r\nStatus: Fully Booted\r\n\r\n",
                 id);
        fconn_write(fc, out);
        if (s->after_login != NULL)
            fconn_write(fc, s->after_login);
        if (s->after_login_once)
            s->after_login = NULL;
        if (s->close_after_login > 0) {
            s->close_after_login--;
            s->server_closes++;
            s->close_ms = uv_now(s->loop);
            fconn_close(fc);
        }
    } else if (cc_ami_is(action, "Ping")) {
        s->ping_ms = uv_now(s->loop);
        if (s->pings++ == 0)
            s->first_ping_silence = s->ping_ms - s->last_write_ms;
        if (s->no_ping_reply)
            return;
        snprintf(out, sizeof(out),
                 "Response: Success\r\nActionID: %s\r\nPing: Pong\r\n"
                 "Timestamp: 1700000000.000000\r\n\r\n",
                 id);
        fconn_write(fc, out);
    } else if (cc_ami_is(action, "QueueStatus")) {
        s->queue_status++;
        snprintf(out, sizeof(out),
                 "Response: Success\r\nActionID: %s\r\n"
                 "EventList: start\r\nMessage: Queue status will follow\r\n\r\n"
                 "Event: QueueStatusComplete\r\nActionID: %s\r\n"
                 "EventList: Complete\r\nListItems: 0\r\n\r\n",
                 id, id);
        fconn_write(fc, out);
    } else if (cc_ami_is(action, "CoreShowChannels")) {
        /* Asterisk restarted meanwhile: one channel, of a call the client
         * never saw. */
        s->core_show++;
        snprintf(out, sizeof(out),
                 "Response: Success\r\nActionID: %s\r\nEventList: start\r\n"
                 "Message: Channels will follow\r\n\r\n"
                 "Event: CoreShowChannel\r\nActionID: %s\r\n"
                 "Channel: PJSIP/trunk-00000009\r\nUniqueid: 1700000999.1\r\n"
                 "Linkedid: 1700000999.1\r\n\r\n"
                 "Event: CoreShowChannelsComplete\r\nActionID: %s\r\n"
                 "EventList: Complete\r\nListItems: 1\r\n\r\n",
                 id, id, id);
        fconn_write(fc, out);
    } else if (cc_ami_is(action, "QueueWithdrawCaller")) {
        s->withdraws++;
        copy_field(m, "Queue", s->wd_queue, sizeof(s->wd_queue));
        copy_field(m, "Caller", s->wd_caller, sizeof(s->wd_caller));
        snprintf(out, sizeof(out),
                 "Response: Success\r\nActionID: %s\r\n"
                 "Message: Withdraw sent\r\n\r\n",
                 id);
        fconn_write(fc, out);
    }
}

static void
fconn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
    (void)h;
    b->base = malloc(sz);
    b->len = sz;
}

static void
fconn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    struct fconn *fc = CC_CONTAINER_OF(st, struct fconn, tcp);
    const struct cc_ami_msg *m;
    size_t off = 0;

    if (nread < 0) {
        fc->s->eofs++;
        fconn_close(fc);
    }
    while (nread > 0 && off < (size_t)nread &&
           !uv_is_closing((uv_handle_t *)&fc->tcp)) {
        off +=
            cc_ami_parser_feed(fc->p, b->base + off, (size_t)nread - off, &m);
        if (m != NULL)
            fsrv_action(fc, m);
    }
    free(b->base);
}

static void
fsrv_accept(uv_stream_t *server, int status) {
    struct fsrv *s = CC_CONTAINER_OF(server, struct fsrv, listen);
    struct fconn *fc;

    cr_assert_eq(status, 0);
    fc = calloc(1, sizeof(*fc));
    fc->s = s;
    cr_assert_eq(cc_ami_parser_new(&fc->p, 65536, 0, NULL), 0);
    uv_tcp_init(s->loop, &fc->tcp);
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&fc->tcp), 0);
    /* One session at a time, as the client keeps. */
    if (s->cur != NULL)
        fconn_close(s->cur);
    s->cur = fc;
    if (s->accepts < 16)
        s->accept_ms[s->accepts] = uv_now(s->loop);
    s->accepts++;
    uv_read_start((uv_stream_t *)&fc->tcp, fconn_alloc, fconn_read);
    fconn_write(fc, "Asterisk Call Manager/5.0.1\r\n");
}

static void
fsrv_start(struct fsrv *s, uv_loop_t *loop) {
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    cr_assert_eq(uv_tcp_init(loop, &s->listen), 0);
    cr_assert_eq(uv_tcp_bind(&s->listen, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&s->listen, 16, fsrv_accept), 0);
    cr_assert_eq(uv_tcp_getsockname(&s->listen, (struct sockaddr *)&got, &len),
                 0);
    s->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void
fsrv_stop(struct fsrv *s) {
    if (s->cur != NULL)
        fconn_close(s->cur);
    uv_close((uv_handle_t *)&s->listen, NULL);
}

/* The client suite's loop, fake server, engine and client. */
static uv_loop_t cloop;
static uv_timer_t tick;
static struct fsrv srv;
static struct thost th;
static struct cc_ami_client *cl;

static void
tick_cb(uv_timer_t *t) {
    (void)t;
}

#define RUN_UNTIL(cond, ms)                                                    \
    do {                                                                       \
        uint64_t end_ = uv_now(&cloop) + (ms);                                 \
        while (!(cond) && uv_now(&cloop) < end_)                               \
            uv_run(&cloop, UV_RUN_ONCE);                                       \
    } while (0)

static void
client_setup(void) {
    cr_assert_eq(uv_loop_init(&cloop), 0);
    uv_timer_init(&cloop, &tick);
    uv_timer_start(&tick, tick_cb, 2, 2);
    fsrv_start(&srv, &cloop);
    thost_init(&th, NULL, T0);
    cl = NULL;
}

static void
set_done(void *arg) {
    *(bool *)arg = true;
}

static void
client_teardown(void) {
    if (cl != NULL) {
        bool done = false;
        cc_ami_client_close(cl, set_done, &done);
        RUN_UNTIL(done, 3000);
        cr_assert(done, "the client's handles did not close");
        cc_ami_client_free(cl);
        cl = NULL;
    }
    fsrv_stop(&srv);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&cloop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&cloop), 0);
    thost_fini(&th);
}

static void
client_cfg(struct cc_ami_config *cfg) {
    static struct cc_config all;

    cc_config_defaults(&all);
    *cfg = all.ami;
    snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
    cfg->port = (uint64_t)srv.port;
    snprintf(cfg->username, sizeof(cfg->username), "contactd");
    snprintf(cfg->secret, sizeof(cfg->secret), "s3cret");
    cfg->keepalive_ms = 5000;
    cfg->reconnect_min_ms = 50;
    cfg->reconnect_max_ms = 400;
    cfg->withdraw = 1;
}

static void
client_go(const struct cc_ami_config *cfg) {
    cr_assert_eq(cc_ami_client_new(&cl, &cloop, cfg, &th.host), 0);
    cc_ami_client_start(cl);
}

/* A number (or bool, as 0/1) from the client's stats map. */
static int64_t
cstat(const char *path) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object v;
    int64_t r;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cc_ami_client_pack_stats(cl, &pk);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    if (tmap_get(&u.data, path, &v) && v.type == MSGPACK_OBJECT_BOOLEAN)
        r = v.via.boolean;
    else
        r = tmap_int(&u.data, path);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return r;
}

TestSuite(ami_client, .init = client_setup, .fini = client_teardown,
          .timeout = 60);

Test(ami_client, login_and_events_flow) {
    struct cc_ami_config cfg;

    client_cfg(&cfg);
    srv.after_login = answered_call;
    client_go(&cfg);
    RUN_UNTIL(tstat_int(th.e, "events/accepted") == 6, 5000);
    cr_assert_eq(tstat_int(th.e, "events/accepted"), 6);
    cr_assert_eq(tstat_int(th.e, "queues/sales/answered"), 1);
    cr_assert_eq(tstat_int(th.e, "events/rejected"), 0);
    cr_assert_eq(srv.logins_ok, 1);
    cr_assert_str_eq(srv.username, "contactd");
    cr_assert_str_eq(srv.secret, "s3cret");
    cr_assert_str_eq(srv.events, "on");
    RUN_UNTIL(srv.queue_status == 1, 2000);
    cr_assert_eq(srv.queue_status, 1);
    cr_assert_eq(cstat("connected"), 1);
    cr_assert_eq(cstat("logins"), 1);
    cr_assert_eq(cstat("mapped"), 6);
    cr_assert_eq(cstat("reconnects"), 0);
    cr_assert_eq(cstat("parser/greetings"), 1);
    cr_assert_eq(cstat("rejected"), 0);
    cr_assert_eq(cc_ami_client_stats(cl)->mapped, 6);
}

Test(ami_client, login_failure_is_retried_with_backoff) {
    struct cc_ami_config cfg;
    uint64_t gap[3];
    int i;

    client_cfg(&cfg);
    srv.fail_logins = 3;
    client_go(&cfg);
    RUN_UNTIL(srv.logins_ok == 1, 10000);
    cr_assert_eq(srv.logins_ok, 1);
    cr_assert_eq(srv.logins_failed, 3);
    cr_assert_eq(srv.accepts, 4);
    cr_assert_eq(cstat("login_failures"), 3);
    cr_assert_eq(cstat("reconnects"), 3);
    RUN_UNTIL(cstat("connected") == 1, 2000);
    cr_assert_eq(cstat("connected"), 1);
    /* Each wait is drawn in the upper half of reconnect_min doubled per
     * failure: at least 25, 50 and 100 ms. */
    for (i = 0; i < 3; i++) {
        gap[i] = srv.accept_ms[i + 1] - srv.accept_ms[i];
        cr_assert_geq(gap[i], (uint64_t)(25 << i), "wait %d: %llu ms", i,
                      (unsigned long long)gap[i]);
    }
}

Test(ami_client, server_close_gives_reconnect) {
    struct cc_ami_config cfg;
    uint64_t gap;

    client_cfg(&cfg);
    srv.close_after_login = 1;
    srv.after_login = A_NEWCHANNEL;
    client_go(&cfg);
    RUN_UNTIL(srv.logins_ok == 2, 5000);
    cr_assert_eq(srv.logins_ok, 2);
    cr_assert_eq(srv.accepts, 2);
    cr_assert_eq(srv.server_closes, 1);
    gap = srv.accept_ms[1] - srv.close_ms;
    cr_assert_geq(gap, 25, "reconnected after %llu ms",
                  (unsigned long long)gap);
    cr_assert_eq(cstat("reconnects"), 1);
    /* The events sent before the close made it. */
    RUN_UNTIL(tstat_int(th.e, "events/accepted") >= 1, 2000);
    cr_assert_geq(tstat_int(th.e, "events/accepted"), 1);
    RUN_UNTIL(cstat("connected") == 1, 2000);
    cr_assert_eq(cstat("logins"), 2);
}

Test(ami_client, reconnect_sweeps_calls_that_ended) {
    struct cc_ami_config cfg;

    client_cfg(&cfg);
    srv.close_after_login = 1;
    srv.after_login = A_NEWCHANNEL A_JOIN;
    srv.after_login_once = true;
    client_go(&cfg);
    RUN_UNTIL(srv.logins_ok == 2 && cstat("calls/swept") == 1, 5000);
    cr_assert_eq(srv.logins_ok, 2);
    /* The first session had no calls to check; the second had one, which
     * Asterisk no longer lists: closed, as abandoned in its queue. */
    cr_assert_eq(srv.core_show, 1);
    cr_assert_eq(cstat("calls/swept"), 1);
    cr_assert_eq(cstat("calls/open"), 0);
    cr_assert_eq(tstat_int(th.e, "queues/sales/waiting"), 0);
    cr_assert_eq(tstat_int(th.e, "queues/sales/abandoned"), 1);
    cr_assert_eq(tstat_int(th.e, "contacts/open"), 0);
    cr_assert_eq(tstat_int(th.e, "events/rejected"), 0);
}

Test(ami_client, keepalive_ping_and_dead_connection) {
    struct cc_ami_config cfg;
    uint64_t silence;

    client_cfg(&cfg);
    cfg.keepalive_ms = 150;
    client_go(&cfg);
    RUN_UNTIL(srv.pings >= 1, 5000);
    cr_assert_geq(srv.pings, 1);
    /* The Ping came after a keepalive of silence from the server. */
    silence = srv.first_ping_silence;
    cr_assert_geq(silence, 140, "ping after %llu ms of silence",
                  (unsigned long long)silence);
    cr_assert_eq(srv.accepts, 1);
    /* The server stops answering: after another keepalive the client
     * gives the connection up and comes back. */
    srv.no_ping_reply = true;
    RUN_UNTIL(srv.accepts == 2, 5000);
    cr_assert_eq(srv.accepts, 2);
    cr_assert_eq(cstat("keepalive_timeouts"), 1);
    cr_assert_eq(cstat("reconnects"), 1);
    cr_assert_geq(srv.accept_ms[1] - srv.ping_ms, 150);
}

Test(ami_client, withdraw_sends_the_callers_channel) {
    struct cc_ami_config cfg;

    client_cfg(&cfg);
    srv.after_login = A_NEWCHANNEL A_JOIN;
    client_go(&cfg);
    RUN_UNTIL(tstat_int(th.e, "queues/sales/waiting") == 1, 5000);
    cr_assert_eq(tstat_int(th.e, "queues/sales/waiting"), 1);
    /* Unknown calls send nothing. */
    cc_ami_client_withdraw(cl, cc_str_of("1699999999.9"), cc_str_of("sales"));
    cr_assert_eq(cstat("withdraw_skipped"), 1);
    cc_ami_client_withdraw(cl, cc_str_of("1700000000.1"), cc_str_of("sales"));
    RUN_UNTIL(srv.withdraws == 1, 5000);
    cr_assert_eq(srv.withdraws, 1);
    cr_assert_str_eq(srv.wd_caller, "PJSIP/trunk-00000001");
    cr_assert_str_eq(srv.wd_queue, "sales");
    cr_assert_eq(cstat("withdrawals"), 1);
    /* Already withdrawn: not again. */
    cc_ami_client_withdraw(cl, cc_str_of("1700000000.1"), cc_str_of("sales"));
    cr_assert_eq(cstat("withdraw_skipped"), 2);
    RUN_UNTIL(false, 100);
    cr_assert_eq(srv.withdraws, 1);
}

Test(ami_client, resolves_a_name_and_closes_cleanly) {
    struct cc_ami_config cfg;

    client_cfg(&cfg);
    /* localhost may resolve to ::1 first, where nothing listens: the
     * client goes on to the next address. */
    snprintf(cfg.host, sizeof(cfg.host), "localhost");
    client_go(&cfg);
    RUN_UNTIL(srv.logins_ok == 1, 10000);
    cr_assert_eq(srv.logins_ok, 1);
}

Test(ami_client, bad_config) {
    struct cc_ami_config cfg;
    struct cc_ami_client *c = NULL;

    client_cfg(&cfg);
    snprintf(cfg.secret, sizeof(cfg.secret), "a\r\nAction: Originate");
    cr_assert_eq(cc_ami_client_new(&c, &cloop, &cfg, &th.host), CC_EINVAL);
    cr_assert_null(c);
    client_cfg(&cfg);
    cfg.host[0] = '\0';
    cr_assert_eq(cc_ami_client_new(&c, &cloop, &cfg, &th.host), CC_EINVAL);
}
