/*
 * The [callback] and [callback.queue.NAME] sections. See cbconfig.h.
 */
#include "cbconfig.h"

#include "config.h"

#include <inttypes.h>
#include <string.h>

#define DAY_MS 86400000ULL

static const struct {
    const char *name;
    bool duration; /* else a whole number */
    const char *def;
    uint64_t min, max;
} cb_keys[CC_CB__KEYS] = {
    [CC_CB_WAIT_OVER] = {"offer_when_wait_over", true, "2m", 0, DAY_MS},
    [CC_CB_POSITION_OVER] = {"offer_when_position_over", false, "10", 0,
                             100000000},
    [CC_CB_AFTER_WAITING] = {"offer_after_waiting", true, "3m", 0, 7 * DAY_MS},
    [CC_CB_REOFFER_AFTER] = {"reoffer_after", true, "0", 0, DAY_MS},
    [CC_CB_OFFER_EXPIRES] = {"offer_expires", true, "1m", 1000, DAY_MS},
    [CC_CB_DIAL_LEAD] = {"dial_lead", true, "30s", 0, DAY_MS},
    [CC_CB_MAX_PENDING] = {"max_pending", false, "50", 0, 1000000},
    [CC_CB_LOAD_HORIZON] = {"load_horizon", true, "1h", 0, 7 * DAY_MS},
    [CC_CB_PROMISE_MARGIN] = {"promise_margin", true, "5m", 0, DAY_MS},
    [CC_CB_PROMISE_MAX] = {"promise_max", true, "1h", 60000, 7 * DAY_MS},
    [CC_CB_RETRY_DELAY] = {"retry_delay", true, "5m", 1000, DAY_MS},
    [CC_CB_MAX_ATTEMPTS] = {"max_attempts", false, "3", 1, 100},
    [CC_CB_OUTCOME_WAIT] = {"outcome_wait", true, "1h", 60000, 7 * DAY_MS},
};

static int
parse_value(unsigned k, const char *value, uint64_t *v, char *why,
            size_t whylen) {
    return cc_parse_bounded(value, cb_keys[k].duration, cb_keys[k].min,
                            cb_keys[k].max, v, why, whylen);
}

void
cc_cb_config_init(struct cc_cb_config *c) {
    char why[128];
    unsigned k;
    int rc;

    memset(c, 0, sizeof(*c));
    for (k = 0; k < CC_CB__KEYS; k++) {
        rc = parse_value(k, cb_keys[k].def, &c->def.v[k], why, sizeof(why));
        CC_ASSERT(rc == 0);
    }
}

static struct cc_cb_policy *
section_policy(struct cc_cb_config *c, const char *section, int line, char *why,
               size_t whylen) {
    const char *name;
    struct cc_cb_policy *p;
    uint32_t i;

    if (strcmp(section, "callback") == 0)
        return &c->def;
    if (strncmp(section, "callback.queue.", 15) != 0) {
        cc_errf(why, whylen, CC_EINVAL,
                "expected [callback] or [callback.queue.NAME]");
        return NULL;
    }
    name = section + 15;
    if (*name == '\0' || strlen(name) > CC_NAME_MAX) {
        cc_errf(why, whylen, CC_EINVAL, "a queue name of 1 to %d bytes",
                CC_NAME_MAX);
        return NULL;
    }
    for (i = 0; i < c->nqueues; i++)
        if (strcmp(c->queues[i].queue, name) == 0)
            return &c->queues[i];
    if (c->nqueues == CC_CB_QUEUES) {
        cc_errf(why, whylen, CC_EINVAL, "more than %d [callback.queue.*]",
                CC_CB_QUEUES);
        return NULL;
    }
    p = &c->queues[c->nqueues++];
    memset(p, 0, sizeof(*p));
    strcpy(p->queue, name);
    p->line = line;
    return p;
}

int
cc_cb_config_set(struct cc_cb_config *c, const char *section, const char *key,
                 const char *value, int line, char *why, size_t whylen) {
    struct cc_cb_policy *p = section_policy(c, section, line, why, whylen);
    unsigned k;

    if (p == NULL)
        return CC_EINVAL;
    if (strcmp(key, "calendar") == 0) {
        if (!cc_label_ok(value, strlen(value), CC_SLA_NAME_MAX))
            return cc_errf(why, whylen, CC_EINVAL,
                           "expected a calendar's name");
        strcpy(p->calendar, value);
        p->calendar_set = true;
        p->line = line; /* where an unknown calendar is reported */
        return 0;
    }
    for (k = 0; k < CC_CB__KEYS; k++) {
        if (strcmp(key, cb_keys[k].name) != 0)
            continue;
        if (parse_value(k, value, &p->v[k], why, whylen) != 0)
            return CC_EINVAL;
        if (p != &c->def) /* [callback] gives every key a value */
            p->set |= 1u << k;
        return 0;
    }
    return cc_errf(why, whylen, CC_EINVAL, "unknown key");
}

static int
check_calendar(const struct cc_cb_policy *p, const struct cc_sla_config *sla,
               char *why, size_t whylen) {
    uint32_t j;

    if (p->calendar[0] == '\0')
        return 0;
    for (j = 0; j < sla->ncalendars; j++)
        if (strcmp(sla->calendars[j].name, p->calendar) == 0)
            return 0;
    return cc_errf(why, whylen, CC_EINVAL,
                   "%d: [callback%s%s] calendar '%s' is not defined", p->line,
                   p->queue[0] ? ".queue." : "", p->queue, p->calendar);
}

int
cc_cb_config_finish(struct cc_cb_config *c, const struct cc_sla_config *sla,
                    char *why, size_t whylen) {
    uint32_t i;
    unsigned k;

    if (check_calendar(&c->def, sla, why, whylen) != 0)
        return CC_EINVAL;
    for (i = 0; i < c->nqueues; i++) {
        struct cc_cb_policy *p = &c->queues[i];
        for (k = 0; k < CC_CB__KEYS; k++)
            if (!(p->set & (1u << k)))
                p->v[k] = c->def.v[k];
        if (!p->calendar_set)
            strcpy(p->calendar, c->def.calendar);
        if (check_calendar(p, sla, why, whylen) != 0)
            return CC_EINVAL;
    }
    return 0;
}

const struct cc_cb_policy *
cc_cb_policy_for(const struct cc_cb_config *c, const char *name, size_t n) {
    uint32_t i;

    for (i = 0; i < c->nqueues; i++)
        if (strlen(c->queues[i].queue) == n &&
            memcmp(c->queues[i].queue, name, n) == 0)
            return &c->queues[i];
    return &c->def;
}

static void
write_policy(const struct cc_cb_policy *p, bool all, FILE *out,
             void (*duration)(FILE *, uint64_t)) {
    unsigned k;

    for (k = 0; k < CC_CB__KEYS; k++) {
        if (!all && !(p->set & (1u << k)))
            continue;
        fprintf(out, "%s = ", cb_keys[k].name);
        if (cb_keys[k].duration)
            duration(out, p->v[k]);
        else
            fprintf(out, "%" PRIu64, p->v[k]);
        fputc('\n', out);
    }
    if (p->calendar_set || (all && p->calendar[0] != '\0'))
        fprintf(out, "calendar = %s\n", p->calendar);
}

void
cc_cb_config_write(const struct cc_cb_config *c, FILE *out,
                   void (*duration)(FILE *, uint64_t)) {
    uint32_t i;

    fputs("\n[callback]\n", out);
    write_policy(&c->def, true, out, duration);
    for (i = 0; i < c->nqueues; i++) {
        fprintf(out, "\n[callback.queue.%s]\n", c->queues[i].queue);
        write_policy(&c->queues[i], false, out, duration);
    }
}
