/*
 * SLA policies: response-time targets per clock, channel, queue, priority
 * and tag, with warning stages before the breach and escalation levels
 * after it, optionally counted in a calendar's business hours. This module
 * reads them from the configuration file's [sla.*] and [calendar.*]
 * sections, checks them, and answers which target and stages apply to a
 * contact. The clocks themselves live in the engine.
 *
 *   [sla.CHANNEL] or [sla.CHANNEL.NAME]   CHANNEL: a channel name or "any"
 *     answer, first_response, next_response, resolution, hold
 *                       = a duration, or "off" (no such clock)
 *     warn = 50%, 80%, 10m     shares of the target, or time before it
 *     escalate = +50%, +1h     after the breach: shares or time
 *     calendar = NAME          count business time in [calendar.NAME]
 *     tag = T, queue = Q, priority = N    what a contact must have to
 *                       match (NAME alone means tag = NAME)
 *   [calendar.NAME]
 *     timezone = Europe/Berlin
 *     mon .. sun = 09:00-17:00, 18:00-20:00 | closed
 *     holidays = 2026-12-25, 2027-01-01
 *
 * Of the policies that match a contact, in the order written, the first
 * that sets a clock's target gives that target, the first that sets warn
 * gives the warnings, and likewise escalate and calendar: [sla.chat] with
 * a calendar makes every chat clock count business time, and
 * [sla.chat.vip] with tighter warnings tightens them on every clock of a
 * VIP chat. Built-in policies follow the file's (see
 * cc_sla_config_finish()). Errors found after the whole file is read name
 * the line of the section's first key.
 */
#ifndef CC_SLA_H
#define CC_SLA_H

#include "calendar.h"
#include "cc.h"
#include "event.h"

#define CC_SLA_POLICIES 64
#define CC_SLA_STAGES 8
#define CC_SLA_CALENDARS 8
#define CC_SLA_NAME_MAX 32
#define CC_SLA_OFF UINT64_MAX /* a target of "off" */

enum cc_clock {
    CC_CLOCK_ANSWER,
    CC_CLOCK_FIRST_RESPONSE,
    CC_CLOCK_NEXT_RESPONSE,
    CC_CLOCK_RESOLUTION,
    CC_CLOCK_HOLD,
    CC_CLOCKS
};

const char *cc_clock_name(enum cc_clock k);

enum cc_stage_kind {
    CC_STAGE_SHARE,  /* v per mille of the target (escalations: > 1000) */
    CC_STAGE_BEFORE, /* v ms before the breach */
    CC_STAGE_AFTER   /* v ms after the breach */
};

struct cc_sla_stage {
    uint8_t kind;
    uint64_t v;
};

struct cc_sla_policy {
    char section[2 * CC_SLA_NAME_MAX + 8];
    int line;
    char channel[CC_SLA_NAME_MAX]; /* "any" or a channel's name */
    char queue[CC_SLA_NAME_MAX];   /* empty: any queue */
    char tag[CC_SLA_NAME_MAX];     /* empty: any tags */
    int32_t priority;              /* -1: any priority */
    bool implicit_tag;             /* tag taken from the section's name */
    uint64_t target[CC_CLOCKS];    /* ms; 0: not set here */
    bool warn_set, escalate_set;
    uint8_t nwarn, nescalate;
    struct cc_sla_stage warn[CC_SLA_STAGES], escalate[CC_SLA_STAGES];
    char calendar[CC_SLA_NAME_MAX]; /* empty: not set here */
    bool builtin;
};

struct cc_sla_calendar {
    char name[CC_SLA_NAME_MAX];
    char timezone[CC_TZ_NAME_MAX];
    int line;
    struct cc_calendar cal; /* windows and holidays; cal.tz unset */
};

struct cc_sla_config {
    uint32_t npolicies, ncalendars;
    struct cc_sla_policy policies[CC_SLA_POLICIES];
    struct cc_sla_calendar calendars[CC_SLA_CALENDARS];
};

/* No policies, no calendars. */
void cc_sla_config_init(struct cc_sla_config *c);
/*
 * One key of an [sla.*] or [calendar.*] section, read at `line`. Returns
 * CC_EINVAL with the reason in why (the caller adds file and line).
 */
int cc_sla_config_set(struct cc_sla_config *c, const char *section,
                      const char *key, const char *value, int line, char *why,
                      size_t whylen);
/*
 * After the whole file: appends the built-in defaults (phone answer 20s;
 * chat first response 1m, next response 2m; email first response 4h;
 * social first response 1h, 30m for tag complaint; resolution 24h; hold
 * hold_ms; warn at 80%) and checks everything together: channels known,
 * calendars named exist and their time zones load from tzdir (NULL: the
 * system's), stages fall within their targets. On error returns CC_EINVAL
 * and writes "LINE: [section] reason" into why.
 */
int cc_sla_config_finish(struct cc_sla_config *c,
                         const struct cc_channels *channels, uint64_t hold_ms,
                         const char *tzdir, char *why, size_t whylen);

/* What a contact is matched on. tags: names, ntags of them. */
struct cc_sla_subject {
    const char *channel;
    struct cc_str queue;
    int32_t priority; /* -1: none */
    const struct cc_str *tags;
    uint32_t ntags;
};

/* The policy a clock runs under. */
struct cc_sla_applied {
    uint64_t target;                 /* ms; CC_SLA_OFF: no clock */
    const struct cc_sla_policy *by;  /* the policy that set the target */
    const struct cc_sla_stage *warn; /* nwarn of them */
    const struct cc_sla_stage *escalate;
    uint8_t nwarn, nescalate;
    const char *calendar; /* NULL: wall-clock time */
};

void cc_sla_apply(const struct cc_sla_config *c, const struct cc_sla_subject *s,
                  enum cc_clock k, struct cc_sla_applied *out);

/* A stage's distance from the clock's start, in (business) ms. */
uint64_t cc_sla_stage_at(const struct cc_sla_stage *st, uint64_t target);

#endif
