/*
 * Business-hours calendars: opening windows per weekday in a time zone's
 * local time, and holidays. A policy that counts business time only asks
 * a calendar when a target of N business minutes falls due
 * (cc_cal_add()) and how much business time lies between two instants
 * (cc_cal_between()). Both are exact across daylight saving time changes:
 * windows are local wall-clock times, converted to UTC day by day.
 *
 * A window may cross midnight ("22:00-06:00" on Friday runs into
 * Saturday's early hours). A holiday closes the windows that open on that
 * local date; a window that opened the evening before runs to its end.
 * On the day the clocks go forward a window that opens in the skipped
 * hour opens when the clocks jump; on the day they go back, a window
 * boundary in the repeated hour is its first occurrence.
 *
 * Times are milliseconds since the epoch, UTC. Not thread-safe to modify;
 * queries are read-only.
 */
#ifndef CC_CALENDAR_H
#define CC_CALENDAR_H

#include "cc.h"
#include "tz.h"

#define CC_CAL_WINDOWS 8     /* per weekday */
#define CC_CAL_HOLIDAYS 1024 /* per calendar */
#define CC_CAL_NEVER UINT64_MAX

struct cc_cal_window {
    uint16_t start, end; /* minutes after local midnight; end up to 2880 */
};

struct cc_calendar {
    struct cc_tz *tz; /* owned */
    uint8_t nwin[7];  /* weekday 0 is Monday */
    struct cc_cal_window win[7][CC_CAL_WINDOWS];
    uint32_t nholidays;
    int32_t holidays[CC_CAL_HOLIDAYS]; /* local dates, days since epoch */
};

/* An empty calendar (no windows, no holidays) in zone tz, which it takes
 * over. */
void cc_cal_init(struct cc_calendar *c, struct cc_tz *tz);
void cc_cal_fini(struct cc_calendar *c);

/*
 * Sets weekday wday's windows from text such as "09:00-12:00, 13:00-17:00",
 * "22:00-06:00" (to the next morning), "00:00-24:00" or "closed". Windows
 * are sorted; empty, overlapping or malformed ones are refused with the
 * reason in err (CC_EINVAL), leaving the day unchanged.
 */
int cc_cal_set_day(struct cc_calendar *c, unsigned wday, const char *spec,
                   char *err, size_t errlen);
/* Adds holidays from text such as "2026-12-25, 2027-01-01". */
int cc_cal_add_holidays(struct cc_calendar *c, const char *spec, char *err,
                        size_t errlen);
/* Checks the week as a whole: at least one window, and no window running
 * past midnight into the next day's first window. */
int cc_cal_check(const struct cc_calendar *c, char *err, size_t errlen);

/* Whether business is open at t. */
bool cc_cal_open(const struct cc_calendar *c, uint64_t t);
/* The instant at which `business_ms` of business time has passed since
 * `start`, or CC_CAL_NEVER if the calendar has none within ten years. */
uint64_t cc_cal_add(const struct cc_calendar *c, uint64_t start,
                    uint64_t business_ms);
/* Business time between a and b (0 when b <= a). */
uint64_t cc_cal_between(const struct cc_calendar *c, uint64_t a, uint64_t b);

#endif
