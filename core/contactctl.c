/*
 * contactctl: the command-line companion of contactd. It reads the same
 * configuration as the daemon (embedded defaults, then --config FILE), so it
 * talks to the same addresses, and speaks the wire contract of DESIGN.md in
 * JSON: "send" turns JSON events into MessagePack messages on the
 * acknowledged ingest socket and prints each reply, "tail" prints alerts or
 * callback triggers as they arrive, and "stats" asks the query socket for
 * the daemon's counters. Every reply or message is printed as JSON with its
 * keys in the order they arrived.
 *
 * Exit status: 0 on success; 1 when contactd cannot be reached, a reply
 * carries an error or rejected events, or the input is not JSON; 2 for a
 * usage error.
 */
#include "config.h"
#include "outbox.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <string.h>

#define REPLY_MAX_BYTES ((size_t)64 << 20) /* largest reply accepted */
#define TAIL_MAX_BYTES ((size_t)1 << 20)   /* largest alert or trigger */
#define DEFAULT_TIMEOUT_MS 5000            /* send and stats */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

enum sock_kind { SOCK_REQ, SOCK_SUB, SOCK_PULL };

struct options {
    const char *config_path;
    const char *file;     /* send --file; "-" is standard input */
    long long timeout_ms; /* -1 when not given */
    unsigned long count;  /* tail: stop after this many; 0 = never */
    /* conversation: --email, --phone, ... (or --id) and its value */
    const char *ident_kind, *ident_value;
    const char *queue;   /* at-risk and queue: --queue */
    const char *channel; /* queue: --channel */
    unsigned long limit; /* at-risk and queue: --limit; 0 = not given */
    long long since;     /* tail alerts: --since SEQ; -1 = not given */
    int help, version;
    int npos; /* positional arguments, in argv[0..npos) */
};

/* Reads JSON values one byte at a time so that nothing past a value is
 * consumed, counting lines for error messages. */
struct reader {
    FILE *fp;
    unsigned long line; /* line of the next byte, from 1 */
};

static void
usage(FILE *out) {
    fputs(
        "usage: contactctl [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Command-line companion of contactd.\n"
        "\n"
        "Commands:\n"
        "  send [JSON ...]       send events: each JSON argument, an event "
        "object or an\n"
        "                        array of them, is one message; without "
        "arguments the\n"
        "                        values are read from standard input (one "
        "document,\n"
        "                        or one value per line)\n"
        "  send -f FILE          the same from FILE (\"-\" for standard "
        "input)\n"
        "  tail alerts [PREFIX]  print alerts whose topic starts with "
        "PREFIX\n"
        "  tail alerts --since SEQ [PREFIX]\n"
        "                        first the logged alerts after SEQ (each "
        "alert's \"seq\"),\n"
        "                        then the new ones, each once\n"
        "  tail callbacks        print callback triggers (takes them from "
        "the\n"
        "                        callback workers' share)\n"
        "  stats                 print the daemon's counters\n"
        "  snapshot              have contactd write a snapshot now and wait\n"
        "                        until it is on disk (or the one running)\n"
        "  conversation --email ADDRESS | --phone NUMBER | --chat ID |\n"
        "               --social PLATFORM:HANDLE | --crm ID | --id cv-N\n"
        "                        print the customer's conversation with "
        "its context\n"
        "  sla --id cv-N         print the conversation's running SLA "
        "clocks, every\n"
        "                        stage with its due time\n"
        "  at-risk [--queue Q] [--limit N]\n"
        "                        print the SLA clocks nearest to their "
        "breach\n"
        "                        (waiting callers, conversations "
        "awaiting an\n"
        "                        agent), soonest first (default 10)\n"
        "  queue --queue Q [--limit N] | --channel C\n"
        "                        print service levels over 15, 30 and 60 "
        "minutes;\n"
        "                        for a queue also its agents and the "
        "first N\n"
        "                        callers in answer order (default 10)\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE   read FILE over the embedded defaults, as "
        "contactd does\n"
        "      --timeout MS    send, stats, conversation, sla, at-risk: give "
        "up\n"
        "                      after MS milliseconds (default 5000); tail: "
        "exit 1\n"
        "                      when no message arrives within MS (default: "
        "wait\n"
        "                      forever)\n"
        "      --count N       tail: exit after N messages\n"
        "      --queue Q       at-risk: only callers waiting in Q and "
        "conversations\n"
        "                      last queued to Q; queue: the queue\n"
        "      --channel C     queue: a channel's figures instead\n"
        "      --limit N       at-risk: at most N clocks; queue: N callers "
        "(1 to 1000)\n"
        "  -f, --file FILE     send: read events from FILE\n"
        "  -V, --version       print the version and exit\n"
        "  -h, --help          print this help and exit\n"
        "\n"
        "Replies and messages are printed as one JSON line each; stats "
        "prints\n"
        "indented JSON. Exit status: 0 on success, 1 when contactd cannot "
        "be\n"
        "reached, answers an error or rejects an event, or the input is "
        "not JSON,\n"
        "2 for a usage error.\n",
        out);
}

/* ---- command line ----------------------------------------------------- */

static int
parse_number(const char *s, unsigned long long max, unsigned long long *out) {
    unsigned long long v = 0;

    if (*s == '\0')
        return CC_EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return CC_EINVAL;
        if (v > (max - (unsigned long long)(*s - '0')) / 10)
            return CC_EINVAL;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    *out = v;
    return 0;
}

/* The number val given to option opt, from min to max; anything else is
 * refused with what the option needs. */
static int
option_number(const char *opt, const char *val, unsigned long long min,
              unsigned long long max, const char *needs,
              unsigned long long *out) {
    if (parse_number(val, max, out) != 0 || *out < min) {
        fprintf(stderr, "contactctl: %s needs %s, not '%s'\n", opt, needs, val);
        return CC_EINVAL;
    }
    return 0;
}

/*
 * Matches argv[*i] against an option that takes a value: "--name VALUE",
 * "--name=VALUE" or "-x VALUE". Returns 1 and sets *val on a match, 0 when
 * argv[*i] is something else, CC_EINVAL when the value is missing.
 */
static int
match_value(int argc, char **argv, int *i, const char *lng, const char *shrt,
            const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(lng);

    if (strncmp(a, lng, n) == 0 && a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (strcmp(a, lng) != 0 && (shrt == NULL || strcmp(a, shrt) != 0))
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "contactctl: %s needs a value\n", a);
        return CC_EINVAL;
    }
    *i += 1;
    *val = argv[*i];
    return 1;
}

/* conversation's --email, --phone, --chat, --social, --crm and --id:
 * returns 1 when argv[*i] is one of them (o->ident_value is NULL when its
 * value is missing or a second one is given), else 0. */
static int
match_ident(int argc, char **argv, int *i, struct options *o) {
    static const char *const kinds[] = {"phone",  "email", "chat",
                                        "social", "crm",   "id"};
    char opt[16];
    const char *val;
    size_t k;
    int m;

    for (k = 0; k < CC_ARRAY_SIZE(kinds); k++) {
        snprintf(opt, sizeof(opt), "--%s", kinds[k]);
        m = match_value(argc, argv, i, opt, NULL, &val);
        if (m == 0)
            continue;
        if (m < 0 || o->ident_kind != NULL) {
            o->ident_kind = kinds[k];
            o->ident_value = NULL;
            return 1;
        }
        o->ident_kind = kinds[k];
        o->ident_value = val;
        return 1;
    }
    return 0;
}

/* Options may come before or after the command; "--" ends them. The
 * positional arguments are moved to the front of argv. */
static int
parse_args(int argc, char **argv, struct options *o) {
    unsigned long long v;
    const char *val;
    int i, m, only_pos = 0;

    memset(o, 0, sizeof(*o));
    o->timeout_ms = -1;
    o->since = -1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (only_pos || a[0] != '-' || a[1] == '\0') {
            argv[o->npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o->help = 1;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if ((m = match_value(argc, argv, &i, "--config", "-c", &val)) !=
                   0) {
            if (m < 0)
                return CC_EINVAL;
            o->config_path = val;
        } else if ((m = match_value(argc, argv, &i, "--file", "-f", &val)) !=
                   0) {
            if (m < 0)
                return CC_EINVAL;
            o->file = val;
        } else if (match_ident(argc, argv, &i, o) != 0) {
            if (o->ident_value == NULL)
                return CC_EINVAL;
        } else if ((m = match_value(argc, argv, &i, "--timeout", NULL, &val)) !=
                   0) {
            if (m < 0 ||
                option_number("--timeout", val, 1, INT32_MAX,
                              "a positive number of milliseconds", &v) != 0)
                return CC_EINVAL;
            o->timeout_ms = (long long)v;
        } else if ((m = match_value(argc, argv, &i, "--count", NULL, &val)) !=
                   0) {
            if (m < 0 || option_number("--count", val, 1, ULONG_MAX,
                                       "a positive number", &v) != 0)
                return CC_EINVAL;
            o->count = (unsigned long)v;
        } else if ((m = match_value(argc, argv, &i, "--queue", NULL, &val)) !=
                   0) {
            if (m < 0)
                return CC_EINVAL;
            o->queue = val;
        } else if ((m = match_value(argc, argv, &i, "--channel", NULL, &val)) !=
                   0) {
            if (m < 0)
                return CC_EINVAL;
            o->channel = val;
        } else if ((m = match_value(argc, argv, &i, "--limit", NULL, &val)) !=
                   0) {
            if (m < 0 || option_number("--limit", val, 1, 1000,
                                       "a number from 1 to 1000", &v) != 0)
                return CC_EINVAL;
            o->limit = (unsigned long)v;
        } else if ((m = match_value(argc, argv, &i, "--since", NULL, &val)) !=
                   0) {
            if (m < 0 ||
                option_number("--since", val, 0, INT64_MAX,
                              "an alert seq (0 for the oldest kept)", &v) != 0)
                return CC_EINVAL;
            o->since = (long long)v;
        } else {
            fprintf(stderr, "contactctl: unknown option '%s'\n", a);
            return CC_EINVAL;
        }
    }
    return 0;
}

/* ---- output ----------------------------------------------------------- */

static int
print_json(json_t *j, size_t flags) {
    if (json_dumpf(j, stdout, flags | JSON_ENCODE_ANY) != 0 ||
        putchar('\n') == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "contactctl: cannot write the output: %s\n",
                strerror(errno));
        return CC_EIO;
    }
    return 0;
}

static void
unreachable(const char *addr, int nng_err) {
    fprintf(stderr, "contactctl: cannot reach contactd at %s: %s\n", addr,
            nng_strerror(nng_err));
}

static void
out_of_memory(void) {
    fputs("contactctl: out of memory\n", stderr);
}

/* ---- JSON to MessagePack ---------------------------------------------- */

static int
pack_strn(msgpack_packer *pk, const char *p, size_t n) {
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, p, n) != 0)
        return CC_ENOMEM;
    return 0;
}

static int
pack_json(msgpack_packer *pk, json_t *v) {
    void *it;
    size_t i;
    int rc = 0;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if (msgpack_pack_map(pk, json_object_size(v)) != 0)
            return CC_ENOMEM;
        for (it = json_object_iter(v); it != NULL && rc == 0;
             it = json_object_iter_next(v, it)) {
            rc = pack_strn(pk, json_object_iter_key(it),
                           json_object_iter_key_len(it));
            if (rc == 0)
                rc = pack_json(pk, json_object_iter_value(it));
        }
        return rc;
    case JSON_ARRAY:
        if (msgpack_pack_array(pk, json_array_size(v)) != 0)
            return CC_ENOMEM;
        for (i = 0; i < json_array_size(v) && rc == 0; i++)
            rc = pack_json(pk, json_array_get(v, i));
        return rc;
    case JSON_STRING:
        return pack_strn(pk, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        rc = msgpack_pack_long_long(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        rc = msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    }
    return rc != 0 ? CC_ENOMEM : 0;
}

/* ---- MessagePack to JSON ---------------------------------------------- */

/* The length of the valid UTF-8 sequence at p, or 0. */
static size_t
utf8_seq_len(const unsigned char *p, size_t n) {
    uint32_t cp;
    return cc_utf8_seq(p, n, &cp);
}

/* A JSON string from bytes that should be UTF-8; bytes that are not become
 * U+FFFD rather than failing the whole message. */
static json_t *
string_from_bytes(const char *p, size_t n) {
    const unsigned char *u = (const unsigned char *)p;
    json_t *s = json_stringn(p, n);
    size_t i = 0, o = 0, len;
    char *buf;

    if (s != NULL)
        return s;
    if (n > (SIZE_MAX - 1) / 3 || (buf = malloc(3 * n + 1)) == NULL)
        return NULL;
    while (i < n) {
        len = utf8_seq_len(u + i, n - i);
        if (len == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, p + i, len);
            o += len;
            i += len;
        }
    }
    s = json_stringn(buf, o);
    free(buf);
    return s;
}

static json_t *
hex_string(const char *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    json_t *s;
    char *buf;
    size_t i;

    if (n > (SIZE_MAX - 1) / 2 || (buf = malloc(2 * n + 1)) == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        buf[2 * i] = digits[(unsigned char)p[i] >> 4];
        buf[2 * i + 1] = digits[(unsigned char)p[i] & 0x0f];
    }
    s = json_stringn(buf, 2 * n);
    free(buf);
    return s;
}

static json_t *mp_to_json(const msgpack_object *o);

/* A map key as a JSON string: string keys as they are, others in their
 * compact JSON form (1 -> "1", nil -> "null"). */
static json_t *
key_to_json(const msgpack_object *k) {
    json_t *j = mp_to_json(k);
    char *text;

    if (j == NULL || json_is_string(j))
        return j;
    text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    if (text == NULL)
        return NULL;
    j = json_string(text);
    free(text);
    return j;
}

/* Adds the pairs of a map to obj; a repeated key keeps its first place and
 * takes the last value. */
static int
add_map(json_t *obj, const msgpack_object_map *m) {
    json_t *k, *v;
    uint32_t i;
    int rc;

    for (i = 0; i < m->size; i++) {
        k = key_to_json(&m->ptr[i].key);
        if (k == NULL)
            return CC_ENOMEM;
        v = mp_to_json(&m->ptr[i].val);
        if (v == NULL) {
            json_decref(k);
            return CC_ENOMEM;
        }
        rc = json_object_setn_new(obj, json_string_value(k),
                                  json_string_length(k), v);
        json_decref(k);
        if (rc != 0)
            return CC_ENOMEM;
    }
    return 0;
}

/* Returns NULL when out of memory. */
static json_t *
mp_to_json(const msgpack_object *o) {
    json_t *j;
    uint32_t i;

    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)LLONG_MAX) /* json_int_t */
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        /* JSON has no NaN or infinity. */
        if (!isfinite(o->via.f64))
            return json_null();
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return string_from_bytes(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return hex_string(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY:
        if ((j = json_array()) == NULL)
            return NULL;
        for (i = 0; i < o->via.array.size; i++) {
            if (json_array_append_new(j, mp_to_json(&o->via.array.ptr[i])) !=
                0) {
                json_decref(j);
                return NULL;
            }
        }
        return j;
    case MSGPACK_OBJECT_MAP:
        if ((j = json_object()) == NULL)
            return NULL;
        if (add_map(j, &o->via.map) != 0) {
            json_decref(j);
            return NULL;
        }
        return j;
    case MSGPACK_OBJECT_EXT:
    default:
        return json_null();
    }
}

/* Decodes one MessagePack value. With a topic (alerts), the value must be a
 * map and the result starts with "topic": topic, which wins over a "topic"
 * key of the map. */
/* An alert as printed: its topic first, then its map. */
static int
alert_json(const char *topic, size_t topic_len, const msgpack_object_map *m,
           json_t **out) {
    json_t *j = json_object(), *t = string_from_bytes(topic, topic_len);
    int rc = 0;

    /* Set first for its place, again after the map for its value. */
    if (j == NULL || t == NULL || json_object_set(j, "topic", t) != 0 ||
        add_map(j, m) != 0 || json_object_set(j, "topic", t) != 0)
        rc = CC_ENOMEM;
    json_decref(t);
    if (rc != 0) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return 0;
}

static int
decode(const char *data, size_t len, const char *topic, size_t topic_len,
       json_t **out) {
    msgpack_unpacked res;
    size_t off = 0;
    json_t *j = NULL;
    int rc = 0;

    msgpack_unpacked_init(&res);
    if (msgpack_unpack_next(&res, data, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        rc = CC_EPROTO;
    } else if (topic == NULL) {
        j = mp_to_json(&res.data);
        if (j == NULL)
            rc = CC_ENOMEM;
    } else if (res.data.type != MSGPACK_OBJECT_MAP) {
        rc = CC_EPROTO;
    } else {
        rc = alert_json(topic, topic_len, &res.data.via.map, &j);
    }
    msgpack_unpacked_destroy(&res);
    if (rc != 0) {
        json_decref(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* ---- sockets ---------------------------------------------------------- */

static int
open_dial(nng_socket *sock, enum sock_kind kind, const char *addr,
          const char *prefix, nng_duration timeout) {
    int rv;

    if (kind == SOCK_REQ)
        rv = nng_req0_open(sock);
    else if (kind == SOCK_SUB)
        rv = nng_sub0_open(sock);
    else
        rv = nng_pull0_open(sock);
    if (rv != 0) {
        fprintf(stderr, "contactctl: cannot open a socket: %s\n",
                nng_strerror(rv));
        return CC_EIO;
    }
    rv = nng_socket_set_size(*sock, NNG_OPT_RECVMAXSZ,
                             kind == SOCK_REQ ? REPLY_MAX_BYTES
                                              : TAIL_MAX_BYTES);
    if (rv == 0)
        rv = nng_socket_set_ms(*sock, NNG_OPT_RECVTIMEO, timeout);
    if (rv == 0 && kind == SOCK_REQ)
        rv = nng_socket_set_ms(*sock, NNG_OPT_SENDTIMEO, timeout);
    /* One attempt per request: a resent batch would come back as
     * duplicates. */
    if (rv == 0 && kind == SOCK_REQ)
        rv = nng_socket_set_ms(*sock, NNG_OPT_REQ_RESENDTIME,
                               NNG_DURATION_INFINITE);
    if (rv == 0 && kind == SOCK_SUB)
        rv = nng_socket_set(*sock, NNG_OPT_SUB_SUBSCRIBE, prefix,
                            strlen(prefix));
    if (rv != 0) {
        fprintf(stderr, "contactctl: cannot set up a socket: %s\n",
                nng_strerror(rv));
        nng_close(*sock);
        return CC_EIO;
    }
    /* REQ fails fast when nothing listens; SUB and PULL keep retrying in
     * the background until contactd comes up. */
    rv = nng_dial(*sock, addr, NULL, kind == SOCK_REQ ? 0 : NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        unreachable(addr, rv);
        nng_close(*sock);
        return CC_EIO;
    }
    return 0;
}

/* Sends one request and decodes the reply. */
static int
request(nng_socket sock, const char *addr, const char *data, size_t len,
        json_t **reply) {
    nng_msg *msg;
    int rv, rc;

    if (nng_msg_alloc(&msg, 0) != 0) {
        out_of_memory();
        return CC_ENOMEM;
    }
    if (nng_msg_append(msg, data, len) != 0) {
        nng_msg_free(msg);
        out_of_memory();
        return CC_ENOMEM;
    }
    if ((rv = nng_sendmsg(sock, msg, 0)) != 0) {
        nng_msg_free(msg);
        unreachable(addr, rv);
        return CC_EIO;
    }
    if ((rv = nng_recvmsg(sock, &msg, 0)) != 0) {
        unreachable(addr, rv);
        return CC_EIO;
    }
    rc = decode(nng_msg_body(msg), nng_msg_len(msg), NULL, 0, reply);
    nng_msg_free(msg);
    if (rc == CC_EPROTO)
        fprintf(stderr,
                "contactctl: %s answered something that is not "
                "MessagePack\n",
                addr);
    else if (rc != 0)
        out_of_memory();
    return rc;
}

/* ---- send ------------------------------------------------------------- */

/* An ingest reply counts as success when it has no "error" and an empty
 * (or no) "rejected" array. */
static int
reply_ok(json_t *reply) {
    json_t *rej;

    if (!json_is_object(reply) || json_object_get(reply, "error") != NULL)
        return 0;
    rej = json_object_get(reply, "rejected");
    return rej == NULL || (json_is_array(rej) && json_array_size(rej) == 0);
}

/* Sends one JSON value as one message and prints the reply. Returns 0 or a
 * fatal error; *failed is set when the reply reports a problem. */
static int
send_value(nng_socket sock, const char *addr, msgpack_sbuffer *sb,
           json_t *value, int *failed) {
    msgpack_packer pk;
    json_t *reply;
    int rc;

    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (pack_json(&pk, value) != 0) {
        out_of_memory();
        return CC_ENOMEM;
    }
    rc = request(sock, addr, sb->data, sb->size, &reply);
    if (rc != 0)
        return rc;
    if (!reply_ok(reply))
        *failed = 1;
    rc = print_json(reply, JSON_COMPACT);
    json_decref(reply);
    return rc;
}

static size_t
reader_get(void *buf, size_t len, void *data) {
    struct reader *r = data;
    int c;

    (void)len; /* jansson always asks for at least one byte */
    c = getc(r->fp);
    if (c == EOF)
        return ferror(r->fp) ? (size_t)-1 : 0;
    if (c == '\n')
        r->line++;
    *(unsigned char *)buf = (unsigned char)c;
    return 1;
}

/* Skips the white space before the next value. Returns 1 when a value
 * follows, 0 at the end of the input, CC_EIO on a read error. */
static int
reader_skip_space(struct reader *r) {
    int c;

    while ((c = getc(r->fp)) != EOF) {
        if (c == '\n')
            r->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            return ungetc(c, r->fp) == EOF ? CC_EIO : 1;
    }
    return ferror(r->fp) ? CC_EIO : 0;
}

/* Sends every JSON value of a stream, one message each, stopping at the
 * first one that does not parse. */
static int
send_stream(nng_socket sock, const char *addr, msgpack_sbuffer *sb, FILE *fp,
            const char *name, int *failed) {
    struct reader r = {fp, 1};
    json_error_t err;
    unsigned long start;
    json_t *value;
    int rc;

    for (;;) {
        rc = reader_skip_space(&r);
        if (rc == 0)
            return 0;
        if (rc < 0)
            break;
        start = r.line;
        value = json_load_callback(
            reader_get, &r, JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err);
        if (value == NULL) {
            if (ferror(fp))
                break;
            fprintf(stderr, "contactctl: line %lu: %s\n",
                    start + (unsigned long)err.line - 1, err.text);
            return CC_EPROTO;
        }
        rc = send_value(sock, addr, sb, value, failed);
        json_decref(value);
        if (rc != 0)
            return rc;
    }
    fprintf(stderr, "contactctl: cannot read %s: %s\n", name, strerror(errno));
    return CC_EIO;
}

static int
cmd_send(const struct cc_config *cfg, const struct options *o, char **args,
         int nargs) {
    nng_duration timeout =
        (nng_duration)(o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    json_t **values = NULL;
    msgpack_sbuffer sb;
    json_error_t err;
    nng_socket sock;
    FILE *fp = stdin;
    const char *name = "standard input";
    int i, rc = 0, failed = 0, parsed = 0;

    /* Arguments are all checked before anything is sent. */
    if (nargs > 0) {
        values = calloc((size_t)nargs, sizeof(*values));
        if (values == NULL) {
            out_of_memory();
            return EXIT_FAIL;
        }
        for (parsed = 0; parsed < nargs; parsed++) {
            values[parsed] = json_loads(args[parsed], JSON_ALLOW_NUL, &err);
            if (values[parsed] == NULL) {
                fprintf(stderr, "contactctl: argument %d: %s\n", parsed + 1,
                        err.text);
                rc = CC_EPROTO;
                goto out;
            }
        }
    } else if (o->file != NULL && strcmp(o->file, "-") != 0) {
        name = o->file;
        fp = fopen(o->file, "r");
        if (fp == NULL) {
            fprintf(stderr, "contactctl: cannot open %s: %s\n", o->file,
                    strerror(errno));
            return EXIT_FAIL;
        }
    }

    msgpack_sbuffer_init(&sb);
    rc = open_dial(&sock, SOCK_REQ, cfg->ingest_ack, "", timeout);
    if (rc == 0) {
        if (nargs > 0) {
            for (i = 0; i < nargs && rc == 0; i++)
                rc = send_value(sock, cfg->ingest_ack, &sb, values[i], &failed);
        } else {
            rc = send_stream(sock, cfg->ingest_ack, &sb, fp, name, &failed);
        }
        nng_close(sock);
    }
    msgpack_sbuffer_destroy(&sb);
    if (fp != stdin)
        fclose(fp);
out:
    for (i = 0; i < parsed; i++)
        json_decref(values[i]);
    free(values);
    return rc != 0 || failed ? EXIT_FAIL : EXIT_OK;
}

/* ---- queries ---------------------------------------------------------- */

/* Sends one query and prints the reply as indented JSON. */
static int
query_print(const struct cc_config *cfg, const struct options *o,
            const char *query, size_t len) {
    nng_duration timeout =
        (nng_duration)(o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    json_t *reply = NULL;
    nng_socket sock;
    int rc;

    if (open_dial(&sock, SOCK_REQ, cfg->query, "", timeout) != 0)
        return EXIT_FAIL;
    rc = request(sock, cfg->query, query, len, &reply);
    nng_close(sock);
    if (rc != 0)
        return EXIT_FAIL;
    rc = print_json(reply, JSON_INDENT(2));
    if (rc == 0 &&
        (!json_is_object(reply) || json_object_get(reply, "error") != NULL))
        rc = CC_EPROTO;
    json_decref(reply);
    return rc != 0 ? EXIT_FAIL : EXIT_OK;
}

static int
cmd_stats(const struct cc_config *cfg, const struct options *o) {
    /* {"q": "stats"} */
    static const char query[] = "\x81\xa1q\xa5stats";
    return query_print(cfg, o, query, sizeof(query) - 1);
}

/* The integer at obj.key, or -1. */
static json_int_t
json_int_at(json_t *obj, const char *key) {
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* {"q":"snapshot"}, then stats until the snapshot is written or failed:
 * prints {"snapshot": SEQ, "ms": MS} or the reason. */
static int
cmd_snapshot(const struct cc_config *cfg, const struct options *o) {
    static const char start[] = "\x81\xa1q\xa8snapshot";
    static const char stats[] = "\x81\xa1q\xa5stats";
    nng_duration timeout =
        (nng_duration)(o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS);
    json_t *reply = NULL, *snap;
    json_int_t seq, failures, last;
    nng_socket sock;
    int rc;

    if (open_dial(&sock, SOCK_REQ, cfg->query, "", timeout) != 0)
        return EXIT_FAIL;
    rc = request(sock, cfg->query, stats, sizeof(stats) - 1, &reply);
    failures = rc == 0
                   ? json_int_at(json_object_get(reply, "snapshot"), "failures")
                   : -1;
    json_decref(reply);
    reply = NULL;
    if (rc == 0)
        rc = request(sock, cfg->query, start, sizeof(start) - 1, &reply);
    seq = rc == 0 ? json_int_at(reply, "seq") : -1;
    if (rc == 0 && seq < 0) {
        print_json(reply, 0);
        rc = CC_EPROTO;
    }
    json_decref(reply);
    while (rc == 0) {
        nng_msleep(50);
        reply = NULL;
        rc = request(sock, cfg->query, stats, sizeof(stats) - 1, &reply);
        if (rc != 0)
            break;
        snap = json_object_get(reply, "snapshot");
        last = json_int_at(snap, "last_seq");
        if (last >= seq) {
            printf("{\"snapshot\": %lld, \"ms\": %lld}\n", (long long)seq,
                   (long long)json_int_at(snap, "last_ms"));
            json_decref(reply);
            break;
        }
        if (json_int_at(snap, "failures") > failures &&
            !json_is_true(json_object_get(snap, "running"))) {
            json_t *e = json_object_get(snap, "last_error");
            fprintf(stderr, "contactctl: snapshot failed: %s\n",
                    json_is_string(e) ? json_string_value(e) : "?");
            rc = CC_EIO;
        }
        json_decref(reply);
    }
    nng_close(sock);
    return rc != 0 ? EXIT_FAIL : EXIT_OK;
}

/* Starts a query map of n keys, "q" first, in sb. */
static void
query_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t n,
            const char *q) {
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, n);
    cc_pack_str(pk, "q");
    cc_pack_str(pk, q);
}

/* Sends the query packed in sb, prints the reply, frees sb. */
static int
query_send(const struct cc_config *cfg, const struct options *o,
           msgpack_sbuffer *sb) {
    int rc;

    if (sb->data == NULL) {
        out_of_memory();
        return EXIT_FAIL;
    }
    rc = query_print(cfg, o, sb->data, sb->size);
    msgpack_sbuffer_destroy(sb);
    return rc;
}

/* {"q":"conversation","customer":{KIND:VALUE}} or {"q":..., "id":VALUE} */
static int
cmd_conversation(const struct cc_config *cfg, const struct options *o) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    query_begin(&sb, &pk, 2, "conversation");
    if (strcmp(o->ident_kind, "id") == 0) {
        cc_pack_str(&pk, "id");
    } else {
        cc_pack_str(&pk, "customer");
        msgpack_pack_map(&pk, 1);
        cc_pack_str(&pk, o->ident_kind);
    }
    cc_pack_str(&pk, o->ident_value);
    return query_send(cfg, o, &sb);
}

/* {"q":"sla","conversation":ID} */
static int
cmd_sla(const struct cc_config *cfg, const struct options *o) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    query_begin(&sb, &pk, 2, "sla");
    cc_pack_str(&pk, "conversation");
    cc_pack_str(&pk, o->ident_value);
    return query_send(cfg, o, &sb);
}

/* {"q":"at_risk","queue":Q,"limit":N} */
static int
cmd_at_risk(const struct cc_config *cfg, const struct options *o) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    query_begin(&sb, &pk, 2 + (o->queue != NULL), "at_risk");
    cc_pack_str(&pk, "limit");
    msgpack_pack_uint64(&pk, o->limit ? o->limit : 10);
    if (o->queue != NULL) {
        cc_pack_str(&pk, "queue");
        cc_pack_str(&pk, o->queue);
    }
    return query_send(cfg, o, &sb);
}

/* {"q":"queue","queue":Q} or {"q":"queue","channel":C} */
static int
cmd_queue(const struct cc_config *cfg, const struct options *o) {
    msgpack_sbuffer sb;
    msgpack_packer pk;

    query_begin(&sb, &pk, 2 + (o->limit != 0), "queue");
    cc_pack_str(&pk, o->queue != NULL ? "queue" : "channel");
    cc_pack_str(&pk, o->queue != NULL ? o->queue : o->channel);
    if (o->limit != 0) {
        cc_pack_str(&pk, "limit");
        msgpack_pack_uint64(&pk, o->limit);
    }
    return query_send(cfg, o, &sb);
}

/* ---- tail ------------------------------------------------------------- */

/* Prints one alert ("topic\0<map>") or callback trigger (a map). Returns 1
 * when printed, 0 when the message was malformed (reported and skipped), or
 * an error. */
static int
print_message(nng_msg *msg, int alerts, const char *addr, long long after) {
    const char *body = nng_msg_body(msg), *nul = NULL;
    size_t len = nng_msg_len(msg);
    json_t *j;
    int rc;

    if (alerts) {
        nul = memchr(body, '\0', len);
        if (nul == NULL) {
            fprintf(stderr,
                    "contactctl: skipped a message from %s without a "
                    "topic\n",
                    addr);
            return 0;
        }
        rc = decode(nul + 1, len - (size_t)(nul + 1 - body), body,
                    (size_t)(nul - body), &j);
    } else {
        rc = decode(body, len, NULL, 0, &j);
    }
    if (rc == CC_EPROTO) {
        fprintf(stderr, "contactctl: skipped a malformed message from %s\n",
                addr);
        return 0;
    }
    if (rc != 0) {
        out_of_memory();
        return rc;
    }
    if (after >= 0 &&
        json_integer_value(json_object_get(j, "seq")) <= (json_int_t)after) {
        json_decref(j); /* printed already, from the log */
        return 0;
    }
    rc = print_json(j, JSON_COMPACT);
    json_decref(j);
    return rc != 0 ? rc : 1;
}

/* tail alerts --since: prints the logged alerts after *since whose topic
 * starts with prefix, page by page ({"q":"alerts","since":N}), and moves
 * *since to the last seq read. */
static int
catch_up(const struct cc_config *cfg, const char *prefix, nng_duration timeout,
         long long *since, unsigned long *seen, unsigned long count) {
    size_t pn = strlen(prefix);
    bool more = true;
    nng_socket sock;
    int rc = 0;

    if (open_dial(&sock, SOCK_REQ, cfg->query, "", timeout) != 0)
        return CC_EIO;
    while (rc == 0 && more && (count == 0 || *seen < count)) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
        msgpack_object r = {0}, list = {0};
        nng_msg *msg;
        uint32_t i, k;
        int rv;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        cc_pack_str(&pk, "q");
        cc_pack_str(&pk, "alerts");
        cc_pack_str(&pk, "since");
        msgpack_pack_uint64(&pk, (uint64_t)*since);
        rv = nng_msg_alloc(&msg, 0);
        if (rv == 0)
            rv = nng_msg_append(msg, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        if (rv == 0 && (rv = nng_sendmsg(sock, msg, 0)) != 0)
            nng_msg_free(msg);
        if (rv == 0)
            rv = nng_recvmsg(sock, &msg, 0);
        if (rv != 0) {
            unreachable(cfg->query, rv);
            rc = CC_EIO;
            break;
        }
        msgpack_unpacked_init(&u);
        rc = CC_EPROTO;
        if (msgpack_unpack_next(&u, nng_msg_body(msg), nng_msg_len(msg),
                                NULL) == MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_MAP)
            rc = 0;
        r = u.data;
        more = false;
        for (k = 0; rc == 0 && k < r.via.map.size; k++) {
            const msgpack_object_kv *kv = &r.via.map.ptr[k];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            if (kv->key.via.str.size == 6 &&
                memcmp(kv->key.via.str.ptr, "alerts", 6) == 0)
                list = kv->val;
            else if (kv->key.via.str.size == 4 &&
                     memcmp(kv->key.via.str.ptr, "more", 4) == 0)
                more = kv->val.type == MSGPACK_OBJECT_BOOLEAN &&
                       kv->val.via.boolean;
            else if (kv->key.via.str.size == 5 &&
                     memcmp(kv->key.via.str.ptr, "error", 5) == 0)
                rc = CC_EPROTO;
        }
        if (rc == 0 && list.type != MSGPACK_OBJECT_ARRAY)
            rc = CC_EPROTO;
        for (i = 0; rc == 0 && i < list.via.array.size &&
                    (count == 0 || *seen < count);
             i++) {
            const msgpack_object *e = &list.via.array.ptr[i];
            const msgpack_object *topic = NULL, *alert = NULL;
            json_t *j;
            if (e->type != MSGPACK_OBJECT_MAP)
                continue;
            for (k = 0; k < e->via.map.size; k++) {
                const msgpack_object_kv *kv = &e->via.map.ptr[k];
                if (kv->key.type != MSGPACK_OBJECT_STR)
                    continue;
                if (kv->key.via.str.size == 5 &&
                    memcmp(kv->key.via.str.ptr, "topic", 5) == 0 &&
                    kv->val.type == MSGPACK_OBJECT_STR)
                    topic = &kv->val;
                else if (kv->key.via.str.size == 5 &&
                         memcmp(kv->key.via.str.ptr, "alert", 5) == 0 &&
                         kv->val.type == MSGPACK_OBJECT_MAP)
                    alert = &kv->val;
            }
            if (topic == NULL || alert == NULL)
                continue;
            rc = alert_json(topic->via.str.ptr, topic->via.str.size,
                            &alert->via.map, &j);
            if (rc != 0)
                break;
            *since = (long long)json_integer_value(json_object_get(j, "seq"));
            if (topic->via.str.size >= pn &&
                memcmp(topic->via.str.ptr, prefix, pn) == 0) {
                rc = print_json(j, JSON_COMPACT);
                (*seen)++;
            }
            json_decref(j);
        }
        if (rc == CC_EPROTO)
            fprintf(stderr,
                    "contactctl: %s did not answer the alerts query (is "
                    "contactd older than this contactctl?)\n",
                    cfg->query);
        msgpack_unpacked_destroy(&u);
        nng_msg_free(msg);
    }
    nng_close(sock);
    return rc;
}

static int
cmd_tail(const struct cc_config *cfg, const struct options *o, int alerts,
         const char *prefix) {
    const char *addr = alerts ? cfg->alerts : cfg->callbacks;
    nng_duration timeout =
        o->timeout_ms > 0 ? (nng_duration)o->timeout_ms : NNG_DURATION_INFINITE;
    unsigned long seen = 0;
    nng_socket sock;
    nng_msg *msg;
    int rv, rc = 0;

    long long after = alerts ? o->since : -1;

    if (open_dial(&sock, alerts ? SOCK_SUB : SOCK_PULL, addr, prefix,
                  timeout) != 0)
        return EXIT_FAIL;
    if (after >= 0) {
        /* Subscribed first, so that nothing published meanwhile falls
         * between the log and the live alerts; those seen in both are
         * printed once. */
        nng_msleep(100);
        rc = catch_up(cfg, prefix,
                      timeout == NNG_DURATION_INFINITE ? DEFAULT_TIMEOUT_MS
                                                       : timeout,
                      &after, &seen, o->count);
    }
    while (rc == 0 && (o->count == 0 || seen < o->count)) {
        rv = nng_recvmsg(sock, &msg, 0);
        if (rv != 0) {
            unreachable(addr, rv);
            rc = CC_EIO;
            break;
        }
        rc = print_message(msg, alerts, addr, after);
        nng_msg_free(msg);
        if (rc > 0) {
            seen++;
            rc = 0;
        }
    }
    nng_close(sock);
    return rc != 0 ? EXIT_FAIL : EXIT_OK;
}

/* ---- main ------------------------------------------------------------- */

static int
usage_error(const char *what, const char *arg) {
    if (what != NULL)
        fprintf(stderr, "contactctl: %s%s%s\n", what, arg ? ": " : "",
                arg ? arg : "");
    usage(stderr);
    return EXIT_USAGE;
}

int
main(int argc, char **argv) {
    struct cc_config cfg;
    struct options o;
    char err[512];
    const char *cmd;

    if (parse_args(argc, argv, &o) != 0)
        return usage_error(NULL, NULL);
    if (o.help) {
        usage(stdout);
        return EXIT_OK;
    }
    if (o.version) {
        printf("contactctl %s\n", CC_VERSION);
        return EXIT_OK;
    }
    if (o.npos == 0)
        return usage_error("no command given", NULL);
    cmd = argv[0];

    if (strcmp(cmd, "send") != 0 && strcmp(cmd, "tail") != 0 &&
        strcmp(cmd, "stats") != 0 && strcmp(cmd, "conversation") != 0 &&
        strcmp(cmd, "sla") != 0 && strcmp(cmd, "at-risk") != 0 &&
        strcmp(cmd, "queue") != 0 && strcmp(cmd, "snapshot") != 0)
        return usage_error("unknown command", cmd);
    if (o.limit != 0 && strcmp(cmd, "at-risk") != 0 &&
        strcmp(cmd, "queue") != 0)
        return usage_error("--limit is an option of at-risk and queue", NULL);
    if (strcmp(cmd, "queue") == 0 &&
        ((o.queue == NULL) == (o.channel == NULL) || o.npos != 1))
        return usage_error("queue takes --queue Q or --channel C", NULL);
    if (o.channel != NULL && strcmp(cmd, "queue") != 0)
        return usage_error("--channel is an option of queue", NULL);
    if (o.channel != NULL && o.limit != 0)
        return usage_error("--limit goes with queue --queue, not --channel",
                           NULL);
    if (strcmp(cmd, "sla") == 0 &&
        (o.ident_kind == NULL || strcmp(o.ident_kind, "id") != 0 ||
         o.npos != 1))
        return usage_error("sla takes --id cv-N", NULL);
    if (o.ident_kind != NULL && strcmp(cmd, "conversation") != 0 &&
        strcmp(cmd, "sla") != 0)
        return usage_error("identifier options belong to conversation", NULL);
    if (o.queue != NULL && strcmp(cmd, "at-risk") != 0 &&
        strcmp(cmd, "queue") != 0)
        return usage_error("--queue is an option of at-risk and queue", NULL);
    if (strcmp(cmd, "at-risk") == 0 && o.npos != 1)
        return usage_error("at-risk takes no arguments, only --queue and "
                           "--limit",
                           NULL);
    if (strcmp(cmd, "conversation") == 0 &&
        (o.ident_kind == NULL || o.npos != 1))
        return usage_error("conversation takes one of --email, --phone, "
                           "--chat, --social, --crm or --id",
                           NULL);
    if (o.file != NULL && strcmp(cmd, "send") != 0)
        return usage_error("--file is an option of send", NULL);
    if (o.file != NULL && o.npos > 1)
        return usage_error("send takes JSON arguments or --file, not both",
                           NULL);
    if (o.count != 0 && strcmp(cmd, "tail") != 0)
        return usage_error("--count is an option of tail", NULL);
    if (o.since >= 0 && (strcmp(cmd, "tail") != 0 || o.npos < 2 ||
                         strcmp(argv[1], "alerts") != 0))
        return usage_error("--since is an option of tail alerts", NULL);
    if ((strcmp(cmd, "stats") == 0 || strcmp(cmd, "snapshot") == 0) &&
        o.npos != 1)
        return usage_error("stats and snapshot take no arguments", NULL);
    if (strcmp(cmd, "tail") == 0) {
        if (o.npos < 2)
            return usage_error("tail needs 'alerts' or 'callbacks'", NULL);
        if (strcmp(argv[1], "alerts") == 0) {
            if (o.npos > 3)
                return usage_error("tail alerts takes one topic prefix", NULL);
        } else if (strcmp(argv[1], "callbacks") == 0) {
            if (o.npos > 2)
                return usage_error("tail callbacks takes no arguments", NULL);
        } else {
            return usage_error("unknown tail source", argv[1]);
        }
    }

    cc_config_defaults(&cfg);
    if (o.config_path != NULL &&
        cc_config_load(&cfg, o.config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "contactctl: %s\n", err);
        return EXIT_FAIL;
    }

    if (strcmp(cmd, "send") == 0)
        return cmd_send(&cfg, &o, argv + 1, o.npos - 1);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(&cfg, &o);
    if (strcmp(cmd, "snapshot") == 0)
        return cmd_snapshot(&cfg, &o);
    if (strcmp(cmd, "conversation") == 0)
        return cmd_conversation(&cfg, &o);
    if (strcmp(cmd, "sla") == 0)
        return cmd_sla(&cfg, &o);
    if (strcmp(cmd, "at-risk") == 0)
        return cmd_at_risk(&cfg, &o);
    if (strcmp(cmd, "queue") == 0)
        return cmd_queue(&cfg, &o);
    if (strcmp(argv[1], "alerts") == 0)
        return cmd_tail(&cfg, &o, 1, o.npos == 3 ? argv[2] : "");
    return cmd_tail(&cfg, &o, 0, NULL);
}
