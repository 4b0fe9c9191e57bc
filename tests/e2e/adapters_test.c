/*
 * End to end through the adapters: the real contactd with its webhook
 * listener, its AMI client and its Maildir watcher enabled, fed over real
 * sockets and files.
 */
#include "daemon.h"

#include "channels/chtest.h"
#include "webhook.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define REAL TEST_DATA_DIR "/realdata/"

static int http_port;

/* A connection to the daemon's HTTP listener. */
static int
dial_http(void) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* "sha256=<hex HMAC-SHA256 of body under key>" into sig. */
static void
sign_hex(const char *key, const char *body, size_t len, char *sig) {
    unsigned char mac[32];
    int i;

    cc_hmac_sha256(key, strlen(key), body, len, "", 0, mac);
    strcpy(sig, "sha256=");
    for (i = 0; i < 32; i++)
        sprintf(sig + 7 + 2 * i, "%02x", mac[i]);
}

/* Writes what it can on a socket: the peer may close first (the server
 * answers 413 or 431 before reading it all, contactd drops its AMI
 * connection), which must not raise SIGPIPE in the test. */
static void
put(int fd, const void *p, size_t n) {
    (void)!send(fd, p, n, MSG_NOSIGNAL);
}

/* One HTTP/1.1 request on a fresh connection; returns the status (or -1
 * when the server closed without answering) and the body in out. */
static int
http(const char *method, const char *path, const char *headers,
     const char *body, size_t len, char *out, size_t outn) {
    char head[1024], buf[8192];
    size_t got = 0;
    ssize_t n;
    int fd, status = -1;
    const char *p;

    fd = dial_http();
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n",
             method, path, len);
    put(fd, head, strlen(head));
    if (headers != NULL)
        put(fd, headers, strlen(headers));
    put(fd, "\r\n", 2);
    if (len != 0)
        put(fd, body, len);
    while (got < sizeof(buf) - 1 &&
           (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return -1;
    p = strstr(buf, "\r\n\r\n");
    if (out != NULL)
        snprintf(out, outn, "%s", p != NULL ? p + 4 : "");
    return status;
}

/* Sends raw bytes on a fresh connection; the status of the answer, or -1
 * when the server closed without one. */
static int
raw(const char *bytes, size_t len) {
    char buf[512];
    ssize_t n;
    int fd, status = -1;

    fd = dial_http();
    put(fd, bytes, len);
    shutdown(fd, SHUT_WR);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return -1;
    return status;
}

static void
start_with(const char *extra) {
    char conf[2048];

    http_port = free_port();
    snprintf(conf, sizeof(conf),
             "[http]\nenabled = true\nlisten = 127.0.0.1:%d\nmax_body = "
             "64KiB\ntimeout = 1s\n[http.chatwoot]\nsecret = cw-secret\n%s",
             http_port, extra != NULL ? extra : "");
    start_daemon(conf);
}

TestSuite(adapters, .fini = teardown, .timeout = 60);

Test(adapters, signed_webhooks_reach_the_engine_and_bad_ones_are_refused) {
    char sig[128], hdr[256], out[1024], *body, *big;
    size_t len;

    start_with(NULL);
    cr_assert_eq(http("GET", "/health", NULL, NULL, 0, out, sizeof(out)), 200);

    body =
        read_file(REAL "chat/chatwoot/extracted/05_message_created.json", &len);
    /* Unsigned: 401, nothing applied. */
    cr_assert_eq(http("POST", "/chatwoot", NULL, body, len, out, sizeof(out)),
                 401, "%s", out);
    sign_hex("cw-secret", body, len, sig);
    snprintf(hdr, sizeof(hdr), "X-Chatwoot-Signature: %s\r\n", sig);
    cr_assert_eq(http("POST", "/chatwoot", hdr, body, len, out, sizeof(out)),
                 200, "%s", out);
    cr_assert(strstr(out, "\"accepted\":1") != NULL, "%s", out);
    /* Delivered twice (a platform's retry): a duplicate, still 200. */
    cr_assert_eq(http("POST", "/chatwoot", hdr, body, len, out, sizeof(out)),
                 200);
    cr_assert(strstr(out, "\"duplicates\":1") != NULL, "%s", out);
    free(body);

    /* The invalid published sample: 400 with the parser's reason. */
    body = read_file(REAL "chat/chatwoot/extracted/"
                          "01_A_sample_webhook_payload.json",
                     &len);
    sign_hex("cw-secret", body, len, sig);
    snprintf(hdr, sizeof(hdr), "X-Chatwoot-Signature: %s\r\n", sig);
    cr_assert_eq(http("POST", "/chatwoot", hdr, body, len, out, sizeof(out)),
                 400);
    cr_assert(strstr(out, "not valid JSON") != NULL, "%s", out);
    free(body);

    /* A body over max_body: 413. Headers of 100 KB: 431. The daemon lives
     * on. */
    big = malloc(200000);
    memset(big, 'a', 200000);
    cr_assert_eq(http("POST", "/events", NULL, big, 100000, out, sizeof(out)),
                 413);
    memcpy(big, "X-Big: ", 7);
    memcpy(big + 100007, "\r\n", 3);
    cr_assert_eq(http("GET", "/health", big, NULL, 0, out, sizeof(out)), 431);
    free(big);
    /* Binary garbage in the request line: 400. A TLS handshake on the
     * plain port never ends a request line: the connection is closed when
     * [http] timeout passes. */
    cr_assert_eq(raw("\x01\x02 GARBAGE \xff\r\n\r\n", 17), 400);
    cr_assert_eq(raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), -1);
    cr_assert_eq(http("GET", "/health", NULL, NULL, 0, out, sizeof(out)), 200);
    cr_assert_eq(http("POST", "/nowhere", NULL, "{}", 2, out, sizeof(out)),
                 404);

    /* Counted where supervisors look. */
    cr_assert_eq(stat_path("adapters/http/endpoints/chatwoot/mapped"), 2);
    cr_assert_eq(stat_path("adapters/http/endpoints/chatwoot/bad_signature"),
                 1);
    cr_assert_eq(stat_path("adapters/http/endpoints/chatwoot/reasons/bad JSON"),
                 1);
    cr_assert_eq(stat_path("adapters/http/too_large"), 1);
    cr_assert_geq(stat_path("adapters/http/protocol_errors"), 1);
    cr_assert_eq(stat_path("engine/channels/chat/messages_in"), 1);
    cr_assert_eq(stop_daemon(), 0);
}

/* Copies a corpus file into dir/sub/name. */
static void
put_mail(const char *dir, const char *sub, const char *name,
         const char *corpus) {
    char path[512], *body;
    size_t len;
    FILE *f;

    snprintf(path, sizeof(path), REAL "email/mail-gem/%s", corpus);
    body = read_file(path, &len);
    snprintf(path, sizeof(path), "%s/%s/%s", dir, sub, name);
    f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(body, 1, len, f), len);
    fclose(f);
    free(body);
}

/* How many entries dir holds (without . and ..). */
static int
count_files(const char *dir) {
    char cmd[600];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* Waits up to 5 s for dir to hold n entries. */
static void
await_files(const char *dir, int n) {
    int i;

    for (i = 0; i < 100 && count_files(dir) != n; i++)
        nng_msleep(50);
    cr_assert_eq(count_files(dir), n, "%s holds %d entries, not %d", dir,
                 count_files(dir), n);
}

Test(adapters, a_maildir_thread_becomes_one_conversation) {
    char dir[] = "/tmp/contactd-maildir-XXXXXX", sub[600], conf[1024];
    char from[600], to[600];
    msgpack_unpacked u;
    struct tb q;
    int i;

    cr_assert_not_null(mkdtemp(dir));
    for (i = 0; i < 3; i++) {
        static const char *const subs[] = {"new", "cur", "tmp"};
        snprintf(sub, sizeof(sub), "%s/%s", dir, subs[i]);
        cr_assert_eq(mkdir(sub, 0700), 0);
    }
    /* Two delivered before the start: a customer's mail and the support
     * team's reply (mary@example.net is the support address). */
    put_mail(dir, "new", "1000.1.host", "rfc2822/example05.eml");
    put_mail(dir, "new", "1001.1.host", "rfc2822/example06.eml");
    put_mail(dir, "new", "1002.1.host", "error_emails/bad_subject.eml");
    snprintf(conf, sizeof(conf),
             "[maildir]\nenabled = true\npath = %s\nsupport = "
             "mary@example.net\n",
             dir);
    start_with(conf);
    snprintf(sub, sizeof(sub), "%s/cur", dir);
    await_files(sub, 3);

    /* The customer answers: delivered as an MTA does, through tmp/. */
    put_mail(dir, "tmp", "1003.1.host", "rfc2822/example07.eml");
    snprintf(from, sizeof(from), "%s/tmp/1003.1.host", dir);
    snprintf(to, sizeof(to), "%s/new/1003.1.host", dir);
    cr_assert_eq(rename(from, to), 0);
    await_files(sub, 4);
    snprintf(sub, sizeof(sub), "%s/new", dir);
    cr_assert_eq(count_files(sub), 0);

    cr_assert_eq(stat_path("adapters/maildir/received"), 4);
    cr_assert_eq(stat_path("adapters/maildir/mapped"), 4);
    cr_assert_eq(stat_path("engine/channels/email/messages_in"), 3);
    cr_assert_eq(stat_path("engine/channels/email/messages_out"), 1);

    /* One conversation: the thread of three is one contact. */
    tb_init(&q);
    msgpack_pack_map(&q.pk, 2);
    tb_kv_str(&q, "q", "conversation");
    tb_str(&q, "customer");
    msgpack_pack_map(&q.pk, 1);
    tb_kv_str(&q, "email", "jdoe@machine.example");
    cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, &u, 5000), 0);
    cr_assert_eq(tmap_int(&u.data, "contacts"), 1);
    msgpack_unpacked_destroy(&u);
    tb_fini(&q);
    cr_assert_eq(stop_daemon(), 0);

    remove_tree(dir);
}

/* ---- a fake Asterisk ------------------------------------------------------
 * Listens on a loopback port, greets, answers every action with Success
 * (echoing its ActionID) and keeps what it was sent; the test writes
 * events to the connection. */

struct fake_pbx {
    int lfd, fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    char seen[65536]; /* every action received */
    size_t nseen;
    int done;
};

static struct fake_pbx pbx;

static void
pbx_write(const char *text) {
    pthread_mutex_lock(&pbx.mu);
    if (pbx.fd >= 0)
        put(pbx.fd, text, strlen(text));
    pthread_mutex_unlock(&pbx.mu);
}

/* Answers each complete action (up to its blank line) from seen[from]. */
static size_t
pbx_answer(size_t from) {
    char reply[256], id[64];
    const char *end, *a;

    while ((end = strstr(pbx.seen + from, "\r\n\r\n")) != NULL) {
        id[0] = '\0';
        a = strstr(pbx.seen + from, "ActionID: ");
        if (a != NULL && a < end)
            sscanf(a + 10, "%63[^\r]", id);
        snprintf(reply, sizeof(reply),
                 "Response: Success\r\n%s%s%sMessage: OK\r\n\r\n",
                 id[0] ? "ActionID: " : "", id, id[0] ? "\r\n" : "");
        pbx_write(reply);
        from = (size_t)(end - pbx.seen) + 4;
    }
    return from;
}

static void *
pbx_main(void *arg) {
    size_t answered = 0;
    ssize_t n;
    int fd;

    (void)arg;
    fd = accept(pbx.lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    pthread_mutex_lock(&pbx.mu);
    pbx.fd = fd;
    pthread_mutex_unlock(&pbx.mu);
    pbx_write("Asterisk Call Manager/7.0.3\r\n");
    for (;;) {
        n = read(fd, pbx.seen + pbx.nseen, sizeof(pbx.seen) - 1 - pbx.nseen);
        if (n <= 0)
            break;
        pthread_mutex_lock(&pbx.mu);
        pbx.nseen += (size_t)n;
        pbx.seen[pbx.nseen] = '\0';
        pthread_mutex_unlock(&pbx.mu);
        answered = pbx_answer(answered);
    }
    return NULL;
}

static void
pbx_start(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;

    memset(&pbx, 0, sizeof(pbx));
    pbx.fd = -1;
    pthread_mutex_init(&pbx.mu, NULL);
    pbx.lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(pbx.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(pbx.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(pbx.lfd, 4), 0);
    getsockname(pbx.lfd, (struct sockaddr *)&sa, &len);
    pbx.port = ntohs(sa.sin_port);
    pthread_create(&pbx.th, NULL, pbx_main, NULL);
}

static void
pbx_stop(void) {
    shutdown(pbx.lfd, SHUT_RDWR);
    close(pbx.lfd);
    pthread_mutex_lock(&pbx.mu);
    if (pbx.fd >= 0)
        shutdown(pbx.fd, SHUT_RDWR);
    pthread_mutex_unlock(&pbx.mu);
    pthread_join(pbx.th, NULL);
    if (pbx.fd >= 0)
        close(pbx.fd);
}

/* Waits up to 5 s for the fake PBX to have been sent text. */
static bool
pbx_saw(const char *text) {
    bool seen = false;
    int i;

    for (i = 0; i < 100 && !seen; i++) {
        pthread_mutex_lock(&pbx.mu);
        seen = strstr(pbx.seen, text) != NULL;
        pthread_mutex_unlock(&pbx.mu);
        if (!seen)
            nng_msleep(50);
    }
    return seen;
}

/* A queue call replayed by a fake Asterisk: built from the documented
 * field lists of Newchannel and QueueCallerJoin (no openly licensed capture
 * of a queue call exists). The SLA alert and the callback offer that follow
 * come out of the daemon; the callback system's acceptance makes the
 * adapter withdraw the caller from the Asterisk queue. */
Test(adapters, an_asterisk_queue_call_gives_alerts_triggers_and_withdrawal) {
    nng_socket sub, pull;
    msgpack_unpacked u;
    char conf[1024], *buf;
    size_t len;

    pbx_start();
    snprintf(conf, sizeof(conf),
             "[ami]\nenabled = true\nport = %d\nusername = contactd\n"
             "secret = pw\n[callback]\noffer_after_waiting = 1s\n"
             "[sla.phone]\nanswer = 2s\n",
             pbx.port);
    start_with(conf);
    cr_assert(pbx_saw("Action: Login"), "no login: %s", pbx.seen);
    cr_assert(strstr(pbx.seen, "Username: contactd") != NULL);
    sub = subscribe_alerts("sla.breach");
    cr_assert_eq(nng_pull0_open(&pull), 0);
    nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, 5000);
    cr_assert_eq(nng_dial(pull, d.addr[3], NULL, 0), 0);

    pbx_write("Event: Newchannel\r\nPrivilege: call,all\r\n"
              "Channel: PJSIP/trunk-00000001\r\nChannelState: 4\r\n"
              "ChannelStateDesc: Ring\r\nCallerIDNum: +15551234567\r\n"
              "CallerIDName: Ann Lee\r\nConnectedLineNum: <unknown>\r\n"
              "ConnectedLineName: <unknown>\r\nLanguage: en\r\n"
              "AccountCode: \r\nContext: from-trunk\r\nExten: 600\r\n"
              "Priority: 1\r\nUniqueid: 1700000000.1\r\n"
              "Linkedid: 1700000000.1\r\n\r\n");
    pbx_write("Event: QueueCallerJoin\r\nPrivilege: agent,all\r\n"
              "Channel: PJSIP/trunk-00000001\r\nChannelState: 6\r\n"
              "ChannelStateDesc: Up\r\nCallerIDNum: +15551234567\r\n"
              "CallerIDName: Ann Lee\r\nConnectedLineNum: <unknown>\r\n"
              "ConnectedLineName: <unknown>\r\nLanguage: en\r\n"
              "AccountCode: \r\nContext: from-trunk\r\nExten: 600\r\n"
              "Priority: 2\r\nUniqueid: 1700000000.1\r\n"
              "Linkedid: 1700000000.1\r\nQueue: support\r\nPosition: 1\r\n"
              "Count: 1\r\n\r\n");

    /* After 1 s of waiting: a callback offer to the caller's number. */
    cr_assert_eq(nng_recv(pull, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no callback offer within 5 s");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf, len, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u.data, "type", "callback.offer"));
    cr_assert(tmap_str_is(&u.data, "number", "+15551234567"));
    cr_assert(tmap_str_is(&u.data, "contact", "1700000000.1"));
    cr_assert(tmap_str_is(&u.data, "queue", "support"));
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);

    /* After 2 s unanswered: the answer SLA breaks. */
    cr_assert_eq(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no sla.breach within 5 s");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf + 11, len - 11, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u.data, "contact", "1700000000.1"));
    cr_assert(tmap_str_is(&u.data, "clock", "answer"));
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);

    /* The callback system accepts: the caller leaves the Asterisk queue. */
    msgpack_pack_map(&t.pk, 5);
    tb_kv_str(&t, "id", "cb-accept-1");
    tb_kv_int(&t, "ts", (int64_t)wall_ms());
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "callback.accepted");
    tb_kv_str(&t, "contact", "1700000000.1");
    send_acked(1);
    cr_assert(pbx_saw("Action: QueueWithdrawCaller"), "no withdrawal: %s",
              pbx.seen);
    cr_assert(pbx_saw("Caller: PJSIP/trunk-00000001"), "%s", pbx.seen);
    cr_assert(pbx_saw("Queue: support"), "%s", pbx.seen);

    cr_assert_eq(stat_path("adapters/ami/mapped"), 2);
    query_stats(&u);
    {
        msgpack_object ami, c;
        cr_assert(tmap_get(&u.data, "adapters", &ami) &&
                  tmap_get(&ami, "ami", &ami) &&
                  tmap_get(&ami, "connected", &c));
        cr_assert(c.type == MSGPACK_OBJECT_BOOLEAN && c.via.boolean);
    }
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stat_path("adapters/ami/withdrawals"), 1);
    nng_close(sub);
    nng_close(pull);
    cr_assert_eq(stop_daemon(), 0);
    pbx_stop();
}

/* Off loopback, an endpoint without its secret would let anyone inject
 * events: contactd refuses to start so. */
/* ---- a full disk --------------------------------------------------------- */

struct poster {
    char body[256];
    char out[1024];
    volatile int status; /* 0 until answered */
};

static void *
poster_main(void *arg) {
    struct poster *p = arg;
    int st = http("POST", "/events", NULL, p->body, strlen(p->body), p->out,
                  sizeof(p->out));
    p->status = st != 0 ? st : -1;
    return NULL;
}

/*
 * While the journal cannot write (a file-size limit on the running daemon
 * standing in for a full disk), a webhook whose events wait for the disk
 * gets no answer, the next gets 503 with Retry-After, and when space
 * returns the first is answered 200 and new ones are taken.
 */
Test(adapters, a_full_disk_answers_503_until_space_returns) {
    static struct poster first;
    char path[200], out[1024];
    struct rlimit rl = {0, RLIM_INFINITY};
    struct stat st;
    pthread_t th;
    const char *ev = "{\"id\":\"h2\",\"ts\":1700000000000,\"channel\":"
                     "\"chat\",\"type\":\"contact.open\",\"contact\":\"c2\"}";

    start_with(NULL);
    snprintf(path, sizeof(path), "%s/journal/00000000000000000001.seg", d.data);
    cr_assert_eq(stat(path, &st), 0);
    rl.rlim_cur = (rlim_t)st.st_size + 64;
    cr_assert_eq(prlimit(d.pid, RLIMIT_FSIZE, &rl, NULL), 0);

    snprintf(first.body, sizeof(first.body),
             "{\"id\":\"h1\",\"ts\":1700000000000,\"channel\":\"chat\","
             "\"type\":\"contact.open\",\"contact\":\"c1\"}");
    pthread_create(&th, NULL, poster_main, &first);
    nng_msleep(800);
    cr_assert_eq(first.status, 0, "answered while its events were not on disk");
    cr_assert_eq(
        http("POST", "/events", NULL, ev, strlen(ev), out, sizeof(out)), 503,
        "%s", out);
    cr_assert(strstr(out, "journal") != NULL, "%s", out);
    cr_assert_eq(first.status, 0);

    rl.rlim_cur = RLIM_INFINITY;
    cr_assert_eq(prlimit(d.pid, RLIMIT_FSIZE, &rl, NULL), 0);
    pthread_join(th, NULL);
    cr_assert_eq(first.status, 200, "%s", first.out);
    cr_assert(strstr(first.out, "\"accepted\":1") != NULL, "%s", first.out);
    cr_assert_eq(
        http("POST", "/events", NULL, ev, strlen(ev), out, sizeof(out)), 200,
        "%s", out);
    cr_assert_eq(stat_path("engine/contacts/open"), 2);
    cr_assert_eq(stop_daemon(), 0);
}

Test(adapters, unsigned_endpoints_off_loopback_are_refused) {
    char conf[] = "/tmp/contactd-http-XXXXXX", cmd[512];
    int fd = mkstemp(conf), status;
    FILE *f = fdopen(fd, "w");

    fprintf(f, "[http]\nenabled = true\nlisten = 0.0.0.0:%d\n", free_port());
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s --config %s 2>/dev/null", CONTACTD_BIN,
             conf);
    status = system(cmd);
    unlink(conf);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 1);
}
