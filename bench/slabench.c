/*
 * The SLA clocks under load. See slabench.h.
 *
 * The probes are few (one event in fifty) because every alert is a PUB
 * message of its own, and this machine's NNG moves some ten thousand
 * single messages a second per socket; the bulk clocks are what makes the
 * wheel big. A subscriber notes each sla.* alert's arrival against its
 * "due": the lateness a supervisor sees, through the engine, the PUB
 * socket and loopback TCP.
 */
#include "slabench.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static int64_t
wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct sub_state {
    const char *addr;
    uint64_t expect;
    int64_t *late_us;   /* expect of them */
    int64_t *engine_ms; /* the engine's own: its ts - due */
    uint64_t n, warnings, breaches, unparsed;
    atomic_int ready, sent_all;
    int64_t last_due_us;
};

/* The "due" of an alert map, or -1; its "ts" (when the engine fired it)
 * into *ts. */
static int64_t
alert_due(const char *p, size_t n, int64_t *ts) {
    msgpack_unpacked u;
    int64_t due = -1;
    uint32_t i;

    *ts = -1;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, p, n, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type == MSGPACK_OBJECT_STR &&
                kv->key.via.str.size == 3 &&
                !memcmp(kv->key.via.str.ptr, "due", 3) &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                due = (int64_t)kv->val.via.u64;
            else if (kv->key.type == MSGPACK_OBJECT_STR &&
                     kv->key.via.str.size == 2 &&
                     !memcmp(kv->key.via.str.ptr, "ts", 2) &&
                     kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                *ts = (int64_t)kv->val.via.u64;
        }
    }
    msgpack_unpacked_destroy(&u);
    return due;
}

static void *
sub_main(void *arg) {
    struct sub_state *st = arg;
    nng_socket s;
    int idle = 0;

    nng_sub0_open(&s);
    nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "sla.", 4);
    nng_socket_set_int(s, NNG_OPT_RECVBUF, 8192);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 100);
    while (nng_dial(s, st->addr, NULL, 0) != 0)
        nng_msleep(10);
    nng_msleep(200); /* the subscription reaches the publisher */
    atomic_store(&st->ready, 1);
    while (st->n < st->expect) {
        char *buf;
        size_t len, tl;
        int64_t at, due, ts;
        int rv = nng_recv(s, &buf, &len, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT) {
            /* Done once everything was sent and 2 s passed since the last
             * stage could have fallen due. */
            if (atomic_load(&st->sent_all) &&
                wall_us() > st->last_due_us + 2000000 && ++idle > 5)
                break;
            continue;
        }
        if (rv != 0)
            break;
        at = wall_us();
        tl = strnlen(buf, len);
        due = tl < len ? alert_due(buf + tl + 1, len - tl - 1, &ts) : -1;
        if (due < 0) {
            st->unparsed++;
        } else {
            st->engine_ms[st->n] = ts - due;
            st->late_us[st->n++] = at - due * 1000;
            if (!strcmp(buf, "sla.warning"))
                st->warnings++;
            else if (!strcmp(buf, "sla.breach"))
                st->breaches++;
        }
        nng_free(buf, len);
    }
    nng_close(s);
    return NULL;
}

static int
cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double
pct_ms(const int64_t *v, uint64_t n, double p) {
    uint64_t i;
    if (n == 0)
        return 0;
    i = (uint64_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

/* ---- the floor: a bare libuv timer ------------------------------------ */

#define TIMER_SAMPLES 3000

struct timer_state {
    uv_timer_t t;
    uint64_t due_ns;
    int64_t late_us[TIMER_SAMPLES];
    int n;
};

static void
timer_cb(uv_timer_t *t) {
    struct timer_state *s = (struct timer_state *)t;
    s->late_us[s->n++] = (int64_t)(uv_hrtime() - s->due_ns) / 1000;
    if (s->n == TIMER_SAMPLES) {
        uv_close((uv_handle_t *)t, NULL);
        return;
    }
    /* Due in 1 ms of the loop's clock, as the daemon arms its timer. */
    uv_update_time(t->loop);
    s->due_ns = uv_hrtime() + 1000000;
    uv_timer_start(t, timer_cb, 1, 0);
}

static void
timer_floor(struct timer_state *s) {
    uv_loop_t loop;

    uv_loop_init(&loop);
    uv_timer_init(&loop, &s->t);
    s->n = 0;
    uv_update_time(&loop);
    s->due_ns = uv_hrtime() + 1000000;
    uv_timer_start(&s->t, timer_cb, 1, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    qsort(s->late_us, TIMER_SAMPLES, sizeof(s->late_us[0]), cmp_i64);
}

/* ---- the run ----------------------------------------------------------- */

/* Packs event k of a phase at time now_ms. */
typedef void (*gen_fn)(msgpack_packer *pk, uint64_t k, int64_t now_ms,
                       uint64_t bulk);

static void
pack_kv(msgpack_packer *pk, const char *k, const char *v, size_t vn) {
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v, vn);
}

static void
pack_event(msgpack_packer *pk, const char *id, size_t idn, int64_t ts,
           const char *type, const char *contact, size_t cn,
           const char *queue) {
    msgpack_pack_map(pk, queue ? 6 : 5);
    pack_kv(pk, "id", id, idn);
    msgpack_pack_str_with_body(pk, "ts", 2);
    msgpack_pack_int64(pk, ts);
    pack_kv(pk, "channel", "phone", 5);
    pack_kv(pk, "type", type, strlen(type));
    pack_kv(pk, "contact", contact, cn);
    if (queue)
        pack_kv(pk, "queue", queue, strlen(queue));
}

/* Phase 1: the bulk of the clocks, in a queue whose target is an hour. */
static void
gen_bulk(msgpack_packer *pk, uint64_t k, int64_t now_ms, uint64_t bulk) {
    char id[32];
    int n = snprintf(id, sizeof(id), "b%llu", (unsigned long long)k);
    (void)bulk;
    pack_event(pk, id, (size_t)n, now_ms, "queue.join", id, (size_t)n, "bulk");
}

/* Phase 2: load on the bulk contacts (message.in), and one event in 50 a
 * probe caller joining the timed queue. */
static void
gen_mixed(msgpack_packer *pk, uint64_t k, int64_t now_ms, uint64_t bulk) {
    char id[32], c[32];
    int n, cn;

    if (k % 50 == 0) {
        n = snprintf(id, sizeof(id), "p%llu", (unsigned long long)k);
        pack_event(pk, id, (size_t)n, now_ms, "queue.join", id, (size_t)n,
                   "timed");
        return;
    }
    n = snprintf(id, sizeof(id), "m%llu", (unsigned long long)k);
    cn = snprintf(c, sizeof(c), "b%llu",
                  (unsigned long long)((k * 2654435761ULL) % bulk));
    pack_event(pk, id, (size_t)n, now_ms, "message.in", c, (size_t)cn, NULL);
}

/* Sends events [from, to) of gen, 100 per message, at rate events/s,
 * each stamped with the wall-clock time its message leaves. */
static int
send_events(nng_socket s, gen_fn gen, uint64_t from, uint64_t to, uint64_t rate,
            uint64_t bulk) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int64_t t0 = wall_us();
    uint64_t k = from, i;
    int rc = 0;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    while (k < to) {
        uint64_t n = to - k < 100 ? to - k : 100;
        int64_t ahead = t0 + (int64_t)((k - from) * 1000000 / rate) - wall_us();
        int64_t now_ms;
        if (ahead > 1000)
            nng_msleep((nng_duration)(ahead / 1000));
        now_ms = wall_us() / 1000;
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_array(&pk, (uint32_t)n);
        for (i = 0; i < n; i++, k++)
            gen(&pk, k, now_ms, bulk);
        if ((rc = nng_send(s, sb.data, sb.size, 0)) != 0)
            break;
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

void
bench_sla(const char *bin, uint64_t clocks, uint64_t rate) {
    static struct timer_state floor;
    /* The measured phase: 10 s of load at `rate`, one event in 50 a probe
     * whose clock (target 2 s, warned at 50%) fires twice during it. */
    const uint64_t mixed = rate * 10 / 100 * 100, probes = mixed / 50;
    struct sub_state st;
    char conf[64], ingest[64], query[64], alerts[64];
    nng_socket push;
    pthread_t th;
    int64_t t0, queued = -1;
    pid_t pid;
    FILE *f;
    int i, rc;

    printf("\n== SLA clocks under load: %llu answer clocks running (queue "
           "bulk, target 1h), then 10 s of %llu events/s of which 1 in 50 a "
           "probe clock (target 2 s, warning at 50%%) timed at the "
           "subscriber\n",
           (unsigned long long)clocks, (unsigned long long)rate);
    timer_floor(&floor);
    printf("baseline: a bare libuv timer armed for 1 ms, %d firings: "
           "lateness p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
           TIMER_SAMPLES, pct_ms(floor.late_us, TIMER_SAMPLES, 0.5),
           pct_ms(floor.late_us, TIMER_SAMPLES, 0.99),
           pct_ms(floor.late_us, TIMER_SAMPLES, 1.0));

    snprintf(conf, sizeof(conf), "/tmp/cc-slabench-%d.conf", (int)getpid());
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    snprintf(query, sizeof(query), "tcp://127.0.0.1:%d", free_port());
    snprintf(alerts, sizeof(alerts), "tcp://127.0.0.1:%d", free_port());
    f = fopen(conf, "w");
    fprintf(f,
            "[server]\ningest = %s\nquery = %s\nalerts = %s\n"
            "ingest_ack = tcp://127.0.0.1:%d\n"
            "callbacks = tcp://127.0.0.1:%d\nlog_level = error\n"
            "[callback]\noffer_after_waiting = 0\n"
            "offer_when_wait_over = 0\noffer_when_position_over = 0\n"
            "[sla.phone.bulk]\nqueue = bulk\nanswer = 1h\n"
            "[sla.phone]\nanswer = 2s\nwarn = 50%%\n"
            "[durability]\ndir =\n", /* no journal: the clocks alone */
            ingest, query, alerts, free_port(), free_port());
    fclose(f);
    pid = start_contactd(bin, conf, query);

    memset(&st, 0, sizeof(st));
    st.addr = alerts;
    st.expect = 2 * probes;
    st.late_us = calloc(st.expect, sizeof(*st.late_us));
    st.engine_ms = calloc(st.expect, sizeof(*st.engine_ms));
    atomic_init(&st.ready, 0);
    atomic_init(&st.sent_all, 0);
    st.last_due_us = INT64_MAX;
    pthread_create(&th, NULL, sub_main, &st);
    while (!atomic_load(&st.ready))
        nng_msleep(10);
    if ((rc = nng_push0_open(&push)) == 0)
        rc = nng_dial(push, ingest, NULL, 0);
    t0 = wall_us();
    if (rc == 0)
        rc = send_events(push, gen_bulk, 0, clocks, rate, clocks);
    /* Every bulk clock is running before the measured phase starts. */
    for (i = 0; i < 600 && stats_done(query) < (int64_t)clocks; i++)
        nng_msleep(100);
    printf("phase 1: %llu queue.join in %.2f s (%s)\n",
           (unsigned long long)clocks, (double)(wall_us() - t0) / 1e6,
           rc ? nng_strerror(rc) : "ok");
    t0 = wall_us();
    if (rc == 0)
        rc = send_events(push, gen_mixed, 0, mixed / 2, rate, clocks);
    {
        static const char *const q[] = {"engine/contacts/queued"};
        queued = stats_sum(query, q, 1);
    }
    if (rc == 0)
        rc = send_events(push, gen_mixed, mixed / 2, mixed, rate, clocks);
    st.last_due_us = wall_us() + 2000000;
    atomic_store(&st.sent_all, 1);
    printf("phase 2: %llu events in %.2f s (%s); answer clocks running "
           "half way: %lld\n",
           (unsigned long long)mixed, (double)(wall_us() - t0) / 1e6,
           rc ? nng_strerror(rc) : "ok", (long long)queued);
    pthread_join(th, NULL);
    nng_msleep(200);
    nng_close(push);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(conf);

    qsort(st.late_us, st.n, sizeof(st.late_us[0]), cmp_i64);
    qsort(st.engine_ms, st.n, sizeof(st.engine_ms[0]), cmp_i64);
    printf("probe alerts received %llu of %llu (%llu warnings, %llu "
           "breaches)\n",
           (unsigned long long)st.n, (unsigned long long)st.expect,
           (unsigned long long)st.warnings, (unsigned long long)st.breaches);
    printf("lateness (arrival at the subscriber - due): p50 %.3f ms, p99 %.3f "
           "ms, p99.9 %.3f ms, max %.3f ms\n",
           pct_ms(st.late_us, st.n, 0.5), pct_ms(st.late_us, st.n, 0.99),
           pct_ms(st.late_us, st.n, 0.999), pct_ms(st.late_us, st.n, 1.0));
    printf("the engine's clock when it fired - due (whole ms): p50 %.0f, p99 "
           "%.0f, max %.0f%s\n",
           pct_ms(st.engine_ms, st.n, 0.5) * 1000,
           pct_ms(st.engine_ms, st.n, 0.99) * 1000,
           pct_ms(st.engine_ms, st.n, 1.0) * 1000,
           st.unparsed ? " (some alerts had no due: see unparsed)" : "");
    if (st.unparsed)
        printf("unparsed alerts: %llu\n", (unsigned long long)st.unparsed);
    free(st.late_us);
    free(st.engine_ms);
}
