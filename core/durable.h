/*
 * The daemon's write-ahead journal driver: what the shell records, when it
 * is written and synced, and how it is read back. It sits between the
 * server shell and the journal (journal.h), on the loop thread.
 *
 * Every engine call that changes state is a record, appended before the
 * call: an ingest message with the time it was applied at, and a tick (the
 * engine's clock moving on with timed work due). Because the engine is
 * deterministic, replaying the records in order through a fresh engine (or
 * one restored from a snapshot) rebuilds the same state and the same
 * outputs, in the same order. A journal starts with a genesis record, the
 * time the engine was created at; a record of callback triggers handed to
 * the callback socket lets recovery know which were taken.
 *
 * Payload of a record: one byte of kind, eight bytes of a little-endian
 * number (a time in ms, or a count), then for an ingest record the
 * message as received.
 *
 * Group commit: records appended during one loop turn are written together
 * by cc_durable_kick() (one pwrite), and synced on libuv's thread pool by
 * policy: `always` starts a sync as soon as something is written and none
 * is running; `batch` waits up to sync_interval or sync_records; `off`
 * never syncs. While a sync runs, new records wait in memory and go out
 * with the next write, so concurrent producers share syncs. The loop never
 * waits for the disk. on_durable is called with the new durable mark
 * (every record below it is durable under the policy; with `off`, once
 * written) whenever it moves.
 *
 * A write that fails (a full disk, an I/O error) keeps the records in
 * memory, in order, and is retried every CC_DURABLE_RETRY_MS: they reach
 * the file, once, when space returns. Meanwhile cc_durable_accepting()
 * says no, so that the shell refuses new input rather than acknowledge
 * what is not written. A failed sync is final (see cc_journal_sync()):
 * input is refused until a restart recovers from what is on disk.
 */
#ifndef CC_DURABLE_H
#define CC_DURABLE_H

#include "cc.h"
#include "config.h"
#include "engine.h"

#include <msgpack.h>
#include <uv.h>

#define CC_DURABLE_RETRY_MS 500

/* Record kinds: the first byte of a payload. */
enum cc_durable_kind {
    CC_REC_GENESIS = 'G', /* the engine was created at the time given */
    CC_REC_INGEST = 'I',  /* a message applied at the time given */
    CC_REC_TICK = 'T',    /* the engine's clock moved to the time given */
    CC_REC_SENT = 'S'     /* this many callback triggers were sent */
};
#define CC_DURABLE_HEAD 9 /* kind and number */

struct cc_durable;

/* Called on the loop thread when the durable mark moves: every record
 * below mark is durable. */
typedef void (*cc_durable_cb)(void *arg, uint64_t mark);

/*
 * Opens the journal in <cfg->data_dir>/journal (creating both levels) for
 * appending, with cfg's fsync policy, sync_interval, sync_records,
 * segment_size and max_unwritten; first_seq is where it must continue at
 * the least (the seq of the snapshot recovery started from, or 0: see
 * struct cc_journal_opts). Blocks on the disk: call at startup, after
 * recovery has read the journal. CC_EPROTO, CC_ESTATE (another process
 * holds it) or CC_EIO with the reason in err.
 */
int cc_durable_open(struct cc_durable **out, uv_loop_t *loop,
                    const struct cc_config *cfg, uint64_t first_seq,
                    cc_durable_cb on_durable, void *arg, char *err,
                    size_t errlen);

/* Appends a record; returns its sequence number, or 0 when the record
 * could not be buffered (out of memory). */
uint64_t cc_durable_log(struct cc_durable *d, enum cc_durable_kind kind,
                        uint64_t num, const void *msg, size_t len);

/* Writes what was appended and starts a sync by policy. Call once a loop
 * turn's work is done. */
void cc_durable_kick(struct cc_durable *d);

/* Whether new input may be taken; when not, *why says why (for a reply). */
bool cc_durable_accepting(const struct cc_durable *d, const char **why);
/* Whether writes are failing now (records wait in memory). */
bool cc_durable_faulty(const struct cc_durable *d);

/* The durable mark: every record below it is durable. */
uint64_t cc_durable_mark(const struct cc_durable *d);
/* The sequence number of the last record appended (0: none yet). */
uint64_t cc_durable_last(const struct cc_durable *d);
/* Whether every appended record is durable and no sync is running. */
bool cc_durable_idle(const struct cc_durable *d);

/* A snapshot covers every record below seq: the segments that hold only
 * such records are removed, now or, while a sync runs, when it ends. The
 * unlinks and the directory's sync run on the loop thread (once per
 * snapshot); a failure is logged and the segments stay. */
void cc_durable_trim(struct cc_durable *d, uint64_t seq);

/* Writes and syncs everything appended, blocking (shutdown, with no sync
 * running: after the loop has stopped). 0 or CC_EIO (logged). */
int cc_durable_flush(struct cc_durable *d);

/* Closes its handles (the loop must run to finish closing), then
 * cc_durable_free() after the loop has run. */
void cc_durable_close(struct cc_durable *d);
void cc_durable_free(struct cc_durable *d);

/* Packs {"dir", "fsync", "state", ...} as one map for stats. */
void cc_durable_pack_stats(const struct cc_durable *d, msgpack_packer *pk);

/* The head of a record's payload: kind and number. */
void cc_durable_head(unsigned char head[CC_DURABLE_HEAD],
                     enum cc_durable_kind kind, uint64_t num);

/*
 * Replay: the records read back from the journal, applied to an engine as
 * the shell applied them live. A genesis record creates the engine (under
 * ec, at its time), an ingest record is ingested at its time, a tick moves
 * the engine's clock. A sent record changes no engine state: its count is
 * for the caller's trigger backlog.
 *
 * Consecutive ingest records of one time are held and applied together by
 * one cc_engine_ingest_many() call (up to CC_REPLAY_GROUP of them, or
 * CC_REPLAY_BYTES of small ones): the same result as one call each, which
 * is how live ingest applied them, and the engine overlaps their memory
 * accesses. Any other record applies what is held first, and so does
 * cc_replay_flush(). The engine's outbox is the caller's to take, after
 * each record or at the end; before acting on a sent count (the triggers
 * taken must be in the backlog first).
 */
#define CC_REPLAY_GROUP 64
#define CC_REPLAY_BYTES ((size_t)256 << 10)

struct cc_replay {
    struct cc_engine **e;
    const struct cc_engine_config *ec;
    uint64_t now; /* the latest time applied */
    /* The held ingest records: copied into buf back to back. */
    uint32_t held;
    uint64_t held_now;
    size_t used;
    unsigned char *buf; /* CC_REPLAY_BYTES */
    struct cc_msgbuf msgs[CC_REPLAY_GROUP];
    struct cc_ingest_report reps[CC_REPLAY_GROUP];
};

/* Starts a replay into *e: NULL until a genesis record creates it, or the
 * engine a snapshot restored. 0 or CC_ENOMEM. */
int cc_replay_init(struct cc_replay *r, struct cc_engine **e,
                   const struct cc_engine_config *ec);
/*
 * Takes the record seq (payload p, n bytes). *sent is the count of a sent
 * record, else 0. Returns 0, CC_ENOMEM, or CC_EPROTO with the reason in
 * err: not a contactd record, a genesis record where an engine exists, any
 * other where none does (the journal starts after where an engine began,
 * and no snapshot covers what came before).
 */
int cc_replay_record(struct cc_replay *r, uint64_t seq, const void *p, size_t n,
                     uint64_t *sent, char *err, size_t errlen);
/* Applies the held records, if any. */
void cc_replay_flush(struct cc_replay *r);
/* Applies the held records and frees what the replay holds. */
void cc_replay_fini(struct cc_replay *r);

/* Splits a payload read back: 0, or CC_EPROTO for one too short or of an
 * unknown kind. *msg and *len are the message of an ingest record. */
int cc_durable_parse(const void *p, size_t n, enum cc_durable_kind *kind,
                     uint64_t *num, const void **msg, size_t *len);

/* "always", "batch", "off". */
const char *cc_fsync_name(int policy);

/* <data_dir>/journal, into buf (CC_EINVAL when it does not fit). */
int cc_durable_journal_dir(const struct cc_config *cfg, char *buf, size_t n);

#endif
