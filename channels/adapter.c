/*
 * The shared part of the channel adapters. See adapter.h.
 */
#include "adapter.h"

#include "engine.h"
#include "outbox.h"

/* An array32 header, written at the front once the count is known. */
#define ARRAY_HEAD 5

void
cc_evbuf_init(struct cc_evbuf *b) {
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, cc_sbuffer_write);
    b->n = 0;
}

void
cc_evbuf_fini(struct cc_evbuf *b) {
    msgpack_sbuffer_destroy(&b->sb);
}

void
cc_evbuf_reset(struct cc_evbuf *b) {
    msgpack_sbuffer_clear(&b->sb);
    b->n = 0;
}

static void
kv_str(msgpack_packer *pk, const char *k, struct cc_str v) {
    cc_pack_str(pk, k);
    cc_pack_strn(pk, v.p, v.n);
}

static void
pack_list(msgpack_packer *pk, const char *k, const struct cc_str *v,
          uint32_t n) {
    uint32_t i;

    cc_pack_str(pk, k);
    msgpack_pack_array(pk, n);
    for (i = 0; i < n; i++)
        cc_pack_strn(pk, v[i].p, v[i].n);
}

void
cc_evbuf_add(struct cc_evbuf *b, const struct cc_nev *ev) {
    static const char pad[ARRAY_HEAD] = {0};
    const struct cc_str *strs[] = {&ev->contact, &ev->queue,    &ev->agent,
                                   &ev->topic,   &ev->reply_to, &ev->state,
                                   &ev->reason};
    static const char *const names[] = {"contact",  "queue", "agent", "topic",
                                        "reply_to", "state", "reason"};
    msgpack_packer *pk = &b->pk;
    uint32_t n = 4, nid = 0, i;

    if (b->n == 0 && b->sb.size == 0)
        msgpack_sbuffer_write(&b->sb, pad, sizeof(pad));
    for (i = 0; i < CC_ARRAY_SIZE(strs); i++)
        n += strs[i]->n != 0;
    for (i = 0; i < CC_IDENT__COUNT; i++)
        nid += ev->ident[i].n != 0;
    n += nid != 0;
    n += ev->priority >= 0;
    n += ev->nqueues != 0;
    n += ev->ntags != 0;

    msgpack_pack_map(pk, n);
    kv_str(pk, "id", ev->id);
    cc_pack_str(pk, "ts");
    msgpack_pack_int64(pk, ev->ts);
    cc_pack_str(pk, "channel");
    cc_pack_str(pk, ev->channel);
    cc_pack_str(pk, "type");
    cc_pack_str(pk, ev->type);
    for (i = 0; i < CC_ARRAY_SIZE(strs); i++) {
        if (strs[i]->n != 0)
            kv_str(pk, names[i], *strs[i]);
    }
    if (nid != 0) {
        cc_pack_str(pk, "customer");
        msgpack_pack_map(pk, nid);
        for (i = 0; i < CC_IDENT__COUNT; i++) {
            /* cc_ident_key() gives "customer.phone": the key is after the
             * dot. */
            const char *k = cc_ident_key((enum cc_ident_kind)i);
            const char *dot = strchr(k, '.');
            if (ev->ident[i].n != 0)
                kv_str(pk, dot != NULL ? dot + 1 : k, ev->ident[i]);
        }
    }
    if (ev->priority >= 0) {
        cc_pack_str(pk, "priority");
        msgpack_pack_int(pk, ev->priority);
    }
    if (ev->nqueues != 0)
        pack_list(pk, "queues", ev->queues, ev->nqueues);
    if (ev->ntags != 0)
        pack_list(pk, "tags", ev->tags, ev->ntags);
    b->n++;
}

const void *
cc_evbuf_msg(struct cc_evbuf *b, size_t *len) {
    unsigned char *h;

    if (b->n == 0) {
        static const unsigned char empty = 0x90; /* fixarray of 0 */
        *len = 1;
        return &empty;
    }
    h = (unsigned char *)b->sb.data;
    h[0] = 0xdd;
    h[1] = (unsigned char)(b->n >> 24);
    h[2] = (unsigned char)(b->n >> 16);
    h[3] = (unsigned char)(b->n >> 8);
    h[4] = (unsigned char)b->n;
    *len = b->sb.size;
    return b->sb.data;
}

/* ---- counters ---------------------------------------------------------- */

static uint64_t *
reason_slot(struct cc_adapter_stats *st, const char *reason) {
    uint32_t i;

    for (i = 0; i < st->nreasons; i++) {
        if (st->why[i].reason == reason ||
            strcmp(st->why[i].reason, reason) == 0)
            return &st->why[i].n;
    }
    if (st->nreasons == CC_ADAPTER_REASONS - 1)
        reason = "other";
    for (i = 0; i < st->nreasons; i++) {
        if (strcmp(st->why[i].reason, reason) == 0)
            return &st->why[i].n;
    }
    st->why[i].reason = reason;
    st->why[i].n = 0;
    st->nreasons++;
    return &st->why[i].n;
}

void
cc_adapter_reject(struct cc_adapter_stats *st, const char *reason) {
    st->rejected++;
    (*reason_slot(st, reason))++;
}

uint64_t
cc_adapter_rejected(const struct cc_adapter_stats *st, const char *reason) {
    uint32_t i;

    for (i = 0; i < st->nreasons; i++) {
        if (strcmp(st->why[i].reason, reason) == 0)
            return st->why[i].n;
    }
    return 0;
}

/* "event: invalid_state" and so on, one static string per reason code. */
static const char *
event_reason(const char *code) {
    static char names[CC_R__COUNT][48];
    uint32_t r;

    for (r = 0; r < CC_R__COUNT; r++) {
        if (strcmp(cc_reason_name((enum cc_reason)r), code) != 0)
            continue;
        if (names[r][0] == '\0')
            snprintf(names[r], sizeof(names[r]), "event: %s", code);
        return names[r];
    }
    return "event: other";
}

void
cc_adapter_count_submit(struct cc_adapter_stats *st,
                        const struct cc_submit *r) {
    uint32_t i;

    if (r->error != NULL) {
        cc_adapter_reject(st, "message refused");
        return;
    }
    st->mapped += r->accepted + r->duplicates;
    for (i = 0; i < r->rejected; i++) {
        const char *code =
            i < CC_ARRAY_SIZE(r->codes) ? r->codes[i] : r->first_code;
        cc_adapter_reject(st, event_reason(code));
    }
}

void
cc_adapter_pack_stats(const struct cc_adapter_stats *st, msgpack_packer *pk,
                      uint32_t extra) {
    uint32_t i;

    msgpack_pack_map(pk, 6 + extra);
    cc_pack_str(pk, "received");
    msgpack_pack_uint64(pk, st->received);
    cc_pack_str(pk, "mapped");
    msgpack_pack_uint64(pk, st->mapped);
    cc_pack_str(pk, "ignored");
    msgpack_pack_uint64(pk, st->ignored);
    cc_pack_str(pk, "rejected");
    msgpack_pack_uint64(pk, st->rejected);
    cc_pack_str(pk, "reconnects");
    msgpack_pack_uint64(pk, st->reconnects);
    cc_pack_str(pk, "reasons");
    msgpack_pack_map(pk, st->nreasons);
    for (i = 0; i < st->nreasons; i++) {
        cc_pack_str(pk, st->why[i].reason);
        msgpack_pack_uint64(pk, st->why[i].n);
    }
}

bool
cc_looks_like_phone(const char *s, size_t n) {
    size_t i = 0, digits = 0;

    while (i < n && s[i] == ' ')
        i++;
    if (i < n && s[i] == '+')
        i++;
    for (; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')')
            return false;
    }
    return digits >= 7 && digits <= 15;
}

/* ---- the engine as a host ------------------------------------------------ */

void
cc_submit_from_report(const struct cc_ingest_report *r, struct cc_submit *out) {
    uint32_t i;

    memset(out, 0, sizeof(*out));
    out->events = r->events;
    out->accepted = r->accepted;
    out->duplicates = r->duplicates;
    out->rejected = r->rejected;
    out->error = r->error;
    for (i = 0; i < r->rejected; i++) {
        const struct cc_reject *rej = &r->rej[i].rej;
        /* Contacts close and memory comes back: retrying later helps.
         * Names and queues are never freed: it would not. */
        if (rej->code == CC_R_LIMIT && rej->detail != NULL &&
            (strstr(rej->detail, "max_contacts") != NULL ||
             strcmp(rej->detail, "out of memory") == 0))
            out->overloaded = true;
        if (i < CC_ARRAY_SIZE(out->codes))
            out->codes[i] = cc_reason_name(rej->code);
    }
    if (r->rejected != 0) {
        out->first_index = r->rej[0].index;
        out->first_code = cc_reason_name(r->rej[0].rej.code);
        cc_reject_format(&r->rej[0].rej, out->first_reason,
                         sizeof(out->first_reason));
    }
}
