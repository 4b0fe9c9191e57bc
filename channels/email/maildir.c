/*
 * The Maildir watcher. See mail.h.
 *
 * A Maildir's new/ holds complete messages only (the delivery agent writes
 * into tmp/ and renames), each under a unique name that starts with its
 * delivery time. Files are found two ways: an fs event names a file as it
 * arrives, and a scan of new/ (at start, after an fs event without a name,
 * and every `rescan`, because inotify drops events when its queue
 * overflows) lists every file. Both feed one queue of names, sorted
 * oldest first after each scan, with a set beside it so a name is queued
 * once.
 *
 * One file is in flight at a time, which keeps the delivery order the
 * engine sees: it is read and parsed on libuv's thread pool, its event is
 * submitted on the loop, and it is moved on the thread pool: to cur/ with
 * the Seen flag once the engine took the event (or already had it), or
 * with nothing for the engine (auto-replies and bounces); to the quarantine
 * when it can never be taken (unreadable, too large, not mail, refused by
 * the engine for the event itself). A file is moved only once its outcome
 * is final, so a restart reads new/ again and finds only the files not
 * done; one whose event was submitted but not moved is submitted again,
 * and the engine reports the repeated id as a duplicate. Nothing is
 * deleted: moves never replace a file (RENAME_NOREPLACE, or link and
 * unlink), and a taken name gets a numbered twin.
 */
#include "log.h"
#include "mail.h"
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* Names kept in the queue at most: a scan of a larger backlog keeps the
 * oldest, and the rest are found by the scan that follows once it drains. */
#define MD_QUEUE_MAX 65536
/* Names of files just moved out of new/: the fs event of our own rename
 * may arrive after the move, and would queue a file that is gone. Kept a
 * few seconds only, so that a file an operator moves back (out of the
 * quarantine, say) is read again. */
#define MD_RECENT 16
#define MD_RECENT_MS 5000
/* A quarantined file's name is logged with its reason, rate limited. */
#define MD_LOG_BURST 20
#define MD_LOG_INTERVAL_MS 60000
#define MD_DIR_MAX (CC_TEXT_MAX + 16)
#define MD_NAME_MAX 255

/* ---- the set of known names -------------------------------------------- */

struct md_name {
    struct md_name *next; /* in its bucket */
    uint64_t hash;
    char s[];
};

struct md_set {
    struct md_name **b;
    size_t nb, n;
};

static uint64_t
name_hash(const char *s) {
    return cc_hash(s, strlen(s), 0x6d61696c646972ULL);
}

static struct md_name *
set_find(const struct md_set *set, const char *s, uint64_t h) {
    struct md_name *e;

    if (set->nb == 0)
        return NULL;
    for (e = set->b[h & (set->nb - 1)]; e != NULL; e = e->next) {
        if (e->hash == h && strcmp(e->s, s) == 0)
            return e;
    }
    return NULL;
}

static int
set_grow(struct md_set *set) {
    size_t nb = set->nb != 0 ? set->nb * 2 : 64, i;
    struct md_name **b = calloc(nb, sizeof(*b)), *e, *next;

    if (b == NULL)
        return CC_ENOMEM;
    for (i = 0; i < set->nb; i++) {
        for (e = set->b[i]; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    free(set->b);
    set->b = b;
    set->nb = nb;
    return 0;
}

/* Adds a new entry for s (not in the set); NULL without memory. */
static struct md_name *
set_add(struct md_set *set, const char *s, uint64_t h) {
    size_t n = strlen(s);
    struct md_name *e;

    if (set->n + 1 > set->nb && set_grow(set) != 0)
        return NULL;
    e = malloc(sizeof(*e) + n + 1);
    if (e == NULL)
        return NULL;
    e->hash = h;
    memcpy(e->s, s, n + 1);
    e->next = set->b[h & (set->nb - 1)];
    set->b[h & (set->nb - 1)] = e;
    set->n++;
    return e;
}

/* Removes e from the set and frees it. */
static void
set_del(struct md_set *set, struct md_name *e) {
    struct md_name **pp = &set->b[e->hash & (set->nb - 1)];

    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    set->n--;
    free(e);
}

static void
set_fini(struct md_set *set) {
    struct md_name *e, *next;
    size_t i;

    for (i = 0; i < set->nb; i++) {
        for (e = set->b[i]; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(set->b);
    memset(set, 0, sizeof(*set));
}

/* Delivery order: Maildir names start with the delivery time in seconds,
 * compared as a number (a shorter number is older), then the names as
 * bytes. */
static int
name_cmp(const char *a, const char *b) {
    size_t da = strspn(a, "0123456789"), db = strspn(b, "0123456789");
    int c;

    if (da != 0 && db != 0) {
        if (da != db)
            return da < db ? -1 : 1;
        c = memcmp(a, b, da);
        if (c != 0)
            return c;
    }
    return strcmp(a, b);
}

static int
name_ptr_cmp(const void *a, const void *b) {
    return name_cmp(*(char *const *)a, *(char *const *)b);
}

static int
entry_ptr_cmp(const void *a, const void *b) {
    const struct md_name *x = *(struct md_name *const *)a;
    const struct md_name *y = *(struct md_name *const *)b;

    return name_cmp(x->s, y->s);
}

/* ---- the watcher -----------------------------------------------------------
 */

enum md_read {
    RD_OK,       /* read and parsed: mail holds it */
    RD_VANISHED, /* gone before it was opened */
    RD_RETRY,    /* a read failed for a reason that may pass */
    RD_BAD       /* never usable: quarantine it (why) */
};

/* The file in flight: read and parsed, then moved. */
struct md_file {
    uv_work_t req;
    struct cc_maildir *m;
    struct md_name *name; /* in the set while in flight */
    enum md_read rd;
    const char *why; /* RD_BAD: a static reason */
    int sys_err;     /* RD_RETRY: errno */
    int64_t mtime_ms;
    struct cc_mail mail;
    bool moving;
    bool to_quarantine;
    int move_err;  /* 0 or -errno */
    bool src_gone; /* the move failed because the file was gone */
    char dest[MD_DIR_MAX + MD_NAME_MAX + 16];
};

/* A scan of new/ on the thread pool. */
struct md_scan {
    uv_work_t req;
    char **names; /* sorted, at most MD_QUEUE_MAX */
    size_t n;
    bool truncated;
    int sys_err;
};

struct cc_maildir {
    uv_loop_t *loop;
    struct cc_maildir_config cfg;
    struct cc_adapter_host host;
    struct cc_mail_support support;
    char dir_new[MD_DIR_MAX], dir_cur[MD_DIR_MAX], dir_quar[MD_DIR_MAX];

    uv_fs_event_t watch;
    uv_timer_t timer;
    int open_handles;
    bool started, closing, done_called;
    /* Overloaded: nothing is read until the next periodic rescan. */
    bool paused;
    void (*done)(void *arg);
    void *done_arg;

    /* Names to read, oldest first: q[qhead..qlen). Every queued or in
     * flight name is in set. */
    struct md_set set;
    struct md_name **q;
    size_t qhead, qlen, qcap;
    bool truncated; /* names were left out: scan again once drained */
    struct {
        char name[MD_NAME_MAX + 1];
        uint64_t at; /* uv_now() of the move */
    } recent[MD_RECENT];
    uint32_t nrecent;

    bool busy; /* file in flight */
    struct md_file file;
    /* The file's event is applied; its move waits for the journal to make
     * record wait durable (cc_maildir_durable()): to the quarantine when
     * wait_quar. */
    bool waiting, wait_quar;
    uint64_t wait;
    bool scanning, scan_again;
    struct md_scan scan;

    struct cc_evbuf eb;
    struct cc_adapter_stats st;
    struct cc_maildir_counters ct;
    struct cc_ratelimit rl;
};

static void pump(struct cc_maildir *m);
static void request_scan(struct cc_maildir *m);

static uint64_t
md_now(const struct cc_maildir *m) {
    return m->host.now != NULL ? m->host.now(m->host.ctx) : 0;
}

static bool
log_ok(struct cc_maildir *m) {
    return cc_ratelimit_ok(&m->rl, md_now(m));
}

static bool
is_recent(const struct cc_maildir *m, const char *name) {
    uint32_t i, n = m->nrecent < MD_RECENT ? m->nrecent : MD_RECENT;
    uint64_t now = uv_now(m->loop);

    for (i = 0; i < n; i++) {
        if (now - m->recent[i].at < MD_RECENT_MS &&
            strcmp(m->recent[i].name, name) == 0)
            return true;
    }
    return false;
}

static void
remember_moved(struct cc_maildir *m, const char *name) {
    uint32_t i = m->nrecent % MD_RECENT;

    snprintf(m->recent[i].name, sizeof(m->recent[i].name), "%s", name);
    m->recent[i].at = uv_now(m->loop);
    m->nrecent++;
}

/* Queues name unless it is known or hidden ('.'); for an fs event
 * (from_event), unless it was just moved out too. */
static void
enqueue(struct cc_maildir *m, const char *name, bool from_event) {
    uint64_t h;
    struct md_name *e;

    if (name[0] == '.' || name[0] == '\0' || strlen(name) > MD_NAME_MAX)
        return;
    h = name_hash(name);
    if (set_find(&m->set, name, h) != NULL ||
        (from_event && is_recent(m, name)))
        return;
    if (m->qlen - m->qhead >= MD_QUEUE_MAX) {
        m->truncated = true;
        return;
    }
    if (m->qlen == m->qcap) {
        if (m->qhead != 0) {
            memmove(m->q, m->q + m->qhead,
                    (m->qlen - m->qhead) * sizeof(*m->q));
            m->qlen -= m->qhead;
            m->qhead = 0;
        } else {
            size_t cap = m->qcap != 0 ? m->qcap * 2 : 64;
            struct md_name **q = realloc(m->q, cap * sizeof(*q));
            if (q == NULL) {
                m->truncated = true;
                return;
            }
            m->q = q;
            m->qcap = cap;
        }
    }
    e = set_add(&m->set, name, h);
    if (e == NULL) {
        m->truncated = true;
        return;
    }
    m->q[m->qlen++] = e;
}

static void
maybe_done(struct cc_maildir *m) {
    if (!m->closing || m->done_called || m->open_handles != 0 || m->busy ||
        m->scanning)
        return;
    m->done_called = true;
    if (m->done != NULL)
        m->done(m->done_arg);
}

/* ---- scanning -------------------------------------------------------------
 */

static void
scan_free(struct md_scan *s) {
    size_t i;

    for (i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    s->names = NULL;
    s->n = 0;
}

static void
scan_work(uv_work_t *req) {
    struct md_scan *s = CC_CONTAINER_OF(req, struct md_scan, req);
    struct cc_maildir *m = req->data;
    size_t cap = 0, i;
    struct dirent *d;
    char **names;
    DIR *dir;

    s->names = NULL;
    s->n = 0;
    s->truncated = false;
    s->sys_err = 0;
    dir = opendir(m->dir_new);
    if (dir == NULL) {
        s->sys_err = errno;
        return;
    }
    for (;;) {
        errno = 0;
        d = readdir(dir);
        if (d == NULL) {
            s->sys_err = errno;
            break;
        }
        if (d->d_name[0] == '.')
            continue;
        if (s->n == cap) {
            cap = cap != 0 ? cap * 2 : 256;
            names = realloc(s->names, cap * sizeof(*names));
            if (names == NULL) {
                s->sys_err = ENOMEM;
                break;
            }
            s->names = names;
        }
        s->names[s->n] = strdup(d->d_name);
        if (s->names[s->n] == NULL) {
            s->sys_err = ENOMEM;
            break;
        }
        s->n++;
    }
    closedir(dir);
    if (s->n > 1)
        qsort(s->names, s->n, sizeof(*s->names), name_ptr_cmp);
    if (s->n > MD_QUEUE_MAX) {
        for (i = MD_QUEUE_MAX; i < s->n; i++)
            free(s->names[i]);
        s->n = MD_QUEUE_MAX;
        s->truncated = true;
    }
    /* A scan cut short by a lack of memory has missed names. */
    if (s->sys_err == ENOMEM)
        s->truncated = true;
}

static void
scan_done(uv_work_t *req, int status) {
    struct md_scan *s = CC_CONTAINER_OF(req, struct md_scan, req);
    struct cc_maildir *m = req->data;
    size_t i;

    m->scanning = false;
    if (status != 0 || m->closing) {
        scan_free(s);
        maybe_done(m);
        return;
    }
    if (s->sys_err != 0 && s->n == 0 && log_ok(m))
        cc_log_warn("maildir: cannot read %s: %s", m->dir_new,
                    strerror(s->sys_err));
    m->truncated = s->truncated;
    for (i = 0; i < s->n; i++)
        enqueue(m, s->names[i], false);
    scan_free(s);
    /* fs events may have queued newer names first: deliver in order. */
    if (m->qlen - m->qhead > 1)
        qsort(m->q + m->qhead, m->qlen - m->qhead, sizeof(*m->q),
              entry_ptr_cmp);
    m->ct.scans++;
    if (m->scan_again) {
        m->scan_again = false;
        request_scan(m);
    }
    pump(m);
}

static void
request_scan(struct cc_maildir *m) {
    if (m->closing || !m->started)
        return;
    if (m->scanning) {
        m->scan_again = true;
        return;
    }
    m->scan.req.data = m;
    if (uv_queue_work(m->loop, &m->scan.req, scan_work, scan_done) != 0)
        return;
    m->scanning = true;
}

/* ---- one file ----------------------------------------------------------- */

static void
file_work(uv_work_t *req) {
    struct md_file *f = CC_CONTAINER_OF(req, struct md_file, req);
    struct cc_maildir *m = f->m;
    char path[MD_DIR_MAX + MD_NAME_MAX + 2];
    const char *why;
    struct stat st;
    size_t got = 0;
    char *buf;
    ssize_t r;
    int fd;

    f->rd = RD_OK;
    f->why = NULL;
    f->sys_err = 0;
    snprintf(path, sizeof(path), "%s/%s", m->dir_new, f->name->s);
    /* O_NOFOLLOW: a link in new/ is not a delivered message (and could
     * point anywhere); O_NONBLOCK: a FIFO must not hang the thread. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        f->sys_err = errno;
        if (errno == ENOENT) {
            f->rd = RD_VANISHED;
        } else if (errno == ELOOP || errno == ENXIO) {
            f->rd = RD_BAD;
            f->why = "not a regular file";
        } else if (errno == EACCES || errno == EPERM) {
            f->rd = RD_BAD;
            f->why = "cannot read the file (permission denied)";
        } else {
            f->rd = RD_RETRY;
        }
        return;
    }
    if (fstat(fd, &st) != 0) {
        f->sys_err = errno;
        f->rd = RD_RETRY;
        goto out_close;
    }
    f->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
                  (int64_t)(st.st_mtim.tv_nsec / 1000000);
    if (!S_ISREG(st.st_mode)) {
        f->rd = RD_BAD;
        f->why = "not a regular file";
        goto out_close;
    }
    if ((uint64_t)st.st_size > m->cfg.max_message) {
        f->rd = RD_BAD;
        f->why = "larger than [maildir] max_message";
        goto out_close;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        f->sys_err = ENOMEM;
        f->rd = RD_RETRY;
        goto out_close;
    }
    /* A file in new/ is complete and does not change; one that shrinks
     * anyway is read as far as it goes. */
    while (got < (size_t)st.st_size) {
        r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            f->sys_err = errno;
            f->rd = RD_RETRY;
            free(buf);
            goto out_close;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (cc_mail_parse(buf, got, &m->support, &f->mail, &why) != 0) {
        f->rd = RD_BAD;
        f->why = why;
    }
    free(buf);
out_close:
    close(fd);
}

/*
 * Splits a name into its unique part and its Maildir info with the Seen
 * flag: "T.U.host" gives "T.U.host" and ":2,S"; "T.U.host:2,FR" gives
 * "T.U.host" and ":2,FRS" (flags stay in ASCII order).
 */
static void
seen_info(const char *name, char *base, size_t bcap, char *info, size_t icap) {
    const char *p = strstr(name, ":2,");
    const char *flags = p != NULL ? p + 3 : "";
    size_t nb = p != NULL ? (size_t)(p - name) : strlen(name), o = 3;
    bool put = false;

    snprintf(base, bcap, "%.*s", (int)nb, name);
    memcpy(info, ":2,", 4);
    for (; *flags != '\0' && o + 2 < icap; flags++) {
        if (!put && *flags >= 'S') {
            if (*flags != 'S')
                info[o++] = 'S';
            put = true;
        }
        info[o++] = *flags;
    }
    if (!put)
        info[o++] = 'S';
    info[o] = '\0';
}

/*
 * Moves src to dir/base+info without replacing anything: when the name is
 * taken, dir/base.N+info (N from 1 to 99). Returns 0 (the name used in
 * dest) or -errno.
 */
static int
move_noreplace(const char *src, const char *dir, const char *base,
               const char *info, char *dest, size_t cap) {
    struct stat st;
    int k;

    for (k = 0; k < 100; k++) {
        int n = k == 0 ? snprintf(dest, cap, "%s/%s%s", dir, base, info)
                       : snprintf(dest, cap, "%s/%s.%d%s", dir, base, k, info);
        if (n < 0 || (size_t)n >= cap)
            return -ENAMETOOLONG;
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EEXIST)
            continue;
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* The file system has no RENAME_NOREPLACE: a hard link fails on
         * a taken name as well. */
        if (link(src, dest) == 0) {
            if (unlink(src) != 0 && errno != ENOENT)
                cc_log_warn("maildir: %s is now also %s: %s", src, dest,
                            strerror(errno));
            return 0;
        }
        if (errno == EEXIST)
            continue;
        if (errno != EPERM && errno != ENOTSUP && errno != EMLINK)
            return -errno;
        /* No hard links either: check, then rename (racy only against
         * another writer of this folder). */
        if (lstat(dest, &st) == 0)
            continue;
        if (rename(src, dest) == 0)
            return 0;
        return -errno;
    }
    return -EEXIST;
}

static void
move_work(uv_work_t *req) {
    struct md_file *f = CC_CONTAINER_OF(req, struct md_file, req);
    struct cc_maildir *m = f->m;
    char src[MD_DIR_MAX + MD_NAME_MAX + 2];
    char base[MD_NAME_MAX + 1], info[64];
    struct stat st;

    snprintf(src, sizeof(src), "%s/%s", m->dir_new, f->name->s);
    if (f->to_quarantine) {
        f->move_err = move_noreplace(src, m->dir_quar, f->name->s, "", f->dest,
                                     sizeof(f->dest));
    } else {
        seen_info(f->name->s, base, sizeof(base), info, sizeof(info));
        /* Room for a numbered twin (".99"), or cur/ without the flag. */
        if (strlen(base) + strlen(info) + 3 > MD_NAME_MAX) {
            snprintf(base, sizeof(base), "%s", f->name->s);
            info[0] = '\0';
        }
        f->move_err = move_noreplace(src, m->dir_cur, base, info, f->dest,
                                     sizeof(f->dest));
    }
    /* ENOENT names either end: a missing destination folder is an error
     * to report, a missing file is someone else's move. */
    f->src_gone =
        f->move_err == -ENOENT && lstat(src, &st) != 0 && errno == ENOENT;
}

/* The file's outcome is final (or left for later): forget its name, and
 * read the next one. */
static void
file_end(struct cc_maildir *m) {
    struct md_file *f = &m->file;

    set_del(&m->set, f->name);
    f->name = NULL;
    m->busy = false;
    if (m->closing) {
        maybe_done(m);
        return;
    }
    pump(m);
}

static void
move_done(uv_work_t *req, int status) {
    struct md_file *f = CC_CONTAINER_OF(req, struct md_file, req);
    struct cc_maildir *m = f->m;

    f->moving = false;
    if (status != 0) {
        /* Cancelled at close: the file stays in new/ and is read again
         * at the next start. */
        file_end(m);
        return;
    }
    if (f->move_err == 0) {
        if (f->to_quarantine)
            m->ct.quarantined++;
        else
            m->ct.moved++;
        remember_moved(m, f->name->s);
    } else if (f->src_gone) {
        /* Moved by someone else meanwhile: nothing left to do. */
        cc_log_debug("maildir: %s/%s vanished before it was moved", m->dir_new,
                     f->name->s);
    } else {
        m->ct.deferred++;
        if (log_ok(m))
            cc_log_error("maildir: cannot move %s/%s to %s: %s; it stays "
                         "in new/ and is read again at the next rescan",
                         m->dir_new, f->name->s,
                         f->to_quarantine ? m->dir_quar : m->dir_cur,
                         strerror(-f->move_err));
    }
    file_end(m);
}

static void
start_move(struct cc_maildir *m, bool to_quarantine) {
    struct md_file *f = &m->file;

    f->to_quarantine = to_quarantine;
    f->move_err = 0;
    f->src_gone = false;
    f->dest[0] = '\0';
    f->moving = true;
    if (uv_queue_work(m->loop, &f->req, move_work, move_done) != 0) {
        f->moving = false;
        m->ct.deferred++;
        file_end(m);
    }
}

static void
quarantine(struct cc_maildir *m, const char *reason) {
    m->st.received++;
    if (log_ok(m))
        cc_log_warn("maildir: %s/%s goes to the quarantine (%s): %s",
                    m->dir_new, m->file.name->s, m->dir_quar, reason);
    start_move(m, true);
}

/* A parsed message: the engine's answer decides where it goes. */
static void
submit(struct cc_maildir *m) {
    struct md_file *f = &m->file;
    struct cc_submit res;
    struct cc_nev ev;
    const void *msg;
    int64_t delivered = f->mtime_ms;
    size_t len;

    if (f->mail.kind == CC_MAIL_AUTO_REPLY || f->mail.kind == CC_MAIL_BOUNCE) {
        m->st.received++;
        m->st.ignored++;
        if (f->mail.kind == CC_MAIL_BOUNCE)
            m->ct.bounces++;
        else
            m->ct.auto_replies++;
        cc_log_debug("maildir: %s is automatic (%s): not a customer message",
                     f->name->s, f->mail.automatic);
        start_move(m, false);
        return;
    }
    /* A file stamped at the epoch (restored from a backup, touched) has no
     * delivery time: now is the best there is. */
    if (delivered <= 0)
        delivered = (int64_t)md_now(m);
    cc_mail_map(&f->mail, m->cfg.channel, delivered, &ev);
    cc_evbuf_reset(&m->eb);
    cc_evbuf_add(&m->eb, &ev);
    msg = cc_evbuf_msg(&m->eb, &len);
    memset(&res, 0, sizeof(res));
    m->host.submit(m->host.ctx, msg, len, &res);
    if (res.overloaded) {
        /* A limit of the engine's that passes, or a journal that cannot
         * write: try again later, and read nothing more until then. */
        m->ct.deferred++;
        m->paused = true;
        if (log_ok(m))
            cc_log_warn("maildir: the engine is overloaded (%s); %s stays "
                        "in new/ until the next rescan",
                        res.error != NULL ? res.error : res.first_reason,
                        f->name->s);
        file_end(m);
        return;
    }
    m->st.received++;
    cc_adapter_count_submit(&m->st, &res);
    if (res.error != NULL) {
        if (log_ok(m))
            cc_log_warn("maildir: %s/%s goes to the quarantine (%s): the "
                        "event was refused: %s",
                        m->dir_new, f->name->s, m->dir_quar, res.error);
        start_move(m, true);
        return;
    }
    if (res.rejected != 0) {
        if (log_ok(m))
            cc_log_warn("maildir: %s/%s goes to the quarantine (%s): the "
                        "engine rejected its event: %s",
                        m->dir_new, f->name->s, m->dir_quar, res.first_reason);
    }
    if (!cc_adapter_durable(&m->host, res.wait)) {
        /* The file leaves new/ only once its event is on disk: a crash
         * before that reads it again, and the journal's copy, if any,
         * makes it a duplicate. */
        m->waiting = true;
        m->wait_quar = res.rejected != 0;
        m->wait = res.wait;
        return;
    }
    start_move(m, res.rejected != 0);
}

void
cc_maildir_durable(struct cc_maildir *m, uint64_t mark) {
    if (!m->waiting || m->wait >= mark)
        return;
    m->waiting = false;
    if (m->closing) {
        file_end(m);
        return;
    }
    start_move(m, m->wait_quar);
}

static void
file_done(uv_work_t *req, int status) {
    struct md_file *f = CC_CONTAINER_OF(req, struct md_file, req);
    struct cc_maildir *m = f->m;

    if (status != 0 || m->closing) {
        /* Closing: the file stays in new/ for the next start. */
        file_end(m);
        return;
    }
    switch (f->rd) {
    case RD_VANISHED:
        cc_log_debug("maildir: %s/%s vanished before it was read", m->dir_new,
                     f->name->s);
        file_end(m);
        return;
    case RD_RETRY:
        m->ct.deferred++;
        if (log_ok(m))
            cc_log_warn("maildir: cannot read %s/%s: %s; trying again at the "
                        "next rescan",
                        m->dir_new, f->name->s, strerror(f->sys_err));
        file_end(m);
        return;
    case RD_BAD:
        cc_adapter_reject(&m->st, f->why);
        quarantine(m, f->why);
        return;
    case RD_OK:
        submit(m);
        return;
    }
}

static void
pump(struct cc_maildir *m) {
    struct md_file *f = &m->file;

    if (m->busy || m->closing || m->paused || !m->started)
        return;
    if (m->qhead == m->qlen) {
        m->qhead = m->qlen = 0;
        if (m->truncated) {
            m->truncated = false;
            request_scan(m);
        }
        return;
    }
    f->name = m->q[m->qhead++];
    f->m = m;
    f->moving = false;
    if (uv_queue_work(m->loop, &f->req, file_work, file_done) != 0) {
        set_del(&m->set, f->name);
        f->name = NULL;
        m->ct.deferred++;
        return;
    }
    m->busy = true;
}

/* ---- the loop's handles ----------------------------------------------------
 */

static void
watch_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
    struct cc_maildir *m = CC_CONTAINER_OF(h, struct cc_maildir, watch);

    (void)events;
    if (m->closing)
        return;
    if (status < 0) {
        if (log_ok(m))
            cc_log_warn("maildir: watching %s: %s", m->dir_new,
                        uv_strerror(status));
        request_scan(m);
        return;
    }
    /* No name: the kernel dropped events (or cannot say): look. */
    if (filename == NULL) {
        request_scan(m);
        return;
    }
    enqueue(m, filename, true);
    pump(m);
}

static void
timer_cb(uv_timer_t *t) {
    struct cc_maildir *m = CC_CONTAINER_OF(t, struct cc_maildir, timer);

    m->paused = false;
    request_scan(m);
}

static void
close_cb(uv_handle_t *h) {
    struct cc_maildir *m = h->data;

    m->open_handles--;
    maybe_done(m);
}

/* ---- the API ---------------------------------------------------------------
 */

int
cc_maildir_new(struct cc_maildir **out, uv_loop_t *loop,
               const struct cc_maildir_config *cfg,
               const struct cc_adapter_host *host, char *err, size_t errlen) {
    struct cc_maildir *m;
    int rc;

    *out = NULL;
    if (cfg->path[0] == '\0')
        return cc_errf(err, errlen, CC_EINVAL, "[maildir] path is not set");
    if (cfg->channel[0] == '\0')
        return cc_errf(err, errlen, CC_EINVAL, "[maildir] channel is empty");
    if (cfg->rescan_ms == 0)
        return cc_errf(err, errlen, CC_EINVAL,
                       "[maildir] rescan must be at least 1 ms: it is how "
                       "missed files and deferred ones are found");
    if (cfg->max_message == 0)
        return cc_errf(err, errlen, CC_EINVAL,
                       "[maildir] max_message must not be 0");
    if (host == NULL || host->submit == NULL)
        return cc_errf(err, errlen, CC_EINVAL, "maildir: no adapter host");
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "maildir: out of memory");
    rc = cc_mail_support_parse(&m->support, cfg->support, err, errlen);
    if (rc != 0) {
        free(m);
        return rc;
    }
    m->loop = loop;
    m->cfg = *cfg;
    m->host = *host;
    m->rl.interval_ms = MD_LOG_INTERVAL_MS;
    m->rl.burst = MD_LOG_BURST;
    snprintf(m->dir_new, sizeof(m->dir_new), "%s/new", cfg->path);
    snprintf(m->dir_cur, sizeof(m->dir_cur), "%s/cur", cfg->path);
    if (cfg->quarantine[0] != '\0')
        snprintf(m->dir_quar, sizeof(m->dir_quar), "%s", cfg->quarantine);
    else
        snprintf(m->dir_quar, sizeof(m->dir_quar), "%s/quarantine", cfg->path);
    cc_evbuf_init(&m->eb);
    /* Both handles exist from here on, so that close always has something
     * to wait for and calls done from the loop. */
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    uv_fs_event_init(loop, &m->watch);
    m->watch.data = m;
    m->open_handles = 2;
    *out = m;
    return 0;
}

/* dir as a directory: made when missing (its parent must exist). */
static int
ensure_dir(const char *dir, struct stat *st, char *err, size_t errlen) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cc_errf(err, errlen, CC_EIO, "maildir: cannot create %s: %s",
                       dir, strerror(errno));
    if (stat(dir, st) != 0)
        return cc_errf(err, errlen, CC_EIO, "maildir: %s: %s", dir,
                       strerror(errno));
    if (!S_ISDIR(st->st_mode))
        return cc_errf(err, errlen, CC_EINVAL, "maildir: %s is not a directory",
                       dir);
    return 0;
}

int
cc_maildir_start(struct cc_maildir *m, char *err, size_t errlen) {
    static const char *const subs[] = {"new", "cur", "tmp"};
    char dir[MD_DIR_MAX];
    struct stat st, stnew;
    size_t i;
    int rc;

    if (m->started || m->closing)
        return cc_errf(err, errlen, CC_ESTATE, "maildir: already started");
    if (stat(m->cfg.path, &st) != 0)
        return cc_errf(err, errlen, CC_EINVAL, "[maildir] path %s: %s",
                       m->cfg.path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cc_errf(err, errlen, CC_EINVAL,
                       "[maildir] path %s is not a directory", m->cfg.path);
    for (i = 0; i < CC_ARRAY_SIZE(subs); i++) {
        snprintf(dir, sizeof(dir), "%s/%s", m->cfg.path, subs[i]);
        rc = ensure_dir(dir, i == 0 ? &stnew : &st, err, errlen);
        if (rc != 0)
            return rc;
    }
    rc = ensure_dir(m->dir_quar, &st, err, errlen);
    if (rc != 0)
        return rc;
    /* Files are renamed into the quarantine, never copied. */
    if (st.st_dev != stnew.st_dev)
        return cc_errf(err, errlen, CC_EINVAL,
                       "[maildir] quarantine %s is not on the file system of "
                       "%s",
                       m->dir_quar, m->dir_new);
    rc = uv_fs_event_start(&m->watch, watch_cb, m->dir_new, 0);
    if (rc != 0)
        return cc_errf(err, errlen, CC_EIO, "maildir: cannot watch %s: %s",
                       m->dir_new, uv_strerror(rc));
    if (m->cfg.rescan_ms != 0)
        uv_timer_start(&m->timer, timer_cb, m->cfg.rescan_ms, m->cfg.rescan_ms);
    m->started = true;
    request_scan(m);
    return 0;
}

void
cc_maildir_close(struct cc_maildir *m, void (*done)(void *arg), void *arg) {
    CC_ASSERT(!m->closing);
    m->closing = true;
    m->done = done;
    m->done_arg = arg;
    if (m->waiting) {
        /* Its event is not known to be on disk: the file stays in new/
         * for the next start. */
        m->waiting = false;
        file_end(m);
    }
    /* Work not yet begun is dropped; a read already running ends without
     * its file being submitted; a move runs to its end. */
    if (m->busy && !m->file.moving)
        uv_cancel((uv_req_t *)&m->file.req);
    if (m->scanning)
        uv_cancel((uv_req_t *)&m->scan.req);
    uv_close((uv_handle_t *)&m->watch, close_cb);
    uv_close((uv_handle_t *)&m->timer, close_cb);
}

void
cc_maildir_free(struct cc_maildir *m) {
    if (m == NULL)
        return;
    CC_ASSERT(m->done_called);
    set_fini(&m->set);
    free(m->q);
    cc_evbuf_fini(&m->eb);
    free(m);
}

const struct cc_adapter_stats *
cc_maildir_stats(const struct cc_maildir *m) {
    return &m->st;
}

void
cc_maildir_counters(const struct cc_maildir *m,
                    struct cc_maildir_counters *out) {
    *out = m->ct;
    out->pending = m->set.n;
}

void
cc_maildir_pack_stats(const struct cc_maildir *m, msgpack_packer *pk) {
    cc_adapter_pack_stats(&m->st, pk, 5);
    cc_pack_kv_u64(pk, "auto_replies", m->ct.auto_replies);
    cc_pack_kv_u64(pk, "bounces", m->ct.bounces);
    cc_pack_kv_u64(pk, "quarantined", m->ct.quarantined);
    cc_pack_kv_u64(pk, "deferred", m->ct.deferred);
    cc_pack_kv_u64(pk, "pending", m->set.n);
}
