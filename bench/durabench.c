/*
 * cc_durabench: what the journal costs and how fast recovery is, with the
 * real contactd.
 *
 * Events are contact.open, each for a new customer, stamped with the
 * wall clock.
 *
 * 1. Acknowledged ingest: C clients, each a REQ socket sending one batch
 *    at a time (1 or 100 events) on ingest_ack for S seconds, against
 *    contactd with no journal (the baseline) and with [durability] fsync
 *    = off, batch and always. Prints acknowledged events/s, the latency
 *    of an acknowledgement (p50, p99) and events per sync.
 * 2. Replay and restart: N events (one per message, or 100 per message)
 *    pushed on PULL into a journal (fsync = off, no snapshots), contactd
 *    killed with SIGKILL, then started again: the time until it answers,
 *    the replay rate its stats report (records and events per second),
 *    with N open conversations to rebuild, and the CPU the restarted
 *    daemon used until then (user space, kernel) with its peak memory.
 *    Then a snapshot of that state ({"q":"snapshot"}: how long the child
 *    took, bytes per conversation), another SIGKILL, and the restart from
 *    the snapshot.
 *
 *   cc_durabench [--seconds S] [--clients C] [--events N]
 *                [--only acked|replay] [--batch 1|100]
 */
#include "benchd.h"
#include "cc.h"

#include <msgpack.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1u << 22)

static double
now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct daemon {
    char conf[96], data[96], ingest[64], ack[64], query[64];
    pid_t pid;
};

static void daemon_start_once(struct daemon *d, const char *fsync, bool fresh);

/* Writes a config (fsync NULL: no journal) and starts contactd; a fresh
 * one that exits at once (a port picked free was taken meanwhile) is
 * started again on new ports. */
static void
daemon_start(struct daemon *d, const char *fsync, bool fresh) {
    int i;

    for (i = 0; i < 3; i++) {
        daemon_start_once(d, fsync, fresh);
        if (!fresh || waitpid(d->pid, NULL, WNOHANG) == 0)
            return;
    }
    fprintf(stderr, "contactd does not start\n");
    exit(1);
}

static void
daemon_start_once(struct daemon *d, const char *fsync, bool fresh) {
    FILE *f;
    char cmd[160];

    if (fresh) {
        snprintf(d->conf, sizeof(d->conf), "/tmp/cc-durabench-%d.conf",
                 (int)getpid());
        snprintf(d->data, sizeof(d->data), "/tmp/cc-durabench-%d.data",
                 (int)getpid());
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->data);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", d->data);
        snprintf(d->ingest, sizeof(d->ingest), "tcp://127.0.0.1:%d",
                 free_port());
        snprintf(d->ack, sizeof(d->ack), "tcp://127.0.0.1:%d", free_port());
        snprintf(d->query, sizeof(d->query), "tcp://127.0.0.1:%d", free_port());
        f = fopen(d->conf, "w");
        fprintf(f,
                "[server]\ningest = %s\ningest_ack = %s\nquery = %s\n"
                "alerts = tcp://127.0.0.1:%d\ncallbacks = "
                "tcp://127.0.0.1:%d\nlog_level = error\n"
                "[limits]\nmax_contacts = 4000000\n"
                "[conversation]\nmax_conversations = 4000000\n"
                "[identity]\nmax_identities = 8000000\n"
                "[durability]\ndir = %s\nfsync = %s\n"
                "snapshot_interval = 0\nsnapshot_records = 0\n",
                d->ingest, d->ack, d->query, free_port(), free_port(),
                fsync != NULL ? d->data : "", fsync != NULL ? fsync : "off");
        fclose(f);
    }
    d->pid = start_contactd(CONTACTD_BIN, d->conf, d->query);
}

static void
daemon_stop(struct daemon *d, int sig) {
    kill(d->pid, sig);
    waitpid(d->pid, NULL, 0);
}

static void
daemon_clean(struct daemon *d) {
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d->data);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", d->data);
    unlink(d->conf);
}

/* Packs n contact.open events, each a new customer (client c, batch k),
 * stamped with the wall clock as a platform would: events from long ago
 * would open conversations whose SLA clocks have all run out, and the
 * figures would be those of four alerts per event. */
static void
pack_batch(msgpack_sbuffer *sb, unsigned c, uint64_t k, unsigned n) {
    msgpack_packer pk;
    char id[48], phone[24];
    unsigned i;
    struct timespec ts;
    int64_t now;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    for (i = 0; i < n; i++) {
        uint64_t u = ((uint64_t)c << 40) | (k * n + i);
        int len = snprintf(id, sizeof(id), "c%u-%llu-%u", c,
                           (unsigned long long)k, i);
        msgpack_pack_map(&pk, 6);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_str_with_body(&pk, id, (size_t)len);
        msgpack_pack_str_with_body(&pk, "ts", 2);
        msgpack_pack_int64(&pk, now);
        msgpack_pack_str_with_body(&pk, "channel", 7);
        msgpack_pack_str_with_body(&pk, "chat", 4);
        msgpack_pack_str_with_body(&pk, "type", 4);
        msgpack_pack_str_with_body(&pk, "contact.open", 12);
        msgpack_pack_str_with_body(&pk, "contact", 7);
        msgpack_pack_str_with_body(&pk, id, (size_t)len);
        msgpack_pack_str_with_body(&pk, "customer", 8);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "phone", 5);
        len = snprintf(phone, sizeof(phone), "+1%010llu",
                       (unsigned long long)(u % 10000000000ULL));
        msgpack_pack_str_with_body(&pk, phone, (size_t)len);
    }
}

/* ---- acknowledged ingest ------------------------------------------------ */

struct run {
    const char *addr;
    unsigned batch;
    double until;
    atomic_uint_fast64_t events, errors;
    atomic_uint nsamples;
    uint32_t *lat_us; /* MAX_SAMPLES */
};

struct client {
    struct run *r;
    unsigned id;
};

static void *
client_main(void *arg) {
    struct client *cl = arg;
    struct run *r = cl->r;
    msgpack_sbuffer sb;
    nng_socket s;
    uint64_t k = 0;

    msgpack_sbuffer_init(&sb);
    nng_req0_open(&s);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    if (nng_dial(s, r->addr, NULL, 0) != 0) {
        atomic_fetch_add(&r->errors, 1);
        return NULL;
    }
    while (now_s() < r->until) {
        char *buf;
        size_t len;
        double t0;
        unsigned i;

        pack_batch(&sb, cl->id, k++, r->batch);
        t0 = now_s();
        if (nng_send(s, sb.data, sb.size, 0) != 0 ||
            nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) != 0) {
            atomic_fetch_add(&r->errors, 1);
            continue;
        }
        /* {"accepted": n, ...}: n (below 128) is the byte after the key. */
        if (len < 11 || (unsigned char)buf[0] != 0x84 ||
            (unsigned char)buf[10] != r->batch)
            atomic_fetch_add(&r->errors, 1);
        nng_free(buf, len);
        atomic_fetch_add(&r->events, r->batch);
        i = atomic_fetch_add(&r->nsamples, 1);
        if (i < MAX_SAMPLES)
            r->lat_us[i] = (uint32_t)((now_s() - t0) * 1e6);
    }
    nng_close(s);
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

static int
cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void
bench_acked(const char *fsync, unsigned batch, unsigned clients,
            double seconds) {
    static struct client cl[256];
    pthread_t th[256];
    static uint32_t *lat;
    struct daemon d;
    struct run r;
    unsigned i, n;
    double t;
    int64_t syncs = 0;
    static const char *const sync_path[] = {"journal/syncs"};

    if (lat == NULL)
        lat = malloc(MAX_SAMPLES * sizeof(*lat));
    daemon_start(&d, fsync, true);
    memset(&r, 0, sizeof(r));
    r.addr = d.ack;
    r.batch = batch;
    r.lat_us = lat;
    t = now_s();
    r.until = t + seconds;
    for (i = 0; i < clients; i++) {
        cl[i].r = &r;
        cl[i].id = i;
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    t = now_s() - t;
    if (fsync != NULL)
        syncs = stats_sum(d.query, sync_path, 1);
    daemon_stop(&d, SIGTERM);
    daemon_clean(&d);
    n = atomic_load(&r.nsamples);
    if (n > MAX_SAMPLES)
        n = MAX_SAMPLES;
    qsort(lat, n, sizeof(*lat), cmp_u32);
    printf("acked  fsync=%-6s batch %3u, %u clients: %9.0f events/s, ack "
           "latency p50 %7.3f ms p99 %7.3f ms",
           fsync != NULL ? fsync : "(none)", batch, clients,
           (double)atomic_load(&r.events) / t, n ? lat[n / 2] / 1000.0 : 0.0,
           n ? lat[(size_t)(n * 0.99)] / 1000.0 : 0.0);
    if (syncs > 0)
        printf(", %.0f events/sync", (double)atomic_load(&r.events) / syncs);
    if (atomic_load(&r.errors) != 0)
        printf(" [%llu errors]", (unsigned long long)atomic_load(&r.errors));
    printf("\n");
    fflush(stdout);
}

/* ---- replay and restart ------------------------------------------------- */

/* What pid used: CPU time in user space and in the kernel (s), and the
 * most memory it held (VmHWM, bytes). Replay grows the state by about a
 * gigabyte, and the kernel's work of handing it fresh memory shows as
 * system time. */
static void
proc_usage(pid_t pid, double *user, double *sys, double *rss) {
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    double kb = 0;
    FILE *f;

    *user = *sys = *rss = 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) != NULL) {
        /* After the command's ")": fields 3 on; utime and stime are 14
         * and 15. */
        if (fgets(buf, sizeof(buf), f) != NULL &&
            (p = strrchr(buf, ')')) != NULL &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) == 2) {
            *user = (double)ut / (double)sysconf(_SC_CLK_TCK);
            *sys = (double)st / (double)sysconf(_SC_CLK_TCK);
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(buf, sizeof(buf), f) != NULL)
            if (strncmp(buf, "VmHWM:", 6) == 0)
                kb = atof(buf + 6);
        fclose(f);
    }
    *rss = kb * 1024;
}

static void bench_snapshot_restart(struct daemon *d, int64_t convs);

static void
bench_replay(uint64_t events, unsigned batch) {
    static const char *const rec_path[] = {"server/recovered_records"};
    static const char *const ms_path[] = {"server/recovery_ms"};
    static const char *const conv_path[] = {"engine/conversations/open"};
    msgpack_sbuffer sb;
    struct daemon d;
    nng_socket push;
    uint64_t k, msgs = events / batch;
    double t;
    int64_t recs, ms, convs;
    double rss, user, sys;

    daemon_start(&d, "off", true);
    msgpack_sbuffer_init(&sb);
    nng_push0_open(&push);
    nng_dial(push, d.ingest, NULL, 0);
    for (k = 0; k < msgs; k++) {
        pack_batch(&sb, 1, k, batch);
        nng_send(push, sb.data, sb.size, 0);
    }
    while (stats_done(d.query) < (int64_t)(msgs * batch))
        nng_msleep(20);
    nng_close(push);
    msgpack_sbuffer_destroy(&sb);
    daemon_stop(&d, SIGKILL); /* no clean stop */

    t = now_s();
    daemon_start(&d, NULL, false);
    while (stats_done(d.query) < 0 && now_s() - t < 300)
        nng_msleep(10); /* replay may take longer than start_contactd waits */
    t = now_s() - t;
    recs = stats_sum(d.query, rec_path, 1);
    ms = stats_sum(d.query, ms_path, 1);
    convs = stats_sum(d.query, conv_path, 1);
    printf("replay %llu events, %u per record: restart %.2f s (until the "
           "query socket answers), replay %lld records in %lld ms = %.0f "
           "records/s, %.0f events/s; %lld open conversations\n",
           (unsigned long long)(msgs * batch), batch, t, (long long)recs,
           (long long)ms, ms ? recs * 1000.0 / (double)ms : 0.0,
           ms ? (double)(msgs * batch) * 1000.0 / (double)ms : 0.0,
           (long long)convs);
    proc_usage(d.pid, &user, &sys, &rss);
    printf("  the restarted daemon until then: %.2f s of CPU in user space, "
           "%.2f s in the kernel (mostly handing it fresh memory: its peak "
           "RSS is %.2f GB)\n",
           user, sys, rss / 1e9);
    fflush(stdout);
    if (batch == 100)
        bench_snapshot_restart(&d, convs);
    daemon_stop(&d, SIGKILL);
    if (getenv("CC_DURABENCH_KEEP") != NULL)
        printf("kept %s and %s\n", d.conf, d.data);
    else
        daemon_clean(&d);
}

/* Sends {"q":"snapshot"} and waits until it is written: its seq, or -1. */
static int64_t
snapshot_now(const char *query) {
    static const char req[] = "\x81\xa1q\xa8snapshot";
    static const char *const last_path[] = {"snapshot/last_seq"};
    int64_t before = stats_sum(query, last_path, 1), now;
    nng_socket sock;
    char *buf = NULL;
    size_t len;

    if (nng_req0_open(&sock) != 0 || nng_dial(sock, query, NULL, 0) != 0 ||
        nng_send(sock, (void *)req, sizeof(req) - 1, 0) != 0 ||
        nng_recv(sock, &buf, &len, NNG_FLAG_ALLOC) != 0) {
        nng_close(sock);
        return -1;
    }
    nng_free(buf, len);
    nng_close(sock);
    while ((now = stats_sum(query, last_path, 1)) == before)
        nng_msleep(20);
    return now;
}

/* A snapshot of the state d holds, then SIGKILL and a restart from it. */
static void
bench_snapshot_restart(struct daemon *d, int64_t convs) {
    static const char *const ms_path[] = {"snapshot/last_ms"};
    static const char *const rec_ms_path[] = {"server/recovery_ms"};
    static const char *const rec_path[] = {"server/recovered_records"};
    char path[200];
    struct stat st;
    int64_t seq, wrote_ms;
    double t;

    t = now_s();
    seq = snapshot_now(d->query);
    t = now_s() - t;
    wrote_ms = stats_sum(d->query, ms_path, 1);
    snprintf(path, sizeof(path), "%s/snapshots/%020lld.snap", d->data,
             (long long)seq);
    if (seq < 0 || stat(path, &st) != 0) {
        printf("snapshot: failed\n");
        return;
    }
    daemon_stop(d, SIGKILL);
    printf("snapshot of %lld open conversations: written by the child in "
           "%lld ms (%.2f s until stats showed it), %.2f MB, %.0f bytes per "
           "conversation\n",
           (long long)convs, (long long)wrote_ms, t, (double)st.st_size / 1e6,
           convs > 0 ? (double)st.st_size / (double)convs : 0.0);
    t = now_s();
    daemon_start(d, NULL, false);
    while (stats_done(d->query) < 0 && now_s() - t < 300)
        nng_msleep(10);
    t = now_s() - t;
    printf("restart from the snapshot: %.2f s until the query socket "
           "answers (recovery %lld ms, %lld journal records replayed)\n",
           t, (long long)stats_sum(d->query, rec_ms_path, 1),
           (long long)stats_sum(d->query, rec_path, 1));
    fflush(stdout);
}

int
main(int argc, char **argv) {
    static const char *const policies[] = {NULL, "off", "batch", "always"};
    double seconds = 3;
    unsigned clients = 16, b, p;
    uint64_t events = 1000000;
    const char *only = NULL;
    unsigned only_batch = 0;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            clients = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc)
            events = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            only_batch = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: cc_durabench [--seconds S] [--clients C] "
                            "[--events N] [--only acked|replay] "
                            "[--batch 1|100]\n");
            return 2;
        }
    }
    if (clients == 0 || clients > 256) {
        fprintf(stderr, "--clients: 1 to 256\n");
        return 2;
    }
    if (only_batch != 0 && only_batch != 1 && only_batch != 100) {
        fprintf(stderr, "--batch: 1 or 100\n");
        return 2;
    }
    if (only == NULL || strcmp(only, "acked") == 0) {
        for (b = 1; b <= 100; b *= 100)
            for (p = 0; p < CC_ARRAY_SIZE(policies); p++)
                if (only_batch == 0 || b == only_batch)
                    bench_acked(policies[p], b, clients, seconds);
    }
    if (only == NULL || strcmp(only, "replay") == 0) {
        for (b = 1; b <= 100; b *= 100)
            if (only_batch == 0 || b == only_batch)
                bench_replay(events, b);
    }
    return 0;
}
