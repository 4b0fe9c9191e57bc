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

double
memlat_prefetch(size_t bytes, int lines, int per_page, enum memlat_place place,
                int work) {
    size_t n = bytes / LINE, steps = 400000, i, total;
    uint64_t rng = 0x2545f4914f6cdd1dULL, acc = 1, sum = 0, t;
    uint32_t *at;
    char *m;
    int k, w;

    if (n < PAGE_LINES || n > UINT32_MAX || lines < 1 || lines > MAX_LINES ||
        per_page < 1 || lines % per_page != 0)
        return -1;
    total = (steps + AHEAD) * (size_t)lines;
    if (map_lines(n, total, &m, &at) != 0)
        return -1;
    /* Fault every page in first, as the engine's memory is. */
    for (i = 0; i < n; i += PAGE_LINES)
        m[i * LINE] = 1;
    /* Each group of per_page lines: a random line, then others of its
     * page (7 lines apart, modulo the page: all distinct). */
    for (i = 0; i < total; i++)
        at[i] = i % (size_t)per_page == 0
                    ? (uint32_t)(xorshift(&rng) % n)
                    : (at[i - 1] & ~(uint32_t)(PAGE_LINES - 1)) |
                          ((at[i - 1] + 7) & (PAGE_LINES - 1));
    t = uv_hrtime();
    for (i = 0; i < steps; i++) {
        const uint32_t *ahead = at + (i + AHEAD) * (size_t)lines;
        const uint32_t *now = at + i * (size_t)lines;
        if (place == MEMLAT_TOGETHER)
            for (k = 0; k < lines; k++)
                __builtin_prefetch(m + (size_t)ahead[k] * LINE);
        for (k = 0; k < lines; k++) {
            if (place == MEMLAT_SPREAD)
                __builtin_prefetch(m + (size_t)ahead[k] * LINE);
            for (w = 0; w < work / lines; w++)
                acc = acc * 6364136223846793005ULL + 1442695040888963407ULL;
        }
        for (k = 0; k < lines; k++)
            sum += *(const volatile char *)(m + (size_t)now[k] * LINE);
    }
    t = uv_hrtime() - t;
    memlat_sink += sum ^ acc;
    free(at);
    cc_free_table(m, n * LINE);
    return (double)t / (double)steps;
}

void
memlat_report(void) {
    static const size_t mib[] = {4, 16, 64, 256, 1024, 4096};
    static const struct {
        size_t mib;
        int lines;
    } runs[] = {{128, 6}, {128, 12}, {4096, 6}, {4096, 12}};
    const int work = 600;
    struct memlat ml;
    size_t i;

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
    printf("arithmetic alone (256 KiB, in cache): %.0f ns per step\n",
           memlat_prefetch((size_t)256 << 10, 1, 1, MEMLAT_NONE, work));
    printf("mapping    N   not asked   asked together   asked spread "
           "(ns per step, each line in its own page)\n");
    for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        size_t b = runs[i].mib << 20;
        int n = runs[i].lines;
        printf("%5zu MiB %3d  %9.0f   %14.0f   %12.0f\n", runs[i].mib, n,
               memlat_prefetch(b, n, 1, MEMLAT_NONE, work),
               memlat_prefetch(b, n, 1, MEMLAT_TOGETHER, work),
               memlat_prefetch(b, n, 1, MEMLAT_SPREAD, work));
    }
    printf("4096 MiB, 12 lines asked together, in 12, 3 and 1 pages: %.0f, "
           "%.0f, %.0f ns per step\n",
           memlat_prefetch((size_t)4096 << 20, 12, 1, MEMLAT_TOGETHER, work),
           memlat_prefetch((size_t)4096 << 20, 12, 4, MEMLAT_TOGETHER, work),
           memlat_prefetch((size_t)4096 << 20, 12, 12, MEMLAT_TOGETHER, work));
}
