/*
 * What every channel adapter shares: the event it builds, the batch it
 * hands to the engine, the answer it gets back, and the counters it keeps.
 *
 * An adapter turns one native protocol (AMI, a webhook, a mail file) into
 * core events of wire protocol v1. It packs them into a MessagePack batch
 * (struct cc_evbuf) and submits the batch through its host; the host runs
 * the same decode, validation and engine path as NNG ingest, so an event
 * from an adapter is checked and applied exactly like one from a platform.
 * An adapter knows its protocol and the event model, nothing else: not the
 * engine, not the loop's other sockets.
 */
#ifndef CC_ADAPTER_H
#define CC_ADAPTER_H

#include "cc.h"
#include "event.h"

#include <msgpack.h>

/* One core event. Strings are absent when their length is 0; type, id and
 * ts are required. ident[] uses the customer keys of the protocol (phone,
 * email, chat, social, crm) and is sent as they are: the engine
 * normalises them. */
#define CC_NEV_MAX_LIST 16
struct cc_nev {
    const char *type;    /* "contact.open", "message.in", ... */
    const char *channel; /* "phone", "chat", ... */
    struct cc_str id;
    int64_t ts; /* ms since the Unix epoch */
    struct cc_str contact, queue, agent, topic, reply_to, state, reason;
    struct cc_str ident[CC_IDENT__COUNT];
    int priority; /* 0-9, or -1 for none */
    const struct cc_str *queues;
    uint32_t nqueues; /* at most CC_NEV_MAX_LIST */
    const struct cc_str *tags;
    uint32_t ntags; /* at most CC_NEV_MAX_LIST */
};

/* A zeroed event with no priority. */
static inline void
cc_nev_init(struct cc_nev *ev) {
    memset(ev, 0, sizeof(*ev));
    ev->priority = -1;
}

static inline struct cc_str
cc_str_of(const char *s) {
    struct cc_str r = {s, s != NULL ? (uint32_t)strlen(s) : 0};
    return r;
}

/* A batch of events: one MessagePack array of maps, as NNG ingest takes. */
struct cc_evbuf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};

void cc_evbuf_init(struct cc_evbuf *b);
void cc_evbuf_fini(struct cc_evbuf *b);
/* Empties the batch; keeps its memory. */
void cc_evbuf_reset(struct cc_evbuf *b);
/* Appends one event. Strings longer than the protocol allows are packed as
 * they are: the engine rejects the event with the reason. */
void cc_evbuf_add(struct cc_evbuf *b, const struct cc_nev *ev);
/* The batch as one message; valid until the next add or reset. */
const void *cc_evbuf_msg(struct cc_evbuf *b, size_t *len);

/* What the host said about a submitted batch. */
struct cc_submit {
    uint32_t events, accepted, duplicates, rejected;
    /* Some events were refused for a configured limit or a lack of
     * memory: the sender should retry later (HTTP 503). */
    bool overloaded;
    const char *error; /* the whole message was refused, or NULL */
    bool too_big;      /* ...for being larger than [server] max_message */
    /* The first rejected event: its index, reason code and text. */
    uint32_t first_index;
    const char *first_code;
    char first_reason[192];
    /* Each rejected event's reason code, in order (at most 64 kept). */
    const char *codes[64];
    /* The journal record that holds the batch: the sender is answered (an
     * HTTP response, a mail moved to cur/) only once the host's durable
     * mark has passed it. 0: answer now. */
    uint64_t wait;
};

/* Fills out from the engine's report on one message (the shell's and the
 * tests' hosts). A rejection for a limit that passes by itself (open
 * contacts, memory) marks it overloaded; one for a limit that does not
 * ([limits] max_names, max_queues) is an ordinary rejection. */
struct cc_ingest_report;
void cc_submit_from_report(const struct cc_ingest_report *r,
                           struct cc_submit *out);

/* The host an adapter submits to. now() is the loop's wall clock (ms).
 * durable() is the journal's durable mark: every record below it is on
 * disk (NULL: a host without a journal, where nothing waits). When it
 * moves, the host calls the adapter's own "durable" function so that held
 * answers go. */
struct cc_adapter_host {
    void (*submit)(void *ctx, const void *msg, size_t len,
                   struct cc_submit *out);
    uint64_t (*now)(void *ctx);
    uint64_t (*durable)(void *ctx);
    void *ctx;
};

/* Whether an answer waiting for record wait may go now. */
static inline bool
cc_adapter_durable(const struct cc_adapter_host *h, uint64_t wait) {
    return wait == 0 || h->durable == NULL || wait < h->durable(h->ctx);
}

/* Counters every adapter reports in stats. received counts native units
 * (AMI events, HTTP requests, mail files); mapped, the core events the
 * engine accepted; ignored, native units with nothing for the engine;
 * rejected, native units or events refused, each under a reason. */
#define CC_ADAPTER_REASONS 32
struct cc_adapter_stats {
    uint64_t received, mapped, ignored, rejected, reconnects;
    uint32_t nreasons;
    struct {
        const char *reason; /* a static string */
        uint64_t n;
    } why[CC_ADAPTER_REASONS];
};

/* Counts one rejection under reason (a string with static lifetime; the
 * first CC_ADAPTER_REASONS - 1 distinct reasons get their own counter, the
 * rest go under "other"). */
void cc_adapter_reject(struct cc_adapter_stats *st, const char *reason);
/* The count under reason, or 0. */
uint64_t cc_adapter_rejected(const struct cc_adapter_stats *st,
                             const char *reason);
/* Adds a submission's outcome: accepted and duplicate events to mapped,
 * each rejected event to rejected under "event: <code>". */
void cc_adapter_count_submit(struct cc_adapter_stats *st,
                             const struct cc_submit *r);
/* Packs the counters as a map: received, mapped, ignored, rejected,
 * reconnects, and "reasons" {reason: n}. extra adds that many more
 * key/value pairs, which the caller packs next. */
void cc_adapter_pack_stats(const struct cc_adapter_stats *st,
                           msgpack_packer *pk, uint32_t extra);

/* Whether s, trimmed, is a phone number the engine can take: an optional
 * '+' and 7 to 15 digits, with spaces, '-', '.', '(' and ')' between.
 * PBXs and platforms send extensions, "anonymous" and "<unknown>" in the
 * same fields; an adapter leaves those out rather than have the whole
 * event rejected. */
bool cc_looks_like_phone(const char *s, size_t n);

#endif
