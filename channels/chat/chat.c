/*
 * Chat webhooks: our own events written as JSON (POST /events) and
 * Chatwoot's webhook payloads (POST /chatwoot). docs/channels.md gives the
 * mapping field by field.
 */
#include "webhook.h"

#include "outbox.h"

#include <stdlib.h>

/* Chatwoot's X-Chatwoot-Timestamp may be at most this far from our clock,
 * so that a captured request cannot be replayed later. */
#define SIGNATURE_SKEW_S (5 * 60)

/* ---- our events as JSON ---------------------------------------------- */

void
cc_webhook_events(struct cc_webhook *w, const struct cc_http_req *req,
                  struct cc_http_resp *resp) {
    const struct cc_http_config *cfg = w->cfg;
    struct cc_submit r;
    char why[256];
    json_t *root;

    if (strcmp(req->method, "POST") != 0) {
        cc_adapter_reject(&w->st, "method not allowed");
        cc_resp_json(resp, 405, "use POST");
        return;
    }
    if (cfg->events_secret[0] != '\0' &&
        !cc_sig_ok(req->header(req, "X-Contactd-Signature"), cfg->events_secret,
                   req->body, req->len, "", 0, false)) {
        w->bad_signature++;
        cc_adapter_reject(&w->st, "bad signature");
        cc_resp_json(resp, 401, "X-Contactd-Signature missing or wrong");
        return;
    }
    root = cc_json_parse(req->body, req->len, cfg->max_depth, why, sizeof(why));
    if (root == NULL) {
        cc_adapter_reject(&w->st, "bad JSON");
        cc_resp_json(resp, 400, why);
        return;
    }
    if (!json_is_object(root) && !json_is_array(root)) {
        json_decref(root);
        cc_adapter_reject(&w->st, "not an event");
        cc_resp_json(resp, 400, "expected an event object or an array of them");
        return;
    }
    /* The engine's own decoder checks every key, as for NNG ingest. */
    cc_evbuf_reset(&w->eb);
    cc_json_pack(&w->eb.pk, root);
    json_decref(root);
    w->host->submit(w->host->ctx, w->eb.sb.data, w->eb.sb.size, &r);
    cc_evbuf_reset(&w->eb);
    cc_adapter_count_submit(&w->st, &r);
    cc_resp_submit(resp, &r);
}

/* ---- Chatwoot --------------------------------------------------------- */

/* Checks X-Chatwoot-Signature: "sha256=<hex>" of "<timestamp>.<body>" when
 * X-Chatwoot-Timestamp is sent, else of the body alone. */
static bool
chatwoot_signed(struct cc_webhook *w, const struct cc_http_req *req,
                const char **why) {
    const char *sig = req->header(req, "X-Chatwoot-Signature");
    const char *ts = req->header(req, "X-Chatwoot-Timestamp");
    const char *secret = w->cfg->chatwoot_secret;
    char prefix[32];
    long long t;
    char *end;
    int64_t now;

    if (sig == NULL) {
        *why = "X-Chatwoot-Signature missing";
        return false;
    }
    if (ts == NULL) {
        *why = "X-Chatwoot-Signature wrong";
        return cc_sig_ok(sig, secret, req->body, req->len, "", 0, false);
    }
    t = strtoll(ts, &end, 10);
    now = (int64_t)w->host->now(w->host->ctx) / 1000;
    if (*end != '\0' || end == ts || t <= 0 || t < now - SIGNATURE_SKEW_S ||
        t > now + SIGNATURE_SKEW_S) {
        *why = "X-Chatwoot-Timestamp missing, malformed or more than 5 "
               "minutes off";
        return false;
    }
    snprintf(prefix, sizeof(prefix), "%lld.", t);
    *why = "X-Chatwoot-Signature wrong";
    return cc_sig_ok(sig, secret, prefix, strlen(prefix), req->body, req->len,
                     false);
}

/* The customer's identifiers from a Chatwoot contact object: email and
 * phone number when they look like one, and the contact id as the chat
 * identifier "chatwoot:<id>". */
static void
chatwoot_customer(const json_t *who, struct cc_nev *ev, char *idbuf,
                  size_t idn) {
    char num[32];
    struct cc_str s;

    if (!json_is_object(who))
        return;
    s = cc_json_str(who, "email", NULL, 0);
    if (s.n != 0)
        ev->ident[CC_IDENT_EMAIL] = s;
    s = cc_json_str(who, "phone_number", NULL, 0);
    if (s.n != 0 && cc_looks_like_phone(s.p, s.n))
        ev->ident[CC_IDENT_PHONE] = s;
    s = cc_json_str(who, "id", num, sizeof(num));
    if (s.n != 0) {
        ev->ident[CC_IDENT_CHAT] =
            cc_strf(idbuf, idn, "chatwoot:%.*s", (int)s.n, s.p);
    }
}

/* A conversation payload: conversation_created, conversation_resolved or
 * conversation_status_changed. Returns false when it maps to nothing. */
static bool
chatwoot_conversation(struct cc_webhook *w, const json_t *root,
                      const char *event, int64_t now, const char **why) {
    char num[32], contact[64], id[160], chat[64];
    const json_t *meta = json_object_get(root, "meta");
    struct cc_str cid = cc_json_str(root, "id", num, sizeof(num));
    struct cc_str status = cc_json_str(root, "status", NULL, 0);
    int64_t ts = cc_json_time(json_object_get(root, "timestamp"), now);
    struct cc_nev ev;

    if (cid.n == 0) {
        *why = "conversation payload without id";
        return false;
    }
    cc_nev_init(&ev);
    ev.channel = w->cfg->chatwoot_channel;
    ev.ts = ts;
    ev.contact =
        cc_strf(contact, sizeof(contact), "chatwoot:%.*s", (int)cid.n, cid.p);
    if (strcmp(event, "conversation_created") == 0) {
        ev.type = "contact.open";
    } else if (strcmp(event, "conversation_resolved") == 0 ||
               (strcmp(event, "conversation_status_changed") == 0 &&
                cc_str_eq(status, "resolved"))) {
        ev.type = "conversation.resolve";
    } else {
        return false;
    }
    chatwoot_customer(json_object_get(meta, "sender"), &ev, chat, sizeof(chat));
    /* Chatwoot retries a delivery with the same body: the same id, so the
     * engine ignores the repeat. */
    ev.id = cc_strf(id, sizeof(id), "%.*s:%s:%lld", (int)ev.contact.n,
                    ev.contact.p, event, (long long)ts);
    cc_evbuf_add(&w->eb, &ev);
    return true;
}

/* message_created: incoming is message.in, outgoing message.out; private
 * notes, activity and template messages map to nothing. */
static bool
chatwoot_message(struct cc_webhook *w, const json_t *root, int64_t now,
                 const char **why) {
    char num[32], cnum[32], anum[32], contact[64], id[64], chat[64];
    char agent[96];
    const json_t *conv = json_object_get(root, "conversation");
    const json_t *sender = json_object_get(root, "sender");
    const json_t *type = json_object_get(root, "message_type");
    struct cc_str mid = cc_json_str(root, "id", num, sizeof(num));
    struct cc_str cid = cc_json_str(conv, "id", cnum, sizeof(cnum));
    bool in;
    struct cc_nev ev;

    if (json_is_true(json_object_get(root, "private")))
        return false;
    if (json_is_string(type))
        in = strcmp(json_string_value(type), "incoming") == 0;
    else if (json_is_integer(type))
        in = json_integer_value(type) == 0;
    else
        in = false;
    if (!in &&
        !(json_is_string(type) &&
          strcmp(json_string_value(type), "outgoing") == 0) &&
        !(json_is_integer(type) && json_integer_value(type) == 1))
        return false;
    if (mid.n == 0 || cid.n == 0) {
        *why = "message without id or conversation.id";
        return false;
    }
    cc_nev_init(&ev);
    ev.type = in ? "message.in" : "message.out";
    ev.channel = w->cfg->chatwoot_channel;
    ev.ts = cc_json_time(json_object_get(root, "created_at"), now);
    ev.id = cc_strf(id, sizeof(id), "chatwoot:msg:%.*s", (int)mid.n, mid.p);
    ev.contact =
        cc_strf(contact, sizeof(contact), "chatwoot:%.*s", (int)cid.n, cid.p);
    if (in) {
        chatwoot_customer(sender, &ev, chat, sizeof(chat));
    } else {
        struct cc_str a = cc_json_str(sender, "email", NULL, 0);
        if (a.n == 0) {
            struct cc_str aid = cc_json_str(sender, "id", anum, sizeof(anum));
            if (aid.n != 0) {
                a = cc_strf(agent, sizeof(agent), "chatwoot-agent-%.*s",
                            (int)aid.n, aid.p);
            }
        }
        ev.agent = a;
        chatwoot_customer(
            json_object_get(json_object_get(conv, "meta"), "sender"), &ev, chat,
            sizeof(chat));
    }
    cc_evbuf_add(&w->eb, &ev);
    return true;
}

void
cc_webhook_chatwoot(struct cc_webhook *w, const struct cc_http_req *req,
                    struct cc_http_resp *resp) {
    int64_t now = (int64_t)w->host->now(w->host->ctx);
    const char *why = NULL, *event;
    char jwhy[256];
    json_t *root;
    bool mapped;

    if (strcmp(req->method, "POST") != 0) {
        cc_adapter_reject(&w->st, "method not allowed");
        cc_resp_json(resp, 405, "use POST");
        return;
    }
    if (w->cfg->chatwoot_secret[0] != '\0' && !chatwoot_signed(w, req, &why)) {
        w->bad_signature++;
        cc_adapter_reject(&w->st, "bad signature");
        cc_resp_json(resp, 401, why);
        return;
    }
    root = cc_json_parse(req->body, req->len, w->cfg->max_depth, jwhy,
                         sizeof(jwhy));
    if (root == NULL) {
        cc_adapter_reject(&w->st, "bad JSON");
        cc_resp_json(resp, 400, jwhy);
        return;
    }
    event = json_string_value(json_object_get(root, "event"));
    if (event == NULL) {
        json_decref(root);
        cc_adapter_reject(&w->st, "no event");
        cc_resp_json(resp, 400, "expected an object with a string \"event\"");
        return;
    }
    cc_evbuf_reset(&w->eb);
    if (strcmp(event, "message_created") == 0)
        mapped = chatwoot_message(w, root, now, &why);
    else
        mapped = chatwoot_conversation(w, root, event, now, &why);
    if (!mapped && why != NULL) {
        json_decref(root);
        cc_adapter_reject(&w->st, "incomplete payload");
        cc_resp_json(resp, 400, why);
        return;
    }
    cc_webhook_submit(w, resp);
    json_decref(root);
}
