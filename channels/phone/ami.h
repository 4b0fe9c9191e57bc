/*
 * The Asterisk Manager Interface (AMI) adapter: Asterisk's queue calls and
 * queue members as core events on the phone channel (or the channel named
 * in [ami] channel).
 *
 * Three parts, each with its own contract below:
 *
 * - The framing parser (pure): AMI's "Key: Value" lines, a blank line
 *   ending each message, taken in whatever chunks TCP delivers them. It
 *   holds at most one message of max_message bytes, whatever the input:
 *   a message that is too large, has too many fields or holds binary
 *   garbage is dropped, counted under a reason, and the parser picks up
 *   again at the next blank line.
 * - The mapper (pure): AMI events to core events (struct cc_nev) appended
 *   to a batch. It keeps a bounded table of calls (by Linkedid) and of
 *   queue members, so that it knows a caller's channel from an agent's and
 *   what state the engine holds each call in, and emits only the
 *   transitions the engine accepts. docs/channels.md gives the mapping.
 * - The client (libuv): a TCP session to Asterisk that logs in, keeps the
 *   session alive, reconnects with backoff, and submits what the mapper
 *   makes through the adapter host. It also withdraws from Asterisk's
 *   queue a caller who accepted a callback.
 *
 * Everything runs on the loop thread; nothing here is thread-safe.
 * AMI 2.x (Asterisk 12 and later) event names and fields are mapped; an
 * older server is logged as such and its renamed events are ignored.
 */
#ifndef CC_AMI_H
#define CC_AMI_H

#include "adapter.h"
#include "config.h"

#include <msgpack.h>
#include <uv.h>

/* ---- framing ------------------------------------------------------------ */

/* Fields per message (an EndpointDetail carries about 110; ChanVariable
 * lines repeat). A message with more is dropped. */
#define CC_AMI_MAX_FIELDS 512
/* The longest line taken when the caller does not say (never more than
 * max_message). */
#define CC_AMI_MAX_LINE (64u * 1024u)

/* The reasons the parser and the mapper count under (static strings, for
 * cc_adapter_rejected()). */
#define CC_AMI_R_TOO_BIG "ami: message over max_message"
#define CC_AMI_R_FIELDS "ami: message with too many fields"
#define CC_AMI_R_LONG_LINE "ami: line too long"
#define CC_AMI_R_NUL "ami: NUL byte in a line"
#define CC_AMI_R_NO_COLON "ami: line without a colon"
#define CC_AMI_R_EMPTY_KEY "ami: line with an empty key"
#define CC_AMI_R_CTRL_KEY "ami: control bytes in a key"
#define CC_AMI_R_LONG_ID "ami: Uniqueid or Linkedid over 63 bytes"
#define CC_AMI_R_LONG_NAME "ami: queue or member name over 128 bytes"
#define CC_AMI_R_MANY_QUEUES "ami: member in more than 16 queues"

/* One field. Both strings borrow the parser's buffer; value is trimmed of
 * the spaces around it and may be empty (n == 0, p != NULL). */
struct cc_ami_field {
    struct cc_str key, value;
};

/* One message: its fields in the order received. */
struct cc_ami_msg {
    const struct cc_ami_field *f;
    uint32_t n;
    uint32_t bytes; /* on the wire, line ends included */
};

struct cc_ami_parser_stats {
    uint64_t bytes;            /* fed */
    uint64_t messages;         /* complete messages handed out */
    uint64_t greetings;        /* "Asterisk Call Manager/x.y.z" lines */
    uint64_t dropped_messages; /* messages dropped under a reason */
    uint64_t dropped_lines;    /* lines dropped between messages */
};

struct cc_ami_parser;

/*
 * Creates a parser that holds messages of at most max_message bytes (the
 * buffer is allocated here, once) and lines of at most max_line bytes
 * (0: CC_AMI_MAX_LINE; capped at max_message). Each drop is also counted
 * with cc_adapter_reject() in st when st is not NULL (st must outlive the
 * parser). Returns 0, CC_EINVAL or CC_ENOMEM. Free with
 * cc_ami_parser_free().
 */
int cc_ami_parser_new(struct cc_ami_parser **out, size_t max_message,
                      size_t max_line, struct cc_adapter_stats *st);
void cc_ami_parser_free(struct cc_ami_parser *p);
/* Forgets any partial message and the greeting: a new connection. */
void cc_ami_parser_reset(struct cc_ami_parser *p);

/*
 * Takes bytes from data, up to len, and returns how many it consumed (at
 * least one when len > 0). When a message completes it stops there and
 * sets *msg to it, valid until the next call on p; otherwise *msg is NULL
 * and every byte was consumed. Call it again with the rest:
 *
 *     while (len > 0) {
 *         size_t n = cc_ami_parser_feed(p, data, len, &msg);
 *         data += n, len -= n;
 *         if (msg != NULL)
 *             use(msg);
 *     }
 *
 * Lines end in CRLF or LF (CR before LF is dropped, mixed endings are
 * fine). A blank line, or one of only spaces and tabs, ends a message; one
 * before any field is nothing. The greeting line the server sends first is
 * kept (cc_ami_parser_greeting()), not returned as a message. A "Response:
 * Follows" message (the command output of Asterisk before 14) takes every
 * line up to "--END COMMAND--" as a field named "Output".
 */
size_t cc_ami_parser_feed(struct cc_ami_parser *p, const char *data, size_t len,
                          const struct cc_ami_msg **msg);
const struct cc_ami_parser_stats *
cc_ami_parser_stats(const struct cc_ami_parser *p);
/* The last greeting line seen since the last reset ("" for none). */
const char *cc_ami_parser_greeting(const struct cc_ami_parser *p);

/* The value of the first field named key (AMI keys are case-insensitive).
 * Returns false when there is none. */
bool cc_ami_get(const struct cc_ami_msg *m, const char *key,
                struct cc_str *out);
/* Iterates over the fields named key: start with *i = 0; each call
 * returns the next one's value and moves *i past it. */
bool cc_ami_next(const struct cc_ami_msg *m, const char *key, uint32_t *i,
                 struct cc_str *out);
/* Whether v equals lit, ignoring ASCII case. */
bool cc_ami_is(struct cc_str v, const char *lit);

/* ---- mapping ------------------------------------------------------------ */

/* How long a QueueCallerLeave waits for the AgentConnect that tells an
 * answer from a caller leaving on its own (ms of host time). Asterisk
 * sends the two back to back when a member answers. */
#define CC_AMI_LEAVE_GRACE_MS 5000
#define CC_AMI_MAX_CALLS 4096
#define CC_AMI_MAX_MEMBERS 1024

struct cc_ami_map_config {
    const char *channel;     /* the event channel (copied; at most 127 bytes) */
    bool moh_as_hold;        /* MusicOnHoldStart/Stop while connected: hold */
    uint32_t max_calls;      /* 0: CC_AMI_MAX_CALLS */
    uint32_t max_members;    /* 0: CC_AMI_MAX_MEMBERS */
    uint64_t leave_grace_ms; /* 0: CC_AMI_LEAVE_GRACE_MS */
    uint64_t start_ms;       /* the run's start: part of every event id */
    uint64_t seed;           /* for the tables' hash */
};

struct cc_ami_map_stats {
    uint64_t calls, members;  /* in the tables now */
    uint64_t pending_leaves;  /* QueueCallerLeave waiting for its outcome */
    uint64_t evicted_calls;   /* the least recently active, when full */
    uint64_t evicted_members; /* the same */
    uint64_t swept_calls;     /* found gone by a sweep */
    uint64_t events;          /* core events made */
};

struct cc_ami_map;

/* Returns 0, CC_EINVAL (no channel, or one too long) or CC_ENOMEM. Free
 * with cc_ami_map_free(). */
int cc_ami_map_new(struct cc_ami_map **out,
                   const struct cc_ami_map_config *cfg);
void cc_ami_map_free(struct cc_ami_map *m);

/*
 * Maps one message received at now (host ms: the events' time when they
 * carry no Timestamp field) and appends its core events to out. Counts the
 * message in st: received, and ignored when it made nothing; a message
 * whose fields cannot be used is counted under a reason. Returns the
 * number of events appended.
 */
uint32_t cc_ami_map_msg(struct cc_ami_map *m, const struct cc_ami_msg *msg,
                        uint64_t now, struct cc_evbuf *out,
                        struct cc_adapter_stats *st);
/*
 * Appends the queue.leave of every call whose QueueCallerLeave has waited
 * its grace by now without an answer. Returns the number appended.
 */
uint32_t cc_ami_map_flush(struct cc_ami_map *m, uint64_t now,
                          struct cc_evbuf *out);
/* When a leave next falls due (host ms), or UINT64_MAX. */
uint64_t cc_ami_map_next_flush(const struct cc_ami_map *m);

/*
 * A sweep finds the calls that ended while the session was down (their
 * Hangup was never received; after an Asterisk restart, all of them):
 * begin it when the CoreShowChannels list is asked for; every call that
 * any event mentions from then on (each CoreShowChannel of the list, or a
 * new call) is alive; at the list's end, sweep_end closes the others as
 * their Hangup would have (queue.leave of a pending leave, contact.close at
 * now) and forgets them. Returns the number of calls closed. An end
 * without a begin does nothing.
 */
void cc_ami_map_sweep_begin(struct cc_ami_map *m);
uint32_t cc_ami_map_sweep_end(struct cc_ami_map *m, uint64_t now,
                              struct cc_evbuf *out);

/*
 * The engine took contact (a call's Linkedid) out of the live queue (an
 * accepted callback): the call no longer counts as queued, so the
 * QueueCallerLeave or Abandon that Asterisk sends for it makes nothing.
 * Returns 0 and the caller's channel name (n == 0 when it is not known)
 * and queue, borrowed from the table and valid until the next call on m,
 * when the call is known and waits in a queue; CC_ENOENT for an unknown
 * call; CC_ESTATE for one not waiting in a queue (nothing changes).
 */
int cc_ami_map_withdraw(struct cc_ami_map *m, struct cc_str contact,
                        struct cc_str *channel, struct cc_str *queue);
/* The call's state as the mapper tracks it: "open", "queued", "leaving"
 * (left, outcome not known yet), "connected", "held", "closed", or NULL
 * for an unknown call. For tests and logs. */
const char *cc_ami_map_call_state(const struct cc_ami_map *m,
                                  struct cc_str contact);
void cc_ami_map_stats(const struct cc_ami_map *m, struct cc_ami_map_stats *out);

/* ---- the client --------------------------------------------------------- */

struct cc_ami_client;

/*
 * Creates a client for cfg (copied) on loop, submitting to host (copied;
 * its ctx must outlive the client). Nothing happens until
 * cc_ami_client_start(). Returns 0, CC_EINVAL (a username or secret with a
 * line break, no host) or CC_ENOMEM.
 */
int cc_ami_client_new(struct cc_ami_client **out, uv_loop_t *loop,
                      const struct cc_ami_config *cfg,
                      const struct cc_adapter_host *host);
/* Connects, and keeps connecting until closed. */
void cc_ami_client_start(struct cc_ami_client *c);
/*
 * A caller accepted a callback (the engine's queue.withdraw notice): with
 * [ami] withdraw_on_callback on, and when the call is known, waits in a
 * queue and the session is up, sends QueueWithdrawCaller (Asterisk 16 and
 * later) for the caller's channel, so that Asterisk stops offering it to
 * agents. queue is the engine's; the call table's own is used. Counted in
 * withdrawals, or withdraw_skipped.
 */
void cc_ami_client_withdraw(struct cc_ami_client *c, struct cc_str contact,
                            struct cc_str queue);
/* Closes every handle; done(arg) runs once all are closed, then free with
 * cc_ami_client_free(). Pending writes are cancelled. */
void cc_ami_client_close(struct cc_ami_client *c, void (*done)(void *arg),
                         void *arg);
void cc_ami_client_free(struct cc_ami_client *c);
const struct cc_adapter_stats *
cc_ami_client_stats(const struct cc_ami_client *c);
/* The counters of cc_adapter_pack_stats() plus connected (bool), logins,
 * login_failures, keepalive_timeouts, withdrawals, withdraw_skipped,
 * parser {messages, greetings, dropped_messages, dropped_lines} and calls
 * {open, swept, pending_leaves, evicted, members, members_evicted}. */
void cc_ami_client_pack_stats(const struct cc_ami_client *c,
                              msgpack_packer *pk);

#endif
