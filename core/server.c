/*
 * The server shell. See server.h.
 *
 * Threads: the loop thread runs everything but two hand-overs.
 *  - PULL ingest, [server] ingest_io = thread (the default): a receiving
 *    thread blocks in nng_recvmsg and appends to a bounded queue; it wakes
 *    the loop with uv_async_send only when the queue was empty, so a busy
 *    loop takes whole batches per wake-up. When the queue is full the thread
 *    waits, NNG's buffers fill, and TCP pushes back on the producer.
 *    ingest_io = poll instead watches NNG's receive descriptor with uv_poll
 *    and drains without blocking; bench/ measures both.
 *  - REP sockets (acknowledged ingest, queries): several NNG contexts each
 *    receive through an aio whose callback, on an NNG thread, puts the
 *    context on a ready list and wakes the loop. The loop applies the
 *    request and starts the reply send; the send's completion re-arms the
 *    receive.
 */
#include "server.h"

#include "adapter.h"
#include "durable.h"
#include "email/mail.h"
#include "engine.h"
#include "http.h"
#include "journal.h"
#include "log.h"
#include "mem.h"
#include "phone/ami.h"
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define RX_QUEUE_CAP 1024 /* messages the receive thread may queue */
#define RX_GROUP 64       /* messages per engine call */
/* ...and at most about this many bytes (some 650 events, a millisecond of
 * engine work): between groups the engine's clock moves on and the alerts
 * that fell due go out, so a deep receive queue does not hold them. */
#define RX_GROUP_BYTES 65536
#define POLL_BATCH 1024 /* messages taken per uv_poll callback */
/* Concurrent requests per REP socket: acknowledged ingest waits for the
 * journal's sync, and requests arriving meanwhile share the next one, so
 * producers get more than one in flight. */
#define REP_ACK_CTXS 64
#define REP_QUERY_CTXS 8
#define RX_TIMEOUT_MS 100 /* how often the receive thread checks stop */
#define DRAIN_LIMIT_MS 2000
#define RESERVE_RETRY_MS 10000 /* after a fill found no memory */
#define ALERT_SENDBUF 8192     /* alerts queued per subscriber (NNG's max) */
#define SHELL_VERSION 1        /* of the shell's blob in a snapshot */

enum rep_kind { REP_INGEST, REP_QUERY };

struct cc_server;

struct rep_ctx {
    struct cc_server *srv;
    enum rep_kind kind;
    nng_ctx ctx;
    nng_aio *aio;
    int sending;             /* the pending operation is a send */
    int done;                /* stopped: will not receive again */
    int result;              /* of the completed operation */
    struct cc_at_risk *walk; /* an at_risk query answered over loop turns */
    nng_msg *held;           /* a reply waiting for the journal */
    uint64_t wait;           /* ...until this record is durable */
    struct rep_ctx *next_ready;
};

/* An output waiting for the record that caused it to be durable. */
struct held {
    uint64_t wait;
    nng_msg *m;
};

/* A ring of outputs in the order they were made. */
struct heldq {
    struct held *v;
    uint64_t head, n, cap;
};

/* The alert log: the last [alerts] log alerts as published, by seq. */
struct alert_log {
    struct {
        char *data; /* topic, NUL, map with "seq" */
        uint32_t len;
    } * v;
    uint64_t cap, n;
    uint64_t next; /* seq of the next alert; v[(seq - 1) % cap] */
};

/* The alert of the log with seq. */
#define ALOG_AT(l, seq) ((l)->v[((seq)-1) % (l)->cap])

struct server_stats {
    uint64_t pull_messages, pull_bytes, ack_messages, queries;
    uint64_t oversized;
    uint64_t alerts_sent, callbacks_sent, callbacks_queued;
    uint64_t callbacks_dropped;
    uint64_t reply_failures;
    uint64_t journal_refused, alerts_late;
};

struct cc_server {
    uv_loop_t loop;
    struct cc_config cfg;
    char *config_path;
    struct cc_engine *engine;
    nng_socket pull, ack, pub, push, query;

    /* receive thread hand-over */
    uv_thread_t rx_thread;
    int rx_started;
    uv_mutex_t rx_lock;
    uv_cond_t rx_cond;
    nng_msg *rx_q[RX_QUEUE_CAP];
    uint32_t rx_head, rx_count;
    int rx_stop;
    uv_async_t rx_async;
    uv_poll_t pull_poll;
    int pull_polling;

    /* REP contexts: acknowledged ingest, then queries */
    struct rep_ctx ctxs[REP_ACK_CTXS + REP_QUERY_CTXS];
    uv_mutex_t rep_lock;
    struct rep_ctx *rep_ready;
    uv_async_t rep_async;
    uv_idle_t walk_idle; /* runs while at_risk queries walk */
    unsigned walks;

    /* callback triggers waiting for a callback system (and, with a
     * journal, for the record that made each to be durable) */
    struct held *cbq;
    uint64_t cbq_head, cbq_count, cbq_cap;
    uint64_t cb_removed; /* sent or dropped since the last SENT record */
    uv_poll_t push_poll;
    int push_polling;

    /* refilling the memory reserve on libuv's thread pool */
    uv_work_t reserve_work;
    int reserve_queued; /* reserve_work is in libuv's queue */
    int reserve_rc;
    uint64_t reserve_failed_at; /* ms of the last failed fill, or 0 */

    uv_timer_t timer;
    uv_timer_t drain_timer;
    uv_signal_t sigint, sigterm, sighup;
    int stopping;
    int handles_closed; /* under rep_lock: NNG threads must not wake us */
    int polls_ready;
    uint64_t drain_started;

    uint64_t wall_base, mono_base, started;
    struct cc_ingest_report report;               /* REP ingest */
    struct cc_ingest_report rx_reports[RX_GROUP]; /* PULL, per group */
    msgpack_sbuffer reply_sb;
    msgpack_packer reply_pk;
    struct cc_ratelimit rl_bad;
    struct server_stats st;

    /* channel adapters: each submits through host, on the loop thread */
    struct cc_adapter_host host;
    struct cc_ingest_report ad_report;
    struct cc_http *http;
    struct cc_maildir *maildir;
    struct cc_ami_client *ami;

    /* durability (dur is NULL without [durability] dir) */
    struct cc_durable *dur;
    struct heldq alerts_held; /* published once durable */
    struct alert_log alog;
    int replaying;  /* recovery: outputs are logged, not sent */
    int rx_blocked; /* PULL input waits: the journal refuses input */
    int late;       /* the first tick after recovery: alerts are late */
    uint64_t recovered_records, recovery_ms;

    /* snapshots, written by a forked child (snap_pid) */
    char snap_dir[CC_TEXT_MAX + 16];
    uv_signal_t sigchld;
    uv_timer_t snap_timer; /* [durability] snapshot_interval */
    int ran;               /* cc_server_run() was called */
    pid_t pid;             /* ours, for the child to check */
    pid_t snap_pid;        /* the child writing one, or 0 */
    int snap_pipe;         /* the child's error text, read end */
    uint64_t snap_seq;     /* the one being written covers records below */
    uint64_t snap_base;    /* records from here on count towards the next */
    uint64_t snap_last;    /* the newest snapshot (0: none) */
    uint64_t snap_started_ns, snap_ms, snap_count, snap_failures;
    char snap_error[512];
};

/* ---- time ------------------------------------------------------------- */

/* Wall-clock milliseconds that never go backwards: the wall clock read once
 * at start, advanced by the loop's monotonic clock. */
static uint64_t
now_ms(struct cc_server *s) {
    return s->wall_base + (uv_now(&s->loop) - s->mono_base);
}

static void timer_cb(uv_timer_t *t);
static void pull_poll_cb(uv_poll_t *p, int status, int events);
static void release_replies(struct cc_server *s);
static void snapshot_maybe(struct cc_server *s);
static void query_snapshot(struct cc_server *s, msgpack_packer *pk);
static void pack_snapshot_stats(struct cc_server *s, msgpack_packer *pk);

static void
rearm_timer(struct cc_server *s) {
    uint64_t next = cc_engine_next_deadline(s->engine), now = now_ms(s);
    if (next == UINT64_MAX) {
        uv_timer_stop(&s->timer);
        return;
    }
    uv_timer_start(&s->timer, timer_cb, next > now ? next - now : 0, 0);
}

/* ---- sending ---------------------------------------------------------- */

static nng_msg *
msg_from(const void *data, size_t len) {
    nng_msg *m;
    if (nng_msg_alloc(&m, len) != 0)
        return NULL;
    memcpy(nng_msg_body(m), data, len);
    return m;
}

/* Outputs made after every record below this mark are free to go: the
 * journal's durable mark; everything without a journal, or while writes
 * fail (alerts must not stall behind a full disk: a crash in that window
 * may send some twice, docs/durability.md). */
static uint64_t
release_mark(const struct cc_server *s) {
    if (s->dur == NULL || cc_durable_faulty(s->dur))
        return UINT64_MAX;
    return cc_durable_mark(s->dur);
}

/* The record the outputs made now wait for (0: none). */
static uint64_t
output_wait(const struct cc_server *s) {
    return s->dur != NULL ? cc_durable_last(s->dur) : 0;
}

static int
heldq_push(struct heldq *q, uint64_t wait, nng_msg *m) {
    if (q->n == q->cap) {
        uint64_t cap = q->cap ? q->cap * 2 : 256, i;
        struct held *v = cc_calloc(cap, sizeof(*v));
        if (v == NULL)
            return CC_ENOMEM;
        for (i = 0; i < q->n; i++)
            v[i] = q->v[(q->head + i) % q->cap];
        cc_free(q->v, q->cap * sizeof(*q->v));
        q->v = v;
        q->cap = cap;
        q->head = 0;
    }
    q->v[(q->head + q->n) % q->cap].wait = wait;
    q->v[(q->head + q->n) % q->cap].m = m;
    q->n++;
    return 0;
}

static void
heldq_free(struct heldq *q) {
    for (; q->n != 0; q->n--, q->head = (q->head + 1) % q->cap)
        nng_msg_free(q->v[q->head].m);
    cc_free(q->v, q->cap * sizeof(*q->v));
}

static void push_poll_cb(uv_poll_t *p, int status, int events);

/* Sends queued callback triggers whose records are durable, until the
 * socket would block; then records how many left the queue, so that
 * recovery knows which were taken. */
static void
flush_callbacks(struct cc_server *s) {
    uint64_t mark = release_mark(s), sent = 0;
    int rc;

    if (s->replaying)
        return;
    while (s->cbq_count != 0 && s->cbq[s->cbq_head].wait < mark) {
        nng_msg *m = s->cbq[s->cbq_head].m;
        rc = nng_sendmsg(s->push, m, NNG_FLAG_NONBLOCK);
        if (rc == NNG_EAGAIN)
            break;
        if (rc != 0) {
            cc_log_warn("callbacks: send failed: %s", nng_strerror(rc));
            break;
        }
        s->st.callbacks_sent++;
        s->cbq_head = (s->cbq_head + 1) % s->cbq_cap;
        s->cbq_count--;
        sent++;
    }
    if (sent != 0 && s->dur != NULL &&
        cc_durable_log(s->dur, CC_REC_SENT, sent, NULL, 0) == 0)
        cc_log_error("journal: out of memory recording %llu callback "
                     "triggers sent; a restart may send them again",
                     (unsigned long long)sent);
    /* Wait for the socket only when the head may go. */
    if (s->cbq_count != 0 && s->cbq[s->cbq_head].wait < mark) {
        if (!s->push_polling) {
            uv_poll_start(&s->push_poll, UV_READABLE, push_poll_cb);
            s->push_polling = 1;
        }
    } else if (s->push_polling) {
        uv_poll_stop(&s->push_poll);
        s->push_polling = 0;
    }
}

static void
push_poll_cb(uv_poll_t *p, int status, int events) {
    struct cc_server *s = CC_CONTAINER_OF(p, struct cc_server, push_poll);
    (void)status;
    (void)events;
    flush_callbacks(s);
    if (s->dur != NULL)
        cc_durable_kick(s->dur);
}

/* Queues a trigger. Triggers are state: the queue is rebuilt by recovery
 * from the journal (what the engine made, less what SENT records say
 * left), so one a callback system has not taken is sent after a restart
 * too. */
static void
queue_callback(struct cc_server *s, nng_msg *m) {
    if (s->cbq_count == s->cbq_cap) {
        /* Bounded: [server] callback_backlog. Say so loudly. */
        s->st.callbacks_dropped++;
        if (!s->replaying && cc_ratelimit_ok(&s->rl_bad, now_ms(s)))
            cc_log_error("callbacks: backlog of %llu triggers is full and "
                         "no callback system takes them: trigger dropped",
                         (unsigned long long)s->cbq_cap);
        nng_msg_free(m);
        return;
    }
    s->cbq[(s->cbq_head + s->cbq_count) % s->cbq_cap].m = m;
    s->cbq[(s->cbq_head + s->cbq_count) % s->cbq_cap].wait =
        s->replaying ? 0 : output_wait(s);
    s->cbq_count++;
    s->st.callbacks_queued++;
}

/* Recovery met a SENT record: that many triggers had left the queue. */
static void
callbacks_taken(struct cc_server *s, uint64_t n) {
    for (; n != 0 && s->cbq_count != 0; n--) {
        nng_msg_free(s->cbq[s->cbq_head].m);
        s->cbq_head = (s->cbq_head + 1) % s->cbq_cap;
        s->cbq_count--;
    }
}

/* ---- the alert log ----------------------------------------------------- */

/* An alert as published: the engine's record (topic, NUL, map) with the
 * map given "seq" (its place in the log) and, for one that fell due while
 * contactd was down, "late": true. NULL when out of memory. */
static char *
alert_bytes(const char *data, size_t len, uint64_t seq, bool late,
            uint32_t *outlen) {
    size_t tn = strnlen(data, len), mn, room;
    const unsigned char *m;
    uint32_t n;
    size_t hdr;
    char *buf, *d;

    if (tn == len)
        return NULL;
    m = (const unsigned char *)data + tn + 1;
    mn = len - tn - 1;
    if (mn >= 1 && (m[0] & 0xf0) == 0x80) {
        n = m[0] & 0x0f;
        hdr = 1;
    } else if (mn >= 3 && m[0] == 0xde) {
        n = (uint32_t)m[1] << 8 | m[2];
        hdr = 3;
    } else if (mn >= 5 && m[0] == 0xdf) {
        n = (uint32_t)m[1] << 24 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 8 |
            m[4];
        hdr = 5;
    } else {
        return NULL; /* the engine packs maps only */
    }
    room = tn + 1 + 5 + (mn - hdr) + 4 + CC_W_NUM_MAX + 6;
    buf = cc_malloc(room);
    if (buf == NULL)
        return NULL;
    memcpy(buf, data, tn + 1);
    d = cc_w_map(buf + tn + 1, n + 1 + late);
    memcpy(d, m + hdr, mn - hdr);
    d += mn - hdr;
    d = cc_w_u64(cc_w_lit(d, "seq"), seq);
    if (late)
        d = cc_w_bool(cc_w_lit(d, "late"), true);
    *outlen = (uint32_t)(d - buf);
    CC_ASSERT(*outlen <= room);
    return buf;
}

/* Takes the next seq for an alert and keeps it in the log; returns its
 * bytes (owned by the log, or by the caller when the log keeps none:
 * *owned). */
static const char *
alert_log_add(struct cc_server *s, const char *data, size_t len,
              uint32_t *outlen, bool *owned) {
    struct alert_log *l = &s->alog;
    uint64_t seq = l->next++;
    char *b;

    b = alert_bytes(data, len, seq, s->late != 0, outlen);
    if (s->late)
        s->st.alerts_late++;
    *owned = l->cap == 0;
    if (b == NULL || l->cap == 0)
        return b;
    if (l->n == l->cap)
        cc_free(ALOG_AT(l, seq).data, ALOG_AT(l, seq).len);
    else
        l->n++;
    ALOG_AT(l, seq).data = b;
    ALOG_AT(l, seq).len = *outlen;
    return b;
}

static void
alert_log_free(struct alert_log *l) {
    uint64_t i, seq;

    for (i = 0; i < l->n; i++) {
        seq = l->next - 1 - i;
        cc_free(ALOG_AT(l, seq).data, ALOG_AT(l, seq).len);
    }
    cc_free(l->v, l->cap * sizeof(*l->v));
}

/* Publishes held alerts and sends held triggers whose records are
 * durable (all of them when there is no journal). */
static void
release_outputs(struct cc_server *s) {
    struct heldq *q = &s->alerts_held;
    uint64_t mark = release_mark(s);

    while (q->n != 0 && q->v[q->head].wait < mark) {
        nng_msg *m = q->v[q->head].m;
        q->head = (q->head + 1) % q->cap;
        q->n--;
        /* PUB never blocks: slow subscribers miss messages, and catch up
         * from the alert log. */
        if (nng_sendmsg(s->pub, m, NNG_FLAG_NONBLOCK) != 0)
            nng_msg_free(m);
        else
            s->st.alerts_sent++;
    }
    flush_callbacks(s);
}

static void adapters_withdraw(struct cc_server *s, struct cc_str channel,
                              struct cc_str contact, struct cc_str queue);

/* A notice from the engine to the shell (see outbox.h). */
static void
notice(struct cc_server *s, const char *data, size_t len) {
    struct cc_str k, v, type = {0}, channel = {0}, contact = {0}, queue = {0};
    struct cc_mp m;
    uint32_t n, i;

    cc_mp_init(&m, data, len);
    if (cc_mp_read_map(&m, &n) != 0)
        return;
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(&m, &k) != 0)
            return;
        if (cc_mp_peek(&m) != CC_MP_STR) {
            cc_mp_skip(&m);
            continue;
        }
        cc_mp_read_str(&m, &v);
        if (cc_str_eq(k, "type"))
            type = v;
        else if (cc_str_eq(k, "channel"))
            channel = v;
        else if (cc_str_eq(k, "contact"))
            contact = v;
        else if (cc_str_eq(k, "queue"))
            queue = v;
    }
    if (cc_str_eq(type, "queue.withdraw"))
        adapters_withdraw(s, channel, contact, queue);
}

/* Takes what the engine put in its outbox, then clears it: alerts get
 * their seq and go into the alert log, and, like callback triggers, wait
 * for the journal to make their cause durable before they leave (during
 * recovery they only rebuild the log and the trigger queue). */
static void
flush_outbox(struct cc_server *s) {
    struct cc_outbox *ob = cc_engine_outbox(s->engine);
    uint64_t wait = output_wait(s);
    uint32_t i, len;
    bool owned;

    for (i = 0; i < ob->n; i++) {
        const struct cc_out *o = &ob->v[i];
        const char *data = cc_outbox_data(ob, o);
        nng_msg *m;
        if (o->kind == CC_OUT_NOTICE) {
            if (!s->replaying)
                notice(s, data, o->len);
            continue;
        }
        if (o->kind == CC_OUT_ALERT) {
            const char *b = alert_log_add(s, data, o->len, &len, &owned);
            m = NULL;
            if (b != NULL && !s->replaying)
                m = msg_from(b, len);
            if (owned && b != NULL)
                cc_free((char *)b, len);
            if (s->replaying)
                continue;
            if (m == NULL || heldq_push(&s->alerts_held, wait, m) != 0) {
                cc_log_error("out of memory sending an alert");
                if (m != NULL)
                    nng_msg_free(m);
            }
            continue;
        }
        m = msg_from(data, o->len);
        if (m == NULL) {
            cc_log_error("out of memory queueing a callback trigger");
            continue;
        }
        queue_callback(s, m);
    }
    cc_outbox_clear(ob);
    release_outputs(s);
}

/* ---- ingest ----------------------------------------------------------- */

static void
log_report(struct cc_server *s, const struct cc_ingest_report *r,
           const char *via) {
    char reason[256];

    if (r->error == NULL && r->rejected == 0)
        return;
    if (!cc_ratelimit_ok(&s->rl_bad, now_ms(s)))
        return;
    if (r->error != NULL) {
        cc_log_warn("%s: message refused: %s", via, r->error);
        return;
    }
    cc_reject_format(&r->rej[0].rej, reason, sizeof(reason));
    cc_log_warn("%s: %u of %u events rejected; first, #%u: %s", via,
                r->rejected, r->events, r->rej[0].index, reason);
}

static int
check_size(struct cc_server *s, size_t len, const char *via) {
    if (len <= s->cfg.max_message)
        return 0;
    s->st.oversized++;
    cc_engine_count_bad_message(s->engine);
    if (cc_ratelimit_ok(&s->rl_bad, now_ms(s)))
        cc_log_warn("%s: message of %zu bytes refused: larger than "
                    "[server] max_message (%llu)",
                    via, len, (unsigned long long)s->cfg.max_message);
    return CC_ETOOBIG;
}

/* Whether input may be taken now; *why says why not. */
static bool
accepting(struct cc_server *s, const char **why) {
    return s->dur == NULL || cc_durable_accepting(s->dur, why);
}

/* Journals a message about to be applied at now: its record's seq, 1
 * without a journal, 0 when it cannot be buffered. */
static uint64_t
journal_ingest(struct cc_server *s, const void *msg, size_t len, uint64_t now) {
    if (s->dur == NULL)
        return 1;
    return cc_durable_log(s->dur, CC_REC_INGEST, now, msg, len);
}

/* Moves the engine's clock to now (firing what fell due), journalled
 * first when something is due: a tick is an engine call that changes
 * state, and recovery replays it at the same time, so that timers fire in
 * the same steps and order as they did. */
static void
engine_tick(struct cc_server *s, uint64_t now) {
    if (s->dur != NULL && cc_engine_next_deadline(s->engine) <= now &&
        cc_durable_log(s->dur, CC_REC_TICK, now, NULL, 0) == 0)
        cc_log_error("journal: out of memory recording a tick; recovery "
                     "may fire its timers in other steps");
    cc_engine_tick(s->engine, now);
}

/* Applies up to RX_GROUP messages from the PULL socket in one engine call,
 * so that the engine can overlap their events' memory accesses. */
static void
ingest_pull_group(struct cc_server *s, nng_msg **msgs, uint32_t n) {
    struct cc_msgbuf bufs[RX_GROUP];
    uint64_t now = now_ms(s);
    uint32_t i, k = 0;
    size_t len;

    CC_ASSERT(n <= RX_GROUP);
    for (i = 0; i < n; i++) {
        len = nng_msg_len(msgs[i]);
        s->st.pull_messages++;
        s->st.pull_bytes += len;
        if (check_size(s, len, "ingest") != 0)
            continue;
        if (journal_ingest(s, nng_msg_body(msgs[i]), len, now) == 0) {
            s->st.journal_refused++;
            if (cc_ratelimit_ok(&s->rl_bad, now))
                cc_log_error("ingest: out of memory journalling a message: "
                             "dropped");
            continue;
        }
        bufs[k].data = nng_msg_body(msgs[i]);
        bufs[k].len = len;
        k++;
    }
    cc_engine_ingest_many(s->engine, bufs, k, now, s->rx_reports);
    for (i = 0; i < k; i++)
        log_report(s, &s->rx_reports[i], "ingest");
    for (i = 0; i < n; i++)
        nng_msg_free(msgs[i]);
}

static void
reserve_work_cb(uv_work_t *w) {
    struct cc_server *s = CC_CONTAINER_OF(w, struct cc_server, reserve_work);
    s->reserve_rc = cc_mem_reserve_fill();
}

static void refill_reserve(struct cc_server *s);

static void
reserve_done_cb(uv_work_t *w, int status) {
    struct cc_server *s = CC_CONTAINER_OF(w, struct cc_server, reserve_work);
    (void)status;
    s->reserve_queued = 0;
    if (s->reserve_rc != 0) {
        if (s->reserve_failed_at == 0)
            cc_log_warn("memory reserve: the system has no memory to give; "
                        "the engine will map its own as it grows (retrying "
                        "every %d s)",
                        RESERVE_RETRY_MS / 1000);
        s->reserve_failed_at = now_ms(s);
        return;
    }
    if (s->reserve_failed_at != 0) {
        cc_log_info("memory reserve: filled again");
        s->reserve_failed_at = 0;
    }
    /* The engine may have taken pages while this fill ran. */
    refill_reserve(s);
}

static unsigned
reserve_pages(const struct cc_config *cfg) {
    return (unsigned)((cfg->memory_reserve + CC_HUGE_PAGE - 1) / CC_HUGE_PAGE);
}

/* Tops up the memory reserve off the loop thread when it has run low, so
 * that the engine's next pool chunk is already faulted in. One fill at a
 * time; after a failed one, none for RESERVE_RETRY_MS. */
static void
refill_reserve(struct cc_server *s) {
    if (s->stopping || s->reserve_queued)
        return;
    if (s->reserve_failed_at != 0 &&
        now_ms(s) - s->reserve_failed_at < RESERVE_RETRY_MS)
        return;
    if (!cc_mem_reserve_wanted())
        return;
    s->reserve_queued = 1;
    /* Cannot fail: both callbacks are given. */
    (void)uv_queue_work(&s->loop, &s->reserve_work, reserve_work_cb,
                        reserve_done_cb);
}

/* Applies the first group of the n messages at msgs (RX_GROUP of them,
 * or fewer making RX_GROUP_BYTES; at least one) at the present time, and
 * sends what fell due or was caused meanwhile. Returns how many it took. */
static uint32_t
ingest_pull_some(struct cc_server *s, nng_msg **msgs, uint32_t n) {
    uint32_t k = 0;
    size_t bytes = 0;

    while (k < n && k < RX_GROUP && (k == 0 || bytes < RX_GROUP_BYTES))
        bytes += nng_msg_len(msgs[k++]);
    uv_update_time(&s->loop);
    ingest_pull_group(s, msgs, k);
    if (cc_engine_outbox(s->engine)->n != 0)
        flush_outbox(s);
    return k;
}

/* After a turn's engine work: its outputs are taken, the journal writes
 * what the turn appended and syncs by policy (outputs and answers leave
 * when that completes), and the timer moves to the next deadline. */
static void
after_work(struct cc_server *s) {
    flush_outbox(s);
    if (s->dur != NULL)
        cc_durable_kick(s->dur);
    rearm_timer(s);
    refill_reserve(s);
    snapshot_maybe(s);
}

/* The journal made every record below mark durable: what waited for them
 * goes (held alerts and triggers, REP answers, adapters' answers), and
 * input held back while it refused is taken again. */
static void
on_durable(void *arg, uint64_t mark) {
    struct cc_server *s = arg;

    release_outputs(s);
    release_replies(s);
    if (s->http != NULL)
        cc_http_durable(s->http, mark);
    if (s->maildir != NULL)
        cc_maildir_durable(s->maildir, mark);
    if (s->rx_blocked && !s->stopping) {
        s->rx_blocked = 0;
        if (s->cfg.ingest_io == CC_IO_POLL) {
            uv_poll_start(&s->pull_poll, UV_READABLE, pull_poll_cb);
            s->pull_polling = 1;
        } else {
            uv_async_send(&s->rx_async);
        }
    }
}

/* ---- channel adapters ----------------------------------------------------
 * Each adapter turns its native input into a batch of events and submits
 * it here: the same decode, validation and engine path as NNG ingest, then
 * the alerts and triggers it caused go out at once. */

static void
adapter_submit(void *ctx, const void *msg, size_t len, struct cc_submit *out) {
    struct cc_server *s = ctx;
    const char *why = NULL;
    uint64_t now, seq;

    if (check_size(s, len, "adapter") != 0) {
        memset(out, 0, sizeof(*out));
        out->error = "message larger than [server] max_message";
        out->too_big = true;
        return;
    }
    uv_update_time(&s->loop);
    now = now_ms(s);
    if (!accepting(s, &why) || (seq = journal_ingest(s, msg, len, now)) == 0) {
        /* Nothing is taken that cannot be written: the sender retries
         * (HTTP 503; the mail stays in new/). */
        s->st.journal_refused++;
        memset(out, 0, sizeof(*out));
        out->error = why != NULL ? why : "journal: out of memory";
        out->overloaded = true;
        return;
    }
    cc_engine_ingest(s->engine, msg, len, now, &s->ad_report);
    log_report(s, &s->ad_report, "adapter");
    cc_submit_from_report(&s->ad_report, out);
    out->wait = s->dur != NULL ? seq : 0;
    after_work(s);
}

/* The journal's durable mark for adapters: an answer whose submission
 * waits for record w may go once w < mark. */
static uint64_t
adapter_durable(void *ctx) {
    struct cc_server *s = ctx;
    return s->dur != NULL ? cc_durable_mark(s->dur) : UINT64_MAX;
}

static uint64_t
adapter_now(void *ctx) {
    return now_ms(ctx);
}

static int
adapters_start(struct cc_server *s, char *err, size_t errlen) {
    int rc;

    /* [ami], [http] and [maildir] were checked with the configuration. */
    s->host.submit = adapter_submit;
    s->host.now = adapter_now;
    s->host.durable = adapter_durable;
    s->host.ctx = s;
    if (s->cfg.http.enabled) {
        rc = cc_http_new(&s->http, &s->loop, &s->cfg.http, &s->host, err,
                         errlen);
        if (rc != 0)
            return rc;
        cc_log_info("http: webhooks on %s (port %u)", s->cfg.http.listen,
                    cc_http_port(s->http));
    }
    if (s->cfg.ami.enabled) {
        rc = cc_ami_client_new(&s->ami, &s->loop, &s->cfg.ami, &s->host);
        if (rc != 0)
            return cc_errf(err, errlen, rc,
                           rc == CC_ENOMEM
                               ? "[ami]: out of memory"
                               : "[ami]: host is empty, or username or "
                                 "secret holds a line break");
        cc_ami_client_start(s->ami);
        cc_log_info("ami: connecting to %s:%llu as %s", s->cfg.ami.host,
                    (unsigned long long)s->cfg.ami.port, s->cfg.ami.username);
    }
    if (s->cfg.maildir.enabled) {
        rc = cc_maildir_new(&s->maildir, &s->loop, &s->cfg.maildir, &s->host,
                            err, errlen);
        if (rc == 0)
            rc = cc_maildir_start(s->maildir, err, errlen);
        if (rc != 0)
            return rc;
        cc_log_info("maildir: watching %s", s->cfg.maildir.path);
    }
    return 0;
}

/* A caller of the AMI adapter's channel accepted a callback: Asterisk
 * may take them out of its queue ([ami] withdraw_on_callback). */
static void
adapters_withdraw(struct cc_server *s, struct cc_str channel,
                  struct cc_str contact, struct cc_str queue) {
    if (s->ami != NULL && cc_str_eq(channel, s->cfg.ami.channel))
        cc_ami_client_withdraw(s->ami, contact, queue);
}

static void
adapter_closed(void *arg) {
    (void)arg;
}

/* Stops the adapters taking input; their handles close with the loop's. */
static void
adapters_close(struct cc_server *s) {
    if (s->http != NULL)
        cc_http_close(s->http, adapter_closed, s);
    if (s->maildir != NULL)
        cc_maildir_close(s->maildir, adapter_closed, s);
    if (s->ami != NULL)
        cc_ami_client_close(s->ami, adapter_closed, s);
}

static void
adapters_free(struct cc_server *s) {
    cc_http_free(s->http);
    s->http = NULL;
    cc_maildir_free(s->maildir);
    s->maildir = NULL;
    cc_ami_client_free(s->ami);
    s->ami = NULL;
    cc_ingest_report_fini(&s->ad_report);
}

static void
pack_adapters(struct cc_server *s, msgpack_packer *pk) {
    msgpack_pack_map(pk, (s->http != NULL) + (s->maildir != NULL) +
                             (s->ami != NULL));
    if (s->ami != NULL) {
        cc_pack_str(pk, "ami");
        cc_ami_client_pack_stats(s->ami, pk);
    }
    if (s->http != NULL) {
        cc_pack_str(pk, "http");
        cc_http_pack_stats(s->http, pk);
    }
    if (s->maildir != NULL) {
        cc_pack_str(pk, "maildir");
        cc_maildir_pack_stats(s->maildir, pk);
    }
}

static void
rx_async_cb(uv_async_t *a) {
    struct cc_server *s = CC_CONTAINER_OF(a, struct cc_server, rx_async);
    nng_msg *batch[RX_QUEUE_CAP];
    const char *why;
    uint32_t n, i, k;

    if (!accepting(s, &why)) {
        /* Leave the messages queued: the receive thread stops when the
         * queue is full and TCP pushes back on producers. on_durable()
         * wakes this again. */
        s->rx_blocked = 1;
        return;
    }
    uv_mutex_lock(&s->rx_lock);
    n = s->rx_count;
    for (i = 0; i < n; i++)
        batch[i] = s->rx_q[(s->rx_head + i) % RX_QUEUE_CAP];
    s->rx_head = (s->rx_head + n) % RX_QUEUE_CAP;
    s->rx_count = 0;
    uv_cond_signal(&s->rx_cond);
    uv_mutex_unlock(&s->rx_lock);

    for (i = 0; i < n; i += k)
        k = ingest_pull_some(s, batch + i, n - i);
    after_work(s);
}

static void
rx_thread_main(void *arg) {
    struct cc_server *s = arg;
    nng_msg *m;
    int rc, wake;

    for (;;) {
        rc = nng_recvmsg(s->pull, &m, 0);
        if (rc == NNG_ETIMEDOUT) {
            int stop;
            uv_mutex_lock(&s->rx_lock);
            stop = s->rx_stop;
            uv_mutex_unlock(&s->rx_lock);
            if (stop)
                return;
            continue;
        }
        if (rc != 0) {
            if (rc != NNG_ECLOSED)
                cc_log_error("ingest: receive failed: %s", nng_strerror(rc));
            return;
        }
        uv_mutex_lock(&s->rx_lock);
        while (s->rx_count == RX_QUEUE_CAP && !s->rx_stop)
            uv_cond_wait(&s->rx_cond, &s->rx_lock);
        wake = s->rx_count == 0;
        s->rx_q[(s->rx_head + s->rx_count) % RX_QUEUE_CAP] = m;
        s->rx_count++;
        uv_mutex_unlock(&s->rx_lock);
        if (wake)
            uv_async_send(&s->rx_async);
    }
}

static void
pull_poll_cb(uv_poll_t *p, int status, int events) {
    struct cc_server *s = CC_CONTAINER_OF(p, struct cc_server, pull_poll);
    nng_msg *m[RX_GROUP];
    uint32_t n, i, total = 0;
    const char *why;
    size_t bytes;

    (void)status;
    (void)events;
    if (!accepting(s, &why)) {
        uv_poll_stop(&s->pull_poll);
        s->pull_polling = 0;
        s->rx_blocked = 1;
        return;
    }
    do {
        bytes = 0;
        n = 0;
        while (n < RX_GROUP && bytes < RX_GROUP_BYTES &&
               nng_recvmsg(s->pull, &m[n], NNG_FLAG_NONBLOCK) == 0)
            bytes += nng_msg_len(m[n++]);
        for (i = 0; i < n; i += ingest_pull_some(s, m + i, n - i))
            ;
        total += n;
    } while ((n == RX_GROUP || bytes >= RX_GROUP_BYTES) && total < POLL_BATCH);
    after_work(s);
}

/* ---- REP: acknowledged ingest and queries ----------------------------- */

static void
rep_aio_cb(void *arg) {
    struct rep_ctx *c = arg;
    struct cc_server *s = c->srv;

    c->result = nng_aio_result(c->aio);
    uv_mutex_lock(&s->rep_lock);
    if (s->handles_closed) {
        uv_mutex_unlock(&s->rep_lock);
        return;
    }
    c->next_ready = s->rep_ready;
    s->rep_ready = c;
    uv_async_send(&s->rep_async);
    uv_mutex_unlock(&s->rep_lock);
}

static void
rep_recv(struct rep_ctx *c) {
    c->sending = 0;
    nng_ctx_recv(c->ctx, c->aio);
}

static void
pack_error(msgpack_packer *pk, const char *err) {
    msgpack_pack_map(pk, 1);
    cc_pack_str(pk, "error");
    cc_pack_str(pk, err);
}

/* Applies an acknowledged message and packs the answer; returns the
 * record the answer waits for (0: none, answer now). */
static uint64_t
reply_ingest(struct cc_server *s, nng_msg *req) {
    msgpack_packer *pk = &s->reply_pk;
    const struct cc_ingest_report *r = &s->report;
    size_t len = nng_msg_len(req);
    const char *why = NULL;
    char reason[256];
    uint64_t now = now_ms(s), seq;
    uint32_t i;

    s->st.ack_messages++;
    if (check_size(s, len, "ingest_ack") != 0) {
        pack_error(pk, "message larger than [server] max_message");
        return 0;
    }
    if (!accepting(s, &why) ||
        (seq = journal_ingest(s, nng_msg_body(req), len, now)) == 0) {
        s->st.journal_refused++;
        pack_error(pk, why != NULL ? why : "journal: out of memory; retry");
        return 0;
    }
    if (s->dur == NULL)
        seq = 0;
    cc_engine_ingest(s->engine, nng_msg_body(req), len, now, &s->report);
    log_report(s, r, "ingest_ack");
    if (r->error != NULL) {
        pack_error(pk, r->error);
        return seq;
    }
    msgpack_pack_map(pk, 4);
    cc_pack_str(pk, "accepted");
    msgpack_pack_uint32(pk, r->accepted);
    cc_pack_str(pk, "duplicates");
    msgpack_pack_uint32(pk, r->duplicates);
    cc_pack_str(pk, "rejected");
    msgpack_pack_array(pk, r->rejected);
    for (i = 0; i < r->rejected; i++) {
        size_t n = cc_reject_format(&r->rej[i].rej, reason, sizeof(reason));
        msgpack_pack_map(pk, 3);
        cc_pack_str(pk, "index");
        msgpack_pack_uint32(pk, r->rej[i].index);
        cc_pack_str(pk, "reason");
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, reason, n);
        cc_pack_str(pk, "code");
        cc_pack_str(pk, cc_reason_name(r->rej[i].rej.code));
    }
    /* The conversation of each contact.open and message.in, so that the
     * platform can show the agent the history as the customer arrives. */
    cc_pack_str(pk, "conversations");
    msgpack_pack_array(pk, r->ncontext);
    msgpack_sbuffer_write(pk->data, r->ctx.data, r->ctx.size);
    return seq;
}

static void
pack_server_stats(struct cc_server *s, msgpack_packer *pk) {
    struct cc_mem_stats ms;
    struct cc_mem_reserve_stats rs;
    const struct server_stats *t = &s->st;

    cc_mem_stats(&ms);
    cc_mem_reserve_stats(&rs);
    msgpack_pack_map(pk, 7);
    cc_pack_str(pk, "version");
    cc_pack_str(pk, CC_VERSION);
    cc_pack_kv_u64(pk, "uptime_ms", now_ms(s) - s->started);
    cc_pack_str(pk, "journal");
    if (s->dur != NULL)
        cc_durable_pack_stats(s->dur, pk);
    else
        msgpack_pack_nil(pk);
    cc_pack_str(pk, "snapshot");
    pack_snapshot_stats(s, pk);
    cc_pack_str(pk, "server");
    msgpack_pack_map(pk, 22);
    cc_pack_str(pk, "ingest_io");
    cc_pack_str(pk, s->cfg.ingest_io == CC_IO_POLL ? "poll" : "thread");
    cc_pack_kv_u64(pk, "pull_messages", t->pull_messages);
    cc_pack_kv_u64(pk, "pull_bytes", t->pull_bytes);
    cc_pack_kv_u64(pk, "ack_messages", t->ack_messages);
    cc_pack_kv_u64(pk, "queries", t->queries);
    cc_pack_kv_u64(pk, "oversized_messages", t->oversized);
    cc_pack_kv_u64(pk, "alerts_sent", t->alerts_sent);
    cc_pack_kv_u64(pk, "callbacks_sent", t->callbacks_sent);
    cc_pack_kv_u64(pk, "callbacks_backlog", s->cbq_count);
    cc_pack_kv_u64(pk, "callbacks_dropped", t->callbacks_dropped);
    cc_pack_kv_u64(pk, "reply_failures", t->reply_failures);
    cc_pack_kv_u64(pk, "journal_refused", t->journal_refused);
    cc_pack_kv_u64(pk, "alert_seq", s->alog.next - 1);
    cc_pack_kv_u64(pk, "alerts_logged", s->alog.n);
    cc_pack_kv_u64(pk, "alerts_late", t->alerts_late);
    cc_pack_kv_u64(pk, "recovered_records", s->recovered_records);
    cc_pack_kv_u64(pk, "recovery_ms", s->recovery_ms);
    cc_pack_kv_u64(pk, "memory_bytes", ms.bytes_live);
    cc_pack_kv_u64(pk, "allocations", ms.allocs);
    cc_pack_kv_u64(pk, "memory_reserve_bytes", rs.held * CC_HUGE_PAGE);
    cc_pack_kv_u64(pk, "memory_reserve_taken", rs.taken);
    cc_pack_kv_u64(pk, "memory_reserve_missed", rs.missed);
    cc_pack_str(pk, "engine");
    cc_engine_pack_stats(s->engine, pk);
    cc_pack_str(pk, "adapters");
    pack_adapters(s, pk);
}

/* {"q":"conversation","customer":{"email":...}} (the first identifier
 * named) or {"q":"conversation","id":"cv-12"}. */
static void
query_conversation(struct cc_server *s, msgpack_packer *pk, struct cc_str id,
                   const uint8_t *cust, size_t cust_len) {
    const char *why = NULL;
    struct cc_mp m;
    struct cc_str k, v;
    uint32_t n, i;
    int kind, rc;

    if (id.n != 0) {
        rc = cc_engine_pack_conversation_by_id(s->engine, id, pk, &why);
        if (rc != 0)
            pack_error(pk, why);
        return;
    }
    if (cust == NULL) {
        pack_error(pk, "a conversation query needs 'id' or 'customer' (a map "
                       "with one identifier, e.g. {\"email\": ...})");
        return;
    }
    cc_mp_init(&m, cust, cust_len);
    if (cc_mp_read_map(&m, &n) != 0) {
        pack_error(pk, "key 'customer' must be a map of identifiers");
        return;
    }
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(&m, &k) != 0) {
            pack_error(pk, "key 'customer': keys must be strings");
            return;
        }
        kind = cc_ident_kind_of(k);
        if (kind == CC_IDENT__COUNT) {
            if (cc_mp_skip(&m) != 0)
                break;
            continue;
        }
        if (cc_mp_read_str(&m, &v) != 0 || v.n == 0 || v.n > CC_IDENT_MAX) {
            pack_error(pk, "key 'customer': an identifier must be a string "
                           "of 1-256 bytes");
            return;
        }
        rc = cc_engine_pack_conversation_by_ident(
            s->engine, (enum cc_ident_kind)kind, v, pk, &why);
        if (rc != 0)
            pack_error(pk, why);
        return;
    }
    pack_error(pk, "key 'customer' names no identifier: phone, email, chat, "
                   "social or crm");
}

#define ALERTS_REPLY_MAX ((size_t)1 << 20) /* bytes of alerts per answer */

/* {"q":"alerts","since":N,"limit":L}: the logged alerts after seq N,
 * oldest first, at most L of them and about ALERTS_REPLY_MAX bytes:
 * {"first", "last" (the log's range), "missed" (after N but no longer
 * kept), "more", "alerts": [{"topic", "alert"}]}. */
static void
query_alerts(struct cc_server *s, msgpack_packer *pk, uint64_t since,
             uint64_t limit) {
    const struct alert_log *l = &s->alog;
    uint64_t last = l->next - 1, first = l->next - l->n, from, n = 0, seq;
    size_t bytes = 0;

    from = since + 1 < first ? first : since + 1;
    for (seq = from; seq <= last && n < limit; seq++, n++) {
        bytes += ALOG_AT(l, seq).len;
        if (n != 0 && bytes > ALERTS_REPLY_MAX)
            break;
    }
    msgpack_pack_map(pk, 5);
    cc_pack_kv_u64(pk, "first", first);
    cc_pack_kv_u64(pk, "last", last);
    cc_pack_kv_u64(pk, "missed", since + 1 < first ? first - since - 1 : 0);
    cc_pack_str(pk, "more");
    if (from + n <= last)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    cc_pack_str(pk, "alerts");
    msgpack_pack_array(pk, (uint32_t)n);
    for (seq = from; seq < from + n; seq++) {
        const char *b = ALOG_AT(l, seq).data;
        size_t len = ALOG_AT(l, seq).len, tn = strlen(b);
        msgpack_pack_map(pk, 2);
        cc_pack_str(pk, "topic");
        cc_pack_strn(pk, b, tn);
        cc_pack_str(pk, "alert");
        msgpack_sbuffer_write(pk->data, b + tn + 1, len - tn - 1);
    }
}

static void walk_idle_cb(uv_idle_t *h);

/* Answers a query into reply_sb; returns 1 when the answer comes later
 * (an at_risk query walking the conversations over loop turns). */
static int
reply_query(struct cc_server *s, struct rep_ctx *c, nng_msg *req) {
    msgpack_packer *pk = &s->reply_pk;
    struct cc_mp m;
    struct cc_str k, q = {NULL, 0}, id = {NULL, 0}, conv = {NULL, 0};
    struct cc_str queue = {NULL, 0}, channel = {NULL, 0};
    const uint8_t *cust = NULL;
    size_t cust_len = 0;
    int64_t limit = 10, since = 0;
    bool limit_set = false;
    uint32_t n, i;
    const char *why = NULL;

    s->st.queries++;
    if (check_size(s, nng_msg_len(req), "query") != 0) {
        pack_error(pk, "message larger than [server] max_message");
        return 0;
    }
    cc_mp_init(&m, nng_msg_body(req), nng_msg_len(req));
    if (cc_mp_read_map(&m, &n) != 0) {
        pack_error(pk,
                   "a query is a MessagePack map such as {\"q\":\"stats\"}");
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (cc_mp_read_str(&m, &k) != 0) {
            pack_error(pk, "malformed query: map keys must be strings");
            return 0;
        }
        if (cc_str_eq(k, "q")) {
            if (cc_mp_read_str(&m, &q) != 0) {
                pack_error(pk, "key 'q' must be a string");
                return 0;
            }
        } else if (cc_str_eq(k, "id")) {
            if (cc_mp_read_str(&m, &id) != 0) {
                pack_error(pk, "key 'id' must be a string such as \"cv-12\"");
                return 0;
            }
        } else if (cc_str_eq(k, "conversation")) {
            if (cc_mp_read_str(&m, &conv) != 0) {
                pack_error(pk, "key 'conversation' must be a string such as "
                               "\"cv-12\"");
                return 0;
            }
        } else if (cc_str_eq(k, "queue")) {
            if (cc_mp_read_str(&m, &queue) != 0) {
                pack_error(pk, "key 'queue' must be a string");
                return 0;
            }
        } else if (cc_str_eq(k, "channel")) {
            if (cc_mp_read_str(&m, &channel) != 0) {
                pack_error(pk, "key 'channel' must be a string");
                return 0;
            }
        } else if (cc_str_eq(k, "limit")) {
            if (cc_mp_read_int(&m, &limit) != 0 || limit < 1 || limit > 1000) {
                pack_error(pk, "key 'limit' must be a whole number from 1 "
                               "to 1000");
                return 0;
            }
            limit_set = true;
        } else if (cc_str_eq(k, "since")) {
            if (cc_mp_read_int(&m, &since) != 0 || since < 0) {
                pack_error(pk, "key 'since' must be an alert seq: a whole "
                               "number, 0 for the oldest kept");
                return 0;
            }
        } else if (cc_str_eq(k, "customer")) {
            cust = m.p;
            if (cc_mp_skip(&m) != 0) {
                pack_error(pk, "malformed MessagePack");
                return 0;
            }
            cust_len = (size_t)(m.p - cust);
        } else if (cc_mp_skip(&m) != 0) {
            pack_error(pk, "malformed MessagePack");
            return 0;
        }
    }
    if (q.n == 0) {
        pack_error(pk, "missing required key 'q'");
        return 0;
    }
    if (cc_str_eq(q, "stats")) {
        pack_server_stats(s, pk);
        return 0;
    }
    if (cc_str_eq(q, "conversation")) {
        query_conversation(s, pk, id, cust, cust_len);
        return 0;
    }
    if (cc_str_eq(q, "snapshot")) {
        query_snapshot(s, pk);
        return 0;
    }
    if (cc_str_eq(q, "alerts")) {
        query_alerts(s, pk, (uint64_t)since,
                     limit_set ? (uint64_t)limit : 1000);
        return 0;
    }
    /* The engine's clock moves with events and deadlines; bring it to now
     * so that waits, times left and windows are current (whatever falls
     * due meanwhile fires, and rep_async_cb sends it). */
    if (cc_str_eq(q, "sla") || cc_str_eq(q, "at_risk") || cc_str_eq(q, "queue"))
        engine_tick(s, now_ms(s));
    if (cc_str_eq(q, "sla")) {
        if (conv.n == 0)
            pack_error(pk, "an sla query needs 'conversation', e.g. "
                           "\"cv-12\"");
        else if (cc_engine_pack_sla(s->engine, conv, pk, &why) != 0)
            pack_error(pk, why);
        return 0;
    }
    if (cc_str_eq(q, "at_risk")) {
        /* It walks every conversation: a step a loop turn, so that events
         * and deadlines go on meanwhile (walk_idle_cb answers). */
        if (cc_engine_at_risk_begin(s->engine, queue, (uint32_t)limit, &c->walk,
                                    &why) != 0) {
            pack_error(pk, why);
            return 0;
        }
        if (s->walks++ == 0)
            uv_idle_start(&s->walk_idle, walk_idle_cb);
        return 1;
    }
    if (cc_str_eq(q, "queue")) {
        if (queue.n != 0 && channel.n != 0) {
            pack_error(pk, "a queue query takes 'queue' or 'channel', not "
                           "both");
            return 0;
        }
        if (cc_engine_pack_service_level(s->engine, queue, channel,
                                         (uint32_t)limit, pk, &why) != 0)
            pack_error(pk, why);
        return 0;
    }
    pack_error(pk, "unknown query: this version answers \"stats\", "
                   "\"conversation\", \"sla\", \"at_risk\", \"queue\", "
                   "\"alerts\" and \"snapshot\"");
    return 0;
}

/* Sends rep (NULL: making it failed) as the context's reply. */
static void
rep_send_msg(struct cc_server *s, struct rep_ctx *c, nng_msg *rep) {
    if (rep == NULL) {
        s->st.reply_failures++;
        if (s->stopping)
            c->done = 1;
        else
            rep_recv(c);
        return;
    }
    nng_aio_set_msg(c->aio, rep);
    c->sending = 1;
    nng_ctx_send(c->ctx, c->aio);
}

/* Sends what reply_sb holds as the context's reply. */
static void
rep_send(struct cc_server *s, struct rep_ctx *c) {
    rep_send_msg(s, c, msg_from(s->reply_sb.data, s->reply_sb.size));
}

/* Answers held for the journal: those whose record is durable now. Never
 * early, not even while writes fail: an answer says it is on disk. */
static void
release_replies(struct cc_server *s) {
    uint64_t mark = s->dur != NULL ? cc_durable_mark(s->dur) : UINT64_MAX;
    unsigned i;

    for (i = 0; i < REP_ACK_CTXS; i++) {
        struct rep_ctx *c = &s->ctxs[i];
        nng_msg *m = c->held;
        if (m == NULL || c->wait >= mark)
            continue;
        c->held = NULL;
        rep_send_msg(s, c, m);
    }
}

/* Walks each at_risk query a step further; answers those done. */
static void
walk_idle_cb(uv_idle_t *h) {
    struct cc_server *s = CC_CONTAINER_OF(h, struct cc_server, walk_idle);
    unsigned i;

    for (i = REP_ACK_CTXS; i < CC_ARRAY_SIZE(s->ctxs); i++) {
        struct rep_ctx *c = &s->ctxs[i];
        if (c->walk == NULL ||
            !cc_engine_at_risk_step(s->engine, c->walk, CC_AT_RISK_STEP))
            continue;
        msgpack_sbuffer_clear(&s->reply_sb);
        cc_engine_at_risk_end(s->engine, c->walk, &s->reply_pk);
        c->walk = NULL;
        if (--s->walks == 0)
            uv_idle_stop(&s->walk_idle);
        rep_send(s, c);
    }
}

static void
rep_async_cb(uv_async_t *a) {
    struct cc_server *s = CC_CONTAINER_OF(a, struct cc_server, rep_async);
    struct rep_ctx *list, *c;
    nng_msg *req;
    int worked = 0;

    uv_mutex_lock(&s->rep_lock);
    list = s->rep_ready;
    s->rep_ready = NULL;
    uv_mutex_unlock(&s->rep_lock);

    uv_update_time(&s->loop);
    while ((c = list) != NULL) {
        list = c->next_ready;
        if (c->sending) {
            if (c->result != 0) {
                s->st.reply_failures++;
                nng_msg_free(nng_aio_get_msg(c->aio));
            }
            if (s->stopping)
                c->done = 1;
            else
                rep_recv(c);
            continue;
        }
        if (c->result != 0) {
            /* Cancelled at shutdown, or the socket closed. */
            if (c->result == NNG_ECLOSED || c->result == NNG_ECANCELED ||
                s->stopping)
                c->done = 1;
            else
                rep_recv(c);
            continue;
        }
        req = nng_aio_get_msg(c->aio);
        msgpack_sbuffer_clear(&s->reply_sb);
        worked = 1;
        if (c->kind == REP_INGEST) {
            uint64_t wait = reply_ingest(s, req);
            nng_msg_free(req);
            if (wait != 0) {
                /* Answered once its record is durable (on_durable). */
                c->held = msg_from(s->reply_sb.data, s->reply_sb.size);
                c->wait = wait;
                if (c->held == NULL)
                    rep_send_msg(s, c, NULL);
                continue;
            }
            rep_send(s, c);
            continue;
        }
        if (reply_query(s, c, req)) {
            nng_msg_free(req);
            continue; /* answered when its walk ends */
        }
        nng_msg_free(req);
        rep_send(s, c);
    }
    if (worked)
        after_work(s);
}

/* ---- timers, signals, reload ------------------------------------------ */

static void
timer_cb(uv_timer_t *t) {
    struct cc_server *s = CC_CONTAINER_OF(t, struct cc_server, timer);
    engine_tick(s, now_ms(s));
    after_work(s);
}

static void
to_engine_config(const struct cc_config *c, struct cc_engine_config *e) {
    cc_engine_config_defaults(e);
    e->hold_long_ms = c->hold_long_ms;
    e->cb = c->cb;
    e->contact_idle_ms = c->contact_idle_ms;
    e->dedup_window = c->dedup_window;
    e->max_contacts = c->max_contacts;
    e->max_queues = c->max_queues;
    e->max_names = c->max_names;
    e->channels = c->channels;
    e->default_country = (unsigned)c->default_country;
    e->max_identifiers = (uint32_t)c->max_identifiers;
    e->max_identities = c->max_identities;
    e->reopen_window_ms = c->reopen_window_ms;
    e->idle_close_ms = c->idle_close_ms;
    e->repeat_window_ms = c->repeat_window_ms;
    e->max_conversations = c->max_conversations;
    e->thread_index = c->thread_index;
    e->sla = &c->sla;
    e->sl_target = (uint32_t)c->sl_target;
    e->sl_window_min = (uint32_t)(c->sl_window_ms / 60000);
    e->sl_hysteresis = (uint32_t)c->sl_hysteresis;
    e->sl_min_answered = c->sl_min_answered;
    e->short_abandon_ms = c->short_abandon_ms;
}

static void
reload(struct cc_server *s) {
    struct cc_config next;
    struct cc_engine_config ec;
    char err[512];

    if (s->config_path == NULL) {
        cc_log_info("SIGHUP: running on embedded defaults, nothing to "
                    "reload");
        return;
    }
    cc_config_defaults(&next);
    if (cc_config_load(&next, s->config_path, err, sizeof(err)) != 0) {
        cc_log_error("SIGHUP: %s; keeping the running configuration", err);
        return;
    }
    if (strcmp(next.ingest, s->cfg.ingest) ||
        strcmp(next.ingest_ack, s->cfg.ingest_ack) ||
        strcmp(next.alerts, s->cfg.alerts) ||
        strcmp(next.callbacks, s->cfg.callbacks) ||
        strcmp(next.query, s->cfg.query) ||
        next.ingest_io != s->cfg.ingest_io ||
        next.max_message != s->cfg.max_message ||
        next.callback_backlog != s->cfg.callback_backlog ||
        next.dedup_window != s->cfg.dedup_window ||
        next.max_contacts != s->cfg.max_contacts ||
        next.max_queues != s->cfg.max_queues ||
        next.max_names != s->cfg.max_names ||
        next.default_country != s->cfg.default_country ||
        next.max_identifiers != s->cfg.max_identifiers ||
        next.max_identities != s->cfg.max_identities ||
        next.max_conversations != s->cfg.max_conversations ||
        next.thread_index != s->cfg.thread_index ||
        memcmp(&next.channels, &s->cfg.channels, sizeof(next.channels)) ||
        memcmp(&next.ami, &s->cfg.ami, sizeof(next.ami)) ||
        memcmp(&next.http, &s->cfg.http, sizeof(next.http)) ||
        memcmp(&next.maildir, &s->cfg.maildir, sizeof(next.maildir)))
        cc_log_warn("SIGHUP: [server], [ingest], [limits], [identity], "
                    "[channels], [conversation] limits and the adapters "
                    "([ami], [http], [maildir]) take effect at the next "
                    "start");
    /* What can change live: */
    s->cfg.hold_long_ms = next.hold_long_ms;
    s->cfg.cb = next.cb;
    s->cfg.contact_idle_ms = next.contact_idle_ms;
    s->cfg.reopen_window_ms = next.reopen_window_ms;
    s->cfg.idle_close_ms = next.idle_close_ms;
    s->cfg.repeat_window_ms = next.repeat_window_ms;
    s->cfg.sl_target = next.sl_target;
    s->cfg.sl_window_ms = next.sl_window_ms;
    s->cfg.sl_hysteresis = next.sl_hysteresis;
    s->cfg.sl_min_answered = next.sl_min_answered;
    s->cfg.short_abandon_ms = next.short_abandon_ms;
    s->cfg.log_level = next.log_level;
    cc_log_set_level(next.log_level);
    s->cfg.memory_reserve = next.memory_reserve;
    cc_mem_reserve_target(reserve_pages(&s->cfg));
    refill_reserve(s);
    to_engine_config(&s->cfg, &ec);
    cc_engine_reconfigure(s->engine, &ec);
    /* New SLA policies move running clocks' deadlines; if they cannot be
     * applied (a calendar's zone went missing) the old ones keep running. */
    if (cc_engine_set_sla(s->engine, &next.sla, err, sizeof(err)) != 0)
        cc_log_error("SIGHUP: SLA policies: %s; keeping the running ones", err);
    else
        s->cfg.sla = next.sla;
    cc_log_info("SIGHUP: configuration reloaded from %s", s->config_path);
}

static int
drained(struct cc_server *s) {
    unsigned i;
    int rx_empty;

    uv_mutex_lock(&s->rx_lock);
    rx_empty = s->rx_count == 0;
    uv_mutex_unlock(&s->rx_lock);
    if (!rx_empty)
        return 0;
    for (i = 0; i < CC_ARRAY_SIZE(s->ctxs); i++) {
        if (!s->ctxs[i].done)
            return 0;
    }
    /* What is appended is on disk and what waited for it has gone. */
    return s->dur == NULL ||
           (cc_durable_idle(s->dur) && s->alerts_held.n == 0) ||
           cc_durable_faulty(s->dur);
}

static void
close_cb(uv_handle_t *h) {
    (void)h;
}

static void
finish(struct cc_server *s) {
    if (s->cbq_count != 0)
        cc_log_warn("stopping with %llu callback triggers undelivered: no "
                    "callback system took them",
                    (unsigned long long)s->cbq_count);
    uv_mutex_lock(&s->rep_lock);
    s->handles_closed = 1;
    uv_mutex_unlock(&s->rep_lock);
    adapters_close(s);
    uv_close((uv_handle_t *)&s->timer, close_cb);
    uv_close((uv_handle_t *)&s->drain_timer, close_cb);
    uv_close((uv_handle_t *)&s->sigint, close_cb);
    uv_close((uv_handle_t *)&s->sigterm, close_cb);
    uv_close((uv_handle_t *)&s->sighup, close_cb);
    uv_close((uv_handle_t *)&s->sigchld, close_cb);
    uv_close((uv_handle_t *)&s->snap_timer, close_cb);
    uv_close((uv_handle_t *)&s->rx_async, close_cb);
    uv_close((uv_handle_t *)&s->rep_async, close_cb);
    uv_close((uv_handle_t *)&s->walk_idle, close_cb);
    cc_durable_close(s->dur);
    if (s->polls_ready) {
        uv_close((uv_handle_t *)&s->pull_poll, close_cb);
        uv_close((uv_handle_t *)&s->push_poll, close_cb);
    }
}

static void
drain_timer_cb(uv_timer_t *t) {
    struct cc_server *s = CC_CONTAINER_OF(t, struct cc_server, drain_timer);
    uint64_t waited = uv_now(&s->loop) - s->drain_started;

    /* Apply whatever was still queued, answer it, send what it caused. */
    rx_async_cb(&s->rx_async);
    rep_async_cb(&s->rep_async);
    flush_callbacks(s);
    if ((drained(s) && s->cbq_count == 0) ||
        (drained(s) && waited >= DRAIN_LIMIT_MS) ||
        waited >= 2 * DRAIN_LIMIT_MS) {
        uv_timer_stop(t);
        finish(s);
    }
}

static void
begin_stop(struct cc_server *s, const char *why) {
    unsigned i;

    if (s->stopping)
        return;
    s->stopping = 1;
    cc_log_info("%s: draining and stopping", why);
    /* A fill under way stops after its current page. */
    cc_mem_reserve_target(0);
    uv_signal_stop(&s->sighup);
    if (s->pull_polling) {
        uv_poll_stop(&s->pull_poll);
        s->pull_polling = 0;
    }
    if (s->rx_started) {
        uv_mutex_lock(&s->rx_lock);
        s->rx_stop = 1;
        uv_cond_signal(&s->rx_cond);
        uv_mutex_unlock(&s->rx_lock);
        uv_thread_join(&s->rx_thread);
        s->rx_started = 0;
    }
    /* Pending receives are cancelled; requests already received are still
     * answered, and their contexts then stop. */
    for (i = 0; i < CC_ARRAY_SIZE(s->ctxs); i++) {
        if (s->ctxs[i].aio != NULL && !s->ctxs[i].sending)
            nng_aio_cancel(s->ctxs[i].aio);
    }
    s->drain_started = uv_now(&s->loop);
    uv_timer_start(&s->drain_timer, drain_timer_cb, 0, 10);
}

static void
signal_cb(uv_signal_t *h, int signum) {
    struct cc_server *s;

    if (signum == SIGHUP) {
        s = CC_CONTAINER_OF(h, struct cc_server, sighup);
        reload(s);
        return;
    }
    s = signum == SIGINT ? CC_CONTAINER_OF(h, struct cc_server, sigint)
                         : CC_CONTAINER_OF(h, struct cc_server, sigterm);
    begin_stop(s, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- setup ------------------------------------------------------------ */

/* ---- snapshots --------------------------------------------------------- */

/*
 * The shell's part of a snapshot, before the engine's: what recovery would
 * otherwise rebuild from the journal. u32 SHELL_VERSION; u64 the next
 * alert seq; u64 n, then the n alerts of the log, oldest first, each a u32
 * length and the bytes as published; u64 m, then the m callback triggers
 * waiting, in order, each a u32 length and the bytes. Little-endian.
 */

static size_t
shell_len(const struct cc_server *s) {
    const struct alert_log *l = &s->alog;
    size_t n = 4 + 8 + 8 + 8;
    uint64_t i;

    for (i = 0; i < l->n; i++)
        n += 4 + ALOG_AT(l, l->next - l->n + i).len;
    for (i = 0; i < s->cbq_count; i++)
        n += 4 + nng_msg_len(s->cbq[(s->cbq_head + i) % s->cbq_cap].m);
    return n;
}

/* Gathers small pieces into whole blocks for the snapshot's writer. */
struct shell_out {
    int (*write)(void *ctx, const void *p, size_t n);
    void *ctx;
    size_t n;
    uint8_t buf[65536];
};

static int
out_put(struct shell_out *o, const void *p, size_t n) {
    int rc;

    if (o->n + n > sizeof(o->buf)) {
        if (o->n != 0 && (rc = o->write(o->ctx, o->buf, o->n)) != 0)
            return rc;
        o->n = 0;
        if (n > sizeof(o->buf))
            return o->write(o->ctx, p, n);
    }
    memcpy(o->buf + o->n, p, n);
    o->n += n;
    return 0;
}

static int
out_u64(struct shell_out *o, uint64_t v) {
    uint8_t b[8];
    cc_put_le64(b, v);
    return out_put(o, b, 8);
}

static int
out_piece(struct shell_out *o, const void *p, size_t n) {
    uint8_t b[4];
    int rc;

    cc_put_le32(b, (uint32_t)n);
    rc = out_put(o, b, 4);
    return rc != 0 ? rc : out_put(o, p, n);
}

/* Writes the shell's part; runs in the snapshot's child, so allocates
 * nothing (its buffer is on the stack). */
static int
shell_save(void *arg, int (*write)(void *ctx, const void *p, size_t n),
           void *ctx) {
    const struct cc_server *s = arg;
    const struct alert_log *l = &s->alog;
    struct shell_out o;
    uint8_t v[4];
    uint64_t i;
    int rc;

    o.write = write;
    o.ctx = ctx;
    o.n = 0;
    cc_put_le32(v, SHELL_VERSION);
    rc = out_put(&o, v, 4);
    if (rc == 0)
        rc = out_u64(&o, l->next);
    if (rc == 0)
        rc = out_u64(&o, l->n);
    for (i = 0; rc == 0 && i < l->n; i++) {
        uint64_t seq = l->next - l->n + i;
        rc = out_piece(&o, ALOG_AT(l, seq).data, ALOG_AT(l, seq).len);
    }
    if (rc == 0)
        rc = out_u64(&o, s->cbq_count);
    for (i = 0; rc == 0 && i < s->cbq_count; i++) {
        nng_msg *m = s->cbq[(s->cbq_head + i) % s->cbq_cap].m;
        rc = out_piece(&o, nng_msg_body(m), nng_msg_len(m));
    }
    if (rc == 0 && o.n != 0)
        rc = write(ctx, o.buf, o.n);
    return rc;
}

struct shell_in {
    const uint8_t *p;
    size_t left;
};

static bool
in_u64(struct shell_in *in, uint64_t *v) {
    if (in->left < 8)
        return false;
    *v = cc_get_le64(in->p);
    in->p += 8;
    in->left -= 8;
    return true;
}

static bool
in_piece(struct shell_in *in, const uint8_t **p, uint32_t *n) {
    if (in->left < 4)
        return false;
    *n = cc_get_le32(in->p);
    if (*n == 0 || in->left - 4 < *n)
        return false;
    *p = in->p + 4;
    in->p += 4 + *n;
    in->left -= 4 + (size_t)*n;
    return true;
}

/* Puts the alert log and the trigger backlog of a snapshot back. The
 * newest [alerts] log alerts are kept, and the oldest [server]
 * callback_backlog triggers (the rest are dropped, loudly). */
static int
shell_restore(struct cc_server *s, const void *blob, size_t len, char *err,
              size_t errlen) {
    struct shell_in in = {blob, len};
    struct alert_log *l = &s->alog;
    const uint8_t *p;
    uint64_t next, n, m, i, dropped = 0;
    uint32_t k;

    if (len < 4 || cc_get_le32(blob) != SHELL_VERSION)
        return cc_errf(err, errlen, CC_EPROTO,
                       "snapshot: the daemon's part has a newer or unknown "
                       "version %u",
                       len < 4 ? 0 : cc_get_le32(blob));
    in.p += 4;
    in.left -= 4;
    if (!in_u64(&in, &next) || !in_u64(&in, &n) || next == 0 || n > next - 1 ||
        n > in.left / 5)
        goto bad;
    l->next = next;
    for (i = 0; i < n; i++) {
        uint64_t seq = next - n + i;
        if (!in_piece(&in, &p, &k))
            goto bad;
        if (l->cap == 0 || n - i > l->cap)
            continue;
        ALOG_AT(l, seq).data = cc_malloc(k);
        if (ALOG_AT(l, seq).data == NULL)
            return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
        memcpy(ALOG_AT(l, seq).data, p, k);
        ALOG_AT(l, seq).len = k;
        l->n++;
    }
    if (!in_u64(&in, &m) || m > in.left / 5)
        goto bad;
    for (i = 0; i < m; i++) {
        nng_msg *msg;
        if (!in_piece(&in, &p, &k))
            goto bad;
        if (s->cbq_count == s->cbq_cap) {
            dropped++;
            continue;
        }
        if ((msg = msg_from(p, k)) == NULL)
            return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
        s->cbq[(s->cbq_head + s->cbq_count) % s->cbq_cap].m = msg;
        s->cbq[(s->cbq_head + s->cbq_count) % s->cbq_cap].wait = 0;
        s->cbq_count++;
    }
    if (in.left != 0)
        goto bad;
    if (dropped != 0) {
        s->st.callbacks_dropped += dropped;
        cc_log_error("snapshot: %llu callback triggers waiting do not fit "
                     "[server] callback_backlog = %llu: dropped",
                     (unsigned long long)dropped,
                     (unsigned long long)s->cbq_cap);
    }
    return 0;
bad:
    return cc_errf(err, errlen, CC_EPROTO,
                   "snapshot: the daemon's part is damaged at byte %zu of "
                   "%zu",
                   len - in.left, len);
}

/* In the child: writes the snapshot of records below seq and exits. */
static void
snapshot_child(struct cc_server *s, uint64_t seq, int fd) {
    struct cc_snapshot_shell sh = {0, NULL, shell_save, s};
    char err[512];
    int rc;

    /* Die with the parent: a child left behind would hold the listening
     * sockets and the journal's lock against the next contactd. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->pid)
        _exit(3);
    /* Signals are the parent's business (the handlers inherited would
     * write into its loop's pipe). */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sh.len = shell_len(s);
    rc = cc_snapshot_write(s->snap_dir, seq, s->engine, &sh, err, sizeof(err));
    if (rc != 0 && write(fd, err, strnlen(err, sizeof(err))) < 0)
        _exit(2);
    _exit(rc == 0 ? 0 : 1);
}

static void
snapshot_failed(struct cc_server *s) {
    s->snap_failures++;
    cc_log_error("snapshot: %s; the journal is kept until one is written "
                 "(the next try comes with the next trigger)",
                 s->snap_error);
}

/* Forks a child that writes a snapshot of the state now: it covers every
 * record appended so far, so replay after it starts at the next. */
static void
snapshot_start(struct cc_server *s) {
    uint64_t seq;
    int fds[2];
    pid_t pid;

    if (s->dur == NULL || s->snap_pid != 0 || s->stopping)
        return;
    seq = cc_durable_last(s->dur) + 1;
    s->snap_base = seq;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(s->snap_error, sizeof(s->snap_error), "pipe: %s",
                 strerror(errno));
        snapshot_failed(s);
        return;
    }
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        snapshot_child(s, seq, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        snprintf(s->snap_error, sizeof(s->snap_error), "fork: %s",
                 strerror(errno));
        snapshot_failed(s);
        return;
    }
    s->snap_pid = pid;
    s->snap_pipe = fds[0];
    s->snap_seq = seq;
    s->snap_started_ns = uv_hrtime();
}

/* A snapshot of the records below seq is on disk (written in ms): the
 * journal goes from the one before it on, so that two ways back stay. */
static void
snapshot_written(struct cc_server *s, uint64_t seq, uint64_t ms) {
    uint64_t prev = s->snap_last;

    s->snap_last = seq;
    cc_log_info("snapshot: records below %llu written to %s in %llu ms",
                (unsigned long long)seq, s->snap_dir, (unsigned long long)ms);
    if (prev != 0)
        cc_durable_trim(s->dur, prev);
}

/* The child ended with status (a waitpid() status, or -1: lost). */
static void
snapshot_done(struct cc_server *s, int status) {
    char text[sizeof(s->snap_error)];
    ssize_t k;

    do
        k = read(s->snap_pipe, text, sizeof(text) - 1);
    while (k < 0 && errno == EINTR);
    close(s->snap_pipe);
    s->snap_pid = 0;
    s->snap_ms = (uv_hrtime() - s->snap_started_ns) / 1000000;
    if (status == 0) {
        s->snap_count++;
        s->snap_error[0] = '\0';
        snapshot_written(s, s->snap_seq, s->snap_ms);
        return;
    }
    if (k > 0) {
        text[k] = '\0';
        snprintf(s->snap_error, sizeof(s->snap_error), "%s", text);
    } else if (status != -1 && WIFSIGNALED(status)) {
        snprintf(s->snap_error, sizeof(s->snap_error),
                 "the child writing it was killed by signal %d",
                 WTERMSIG(status));
    } else {
        snprintf(s->snap_error, sizeof(s->snap_error),
                 "the child writing it ended with status %d",
                 status == -1 ? -1 : WEXITSTATUS(status));
    }
    snapshot_failed(s);
}

static void
sigchld_cb(uv_signal_t *h, int signum) {
    struct cc_server *s = CC_CONTAINER_OF(h, struct cc_server, sigchld);
    int status;
    pid_t r;

    (void)signum;
    if (s->snap_pid == 0)
        return;
    do
        r = waitpid(s->snap_pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r != 0)
        snapshot_done(s, r < 0 ? -1 : status);
}

/* The child is stopped (shutdown): its temporary file is swept by the
 * next snapshot. */
static void
snapshot_abandon(struct cc_server *s) {
    if (s->snap_pid == 0)
        return;
    kill(s->snap_pid, SIGKILL);
    while (waitpid(s->snap_pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(s->snap_pipe);
    s->snap_pid = 0;
}

/* Records since the last snapshot reached [durability] snapshot_records. */
static void
snapshot_maybe(struct cc_server *s) {
    if (s->dur != NULL && s->snap_pid == 0 && s->cfg.snapshot_records != 0 &&
        cc_durable_last(s->dur) + 1 - s->snap_base >= s->cfg.snapshot_records)
        snapshot_start(s);
}

/* Every [durability] snapshot_interval, when anything was journalled. */
static void
snap_timer_cb(uv_timer_t *t) {
    struct cc_server *s = CC_CONTAINER_OF(t, struct cc_server, snap_timer);

    if (cc_durable_last(s->dur) + 1 > s->snap_base)
        snapshot_start(s);
}

/* At shutdown, after the journal's last flush: the state as it stops,
 * written here (nothing runs beside it now), so that the next start
 * replays nothing. */
static void
snapshot_at_exit(struct cc_server *s) {
    char err[512];
    uint64_t seq, t0 = uv_hrtime();
    struct cc_snapshot_shell sh = {0, NULL, shell_save, s};

    snapshot_abandon(s);
    seq = cc_durable_last(s->dur) + 1;
    if (seq == s->snap_last)
        return; /* nothing since the last one */
    sh.len = shell_len(s);
    if (cc_snapshot_write(s->snap_dir, seq, s->engine, &sh, err, sizeof(err)) !=
        0) {
        cc_log_error("snapshot at shutdown: %s; the next start replays the "
                     "journal",
                     err);
        return;
    }
    snapshot_written(s, seq, (uv_hrtime() - t0) / 1000000);
}

/* {"q":"snapshot"}: one now (or the one running). */
static void
query_snapshot(struct cc_server *s, msgpack_packer *pk) {
    bool running = s->snap_pid != 0;

    if (s->dur == NULL) {
        pack_error(pk, "no journal ([durability] dir is empty): nothing to "
                       "snapshot");
        return;
    }
    snapshot_start(s);
    if (s->snap_pid == 0) {
        pack_error(pk, s->stopping ? "stopping" : s->snap_error);
        return;
    }
    msgpack_pack_map(pk, 2);
    cc_pack_str(pk, "snapshot");
    cc_pack_str(pk, running ? "running" : "started");
    cc_pack_kv_u64(pk, "seq", s->snap_seq);
}

static void
pack_snapshot_stats(struct cc_server *s, msgpack_packer *pk) {
    if (s->dur == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_map(pk, 8);
    cc_pack_str(pk, "dir");
    cc_pack_str(pk, s->snap_dir);
    cc_pack_str(pk, "running");
    if (s->snap_pid != 0)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    cc_pack_kv_u64(pk, "last_seq", s->snap_last);
    cc_pack_kv_u64(pk, "records_since",
                   cc_durable_last(s->dur) + 1 -
                       (s->snap_last ? s->snap_last : 1));
    cc_pack_kv_u64(pk, "written", s->snap_count);
    cc_pack_kv_u64(pk, "failures", s->snap_failures);
    cc_pack_kv_u64(pk, "last_ms", s->snap_ms);
    cc_pack_str(pk, "last_error");
    cc_pack_str(pk, s->snap_error);
}

/* ---- recovery ------------------------------------------------------------ */

/* Recovery maps most of the engine's memory at once, and the kernel's
 * zeroing of fresh pages would be half its time. A thread faults reserve
 * pages in meanwhile, on the other core, so that the engine's pools take
 * pages already zeroed. It is sized from the newest snapshot and the
 * journal (the engine takes about 3.6 bytes of memory per byte of
 * snapshot, and up to 11 per byte of journal that creates conversations),
 * at most a quarter of the machine's memory; what recovery did not take
 * is unmapped when it ends. */
#define PREFAULT_PER_BYTE 4
#define PREFAULT_MAX_PAGES 4096 /* 8 GiB */

struct prefault {
    uv_thread_t th;
    atomic_int stop;
    unsigned pages;
    bool started;
};

static void
prefault_main(void *arg) {
    struct prefault *p = arg;
    (void)cc_mem_reserve_prefill(p->pages, &p->stop);
}

/* Files of dir named "<seq><suffix>": the size of the one with the
 * largest seq (*seq gets it), or with sum, of all those from *seq on. */
static uint64_t
dir_bytes(const char *dir, const char *suffix, bool sum, uint64_t *seq) {
    size_t n, sl = strlen(suffix);
    uint64_t bytes = 0, k;
    struct dirent *e;
    struct stat st;
    DIR *d = opendir(dir);

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        n = strlen(e->d_name);
        if (n <= sl || strcmp(e->d_name + n - sl, suffix) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, 0) != 0)
            continue;
        k = strtoull(e->d_name, NULL, 10);
        if (sum && k >= *seq) {
            bytes += (uint64_t)st.st_size;
        } else if (!sum && k >= *seq) {
            bytes = (uint64_t)st.st_size;
            *seq = k;
        }
    }
    closedir(d);
    return bytes;
}

static void
prefault_start(struct prefault *p, const char *snap_dir,
               const char *journal_dir) {
    uint64_t pages, cap = PREFAULT_MAX_PAGES, ram, seq = 0;
    struct sysinfo si;

    /* The newest snapshot, and the segments that start after it. */
    pages = dir_bytes(snap_dir, ".snap", false, &seq);
    pages += dir_bytes(journal_dir, ".seg", true, &seq);
    pages = pages * PREFAULT_PER_BYTE / CC_HUGE_PAGE;
    if (sysinfo(&si) == 0) {
        ram = (uint64_t)si.totalram * si.mem_unit;
        if (ram / 4 / CC_HUGE_PAGE < cap)
            cap = ram / 4 / CC_HUGE_PAGE;
    }
    p->pages = (unsigned)(pages < cap ? pages : cap);
    atomic_init(&p->stop, 0);
    if (p->pages != 0 && uv_thread_create(&p->th, prefault_main, p) == 0)
        p->started = true;
}

static void
prefault_stop(struct prefault *p) {
    if (!p->started)
        return;
    atomic_store(&p->stop, 1);
    uv_thread_join(&p->th);
    p->started = false;
}

/* Takes the outputs of replayed records: alerts into the log, triggers
 * into the backlog, less those a sent record says left. */
static void
replay_outputs(struct cc_server *s, uint64_t sent) {
    if (s->engine != NULL && cc_engine_outbox(s->engine)->n != 0)
        flush_outbox(s);
    if (sent != 0)
        callbacks_taken(s, sent);
}

/* Puts back the snapshot's shell part (when a snapshot was loaded), then
 * replays the journal in dir from seq from. */
static int
replay_from(struct cc_server *s, const struct cc_engine_config *ec,
            const char *dir, uint64_t from, void *shell, size_t shell_len,
            uint64_t *last_now, char *err, size_t errlen) {
    struct cc_journal_reader *r = NULL;
    const struct cc_journal_fault *f;
    struct cc_replay rp;
    const void *p;
    uint64_t seq, sent;
    struct stat st;
    size_t n;
    int rc;

    if (s->engine != NULL) {
        rc = shell_restore(s, shell, shell_len, err, errlen);
        cc_free(shell, shell_len);
        if (rc != 0)
            return rc;
        *last_now = cc_engine_now(s->engine);
        s->snap_last = s->snap_base = from;
    }
    rc = cc_journal_reader_open(&r, dir, from, err, errlen);
    /* No journal directory is a fresh start; a journal that begins after
     * the snapshot has lost records. */
    if (rc != 0 && (rc != CC_ENOENT || stat(dir, &st) == 0))
        return rc;
    if (cc_replay_init(&rp, &s->engine, ec) != 0) {
        cc_journal_reader_close(r);
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory for replay");
    }
    s->replaying = 1;
    while (r != NULL && (rc = cc_journal_read(r, &seq, &p, &n)) == 1) {
        int e = cc_replay_record(&rp, seq, p, n, &sent, err, errlen);
        if (e != 0) {
            cc_replay_fini(&rp);
            cc_journal_reader_close(r);
            s->replaying = 0;
            return e;
        }
        replay_outputs(s, sent);
        s->recovered_records++;
    }
    cc_replay_fini(&rp);
    replay_outputs(s, 0);
    s->replaying = 0;
    if (s->engine != NULL)
        *last_now = rp.now;
    if (r != NULL && rc < 0) {
        f = cc_journal_reader_fault(r);
        if (f->kind != CC_JOURNAL_FAULT_TORN) {
            rc = cc_errf(err, errlen, rc,
                         "%s; `contactd --repair` cuts the journal there, "
                         "after saying what it drops",
                         cc_journal_reader_error(r));
            cc_journal_reader_close(r);
            return rc;
        }
    }
    cc_journal_reader_close(r);
    return 0;
}

/*
 * Rebuilds the state from [durability] dir: the newest valid snapshot
 * (engine, alert log, trigger backlog), then every journal record after
 * it through the same engine at the times they were applied (from the
 * genesis record when there is no snapshot), alerts into the log and
 * triggers into the queue without sending them (they were sent before),
 * then opens the journal for appending. A torn tail ends the replay (the
 * open truncates it, with a log line); corruption stops startup with the
 * file, offset and reason. The first tick after start fires what fell due
 * while contactd was down, marked late.
 */
static int
recover(struct cc_server *s, struct cc_engine_config *ec, char *err,
        size_t errlen) {
    char dir[CC_TEXT_MAX + 16];
    uint64_t last_now = 0, t0 = uv_hrtime(), ms, from = 0;
    void *shell;
    size_t shell_len;
    struct prefault pf = {0};
    int rc, k;

    k = snprintf(s->snap_dir, sizeof(s->snap_dir), "%s/snapshots",
                 s->cfg.data_dir);
    if (cc_durable_journal_dir(&s->cfg, dir, sizeof(dir)) != 0 || k < 0 ||
        (size_t)k >= sizeof(s->snap_dir))
        return cc_errf(err, errlen, CC_EINVAL, "[durability] dir too long");
    prefault_start(&pf, s->snap_dir, dir);
    rc = cc_snapshot_load(s->snap_dir, ec, &s->engine, &from, &shell,
                          &shell_len, err, errlen);
    if (rc == 0 && s->engine != NULL)
        cc_log_info("recovery: snapshot %s/%020llu.snap loaded in %llu ms",
                    s->snap_dir, (unsigned long long)from,
                    (unsigned long long)((uv_hrtime() - t0) / 1000000));
    if (rc == 0)
        rc = replay_from(s, ec, dir, from, shell, shell_len, &last_now, err,
                         errlen);
    prefault_stop(&pf);
    if (rc != 0)
        return rc;
    rc = cc_durable_open(&s->dur, &s->loop, &s->cfg, from, on_durable, s, err,
                         errlen);
    if (rc == 0 && mkdir(s->snap_dir, 0750) != 0 && errno != EEXIST)
        rc = cc_errf(err, errlen, CC_EIO, "[durability] dir: mkdir %s: %s",
                     s->snap_dir, strerror(errno));
    if (rc != 0)
        return rc;
    uv_update_time(&s->loop);
    if (s->engine == NULL) {
        if (cc_engine_new(&s->engine, ec, now_ms(s)) != 0)
            return cc_errf(err, errlen, CC_ENOMEM,
                           "out of memory creating the engine");
        if (cc_durable_log(s->dur, CC_REC_GENESIS, now_ms(s), NULL, 0) == 0)
            return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
        if (cc_durable_flush(s->dur) != 0)
            return cc_errf(err, errlen, CC_EIO,
                           "journal: cannot write its first record in %s", dir);
        return 0;
    }
    /* The engine's clock never goes back, even if the wall clock did. */
    if (last_now > now_ms(s)) {
        cc_log_warn("recovery: the journal's last record is %llu ms in the "
                    "future; the clock continues from it",
                    (unsigned long long)(last_now - now_ms(s)));
        s->wall_base = last_now;
        s->mono_base = uv_now(&s->loop);
    }
    ms = (uv_hrtime() - t0) / 1000000;
    s->recovery_ms = ms;
    s->late = 1;
    cc_log_info("recovery: %llu journal records replayed; state rebuilt in "
                "%llu ms; %llu alerts in the log, %llu callback triggers "
                "waiting",
                (unsigned long long)s->recovered_records,
                (unsigned long long)ms, (unsigned long long)(s->alog.next - 1),
                (unsigned long long)s->cbq_count);
    return 0;
}

static int
open_listen(nng_socket *sock, int (*open)(nng_socket *), const char *what,
            const char *url, size_t maxsz, char *err, size_t errlen) {
    int rc = open(sock);
    if (rc == 0)
        rc = nng_socket_set_size(*sock, NNG_OPT_RECVMAXSZ, maxsz);
    if (rc == 0)
        rc = nng_listen(*sock, url, NULL, 0);
    if (rc != 0) {
        snprintf(err, errlen, "[server] %s = %s: %s", what, url,
                 nng_strerror(rc));
        return CC_EIO;
    }
    return 0;
}

static int
start_rep(struct cc_server *s, nng_socket sock, enum rep_kind kind,
          struct rep_ctx *ctxs, int n, char *err, size_t errlen) {
    int i, rc;

    for (i = 0; i < n; i++) {
        struct rep_ctx *c = &ctxs[i];
        c->srv = s;
        c->kind = kind;
        rc = nng_ctx_open(&c->ctx, sock);
        if (rc == 0)
            rc = nng_aio_alloc(&c->aio, rep_aio_cb, c);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start a REP context: %s",
                     nng_strerror(rc));
            return CC_EIO;
        }
    }
    for (i = 0; i < n; i++)
        rep_recv(&ctxs[i]);
    return 0;
}

int
cc_server_new(struct cc_server **out, const struct cc_config *cfg,
              const char *config_path, char *err, size_t errlen) {
    struct cc_server *s;
    struct cc_engine_config ec;
    struct timespec ts;
    size_t hard;
    int rc, fd;

    s = cc_calloc(1, sizeof(*s));
    if (s == NULL)
        return CC_ENOMEM;
    s->cfg = *cfg;
    cc_log_set_level(cfg->log_level);
    if (config_path != NULL)
        s->config_path = cc_strndup(config_path, strlen(config_path));
    s->rl_bad.interval_ms = 1000;
    s->rl_bad.burst = 10;
    uv_loop_init(&s->loop);
    uv_mutex_init(&s->rx_lock);
    uv_cond_init(&s->rx_cond);
    uv_mutex_init(&s->rep_lock);
    msgpack_sbuffer_init(&s->reply_sb);
    msgpack_packer_init(&s->reply_pk, &s->reply_sb, cc_sbuffer_write);
    uv_timer_init(&s->loop, &s->timer);
    uv_timer_init(&s->loop, &s->drain_timer);
    uv_idle_init(&s->loop, &s->walk_idle);
    uv_async_init(&s->loop, &s->rx_async, rx_async_cb);
    uv_async_init(&s->loop, &s->rep_async, rep_async_cb);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sighup);
    uv_signal_init(&s->loop, &s->sigchld);
    uv_timer_init(&s->loop, &s->snap_timer);
    s->pid = getpid();
    s->snap_pipe = -1;

    clock_gettime(CLOCK_REALTIME, &ts);
    s->wall_base = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    s->mono_base = uv_now(&s->loop);
    s->started = s->wall_base;

    s->cbq_cap = cfg->callback_backlog;
    s->cbq = cc_calloc(s->cbq_cap, sizeof(*s->cbq));
    to_engine_config(cfg, &ec);
    {
        uint64_t seed;
        uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL);
        ec.seed = seed;
    }
    s->alog.next = 1;
    s->alog.cap = cfg->alert_log;
    if (s->alog.cap != 0)
        s->alog.v = cc_calloc(s->alog.cap, sizeof(*s->alog.v));
    *out = s;
    if (s->cbq == NULL || (s->alog.cap != 0 && s->alog.v == NULL)) {
        snprintf(err, errlen, "out of memory");
        return CC_ENOMEM;
    }
    if (cfg->data_dir[0] != '\0') {
        rc = recover(s, &ec, err, errlen);
        if (rc != 0)
            return rc;
    } else if (cc_engine_new(&s->engine, &ec, now_ms(s)) != 0) {
        snprintf(err, errlen, "out of memory creating the engine");
        return CC_ENOMEM;
    }
    s->report.want_context = true;

    /* NNG enforces a hard cap and drops the connection beyond it; between
     * max_message and the cap we still read the message, so that the sender
     * is told why it was refused. */
    hard = (size_t)cfg->max_message * 2;
    rc = open_listen(&s->pull, nng_pull0_open, "ingest", cfg->ingest, hard, err,
                     errlen);
    if (rc == 0)
        rc = open_listen(&s->ack, nng_rep0_open, "ingest_ack", cfg->ingest_ack,
                         hard, err, errlen);
    if (rc == 0)
        rc = open_listen(&s->pub, nng_pub0_open, "alerts", cfg->alerts, 4096,
                         err, errlen);
    /* PUB keeps 16 messages per subscriber by default and drops the rest:
     * a burst of SLA stages falling due at one instant would lose most of
     * them. Keep as many as NNG allows. */
    if (rc == 0 &&
        nng_socket_set_int(s->pub, NNG_OPT_SENDBUF, ALERT_SENDBUF) != 0)
        cc_log_warn("alerts: cannot raise the PUB send buffer to %d",
                    ALERT_SENDBUF);
    if (rc == 0)
        rc = open_listen(&s->push, nng_push0_open, "callbacks", cfg->callbacks,
                         4096, err, errlen);
    if (rc == 0)
        rc = open_listen(&s->query, nng_rep0_open, "query", cfg->query, 65536,
                         err, errlen);
    if (rc != 0)
        return rc;

    rc = nng_socket_get_int(s->push, NNG_OPT_SENDFD, &fd);
    if (rc == 0)
        rc = uv_poll_init(&s->loop, &s->push_poll, fd);
    if (rc == 0 && cfg->ingest_io == CC_IO_POLL) {
        rc = nng_socket_get_int(s->pull, NNG_OPT_RECVFD, &fd);
        if (rc == 0)
            rc = uv_poll_init(&s->loop, &s->pull_poll, fd);
    } else if (rc == 0) {
        /* Unused in thread mode, but initialised so shutdown can close
         * every handle the same way. */
        rc = uv_poll_init(&s->loop, &s->pull_poll, fd);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot watch NNG descriptors: %d", rc);
        return CC_EIO;
    }
    s->polls_ready = 1;
    rc = start_rep(s, s->ack, REP_INGEST, &s->ctxs[0], REP_ACK_CTXS, err,
                   errlen);
    if (rc == 0)
        rc = start_rep(s, s->query, REP_QUERY, &s->ctxs[REP_ACK_CTXS],
                       REP_QUERY_CTXS, err, errlen);
    if (rc != 0)
        return rc;
    if (cfg->ingest_io == CC_IO_POLL) {
        uv_poll_start(&s->pull_poll, UV_READABLE, pull_poll_cb);
        s->pull_polling = 1;
    } else {
        nng_socket_set_ms(s->pull, NNG_OPT_RECVTIMEO, RX_TIMEOUT_MS);
        if (uv_thread_create(&s->rx_thread, rx_thread_main, s) != 0) {
            snprintf(err, errlen, "cannot start the receive thread");
            return CC_EIO;
        }
        s->rx_started = 1;
    }
    rc = adapters_start(s, err, errlen);
    if (rc != 0)
        return rc;
    uv_signal_start(&s->sigint, signal_cb, SIGINT);
    uv_signal_start(&s->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&s->sighup, signal_cb, SIGHUP);
    if (s->dur != NULL) {
        uv_signal_start(&s->sigchld, sigchld_cb, SIGCHLD);
        if (cfg->snapshot_interval_ms != 0)
            uv_timer_start(&s->snap_timer, snap_timer_cb,
                           cfg->snapshot_interval_ms,
                           cfg->snapshot_interval_ms);
    }
    return 0;
}

int
cc_server_run(struct cc_server *s) {
    int rc;

    s->ran = 1;
    cc_log_info("contactd %s: ingest %s, ingest_ack %s, alerts %s, "
                "callbacks %s, query %s (ingest_io=%s)",
                CC_VERSION, s->cfg.ingest, s->cfg.ingest_ack, s->cfg.alerts,
                s->cfg.callbacks, s->cfg.query,
                s->cfg.ingest_io == CC_IO_POLL ? "poll" : "thread");
    if (s->late) {
        /* What fell due while contactd was down goes now, marked late. */
        uv_update_time(&s->loop);
        engine_tick(s, now_ms(s));
        flush_outbox(s);
        s->late = 0;
        if (s->st.alerts_late != 0)
            cc_log_info("recovery: %llu alerts fell due while contactd was "
                        "down: sent now, marked late",
                        (unsigned long long)s->st.alerts_late);
    }
    after_work(s);
    cc_mem_reserve_target(reserve_pages(&s->cfg));
    refill_reserve(s);
    rc = uv_run(&s->loop, UV_RUN_DEFAULT);
    return rc == 0 ? 0 : CC_EIO;
}

void
cc_server_free(struct cc_server *s) {
    unsigned i;

    if (s == NULL)
        return;
    if (s->rx_started) {
        uv_mutex_lock(&s->rx_lock);
        s->rx_stop = 1;
        uv_cond_signal(&s->rx_cond);
        uv_mutex_unlock(&s->rx_lock);
        uv_thread_join(&s->rx_thread);
    }
    /* Closing the sockets ends every pending operation; freeing an aio
     * waits for its callback. */
    nng_close(s->pull);
    nng_close(s->ack);
    nng_close(s->query);
    nng_close(s->pub);
    nng_close(s->push);
    for (i = 0; i < CC_ARRAY_SIZE(s->ctxs); i++) {
        if (s->ctxs[i].walk != NULL) /* stopped before its walk ended */
            cc_engine_at_risk_end(s->engine, s->ctxs[i].walk, NULL);
        if (s->ctxs[i].aio != NULL) {
            nng_aio_stop(s->ctxs[i].aio);
            if (s->ctxs[i].sending)
                nng_msg_free(nng_aio_get_msg(s->ctxs[i].aio));
            nng_aio_free(s->ctxs[i].aio);
        }
    }
    if (!s->stopping) {
        /* Never ran (setup failed): close the handles ourselves. */
        s->stopping = 1;
        finish(s);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&s->loop);
    snapshot_abandon(s);
    if (s->dur != NULL) {
        /* Whatever was appended since the last sync (triggers recorded
         * as sent, the last ticks) goes to disk before the exit, then the
         * state as it stops (not when setup failed: recovery may not have
         * finished). */
        cc_durable_flush(s->dur);
        if (s->ran)
            snapshot_at_exit(s);
        cc_durable_free(s->dur);
    }
    for (i = 0; i < s->rx_count; i++)
        nng_msg_free(s->rx_q[(s->rx_head + i) % RX_QUEUE_CAP]);
    while (s->cbq != NULL && s->cbq_count != 0) {
        nng_msg_free(s->cbq[s->cbq_head].m);
        s->cbq_head = (s->cbq_head + 1) % s->cbq_cap;
        s->cbq_count--;
    }
    cc_free(s->cbq, s->cbq_cap * sizeof(*s->cbq));
    for (i = 0; i < REP_ACK_CTXS; i++) {
        if (s->ctxs[i].held != NULL)
            nng_msg_free(s->ctxs[i].held);
    }
    heldq_free(&s->alerts_held);
    alert_log_free(&s->alog);
    adapters_free(s);
    cc_engine_free(s->engine);
    cc_mem_reserve_release();
    cc_ingest_report_fini(&s->report);
    for (i = 0; i < RX_GROUP; i++)
        cc_ingest_report_fini(&s->rx_reports[i]);
    msgpack_sbuffer_destroy(&s->reply_sb);
    uv_mutex_destroy(&s->rx_lock);
    uv_cond_destroy(&s->rx_cond);
    uv_mutex_destroy(&s->rep_lock);
    if (s->config_path != NULL)
        cc_free(s->config_path, strlen(s->config_path) + 1);
    cc_free(s, sizeof(*s));
}
