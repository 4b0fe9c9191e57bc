/*
 * The journal driver. See durable.h.
 */
#include "durable.h"

#include "journal.h"
#include "log.h"
#include "mem.h"
#include "outbox.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

enum state {
    ST_OK,
    ST_FAULT,      /* writes fail: retrying */
    ST_SYNC_FAILED /* final until a restart */
};

struct cc_durable {
    uv_loop_t *loop;
    struct cc_journal *j;
    char dir[CC_TEXT_MAX + 16];
    int policy;
    uint64_t interval_ms, sync_records, max_unwritten;
    cc_durable_cb on_durable;
    void *arg;

    enum state state;
    char why[320];    /* why input is refused, for replies */
    uint64_t mark;    /* every record below it is durable */
    uint64_t last;    /* the last record appended, or 0 */
    uint64_t target;  /* the running sync makes records below it durable */
    uint64_t pending; /* records written, not yet synced */
    uint64_t pending_since; /* uv_now when the oldest of them was written */
    uint64_t trim_to;       /* segments wholly below it may go */
    uint64_t trimmed;       /* trim_to when segments were last removed */
    int sync_rc;
    bool syncing;
    bool timer_armed;
    uv_work_t work;
    uv_timer_t timer; /* the batch interval, and retries after a fault */

    /* stats */
    uint64_t records, syncs, sync_ns, sync_max_ns, write_errors;
    uint64_t segments_removed;
    uint64_t sync_started_ns;
};

const char *
cc_fsync_name(int policy) {
    return policy == CC_FSYNC_ALWAYS  ? "always"
           : policy == CC_FSYNC_BATCH ? "batch"
                                      : "off";
}

int
cc_durable_journal_dir(const struct cc_config *cfg, char *buf, size_t n) {
    int k = snprintf(buf, n, "%s/journal", cfg->data_dir);
    return k > 0 && (size_t)k < n ? 0 : CC_EINVAL;
}

int
cc_durable_parse(const void *p, size_t n, enum cc_durable_kind *kind,
                 uint64_t *num, const void **msg, size_t *len) {
    const unsigned char *b = p;

    if (n < CC_DURABLE_HEAD)
        return CC_EPROTO;
    switch (b[0]) {
    case CC_REC_INGEST:
        if (n == CC_DURABLE_HEAD)
            return CC_EPROTO;
        break;
    case CC_REC_GENESIS:
    case CC_REC_TICK:
    case CC_REC_SENT:
        if (n != CC_DURABLE_HEAD)
            return CC_EPROTO;
        break;
    default:
        return CC_EPROTO;
    }
    *kind = (enum cc_durable_kind)b[0];
    *num = cc_get_le64(b + 1);
    *msg = b + CC_DURABLE_HEAD;
    *len = n - CC_DURABLE_HEAD;
    return 0;
}

static int
make_dir(const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    return cc_errf(err, errlen, CC_EIO, "[durability] dir: mkdir %s: %s", dir,
                   strerror(errno));
}

int
cc_durable_open(struct cc_durable **out, uv_loop_t *loop,
                const struct cc_config *cfg, uint64_t first_seq,
                cc_durable_cb on_durable, void *arg, char *err, size_t errlen) {
    struct cc_journal_opts o = {0};
    struct cc_durable *d;
    int rc;

    *out = NULL;
    d = cc_calloc(1, sizeof(*d));
    if (d == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
    if (cc_durable_journal_dir(cfg, d->dir, sizeof(d->dir)) != 0) {
        cc_free(d, sizeof(*d));
        return cc_errf(err, errlen, CC_EINVAL, "[durability] dir too long");
    }
    rc = make_dir(cfg->data_dir, err, errlen);
    if (rc == 0) {
        o.segment_size = cfg->segment_size;
        o.sync_off = cfg->fsync == CC_FSYNC_OFF;
        o.first_seq = first_seq;
        rc = cc_journal_open(&d->j, d->dir, &o, err, errlen);
    }
    if (rc != 0) {
        cc_free(d, sizeof(*d));
        return rc;
    }
    d->loop = loop;
    d->policy = cfg->fsync;
    d->interval_ms = cfg->sync_interval_ms;
    d->sync_records = cfg->sync_records;
    d->max_unwritten = cfg->max_unwritten;
    d->on_durable = on_durable;
    d->arg = arg;
    d->mark = cc_journal_next_seq(d->j);
    d->last = d->mark - 1;
    uv_timer_init(loop, &d->timer);
    *out = d;
    return 0;
}

void
cc_durable_head(unsigned char head[CC_DURABLE_HEAD], enum cc_durable_kind kind,
                uint64_t num) {
    head[0] = (unsigned char)kind;
    cc_put_le64(head + 1, num);
}

int
cc_replay_init(struct cc_replay *r, struct cc_engine **e,
               const struct cc_engine_config *ec) {
    memset(r, 0, sizeof(*r));
    r->e = e;
    r->ec = ec;
    if (*e != NULL)
        r->now = cc_engine_now(*e);
    r->buf = cc_malloc(CC_REPLAY_BYTES);
    return r->buf != NULL ? 0 : CC_ENOMEM;
}

void
cc_replay_flush(struct cc_replay *r) {
    if (r->held == 0)
        return;
    cc_engine_ingest_many(*r->e, r->msgs, r->held, r->held_now, r->reps);
    r->held = 0;
    r->used = 0;
}

void
cc_replay_fini(struct cc_replay *r) {
    unsigned i;

    if (r->buf == NULL)
        return;
    cc_replay_flush(r);
    for (i = 0; i < CC_REPLAY_GROUP; i++)
        cc_ingest_report_fini(&r->reps[i]);
    cc_free(r->buf, CC_REPLAY_BYTES);
    r->buf = NULL;
}

/* Holds an ingest message to apply with the next ones of its time; one
 * that does not fit is applied at once, after the held ones. */
static void
replay_ingest(struct cc_replay *r, const void *msg, size_t len, uint64_t now) {
    if (r->held != 0 && (now != r->held_now || r->held == CC_REPLAY_GROUP ||
                         len > CC_REPLAY_BYTES - r->used))
        cc_replay_flush(r);
    if (len > CC_REPLAY_BYTES) {
        cc_engine_ingest(*r->e, msg, len, now, &r->reps[0]);
        return;
    }
    memcpy(r->buf + r->used, msg, len);
    r->msgs[r->held].data = r->buf + r->used;
    r->msgs[r->held].len = len;
    r->used += len;
    r->held_now = now;
    r->held++;
}

int
cc_replay_record(struct cc_replay *r, uint64_t seq, const void *p, size_t n,
                 uint64_t *sent, char *err, size_t errlen) {
    enum cc_durable_kind kind;
    const void *msg;
    uint64_t num;
    size_t len;

    *sent = 0;
    if (cc_durable_parse(p, n, &kind, &num, &msg, &len) != 0)
        return cc_errf(err, errlen, CC_EPROTO,
                       "journal: record %llu is not a contactd record",
                       (unsigned long long)seq);
    if (*r->e == NULL && kind != CC_REC_GENESIS)
        return cc_errf(err, errlen, CC_EPROTO,
                       "journal: starts at record %llu, which is not where "
                       "an engine began, and no snapshot covers the records "
                       "before it",
                       (unsigned long long)seq);
    if (kind != CC_REC_INGEST)
        cc_replay_flush(r);
    switch (kind) {
    case CC_REC_GENESIS:
        if (*r->e != NULL)
            return cc_errf(err, errlen, CC_EPROTO,
                           "journal: record %llu starts a second engine",
                           (unsigned long long)seq);
        if (cc_engine_new(r->e, r->ec, num) != 0)
            return cc_errf(err, errlen, CC_ENOMEM,
                           "out of memory creating the engine");
        break;
    case CC_REC_INGEST:
        replay_ingest(r, msg, len, num);
        break;
    case CC_REC_TICK:
        cc_engine_tick(*r->e, num);
        break;
    case CC_REC_SENT:
        *sent = num;
        return 0;
    }
    if (num > r->now)
        r->now = num;
    return 0;
}

uint64_t
cc_durable_log(struct cc_durable *d, enum cc_durable_kind kind, uint64_t num,
               const void *msg, size_t len) {
    unsigned char head[CC_DURABLE_HEAD];
    uint64_t seq;

    cc_durable_head(head, kind, num);
    seq = cc_journal_append2(d->j, head, sizeof(head), msg, len);
    if (seq != 0) {
        d->last = seq;
        d->records++;
    }
    return seq;
}

bool
cc_durable_accepting(const struct cc_durable *d, const char **why) {
    if (d->state != ST_OK) {
        *why = d->why;
        return false;
    }
    if (cc_journal_buffered(d->j) > d->max_unwritten) {
        *why = "journal: more than [durability] max_unwritten waits for the "
               "disk; retry later";
        return false;
    }
    return true;
}

bool
cc_durable_faulty(const struct cc_durable *d) {
    return d->state != ST_OK;
}

uint64_t
cc_durable_mark(const struct cc_durable *d) {
    return d->mark;
}

uint64_t
cc_durable_last(const struct cc_durable *d) {
    return d->last;
}

bool
cc_durable_idle(const struct cc_durable *d) {
    return !d->syncing && d->mark > d->last;
}

static void
advance(struct cc_durable *d, uint64_t mark) {
    if (mark <= d->mark)
        return;
    d->mark = mark;
    if (d->on_durable != NULL)
        d->on_durable(d->arg, mark);
}

static void
sync_work_cb(uv_work_t *w) {
    struct cc_durable *d = CC_CONTAINER_OF(w, struct cc_durable, work);
    d->sync_rc = cc_journal_sync(d->j);
}

static void timer_cb(uv_timer_t *t);

/* Removes the segments a snapshot covers, when no sync runs. */
static void
trim_now(struct cc_durable *d) {
    int rc;

    if (d->syncing || d->trim_to <= d->trimmed)
        return;
    d->trimmed = d->trim_to;
    rc = cc_journal_remove_before(d->j, d->trim_to);
    if (rc < 0)
        cc_log_warn("journal: removing segments a snapshot covers: %s; "
                    "they stay",
                    cc_journal_error(d->j));
    else
        d->segments_removed += (uint64_t)rc;
}

void
cc_durable_trim(struct cc_durable *d, uint64_t seq) {
    if (seq > d->trim_to)
        d->trim_to = seq;
    trim_now(d);
}

static void
sync_done_cb(uv_work_t *w, int status) {
    struct cc_durable *d = CC_CONTAINER_OF(w, struct cc_durable, work);
    uint64_t ns = uv_hrtime() - d->sync_started_ns;

    (void)status;
    d->syncing = false;
    d->syncs++;
    d->sync_ns += ns;
    if (ns > d->sync_max_ns)
        d->sync_max_ns = ns;
    if (d->sync_rc != 0) {
        d->state = ST_SYNC_FAILED;
        snprintf(d->why, sizeof(d->why),
                 "journal: sync failed (%s); nothing more is acknowledged "
                 "until contactd is restarted",
                 cc_journal_sync_error(d->j));
        cc_log_error("%s", d->why);
        return;
    }
    advance(d, d->target);
    trim_now(d);
    cc_durable_kick(d);
}

static void
start_sync(struct cc_durable *d) {
    d->target = cc_journal_written_seq(d->j);
    d->pending = 0;
    d->syncing = true;
    d->sync_started_ns = uv_hrtime();
    /* Cannot fail: both callbacks are given. */
    (void)uv_queue_work(d->loop, &d->work, sync_work_cb, sync_done_cb);
}

static void
arm(struct cc_durable *d, uint64_t ms) {
    if (d->timer_armed)
        return;
    d->timer_armed = true;
    uv_timer_start(&d->timer, timer_cb, ms, 0);
}

static void
timer_cb(uv_timer_t *t) {
    struct cc_durable *d = CC_CONTAINER_OF(t, struct cc_durable, timer);
    d->timer_armed = false;
    cc_durable_kick(d);
}

/* Writes what is buffered. A failure keeps it buffered and retries: the
 * records already in the file are still synced meanwhile. */
static void
write_now(struct cc_durable *d) {
    uint64_t before = cc_journal_written_seq(d->j);
    int rc = cc_journal_write(d->j);
    uint64_t after = cc_journal_written_seq(d->j);

    if (after > before) {
        if (d->pending == 0)
            d->pending_since = uv_now(d->loop);
        d->pending += after - before;
    }
    if (rc == CC_EIO) {
        d->write_errors++;
        if (d->state == ST_OK) {
            snprintf(d->why, sizeof(d->why),
                     "journal: cannot write (%s); nothing is acknowledged "
                     "until it can",
                     cc_journal_error(d->j));
            cc_log_error("%s; retrying every %d ms", d->why,
                         CC_DURABLE_RETRY_MS);
            d->state = ST_FAULT;
        }
        arm(d, CC_DURABLE_RETRY_MS);
        return;
    }
    if (d->state == ST_FAULT && cc_journal_buffered(d->j) == 0) {
        d->state = ST_OK;
        cc_log_info("journal: writing again; the records that waited are "
                    "in the file");
    }
    if (rc == 1) /* a full segment waits for its sync to rotate */
        d->pending =
            d->sync_records > d->pending ? d->sync_records : d->pending;
}

void
cc_durable_kick(struct cc_durable *d) {
    uint64_t waited;

    if (d->syncing || d->state == ST_SYNC_FAILED)
        return; /* sync_done_cb kicks again */
    if (cc_journal_buffered(d->j) != 0)
        write_now(d);
    if (d->policy == CC_FSYNC_OFF) {
        advance(d, cc_journal_written_seq(d->j));
        return;
    }
    if (d->pending == 0)
        return;
    if (d->policy == CC_FSYNC_BATCH && d->pending < d->sync_records) {
        waited = uv_now(d->loop) - d->pending_since;
        if (waited < d->interval_ms) {
            arm(d, d->interval_ms - waited);
            return;
        }
    }
    start_sync(d);
}

int
cc_durable_flush(struct cc_durable *d) {
    int rc;

    if (d->state == ST_SYNC_FAILED)
        return CC_EIO;
    do {
        rc = cc_journal_write(d->j);
        if (rc == 1)
            rc = cc_journal_sync(d->j);
    } while (rc == 0 && cc_journal_buffered(d->j) != 0);
    if (rc == 0 && d->policy != CC_FSYNC_OFF)
        rc = cc_journal_sync(d->j);
    if (rc != 0) {
        cc_log_error("journal: at shutdown: %s",
                     cc_journal_buffered(d->j) != 0
                         ? cc_journal_error(d->j)
                         : cc_journal_sync_error(d->j));
        return CC_EIO;
    }
    d->mark = cc_journal_written_seq(d->j);
    return 0;
}

static void
close_cb(uv_handle_t *h) {
    (void)h;
}

void
cc_durable_close(struct cc_durable *d) {
    if (d != NULL)
        uv_close((uv_handle_t *)&d->timer, close_cb);
}

void
cc_durable_free(struct cc_durable *d) {
    if (d == NULL)
        return;
    cc_journal_close(d->j);
    cc_free(d, sizeof(*d));
}

void
cc_durable_pack_stats(const struct cc_durable *d, msgpack_packer *pk) {
    msgpack_pack_map(pk, 13);
    cc_pack_str(pk, "dir");
    cc_pack_str(pk, d->dir);
    cc_pack_str(pk, "fsync");
    cc_pack_str(pk, cc_fsync_name(d->policy));
    cc_pack_str(pk, "state");
    cc_pack_str(pk, d->state == ST_OK      ? "ok"
                    : d->state == ST_FAULT ? "write failing"
                                           : "sync failed");
    cc_pack_kv_u64(pk, "records", d->records);
    cc_pack_kv_u64(pk, "next_seq", cc_journal_next_seq(d->j));
    cc_pack_kv_u64(pk, "written_seq", cc_journal_written_seq(d->j));
    cc_pack_kv_u64(pk, "durable_seq", d->mark);
    cc_pack_kv_u64(pk, "unwritten_bytes", cc_journal_buffered(d->j));
    cc_pack_kv_u64(pk, "syncs", d->syncs);
    cc_pack_kv_u64(pk, "sync_avg_us",
                   d->syncs ? d->sync_ns / d->syncs / 1000 : 0);
    cc_pack_kv_u64(pk, "sync_max_us", d->sync_max_ns / 1000);
    cc_pack_kv_u64(pk, "write_errors", d->write_errors);
    cc_pack_kv_u64(pk, "segments_removed", d->segments_removed);
}
