/*
 * The queueing formulas behind the wait estimates, against cases computed
 * by hand or read from published Erlang C tables.
 */
#include <criterion/criterion.h>

#include "waitest.h"

#include <math.h>

TestSuite(waitest);

#define NEAR(got, want, tol)                                                   \
    cr_assert(fabs((got) - (want)) <= (tol), "%s: %.6f, not %.6f", #got,       \
              (double)(got), (double)(want))

/* One agent is M/M/1: an arrival waits with the agent's load. Two agents
 * at one Erlang: B = 0.2, C = 0.4 / 1.2. Ten agents at eight Erlangs:
 * 0.4092 in the tables. */
Test(waitest, erlang_c_known_values) {
    NEAR(cc_erlang_c(1, 0.5), 0.5, 1e-12);
    NEAR(cc_erlang_c(2, 1.0), 1.0 / 3.0, 1e-12);
    NEAR(cc_erlang_c(10, 8.0), 0.4092, 5e-5);
    /* No traffic, nobody waits; as much traffic as agents or more, all
     * do. */
    NEAR(cc_erlang_c(5, 0.0), 0.0, 0);
    NEAR(cc_erlang_c(3, 3.0), 1.0, 0);
    NEAR(cc_erlang_c(3, 7.5), 1.0, 0);
    /* A large centre stays finite: 500 agents at 480 Erlangs. */
    cr_assert(cc_erlang_c(500, 480.0) > 0 && cc_erlang_c(500, 480.0) < 1);
}

/* M/M/1 at half load with one-minute calls: the average wait is a minute
 * (rho / (mu - lambda)); half the callers do not wait; p80 solves
 * 0.5 exp(-t / 120 s) = 0.2. */
Test(waitest, erlang_waits_for_one_agent) {
    NEAR(cc_erlang_asa(1, 0.5, 60000), 60000, 1e-6);
    NEAR(cc_erlang_wait_quantile(1, 0.5, 60000, 0.5), 0, 0);
    NEAR(cc_erlang_wait_quantile(1, 0.5, 60000, 0.8), 120000 * log(2.5), 1e-6);
}

/* The gamma quantile against exact values: one completion at rate 1 per
 * second is exponential (median ln 2 s, p80 ln 5 s); ten at rate 1 have
 * median 9.6687 and p80 12.4426 (tables of the gamma distribution). */
Test(waitest, gamma_quantile_close_to_exact) {
    double z80 = CC_Z80;

    cr_assert(fabs(cc_gamma_quantile(1, 0.001, 0) - 693.147) / 693.147 < 0.015);
    cr_assert(fabs(cc_gamma_quantile(1, 0.001, z80) - 1609.44) / 1609.44 <
              0.015);
    cr_assert(fabs(cc_gamma_quantile(10, 1, 0) - 9.6687) / 9.6687 < 0.001);
    cr_assert(fabs(cc_gamma_quantile(10, 1, z80) - 12.4426) / 12.4426 < 0.01);
    /* Twice the rate, half the time; no completions or no rate: zero. */
    NEAR(cc_gamma_quantile(4, 2, 0), cc_gamma_quantile(4, 1, 0) / 2, 1e-12);
    NEAR(cc_gamma_quantile(0, 1, 0), 0, 0);
    NEAR(cc_gamma_quantile(3, 0, 0), 0, 0);
}
