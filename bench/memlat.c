#include "memlat.h"

#include "mem.h"

#include <stdint.h>
#include <stdio.h>
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

/* n lines mapped as the engine maps its tables, and an array of `count`
 * line numbers; -1 (nothing held) if either cannot be had. */
static int
map_lines(size_t n, size_t count, char **m, uint32_t **idx) {
    *m = cc_alloc_table(n * LINE);
    *idx = malloc(count * sizeof(**idx));
    if (*m != NULL && *idx != NULL)
        return 0;
    free(*idx);
    cc_free_table(*m, n * LINE);
    return -1;
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
    if (map_lines(n, n, &m, &order) != 0)
        return -1;
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

#define AHEAD 8
#define MAX_LINES 16
#define PAGE_LINES (4096 / LINE)
#define STEPS 400000

/* Where a step's software prefetches go. */
enum place {
    NOT_ASKED, /* none: the step's lines are loaded when needed */
    TOGETHER,  /* all of a step's prefetches one after the other */
    SPREAD     /* one prefetch between each share of the arithmetic */
};

/* A mapping of n lines, every page faulted in (as the engine's memory
 * is), with room for the line numbers of a run. */
struct region {
    size_t n;
    char *m;
    uint32_t *at;
};

static int
region_map(struct region *r, size_t bytes) {
    size_t i;

    r->n = bytes / LINE;
    if (map_lines(r->n, (STEPS + AHEAD) * (size_t)MAX_LINES, &r->m, &r->at) !=
        0)
        return -1;
    for (i = 0; i < r->n; i += PAGE_LINES)
        r->m[i * LINE] = 1;
    return 0;
}

static void
region_unmap(struct region *r) {
    free(r->at);
    cc_free_table(r->m, r->n * LINE);
}

/* The engine's pattern in small: steps of `work` rounds of dependent
 * arithmetic, each step reading `lines` random lines of r asked for AHEAD
 * steps ahead as `place` says, `per_page` of them in each 4 KiB page (1:
 * every line in a page of its own). Returns ns per step. */
static double
prefetch_run(const struct region *r, int lines, int per_page, enum place place,
             int work) {
    size_t total = (STEPS + AHEAD) * (size_t)lines, i;
    uint64_t rng = 0x2545f4914f6cdd1dULL, acc = 1, sum = 0, t;
    uint32_t *at = r->at;
    const char *m = r->m;
    int k, w;

    /* Each group of per_page lines: a random line, then others of its
     * page (7 lines apart, modulo the page: all distinct). */
    for (i = 0; i < total; i++)
        at[i] = i % (size_t)per_page == 0
                    ? (uint32_t)(xorshift(&rng) % r->n)
                    : (at[i - 1] & ~(uint32_t)(PAGE_LINES - 1)) |
                          ((at[i - 1] + 7) & (PAGE_LINES - 1));
    t = uv_hrtime();
    for (i = 0; i < STEPS; i++) {
        const uint32_t *ahead = at + (i + AHEAD) * (size_t)lines;
        const uint32_t *now = at + i * (size_t)lines;
        if (place == TOGETHER)
            for (k = 0; k < lines; k++)
                __builtin_prefetch(m + (size_t)ahead[k] * LINE);
        for (k = 0; k < lines; k++) {
            if (place == SPREAD)
                __builtin_prefetch(m + (size_t)ahead[k] * LINE);
            for (w = 0; w < work / lines; w++)
                acc = acc * 6364136223846793005ULL + 1442695040888963407ULL;
        }
        for (k = 0; k < lines; k++)
            sum += *(const volatile char *)(m + (size_t)now[k] * LINE);
    }
    t = uv_hrtime() - t;
    memlat_sink += sum ^ acc;
    return (double)t / (double)STEPS;
}

void
memlat_report(void) {
    static const size_t mib[] = {4, 16, 64, 256, 1024, 4096};
    static const size_t runs_mib[] = {128, 4096};
    static const int runs_lines[] = {6, 12};
    const int work = 600;
    struct region small, r;
    struct memlat ml;
    size_t i, j;

    printf("== memory: a random line by mapping size (huge pages where the "
           "kernel grants them)\n");
    printf("mapping    one at a time   8 chains, per line\n");
    for (i = 0; i < sizeof(mib) / sizeof(mib[0]); i++) {
        if (memlat_measure(mib[i] << 20, &ml) != 0) {
            printf("%5zu MiB  cannot map\n", mib[i]);
            continue;
        }
        printf("%5zu MiB  %8.1f ns     %8.1f ns\n", mib[i], ml.dependent_ns,
               ml.parallel_ns);
    }
    printf("\n== prefetch placement: steps of %d rounds of dependent "
           "arithmetic, each reading N random lines asked for %d steps "
           "ahead\n",
           work, AHEAD);
    if (region_map(&small, (size_t)256 << 10) != 0) {
        printf("cannot map\n");
        return;
    }
    printf("arithmetic alone (256 KiB, in cache): %.0f ns per step\n",
           prefetch_run(&small, 1, 1, NOT_ASKED, work));
    region_unmap(&small);
    printf("mapping    N   not asked   asked together   asked spread "
           "(ns per step, each line in its own page)\n");
    for (i = 0; i < sizeof(runs_mib) / sizeof(runs_mib[0]); i++) {
        if (region_map(&r, runs_mib[i] << 20) != 0) {
            printf("%5zu MiB  cannot map\n", runs_mib[i]);
            continue;
        }
        for (j = 0; j < sizeof(runs_lines) / sizeof(runs_lines[0]); j++) {
            int n = runs_lines[j];
            printf("%5zu MiB %3d  %9.0f   %14.0f   %12.0f\n", runs_mib[i], n,
                   prefetch_run(&r, n, 1, NOT_ASKED, work),
                   prefetch_run(&r, n, 1, TOGETHER, work),
                   prefetch_run(&r, n, 1, SPREAD, work));
        }
        if (runs_mib[i] == 4096)
            printf("4096 MiB, 12 lines asked together, in 12, 3 and 1 "
                   "pages: %.0f, %.0f, %.0f ns per step\n",
                   prefetch_run(&r, 12, 1, TOGETHER, work),
                   prefetch_run(&r, 12, 4, TOGETHER, work),
                   prefetch_run(&r, 12, 12, TOGETHER, work));
        region_unmap(&r);
    }
}
