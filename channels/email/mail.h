/*
 * The email adapter: a support mailbox kept as a Maildir, read into core
 * events.
 *
 * Two halves. mail.c owns the pure part: it parses one message's bytes
 * with GMime 3 (headers only: the engine takes no bodies), classifies it
 * (a customer's message, a support team reply, an auto-reply, a bounce)
 * and maps it to one struct cc_nev. It does no I/O and keeps no state
 * besides GMime's one-time initialisation, so any thread may call it.
 * maildir.c owns the watcher: it finds new files in the Maildir's new/,
 * reads and parses them on libuv's thread pool one at a time, submits the
 * events through the adapter host on the loop, and moves each file to cur/
 * (or to the quarantine) once its outcome is final.
 *
 * Threading follows docs/protocol.md: the event id is the Message-ID, the
 * contact is the thread's root message id, reply_to the message answered,
 * so the engine joins a reply to its thread's conversation even when the
 * reply names another address.
 */
#ifndef CC_MAIL_H
#define CC_MAIL_H

#include "adapter.h"
#include "config.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* ---- the support team's addresses --------------------------------------- */

#define CC_MAIL_SUPPORT_MAX 32 /* addresses in [maildir] support */

/* Lower-cased addresses; each is at most CC_NAME_MAX bytes because it is
 * sent as a message.out's agent. */
struct cc_mail_support {
    uint32_t n;
    char addr[CC_MAIL_SUPPORT_MAX][CC_NAME_MAX + 1];
};

/*
 * Reads a list of addresses separated by commas and/or white space
 * ("help@example.com, billing@example.com"). An empty list is valid: no
 * message is then a support reply. Returns 0, or CC_EINVAL with the reason
 * in err (an entry that is not one address with text on both sides of one
 * '@', longer than CC_NAME_MAX bytes, or more than CC_MAIL_SUPPORT_MAX
 * entries).
 */
int cc_mail_support_parse(struct cc_mail_support *s, const char *list,
                          char *err, size_t errlen);
/* The configured spelling of addr when it is a support address (compared
 * case-insensitively), else NULL. */
const char *cc_mail_support_find(const struct cc_mail_support *s,
                                 const char *addr);

/* ---- one message ------------------------------------------------------- */

/* A header block larger than this is refused: no real mail needs it and
 * GMime would hold all of it. */
#define CC_MAIL_HEADER_MAX (1024 * 1024)

enum cc_mail_kind {
    CC_MAIL_IN,         /* from a customer: message.in */
    CC_MAIL_OUT,        /* from a support address: message.out */
    CC_MAIL_AUTO_REPLY, /* written by a program (vacation, receipt): none */
    CC_MAIL_BOUNCE      /* a delivery report: none */
};

/* What a message is, as the adapter uses it. Every string is
 * NUL-terminated and owned by the struct; "" means absent. Message ids are
 * kept in the form they are sent in: without angle brackets, and an id
 * longer than CC_ID_MAX bytes (or not UTF-8) replaced by "mid:" and the
 * hex SHA-256 of it, the same for a message's own id and for the ids that
 * name it, so that threading still matches. */
struct cc_mail {
    enum cc_mail_kind kind;
    /* For CC_MAIL_AUTO_REPLY and CC_MAIL_BOUNCE: what gave it away, a
     * static string ("Auto-Submitted", "multipart/report", ...). */
    const char *automatic;
    /* The Message-ID, or "mail:" and the hex SHA-256 of the whole file
     * when there is no valid one (has_message_id false). */
    char id[CC_ID_MAX + 1];
    bool has_message_id;
    char in_reply_to[CC_ID_MAX + 1]; /* its first valid id */
    /* The first and last valid ids of the References headers (all of
     * them, in order: some mailers write two), and how many there were. */
    char ref_first[CC_ID_MAX + 1], ref_last[CC_ID_MAX + 1];
    uint32_t nrefs;
    /* The first From mailbox with a usable address (one '@' with text on
     * both sides, no spaces, commas, brackets or control characters, valid
     * UTF-8, at most CC_IDENT_MAX bytes), as written (not lower-cased);
     * when GMime reads no address list ("From: Big Bug bb@bug.com"), the
     * first word of the header that is such an address. */
    char from[CC_IDENT_MAX + 1];
    char sender[CC_IDENT_MAX + 1]; /* the Sender header's address */
    /* The customer's address: From for CC_MAIL_IN; for CC_MAIL_OUT the
     * first usable To, then Cc, address that is not a support address
     * ("" when the reply went to support addresses only). */
    char customer[CC_IDENT_MAX + 1];
    /* CC_MAIL_OUT: the support address, as configured. */
    char agent[CC_NAME_MAX + 1];
    /* The Subject decoded to UTF-8 (RFC 2047, or raw 8-bit text read as
     * UTF-8 else windows-1252), white space and control characters folded
     * to single spaces, trimmed, and cut to at most CC_NAME_MAX bytes on a
     * character boundary. */
    char subject[CC_NAME_MAX + 1];
    /* The Date header (ms since the Unix epoch), or CC_MAIL_NO_DATE when
     * absent or unreadable. */
    int64_t date_ms;
};

#define CC_MAIL_NO_DATE INT64_MIN

/*
 * Parses one message (len bytes at buf; the body may be absent) and
 * classifies it against the support addresses (sup may be NULL: none).
 * Returns 0, or CC_EPROTO with *why set to a static reason for the
 * quarantine: "empty file", "header block larger than 1 MiB", "not a mail
 * message", "no usable From address". An auto-reply or bounce is not an
 * error (kind says what it is), even without a usable From.
 * Thread-safe; blocks only on the CPU (GMime, and SHA-256 of the bytes when
 * there is no Message-ID).
 */
int cc_mail_parse(const void *buf, size_t len,
                  const struct cc_mail_support *sup, struct cc_mail *out,
                  const char **why);

/* How far the Date header may lie from the delivery time and still be
 * taken as the event's time: clients' clocks drift and mail queues hold
 * messages, but a Date a week old or in the future is wrong. */
#define CC_MAIL_DATE_BEFORE_MS (24LL * 3600 * 1000)
#define CC_MAIL_DATE_AFTER_MS (5LL * 60 * 1000)

/*
 * The event for m on channel: message.in or message.out. delivered_ms is
 * when the message arrived (the file's mtime); it is the event's time
 * unless the Date header lies within CC_MAIL_DATE_BEFORE_MS before to
 * CC_MAIL_DATE_AFTER_MS after it. ev borrows m's strings and channel.
 * Returns false, leaving ev untouched, for an auto-reply or a bounce, which
 * the engine is not told about.
 */
bool cc_mail_map(const struct cc_mail *m, const char *channel,
                 int64_t delivered_ms, struct cc_nev *ev);

/* ---- the Maildir watcher ------------------------------------------------ */

struct cc_maildir;

/* The watcher's own counters, besides struct cc_adapter_stats (received:
 * mail files with a final outcome; mapped: events the engine took or
 * already had; ignored: auto-replies and bounces; rejected: files
 * quarantined, under their reason, and events refused, under "event:
 * <code>"). */
struct cc_maildir_counters {
    uint64_t auto_replies, bounces;
    uint64_t quarantined; /* files moved into the quarantine */
    /* Files left in new/ to be tried again at the next rescan: the engine
     * was overloaded, a read failed for a reason that may pass, or a move
     * failed. */
    uint64_t deferred;
    uint64_t pending; /* files known and not yet done (queued, in flight) */
    uint64_t scans;   /* scans of new/ completed */
    uint64_t moved;   /* files moved into cur/ */
};

/*
 * Creates a watcher on loop for the Maildir of cfg (copied), submitting
 * through host (copied; its ctx must outlive the watcher). Checks the
 * configuration only (the support list, the channel); touches no file.
 * Returns 0 and *out, or CC_EINVAL / CC_ENOMEM with the reason in err. A
 * watcher that was created is ended by cc_maildir_close(), then
 * cc_maildir_free() once close's done has run. Loop thread only.
 */
int cc_maildir_new(struct cc_maildir **out, uv_loop_t *loop,
                   const struct cc_maildir_config *cfg,
                   const struct cc_adapter_host *host, char *err,
                   size_t errlen);
/*
 * Creates new/, cur/ and tmp/ and the quarantine folder when missing,
 * starts watching new/ and the periodic rescan, and starts the first scan
 * (files already waiting are processed oldest first). Returns 0, or
 * CC_EINVAL (cfg->path is not a directory, the quarantine is not a
 * directory or is on another file system), CC_EIO (a folder could not be
 * created, the watch failed) or CC_ESTATE (started twice), with the
 * reason in err. Blocks on a few file system calls.
 */
int cc_maildir_start(struct cc_maildir *m, char *err, size_t errlen);
/*
 * Stops watching and calls done(arg) on the loop once the work in flight
 * has ended and the handles are closed. A file being read when close is
 * called is left in new/ for the next start; a move in flight completes.
 */
void cc_maildir_close(struct cc_maildir *m, void (*done)(void *arg), void *arg);
/* Frees the watcher (NULL is fine): after close's done has run. */
void cc_maildir_free(struct cc_maildir *m);

const struct cc_adapter_stats *cc_maildir_stats(const struct cc_maildir *m);
void cc_maildir_counters(const struct cc_maildir *m,
                         struct cc_maildir_counters *out);
/* Packs the counters of cc_adapter_pack_stats() plus auto_replies,
 * bounces, quarantined, deferred and pending as one map. */
void cc_maildir_pack_stats(const struct cc_maildir *m, msgpack_packer *pk);
/* The host's journal made every record below mark durable: the file
 * whose event waited for it moves on. */
void cc_maildir_durable(struct cc_maildir *m, uint64_t mark);

#endif
