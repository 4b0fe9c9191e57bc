/*
 * The webhook listener. See http.h.
 */
#include "http.h"

#include "log.h"
#include "outbox.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdlib.h>

#define NENDPOINTS 4

/* One request while its body arrives, and while its answer waits for
 * the journal (held: the connection is suspended, in the held list). */
struct request {
    struct cc_webhook *w; /* NULL: answered before the body (404, 413) */
    char *body;
    size_t len, cap;
    bool too_big;
    bool health; /* GET /health */
    bool held, ready;
    struct MHD_Connection *conn;
    struct request *next, *prev; /* the held list */
    struct cc_http_resp resp;
};

struct cc_http {
    uv_loop_t *loop;
    const struct cc_http_config *cfg;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
    uint16_t port;
    struct cc_webhook ep[NENDPOINTS];
    uint32_t nep;
    const struct cc_adapter_host *host;
    struct request held; /* list head: answers waiting for the journal */
    uint64_t nheld;
    uint64_t requests, r2xx, r4xx, r5xx, too_large, protocol_errors;
    uint64_t log_at; /* uv_now of the last library message logged */
};

/* ---- answering ------------------------------------------------------------
 */

static enum MHD_Result
answer(struct cc_http *h, struct MHD_Connection *conn,
       const struct cc_http_resp *resp) {
    struct MHD_Response *r;
    enum MHD_Result rc;
    char retry[16];

    if (resp->status < 300)
        h->r2xx++;
    else if (resp->status < 500)
        h->r4xx++;
    else
        h->r5xx++;
    r = MHD_create_response_from_buffer(resp->len, (void *)resp->body,
                                        MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO; /* out of memory: the library drops the connection */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->ctype);
    if (resp->retry_after != 0) {
        snprintf(retry, sizeof(retry), "%u", resp->retry_after);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
    rc = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result
answer_json(struct cc_http *h, struct MHD_Connection *conn, int status,
            const char *why) {
    struct cc_http_resp resp = {0};

    cc_resp_json(&resp, status, why);
    return answer(h, conn, &resp);
}

/* ---- requests ----------------------------------------------------------- */

static const char *
req_header(const struct cc_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->ctx, MHD_HEADER_KIND, name);
}

static const char *
req_arg(const struct cc_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->ctx, MHD_GET_ARGUMENT_KIND, name);
}

static struct cc_webhook *
route(struct cc_http *h, const char *url) {
    uint32_t i;

    for (i = 0; i < h->nep; i++) {
        if (strcmp(h->ep[i].path, url) == 0)
            return &h->ep[i];
    }
    return NULL;
}

/* Appends a piece of the body, up to [http] max_body. */
static void
take_body(struct cc_http *h, struct request *q, const char *data, size_t n) {
    size_t cap;
    char *p;

    if (q->too_big)
        return;
    if (n > h->cfg->max_body - q->len) {
        q->too_big = true;
        return;
    }
    if (q->len + n > q->cap) {
        cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n)
            cap *= 2;
        if (cap > h->cfg->max_body)
            cap = h->cfg->max_body;
        p = realloc(q->body, cap);
        if (p == NULL) {
            q->too_big = true; /* answered 413 as well: never half a body */
            return;
        }
        q->body = p;
        q->cap = cap;
    }
    memcpy(q->body + q->len, data, n);
    q->len += n;
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url,
          const char *method, const char *version, const char *upload_data,
          size_t *upload_size, void **con_cls) {
    struct cc_http *h = cls;
    struct request *q = *con_cls;
    struct cc_http_resp resp = {0};
    struct cc_http_req req;
    const char *cl;
    char *end;

    (void)version;
    if (q == NULL) {
        /* First call: the headers are in, the body is not. */
        h->requests++;
        q = calloc(1, sizeof(*q));
        if (q == NULL)
            return MHD_NO;
        *con_cls = q;
        /* Answered on the next call, once the request is read whole:
         * an answer before that closes the connection. */
        if (strcmp(url, "/health") == 0) {
            q->health = true;
            return MHD_YES;
        }
        q->w = route(h, url);
        if (q->w == NULL)
            return answer_json(h, conn, 404, "no such endpoint");
        q->w->st.received++;
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, &end, 10) > h->cfg->max_body) {
            h->too_large++;
            cc_adapter_reject(&q->w->st, "body too large");
            q->w = NULL;
            return answer_json(h, conn, 413,
                               "body larger than [http] max_body");
        }
        return MHD_YES;
    }
    if (*upload_size != 0) {
        if (q->w != NULL)
            take_body(h, q, upload_data, *upload_size);
        *upload_size = 0;
        if (q->too_big) {
            /* A body without Content-Length that outgrew max_body: drop
             * the connection rather than read the rest. */
            h->too_large++;
            cc_adapter_reject(&q->w->st, "body too large");
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (q->ready) {
        /* Resumed: the journal holds the request's events. */
        q->ready = false;
        return answer(h, conn, &q->resp);
    }
    if (q->health)
        return strcmp(method, "GET") == 0
                   ? answer_json(h, conn, 200, NULL)
                   : answer_json(h, conn, 405, "use GET");
    if (q->w == NULL)
        return MHD_YES; /* already answered */
    req.method = method;
    req.path = url;
    req.body = q->body != NULL ? q->body : "";
    req.len = q->len;
    req.header = req_header;
    req.arg = req_arg;
    req.ctx = conn;
    q->w->handle(q->w, &req, &resp);
    if (!cc_adapter_durable(h->host, resp.wait)) {
        /* Acknowledged only once durable: park the connection until the
         * host's journal has synced the record (cc_http_durable()). */
        q->resp = resp;
        q->conn = conn;
        q->held = true;
        q->next = &h->held;
        q->prev = h->held.prev;
        h->held.prev->next = q;
        h->held.prev = q;
        h->nheld++;
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    return answer(h, conn, &resp);
}

static void
unhold(struct cc_http *h, struct request *q) {
    q->prev->next = q->next;
    q->next->prev = q->prev;
    q->held = false;
    h->nheld--;
}

static void run(struct cc_http *h);

void
cc_http_durable(struct cc_http *h, uint64_t mark) {
    struct request *q, *next;
    bool any = false;

    for (q = h->held.next; q != &h->held; q = next) {
        next = q->next;
        if (q->resp.wait >= mark)
            continue;
        unhold(h, q);
        q->ready = true;
        MHD_resume_connection(q->conn);
        any = true;
    }
    if (any)
        run(h);
}

static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe) {
    struct request *q = *con_cls;
    struct cc_http *h = cls;

    (void)conn;
    (void)toe;
    if (q != NULL) {
        if (q->held)
            unhold(h, q);
        free(q->body);
        free(q);
        *con_cls = NULL;
    }
}

/* The library's own complaints (headers too large, a malformed request
 * line, a client gone mid-request): counted, and logged at most once a
 * second. */
static void
log_cb(void *cls, const char *fmt, va_list ap) {
    struct cc_http *h = cls;
    char msg[256];
    size_t n;

    h->protocol_errors++;
    if (h->log_at != 0 && uv_now(h->loop) - h->log_at < 1000)
        return;
    h->log_at = uv_now(h->loop);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    cc_log_warn("http: %s", msg);
}

/* ---- the loop ---------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

/* Runs the library, then arms the timer for its next timeout. */
static void
run(struct cc_http *h) {
    MHD_UNSIGNED_LONG_LONG to;

    MHD_run(h->d);
    if (MHD_get_timeout(h->d, &to) == MHD_YES)
        uv_timer_start(&h->timer, timer_cb, to, 0);
    else
        uv_timer_stop(&h->timer);
}

static void
timer_cb(uv_timer_t *t) {
    run(CC_CONTAINER_OF(t, struct cc_http, timer));
}

static void
poll_cb(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    run(CC_CONTAINER_OF(p, struct cc_http, poll));
}

/* "host:port", "[v6]:port" or ":port" (all IPv4 interfaces). */
static int
parse_listen(const char *s, struct sockaddr_storage *ss, char *err,
             size_t errlen) {
    char host[CC_TEXT_MAX];
    const char *colon = strrchr(s, ':');
    char *end;
    unsigned long port;
    size_t n;

    if (colon == NULL)
        return cc_errf(err, errlen, CC_EINVAL,
                       "[http] listen = %s: expected host:port", s);
    port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port > 65535)
        return cc_errf(err, errlen, CC_EINVAL, "[http] listen = %s: bad port",
                       s);
    n = (size_t)(colon - s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        memcpy(host, s + 1, n - 2);
        host[n - 2] = '\0';
        if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
            return 0;
    } else {
        memcpy(host, s, n);
        host[n] = '\0';
        if (uv_ip4_addr(n ? host : "0.0.0.0", (int)port,
                        (struct sockaddr_in *)ss) == 0)
            return 0;
    }
    return cc_errf(err, errlen, CC_EINVAL,
                   "[http] listen = %s: not an IP address", s);
}

int
cc_http_new(struct cc_http **out, uv_loop_t *loop,
            const struct cc_http_config *cfg,
            const struct cc_adapter_host *host, char *err, size_t errlen) {
    const union MHD_DaemonInfo *info;
    struct sockaddr_storage ss;
    struct cc_http *h;
    int rc;

    memset(&ss, 0, sizeof(ss));
    rc = parse_listen(cfg->listen, &ss, err, errlen);
    if (rc != 0)
        return rc;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return cc_errf(err, errlen, CC_ENOMEM, "out of memory");
    h->loop = loop;
    h->cfg = cfg;
    h->host = host;
    h->held.next = h->held.prev = &h->held;
    if (cfg->events)
        cc_webhook_init(&h->ep[h->nep++], "events", "/events",
                        cc_webhook_events, cfg, host);
    if (cfg->chatwoot)
        cc_webhook_init(&h->ep[h->nep++], "chatwoot", "/chatwoot",
                        cc_webhook_chatwoot, cfg, host);
    if (cfg->x)
        cc_webhook_init(&h->ep[h->nep++], "x", "/x", cc_webhook_x, cfg, host);
    if (cfg->messenger)
        cc_webhook_init(&h->ep[h->nep++], "messenger", "/messenger",
                        cc_webhook_messenger, cfg, host);
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME |
            (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, access_cb, h,
        /* first, so that every message of the library comes here */
        MHD_OPTION_EXTERNAL_LOGGER, log_cb, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->max_header, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(cfg->timeout_ms / 1000), MHD_OPTION_NOTIFY_COMPLETED,
        completed_cb, h, MHD_OPTION_END);
    if (h->d == NULL) {
        cc_http_free(h);
        return cc_errf(err, errlen, CC_EIO,
                       "[http] listen = %s: cannot listen there (in use?)",
                       cfg->listen);
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : 0;
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL || uv_poll_init(loop, &h->poll, info->epoll_fd) != 0) {
        cc_http_free(h);
        return cc_errf(err, errlen, CC_EIO, "http: cannot watch the server");
    }
    uv_timer_init(loop, &h->timer);
    h->open_handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, poll_cb);
    run(h);
    *out = h;
    return 0;
}

uint16_t
cc_http_port(const struct cc_http *h) {
    return h->port;
}

static void
closed_cb(uv_handle_t *handle) {
    struct cc_http *h = handle->data;

    if (--h->open_handles == 0) {
        if (h->d != NULL) {
            MHD_stop_daemon(h->d);
            h->d = NULL;
        }
        if (h->done != NULL)
            h->done(h->done_arg);
    }
}

void
cc_http_close(struct cc_http *h, void (*done)(void *arg), void *arg) {
    struct request *q;

    /* The library stops only with every connection resumed; an answer
     * still waiting is not sent (the sender retries, and the journal's
     * copy is a duplicate then). */
    while ((q = h->held.next) != &h->held) {
        unhold(h, q);
        MHD_resume_connection(q->conn);
    }
    h->done = done;
    h->done_arg = arg;
    h->timer.data = h;
    h->poll.data = h;
    uv_close((uv_handle_t *)&h->timer, closed_cb);
    uv_close((uv_handle_t *)&h->poll, closed_cb);
}

void
cc_http_free(struct cc_http *h) {
    uint32_t i;

    if (h == NULL)
        return;
    if (h->d != NULL)
        MHD_stop_daemon(h->d);
    for (i = 0; i < h->nep; i++)
        cc_webhook_fini(&h->ep[i]);
    free(h);
}

const struct cc_webhook *
cc_http_endpoint(const struct cc_http *h, const char *name) {
    uint32_t i;

    for (i = 0; i < h->nep; i++) {
        if (strcmp(h->ep[i].name, name) == 0)
            return &h->ep[i];
    }
    return NULL;
}

void
cc_http_pack_stats(const struct cc_http *h, msgpack_packer *pk) {
    uint32_t i;

    msgpack_pack_map(pk, 5);
    cc_pack_str(pk, "requests");
    msgpack_pack_uint64(pk, h->requests);
    cc_pack_str(pk, "responses");
    msgpack_pack_map(pk, 3);
    cc_pack_str(pk, "2xx");
    msgpack_pack_uint64(pk, h->r2xx);
    cc_pack_str(pk, "4xx");
    msgpack_pack_uint64(pk, h->r4xx);
    cc_pack_str(pk, "5xx");
    msgpack_pack_uint64(pk, h->r5xx);
    cc_pack_str(pk, "too_large");
    msgpack_pack_uint64(pk, h->too_large);
    cc_pack_str(pk, "protocol_errors");
    msgpack_pack_uint64(pk, h->protocol_errors);
    cc_pack_str(pk, "endpoints");
    msgpack_pack_map(pk, h->nep);
    for (i = 0; i < h->nep; i++) {
        cc_pack_str(pk, h->ep[i].name);
        cc_adapter_pack_stats(&h->ep[i].st, pk, 1);
        cc_pack_str(pk, "bad_signature");
        msgpack_pack_uint64(pk, h->ep[i].bad_signature);
    }
}
