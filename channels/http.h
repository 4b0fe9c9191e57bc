/*
 * The webhook listener: one HTTP/1.1 server (GNU libmicrohttpd) on the
 * loop thread, serving the endpoints of webhook.h that [http.*] enables.
 *
 * libmicrohttpd runs in its external-epoll mode: the loop watches the one
 * epoll descriptor it exposes with uv_poll and calls MHD_run when it is
 * readable or when MHD's own timeout (idle connections) falls due. A
 * request is therefore handled on the loop thread, like every other
 * ingest, and is answered after the engine has applied its events.
 * Limits: [http] max_header bounds a request's headers (larger ones get
 * 431 from the library), max_body its body (413), max_connections the
 * connections at once, timeout an idle connection, max_depth JSON nesting.
 */
#ifndef CC_HTTP_H
#define CC_HTTP_H

#include "webhook.h"

#include <uv.h>

struct cc_http;

/* Binds [http] listen and starts serving; CC_EINVAL or CC_EIO with err
 * set when the address is bad or cannot be bound. */
int cc_http_new(struct cc_http **out, uv_loop_t *loop,
                const struct cc_http_config *cfg,
                const struct cc_adapter_host *host, char *err, size_t errlen);
/* The port bound (useful when [http] listen asks for port 0). */
uint16_t cc_http_port(const struct cc_http *h);
/* Stops listening and closes every connection; done(arg) runs once the
 * loop's handles are closed. Then free with cc_http_free(). */
void cc_http_close(struct cc_http *h, void (*done)(void *arg), void *arg);
void cc_http_free(struct cc_http *h);
/* {requests, responses {2xx, 4xx, 5xx}, too_large, protocol_errors,
 * endpoints {name: adapter counters + bad_signature}} */
void cc_http_pack_stats(const struct cc_http *h, msgpack_packer *pk);
/* The host's journal made every record below mark durable: answers that
 * waited for them go. */
void cc_http_durable(struct cc_http *h, uint64_t mark);
/* An endpoint by name ("events", "chatwoot", "x", "messenger"), or NULL
 * when it is not enabled. */
const struct cc_webhook *cc_http_endpoint(const struct cc_http *h,
                                          const char *name);

#endif
