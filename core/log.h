/*
 * Logging to stderr: one line per record, "LEVEL message". Lines about bad
 * input go through a rate limit so that a misbehaving producer cannot flood
 * the log: each struct cc_ratelimit lets a burst through per interval and
 * then says how many lines it suppressed. Thread-safe: a line is written by
 * one fputs-style call.
 */
#ifndef CC_LOG_H
#define CC_LOG_H

#include "config.h"

#include <stdarg.h>
#include <stdbool.h>

void cc_log_set_level(int level);
void cc_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define cc_log_error(...) cc_log(CC_LOG_ERROR, __VA_ARGS__)
#define cc_log_warn(...) cc_log(CC_LOG_WARN, __VA_ARGS__)
#define cc_log_info(...) cc_log(CC_LOG_INFO, __VA_ARGS__)
#define cc_log_debug(...) cc_log(CC_LOG_DEBUG, __VA_ARGS__)

struct cc_ratelimit {
    uint64_t interval_ms;
    uint32_t burst;
    uint64_t window_start;
    uint32_t used;
    uint64_t suppressed;
};

/* Returns true if a line may be logged at time now (ms). When a window
 * reopens after suppression, logs how many lines were dropped. */
bool cc_ratelimit_ok(struct cc_ratelimit *r, uint64_t now);

#endif
