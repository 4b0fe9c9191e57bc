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

#include <stdint.h>

/* clocks: running answer clocks; rate: events/s in both phases. */
void bench_sla(const char *bin, uint64_t clocks, uint64_t rate);

/* From bench.c. */
#include <sys/types.h>
int free_port(void);
/* Runs contactd with config conf, waiting until query answers. */
pid_t start_contactd(const char *bin, const char *conf, const char *query);
/* Events the daemon has applied (accepted, duplicates, rejected), or -1. */
int64_t stats_done(const char *query_addr);
/* One stats query: the sum of the figures at paths, or -1. */
int64_t stats_sum(const char *query_addr, const char *const *paths, unsigned n);

#endif
