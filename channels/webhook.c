/*
 * What the webhook endpoints share. See webhook.h.
 */
#include "webhook.h"

#include "outbox.h"
#include "tz.h"

#include <mbedtls/md.h>
#include <stdarg.h>
#include <time.h>

/* ---- answers ------------------------------------------------------------ */

/* Writes s into buf as a JSON string body (quotes added, specials
 * escaped); returns the bytes written. */
static size_t
json_quote(char *buf, size_t n, const char *s) {
    size_t o = 0;

    if (n < 3)
        return 0;
    buf[o++] = '"';
    for (; *s != '\0' && o + 8 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(buf + o, n - o, "\\u%04x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return o;
}

void
cc_resp_json(struct cc_http_resp *resp, int status, const char *why) {
    char q[768];

    resp->status = status;
    resp->ctype = "application/json";
    if (why == NULL) {
        resp->len =
            (size_t)snprintf(resp->body, sizeof(resp->body), "{\"ok\":true}");
        return;
    }
    json_quote(q, sizeof(q), why);
    resp->len =
        (size_t)snprintf(resp->body, sizeof(resp->body), "{\"error\":%s}", q);
}

void
cc_resp_text(struct cc_http_resp *resp, int status, const char *text,
             size_t len) {
    if (len > sizeof(resp->body))
        len = sizeof(resp->body);
    resp->status = status;
    resp->ctype = "text/plain";
    memcpy(resp->body, text, len);
    resp->len = len;
}

void
cc_resp_submit(struct cc_http_resp *resp, const struct cc_submit *r) {
    char q[256], why[320];

    /* Whatever the answer, it leaves once the journal holds the record. */
    resp->wait = r->wait;

    if (r->error != NULL && !r->overloaded) {
        cc_resp_json(resp, r->too_big ? 413 : 400, r->error);
        return;
    }
    if (r->overloaded) {
        snprintf(why, sizeof(why), "overloaded, retry later: %s",
                 r->error != NULL ? r->error : r->first_reason);
        cc_resp_json(resp, 503, why);
        resp->retry_after = 1;
        return;
    }
    resp->ctype = "application/json";
    if (r->rejected == 0) {
        resp->status = 200;
        resp->len = (size_t)snprintf(
            resp->body, sizeof(resp->body),
            "{\"accepted\":%u,\"duplicates\":%u,\"rejected\":[]}", r->accepted,
            r->duplicates);
        return;
    }
    json_quote(q, sizeof(q), r->first_reason);
    resp->status = 422;
    resp->len = (size_t)snprintf(
        resp->body, sizeof(resp->body),
        "{\"accepted\":%u,\"duplicates\":%u,\"rejected\":[{\"index\":%u,"
        "\"code\":\"%s\",\"reason\":%s}],\"rejected_count\":%u}",
        r->accepted, r->duplicates, r->first_index, r->first_code, q,
        r->rejected);
}

/* ---- endpoints ---------------------------------------------------------- */

void
cc_webhook_init(struct cc_webhook *w, const char *name, const char *path,
                cc_webhook_fn handle, const struct cc_http_config *cfg,
                const struct cc_adapter_host *host) {
    memset(w, 0, sizeof(*w));
    w->name = name;
    w->path = path;
    w->handle = handle;
    w->cfg = cfg;
    w->host = host;
    cc_evbuf_init(&w->eb);
}

void
cc_webhook_fini(struct cc_webhook *w) {
    cc_evbuf_fini(&w->eb);
}

void
cc_webhook_submit(struct cc_webhook *w, struct cc_http_resp *resp) {
    struct cc_submit r;
    const void *msg;
    size_t len;

    if (w->eb.n == 0) {
        w->st.ignored++;
        cc_resp_json(resp, 200, NULL);
        return;
    }
    msg = cc_evbuf_msg(&w->eb, &len);
    w->host->submit(w->host->ctx, msg, len, &r);
    cc_evbuf_reset(&w->eb);
    cc_adapter_count_submit(&w->st, &r);
    cc_resp_submit(resp, &r);
}

struct cc_str
cc_strf(char *buf, size_t n, const char *fmt, ...) {
    struct cc_str r = {buf, 0};
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (k > 0 && (size_t)k < n)
        r.n = (uint32_t)k;
    return r;
}

/* ---- signatures -----------------------------------------------------------
 */

void
cc_hmac_sha256(const char *key, size_t keylen, const void *a, size_t alen,
               const void *b, size_t blen, unsigned char out[32]) {
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;

    mbedtls_md_init(&ctx);
    /* Fails only for want of memory: the digest stays zero and matches no
     * signature. */
    memset(out, 0, CC_SHA256_LEN);
    if (mbedtls_md_setup(&ctx, md, 1) == 0 &&
        mbedtls_md_hmac_starts(&ctx, (const unsigned char *)key, keylen) == 0 &&
        mbedtls_md_hmac_update(&ctx, a, alen) == 0 &&
        mbedtls_md_hmac_update(&ctx, b, blen) == 0)
        mbedtls_md_hmac_finish(&ctx, out);
    mbedtls_md_free(&ctx);
}

size_t
cc_base64(const unsigned char *in, size_t n, char *out) {
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

bool
cc_sig_ok(const char *sig, const char *key, const void *a, size_t alen,
          const void *b, size_t blen, bool base64) {
    unsigned char mac[CC_SHA256_LEN];
    char want[2 * CC_SHA256_LEN + 1];
    size_t i, n;
    unsigned diff = 0;

    if (sig == NULL || strncmp(sig, "sha256=", 7) != 0)
        return false;
    sig += 7;
    cc_hmac_sha256(key, strlen(key), a, alen, b, blen, mac);
    if (base64) {
        n = cc_base64(mac, sizeof(mac), want);
    } else {
        for (i = 0; i < sizeof(mac); i++)
            snprintf(want + 2 * i, 3, "%02x", mac[i]);
        n = 2 * sizeof(mac);
    }
    if (strlen(sig) != n)
        return false;
    /* Hex digits compare case-insensitively; base64 exactly. Every byte is
     * looked at, so the time taken says nothing about where they differ. */
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)sig[i];
        if (!base64 && c >= 'A' && c <= 'F')
            c = (unsigned char)(c - 'A' + 'a');
        diff |= c ^ (unsigned char)want[i];
    }
    return diff == 0;
}

/* ---- JSON ------------------------------------------------------------- */

/* The deepest nesting of [ and { in s, outside strings. */
static uint64_t
json_depth(const char *s, size_t n, uint64_t stop) {
    uint64_t d = 0, max = 0;
    bool in_str = false;
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++d > max && (max = d) > stop)
                return max;
        } else if ((c == ']' || c == '}') && d > 0) {
            d--;
        }
    }
    return max;
}

json_t *
cc_json_parse(const char *body, size_t len, uint64_t max_depth, char *why,
              size_t whylen) {
    json_error_t err;
    json_t *v;

    /* A UTF-8 byte order mark is allowed before the text (RFC 8259 says a
     * parser may ignore one; some senders write it). */
    if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) {
        body += 3;
        len -= 3;
    }
    if (json_depth(body, len, max_depth) > max_depth) {
        snprintf(why, whylen, "JSON nested deeper than %llu levels",
                 (unsigned long long)max_depth);
        return NULL;
    }
    v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL)
        snprintf(why, whylen, "not valid JSON: %s (line %d, column %d)",
                 err.text, err.line, err.column);
    return v;
}

void
cc_json_pack(msgpack_packer *pk, const json_t *v) {
    const char *k;
    json_t *m;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, (uint32_t)json_object_size(v));
        json_object_foreach((json_t *)v, k, m) {
            cc_pack_str(pk, k);
            cc_json_pack(pk, m);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, (uint32_t)json_array_size(v));
        json_array_foreach(v, i, m) cc_json_pack(pk, m);
        break;
    case JSON_STRING:
        cc_pack_strn(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

struct cc_str
cc_json_str(const json_t *obj, const char *key, char *buf, size_t bufn) {
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    struct cc_str s = {"", 0};
    int n;

    if (json_is_string(v)) {
        s.p = json_string_value(v);
        s.n = (uint32_t)json_string_length(v);
    } else if (json_is_integer(v) && buf != NULL) {
        n = snprintf(buf, bufn, "%lld", (long long)json_integer_value(v));
        if (n > 0 && (size_t)n < bufn) {
            s.p = buf;
            s.n = (uint32_t)n;
        }
    }
    return s;
}

int64_t
cc_json_time(const json_t *v, int64_t fallback) {
    int y, mo, d, h, mi, s, n = 0;
    const char *str, *rest;
    int64_t ms = 0, sign = 1;

    if (json_is_integer(v)) {
        int64_t t = (int64_t)json_integer_value(v);
        if (t <= 0)
            return fallback;
        return t > 100000000000LL ? t : t * 1000;
    }
    if (json_is_real(v)) {
        double t = json_real_value(v);
        return t > 0 && t < 1e11 ? (int64_t)(t * 1000) : fallback;
    }
    if (!json_is_string(v))
        return fallback;
    str = json_string_value(v);
    if (sscanf(str, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s,
               &n) != 6 ||
        mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return fallback;
    rest = str + n;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            if (digits++ < 3)
                ms = ms * 10 + (*rest - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    while (*rest == ' ')
        rest++;
    if (*rest == '+' || *rest == '-') {
        int oh, om;
        sign = *rest == '-' ? -1 : 1;
        if (sscanf(rest + 1, "%2d:%2d", &oh, &om) != 2)
            return fallback;
        ms -= sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    } else if (*rest != 'Z' && strcmp(rest, "UTC") != 0 && *rest != '\0') {
        return fallback;
    }
    return (cc_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
            (int64_t)h * 3600 + mi * 60 + s) *
               1000 +
           ms;
}
