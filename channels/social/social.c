/*
 * Social webhooks: the X Account Activity API (GET /x for the CRC check,
 * POST /x for activity) and Facebook Messenger / Instagram (GET /messenger
 * for the subscription check, POST /messenger for messaging). Handles
 * become `platform:handle` identifiers. docs/channels.md gives the mapping
 * field by field.
 */
#include "webhook.h"

#include "tz.h"

#include <stdlib.h>

/* ---- X ------------------------------------------------------------------ */

/* "Sat Jul 13 02:27:54 +0000 2019", X's created_at, as ms; or fallback. */
static int64_t
x_time(const char *s, int64_t fallback) {
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4];
    int d, h, mi, sec, off, y;
    const char *m;

    if (s == NULL || sscanf(s, "%*3s %3s %d %d:%d:%d %d %d", mon, &d, &h, &mi,
                            &sec, &off, &y) != 7)
        return fallback;
    m = strstr(months, mon);
    if (m == NULL || (m - months) % 3 != 0 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || sec > 60)
        return fallback;
    return (cc_days_from_civil(y, (unsigned)((m - months) / 3 + 1),
                               (unsigned)d) *
                86400 +
            (int64_t)h * 3600 + mi * 60 + sec -
            (int64_t)(off / 100 * 3600 + off % 100 * 60)) *
           1000;
}

/* The text of a string holding a whole number of ms (X sends
 * timestamp_ms and created_timestamp as strings), or fallback. */
static int64_t
ms_string(const json_t *v, int64_t fallback) {
    const char *s = json_string_value(v);
    char *end;
    long long t;

    if (s == NULL)
        return cc_json_time(v, fallback);
    t = strtoll(s, &end, 10);
    return *end == '\0' && end != s && t > 0 ? t : fallback;
}

/* The account's own user id: the configured one, else the envelope's
 * for_user_id. */
static const char *
x_account(struct cc_webhook *w, const json_t *root) {
    if (w->cfg->x_account[0] != '\0')
        return w->cfg->x_account;
    return json_string_value(json_object_get(root, "for_user_id"));
}

/* One tweet of tweet_create_events. */
static void
x_tweet(struct cc_webhook *w, const json_t *t, const char *account,
        int64_t now) {
    char id[64], reply[64], contact[64], handle[80], agent[80];
    const json_t *user = json_object_get(t, "user");
    struct cc_str tid = cc_json_str(t, "id_str", NULL, 0);
    struct cc_str parent = cc_json_str(t, "in_reply_to_status_id_str", NULL, 0);
    struct cc_str uid = cc_json_str(user, "id_str", NULL, 0);
    struct cc_str name = cc_json_str(user, "screen_name", NULL, 0);
    struct cc_nev ev;
    bool own;

    /* A retweet asks nothing of anyone. */
    if (json_object_get(t, "retweeted_status") != NULL) {
        w->st.ignored++;
        return;
    }
    if (tid.n == 0 || uid.n == 0 || name.n == 0) {
        cc_adapter_reject(&w->st, "tweet without id_str or user");
        return;
    }
    own = account != NULL && cc_str_eq(uid, account);
    cc_nev_init(&ev);
    ev.type = own ? "message.out" : "message.in";
    ev.channel = w->cfg->x_channel;
    ev.ts = ms_string(
        json_object_get(t, "timestamp_ms"),
        x_time(json_string_value(json_object_get(t, "created_at")), now));
    /* The native ids, prefixed so that they cannot meet another
     * platform's: threading goes by id and reply_to. */
    ev.id = cc_strf(id, sizeof(id), "x:%.*s", (int)tid.n, tid.p);
    if (parent.n != 0) {
        ev.reply_to =
            cc_strf(reply, sizeof(reply), "x:%.*s", (int)parent.n, parent.p);
    }
    ev.contact = cc_strf(contact, sizeof(contact), "x:tweet:%.*s",
                         (int)(parent.n ? parent.n : tid.n),
                         parent.n ? parent.p : tid.p);
    if (own) {
        struct cc_str to = cc_json_str(t, "in_reply_to_screen_name", NULL, 0);
        ev.agent = cc_strf(agent, sizeof(agent), "x:%.*s", (int)name.n, name.p);
        if (to.n != 0) {
            ev.ident[CC_IDENT_SOCIAL] =
                cc_strf(handle, sizeof(handle), "x:%.*s", (int)to.n, to.p);
        }
    } else {
        ev.ident[CC_IDENT_SOCIAL] =
            cc_strf(handle, sizeof(handle), "x:%.*s", (int)name.n, name.p);
    }
    cc_evbuf_add(&w->eb, &ev);
}

/* A user's handle from the envelope's users map, else their id. */
static struct cc_str
x_handle(const json_t *users, struct cc_str uid, char *buf, size_t n) {
    char key[32];
    struct cc_str name = {"", 0};

    if (uid.n < sizeof(key)) {
        memcpy(key, uid.p, uid.n);
        key[uid.n] = '\0';
        name = cc_json_str(json_object_get(users, key), "screen_name", NULL, 0);
    }
    if (name.n == 0)
        name = uid;
    name = cc_strf(buf, n, "x:%.*s", (int)name.n, name.p);
    return name;
}

/* One event of direct_message_events. */
static void
x_dm(struct cc_webhook *w, const json_t *e, const json_t *users,
     const char *account, int64_t now) {
    char id[64], contact[64], handle[80], agent[80];
    const json_t *mc = json_object_get(e, "message_create");
    struct cc_str eid = cc_json_str(e, "id", NULL, 0);
    struct cc_str from = cc_json_str(mc, "sender_id", NULL, 0);
    struct cc_str to =
        cc_json_str(json_object_get(mc, "target"), "recipient_id", NULL, 0);
    struct cc_str cust;
    struct cc_nev ev;
    bool own;

    if (!cc_str_eq(cc_json_str(e, "type", NULL, 0), "message_create")) {
        w->st.ignored++;
        return;
    }
    if (eid.n == 0 || from.n == 0 || to.n == 0) {
        cc_adapter_reject(&w->st, "direct message without id or users");
        return;
    }
    own = account != NULL && cc_str_eq(from, account);
    cust = own ? to : from;
    cc_nev_init(&ev);
    ev.type = own ? "message.out" : "message.in";
    ev.channel = w->cfg->x_channel;
    ev.ts = ms_string(json_object_get(e, "created_timestamp"), now);
    ev.id = cc_strf(id, sizeof(id), "x:dm:%.*s", (int)eid.n, eid.p);
    /* One direct-message thread per customer. */
    ev.contact =
        cc_strf(contact, sizeof(contact), "x:dm:%.*s", (int)cust.n, cust.p);
    ev.ident[CC_IDENT_SOCIAL] = x_handle(users, cust, handle, sizeof(handle));
    if (own)
        ev.agent = x_handle(users, from, agent, sizeof(agent));
    cc_evbuf_add(&w->eb, &ev);
}

/* GET /x?crc_token=T: {"response_token": "sha256=<base64 HMAC(T)>"}. */
static void
x_crc(struct cc_webhook *w, const struct cc_http_req *req,
      struct cc_http_resp *resp) {
    const char *token = req->arg(req, "crc_token");
    const char *secret = w->cfg->x_secret;
    unsigned char mac[CC_SHA256_LEN];
    char b64[64];

    if (token == NULL || token[0] == '\0') {
        cc_adapter_reject(&w->st, "no crc_token");
        cc_resp_json(resp, 400, "expected ?crc_token=");
        return;
    }
    cc_hmac_sha256(secret, strlen(secret), token, strlen(token), "", 0, mac);
    cc_base64(mac, sizeof(mac), b64);
    w->st.ignored++;
    resp->status = 200;
    resp->ctype = "application/json";
    resp->len = (size_t)snprintf(resp->body, sizeof(resp->body),
                                 "{\"response_token\":\"sha256=%s\"}", b64);
}

void
cc_webhook_x(struct cc_webhook *w, const struct cc_http_req *req,
             struct cc_http_resp *resp) {
    int64_t now = (int64_t)w->host->now(w->host->ctx);
    const json_t *tweets, *dms, *v;
    const char *account;
    char why[256];
    json_t *root;
    size_t i;

    if (strcmp(req->method, "GET") == 0) {
        x_crc(w, req, resp);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        cc_adapter_reject(&w->st, "method not allowed");
        cc_resp_json(resp, 405, "use GET (CRC) or POST");
        return;
    }
    if (!cc_sig_ok(req->header(req, "X-Twitter-Webhooks-Signature"),
                   w->cfg->x_secret, req->body, req->len, "", 0, true)) {
        w->bad_signature++;
        cc_adapter_reject(&w->st, "bad signature");
        cc_resp_json(resp, 401,
                     "x-twitter-webhooks-signature missing or wrong");
        return;
    }
    root =
        cc_json_parse(req->body, req->len, w->cfg->max_depth, why, sizeof(why));
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        cc_adapter_reject(&w->st, "bad JSON");
        cc_resp_json(resp, 400, root == NULL ? why : "expected an object");
        return;
    }
    account = x_account(w, root);
    cc_evbuf_reset(&w->eb);
    tweets = json_object_get(root, "tweet_create_events");
    dms = json_object_get(root, "direct_message_events");
    json_array_foreach(tweets, i, v) x_tweet(w, v, account, now);
    json_array_foreach(dms, i, v)
        x_dm(w, v, json_object_get(root, "users"), account, now);
    /* Favourites, follows, typing and the rest: nothing for the engine. */
    cc_webhook_submit(w, resp);
    json_decref(root);
}

/* ---- Messenger / Instagram ------------------------------------------------
 */

/* GET /messenger?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C */
static void
messenger_verify(struct cc_webhook *w, const struct cc_http_req *req,
                 struct cc_http_resp *resp) {
    const char *mode = req->arg(req, "hub.mode");
    const char *token = req->arg(req, "hub.verify_token");
    const char *challenge = req->arg(req, "hub.challenge");
    const char *want = w->cfg->messenger_verify;

    if (mode == NULL || strcmp(mode, "subscribe") != 0 || challenge == NULL) {
        cc_adapter_reject(&w->st, "bad verification request");
        cc_resp_json(resp, 400,
                     "expected hub.mode=subscribe and hub.challenge");
        return;
    }
    if (want[0] == '\0' || token == NULL || strcmp(token, want) != 0) {
        cc_adapter_reject(&w->st, "wrong verify_token");
        cc_resp_json(resp, 403, "hub.verify_token does not match");
        return;
    }
    w->st.ignored++;
    cc_resp_text(resp, 200, challenge, strlen(challenge));
}

/* One item of entry[].messaging. The page's conversation with a user is
 * one thread; the contact is "<platform>:<page>:<user>". */
static void
messenger_item(struct cc_webhook *w, const char *platform, struct cc_str page,
               const json_t *m, int64_t now) {
    char id[160], contact[160], handle[96], reply[160], agent[64];
    const json_t *msg = json_object_get(m, "message");
    const json_t *postback = json_object_get(m, "postback");
    struct cc_str from =
        cc_json_str(json_object_get(m, "sender"), "id", NULL, 0);
    struct cc_str to =
        cc_json_str(json_object_get(m, "recipient"), "id", NULL, 0);
    int64_t ts = cc_json_time(json_object_get(m, "timestamp"), now);
    bool echo = json_is_true(json_object_get(msg, "is_echo"));
    struct cc_str user = echo ? to : from, mid;
    const char *what;
    struct cc_nev ev;

    if (user.n == 0) {
        cc_adapter_reject(&w->st, "messaging item without sender");
        return;
    }
    cc_nev_init(&ev);
    ev.channel = w->cfg->messenger_channel;
    ev.ts = ts;
    ev.contact = cc_strf(contact, sizeof(contact), "%s:%.*s:%.*s", platform,
                         (int)page.n, page.p, (int)user.n, user.p);
    ev.ident[CC_IDENT_SOCIAL] = cc_strf(handle, sizeof(handle), "%s:%.*s",
                                        platform, (int)user.n, user.p);
    if (json_is_object(msg)) {
        ev.type = echo ? "message.out" : "message.in";
        mid = cc_json_str(msg, "mid", NULL, 0);
        what = "message";
        if (echo) {
            struct cc_str app =
                cc_json_str(msg, "app_id", agent, sizeof(agent));
            ev.agent = app.n != 0 ? app : cc_str_of("page");
        }
        /* A reply names the message it answers. */
        ev.reply_to =
            cc_json_str(json_object_get(msg, "reply_to"), "mid", NULL, 0);
        if (ev.reply_to.n != 0 && ev.reply_to.n < 150) {
            ev.reply_to = cc_strf(reply, sizeof(reply), "%s:%.*s", platform,
                                  (int)ev.reply_to.n, ev.reply_to.p);
        }
    } else if (json_is_object(postback)) {
        /* A button the user tapped: a message from them, its title the
         * topic. */
        ev.type = "message.in";
        mid = cc_json_str(postback, "mid", NULL, 0);
        ev.topic = cc_json_str(postback, "title", NULL, 0);
        if (ev.topic.n > 128)
            ev.topic.n = 0;
        what = "postback";
    } else if (json_object_get(m, "pass_thread_control") != NULL) {
        /* The handover protocol: a bot passing the thread on is the start
         * of the human contact; taking it back ends it. */
        ev.type = "contact.open";
        mid.n = 0;
        what = "pass";
    } else if (json_object_get(m, "take_thread_control") != NULL) {
        ev.type = "contact.close";
        mid.n = 0;
        what = "take";
    } else {
        /* read, delivery, referral, request_thread_control, optin, ... */
        w->st.ignored++;
        return;
    }
    if (mid.n != 0 && mid.n < 140)
        ev.id = cc_strf(id, sizeof(id), "%s:%.*s", platform, (int)mid.n, mid.p);
    else
        ev.id = cc_strf(id, sizeof(id), "%s:%.*s:%s:%lld", platform,
                        (int)user.n, user.p, what, (long long)ts);
    cc_evbuf_add(&w->eb, &ev);
}

void
cc_webhook_messenger(struct cc_webhook *w, const struct cc_http_req *req,
                     struct cc_http_resp *resp) {
    int64_t now = (int64_t)w->host->now(w->host->ctx);
    const json_t *entry, *e, *m;
    const char *object, *platform;
    char why[256], pnum[32];
    json_t *root;
    size_t i, j;

    if (strcmp(req->method, "GET") == 0) {
        messenger_verify(w, req, resp);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        cc_adapter_reject(&w->st, "method not allowed");
        cc_resp_json(resp, 405, "use GET (verification) or POST");
        return;
    }
    if (!cc_sig_ok(req->header(req, "X-Hub-Signature-256"),
                   w->cfg->messenger_secret, req->body, req->len, "", 0,
                   false)) {
        w->bad_signature++;
        cc_adapter_reject(&w->st, "bad signature");
        cc_resp_json(resp, 401, "X-Hub-Signature-256 missing or wrong");
        return;
    }
    root =
        cc_json_parse(req->body, req->len, w->cfg->max_depth, why, sizeof(why));
    object = json_string_value(json_object_get(root, "object"));
    entry = json_object_get(root, "entry");
    if (root == NULL || object == NULL || !json_is_array(entry)) {
        cc_adapter_reject(&w->st,
                          root == NULL ? "bad JSON" : "not an envelope");
        cc_resp_json(resp, 400,
                     root == NULL
                         ? why
                         : "expected {\"object\": ..., \"entry\": [...]}");
        json_decref(root);
        return;
    }
    if (strcmp(object, "page") == 0)
        platform = "facebook";
    else if (strcmp(object, "instagram") == 0)
        platform = "instagram";
    else {
        json_decref(root);
        w->st.ignored++;
        cc_resp_json(resp, 200, NULL);
        return;
    }
    cc_evbuf_reset(&w->eb);
    json_array_foreach(entry, i, e) {
        struct cc_str page = cc_json_str(e, "id", pnum, sizeof(pnum));
        json_array_foreach(json_object_get(e, "messaging"), j, m)
            messenger_item(w, platform, page, m, now);
        /* standby: the thread belongs to another app (a bot); its messages
         * are that app's conversation, not a human contact yet. */
        w->st.ignored += json_array_size(json_object_get(e, "standby"));
    }
    cc_webhook_submit(w, resp);
    json_decref(root);
}
