/*
 * End to end: start the real contactd on loopback ports chosen here, talk to
 * it over real NNG sockets, and stop it with SIGTERM.
 */
#include "daemon.h"

TestSuite(daemon, .fini = teardown, .timeout = 60);

Test(daemon, acknowledged_ingest_reports_each_event) {
    msgpack_unpacked u;
    msgpack_object rej, first;

    start_daemon(NULL);
    msgpack_pack_array(&t.pk, 3);
    tb_event(&t, "e1", T0, "phone", "contact.open", "c1", "+15550001");
    tb_event(&t, "e2", T0, "fax", "contact.open", "c2", NULL);
    tb_event(&t, "e3", T0, "phone", "queue.join", "c1", NULL); /* no queue */
    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size, &u, 5000), 0);
    cr_assert_eq(tmap_int(&u.data, "accepted"), 1);
    cr_assert(tmap_get(&u.data, "rejected", &rej));
    cr_assert_eq(rej.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(rej.via.array.size, 2);
    first = rej.via.array.ptr[0];
    cr_assert_eq(tmap_int(&first, "index"), 1);
    cr_assert(tmap_str_is(&first, "code", "unknown_channel"));
    cr_assert_eq(tmap_int(&rej.via.array.ptr[1], "index"), 2);
    cr_assert(tmap_str_is(&rej.via.array.ptr[1], "reason",
                          "missing required key 'queue' for this type"));
    msgpack_unpacked_destroy(&u);

    /* Sending the same batch again: e1 is a duplicate, not an error. */
    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size, &u, 5000), 0);
    cr_assert_eq(tmap_int(&u.data, "accepted"), 0);
    cr_assert_eq(tmap_int(&u.data, "duplicates"), 1);
    msgpack_unpacked_destroy(&u);

    query_stats(&u);
    cr_assert_eq(tmap_int(&u.data, "engine/events/accepted"), 1);
    cr_assert_eq(tmap_int(&u.data, "engine/events/duplicates"), 1);
    cr_assert_eq(tmap_int(&u.data, "engine/events/rejected"), 4);
    cr_assert_eq(tmap_int(&u.data, "engine/channels/phone/open"), 1);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stop_daemon(), 0);
}

Test(daemon, bad_input_gets_a_reason_and_the_daemon_lives_on) {
    static const char garbage[] = "GET / HTTP/1.1\r\n\r\n";
    static const uint8_t hostile[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x80};
    msgpack_unpacked u;
    msgpack_object err;
    char *big;

    start_daemon("[server]\nmax_message = 4KiB\n");
    cr_assert_eq(req_once(d.addr[1], garbage, sizeof(garbage) - 1, &u, 5000),
                 0);
    cr_assert(tmap_get(&u.data, "error", &err));
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(req_once(d.addr[1], hostile, sizeof(hostile), &u, 5000), 0);
    cr_assert(tmap_get(&u.data, "error", &err));
    msgpack_unpacked_destroy(&u);
    /* Larger than max_message but under NNG's hard cap: told why. */
    big = calloc(1, 6000);
    big[0] = (char)0x81; /* garbage of the right size is enough */
    cr_assert_eq(req_once(d.addr[1], big, 6000, &u, 5000), 0);
    cr_assert(tmap_get(&u.data, "error", &err));
    cr_assert(strstr(err.via.str.ptr, "max_message") != NULL);
    msgpack_unpacked_destroy(&u);
    free(big);
    /* Query garbage too. */
    cr_assert_eq(req_once(d.addr[4], garbage, sizeof(garbage) - 1, &u, 5000),
                 0);
    cr_assert(tmap_get(&u.data, "error", &err));
    msgpack_unpacked_destroy(&u);
    /* One event cut short: the message is refused as malformed, it is not
     * taken for an event with a missing key. */
    tb_event(&t, "cut", T0, "chat", "contact.open", "s9", NULL);
    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size - 2, &u, 5000), 0);
    cr_assert(tmap_get(&u.data, "error", &err));
    cr_assert_eq(err.type, MSGPACK_OBJECT_STR);
    cr_assert(memmem(err.via.str.ptr, err.via.str.size, "malformed", 9) !=
              NULL);
    msgpack_unpacked_destroy(&u);
    tb_reset(&t);
    /* And valid work still goes through. */
    tb_event(&t, "ok", T0, "chat", "contact.open", "s1", NULL);
    send_acked(1);
    query_stats(&u);
    cr_assert_eq(tmap_int(&u.data, "engine/events/malformed_messages"), 4);
    cr_assert_eq(tmap_int(&u.data, "server/oversized_messages"), 1);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stop_daemon(), 0);
}

Test(daemon, fire_and_forget_ingest_is_applied) {
    nng_socket push;
    msgpack_unpacked u;
    int i, tries;

    start_daemon("[server]\ningest_io = thread\n");
    cr_assert_eq(nng_push0_open(&push), 0);
    cr_assert_eq(nng_dial(push, d.addr[0], NULL, 0), 0);
    for (i = 0; i < 50; i++) {
        char id[16], c[16];
        snprintf(id, sizeof(id), "p%d", i);
        snprintf(c, sizeof(c), "c%d", i);
        tb_reset(&t);
        tb_event(&t, id, T0, "social", "contact.open", c, NULL);
        cr_assert_eq(nng_send(push, t.sb.data, t.sb.size, 0), 0);
    }
    for (tries = 0; tries < 100; tries++) {
        int64_t n;
        query_stats(&u);
        n = tmap_int(&u.data, "engine/channels/social/open");
        msgpack_unpacked_destroy(&u);
        if (n == 50)
            break;
        nng_msleep(20);
    }
    cr_assert_lt(tries, 100, "PULL ingest did not apply 50 events");
    nng_close(push);
    cr_assert_eq(stop_daemon(), 0);
}

/* [hold] long is the hold clock's target: its breach arrives on time. */
Test(daemon, hold_breach_arrives_on_time) {
    nng_socket sub;
    msgpack_unpacked u;
    char *buf;
    size_t len;
    uint64_t held_at, got_at;
    int64_t due;

    start_daemon(ALERT_TIMING_CONF "[hold]\nlong = 1s\n");
    sub = subscribe_alerts("sla.breach");

    held_at = wall_ms();
    msgpack_pack_array(&t.pk, 2);
    tb_event(&t, "h1", (int64_t)held_at, "phone", "agent.answer", "call-7",
             "+15557654321");
    tb_event(&t, "h2", (int64_t)held_at, "phone", "hold.start", "call-7", NULL);
    send_acked(2);

    cr_assert_eq(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no sla.breach alert within 5 s");
    got_at = wall_ms();
    cr_assert_str_eq(buf, "sla.breach");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf + 11, len - 11, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u.data, "contact", "call-7"));
    cr_assert(tmap_str_is(&u.data, "clock", "hold"));
    due = tmap_int(&u.data, "due");
    cr_assert_eq(due, (int64_t)held_at + 1000);
    assert_on_time(got_at, due, "hold breach");
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);
    nng_close(sub);
    cr_assert_eq(stop_daemon(), 0);
}

/* Receives one SLA alert: its topic into topic, its map into u (which
 * refers into *buf: free it with nng_free(*buf, *len) after u), and the
 * wall-clock time it arrived. */
static uint64_t
recv_sla(nng_socket sub, char *topic, size_t n, msgpack_unpacked *u, char **buf,
         size_t *len) {
    uint64_t at;
    size_t tl;

    cr_assert_eq(nng_recv(sub, buf, len, NNG_FLAG_ALLOC), 0,
                 "no SLA alert within 5 s");
    at = wall_ms();
    tl = strlen(*buf);
    snprintf(topic, n, "%s", *buf);
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, *buf + tl + 1, *len - tl - 1, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    return at;
}

/* Receives the next SLA alert and checks it: topic, clock, contact (NULL:
 * not checked), due time, and that it came on time. */
static void
expect_sla(nng_socket sub, const char *topic, const char *clock,
           const char *contact, int64_t due) {
    msgpack_unpacked u;
    char got_topic[32], *buf, what[64];
    size_t len;
    uint64_t got = recv_sla(sub, got_topic, sizeof(got_topic), &u, &buf, &len);

    cr_assert_str_eq(got_topic, topic);
    cr_assert(tmap_str_is(&u.data, "clock", clock), "%s: not %s", topic, clock);
    if (contact != NULL)
        cr_assert(tmap_str_is(&u.data, "contact", contact), "%s: not %s", topic,
                  contact);
    cr_assert_eq(tmap_int(&u.data, "due"), due);
    snprintf(what, sizeof(what), "%s %s", clock, topic);
    assert_on_time(got, due, what);
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);
}

/* Checks that no alert arrives within ms. */
static void
expect_no_alert(nng_socket sub, int ms, const char *why) {
    char *buf;
    size_t len;

    nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, ms);
    cr_assert_eq(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), NNG_ETIMEDOUT, "%s",
                 why);
}

/* Short targets: the warning and the breach of a caller left waiting
 * arrive on the alert socket at their due times; a caller answered in
 * time raises nothing. */
Test(daemon, sla_answer_alerts_arrive_on_time) {
    nng_socket sub;
    uint64_t t0;
    int i;

    start_daemon(ALERT_TIMING_CONF "[sla.phone]\nanswer = 1s\nwarn = 50%\n");
    sub = subscribe_alerts("sla.");

    t0 = wall_ms();
    msgpack_pack_array(&t.pk, 2);
    for (i = 0; i < 2; i++) {
        char id[8], contact[16];
        snprintf(id, sizeof(id), "j%d", i);
        snprintf(contact, sizeof(contact), "call-%d", i);
        msgpack_pack_map(&t.pk, 6);
        tb_kv_str(&t, "id", id);
        tb_kv_int(&t, "ts", (int64_t)t0);
        tb_kv_str(&t, "channel", "phone");
        tb_kv_str(&t, "type", "queue.join");
        tb_kv_str(&t, "contact", contact);
        tb_kv_str(&t, "queue", "sales");
    }
    send_acked(2);
    /* call-1 is answered well within its target. */
    tb_reset(&t);
    tb_event(&t, "a1", (int64_t)t0 + 100, "phone", "agent.answer", "call-1",
             NULL);
    send_acked(1);

    expect_sla(sub, "sla.warning", "answer", "call-0", (int64_t)t0 + 500);
    expect_sla(sub, "sla.breach", "answer", "call-0", (int64_t)t0 + 1000);
    /* Nothing for the answered caller. */
    expect_no_alert(sub, 700, "an alert for the caller answered in time");
    nng_close(sub);
    cr_assert_eq(stop_daemon(), 0);
}

/* A chat's first response: the warning and the breach arrive on time for
 * the customer nobody answered; an agent's reply in time cancels the other
 * customer's clock. */
Test(daemon, sla_first_response_alerts_and_a_reply_cancels) {
    nng_socket sub;
    uint64_t t0;

    start_daemon(ALERT_TIMING_CONF
                 "[sla.chat]\nfirst_response = 1s\nwarn = 50%\n");
    sub = subscribe_alerts("sla.");

    t0 = wall_ms();
    msgpack_pack_array(&t.pk, 3);
    tb_event(&t, "c0", (int64_t)t0, "chat", "contact.open", "chat-0",
             "+15558880000");
    tb_event(&t, "c1", (int64_t)t0, "chat", "contact.open", "chat-1",
             "+15558880001");
    tb_event(&t, "r1", (int64_t)t0 + 100, "chat", "message.out", "chat-1",
             NULL);
    send_acked(3);

    expect_sla(sub, "sla.warning", "first_response", NULL, (int64_t)t0 + 500);
    expect_sla(sub, "sla.breach", "first_response", NULL, (int64_t)t0 + 1000);
    /* Nothing for the customer answered in time. */
    expect_no_alert(sub, 700, "an alert for the chat answered in time");
    nng_close(sub);
    cr_assert_eq(stop_daemon(), 0);
}

/* The resolution clock against the real daemon: a conversation nobody
 * answers warns and breaches at its due times; one whose agent replied
 * pauses until the customer writes again, and its alerts come later by
 * the pause; a resolved one raises nothing. */
Test(daemon, sla_resolution_alerts_count_agent_time_only) {
    static const struct {
        const char *conv, *alert;
        int64_t due;
    } want[] = {{"cv-1", "sla.warning", 1000},
                {"cv-1", "sla.breach", 2000},
                {"cv-2", "sla.warning", 2000},
                {"cv-2", "sla.breach", 3000}};
    bool seen[4] = {false, false, false, false};
    nng_socket sub;
    msgpack_unpacked u;
    char topic[32], *buf;
    size_t len;
    uint64_t t0, got;
    unsigned i, k;

    start_daemon(ALERT_TIMING_CONF
                 "[sla.chat]\nfirst_response = off\nnext_response = off\n"
                 "resolution = 2s\nwarn = 50%\n");
    sub = subscribe_alerts("sla.");

    t0 = wall_ms();
    msgpack_pack_array(&t.pk, 7);
    tb_event(&t, "o0", (int64_t)t0, "chat", "contact.open", "chat-0",
             "+15558881000");
    tb_event(&t, "o1", (int64_t)t0, "chat", "contact.open", "chat-1",
             "+15558881001");
    tb_event(&t, "o2", (int64_t)t0, "chat", "contact.open", "chat-2",
             "+15558881002");
    /* 200 ms counted, then a second's pause. */
    tb_event(&t, "r1", (int64_t)t0 + 200, "chat", "message.out", "chat-1",
             NULL);
    tb_event(&t, "i1", (int64_t)t0 + 1200, "chat", "message.in", "chat-1",
             NULL);
    tb_event(&t, "r2", (int64_t)t0 + 100, "chat", "message.out", "chat-2",
             NULL);
    tb_event(&t, "x2", (int64_t)t0 + 300, "chat", "conversation.resolve", NULL,
             "+15558881002");
    send_acked(7);

    for (k = 0; k < 4; k++) {
        int64_t due;
        got = recv_sla(sub, topic, sizeof(topic), &u, &buf, &len);
        cr_assert(tmap_str_is(&u.data, "clock", "resolution"));
        due = tmap_int(&u.data, "due") - (int64_t)t0;
        for (i = 0; i < 4; i++)
            if (!seen[i] &&
                tmap_str_is(&u.data, "conversation", want[i].conv) &&
                strcmp(topic, want[i].alert) == 0 && due == want[i].due)
                break;
        cr_assert_lt(i, 4, "unexpected %s due at t0 + %lld", topic,
                     (long long)due);
        seen[i] = true;
        assert_on_time(got, (int64_t)t0 + due, topic);
        msgpack_unpacked_destroy(&u);
        nng_free(buf, len);
    }
    /* Nothing for the resolved conversation. */
    expect_no_alert(sub, 700, "an alert for the resolved conversation");
    nng_close(sub);
    cr_assert_eq(stop_daemon(), 0);
}

/* Asks the daemon's query socket for the at_risk forecast of queue (NULL:
 * every queue); returns its list, unpacked into u. */
static msgpack_object
query_at_risk(const char *queue, int64_t limit, msgpack_unpacked *u) {
    struct tb q;
    msgpack_object a;

    tb_init(&q);
    msgpack_pack_map(&q.pk, 2 + (queue != NULL));
    tb_kv_str(&q, "q", "at_risk");
    if (queue != NULL)
        tb_kv_str(&q, "queue", queue);
    tb_kv_int(&q, "limit", limit);
    cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, u, 5000), 0);
    cr_assert(tmap_get(&u->data, "at_risk", &a), "no at_risk in the reply");
    tb_fini(&q);
    return a;
}

/* The forecast query and its contactctl command, against the real
 * daemon. */
Test(daemon, at_risk_query_ranks_waiting_callers) {
    msgpack_unpacked u;
    msgpack_object a;
    struct tb q;
    char cmd[512], out[8192];
    uint64_t now;
    size_t got;
    FILE *p;
    int i;

    start_daemon("[sla.phone]\nanswer = 60s\n");
    now = wall_ms();
    msgpack_pack_array(&t.pk, 2);
    for (i = 0; i < 2; i++) {
        msgpack_pack_map(&t.pk, 6);
        tb_kv_str(&t, "id", i ? "j1" : "j0");
        /* call-b joined earlier: nearer its breach. */
        tb_kv_int(&t, "ts", (int64_t)now - (i ? 30000 : 0));
        tb_kv_str(&t, "channel", "phone");
        tb_kv_str(&t, "type", "queue.join");
        tb_kv_str(&t, "contact", i ? "call-b" : "call-a");
        tb_kv_str(&t, "queue", "sales");
    }
    send_acked(2);

    a = query_at_risk("sales", 5, &u);
    cr_assert_eq(a.via.array.size, 2);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "contact", "call-b"));
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "contact", "call-a"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"),
                 (int64_t)now + 30000);
    msgpack_unpacked_destroy(&u);

    /* A chat customer who wrote 50 s ago waits for a first response (1
     * min): every queue's forecast puts that conversation first, walked
     * over the daemon's loop turns. */
    tb_reset(&t);
    tb_event(&t, "m0", (int64_t)now - 50000, "chat", "message.in", "chat-a",
             "+15558882000");
    send_acked(1);
    a = query_at_risk(NULL, 4, &u);
    cr_assert_eq(a.via.array.size, 4);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "clock", "first_response"));
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "conversation", "cv-1"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"),
                 (int64_t)now + 10000);
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "contact", "call-b"));
    cr_assert(tmap_str_is(&a.via.array.ptr[2], "contact", "call-a"));
    cr_assert(tmap_str_is(&a.via.array.ptr[3], "clock", "resolution"));
    msgpack_unpacked_destroy(&u);

    /* Bad queries get a reason. */
    tb_init(&q);
    msgpack_pack_map(&q.pk, 1);
    tb_kv_str(&q, "q", "sla");
    cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, &u, 5000), 0);
    cr_assert(tmap_get(&u.data, "error", &a));
    msgpack_unpacked_destroy(&u);
    tb_fini(&q);

    snprintf(cmd, sizeof(cmd), "%s --config %s at-risk --queue sales --limit 1",
             CONTACTCTL_BIN, d.conf);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = '\0';
    cr_assert_eq(pclose(p), 0, "contactctl at-risk failed: %s", out);
    cr_assert_not_null(strstr(out, "call-b"), "%s", out);
    cr_assert_null(strstr(out, "call-a"), "--limit 1 printed two: %s", out);

    /* The queue's service-level figures: two callers offered. */
    snprintf(cmd, sizeof(cmd), "%s --config %s queue --queue sales",
             CONTACTCTL_BIN, d.conf);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = '\0';
    cr_assert_eq(pclose(p), 0, "contactctl queue failed: %s", out);
    cr_assert_not_null(strstr(out, "\"offered\": 2"), "%s", out);
    cr_assert_not_null(strstr(out, "\"waiting\": 2"), "%s", out);
    {
        /* call-b's event says it joined 30 s ago. */
        const char *lw = strstr(out, "\"longest_wait_ms\": ");
        cr_assert_not_null(lw, "%s", out);
        cr_assert_geq(atoll(lw + 19), 30000, "%s", out);
    }
    cr_assert_eq(stop_daemon(), 0);
}

Test(daemon, callback_offer_reaches_a_callback_system) {
    nng_socket pull;
    msgpack_unpacked u;
    char *buf;
    size_t len;
    uint64_t now;

    start_daemon("[callback]\noffer_after_waiting = 1s\n");
    cr_assert_eq(nng_pull0_open(&pull), 0);
    nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, 5000);
    cr_assert_eq(nng_dial(pull, d.addr[3], NULL, 0), 0);
    now = wall_ms();
    msgpack_pack_map(&t.pk, 7);
    tb_kv_str(&t, "id", "q1");
    tb_kv_int(&t, "ts", (int64_t)now);
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "queue.join");
    tb_kv_str(&t, "contact", "call-9");
    tb_kv_str(&t, "queue", "billing");
    tb_str(&t, "customer");
    msgpack_pack_map(&t.pk, 1);
    tb_kv_str(&t, "phone", "+15550009");
    send_acked(1);
    cr_assert_eq(nng_recv(pull, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no callback trigger within 5 s");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf, len, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u.data, "type", "callback.offer"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550009"));
    cr_assert(tmap_str_is(&u.data, "queue", "billing"));
    cr_assert_eq(tmap_int(&u.data, "position"), 1);
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);
    nng_close(pull);
    cr_assert_eq(stop_daemon(), 0);
}

/* Packs one phone event into t: contact, and a queue, agent, state and
 * phone number when not NULL (agent.status serves `queue`). */
static void
pack_phone_event(const char *id, uint64_t ts, const char *type,
                 const char *contact, const char *queue, const char *agent,
                 const char *state, const char *phone) {
    bool status = strcmp(type, "agent.status") == 0;

    msgpack_pack_map(&t.pk, 4 + (contact != NULL) + (queue != NULL) +
                                (agent != NULL) + (state != NULL) +
                                (phone != NULL));
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", (int64_t)ts);
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", type);
    if (contact != NULL)
        tb_kv_str(&t, "contact", contact);
    if (queue != NULL && status) {
        tb_str(&t, "queues");
        msgpack_pack_array(&t.pk, 1);
        tb_str(&t, queue);
    } else if (queue != NULL) {
        tb_kv_str(&t, "queue", queue);
    }
    if (agent != NULL)
        tb_kv_str(&t, "agent", agent);
    if (state != NULL)
        tb_kv_str(&t, "state", state);
    if (phone != NULL) {
        tb_str(&t, "customer");
        msgpack_pack_map(&t.pk, 1);
        tb_kv_str(&t, "phone", phone);
    }
}

/* Receives one trigger of type `type` on pull within timeout_ms, into u,
 * which borrows the message (held in trig until the next call). */
static char *trig;
static size_t trig_len;

static int
recv_trigger(nng_socket pull, const char *type, int timeout_ms,
             msgpack_unpacked *u) {
    int rc;

    if (trig != NULL)
        nng_free(trig, trig_len);
    trig = NULL;
    nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, timeout_ms);
    rc = nng_recv(pull, &trig, &trig_len, NNG_FLAG_ALLOC);
    if (rc != 0)
        return rc;
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, trig, trig_len, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u->data, "type", type), "expected %s", type);
    return 0;
}

/* Closes a callback system's socket and frees the last trigger. */
static void
close_pull(nng_socket pull) {
    if (trig != NULL)
        nng_free(trig, trig_len);
    trig = NULL;
    nng_close(pull);
}

/*
 * One agent, busy, with a 300 s handle time: a caller who joins with
 * nobody ahead waits for one completion, a median of 208 s, over the
 * 2 min threshold: offered at once. Once accepted, its place is at the
 * head but its turn is still minutes away (past the 30 s lead): no dial
 * until the agent is free, and then at once.
 */
Test(daemon, estimate_over_threshold_offers_and_accepting_dials) {
    nng_socket pull;
    msgpack_unpacked u;
    uint64_t now;
    char id[16];
    int i;

    start_daemon("[callback]\noffer_when_wait_over = 2m\n"
                 "offer_when_position_over = 0\noffer_after_waiting = 0\n"
                 "dial_lead = 30s\n");
    cr_assert_eq(nng_pull0_open(&pull), 0);
    cr_assert_eq(nng_dial(pull, d.addr[3], NULL, 0), 0);
    now = wall_ms();
    tb_reset(&t);
    msgpack_pack_array(&t.pk, 1 + 3 * 3);
    pack_phone_event("s1", now - 400000, "agent.status", NULL, "billing", "ann",
                     "busy", NULL);
    for (i = 0; i < 3; i++) {
        char c[8];
        snprintf(c, sizeof(c), "w%d", i);
        snprintf(id, sizeof(id), "wj%d", i);
        pack_phone_event(id, now - 400000, "queue.join", c, "billing", NULL,
                         NULL, NULL);
        snprintf(id, sizeof(id), "wa%d", i);
        pack_phone_event(id, now - 400000, "agent.answer", c, NULL, "ann", NULL,
                         NULL);
        snprintf(id, sizeof(id), "wc%d", i);
        pack_phone_event(id, now - 100000, "contact.close", c, NULL, NULL, NULL,
                         NULL);
    }
    send_acked(10);
    tb_reset(&t);
    pack_phone_event("j1", now, "queue.join", "call-1", "billing", NULL, NULL,
                     "+15550101");
    send_acked(1);
    cr_assert_eq(recv_trigger(pull, "callback.offer", 5000, &u), 0,
                 "no offer within 5 s");
    cr_assert(tmap_str_is(&u.data, "rule", "estimate"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550101"));
    cr_assert_geq(tmap_int(&u.data, "ewt_ms"), 200000);
    cr_assert_gt(tmap_int(&u.data, "window/to"), (int64_t)now + 200000);
    msgpack_unpacked_destroy(&u);

    tb_reset(&t);
    pack_phone_event("acc", now + 1, "callback.accepted", "call-1", NULL, NULL,
                     NULL, NULL);
    send_acked(1);
    cr_assert_neq(recv_trigger(pull, "callback.dial", 300, &u), 0,
                  "dialled while its turn was minutes away");
    tb_reset(&t);
    pack_phone_event("s2", wall_ms(), "agent.status", NULL, NULL, "ann",
                     "available", NULL);
    send_acked(1);
    cr_assert_eq(recv_trigger(pull, "callback.dial", 5000, &u), 0,
                 "no dial within 5 s of the agent's freeing");
    cr_assert(tmap_str_is(&u.data, "contact", "call-1"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550101"));
    cr_assert_eq(tmap_int(&u.data, "attempt"), 1);
    msgpack_unpacked_destroy(&u);
    close_pull(pull);
    cr_assert_eq(stop_daemon(), 0);
}

/* A trigger made while no callback system is connected waits in the
 * backlog and is sent when one connects. */
Test(daemon, triggers_wait_for_a_callback_system) {
    nng_socket pull;
    msgpack_unpacked u;
    uint64_t now;

    start_daemon("[callback]\noffer_when_position_over = 1\n"
                 "offer_after_waiting = 0\n");
    now = wall_ms();
    tb_reset(&t);
    msgpack_pack_array(&t.pk, 2);
    pack_phone_event("b1", now, "queue.join", "call-1", "billing", NULL, NULL,
                     NULL);
    pack_phone_event("b2", now, "queue.join", "call-2", "billing", NULL, NULL,
                     "+15550102");
    send_acked(2);
    {
        int64_t held = -1;
        int tries;
        for (tries = 0; tries < 100 && held != 1; tries++) {
            nng_msleep(20);
            query_stats(&u);
            held = tmap_int(&u.data, "server/callbacks_backlog");
            msgpack_unpacked_destroy(&u);
        }
        cr_assert_eq(held, 1, "the offer is not waiting in the backlog");
    }
    cr_assert_eq(nng_pull0_open(&pull), 0);
    cr_assert_eq(nng_dial(pull, d.addr[3], NULL, 0), 0);
    cr_assert_eq(recv_trigger(pull, "callback.offer", 5000, &u), 0,
                 "the waiting offer was not sent within 5 s of connecting");
    cr_assert(tmap_str_is(&u.data, "contact", "call-2"));
    msgpack_unpacked_destroy(&u);
    close_pull(pull);
    cr_assert_eq(stop_daemon(), 0);
}

Test(daemon, sighup_reloads_and_bad_config_is_refused) {
    int status;
    pid_t pid;
    FILE *f;
    char bad[64];

    start_daemon(NULL);
    kill(d.pid, SIGHUP);
    nng_msleep(100);
    cr_assert_eq(kill(d.pid, 0), 0, "contactd died on SIGHUP");
    cr_assert_eq(stop_daemon(), 0);

    snprintf(bad, sizeof(bad), "/tmp/contactd-bad-%d.conf", (int)getpid());
    f = fopen(bad, "w");
    fprintf(f, "[hold]\nlong = forever\n");
    fclose(f);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(CONTACTD_BIN, "contactd", "--check-config", "--config", bad,
              (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    unlink(bad);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 1);
}

/* Waits up to 5 s for stats' server/memory_reserve_bytes to read want. */
static int64_t
await_reserve(int64_t want) {
    msgpack_unpacked u;
    int64_t n = -1;
    int tries;

    for (tries = 0; tries < 250 && n != want; tries++) {
        if (tries != 0)
            nng_msleep(20);
        query_stats(&u);
        n = tmap_int(&u.data, "server/memory_reserve_bytes");
        msgpack_unpacked_destroy(&u);
    }
    return n;
}

/* The reserve is faulted in at start by a worker thread and follows
 * [server] memory_reserve on SIGHUP, up and down. */
Test(daemon, memory_reserve_is_filled_and_follows_reload) {
    start_daemon("memory_reserve = 4MiB\n");
    cr_assert_eq(await_reserve(4 << 20), 4 << 20);
    write_conf("memory_reserve = 10MiB\n");
    kill(d.pid, SIGHUP);
    cr_assert_eq(await_reserve(10 << 20), 10 << 20);
    write_conf("memory_reserve = 2MiB\n");
    kill(d.pid, SIGHUP);
    cr_assert_eq(await_reserve(2 << 20), 2 << 20);
    cr_assert_eq(stop_daemon(), 0);
}

/* One contact.open with a customer map of an email and/or a phone. */
static void
send_open(const char *id, int64_t ts, const char *channel, const char *contact,
          const char *email, const char *phone, msgpack_unpacked *u) {
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6);
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", ts);
    tb_kv_str(&t, "channel", channel);
    tb_kv_str(&t, "type", "contact.open");
    tb_kv_str(&t, "contact", contact);
    tb_str(&t, "customer");
    msgpack_pack_map(&t.pk, (email != NULL) + (phone != NULL));
    if (email != NULL)
        tb_kv_str(&t, "email", email);
    if (phone != NULL)
        tb_kv_str(&t, "phone", phone);
    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size, u, 5000), 0);
    cr_assert_eq(tmap_int(&u->data, "accepted"), 1, "%s was not accepted", id);
}

/* The reply's conversations[0]: its id into conv, its context map. */
static msgpack_object
reply_context(const msgpack_unpacked *u, char *conv, size_t n) {
    msgpack_object a, m, v;
    cr_assert(tmap_get(&u->data, "conversations", &a));
    cr_assert_eq(a.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(a.via.array.size, 1);
    m = a.via.array.ptr[0];
    cr_assert(tmap_get(&m, "conversation", &v));
    cr_assert_eq(v.type, MSGPACK_OBJECT_STR);
    snprintf(conv, n, "%.*s", (int)v.via.str.size, v.via.str.ptr);
    cr_assert(tmap_get(&m, "context", &v));
    return v;
}

static void
assert_channels(const msgpack_object *ctx, const char *const *want,
                uint32_t n) {
    msgpack_object a;
    uint32_t i;
    cr_assert(tmap_get(ctx, "channels", &a));
    cr_assert_eq(a.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(a.via.array.size, n);
    for (i = 0; i < n; i++) {
        const msgpack_object *s = &a.via.array.ptr[i];
        cr_assert(s->type == MSGPACK_OBJECT_STR &&
                      s->via.str.size == strlen(want[i]) &&
                      memcmp(s->via.str.ptr, want[i], s->via.str.size) == 0,
                  "channel %u is not %s", i, want[i]);
    }
}

Test(daemon, email_then_chat_then_call_is_one_conversation) {
    static const char *const three[] = {"email", "chat", "phone"};
    nng_socket sub;
    msgpack_unpacked u;
    msgpack_object ctx;
    char conv[32], conv2[32], *buf, cmd[512], out[8192];
    size_t len, got;
    FILE *p;
    int64_t now = (int64_t)wall_ms();

    start_daemon(NULL);
    sub = subscribe_alerts("continuity.");

    /* An email, written as a mail client would put it. */
    send_open("m1", now, "email", "<1234@mail.example>",
              "Ann Lee <Ann.Lee@Example.COM>", NULL, &u);
    ctx = reply_context(&u, conv, sizeof(conv));
    cr_assert_eq(tmap_int(&ctx, "contacts"), 1);
    msgpack_unpacked_destroy(&u);

    /* A chat from the same address, which also gives a phone number. */
    send_open("c1", now + 60000, "chat", "chat-9", "ann.lee@example.com",
              "(555) 123-4567", &u);
    reply_context(&u, conv2, sizeof(conv2));
    cr_assert_str_eq(conv2, conv);
    msgpack_unpacked_destroy(&u);

    /* A call from that number, written another way. */
    send_open("p1", now + 120000, "phone", "call-3", NULL, "+1 555-123-4567",
              &u);
    ctx = reply_context(&u, conv2, sizeof(conv2));
    cr_assert_str_eq(conv2, conv);
    assert_channels(&ctx, three, 3);
    cr_assert_eq(tmap_int(&ctx, "contacts"), 3);
    cr_assert_eq(tmap_int(&ctx, "measures/repeats"), 2);
    cr_assert_eq(tmap_int(&ctx, "measures/switches"), 2);
    msgpack_unpacked_destroy(&u);

    /* Two repeats: the chat, then the call, each more urgent. */
    cr_assert_eq(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no continuity.repeat alert for the chat");
    cr_assert_str_eq(buf, "continuity.repeat");
    nng_free(buf, len);
    cr_assert_eq(nng_recv(sub, &buf, &len, NNG_FLAG_ALLOC), 0,
                 "no continuity.repeat alert for the call");
    cr_assert_str_eq(buf, "continuity.repeat");
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, buf + 18, len - 18, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert(tmap_str_is(&u.data, "conversation", conv));
    cr_assert(tmap_str_is(&u.data, "contact", "call-3"));
    cr_assert(tmap_str_is(&u.data, "channel", "phone"));
    cr_assert_eq(tmap_int(&u.data, "repeat"), 2);
    cr_assert_eq(tmap_int(&u.data, "priority"), 2);
    cr_assert_eq(tmap_int(&u.data, "attempts"), 3);
    cr_assert_eq(tmap_int(&u.data, "since_first_ms"), 120000);
    assert_channels(&u.data, three, 3);
    msgpack_unpacked_destroy(&u);
    nng_free(buf, len);
    nng_close(sub);

    /* The query socket finds it by any identifier, in any form. */
    {
        struct tb q;
        tb_init(&q);
        msgpack_pack_map(&q.pk, 2);
        tb_kv_str(&q, "q", "conversation");
        tb_str(&q, "customer");
        msgpack_pack_map(&q.pk, 1);
        tb_kv_str(&q, "email", " ANN.LEE@example.com");
        cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, &u, 5000), 0);
        cr_assert(tmap_str_is(&u.data, "conversation", conv));
        assert_channels(&u.data, three, 3);
        msgpack_unpacked_destroy(&u);
        tb_reset(&q);
        msgpack_pack_map(&q.pk, 2);
        tb_kv_str(&q, "q", "conversation");
        tb_kv_str(&q, "id", "cv-999999");
        cr_assert_eq(req_once(d.addr[4], q.sb.data, q.sb.size, &u, 5000), 0);
        cr_assert(tmap_get(&u.data, "error", &ctx));
        msgpack_unpacked_destroy(&u);
        tb_fini(&q);
    }

    /* And contactctl prints it. */
    snprintf(cmd, sizeof(cmd), "%s --config %s conversation --phone 5551234567",
             CONTACTCTL_BIN, d.conf);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = '\0';
    cr_assert_eq(pclose(p), 0, "contactctl conversation failed: %s", out);
    cr_assert_not_null(strstr(out, conv), "no %s in: %s", conv, out);
    cr_assert_not_null(strstr(out, "\"contact_history\""));

    /* A phone number with letters is refused with the reason. */
    tb_reset(&t);
    tb_event(&t, "bad1", now, "phone", "contact.open", "call-x",
             "555-CALL-NOW");
    cr_assert_eq(req_once(d.addr[1], t.sb.data, t.sb.size, &u, 5000), 0);
    cr_assert_eq(tmap_int(&u.data, "accepted"), 0);
    {
        msgpack_object r;
        cr_assert(tmap_get(&u.data, "rejected", &r));
        cr_assert_eq(r.via.array.size, 1);
        cr_assert(tmap_str_is(&r.via.array.ptr[0], "code", "bad_value"));
    }
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stop_daemon(), 0);
}
