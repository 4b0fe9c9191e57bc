/*
 * The engine. See engine.h for what it owns and docs/protocol.md for the
 * rules it applies.
 *
 * Memory: an open contact is one pooled struct cc_contact (its id inline
 * when short) plus a pooled blob with its customer map as received; contacts
 * are found through a chained hash table sized once for twice [limits]
 * max_contacts (at most half full), so the table never rehashes under
 * load. Queue and agent
 * names are interned once and never freed (their number is bounded by
 * [limits] max_names). After warm-up, opening and closing contacts reuses
 * pooled memory: the hot path does not call malloc.
 */
#include "engine_int.h"
#include "waitest.h"

#include "mp.h"
#include "stageprof.h"

#include <string.h>

static const char *const cstate_names[CS__COUNT] = {"open", "queued",
                                                    "connected", "held"};

void
cc_engine_config_defaults(struct cc_engine_config *c) {
    memset(c, 0, sizeof(*c));
    c->hold_long_ms = 60000;
    cc_cb_config_init(&c->cb);
    c->contact_idle_ms = 3 * 86400000ULL;
    c->dedup_window = 1000000;
    c->max_contacts = 2000000;
    c->max_queues = 1024;
    c->max_names = 100000;
    cc_channels_init(&c->channels);
    c->default_country = 1;
    c->max_identifiers = 50;
    c->max_identities = 4000000;
    c->reopen_window_ms = 72 * 3600000ULL;
    c->idle_close_ms = 7 * 86400000ULL;
    c->repeat_window_ms = 48 * 3600000ULL;
    c->max_conversations = 2000000;
    c->thread_index = 1000000;
    c->seed = 0x5eed;
    c->sl_target = 80;
    c->sl_window_min = 30;
    c->sl_hysteresis = 5;
    c->sl_min_answered = 10;
    c->short_abandon_ms = 5000;
}

#define NAMES_MIN_BUCKETS 64

static uint64_t
pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

/* The SLA schedules of cfg's policies, or of the built-in ones. */
static int
engine_slas(struct cc_slas **out, const struct cc_engine_config *cfg, char *err,
            size_t errlen) {
    struct cc_sla_config *def = NULL;
    const struct cc_sla_config *sla = cfg->sla;
    struct cc_slas *s;
    int rc;

    *out = NULL;
    if (sla == NULL) {
        def = cc_malloc(sizeof(*def));
        if (def == NULL) {
            snprintf(err, errlen, "out of memory");
            return CC_ENOMEM;
        }
        cc_sla_config_init(def);
        rc = cc_sla_config_finish(def, &cfg->channels, cfg->hold_long_ms, NULL,
                                  err, errlen);
        CC_ASSERT(rc == 0);
        sla = def;
    }
    s = cc_malloc(sizeof(*s));
    if (s == NULL)
        snprintf(err, errlen, "out of memory");
    rc = s == NULL ? CC_ENOMEM : cc_slas_init(s, sla, NULL, err, errlen);
    if (rc != 0) {
        cc_free(s, sizeof(*s));
        s = NULL;
    }
    cc_free(def, sizeof(*def));
    *out = s;
    return rc;
}

static void
slas_free(struct cc_slas *s) {
    if (s != NULL) {
        cc_slas_fini(s);
        cc_free(s, sizeof(*s));
    }
}

static void sl_sweep_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now);

int
cc_engine_new(struct cc_engine **out, const struct cc_engine_config *cfg,
              uint64_t now) {
    struct cc_engine *e;
    uint64_t nb;
    int rc;

    e = cc_calloc(1, sizeof(*e));
    if (e == NULL)
        return CC_ENOMEM;
    e->cfg = *cfg;
    e->cfg.sla = NULL; /* the caller's: the engine keeps a copy */
    {
        char err[256];
        rc = engine_slas(&e->slas, cfg, err, sizeof(err));
        if (rc != 0) {
            cc_free(e, sizeof(*e));
            return rc;
        }
    }
    cc_wheel_init(&e->wheel, now);
    cc_timer_init(&e->sl_timer, sl_sweep_cb);
    cc_wheel_arm(&e->wheel, &e->sl_timer, (now / 60000 + 1) * 60000);
    cc_outbox_init(&e->outbox);
    /* Records on whole cache lines, about 2 MiB per chunk: one huge
     * page. */
    cc_pool_init(&e->contacts, CONTACT_STRIDE,
                 cc_pool_huge_chunk(CONTACT_STRIDE));
    cc_blobs_init(&e->blobs);
    rc = cc_dedup_init(&e->dedup, cfg->dedup_window, cfg->seed ^ 0xd1ce);
    if (rc)
        goto fail_dedup;
    nb = pow2_at_least(cfg->max_contacts * 2);
    e->buckets = cc_alloc_table(nb * sizeof(*e->buckets));
    if (e->buckets == NULL)
        goto fail_buckets;
    e->bucket_mask = nb - 1;
    /* The name table grows with the names (see cc_name_intern): sized
     * for max_names up front, its few live buckets would be spread over
     * megabytes, and every lookup would touch a page of its own. */
    nb = NAMES_MIN_BUCKETS;
    e->nbuckets = cc_calloc(nb, sizeof(*e->nbuckets));
    if (e->nbuckets == NULL)
        goto fail_names;
    e->nmask = nb - 1;
    e->queues = cc_calloc(cfg->max_queues, sizeof(*e->queues));
    if (e->queues == NULL)
        goto fail_queues;
    {
        struct cc_identity_config ic = {.default_country = cfg->default_country,
                                        .max_identifiers = cfg->max_identifiers,
                                        .max_total = cfg->max_identities,
                                        .seed = cfg->seed ^ 0x1de7};
        if (cc_identity_init(&e->ident, &ic) != 0)
            goto fail_ident;
    }
    if (cc_convs_init(e) != 0)
        goto fail_convs;
    if (cc_cbs_init(e) != 0)
        goto fail_cbs;
    *out = e;
    return 0;

fail_cbs:
    cc_convs_fini(e);
fail_convs:
    cc_identity_fini(&e->ident);
fail_ident:
    cc_free(e->queues, cfg->max_queues * sizeof(*e->queues));
fail_queues:
    cc_free(e->nbuckets, (e->nmask + 1) * sizeof(*e->nbuckets));
fail_names:
    cc_free_table(e->buckets, (e->bucket_mask + 1) * sizeof(*e->buckets));
fail_buckets:
    cc_dedup_fini(&e->dedup);
    rc = CC_ENOMEM;
fail_dedup:
    slas_free(e->slas);
    cc_blobs_fini(&e->blobs);
    cc_pool_fini(&e->contacts);
    cc_outbox_fini(&e->outbox);
    cc_free(e, sizeof(*e));
    return rc;
}

static void contact_free(struct cc_engine *e, struct cc_contact *c);

void
cc_engine_free(struct cc_engine *e) {
    uint64_t i;
    struct cc_name *n, *next;

    if (e == NULL)
        return;
    cc_cbs_fini(e);
    cc_convs_fini(e); /* detaches every contact from its conversation */
    cc_identity_fini(&e->ident);
    slas_free(e->slas);
    for (i = 0; i <= e->bucket_mask; i++) {
        while (e->buckets[i] != NULL)
            contact_free(e, e->buckets[i]);
    }
    for (i = 0; i < e->nqueues; i++)
        cc_free(e->queues[i], sizeof(struct cc_queue));
    for (i = 0; i <= e->nmask; i++) {
        for (n = e->nbuckets[i]; n != NULL; n = next) {
            next = n->hnext;
            if (n->agent != NULL)
                cc_free(n->agent, sizeof(*n->agent));
            cc_free(n, sizeof(*n) + n->len + 1);
        }
    }
    cc_free(e->queues, e->cfg.max_queues * sizeof(*e->queues));
    cc_free(e->nbuckets, (e->nmask + 1) * sizeof(*e->nbuckets));
    cc_free(e->names, e->names_cap * sizeof(*e->names));
    cc_free(e->snap_policies, e->snap_npolicies * sizeof(*e->snap_policies));
    cc_free_table(e->buckets, (e->bucket_mask + 1) * sizeof(*e->buckets));
    cc_dedup_fini(&e->dedup);
    cc_blobs_fini(&e->blobs);
    cc_pool_fini(&e->contacts);
    cc_outbox_fini(&e->outbox);
    cc_free(e, sizeof(*e));
}

static uint16_t contact_sched(struct cc_engine *e, const struct cc_contact *c,
                              enum cc_clock k);
static void arm_state_timer(struct cc_engine *e, struct cc_contact *c);

/* The stage at which a clock resumes under schedule `sched`, given the
 * last stage it fired (SLA_LAST_NONE: none). */
static unsigned
resume_stage(const struct cc_engine *e, uint16_t sched, unsigned last) {
    const struct cc_sched *sc = cc_slas_get(e->slas, sched);

    if (sc == NULL)
        return 0;
    return cc_sched_resume(sc, last == SLA_LAST_NONE ? 0xff : (uint8_t)last);
}

int
cc_engine_set_sla(struct cc_engine *e, const struct cc_sla_config *sla,
                  char *err, size_t errlen) {
    struct cc_engine_config cfg = e->cfg;
    struct cc_slas *old = e->slas, *next;
    struct cc_contact *c;
    uint64_t i;
    int rc;

    cfg.sla = sla;
    rc = engine_slas(&next, &cfg, err, errlen);
    if (rc != 0)
        return rc;
    next->full = old->full; /* a counter of the daemon's life */
    e->slas = next;
    /* Every running clock (queued: answer; held: hold) takes its new
     * schedule, from the stage after the last it fired. Reloads are rare:
     * walking every contact is fine. */
    for (i = 0; i <= e->bucket_mask; i++) {
        for (c = e->buckets[i]; c != NULL; c = c->hnext) {
            if (c->state != CS_QUEUED && c->state != CS_HELD)
                continue;
            c->sla_sched = contact_sched(
                e, c, c->state == CS_HELD ? CC_CLOCK_HOLD : CC_CLOCK_ANSWER);
            c->sla_stage = resume_stage(e, c->sla_sched, c->sla_last) & 0x1f;
            arm_state_timer(e, c);
        }
    }
    /* And every conversation's clocks: the response clock matched again
     * on the channel that started it, the resolution clock on the
     * conversation's first channel (both with its latest queue). */
    for (i = 0; i <= e->convs.mask; i++) {
        struct cc_conv *v;
        for (v = e->convs.buckets[i]; v != NULL; v = v->hnext) {
            if (v->resp.sched != 0) {
                v->resp.sched = cc_engine_conv_sched(
                                    e, v, cc_resp_channel(&v->resp),
                                    v->resp.next ? CC_CLOCK_NEXT_RESPONSE
                                                 : CC_CLOCK_FIRST_RESPONSE) &
                                0xfff;
                v->resp.stage =
                    resume_stage(e, v->resp.sched, v->resp.last) & 0x1f;
            }
            if (v->res.sched != 0) {
                v->res.sched = cc_engine_conv_sched(e, v, v->first_channel,
                                                    CC_CLOCK_RESOLUTION) &
                               0xfff;
                v->res.stage =
                    resume_stage(e, v->res.sched, v->res.last) & 0x1f;
            }
            cc_conv_arm_clock(e, v);
        }
    }
    slas_free(old);
    return 0;
}

void
cc_engine_reconfigure(struct cc_engine *e, const struct cc_engine_config *cfg) {
    e->cfg.hold_long_ms = cfg->hold_long_ms;
    e->cfg.cb = cfg->cb;
    cc_cbs_policies(e);
    e->cfg.contact_idle_ms = cfg->contact_idle_ms;
    e->cfg.reopen_window_ms = cfg->reopen_window_ms;
    e->cfg.idle_close_ms = cfg->idle_close_ms;
    e->cfg.repeat_window_ms = cfg->repeat_window_ms;
    e->cfg.sl_target = cfg->sl_target;
    e->cfg.sl_window_min = cfg->sl_window_min;
    e->cfg.sl_hysteresis = cfg->sl_hysteresis;
    e->cfg.sl_min_answered = cfg->sl_min_answered;
    e->cfg.short_abandon_ms = cfg->short_abandon_ms;
}

const struct cc_channels *
cc_engine_channels(const struct cc_engine *e) {
    return &e->cfg.channels;
}

struct cc_outbox *
cc_engine_outbox(struct cc_engine *e) {
    return &e->outbox;
}

uint64_t
cc_engine_next_deadline(const struct cc_engine *e) {
    return cc_wheel_next(&e->wheel);
}

uint64_t
cc_engine_now(const struct cc_engine *e) {
    return e->wheel.now;
}

void
cc_engine_count_reject(struct cc_engine *e, enum cc_reason r) {
    e->rejected++;
    e->by_reason[r]++;
}

void
cc_engine_count_bad_message(struct cc_engine *e) {
    e->messages++;
    e->malformed++;
}

/* ---- names ------------------------------------------------------------ */

/* Doubles the name table. Names are never removed, so the table only
 * grows, about as many times as the count of names doubles; failing to
 * grow leaves a fuller table that still works. */
static void
names_grow(struct cc_engine *e) {
    uint64_t nb = (e->nmask + 1) * 2, i;
    struct cc_name **t = cc_calloc(nb, sizeof(*t)), *n, *next;

    if (t == NULL)
        return;
    for (i = 0; i <= e->nmask; i++) {
        for (n = e->nbuckets[i]; n != NULL; n = next) {
            next = n->hnext;
            n->hnext = t[n->hash & (nb - 1)];
            t[n->hash & (nb - 1)] = n;
        }
    }
    cc_free(e->nbuckets, (e->nmask + 1) * sizeof(*e->nbuckets));
    e->nbuckets = t;
    e->nmask = nb - 1;
}

/* The name s if it is interned already, else NULL. */
static struct cc_name *
name_find(const struct cc_engine *e, struct cc_str s) {
    uint64_t h = cc_hash(s.p, s.n, e->cfg.seed ^ 0x4e41);
    struct cc_name *n;

    for (n = e->nbuckets[h & e->nmask]; n != NULL; n = n->hnext) {
        if (n->hash == h && n->len == s.n && cc_bytes_eq(n->s, s.p, s.n))
            return n;
    }
    return NULL;
}

const struct cc_name *
cc_name_intern(struct cc_engine *e, struct cc_str s) {
    uint64_t h = cc_hash(s.p, s.n, e->cfg.seed ^ 0x4e41);
    struct cc_name **b = &e->nbuckets[h & e->nmask], *n;

    for (n = *b; n != NULL; n = n->hnext) {
        if (n->hash == h && n->len == s.n && cc_bytes_eq(n->s, s.p, s.n))
            return n;
    }
    if (e->nnames >= e->cfg.max_names || e->nnames >= UINT32_MAX - 1)
        return NULL;
    /* At most one name per two buckets. */
    if ((e->nnames + 1) * 2 > e->nmask + 1) {
        names_grow(e);
        b = &e->nbuckets[h & e->nmask];
    }
    if (e->nnames + 1 >= e->names_cap) {
        uint64_t ncap = e->names_cap ? e->names_cap * 2 : 64;
        struct cc_name **nv =
            cc_realloc(e->names, e->names_cap * sizeof(*e->names),
                       ncap * sizeof(*e->names));
        if (nv == NULL)
            return NULL;
        e->names = nv;
        e->names_cap = ncap;
    }
    n = cc_malloc(sizeof(*n) + s.n + 1);
    if (n == NULL)
        return NULL;
    n->idx = (uint32_t)(e->nnames + 1);
    e->names[n->idx] = n;
    n->hash = h;
    n->queue = NULL;
    n->agent = NULL;
    n->len = s.n;
    memcpy(n->s, s.p, s.n);
    n->s[s.n] = '\0';
    n->hnext = *b;
    *b = n;
    e->nnames++;
    return n;
}

static struct cc_queue *
queue_get(struct cc_engine *e, struct cc_str s, struct cc_reject *rej) {
    struct cc_name *n = (struct cc_name *)cc_name_intern(e, s);
    struct cc_queue *q;

    if (n == NULL) {
        rej->code = CC_R_LIMIT;
        rej->key = "queue";
        rej->detail = "[limits] max_names distinct queue and agent names";
        return NULL;
    }
    if (n->queue != NULL)
        return n->queue;
    if (e->nqueues >= e->cfg.max_queues) {
        rej->code = CC_R_LIMIT;
        rej->key = "queue";
        rej->detail = "[limits] max_queues queues";
        return NULL;
    }
    q = cc_calloc(1, sizeof(*q));
    if (q == NULL) {
        rej->code = CC_R_LIMIT;
        rej->key = "queue";
        rej->detail = "out of memory";
        return NULL;
    }
    q->name = n;
    q->cb = cc_cb_policy_for(&e->cfg.cb, n->s, n->len);
    n->queue = q;
    e->queues[e->nqueues++] = q;
    return q;
}

/* ---- packing helpers -------------------------------------------------- */

void
cc_pack_name_or_nil(msgpack_packer *pk, const struct cc_name *n) {
    if (n != NULL)
        cc_pack_strn(pk, n->s, n->len);
    else
        msgpack_pack_nil(pk);
}

/* ---- contacts --------------------------------------------------------- */

uint64_t
cc_contact_hash(const struct cc_engine *e, unsigned channel, struct cc_str id) {
    return cc_hash(id.p, id.n, e->cfg.seed + channel);
}

struct cc_contact *
cc_contact_find(struct cc_engine *e, unsigned channel, struct cc_str id,
                uint64_t h) {
    struct cc_contact *c;
    for (c = e->buckets[h & e->bucket_mask]; c != NULL; c = c->hnext) {
        if (c->hash == h && c->channel == channel && c->id_len == id.n &&
            cc_bytes_eq(contact_id(c), id.p, id.n))
            return c;
    }
    return NULL;
}

static void state_timer_cb(struct cc_wheel *w, struct cc_timer *t,
                           uint64_t now);
static void idle_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now);

static void
set_state(struct cc_engine *e, struct cc_contact *c, enum cc_cstate s) {
    e->by_state[c->state]--;
    e->by_state[s]++;
    c->state = (uint8_t)s;
}

/* Stores (or replaces) the customer map kept with the contact. */
static int
contact_set_customer(struct cc_engine *e, struct cc_contact *c,
                     const struct cc_event *ev) {
    size_t ext = contact_id_ext(c), n = ext + ev->customer_len;
    char *blob = NULL;

    if (ev->customer_len > UINT16_MAX)
        return CC_ETOOBIG;
    if (c->cust_len == ev->customer_len &&
        (c->cust_len == 0 ||
         cc_bytes_eq(contact_customer(c), ev->customer, ev->customer_len)))
        return 0;
    if (n != 0) {
        blob = cc_blob_get(&e->blobs, n);
        if (blob == NULL)
            return CC_ENOMEM;
        if (ext != 0)
            memcpy(blob, c->blob, ext);
        memcpy(blob + ext, ev->customer, ev->customer_len);
    }
    e->blob_bytes -= cc_blob_size(contact_blob_size(c));
    if (c->blob != NULL)
        cc_blob_put(&e->blobs, c->blob, contact_blob_size(c));
    c->blob = blob;
    c->cust_len = (uint16_t)ev->customer_len;
    if (ev->ident[CC_IDENT_PHONE].n != 0)
        c->flags |= CF_PHONE;
    else
        c->flags &= (uint8_t)~CF_PHONE;
    e->blob_bytes += cc_blob_size(n);
    return 0;
}

static struct cc_contact *
contact_open(struct cc_engine *e, const struct cc_event *ev, uint64_t h,
             uint64_t now, struct cc_reject *rej) {
    struct cc_contact *c;
    size_t n;

    if (e->open_contacts >= e->cfg.max_contacts) {
        rej->code = CC_R_LIMIT;
        rej->key = "contact";
        rej->detail = "[limits] max_contacts open contacts";
        return NULL;
    }
    if (ev->customer_len > UINT16_MAX) {
        rej->code = CC_R_TOO_LONG;
        rej->key = "customer";
        rej->detail = "at most 65535 bytes";
        return NULL;
    }
    n = (ev->contact.n > CONTACT_ID_INLINE ? ev->contact.n : 0) +
        (size_t)ev->customer_len;
    c = cc_pool_get(&e->contacts);
    if (c != NULL && n != 0) {
        c->blob = cc_blob_get(&e->blobs, n);
        if (c->blob == NULL) {
            cc_pool_put(&e->contacts, c);
            c = NULL;
        }
    }
    if (c == NULL) {
        rej->code = CC_R_LIMIT;
        rej->key = "contact";
        rej->detail = "out of memory";
        return NULL;
    }
    c->id_len = (uint16_t)ev->contact.n;
    c->cust_len = (uint16_t)ev->customer_len;
    memcpy(ev->contact.n > CONTACT_ID_INLINE ? c->blob : c->id, ev->contact.p,
           ev->contact.n);
    if (ev->customer_len != 0)
        memcpy(c->blob + contact_id_ext(c), ev->customer, ev->customer_len);
    c->hash = h;
    c->channel = ev->channel;
    c->state = CS_OPEN;
    if (ev->ident[CC_IDENT_PHONE].n != 0)
        c->flags |= CF_PHONE;
    c->opened_ts = ev->ts;
    cc_timer_init(&c->state_timer, state_timer_cb);
    cc_timer_init(&c->idle_timer, idle_timer_cb);
    c->hnext = e->buckets[h & e->bucket_mask];
    e->buckets[h & e->bucket_mask] = c;
    e->open_contacts++;
    e->by_state[CS_OPEN]++;
    e->blob_bytes += cc_blob_size(n);
    e->chan[c->channel].open++;
    e->chan[c->channel].opened++;
    c->last_seen = now;
    cc_wheel_arm(&e->wheel, &c->idle_timer, now + e->cfg.contact_idle_ms);
    return c;
}

void
cc_queue_remove(struct cc_contact *c) {
    struct cc_queue *q = c->queue;
    if (q->ltail[c->prio1] == c)
        q->ltail[c->prio1] =
            c->qprev != NULL && c->qprev->prio1 == c->prio1 ? c->qprev : NULL;
    q->lcount[c->prio1]--;
    if (c->qprev != NULL)
        c->qprev->qnext = c->qnext;
    else
        q->head = c->qnext;
    if (c->qnext != NULL)
        c->qnext->qprev = c->qprev;
    else
        q->tail = c->qprev;
    c->qnext = c->qprev = NULL;
    q->waiting--;
}

void
cc_queue_swap(struct cc_contact *c, struct cc_contact *place) {
    struct cc_queue *q = c->queue;

    place->queue = q;
    place->prio1 = c->prio1;
    place->qprev = c->qprev;
    place->qnext = c->qnext;
    if (c->qprev != NULL)
        c->qprev->qnext = place;
    else
        q->head = place;
    if (c->qnext != NULL)
        c->qnext->qprev = place;
    else
        q->tail = place;
    if (q->ltail[c->prio1] == c)
        q->ltail[c->prio1] = place;
    c->qnext = c->qprev = NULL;
}

/* Puts c in q's waiting list at its place: after every contact of its
 * priority or a higher one (c->prio1 is set). */
static void
queue_insert(struct cc_queue *q, struct cc_contact *c) {
    struct cc_contact *after = NULL;
    unsigned k;

    /* Higher levels come first: the last contact at c's level or above is
     * the tail of the lowest such level that has one. */
    for (k = c->prio1; k < QUEUE_LEVELS && after == NULL; k++)
        after = q->ltail[k];
    c->queue = q;
    c->qprev = after;
    c->qnext = after != NULL ? after->qnext : q->head;
    if (c->qnext != NULL)
        c->qnext->qprev = c;
    else
        q->tail = c;
    if (after != NULL)
        after->qnext = c;
    else
        q->head = c;
    q->ltail[c->prio1] = c;
    q->lcount[c->prio1]++;
    q->waiting++;
    q->joined++;
}

/* A duration in ms from a double, capped at about 30 years (and 0 for
 * anything not positive, NaN included). */
static uint64_t
ms_of(double v) {
    if (!(v > 0))
        return 0;
    return v < 1e12 ? (uint64_t)(v + 0.5) : (uint64_t)1e12;
}

/* A caller's estimated wait: by position (the agents serving the queue
 * finish a call each handle time on average: the caller's turn comes
 * after as many completions as callers ahead of it that the free agents
 * cannot take at once), and by the queue's recent drain rate. */
void
cc_wait_estimate(struct cc_engine *e, struct cc_queue *q, uint64_t ahead,
                 uint64_t now, struct cc_wait_est *w) {
    const struct cc_sl_window *r;
    uint32_t serving = q->agents[AG_AVAILABLE] + q->agents[AG_BUSY];
    uint32_t free = q->agents[AG_AVAILABLE];
    double window = (double)e->cfg.sl_window_min * 60000.0, rate, k;

    w->why = NULL;
    w->p50_ms = w->p80_ms = 0;
    w->drain_ms = -1;
    if (serving == 0) {
        w->why = "no agent serves the queue";
        return;
    }
    r = cc_sl_running(&q->sl, now, e->cfg.sl_window_min);
    if (r->answered != 0)
        w->drain_ms = ahead < free
                          ? 0
                          : (int64_t)ms_of((double)(ahead + 1) * window /
                                           (double)r->answered);
    if (ahead < free)
        return; /* a free agent takes it at once */
    if (r->handled == 0) {
        w->why = "no handle times in the window yet";
        return;
    }
    /* Completions come at `serving` per handle time. */
    rate = (double)serving * (double)r->handled / (double)r->handle_ms;
    k = (double)(ahead - free + 1);
    w->p50_ms = ms_of(cc_gamma_quantile(k, rate, 0));
    w->p80_ms = ms_of(cc_gamma_quantile(k, rate, CC_Z80));
}

uint64_t
cc_queue_position(const struct cc_contact *c, uint64_t cap) {
    const struct cc_contact *p;
    uint64_t pos = 1;
    for (p = c->queue->head; p != NULL && p != c && pos <= cap; p = p->qnext)
        pos++;
    return pos;
}

/* Finds the customer's phone number in the stored customer map. */
struct cc_str
cc_contact_phone(const struct cc_contact *c) {
    struct cc_str none = {NULL, 0}, k, v;
    struct cc_mp m;
    uint32_t n, i;

    cc_mp_init(&m, contact_customer(c), c->cust_len);
    if (c->cust_len == 0 || cc_mp_read_map(&m, &n) != 0)
        return none;
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(&m, &k) != 0)
            return none;
        if (cc_str_eq(k, "phone") && cc_mp_read_str(&m, &v) == 0)
            return v;
        if (cc_mp_skip(&m) != 0)
            return none;
    }
    return none;
}

void
cc_pack_contact_customer(msgpack_packer *pk, const struct cc_contact *c) {
    /* Already MessagePack: the bytes as they came. */
    cc_pack_finish(pk, cc_w_contact_customer(
                           cc_pack_reserve(pk, (size_t)c->cust_len + 1), c));
}

/* The fields every alert and trigger about a contact carries. */
void
cc_pack_contact_fields(struct cc_engine *e, msgpack_packer *pk,
                       const struct cc_contact *c) {
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, c->conv);
    cc_pack_str(pk, "contact");
    cc_pack_strn(pk, contact_id(c), c->id_len);
    cc_pack_str(pk, "channel");
    cc_pack_str(pk, e->cfg.channels.names[c->channel]);
    cc_pack_str(pk, "customer");
    cc_pack_contact_customer(pk, c);
    cc_pack_str(pk, "queue");
    cc_pack_name_or_nil(pk, c->queue ? c->queue->name : NULL);
}

void
cc_pack_rule_id(struct cc_engine *e, msgpack_packer *pk, const char *rule,
                const struct cc_contact *c, const char *tail, size_t tail_n) {
    size_t rn = strlen(rule);
    size_t max = CC_W_STR_MAX(rn + 1 + CC_CHANNEL_NAME_MAX + 1 +
                              CC_CONTACT_MAX + tail_n);

    cc_pack_finish(pk, cc_w_rule_idn(cc_pack_reserve(pk, max), e, rule, rn, c,
                                     tail, tail_n));
}

/* Takes a contact out of its queue: answered, abandoned or moved. It is
 * no longer queued (open, until its caller says what it is now), so that
 * nothing takes it out of the list a second time. */
static void
leave_queue(struct cc_engine *e, struct cc_contact *c, uint64_t now,
            const char *why) {
    struct cc_queue *q = c->queue;

    if (c->state != CS_QUEUED)
        return;
    cc_queue_remove(c);
    cc_wheel_cancel(&e->wheel, &c->state_timer);
    c->sla_sched = 0; /* the answer clock stops, met or not */
    if (c->flags & CF_OFFERED)
        cc_cb_left(e, c, now, why,
                   strcmp(why, "abandoned") == 0 || strcmp(why, "closed") == 0);
    set_state(e, c, CS_OPEN);
    /* The places behind it move up; after an answer of a customer who has
     * a callback, once that callback is cancelled (cc_cb_served()). */
    if (q->places != 0 && !(strcmp(why, "answered") == 0 && c->conv != NULL &&
                            (c->conv->flags & CVF_CALLBACK)))
        cc_cb_queue_changed(e, q, now);
}

static void
contact_free(struct cc_engine *e, struct cc_contact *c) {
    struct cc_contact **pp = &e->buckets[c->hash & e->bucket_mask];

    cc_conv_contact_detach(e, c);
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    /* At teardown (the callbacks gone first) the queues go as a whole. */
    if (c->state == CS_QUEUED && e->cbs.buckets != NULL)
        leave_queue(e, c, e->wheel.now, "expired");
    cc_wheel_cancel(&e->wheel, &c->state_timer);
    cc_wheel_cancel(&e->wheel, &c->idle_timer);
    e->by_state[c->state]--;
    e->open_contacts--;
    e->chan[c->channel].open--;
    e->blob_bytes -= cc_blob_size(contact_blob_size(c));
    if (c->blob != NULL)
        cc_blob_put(&e->blobs, c->blob, contact_blob_size(c));
    cc_pool_put(&e->contacts, c);
}

/* ---- timed rules ------------------------------------------------------ */

/* The start of a contact's running clock: the join (answer) or the hold
 * (hold). */
static int64_t
clock_start(const struct cc_contact *c) {
    return c->state == CS_HELD ? c->hold_ts : c->queued_ts;
}

/* The calendar a schedule counts in, or nil. */
static void
pack_calendar(msgpack_packer *pk, const struct cc_sched *sc) {
    cc_pack_str(pk, "calendar");
    if (sc->cal_name != NULL)
        cc_pack_str(pk, sc->cal_name);
    else
        msgpack_pack_nil(pk);
}

/* What every SLA stage alert says of its clock and stage i: 9 pairs
 * (clock, level, target_ms, stage_ms, start, due, elapsed_ms, policy,
 * calendar). */
#define STAGE_PAIRS 9
static void
pack_stage_fields(msgpack_packer *pk, const struct cc_sched *sc, unsigned i,
                  uint64_t start, uint64_t due, uint64_t now) {
    const struct cc_sched_stage *st = &sc->st[i];

    cc_pack_str(pk, "clock");
    cc_pack_str(pk, cc_clock_name(sc->clock));
    cc_pack_kv_u64(pk, "level", st->level);
    cc_pack_kv_u64(pk, "target_ms", sc->target);
    cc_pack_kv_u64(pk, "stage_ms", st->at);
    cc_pack_kv_u64(pk, "start", start);
    cc_pack_kv_u64(pk, "due", due);
    cc_pack_kv_u64(pk, "elapsed_ms", now > start ? now - start : 0);
    cc_pack_str(pk, "policy");
    cc_pack_str(pk, sc->by->section);
    pack_calendar(pk, sc);
}

/* An SLA stage of a contact's clock fell due: publishes it. */
static void
fire_contact_stage(struct cc_engine *e, struct cc_contact *c,
                   const struct cc_sched *sc, unsigned i, uint64_t due,
                   uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    const struct cc_sched_stage *st = &sc->st[i];
    const char *alert = cc_stage_alert(st->type);
    const char *clock = cc_clock_name(sc->clock);
    size_t cn = strlen(clock);
    uint64_t start = (uint64_t)clock_start(c);
    char tail[48];
    size_t tn;

    cc_outbox_begin(&e->outbox, CC_OUT_ALERT, alert);
    msgpack_pack_map(pk, 3 + 6 + STAGE_PAIRS);
    cc_pack_str(pk, "alert");
    cc_pack_str(pk, alert);
    /* "<alert>:<channel>:<contact>:<clock>:<start>:<level>": the same
     * stage of the same clock always has the same id. */
    tail[0] = ':';
    memcpy(tail + 1, clock, cn);
    tail[cn + 1] = ':';
    tn = cn + 2 + cc_fmt_i64(tail + cn + 2, (int64_t)start);
    tail[tn++] = ':';
    tn += cc_fmt_u64(tail + tn, st->level);
    cc_pack_str(pk, "id");
    cc_pack_rule_id(e, pk, alert, c, tail, tn);
    cc_pack_str(pk, "ts");
    cc_pack_u64(pk, now);
    cc_pack_contact_fields(e, pk, c);
    cc_pack_str(pk, "agent");
    cc_pack_name_or_nil(pk, c->agent);
    pack_stage_fields(pk, sc, i, start, due, now);
    cc_outbox_end(&e->outbox);
    e->alerts_sla[st->type]++;
    c->sla_last = (uint16_t)(st->type << 4 | st->level) & 0x3f;
}

/* Arms a contact's state timer for whichever comes first: the callback
 * offer (queued) or its clock's next stage (the answer clock while queued,
 * the hold clock while held). */
static void
arm_state_timer(struct cc_engine *e, struct cc_contact *c) {
    uint64_t due = CC_WHEEL_NEVER;
    const struct cc_sched *sc = cc_slas_get(e->slas, c->sla_sched);

    if (c->state == CS_QUEUED)
        due = cc_cb_waited_due(e, c);
    if (sc != NULL && c->sla_stage < sc->nstages) {
        uint64_t d = cc_sched_due(sc, c->sla_stage, (uint64_t)clock_start(c));
        if (d < due)
            due = d;
    }
    if (due != CC_WHEEL_NEVER)
        cc_wheel_arm(&e->wheel, &c->state_timer, due);
    else
        cc_wheel_cancel(&e->wheel, &c->state_timer);
}

/* The state timer fired: the offer and every stage now due, in order, then
 * the next. */
static void
state_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct cc_engine *e = CC_CONTAINER_OF(w, struct cc_engine, wheel);
    struct cc_contact *c = CC_CONTAINER_OF(t, struct cc_contact, state_timer);
    const struct cc_sched *sc = cc_slas_get(e->slas, c->sla_sched);

    if (c->state == CS_QUEUED && cc_cb_waited_due(e, c) <= now)
        cc_cb_waited(e, c, now);
    while (sc != NULL && c->sla_stage < sc->nstages) {
        uint64_t due = cc_sched_due(sc, c->sla_stage, (uint64_t)clock_start(c));
        if (due > now)
            break;
        fire_contact_stage(e, c, sc, c->sla_stage, due, now);
        c->sla_stage++;
    }
    arm_state_timer(e, c);
}

static void
idle_timer_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct cc_engine *e = CC_CONTAINER_OF(w, struct cc_engine, wheel);
    struct cc_contact *c = CC_CONTAINER_OF(t, struct cc_contact, idle_timer);

    /* Re-armed lazily: events only move last_seen, so the common case
     * (an active contact) costs one wheel operation per idle period rather
     * than one per event. */
    if (c->last_seen + e->cfg.contact_idle_ms > now) {
        cc_wheel_arm(w, t, c->last_seen + e->cfg.contact_idle_ms);
        return;
    }
    leave_queue(e, c, now, "expired");
    cc_conv_contact_end(e, c, (int64_t)now, true);
    e->expired++;
    e->chan[c->channel].expired++;
    e->chan[c->channel].closed++;
    contact_free(e, c);
}

void
cc_engine_tick(struct cc_engine *e, uint64_t now) {
    cc_wheel_advance(&e->wheel, now);
}

/* ---- service level ---------------------------------------------------- */

static void pack_sl_windows(msgpack_packer *pk, const struct cc_sl *sl,
                            const struct cc_rt *rt, uint64_t now);
static uint64_t breach_due(const struct cc_sched *sc,
                           const struct cc_contact *c);

/* The longest wait of the queue's callers: they wait by priority, and an
 * event may carry an earlier time than the one before it. */
static uint64_t
longest_wait(const struct cc_queue *q, uint64_t now) {
    const struct cc_contact *c;
    uint64_t w = 0;

    for (c = q->head; c != NULL; c = c->qnext)
        if (!cc_contact_is_place(c) && now > (uint64_t)c->queued_ts &&
            now - (uint64_t)c->queued_ts > w)
            w = now - (uint64_t)c->queued_ts;
    return w;
}

/* A queue's service level crossed its target (below) or came back past the
 * target plus the hysteresis (recovered): tells the supervisors. */
static void
fire_service_level(struct cc_engine *e, struct cc_queue *q, bool below,
                   const struct cc_sl_window *w, int level, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    const char *state = below ? "below" : "recovered";
    char id[CC_NAME_MAX + 64];
    int n;

    n = snprintf(id, sizeof(id), "queue.service_level:%.*s:%llu",
                 (int)q->name->len, q->name->s,
                 (unsigned long long)(q->sl.alerts + 1));
    cc_outbox_begin(&e->outbox, CC_OUT_ALERT, "queue.service_level");
    msgpack_pack_map(pk, 14);
    cc_pack_str(pk, "alert");
    cc_pack_str(pk, "queue.service_level");
    cc_pack_str(pk, "id");
    cc_pack_strn(pk, id, (size_t)(n < (int)sizeof(id) ? n : 0));
    cc_pack_str(pk, "ts");
    cc_pack_u64(pk, now);
    cc_pack_str(pk, "queue");
    cc_pack_strn(pk, q->name->s, q->name->len);
    cc_pack_str(pk, "state");
    cc_pack_str(pk, state);
    cc_pack_str(pk, "service_level");
    msgpack_pack_double(pk, (double)level / 10.0);
    cc_pack_kv_u64(pk, "target", e->cfg.sl_target);
    cc_pack_kv_u64(pk, "hysteresis", e->cfg.sl_hysteresis);
    cc_pack_kv_u64(pk, "window_ms", (uint64_t)e->cfg.sl_window_min * 60000);
    cc_pack_kv_u64(pk, "answered", w->answered);
    cc_pack_kv_u64(pk, "answered_in_target", w->in_target);
    cc_pack_kv_u64(pk, "abandoned", w->abandoned);
    cc_pack_kv_u64(pk, "waiting", q->waiting);
    cc_pack_kv_u64(pk, "longest_wait_ms", longest_wait(q, now));
    cc_outbox_end(&e->outbox);
    q->sl.alerts++;
    e->alerts_sl++;
}

/* Re-checks a queue's service level after an answer or an abandon: O(1),
 * from the window's running sums. */
static void
sl_check(struct cc_engine *e, struct cc_queue *q, uint64_t now) {
    const struct cc_sl_window *w =
        cc_sl_running(&q->sl, now, e->cfg.sl_window_min);
    int level = cc_sl_level(w);
    int back = (int)(e->cfg.sl_target + e->cfg.sl_hysteresis) * 10;

    if (level < 0 || w->with_target < e->cfg.sl_min_answered)
        return;
    if (back > 1000) /* 100% is as high as it goes */
        back = 1000;
    if (!q->sl.below && level < (int)e->cfg.sl_target * 10) {
        q->sl.below = true;
        fire_service_level(e, q, true, w, level, now);
    } else if (q->sl.below && level >= back) {
        q->sl.below = false;
        fire_service_level(e, q, false, w, level, now);
    }
}

/* Each minute, as the window slides, every queue's service level is
 * checked again: a queue whose good minutes slide out of the window falls
 * below its target with no answer or abandon to notice it. O(queues). */
static void
sl_sweep_cb(struct cc_wheel *w, struct cc_timer *t, uint64_t now) {
    struct cc_engine *e = CC_CONTAINER_OF(w, struct cc_engine, wheel);
    uint64_t i;

    for (i = 0; i < e->nqueues; i++)
        sl_check(e, e->queues[i], now);
    cc_wheel_arm(w, t, (now / 60000 + 1) * 60000);
}

/* A queued contact is answered: its wait, and whether its answer clock
 * was met, go into its queue's and its channel's windows. */
static void
sl_answered(struct cc_engine *e, struct cc_contact *c,
            const struct cc_event *ev, uint64_t now) {
    const struct cc_sched *sc = cc_slas_get(e->slas, c->sla_sched);
    uint64_t wait =
        ev->ts > c->queued_ts ? (uint64_t)(ev->ts - c->queued_ts) : 0;
    int met = sc == NULL ? -1 : (uint64_t)ev->ts <= breach_due(sc, c);

    cc_sl_answered(&c->queue->sl, now, wait, met);
    cc_sl_answered(&e->chan_sl[c->channel], now, wait, met);
    sl_check(e, c->queue, now);
    if (c->joined_est >= 0) {
        uint64_t est = (uint64_t)c->joined_est;
        uint64_t err = wait > est ? wait - est : est - wait;
        c->queue->est_n++;
        c->queue->est_abs_ms += err;
        c->queue->est_within30 += err <= 30000;
    }
}

static void
sl_abandoned(struct cc_engine *e, struct cc_contact *c,
             const struct cc_event *ev, uint64_t now) {
    bool quick = e->cfg.short_abandon_ms != 0 &&
                 (ev->ts < c->queued_ts ||
                  (uint64_t)(ev->ts - c->queued_ts) < e->cfg.short_abandon_ms);
    bool clocked = c->sla_sched != 0;

    cc_sl_abandoned(&c->queue->sl, now, quick, clocked);
    cc_sl_abandoned(&e->chan_sl[c->channel], now, quick, clocked);
    sl_check(e, c->queue, now);
}

/* A contact with an agent closes: its handle time (answer to close) goes
 * into its queue's and its channel's windows. */
static void
sl_handled(struct cc_engine *e, struct cc_contact *c, const struct cc_event *ev,
           uint64_t now) {
    /* Answer to close, plus the wrap-up the close reports. */
    uint64_t t =
        (ev->ts > c->queued_ts ? (uint64_t)(ev->ts - c->queued_ts) : 0) +
        (uint64_t)ev->wrapup_ms;

    if (c->queue != NULL)
        cc_sl_handled(&c->queue->sl, now, t);
    cc_sl_handled(&e->chan_sl[c->channel], now, t);
}

/* The 15, 30 and 60 minute windows of sl, with the response-time
 * percentiles of rt (a channel's; NULL for a queue). */
static void
pack_sl_windows(msgpack_packer *pk, const struct cc_sl *sl,
                const struct cc_rt *rt, uint64_t now) {
    static const unsigned minutes[] = {15, 30, 60};
    unsigned i;

    msgpack_pack_array(pk, 3);
    for (i = 0; i < 3; i++) {
        struct cc_sl_window w;
        int level, level_short;

        cc_sl_window(sl, now, minutes[i], &w);
        level = cc_sl_level(&w);
        level_short = cc_sl_level_short(&w);
        msgpack_pack_map(pk, 12 + (rt != NULL));
        cc_pack_kv_u64(pk, "window_ms", (uint64_t)minutes[i] * 60000);
        cc_pack_kv_u64(pk, "offered", w.offered);
        cc_pack_kv_u64(pk, "answered", w.answered);
        cc_pack_kv_u64(pk, "answered_in_target", w.in_target);
        cc_pack_kv_u64(pk, "answered_with_target", w.with_target);
        cc_pack_kv_u64(pk, "abandoned", w.abandoned);
        cc_pack_kv_u64(pk, "short_abandoned", w.short_abandoned);
        cc_pack_str(pk, "service_level");
        if (level < 0)
            msgpack_pack_nil(pk);
        else
            msgpack_pack_double(pk, (double)level / 10.0);
        cc_pack_str(pk, "service_level_short");
        if (level_short < 0)
            msgpack_pack_nil(pk);
        else
            msgpack_pack_double(pk, (double)level_short / 10.0);
        cc_pack_str(pk, "asa_ms");
        if (w.answered == 0)
            msgpack_pack_nil(pk);
        else
            cc_pack_u64(pk, w.wait_ms / w.answered);
        cc_pack_kv_u64(pk, "handled", w.handled);
        cc_pack_str(pk, "aht_ms");
        if (w.handled == 0)
            msgpack_pack_nil(pk);
        else
            cc_pack_u64(pk, w.handle_ms / w.handled);
        if (rt != NULL) {
            static const unsigned pm[] = {500, 900, 990};
            static const char *const names[] = {"p50_ms", "p90_ms", "p99_ms"};
            uint64_t n = 0;
            unsigned j;
            cc_pack_str(pk, "response_ms");
            msgpack_pack_map(pk, 4);
            for (j = 0; j < 3; j++) {
                int64_t v = cc_rt_percentile(rt, now, minutes[i], pm[j], &n);
                cc_pack_str(pk, names[j]);
                if (v < 0)
                    msgpack_pack_nil(pk);
                else
                    cc_pack_u64(pk, (uint64_t)v);
            }
            cc_pack_kv_u64(pk, "count", n);
        }
    }
}

static const char *const agent_state_names[AG__COUNT] = {"offline", "available",
                                                         "busy", "away"};

/* "agents": how many of the agents serving a queue (or all) are in each
 * state. */
static void
pack_queue_agents(msgpack_packer *pk, const uint32_t *by_state) {
    unsigned i;

    cc_pack_str(pk, "agents");
    msgpack_pack_map(pk, AG__COUNT);
    for (i = 0; i < AG__COUNT; i++)
        cc_pack_kv_u64(pk, agent_state_names[i], by_state[i]);
}

/* "next": the first `limit` callers waiting, in the order they will be
 * answered. */
static void
pack_wait_est(msgpack_packer *pk, const struct cc_wait_est *w) {
    msgpack_pack_map(pk, 4);
    cc_pack_str(pk, "p50_ms");
    if (w->why == NULL)
        cc_pack_u64(pk, w->p50_ms);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "p80_ms");
    if (w->why == NULL)
        cc_pack_u64(pk, w->p80_ms);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "drain_ms");
    if (w->drain_ms >= 0)
        cc_pack_u64(pk, (uint64_t)w->drain_ms);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "why");
    if (w->why != NULL)
        cc_pack_str(pk, w->why);
    else
        msgpack_pack_nil(pk);
}

static void
pack_opt_double(msgpack_packer *pk, const char *key, bool have, double v) {
    cc_pack_str(pk, key);
    if (have)
        msgpack_pack_double(pk, v);
    else
        msgpack_pack_nil(pk);
}

/* How good q's estimates at join were, under the three keys given: how
 * many were answered, their mean absolute error, the share within 30 s. */
static void
pack_est_accuracy(msgpack_packer *pk, const struct cc_queue *q,
                  const char *n_key, const char *mae_key,
                  const char *within_key) {
    cc_pack_kv_u64(pk, n_key, q->est_n);
    cc_pack_str(pk, mae_key);
    if (q->est_n != 0)
        cc_pack_u64(pk, q->est_abs_ms / q->est_n);
    else
        msgpack_pack_nil(pk);
    pack_opt_double(pk, within_key, q->est_n != 0,
                    (double)q->est_within30 /
                        (double)(q->est_n ? q->est_n : 1));
}

/* "estimate": what the queue's estimates rest on (agents serving, handle
 * time, arrivals), Erlang C for the queue as a whole, and how good the
 * estimates given at join were. */
static void
pack_queue_estimate(struct cc_engine *e, msgpack_packer *pk, struct cc_queue *q,
                    uint64_t now) {
    const struct cc_sl_window *r =
        cc_sl_running(&q->sl, now, e->cfg.sl_window_min);
    unsigned n = q->agents[AG_AVAILABLE] + q->agents[AG_BUSY];
    double window = (double)e->cfg.sl_window_min * 60000.0;
    double aht = r->handled ? (double)r->handle_ms / (double)r->handled : 0;
    double traffic = (double)r->offered / window * aht;
    const char *why = n == 0            ? "no agent serves the queue"
                      : r->handled == 0 ? "no handle times in the window yet"
                      : traffic >= 0.999 * n ? "overloaded: as much traffic "
                                               "as agents, waits grow without "
                                               "bound"
                                             : NULL;

    cc_pack_str(pk, "estimate");
    msgpack_pack_map(pk, 7);
    cc_pack_kv_u64(pk, "serving", n);
    cc_pack_kv_u64(pk, "free", q->agents[AG_AVAILABLE]);
    cc_pack_str(pk, "aht_ms");
    if (r->handled != 0)
        cc_pack_u64(pk, ms_of(aht));
    else
        msgpack_pack_nil(pk);
    pack_opt_double(pk, "traffic_erlangs", r->handled != 0, traffic);
    cc_pack_str(pk, "erlang_c");
    if (why == NULL) {
        msgpack_pack_map(pk, 4);
        pack_opt_double(pk, "p_wait", true, cc_erlang_c(n, traffic));
        cc_pack_kv_u64(pk, "asa_ms", ms_of(cc_erlang_asa(n, traffic, aht)));
        cc_pack_kv_u64(pk, "p50_ms",
                       ms_of(cc_erlang_wait_quantile(n, traffic, aht, 0.5)));
        cc_pack_kv_u64(pk, "p80_ms",
                       ms_of(cc_erlang_wait_quantile(n, traffic, aht, 0.8)));
    } else {
        msgpack_pack_nil(pk);
    }
    cc_pack_str(pk, "why");
    if (why != NULL)
        cc_pack_str(pk, why);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "accuracy");
    msgpack_pack_map(pk, 3);
    pack_est_accuracy(pk, q, "answered", "mae_ms", "within_30s");
}

static void
pack_queue_next(struct cc_engine *e, msgpack_packer *pk, struct cc_queue *q,
                uint32_t limit, uint64_t now) {
    const struct cc_contact *c;
    uint32_t n = q->waiting < limit ? (uint32_t)q->waiting : limit, k = 0;

    cc_pack_str(pk, "next");
    msgpack_pack_array(pk, n);
    for (c = q->head; c != NULL && k < n; c = c->qnext) {
        struct cc_wait_est w;
        cc_wait_estimate(e, q, k, now, &w);
        msgpack_pack_map(pk, 10);
        cc_pack_str(pk, "estimate");
        pack_wait_est(pk, &w);
        /* A callback's place: the caller is not on the line. */
        cc_pack_str(pk, "callback");
        if (cc_contact_is_place(c)) {
            msgpack_pack_true(pk);
            cc_cb_pack_place(e, pk, c);
        } else {
            msgpack_pack_false(pk);
            cc_pack_contact_fields(e, pk, c);
        }
        cc_pack_str(pk, "priority");
        if (c->prio1 != 0)
            msgpack_pack_uint32(pk, c->prio1 - 1u);
        else
            msgpack_pack_nil(pk);
        cc_pack_kv_u64(pk, "position", ++k);
        cc_pack_kv_u64(
            pk, "waited_ms",
            now > (uint64_t)c->queued_ts ? now - (uint64_t)c->queued_ts : 0);
    }
}

int
cc_engine_pack_service_level(struct cc_engine *e, struct cc_str queue,
                             struct cc_str channel, uint32_t limit,
                             msgpack_packer *pk, const char **why) {
    uint64_t now = e->wheel.now, i;

    if (channel.n != 0) {
        int ch = cc_channels_find(&e->cfg.channels, channel);
        if (ch < 0) {
            *why = "unknown channel";
            return CC_ENOENT;
        }
        msgpack_pack_map(pk, 3);
        cc_pack_str(pk, "channel");
        cc_pack_strn(pk, channel.p, channel.n);
        cc_pack_kv_u64(pk, "now", now);
        cc_pack_str(pk, "windows");
        pack_sl_windows(pk, &e->chan_sl[ch], &e->chan_rt[ch], now);
        return 0;
    }
    for (i = 0; i < e->nqueues; i++) {
        struct cc_queue *q = e->queues[i];
        if (q->name->len != queue.n || memcmp(q->name->s, queue.p, queue.n))
            continue;
        msgpack_pack_map(pk, 11);
        cc_pack_str(pk, "queue");
        cc_pack_strn(pk, queue.p, queue.n);
        cc_pack_kv_u64(pk, "now", now);
        cc_pack_kv_u64(pk, "waiting", q->waiting);
        cc_pack_str(pk, "callbacks");
        cc_cb_pack_queue(q, pk);
        cc_pack_kv_u64(pk, "longest_wait_ms", longest_wait(q, now));
        pack_queue_agents(pk, q->agents);
        pack_queue_estimate(e, pk, q, now);
        pack_queue_next(e, pk, q, limit, now);
        cc_pack_str(pk, "below_target");
        if (q->sl.below)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        cc_pack_kv_u64(pk, "target", e->cfg.sl_target);
        cc_pack_str(pk, "windows");
        pack_sl_windows(pk, &q->sl, NULL, now);
        return 0;
    }
    *why = queue.n ? "no such queue: no contact has joined it"
                   : "a queue query needs 'queue' or 'channel'";
    return queue.n ? CC_ENOENT : CC_EINVAL;
}

/* ---- SLA queries ------------------------------------------------------ */

static void
pack_due(msgpack_packer *pk, uint64_t due) {
    if (due == CC_CAL_NEVER)
        msgpack_pack_nil(pk);
    else
        cc_pack_u64(pk, due);
}

/* Where a clock that may pause stands: counted `acc` (business ms with a
 * calendar) up to `from`, and running from there unless paused. A clock
 * that never pauses has counted nothing at its start. */
struct clock_pos {
    uint64_t start, from, acc;
    bool paused;
};

/* When stage i of a clock at p falls due; CC_CAL_NEVER while paused. */
static uint64_t
pos_due(const struct cc_sched *sc, unsigned i, const struct clock_pos *p) {
    return p->paused ? CC_CAL_NEVER
                     : cc_sched_due_after(sc, i, p->from, p->acc);
}

/* When a clock at p breaches (CC_CAL_NEVER: not while paused, or its
 * calendar has no business time left). */
static uint64_t
pos_breach(const struct cc_sched *sc, const struct clock_pos *p) {
    unsigned i;

    for (i = 0; i < sc->nstages; i++)
        if (sc->st[i].type == CC_ST_BREACH)
            return pos_due(sc, i, p);
    return CC_CAL_NEVER;
}

/* Where a contact's clock (answer or hold: they never pause) stands. */
static struct clock_pos
contact_clock_pos(const struct cc_contact *c) {
    uint64_t start = (uint64_t)clock_start(c);
    return (struct clock_pos){start, start, 0, false};
}

/* The breach's due time of a contact's running clock (CC_CAL_NEVER when
 * its calendar has none). */
static uint64_t
breach_due(const struct cc_sched *sc, const struct cc_contact *c) {
    struct clock_pos p = contact_clock_pos(c);
    return pos_breach(sc, &p);
}

/* What every clock answers with: 9 pairs (clock, start, target_ms,
 * elapsed_ms, breach_due, left_ms, policy, calendar, stages). */
#define CLOCK_PAIRS 9
static void
pack_clock_common(struct cc_engine *e, msgpack_packer *pk,
                  const struct cc_sched *sc, const struct clock_pos *p,
                  unsigned next) {
    uint64_t now = e->wheel.now, breach = pos_breach(sc, p);
    unsigned i;

    cc_pack_str(pk, "clock");
    cc_pack_str(pk, cc_clock_name(sc->clock));
    cc_pack_kv_u64(pk, "start", p->start);
    cc_pack_kv_u64(pk, "target_ms", sc->target);
    cc_pack_kv_u64(pk, "elapsed_ms", now > p->start ? now - p->start : 0);
    cc_pack_str(pk, "breach_due");
    pack_due(pk, breach);
    /* Negative once breached. */
    cc_pack_str(pk, "left_ms");
    if (breach == CC_CAL_NEVER)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_int64(pk, (int64_t)(breach - now));
    cc_pack_str(pk, "policy");
    cc_pack_str(pk, sc->by->section);
    pack_calendar(pk, sc);
    cc_pack_str(pk, "stages");
    msgpack_pack_array(pk, sc->nstages);
    for (i = 0; i < sc->nstages; i++) {
        msgpack_pack_map(pk, 4);
        cc_pack_str(pk, "alert");
        cc_pack_str(pk, cc_stage_alert(sc->st[i].type));
        cc_pack_kv_u64(pk, "level", sc->st[i].level);
        /* A clock that pauses knows when its stages to come fall due
         * (while it runs), not when those it fired did. */
        cc_pack_str(pk, "due");
        pack_due(pk,
                 p->acc != 0 && i < next ? CC_CAL_NEVER : pos_due(sc, i, p));
        cc_pack_str(pk, "fired");
        if (i < next)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
    }
}

/* One contact's running clock: what it is, where it stands, every stage. */
static void
pack_clock(struct cc_engine *e, msgpack_packer *pk, const struct cc_contact *c,
           const struct cc_sched *sc) {
    struct clock_pos p = contact_clock_pos(c);

    msgpack_pack_map(pk, CLOCK_PAIRS + 6);
    cc_pack_contact_fields(e, pk, c);
    cc_pack_str(pk, "agent");
    cc_pack_name_or_nil(pk, c->agent);
    pack_clock_common(e, pk, sc, &p, c->sla_stage);
}

/* Where a conversation's resolution clock (res) or response clock
 * stands. */
static struct clock_pos
conv_clock_pos(const struct cc_conv *v, bool res) {
    uint64_t base = (uint64_t)v->started_ts;

    if (res)
        return (struct clock_pos){base, base + v->res.seg, v->res.acc,
                                  v->res.paused};
    return (struct clock_pos){base + v->resp.start, base + v->resp.start, 0,
                              false};
}

/* A conversation's clock for the sla query; the resolution clock also
 * says what it has counted (agent time, to now) and whether it is
 * paused. */
static void
pack_conv_clock(struct cc_engine *e, msgpack_packer *pk,
                const struct cc_conv *v, bool res) {
    const struct cc_sched *sc =
        cc_slas_get(e->slas, res ? v->res.sched : v->resp.sched);
    struct clock_pos p = conv_clock_pos(v, res);

    msgpack_pack_map(pk, CLOCK_PAIRS + 1 + (res ? 2 : 0));
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, v);
    pack_clock_common(e, pk, sc, &p, res ? v->res.stage : v->resp.stage);
    if (res) {
        cc_pack_kv_u64(
            pk, "counted_ms",
            p.acc +
                (p.paused ? 0 : cc_sched_between(sc, p.from, e->wheel.now)));
        cc_pack_str(pk, "paused");
        if (p.paused)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
    }
}

void
cc_engine_fire_conv_stage(struct cc_engine *e, struct cc_conv *v, bool res,
                          unsigned i, uint64_t due, uint64_t now) {
    msgpack_packer *pk = &e->outbox.pk;
    const struct cc_sched *sc =
        cc_slas_get(e->slas, res ? v->res.sched : v->resp.sched);
    const struct cc_sched_stage *st = &sc->st[i];
    const char *alert = cc_stage_alert(st->type);
    const char *clock = cc_clock_name(sc->clock);
    uint64_t start = conv_clock_pos(v, res).start;
    uint16_t last = (uint16_t)(st->type << 4 | st->level) & 0x3f;
    size_t alen = strlen(alert), clen = strlen(clock);
    char id[128], *w = id;

    /* "<alert>:cv-<n>:<clock>:<start>:<level>": the same stage of the same
     * clock always has the same id. Formatted by hand: an alert storm (a
     * restart after downtime) formats one per alert. */
    CC_ASSERT(alen + clen + 3 * 20 + 8 <= sizeof(id));
    memcpy(w, alert, alen);
    w += alen;
    memcpy(w, ":cv-", 4);
    w += 4;
    w += cc_fmt_u64(w, v->id);
    *w++ = ':';
    memcpy(w, clock, clen);
    w += clen;
    *w++ = ':';
    w += cc_fmt_u64(w, start);
    *w++ = ':';
    w += cc_fmt_u64(w, st->level);
    cc_outbox_begin(&e->outbox, CC_OUT_ALERT, alert);
    msgpack_pack_map(pk, 4 + STAGE_PAIRS + 1);
    cc_pack_str(pk, "alert");
    cc_pack_str(pk, alert);
    cc_pack_str(pk, "id");
    cc_pack_strn(pk, id, (size_t)(w - id));
    cc_pack_str(pk, "ts");
    cc_pack_u64(pk, now);
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, v);
    pack_stage_fields(pk, sc, i, start, due, now);
    /* What a supervisor needs to act: channels, customer, queues, agents. */
    cc_pack_str(pk, "context");
    cc_conv_pack(e, pk, v, false);
    cc_outbox_end(&e->outbox);
    e->alerts_sla[st->type]++;
    if (res)
        v->res.last = last;
    else
        v->resp.last = last;
}

int
cc_engine_pack_sla(struct cc_engine *e, struct cc_str conv, msgpack_packer *pk,
                   const char **why) {
    struct cc_conv *v;
    const struct cc_contact *c;
    uint32_t n = 0;
    int rc = cc_conv_by_name(e, conv, &v, why);

    if (rc != 0)
        return rc;
    for (c = v->live; c != NULL; c = c->cvnext)
        n += cc_slas_get(e->slas, c->sla_sched) != NULL;
    n += (v->resp.sched != 0) + (v->res.sched != 0);
    msgpack_pack_map(pk, 3);
    cc_pack_str(pk, "conversation");
    cc_conv_pack_id(pk, v);
    cc_pack_kv_u64(pk, "now", e->wheel.now);
    cc_pack_str(pk, "clocks");
    msgpack_pack_array(pk, n);
    if (v->resp.sched != 0)
        pack_conv_clock(e, pk, v, false);
    if (v->res.sched != 0)
        pack_conv_clock(e, pk, v, true);
    for (c = v->live; c != NULL; c = c->cvnext) {
        const struct cc_sched *sc = cc_slas_get(e->slas, c->sla_sched);
        if (sc != NULL)
            pack_clock(e, pk, c, sc);
    }
    return 0;
}

/* A candidate for the forecast: a contact's clock, or a conversation's
 * response or resolution clock. While the conversations are walked a
 * candidate names its conversation by id (the walk spans loop turns, and
 * the conversation may close meanwhile); the answer looks it up again. */
enum { AR_CONTACT, AR_RESPONSE, AR_RESOLUTION };

struct at_risk {
    uint64_t breach;
    const void *p; /* the contact or the conversation, when packing */
    uint64_t id;   /* the conversation, while walking */
    int what;
};

static int
cmp_at_risk(const void *a, const void *b) {
    const struct at_risk *x = a, *y = b;
    return (x->breach > y->breach) - (x->breach < y->breach);
}

/* Keeps the `limit` soonest breaches seen so far in a max-heap: the root
 * is the latest of them, the one a sooner candidate replaces. */
static void
heap_offer(struct at_risk *h, uint32_t *n, uint32_t limit, struct at_risk x) {
    uint32_t i, k, child;

    if (*n < limit) {
        for (i = (*n)++; i > 0 && h[(i - 1) / 2].breach < x.breach;
             i = (i - 1) / 2)
            h[i] = h[(i - 1) / 2];
        h[i] = x;
        return;
    }
    if (limit == 0 || x.breach >= h[0].breach)
        return;
    for (k = 0;; k = child) {
        child = 2 * k + 1;
        if (child >= *n)
            break;
        if (child + 1 < *n && h[child + 1].breach > h[child].breach)
            child++;
        if (h[child].breach <= x.breach)
            break;
        h[k] = h[child];
    }
    h[k] = x;
}

static bool
queue_named(const struct cc_queue *q, struct cc_str name) {
    return name.n == 0 ||
           (q->name->len == name.n && memcmp(q->name->s, name.p, name.n) == 0);
}

/* The forecast query in progress: what it asked, how far the walk over
 * the conversations has come, and the soonest breaches found so far. */
struct cc_at_risk {
    uint32_t limit, n, qidx;
    uint64_t next;              /* the next conversation bucket */
    struct at_risk *walk, *out; /* limit each */
    size_t qlen;
    char queue[]; /* the queue asked for, qlen bytes (none: every queue) */
};

/* The query's one allocation: itself, the queue's name rounded up to 8
 * bytes, and its two arrays. */
static size_t
at_risk_size(size_t qlen, uint32_t limit) {
    return sizeof(struct cc_at_risk) + ((qlen + 7) & ~(size_t)7) +
           2 * (size_t)limit * sizeof(struct at_risk);
}

int
cc_engine_at_risk_begin(struct cc_engine *e, struct cc_str queue,
                        uint32_t limit, struct cc_at_risk **out,
                        const char **why) {
    struct cc_at_risk *q;
    uint32_t qidx = 0;
    uint64_t i;
    char *mem;

    for (i = 0; i < e->nqueues && queue.n != 0 && qidx == 0; i++)
        if (queue_named(e->queues[i], queue))
            qidx = e->queues[i]->name->idx;
    if (queue.n != 0 && qidx == 0) {
        *why = "no such queue: no contact has joined it";
        return CC_ENOENT;
    }
    if (limit == 0)
        limit = 1;
    mem = cc_malloc(at_risk_size(queue.n, limit));
    if (mem == NULL) {
        *why = "out of memory";
        return CC_ENOMEM;
    }
    q = (struct cc_at_risk *)mem;
    memset(q, 0, sizeof(*q));
    q->limit = limit;
    q->qidx = qidx;
    q->qlen = queue.n;
    if (queue.n != 0)
        memcpy(q->queue, queue.p, queue.n);
    /* The arrays after the name, aligned. */
    q->walk = (struct at_risk *)(void *)(mem + sizeof(*q) +
                                         ((queue.n + 7) & ~(size_t)7));
    q->out = q->walk + limit;
    *out = q;
    return 0;
}

/* Offers conversation v's running clocks (queue permitting) to the heap
 * h of n of limit, under `key`: the conversation's id while walking, its
 * record when packing. */
static void
at_risk_offer_conv(struct cc_engine *e, const struct cc_conv *v, uint32_t qidx,
                   struct at_risk *h, uint32_t *n, uint32_t limit,
                   bool packing) {
    struct at_risk x = {0, packing ? v : NULL, v->id, 0};

    if (v->state != CV_OPEN || (qidx != 0 && v->queues[0] != qidx))
        return;
    if (v->resp.sched != 0) {
        struct clock_pos p = conv_clock_pos(v, false);
        x.breach = pos_breach(cc_slas_get(e->slas, v->resp.sched), &p);
        x.what = AR_RESPONSE;
        heap_offer(h, n, limit, x);
    }
    /* A paused clock waits on the customer: not at risk. */
    if (v->res.sched != 0 && !v->res.paused) {
        struct clock_pos p = conv_clock_pos(v, true);
        x.breach = pos_breach(cc_slas_get(e->slas, v->res.sched), &p);
        x.what = AR_RESOLUTION;
        heap_offer(h, n, limit, x);
    }
}

bool
cc_engine_at_risk_step(struct cc_engine *e, struct cc_at_risk *q,
                       uint64_t budget) {
    struct cc_conv **b = e->convs.buckets;
    uint64_t mask = e->convs.mask, end = q->next + budget, i;
    const struct cc_conv *v;

    if (end > mask + 1 || end < q->next)
        end = mask + 1;
    /* The conversations are not indexed by queue: the walk reads every
     * one, asking for the three lines it needs a few buckets ahead. */
    for (i = q->next; i < end; i++) {
        if (i + 8 <= mask && b[i + 8] != NULL) {
            const char *r = (const char *)b[i + 8];
            __builtin_prefetch(r + offsetof(struct cc_conv, queues));
            __builtin_prefetch(r + offsetof(struct cc_conv, hnext));
            __builtin_prefetch(r + offsetof(struct cc_conv, res));
        }
        for (v = b[i]; v != NULL; v = v->hnext)
            at_risk_offer_conv(e, v, q->qidx, q->walk, &q->n, q->limit, false);
    }
    q->next = end;
    return end == mask + 1;
}

void
cc_engine_at_risk_end(struct cc_engine *e, struct cc_at_risk *q,
                      msgpack_packer *pk) {
    uint32_t n = 0, k;
    uint64_t i;
    const struct cc_contact *c;
    struct cc_str queue = {q->qlen != 0 ? q->queue : NULL, (uint32_t)q->qlen};

    if (pk == NULL)
        goto out;
    /* The callers waiting, as they stand now; the conversations found,
     * looked up again and their clocks read again (one that closed or
     * stopped since it was found is left out). A walk of a queue of a
     * million callers is a walk, not a sort. */
    for (i = 0; i < e->nqueues; i++) {
        if (!queue_named(e->queues[i], queue))
            continue;
        for (c = e->queues[i]->head; c != NULL; c = c->qnext) {
            const struct cc_sched *sc = cc_slas_get(e->slas, c->sla_sched);
            if (sc != NULL)
                heap_offer(
                    q->out, &n, q->limit,
                    (struct at_risk){breach_due(sc, c), c, 0, AR_CONTACT});
        }
    }
    for (k = 0; k < q->n; k++) {
        /* A conversation merged since it was found: its survivor. */
        const struct cc_conv *v = cc_conv_find(e, q->walk[k].id);
        uint32_t j;
        bool seen = false;
        q->walk[k].p = v;
        /* Once per conversation: two found may be one now, and a
         * conversation's two clocks are both offered at once. */
        for (j = 0; j < k && !seen; j++)
            seen = q->walk[j].p == v;
        if (v == NULL || seen)
            continue;
        at_risk_offer_conv(e, v, q->qidx, q->out, &n, q->limit, true);
    }
    qsort(q->out, n, sizeof(*q->out), cmp_at_risk);
    msgpack_pack_map(pk, 3);
    cc_pack_str(pk, "queue");
    if (queue.n != 0)
        cc_pack_strn(pk, queue.p, queue.n);
    else
        msgpack_pack_nil(pk);
    cc_pack_kv_u64(pk, "now", e->wheel.now);
    cc_pack_str(pk, "at_risk");
    msgpack_pack_array(pk, n);
    for (k = 0; k < n; k++) {
        if (q->out[k].what == AR_CONTACT) {
            c = q->out[k].p;
            pack_clock(e, pk, c, cc_slas_get(e->slas, c->sla_sched));
        } else {
            pack_conv_clock(e, pk, q->out[k].p,
                            q->out[k].what == AR_RESOLUTION);
        }
    }
out:
    cc_free(q, at_risk_size(q->qlen, q->limit));
}

int
cc_engine_pack_at_risk(struct cc_engine *e, struct cc_str queue, uint32_t limit,
                       msgpack_packer *pk, const char **why) {
    struct cc_at_risk *q;
    int rc = cc_engine_at_risk_begin(e, queue, limit, &q, why);

    if (rc != 0)
        return rc;
    while (!cc_engine_at_risk_step(e, q, UINT64_MAX))
        ;
    cc_engine_at_risk_end(e, q, pk);
    return 0;
}

/* ---- the lifecycle ---------------------------------------------------- */

#define STATE_REJECT(text)                                                     \
    do {                                                                       \
        rej->code = CC_R_STATE;                                                \
        rej->key = NULL;                                                       \
        rej->detail = (text);                                                  \
        return -1;                                                             \
    } while (0)

/* Events that begin or continue a lifecycle open an unknown contact;
 * events that only end something (queue.leave, hold.end, contact.close)
 * cannot, because there is nothing of theirs to end. */
static bool
opens_implicitly(enum cc_event_type t) {
    switch (t) {
    case CC_EV_MESSAGE_IN:
    case CC_EV_MESSAGE_OUT:
    case CC_EV_QUEUE_JOIN:
    case CC_EV_AGENT_ANSWER:
    case CC_EV_HOLD_START:
    case CC_EV_TRANSFER:
        return true;
    default:
        return false;
    }
}

/* The schedule of clock k for channel ch, queue q (NULL: none), priority
 * prio (-1: none) and conversation v's tags (v may be NULL). */
static uint16_t
subject_sched(struct cc_engine *e, unsigned ch, const struct cc_name *q,
              int32_t prio, const struct cc_conv *v, enum cc_clock k) {
    struct cc_str tags[CONV_TAGS];
    struct cc_sla_subject s;
    struct cc_sched_key key;
    uint32_t i, n = 0;

    _Static_assert(CONV_TAGS <= CC_SLA_STAGES, "the key holds every tag");
    memset(&key, 0, sizeof(key));
    key.channel = (uint8_t)ch;
    key.queue = q ? q->idx : 0;
    key.priority = (int8_t)prio;
    if (v != NULL && (v->flags & CVF_TAGS)) {
        for (i = 0; i < CONV_TAGS && v->tags[i] != 0; i++) {
            const struct cc_name *t = cc_name_at(e, v->tags[i]);
            tags[n].p = t->s;
            tags[n].n = t->len;
            key.tags[n] = t->idx;
            n++;
        }
    }
    key.ntags = (uint8_t)n;
    s.channel = e->cfg.channels.names[ch];
    s.queue.p = q ? q->s : "";
    s.queue.n = q ? q->len : 0;
    s.priority = prio;
    s.tags = tags;
    s.ntags = n;
    return cc_slas_sched(e->slas, &s, k, &key);
}

/* The schedule of a contact's clock k: by its channel, its queue (the one
 * it waits in or was answered from; none before any), the join's priority
 * and its conversation's tags. */
static uint16_t
contact_sched(struct cc_engine *e, const struct cc_contact *c,
              enum cc_clock k) {
    return subject_sched(e, c->channel, c->queue ? c->queue->name : NULL,
                         (int32_t)c->prio1 - 1, c->conv, k);
}

uint16_t
cc_engine_contact_sched(struct cc_engine *e, const struct cc_contact *c,
                        enum cc_clock k) {
    return contact_sched(e, c, k);
}

uint16_t
cc_engine_conv_sched(struct cc_engine *e, const struct cc_conv *v, unsigned ch,
                     enum cc_clock k) {
    return subject_sched(e, ch, cc_name_at(e, v->queues[0]), -1, v, k);
}

const struct cc_calendar *
cc_engine_cb_calendar(struct cc_engine *e, const struct cc_queue *q) {
    const struct cc_sla_config *sla = &e->slas->cfg;
    const char *name = q->cb->calendar;
    const struct cc_sched *sc;
    uint32_t i;

    if (name[0] != '\0') {
        for (i = 0; i < sla->ncalendars; i++)
            if (strcmp(sla->calendars[i].name, name) == 0)
                return &e->slas->cals[i];
        return NULL; /* gone with a reload: [callback] is checked at load */
    }
    /* The hours the queue's phone answer clock keeps: callbacks are
     * calls. */
    sc = cc_slas_get(e->slas,
                     subject_sched(e, 0, q->name, -1, NULL, CC_CLOCK_ANSWER));
    return sc != NULL ? sc->cal : NULL;
}

static int
join_queue(struct cc_engine *e, struct cc_contact *c, struct cc_queue *q,
           const struct cc_event *ev, uint64_t now) {
    struct cc_wait_est w;

    c->prio1 = (ev->flags & CC_EVF_PRIORITY) ? (uint16_t)(ev->priority + 1) : 0;
    /* The estimate it would be told at its join, kept to measure how good
     * the estimates are once it is answered. */
    c->joined_est = -1;
    if (q->agents[AG_AVAILABLE] + q->agents[AG_BUSY] != 0) {
        cc_wait_estimate(e, q, cc_queue_ahead(q, c->prio1), now, &w);
        if (w.why == NULL)
            c->joined_est = (int64_t)w.p50_ms;
    }
    queue_insert(q, c);
    set_state(e, c, CS_QUEUED);
    c->queued_ts = ev->ts;
    /* Offered to the queue, by a join or a transfer. */
    cc_sl_offered(&q->sl, now);
    cc_sl_offered(&e->chan_sl[c->channel], now);
    c->flags &= (uint8_t) ~(CF_OFFERED | CF_ACCEPTED | CF_NO_OFFER);
    /* Offers go to callers with a phone number. */
    if (!(c->flags & CF_PHONE) && ev->ident[CC_IDENT_PHONE].n == 0)
        c->flags |= CF_NO_OFFER;
    c->sla_sched = contact_sched(e, c, CC_CLOCK_ANSWER);
    c->sla_stage = 0;
    c->sla_last = SLA_LAST_NONE;
    arm_state_timer(e, c);
    return 0;
}

static int
set_agent(struct cc_engine *e, struct cc_contact *c, struct cc_str agent,
          struct cc_reject *rej) {
    const struct cc_name *n;
    if (agent.n == 0)
        return 0;
    n = cc_name_intern(e, agent);
    if (n == NULL) {
        rej->code = CC_R_LIMIT;
        rej->key = "agent";
        rej->detail = "[limits] max_names distinct queue and agent names";
        return -1;
    }
    c->agent = n;
    return 0;
}

static void
end_hold(struct cc_engine *e, struct cc_contact *c, const struct cc_event *ev) {
    if (ev->ts > c->hold_ts)
        c->hold_total_ms += (uint64_t)(ev->ts - c->hold_ts);
    cc_wheel_cancel(&e->wheel, &c->state_timer);
    c->sla_sched = 0; /* the hold clock stops */
}

static int agent_status(struct cc_engine *e, const struct cc_event *ev,
                        uint64_t now, struct cc_reject *rej);

/* Applies a lifecycle event to contact c. Returns 0, or -1 with *rej set
 * and nothing changed. */
static int
lifecycle(struct cc_engine *e, struct cc_contact *c, const struct cc_event *ev,
          uint64_t now, struct cc_reject *rej) {
    struct chan_stats *cs = &e->chan[c->channel];
    struct cc_queue *q = NULL;

    switch ((enum cc_event_type)ev->type) {
    case CC_EV_CONTACT_OPEN:
        STATE_REJECT("contact is already open");
    case CC_EV_MESSAGE_IN:
        c->msgs_in++;
        cs->msgs_in++;
        return 0;
    case CC_EV_MESSAGE_OUT:
        if (set_agent(e, c, ev->agent, rej))
            return -1;
        c->msgs_out++;
        cs->msgs_out++;
        return 0;
    case CC_EV_QUEUE_JOIN:
        if (c->state == CS_QUEUED)
            STATE_REJECT("contact is already queued (use transfer to move "
                         "it to another queue)");
        if (c->state == CS_HELD)
            STATE_REJECT("contact is on hold");
        q = queue_get(e, ev->queue, rej);
        if (q == NULL)
            return -1;
        return join_queue(e, c, q, ev, now);
    case CC_EV_QUEUE_LEAVE:
        if (c->state != CS_QUEUED)
            STATE_REJECT("contact is not queued");
        c->queue->abandoned++;
        cs->abandoned++;
        c->flags |= CF_ABANDONED;
        sl_abandoned(e, c, ev, now);
        leave_queue(e, c, now, "abandoned");
        set_state(e, c, CS_OPEN);
        return 0;
    case CC_EV_AGENT_ANSWER:
        if (c->state == CS_CONNECTED || c->state == CS_HELD)
            STATE_REJECT("contact is already connected to an agent");
        if (set_agent(e, c, ev->agent, rej))
            return -1;
        if (c->state == CS_QUEUED) {
            c->queue->answered++;
            sl_answered(e, c, ev, now);
            leave_queue(e, c, now, "answered");
        }
        c->flags |= CF_ANSWERED;
        c->queued_ts = ev->ts; /* from here on, the handle time's start */
        cs->answered++;
        set_state(e, c, CS_CONNECTED);
        return 0;
    case CC_EV_HOLD_START:
        if (c->state == CS_HELD)
            STATE_REJECT("contact is already on hold");
        if (c->state != CS_CONNECTED)
            STATE_REJECT("contact is not connected to an agent");
        c->hold_ts = ev->ts;
        cs->holds++;
        set_state(e, c, CS_HELD);
        c->sla_sched = contact_sched(e, c, CC_CLOCK_HOLD);
        c->sla_stage = 0;
        c->sla_last = SLA_LAST_NONE;
        arm_state_timer(e, c);
        return 0;
    case CC_EV_HOLD_END:
        if (c->state != CS_HELD)
            STATE_REJECT("contact is not on hold");
        end_hold(e, c, ev);
        set_state(e, c, CS_CONNECTED);
        return 0;
    case CC_EV_TRANSFER:
        if (ev->queue.n == 0 && ev->agent.n == 0) {
            rej->code = CC_R_MISSING;
            rej->key = "queue";
            rej->detail = "or 'agent': where the contact goes";
            return -1;
        }
        if (c->state == CS_OPEN)
            STATE_REJECT("contact is neither queued nor connected");
        if (c->state == CS_QUEUED && ev->queue.n == 0)
            STATE_REJECT("a queued contact can only be transferred to a "
                         "queue");
        if (ev->queue.n != 0) {
            q = queue_get(e, ev->queue, rej);
            if (q == NULL)
                return -1;
        }
        if (set_agent(e, c, ev->agent, rej))
            return -1;
        if (c->state == CS_HELD) {
            end_hold(e, c, ev);
            set_state(e, c, CS_CONNECTED);
        }
        c->transfers++;
        c->flags |= CF_TRANSFERRED;
        cs->transfers++;
        if (q != NULL) {
            leave_queue(e, c, now, "transferred");
            c->agent = NULL;
            join_queue(e, c, q, ev, now);
        }
        return 0;
    case CC_EV_CALLBACK_ACCEPTED:
        if (c->state != CS_QUEUED)
            return cc_cb_event(e, c, ev, c->hash, now, rej);
        q = c->queue;
        if (cc_cb_accept(e, c, ev, now, rej) != 0)
            return -1;
        /* Out of the live queue, counted as a callback: its place (if it
         * keeps one) stands in for it. */
        c->flags =
            (uint8_t)((c->flags & ~CF_OFFERED) | CF_ACCEPTED | CF_CALLBACK);
        cc_wheel_cancel(&e->wheel, &c->state_timer);
        c->sla_sched = 0;
        set_state(e, c, CS_OPEN);
        cc_cb_queue_changed(e, q, now);
        return 0;
    case CC_EV_CALLBACK_DECLINED:
    case CC_EV_CALLBACK_COMPLETED:
    case CC_EV_CALLBACK_FAILED:
        return cc_cb_event(e, c, ev, c->hash, now, rej);
    case CC_EV_AGENT_STATUS:
        /* Naming a contact changes nothing of it. */
        return agent_status(e, ev, now, rej);
    default:
        return 0;
    }
}

static void
count_accepted(struct cc_engine *e, const struct cc_event *ev, uint64_t fp) {
    e->accepted++;
    e->by_type[ev->type]++;
    e->chan[ev->channel].events++;
    cc_dedup_add(&e->dedup, fp);
}

/* The hashes an event is looked up by, computed once. */
struct ev_keys {
    uint64_t fp;     /* duplicate window fingerprint of the id */
    uint64_t h;      /* contact hash, when the event names a contact */
    uint64_t thread; /* thread index key of an email or social message */
};

static inline void
event_keys(const struct cc_engine *e, const struct cc_event *ev,
           struct ev_keys *k) {
    k->fp = cc_dedup_fingerprint(&e->dedup, ev->id.p, ev->id.n);
    k->h = ev->contact.n ? cc_contact_hash(e, ev->channel, ev->contact) : 0;
    k->thread = cc_conv_thread_key(e, ev);
}

struct ev_idents;
static enum cc_verdict apply_keyed(struct cc_engine *e,
                                   const struct cc_event *ev,
                                   const struct ev_keys *k,
                                   struct ev_idents *ids, uint64_t now,
                                   struct cc_reject *rej);

/* ---- identity ---------------------------------------------------------- */

/* An event's identifiers, normalised and hashed. The ingest pipeline
 * prepares them ahead of the event's turn (so that their lookups can be
 * prefetched); otherwise they are prepared when needed. */
struct ev_idents {
    int8_t state; /* 0: not prepared, 1: ready, -1: refused (see rej) */
    uint32_t n;
    uint8_t kinds[CC_IDENT__COUNT];
    struct cc_str norm[CC_IDENT__COUNT];
    uint64_t hash[CC_IDENT__COUNT];
    struct cc_reject rej;
    char buf[CC_IDENT__COUNT][CC_IDENT_NORM_MAX];
};

static bool
has_identifiers(const struct cc_event *ev) {
    unsigned k;
    if (!(ev->flags & CC_EVF_CUSTOMER))
        return false;
    for (k = 0; k < CC_IDENT__COUNT; k++) {
        if (ev->ident[k].n != 0)
            return true;
    }
    return false;
}

/* Whether the event's identifiers need resolving: they are new for the
 * contact, or the contact has no conversation yet. An event repeating the
 * customer map its contact already has costs nothing here. */
static bool
wants_identity(const struct cc_event *ev, const struct cc_contact *c) {
    if (!has_identifiers(ev))
        return false;
    if (c == NULL || c->conv == NULL)
        return true;
    return c->cust_len != ev->customer_len ||
           !cc_bytes_eq(contact_customer(c), ev->customer, ev->customer_len);
}

/* Normalises and hashes every identifier of ev; one that cannot be
 * normalised refuses them all with the reason (the event will be rejected
 * before anything changes). */
static void
normalize_idents(const struct cc_engine *e, const struct cc_event *ev,
                 struct ev_idents *ids) {
    unsigned k;
    int len;

    ids->n = 0;
    ids->state = 1;
    for (k = 0; k < CC_IDENT__COUNT; k++) {
        if (ev->ident[k].n == 0)
            continue;
        len = cc_ident_normalize((enum cc_ident_kind)k, ev->ident[k],
                                 e->cfg.default_country, ids->buf[ids->n],
                                 sizeof(ids->buf[0]), &ids->rej.detail);
        if (len < 0) {
            ids->rej.code = CC_R_BAD_VALUE;
            ids->rej.key = cc_ident_key((enum cc_ident_kind)k);
            ids->state = -1;
            return;
        }
        ids->kinds[ids->n] = (uint8_t)k;
        ids->norm[ids->n].p = ids->buf[ids->n];
        ids->norm[ids->n].n = (uint32_t)len;
        ids->hash[ids->n] = cc_identity_hash(&e->ident, (enum cc_ident_kind)k,
                                             ids->norm[ids->n]);
        ids->n++;
    }
}

/* Links the event's identifiers and returns their customer (NULL when the
 * store is full: the event stands, its identity is counted as lost). */
static struct cc_customer *
resolve_idents(struct cc_engine *e, const struct cc_contact *c,
               const struct cc_event *ev, const struct ev_idents *ids) {
    struct cc_idresult res;
    uint32_t splits = 0;

    if (ev->type == CC_EV_IDENTITY_UNLINK) {
        (void)cc_identity_unlink(&e->ident, ids->kinds, ids->norm, ids->n,
                                 ev->id, ev->ts, &splits);
        return NULL;
    }
    if (cc_identity_resolve_hashed(&e->ident, ids->kinds, ids->norm, ids->hash,
                                   ids->n, ev->id, ev->ts, &res) != 0) {
        e->ident_limit++;
        return NULL;
    }
    if (res.conflict)
        cc_conv_alert_conflict(e, c, ev, &res, ids->kinds, ids->norm, ids->n);
    return res.cust;
}

/* ---- agents -------------------------------------------------------------- */

static enum cc_agent_state
agent_state_of(struct cc_str s) {
    return cc_str_eq(s, "available") ? AG_AVAILABLE
           : cc_str_eq(s, "busy")    ? AG_BUSY
           : cc_str_eq(s, "away")    ? AG_AWAY
                                     : AG_OFFLINE;
}

/* agent.status: the agent's state, and the queues it serves when the event
 * names them (`queues`, replacing those named before). All or nothing:
 * the limits are checked before anything is created, and the event is
 * refused with nothing changed when one would be passed. */
static int
agent_status(struct cc_engine *e, const struct cc_event *ev, uint64_t now,
             struct cc_reject *rej) {
    struct cc_queue *qs[AGENT_QUEUES];
    enum cc_agent_state st = agent_state_of(ev->state);
    struct cc_name *n;
    struct cc_agent *a;
    uint32_t nq = 0, count = 0, new_names = 0, new_queues = 0, i, k;
    struct cc_mp m;
    struct cc_str qn;

    if (ev->queues != NULL) {
        cc_mp_init(&m, ev->queues, ev->queues_len);
        (void)cc_mp_read_array(&m, &count); /* validated when decoded */
        if (count > AGENT_QUEUES) {
            rej->code = CC_R_OUT_OF_RANGE;
            rej->key = "queues";
            rej->detail = "an agent serves at most 16 queues";
            return -1;
        }
        /* What would be new (a name counted twice is harmless: the
         * check is only stricter). */
        for (i = 0; i < count && cc_mp_read_str(&m, &qn) == 0; i++) {
            const struct cc_name *qname = name_find(e, qn);
            new_names += qname == NULL;
            new_queues += qname == NULL || qname->queue == NULL;
        }
    }
    n = name_find(e, ev->agent);
    new_names += n == NULL;
    if (e->nnames + new_names > e->cfg.max_names) {
        rej->code = CC_R_LIMIT;
        rej->key = "agent";
        rej->detail = "[limits] max_names distinct queue and agent names";
        return -1;
    }
    if (e->nqueues + new_queues > e->cfg.max_queues) {
        rej->code = CC_R_LIMIT;
        rej->key = "queues";
        rej->detail = "[limits] max_queues queues";
        return -1;
    }
    if (n == NULL || n->agent == NULL) {
        /* The name first: once it is made, the record hangs off it. */
        if (n == NULL)
            n = (struct cc_name *)cc_name_intern(e, ev->agent);
        a = n != NULL ? cc_calloc(1, sizeof(*a)) : NULL;
        if (a == NULL) {
            rej->code = CC_R_LIMIT;
            rej->key = "agent";
            rej->detail = "out of memory";
            return -1;
        }
        a->state = AG_OFFLINE;
        n->agent = a;
        e->nagents++;
        e->agents_by_state[AG_OFFLINE]++;
    }
    a = n->agent;
    /* A late event (older than the state it would replace) changes
     * nothing: the agent's latest word stands. */
    if (a->since_ts > ev->ts)
        return 0;
    if (ev->queues != NULL) {
        cc_mp_init(&m, ev->queues, ev->queues_len);
        (void)cc_mp_read_array(&m, &count);
        for (i = 0; i < count && cc_mp_read_str(&m, &qn) == 0; i++) {
            qs[nq] = queue_get(e, qn, rej);
            if (qs[nq] == NULL)
                return -1; /* out of memory only: the limits held */
            for (k = 0; k < nq && qs[k] != qs[nq]; k++)
                ;
            nq += k == nq; /* a queue named twice counts once */
        }
    }
    for (i = 0; i < a->nqueues; i++)
        a->queues[i]->agents[a->state]--;
    if (ev->queues != NULL) {
        memcpy(a->queues, qs, nq * sizeof(*qs));
        a->nqueues = (uint8_t)nq;
    }
    e->agents_by_state[a->state]--;
    e->agents_by_state[st]++;
    a->state = (uint8_t)st;
    a->since_ts = ev->ts;
    for (i = 0; i < a->nqueues; i++) {
        a->queues[i]->agents[st]++;
        /* A freed agent may bring a callback's turn within its lead. */
        if (a->queues[i]->places != 0)
            cc_cb_queue_changed(e, a->queues[i], now);
    }
    return 0;
}

/* ---- applying one event -------------------------------------------------- */

/* Resolves the event's identifiers to a customer (if resolve) and, if
 * update, applies the event to the conversation of c (if any) or of that
 * customer. */
static inline void
apply_customer(struct cc_engine *e, struct cc_contact *c,
               const struct cc_event *ev, const struct ev_idents *ids,
               bool resolve, bool update, struct cc_conv_delta *d,
               uint64_t now) {
    struct cc_customer *cust = NULL;

    CC_SP_MARK(CC_SP_APPLY);
    if (resolve)
        cust = resolve_idents(e, c, ev, ids);
    CC_SP_MARK(CC_SP_IDENTITY);
    if (update)
        cc_conv_apply(e, c, cust, ev, d, now);
    CC_SP_MARK(CC_SP_CONV);
}

/* Events with no contact: agent status, identity links, and resolve and
 * feedback named by customer. */
static enum cc_verdict
apply_contactless(struct cc_engine *e, const struct cc_event *ev,
                  const struct ev_idents *ids, bool resolve, uint64_t fp,
                  uint64_t now, struct cc_reject *rej) {
    struct cc_conv_delta d = {0, 0, 0, false};

    if (ev->type == CC_EV_AGENT_STATUS && agent_status(e, ev, now, rej) != 0) {
        cc_engine_count_reject(e, rej->code);
        return CC_REJECTED;
    }
    apply_customer(e, NULL, ev, ids, resolve,
                   ev->type == CC_EV_CONVERSATION_RESOLVE ||
                       ev->type == CC_EV_FEEDBACK,
                   &d, now);
    count_accepted(e, ev, fp);
    return CC_ACCEPTED;
}

static enum cc_verdict
apply_keyed(struct cc_engine *e, const struct cc_event *ev,
            const struct ev_keys *k, struct ev_idents *ids, uint64_t now,
            struct cc_reject *rej) {
    struct cc_contact *c = NULL;
    struct cc_conv_delta d;
    uint64_t h = k->h, fp = k->fp;
    bool resolve;

    /* Events of one call share their time: the wheel has work only when
     * time moved or a timer armed at or before now waits. */
    if (now > e->wheel.now || e->wheel.expired != NULL)
        cc_wheel_advance(&e->wheel, now);
    if (cc_dedup_seen(&e->dedup, fp)) {
        e->duplicates++;
        return CC_DUPLICATE;
    }
    if (ev->contact.n != 0)
        c = cc_contact_find(e, ev->channel, ev->contact, h);
    resolve = wants_identity(ev, c);
    if (resolve) {
        if (ids->state == 0)
            normalize_idents(e, ev, ids);
        if (ids->state < 0) {
            *rej = ids->rej;
            e->ident_rejected++;
            goto rejected;
        }
    }
    if (ev->contact.n == 0)
        return apply_contactless(e, ev, ids, resolve, fp, now, rej);
    d.created = false;
    d.thread_key = k->thread;
    if (c == NULL) {
        if (ev->type == CC_EV_CONTACT_OPEN || opens_implicitly(ev->type)) {
            c = contact_open(e, ev, h, now, rej);
            if (c == NULL)
                goto rejected;
            d.created = true;
            if (ev->type != CC_EV_CONTACT_OPEN) {
                e->implicit_opens++;
                e->chan[ev->channel].implicit_opens++;
                /* A hold or transfer implies an agent already answered. */
                if (ev->type == CC_EV_HOLD_START || ev->type == CC_EV_TRANSFER)
                    set_state(e, c, CS_CONNECTED);
            }
        } else if ((ev->type >= CC_EV_CALLBACK_ACCEPTED &&
                    ev->type <= CC_EV_CALLBACK_FAILED) ||
                   ev->type == CC_EV_CONVERSATION_RESOLVE ||
                   ev->type == CC_EV_FEEDBACK) {
            /* Callback outcomes often arrive after the original contact
             * closed, and a resolve or a survey after it too: they are not
             * an error. A resolve or feedback that names the customer
             * still reaches the customer's conversation. */
            if (ev->type >= CC_EV_CALLBACK_ACCEPTED &&
                ev->type <= CC_EV_CALLBACK_FAILED) {
                if (cc_cb_event(e, NULL, ev, h, now, rej) != 0)
                    goto rejected;
                e->callback_unknown++;
            }
            return apply_contactless(e, ev, ids, resolve, fp, now, rej);
        } else {
            rej->code = CC_R_STATE;
            rej->key = NULL;
            rej->detail = "unknown contact: it was never opened, or is "
                          "already closed";
            goto rejected;
        }
    }
    d.prev_state = c->state;
    /* Read only when it means something: the line it is on is not loaded
     * for messages (see struct cc_contact). */
    d.prev_queued_ts = c->state == CS_QUEUED ? c->queued_ts : 0;
    if (ev->type == CC_EV_CONTACT_CLOSE) {
        if (c->state == CS_QUEUED) {
            c->queue->abandoned++;
            e->chan[c->channel].abandoned++;
            c->flags |= CF_ABANDONED;
            sl_abandoned(e, c, ev, now);
        }
        leave_queue(e, c, now, "closed");
        if (c->state == CS_CONNECTED || c->state == CS_HELD)
            sl_handled(e, c, ev, now);
        if (c->state == CS_HELD)
            end_hold(e, c, ev);
        apply_customer(e, c, ev, ids, resolve, true, &d, now);
        cc_conv_contact_end(e, c, ev->ts, false);
        e->chan[c->channel].closed++;
        contact_free(e, c);
        count_accepted(e, ev, fp);
        return CC_ACCEPTED;
    }
    if (ev->type != CC_EV_CONTACT_OPEN || !d.created) {
        if (lifecycle(e, c, ev, now, rej) != 0) {
            if (d.created)
                contact_free(e, c);
            goto rejected;
        }
    }
    /* The latest customer map wins; keeping the old one on failure loses
     * only an update of identifiers, never the event. */
    if (!d.created && (ev->flags & CC_EVF_CUSTOMER))
        (void)contact_set_customer(e, c, ev);
    apply_customer(e, c, ev, ids, resolve, true, &d, now);
    /* Joined a queue (its conversation known now, for the offer's
     * gates): an offer at join. */
    if ((ev->type == CC_EV_QUEUE_JOIN || ev->type == CC_EV_TRANSFER) &&
        c->state == CS_QUEUED && !(c->flags & CF_NO_OFFER))
        cc_cb_joined(e, c, now);
    if (ev->type == CC_EV_CALLBACK_ACCEPTED && c->conv != NULL)
        cc_cb_accepted_conv(e, c, now);
    /* Served here: a callback promised elsewhere is not needed. */
    if (ev->type == CC_EV_AGENT_ANSWER && c->conv != NULL &&
        (c->conv->flags & CVF_CALLBACK))
        cc_cb_served(e, c->conv, c, now, "served");
    c->last_seen = now;
    count_accepted(e, ev, fp);
    return CC_ACCEPTED;

rejected:
    cc_engine_count_reject(e, rej->code);
    return CC_REJECTED;
}

enum cc_verdict
cc_engine_apply(struct cc_engine *e, const struct cc_event *ev, uint64_t now,
                struct cc_reject *rej) {
    struct ev_keys k;
    struct ev_idents ids;

    event_keys(e, ev, &k);
    ids.state = 0;
    return apply_keyed(e, ev, &k, &ids, now, rej);
}

/* ---- one message ------------------------------------------------------ */

void
cc_ingest_report_fini(struct cc_ingest_report *r) {
    cc_free(r->rej, r->rej_cap * sizeof(*r->rej));
    msgpack_sbuffer_destroy(&r->ctx);
    memset(r, 0, sizeof(*r));
}

static void
report_reject(struct cc_ingest_report *r, uint32_t index,
              const struct cc_reject *rej) {
    if (r->rejected == r->rej_cap) {
        uint32_t ncap = r->rej_cap ? r->rej_cap * 2 : 16;
        struct cc_ingest_rejection *nv = cc_realloc(
            r->rej, r->rej_cap * sizeof(*r->rej), ncap * sizeof(*r->rej));
        CC_ASSERT(nv != NULL);
        r->rej = nv;
        r->rej_cap = ncap;
    }
    r->rej[r->rejected].index = index;
    r->rej[r->rejected].rej = *rej;
    r->rejected++;
}

/* One decoded event waiting in the ingest pipeline. */
struct ingest_slot {
    int rc;       /* from cc_msg_next: 1 event, 0 rejected, -1 none */
    uint32_t msg; /* which message of the call it came from */
    uint32_t index;
    struct cc_event ev;
    struct cc_reject rej;
    struct ev_keys k;
    struct ev_idents ids; /* prepared when the event will resolve them */
    /* Its contact's conversation when looked up, while no conversation
     * was freed since (convs.frees was conv_frees). */
    const struct cc_conv *conv;
    uint64_t conv_frees;
};

/* Describes the conversation of an accepted contact.open or message.in in
 * the report, for the ingest_ack reply. */
static void
report_context(struct cc_engine *e, struct cc_ingest_report *r,
               const struct ingest_slot *s) {
    const struct cc_contact *c;
    msgpack_packer pk;

    c = cc_contact_find(e, s->ev.channel, s->ev.contact, s->k.h);
    if (c == NULL || c->conv == NULL)
        return;
    msgpack_packer_init(&pk, &r->ctx, cc_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    cc_pack_kv_u64(&pk, "index", s->index);
    cc_pack_str(&pk, "conversation");
    cc_conv_pack_id(&pk, c->conv);
    cc_pack_str(&pk, "context");
    cc_conv_pack(e, &pk, c->conv, false);
    r->ncontext++;
}

#ifdef CC_STAGE_PROFILE
uint64_t cc_sp_last, cc_sp_ticks[CC_SP__COUNT];

void
cc_stageprof_reset(void) {
    memset(cc_sp_ticks, 0, sizeof(cc_sp_ticks));
    cc_sp_last = __rdtsc();
}

const char *
cc_stageprof_name(enum cc_sp_slot s) {
    static const char *const names[CC_SP__COUNT] = {
        "decode", "contact", "links",    "idnodes",     "customers",
        "owner",  "apply",   "identity", "conversation"};
    return names[s];
}
#endif

/* Walks the events of several messages in order. */
struct ingest_src {
    const struct cc_msgbuf *msgs;
    struct cc_ingest_report *reps;
    uint32_t n, cur;
    bool open;
    struct cc_msg_iter it;
};

static void
report_reset(struct cc_ingest_report *r) {
    r->events = r->accepted = r->duplicates = r->rejected = 0;
    r->error = NULL;
    r->ncontext = 0;
    r->ctx.size = 0;
}

/* Decodes the next event of the call into s and starts loading the memory
 * its application will read: the duplicate window slot and the contact's
 * hash bucket. Opens (and validates as a whole) each message on the way. */
static void
ingest_decode(struct cc_engine *e, struct ingest_src *src,
              struct ingest_slot *s) {
    for (;;) {
        if (!src->open) {
            struct cc_ingest_report *r;
            if (src->cur == src->n) {
                s->rc = -1;
                return;
            }
            r = &src->reps[src->cur];
            report_reset(r);
            /* The messages of a call are anywhere in memory (each its own
             * receive buffer in the daemon): start loading the head of the
             * one after next while this one is decoded. */
            if (src->cur + 2 < src->n) {
                const char *nx = src->msgs[src->cur + 2].data;
                __builtin_prefetch(nx);
                if (src->msgs[src->cur + 2].len > 64)
                    __builtin_prefetch(nx + 64);
            }
            if (cc_msg_open(&src->it, src->msgs[src->cur].data,
                            src->msgs[src->cur].len, &r->error) != 0) {
                cc_engine_count_bad_message(e);
                src->cur++;
                continue;
            }
            e->messages++;
            src->open = true;
        }
        s->index = src->it.index;
        s->rc = cc_msg_next(&src->it, &e->cfg.channels, &s->ev, &s->rej);
        if (s->rc >= 0)
            break;
        if (s->rc == CC_MSG_MALFORMED) {
            /* Counted as a message above; now also as a malformed one. */
            src->reps[src->cur].error = src->it.error;
            e->malformed++;
        }
        src->open = false;
        src->cur++;
    }
    s->msg = src->cur;
    if (s->rc != 1)
        return;
    event_keys(e, &s->ev, &s->k);
    cc_dedup_prefetch(&e->dedup, s->k.fp);
    if (s->ev.contact.n != 0)
        __builtin_prefetch(&e->buckets[s->k.h & e->bucket_mask]);
}

/* Starts loading the lines of a record of `size` bytes at p that mask
 * names (bit i: line i). Inlined with a constant size: no loop is left. */
static inline __attribute__((always_inline)) void
prefetch_lines(const void *p, size_t size, unsigned mask) {
    size_t i;
    for (i = 0; i < size / 64; i++)
        if (mask & (1u << i))
            __builtin_prefetch((const char *)p + 64 * i, 1);
}

/* The lines of a contact record an event of type t touches, as a mask. */
static inline unsigned
contact_lines(unsigned t) {
    _Static_assert(CONTACT_STRIDE == 256, "four lines");
    return t == CC_EV_MESSAGE_IN || t == CC_EV_MESSAGE_OUT ? 0x9 : 0xf;
}

/* The lines of a conversation record an event of type t touches (see
 * struct cc_conv), as a mask; its timeline slot is asked for apart. */
static inline unsigned
conv_lines(unsigned t) {
    _Static_assert(CONV_STRIDE == 512 &&
                       offsetof(struct cc_conv, res) / 64 == 7 &&
                       offsetof(struct cc_conv, resp) / 64 == 7,
                   "a conversation's clocks on its last line");
    switch (t) {
    case CC_EV_MESSAGE_IN:
    case CC_EV_MESSAGE_OUT:
        return 0x85; /* and the clocks, their base (started_ts) and the
                        timer */
    case CC_EV_HOLD_START:
    case CC_EV_HOLD_END:
        return 0x1;
    case CC_EV_QUEUE_JOIN:
    case CC_EV_QUEUE_LEAVE:
    case CC_EV_AGENT_ANSWER:
    case CC_EV_TRANSFER:
    case CC_EV_CALLBACK_ACCEPTED:
        return 0x3;
    default:
        return (1u << (CONV_STRIDE / 64)) - 1;
    }
}

/* Stage 2: the bucket of s was requested an event ago; start loading the
 * first contact on its chain, the one a lookup nearly always wants. */
static void
ingest_prefetch_contact(struct cc_engine *e, const struct ingest_slot *s) {
    const struct cc_contact *c;

    if (s->rc != 1 || s->ev.contact.n == 0)
        return;
    c = e->buckets[s->k.h & e->bucket_mask];
    if (c != NULL) {
        /* The lines the event touches: an event reads the first line to
         * find the record; a message then writes only the last one, other
         * events counters, times and timers all over it. */
        prefetch_lines(c, CONTACT_STRIDE, contact_lines(s->ev.type));
    }
}

/* Starts loading, for writing, the line of field f of contact p (if any). */
#define prefetch_field(p, f)                                                   \
    do {                                                                       \
        const struct cc_contact *p_ = (p);                                     \
        if (p_ != NULL)                                                        \
            __builtin_prefetch(&p_->f, 1);                                     \
    } while (0)

static inline void
prefetch_timer_links(const struct cc_timer *t) {
    if (!cc_timer_armed(t))
        return;
    if (t->next != NULL)
        __builtin_prefetch(t->next, 1);
    __builtin_prefetch(t->pprev, 1);
}

/* Stage 3: the contact of s was requested an event ago. Start loading
 * its conversation and, if s will disarm one of its timers, take it out of
 * its queue or close it, the records linked before and after it (other
 * contacts' timers, waiting list or conversation links, long since
 * cold). If s will resolve identifiers, normalise them now and request
 * their lines of index slots. Events applied in between may change the contact:
 * everything here is a hint, and the identifiers' normal form depends on the
 * event alone.
 */
static void
ingest_prefetch_links(struct cc_engine *e, struct ingest_slot *s) {
    const struct cc_contact *c = NULL;
    uint32_t i;

    s->ids.state = 0;
    s->conv = NULL;
    if (s->rc != 1)
        return;
    if (s->k.thread != 0)
        cc_dedup_prefetch_put(&e->convs.threads, s->k.thread);
    if (s->ev.contact.n != 0)
        c = cc_contact_find(e, s->ev.channel, s->ev.contact, s->k.h);
    if (wants_identity(&s->ev, c)) {
        normalize_idents(e, &s->ev, &s->ids);
        for (i = 0; s->ids.state > 0 && i < s->ids.n; i++)
            cc_identity_prefetch_slots(&e->ident, s->ids.hash[i]);
    }
    if (c == NULL)
        return;
    /* The rest of the record again. Of the four lines asked for an event
     * ago the first is in (the lookup just read it), the others not
     * always: software prefetches the memory system has no room for
     * appear to be dropped rather than queued (asking again made the
     * engine benchmark about 10% faster on the development machine). */
    prefetch_lines(c, CONTACT_STRIDE, contact_lines(s->ev.type) & ~1u);
    if (c->conv != NULL) {
        /* Its timeline slot is asked for later, once the first line is
         * in. */
        prefetch_lines(c->conv, CONV_STRIDE, conv_lines(s->ev.type));
        s->conv = c->conv;
        s->conv_frees = e->convs.frees;
    }
    switch (s->ev.type) {
    case CC_EV_CONTACT_CLOSE:
        /* The one event that writes into the contact's history entry (its
         * end and outcome); the others leave it alone: its number and its
         * outcome so far are in the contact. Its record is freed: the
         * conversation's other live contacts are relinked. */
        if (c->centry != NULL)
            __builtin_prefetch(c->centry, 1);
        prefetch_field(c->cvprev, cvnext);
        prefetch_field(c->cvnext, cvprev);
        break;
    case CC_EV_AGENT_ANSWER:
    case CC_EV_QUEUE_LEAVE:
    case CC_EV_TRANSFER:
    case CC_EV_CALLBACK_ACCEPTED:
    case CC_EV_HOLD_END:
        break;
    default:
        return;
    }
    if (c->state == CS_QUEUED) {
        /* It leaves its queue: the callers before and after it in the
         * waiting list are relinked (and the one before may become the
         * last of its level). */
        prefetch_field(c->qprev, qnext);
        prefetch_field(c->qprev, sla_sched); /* prio1's line */
        prefetch_field(c->qnext, qprev);
    }
    prefetch_timer_links(&c->state_timer);
    if (s->ev.type == CC_EV_CONTACT_CLOSE)
        prefetch_timer_links(&c->idle_timer);
}

/* Stage 4: the identifiers' index lines are in; request the identifiers
 * whose slots carry their hashes' bits. */
static void
ingest_prefetch_idnodes(struct cc_engine *e, const struct ingest_slot *s) {
    uint32_t i;

    if (s->rc != 1 || s->ids.state <= 0)
        return;
    for (i = 0; i < s->ids.n; i++)
        cc_identity_prefetch_node(&e->ident, s->ids.hash[i]);
}

/* Stage 5: the identifiers are in; request their customers. Stage 6: the
 * customers are in; request the conversation a new contact will join. */
static void
ingest_prefetch_customers(struct cc_engine *e, const struct ingest_slot *s,
                          bool owner) {
    const struct cc_idnode *n;
    uint32_t i;

    if (s->rc != 1 || s->ids.state <= 0)
        return;
    for (i = 0; i < s->ids.n; i++) {
        n = cc_identity_find_hashed(&e->ident, s->ids.kinds[i], s->ids.norm[i],
                                    s->ids.hash[i]);
        if (n == NULL || n->cust == NULL)
            continue;
        if (!owner) {
            __builtin_prefetch(n->cust, 1);
            cc_identity_prefetch_links(n);
        } else if (n->cust->owner != NULL)
            cc_conv_prefetch(n->cust->owner);
    }
}

/* Also stage 6: the first line of the contact's conversation is in;
 * request the timeline slot the event will write. */
static void
ingest_prefetch_timeline(const struct cc_engine *e,
                         const struct ingest_slot *s) {
    /* The events applied since the lookup may have merged it away. */
    if (s->rc == 1 && s->conv != NULL && s->conv_frees == e->convs.frees)
        cc_conv_prefetch_timeline(s->conv);
}

/*
 * Events go through a pipeline that runs across message boundaries. With a
 * million contacts and customers each step of an event's lookups is a cache
 * miss, and each depends on the one before (bucket, contact, conversation;
 * identifier index slot, identifier, customer, conversation), so each step is
 * started one or two events ahead of the event's turn, in the stage that
 * can compute its address:
 *
 *   i+7  decode; duplicate window slot, contact bucket
 *   i+6  contact record
 *   i+5  contact record again, the conversation lines the event needs,
 *        history entry, timer, queue and conversation neighbours,
 *        thread index slot; identifiers normalised, their index lines
 *   i+3  identifiers
 *   i+2  customers, identifiers' first links
 *   i+1  the customer's conversation; the conversation's timeline slot
 *   i    apply
 *
 * Overlapping the misses of eight events is what lets the engine run faster
 * than the memory latency of one event allows.
 */
#define INGEST_DEPTH 8
_Static_assert(INGEST_DEPTH == 8, "the stages below are placed for 8");

void
cc_engine_ingest_many(struct cc_engine *e, const struct cc_msgbuf *msgs,
                      uint32_t n, uint64_t now, struct cc_ingest_report *reps) {
    struct ingest_src src = {.msgs = msgs, .reps = reps, .n = n};
    struct ingest_slot ring[INGEST_DEPTH], *s;
    struct cc_ingest_report *r;
    struct cc_reject rej;
    enum cc_verdict v;
    int i;

    for (i = 0; i < INGEST_DEPTH; i++) {
        ring[i].rc = -1;
        ring[i].ids.state = 0;
        ring[i].conv = NULL;
    }
    /* Step i applies event i and runs each stage on the event it serves;
     * the first steps only fill the pipeline. */
    for (i = -(INGEST_DEPTH - 1);; i++) {
        ingest_decode(e, &src, &ring[(i + 7) % INGEST_DEPTH]);
        CC_SP_MARK(CC_SP_DECODE);
        if (i + 6 >= 0)
            ingest_prefetch_contact(e, &ring[(i + 6) % INGEST_DEPTH]);
        CC_SP_MARK(CC_SP_CONTACT);
        if (i + 5 >= 0)
            ingest_prefetch_links(e, &ring[(i + 5) % INGEST_DEPTH]);
        CC_SP_MARK(CC_SP_LINKS);
        if (i + 3 >= 0)
            ingest_prefetch_idnodes(e, &ring[(i + 3) % INGEST_DEPTH]);
        CC_SP_MARK(CC_SP_IDNODES);
        if (i + 2 >= 0)
            ingest_prefetch_customers(e, &ring[(i + 2) % INGEST_DEPTH], false);
        CC_SP_MARK(CC_SP_CUSTOMERS);
        if (i + 1 >= 0) {
            ingest_prefetch_customers(e, &ring[(i + 1) % INGEST_DEPTH], true);
            ingest_prefetch_timeline(e, &ring[(i + 1) % INGEST_DEPTH]);
        }
        CC_SP_MARK(CC_SP_OWNER);
        if (i < 0)
            continue;
        s = &ring[i % INGEST_DEPTH];
        if (s->rc < 0)
            break;
        r = &reps[s->msg];
        r->events++;
        if (s->rc == 0) {
            cc_engine_count_reject(e, s->rej.code);
            report_reject(r, s->index, &s->rej);
            continue;
        }
        v = apply_keyed(e, &s->ev, &s->k, &s->ids, now, &rej);
        CC_SP_MARK(CC_SP_APPLY);
        switch (v) {
        case CC_ACCEPTED:
            r->accepted++;
            if (r->want_context && (s->ev.type == CC_EV_CONTACT_OPEN ||
                                    s->ev.type == CC_EV_MESSAGE_IN))
                report_context(e, r, s);
            break;
        case CC_DUPLICATE:
            r->duplicates++;
            break;
        case CC_REJECTED:
            report_reject(r, s->index, &rej);
            break;
        }
    }
}

void
cc_engine_ingest(struct cc_engine *e, const void *buf, size_t len, uint64_t now,
                 struct cc_ingest_report *rep) {
    struct cc_msgbuf m = {buf, len};
    cc_engine_ingest_many(e, &m, 1, now, rep);
}

/* ---- stats ------------------------------------------------------------ */

/* Memory held for open contacts: records plus their blobs. */
static uint64_t
contact_bytes(const struct cc_engine *e) {
    return e->open_contacts * CONTACT_STRIDE + e->blob_bytes;
}

void
cc_engine_counts(const struct cc_engine *e, struct cc_engine_counts *c) {
    c->open_contacts = e->open_contacts;
    c->accepted = e->accepted;
    c->duplicates = e->duplicates;
    c->rejected = e->rejected;
    c->implicit_opens = e->implicit_opens;
    c->alerts = e->alerts_sl + e->convs.alerts_repeat +
                e->convs.alerts_conflict + e->alerts_sla[CC_ST_WARNING] +
                e->alerts_sla[CC_ST_BREACH] + e->alerts_sla[CC_ST_ESCALATION] +
                e->cbs.st.failed + e->cbs.st.overdue;
    c->callbacks = e->cbs.st.offers + e->cbs.st.cancelled + e->cbs.st.dialled;
    c->contact_bytes = contact_bytes(e);
    c->customers = e->ident.customers;
    c->identifiers = e->ident.nodes;
    c->conversations = e->convs.open + e->convs.resolved_now;
    c->conversations_open = e->convs.open;
    c->identity_bytes = cc_identity_bytes(&e->ident);
    c->conversation_bytes = cc_convs_bytes(e);
    c->identity_lost = e->ident_limit;
    c->conversations_refused = e->convs.refused;
}

void
cc_engine_pack_stats(const struct cc_engine *e, msgpack_packer *pk) {
    uint64_t next;
    uint32_t i;
    int s;

    msgpack_pack_map(pk, 14);

    cc_pack_str(pk, "events");
    msgpack_pack_map(pk, 8);
    cc_pack_kv_u64(pk, "messages", e->messages);
    cc_pack_kv_u64(pk, "malformed_messages", e->malformed);
    cc_pack_kv_u64(pk, "accepted", e->accepted);
    cc_pack_kv_u64(pk, "duplicates", e->duplicates);
    cc_pack_kv_u64(pk, "rejected", e->rejected);
    cc_pack_kv_u64(pk, "implicit_opens", e->implicit_opens);
    cc_pack_kv_u64(pk, "expired_contacts", e->expired);
    cc_pack_kv_u64(pk, "callback_unknown_contact", e->callback_unknown);

    cc_pack_str(pk, "rejected");
    msgpack_pack_map(pk, CC_R__COUNT);
    for (i = 0; i < CC_R__COUNT; i++)
        cc_pack_kv_u64(pk, cc_reason_name((enum cc_reason)i), e->by_reason[i]);

    cc_pack_str(pk, "types");
    msgpack_pack_map(pk, CC_EV__COUNT);
    for (i = 0; i < CC_EV__COUNT; i++)
        cc_pack_kv_u64(pk, cc_event_type_name((enum cc_event_type)i),
                       e->by_type[i]);

    cc_pack_str(pk, "channels");
    msgpack_pack_map(pk, e->cfg.channels.n);
    for (i = 0; i < e->cfg.channels.n; i++) {
        const struct chan_stats *c = &e->chan[i];
        cc_pack_str(pk, e->cfg.channels.names[i]);
        msgpack_pack_map(pk, 13);
        cc_pack_kv_u64(pk, "events", c->events);
        cc_pack_kv_u64(pk, "open", c->open);
        cc_pack_kv_u64(pk, "opened", c->opened);
        cc_pack_kv_u64(pk, "implicit_opens", c->implicit_opens);
        cc_pack_kv_u64(pk, "closed", c->closed);
        cc_pack_kv_u64(pk, "expired", c->expired);
        cc_pack_kv_u64(pk, "answered", c->answered);
        cc_pack_kv_u64(pk, "abandoned", c->abandoned);
        cc_pack_kv_u64(pk, "transfers", c->transfers);
        cc_pack_kv_u64(pk, "holds", c->holds);
        cc_pack_kv_u64(pk, "messages_in", c->msgs_in);
        cc_pack_kv_u64(pk, "messages_out", c->msgs_out);
        cc_pack_str(pk, "conversations");
        cc_convs_pack_chan_stats(e, pk, i);
    }

    cc_pack_str(pk, "contacts");
    msgpack_pack_map(pk, CS__COUNT + 3);
    cc_pack_kv_u64(pk, "open", e->open_contacts);
    for (s = 0; s < CS__COUNT; s++)
        cc_pack_kv_u64(pk, cstate_names[s], e->by_state[s]);
    cc_pack_kv_u64(pk, "max", e->cfg.max_contacts);
    cc_pack_kv_u64(pk, "bytes", contact_bytes(e));

    cc_pack_str(pk, "queues");
    msgpack_pack_map(pk, e->nqueues);
    for (i = 0; i < e->nqueues; i++) {
        const struct cc_queue *q = e->queues[i];
        cc_pack_strn(pk, q->name->s, q->name->len);
        msgpack_pack_map(pk, 8);
        cc_pack_kv_u64(pk, "waiting", q->waiting);
        cc_pack_kv_u64(pk, "joined", q->joined);
        cc_pack_kv_u64(pk, "answered", q->answered);
        cc_pack_kv_u64(pk, "abandoned", q->abandoned);
        cc_pack_str(pk, "callbacks");
        cc_cb_pack_queue(q, pk);
        /* The wait estimates given at join, against the waits. */
        pack_est_accuracy(pk, q, "estimated", "estimate_mae_ms",
                          "estimate_within_30s");
    }

    cc_pack_str(pk, "identity");
    msgpack_pack_map(pk, 9);
    cc_pack_kv_u64(pk, "customers", e->ident.customers);
    cc_pack_kv_u64(pk, "identifiers", e->ident.nodes);
    cc_pack_kv_u64(pk, "links", e->ident.links);
    cc_pack_kv_u64(pk, "merges", e->ident.merges);
    cc_pack_kv_u64(pk, "splits", e->ident.splits);
    cc_pack_kv_u64(pk, "conflicts", e->ident.conflicts);
    cc_pack_kv_u64(pk, "rejected_identifiers", e->ident_rejected);
    cc_pack_kv_u64(pk, "limit_reached", e->ident_limit);
    cc_pack_kv_u64(pk, "bytes", cc_identity_bytes(&e->ident));

    cc_pack_str(pk, "conversations");
    cc_convs_pack_stats(e, pk);

    cc_pack_str(pk, "alerts");
    msgpack_pack_map(pk, 8);
    cc_pack_kv_u64(pk, "queue.service_level", e->alerts_sl);
    cc_pack_kv_u64(pk, "sla.warning", e->alerts_sla[CC_ST_WARNING]);
    cc_pack_kv_u64(pk, "sla.breach", e->alerts_sla[CC_ST_BREACH]);
    cc_pack_kv_u64(pk, "sla.escalation", e->alerts_sla[CC_ST_ESCALATION]);
    cc_pack_kv_u64(pk, "continuity.repeat", e->convs.alerts_repeat);
    cc_pack_kv_u64(pk, "identity.conflict", e->convs.alerts_conflict);
    cc_pack_kv_u64(pk, "callback.failed", e->cbs.st.failed);
    cc_pack_kv_u64(pk, "callback.overdue", e->cbs.st.overdue);

    cc_pack_str(pk, "agents");
    msgpack_pack_map(pk, 1 + AG__COUNT);
    cc_pack_kv_u64(pk, "known", e->nagents);
    {
        unsigned a;
        for (a = 0; a < AG__COUNT; a++)
            cc_pack_kv_u64(pk, agent_state_names[a], e->agents_by_state[a]);
    }

    cc_pack_str(pk, "callbacks");
    cc_cb_pack_stats(e, pk);

    cc_pack_str(pk, "sla");
    msgpack_pack_map(pk, 2);
    cc_pack_kv_u64(pk, "schedules", e->slas->nscheds - 1);
    cc_pack_kv_u64(pk, "not_started", e->slas->full);

    cc_pack_str(pk, "timers");
    msgpack_pack_map(pk, 2);
    cc_pack_kv_u64(pk, "armed", e->wheel.count);
    next = cc_wheel_next(&e->wheel);
    cc_pack_kv_u64(pk, "next_due", next == CC_WHEEL_NEVER ? 0 : next);

    cc_pack_str(pk, "dedup");
    msgpack_pack_map(pk, 3);
    cc_pack_kv_u64(pk, "window", e->dedup.cap);
    cc_pack_kv_u64(pk, "held", e->dedup.count);
    cc_pack_kv_u64(pk, "bytes", cc_dedup_bytes(&e->dedup));
}

/* ---- snapshot support (snapshot.c) ------------------------------------ */

void
cc__timer_cbs(struct cc__timer_cbs *out) {
    out->sl = sl_sweep_cb;
    out->state = state_timer_cb;
    out->idle = idle_timer_cb;
    out->conv = cc__conv_timer_cb();
    out->cb = cc__cb_timer_cb();
}
