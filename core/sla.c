/*
 * SLA policies and their calendars from the configuration. See sla.h.
 */
#include "sla.h"

#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const clock_names[CC_CLOCKS] = {
    "answer", "first_response", "next_response", "resolution", "hold"};

static const char *const day_keys[7] = {"mon", "tue", "wed", "thu",
                                        "fri", "sat", "sun"};

const char *
cc_clock_name(enum cc_clock k) {
    return k < CC_CLOCKS ? clock_names[k] : "?";
}

void
cc_sla_config_init(struct cc_sla_config *c) {
    memset(c, 0, sizeof(*c));
}

static struct cc_sla_policy *
policy_for(struct cc_sla_config *c, const char *section, int line, char *why,
           size_t whylen) {
    const char *ch = section + 4, *dot = strchr(ch, '.');
    size_t chn = dot ? (size_t)(dot - ch) : strlen(ch);
    struct cc_sla_policy *p;
    uint32_t i;

    for (i = 0; i < c->npolicies; i++)
        if (strcmp(c->policies[i].section, section) == 0)
            return &c->policies[i];
    if (!cc_label_ok(ch, chn, CC_SLA_NAME_MAX) ||
        (dot != NULL &&
         !cc_label_ok(dot + 1, strlen(dot + 1), CC_SLA_NAME_MAX))) {
        cc_errf(why, whylen, CC_EINVAL,
                "expected [sla.CHANNEL] or [sla.CHANNEL.NAME], names of a-z, "
                "0-9, '_' and '-'");
        return NULL;
    }
    if (c->npolicies == CC_SLA_POLICIES - 8) {
        cc_errf(why, whylen, CC_EINVAL, "more than %d SLA policies",
                CC_SLA_POLICIES - 8);
        return NULL;
    }
    p = &c->policies[c->npolicies++];
    memset(p, 0, sizeof(*p));
    snprintf(p->section, sizeof(p->section), "%s", section);
    memcpy(p->channel, ch, chn);
    if (dot != NULL) {
        snprintf(p->tag, sizeof(p->tag), "%s", dot + 1);
        p->implicit_tag = true;
    }
    p->priority = -1;
    p->line = line;
    return p;
}

/* "80%" (per mille out), "10m", "+50%", "+1h". */
static int
parse_stage(const char *s, bool after, struct cc_sla_stage *st) {
    size_t n = strlen(s);
    char buf[32];

    if (after) {
        if (*s != '+')
            return CC_EINVAL;
        s++;
        n--;
    }
    if (n == 0 || n >= sizeof(buf))
        return CC_EINVAL;
    if (s[n - 1] == '%') {
        char *end;
        double v;
        memcpy(buf, s, n - 1);
        buf[n - 1] = '\0';
        if (buf[0] < '0' || buf[0] > '9')
            return CC_EINVAL;
        errno = 0;
        v = strtod(buf, &end);
        if (errno != 0 || *end != '\0' || v <= 0 || v > 10000)
            return CC_EINVAL;
        st->kind = CC_STAGE_SHARE;
        st->v = (uint64_t)(v * 10 + 0.5);
        return st->v == 0 ? CC_EINVAL : 0;
    }
    if (cc_parse_duration(s, &st->v) != 0 || st->v == 0 ||
        st->v > 365ULL * 86400000)
        return CC_EINVAL;
    st->kind = after ? CC_STAGE_AFTER : CC_STAGE_BEFORE;
    return 0;
}

static int
parse_stages(const char *value, bool after, struct cc_sla_stage *out,
             uint8_t *n, char *why, size_t whylen) {
    char buf[256], *tok, *save = NULL;

    if (strlen(value) >= sizeof(buf))
        return cc_errf(why, whylen, CC_EINVAL, "list too long");
    strcpy(buf, value);
    *n = 0;
    for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
         tok = strtok_r(NULL, ", \t", &save)) {
        if (*n == CC_SLA_STAGES)
            return cc_errf(why, whylen, CC_EINVAL, "more than %d stages",
                           CC_SLA_STAGES);
        if (parse_stage(tok, after, &out[*n]) != 0)
            return cc_errf(why, whylen, CC_EINVAL,
                           after ? "'%s': expected +50%% or +30m (after the "
                                   "breach; at most +10000%% or +365d)"
                                 : "'%s': expected 80%% (of the target) or "
                                   "10m (before the breach; at most 365d)",
                           tok);
        if (!after && out[*n].kind == CC_STAGE_SHARE && out[*n].v >= 1000)
            return cc_errf(why, whylen, CC_EINVAL,
                           "'%s': a warning at or after its breach (100%%)",
                           tok);
        /* "+50%" after the breach is 150% of the target. */
        if (after && out[*n].kind == CC_STAGE_SHARE)
            out[*n].v += 1000;
        (*n)++;
    }
    return 0;
}

static int
set_policy(struct cc_sla_policy *p, const char *key, const char *value,
           char *why, size_t whylen) {
    unsigned k;

    for (k = 0; k < CC_CLOCKS; k++) {
        if (strcmp(key, clock_names[k]) != 0)
            continue;
        if (strcmp(value, "off") == 0) {
            p->target[k] = CC_SLA_OFF;
            return 0;
        }
        if (cc_parse_duration(value, &p->target[k]) != 0 || p->target[k] == 0 ||
            p->target[k] > 365ULL * 86400000)
            return cc_errf(why, whylen, CC_EINVAL,
                           "expected a duration from 1ms to 365d, such as "
                           "20s, 5m or 4h, or off");
        return 0;
    }
    if (strcmp(key, "warn") == 0) {
        p->warn_set = true;
        return parse_stages(value, false, p->warn, &p->nwarn, why, whylen);
    }
    if (strcmp(key, "escalate") == 0) {
        p->escalate_set = true;
        return parse_stages(value, true, p->escalate, &p->nescalate, why,
                            whylen);
    }
    if (strcmp(key, "calendar") == 0 || strcmp(key, "tag") == 0 ||
        strcmp(key, "queue") == 0) {
        char *dst = key[0] == 'c'   ? p->calendar
                    : key[0] == 't' ? p->tag
                                    : p->queue;
        if (strlen(value) >= CC_SLA_NAME_MAX || *value == '\0')
            return cc_errf(why, whylen, CC_EINVAL,
                           "expected a name of 1 to %d bytes",
                           CC_SLA_NAME_MAX - 1);
        strcpy(dst, value);
        /* An explicit match replaces the tag the section's name implied. */
        if (key[0] != 'c' && p->implicit_tag) {
            p->implicit_tag = false;
            if (key[0] != 't')
                p->tag[0] = '\0';
        }
        return 0;
    }
    if (strcmp(key, "priority") == 0) {
        char *end;
        long v;
        errno = 0;
        v = strtol(value, &end, 10);
        if (errno != 0 || *end != '\0' || end == value || v < 0 || v > 9)
            return cc_errf(why, whylen, CC_EINVAL,
                           "expected a priority from 0 to 9 (as events "
                           "carry it)");
        p->priority = (int32_t)v;
        if (p->implicit_tag) {
            p->implicit_tag = false;
            p->tag[0] = '\0';
        }
        return 0;
    }
    return cc_errf(why, whylen, CC_EINVAL, "unknown key");
}

static struct cc_sla_calendar *
calendar_for(struct cc_sla_config *c, const char *section, int line, char *why,
             size_t whylen) {
    const char *name = section + 9;
    struct cc_sla_calendar *k;
    uint32_t i;

    for (i = 0; i < c->ncalendars; i++)
        if (strcmp(c->calendars[i].name, name) == 0)
            return &c->calendars[i];
    if (!cc_label_ok(name, strlen(name), CC_SLA_NAME_MAX)) {
        cc_errf(why, whylen, CC_EINVAL,
                "expected [calendar.NAME], a name of a-z, 0-9, '_' and '-'");
        return NULL;
    }
    if (c->ncalendars == CC_SLA_CALENDARS) {
        cc_errf(why, whylen, CC_EINVAL, "more than %d calendars",
                CC_SLA_CALENDARS);
        return NULL;
    }
    k = &c->calendars[c->ncalendars++];
    memset(k, 0, sizeof(*k));
    strcpy(k->name, name);
    k->line = line;
    cc_cal_init(&k->cal, NULL);
    return k;
}

int
cc_sla_config_set(struct cc_sla_config *c, const char *section, const char *key,
                  const char *value, int line, char *why, size_t whylen) {
    if (strncmp(section, "sla.", 4) == 0) {
        struct cc_sla_policy *p = policy_for(c, section, line, why, whylen);
        return p == NULL ? CC_EINVAL : set_policy(p, key, value, why, whylen);
    }
    if (strncmp(section, "calendar.", 9) == 0) {
        struct cc_sla_calendar *k = calendar_for(c, section, line, why, whylen);
        unsigned d;
        if (k == NULL)
            return CC_EINVAL;
        if (strcmp(key, "timezone") == 0) {
            if (strlen(value) >= sizeof(k->timezone) || *value == '\0')
                return cc_errf(why, whylen, CC_EINVAL,
                               "expected a time zone such as "
                               "Europe/Berlin");
            strcpy(k->timezone, value);
            return 0;
        }
        if (strcmp(key, "holidays") == 0)
            return cc_cal_add_holidays(&k->cal, value, why, whylen);
        for (d = 0; d < 7; d++)
            if (strcmp(key, day_keys[d]) == 0)
                return cc_cal_set_day(&k->cal, d, value, why, whylen);
        return cc_errf(why, whylen, CC_EINVAL, "unknown key");
    }
    return cc_errf(why, whylen, CC_EINVAL, "not an SLA section");
}

/* The built-in policies, after the file's. */
static void
add_defaults(struct cc_sla_config *c, uint64_t hold_ms) {
    static const struct {
        const char *section;
        enum cc_clock k;
        uint64_t ms;
    } defs[] = {
        {"sla.social.complaint", CC_CLOCK_FIRST_RESPONSE, 30 * 60000},
        {"sla.phone", CC_CLOCK_ANSWER, 20000},
        {"sla.chat", CC_CLOCK_FIRST_RESPONSE, 60000},
        {"sla.chat", CC_CLOCK_NEXT_RESPONSE, 120000},
        {"sla.email", CC_CLOCK_FIRST_RESPONSE, 4 * 3600000},
        {"sla.social", CC_CLOCK_FIRST_RESPONSE, 3600000},
        {"sla.any", CC_CLOCK_RESOLUTION, 24 * 3600000},
        {"sla.any", CC_CLOCK_HOLD, 0},
    };
    size_t i;
    uint32_t j, first = c->npolicies;

    for (i = 0; i < CC_ARRAY_SIZE(defs); i++) {
        struct cc_sla_policy *p = NULL;
        for (j = first; j < c->npolicies; j++)
            if (strcmp(c->policies[j].section, defs[i].section) == 0)
                p = &c->policies[j];
        if (p == NULL) {
            const char *ch = defs[i].section + 4, *dot = strchr(ch, '.');
            p = &c->policies[c->npolicies++];
            memset(p, 0, sizeof(*p));
            strcpy(p->section, defs[i].section);
            memcpy(p->channel, ch, dot ? (size_t)(dot - ch) : strlen(ch));
            if (dot != NULL)
                strcpy(p->tag, dot + 1);
            p->priority = -1;
            p->builtin = true;
        }
        p->target[defs[i].k] =
            defs[i].k == CC_CLOCK_HOLD ? hold_ms : defs[i].ms;
    }
    /* The last word on stages: warn at 80%, no escalation. */
    c->policies[c->npolicies - 1].warn_set = true;
    c->policies[c->npolicies - 1].nwarn = 1;
    c->policies[c->npolicies - 1].warn[0] =
        (struct cc_sla_stage){CC_STAGE_SHARE, 800};
    c->policies[c->npolicies - 1].escalate_set = true;
}

uint64_t
cc_sla_stage_at(const struct cc_sla_stage *st, uint64_t target) {
    switch (st->kind) {
    case CC_STAGE_SHARE:
        return target / 1000 * st->v + target % 1000 * st->v / 1000;
    case CC_STAGE_BEFORE:
        return st->v < target ? target - st->v : 0;
    default:
        return target + st->v;
    }
}

int
cc_sla_config_finish(struct cc_sla_config *c,
                     const struct cc_channels *channels, uint64_t hold_ms,
                     const char *tzdir, char *why, size_t whylen) {
    char err[256];
    uint32_t i, j;
    unsigned k;

    for (i = 0; i < c->ncalendars; i++) {
        struct cc_sla_calendar *cal = &c->calendars[i];
        struct cc_tz *tz;
        if (cal->timezone[0] == '\0')
            return cc_errf(why, whylen, CC_EINVAL,
                           "%d: [calendar.%s] timezone is required", cal->line,
                           cal->name);
        if (cc_tz_load(&tz, tzdir, cal->timezone, err, sizeof(err)) != 0)
            return cc_errf(why, whylen, CC_EINVAL, "%d: [calendar.%s] %s",
                           cal->line, cal->name, err);
        cc_tz_free(tz);
        if (cc_cal_check(&cal->cal, err, sizeof(err)) != 0)
            return cc_errf(why, whylen, CC_EINVAL, "%d: [calendar.%s] %s",
                           cal->line, cal->name, err);
    }
    for (i = 0; i < c->npolicies; i++) {
        const struct cc_sla_policy *p = &c->policies[i];
        struct cc_str ch = {p->channel, (uint32_t)strlen(p->channel)};
        if (strcmp(p->channel, "any") != 0 &&
            cc_channels_find(channels, ch) < 0)
            return cc_errf(why, whylen, CC_EINVAL,
                           "%d: [%s] unknown channel '%s' (add it to "
                           "[channels] extra)",
                           p->line, p->section, p->channel);
        if (p->calendar[0] != '\0') {
            for (j = 0; j < c->ncalendars; j++)
                if (strcmp(c->calendars[j].name, p->calendar) == 0)
                    break;
            if (j == c->ncalendars)
                return cc_errf(why, whylen, CC_EINVAL,
                               "%d: [%s] calendar '%s' is not defined", p->line,
                               p->section, p->calendar);
        }
        /* A warning given as time before the breach must fall after the
         * clock starts, for every target it may apply to here. */
        for (k = 0; k < CC_CLOCKS; k++) {
            uint8_t w;
            if (p->target[k] == 0 || p->target[k] == CC_SLA_OFF)
                continue;
            for (w = 0; w < p->nwarn; w++)
                if (p->warn[w].kind == CC_STAGE_BEFORE &&
                    p->warn[w].v >= p->target[k])
                    return cc_errf(
                        why, whylen, CC_EINVAL,
                        "%d: [%s] a warning %llu ms before "
                        "the breach comes before the %s clock "
                        "starts (target %llu ms)",
                        p->line, p->section, (unsigned long long)p->warn[w].v,
                        clock_names[k], (unsigned long long)p->target[k]);
        }
    }
    add_defaults(c, hold_ms);
    return 0;
}

static bool
matches(const struct cc_sla_policy *p, const struct cc_sla_subject *s) {
    uint32_t i;
    size_t n;

    if (strcmp(p->channel, "any") != 0 && strcmp(p->channel, s->channel) != 0)
        return false;
    if (p->queue[0] != '\0' && (strlen(p->queue) != s->queue.n ||
                                memcmp(p->queue, s->queue.p, s->queue.n) != 0))
        return false;
    if (p->priority >= 0 && p->priority != s->priority)
        return false;
    if (p->tag[0] == '\0')
        return true;
    n = strlen(p->tag);
    for (i = 0; i < s->ntags; i++)
        if (s->tags[i].n == n && memcmp(s->tags[i].p, p->tag, n) == 0)
            return true;
    return false;
}

void
cc_sla_apply(const struct cc_sla_config *c, const struct cc_sla_subject *s,
             enum cc_clock k, struct cc_sla_applied *out) {
    uint32_t i;
    bool stages = false, esc = false, cal = false;

    memset(out, 0, sizeof(*out));
    out->target = CC_SLA_OFF;
    for (i = 0; i < c->npolicies; i++) {
        const struct cc_sla_policy *p = &c->policies[i];
        if (!matches(p, s))
            continue;
        if (out->by == NULL && p->target[k] != 0) {
            out->by = p;
            out->target = p->target[k];
        }
        if (!stages && p->warn_set) {
            out->warn = p->warn;
            out->nwarn = p->nwarn;
            stages = true;
        }
        if (!esc && p->escalate_set) {
            out->escalate = p->escalate;
            out->nescalate = p->nescalate;
            esc = true;
        }
        if (!cal && p->calendar[0] != '\0') {
            out->calendar = p->calendar;
            cal = true;
        }
    }
    if (out->target == CC_SLA_OFF) {
        out->nwarn = out->nescalate = 0;
        out->calendar = NULL;
    }
}
