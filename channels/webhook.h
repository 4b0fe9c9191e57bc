/*
 * Webhook endpoints: what the HTTP server hands an endpoint and what the
 * endpoint answers, and the pieces every endpoint needs (signatures, JSON
 * limits, our events written as JSON). The endpoints themselves live with
 * their channel: chat/ (our events as JSON, Chatwoot) and social/ (X,
 * Messenger). An endpoint is a pure function of the request: it can be
 * tested without a socket.
 */
#ifndef CC_WEBHOOK_H
#define CC_WEBHOOK_H

#include "adapter.h"
#include "config.h"

#include <jansson.h>

/* A request whose body has been read whole. */
struct cc_http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query */
    const char *body;
    size_t len;
    /* A header (case-insensitive) or query argument, or NULL. */
    const char *(*header)(const struct cc_http_req *r, const char *name);
    const char *(*arg)(const struct cc_http_req *r, const char *name);
    void *ctx; /* for header() and arg() */
};

/* The answer: a status, a content type and a body the endpoint wrote. */
struct cc_http_resp {
    int status;
    const char *ctype;
    char body[1024];
    size_t len;
    unsigned retry_after; /* seconds, for 503; 0 for none */
    uint64_t wait;        /* sent once this journal record is durable */
};

/* Sets the answer to status with a JSON body {"error": why} (or, when why
 * is NULL, {"ok": true}). */
void cc_resp_json(struct cc_http_resp *resp, int status, const char *why);
/* Sets the answer to status with a plain-text body. */
void cc_resp_text(struct cc_http_resp *resp, int status, const char *text,
                  size_t len);
/* Answers for a submitted batch: 200 with the counts, 503 (retry after 1 s)
 * when the engine was overloaded, 422 with the first reason when events
 * were rejected, 400 when the message was refused; sent once the journal
 * holds the batch's record (resp->wait). */
void cc_resp_submit(struct cc_http_resp *resp, const struct cc_submit *r);

struct cc_webhook;
typedef void (*cc_webhook_fn)(struct cc_webhook *w,
                              const struct cc_http_req *req,
                              struct cc_http_resp *resp);

/* One endpoint: the path it answers, its counters and its own state. */
struct cc_webhook {
    const char *name; /* stats key: "events", "chatwoot", ... */
    const char *path; /* "/events", ... */
    cc_webhook_fn handle;
    const struct cc_http_config *cfg;
    const struct cc_adapter_host *host;
    struct cc_adapter_stats st;
    struct cc_evbuf eb;
    uint64_t bad_signature;
};

void cc_webhook_init(struct cc_webhook *w, const char *name, const char *path,
                     cc_webhook_fn handle, const struct cc_http_config *cfg,
                     const struct cc_adapter_host *host);
void cc_webhook_fini(struct cc_webhook *w);
/* Submits the endpoint's batch (if it holds events), counts the outcome and
 * answers; a batch of nothing answers 200 and counts the request ignored. */
void cc_webhook_submit(struct cc_webhook *w, struct cc_http_resp *resp);

/* The endpoints. */
void cc_webhook_events(struct cc_webhook *w, const struct cc_http_req *req,
                       struct cc_http_resp *resp);
void cc_webhook_chatwoot(struct cc_webhook *w, const struct cc_http_req *req,
                         struct cc_http_resp *resp);
void cc_webhook_x(struct cc_webhook *w, const struct cc_http_req *req,
                  struct cc_http_resp *resp);
void cc_webhook_messenger(struct cc_webhook *w, const struct cc_http_req *req,
                          struct cc_http_resp *resp);

/* Formats into buf (n bytes). The result, or an empty string when it does
 * not fit: an id built from an over-long native value is left out (and
 * the event refused for it), never cut short into another id. */
struct cc_str cc_strf(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- signatures ----------------------------------------------------------
 * HMAC-SHA256 with mbedtls (already installed with NNG). */
#define CC_SHA256_LEN 32
void cc_hmac_sha256(const char *key, size_t keylen, const void *a, size_t alen,
                    const void *b, size_t blen, unsigned char out[32]);
/* Whether sig ("sha256=<hex>" or "sha256=<base64>", as base64 says) is the
 * HMAC of the concatenation of a and b under key, compared in constant
 * time. */
bool cc_sig_ok(const char *sig, const char *key, const void *a, size_t alen,
               const void *b, size_t blen, bool base64);
/* Standard base64 of n bytes into out (at least 4 * ((n + 2) / 3) + 1). */
size_t cc_base64(const unsigned char *in, size_t n, char *out);

/* ---- JSON ------------------------------------------------------------- */

/* Parses body as JSON after checking its nesting is at most max_depth
 * (checked on the bytes, before the parser allocates anything). NULL with
 * why set on failure. */
json_t *cc_json_parse(const char *body, size_t len, uint64_t max_depth,
                      char *why, size_t whylen);
/* Packs a JSON value as MessagePack, key for key. */
void cc_json_pack(msgpack_packer *pk, const json_t *v);
/* A member as a string (a JSON number is written as its decimal text into
 * buf), or an empty string. */
struct cc_str cc_json_str(const json_t *obj, const char *key, char *buf,
                          size_t bufn);
/* A time: a number of seconds (or of ms when over 1e11), or an ISO 8601 /
 * "YYYY-MM-DD hh:mm:ss UTC" string, as ms; or fallback. */
int64_t cc_json_time(const json_t *v, int64_t fallback);

#endif
