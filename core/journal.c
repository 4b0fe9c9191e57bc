/*
 * The journal. See journal.h for the format and the contracts.
 *
 * The writer keeps one buffer of framed records (header and payload, the
 * CRC computed at append time), so that a write is one pwrite of a
 * contiguous range and a failed write leaves the rest of the range where
 * it was. Offsets into the buffer (written, chunk_end) and into the file
 * (seg_off) advance by what the kernel accepted, nothing more: that is
 * what makes a retry after ENOSPC neither lose nor repeat a record.
 *
 * The reader and the writer's open-time check share one segment scanner,
 * which reads a segment through a window of at most max(1 MiB, record) so
 * that memory does not depend on the segment's size or on what a damaged
 * length field claims.
 */
#include "journal.h"

#include "crc32c.h"
#include "log.h"
#include "mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR CC_JOURNAL_HEADER_SIZE
#define RHDR CC_JOURNAL_RECORD_HEADER
#define NAME_LEN 24 /* 20 digits and ".seg" */
#define READ_CHUNK ((size_t)1 << 20)
/* The write buffer's first size, and the size above which it is given
 * back once empty (a burst while the disk refused writes). */
#define BUF_MIN ((size_t)64 << 10)
#define BUF_KEEP ((size_t)16 << 20)

static uint32_t
record_crc(uint64_t seq, const void *p, size_t n) {
    unsigned char s[8];

    cc_put_le64(s, seq);
    return cc_crc32c(cc_crc32c(0, s, 8), p, n);
}

/* The header's CRC skips its own field: bytes 0..11, then 16..31. */
static uint32_t
header_crc(const unsigned char *h) {
    return cc_crc32c(cc_crc32c(0, h, 12), h + 16, HDR - 16);
}

static void
header_build(unsigned char *h, uint64_t first) {
    memcpy(h, CC_JOURNAL_MAGIC, 8);
    cc_put_le32(h + 8, CC_JOURNAL_VERSION);
    cc_put_le64(h + 16, first);
    cc_put_le64(h + 24, 0);
    cc_put_le32(h + 12, header_crc(h));
}

static void
seg_name(char *out, uint64_t first) {
    snprintf(out, NAME_LEN + 1, "%020" PRIu64 ".seg", first);
}

/* The first sequence number a segment's name gives, or false when the
 * name is not one of ours. */
static bool
seg_parse(const char *name, uint64_t *first) {
    uint64_t v = 0;
    int i;

    if (strlen(name) != NAME_LEN || strcmp(name + 20, ".seg") != 0)
        return false;
    for (i = 0; i < 20; i++) {
        unsigned d = (unsigned)(name[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *first = v;
    return true;
}

/* ---- Segment list ---------------------------------------------------- */

struct seglist {
    uint64_t *first; /* ascending */
    size_t n, cap;
};

static int
cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
seglist_free(struct seglist *l) {
    cc_free(l->first, l->cap * sizeof(*l->first));
    memset(l, 0, sizeof(*l));
}

static int
seglist_read(struct seglist *l, const char *dir, char *err, size_t errlen) {
    struct dirent *de;
    uint64_t first;
    DIR *d;

    memset(l, 0, sizeof(*l));
    d = opendir(dir);
    if (d == NULL)
        return cc_errf(err, errlen, errno == ENOENT ? CC_ENOENT : CC_EIO,
                       "journal %s: %s", dir, strerror(errno));
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (!seg_parse(de->d_name, &first))
            continue;
        if (l->n == l->cap) {
            size_t nc = l->cap ? l->cap * 2 : 16;
            uint64_t *nf =
                cc_realloc(l->first, l->cap * sizeof(*nf), nc * sizeof(*nf));
            if (nf == NULL) {
                closedir(d);
                seglist_free(l);
                return cc_errf(err, errlen, CC_ENOMEM,
                               "journal %s: out of memory", dir);
            }
            l->first = nf;
            l->cap = nc;
        }
        l->first[l->n++] = first;
    }
    if (errno != 0) {
        int e = errno;
        closedir(d);
        seglist_free(l);
        return cc_errf(err, errlen, CC_EIO, "journal %s: readdir: %s", dir,
                       strerror(e));
    }
    closedir(d);
    if (l->n > 1)
        qsort(l->first, l->n, sizeof(*l->first), cmp_u64);
    return 0;
}

/* ---- Faults ---------------------------------------------------------- */

const char *
cc_journal_fault_name(enum cc_journal_fault_kind kind) {
    switch (kind) {
    case CC_JOURNAL_FAULT_NONE:
        return "none";
    case CC_JOURNAL_FAULT_TORN:
        return "torn tail";
    case CC_JOURNAL_FAULT_CORRUPT:
        return "corruption";
    case CC_JOURNAL_FAULT_VERSION:
        return "unknown version";
    case CC_JOURNAL_FAULT_IO:
        return "I/O error";
    }
    return "?";
}

static void
fault_format(const struct cc_journal_fault *f, char *out, size_t n) {
    if (f->kind == CC_JOURNAL_FAULT_NONE) {
        if (n > 0)
            out[0] = '\0';
        return;
    }
    snprintf(out, n, "%s: %s: offset %" PRIu64 " (record %" PRIu64 "): %s",
             cc_journal_fault_name(f->kind), f->file, f->offset, f->seq,
             f->reason);
}

/* ---- Segment scanner ------------------------------------------------- */

struct scan {
    const char *dir;
    char name[NAME_LEN + 1];
    int fd;
    bool last;      /* the journal's last segment: its end may be torn */
    uint64_t size;  /* file size when opened */
    uint64_t first; /* from the name, checked against the header */
    uint64_t pos;   /* offset of the next record */
    uint64_t seq;   /* its sequence number */
    /* The window: bytes [win_off, win_off + win_len) of the file. */
    unsigned char *buf;
    size_t cap;
    uint64_t win_off;
    size_t win_len;
};

static int scan_fault(const struct scan *s, struct cc_journal_fault *f,
                      enum cc_journal_fault_kind kind, uint64_t off,
                      uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int
scan_fault(const struct scan *s, struct cc_journal_fault *f,
           enum cc_journal_fault_kind kind, uint64_t off, uint64_t seq,
           const char *fmt, ...) {
    va_list ap;

    f->kind = kind;
    snprintf(f->file, sizeof(f->file), "%s/%s", s->dir, s->name);
    f->offset = off;
    f->seq = seq;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
    va_end(ap);
    return kind == CC_JOURNAL_FAULT_IO ? CC_EIO : CC_EPROTO;
}

static void
scan_init(struct scan *s, const char *dir) {
    memset(s, 0, sizeof(*s));
    s->dir = dir;
    s->fd = -1;
}

static void
scan_close(struct scan *s) {
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->win_len = 0;
}

static void
scan_fini(struct scan *s) {
    scan_close(s);
    cc_free(s->buf, s->cap);
    s->buf = NULL;
    s->cap = 0;
}

static int
open_segment_ro(const struct scan *s) {
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", s->dir, s->name);
    return open(path, O_RDONLY | O_CLOEXEC);
}

static int
scan_open(struct scan *s, uint64_t first, bool last,
          struct cc_journal_fault *f) {
    struct stat st;

    scan_close(s);
    seg_name(s->name, first);
    s->first = first;
    s->last = last;
    s->pos = 0;
    s->seq = first;
    s->fd = open_segment_ro(s);
    if (s->fd < 0)
        return scan_fault(s, f, CC_JOURNAL_FAULT_IO, 0, first, "open: %s",
                          strerror(errno));
    if (fstat(s->fd, &st) != 0)
        return scan_fault(s, f, CC_JOURNAL_FAULT_IO, 0, first, "fstat: %s",
                          strerror(errno));
    s->size = (uint64_t)st.st_size;
    return 0;
}

/*
 * Points *out at n bytes of the file from off (off + n <= size), reading
 * a new window when they are not all in the current one. The window is
 * READ_CHUNK or the n bytes, whichever is larger, cut at the end of the
 * file: a length is only trusted this far after it was checked against
 * the file's size.
 */
static int
scan_bytes(struct scan *s, uint64_t off, size_t n, const unsigned char **out,
           struct cc_journal_fault *f) {
    size_t want, got = 0;
    ssize_t r;

    CC_ASSERT(off + n <= s->size);
    if (off >= s->win_off && off + n <= s->win_off + s->win_len) {
        *out = s->buf + (off - s->win_off);
        return 0;
    }
    want = n > READ_CHUNK ? n : READ_CHUNK;
    if (want > s->size - off)
        want = (size_t)(s->size - off);
    s->win_len = 0;
    if (want > s->cap) {
        /* The old contents are not needed: free before allocating so that
         * two windows are never held at once. */
        cc_free(s->buf, s->cap);
        s->cap = 0;
        s->buf = cc_malloc(want);
        if (s->buf == NULL) {
            scan_fault(s, f, CC_JOURNAL_FAULT_IO, off, s->seq,
                       "out of memory for a %zu-byte read", want);
            return CC_ENOMEM;
        }
        s->cap = want;
    }
    while (got < want) {
        r = pread(s->fd, s->buf + got, want - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return scan_fault(s, f, CC_JOURNAL_FAULT_IO, off + got, s->seq,
                              "read: %s", strerror(errno));
        if (r == 0)
            return scan_fault(s, f, CC_JOURNAL_FAULT_IO, off + got, s->seq,
                              "the file shrank while it was read");
        got += (size_t)r;
    }
    s->win_off = off;
    s->win_len = want;
    *out = s->buf;
    return 0;
}

/* Whether every byte from off to the end of the file is zero. */
static int
scan_zero_from(struct scan *s, uint64_t off, bool *zero,
               struct cc_journal_fault *f) {
    const unsigned char *b;
    size_t n, i;
    int rc;

    *zero = true;
    while (off < s->size) {
        n = s->size - off > READ_CHUNK ? READ_CHUNK : (size_t)(s->size - off);
        rc = scan_bytes(s, off, n, &b, f);
        if (rc)
            return rc;
        for (i = 0; i < n; i++) {
            if (b[i] != 0) {
                *zero = false;
                return 0;
            }
        }
        off += n;
    }
    return 0;
}

/*
 * A bad record at off whose bytes end at end (or the file's end): torn
 * when it is in the last segment and nothing but zeros follows it, which
 * is what a crash in the middle of a write leaves; corruption otherwise.
 */
static int
scan_bad(struct scan *s, struct cc_journal_fault *f, uint64_t off, uint64_t end,
         const char *reason) {
    bool zero = true;
    int rc;

    if (s->last && end < s->size) {
        rc = scan_zero_from(s, end, &zero, f);
        if (rc)
            return rc;
    }
    return scan_fault(s, f,
                      s->last && zero ? CC_JOURNAL_FAULT_TORN
                                      : CC_JOURNAL_FAULT_CORRUPT,
                      off, s->seq, "%s", reason);
}

static int
scan_header(struct scan *s, struct cc_journal_fault *f) {
    const unsigned char *h;
    uint32_t version;
    bool zero;
    int rc;

    if (s->size < HDR)
        return scan_fault(
            s, f, s->last ? CC_JOURNAL_FAULT_TORN : CC_JOURNAL_FAULT_CORRUPT, 0,
            s->first, "incomplete segment header (%" PRIu64 " of %u bytes)",
            s->size, HDR);
    rc = scan_bytes(s, 0, HDR, &h, f);
    if (rc)
        return rc;
    if (s->last && h[0] == 0 && memcmp(h, h + 1, HDR - 1) == 0) {
        /* A segment created just before a power cut may be all zeros. */
        rc = scan_zero_from(s, HDR, &zero, f);
        if (rc)
            return rc;
        if (zero)
            return scan_fault(s, f, CC_JOURNAL_FAULT_TORN, 0, s->first,
                              "the segment is all zero bytes");
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, 0, s->first,
                          "zeroed segment header");
    }
    if (memcmp(h, CC_JOURNAL_MAGIC, 8) != 0)
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, 0, s->first,
                          "not a journal segment (bad magic)");
    /* The version is checked before the checksum: a later version may
     * define the rest of its header differently. */
    version = cc_get_le32(h + 8);
    if (version != CC_JOURNAL_VERSION)
        return scan_fault(
            s, f, CC_JOURNAL_FAULT_VERSION, 8, s->first,
            "newer or unknown format version %" PRIu32 "%s", version,
            cc_get_le32(h + 12) == header_crc(h)
                ? ""
                : " (or a damaged header: its checksum does not match "
                  "version 1's either)");
    if (cc_get_le32(h + 12) != header_crc(h))
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, 0, s->first,
                          "segment header checksum mismatch");
    if (cc_get_le64(h + 16) != s->first)
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, 0, s->first,
                          "the header says the first record is %" PRIu64
                          ", the file name %" PRIu64,
                          cc_get_le64(h + 16), s->first);
    if (cc_get_le64(h + 24) != 0)
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, 0, s->first,
                          "reserved header field is not zero");
    s->pos = HDR;
    s->seq = s->first;
    return 0;
}

/* The next record: 1 with it, 0 at the end of the segment, or a fault.
 * On a fault pos and seq stay at the bad record. */
static int
scan_next(struct scan *s, const void **p, size_t *n,
          struct cc_journal_fault *f) {
    const unsigned char *b;
    uint64_t rem;
    uint32_t len;
    char why[160];
    int rc;

    if (s->pos == s->size)
        return 0;
    rem = s->size - s->pos;
    if (rem < RHDR) {
        snprintf(why, sizeof(why),
                 "incomplete record header (%" PRIu64 " of %u bytes)", rem,
                 RHDR);
        return scan_bad(s, f, s->pos, s->size, why);
    }
    rc = scan_bytes(s, s->pos, RHDR, &b, f);
    if (rc)
        return rc;
    len = cc_get_le32(b);
    if (len > CC_JOURNAL_MAX_PAYLOAD)
        return scan_fault(s, f, CC_JOURNAL_FAULT_CORRUPT, s->pos, s->seq,
                          "record declares %" PRIu32
                          " bytes, more than the %" PRIu32 " allowed",
                          len, CC_JOURNAL_MAX_PAYLOAD);
    if (len == 0)
        return scan_bad(s, f, s->pos, s->pos + RHDR,
                        "empty record (a zeroed record header)");
    if (len > rem - RHDR) {
        snprintf(why, sizeof(why),
                 "record of %" PRIu32 " bytes runs past the end of the file "
                 "(%" PRIu64 " bytes left)",
                 len, rem - RHDR);
        return scan_bad(s, f, s->pos, s->size, why);
    }
    rc = scan_bytes(s, s->pos, RHDR + (size_t)len, &b, f);
    if (rc)
        return rc;
    if (cc_get_le32(b + 4) != record_crc(s->seq, b + RHDR, len))
        return scan_bad(s, f, s->pos, s->pos + RHDR + len,
                        "record checksum mismatch");
    *p = b + RHDR;
    *n = len;
    s->pos += RHDR + len;
    s->seq++;
    return 1;
}

/* ---- Writer ---------------------------------------------------------- */

struct cc_journal {
    char *dir;
    size_t dir_size;
    int dirfd; /* held open for fsync and the lock */
    int fd;    /* the current segment */
    uint64_t segment_size;
    bool sync_off;

    /* Appends (loop thread; cc_journal_sync never touches these). */
    unsigned char *buf;
    size_t cap, len;
    uint64_t next_seq;

    /* Writes (loop thread, never during a sync). buf[0, written) is in
     * the file; buf[written, chunk_end) is the rest of the records bound
     * for the current segment, chunk_end a record boundary after which
     * file_seq becomes chunk_seq. */
    size_t written, chunk_end;
    uint64_t chunk_seq;
    uint64_t file_seq; /* the first record not yet wholly in the file */
    uint64_t seg_first;
    uint64_t seg_off; /* the current segment's size */

    /* Shared by write and sync, which never run at the same time. */
    uint64_t unsynced; /* bytes written to fd since the last sync */
    bool dir_dirty;    /* a segment was created since the last sync */
    bool failed;       /* a sync failed: nothing more is trusted */

    char err[512];
    char sync_err[512];
};

static int
fsync_retry(int fd, bool data_only) {
    int r;

    do {
        r = data_only ? fdatasync(fd) : fsync(fd);
    } while (r != 0 && errno == EINTR);
    return r;
}

static int
pwrite_all(int fd, const void *p, size_t n, uint64_t off) {
    const unsigned char *b = p;
    ssize_t r;

    while (n > 0) {
        r = pwrite(fd, b, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Creates (or recreates) the segment starting at first with its header,
 * not synced. */
static int
create_segment(struct cc_journal *j, uint64_t first, int *fdp) {
    unsigned char h[HDR];
    char name[NAME_LEN + 1];
    int fd, e;

    seg_name(name, first);
    fd = openat(j->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return cc_errf(j->err, sizeof(j->err), CC_EIO, "create %s/%s: %s",
                       j->dir, name, strerror(errno));
    header_build(h, first);
    if (pwrite_all(fd, h, HDR, 0) != 0) {
        e = errno;
        close(fd);
        /* A header-less last segment would be repaired at the next open;
         * removing it keeps the directory tidy meanwhile. */
        unlinkat(j->dirfd, name, 0);
        return cc_errf(j->err, sizeof(j->err), CC_EIO,
                       "write header of %s/%s: %s", j->dir, name, strerror(e));
    }
    *fdp = fd;
    return 0;
}

static int
rotate(struct cc_journal *j) {
    int fd, rc;

    rc = create_segment(j, j->file_seq, &fd);
    if (rc)
        return rc;
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->seg_first = j->file_seq;
    j->seg_off = HDR;
    j->unsynced = HDR;
    j->dir_dirty = true;
    return 0;
}

/* At open: the last segment is read, its torn tail cut, and the writer
 * set to continue after its last good record. */
static int
open_last(struct cc_journal *j, uint64_t first) {
    struct cc_journal_fault f;
    struct scan s;
    char name[NAME_LEN + 1], msg[4600];
    uint64_t size, end, end_seq;
    const void *p;
    size_t n;
    int rc, fd;

    memset(&f, 0, sizeof(f));
    seg_name(name, first);
    scan_init(&s, j->dir);
    rc = scan_open(&s, first, true, &f);
    if (rc == 0)
        rc = scan_header(&s, &f);
    if (rc == 0) {
        while ((rc = scan_next(&s, &p, &n, &f)) == 1)
            ;
    }
    size = s.size;
    end = s.pos;
    end_seq = s.seq;
    scan_fini(&s);
    if (rc < 0 && f.kind != CC_JOURNAL_FAULT_TORN) {
        fault_format(&f, msg, sizeof(msg));
        return cc_errf(j->err, sizeof(j->err), rc, "journal: %s", msg);
    }

    if (rc < 0 && f.offset < HDR) {
        /* The segment was created but its header never reached the disk:
         * it holds no record. Write the header again. */
        cc_log_warn("journal: %s: torn segment header (%s): rewritten, no "
                    "record lost",
                    f.file, f.reason);
        rc = create_segment(j, first, &fd);
        if (rc)
            return rc;
        j->seg_off = HDR;
        j->next_seq = first;
    } else {
        fd = openat(j->dirfd, name, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return cc_errf(j->err, sizeof(j->err), CC_EIO, "open %s/%s: %s",
                           j->dir, name, strerror(errno));
        if (rc < 0) {
            cc_log_warn(
                "journal: %s: torn tail at offset %" PRIu64 " (%s): %" PRIu64
                " bytes dropped, the %" PRIu64 " records before it are intact",
                f.file, f.offset, f.reason, size - f.offset, f.seq - first);
            if (ftruncate(fd, (off_t)f.offset) != 0) {
                int e = errno;
                close(fd);
                return cc_errf(j->err, sizeof(j->err), CC_EIO,
                               "truncate %s/%s: %s", j->dir, name, strerror(e));
            }
            j->seg_off = f.offset;
            j->next_seq = f.seq;
        } else {
            j->seg_off = end;
            j->next_seq = end_seq;
        }
    }
    /* The previous run may have been killed with its last writes still
     * in the page cache: make them (and the truncation) durable before
     * anything is written after them. */
    if (fsync_retry(fd, true) != 0 || fsync_retry(j->dirfd, false) != 0) {
        int e = errno;
        close(fd);
        return cc_errf(j->err, sizeof(j->err), CC_EIO, "sync %s/%s: %s", j->dir,
                       name, strerror(e));
    }
    j->fd = fd;
    j->seg_first = first;
    return 0;
}

static int
make_dir(const char *dir, char *err, size_t errlen) {
    char parent[4096];
    char *slash;
    int fd;

    if (mkdir(dir, 0755) == 0) {
        /* The new directory's entry must survive a power cut too. */
        snprintf(parent, sizeof(parent), "%s", dir);
        slash = strrchr(parent, '/');
        if (slash == NULL)
            snprintf(parent, sizeof(parent), ".");
        else if (slash == parent)
            parent[1] = '\0';
        else
            *slash = '\0';
        fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync_retry(fd, false);
            close(fd);
        }
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    return cc_errf(err, errlen, CC_EIO, "journal: mkdir %s: %s", dir,
                   strerror(errno));
}

/* Opens and locks the directory. */
static int
lock_dir(const char *dir, int *fdp, char *err, size_t errlen) {
    int fd;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cc_errf(err, errlen, errno == ENOENT ? CC_ENOENT : CC_EIO,
                       "journal: open %s: %s", dir, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return cc_errf(err, errlen, CC_ESTATE,
                           "journal %s is in use by another writer", dir);
        return cc_errf(err, errlen, CC_EIO, "journal: lock %s: %s", dir,
                       strerror(e));
    }
    *fdp = fd;
    return 0;
}

/* Unlinks the segment that starts at first. */
static int
remove_segment(struct cc_journal *j, uint64_t first) {
    char name[NAME_LEN + 1];

    seg_name(name, first);
    if (unlinkat(j->dirfd, name, 0) == 0)
        return 0;
    return cc_errf(j->err, sizeof(j->err), CC_EIO, "remove %s/%s: %s", j->dir,
                   name, strerror(errno));
}

/* Starts the first segment of an empty journal at first. */
static int
start_at(struct cc_journal *j, uint64_t first) {
    int rc = create_segment(j, first, &j->fd);
    if (rc == 0 &&
        (fsync_retry(j->fd, true) != 0 || fsync_retry(j->dirfd, false) != 0))
        rc = cc_errf(j->err, sizeof(j->err), CC_EIO, "journal %s: sync: %s",
                     j->dir, strerror(errno));
    j->seg_first = first;
    j->seg_off = HDR;
    j->next_seq = first;
    return rc;
}

/* Every record of the journal comes before first, which a snapshot
 * covers: its segments go, so that it continues at first. */
static int
drop_covered(struct cc_journal *j, const struct seglist *l, uint64_t first) {
    size_t i;
    int rc;

    cc_log_warn("journal %s: ends before record %" PRIu64 ", where the "
                "snapshot it continues from ends (the crash came before "
                "the last records were synced): its %zu segment(s) are "
                "covered and removed",
                j->dir, first, l->n);
    close(j->fd);
    j->fd = -1;
    for (i = 0; i < l->n; i++) {
        if ((rc = remove_segment(j, l->first[i])) != 0)
            return rc;
    }
    return 0;
}

int
cc_journal_open(struct cc_journal **out, const char *dir,
                const struct cc_journal_opts *o, char *err, size_t errlen) {
    struct cc_journal_opts def = {0};
    struct cc_journal *j;
    struct seglist l;
    int rc;

    *out = NULL;
    if (o == NULL)
        o = &def;
    if (o->segment_size != 0 && o->segment_size <= HDR)
        return cc_errf(err, errlen, CC_EINVAL,
                       "journal: segment size %" PRIu64
                       " is not larger than the %u-byte header",
                       o->segment_size, HDR);
    rc = make_dir(dir, err, errlen);
    if (rc)
        return rc;
    j = cc_calloc(1, sizeof(*j));
    if (j == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "journal: out of memory");
    j->dir_size = strlen(dir) + 1;
    j->dir = cc_strndup(dir, j->dir_size - 1);
    if (j->dir == NULL) {
        rc = cc_errf(err, errlen, CC_ENOMEM, "journal: out of memory");
        goto fail_dir;
    }
    j->fd = -1;
    j->segment_size =
        o->segment_size ? o->segment_size : CC_JOURNAL_DEFAULT_SEGMENT_SIZE;
    j->sync_off = o->sync_off;
    rc = lock_dir(dir, &j->dirfd, err, errlen);
    if (rc)
        goto fail_lock;
    rc = seglist_read(&l, dir, err, errlen);
    if (rc)
        goto fail_list;
    if (l.n != 0) {
        rc = open_last(j, l.first[l.n - 1]);
        if (rc == 0 && o->first_seq > j->next_seq)
            rc = drop_covered(j, &l, o->first_seq);
    }
    if (rc == 0 && j->fd < 0)
        rc = start_at(j, o->first_seq ? o->first_seq : 1);
    seglist_free(&l);
    if (rc) {
        cc_errf(err, errlen, rc, "%s", j->err);
        goto fail_last;
    }
    j->file_seq = j->next_seq;
    *out = j;
    return 0;

fail_last:
    if (j->fd >= 0)
        close(j->fd);
fail_list:
    close(j->dirfd);
fail_lock:
    cc_free(j->dir, j->dir_size);
fail_dir:
    cc_free(j, sizeof(*j));
    return rc;
}

void
cc_journal_close(struct cc_journal *j) {
    if (j == NULL)
        return;
    if (j->fd >= 0)
        close(j->fd);
    close(j->dirfd);
    cc_free(j->buf, j->cap);
    cc_free(j->dir, j->dir_size);
    cc_free(j, sizeof(*j));
}

uint64_t
cc_journal_append(struct cc_journal *j, const void *p, size_t n) {
    return cc_journal_append2(j, NULL, 0, p, n);
}

uint64_t
cc_journal_append2(struct cc_journal *j, const void *head, size_t hn,
                   const void *p, size_t n) {
    unsigned char *r, s[8];
    size_t len = hn + n, need;
    uint64_t seq;

    if (CC_UNLIKELY(len < hn || len == 0 || len > CC_JOURNAL_MAX_PAYLOAD))
        return 0;
    need = RHDR + len;
    if (CC_UNLIKELY(j->cap - j->len < need)) {
        size_t nc = j->cap ? j->cap : BUF_MIN;
        unsigned char *nb;
        while (nc - j->len < need)
            nc *= 2;
        nb = cc_realloc(j->buf, j->cap, nc);
        if (nb == NULL)
            return 0;
        j->buf = nb;
        j->cap = nc;
    }
    seq = j->next_seq++;
    r = j->buf + j->len;
    cc_put_le32(r, (uint32_t)len);
    cc_put_le64(s, seq);
    cc_put_le32(r + 4,
                cc_crc32c(cc_crc32c(cc_crc32c(0, s, 8), head, hn), p, n));
    if (hn != 0)
        memcpy(r + RHDR, head, hn);
    if (n != 0)
        memcpy(r + RHDR + hn, p, n);
    j->len += need;
    return seq;
}

/*
 * Where the records bound for the current segment end: all that is
 * buffered when it fits below segment_size, else up to and including the
 * record that makes the segment reach it. Called at a record boundary
 * (written == chunk_end).
 */
static void
plan_chunk(struct cc_journal *j) {
    size_t pos = j->written;
    uint64_t seq = j->file_seq;

    if (j->seg_off + (j->len - j->written) < j->segment_size) {
        j->chunk_end = j->len;
        j->chunk_seq = j->next_seq;
        return;
    }
    while (pos < j->len) {
        pos += RHDR + cc_get_le32(j->buf + pos);
        seq++;
        if (j->seg_off + (pos - j->written) >= j->segment_size)
            break;
    }
    j->chunk_end = pos;
    j->chunk_seq = seq;
}

int
cc_journal_write(struct cc_journal *j) {
    ssize_t r;
    int rc;

    if (j->failed)
        return cc_errf(j->err, sizeof(j->err), CC_EIO,
                       "journal %s: an earlier sync failed (%s): restart "
                       "and recover from the disk",
                       j->dir, j->sync_err);
    while (j->written < j->len) {
        if (j->written == j->chunk_end) {
            if (j->seg_off >= j->segment_size) {
                /* Never create the next segment while this one has bytes
                 * that a power cut could take: only the last segment may
                 * ever be torn. */
                if (!j->sync_off && j->unsynced > 0)
                    return 1;
                rc = rotate(j);
                if (rc)
                    return rc;
            }
            plan_chunk(j);
        }
        r = pwrite(j->fd, j->buf + j->written, j->chunk_end - j->written,
                   (off_t)j->seg_off);
        if (r <= 0) {
            char name[NAME_LEN + 1];
            if (r < 0 && errno == EINTR)
                continue;
            seg_name(name, j->seg_first);
            return cc_errf(j->err, sizeof(j->err), CC_EIO,
                           "write %s/%s at offset %" PRIu64 ": %s", j->dir,
                           name, j->seg_off,
                           r < 0 ? strerror(errno) : "nothing written");
        }
        j->written += (size_t)r;
        j->seg_off += (uint64_t)r;
        j->unsynced += (uint64_t)r;
        if (j->written == j->chunk_end)
            j->file_seq = j->chunk_seq;
    }
    j->len = j->written = j->chunk_end = 0;
    if (j->cap > BUF_KEEP) {
        cc_free(j->buf, j->cap);
        j->buf = NULL;
        j->cap = 0;
    }
    return 0;
}

int
cc_journal_sync(struct cc_journal *j) {
    if (j->failed)
        return CC_EIO;
    if (j->unsynced > 0 && fsync_retry(j->fd, true) != 0) {
        j->failed = true;
        return cc_errf(j->sync_err, sizeof(j->sync_err), CC_EIO,
                       "fdatasync of a segment of %s: %s", j->dir,
                       strerror(errno));
    }
    if (j->dir_dirty && fsync_retry(j->dirfd, false) != 0) {
        j->failed = true;
        return cc_errf(j->sync_err, sizeof(j->sync_err), CC_EIO,
                       "fsync of directory %s: %s", j->dir, strerror(errno));
    }
    j->unsynced = 0;
    j->dir_dirty = false;
    return 0;
}

uint64_t
cc_journal_next_seq(const struct cc_journal *j) {
    return j->next_seq;
}

uint64_t
cc_journal_written_seq(const struct cc_journal *j) {
    return j->file_seq;
}

size_t
cc_journal_buffered(const struct cc_journal *j) {
    return j->len - j->written;
}

const char *
cc_journal_error(const struct cc_journal *j) {
    return j->err;
}

const char *
cc_journal_sync_error(const struct cc_journal *j) {
    return j->sync_err;
}

int
cc_journal_remove_before(struct cc_journal *j, uint64_t seq) {
    struct seglist l;
    int rc, removed = 0;
    size_t i;

    rc = seglist_read(&l, j->dir, j->err, sizeof(j->err));
    if (rc)
        return rc;
    /* Segment i holds [first[i], first[i + 1]): all below seq when the
     * next one starts at or before seq. */
    for (i = 0; i + 1 < l.n; i++) {
        if (l.first[i] >= j->seg_first || l.first[i + 1] > seq)
            break;
        if ((rc = remove_segment(j, l.first[i])) != 0)
            break;
        removed++;
    }
    seglist_free(&l);
    if (removed > 0 && fsync_retry(j->dirfd, false) != 0 && rc == 0)
        rc = cc_errf(j->err, sizeof(j->err), CC_EIO, "fsync %s: %s", j->dir,
                     strerror(errno));
    return rc ? rc : removed;
}

/* ---- Reader ---------------------------------------------------------- */

struct cc_journal_reader {
    char *dir;
    size_t dir_size;
    struct seglist segs;
    size_t idx;    /* the segment being read (or next to open) */
    size_t start;  /* the segment reading began with */
    bool open;     /* segs.first[idx] is open in s */
    uint64_t from; /* records below are checked, not returned */
    uint64_t end;  /* one past the last good record */
    struct scan s;
    int rc; /* the final error, once there is one */
    struct cc_journal_fault fault;
    char msg[4600];
};

int
cc_journal_reader_open(struct cc_journal_reader **out, const char *dir,
                       uint64_t from_seq, char *err, size_t errlen) {
    struct cc_journal_reader *r;
    size_t i;
    int rc;

    *out = NULL;
    r = cc_calloc(1, sizeof(*r));
    if (r == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "journal: out of memory");
    r->dir_size = strlen(dir) + 1;
    r->dir = cc_strndup(dir, r->dir_size - 1);
    if (r->dir == NULL) {
        cc_free(r, sizeof(*r));
        return cc_errf(err, errlen, CC_ENOMEM, "journal: out of memory");
    }
    rc = seglist_read(&r->segs, dir, err, errlen);
    if (rc) {
        cc_free(r->dir, r->dir_size);
        cc_free(r, sizeof(*r));
        return rc;
    }
    scan_init(&r->s, r->dir);
    r->from = from_seq;
    if (r->segs.n > 0 && from_seq != 0) {
        if (from_seq < r->segs.first[0]) {
            rc = cc_errf(err, errlen, CC_ENOENT,
                         "journal %s starts at record %" PRIu64
                         ": records from %" PRIu64 " are gone",
                         dir, r->segs.first[0], from_seq);
            cc_journal_reader_close(r);
            return rc;
        }
        for (i = 1; i < r->segs.n && r->segs.first[i] <= from_seq; i++)
            ;
        r->idx = r->start = i - 1;
    }
    r->end = r->segs.n > 0 ? r->segs.first[r->idx] : from_seq;
    *out = r;
    return 0;
}

static int
reader_fail(struct cc_journal_reader *r, int rc) {
    r->rc = rc;
    fault_format(&r->fault, r->msg, sizeof(r->msg));
    return rc;
}

int
cc_journal_read(struct cc_journal_reader *r, uint64_t *seq, const void **p,
                size_t *n) {
    uint64_t first;
    int rc;

    if (r->rc)
        return r->rc;
    for (;;) {
        if (!r->open) {
            if (r->idx == r->segs.n)
                return 0;
            first = r->segs.first[r->idx];
            rc = scan_open(&r->s, first, r->idx + 1 == r->segs.n, &r->fault);
            if (rc)
                return reader_fail(r, rc);
            /* Each segment starts where the previous one ended. */
            if (r->idx != r->start && first != r->end)
                return reader_fail(
                    r, scan_fault(&r->s, &r->fault, CC_JOURNAL_FAULT_CORRUPT, 0,
                                  r->end,
                                  first > r->end
                                      ? "gap: the previous segment ends "
                                        "before record %" PRIu64
                                        ", this one starts at %" PRIu64
                                      : "overlap: the previous segment ends "
                                        "before record %" PRIu64
                                        ", this one starts at %" PRIu64,
                                  r->end, first));
            rc = scan_header(&r->s, &r->fault);
            if (rc)
                return reader_fail(r, rc);
            r->open = true;
        }
        rc = scan_next(&r->s, p, n, &r->fault);
        if (rc < 0)
            return reader_fail(r, rc);
        if (rc == 0) {
            r->end = r->s.seq;
            scan_close(&r->s);
            r->open = false;
            r->idx++;
            continue;
        }
        r->end = r->s.seq;
        if (r->s.seq - 1 < r->from)
            continue;
        *seq = r->s.seq - 1;
        return 1;
    }
}

const struct cc_journal_fault *
cc_journal_reader_fault(const struct cc_journal_reader *r) {
    return &r->fault;
}

const char *
cc_journal_reader_error(const struct cc_journal_reader *r) {
    return r->msg;
}

uint64_t
cc_journal_reader_end_seq(const struct cc_journal_reader *r) {
    return r->end;
}

void
cc_journal_reader_close(struct cc_journal_reader *r) {
    if (r == NULL)
        return;
    scan_fini(&r->s);
    seglist_free(&r->segs);
    cc_free(r->dir, r->dir_size);
    cc_free(r, sizeof(*r));
}

/* ---- Repair ---------------------------------------------------------- */

struct report {
    char *p;
    size_t n, used;
};

static void report_add(struct report *rp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
report_add(struct report *rp, const char *fmt, ...) {
    va_list ap;
    int w;

    if (rp->n == 0 || rp->used >= rp->n - 1)
        return;
    va_start(ap, fmt);
    w = vsnprintf(rp->p + rp->used, rp->n - rp->used, fmt, ap);
    va_end(ap);
    if (w > 0)
        rp->used +=
            (size_t)w < rp->n - rp->used ? (size_t)w : rp->n - rp->used - 1;
}

/* Counts the valid records at the start of a segment that is being
 * removed, for the report. */
static void
count_valid(const char *dir, uint64_t first, uint64_t *count, uint64_t *size) {
    struct cc_journal_fault f;
    struct scan s;
    const void *p;
    size_t n;

    *count = 0;
    *size = 0;
    scan_init(&s, dir);
    if (scan_open(&s, first, true, &f) == 0) {
        *size = s.size;
        if (scan_header(&s, &f) == 0) {
            while (scan_next(&s, &p, &n, &f) == 1)
                ++*count;
        }
    }
    scan_fini(&s);
}

int
cc_journal_repair(const char *dir, char *report, size_t n) {
    struct report rp = {report, n, 0};
    struct cc_journal_reader *r = NULL;
    const struct cc_journal_fault *f;
    uint64_t seq, records = 0, first, bytes, cnt, sz, lost_bytes = 0,
                  lost_known = 0, next_first;
    char name[NAME_LEN + 1];
    struct stat st;
    const void *p;
    size_t len, i, bad;
    int rc, dirfd, fd;
    bool whole;

    if (n > 0)
        report[0] = '\0';
    rc = lock_dir(dir, &dirfd, report, n);
    if (rc)
        return rc;
    rc = cc_journal_reader_open(&r, dir, 0, report, n);
    if (rc) {
        close(dirfd);
        return rc;
    }
    while ((rc = cc_journal_read(r, &seq, &p, &len)) == 1)
        records++;
    if (rc == 0) {
        if (r->segs.n == 0)
            report_add(&rp, "journal %s: clean, no segment\n", dir);
        else if (records == 0)
            report_add(&rp, "journal %s: clean, %zu segment(s), no record\n",
                       dir, r->segs.n);
        else
            report_add(&rp,
                       "journal %s: clean, %zu segment(s), records %" PRIu64
                       "..%" PRIu64 "\n",
                       dir, r->segs.n, r->end - records, r->end - 1);
        goto done;
    }
    f = &r->fault;
    if (f->kind == CC_JOURNAL_FAULT_VERSION) {
        report_add(&rp,
                   "journal %s: %s; not repairing: it needs a newer "
                   "contactd\n",
                   dir, r->msg);
        goto done;
    }
    if (f->kind != CC_JOURNAL_FAULT_TORN &&
        f->kind != CC_JOURNAL_FAULT_CORRUPT) {
        report_add(&rp, "journal %s: %s\n", dir, r->msg);
        goto done;
    }

    /* What is dropped, said before anything is touched. */
    bad = r->idx;
    first = r->segs.first[bad];
    next_first = bad + 1 < r->segs.n ? r->segs.first[bad + 1] : 0;
    whole = f->offset < HDR;
    report_add(&rp, "journal %s: %s\n", dir, r->msg);
    if (stat(f->file, &st) != 0) {
        rc = CC_EIO;
        report_add(&rp, "stat %s: %s\n", f->file, strerror(errno));
        goto done;
    }
    bytes = whole ? (uint64_t)st.st_size : (uint64_t)st.st_size - f->offset;
    lost_bytes += bytes;
    if (whole && next_first > first) {
        /* The next segment's name says how many records this one had. */
        report_add(&rp,
                   "removing %s: %" PRIu64 " bytes, records %" PRIu64
                   "..%" PRIu64 " (%" PRIu64 ")\n",
                   f->file, bytes, first, next_first - 1, next_first - first);
        lost_known += next_first - first;
    } else if (whole) {
        count_valid(dir, first, &cnt, &sz);
        report_add(&rp,
                   "removing %s: %" PRIu64 " bytes, %" PRIu64
                   " record(s) readable in it (from %" PRIu64 ")\n",
                   f->file, bytes, cnt, first);
        lost_known += cnt;
    } else if (next_first > f->seq) {
        report_add(&rp,
                   "truncating %s at offset %" PRIu64 ": %" PRIu64
                   " bytes, records %" PRIu64 "..%" PRIu64 " (%" PRIu64 ")\n",
                   f->file, f->offset, bytes, f->seq, next_first - 1,
                   next_first - f->seq);
        lost_known += next_first - f->seq;
    } else {
        report_add(&rp,
                   "truncating %s at offset %" PRIu64 ": %" PRIu64
                   " bytes, at least one record from %" PRIu64 "\n",
                   f->file, f->offset, bytes, f->seq);
        lost_known += 1;
    }
    for (i = bad + 1; i < r->segs.n; i++) {
        count_valid(dir, r->segs.first[i], &cnt, &sz);
        seg_name(name, r->segs.first[i]);
        report_add(&rp,
                   "removing %s/%s: %" PRIu64 " bytes, %" PRIu64
                   " record(s) readable in it (from %" PRIu64 ")\n",
                   dir, name, sz, cnt, r->segs.first[i]);
        lost_bytes += sz;
        lost_known += cnt;
    }
    report_add(&rp,
               "in all: %" PRIu64 " bytes and at least %" PRIu64
               " record(s) dropped; the journal now ends before record "
               "%" PRIu64 "\n",
               lost_bytes, lost_known, whole ? first : f->seq);

    /* The cut: later segments first, so that a crash half-way leaves a
     * journal that still ends at the damage and can be repaired again. */
    for (i = r->segs.n; i-- > bad + 1;) {
        seg_name(name, r->segs.first[i]);
        if (unlinkat(dirfd, name, 0) != 0) {
            rc = CC_EIO;
            report_add(&rp, "remove %s/%s: %s\n", dir, name, strerror(errno));
            goto done;
        }
    }
    seg_name(name, first);
    if (whole) {
        if (unlinkat(dirfd, name, 0) != 0) {
            rc = CC_EIO;
            report_add(&rp, "remove %s: %s\n", f->file, strerror(errno));
            goto done;
        }
    } else {
        fd = openat(dirfd, name, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)f->offset) != 0 ||
            fsync_retry(fd, false) != 0) {
            rc = CC_EIO;
            report_add(&rp, "truncate %s: %s\n", f->file, strerror(errno));
            if (fd >= 0)
                close(fd);
            goto done;
        }
        close(fd);
    }
    if (fsync_retry(dirfd, false) != 0) {
        rc = CC_EIO;
        report_add(&rp, "fsync %s: %s\n", dir, strerror(errno));
        goto done;
    }
    rc = 1;

done:
    cc_journal_reader_close(r);
    close(dirfd);
    return rc;
}
