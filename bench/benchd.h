/*
 * What the benchmarks that run the real contactd share: a free loopback
 * port, starting the daemon, and reading its stats.
 */
#ifndef CC_BENCHD_H
#define CC_BENCHD_H

#include <stdint.h>
#include <sys/types.h>

int free_port(void);
/* Runs contactd with config conf, waiting until query answers (5 s at
 * most). */
pid_t start_contactd(const char *bin, const char *conf, const char *query);
/* Events the daemon has applied (accepted, duplicates, rejected), or -1. */
int64_t stats_done(const char *query_addr);
/* One stats query: the sum of the figures at paths
 * ("engine/events/accepted"), or -1 when the daemon did not answer. */
int64_t stats_sum(const char *query_addr, const char *const *paths, unsigned n);

#endif
