/*
 * The engine's internals, shared by the files that make it up (engine.c:
 * contacts, queues and the ingest path; conversation.c: conversations and
 * their context; callback.c: callbacks; snapshot.c: the state saved and
 * restored). Nothing else in core/ includes this header (the tests do):
 * the engine's interface is engine.h.
 */
#ifndef CC_ENGINE_INT_H
#define CC_ENGINE_INT_H

#include "cbconfig.h"
#include "clock.h"
#include "dedup.h"
#include "engine.h"
#include "identity.h"
#include "mem.h"
#include "outbox.h"
#include "svclevel.h"
#include "wheel.h"

#include <stddef.h>

/* ---- names and queues ------------------------------------------------- */

struct cc_queue;

struct cc_name {
    struct cc_name *hnext;
    uint64_t hash;
    struct cc_queue *queue; /* set when the name is used as a queue */
    struct cc_agent *agent; /* set once an agent.status names it */
    uint32_t len;
    uint32_t idx; /* its number, from 1: what conversations keep */
    char s[];
};

/* An agent as its agent.status events describe it. */
enum cc_agent_state { AG_OFFLINE, AG_AVAILABLE, AG_BUSY, AG_AWAY, AG__COUNT };
#define AGENT_QUEUES 16 /* queues one agent may serve */

struct cc_agent {
    struct cc_queue *queues[AGENT_QUEUES]; /* those it serves */
    int64_t since_ts;                      /* its state's, by event time */
    uint8_t state, nqueues;
};

/* A waiting contact's level: its join's priority plus one (0: none). */
#define QUEUE_LEVELS 11

/* What callbacks did, per queue and in all (see callback.c). */
struct cc_cb_stats {
    uint64_t offers, accepted, declined, lapsed, cancelled, scheduled;
    uint64_t dialled, completed, first_attempt, retries, failed;
    uint64_t on_time, late, overdue;
    uint64_t saved_ms; /* from acceptance to the first dial */
    /* Callers offered a callback (counted once per queue visit) and how
     * many of them abandoned anyway. */
    uint64_t offered_callers, offered_abandoned;
};

struct cc_queue {
    const struct cc_name *name;
    /* Waiting, by priority (highest first), then in join order; the last
     * of each level, so that a join finds its place in O(levels). */
    struct cc_contact *head, *tail;
    struct cc_contact *ltail[QUEUE_LEVELS];
    uint32_t lcount[QUEUE_LEVELS]; /* callers waiting at each level */
    uint32_t agents[AG__COUNT];    /* of the agents serving it, by state */
    /* How good its estimates were: of the callers answered that had one
     * at their join, the sum of |actual - estimated| waits and how many
     * were within 30 s. */
    uint64_t est_n, est_abs_ms, est_within30;
    /* Callers and callback places waiting (a place is counted in
     * lcount and ltail like a caller). */
    uint64_t waiting;
    uint64_t joined, answered, abandoned;
    struct cc_sl sl; /* the last hour, by minute */
    /* Callbacks: the queue's policy, places in its list, accepted and not
     * done, and what they did. */
    const struct cc_cb_policy *cb;
    uint32_t places, pending;
    uint32_t dialling; /* callbacks dialled, outcome not yet known */
    struct cc_cb_stats cbst;
};

/* ---- contacts --------------------------------------------------------- */

enum cc_cstate {
    CS_OPEN,      /* known, not queued, no agent */
    CS_QUEUED,    /* waiting in a queue */
    CS_CONNECTED, /* with an agent */
    CS_HELD,      /* with an agent, on hold */
    CS__COUNT
};

enum {
    CF_ANSWERED = 1 << 0, /* an agent answered at least once */
    CF_OFFERED = 1 << 1,  /* offered a callback in this queue visit (the
                             offer stands, lapsed or was declined) */
    CF_ACCEPTED = 1 << 2, /* the customer accepted a callback */
    CF_PHONE = 1 << 3,    /* the customer map has a phone number */
    /* Outcomes, never cleared: what its conversation's history shows. */
    CF_ABANDONED = 1 << 4,   /* left a queue unanswered (or closed in one) */
    CF_TRANSFERRED = 1 << 5, /* transferred at least once */
    CF_CALLBACK = 1 << 6,    /* accepted a callback at least once */
    /* Not an outcome: no offer (more) this queue visit; cleared on join. */
    CF_NO_OFFER = 1 << 7
};

/* Contact ids up to this many bytes live in the record itself, in the same
 * cache line as the hash that finds them: a lookup costs the bucket and the
 * record, not a third miss on a separate string. */
#define CONTACT_ID_INLINE 40

struct cc_contact {
    /* First cache line: everything a lookup reads. */
    struct cc_contact *hnext; /* hash chain */
    uint64_t hash;
    uint16_t id_len, cust_len;
    uint8_t channel, state, flags, transfers;
    char id[CONTACT_ID_INLINE]; /* the id when it fits */
    /* The rest. */
    char *blob; /* the id when it does not fit inline, then the customer
                   map as received; NULL when both are empty */
    struct cc_timer state_timer; /* the hold clock when held; the offer
                                    and the answer clock when queued */
    struct cc_timer idle_timer;
    struct cc_contact *qnext, *qprev; /* waiting list of queue */
    struct cc_queue *queue;
    uint64_t hold_total_ms;
    /* queued_ts: when it joined its queue; once answered, when it was
     * answered (where its handle time starts) */
    int64_t opened_ts, queued_ts;
    union {
        int64_t hold_ts;    /* held: when the hold began */
        int64_t joined_est; /* queued: the wait estimated at its join, ms
                               (the median; -1: none) */
    };
    /* Last line: with the first, all that a message touches. */
    uint64_t last_seen; /* engine time of the last event */
    const struct cc_name *agent;
    uint32_t msgs_in, msgs_out;
    /* Its conversation (NULL until its customer or thread is known), the
     * conversation's other live contacts, and its entry in the
     * conversation's contact history (NULL once that entry aged out). */
    struct cc_conv *conv;
    struct cc_contact *cvnext, *cvprev;
    struct cc_convct *centry;
    /* centry's number (cc_convct.n), kept here so that the events that
     * change nothing in the entry need not load it; 0 without one. */
    uint32_t conv_n;
    /* Its SLA clock (answer while queued, hold while held): the schedule
     * (0: none), the next stage, the last stage fired (type << 4 | level,
     * SLA_LAST_NONE: none; it survives a change of schedule), and the
     * priority of its queue.join plus one (0: none). Bit fields: the record
     * has four bytes left. */
    uint16_t sla_sched;
    uint16_t sla_stage : 5, sla_last : 6, prio1 : 5;
};

_Static_assert(offsetof(struct cc_contact, last_seen) == 192,
               "struct cc_contact: a message's fields on the last line");
_Static_assert(sizeof(struct cc_contact) <= 256, "four cache lines");
_Static_assert(CC_SCHED_STAGES < 32 && CC_SLA_STAGES < 16,
               "a stage index and a level fit their bit fields");
#define SLA_LAST_NONE 0x3f

#define CONTACT_STRIDE ((sizeof(struct cc_contact) + 63) & ~(size_t)63)

static inline size_t
contact_id_ext(const struct cc_contact *c) {
    return c->id_len > CONTACT_ID_INLINE ? c->id_len : 0;
}

static inline const char *
contact_id(const struct cc_contact *c) {
    return c->id_len > CONTACT_ID_INLINE ? c->blob : c->id;
}

static inline const uint8_t *
contact_customer(const struct cc_contact *c) {
    return c->cust_len ? (const uint8_t *)c->blob + contact_id_ext(c) : NULL;
}

static inline size_t
contact_blob_size(const struct cc_contact *c) {
    return contact_id_ext(c) + c->cust_len;
}

/* A callback place: a record in a queue's waiting list that keeps the
 * place of a caller who accepted a callback (see callback.c). It is in no
 * table, has no id (id_len 0) and no timers; its blob points to its
 * callback. */
static inline bool
cc_contact_is_place(const struct cc_contact *c) {
    return c->id_len == 0;
}

static inline struct cc_callback *
cc_place_callback(const struct cc_contact *c) {
    return (struct cc_callback *)(void *)c->blob;
}

/* ---- callbacks -------------------------------------------------------- */

enum cc_cb_state {
    CB_OFFERED,   /* the offer stands: the caller waits in the queue */
    CB_LAPSED,    /* declined or expired: a re-offer may follow */
    CB_WAITING,   /* accepted: its place waits in the queue */
    CB_SCHEDULED, /* accepted for a time the customer asked for */
    CB_DIALLING,  /* callback.dial sent: its outcome is awaited */
    CB_RETRY      /* an attempt failed: dialled again after a delay */
};

/* One callback, from its offer to its outcome. Kept apart from the
 * contact, which usually closes as soon as the caller accepts: callback
 * events name the contact, and find it here by the contact's hash. */
struct cc_callback {
    struct cc_callback *hnext;       /* in the table */
    struct cc_callback *next, *prev; /* accepted ones, in the engine */
    struct cc_queue *queue;
    struct cc_contact *place; /* CB_WAITING: its place in the queue */
    struct cc_timer timer;    /* by state: lapse, re-offer, overdue,
                                 scheduled dial, outcome wait, retry */
    uint64_t hash;            /* the contact's */
    uint64_t conv;            /* its conversation's id (0: none) */
    int64_t join_ts;          /* the caller's join: its place */
    uint64_t offered_ts, accepted_ts, window_from, window_to;
    uint64_t dial_at; /* CB_SCHEDULED: when it is dialled */
    int64_t ewt_ms;   /* the estimate offered (median; -1: none) */
    uint32_t offers;  /* made to this caller in this queue visit */
    uint16_t id_len, cust_len;
    uint8_t state, channel, attempts, prio1;
    bool declined, overdue, first_dialled;
    uint8_t number_len;
    char number[24]; /* E.164 */
    char data[];     /* the contact id, then the customer map */
};

struct cc_callbacks {
    struct cc_callback **buckets;
    uint64_t mask, n, bytes;
    struct cc_callback *accepted; /* through next/prev */
    uint64_t pending;
    struct cc_cb_stats st;
    /* Offers a rule called for that a gate stopped, by gate. */
    uint64_t gated[5];
    uint64_t rejected; /* callback.* events refused */
};

/* ---- conversations ---------------------------------------------------- */

/* Bounds on what one conversation keeps: its context never grows with the
 * number of events or contacts it has seen, only its counters do. */
#define CONV_TIMELINE 11 /* last events */
#define CONV_CONTACTS 16 /* last contacts with their outcomes */
#define CONV_CHANNELS 8  /* channels touched, in order */
#define CONV_AGENTS 4    /* most recent distinct agents */
#define CONV_QUEUES 4    /* most recent distinct queues */
#define CONV_TAGS 8      /* most recent distinct tags */

enum cc_conv_state { CV_OPEN, CV_RESOLVED };

/* Flags of a conversation. */
enum {
    CVF_SENTIMENT = 1 << 0,
    CVF_CALLBACK = 1 << 1, /* it may have a pending callback */
    /* It has tags (tags[0] != 0): on the first line, so that the events
     * that pick an SLA schedule need not load the tags' line to learn
     * there are none. Kept by cc_conv_tags_changed(). */
    CVF_TAGS = 1 << 2
};

/* Outcome bits of a contact in a conversation's history. */
enum {
    CO_ANSWERED = 1 << 0,
    CO_ABANDONED = 1 << 1,
    CO_TRANSFERRED = 1 << 2,
    CO_CALLBACK = 1 << 3,
    CO_ENDED = 1 << 4,
    CO_EXPIRED = 1 << 5
};

/* One contact as its conversation remembers it (a blob; oldest first). */
struct cc_convct {
    struct cc_convct *next;
    struct cc_contact *live; /* the contact while it is open */
    const struct cc_name *agent;
    int64_t opened_ts, ended_ts;
    uint32_t n; /* 1 for the conversation's first contact */
    uint16_t id_len;
    uint8_t channel, outcome;
    char id[];
};

/* One event of the timeline: no bodies, no strings. 12 bytes: an event's
 * time fits in 48 bits (the protocol caps it at year 9999), kept in two
 * parts so that nothing pads the entry to 16. */
struct cc_convtl {
    uint32_t ts_lo;
    uint16_t ts_hi;
    uint8_t type, channel;
    uint32_t contact_n; /* which contact (0: none), as cc_convct.n */
};

_Static_assert(CC_TS_MAX < (1LL << 48), "event times fit in 48 bits");

static inline int64_t
cc_convtl_ts(const struct cc_convtl *t) {
    return (int64_t)(((uint64_t)t->ts_hi << 32) | t->ts_lo);
}

/* A conversation's response clock (see struct cc_conv), eight bytes. */
struct cc_resp_clock {
    uint16_t sched : 12, ch_lo : 4;
    uint16_t stage : 5, last : 6, next : 1, ch_hi : 1;
    uint32_t start;
};

/* A conversation's resolution clock (see struct cc_conv), twelve bytes.
 * Running, `seg` is when its current stretch began and `acc` the time it
 * counted before that; paused (the conversation waits on the customer, or
 * is resolved), `seg` is when it paused and `acc` all it counted. `seg` is
 * in ms after the conversation's start; `acc` in ms, business ms under a
 * calendar. */
struct cc_res_clock {
    uint32_t sched : 12, stage : 5, last : 6, paused : 1, : 8;
    uint32_t seg, acc;
};

/* The channel that started a response clock. */
static inline unsigned
cc_resp_channel(const struct cc_resp_clock *r) {
    return (unsigned)(r->ch_lo | r->ch_hi << 4);
}

/* Laid out by what events touch, a cache line at a time (the record is
 * line-aligned): a message or a hold reads and writes the first line and
 * one timeline slot, queue events (answers and transfers among them) the
 * second line too, and only joins, closes, resolves, merges and events
 * with a topic, tags or a sentiment the rest. With a million conversations
 * each line an event needs is a miss. */
struct cc_conv {
    /* line 0: every event */
    struct cc_customer *cust;
    uint64_t id;        /* shown as "cv-<id>" */
    uint64_t last_seen; /* engine time of the last event */
    int64_t last_ts;
    uint32_t msgs_in, msgs_out, holds;
    /* Names by number (struct cc_name.idx; 0: none), most recent first. */
    uint32_t agents[CONV_AGENTS];
    uint8_t state, flags, tl_n, tl_head;
    /* line 1: queue events */
    uint64_t wait_ms, max_wait_ms;
    uint32_t waits, transfers;
    uint32_t queues[CONV_QUEUES];
    struct cc_contact *live;             /* open contacts, through cvnext */
    struct cc_convct *contacts, *newest; /* history, oldest first */
    /* line 2: joins, closes, resolves */
    struct cc_timer timer; /* idle close and the SLA clocks' stages when
                              open; end of the reopen window when
                              resolved */
    int64_t started_ts, resolved_ts, last_end_ts;
    uint64_t hold_ms; /* of contacts that ended */
    /* line 3 */
    uint32_t ncontacts, nlive;
    uint32_t switches, repeats, reopens, merges, resolves;
    uint32_t feedback_n;
    int32_t feedback_score;
    float sentiment;
    int64_t feedback_ts;
    uint8_t nchan, feedback_scale, first_channel, nentries;
    uint32_t topic;
    struct cc_conv *hnext; /* by id */
    /* line 4: channel times (joins and merges) */
    int64_t chan_ts[CONV_CHANNELS];
    /* lines 5 to 7: tags and channels, then the timeline, one slot
     * written per event (slot 7 straddles two lines) */
    uint32_t tags[CONV_TAGS];
    uint8_t chan[CONV_CHANNELS];
    struct cc_convtl tl[CONV_TIMELINE];
    /* The clocks, on the last line with the timeline's tail, the line a
     * message already touches. The resolution clock runs from the
     * conversation's start to its resolve, paused while it waits on the
     * customer. The response clock runs while the customer waits for an
     * agent's reply (first_response before the conversation's first agent
     * message, next_response after): its schedule (0: none running), the
     * channel of the message that started it, next stage, last stage fired
     * (SLA_LAST_NONE: none) and kind; its start in ms after started_ts. */
    struct cc_res_clock res;
    struct cc_resp_clock resp;
};

_Static_assert(sizeof(struct cc_conv) <= 512, "eight cache lines");
_Static_assert(CC_SCHEDS_MAX <= 4096 && CC_MAX_CHANNELS <= 32,
               "a schedule number and a channel fit the response clock's "
               "bit fields");
_Static_assert(offsetof(struct cc_conv, wait_ms) == 64 &&
                   offsetof(struct cc_conv, timer) == 128 &&
                   offsetof(struct cc_conv, ncontacts) == 192 &&
                   offsetof(struct cc_conv, chan_ts) == 256 &&
                   offsetof(struct cc_conv, res) >= 448,
               "struct cc_conv: the lines as laid out above");

/* Records on whole cache lines. */
#define CONV_STRIDE ((sizeof(struct cc_conv) + 63) & ~(size_t)63)

/* Sets CVF_TAGS from the tags, after they changed. */
static inline void
cc_conv_tags_changed(struct cc_conv *v) {
    if (v->tags[0] != 0)
        v->flags |= CVF_TAGS;
    else
        v->flags &= (uint8_t)~CVF_TAGS;
}

/* Starts loading a whole conversation record, for the events that touch
 * most of it (joins, closes, resolves). */
static inline void
cc_conv_prefetch(const struct cc_conv *v) {
    size_t off;
    for (off = 0; off < CONV_STRIDE; off += 64)
        __builtin_prefetch((const char *)v + off, 1);
}

/* Starts loading the timeline slot the conversation's next event writes
 * (reads the record's first line). */
static inline void
cc_conv_prefetch_timeline(const struct cc_conv *v) {
    const char *t = (const char *)&v->tl[v->tl_head];
    __builtin_prefetch(t, 1);
    __builtin_prefetch(t + sizeof(struct cc_convtl) - 1, 1);
}

struct conv_chan_stats {
    uint64_t started, contacts, switches, repeats, reopens, resolved, fcr;
};

struct cc_convs {
    struct cc_conv **buckets;
    uint64_t mask;
    struct cc_pool pool;
    struct cc_dedup threads; /* native message id -> conversation id */
    struct cc_dedup forward; /* merged conversation id -> survivor's */
    uint64_t next_id;
    uint64_t frees; /* conversations freed so far: pointers kept across
                       events are valid while it has not moved */
    uint64_t open, resolved_now;
    uint64_t started, contacts, switches, repeats, reopens, resolved, fcr;
    uint64_t merges, idle_closed, anonymous, threaded, refused;
    uint64_t entry_bytes;
    uint64_t alerts_repeat, alerts_conflict;
    int email_ch, social_ch; /* channels whose messages are threaded */
    struct conv_chan_stats chan[CC_MAX_CHANNELS];
};

/* ---- the engine ------------------------------------------------------- */

struct chan_stats {
    uint64_t events, open, opened, closed, expired, implicit_opens;
    uint64_t answered, abandoned, transfers, holds, msgs_in, msgs_out;
};

struct cc_engine {
    struct cc_engine_config cfg;
    struct cc_wheel wheel;
    struct cc_timer sl_timer; /* each minute: service levels re-checked */
    struct cc_outbox outbox;
    struct cc_dedup dedup;
    struct cc_pool contacts;
    struct cc_blobs blobs;
    struct cc_contact **buckets;
    uint64_t bucket_mask;
    uint64_t open_contacts;
    uint64_t blob_bytes;
    uint64_t by_state[CS__COUNT];
    /* names */
    struct cc_name **nbuckets;
    uint64_t nmask, nnames;
    struct cc_name **names; /* by number; names[0] unused */
    uint64_t names_cap;
    struct cc_queue **queues;
    uint64_t nqueues;
    uint64_t nagents, agents_by_state[AG__COUNT];
    /* counters */
    uint64_t messages, malformed;
    uint64_t accepted, duplicates, rejected, implicit_opens, expired;
    uint64_t by_type[CC_EV__COUNT];
    uint64_t by_reason[CC_R__COUNT];
    struct chan_stats chan[CC_MAX_CHANNELS];
    struct cc_sl chan_sl[CC_MAX_CHANNELS];
    struct cc_rt chan_rt[CC_MAX_CHANNELS]; /* response times, by channel */
    uint64_t alerts_sla[3];                /* by enum cc_stage_type */
    uint64_t alerts_sl;                    /* queue.service_level */
    struct cc_slas *slas;
    struct cc_callbacks cbs;
    uint64_t callback_unknown;
    /* identity and conversations */
    struct cc_identity ident;
    struct cc_convs convs;
    uint64_t ident_rejected, ident_limit, resolve_unknown;
    /* Restored from a snapshot: the policies of schedules whose policy is
     * no longer configured (their names, for the alerts), or NULL. */
    struct cc_sla_policy *snap_policies;
    uint32_t snap_npolicies;
};

/* ---- shared between engine.c and conversation.c ------------------------ */

const struct cc_name *cc_name_intern(struct cc_engine *e, struct cc_str s);
/* The name numbered idx, or NULL for 0. */
static inline const struct cc_name *
cc_name_at(const struct cc_engine *e, uint32_t idx) {
    return idx != 0 ? e->names[idx] : NULL;
}
void cc_pack_name_or_nil(msgpack_packer *pk, const struct cc_name *n);
/* The contact's customer map as received, or nil. */
void cc_pack_contact_customer(msgpack_packer *pk, const struct cc_contact *c);
/* A deterministic id: "<rule>:<channel>:<contact>" and then tail. */
void cc_pack_rule_id(struct cc_engine *e, msgpack_packer *pk, const char *rule,
                     const struct cc_contact *c, const char *tail,
                     size_t tail_n);
/* The same two, into room reserved with cc_pack_reserve(): at most
 * c->cust_len + 1 bytes, and CC_W_STR_MAX(strlen(rule) + 1 +
 * CC_CHANNEL_NAME_MAX + 1 + CC_CONTACT_MAX + tail_n). */
static inline char *
cc_w_contact_customer(char *d, const struct cc_contact *c) {
    if (c->cust_len == 0)
        return cc_w_nil(d);
    memcpy(d, contact_customer(c), c->cust_len);
    return d + c->cust_len;
}

#define cc_w_rule_id(d, e, rule, c)                                            \
    cc_w_rule_idn((d), (e), "" rule, sizeof(rule) - 1, (c), NULL, 0)
static inline char *
cc_w_rule_idn(char *d, const struct cc_engine *e, const char *rule, size_t rn,
              const struct cc_contact *c, const char *tail, size_t tail_n) {
    size_t cn = e->cfg.channels.len[c->channel];

    d = cc_w_strhdr(d, rn + 1 + cn + 1 + c->id_len + tail_n);
    memcpy(d, rule, rn);
    d += rn;
    *d++ = ':';
    cc_w_copy(d, e->cfg.channels.names[c->channel], cn);
    d += cn;
    *d++ = ':';
    cc_w_copy(d, contact_id(c), c->id_len);
    d += c->id_len;
    cc_w_copy(d, tail, tail_n);
    return d + tail_n;
}
struct cc_contact *cc_contact_find(struct cc_engine *e, unsigned channel,
                                   struct cc_str id, uint64_t h);
uint64_t cc_contact_hash(const struct cc_engine *e, unsigned channel,
                         struct cc_str id);

/* What an event changed on its contact, for the conversation layer. */
struct cc_conv_delta {
    int64_t prev_queued_ts; /* when it joined the queue it was in */
    uint64_t thread_key;    /* cc_conv_thread_key() of the event */
    uint8_t prev_state;     /* its state before the event */
    bool created;           /* the event opened it */
};

int cc_convs_init(struct cc_engine *e);
void cc_convs_fini(struct cc_engine *e);
/* Applies an accepted event to its conversation: c is the event's contact
 * (NULL when it has none), cust the customer its identifiers resolved to
 * (NULL when it named none). */
void cc_conv_apply(struct cc_engine *e, struct cc_contact *c,
                   struct cc_customer *cust, const struct cc_event *ev,
                   const struct cc_conv_delta *d, uint64_t now);
/* The key under which an email or social message event is remembered in
 * the thread index (0: none), computed once with the event's other keys. */
uint64_t cc_conv_thread_key(const struct cc_engine *e,
                            const struct cc_event *ev);
/* A contact ends (closed or expired): its outcome is final. */
void cc_conv_contact_end(struct cc_engine *e, struct cc_contact *c, int64_t ts,
                         bool expired);
/* A contact's record is about to be freed. */
void cc_conv_contact_detach(struct cc_engine *e, struct cc_contact *c);
/* Appends history entry ce (its id_len set) to v's contact history, as its
 * newest, and counts its bytes; trimming the oldest is the caller's. */
void cc_conv_entry_append(struct cc_engine *e, struct cc_conv *v,
                          struct cc_convct *ce);
/* Packs a conversation's context: the summary or everything. */
void cc_conv_pack(struct cc_engine *e, msgpack_packer *pk,
                  const struct cc_conv *v, bool full);
/* "cv-<id>", or nil. */
void cc_conv_pack_id(msgpack_packer *pk, const struct cc_conv *v);
struct cc_conv *cc_conv_find(const struct cc_engine *e, uint64_t id);
/* The conversation named "cv-<n>": 0, or CC_EINVAL / CC_ENOENT with *why. */
int cc_conv_by_name(const struct cc_engine *e, struct cc_str id,
                    struct cc_conv **out, const char **why);
void cc_convs_pack_stats(const struct cc_engine *e, msgpack_packer *pk);
void cc_convs_pack_chan_stats(const struct cc_engine *e, msgpack_packer *pk,
                              unsigned ch);
uint64_t cc_convs_bytes(const struct cc_engine *e);
/* The schedule of clock k for contact c's channel, queue, priority and
 * conversation tags (0: no such clock). */
uint16_t cc_engine_contact_sched(struct cc_engine *e,
                                 const struct cc_contact *c, enum cc_clock k);
/* The schedule of clock k for a conversation with no contact to go by:
 * channel ch, its latest queue and its tags (reloads). */
uint16_t cc_engine_conv_sched(struct cc_engine *e, const struct cc_conv *v,
                              unsigned ch, enum cc_clock k);
/* Brings the conversation's timer forward to its SLA clocks' next stage. */
void cc_conv_arm_clock(struct cc_engine *e, struct cc_conv *v);
/* Publishes stage i of a conversation's resolution clock (res) or response
 * clock. */
void cc_engine_fire_conv_stage(struct cc_engine *e, struct cc_conv *v, bool res,
                               unsigned i, uint64_t due, uint64_t now);

/* Shared by engine.c and callback.c. */
struct cc_wait_est {
    const char *why; /* no estimate by position, and why; else NULL */
    uint64_t p50_ms, p80_ms;
    int64_t drain_ms; /* -1: nobody answered in the window */
};
/* The wait of a caller with `ahead` callers (and places) ahead of it. */
void cc_wait_estimate(struct cc_engine *e, struct cc_queue *q, uint64_t ahead,
                      uint64_t now, struct cc_wait_est *w);
/* How many wait ahead of one joining q at level `level`. */
static inline uint64_t
cc_queue_ahead(const struct cc_queue *q, unsigned level) {
    uint64_t n = 0;
    unsigned k;

    for (k = level; k < QUEUE_LEVELS; k++)
        n += q->lcount[k];
    return n;
}
/* c's place in its queue, from 1 (a walk from the head, at most `cap`
 * steps: cap + 1 past it). */
uint64_t cc_queue_position(const struct cc_contact *c, uint64_t cap);
void cc_queue_remove(struct cc_contact *c);
/* Puts `place` where c is in its queue and takes c out. */
void cc_queue_swap(struct cc_contact *c, struct cc_contact *place);
/* The customer's phone number as received (empty: none). */
struct cc_str cc_contact_phone(const struct cc_contact *c);
/* conversation, contact, channel, customer, queue: 5 pairs. */
void cc_pack_contact_fields(struct cc_engine *e, msgpack_packer *pk,
                            const struct cc_contact *c);
/* The business hours callbacks on queue q keep to (its [callback]
 * calendar, else its phone answer clock's), or NULL (always). */
const struct cc_calendar *cc_engine_cb_calendar(struct cc_engine *e,
                                                const struct cc_queue *q);

/* callback.c */
int cc_cbs_init(struct cc_engine *e);
void cc_cbs_fini(struct cc_engine *e);
/* Points every queue at its callback policy (after a reconfigure). */
void cc_cbs_policies(struct cc_engine *e);
/* c joined its queue: the rules an offer at join may meet. */
void cc_cb_joined(struct cc_engine *e, struct cc_contact *c, uint64_t now);
/* c has waited [callback] offer_after_waiting. */
void cc_cb_waited(struct cc_engine *e, struct cc_contact *c, uint64_t now);
/* When c's waited rule falls due (CC_WHEEL_NEVER: none). */
uint64_t cc_cb_waited_due(const struct cc_engine *e,
                          const struct cc_contact *c);
/* c is leaving its queue unaccepted (why: answered, closed, ...): its
 * offer is withdrawn. */
void cc_cb_left(struct cc_engine *e, struct cc_contact *c, uint64_t now,
                const char *why, bool abandoned);
/* Something changed in q (a caller left, an agent's state): places whose
 * turn is within dial_lead are dialled. */
void cc_cb_queue_changed(struct cc_engine *e, struct cc_queue *q, uint64_t now);
/* callback.accepted for a queued caller: 0, or -1 with *rej and nothing
 * changed. On success c's place is taken by the callback's; the caller
 * takes c out of the queue's accounting. */
int cc_cb_accept(struct cc_engine *e, struct cc_contact *c,
                 const struct cc_event *ev, uint64_t now,
                 struct cc_reject *rej);
/* callback.declined, .completed, .failed, and callback.accepted for a
 * contact that is not queued; c is NULL when the contact is closed (h is
 * its hash). 0, or -1 with *rej and nothing changed. */
int cc_cb_event(struct cc_engine *e, struct cc_contact *c,
                const struct cc_event *ev, uint64_t h, uint64_t now,
                struct cc_reject *rej);
/* c accepted a callback and its conversation is known now (the event
 * was applied to it): the callback belongs to it. */
void cc_cb_accepted_conv(struct cc_engine *e, const struct cc_contact *c,
                         uint64_t now);
/* v was served (a contact other than c answered) or resolved: its pending
 * callbacks are cancelled. */
void cc_cb_served(struct cc_engine *e, struct cc_conv *v,
                  const struct cc_contact *c, uint64_t now, const char *why);
void cc_cb_pack_stats(const struct cc_engine *e, msgpack_packer *pk);
/* A queue's callback figures (one map). */
void cc_cb_pack_queue(const struct cc_queue *q, msgpack_packer *pk);
/* A place in the "next" list of the queue query: 5 pairs. */
void cc_cb_pack_place(struct cc_engine *e, msgpack_packer *pk,
                      const struct cc_contact *place);

/* Emits an identity.conflict alert for ev. */
void cc_conv_alert_conflict(struct cc_engine *e, const struct cc_contact *c,
                            const struct cc_event *ev,
                            const struct cc_idresult *res, const uint8_t *kinds,
                            const struct cc_str *norm, uint32_t n);

/* ---- snapshot support (snapshot.c) ------------------------------------ */

/* The callbacks of the engine's timers: a timer in the wheel is told apart
 * by its callback, which names the kind of record that holds it. */
struct cc__timer_cbs {
    cc_timer_cb sl, state, idle, conv, cb;
};
void cc__timer_cbs(struct cc__timer_cbs *out);
cc_timer_cb cc__conv_timer_cb(void); /* conversation.c */
cc_timer_cb cc__cb_timer_cb(void);   /* callback.c */
/* The conversation table's bucket for id, and the conversation of that id
 * itself (no forwarding of merged ids). */
uint64_t cc__conv_bucket(const struct cc_convs *cs, uint64_t id);
struct cc_conv *cc__conv_find_direct(const struct cc_engine *e, uint64_t id);
/* callback.c: the callback record of a contact key, or NULL; and the
 * table's doubling (CC_ENOMEM: it stays as it is), due once it holds as
 * many records as buckets. */
struct cc_callback *cc__cb_find(const struct cc_engine *e, unsigned channel,
                                const char *id, size_t n, uint64_t h);
int cc__cb_table_grow(struct cc_engine *e);

#endif
