/*
 * Conversations: one customer issue across all its contacts and channels,
 * with the context an agent needs and the continuity measures. Part of the
 * engine (engine_int.h); docs/protocol.md states the rules and
 * docs/design.md the memory layout.
 *
 * A customer (identity.h) points at its current conversation through
 * cc_customer.owner; a contact at its conversation through cc_contact.conv;
 * a conversation lists its open contacts and keeps bounded histories (the
 * last CONV_CONTACTS contacts with their outcomes, the last CONV_TIMELINE
 * events). Conversations are found by id through a chained hash table sized
 * once for [limits] max_conversations. One timer per conversation closes it
 * when idle past [conversation] idle_close, or when the reopen window of a
 * resolved one ends, and fires the stages of its SLA response clock.
 */
#include "engine_int.h"

#include "mp.h"

#include <string.h>

static const char *const live_state_names[] = {"open", "queued", "connected",
                                               "held"};

static void conv_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now);
static void on_merge(struct cc_identity *id, struct cc_customer *into,
                     struct cc_customer *from, void *arg);

/* ---- the store --------------------------------------------------------- */

static inline uint64_t
conv_bucket(const struct cc_convs *cs, uint64_t id) {
    return (id * 0x9e3779b97f4a7c15ULL >> 17) & cs->mask;
}

/* Merged conversations' ids are remembered for an eighth as many entries as
 * message ids: merges are rarer than messages. */
static uint64_t
forward_window(uint64_t thread_index) {
    return thread_index / 8 > 1024 ? thread_index / 8 : 1024;
}

int
cc_convs_init(struct cc_engine *e) {
    struct cc_convs *cs = &e->convs;
    uint64_t nb = 16;

    while (nb < e->cfg.max_conversations)
        nb <<= 1;
    cs->buckets = cc_alloc_table(nb * sizeof(*cs->buckets));
    if (cs->buckets == NULL)
        return CC_ENOMEM;
    cs->mask = nb - 1;
    if (e->cfg.thread_index != 0 &&
        (cc_dedup_init_map(&cs->threads, e->cfg.thread_index,
                           e->cfg.seed ^ 0x7ead) != 0 ||
         cc_dedup_init_map(&cs->forward, forward_window(e->cfg.thread_index),
                           e->cfg.seed ^ 0xf0d) != 0)) {
        cc_dedup_fini(&cs->threads);
        cc_free_table(cs->buckets, nb * sizeof(*cs->buckets));
        return CC_ENOMEM;
    }
    /* Records on whole cache lines, about 2 MiB per chunk. */
    cc_pool_init(&cs->pool, CONV_STRIDE, cc_pool_huge_chunk(CONV_STRIDE));
    cs->email_ch =
        cc_channels_find(&e->cfg.channels, (struct cc_str){"email", 5});
    cs->social_ch =
        cc_channels_find(&e->cfg.channels, (struct cc_str){"social", 6});
    e->ident.on_merge = on_merge;
    e->ident.arg = e;
    return 0;
}

static void
entry_free(struct cc_engine *e, struct cc_convct *ce) {
    if (ce->live != NULL) {
        ce->live->centry = NULL;
        ce->live->conv_n = 0;
    }
    e->convs.entry_bytes -= cc_blob_size(sizeof(*ce) + ce->id_len);
    cc_blob_put(&e->blobs, ce, sizeof(*ce) + ce->id_len);
}

static void
entries_free(struct cc_engine *e, struct cc_convct *ce) {
    struct cc_convct *next;
    for (; ce != NULL; ce = next) {
        next = ce->next;
        entry_free(e, ce);
    }
}

/* Closes a conversation: it leaves its customer, its contacts and the
 * index, and its memory goes back to the pool. */
static void
conv_free(struct cc_engine *e, struct cc_conv *v) {
    struct cc_convs *cs = &e->convs;
    struct cc_conv **pp = &cs->buckets[conv_bucket(cs, v->id)];
    struct cc_contact *c, *next;

    while (*pp != v)
        pp = &(*pp)->hnext;
    *pp = v->hnext;
    cc_wheel_cancel(&e->wheel, &v->timer);
    if (v->cust != NULL && v->cust->owner == v)
        v->cust->owner = NULL;
    for (c = v->live; c != NULL; c = next) {
        next = c->cvnext;
        c->conv = NULL;
        c->centry = NULL;
        c->conv_n = 0;
        c->cvnext = c->cvprev = NULL;
    }
    entries_free(e, v->contacts);
    if (v->state == CV_OPEN)
        cs->open--;
    else
        cs->resolved_now--;
    cs->frees++;
    cc_pool_put(&cs->pool, v);
}

void
cc_convs_fini(struct cc_engine *e) {
    struct cc_convs *cs = &e->convs;
    uint64_t i;

    if (cs->buckets == NULL)
        return;
    for (i = 0; i <= cs->mask; i++) {
        while (cs->buckets[i] != NULL)
            conv_free(e, cs->buckets[i]);
    }
    cc_free_table(cs->buckets, (cs->mask + 1) * sizeof(*cs->buckets));
    cc_dedup_fini(&cs->threads);
    cc_dedup_fini(&cs->forward);
    cc_pool_fini(&cs->pool);
    cs->buckets = NULL;
}

static struct cc_conv *
find_direct(const struct cc_convs *cs, uint64_t id) {
    struct cc_conv *v;
    for (v = cs->buckets[conv_bucket(cs, id)]; v != NULL; v = v->hnext) {
        if (v->id == id)
            return v;
    }
    return NULL;
}

/* A bijection: distinct conversation ids never share a fingerprint. It is
 * 0 (the map's empty mark) only for id 0x9e37..., far above any id. */
static inline uint64_t
id_fingerprint(uint64_t id) {
    uint64_t f = cc_mix64(id ^ 0x9e3779b97f4a7c15ULL);
    return f ? f : 1;
}

struct cc_conv *
cc_conv_find(const struct cc_engine *e, uint64_t id) {
    const struct cc_convs *cs = &e->convs;
    struct cc_conv *v;
    int hops;

    /* A merged conversation's id forwards to the survivor's (the
     * forwarding map is bounded like the thread index). */
    for (hops = 0; hops < 8; hops++) {
        v = find_direct(cs, id);
        if (v != NULL)
            return v;
        if (cs->forward.cap == 0 ||
            !cc_dedup_get(&cs->forward, id_fingerprint(id), &id))
            return NULL;
    }
    return NULL;
}

uint64_t
cc_convs_bytes(const struct cc_engine *e) {
    const struct cc_convs *cs = &e->convs;
    return (cs->mask + 1) * sizeof(*cs->buckets) +
           (cs->open + cs->resolved_now) * CONV_STRIDE + cs->entry_bytes +
           cc_dedup_bytes(&cs->threads) + cc_dedup_bytes(&cs->forward);
}

static struct cc_conv *
conv_new(struct cc_engine *e, struct cc_customer *cust, int64_t ts,
         uint64_t now) {
    struct cc_convs *cs = &e->convs;
    struct cc_conv *v;
    uint64_t b;

    if (cs->open + cs->resolved_now >= e->cfg.max_conversations) {
        cs->refused++;
        return NULL;
    }
    v = cc_pool_get(&cs->pool);
    if (v == NULL) {
        cs->refused++;
        return NULL;
    }
    v->id = ++cs->next_id;
    b = conv_bucket(cs, v->id);
    v->hnext = cs->buckets[b];
    cs->buckets[b] = v;
    v->started_ts = v->last_ts = ts;
    v->state = CV_OPEN;
    v->last_seen = now;
    cc_timer_init(&v->timer, conv_timer_cb);
    cc_wheel_arm(&e->wheel, &v->timer, now + e->cfg.idle_close_ms);
    cs->open++;
    cs->started++;
    if (cust != NULL) {
        /* A resolved conversation past its reopen window stays findable
         * by id until its timer closes it, but is no longer the
         * customer's. */
        if (cust->owner != NULL)
            ((struct cc_conv *)cust->owner)->cust = NULL;
        cust->owner = v;
        v->cust = cust;
    }
    return v;
}

/* When the response clock's next stage falls due (CC_WHEEL_NEVER: none). */
static uint64_t
resp_due(const struct cc_engine *e, const struct cc_conv *v) {
    const struct cc_sched *sc = cc_slas_get(e->slas, v->resp.sched);
    uint64_t d;

    if (sc == NULL || v->resp.stage >= sc->nstages)
        return CC_WHEEL_NEVER;
    d = cc_sched_due(sc, v->resp.stage,
                     (uint64_t)v->started_ts + v->resp.start);
    return d == CC_CAL_NEVER ? CC_WHEEL_NEVER : d;
}

/* When the resolution clock's next stage falls due (CC_WHEEL_NEVER: none,
 * or paused). */
static uint64_t
res_due(const struct cc_engine *e, const struct cc_conv *v) {
    const struct cc_sched *sc = cc_slas_get(e->slas, v->res.sched);
    uint64_t d;

    if (sc == NULL || v->res.paused || v->res.stage >= sc->nstages)
        return CC_WHEEL_NEVER;
    d = cc_sched_due_after(sc, v->res.stage,
                           (uint64_t)v->started_ts + v->res.seg, v->res.acc);
    return d == CC_CAL_NEVER ? CC_WHEEL_NEVER : d;
}

void
cc_conv_arm_clock(struct cc_engine *e, struct cc_conv *v) {
    uint64_t due = resp_due(e, v), rd = res_due(e, v);

    if (rd < due)
        due = rd;
    /* The idle close re-arms itself lazily; only bring the timer
     * forward. */
    if (v->state == CV_OPEN && due != CC_WHEEL_NEVER &&
        (!cc_timer_armed(&v->timer) || due < v->timer.expires))
        cc_wheel_arm(&e->wheel, &v->timer, due);
}

/* The one timer of a conversation serves its idle close (open), the end
 * of its reopen window (resolved) and its SLA clocks' stages. */
static void
conv_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct cc_engine *e = CC_CONTAINER_OF(w, struct cc_engine, wheel);
    struct cc_conv *v = CC_CONTAINER_OF(t, struct cc_conv, timer);

    if (v->state == CV_OPEN) {
        uint64_t due, rd, idle = v->last_seen + e->cfg.idle_close_ms;
        /* Every stage now due, of either clock, in time order. */
        for (;;) {
            due = resp_due(e, v);
            rd = res_due(e, v);
            if (rd < due) {
                if (rd > now)
                    break;
                cc_engine_fire_conv_stage(e, v, true, v->res.stage, rd, now);
                v->res.stage++;
            } else {
                if (due > now)
                    break;
                cc_engine_fire_conv_stage(e, v, false, v->resp.stage, due, now);
                v->resp.stage++;
            }
        }
        if (rd < due)
            due = rd;
        /* Re-armed lazily, as contacts' idle timers are. A clock with
         * stages to go keeps the conversation until its last one (armed
         * for that stage once the idle time has passed, not for the idle
         * time in the past). */
        if (idle > now || due != CC_WHEEL_NEVER) {
            cc_wheel_arm(w, t, idle > now && idle < due ? idle : due);
            return;
        }
        e->convs.idle_closed++;
    }
    conv_free(e, v);
}

/* ms after the conversation's start, in the 32 bits its clocks keep:
 * false when ts is more than 49 days in (a time before the start counts as
 * the start). */
static bool
conv_offset(const struct cc_conv *v, int64_t ts, uint32_t *off) {
    if (ts <= v->started_ts) {
        *off = 0;
        return true;
    }
    if ((uint64_t)(ts - v->started_ts) > UINT32_MAX)
        return false;
    *off = (uint32_t)(ts - v->started_ts);
    return true;
}

/* The resolution clock stops at ts until the customer writes again: what
 * it ran since it last resumed is added to its count. An agent's message
 * stamped before the stretch began (a late event) answered an earlier
 * message, not the one waiting: it does not pause the clock. Stages the
 * stretch passed that the engine's clock has not reached yet (an event
 * stamped ahead of it) fire now, as a late event's do. */
static void
res_pause(struct cc_engine *e, struct cc_conv *v, int64_t ts, uint64_t now) {
    const struct cc_sched *sc = cc_slas_get(e->slas, v->res.sched);
    uint64_t from = (uint64_t)v->started_ts + v->res.seg, acc, due;
    uint32_t off;

    if (sc == NULL || v->res.paused)
        return;
    if (ts < (int64_t)from) {
        /* A resolve pauses it whatever its time: it counts nothing. */
        if (v->state == CV_OPEN)
            return;
        ts = (int64_t)from;
    }
    if (!conv_offset(v, ts, &off)) {
        v->res.sched = 0;
        e->slas->full++;
        return;
    }
    /* (None is due before the conversation's timer, armed at or before
     * the clock's next stage.) */
    while ((!cc_timer_armed(&v->timer) || (uint64_t)ts >= v->timer.expires) &&
           (due = res_due(e, v)) <= (uint64_t)ts) {
        cc_engine_fire_conv_stage(e, v, true, v->res.stage, due, now);
        v->res.stage++;
    }
    acc = v->res.acc + cc_sched_between(sc, from, (uint64_t)ts);
    v->res.acc = acc > UINT32_MAX ? UINT32_MAX : (uint32_t)acc;
    v->res.seg = off;
    v->res.paused = 1;
}

/* It runs again from ts. A customer's message stamped before the pause (a
 * late event) was answered by the message that paused it: it does not
 * resume the clock. */
static void
res_resume(struct cc_engine *e, struct cc_conv *v, int64_t ts) {
    uint32_t off;

    if (v->res.sched == 0 || !v->res.paused || v->state != CV_OPEN ||
        ts < v->started_ts + (int64_t)v->res.seg)
        return;
    if (!conv_offset(v, ts, &off)) {
        v->res.sched = 0;
        e->slas->full++;
        return;
    }
    v->res.seg = off;
    v->res.paused = 0;
    cc_conv_arm_clock(e, v);
}

/* The resolution clock: starts with the conversation, under the policy
 * for its first contact; pauses at an agent's message, while the
 * conversation waits on the customer; runs again when the customer writes
 * (message.in) or a new contact of theirs joins; conversation.resolve
 * pauses it too (resolve()), and a reopen resumes it, so that a reopened
 * issue keeps counting from where it stopped. */
static void
resolution_clock(struct cc_engine *e, struct cc_conv *v, struct cc_contact *c,
                 const struct cc_event *ev, bool fresh, bool joined,
                 uint64_t now) {
    if (!fresh && !joined && ev->type != CC_EV_MESSAGE_IN &&
        ev->type != CC_EV_MESSAGE_OUT)
        return; /* without loading the clock's line */
    if (fresh) {
        v->res.sched =
            cc_engine_contact_sched(e, c, CC_CLOCK_RESOLUTION) & 0xfff;
        v->res.last = SLA_LAST_NONE;
        if (v->res.sched == 0)
            return;
        cc_conv_arm_clock(e, v);
    }
    if (v->res.sched == 0)
        return;
    if (ev->type == CC_EV_MESSAGE_OUT)
        res_pause(e, v, ev->ts, now);
    else if (ev->type == CC_EV_MESSAGE_IN || joined)
        res_resume(e, v, ev->ts);
}

/* The response clock: a customer's message (message.in, or contact.open
 * on any channel but phone) starts it unless it runs; an agent's message
 * on any channel of the conversation stops it. */
static void
response_clock(struct cc_engine *e, struct cc_conv *v, struct cc_contact *c,
               const struct cc_event *ev, uint64_t now) {
    enum cc_clock k;
    uint16_t sched;
    uint32_t start;

    /* While no clock runs, `start` keeps the time of the last agent
     * message, so that a late event can be told from a new one. */
    if (ev->type == CC_EV_MESSAGE_OUT) {
        /* A reply stamped before the message waiting for one (a late
         * event) answered an earlier one: the clock runs on. */
        if (v->resp.sched != 0 &&
            ev->ts < v->started_ts + (int64_t)v->resp.start)
            return;
        if (v->resp.sched != 0) {
            /* The customer's wait for this reply, by the channel they
             * wrote on: the response-time percentiles. */
            int64_t from = v->started_ts + (int64_t)v->resp.start;
            cc_rt_add(&e->chan_rt[cc_resp_channel(&v->resp)], now,
                      ev->ts > from ? (uint64_t)(ev->ts - from) : 0);
        }
        v->resp.sched = 0;
        if (conv_offset(v, ev->ts, &start) && start > v->resp.start)
            v->resp.start = start;
        return;
    }
    /* The event's type first: other events need not load the clock's
     * line. A customer's message stamped before the last agent message
     * (a late event) was answered by it. */
    if ((ev->type != CC_EV_MESSAGE_IN &&
         (ev->type != CC_EV_CONTACT_OPEN || c->channel == 0)) ||
        v->state != CV_OPEN || v->resp.sched != 0 ||
        ev->ts < v->started_ts + (int64_t)v->resp.start)
        return;
    /* Its start is kept in 32 bits of ms after the conversation's: 49
     * days. A later one is not started, and counted. A message stamped
     * before the conversation began (another channel's clock) starts it at
     * the conversation's start. */
    if (!conv_offset(v, ev->ts, &start)) {
        e->slas->full++;
        return;
    }
    k = v->msgs_out != 0 ? CC_CLOCK_NEXT_RESPONSE : CC_CLOCK_FIRST_RESPONSE;
    sched = cc_engine_contact_sched(e, c, k);
    if (sched == 0)
        return;
    v->resp.sched = sched & 0xfff;
    v->resp.ch_lo = c->channel & 0xf;
    v->resp.ch_hi = (c->channel >> 4) & 1;
    v->resp.stage = 0;
    v->resp.last = SLA_LAST_NONE;
    v->resp.next = k == CC_CLOCK_NEXT_RESPONSE;
    v->resp.start = start;
    cc_conv_arm_clock(e, v);
}

/* ---- small sets kept by a conversation ---------------------------------- */

/* Puts name number n first in a most-recent-first set of cap names. */
static void
name_set_put(uint32_t *set, size_t cap, uint32_t n) {
    size_t i;

    if (n == 0)
        return;
    for (i = 0; i < cap - 1 && set[i] != 0 && set[i] != n; i++)
        ;
    /* i is n's place, the first empty slot, or the last slot. */
    memmove(&set[1], &set[0], i * sizeof(*set));
    set[0] = n;
}

static void
name_set_add(uint32_t *set, size_t cap, const struct cc_name *n) {
    if (n != NULL)
        name_set_put(set, cap, n->idx);
}

static void
channel_touch(struct cc_conv *v, unsigned ch, int64_t ts) {
    unsigned i;
    for (i = 0; i < v->nchan; i++) {
        if (v->chan[i] == ch) {
            if (ts < v->chan_ts[i])
                v->chan_ts[i] = ts;
            return;
        }
    }
    if (v->nchan == CONV_CHANNELS)
        return;
    v->chan[v->nchan] = (uint8_t)ch;
    v->chan_ts[v->nchan] = ts;
    v->nchan++;
}

static bool
touched_other_channel(const struct cc_conv *v, unsigned ch) {
    unsigned i;
    for (i = 0; i < v->nchan; i++) {
        if (v->chan[i] != ch)
            return true;
    }
    return false;
}

static void
timeline_add(struct cc_conv *v, int64_t ts, unsigned type, unsigned ch,
             uint32_t contact_n) {
    struct cc_convtl *t = &v->tl[v->tl_head];

    t->ts_lo = (uint32_t)(uint64_t)ts;
    t->ts_hi = (uint16_t)((uint64_t)ts >> 32);
    t->type = (uint8_t)type;
    t->channel = (uint8_t)ch;
    t->contact_n = contact_n;
    v->tl_head = (uint8_t)((v->tl_head + 1) % CONV_TIMELINE);
    if (v->tl_n < CONV_TIMELINE)
        v->tl_n++;
}

/* The i-th oldest timeline entry kept. */
static const struct cc_convtl *
timeline_at(const struct cc_conv *v, unsigned i) {
    return &v->tl[(v->tl_head + CONV_TIMELINE - v->tl_n + i) % CONV_TIMELINE];
}

/* Keeps at most CONV_CONTACTS entries: the oldest go, each from the head
 * of the list, so that a join costs the same however long the history. */
static void
entries_trim(struct cc_engine *e, struct cc_conv *v) {
    struct cc_convct *ce;

    while (v->nentries > CONV_CONTACTS) {
        ce = v->contacts;
        v->contacts = ce->next;
        v->nentries--;
        entry_free(e, ce);
    }
    if (v->contacts == NULL)
        v->newest = NULL;
}

/* ---- alerts ---------------------------------------------------------------
 */

/* "cu-<n>", or nil. */
static inline char *
w_customer_id(char *d, const struct cc_customer *cust) {
    if (cust == NULL)
        return cc_w_nil(d);
    return cc_w_prefixed_u64(d, "cu-", 3, cust->id);
}

/* "cv-<n>", or nil. */
static inline char *
w_conv_id(char *d, const struct cc_conv *v) {
    if (v == NULL)
        return cc_w_nil(d);
    return cc_w_prefixed_u64(d, "cv-", 3, v->id);
}

#define ID_MAX (1 + 3 + 20) /* "cv-" or "cu-" and a number */

static void
pack_customer_id(msgpack_packer *pk, const struct cc_customer *cust) {
    cc_pack_finish(pk, w_customer_id(cc_pack_reserve(pk, ID_MAX), cust));
}

void
cc_conv_pack_id(msgpack_packer *pk, const struct cc_conv *v) {
    cc_pack_finish(pk, w_conv_id(cc_pack_reserve(pk, ID_MAX), v));
}

static inline char *
w_channel(char *d, const struct cc_engine *e, unsigned ch) {
    return cc_w_str(d, e->cfg.channels.names[ch], e->cfg.channels.len[ch]);
}

#define CHANNEL_MAX CC_W_STR_MAX(CC_CHANNEL_NAME_MAX)
#define NAME_MAX_W CC_W_STR_MAX(CC_NAME_MAX)

static inline char *
w_name_or_nil(char *d, const struct cc_name *n) {
    return n != NULL ? cc_w_str(d, n->s, n->len) : cc_w_nil(d);
}

/* "kind:value": at most CC_W_STR_MAX(16 + n) bytes. */
static char *
w_ident(char *d, unsigned kind, const char *v, size_t n) {
    const char *kn = cc_ident_kind_name((enum cc_ident_kind)kind);
    size_t kl = strlen(kn);

    d = cc_w_strhdr(d, kl + 1 + n);
    memcpy(d, kn, kl);
    d[kl] = ':';
    memcpy(d + kl + 1, v, n);
    return d + kl + 1 + n;
}

static void
pack_ident(msgpack_packer *pk, unsigned kind, const char *v, size_t n) {
    cc_pack_finish(
        pk, w_ident(cc_pack_reserve(pk, CC_W_STR_MAX(16 + n)), kind, v, n));
}

static char *
w_channels(char *d, const struct cc_engine *e, const struct cc_conv *v) {
    unsigned i;
    d = cc_w_array(d, v->nchan);
    for (i = 0; i < v->nchan; i++)
        d = w_channel(d, e, v->chan[i]);
    return d;
}

static size_t conv_pack_max(const struct cc_conv *v, bool full);
static char *w_conv(char *d, struct cc_engine *e, const struct cc_conv *v,
                    bool full);

static void
alert_repeat(struct cc_engine *e, struct cc_conv *v, struct cc_contact *c,
             const struct cc_convct *prev, int64_t ts, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    int64_t first = v->chan_ts[0];
    const struct cc_name *queue = c->queue ? c->queue->name : NULL;
    size_t max;
    char *start, *d;

    cc_outbox_begin(&e->outbox, CC_OUT_ALERT, "continuity.repeat");
    /* Keys and small values; the id, contact (twice, the previous one
     * included) and customer as long as they can be; the context. */
    max = 400 + 2 * CHANNEL_MAX + 2 * CC_W_STR_MAX(CC_CONTACT_MAX) +
          CC_W_STR_MAX(32 + CC_CHANNEL_NAME_MAX + CC_CONTACT_MAX) +
          c->cust_len + 2 * ID_MAX + 2 * NAME_MAX_W +
          CONV_CHANNELS * CHANNEL_MAX + conv_pack_max(v, false);
    d = start = cc_pack_reserve(pk, max);
    d = cc_w_map(d, 17);
    d = cc_w_lit(d, "alert");
    d = cc_w_lit(d, "continuity.repeat");
    d = cc_w_lit(d, "id");
    d = cc_w_rule_id(d, e, "continuity.repeat", c);
    d = cc_w_kv_u64(d, "ts", now);
    d = cc_w_lit(d, "conversation");
    d = w_conv_id(d, v);
    d = cc_w_lit(d, "contact");
    d = cc_w_str(d, contact_id(c), c->id_len);
    d = cc_w_lit(d, "channel");
    d = w_channel(d, e, c->channel);
    d = cc_w_lit(d, "customer");
    d = cc_w_contact_customer(d, c);
    d = cc_w_lit(d, "customer_id");
    d = w_customer_id(d, v->cust);
    d = cc_w_lit(d, "queue");
    d = w_name_or_nil(d, queue);
    d = cc_w_lit(d, "agent");
    d = w_name_or_nil(d, c->agent);
    d = cc_w_kv_u64(d, "repeat", v->repeats);
    d = cc_w_kv_u64(d, "priority", v->repeats < 9 ? v->repeats : 9);
    d = cc_w_kv_u64(d, "attempts", v->ncontacts);
    d = cc_w_lit(d, "channels");
    d = w_channels(d, e, v);
    d = cc_w_kv_u64(d, "since_first_ms",
                    ts > first ? (uint64_t)(ts - first) : 0);
    d = cc_w_lit(d, "previous");
    if (prev != NULL) {
        d = cc_w_map(d, 3);
        d = cc_w_lit(d, "channel");
        d = w_channel(d, e, prev->channel);
        d = cc_w_lit(d, "contact");
        d = cc_w_str(d, prev->id, prev->id_len);
        d = cc_w_kv_u64(d, "opened_ts", (uint64_t)prev->opened_ts);
    } else {
        d = cc_w_nil(d);
    }
    d = cc_w_lit(d, "context");
    d = w_conv(d, e, v, false);
    CC_ASSERT((size_t)(d - start) <= max);
    cc_pack_finish(pk, d);
    cc_outbox_end(&e->outbox);
    e->convs.alerts_repeat++;
}

void
cc_conv_alert_conflict(struct cc_engine *e, const struct cc_contact *c,
                       const struct cc_event *ev, const struct cc_idresult *res,
                       const uint8_t *kinds, const struct cc_str *norm,
                       uint32_t n) {
    msgpack_packer *pk = &e->outbox.pk;
    const char *rule = "identity.conflict";
    size_t rn = strlen(rule);
    uint32_t i;

    cc_outbox_begin(&e->outbox, CC_OUT_ALERT, rule);
    msgpack_pack_map(pk, 12);
    cc_pack_str(pk, "alert");
    cc_pack_str(pk, rule);
    cc_pack_str(pk, "id");
    msgpack_pack_str(pk, rn + 1 + ev->id.n);
    msgpack_pack_str_body(pk, rule, rn);
    msgpack_pack_str_body(pk, ":", 1);
    msgpack_pack_str_body(pk, ev->id.p, ev->id.n);
    cc_pack_kv_u64(pk, "ts", e->wheel.now);
    cc_pack_str(pk, "event");
    cc_pack_strn(pk, ev->id.p, ev->id.n);
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, c != NULL ? c->conv : NULL);
    cc_pack_str(pk, "contact");
    if (c != NULL)
        cc_pack_strn(pk, contact_id(c), c->id_len);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "channel");
    cc_pack_str(pk, e->cfg.channels.names[ev->channel]);
    cc_pack_str(pk, "customer");
    if (ev->customer_len != 0)
        cc_sbuffer_write(pk->data, (const char *)ev->customer,
                         ev->customer_len);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "customer_id");
    pack_customer_id(pk, res->cust);
    cc_pack_str(pk, "identifiers");
    msgpack_pack_array(pk, n);
    for (i = 0; i < n; i++)
        pack_ident(pk, kinds[i], norm[i].p, norm[i].n);
    cc_pack_kv_u64(pk, "size", res->conflict_size);
    cc_pack_kv_u64(pk, "max_identifiers", e->cfg.max_identifiers);
    cc_outbox_end(&e->outbox);
    e->convs.alerts_conflict++;
}

/* ---- joining ------------------------------------------------------------- */

static inline uint64_t
thread_fingerprint(const struct cc_engine *e, unsigned ch, struct cc_str id) {
    uint64_t f = cc_hash(id.p, id.n, e->convs.threads.seed + ch);
    return f ? f : 1;
}

static bool
is_threaded(const struct cc_engine *e, unsigned ch) {
    return (int)ch == e->convs.email_ch || (int)ch == e->convs.social_ch;
}

uint64_t
cc_conv_thread_key(const struct cc_engine *e, const struct cc_event *ev) {
    if (e->convs.threads.cap == 0 || !is_threaded(e, ev->channel))
        return 0;
    if (ev->type != CC_EV_CONTACT_OPEN && ev->type != CC_EV_MESSAGE_IN &&
        ev->type != CC_EV_MESSAGE_OUT)
        return 0;
    return thread_fingerprint(e, ev->channel, ev->id);
}

/* The conversation a reply_to names: the open contact it names, or the
 * conversation of the message it names. */
static struct cc_conv *
thread_lookup(struct cc_engine *e, unsigned ch, struct cc_str ref) {
    struct cc_contact *c;
    uint64_t id;

    c = cc_contact_find(e, ch, ref, cc_contact_hash(e, ch, ref));
    if (c != NULL && c->conv != NULL)
        return c->conv;
    if (e->convs.threads.cap == 0 ||
        !cc_dedup_get(&e->convs.threads, thread_fingerprint(e, ch, ref), &id))
        return NULL;
    return cc_conv_find(e, id);
}

static void
reopen(struct cc_engine *e, struct cc_conv *v, unsigned ch, uint64_t now) {
    v->state = CV_OPEN;
    v->reopens++;
    e->convs.reopens++;
    e->convs.chan[ch].reopens++;
    e->convs.resolved_now--;
    e->convs.open++;
    v->last_seen = now;
    cc_wheel_arm(&e->wheel, &v->timer, now + e->cfg.idle_close_ms);
}

/* Which conversation a contact joins: the one its reply_to threads to,
 * else its customer's; a resolved one reopens within the reopen window,
 * otherwise a new one starts. NULL for a contact with neither. */
static struct cc_conv *
conv_for_contact(struct cc_engine *e, const struct cc_contact *c,
                 struct cc_customer *cust, const struct cc_event *ev,
                 uint64_t now, bool *reopened) {
    struct cc_conv *v = NULL;

    *reopened = false;
    if (ev->reply_to.n != 0) {
        v = thread_lookup(e, c->channel, ev->reply_to);
        if (v != NULL)
            e->convs.threaded++;
    }
    if (v == NULL && cust != NULL)
        v = cust->owner;
    if (v != NULL && v->state == CV_RESOLVED) {
        if (ev->ts >= v->resolved_ts &&
            (uint64_t)(ev->ts - v->resolved_ts) <= e->cfg.reopen_window_ms) {
            reopen(e, v, c->channel, now);
            *reopened = true;
        } else {
            v = NULL;
        }
    }
    if (v == NULL && cust != NULL)
        v = conv_new(e, cust, ev->ts, now);
    return v;
}

static void
conv_join(struct cc_engine *e, struct cc_conv *v, struct cc_contact *c,
          const struct cc_event *ev, bool reopened, uint64_t now) {
    struct cc_convs *cs = &e->convs;
    struct cc_convct *prev = v->newest, *ce;
    bool repeat = false;

    if (v->ncontacts > 0 && !reopened && v->state == CV_OPEN) {
        /* Unresolved: another channel while it is open, or any channel
         * soon after a contact that ended without resolving it. */
        if (touched_other_channel(v, c->channel))
            repeat = true;
        else if (v->last_end_ts != 0 && ev->ts >= v->last_end_ts &&
                 (uint64_t)(ev->ts - v->last_end_ts) <= e->cfg.repeat_window_ms)
            repeat = true;
    }
    if (prev != NULL && prev->channel != c->channel) {
        v->switches++;
        cs->switches++;
        cs->chan[c->channel].switches++;
    }
    if (v->ncontacts == 0)
        v->first_channel = c->channel;
    v->ncontacts++;
    cs->contacts++;
    cs->chan[c->channel].contacts++;
    if (v->ncontacts == 1)
        cs->chan[c->channel].started++;
    ce = cc_blob_get(&e->blobs, sizeof(*ce) + c->id_len);
    if (ce != NULL) {
        memset(ce, 0, sizeof(*ce));
        ce->live = c;
        ce->opened_ts = ev->ts;
        ce->n = v->ncontacts;
        ce->id_len = c->id_len;
        ce->channel = c->channel;
        memcpy(ce->id, contact_id(c), c->id_len);
        cc_conv_entry_append(e, v, ce);
        entries_trim(e, v);
    }
    c->centry = ce;
    c->conv_n = ce != NULL ? ce->n : 0;
    c->conv = v;
    c->cvprev = NULL;
    c->cvnext = v->live;
    if (v->live != NULL)
        v->live->cvprev = c;
    v->live = c;
    v->nlive++;
    channel_touch(v, c->channel, ev->ts);
    if (repeat) {
        v->repeats++;
        cs->repeats++;
        cs->chan[c->channel].repeats++;
        alert_repeat(e, v, c, prev, ev->ts, now);
    }
}

void
cc_conv_entry_append(struct cc_engine *e, struct cc_conv *v,
                     struct cc_convct *ce) {
    if (v->newest != NULL)
        v->newest->next = ce;
    else
        v->contacts = ce;
    v->newest = ce;
    v->nentries++;
    e->convs.entry_bytes += cc_blob_size(sizeof(*ce) + ce->id_len);
}

/* A contact's outcome bits so far. While it is open they live in the
 * contact (its flags), so that the events that make them need not load
 * its history entry; its end copies them there. */
static uint8_t
contact_outcome(const struct cc_contact *c) {
    uint8_t o = 0;

    if (c->flags & CF_ANSWERED)
        o |= CO_ANSWERED;
    if (c->flags & CF_ABANDONED)
        o |= CO_ABANDONED;
    if (c->flags & CF_TRANSFERRED)
        o |= CO_TRANSFERRED;
    if (c->flags & CF_CALLBACK)
        o |= CO_CALLBACK;
    return o;
}

void
cc_conv_contact_detach(struct cc_engine *e, struct cc_contact *c) {
    struct cc_conv *v = c->conv;

    (void)e;
    if (v == NULL)
        return;
    if (c->cvprev != NULL)
        c->cvprev->cvnext = c->cvnext;
    else
        v->live = c->cvnext;
    if (c->cvnext != NULL)
        c->cvnext->cvprev = c->cvprev;
    v->nlive--;
    if (c->centry != NULL)
        c->centry->live = NULL;
    c->conv = NULL;
    c->centry = NULL;
    c->conv_n = 0;
    c->cvnext = c->cvprev = NULL;
}

void
cc_conv_contact_end(struct cc_engine *e, struct cc_contact *c, int64_t ts,
                    bool expired) {
    struct cc_conv *v = c->conv;
    struct cc_convct *ce = c->centry;

    (void)e;
    if (v == NULL)
        return;
    if (ce != NULL) {
        ce->ended_ts = ts;
        ce->outcome |=
            CO_ENDED | (expired ? CO_EXPIRED : 0) | contact_outcome(c);
        ce->agent = c->agent;
    }
    v->hold_ms += c->hold_total_ms;
    if (ts > v->last_end_ts)
        v->last_end_ts = ts;
}

/* ---- what events do to a conversation ------------------------------------ */

static void
note_wait(struct cc_conv *v, int64_t from, int64_t to) {
    uint64_t w = to > from ? (uint64_t)(to - from) : 0;
    v->waits++;
    v->wait_ms += w;
    if (w > v->max_wait_ms)
        v->max_wait_ms = w;
}

static void
resolve(struct cc_engine *e, struct cc_conv *v, const struct cc_event *ev,
        uint64_t now) {
    struct cc_convs *cs = &e->convs;

    if (v->state == CV_RESOLVED)
        return;
    v->state = CV_RESOLVED;
    v->resp.sched = 0; /* resolved: nobody waits for a reply */
    res_pause(e, v, ev->ts, now);
    v->resolved_ts = ev->ts;
    v->resolves++;
    cs->open--;
    cs->resolved_now++;
    if (v->resolves == 1) {
        /* Measured once, at the first resolution: a reopened
         * conversation's later resolution is not a first contact's. */
        cs->resolved++;
        cs->chan[v->first_channel].resolved++;
        if (v->ncontacts <= 1) {
            cs->fcr++;
            cs->chan[v->first_channel].fcr++;
        }
    }
    cc_wheel_arm(&e->wheel, &v->timer, now + e->cfg.reopen_window_ms);
    if (v->flags & CVF_CALLBACK)
        cc_cb_served(e, v, NULL, now, "resolved");
}

static void
add_tags(struct cc_engine *e, struct cc_conv *v, const struct cc_event *ev) {
    struct cc_mp m;
    struct cc_str t;
    uint32_t n, i;

    cc_mp_init(&m, ev->tags, ev->tags_len);
    if (cc_mp_read_array(&m, &n) != 0)
        return;
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(&m, &t) != 0)
            return;
        name_set_add(v->tags, CONV_TAGS, cc_name_intern(e, t));
        cc_conv_tags_changed(v);
    }
}

/* Remembers which conversation a message belongs to, under the key
 * cc_conv_thread_key() gave it (0: not indexed). */
static void
index_message(struct cc_engine *e, const struct cc_conv *v, uint64_t key) {
    if (key != 0)
        cc_dedup_put(&e->convs.threads, key, v->id);
}

void
cc_conv_apply(struct cc_engine *e, struct cc_contact *c,
              struct cc_customer *cust, const struct cc_event *ev,
              const struct cc_conv_delta *d, uint64_t now) {
    struct cc_conv *v;
    bool reopened = false, fresh = false, joined = false;

    if (c != NULL) {
        v = c->conv;
        if (v == NULL) {
            v = conv_for_contact(e, c, cust, ev, now, &reopened);
            if (v == NULL) {
                if (d->created)
                    e->convs.anonymous++;
                return;
            }
            fresh = v->ncontacts == 0;
            joined = true;
            conv_join(e, v, c, ev, reopened, now);
        } else if (v->cust == NULL && cust != NULL && cust->owner == NULL) {
            /* A conversation joined by thread learns its customer. */
            v->cust = cust;
            cust->owner = v;
        }
    } else {
        v = cust != NULL ? cust->owner : NULL;
        if (v == NULL) {
            if (ev->type == CC_EV_CONVERSATION_RESOLVE)
                e->resolve_unknown++;
            return;
        }
    }
    v->last_seen = now;
    if (ev->ts > v->last_ts)
        v->last_ts = ev->ts;
    switch ((enum cc_event_type)ev->type) {
    case CC_EV_MESSAGE_IN:
        v->msgs_in++;
        /* The customer writes again after a resolve: it reopens. */
        if (v->state == CV_RESOLVED && !reopened)
            reopen(e, v, ev->channel, now);
        break;
    case CC_EV_MESSAGE_OUT:
        v->msgs_out++;
        name_set_add(v->agents, CONV_AGENTS, c->agent);
        break;
    case CC_EV_QUEUE_JOIN:
        name_set_add(v->queues, CONV_QUEUES, c->queue->name);
        break;
    case CC_EV_QUEUE_LEAVE:
        note_wait(v, d->prev_queued_ts, ev->ts);
        break;
    case CC_EV_AGENT_ANSWER:
        if (d->prev_state == CS_QUEUED)
            note_wait(v, d->prev_queued_ts, ev->ts);
        name_set_add(v->agents, CONV_AGENTS, c->agent);
        break;
    case CC_EV_HOLD_START:
        v->holds++;
        break;
    case CC_EV_TRANSFER:
        v->transfers++;
        if (d->prev_state == CS_QUEUED)
            note_wait(v, d->prev_queued_ts, ev->ts);
        if (c->state == CS_QUEUED)
            name_set_add(v->queues, CONV_QUEUES, c->queue->name);
        name_set_add(v->agents, CONV_AGENTS, c->agent);
        break;
    case CC_EV_CALLBACK_ACCEPTED:
        if (d->prev_state == CS_QUEUED)
            note_wait(v, d->prev_queued_ts, ev->ts);
        break;
    case CC_EV_CONTACT_CLOSE:
        if (d->prev_state == CS_QUEUED)
            note_wait(v, d->prev_queued_ts, ev->ts);
        break;
    case CC_EV_CONVERSATION_RESOLVE:
        resolve(e, v, ev, now);
        break;
    case CC_EV_FEEDBACK:
        v->feedback_n++;
        v->feedback_score = (int32_t)ev->score;
        v->feedback_scale = cc_str_eq(ev->scale, "nps") ? 2 : 1;
        v->feedback_ts = ev->ts;
        break;
    default:
        break;
    }
    if (ev->topic.n != 0) {
        const struct cc_name *t = cc_name_intern(e, ev->topic);
        if (t != NULL)
            v->topic = t->idx;
    }
    if (ev->ntags != 0)
        add_tags(e, v, ev);
    if (ev->flags & CC_EVF_SENTIMENT) {
        v->sentiment = (float)ev->sentiment;
        v->flags |= CVF_SENTIMENT;
    }
    if (c != NULL) {
        response_clock(e, v, c, ev, now);
        resolution_clock(e, v, c, ev, fresh, joined, now);
    }
    timeline_add(v, ev->ts, ev->type, ev->channel, c != NULL ? c->conv_n : 0);
    if (c != NULL)
        index_message(e, v, d->thread_key);
}

/* ---- merging --------------------------------------------------------------
 */

/* Merges two oldest-first contact lists by opening time. */
static struct cc_convct *
entries_merge(struct cc_convct *a, struct cc_convct *b) {
    struct cc_convct head, *t = &head;

    /* On a tie the survivor's entry counts as the newer. */
    while (a != NULL && b != NULL) {
        if (a->opened_ts < b->opened_ts) {
            t->next = a;
            a = a->next;
        } else {
            t->next = b;
            b = b->next;
        }
        t = t->next;
    }
    t->next = a != NULL ? a : b;
    return head.next;
}

static void
timeline_merge(struct cc_conv *v, const struct cc_conv *w, uint32_t offset) {
    struct cc_convtl all[2 * CONV_TIMELINE];
    unsigned i = 0, j = 0, k = 0, skip;

    /* Both are in event-time order (arrival order, which producers keep
     * close to it); combine them by time, oldest first. */
    while (i < v->tl_n || j < w->tl_n) {
        const struct cc_convtl *a = i < v->tl_n ? timeline_at(v, i) : NULL;
        const struct cc_convtl *b = j < w->tl_n ? timeline_at(w, j) : NULL;
        if (b == NULL || (a != NULL && cc_convtl_ts(a) <= cc_convtl_ts(b))) {
            all[k++] = *a;
            i++;
        } else {
            all[k] = *b;
            if (all[k].contact_n != 0)
                all[k].contact_n += offset;
            k++;
            j++;
        }
    }
    skip = k > CONV_TIMELINE ? k - CONV_TIMELINE : 0;
    v->tl_n = 0;
    v->tl_head = 0;
    for (i = skip; i < k; i++)
        timeline_add(v, cc_convtl_ts(&all[i]), all[i].type, all[i].channel,
                     all[i].contact_n);
}

/* A merge keeps the customer's longest wait: of the two response clocks
 * the one that started first, its start then counted from the merged
 * conversation's start (the earlier of the two). Runs before v's start
 * moves; the caller arms the timer after. */
static void
merge_clock(struct cc_engine *e, struct cc_conv *v, const struct cc_conv *w) {
    int64_t ws = w->started_ts + (int64_t)w->resp.start;
    int64_t vs = v->started_ts + (int64_t)v->resp.start;
    int64_t base =
        w->started_ts < v->started_ts ? w->started_ts : v->started_ts;
    int64_t start;

    if (w->resp.sched != 0 && (v->resp.sched == 0 || ws < vs)) {
        v->resp = w->resp; /* its start is set below */
        start = ws;
    } else if (v->resp.sched != 0) {
        start = vs;
    } else {
        v->resp.start = 0; /* no clock: forget the last reply's time */
        return;
    }
    if ((uint64_t)(start - base) > UINT32_MAX) {
        v->resp.sched = 0;
        e->slas->full++;
        return;
    }
    v->resp.start = (uint32_t)(start - base);
}

/* The merged conversation's resolution clock is the older one's (it
 * started with the merged conversation), or the other's if the older has
 * none. It runs if either ran: a paused clock resumes from when both
 * waited on the agent, the later of its pause and the other's resume.
 * Runs before v's start moves. */
static void
merge_res_clock(struct cc_engine *e, struct cc_conv *v,
                const struct cc_conv *w) {
    const struct cc_conv *old = w->started_ts < v->started_ts ? w : v;
    const struct cc_conv *from = old->res.sched != 0 ? old : old == v ? w : v;
    const struct cc_conv *other = from == v ? w : v;
    struct cc_res_clock r = from->res;
    int64_t seg = from->started_ts + (int64_t)r.seg;

    if (r.sched != 0 && r.paused && other->res.sched != 0 &&
        !other->res.paused) {
        int64_t os = other->started_ts + (int64_t)other->res.seg;
        if (os > seg)
            seg = os;
        r.paused = 0;
    }
    if (r.sched != 0) {
        if ((uint64_t)(seg - old->started_ts) > UINT32_MAX) {
            r.sched = 0;
            e->slas->full++;
        } else {
            r.seg = (uint32_t)(seg - old->started_ts);
        }
    }
    v->res = r;
}

/* Moves everything of w into v and closes w. */
static void
conv_merge(struct cc_engine *e, struct cc_conv *v, struct cc_conv *w) {
    uint32_t offset = v->ncontacts;
    struct cc_convct *ce;
    struct cc_contact *c, *next;
    unsigned i;

    for (ce = w->contacts; ce != NULL; ce = ce->next) {
        ce->n += offset;
        if (ce->live != NULL)
            ce->live->conv_n = ce->n;
    }
    timeline_merge(v, w, offset);
    v->contacts = entries_merge(v->contacts, w->contacts);
    v->nentries = (uint8_t)(v->nentries + w->nentries);
    for (ce = v->contacts; ce != NULL && ce->next != NULL; ce = ce->next)
        ;
    v->newest = ce;
    w->contacts = w->newest = NULL;
    w->nentries = 0;
    entries_trim(e, v);
    for (c = w->live; c != NULL; c = next) {
        next = c->cvnext;
        c->conv = v;
        c->cvprev = NULL;
        c->cvnext = v->live;
        if (v->live != NULL)
            v->live->cvprev = c;
        v->live = c;
    }
    v->nlive += w->nlive;
    w->live = NULL;
    w->nlive = 0;
    for (i = 0; i < w->nchan; i++)
        channel_touch(v, w->chan[i], w->chan_ts[i]);
    /* channel_touch appends: restore first-touch order. */
    for (i = 1; i < v->nchan; i++) {
        unsigned j = i;
        while (j > 0 && v->chan_ts[j - 1] > v->chan_ts[j]) {
            int64_t t = v->chan_ts[j];
            uint8_t ch = v->chan[j];
            v->chan_ts[j] = v->chan_ts[j - 1];
            v->chan[j] = v->chan[j - 1];
            v->chan_ts[j - 1] = t;
            v->chan[j - 1] = ch;
            j--;
        }
    }
    if (v->nchan > 0)
        v->first_channel = v->chan[0];
    for (i = CONV_AGENTS; i-- > 0;)
        name_set_put(w->agents, CONV_AGENTS, v->agents[i]);
    memcpy(v->agents, w->agents, sizeof(v->agents));
    for (i = CONV_QUEUES; i-- > 0;)
        name_set_put(w->queues, CONV_QUEUES, v->queues[i]);
    memcpy(v->queues, w->queues, sizeof(v->queues));
    for (i = CONV_TAGS; i-- > 0;)
        name_set_put(w->tags, CONV_TAGS, v->tags[i]);
    memcpy(v->tags, w->tags, sizeof(v->tags));
    cc_conv_tags_changed(v);
    if (v->topic == 0)
        v->topic = w->topic;
    v->flags |= w->flags & CVF_CALLBACK;
    if ((w->flags & CVF_SENTIMENT) &&
        (!(v->flags & CVF_SENTIMENT) || w->last_ts > v->last_ts)) {
        v->sentiment = w->sentiment;
        v->flags |= CVF_SENTIMENT;
    }
    if (w->feedback_n != 0 && w->feedback_ts >= v->feedback_ts) {
        v->feedback_score = w->feedback_score;
        v->feedback_scale = w->feedback_scale;
        v->feedback_ts = w->feedback_ts;
    }
    v->feedback_n += w->feedback_n;
    v->ncontacts += w->ncontacts;
    v->msgs_in += w->msgs_in;
    v->msgs_out += w->msgs_out;
    v->transfers += w->transfers;
    v->holds += w->holds;
    v->hold_ms += w->hold_ms;
    v->waits += w->waits;
    v->wait_ms += w->wait_ms;
    if (w->max_wait_ms > v->max_wait_ms)
        v->max_wait_ms = w->max_wait_ms;
    v->switches += w->switches;
    v->repeats += w->repeats;
    v->reopens += w->reopens;
    v->merges += w->merges + 1;
    merge_clock(e, v, w);
    merge_res_clock(e, v, w);
    if (w->started_ts < v->started_ts)
        v->started_ts = w->started_ts;
    cc_conv_arm_clock(e, v);
    if (w->last_ts > v->last_ts)
        v->last_ts = w->last_ts;
    if (w->last_end_ts > v->last_end_ts)
        v->last_end_ts = w->last_end_ts;
    if (w->last_seen > v->last_seen)
        v->last_seen = w->last_seen;
    e->convs.merges++;
    if (e->convs.forward.cap != 0)
        cc_dedup_put(&e->convs.forward, id_fingerprint(w->id), v->id);
    w->cust = NULL;
    conv_free(e, w);
}

static void
on_merge(struct cc_identity *id, struct cc_customer *into,
         struct cc_customer *from, void *arg) {
    struct cc_engine *e = arg;
    struct cc_conv *a = into->owner, *b = from->owner, *keep, *other;

    (void)id;
    from->owner = NULL;
    if (b == NULL)
        return;
    b->cust = NULL;
    if (a == NULL) {
        keep = b;
    } else if (a->state == CV_OPEN && b->state == CV_OPEN) {
        /* The older conversation survives. */
        if (b->started_ts < a->started_ts ||
            (b->started_ts == a->started_ts && b->id < a->id)) {
            keep = b;
            other = a;
        } else {
            keep = a;
            other = b;
        }
        other->cust = NULL;
        conv_merge(e, keep, other);
    } else if (a->state == CV_OPEN ||
               (b->state != CV_OPEN && a->resolved_ts >= b->resolved_ts)) {
        /* An open conversation wins over a resolved one, and of two
         * resolved ones the later: the other stays findable by id until
         * its window ends, without a customer. */
        keep = a;
    } else {
        a->cust = NULL;
        keep = b;
    }
    into->owner = keep;
    keep->cust = into;
}

/* ---- packing --------------------------------------------------------------
 */

static char *
w_name_set(char *d, const struct cc_engine *e, const uint32_t *set,
           size_t cap) {
    size_t n = 0, i;
    while (n < cap && set[n] != 0)
        n++;
    d = cc_w_array(d, (uint32_t)n);
    for (i = 0; i < n; i++) {
        const struct cc_name *nm = cc_name_at(e, set[i]);
        d = cc_w_str(d, nm->s, nm->len);
    }
    return d;
}

static const char *
entry_outcome(const struct cc_convct *ce) {
    uint8_t o = ce->outcome | (ce->live ? contact_outcome(ce->live) : 0);

    if (o & CO_CALLBACK)
        return "callback";
    if (o & CO_TRANSFERRED)
        return "transferred";
    if (o & CO_ANSWERED)
        return "answered";
    if (o & CO_ABANDONED)
        return "abandoned";
    if (ce->live != NULL)
        return live_state_names[ce->live->state];
    return ce->outcome & CO_EXPIRED ? "expired" : "unanswered";
}

/* Keys, numbers and an outcome; the contact, channel and agent. */
#define ENTRY_MAX (96 + CC_W_STR_MAX(CC_CONTACT_MAX) + CHANNEL_MAX + NAME_MAX_W)

static char *
w_entry(char *d, const struct cc_engine *e, const struct cc_convct *ce) {
    const char *outcome = entry_outcome(ce);

    d = cc_w_map(d, 7);
    d = cc_w_kv_u64(d, "n", ce->n);
    d = cc_w_lit(d, "channel");
    d = w_channel(d, e, ce->channel);
    d = cc_w_lit(d, "contact");
    d = cc_w_str(d, ce->id, ce->id_len);
    d = cc_w_kv_u64(d, "opened_ts", (uint64_t)ce->opened_ts);
    d = cc_w_lit(d, "ended_ts");
    if (ce->live == NULL && (ce->outcome & CO_ENDED))
        d = cc_w_u64(d, (uint64_t)ce->ended_ts);
    else
        d = cc_w_nil(d);
    d = cc_w_lit(d, "outcome");
    d = cc_w_str(d, outcome, strlen(outcome));
    d = cc_w_lit(d, "agent");
    return w_name_or_nil(d, ce->live != NULL ? ce->live->agent : ce->agent);
}

static char *
w_i64_or_nil(char *d, bool have, int64_t v) {
    return have ? cc_w_i64(d, v) : cc_w_nil(d);
}

/* The most w_conv writes for v: the summary has a fixed bound; the full
 * context adds identifiers, history and timeline, bounded by their counts. */
static size_t
conv_pack_max(const struct cc_conv *v, bool full) {
    size_t n = 700 + 2 * ID_MAX + CONV_CHANNELS * CHANNEL_MAX + ENTRY_MAX +
               (CONV_AGENTS + CONV_QUEUES + CONV_TAGS + 1) * NAME_MAX_W;
    if (!full)
        return n;
    n += 64 + (size_t)v->nentries * ENTRY_MAX +
         (size_t)v->tl_n * (48 + CHANNEL_MAX + 2 * CC_W_NUM_MAX);
    if (v->cust != NULL)
        n += (size_t)v->cust->nmembers * CC_W_STR_MAX(16 + CC_IDENT_MAX);
    return n;
}

static char *
w_conv(char *d, struct cc_engine *e, const struct cc_conv *v, bool full) {
    const struct cc_contact *c;
    const struct cc_convct *ce;
    uint64_t hold = v->hold_ms;
    unsigned i;

    for (c = v->live; c != NULL; c = c->cvnext)
        hold += c->hold_total_ms;
    d = cc_w_map(d, full ? 26 : 23);
    d = cc_w_lit(d, "conversation");
    d = w_conv_id(d, v);
    d = cc_w_lit(d, "customer");
    d = w_customer_id(d, v->cust);
    d = cc_w_lit(d, "status");
    d = v->state == CV_OPEN ? cc_w_lit(d, "open") : cc_w_lit(d, "resolved");
    d = cc_w_kv_u64(d, "started_ts", (uint64_t)v->started_ts);
    d = cc_w_kv_u64(d, "last_ts", (uint64_t)v->last_ts);
    d = cc_w_lit(d, "resolved_ts");
    d = w_i64_or_nil(d, v->resolves != 0, v->resolved_ts);
    d = cc_w_lit(d, "channels");
    d = w_channels(d, e, v);
    d = cc_w_kv_u64(d, "contacts", v->ncontacts);
    d = cc_w_kv_u64(d, "open_contacts", v->nlive);
    d = cc_w_lit(d, "last_contact");
    d = v->newest != NULL ? w_entry(d, e, v->newest) : cc_w_nil(d);
    d = cc_w_kv_u64(d, "messages_in", v->msgs_in);
    d = cc_w_kv_u64(d, "messages_out", v->msgs_out);
    d = cc_w_kv_u64(d, "transfers", v->transfers);
    d = cc_w_kv_u64(d, "holds", v->holds);
    d = cc_w_kv_u64(d, "hold_ms", hold);
    d = cc_w_lit(d, "waits");
    d = cc_w_map(d, 3);
    d = cc_w_kv_u64(d, "count", v->waits);
    d = cc_w_kv_u64(d, "total_ms", v->wait_ms);
    d = cc_w_kv_u64(d, "max_ms", v->max_wait_ms);
    d = cc_w_lit(d, "agents");
    d = w_name_set(d, e, v->agents, CONV_AGENTS);
    d = cc_w_lit(d, "queues");
    d = w_name_set(d, e, v->queues, CONV_QUEUES);
    d = cc_w_lit(d, "topic");
    d = w_name_or_nil(d, cc_name_at(e, v->topic));
    d = cc_w_lit(d, "tags");
    d = w_name_set(d, e, v->tags, CONV_TAGS);
    d = cc_w_lit(d, "sentiment");
    if (v->flags & CVF_SENTIMENT)
        d = cc_w_double(d, v->sentiment);
    else
        d = cc_w_nil(d);
    d = cc_w_lit(d, "feedback");
    if (v->feedback_n != 0) {
        d = cc_w_map(d, 4);
        d = cc_w_kv_u64(d, "count", v->feedback_n);
        d = cc_w_lit(d, "score");
        d = cc_w_i64(d, v->feedback_score);
        d = cc_w_lit(d, "scale");
        d = v->feedback_scale == 2 ? cc_w_lit(d, "nps") : cc_w_lit(d, "csat");
        d = cc_w_kv_u64(d, "ts", (uint64_t)v->feedback_ts);
    } else {
        d = cc_w_nil(d);
    }
    d = cc_w_lit(d, "measures");
    d = cc_w_map(d, 6);
    d = cc_w_kv_u64(d, "contacts", v->ncontacts);
    d = cc_w_kv_u64(d, "switches", v->switches);
    d = cc_w_kv_u64(d, "repeats", v->repeats);
    d = cc_w_kv_u64(d, "reopens", v->reopens);
    d = cc_w_kv_u64(d, "merges", v->merges);
    d = cc_w_lit(d, "first_contact_resolution");
    if (v->resolves != 0)
        d = cc_w_bool(d, v->ncontacts <= 1 && v->reopens == 0);
    else
        d = cc_w_nil(d);
    if (!full)
        return d;

    d = cc_w_lit(d, "identifiers");
    if (v->cust != NULL) {
        const struct cc_idnode *m;
        d = cc_w_array(d, v->cust->nmembers);
        for (m = v->cust->members; m != NULL; m = m->cnext)
            d = w_ident(d, m->kind, m->s, m->len);
    } else {
        d = cc_w_array(d, 0);
    }
    d = cc_w_lit(d, "contact_history");
    d = cc_w_array(d, v->nentries);
    for (ce = v->contacts; ce != NULL; ce = ce->next)
        d = w_entry(d, e, ce);
    d = cc_w_lit(d, "timeline");
    d = cc_w_array(d, v->tl_n);
    for (i = 0; i < v->tl_n; i++) {
        const struct cc_convtl *t = timeline_at(v, i);
        const char *tn = cc_event_type_name((enum cc_event_type)t->type);
        d = cc_w_map(d, 4);
        d = cc_w_kv_u64(d, "ts", (uint64_t)cc_convtl_ts(t));
        d = cc_w_lit(d, "type");
        d = cc_w_str(d, tn, strlen(tn));
        d = cc_w_lit(d, "channel");
        d = w_channel(d, e, t->channel);
        d = cc_w_lit(d, "contact");
        d = t->contact_n != 0 ? cc_w_u64(d, t->contact_n) : cc_w_nil(d);
    }
    return d;
}

void
cc_conv_pack(struct cc_engine *e, msgpack_packer *pk, const struct cc_conv *v,
             bool full) {
    size_t max = conv_pack_max(v, full);
    char *start = cc_pack_reserve(pk, max), *d;

    d = w_conv(start, e, v, full);
    CC_ASSERT((size_t)(d - start) <= max);
    cc_pack_finish(pk, d);
}

/* ---- stats ----------------------------------------------------------------
 */

void
cc_convs_pack_stats(const struct cc_engine *e, msgpack_packer *pk) {
    const struct cc_convs *cs = &e->convs;

    msgpack_pack_map(pk, 20);
    cc_pack_kv_u64(pk, "open", cs->open);
    cc_pack_kv_u64(pk, "resolved_in_window", cs->resolved_now);
    cc_pack_kv_u64(pk, "started", cs->started);
    cc_pack_kv_u64(pk, "contacts", cs->contacts);
    cc_pack_str(pk, "contacts_per_conversation");
    msgpack_pack_double(
        pk, cs->started ? (double)cs->contacts / (double)cs->started : 0.0);
    cc_pack_kv_u64(pk, "switches", cs->switches);
    cc_pack_kv_u64(pk, "repeats", cs->repeats);
    cc_pack_kv_u64(pk, "reopens", cs->reopens);
    cc_pack_kv_u64(pk, "resolved", cs->resolved);
    cc_pack_kv_u64(pk, "first_contact_resolutions", cs->fcr);
    cc_pack_str(pk, "first_contact_resolution_rate");
    msgpack_pack_double(
        pk, cs->resolved ? (double)cs->fcr / (double)cs->resolved : 0.0);
    cc_pack_kv_u64(pk, "merges", cs->merges);
    cc_pack_kv_u64(pk, "idle_closed", cs->idle_closed);
    cc_pack_kv_u64(pk, "anonymous_contacts", cs->anonymous);
    cc_pack_kv_u64(pk, "threaded_contacts", cs->threaded);
    cc_pack_kv_u64(pk, "refused", cs->refused);
    cc_pack_kv_u64(pk, "resolve_unknown", e->resolve_unknown);
    cc_pack_kv_u64(pk, "max", e->cfg.max_conversations);
    cc_pack_kv_u64(pk, "thread_index", cs->threads.count);
    cc_pack_kv_u64(pk, "bytes", cc_convs_bytes(e));
}

void
cc_convs_pack_chan_stats(const struct cc_engine *e, msgpack_packer *pk,
                         unsigned ch) {
    const struct conv_chan_stats *s = &e->convs.chan[ch];

    msgpack_pack_map(pk, 7);
    cc_pack_kv_u64(pk, "started", s->started);
    cc_pack_kv_u64(pk, "contacts", s->contacts);
    cc_pack_kv_u64(pk, "switches", s->switches);
    cc_pack_kv_u64(pk, "repeats", s->repeats);
    cc_pack_kv_u64(pk, "reopens", s->reopens);
    cc_pack_kv_u64(pk, "resolved", s->resolved);
    cc_pack_kv_u64(pk, "first_contact_resolutions", s->fcr);
}

/* ---- queries --------------------------------------------------------------
 */

int
cc_engine_pack_conversation_by_ident(struct cc_engine *e,
                                     enum cc_ident_kind kind,
                                     struct cc_str value, msgpack_packer *pk,
                                     const char **why) {
    char buf[CC_IDENT_NORM_MAX];
    struct cc_idnode *n;
    struct cc_conv *v;
    int len;

    len = cc_ident_normalize(kind, value, e->cfg.default_country, buf,
                             sizeof(buf), why);
    if (len < 0)
        return CC_EINVAL;
    n = cc_identity_find(&e->ident, kind, (struct cc_str){buf, (uint32_t)len});
    v = n != NULL ? n->cust->owner : NULL;
    if (v == NULL) {
        *why = n == NULL ? "no customer has this identifier"
                         : "the customer has no open or recently resolved "
                           "conversation";
        return CC_ENOENT;
    }
    cc_conv_pack(e, pk, v, true);
    return 0;
}

int
cc_conv_by_name(const struct cc_engine *e, struct cc_str id,
                struct cc_conv **out, const char **why) {
    uint64_t n = 0;
    uint32_t i;

    if (id.n < 4 || id.n > 23 || memcmp(id.p, "cv-", 3) != 0) {
        *why = "a conversation id looks like cv-12";
        return CC_EINVAL;
    }
    for (i = 3; i < id.n; i++) {
        if (id.p[i] < '0' || id.p[i] > '9') {
            *why = "a conversation id looks like cv-12";
            return CC_EINVAL;
        }
        n = n * 10 + (uint64_t)(id.p[i] - '0');
    }
    *out = cc_conv_find(e, n);
    if (*out == NULL) {
        *why = "no such conversation: unknown, or closed (idle past "
               "[conversation] idle_close, or past its reopen window)";
        return CC_ENOENT;
    }
    return 0;
}

int
cc_engine_pack_conversation_by_id(struct cc_engine *e, struct cc_str id,
                                  msgpack_packer *pk, const char **why) {
    struct cc_conv *v;
    int rc = cc_conv_by_name(e, id, &v, why);

    if (rc == 0)
        cc_conv_pack(e, pk, v, true);
    return rc;
}

/* ---- snapshot support (snapshot.c) ------------------------------------ */

cc_timer_cb
cc__conv_timer_cb(void) {
    return conv_timer_cb;
}

uint64_t
cc__conv_bucket(const struct cc_convs *cs, uint64_t id) {
    return conv_bucket(cs, id);
}

struct cc_conv *
cc__conv_find_direct(const struct cc_engine *e, uint64_t id) {
    return find_direct(&e->convs, id);
}
