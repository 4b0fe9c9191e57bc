/*
 * cc_adapterbench: events per second through each channel adapter, each
 * beside a baseline measured in the same run.
 *
 *  ami      AMI text of queue calls (8 AMI events a call) through the
 *           framing parser alone (baseline), parser + mapper, and parser +
 *           mapper + engine.
 *  http     webhooks over loopback HTTP to the real listener and engine,
 *           one keep-alive connection: GET /health (baseline: HTTP alone),
 *           POST /events with 1 and 100 events a request, POST /chatwoot.
 *  maildir  mail files: GMime header parsing alone (baseline), then a
 *           Maildir watcher on a loop taking files from new/ to cur/
 *           through the engine.
 *
 * Usage: cc_adapterbench [--only ami|http|maildir] [--n N]
 */
#include "adapter.h"
#include "config.h"
#include "email/mail.h"
#include "engine.h"
#include "http.h"
#include "log.h"
#include "phone/ami.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define T0 1700000000000ULL

static double
now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a host over a real engine ------------------------------------------ */

struct host {
    struct cc_engine *e;
    struct cc_ingest_report rep;
    uint64_t now;
    uint64_t accepted, rejected;
    struct cc_adapter_host h;
};

static void
host_submit(void *ctx, const void *msg, size_t len, struct cc_submit *out) {
    struct host *h = ctx;

    cc_engine_ingest(h->e, msg, len, h->now, &h->rep);
    cc_submit_from_report(&h->rep, out);
    h->accepted += out->accepted + out->duplicates;
    h->rejected += out->rejected;
    cc_outbox_clear(cc_engine_outbox(h->e));
}

static uint64_t
host_now(void *ctx) {
    return ((struct host *)ctx)->now;
}

static void
host_init(struct host *h) {
    struct cc_engine_config c;

    memset(h, 0, sizeof(*h));
    cc_engine_config_defaults(&c);
    if (cc_engine_new(&h->e, &c, T0) != 0) {
        fprintf(stderr, "cannot create the engine\n");
        exit(1);
    }
    h->now = T0;
    h->h.submit = host_submit;
    h->h.now = host_now;
    h->h.ctx = h;
}

static void
host_fini(struct host *h) {
    cc_ingest_report_fini(&h->rep);
    cc_engine_free(h->e);
}

/* ---- AMI ------------------------------------------------------------- */

#define AMI_PER_CALL 8

/* n queue calls' AMI text, as Asterisk 18 writes them (fields from the
 * documented lists). */
static char *
ami_transcript(uint32_t n, size_t *len) {
    size_t cap = (size_t)n * 8000 + 64, o = 0;
    char *buf = malloc(cap);
    uint32_t i;

#define PUT(...) o += (size_t)snprintf(buf + o, cap - o, __VA_ARGS__)
    for (i = 0; i < n; i++) {
        const char *q = i % 3 == 0   ? "sales"
                        : i % 3 == 1 ? "support"
                                     : "billing";
        char chan[48], num[24], id[32];
        snprintf(chan, sizeof(chan), "PJSIP/trunk-%08x", i);
        snprintf(num, sizeof(num), "+1555%07u", i % 1000000);
        snprintf(id, sizeof(id), "1700000000.%u", i);
#define CHAN                                                                   \
    "Channel: %s\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"               \
    "CallerIDNum: %s\r\nCallerIDName: Caller\r\nConnectedLineNum: "            \
    "<unknown>\r\nConnectedLineName: <unknown>\r\nLanguage: en\r\n"            \
    "AccountCode: \r\nContext: from-trunk\r\nExten: 600\r\nPriority: 1\r\n"    \
    "Uniqueid: %s\r\nLinkedid: %s\r\n"
        PUT("Event: Newchannel\r\nPrivilege: call,all\r\n" CHAN "\r\n", chan,
            num, id, id);
        PUT("Event: QueueCallerJoin\r\nPrivilege: agent,all\r\n" CHAN
            "Queue: %s\r\nPosition: 1\r\nCount: 1\r\n\r\n",
            chan, num, id, id, q);
        PUT("Event: QueueCallerLeave\r\nPrivilege: agent,all\r\n" CHAN
            "Queue: %s\r\nPosition: 1\r\nCount: 0\r\n\r\n",
            chan, num, id, id, q);
        PUT("Event: AgentConnect\r\nPrivilege: agent,all\r\n" CHAN
            "Queue: %s\r\nMemberName: agent%u\r\nInterface: PJSIP/%u\r\n"
            "HoldTime: 12\r\nRingTime: 3\r\n\r\n",
            chan, num, id, id, q, i % 50, i % 50);
        PUT("Event: Hold\r\nPrivilege: call,all\r\n" CHAN
            "MusicClass: default\r\n\r\n",
            chan, num, id, id);
        PUT("Event: Unhold\r\nPrivilege: call,all\r\n" CHAN "\r\n", chan, num,
            id, id);
        PUT("Event: AgentComplete\r\nPrivilege: agent,all\r\n" CHAN
            "Queue: %s\r\nMemberName: agent%u\r\nInterface: PJSIP/%u\r\n"
            "HoldTime: 12\r\nTalkTime: 95\r\nReason: caller\r\n\r\n",
            chan, num, id, id, q, i % 50, i % 50);
        PUT("Event: Hangup\r\nPrivilege: call,all\r\n" CHAN
            "Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n",
            chan, num, id, id);
    }
#undef CHAN
#undef PUT
    *len = o;
    return buf;
}

/* Feeds text through a parser and a mapper (mode 1), and the engine of h
 * (mode 2); mode 0 parses only. The mapper's event ids start with
 * start_ms. Returns the seconds taken; *core counts the core events. */
static double
ami_pass(const char *text, size_t len, int mode, struct host *h,
         uint64_t start_ms, uint64_t *core) {
    struct cc_adapter_stats st;
    struct cc_ami_parser *p;
    struct cc_ami_map *m;
    struct cc_ami_map_config mc;
    const struct cc_ami_msg *msg;
    struct cc_evbuf eb;
    struct cc_submit r;
    size_t off = 0, chunk = 65536, n, used;
    const void *b;
    double t;

    memset(&st, 0, sizeof(st));
    memset(&mc, 0, sizeof(mc));
    mc.channel = "phone";
    mc.max_calls = 4096;
    mc.max_members = 1024;
    mc.leave_grace_ms = 5000;
    mc.start_ms = start_ms;
    cc_ami_parser_new(&p, 65536, 65536, &st);
    cc_ami_map_new(&m, &mc);
    cc_evbuf_init(&eb);
    *core = 0;
    t = now_s();
    while (off < len) {
        const char *d = text + off;
        size_t left;
        n = len - off < chunk ? len - off : chunk;
        left = n;
        while (left > 0) {
            used = cc_ami_parser_feed(p, d, left, &msg);
            d += used;
            left -= used;
            if (msg != NULL && mode >= 1)
                cc_ami_map_msg(m, msg, h->now, &eb, &st);
        }
        off += n;
        if (mode >= 1) {
            *core += eb.n;
            if (mode == 2 && eb.n != 0) {
                b = cc_evbuf_msg(&eb, &used);
                host_submit(h, b, used, &r);
            }
            cc_evbuf_reset(&eb);
        }
    }
    t = now_s() - t;
    cc_evbuf_fini(&eb);
    cc_ami_map_free(m);
    cc_ami_parser_free(p);
    return t;
}

/* One stage, timed. With the engine, the same calls go through it once
 * first (other event ids), untimed: a running daemon's engine has touched
 * its tables' pages long ago, and the kernel zeroing them on first touch
 * would otherwise be most of what is measured. */
static double
ami_run(const char *text, size_t len, int mode, uint64_t *core) {
    struct host h;
    double t;

    host_init(&h);
    if (mode == 2)
        ami_pass(text, len, mode, &h, T0 - 1, core);
    t = ami_pass(text, len, mode, &h, T0, core);
    if (mode == 2 && h.rejected != 0)
        fprintf(stderr, "ami: %llu events rejected by the engine\n",
                (unsigned long long)h.rejected);
    host_fini(&h);
    return t;
}

static void
bench_ami(uint32_t calls) {
    static const char *const names[] = {"parse (baseline)", "parse + map",
                                        "parse + map + engine"};
    size_t len;
    char *text = ami_transcript(calls, &len);
    uint64_t ami = (uint64_t)calls * AMI_PER_CALL, core;
    int mode;

    printf("ami: %u queue calls, %llu AMI events, %.1f MB of AMI text\n", calls,
           (unsigned long long)ami, (double)len / 1e6);
    for (mode = 0; mode < 3; mode++) {
        double t = ami_run(text, len, mode, &core);
        printf("  %-22s %10.0f AMI events/s  %7.0f ns/AMI event", names[mode],
               (double)ami / t, t * 1e9 / (double)ami);
        if (mode >= 1)
            printf("  (%llu core events)", (unsigned long long)core);
        printf("\n");
    }
    free(text);
}

/* ---- HTTP --------------------------------------------------------------- */

struct httpsrv {
    uv_loop_t loop;
    uv_async_t stop;
    struct cc_http_config cfg;
    struct cc_http *http;
    struct host h;
    uint16_t port;
    int ready;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void
http_closed(void *arg) {
    (void)arg;
}

static void
stop_cb(uv_async_t *a) {
    struct httpsrv *s = a->data;
    cc_http_close(s->http, http_closed, s);
    uv_close((uv_handle_t *)a, NULL);
}

static uint64_t
srv_now(void *ctx) {
    (void)ctx;
    return T0;
}

static void *
server_main(void *arg) {
    struct httpsrv *s = arg;
    char err[256];

    uv_loop_init(&s->loop);
    host_init(&s->h);
    s->h.h.now = srv_now;
    if (cc_http_new(&s->http, &s->loop, &s->cfg, &s->h.h, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "http: %s\n", err);
        exit(1);
    }
    s->stop.data = s;
    uv_async_init(&s->loop, &s->stop, stop_cb);
    pthread_mutex_lock(&s->mu);
    s->port = cc_http_port(s->http);
    s->ready = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    cc_http_free(s->http);
    uv_loop_close(&s->loop);
    host_fini(&s->h);
    return NULL;
}

/* One request on a keep-alive connection; returns the status. */
static int
request(int fd, const char *head, size_t hlen, const char *body, size_t blen) {
    static char buf[65536];
    size_t got = 0, need = 0;
    const char *end, *cl;
    ssize_t n;
    int status = -1;

    if (write(fd, head, hlen) != (ssize_t)hlen ||
        (blen && write(fd, body, blen) != (ssize_t)blen))
        return -1;
    for (;;) {
        n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        cl = strcasestr(buf, "Content-Length:");
        need = (size_t)(end - buf) + 4 + (cl ? strtoul(cl + 15, NULL, 10) : 0);
        if (got >= need)
            break;
    }
    sscanf(buf, "HTTP/1.1 %d", &status);
    return status;
}

/* POSTs a JSON body to path; returns the status. */
static int
post(int fd, const char *path, const char *body, size_t blen) {
    char head[256];
    size_t hlen = (size_t)snprintf(
        head, sizeof(head),
        "POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        "Content-Length: %zu\r\n\r\n",
        path, blen);

    return request(fd, head, hlen, body, blen);
}

/* The events of one request: n contacts opening and a message each. */
static size_t
events_body(char *buf, size_t cap, uint64_t *seq, uint32_t n) {
    size_t o = 0;
    uint32_t i;

    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (i = 0; i < n; i++, (*seq)++) {
        o += (size_t)snprintf(
            buf + o, cap - o,
            "%s{\"id\":\"h%llu\",\"ts\":%llu,\"channel\":\"chat\",\"type\":"
            "\"message.in\",\"contact\":\"chat-%llu\",\"customer\":{"
            "\"email\":\"c%llu@example.com\"}}",
            i ? "," : "", (unsigned long long)*seq, (unsigned long long)T0,
            (unsigned long long)(*seq / 2),
            (unsigned long long)(*seq % 200000));
    }
    o += (size_t)snprintf(buf + o, cap - o, "]");
    return o;
}

/* Chatwoot's published message_created, with new ids each time. */
#define CW_FMT                                                                 \
    "{\"event\":\"message_created\",\"id\":%llu,\"content\":\"hi\","           \
    "\"created_at\":\"2021-07-23T18:02:48.000Z\",\"message_type\":"            \
    "\"incoming\",\"content_type\":\"text\",\"private\":false,"                \
    "\"sender\":{\"id\":%llu,\"name\":\"little-haze-776\",\"email\":"          \
    "\"v%llu@example.com\",\"type\":\"contact\"},\"inbox\":{\"id\":1,"         \
    "\"name\":\"Acme Support\"},\"conversation\":{\"id\":%llu,"                \
    "\"inbox_id\":1,\"status\":\"open\"},\"account\":{\"id\":1,"               \
    "\"name\":\"Acme Inc\"}}"

static void
bench_http(uint32_t n) {
    struct httpsrv s;
    struct cc_config c;
    struct sockaddr_in sa;
    pthread_t th;
    char head[512], *body;
    size_t hlen, blen;
    uint64_t seq = 0;
    uint32_t i, batch;
    int fd, one = 1, bad = 0;
    double t;

    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    cc_config_defaults(&c);
    s.cfg = c.http;
    s.cfg.enabled = 1;
    strcpy(s.cfg.listen, "127.0.0.1:0");
    pthread_create(&th, NULL, server_main, &s);
    pthread_mutex_lock(&s.mu);
    while (!s.ready)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(s.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("connect");
        exit(1);
    }
    printf("http: one keep-alive connection over loopback, the listener and "
           "the engine on one loop thread\n");
    hlen = (size_t)snprintf(head, sizeof(head),
                            "GET /health HTTP/1.1\r\nHost: b\r\n\r\n");
    t = now_s();
    for (i = 0; i < n; i++)
        bad += request(fd, head, hlen, NULL, 0) != 200;
    t = now_s() - t;
    printf("  %-28s %9.0f requests/s %8.1f us/request\n",
           "GET /health (baseline)", n / t, t * 1e6 / n);

    body = malloc(1 << 20);
    for (batch = 1; batch <= 100; batch *= 100) {
        uint32_t reqs = batch == 1 ? n : n / 20;
        t = now_s();
        for (i = 0; i < reqs; i++) {
            blen = events_body(body, 1 << 20, &seq, batch);
            bad += post(fd, "/events", body, blen) != 200;
        }
        t = now_s() - t;
        printf(
            "  POST /events, %3u a request %9.0f events/s   %8.1f us/request "
            "(%.0f requests/s)\n",
            batch, (double)reqs * batch / t, t * 1e6 / reqs, reqs / t);
    }
    {

        t = now_s();
        for (i = 0; i < n; i++, seq++) {
            blen =
                (size_t)snprintf(body, 1 << 20, CW_FMT, (unsigned long long)seq,
                                 (unsigned long long)(seq % 100000),
                                 (unsigned long long)(seq % 100000),
                                 (unsigned long long)(seq / 3));
            bad += post(fd, "/chatwoot", body, blen) != 200;
        }
        t = now_s() - t;
        printf("  %-28s %9.0f events/s   %8.1f us/request\n", "POST /chatwoot",
               n / t, t * 1e6 / n);
    }
    if (bad != 0)
        printf("  (%d requests were not answered 200)\n", bad);
    free(body);
    close(fd);
    uv_async_send(&s.stop);
    pthread_join(th, NULL);
}

/* ---- Maildir ---------------------------------------------------------- */

#define MAIL_FMT                                                               \
    "Return-Path: <c%u@example.com>\r\n"                                       \
    "Received: from mx.example.com by mail.example.net; Tue, 14 Nov 2023 "     \
    "22:13:20 +0000\r\n"                                                       \
    "From: Customer %u <c%u@example.com>\r\n"                                  \
    "To: Support <support@example.net>\r\n"                                    \
    "Subject: =?UTF-8?B?w4RyZ2VyIG1pdCBkZXIgUmVjaG51bmc=?= %u\r\n"             \
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"                                \
    "Message-ID: <m%u.%u@example.com>\r\n"                                     \
    "MIME-Version: 1.0\r\n"                                                    \
    "Content-Type: text/plain; charset=utf-8\r\n"                              \
    "Content-Transfer-Encoding: 8bit\r\n"                                      \
    "\r\n"                                                                     \
    "Hello,\r\n\r\nmy invoice is wrong again. Please call me back.\r\n\r\n"    \
    "Regards\r\n"

static void
mail_closed(void *arg) {
    (void)arg;
}

static void
bench_maildir(uint32_t n) {
    struct cc_maildir_config mc;
    struct cc_mail_support sup;
    struct cc_maildir_counters k;
    struct cc_maildir *md;
    struct cc_config c;
    struct host h;
    struct cc_mail mail;
    uv_loop_t loop;
    char dir[] = "/tmp/cc-maildir-bench-XXXXXX", path[600], msg[2048];
    const char *why;
    uint32_t i, run = (uint32_t)time(NULL);
    size_t len;
    double t;
    FILE *f;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    cc_mail_support_parse(&sup, "support@example.net", msg, sizeof(msg));
    t = now_s();
    for (i = 0; i < n; i++) {
        len = (size_t)snprintf(msg, sizeof(msg), MAIL_FMT, i, i, i, i, run, i);
        if (cc_mail_parse(msg, len, &sup, &mail, &why) != 0) {
            fprintf(stderr, "maildir: %s\n", why);
            exit(1);
        }
    }
    t = now_s() - t;
    printf("maildir: %u messages of %zu bytes\n", n, len);
    printf("  %-34s %9.0f messages/s %8.1f us/message\n",
           "GMime header parse (baseline)", n / t, t * 1e6 / n);

    snprintf(path, sizeof(path), "%s/new", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/cur", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/tmp", dir);
    mkdir(path, 0700);
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/new/%u.%06u.bench", dir, run, i);
        f = fopen(path, "wb");
        len = (size_t)snprintf(msg, sizeof(msg), MAIL_FMT, i, i, i, i, run, i);
        fwrite(msg, 1, len, f);
        fclose(f);
    }
    cc_config_defaults(&c);
    mc = c.maildir;
    mc.enabled = 1;
    snprintf(mc.path, sizeof(mc.path), "%s", dir);
    snprintf(mc.support, sizeof(mc.support), "support@example.net");
    uv_loop_init(&loop);
    host_init(&h);
    if (cc_maildir_new(&md, &loop, &mc, &h.h, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "maildir: %s\n", msg);
        exit(1);
    }
    t = now_s();
    if (cc_maildir_start(md, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "maildir: %s\n", msg);
        exit(1);
    }
    do {
        uv_run(&loop, UV_RUN_ONCE);
        cc_maildir_counters(md, &k);
    } while (k.moved + k.quarantined < n);
    t = now_s() - t;
    printf("  %-34s %9.0f messages/s %8.1f us/message (%llu in cur/, %llu "
           "events accepted)\n",
           "new/ -> parse -> engine -> cur/", n / t, t * 1e6 / n,
           (unsigned long long)k.moved, (unsigned long long)h.accepted);
    cc_maildir_close(md, mail_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cc_maildir_free(md);
    uv_loop_close(&loop);
    host_fini(&h);
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    if (system(path) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int
main(int argc, char **argv) {
    const char *only = NULL;
    uint32_t n = 0;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(
                stderr,
                "usage: cc_adapterbench [--only ami|http|maildir] [--n N]\n");
            return 2;
        }
    }
    cc_log_set_level(CC_LOG_ERROR);
    if (only == NULL || strcmp(only, "ami") == 0)
        bench_ami(n ? n : 200000);
    if (only == NULL || strcmp(only, "http") == 0)
        bench_http(n ? n : 20000);
    if (only == NULL || strcmp(only, "maildir") == 0)
        bench_maildir(n ? n : 20000);
    return 0;
}
