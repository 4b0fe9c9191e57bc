/*
 * Logging. See log.h.
 */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>

static _Atomic int log_level = CC_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
cc_log_set_level(int level) {
    atomic_store(&log_level, level);
}

void
cc_log(int level, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    int n;

    if (level > atomic_load(&log_level))
        return;
    n = snprintf(line, sizeof(line), "contactd: %s: ", level_names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

bool
cc_ratelimit_ok(struct cc_ratelimit *r, uint64_t now) {
    if (now >= r->window_start + r->interval_ms) {
        if (r->suppressed != 0)
            cc_log_warn("%llu similar lines suppressed",
                        (unsigned long long)r->suppressed);
        r->window_start = now;
        r->used = 0;
        r->suppressed = 0;
    }
    if (r->used < r->burst) {
        r->used++;
        return true;
    }
    r->suppressed++;
    return false;
}
