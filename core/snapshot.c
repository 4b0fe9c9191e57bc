/*
 * Engine snapshots and snapshot files. See snapshot.h for what is saved,
 * what a restore under a changed configuration does, and the file layout.
 *
 * The engine's state is one stream of sections, each opening with a tag
 * byte, in the order a restore needs them:
 *
 *   G  seed, clock, the contact table's size, channel names, counters,
 *      per-channel figures
 *   S  the SLA schedules running clocks use (by number)
 *   N  names, by number          Q  queues, in creation order
 *   A  agents
 *   I  the customers no conversation holds, with identifiers and links
 *   V  conversations, each with its customer and its open contacts
 *      (each contact with its standing offer, if any)
 *   C  the open contacts no conversation holds
 *   B  accepted callbacks, in their order, and callback figures
 *   L  each queue's waiting list W  the timing wheel, slot by slot
 *   D  the duplicate-id window, the thread index, the forwarding map
 *   Z  the end
 *
 * Numbers are LEB128 varints; signed ones zigzag-coded; times (ms) are
 * written as their zigzag distance from the engine's clock, which keeps
 * them short (the "0 or a time" fields write 0, or the distance plus 1);
 * strings are a varint length and the bytes; fingerprints are 8 bytes.
 * Lists are a count and their items, or (where counting would cost a walk)
 * items each after a 1 and a 0 at the end, or ended by a mark.
 *
 * References between records: a queue, agent, topic or tag by its name's
 * number; a conversation by its id; a callback by its contact's channel
 * and id; a history entry's open contact by its place in its
 * conversation's list; and, from the waiting lists and the wheel, an open
 * contact by its place in the saving engine's contact table: its bucket,
 * and its rank in that bucket's key order (a pair that costs a short chain
 * walk to compute and needs no memory). A restore files contacts under the
 * saving engine's hash until those references are read, so that a
 * bucket's contacts are found in one bucket of its own table or in a few,
 * whatever that table's size, and refiles them if a channel's number
 * changed. Customers and contacts belong to one conversation at most and
 * are written inside it: no reference needed.
 *
 * Canonical order: hash tables are written bucket by bucket, each bucket's
 * records in key order (contacts by channel and id, conversations by id),
 * and the identifier index run by run of occupied slots, each run's
 * identifiers by home slot and value (customers where their first member
 * comes), so that the bytes do not depend on the order of insertion. Lists
 * whose order means something (a queue's waiting list, a conversation's open
 * contacts and history, a customer's members and each identifier's links, the
 * accepted callbacks, every wheel slot, the duplicate windows) are written in
 * that order. Derived figures (counts of objects, bytes held, per-state
 * tallies, the queues' level tails, the agents per queue and state) are
 * rebuilt, not stored.
 *
 * Speed: both directions are one pass over the state with table sizes
 * known up front; the chains, lists and records they lead to are asked
 * for from memory a few steps ahead, which is what most of the time goes
 * to with a million conversations.
 */
#include "snapshot.h"

#include "crc32c.h"
#include "engine_int.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SW_CAP ((size_t)64 << 10)         /* the save buffer, on the stack */
#define TS_LIMIT ((int64_t)1 << 62)       /* event times kept: 0 up to this */
#define WHEEL_LISTS (CC_WHEEL_LEVELS + 1) /* levels and the expired list */
#define WHEEL_BLOCK 32 /* timers whose lookups a restore overlaps */

enum {
    TK_SL,        /* the engine's service-level sweep */
    TK_IDLE,      /* a contact's idle timer */
    TK_STATE,     /* a contact's state timer */
    TK_CONV,      /* a conversation's timer */
    TK_CB,        /* a callback's timer */
    TK_END = 0xff /* the end of a slot's list */
};

static inline uint64_t
zz(uint64_t v) {
    return (v << 1) ^ (0 - (v >> 63));
}

static inline uint64_t
unzz(uint64_t v) {
    return (v >> 1) ^ (0 - (v & 1));
}

/* ======================================================================
 * Writing
 * ====================================================================== */

struct sw {
    uint8_t *buf;
    size_t n;
    int (*write)(void *ctx, const void *p, size_t n);
    void *ctx;
    int err;
    uint64_t now; /* times are written relative to it */
};

static void
sw_flush(struct sw *w) {
    if (w->n != 0 && w->err == 0)
        w->err = w->write(w->ctx, w->buf, w->n);
    w->n = 0;
}

static inline void
sw_room(struct sw *w, size_t k) {
    if (SW_CAP - w->n < k)
        sw_flush(w);
}

static inline void
put_u(struct sw *w, uint64_t v) {
    sw_room(w, 10);
    while (v >= 0x80) {
        w->buf[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->buf[w->n++] = (uint8_t)v;
}

static inline void
put_u8(struct sw *w, unsigned v) {
    sw_room(w, 1);
    w->buf[w->n++] = (uint8_t)v;
}

static void
put_u64(struct sw *w, uint64_t v) {
    unsigned i;

    sw_room(w, 8);
    for (i = 0; i < 8; i++)
        w->buf[w->n++] = (uint8_t)(v >> (8 * i));
}

static inline void
put_i(struct sw *w, int64_t v) {
    put_u(w, zz((uint64_t)v));
}

/* A time, as its distance from the engine's clock. */
static inline void
put_t(struct sw *w, uint64_t t) {
    put_u(w, zz(t - w->now));
}

static inline void
put_ts(struct sw *w, int64_t ts) {
    put_t(w, (uint64_t)ts);
}

/* 0, or a time. */
static inline void
put_t0(struct sw *w, uint64_t t) {
    put_u(w, t == 0 ? 0 : zz(t - w->now) + 1);
}

static inline void
put_ts0(struct sw *w, int64_t ts) {
    put_t0(w, (uint64_t)ts);
}

static void
put_raw(struct sw *w, const void *p, size_t n) {
    const uint8_t *s = p;
    size_t k;

    while (n > 0) {
        if (w->n == SW_CAP)
            sw_flush(w);
        k = SW_CAP - w->n < n ? SW_CAP - w->n : n;
        memcpy(w->buf + w->n, s, k);
        w->n += k;
        s += k;
        n -= k;
    }
}

static void
put_s(struct sw *w, const void *p, size_t n) {
    put_u(w, n);
    put_raw(w, p, n);
}

/* ---- key order within a bucket ----------------------------------------- */

static int
contact_cmp(const struct cc_contact *a, const struct cc_contact *b) {
    if (a->channel != b->channel)
        return a->channel < b->channel ? -1 : 1;
    if (a->id_len != b->id_len)
        return a->id_len < b->id_len ? -1 : 1;
    return memcmp(contact_id(a), contact_id(b), a->id_len);
}

/* The contact of chain that comes next after last in key order (NULL:
 * the first); NULL at the end. Chains hold a few records: the selection
 * is quadratic in a chain's length, and needs no memory. */
static const struct cc_contact *
contact_next(const struct cc_contact *chain, const struct cc_contact *last) {
    const struct cc_contact *best = NULL, *x;

    for (x = chain; x != NULL; x = x->hnext) {
        if (last != NULL && contact_cmp(x, last) <= 0)
            continue;
        if (best == NULL || contact_cmp(x, best) < 0)
            best = x;
    }
    return best;
}

/* A contact's place: its bucket, and how many of the bucket come before
 * it in key order. */
static void
put_cref(struct sw *w, const struct cc_engine *e, const struct cc_contact *c) {
    uint64_t b = c->hash & e->bucket_mask, rank = 0;
    const struct cc_contact *x;

    for (x = e->buckets[b]; x != NULL; x = x->hnext)
        rank += contact_cmp(x, c) < 0;
    put_u(w, b);
    put_u(w, rank);
}

static const struct cc_conv *
conv_next(const struct cc_conv *chain, const struct cc_conv *last) {
    const struct cc_conv *best = NULL, *x;

    for (x = chain; x != NULL; x = x->hnext) {
        if (last != NULL && x->id <= last->id)
            continue;
        if (best == NULL || x->id < best->id)
            best = x;
    }
    return best;
}

static int
node_cmp(const struct cc_idnode *a, const struct cc_idnode *b) {
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->s, b->s, a->len);
}

/* An identifier and the slot its hash picks, for ordering a run of the
 * index. */
struct idrun {
    uint64_t home;
    const struct cc_idnode *nd;
};

static int
idrun_cmp(const void *a, const void *b) {
    const struct idrun *x = a, *y = b;

    if (x->home != y->home)
        return x->home < y->home ? -1 : 1;
    return node_cmp(x->nd, y->nd);
}

static bool
cb_accepted(const struct cc_callback *cb) {
    return cb->state >= CB_WAITING;
}

/* ---- the sections -------------------------------------------------------- */

static void
save_sl(struct sw *w, const struct cc_sl *s) {
    const struct cc_sl_window *r = &s->run;
    unsigned i;

    for (i = 0; i < CC_SL_MINUTES; i++) {
        const struct cc_sl_bucket *b = &s->b[i];
        /* A bucket never written is all zeros. */
        put_u(w, b->minute);
        if (b->minute == 0)
            continue;
        put_u(w, b->offered);
        put_u(w, b->answered);
        put_u(w, b->in_target);
        put_u(w, b->with_target);
        put_u(w, b->abandoned);
        put_u(w, b->short_abandoned);
        put_u(w, b->abandoned_wt);
        put_u(w, b->short_wt);
        put_u(w, b->handled);
        put_u(w, b->handle_ms);
        put_u(w, b->wait_ms);
    }
    put_u8(w, s->below);
    put_u(w, s->alerts);
    put_u(w, s->run_minutes);
    put_u(w, s->run_minute);
    put_u(w, r->offered);
    put_u(w, r->answered);
    put_u(w, r->in_target);
    put_u(w, r->with_target);
    put_u(w, r->abandoned);
    put_u(w, r->short_abandoned);
    put_u(w, r->wait_ms);
    put_u(w, r->abandoned_wt);
    put_u(w, r->short_wt);
    put_u(w, r->handled);
    put_u(w, r->handle_ms);
}

static void
save_rt(struct sw *w, const struct cc_rt *r) {
    unsigned i, k;

    for (i = 0; i < CC_SL_MINUTES; i++) {
        put_u(w, r->minute[i]);
        if (r->minute[i] == 0)
            continue;
        for (k = 0; k < CC_RT_BUCKETS; k++)
            put_u(w, r->n[i][k]);
    }
}

#define CBST_FIELDS 17
static void
cbst_fields(const struct cc_cb_stats *s, const uint64_t **f) {
    const uint64_t *v[CBST_FIELDS] = {&s->offers,
                                      &s->accepted,
                                      &s->declined,
                                      &s->lapsed,
                                      &s->cancelled,
                                      &s->scheduled,
                                      &s->dialled,
                                      &s->completed,
                                      &s->first_attempt,
                                      &s->retries,
                                      &s->failed,
                                      &s->on_time,
                                      &s->late,
                                      &s->overdue,
                                      &s->saved_ms,
                                      &s->offered_callers,
                                      &s->offered_abandoned};
    memcpy(f, v, sizeof(v));
}

static void
save_cbst(struct sw *w, const struct cc_cb_stats *s) {
    const uint64_t *f[CBST_FIELDS];
    unsigned i;

    cbst_fields(s, f);
    for (i = 0; i < CBST_FIELDS; i++)
        put_u(w, *f[i]);
}

static void
save_head(struct sw *w, const struct cc_engine *e) {
    const struct cc_channels *ch = &e->cfg.channels;
    const struct cc_convs *cs = &e->convs;
    unsigned i;

    put_u8(w, 'G');
    put_u64(w, e->cfg.seed);
    put_u(w, e->wheel.now);
    put_u(w, e->bucket_mask); /* the geometry of contact references */
    put_u(w, ch->n);
    for (i = 0; i < ch->n; i++)
        put_s(w, ch->names[i], ch->len[i]);
    put_u(w, e->messages);
    put_u(w, e->malformed);
    put_u(w, e->accepted);
    put_u(w, e->duplicates);
    put_u(w, e->rejected);
    put_u(w, e->implicit_opens);
    put_u(w, e->expired);
    put_u(w, e->callback_unknown);
    put_u(w, e->alerts_sl);
    for (i = 0; i < 3; i++)
        put_u(w, e->alerts_sla[i]);
    put_u(w, e->ident_rejected);
    put_u(w, e->ident_limit);
    put_u(w, e->resolve_unknown);
    /* By name: a build that adds a type or a reason still reads these. */
    put_u(w, CC_EV__COUNT);
    for (i = 0; i < CC_EV__COUNT; i++) {
        const char *n = cc_event_type_name((enum cc_event_type)i);
        put_s(w, n, strlen(n));
        put_u(w, e->by_type[i]);
    }
    put_u(w, CC_R__COUNT);
    for (i = 0; i < CC_R__COUNT; i++) {
        const char *n = cc_reason_name((enum cc_reason)i);
        put_s(w, n, strlen(n));
        put_u(w, e->by_reason[i]);
    }
    for (i = 0; i < ch->n; i++) {
        const struct chan_stats *c = &e->chan[i];
        const struct conv_chan_stats *v = &cs->chan[i];
        /* c->open is counted again from the contacts. */
        put_u(w, c->events);
        put_u(w, c->opened);
        put_u(w, c->closed);
        put_u(w, c->expired);
        put_u(w, c->implicit_opens);
        put_u(w, c->answered);
        put_u(w, c->abandoned);
        put_u(w, c->transfers);
        put_u(w, c->holds);
        put_u(w, c->msgs_in);
        put_u(w, c->msgs_out);
        save_sl(w, &e->chan_sl[i]);
        save_rt(w, &e->chan_rt[i]);
        put_u(w, v->started);
        put_u(w, v->contacts);
        put_u(w, v->switches);
        put_u(w, v->repeats);
        put_u(w, v->reopens);
        put_u(w, v->resolved);
        put_u(w, v->fcr);
    }
}

static int
save_scheds(struct sw *w, const struct cc_engine *e) {
    const struct cc_slas *s = e->slas;
    uint32_t i, k;

    put_u8(w, 'S');
    put_u(w, s->full);
    put_u(w, s->nscheds - 1);
    for (i = 1; i < s->nscheds; i++) {
        const struct cc_sched *sc = &s->scheds[i];
        uintptr_t p = (uintptr_t)sc->by, base = (uintptr_t)s->cfg.policies;
        uint64_t idx = 0;

        if (sc->by == NULL)
            return CC_ESTATE;
        /* Its number in the configuration (+1), 0 for a policy kept
         * from an earlier restore; the name decides when they differ. */
        if (p >= base &&
            p < base + s->cfg.npolicies * sizeof(struct cc_sla_policy))
            idx = (p - base) / sizeof(struct cc_sla_policy) + 1;
        put_u(w, sc->clock);
        put_u(w, sc->target);
        put_u(w, idx);
        put_s(w, sc->by->section, strlen(sc->by->section));
        put_u8(w, sc->by->builtin);
        put_s(w, sc->cal_name != NULL ? sc->cal_name : "",
              sc->cal_name != NULL ? strlen(sc->cal_name) : 0);
        put_u(w, sc->nstages);
        for (k = 0; k < sc->nstages; k++) {
            put_u(w, sc->st[k].at);
            put_u8(w, sc->st[k].type);
            put_u8(w, sc->st[k].level);
        }
    }
    return 0;
}

static void
save_names(struct sw *w, const struct cc_engine *e) {
    uint64_t i;

    put_u8(w, 'N');
    put_u(w, e->nnames);
    for (i = 1; i <= e->nnames; i++)
        put_s(w, e->names[i]->s, e->names[i]->len);
    put_u8(w, 'Q');
    put_u(w, e->nqueues);
    for (i = 0; i < e->nqueues; i++) {
        const struct cc_queue *q = e->queues[i];
        put_u(w, q->name->idx);
        put_u(w, q->est_n);
        put_u(w, q->est_abs_ms);
        put_u(w, q->est_within30);
        put_u(w, q->joined);
        put_u(w, q->answered);
        put_u(w, q->abandoned);
        save_sl(w, &q->sl);
        save_cbst(w, &q->cbst);
    }
    put_u8(w, 'A');
    put_u(w, e->nagents);
    for (i = 1; i <= e->nnames; i++) {
        const struct cc_agent *a = e->names[i]->agent;
        unsigned k;
        if (a == NULL)
            continue;
        put_u(w, i);
        put_u8(w, a->state);
        put_ts(w, a->since_ts);
        put_u(w, a->nqueues);
        for (k = 0; k < a->nqueues; k++)
            put_u(w, a->queues[k]->name->idx);
    }
}

/* Where member `other` sits in c's member list (c->nmembers if not). */
static uint32_t
member_index(const struct cc_customer *c, const struct cc_idnode *other) {
    const struct cc_idnode *m;
    uint32_t i = 0;

    for (m = c->members; m != NULL && m != other; m = m->cnext)
        i++;
    return m != NULL ? i : c->nmembers;
}

static int
save_customer(struct sw *w, const struct cc_customer *c) {
    const struct cc_idnode *m;
    const struct cc_idlink *l;
    uint32_t n = 0, i;

    for (m = c->members; m != NULL; m = m->cnext)
        n++;
    if (n != c->nmembers || n == 0)
        return CC_ESTATE;
    put_u(w, c->id);
    put_u(w, c->nhist);
    put_u8(w, c->hist != NULL);
    for (i = 0; c->hist != NULL && i < CC_IDHIST_MAX; i++) {
        const struct cc_idhist *h = &c->hist[i];
        put_ts(w, h->ts);
        put_u(w, h->other);
        put_u8(w, h->kind);
        put_s(w, h->event, h->event_len);
    }
    put_u(w, n);
    for (m = c->members; m != NULL; m = m->cnext) {
        put_u8(w, m->kind);
        put_s(w, m->s, m->len);
        put_u(w, m->nlinks);
    }
    /* Each identifier's links in list order, by the member at the other
     * end; a link's own data with the identifier it starts from. */
    for (m = c->members; m != NULL; m = m->cnext) {
        uint64_t k = 0;
        for (l = m->links; l != NULL; l = l->next[l->end[0] == m ? 0 : 1])
            k++;
        put_u(w, k);
        for (l = m->links; l != NULL; l = l->next[l->end[0] == m ? 0 : 1]) {
            bool own = l->end[0] == m;
            uint32_t j = member_index(c, l->end[own ? 1 : 0]);
            if (j == n)
                return CC_ESTATE; /* a link to another customer */
            put_u(w, j);
            put_u8(w, own);
            if (own) {
                put_ts(w, l->ts);
                put_s(w, l->event, l->event_len);
            }
        }
    }
    return 0;
}

static int scratch(void **p, uint32_t *cap, uint64_t n, size_t size);

/* Writes the customers of one run of occupied slots, ordered by home slot
 * and then value, each where its first member comes. */
static int
save_idrun(struct sw *w, struct idrun *run, uint32_t n) {
    const struct cc_idnode *nd;
    uint32_t i;
    int rc;

    if (n > 1)
        qsort(run, n, sizeof(*run), idrun_cmp);
    for (i = 0; i < n; i++) {
        nd = run[i].nd;
        if (nd->cust == NULL || nd->cust->members != nd ||
            nd->cust->owner != NULL)
            continue;
        put_u8(w, 1);
        rc = save_customer(w, nd->cust);
        if (rc != 0)
            return rc;
    }
    return w->err;
}

static int
save_identity(struct sw *w, const struct cc_engine *e) {
    const struct cc_identity *id = &e->ident;
    const struct cc_idnode *nd;
    struct idrun *run = NULL;
    uint32_t n = 0, cap = 0;
    uint64_t start, k, i, slot;
    int rc = 0;

    put_u8(w, 'I');
    put_u(w, id->next_customer);
    put_u(w, id->merges);
    put_u(w, id->splits);
    put_u(w, id->conflicts);
    put_u(w, id->walk);
    /*
     * The customers no conversation holds (the others are written with
     * their conversation), each after a 1; a 0 ends them. The order must
     * not depend on the order identifiers were filed in, or a restored
     * engine would write other bytes. Linear probing fills the same slots
     * for the same identifiers whatever their order; only who sits where
     * within a run of occupied slots differs. So the index is read run by
     * run, from just after an empty slot (the table is at most half full),
     * and each run sorted by home slot and then value. What a slot leads
     * to is asked for a few slots ahead: the identifier, then its customer.
     */
    for (start = 0; id->slots[start] != 0; start++)
        CC_ASSERT(start < id->mask);
    for (k = 1; k <= id->mask + 1; k++) {
        i = (start + k) & id->mask;
        slot = id->slots[(i + 8) & id->mask];
        if (slot != 0)
            __builtin_prefetch(cc_idslot_node(slot));
        slot = id->slots[(i + 4) & id->mask];
        if (slot != 0)
            __builtin_prefetch(cc_idslot_node(slot)->cust);
        slot = id->slots[i];
        if (slot == 0) {
            rc = save_idrun(w, run, n);
            if (rc != 0)
                break;
            n = 0;
            continue;
        }
        rc = scratch((void **)&run, &cap, (uint64_t)n + 1, sizeof(*run));
        if (rc != 0)
            break;
        nd = cc_idslot_node(slot);
        run[n].home = cc_identity_hash(id, (enum cc_ident_kind)nd->kind,
                                       (struct cc_str){nd->s, nd->len}) &
                      id->mask;
        run[n].nd = nd;
        n++;
    }
    cc_free(run, (size_t)cap * sizeof(*run));
    if (rc != 0)
        return rc;
    put_u8(w, 0);
    return 0;
}

static void
save_cb(struct sw *w, const struct cc_callback *cb) {
    put_u(w, cb->channel);
    put_s(w, cb->data, cb->id_len);
    put_s(w, cb->data + cb->id_len, cb->cust_len);
    put_u(w, cb->queue->name->idx);
    put_u8(w, cb->state);
    put_u(w, cb->conv);
    put_ts(w, cb->join_ts);
    put_t0(w, cb->offered_ts);
    put_t0(w, cb->accepted_ts);
    put_t0(w, cb->window_from);
    put_t0(w, cb->window_to);
    put_t0(w, cb->dial_at);
    put_i(w, cb->ewt_ms);
    put_u(w, cb->offers);
    put_u8(w, cb->attempts);
    put_u8(w, cb->prio1);
    put_u8(w, (unsigned)cb->declined | (unsigned)cb->overdue << 1 |
                  (unsigned)cb->first_dialled << 2);
    put_s(w, cb->number, cb->number_len);
}

static void
save_contact(struct sw *w, const struct cc_engine *e,
             const struct cc_contact *c, uint64_t *offers) {
    const struct cc_callback *cb;

    put_u(w, c->channel);
    put_s(w, contact_id(c), c->id_len);
    put_s(w, contact_customer(c), c->cust_len);
    put_u8(w, c->state);
    put_u8(w, c->flags);
    put_u8(w, c->transfers);
    put_u(w, c->queue != NULL ? c->queue->name->idx : 0);
    put_u(w, c->hold_total_ms);
    put_ts(w, c->opened_ts);
    put_ts(w, c->queued_ts);
    /* The union: a time while held, else the estimate at its join. */
    if (c->state == CS_HELD)
        put_ts(w, c->hold_ts);
    else
        put_i(w, c->joined_est);
    put_t(w, c->last_seen);
    put_u(w, c->agent != NULL ? c->agent->idx : 0);
    put_u(w, c->msgs_in);
    put_u(w, c->msgs_out);
    put_u(w, c->sla_sched);
    put_u8(w, c->sla_stage);
    put_u8(w, c->sla_last);
    put_u8(w, c->prio1);
    /* The offer standing (or lapsed) for this caller, if any: a callback
     * not accepted always has its contact. */
    cb = cc__cb_find(e, c->channel, contact_id(c), c->id_len, c->hash);
    if (cb != NULL && !cb_accepted(cb)) {
        put_u8(w, 1);
        save_cb(w, cb);
        (*offers)++;
    } else {
        put_u8(w, 0);
    }
}

static int
save_contacts(struct sw *w, const struct cc_engine *e, uint64_t *offers,
              uint64_t nested) {
    uint64_t b, n = 0, k = 0;
    const struct cc_contact *c;

    put_u8(w, 'C');
    /* Those no conversation holds (the others were written with theirs),
     * in the table's order. */
    if (nested > e->open_contacts)
        return CC_ESTATE;
    put_u(w, e->open_contacts - nested);
    for (b = 0; b <= e->bucket_mask; b++) {
        const struct cc_contact *chain = e->buckets[b];
        if (b + 8 <= e->bucket_mask && e->buckets[b + 8] != NULL)
            __builtin_prefetch(e->buckets[b + 8]);
        if (chain == NULL)
            continue;
        for (c = contact_next(chain, NULL); c != NULL;
             c = contact_next(chain, c)) {
            n++;
            if (c->conv != NULL)
                continue;
            save_contact(w, e, c, offers);
            k++;
        }
        if (w->err != 0)
            return w->err;
    }
    return n == e->open_contacts && k + nested == n ? 0 : CC_ESTATE;
}

static int
save_conv(struct sw *w, const struct cc_engine *e, const struct cc_conv *v,
          uint64_t *offers, uint64_t *nested) {
    const struct cc_contact *c;
    const struct cc_convct *ce;
    uint32_t n, i;

    put_u(w, v->id);
    put_t(w, v->last_seen);
    put_ts(w, v->last_ts);
    put_u(w, v->msgs_in);
    put_u(w, v->msgs_out);
    put_u(w, v->holds);
    for (i = 0; i < CONV_AGENTS; i++)
        put_u(w, v->agents[i]);
    put_u8(w, v->state);
    put_u8(w, v->flags);
    put_u(w, v->wait_ms);
    put_u(w, v->max_wait_ms);
    put_u(w, v->waits);
    put_u(w, v->transfers);
    for (i = 0; i < CONV_QUEUES; i++)
        put_u(w, v->queues[i]);
    put_ts(w, v->started_ts);
    put_ts0(w, v->resolved_ts);
    put_ts0(w, v->last_end_ts);
    put_u(w, v->hold_ms);
    put_u(w, v->ncontacts);
    put_u(w, v->switches);
    put_u(w, v->repeats);
    put_u(w, v->reopens);
    put_u(w, v->merges);
    put_u(w, v->resolves);
    put_u(w, v->feedback_n);
    put_i(w, v->feedback_score);
    {
        uint32_t bits;
        memcpy(&bits, &v->sentiment, sizeof(bits));
        put_u(w, bits);
    }
    put_ts0(w, v->feedback_ts);
    put_u8(w, v->feedback_scale);
    put_u(w, v->first_channel);
    put_u(w, v->topic);
    put_u(w, v->nchan);
    for (i = 0; i < v->nchan && i < CONV_CHANNELS; i++) {
        put_u(w, v->chan[i]);
        put_ts(w, v->chan_ts[i]);
    }
    for (i = 0; i < CONV_TAGS; i++)
        put_u(w, v->tags[i]);
    /* The timeline's entries oldest first (its ring position is not
     * state). */
    put_u(w, v->tl_n);
    for (i = 0; i < v->tl_n && i < CONV_TIMELINE; i++) {
        const struct cc_convtl *t =
            &v->tl[(v->tl_head + CONV_TIMELINE - v->tl_n + i) % CONV_TIMELINE];
        put_ts(w, cc_convtl_ts(t));
        put_u8(w, t->type);
        put_u(w, t->channel);
        put_u(w, t->contact_n);
    }
    put_u(w, v->res.sched);
    put_u8(w, v->res.stage);
    put_u8(w, v->res.last);
    put_u8(w, v->res.paused);
    put_u(w, v->res.seg);
    put_u(w, v->res.acc);
    put_u(w, v->resp.sched);
    put_u(w, cc_resp_channel(&v->resp));
    put_u8(w, v->resp.stage);
    put_u8(w, v->resp.last);
    put_u8(w, v->resp.next);
    put_u(w, v->resp.start);
    /* Its customer, who holds it as theirs (the two always name each
     * other), written here. */
    put_u8(w, v->cust != NULL);
    if (v->cust != NULL) {
        int rc;
        if (v->cust->owner != v)
            return CC_ESTATE;
        rc = save_customer(w, v->cust);
        if (rc != 0)
            return rc;
    }
    /* Its open contacts, in list order, written here. */
    n = 0;
    for (c = v->live; c != NULL; c = c->cvnext)
        n++;
    if (n != v->nlive)
        return CC_ESTATE;
    put_u(w, n);
    for (c = v->live; c != NULL; c = c->cvnext) {
        if (c->conv != v)
            return CC_ESTATE;
        save_contact(w, e, c, offers);
    }
    *nested += n;
    n = 0;
    for (ce = v->contacts; ce != NULL; ce = ce->next)
        n++;
    if (n != v->nentries)
        return CC_ESTATE;
    put_u(w, n);
    for (ce = v->contacts; ce != NULL; ce = ce->next) {
        put_u(w, ce->n);
        put_u(w, ce->channel);
        put_s(w, ce->id, ce->id_len);
        put_u(w, ce->agent != NULL ? ce->agent->idx : 0);
        put_ts(w, ce->opened_ts);
        put_ts0(w, ce->ended_ts);
        put_u8(w, ce->outcome);
        /* The open contact it is, by its place in the list above. */
        if (ce->live == NULL) {
            put_u(w, 0);
        } else {
            uint64_t k = 1;
            for (c = v->live; c != NULL && c != ce->live; c = c->cvnext)
                k++;
            if (c == NULL)
                return CC_ESTATE;
            put_u(w, k);
        }
    }
    return 0;
}

static int
save_convs(struct sw *w, const struct cc_engine *e, uint64_t *offers,
           uint64_t *nested) {
    const struct cc_convs *cs = &e->convs;
    const struct cc_conv *v;
    uint64_t b, n = 0;
    int rc;

    put_u8(w, 'V');
    put_u(w, cs->next_id);
    put_u(w, cs->started);
    put_u(w, cs->contacts);
    put_u(w, cs->switches);
    put_u(w, cs->repeats);
    put_u(w, cs->reopens);
    put_u(w, cs->resolved);
    put_u(w, cs->fcr);
    put_u(w, cs->merges);
    put_u(w, cs->idle_closed);
    put_u(w, cs->anonymous);
    put_u(w, cs->threaded);
    put_u(w, cs->refused);
    put_u(w, cs->alerts_repeat);
    put_u(w, cs->alerts_conflict);
    put_u(w, cs->open + cs->resolved_now);
    for (b = 0; b <= cs->mask; b++) {
        const struct cc_conv *chain = cs->buckets[b];
        /* What a conversation's record leads to is read a few buckets
         * ahead, a level at a time: the record, then its contacts,
         * history and customer, then their blobs and members. */
        if (b + 6 <= cs->mask && cs->buckets[b + 6] != NULL)
            cc_conv_prefetch(cs->buckets[b + 6]);
        if (b + 3 <= cs->mask)
            for (v = cs->buckets[b + 3]; v != NULL; v = v->hnext) {
                if (v->live != NULL)
                    __builtin_prefetch(v->live);
                if (v->contacts != NULL)
                    __builtin_prefetch(v->contacts);
                if (v->cust != NULL)
                    __builtin_prefetch(v->cust);
            }
        if (b + 1 <= cs->mask)
            for (v = cs->buckets[b + 1]; v != NULL; v = v->hnext) {
                if (v->live != NULL && v->live->blob != NULL)
                    __builtin_prefetch(v->live->blob);
                if (v->cust != NULL && v->cust->members != NULL)
                    __builtin_prefetch(v->cust->members);
            }
        if (chain == NULL)
            continue;
        for (v = conv_next(chain, NULL); v != NULL; v = conv_next(chain, v)) {
            rc = save_conv(w, e, v, offers, nested);
            if (rc != 0)
                return rc;
            n++;
        }
        if (w->err != 0)
            return w->err;
    }
    return n == cs->open + cs->resolved_now ? 0 : CC_ESTATE;
}

static int
save_callbacks(struct sw *w, const struct cc_engine *e, uint64_t offers) {
    const struct cc_callback *cb;
    uint64_t n = 0, orphans = 0, b;
    unsigned i;

    put_u8(w, 'B');
    save_cbst(w, &e->cbs.st);
    for (i = 0; i < CC_ARRAY_SIZE(e->cbs.gated); i++)
        put_u(w, e->cbs.gated[i]);
    put_u(w, e->cbs.rejected);
    for (cb = e->cbs.accepted; cb != NULL; cb = cb->next)
        n++;
    if (n != e->cbs.pending)
        return CC_ESTATE;
    put_u(w, n);
    for (cb = e->cbs.accepted; cb != NULL; cb = cb->next)
        save_cb(w, cb);
    /* An offer whose contact is gone: the engine frees such records as
     * the contact leaves its queue, so there should be none; kept anyway,
     * in table order. */
    for (i = 0; i < 2; i++) {
        if (i == 1)
            put_u(w, orphans);
        for (b = 0; b <= e->cbs.mask; b++)
            for (cb = e->cbs.buckets[b]; cb != NULL; cb = cb->hnext) {
                struct cc_str id = {cb->data, cb->id_len};
                if (cb_accepted(cb) ||
                    cc_contact_find((struct cc_engine *)(uintptr_t)e,
                                    cb->channel, id, cb->hash) != NULL)
                    continue;
                if (i == 0)
                    orphans++;
                else
                    save_cb(w, cb);
            }
    }
    return n + offers + orphans == e->cbs.n ? 0 : CC_ESTATE;
}

static int
save_queue_lists(struct sw *w, const struct cc_engine *e) {
    const struct cc_contact *x;
    uint64_t i, n;

    put_u8(w, 'L');
    for (i = 0; i < e->nqueues; i++) {
        const struct cc_queue *q = e->queues[i];
        n = 0;
        for (x = q->head; x != NULL; x = x->qnext)
            n++;
        if (n != q->waiting)
            return CC_ESTATE;
        put_u(w, n);
        for (x = q->head; x != NULL; x = x->qnext) {
            if (cc_contact_is_place(x)) {
                const struct cc_callback *cb = cc_place_callback(x);
                put_u8(w, 1);
                put_u(w, cb->channel);
                put_s(w, cb->data, cb->id_len);
                put_ts(w, x->opened_ts);
                put_ts(w, x->queued_ts);
                put_u8(w, x->prio1);
            } else {
                put_u8(w, 0);
                put_cref(w, e, x);
            }
        }
        if (w->err != 0)
            return w->err;
    }
    return 0;
}

static int
save_timer(struct sw *w, const struct cc_engine *e, const struct cc_timer *t,
           const struct cc__timer_cbs *k) {
    if (t->cb == k->sl) {
        put_u8(w, TK_SL);
    } else if (t->cb == k->idle) {
        put_u8(w, TK_IDLE);
        put_cref(w, e, CC_CONTAINER_OF(t, struct cc_contact, idle_timer));
    } else if (t->cb == k->state) {
        put_u8(w, TK_STATE);
        put_cref(w, e, CC_CONTAINER_OF(t, struct cc_contact, state_timer));
    } else if (t->cb == k->conv) {
        put_u8(w, TK_CONV);
        put_u(w, CC_CONTAINER_OF(t, struct cc_conv, timer)->id);
    } else if (t->cb == k->cb) {
        const struct cc_callback *cb =
            CC_CONTAINER_OF(t, struct cc_callback, timer);
        put_u8(w, TK_CB);
        put_u(w, cb->channel);
        put_s(w, cb->data, cb->id_len);
    } else {
        return CC_ESTATE; /* a timer the engine does not own */
    }
    put_t(w, t->expires);
    return 0;
}

static int
save_wheel(struct sw *w, const struct cc_engine *e) {
    const struct cc_wheel *wh = &e->wheel;
    struct cc__timer_cbs k;
    const struct cc_timer *t, *prev;
    unsigned level, slot;
    uint64_t lists = 0, n, total = 0;
    int rc;

    cc__timer_cbs(&k);
    put_u8(w, 'W');
    for (level = 0; level < CC_WHEEL_LEVELS; level++)
        lists += (uint64_t)__builtin_popcountll(wh->pending[level]);
    put_u(w, lists + (wh->expired != NULL));
    for (level = 0; level < WHEEL_LISTS; level++)
        for (slot = 0; slot < CC_WHEEL_SLOTS; slot++) {
            const struct cc_timer *head = level == CC_WHEEL_LEVELS
                                              ? (slot == 0 ? wh->expired : NULL)
                                              : wh->slots[level][slot];
            if (head == NULL)
                continue;
            /* Not counted first (a walk of a million timers): the list
             * ends with TK_END. */
            n = 0;
            put_u(w, level);
            put_u(w, slot);
            /* One timer behind the walk, so that the bucket its
             * reference reads is on its way. */
            for (t = head, prev = NULL;; t = t->next) {
                if (t != NULL) {
                    if (t->next != NULL)
                        __builtin_prefetch(t->next);
                    if (t->cb == k.idle || t->cb == k.state) {
                        const struct cc_contact *c =
                            t->cb == k.idle
                                ? CC_CONTAINER_OF(t, struct cc_contact,
                                                  idle_timer)
                                : CC_CONTAINER_OF(t, struct cc_contact,
                                                  state_timer);
                        __builtin_prefetch(
                            &e->buckets[c->hash & e->bucket_mask]);
                    }
                }
                if (prev != NULL) {
                    rc = save_timer(w, e, prev, &k);
                    if (rc != 0)
                        return rc;
                }
                if (t == NULL)
                    break;
                prev = t;
                n++;
            }
            put_u8(w, TK_END);
            total += n;
            if (w->err != 0)
                return w->err;
        }
    return total == wh->count ? 0 : CC_ESTATE;
}

static void
save_dedup(struct sw *w, const struct cc_dedup *d) {
    uint64_t i;

    put_u(w, d->count);
    for (i = 0; i < d->count; i++) {
        uint64_t f = d->ring[(d->head + i) % d->cap], val = 0;
        put_u64(w, f);
        if (d->shift != 0) {
            (void)cc_dedup_get(d, f, &val);
            put_u(w, val);
        }
    }
}

int
cc_engine_save(const struct cc_engine *e,
               int (*write)(void *ctx, const void *p, size_t n), void *ctx) {
    uint8_t buf[SW_CAP];
    struct sw w = {buf, 0, write, ctx, 0, e->wheel.now};
    uint64_t offers = 0, nested = 0;
    int rc;

    save_head(&w, e);
    rc = save_scheds(&w, e);
    if (rc == 0) {
        save_names(&w, e);
        rc = save_identity(&w, e);
    }
    if (rc == 0)
        rc = save_convs(&w, e, &offers, &nested);
    if (rc == 0)
        rc = save_contacts(&w, e, &offers, nested);
    if (rc == 0)
        rc = save_callbacks(&w, e, offers);
    if (rc == 0)
        rc = save_queue_lists(&w, e);
    if (rc == 0)
        rc = save_wheel(&w, e);
    if (rc == 0) {
        put_u8(&w, 'D');
        save_dedup(&w, &e->dedup);
        save_dedup(&w, &e->convs.threads);
        save_dedup(&w, &e->convs.forward);
        put_u8(&w, 'Z');
        sw_flush(&w);
    }
    return w.err != 0 ? w.err : rc;
}

/* ======================================================================
 * Reading
 * ====================================================================== */

struct sr {
    const uint8_t *p, *end, *start;
    const char *why; /* the first failure */
    size_t at;       /* and where */
    uint64_t now;
};

static bool
sr_fail(struct sr *r, const char *why) {
    if (r->why == NULL) {
        r->why = why;
        r->at = (size_t)(r->p - r->start);
    }
    r->p = r->end; /* everything after reads as missing */
    return false;
}

static inline bool
sr_ok(const struct sr *r) {
    return r->why == NULL;
}

static uint64_t
get_u(struct sr *r) {
    uint64_t v = 0;
    unsigned shift = 0;

    while (r->p < r->end) {
        uint8_t b = *r->p++;
        if (shift == 63 && (b & 0xfe) != 0)
            break;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return v;
        shift += 7;
    }
    sr_fail(r, "a number is truncated or too long");
    return 0;
}

static unsigned
get_u8(struct sr *r) {
    if (r->p == r->end) {
        sr_fail(r, "truncated");
        return 0;
    }
    return *r->p++;
}

static uint64_t
get_u64(struct sr *r) {
    uint64_t v = 0;
    unsigned i;

    if (r->end - r->p < 8) {
        sr_fail(r, "truncated");
        return 0;
    }
    for (i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return v;
}

/* A number of at most max. */
static uint64_t
get_max(struct sr *r, uint64_t max, const char *what) {
    uint64_t v = get_u(r);

    if (v > max) {
        sr_fail(r, what);
        return 0;
    }
    return v;
}

static unsigned
get_u8max(struct sr *r, unsigned max, const char *what) {
    unsigned v = get_u8(r);

    if (v > max) {
        sr_fail(r, what);
        return 0;
    }
    return v;
}

static int64_t
get_i(struct sr *r) {
    return (int64_t)unzz(get_u(r));
}

static uint64_t
get_t(struct sr *r) {
    return r->now + unzz(get_u(r));
}

static uint64_t
get_t0(struct sr *r) {
    uint64_t v = get_u(r);
    return v == 0 ? 0 : r->now + unzz(v - 1);
}

/* Event times are kept between 0 and TS_LIMIT, so that no difference of
 * two of them overflows. */
static int64_t
ts_check(struct sr *r, uint64_t v) {
    if (v > (uint64_t)TS_LIMIT) {
        sr_fail(r, "a time out of range");
        return 0;
    }
    return (int64_t)v;
}

static int64_t
get_ts(struct sr *r) {
    return ts_check(r, get_t(r));
}

static int64_t
get_ts0(struct sr *r) {
    return ts_check(r, get_t0(r));
}

/* A string of at most max bytes (and at least min): its bytes, borrowed. */
static const char *
get_s(struct sr *r, size_t min, size_t max, uint32_t *n, const char *what) {
    uint64_t len = get_u(r);
    const char *p;

    *n = 0;
    if (!sr_ok(r))
        return NULL;
    if (len < min || len > max) {
        sr_fail(r, what);
        return NULL;
    }
    if ((uint64_t)(r->end - r->p) < len) {
        sr_fail(r, "truncated");
        return NULL;
    }
    p = (const char *)r->p;
    r->p += len;
    *n = (uint32_t)len;
    return p;
}

/* A count of items of at least min_each bytes: no more than the bytes
 * left can hold, so that nothing is allocated for what is not there. */
static uint64_t
get_count(struct sr *r, size_t min_each, const char *what) {
    uint64_t n = get_u(r);

    if (n > (uint64_t)(r->end - r->p) / min_each) {
        sr_fail(r, what);
        return 0;
    }
    return n;
}

static bool
get_tag(struct sr *r, int tag) {
    if (get_u8(r) != (unsigned)tag)
        return sr_fail(r, "a section is missing or out of place");
    return true;
}

/* ---- the restore -----------------------------------------------------------
 */

/* A link as a customer's record gives it, while the customer is built. */
struct lent {
    uint32_t node, other; /* member indexes */
    uint32_t own;         /* 1: the link starts at node */
    uint32_t ev_len;
    int64_t ts;
    const char *ev;
    struct cc_idlink *link;
};

/* A member as a customer's record gives it. */
struct ment {
    const char *v;
    uint32_t len;
    uint8_t kind, nlinks;
};

struct rs {
    struct sr r;
    struct cc_engine *e;
    const struct cc_engine_config *cfg;
    char *err;
    size_t errlen;
    int rc; /* set with err by refuse(); CC_EPROTO for the reader's */
    unsigned nch;
    uint8_t chmap[CC_MAX_CHANNELS]; /* snapshot channel -> ours */
    uint8_t inv[CC_MAX_CHANNELS];   /* ours -> the snapshot's */
    bool remapped;                  /* some channel changed its number */
    uint64_t cmask; /* the saving engine's contact table, for references */
    uint64_t nodes; /* identifiers so far */
    struct cc__timer_cbs tcb;
    struct cc_callback *acc_tail;
    uint64_t waiting_cbs; /* callbacks in CB_WAITING: each has a place */
    /* scratch: one customer's members and links, one conversation's open
     * contacts, one wheel slot's timers */
    struct lent *le, *own;
    uint32_t le_cap, own_cap;
    struct ment *me;
    uint32_t me_cap;
    struct cc_idnode **nodes_v;
    uint32_t nodes_cap;
    struct cc_contact **live;
    uint32_t live_cap;
    struct cc_timer **ts;
    uint64_t *texp;
    uint64_t ts_cap, texp_cap;
};

/* A snapshot that will not apply to this configuration, or a resource
 * that failed. */
static int refuse(struct rs *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int
refuse(struct rs *s, int rc, const char *fmt, ...) {
    va_list ap;

    if (s->rc == 0) {
        s->rc = rc;
        va_start(ap, fmt);
        vsnprintf(s->err, s->errlen, fmt, ap);
        va_end(ap);
    }
    s->r.p = s->r.end;
    return rc;
}

/* The reader's failure, if any, as the restore's error. */
static int
status(struct rs *s) {
    if (s->rc != 0)
        return s->rc;
    if (!sr_ok(&s->r))
        return refuse(s, CC_EPROTO, "snapshot: %s at byte %zu", s->r.why,
                      s->r.at);
    return 0;
}

static int
nomem(struct rs *s) {
    return refuse(s, CC_ENOMEM, "snapshot: out of memory");
}

/* A channel of the snapshot, as ours. */
static unsigned
get_ch(struct rs *s) {
    uint64_t v = get_max(&s->r, s->nch ? s->nch - 1 : 0, "unknown channel");
    return s->chmap[v];
}

/* A name's number (0: none allowed when may_be_0). */
static uint32_t
get_name(struct rs *s, bool may_be_0) {
    uint64_t v = get_max(&s->r, s->e->nnames, "unknown name");

    if (v == 0 && !may_be_0 && sr_ok(&s->r))
        sr_fail(&s->r, "a name is missing");
    return (uint32_t)v;
}

static struct cc_queue *
get_queue(struct rs *s, bool may_be_0) {
    uint32_t n = get_name(s, may_be_0);
    struct cc_queue *q = n != 0 ? s->e->names[n]->queue : NULL;

    if (n != 0 && q == NULL)
        sr_fail(&s->r, "a name that is not a queue");
    return q;
}

static void
load_sl(struct sr *r, struct cc_sl *s) {
    struct cc_sl_window *w = &s->run;
    unsigned i;

    for (i = 0; i < CC_SL_MINUTES && sr_ok(r); i++) {
        struct cc_sl_bucket *b = &s->b[i];
        b->minute = get_u(r);
        if (b->minute == 0)
            continue;
        b->offered = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->answered = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->in_target = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->with_target = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->abandoned = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->short_abandoned =
            (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->abandoned_wt =
            (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->short_wt = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->handled = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        b->handle_ms = get_u(r);
        b->wait_ms = get_u(r);
    }
    s->below = get_u8max(r, 1, "bad flag") != 0;
    s->alerts = get_u(r);
    s->run_minutes = (unsigned)get_max(r, CC_SL_MINUTES, "bad window");
    s->run_minute = get_u(r);
    w->offered = get_u(r);
    w->answered = get_u(r);
    w->in_target = get_u(r);
    w->with_target = get_u(r);
    w->abandoned = get_u(r);
    w->short_abandoned = get_u(r);
    w->wait_ms = get_u(r);
    w->abandoned_wt = get_u(r);
    w->short_wt = get_u(r);
    w->handled = get_u(r);
    w->handle_ms = get_u(r);
}

static void
load_rt(struct sr *r, struct cc_rt *t) {
    unsigned i, k;

    for (i = 0; i < CC_SL_MINUTES && sr_ok(r); i++) {
        t->minute[i] = get_u(r);
        if (t->minute[i] == 0)
            continue;
        for (k = 0; k < CC_RT_BUCKETS; k++)
            t->n[i][k] = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    }
}

static void
load_cbst(struct sr *r, struct cc_cb_stats *st) {
    const uint64_t *f[CBST_FIELDS];
    unsigned i;

    cbst_fields(st, f);
    for (i = 0; i < CBST_FIELDS; i++)
        *(uint64_t *)(uintptr_t)f[i] = get_u(r);
}

/* G: the seed, the clock and the channels, then the engine itself. */
static int
load_head(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine_config c = *s->cfg;
    struct cc_engine *e;
    uint64_t seed, now, n, i, v;
    bool used[CC_MAX_CHANNELS] = {false};
    int rc;

    get_tag(r, 'G');
    seed = get_u64(r);
    now = get_u(r);
    s->cmask = get_u(r);
    if (sr_ok(r) && (s->cmask < 15 || s->cmask > ((uint64_t)1 << 48) ||
                     (s->cmask & (s->cmask + 1)) != 0))
        sr_fail(r, "bad table size");
    s->nch = (unsigned)get_max(r, CC_MAX_CHANNELS, "too many channels");
    for (i = 0; i < s->nch && sr_ok(r); i++) {
        uint32_t len;
        const char *name =
            get_s(r, 1, CC_CHANNEL_NAME_MAX - 1, &len, "bad channel name");
        int ch;
        if (name == NULL)
            break;
        ch = cc_channels_find(&s->cfg->channels, (struct cc_str){name, len});
        if (ch < 0)
            return refuse(s, CC_EINVAL,
                          "snapshot: channel '%.*s' is no longer configured "
                          "([channels] extra)",
                          (int)len, name);
        if (used[ch])
            return refuse(s, CC_EPROTO, "snapshot: channel '%.*s' twice",
                          (int)len, name);
        used[ch] = true;
        s->chmap[i] = (uint8_t)ch;
        s->inv[ch] = (uint8_t)i;
        s->remapped |= (unsigned)ch != i;
    }
    if (s->nch == 0 && sr_ok(r))
        sr_fail(r, "no channels");
    if ((rc = status(s)) != 0)
        return rc;
    /* The engine, under today's configuration and the snapshot's seed. */
    c.seed = seed;
    rc = cc_engine_new(&e, &c, now);
    if (rc != 0)
        return refuse(s, rc, "snapshot: cannot create the engine: %s",
                      cc_strerror(rc));
    s->e = e;
    r->now = now;
    cc__timer_cbs(&s->tcb);
    cc_wheel_cancel(&e->wheel, &e->sl_timer); /* as the wheel section says */
    e->messages = get_u(r);
    e->malformed = get_u(r);
    e->accepted = get_u(r);
    e->duplicates = get_u(r);
    e->rejected = get_u(r);
    e->implicit_opens = get_u(r);
    e->expired = get_u(r);
    e->callback_unknown = get_u(r);
    e->alerts_sl = get_u(r);
    for (i = 0; i < 3; i++)
        e->alerts_sla[i] = get_u(r);
    e->ident_rejected = get_u(r);
    e->ident_limit = get_u(r);
    e->resolve_unknown = get_u(r);
    /* Counters by name; one this build does not know is dropped. */
    for (int pass = 0; pass < 2; pass++) {
        n = get_count(r, 2, "bad count");
        for (i = 0; i < n && sr_ok(r); i++) {
            uint32_t len, k, max = pass == 0 ? CC_EV__COUNT : CC_R__COUNT;
            const char *name = get_s(r, 1, 64, &len, "bad counter name");
            v = get_u(r);
            for (k = 0; name != NULL && k < max; k++) {
                const char *kn = pass == 0
                                     ? cc_event_type_name((enum cc_event_type)k)
                                     : cc_reason_name((enum cc_reason)k);
                if (strlen(kn) == len && memcmp(kn, name, len) == 0)
                    break;
            }
            if (name != NULL && k < max) {
                if (pass == 0)
                    e->by_type[k] = v;
                else
                    e->by_reason[k] = v;
            }
        }
    }
    for (i = 0; i < s->nch && sr_ok(r); i++) {
        unsigned ch = s->chmap[i];
        struct chan_stats *cst = &e->chan[ch];
        struct conv_chan_stats *vs = &e->convs.chan[ch];
        cst->events = get_u(r);
        cst->opened = get_u(r);
        cst->closed = get_u(r);
        cst->expired = get_u(r);
        cst->implicit_opens = get_u(r);
        cst->answered = get_u(r);
        cst->abandoned = get_u(r);
        cst->transfers = get_u(r);
        cst->holds = get_u(r);
        cst->msgs_in = get_u(r);
        cst->msgs_out = get_u(r);
        load_sl(r, &e->chan_sl[ch]);
        load_rt(r, &e->chan_rt[ch]);
        vs->started = get_u(r);
        vs->contacts = get_u(r);
        vs->switches = get_u(r);
        vs->repeats = get_u(r);
        vs->reopens = get_u(r);
        vs->resolved = get_u(r);
        vs->fcr = get_u(r);
    }
    return status(s);
}

/* The policy a schedule of the snapshot ran under: today's policy at the
 * same number with the same name, else the first with its name, else a
 * copy that keeps the name alone (its clocks keep their schedule). */
static const struct cc_sla_policy *
map_policy(struct rs *s, uint64_t idx, const char *sec, uint32_t len,
           bool builtin, uint64_t cap) {
    const struct cc_sla_config *c = &s->e->slas->cfg;
    struct cc_engine *e = s->e;
    struct cc_sla_policy *p;
    uint32_t i;

    if (idx != 0 && idx <= c->npolicies &&
        strlen(c->policies[idx - 1].section) == len &&
        memcmp(c->policies[idx - 1].section, sec, len) == 0 &&
        c->policies[idx - 1].builtin == builtin)
        return &c->policies[idx - 1];
    for (i = 0; i < c->npolicies; i++)
        if (strlen(c->policies[i].section) == len &&
            memcmp(c->policies[i].section, sec, len) == 0 &&
            c->policies[i].builtin == builtin)
            return &c->policies[i];
    for (i = 0; i < e->snap_npolicies; i++)
        if (strlen(e->snap_policies[i].section) == len &&
            memcmp(e->snap_policies[i].section, sec, len) == 0 &&
            e->snap_policies[i].builtin == builtin)
            return &e->snap_policies[i];
    if (e->snap_policies == NULL) {
        /* Room for one per schedule, made once: schedules point here. */
        e->snap_policies = cc_calloc(cap, sizeof(*e->snap_policies));
        if (e->snap_policies == NULL)
            return NULL;
        e->snap_npolicies = (uint32_t)cap;
        for (i = 0; i < cap; i++)
            e->snap_policies[i].section[0] = '\0';
    }
    for (i = 0; i < e->snap_npolicies && e->snap_policies[i].section[0]; i++)
        ;
    if (i == e->snap_npolicies)
        return NULL;
    p = &e->snap_policies[i];
    memcpy(p->section, sec, len);
    p->section[len] = '\0';
    p->builtin = builtin;
    p->priority = -1;
    return p;
}

static int
load_scheds(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_slas *sl = s->e->slas;
    uint64_t n, i, k;

    get_tag(r, 'S');
    sl->full = get_u(r);
    n = get_count(r, 6, "bad schedule count");
    if (n > CC_SCHEDS_MAX - 1)
        sr_fail(r, "too many schedules");
    for (i = 0; i < n && sr_ok(r); i++) {
        struct cc_sched sc;
        uint32_t slen, clen;
        const char *sec, *cal;
        uint64_t idx;
        bool builtin;

        memset(&sc, 0, sizeof(sc)); /* compared as bytes (clock.c) */
        sc.clock = (uint8_t)get_max(r, CC_CLOCKS - 1, "bad clock");
        sc.target = get_u(r);
        idx = get_u(r);
        sec = get_s(r, 1, sizeof(((struct cc_sla_policy *)0)->section) - 1,
                    &slen, "bad policy name");
        builtin = get_u8max(r, 1, "bad flag") != 0;
        cal = get_s(r, 0, CC_SLA_NAME_MAX - 1, &clen, "bad calendar name");
        sc.nstages = (uint8_t)get_max(r, CC_SCHED_STAGES, "too many stages");
        for (k = 0; k < sc.nstages && sr_ok(r); k++) {
            sc.st[k].at = get_u(r);
            sc.st[k].type =
                (uint8_t)get_u8max(r, CC_ST_ESCALATION, "bad stage");
            sc.st[k].level = (uint8_t)get_u8(r);
        }
        if (!sr_ok(r))
            break;
        sc.by = map_policy(s, idx, sec, slen, builtin, n);
        if (sc.by == NULL)
            return nomem(s);
        if (clen != 0) {
            for (k = 0; k < sl->cfg.ncalendars; k++)
                if (strlen(sl->cfg.calendars[k].name) == clen &&
                    memcmp(sl->cfg.calendars[k].name, cal, clen) == 0)
                    break;
            if (k == sl->cfg.ncalendars)
                return refuse(s, CC_EINVAL,
                              "snapshot: SLA clocks count business hours in "
                              "calendar '%.*s', which is no longer "
                              "configured",
                              (int)clen, cal);
            sc.cal = &sl->cals[k];
            sc.cal_name = sl->cfg.calendars[k].name;
        }
        sl->scheds[sl->nscheds++] = sc;
    }
    return status(s);
}

static int
load_names(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    uint64_t n, i;

    get_tag(r, 'N');
    n = get_count(r, 1, "bad name count");
    if (sr_ok(r) && n > e->cfg.max_names)
        return refuse(s, CC_ELIMIT,
                      "snapshot: %llu names, more than [limits] max_names "
                      "(%llu)",
                      (unsigned long long)n,
                      (unsigned long long)e->cfg.max_names);
    for (i = 0; i < n && sr_ok(r); i++) {
        uint32_t len;
        const char *p = get_s(r, 0, CC_NAME_MAX, &len, "bad name");
        const struct cc_name *nm;
        if (p == NULL)
            break;
        nm = cc_name_intern(e, (struct cc_str){p, len});
        if (nm == NULL)
            return nomem(s);
        if (nm->idx != i + 1)
            sr_fail(r, "a name twice");
    }
    get_tag(r, 'Q');
    n = get_count(r, 1, "bad queue count");
    if (sr_ok(r) && n > e->cfg.max_queues)
        return refuse(s, CC_ELIMIT,
                      "snapshot: %llu queues, more than [limits] max_queues "
                      "(%llu)",
                      (unsigned long long)n,
                      (unsigned long long)e->cfg.max_queues);
    for (i = 0; i < n && sr_ok(r); i++) {
        uint32_t idx = get_name(s, false);
        struct cc_name *nm;
        struct cc_queue *q;
        if (!sr_ok(r))
            break;
        nm = e->names[idx];
        if (nm->queue != NULL) {
            sr_fail(r, "a queue twice");
            break;
        }
        q = cc_calloc(1, sizeof(*q));
        if (q == NULL)
            return nomem(s);
        q->name = nm;
        q->cb = cc_cb_policy_for(&e->cfg.cb, nm->s, nm->len);
        nm->queue = q;
        e->queues[e->nqueues++] = q;
        q->est_n = get_u(r);
        q->est_abs_ms = get_u(r);
        q->est_within30 = get_u(r);
        q->joined = get_u(r);
        q->answered = get_u(r);
        q->abandoned = get_u(r);
        load_sl(r, &q->sl);
        load_cbst(r, &q->cbst);
    }
    get_tag(r, 'A');
    n = get_count(r, 4, "bad agent count");
    for (i = 0; i < n && sr_ok(r); i++) {
        uint32_t idx = get_name(s, false);
        unsigned st = get_u8max(r, AG__COUNT - 1, "bad agent state");
        int64_t since = get_ts(r);
        unsigned nq = (unsigned)get_max(r, AGENT_QUEUES, "too many queues"), k,
                 j;
        struct cc_queue *qs[AGENT_QUEUES];
        struct cc_agent *a;

        for (k = 0; k < nq && sr_ok(r); k++) {
            qs[k] = get_queue(s, false);
            for (j = 0; j < k && sr_ok(r); j++)
                if (qs[j] == qs[k])
                    sr_fail(r, "an agent serves a queue twice");
        }
        if (!sr_ok(r))
            break;
        if (e->names[idx]->agent != NULL) {
            sr_fail(r, "an agent twice");
            break;
        }
        a = cc_calloc(1, sizeof(*a));
        if (a == NULL)
            return nomem(s);
        e->names[idx]->agent = a;
        a->state = (uint8_t)st;
        a->since_ts = since;
        a->nqueues = (uint8_t)nq;
        memcpy(a->queues, qs, nq * sizeof(*qs));
        for (k = 0; k < nq; k++)
            qs[k]->agents[st]++;
        e->nagents++;
        e->agents_by_state[st]++;
    }
    return status(s);
}

/* Grows a scratch array to hold n items of size `size`. */
static int
scratch(void **p, uint32_t *cap, uint64_t n, size_t size) {
    uint64_t c = *cap ? *cap : 16;
    void *q;

    if (n <= *cap)
        return 0;
    while (c < n)
        c *= 2;
    if (c > UINT32_MAX)
        return CC_ENOMEM;
    q = cc_realloc(*p, (size_t)*cap * size, (size_t)c * size);
    if (q == NULL)
        return CC_ENOMEM;
    *p = q;
    *cap = (uint32_t)c;
    return 0;
}

static int
own_cmp(const void *a, const void *b) {
    const struct lent *x = a, *y = b;

    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return (x->other > y->other) - (x->other < y->other);
}

/* The link from node a to node b among the sorted own entries, or NULL. */
static struct lent *
own_find(struct rs *s, uint32_t nown, uint32_t a, uint32_t b) {
    struct lent key;

    if (nown == 0)
        return NULL;
    key.node = a;
    key.other = b;
    return bsearch(&key, s->own, nown, sizeof(*s->own), own_cmp);
}

static int
load_customer(struct rs *s, struct cc_customer **out) {
    struct sr *r = &s->r;
    struct cc_identity *id = &s->e->ident;
    struct cc_idhist hist[CC_IDHIST_MAX];
    struct cc_customer *c;
    uint64_t cid, nhist, m, i, nle = 0, nown = 0;
    bool has_hist;
    int rc;

    cid = get_u(r);
    nhist = get_max(r, UINT32_MAX, "bad history count");
    has_hist = get_u8max(r, 1, "bad flag") != 0;
    memset(hist, 0, sizeof(hist));
    for (i = 0; has_hist && i < CC_IDHIST_MAX && sr_ok(r); i++) {
        uint32_t len;
        const char *ev;
        hist[i].ts = get_ts(r);
        hist[i].other = get_u(r);
        hist[i].kind = (uint8_t)get_u8max(r, CC_IDH_SPLIT, "bad history");
        ev = get_s(r, 0, CC_IDEVENT_MAX, &len, "bad event id");
        if (ev != NULL)
            memcpy(hist[i].event, ev, len);
        hist[i].event_len = (uint8_t)len;
    }
    m = get_count(r, 4, "bad member count");
    if (sr_ok(r) && (cid == 0 || cid > id->next_customer))
        sr_fail(r, "a customer number out of range");
    if (sr_ok(r) && m == 0)
        sr_fail(r, "a customer without identifiers");
    if (sr_ok(r) && m > s->e->cfg.max_identifiers)
        return refuse(s, CC_ELIMIT,
                      "snapshot: customer cu-%llu has %llu identifiers, more "
                      "than [identity] max_identifiers (%u)",
                      (unsigned long long)cid, (unsigned long long)m,
                      s->e->cfg.max_identifiers);
    s->nodes += m;
    if (sr_ok(r) && s->nodes > s->e->cfg.max_identities)
        return refuse(s, CC_ELIMIT,
                      "snapshot: more than [identity] max_identities (%llu) "
                      "identifiers",
                      (unsigned long long)s->e->cfg.max_identities);
    if ((rc = status(s)) != 0)
        return rc;
    if (scratch((void **)&s->nodes_v, &s->nodes_cap, m, sizeof(*s->nodes_v)) ||
        scratch((void **)&s->me, &s->me_cap, m, sizeof(*s->me)))
        return nomem(s);
    for (i = 0; i < m && sr_ok(r); i++) {
        struct ment *me = &s->me[i];
        me->kind =
            (uint8_t)get_u8max(r, CC_IDENT__COUNT - 1, "bad identifier kind");
        me->v = get_s(r, 1, CC_IDENT_NORM_MAX - 1, &me->len, "bad identifier");
        me->nlinks = (uint8_t)get_max(r, UINT8_MAX, "bad link count");
        if (me->v != NULL) /* its index line, needed below */
            cc_identity_prefetch_slots(
                id, cc_identity_hash(id, (enum cc_ident_kind)me->kind,
                                     (struct cc_str){me->v, me->len}));
    }
    /* The links of every member, in list order. */
    for (i = 0; i < m && sr_ok(r); i++) {
        uint64_t k = get_count(r, 2, "bad link count"), j;
        for (j = 0; j < k && sr_ok(r); j++) {
            struct lent *l;
            if (scratch((void **)&s->le, &s->le_cap, nle + 1, sizeof(*l)))
                return nomem(s);
            l = &s->le[nle];
            memset(l, 0, sizeof(*l));
            l->node = (uint32_t)i;
            l->other = (uint32_t)get_max(r, m - 1, "a link to no member");
            l->own = get_u8max(r, 1, "bad flag");
            if (sr_ok(r) && l->other == i)
                sr_fail(r, "a link to itself");
            if (l->own) {
                l->ts = get_ts(r);
                l->ev = get_s(r, 0, CC_IDEVENT_MAX, &l->ev_len, "bad event id");
                nown++;
            }
            nle++;
        }
    }
    if ((rc = status(s)) != 0)
        return rc;
    /* Every link once, from one end, and seen from the other: the own
     * entries sorted by (from, to), each matched by one entry of its
     * other end; no two links between the same identifiers. */
    if (scratch((void **)&s->own, &s->own_cap, nown, sizeof(*s->own)))
        return nomem(s);
    for (i = 0, nown = 0; i < nle; i++)
        if (s->le[i].own)
            s->own[nown++] = s->le[i];
    if (nown != 0)
        qsort(s->own, nown, sizeof(*s->own), own_cmp);
    for (i = 0; i < nown; i++) {
        s->own[i].own = 0; /* now: matched yet */
        if ((i > 0 && own_cmp(&s->own[i - 1], &s->own[i]) == 0) ||
            own_find(s, (uint32_t)nown, s->own[i].other, s->own[i].node))
            return refuse(s, CC_EPROTO,
                          "snapshot: two links between the same identifiers "
                          "(customer cu-%llu)",
                          (unsigned long long)cid);
    }
    for (i = 0; i < nle; i++) {
        struct lent *o;
        if (s->le[i].own)
            continue;
        o = own_find(s, (uint32_t)nown, s->le[i].other, s->le[i].node);
        if (o == NULL || o->own)
            return refuse(s, CC_EPROTO,
                          "snapshot: a link seen from one end only (customer "
                          "cu-%llu)",
                          (unsigned long long)cid);
        o->own = 1;
    }
    for (i = 0; i < nown; i++)
        if (!s->own[i].own)
            return refuse(s, CC_EPROTO,
                          "snapshot: a link seen from one end only (customer "
                          "cu-%llu)",
                          (unsigned long long)cid);
    /* Build: the customer, its members (pushed at the head, threaded in
     * order below), its links, then each list in the order recorded. */
    if (cc_identity_restore_customer(id, cid, &c) != 0)
        return nomem(s);
    c->nhist = (uint32_t)nhist;
    for (i = 0; i < m; i++) {
        const struct ment *me = &s->me[i];
        struct cc_str v = {me->v, me->len};
        struct cc_idnode *nd;
        rc = cc_identity_restore_node(id, c, (enum cc_ident_kind)me->kind, v,
                                      &nd);
        if (rc != 0) {
            if (i == 0) { /* nothing holds it yet */
                id->customers--;
                cc_pool_put(&id->cust_pool, c);
            }
            if (rc == CC_EEXIST)
                return refuse(s, CC_EPROTO,
                              "snapshot: identifier %s:%.*s twice",
                              cc_ident_kind_name((enum cc_ident_kind)me->kind),
                              (int)v.n, v.p);
            if (rc == CC_ELIMIT)
                return refuse(s, CC_ELIMIT,
                              "snapshot: more than [identity] max_identities "
                              "(%llu) identifiers",
                              (unsigned long long)s->e->cfg.max_identities);
            return nomem(s);
        }
        nd->nlinks = me->nlinks;
        s->nodes_v[i] = nd;
    }
    c->members = NULL;
    for (i = m; i-- > 0;) {
        s->nodes_v[i]->cnext = c->members;
        c->members = s->nodes_v[i];
    }
    if (has_hist) {
        if (cc_identity_restore_hist(id, c) != 0)
            return nomem(s);
        memcpy(c->hist, hist, sizeof(hist));
    }
    for (i = 0; i < nle; i++) {
        struct lent *l = &s->le[i];
        if (!l->own)
            continue;
        if (cc_identity_restore_link(
                id, s->nodes_v[l->node], s->nodes_v[l->other],
                (struct cc_str){l->ev, l->ev_len}, l->ts, &l->link) != 0)
            return nomem(s);
        own_find(s, (uint32_t)nown, l->node, l->other)->link = l->link;
    }
    /* The stored counts stand (they saturate, and then lag), and the lists
     * take their recorded order. */
    for (i = 0; i < m; i++) {
        s->nodes_v[i]->nlinks = s->me[i].nlinks;
        s->nodes_v[i]->links = NULL;
    }
    /* Each list from its end: entries are grouped by member, in order. */
    for (i = nle; i-- > 0;) {
        struct lent *l = &s->le[i];
        struct cc_idnode *nd = s->nodes_v[l->node];
        struct cc_idlink *k =
            l->own ? l->link
                   : own_find(s, (uint32_t)nown, l->other, l->node)->link;
        k->next[k->end[0] == nd ? 0 : 1] = nd->links;
        nd->links = k;
    }
    *out = c;
    return 0;
}

static int
load_identity(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_identity *id = &s->e->ident;
    struct cc_customer *c;
    int rc;

    get_tag(r, 'I');
    id->next_customer = get_u(r);
    id->merges = get_u(r);
    id->splits = get_u(r);
    id->conflicts = get_u(r);
    id->walk = (uint32_t)get_max(r, UINT32_MAX, "bad mark");
    while (sr_ok(r) && get_u8max(r, 1, "bad customer list") == 1) {
        rc = load_customer(s, &c);
        if (rc != 0)
            return rc;
    }
    return status(s);
}

/* Whether contact a comes before b in the saving engine's key order
 * (its channel numbers). */
static bool
snap_before(const struct rs *s, const struct cc_contact *a,
            const struct cc_contact *b) {
    unsigned x = s->inv[a->channel], y = s->inv[b->channel];

    if (x != y)
        return x < y;
    if (a->id_len != b->id_len)
        return a->id_len < b->id_len;
    return memcmp(contact_id(a), contact_id(b), a->id_len) < 0;
}

/* A contact named by its place in the saving engine's table: bucket b of
 * that table (mask cmask), and rank among that bucket's contacts. While
 * the snapshot is read, contacts are filed under the saving engine's hash
 * (see load_contact()), so that bucket's contacts are those of ours whose
 * hash falls in it: in one of our buckets when our table is the smaller,
 * spread over (our size / its size) of them when it is the larger. */
static uint64_t
cref_first(const struct rs *s, uint64_t b) {
    return s->e->bucket_mask >= s->cmask ? b : b & s->e->bucket_mask;
}

static struct cc_contact *
cref_find(struct rs *s, uint64_t b, uint64_t rank) {
    struct cc_engine *e = s->e;
    uint64_t first, step, end, j, k;
    struct cc_contact *x, *y;

    if (b > s->cmask) {
        sr_fail(&s->r, "a reference to no contact");
        return NULL;
    }
    if (e->bucket_mask >= s->cmask) {
        first = b;
        step = s->cmask + 1;
        end = e->bucket_mask + 1;
    } else {
        first = b & e->bucket_mask;
        step = e->bucket_mask + 1;
        end = first + 1;
    }
    for (j = first; j < end; j += step)
        for (x = e->buckets[j]; x != NULL; x = x->hnext) {
            uint64_t before = 0;
            if ((x->hash & s->cmask) != b)
                continue;
            for (k = first; k < end && before <= rank; k += step)
                for (y = e->buckets[k]; y != NULL; y = y->hnext)
                    before += (y->hash & s->cmask) == b && snap_before(s, y, x);
            if (before == rank)
                return x;
        }
    sr_fail(&s->r, "a reference to no contact");
    return NULL;
}

static struct cc_contact *
get_cref(struct rs *s) {
    uint64_t b = get_u(&s->r), rank = get_u(&s->r);

    return sr_ok(&s->r) ? cref_find(s, b, rank) : NULL;
}

/* Files a callback in the table, which doubles as the engine's does. */
static int
cbs_insert(struct cc_engine *e, struct cc_callback *cb) {
    struct cc_callbacks *t = &e->cbs;

    if (t->n >= t->mask + 1 && cc__cb_table_grow(e) != 0)
        return CC_ENOMEM;
    cb->hnext = t->buckets[cb->hash & t->mask];
    t->buckets[cb->hash & t->mask] = cb;
    t->n++;
    return 0;
}

/* One callback record; accepted says which kind the section holds. */
static int
load_cb(struct rs *s, bool accepted, struct cc_callback **out) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    struct cc_callback cb, *p;
    const char *id, *cust, *num;
    uint32_t id_len, cust_len, num_len;
    unsigned bits;
    size_t size;

    memset(&cb, 0, sizeof(cb));
    cb.channel = (uint8_t)get_ch(s);
    id = get_s(r, 1, CC_CONTACT_MAX, &id_len, "bad contact id");
    cust = get_s(r, 0, UINT16_MAX, &cust_len, "bad customer map");
    cb.queue = get_queue(s, false);
    cb.state = (uint8_t)get_u8max(r, CB_RETRY, "bad callback state");
    cb.conv = get_u(r);
    cb.join_ts = get_ts(r);
    cb.offered_ts = get_t0(r);
    cb.accepted_ts = get_t0(r);
    cb.window_from = get_t0(r);
    cb.window_to = get_t0(r);
    cb.dial_at = get_t0(r);
    cb.ewt_ms = get_i(r);
    cb.offers = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    cb.attempts = (uint8_t)get_u8(r);
    cb.prio1 = (uint8_t)get_u8max(r, QUEUE_LEVELS - 1, "bad priority");
    bits = get_u8max(r, 7, "bad flags");
    num = get_s(r, 0, sizeof(cb.number) - 1, &num_len, "bad number");
    if (sr_ok(r) && cb_accepted(&cb) != accepted)
        sr_fail(r, "a callback in the wrong state for its place");
    if (!sr_ok(r))
        return status(s);
    cb.declined = bits & 1;
    cb.overdue = (bits >> 1) & 1;
    cb.first_dialled = (bits >> 2) & 1;
    cb.id_len = (uint16_t)id_len;
    cb.cust_len = (uint16_t)cust_len;
    cb.number_len = (uint8_t)num_len;
    memcpy(cb.number, num, num_len);
    cb.hash = cc_contact_hash(e, cb.channel, (struct cc_str){id, id_len});
    if (cc__cb_find(e, cb.channel, id, id_len, cb.hash) != NULL)
        return refuse(s, CC_EPROTO,
                      "snapshot: two callbacks for contact %s:%.*s",
                      e->cfg.channels.names[cb.channel], (int)id_len, id);
    size = sizeof(cb) + id_len + cust_len;
    p = cc_malloc(size);
    if (p == NULL)
        return nomem(s);
    *p = cb;
    memcpy(p->data, id, id_len);
    if (cust_len != 0)
        memcpy(p->data + id_len, cust, cust_len);
    cc_timer_init(&p->timer, s->tcb.cb);
    if (cbs_insert(e, p) != 0) {
        cc_free(p, size);
        return nomem(s);
    }
    e->cbs.bytes += size;
    if (accepted) {
        p->prev = s->acc_tail;
        if (s->acc_tail != NULL)
            s->acc_tail->next = p;
        else
            e->cbs.accepted = p;
        s->acc_tail = p;
        p->queue->pending++;
        e->cbs.pending++;
        if (p->state == CB_DIALLING)
            p->queue->dialling++;
        s->waiting_cbs += p->state == CB_WAITING;
    }
    if (out != NULL)
        *out = p;
    return 0;
}

static int
load_contact(struct rs *s, struct cc_contact **out) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    struct cc_contact *c;
    const char *id, *cust;
    uint32_t id_len, cust_len;
    unsigned ch, state, flags, transfers, stage, last, prio1;
    struct cc_queue *q;
    uint64_t hold_total, last_seen, sched, msgs_in, msgs_out, h;
    int64_t opened, queued, hj;
    uint32_t agent;
    size_t ext, blob;

    ch = get_ch(s);
    id = get_s(r, 1, CC_CONTACT_MAX, &id_len, "bad contact id");
    /* Filed under the saving engine's hash (its channel numbers) until
     * every reference is read: see get_cref(). Its bucket starts loading
     * while the rest is read. */
    h = id != NULL ? cc_contact_hash(e, s->inv[ch], (struct cc_str){id, id_len})
                   : 0;
    __builtin_prefetch(&e->buckets[h & e->bucket_mask]);
    cust = get_s(r, 0, UINT16_MAX, &cust_len, "bad customer map");
    state = get_u8max(r, CS__COUNT - 1, "bad contact state");
    flags = get_u8(r);
    transfers = get_u8(r);
    q = get_queue(s, true);
    hold_total = get_u(r);
    opened = get_ts(r);
    queued = get_ts(r);
    hj = state == CS_HELD ? get_ts(r) : get_i(r);
    last_seen = get_t(r);
    agent = get_name(s, true);
    msgs_in = get_max(r, UINT32_MAX, "count out of range");
    msgs_out = get_max(r, UINT32_MAX, "count out of range");
    sched = get_max(r, e->slas->nscheds - 1, "unknown schedule");
    stage = get_u8max(r, 0x1f, "bad stage");
    last = get_u8max(r, 0x3f, "bad stage");
    prio1 = get_u8max(r, QUEUE_LEVELS - 1, "bad priority");
    if (sr_ok(r) && state == CS_QUEUED && q == NULL)
        sr_fail(r, "a queued contact without a queue");
    if (!sr_ok(r))
        return status(s);
    if (e->open_contacts >= e->cfg.max_contacts)
        return refuse(s, CC_ELIMIT,
                      "snapshot: more open contacts than [limits] "
                      "max_contacts (%llu)",
                      (unsigned long long)e->cfg.max_contacts);
    if (cc_contact_find(e, ch, (struct cc_str){id, id_len}, h) != NULL)
        return refuse(s, CC_EPROTO, "snapshot: contact %s:%.*s twice",
                      e->cfg.channels.names[ch], (int)id_len, id);
    ext = id_len > CONTACT_ID_INLINE ? id_len : 0;
    blob = ext + cust_len;
    c = cc_pool_get(&e->contacts);
    if (c == NULL)
        return nomem(s);
    if (blob != 0 && (c->blob = cc_blob_get(&e->blobs, blob)) == NULL) {
        cc_pool_put(&e->contacts, c);
        return nomem(s);
    }
    c->id_len = (uint16_t)id_len;
    c->cust_len = (uint16_t)cust_len;
    memcpy(ext != 0 ? c->blob : c->id, id, id_len);
    if (cust_len != 0)
        memcpy(c->blob + ext, cust, cust_len);
    c->hash = h;
    c->channel = (uint8_t)ch;
    c->state = (uint8_t)state;
    c->flags = (uint8_t)flags;
    c->transfers = (uint8_t)transfers;
    c->queue = q;
    c->hold_total_ms = hold_total;
    c->opened_ts = opened;
    c->queued_ts = queued;
    if (state == CS_HELD)
        c->hold_ts = hj;
    else
        c->joined_est = hj;
    c->last_seen = last_seen;
    c->agent = agent != 0 ? e->names[agent] : NULL;
    c->msgs_in = (uint32_t)msgs_in;
    c->msgs_out = (uint32_t)msgs_out;
    c->sla_sched = (uint16_t)sched;
    c->sla_stage = stage & 0x1f;
    c->sla_last = last & 0x3f;
    c->prio1 = prio1 & 0x1f;
    cc_timer_init(&c->state_timer, s->tcb.state);
    cc_timer_init(&c->idle_timer, s->tcb.idle);
    c->hnext = e->buckets[h & e->bucket_mask];
    e->buckets[h & e->bucket_mask] = c;
    e->open_contacts++;
    e->by_state[state]++;
    e->blob_bytes += cc_blob_size(blob);
    e->chan[ch].open++;
    *out = c;
    /* Its standing (or lapsed) offer. */
    if (get_u8max(r, 1, "bad flag") != 0) {
        struct cc_callback *cb;
        int rc = load_cb(s, false, &cb);
        if (rc != 0)
            return rc;
        if (cb->channel != c->channel || cb->id_len != c->id_len ||
            memcmp(cb->data, contact_id(c), c->id_len) != 0)
            return refuse(s, CC_EPROTO,
                          "snapshot: an offer filed under another contact");
    }
    return status(s);
}

static int
load_contacts(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_contact *c;
    uint64_t n, i;
    int rc;

    get_tag(r, 'C');
    n = get_count(r, 16, "bad contact count");
    for (i = 0; i < n && sr_ok(r); i++) {
        rc = load_contact(s, &c);
        if (rc != 0)
            return rc;
    }
    return status(s);
}

/* The contacts' final hashes, when the configuration numbers a channel
 * differently from the snapshot: refiled once every reference is read. */
static void
refile_contacts(struct cc_engine *e) {
    struct cc_contact *all = NULL, *c;
    uint64_t i;

    for (i = 0; i <= e->bucket_mask; i++)
        while ((c = e->buckets[i]) != NULL) {
            e->buckets[i] = c->hnext;
            c->hnext = all;
            all = c;
        }
    while ((c = all) != NULL) {
        all = c->hnext;
        c->hash = cc_contact_hash(e, c->channel,
                                  (struct cc_str){contact_id(c), c->id_len});
        c->hnext = e->buckets[c->hash & e->bucket_mask];
        e->buckets[c->hash & e->bucket_mask] = c;
    }
}

static int
load_conv(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    struct cc_convs *cs = &e->convs;
    struct cc_conv t, *v;
    struct cc_contact *tail = NULL;
    uint64_t x, n, i, b;
    uint32_t k, bits;
    int rc;

    memset(&t, 0, sizeof(t));
    t.id = get_u(r);
    __builtin_prefetch(&cs->buckets[cc__conv_bucket(cs, t.id)]);
    t.last_seen = get_t(r);
    t.last_ts = get_ts(r);
    t.msgs_in = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.msgs_out = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.holds = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    for (k = 0; k < CONV_AGENTS; k++)
        t.agents[k] = get_name(s, true);
    t.state = (uint8_t)get_u8max(r, CV_RESOLVED, "bad conversation state");
    t.flags = (uint8_t)get_u8(r);
    t.wait_ms = get_u(r);
    t.max_wait_ms = get_u(r);
    t.waits = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.transfers = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    for (k = 0; k < CONV_QUEUES; k++)
        t.queues[k] = get_name(s, true);
    t.started_ts = get_ts(r);
    t.resolved_ts = get_ts0(r);
    t.last_end_ts = get_ts0(r);
    t.hold_ms = get_u(r);
    t.ncontacts = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.switches = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.repeats = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.reopens = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.merges = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.resolves = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    t.feedback_n = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    x = get_u(r);
    if (unzz(x) + (uint64_t)INT32_MAX + 1 > UINT32_MAX)
        sr_fail(r, "a score out of range");
    t.feedback_score = (int32_t)(int64_t)unzz(x);
    bits = (uint32_t)get_max(r, UINT32_MAX, "bad sentiment");
    memcpy(&t.sentiment, &bits, sizeof(bits));
    t.feedback_ts = get_ts0(r);
    t.feedback_scale = (uint8_t)get_u8(r);
    t.first_channel = (uint8_t)get_ch(s);
    t.topic = get_name(s, true);
    t.nchan = (uint8_t)get_max(r, CONV_CHANNELS, "too many channels");
    for (k = 0; k < t.nchan && sr_ok(r); k++) {
        t.chan[k] = (uint8_t)get_ch(s);
        t.chan_ts[k] = get_ts(r);
    }
    for (k = 0; k < CONV_TAGS; k++)
        t.tags[k] = get_name(s, true);
    /* Derived, not trusted: snapshots of earlier versions lack the flag. */
    cc_conv_tags_changed(&t);
    t.tl_n = (uint8_t)get_max(r, CONV_TIMELINE, "timeline too long");
    for (k = 0; k < t.tl_n && sr_ok(r); k++) {
        struct cc_convtl *tl = &t.tl[k];
        uint64_t ts = (uint64_t)get_ts(r);
        if (ts >= (uint64_t)1 << 48)
            sr_fail(r, "a time out of range");
        tl->ts_lo = (uint32_t)ts;
        tl->ts_hi = (uint16_t)(ts >> 32);
        tl->type = (uint8_t)get_u8max(r, CC_EV__COUNT - 1, "bad event type");
        tl->channel = (uint8_t)get_ch(s);
        tl->contact_n = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
    }
    t.tl_head = (uint8_t)(t.tl_n % CONV_TIMELINE);
    t.res.sched =
        (uint32_t)get_max(r, e->slas->nscheds - 1, "unknown schedule");
    t.res.stage = get_u8max(r, 0x1f, "bad stage");
    t.res.last = get_u8max(r, 0x3f, "bad stage");
    t.res.paused = get_u8max(r, 1, "bad flag");
    t.res.seg = (uint32_t)get_max(r, UINT32_MAX, "bad clock");
    t.res.acc = (uint32_t)get_max(r, UINT32_MAX, "bad clock");
    t.resp.sched =
        (uint16_t)get_max(r, e->slas->nscheds - 1, "unknown schedule") & 0xfff;
    x = get_ch(s);
    t.resp.ch_lo = x & 0xf;
    t.resp.ch_hi = (x >> 4) & 1;
    t.resp.stage = get_u8max(r, 0x1f, "bad stage") & 0x1f;
    t.resp.last = get_u8max(r, 0x3f, "bad stage") & 0x3f;
    t.resp.next = get_u8max(r, 1, "bad flag") & 1;
    t.resp.start = (uint32_t)get_max(r, UINT32_MAX, "bad clock");
    if (sr_ok(r) && (t.id == 0 || t.id > cs->next_id))
        sr_fail(r, "a conversation number out of range");
    if (!sr_ok(r))
        return status(s);
    if (cc__conv_find_direct(e, t.id) != NULL)
        return refuse(s, CC_EPROTO, "snapshot: conversation cv-%llu twice",
                      (unsigned long long)t.id);
    v = cc_pool_get(&cs->pool);
    if (v == NULL)
        return nomem(s);
    *v = t;
    cc_timer_init(&v->timer, s->tcb.conv);
    b = cc__conv_bucket(cs, v->id);
    v->hnext = cs->buckets[b];
    cs->buckets[b] = v;
    if (v->state == CV_OPEN)
        cs->open++;
    else
        cs->resolved_now++;
    /* Its customer, whose conversation it is. */
    if (get_u8max(r, 1, "bad flag") != 0) {
        struct cc_customer *c;
        rc = load_customer(s, &c);
        if (rc != 0)
            return rc;
        v->cust = c;
        c->owner = v;
    }
    /* Its open contacts, in list order. */
    n = get_count(r, 16, "bad contact count");
    if (scratch((void **)&s->live, &s->live_cap, n, sizeof(*s->live)))
        return nomem(s);
    for (i = 0; i < n && sr_ok(r); i++) {
        struct cc_contact *c;
        rc = load_contact(s, &c);
        if (rc != 0)
            return rc;
        s->live[i] = c;
        c->conv = v;
        c->cvprev = tail;
        if (tail != NULL)
            tail->cvnext = c;
        else
            v->live = c;
        tail = c;
        v->nlive++;
    }
    /* Its contact history, oldest first. */
    n = get_max(r, CONV_CONTACTS, "contact history too long");
    for (i = 0; i < n && sr_ok(r); i++) {
        struct cc_convct ce, *p;
        const char *id;
        uint32_t agent;
        struct cc_contact *live = NULL;

        memset(&ce, 0, sizeof(ce));
        ce.n = (uint32_t)get_max(r, UINT32_MAX, "count out of range");
        ce.channel = (uint8_t)get_ch(s);
        id = get_s(r, 1, CC_CONTACT_MAX, &k, "bad contact id");
        ce.id_len = (uint16_t)k;
        agent = get_name(s, true);
        ce.opened_ts = get_ts(r);
        ce.ended_ts = get_ts0(r);
        ce.outcome = (uint8_t)get_u8(r);
        x = get_max(r, v->nlive, "a history entry of no open contact");
        if (x != 0 && sr_ok(r)) {
            live = s->live[x - 1];
            if (live->centry != NULL)
                return refuse(s, CC_EPROTO,
                              "snapshot: an open contact with two history "
                              "entries");
        }
        if (!sr_ok(r))
            break;
        p = cc_blob_get(&e->blobs, sizeof(ce) + ce.id_len);
        if (p == NULL)
            return nomem(s);
        *p = ce;
        memcpy(p->id, id, ce.id_len);
        p->agent = agent != 0 ? e->names[agent] : NULL;
        if (live != NULL) {
            p->live = live;
            live->centry = p;
            live->conv_n = p->n;
        }
        cc_conv_entry_append(e, v, p);
    }
    return status(s);
}

static int
load_convs(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_convs *cs = &s->e->convs;
    uint64_t n, i;
    int rc;

    get_tag(r, 'V');
    cs->next_id = get_u(r);
    cs->started = get_u(r);
    cs->contacts = get_u(r);
    cs->switches = get_u(r);
    cs->repeats = get_u(r);
    cs->reopens = get_u(r);
    cs->resolved = get_u(r);
    cs->fcr = get_u(r);
    cs->merges = get_u(r);
    cs->idle_closed = get_u(r);
    cs->anonymous = get_u(r);
    cs->threaded = get_u(r);
    cs->refused = get_u(r);
    cs->alerts_repeat = get_u(r);
    cs->alerts_conflict = get_u(r);
    n = get_count(r, 64, "bad conversation count");
    if ((rc = status(s)) != 0)
        return rc;
    if (n > s->e->cfg.max_conversations)
        return refuse(s, CC_ELIMIT,
                      "snapshot: %llu conversations, more than [limits] "
                      "max_conversations (%llu)",
                      (unsigned long long)n,
                      (unsigned long long)s->e->cfg.max_conversations);
    for (i = 0; i < n; i++) {
        rc = load_conv(s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
load_callbacks(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    uint64_t n, i;
    unsigned g;
    int rc;

    get_tag(r, 'B');
    load_cbst(r, &e->cbs.st);
    for (g = 0; g < CC_ARRAY_SIZE(e->cbs.gated); g++)
        e->cbs.gated[g] = get_u(r);
    e->cbs.rejected = get_u(r);
    for (g = 0; g < 2; g++) {
        n = get_count(r, 16, "bad callback count");
        for (i = 0; i < n && sr_ok(r); i++) {
            rc = load_cb(s, g == 0, NULL);
            if (rc != 0)
                return rc;
        }
    }
    return status(s);
}

/* The callback of a contact key, as a record names it. */
static struct cc_callback *
get_cbref(struct rs *s) {
    unsigned ch = get_ch(s);
    uint32_t len;
    const char *id = get_s(&s->r, 1, CC_CONTACT_MAX, &len, "bad contact id");
    struct cc_callback *cb;

    if (id == NULL)
        return NULL;
    cb = cc__cb_find(s->e, ch, id, len,
                     cc_contact_hash(s->e, ch, (struct cc_str){id, len}));
    if (cb == NULL)
        sr_fail(&s->r, "a reference to no callback");
    return cb;
}

static int
load_queue_lists(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    uint64_t i, j, n, listed = 0, places = 0;

    get_tag(r, 'L');
    for (i = 0; i < e->nqueues && sr_ok(r); i++) {
        struct cc_queue *q = e->queues[i];
        unsigned prev = QUEUE_LEVELS;
        n = get_count(r, 2, "bad queue length");
        for (j = 0; j < n && sr_ok(r); j++) {
            struct cc_contact *x;
            if (get_u8max(r, 1, "bad entry") == 0) {
                x = get_cref(s);
                if (x == NULL)
                    break;
                if (x->state != CS_QUEUED || x->queue != q ||
                    x->qprev != NULL || q->head == x)
                    return refuse(s, CC_EPROTO,
                                  "snapshot: a waiting list names a contact "
                                  "not waiting there, or twice");
                listed++;
            } else {
                struct cc_callback *cb = get_cbref(s);
                int64_t opened = get_ts(r), queued = get_ts(r);
                unsigned prio1 = get_u8max(r, QUEUE_LEVELS - 1, "bad priority");
                if (!sr_ok(r))
                    break;
                if (cb->state != CB_WAITING || cb->queue != q ||
                    cb->place != NULL)
                    return refuse(s, CC_EPROTO,
                                  "snapshot: a callback place that does not "
                                  "belong in this list");
                x = cc_pool_get(&e->contacts);
                if (x == NULL)
                    return nomem(s);
                x->state = CS_QUEUED;
                x->channel = cb->channel;
                x->opened_ts = opened;
                x->queued_ts = queued;
                x->blob = (char *)(void *)cb;
                x->queue = q;
                x->prio1 = prio1 & 0x1f;
                cb->place = x;
                q->places++;
                e->cbs.bytes += CONTACT_STRIDE;
                places++;
            }
            /* By priority, highest first. */
            if (x->prio1 > prev)
                return refuse(s, CC_EPROTO,
                              "snapshot: a waiting list out of priority "
                              "order");
            prev = x->prio1;
            x->qnext = NULL;
            x->qprev = q->tail;
            if (q->tail != NULL)
                q->tail->qnext = x;
            else
                q->head = x;
            q->tail = x;
            q->ltail[x->prio1] = x;
            q->lcount[x->prio1]++;
            q->waiting++;
        }
    }
    if (status(s) != 0)
        return s->rc;
    if (listed != e->by_state[CS_QUEUED] || places != s->waiting_cbs)
        return refuse(s, CC_EPROTO,
                      "snapshot: a queued contact or a waiting callback is "
                      "in no waiting list");
    return 0;
}

/* Room for n timers of a slot's list. */
static int
ts_room(struct rs *s, uint64_t n) {
    uint64_t cap = s->ts_cap ? s->ts_cap : 256;
    void *p;

    if (n <= s->ts_cap && n <= s->texp_cap)
        return 0;
    while (cap < n)
        cap *= 2;
    if (s->ts_cap < cap) {
        p = cc_realloc(s->ts, s->ts_cap * sizeof(*s->ts), cap * sizeof(*s->ts));
        if (p == NULL)
            return nomem(s);
        s->ts = p;
        s->ts_cap = cap;
    }
    if (s->texp_cap < cap) {
        p = cc_realloc(s->texp, s->texp_cap * sizeof(*s->texp),
                       cap * sizeof(*s->texp));
        if (p == NULL)
            return nomem(s);
        s->texp = p;
        s->texp_cap = cap;
    }
    return 0;
}

static int
load_wheel(struct rs *s) {
    struct sr *r = &s->r;
    struct cc_engine *e = s->e;
    uint64_t lists, i, n;

    get_tag(r, 'W');
    lists = get_max(r, WHEEL_LISTS * CC_WHEEL_SLOTS, "bad timer list count");
    for (i = 0; i < lists && sr_ok(r); i++) {
        unsigned level = (unsigned)get_max(r, CC_WHEEL_LEVELS, "bad level");
        unsigned slot = (unsigned)get_max(r, CC_WHEEL_SLOTS - 1, "bad slot");
        bool end = false;

        /* In blocks, in three passes, so that the lookups of a block
         * wait on memory together: read (and start loading the bucket),
         * start loading the bucket's first record, then look up. */
        for (n = 0; !end && sr_ok(r);) {
            uint64_t key[WHEEL_BLOCK], rank[WHEEL_BLOCK], m, q;
            uint8_t kind[WHEEL_BLOCK];
            const void *head;

            if (ts_room(s, n + WHEEL_BLOCK) != 0)
                return s->rc;
            for (m = 0; m < WHEEL_BLOCK && sr_ok(r); m++) {
                struct cc_callback *cb;
                unsigned k = get_u8(r);
                if (k == TK_END) {
                    end = true;
                    break;
                }
                if (k > TK_CB) {
                    sr_fail(r, "bad timer kind");
                    break;
                }
                kind[m] = (uint8_t)k;
                key[m] = rank[m] = 0;
                s->ts[n + m] = NULL;
                switch (k) {
                case TK_SL:
                    s->ts[n + m] = &e->sl_timer;
                    break;
                case TK_IDLE:
                case TK_STATE:
                    key[m] = get_max(r, s->cmask, "a reference to no contact");
                    rank[m] = get_u(r);
                    __builtin_prefetch(&e->buckets[cref_first(s, key[m])]);
                    break;
                case TK_CONV:
                    key[m] = get_u(r);
                    __builtin_prefetch(
                        &e->convs.buckets[cc__conv_bucket(&e->convs, key[m])]);
                    break;
                default:
                    cb = get_cbref(s);
                    if (cb != NULL)
                        s->ts[n + m] = &cb->timer;
                    break;
                }
                s->texp[n + m] = get_t(r);
            }
            for (q = 0; q < m && sr_ok(r); q++) {
                if (kind[q] == TK_IDLE || kind[q] == TK_STATE)
                    head = e->buckets[cref_first(s, key[q])];
                else if (kind[q] == TK_CONV)
                    head = e->convs.buckets[cc__conv_bucket(&e->convs, key[q])];
                else
                    continue;
                if (head != NULL)
                    __builtin_prefetch(head);
            }
            for (q = 0; q < m && sr_ok(r); q++) {
                struct cc_contact *c;
                struct cc_conv *v;
                if (kind[q] == TK_IDLE || kind[q] == TK_STATE) {
                    c = cref_find(s, key[q], rank[q]);
                    if (c != NULL)
                        s->ts[n + q] = kind[q] == TK_IDLE ? &c->idle_timer
                                                          : &c->state_timer;
                } else if (kind[q] == TK_CONV) {
                    v = cc__conv_find_direct(e, key[q]);
                    if (v == NULL)
                        sr_fail(r, "a timer of no conversation");
                    else
                        s->ts[n + q] = &v->timer;
                }
            }
            n += m;
        }
        if (!sr_ok(r))
            break;
        if (cc_wheel_restore_slot(&e->wheel, level, slot, s->ts, s->texp, n) !=
            0)
            return refuse(s, CC_EPROTO,
                          "snapshot: a timer named twice, or in a slot its "
                          "deadline does not belong in (level %u, slot %u)",
                          level, slot);
    }
    if (status(s) != 0)
        return s->rc;
    if (!cc_timer_armed(&e->sl_timer))
        return refuse(s, CC_EPROTO,
                      "snapshot: the service-level sweep is not armed");
    return 0;
}

static int
load_dedup(struct rs *s, struct cc_dedup *d, bool map) {
    struct sr *r = &s->r;
    uint64_t n = get_count(r, map ? 9 : 8, "bad window count"), i, skip, v, x;

    /* A window configured smaller now keeps the newest. */
    skip = n > d->cap ? n - d->cap : 0;
    for (i = 0; i < n && sr_ok(r); i++) {
        uint64_t f = get_u64(r);
        v = map ? get_u(r) : 0;
        if (sr_ok(r) && f == 0)
            sr_fail(r, "an empty fingerprint");
        if (!sr_ok(r) || i < skip)
            continue;
        if (map ? cc_dedup_get(d, f, &x) : cc_dedup_seen(d, f))
            return refuse(s, CC_EPROTO, "snapshot: a fingerprint twice");
        if (map)
            cc_dedup_put(d, f, v);
        else
            cc_dedup_add(d, f);
    }
    return status(s);
}

static void
rs_fini(struct rs *s) {
    cc_free(s->le, (size_t)s->le_cap * sizeof(*s->le));
    cc_free(s->own, (size_t)s->own_cap * sizeof(*s->own));
    cc_free(s->me, (size_t)s->me_cap * sizeof(*s->me));
    cc_free(s->nodes_v, (size_t)s->nodes_cap * sizeof(*s->nodes_v));
    cc_free(s->live, (size_t)s->live_cap * sizeof(*s->live));
    cc_free(s->ts, s->ts_cap * sizeof(*s->ts));
    cc_free(s->texp, s->texp_cap * sizeof(*s->texp));
}

int
cc_engine_restore(struct cc_engine **out, const struct cc_engine_config *cfg,
                  const void *buf, size_t len, char *err, size_t errlen) {
    struct rs s;
    int rc;

    memset(&s, 0, sizeof(s));
    s.r.p = s.r.start = buf;
    s.r.end = s.r.p + len;
    s.cfg = cfg;
    s.err = err;
    s.errlen = errlen;
    *out = NULL;
    rc = load_head(&s);
    if (rc == 0)
        rc = load_scheds(&s);
    if (rc == 0)
        rc = load_names(&s);
    if (rc == 0)
        rc = load_identity(&s);
    if (rc == 0)
        rc = load_convs(&s);
    if (rc == 0)
        rc = load_contacts(&s);
    /* What get_cref() costs rests on this. */
    if (rc == 0 && s.e->open_contacts * 2 > s.cmask + 1)
        rc = refuse(&s, CC_EPROTO,
                    "snapshot: more contacts than its table could hold");
    if (rc == 0)
        rc = load_callbacks(&s);
    if (rc == 0)
        rc = load_queue_lists(&s);
    if (rc == 0)
        rc = load_wheel(&s);
    if (s.e != NULL && s.remapped)
        refile_contacts(s.e);
    if (rc == 0) {
        get_tag(&s.r, 'D');
        rc = load_dedup(&s, &s.e->dedup, false);
    }
    if (rc == 0)
        rc = load_dedup(&s, &s.e->convs.threads, true);
    if (rc == 0)
        rc = load_dedup(&s, &s.e->convs.forward, true);
    if (rc == 0) {
        get_tag(&s.r, 'Z');
        if (sr_ok(&s.r) && s.r.p != s.r.end)
            sr_fail(&s.r, "bytes after the end");
        rc = status(&s);
    }
    rs_fini(&s);
    if (rc != 0) {
        cc_engine_free(s.e);
        return rc;
    }
    *out = s.e;
    return 0;
}

/* ======================================================================
 * Snapshot files
 * ====================================================================== */

#define NAME_DIGITS 20
#define SUFFIX ".snap"
#define TMP_SUFFIX ".snap.tmp"

/* The header's checksum: every byte of it but the checksum's own. */
static uint32_t
header_crc(const uint8_t *h) {
    return cc_crc32c(cc_crc32c(0, h, 12), h + 16, CC_SNAP_HEADER - 16);
}

/* "<dir>/<20 digits><suffix>" into out (PATH_MAX), without snprintf's
 * allocations: false when it does not fit. */
static bool
snap_path(char *out, const char *dir, uint64_t seq, const char *suffix) {
    size_t dl = strlen(dir), sl = strlen(suffix), i;

    if (dl + 1 + NAME_DIGITS + sl + 1 > PATH_MAX)
        return false;
    memcpy(out, dir, dl);
    out[dl] = '/';
    for (i = NAME_DIGITS; i-- > 0;) {
        out[dl + 1 + i] = (char)('0' + seq % 10);
        seq /= 10;
    }
    memcpy(out + dl + 1 + NAME_DIGITS, suffix, sl + 1);
    return true;
}

/* The seq of a file named "<20 digits><suffix>", if it is one. */
static bool
parse_name(const char *name, const char *suffix, uint64_t *seq) {
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(name[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (strcmp(name + NAME_DIGITS, suffix) != 0)
        return false;
    *seq = v;
    return true;
}

/* Directory entries without opendir()'s allocation: fn is called with
 * each name until it returns false. Returns 0 or an errno. */
static int
each_entry(int dfd, bool (*fn)(void *arg, const char *name), void *arg) {
    char buf[8192] __attribute__((aligned(8)));
    long n, off;

    if (lseek(dfd, 0, SEEK_SET) < 0)
        return errno;
    for (;;) {
        n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
        if (n < 0)
            return errno;
        if (n == 0)
            return 0;
        for (off = 0; off < n;) {
            /* struct linux_dirent64: ino, off, reclen, type, name */
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof(reclen));
            if (!fn(arg, buf + off + 19))
                return 0;
            off += reclen;
        }
    }
}

struct fw {
    int fd;
    uint32_t crc;
    uint64_t len;
    int errnum;
};

static int
fw_write(void *ctx, const void *p, size_t n) {
    struct fw *f = ctx;
    const char *s = p;

    f->crc = cc_crc32c(f->crc, p, n);
    f->len += n;
    while (n > 0) {
        ssize_t k = write(f->fd, s, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            f->errnum = errno;
            return CC_EIO;
        }
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* What the clean-up after a write keeps and removes. */
struct sweep {
    int dfd;
    uint64_t seq;  /* the snapshot just written */
    uint64_t prev; /* the newest older one (0: none yet) */
    bool have_prev, removing;
};

static bool
sweep_fn(void *arg, const char *name) {
    struct sweep *w = arg;
    uint64_t seq;

    if (parse_name(name, SUFFIX, &seq)) {
        if (!w->removing) {
            if (seq < w->seq && (!w->have_prev || seq > w->prev)) {
                w->prev = seq;
                w->have_prev = true;
            }
        } else if (w->have_prev && seq < w->prev) {
            (void)unlinkat(w->dfd, name, 0);
        }
    } else if (w->removing && parse_name(name, TMP_SUFFIX, &seq) &&
               seq < w->seq) {
        (void)unlinkat(w->dfd, name, 0); /* left by a writer that died */
    }
    return true;
}

int
cc_snapshot_write(const char *dir, uint64_t seq, const struct cc_engine *e,
                  const struct cc_snapshot_shell *shell, char *err,
                  size_t errlen) {
    char tmp[PATH_MAX], path[PATH_MAX];
    uint8_t h[CC_SNAP_HEADER], b[8];
    struct fw f = {-1, 0, 0, 0};
    struct sweep sw = {-1, seq, 0, false, false};
    const char *what = "write";
    int rc, dfd;

    if (!snap_path(tmp, dir, seq, TMP_SUFFIX) ||
        !snap_path(path, dir, seq, SUFFIX))
        return cc_errf(err, errlen, CC_EINVAL, "snapshot in %s: path too long",
                       dir);
    f.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0)
        return cc_errf(err, errlen, CC_EIO, "snapshot %s: open: %s", tmp,
                       strerror(errno));
    /* The header goes in last, when the body's length is known. */
    memset(h, 0, sizeof(h));
    rc = fw_write(&f, h, sizeof(h));
    f.crc = 0;
    f.len = 0;
    cc_put_le64(b, shell != NULL ? shell->len : 0);
    if (rc == 0)
        rc = fw_write(&f, b, sizeof(b));
    if (rc == 0 && shell != NULL && shell->save != NULL) {
        rc = shell->save(shell->arg, fw_write, &f);
        if (rc == 0 && f.len != sizeof(b) + shell->len)
            rc = CC_ESTATE;
    } else if (rc == 0 && shell != NULL && shell->len != 0) {
        rc = fw_write(&f, shell->data, shell->len);
    }
    if (rc == 0)
        rc = cc_engine_save(e, fw_write, &f);
    if (rc == 0) {
        uint64_t body = f.len;
        cc_put_le32(b, f.crc);
        rc = fw_write(&f, b, 4);
        memcpy(h, CC_SNAP_MAGIC, 8);
        cc_put_le32(h + 8, CC_SNAP_VERSION);
        cc_put_le64(h + 16, seq);
        cc_put_le64(h + 24, body);
        cc_put_le32(h + 12, header_crc(h));
        if (rc == 0 && pwrite(f.fd, h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
            f.errnum = errno ? errno : EIO;
            rc = CC_EIO;
        }
    }
    if (rc == 0 && fsync(f.fd) != 0) {
        what = "fsync";
        f.errnum = errno;
        rc = CC_EIO;
    }
    if (close(f.fd) != 0 && rc == 0) {
        what = "close";
        f.errnum = errno;
        rc = CC_EIO;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        what = "rename";
        f.errnum = errno;
        rc = CC_EIO;
    }
    if (rc != 0) {
        (void)unlink(tmp);
        if (rc == CC_ESTATE)
            return cc_errf(err, errlen, rc,
                           "snapshot %s: the engine's or the shell's state "
                           "is inconsistent (a bug): nothing written",
                           tmp);
        return cc_errf(err, errlen, CC_EIO, "snapshot %s: %s: %s", tmp, what,
                       strerror(f.errnum));
    }
    /* The rename is durable once the directory is. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        rc = cc_errf(err, errlen, CC_EIO, "snapshot %s: fsync of %s: %s", path,
                     dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return rc;
    }
    /* Two kept: this one and the newest older one. */
    sw.dfd = dfd;
    (void)each_entry(dfd, sweep_fn, &sw);
    sw.removing = true;
    (void)each_entry(dfd, sweep_fn, &sw);
    close(dfd);
    return 0;
}

/* The snapshots of a directory, newest first. */
struct list {
    uint64_t *v;
    size_t n, cap;
    bool failed;
};

static bool
list_fn(void *arg, const char *name) {
    struct list *l = arg;
    uint64_t seq;

    if (!parse_name(name, SUFFIX, &seq))
        return true;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        uint64_t *v = cc_realloc(l->v, l->cap * sizeof(*v), cap * sizeof(*v));
        if (v == NULL) {
            l->failed = true;
            return false;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = seq;
    return true;
}

static int
desc_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Outcome of one file: restored, skipped (damaged), or stop. */
enum { LF_OK, LF_SKIP, LF_STOP };

static int
load_file(const char *path, uint64_t want_seq,
          const struct cc_engine_config *cfg, struct cc_engine **out,
          void **shell, size_t *shell_len, char *why, size_t whylen, int *rc) {
    struct stat st;
    const uint8_t *m;
    uint64_t body, sl;
    uint32_t version;
    size_t size;
    int fd, res = LF_SKIP;

    *rc = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "cannot read it: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return LF_SKIP;
    }
    size = (size_t)st.st_size;
    if (size < CC_SNAP_HEADER + 4) {
        snprintf(why, whylen, "truncated (%zu bytes)", size);
        close(fd);
        return LF_SKIP;
    }
    m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(why, whylen, "cannot map it: %s", strerror(errno));
        return LF_SKIP;
    }
    version = cc_get_le32(m + 8);
    body = cc_get_le64(m + 24);
    if (memcmp(m, CC_SNAP_MAGIC, 8) != 0) {
        snprintf(why, whylen, "not a snapshot (bad magic)");
    } else if (version != CC_SNAP_VERSION) {
        /* Stop rather than fall back to an older state: a newer format
         * is not damage. */
        snprintf(why, whylen, "newer or unknown format version %u%s", version,
                 cc_get_le32(m + 12) != header_crc(m)
                     ? " (its header checksum does not match either: "
                       "damaged?)"
                     : "");
        *rc = CC_EPROTO;
        res = LF_STOP;
    } else if (cc_get_le32(m + 12) != header_crc(m)) {
        snprintf(why, whylen, "header checksum mismatch");
    } else if (cc_get_le64(m + 16) != want_seq) {
        snprintf(why, whylen, "its header says seq %llu",
                 (unsigned long long)cc_get_le64(m + 16));
    } else if (body != size - CC_SNAP_HEADER - 4) {
        snprintf(why, whylen, "%s (%zu bytes, the header says %llu)",
                 body > size - CC_SNAP_HEADER - 4 ? "truncated"
                                                  : "trailing bytes",
                 size, (unsigned long long)body + CC_SNAP_HEADER + 4);
    } else if (cc_crc32c(0, m + CC_SNAP_HEADER, body) !=
               cc_get_le32(m + CC_SNAP_HEADER + body)) {
        snprintf(why, whylen, "body checksum mismatch");
    } else if (body < 8 || (sl = cc_get_le64(m + CC_SNAP_HEADER)) > body - 8) {
        snprintf(why, whylen, "bad shell length");
        *rc = CC_EPROTO;
        res = LF_STOP;
    } else {
        const uint8_t *p = m + CC_SNAP_HEADER + 8;
        *rc = cc_engine_restore(out, cfg, p + sl, body - 8 - sl, why, whylen);
        if (*rc == 0 && sl != 0) {
            *shell = cc_malloc(sl);
            if (*shell == NULL) {
                cc_engine_free(*out);
                *out = NULL;
                *rc = CC_ENOMEM;
                snprintf(why, whylen, "out of memory");
            } else {
                memcpy(*shell, p, sl);
                *shell_len = sl;
            }
        }
        res = *rc == 0 ? LF_OK : LF_STOP;
    }
    munmap((void *)(uintptr_t)m, size);
    return res;
}

int
cc_snapshot_load(const char *dir, const struct cc_engine_config *cfg,
                 struct cc_engine **out, uint64_t *seq, void **shell,
                 size_t *shell_len, char *err, size_t errlen) {
    struct list l = {NULL, 0, 0, false};
    char path[PATH_MAX], why[512], first[PATH_MAX + 600];
    size_t i;
    int dfd, e2, rc = 0;

    *out = NULL;
    *seq = 0;
    *shell = NULL;
    *shell_len = 0;
    first[0] = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOENT)
            return 0;
        return cc_errf(err, errlen, CC_EIO, "snapshots in %s: %s", dir,
                       strerror(errno));
    }
    e2 = each_entry(dfd, list_fn, &l);
    close(dfd);
    if (e2 != 0 || l.failed) {
        cc_free(l.v, l.cap * sizeof(*l.v));
        return cc_errf(err, errlen, e2 ? CC_EIO : CC_ENOMEM,
                       "snapshots in %s: %s", dir,
                       e2 ? strerror(e2) : "out of memory");
    }
    if (l.n != 0)
        qsort(l.v, l.n, sizeof(*l.v), desc_u64);
    for (i = 0; i < l.n; i++) {
        int frc, res;
        if (!snap_path(path, dir, l.v[i], SUFFIX)) {
            rc = cc_errf(err, errlen, CC_EINVAL,
                         "snapshots in %s: path too "
                         "long",
                         dir);
            break;
        }
        why[0] = '\0';
        res = load_file(path, l.v[i], cfg, out, shell, shell_len, why,
                        sizeof(why), &frc);
        if (res == LF_OK) {
            *seq = l.v[i];
            break;
        }
        if (res == LF_STOP) {
            const char *w = why;
            if (strncmp(w, "snapshot: ", 10) == 0)
                w += 10; /* cc_engine_restore()'s prefix: the path says it */
            rc = cc_errf(err, errlen, frc, "snapshot %s: %s", path, w);
            break;
        }
        cc_log_warn("snapshot %s: %s; trying the one before", path, why);
        if (first[0] == '\0')
            snprintf(first, sizeof(first), "%s: %s", path, why);
    }
    if (rc == 0 && *out == NULL && l.n != 0)
        rc = cc_errf(err, errlen, CC_EPROTO,
                     "snapshots in %s: every one is damaged (the newest: %s)",
                     dir, first);
    cc_free(l.v, l.cap * sizeof(*l.v));
    return rc;
}
