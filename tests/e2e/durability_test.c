/*
 * End to end, durability: the real contactd killed with SIGKILL and
 * started again over the same [durability] dir keeps every event it
 * acknowledged, fires late what fell due while it was down, never
 * publishes an alert twice, survives a torn journal tail, stops on
 * corruption until --repair, and refuses input while the journal cannot
 * write (a file-size limit standing in for a full disk).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "daemon.h"

TestSuite(durability, .fini = teardown, .timeout = 240);

/* Sends t's events on the acknowledged socket: the reply's "accepted"
 * (-1 for an error reply, whose text goes to errstr), or -2 when there
 * was no reply. */
static int64_t
try_acked(const struct tb *b, int timeout_ms, char *errstr, size_t errlen) {
    msgpack_unpacked u;
    msgpack_object e;
    int64_t n;

    if (req_once(d.addr[1], b->sb.data, b->sb.size, &u, timeout_ms) != 0)
        return -2;
    n = tmap_int(&u.data, "accepted");
    if (errstr != NULL) {
        errstr[0] = '\0';
        if (tmap_get(&u.data, "error", &e) && e.type == MSGPACK_OBJECT_STR)
            snprintf(errstr, errlen, "%.*s", (int)e.via.str.size,
                     e.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    return n;
}

/* {"q":"alerts","since":since} */
static void
query_alerts(uint64_t since, msgpack_unpacked *u) {
    struct tb q;

    tb_init(&q);
    msgpack_pack_map(&q.pk, 2);
    tb_kv_str(&q, "q", "alerts");
    tb_kv_int(&q, "since", (int64_t)since);
    cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, u, 5000), 0);
    tb_fini(&q);
}

/* A caller joins queue sales on the phone at ts, customer phone given. */
static void
pack_join(struct tb *b, const char *id, int64_t ts, const char *contact,
          const char *phone) {
    msgpack_pack_map(&b->pk, 7);
    tb_kv_str(b, "id", id);
    tb_kv_int(b, "ts", ts);
    tb_kv_str(b, "channel", "phone");
    tb_kv_str(b, "type", "queue.join");
    tb_kv_str(b, "contact", contact);
    tb_kv_str(b, "queue", "sales");
    tb_str(b, "customer");
    msgpack_pack_map(&b->pk, 1);
    tb_kv_str(b, "phone", phone);
}

/* A caller left waiting while contactd is down: after a SIGKILL and a
 * restart its contact is there, and the SLA warning and breach that fell
 * due meanwhile are in the alert log, marked late. */
Test(durability, kill_restart_keeps_state_and_fires_late_alerts) {
    msgpack_unpacked u;
    msgpack_object alerts, a, v;
    uint64_t t0 = wall_ms();
    int warn = 0, breach = 0;
    uint32_t i;

    start_daemon("[sla.phone]\nanswer = 1s\nwarn = 50%\n");
    msgpack_pack_array(&t.pk, 2);
    pack_join(&t, "j0", (int64_t)t0, "call-0", "+15550100");
    tb_event(&t, "c0", (int64_t)t0, "chat", "contact.open", "chat-0", NULL);
    send_acked(2);
    kill_daemon();
    nng_msleep(1500); /* the warning (0.5 s) and the breach (1 s) */
    restart_daemon();

    cr_assert_eq(stat_path("engine/contacts/open"), 2);
    cr_assert_eq(stat_path("engine/contacts/queued"), 1);
    cr_assert_geq(stat_path("server/recovered_records"), 2);
    query_alerts(0, &u);
    cr_assert(tmap_get(&u.data, "alerts", &alerts));
    for (i = 0; i < alerts.via.array.size; i++) {
        msgpack_object al;
        a = alerts.via.array.ptr[i];
        cr_assert(tmap_get(&a, "topic", &v));
        cr_assert(tmap_get(&a, "alert", &al));
        if (!tmap_str_is(&al, "contact", "call-0"))
            continue;
        cr_assert(tmap_get(&al, "late", &v), "an alert due while down is late");
        cr_assert_eq(v.type, MSGPACK_OBJECT_BOOLEAN);
        cr_assert(v.via.boolean);
        cr_assert_eq(tmap_int(&al, "seq"), (int64_t)i + 1);
        warn += tmap_str_is(&a, "topic", "sla.warning");
        breach += tmap_str_is(&a, "topic", "sla.breach");
    }
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(warn, 1, "one warning, got %d", warn);
    cr_assert_eq(breach, 1, "one breach, got %d", breach);
    cr_assert_eq(stat_path("server/alerts_late"), 2);

    /* A supervisor's client catches up: the breach after seq 1, once. */
    {
        char cmd[512], line[4096];
        int lines = 0;
        FILE *p;
        snprintf(cmd, sizeof(cmd),
                 "%s --config %s --timeout 1000 --count 1 tail alerts "
                 "--since 1 sla.",
                 CONTACTCTL_BIN, d.conf);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        while (fgets(line, sizeof(line), p) != NULL) {
            lines++;
            cr_assert(strstr(line, "\"topic\":\"sla.breach\"") != NULL &&
                          strstr(line, "\"seq\":2") != NULL &&
                          strstr(line, "\"late\":true") != NULL,
                      "%s", line);
        }
        cr_assert_eq(WEXITSTATUS(pclose(p)), 0);
        cr_assert_eq(lines, 1);
    }

    /* A clean stop and another start: nothing fires again, and the
     * snapshot written at the stop leaves nothing to replay. */
    cr_assert_eq(term_daemon(), 0);
    restart_daemon();
    cr_assert_eq(stat_path("server/recovered_records"), 0);
    cr_assert_eq(stat_path("server/alerts_late"), 0);
    cr_assert_eq(stat_path("server/alert_seq"), 2);
    cr_assert_eq(stat_path("server/alerts_logged"), 2);
    cr_assert_eq(stat_path("engine/contacts/open"), 2);
    cr_assert_eq(stop_daemon(), 0);
}

/* ---- the crash loop ------------------------------------------------------ */

#define CRASH_ROUNDS 12
#define BATCH 5
#define MAX_BATCHES 4000

struct killer {
    pid_t pid;
    unsigned delay_ms;
};

static void *
killer_main(void *arg) {
    struct killer *k = arg;
    nng_msleep(k->delay_ms);
    kill(k->pid, SIGKILL);
    return NULL;
}

/* Alerts as they arrived on PUB: (seq, id). */
struct seen {
    nng_socket sub;
    volatile int stop;
    uint32_t n;
    uint64_t seq[20000];
    char id[20000][96];
};

static struct seen seen;

static void *
subscriber_main(void *arg) {
    (void)arg;
    while (!seen.stop) {
        char *buf;
        size_t len, tn;
        msgpack_unpacked u;
        msgpack_object v;

        if (nng_recv(seen.sub, &buf, &len, NNG_FLAG_ALLOC) != 0)
            continue;
        tn = strnlen(buf, len);
        msgpack_unpacked_init(&u);
        if (tn < len &&
            msgpack_unpack_next(&u, buf + tn + 1, len - tn - 1, NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            seen.n < CC_ARRAY_SIZE(seen.seq) && tmap_get(&u.data, "id", &v) &&
            v.type == MSGPACK_OBJECT_STR) {
            seen.seq[seen.n] = (uint64_t)tmap_int(&u.data, "seq");
            snprintf(seen.id[seen.n], sizeof(seen.id[0]), "%.*s",
                     (int)v.via.str.size, v.via.str.ptr);
            seen.n++;
        }
        msgpack_unpacked_destroy(&u);
        nng_free(buf, len);
    }
    return NULL;
}

static uint8_t acked[MAX_BATCHES];
static uint32_t order[CC_ARRAY_SIZE(seen.seq)];

static int
by_id(const void *a, const void *b) {
    return strcmp(seen.id[*(const uint32_t *)a], seen.id[*(const uint32_t *)b]);
}

/*
 * A client sends acknowledged batches of callers joining a queue while
 * contactd is killed with SIGKILL at random moments and started again,
 * CRASH_ROUNDS times. In the end every caller of an acknowledged batch is
 * known, no alert reached the subscriber twice, and every alert it got
 * is the one the alert log holds under the same seq (replay made the same
 * alerts in the same order).
 */
Test(durability, crash_loop_keeps_every_acknowledged_event) {
    pthread_t kt, st;
    struct killer k;
    msgpack_unpacked u;
    msgpack_object alerts, a, al, v;
    uint64_t t0 = wall_ms();
    int round, b = 0, nacked = 0, i, j;
    char err[256];
    unsigned seed = (unsigned)t0;

    /* [durability] fsync = batch, the default; a snapshot every 20
     * records, so that kills land before, during and after them, and
     * restarts load one and replay what follows. */
    start_daemon("[durability]\nsnapshot_records = 20\n"
                 "[sla.phone]\nanswer = 300ms\nwarn = 50%\n");
    cr_log_info("crash loop seed %u", seed);
    srand(seed);
    cr_assert_eq(nng_sub0_open(&seen.sub), 0);
    cr_assert_eq(nng_socket_set(seen.sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
    nng_socket_set_ms(seen.sub, NNG_OPT_RECVTIMEO, 100);
    nng_socket_set_ms(seen.sub, NNG_OPT_RECONNMINT, 10);
    nng_socket_set_ms(seen.sub, NNG_OPT_RECONNMAXT, 50);
    cr_assert_eq(nng_dial(seen.sub, d.addr[2], NULL, NNG_FLAG_NONBLOCK), 0);
    pthread_create(&st, NULL, subscriber_main, NULL);

    for (round = 0; round < CRASH_ROUNDS && b < MAX_BATCHES; round++) {
        k.pid = d.pid;
        k.delay_ms = 50 + (unsigned)rand() % 400;
        pthread_create(&kt, NULL, killer_main, &k);
        for (; b < MAX_BATCHES; b++) {
            int64_t got;
            tb_reset(&t);
            msgpack_pack_array(&t.pk, BATCH);
            for (i = 0; i < BATCH; i++) {
                char id[32], contact[32], phone[32];
                snprintf(id, sizeof(id), "e%d-%d", b, i);
                snprintf(contact, sizeof(contact), "k%d-%d", b, i);
                snprintf(phone, sizeof(phone), "+1555%07d", b * BATCH + i);
                pack_join(&t, id, (int64_t)wall_ms(), contact, phone);
            }
            got = try_acked(&t, 2000, err, sizeof(err));
            if (got == -2)
                break; /* killed: this batch may or may not be in */
            cr_assert_eq(got, BATCH, "batch %d: %lld accepted %s", b,
                         (long long)got, err);
            acked[b] = 1;
            nacked++;
        }
        pthread_join(kt, NULL);
        waitpid(d.pid, NULL, 0);
        b++;
        restart_daemon();
    }
    cr_log_info("%d rounds, %d batches acknowledged, %lld snapshots since "
                "the last start",
                round, nacked, (long long)stat_path("snapshot/written"));
    cr_assert_gt(nacked, CRASH_ROUNDS, "the client got few acknowledgements");

    /* Every caller of an acknowledged batch is known: the open contacts
     * count them all (batches killed mid-way may add more), and each
     * acknowledged customer has a conversation. */
    cr_assert_geq(stat_path("engine/contacts/open"), (int64_t)nacked * BATCH);
    cr_assert_leq(stat_path("engine/contacts/open"), (int64_t)b * BATCH);
    for (j = 0; j < b; j++) {
        struct tb q;
        char phone[32];
        if (!acked[j])
            continue;
        snprintf(phone, sizeof(phone), "+1555%07d", j * BATCH + BATCH - 1);
        tb_init(&q);
        msgpack_pack_map(&q.pk, 2);
        tb_kv_str(&q, "q", "conversation");
        tb_str(&q, "customer");
        msgpack_pack_map(&q.pk, 1);
        tb_kv_str(&q, "phone", phone);
        cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, &u, 5000), 0);
        cr_assert_not(tmap_get(&u.data, "error", &v),
                      "acknowledged batch %d lost: %s has no conversation", j,
                      phone);
        msgpack_unpacked_destroy(&u);
        tb_fini(&q);
    }

    nng_msleep(500); /* the last alerts reach the subscriber */
    seen.stop = 1;
    pthread_join(st, NULL);
    nng_close(seen.sub);
    cr_log_info("%u alerts received", seen.n);
    cr_assert_gt(seen.n, 0);
    /* No alert twice: no id and no seq received twice (sorted by id,
     * neighbours differ). */
    for (i = 0; i < (int)seen.n; i++)
        order[i] = (uint32_t)i;
    qsort(order, seen.n, sizeof(order[0]), by_id);
    for (i = 1; i < (int)seen.n; i++)
        cr_assert(strcmp(seen.id[order[i]], seen.id[order[i - 1]]) != 0,
                  "alert %s sent twice (seq %llu and %llu)", seen.id[order[i]],
                  (unsigned long long)seen.seq[order[i - 1]],
                  (unsigned long long)seen.seq[order[i]]);
    /* The log agrees with what was published: same seq, same alert. */
    {
        static char logged[20000][96];
        uint64_t since = 0, last = 0;
        uint32_t x;
        bool more = true;
        while (more) {
            query_alerts(since, &u);
            cr_assert(tmap_get(&u.data, "alerts", &alerts));
            cr_assert(tmap_get(&u.data, "more", &v));
            more = v.via.boolean;
            for (x = 0; x < alerts.via.array.size; x++) {
                int64_t seq;
                a = alerts.via.array.ptr[x];
                cr_assert(tmap_get(&a, "alert", &al));
                seq = tmap_int(&al, "seq");
                cr_assert_eq(seq, (int64_t)since + 1, "the log skips a seq");
                cr_assert(tmap_get(&al, "id", &v));
                if (seq < (int64_t)CC_ARRAY_SIZE(logged))
                    snprintf(logged[seq], sizeof(logged[0]), "%.*s",
                             (int)v.via.str.size, v.via.str.ptr);
                since = (uint64_t)seq;
            }
            last = (uint64_t)tmap_int(&u.data, "last");
            msgpack_unpacked_destroy(&u);
        }
        cr_assert_eq(since, last);
        for (i = 0; i < (int)seen.n; i++) {
            cr_assert_leq(seen.seq[i], last);
            cr_assert_str_eq(logged[seen.seq[i]], seen.id[i],
                             "seq %llu: the log holds another alert than was "
                             "sent",
                             (unsigned long long)seen.seq[i]);
        }
    }
    cr_assert_eq(stop_daemon(), 0);
}

/* ---- snapshots ------------------------------------------------------------
 */

/* Acknowledged batches of 100 callers joining sales, each with a number. */
static void
send_joins(int first, int batches) {
    int b, i;

    for (b = first; b < first + batches; b++) {
        tb_reset(&t);
        msgpack_pack_array(&t.pk, 100);
        for (i = 0; i < 100; i++) {
            char id[32], contact[32], phone[32];
            snprintf(id, sizeof(id), "s%d-%d", b, i);
            snprintf(contact, sizeof(contact), "sc%d-%d", b, i);
            snprintf(phone, sizeof(phone), "+1666%07d", b * 100 + i);
            pack_join(&t, id, (int64_t)wall_ms(), contact, phone);
        }
        send_acked(100);
    }
}

/* Files in <data>/sub whose names end with suffix; *lowest gets the
 * smallest number such a name starts with. */
static int
count_files(const char *sub, const char *suffix, uint64_t *lowest) {
    char path[600];
    struct dirent *e;
    DIR *dir;
    int n = 0;
    size_t sl = strlen(suffix);

    snprintf(path, sizeof(path), "%s/%s", d.data, sub);
    dir = opendir(path);
    cr_assert_not_null(dir, "%s", path);
    if (lowest != NULL)
        *lowest = UINT64_MAX;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= sl || strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        n++;
        if (lowest != NULL && strtoull(e->d_name, NULL, 10) < *lowest)
            *lowest = strtoull(e->d_name, NULL, 10);
    }
    closedir(dir);
    return n;
}

/* `contactctl snapshot`: one written now; its seq. */
static int64_t
snapshot_now(void) {
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "%s --config %s snapshot >/dev/null",
             CONTACTCTL_BIN, d.conf);
    cr_assert_eq(system(cmd), 0, "contactctl snapshot failed");
    return stat_path("snapshot/last_seq");
}

/*
 * Snapshots bound the journal and the replay: a snapshot and the journal
 * after it rebuild the state after a kill (the callers, the callback
 * triggers waiting for a callback system); the older of the two kept
 * snapshots still works when the newest is damaged, since the journal is
 * kept from it on; a clean stop writes one, so that the next start
 * replays nothing; a trigger waiting through all that reaches a callback
 * system that connects.
 */
Test(durability, snapshots_bound_the_journal_and_the_restart) {
    int64_t seq1, seq2, backlog, got, open = 245 * 100;
    uint64_t lowest;
    char path[600];
    nng_socket pull;
    char *buf;
    size_t len;
    FILE *f;

    start_daemon("[durability]\nsegment_size = 1MiB\nsnapshot_interval = 0\n"
                 "snapshot_records = 0\n"
                 "[sla.phone]\nanswer = 1h\n"
                 "[callback]\noffer_when_position_over = 24490\n"
                 "offer_after_waiting = 0\n");
    send_joins(0, 120);
    cr_assert_geq(count_files("journal", ".seg", NULL), 2,
                  "120 batches fill more than one 1 MiB segment");
    seq1 = snapshot_now();
    cr_assert_gt(seq1, 120);
    send_joins(120, 120);
    seq2 = snapshot_now();
    cr_assert_gt(seq2, seq1 + 119);
    cr_assert_eq(count_files("snapshots", ".snap", NULL), 2);
    cr_assert_geq(stat_path("journal/segments_removed"), 1,
                  "segments below the older snapshot are removed");
    count_files("journal", ".seg", &lowest);
    cr_assert_leq(lowest, (uint64_t)seq1,
                  "the journal is kept from the older snapshot on");
    cr_assert_gt(lowest, 1);
    send_joins(240, 5);
    backlog = stat_path("server/callbacks_backlog");
    cr_assert_gt(backlog, 0);

    /* Killed: the newest snapshot and the 5 batches after it. */
    kill_daemon();
    restart_daemon();
    cr_assert_eq(stat_path("engine/contacts/open"), open);
    cr_assert_geq(stat_path("server/recovered_records"), 5);
    cr_assert_leq(stat_path("server/recovered_records"), 20,
                  "replay starts at the newest snapshot");
    cr_assert_eq(stat_path("server/callbacks_backlog"), backlog);

    /* The newest damaged: the older one and the journal after it. */
    kill_daemon();
    snprintf(path, sizeof(path), "%s/snapshots/%020lld.snap", d.data,
             (long long)seq2);
    f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 1000, SEEK_SET);
    fputc(fgetc(f) ^ 0x40, f);
    fclose(f);
    restart_daemon();
    cr_assert_eq(stat_path("snapshot/last_seq"), seq1);
    cr_assert_eq(stat_path("engine/contacts/open"), open);
    cr_assert_geq(stat_path("server/recovered_records"), 125);
    cr_assert_eq(stat_path("server/callbacks_backlog"), backlog);

    /* A clean stop writes one: nothing to replay after it. */
    cr_assert_eq(term_daemon(), 0);
    restart_daemon();
    cr_assert_eq(stat_path("server/recovered_records"), 0);
    cr_assert_eq(stat_path("engine/contacts/open"), open);
    cr_assert_eq(stat_path("server/callbacks_backlog"), backlog);

    /* The triggers waiting through all that reach a callback system, each
     * once. (All are taken before the socket closes: NNG 1.5 may hang in
     * nng_close() on a PULL socket that messages are still arriving on.) */
    cr_assert_eq(nng_pull0_open(&pull), 0);
    nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, 5000);
    cr_assert_eq(nng_dial(pull, d.addr[3], NULL, 0), 0);
    for (got = 0; nng_recv(pull, &buf, &len, NNG_FLAG_ALLOC) == 0; got++) {
        cr_assert(memmem(buf, len, "callback.offer", 14) != NULL);
        nng_free(buf, len);
        nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, 500);
    }
    cr_assert_eq(got, backlog);
    cr_assert_eq(stat_path("server/callbacks_backlog"), 0);
    nng_close(pull);
    cr_assert_eq(stop_daemon(), 0);
}

/* ---- damage -------------------------------------------------------------- */

static void
segment_path(char *buf, size_t n) {
    snprintf(buf, n, "%s/journal/00000000000000000001.seg", d.data);
}

static int
run_repair(void) {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s --repair --config %s", CONTACTD_BIN, d.conf);
    return system(cmd);
}

/* A torn last record (a crash in the middle of a write) is dropped and
 * contactd starts; a damaged record in the middle stops startup (exit 3)
 * until --repair cuts the journal there. */
Test(durability, torn_tail_recovers_and_corruption_needs_repair) {
    char seg[128];
    FILE *f;
    uint64_t size;
    int status;

    start_daemon(NULL);
    msgpack_pack_array(&t.pk, 1);
    tb_event(&t, "a", T0, "chat", "contact.open", "chat-a", NULL);
    send_acked(1);
    tb_reset(&t);
    msgpack_pack_array(&t.pk, 1);
    tb_event(&t, "b", T0, "chat", "contact.open", "chat-b", NULL);
    send_acked(1);
    kill_daemon();

    /* Half a record at the end. */
    segment_path(seg, sizeof(seg));
    size = file_size(seg);
    f = fopen(seg, "ab");
    cr_assert_not_null(f);
    fwrite("\x40\x00\x00\x00\x12\x34\x56\x78partial", 1, 15, f);
    fclose(f);
    restart_daemon();
    cr_assert_eq(stat_path("engine/contacts/open"), 2);
    {
        /* Cut off: records the restarted daemon appended (a tick) may
         * follow the good ones, the torn bytes may not. */
        size_t n;
        char *b = read_file(seg, &n);
        cr_assert_geq((uint64_t)n, size);
        cr_assert_null(memmem(b, n, "partial", 7),
                       "the torn tail is still there");
        free(b);
    }
    kill_daemon();

    /* A flipped byte in the first event's record: records follow it. */
    f = fopen(seg, "r+b");
    cr_assert_not_null(f);
    fseek(f, 32 + 8 + 9 + 8 + 8 + 9 + 4, SEEK_SET);
    fputc('X', f);
    fclose(f);
    cr_assert_eq(launch_daemon(), -1, "contactd starts on a corrupt journal");
    status = run_repair();
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    restart_daemon();
    /* Cut before the damaged record: the first event is gone with it. */
    cr_assert_lt(stat_path("engine/contacts/open"), 2);
    cr_assert_eq(stop_daemon(), 0);
}

/* ---- a full disk --------------------------------------------------------- */

static void
set_fsize(pid_t pid, rlim_t limit) {
    /* The soft limit only: raising it again needs no privilege. */
    struct rlimit rl = {limit, RLIM_INFINITY};
    cr_assert_eq(prlimit(pid, RLIMIT_FSIZE, &rl, NULL), 0);
}

struct waiter {
    struct tb b;
    volatile int done;
    int64_t accepted;
};

static void *
waiter_main(void *arg) {
    struct waiter *w = arg;
    w->accepted = try_acked(&w->b, 15000, NULL, 0);
    w->done = 1;
    return NULL;
}

/* While the journal cannot write, nothing is acknowledged: the request
 * whose records wait gets no answer, later ones get an error naming the
 * journal; when space returns the first is written and answered, new
 * input is taken, and both survive a kill. */
Test(durability, full_disk_refuses_and_resumes) {
    static struct waiter w;
    char seg[128], err[256];
    pthread_t th;
    int i;

    start_daemon(NULL);
    segment_path(seg, sizeof(seg));
    set_fsize(d.pid, (rlim_t)file_size(seg) + 64);

    /* The first request: applied, its records wait for the disk. */
    tb_init(&w.b);
    msgpack_pack_array(&w.b.pk, 10);
    for (i = 0; i < 10; i++) {
        char id[16], c[16];
        snprintf(id, sizeof(id), "f%d", i);
        snprintf(c, sizeof(c), "chat-f%d", i);
        tb_event(&w.b, id, T0, "chat", "contact.open", c, NULL);
    }
    pthread_create(&th, NULL, waiter_main, &w);
    nng_msleep(800);
    cr_assert_not(w.done, "answered while its records were not on disk");

    /* The next: refused with the reason. */
    msgpack_pack_array(&t.pk, 1);
    tb_event(&t, "g", T0, "chat", "contact.open", "chat-g", NULL);
    cr_assert_eq(try_acked(&t, 5000, err, sizeof(err)), -1);
    cr_assert(strstr(err, "journal: cannot write") != NULL, "got '%s'", err);
    cr_assert_gt(stat_path("journal/write_errors"), 0);
    cr_assert_gt(stat_path("server/journal_refused"), 0);
    cr_assert_not(w.done);

    /* Space returns: the waiting answer comes, and new input is taken. */
    set_fsize(d.pid, RLIM_INFINITY);
    pthread_join(th, NULL);
    tb_fini(&w.b);
    cr_assert_eq(w.accepted, 10);
    send_acked(1);

    kill_daemon();
    restart_daemon();
    cr_assert_eq(stat_path("engine/contacts/open"), 11);
    cr_assert_eq(stop_daemon(), 0);
}
