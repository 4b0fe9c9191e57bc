/*
 * The email adapter: the parser and mapper over the mail gem's real-world
 * corpus (tests/data/realdata/email/mail-gem, read in place, never
 * changed), threading through a real engine, and the Maildir watcher on a
 * real libuv loop in a temporary directory.
 */
#include "chtest.h"
#include "email/mail.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define CORPUS TEST_DATA_DIR "/realdata/email/mail-gem"

static int64_t
wall_ms(void) {
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static bool
utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    int more = 0;

    for (; *p != '\0'; p++) {
        if (more > 0) {
            if ((*p & 0xc0) != 0x80)
                return false;
            more--;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            more = 3;
        } else if (*p >= 0xe0) {
            more = 2;
        } else if (*p >= 0xc2 && *p <= 0xdf) {
            more = 1;
        } else if (*p >= 0x80) {
            return false;
        }
    }
    return more == 0;
}

/* Parses a corpus file (path under the corpus). */
static int
parse_corpus(const char *rel, const struct cc_mail_support *sup,
             struct cc_mail *m, const char **why) {
    char path[512];
    size_t len;
    char *buf;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", CORPUS, rel);
    buf = read_file(path, &len);
    rc = cc_mail_parse(buf, len, sup, m, why);
    free(buf);
    return rc;
}

static void
parse_ok(const char *rel, const struct cc_mail_support *sup,
         struct cc_mail *m) {
    const char *why = NULL;
    int rc = parse_corpus(rel, sup, m, &why);

    cr_assert_eq(rc, 0, "%s: refused: %s", rel, why ? why : "?");
}

static int
parse_str(const char *text, const struct cc_mail_support *sup,
          struct cc_mail *m, const char **why) {
    return cc_mail_parse(text, strlen(text), sup, m, why);
}

static void
support(struct cc_mail_support *s, const char *list) {
    char err[256];

    cr_assert_eq(cc_mail_support_parse(s, list, err, sizeof(err)), 0, "%s",
                 err);
}

/* Submits one mapped message to h; the host's answer is in h->last. */
static void
submit_mail(struct thost *h, const struct cc_mail *m, int64_t delivered) {
    struct cc_evbuf eb;
    struct cc_submit res;
    struct cc_nev ev;
    const void *msg;
    size_t len;

    cr_assert(cc_mail_map(m, "email", delivered, &ev));
    cc_evbuf_init(&eb);
    cc_evbuf_add(&eb, &ev);
    msg = cc_evbuf_msg(&eb, &len);
    h->host.submit(h->host.ctx, msg, len, &res);
    cc_evbuf_fini(&eb);
}

/* ---- the corpus ---------------------------------------------------------- */

struct walk {
    struct thost *h;
    int files, parsed, refused, in, out, automatic, bounces;
};

static void
check_one(struct walk *w, const char *path) {
    struct cc_mail_support sup;
    struct cc_mail m;
    struct cc_nev ev;
    const char *why = NULL;
    size_t len;
    char *buf = read_file(path, &len);
    int rc;

    support(&sup, "help@example.com");
    w->files++;
    rc = cc_mail_parse(buf, len, &sup, &m, &why);
    free(buf);
    if (rc != 0) {
        cr_assert_eq(rc, CC_EPROTO, "%s", path);
        cr_assert_not_null(why, "%s: refused without a reason", path);
        w->refused++;
        return;
    }
    w->parsed++;
    cr_assert(m.id[0] != '\0' && strlen(m.id) <= CC_ID_MAX, "%s", path);
    cr_assert(strlen(m.subject) <= CC_NAME_MAX, "%s", path);
    cr_assert(utf8_ok(m.subject), "%s: subject not UTF-8", path);
    if (m.kind == CC_MAIL_BOUNCE || m.kind == CC_MAIL_AUTO_REPLY) {
        cr_assert_not_null(m.automatic, "%s", path);
        cr_assert_not(cc_mail_map(&m, "email", w->h->now, &ev), "%s", path);
        if (m.kind == CC_MAIL_BOUNCE)
            w->bounces++;
        else
            w->automatic++;
        return;
    }
    cr_assert(m.customer[0] != '\0', "%s: no customer", path);
    if (m.kind == CC_MAIL_IN)
        w->in++;
    else
        w->out++;
    /* Whatever the corpus holds, the event it maps to is one the engine
     * takes (or already has: some files share a Message-ID). */
    submit_mail(w->h, &m, (int64_t)w->h->now);
    cr_assert_eq(w->h->last.rejected, 0, "%s: the engine rejected it: %s", path,
                 w->h->last.first_reason);
    cr_assert_null(w->h->last.error, "%s", path);
}

static void
walk_dir(struct walk *w, const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    struct stat st;

    cr_assert_not_null(d, "%s", dir);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        cr_assert_eq(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode))
            walk_dir(w, path);
        else if (S_ISREG(st.st_mode))
            check_one(w, path);
    }
    closedir(d);
}

Test(mail, corpus_parses_or_is_refused_with_a_reason) {
    struct thost h;
    struct walk w = {0};

    thost_init(&h, NULL, (uint64_t)wall_ms());
    w.h = &h;
    walk_dir(&w, CORPUS);
    cr_assert_eq(w.files, 104, "the corpus has %d files", w.files);
    /* Every message file parses but one without a From; the licence text
     * is not mail. */
    cr_assert_eq(w.refused, 2, "parsed %d, refused %d", w.parsed, w.refused);
    cr_assert_geq(w.bounces, 5);
    cr_assert_gt(w.in, 80);
    thost_fini(&h);
}

/* Every prefix, and seeded random corruption of the headers (bytes that
 * matter to the syntax more often than others): never a crash, and what
 * still maps is an event the engine takes. */
Test(mail, mutations_never_crash) {
    static const char *const files[] = {
        "rfc2822/example07.eml", "plain_emails/raw_email_reply.eml",
        "multi_charset/japanese_attachment_long_name.eml",
        "multipart_report_emails/report_530.eml", "rfc6532/utf8_headers.eml"};
    static const char nasty[] = "\n\r:<>@=?\"(),; \t\x00\xff\xc3\x80"
                                "Bq";
    struct cc_mail_support sup;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    struct thost h;
    struct cc_mail m;
    struct cc_nev ev;
    const char *why;
    size_t f, len, i, k, span;
    char *buf, *mut, path[512];
    int mapped = 0;

    support(&sup, "mikel@xxxx.net");
    thost_init(&h, NULL, 1700000000000ULL);
    for (f = 0; f < CC_ARRAY_SIZE(files); f++) {
        snprintf(path, sizeof(path), "%s/%s", CORPUS, files[f]);
        buf = read_file(path, &len);
        mut = malloc(len);
        cr_assert_not_null(mut);
        for (i = 0; i <= len && i < 3000; i++)
            cc_mail_parse(buf, i, &sup, &m, &why);
        span = len < 4096 ? len : 4096;
        for (i = 0; i < 2000; i++) {
            memcpy(mut, buf, len);
            for (k = 0; k < 1 + i % 8; k++) {
                size_t at;
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                at = (size_t)(seed >> 33) % span;
                mut[at] = (seed & 1) != 0
                              ? nasty[(seed >> 8) % (sizeof(nasty) - 1)]
                              : (char)(seed >> 16);
            }
            if (cc_mail_parse(mut, len, &sup, &m, &why) != 0) {
                cr_assert_not_null(why);
                continue;
            }
            cr_assert(utf8_ok(m.subject));
            if (!cc_mail_map(&m, "email", 1700000000000LL, &ev))
                continue;
            submit_mail(&h, &m, 1700000000000LL);
            cr_assert_eq(h.last.rejected, 0, "%s #%zu: %s", files[f], i,
                         h.last.first_reason);
            mapped++;
        }
        free(mut);
        free(buf);
    }
    cr_assert_gt(mapped, 1000);
    thost_fini(&h);
}

Test(mail, rfc2047_subjects_are_decoded) {
    struct cc_mail m;

    parse_ok("multi_charset/japanese.eml", NULL, &m);
    cr_assert_str_eq(m.subject, "まみむめも");
    cr_assert_str_eq(m.from, "raasdnil@gmail.com");
    parse_ok("multi_charset/japanese_iso_2022.eml", NULL, &m);
    cr_assert_str_eq(m.subject, "まみむめも");
    /* Four encoded words, 61 characters: cut to at most 128 bytes on a
     * character boundary (42 three-byte characters). */
    parse_ok("multi_charset/japanese_attachment_long_name.eml", NULL, &m);
    cr_assert_eq(strlen(m.subject), 126);
    cr_assert(utf8_ok(m.subject));
    cr_assert_eq(strncmp(m.subject, "まみむめもまみむめも", 30), 0);
    /* ISO-2022-JP in an encoded word after a folded blank line: white
     * space folded to one space. */
    parse_ok("rfc2822/example14.eml", NULL, &m);
    cr_assert_str_eq(m.subject, "Re: TEST テストテスト");
    parse_ok("plain_emails/raw_email_with_partially_quoted_subject.eml", NULL,
             &m);
    cr_assert_str_eq(m.subject, "Re: Test: \"漢字\" mid \"漢字\" tail");
    parse_ok("mime_emails/raw_email_encoded_stack_level_too_deep.eml", NULL,
             &m);
    cr_assert_str_eq(m.subject,
                     "Nicolas Fouché has accepted your invitation to Gmail");
}

Test(mail, lf_only_message) {
    struct cc_mail m;
    struct cc_nev ev;

    parse_ok("plain_emails/basic_email_lf.eml", NULL, &m);
    cr_assert_eq(m.kind, CC_MAIL_IN);
    cr_assert_str_eq(m.from, "test@lindsaar.net");
    cr_assert_str_eq(m.subject, "Testing 123");
    cr_assert(m.has_message_id);
    cr_assert_str_eq(m.id,
                     "6B7EC235-5B17-4CA8-B2B8-39290DEB43A3@test.lindsaar.net");
    cr_assert(cc_mail_map(&m, "email", 1227326699000LL + 60000, &ev));
    /* The Date lies a minute before delivery: it is the event time. */
    cr_assert_eq(ev.ts, 1227326699000LL);
    cr_assert(cc_str_eq(ev.contact, m.id));
    cr_assert_eq(ev.reply_to.n, 0);
}

Test(mail, rfc6532_utf8_headers) {
    struct cc_mail m;
    struct cc_nev ev;

    parse_ok("rfc6532/utf8_headers.eml", NULL, &m);
    cr_assert_eq(m.kind, CC_MAIL_IN);
    cr_assert_str_eq(m.from, "jdöe@mächine.example");
    cr_assert_str_eq(m.customer, "jdöe@mächine.example");
    cr_assert_str_eq(m.subject, "Säying Hello");
    /* No Message-ID: the id is the digest of the bytes. */
    cr_assert_not(m.has_message_id);
    cr_assert_eq(strncmp(m.id, "mail:", 5), 0);
    cr_assert_eq(strlen(m.id), 5 + 64);
    cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
    cr_assert(cc_str_eq(ev.id, m.id));
    cr_assert(cc_str_eq(ev.contact, m.id));
    cr_assert(cc_str_eq(ev.ident[CC_IDENT_EMAIL], "jdöe@mächine.example"));
    cr_assert_eq(ev.ts, 1700000000000LL);
}

Test(mail, multipart_reports_are_bounces) {
    static const char *const files[] = {
        "multipart_report_emails/multi_address_bounce1.eml",
        "multipart_report_emails/multi_address_bounce2.eml",
        "multipart_report_emails/multipart_report_multiple_status.eml",
        "multipart_report_emails/report_422.eml",
        "multipart_report_emails/report_530.eml"};
    struct cc_mail m;
    struct cc_nev ev;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(files); i++) {
        parse_ok(files[i], NULL, &m);
        cr_assert_eq(m.kind, CC_MAIL_BOUNCE, "%s", files[i]);
        cr_assert_str_eq(m.automatic, "multipart/report", "%s", files[i]);
        cr_assert_not(cc_mail_map(&m, "email", 1, &ev));
    }
}

Test(mail, hostile_nesting_is_harmless) {
    struct cc_mail m;

    parse_ok("mime_emails/raw_email_encoded_stack_level_too_deep.eml", NULL,
             &m);
    cr_assert_eq(m.kind, CC_MAIL_IN);
    cr_assert_str_eq(m.from, "gmail-noreply@google.com");
    cr_assert_str_eq(m.id, "89d7557c0506280102495d555f@mail.gmail.com");
}

Test(mail, corpus_automatic_messages) {
    struct cc_mail m;

    parse_ok("error_emails/bad_date_header.eml", NULL, &m);
    cr_assert_eq(m.kind, CC_MAIL_AUTO_REPLY);
    cr_assert_str_eq(m.automatic, "Precedence");
    /* A delivery warning: a report, from MAILER-DAEMON, auto-generated,
     * sent from <>; the report decides. */
    parse_ok("mime_emails/raw_email_with_mimepart_without_content_type.eml",
             NULL, &m);
    cr_assert_eq(m.kind, CC_MAIL_BOUNCE);
    cr_assert_str_eq(m.automatic, "multipart/report");
}

Test(mail, references_skip_invalid_ids) {
    struct cc_mail m;
    struct cc_nev ev;

    /* Two References headers, the second ending in "<invalid.". */
    parse_ok("error_emails/multiple_references_with_one_invalid.eml", NULL, &m);
    cr_assert_eq(m.nrefs, 2);
    cr_assert_str_eq(m.ref_first, "foo@bar.net");
    cr_assert_str_eq(m.ref_last, "baz@bar.net");
    cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
    cr_assert(cc_str_eq(ev.contact, "foo@bar.net"));
    cr_assert(cc_str_eq(ev.reply_to, "baz@bar.net"));

    /* An empty In-Reply-To answers nothing. */
    parse_ok("error_emails/empty_in_reply_to.eml", NULL, &m);
    cr_assert_str_eq(m.in_reply_to, "");
    cr_assert_eq(m.nrefs, 0);
    cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
    cr_assert(
        cc_str_eq(ev.contact, "F194F88AF3E341A6B2B135CC17912811@articondell"));
    cr_assert_eq(ev.reply_to.n, 0);
}

Test(mail, client_replies_map_with_reply_to) {
    static const struct {
        const char *file, *reply_to, *contact;
    } cases[] = {
        {"plain_emails/raw_email_reply.eml",
         "348F04F142D69C21-291E56D292BC@xxxx.net", "473FF3B8.9020707@xxx.org"},
        {"mime_emails/raw_email2.eml",
         "F6E2D0B4-CC35-4A91-BA4C-C7C712B10C13@mac.com",
         "F6E2D0B4-CC35-4A91-BA4C-C7C712B10C13@mac.com"},
        {"plain_emails/raw_email8.eml",
         "F6E2D0B4-CC35-4A91-BA4C-C7C712B10C13@mac.com",
         "F6E2D0B4-CC35-4A91-BA4C-C7C712B10C13@mac.com"},
        /* In-Reply-To without References: the parent stands for the
         * root. */
        {"rfc2822/example14.eml", "rid_5582199198@msgid.example.com",
         "rid_5582199198@msgid.example.com"},
    };
    struct cc_mail m;
    struct cc_nev ev;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(cases); i++) {
        parse_ok(cases[i].file, NULL, &m);
        cr_assert_eq(m.kind, CC_MAIL_IN, "%s", cases[i].file);
        cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
        cr_assert_str_eq(ev.type, "message.in");
        cr_assert(cc_str_eq(ev.reply_to, cases[i].reply_to), "%s: %.*s",
                  cases[i].file, (int)ev.reply_to.n, ev.reply_to.p);
        cr_assert(cc_str_eq(ev.contact, cases[i].contact), "%s: %.*s",
                  cases[i].file, (int)ev.contact.n, ev.contact.p);
        cr_assert_neq(ev.topic.n, 0);
    }
}

/* The RFC 5322 example thread: John writes, Mary (support) answers, John
 * answers back, writing to Mary's personal address. */
Test(mail, reply_thread_is_one_conversation) {
    static const char *const files[] = {"rfc2822/example05.eml",
                                        "rfc2822/example06.eml",
                                        "rfc2822/example07.eml"};
    struct cc_mail_support sup;
    struct cc_mail m[3];
    struct thost h;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    const char *why = NULL;
    struct cc_nev ev;
    size_t i;

    support(&sup, "Mary@Example.net");
    thost_init(&h, NULL, 1700000000000ULL);
    for (i = 0; i < 3; i++) {
        parse_ok(files[i], &sup, &m[i]);
        submit_mail(&h, &m[i], 1700000000000LL + (int64_t)i * 60000);
        cr_assert_eq(h.last.accepted, 1, "%s: %s", files[i],
                     h.last.first_reason);
    }
    cr_assert_eq(m[0].kind, CC_MAIL_IN);
    cr_assert_eq(m[1].kind, CC_MAIL_OUT);
    cr_assert_str_eq(m[1].agent, "mary@example.net");
    cr_assert_str_eq(m[1].customer, "jdoe@machine.example");
    cr_assert_eq(m[2].kind, CC_MAIL_IN);
    cr_assert(cc_mail_map(&m[2], "email", 1700000000000LL, &ev));
    cr_assert(cc_str_eq(ev.contact, "1234@local.machine.example"));
    cr_assert(cc_str_eq(ev.reply_to, "3456@example.net"));
    /* The 1997 Date lies outside the window: delivery time. */
    cr_assert_eq(ev.ts, 1700000000000LL);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(
        cc_engine_pack_conversation_by_ident(
            h.e, CC_IDENT_EMAIL, cc_str_of("jdoe@machine.example"), &pk, &why),
        0);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(tmap_int(&u.data, "contacts"), 1);
    cr_assert_eq(tmap_int(&u.data, "messages_in"), 2);
    cr_assert_eq(tmap_int(&u.data, "messages_out"), 1);
    cr_assert_eq(tstat_int(h.e, "conversations/started"), 1);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    thost_fini(&h);
}

/* A customer's client that keeps only In-Reply-To starts a contact of its
 * own, which the engine threads into the conversation by reply_to. */
Test(mail, reply_without_references_threads_by_reply_to) {
    static const char first[] = "From: ann@example.org\r\n"
                                "To: help@example.com\r\n"
                                "Subject: printer\r\n"
                                "Message-ID: <m1@example.org>\r\n\r\nhi\r\n";
    static const char answer[] = "From: Help <HELP@example.com>\r\n"
                                 "To: ann@example.org\r\n"
                                 "Subject: Re: printer\r\n"
                                 "Message-ID: <m2@example.com>\r\n"
                                 "In-Reply-To: <m1@example.org>\r\n"
                                 "References: <m1@example.org>\r\n\r\nok\r\n";
    /* From another address of hers, answering only the reply. */
    static const char again[] =
        "From: ann.lee@work.example\r\n"
        "To: help@example.com\r\n"
        "Subject: Re: printer\r\n"
        "Message-ID: <m3@work.example>\r\n"
        "In-Reply-To: <m2@example.com>\r\n\r\nstill\r\n";
    struct cc_mail_support sup;
    struct cc_mail m;
    struct thost h;
    const char *why;

    support(&sup, "help@example.com");
    thost_init(&h, NULL, 1700000000000ULL);
    cr_assert_eq(parse_str(first, &sup, &m, &why), 0);
    submit_mail(&h, &m, 1700000000000LL);
    cr_assert_eq(parse_str(answer, &sup, &m, &why), 0);
    cr_assert_eq(m.kind, CC_MAIL_OUT);
    cr_assert_str_eq(m.agent, "help@example.com");
    submit_mail(&h, &m, 1700000060000LL);
    cr_assert_eq(parse_str(again, &sup, &m, &why), 0);
    submit_mail(&h, &m, 1700000120000LL);
    cr_assert_eq(h.last.accepted, 1);
    cr_assert_eq(tstat_int(h.e, "conversations/started"), 1);
    cr_assert_eq(tstat_int(h.e, "conversations/threaded_contacts"), 1);
    thost_fini(&h);
}

Test(mail, support_reply_is_message_out) {
    struct cc_mail_support sup;
    struct cc_mail m;
    struct cc_nev ev;
    const char *why;

    support(&sup, "billing@example.com,  Help@Example.com");
    cr_assert_eq(sup.n, 2);
    /* To: support addresses only; the customer is in Cc. */
    cr_assert_eq(parse_str("From: \"Help desk\" <help@EXAMPLE.com>\r\n"
                           "To: billing@example.com, undisclosed: ;\r\n"
                           "Cc: \"Bob\" <bob@customer.example>\r\n"
                           "Subject: Re: refund\r\n"
                           "Message-ID: <r1@example.com>\r\n"
                           "In-Reply-To: <q1@customer.example>\r\n\r\n",
                           &sup, &m, &why),
                 0);
    cr_assert_eq(m.kind, CC_MAIL_OUT);
    cr_assert_str_eq(m.agent, "help@example.com");
    cr_assert_str_eq(m.customer, "bob@customer.example");
    cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
    cr_assert_str_eq(ev.type, "message.out");
    cr_assert(cc_str_eq(ev.agent, "help@example.com"));
    cr_assert(cc_str_eq(ev.ident[CC_IDENT_EMAIL], "bob@customer.example"));
    cr_assert(cc_str_eq(ev.reply_to, "q1@customer.example"));
    cr_assert(cc_str_eq(ev.contact, "q1@customer.example"));
    cr_assert(cc_str_eq(ev.topic, "Re: refund"));

    /* The same From without the support list: a customer's message. */
    cr_assert_eq(parse_str("From: help@example.com\r\nTo: x@y.example\r\n\r\n",
                           NULL, &m, &why),
                 0);
    cr_assert_eq(m.kind, CC_MAIL_IN);
    cr_assert_str_eq(m.agent, "");
}

Test(mail, automatic_messages_are_not_message_in) {
    static const struct {
        const char *text, *why;
        enum cc_mail_kind kind;
    } cases[] = {
        {"From: a@b.example\nAuto-Submitted: auto-replied (vacation)\n\n",
         "Auto-Submitted", CC_MAIL_AUTO_REPLY},
        {"From: a@b.example\nPrecedence: bulk\n\n", "Precedence",
         CC_MAIL_AUTO_REPLY},
        {"From: a@b.example\nPrecedence: auto_reply\n\n", "Precedence",
         CC_MAIL_AUTO_REPLY},
        {"From: a@b.example\nX-Autoreply: yes\n\n", "X-Autoreply",
         CC_MAIL_AUTO_REPLY},
        {"From: a@b.example\nX-Autorespond: on\n\n", "X-Autorespond",
         CC_MAIL_AUTO_REPLY},
        {"Return-Path: <>\nFrom: a@b.example\n\n", "Return-Path <>",
         CC_MAIL_AUTO_REPLY},
        {"From: a@b.example\nContent-Type: multipart/report; "
         "report-type=disposition-notification; boundary=x\n\n",
         "read receipt", CC_MAIL_AUTO_REPLY},
        {"From: Mail Delivery System <MAILER-DAEMON@mx.example>\n\n",
         "From MAILER-DAEMON", CC_MAIL_BOUNCE},
        /* No domain, so no usable From: a bounce all the same. */
        {"From: MAILER-DAEMON\n\n", "From MAILER-DAEMON", CC_MAIL_BOUNCE},
        {"From: postmaster@mx.example\n\n", "From postmaster", CC_MAIL_BOUNCE},
        /* A support address's own auto-reply is not an agent's answer. */
        {"From: help@example.com\nAuto-Submitted: auto-generated\n\n",
         "Auto-Submitted", CC_MAIL_AUTO_REPLY},
    };
    struct cc_mail_support sup;
    struct cc_mail m;
    struct cc_nev ev;
    const char *why;
    size_t i;

    support(&sup, "help@example.com");
    for (i = 0; i < CC_ARRAY_SIZE(cases); i++) {
        cr_assert_eq(parse_str(cases[i].text, &sup, &m, &why), 0, "%zu", i);
        cr_assert_eq(m.kind, cases[i].kind, "%zu", i);
        cr_assert_str_eq(m.automatic, cases[i].why, "%zu", i);
        cr_assert_not(cc_mail_map(&m, "email", 1, &ev));
    }
    /* "no" means a person wrote it; a list's Precedence is not
     * automatic. */
    cr_assert_eq(parse_str("From: a@b.example\nAuto-Submitted: No\n"
                           "Precedence: list\nReturn-Path: <a@b.example>\n\n",
                           &sup, &m, &why),
                 0);
    cr_assert_eq(m.kind, CC_MAIL_IN);
    cr_assert_null(m.automatic);
}

Test(mail, refused_with_reasons) {
    struct cc_mail m;
    const char *why = NULL;
    size_t n = CC_MAIL_HEADER_MAX + 100, i;
    char *big;

    cr_assert_eq(cc_mail_parse("", 0, NULL, &m, &why), CC_EPROTO);
    cr_assert_str_eq(why, "empty file");
    cr_assert_eq(
        parse_str("\x01\x02\xff garbage without a colon\n\x7f", NULL, &m, &why),
        CC_EPROTO);
    cr_assert_str_eq(why, "not a mail message");
    cr_assert_eq(parse_str("\r\nbody only\r\n", NULL, &m, &why), CC_EPROTO);
    cr_assert_str_eq(why, "not a mail message");
    cr_assert_eq(parse_str("To: a@b.example\nSubject: hi\n\n", NULL, &m, &why),
                 CC_EPROTO);
    cr_assert_str_eq(why, "no usable From address");
    cr_assert_eq(parse_str("From: somebody\nSubject: hi\n\n", NULL, &m, &why),
                 CC_EPROTO);
    cr_assert_str_eq(why, "no usable From address");
    cr_assert_eq(parse_str("From: \"a b\"@c.example\n\n", NULL, &m, &why),
                 CC_EPROTO);
    /* One header line longer than the header limit. */
    big = malloc(n);
    cr_assert_not_null(big);
    memcpy(big, "From: a@b.example\nX-Junk: ", 26);
    for (i = 26; i < n; i++)
        big[i] = 'x';
    cr_assert_eq(cc_mail_parse(big, n, NULL, &m, &why), CC_EPROTO);
    cr_assert_str_eq(why, "header block larger than 1 MiB");
    free(big);
}

Test(mail, first_usable_from_and_multiple_from) {
    struct cc_mail m;
    const char *why;

    cr_assert_eq(
        parse_str("From: broken, Ann <ann@example.org>\n\n", NULL, &m, &why),
        0);
    cr_assert_str_eq(m.from, "ann@example.org");
    /* Two authors: the first. */
    parse_ok("plain_emails/raw_email_multiple_from.eml", NULL, &m);
    cr_assert_str_eq(m.from, "tim@powerupdev.com");
    /* "From: Big Bug bb@bug.com": no angle brackets, no address list for
     * GMime; the address is still there. */
    parse_ok("plain_emails/mix_caps_content_type.eml", NULL, &m);
    cr_assert_str_eq(m.from, "bb@bug.com");
    cr_assert_eq(m.kind, CC_MAIL_IN);
    /* No From at all. */
    cr_assert_eq(
        parse_corpus("error_emails/bad_encoded_subject.eml", NULL, &m, &why),
        CC_EPROTO);
    cr_assert_str_eq(why, "no usable From address");
}

Test(mail, event_time_from_date_within_window) {
    static const char fmt[] = "From: a@b.example\nDate: %s\n\n";
    static const struct {
        const char *date;
        int64_t want;
    } cases[] = {
        /* delivered at 2023-11-14 22:13:20 UTC (1700000000000) */
        {"Tue, 14 Nov 2023 22:13:20 +0000", 1700000000000LL},
        {"Tue, 14 Nov 2023 12:00:00 -0500", 1699981200000LL}, /* 5h before */
        {"Mon, 13 Nov 2023 22:13:21 +0000", 1699913601000LL}, /* 23h59m */
        {"Mon, 13 Nov 2023 22:13:19 +0000", 1700000000000LL}, /* > 24 h */
        {"Tue, 14 Nov 2023 22:18:20 +0000", 1700000300000LL}, /* +5 min */
        {"Tue, 14 Nov 2023 22:18:21 +0000", 1700000000000LL}, /* later */
        {"yesterday", 1700000000000LL},
    };
    char text[256];
    struct cc_mail m;
    struct cc_nev ev;
    const char *why;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(cases); i++) {
        snprintf(text, sizeof(text), fmt, cases[i].date);
        cr_assert_eq(parse_str(text, NULL, &m, &why), 0);
        cr_assert(cc_mail_map(&m, "email", 1700000000000LL, &ev));
        cr_assert_eq(ev.ts, cases[i].want, "%s: %lld", cases[i].date,
                     (long long)ev.ts);
    }
}

Test(mail, long_ids_are_hashed_consistently) {
    char id[400], text[1200], want[CC_ID_MAX + 1];
    struct cc_mail a, b;
    struct cc_nev ev;
    const char *why;

    memset(id, 'k', 300);
    memcpy(id + 300, "@long.example", 14);
    snprintf(text, sizeof(text), "From: a@b.example\nMessage-ID: <%s>\n\n", id);
    cr_assert_eq(parse_str(text, NULL, &a, &why), 0);
    cr_assert(a.has_message_id);
    cr_assert_eq(strncmp(a.id, "mid:", 4), 0);
    cr_assert_eq(strlen(a.id), 4 + 64);
    snprintf(text, sizeof(text),
             "From: c@d.example\nMessage-ID: <x@d.example>\n"
             "In-Reply-To: <%s>\nReferences: <%s>\n\n",
             id, id);
    cr_assert_eq(parse_str(text, NULL, &b, &why), 0);
    snprintf(want, sizeof(want), "%s", a.id);
    cr_assert_str_eq(b.in_reply_to, want);
    cr_assert(cc_mail_map(&b, "email", 1, &ev));
    cr_assert(cc_str_eq(ev.reply_to, want));
    cr_assert(cc_str_eq(ev.contact, want));
}

Test(mail, digest_id_without_message_id) {
    static const char text[] = "From: a@b.example\nSubject: x\n\nbody\n";
    static const char other[] = "From: a@b.example\nSubject: x\n\nbody!\n";
    struct cc_mail a, b;
    const char *why;

    cr_assert_eq(parse_str(text, NULL, &a, &why), 0);
    cr_assert_eq(parse_str(text, NULL, &b, &why), 0);
    cr_assert_str_eq(a.id, b.id);
    cr_assert_eq(parse_str(other, NULL, &b, &why), 0);
    cr_assert_str_neq(a.id, b.id);
    /* "<a b@c>" is not an id: the digest stands in. */
    cr_assert_eq(
        parse_str("From: a@b.example\nMessage-ID: <a b@c>\n\n", NULL, &a, &why),
        0);
    cr_assert_not(a.has_message_id);
    cr_assert_eq(strncmp(a.id, "mail:", 5), 0);
}

Test(mail, subject_cut_on_a_character_boundary) {
    char text[600], subj[400];
    struct cc_mail m;
    const char *why;
    size_t i, o = 0;

    subj[o++] = 'a';
    for (i = 0; i < 150; i++) {
        memcpy(subj + o, "é", 2);
        o += 2;
    }
    subj[o] = '\0';
    snprintf(text, sizeof(text), "From: a@b.example\nSubject:  %s\t\r\n\n",
             subj);
    cr_assert_eq(parse_str(text, NULL, &m, &why), 0);
    cr_assert_eq(strlen(m.subject), 127);
    cr_assert(utf8_ok(m.subject));
    /* Control characters and runs of white space fold to one space. */
    cr_assert_eq(parse_str("From: a@b.example\nSubject: a\x01\x02 b  \t c \n\n",
                           NULL, &m, &why),
                 0);
    cr_assert_str_eq(m.subject, "a b c");
}

Test(mail, support_list) {
    struct cc_mail_support s;
    char err[256];

    support(&s, " A@x.example,b@Y.example\tc@z.example , ");
    cr_assert_eq(s.n, 3);
    cr_assert_str_eq(s.addr[0], "a@x.example");
    cr_assert_str_eq(cc_mail_support_find(&s, "B@y.EXAMPLE"), "b@y.example");
    cr_assert_null(cc_mail_support_find(&s, "d@z.example"));
    support(&s, "");
    cr_assert_eq(s.n, 0);
    cr_assert_eq(cc_mail_support_parse(&s, "help", err, sizeof(err)),
                 CC_EINVAL);
    cr_assert_eq(cc_mail_support_parse(&s, "a@b@c", err, sizeof(err)),
                 CC_EINVAL);
}

/* ---- the Maildir watcher ----------------------------------------------------
 */

static struct {
    char root[64], md[128];
    uv_loop_t loop;
    uv_timer_t tick;
    struct thost h;
    struct cc_maildir_config cfg;
    /* A host in front of the engine: it can say "overloaded", and
     * records the ids submitted, in order. */
    struct cc_adapter_host host;
    bool overloaded;
    char ids[16][64];
    int nids;
    const char *unlink_on_submit; /* a path to remove at the first submit */
} F;

static void
tick_cb(uv_timer_t *t) {
    (void)t;
}

static void
front_submit(void *ctx, const void *msg, size_t len, struct cc_submit *out) {
    msgpack_unpacked u;
    msgpack_object id;

    (void)ctx;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, msg, len, NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 1 &&
        tmap_get(&u.data.via.array.ptr[0], "id", &id) &&
        id.type == MSGPACK_OBJECT_STR && F.nids < 16) {
        snprintf(F.ids[F.nids++], sizeof(F.ids[0]), "%.*s",
                 (int)id.via.str.size, id.via.str.ptr);
    }
    msgpack_unpacked_destroy(&u);
    if (F.unlink_on_submit != NULL) {
        cr_assert_eq(unlink(F.unlink_on_submit), 0);
        F.unlink_on_submit = NULL;
    }
    if (F.overloaded) {
        memset(out, 0, sizeof(*out));
        out->events = out->rejected = 1;
        out->overloaded = true;
        out->first_code = "limit";
        snprintf(out->first_reason, sizeof(out->first_reason),
                 "limit reached (test)");
        return;
    }
    thost_submit(&F.h, msg, len, out);
}

static uint64_t
front_now(void *ctx) {
    (void)ctx;
    return F.h.now;
}

static void
md_setup(void) {
    memset(&F, 0, sizeof(F));
    snprintf(F.root, sizeof(F.root), "/tmp/mail_test.XXXXXX");
    cr_assert_not_null(mkdtemp(F.root));
    snprintf(F.md, sizeof(F.md), "%s/Maildir", F.root);
    cr_assert_eq(mkdir(F.md, 0700), 0);
    cr_assert_eq(uv_loop_init(&F.loop), 0);
    /* Keeps UV_RUN_ONCE from sleeping long while work is in flight. */
    uv_timer_init(&F.loop, &F.tick);
    uv_timer_start(&F.tick, tick_cb, 5, 5);
    thost_init(&F.h, NULL, (uint64_t)wall_ms());
    F.host.submit = front_submit;
    F.host.now = front_now;
    F.host.ctx = NULL;
    snprintf(F.cfg.path, sizeof(F.cfg.path), "%s", F.md);
    snprintf(F.cfg.support, sizeof(F.cfg.support), "mary@example.net");
    snprintf(F.cfg.channel, sizeof(F.cfg.channel), "email");
    F.cfg.enabled = 1;
    F.cfg.max_message = 64 * 1024;
    /* An hour: a file found before that came from the fs event. */
    F.cfg.rescan_ms = 3600 * 1000;
}

static void
md_teardown(void) {
    uv_close((uv_handle_t *)&F.tick, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&F.loop), 0);
    thost_fini(&F.h);
    remove_tree(F.root);
}

TestSuite(maildir, .init = md_setup, .fini = md_teardown, .timeout = 60);

#define RUN_UNTIL(cond)                                                        \
    do {                                                                       \
        uint64_t dl_ = uv_hrtime() + 20ULL * 1000 * 1000 * 1000;               \
        while (!(cond)) {                                                      \
            cr_assert(uv_hrtime() < dl_, "timed out waiting for %s", #cond);   \
            uv_run(&F.loop, UV_RUN_ONCE);                                      \
        }                                                                      \
    } while (0)

static struct cc_maildir_counters
ctr(const struct cc_maildir *m) {
    struct cc_maildir_counters c;

    cc_maildir_counters(m, &c);
    return c;
}

/* Scanned at least once and nothing queued or in flight. */
static bool
settled(const struct cc_maildir *m) {
    struct cc_maildir_counters c = ctr(m);

    return c.scans >= 1 && c.pending == 0;
}

static void
put_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[512];
    int fd;

    snprintf(path, sizeof(path), "%s/%s/%s", F.md, dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void
put_corpus(const char *dir, const char *name, const char *rel) {
    char path[512];
    size_t len;
    char *buf;

    snprintf(path, sizeof(path), "%s/%s", CORPUS, rel);
    buf = read_file(path, &len);
    put_file(dir, name, buf, len);
    free(buf);
}

/* As an MTA delivers: written in tmp/, renamed into new/. */
static void
deliver(const char *name, const char *rel) {
    char from[512], to[512];

    put_corpus("tmp", name, rel);
    snprintf(from, sizeof(from), "%s/tmp/%s", F.md, name);
    snprintf(to, sizeof(to), "%s/new/%s", F.md, name);
    cr_assert_eq(rename(from, to), 0);
}

static void
mkdir_sub(const char *sub) {
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", F.md, sub);
    cr_assert_eq(mkdir(path, 0700), 0, "%s: %s", path, strerror(errno));
}

static bool
exists(const char *dir, const char *name) {
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s/%s", F.md, dir, name);
    return lstat(path, &st) == 0;
}

static int
count_entries(const char *dir) {
    char path[512];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "%s/%s", F.md, dir);
    d = opendir(path);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static int
count_all(void) {
    return count_entries("new") + count_entries("cur") + count_entries("tmp") +
           count_entries("quarantine");
}

static struct cc_maildir *
md_start(void) {
    struct cc_maildir *m;
    char err[256];

    cr_assert_eq(cc_maildir_new(&m, &F.loop, &F.cfg, &F.host, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cc_maildir_start(m, err, sizeof(err)), 0, "%s", err);
    return m;
}

static void
done_cb(void *arg) {
    *(bool *)arg = true;
}

static void
md_stop(struct cc_maildir *m) {
    bool done = false;

    cc_maildir_close(m, done_cb, &done);
    RUN_UNTIL(done);
    cc_maildir_free(m);
}

static const char auto_reply[] = "From: ann@example.org\r\n"
                                 "To: mary@example.net\r\n"
                                 "Subject: Out of office\r\n"
                                 "Auto-Submitted: auto-replied\r\n"
                                 "Message-ID: <ooo1@example.org>\r\n"
                                 "\r\nI am away.\r\n";

/* The Maildir of the first two tests: new/ holds a message, garbage, an
 * over-size message, an auto-reply and a hidden file; tmp/ a delivery in
 * progress. */
static void
fill_maildir(void) {
    static const char garbage[] = "\x01\x02 not mail at all\n\xff\xfe\n";
    char *big = malloc(70 * 1024);
    size_t i, n;

    mkdir_sub("new");
    mkdir_sub("tmp");
    put_corpus("new", "1700000001.M1P1.test", "rfc2822/example05.eml");
    put_file("new", "1700000002.M2P1.test", garbage, sizeof(garbage) - 1);
    n = (size_t)snprintf(big, 70 * 1024,
                         "From: big@example.org\r\nSubject: big\r\n"
                         "Message-ID: <big@example.org>\r\n\r\n");
    for (i = n; i < 70 * 1024; i++)
        big[i] = (i % 77 == 0) ? '\n' : 'x';
    put_file("new", "1700000003.M3P1.test", big, 70 * 1024);
    free(big);
    put_file("new", "1700000004.M4P1.test", auto_reply, strlen(auto_reply));
    put_file("new", ".hidden", "x", 1);
    put_file("tmp", "1700000009.M9P1.test", "From: half", 10);
}

Test(maildir, files_at_start_then_fs_event) {
    struct cc_maildir *m;
    struct cc_maildir_counters c;
    const struct cc_adapter_stats *st;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    const char *why = NULL;
    int before;

    fill_maildir();
    before = count_all() + 1; /* and one delivered later */
    m = md_start();
    RUN_UNTIL(settled(m) && cc_maildir_stats(m)->received == 4);
    c = ctr(m);
    st = cc_maildir_stats(m);
    cr_assert_eq(st->mapped, 1);
    cr_assert_eq(st->ignored, 1);
    cr_assert_eq(c.auto_replies, 1);
    cr_assert_eq(c.bounces, 0);
    cr_assert_eq(c.quarantined, 2);
    cr_assert_eq(c.moved, 2);
    cr_assert_eq(cc_adapter_rejected(st, "not a mail message"), 1);
    cr_assert_eq(cc_adapter_rejected(st, "larger than [maildir] max_message"),
                 1);
    cr_assert(exists("cur", "1700000001.M1P1.test:2,S"));
    cr_assert(exists("cur", "1700000004.M4P1.test:2,S"));
    cr_assert(exists("quarantine", "1700000002.M2P1.test"));
    cr_assert(exists("quarantine", "1700000003.M3P1.test"));
    cr_assert(exists("new", ".hidden"));
    cr_assert_eq(count_entries("new"), 1);
    /* The delivery in progress in tmp/ is the MTA's. */
    cr_assert(exists("tmp", "1700000009.M9P1.test"));
    cr_assert_eq(F.nids, 1);
    cr_assert_str_eq(F.ids[0], "1234@local.machine.example");

    /* Mary's answer arrives while the watcher runs. */
    deliver("1700000005.M5P1.test", "rfc2822/example06.eml");
    RUN_UNTIL(cc_maildir_stats(m)->received == 5 && ctr(m).pending == 0);
    c = ctr(m);
    cr_assert_eq(c.scans, 1, "found by the fs event, not by a scan");
    cr_assert_eq(c.moved, 3);
    cr_assert(exists("cur", "1700000005.M5P1.test:2,S"));
    cr_assert_eq(cc_maildir_stats(m)->mapped, 2);
    cr_assert_eq(F.h.last.accepted, 1);
    cr_assert_eq(count_all(), before, "nothing is deleted");

    /* One conversation: John's message and Mary's answer. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cr_assert_eq(cc_engine_pack_conversation_by_ident(
                     F.h.e, CC_IDENT_EMAIL, cc_str_of("jdoe@machine.example"),
                     &pk, &why),
                 0);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(tmap_int(&u.data, "messages_in"), 1);
    cr_assert_eq(tmap_int(&u.data, "messages_out"), 1);
    cr_assert_eq(tmap_int(&u.data, "contacts"), 1);
    msgpack_unpacked_destroy(&u);

    /* The stats map. */
    msgpack_sbuffer_clear(&sb);
    cc_maildir_pack_stats(m, &pk);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(tmap_int(&u.data, "received"), 5);
    cr_assert_eq(tmap_int(&u.data, "quarantined"), 2);
    cr_assert_eq(tmap_int(&u.data, "auto_replies"), 1);
    cr_assert_eq(tmap_int(&u.data, "bounces"), 0);
    cr_assert_eq(tmap_int(&u.data, "pending"), 0);
    cr_assert_eq(tmap_int(&u.data, "reasons/not a mail message"), 1);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    md_stop(m);
}

Test(maildir, restart_reads_nothing_again) {
    struct cc_maildir *m;
    uint32_t submits;
    int before;

    fill_maildir();
    m = md_start();
    RUN_UNTIL(settled(m) && cc_maildir_stats(m)->received == 4);
    md_stop(m);
    submits = F.h.submits;
    before = count_all();

    m = md_start();
    RUN_UNTIL(settled(m));
    cr_assert_eq(cc_maildir_stats(m)->received, 0);
    cr_assert_eq(F.h.submits, submits);
    cr_assert_eq(ctr(m).moved, 0);
    cr_assert_eq(count_all(), before);
    cr_assert(exists("cur", "1700000001.M1P1.test:2,S"));
    md_stop(m);
}

Test(maildir, delivery_order_by_name) {
    static const char fmt[] = "From: a@b.example\nMessage-ID: <%s>\n\n";
    static const char *const names[] = {
        "1700000010.M1.test", "999999999.M2.test", "1700000002.M3.test"};
    static const char *const ids[] = {"c@x", "a@x", "b@x"};
    struct cc_maildir *m;
    char text[128];
    size_t i;

    mkdir_sub("new");
    for (i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), fmt, ids[i]);
        put_file("new", names[i], text, strlen(text));
    }
    m = md_start();
    RUN_UNTIL(settled(m) && cc_maildir_stats(m)->received == 3);
    cr_assert_eq(F.nids, 3);
    cr_assert_str_eq(F.ids[0], "a@x");
    cr_assert_str_eq(F.ids[1], "b@x");
    cr_assert_str_eq(F.ids[2], "c@x");
    md_stop(m);
}

Test(maildir, engine_rejection_goes_to_quarantine) {
    struct cc_maildir *m;
    char from[512], to[512];

    snprintf(F.cfg.channel, sizeof(F.cfg.channel), "nosuch");
    F.cfg.rescan_ms = 200;
    mkdir_sub("new");
    put_corpus("new", "1700000001.M1.test", "rfc2822/example05.eml");
    m = md_start();
    RUN_UNTIL(settled(m) && cc_maildir_stats(m)->received == 1);
    cr_assert_eq(ctr(m).quarantined, 1);
    cr_assert_eq(
        cc_adapter_rejected(cc_maildir_stats(m), "event: unknown_channel"), 1);
    cr_assert(exists("quarantine", "1700000001.M1.test"));
    cr_assert_not(exists("new", "1700000001.M1.test"));

    /* An operator moves it back to try again: it is read again, though
     * it was just moved out under that name. */
    snprintf(from, sizeof(from), "%s/quarantine/1700000001.M1.test", F.md);
    snprintf(to, sizeof(to), "%s/new/1700000001.M1.test", F.md);
    cr_assert_eq(rename(from, to), 0);
    RUN_UNTIL(ctr(m).quarantined == 2 && ctr(m).pending == 0);
    cr_assert_eq(cc_maildir_stats(m)->received, 2);
    cr_assert(exists("quarantine", "1700000001.M1.test"));
    cr_assert_eq(count_entries("quarantine"), 1);
    md_stop(m);
}

Test(maildir, overloaded_stays_in_new_until_rescan) {
    struct cc_maildir *m;

    F.cfg.rescan_ms = 200;
    F.overloaded = true;
    mkdir_sub("new");
    put_corpus("new", "1700000001.M1.test", "rfc2822/example05.eml");
    put_corpus("new", "1700000002.M2.test", "rfc2822/example07.eml");
    m = md_start();
    RUN_UNTIL(ctr(m).deferred >= 1);
    /* Paused: the second file is not read while the engine is full. */
    cr_assert_eq(F.nids, 1);
    cr_assert_eq(cc_maildir_stats(m)->received, 0);
    cr_assert(exists("new", "1700000001.M1.test"));
    F.overloaded = false;
    RUN_UNTIL(ctr(m).moved == 2);
    cr_assert(exists("cur", "1700000001.M1.test:2,S"));
    cr_assert(exists("cur", "1700000002.M2.test:2,S"));
    cr_assert_eq(cc_maildir_stats(m)->received, 2);
    cr_assert_eq(cc_maildir_stats(m)->mapped, 2);
    cr_assert_str_eq(F.ids[F.nids - 2], "1234@local.machine.example");
    md_stop(m);
}

Test(maildir, vanished_file_is_skipped) {
    struct cc_maildir *m;
    char gone[512];

    mkdir_sub("new");
    put_corpus("new", "1700000001.M1.test", "rfc2822/example05.eml");
    put_corpus("new", "1700000002.M2.test", "rfc2822/example07.eml");
    /* Another reader takes the second file while the first is submitted:
     * both names were queued by the first scan. */
    snprintf(gone, sizeof(gone), "%s/new/1700000002.M2.test", F.md);
    F.unlink_on_submit = gone;
    m = md_start();
    RUN_UNTIL(settled(m) && ctr(m).moved == 1);
    cr_assert_eq(cc_maildir_stats(m)->received, 1);
    cr_assert_eq(ctr(m).quarantined, 0);
    cr_assert_eq(ctr(m).deferred, 0);
    cr_assert_eq(cc_maildir_stats(m)->rejected, 0);
    md_stop(m);
}

Test(maildir, never_replaces_a_file) {
    struct cc_maildir *m;
    char path[512];
    size_t len;
    char *buf;

    mkdir_sub("new");
    mkdir_sub("cur");
    put_file("cur", "1700000001.M1.test:2,S", "older", 5);
    put_corpus("new", "1700000001.M1.test", "rfc2822/example05.eml");
    /* A file with flags already: S joins them in order. */
    put_corpus("new", "1700000002.M2.test:2,FT", "rfc2822/example07.eml");
    m = md_start();
    RUN_UNTIL(settled(m) && ctr(m).moved == 2);
    snprintf(path, sizeof(path), "%s/cur/1700000001.M1.test:2,S", F.md);
    buf = read_file(path, &len);
    cr_assert_eq(len, 5);
    free(buf);
    cr_assert(exists("cur", "1700000001.M1.test.1:2,S"));
    cr_assert(exists("cur", "1700000002.M2.test:2,FST"));
    md_stop(m);
}

Test(maildir, links_and_folders_are_quarantined) {
    struct cc_maildir *m;
    char path[512];

    mkdir_sub("new");
    snprintf(path, sizeof(path), "%s/new/1700000001.link", F.md);
    cr_assert_eq(symlink("/etc/passwd", path), 0);
    snprintf(path, sizeof(path), "%s/new/1700000002.dir", F.md);
    cr_assert_eq(mkdir(path, 0700), 0);
    m = md_start();
    RUN_UNTIL(settled(m) && ctr(m).quarantined == 2);
    cr_assert_eq(cc_adapter_rejected(cc_maildir_stats(m), "not a regular file"),
                 2);
    cr_assert(exists("quarantine", "1700000001.link"));
    cr_assert(exists("quarantine", "1700000002.dir"));
    md_stop(m);
}

Test(maildir, start_errors) {
    struct cc_maildir *m;
    char err[256];

    /* Not a directory. */
    snprintf(F.cfg.path, sizeof(F.cfg.path), "%s/file", F.root);
    close(open(F.cfg.path, O_WRONLY | O_CREAT, 0600));
    cr_assert_eq(cc_maildir_new(&m, &F.loop, &F.cfg, &F.host, err, sizeof(err)),
                 0);
    cr_assert_eq(cc_maildir_start(m, err, sizeof(err)), CC_EINVAL);
    cr_assert_not_null(strstr(err, "not a directory"), "%s", err);
    md_stop(m);
    /* Missing. */
    snprintf(F.cfg.path, sizeof(F.cfg.path), "%s/none", F.root);
    cr_assert_eq(cc_maildir_new(&m, &F.loop, &F.cfg, &F.host, err, sizeof(err)),
                 0);
    cr_assert_eq(cc_maildir_start(m, err, sizeof(err)), CC_EINVAL);
    md_stop(m);
    /* A bad support list is a configuration error. */
    snprintf(F.cfg.support, sizeof(F.cfg.support), "support-team");
    cr_assert_eq(cc_maildir_new(&m, &F.loop, &F.cfg, &F.host, err, sizeof(err)),
                 CC_EINVAL);
    cr_assert_null(m);
    /* Started twice. */
    snprintf(F.cfg.path, sizeof(F.cfg.path), "%s", F.md);
    F.cfg.support[0] = '\0';
    m = md_start();
    cr_assert_eq(cc_maildir_start(m, err, sizeof(err)), CC_ESTATE);
    cr_assert(exists("new", "") && exists("cur", "") && exists("tmp", "") &&
              exists("quarantine", ""));
    md_stop(m);
}
