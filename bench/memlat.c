#include "memlat.h"

#include "mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#define LINE 64
#define CHAINS 8

static uint64_t
xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Where the chases leave their last lines, so that no load is optimised
 * away. */
static volatile uint64_t memlat_sink;

/* Follows `steps` links from each of `k` starting lines; returns seconds. */
static double
chase(const char *m, const uint32_t *start, int k, size_t steps) {
    uint32_t at[CHAINS];
    uint64_t t;
    size_t i;
    int c;

    for (c = 0; c < k; c++)
        at[c] = start[c];
    t = uv_hrtime();
    for (i = 0; i < steps; i++)
        for (c = 0; c < k; c++)
            at[c] = *(const volatile uint32_t *)(m + (size_t)at[c] * LINE);
    t = uv_hrtime() - t;
    for (c = 0; c < k; c++)
        memlat_sink += at[c];
    return (double)t / 1e9;
}

int
memlat_measure(size_t bytes, struct memlat *out) {
    size_t n = bytes / LINE, i, steps = 2000000;
    uint32_t *order, start[CHAINS];
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    char *m;
    int c;

    if (n < 2 || n > UINT32_MAX)
        return -1;
    m = cc_alloc_table(n * LINE);
    order = malloc(n * sizeof(*order));
    if (m == NULL || order == NULL) {
        free(order);
        cc_free_table(m, n * LINE);
        return -1;
    }
    /* One random cycle through every line (Sattolo's shuffle), so that
     * neither the caches nor the hardware prefetchers can guess the next
     * line. */
    for (i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    for (i = n - 1; i > 0; i--) {
        size_t j = (size_t)(xorshift(&rng) % i);
        uint32_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    for (i = 0; i < n; i++)
        *(uint32_t *)(m + (size_t)order[i] * LINE) = order[(i + 1) % n];
    for (c = 0; c < CHAINS; c++)
        start[c] = order[n / CHAINS * (size_t)c];
    free(order);

    out->dependent_ns = chase(m, start, 1, steps) * 1e9 / (double)steps;
    out->parallel_ns = chase(m, start, CHAINS, steps / CHAINS) * 1e9 /
                       (double)(steps / CHAINS * CHAINS);
    cc_free_table(m, n * LINE);
    return 0;
}
