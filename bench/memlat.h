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

/* cc_bench --only memory: the latency by mapping size, and the engine's
 * pattern in small (steps of dependent arithmetic, each reading random
 * lines prefetched 8 steps ahead: together, spread through the arithmetic
 * or not at all; and 12 lines in 12, 3 or 1 pages), printed as tables. */
void memlat_report(void);

#endif
