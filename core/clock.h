/*
 * SLA clocks' schedules, for the engine. A clock runs under the policy
 * cc_sla_apply() picks for its contact (sla.h); this module turns that
 * policy into a schedule (the instants, from the clock's start, of its
 * warnings, its breach and its escalations, in order) and keeps each
 * distinct schedule once, numbered, so that a running clock costs its
 * owner two bytes: the schedule's number and the next stage. The answer
 * for a given channel, queue, priority and set of tags is cached, so that
 * starting a clock does not walk the policies each time.
 *
 * Business hours: a schedule with a calendar counts its stages in business
 * time from the clock's start (cc_sched_due()).
 */
#ifndef CC_CLOCK_H
#define CC_CLOCK_H

#include "calendar.h"
#include "cc.h"
#include "sla.h"

enum cc_stage_type { CC_ST_WARNING, CC_ST_BREACH, CC_ST_ESCALATION };

#define CC_SCHED_STAGES (2 * CC_SLA_STAGES + 1)
#define CC_SCHEDS_MAX 4096
#define CC_SCHED_CACHE 1024

struct cc_sched_stage {
    uint64_t at;   /* ms (business ms with a calendar) after the start */
    uint8_t type;  /* enum cc_stage_type */
    uint8_t level; /* 1.. among warnings, among escalations; 0: breach */
};

struct cc_sched {
    uint8_t clock; /* enum cc_clock */
    uint8_t nstages;
    uint64_t target;
    const struct cc_sla_policy *by;
    const struct cc_calendar *cal; /* NULL: wall-clock time */
    const char *cal_name;
    struct cc_sched_stage st[CC_SCHED_STAGES];
};

/* What a schedule depends on, exactly: the cache's key. Zero it before
 * filling it in (it is compared as bytes). */
struct cc_sched_key {
    uint32_t queue;               /* the queue's name number; 0: none */
    uint32_t tags[CC_SLA_STAGES]; /* tag name numbers, most recent first */
    uint8_t channel, clock, ntags;
    int8_t priority; /* -1: none */
};

struct cc_slas {
    struct cc_sla_config cfg;
    struct cc_calendar cals[CC_SLA_CALENDARS]; /* with their zones */
    struct cc_sched *scheds;                   /* [0] unused: "no clock" */
    uint32_t nscheds;
    struct {
        struct cc_sched_key key;
        bool used;
        uint16_t sched;
    } cache[CC_SCHED_CACHE];
    uint64_t full; /* clocks not started: CC_SCHEDS_MAX reached */
};

/* Takes a copy of cfg and loads its calendars' zones from tzdir (NULL:
 * the system's). CC_EINVAL with the reason in err when a zone will not
 * load; CC_ENOMEM. */
int cc_slas_init(struct cc_slas *s, const struct cc_sla_config *cfg,
                 const char *tzdir, char *err, size_t errlen);
void cc_slas_fini(struct cc_slas *s);

/*
 * The schedule of clock k for subject, by number (0: no such clock). key
 * names the same subject by numbers, for the cache (NULL bypasses it);
 * key->clock is set here.
 */
uint16_t cc_slas_sched(struct cc_slas *s, const struct cc_sla_subject *subject,
                       enum cc_clock k, struct cc_sched_key *key);

static inline const struct cc_sched *
cc_slas_get(const struct cc_slas *s, uint16_t id) {
    return id != 0 ? &s->scheds[id] : NULL;
}

/* When stage i of a clock started at `start` (ms) falls due:
 * CC_CAL_NEVER when its calendar has no business time left. */
uint64_t cc_sched_due(const struct cc_sched *sc, unsigned i, uint64_t start);
/* The same for a clock that pauses: one that had counted `counted` ms
 * (business ms with a calendar) when it last resumed, at `from`. A stage
 * it had already counted past was due that much before `from` (in wall
 * ms: as if it had not paused since). */
uint64_t cc_sched_due_after(const struct cc_sched *sc, unsigned i,
                            uint64_t from, uint64_t counted);
/* The time a clock under sc counts from a to b: business time with a
 * calendar (0 when b <= a). */
uint64_t cc_sched_between(const struct cc_sched *sc, uint64_t a, uint64_t b);

/* The stage at which a clock resumes under a new schedule, given the last
 * stage it fired under the old one (type << 4 | level; 0xff: none): the
 * first that comes after it in the order warnings, breach, escalations. */
unsigned cc_sched_resume(const struct cc_sched *sc, uint8_t last);

const char *cc_stage_alert(enum cc_stage_type t);

#endif
