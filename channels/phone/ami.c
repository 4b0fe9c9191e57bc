/*
 * The AMI framing parser and the mapper from AMI events to core events.
 * Pure code: no I/O, no clock (the caller passes the time). See ami.h.
 */
#include "ami.h"

#include "mem.h"

#include <inttypes.h>

/* ---- framing ------------------------------------------------------------ */

enum pmode {
    P_NORMAL,    /* taking lines into the current message */
    P_SKIP_LINE, /* dropping the rest of one line between messages */
    P_SKIP_MSG   /* dropping a bad message up to its blank line */
};

struct cc_ami_parser {
    char *buf;        /* the current message's lines, cap bytes */
    size_t cap;       /* max_message */
    size_t max_line;  /* at most cap */
    size_t used;      /* bytes of the lines kept as fields */
    size_t line;      /* bytes of the current line so far, at buf + used */
    size_t msg_bytes; /* wire bytes of the current message */
    uint32_t nfields;
    enum pmode mode;
    bool line_blank; /* P_SKIP_MSG: the line so far is only blanks */
    bool follows;    /* inside the output of a "Response: Follows" */
    bool out_seen;   /* ... and its first output line was seen */
    bool handed;     /* a message was handed out: clear it first */
    struct cc_adapter_stats *st;
    struct cc_ami_parser_stats stats;
    struct cc_ami_msg msg;
    char greeting[64];
    struct cc_ami_field fields[CC_AMI_MAX_FIELDS];
};

static const char greeting_prefix[] = "Asterisk Call Manager";
static const char end_command[] = "--END COMMAND--";

static char
ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool
cc_ami_is(struct cc_str v, const char *lit) {
    uint32_t i;

    for (i = 0; i < v.n; i++) {
        if (lit[i] == '\0' || ascii_lower(v.p[i]) != ascii_lower(lit[i]))
            return false;
    }
    return lit[i] == '\0';
}

bool
cc_ami_next(const struct cc_ami_msg *m, const char *key, uint32_t *i,
            struct cc_str *out) {
    for (; *i < m->n; (*i)++) {
        if (cc_ami_is(m->f[*i].key, key)) {
            *out = m->f[*i].value;
            (*i)++;
            return true;
        }
    }
    return false;
}

bool
cc_ami_get(const struct cc_ami_msg *m, const char *key, struct cc_str *out) {
    uint32_t i = 0;

    return cc_ami_next(m, key, &i, out);
}

int
cc_ami_parser_new(struct cc_ami_parser **out, size_t max_message,
                  size_t max_line, struct cc_adapter_stats *st) {
    struct cc_ami_parser *p;

    *out = NULL;
    if (max_message < 16 || max_message > UINT32_MAX)
        return CC_EINVAL;
    p = cc_calloc(1, sizeof(*p));
    if (p == NULL)
        return CC_ENOMEM;
    p->buf = cc_malloc(max_message);
    if (p->buf == NULL) {
        cc_free(p, sizeof(*p));
        return CC_ENOMEM;
    }
    p->cap = max_message;
    if (max_line == 0)
        max_line = CC_AMI_MAX_LINE;
    p->max_line = max_line < max_message ? max_line : max_message;
    p->st = st;
    p->line_blank = true;
    *out = p;
    return 0;
}

void
cc_ami_parser_free(struct cc_ami_parser *p) {
    if (p == NULL)
        return;
    cc_free(p->buf, p->cap);
    cc_free(p, sizeof(*p));
}

static void
clear_msg(struct cc_ami_parser *p) {
    p->used = 0;
    p->line = 0;
    p->msg_bytes = 0;
    p->nfields = 0;
    p->follows = false;
    p->out_seen = false;
}

void
cc_ami_parser_reset(struct cc_ami_parser *p) {
    clear_msg(p);
    p->mode = P_NORMAL;
    p->line_blank = true;
    p->handed = false;
    p->greeting[0] = '\0';
}

const struct cc_ami_parser_stats *
cc_ami_parser_stats(const struct cc_ami_parser *p) {
    return &p->stats;
}

const char *
cc_ami_parser_greeting(const struct cc_ami_parser *p) {
    return p->greeting;
}

/* Drops what the current line belongs to: the line alone between
 * messages, else the whole message up to its blank line. line_done says
 * whether the line's end was seen. */
static void
drop(struct cc_ami_parser *p, const char *reason, bool line_done) {
    if (p->st != NULL)
        cc_adapter_reject(p->st, reason);
    if (p->nfields == 0 && !p->follows) {
        p->stats.dropped_lines++;
        p->mode = line_done ? P_NORMAL : P_SKIP_LINE;
    } else {
        p->stats.dropped_messages++;
        p->mode = P_SKIP_MSG;
        /* A line cut short is not blank: it was too long. */
        p->line_blank = line_done;
    }
    clear_msg(p);
}

static bool
is_blank(char c) {
    return c == ' ' || c == '\t';
}

static struct cc_str
trim(const char *s, size_t n) {
    struct cc_str r;

    while (n > 0 && is_blank(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    r.p = s;
    r.n = (uint32_t)n;
    return r;
}

/* Keeps the current line's bytes and one field that points into them. */
static void
add_field(struct cc_ami_parser *p, struct cc_str key, struct cc_str value) {
    if (p->nfields == CC_AMI_MAX_FIELDS) {
        drop(p, CC_AMI_R_FIELDS, true);
        return;
    }
    p->fields[p->nfields].key = key;
    p->fields[p->nfields].value = value;
    p->nfields++;
    p->used += p->line;
    p->line = 0;
}

/* A line of "Key: Value". Returns false (and drops) when it is not one. */
static bool
key_value(struct cc_ami_parser *p, const char *s, size_t n) {
    const char *colon = memchr(s, ':', n);
    struct cc_str key, value;
    uint32_t i;

    if (colon == NULL) {
        drop(p, CC_AMI_R_NO_COLON, true);
        return false;
    }
    key = trim(s, (size_t)(colon - s));
    if (key.n == 0) {
        drop(p, CC_AMI_R_EMPTY_KEY, true);
        return false;
    }
    for (i = 0; i < key.n; i++) {
        unsigned char c = (unsigned char)key.p[i];
        if (c < 0x20 || c == 0x7f) {
            drop(p, CC_AMI_R_CTRL_KEY, true);
            return false;
        }
    }
    value = trim(colon + 1, n - (size_t)(colon + 1 - s));
    add_field(p, key, value);
    return true;
}

/* A line inside the output of "Response: Follows". */
static void
follows_line(struct cc_ami_parser *p, const char *s, size_t n) {
    static const struct cc_str output = {"Output", 6};
    const size_t en = sizeof(end_command) - 1;
    struct cc_str v;

    if (n >= en && memcmp(s + n - en, end_command, en) == 0) {
        /* Output that did not end in a newline shares the marker's line. */
        p->follows = false;
        if (n > en) {
            v.p = s;
            v.n = (uint32_t)(n - en);
            add_field(p, output, v);
        } else {
            p->line = 0;
        }
        return;
    }
    if (!p->out_seen && memchr(s, ':', n) != NULL) {
        struct cc_str k =
            trim(s, (size_t)((const char *)memchr(s, ':', n) - s));
        if (cc_ami_is(k, "Privilege") || cc_ami_is(k, "ActionID")) {
            key_value(p, s, n);
            return;
        }
    }
    p->out_seen = true;
    v.p = s;
    v.n = (uint32_t)n;
    add_field(p, output, v);
}

/* The current line is complete at buf + used. Returns true when it ended a
 * message. */
static bool
end_line(struct cc_ami_parser *p) {
    char *s = p->buf + p->used;
    size_t n = p->line, k;
    bool blank = true;

    while (n > 0 && s[n - 1] == '\r')
        n--;
    for (k = 0; k < n; k++) {
        if (!is_blank(s[k])) {
            blank = false;
            break;
        }
    }
    if (blank) {
        p->line = 0;
        if (p->follows)
            return false; /* a blank line of command output */
        if (p->nfields == 0) {
            /* Before any field: nothing (real captures begin with a line
             * of spaces), not the end of an empty message. */
            p->msg_bytes = 0;
            return false;
        }
        p->msg.f = p->fields;
        p->msg.n = p->nfields;
        p->msg.bytes = (uint32_t)p->msg_bytes;
        p->stats.messages++;
        return true;
    }
    if (memchr(s, '\0', n) != NULL) {
        drop(p, CC_AMI_R_NUL, true);
        return false;
    }
    if (p->follows) {
        follows_line(p, s, n);
        return false;
    }
    if (p->nfields == 0 && memchr(s, ':', n) == NULL &&
        n >= sizeof(greeting_prefix) - 1 &&
        memcmp(s, greeting_prefix, sizeof(greeting_prefix) - 1) == 0) {
        size_t g = n < sizeof(p->greeting) - 1 ? n : sizeof(p->greeting) - 1;
        memcpy(p->greeting, s, g);
        p->greeting[g] = '\0';
        p->stats.greetings++;
        p->line = 0;
        p->msg_bytes = 0;
        return false;
    }
    if (key_value(p, s, n) && p->nfields > 0) {
        const struct cc_ami_field *f = &p->fields[p->nfields - 1];
        if (cc_ami_is(f->key, "Response") && cc_ami_is(f->value, "Follows")) {
            p->follows = true;
            p->out_seen = false;
        }
    }
    return false;
}

size_t
cc_ami_parser_feed(struct cc_ami_parser *p, const char *data, size_t len,
                   const struct cc_ami_msg **msg) {
    size_t i = 0;

    *msg = NULL;
    if (p->handed) {
        p->handed = false;
        clear_msg(p);
    }
    while (i < len) {
        const char *s = data + i;
        const char *nl = memchr(s, '\n', len - i);
        size_t seg = nl != NULL ? (size_t)(nl - s) : len - i;
        size_t take = seg + (nl != NULL);
        size_t k;

        p->stats.bytes += take;
        i += take;
        if (p->mode == P_SKIP_LINE) {
            if (nl != NULL)
                p->mode = P_NORMAL;
            continue;
        }
        if (p->mode == P_SKIP_MSG) {
            for (k = 0; k < seg && p->line_blank; k++) {
                if (!is_blank(s[k]) && s[k] != '\r')
                    p->line_blank = false;
            }
            if (nl != NULL) {
                if (p->line_blank)
                    p->mode = P_NORMAL; /* resynchronised */
                p->line_blank = true;
            }
            continue;
        }
        if (p->line + seg > p->max_line) {
            drop(p, CC_AMI_R_LONG_LINE, nl != NULL);
            continue;
        }
        if (p->msg_bytes + take > p->cap) {
            drop(p, CC_AMI_R_TOO_BIG, nl != NULL);
            continue;
        }
        /* used + line <= msg_bytes <= cap: the line fits. */
        memcpy(p->buf + p->used + p->line, s, seg);
        p->line += seg;
        p->msg_bytes += take;
        if (nl != NULL && end_line(p)) {
            *msg = &p->msg;
            p->handed = true;
            return i;
        }
    }
    return len;
}

/* ---- bounded tables ------------------------------------------------------ */

/*
 * A fixed number of entries with a key of up to KEY_MAX bytes, found by an
 * open-addressing index and kept in order of last use, so that a full
 * table makes room by forgetting its least recently active entry.
 * Entries start with struct ent; stride is the whole entry's size.
 */
#define NONE UINT32_MAX
#define KEY_MAX 128
#define ID_MAX 64 /* Uniqueid, Linkedid: 63 bytes */

struct ent {
    uint64_t hash;
    uint32_t prev, next; /* most recent first; next also links free ones */
    uint8_t klen;
    char key[KEY_MAX];
};

struct tab {
    unsigned char *mem;
    size_t stride;
    uint32_t cap, n;
    uint32_t fresh; /* entries below it were used at some time */
    uint32_t freel; /* entries freed since */
    uint32_t head, tail;
    uint32_t *slot; /* entry index + 1; 0 is empty */
    uint32_t mask;
    uint64_t seed;
};

static struct ent *
tab_ent(const struct tab *t, uint32_t i) {
    return (struct ent *)(void *)(t->mem + (size_t)i * t->stride);
}

static int
tab_init(struct tab *t, uint32_t cap, size_t stride, uint64_t seed) {
    uint32_t slots = 4;

    memset(t, 0, sizeof(*t));
    while (slots < cap * 2u)
        slots <<= 1;
    t->mem = cc_calloc(cap, stride);
    t->slot = cc_calloc(slots, sizeof(uint32_t));
    if (t->mem == NULL || t->slot == NULL) {
        if (t->mem != NULL)
            cc_free(t->mem, (size_t)cap * stride);
        if (t->slot != NULL)
            cc_free(t->slot, (size_t)slots * sizeof(uint32_t));
        return CC_ENOMEM;
    }
    t->stride = stride;
    t->cap = cap;
    t->mask = slots - 1;
    t->freel = t->head = t->tail = NONE;
    t->seed = seed;
    return 0;
}

static void
tab_fini(struct tab *t) {
    cc_free(t->mem, (size_t)t->cap * t->stride);
    cc_free(t->slot, (size_t)(t->mask + 1) * sizeof(uint32_t));
}

static uint32_t
tab_find(const struct tab *t, const char *key, size_t n) {
    uint64_t h;
    uint32_t i;

    if (n == 0 || n > KEY_MAX)
        return NONE;
    h = cc_hash(key, n, t->seed);
    for (i = (uint32_t)h & t->mask; t->slot[i] != 0; i = (i + 1) & t->mask) {
        const struct ent *e = tab_ent(t, t->slot[i] - 1);
        if (e->hash == h && e->klen == n && memcmp(e->key, key, n) == 0)
            return t->slot[i] - 1;
    }
    return NONE;
}

static void
lru_unlink(struct tab *t, uint32_t idx) {
    struct ent *e = tab_ent(t, idx);

    if (e->prev != NONE)
        tab_ent(t, e->prev)->next = e->next;
    else
        t->head = e->next;
    if (e->next != NONE)
        tab_ent(t, e->next)->prev = e->prev;
    else
        t->tail = e->prev;
}

static void
lru_push(struct tab *t, uint32_t idx) {
    struct ent *e = tab_ent(t, idx);

    e->prev = NONE;
    e->next = t->head;
    if (t->head != NONE)
        tab_ent(t, t->head)->prev = idx;
    t->head = idx;
    if (t->tail == NONE)
        t->tail = idx;
}

static void
tab_touch(struct tab *t, uint32_t idx) {
    if (t->head == idx)
        return;
    lru_unlink(t, idx);
    lru_push(t, idx);
}

static void
tab_del(struct tab *t, uint32_t idx) {
    struct ent *e = tab_ent(t, idx);
    uint32_t i = (uint32_t)e->hash & t->mask, j;

    while (t->slot[i] != idx + 1)
        i = (i + 1) & t->mask;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    t->slot[i] = 0;
    for (j = (i + 1) & t->mask; t->slot[j] != 0; j = (j + 1) & t->mask) {
        uint32_t home = (uint32_t)tab_ent(t, t->slot[j] - 1)->hash & t->mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slot[i] = t->slot[j];
            t->slot[j] = 0;
            i = j;
        }
    }
    lru_unlink(t, idx);
    e->next = t->freel;
    t->freel = idx;
    t->n--;
}

/* Adds key (not present, 1 to KEY_MAX bytes); when the table is full,
 * first forgets its least recently used entry (*evicted). Returns the new,
 * zeroed entry's index. */
static uint32_t
tab_add(struct tab *t, const char *key, size_t n, bool *evicted) {
    struct ent *e;
    uint32_t idx, i;

    *evicted = false;
    if (t->n == t->cap) {
        tab_del(t, t->tail);
        *evicted = true;
    }
    if (t->freel != NONE) {
        idx = t->freel;
        t->freel = tab_ent(t, idx)->next;
    } else {
        idx = t->fresh++;
    }
    e = tab_ent(t, idx);
    memset(e, 0, t->stride);
    e->hash = cc_hash(key, n, t->seed);
    e->klen = (uint8_t)n;
    memcpy(e->key, key, n);
    for (i = (uint32_t)e->hash & t->mask; t->slot[i] != 0;
         i = (i + 1) & t->mask)
        ;
    t->slot[i] = idx + 1;
    lru_push(t, idx);
    t->n++;
    return idx;
}

/* ---- the mapper ---------------------------------------------------------- */

enum call_state {
    C_OPEN,      /* the engine holds the contact open, not queued */
    C_QUEUED,    /* waiting in queue[] */
    C_CONNECTED, /* an agent answered */
    C_HELD,      /* connected and on hold */
    C_CLOSED     /* contact.close sent; the caller's channel is still up */
};

enum hold_kind { HOLD_EVENT, HOLD_MOH };

/* One call, by Linkedid (the Uniqueid of its first channel). */
struct call {
    struct ent e;
    uint8_t state;
    uint8_t hold_kind;
    bool leaving; /* QueueCallerLeave seen while queued: answer or not? */
    uint8_t uid_n, chan_n, queue_n, hold_n, phone_n;
    int64_t leave_ts;
    uint64_t leave_due; /* host ms */
    uint32_t gen;       /* the sweep in which it was last seen */
    char uid[ID_MAX];   /* the caller's channel: the one queued */
    char chan[KEY_MAX]; /* its name, for QueueWithdrawCaller */
    char queue[KEY_MAX];
    char hold_uid[ID_MAX]; /* the channel whose hold is running */
    char phone[32];        /* the caller's number, when it is one */
};

/* One queue member, by MemberName. */
struct member {
    struct ent e;
    uint8_t nq;
    int8_t status;   /* AMI device state, -1 while unknown */
    uint16_t paused; /* bit i: paused in queue i */
    bool sent, dirty;
    const char *sent_state;
    uint8_t qn[CC_NEV_MAX_LIST];
    char q[CC_NEV_MAX_LIST][KEY_MAX];
};

struct cc_ami_map {
    char channel[128];
    bool moh_as_hold;
    uint64_t grace_ms, start_ms, seq;
    struct tab calls, members;
    uint32_t pending; /* calls with leaving set */
    uint32_t gen;     /* the current sweep */
    bool sweeping;
    struct cc_ami_map_stats stats;
};

int
cc_ami_map_new(struct cc_ami_map **out, const struct cc_ami_map_config *cfg) {
    struct cc_ami_map *m;
    size_t n;
    int rc;

    *out = NULL;
    if (cfg->channel == NULL)
        return CC_EINVAL;
    n = strlen(cfg->channel);
    if (n == 0 || n >= sizeof(m->channel))
        return CC_EINVAL;
    m = cc_calloc(1, sizeof(*m));
    if (m == NULL)
        return CC_ENOMEM;
    memcpy(m->channel, cfg->channel, n + 1);
    m->moh_as_hold = cfg->moh_as_hold;
    m->grace_ms =
        cfg->leave_grace_ms != 0 ? cfg->leave_grace_ms : CC_AMI_LEAVE_GRACE_MS;
    m->start_ms = cfg->start_ms;
    rc = tab_init(&m->calls,
                  cfg->max_calls != 0 ? cfg->max_calls : CC_AMI_MAX_CALLS,
                  sizeof(struct call), cfg->seed);
    if (rc)
        goto fail_calls;
    rc = tab_init(&m->members,
                  cfg->max_members != 0 ? cfg->max_members : CC_AMI_MAX_MEMBERS,
                  sizeof(struct member), cfg->seed ^ 0x9e3779b97f4a7c15ULL);
    if (rc)
        goto fail_members;
    *out = m;
    return 0;
fail_members:
    tab_fini(&m->calls);
fail_calls:
    cc_free(m, sizeof(*m));
    return rc;
}

void
cc_ami_map_free(struct cc_ami_map *m) {
    if (m == NULL)
        return;
    tab_fini(&m->calls);
    tab_fini(&m->members);
    cc_free(m, sizeof(*m));
}

void
cc_ami_map_stats(const struct cc_ami_map *m, struct cc_ami_map_stats *out) {
    *out = m->stats;
    out->calls = m->calls.n;
    out->members = m->members.n;
    out->pending_leaves = m->pending;
}

static struct call *
call_at(const struct cc_ami_map *m, uint32_t idx) {
    return (struct call *)(void *)tab_ent(&m->calls, idx);
}

static struct member *
member_at(const struct cc_ami_map *m, uint32_t idx) {
    return (struct member *)(void *)tab_ent(&m->members, idx);
}

static struct call *
call_find(struct cc_ami_map *m, struct cc_str key) {
    uint32_t idx = tab_find(&m->calls, key.p, key.n);

    struct call *c;

    if (idx == NONE)
        return NULL;
    tab_touch(&m->calls, idx);
    c = call_at(m, idx);
    c->gen = m->gen; /* alive: a sweep under way keeps it */
    return c;
}

static struct call *
call_new(struct cc_ami_map *m, struct cc_str key) {
    bool evicted;
    uint32_t idx;

    /* An evicted call with a pending leave takes its count with it. */
    if (m->calls.n == m->calls.cap && call_at(m, m->calls.tail)->leaving)
        m->pending--;
    idx = tab_add(&m->calls, key.p, key.n, &evicted);
    if (evicted)
        m->stats.evicted_calls++;
    call_at(m, idx)->gen = m->gen;
    return call_at(m, idx);
}

static void
call_del(struct cc_ami_map *m, struct call *c) {
    if (c->leaving)
        m->pending--;
    tab_del(&m->calls,
            (uint32_t)(((unsigned char *)c - m->calls.mem) / m->calls.stride));
}

/* Copies v into a fixed field when it fits; else leaves it empty. */
static void
keep(char *dst, uint8_t *dn, size_t cap, struct cc_str v) {
    if (v.n == 0 || v.n > cap) {
        *dn = 0;
        return;
    }
    memcpy(dst, v.p, v.n);
    *dn = (uint8_t)v.n;
}

static bool
same(const char *a, uint8_t an, struct cc_str b) {
    return an == b.n && an != 0 && memcmp(a, b.p, an) == 0;
}

static struct cc_str
str_of(const char *p, uint8_t n) {
    struct cc_str s = {p, n};
    return s;
}

static void
set_leaving(struct cc_ami_map *m, struct call *c, bool on) {
    if (c->leaving == on)
        return;
    c->leaving = on;
    if (on)
        m->pending++;
    else
        m->pending--;
}

/* The event's time: its Timestamp field (seconds with a fraction, sent
 * with timestampevents = yes), else the host's clock. */
static int64_t
msg_ts(const struct cc_ami_msg *msg, uint64_t now) {
    struct cc_str v;
    uint64_t sec = 0, ms = 0;
    uint32_t i = 0, digits = 0, frac = 0;

    if (!cc_ami_get(msg, "Timestamp", &v))
        return (int64_t)now;
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++, digits++) {
        if (digits == 12)
            return (int64_t)now;
        sec = sec * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (digits == 0)
        return (int64_t)now;
    if (i < v.n && v.p[i] == '.') {
        for (i++; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
            if (frac < 3) {
                ms = ms * 10 + (uint64_t)(v.p[i] - '0');
                frac++;
            }
        }
    }
    if (i != v.n)
        return (int64_t)now;
    for (; frac < 3; frac++)
        ms *= 10;
    ms += sec * 1000;
    if (ms < 1 || ms > 253402300799999ULL)
        return (int64_t)now;
    return (int64_t)ms;
}

static void
emit(struct cc_ami_map *m, struct cc_evbuf *out, struct cc_nev *ev,
     const char *type, int64_t ts) {
    char id[64];
    int n = snprintf(id, sizeof(id), "ami:%" PRIu64 ":%" PRIu64, m->start_ms,
                     ++m->seq);

    ev->type = type;
    ev->channel = m->channel;
    ev->id.p = id;
    ev->id.n = (uint32_t)n;
    ev->ts = ts;
    cc_evbuf_add(out, ev);
    m->stats.events++;
}

/* An event on call c, with only the contact set. */
static void
emit_call(struct cc_ami_map *m, struct cc_evbuf *out, const struct call *c,
          const char *type, int64_t ts) {
    struct cc_nev ev;

    cc_nev_init(&ev);
    ev.contact = str_of(c->e.key, c->e.klen);
    emit(m, out, &ev, type, ts);
}

/* What a handler saw: the event's time, the host's, and where to put
 * what it makes. */
struct mctx {
    struct cc_ami_map *m;
    const struct cc_ami_msg *msg;
    int64_t ts;
    uint64_t now;
    struct cc_evbuf *out;
    struct cc_adapter_stats *st;
};

/* The call a channel event belongs to: key is its Linkedid, else its
 * Uniqueid; uid its own Uniqueid. Returns 1 when it names none (nothing
 * to do), -1 when one is too long (counted), else 0. */
static int
call_key(const struct mctx *x, struct cc_str *key, struct cc_str *uid) {
    uid->p = NULL;
    uid->n = 0;
    cc_ami_get(x->msg, "Uniqueid", uid);
    if (!cc_ami_get(x->msg, "Linkedid", key) || key->n == 0)
        *key = *uid;
    if (key->n == 0)
        return 1;
    if (key->n >= ID_MAX || uid->n >= ID_MAX) {
        cc_adapter_reject(x->st, CC_AMI_R_LONG_ID);
        return -1;
    }
    return 0;
}

/* The call the message names, as call_key() says, looked up in the table:
 * *c is NULL when the table does not know it. key and uid may be NULL. */
static int
known_call(struct mctx *x, struct call **c, struct cc_str *key,
           struct cc_str *uid) {
    struct cc_str k, u;
    int rc = call_key(x, &k, &u);

    *c = rc == 0 ? call_find(x->m, k) : NULL;
    if (key != NULL)
        *key = k;
    if (uid != NULL)
        *uid = u;
    return rc;
}

/* A field that must fit a name of the protocol (queue, agent). */
static int
name_field(const struct mctx *x, const char *key, struct cc_str *out) {
    out->p = NULL;
    out->n = 0;
    cc_ami_get(x->msg, key, out);
    if (out->n > KEY_MAX) {
        cc_adapter_reject(x->st, CC_AMI_R_LONG_NAME);
        return -1;
    }
    return 0;
}

static void
keep_phone(struct call *c, const struct mctx *x) {
    struct cc_str num;

    if (cc_ami_get(x->msg, "CallerIDNum", &num) &&
        cc_looks_like_phone(num.p, num.n))
        keep(c->phone, &c->phone_n, sizeof(c->phone), num);
}

/* QUEUE_PRIO, the queue's own priority variable, when manager.conf's
 * channelvars sends it: 0-9 (higher is more urgent), or -1. */
static int
queue_prio(const struct cc_ami_msg *msg) {
    static const char name[] = "QUEUE_PRIO=";
    const size_t nn = sizeof(name) - 1;
    struct cc_str v;
    uint32_t i = 0, k;
    long prio = 0;

    while (cc_ami_next(msg, "ChanVariable", &i, &v)) {
        if (v.n <= nn || memcmp(v.p, name, nn) != 0)
            continue;
        for (k = (uint32_t)nn; k < v.n; k++) {
            if (v.p[k] < '0' || v.p[k] > '9')
                return -1;
            if (prio < 10)
                prio = prio * 10 + (v.p[k] - '0');
        }
        return prio > 9 ? 9 : (int)prio;
    }
    return -1;
}

/* Emits the queue.leave of a caller who left without an answer. */
static void
leave_now(struct mctx *x, struct call *c, int64_t ts) {
    set_leaving(x->m, c, false);
    emit_call(x->m, x->out, c, "queue.leave", ts);
    c->state = C_OPEN;
}

static int
on_newchannel(struct mctx *x) {
    struct cc_str key, uid, chan;
    struct cc_nev ev;
    struct call *c;
    int rc = call_key(x, &key, &uid);

    if (rc)
        return rc;
    /* Only the call's first channel opens it: an agent's channel, dialled
     * by the queue, shares the caller's Linkedid. */
    if (uid.n != 0 && !cc_str_eqn(uid, key))
        return 0;
    if (call_find(x->m, key) != NULL)
        return 0;
    c = call_new(x->m, key);
    c->state = C_OPEN;
    keep(c->uid, &c->uid_n, sizeof(c->uid), key);
    if (cc_ami_get(x->msg, "Channel", &chan))
        keep(c->chan, &c->chan_n, sizeof(c->chan), chan);
    keep_phone(c, x);
    cc_nev_init(&ev);
    ev.contact = str_of(c->e.key, c->e.klen);
    ev.ident[CC_IDENT_PHONE] = str_of(c->phone, c->phone_n);
    emit(x->m, x->out, &ev, "contact.open", x->ts);
    return 0;
}

static int
on_join(struct mctx *x) {
    struct cc_str key, uid, chan, queue;
    struct cc_nev ev;
    struct call *c;
    const char *type = "queue.join";
    int rc = call_key(x, &key, &uid);

    if (rc)
        return rc;
    if (name_field(x, "Queue", &queue))
        return -1;
    if (queue.n == 0)
        return 0;
    c = call_find(x->m, key);
    if (c == NULL) {
        /* Started before we connected: the engine opens it implicitly. */
        c = call_new(x->m, key);
        c->state = C_OPEN;
    } else if (c->state == C_QUEUED || c->state == C_CONNECTED ||
               c->state == C_HELD) {
        /* Moved on without an answer (a queue's timeout sending it to
         * another), or put in a queue by its agent: a transfer, not an
         * abandonment. */
        type = "transfer";
    }
    /* The channel in the queue is the caller's, whichever came first. */
    if (uid.n != 0)
        keep(c->uid, &c->uid_n, sizeof(c->uid), uid);
    if (cc_ami_get(x->msg, "Channel", &chan))
        keep(c->chan, &c->chan_n, sizeof(c->chan), chan);
    keep_phone(c, x);
    keep(c->queue, &c->queue_n, sizeof(c->queue), queue);
    set_leaving(x->m, c, false);
    c->state = C_QUEUED;
    c->hold_n = 0;
    cc_nev_init(&ev);
    ev.contact = str_of(c->e.key, c->e.klen);
    ev.queue = queue;
    ev.priority = queue_prio(x->msg);
    ev.ident[CC_IDENT_PHONE] = str_of(c->phone, c->phone_n);
    emit(x->m, x->out, &ev, type, x->ts);
    return 0;
}

/*
 * QueueCallerLeave comes both when a caller gives up or times out and,
 * just before AgentConnect, when a member answers. So it only marks the
 * call: AgentConnect makes it an answer, QueueCallerJoin a transfer,
 * QueueCallerAbandon or the caller's Hangup a queue.leave, and so does the
 * grace passing with none of them (cc_ami_map_flush()). After an
 * AgentConnect or an Abandon it is nothing.
 */
static int
on_leave(struct mctx *x) {
    struct call *c;
    int rc = known_call(x, &c, NULL, NULL);

    if (rc || c == NULL || c->state != C_QUEUED || c->leaving)
        return rc;
    set_leaving(x->m, c, true);
    c->leave_ts = x->ts;
    c->leave_due = x->now + x->m->grace_ms;
    return 0;
}

static int
on_abandon(struct mctx *x) {
    struct call *c;
    int rc = known_call(x, &c, NULL, NULL);

    if (rc || c == NULL || c->state != C_QUEUED)
        return rc;
    leave_now(x, c, x->ts);
    return 0;
}

static int
on_connect(struct mctx *x) {
    struct cc_str key, uid, chan, agent;
    struct cc_nev ev;
    struct call *c;
    const char *type = "agent.answer";
    int rc = call_key(x, &key, &uid);

    if (rc)
        return rc;
    if (name_field(x, "MemberName", &agent))
        return -1;
    if (agent.n == 0 && name_field(x, "Interface", &agent))
        return -1;
    c = call_find(x->m, key);
    if (c == NULL) {
        c = call_new(x->m, key);
        if (uid.n != 0)
            keep(c->uid, &c->uid_n, sizeof(c->uid), uid);
        if (cc_ami_get(x->msg, "Channel", &chan))
            keep(c->chan, &c->chan_n, sizeof(c->chan), chan);
    } else if (c->state == C_CONNECTED || c->state == C_HELD) {
        /* A second member took the call over: the engine refuses a second
         * answer, and takes this as a transfer to that agent. */
        type = "transfer";
    }
    set_leaving(x->m, c, false);
    c->state = C_CONNECTED;
    c->hold_n = 0;
    cc_nev_init(&ev);
    ev.contact = str_of(c->e.key, c->e.klen);
    ev.agent = agent;
    emit(x->m, x->out, &ev, type, x->ts);
    return 0;
}

/*
 * AgentComplete closes the contact: the agent is done, whatever the caller
 * does next (a survey, voicemail), so the handle time ends here. With
 * Reason "transfer" the call goes on elsewhere: nothing until it joins a
 * queue (a transfer) or the caller hangs up.
 */
static int
on_complete(struct mctx *x) {
    struct cc_str reason;
    struct call *c;
    int rc = known_call(x, &c, NULL, NULL);

    if (rc || c == NULL || (c->state != C_CONNECTED && c->state != C_HELD))
        return rc;
    if (cc_ami_get(x->msg, "Reason", &reason) && cc_ami_is(reason, "transfer"))
        return 0;
    emit_call(x->m, x->out, c, "contact.close", x->ts);
    c->state = C_CLOSED;
    return 0;
}

/* Hold (kind HOLD_EVENT) or music on hold (HOLD_MOH) begins on a channel
 * of the call. Only a connected call has a hold the engine takes; queues
 * play music to waiting callers too. */
static int
hold_start(struct mctx *x, uint8_t kind) {
    struct cc_str uid;
    struct call *c;
    int rc = known_call(x, &c, NULL, &uid);

    if (rc || c == NULL || c->state != C_CONNECTED)
        return rc;
    emit_call(x->m, x->out, c, "hold.start", x->ts);
    c->state = C_HELD;
    c->hold_kind = kind;
    keep(c->hold_uid, &c->hold_n, sizeof(c->hold_uid), uid);
    return 0;
}

/* Ends the hold that the same channel began, the same way. */
static int
hold_end(struct mctx *x, uint8_t kind) {
    struct cc_str uid;
    struct call *c;
    int rc = known_call(x, &c, NULL, &uid);

    if (rc || c == NULL || c->state != C_HELD || c->hold_kind != kind)
        return rc;
    if (c->hold_n != 0 && !same(c->hold_uid, c->hold_n, uid))
        return 0;
    emit_call(x->m, x->out, c, "hold.end", x->ts);
    c->state = C_CONNECTED;
    c->hold_n = 0;
    return 0;
}

static int
on_hold(struct mctx *x) {
    return hold_start(x, HOLD_EVENT);
}

static int
on_unhold(struct mctx *x) {
    return hold_end(x, HOLD_EVENT);
}

static int
on_moh_start(struct mctx *x) {
    return x->m->moh_as_hold ? hold_start(x, HOLD_MOH) : 0;
}

static int
on_moh_stop(struct mctx *x) {
    return x->m->moh_as_hold ? hold_end(x, HOLD_MOH) : 0;
}

/* The caller's channel (the one queued, or the call's first) hangs up:
 * the call ends. Other channels of the call (agents') change nothing. */
static int
on_hangup(struct mctx *x) {
    struct cc_str key, uid;
    struct call *c;
    int rc = known_call(x, &c, &key, &uid);

    if (rc || c == NULL || uid.n == 0)
        return rc;
    if (!same(c->uid, c->uid_n, uid) && !cc_str_eqn(uid, key))
        return 0;
    if (c->leaving)
        leave_now(x, c, c->leave_ts);
    if (c->state != C_CLOSED)
        emit_call(x->m, x->out, c, "contact.close", x->ts);
    call_del(x->m, c);
    return 0;
}

/* One channel of the CoreShowChannels list: its call is alive. */
static int
on_show_channel(struct mctx *x) {
    struct cc_str key, uid;
    int rc = call_key(x, &key, &uid);

    if (rc)
        return rc;
    call_find(x->m, key);
    return 0;
}

/* ---- queue members ---- */

static int
member_queue(const struct member *mb, struct cc_str q) {
    int i;

    for (i = 0; i < mb->nq; i++) {
        if (same(mb->q[i], mb->qn[i], q))
            return i;
    }
    return -1;
}

static void
member_drop_queue(struct member *mb, int qi) {
    uint16_t low = (uint16_t)((1u << qi) - 1);
    int i;

    for (i = qi; i + 1 < mb->nq; i++) {
        memcpy(mb->q[i], mb->q[i + 1], mb->qn[i + 1]);
        mb->qn[i] = mb->qn[i + 1];
    }
    mb->nq--;
    mb->paused = (uint16_t)((mb->paused & low) | ((mb->paused >> 1) & ~low));
}

/* The member's state: away when paused in every queue it is in (a pause
 * in some queues leaves it serving the others), else from its device. */
static const char *
member_state(const struct member *mb) {
    if (mb->nq != 0 && mb->paused == (uint16_t)((1u << mb->nq) - 1))
        return "away";
    switch (mb->status) {
    case 1: /* NOT_INUSE */
        return "available";
    case 2: /* INUSE */
    case 3: /* BUSY */
    case 6: /* RINGING */
    case 7: /* RINGINUSE */
    case 8: /* ONHOLD */
        return "busy";
    case 0: /* UNKNOWN */
    case 4: /* INVALID */
    case 5: /* UNAVAILABLE */
        return "offline";
    default:
        /* No device state yet (a pause event of an older server): a
         * member not paused takes calls. */
        return "available";
    }
}

static bool
parse_small(struct cc_str v, int *out) {
    uint32_t i;
    int n = 0;

    if (v.n == 0 || v.n > 3)
        return false;
    for (i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return false;
        n = n * 10 + (v.p[i] - '0');
    }
    *out = n;
    return true;
}

/*
 * QueueMemberStatus, QueueMemberAdded, QueueMemberPause, QueueMember (the
 * QueueStatus list) and QueueMemberRemoved: the member's state in every
 * queue it was seen in, sent when it changes (Asterisk repeats a device
 * change once per queue).
 */
static int
member_event(struct mctx *x, bool removed) {
    static const char *const agent_keys[] = {"MemberName", "Name", "Interface",
                                             "Location"};
    struct cc_str agent = {NULL, 0}, queue, v;
    struct cc_str qs[CC_NEV_MAX_LIST];
    struct cc_nev ev;
    struct member *mb;
    const char *state;
    uint32_t idx, i;
    int qi, n;
    bool evicted;

    for (i = 0; i < CC_ARRAY_SIZE(agent_keys) && agent.n == 0; i++) {
        if (name_field(x, agent_keys[i], &agent))
            return -1;
    }
    if (name_field(x, "Queue", &queue))
        return -1;
    if (agent.n == 0)
        return 0;
    idx = tab_find(&x->m->members, agent.p, agent.n);
    if (idx == NONE) {
        if (removed)
            return 0;
        idx = tab_add(&x->m->members, agent.p, agent.n, &evicted);
        if (evicted)
            x->m->stats.evicted_members++;
        mb = member_at(x->m, idx);
        mb->status = -1;
    } else {
        tab_touch(&x->m->members, idx);
        mb = member_at(x->m, idx);
    }
    qi = queue.n != 0 ? member_queue(mb, queue) : -1;
    if (removed) {
        if (qi >= 0) {
            member_drop_queue(mb, qi);
            mb->dirty = true;
        }
    } else {
        if (qi < 0 && queue.n != 0) {
            if (mb->nq == CC_NEV_MAX_LIST) {
                cc_adapter_reject(x->st, CC_AMI_R_MANY_QUEUES);
            } else {
                qi = mb->nq++;
                memcpy(mb->q[qi], queue.p, queue.n);
                mb->qn[qi] = (uint8_t)queue.n;
                mb->paused &= (uint16_t) ~(1u << qi);
                mb->dirty = true;
            }
        }
        if (qi >= 0 && cc_ami_get(x->msg, "Paused", &v) && v.n != 0) {
            if (v.p[0] == '1' || cc_ami_is(v, "true"))
                mb->paused |= (uint16_t)(1u << qi);
            else
                mb->paused &= (uint16_t) ~(1u << qi);
        }
        if (cc_ami_get(x->msg, "Status", &v) && parse_small(v, &n))
            mb->status = (int8_t)(n <= 8 ? n : -1);
    }
    state = removed && mb->nq == 0 ? "offline" : member_state(mb);
    if (mb->sent && !mb->dirty && strcmp(mb->sent_state, state) == 0) {
        if (removed && mb->nq == 0)
            tab_del(&x->m->members, idx);
        return 0;
    }
    cc_nev_init(&ev);
    ev.agent = agent;
    ev.state = cc_str_of(state);
    for (i = 0; i < mb->nq; i++)
        qs[i] = str_of(mb->q[i], mb->qn[i]);
    ev.queues = qs;
    ev.nqueues = mb->nq;
    emit(x->m, x->out, &ev, "agent.status", x->ts);
    mb->sent = true;
    mb->dirty = false;
    mb->sent_state = state;
    /* Out of every queue: forgotten, so that a later add starts afresh. */
    if (removed && mb->nq == 0)
        tab_del(&x->m->members, idx);
    return 0;
}

static int
on_member(struct mctx *x) {
    return member_event(x, false);
}

static int
on_member_removed(struct mctx *x) {
    return member_event(x, true);
}

static const struct {
    const char *event;
    int (*fn)(struct mctx *x);
} handlers[] = {
    {"Newchannel", on_newchannel},
    {"QueueCallerJoin", on_join},
    {"QueueCallerLeave", on_leave},
    {"QueueCallerAbandon", on_abandon},
    {"AgentConnect", on_connect},
    {"AgentComplete", on_complete},
    {"Hold", on_hold},
    {"Unhold", on_unhold},
    {"MusicOnHoldStart", on_moh_start},
    {"MusicOnHoldStop", on_moh_stop},
    {"Hangup", on_hangup},
    {"QueueMemberStatus", on_member},
    {"QueueMemberAdded", on_member},
    {"QueueMemberPause", on_member},
    {"QueueMemberPaused", on_member}, /* the same before Asterisk 12 */
    {"QueueMember", on_member},
    {"QueueMemberRemoved", on_member_removed},
    {"CoreShowChannel", on_show_channel},
};

uint32_t
cc_ami_map_msg(struct cc_ami_map *m, const struct cc_ami_msg *msg, uint64_t now,
               struct cc_evbuf *out, struct cc_adapter_stats *st) {
    struct mctx x;
    struct cc_str name;
    uint32_t before = out->n, i;
    int rc = 0;

    st->received++;
    /* Responses, and the actions a capture may hold, carry no Event. */
    if (!cc_ami_get(msg, "Event", &name)) {
        st->ignored++;
        return 0;
    }
    x.m = m;
    x.msg = msg;
    x.now = now;
    x.out = out;
    x.st = st;
    x.ts = msg_ts(msg, now);
    for (i = 0; i < CC_ARRAY_SIZE(handlers); i++) {
        if (cc_ami_is(name, handlers[i].event)) {
            rc = handlers[i].fn(&x);
            break;
        }
    }
    if (rc < 0)
        return 0; /* counted under its reason */
    if (out->n == before)
        st->ignored++;
    return out->n - before;
}

uint32_t
cc_ami_map_flush(struct cc_ami_map *m, uint64_t now, struct cc_evbuf *out) {
    uint32_t idx, next, n = 0;

    for (idx = m->calls.head; idx != NONE && m->pending != 0; idx = next) {
        struct call *c = call_at(m, idx);
        next = c->e.next;
        if (c->leaving && c->leave_due <= now) {
            set_leaving(m, c, false);
            emit_call(m, out, c, "queue.leave", c->leave_ts);
            c->state = C_OPEN;
            n++;
        }
    }
    return n;
}

uint64_t
cc_ami_map_next_flush(const struct cc_ami_map *m) {
    uint64_t due = UINT64_MAX;
    uint32_t idx;

    if (m->pending == 0)
        return UINT64_MAX;
    for (idx = m->calls.head; idx != NONE; idx = call_at(m, idx)->e.next) {
        const struct call *c = call_at(m, idx);
        if (c->leaving && c->leave_due < due)
            due = c->leave_due;
    }
    return due;
}

void
cc_ami_map_sweep_begin(struct cc_ami_map *m) {
    m->gen++;
    m->sweeping = true;
}

uint32_t
cc_ami_map_sweep_end(struct cc_ami_map *m, uint64_t now, struct cc_evbuf *out) {
    uint32_t idx, next, n = 0;

    if (!m->sweeping)
        return 0;
    m->sweeping = false;
    for (idx = m->calls.head; idx != NONE; idx = next) {
        struct call *c = call_at(m, idx);
        next = c->e.next;
        if (c->gen == m->gen)
            continue;
        /* Ended while we were away: what its Hangup would have done. */
        if (c->leaving) {
            set_leaving(m, c, false);
            emit_call(m, out, c, "queue.leave", c->leave_ts);
            c->state = C_OPEN;
        }
        if (c->state != C_CLOSED)
            emit_call(m, out, c, "contact.close", (int64_t)now);
        call_del(m, c);
        m->stats.swept_calls++;
        n++;
    }
    return n;
}

int
cc_ami_map_withdraw(struct cc_ami_map *m, struct cc_str contact,
                    struct cc_str *channel, struct cc_str *queue) {
    uint32_t idx = tab_find(&m->calls, contact.p, contact.n);
    struct call *c;

    channel->p = queue->p = NULL;
    channel->n = queue->n = 0;
    if (idx == NONE)
        return CC_ENOENT;
    c = call_at(m, idx);
    if (c->state != C_QUEUED)
        return CC_ESTATE;
    /* The engine has it out of the queue now: what Asterisk says of its
     * leaving is no longer the engine's business. */
    c->state = C_OPEN;
    if (c->leaving) {
        set_leaving(m, c, false);
        return CC_ESTATE; /* it already left Asterisk's queue */
    }
    *channel = str_of(c->chan, c->chan_n);
    *queue = str_of(c->queue, c->queue_n);
    return 0;
}

const char *
cc_ami_map_call_state(const struct cc_ami_map *m, struct cc_str contact) {
    static const char *const names[] = {"open", "queued", "connected", "held",
                                        "closed"};
    uint32_t idx = tab_find(&m->calls, contact.p, contact.n);
    const struct call *c;

    if (idx == NONE)
        return NULL;
    c = call_at(m, idx);
    if (c->state == C_QUEUED && c->leaving)
        return "leaving";
    return names[c->state];
}
