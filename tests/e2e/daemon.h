/*
 * What the end-to-end tests share: starting the real contactd on loopback
 * ports picked here, asking it over its NNG sockets, and stopping it.
 */
#ifndef CC_E2E_DAEMON_H
#define CC_E2E_DAEMON_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define T0 1700000000000LL

struct daemon {
    pid_t pid;
    char conf[64];
    char data[64];    /* [durability] dir, unless the test sets its own */
    char addr[5][64]; /* ingest, ingest_ack, alerts, callbacks, query */
};

static struct daemon d;
static struct tb t;

static inline int
free_port(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static inline uint64_t
wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A subscriber to the daemon's alerts under topic prefix `prefix`, ready
 * to receive (5 s timeout). */
static inline nng_socket
subscribe_alerts(const char *prefix) {
    nng_socket sub;

    cr_assert_eq(nng_sub0_open(&sub), 0);
    cr_assert_eq(
        nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, prefix, strlen(prefix)), 0);
    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 5000);
    cr_assert_eq(nng_dial(sub, d.addr[2], NULL, 0), 0);
    nng_msleep(200); /* let the subscription reach the publisher */
    return sub;
}

/* How late an alert may arrive after its due time here. On an idle
 * machine it is a millisecond or two (bench/README.md measures it under
 * load); the margin is for the sanitizers and a busy CI host, not for the
 * daemon's timers. */
#define LATE_MS 25

/* Prepended to the config of the tests that time alerts: the journal is
 * written but not synced. With a sync, an alert also waits until the tick
 * that fired it is on disk, and a disk sometimes takes tens of milliseconds
 * for one sync (the development machine's: fdatasync 0.4 ms at the median,
 * 67 ms at worst in 400): that lateness is the disk's, not the timers'.
 * The alerts still wait for the journal's write, as in production. */
#define ALERT_TIMING_CONF "[durability]\nfsync = off\n"

static inline void
assert_on_time(uint64_t got, int64_t due, const char *what) {
    cr_log_info("%s: arrived %lld ms after its due time", what,
                (long long)((int64_t)got - due));
    cr_assert_geq(got + 2, (uint64_t)due, "%s %lld ms early", what,
                  (long long)(due - (int64_t)got));
    cr_assert_leq(got, (uint64_t)due + LATE_MS, "%s %llu ms late", what,
                  (unsigned long long)(got - (uint64_t)due));
}

/* Replies are copied here: unpacked strings point into it. */
static char reply_buf[1 << 20];

static inline int
req_once(const char *addr, const void *buf, size_t len, msgpack_unpacked *u,
         int timeout_ms) {
    nng_socket s;
    void *reply;
    size_t rlen;
    int rc;

    cr_assert_eq(nng_req0_open(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, timeout_ms);
    rc = nng_dial(s, addr, NULL, 0);
    if (rc == 0)
        rc = nng_send(s, (void *)buf, len, 0);
    if (rc == 0)
        rc = nng_recv(s, &reply, &rlen, NNG_FLAG_ALLOC);
    if (rc == 0) {
        cr_assert_leq(rlen, sizeof(reply_buf));
        memcpy(reply_buf, reply, rlen);
        nng_free(reply, rlen);
        msgpack_unpacked_init(u);
        cr_assert_eq(msgpack_unpack_next(u, reply_buf, rlen, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    }
    nng_close(s);
    return rc;
}

/* Sends the events built in t on the acknowledged ingest socket and
 * checks that `accepted` of them were accepted. */
static inline void
send_acked(int64_t accepted) {
    msgpack_unpacked u;

    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size, &u, 5000), 0);
    cr_assert_eq(tmap_int(&u.data, "accepted"), accepted);
    msgpack_unpacked_destroy(&u);
}

static inline void
query_stats(msgpack_unpacked *u) {
    struct tb q;
    tb_init(&q);
    msgpack_pack_map(&q.pk, 1);
    tb_kv_str(&q, "q", "stats");
    cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, u, 5000), 0);
    tb_fini(&q);
}

/* One figure of the stats reply, by path ("engine/contacts/open"), or -1
 * when absent. */
static inline int64_t
stat_path(const char *path) {
    msgpack_unpacked u;
    int64_t v;

    query_stats(&u);
    v = tmap_int(&u.data, path);
    msgpack_unpacked_destroy(&u);
    return v;
}

/* Writes the daemon's config file: its five addresses under [server],
 * after its own [durability] dir (unless extra sets one), then extra. */
static inline void
write_conf(const char *extra) {
    static const char *const keys[] = {"ingest", "ingest_ack", "alerts",
                                       "callbacks", "query"};
    FILE *f = fopen(d.conf, "w");
    int i;

    cr_assert_not_null(f);
    if (extra == NULL || strstr(extra, "[durability]\ndir") == NULL)
        fprintf(f, "[durability]\ndir = %s\n", d.data);
    /* [server] last: extra may go on in it. */
    fprintf(f, "[server]\n");
    for (i = 0; i < 5; i++)
        fprintf(f, "%s = %s\n", keys[i], d.addr[i]);
    fprintf(f, "%s", extra ? extra : "");
    fclose(f);
}

/* Starts contactd with the config file written and waits until its query
 * socket answers: 0, or -1 when it exited or never answered. */
static inline int
launch_daemon(void) {
    msgpack_unpacked u;
    int tries, status;

    d.pid = fork();
    cr_assert_geq(d.pid, 0);
    if (d.pid == 0) {
        /* A test that crashes must not leave its daemon running (ctest
         * would wait for it until its own timeout). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(CONTACTD_BIN, "contactd", "--config", d.conf, (char *)NULL);
        _exit(127);
    }
    for (tries = 0; tries < 100; tries++) {
        struct tb q;
        int rc;
        nng_msleep(50);
        if (waitpid(d.pid, &status, WNOHANG) == d.pid)
            return -1;
        tb_init(&q);
        msgpack_pack_map(&q.pk, 1);
        tb_kv_str(&q, "q", "stats");
        rc = req_once(d.addr[4], q.sb.data, q.sb.size, &u, 500);
        tb_fini(&q);
        if (rc == 0) {
            msgpack_unpacked_destroy(&u);
            return 0;
        }
    }
    kill(d.pid, SIGKILL);
    waitpid(d.pid, &status, 0);
    return -1;
}

/* Starts contactd on five loopback ports picked here. A port picked free
 * can be taken again before the daemon binds it (by another socket of this
 * machine, or picked twice): a daemon that exits at start is started again
 * on new ports, up to three times. */
static inline void
start_daemon(const char *extra) {
    int i, j, attempt;

    snprintf(d.conf, sizeof(d.conf), "/tmp/contactd-test-%d.conf",
             (int)getpid());
    snprintf(d.data, sizeof(d.data), "/tmp/contactd-test-%d.data",
             (int)getpid());
    remove_tree(d.data);
    for (attempt = 0; attempt < 3; attempt++) {
        int ports[5];
        for (i = 0; i < 5; i++) {
            do {
                ports[i] = free_port();
                for (j = 0; j < i && ports[j] != ports[i]; j++)
                    ;
            } while (j < i);
            snprintf(d.addr[i], sizeof(d.addr[i]), "tcp://127.0.0.1:%d",
                     ports[i]);
        }
        write_conf(extra);
        /* One that exits at once could not bind: new ports. */
        if (launch_daemon() == 0) {
            tb_init(&t);
            return;
        }
    }
    cr_assert_fail("contactd did not come up");
}

/* Starts contactd again on the same ports, config and data (after a
 * stop or a kill). */
static inline void
restart_daemon(void) {
    int attempt;

    /* A port just released may be taken for a moment. */
    for (attempt = 0; attempt < 3; attempt++) {
        if (launch_daemon() == 0)
            return;
        nng_msleep(200);
    }
    cr_assert_fail("contactd did not come up again");
}

/* SIGKILL, and wait for it. */
static inline void
kill_daemon(void) {
    kill(d.pid, SIGKILL);
    waitpid(d.pid, NULL, 0);
    d.pid = 0;
}

/* SIGTERM, then wait; returns the exit status, keeping the config and
 * the data for a restart. */
static inline int
term_daemon(void) {
    int status = -1, i;
    kill(d.pid, SIGTERM);
    for (i = 0; i < 100; i++) {
        if (waitpid(d.pid, &status, WNOHANG) == d.pid)
            break;
        nng_msleep(50);
    }
    if (i == 100) {
        kill(d.pid, SIGKILL);
        waitpid(d.pid, &status, 0);
        cr_assert_fail("contactd did not stop within 5 s of SIGTERM");
    }
    d.pid = 0;
    cr_assert(WIFEXITED(status), "contactd died by a signal");
    return WEXITSTATUS(status);
}

/* SIGTERM, then wait; returns the exit status. */
static inline int
stop_daemon(void) {
    int status = term_daemon();
    unlink(d.conf);
    remove_tree(d.data);
    tb_fini(&t);
    return status;
}

static inline void
teardown(void) {
    if (d.pid > 0 && kill(d.pid, 0) == 0) {
        kill(d.pid, SIGKILL);
        waitpid(d.pid, NULL, 0);
    }
    if (d.data[0] != '\0')
        remove_tree(d.data);
}

#endif
