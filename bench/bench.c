/*
 * cc_bench: contactd's throughput in one run, each figure beside its
 * baseline.
 *   1. decode + engine, no sockets, with 1M open contacts: events/s,
 *      ns/event, allocations per event, memory per open contact, and the
 *      machine's random-line latency measured beside each run;
 *   2. raw NNG push/pull over TCP loopback with the same messages: the
 *      ceiling any NNG-based daemon on this machine can reach;
 *   3. contactd end to end (the real binary), ingest_io = thread and poll;
 * each at batch 1 and batch 100;
 *   4. with --only sla: the SLA clocks' alert lateness (slabench.h);
 *   5. with --only memory: this machine's memory alone (memlat.h).
 *
 * usage: cc_bench [--contacts N] [--customers N] [--events N] [--msgs1 N]
 *                 [--only engine|nng] [--batch 1|100] [--dedup N]
 *                 [--anonymous] [--reserve PAGES] [--no-sla] [--clocks N]
 *                 [--clock-rate N] [--only memory]
 * --customers: the population contacts are drawn from (default: as many as
 * --contacts; 0: every contact that is not a channel switch is a new
 * customer, the load before returning customers were modelled).
 * --anonymous: the same mix naming no customer (contact lifecycles only:
 * identity resolution and conversations stay idle).
 * --reserve: huge pages kept faulted in by a second thread for the engine's
 * pool growth, as the daemon's [server] memory_reserve does (default 8,
 * the daemon's 16 MiB; 0: the engine maps and faults in its own).
 * --no-sla: every SLA clock off ([sla.any] ... = off), to measure what the
 * clocks cost the engine (default: the built-in policies).
 */
#include "config.h"
#include "engine.h"
#include "loadgen.h"
#include "mem.h"
#include "memlat.h"
#include "slabench.h"
#include "stageprof.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1700000000000LL

/* CPU time of this thread, printed beside the wall clock: where the two
 * part, the thread was waiting for the CPU rather than running. */
static double
cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The supervisor's forecast query over every queue, which walks every
 * conversation: the whole walk, and its longest step of CC_AT_RISK_STEP
 * buckets, the most it holds the daemon's loop at once (medians of
 * five). */
static void
time_at_risk(struct cc_engine *e, uint64_t convs) {
    double total[5], step[5];
    unsigned steps = 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const char *why = NULL;
    int i;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (i = 0; i < 5; i++) {
        struct cc_at_risk *q;
        double t0 = now_s(), t1, t2;
        bool done = false;
        msgpack_sbuffer_clear(&sb);
        if (cc_engine_at_risk_begin(e, (struct cc_str){NULL, 0}, 10, &q,
                                    &why) != 0) {
            printf("           at_risk: %s\n", why);
            break;
        }
        step[i] = 0;
        steps = 0;
        for (t1 = t0; !done; t1 = t2) {
            done = cc_engine_at_risk_step(e, q, CC_AT_RISK_STEP);
            t2 = now_s();
            if (t2 - t1 > step[i])
                step[i] = t2 - t1;
            steps++;
        }
        cc_engine_at_risk_end(e, q, &pk);
        total[i] = (now_s() - t0) * 1e3;
        step[i] *= 1e3;
    }
    if (i == 5) {
        qsort(total, 5, sizeof(total[0]), cmp_double);
        qsort(step, 5, sizeof(step[0]), cmp_double);
        printf("           at_risk query (the 10 soonest, every queue) over "
               "%llu conversations: %.1f ms in %u steps, the longest %.2f "
               "ms (medians of 5)\n",
               (unsigned long long)convs, total[2], steps, step[2]);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ---- 1. decode + engine ---------------------------------------------- */

/* Profiling the timed run only: with CC_BENCH_PERF_CTL naming perf's
 * control FIFO (perf record -D -1 --control fifo:PATH), the bench enables
 * the recording for the timed run and disables it after. */
static void
perf_ctl(const char *cmd) {
    const char *path = getenv("CC_BENCH_PERF_CTL");
    FILE *f;

    if (path == NULL || (f = fopen(path, "w")) == NULL)
        return;
    fprintf(f, "%s\n", cmd);
    fclose(f);
}

/* One-event messages go to the engine in groups of up to BENCH_GROUP, as
 * the daemon's receive thread hands them over; batches one message per
 * call. The clock moves 1 ms every 64 messages. */
#define BENCH_GROUP 64

static void
feed(struct cc_engine *e, const struct lg_msgs *msgs, size_t group,
     uint64_t *now, struct cc_ingest_report *reps) {
    struct cc_msgbuf bufs[BENCH_GROUP];
    size_t i, k, n;

    for (i = 0; i < msgs->n; i += group) {
        n = msgs->n - i < group ? msgs->n - i : group;
        for (k = 0; k < n; k++) {
            bufs[k].data = msgs->data + msgs->off[i + k];
            bufs[k].len = msgs->off[i + k + 1] - msgs->off[i + k];
        }
        cc_engine_ingest_many(e, bufs, (uint32_t)n, *now, reps);
        if ((i & 63) == 0) {
            (*now)++;
            cc_engine_tick(e, *now);
            cc_outbox_clear(cc_engine_outbox(e));
        }
    }
}

/* The daemon refills its memory reserve on libuv's thread pool after a
 * batch that used it; here a thread polls for the same. */
struct refiller {
    pthread_t thread;
    atomic_int stop;
};

static void *
refill_main(void *arg) {
    struct refiller *r = arg;

    while (!atomic_load(&r->stop)) {
        if (cc_mem_reserve_wanted())
            (void)cc_mem_reserve_fill();
        else
            usleep(200);
    }
    return NULL;
}

static double
thread_cpu_s(pthread_t t) {
    clockid_t id;
    struct timespec ts;

    if (pthread_getcpuclockid(t, &id) != 0 || clock_gettime(id, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Engine memory: what the process holds less the reserve's idle pages,
 * read once the reserve is full (no page half way in). */
static uint64_t
engine_bytes(void) {
    struct cc_mem_reserve_stats r;

    for (;;) {
        cc_mem_reserve_stats(&r);
        if (r.held >= r.target)
            return r.bytes_outside;
        usleep(1000);
    }
}

/* The timed run's feed under its own name, so that a profiler can count
 * it alone (valgrind --toggle-collect=feed_timed) while the warm-up still
 * fills the simulated caches. */
static __attribute__((noinline)) void
feed_timed(struct cc_engine *e, const struct lg_msgs *msgs, size_t group,
           uint64_t *now, struct cc_ingest_report *reps) {
#ifdef CC_STAGE_PROFILE
    cc_stageprof_reset();
#endif
    feed(e, msgs, group, now, reps);
}

static void
bench_engine(uint32_t contacts, uint64_t customers, int anonymous,
             uint64_t events, uint32_t only_batch, uint64_t dedup,
             unsigned reserve, int no_sla) {
    static struct cc_config sla_off;
    static struct cc_ingest_report reps[BENCH_GROUP];
    size_t group;
    double tc;
    static const uint32_t batches[] = {1, 100};
    struct cc_engine_config cfg;
    struct cc_engine *e;
    struct cc_engine_counts ec;
    struct cc_mem_stats m1, m2;
    struct cc_mem_reserve_stats r1, r2;
    struct refiller rf;
    uint64_t b0, b1;
    double trf;
    struct loadgen g;
    struct lg_msgs prefill, run;
    size_t i, b;
    double t;
    uint64_t now;

    printf("\n== decode + engine, no sockets (%u contacts in flight, ",
           contacts);
    if (anonymous)
        printf("no customers named)\n");
    else if (customers != 0)
        printf("%llu customers)\n", (unsigned long long)customers);
    else
        printf("every customer new)\n");
    for (b = 0; b < CC_ARRAY_SIZE(batches); b++) {
        if (only_batch != 0 && batches[b] != only_batch)
            continue;
        cc_engine_config_defaults(&cfg);
        cfg.max_contacts = contacts * 2;
        /* Identity and conversation limits sized to the load, no larger
         * (their tables are sized by them): each customer has at most four
         * identifiers (phone plus email, chat id, social handle) and one
         * conversation at a time, kept past resolution. At 1M customers
         * these are the defaults. With no population, every contact may
         * bring a new customer: at most one per four events. */
        {
            uint64_t pop =
                customers != 0
                    ? customers
                    : (uint64_t)(contacts + contacts / 5) +
                          ((contacts + contacts / 5) * 4ULL + events) / 4;
            if (pop * 4 > cfg.max_identities)
                cfg.max_identities = pop * 4;
            if (pop * 2 > cfg.max_conversations)
                cfg.max_conversations = pop * 2;
        }
        cfg.hold_long_ms = 600000;
        /* The offer rules as before callbacks had more than the waited
         * one: the bench's callers join queues thousands deep, and an
         * offer at every join would measure the trigger socket. */
        cfg.cb.def.v[CC_CB_WAIT_OVER] = 0;
        cfg.cb.def.v[CC_CB_POSITION_OVER] = 0;
        if (no_sla) {
            char err[256];
            cc_config_defaults(&sla_off);
            if (cc_config_load_string(&sla_off,
                                      "[sla.any]\nanswer = off\nhold = off\n"
                                      "first_response = off\n"
                                      "next_response = off\n"
                                      "resolution = off\n",
                                      "no-sla", err, sizeof(err)) != 0) {
                printf("engine: %s\n", err);
                exit(1);
            }
            cfg.sla = &sla_off.sla;
        }
        if (dedup != 0)
            cfg.dedup_window = dedup;
        lg_init(&g, contacts + contacts / 5, customers, 42, T0);
        g.anonymous = anonymous;
        /* Untimed warm-up: every slot is touched with probability
         * 1 - e^-4, so about `contacts` contacts are open. */
        lg_messages(&g, (contacts + contacts / 5) * 4ULL, batches[b], &prefill);
        lg_messages(&g, events, batches[b], &run);

        {
            /* Decoding alone, for the share of the engine figure it
             * takes. */
            struct cc_msg_iter it;
            struct cc_event ev;
            struct cc_reject rj;
            const char *err;
            uint64_t nev = 0;

            t = now_s();
            for (i = 0; i < run.n; i++) {
                if (cc_msg_open(&it, run.data + run.off[i],
                                run.off[i + 1] - run.off[i], &err) != 0)
                    continue;
                while (cc_msg_next(&it, &cfg.channels, &ev, &rj) >= 0)
                    nev++;
            }
            t = now_s() - t;
            printf("batch %3u: decode only %10.0f events/s  %6.0f ns/event\n",
                   batches[b], (double)nev / t, t * 1e9 / (double)nev);
        }
        cc_mem_reserve_target(reserve);
        atomic_init(&rf.stop, 0);
        if (reserve != 0 &&
            pthread_create(&rf.thread, NULL, refill_main, &rf) != 0) {
            printf("engine: cannot start the reserve thread\n");
            exit(1);
        }
        b0 = engine_bytes();
        if (cc_engine_new(&e, &cfg, (uint64_t)T0) != 0) {
            printf("engine: out of memory\n");
            exit(1);
        }
        now = (uint64_t)T0;
        group = batches[b] == 1 ? BENCH_GROUP : 1;
        feed(e, &prefill, group, &now, reps);
        cc_engine_counts(e, &ec);
        cc_mem_stats(&m1);
        cc_mem_reserve_stats(&r1);
        b1 = engine_bytes();
        trf = reserve != 0 ? thread_cpu_s(rf.thread) : 0;
        perf_ctl("enable");
        t = now_s();
        tc = cpu_s();
        feed_timed(e, &run, group, &now, reps);
        tc = cpu_s() - tc;
        t = now_s() - t;
        perf_ctl("disable");
        cc_mem_stats(&m2);
        cc_mem_reserve_stats(&r2);
        if (reserve != 0)
            trf = thread_cpu_s(rf.thread) - trf;
        {
            struct cc_engine_counts ec2;
            cc_engine_counts(e, &ec2);
            printf("batch %3u: %10.0f events/s  %6.0f ns/event  "
                   "(%llu events, %llu rejected, %.2fs; CPU time %.0f "
                   "ns/event)\n",
                   batches[b], (double)events / t, t * 1e9 / (double)events,
                   (unsigned long long)events,
                   (unsigned long long)(ec2.rejected - ec.rejected), t,
                   tc * 1e9 / (double)events);
#ifdef CC_STAGE_PROFILE
            {
                int k;
                printf("           cycles per event by stage (time-stamp "
                       "counter):");
                for (k = 0; k < CC_SP__COUNT; k++)
                    printf(" %s %.0f", cc_stageprof_name(k),
                           (double)cc_sp_ticks[k] / (double)events);
                printf("\n");
            }
#endif
            if (ec2.identity_lost != 0 || ec2.conversations_refused != 0)
                printf("           WARNING: limits reached, the load is not "
                       "the one intended: %llu events lost their identity, "
                       "%llu conversations refused\n",
                       (unsigned long long)ec2.identity_lost,
                       (unsigned long long)ec2.conversations_refused);
            {
                /* Measured at once, while the engine's memory is held:
                 * the machine's latency of the minute. */
                struct memlat ml;
                if (memlat_measure((size_t)512 << 20, &ml) == 0)
                    printf("           memory baseline (now, 512 MiB): a "
                           "random line %.0f ns, %.0f ns/line with 8 in "
                           "flight; the engine took %.1f dependent line "
                           "latencies per event\n",
                           ml.dependent_ns, ml.parallel_ns,
                           t * 1e9 / (double)events / ml.dependent_ns);
            }
            printf("           alerts and triggers in the timed run: %.3f "
                   "per event\n",
                   (double)(ec2.alerts + ec2.callbacks - ec.alerts -
                            ec.callbacks) /
                       (double)events);
            printf("           open contacts %llu; allocations in the timed "
                   "run: %llu (%.6f per event)\n",
                   (unsigned long long)ec2.open_contacts,
                   (unsigned long long)(m2.allocs - m1.allocs),
                   (double)(m2.allocs - m1.allocs) / (double)events);
            if (reserve != 0)
                printf("           pool chunks in the timed run: %llu from "
                       "the reserve, %llu faulted in on the spot; the "
                       "reserve thread's CPU time %.1f ms\n",
                       (unsigned long long)(r2.taken - r1.taken),
                       (unsigned long long)(r2.missed - r1.missed), trf * 1e3);
            if (b == 0)
                printf("           memory: %.0f bytes per open contact "
                       "(all engine memory incl. table and id window / "
                       "open), %.0f in contact records\n",
                       (double)(b1 - b0) / (double)ec.open_contacts,
                       (double)ec.contact_bytes / (double)ec.open_contacts);
            if (b == 0 && ec.conversations != 0)
                printf("           identity and conversations: %llu "
                       "customers, %llu identifiers, %llu conversations "
                       "(%llu open); "
                       "%.0f bytes per conversation (identity %.0f + "
                       "conversation %.0f, incl. tables and indexes)\n",
                       (unsigned long long)ec.customers,
                       (unsigned long long)ec.identifiers,
                       (unsigned long long)ec.conversations,
                       (unsigned long long)ec.conversations_open,
                       (double)(ec.identity_bytes + ec.conversation_bytes) /
                           (double)ec.conversations,
                       (double)ec.identity_bytes / (double)ec.conversations,
                       (double)ec.conversation_bytes /
                           (double)ec.conversations);
        }
        if (b == 0 && ec.conversations != 0)
            time_at_risk(e, ec.conversations);
        if (reserve != 0) {
            atomic_store(&rf.stop, 1);
            pthread_join(rf.thread, NULL);
        }
        cc_mem_reserve_release();
        cc_engine_free(e);
        for (i = 0; i < BENCH_GROUP; i++)
            cc_ingest_report_fini(&reps[i]);
        lg_msgs_free(&prefill);
        lg_msgs_free(&run);
        lg_fini(&g);
    }
}

/* ---- 2 and 3. over sockets -------------------------------------------- */

struct pusher {
    const char *addr;
    const struct lg_msgs *msgs;
    int rc;
};

static void *
push_all(void *arg) {
    struct pusher *p = arg;
    nng_socket s;
    size_t i;

    p->rc = nng_push0_open(&s);
    if (p->rc == 0)
        p->rc = nng_dial(s, p->addr, NULL, NNG_FLAG_NONBLOCK);
    for (i = 0; p->rc == 0 && i < p->msgs->n; i++)
        p->rc = nng_send(s, p->msgs->data + p->msgs->off[i],
                         p->msgs->off[i + 1] - p->msgs->off[i], 0);
    nng_msleep(200); /* let the last messages leave before closing */
    nng_close(s);
    return NULL;
}

/* Raw NNG: a PULL socket that receives and frees, nothing else. */
static double
bench_raw_nng(const struct lg_msgs *msgs) {
    char addr[64];
    nng_socket pull;
    pthread_t th;
    struct pusher p;
    nng_msg *m;
    size_t i;
    double t;

    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%d", free_port());
    nng_pull0_open(&pull);
    nng_socket_set_size(pull, NNG_OPT_RECVMAXSZ, 1 << 20);
    if (nng_listen(pull, addr, NULL, 0) != 0)
        return 0;
    p.addr = addr;
    p.msgs = msgs;
    t = now_s();
    pthread_create(&th, NULL, push_all, &p);
    for (i = 0; i < msgs->n; i++) {
        if (nng_recvmsg(pull, &m, 0) != 0)
            break;
        nng_msg_free(m);
    }
    t = now_s() - t;
    pthread_join(th, NULL);
    nng_close(pull);
    return (double)msgs->n / t;
}

/* Starts contactd, pushes every message, waits until all are applied. */
static double
bench_daemon(const char *bin, const char *io, const struct lg_msgs *msgs) {
    char conf[64], ingest[64], query[64];
    pthread_t th;
    struct pusher p;
    pid_t pid;
    FILE *f;
    double t, rate = 0;

    snprintf(conf, sizeof(conf), "/tmp/cc-bench-%d.conf", (int)getpid());
    snprintf(ingest, sizeof(ingest), "tcp://127.0.0.1:%d", free_port());
    snprintf(query, sizeof(query), "tcp://127.0.0.1:%d", free_port());
    f = fopen(conf, "w");
    fprintf(f,
            "[server]\ningest = %s\nquery = %s\ningest_ack = "
            "tcp://127.0.0.1:%d\nalerts = tcp://127.0.0.1:%d\n"
            "callbacks = tcp://127.0.0.1:%d\ningest_io = %s\n"
            "log_level = error\n[hold]\nlong = 1h\n"
            /* No journal: the engine and sockets alone (cc_durabench
             * measures the journal). */
            "[durability]\ndir =\n",
            ingest, query, free_port(), free_port(), free_port(), io);
    fclose(f);
    pid = start_contactd(bin, conf, query);
    p.addr = ingest;
    p.msgs = msgs;
    t = now_s();
    pthread_create(&th, NULL, push_all, &p);
    for (;;) {
        int64_t done = stats_done(query);
        if (done >= (int64_t)msgs->events) {
            rate = (double)msgs->events / (now_s() - t);
            break;
        }
        if (now_s() - t > 120) {
            fprintf(stderr, "contactd applied only %lld of %llu events\n",
                    (long long)done, (unsigned long long)msgs->events);
            break;
        }
        nng_msleep(5);
    }
    pthread_join(th, NULL);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(conf);
    return rate;
}

int
main(int argc, char **argv) {
    uint32_t contacts = 1000000;
    uint64_t customers = UINT64_MAX;
    uint64_t events = 2000000, msgs1 = 100000;
    const char *only = NULL;
    uint32_t only_batch = 0;
    uint64_t dedup = 0;
    unsigned reserve = 8;
    int no_sla = 0;
    uint64_t clocks = 1000000, clock_rate = 200000;
    int i, anonymous = 0;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--contacts") && i + 1 < argc)
            contacts = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--customers") && i + 1 < argc)
            customers = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            events = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--msgs1") && i + 1 < argc)
            msgs1 = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            only_batch = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dedup") && i + 1 < argc)
            dedup = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--anonymous"))
            anonymous = 1;
        else if (!strcmp(argv[i], "--no-sla"))
            no_sla = 1;
        else if (!strcmp(argv[i], "--reserve") && i + 1 < argc)
            reserve = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--clocks") && i + 1 < argc)
            clocks = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--clock-rate") && i + 1 < argc)
            clock_rate = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: cc_bench [--contacts N] [--customers N] "
                            "[--events N] [--msgs1 N] [--only engine|nng] "
                            "[--batch 1|100] [--dedup N] [--anonymous] "
                            "[--reserve PAGES] [--no-sla] [--only sla] "
                            "[--clocks N] [--clock-rate N] [--only memory]\n");
            return 2;
        }
    }
    if (customers == UINT64_MAX)
        customers = contacts;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (only != NULL && !strcmp(only, "sla")) {
        if (clocks == 0 || clock_rate == 0) {
            fprintf(stderr, "--clocks and --clock-rate must be positive\n");
            return 2;
        }
        bench_sla(CONTACTD_BIN, clocks, clock_rate);
        return 0;
    }
    if (only != NULL && !strcmp(only, "memory")) {
        memlat_report();
        return 0;
    }
    if (only == NULL || !strcmp(only, "engine"))
        bench_engine(contacts, customers, anonymous, events, only_batch, dedup,
                     reserve, no_sla);
    if (only == NULL || !strcmp(only, "nng")) {
        static const uint32_t batches[] = {1, 100};
        size_t b;
        printf("\n== over TCP loopback: raw NNG push/pull vs contactd "
               "(same messages)\n");
        for (b = 0; b < 2; b++) {
            struct loadgen g;
            struct lg_msgs msgs;
            double raw, thr, pol;
            uint64_t n = batches[b] == 1 ? msgs1 : events;
            if (only_batch != 0 && batches[b] != only_batch)
                continue;
            /* Event times near the daemon's clock, so that its timed rules
             * behave as in production rather than all being overdue. */
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            lg_init(&g, 10000, 10000, 7, (int64_t)wall.tv_sec * 1000);
            g.anonymous = anonymous;
            lg_messages(&g, n, batches[b], &msgs);
            raw = bench_raw_nng(&msgs);
            thr = bench_daemon(CONTACTD_BIN, "thread", &msgs);
            pol = bench_daemon(CONTACTD_BIN, "poll", &msgs);
            printf("batch %3u (%zu msgs, %.0f B/msg): raw NNG %9.0f msgs/s "
                   "= %10.0f events/s\n",
                   batches[b], msgs.n, (double)msgs.off[msgs.n] / msgs.n, raw,
                   raw * batches[b]);
            printf("          contactd ingest_io=thread %10.0f events/s "
                   "(%.0f%% of raw)\n",
                   thr, 100.0 * thr / (raw * batches[b]));
            printf("          contactd ingest_io=poll   %10.0f events/s "
                   "(%.0f%% of raw)\n",
                   pol, 100.0 * pol / (raw * batches[b]));
            lg_msgs_free(&msgs);
            lg_fini(&g);
        }
    }
    return 0;
}
