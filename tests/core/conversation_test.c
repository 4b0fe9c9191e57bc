/*
 * Conversations driven with a manual clock: joining across channels, the
 * reopen and idle windows, merges of conversations when customers merge
 * (the older survives, timelines combined by event time), reply_to
 * threading over a real RFC 5322 reply thread, repeat contacts, identity
 * conflicts and unlinks, measures, and the bounds on a conversation's
 * context.
 */
#include <criterion/criterion.h>

#include "engine.h"
#include "testutil.h"

#include <stdio.h>

TestSuite(conversation);

#define T0 1700000000000LL
#define HOUR 3600000LL
#define DAY (24 * HOUR)

static struct cc_engine *e;
static struct cc_ingest_report rep;
static struct tb t;
static msgpack_sbuffer qsb, ssb;
static msgpack_unpacked qu;

/* The small limits every test here runs with. */
static void
test_config(struct cc_engine_config *c, uint32_t max_identifiers) {
    cc_engine_config_defaults(c);
    c->dedup_window = 1000;
    c->max_contacts = 1000;
    c->max_conversations = 1000;
    c->max_identities = 10000;
    c->thread_index = 1000;
    c->max_identifiers = max_identifiers;
}

static void
start(const struct cc_engine_config *c) {
    cr_assert_eq(cc_engine_new(&e, c, (uint64_t)T0), 0);
    tb_init(&t);
    msgpack_sbuffer_init(&qsb);
    msgpack_sbuffer_init(&ssb);
    msgpack_unpacked_init(&qu);
}

static void
setup_with(uint32_t max_identifiers) {
    struct cc_engine_config c;
    test_config(&c, max_identifiers);
    start(&c);
}

static void
setup(void) {
    setup_with(50);
}

static void
teardown(void) {
    cc_engine_free(e);
    cc_ingest_report_fini(&rep);
    tb_fini(&t);
    msgpack_sbuffer_destroy(&qsb);
    msgpack_sbuffer_destroy(&ssb);
    msgpack_unpacked_destroy(&qu);
}

/* An event; NULL fields are left out. */
struct ev {
    const char *id;
    int64_t ts;
    const char *channel, *type, *contact;
    const char *email, *phone, *reply_to;
};

/* Packs one event map into b, with a queue and an agent when not NULL. */
static void
pack_ev_qa(struct tb *b, const struct ev *v, const char *queue,
           const char *agent) {
    uint32_t nc = (v->email != NULL) + (v->phone != NULL);
    uint32_t n = 4 + (v->contact != NULL) + (v->reply_to != NULL) + (nc != 0) +
                 (queue != NULL) + (agent != NULL);
    msgpack_pack_map(&b->pk, n);
    tb_kv_str(b, "id", v->id);
    tb_kv_int(b, "ts", v->ts);
    tb_kv_str(b, "channel", v->channel);
    tb_kv_str(b, "type", v->type);
    if (v->contact != NULL)
        tb_kv_str(b, "contact", v->contact);
    if (v->reply_to != NULL)
        tb_kv_str(b, "reply_to", v->reply_to);
    if (queue != NULL)
        tb_kv_str(b, "queue", queue);
    if (agent != NULL)
        tb_kv_str(b, "agent", agent);
    if (nc != 0) {
        tb_str(b, "customer");
        msgpack_pack_map(&b->pk, nc);
        if (v->email != NULL)
            tb_kv_str(b, "email", v->email);
        if (v->phone != NULL)
            tb_kv_str(b, "phone", v->phone);
    }
}

static void
pack_ev(struct tb *b, const struct ev *v) {
    pack_ev_qa(b, v, NULL, NULL);
}

/* Applies one event with the engine's clock at its ts; returns 'a'
 * (accepted), 'd' (duplicate) or 'r' (rejected). */
static char
apply_qa(const struct ev *v, const char *queue, const char *agent) {
    tb_reset(&t);
    pack_ev_qa(&t, v, queue, agent);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)v->ts, &rep);
    cr_assert_eq(rep.events, 1);
    return rep.accepted ? 'a' : rep.duplicates ? 'd' : 'r';
}

static char
apply(const struct ev *v) {
    return apply_qa(v, NULL, NULL);
}

/* Applies n events as one batch message with the engine's clock at T0. */
static void
apply_batch(const struct ev *evs, size_t n) {
    size_t i;

    tb_reset(&t);
    msgpack_pack_array(&t.pk, (uint32_t)n);
    for (i = 0; i < n; i++)
        pack_ev(&t, &evs[i]);
    cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)T0, &rep);
}

/* Packs a conversation query's answer with pack (rc != 0: none) and
 * returns it unpacked, valid until the next query. */
static const msgpack_object *
query(int (*pack)(struct cc_engine *, struct cc_str, msgpack_packer *,
                  const char **),
      const char *arg) {
    msgpack_packer pk;
    const char *why = NULL;

    msgpack_sbuffer_clear(&qsb);
    msgpack_packer_init(&pk, &qsb, msgpack_sbuffer_write);
    if (pack(e, (struct cc_str){arg, (uint32_t)strlen(arg)}, &pk, &why) != 0)
        return NULL;
    cr_assert_eq(msgpack_unpack_next(&qu, qsb.data, qsb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    return &qu.data;
}

static int
pack_by_email(struct cc_engine *en, struct cc_str v, msgpack_packer *pk,
              const char **why) {
    return cc_engine_pack_conversation_by_ident(en, CC_IDENT_EMAIL, v, pk, why);
}

/* The full context of the customer with this email, or NULL. */
static const msgpack_object *
by_email(const char *email) {
    return query(pack_by_email, email);
}

/* The full context of conversation "cv-N", or NULL. */
static const msgpack_object *
by_id(const char *id) {
    return query(cc_engine_pack_conversation_by_id, id);
}

/* The engine's stats, unpacked into u (destroyed by the caller; its
 * strings point into ssb until the next call). */
static void
stats(msgpack_unpacked *u) {
    msgpack_packer pk;

    msgpack_sbuffer_clear(&ssb);
    msgpack_packer_init(&pk, &ssb, msgpack_sbuffer_write);
    cc_engine_pack_stats(e, &pk);
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, ssb.data, ssb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
}

/* Copies a string value out of a map. */
static void
str_of(const msgpack_object *m, const char *key, char *out, size_t n) {
    msgpack_object v;
    cr_assert(tmap_get(m, key, &v), "no key %s", key);
    cr_assert_eq(v.type, MSGPACK_OBJECT_STR);
    snprintf(out, n, "%.*s", (int)v.via.str.size, v.via.str.ptr);
}

static uint32_t
array_len(const msgpack_object *m, const char *key) {
    msgpack_object v;
    cr_assert(tmap_get(m, key, &v), "no key %s", key);
    cr_assert_eq(v.type, MSGPACK_OBJECT_ARRAY);
    return v.via.array.size;
}

/* The outcome the customer's contact history gives contact n (from 1). */
static void
outcome_is(const char *email, uint32_t n, const char *want) {
    const msgpack_object *c = by_email(email);
    msgpack_object h, o;
    uint32_t i;

    cr_assert_not_null(c);
    cr_assert(tmap_get(c, "contact_history", &h));
    for (i = 0; i < h.via.array.size; i++) {
        if (tmap_int(&h.via.array.ptr[i], "n") != n)
            continue;
        cr_assert(tmap_get(&h.via.array.ptr[i], "outcome", &o));
        cr_assert(o.type == MSGPACK_OBJECT_STR &&
                      o.via.str.size == strlen(want) &&
                      memcmp(o.via.str.ptr, want, o.via.str.size) == 0,
                  "contact %u: outcome %.*s, not %s", n, (int)o.via.str.size,
                  o.via.str.ptr, want);
        return;
    }
    cr_assert_fail("no history entry %u", n);
}

/* The "contact" of the newest timeline entry: the number of the contact's
 * history entry, or nil. */
static msgpack_object
last_timeline_contact(const msgpack_object *m) {
    msgpack_object tl, n;
    cr_assert(tmap_get(m, "timeline", &tl));
    cr_assert_gt(tl.via.array.size, 0);
    cr_assert(
        tmap_get(&tl.via.array.ptr[tl.via.array.size - 1], "contact", &n));
    return n;
}

/* Every record in the outbox is exactly one well-formed map; returns how
 * many alerts with this topic it holds. */
static uint32_t
count_alerts(const char *topic, msgpack_unpacked *last) {
    struct cc_outbox *ob = cc_engine_outbox(e);
    uint32_t i, n = 0;

    for (i = 0; i < ob->n; i++) {
        const char *d = cc_outbox_data(ob, &ob->v[i]);
        size_t len = ob->v[i].len, off = 0, used = 0;
        msgpack_unpacked u;

        if (ob->v[i].kind == CC_OUT_ALERT) {
            off = strlen(d) + 1;
            if (strcmp(d, topic) != 0)
                continue;
        } else {
            continue;
        }
        msgpack_unpacked_init(&u);
        cr_assert_eq(msgpack_unpack_next(&u, d + off, len - off, &used),
                     MSGPACK_UNPACK_SUCCESS, "alert %u is malformed", i);
        cr_assert_eq(used, len - off, "alert %u has trailing bytes", i);
        cr_assert_eq(u.data.type, MSGPACK_OBJECT_MAP);
        n++;
        if (last != NULL) {
            msgpack_unpacked_destroy(last);
            *last = u;
        } else {
            msgpack_unpacked_destroy(&u);
        }
    }
    return n;
}

Test(conversation, contacts_of_one_customer_join_one_conversation,
     .init = setup, .fini = teardown) {
    const msgpack_object *c;
    char id[32];

    cr_assert_eq(apply(&(struct ev){"1", T0, "email", "contact.open", "m1",
                                    "Ann@Example.com", NULL, NULL}),
                 'a');
    cr_assert_eq(
        apply(&(struct ev){"2", T0 + 1000, "chat", "contact.open", "s1",
                           "ann@example.com", "555 010 9999", NULL}),
        'a');
    cr_assert_eq(apply(&(struct ev){"3", T0 + 2000, "phone", "contact.open",
                                    "p1", NULL, "+15550109999", NULL}),
                 'a');
    c = by_email("ANN@example.com");
    cr_assert_not_null(c);
    str_of(c, "conversation", id, sizeof(id));
    cr_assert_str_eq(id, "cv-1");
    cr_assert_eq(tmap_int(c, "contacts"), 3);
    cr_assert_eq(tmap_int(c, "open_contacts"), 3);
    cr_assert_eq(array_len(c, "channels"), 3);
    cr_assert_eq(array_len(c, "identifiers"), 2);
    cr_assert_eq(tmap_int(c, "measures/switches"), 2);
    cr_assert_eq(tmap_int(c, "measures/repeats"), 2);
    cr_assert_eq(count_alerts("continuity.repeat", NULL), 2);
}

Test(conversation, an_identifier_that_cannot_be_normalised_is_rejected,
     .init = setup, .fini = teardown) {
    struct cc_engine_counts n;

    cr_assert_eq(apply(&(struct ev){"1", T0, "email", "contact.open", "m1",
                                    "ann.example.com", NULL, NULL}),
                 'r');
    cr_assert_eq(rep.rej[0].rej.code, CC_R_BAD_VALUE);
    cr_assert_str_eq(rep.rej[0].rej.key, "customer.email");
    cr_assert_eq(apply(&(struct ev){"2", T0, "phone", "contact.open", "p1",
                                    NULL, "555-CALL-ME", NULL}),
                 'r');
    cr_assert_str_eq(rep.rej[0].rej.key, "customer.phone");
    cc_engine_counts(e, &n);
    cr_assert_eq(n.open_contacts, 0, "a rejected event changed state");
    cr_assert_eq(n.identifiers, 0);
    cr_assert_eq(n.conversations, 0);
}

Test(conversation, reopen_window_then_a_new_conversation, .init = setup,
     .fini = teardown) {
    const msgpack_object *c;
    char first[32], id[32];

    apply(&(struct ev){"1", T0, "chat", "contact.open", "s1", "bo@example.com",
                       NULL, NULL});
    apply(&(struct ev){"2", T0 + HOUR, "chat", "contact.close", "s1", NULL,
                       NULL, NULL});
    apply(&(struct ev){"3", T0 + HOUR, "chat", "conversation.resolve", "s1",
                       "bo@example.com", NULL, NULL});
    c = by_email("bo@example.com");
    str_of(c, "conversation", first, sizeof(first));
    str_of(c, "status", id, sizeof(id));
    cr_assert_str_eq(id, "resolved");
    cr_assert_eq(tmap_int(c, "resolved_ts"), T0 + HOUR);

    /* 71 hours later: inside the 72-hour window, the same one reopens. */
    apply(&(struct ev){"4", T0 + 72 * HOUR, "email", "contact.open", "m1",
                       "bo@example.com", NULL, NULL});
    c = by_email("bo@example.com");
    str_of(c, "conversation", id, sizeof(id));
    cr_assert_str_eq(id, first);
    str_of(c, "status", id, sizeof(id));
    cr_assert_str_eq(id, "open");
    cr_assert_eq(tmap_int(c, "measures/reopens"), 1);
    cr_assert_eq(tmap_int(c, "contacts"), 2);
    cr_assert_eq(count_alerts("continuity.repeat", NULL), 0,
                 "a reopen is not a repeat");

    /* Resolved again; a contact 72 h + 1 ms later starts a new one. */
    apply(&(struct ev){"5", T0 + 73 * HOUR, "email", "contact.close", "m1",
                       NULL, NULL, NULL});
    apply(&(struct ev){"6", T0 + 73 * HOUR, "email", "conversation.resolve",
                       NULL, "bo@example.com", NULL, NULL});
    apply(&(struct ev){"7", T0 + 145 * HOUR + 1, "phone", "contact.open", "p1",
                       "bo@example.com", NULL, NULL});
    c = by_email("bo@example.com");
    str_of(c, "conversation", id, sizeof(id));
    cr_assert_str_neq(id, first);
    cr_assert_eq(tmap_int(c, "contacts"), 1);
    cr_assert_eq(tmap_int(c, "measures/reopens"), 0);
}

Test(conversation, an_idle_conversation_closes_by_itself, .init = setup,
     .fini = teardown) {
    char id[32];
    msgpack_unpacked u;

    apply(&(struct ev){"1", T0, "email", "contact.open", "m1", "cy@example.com",
                       NULL, NULL});
    apply(&(struct ev){"2", T0 + 1000, "email", "contact.close", "m1", NULL,
                       NULL, NULL});
    str_of(by_email("cy@example.com"), "conversation", id, sizeof(id));
    cc_engine_tick(e, (uint64_t)(T0 + 1000 + 7 * DAY - 1));
    cr_assert_not_null(by_id(id), "closed before idle_close");
    cc_engine_tick(e, (uint64_t)(T0 + 1000 + 7 * DAY));
    cr_assert_null(by_id(id), "still open after idle_close");
    cr_assert_null(by_email("cy@example.com"));
    stats(&u);
    cr_assert_eq(tmap_int(&u.data, "conversations/idle_closed"), 1);
    cr_assert_eq(tmap_int(&u.data, "conversations/open"), 0);
    msgpack_unpacked_destroy(&u);
}

Test(conversation, merged_customers_merge_conversations_older_survives,
     .init = setup, .fini = teardown) {
    const msgpack_object *c;
    msgpack_object tl;
    char a[32], b[32], id[32];
    int64_t prev = 0;
    uint32_t i;

    /* Customer A is created first, but B's conversation started earlier
     * (its events arrive late): B's conversation is the older. */
    apply(&(struct ev){"a1", T0 + 100, "chat", "contact.open", "s1",
                       "a@example.com", NULL, NULL});
    apply(&(struct ev){"b1", T0, "phone", "contact.open", "p1", "b@example.com",
                       NULL, NULL});
    apply(&(struct ev){"a2", T0 + 300, "chat", "message.in", "s1", NULL, NULL,
                       NULL});
    cr_assert_eq(apply(&(struct ev){"b2", T0 + 200, "phone", "message.in", "p1",
                                    NULL, NULL, NULL}),
                 'a');
    str_of(by_email("a@example.com"), "conversation", a, sizeof(a));
    str_of(by_email("b@example.com"), "conversation", b, sizeof(b));
    cr_assert_str_neq(a, b);

    /* A phone number links to A, then to B: the customers, and their
     * conversations, merge. */
    cr_assert_eq(
        apply(&(struct ev){"l1", T0 + 400, "chat", "identity.link", NULL,
                           "a@example.com", "+15550100099", NULL}),
        'a');
    cr_assert_eq(
        apply(&(struct ev){"l2", T0 + 500, "chat", "identity.link", NULL,
                           "b@example.com", "+15550100099", NULL}),
        'a');

    c = by_email("a@example.com");
    str_of(c, "conversation", id, sizeof(id));
    cr_assert_str_eq(id, b, "the older conversation did not survive");
    cr_assert_eq(tmap_int(c, "started_ts"), T0);
    cr_assert_eq(tmap_int(c, "contacts"), 2);
    cr_assert_eq(tmap_int(c, "open_contacts"), 2);
    cr_assert_eq(tmap_int(c, "measures/merges"), 1);
    cr_assert_eq(array_len(c, "contact_history"), 2);
    /* The timeline is in event-time order across both. */
    cr_assert(tmap_get(c, "timeline", &tl));
    cr_assert_eq(tl.via.array.size, 4, "timeline of %u", tl.via.array.size);
    for (i = 0; i < tl.via.array.size; i++) {
        int64_t ts = tmap_int(&tl.via.array.ptr[i], "ts");
        cr_assert_geq(ts, prev, "timeline out of order at %u", i);
        prev = ts;
    }
    cr_assert_eq(tmap_int(&tl.via.array.ptr[0], "ts"), T0);
    cr_assert_eq(tmap_int(&tl.via.array.ptr[3], "ts"), T0 + 300);
    /* The merged conversation's id still finds the survivor. */
    c = by_id(a);
    cr_assert_not_null(c);
    str_of(c, "conversation", id, sizeof(id));
    cr_assert_str_eq(id, b);
    /* Later events on either contact land in the survivor. */
    apply(&(struct ev){"a3", T0 + 600, "chat", "message.in", "s1", NULL, NULL,
                       NULL});
    c = by_email("b@example.com");
    cr_assert_eq(tmap_int(c, "messages_in"), 3);
    /* The merged-in contact was renumbered after the survivor's: its
     * later events name its new number. */
    {
        msgpack_object n = last_timeline_contact(c);
        cr_assert_eq(n.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        cr_assert_eq(n.via.u64, 2);
    }
}

Test(conversation, unlink_splits_the_customer_and_the_next_contact_starts_anew,
     .init = setup, .fini = teardown) {
    const msgpack_object *c;

    apply(&(struct ev){"1", T0, "chat", "contact.open", "s1", "d@example.com",
                       "+15550100001", NULL});
    c = by_email("d@example.com");
    cr_assert_not_null(c);
    cr_assert_eq(array_len(c, "identifiers"), 2);
    cr_assert_eq(
        apply(&(struct ev){"2", T0 + 10, "chat", "identity.unlink", NULL,
                           "d@example.com", "+15550100001", NULL}),
        'a');
    /* The part holding the event's first identifier (kinds in the order
     * phone, email, chat, social, crm) keeps the customer and its
     * conversation: the email is a customer of its own, with none yet. */
    cr_assert_null(by_email("d@example.com"));
    apply(&(struct ev){"3", T0 + 20, "email", "contact.open", "m1",
                       "d@example.com", NULL, NULL});
    c = by_email("d@example.com");
    cr_assert_not_null(c);
    cr_assert_eq(tmap_int(c, "contacts"), 1);
    cr_assert_eq(array_len(c, "identifiers"), 1);
    cr_assert_eq(count_alerts("continuity.repeat", NULL), 0);
}

Test(conversation, repeats_within_the_window_and_priority_rises, .init = setup,
     .fini = teardown) {
    msgpack_unpacked last;

    msgpack_unpacked_init(&last);
    apply(&(struct ev){"1", T0, "phone", "contact.open", "p1", "e@example.com",
                       NULL, NULL});
    apply(&(struct ev){"2", T0 + 60000, "phone", "contact.close", "p1", NULL,
                       NULL, NULL});
    /* Same channel, an hour after an unresolved contact: a repeat. */
    apply(&(struct ev){"3", T0 + HOUR, "phone", "contact.open", "p2",
                       "e@example.com", NULL, NULL});
    cr_assert_eq(count_alerts("continuity.repeat", &last), 1);
    cr_assert_eq(tmap_int(&last.data, "priority"), 1);
    cr_assert_eq(tmap_int(&last.data, "attempts"), 2);
    apply(&(struct ev){"4", T0 + HOUR + 1000, "phone", "contact.close", "p2",
                       NULL, NULL, NULL});
    apply(&(struct ev){"5", T0 + 2 * HOUR, "phone", "contact.open", "p3",
                       "e@example.com", NULL, NULL});
    cr_assert_eq(count_alerts("continuity.repeat", &last), 2);
    cr_assert_eq(tmap_int(&last.data, "priority"), 2);
    cr_assert(tmap_str_is(&last.data, "contact", "p3"));
    apply(&(struct ev){"6", T0 + 2 * HOUR + 1000, "phone", "contact.close",
                       "p3", NULL, NULL, NULL});
    /* Same channel, past the 48-hour window: not a repeat. */
    apply(&(struct ev){"7", T0 + 51 * HOUR, "phone", "contact.open", "p4",
                       "e@example.com", NULL, NULL});
    cr_assert_eq(count_alerts("continuity.repeat", NULL), 2);
    msgpack_unpacked_destroy(&last);
}

Test(conversation, first_contact_resolution_is_measured, .init = setup,
     .fini = teardown) {
    const msgpack_object *c;
    msgpack_object v;

    apply(&(struct ev){"1", T0, "chat", "contact.open", "s1", "f@example.com",
                       NULL, NULL});
    apply(&(struct ev){"2", T0 + 1000, "chat", "conversation.resolve", "s1",
                       NULL, NULL, NULL});
    c = by_email("f@example.com");
    cr_assert(tmap_get(c, "measures", &v));
    cr_assert(tmap_get(&v, "first_contact_resolution", &v));
    cr_assert(v.type == MSGPACK_OBJECT_BOOLEAN && v.via.boolean);
    apply(&(struct ev){"3", T0, "chat", "contact.open", "s2", "g@example.com",
                       NULL, NULL});
    apply(&(struct ev){"4", T0 + 10, "email", "contact.open", "m2",
                       "g@example.com", NULL, NULL});
    apply(&(struct ev){"5", T0 + 20, "email", "conversation.resolve", "m2",
                       NULL, NULL, NULL});
    c = by_email("g@example.com");
    cr_assert(tmap_get(c, "measures", &v));
    cr_assert(tmap_get(&v, "first_contact_resolution", &v));
    cr_assert(v.type == MSGPACK_OBJECT_BOOLEAN && !v.via.boolean);
}

static void
setup_with_three(void) {
    setup_with(3);
}

Test(conversation, a_merge_past_max_identifiers_is_refused_and_alerted,
     .init = setup_with_three, .fini = teardown) {
    msgpack_unpacked last;
    msgpack_unpacked u;

    msgpack_unpacked_init(&last);
    apply(&(struct ev){"1", T0, "chat", "identity.link", NULL, "x1@example.com",
                       "+15550100011", NULL});
    apply(&(struct ev){"2", T0, "chat", "identity.link", NULL, "x2@example.com",
                       "+15550100022", NULL});
    /* Four identifiers in one customer would exceed the cap of three. */
    cr_assert_eq(apply(&(struct ev){"3", T0, "chat", "identity.link", NULL,
                                    "x1@example.com", "+15550100022", NULL}),
                 'a');
    cr_assert_eq(count_alerts("identity.conflict", &last), 1);
    cr_assert_eq(tmap_int(&last.data, "size"), 4);
    cr_assert_eq(tmap_int(&last.data, "max_identifiers"), 3);
    cr_assert(tmap_str_is(&last.data, "event", "3"));
    msgpack_unpacked_destroy(&last);
    stats(&u);
    cr_assert_eq(tmap_int(&u.data, "identity/customers"), 2,
                 "the refused merge fused the customers");
    cr_assert_eq(tmap_int(&u.data, "identity/conflicts"), 1);
    msgpack_unpacked_destroy(&u);
}

/* Reads one header of a message file into out ("" when absent). */
static void
header(const char *path, const char *name, char *out, size_t n) {
    char line[512];
    size_t len = strlen(name);
    FILE *f = fopen(path, "r");

    cr_assert_not_null(f, "cannot open %s", path);
    out[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        char *v, *end;
        if (line[0] == '\r' || line[0] == '\n')
            break; /* end of the header */
        if (strncasecmp(line, name, len) != 0 || line[len] != ':')
            continue;
        for (v = line + len + 1; *v == ' ' || *v == '\t'; v++)
            ;
        end = v + strlen(v);
        while (end > v &&
               (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            *--end = '\0';
        snprintf(out, n, "%s", v);
        break;
    }
    fclose(f);
}

Test(conversation, email_replies_follow_reply_to_across_contacts, .init = setup,
     .fini = teardown) {
    static const char *const files[] = {"example05.eml", "example06.eml",
                                        "example07.eml"};
    char id[3][128], irt[3][128], from[3][128], path[512], conv[32], c2[32];
    const msgpack_object *c;
    unsigned i;

    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/realdata/email/mail-gem/rfc2822/%s",
                 TEST_DATA_DIR, files[i]);
        header(path, "Message-ID", id[i], sizeof(id[i]));
        header(path, "In-Reply-To", irt[i], sizeof(irt[i]));
        header(path, "From", from[i], sizeof(from[i]));
        cr_assert_neq(id[i][0], '\0');
    }
    cr_assert_str_eq(irt[1], id[0]);
    cr_assert_str_eq(irt[2], id[1]);
    /* John writes in; each message is its own contact (an adapter that
     * does not know thread roots), and the first is closed before the
     * reply comes. */
    cr_assert_eq(apply(&(struct ev){id[0], T0, "email", "message.in", id[0],
                                    from[0], NULL, NULL}),
                 'a');
    apply(&(struct ev){"close-0", T0 + 1000, "email", "contact.close", id[0],
                       NULL, NULL, NULL});
    str_of(by_email("jdoe@machine.example"), "conversation", conv,
           sizeof(conv));
    /* Mary's answer names no customer: only In-Reply-To ties it in. */
    cr_assert_eq(apply(&(struct ev){id[1], T0 + HOUR, "email", "message.out",
                                    id[1], NULL, NULL, irt[1]}),
                 'a');
    /* John's reply to the answer. */
    cr_assert_eq(apply(&(struct ev){id[2], T0 + 2 * HOUR, "email", "message.in",
                                    id[2], from[2], NULL, irt[2]}),
                 'a');
    c = by_email("jdoe@machine.example");
    str_of(c, "conversation", c2, sizeof(c2));
    cr_assert_str_eq(c2, conv);
    cr_assert_eq(tmap_int(c, "contacts"), 3);
    cr_assert_eq(tmap_int(c, "messages_in"), 2);
    cr_assert_eq(tmap_int(c, "messages_out"), 1);
    /* Mary's address was never linked to John's. */
    cr_assert_null(by_email("mary@example.net"));
}

Test(conversation, context_stays_bounded, .init = setup, .fini = teardown) {
    const msgpack_object *c;
    char id[32], contact[32];
    int i;

    for (i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        snprintf(contact, sizeof(contact), "s%d", i);
        apply(&(struct ev){id, T0 + i * 1000, "chat", "contact.open", contact,
                           "h@example.com", NULL, NULL});
        snprintf(id, sizeof(id), "m%d", i);
        apply(&(struct ev){id, T0 + i * 1000 + 1, "chat", "message.in", contact,
                           NULL, NULL, NULL});
    }
    c = by_email("h@example.com");
    cr_assert_eq(tmap_int(c, "contacts"), 40);
    cr_assert_eq(tmap_int(c, "messages_in"), 40);
    cr_assert_eq(array_len(c, "contact_history"), 16);
    cr_assert_eq(array_len(c, "timeline"), 11);
    {
        /* The history keeps the last 16, oldest first; the summary's last
         * contact is the newest. */
        msgpack_object h, last;
        char want[32];
        cr_assert(tmap_get(c, "contact_history", &h));
        for (i = 0; i < 16; i++) {
            snprintf(want, sizeof(want), "s%d", 24 + i);
            cr_assert(tmap_str_is(&h.via.array.ptr[i], "contact", want),
                      "history entry %d is not %s", i, want);
            cr_assert_eq(tmap_int(&h.via.array.ptr[i], "n"), 25 + i);
        }
        cr_assert(tmap_get(c, "last_contact", &last));
        cr_assert(tmap_str_is(&last, "contact", "s39"));
    }
    {
        /* Events on a contact still open name its entry while it is kept,
         * and no entry once it has aged out. */
        msgpack_object n;
        apply(&(struct ev){"x39", T0 + 50000, "chat", "message.in", "s39", NULL,
                           NULL, NULL});
        n = last_timeline_contact(by_email("h@example.com"));
        cr_assert_eq(n.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        cr_assert_eq(n.via.u64, 40);
        apply(&(struct ev){"x0", T0 + 50001, "chat", "message.in", "s0", NULL,
                           NULL, NULL});
        n = last_timeline_contact(by_email("h@example.com"));
        cr_assert_eq(n.type, MSGPACK_OBJECT_NIL);
    }
}

/* Each contact of a conversation is remembered with its outcome, while it
 * is open and after it ended; the strongest wins (callback, transferred,
 * answered, abandoned), else its state while open, else unanswered or
 * expired. */
Test(conversation, history_entries_carry_their_contacts_outcomes, .init = setup,
     .fini = teardown) {
    static const char em[] = "o@example.com";
    int64_t ts = T0;
    int i;
    static const struct {
        const char *contact, *channel;
        const char *steps[5]; /* after contact.open; NULL ends */
        const char *outcome;
    } script[] = {
        {"p1",
         "phone",
         {"queue.join", "agent.answer", "contact.close"},
         "answered"},
        {"p2",
         "phone",
         {"queue.join", "queue.leave", "contact.close"},
         "abandoned"},
        {"p3",
         "phone",
         {"queue.join", "agent.answer", "transfer", "contact.close"},
         "transferred"},
        {"p4",
         "phone",
         {"queue.join", "callback.accepted", "callback.completed",
          "contact.close"},
         "callback"},
        {"c1", "chat", {"contact.close"}, "unanswered"},
        {"p5",
         "phone",
         {"queue.join", "queue.leave", "queue.join"},
         "abandoned"},
        {"p6", "phone", {"queue.join"}, "queued"},
        {"p7", "phone", {"queue.join", "agent.answer"}, "answered"},
        {"p8",
         "phone",
         {"queue.join", "agent.answer", "transfer"},
         "transferred"},
        /* Done, so that p10's offer is not held back by it. */
        {"p9",
         "phone",
         {"queue.join", "callback.accepted", "callback.completed"},
         "callback"},
        /* A new queue clears the pending offer, not the outcome. */
        {"p10",
         "phone",
         {"queue.join", "callback.accepted", "queue.join"},
         "callback"},
    };
    char id[32];
    size_t k, j;

    for (k = 0; k < sizeof(script) / sizeof(script[0]); k++) {
        snprintf(id, sizeof(id), "o-%zu", k);
        /* Phone callers have a number: callbacks are offered to them. */
        cr_assert_eq(
            apply(&(struct ev){
                id, ts++, script[k].channel, "contact.open", script[k].contact,
                em, strcmp(script[k].channel, "phone") ? NULL : "+15550100077",
                NULL}),
            'a');
        for (j = 0; j < 5 && script[k].steps[j] != NULL; j++) {
            const char *st = script[k].steps[j];
            /* An acceptance answers an offer: made after the caller has
             * waited [callback] offer_after_waiting. */
            if (strcmp(st, "callback.accepted") == 0) {
                ts += 180000;
                cc_engine_tick(e, (uint64_t)ts);
            }
            int q =
                strcmp(st, "queue.join") == 0 || strcmp(st, "transfer") == 0;
            int a = strcmp(st, "agent.answer") == 0;
            snprintf(id, sizeof(id), "o-%zu-%zu", k, j);
            cr_assert_eq(
                apply_qa(&(struct ev){id, ts++, script[k].channel, st,
                                      script[k].contact, NULL, NULL, NULL},
                         q ? "sales" : NULL, a ? "agent-1" : NULL),
                'a', "%s of %s refused", st, script[k].contact);
        }
    }
    for (i = 0; i < (int)(sizeof(script) / sizeof(script[0])); i++)
        outcome_is(em, (uint32_t)i + 1, script[i].outcome);
    /* A contact still open takes its outcome at the end the same way. */
    apply(&(struct ev){"o-end-7", ts++, "phone", "contact.close", "p7", NULL,
                       NULL, NULL});
    apply(&(struct ev){"o-end-6", ts++, "phone", "contact.close", "p6", NULL,
                       NULL, NULL});
    outcome_is(em, 8, "answered");  /* p7 */
    outcome_is(em, 7, "abandoned"); /* p6, closed while queued */
}

/*
 * The ingest pipeline prepares an event's identifiers several events ahead
 * of its turn, while the events before it have not changed anything yet.
 * A batch must come out exactly as the same events applied one at a time:
 * same verdicts (an identifier that cannot be normalised rejected at its
 * index), same customers, same conversations and contexts.
 */
static const struct ev batch_evs[] = {
    {"b0", T0, "phone", "contact.open", "p1", NULL, "+1 555 000 0001", NULL},
    {"b1", T0 + 1, "phone", "message.in", "p1", NULL, "555-0BAD-001", NULL},
    {"b2", T0 + 2, "chat", "contact.open", "c1", NULL, "(555) 000-0001", NULL},
    {"b3", T0 + 3, "chat", "message.in", "c1", NULL, NULL, NULL},
    {"b4", T0 + 4, "phone", "contact.open", "p2", NULL, "+15550000002", NULL},
    {"b5", T0 + 5, "email", "identity.link", NULL, "A@Example.com",
     "5550000001", NULL},
    {"b6", T0 + 6, "email", "contact.open", "e1", "a@example.com", NULL, NULL},
    {"b7", T0 + 7, "email", "message.in", "e1", "a@example.com", NULL, NULL},
    {"b8", T0 + 8, "phone", "contact.close", "p1", NULL, NULL, NULL},
    {"b9", T0 + 9, "phone", "contact.open", "p3", NULL, "+1 555 000 0001",
     NULL},
    {"b10", T0 + 10, "chat", "message.in", "c1", "bad-address", NULL, NULL},
    {"b11", T0 + 11, "phone", "contact.open", "p4", "b@example.com",
     "+15550000002", NULL},
    {"b12", T0 + 12, "email", "conversation.resolve", NULL, "a@example.com",
     NULL, NULL},
    {"b13", T0 + 13, "chat", "contact.open", "c2", NULL, "+15550000001", NULL},
    {"b14", T0 + 14, "phone", "contact.close", "p2", NULL, NULL, NULL},
};

/*
 * The pipeline looks an event's conversation up several events ahead; a
 * merge applied in between may free it. A message right after the merge
 * that took its conversation away must land in the survivor (and, under
 * the sanitizers, the pipeline must not read the freed record).
 */
Test(conversation, a_message_just_after_its_conversation_merged_away,
     .init = setup, .fini = teardown) {
    static const struct ev evs[] = {
        {"m2", T0 + 2, "chat", "identity.link", NULL, "a@example.com",
         "+15550000001", NULL},
        {"m3", T0 + 3, "phone", "contact.open", "p9", NULL, "+15550000009",
         NULL},
        {"m4", T0 + 4, "chat", "message.in", "c1", NULL, NULL, NULL},
    };
    const msgpack_object *c;
    msgpack_object tl;
    size_t n = sizeof(evs) / sizeof(evs[0]);

    /* Two customers, two conversations; then, in one batch, the link that
     * merges them, another event, and a message on the contact whose
     * conversation the merge took away (looked up before the merge). */
    cr_assert_eq(apply(&(struct ev){"m0", T0, "phone", "contact.open", "p1",
                                    NULL, "+15550000001", NULL}),
                 'a');
    cr_assert_eq(apply(&(struct ev){"m1", T0 + 1, "chat", "contact.open", "c1",
                                    "a@example.com", NULL, NULL}),
                 'a');
    apply_batch(evs, n);
    cr_assert_eq(rep.accepted, n);
    c = by_email("a@example.com");
    cr_assert_eq(tmap_int(c, "measures/merges"), 1);
    cr_assert_eq(tmap_int(c, "messages_in"), 1);
    cr_assert_eq(tmap_int(c, "started_ts"), T0);
    cr_assert(tmap_get(c, "timeline", &tl));
    cr_assert_eq(tl.via.array.size, 3, "timeline of %u", tl.via.array.size);
}

static void
conversation_bytes(struct cc_engine *en, const char *email,
                   msgpack_sbuffer *out) {
    msgpack_packer pk;
    const char *why;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    cr_assert_eq(cc_engine_pack_conversation_by_ident(
                     en, CC_IDENT_EMAIL,
                     (struct cc_str){email, (uint32_t)strlen(email)}, &pk,
                     &why),
                 0, "no conversation for %s", email);
}

Test(conversation, a_batch_resolves_identity_as_one_by_one, .init = setup,
     .fini = teardown) {
    struct cc_engine_config c;
    struct cc_engine *one;
    struct cc_ingest_report r1;
    msgpack_sbuffer a, b;
    size_t i, n = sizeof(batch_evs) / sizeof(batch_evs[0]);
    uint32_t rejected = 0;

    /* e: the whole list as one batch. */
    apply_batch(batch_evs, n);
    cr_assert_eq(rep.events, n);
    cr_assert_eq(rep.rejected, 2);
    cr_assert_eq(rep.rej[0].index, 1);
    cr_assert_eq(rep.rej[0].rej.code, CC_R_BAD_VALUE);
    cr_assert_str_eq(rep.rej[0].rej.key, "customer.phone");
    cr_assert_eq(rep.rej[1].index, 10);
    cr_assert_str_eq(rep.rej[1].rej.key, "customer.email");

    /* one: the same events one message each. */
    cc_engine_config_defaults(&c);
    c.dedup_window = 1000;
    c.max_contacts = 1000;
    c.max_conversations = 1000;
    c.max_identities = 10000;
    c.thread_index = 1000;
    cr_assert_eq(cc_engine_new(&one, &c, (uint64_t)T0), 0);
    memset(&r1, 0, sizeof(r1));
    for (i = 0; i < n; i++) {
        tb_reset(&t);
        pack_ev(&t, &batch_evs[i]);
        cc_engine_ingest(one, t.sb.data, t.sb.size, (uint64_t)T0, &r1);
        rejected += r1.rejected;
    }
    cr_assert_eq(rejected, 2);

    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    conversation_bytes(e, "a@example.com", &a);
    conversation_bytes(one, "a@example.com", &b);
    cr_assert_eq(a.size, b.size);
    cr_assert(memcmp(a.data, b.data, a.size) == 0,
              "the batch and one-by-one conversations differ");
    msgpack_sbuffer_clear(&a);
    msgpack_sbuffer_clear(&b);
    conversation_bytes(e, "b@example.com", &a);
    conversation_bytes(one, "b@example.com", &b);
    cr_assert_eq(a.size, b.size);
    cr_assert(memcmp(a.data, b.data, a.size) == 0);
    /* And what the events mean: p1, c1, e1, p3 and c2 are one customer's
     * (phone formats and the link joined them), p2 and p4 another's. */
    {
        const msgpack_object *o = by_email("a@example.com");
        cr_assert_eq(tmap_int(o, "contacts"), 5);
        o = by_email("b@example.com");
        cr_assert_eq(tmap_int(o, "contacts"), 2);
    }
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    cc_ingest_report_fini(&r1);
    cc_engine_free(one);
}

/*
 * The repeat alert and the context are written into room reserved for the
 * most they can take (core/outbox.h), and the engine aborts if a write
 * passes its bound. Here every part is as long as the protocol allows:
 * 31-byte channel names on eight channels, 512-byte contact ids, 128-byte
 * queue, agent, topic and tag names in every slot, a customer map of 20 KB,
 * 16 history entries and 50 identifiers of 250 bytes. Every alert and the
 * full context must come out whole and well-formed.
 */
static void
fill(char *buf, size_t n, char tag, int i) {
    int k = snprintf(buf, n + 1, "%c%d-", tag, i);
    memset(buf + k, 'x', n - (size_t)k);
    buf[n] = '\0';
}

/* Configured channel i's name, the longest allowed (31 bytes). */
static const char *
wide_channel(char name[32], int i) {
    snprintf(name, 32, "channel%d", i);
    memset(name + 8, 'z', 23);
    name[31] = '\0';
    return name;
}

Test(conversation, the_largest_alert_and_context_fit_their_bounds) {
    static char contact[513], queue[129], agent[129], topic[129], tag[129],
        big[20001], email[251], id[32];
    struct cc_engine_config c;
    msgpack_unpacked last;
    const msgpack_object *ctx;
    int i, k;

    test_config(&c, 50);
    for (i = 0; i < 4; i++) {
        char name[32];
        cr_assert_eq(cc_channels_add(&c.channels, wide_channel(name, i)), 0);
    }
    start(&c);
    msgpack_unpacked_init(&last);
    memset(big, 'b', sizeof(big) - 1);

    /* 49 more identifiers for the customer: one link each. */
    for (i = 0; i < 49; i++) {
        snprintf(id, sizeof(id), "l%d", i);
        fill(email, 240, 'e', i);
        memcpy(email + 240, "@example.c", 11);
        tb_reset(&t);
        msgpack_pack_map(&t.pk, 5);
        tb_kv_str(&t, "id", id);
        tb_kv_int(&t, "ts", T0 + i);
        tb_kv_str(&t, "channel", "email");
        tb_kv_str(&t, "type", "identity.link");
        tb_str(&t, "customer");
        msgpack_pack_map(&t.pk, 2);
        tb_kv_str(&t, "crm", "the-customer");
        tb_kv_str(&t, "email", email);
        cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)(T0 + i), &rep);
        cr_assert_eq(rep.accepted, 1, "link %d", i);
    }
    /* 20 contacts across the eight channels, each with every field at its
     * longest; each after the first is a repeat. */
    for (i = 0; i < 20; i++) {
        int64_t ts = T0 + HOUR + i * 1000;
        const char *ch = i % 8 < 4 ? (const char *[]){"phone", "chat", "email",
                                                      "social"}[i % 8]
                                   : NULL;
        char chname[32];
        if (ch == NULL)
            ch = wide_channel(chname, i % 8 - 4);
        fill(contact, 512, 'c', i);
        fill(queue, 128, 'q', i % 5);
        fill(agent, 128, 'a', i % 5);
        fill(topic, 128, 't', i);
        for (k = 0; k < 3; k++) {
            snprintf(id, sizeof(id), "x%d-%d", i, k);
            tb_reset(&t);
            msgpack_pack_map(&t.pk, k == 0 ? 9 : 7);
            tb_kv_str(&t, "id", id);
            tb_kv_int(&t, "ts", ts + k);
            tb_kv_str(&t, "channel", ch);
            tb_kv_str(&t, "type",
                      k == 0   ? "contact.open"
                      : k == 1 ? "queue.join"
                               : "agent.answer");
            tb_kv_str(&t, "contact", contact);
            tb_kv_str(&t, "topic", topic);
            if (k == 2)
                tb_kv_str(&t, "agent", agent);
            else
                tb_kv_str(&t, "queue", queue);
            if (k == 0) {
                tb_str(&t, "tags");
                msgpack_pack_array(&t.pk, 8);
                for (int j = 0; j < 8; j++) {
                    fill(tag, 128, 'g', i * 8 + j);
                    tb_str(&t, tag);
                }
                tb_str(&t, "customer");
                msgpack_pack_map(&t.pk, 2);
                tb_kv_str(&t, "crm", "the-customer");
                tb_kv_str(&t, "notes", big); /* unknown: kept as received */
            }
            cc_engine_ingest(e, t.sb.data, t.sb.size, (uint64_t)(ts + k), &rep);
            cr_assert_eq(rep.accepted, 1, "contact %d event %d: %s", i, k,
                         rep.error ? rep.error : "rejected");
        }
        /* Each repeat alert is whole and well-formed. */
        if (i > 0) {
            cr_assert_eq(count_alerts("continuity.repeat", &last), 1,
                         "contact %d", i);
            cr_assert(tmap_str_is(&last.data, "contact", contact));
        }
        cc_outbox_clear(cc_engine_outbox(e));
    }
    ctx = query(cc_engine_pack_conversation_by_id, "cv-1");
    cr_assert(ctx != NULL);
    cr_assert_eq(array_len(ctx, "identifiers"), 50);
    cr_assert_eq(array_len(ctx, "contact_history"), 16);
    cr_assert_eq(array_len(ctx, "channels"), 8);
    cr_assert_eq(array_len(ctx, "tags"), 8);
    cr_assert_eq(array_len(ctx, "agents"), 4);
    cr_assert_eq(array_len(ctx, "queues"), 4);
    cr_assert(tmap_str_is(ctx, "topic", topic));
    msgpack_unpacked_destroy(&last);
    teardown();
}
