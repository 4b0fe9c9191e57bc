/*
 * The load generator: a realistic multichannel mix of protocol v1 events.
 * It keeps `slots` conversations in flight; each step advances one slot,
 * chosen at random, through the script of its channel:
 *   phone  open, queue.join, agent.answer, hold.start, hold.end, close
 *   chat   open, queue.join, agent.answer, message.in/out x2, close
 *   email  open, message.in, message.out, close
 *   social open, message.in/out x2, close
 * Channels are drawn 40/30/20/10. When a contact closes, the slot's
 * customer comes back on another channel one time in three (a channel
 * switch), otherwise another customer arrives: with a population of
 * `customers`, new ones until all of them have come, then one of them
 * drawn at random (a returning customer), and the
 * conversation of the contact that ended is resolved first
 * (conversation.resolve naming the customer's phone); with no population,
 * always a new customer and nothing is resolved. An anonymous load names
 * no customer at all (contacts only: identity and conversations idle).
 * Events are packed into MessagePack messages of `batch` events each.
 */
#ifndef CC_LOADGEN_H
#define CC_LOADGEN_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

struct lg_slot;

struct loadgen {
    struct lg_slot *slots;
    uint32_t nslots;
    uint64_t rng;
    uint64_t next_id;
    uint64_t next_contact;
    uint64_t next_customer;
    uint64_t customers; /* population; 0: every customer is new */
    int anonymous;      /* no customer identifiers, nothing resolved */
    int64_t ts;
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

/* A list of packed messages in one buffer. */
struct lg_msgs {
    char *data;
    size_t *off; /* off[i]..off[i+1] is message i */
    size_t n;
    uint64_t events;
};

int lg_init(struct loadgen *g, uint32_t slots, uint64_t customers,
            uint64_t seed, int64_t ts0);
void lg_fini(struct loadgen *g);
/* Packs one event into pk. */
void lg_event(struct loadgen *g, msgpack_packer *pk);
/* Packs `events` events as messages of `batch` (1 = a bare map). */
void lg_messages(struct loadgen *g, uint64_t events, uint32_t batch,
                 struct lg_msgs *out);
void lg_msgs_free(struct lg_msgs *m);

#endif
