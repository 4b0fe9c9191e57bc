/*
 * A host for adapter tests: submits to a real engine at a manual clock and
 * keeps the last answer.
 */
#ifndef CC_CHTEST_H
#define CC_CHTEST_H

#include "adapter.h"
#include "engine.h"

#include <criterion/criterion.h>

struct thost {
    struct cc_engine *e;
    uint64_t now;
    struct cc_ingest_report rep;
    struct cc_submit last;
    uint32_t submits;
    struct cc_adapter_host host;
};

static inline void
thost_submit(void *ctx, const void *msg, size_t len, struct cc_submit *out) {
    struct thost *h = ctx;

    cc_engine_ingest(h->e, msg, len, h->now, &h->rep);
    cc_submit_from_report(&h->rep, out);
    h->last = *out;
    h->submits++;
}

static inline uint64_t
thost_now(void *ctx) {
    return ((struct thost *)ctx)->now;
}

/* An engine with its defaults (or cfg) at now. */
static inline void
thost_init(struct thost *h, const struct cc_engine_config *cfg, uint64_t now) {
    struct cc_engine_config def;

    memset(h, 0, sizeof(*h));
    if (cfg == NULL) {
        cc_engine_config_defaults(&def);
        cfg = &def;
    }
    cr_assert_eq(cc_engine_new(&h->e, cfg, now), 0);
    h->now = now;
    h->host.submit = thost_submit;
    h->host.now = thost_now;
    h->host.ctx = h;
}

static inline void
thost_fini(struct thost *h) {
    cc_ingest_report_fini(&h->rep);
    cc_engine_free(h->e);
}

#endif
