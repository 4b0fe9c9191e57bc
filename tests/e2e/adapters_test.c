/*
 * End to end through the adapters: the real contactd with its webhook
 * listener, its AMI client and its Maildir watcher enabled, fed over real
 * sockets and files.
 */
#include "daemon.h"

#include "channels/chtest.h"
#include "webhook.h"

#include <errno.h>
#include <sys/stat.h>

#define REAL TEST_DATA_DIR "/realdata/"

static int http_port;

/* One HTTP/1.1 request on a fresh connection; returns the status (or -1
 * when the server closed without answering) and the body in out. */
static int
http(const char *method, const char *path, const char *headers,
     const char *body, size_t len, char *out, size_t outn) {
    struct sockaddr_in sa;
    char head[1024], buf[8192];
    size_t got = 0;
    ssize_t n;
    int fd, status = -1;
    const char *p;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(head, sizeof(head),
             "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n",
             method, path, len);
    /* The server may answer (413, 431) and close before reading it all. */
    (void)!write(fd, head, strlen(head));
    if (headers != NULL)
        (void)!write(fd, headers, strlen(headers));
    (void)!write(fd, "\r\n", 2);
    if (len != 0)
        (void)!write(fd, body, len);
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
    struct sockaddr_in sa;
    char buf[512];
    ssize_t n;
    int fd, status = -1;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    (void)!write(fd, bytes, len);
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
             "64KiB\n[http.chatwoot]\nsecret = cw-secret\n%s",
             http_port, extra != NULL ? extra : "");
    start_daemon(conf);
}

static int64_t
stat_path(const char *path) {
    msgpack_unpacked u;
    int64_t v;

    query_stats(&u);
    v = tmap_int(&u.data, path);
    msgpack_unpacked_destroy(&u);
    return v;
}

TestSuite(adapters, .fini = teardown, .timeout = 60);

Test(adapters, signed_webhooks_reach_the_engine_and_bad_ones_are_refused) {
    char sig[128], hdr[256], out[1024], *body, *big;
    size_t len;
    int i;

    start_with(NULL);
    cr_assert_eq(http("GET", "/health", NULL, NULL, 0, out, sizeof(out)), 200);

    body =
        read_file(REAL "chat/chatwoot/extracted/05_message_created.json", &len);
    /* Unsigned: 401, nothing applied. */
    cr_assert_eq(http("POST", "/chatwoot", NULL, body, len, out, sizeof(out)),
                 401, "%s", out);
    {
        unsigned char mac[32];
        cc_hmac_sha256("cw-secret", 9, body, len, "", 0, mac);
        strcpy(sig, "sha256=");
        for (i = 0; i < 32; i++)
            sprintf(sig + 7 + 2 * i, "%02x", mac[i]);
    }
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
    {
        unsigned char mac[32];
        cc_hmac_sha256("cw-secret", 9, body, len, "", 0, mac);
        for (i = 0; i < 32; i++)
            sprintf(sig + 7 + 2 * i, "%02x", mac[i]);
    }
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
     * plain port: the connection is closed. */
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

    /* Nothing was deleted. */
    snprintf(sub, sizeof(sub), "rm -rf '%s'", dir);
    cr_assert_eq(system(sub), 0);
}
