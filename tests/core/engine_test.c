/*
 * The engine driven with a manual clock: contact lifecycles, implicit
 * opens, rejections that leave state untouched, idempotent ingest, and the
 * timed rules (callback offers, the SLA answer and hold clocks) firing at
 * the right instant.
 */
#include <criterion/criterion.h>

#include "config.h"
#include "engine.h"
#include "engine_int.h"
#include "testutil.h"

#include <math.h>

TestSuite(engine);

#define T0 1700000000000LL

static struct cc_engine *e;
static struct cc_ingest_report rep;
static struct tb t;

/* An engine under the SLA policies of config text sla (NULL: the
 * built-in ones). */
static void
setup_sla(const char *sla) {
    struct cc_engine_config c;
    struct cc_config *cfg = NULL;
    char err[512] = "";

    cc_engine_config_defaults(&c);
    c.dedup_window = 100;
    c.max_contacts = 1000;
    c.hold_long_ms = 60000;
    /* The offer tests here use the waited rule alone (callback_test
     * covers the others). */
    c.cb.def.v[CC_CB_AFTER_WAITING] = 120000;
    c.cb.def.v[CC_CB_WAIT_OVER] = 0;
    c.cb.def.v[CC_CB_POSITION_OVER] = 0;
    if (sla != NULL) {
        cfg = calloc(1, sizeof(*cfg));
        cc_config_defaults(cfg);
        cr_assert_eq(cc_config_load_string(cfg, sla, "t", err, sizeof(err)), 0,
                     "%s", err);
        c.sla = &cfg->sla;
    }
    cr_assert_eq(cc_engine_new(&e, &c, (uint64_t)T0), 0);
    free(cfg); /* the engine keeps a copy */
    tb_init(&t);
}

static void
setup(void) {
    setup_sla(NULL);
}

/* The offer tests watch the outbox alone: no SLA clock. */
static void
setup_no_sla(void) {
    setup_sla("[sla.phone]\nanswer = off\n");
}

static void
teardown(void) {
    cc_engine_free(e);
    cc_ingest_report_fini(&rep);
    tb_fini(&t);
}

/* Reloads the SLA policies from config text, as SIGHUP does. */
static void
reload_sla(const char *text) {
    struct cc_config *cfg = calloc(1, sizeof(*cfg));
    char err[512] = "";

    cr_assert_not_null(cfg);
    cc_config_defaults(cfg);
    cr_assert_eq(cc_config_load_string(cfg, text, "t", err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(cc_engine_set_sla(e, &cfg->sla, err, sizeof(err)), 0, "%s",
                 err);
    free(cfg); /* the engine keeps a copy */
}

/* Sends one event at time now; returns the verdict as the report saw it:
 * 'a' accepted, 'd' duplicate, 'r' rejected. */
static char
send_at(int64_t now, const char *id, int64_t ts, const char *channel,
        const char *type, const char *contact, const char *phone,
        const char *queue) {
    tb_reset(&t);
    if (queue == NULL) {
        tb_event(&t, id, ts, channel, type, contact, phone);
    } else {
        /* The same event with a queue key added. */
        msgpack_pack_map(&t.pk, 5 + (contact != NULL) + (phone != NULL));
        tb_kv_str(&t, "queue", queue);
        tb_kv_str(&t, "id", id);
        tb_kv_int(&t, "ts", ts);
        tb_kv_str(&t, "channel", channel);
        tb_kv_str(&t, "type", type);
        if (contact)
            tb_kv_str(&t, "contact", contact);
        if (phone) {
            tb_str(&t, "customer");
            msgpack_pack_map(&t.pk, 1);
            tb_kv_str(&t, "phone", phone);
        }
    }
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)now, &rep);
    cr_assert_null(rep.error);
    cr_assert_eq(rep.events, 1);
    return rep.accepted ? 'a' : rep.duplicates ? 'd' : 'r';
}

#define SEND(id, ts, ch, type, contact)                                        \
    send_at((ts), (id), (ts), (ch), (type), (contact), NULL, NULL)

static int64_t
stat_int(const char *path) {
    return tstat_int(e, path);
}

/* Unpacks outbox record i into u; returns its topic (alerts) or NULL. */
static const char *
out_record(size_t i, msgpack_unpacked *u, int *kind) {
    struct cc_outbox *ob = cc_engine_outbox(e);
    const struct cc_out *o;
    const char *data;
    size_t off = 0;

    cr_assert_lt(i, ob->n);
    o = &ob->v[i];
    data = cc_outbox_data(ob, o);
    *kind = (int)o->kind;
    if (o->kind == CC_OUT_ALERT)
        off = strlen(data) + 1;
    cr_assert_eq(msgpack_unpack_next(u, data + off, o->len - off, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    return o->kind == CC_OUT_ALERT ? data : NULL;
}

/* The index of the outbox's first alert whose topic starts with prefix
 * (asserts there is one). */
static size_t
first_alert(const char *prefix) {
    size_t k;

    for (k = 0; k < cc_engine_outbox(e)->n; k++) {
        msgpack_unpacked u;
        int kind;
        const char *topic;
        bool match;
        msgpack_unpacked_init(&u);
        topic = out_record(k, &u, &kind);
        match = topic != NULL && strncmp(topic, prefix, strlen(prefix)) == 0;
        msgpack_unpacked_destroy(&u);
        if (match)
            return k;
    }
    cr_assert_fail("no %s alert in the outbox", prefix);
    return 0;
}

Test(engine, phone_contact_lifecycle, .init = setup, .fini = teardown) {
    cr_assert_eq(
        send_at(T0, "1", T0, "phone", "contact.open", "c1", "+15550001", NULL),
        'a');
    cr_assert_eq(send_at(T0 + 1, "2", T0 + 1, "phone", "queue.join", "c1", NULL,
                         "billing"),
                 'a');
    cr_assert_eq(stat_int("queues/billing/waiting"), 1);
    cr_assert_eq(stat_int("contacts/queued"), 1);
    cr_assert_eq(SEND("3", T0 + 20, "phone", "agent.answer", "c1"), 'a');
    cr_assert_eq(stat_int("queues/billing/waiting"), 0);
    cr_assert_eq(stat_int("queues/billing/answered"), 1);
    cr_assert_eq(SEND("4", T0 + 30, "phone", "hold.start", "c1"), 'a');
    cr_assert_eq(stat_int("contacts/held"), 1);
    cr_assert_eq(SEND("5", T0 + 40, "phone", "hold.end", "c1"), 'a');
    cr_assert_eq(SEND("6", T0 + 50, "phone", "contact.close", "c1"), 'a');
    cr_assert_eq(stat_int("contacts/open"), 0);
    cr_assert_eq(stat_int("channels/phone/events"), 6);
    cr_assert_eq(stat_int("channels/phone/closed"), 1);
    cr_assert_eq(stat_int("types/hold.start"), 1);
    cr_assert_eq(stat_int("events/accepted"), 6);
    /* A short hold raises nothing. */
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
}

Test(engine, repeated_id_is_ignored, .init = setup, .fini = teardown) {
    cr_assert_eq(SEND("same", T0, "chat", "contact.open", "s1"), 'a');
    cr_assert_eq(SEND("same", T0, "chat", "contact.open", "s1"), 'd');
    cr_assert_eq(SEND("same", T0 + 5, "chat", "message.in", "s1"), 'd');
    cr_assert_eq(stat_int("events/duplicates"), 2);
    cr_assert_eq(stat_int("channels/chat/events"), 1);
}

Test(engine, rejected_id_can_be_retried, .init = setup, .fini = teardown) {
    cr_assert_eq(SEND("x", T0, "phone", "hold.end", "nobody"), 'r');
    cr_assert_eq(SEND("x", T0, "phone", "contact.open", "nobody"), 'a');
}

Test(engine, implicit_open_counts_a_warning, .init = setup, .fini = teardown) {
    /* An answer for a contact never seen opens it, counted. */
    cr_assert_eq(SEND("1", T0, "chat", "agent.answer", "s9"), 'a');
    cr_assert_eq(stat_int("events/implicit_opens"), 1);
    cr_assert_eq(stat_int("channels/chat/implicit_opens"), 1);
    cr_assert_eq(stat_int("contacts/connected"), 1);
    /* A hold on an unknown call implies it was connected. */
    cr_assert_eq(SEND("2", T0, "phone", "hold.start", "c7"), 'a');
    cr_assert_eq(stat_int("contacts/held"), 1);
}

Test(engine, senseless_events_are_rejected_and_change_nothing, .init = setup,
     .fini = teardown) {
    static const struct {
        const char *type;
        const char *why;
    } after_open[] = {
        {"contact.open", "already open"},
        {"hold.end", "not on hold"},
        {"queue.leave", "not queued"},
        {"hold.start", "not connected"},
        {"transfer", NULL},
    };
    size_t i;
    char id[16];

    cr_assert_eq(SEND("o", T0, "phone", "contact.open", "c1"), 'a');
    for (i = 0; i < CC_ARRAY_SIZE(after_open); i++) {
        snprintf(id, sizeof(id), "r%zu", i);
        cr_assert_eq(SEND(id, T0 + 1, "phone", after_open[i].type, "c1"), 'r',
                     "%s", after_open[i].type);
        cr_assert_eq(rep.rejected, 1);
        if (after_open[i].why)
            cr_assert(strstr(rep.rej[0].rej.detail, after_open[i].why),
                      "%s: %s", after_open[i].type, rep.rej[0].rej.detail);
    }
    /* Ending what never began on an unknown contact opens nothing. */
    cr_assert_eq(SEND("u1", T0, "phone", "contact.close", "ghost"), 'r');
    cr_assert_eq(SEND("u2", T0, "phone", "hold.end", "ghost"), 'r');
    cr_assert_eq(stat_int("contacts/open"), 1);
    cr_assert_eq(stat_int("rejected/invalid_state"), 6);
    cr_assert_eq(stat_int("rejected/missing_key"), 1); /* transfer: where? */
    cr_assert_eq(stat_int("events/accepted"), 1);
}

/* The hold clock: [hold] long (60 s) is its built-in target, warned at
 * 80%; each stage fires once per hold, at its instant. */
Test(engine, hold_clock_fires_once_at_the_limit, .init = setup,
     .fini = teardown) {
    msgpack_unpacked u;
    const char *topic;
    int kind;

    send_at(T0, "1", T0, "phone", "contact.open", "c1", "+15550001", NULL);
    SEND("2", T0 + 1000, "phone", "agent.answer", "c1");
    SEND("3", T0 + 2000, "phone", "hold.start", "c1");
    /* The shell sleeps until the next deadline; doing the same never
     * oversteps a stage: the warning at 80%, then the breach. */
    while (cc_engine_next_deadline(e) < (uint64_t)T0 + 50000) {
        cc_engine_tick(e, cc_engine_next_deadline(e));
        cr_assert_eq(cc_engine_outbox(e)->n, 0);
    }
    cr_assert_eq(cc_engine_next_deadline(e), (uint64_t)T0 + 50000);
    cc_engine_tick(e, (uint64_t)T0 + 50000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    cc_outbox_clear(cc_engine_outbox(e));
    while (cc_engine_next_deadline(e) < (uint64_t)T0 + 62000) {
        cc_engine_tick(e, cc_engine_next_deadline(e));
        cr_assert_eq(cc_engine_outbox(e)->n, 0);
    }
    cr_assert_eq(cc_engine_next_deadline(e), (uint64_t)T0 + 62000);
    cc_engine_tick(e, (uint64_t)T0 + 61999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 62000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    msgpack_unpacked_init(&u);
    topic = out_record(0, &u, &kind);
    cr_assert_eq(kind, CC_OUT_ALERT);
    cr_assert_str_eq(topic, "sla.breach");
    cr_assert(tmap_str_is(&u.data, "alert", "sla.breach"));
    cr_assert(tmap_str_is(&u.data, "clock", "hold"));
    cr_assert(
        tmap_str_is(&u.data, "id", "sla.breach:phone:c1:hold:1700000002000:0"));
    cr_assert(tmap_str_is(&u.data, "contact", "c1"));
    cr_assert(tmap_str_is(&u.data, "channel", "phone"));
    cr_assert(tmap_str_is(&u.data, "policy", "sla.any"));
    cr_assert_eq(tmap_int(&u.data, "target_ms"), 60000);
    cr_assert_eq(tmap_int(&u.data, "elapsed_ms"), 60000);
    cr_assert_eq(tmap_int(&u.data, "start"), T0 + 2000);
    cr_assert_eq(tmap_int(&u.data, "due"), T0 + 62000);
    {
        msgpack_object cust;
        cr_assert(tmap_get(&u.data, "customer", &cust));
        cr_assert(tmap_str_is(&cust, "phone", "+15550001"));
    }
    msgpack_unpacked_destroy(&u);
    cc_outbox_clear(cc_engine_outbox(e));
    /* Once per hold. */
    cc_engine_tick(e, (uint64_t)T0 + 600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cr_assert_eq(stat_int("alerts/sla.warning"), 1);
    cr_assert_eq(stat_int("alerts/sla.breach"), 1);
    /* A hold that ends in time raises nothing; the next hold is a new
     * clock. */
    SEND("4", T0 + 600000, "phone", "hold.end", "c1");
    SEND("5", T0 + 610000, "phone", "hold.start", "c1");
    SEND("6", T0 + 640000, "phone", "hold.end", "c1");
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    SEND("7", T0 + 3600000, "phone", "hold.start", "c1");
    cc_engine_tick(e, (uint64_t)T0 + 3660000);
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
}

Test(engine, hold_ended_before_the_breach_is_warned_only, .init = setup,
     .fini = teardown) {
    SEND("1", T0, "phone", "agent.answer", "c1");
    SEND("2", T0 + 1000, "phone", "hold.start", "c1");
    SEND("3", T0 + 59000, "phone", "hold.end", "c1");
    cc_engine_tick(e, (uint64_t)T0 + 120000);
    /* 58 s on hold: warned at 48 s, ended before the breach. */
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    {
        msgpack_unpacked u;
        int kind;
        msgpack_unpacked_init(&u);
        cr_assert_str_eq(out_record(0, &u, &kind), "sla.warning");
        msgpack_unpacked_destroy(&u);
    }
}

Test(engine, late_hold_event_fires_at_once, .init = setup, .fini = teardown) {
    /* The event says the hold began 90 s before it reached us. */
    send_at(T0 + 90000, "1", T0, "phone", "hold.start", "c1", NULL, NULL);
    cc_engine_tick(e, (uint64_t)T0 + 90000);
    /* Both stages were due: the warning, then the breach. */
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    {
        msgpack_unpacked u;
        int kind;
        msgpack_unpacked_init(&u);
        cr_assert_str_eq(out_record(0, &u, &kind), "sla.warning");
        msgpack_unpacked_destroy(&u);
        msgpack_unpacked_init(&u);
        cr_assert_str_eq(out_record(1, &u, &kind), "sla.breach");
        cr_assert_eq(tmap_int(&u.data, "due"), T0 + 60000);
        msgpack_unpacked_destroy(&u);
    }
}

Test(engine, callback_offer_then_cancel_on_answer, .init = setup_no_sla,
     .fini = teardown) {
    msgpack_unpacked u;
    int kind;

    send_at(T0, "1", T0, "phone", "contact.open", "c1", "+15550001", NULL);
    send_at(T0, "2", T0, "phone", "queue.join", "c1", NULL, "sales");
    send_at(T0 + 5, "3", T0 + 5, "phone", "queue.join", "c2", "+15550002",
            "sales");
    cc_engine_tick(e, (uint64_t)T0 + 119999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 120005);
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    msgpack_unpacked_init(&u);
    out_record(1, &u, &kind);
    cr_assert_eq(kind, CC_OUT_CALLBACK);
    cr_assert(tmap_str_is(&u.data, "type", "callback.offer"));
    cr_assert(tmap_str_is(&u.data, "contact", "c2"));
    cr_assert(tmap_str_is(&u.data, "number", "+15550002"));
    cr_assert(tmap_str_is(&u.data, "queue", "sales"));
    cr_assert_eq(tmap_int(&u.data, "position"), 2);
    cr_assert_eq(tmap_int(&u.data, "waited_ms"), 120000);
    /* No agent serves sales: no estimate rather than a made-up one. */
    {
        msgpack_object ewt;
        cr_assert(tmap_get(&u.data, "ewt_ms", &ewt));
        cr_assert_eq(ewt.type, MSGPACK_OBJECT_NIL);
    }
    cc_outbox_clear(cc_engine_outbox(e));
    SEND("4", T0 + 130000, "phone", "agent.answer", "c2");
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    out_record(0, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "type", "callback.cancel"));
    cr_assert(tmap_str_is(&u.data, "reason", "answered"));
    msgpack_unpacked_destroy(&u);
    cr_assert_eq(stat_int("queues/sales/callbacks/offers"), 2);
}

Test(engine, no_offer_without_a_phone_number, .init = setup, .fini = teardown) {
    send_at(T0, "1", T0, "chat", "queue.join", "s1", NULL, "web");
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
}

Test(engine, idle_contacts_expire, .init = setup, .fini = teardown) {
    SEND("1", T0, "email", "contact.open", "thread-1");
    cc_engine_tick(e, (uint64_t)T0 + 3 * 86400000LL - 1);
    cr_assert_eq(stat_int("contacts/open"), 1);
    cc_engine_tick(e, (uint64_t)T0 + 3 * 86400000LL);
    cr_assert_eq(stat_int("contacts/open"), 0);
    cr_assert_eq(stat_int("events/expired_contacts"), 1);
}

Test(engine, contact_limit_rejects_with_reason, .init = setup,
     .fini = teardown) {
    char id[16], contact[16];
    int i;
    for (i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        snprintf(contact, sizeof(contact), "c%d", i);
        cr_assert_eq(SEND(id, T0, "chat", "contact.open", contact), 'a');
    }
    cr_assert_eq(SEND("over", T0, "chat", "contact.open", "c-over"), 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_LIMIT);
}

/* The name table starts small and doubles as names arrive: every name is
 * found again, as the same record, across the growths, and the limit
 * still holds. */
Test(engine, names_survive_the_table_growing) {
    static const struct cc_name *got[3000];
    struct cc_engine_config c;
    struct cc_engine *ne;
    char buf[32];
    struct cc_str s;
    int i, round;

    cc_engine_config_defaults(&c);
    c.max_names = 3000;
    cr_assert_eq(cc_engine_new(&ne, &c, (uint64_t)T0), 0);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 3000; i++) {
            s.n = (uint32_t)snprintf(buf, sizeof(buf), "agent-%d", i);
            s.p = buf;
            if (round == 0) {
                got[i] = cc_name_intern(ne, s);
                cr_assert_not_null(got[i], "name %d refused", i);
                cr_assert_eq(got[i]->idx, (uint32_t)i + 1);
            } else {
                cr_assert_eq(cc_name_intern(ne, s), got[i],
                             "name %d not found again", i);
            }
        }
    }
    /* It grew: at most one name per two buckets. */
    cr_assert_geq(ne->nmask + 1, 2 * 3000);
    s.n = (uint32_t)snprintf(buf, sizeof(buf), "one-too-many");
    s.p = buf;
    cr_assert_null(cc_name_intern(ne, s));
    cc_engine_free(ne);
}

Test(engine, same_inputs_same_outputs, .init = setup, .fini = teardown) {
    /* Determinism: two engines fed the same events at the same times
     * produce byte-identical outboxes, whatever their hash seeds. */
    struct cc_engine_config c;
    struct cc_engine *e2;
    struct cc_ingest_report rep2 = {0};
    struct cc_outbox *a, *b;
    int i;

    cc_engine_config_defaults(&c);
    c.seed = 987654321;
    c.max_contacts = 1000;
    cr_assert_eq(cc_engine_new(&e2, &c, (uint64_t)T0), 0);
    for (i = 0; i < 50; i++) {
        char id[16], contact[16];
        snprintf(id, sizeof(id), "h%d", i);
        snprintf(contact, sizeof(contact), "c%d", i % 7);
        tb_reset(&t);
        tb_event(&t, id, T0 + i * 1000, "phone",
                 i % 3 ? "hold.start" : "hold.end", contact, "+15550001");
        cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)T0 + i * 1000,
                         &rep);
        cc_engine_ingest(e2, t.sb.data, t.sb.size, (uint64_t)T0 + i * 1000,
                         &rep2);
    }
    cc_engine_tick(e, (uint64_t)T0 + 500000);
    cc_engine_tick(e2, (uint64_t)T0 + 500000);
    a = cc_engine_outbox(e);
    b = cc_engine_outbox(e2);
    cr_assert_gt(a->n, 0);
    cr_assert_eq(a->n, b->n);
    cr_assert_eq(a->sb.size, b->sb.size);
    cr_assert_eq(memcmp(a->sb.data, b->sb.data, a->sb.size), 0);
    cc_engine_free(e2);
    cc_ingest_report_fini(&rep2);
}

/* ---- the SLA answer clock -------------------------------------------- */

/* A queue.join for contact at ts, with a priority when prio >= 0. */
static void
join_at(int64_t ts, const char *id, const char *channel, const char *contact,
        const char *queue, int prio) {
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6 + (prio >= 0));
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", ts);
    tb_kv_str(&t, "channel", channel);
    tb_kv_str(&t, "type", "queue.join");
    tb_kv_str(&t, "contact", contact);
    tb_kv_str(&t, "queue", queue);
    if (prio >= 0)
        tb_kv_int(&t, "priority", prio);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_eq(rep.accepted, 1, "%s", rep.error ? rep.error : "rejected");
}

/* Asserts outbox record i is SLA alert `alert` of level, due at due. */
static void
assert_sla(size_t i, const char *alert, int64_t level, int64_t due) {
    msgpack_unpacked u;
    const char *topic;
    int kind;

    msgpack_unpacked_init(&u);
    topic = out_record(i, &u, &kind);
    cr_assert_eq(kind, CC_OUT_ALERT);
    cr_assert_str_eq(topic, alert);
    cr_assert(tmap_str_is(&u.data, "alert", alert));
    cr_assert(tmap_str_is(&u.data, "clock", "answer"));
    cr_assert_eq(tmap_int(&u.data, "level"), level, "%s level", alert);
    cr_assert_eq(tmap_int(&u.data, "due"), due, "%s due", alert);
    msgpack_unpacked_destroy(&u);
}

Test(engine, answer_clock_warns_and_breaches_at_the_exact_instant,
     .init = setup, .fini = teardown) {
    msgpack_unpacked u;
    int kind;

    join_at(T0, "1", "phone", "c1", "sales", -1);
    cc_engine_tick(e, (uint64_t)T0 + 15999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 16000); /* 80% of 20 s */
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 1, T0 + 16000);
    msgpack_unpacked_init(&u);
    out_record(0, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "id",
                          "sla.warning:phone:c1:answer:1700000000000:1"));
    cr_assert_eq(tmap_int(&u.data, "target_ms"), 20000);
    cr_assert_eq(tmap_int(&u.data, "elapsed_ms"), 16000);
    cr_assert(tmap_str_is(&u.data, "policy", "sla.phone"));
    cr_assert(tmap_str_is(&u.data, "queue", "sales"));
    cr_assert(tmap_str_is(&u.data, "contact", "c1"));
    msgpack_unpacked_destroy(&u);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)T0 + 19999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 20000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.breach", 0, T0 + 20000);
    cc_outbox_clear(cc_engine_outbox(e));
    /* Each stage once. */
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cr_assert_eq(stat_int("alerts/sla.warning"), 1);
    cr_assert_eq(stat_int("alerts/sla.breach"), 1);
}

Test(engine, answer_clock_met_or_abandoned_fires_nothing, .init = setup,
     .fini = teardown) {
    join_at(T0, "1", "phone", "c1", "sales", -1);
    join_at(T0, "2", "phone", "c2", "sales", -1);
    cr_assert_eq(SEND("3", T0 + 15000, "phone", "agent.answer", "c1"), 'a');
    cr_assert_eq(SEND("4", T0 + 15000, "phone", "queue.leave", "c2"), 'a');
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    /* Chat has no answer target by default: no clock. */
    join_at(T0 + 3600000, "5", "chat", "s1", "web", -1);
    cc_engine_tick(e, (uint64_t)T0 + 7200000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
}

static void
setup_stages(void) {
    setup_sla("[sla.phone.urgent]\n"
              "priority = 1\n"
              "answer = 5s\n"
              "[sla.phone]\n"
              "answer = 10s\n"
              "warn = 50%, 2s\n"
              "escalate = +50%, +100%\n");
}

/* Two warning forms, a breach and two escalations, fired in order and
 * once each even when the clock is ticked past them all at once (late). */
Test(engine, answer_clock_stages_in_order, .init = setup_stages,
     .fini = teardown) {
    join_at(T0, "1", "phone", "c1", "sales", -1);
    cc_engine_tick(e, (uint64_t)T0 + 100000);
    cr_assert_eq(cc_engine_outbox(e)->n, 5);
    assert_sla(0, "sla.warning", 1, T0 + 5000);
    assert_sla(1, "sla.warning", 2, T0 + 8000);
    assert_sla(2, "sla.breach", 0, T0 + 10000);
    assert_sla(3, "sla.escalation", 1, T0 + 15000);
    assert_sla(4, "sla.escalation", 2, T0 + 20000);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)T0 + 200000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    /* Priority 1 matches the urgent policy first: 5 s, with the phone
     * policy's warnings and escalations (the first to set them). */
    join_at(T0 + 200000, "2", "phone", "c2", "sales", 1);
    cc_engine_tick(e, (uint64_t)T0 + 205000);
    cr_assert_eq(cc_engine_outbox(e)->n, 3);
    assert_sla(0, "sla.warning", 1, T0 + 202500);
    assert_sla(1, "sla.warning", 2, T0 + 203000);
    assert_sla(2, "sla.breach", 0, T0 + 205000);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)T0 + 299999); /* c2's escalations */
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    cc_outbox_clear(cc_engine_outbox(e));
    /* Priority 0, in the same queue, is not 1: the phone policy's 10 s. */
    join_at(T0 + 300000, "3", "phone", "c3", "sales", 0);
    cc_engine_tick(e, (uint64_t)T0 + 305000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 1, T0 + 305000);
}

/* Friday 2026-01-16 16:30 UTC, in ms. */
#define FRI_1630 1768581000000LL

/* Weekdays 09:00 to 17:00 UTC. */
#define OFFICE                                                                 \
    "[calendar.office]\n"                                                      \
    "timezone = UTC\n"                                                         \
    "mon = 09:00-17:00\n"                                                      \
    "tue = 09:00-17:00\n"                                                      \
    "wed = 09:00-17:00\n"                                                      \
    "thu = 09:00-17:00\n"                                                      \
    "fri = 09:00-17:00\n"

static void
setup_office(void) {
    setup_sla(OFFICE "[sla.chat]\n"
                     "answer = 1h\n"
                     "warn = 50%\n"
                     "calendar = office\n");
}

/* A business-hours clock joined half an hour before Friday's close warns
 * at the close and breaches half an hour into Monday. */
Test(engine, answer_clock_counts_business_hours, .init = setup_office,
     .fini = teardown) {
    join_at(FRI_1630, "1", "chat", "s1", "web", -1);
    cc_engine_tick(e, (uint64_t)FRI_1630 + 1800000 - 1);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)FRI_1630 + 1800000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 1, FRI_1630 + 1800000);
    cc_outbox_clear(cc_engine_outbox(e));
    /* Monday 09:30 is 2 days 17 hours after Friday 16:30. */
    cc_engine_tick(e, (uint64_t)FRI_1630 + (2 * 24 + 17) * 3600000LL - 1);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)FRI_1630 + (2 * 24 + 17) * 3600000LL);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.breach", 0, FRI_1630 + (2 * 24 + 17) * 3600000LL);
}

/* New policies on reload move a running clock's deadlines; a stage it
 * already fired does not fire again, one the new target puts in the past
 * fires at once. */
Test(engine, answer_clock_follows_new_policies, .init = setup,
     .fini = teardown) {
    join_at(T0, "1", "phone", "c1", "sales", -1);
    cc_engine_tick(e, (uint64_t)T0 + 17000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1); /* the warning at 16 s */
    cc_outbox_clear(cc_engine_outbox(e));
    reload_sla("[sla.phone]\nanswer = 60s\nwarn = 10s, 50%\n");
    /* Warning 1 fired under the old policy: the new first warning (30 s)
     * is not repeated, the second (50 s) is new; the breach moves from
     * 20 s to 60 s. */
    cc_engine_tick(e, (uint64_t)T0 + 49999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 50000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 2, T0 + 50000);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)T0 + 59999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 60000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.breach", 0, T0 + 60000);
    cc_outbox_clear(cc_engine_outbox(e));
    /* Tightened below the time waited: the breach fires at once. */
    reload_sla("[sla.phone]\nanswer = 10s\nescalate = +100%\n");
    cc_engine_tick(e, (uint64_t)T0 + 60001);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.escalation", 1, T0 + 20000);
}

/* The callback offer and the answer clock share the contact's timer: both
 * fire, each at its own instant, in time order. */
Test(engine, offer_and_answer_clock_share_the_timer, .init = setup,
     .fini = teardown) {
    msgpack_unpacked u;
    int kind;

    send_at(T0, "1", T0, "phone", "queue.join", "c1", "+15550001", "sales");
    cc_engine_tick(e, (uint64_t)T0 + 16000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 1, T0 + 16000);
    cc_engine_tick(e, (uint64_t)T0 + 20000);
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    assert_sla(1, "sla.breach", 0, T0 + 20000);
    cc_engine_tick(e, (uint64_t)T0 + 119999);
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    cc_engine_tick(e, (uint64_t)T0 + 120000);
    cr_assert_eq(cc_engine_outbox(e)->n, 3);
    msgpack_unpacked_init(&u);
    cr_assert_null(out_record(2, &u, &kind));
    cr_assert_eq(kind, CC_OUT_CALLBACK);
    cr_assert(tmap_str_is(&u.data, "type", "callback.offer"));
    /* Not answered within [callback] offer_expires: withdrawn. */
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 4);
    out_record(3, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "type", "callback.cancel"));
    cr_assert(tmap_str_is(&u.data, "reason", "expired"));
    msgpack_unpacked_destroy(&u);
}

static void
setup_vip(void) {
    setup_sla("[sla.phone.vip]\n"
              "answer = 5s\n");
}

/* A contact.open on channel naming one identifier (kind: "phone",
 * "email", ...) and a tag (NULL: none). */
static void
open_tagged_on(int64_t ts, const char *id, const char *channel,
               const char *contact, const char *kind, const char *value,
               const char *tag) {
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6 + (tag != NULL));
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", ts);
    tb_kv_str(&t, "channel", channel);
    tb_kv_str(&t, "type", "contact.open");
    tb_kv_str(&t, "contact", contact);
    tb_str(&t, "customer");
    msgpack_pack_map(&t.pk, 1);
    tb_kv_str(&t, kind, value);
    if (tag != NULL) {
        tb_str(&t, "tags");
        msgpack_pack_array(&t.pk, 1);
        tb_str(&t, tag);
    }
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_eq(rep.accepted, 1);
}

/* A phone call's contact.open naming a phone number and a tag. */
static void
open_tagged(int64_t ts, const char *id, const char *contact, const char *phone,
            const char *tag) {
    open_tagged_on(ts, id, "phone", contact, "phone", phone, tag);
}

/* The conversation's tags choose the policy, through the cache: a VIP and
 * a plain caller in the same queue, twice over. */
Test(engine, answer_clock_matches_conversation_tags, .init = setup_vip,
     .fini = teardown) {
    int round;

    for (round = 0; round < 2; round++) {
        int64_t t0 = T0 + round * 100000;
        char id[4][8];
        snprintf(id[0], 8, "o%d", round * 2);
        snprintf(id[1], 8, "o%d", round * 2 + 1);
        snprintf(id[2], 8, "j%d", round * 2);
        snprintf(id[3], 8, "j%d", round * 2 + 1);
        open_tagged(t0, id[0], round ? "v2" : "v1",
                    round ? "+15550012" : "+15550011", "vip");
        open_tagged(t0, id[1], round ? "p2" : "p1",
                    round ? "+15550022" : "+15550021", NULL);
        join_at(t0, id[2], "phone", round ? "v2" : "v1", "sales", -1);
        join_at(t0, id[3], "phone", round ? "p2" : "p1", "sales", -1);
        cc_engine_tick(e, (uint64_t)t0 + 5000);
        /* The VIP's clock: 5 s, warned at 4 s; the other's not yet. */
        cr_assert_eq(cc_engine_outbox(e)->n, 2, "round %d", round);
        assert_sla(0, "sla.warning", 1, t0 + 4000);
        assert_sla(1, "sla.breach", 0, t0 + 5000);
        cc_outbox_clear(cc_engine_outbox(e));
        cc_engine_tick(e, (uint64_t)t0 + 20000);
        cr_assert_eq(cc_engine_outbox(e)->n, 2, "round %d", round);
        assert_sla(1, "sla.breach", 0, t0 + 20000);
        SEND(round ? "a2" : "a0", t0 + 20000, "phone", "agent.answer",
             round ? "v2" : "v1");
        SEND(round ? "a3" : "a1", t0 + 20000, "phone", "agent.answer",
             round ? "p2" : "p1");
        cc_outbox_clear(cc_engine_outbox(e));
    }
}

/* Two reloads in a row: a warning fired under the first policy does not
 * fire again when the policy comes back. */
Test(engine, answer_clock_survives_two_reloads, .init = setup,
     .fini = teardown) {
    static const char *const a = "[sla.phone]\nanswer = 60s\n"
                                 "warn = 10%, 20%\n";
    static const char *const b = "[sla.phone]\nanswer = 60s\nwarn = 50%\n";

    reload_sla(a);
    join_at(T0, "1", "phone", "c1", "sales", -1);
    cc_engine_tick(e, (uint64_t)T0 + 13000);
    cr_assert_eq(cc_engine_outbox(e)->n, 2); /* warnings at 6 s and 12 s */
    cc_outbox_clear(cc_engine_outbox(e));
    reload_sla(b);
    reload_sla(a);
    cc_engine_tick(e, (uint64_t)T0 + 59999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 60000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.breach", 0, T0 + 60000);
}

/* A transfer to another queue starts a new answer clock; closing the
 * contact stops it. */
Test(engine, transfer_restarts_and_close_stops_the_clock, .init = setup,
     .fini = teardown) {
    join_at(T0, "1", "phone", "c1", "sales", -1);
    send_at(T0 + 10000, "2", T0 + 10000, "phone", "transfer", "c1", NULL,
            "billing");
    cc_engine_tick(e, (uint64_t)T0 + 25999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 26000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_sla(0, "sla.warning", 1, T0 + 26000);
    cc_outbox_clear(cc_engine_outbox(e));
    SEND("3", T0 + 27000, "phone", "contact.close", "c1");
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
}

/* Packs a query answer through fn into u. */
static void
unpack_sb(msgpack_sbuffer *sb, msgpack_unpacked *u) {
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, sb->data, sb->size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
}

/* The at_risk answer for queue (NULL: every queue), at most limit, unpacked
 * into u from sb (cleared first; u borrows it). */
static msgpack_object
at_risk_list(const char *queue, uint32_t limit, msgpack_sbuffer *sb,
             msgpack_unpacked *u) {
    msgpack_packer pk;
    msgpack_object a;
    const char *why = NULL;
    struct cc_str q = {queue, queue != NULL ? (uint32_t)strlen(queue) : 0};

    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    cr_assert_eq(cc_engine_pack_at_risk(e, q, limit, &pk, &why), 0, "%s", why);
    unpack_sb(sb, u);
    cr_assert(tmap_get(&u->data, "at_risk", &a));
    return a;
}

/* The supervisor's forecast: callers nearest to their breach first; the
 * conversation's clocks with every stage. */
Test(engine, at_risk_and_sla_queries, .init = setup, .fini = teardown) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object a, first, stages;
    const char *why = NULL;
    char conv[32];

    join_at(T0, "1", "phone", "early", "sales", -1);
    join_at(T0 + 5000, "2", "phone", "late", "sales", -1);
    join_at(T0 + 1000, "3", "phone", "other", "billing", -1);
    cc_engine_tick(e, (uint64_t)T0 + 17000); /* early's warning fired */

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    a = at_risk_list("sales", 10, &sb, &u);
    cr_assert_eq(a.via.array.size, 2);
    first = a.via.array.ptr[0];
    cr_assert(tmap_str_is(&first, "contact", "early"));
    cr_assert(tmap_str_is(&first, "clock", "answer"));
    cr_assert_eq(tmap_int(&first, "breach_due"), T0 + 20000);
    cr_assert_eq(tmap_int(&first, "left_ms"), 3000);
    cr_assert(tmap_get(&first, "stages", &stages));
    cr_assert_eq(stages.via.array.size, 2);
    cr_assert(tmap_str_is(&stages.via.array.ptr[0], "alert", "sla.warning"));
    cr_assert(stages.via.array.ptr[0].via.map.ptr[3].val.via.boolean);
    cr_assert(!stages.via.array.ptr[1].via.map.ptr[3].val.via.boolean);
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "contact", "late"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);

    /* Every queue, at most one; an unknown queue is an error. */
    a = at_risk_list(NULL, 1, &sb, &u);
    cr_assert_eq(a.via.array.size, 1);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "contact", "early"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(
        cc_engine_pack_at_risk(e, (struct cc_str){"nope", 4}, 10, &pk, &why),
        CC_ENOENT);
    cr_assert_not_null(why);

    /* A customer's conversation: its held contact's hold clock. */
    send_at(T0 + 17000, "4", T0 + 17000, "phone", "contact.open", "held",
            "+15550099", NULL);
    SEND("5", T0 + 17000, "phone", "agent.answer", "held");
    SEND("6", T0 + 18000, "phone", "hold.start", "held");
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(
        cc_engine_pack_conversation_by_ident(
            e, CC_IDENT_PHONE, (struct cc_str){"+15550099", 9}, &pk, &why),
        0, "%s", why);
    unpack_sb(&sb, &u);
    {
        msgpack_object id;
        cr_assert(tmap_get(&u.data, "conversation", &id));
        snprintf(conv, sizeof(conv), "%.*s", (int)id.via.str.size,
                 id.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(
        cc_engine_pack_sla(e, (struct cc_str){conv, (uint32_t)strlen(conv)},
                           &pk, &why),
        0, "%s", why);
    unpack_sb(&sb, &u);
    cr_assert(tmap_get(&u.data, "clocks", &a));
    cr_assert_eq(a.via.array.size, 2);
    /* The conversation's resolution clock (built in: 24 h), then the
     * contact's. */
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "clock", "resolution"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"),
                 T0 + 17000 + 86400000);
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "clock", "hold"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[1], "breach_due"), T0 + 78000);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(cc_engine_pack_sla(e, (struct cc_str){"cv-999", 6}, &pk, &why),
                 CC_ENOENT);
    cr_assert_eq(cc_engine_pack_sla(e, (struct cc_str){"x", 1}, &pk, &why),
                 CC_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- service level ---------------------------------------------------- */

/* The start of the minute after T0: windows count whole minutes. */
#define MB ((T0 / 60000 + 1) * 60000)

/* One of the queue's window figures at now: window 0, 1, 2 (15, 30, 60
 * minutes), key. */
static double
sl_figure(const char *queue, const char *channel, unsigned window,
          const char *key) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object ws, v;
    const char *why = NULL;
    double out = -1;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(
        cc_engine_pack_service_level(
            e, (struct cc_str){queue, queue ? (uint32_t)strlen(queue) : 0},
            (struct cc_str){channel, channel ? (uint32_t)strlen(channel) : 0},
            10, &pk, &why),
        0, "%s", why);
    unpack_sb(&sb, &u);
    cr_assert(tmap_get(&u.data, "windows", &ws));
    if (strchr(key, '/') != NULL) {
        /* "response_ms/p50_ms": one map down */
        char outer[32];
        msgpack_object m;
        snprintf(outer, sizeof(outer), "%.*s", (int)(strchr(key, '/') - key),
                 key);
        cr_assert(tmap_get(&ws.via.array.ptr[window], outer, &m), "%s", outer);
        cr_assert(tmap_get(&m, strchr(key, '/') + 1, &v), "%s", key);
    } else {
        cr_assert(tmap_get(&ws.via.array.ptr[window], key, &v), "%s", key);
    }
    if (v.type == MSGPACK_OBJECT_FLOAT64 || v.type == MSGPACK_OBJECT_FLOAT32)
        out = v.via.f64;
    else if (v.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        out = (double)v.via.u64;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return out;
}

/* Answers and abandons fall out of each window exactly when it slides past
 * their minute; short abandons are told apart. */
Test(engine, service_level_windows_slide_by_the_minute, .init = setup,
     .fini = teardown) {
    join_at(MB + 1000, "1", "phone", "c1", "sales", -1);
    SEND("2", MB + 11000, "phone", "agent.answer", "c1"); /* 10 s: met */
    join_at(MB + 2000, "3", "phone", "c2", "sales", -1);
    SEND("4", MB + 5000, "phone", "queue.leave", "c2"); /* 3 s: short */
    join_at(MB + 2000, "5", "phone", "c3", "sales", -1);
    SEND("6", MB + 32000, "phone", "queue.leave", "c3"); /* 30 s */
    join_at(MB + 3000, "7", "phone", "c4", "sales", -1);
    SEND("8", MB + 33000, "phone", "agent.answer", "c4"); /* 30 s: late */
    join_at(MB + 4000, "9", "phone", "c5", "sales", -1);
    SEND("10", MB + 6000, "phone", "agent.answer", "c5"); /* 2 s: met */
    /* Transferred in from another queue: offered to sales too. */
    join_at(MB + 4000, "11", "phone", "c6", "billing", -1);
    send_at(MB + 7000, "12", MB + 7000, "phone", "transfer", "c6", NULL,
            "sales");
    /* Handle times, answer to close: 60 s and 20 s. */
    SEND("13", MB + 71000, "phone", "contact.close", "c1");
    SEND("14", MB + 53000, "phone", "contact.close", "c4");

    cc_engine_tick(e, (uint64_t)MB + 15 * 60000 - 1);
    cr_assert_eq(sl_figure("sales", NULL, 0, "offered"), 6);
    cr_assert_eq(sl_figure("sales", NULL, 0, "answered"), 3);
    cr_assert_eq(sl_figure("sales", NULL, 0, "answered_in_target"), 2);
    cr_assert_eq(sl_figure("sales", NULL, 0, "abandoned"), 2);
    cr_assert_eq(sl_figure("sales", NULL, 0, "short_abandoned"), 1);
    /* 2 met of 3 answered */
    cr_assert_float_eq(sl_figure("sales", NULL, 0, "service_level"), 66.6,
                       0.05);
    /* (2 met + 1 short) / (3 answered + 2 abandoned) */
    cr_assert_float_eq(sl_figure("sales", NULL, 0, "service_level_short"), 60.0,
                       0.05);
    cr_assert_eq(sl_figure("sales", NULL, 0, "asa_ms"), 14000);
    cr_assert_eq(sl_figure("sales", NULL, 0, "handled"), 2);
    cr_assert_eq(sl_figure("sales", NULL, 0, "aht_ms"), 40000);
    cr_assert_eq(sl_figure(NULL, "phone", 0, "aht_ms"), 40000);
    cr_assert_eq(sl_figure(NULL, "phone", 0, "answered"), 3);
    cr_assert_eq(sl_figure(NULL, "phone", 0, "offered"), 7);
    /* A minute later the 15-minute window has slid past them. */
    cc_engine_tick(e, (uint64_t)MB + 15 * 60000);
    cr_assert_eq(sl_figure("sales", NULL, 0, "answered"), 0);
    cr_assert_eq(sl_figure("sales", NULL, 1, "answered"), 3);
    cc_engine_tick(e, (uint64_t)MB + 60 * 60000 - 1);
    cr_assert_eq(sl_figure("sales", NULL, 2, "answered"), 3);
    cc_engine_tick(e, (uint64_t)MB + 60 * 60000);
    cr_assert_eq(sl_figure("sales", NULL, 2, "answered"), 0);
    cr_assert_eq(sl_figure("sales", NULL, 2, "service_level"), -1);
}

/* Below target once (not on every further answer), recovered only past
 * the target plus the hysteresis. */
Test(engine, service_level_alert_with_hysteresis, .init = setup,
     .fini = teardown) {
    char id[16], c[16];
    int i, below = 0, recovered = 0;
    size_t k;

    for (i = 0; i < 30; i++) {
        /* 10 in time, 3 late, then 8 in time: 10/13 = 77% (below 80),
         * 17/20 = 85% on the last (recovered at 80 + 5). */
        int late = i >= 10 && i < 13;
        int64_t t0 = MB + i * 60000LL;
        if (i >= 21)
            break;
        snprintf(c, sizeof(c), "c%d", i);
        snprintf(id, sizeof(id), "j%d", i);
        join_at(t0, id, "phone", c, "sales", -1);
        snprintf(id, sizeof(id), "a%d", i);
        SEND(id, t0 + (late ? 30000 : 10000), "phone", "agent.answer", c);
    }
    for (k = 0; k < cc_engine_outbox(e)->n; k++) {
        msgpack_unpacked u;
        int kind;
        const char *topic;
        msgpack_unpacked_init(&u);
        topic = out_record(k, &u, &kind);
        if (topic != NULL && strcmp(topic, "queue.service_level") == 0) {
            msgpack_object lv;
            cr_assert(tmap_get(&u.data, "service_level", &lv));
            if (tmap_str_is(&u.data, "state", "below")) {
                below++;
                /* 10 of 13 */
                cr_assert_float_eq(lv.via.f64, 76.9, 0.05);
            } else if (tmap_str_is(&u.data, "state", "recovered")) {
                recovered++;
                /* Not at 80% (12 of 15): at 85% (17 of 20). */
                cr_assert_float_eq(lv.via.f64, 85.0, 0.05);
            }
        }
        msgpack_unpacked_destroy(&u);
    }
    cr_assert_eq(below, 1);
    cr_assert_eq(recovered, 1);
    cr_assert_eq(stat_int("alerts/queue.service_level"), 2);
}

/* The window slides with no answer or abandon to notice it: a queue
 * whose good minute slides out falls below target, and says so within
 * the minute. */
Test(engine, service_level_alert_as_the_window_slides, .init = setup,
     .fini = teardown) {
    char id[16], c[16];
    int i;
    size_t k;

    /* Minute 0: 5 answered in time. Minutes 10 to 19: 7 in time, 3 late.
     * 12 of 15 is 80%, on target; once minute 0 leaves the 30-minute
     * window, 7 of 10 is 70%. */
    for (i = 0; i < 15; i++) {
        int late = i >= 12;
        int64_t t0 = i < 5 ? MB + i * 1000LL : MB + (i + 5) * 60000LL;
        snprintf(c, sizeof(c), "c%d", i);
        snprintf(id, sizeof(id), "j%d", i);
        join_at(t0, id, "phone", c, "sales", -1);
        snprintf(id, sizeof(id), "a%d", i);
        SEND(id, t0 + (late ? 30000 : 10000), "phone", "agent.answer", c);
    }
    cc_engine_tick(e, (uint64_t)MB + 29 * 60000);
    cr_assert_eq(stat_int("alerts/queue.service_level"), 0);
    /* Time passes as in the daemon, a second at a time. */
    for (k = 29 * 60; k <= 45 * 60; k++)
        cc_engine_tick(e, (uint64_t)MB + k * 1000);
    cr_assert_eq(stat_int("alerts/queue.service_level"), 1);
    {
        msgpack_unpacked u;
        msgpack_object lv;
        int kind;
        msgpack_unpacked_init(&u);
        out_record(first_alert("queue.service_level"), &u, &kind);
        cr_assert(tmap_str_is(&u.data, "state", "below"));
        cr_assert(tmap_get(&u.data, "service_level", &lv));
        cr_assert_float_eq(lv.via.f64, 70.0, 0.05);
        /* At the first minute's end once minute 0 is out. */
        cr_assert_leq(tmap_int(&u.data, "ts"), MB + 31 * 60000);
        msgpack_unpacked_destroy(&u);
    }
}

/* The forecast of queue Q: the conversations whose latest queue is Q,
 * by their response and resolution clocks, beside the callers' answer
 * clocks; a clock paused (waiting on the customer) or stopped is not at
 * risk. */
Test(engine, at_risk_ranks_conversation_clocks, .init = setup,
     .fini = teardown) {
    static const struct {
        const char *clock;
        int64_t breach;
    } want[] = {{"first_response", T0 + 61000},
                {"first_response", T0 + 2000 + 4 * 3600000LL},
                {"resolution", T0 + 86400000LL},
                {"resolution", T0 + 2000 + 86400000LL}};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object a;
    unsigned i;

    send_at(T0, "1", T0, "chat", "queue.join", "s1", "+15552001", "web");
    SEND("2", T0 + 1000, "chat", "message.in", "s1");
    send_at(T0 + 2000, "3", T0 + 2000, "email", "contact.open", "m1",
            "+15552002", NULL);
    send_at(T0 + 2000, "4", T0 + 2000, "email", "queue.join", "m1", NULL,
            "web");
    send_at(T0 + 3000, "5", T0 + 3000, "chat", "queue.join", "s3", "+15552003",
            "other");
    SEND("6", T0 + 3000, "chat", "message.in", "s3");
    cc_engine_tick(e, (uint64_t)T0 + 10000);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    a = at_risk_list("web", 10, &sb, &u);
    cr_assert_eq(a.via.array.size, 4);
    for (i = 0; i < 4; i++) {
        cr_assert(tmap_str_is(&a.via.array.ptr[i], "clock", want[i].clock),
                  "entry %u", i);
        cr_assert_eq(tmap_int(&a.via.array.ptr[i], "breach_due"),
                     want[i].breach, "entry %u", i);
        cr_assert(tmap_str_is(&a.via.array.ptr[i], "conversation",
                              i % 2 == 0 ? "cv-1" : "cv-2"));
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);

    /* Any queue, two: both chats' first responses. */
    a = at_risk_list(NULL, 2, &sb, &u);
    cr_assert_eq(a.via.array.size, 2);
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "conversation", "cv-3"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[1], "breach_due"), T0 + 63000);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);

    /* The email answered: its response clock stops and its resolution
     * clock pauses, so it leaves the forecast. */
    SEND("7", T0 + 20000, "email", "message.out", "m1");
    a = at_risk_list("web", 10, &sb, &u);
    cr_assert_eq(a.via.array.size, 2);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "conversation", "cv-1"));
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "conversation", "cv-1"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* The forecast in steps, as the daemon answers it over loop turns: one
 * bucket a step gives the same answer as one walk, and a conversation
 * resolved between the walk and the answer is left out. */
Test(engine, at_risk_in_steps, .init = setup, .fini = teardown) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object a;
    struct cc_at_risk *q;
    const char *why = NULL;
    unsigned steps = 0;

    send_at(T0, "1", T0, "chat", "message.in", "s1", "+15553001", NULL);
    send_at(T0 + 1000, "2", T0 + 1000, "chat", "message.in", "s2", "+15553002",
            NULL);
    send_at(T0 + 2000, "3", T0 + 2000, "social", "message.in", "x3",
            "+15553003", NULL);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* One bucket a step, against one walk: the same bytes. */
    cr_assert_eq(
        cc_engine_pack_at_risk(e, (struct cc_str){NULL, 0}, 3, &pk, &why), 0);
    {
        msgpack_sbuffer one;
        msgpack_packer pk1;
        msgpack_sbuffer_init(&one);
        msgpack_packer_init(&pk1, &one, msgpack_sbuffer_write);
        cr_assert_eq(
            cc_engine_at_risk_begin(e, (struct cc_str){NULL, 0}, 3, &q, &why),
            0);
        while (!cc_engine_at_risk_step(e, q, 1))
            steps++;
        cr_assert_gt(steps, 3);
        cc_engine_at_risk_end(e, q, &pk1);
        cr_assert_eq(one.size, sb.size);
        cr_assert_eq(memcmp(one.data, sb.data, sb.size), 0);
        msgpack_sbuffer_destroy(&one);
    }
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(
        cc_engine_at_risk_begin(e, (struct cc_str){NULL, 0}, 3, &q, &why), 0);
    while (!cc_engine_at_risk_step(e, q, 1000))
        ;
    /* Resolved after the walk found it. */
    send_at(T0 + 3000, "4", T0 + 3000, "chat", "conversation.resolve", NULL,
            "+15553001", NULL);
    cc_engine_at_risk_end(e, q, &pk);
    unpack_sb(&sb, &u);
    cr_assert(tmap_get(&u.data, "at_risk", &a));
    /* cv-2's first response (1 min), cv-3's (1 h), cv-2's resolution. */
    cr_assert_eq(a.via.array.size, 3);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "conversation", "cv-2"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"), T0 + 61000);
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "conversation", "cv-3"));
    cr_assert(tmap_str_is(&a.via.array.ptr[2], "clock", "resolution"));
    cr_assert(tmap_str_is(&a.via.array.ptr[2], "conversation", "cv-2"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    /* A query ended unanswered (the daemon stopping) frees itself. */
    cr_assert_eq(
        cc_engine_at_risk_begin(e, (struct cc_str){NULL, 0}, 3, &q, &why), 0);
    cc_engine_at_risk_end(e, q, NULL);
}

/* at_risk keeps the soonest `limit` of many, in order (against sorting
 * them all). */
Test(engine, at_risk_picks_the_soonest_of_many, .init = setup,
     .fini = teardown) {
    int64_t joined[200];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object a;
    int i, j;

    srand(3);
    for (i = 0; i < 200; i++) {
        char id[16], c[16];
        snprintf(id, sizeof(id), "j%d", i);
        snprintf(c, sizeof(c), "c%d", i);
        joined[i] = T0 + rand() % 10000;
        send_at(T0 + 10000, id, joined[i], "phone", "queue.join", c, NULL,
                "sales");
    }
    /* The seven earliest joins, by brute force. */
    for (i = 0; i < 200; i++)
        for (j = i + 1; j < 200; j++)
            if (joined[j] < joined[i]) {
                int64_t tmp = joined[i];
                joined[i] = joined[j];
                joined[j] = tmp;
            }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    a = at_risk_list("sales", 7, &sb, &u);
    cr_assert_eq(a.via.array.size, 7);
    for (i = 0; i < 7; i++)
        cr_assert_eq(tmap_int(&a.via.array.ptr[i], "breach_due"),
                     joined[i] + 20000, "rank %d", i);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* A reload while a caller is on hold moves the hold clock's deadline. */
Test(engine, hold_clock_follows_new_policies, .init = setup, .fini = teardown) {
    SEND("1", T0, "phone", "agent.answer", "c1");
    SEND("2", T0, "phone", "hold.start", "c1");
    cc_engine_tick(e, (uint64_t)T0 + 49000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1); /* warned at 48 s */
    cc_outbox_clear(cc_engine_outbox(e));
    reload_sla("[sla.phone]\nhold = 2m\n");
    /* Warned once already; the breach moves from 60 s to 120 s. */
    cc_engine_tick(e, (uint64_t)T0 + 119999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 120000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
}

/* ---- the response clock ------------------------------------------------ */

/* Asserts outbox record i is SLA alert `alert` of `clock` due at due. */
static void
assert_conv_sla(size_t i, const char *alert, const char *clock, int64_t due) {
    msgpack_unpacked u;
    msgpack_object ctx;
    const char *topic;
    int kind;

    msgpack_unpacked_init(&u);
    topic = out_record(i, &u, &kind);
    cr_assert_eq(kind, CC_OUT_ALERT);
    cr_assert_str_eq(topic, alert);
    cr_assert(tmap_str_is(&u.data, "clock", clock), "clock");
    cr_assert_eq(tmap_int(&u.data, "due"), due, "%s due", alert);
    cr_assert(tmap_get(&u.data, "context", &ctx), "no context");
    msgpack_unpacked_destroy(&u);
}

/* Record i of the outbox has the documented id of a conversation clock's
 * alert: <alert>:cv-<conv>:<clock>:<start>:<level>. */
static void
assert_out_id(size_t i, const char *alert, unsigned conv, const char *clock,
              int64_t start, unsigned level) {
    msgpack_unpacked u;
    char want[128];
    int kind;

    snprintf(want, sizeof(want), "%s:cv-%u:%s:%lld:%u", alert, conv, clock,
             (long long)start, level);
    msgpack_unpacked_init(&u);
    (void)out_record(i, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "id", want), "record %zu: id is not %s", i,
              want);
    msgpack_unpacked_destroy(&u);
}

/* A chat opens: the first response is due in a minute (warned at 48 s);
 * an agent reply stops it; the customer's next message starts the next
 * response (2 minutes). */
Test(engine, response_clocks_first_then_next, .init = setup, .fini = teardown) {
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15550101", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 47999);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    cc_engine_tick(e, (uint64_t)T0 + 48000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_conv_sla(0, "sla.warning", "first_response", T0 + 48000);
    cc_engine_tick(e, (uint64_t)T0 + 60000);
    cr_assert_eq(cc_engine_outbox(e)->n, 2);
    assert_conv_sla(1, "sla.breach", "first_response", T0 + 60000);
    /* Ids as documented: <alert>:<conversation>:<clock>:<start>:<level>. */
    assert_out_id(0, "sla.warning", 1, "first_response", T0, 1);
    assert_out_id(1, "sla.breach", 1, "first_response", T0, 0);
    cc_outbox_clear(cc_engine_outbox(e));
    /* The reply comes late; the clock stops, nothing more fires. */
    SEND("2", T0 + 70000, "chat", "message.out", "s1");
    cc_engine_tick(e, (uint64_t)T0 + 600000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
    /* The customer writes again: the next response, 2 minutes. */
    SEND("3", T0 + 600000, "chat", "message.in", "s1");
    SEND("4", T0 + 600500, "chat", "message.in", "s1"); /* still running */
    cc_engine_tick(e, (uint64_t)T0 + 600000 + 96000);
    cr_assert_eq(cc_engine_outbox(e)->n, 1);
    assert_conv_sla(0, "sla.warning", "next_response", T0 + 696000);
    cc_outbox_clear(cc_engine_outbox(e));
    SEND("5", T0 + 700000, "chat", "message.out", "s1"); /* in time */
    /* Two waits for a reply, 70 s and 100 s, in the chat channel's
     * response times (read as their buckets' upper bounds). */
    cr_assert_eq(sl_figure(NULL, "chat", 2, "response_ms/count"), 2);
    cr_assert_eq(sl_figure(NULL, "chat", 2, "response_ms/p50_ms"), 98303);
    cr_assert_eq(sl_figure(NULL, "chat", 2, "response_ms/p99_ms"), 131071);
    cc_engine_tick(e, (uint64_t)T0 + 7200000);
    cr_assert_eq(cc_engine_outbox(e)->n, 0);
}

/* How many of the outbox's records are SLA alerts. */
static size_t
sla_alerts(void) {
    size_t k, n = 0;

    for (k = 0; k < cc_engine_outbox(e)->n; k++) {
        msgpack_unpacked u;
        int kind;
        const char *topic;
        msgpack_unpacked_init(&u);
        topic = out_record(k, &u, &kind);
        n += topic != NULL && strncmp(topic, "sla.", 4) == 0;
        msgpack_unpacked_destroy(&u);
    }
    return n;
}

/* The clock belongs to the conversation: a reply on email stops a clock a
 * chat message started; a resolve stops it too; a phone call starts none.
 * (The email contact is a repeat: continuity.repeat is in the outbox.) */
Test(engine, response_clock_follows_the_conversation, .init = setup,
     .fini = teardown) {
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15550202", NULL);
    send_at(T0 + 1000, "2", T0 + 1000, "email", "contact.open", "m1",
            "+15550202", NULL);
    SEND("3", T0 + 30000, "email", "message.out", "m1");
    cc_engine_tick(e, (uint64_t)T0 + 3600000);
    cr_assert_eq(sla_alerts(), 0);

    send_at(T0 + 3600000, "4", T0 + 3600000, "chat", "contact.open", "s2",
            "+15550303", NULL);
    send_at(T0 + 3610000, "5", T0 + 3610000, "phone", "conversation.resolve",
            NULL, "+15550303", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 7200000);
    cr_assert_eq(sla_alerts(), 0);

    send_at(T0 + 7200000, "6", T0 + 7200000, "phone", "contact.open", "p1",
            "+15550404", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 9000000);
    cr_assert_eq(sla_alerts(), 0);
    /* Without a reply the same chat warns and breaches: the test can
     * tell. */
    send_at(T0 + 9000000, "7", T0 + 9000000, "chat", "contact.open", "s3",
            "+15550606", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 9060000);
    cr_assert_eq(sla_alerts(), 2);
    cc_outbox_clear(cc_engine_outbox(e));
    /* The resolved conversation reopens on a customer message: a new
     * clock from that message (the resolve cleared the old one). */
    SEND("8", T0 + 9100000, "chat", "message.in", "s2");
    cc_engine_tick(e, (uint64_t)T0 + 9148000);
    cr_assert_eq(sla_alerts(), 1);
    assert_conv_sla(0, "sla.warning", "first_response", T0 + 9148000);
}

static void
setup_any_response(void) {
    setup_sla("[sla.any]\nfirst_response = 1m\n");
}

/* A phone call opening is not a message waiting for a reply, even where a
 * policy gives every channel a first-response target. */
Test(engine, phone_opens_start_no_response_clock, .init = setup_any_response,
     .fini = teardown) {
    send_at(T0, "1", T0, "phone", "contact.open", "p1", "+15550707", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 120000);
    cr_assert_eq(sla_alerts(), 0);
    send_at(T0 + 120000, "2", T0 + 120000, "social", "contact.open", "x1",
            "+15550808", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 240000);
    cr_assert_eq(sla_alerts(), 2);
}

/* A contact.open naming a phone and an email: the two customers merge. */
static void
open_two(int64_t ts, const char *id, const char *contact, const char *phone,
         const char *email) {
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 6);
    tb_kv_str(&t, "id", id);
    tb_kv_int(&t, "ts", ts);
    tb_kv_str(&t, "channel", "chat");
    tb_kv_str(&t, "type", "contact.open");
    tb_kv_str(&t, "contact", contact);
    tb_str(&t, "customer");
    msgpack_pack_map(&t.pk, (phone != NULL) + (email != NULL));
    if (phone != NULL)
        tb_kv_str(&t, "phone", phone);
    if (email != NULL)
        tb_kv_str(&t, "email", email);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_eq(rep.accepted, 1);
}

/* Two customers found to be one: the older conversation survives and
 * keeps the waiting customer's clock from the newer one. */
Test(engine, merge_keeps_the_waiting_clock, .init = setup, .fini = teardown) {
    msgpack_unpacked u;
    int kind;

    open_two(T0, "1", "s1", "+15550909", NULL);
    SEND("2", T0 + 1000, "chat", "message.out", "s1"); /* answered */
    open_two(T0 + 10000, "3", "s2", NULL, "late@example.com");
    open_two(T0 + 20000, "4", "s3", "+15550909", "late@example.com");
    cc_engine_tick(e, (uint64_t)T0 + 10000 + 48000);
    cr_assert_eq(sla_alerts(), 1);
    msgpack_unpacked_init(&u);
    out_record(cc_engine_outbox(e)->n - 1, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "clock", "first_response"));
    cr_assert_eq(tmap_int(&u.data, "due"), T0 + 58000);
    cr_assert(tmap_str_is(&u.data, "conversation", "cv-1"));
    msgpack_unpacked_destroy(&u);
}

/* Tags that the newer conversation brings into a merge choose the policy
 * of the survivor's next clock: a VIP found to be a plain caller with an
 * older conversation is served as a VIP. */
Test(engine, merged_tags_choose_the_policy, .init = setup_vip,
     .fini = teardown) {
    open_tagged(T0, "1", "p1", "+15550031", NULL);
    open_tagged_on(T0 + 1000, "2", "chat", "v1", "email", "vip@example.com",
                   "vip");
    open_two(T0 + 2000, "3", "s1", "+15550031", "vip@example.com");
    cr_assert_eq(stat_int("conversations/merges"), 1);
    join_at(T0 + 3000, "4", "phone", "p1", "sales", -1);
    cc_outbox_clear(cc_engine_outbox(e));
    /* sla.phone.vip: 5 s, not sla.phone's 20 s. */
    cc_engine_tick(e, (uint64_t)T0 + 8000);
    assert_sla(first_alert("sla.breach"), "sla.breach", 0, T0 + 8000);
}

/* The sla query shows a conversation's response clock. */
Test(engine, sla_query_shows_the_response_clock, .init = setup,
     .fini = teardown) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    msgpack_object a, id;
    const char *why = NULL;
    char conv[32];

    send_at(T0, "1", T0, "social", "contact.open", "x1", "+15550505", NULL);
    cc_engine_tick(e, (uint64_t)T0 + 1000);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(
        cc_engine_pack_conversation_by_ident(
            e, CC_IDENT_PHONE, (struct cc_str){"+15550505", 9}, &pk, &why),
        0, "%s", why);
    unpack_sb(&sb, &u);
    cr_assert(tmap_get(&u.data, "conversation", &id));
    snprintf(conv, sizeof(conv), "%.*s", (int)id.via.str.size, id.via.str.ptr);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    cr_assert_eq(
        cc_engine_pack_sla(e, (struct cc_str){conv, (uint32_t)strlen(conv)},
                           &pk, &why),
        0, "%s", why);
    unpack_sb(&sb, &u);
    cr_assert(tmap_get(&u.data, "clocks", &a));
    cr_assert_eq(a.via.array.size, 2); /* and the resolution clock */
    cr_assert(tmap_str_is(&a.via.array.ptr[1], "clock", "resolution"));
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "clock", "first_response"));
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "conversation", conv));
    {
        msgpack_object st;
        cr_assert(tmap_get(&a.via.array.ptr[0], "stages", &st));
        cr_assert_eq(st.via.array.size, 2); /* the warning, the breach */
    }
    /* Social: an hour. */
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"), T0 + 3600000);
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "left_ms"), 3599000);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the resolution clock ---------------------------------------------- */

/* Chat with only a resolution clock: 10 minutes of agent time, warned at
 * 80%, escalated at +50%. */
static void
setup_resolution(void) {
    setup_sla("[sla.chat]\n"
              "first_response = off\n"
              "next_response = off\n"
              "resolution = 10m\n"
              "warn = 80%\n"
              "escalate = +50%\n");
}

#define MIN 60000LL

/* Asserts outbox record i concerns conversation conv. */
static void
assert_record_conv(size_t i, const char *conv) {
    msgpack_unpacked u;
    int kind;

    msgpack_unpacked_init(&u);
    out_record(i, &u, &kind);
    cr_assert(tmap_str_is(&u.data, "conversation", conv), "record %zu", i);
    msgpack_unpacked_destroy(&u);
}

/* Asserts outbox record i is the resolution clock's `alert` due at due,
 * having counted stage_ms of agent time. */
static void
assert_res(size_t i, const char *alert, int64_t due, int64_t stage_ms) {
    msgpack_unpacked u;
    int kind;

    assert_conv_sla(i, alert, "resolution", due);
    msgpack_unpacked_init(&u);
    out_record(i, &u, &kind);
    cr_assert_eq(tmap_int(&u.data, "stage_ms"), stage_ms);
    cr_assert_eq(tmap_int(&u.data, "start"), T0);
    cr_assert_eq(tmap_int(&u.data, "elapsed_ms"), due - T0);
    msgpack_unpacked_destroy(&u);
}

/* The conversation's clocks as the sla query reports them, unpacked into
 * u from sb (which u borrows). */
static msgpack_object
conv_clocks(const char *conv, msgpack_sbuffer *sb, msgpack_unpacked *u) {
    msgpack_packer pk;
    msgpack_object a;
    const char *why = NULL;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    cr_assert_eq(
        cc_engine_pack_sla(e, (struct cc_str){conv, (uint32_t)strlen(conv)},
                           &pk, &why),
        0, "%s", why);
    unpack_sb(sb, u);
    cr_assert(tmap_get(&u->data, "clocks", &a));
    return a;
}

/* The clock counts only the time the conversation waits on an agent: an
 * agent's message pauses it, the customer's next message resumes it, a
 * resolve pauses it and a reopen resumes it where it stopped. */
Test(engine, resolution_clock_pauses_while_waiting_on_the_customer,
     .init = setup_resolution, .fini = teardown) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    msgpack_object a;

    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551001", NULL);
    SEND("2", T0 + 2 * MIN, "chat", "message.out", "s1"); /* 2 min counted */
    cc_engine_tick(e, (uint64_t)(T0 + 60 * MIN));
    cr_assert_eq(sla_alerts(), 0);
    /* Paused: nothing falls due; it has counted 2 minutes. */
    a = conv_clocks("cv-1", &sb, &u);
    cr_assert_eq(a.via.array.size, 1);
    cr_assert(tmap_str_is(&a.via.array.ptr[0], "clock", "resolution"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "counted_ms"), 2 * MIN);
    cr_assert(tmap_is_true(&a.via.array.ptr[0], "paused"));
    cr_assert(tmap_is_nil(&a.via.array.ptr[0], "breach_due"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);

    /* The customer writes after an hour: 6 more minutes to the warning. */
    SEND("3", T0 + 60 * MIN, "chat", "message.in", "s1");
    a = conv_clocks("cv-1", &sb, &u);
    cr_assert(!tmap_is_true(&a.via.array.ptr[0], "paused"));
    cr_assert_eq(tmap_int(&a.via.array.ptr[0], "breach_due"), T0 + 68 * MIN);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    cc_engine_tick(e, (uint64_t)(T0 + 66 * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(T0 + 66 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.warning", T0 + 66 * MIN, 8 * MIN);
    cc_outbox_clear(cc_engine_outbox(e));

    /* Another reply at 67 (9 counted), the customer again at 80: the
     * breach a minute later. */
    SEND("4", T0 + 67 * MIN, "chat", "message.out", "s1");
    cc_engine_tick(e, (uint64_t)(T0 + 80 * MIN));
    cr_assert_eq(sla_alerts(), 0);
    SEND("5", T0 + 80 * MIN, "chat", "message.in", "s1");
    /* A second customer message does not move it. */
    SEND("6", T0 + 80 * MIN + 30000, "chat", "message.in", "s1");
    cc_engine_tick(e, (uint64_t)(T0 + 81 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.breach", T0 + 81 * MIN, 10 * MIN);
    cc_outbox_clear(cc_engine_outbox(e));

    /* Resolved at 82 (11 counted): the escalation at 15 never comes... */
    send_at(T0 + 82 * MIN, "7", T0 + 82 * MIN, "chat", "conversation.resolve",
            NULL, "+15551001", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 120 * MIN));
    cr_assert_eq(sla_alerts(), 0);
    /* ...until the customer writes again and it reopens: 4 minutes on. */
    SEND("8", T0 + 120 * MIN, "chat", "message.in", "s1");
    cc_engine_tick(e, (uint64_t)(T0 + 124 * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(T0 + 124 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.escalation", T0 + 124 * MIN, 15 * MIN);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)(T0 + 48 * 60 * MIN));
    cr_assert_eq(sla_alerts(), 0);
}

/* Resolved in time, it fires nothing; a conversation opened by an agent's
 * message starts paused; each new contact of the customer's resumes it. */
Test(engine, resolution_clock_met_or_waiting_fires_nothing,
     .init = setup_resolution, .fini = teardown) {
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551002", NULL);
    send_at(T0 + 5 * MIN, "2", T0 + 5 * MIN, "chat", "conversation.resolve",
            NULL, "+15551002", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 600 * MIN));
    cr_assert_eq(sla_alerts(), 0);

    /* Outbound: the agent writes first; nothing counts until the
     * customer's own contact, an email an hour later. */
    send_at(T0 + 600 * MIN, "3", T0 + 600 * MIN, "chat", "message.out", "s2",
            "+15551003", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 660 * MIN));
    cr_assert_eq(sla_alerts(), 0);
    send_at(T0 + 660 * MIN, "4", T0 + 660 * MIN, "email", "contact.open", "m1",
            "+15551003", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 668 * MIN));
    /* The warning at 8 counted minutes, beside the repeat contact alert
     * the email raised. */
    cr_assert_eq(sla_alerts(), 1);
    assert_conv_sla(first_alert("sla."), "sla.warning", "resolution",
                    T0 + 668 * MIN);
}

/* Business hours: the clock counts open time only, and its pauses are
 * taken out of that. */
static void
setup_office_resolution(void) {
    setup_sla(OFFICE "[sla.chat]\n"
                     "first_response = off\n"
                     "next_response = off\n"
                     "resolution = 1h\n"
                     "warn = 50%\n"
                     "calendar = office\n");
}

/* Opened Friday 16:30, answered at 16:40 (10 business minutes), the
 * customer back on Saturday: the clock resumes on Monday at 09:00 and warns
 * at 30 counted minutes, 09:20; breaches at 09:50. */
Test(engine, resolution_clock_counts_business_hours_between_pauses,
     .init = setup_office_resolution, .fini = teardown) {
    send_at(FRI_1630, "1", FRI_1630, "chat", "contact.open", "s1", "+15551004",
            NULL);
    SEND("2", FRI_1630 + 10 * MIN, "chat", "message.out", "s1");
    SEND("3", FRI_1630 + 20 * 60 * MIN, "chat", "message.in", "s1");
    /* Monday 09:00 is 2 days 16.5 hours after Friday 16:30. */
    cc_engine_tick(e, (uint64_t)(FRI_1630 + (64 * 60 + 30 + 20) * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(FRI_1630 + (64 * 60 + 30 + 20) * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_conv_sla(0, "sla.warning", "resolution",
                    FRI_1630 + (64 * 60 + 50) * MIN);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)(FRI_1630 + (64 * 60 + 30 + 50) * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_conv_sla(0, "sla.breach", "resolution",
                    FRI_1630 + (64 * 60 + 80) * MIN);
}

/* Two customers found to be one: the older conversation's clock survives,
 * and resumes if the newer one was waiting on an agent. */
Test(engine, merge_resumes_the_resolution_clock, .init = setup_resolution,
     .fini = teardown) {
    open_two(T0, "1", "s1", "+15551005", NULL);
    SEND("2", T0 + 3 * MIN, "chat", "message.out", "s1"); /* 3 counted */
    open_two(T0 + 25 * MIN, "3", "s2", NULL, "merge@example.com");
    open_two(T0 + 30 * MIN, "4", "s3", "+15551005", "merge@example.com");
    /* Waiting on an agent since the newer one's start, 25: 5 more minutes
     * to the warning, which falls due at the merge itself. */
    cc_engine_tick(e, (uint64_t)(T0 + 30 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.warning", T0 + 30 * MIN, 8 * MIN);
    assert_record_conv(0, "cv-1");
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)(T0 + 32 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.breach", T0 + 32 * MIN, 10 * MIN);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)(T0 + 60 * MIN));
    cr_assert_eq(sla_alerts(), 1); /* the escalation, at 37 */
}

/* A reload moves the deadline of a running resolution clock and of a
 * paused one; stages fired stay fired. */
Test(engine, resolution_clock_follows_new_policies, .init = setup_resolution,
     .fini = teardown) {
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551006", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 8 * MIN));
    cr_assert_eq(sla_alerts(), 1); /* warned at 8 */
    cc_outbox_clear(cc_engine_outbox(e));
    SEND("2", T0 + 9 * MIN, "chat", "message.out", "s1"); /* 9 counted */
    reload_sla("[sla.chat]\n"
               "first_response = off\n"
               "next_response = off\n"
               "resolution = 20m\n"
               "warn = 50%, 80%\n");
    /* Resumed at 30: the second warning at 16 counted (37), the breach at
     * 20 (41); the first warning fired already. */
    SEND("3", T0 + 30 * MIN, "chat", "message.in", "s1");
    cc_engine_tick(e, (uint64_t)(T0 + 37 * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(T0 + 37 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.warning", T0 + 37 * MIN, 16 * MIN);
    cc_outbox_clear(cc_engine_outbox(e));
    cc_engine_tick(e, (uint64_t)(T0 + 41 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.breach", T0 + 41 * MIN, 20 * MIN);
}

/* A running clock keeps an idle conversation until its last stage, and
 * waits for it: the conversation's timer is not left in the past. */
Test(engine, resolution_clock_outlives_the_idle_close, .init = setup_resolution,
     .fini = teardown) {
    e->cfg.idle_close_ms = MIN; /* a minute */
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551007", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 2 * MIN));
    cr_assert_eq(sla_alerts(), 0);
    /* Idle since T0, the warning at 8 min to come: the conversation's
     * timer waits for that warning, not for the idle time gone by. */
    cr_assert_eq(cc_conv_find(e, 1)->timer.expires, (uint64_t)(T0 + 8 * MIN));
    cc_engine_tick(e, (uint64_t)(T0 + 8 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    cc_engine_tick(e, (uint64_t)(T0 + 10 * MIN));
    cr_assert_eq(sla_alerts(), 2); /* the breach */
    cc_engine_tick(e, (uint64_t)(T0 + 15 * MIN));
    cr_assert_eq(sla_alerts(), 3); /* the escalation, the last stage */
    cr_assert_eq(stat_int("conversations/open"), 0);
}

/* Events out of order: a customer's message stamped before the agent's
 * reply does not resume the clock; an agent's reply stamped before the
 * customer's waiting message neither pauses the resolution clock nor
 * stops the response clock. */
Test(engine, clocks_ignore_late_events_from_before, .init = setup,
     .fini = teardown) {
    /* Chat: first response 1 min, resolution 24 h. */
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551008", NULL);
    SEND("2", T0 + 2 * MIN, "chat", "message.out", "s1");
    /* Stamped a minute in, arriving after the reply. */
    send_at(T0 + 3 * MIN, "3", T0 + MIN, "chat", "message.in", "s1", NULL,
            NULL);
    {
        msgpack_sbuffer sb;
        msgpack_unpacked u;
        msgpack_object a = conv_clocks("cv-1", &sb, &u);
        cr_assert_eq(a.via.array.size, 1); /* no response clock */
        cr_assert(tmap_is_true(&a.via.array.ptr[0], "paused"));
        cr_assert_eq(tmap_int(&a.via.array.ptr[0], "counted_ms"), 2 * MIN);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
    /* (The first response breached before the reply at 2 min.) The
     * customer writes at 10 min; a reply stamped at 9 arrives after it:
     * both clocks run on. */
    cc_outbox_clear(cc_engine_outbox(e));
    SEND("4", T0 + 10 * MIN, "chat", "message.in", "s1");
    send_at(T0 + 10 * MIN + 1000, "5", T0 + 9 * MIN, "chat", "message.out",
            "s1", NULL, NULL);
    cc_engine_tick(e, (uint64_t)(T0 + 12 * MIN));
    cr_assert_eq(sla_alerts(), 2); /* next response: warned and breached */
    assert_conv_sla(1, "sla.breach", "next_response", T0 + 12 * MIN);
    {
        msgpack_sbuffer sb;
        msgpack_unpacked u;
        msgpack_object a = conv_clocks("cv-1", &sb, &u);
        cr_assert_eq(a.via.array.size, 2);
        cr_assert(!tmap_is_true(&a.via.array.ptr[1], "paused"));
        cr_assert_eq(tmap_int(&a.via.array.ptr[1], "counted_ms"), 4 * MIN);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* Email has no resolution target here, chat has: the older (email)
 * conversation survives a merge and takes the chat's running clock, its
 * times rebased on the survivor's start. */
static void
setup_chat_only_resolution(void) {
    setup_sla("[sla.email]\n"
              "resolution = off\n"
              "[sla.chat]\n"
              "first_response = off\n"
              "next_response = off\n"
              "resolution = 10m\n"
              "warn = 80%\n");
}

Test(engine, merge_takes_the_other_resolution_clock,
     .init = setup_chat_only_resolution, .fini = teardown) {
    tb_reset(&t);
    send_at(T0, "1", T0, "email", "contact.open", "m1", "+15551009", NULL);
    open_two(T0 + 5 * MIN, "2", "s2", NULL, "merge2@example.com");
    open_two(T0 + 6 * MIN, "3", "s3", "+15551009", "merge2@example.com");
    cc_outbox_clear(cc_engine_outbox(e)); /* the repeat contact alerts */
    cc_engine_tick(e, (uint64_t)(T0 + 13 * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(T0 + 13 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    /* The survivor's id and start; 8 minutes counted from the chat's. */
    assert_res(0, "sla.warning", T0 + 13 * MIN, 8 * MIN);
    assert_record_conv(0, "cv-1");
}

/* A reload moves a running resolution clock's stages: 20 minutes instead
 * of 10, from the same start. */
Test(engine, resolution_clock_reload_while_running, .init = setup_resolution,
     .fini = teardown) {
    send_at(T0, "1", T0, "chat", "contact.open", "s1", "+15551010", NULL);
    cc_engine_tick(e, (uint64_t)(T0 + MIN));
    reload_sla("[sla.chat]\n"
               "first_response = off\n"
               "next_response = off\n"
               "resolution = 20m\n"
               "warn = 80%\n");
    cc_engine_tick(e, (uint64_t)(T0 + 16 * MIN - 1));
    cr_assert_eq(sla_alerts(), 0);
    cc_engine_tick(e, (uint64_t)(T0 + 16 * MIN));
    cr_assert_eq(sla_alerts(), 1);
    assert_res(0, "sla.warning", T0 + 16 * MIN, 16 * MIN);
}

/* ---- queues and agents --------------------------------------------------- */

/* The queue query for queue, the first `limit` waiting, unpacked into u
 * from sb (cleared first). */
static void
queue_query(const char *queue, uint32_t limit, msgpack_sbuffer *sb,
            msgpack_unpacked *u) {
    msgpack_packer pk;
    const char *why = NULL;

    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    cr_assert_eq(cc_engine_pack_service_level(
                     e, (struct cc_str){queue, (uint32_t)strlen(queue)},
                     (struct cc_str){NULL, 0}, limit, &pk, &why),
                 0, "%s", why);
    unpack_sb(sb, u);
}

/* Asserts the queue's callers wait in the order given (contact ids). */
static void
assert_queue_order(const char *queue, const char *const *want, uint32_t n) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    msgpack_object a;
    uint32_t i;

    msgpack_sbuffer_init(&sb);
    queue_query(queue, 1000, &sb, &u);
    cr_assert_eq(tmap_int(&u.data, "waiting"), n);
    cr_assert(tmap_get(&u.data, "next", &a));
    cr_assert_eq(a.via.array.size, n);
    for (i = 0; i < n; i++) {
        cr_assert(tmap_str_is(&a.via.array.ptr[i], "contact", want[i]),
                  "place %u is not %s", i + 1, want[i]);
        cr_assert_eq(tmap_int(&a.via.array.ptr[i], "position"), i + 1);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

/* Callers wait by priority (higher first), then in join order; leaving
 * from any place keeps the order of the rest. */
Test(engine, queue_orders_by_priority_then_join, .init = setup,
     .fini = teardown) {
    static const char *const first[] = {"c4", "c2", "c3", "c6", "c1", "c5"};

    join_at(T0, "1", "phone", "c1", "sales", -1);
    join_at(T0 + 1000, "2", "phone", "c2", "sales", 5);
    join_at(T0 + 2000, "3", "phone", "c3", "sales", 5);
    join_at(T0 + 3000, "4", "phone", "c4", "sales", 9);
    join_at(T0 + 4000, "5", "phone", "c5", "sales", -1);
    join_at(T0 + 5000, "6", "phone", "c6", "sales", 0);
    assert_queue_order("sales", first, 6);
    /* The two of priority 5 leave (the last of their level, then the
     * first): a new 5 goes after the 9; a 9 joins after the 9 there. */
    SEND("7", T0 + 6000, "phone", "queue.leave", "c3");
    SEND("8", T0 + 7000, "phone", "agent.answer", "c2");
    join_at(T0 + 8000, "9", "phone", "c7", "sales", 9);
    join_at(T0 + 9000, "10", "phone", "c8", "sales", 5);
    {
        static const char *const mid[] = {"c4", "c7", "c8", "c6", "c1", "c5"};
        assert_queue_order("sales", mid, 6);
    }
    /* The head leaves, then a 0 joins after the other 0, before those
     * with none. */
    SEND("11", T0 + 10000, "phone", "agent.answer", "c4");
    join_at(T0 + 11000, "12", "phone", "c9", "sales", 0);
    {
        static const char *const last[] = {"c7", "c8", "c6", "c9", "c1", "c5"};
        assert_queue_order("sales", last, 6);
    }
}

/* A caller who hangs up while queued, or expires there, leaves the queue
 * once: the callers behind and ahead keep their places (closing used to
 * take the contact out of the list twice, losing the others). */
Test(engine, closing_a_queued_caller_keeps_the_others, .init = setup,
     .fini = teardown) {
    static const char *const rest[] = {"c1", "c3"};
    static const char *const last[] = {"c3"};

    join_at(T0, "1", "phone", "c1", "sales", -1);
    join_at(T0 + 1000, "2", "phone", "c2", "sales", -1);
    join_at(T0 + 2000, "3", "phone", "c3", "sales", -1);
    SEND("4", T0 + 3000, "phone", "contact.close", "c2");
    assert_queue_order("sales", rest, 2);
    SEND("5", T0 + 4000, "phone", "contact.close", "c1");
    assert_queue_order("sales", last, 1);
    cr_assert_eq(stat_int("queues/sales/waiting"), 1);
    cr_assert_eq(stat_int("queues/sales/abandoned"), 2);
    cr_assert_eq(stat_int("contacts/queued"), 1);
    /* Silent past contact_idle: it expires, and the queue is empty. */
    cc_engine_tick(e, (uint64_t)T0 + 2000 + e->cfg.contact_idle_ms + 1);
    cr_assert_eq(stat_int("queues/sales/waiting"), 0);
    cr_assert_eq(stat_int("contacts/queued"), 0);
    cr_assert_eq(stat_int("contacts/open"), 0);
}

/* agent.status with its fields: agent, state, and optionally queues. */
static char
agent_status_at(int64_t ts, const char *id, const char *agent,
                const char *state, const char *const *queues, int nq) {
    tb_reset(&t);
    tb_agent_status(&t, id, ts, agent, state, queues, nq);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)ts, &rep);
    cr_assert_eq(rep.events, 1);
    return rep.accepted ? 'a' : rep.duplicates ? 'd' : 'r';
}

/* A queue's agents, by state. */
static int64_t
queue_agents(const char *queue, const char *state) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    char path[64];
    int64_t v;

    msgpack_sbuffer_init(&sb);
    queue_query(queue, 1, &sb, &u);
    snprintf(path, sizeof(path), "agents/%s", state);
    v = tmap_int(&u.data, path);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

/* Agents' states count in each queue they serve; naming queues replaces
 * the ones before; an agent named without queues keeps them. */
Test(engine, agents_count_in_the_queues_they_serve, .init = setup,
     .fini = teardown) {
    static const char *const both[] = {"sales", "billing"};
    static const char *const sales[] = {"sales"};
    static const char *const many[] = {"q1",  "q2",  "q3",  "q4",  "q5",  "q6",
                                       "q7",  "q8",  "q9",  "q10", "q11", "q12",
                                       "q13", "q14", "q15", "q16", "q17"};

    cr_assert_eq(agent_status_at(T0, "1", "ann", "available", both, 2), 'a');
    cr_assert_eq(agent_status_at(T0, "2", "bob", "available", sales, 1), 'a');
    cr_assert_eq(queue_agents("sales", "available"), 2);
    cr_assert_eq(queue_agents("billing", "available"), 1);
    cr_assert_eq(agent_status_at(T0 + 1, "3", "ann", "busy", NULL, -1), 'a');
    cr_assert_eq(queue_agents("sales", "available"), 1);
    cr_assert_eq(queue_agents("sales", "busy"), 1);
    cr_assert_eq(queue_agents("billing", "busy"), 1);
    /* Ann now serves sales only. */
    cr_assert_eq(agent_status_at(T0 + 2, "4", "ann", "away", sales, 1), 'a');
    cr_assert_eq(queue_agents("billing", "busy"), 0);
    cr_assert_eq(queue_agents("billing", "away"), 0);
    cr_assert_eq(queue_agents("sales", "away"), 1);
    cr_assert_eq(queue_agents("sales", "busy"), 0);
    cr_assert_eq(stat_int("agents/known"), 2);
    cr_assert_eq(stat_int("agents/away"), 1);
    cr_assert_eq(stat_int("agents/available"), 1);
    /* Seventeen queues are too many: refused, nothing changes. */
    cr_assert_eq(agent_status_at(T0 + 3, "5", "bob", "offline", many, 17), 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_OUT_OF_RANGE);
    cr_assert_eq(queue_agents("sales", "available"), 1);
    cr_assert_eq(stat_int("agents/offline"), 0);
    /* A state that is not one: refused when decoded. */
    cr_assert_eq(agent_status_at(T0 + 4, "6", "bob", "lunch", NULL, -1), 'r');
    cr_assert_eq(agent_status_at(T0 + 5, "7", "bob", "offline", NULL, -1), 'a');
    cr_assert_eq(queue_agents("sales", "offline"), 1);
    cr_assert_eq(queue_agents("sales", "available"), 0);
}

/* A number from the queue query at a path of keys separated by '/', or
 * -1 for nil. */
static double
queue_figure(const char *queue, const char *path) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    msgpack_object o, next;
    char buf[128], *tok, *save = NULL;
    double v = -1;

    msgpack_sbuffer_init(&sb);
    queue_query(queue, 10, &sb, &u);
    o = u.data;
    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, "/", &save); tok != NULL;
         tok = strtok_r(NULL, "/", &save)) {
        cr_assert(tmap_get(&o, tok, &next), "%s: no %s", path, tok);
        o = next;
    }
    if (o.type == MSGPACK_OBJECT_FLOAT64 || o.type == MSGPACK_OBJECT_FLOAT32)
        v = o.via.f64;
    else if (o.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = (double)o.via.u64;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

/* The n-th waiting caller's estimate field (p50_ms, p80_ms, drain_ms) or
 * -1 for nil; *why gets its reason (NULL without). */
static int64_t
next_estimate(const char *queue, uint32_t n, const char *field, char *why,
              size_t whylen) {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    msgpack_object a, est, w;
    int64_t v;

    msgpack_sbuffer_init(&sb);
    queue_query(queue, 10, &sb, &u);
    cr_assert(tmap_get(&u.data, "next", &a));
    cr_assert_gt(a.via.array.size, n);
    cr_assert(tmap_get(&a.via.array.ptr[n], "estimate", &est));
    v = tmap_int(&est, field);
    if (why != NULL) {
        why[0] = '\0';
        if (tmap_get(&est, "why", &w) && w.type == MSGPACK_OBJECT_STR)
            snprintf(why, whylen, "%.*s", (int)w.via.str.size, w.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

/* Estimates by position, against hand-computed values: two agents, both
 * busy, one-minute calls. Completions come every 30 s on average; the
 * first caller waits for one (gamma median 30 s x (8/9)^3 = 21,070 ms by
 * Wilson-Hilferty, within 1.5% of the exact 20,794), the second for two
 * (2 x 30 s x (17/18)^3 = 50,545). With a free agent, no wait; with no
 * agent serving, no number. Each answer compares the estimate given at
 * its join with the wait. */
Test(engine, queue_estimates_by_position_and_their_accuracy, .init = setup,
     .fini = teardown) {
    static const char *const sales[] = {"sales"};
    char why[64];
    int i;

    cr_assert_eq(agent_status_at(MB, "s1", "ann", "available", sales, 1), 'a');
    cr_assert_eq(agent_status_at(MB, "s2", "bob", "available", sales, 1), 'a');
    /* Handle times: two calls of a minute each. */
    for (i = 0; i < 2; i++) {
        char id[16], c[16];
        snprintf(c, sizeof(c), "h%d", i);
        snprintf(id, sizeof(id), "j%d", i);
        join_at(MB + i * 1000, id, "phone", c, "sales", -1);
        snprintf(id, sizeof(id), "a%d", i);
        SEND(id, MB + i * 1000 + 2000, "phone", "agent.answer", c);
        snprintf(id, sizeof(id), "x%d", i);
        SEND(id, MB + i * 1000 + 62000, "phone", "contact.close", c);
    }
    cr_assert_eq(queue_figure("sales", "estimate/aht_ms"), 60000);
    cr_assert_eq(queue_figure("sales", "estimate/serving"), 2);
    /* A free agent: the next caller waits for nobody. */
    join_at(MB + 70000, "j2", "phone", "c2", "sales", -1);
    cr_assert_eq(next_estimate("sales", 0, "p50_ms", NULL, 0), 0);
    SEND("q2", MB + 70500, "phone", "queue.leave", "c2");
    /* Both busy. */
    cr_assert_eq(agent_status_at(MB + 71000, "s3", "ann", "busy", NULL, -1),
                 'a');
    cr_assert_eq(agent_status_at(MB + 71000, "s4", "bob", "busy", NULL, -1),
                 'a');
    join_at(MB + 72000, "j3", "phone", "c3", "sales", -1);
    join_at(MB + 73000, "j4", "phone", "c4", "sales", -1);
    cr_assert_eq(next_estimate("sales", 0, "p50_ms", NULL, 0), 21070);
    cr_assert_eq(next_estimate("sales", 1, "p50_ms", NULL, 0), 50545);
    cr_assert_gt(next_estimate("sales", 1, "p80_ms", NULL, 0), 50545);
    /* Two answered in the window: the drain rate puts the second caller
     * two answers away, 30 minutes / 2 each. */
    cr_assert_eq(next_estimate("sales", 1, "drain_ms", NULL, 0), 1800000);
    /* Erlang C for the queue: 5 joins in 30 minutes of one-minute calls
     * is 1/6 Erlang on two agents. */
    cr_assert(fabs(queue_figure("sales", "estimate/traffic_erlangs") -
                   1.0 / 6.0) < 1e-9);
    /* B(1) = a / (1 + a) = 1/7, B(2) = a B(1) / (2 + a B(1)) = 1/85,
     * C = 2 B / (2 - a (1 - B)) = 1/78. */
    cr_assert(fabs(queue_figure("sales", "estimate/erlang_c/p_wait") -
                   1.0 / 78.0) < 1e-9);
    /* c3 answered after 25 s: 3.93 s from its estimate; the two callers
     * before were told 0 and waited 2 s. */
    SEND("a5", MB + 97000, "phone", "agent.answer", "c3");
    cr_assert_eq(queue_figure("sales", "estimate/accuracy/answered"), 3);
    cr_assert_eq(stat_int("queues/sales/estimated"), 3);
    cr_assert_eq(stat_int("queues/sales/estimate_mae_ms"),
                 (2000 + 2000 + 25000 - 21070) / 3);
    cr_assert(fabs(queue_figure("sales", "estimate/accuracy/within_30s") -
                   1.0) < 1e-9);
    /* Nobody serving: said so, no number. */
    cr_assert_eq(agent_status_at(MB + 98000, "s6", "ann", "away", NULL, -1),
                 'a');
    cr_assert_eq(agent_status_at(MB + 98000, "s7", "bob", "offline", NULL, -1),
                 'a');
    cr_assert_eq(next_estimate("sales", 0, "p50_ms", why, sizeof(why)), -1);
    cr_assert_str_eq(why, "no agent serves the queue");
}

/* agent.status is all or nothing: refused (a contact it names is
 * unknown, or the queues would pass max_queues), it changes neither the
 * agent nor the queues; and an event older than the agent's last changes
 * nothing. */
Test(engine, agent_status_refused_or_late_changes_nothing, .init = setup,
     .fini = teardown) {
    static const char *const sales[] = {"sales"};
    static const char *const others[] = {"other"};

    cr_assert_eq(agent_status_at(T0, "1", "ann", "available", sales, 1), 'a');
    /* Naming a contact nobody opened: refused, ann still available. */
    tb_reset(&t);
    msgpack_pack_map(&t.pk, 7);
    tb_kv_str(&t, "id", "2");
    tb_kv_int(&t, "ts", T0 + 1000);
    tb_kv_str(&t, "channel", "phone");
    tb_kv_str(&t, "type", "agent.status");
    tb_kv_str(&t, "agent", "ann");
    tb_kv_str(&t, "state", "busy");
    tb_kv_str(&t, "contact", "nobody");
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)T0 + 1000, &rep);
    cr_assert_eq(rep.rejected, 1);
    cr_assert_eq(queue_agents("sales", "available"), 1);
    cr_assert_eq(queue_agents("sales", "busy"), 0);
    /* One queue more than max_queues allows: refused, and no queue made. */
    e->cfg.max_queues = e->nqueues;
    cr_assert_eq(agent_status_at(T0 + 2000, "3", "ann", "busy", others, 1),
                 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_LIMIT);
    cr_assert_eq(e->nqueues, 1);
    cr_assert_eq(queue_agents("sales", "available"), 1);
    /* Late: stamped before the last applied, it changes nothing. */
    cr_assert_eq(agent_status_at(T0 + 3000, "4", "ann", "away", NULL, -1), 'a');
    cr_assert_eq(agent_status_at(T0 + 2500, "5", "ann", "busy", NULL, -1), 'a');
    cr_assert_eq(queue_agents("sales", "away"), 1);
    cr_assert_eq(queue_agents("sales", "busy"), 0);
}
