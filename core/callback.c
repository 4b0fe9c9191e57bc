/*
 * Callbacks: who is offered one and when, the place an accepted callback
 * keeps in its queue, when it is dialled, and what becomes of it.
 *
 * An offer is made to a waiting caller with a phone number when one of
 * its queue's rules calls for it (estimated wait, place in line, time
 * waited: cbconfig.h) and no gate stops it: the customer already has a
 * callback pending (on any channel: the conversation knows), the queue has
 * max_pending callbacks, the pending ones would keep its agents busy past
 * load_horizon, or the queue's business hours close before the callback
 * could be made. The offer lapses after offer_expires; a re-offer may
 * follow after reoffer_after.
 *
 * An accepted offer leaves a place in the queue where the caller was: a
 * record in the waiting list like a caller's, counted in the queue's length
 * and in every estimate behind it. When the place's turn is within
 * dial_lead (by the same estimate a caller there would be given), it is
 * dialled: callback.dial on the trigger socket, and the place leaves the
 * queue. A customer who asked for a time is dialled then instead, within
 * business hours. A failed attempt is dialled again after retry_delay, up
 * to max_attempts, and then supervisors are told (callback.failed). A
 * callback not dialled by the end of the window its offer promised raises
 * callback.overdue. One whose customer is served on another contact, or
 * whose conversation is resolved, is cancelled.
 *
 * The work is proportional to callbacks, not to callers: a queue with no
 * places costs nothing more per event, and a dial check reads the queue
 * from its head only as far as the lead time reaches. The exception is
 * the place in line of a caller offered by the waited rule or re-offered,
 * counted by a walk from the head (at most POSITION_WALK entries).
 */
#include "engine_int.h"

#include <stdio.h>
#include <string.h>

enum gate { G_NO_PHONE, G_PENDING, G_MAX_PENDING, G_LOAD, G_HOURS, G__COUNT };

static const char *const gate_names[G__COUNT] = {
    "no_phone", "pending_callback", "max_pending", "projected_load",
    "after_hours"};

_Static_assert(G__COUNT ==
                   sizeof(((struct cc_callbacks *)0)->gated) / sizeof(uint64_t),
               "a counter per gate");

#define POSITION_WALK 100000 /* callers a place-in-line count reads */
#define DIAL_WALK 4096       /* entries from the head a dial check reads */
#define MIN_BUCKETS 64
#define MAX_AHEAD_MS (7 * 86400000ULL) /* how far ahead `at` may ask */

#define COUNT(e, q, f) ((e)->cbs.st.f++, (q)->cbst.f++)

static void cb_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now);
static void emit_alert(struct cc_engine *e, struct cc_callback *cb,
                       const char *alert, const char *reason, uint64_t now);

static uint64_t
pol(const struct cc_queue *q, enum cc_cb_key k) {
    return q->cb->v[k];
}

/* ---- the table, by contact -------------------------------------------- */

int
cc_cbs_init(struct cc_engine *e) {
    e->cbs.buckets = cc_calloc(MIN_BUCKETS, sizeof(*e->cbs.buckets));
    if (e->cbs.buckets == NULL)
        return CC_ENOMEM;
    e->cbs.mask = MIN_BUCKETS - 1;
    return 0;
}

static size_t
cb_size(const struct cc_callback *cb) {
    return sizeof(*cb) + cb->id_len + cb->cust_len;
}

void
cc_cbs_fini(struct cc_engine *e) {
    struct cc_callback *cb, *next;
    uint64_t i;

    if (e->cbs.buckets == NULL)
        return;
    for (i = 0; i <= e->cbs.mask; i++)
        for (cb = e->cbs.buckets[i]; cb != NULL; cb = next) {
            next = cb->hnext;
            if (cb->place != NULL) /* teardown: the queues go too */
                cc_pool_put(&e->contacts, cb->place);
            cc_wheel_cancel(&e->wheel, &cb->timer);
            cc_free(cb, cb_size(cb));
        }
    cc_free(e->cbs.buckets, (e->cbs.mask + 1) * sizeof(*e->cbs.buckets));
    e->cbs.buckets = NULL;
}

void
cc_cbs_policies(struct cc_engine *e) {
    uint64_t i;

    for (i = 0; i < e->nqueues; i++) {
        struct cc_queue *q = e->queues[i];
        q->cb = cc_cb_policy_for(&e->cfg.cb, q->name->s, q->name->len);
    }
}

static struct cc_callback *
cb_find(const struct cc_engine *e, unsigned channel, const char *id, size_t n,
        uint64_t h) {
    struct cc_callback *cb;

    for (cb = e->cbs.buckets[h & e->cbs.mask]; cb != NULL; cb = cb->hnext)
        if (cb->hash == h && cb->channel == channel && cb->id_len == n &&
            memcmp(cb->data, id, n) == 0)
            return cb;
    return NULL;
}

static struct cc_callback *
cb_of(const struct cc_engine *e, const struct cc_contact *c) {
    return cb_find(e, c->channel, contact_id(c), c->id_len, c->hash);
}

static int
table_grow(struct cc_engine *e) {
    uint64_t nb = (e->cbs.mask + 1) * 2, i;
    struct cc_callback **b = cc_calloc(nb, sizeof(*b)), *cb, *next;

    if (b == NULL)
        return CC_ENOMEM;
    for (i = 0; i <= e->cbs.mask; i++)
        for (cb = e->cbs.buckets[i]; cb != NULL; cb = next) {
            next = cb->hnext;
            cb->hnext = b[cb->hash & (nb - 1)];
            b[cb->hash & (nb - 1)] = cb;
        }
    cc_free(e->cbs.buckets, (e->cbs.mask + 1) * sizeof(*e->cbs.buckets));
    e->cbs.buckets = b;
    e->cbs.mask = nb - 1;
    return 0;
}

/* A record for an offer to c, in the table. */
static struct cc_callback *
cb_new(struct cc_engine *e, const struct cc_contact *c) {
    struct cc_callback *cb;
    size_t size = sizeof(*cb) + c->id_len + c->cust_len;

    if (e->cbs.n >= e->cbs.mask + 1)
        (void)table_grow(e); /* failing: longer chains, nothing lost */
    cb = cc_calloc(1, size);
    if (cb == NULL)
        return NULL;
    cb->hash = c->hash;
    cb->channel = c->channel;
    cb->id_len = c->id_len;
    cb->cust_len = c->cust_len;
    memcpy(cb->data, contact_id(c), c->id_len);
    if (c->cust_len != 0)
        memcpy(cb->data + c->id_len, contact_customer(c), c->cust_len);
    cb->queue = c->queue;
    cb->join_ts = c->queued_ts;
    cb->prio1 = c->prio1;
    cb->ewt_ms = -1;
    cc_timer_init(&cb->timer, cb_timer_cb);
    cb->hnext = e->cbs.buckets[cb->hash & e->cbs.mask];
    e->cbs.buckets[cb->hash & e->cbs.mask] = cb;
    e->cbs.n++;
    e->cbs.bytes += size;
    return cb;
}

static bool
cb_is_accepted(const struct cc_callback *cb) {
    return cb->state >= CB_WAITING;
}

/* Takes the place out of its queue. */
static void
place_drop(struct cc_engine *e, struct cc_callback *cb) {
    struct cc_contact *p = cb->place;

    if (p == NULL)
        return;
    cc_queue_remove(p);
    cb->queue->places--;
    cc_pool_put(&e->contacts, p);
    e->cbs.bytes -= CONTACT_STRIDE;
    cb->place = NULL;
}

static void
cb_free(struct cc_engine *e, struct cc_callback *cb) {
    struct cc_callback **pp = &e->cbs.buckets[cb->hash & e->cbs.mask];

    place_drop(e, cb);
    if (cb->state == CB_DIALLING)
        cb->queue->dialling--;
    if (cb_is_accepted(cb)) {
        if (cb->prev != NULL)
            cb->prev->next = cb->next;
        else
            e->cbs.accepted = cb->next;
        if (cb->next != NULL)
            cb->next->prev = cb->prev;
        cb->queue->pending--;
        e->cbs.pending--;
    }
    cc_wheel_cancel(&e->wheel, &cb->timer);
    while (*pp != cb)
        pp = &(*pp)->hnext;
    *pp = cb->hnext;
    e->cbs.n--;
    e->cbs.bytes -= cb_size(cb);
    cc_free(cb, cb_size(cb));
}

/* Frees cb; when it had a place, the places behind it move up. */
static void
cb_done(struct cc_engine *e, struct cc_callback *cb, uint64_t now) {
    struct cc_queue *q = cb->queue;
    bool had_place = cb->place != NULL;

    cb_free(e, cb);
    if (had_place)
        cc_cb_queue_changed(e, q, now);
}

/* ---- what triggers and alerts say -------------------------------------- */

/* "<rule>:<channel>:<contact>:<join ts>", then ":<n>" when n > 1. */
static void
pack_cb_id(struct cc_engine *e, msgpack_packer *pk, const char *rule,
           const struct cc_callback *cb, uint32_t n) {
    char buf[64 + CC_CHANNEL_NAME_MAX + CC_CONTACT_MAX];
    int k;

    k = snprintf(buf, sizeof(buf), "%s:%s:%.*s:%lld", rule,
                 e->cfg.channels.names[cb->channel], (int)cb->id_len, cb->data,
                 (long long)cb->join_ts);
    if (n > 1 && k > 0 && (size_t)k < sizeof(buf))
        k += snprintf(buf + k, sizeof(buf) - (size_t)k, ":%u", n);
    cc_pack_strn(pk, buf,
                 k > 0 && (size_t)k < sizeof(buf) ? (size_t)k : strlen(buf));
}

/* The same five pairs as cc_pack_contact_fields(), from the record. */
static void
pack_cb_fields(struct cc_engine *e, msgpack_packer *pk,
               const struct cc_callback *cb) {
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, cb->conv ? cc_conv_find(e, cb->conv) : NULL);
    cc_pack_str(pk, "contact");
    cc_pack_strn(pk, cb->data, cb->id_len);
    cc_pack_str(pk, "channel");
    cc_pack_str(pk, e->cfg.channels.names[cb->channel]);
    cc_pack_str(pk, "customer");
    if (cb->cust_len != 0) {
        char *d = cc_pack_reserve(pk, cb->cust_len);
        memcpy(d, cb->data + cb->id_len, cb->cust_len);
        cc_pack_finish(pk, d + cb->cust_len);
    } else {
        msgpack_pack_nil(pk);
    }
    cc_pack_str(pk, "queue");
    cc_pack_name_or_nil(pk, cb->queue->name);
}

void
cc_cb_pack_place(struct cc_engine *e, msgpack_packer *pk,
                 const struct cc_contact *place) {
    pack_cb_fields(e, pk, cc_place_callback(place));
}

static void
pack_window(msgpack_packer *pk, const struct cc_callback *cb) {
    cc_pack_str(pk, "window");
    msgpack_pack_map(pk, 2);
    cc_pack_kv_u64(pk, "from", cb->window_from);
    cc_pack_kv_u64(pk, "to", cb->window_to);
}

static void
pack_number(msgpack_packer *pk, const struct cc_callback *cb) {
    cc_pack_str(pk, "number");
    cc_pack_strn(pk, cb->number, cb->number_len);
}

/* Starts a trigger (kind CC_OUT_CALLBACK, key "type") or an alert
 * (CC_OUT_ALERT, key "alert", topic its name) of `pairs` pairs: its name,
 * id (n as in pack_cb_id()) and time. */
static void
record_begin(struct cc_engine *e, enum cc_out_kind kind, const char *name,
             const struct cc_callback *cb, uint32_t n, uint32_t pairs,
             uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;

    cc_outbox_begin(&e->outbox, kind, kind == CC_OUT_ALERT ? name : NULL);
    msgpack_pack_map(pk, pairs);
    cc_pack_str(pk, kind == CC_OUT_ALERT ? "alert" : "type");
    cc_pack_str(pk, name);
    cc_pack_str(pk, "id");
    pack_cb_id(e, pk, name, cb, n);
    cc_pack_str(pk, "ts");
    cc_pack_u64(pk, now);
}

/* An estimate's figure, nil without an estimate. */
static void
pack_est_ms(msgpack_packer *pk, const char *key, const struct cc_wait_est *w,
            uint64_t v) {
    cc_pack_str(pk, key);
    if (w->why == NULL)
        cc_pack_u64(pk, v);
    else
        msgpack_pack_nil(pk);
}

/* callback.cancel: an offer withdrawn (the caller left the queue, or it
 * expired) or a callback no longer needed. */
static void
emit_cancel(struct cc_engine *e, struct cc_callback *cb, uint64_t now,
            const char *why) {
    msgpack_packer *pk = &e->outbox.pk;

    record_begin(e, CC_OUT_CALLBACK, "callback.cancel", cb, cb->offers, 10,
                 now);
    pack_cb_fields(e, pk, cb);
    cc_pack_str(pk, "of");
    cc_pack_str(pk, cb_is_accepted(cb) ? "callback" : "offer");
    cc_pack_str(pk, "reason");
    cc_pack_str(pk, why);
    cc_outbox_end(&e->outbox);
    COUNT(e, cb->queue, cancelled);
}

/* ---- offers ------------------------------------------------------------- */

/* The callback's number: the customer's phone in E.164, or the gate's
 * no. */
static bool
cb_number(const struct cc_engine *e, const struct cc_contact *c, char *out,
          size_t cap, size_t *n) {
    struct cc_str raw = cc_contact_phone(c);
    char norm[CC_IDENT_NORM_MAX];
    const char *why;
    int len;

    if (raw.n == 0)
        return false;
    len = cc_ident_normalize(CC_IDENT_PHONE, raw, e->cfg.default_country, norm,
                             sizeof(norm), &why);
    if (len <= 0 || (size_t)len >= cap)
        return false;
    memcpy(out, norm, (size_t)len);
    *n = (size_t)len;
    return true;
}

/* Whether conversation v has a callback accepted and not done; clears its
 * mark when it has none. */
static bool
conv_has_pending(struct cc_engine *e, struct cc_conv *v) {
    const struct cc_callback *cb;

    for (cb = e->cbs.accepted; cb != NULL; cb = cb->next)
        if (cb->conv != 0 && cc_conv_find(e, cb->conv) == v)
            return true;
    v->flags &= (uint8_t)~CVF_CALLBACK;
    return false;
}

/* The next instant at or after t when business is open (t itself with no
 * calendar; CC_CAL_NEVER with none left). */
static uint64_t
next_open(const struct cc_calendar *cal, uint64_t t) {
    uint64_t at;

    if (cal == NULL || cc_cal_open(cal, t))
        return t;
    at = cc_cal_add(cal, t, 1);
    return at == CC_CAL_NEVER ? at : at - 1;
}

/* Which gate stops an offer to c, or -1: the cheap ones first. */
static int
offer_gate(struct cc_engine *e, struct cc_contact *c,
           const struct cc_wait_est *w, char *number, size_t *number_len,
           uint64_t now) {
    struct cc_queue *q = c->queue;
    uint32_t serving = q->agents[AG_AVAILABLE] + q->agents[AG_BUSY];
    const struct cc_calendar *cal;

    if (q->pending >= pol(q, CC_CB_MAX_PENDING))
        return G_MAX_PENDING;
    if (c->conv != NULL && (c->conv->flags & CVF_CALLBACK) &&
        conv_has_pending(e, c->conv))
        return G_PENDING;
    if (!cb_number(e, c, number, sizeof(((struct cc_callback *)0)->number),
                   number_len))
        return G_NO_PHONE;
    if (pol(q, CC_CB_LOAD_HORIZON) != 0 && serving != 0) {
        /* The work already promised, shared among the staffed agents. */
        const struct cc_sl_window *r =
            cc_sl_running(&q->sl, now, e->cfg.sl_window_min);
        if (r->handled != 0 && (double)(q->pending + 1) *
                                       ((double)r->handle_ms / r->handled) /
                                       serving >
                                   (double)pol(q, CC_CB_LOAD_HORIZON))
            return G_LOAD;
    }
    cal = cc_engine_cb_calendar(e, q);
    if (cal != NULL) {
        /* Open now, and still open when its turn would come. */
        uint64_t expect = w->why == NULL ? w->p50_ms : 0;
        if (!cc_cal_open(cal, now) ||
            cc_cal_between(cal, now, now + expect) < expect)
            return G_HOURS;
    }
    return -1;
}

static void
make_offer(struct cc_engine *e, struct cc_contact *c, const char *rule,
           uint64_t pos, const struct cc_wait_est *w, const char *number,
           size_t number_len, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    struct cc_queue *q = c->queue;
    struct cc_callback *cb = cb_of(e, c);
    uint64_t waited =
        now > (uint64_t)c->queued_ts ? now - (uint64_t)c->queued_ts : 0;

    /* One record per contact: one accepted is not offered over
     * (consider() gates it). */
    CC_ASSERT(cb == NULL || !cb_is_accepted(cb));
    if (cb == NULL && (cb = cb_new(e, c)) == NULL)
        return; /* out of memory: no offer, nothing promised */
    cb->state = CB_OFFERED;
    cb->declined = false;
    cb->offers++;
    cb->offered_ts = now;
    cb->ewt_ms = w->why == NULL ? (int64_t)w->p50_ms : -1;
    memcpy(cb->number, number, number_len);
    cb->number_len = (uint8_t)number_len;
    /* The promise: called by the estimate's p80 and a margin, or within
     * promise_max when there is no estimate. */
    cb->window_from = now;
    cb->window_to = now + pol(q, CC_CB_PROMISE_MARGIN) +
                    (w->why == NULL ? w->p80_ms : pol(q, CC_CB_PROMISE_MAX));
    cc_wheel_arm(&e->wheel, &cb->timer, now + pol(q, CC_CB_OFFER_EXPIRES));
    c->flags |= CF_OFFERED;

    record_begin(e, CC_OUT_CALLBACK, "callback.offer", cb, cb->offers, 17, now);
    cc_pack_contact_fields(e, pk, c);
    pack_number(pk, cb);
    cc_pack_kv_u64(pk, "position", pos);
    pack_est_ms(pk, "ewt_ms", w, w->p50_ms);
    pack_est_ms(pk, "ewt_p80_ms", w, w->p80_ms);
    cc_pack_kv_u64(pk, "waited_ms", waited);
    cc_pack_str(pk, "rule");
    cc_pack_str(pk, rule);
    pack_window(pk, cb);
    cc_pack_kv_u64(pk, "expires", now + pol(q, CC_CB_OFFER_EXPIRES));
    cc_pack_kv_u64(pk, "offer", cb->offers);
    cc_outbox_end(&e->outbox);
    COUNT(e, q, offers);
    if (cb->offers == 1)
        COUNT(e, q, offered_callers);
}

/* Offers c a callback if a rule calls for one and no gate stops it. pos
 * is its place in line when known (0: counted here). */
static void
consider(struct cc_engine *e, struct cc_contact *c, uint64_t pos,
         uint64_t now) {
    struct cc_queue *q = c->queue;
    uint64_t waited =
        now > (uint64_t)c->queued_ts ? now - (uint64_t)c->queued_ts : 0;
    struct cc_wait_est w;
    const char *rule = NULL;
    char number[sizeof(((struct cc_callback *)0)->number)];
    size_t number_len = 0;
    struct cc_callback *cb;
    int gate;

    /* A contact that rejoined a queue with its callback still to come is
     * not offered a second one. */
    if ((cb = cb_of(e, c)) != NULL && cb_is_accepted(cb)) {
        e->cbs.gated[G_PENDING]++;
        return;
    }
    if (pos == 0)
        pos = cc_queue_position(c, POSITION_WALK);
    cc_wait_estimate(e, q, pos - 1, now, &w);
    if (pol(q, CC_CB_WAIT_OVER) != 0 && w.why == NULL &&
        w.p50_ms > pol(q, CC_CB_WAIT_OVER))
        rule = "estimate";
    else if (pol(q, CC_CB_POSITION_OVER) != 0 &&
             pos > pol(q, CC_CB_POSITION_OVER))
        rule = "position";
    else if (pol(q, CC_CB_AFTER_WAITING) != 0 &&
             waited >= pol(q, CC_CB_AFTER_WAITING))
        rule = "waited";
    if (rule == NULL)
        return;
    gate = offer_gate(e, c, &w, number, &number_len, now);
    if (gate >= 0) {
        e->cbs.gated[gate]++;
        return;
    }
    make_offer(e, c, rule, pos, &w, number, number_len, now);
}

void
cc_cb_joined(struct cc_engine *e, struct cc_contact *c, uint64_t now) {
    const struct cc_queue *q = c->queue;

    if (pol(q, CC_CB_WAIT_OVER) == 0 && pol(q, CC_CB_POSITION_OVER) == 0)
        return;
    /* It is the last of its level: every caller at its level or above is
     * ahead of it. */
    consider(e, c, cc_queue_ahead(q, c->prio1), now);
}

uint64_t
cc_cb_waited_due(const struct cc_engine *e, const struct cc_contact *c) {
    uint64_t after = pol(c->queue, CC_CB_AFTER_WAITING);

    (void)e;
    if (after == 0 || (c->flags & (CF_OFFERED | CF_ACCEPTED | CF_NO_OFFER)))
        return CC_WHEEL_NEVER;
    return (uint64_t)c->queued_ts + after;
}

void
cc_cb_waited(struct cc_engine *e, struct cc_contact *c, uint64_t now) {
    consider(e, c, 0, now);
    c->flags |= CF_NO_OFFER; /* tried once by this rule, made or not */
}

void
cc_cb_left(struct cc_engine *e, struct cc_contact *c, uint64_t now,
           const char *why, bool abandoned) {
    struct cc_callback *cb = cb_of(e, c);

    c->flags &= (uint8_t)~CF_OFFERED;
    if (cb == NULL || cb_is_accepted(cb))
        return;
    if (cb->state == CB_OFFERED)
        emit_cancel(e, cb, now, why);
    if (abandoned)
        COUNT(e, cb->queue, offered_abandoned);
    cb_free(e, cb);
}

/* ---- dialling ----------------------------------------------------------- */

static void
emit_dial(struct cc_engine *e, struct cc_callback *cb, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    struct cc_queue *q = cb->queue;

    /* Attempt n has ":n" at the end from the second on. */
    record_begin(e, CC_OUT_CALLBACK, "callback.dial", cb, cb->attempts, 14,
                 now);
    pack_cb_fields(e, pk, cb);
    pack_number(pk, cb);
    cc_pack_kv_u64(pk, "attempt", cb->attempts);
    cc_pack_kv_u64(pk, "max_attempts", pol(q, CC_CB_MAX_ATTEMPTS));
    pack_window(pk, cb);
    cc_pack_str(pk, "scheduled");
    if (cb->dial_at != 0)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    cc_pack_kv_u64(pk, "waited_ms",
                   now > (uint64_t)cb->join_ts ? now - (uint64_t)cb->join_ts
                                               : 0);
    cc_outbox_end(&e->outbox);
}

static void
dial(struct cc_engine *e, struct cc_callback *cb, uint64_t now) {
    struct cc_queue *q = cb->queue;

    place_drop(e, cb);
    cb->attempts++;
    cb->state = CB_DIALLING;
    q->dialling++;
    if (!cb->first_dialled) {
        cb->first_dialled = true;
        COUNT(e, q, dialled);
        if (now <= cb->window_to)
            COUNT(e, q, on_time);
        else
            COUNT(e, q, late);
        /* Time the customer did not spend on hold. */
        e->cbs.st.saved_ms += now - cb->accepted_ts;
        q->cbst.saved_ms += now - cb->accepted_ts;
    }
    emit_dial(e, cb, now);
    cc_wheel_arm(&e->wheel, &cb->timer, now + pol(q, CC_CB_OUTCOME_WAIT));
}

/* A waiting place's timer: at `wake` (CC_CAL_NEVER: none), or at the end
 * of its promise if that comes first and has not passed. */
static void
arm_waiting(struct cc_engine *e, struct cc_callback *cb, uint64_t wake) {
    if (!cb->overdue && cb->window_to < wake)
        wake = cb->window_to;
    if (wake != CC_CAL_NEVER)
        cc_wheel_arm(&e->wheel, &cb->timer, wake);
}

/* Whether an entry with k entries ahead of it would be answered within
 * dial_lead. The customers of callbacks being dialled count ahead: each
 * takes the next agent. With no agent known to the queue at all, the
 * turn is the head's; with agents known but none on duty, it is not
 * near. */
static bool
turn_near(struct cc_engine *e, struct cc_queue *q, uint64_t k, uint64_t now) {
    uint32_t serving = q->agents[AG_AVAILABLE] + q->agents[AG_BUSY];
    uint32_t known = serving + q->agents[AG_AWAY] + q->agents[AG_OFFLINE];
    struct cc_wait_est w;

    k += q->dialling;
    if (known == 0)
        return k == 0;
    if (serving == 0)
        return false;
    cc_wait_estimate(e, q, k, now, &w);
    return w.why == NULL && w.p50_ms <= pol(q, CC_CB_DIAL_LEAD);
}

void
cc_cb_queue_changed(struct cc_engine *e, struct cc_queue *q, uint64_t now) {
    struct cc_contact *x, *next;
    const struct cc_calendar *cal;
    bool open;
    uint64_t k = 0;

    if (q->places == 0)
        return;
    cal = cc_engine_cb_calendar(e, q);
    open = cal == NULL || cc_cal_open(cal, now);
    /* Estimates grow with the place in line: read from the head until a
     * turn is further than the lead. */
    for (x = q->head; x != NULL && k < DIAL_WALK && q->places != 0; x = next) {
        next = x->qnext;
        if (!turn_near(e, q, k, now))
            break;
        if (cc_contact_is_place(x)) {
            struct cc_callback *cb = cc_place_callback(x);
            /* Out of business hours a place waits, and keeps its turn:
             * its timer wakes it at the opening (or at the end of its
             * promise, if that comes first). */
            if (open) {
                dial(e, cb, now); /* counted in q->dialling from now */
                continue;
            }
            arm_waiting(e, cb, next_open(cal, now));
        }
        k++;
    }
}

/* Dials now if business is open, else at the opening. */
static void
dial_in_hours(struct cc_engine *e, struct cc_callback *cb, uint64_t now) {
    const struct cc_calendar *cal = cc_engine_cb_calendar(e, cb->queue);
    uint64_t at = next_open(cal, now);

    if (at <= now) {
        dial(e, cb, now);
    } else if (at != CC_CAL_NEVER) {
        cc_wheel_arm(&e->wheel, &cb->timer, at);
    } else {
        /* The calendar has no hours left (a reload may have done it). */
        COUNT(e, cb->queue, failed);
        emit_alert(e, cb, "callback.failed", "no business hours left", now);
        cb_free(e, cb);
    }
}

/* ---- outcomes ------------------------------------------------------------ */

static void
emit_alert(struct cc_engine *e, struct cc_callback *cb, const char *alert,
           const char *reason, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;

    record_begin(e, CC_OUT_ALERT, alert, cb, 0, 14, now);
    pack_cb_fields(e, pk, cb);
    pack_number(pk, cb);
    cc_pack_kv_u64(pk, "attempts", cb->attempts);
    pack_window(pk, cb);
    cc_pack_kv_u64(pk, "accepted", cb->accepted_ts);
    cc_pack_kv_u64(pk, "late_ms",
                   now > cb->window_to ? now - cb->window_to : 0);
    cc_pack_str(pk, "reason");
    cc_pack_str(pk, reason);
    cc_outbox_end(&e->outbox);
}

static void
failed(struct cc_engine *e, struct cc_callback *cb, const char *reason,
       uint64_t now) {
    struct cc_queue *q = cb->queue;

    if (cb->state == CB_DIALLING) {
        q->dialling--;
        cb->state = CB_RETRY; /* not dialling while it waits */
    }
    if (cb->attempts < pol(q, CC_CB_MAX_ATTEMPTS)) {
        COUNT(e, q, retries);
        cc_wheel_arm(&e->wheel, &cb->timer, now + pol(q, CC_CB_RETRY_DELAY));
        cc_cb_queue_changed(e, q, now); /* not ahead of anyone meanwhile */
        return;
    }
    COUNT(e, q, failed);
    emit_alert(e, cb, "callback.failed", reason, now);
    cb_free(e, cb);
    cc_cb_queue_changed(e, q, now); /* one customer fewer ahead */
}

static void
cb_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct cc_engine *e = CC_CONTAINER_OF(w, struct cc_engine, wheel);
    struct cc_callback *cb = CC_CONTAINER_OF(t, struct cc_callback, timer);
    struct cc_queue *q = cb->queue;
    struct cc_contact *c;

    switch ((enum cc_cb_state)cb->state) {
    case CB_OFFERED:
        /* Not answered in time: the offer lapses. */
        cb->state = CB_LAPSED;
        COUNT(e, q, lapsed);
        emit_cancel(e, cb, now, "expired");
        if (pol(q, CC_CB_REOFFER_AFTER) != 0)
            cc_wheel_arm(&e->wheel, &cb->timer,
                         now + pol(q, CC_CB_REOFFER_AFTER));
        return;
    case CB_LAPSED:
        /* Time for a re-offer, if a rule still calls for one; else the
         * rules are asked again after the same delay. */
        c = cc_contact_find(e, cb->channel,
                            (struct cc_str){cb->data, cb->id_len}, cb->hash);
        if (c == NULL || c->state != CS_QUEUED || c->queue != q) {
            cb_free(e, cb); /* not expected: leaving the queue frees it */
            return;
        }
        consider(e, c, 0, now);
        if (cb->state == CB_LAPSED)
            cc_wheel_arm(&e->wheel, &cb->timer,
                         now + pol(q, CC_CB_REOFFER_AFTER));
        return;
    case CB_WAITING:
        /* The promised window ended before its turn came, or business
         * opened. */
        if (!cb->overdue && now >= cb->window_to) {
            cb->overdue = true;
            COUNT(e, q, overdue);
            emit_alert(e, cb, "callback.overdue",
                       "not dialled within the "
                       "promised window",
                       now);
        }
        cc_cb_queue_changed(e, q, now);
        /* Still waiting, with no opening to wake it: the promise's end. */
        if (cb->state == CB_WAITING && !cc_timer_armed(&cb->timer))
            arm_waiting(e, cb, CC_CAL_NEVER);
        return;
    case CB_SCHEDULED:
    case CB_RETRY:
        dial_in_hours(e, cb, now);
        return;
    case CB_DIALLING:
        failed(e, cb, "no outcome reported", now);
        return;
    }
}

/* ---- callback events ----------------------------------------------------- */

#define REJ(c, k, d)                                                           \
    do {                                                                       \
        rej->code = (c);                                                       \
        rej->key = (k);                                                        \
        rej->detail = (d);                                                     \
        e->cbs.rejected++;                                                     \
        return -1;                                                             \
    } while (0)

/* queue.withdraw, for the shell: the caller accepted and leaves the live
 * queue, so the adapter of its channel can take it out of the PBX's. */
static void
emit_withdraw(struct cc_engine *e, const struct cc_callback *cb) {
    msgpack_packer *pk = &e->outbox.pk;

    cc_outbox_begin(&e->outbox, CC_OUT_NOTICE, NULL);
    msgpack_pack_map(pk, 4);
    cc_pack_str(pk, "type");
    cc_pack_str(pk, "queue.withdraw");
    cc_pack_str(pk, "channel");
    cc_pack_str(pk, e->cfg.channels.names[cb->channel]);
    cc_pack_str(pk, "contact");
    cc_pack_strn(pk, cb->data, cb->id_len);
    cc_pack_str(pk, "queue");
    cc_pack_name_or_nil(pk, cb->queue->name);
    cc_outbox_end(&e->outbox);
}

int
cc_cb_accept(struct cc_engine *e, struct cc_contact *c,
             const struct cc_event *ev, uint64_t now, struct cc_reject *rej) {
    struct cc_callback *cb = (c->flags & CF_OFFERED) ? cb_of(e, c) : NULL;
    struct cc_queue *q = c->queue;
    struct cc_contact *place = NULL;
    uint64_t at = 0;

    if (cb == NULL || cb_is_accepted(cb))
        REJ(CC_R_STATE, NULL,
            "no callback was offered to this caller in this queue");
    if (c->conv != NULL && (c->conv->flags & CVF_CALLBACK) &&
        conv_has_pending(e, c->conv))
        REJ(CC_R_STATE, NULL,
            "the customer already has a callback pending (another offer "
            "was accepted)");
    if (cb->state == CB_LAPSED)
        REJ(CC_R_STATE, NULL,
            cb->declined ? "the offer was declined"
                         : "the offer expired ([callback] offer_expires)");
    if (ev->at != 0) {
        const struct cc_calendar *cal = cc_engine_cb_calendar(e, q);
        if (ev->at < ev->ts)
            REJ(CC_R_OUT_OF_RANGE, "at", "the time asked for has passed");
        if ((uint64_t)ev->at > now + MAX_AHEAD_MS)
            REJ(CC_R_OUT_OF_RANGE, "at", "at most 7 days ahead");
        at = next_open(cal, (uint64_t)ev->at);
        if (at == CC_CAL_NEVER)
            REJ(CC_R_OUT_OF_RANGE, "at",
                "the queue's calendar has no business hours after it");
    } else {
        place = cc_pool_get(&e->contacts);
        if (place == NULL)
            REJ(CC_R_LIMIT, NULL, "out of memory");
    }
    cb->accepted_ts = now;
    cb->conv = c->conv != NULL ? c->conv->id : 0;
    if (c->conv != NULL)
        c->conv->flags |= CVF_CALLBACK;
    cb->next = e->cbs.accepted;
    cb->prev = NULL;
    if (cb->next != NULL)
        cb->next->prev = cb;
    e->cbs.accepted = cb;
    q->pending++;
    e->cbs.pending++;
    COUNT(e, q, accepted);
    emit_withdraw(e, cb);
    if (place == NULL) {
        /* Called at the time asked for (or the next opening after it):
         * no place in the queue. */
        cb->state = CB_SCHEDULED;
        cb->dial_at = at;
        cb->window_from = at;
        cb->window_to = at + pol(q, CC_CB_PROMISE_MARGIN);
        COUNT(e, q, scheduled);
        cc_queue_remove(c);
        cc_wheel_arm(&e->wheel, &cb->timer, at);
        return 0;
    }
    memset(place, 0, sizeof(*place));
    place->state = CS_QUEUED;
    place->channel = c->channel;
    place->opened_ts = c->opened_ts;
    place->queued_ts = c->queued_ts;
    place->blob = (char *)(void *)cb;
    cc_queue_swap(c, place);
    cb->place = place;
    cb->state = CB_WAITING;
    q->places++;
    e->cbs.bytes += CONTACT_STRIDE;
    /* Overdue if its turn has not come by the end of the promise. */
    cc_wheel_arm(&e->wheel, &cb->timer, cb->window_to);
    return 0;
}

int
cc_cb_event(struct cc_engine *e, struct cc_contact *c,
            const struct cc_event *ev, uint64_t h, uint64_t now,
            struct cc_reject *rej) {
    struct cc_callback *cb =
        c != NULL ? cb_of(e, c)
                  : cb_find(e, ev->channel, ev->contact.p, ev->contact.n, h);
    struct cc_queue *q;
    char reason[CC_NAME_MAX + 1];
    bool dialled;

    switch ((enum cc_event_type)ev->type) {
    case CC_EV_CALLBACK_ACCEPTED:
        if (cb != NULL && cb_is_accepted(cb))
            REJ(CC_R_STATE, NULL, "the callback was already accepted");
        REJ(CC_R_STATE, NULL,
            "no offer stands for this contact: none was made, or the caller "
            "left the queue");
    case CC_EV_CALLBACK_DECLINED:
        if (cb == NULL || cb->state != CB_OFFERED)
            REJ(CC_R_STATE, NULL,
                cb != NULL && cb_is_accepted(cb)
                    ? "the callback was already accepted"
                    : "no offer stands for this contact");
        q = cb->queue;
        cb->state = CB_LAPSED;
        cb->declined = true;
        COUNT(e, q, declined);
        if (pol(q, CC_CB_REOFFER_AFTER) != 0)
            cc_wheel_arm(&e->wheel, &cb->timer,
                         now + pol(q, CC_CB_REOFFER_AFTER));
        else
            cc_wheel_cancel(&e->wheel, &cb->timer);
        return 0;
    case CC_EV_CALLBACK_COMPLETED:
        if (cb == NULL || !cb_is_accepted(cb))
            REJ(CC_R_STATE, NULL, "no accepted callback for this contact");
        q = cb->queue;
        COUNT(e, q, completed);
        if (cb->attempts == 1)
            COUNT(e, q, first_attempt);
        dialled = cb->state == CB_DIALLING;
        cb_done(e, cb, now);
        if (dialled) /* its customer no longer takes an agent ahead */
            cc_cb_queue_changed(e, q, now);
        return 0;
    case CC_EV_CALLBACK_FAILED:
        if (cb == NULL || cb->state != CB_DIALLING)
            REJ(CC_R_STATE, NULL,
                "no callback is being dialled for this contact");
        snprintf(reason, sizeof(reason), "%.*s",
                 ev->reason.n ? (int)ev->reason.n : 9,
                 ev->reason.n ? ev->reason.p : "no reason");
        failed(e, cb, reason, now);
        return 0;
    default:
        return 0;
    }
}

void
cc_cb_accepted_conv(struct cc_engine *e, const struct cc_contact *c,
                    uint64_t now) {
    struct cc_callback *cb;

    if (c->conv == NULL || (cb = cb_of(e, c)) == NULL || !cb_is_accepted(cb))
        return;
    if (cb->conv != c->conv->id && (c->conv->flags & CVF_CALLBACK)) {
        /* The acceptance named the customer: one who has a callback
         * pending already. One callback per customer. */
        const struct cc_callback *o;
        for (o = e->cbs.accepted; o != NULL; o = o->next)
            if (o != cb && o->conv != 0 && cc_conv_find(e, o->conv) == c->conv)
                break;
        if (o != NULL) {
            emit_cancel(e, cb, now, "the customer has another callback");
            cb_done(e, cb, now);
            return;
        }
    }
    cb->conv = c->conv->id;
    c->conv->flags |= CVF_CALLBACK;
}

void
cc_cb_served(struct cc_engine *e, struct cc_conv *v, const struct cc_contact *c,
             uint64_t now, const char *why) {
    struct cc_callback *cb, *next;
    struct cc_queue *qs[8];
    char reason[CC_CHANNEL_NAME_MAX + 16];
    bool left = false;
    unsigned nq = 0, i;

    if (c != NULL) {
        snprintf(reason, sizeof(reason), "%s on %s", why,
                 e->cfg.channels.names[c->channel]);
        why = reason;
        if (c->queue != NULL)
            qs[nq++] = c->queue; /* it left it: see leave_queue() */
    }
    /* Every callback of v goes before any queue is looked at again, so
     * that none of them is dialled on the way. */
    for (cb = e->cbs.accepted; cb != NULL; cb = next) {
        next = cb->next;
        if (cb->conv == 0 || cc_conv_find(e, cb->conv) != v)
            continue;
        if (cb->state == CB_DIALLING) {
            /* Being dialled: this may be its own call. */
            left = true;
            continue;
        }
        emit_cancel(e, cb, now, why);
        for (i = 0; i < nq && qs[i] != cb->queue; i++)
            ;
        if (i == nq && nq < CC_ARRAY_SIZE(qs))
            qs[nq++] = cb->queue;
        cb_free(e, cb);
    }
    if (!left)
        v->flags &= (uint8_t)~CVF_CALLBACK;
    for (i = 0; i < nq; i++)
        cc_cb_queue_changed(e, qs[i], now);
}

/* ---- figures ---------------------------------------------------------------
 */

static void
pack_rate(msgpack_packer *pk, const char *key, uint64_t num, uint64_t den) {
    cc_pack_str(pk, key);
    if (den != 0)
        msgpack_pack_double(pk, (double)num / (double)den);
    else
        msgpack_pack_nil(pk);
}

/* The figures both the engine and a queue have: 22 pairs. */
#define STAT_PAIRS 22
static void
pack_cb_stats(msgpack_packer *pk, const struct cc_cb_stats *s,
              uint64_t pending) {
    cc_pack_kv_u64(pk, "pending", pending);
    cc_pack_kv_u64(pk, "offers", s->offers);
    cc_pack_kv_u64(pk, "offered_callers", s->offered_callers);
    cc_pack_kv_u64(pk, "accepted", s->accepted);
    pack_rate(pk, "acceptance_rate", s->accepted, s->offered_callers);
    cc_pack_kv_u64(pk, "declined", s->declined);
    cc_pack_kv_u64(pk, "lapsed", s->lapsed);
    cc_pack_kv_u64(pk, "cancelled", s->cancelled);
    cc_pack_kv_u64(pk, "scheduled", s->scheduled);
    cc_pack_kv_u64(pk, "dialled", s->dialled);
    cc_pack_kv_u64(pk, "completed", s->completed);
    cc_pack_kv_u64(pk, "first_attempt", s->first_attempt);
    pack_rate(pk, "first_attempt_rate", s->first_attempt, s->completed);
    cc_pack_kv_u64(pk, "retries", s->retries);
    cc_pack_kv_u64(pk, "failed", s->failed);
    cc_pack_kv_u64(pk, "on_time", s->on_time);
    cc_pack_kv_u64(pk, "late", s->late);
    pack_rate(pk, "punctuality", s->on_time, s->on_time + s->late);
    cc_pack_kv_u64(pk, "overdue", s->overdue);
    cc_pack_kv_u64(pk, "hold_saved_ms", s->saved_ms);
    cc_pack_kv_u64(pk, "offered_abandoned", s->offered_abandoned);
    pack_rate(pk, "offered_abandon_rate", s->offered_abandoned,
              s->offered_callers);
}

void
cc_cb_pack_stats(const struct cc_engine *e, msgpack_packer *pk) {
    unsigned g;

    msgpack_pack_map(pk, STAT_PAIRS + 3);
    pack_cb_stats(pk, &e->cbs.st, e->cbs.pending);
    cc_pack_kv_u64(pk, "rejected_events", e->cbs.rejected);
    cc_pack_kv_u64(pk, "bytes", e->cbs.bytes);
    cc_pack_str(pk, "gated");
    msgpack_pack_map(pk, G__COUNT);
    for (g = 0; g < G__COUNT; g++)
        cc_pack_kv_u64(pk, gate_names[g], e->cbs.gated[g]);
}

void
cc_cb_pack_queue(const struct cc_queue *q, msgpack_packer *pk) {
    const struct cc_cb_stats *s = &q->cbst;
    uint64_t others = q->joined - s->offered_callers;

    msgpack_pack_map(pk, STAT_PAIRS + 3);
    pack_cb_stats(pk, s, q->pending);
    cc_pack_kv_u64(pk, "places", q->places);
    /* Abandonment of the callers offered a callback against the others'
     * (an abandoned caller is counted once, by the visit it left). */
    pack_rate(pk, "abandon_rate", q->abandoned, q->joined);
    pack_rate(pk, "not_offered_abandon_rate",
              q->abandoned - s->offered_abandoned, others);
}

/* ---- snapshot support (snapshot.c) ------------------------------------ */

cc_timer_cb
cc__cb_timer_cb(void) {
    return cb_timer_cb;
}

struct cc_callback *
cc__cb_find(const struct cc_engine *e, unsigned channel, const char *id,
            size_t n, uint64_t h) {
    return cb_find(e, channel, id, n, h);
}

int
cc__cb_table_grow(struct cc_engine *e) {
    return table_grow(e);
}
