/*
 * The journal: every accepted event, in order, on disk before the engine
 * applies it. This module owns the on-disk format, the writer (append into
 * memory, write a whole loop iteration's records at once, sync as a
 * separate step so that the fsync can run off the loop thread), the reader
 * that recovery replays from, and repair. It knows nothing of events: a
 * record is an opaque payload with a sequence number. It does no I/O on
 * its own initiative and starts no threads.
 *
 * On disk (every integer little-endian):
 *
 * A journal is a directory of segment files named by the sequence number
 * of their first record, 20 decimal digits and ".seg"
 * ("00000000000000000001.seg"). Other files in the directory are ignored.
 *
 * Segment header, 32 bytes:
 *   0  8  magic "CCJOURNL"
 *   8  4  format version, 1
 *  12  4  CRC-32C of bytes 0..11 followed by bytes 16..31 (the 28 other
 *         bytes of the header, in order)
 *  16  8  sequence number of the segment's first record (equal to the name)
 *  24  8  reserved, 0
 *
 * Then records, back to back, to the end of the file:
 *   0  4  payload length n, 1 .. CC_JOURNAL_MAX_PAYLOAD
 *   4  4  CRC-32C of the record's sequence number as 8 little-endian bytes
 *         followed by the n payload bytes
 *   8  n  payload
 * A record's sequence number is not stored: it is the segment's first plus
 * the record's index. Because the CRC covers it, a record that turns up at
 * another place (another index, another segment) fails its check. Empty
 * payloads are refused so that a zeroed header (a hole the file system
 * left after a power cut) is never a valid record. A record never spans
 * segments; each segment starts where the previous one ended.
 *
 * Damage is told apart by where it is. A torn tail (a crash in the middle
 * of a write) is damage at the end of the last segment: a record, or the
 * segment header, cut short by the end of the file, or one whose checksum
 * fails with nothing but zero bytes after it. Anything else (a bad record
 * with data after it, a bad record in a segment that is not the last, a
 * gap or overlap between segments, a bad header, a declared length over
 * the maximum) is corruption. A torn tail is expected after a crash and
 * dropped with a log line; corruption stops recovery until an operator
 * runs repair. A header of another format version stops it with "newer or
 * unknown format version N".
 */
#ifndef CC_JOURNAL_H
#define CC_JOURNAL_H

#include "cc.h"

#define CC_JOURNAL_MAGIC "CCJOURNL"
#define CC_JOURNAL_VERSION 1u
#define CC_JOURNAL_HEADER_SIZE 32u
#define CC_JOURNAL_RECORD_HEADER 8u
/* The largest payload. A larger declared length is corruption, and no
 * reader allocates what a damaged length claims. */
#define CC_JOURNAL_MAX_PAYLOAD ((uint32_t)64 << 20)
#define CC_JOURNAL_DEFAULT_SEGMENT_SIZE ((uint64_t)64 << 20)

struct cc_journal_opts {
    /* A segment is closed and the next one started when it reaches this
     * many bytes (checked between records, so a segment may pass it by
     * one record). 0: CC_JOURNAL_DEFAULT_SEGMENT_SIZE. Must be larger
     * than the header. */
    uint64_t segment_size;
    /* Where the journal must continue at the least (0: 1). A journal
     * with no segment yet starts there. One whose records all come before
     * it (a snapshot covers them: it was written, and the crash came,
     * before their sync) has its segments removed, with a log line, and
     * starts there too. Otherwise the segments decide. */
    uint64_t first_seq;
    /* The caller never syncs (fsync = off). Without it, cc_journal_write()
     * does not start a new segment until the full one has been synced
     * (see there); with it, segments rotate at once, and a power cut may
     * leave the tail of an older segment missing under a newer one, which
     * recovery then reports as corruption. */
    bool sync_off;
};

/* ---- Writer ---------------------------------------------------------- */

struct cc_journal;

/*
 * Opens the journal in dir for appending, creating the directory (one
 * level) when missing, and locks it (flock on the directory) so that a
 * second writer or a repair fails with CC_ESTATE instead of interleaving.
 * Only the last segment is read: its header is checked, its records are
 * counted to find the next sequence number, and a torn tail is truncated
 * (with a log line saying what was dropped) and the file synced. The
 * writer then continues that segment (a new one is started when it is
 * full or when the directory has none). It refuses a last segment with
 * corruption in it (CC_EPROTO, with the file, offset and reason in err),
 * or of an unknown version (CC_EPROTO, "newer or unknown format version
 * N"). o may be NULL for the defaults. Blocks on the disk: call at
 * startup. On success *out is the caller's, freed by cc_journal_close().
 */
int cc_journal_open(struct cc_journal **out, const char *dir,
                    const struct cc_journal_opts *o, char *err, size_t errlen);

/*
 * Closes the segment and the directory (releasing the lock) and frees the
 * journal. Buffered records that were not written are lost, and written
 * ones are not synced: call cc_journal_write() and cc_journal_sync()
 * first for a clean shutdown. Accepts NULL.
 */
void cc_journal_close(struct cc_journal *j);

/*
 * Copies a record of n bytes into the write buffer, computes its CRC, and
 * returns its sequence number. Nothing reaches the file until
 * cc_journal_write(). Steady state allocates nothing: the buffer grows
 * (doubling) only past its largest size so far. Returns 0, which is never
 * a sequence number, and appends nothing when n is 0 or larger than
 * CC_JOURNAL_MAX_PAYLOAD, or the buffer cannot grow. Touches only the
 * buffer and the next sequence number: may run while cc_journal_sync()
 * runs on another thread, never at the same time as the other calls.
 */
uint64_t cc_journal_append(struct cc_journal *j, const void *p, size_t n);
/* The same for a payload in two pieces, head (hn bytes) then p (n bytes),
 * stored as one: a caller's small header before a message it does not
 * own, without copying them together first. */
uint64_t cc_journal_append2(struct cc_journal *j, const void *head, size_t hn,
                            const void *p, size_t n);

/*
 * Writes the buffered records to the current segment (one pwrite for all
 * of them, unless a segment fills), rotating to a new segment when the
 * current one has reached segment_size. Returns:
 *   0       every buffered record is in the file (not yet durable);
 *   1       some records stay buffered because the current segment is
 *           full and has bytes not yet synced: call cc_journal_sync(),
 *           then cc_journal_write() again (rotation waits for the sync so
 *           that a crash can only tear the last segment; not with
 *           sync_off);
 *   CC_EIO  a write or the creation of a segment failed (ENOSPC, EIO,
 *           EFBIG...); cc_journal_error() says which and why. The records
 *           that did not reach the file stay buffered, in order, and the
 *           next call continues from the first byte not written: none is
 *           lost or written twice. Also returned, for good, after a sync
 *           failed (see cc_journal_sync()).
 * Does not block on the disk beyond the page cache. Loop thread; never
 * at the same time as cc_journal_sync().
 */
int cc_journal_write(struct cc_journal *j);

/*
 * Makes what cc_journal_write() wrote durable: fdatasync of the current
 * segment, and fsync of the directory after a segment was created. Every
 * record below the cc_journal_written_seq() read before the call is durable
 * when it returns 0 (with sync_off, only those of the current segment:
 * earlier ones were closed unsynced). Blocks on the disk: meant for a
 * worker thread. It reads and writes only the current segment's descriptor,
 * the directory descriptor, the unsynced-bytes count, the directory-dirty
 * flag, the failed flag and the sync error text, none of which
 * cc_journal_append() touches: the loop thread may append while a sync
 * runs, but must not call cc_journal_write(), cc_journal_remove_before() or
 * cc_journal_close() until it has returned (libuv's after_work callback is
 * the place). A failed sync returns CC_EIO (text in
 * cc_journal_sync_error()) and is final: after a failed fsync Linux may
 * have dropped the unwritten pages, so a retry could report success for
 * data that is gone. Every later write and sync fails; restart and recover
 * from what is on disk.
 */
int cc_journal_sync(struct cc_journal *j);

/* The sequence number the next append will return. */
uint64_t cc_journal_next_seq(const struct cc_journal *j);
/* Records below this number are in the file (written, perhaps not yet
 * synced); loop thread. */
uint64_t cc_journal_written_seq(const struct cc_journal *j);
/* Bytes appended but not yet written (records and their headers): the
 * caller's back-pressure measure while the disk refuses writes. */
size_t cc_journal_buffered(const struct cc_journal *j);
/* The reason of the last failed open-time check, write or removal
 * ("write 00000000000000000001.seg at offset 96: No space left on
 * device"); loop thread. */
const char *cc_journal_error(const struct cc_journal *j);
/* The reason of the failed sync, read after it returned. */
const char *cc_journal_sync_error(const struct cc_journal *j);

/*
 * Deletes the segments whose every record is below seq (a snapshot covers
 * them), oldest first, never the current segment, then syncs the
 * directory. Returns how many were deleted, or CC_EIO (cc_journal_error()).
 * Blocks on the disk; same thread rules as cc_journal_write().
 */
int cc_journal_remove_before(struct cc_journal *j, uint64_t seq);

/* ---- Reader ---------------------------------------------------------- */

enum cc_journal_fault_kind {
    CC_JOURNAL_FAULT_NONE,
    CC_JOURNAL_FAULT_TORN,    /* the end of the last segment: a crash */
    CC_JOURNAL_FAULT_CORRUPT, /* damage before the end: stop */
    CC_JOURNAL_FAULT_VERSION, /* a newer or unknown format version */
    CC_JOURNAL_FAULT_IO       /* a read or open failed */
};

/* Where and why reading stopped. */
struct cc_journal_fault {
    enum cc_journal_fault_kind kind;
    char file[4096]; /* the segment's path */
    /* Byte offset in that file of the bad record or header (0 for a
     * segment that is wrong as a whole: its header, a gap). */
    uint64_t offset;
    /* The sequence number a record at that offset would have had. */
    uint64_t seq;
    char reason[256];
};

/* A static name for a fault kind: "torn tail", "corruption", ... */
const char *cc_journal_fault_name(enum cc_journal_fault_kind kind);

struct cc_journal_reader;

/*
 * Opens dir for reading records from from_seq on: from the segment that
 * holds from_seq (records before it in that segment are checked and
 * skipped). from_seq 0 reads from the first segment, wherever it starts.
 * A journal that starts after a non-zero from_seq fails with CC_ENOENT
 * (those records are gone). A missing directory is CC_ENOENT too. Does
 * not lock: do not read a journal a writer is appending to (the last
 * segment is read as long as it was when it was opened). Memory is
 * bounded by the largest record or 1 MiB, whichever is larger: segments
 * are read a window at a time. *out is freed with
 * cc_journal_reader_close().
 */
int cc_journal_reader_open(struct cc_journal_reader **out, const char *dir,
                           uint64_t from_seq, char *err, size_t errlen);

/*
 * The next record: returns 1 with its sequence number in *seq and its
 * payload in *p and *n (valid until the next call or the close), 0 at the
 * clean end of the journal, or an error: CC_EPROTO for a torn tail,
 * corruption or an unknown version, CC_EIO when a read fails,
 * CC_ENOMEM. cc_journal_reader_fault() tells which, where and why, and
 * cc_journal_reader_error() says it in one line. Errors are final.
 */
int cc_journal_read(struct cc_journal_reader *r, uint64_t *seq, const void **p,
                    size_t *n);

/* The fault that stopped the reader (kind NONE before one). */
const struct cc_journal_fault *
cc_journal_reader_fault(const struct cc_journal_reader *r);
/* "<kind>: <file>: offset <n> (record <seq>): <reason>", or "". */
const char *cc_journal_reader_error(const struct cc_journal_reader *r);
/* One past the last valid record read so far (where the journal's good
 * part ends once cc_journal_read() returned 0 or a torn tail). */
uint64_t cc_journal_reader_end_seq(const struct cc_journal_reader *r);
void cc_journal_reader_close(struct cc_journal_reader *r);

/*
 * Reads the whole journal in dir and cuts it at the first bad record or
 * header: that segment is truncated there (or deleted when its header or
 * its place in the sequence is wrong) and every later segment is deleted,
 * then the file and the directory are synced. Before anything is touched,
 * report (n bytes) receives what is dropped: each file, the offset, the
 * bytes, and the records lost as far as they can be known. Returns 0 when
 * the journal was clean (report says so, nothing touched), 1 when it cut,
 * CC_EPROTO without touching anything for an unknown format version,
 * CC_ESTATE when a writer holds the journal, CC_ENOENT without a
 * directory, CC_EIO when a read or the cut fails. Blocks on the disk.
 */
int cc_journal_repair(const char *dir, char *report, size_t n);

#endif
