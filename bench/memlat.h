/*
 * The memory baseline of the engine figures. With a million contacts,
 * customers and conversations nearly every record an event touches is a
 * cache miss, so the engine's speed follows this machine's memory latency,
 * which on a shared virtual machine changes from one minute to the next.
 * Measured beside each engine run, on memory mapped as the engine maps its
 * own (huge pages where the kernel grants them), it lets runs taken at
 * different times be compared.
 */
#ifndef CC_MEMLAT_H
#define CC_MEMLAT_H

#include <stddef.h>

struct memlat {
    double dependent_ns; /* one random line at a time, each load waiting
                            for the one before: the full latency */
    double parallel_ns;  /* per line with 8 independent chains in flight,
                            the overlap the engine's pipeline aims for */
};

/* Measures over `bytes` of memory (rounded down to whole lines); returns
 * -1 if the memory cannot be had. */
int memlat_measure(size_t bytes, struct memlat *out);

/* Where a step's software prefetches go, in memlat_prefetch(). */
enum memlat_place {
    MEMLAT_NONE,     /* none: the step's lines are loaded when needed */
    MEMLAT_TOGETHER, /* all of a step's prefetches one after the other */
    MEMLAT_SPREAD    /* one prefetch between each share of the arithmetic */
};

/* The engine's pattern in small: steps of `work` rounds of dependent
 * arithmetic, each step reading `lines` random lines of a `bytes` mapping
 * asked for 8 steps ahead as `place` says, `per_page` of them in each
 * 4 KiB page (1: every line in a page of its own). Returns ns per step, or
 * -1 if the memory cannot be had. */
double memlat_prefetch(size_t bytes, int lines, int per_page,
                       enum memlat_place place, int work);

/* cc_bench --only memory: the latency by mapping size and the prefetch
 * placements above, printed as tables. */
void memlat_report(void);

#endif
