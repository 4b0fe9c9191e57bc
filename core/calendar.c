/*
 * Business-hours calendars. See calendar.h.
 */
#include "calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_S 86400
#define SEARCH_DAYS 3660 /* ten years */

static const char *const day_names[7] = {"mon", "tue", "wed", "thu",
                                         "fri", "sat", "sun"};

void
cc_cal_init(struct cc_calendar *c, struct cc_tz *tz) {
    memset(c, 0, sizeof(*c));
    c->tz = tz;
}

void
cc_cal_fini(struct cc_calendar *c) {
    cc_tz_free(c->tz);
    memset(c, 0, sizeof(*c));
}

static const char *
skip_space(const char *p) {
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Two digits, within [0, max]. */
static const char *
two_digits(const char *p, int max, int *out) {
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return NULL;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return *out <= max ? p + 2 : NULL;
}

/* HH:MM as minutes; 24:00 only where `end`. */
static const char *
clock_time(const char *p, bool end, int *min) {
    int h, m;
    if ((p = two_digits(p, 24, &h)) == NULL || *p++ != ':' ||
        (p = two_digits(p, 59, &m)) == NULL || (h == 24 && (m != 0 || !end)))
        return NULL;
    *min = h * 60 + m;
    return p;
}

static int
cmp_window(const void *a, const void *b) {
    const struct cc_cal_window *x = a, *y = b;
    return (int)x->start - (int)y->start;
}

int
cc_cal_set_day(struct cc_calendar *c, unsigned wday, const char *spec,
               char *err, size_t errlen) {
    struct cc_cal_window w[CC_CAL_WINDOWS];
    const char *p = skip_space(spec);
    unsigned n = 0, i;
    int s, e;

    if (wday > 6)
        return cc_errf(err, errlen, CC_EINVAL, "no weekday %u", wday);
    if (strncmp(p, "closed", 6) == 0 && *skip_space(p + 6) == '\0') {
        c->nwin[wday] = 0;
        return 0;
    }
    for (;;) {
        const char *at = p;
        if ((p = clock_time(p, false, &s)) == NULL || *p++ != '-' ||
            (p = clock_time(p, true, &e)) == NULL)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: \"%.20s\" is not a window such as 09:00-17:00",
                           day_names[wday], at);
        if (e == s)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: empty window %.11s (a whole day is "
                           "00:00-24:00)",
                           day_names[wday], at);
        if (n == CC_CAL_WINDOWS)
            return cc_errf(err, errlen, CC_EINVAL, "%s: more than %d windows",
                           day_names[wday], CC_CAL_WINDOWS);
        /* An end before the start is the next morning. */
        w[n].start = (uint16_t)s;
        w[n].end = (uint16_t)(e < s ? e + 1440 : e);
        n++;
        p = skip_space(p);
        if (*p == '\0')
            break;
        if (*p++ != ',')
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: expected ',' between windows", day_names[wday]);
        p = skip_space(p);
    }
    qsort(w, n, sizeof(w[0]), cmp_window);
    for (i = 1; i < n; i++) {
        if (w[i - 1].end > w[i].start)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s: windows %02d:%02d-%02d:%02d and %02d:%02d "
                           "overlap",
                           day_names[wday], w[i - 1].start / 60,
                           w[i - 1].start % 60, w[i - 1].end / 60 % 24,
                           w[i - 1].end % 60, w[i].start / 60, w[i].start % 60);
    }
    memcpy(c->win[wday], w, n * sizeof(w[0]));
    c->nwin[wday] = (uint8_t)n;
    return 0;
}

static int
cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int
cc_cal_add_holidays(struct cc_calendar *c, const char *spec, char *err,
                    size_t errlen) {
    static const int mdays[12] = {31, 29, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int32_t add[CC_CAL_HOLIDAYS];
    const char *p = skip_space(spec);
    uint32_t n = 0, i, k;

    while (*p != '\0') {
        const char *at = p;
        int y = 0, m, d, j;
        for (j = 0; j < 4 && *p >= '0' && *p <= '9'; j++)
            y = y * 10 + (*p++ - '0');
        if (j != 4 || *p++ != '-' || (p = two_digits(p, 12, &m)) == NULL ||
            m == 0 || *p++ != '-' || (p = two_digits(p, 31, &d)) == NULL ||
            d == 0 || d > mdays[m - 1] ||
            (m == 2 && d == 29 &&
             !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
            return cc_errf(err, errlen, CC_EINVAL,
                           "holidays: \"%.12s\" is not a date such as "
                           "2026-12-25",
                           at);
        if (c->nholidays + n == CC_CAL_HOLIDAYS)
            return cc_errf(err, errlen, CC_EINVAL, "holidays: more than %d",
                           CC_CAL_HOLIDAYS);
        add[n++] = (int32_t)cc_days_from_civil(y, (unsigned)m, (unsigned)d);
        p = skip_space(p);
        if (*p == ',')
            p = skip_space(p + 1);
        else if (*p != '\0')
            return cc_errf(err, errlen, CC_EINVAL,
                           "holidays: expected ',' after %.10s", at);
    }
    memcpy(c->holidays + c->nholidays, add, n * sizeof(add[0]));
    n += c->nholidays;
    qsort(c->holidays, n, sizeof(c->holidays[0]), cmp_i32);
    for (i = k = 0; i < n; i++) /* a date named twice counts once */
        if (k == 0 || c->holidays[k - 1] != c->holidays[i])
            c->holidays[k++] = c->holidays[i];
    c->nholidays = k;
    return 0;
}

int
cc_cal_check(const struct cc_calendar *c, char *err, size_t errlen) {
    unsigned d, total = 0;

    for (d = 0; d < 7; d++) {
        const struct cc_cal_window *last;
        unsigned next = (d + 1) % 7;
        total += c->nwin[d];
        if (c->nwin[d] == 0)
            continue;
        last = &c->win[d][c->nwin[d] - 1];
        if (last->end > 1440 && c->nwin[next] != 0 &&
            c->win[next][0].start < last->end - 1440)
            return cc_errf(err, errlen, CC_EINVAL,
                           "%s's window to %02d:%02d overlaps %s's from "
                           "%02d:%02d",
                           day_names[d], (last->end - 1440) / 60,
                           last->end % 60, day_names[next],
                           c->win[next][0].start / 60,
                           c->win[next][0].start % 60);
    }
    if (total == 0)
        return cc_errf(err, errlen, CC_EINVAL, "no opening hours on any day");
    return 0;
}

static bool
holiday(const struct cc_calendar *c, int64_t day) {
    uint32_t lo = 0, hi = c->nholidays;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->holidays[mid] < day)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nholidays && c->holidays[lo] == day;
}

/* The local date (days since epoch) at UTC instant t (ms). */
static int64_t
local_day(const struct cc_calendar *c, uint64_t t) {
    int64_t s = (int64_t)(t / 1000);
    int64_t l = s + cc_tz_offset(c->tz, s);
    return l / DAY_S - (l % DAY_S < 0);
}

/*
 * Walks the open intervals [s, e) (UTC ms) in time order from the day
 * before `from`'s local date, calling fn on each that ends after `from`
 * (clipped to start there) until fn returns true. Returns false if ten
 * years pass first.
 */
typedef bool (*interval_fn)(void *arg, uint64_t s, uint64_t e);

static bool
walk(const struct cc_calendar *c, uint64_t from, interval_fn fn, void *arg) {
    int64_t day0 = local_day(c, from), day;
    unsigned i;

    for (day = day0 - 1; day <= day0 + SEARCH_DAYS; day++) {
        /* 1970-01-01 was a Thursday: weekday 3 counting from Monday. */
        unsigned wd = (unsigned)(((day + 3) % 7 + 7) % 7);
        if (c->nwin[wd] == 0 || holiday(c, day))
            continue;
        for (i = 0; i < c->nwin[wd]; i++) {
            const struct cc_cal_window *w = &c->win[wd][i];
            int64_t s = cc_tz_to_utc(c->tz, day * DAY_S + w->start * 60);
            int64_t e = cc_tz_to_utc(c->tz, day * DAY_S + w->end * 60);
            uint64_t sm, em;
            if (e <= 0)
                continue;
            sm = s < 0 ? 0 : (uint64_t)s * 1000;
            em = (uint64_t)e * 1000;
            if (em <= from)
                continue;
            if (sm < from)
                sm = from;
            if (fn(arg, sm, em))
                return true;
        }
    }
    return false;
}

struct add_state {
    uint64_t left, due;
};

static bool
add_fn(void *arg, uint64_t s, uint64_t e) {
    struct add_state *a = arg;
    if (e - s >= a->left) {
        a->due = s + a->left;
        return true;
    }
    a->left -= e - s;
    return false;
}

uint64_t
cc_cal_add(const struct cc_calendar *c, uint64_t start, uint64_t business_ms) {
    struct add_state a = {business_ms, CC_CAL_NEVER};
    if (business_ms == 0)
        return start;
    return walk(c, start, add_fn, &a) ? a.due : CC_CAL_NEVER;
}

struct between_state {
    uint64_t end, sum;
};

static bool
between_fn(void *arg, uint64_t s, uint64_t e) {
    struct between_state *b = arg;
    if (s >= b->end)
        return true;
    b->sum += (e < b->end ? e : b->end) - s;
    return e >= b->end;
}

uint64_t
cc_cal_between(const struct cc_calendar *c, uint64_t a, uint64_t b) {
    struct between_state st = {b, 0};
    if (b <= a)
        return 0;
    walk(c, a, between_fn, &st);
    return st.sum;
}

struct open_state {
    uint64_t t;
    bool open;
};

static bool
open_fn(void *arg, uint64_t s, uint64_t e) {
    struct open_state *o = arg;
    (void)e;
    /* The first interval ending after t, clipped to start at t if it
     * began earlier. */
    o->open = s == o->t;
    return true;
}

bool
cc_cal_open(const struct cc_calendar *c, uint64_t t) {
    struct open_state st = {t, false};
    walk(c, t, open_fn, &st);
    return st.open;
}
