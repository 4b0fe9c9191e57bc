/*
 * Engine snapshots: the engine's whole state written out and read back, so
 * that a restored engine continues exactly as the original would have (the
 * same state, the same alerts and triggers, in the same order, for the
 * same calls), and the snapshot files the daemon recovers from.
 *
 * What is state: identities (identifiers, their links with the events that
 * made them, customers with their merge and split history), conversations
 * (every field, contact history, timeline, clocks, tags, the thread index
 * and the forwarding of merged ids), open contacts (every field, long ids
 * and customer maps), queues with their waiting lists in order (callback
 * places included), names, agents, callbacks in every state (the accepted
 * ones in their order), the service-level and response-time windows, the
 * SLA schedules the running clocks use, the duplicate-id window, every
 * counter the stats report, the engine's clock, the hash seed, and the
 * timing wheel: every armed timer with its deadline and its place in its
 * slot's list, so that timers due together fire in the same order after a
 * restore. Not state: the outbox (drained after every call) and the
 * configuration.
 *
 * Canonical: the bytes depend on the engine's state, its seed and the table
 * sizes its configuration sets, never on the order in which objects were
 * inserted into its hash tables (objects are written bucket by bucket, each
 * bucket in key order). Two engines with the same state write the same
 * bytes; save(restore(save(e))) == save(e).
 *
 * Restoring takes the configuration in force now, not the one the snapshot
 * was written under. Channels are matched by name (a channel of the
 * snapshot that is no longer configured refuses the restore); a limit now
 * below what the snapshot holds (contacts, conversations, identifiers, a
 * customer's identifiers, queues, names) refuses it. Timers keep the
 * deadlines they were armed with, whatever their settings are now (an
 * idle timer re-arms with the new setting when it next fires, as after
 * cc_engine_reconfigure()); the SLA clocks keep the schedules they run
 * under (a schedule whose policy is gone keeps the policy's name; one whose
 * calendar is gone refuses the restore); new clocks take the current
 * policies. The duplicate-id window, the thread index and the forwarding
 * map keep their newest entries when their configured size is now smaller
 * (none when it is 0). The snapshot's hash seed replaces cfg->seed.
 *
 * Costs: saving is one walk over every object, O(state), with a few short
 * walks of hash chains; restoring is O(state) with tables sized once.
 *
 * Every function runs on the engine's thread (the loop thread), except
 * that cc_engine_save() and cc_snapshot_write() may also run in a child
 * forked from it.
 */
#ifndef CC_SNAPSHOT_H
#define CC_SNAPSHOT_H

#include "engine.h"

#define CC_SNAP_VERSION 1 /* the file format's version */
#define CC_SNAP_HEADER 32 /* bytes of a file's header */
#define CC_SNAP_MAGIC "CCSNAPSH"

/*
 * Writes the engine's state through write (which returns 0 or an error, and
 * is handed pieces of at most 64 KiB, in order). Allocates nothing and
 * changes nothing: it packs into a buffer on its stack, so that the daemon
 * may call it in a fork()ed child. Returns 0, the first error write
 * returned, or CC_ESTATE when the engine's structures contradict
 * themselves (a bug: nothing usable was written).
 */
int cc_engine_save(const struct cc_engine *e,
                   int (*write)(void *ctx, const void *p, size_t n), void *ctx);

/*
 * Builds a new engine (*out, freed by the caller with cc_engine_free())
 * from len bytes that cc_engine_save() wrote, under the configuration cfg
 * (copied, as cc_engine_new() copies it; its seed is replaced by the
 * snapshot's). Every length, count and reference is checked against the
 * bytes given: a damaged or hostile snapshot gives CC_EPROTO with the
 * reason and the offset in err, never a crash or an allocation larger than
 * the input warrants. A snapshot that cannot be applied to cfg (a channel
 * gone, a limit lowered, a calendar gone) gives CC_ELIMIT or CC_EINVAL with
 * the reason; CC_ENOMEM. On error *out is NULL.
 */
int cc_engine_restore(struct cc_engine **out,
                      const struct cc_engine_config *cfg, const void *buf,
                      size_t len, char *err, size_t errlen);

/*
 * Snapshot files in a directory: "<20-digit seq>.snap", seq being the
 * first journal sequence number the snapshot does not cover (replay starts
 * there). A file is a 32-byte header (the magic "CCSNAPSH", a u32 format
 * version, a u32 CRC-32C of the header's other 28 bytes, a u64 seq and a
 * u64 body length; little-endian), the body, and a u32 CRC-32C of the
 * body. The body is a u64 length and the shell's blob (the daemon's, e.g.
 * its alert log; shell may be NULL for none), then the engine's state to
 * the end of the body.
 *
 * cc_snapshot_write() writes "<name>.tmp" in dir, syncs it, renames it to
 * "<name>", syncs the directory, then removes every older snapshot but the
 * newest older one (two are kept) and every older temporary file. It calls
 * no malloc (it may run in a fork()ed child): errors name the file and
 * the reason (a full disk: ENOSPC's text) and return CC_EIO (CC_ESTATE
 * from cc_engine_save()); the temporary file is removed then.
 */
struct cc_snapshot_shell {
    size_t len; /* bytes of the blob */
    /* The blob as bytes (save NULL), or written by save through write in
     * pieces of any size, exactly len bytes in all (else CC_ESTATE);
     * save returns 0 or what write returned. It must not allocate when
     * cc_snapshot_write() runs in a fork()ed child. */
    const void *data;
    int (*save)(void *arg, int (*write)(void *ctx, const void *p, size_t n),
                void *ctx);
    void *arg;
};

int cc_snapshot_write(const char *dir, uint64_t seq, const struct cc_engine *e,
                      const struct cc_snapshot_shell *shell, char *err,
                      size_t errlen);

/*
 * Restores the newest valid snapshot in dir under cfg: *out (freed with
 * cc_engine_free()), its *seq, and a copy of its shell blob in *shell (from
 * cc_malloc, *shell_len bytes: free with cc_free(*shell, *shell_len); NULL
 * when empty). Temporary files are ignored. A snapshot that is truncated or
 * fails a checksum is skipped for the next older one, with a cc_log_warn()
 * line naming the file and the reason; one with a format version other
 * than CC_SNAP_VERSION stops the search with an error ("snapshot X: newer
 * or unknown format version N"), as does one whose engine state will not
 * restore under cfg (the reason from cc_engine_restore()). No snapshot at
 * all (or no directory) is normal: *out = NULL and 0. Snapshots present but
 * every one damaged: CC_EPROTO, so that the caller does not mistake lost
 * state for a fresh start.
 */
int cc_snapshot_load(const char *dir, const struct cc_engine_config *cfg,
                     struct cc_engine **out, uint64_t *seq, void **shell,
                     size_t *shell_len, char *err, size_t errlen);

#endif
