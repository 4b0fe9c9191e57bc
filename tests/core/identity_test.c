/*
 * Identity: normalisation of real-world identifier forms, and links,
 * merges and splits checked against a brute-force reference.
 */
#include <criterion/criterion.h>

#include "identity.h"

#include <string.h>

static struct cc_str
S(const char *s) {
    struct cc_str r = {s, s ? (uint32_t)strlen(s) : 0};
    return r;
}

struct norm_case {
    int kind;
    unsigned country;
    const char *in;
    const char *out; /* NULL: refused */
};

static const struct norm_case norm_cases[] = {
    /* No usable default country: international numbers still normalise,
     * national ones are refused. */
    {CC_IDENT_PHONE, 0, "+44 20 7946 0958", "+442079460958"},
    {CC_IDENT_PHONE, 1000, "+1 555 123 4567", "+15551234567"},
    {CC_IDENT_PHONE, 0, "0044 20 7946 0958", "+442079460958"},
    {CC_IDENT_PHONE, 0, "020 7946 0958", NULL},
    {CC_IDENT_PHONE, 1000, "555 123 4567", NULL},
    /* North American forms, default country 1. */
    {CC_IDENT_PHONE, 1, "+1 (555) 123-4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "(555) 123-4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "555.123.4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "555-123-4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "1-555-123-4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "  5551234567 ", "+15551234567"},
    {CC_IDENT_PHONE, 1, "tel:+1-555-123-4567", "+15551234567"},
    {CC_IDENT_PHONE, 1, "011 44 20 7946 0958", "+442079460958"},
    {CC_IDENT_PHONE, 1, "+44 (0)20 7946 0958", "+442079460958"},
    {CC_IDENT_PHONE, 1, "0044 20 7946 0958", "+442079460958"},
    /* A UK national number with default country 44 loses its trunk 0. */
    {CC_IDENT_PHONE, 44, "020 7946 0958", "+442079460958"},
    {CC_IDENT_PHONE, 44, "07700 900123", "+447700900123"},
    {CC_IDENT_PHONE, 49, "030 901820", "+4930901820"},
    {CC_IDENT_PHONE, 33, "01 23 45 67 89", "+33123456789"},
    {CC_IDENT_PHONE, 44, "+33 1 23 45 67 89", "+33123456789"},
    /* Already E.164: the short path, at its length limits. */
    {CC_IDENT_PHONE, 1, "+15551234567", "+15551234567"},
    {CC_IDENT_PHONE, 0, "+1234567", "+1234567"},
    {CC_IDENT_PHONE, 0, "+123456789012345", "+123456789012345"},
    {CC_IDENT_PHONE, 1, "+123456", NULL},
    {CC_IDENT_PHONE, 1, "+1555123456a", NULL},
    {CC_IDENT_PHONE, 1, "+1555123456+", NULL},
    /* Refused, not guessed. */
    {CC_IDENT_PHONE, 1, "555-CALL-NOW", NULL},
    {CC_IDENT_PHONE, 1, "555-123-4567 ext. 12", NULL},
    {CC_IDENT_PHONE, 1, "555-1234", NULL},
    {CC_IDENT_PHONE, 1, "12+34567890", NULL},
    {CC_IDENT_PHONE, 1, "+1234", NULL},
    {CC_IDENT_PHONE, 1, "+1234567890123456", NULL},
    {CC_IDENT_PHONE, 1, "", NULL},
    {CC_IDENT_PHONE, 1, "()-", NULL},
    /* Email. */
    {CC_IDENT_EMAIL, 1, "Jane.Doe@Example.COM", "jane.doe@example.com"},
    {CC_IDENT_EMAIL, 1, "  jane@example.com\t", "jane@example.com"},
    {CC_IDENT_EMAIL, 1, "Jane Doe <Jane@Example.com>", "jane@example.com"},
    {CC_IDENT_EMAIL, 1, "\"Doe, Jane\" <jane@example.com>", "jane@example.com"},
    {CC_IDENT_EMAIL, 1, "mailto:jane@example.com", "jane@example.com"},
    {CC_IDENT_EMAIL, 1, "jane+billing@example.com", "jane+billing@example.com"},
    {CC_IDENT_EMAIL, 1, "JANE@EXAMPLE.COM", "jane@example.com"},
    {CC_IDENT_EMAIL, 1, "a@b", "a@b"},
    {CC_IDENT_EMAIL, 1, "MailTo:Jane@x.example", "jane@x.example"},
    {CC_IDENT_EMAIL, 1, "jane:b@x.example", "jane:b@x.example"},
    {CC_IDENT_EMAIL, 1, "jane@example.com>", NULL},
    {CC_IDENT_EMAIL, 1, "jane.example.com", NULL},
    {CC_IDENT_EMAIL, 1, "jane@@example.com", NULL},
    {CC_IDENT_EMAIL, 1, "@example.com", NULL},
    {CC_IDENT_EMAIL, 1, "jane@", NULL},
    {CC_IDENT_EMAIL, 1, "jane doe@example.com", NULL},
    {CC_IDENT_EMAIL, 1, "Jane <jane@example.com", NULL},
    {CC_IDENT_EMAIL, 1, "a@b.example, c@d.example", NULL},
    /* Social. */
    {CC_IDENT_SOCIAL, 1, "twitter:JaneDoe", "twitter:janedoe"},
    {CC_IDENT_SOCIAL, 1, "Twitter:@JaneDoe", "twitter:janedoe"},
    {CC_IDENT_SOCIAL, 1, "instagram:jane.doe_1", "instagram:jane.doe_1"},
    {CC_IDENT_SOCIAL, 1, "JaneDoe", NULL},
    {CC_IDENT_SOCIAL, 1, ":janedoe", NULL},
    {CC_IDENT_SOCIAL, 1, "twitter:", NULL},
    {CC_IDENT_SOCIAL, 1, "twitter:@", NULL},
    {CC_IDENT_SOCIAL, 1, "twitter:jane doe", NULL},
    {CC_IDENT_SOCIAL, 1, "tw itter:jane", NULL},
    /* Chat and CRM ids are kept as given. */
    {CC_IDENT_CHAT, 1, "Visitor-ABC 1", "Visitor-ABC 1"},
    {CC_IDENT_CRM, 1, "CRM-0042", "CRM-0042"},
};

Test(identity, normalises_real_world_forms) {
    char out[CC_IDENT_NORM_MAX + 1];
    const char *why;
    size_t i;
    int n;

    for (i = 0; i < CC_ARRAY_SIZE(norm_cases); i++) {
        const struct norm_case *c = &norm_cases[i];
        why = NULL;
        n = cc_ident_normalize((enum cc_ident_kind)c->kind, S(c->in),
                               c->country, out, sizeof(out), &why);
        if (c->out == NULL) {
            cr_expect_lt(n, 0, "%s '%s' should be refused, gave '%s'",
                         cc_ident_kind_name(c->kind), c->in, out);
            cr_expect_not_null(why, "'%s' refused without a reason", c->in);
        } else {
            cr_expect_geq(n, 0, "%s '%s' refused: %s",
                          cc_ident_kind_name(c->kind), c->in, why ? why : "?");
            if (n >= 0) {
                cr_expect_eq((size_t)n, strlen(out));
                cr_expect_str_eq(out, c->out, "'%s'", c->in);
            }
        }
    }
}

Test(identity, normalising_twice_changes_nothing) {
    char a[CC_IDENT_NORM_MAX + 1], b[CC_IDENT_NORM_MAX + 1];
    const char *why;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(norm_cases); i++) {
        const struct norm_case *c = &norm_cases[i];
        if (c->out == NULL)
            continue;
        cr_assert_geq(cc_ident_normalize((enum cc_ident_kind)c->kind, S(c->in),
                                         c->country, a, sizeof(a), &why),
                      0);
        cr_assert_geq(cc_ident_normalize((enum cc_ident_kind)c->kind, S(a),
                                         c->country, b, sizeof(b), &why),
                      0);
        cr_expect_str_eq(a, b);
    }
}

/* ---- the store against a reference ------------------------------------ */

static struct cc_identity id;
static const struct cc_identity_config base_cfg = {.default_country = 1,
                                                   .max_identifiers = 50,
                                                   .max_total = 100000,
                                                   .seed = 7};

static void
setup(void) {
    cr_assert_eq(cc_identity_init(&id, &base_cfg), 0);
}

static void
teardown(void) {
    cc_identity_fini(&id);
}

static struct cc_customer *
cust_of(int kind, const char *v) {
    struct cc_idnode *n = cc_identity_find(&id, kind, S(v));
    return n ? n->cust : NULL;
}

static int
resolve2(int ka, const char *a, int kb, const char *b, const char *ev,
         struct cc_idresult *res) {
    uint8_t kinds[2] = {(uint8_t)ka, (uint8_t)kb};
    struct cc_str v[2] = {S(a), {NULL, 0}};

    if (b != NULL)
        v[1] = S(b);
    return cc_identity_resolve(&id, kinds, v, b ? 2 : 1, S(ev), 1000, res);
}

Test(identity, seen_together_means_one_customer, .init = setup,
     .fini = teardown) {
    struct cc_idresult r;

    cr_assert_eq(
        resolve2(CC_IDENT_EMAIL, "a@x.example", CC_IDENT_CHAT, "v1", "e1", &r),
        0);
    cr_assert_eq(r.created, 2);
    cr_assert_eq(cust_of(CC_IDENT_EMAIL, "a@x.example"),
                 cust_of(CC_IDENT_CHAT, "v1"));
    /* A call from a number the chat linked joins the same customer. */
    cr_assert_eq(
        resolve2(CC_IDENT_CHAT, "v1", CC_IDENT_PHONE, "+15551230000", "e2", &r),
        0);
    cr_assert_eq(r.created, 1);
    cr_assert_eq(r.cust, cust_of(CC_IDENT_EMAIL, "a@x.example"));
    cr_assert_eq(r.cust->nmembers, 3);
    cr_assert_eq(id.customers, 1);
    /* Kinds keep values apart: the same text as chat and as crm. */
    cr_assert_eq(resolve2(CC_IDENT_CRM, "v1", 0, NULL, "e3", &r), 0);
    cr_assert_neq(r.cust, cust_of(CC_IDENT_CHAT, "v1"));
}

Test(identity, merge_keeps_the_oldest_and_records_the_event, .init = setup,
     .fini = teardown) {
    struct cc_idresult r;
    struct cc_customer *a, *b;
    uint64_t aid, bid;

    resolve2(CC_IDENT_EMAIL, "a@x.example", 0, NULL, "e1", &r);
    a = r.cust;
    aid = a->id;
    resolve2(CC_IDENT_PHONE, "+15551230000", 0, NULL, "e2", &r);
    b = r.cust;
    bid = b->id;
    cr_assert_neq(a, b);
    resolve2(CC_IDENT_PHONE, "+15551230000", CC_IDENT_EMAIL, "a@x.example",
             "link-1", &r);
    cr_assert_eq(r.merged, 1);
    cr_assert_eq(r.cust->id, aid < bid ? aid : bid);
    cr_assert_eq(r.cust->nhist, 1);
    cr_assert_eq(r.cust->hist[0].kind, CC_IDH_MERGE);
    cr_assert_eq(r.cust->hist[0].other, aid < bid ? bid : aid);
    cr_assert_eq(r.cust->hist[0].event_len, 6);
    cr_assert(memcmp(r.cust->hist[0].event, "link-1", 6) == 0);
    cr_assert_eq(id.merges, 1);
}

Test(identity, unlink_splits_and_can_be_merged_again, .init = setup,
     .fini = teardown) {
    struct cc_idresult r;
    uint8_t kinds[2] = {CC_IDENT_EMAIL, CC_IDENT_PHONE};
    struct cc_str v[2] = {S("a@x.example"), S("+15551230000")};
    uint32_t splits;

    resolve2(CC_IDENT_EMAIL, "a@x.example", CC_IDENT_PHONE, "+15551230000",
             "e1", &r);
    cr_assert_eq(id.customers, 1);
    cr_assert_eq(cc_identity_unlink(&id, kinds, v, 2, S("u1"), 2000, &splits),
                 1);
    cr_assert_eq(splits, 1);
    cr_assert_eq(id.customers, 2);
    cr_assert_neq(cust_of(CC_IDENT_EMAIL, "a@x.example"),
                  cust_of(CC_IDENT_PHONE, "+15551230000"));
    /* The email, named first, kept the original customer. */
    cr_assert_eq(cust_of(CC_IDENT_EMAIL, "a@x.example")->id, 1);
    cr_assert_eq(cust_of(CC_IDENT_EMAIL, "a@x.example")->hist[0].kind,
                 CC_IDH_SPLIT);
    /* Unlinking what is not linked changes nothing. */
    cr_assert_eq(cc_identity_unlink(&id, kinds, v, 2, S("u2"), 3000, &splits),
                 0);
    resolve2(CC_IDENT_EMAIL, "a@x.example", CC_IDENT_PHONE, "+15551230000",
             "e2", &r);
    cr_assert_eq(id.customers, 1);
}

Test(identity, unlink_keeps_customers_joined_by_other_links, .init = setup,
     .fini = teardown) {
    struct cc_idresult r;
    uint8_t kinds[2] = {CC_IDENT_EMAIL, CC_IDENT_PHONE};
    struct cc_str v[2] = {S("a@x.example"), S("+15551230000")};
    uint32_t splits;

    resolve2(CC_IDENT_EMAIL, "a@x.example", CC_IDENT_PHONE, "+15551230000",
             "e1", &r);
    resolve2(CC_IDENT_EMAIL, "a@x.example", CC_IDENT_CHAT, "v1", "e2", &r);
    resolve2(CC_IDENT_CHAT, "v1", CC_IDENT_PHONE, "+15551230000", "e3", &r);
    cr_assert_eq(cc_identity_unlink(&id, kinds, v, 2, S("u1"), 2000, &splits),
                 1);
    cr_assert_eq(splits, 0);
    cr_assert_eq(cust_of(CC_IDENT_EMAIL, "a@x.example"),
                 cust_of(CC_IDENT_PHONE, "+15551230000"));
}

Test(identity, a_merge_past_the_limit_is_refused, .init = setup,
     .fini = teardown) {
    struct cc_identity_config cfg = base_cfg;
    struct cc_idresult r;
    char buf[32];
    int i;

    cc_identity_fini(&id);
    cfg.max_identifiers = 4;
    cr_assert_eq(cc_identity_init(&id, &cfg), 0);
    /* A shared office number seen with four different emails. */
    for (i = 0; i < 3; i++) {
        snprintf(buf, sizeof(buf), "p%d@x.example", i);
        resolve2(CC_IDENT_PHONE, "+15550000000", CC_IDENT_EMAIL, buf, "e", &r);
        cr_assert_not(r.conflict);
    }
    cr_assert_eq(r.cust->nmembers, 4);
    resolve2(CC_IDENT_PHONE, "+15550000000", CC_IDENT_EMAIL, "p9@x.example",
             "e", &r);
    cr_assert(r.conflict);
    cr_assert_eq(r.conflict_size, 5);
    cr_assert_eq(r.cust, cust_of(CC_IDENT_PHONE, "+15550000000"));
    cr_assert_eq(r.cust->nmembers, 4);
    cr_assert_null(cust_of(CC_IDENT_EMAIL, "p9@x.example"));
    cr_assert_eq(id.conflicts, 1);
}

/* The index filled to its limit (half its slots), under many seeds so that
 * runs of occupied slots form, wrap past the table's end and interleave:
 * every identifier is found, none that is absent is, and one more is
 * refused with nothing changed. */
Test(identity, a_full_index_finds_every_identifier) {
    struct cc_identity_config cfg = base_cfg;
    struct cc_idresult r;
    uint64_t seed;
    char buf[32];
    int i;

    cfg.max_total = 64;
    for (seed = 1; seed <= 200; seed++) {
        cfg.seed = seed;
        cr_assert_eq(cc_identity_init(&id, &cfg), 0);
        cr_assert_eq(id.mask + 1, 128);
        for (i = 0; i < 64; i++) {
            snprintf(buf, sizeof(buf), "v%d", i);
            cr_assert_eq(resolve2(CC_IDENT_CHAT, buf, 0, NULL, "e", &r), 0);
            cr_assert_eq(r.created, 1);
        }
        cr_assert_eq(id.nodes, 64);
        for (i = 0; i < 64; i++) {
            struct cc_idnode *n;
            snprintf(buf, sizeof(buf), "v%d", i);
            n = cc_identity_find(&id, CC_IDENT_CHAT, S(buf));
            cr_assert_not_null(n, "seed %llu: v%d lost",
                               (unsigned long long)seed, i);
            cr_assert_str_eq(n->s, buf);
            /* The same text as another kind is another identifier. */
            cr_assert_null(cc_identity_find(&id, CC_IDENT_CRM, S(buf)));
            snprintf(buf, sizeof(buf), "w%d", i);
            cr_assert_null(cc_identity_find(&id, CC_IDENT_CHAT, S(buf)));
        }
        cr_assert_eq(resolve2(CC_IDENT_CHAT, "one-more", 0, NULL, "e", &r),
                     CC_ELIMIT);
        cr_assert_eq(id.nodes, 64);
        cr_assert_null(cc_identity_find(&id, CC_IDENT_CHAT, S("one-more")));
        cc_identity_fini(&id);
    }
}

/*
 * Random links and unlinks over a small universe, checked after every step
 * against a reference that keeps the set of links and computes the
 * components from scratch.
 */
#define U 24

static bool ref_link[U][U];

static int
ref_component(int a, int *comp) {
    int stack[U], top = 0, i, n = 0;
    bool seen[U] = {false};

    seen[a] = true;
    stack[top++] = a;
    while (top > 0) {
        int x = stack[--top];
        comp[n++] = x;
        for (i = 0; i < U; i++) {
            if (ref_link[x][i] && !seen[i]) {
                seen[i] = true;
                stack[top++] = i;
            }
        }
    }
    return n;
}

static void
name_of(int i, char *buf, size_t n) {
    snprintf(buf, n, "u%02d@x.example", i);
}

Test(identity, random_links_and_unlinks_match_a_reference, .init = setup,
     .fini = teardown) {
    bool known[U] = {false};
    char na[32], nb[32];
    uint64_t rng = 12345;
    int step, i, j;

    for (step = 0; step < 4000; step++) {
        int a, b;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        a = (int)(rng % U);
        b = (int)((rng >> 20) % U);
        name_of(a, na, sizeof(na));
        name_of(b, nb, sizeof(nb));
        if ((rng >> 40) % 3 != 0 || a == b) {
            struct cc_idresult r;
            uint8_t k[2] = {CC_IDENT_EMAIL, CC_IDENT_EMAIL};
            struct cc_str v[2] = {S(na), S(nb)};
            cr_assert_eq(cc_identity_resolve(&id, k, v, a == b ? 1 : 2, S("ev"),
                                             step, &r),
                         0);
            known[a] = known[b] = true;
            if (a != b)
                ref_link[a][b] = ref_link[b][a] = true;
        } else {
            uint8_t k[2] = {CC_IDENT_EMAIL, CC_IDENT_EMAIL};
            struct cc_str v[2] = {S(na), S(nb)};
            uint32_t splits;
            uint32_t removed =
                cc_identity_unlink(&id, k, v, 2, S("un"), step, &splits);
            cr_assert_eq(removed, ref_link[a][b] ? 1u : 0u);
            ref_link[a][b] = ref_link[b][a] = false;
        }
        /* Every known identifier's customer is exactly its component. */
        for (i = 0; i < U; i++) {
            int comp[U], n;
            struct cc_customer *c;
            if (!known[i])
                continue;
            name_of(i, na, sizeof(na));
            c = cust_of(CC_IDENT_EMAIL, na);
            cr_assert_not_null(c);
            n = ref_component(i, comp);
            cr_assert_eq(c->nmembers, (uint32_t)n, "step %d id %d", step, i);
            for (j = 0; j < n; j++) {
                name_of(comp[j], nb, sizeof(nb));
                cr_assert_eq(cust_of(CC_IDENT_EMAIL, nb), c, "step %d", step);
            }
        }
    }
    cr_assert_gt(id.merges, 0);
    cr_assert_gt(id.splits, 0);
}
