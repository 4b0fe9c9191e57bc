/*
 * Callback policies: when a waiting caller is offered a callback, what the
 * offer promises, and how an accepted callback is dialled. This module
 * reads them from the configuration file's [callback] section (every
 * queue) and [callback.queue.NAME] sections (one queue: the keys it sets
 * override [callback]'s, the others follow [callback]).
 *
 *   [callback]
 *     offer_when_wait_over = 2m       the caller's estimated wait (0: off)
 *     offer_when_position_over = 10   the caller's place in line (0: off)
 *     offer_after_waiting = 3m        how long it has waited (0: off)
 *     reoffer_after = 0               after a decline or expiry (0: never)
 *     offer_expires = 1m              an offer not answered lapses
 *     dial_lead = 30s                 dial this long before its turn
 *     max_pending = 50                accepted callbacks not yet done
 *     load_horizon = 1h               pending work per agent (0: off)
 *     promise_margin = 5m             added to the estimate it promises
 *     promise_max = 1h                promised when there is no estimate
 *     retry_delay = 5m                after a failed attempt
 *     max_attempts = 3                attempts before it alerts
 *     outcome_wait = 1h               a dial with no outcome has failed
 *     calendar = NAME                 business hours ([calendar.NAME])
 */
#ifndef CC_CBCONFIG_H
#define CC_CBCONFIG_H

#include "cc.h"
#include "event.h"
#include "sla.h"

#include <stdio.h>

enum cc_cb_key {
    CC_CB_WAIT_OVER,
    CC_CB_POSITION_OVER,
    CC_CB_AFTER_WAITING,
    CC_CB_REOFFER_AFTER,
    CC_CB_OFFER_EXPIRES,
    CC_CB_DIAL_LEAD,
    CC_CB_MAX_PENDING,
    CC_CB_LOAD_HORIZON,
    CC_CB_PROMISE_MARGIN,
    CC_CB_PROMISE_MAX,
    CC_CB_RETRY_DELAY,
    CC_CB_MAX_ATTEMPTS,
    CC_CB_OUTCOME_WAIT,
    CC_CB__KEYS
};

#define CC_CB_QUEUES 64 /* [callback.queue.NAME] sections */

struct cc_cb_policy {
    char queue[CC_NAME_MAX + 1];    /* empty: [callback] itself */
    char calendar[CC_SLA_NAME_MAX]; /* empty: the answer clock's */
    uint64_t v[CC_CB__KEYS];        /* ms for durations */
    uint32_t set;                   /* keys the section sets, by bit */
    bool calendar_set;
    int line;
};

struct cc_cb_config {
    struct cc_cb_policy def;
    uint32_t nqueues;
    struct cc_cb_policy queues[CC_CB_QUEUES];
};

/* The built-in values, no queue sections. */
void cc_cb_config_init(struct cc_cb_config *c);
/* One key of [callback] or [callback.queue.NAME], read at `line`. CC_EINVAL
 * with the reason in why (the caller adds file and line). */
int cc_cb_config_set(struct cc_cb_config *c, const char *section,
                     const char *key, const char *value, int line, char *why,
                     size_t whylen);
/* After the whole file: gives each queue section the [callback] values it
 * does not set, and checks that the calendars named exist in sla. On error
 * CC_EINVAL with "LINE: [section] reason" in why. */
int cc_cb_config_finish(struct cc_cb_config *c, const struct cc_sla_config *sla,
                        char *why, size_t whylen);
/* The policy for queue `name` (n bytes): its section's, or [callback]. */
const struct cc_cb_policy *cc_cb_policy_for(const struct cc_cb_config *c,
                                            const char *name, size_t n);
/* Writes the sections as INI text (--check-config). */
void cc_cb_config_write(const struct cc_cb_config *c, FILE *out,
                        void (*duration)(FILE *, uint64_t));

#endif
