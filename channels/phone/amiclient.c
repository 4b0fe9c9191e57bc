/*
 * The AMI client: one TCP session to Asterisk on the loop, with its login,
 * keepalive and reconnection. See ami.h.
 *
 * The session goes WAIT (backoff) -> RESOLVING -> CONNECTING -> LOGIN ->
 * UP, and back to WAIT through DROPPING (the socket closing) whenever
 * anything fails: a refused or timed-out connect (the next resolved
 * address is tried first), a refused login, a read or write error, the
 * server closing, or silence past the keepalive. One timer serves the
 * backoff, the connect and login timeouts and the keepalive, since only
 * one of them is due in any state; a second one fires the queue leaves
 * that waited their grace (ami.c, on_leave()).
 *
 * After each login the client asks for QueueStatus, so that the members'
 * states are current again, and, when its call table is not empty,
 * CoreShowChannels: the calls not listed ended while the session was down
 * and are closed (cc_ami_map_sweep_begin()).
 */
#include "ami.h"

#include "log.h"
#include "mem.h"
#include "outbox.h"

#include <inttypes.h>

#define MAX_ADDRS 8
#define READ_BUF (64 * 1024)
#define BATCH_MAX 512 /* events per submission */
/* Actions waiting to be written: past this, Asterisk is not reading. */
#define WRITE_QUEUE_MAX ((size_t)1 << 20)
#define ACTION_MAX 1024

enum cstate {
    S_IDLE,       /* not started */
    S_WAIT,       /* backoff before the next attempt */
    S_RESOLVING,  /* uv_getaddrinfo */
    S_CONNECTING, /* uv_tcp_connect */
    S_LOGIN,      /* Login sent, its response awaited */
    S_UP,         /* logged in: events flow */
    S_DROPPING,   /* the socket is closing; then WAIT */
    S_CLOSED      /* cc_ami_client_close() */
};

struct cc_ami_client {
    uv_loop_t *loop;
    struct cc_ami_config cfg;
    struct cc_adapter_host host;
    struct cc_adapter_stats st;
    struct cc_ami_parser *parser;
    struct cc_ami_map *map;
    struct cc_evbuf eb;
    enum cstate state;
    uv_tcp_t tcp;
    bool tcp_live; /* initialised and its close callback not yet run */
    bool try_next; /* the connect failed: try the next address */
    bool greeted;  /* this connection's greeting was logged */
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    bool gai_busy;
    uv_timer_t timer;
    uv_timer_t flush;
    struct sockaddr_storage addr[MAX_ADDRS];
    uint32_t naddr, next_addr;
    uint32_t attempt; /* failures since the last login */
    uint64_t last_rx; /* uv_now() when bytes last came */
    bool ping_out;
    uint64_t seq;
    char login_id[32], ping_id[32], sweep_id[32];
    bool ami1; /* the greeting said AMI 1.x */
    uint64_t logins, login_failures, keepalive_timeouts;
    uint64_t withdrawals, withdraw_skipped;
    uint64_t rng;
    struct cc_ratelimit rl;
    bool closing;
    uint32_t closes; /* close callbacks awaited */
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[READ_BUF];
};

/* One write in flight; freed by its callback. */
struct wreq {
    uv_write_t req;
    struct cc_ami_client *c;
    size_t len;
    char data[];
};

static void connect_begin(struct cc_ami_client *c);
static void timer_cb(uv_timer_t *t);

static uint64_t
host_now(const struct cc_ami_client *c) {
    return c->host.now(c->host.ctx);
}

static bool
has_line_break(const char *s, size_t n) {
    return memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL;
}

/* ---- submitting ---------------------------------------------------------- */

static void
submit(struct cc_ami_client *c) {
    struct cc_submit r;
    const void *msg;
    size_t len;

    if (c->eb.n == 0)
        return;
    msg = cc_evbuf_msg(&c->eb, &len);
    c->host.submit(c->host.ctx, msg, len, &r);
    cc_adapter_count_submit(&c->st, &r);
    if (r.error != NULL) {
        if (cc_ratelimit_ok(&c->rl, host_now(c)))
            cc_log_warn("ami: a batch of %u events was refused: %s", c->eb.n,
                        r.error);
    } else if (r.rejected != 0 && cc_ratelimit_ok(&c->rl, host_now(c))) {
        cc_log_warn("ami: %u of %u events refused; the first (%s): %s",
                    r.rejected, r.events,
                    r.first_code != NULL ? r.first_code : "?", r.first_reason);
    }
    cc_evbuf_reset(&c->eb);
}

static void flush_cb(uv_timer_t *t);

/* Arms the flush timer for the next queue leave due, if any. */
static void
arm_flush(struct cc_ami_client *c) {
    uint64_t due = cc_ami_map_next_flush(c->map), now;

    if (c->closing)
        return;
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->flush);
        return;
    }
    now = host_now(c);
    uv_timer_start(&c->flush, flush_cb, due > now ? due - now : 0, 0);
}

static void
flush_cb(uv_timer_t *t) {
    struct cc_ami_client *c = t->data;

    cc_ami_map_flush(c->map, host_now(c), &c->eb);
    submit(c);
    arm_flush(c);
}

/* ---- the connection ------------------------------------------------------ */

static uint64_t
rng_next(struct cc_ami_client *c) {
    /* xorshift64: jitter only, nothing to guess. */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* The next delay: reconnect_min doubled per failure since the last login,
 * at most reconnect_max, then drawn in its upper half so that clients
 * restarted together do not come back together. */
static uint64_t
backoff(struct cc_ami_client *c) {
    uint64_t d = c->cfg.reconnect_min_ms, max = c->cfg.reconnect_max_ms;
    uint32_t i;

    if (max < d)
        max = d;
    for (i = 0; i < c->attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (c->attempt < 64)
        c->attempt++;
    return d / 2 + rng_next(c) % (d - d / 2 + 1);
}

static void
schedule_reconnect(struct cc_ami_client *c) {
    uint64_t d = backoff(c);

    /* Resolve afresh: addresses may have changed meanwhile. */
    c->next_addr = c->naddr;
    c->st.reconnects++;
    c->state = S_WAIT;
    cc_log_info("ami: reconnecting to %s:%" PRIu64 " in %" PRIu64 " ms",
                c->cfg.host, c->cfg.port, d);
    uv_timer_start(&c->timer, timer_cb, d, 0);
}

static void tcp_closed_cb(uv_handle_t *h);

static void
close_step(struct cc_ami_client *c) {
    CC_ASSERT(c->closes > 0);
    if (--c->closes == 0 && c->done != NULL)
        c->done(c->done_arg);
}

/* Closes the socket; its close callback tries again. why NULL: the cause
 * was logged already. */
static void
drop_conn(struct cc_ami_client *c, const char *why) {
    if (!c->tcp_live || c->state == S_DROPPING || c->closing)
        return;
    if (why != NULL)
        cc_log_warn("ami: connection to %s:%" PRIu64 " dropped: %s",
                    c->cfg.host, c->cfg.port, why);
    c->state = S_DROPPING;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
}

static void
tcp_closed_cb(uv_handle_t *h) {
    struct cc_ami_client *c = CC_CONTAINER_OF(h, struct cc_ami_client, tcp);

    c->tcp_live = false;
    if (c->closing) {
        close_step(c);
        return;
    }
    if (c->try_next && c->next_addr < c->naddr) {
        c->try_next = false;
        c->state = S_WAIT;
        uv_timer_start(&c->timer, timer_cb, 0, 0);
        return;
    }
    c->try_next = false;
    schedule_reconnect(c);
}

static void
write_cb(uv_write_t *req, int status) {
    struct wreq *w = CC_CONTAINER_OF(req, struct wreq, req);
    struct cc_ami_client *c = w->c;

    /* The Login's copy holds the secret. */
    memset(w->data, 0, w->len);
    cc_free(w, sizeof(*w) + w->len);
    if (status < 0 && status != UV_ECANCELED)
        drop_conn(c, uv_strerror(status));
}

/* Writes one action. Returns 0, or CC_EIO (the connection is dropped) or
 * CC_ESTATE (not connected). */
static int
send_action(struct cc_ami_client *c, const char *text, size_t n) {
    struct wreq *w;
    uv_buf_t buf;
    int rc;

    if (!c->tcp_live || (c->state != S_LOGIN && c->state != S_UP))
        return CC_ESTATE;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
        WRITE_QUEUE_MAX) {
        drop_conn(c, "Asterisk does not read what is sent");
        return CC_EIO;
    }
    w = cc_malloc(sizeof(*w) + n);
    if (w == NULL) {
        drop_conn(c, "out of memory");
        return CC_EIO;
    }
    w->c = c;
    w->len = n;
    memcpy(w->data, text, n);
    buf = uv_buf_init(w->data, (unsigned int)n);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb);
    if (rc != 0) {
        cc_free(w, sizeof(*w) + n);
        drop_conn(c, uv_strerror(rc));
        return CC_EIO;
    }
    return 0;
}

static void
send_login(struct cc_ami_client *c) {
    char buf[ACTION_MAX];
    int n;

    snprintf(c->login_id, sizeof(c->login_id), "cc-login-%" PRIu64, ++c->seq);
    n = snprintf(buf, sizeof(buf),
                 "Action: Login\r\nActionID: %s\r\nUsername: %s\r\n"
                 "Secret: %s\r\nEvents: on\r\n\r\n",
                 c->login_id, c->cfg.username, c->cfg.secret);
    /* Bounded: two names of CC_TEXT_MAX bytes and fixed text. */
    CC_ASSERT(n > 0 && (size_t)n < sizeof(buf));
    send_action(c, buf, (size_t)n);
    /* The secret leaves the stack with the action. */
    memset(buf, 0, sizeof(buf));
}

static void
send_ping(struct cc_ami_client *c) {
    char buf[96];
    int n;

    snprintf(c->ping_id, sizeof(c->ping_id), "cc-ping-%" PRIu64, ++c->seq);
    n = snprintf(buf, sizeof(buf), "Action: Ping\r\nActionID: %s\r\n\r\n",
                 c->ping_id);
    send_action(c, buf, (size_t)n);
}

/* Asks for every queue member's state: after a (re)connection, agent
 * states changed meanwhile would otherwise stay stale. */
static void
send_queue_status(struct cc_ami_client *c) {
    char buf[96];
    int n = snprintf(
        buf, sizeof(buf),
        "Action: QueueStatus\r\nActionID: cc-qs-%" PRIu64 "\r\n\r\n", ++c->seq);

    send_action(c, buf, (size_t)n);
}

/* After a reconnection, asks for the channels alive: the calls of the
 * table that are not among them ended while the session was down. */
static void
send_sweep(struct cc_ami_client *c) {
    struct cc_ami_map_stats ms;
    char buf[96];
    int n;

    cc_ami_map_stats(c->map, &ms);
    /* AMI 1.x lists channels without Linkedid, the calls' key. */
    if (ms.calls == 0 || c->ami1)
        return;
    snprintf(c->sweep_id, sizeof(c->sweep_id), "cc-sweep-%" PRIu64, ++c->seq);
    n = snprintf(buf, sizeof(buf),
                 "Action: CoreShowChannels\r\nActionID: %s\r\n\r\n",
                 c->sweep_id);
    if (send_action(c, buf, (size_t)n) == 0)
        cc_ami_map_sweep_begin(c->map);
}

static void
keepalive(struct cc_ami_client *c) {
    uint64_t now = uv_now(c->loop), k = c->cfg.keepalive_ms;
    uint64_t idle = now - c->last_rx;

    if (idle < k) {
        uv_timer_start(&c->timer, timer_cb, k - idle, 0);
        return;
    }
    if (c->state == S_UP && !c->ping_out) {
        c->ping_out = true;
        send_ping(c);
        if (c->state == S_UP)
            uv_timer_start(&c->timer, timer_cb, k, 0);
        return;
    }
    c->keepalive_timeouts++;
    drop_conn(c, c->state == S_LOGIN ? "no answer to the login"
                                     : "no answer to a Ping");
}

static void
timer_cb(uv_timer_t *t) {
    struct cc_ami_client *c = t->data;

    switch (c->state) {
    case S_WAIT:
        connect_begin(c);
        break;
    case S_CONNECTING:
        c->try_next = true;
        drop_conn(c, "connect timed out");
        break;
    case S_LOGIN:
    case S_UP:
        keepalive(c);
        break;
    default:
        break;
    }
}

static void
login_result(struct cc_ami_client *c, const struct cc_ami_msg *msg,
             struct cc_str resp) {
    struct cc_str why = {"", 0};

    if (cc_ami_is(resp, "Success")) {
        c->state = S_UP;
        c->logins++;
        c->attempt = 0;
        cc_log_info("ami: logged in to %s:%" PRIu64 " as %s", c->cfg.host,
                    c->cfg.port, c->cfg.username);
        send_queue_status(c);
        send_sweep(c);
        return;
    }
    c->login_failures++;
    cc_ami_get(msg, "Message", &why);
    cc_log_warn("ami: login to %s:%" PRIu64 " as %s refused: %.*s", c->cfg.host,
                c->cfg.port, c->cfg.username, (int)why.n, why.p);
    drop_conn(c, NULL);
}

static bool
id_is(struct cc_str id, const char *want) {
    return want[0] != '\0' && cc_str_eq(id, want);
}

static void
on_message(struct cc_ami_client *c, const struct cc_ami_msg *msg,
           uint64_t now) {
    struct cc_str resp, ev, id = {"", 0}, why = {"", 0};
    uint32_t n;

    if (cc_ami_get(msg, "Response", &resp)) {
        cc_ami_get(msg, "ActionID", &id);
        /* A proxy may drop the ActionID: while logging in, a response
         * without one is the login's. */
        if (c->state == S_LOGIN && (id.n == 0 || id_is(id, c->login_id))) {
            login_result(c, msg, resp);
        } else if (id_is(id, c->ping_id)) {
            c->ping_out = false;
        } else if (id.n > 6 && memcmp(id.p, "cc-wd-", 6) == 0 &&
                   !cc_ami_is(resp, "Success")) {
            cc_ami_get(msg, "Message", &why);
            cc_log_warn("ami: QueueWithdrawCaller refused: %.*s", (int)why.n,
                        why.p);
        } else if (id_is(id, c->sweep_id) && !cc_ami_is(resp, "Success")) {
            cc_ami_get(msg, "Message", &why);
            cc_log_warn("ami: CoreShowChannels refused (%.*s): calls that "
                        "ended while disconnected stay open until they "
                        "expire",
                        (int)why.n, why.p);
            c->sweep_id[0] = '\0';
        }
    }
    cc_ami_map_msg(c->map, msg, now, &c->eb, &c->st);
    if (c->sweep_id[0] != '\0' && cc_ami_get(msg, "Event", &ev) &&
        cc_ami_is(ev, "CoreShowChannelsComplete") &&
        cc_ami_get(msg, "ActionID", &id) && id_is(id, c->sweep_id)) {
        c->sweep_id[0] = '\0';
        n = cc_ami_map_sweep_end(c->map, now, &c->eb);
        if (n != 0)
            cc_log_info("ami: %u calls ended while disconnected: closed", n);
    }
}

/* Logs the server's greeting once per connection; AMI 1.x is Asterisk 11
 * or older, whose queue events have other names. */
static void
greeted(struct cc_ami_client *c) {
    const char *g = cc_ami_parser_greeting(c->parser);
    const char *slash;

    if (c->greeted || g[0] == '\0')
        return;
    c->greeted = true;
    slash = strchr(g, '/');
    c->ami1 =
        slash != NULL && slash[1] >= '0' && slash[1] <= '1' && slash[2] == '.';
    if (c->ami1)
        cc_log_warn("ami: %s:%" PRIu64 " speaks %s: AMI 2 (Asterisk 12 or "
                    "later) is needed for its queue events to be mapped",
                    c->cfg.host, c->cfg.port, g);
    else
        cc_log_info("ami: connected to %s:%" PRIu64 " (%s)", c->cfg.host,
                    c->cfg.port, g);
}

static void
alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    struct cc_ami_client *c = CC_CONTAINER_OF(h, struct cc_ami_client, tcp);

    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void
read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct cc_ami_client *c = CC_CONTAINER_OF(s, struct cc_ami_client, tcp);
    const struct cc_ami_msg *msg;
    const char *data = buf->base;
    size_t len;
    uint64_t now;

    if (nread < 0) {
        drop_conn(c, nread == UV_EOF ? "closed by Asterisk"
                                     : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    c->last_rx = uv_now(c->loop);
    now = host_now(c);
    len = (size_t)nread;
    /* One read's messages go as one batch (or a few, when it is large). */
    while (len > 0 && (c->state == S_LOGIN || c->state == S_UP)) {
        size_t n = cc_ami_parser_feed(c->parser, data, len, &msg);
        data += n;
        len -= n;
        greeted(c);
        if (msg == NULL)
            continue;
        on_message(c, msg, now);
        if (c->eb.n >= BATCH_MAX)
            submit(c);
    }
    submit(c);
    arm_flush(c);
}

static void
connect_cb(uv_connect_t *req, int status) {
    struct cc_ami_client *c = CC_CONTAINER_OF(req, struct cc_ami_client, creq);
    int rc;

    if (status == UV_ECANCELED || c->closing || c->state != S_CONNECTING)
        return;
    if (status < 0) {
        cc_log_warn("ami: cannot connect to %s:%" PRIu64 ": %s", c->cfg.host,
                    c->cfg.port, uv_strerror(status));
        c->try_next = true;
        drop_conn(c, NULL);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 60);
    cc_ami_parser_reset(c->parser);
    c->greeted = false;
    c->ami1 = false;
    c->sweep_id[0] = '\0';
    c->ping_out = false;
    c->ping_id[0] = '\0';
    c->last_rx = uv_now(c->loop);
    rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc != 0) {
        drop_conn(c, uv_strerror(rc));
        return;
    }
    c->state = S_LOGIN;
    send_login(c);
    if (c->state == S_LOGIN)
        uv_timer_start(&c->timer, timer_cb, c->cfg.keepalive_ms, 0);
}

/* Connects to the next address resolved. */
static void
try_connect(struct cc_ami_client *c) {
    const struct sockaddr *sa =
        (const struct sockaddr *)&c->addr[c->next_addr++];
    int rc = uv_tcp_init(c->loop, &c->tcp);

    if (rc != 0) {
        cc_log_warn("ami: cannot make a socket: %s", uv_strerror(rc));
        schedule_reconnect(c);
        return;
    }
    c->tcp_live = true;
    c->state = S_CONNECTING;
    rc = uv_tcp_connect(&c->creq, &c->tcp, sa, connect_cb);
    if (rc != 0) {
        cc_log_warn("ami: cannot connect to %s:%" PRIu64 ": %s", c->cfg.host,
                    c->cfg.port, uv_strerror(rc));
        c->try_next = true;
        drop_conn(c, NULL);
        return;
    }
    /* A host that drops SYNs would hold the connect for minutes. */
    uv_timer_start(&c->timer, timer_cb, c->cfg.keepalive_ms, 0);
}

static void
gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    struct cc_ami_client *c = CC_CONTAINER_OF(req, struct cc_ami_client, gai);
    const struct addrinfo *ai;

    c->gai_busy = false;
    if (c->closing) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        close_step(c);
        return;
    }
    if (status < 0) {
        cc_log_warn("ami: cannot resolve %s: %s", c->cfg.host,
                    uv_strerror(status));
        schedule_reconnect(c);
        return;
    }
    c->naddr = c->next_addr = 0;
    for (ai = res; ai != NULL && c->naddr < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(c->addr[0]))
            continue;
        memcpy(&c->addr[c->naddr++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    if (c->naddr == 0) {
        cc_log_warn("ami: %s has no address", c->cfg.host);
        schedule_reconnect(c);
        return;
    }
    try_connect(c);
}

static void
connect_begin(struct cc_ami_client *c) {
    struct addrinfo hints;
    char port[16];
    int rc;

    /* The next address of the last resolution, after a failed connect. */
    if (c->next_addr < c->naddr) {
        try_connect(c);
        return;
    }
    c->naddr = c->next_addr = 0;
    if (uv_ip4_addr(c->cfg.host, (int)c->cfg.port,
                    (struct sockaddr_in *)&c->addr[0]) == 0 ||
        uv_ip6_addr(c->cfg.host, (int)c->cfg.port,
                    (struct sockaddr_in6 *)&c->addr[0]) == 0) {
        c->naddr = 1;
        try_connect(c);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%" PRIu64, c->cfg.port);
    c->state = S_RESOLVING;
    rc = uv_getaddrinfo(c->loop, &c->gai, gai_cb, c->cfg.host, port, &hints);
    if (rc != 0) {
        cc_log_warn("ami: cannot resolve %s: %s", c->cfg.host, uv_strerror(rc));
        schedule_reconnect(c);
        return;
    }
    c->gai_busy = true;
}

/* ---- the API ---------------------------------------------------------------
 */

int
cc_ami_client_new(struct cc_ami_client **out, uv_loop_t *loop,
                  const struct cc_ami_config *cfg,
                  const struct cc_adapter_host *host) {
    struct cc_ami_map_config mc;
    struct cc_ami_client *c;
    int rc;

    *out = NULL;
    if (cfg->host[0] == '\0' || cfg->port == 0 || cfg->port > 65535 ||
        cfg->keepalive_ms == 0 || cfg->reconnect_min_ms == 0 ||
        has_line_break(cfg->username, strlen(cfg->username)) ||
        has_line_break(cfg->secret, strlen(cfg->secret)))
        return CC_EINVAL;
    c = cc_calloc(1, sizeof(*c));
    if (c == NULL)
        return CC_ENOMEM;
    c->loop = loop;
    c->cfg = *cfg;
    c->host = *host;
    rc = cc_ami_parser_new(&c->parser, (size_t)cfg->max_message, 0, &c->st);
    if (rc)
        goto fail_parser;
    memset(&mc, 0, sizeof(mc));
    mc.channel = cfg->channel;
    mc.moh_as_hold = cfg->moh_as_hold != 0;
    mc.start_ms = host_now(c);
    c->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)c ^ 0x2545f4914f6cdd1dULL;
    if (c->rng == 0)
        c->rng = 1;
    mc.seed = rng_next(c);
    rc = cc_ami_map_new(&c->map, &mc);
    if (rc)
        goto fail_map;
    cc_evbuf_init(&c->eb);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->flush);
    c->timer.data = c;
    c->flush.data = c;
    c->rl.interval_ms = 10000;
    c->rl.burst = 5;
    c->state = S_IDLE;
    *out = c;
    return 0;
fail_map:
    cc_ami_parser_free(c->parser);
fail_parser:
    cc_free(c, sizeof(*c));
    return rc;
}

void
cc_ami_client_start(struct cc_ami_client *c) {
    if (c->state == S_IDLE)
        connect_begin(c);
}

void
cc_ami_client_withdraw(struct cc_ami_client *c, struct cc_str contact,
                       struct cc_str queue) {
    struct cc_str chan, q;
    char buf[ACTION_MAX];
    int rc = cc_ami_map_withdraw(c->map, contact, &chan, &q), n;

    /* The call table's queue is where Asterisk holds the caller; the
     * engine's is the same unless an event was lost. */
    if (q.n == 0)
        q = queue;
    if (rc != 0 || !c->cfg.withdraw || c->state != S_UP || chan.n == 0 ||
        q.n == 0 || q.n > 128 || has_line_break(q.p, q.n) ||
        has_line_break(chan.p, chan.n)) {
        c->withdraw_skipped++;
        cc_log_debug("ami: no QueueWithdrawCaller for %.*s (%s)",
                     (int)contact.n, contact.p,
                     rc == CC_ENOENT    ? "unknown call"
                     : rc != 0          ? "not waiting in a queue"
                     : !c->cfg.withdraw ? "withdraw_on_callback is off"
                     : c->state != S_UP ? "not connected"
                                        : "no channel name");
        return;
    }
    n = snprintf(buf, sizeof(buf),
                 "Action: QueueWithdrawCaller\r\nActionID: cc-wd-%" PRIu64
                 "\r\nQueue: %.*s\r\nCaller: %.*s\r\n\r\n",
                 ++c->seq, (int)q.n, q.p, (int)chan.n, chan.p);
    /* Bounded: a queue and a channel of at most 128 bytes each. */
    CC_ASSERT(n > 0 && (size_t)n < sizeof(buf));
    if (send_action(c, buf, (size_t)n) != 0) {
        c->withdraw_skipped++;
        return;
    }
    c->withdrawals++;
    cc_log_info("ami: withdrew %.*s from queue %.*s (callback accepted)",
                (int)chan.n, chan.p, (int)q.n, q.p);
}

static void
handle_closed_cb(uv_handle_t *h) {
    close_step(h->data);
}

void
cc_ami_client_close(struct cc_ami_client *c, void (*done)(void *arg),
                    void *arg) {
    CC_ASSERT(!c->closing);
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    c->state = S_CLOSED;
    c->closes = 1; /* held until every close below is under way */
    c->closes += 2;
    uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
    uv_close((uv_handle_t *)&c->flush, handle_closed_cb);
    if (c->tcp_live) {
        c->closes++;
        /* A socket already closing calls tcp_closed_cb() all the same. */
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
    }
    if (c->gai_busy) {
        c->closes++;
        uv_cancel((uv_req_t *)&c->gai);
    }
    close_step(c);
}

void
cc_ami_client_free(struct cc_ami_client *c) {
    if (c == NULL)
        return;
    cc_evbuf_fini(&c->eb);
    cc_ami_map_free(c->map);
    cc_ami_parser_free(c->parser);
    memset(c->cfg.secret, 0, sizeof(c->cfg.secret));
    cc_free(c, sizeof(*c));
}

const struct cc_adapter_stats *
cc_ami_client_stats(const struct cc_ami_client *c) {
    return &c->st;
}

void
cc_ami_client_pack_stats(const struct cc_ami_client *c, msgpack_packer *pk) {
    const struct cc_ami_parser_stats *ps = cc_ami_parser_stats(c->parser);
    struct cc_ami_map_stats ms;

    cc_ami_map_stats(c->map, &ms);
    cc_adapter_pack_stats(&c->st, pk, 8);
    cc_pack_str(pk, "connected");
    if (c->state == S_UP)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    cc_pack_kv_u64(pk, "logins", c->logins);
    cc_pack_kv_u64(pk, "login_failures", c->login_failures);
    cc_pack_kv_u64(pk, "keepalive_timeouts", c->keepalive_timeouts);
    cc_pack_kv_u64(pk, "withdrawals", c->withdrawals);
    cc_pack_kv_u64(pk, "withdraw_skipped", c->withdraw_skipped);
    cc_pack_str(pk, "parser");
    msgpack_pack_map(pk, 4);
    cc_pack_kv_u64(pk, "messages", ps->messages);
    cc_pack_kv_u64(pk, "greetings", ps->greetings);
    cc_pack_kv_u64(pk, "dropped_messages", ps->dropped_messages);
    cc_pack_kv_u64(pk, "dropped_lines", ps->dropped_lines);
    cc_pack_str(pk, "calls");
    msgpack_pack_map(pk, 6);
    cc_pack_kv_u64(pk, "open", ms.calls);
    cc_pack_kv_u64(pk, "swept", ms.swept_calls);
    cc_pack_kv_u64(pk, "pending_leaves", ms.pending_leaves);
    cc_pack_kv_u64(pk, "evicted", ms.evicted_calls);
    cc_pack_kv_u64(pk, "members", ms.members);
    cc_pack_kv_u64(pk, "members_evicted", ms.evicted_members);
}
