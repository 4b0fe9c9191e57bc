/*
 * Engine snapshots: a rich engine saved, restored and saved again gives the
 * same bytes and the same stats; an engine restored from a snapshot taken
 * in the middle of a long random stream of events and ticks emits, for the
 * rest of the stream, exactly what the original emits, in the same order,
 * and ends with the same state (at several cut points, and under a
 * configuration whose channels are numbered differently); damaged
 * snapshots (every truncation, thousands of byte flips) are refused with a
 * reason or give an engine that works; the file layer keeps two
 * snapshots, skips a damaged one for the one before with a log line, stops
 * at an unknown version, ignores temporary files; a big engine round-trips.
 * A journal written as the daemon writes it replays, from its start or
 * from a snapshot, to the state and the outputs live processing gave.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "config.h"
#include "crc32c.h"
#include "durable.h"
#include "engine.h"
#include "engine_int.h"
#include "journal.h"
#include "snapshot.h"
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

TestSuite(snapshot, .timeout = 600);

#define T0 1795168800000LL /* Friday 2026-11-20 10:00 UTC */
#define SEC 1000LL
#undef MIN /* <sys/param.h>'s, by way of durable.h and uv.h */
#define MIN 60000LL
#define HOUR 3600000LL

/* ---- growing byte buffers ------------------------------------------------ */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void
buf_add(struct buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        cr_assert_not_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void
buf_free(struct buf *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int
buf_write(void *ctx, const void *p, size_t n) {
    cr_assert_leq(n, (size_t)64 << 10, "pieces of at most 64 KiB");
    buf_add(ctx, p, n);
    return 0;
}

/* The engine's snapshot into b (emptied first). */
static void
save(const struct cc_engine *e, struct buf *b) {
    b->n = 0;
    cr_assert_eq(cc_engine_save(e, buf_write, b), 0);
}

static struct cc_engine *
restore(const struct cc_engine_config *c, const struct buf *b) {
    struct cc_engine *e = NULL;
    char err[512] = "";

    cr_assert_eq(cc_engine_restore(&e, c, b->p, b->n, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_not_null(e);
    return e;
}

static bool
same(const struct buf *a, const struct buf *b) {
    return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* The first byte where two buffers differ, for messages. */
static size_t
differ_at(const struct buf *a, const struct buf *b) {
    size_t i;
    for (i = 0; i < a->n && i < b->n && a->p[i] == b->p[i]; i++)
        ;
    return i;
}

/* ---- the configuration ----------------------------------------------------
 */

static const char *const CONFIG_TEXT =
    "[channels]\nextra = sms, whatsapp\n"
    "[sla.phone]\nanswer = 40s\nwarn = 50%\nescalate = +30s, +2m\n"
    "[sla.chat]\nfirst_response = 2m\nnext_response = 3m\nwarn = 50%, "
    "80%\nescalate = +100%\n"
    "[sla.chat.vip]\nfirst_response = 1m\n"
    "[sla.email]\nfirst_response = 20m\ncalendar = office\n"
    "[sla.sms]\nfirst_response = 5m\n"
    "[sla.any]\nresolution = 90m\nhold = 45s\n"
    "[calendar.office]\ntimezone = UTC\nmon = 09:00-17:00\ntue = "
    "09:00-17:00\nwed = 09:00-17:00\nthu = 09:00-17:00\nfri = "
    "09:00-17:00\n"
    "[callback]\noffer_when_position_over = 1\noffer_after_waiting = 40s\n"
    "reoffer_after = 50s\noffer_expires = 30s\ndial_lead = 2m\n"
    "max_pending = 6\nload_horizon = 0\npromise_margin = 2m\n"
    "promise_max = 10m\nretry_delay = 40s\nmax_attempts = 2\n"
    "outcome_wait = 3m\n";

/* An engine configuration from CONFIG_TEXT with extra text appended
 * (another [channels] line replaces the first). The SLA policies live in
 * *keep, which the caller frees after creating the engine. */
static void
make_config(struct cc_engine_config *c, const char *extra,
            struct cc_config **keep) {
    struct cc_config *cfg = calloc(1, sizeof(*cfg));
    char text[8192], err[512] = "";

    cr_assert_not_null(cfg);
    snprintf(text, sizeof(text), "%s%s", CONFIG_TEXT, extra ? extra : "");
    cc_config_defaults(cfg);
    cr_assert_eq(cc_config_load_string(cfg, text, "t", err, sizeof(err)), 0,
                 "%s", err);
    cc_engine_config_defaults(c);
    c->channels = cfg->channels;
    c->sla = &cfg->sla;
    c->cb = cfg->cb;
    c->dedup_window = 300;
    c->max_contacts = 300;
    c->max_queues = 16;
    c->max_names = 500;
    c->contact_idle_ms = 2 * HOUR;
    c->max_identifiers = 5;
    c->max_identities = 2000;
    c->reopen_window_ms = 1 * HOUR;
    c->idle_close_ms = 3 * HOUR;
    c->repeat_window_ms = 30 * MIN;
    c->max_conversations = 1000;
    c->thread_index = 40;
    c->seed = 0x1234567890abcdefULL;
    c->sl_target = 80;
    c->sl_window_min = 60;
    c->sl_min_answered = 1;
    c->sl_hysteresis = 5;
    c->short_abandon_ms = 5000;
    *keep = cfg;
}

/* ---- events ------------------------------------------------------------- */

struct ev {
    const char *type, *channel;
    char id[48], contact[48], queue[24], agent[24], reply_to[48], topic[24];
    char reason[24], state[16];
    const char *scale;
    int64_t ts, at, wrapup;
    int prio;  /* -1: none */
    int score; /* -1: none */
    int ncust;
    const char *ckey[5];
    char cval[5][48];
    int ntags;
    char tags[3][16];
    int nq; /* -1: no queues key */
    char queues[3][24];
    bool has_sentiment;
    double sentiment;
};

static void
pk_kv(msgpack_packer *pk, const char *k, const char *v) {
    cc_pack_str(pk, k);
    cc_pack_str(pk, v);
}

static void
pk_kvi(msgpack_packer *pk, const char *k, int64_t v) {
    cc_pack_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static void
pack_ev(msgpack_packer *pk, const struct ev *e) {
    uint32_t n = 4;
    int i;

    n += e->contact[0] != 0;
    n += e->queue[0] != 0;
    n += e->agent[0] != 0;
    n += e->reply_to[0] != 0;
    n += e->topic[0] != 0;
    n += e->reason[0] != 0;
    n += e->state[0] != 0;
    n += e->scale != NULL;
    n += e->at != 0;
    n += e->wrapup != 0;
    n += e->prio >= 0;
    n += e->score >= 0;
    n += e->ncust > 0;
    n += e->ntags > 0;
    n += e->nq >= 0;
    n += e->has_sentiment;
    msgpack_pack_map(pk, n);
    pk_kv(pk, "id", e->id);
    pk_kvi(pk, "ts", e->ts);
    pk_kv(pk, "channel", e->channel);
    pk_kv(pk, "type", e->type);
    if (e->contact[0])
        pk_kv(pk, "contact", e->contact);
    if (e->queue[0])
        pk_kv(pk, "queue", e->queue);
    if (e->agent[0])
        pk_kv(pk, "agent", e->agent);
    if (e->reply_to[0])
        pk_kv(pk, "reply_to", e->reply_to);
    if (e->topic[0])
        pk_kv(pk, "topic", e->topic);
    if (e->reason[0])
        pk_kv(pk, "reason", e->reason);
    if (e->state[0])
        pk_kv(pk, "state", e->state);
    if (e->scale != NULL)
        pk_kv(pk, "scale", e->scale);
    if (e->at != 0)
        pk_kvi(pk, "at", e->at);
    if (e->wrapup != 0)
        pk_kvi(pk, "wrapup_ms", e->wrapup);
    if (e->prio >= 0)
        pk_kvi(pk, "priority", e->prio);
    if (e->score >= 0)
        pk_kvi(pk, "score", e->score);
    if (e->ncust > 0) {
        cc_pack_str(pk, "customer");
        msgpack_pack_map(pk, (uint32_t)e->ncust);
        for (i = 0; i < e->ncust; i++)
            pk_kv(pk, e->ckey[i], e->cval[i]);
    }
    if (e->ntags > 0) {
        cc_pack_str(pk, "tags");
        msgpack_pack_array(pk, (uint32_t)e->ntags);
        for (i = 0; i < e->ntags; i++)
            cc_pack_str(pk, e->tags[i]);
    }
    if (e->nq >= 0) {
        cc_pack_str(pk, "queues");
        msgpack_pack_array(pk, (uint32_t)e->nq);
        for (i = 0; i < e->nq; i++)
            cc_pack_str(pk, e->queues[i]);
    }
    if (e->has_sentiment) {
        cc_pack_str(pk, "sentiment");
        msgpack_pack_double(pk, e->sentiment);
    }
}

/* ---- a random stream -------------------------------------------------------
 */

static uint64_t
rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned
pick(uint64_t *s, unsigned n) {
    return (unsigned)(rnd(s) % n);
}

/* One call: an ingest message (one event or a batch) at now, or a tick. */
struct step {
    uint64_t now;
    bool tick;
    uint8_t *msg;
    size_t len;
};

#define SLOTS 36
#define CUSTOMERS 24

static const char *const CHANNELS[] = {"phone",  "chat", "email",
                                       "social", "sms",  "whatsapp"};
static const char *const QUEUES[] = {"sales", "support", "billing", "vip"};
static const char *const AGENTS[] = {"ann", "bob", "cy", "dee", "eve"};
static const char *const STATES[] = {"available", "busy", "away", "offline"};
static const char *const TAGS[] = {"vip", "complaint", "refund", "new"};

struct gen {
    uint64_t rng, now;
    unsigned seq;
    unsigned slot_ch[SLOTS], slot_gen[SLOTS];
    char msgids[16][48]; /* recent email and social message ids */
    unsigned nmsg;
    unsigned joined[8], njoined;     /* slots that joined a phone queue */
    unsigned accepted[8], naccepted; /* slots that accepted a callback */
};

/* One of customer k's identifiers, kind 0-4. */
static void
cust_ident(struct ev *e, unsigned k, unsigned kind) {
    static const char *const keys[] = {"phone", "email", "chat", "social",
                                       "crm"};
    int i = e->ncust;
    int j;

    for (j = 0; j < i; j++)
        if (strcmp(e->ckey[j], keys[kind]) == 0)
            return; /* one of each kind per event */
    e->ckey[i] = keys[kind];
    switch (kind) {
    case 0:
        snprintf(e->cval[i], sizeof(e->cval[i]), "+1555010%04u", k);
        break;
    case 1:
        snprintf(e->cval[i], sizeof(e->cval[i]), "user%u@example.com", k);
        break;
    case 2:
        snprintf(e->cval[i], sizeof(e->cval[i]), "chat-%u", k);
        break;
    case 3:
        snprintf(e->cval[i], sizeof(e->cval[i]), "twitter:user%u", k);
        break;
    default:
        snprintf(e->cval[i], sizeof(e->cval[i]), "crm-%u", k);
        break;
    }
    e->ncust++;
}

static void
gen_event(struct gen *g, struct ev *e) {
    uint64_t *r = &g->rng;
    unsigned slot = pick(r, SLOTS), k = pick(r, 100), ch;

    memset(e, 0, sizeof(*e));
    e->prio = -1;
    e->score = -1;
    e->nq = -1;
    snprintf(e->id, sizeof(e->id), "ev-%u", ++g->seq);
    /* Mostly on time, some a little late, a few much later. */
    e->ts = (int64_t)g->now - (int64_t)pick(r, 3000);
    if (pick(r, 20) == 0)
        e->ts -= (int64_t)pick(r, 20) * MIN;
    /* Callback events and answers mostly name callers that could have
     * one (answers make the service levels). */
    if (((k >= 86 && k < 93) || (k >= 48 && k < 56)) && g->njoined > 0 &&
        pick(r, 5) != 0)
        slot = g->joined[pick(r, g->njoined < 8 ? g->njoined : 8)];
    if (k >= 93 && g->naccepted > 0 && pick(r, 5) != 0)
        slot = g->accepted[pick(r, g->naccepted < 8 ? g->naccepted : 8)];
    ch = g->slot_ch[slot];
    e->channel = CHANNELS[ch];
    if (slot % 7 == 3) /* a long id, kept out of line */
        snprintf(e->contact, sizeof(e->contact),
                 "%s-a-rather-long-contact-identifier-%u-%u", CHANNELS[ch],
                 slot, g->slot_gen[slot]);
    else
        snprintf(e->contact, sizeof(e->contact), "%s-%u-%u", CHANNELS[ch], slot,
                 g->slot_gen[slot]);
    if (k < 12) {
        e->type = "contact.open";
        if (pick(r, 4) != 0) {
            unsigned c = pick(r, CUSTOMERS), n = 1 + pick(r, 2), i;
            for (i = 0; i < n; i++)
                cust_ident(e, pick(r, 6) == 0 ? pick(r, CUSTOMERS) : c,
                           i == 0 && ch == 0 ? 0 : pick(r, 5));
        }
    } else if (k < 30) {
        e->type = pick(r, 2) ? "message.in" : "message.out";
        if (e->type[8] == 'o')
            snprintf(e->agent, sizeof(e->agent), "%s", AGENTS[pick(r, 5)]);
        if (pick(r, 3) == 0)
            cust_ident(e, pick(r, CUSTOMERS), pick(r, 5));
        if ((ch == 2 || ch == 3) && g->nmsg > 0 && pick(r, 2) == 0)
            snprintf(e->reply_to, sizeof(e->reply_to), "%s",
                     g->msgids[pick(r, g->nmsg < 16 ? g->nmsg : 16)]);
        if (pick(r, 6) == 0) {
            e->ntags = 1 + (int)pick(r, 2);
            snprintf(e->tags[0], sizeof(e->tags[0]), "%s", TAGS[pick(r, 4)]);
            snprintf(e->tags[1], sizeof(e->tags[1]), "%s", TAGS[pick(r, 4)]);
        }
        if (pick(r, 8) == 0)
            snprintf(e->topic, sizeof(e->topic), "topic-%u", pick(r, 5));
        if (pick(r, 8) == 0) {
            e->has_sentiment = true;
            e->sentiment = ((double)pick(r, 201) - 100.0) / 100.0;
        }
    } else if (k < 44) {
        e->type = "queue.join";
        snprintf(e->queue, sizeof(e->queue), "%s", QUEUES[pick(r, 4)]);
        if (pick(r, 3) == 0)
            e->prio = (int)pick(r, 10);
        if (pick(r, 2) == 0)
            cust_ident(e, pick(r, CUSTOMERS), 0);
        if (ch == 0)
            g->joined[g->njoined++ % 8] = slot;
    } else if (k < 48) {
        e->type = "queue.leave";
    } else if (k < 56) {
        e->type = "agent.answer";
        snprintf(e->agent, sizeof(e->agent), "%s", AGENTS[pick(r, 5)]);
    } else if (k < 59) {
        e->type = "hold.start";
    } else if (k < 62) {
        e->type = "hold.end";
    } else if (k < 65) {
        e->type = "transfer";
        if (pick(r, 2))
            snprintf(e->queue, sizeof(e->queue), "%s", QUEUES[pick(r, 4)]);
        else
            snprintf(e->agent, sizeof(e->agent), "%s", AGENTS[pick(r, 5)]);
        if (pick(r, 3) == 0)
            e->prio = (int)pick(r, 10);
    } else if (k < 72) {
        e->type = "contact.close";
        if (pick(r, 3) == 0)
            e->wrapup = (int64_t)pick(r, 60) * SEC;
        g->slot_gen[slot]++;
        if (pick(r, 3) == 0)
            g->slot_ch[slot] = pick(r, 6);
    } else if (k < 75) {
        e->type = "conversation.resolve";
        if (pick(r, 3) == 0) {
            e->contact[0] = '\0';
            cust_ident(e, pick(r, CUSTOMERS), pick(r, 5));
        }
    } else if (k < 79) {
        unsigned i;
        e->type = "agent.status";
        e->contact[0] = '\0';
        e->channel = "phone";
        snprintf(e->agent, sizeof(e->agent), "%s", AGENTS[pick(r, 5)]);
        snprintf(e->state, sizeof(e->state), "%s", STATES[pick(r, 4)]);
        if (pick(r, 2)) {
            e->nq = 1 + (int)pick(r, 3);
            for (i = 0; i < (unsigned)e->nq; i++)
                snprintf(e->queues[i], sizeof(e->queues[i]), "%s",
                         QUEUES[pick(r, 4)]);
        }
    } else if (k < 83) {
        unsigned a = pick(r, CUSTOMERS), b = pick(r, CUSTOMERS);
        e->type = "identity.link";
        e->contact[0] = '\0';
        cust_ident(e, a, pick(r, 5));
        cust_ident(e, b, pick(r, 5));
    } else if (k < 85) {
        unsigned a = pick(r, CUSTOMERS);
        e->type = "identity.unlink";
        e->contact[0] = '\0';
        cust_ident(e, a, pick(r, 5));
        cust_ident(e, pick(r, 3) ? a : pick(r, CUSTOMERS), pick(r, 5));
    } else if (k < 86) { /* 85 */
        e->type = "feedback";
        e->scale = pick(r, 2) ? "csat" : "nps";
        e->score = (int)(e->scale[0] == 'c' ? 1 + pick(r, 5) : pick(r, 11));
        if (pick(r, 3) == 0) {
            e->contact[0] = '\0';
            cust_ident(e, pick(r, CUSTOMERS), pick(r, 5));
        }
    } else if (k < 91) {
        e->type = "callback.accepted";
        if (pick(r, 3) == 0)
            e->at = e->ts + (int64_t)(1 + pick(r, 30)) * MIN;
        g->accepted[g->naccepted++ % 8] = slot;
    } else if (k < 93) {
        e->type = "callback.declined";
    } else if (k < 97) {
        e->type = "callback.completed";
    } else {
        e->type = "callback.failed";
        snprintf(e->reason, sizeof(e->reason), "%s",
                 pick(r, 2) ? "busy" : "no_answer");
    }
    /* Threaded channels remember message ids. */
    if ((ch == 2 || ch == 3) && e->contact[0] &&
        (strcmp(e->type, "contact.open") == 0 ||
         strncmp(e->type, "message.", 8) == 0)) {
        snprintf(g->msgids[g->nmsg % 16], sizeof(g->msgids[0]), "%s", e->id);
        g->nmsg++;
    }
}

/* A stream of n calls. */
static struct step *
make_stream(uint64_t seed, unsigned n) {
    struct step *st = calloc(n, sizeof(*st));
    struct gen g;
    struct ev ev;
    unsigned i, j;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct ev sent[64];
    unsigned nsent = 0;

    cr_assert_not_null(st);
    memset(&g, 0, sizeof(g));
    g.rng = seed;
    g.now = (uint64_t)T0;
    for (i = 0; i < SLOTS; i++)
        g.slot_ch[i] = i % 6;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (i = 0; i < n; i++) {
        unsigned a = pick(&g.rng, 100);
        /* Time goes on: mostly seconds, sometimes minutes, now and then
         * hours (timers fire in bulk). */
        if (a < 70)
            g.now += pick(&g.rng, 20 * SEC);
        else if (a < 97)
            g.now += pick(&g.rng, 10 * MIN);
        else
            g.now += pick(&g.rng, 5 * HOUR);
        st[i].now = g.now;
        if (pick(&g.rng, 10) < 3) {
            st[i].tick = true;
            continue;
        }
        msgpack_sbuffer_clear(&sb);
        if (pick(&g.rng, 25) == 0 && nsent > 0) {
            /* A producer's retry: the same event again. */
            pack_ev(&pk, &sent[pick(&g.rng, nsent)]);
        } else if (pick(&g.rng, 8) == 0) {
            unsigned m = 2 + pick(&g.rng, 3);
            msgpack_pack_array(&pk, m);
            for (j = 0; j < m; j++) {
                gen_event(&g, &ev);
                pack_ev(&pk, &ev);
                sent[nsent++ % 64] = ev;
                if (nsent > 64)
                    nsent = 64;
            }
        } else {
            gen_event(&g, &ev);
            pack_ev(&pk, &ev);
            sent[nsent++ % 64] = ev;
            if (nsent > 64)
                nsent = 64;
        }
        st[i].msg = malloc(sb.size);
        cr_assert_not_null(st[i].msg);
        memcpy(st[i].msg, sb.data, sb.size);
        st[i].len = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    return st;
}

static void
free_stream(struct step *st, unsigned n) {
    unsigned i;
    for (i = 0; i < n; i++)
        free(st[i].msg);
    free(st);
}

/* Moves what the outbox holds to out (kind, length, bytes each). */
static void
take_outbox(struct cc_engine *e, struct buf *out) {
    struct cc_outbox *ob = cc_engine_outbox(e);
    uint32_t i;

    for (i = 0; i < ob->n; i++) {
        buf_add(out, &ob->v[i].kind, sizeof(ob->v[i].kind));
        buf_add(out, &ob->v[i].len, sizeof(ob->v[i].len));
        buf_add(out, cc_outbox_data(ob, &ob->v[i]), ob->v[i].len);
    }
    cc_outbox_clear(ob);
}

/* Runs one call and appends what it said to out: the ingest report and
 * every record of the outbox (which it then clears). */
static void
run_step(struct cc_engine *e, const struct step *s, struct buf *out) {
    uint32_t i;

    if (s->tick) {
        cc_engine_tick(e, s->now);
        buf_add(out, "T", 1);
    } else {
        struct cc_ingest_report rep;
        uint32_t head[4];
        memset(&rep, 0, sizeof(rep));
        cc_engine_ingest(e, s->msg, s->len, s->now, &rep);
        head[0] = rep.events;
        head[1] = rep.accepted;
        head[2] = rep.duplicates;
        head[3] = rep.rejected;
        buf_add(out, head, sizeof(head));
        for (i = 0; i < rep.rejected; i++) {
            buf_add(out, &rep.rej[i].index, sizeof(rep.rej[i].index));
            buf_add(out, &rep.rej[i].rej.code, sizeof(rep.rej[i].rej.code));
        }
        cc_ingest_report_fini(&rep);
    }
    take_outbox(e, out);
}

/* What the engine answers to every query, into out. */
static void
query_all(struct cc_engine *e, struct buf *out) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const char *why;
    unsigned i;
    uint64_t id;
    char name[32];

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cc_engine_pack_stats(e, &pk);
    for (i = 0; i < 4; i++) {
        (void)cc_engine_pack_service_level(
            e, (struct cc_str){QUEUES[i], (uint32_t)strlen(QUEUES[i])},
            (struct cc_str){NULL, 0}, 20, &pk, &why);
        (void)cc_engine_pack_at_risk(
            e, (struct cc_str){QUEUES[i], (uint32_t)strlen(QUEUES[i])}, 20, &pk,
            &why);
    }
    for (i = 0; i < 6; i++)
        (void)cc_engine_pack_service_level(
            e, (struct cc_str){NULL, 0},
            (struct cc_str){CHANNELS[i], (uint32_t)strlen(CHANNELS[i])}, 20,
            &pk, &why);
    (void)cc_engine_pack_at_risk(e, (struct cc_str){NULL, 0}, 50, &pk, &why);
    for (id = 1; id <= e->convs.next_id; id++) {
        int n = snprintf(name, sizeof(name), "cv-%llu", (unsigned long long)id);
        struct cc_str s = {name, (uint32_t)n};
        (void)cc_engine_pack_conversation_by_id(e, s, &pk, &why);
        (void)cc_engine_pack_sla(e, s, &pk, &why);
    }
    buf_add(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* What a stream has shown of the engine's states, at the cut points. */
struct seen {
    uint64_t cstate[CS__COUNT], cbstate[6], places, resolved, merged_convs;
    uint64_t merges, splits, conflicts, expired_list, threads, forwards;
    uint64_t agents, held_with_clock, long_ids, prio_queued, sl_alerts;
    uint64_t dedup, scheduled_offers;
};

static void
note_state(const struct cc_engine *e, struct seen *s) {
    const struct cc_callback *cb;
    uint64_t i;
    unsigned k;

    for (k = 0; k < CS__COUNT; k++)
        s->cstate[k] += e->by_state[k];
    for (i = 0; i <= e->cbs.mask; i++)
        for (cb = e->cbs.buckets[i]; cb != NULL; cb = cb->hnext)
            s->cbstate[cb->state]++;
    for (i = 0; i < e->nqueues; i++)
        s->places += e->queues[i]->places;
    s->resolved += e->convs.resolved_now;
    s->merged_convs += e->convs.merges;
    s->merges += e->ident.merges;
    s->splits += e->ident.splits;
    s->conflicts += e->ident.conflicts;
    s->expired_list += e->wheel.expired != NULL;
    s->threads += e->convs.threads.count;
    s->forwards += e->convs.forward.count;
    s->agents += e->nagents;
    for (i = 0; i <= e->bucket_mask; i++) {
        const struct cc_contact *c;
        for (c = e->buckets[i]; c != NULL; c = c->hnext) {
            s->held_with_clock += c->state == CS_HELD && c->sla_sched != 0;
            s->long_ids += c->id_len > CONTACT_ID_INLINE;
            s->prio_queued += c->state == CS_QUEUED && c->prio1 > 1;
        }
    }
    s->sl_alerts += e->alerts_sl;
    s->dedup += e->dedup.count;
}

/* ---- round trip ------------------------------------------------------------
 */

Test(snapshot, round_trip_rich_engine) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *a, *b;
    struct buf s1 = {0}, s2 = {0}, q1 = {0}, q2 = {0}, out = {0};
    struct step *st;
    struct seen seen;
    unsigned n = 5000, i;
    uint64_t seed;

    make_config(&c, NULL, &keep);
    memset(&seen, 0, sizeof(seen));
    for (seed = 42; seed < 45; seed++) {
        cr_assert_eq(cc_engine_new(&a, &c, (uint64_t)T0), 0);
        st = make_stream(seed, n);
        for (i = 0; i < n; i++) {
            run_step(a, &st[i], &out);
            /* Often, so that every state below goes through a round
             * trip. */
            if (i % 20 != 19)
                continue;
            note_state(a, &seen);
            save(a, &s1);
            b = restore(&c, &s1);
            save(b, &s2);
            cr_assert(same(&s1, &s2),
                      "seed %llu step %u: %zu and %zu bytes, differ at %zu",
                      (unsigned long long)seed, i, s1.n, s2.n,
                      differ_at(&s1, &s2));
            q1.n = q2.n = 0;
            query_all(a, &q1);
            query_all(b, &q2);
            cr_assert(same(&q1, &q2),
                      "seed %llu step %u: queries differ at byte %zu",
                      (unsigned long long)seed, i, differ_at(&q1, &q2));
            cc_engine_free(b);
        }
        cc_engine_free(a);
        free_stream(st, n);
    }
    /* The stream reached every state the snapshot must carry. */
    for (i = 0; i < CS__COUNT; i++)
        cr_expect_gt(seen.cstate[i], 0, "contacts in state %u", i);
    for (i = 0; i < 6; i++)
        cr_expect_gt(seen.cbstate[i], 0, "callbacks in state %u", i);
    cr_expect_gt(seen.places, 0);
    cr_expect_gt(seen.resolved, 0);
    cr_expect_gt(seen.merged_convs, 0);
    cr_expect_gt(seen.merges, 0);
    cr_expect_gt(seen.splits, 0);
    cr_expect_gt(seen.conflicts, 0);
    cr_expect_gt(seen.threads, 0);
    cr_expect_gt(seen.forwards, 0);
    cr_expect_gt(seen.agents, 0);
    cr_expect_gt(seen.held_with_clock, 0);
    cr_expect_gt(seen.long_ids, 0);
    cr_expect_gt(seen.prio_queued, 0);
    cr_expect_gt(seen.sl_alerts, 0);
    cr_expect_gt(seen.dedup, 0);
    free(keep);
    buf_free(&s1);
    buf_free(&s2);
    buf_free(&q1);
    buf_free(&q2);
    buf_free(&out);
}

/* ---- the key test: a restored engine goes on as the original ------------- */

static void
continue_from_cuts(uint64_t seed, unsigned n, const unsigned *cuts,
                   unsigned ncuts, const char *restore_extra,
                   void (*tweak)(struct cc_engine_config *)) {
    struct cc_engine_config c, rc;
    struct cc_config *keep, *rkeep = NULL;
    struct cc_engine *a, *b;
    struct buf snap[8], log_a = {0}, log_b = {0}, fa = {0}, fb = {0};
    struct buf qa = {0}, qb = {0};
    size_t mark[8];
    struct step *st;
    unsigned i, k;

    cr_assert_leq(ncuts, 8);
    memset(snap, 0, sizeof(snap));
    make_config(&c, NULL, &keep);
    if (restore_extra != NULL)
        make_config(&rc, restore_extra, &rkeep);
    else
        rc = c;
    if (tweak != NULL)
        tweak(&rc);
    cr_assert_eq(cc_engine_new(&a, &c, (uint64_t)T0), 0);
    st = make_stream(seed, n);
    for (i = 0, k = 0; i < n; i++) {
        if (k < ncuts && cuts[k] == i) {
            save(a, &snap[k]);
            mark[k] = log_a.n;
            k++;
        }
        run_step(a, &st[i], &log_a);
    }
    save(a, &fa);
    query_all(a, &qa);
    for (k = 0; k < ncuts; k++) {
        b = restore(&rc, &snap[k]);
        log_b.n = 0;
        for (i = cuts[k]; i < n; i++)
            run_step(b, &st[i], &log_b);
        cr_assert_eq(log_b.n, log_a.n - mark[k],
                     "cut %u: the outputs after it differ in length", cuts[k]);
        cr_assert(memcmp(log_b.p, log_a.p + mark[k], log_b.n) == 0,
                  "cut %u: the outputs after it differ", cuts[k]);
        if (restore_extra == NULL && tweak == NULL) {
            save(b, &fb);
            cr_assert(same(&fa, &fb),
                      "cut %u: final states differ at byte %zu of %zu", cuts[k],
                      differ_at(&fa, &fb), fa.n);
            qb.n = 0;
            query_all(b, &qb);
            cr_assert(same(&qa, &qb), "cut %u: queries differ at byte %zu",
                      cuts[k], differ_at(&qa, &qb));
        }
        cc_engine_free(b);
    }
    cc_engine_free(a);
    free(keep);
    free(rkeep);
    free_stream(st, n);
    for (k = 0; k < ncuts; k++)
        buf_free(&snap[k]);
    buf_free(&log_a);
    buf_free(&log_b);
    buf_free(&fa);
    buf_free(&fb);
    buf_free(&qa);
    buf_free(&qb);
}

Test(snapshot, restored_engine_continues_as_the_original) {
    static const unsigned cuts[] = {0, 1, 377, 1500, 2999, 4200, 5999};
    continue_from_cuts(7, 6000, cuts, CC_ARRAY_SIZE(cuts), NULL, NULL);
}

Test(snapshot, restored_engine_continues_other_streams) {
    static const unsigned cuts[] = {250, 2000, 3333};
    uint64_t seed;

    for (seed = 100; seed < 104; seed++)
        continue_from_cuts(seed, 4000, cuts, CC_ARRAY_SIZE(cuts), NULL, NULL);
}

/* Channels matched by name: the restoring configuration numbers them
 * differently (and has one more); the outputs are the same. */
Test(snapshot, channels_matched_by_name) {
    static const unsigned cuts[] = {800, 2500};
    continue_from_cuts(11, 3000, cuts, CC_ARRAY_SIZE(cuts),
                       "[channels]\nextra = fax, whatsapp, sms\n", NULL);
}

/* Tables of other sizes: references to contacts name places in the
 * saving engine's table, which is then larger or smaller than ours. */
static void
smaller_tables(struct cc_engine_config *c) {
    c->max_contacts = 60; /* the stream keeps at most about 40 open */
    c->max_conversations = 400;
    c->max_identities = 500;
}

static void
larger_tables(struct cc_engine_config *c) {
    c->max_contacts *= 8;
    c->max_conversations *= 4;
    c->max_identities *= 4;
}

Test(snapshot, tables_of_other_sizes) {
    static const unsigned cuts[] = {900, 2600};
    continue_from_cuts(13, 3000, cuts, CC_ARRAY_SIZE(cuts), NULL,
                       smaller_tables);
    continue_from_cuts(13, 3000, cuts, CC_ARRAY_SIZE(cuts), NULL,
                       larger_tables);
    continue_from_cuts(13, 3000, cuts, CC_ARRAY_SIZE(cuts),
                       "[channels]\nextra = whatsapp, sms\n", smaller_tables);
}

/* ---- what a restore refuses ------------------------------------------------
 */

/* An engine with a little of everything, and its snapshot. */
static struct cc_engine *
small_engine(struct cc_engine_config *c, struct cc_config **keep,
             struct buf *snap, unsigned n) {
    struct cc_engine *e;
    struct step *st;
    struct buf out = {0};
    unsigned i;

    make_config(c, NULL, keep);
    cr_assert_eq(cc_engine_new(&e, c, (uint64_t)T0), 0);
    st = make_stream(5, n);
    for (i = 0; i < n; i++)
        run_step(e, &st[i], &out);
    /* And a few contacts open for sure, one queued, with customers. */
    for (i = 0; i < 3; i++) {
        struct step x = {st[n - 1].now + 1000 * (i + 1), false, NULL, 0};
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct ev ev;
        memset(&ev, 0, sizeof(ev));
        ev.prio = ev.score = ev.nq = -1;
        ev.type = i == 2 ? "queue.join" : "contact.open";
        ev.channel = "phone";
        ev.ts = (int64_t)x.now;
        snprintf(ev.id, sizeof(ev.id), "keep-%u", i);
        snprintf(ev.contact, sizeof(ev.contact), "keep-call-%u", i);
        if (i == 2)
            snprintf(ev.queue, sizeof(ev.queue), "sales");
        cust_ident(&ev, 100 + i, 0);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_ev(&pk, &ev);
        x.msg = (uint8_t *)sb.data;
        x.len = sb.size;
        run_step(e, &x, &out);
        msgpack_sbuffer_destroy(&sb);
    }
    free_stream(st, n);
    buf_free(&out);
    save(e, snap);
    return e;
}

Test(snapshot, refuses_what_the_configuration_cannot_hold) {
    struct cc_engine_config c, c2;
    struct cc_config *keep, *keep2;
    struct cc_engine *e, *b = NULL;
    struct buf snap = {0};
    char err[512];

    e = small_engine(&c, &keep, &snap, 600);
    cr_assert_gt(e->open_contacts, 2);
    /* A channel gone. */
    make_config(&c2, "[channels]\nextra = sms\n", &keep2);
    cr_assert_eq(cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)),
                 CC_EINVAL);
    cr_assert_null(b);
    cr_assert(strstr(err, "channel 'whatsapp' is no longer configured"), "%s",
              err);
    free(keep2);
    /* Limits lowered below what it holds. */
    c2 = c;
    c2.max_contacts = e->open_contacts - 1;
    cr_assert_eq(cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)),
                 CC_ELIMIT);
    cr_assert(strstr(err, "max_contacts"), "%s", err);
    c2 = c;
    c2.max_queues = 1;
    cr_assert_eq(cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)),
                 CC_ELIMIT);
    cr_assert(strstr(err, "max_queues"), "%s", err);
    c2 = c;
    c2.max_identities = 16;
    cr_assert_eq(cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)),
                 CC_ELIMIT);
    cr_assert(strstr(err, "max_identities"), "%s", err);
    /* More limits, larger: fine, and the same state. */
    c2 = c;
    c2.max_contacts *= 4;
    c2.max_conversations *= 3;
    c2.max_identities *= 2;
    c2.seed = 99; /* the snapshot's seed wins */
    {
        struct buf again = {0};
        cr_assert_eq(
            cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)), 0,
            "%s", err);
        cr_assert_eq(b->cfg.seed, c.seed);
        cr_assert_eq(b->open_contacts, e->open_contacts);
        cr_assert_eq(b->convs.open, e->convs.open);
        cr_assert_eq(b->ident.nodes, e->ident.nodes);
        save(b, &again);
        cr_assert_gt(again.n, 0);
        cc_engine_free(b);
        buf_free(&again);
    }
    cc_engine_free(e);
    free(keep);
    buf_free(&snap);
}

/* A gone calendar that running clocks count in refuses the restore. */
Test(snapshot, refuses_a_missing_calendar) {
    struct cc_engine_config c, c2;
    struct cc_config *keep, *keep2;
    struct cc_engine *e, *b = NULL;
    struct buf snap = {0};
    char err[512];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct cc_ingest_report rep;
    struct ev ev;

    make_config(&c, NULL, &keep);
    cr_assert_eq(cc_engine_new(&e, &c, (uint64_t)T0), 0);
    memset(&ev, 0, sizeof(ev));
    ev.type = "message.in";
    ev.channel = "email";
    ev.prio = ev.score = ev.nq = -1;
    snprintf(ev.id, sizeof(ev.id), "m1");
    snprintf(ev.contact, sizeof(ev.contact), "mail-1");
    ev.ts = T0;
    cust_ident(&ev, 1, 1);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_ev(&pk, &ev);
    memset(&rep, 0, sizeof(rep));
    cc_engine_ingest(e, sb.data, sb.size, (uint64_t)T0, &rep);
    cr_assert_eq(rep.accepted, 1);
    cc_ingest_report_fini(&rep);
    msgpack_sbuffer_destroy(&sb);
    save(e, &snap);
    make_config(&c2,
                "[sla.email]\nfirst_response = 20m\ncalendar = shop\n"
                "[calendar.shop]\ntimezone = UTC\nsat = 10:00-12:00\n",
                &keep2);
    /* [calendar.office] is still there in CONFIG_TEXT: rename it away. */
    {
        uint32_t i;
        for (i = 0; i < keep2->sla.ncalendars; i++)
            if (strcmp(keep2->sla.calendars[i].name, "office") == 0)
                strcpy(keep2->sla.calendars[i].name, "closed");
        c2.sla = &keep2->sla;
    }
    cr_assert_eq(cc_engine_restore(&b, &c2, snap.p, snap.n, err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "calendar 'office'"), "%s", err);
    cc_engine_free(e);
    free(keep);
    free(keep2);
    buf_free(&snap);
}

/* ---- damaged snapshots
 * -------------------------------------------------------
 */

/* Exercises a restored engine: everything due fires, events apply, and
 * it saves again. */
static void
exercise(struct cc_engine *e) {
    struct step *st = make_stream(77, 60);
    struct buf out = {0}, s = {0};
    unsigned i;

    for (i = 0; i < 60; i++) {
        st[i].now += 3 * HOUR;
        run_step(e, &st[i], &out);
    }
    cc_engine_tick(e, st[59].now + 30 * 86400000ULL);
    cc_outbox_clear(cc_engine_outbox(e));
    save(e, &s);
    free_stream(st, 60);
    buf_free(&out);
    buf_free(&s);
}

Test(snapshot, every_truncation_is_refused) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf snap = {0};
    char err[512];
    size_t len;

    e = small_engine(&c, &keep, &snap, 80);
    cr_assert_gt(e->open_contacts, 0);
    for (len = 0; len < snap.n; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, snap.p, len);
        err[0] = '\0';
        b = (struct cc_engine *)1;
        cr_assert_neq(cc_engine_restore(&b, &c, copy, len, err, sizeof(err)), 0,
                      "truncated to %zu of %zu bytes", len, snap.n);
        cr_assert_null(b);
        cr_assert_neq(err[0], '\0');
        free(copy);
    }
    cc_engine_free(e);
    free(keep);
    buf_free(&snap);
}

Test(snapshot, byte_flips_are_refused_or_harmless) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf snap = {0};
    uint64_t r = 2024;
    unsigned i, refused = 0, taken = 0;
    char err[512];

    e = small_engine(&c, &keep, &snap, 250);
    for (i = 0; i < 3000; i++) {
        uint8_t *copy = malloc(snap.n);
        size_t at = (size_t)(rnd(&r) % snap.n);
        int rc;
        memcpy(copy, snap.p, snap.n);
        copy[at] ^= (uint8_t)(1u << (rnd(&r) % 8));
        if (i % 4 == 3) /* and a few more */
            copy[rnd(&r) % snap.n] = (uint8_t)rnd(&r);
        err[0] = '\0';
        rc = cc_engine_restore(&b, &c, copy, snap.n, err, sizeof(err));
        if (rc != 0) {
            cr_assert_null(b);
            cr_assert_neq(err[0], '\0');
            refused++;
        } else {
            exercise(b);
            cc_engine_free(b);
            taken++;
        }
        free(copy);
    }
    cr_log_info("byte flips: %u refused, %u restored and exercised", refused,
                taken);
    cr_assert_gt(refused, 0);
    cc_engine_free(e);
    free(keep);
    buf_free(&snap);
}

/* A write error stops the save and is returned as it was. */
struct failing {
    size_t left;
};

static int
fail_after(void *ctx, const void *p, size_t n) {
    struct failing *f = ctx;
    (void)p;
    if (n > f->left)
        return CC_EIO;
    f->left -= n;
    return 0;
}

Test(snapshot, write_errors_are_returned) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e;
    struct buf snap = {0};
    struct failing f;

    e = small_engine(&c, &keep, &snap, 400);
    f.left = snap.n / 2;
    cr_assert_eq(cc_engine_save(e, fail_after, &f), CC_EIO);
    cc_engine_free(e);
    free(keep);
    buf_free(&snap);
}

/* ---- snapshot files --------------------------------------------------------
 */

static char dir[256];

static void
files_init(void) {
    snprintf(dir, sizeof(dir), "/tmp/cc_snapshot_test.%d", (int)getpid());
    remove_tree(dir);
    cr_assert_eq(mkdir(dir, 0755), 0);
    cr_redirect_stderr();
}

static void
files_fini(void) {
    remove_tree(dir);
}

static bool
exists(uint64_t seq, const char *suffix) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/%020llu%s", dir, (unsigned long long)seq,
             suffix);
    return stat(p, &st) == 0;
}

static void
snap_file(uint64_t seq, char *p, size_t n) {
    snprintf(p, n, "%s/%020llu.snap", dir, (unsigned long long)seq);
}

/* Everything written to stderr so far. */
static void
stderr_text(char *out, size_t n) {
    FILE *f;
    size_t k;

    fflush(stderr);
    f = cr_get_redirected_stderr();
    k = fread(out, 1, n - 1, f);
    out[k] = '\0';
}

Test(snapshot, files_round_trip_and_keep_two, .init = files_init,
     .fini = files_fini) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf s1 = {0}, s2 = {0};
    char err[512];
    uint64_t seq;
    void *shell;
    size_t shell_len;
    int fd;
    char p[512];

    e = small_engine(&c, &keep, &s1, 300);
    /* A temporary file a crashed writer left, older than what comes. */
    snprintf(p, sizeof(p), "%s/%020llu.snap.tmp", dir, 5ULL);
    fd = open(p, O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "junk", 4), 4);
    close(fd);
    cr_assert_eq(cc_snapshot_write(
                     dir, 10, e,
                     &(struct cc_snapshot_shell){9, "alerts-10", NULL, NULL},
                     err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cc_snapshot_write(dir, 20, e, NULL, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(cc_snapshot_write(
                     dir, 30, e,
                     &(struct cc_snapshot_shell){9, "alerts-30", NULL, NULL},
                     err, sizeof(err)),
                 0, "%s", err);
    cr_assert(!exists(10, ".snap"), "the third oldest is removed");
    cr_assert(exists(20, ".snap") && exists(30, ".snap"));
    cr_assert(!exists(5, ".snap.tmp"), "an old temporary file is removed");
    cr_assert(!exists(30, ".snap.tmp"));
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0, "%s", err);
    cr_assert_not_null(b);
    cr_assert_eq(seq, 30);
    cr_assert_eq(shell_len, 9);
    cr_assert(memcmp(shell, "alerts-30", 9) == 0);
    save(b, &s2);
    cr_assert(same(&s1, &s2));
    cc_free(shell, shell_len);
    cc_engine_free(b);
    cc_engine_free(e);
    free(keep);
    buf_free(&s1);
    buf_free(&s2);
}

Test(snapshot, files_damaged_newest_falls_back, .init = files_init,
     .fini = files_fini) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf s1 = {0}, s2 = {0};
    char err[512], p[512], log[4096];
    uint64_t seq;
    void *shell;
    size_t shell_len;
    struct stat st;
    int fd;
    uint8_t byte;

    e = small_engine(&c, &keep, &s1, 300);
    cr_assert_eq(
        cc_snapshot_write(dir, 10, e,
                          &(struct cc_snapshot_shell){3, "old", NULL, NULL},
                          err, sizeof(err)),
        0, "%s", err);
    cr_assert_eq(
        cc_snapshot_write(dir, 20, e,
                          &(struct cc_snapshot_shell){3, "new", NULL, NULL},
                          err, sizeof(err)),
        0, "%s", err);
    /* A flipped bit in the newest one's body. */
    snap_file(20, p, sizeof(p));
    fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, &byte, 1, 100), 1);
    byte ^= 0x10;
    cr_assert_eq(pwrite(fd, &byte, 1, 100), 1);
    close(fd);
    /* And a temporary file newer than both, which is ignored. */
    snprintf(p, sizeof(p), "%s/%020llu.snap.tmp", dir, 40ULL);
    fd = open(p, O_WRONLY | O_CREAT, 0644);
    cr_assert_eq(write(fd, "CCSNAPSH", 8), 8);
    close(fd);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(seq, 10);
    cr_assert_eq(shell_len, 3);
    cr_assert(memcmp(shell, "old", 3) == 0);
    save(b, &s2);
    cr_assert(same(&s1, &s2));
    cc_free(shell, shell_len);
    cc_engine_free(b);
    stderr_text(log, sizeof(log));
    cr_assert(strstr(log, "00000000000000000020.snap: body checksum mismatch"),
              "%s", log);
    /* Truncated now: skipped too. */
    snap_file(20, p, sizeof(p));
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(truncate(p, st.st_size - 7), 0);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(seq, 10);
    cc_free(shell, shell_len);
    cc_engine_free(b);
    stderr_text(log, sizeof(log));
    cr_assert(strstr(log, "20.snap: truncated"), "%s", log);
    /* Both damaged: an error, not a fresh start. */
    snap_file(10, p, sizeof(p));
    cr_assert_eq(truncate(p, 20), 0);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 CC_EPROTO);
    cr_assert_null(b);
    cr_assert(strstr(err, "every one is damaged"), "%s", err);
    cc_engine_free(e);
    free(keep);
    buf_free(&s1);
    buf_free(&s2);
}

Test(snapshot, files_unknown_version_stops, .init = files_init,
     .fini = files_fini) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf s1 = {0};
    char err[512], p[512];
    uint64_t seq;
    void *shell;
    size_t shell_len;
    uint8_t h[32];
    uint32_t crc;
    int fd, i;

    e = small_engine(&c, &keep, &s1, 100);
    cr_assert_eq(cc_snapshot_write(dir, 10, e, NULL, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(cc_snapshot_write(dir, 20, e, NULL, err, sizeof(err)), 0, "%s",
                 err);
    /* Version 2, with a header checksum that matches. */
    snap_file(20, p, sizeof(p));
    fd = open(p, O_RDWR);
    cr_assert_eq(pread(fd, h, 32, 0), 32);
    h[8] = 2;
    crc = cc_crc32c(cc_crc32c(0, h, 12), h + 16, 16);
    for (i = 0; i < 4; i++)
        h[12 + i] = (uint8_t)(crc >> (8 * i));
    cr_assert_eq(pwrite(fd, h, 32, 0), 32);
    close(fd);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 CC_EPROTO);
    cr_assert_null(b);
    cr_assert(strstr(err, "00000000000000000020.snap: newer or unknown format "
                          "version 2"),
              "%s", err);
    cc_engine_free(e);
    free(keep);
    buf_free(&s1);
}

Test(snapshot, files_none_is_normal, .init = files_init, .fini = files_fini) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *b = (struct cc_engine *)1;
    char err[512] = "", p[512];
    uint64_t seq = 7;
    void *shell = (void *)1;
    size_t shell_len = 7;
    int fd;

    make_config(&c, NULL, &keep);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0);
    cr_assert_null(b);
    cr_assert_eq(seq, 0);
    cr_assert_null(shell);
    /* Only a temporary file: still none. */
    snprintf(p, sizeof(p), "%s/%020llu.snap.tmp", dir, 3ULL);
    fd = open(p, O_WRONLY | O_CREAT, 0644);
    close(fd);
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0);
    cr_assert_null(b);
    /* No directory at all. */
    cr_assert_eq(cc_snapshot_load("/nonexistent/cc-snapshots", &c, &b, &seq,
                                  &shell, &shell_len, err, sizeof(err)),
                 0);
    cr_assert_null(b);
    /* A write into no directory names the file and the reason. */
    {
        struct cc_engine *e;
        cr_assert_eq(cc_engine_new(&e, &c, (uint64_t)T0), 0);
        cr_assert_eq(cc_snapshot_write("/nonexistent/cc-snapshots", 1, e, NULL,
                                       err, sizeof(err)),
                     CC_EIO);
        cr_assert(strstr(err, "/nonexistent/cc-snapshots/"
                              "00000000000000000001.snap.tmp: open: No such "
                              "file or directory"),
                  "%s", err);
        cc_engine_free(e);
    }
    free(keep);
}

/* ---- a big engine ----------------------------------------------------------
 */

static double
secs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(snapshot, big_engine_round_trips) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct buf s1 = {0}, s2 = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct cc_ingest_report rep;
    unsigned n = 100000, i, batch = 500;
    const char *big = getenv("CC_SNAPSHOT_BIG"); /* for measuring: 1000000 */

    if (big != NULL && atoi(big) >= (int)batch)
        n = (unsigned)atoi(big) / batch * batch;
    uint64_t now = (uint64_t)T0;
    double t0, t1, t2;

    make_config(&c, NULL, &keep);
    c.max_contacts = 2 * n;
    c.max_conversations = 2 * n;
    c.max_identities = 4 * n;
    c.dedup_window = n;
    c.thread_index = n;
    c.contact_idle_ms = 86400000ULL;
    c.idle_close_ms = 2 * 86400000ULL;
    cr_assert_eq(cc_engine_new(&e, &c, now), 0);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    memset(&rep, 0, sizeof(rep));
    /* n customers (phone and email), each with a conversation and an open
     * contact: some queued, some connected, the rest open. */
    for (i = 0; i < n; i += batch) {
        unsigned j;
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_array(&pk, 2 * batch);
        for (j = i; j < i + batch; j++) {
            struct ev ev;
            memset(&ev, 0, sizeof(ev));
            ev.prio = ev.score = ev.nq = -1;
            ev.channel = j % 3 == 2 ? "chat" : "phone";
            ev.type = "contact.open";
            ev.ts = (int64_t)now;
            snprintf(ev.id, sizeof(ev.id), "o%u", j);
            snprintf(ev.contact, sizeof(ev.contact), "call-%u", j);
            cust_ident(&ev, j, 0);
            cust_ident(&ev, j, 1);
            pack_ev(&pk, &ev);
            memset(&ev, 0, sizeof(ev));
            ev.prio = ev.score = ev.nq = -1;
            ev.channel = j % 3 == 2 ? "chat" : "phone";
            ev.ts = (int64_t)now;
            snprintf(ev.id, sizeof(ev.id), "j%u", j);
            snprintf(ev.contact, sizeof(ev.contact), "call-%u", j);
            if (j % 4 == 0) {
                ev.type = "agent.answer";
                snprintf(ev.agent, sizeof(ev.agent), "agent-%u", j % 50);
            } else if (j % 4 == 1) {
                ev.type = "queue.join";
                snprintf(ev.queue, sizeof(ev.queue), "%s", QUEUES[j % 4]);
            } else {
                ev.type = "message.in";
            }
            pack_ev(&pk, &ev);
        }
        cc_engine_ingest(e, sb.data, sb.size, now, &rep);
        cr_assert_eq(rep.accepted, 2 * batch);
        cc_outbox_clear(cc_engine_outbox(e));
        now += 100;
    }
    cc_ingest_report_fini(&rep);
    msgpack_sbuffer_destroy(&sb);
    cr_assert_eq(e->convs.open, n);
    cr_assert_eq(e->open_contacts, n);
    t0 = secs();
    save(e, &s1);
    t1 = secs();
    b = restore(&c, &s1);
    t2 = secs();
    save(b, &s2);
    cr_assert(same(&s1, &s2), "differ at %zu of %zu", differ_at(&s1, &s2),
              s1.n);
    fprintf(stdout,
            "big engine: %u conversations, %u contacts, %llu identifiers: "
            "%zu bytes (%.0f per conversation), save %.3f s, restore %.3f s\n",
            n, n, (unsigned long long)e->ident.nodes, s1.n, (double)s1.n / n,
            t1 - t0, t2 - t1);
    cc_engine_free(b);
    /* Again with the pools' memory faulted in ahead (the reserve of
     * mem.h, as a daemon could fill it on another thread while it reads
     * the file): what the restore itself costs. */
    {
        struct cc_mem_stats ms;
        double t3, t4;
        cc_mem_stats(&ms);
        cc_mem_reserve_target((unsigned)(ms.bytes_live / CC_HUGE_PAGE + 16));
        t3 = secs();
        (void)cc_mem_reserve_wanted();
        (void)cc_mem_reserve_fill();
        t4 = secs();
        b = restore(&c, &s1);
        t2 = secs();
        fprintf(stdout,
                "big engine: faulting the memory in %.3f s, then restore "
                "%.3f s\n",
                t4 - t3, t2 - t4);
        cc_engine_free(b);
        cc_mem_reserve_release();
    }
    cc_engine_free(e);
    free(keep);
    buf_free(&s1);
    buf_free(&s2);
}

/* ---- the journal: replay gives what live processing gave ------------------
 */

/* One step as the daemon takes it: journalled first (a tick only when the
 * engine has timed work due then, as the daemon journals them), then
 * applied. */
static void
live_step(struct cc_engine *e, struct cc_journal *j, const struct step *s,
          struct cc_ingest_report *rep, struct buf *out) {
    unsigned char h[CC_DURABLE_HEAD];

    if (s->tick) {
        if (cc_engine_next_deadline(e) <= s->now) {
            cc_durable_head(h, CC_REC_TICK, s->now);
            cr_assert_neq(cc_journal_append(j, h, sizeof(h)), 0);
        }
        cc_engine_tick(e, s->now);
    } else {
        cc_durable_head(h, CC_REC_INGEST, s->now);
        cr_assert_neq(cc_journal_append2(j, h, sizeof(h), s->msg, s->len), 0);
        cc_engine_ingest(e, s->msg, s->len, s->now, rep);
    }
    take_outbox(e, out);
}

/* Replays the journal in jdir from seq from into *e (NULL: from its
 * genesis record), the outputs into out. */
static void
replay_journal(const char *jdir, uint64_t from, struct cc_engine **e,
               const struct cc_engine_config *c, struct buf *out) {
    struct cc_journal_reader *r = NULL;
    struct cc_replay rp;
    uint64_t seq, sent;
    const void *p;
    size_t n;
    char err[512] = "";
    int rc;

    cr_assert_eq(cc_replay_init(&rp, e, c), 0);
    cr_assert_eq(cc_journal_reader_open(&r, jdir, from, err, sizeof(err)), 0,
                 "%s", err);
    while ((rc = cc_journal_read(r, &seq, &p, &n)) == 1) {
        cr_assert_eq(cc_replay_record(&rp, seq, p, n, &sent, err, sizeof(err)),
                     0, "%s", err);
        take_outbox(*e, out);
    }
    cr_assert_eq(rc, 0, "%s", cc_journal_reader_error(r));
    cc_replay_fini(&rp);
    take_outbox(*e, out);
    cc_journal_reader_close(r);
}

/*
 * A long random stream is journalled as the daemon journals it, with two
 * snapshots on the way, and runs of messages at one time. Replaying the whole
 * journal through a new engine, or the part after either snapshot through the
 * engine restored from it, gives the same outputs in the same order and the
 * same state (compared as snapshots) as live processing.
 */
Test(snapshot, journal_replay_equals_live, .init = files_init,
     .fini = files_fini) {
    static const unsigned cuts[] = {2100, 4700};
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *a, *b = NULL;
    struct cc_journal *j;
    struct cc_ingest_report rep;
    struct buf live = {0}, got = {0}, fa = {0}, fb = {0};
    size_t mark[2];
    uint64_t at[2], seq, end;
    unsigned char h[CC_DURABLE_HEAD];
    char jdir[300], sdir[300], err[512] = "", path[600];
    struct step *st;
    unsigned n = 6000, i, k = 0;
    void *shell;
    size_t shell_len;

    snprintf(jdir, sizeof(jdir), "%s/journal", dir);
    snprintf(sdir, sizeof(sdir), "%s/snapshots", dir);
    cr_assert_eq(mkdir(sdir, 0755), 0);
    memset(&rep, 0, sizeof(rep));
    make_config(&c, NULL, &keep);
    cr_assert_eq(cc_journal_open(&j, jdir, NULL, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(cc_engine_new(&a, &c, (uint64_t)T0), 0);
    cc_durable_head(h, CC_REC_GENESIS, (uint64_t)T0);
    cr_assert_eq(cc_journal_append(j, h, sizeof(h)), 1);
    st = make_stream(11, n);
    /* Runs of messages in one loop turn, at one time, as live ingest
     * applies them: replay applies such a run in one call. */
    for (i = 1; i < n; i++)
        if (i % 5 != 0 && !st[i].tick && !st[i - 1].tick)
            st[i].now = st[i - 1].now;
    for (i = 0; i < n; i++) {
        if (k < 2 && cuts[k] == i) {
            at[k] = cc_journal_next_seq(j);
            mark[k] = live.n;
            cr_assert_eq(
                cc_snapshot_write(sdir, at[k], a, NULL, err, sizeof(err)), 0,
                "%s", err);
            k++;
        }
        live_step(a, j, &st[i], &rep, &live);
        if (i % 500 == 0)
            cr_assert_eq(cc_journal_write(j), 0);
    }
    cr_assert_eq(cc_journal_write(j), 0);
    cc_journal_close(j);
    /* The stream's last calls may be ticks with nothing due, which move
     * the live engine's clock unjournalled: replayed engines are brought
     * to the same time before their states are compared. */
    end = st[n - 1].now;
    save(a, &fa);

    /* From the genesis record. */
    replay_journal(jdir, 0, &b, &c, &got);
    cr_assert_not_null(b);
    cr_assert_eq(got.n, live.n, "outputs differ in length");
    cr_assert(memcmp(got.p, live.p, got.n) == 0, "outputs differ at byte %zu",
              differ_at(&got, &live));
    cc_engine_tick(b, end);
    cr_assert_eq(cc_engine_outbox(b)->n, 0);
    save(b, &fb);
    cr_assert(same(&fa, &fb), "replayed state differs at byte %zu of %zu",
              differ_at(&fa, &fb), fa.n);
    cc_engine_free(b);

    /* From each snapshot: the newest, then (removed) the one before. */
    for (k = 2; k-- > 0;) {
        cr_assert_eq(cc_snapshot_load(sdir, &c, &b, &seq, &shell, &shell_len,
                                      err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(seq, at[k]);
        cr_assert_null(shell);
        got.n = 0;
        replay_journal(jdir, seq, &b, &c, &got);
        cr_assert_eq(got.n, live.n - mark[k], "cut %u: outputs differ", k);
        cr_assert(memcmp(got.p, live.p + mark[k], got.n) == 0,
                  "cut %u: outputs differ", k);
        cc_engine_tick(b, end);
        save(b, &fb);
        cr_assert(same(&fa, &fb), "cut %u: state differs at byte %zu", k,
                  differ_at(&fa, &fb));
        cc_engine_free(b);
        b = NULL;
        snprintf(path, sizeof(path), "%s/%020llu.snap", sdir,
                 (unsigned long long)seq);
        cr_assert_eq(unlink(path), 0);
    }
    cc_engine_free(a);
    cc_ingest_report_fini(&rep);
    free(keep);
    free_stream(st, n);
    buf_free(&live);
    buf_free(&got);
    buf_free(&fa);
    buf_free(&fb);
}

/* A shell written by a function in pieces is read back whole; one that
 * writes another length than it declared is refused and leaves no file. */
static int
shell_pieces(void *arg, int (*write)(void *ctx, const void *p, size_t n),
             void *ctx) {
    int rc = write(ctx, "abc", 3);
    (void)arg;
    return rc != 0 ? rc : write(ctx, "defg", 4);
}

Test(snapshot, shell_written_in_pieces, .init = files_init,
     .fini = files_fini) {
    struct cc_engine_config c;
    struct cc_config *keep;
    struct cc_engine *e, *b;
    struct cc_snapshot_shell sh = {7, NULL, shell_pieces, NULL};
    char err[512] = "";
    uint64_t seq;
    void *shell;
    size_t shell_len;

    make_config(&c, NULL, &keep);
    cr_assert_eq(cc_engine_new(&e, &c, (uint64_t)T0), 0);
    cr_assert_eq(cc_snapshot_write(dir, 5, e, &sh, err, sizeof(err)), 0, "%s",
                 err);
    sh.len = 8;
    cr_assert_eq(cc_snapshot_write(dir, 6, e, &sh, err, sizeof(err)),
                 CC_ESTATE);
    cr_assert(strstr(err, "inconsistent") != NULL, "%s", err);
    cr_assert(!exists(6, ".snap") && !exists(6, ".tmp"));
    cr_assert_eq(cc_snapshot_load(dir, &c, &b, &seq, &shell, &shell_len, err,
                                  sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(seq, 5);
    cr_assert_eq(shell_len, 7);
    cr_assert(memcmp(shell, "abcdefg", 7) == 0);
    cc_free(shell, shell_len);
    cc_engine_free(b);
    cc_engine_free(e);
    free(keep);
}
