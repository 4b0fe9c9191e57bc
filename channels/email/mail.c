/*
 * One mail message: parsing with GMime, classification and the event it
 * maps to. See mail.h.
 *
 * Only the header block is handed to GMime. The engine takes no bodies,
 * and a message's MIME tree is where hostile input lives (nesting deep
 * enough to exhaust a stack, bodies of megabytes to decode): the top-level
 * Content-Type, the one thing of the body we need, is a header.
 */
#include "mail.h"

#include <gmime/gmime.h>
#include <mbedtls/sha256.h>
#include <pthread.h>
#include <strings.h>

static pthread_once_t mail_once = PTHREAD_ONCE_INIT;

static void
mail_init_once(void) {
    g_mime_init();
}

/* ---- small text helpers -------------------------------------------------- */

static char
ascii_lower(char c) {
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k;
    uint32_t cp;

    while (i < n) {
        k = cc_utf8_seq(p + i, n - i, &cp);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* Copies s into out (cap bytes) when it fits; false otherwise. */
static bool
copy_fit(char *out, size_t cap, const char *s) {
    size_t n = strlen(s);

    if (n + 1 > cap)
        return false;
    memcpy(out, s, n + 1);
    return true;
}

static void
hex_sha256(const void *buf, size_t len, char out[65]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char md[32];
    int rc, i;

    rc = mbedtls_sha256_ret(buf, len, md, 0);
    CC_ASSERT(rc == 0);
    for (i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

/*
 * A usable address is one the engine takes as customer.email and a person
 * could write to: exactly one '@' with text on both sides, no white space,
 * control characters, commas or angle brackets, valid UTF-8 (RFC 6532
 * allows it), and short enough for an identifier. GMime's lenient parser
 * hands back whatever stood in the header; this is the filter.
 */
static bool
addr_usable(const char *a) {
    size_t n = strlen(a), i, at = 0, nat = 0;

    if (n == 0 || n > CC_IDENT_MAX)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '@') {
            at = i;
            nat++;
        } else if (c <= ' ' || c == 127 || c == '<' || c == '>' || c == ',' ||
                   c == ';' || c == '"') {
            return false;
        }
    }
    return nat == 1 && at != 0 && at != n - 1 && utf8_valid(a, n);
}

/* Whether the local part of addr (all of it without an '@') is name,
 * ignoring case: "MAILER-DAEMON@host" and a bare "MAILER-DAEMON". */
static bool
local_part_is(const char *addr, const char *name) {
    size_t n = strlen(name), i;

    for (i = 0; i < n; i++) {
        if (ascii_lower(addr[i]) != name[i])
            return false;
    }
    return addr[n] == '@' || addr[n] == '\0';
}

/* The first word of a header value, lower-cased, into out: "auto-replied"
 * of "Auto-Replied; owner-email=..." or of " auto-replied (vacation)". */
static void
first_word(const char *v, char *out, size_t cap) {
    size_t i = 0;

    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
        v++;
    while (*v != '\0' && *v != ';' && *v != '(' && *v != ' ' && *v != '\t' &&
           *v != '\r' && *v != '\n' && *v != ',' && i + 1 < cap)
        out[i++] = ascii_lower(*v++);
    out[i] = '\0';
}

/*
 * Folds a decoded header text into out (at most cap - 1 bytes and a NUL):
 * runs of white space and control characters (C0, DEL and C1) become one
 * space, bytes that are not UTF-8 are dropped, the ends are trimmed, and
 * the text stops before the first character that would not fit whole.
 */
static void
fold_text(const char *in, char *out, size_t cap) {
    const unsigned char *p = (const unsigned char *)in;
    size_t n = strlen(in), i = 0, o = 0, k;
    bool space = false;
    uint32_t cp;

    while (i < n) {
        k = cc_utf8_seq(p + i, n - i, &cp);
        if (k == 0) {
            i++;
            continue;
        }
        if (cp <= 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||
            cp == 0xa0 || cp == 0x2028 || cp == 0x2029) {
            space = o != 0;
            i += k;
            continue;
        }
        if (o + (space ? 1 : 0) + k > cap - 1)
            break;
        if (space)
            out[o++] = ' ';
        space = false;
        memcpy(out + o, p + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
}

/* ---- message ids ------------------------------------------------------- */

/*
 * The form an id is sent in (mail.h): out receives it and true is
 * returned, or false for an id that is no id at all (empty, or holding
 * white space, control characters or angle brackets: what is left of
 * "<a b@c>" or "<>" after GMime took the brackets off).
 */
static bool
id_form(const char *raw, char out[CC_ID_MAX + 1]) {
    size_t n = strlen(raw), i;
    char hex[65];

    if (n == 0)
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c <= ' ' || c == 127 || c == '<' || c == '>')
            return false;
    }
    if (n <= CC_ID_MAX && utf8_valid(raw, n)) {
        memcpy(out, raw, n + 1);
        return true;
    }
    hex_sha256(raw, n, hex);
    snprintf(out, CC_ID_MAX + 1, "mid:%s", hex);
    return true;
}

/* Adds the valid ids of one References or In-Reply-To value: the first
 * into first (when still empty), each into last; returns how many. */
static uint32_t
collect_ids(GMimeParserOptions *opt, const char *value, char *first,
            char *last) {
    GMimeReferences *refs;
    char id[CC_ID_MAX + 1];
    uint32_t n = 0;
    int i, len;

    if (value == NULL)
        return 0;
    refs = g_mime_references_parse(opt, value);
    if (refs == NULL)
        return 0;
    len = g_mime_references_length(refs);
    for (i = 0; i < len; i++) {
        if (!id_form(g_mime_references_get_message_id(refs, i), id))
            continue;
        if (first[0] == '\0')
            memcpy(first, id, strlen(id) + 1);
        if (last != NULL)
            memcpy(last, id, strlen(id) + 1);
        n++;
    }
    g_mime_references_free(refs);
    return n;
}

/* ---- addresses --------------------------------------------------------- */

/* Calls fn on each mailbox of list, group members included, until it
 * returns true. */
typedef bool mail_addr_fn(const char *addr, void *arg);

static bool
each_mailbox(InternetAddressList *list, mail_addr_fn *fn, void *arg,
             int depth) {
    int i, n;

    if (list == NULL)
        return false;
    n = internet_address_list_length(list);
    for (i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            const char *a =
                internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            if (a != NULL && fn(a, arg))
                return true;
        } else if (INTERNET_ADDRESS_IS_GROUP(ia) && depth < 2) {
            /* RFC 5322 groups do not nest; GMime's parser may. */
            if (each_mailbox(internet_address_group_get_members(
                                 INTERNET_ADDRESS_GROUP(ia)),
                             fn, arg, depth + 1))
                return true;
        }
    }
    return false;
}

struct addr_pick {
    char *out;                          /* CC_IDENT_MAX + 1 bytes */
    const struct cc_mail_support *skip; /* support addresses to pass by */
};

static bool
pick_usable_cb(const char *addr, void *arg) {
    struct addr_pick *p = arg;

    if (!addr_usable(addr))
        return false;
    if (p->skip != NULL && cc_mail_support_find(p->skip, addr) != NULL)
        return false;
    return copy_fit(p->out, CC_IDENT_MAX + 1, addr);
}

static bool
first_mailbox_cb(const char *addr, void *arg) {
    copy_fit(arg, CC_IDENT_MAX + 1, addr);
    return true;
}

static void
pick_usable(InternetAddressList *list, const struct cc_mail_support *skip,
            char *out) {
    struct addr_pick p = {out, skip};

    out[0] = '\0';
    each_mailbox(list, pick_usable_cb, &p, 0);
}

/*
 * The first usable address among the words of a header value, for a From
 * GMime could not read as an address list ("Big Bug bb@bug.com": a name
 * without the angle brackets). out: CC_IDENT_MAX + 1 bytes.
 */
static void
salvage_address(const char *v, char *out) {
    static const char seps[] = " \t\r\n,;<>()\"";
    char tok[CC_IDENT_MAX + 1];
    size_t n;

    out[0] = '\0';
    if (v == NULL)
        return;
    for (;;) {
        v += strspn(v, seps);
        if (*v == '\0')
            return;
        n = strcspn(v, seps);
        if (n <= CC_IDENT_MAX) {
            memcpy(tok, v, n);
            tok[n] = '\0';
            if (addr_usable(tok)) {
                memcpy(out, tok, n + 1);
                return;
            }
        }
        v += n;
    }
}

/* ---- the support list --------------------------------------------------- */

int
cc_mail_support_parse(struct cc_mail_support *s, const char *list, char *err,
                      size_t errlen) {
    const char *p = list, *start;
    char tok[CC_IDENT_MAX + 2];
    size_t n, i;

    memset(s, 0, sizeof(*s));
    if (list == NULL)
        return 0;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p == '\0')
            return 0;
        start = p;
        while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t' &&
               *p != '\r' && *p != '\n')
            p++;
        n = (size_t)(p - start);
        if (n > CC_NAME_MAX)
            return cc_errf(err, errlen, CC_EINVAL,
                           "[maildir] support: an address is longer than "
                           "%d bytes",
                           CC_NAME_MAX);
        memcpy(tok, start, n);
        tok[n] = '\0';
        if (!addr_usable(tok))
            return cc_errf(err, errlen, CC_EINVAL,
                           "[maildir] support: '%s' is not an address "
                           "(one '@' with text on both sides)",
                           tok);
        if (s->n == CC_MAIL_SUPPORT_MAX)
            return cc_errf(err, errlen, CC_EINVAL,
                           "[maildir] support: more than %d addresses",
                           CC_MAIL_SUPPORT_MAX);
        for (i = 0; i <= n; i++)
            s->addr[s->n][i] = ascii_lower(tok[i]);
        s->n++;
    }
}

const char *
cc_mail_support_find(const struct cc_mail_support *s, const char *addr) {
    uint32_t i;

    if (s == NULL)
        return NULL;
    for (i = 0; i < s->n; i++) {
        if (strcasecmp(s->addr[i], addr) == 0)
            return s->addr[i];
    }
    return NULL;
}

/* ---- parsing ------------------------------------------------------------ */

/* The length of the header block: up to and including the line break
 * before the first empty line (CRLF or LF), or all of it without one. */
static size_t
header_len(const char *p, size_t n) {
    const char *nl = p, *end = p + n;

    if (n >= 1 && p[0] == '\n')
        return 0;
    if (n >= 2 && p[0] == '\r' && p[1] == '\n')
        return 0;
    for (;;) {
        nl = memchr(nl, '\n', (size_t)(end - nl));
        if (nl == NULL)
            break;
        nl++;
        if (nl < end && nl[0] == '\n')
            return (size_t)(nl - p);
        if (end - nl >= 2 && nl[0] == '\r' && nl[1] == '\n')
            return (size_t)(nl - p);
    }
    return n;
}

/* The value of the first header named name, as GMime decoded it, or
 * NULL. */
static const char *
header(GMimeMessage *msg, const char *name) {
    return g_mime_object_get_header(GMIME_OBJECT(msg), name);
}

/* What makes a message automatic (RFC 3834 and common practice), or NULL.
 * Sets *bounce for a delivery report. */
static const char *
automatic(GMimeMessage *msg, const char *from1, const char *sender,
          bool *bounce) {
    GMimeObject *part = g_mime_message_get_mime_part(msg);
    GMimeContentType *ct =
        part != NULL ? g_mime_object_get_content_type(part) : NULL;
    const char *v;
    char w[32];

    *bounce = true;
    if (ct != NULL && g_mime_content_type_is_type(ct, "multipart", "report")) {
        /* A read receipt (RFC 8098) is a report too, but not a failed
         * delivery: it is counted with the auto-replies. */
        v = g_mime_content_type_get_parameter(ct, "report-type");
        if (v == NULL || g_ascii_strcasecmp(v, "disposition-notification"))
            return "multipart/report";
        *bounce = false;
        return "read receipt";
    }
    if (local_part_is(from1, "mailer-daemon") ||
        local_part_is(sender, "mailer-daemon"))
        return "From MAILER-DAEMON";
    if (local_part_is(from1, "postmaster"))
        return "From postmaster";
    *bounce = false;
    v = header(msg, "Auto-Submitted");
    if (v != NULL) {
        first_word(v, w, sizeof(w));
        if (w[0] != '\0' && strcmp(w, "no") != 0)
            return "Auto-Submitted";
    }
    v = header(msg, "Precedence");
    if (v != NULL) {
        first_word(v, w, sizeof(w));
        if (!strcmp(w, "bulk") || !strcmp(w, "junk") ||
            !strcmp(w, "auto_reply"))
            return "Precedence";
    }
    v = header(msg, "X-Autoreply");
    if (v != NULL) {
        first_word(v, w, sizeof(w));
        if (strcmp(w, "no") != 0)
            return "X-Autoreply";
    }
    v = header(msg, "X-Autorespond");
    if (v != NULL) {
        first_word(v, w, sizeof(w));
        if (strcmp(w, "no") != 0)
            return "X-Autorespond";
    }
    /* The null reverse path: the delivery agent writes the envelope
     * sender here, and only reports and auto-replies are sent from <>
     * (RFC 5321 4.5.5, RFC 3834 3.3). */
    v = header(msg, "Return-Path");
    if (v != NULL) {
        while (*v == ' ' || *v == '\t')
            v++;
        if (v[0] == '<' && v[1] == '>')
            return "Return-Path <>";
    }
    return NULL;
}

/* Everything but the GMime objects' lifetime: see cc_mail_parse(). */
static int
read_message(GMimeMessage *msg, GMimeParserOptions *opt, const void *buf,
             size_t len, const struct cc_mail_support *sup, struct cc_mail *out,
             const char **why) {
    GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
    char from1[CC_IDENT_MAX + 1] = "", hex[65];
    const char *v, *agent;
    GDateTime *date;
    bool bounce;
    int i, nh;

    /* The first From mailbox as written (for MAILER-DAEMON without a
     * domain), then the first usable one. */
    each_mailbox(g_mime_message_get_from(msg), first_mailbox_cb, from1, 0);
    pick_usable(g_mime_message_get_from(msg), NULL, out->from);
    if (out->from[0] == '\0')
        salvage_address(header(msg, "From"), out->from);
    if (from1[0] == '\0')
        memcpy(from1, out->from, sizeof(from1));
    pick_usable(g_mime_message_get_sender(msg), NULL, out->sender);

    v = g_mime_message_get_message_id(msg);
    out->has_message_id = v != NULL && id_form(v, out->id);
    if (!out->has_message_id) {
        hex_sha256(buf, len, hex);
        snprintf(out->id, sizeof(out->id), "mail:%s", hex);
    }
    nh = g_mime_header_list_get_count(hl);
    for (i = 0; i < nh; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(h);
        if (g_ascii_strcasecmp(name, "References") == 0)
            out->nrefs += collect_ids(opt, g_mime_header_get_raw_value(h),
                                      out->ref_first, out->ref_last);
        else if (g_ascii_strcasecmp(name, "In-Reply-To") == 0 &&
                 out->in_reply_to[0] == '\0')
            collect_ids(opt, g_mime_header_get_raw_value(h), out->in_reply_to,
                        NULL);
    }
    v = g_mime_message_get_subject(msg);
    if (v != NULL)
        fold_text(v, out->subject, sizeof(out->subject));
    date = g_mime_message_get_date(msg);
    if (date != NULL)
        out->date_ms = (int64_t)g_date_time_to_unix(date) * 1000;

    out->automatic = automatic(msg, from1, out->sender, &bounce);
    if (out->automatic != NULL) {
        out->kind = bounce ? CC_MAIL_BOUNCE : CC_MAIL_AUTO_REPLY;
        return 0;
    }
    if (out->from[0] == '\0') {
        *why = "no usable From address";
        return CC_EPROTO;
    }
    agent = cc_mail_support_find(sup, out->from);
    if (agent == NULL) {
        out->kind = CC_MAIL_IN;
        memcpy(out->customer, out->from, sizeof(out->customer));
        return 0;
    }
    out->kind = CC_MAIL_OUT;
    copy_fit(out->agent, sizeof(out->agent), agent);
    pick_usable(g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO), sup,
                out->customer);
    if (out->customer[0] == '\0')
        pick_usable(g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC),
                    sup, out->customer);
    return 0;
}

int
cc_mail_parse(const void *buf, size_t len, const struct cc_mail_support *sup,
              struct cc_mail *out, const char **why) {
    static const char *fallback[] = {"utf-8", "windows-1252", NULL};
    GMimeParserOptions *opt;
    GMimeStream *stream;
    GMimeParser *parser;
    GMimeMessage *msg;
    size_t hlen;
    int rc;

    memset(out, 0, sizeof(*out));
    out->date_ms = CC_MAIL_NO_DATE;
    *why = NULL;
    if (len == 0) {
        *why = "empty file";
        return CC_EPROTO;
    }
    hlen = header_len(buf, len);
    if (hlen > CC_MAIL_HEADER_MAX) {
        *why = "header block larger than 1 MiB";
        return CC_EPROTO;
    }
    if (hlen == 0) {
        *why = "not a mail message";
        return CC_EPROTO;
    }
    pthread_once(&mail_once, mail_init_once);

    opt = g_mime_parser_options_new();
    g_mime_parser_options_set_fallback_charsets(opt, fallback);
    g_mime_parser_options_set_address_compliance_mode(
        opt, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_rfc2047_compliance_mode(
        opt, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(
        opt, GMIME_RFC_COMPLIANCE_LOOSE);
    stream = g_mime_stream_mem_new_with_buffer(buf, hlen);
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    msg = g_mime_parser_construct_message(parser, opt);
    if (msg == NULL) {
        *why = "not a mail message";
        rc = CC_EPROTO;
    } else {
        rc = read_message(msg, opt, buf, len, sup, out, why);
        g_object_unref(msg);
    }
    g_object_unref(parser);
    g_object_unref(stream);
    g_mime_parser_options_free(opt);
    return rc;
}

/* ---- mapping ------------------------------------------------------------- */

bool
cc_mail_map(const struct cc_mail *m, const char *channel, int64_t delivered_ms,
            struct cc_nev *ev) {
    if (m->kind != CC_MAIL_IN && m->kind != CC_MAIL_OUT)
        return false;
    cc_nev_init(ev);
    ev->type = m->kind == CC_MAIL_IN ? "message.in" : "message.out";
    ev->channel = channel;
    ev->id = cc_str_of(m->id);
    ev->ts = delivered_ms;
    if (m->date_ms != CC_MAIL_NO_DATE &&
        m->date_ms >= delivered_ms - CC_MAIL_DATE_BEFORE_MS &&
        m->date_ms <= delivered_ms + CC_MAIL_DATE_AFTER_MS)
        ev->ts = m->date_ms;
    /* The thread's root: References starts with it (RFC 5322 3.6.4 keeps
     * the first id when a long list is cut); a client that writes only
     * In-Reply-To names the parent, the best root it knows of; a message
     * that answers nothing starts a thread of its own. */
    if (m->nrefs != 0)
        ev->contact = cc_str_of(m->ref_first);
    else if (m->in_reply_to[0] != '\0')
        ev->contact = cc_str_of(m->in_reply_to);
    else
        ev->contact = cc_str_of(m->id);
    if (m->in_reply_to[0] != '\0')
        ev->reply_to = cc_str_of(m->in_reply_to);
    else if (m->nrefs != 0)
        ev->reply_to = cc_str_of(m->ref_last);
    ev->ident[CC_IDENT_EMAIL] = cc_str_of(m->customer);
    ev->topic = cc_str_of(m->subject);
    if (m->kind == CC_MAIL_OUT)
        ev->agent = cc_str_of(m->agent);
    return true;
}
