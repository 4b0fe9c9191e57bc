/*
 * Wait-time arithmetic for queues: the queueing formulas behind the
 * estimates a queue gives its callers, apart from the engine so that they
 * can be tested against hand-computed cases. Times in milliseconds.
 */
#ifndef CC_WAITEST_H
#define CC_WAITEST_H

/* The standard normal's 80th percentile: for p80 ranges. */
#define CC_Z80 0.8416212335729143

/*
 * Erlang C: the probability that a caller waits, with n agents and a
 * Erlangs of traffic offered (arrival rate times handle time). 1 when a
 * >= n (the queue grows without bound), 0 when n is 0 and a is 0.
 */
double cc_erlang_c(unsigned n, double a);

/*
 * The time by which k completions have happened, when they come at rate
 * `rate` per ms (a gamma distribution of shape k): its quantile for the
 * standard normal quantile z (0: the median; CC_Z80: p80), by the
 * Wilson-Hilferty approximation (within 1.5% of the exact value for
 * k = 1, closer for more).
 */
double cc_gamma_quantile(double k, double rate, double z);

/*
 * For the queue as a whole under Erlang C (n agents, a Erlangs, handle
 * time aht_ms): the average wait of all callers, and the wait that a share
 * q of callers does not exceed (0 when more than q are answered at once).
 * a must be below n.
 */
double cc_erlang_asa(unsigned n, double a, double aht_ms);
double cc_erlang_wait_quantile(unsigned n, double a, double aht_ms, double q);

#endif
