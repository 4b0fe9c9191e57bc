/*
 * Decoding and validating protocol v1 events. See event.h and
 * docs/protocol.md, which lists every reason this file can give.
 */
#include "event.h"

#include <string.h>

#define TYPE_NAME(s)                                                           \
    { s, sizeof(s) - 1 }
static const struct {
    const char *s;
    size_t n;
} type_names[CC_EV__COUNT] = {
    TYPE_NAME("contact.open"),
    TYPE_NAME("message.in"),
    TYPE_NAME("message.out"),
    TYPE_NAME("queue.join"),
    TYPE_NAME("queue.leave"),
    TYPE_NAME("agent.answer"),
    TYPE_NAME("hold.start"),
    TYPE_NAME("hold.end"),
    TYPE_NAME("transfer"),
    TYPE_NAME("contact.close"),
    TYPE_NAME("conversation.resolve"),
    TYPE_NAME("agent.status"),
    TYPE_NAME("identity.link"),
    TYPE_NAME("identity.unlink"),
    TYPE_NAME("feedback"),
    TYPE_NAME("callback.accepted"),
    TYPE_NAME("callback.declined"),
    TYPE_NAME("callback.completed"),
    TYPE_NAME("callback.failed"),
};

const char *
cc_event_type_name(enum cc_event_type t) {
    return (unsigned)t < CC_EV__COUNT ? type_names[t].s : "unknown";
}

static const char *const reason_names[CC_R__COUNT] = {
    "not_a_map",    "key_not_string", "missing_key",   "wrong_type",
    "out_of_range", "too_long",       "empty",         "unknown_channel",
    "unknown_type", "bad_value",      "invalid_state", "limit"};

const char *
cc_reason_name(enum cc_reason r) {
    return (unsigned)r < CC_R__COUNT ? reason_names[r] : "unknown";
}

size_t
cc_reject_format(const struct cc_reject *r, char *buf, size_t n) {
    const char *d = r->detail ? r->detail : "";
    int len;

    switch (r->code) {
    case CC_R_NOT_MAP:
        len = snprintf(buf, n, "event is not a map");
        break;
    case CC_R_KEY_NOT_STRING:
        len = snprintf(buf, n, "map keys must be strings");
        break;
    case CC_R_MISSING:
        len = snprintf(buf, n, "missing required key '%s'%s%s", r->key,
                       *d ? " " : "", d);
        break;
    case CC_R_WRONG_TYPE:
        len = snprintf(buf, n, "key '%s' must be %s", r->key, d);
        break;
    case CC_R_OUT_OF_RANGE:
        len = snprintf(buf, n, "key '%s' out of range: %s", r->key, d);
        break;
    case CC_R_TOO_LONG:
        len = snprintf(buf, n, "key '%s' too long: %s", r->key, d);
        break;
    case CC_R_EMPTY:
        len = snprintf(buf, n, "key '%s' must not be empty", r->key);
        break;
    case CC_R_UNKNOWN_CHANNEL:
        len = snprintf(buf, n,
                       "unknown channel (not built in nor "
                       "configured in [channels])");
        break;
    case CC_R_UNKNOWN_TYPE:
        len = snprintf(buf, n, "unknown event type");
        break;
    case CC_R_BAD_VALUE:
        len = snprintf(buf, n, "key '%s' has a bad value: %s", r->key, d);
        break;
    case CC_R_STATE:
        len = snprintf(buf, n, "%s", d);
        break;
    case CC_R_LIMIT:
        len = snprintf(buf, n, "limit reached: %s", d);
        break;
    default:
        len = snprintf(buf, n, "rejected");
        break;
    }
    if (len < 0)
        return 0;
    return (size_t)len < n ? (size_t)len : (n ? n - 1 : 0);
}

void
cc_channels_init(struct cc_channels *c) {
    static const char *const builtin[] = {"phone", "chat", "email", "social"};
    size_t i;
    memset(c, 0, sizeof(*c));
    for (i = 0; i < CC_ARRAY_SIZE(builtin); i++) {
        c->len[c->n] = (uint8_t)strlen(builtin[i]);
        strcpy(c->names[c->n++], builtin[i]);
    }
}

int
cc_channels_find(const struct cc_channels *c, struct cc_str name) {
    uint32_t i;
    if (name.n >= CC_CHANNEL_NAME_MAX)
        return -1;
    /* A name with a NUL in it ("sms\0") matches no channel. */
    for (i = 0; i < c->n; i++) {
        if (c->len[i] == name.n && name.n != 0 &&
            cc_bytes_eq(c->names[i], name.p, name.n))
            return (int)i;
    }
    return -1;
}

bool
cc_label_ok(const char *s, size_t n, size_t max) {
    size_t i;

    if (n == 0 || n >= max)
        return false;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int
cc_channels_add(struct cc_channels *c, const char *name) {
    size_t n = strlen(name);
    struct cc_str s = {name, (uint32_t)n};

    if (!cc_label_ok(name, n, CC_CHANNEL_NAME_MAX))
        return CC_EINVAL;
    if (cc_channels_find(c, s) >= 0)
        return CC_EEXIST;
    if (c->n >= CC_MAX_CHANNELS)
        return CC_ELIMIT;
    c->len[c->n] = (uint8_t)n;
    memcpy(c->names[c->n++], name, n + 1);
    return 0;
}

/* Checks that the whole message is one well-formed value; on failure
 * points *err at the reason. */
static int
msg_validate(const void *buf, size_t len, const char **err) {
    struct cc_mp probe;

    cc_mp_init(&probe, buf, len);
    if (cc_mp_skip(&probe) != 0) {
        *err = "malformed MessagePack: truncated, a declared length exceeds "
               "the message, or nested deeper than 32";
        return CC_EPROTO;
    }
    if (cc_mp_left(&probe) != 0) {
        *err = "malformed MessagePack: trailing bytes after the message";
        return CC_EPROTO;
    }
    return 0;
}

int
cc_msg_open(struct cc_msg_iter *it, const void *buf, size_t len,
            const char **err) {
    uint8_t b;
    bool map;

    it->count = it->index = 0;
    it->batch = it->lazy = false;
    it->error = NULL;
    cc_mp_init(&it->mp, buf, len);
    if (len == 0) {
        *err = "empty message";
        return CC_EPROTO;
    }
    /* fixmap, map 16, map 32; fixarray, array 16, array 32. */
    b = *(const uint8_t *)buf;
    map = (b & 0xf0) == 0x80 || b == 0xde || b == 0xdf;
    if (!map && (b & 0xf0) != 0x90 && b != 0xdc && b != 0xdd) {
        *err = "not MessagePack: expected an event map or an array of them";
        return CC_EPROTO;
    }
    if (map) {
        /* One event: decoding it reads every byte through checked readers,
         * so the separate validation pass runs only if decoding fails or
         * leaves bytes over (see cc_msg_next). */
        it->count = 1;
        it->lazy = true;
        return 0;
    }
    /* A batch is validated first, whole, so that a malformed tail cannot
     * leave half of it applied. */
    if (msg_validate(buf, len, err) != 0)
        return CC_EPROTO;
    if (cc_mp_read_array(&it->mp, &it->count) != 0) {
        *err = "malformed MessagePack";
        return CC_EPROTO;
    }
    it->batch = true;
    return 0;
}

#define REJECT(code_, key_, detail_)                                           \
    do {                                                                       \
        rej->code = (code_);                                                   \
        rej->key = (key_);                                                     \
        rej->detail = (detail_);                                               \
        return CC_EINVAL;                                                      \
    } while (0)

/* Why get_str() refused a value: not a string (read false), or a string of
 * n bytes, empty or longer than max. */
static __attribute__((noinline, cold)) int
str_reject(bool read, uint32_t n, const char *key, uint32_t max,
           struct cc_reject *rej) {
    if (!read)
        REJECT(CC_R_WRONG_TYPE, key, "a string");
    if (n == 0)
        REJECT(CC_R_EMPTY, key, NULL);
    if (max == CC_ID_MAX)
        REJECT(CC_R_TOO_LONG, key, "at most 256 bytes");
    if (max == CC_CONTACT_MAX)
        REJECT(CC_R_TOO_LONG, key, "at most 512 bytes");
    REJECT(CC_R_TOO_LONG, key, "at most 128 bytes");
}

/* Reads a string value for key; enforces 1..max bytes. In line, as most
 * values are strings: the reasons for a refusal are out of line. */
static inline int
get_str(struct cc_mp *m, const char *key, uint32_t max, struct cc_str *out,
        struct cc_reject *rej) {
    struct cc_str v;

    if (cc_mp_read_str(m, &v) != 0)
        return str_reject(false, 0, key, max, rej);
    if (v.n - 1 >= max)
        return str_reject(true, v.n, key, max, rej);
    *out = v;
    return 0;
}

static int
get_str_array(struct cc_mp *m, const char *key, const uint8_t **raw,
              uint32_t *raw_len, uint32_t *count, struct cc_reject *rej) {
    const uint8_t *start = m->p;
    struct cc_str s;
    uint32_t n, i;

    if (cc_mp_read_array(m, &n) != 0)
        REJECT(CC_R_WRONG_TYPE, key, "an array of strings");
    if (n > CC_TAGS_MAX)
        REJECT(CC_R_TOO_LONG, key, "at most 32 entries");
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(m, &s) != 0)
            REJECT(CC_R_WRONG_TYPE, key, "an array of strings");
        if (s.n == 0)
            REJECT(CC_R_EMPTY, key, NULL);
        if (s.n > CC_NAME_MAX)
            REJECT(CC_R_TOO_LONG, key, "entries of at most 128 bytes");
    }
    *raw = start;
    *raw_len = (uint32_t)(m->p - start);
    *count = n;
    return 0;
}

static const char *const ident_keys[CC_IDENT__COUNT] = {
    "customer.phone", "customer.email", "customer.chat", "customer.social",
    "customer.crm"};

const char *
cc_ident_key(enum cc_ident_kind kind) {
    return ident_keys[kind];
}

static int ident_of(struct cc_str k);

int
cc_ident_kind_of(struct cc_str key) {
    return ident_of(key);
}

/* enum cc_ident_kind of a customer map key, or CC_IDENT__COUNT. */
static int
ident_of(struct cc_str k) {
    switch (k.n) {
    case 3:
        return cc_bytes_eq(k.p, "crm", 3) ? CC_IDENT_CRM : CC_IDENT__COUNT;
    case 4:
        return cc_bytes_eq(k.p, "chat", 4) ? CC_IDENT_CHAT : CC_IDENT__COUNT;
    case 5:
        return cc_bytes_eq(k.p, "phone", 5)   ? CC_IDENT_PHONE
               : cc_bytes_eq(k.p, "email", 5) ? CC_IDENT_EMAIL
                                              : CC_IDENT__COUNT;
    case 6:
        return cc_bytes_eq(k.p, "social", 6) ? CC_IDENT_SOCIAL
                                             : CC_IDENT__COUNT;
    }
    return CC_IDENT__COUNT;
}

static int
get_customer(struct cc_mp *m, struct cc_event *ev, struct cc_reject *rej) {
    const uint8_t *start = m->p;
    struct cc_str k;
    uint32_t n, i;
    int j, rc;

    if (cc_mp_read_map(m, &n) != 0)
        REJECT(CC_R_WRONG_TYPE, "customer", "a map of identifiers");
    if (n > CC_CUSTOMER_KEYS_MAX)
        REJECT(CC_R_TOO_LONG, "customer", "at most 32 keys");
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(m, &k) != 0)
            REJECT(CC_R_KEY_NOT_STRING, "customer", NULL);
        j = ident_of(k);
        if (j == CC_IDENT__COUNT) {
            /* Unknown identifier kinds are ignored, like unknown keys. */
            if (cc_mp_skip(m) != 0)
                REJECT(CC_R_WRONG_TYPE, "customer", "well-formed");
            continue;
        }
        rc = get_str(m, ident_keys[j], CC_IDENT_MAX, &ev->ident[j], rej);
        if (rc)
            return rc;
    }
    ev->customer = start;
    ev->customer_len = (uint32_t)(m->p - start);
    ev->flags |= CC_EVF_CUSTOMER;
    return 0;
}

/* Which keys each type needs beyond id, ts, channel and type. */
enum {
    NEED_CONTACT = 1 << 0,
    NEED_AGENT = 1 << 1,
    NEED_STATE = 1 << 2,
    NEED_CUSTOMER = 1 << 3,
    NEED_SCORE = 1 << 4,
    NEED_QUEUE = 1 << 5
};

static const uint8_t type_needs[CC_EV__COUNT] = {
    [CC_EV_CONTACT_OPEN] = NEED_CONTACT,
    [CC_EV_MESSAGE_IN] = NEED_CONTACT,
    [CC_EV_MESSAGE_OUT] = NEED_CONTACT,
    [CC_EV_QUEUE_JOIN] = NEED_CONTACT | NEED_QUEUE,
    [CC_EV_QUEUE_LEAVE] = NEED_CONTACT,
    [CC_EV_AGENT_ANSWER] = NEED_CONTACT,
    [CC_EV_HOLD_START] = NEED_CONTACT,
    [CC_EV_HOLD_END] = NEED_CONTACT,
    [CC_EV_TRANSFER] = NEED_CONTACT,
    [CC_EV_CONTACT_CLOSE] = NEED_CONTACT,
    [CC_EV_CONVERSATION_RESOLVE] = 0,
    [CC_EV_AGENT_STATUS] = NEED_AGENT | NEED_STATE,
    [CC_EV_IDENTITY_LINK] = NEED_CUSTOMER,
    [CC_EV_IDENTITY_UNLINK] = NEED_CUSTOMER,
    [CC_EV_FEEDBACK] = NEED_SCORE,
    [CC_EV_CALLBACK_ACCEPTED] = NEED_CONTACT,
    [CC_EV_CALLBACK_DECLINED] = NEED_CONTACT,
    [CC_EV_CALLBACK_COMPLETED] = NEED_CONTACT,
    [CC_EV_CALLBACK_FAILED] = NEED_CONTACT,
};

/* The types of each name length, as index + 1 (0 ends a list): a type is
 * found with one or two comparisons instead of a scan of every name. The
 * event tests decode every name, so a type missing here fails them. */
#define T(x) (CC_EV_##x + 1)
static const uint8_t types_by_len[21][4] = {
    [8] = {T(HOLD_END), T(TRANSFER), T(FEEDBACK)},
    [10] = {T(MESSAGE_IN), T(QUEUE_JOIN), T(HOLD_START)},
    [11] = {T(MESSAGE_OUT), T(QUEUE_LEAVE)},
    [12] = {T(CONTACT_OPEN), T(AGENT_ANSWER), T(AGENT_STATUS)},
    [13] = {T(CONTACT_CLOSE), T(IDENTITY_LINK)},
    [15] = {T(IDENTITY_UNLINK), T(CALLBACK_FAILED)},
    [17] = {T(CALLBACK_ACCEPTED), T(CALLBACK_DECLINED)},
    [18] = {T(CALLBACK_COMPLETED)},
    [20] = {T(CONVERSATION_RESOLVE)},
};
#undef T

static int
find_type(struct cc_str s) {
    const uint8_t *t;

    if (s.n >= CC_ARRAY_SIZE(types_by_len))
        return -1;
    for (t = types_by_len[s.n]; *t != 0; t++) {
        if (type_names[*t - 1].n == s.n &&
            cc_bytes_eq(type_names[*t - 1].s, s.p, s.n))
            return *t - 1;
    }
    return -1;
}

enum {
    SEEN_ID = 1 << 0,
    SEEN_TS = 1 << 1,
    SEEN_CHANNEL = 1 << 2,
    SEEN_TYPE = 1 << 3
};

static int
check_semantics(struct cc_event *ev, struct cc_reject *rej) {
    uint8_t need = type_needs[ev->type];

    if ((need & NEED_CONTACT) && ev->contact.n == 0)
        REJECT(CC_R_MISSING, "contact", "for this type");
    if ((need & NEED_QUEUE) && ev->queue.n == 0)
        REJECT(CC_R_MISSING, "queue", "for this type");
    if ((need & NEED_AGENT) && ev->agent.n == 0)
        REJECT(CC_R_MISSING, "agent", "for this type");
    if ((need & NEED_STATE) && ev->state.n == 0)
        REJECT(CC_R_MISSING, "state", "for this type");
    if ((need & NEED_CUSTOMER) && !(ev->flags & CC_EVF_CUSTOMER))
        REJECT(CC_R_MISSING, "customer", "for this type");
    if (need & NEED_SCORE) {
        if (!(ev->flags & CC_EVF_SCORE))
            REJECT(CC_R_MISSING, "score", "for this type");
        if (ev->scale.n == 0)
            REJECT(CC_R_MISSING, "scale", "for this type");
        if (cc_str_eq(ev->scale, "csat")) {
            if (ev->score < 1 || ev->score > 5)
                REJECT(CC_R_OUT_OF_RANGE, "score", "csat is 1-5");
        } else if (cc_str_eq(ev->scale, "nps")) {
            if (ev->score < 0 || ev->score > 10)
                REJECT(CC_R_OUT_OF_RANGE, "score", "nps is 0-10");
        } else {
            REJECT(CC_R_BAD_VALUE, "scale", "expected csat or nps");
        }
    }
    if (ev->state.n != 0 && ev->type == CC_EV_AGENT_STATUS &&
        !cc_str_eq(ev->state, "available") && !cc_str_eq(ev->state, "busy") &&
        !cc_str_eq(ev->state, "away") && !cc_str_eq(ev->state, "offline"))
        REJECT(CC_R_BAD_VALUE, "state",
               "expected available, busy, away or offline");
    if (ev->type == CC_EV_CALLBACK_ACCEPTED && (ev->flags & CC_EVF_BAD_AT))
        REJECT(CC_R_OUT_OF_RANGE, "at",
               "an integer, milliseconds since the Unix epoch, years "
               "1970-9999");
    if (ev->type == CC_EV_CALLBACK_FAILED && (ev->flags & CC_EVF_BAD_REASON))
        REJECT(CC_R_WRONG_TYPE, "reason", "a string of 1-128 bytes");
    if (ev->type == CC_EV_CONTACT_CLOSE && (ev->flags & CC_EVF_BAD_WRAPUP))
        REJECT(CC_R_OUT_OF_RANGE, "wrapup_ms", "an integer, 0 to 86400000");
    if (ev->type != CC_EV_CALLBACK_ACCEPTED)
        ev->at = 0;
    if (ev->type != CC_EV_CONTACT_CLOSE)
        ev->wrapup_ms = 0;
    if (ev->type == CC_EV_CONVERSATION_RESOLVE && ev->contact.n == 0 &&
        !(ev->flags & CC_EVF_CUSTOMER))
        REJECT(CC_R_MISSING, "contact", "or 'customer' for this type");
    return 0;
}

/* The keys of protocol v1, told apart by length and then bytes: events
 * arrive by the million, so this must not be a chain of string
 * comparisons. */
enum ev_key {
    K_UNKNOWN,
    K_ID,
    K_TS,
    K_TYPE,
    K_CHANNEL,
    K_CONTACT,
    K_CUSTOMER,
    K_QUEUE,
    K_AGENT,
    K_PRIORITY,
    K_TAGS,
    K_TOPIC,
    K_SENTIMENT,
    K_REPLY_TO,
    K_SCORE,
    K_SCALE,
    K_STATE,
    K_QUEUES,
    K_AT,
    K_REASON,
    K_WRAPUP
};

#define KEY_IS(k, lit) (memcmp((k).p, lit, sizeof(lit) - 1) == 0)

static enum ev_key
key_of(struct cc_str k) {
    switch (k.n) {
    case 2:
        return KEY_IS(k, "id")   ? K_ID
               : KEY_IS(k, "ts") ? K_TS
               : KEY_IS(k, "at") ? K_AT
                                 : K_UNKNOWN;
    case 4:
        return KEY_IS(k, "type")   ? K_TYPE
               : KEY_IS(k, "tags") ? K_TAGS
                                   : K_UNKNOWN;
    case 5:
        switch (k.p[0]) {
        case 'q':
            return KEY_IS(k, "queue") ? K_QUEUE : K_UNKNOWN;
        case 'a':
            return KEY_IS(k, "agent") ? K_AGENT : K_UNKNOWN;
        case 't':
            return KEY_IS(k, "topic") ? K_TOPIC : K_UNKNOWN;
        case 's':
            return KEY_IS(k, "score")   ? K_SCORE
                   : KEY_IS(k, "scale") ? K_SCALE
                   : KEY_IS(k, "state") ? K_STATE
                                        : K_UNKNOWN;
        }
        return K_UNKNOWN;
    case 6:
        return KEY_IS(k, "queues")   ? K_QUEUES
               : KEY_IS(k, "reason") ? K_REASON
                                     : K_UNKNOWN;
    case 7:
        return KEY_IS(k, "channel")   ? K_CHANNEL
               : KEY_IS(k, "contact") ? K_CONTACT
                                      : K_UNKNOWN;
    case 8:
        return KEY_IS(k, "customer")   ? K_CUSTOMER
               : KEY_IS(k, "priority") ? K_PRIORITY
               : KEY_IS(k, "reply_to") ? K_REPLY_TO
                                       : K_UNKNOWN;
    case 9:
        return KEY_IS(k, "sentiment")   ? K_SENTIMENT
               : KEY_IS(k, "wrapup_ms") ? K_WRAPUP
                                        : K_UNKNOWN;
    }
    return K_UNKNOWN;
}

/* The same as zeroing *ev, which GCC turns into a slow `rep stos` for a
 * struct this size: field stores become a handful of vector stores. */
static inline void
event_clear(struct cc_event *ev) {
    static const struct cc_str none = {NULL, 0};
    int i;

    ev->id = ev->contact = ev->queue = ev->agent = ev->topic = none;
    ev->reply_to = ev->state = ev->scale = ev->reason = none;
    for (i = 0; i < CC_IDENT__COUNT; i++)
        ev->ident[i] = none;
    ev->ts = 0;
    ev->channel = ev->type = ev->flags = 0;
    ev->priority = 0;
    ev->customer = ev->tags = ev->queues = NULL;
    ev->customer_len = ev->tags_len = ev->ntags = 0;
    ev->queues_len = ev->nqueues = 0;
    ev->score = 0;
    ev->sentiment = 0;
    ev->at = 0;
    ev->wrapup_ms = 0;
}

/*
 * Decodes one event with mp at its start. On success mp is left after it;
 * on failure where it is left is unspecified (cc_msg_next() does not need
 * it). The event is read through a local copy of the reader, whose cursor
 * the compiler can then keep in a register between values: the inline
 * readers of mp.h never pass its address on.
 */
static int
decode_event(struct cc_mp *mp, const struct cc_channels *ch,
             struct cc_event *ev, struct cc_reject *rej) {
    struct cc_mp local = *mp, *m = &local;
    struct cc_str k, s;
    uint32_t n, i;
    unsigned seen = 0;
    int64_t iv;
    int rc, idx;

    event_clear(ev);
    if (cc_mp_read_map(m, &n) != 0)
        REJECT(CC_R_NOT_MAP, NULL, NULL);
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(m, &k) != 0)
            REJECT(CC_R_KEY_NOT_STRING, NULL, NULL);
        rc = 0;
        switch (key_of(k)) {
        case K_ID:
            rc = get_str(m, "id", CC_ID_MAX, &ev->id, rej);
            seen |= SEEN_ID;
            break;
        case K_TS:
            if (cc_mp_read_int(m, &iv) != 0)
                REJECT(CC_R_WRONG_TYPE, "ts",
                       "an integer (milliseconds since the Unix epoch)");
            if (iv <= 0 || iv > CC_TS_MAX)
                REJECT(CC_R_OUT_OF_RANGE, "ts",
                       "milliseconds since the Unix epoch, years 1970-9999");
            ev->ts = iv;
            seen |= SEEN_TS;
            break;
        case K_TYPE:
            if (cc_mp_read_str(m, &s) != 0)
                REJECT(CC_R_WRONG_TYPE, "type", "a string");
            idx = find_type(s);
            if (idx < 0)
                REJECT(CC_R_UNKNOWN_TYPE, "type", NULL);
            ev->type = (uint8_t)idx;
            seen |= SEEN_TYPE;
            break;
        case K_CHANNEL:
            if (cc_mp_read_str(m, &s) != 0)
                REJECT(CC_R_WRONG_TYPE, "channel", "a string");
            idx = cc_channels_find(ch, s);
            if (idx < 0)
                REJECT(CC_R_UNKNOWN_CHANNEL, "channel", NULL);
            ev->channel = (uint8_t)idx;
            seen |= SEEN_CHANNEL;
            break;
        case K_CONTACT:
            rc = get_str(m, "contact", CC_CONTACT_MAX, &ev->contact, rej);
            break;
        case K_CUSTOMER:
            rc = get_customer(m, ev, rej);
            break;
        case K_QUEUE:
            rc = get_str(m, "queue", CC_NAME_MAX, &ev->queue, rej);
            break;
        case K_AGENT:
            rc = get_str(m, "agent", CC_NAME_MAX, &ev->agent, rej);
            break;
        case K_PRIORITY:
            if (cc_mp_read_int(m, &iv) != 0)
                REJECT(CC_R_WRONG_TYPE, "priority", "an integer");
            if (iv < 0 || iv > 9)
                REJECT(CC_R_OUT_OF_RANGE, "priority", "0-9");
            ev->priority = (int8_t)iv;
            ev->flags |= CC_EVF_PRIORITY;
            break;
        case K_TAGS:
            rc = get_str_array(m, "tags", &ev->tags, &ev->tags_len, &ev->ntags,
                               rej);
            break;
        case K_TOPIC:
            rc = get_str(m, "topic", CC_NAME_MAX, &ev->topic, rej);
            break;
        case K_SENTIMENT:
            if (cc_mp_read_double(m, &ev->sentiment) != 0)
                REJECT(CC_R_WRONG_TYPE, "sentiment", "a number");
            if (!(ev->sentiment >= -1.0 && ev->sentiment <= 1.0))
                REJECT(CC_R_OUT_OF_RANGE, "sentiment", "-1 to 1");
            ev->flags |= CC_EVF_SENTIMENT;
            break;
        case K_REPLY_TO:
            rc = get_str(m, "reply_to", CC_CONTACT_MAX, &ev->reply_to, rej);
            break;
        case K_SCORE:
            if (cc_mp_read_int(m, &ev->score) != 0)
                REJECT(CC_R_WRONG_TYPE, "score", "an integer");
            ev->flags |= CC_EVF_SCORE;
            break;
        case K_SCALE:
            rc = get_str(m, "scale", CC_NAME_MAX, &ev->scale, rej);
            break;
        case K_STATE:
            rc = get_str(m, "state", CC_NAME_MAX, &ev->state, rej);
            break;
        case K_QUEUES:
            rc = get_str_array(m, "queues", &ev->queues, &ev->queues_len,
                               &ev->nqueues, rej);
            break;
        case K_AT: {
            const uint8_t *at = m->p;
            if (cc_mp_read_int(m, &iv) != 0 || iv <= 0 || iv > CC_TS_MAX) {
                m->p = at;
                if (cc_mp_skip(m) != 0)
                    REJECT(CC_R_WRONG_TYPE, NULL, "well-formed");
                ev->flags |= CC_EVF_BAD_AT;
                break;
            }
            ev->at = iv;
            break;
        }
        case K_REASON: {
            const uint8_t *at = m->p;
            if (cc_mp_read_str(m, &ev->reason) != 0 || ev->reason.n == 0 ||
                ev->reason.n > CC_NAME_MAX) {
                m->p = at;
                if (cc_mp_skip(m) != 0)
                    REJECT(CC_R_WRONG_TYPE, NULL, "well-formed");
                ev->reason = (struct cc_str){NULL, 0};
                ev->flags |= CC_EVF_BAD_REASON;
            }
            break;
        }
        case K_WRAPUP: {
            const uint8_t *at = m->p;
            if (cc_mp_read_int(m, &iv) != 0 || iv < 0 || iv > 86400000) {
                m->p = at;
                if (cc_mp_skip(m) != 0)
                    REJECT(CC_R_WRONG_TYPE, NULL, "well-formed");
                ev->flags |= CC_EVF_BAD_WRAPUP;
                break;
            }
            ev->wrapup_ms = iv;
            break;
        }
        case K_UNKNOWN:
            /* Unknown keys are ignored: producers may be newer than us. */
            if (cc_mp_skip(m) != 0)
                REJECT(CC_R_WRONG_TYPE, NULL, "well-formed");
            break;
        }
        if (rc)
            return rc;
    }
    if (!(seen & SEEN_ID))
        REJECT(CC_R_MISSING, "id", NULL);
    if (!(seen & SEEN_TS))
        REJECT(CC_R_MISSING, "ts", NULL);
    if (!(seen & SEEN_CHANNEL))
        REJECT(CC_R_MISSING, "channel", NULL);
    if (!(seen & SEEN_TYPE))
        REJECT(CC_R_MISSING, "type", NULL);
    mp->p = local.p;
    return check_semantics(ev, rej);
}

int
cc_msg_next(struct cc_msg_iter *it, const struct cc_channels *ch,
            struct cc_event *ev, struct cc_reject *rej) {
    const uint8_t *start;
    int rc;

    if (it->index >= it->count)
        return -1;
    it->index++;
    start = it->mp.p;
    rc = decode_event(&it->mp, ch, ev, rej);
    if (it->lazy) {
        if (rc == 0 && cc_mp_left(&it->mp) == 0)
            return 1;
        /* Tell a bad event from a bad message. */
        if (msg_validate(it->mp.start, (size_t)(it->mp.end - it->mp.start),
                         &it->error) != 0)
            return CC_MSG_MALFORMED;
        return 0;
    }
    if (rc == 0)
        return 1;
    /* The message was validated as a whole, so skipping cannot fail. */
    it->mp.p = start;
    rc = cc_mp_skip(&it->mp);
    CC_ASSERT(rc == 0);
    return 0;
}
