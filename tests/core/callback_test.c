/*
 * Callbacks with a manual clock: each offer rule and each gate, identity
 * de-duplication across channels, acceptance and its refusals, the place
 * kept under priorities, dialling within the lead time, scheduled
 * callbacks, retries, overdue promises, cancellation when the customer is
 * served elsewhere, and the per-queue sections of the configuration.
 */
#include <criterion/criterion.h>

#include "config.h"
#include "engine.h"
#include "engine_int.h"
#include "testutil.h"

TestSuite(callback);

#define FRI_10 1795168800000LL /* Friday 2026-11-20 10:00 UTC */
#define FRI_1658 1795193880000LL
#define FRI_18 1795197600000LL
#define MON_09 1795424400000LL
#define SEC 1000LL
#define MIN 60000LL

static struct cc_engine *e;
static struct cc_ingest_report rep;
static struct tb t;
static unsigned seq;

/* An engine configured by text (callback sections, calendars), with the
 * phone answer clock off so that the outbox holds callbacks alone. */
static void
start(const char *text) {
    struct cc_engine_config c;
    struct cc_config *cfg = calloc(1, sizeof(*cfg));
    char buf[4096], err[512] = "";

    cr_assert_not_null(cfg);
    snprintf(buf, sizeof(buf), "[sla.phone]\nanswer = off\n%s", text);
    cc_config_defaults(cfg);
    cr_assert_eq(cc_config_load_string(cfg, buf, "t", err, sizeof(err)), 0,
                 "%s", err);
    cc_engine_config_defaults(&c);
    c.dedup_window = 1000;
    c.max_contacts = 1000;
    c.sla = &cfg->sla;
    c.cb = cfg->cb;
    cr_assert_eq(cc_engine_new(&e, &c, (uint64_t)FRI_10), 0);
    free(cfg);
    tb_init(&t);
    seq = 0;
}

static void
teardown(void) {
    cc_engine_free(e);
    cc_ingest_report_fini(&rep);
    tb_fini(&t);
}

/* What an event may carry besides its type and contact. */
struct opt {
    const char *channel; /* NULL: phone */
    const char *queue, *agent, *phone, *email, *reason;
    int64_t at, wrapup;
    int prio1; /* priority + 1; 0: none */
};

static char
send_ev(int64_t ts, const char *type, const char *contact, struct opt o) {
    char id[32];
    uint32_t n = 4;

    n += (contact != NULL) + (o.queue != NULL) + (o.agent != NULL) +
         (o.phone != NULL || o.email != NULL) + (o.reason != NULL) +
         (o.at != 0) + (o.prio1 != 0) + (o.wrapup != 0);
    snprintf(id, sizeof(id), "e%u", ++seq);
    tb_reset(&t);
    msgpack_pack_map(&t.pk, n);
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", ts);
    tb_kv_str(&t, "channel", o.channel ? o.channel : "phone");
    tb_kv_str(&t, "type", type);
    if (contact != NULL)
        tb_kv_str(&t, "contact", contact);
    if (o.queue != NULL)
        tb_kv_str(&t, "queue", o.queue);
    if (o.agent != NULL)
        tb_kv_str(&t, "agent", o.agent);
    if (o.reason != NULL)
        tb_kv_str(&t, "reason", o.reason);
    if (o.at != 0)
        tb_kv_int(&t, "at", o.at);
    if (o.wrapup != 0)
        tb_kv_int(&t, "wrapup_ms", o.wrapup);
    if (o.prio1 != 0)
        tb_kv_int(&t, "priority", o.prio1 - 1);
    if (o.phone != NULL || o.email != NULL) {
        tb_str(&t, "customer");
        msgpack_pack_map(&t.pk, (o.phone != NULL) + (o.email != NULL));
        if (o.phone != NULL)
            tb_kv_str(&t, "phone", o.phone);
        if (o.email != NULL)
            tb_kv_str(&t, "email", o.email);
    }
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_null(rep.error);
    cr_assert_eq(rep.events, 1);
    return rep.accepted ? 'a' : rep.duplicates ? 'd' : 'r';
}

#define EV(ts, type, contact, ...)                                             \
    send_ev((ts), (type), (contact), (struct opt){__VA_ARGS__})

/* The reason the last event was refused. */
static const char *
refused_why(void) {
    cr_assert_eq(rep.rejected, 1);
    return rep.rej[0].rej.detail;
}

static void
agent(int64_t ts, const char *name, const char *state, const char *queue) {
    char id[32];

    snprintf(id, sizeof(id), "a%u", ++seq);
    tb_reset(&t);
    tb_agent_status(&t, id, ts, name, state, &queue, 1);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_eq(rep.accepted, 1);
}

/* n callers of queue q answered at once and closed handle_ms later, from
 * ts: the queue's handle time. They have no phone: never offered. */
static int64_t
warm(int64_t ts, const char *q, int n, int64_t handle_ms) {
    char id[32];
    int i;

    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "w%u", ++seq);
        cr_assert_eq(EV(ts, "queue.join", id, .queue = q), 'a');
        cr_assert_eq(EV(ts, "agent.answer", id, .agent = "ann"), 'a');
        cr_assert_eq(EV(ts + handle_ms, "contact.close", id), 'a');
    }
    return ts + handle_ms;
}

/* An engine under text whose queue q has one agent, ann, busy, and a
 * 300 s handle time; returns the time the warm-up ended. */
static int64_t
busy_queue(const char *text, const char *q) {
    int64_t ts;

    start(text);
    agent(FRI_10, "ann", "busy", q);
    ts = warm(FRI_10, q, 3, 300 * SEC);
    cc_outbox_clear(cc_engine_outbox(e));
    return ts;
}

/* The outbox's records named `name` ("type" of a trigger, "alert" of an
 * alert). */
static int
out_count(const char *name) {
    struct cc_outbox *ob = cc_engine_outbox(e);
    uint32_t i;
    int n = 0;

    for (i = 0; i < ob->n; i++) {
        const char *data = cc_outbox_data(ob, &ob->v[i]);
        size_t off = ob->v[i].kind == CC_OUT_ALERT ? strlen(data) + 1 : 0;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        cr_assert_eq(
            msgpack_unpack_next(&u, data + off, ob->v[i].len - off, NULL),
            MSGPACK_UNPACK_SUCCESS);
        n += tmap_str_is(&u.data, "type", name) ||
             tmap_str_is(&u.data, "alert", name);
        msgpack_unpacked_destroy(&u);
    }
    return n;
}

/* Unpacks the last record named `name` into u (asserts there is one). */
static void
out_last(const char *name, msgpack_unpacked *u) {
    struct cc_outbox *ob = cc_engine_outbox(e);
    uint32_t i;

    for (i = ob->n; i-- > 0;) {
        const char *data = cc_outbox_data(ob, &ob->v[i]);
        size_t off = ob->v[i].kind == CC_OUT_ALERT ? strlen(data) + 1 : 0;
        msgpack_unpacked_init(u);
        cr_assert_eq(
            msgpack_unpack_next(u, data + off, ob->v[i].len - off, NULL),
            MSGPACK_UNPACK_SUCCESS);
        if (tmap_str_is(&u->data, "type", name) ||
            tmap_str_is(&u->data, "alert", name))
            return;
        msgpack_unpacked_destroy(u);
    }
    cr_assert_fail("no %s in the outbox", name);
}

static void
clear(void) {
    cc_outbox_clear(cc_engine_outbox(e));
}

static int64_t
stat_int(const char *path) {
    return tstat_int(e, path);
}

/* The queue query's answer, unpacked into u. */
static void
queue_query(const char *q, msgpack_sbuffer *sb, msgpack_unpacked *u) {
    msgpack_packer pk;
    const char *why = NULL;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    cr_assert_eq(
        cc_engine_pack_service_level(e, (struct cc_str){q, (uint32_t)strlen(q)},
                                     (struct cc_str){NULL, 0}, 100, &pk, &why),
        0, "%s", why);
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, sb->data, sb->size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
}

/* ---- offers ------------------------------------------------------------ */

/* One agent, busy; a 300 s handle time: a caller with nobody ahead waits
 * for one completion, exponential with mean 300 s: median 300 ln 2 =
 * 207.9 s, over the 2 min threshold. */
Test(callback, offered_when_the_estimate_is_over_the_threshold,
     .fini = teardown) {
    msgpack_unpacked u;
    int64_t ts;

    ts = busy_queue("[callback]\noffer_when_position_over = 0\n"
                    "offer_after_waiting = 0\n",
                    "sales");
    cr_assert_eq(EV(ts, "queue.join", "x1", .queue = "sales",
                    .phone = "+1 (555) 010-0001"),
                 'a');
    cr_assert_eq(out_count("callback.offer"), 1);
    out_last("callback.offer", &u);
    cr_assert(tmap_str_is(&u.data, "rule", "estimate"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550100001"));
    cr_assert_eq(tmap_int(&u.data, "position"), 1);
    cr_assert_geq(tmap_int(&u.data, "ewt_ms"), 200000);
    cr_assert_leq(tmap_int(&u.data, "ewt_ms"), 216000);
    /* The promise: by the estimate's p80 and the 5 min margin. */
    cr_assert_eq(tmap_int(&u.data, "window/from"), ts);
    cr_assert_eq(tmap_int(&u.data, "window/to"),
                 ts + tmap_int(&u.data, "ewt_p80_ms") + 5 * MIN);
    cr_assert_eq(tmap_int(&u.data, "expires"), ts + MIN);
    cr_assert(
        tmap_str_is(&u.data, "id", "callback.offer:phone:x1:1795169100000"));
    msgpack_unpacked_destroy(&u);
    /* A caller with no phone number is never offered one. */
    clear();
    cr_assert_eq(EV(ts, "queue.join", "x2", .queue = "sales"), 'a');
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("queues/sales/callbacks/offers"), 1);
    cr_assert_eq(stat_int("callbacks/offered_callers"), 1);
}

Test(callback, offered_past_a_place_in_line, .fini = teardown) {
    msgpack_unpacked u;
    int i;

    start("[callback]\noffer_when_position_over = 3\n"
          "offer_after_waiting = 0\n");
    for (i = 1; i <= 4; i++) {
        char c[8], ph[16];
        snprintf(c, sizeof(c), "p%d", i);
        snprintf(ph, sizeof(ph), "+1555010000%d", i);
        cr_assert_eq(
            EV(FRI_10 + i, "queue.join", c, .queue = "sales", .phone = ph),
            'a');
        cr_assert_eq(out_count("callback.offer"), i == 4);
    }
    out_last("callback.offer", &u);
    cr_assert(tmap_str_is(&u.data, "rule", "position"));
    cr_assert(tmap_str_is(&u.data, "contact", "p4"));
    cr_assert_eq(tmap_int(&u.data, "position"), 4);
    /* No agent known: no estimate, and a promise of promise_max. */
    cr_assert(tmap_is_nil(&u.data, "ewt_ms"));
    cr_assert_eq(tmap_int(&u.data, "window/to"), FRI_10 + 4 + 65 * MIN);
    msgpack_unpacked_destroy(&u);
}

Test(callback, offered_after_waiting, .fini = teardown) {
    msgpack_unpacked u;

    start("[callback.queue.sales]\noffer_after_waiting = 90s\n");
    cr_assert_eq(EV(FRI_10, "queue.join", "p1", .queue = "sales",
                    .phone = "+15550100001"),
                 'a');
    cc_engine_tick(e, (uint64_t)(FRI_10 + 90 * SEC - 1));
    cr_assert_eq(out_count("callback.offer"), 0);
    cc_engine_tick(e, (uint64_t)(FRI_10 + 90 * SEC));
    out_last("callback.offer", &u);
    cr_assert(tmap_str_is(&u.data, "rule", "waited"));
    cr_assert_eq(tmap_int(&u.data, "waited_ms"), 90 * SEC);
    msgpack_unpacked_destroy(&u);
    /* Other queues keep [callback]'s 3 min. */
    clear();
    cr_assert_eq(EV(FRI_10 + 100 * SEC, "queue.join", "p2", .queue = "other",
                    .phone = "+15550100002"),
                 'a');
    cc_engine_tick(e, (uint64_t)(FRI_10 + 100 * SEC + 3 * MIN - 1));
    cr_assert_eq(out_count("callback.offer"), 0);
    cc_engine_tick(e, (uint64_t)(FRI_10 + 100 * SEC + 3 * MIN));
    cr_assert_eq(out_count("callback.offer"), 1);
}

/* A caller ahead (no phone) and callers behind it who are offered by
 * position. */
static const char pos1[] = "[callback]\noffer_when_position_over = 1\n"
                           "offer_after_waiting = 0\n";

static void
caller_ahead(int64_t ts, const char *q) {
    cr_assert_eq(EV(ts, "queue.join", "w0", .queue = q), 'a');
}

/* An engine under pos1 where w0 waits and p1, behind it, accepted a
 * callback at FRI_10 + 2 (its customer with `email` when not NULL). */
static void
place_p1(const char *email) {
    start(pos1);
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001", .email = email);
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1"), 'a');
}

Test(callback, one_pending_callback_per_customer_on_any_channel,
     .fini = teardown) {
    start(pos1);
    caller_ahead(FRI_10, "sales");
    cr_assert_eq(EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
                    .phone = "+15550100001", .email = "ann@example.com"),
                 'a');
    cr_assert_eq(out_count("callback.offer"), 1);
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1"), 'a');
    clear();
    /* The same customer, by her email, from another number into another
     * queue: no second callback. */
    cr_assert_eq(EV(FRI_10 + 3, "queue.join", "w1", .queue = "billing"), 'a');
    cr_assert_eq(EV(FRI_10 + 4, "queue.join", "p2", .queue = "billing",
                    .phone = "+15550100002", .email = "ann@example.com"),
                 'a');
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("callbacks/gated/pending_callback"), 1);
    /* Someone else is offered one. */
    cr_assert_eq(EV(FRI_10 + 5, "queue.join", "p3", .queue = "billing",
                    .phone = "+15550100003"),
                 'a');
    cr_assert_eq(out_count("callback.offer"), 1);
}

Test(callback, no_offer_past_max_pending, .fini = teardown) {
    start("[callback]\noffer_when_position_over = 1\noffer_after_waiting = 0\n"
          "max_pending = 1\n");
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1"), 'a');
    clear();
    EV(FRI_10 + 3, "queue.join", "p2", .queue = "sales",
       .phone = "+15550100002");
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("callbacks/gated/max_pending"), 1);
    cr_assert_eq(stat_int("queues/sales/callbacks/pending"), 1);
}

/* Pending callbacks times the handle time over the agents staffed: one
 * callback of 300 s for one agent is past a 4 min horizon. */
Test(callback, no_offer_past_the_projected_load, .fini = teardown) {
    int64_t ts;

    start("[callback]\noffer_when_position_over = 1\noffer_after_waiting = 0\n"
          "load_horizon = 4m\n");
    agent(FRI_10, "ann", "busy", "sales");
    ts = warm(FRI_10, "sales", 2, 300 * SEC);
    clear();
    caller_ahead(ts, "sales");
    EV(ts + 1, "queue.join", "p1", .queue = "sales", .phone = "+15550100001");
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("callbacks/gated/projected_load"), 1);
    /* Two agents share it: 150 s each, within the horizon. */
    agent(ts + 2, "bob", "busy", "sales");
    EV(ts + 3, "queue.join", "p2", .queue = "sales", .phone = "+15550100002");
    cr_assert_eq(out_count("callback.offer"), 1);
}

static const char office[] =
    "[calendar.office]\ntimezone = UTC\nmon = 09:00-17:00\n"
    "tue = 09:00-17:00\nwed = 09:00-17:00\nthu = 09:00-17:00\n"
    "fri = 09:00-17:00\nsat = closed\nsun = closed\n";

Test(callback, no_offer_that_business_hours_would_break, .fini = teardown) {
    char text[1024];
    int64_t ts;

    snprintf(text, sizeof(text),
             "%s[callback]\noffer_when_position_over = 0\n"
             "offer_after_waiting = 0\ncalendar = office\n",
             office);
    ts = busy_queue(text, "sales");
    /* At 10:05 there is time for a 3.5 min wait. */
    EV(ts, "queue.join", "p1", .queue = "sales", .phone = "+15550100001");
    cr_assert_eq(out_count("callback.offer"), 1);
    /* At 16:58 the office closes before the caller's turn. */
    warm(FRI_1658 - 300 * SEC, "sales", 3, 300 * SEC);
    clear();
    cr_assert_eq(EV(FRI_1658, "queue.join", "p2", .queue = "sales",
                    .phone = "+15550100002"),
                 'a');
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("callbacks/gated/after_hours"), 1);
}

/* ---- acceptance ---------------------------------------------------------- */

Test(callback, acceptances_that_answer_no_offer_are_refused, .fini = teardown) {
    start("[callback]\noffer_when_position_over = 1\noffer_after_waiting = 0\n"
          "offer_expires = 30s\n");
    caller_ahead(FRI_10, "sales");
    /* Never offered. */
    cr_assert_eq(EV(FRI_10, "queue.join", "q1", .queue = "sales"), 'a');
    cr_assert_eq(EV(FRI_10 + 1, "callback.accepted", "q1"), 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_STATE);
    cr_assert_str_eq(refused_why(),
                     "no callback was offered to this caller in this queue");
    /* Accepted twice. */
    EV(FRI_10 + 2, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + 3, "callback.accepted", "p1"), 'a');
    /* The shell is told, so that the PBX's adapter can take the caller out
     * of its own queue. */
    {
        msgpack_unpacked u;
        out_last("queue.withdraw", &u);
        cr_assert(tmap_str_is(&u.data, "contact", "p1"));
        cr_assert(tmap_str_is(&u.data, "queue", "sales"));
        cr_assert(tmap_str_is(&u.data, "channel", "phone"));
        msgpack_unpacked_destroy(&u);
    }
    cr_assert_eq(EV(FRI_10 + 4, "callback.accepted", "p1"), 'r');
    cr_assert_str_eq(refused_why(), "the callback was already accepted");
    /* Expired. */
    EV(FRI_10 + 5, "queue.join", "p2", .queue = "sales",
       .phone = "+15550100002");
    cr_assert_eq(EV(FRI_10 + 5 + 30 * SEC, "callback.accepted", "p2"), 'r');
    cr_assert_str_eq(refused_why(),
                     "the offer expired ([callback] offer_expires)");
    /* Declined. */
    EV(FRI_10 + MIN, "queue.join", "p3", .queue = "sales",
       .phone = "+15550100003");
    cr_assert_eq(EV(FRI_10 + MIN + 1, "callback.declined", "p3"), 'a');
    cr_assert_eq(EV(FRI_10 + MIN + 2, "callback.accepted", "p3"), 'r');
    cr_assert_str_eq(refused_why(), "the offer was declined");
    /* An outcome for a callback never accepted. */
    cr_assert_eq(EV(FRI_10 + MIN + 3, "callback.completed", "p3"), 'r');
    cr_assert_eq(EV(FRI_10 + MIN + 4, "callback.failed", "zz"), 'r');
    cr_assert_eq(stat_int("callbacks/rejected_events"), 6);
    cr_assert_eq(stat_int("callbacks/accepted"), 1);
    cr_assert_eq(stat_int("callbacks/lapsed"), 1);
    cr_assert_eq(stat_int("callbacks/declined"), 1);
}

Test(callback, declined_offers_are_made_again_when_configured,
     .fini = teardown) {
    msgpack_unpacked u;

    start("[callback]\noffer_when_position_over = 1\noffer_after_waiting = 0\n"
          "reoffer_after = 30s\n");
    caller_ahead(FRI_10, "sales");
    EV(FRI_10, "queue.join", "p1", .queue = "sales", .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + SEC, "callback.declined", "p1"), 'a');
    clear();
    cc_engine_tick(e, (uint64_t)(FRI_10 + 31 * SEC - 1));
    cr_assert_eq(out_count("callback.offer"), 0);
    cc_engine_tick(e, (uint64_t)(FRI_10 + 31 * SEC));
    out_last("callback.offer", &u);
    cr_assert_eq(tmap_int(&u.data, "offer"), 2);
    cr_assert(
        tmap_str_is(&u.data, "id", "callback.offer:phone:p1:1795168800000:2"));
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(EV(FRI_10 + 32 * SEC, "callback.accepted", "p1"), 'a');
    /* Offered callers count once; the acceptance rate is theirs. */
    cr_assert_eq(stat_int("callbacks/offers"), 2);
    cr_assert_eq(stat_int("callbacks/offered_callers"), 1);
}

/* ---- places and dialling ---------------------------------------------------
 */

/* The contact ids of the queue's "next" list, with '*' for a place. */
static void
assert_order(const char *q, const char *want) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    msgpack_object next;
    char got[256] = "";
    uint32_t i;

    queue_query(q, &sb, &u);
    cr_assert(tmap_get(&u.data, "next", &next));
    for (i = 0; i < next.via.array.size; i++) {
        const msgpack_object *m = &next.via.array.ptr[i];
        msgpack_object c;
        cr_assert(tmap_get(m, "contact", &c));
        if (i)
            strcat(got, " ");
        if (tmap_is_true(m, "callback"))
            strcat(got, "*");
        strncat(got, c.via.str.ptr, c.via.str.size);
        cr_assert_eq(tmap_int(m, "position"), i + 1);
    }
    cr_assert_str_eq(got, want);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

Test(callback, an_accepted_callback_keeps_its_place_under_priorities,
     .fini = teardown) {
    msgpack_unpacked u;

    place_p1(NULL);
    /* The caller hangs up: its place stays. */
    cr_assert_eq(EV(FRI_10 + 3, "contact.close", "p1"), 'a');
    cr_assert_eq(EV(FRI_10 + 4, "queue.join", "b1", .queue = "sales"), 'a');
    cr_assert_eq(
        EV(FRI_10 + 5, "queue.join", "v1", .queue = "sales", .prio1 = 6), 'a');
    assert_order("sales", "v1 w0 *p1 b1");
    cr_assert_eq(stat_int("queues/sales/waiting"), 4);
    cr_assert_eq(stat_int("queues/sales/callbacks/places"), 1);
    /* Counted as a callback, not an abandonment. */
    cr_assert_eq(stat_int("queues/sales/abandoned"), 0);
    cr_assert_eq(stat_int("queues/sales/callbacks/accepted"), 1);
    /* With no agent known, a place is dialled when it reaches the head. */
    clear();
    EV(FRI_10 + 6, "agent.answer", "v1", .agent = "ann");
    cr_assert_eq(out_count("callback.dial"), 0);
    EV(FRI_10 + 7, "agent.answer", "w0", .agent = "bob");
    cr_assert_eq(out_count("callback.dial"), 1);
    out_last("callback.dial", &u);
    cr_assert(tmap_str_is(&u.data, "contact", "p1"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550100001"));
    cr_assert_eq(tmap_int(&u.data, "attempt"), 1);
    cr_assert_eq(tmap_int(&u.data, "waited_ms"), 6);
    msgpack_unpacked_destroy(&u);
    assert_order("sales", "b1");
}

/* One agent, busy, 300 s handle time. A place at the head waits for one
 * completion (median 208 s): past a 30 s lead, it is not dialled until
 * an agent is free. */
Test(callback, a_place_is_dialled_when_its_turn_is_within_the_lead,
     .fini = teardown) {
    int64_t ts;

    ts = busy_queue("[callback]\noffer_when_position_over = 1\n"
                    "offer_after_waiting = 0\nload_horizon = 0\n",
                    "sales");
    caller_ahead(ts, "sales");
    EV(ts + 1, "queue.join", "p1", .queue = "sales", .phone = "+15550100001");
    cr_assert_eq(EV(ts + 2, "callback.accepted", "p1"), 'a');
    clear();
    EV(ts + 3, "agent.answer", "w0", .agent = "ann");
    cr_assert_eq(out_count("callback.dial"), 0);
    agent(ts + 4, "ann", "available", "sales");
    cr_assert_eq(out_count("callback.dial"), 1);
    cr_assert_eq(stat_int("callbacks/dialled"), 1);
    cr_assert_eq(stat_int("callbacks/on_time"), 1);
    cr_assert_eq(stat_int("callbacks/hold_saved_ms"), 2);
    /* Completed at the first attempt. */
    cr_assert_eq(EV(ts + 5, "callback.completed", "p1"), 'a');
    cr_assert_eq(stat_int("callbacks/completed"), 1);
    cr_assert_eq(stat_int("callbacks/first_attempt"), 1);
    cr_assert_eq(stat_int("callbacks/pending"), 0);
}

Test(callback, scheduled_callbacks_are_dialled_then_within_hours,
     .fini = teardown) {
    char text[1024];
    msgpack_unpacked u;

    snprintf(text, sizeof(text), "%s%s\ncalendar = office\n", office, pos1);
    start(text);
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    /* A time already past is refused. */
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1", .at = FRI_10), 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_OUT_OF_RANGE);
    cr_assert_eq(
        EV(FRI_10 + 2, "callback.accepted", "p1", .at = FRI_10 + 60 * MIN),
        'a');
    /* No place: it is called at the time asked for. */
    assert_order("sales", "w0");
    clear();
    cc_engine_tick(e, (uint64_t)(FRI_10 + 60 * MIN - 1));
    cr_assert_eq(out_count("callback.dial"), 0);
    cc_engine_tick(e, (uint64_t)(FRI_10 + 60 * MIN));
    out_last("callback.dial", &u);
    cr_assert(tmap_is_true(&u.data, "scheduled"));
    cr_assert_eq(tmap_int(&u.data, "window/from"), FRI_10 + 60 * MIN);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(EV(FRI_10 + 61 * MIN, "callback.completed", "p1"), 'a');
    /* Asked for Friday 18:00, after closing: Monday 09:00. */
    EV(FRI_10 + 62 * MIN, "queue.join", "p2", .queue = "sales",
       .phone = "+15550100002");
    cr_assert_eq(EV(FRI_10 + 62 * MIN, "callback.accepted", "p2", .at = FRI_18),
                 'a');
    clear();
    cc_engine_tick(e, (uint64_t)MON_09 - 1);
    cr_assert_eq(out_count("callback.dial"), 0);
    cc_engine_tick(e, (uint64_t)MON_09);
    cr_assert_eq(out_count("callback.dial"), 1);
}

/* A dial and its outcome: p1 accepted with nobody ahead is dialled at
 * once. */
static void
dialled_callback(const char *text) {
    start(text);
    EV(FRI_10, "queue.join", "w0", .queue = "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1"), 'a');
    clear();
    EV(FRI_10 + 3, "agent.answer", "w0", .agent = "ann");
    cr_assert_eq(out_count("callback.dial"), 1);
}

Test(callback, failed_attempts_are_retried_then_alerted, .fini = teardown) {
    msgpack_unpacked u;
    int64_t ts = FRI_10 + 3;
    int a;

    dialled_callback("[callback]\noffer_when_position_over = 1\n"
                     "offer_after_waiting = 0\nretry_delay = 5m\n"
                     "max_attempts = 3\n");
    for (a = 2; a <= 3; a++) {
        char id[64];
        cr_assert_eq(
            EV(ts + SEC, "callback.failed", "p1", .reason = "no_answer"), 'a');
        clear();
        cc_engine_tick(e, (uint64_t)(ts + SEC + 5 * MIN - 1));
        cr_assert_eq(out_count("callback.dial"), 0);
        ts += SEC + 5 * MIN;
        cc_engine_tick(e, (uint64_t)ts);
        out_last("callback.dial", &u);
        cr_assert_eq(tmap_int(&u.data, "attempt"), a);
        snprintf(id, sizeof(id), "callback.dial:phone:p1:%lld:%d",
                 (long long)(FRI_10 + 1), a);
        cr_assert(tmap_str_is(&u.data, "id", id));
        msgpack_unpacked_destroy(&u);
    }
    clear();
    cr_assert_eq(EV(ts + SEC, "callback.failed", "p1", .reason = "busy"), 'a');
    out_last("callback.failed", &u);
    cr_assert(tmap_str_is(&u.data, "reason", "busy"));
    cr_assert_eq(tmap_int(&u.data, "attempts"), 3);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stat_int("callbacks/retries"), 2);
    cr_assert_eq(stat_int("callbacks/failed"), 1);
    cr_assert_eq(stat_int("callbacks/pending"), 0);
    /* Gone: a late outcome is refused. */
    cr_assert_eq(EV(ts + 2 * SEC, "callback.failed", "p1"), 'r');
}

Test(callback, a_dial_with_no_outcome_counts_as_failed, .fini = teardown) {
    dialled_callback("[callback]\noffer_when_position_over = 1\n"
                     "offer_after_waiting = 0\nmax_attempts = 1\n"
                     "outcome_wait = 10m\n");
    cc_engine_tick(e, (uint64_t)(FRI_10 + 3 + 10 * MIN));
    cr_assert_eq(out_count("callback.failed"), 1);
}

Test(callback, a_broken_promise_raises_overdue, .fini = teardown) {
    msgpack_unpacked u;
    int64_t due = FRI_10 + 1 + 65 * MIN; /* promise_max + margin */

    place_p1(NULL);
    clear();
    cc_engine_tick(e, (uint64_t)due - 1);
    cr_assert_eq(out_count("callback.overdue"), 0);
    cc_engine_tick(e, (uint64_t)due);
    out_last("callback.overdue", &u);
    cr_assert(tmap_str_is(&u.data, "contact", "p1"));
    cr_assert_eq(tmap_int(&u.data, "window/to"), due);
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stat_int("callbacks/overdue"), 1);
    /* Dialled late at last. */
    EV(due + MIN, "agent.answer", "w0", .agent = "ann");
    cr_assert_eq(stat_int("callbacks/late"), 1);
    cr_assert_eq(stat_int("callbacks/on_time"), 0);
}

Test(callback, served_or_resolved_elsewhere_cancels_the_callback,
     .fini = teardown) {
    msgpack_unpacked u;

    place_p1("ann@example.com");
    clear();
    /* She chats meanwhile and an agent answers the chat. */
    EV(FRI_10 + 3, "contact.open", "c1", .channel = "chat",
       .email = "ann@example.com");
    cr_assert_eq(
        EV(FRI_10 + 4, "agent.answer", "c1", .channel = "chat", .agent = "bob"),
        'a');
    out_last("callback.cancel", &u);
    cr_assert(tmap_str_is(&u.data, "contact", "p1"));
    cr_assert(tmap_str_is(&u.data, "of", "callback"));
    cr_assert(tmap_str_is(&u.data, "reason", "served on chat"));
    msgpack_unpacked_destroy(&u);
    assert_order("sales", "w0");
    cr_assert_eq(stat_int("callbacks/pending"), 0);
    /* Once done, she may be offered another; a resolve cancels it. */
    EV(FRI_10 + 5, "queue.join", "p2", .queue = "sales",
       .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + 6, "callback.accepted", "p2"), 'a');
    clear();
    cr_assert_eq(
        EV(FRI_10 + 7, "conversation.resolve", "c1", .channel = "chat"), 'a');
    out_last("callback.cancel", &u);
    cr_assert(tmap_str_is(&u.data, "contact", "p2"));
    cr_assert(tmap_str_is(&u.data, "reason", "resolved"));
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stat_int("callbacks/cancelled"), 2);
}

/* ---- configuration ------------------------------------------------------- */

Test(callback, queue_sections_override_the_defaults) {
    struct cc_config *c = calloc(1, sizeof(*c));
    const struct cc_cb_policy *p;
    char err[512] = "";

    cr_assert_not_null(c);
    cc_config_defaults(c);
    cr_assert_eq(cc_config_load_string(c,
                                       "[callback]\nmax_pending = 7\n"
                                       "[callback.queue.billing]\n"
                                       "offer_when_wait_over = 90s\n",
                                       "t", err, sizeof(err)),
                 0, "%s", err);
    p = cc_cb_policy_for(&c->cb, "billing", 7);
    cr_assert_eq(p->v[CC_CB_WAIT_OVER], 90000);
    cr_assert_eq(p->v[CC_CB_MAX_PENDING], 7);
    cr_assert_eq(p->v[CC_CB_DIAL_LEAD], 30000);
    p = cc_cb_policy_for(&c->cb, "sales", 5);
    cr_assert_eq(p->v[CC_CB_WAIT_OVER], 120000);
    /* Errors name the line and the reason. */
    cc_config_defaults(c);
    cr_assert_eq(cc_config_load_string(c, "[callback]\ncalendar = nope\n", "t",
                                       err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "calendar 'nope' is not defined") != NULL, "%s", err);
    cr_assert_eq(cc_config_load_string(c, "[callback.queue.x]\ndial_lead = 5\n",
                                       "t", err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "t:2: [callback.queue.x] dial_lead") != NULL, "%s",
              err);
    cr_assert_eq(cc_config_load_string(c, "[callback]\nmax_attempts = 0\n", "t",
                                       err, sizeof(err)),
                 CC_EINVAL);
    free(c);
}

/* A customer being called back takes the next agent: while its outcome is
 * unknown the place behind it is not dialled on the same free agent. */
Test(callback, one_free_agent_dials_one_callback_at_a_time, .fini = teardown) {
    start(pos1);
    agent(FRI_10, "ann", "available", "sales");
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    EV(FRI_10 + 2, "queue.join", "p2", .queue = "sales",
       .phone = "+15550100002");
    cr_assert_eq(EV(FRI_10 + 3, "callback.accepted", "p1"), 'a');
    cr_assert_eq(EV(FRI_10 + 4, "callback.accepted", "p2"), 'a');
    clear();
    EV(FRI_10 + 5, "agent.answer", "w0", .agent = "ann");
    cr_assert_eq(out_count("callback.dial"), 1);
    assert_order("sales", "*p2");
    /* p1's customer reached an agent: p2's turn. */
    clear();
    cr_assert_eq(EV(FRI_10 + 6, "callback.completed", "p1"), 'a');
    cr_assert_eq(out_count("callback.dial"), 1);
    assert_order("sales", "");
}

/* Agents known but none on duty: places wait for one. */
Test(callback, no_dial_while_no_agent_is_on_duty, .fini = teardown) {
    start(pos1);
    agent(FRI_10, "ann", "offline", "sales");
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    cr_assert_eq(EV(FRI_10 + 2, "callback.accepted", "p1"), 'a');
    EV(FRI_10 + 3, "queue.leave", "w0");
    clear();
    cr_assert_eq(out_count("callback.dial"), 0);
    agent(FRI_10 + 4, "ann", "available", "sales");
    cr_assert_eq(out_count("callback.dial"), 1);
}

/* A caller who rejoins with its callback still to come keeps that one
 * callback: no second offer, and its outcome still finds it. */
Test(callback, a_rejoining_caller_keeps_its_one_callback, .fini = teardown) {
    place_p1(NULL);
    clear();
    EV(FRI_10 + 3, "queue.join", "p9", .queue = "billing");
    cr_assert_eq(EV(FRI_10 + 4, "queue.join", "p1", .queue = "billing"), 'a');
    cr_assert_eq(out_count("callback.offer"), 0);
    cr_assert_eq(stat_int("callbacks/gated/pending_callback"), 1);
    cr_assert_eq(EV(FRI_10 + 5, "callback.accepted", "p1"), 'r');
    cr_assert_eq(stat_int("callbacks/pending"), 1);
    cr_assert_eq(EV(FRI_10 + 6, "callback.completed", "p1"), 'a');
    cr_assert_eq(stat_int("callbacks/pending"), 0);
    assert_order("sales", "w0");
}

/* `at` and `reason` belong to two types: elsewhere a bad one is ignored,
 * as any unknown key is. */
Test(callback, at_and_reason_are_checked_where_they_mean_something,
     .fini = teardown) {
    start(pos1);
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 7);
    tb_kv_str(&t, "id", "x1");
    tb_kv_int(&t, "ts", FRI_10);
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "contact.open");
    tb_kv_str(&t, "contact", "k1");
    tb_kv_int(&t, "reason", 5);
    tb_kv_str(&t, "at", "soon");
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)FRI_10, &rep);
    cr_assert_eq(rep.accepted, 1);
    caller_ahead(FRI_10, "sales");
    EV(FRI_10 + 1, "queue.join", "p1", .queue = "sales",
       .phone = "+15550100001");
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6);
    tb_kv_str(&t, "id", "x2");
    tb_kv_int(&t, "ts", FRI_10 + 2);
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "callback.accepted");
    tb_kv_str(&t, "contact", "p1");
    tb_kv_str(&t, "at", "soon");
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)FRI_10 + 2, &rep);
    cr_assert_eq(rep.rejected, 1);
    cr_assert_str_eq(rep.rej[0].rej.key, "at");
}

/* The handle time is answer to close plus the wrap-up the close reports. */
Test(callback, wrap_up_counts_in_the_handle_time, .fini = teardown) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;

    start(pos1);
    agent(FRI_10, "ann", "busy", "sales");
    cr_assert_eq(EV(FRI_10, "queue.join", "h1", .queue = "sales"), 'a');
    cr_assert_eq(EV(FRI_10, "agent.answer", "h1", .agent = "ann"), 'a');
    cr_assert_eq(
        EV(FRI_10 + 300 * SEC, "contact.close", "h1", .wrapup = 60 * SEC), 'a');
    queue_query("sales", &sb, &u);
    cr_assert_eq(tmap_int(&u.data, "estimate/aht_ms"), 360 * SEC);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    /* Out of range: refused on a close, ignored elsewhere. */
    cr_assert_eq(EV(FRI_10 + 301 * SEC, "contact.open", "h2", .wrapup = -1),
                 'a');
    cr_assert_eq(EV(FRI_10 + 302 * SEC, "contact.close", "h2", .wrapup = -1),
                 'r');
    cr_assert_str_eq(rep.rej[0].rej.key, "wrapup_ms");
}

/* A place whose turn comes after closing waits for the opening, and is
 * dialled then without any other event. */
Test(callback, a_place_waits_for_business_hours, .fini = teardown) {
    char text[1024];
    const int64_t t0 = FRI_1658;

    snprintf(text, sizeof(text), "%s%s\ncalendar = office\n", office, pos1);
    start(text);
    agent(t0, "ann", "busy", "sales");
    caller_ahead(t0, "sales");
    EV(t0 + 1, "queue.join", "p1", .queue = "sales", .phone = "+15550100001");
    cr_assert_eq(EV(t0 + 2, "callback.accepted", "p1"), 'a');
    /* After closing the caller ahead is answered and an agent is free:
     * the place is at the head, but the office is closed. */
    EV(FRI_18, "agent.answer", "w0", .agent = "ann");
    agent(FRI_18 + 1, "ann", "available", "sales");
    clear();
    cr_assert_eq(out_count("callback.dial"), 0);
    cc_engine_tick(e, (uint64_t)MON_09 - 1);
    cr_assert_eq(out_count("callback.dial"), 0);
    /* Its promise ran out over the weekend. */
    cr_assert_eq(out_count("callback.overdue"), 1);
    cc_engine_tick(e, (uint64_t)MON_09);
    cr_assert_eq(out_count("callback.dial"), 1);
}
