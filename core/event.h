/*
 * The event model of wire protocol v1 and its decoder. An incoming message
 * is one MessagePack map (one event) or an array of maps (a batch). The
 * decoder checks the whole message is well-formed before any event in it is
 * used, then yields events one by one; each is either a valid struct
 * cc_event or a rejection with a reason. Decoded events borrow the message
 * buffer: whoever keeps a field must copy it.
 */
#ifndef CC_EVENT_H
#define CC_EVENT_H

#include "cc.h"
#include "mp.h"

#include <stdbool.h>

enum cc_event_type {
    CC_EV_CONTACT_OPEN,
    CC_EV_MESSAGE_IN,
    CC_EV_MESSAGE_OUT,
    CC_EV_QUEUE_JOIN,
    CC_EV_QUEUE_LEAVE,
    CC_EV_AGENT_ANSWER,
    CC_EV_HOLD_START,
    CC_EV_HOLD_END,
    CC_EV_TRANSFER,
    CC_EV_CONTACT_CLOSE,
    CC_EV_CONVERSATION_RESOLVE,
    CC_EV_AGENT_STATUS,
    CC_EV_IDENTITY_LINK,
    CC_EV_IDENTITY_UNLINK,
    CC_EV_FEEDBACK,
    CC_EV_CALLBACK_ACCEPTED,
    CC_EV_CALLBACK_DECLINED,
    CC_EV_CALLBACK_COMPLETED,
    CC_EV_CALLBACK_FAILED,
    CC_EV__COUNT
};

/* "contact.open", ... */
const char *cc_event_type_name(enum cc_event_type t);

/* Channels are data: the four built in plus any named in the config. */
#define CC_MAX_CHANNELS 32
#define CC_CHANNEL_NAME_MAX 32
struct cc_channels {
    uint32_t n;
    char names[CC_MAX_CHANNELS][CC_CHANNEL_NAME_MAX];
    uint8_t len[CC_MAX_CHANNELS]; /* strlen of each name */
};

/* Fills in phone, chat, email, social (indexes 0-3). */
void cc_channels_init(struct cc_channels *c);
/* Adds a channel name: lower-case letters, digits, '_' and '-', at most
 * CC_CHANNEL_NAME_MAX-1 bytes. Returns CC_EEXIST, CC_EINVAL or CC_ELIMIT. */
int cc_channels_add(struct cc_channels *c, const char *name);
/* Index of a channel, or -1. */
int cc_channels_find(const struct cc_channels *c, struct cc_str name);
/* Whether s (n bytes) is a name of a-z, 0-9, '_' and '-', shorter than
 * max: channels, SLA policies and calendars. */
bool cc_label_ok(const char *s, size_t n, size_t max);

/* Why an event was rejected. Stable names (cc_reason_name) key the stats. */
enum cc_reason {
    CC_R_NOT_MAP,         /* the event is not a map */
    CC_R_KEY_NOT_STRING,  /* a map key is not a string */
    CC_R_MISSING,         /* a required key is absent */
    CC_R_WRONG_TYPE,      /* a key has the wrong MessagePack type */
    CC_R_OUT_OF_RANGE,    /* a number is outside its range */
    CC_R_TOO_LONG,        /* a string or array is longer than allowed */
    CC_R_EMPTY,           /* an empty string where a value is needed */
    CC_R_UNKNOWN_CHANNEL, /* channel not built in nor configured */
    CC_R_UNKNOWN_TYPE,    /* type not in protocol v1 */
    CC_R_BAD_VALUE,       /* a string outside its allowed set */
    CC_R_STATE,           /* makes no sense for the contact's state */
    CC_R_LIMIT,           /* a configured limit is reached */
    CC_R__COUNT
};

const char *cc_reason_name(enum cc_reason r);

struct cc_reject {
    enum cc_reason code;
    const char *key;    /* the key concerned, or NULL */
    const char *detail; /* static text: what was expected */
};

/* Writes "key 'ts' must be an integer"-style text; returns its length. */
size_t cc_reject_format(const struct cc_reject *r, char *buf, size_t n);

/* Field limits: longer values are rejected with CC_R_TOO_LONG. */
#define CC_ID_MAX 256
#define CC_NAME_MAX 128 /* queue, agent, topic, state, scale */
#define CC_CONTACT_MAX 512
#define CC_TAGS_MAX 32
#define CC_IDENT_MAX 256
#define CC_CUSTOMER_KEYS_MAX 32
/* The last millisecond of the year 9999. */
#define CC_TS_MAX 253402300799999LL

enum cc_ident_kind {
    CC_IDENT_PHONE,
    CC_IDENT_EMAIL,
    CC_IDENT_CHAT,
    CC_IDENT_SOCIAL,
    CC_IDENT_CRM,
    CC_IDENT__COUNT
};

/* "customer.phone", ...: the key an identifier arrives under. */
const char *cc_ident_key(enum cc_ident_kind kind);
/* The kind a customer map key names ("phone", ...), or CC_IDENT__COUNT. */
int cc_ident_kind_of(struct cc_str key);

enum {
    CC_EVF_PRIORITY = 1 << 0,
    CC_EVF_SENTIMENT = 1 << 1,
    CC_EVF_SCORE = 1 << 2,
    CC_EVF_CUSTOMER = 1 << 3,
    /* `at` or `reason` could not be read: refused only by the types that
     * use them (other types ignore the keys, as before they had any). */
    CC_EVF_BAD_AT = 1 << 4,
    CC_EVF_BAD_REASON = 1 << 5,
    CC_EVF_BAD_WRAPUP = 1 << 6
};

struct cc_event {
    struct cc_str id;
    int64_t ts; /* ms since the Unix epoch */
    uint8_t channel;
    uint8_t type; /* enum cc_event_type */
    uint8_t flags;
    int8_t priority;
    struct cc_str contact, queue, agent, topic, reply_to, state, scale;
    /* customer: the raw MessagePack map, and each known identifier. */
    const uint8_t *customer;
    uint32_t customer_len;
    struct cc_str ident[CC_IDENT__COUNT];
    /* tags and queues: raw arrays of strings, already validated. */
    const uint8_t *tags;
    uint32_t tags_len, ntags;
    const uint8_t *queues;
    uint32_t queues_len, nqueues;
    int64_t score;
    double sentiment;
    /* callback.accepted: the time the customer asked to be called (0:
     * none); callback.failed: why (no_answer, busy, voicemail, ...). */
    int64_t at;
    struct cc_str reason;
    /* contact.close: the agent's wrap-up after the call, ms (0: none). */
    int64_t wrapup_ms;
};

/* Iterates the events of one message. */
struct cc_msg_iter {
    struct cc_mp mp;
    uint32_t count;    /* events in the message */
    uint32_t index;    /* index of the next event */
    bool batch;        /* the message was an array */
    bool lazy;         /* one map, validated while decoded */
    const char *error; /* why cc_msg_next returned CC_MSG_MALFORMED */
};

/*
 * Checks that buf holds an event map or an array, and prepares to iterate.
 * An array (a batch) is checked whole here: exactly one well-formed value,
 * so a malformed tail cannot leave half a batch applied. A single map is
 * checked as it is decoded, which saves a pass over every one-event
 * message: cc_msg_next() reports it malformed. On failure returns CC_EPROTO
 * and points *err at a static reason for the {"error"} reply.
 */
int cc_msg_open(struct cc_msg_iter *it, const void *buf, size_t len,
                const char **err);

/*
 * Decodes the next event. Returns 1 with *ev filled, 0 when the event was
 * rejected (*rej says why; the iterator moved past it), -1 at the end, or
 * CC_MSG_MALFORMED when a single-event message turns out not to be
 * well-formed MessagePack: the whole message is refused, it->error says
 * why, exactly as if cc_msg_open() had failed.
 */
#define CC_MSG_MALFORMED (-2)
int cc_msg_next(struct cc_msg_iter *it, const struct cc_channels *ch,
                struct cc_event *ev, struct cc_reject *rej);

#endif
