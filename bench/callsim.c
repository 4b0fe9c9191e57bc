/*
 * cc_callsim: a day of a call center in virtual time, with callbacks off
 * and on, through the real engine.
 *
 * The engine is deterministic and reads no clock, so a day runs in well
 * under a second: this program plays the platform around it. Callers
 * arrive by a Poisson process whose rate follows an hourly profile; each
 * has a patience (exponential) after which it hangs up, and a handle time
 * (exponential). Agents work shifts; a free agent takes the head of the
 * queue. The engine hears everything a platform would send (queue.join,
 * agent.answer, contact.close, agent.status) and answers with triggers:
 * a callback.offer is accepted with some probability a few seconds later
 * (the IVR prompt); a callback.dial reaches the customer with some
 * probability after a ringing delay, and a reached customer is put to the
 * front of the queue and answered by the next free agent
 * (callback.completed); one not reached is reported (callback.failed) and
 * the engine dials again later.
 *
 * Both runs draw every random number from per-caller streams seeded by the
 * caller's number, so they see the same arrivals, patience and handle
 * times; only the callbacks differ.
 *
 *   cc_callsim [--seed N] [--agents N] [--scale X]
 */
#include "engine.h"
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY0 1795168800000ULL /* a Friday, 10:00 UTC: the day's start */
#define HOUR 3600000ULL
#define SEC 1000ULL

/* Arrivals per hour over a ten-hour day: a morning rise and a lunch peak
 * that outruns the agents. */
static const double profile[10] = {180, 300, 420, 520, 560,
                                   480, 380, 300, 220, 150};
/* Share of the agents on shift each hour: late starters, a lunch break
 * that falls on the peak, early leavers. */
static const double staffing[10] = {0.75, 0.9, 1.0, 0.9, 0.85,
                                    1.0,  1.0, 0.9, 0.8, 0.7};

struct opts {
    uint64_t seed;
    unsigned agents;
    double scale; /* of the arrival profile */
    double aht_s, patience_s, accept_p, reach_p, reach_s, prompt_s;
};

/* ---- randomness: one stream per caller, so both runs agree ------------ */

static uint64_t
mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Uniform in (0, 1) from stream (caller, what). */
static double
unif(uint64_t seed, uint64_t caller, uint64_t what) {
    uint64_t r = mix(seed ^ mix(caller * 0x9e3779b97f4a7c15ULL + what));
    return ((double)(r >> 11) + 0.5) / 9007199254740992.0;
}

static double
expo(double mean, double u) {
    return -mean * log(u);
}

/* ---- the simulated platform ------------------------------------------ */

enum { C_WAITING, C_ANSWERED, C_ABANDONED, C_CALLBACK, C_REACHED };

struct caller {
    uint64_t arrive, patience_ms, handle_ms;
    uint64_t answered;   /* when an agent took it (0: not yet) */
    uint64_t held_ms;    /* time on the line waiting, all legs */
    uint64_t reached_at; /* callback: when the customer picked up */
    uint32_t qnext;      /* live queue link (index + 1; 0: none) */
    uint8_t state;
    uint8_t attempts;
};

enum ev_kind { E_ARRIVE, E_ABANDON, E_FREE, E_REPLY, E_REACH, E_SHIFT };

struct sev {
    uint64_t t;
    uint32_t kind, who; /* caller, or agent for E_FREE */
    uint32_t seq;
};

struct sim {
    const struct opts *o;
    struct cc_engine *e;
    struct cc_ingest_report rep;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct caller *c;
    uint32_t n, cap;
    uint32_t qhead, qtail; /* live queue (index + 1) */
    unsigned free_agents, on_shift;
    uint32_t *agent_busy; /* caller + 1 per agent; 0: free */
    bool *agent_on;       /* on shift */
    struct sev *heap;
    uint32_t hn, hcap, seq;
    uint64_t idn;
    /* results */
    uint64_t abandoned, answered, in_20s, accepted_offers, offers;
    uint64_t dials, reached, unreached;
};

static void
heap_push(struct sim *s, uint64_t t, uint32_t kind, uint32_t who) {
    struct sev x = {t, kind, who, s->seq++};
    uint32_t i;

    if (s->hn == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 1024;
        s->heap = realloc(s->heap, s->hcap * sizeof(*s->heap));
        if (s->heap == NULL)
            abort();
    }
    i = s->hn++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->heap[p].t < x.t ||
            (s->heap[p].t == x.t && s->heap[p].seq < x.seq))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = x;
}

static struct sev
heap_pop(struct sim *s) {
    struct sev top = s->heap[0], x = s->heap[--s->hn];
    uint32_t i = 0;

    for (;;) {
        uint32_t l = 2 * i + 1, m = l;
        if (l >= s->hn)
            break;
        if (l + 1 < s->hn && (s->heap[l + 1].t < s->heap[l].t ||
                              (s->heap[l + 1].t == s->heap[l].t &&
                               s->heap[l + 1].seq < s->heap[l].seq)))
            m = l + 1;
        if (x.t < s->heap[m].t ||
            (x.t == s->heap[m].t && x.seq < s->heap[m].seq))
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    s->heap[i] = x;
    return top;
}

/* Sends one event to the engine at time t. */
static void
sim_send(struct sim *s, uint64_t t, const char *type, uint32_t who,
         const char *contact_prefix, const char *agent, const char *state,
         int prio) {
    char id[32], contact[32];
    bool has_contact = contact_prefix != NULL;
    uint32_t n =
        4 + has_contact + (agent != NULL) + (state != NULL) + (prio >= 0);
    bool join = strcmp(type, "queue.join") == 0;
    bool status = strcmp(type, "agent.status") == 0;

    n += join ? 2 : status ? 1 : 0; /* queue, customer / queues */
    msgpack_sbuffer_clear(&s->sb);
    msgpack_pack_map(&s->pk, n);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)++s->idn);
    cc_pack_str(&s->pk, "id");
    cc_pack_str(&s->pk, id);
    cc_pack_str(&s->pk, "ts");
    msgpack_pack_uint64(&s->pk, t);
    cc_pack_str(&s->pk, "channel");
    cc_pack_str(&s->pk, "phone");
    cc_pack_str(&s->pk, "type");
    cc_pack_str(&s->pk, type);
    if (has_contact) {
        snprintf(contact, sizeof(contact), "%s%u", contact_prefix, who);
        cc_pack_str(&s->pk, "contact");
        cc_pack_str(&s->pk, contact);
    }
    if (agent != NULL) {
        cc_pack_str(&s->pk, "agent");
        cc_pack_str(&s->pk, agent);
    }
    if (state != NULL) {
        cc_pack_str(&s->pk, "state");
        cc_pack_str(&s->pk, state);
    }
    if (prio >= 0) {
        cc_pack_str(&s->pk, "priority");
        msgpack_pack_int(&s->pk, prio);
    }
    if (join) {
        char phone[32];
        cc_pack_str(&s->pk, "queue");
        cc_pack_str(&s->pk, "sales");
        snprintf(phone, sizeof(phone), "+1555%07u", who);
        cc_pack_str(&s->pk, "customer");
        msgpack_pack_map(&s->pk, 1);
        cc_pack_str(&s->pk, "phone");
        cc_pack_str(&s->pk, phone);
    }
    if (status) {
        cc_pack_str(&s->pk, "queues");
        msgpack_pack_array(&s->pk, 1);
        cc_pack_str(&s->pk, "sales");
    }
    cc_engine_ingest(s->e, s->sb.data, s->sb.size, t, &s->rep);
    if (s->rep.rejected != 0) {
        char why[256];
        cc_reject_format(&s->rep.rej[0].rej, why, sizeof(why));
        fprintf(stderr, "callsim: %s refused: %s\n", type, why);
        exit(1);
    }
}

static void
agent_name(char *buf, size_t n, unsigned a) {
    snprintf(buf, n, "ag%u", a);
}

static void
queue_push_back(struct sim *s, uint32_t who) {
    s->c[who].qnext = 0;
    if (s->qtail != 0)
        s->c[s->qtail - 1].qnext = who + 1;
    else
        s->qhead = who + 1;
    s->qtail = who + 1;
}

static void
queue_push_front(struct sim *s, uint32_t who) {
    s->c[who].qnext = s->qhead;
    s->qhead = who + 1;
    if (s->qtail == 0)
        s->qtail = who + 1;
}

static void
queue_unlink(struct sim *s, uint32_t who) {
    uint32_t prev = 0, x = s->qhead;

    while (x != 0 && x != who + 1) {
        prev = x;
        x = s->c[x - 1].qnext;
    }
    if (x == 0)
        return;
    if (prev != 0)
        s->c[prev - 1].qnext = s->c[who].qnext;
    else
        s->qhead = s->c[who].qnext;
    if (s->qtail == who + 1)
        s->qtail = prev;
}

/* Free agents take callers from the head of the queue. */
static void
route(struct sim *s, uint64_t t) {
    unsigned a;
    char name[16];

    while (s->free_agents != 0 && s->qhead != 0) {
        uint32_t who = s->qhead - 1;
        struct caller *c = &s->c[who];
        bool cb = c->state == C_REACHED;
        s->qhead = c->qnext;
        if (s->qhead == 0)
            s->qtail = 0;
        for (a = 0;
             a < s->o->agents && (s->agent_busy[a] != 0 || !s->agent_on[a]);
             a++)
            ;
        s->agent_busy[a] = who + 1;
        s->free_agents--;
        agent_name(name, sizeof(name), a);
        sim_send(s, t, "agent.answer", who, cb ? "cb" : "c", name, NULL, -1);
        sim_send(s, t, "agent.status", 0, NULL, name, "busy", -1);
        if (cb) {
            c->held_ms += t - c->reached_at;
            sim_send(s, t, "callback.completed", who, "c", NULL, NULL, -1);
        } else {
            c->held_ms += t - c->arrive;
            if (t - c->arrive <= 20 * SEC)
                s->in_20s++;
        }
        c->state = C_ANSWERED;
        c->answered = t;
        s->answered++;
        heap_push(s, t + c->handle_ms, E_FREE, a);
    }
}

/* Reads the triggers the engine wrote. */
static void
drain(struct sim *s, uint64_t t) {
    struct cc_outbox *ob = cc_engine_outbox(s->e);
    uint32_t i;

    for (i = 0; i < ob->n; i++) {
        const char *data = cc_outbox_data(ob, &ob->v[i]);
        msgpack_unpacked u;
        msgpack_object *m;
        char type[32] = "", contact[32] = "";
        uint32_t k;

        if (ob->v[i].kind != CC_OUT_CALLBACK)
            continue;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, data, ob->v[i].len, NULL) !=
            MSGPACK_UNPACK_SUCCESS)
            abort();
        m = &u.data;
        for (k = 0; k < m->via.map.size; k++) {
            const msgpack_object_kv *kv = &m->via.map.ptr[k];
            char *dst = NULL;
            if (kv->key.via.str.size == 4 &&
                memcmp(kv->key.via.str.ptr, "type", 4) == 0)
                dst = type;
            else if (kv->key.via.str.size == 7 &&
                     memcmp(kv->key.via.str.ptr, "contact", 7) == 0)
                dst = contact;
            if (dst != NULL && kv->val.type == MSGPACK_OBJECT_STR &&
                kv->val.via.str.size < 32) {
                memcpy(dst, kv->val.via.str.ptr, kv->val.via.str.size);
                dst[kv->val.via.str.size] = '\0';
            }
        }
        msgpack_unpacked_destroy(&u);
        if (contact[0] != 'c' || contact[1] == 'b')
            continue;
        if (strcmp(type, "callback.offer") == 0) {
            uint32_t who = (uint32_t)strtoul(contact + 1, NULL, 10);
            s->offers++;
            heap_push(s, t + (uint64_t)(s->o->prompt_s * SEC), E_REPLY, who);
        } else if (strcmp(type, "callback.dial") == 0) {
            uint32_t who = (uint32_t)strtoul(contact + 1, NULL, 10);
            s->dials++;
            heap_push(s, t + (uint64_t)(s->o->reach_s * SEC), E_REACH, who);
        }
    }
    cc_outbox_clear(ob);
}

static void
handle(struct sim *s, const struct sev *x) {
    const struct opts *o = s->o;
    struct caller *c = &s->c[x->who];
    uint64_t t = x->t;
    switch (x->kind) {
    case E_ARRIVE:
        sim_send(s, t, "queue.join", x->who, "c", NULL, NULL, -1);
        queue_push_back(s, x->who);
        heap_push(s, t + c->patience_ms, E_ABANDON, x->who);
        route(s, t);
        break;
    case E_ABANDON:
        if (c->state != C_WAITING)
            break;
        queue_unlink(s, x->who);
        c->state = C_ABANDONED;
        c->held_ms += t - c->arrive;
        s->abandoned++;
        sim_send(s, t, "contact.close", x->who, "c", NULL, NULL, -1);
        break;
    case E_REPLY:
        if (c->state != C_WAITING)
            break;
        if (unif(o->seed, x->who, 4) < o->accept_p) {
            sim_send(s, t, "callback.accepted", x->who, "c", NULL, NULL, -1);
            queue_unlink(s, x->who);
            c->state = C_CALLBACK;
            c->held_ms += t - c->arrive;
            s->accepted_offers++;
            sim_send(s, t, "contact.close", x->who, "c", NULL, NULL, -1);
        } else {
            sim_send(s, t, "callback.declined", x->who, "c", NULL, NULL, -1);
        }
        break;
    case E_REACH:
        if (c->state != C_CALLBACK)
            break;
        if (unif(o->seed, x->who, 5 + c->attempts++) < o->reach_p) {
            c->state = C_REACHED;
            c->reached_at = t;
            s->reached++;
            sim_send(s, t, "queue.join", x->who, "cb", NULL, NULL, 9);
            queue_push_front(s, x->who);
            route(s, t);
        } else {
            s->unreached++;
            sim_send(s, t, "callback.failed", x->who, "c", NULL, NULL, -1);
        }
        break;
    }
}

/* E_FREE closes the agent's caller; written apart to keep handle()'s
 * switch short. */
static void
agent_done(struct sim *s, const struct sev *x) {
    uint32_t who = s->agent_busy[x->who] - 1;
    struct caller *c = &s->c[who];
    char name[16];

    agent_name(name, sizeof(name), x->who);
    sim_send(s, x->t, "contact.close", who, c->reached_at ? "cb" : "c", NULL,
             NULL, -1);
    s->agent_busy[x->who] = 0;
    if (s->agent_on[x->who]) {
        s->free_agents++;
        sim_send(s, x->t, "agent.status", 0, NULL, name, "available", -1);
    } else {
        sim_send(s, x->t, "agent.status", 0, NULL, name, "offline", -1);
    }
    route(s, x->t);
}

/* The hour's shift: agents come on (available) or go off (at once when
 * free, else when their call ends). */
static void
shift(struct sim *s, uint64_t t, unsigned hour) {
    unsigned target = (unsigned)(s->o->agents * staffing[hour] + 0.5), a;
    char name[16];

    for (a = 0; a < s->o->agents && s->on_shift < target; a++) {
        if (s->agent_on[a])
            continue;
        s->agent_on[a] = true;
        s->on_shift++;
        if (s->agent_busy[a] == 0) {
            s->free_agents++;
            agent_name(name, sizeof(name), a);
            sim_send(s, t, "agent.status", 0, NULL, name, "available", -1);
        }
    }
    for (a = s->o->agents; a-- > 0 && s->on_shift > target;) {
        if (!s->agent_on[a])
            continue;
        s->agent_on[a] = false;
        s->on_shift--;
        if (s->agent_busy[a] == 0) {
            s->free_agents--;
            agent_name(name, sizeof(name), a);
            sim_send(s, t, "agent.status", 0, NULL, name, "offline", -1);
        }
    }
    route(s, t);
}

static int
cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A number from the engine's stats at a path of keys ("a/b/c"); NAN for
 * nil or missing. */
static double
stat(struct cc_engine *e, const char *path) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object o;
    const char *p = path;
    double v = NAN;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cc_engine_pack_stats(e, &pk);
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, sb.data, sb.size, NULL) !=
        MSGPACK_UNPACK_SUCCESS)
        abort();
    o = u.data;
    while (*p != '\0' && o.type == MSGPACK_OBJECT_MAP) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        uint32_t k;
        bool found = false;
        for (k = 0; k < o.via.map.size && !found; k++) {
            const msgpack_object_kv *kv = &o.via.map.ptr[k];
            if (kv->key.via.str.size == n &&
                memcmp(kv->key.via.str.ptr, p, n) == 0) {
                o = kv->val;
                found = true;
            }
        }
        if (!found)
            goto out;
        p += n + (slash != NULL);
    }
    if (o.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = (double)o.via.u64;
    else if (o.type == MSGPACK_OBJECT_FLOAT64 ||
             o.type == MSGPACK_OBJECT_FLOAT32)
        v = o.via.f64;
out:
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

struct result {
    uint64_t callers, answered, abandoned, offers, accepted, dials;
    double hold_avg_s, hold_p90_s, sl20, abandon_rate;
    double on_time, late, overdue, completed, failed;
    double mae_s, within30;
};

static void
run(const struct opts *o, bool callbacks, struct result *r) {
    struct cc_engine_config cfg;
    struct sim s;
    uint64_t t = DAY0, end = DAY0 + 10 * HOUR, *holds;
    uint32_t i, nh = 0;
    unsigned a;

    memset(&s, 0, sizeof(s));
    s.o = o;
    cc_engine_config_defaults(&cfg);
    cfg.max_contacts = 100000;
    if (!callbacks) {
        cfg.cb.def.v[CC_CB_WAIT_OVER] = 0;
        cfg.cb.def.v[CC_CB_POSITION_OVER] = 0;
        cfg.cb.def.v[CC_CB_AFTER_WAITING] = 0;
    } else {
        /* The defaults, but no cap below what the peak needs. */
        cfg.cb.def.v[CC_CB_MAX_PENDING] = 200;
    }
    if (cc_engine_new(&s.e, &cfg, DAY0) != 0)
        abort();
    msgpack_sbuffer_init(&s.sb);
    msgpack_packer_init(&s.pk, &s.sb, msgpack_sbuffer_write);
    s.agent_busy = calloc(o->agents, sizeof(*s.agent_busy));
    s.agent_on = calloc(o->agents, sizeof(*s.agent_on));
    if (s.agent_busy == NULL || s.agent_on == NULL)
        abort();
    for (a = 0; a < 10; a++)
        heap_push(&s, t + a * HOUR, E_SHIFT, a);
    /* The day's arrivals, hour by hour: exponential gaps at the hour's
     * rate. */
    {
        uint64_t at = DAY0;
        uint32_t k = 0;
        while (at < end) {
            double rate = profile[(at - DAY0) / HOUR] * o->scale / 3600.0;
            at += (uint64_t)(expo(1.0 / rate, unif(o->seed, k, 0)) * SEC) + 1;
            if (at >= end)
                break;
            if (s.n == s.cap) {
                s.cap = s.cap ? s.cap * 2 : 4096;
                s.c = realloc(s.c, s.cap * sizeof(*s.c));
                if (s.c == NULL)
                    abort();
            }
            memset(&s.c[s.n], 0, sizeof(s.c[s.n]));
            s.c[s.n].arrive = at;
            s.c[s.n].patience_ms =
                (uint64_t)(expo(o->patience_s, unif(o->seed, k, 1)) * SEC);
            s.c[s.n].handle_ms =
                (uint64_t)(expo(o->aht_s, unif(o->seed, k, 2)) * SEC) + SEC;
            heap_push(&s, at, E_ARRIVE, s.n);
            s.n++;
            k++;
        }
    }
    /* Engine timers and simulated events, in time order. */
    while (s.hn != 0) {
        uint64_t next = s.heap[0].t;
        uint64_t due = cc_engine_next_deadline(s.e);
        struct sev x;
        if (due <= next) {
            cc_engine_tick(s.e, due);
            drain(&s, due);
            continue;
        }
        x = heap_pop(&s);
        if (x.kind == E_FREE)
            agent_done(&s, &x);
        else if (x.kind == E_SHIFT)
            shift(&s, x.t, x.who);
        else
            handle(&s, &x);
        drain(&s, x.t);
    }
    cc_engine_tick(s.e, end + 2 * HOUR);
    drain(&s, end + 2 * HOUR);

    holds = malloc((s.n + 1) * sizeof(*holds));
    for (i = 0; i < s.n; i++)
        if (s.c[i].state == C_ANSWERED)
            holds[nh++] = s.c[i].held_ms;
    qsort(holds, nh, sizeof(*holds), cmp_u64);
    memset(r, 0, sizeof(*r));
    r->callers = s.n;
    r->answered = s.answered;
    r->abandoned = s.abandoned;
    r->offers = s.offers;
    r->accepted = s.accepted_offers;
    r->dials = s.dials;
    {
        double sum = 0;
        for (i = 0; i < nh; i++)
            sum += (double)holds[i];
        r->hold_avg_s = nh ? sum / nh / 1000.0 : 0;
        r->hold_p90_s = nh ? (double)holds[(nh * 9) / 10] / 1000.0 : 0;
    }
    r->abandon_rate = s.n ? (double)s.abandoned / s.n : 0;
    /* Service level as the queue measures it: live calls answered within
     * 20 s over live calls answered or abandoned. */
    {
        uint64_t live = s.answered - s.reached + s.abandoned;
        r->sl20 = live ? (double)s.in_20s / (double)live : 0;
    }
    r->on_time = stat(s.e, "callbacks/on_time");
    r->late = stat(s.e, "callbacks/late");
    r->overdue = stat(s.e, "callbacks/overdue");
    r->completed = stat(s.e, "callbacks/completed");
    r->failed = stat(s.e, "callbacks/failed");
    r->mae_s = stat(s.e, "queues/sales/estimate_mae_ms") / 1000.0;
    r->within30 = stat(s.e, "queues/sales/estimate_within_30s");
    free(holds);
    free(s.c);
    free(s.heap);
    free(s.agent_busy);
    free(s.agent_on);
    msgpack_sbuffer_destroy(&s.sb);
    cc_ingest_report_fini(&s.rep);
    cc_engine_free(s.e);
}

int
main(int argc, char **argv) {
    struct opts o = {.seed = 1,
                     .agents = 30,
                     .scale = 1.0,
                     .aht_s = 240,
                     .patience_s = 240,
                     .accept_p = 0.6,
                     .reach_p = 0.85,
                     .reach_s = 20,
                     .prompt_s = 8};
    struct result off, on;
    int i;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seed") == 0)
            o.seed = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--agents") == 0)
            o.agents = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--scale") == 0)
            o.scale = strtod(argv[i + 1], NULL);
        else {
            fprintf(stderr,
                    "usage: cc_callsim [--seed N] [--agents N] [--scale X]\n");
            return 2;
        }
    }
    if (i != argc || o.agents == 0 || o.scale <= 0) {
        fprintf(stderr,
                "usage: cc_callsim [--seed N] [--agents N] [--scale X]\n");
        return 2;
    }
    run(&o, false, &off);
    run(&o, true, &on);
    printf("callsim: 10 h day, %llu callers (peak %.0f/h), %u agents, "
           "handle %.0f s, patience %.0f s (both exponential), seed %llu\n",
           (unsigned long long)off.callers, 560 * o.scale, o.agents, o.aht_s,
           o.patience_s, (unsigned long long)o.seed);
    printf("  offers accepted with p=%.2f after %.0f s; a dial reaches the "
           "customer with p=%.2f after %.0f s\n",
           o.accept_p, o.prompt_s, o.reach_p, o.reach_s);
    printf("%-34s %12s %12s\n", "", "callbacks off", "callbacks on");
    printf("%-34s %12.1f %12.1f\n", "hold time, mean (s)", off.hold_avg_s,
           on.hold_avg_s);
    printf("%-34s %12.1f %12.1f\n", "hold time, p90 (s)", off.hold_p90_s,
           on.hold_p90_s);
    printf("%-34s %11.1f%% %11.1f%%\n", "abandoned", 100 * off.abandon_rate,
           100 * on.abandon_rate);
    printf("%-34s %11.1f%% %11.1f%%\n", "service level (live, 20 s)",
           100 * off.sl20, 100 * on.sl20);
    printf("%-34s %12llu %12llu\n", "answered (live and callbacks)",
           (unsigned long long)off.answered, (unsigned long long)on.answered);
    printf("%-34s %12llu %12llu\n", "callback offers",
           (unsigned long long)off.offers, (unsigned long long)on.offers);
    printf("%-34s %12llu %12llu\n", "callbacks accepted",
           (unsigned long long)off.accepted, (unsigned long long)on.accepted);
    printf("%-34s %12llu %12llu\n", "dial attempts",
           (unsigned long long)off.dials, (unsigned long long)on.dials);
    printf("%-34s %12.0f %12.0f\n", "callbacks completed", off.completed,
           on.completed);
    printf("%-34s %12.0f %12.0f\n", "callbacks failed (all attempts)",
           off.failed, on.failed);
    printf("%-34s %12s %11.1f%%\n", "first dial within the promise", "-",
           on.on_time + on.late > 0 ? 100 * on.on_time / (on.on_time + on.late)
                                    : 0.0);
    printf("%-34s %12s %12.0f\n", "callback.overdue alerts", "-", on.overdue);
    printf("%-34s %12.1f %12.1f\n", "estimate at join, MAE (s)", off.mae_s,
           on.mae_s);
    printf("%-34s %11.1f%% %11.1f%%\n", "estimate within 30 s",
           100 * off.within30, 100 * on.within30);
    return 0;
}
