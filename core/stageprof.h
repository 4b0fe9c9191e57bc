#ifndef CC_STAGEPROF_H
#define CC_STAGEPROF_H

/*
 * Where an event's time goes, by ingest stage: a profiling aid for the
 * engine benchmark, compiled in only with `cmake -DCC_STAGE_PROFILE=ON`
 * (x86-64; off by default, and then every mark is nothing).
 *
 * Each mark charges the time-stamp counter's ticks since the previous mark
 * to its slot. Reading the counter does not wait for earlier loads, so a
 * cache miss is charged where its value is first needed, not where it was
 * asked for; and the marks take time of their own. Compare slots between
 * two loads of one build (say a million contacts against a few hundred),
 * not with a build without the marks. One engine at a time: the counts are
 * global.
 */

#include <stdint.h>

enum cc_sp_slot {
    CC_SP_DECODE,    /* decoding; the window slot and contact bucket asked */
    CC_SP_CONTACT,   /* the contact record asked for */
    CC_SP_LINKS,     /* contact found; its conversation, neighbours asked */
    CC_SP_IDNODES,   /* identifiers' index lines read, their nodes asked */
    CC_SP_CUSTOMERS, /* identifiers found, their customers asked */
    CC_SP_OWNER,     /* customers read, their conversations asked; timeline */
    CC_SP_APPLY,     /* applying, but for the two below */
    CC_SP_IDENTITY,  /* applying: identifiers resolved to a customer */
    CC_SP_CONV,      /* applying: the conversation updated */
    CC_SP__COUNT
};

#ifdef CC_STAGE_PROFILE
#include <x86intrin.h>

extern uint64_t cc_sp_last, cc_sp_ticks[CC_SP__COUNT];

#define CC_SP_MARK(slot)                                                       \
    do {                                                                       \
        uint64_t now_ = __rdtsc();                                             \
        cc_sp_ticks[slot] += now_ - cc_sp_last;                                \
        cc_sp_last = now_;                                                     \
    } while (0)
/* Zeroes the counts; the next mark charges nothing before this. */
void cc_stageprof_reset(void);
/* The slot's name, for reports. */
const char *cc_stageprof_name(enum cc_sp_slot s);
#else
#define CC_SP_MARK(slot) ((void)0)
#endif

#endif
