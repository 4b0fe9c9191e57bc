/*
 * SLA clocks' schedules. See clock.h.
 */
#include "clock.h"

#include "mem.h"

#include <stdio.h>
#include <string.h>

const char *
cc_stage_alert(enum cc_stage_type t) {
    switch (t) {
    case CC_ST_WARNING:
        return "sla.warning";
    case CC_ST_BREACH:
        return "sla.breach";
    default:
        return "sla.escalation";
    }
}

int
cc_slas_init(struct cc_slas *s, const struct cc_sla_config *cfg,
             const char *tzdir, char *err, size_t errlen) {
    uint32_t i;

    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    for (i = 0; i < cfg->ncalendars; i++) {
        struct cc_tz *tz;
        int rc =
            cc_tz_load(&tz, tzdir, cfg->calendars[i].timezone, err, errlen);
        if (rc != 0) {
            cc_slas_fini(s);
            return rc;
        }
        s->cals[i] = cfg->calendars[i].cal;
        s->cals[i].tz = tz;
    }
    s->scheds = cc_calloc(CC_SCHEDS_MAX, sizeof(*s->scheds));
    if (s->scheds == NULL) {
        cc_slas_fini(s);
        snprintf(err, errlen, "out of memory");
        return CC_ENOMEM;
    }
    s->nscheds = 1;
    return 0;
}

void
cc_slas_fini(struct cc_slas *s) {
    uint32_t i;

    for (i = 0; i < s->cfg.ncalendars; i++)
        cc_tz_free(s->cals[i].tz);
    cc_free(s->scheds, CC_SCHEDS_MAX * sizeof(*s->scheds));
    memset(s, 0, sizeof(*s));
}

static void
add_stage(struct cc_sched *sc, uint64_t at, enum cc_stage_type t) {
    unsigned i;

    for (i = 0; i < sc->nstages; i++)
        if (sc->st[i].at == at && sc->st[i].type == t)
            return; /* named twice: fires once */
    sc->st[sc->nstages].at = at;
    sc->st[sc->nstages].type = (uint8_t)t;
    sc->nstages++;
}

/* Builds the schedule of a clock under policy a. */
static void
build(const struct cc_slas *s, enum cc_clock k, const struct cc_sla_applied *a,
      struct cc_sched *sc) {
    struct cc_sched_stage tmp;
    unsigned i, j;
    uint8_t nw = 0, ne = 0;

    memset(sc, 0, sizeof(*sc));
    sc->clock = (uint8_t)k;
    sc->target = a->target;
    sc->by = a->by;
    for (i = 0; i < a->nwarn; i++) {
        uint64_t at = cc_sla_stage_at(&a->warn[i], a->target);
        if (at > 0 && at < a->target)
            add_stage(sc, at, CC_ST_WARNING);
    }
    add_stage(sc, a->target, CC_ST_BREACH);
    for (i = 0; i < a->nescalate; i++)
        add_stage(sc, cc_sla_stage_at(&a->escalate[i], a->target),
                  CC_ST_ESCALATION);
    /* In time order (few stages: insertion sort); levels count within a
     * type in that order. */
    for (i = 1; i < sc->nstages; i++) {
        tmp = sc->st[i];
        for (j = i; j > 0 && (sc->st[j - 1].at > tmp.at ||
                              (sc->st[j - 1].at == tmp.at &&
                               sc->st[j - 1].type > tmp.type));
             j--)
            sc->st[j] = sc->st[j - 1];
        sc->st[j] = tmp;
    }
    for (i = 0; i < sc->nstages; i++) {
        if (sc->st[i].type == CC_ST_WARNING)
            sc->st[i].level = ++nw;
        else if (sc->st[i].type == CC_ST_ESCALATION)
            sc->st[i].level = ++ne;
    }
    if (a->calendar != NULL) {
        for (i = 0; i < s->cfg.ncalendars; i++)
            if (strcmp(s->cfg.calendars[i].name, a->calendar) == 0) {
                sc->cal = &s->cals[i];
                sc->cal_name = s->cfg.calendars[i].name;
            }
    }
}

uint16_t
cc_slas_sched(struct cc_slas *s, const struct cc_sla_subject *subject,
              enum cc_clock k, struct cc_sched_key *key) {
    struct cc_sla_applied a;
    struct cc_sched sc;
    uint32_t slot = 0, i;
    uint16_t id = 0;

    if (key != NULL) {
        uint64_t h;
        key->clock = (uint8_t)k;
        /* A mix of the few words that matter, not a hash of all 40 bytes:
         * this runs on every join and every customer message. */
        h = (uint64_t)key->queue * 0x9e3779b97f4a7c15ULL ^
            ((uint64_t)key->channel | (uint64_t)key->clock << 8 |
             (uint64_t)(uint8_t)key->priority << 16 |
             (uint64_t)key->ntags << 24);
        for (i = 0; i < key->ntags; i++)
            h = (h ^ key->tags[i]) * 0xff51afd7ed558ccdULL;
        h *= 0x9e3779b97f4a7c15ULL; /* every bit reaches the top ones */
        slot = (uint32_t)(h >> 54) % CC_SCHED_CACHE;
        if (s->cache[slot].used &&
            memcmp(&s->cache[slot].key, key, sizeof(*key)) == 0)
            return s->cache[slot].sched;
    }
    cc_sla_apply(&s->cfg, subject, k, &a);
    if (a.target != CC_SLA_OFF) {
        build(s, k, &a, &sc);
        for (i = 1; i < s->nscheds; i++)
            if (memcmp(&s->scheds[i], &sc, sizeof(sc)) == 0)
                break;
        if (i == s->nscheds) {
            if (s->nscheds == CC_SCHEDS_MAX) {
                s->full++;
                return 0;
            }
            s->scheds[s->nscheds++] = sc;
        }
        id = (uint16_t)i;
    }
    if (key != NULL) {
        s->cache[slot].key = *key;
        s->cache[slot].used = true;
        s->cache[slot].sched = id;
    }
    return id;
}

uint64_t
cc_sched_due(const struct cc_sched *sc, unsigned i, uint64_t start) {
    return cc_sched_due_after(sc, i, start, 0);
}

uint64_t
cc_sched_due_after(const struct cc_sched *sc, unsigned i, uint64_t from,
                   uint64_t counted) {
    uint64_t left;

    if (sc->st[i].at <= counted) /* passed before `from` */
        return from > counted - sc->st[i].at ? from - (counted - sc->st[i].at)
                                             : 0;
    left = sc->st[i].at - counted;
    if (sc->cal != NULL)
        return cc_cal_add(sc->cal, from, left);
    return from + left;
}

uint64_t
cc_sched_between(const struct cc_sched *sc, uint64_t a, uint64_t b) {
    if (sc->cal != NULL)
        return cc_cal_between(sc->cal, a, b);
    return b > a ? b - a : 0;
}

unsigned
cc_sched_resume(const struct cc_sched *sc, uint8_t last) {
    unsigned last_type = last >> 4, last_level = last & 15, i;

    if (last == 0xff)
        return 0;
    for (i = 0; i < sc->nstages; i++) {
        const struct cc_sched_stage *st = &sc->st[i];
        if (st->type > last_type ||
            (st->type == last_type && st->level > last_level))
            return i;
    }
    return sc->nstages;
}
