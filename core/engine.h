/*
 * The engine: contactd's deterministic core. It takes decoded events and the
 * current time, updates its state, and writes what must leave (alerts,
 * callback triggers) into its outbox. It reads no clock, does no I/O and
 * holds no locks: the same inputs give the same outputs, live, in tests with
 * a manual clock, and in replay.
 *
 * It tracks every open contact per channel through its lifecycle, counts
 * events per channel and per type, ignores repeated event ids within a
 * bounded window, resolves the customer identifiers events carry into
 * customers (identity.h), follows each customer's conversation across
 * channels with its context, and runs its timed rules on a timing wheel:
 * the SLA answer and hold clocks, callback offers, contact expiry, and
 * conversations' idle close and reopen windows. docs/protocol.md describes
 * the rules.
 *
 * Every function runs on one thread (the loop thread in the daemon).
 */
#ifndef CC_ENGINE_H
#define CC_ENGINE_H

#include "cbconfig.h"
#include "cc.h"
#include "event.h"
#include "outbox.h"
#include "sla.h"

#include <msgpack.h>
#include <stdbool.h>

struct cc_engine_config {
    uint64_t hold_long_ms;    /* the built-in hold target when sla is NULL */
    uint64_t contact_idle_ms; /* a contact silent this long closes */
    uint64_t dedup_window;
    uint64_t max_contacts;
    uint64_t max_queues;
    uint64_t max_names;
    struct cc_channels channels;
    /* identity and conversations */
    unsigned default_country;   /* [identity] default_country */
    uint32_t max_identifiers;   /* per customer */
    uint64_t max_identities;    /* identifiers in all */
    uint64_t reopen_window_ms;  /* [conversation] reopen_window */
    uint64_t idle_close_ms;     /* [conversation] idle_close */
    uint64_t repeat_window_ms;  /* [conversation] repeat_window */
    uint64_t max_conversations; /* open and resolved-in-window */
    uint64_t thread_index;      /* native message ids remembered */
    uint64_t seed;              /* hash seed; does not change any output */
    /* SLA policies and calendars (copied; NULL: the built-in defaults) */
    const struct cc_sla_config *sla;
    /* [service_level] */
    uint32_t sl_target;     /* percent */
    uint32_t sl_window_min; /* minutes */
    uint32_t sl_hysteresis; /* percentage points */
    uint64_t sl_min_answered;
    uint64_t short_abandon_ms;
    /* [callback] and [callback.queue.*] (cc_cb_config_init()'s defaults) */
    struct cc_cb_config cb;
};

void cc_engine_config_defaults(struct cc_engine_config *c);

struct cc_engine;

/* Creates an engine whose clock starts at now (ms since the Unix epoch).
 * The caller frees it with cc_engine_free(). */
int cc_engine_new(struct cc_engine **out, const struct cc_engine_config *cfg,
                  uint64_t now);
void cc_engine_free(struct cc_engine *e);

/* Replaces the SLA policies and calendars. Running clocks take their new
 * schedules at once, from the stage after the last they fired. On error
 * (a calendar's zone will not load) nothing changes and err says why. */
int cc_engine_set_sla(struct cc_engine *e, const struct cc_sla_config *sla,
                      char *err, size_t errlen);

/* Applies the settings that can change while running (the callback
 * policies, contact expiry, the conversation windows, the service-level
 * alert's settings); armed timers keep their deadlines, new ones use the
 * new values (a waited-rule offer is made at its join plus the new wait,
 * or when its timer next fires if that is later; offers, places and
 * callbacks under way keep the deadlines they were given). The SLA policies,
 * the hold target among them, change with cc_engine_set_sla(). */
void cc_engine_reconfigure(struct cc_engine *e,
                           const struct cc_engine_config *cfg);

const struct cc_channels *cc_engine_channels(const struct cc_engine *e);

enum cc_verdict {
    CC_ACCEPTED,  /* applied */
    CC_DUPLICATE, /* an id seen within the window: ignored, not an error */
    CC_REJECTED   /* *rej says why; state is unchanged */
};

/* Applies one decoded event at time now. Fires timers due by now first. */
enum cc_verdict cc_engine_apply(struct cc_engine *e, const struct cc_event *ev,
                                uint64_t now, struct cc_reject *rej);

/* Counts a rejection made before the engine saw the event (decoding). */
void cc_engine_count_reject(struct cc_engine *e, enum cc_reason r);
/* Counts a message that was not MessagePack or was too large. */
void cc_engine_count_bad_message(struct cc_engine *e);

/* Advances the clock to now, firing every timed rule that fell due. */
void cc_engine_tick(struct cc_engine *e, uint64_t now);
/* When the engine next has timed work (ms), or UINT64_MAX. */
uint64_t cc_engine_next_deadline(const struct cc_engine *e);
/* The engine's clock: the latest time it was created or called with. */
uint64_t cc_engine_now(const struct cc_engine *e);

/* What the engine wants sent; the caller sends and then clears it. */
struct cc_outbox *cc_engine_outbox(struct cc_engine *e);

/*
 * One ingest message: decodes it, applies every event, and reports. The
 * report's arrays belong to the report and are reused by the next call.
 */
struct cc_ingest_rejection {
    uint32_t index;
    struct cc_reject rej;
};

struct cc_ingest_report {
    uint32_t events, accepted, duplicates, rejected;
    const char *error; /* whole message refused (not MessagePack, ...) */
    struct cc_ingest_rejection *rej;
    uint32_t rej_cap;
    /* Set want_context to have every accepted contact.open and message.in
     * that belongs to a conversation described in ctx: ncontext MessagePack
     * maps {index, conversation, context} packed back to back. */
    bool want_context;
    uint32_t ncontext;
    msgpack_sbuffer ctx;
};

void cc_ingest_report_fini(struct cc_ingest_report *r);
void cc_engine_ingest(struct cc_engine *e, const void *buf, size_t len,
                      uint64_t now, struct cc_ingest_report *rep);

/* Several messages in one call, each with its own report (reps[i] for
 * msgs[i]): the same result as one cc_engine_ingest() per message, in
 * order, but the engine overlaps the memory accesses of consecutive
 * events across message boundaries, which is what keeps one-event
 * messages fast when a million contacts are open. */
struct cc_msgbuf {
    const void *data;
    size_t len;
};
void cc_engine_ingest_many(struct cc_engine *e, const struct cc_msgbuf *msgs,
                           uint32_t n, uint64_t now,
                           struct cc_ingest_report *reps);

/*
 * The conversation of a customer, named by one identifier (kind and value
 * as received: it is normalised here), or by its id ("cv-12"). Packs the
 * full context as one map and returns 0, or returns CC_ENOENT (no such
 * conversation) or CC_EINVAL with *why saying what is wrong with the
 * identifier.
 */
int cc_engine_pack_conversation_by_ident(struct cc_engine *e,
                                         enum cc_ident_kind kind,
                                         struct cc_str value,
                                         msgpack_packer *pk, const char **why);
int cc_engine_pack_conversation_by_id(struct cc_engine *e, struct cc_str id,
                                      msgpack_packer *pk, const char **why);

/*
 * {"q":"sla","conversation":"cv-12"}: every running SLA clock of the
 * conversation's open contacts, with each stage's due time and whether it
 * fired. Returns 0, or CC_EINVAL / CC_ENOENT with *why.
 */
int cc_engine_pack_sla(struct cc_engine *e, struct cc_str conv,
                       msgpack_packer *pk, const char **why);
/*
 * {"q":"at_risk","queue":Q,"limit":N}: the clocks nearest to their breach,
 * soonest first, at most limit of them: the answer clocks of the callers
 * waiting in queue Q, and the running response and resolution clocks of
 * the conversations whose latest queue is Q (every queue when Q is empty).
 * CC_ENOENT with *why for an unknown queue.
 */
int cc_engine_pack_at_risk(struct cc_engine *e, struct cc_str queue,
                           uint32_t limit, msgpack_packer *pk,
                           const char **why);

/*
 * The same query in steps, so that the walk over every conversation need
 * not hold the loop: begin (CC_ENOENT or CC_ENOMEM with *why), step until
 * it returns true (each step walks at most `budget` of the conversation
 * table's buckets; events may be applied between steps), then end, which
 * packs the answer into pk (NULL: only frees the query). The conversations
 * found are read again at the end, as they stand (a merged one as its
 * survivor); one that closed, or whose clocks stopped, is left out, and
 * one that started or resumed a clock in a part of the table already
 * walked is missed.
 */
struct cc_at_risk;
#define CC_AT_RISK_STEP 16384 /* the daemon's budget per loop turn */
int cc_engine_at_risk_begin(struct cc_engine *e, struct cc_str queue,
                            uint32_t limit, struct cc_at_risk **out,
                            const char **why);
bool cc_engine_at_risk_step(struct cc_engine *e, struct cc_at_risk *q,
                            uint64_t budget);
void cc_engine_at_risk_end(struct cc_engine *e, struct cc_at_risk *q,
                           msgpack_packer *pk);

/*
 * {"q":"queue","queue":Q,"limit":N} or {"q":"queue","channel":C}: offered,
 * answered, answered within target, abandoned, short abandons, service
 * level (both forms) and average speed of answer over the last 15, 30 and
 * 60 minutes; for a queue also how many wait and for how long, its agents
 * by state, and the first `limit` callers in the order they will be
 * answered. CC_ENOENT / CC_EINVAL with *why.
 */
int cc_engine_pack_service_level(struct cc_engine *e, struct cc_str queue,
                                 struct cc_str channel, uint32_t limit,
                                 msgpack_packer *pk, const char **why);

/* Packs the engine's counters and gauges as one MessagePack map. */
void cc_engine_pack_stats(const struct cc_engine *e, msgpack_packer *pk);

struct cc_engine_counts {
    uint64_t open_contacts;
    uint64_t accepted, duplicates, rejected, implicit_opens;
    uint64_t alerts, callbacks;
    uint64_t contact_bytes; /* memory held for open contacts */
    uint64_t customers, identifiers, conversations;
    uint64_t conversations_open; /* of conversations, not resolved */
    uint64_t identity_bytes;     /* identifiers, links, customers, index */
    uint64_t conversation_bytes; /* conversations, histories, indexes */
    /* Events whose identifiers found the identity store full, and
     * conversations not started for want of room: both lose context,
     * never the event. */
    uint64_t identity_lost, conversations_refused;
};
void cc_engine_counts(const struct cc_engine *e, struct cc_engine_counts *c);

#endif
