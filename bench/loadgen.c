/*
 * The load generator. See loadgen.h.
 */
#include "loadgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CH_PHONE, CH_CHAT, CH_EMAIL, CH_SOCIAL };

static const char *const channel_names[] = {"phone", "chat", "email", "social"};

/* Each script step: event type, and whether it carries a queue / agent. */
struct step {
    const char *type;
    int queue, agent;
};

static const struct step phone_script[] = {
    {"contact.open", 0, 0}, {"queue.join", 1, 0}, {"agent.answer", 0, 1},
    {"hold.start", 0, 0},   {"hold.end", 0, 0},   {"contact.close", 0, 0}};
static const struct step chat_script[] = {
    {"contact.open", 0, 0}, {"queue.join", 1, 0},   {"agent.answer", 0, 1},
    {"message.in", 0, 0},   {"message.out", 0, 1},  {"message.in", 0, 0},
    {"message.out", 0, 1},  {"contact.close", 0, 0}};
static const struct step email_script[] = {{"contact.open", 0, 0},
                                           {"message.in", 0, 0},
                                           {"message.out", 0, 1},
                                           {"contact.close", 0, 0}};
static const struct step social_script[] = {
    {"contact.open", 0, 0}, {"message.in", 0, 0},  {"message.out", 0, 1},
    {"message.in", 0, 0},   {"message.out", 0, 1}, {"contact.close", 0, 0}};

static const struct {
    const struct step *s;
    int n;
} scripts[] = {
    {phone_script, 6}, {chat_script, 8}, {email_script, 4}, {social_script, 6}};

static const char *const queues[] = {"billing", "sales", "support",
                                     "retention"};

struct lg_slot {
    uint64_t contact;
    uint64_t customer;
    uint8_t channel;
    uint8_t step;
    uint8_t resolve; /* a conversation.resolve is due before the next contact */
    uint64_t resolved; /* the customer it names */
};

static uint64_t
rnd(struct loadgen *g) {
    /* xorshift64* */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ULL;
}

static uint8_t
pick_channel(struct loadgen *g) {
    unsigned r = (unsigned)(rnd(g) % 10);
    return r < 4 ? CH_PHONE : r < 7 ? CH_CHAT : r < 9 ? CH_EMAIL : CH_SOCIAL;
}

static void
new_contact(struct loadgen *g, struct lg_slot *s, int switch_channel) {
    uint8_t old = s->channel;
    s->contact = g->next_contact++;
    s->step = 0;
    if (switch_channel) {
        /* Same customer, another channel. */
        do
            s->channel = pick_channel(g);
        while (s->channel == old);
    } else {
        /* A new customer until the population (if any) is complete, then
         * a returning one drawn at random. */
        if (g->customers == 0 || g->next_customer < g->customers)
            s->customer = g->next_customer++;
        else
            s->customer = rnd(g) % g->customers;
        s->channel = pick_channel(g);
    }
}

int
lg_init(struct loadgen *g, uint32_t slots, uint64_t customers, uint64_t seed,
        int64_t ts0) {
    uint32_t i;
    memset(g, 0, sizeof(*g));
    g->customers = customers;
    g->slots = calloc(slots, sizeof(*g->slots));
    if (g->slots == NULL)
        return -1;
    g->nslots = slots;
    g->rng = seed ? seed : 1;
    g->ts = ts0;
    for (i = 0; i < slots; i++)
        new_contact(g, &g->slots[i], 0);
    msgpack_sbuffer_init(&g->sb);
    msgpack_packer_init(&g->pk, &g->sb, msgpack_sbuffer_write);
    return 0;
}

void
lg_fini(struct loadgen *g) {
    free(g->slots);
    msgpack_sbuffer_destroy(&g->sb);
}

static void
pack_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

#define PACK_LIT(pk, lit) pack_str((pk), (lit), sizeof(lit) - 1)

static void
pack_customer(msgpack_packer *pk, unsigned channel, uint64_t customer) {
    char buf[64];
    int n;

    msgpack_pack_map(pk, 2);
    PACK_LIT(pk, "phone");
    n = snprintf(buf, sizeof(buf), "+1555%07llu",
                 (unsigned long long)(customer % 10000000));
    pack_str(pk, buf, (size_t)n);
    switch (channel) {
    case CH_EMAIL:
    case CH_PHONE:
        PACK_LIT(pk, "email");
        n = snprintf(buf, sizeof(buf), "customer%llu@example.com",
                     (unsigned long long)customer);
        break;
    case CH_CHAT:
        PACK_LIT(pk, "chat");
        n = snprintf(buf, sizeof(buf), "visitor-%016llx",
                     (unsigned long long)customer);
        break;
    default:
        PACK_LIT(pk, "social");
        n = snprintf(buf, sizeof(buf), "twitter:user%llu",
                     (unsigned long long)customer);
        break;
    }
    pack_str(pk, buf, (size_t)n);
}

/* The customer's conversation is resolved: named by the phone number, as
 * a CRM or ticketing system that closes the case would. */
static void
lg_resolve(struct loadgen *g, msgpack_packer *pk, struct lg_slot *s) {
    char buf[64];
    int n;

    msgpack_pack_map(pk, 5);
    PACK_LIT(pk, "id");
    n = snprintf(buf, sizeof(buf), "ev-%012llx",
                 (unsigned long long)g->next_id++);
    pack_str(pk, buf, (size_t)n);
    PACK_LIT(pk, "ts");
    msgpack_pack_int64(pk, g->ts);
    PACK_LIT(pk, "channel");
    pack_str(pk, channel_names[s->channel], strlen(channel_names[s->channel]));
    PACK_LIT(pk, "type");
    PACK_LIT(pk, "conversation.resolve");
    PACK_LIT(pk, "customer");
    msgpack_pack_map(pk, 1);
    PACK_LIT(pk, "phone");
    n = snprintf(buf, sizeof(buf), "+1555%07llu",
                 (unsigned long long)(s->resolved % 10000000));
    pack_str(pk, buf, (size_t)n);
    s->resolve = 0;
}

void
lg_event(struct loadgen *g, msgpack_packer *pk) {
    struct lg_slot *s = &g->slots[rnd(g) % g->nslots];
    const struct step *st = &scripts[s->channel].s[s->step];
    char buf[64];
    int n, is_open = s->step == 0;

    if (s->resolve) {
        lg_resolve(g, pk, s);
        return;
    }

    msgpack_pack_map(pk,
                     5 + st->queue + st->agent + (is_open && !g->anonymous));
    PACK_LIT(pk, "id");
    n = snprintf(buf, sizeof(buf), "ev-%012llx",
                 (unsigned long long)g->next_id++);
    pack_str(pk, buf, (size_t)n);
    PACK_LIT(pk, "ts");
    msgpack_pack_int64(pk, g->ts);
    g->ts += (int64_t)(rnd(g) % 3); /* a few events per millisecond */
    PACK_LIT(pk, "channel");
    pack_str(pk, channel_names[s->channel], strlen(channel_names[s->channel]));
    PACK_LIT(pk, "type");
    pack_str(pk, st->type, strlen(st->type));
    PACK_LIT(pk, "contact");
    n = snprintf(buf, sizeof(buf), "%s-%010llu", channel_names[s->channel],
                 (unsigned long long)s->contact);
    pack_str(pk, buf, (size_t)n);
    if (st->queue) {
        PACK_LIT(pk, "queue");
        const char *q = queues[s->customer % 4];
        pack_str(pk, q, strlen(q));
    }
    if (st->agent) {
        PACK_LIT(pk, "agent");
        n = snprintf(buf, sizeof(buf), "agent-%03llu",
                     (unsigned long long)(s->contact % 500));
        pack_str(pk, buf, (size_t)n);
    }
    if (is_open && !g->anonymous) {
        PACK_LIT(pk, "customer");
        pack_customer(pk, s->channel, s->customer);
    }
    if (++s->step == scripts[s->channel].n) {
        /* A third of customers come back on another channel: the contact
         * did not settle it. With a population, the others' conversations
         * are resolved. */
        int again = rnd(g) % 3 == 0;
        s->resolve = g->customers != 0 && !g->anonymous && !again;
        s->resolved = s->customer;
        new_contact(g, s, again);
    }
}

void
lg_messages(struct loadgen *g, uint64_t events, uint32_t batch,
            struct lg_msgs *out) {
    uint64_t done = 0;
    size_t cap = (size_t)(events / batch + 2);
    uint32_t k, nb;

    msgpack_sbuffer_clear(&g->sb);
    out->off = malloc(cap * sizeof(size_t));
    out->n = 0;
    out->events = events;
    while (done < events) {
        nb = (uint32_t)(events - done < batch ? events - done : batch);
        out->off[out->n++] = g->sb.size;
        if (batch > 1)
            msgpack_pack_array(&g->pk, nb);
        for (k = 0; k < nb; k++)
            lg_event(g, &g->pk);
        done += nb;
    }
    out->off[out->n] = g->sb.size;
    out->data = msgpack_sbuffer_release(&g->sb);
}

void
lg_msgs_free(struct lg_msgs *m) {
    free(m->data);
    free(m->off);
}
