/*
 * The SLA clocks under load: the real contactd with a million answer
 * clocks running (a queue whose target is an hour), then ten seconds of
 * ingest at a given rate in which one event in fifty is a probe caller
 * whose clock (2 s, warned at 50%) fires twice during the run; each probe
 * alert is timed at a subscriber on the alert socket against its due
 * time, and the engine's own firing time is read from the alert. Beside
 * it, the lateness of a bare libuv timer on this machine: the floor any
 * timer-driven daemon sits on.
 */
#ifndef CC_SLABENCH_H
#define CC_SLABENCH_H

#include "benchd.h"

#include <stdint.h>

/* clocks: running answer clocks; rate: events/s in both phases. */
void bench_sla(const char *bin, uint64_t clocks, uint64_t rate);

#endif
