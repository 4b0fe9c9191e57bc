/*
 * Time zones and business-hours calendars: offsets checked against the C
 * library's own reading of the same zone files, daylight saving time in
 * both hemispheres and past the files' last transition, hostile zone
 * files, and business time across weekends, holidays, midnight and clock
 * changes.
 */
#include <criterion/criterion.h>

#include "calendar.h"
#include "tz.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

TestSuite(calendar);

#define H 3600
#define MS 1000ULL

static struct cc_tz *
zone(const char *name) {
    struct cc_tz *z;
    char err[256];
    cr_assert_eq(cc_tz_load(&z, NULL, name, err, sizeof(err)), 0, "%s", err);
    return z;
}

/* UTC seconds of a UTC civil time. */
static int64_t
utc(int y, unsigned mo, unsigned d, int h, int mi) {
    return cc_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

Test(calendar, civil_dates_round_trip) {
    int64_t day, y;
    unsigned m, d;

    cr_assert_eq(cc_days_from_civil(1970, 1, 1), 0);
    cr_assert_eq(cc_days_from_civil(2000, 3, 1), 11017);
    cr_assert_eq(cc_days_from_civil(1969, 12, 31), -1);
    for (day = -800000; day < 800000; day += 97) {
        cc_civil_from_days(day, &y, &m, &d);
        cr_assert_eq(cc_days_from_civil(y, m, d), day);
    }
}

/* Every 97 minutes from 1990 to 2060 in six zones (two southern, one
 * with a half-hour offset), against glibc's localtime_r on the same
 * files: past 2037 both follow the footer's rule. */
Test(calendar, offsets_agree_with_the_c_library) {
    static const char *const zones[] = {"America/New_York",  "Europe/Berlin",
                                        "Australia/Sydney",  "Asia/Kolkata",
                                        "America/Sao_Paulo", "UTC"};
    size_t i;
    int64_t t;

    for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        struct cc_tz *z = zone(zones[i]);
        char env[80];
        snprintf(env, sizeof(env), ":%s", zones[i]);
        setenv("TZ", env, 1);
        tzset();
        for (t = utc(1990, 1, 1, 0, 0); t < utc(2060, 1, 1, 0, 0);
             t += 97 * 60) {
            time_t tt = (time_t)t;
            struct tm tm;
            localtime_r(&tt, &tm);
            cr_assert_eq(cc_tz_offset(z, t), tm.tm_gmtoff,
                         "%s at %lld: %d, libc %ld", zones[i], (long long)t,
                         cc_tz_offset(z, t), tm.tm_gmtoff);
        }
        cc_tz_free(z);
    }
}

Test(calendar, daylight_saving_changes_at_the_exact_second) {
    struct cc_tz *ny = zone("America/New_York"), *ber = zone("Europe/Berlin"),
                 *syd = zone("Australia/Sydney");

    /* 2026-03-08 02:00 EST -> 03:00 EDT is 07:00 UTC. */
    cr_assert_eq(cc_tz_offset(ny, utc(2026, 3, 8, 7, 0) - 1), -5 * H);
    cr_assert_eq(cc_tz_offset(ny, utc(2026, 3, 8, 7, 0)), -4 * H);
    cr_assert_eq(cc_tz_offset(ny, utc(2026, 11, 1, 6, 0) - 1), -4 * H);
    cr_assert_eq(cc_tz_offset(ny, utc(2026, 11, 1, 6, 0)), -5 * H);
    /* Europe: last Sunday of March and October at 01:00 UTC. */
    cr_assert_eq(cc_tz_offset(ber, utc(2026, 3, 29, 1, 0) - 1), 1 * H);
    cr_assert_eq(cc_tz_offset(ber, utc(2026, 3, 29, 1, 0)), 2 * H);
    cr_assert_eq(cc_tz_offset(ber, utc(2026, 10, 25, 1, 0)), 1 * H);
    /* Sydney: summer time spans the new year. */
    cr_assert_eq(cc_tz_offset(syd, utc(2026, 1, 15, 0, 0)), 11 * H);
    cr_assert_eq(cc_tz_offset(syd, utc(2026, 7, 15, 0, 0)), 10 * H);
    /* Past the last transition in the file: the footer's rule. */
    cr_assert_eq(cc_tz_offset(ny, utc(2100, 7, 1, 0, 0)), -4 * H);
    cr_assert_eq(cc_tz_offset(ny, utc(2100, 1, 15, 0, 0)), -5 * H);
    cr_assert_eq(cc_tz_offset(syd, utc(2100, 1, 15, 0, 0)), 11 * H);
    cc_tz_free(ny);
    cc_tz_free(ber);
    cc_tz_free(syd);
}

Test(calendar, local_times_in_gaps_and_overlaps) {
    struct cc_tz *ny = zone("America/New_York");
    int64_t day = cc_days_from_civil(2026, 3, 8) * 86400;

    cr_assert_eq(cc_tz_to_utc(ny, day + 1 * H), utc(2026, 3, 8, 6, 0));
    /* 02:30 never happens: the first moment after the jump. */
    cr_assert_eq(cc_tz_to_utc(ny, day + 2 * H + 1800), utc(2026, 3, 8, 7, 0));
    cr_assert_eq(cc_tz_to_utc(ny, day + 3 * H), utc(2026, 3, 8, 7, 0));
    /* 01:30 on 2026-11-01 happens twice: the first, in daylight time. */
    day = cc_days_from_civil(2026, 11, 1) * 86400;
    cr_assert_eq(cc_tz_to_utc(ny, day + 1 * H + 1800), utc(2026, 11, 1, 5, 30));
    cr_assert_eq(cc_tz_to_utc(ny, day + 2 * H), utc(2026, 11, 1, 7, 0));
    cc_tz_free(ny);
}

Test(calendar, bad_zone_names_and_files_are_refused) {
    static const char *const bad[] = {"",
                                      "../etc/passwd",
                                      "America/../../etc/passwd",
                                      "/etc/passwd",
                                      "America//New_York",
                                      "New York",
                                      "America/New_York/"};
    unsigned char file[128];
    struct cc_tz *z;
    char err[256];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(cc_tz_load(&z, NULL, bad[i], err, sizeof(err)), CC_EINVAL,
                     "%s", bad[i]);
        cr_assert_null(z);
    }
    cr_assert_eq(cc_tz_load(&z, NULL, "Mars/Olympus_Mons", err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "unknown time zone") != NULL, "%s", err);
    /* Not a zone file; a header whose counts promise more than is there. */
    cr_assert_eq(cc_tz_parse(&z, "x", "hello", 5, err, sizeof(err)), CC_EINVAL);
    memset(file, 0, sizeof(file));
    memcpy(file, "TZif2", 5);
    file[35] = 0xff; /* 255 transitions */
    file[39] = 1;    /* one type */
    file[43] = 4;    /* four bytes of names */
    cr_assert_eq(cc_tz_parse(&z, "x", file, sizeof(file), err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "exceed") != NULL, "%s", err);
    file[32] = 0x7f; /* 2^31 transitions */
    cr_assert_eq(cc_tz_parse(&z, "x", file, sizeof(file), err, sizeof(err)),
                 CC_EINVAL);
    cr_assert_null(z);
}

/* New York, Monday to Friday 09:00-17:00, holidays as given. */
static void
office(struct cc_calendar *c, const char *holidays) {
    char err[256];
    unsigned d;

    cc_cal_init(c, zone("America/New_York"));
    for (d = 0; d < 5; d++)
        cr_assert_eq(cc_cal_set_day(c, d, "09:00-17:00", err, sizeof(err)), 0);
    cr_assert_eq(cc_cal_set_day(c, 5, "closed", err, sizeof(err)), 0);
    if (holidays != NULL)
        cr_assert_eq(cc_cal_add_holidays(c, holidays, err, sizeof(err)), 0,
                     "%s", err);
    cr_assert_eq(cc_cal_check(c, err, sizeof(err)), 0, "%s", err);
}

/* UTC ms of a New York wall-clock time (EST in these dates). */
static uint64_t
ny_est(int y, unsigned mo, unsigned d, int h, int mi) {
    return (uint64_t)(utc(y, mo, d, h, mi) + 5 * H) * MS;
}

Test(calendar, business_time_skips_nights_weekends_and_holidays) {
    struct cc_calendar c;

    office(&c, NULL);
    /* Friday 2026-01-16 16:30 plus an hour: Monday 09:30. */
    cr_assert_eq(cc_cal_add(&c, ny_est(2026, 1, 16, 16, 30), H * MS),
                 ny_est(2026, 1, 19, 9, 30));
    /* Saturday night plus a minute: Monday 09:01. */
    cr_assert_eq(cc_cal_add(&c, ny_est(2026, 1, 17, 23, 0), 60 * MS),
                 ny_est(2026, 1, 19, 9, 1));
    cr_assert_eq(cc_cal_between(&c, ny_est(2026, 1, 16, 16, 30),
                                ny_est(2026, 1, 19, 9, 30)),
                 H * MS);
    /* 24 business hours from Monday 09:00 end Wednesday 17:00. */
    cr_assert_eq(cc_cal_add(&c, ny_est(2026, 1, 19, 9, 0), 24 * H * MS),
                 ny_est(2026, 1, 21, 17, 0));
    cr_assert(cc_cal_open(&c, ny_est(2026, 1, 19, 10, 0)));
    cr_assert(!cc_cal_open(&c, ny_est(2026, 1, 19, 17, 0)));
    cr_assert(!cc_cal_open(&c, ny_est(2026, 1, 17, 12, 0)));
    cc_cal_fini(&c);

    /* Monday 2026-01-19 a holiday: the same hour ends Tuesday 09:30. */
    office(&c, "2026-01-19, 2026-12-25");
    cr_assert_eq(cc_cal_add(&c, ny_est(2026, 1, 16, 16, 30), H * MS),
                 ny_est(2026, 1, 20, 9, 30));
    cr_assert(!cc_cal_open(&c, ny_est(2026, 1, 19, 10, 0)));
    cc_cal_fini(&c);
}

Test(calendar, windows_across_midnight) {
    struct cc_calendar c;
    char err[256];

    cc_cal_init(&c, zone("Europe/Berlin"));
    /* Friday nights only, 22:00 to 06:00 Saturday. */
    cr_assert_eq(cc_cal_set_day(&c, 4, "22:00-06:00", err, sizeof(err)), 0);
    cr_assert_eq(cc_cal_check(&c, err, sizeof(err)), 0, "%s", err);
    /* Friday 2026-01-16 23:00 CET (22:00 UTC) plus 3h: Saturday 02:00. */
    cr_assert_eq(
        cc_cal_add(&c, (uint64_t)utc(2026, 1, 16, 22, 0) * MS, 3 * H * MS),
        (uint64_t)utc(2026, 1, 17, 1, 0) * MS);
    /* Saturday 05:00 plus 2h: 1h that night, the next hour a week on. */
    cr_assert_eq(
        cc_cal_add(&c, (uint64_t)utc(2026, 1, 17, 4, 0) * MS, 2 * H * MS),
        (uint64_t)utc(2026, 1, 23, 22, 0) * MS);
    cr_assert(cc_cal_open(&c, (uint64_t)utc(2026, 1, 17, 4, 59) * MS));
    /* A holiday on the Friday closes the window that opens that day. */
    cr_assert_eq(cc_cal_add_holidays(&c, "2026-01-16", err, sizeof(err)), 0);
    cr_assert(!cc_cal_open(&c, (uint64_t)utc(2026, 1, 17, 1, 0) * MS));
    cc_cal_fini(&c);
}

/* A night window over the change: 00:00-06:00 local holds five hours on
 * the day the clocks go forward and seven on the day they go back, in
 * both zones (Sundays in 2026 for both). */
Test(calendar, business_time_across_clock_changes) {
    static const struct {
        const char *zone;
        int spring[3], autumn[3];
    } cases[] = {{"America/New_York", {2026, 3, 8}, {2026, 11, 1}},
                 {"Europe/Berlin", {2026, 3, 29}, {2026, 10, 25}}};
    size_t i;

    for (i = 0; i < 2; i++) {
        struct cc_calendar c;
        char err[256];
        struct cc_tz *z = zone(cases[i].zone);
        int64_t d0;
        uint64_t a, b;

        cc_cal_init(&c, z);
        cr_assert_eq(cc_cal_set_day(&c, 6, "00:00-06:00", err, sizeof(err)), 0);
        d0 = cc_days_from_civil(cases[i].spring[0], cases[i].spring[1],
                                cases[i].spring[2]) *
             86400;
        a = (uint64_t)cc_tz_to_utc(z, d0) * MS;
        b = (uint64_t)cc_tz_to_utc(z, d0 + 86400) * MS;
        cr_assert_eq(cc_cal_between(&c, a, b), 5 * H * MS, "%s spring",
                     cases[i].zone);
        cr_assert_eq(cc_cal_add(&c, a, 5 * H * MS),
                     (uint64_t)cc_tz_to_utc(z, d0 + 6 * H) * MS);
        d0 = cc_days_from_civil(cases[i].autumn[0], cases[i].autumn[1],
                                cases[i].autumn[2]) *
             86400;
        a = (uint64_t)cc_tz_to_utc(z, d0) * MS;
        b = (uint64_t)cc_tz_to_utc(z, d0 + 86400) * MS;
        cr_assert_eq(cc_cal_between(&c, a, b), 7 * H * MS, "%s autumn",
                     cases[i].zone);
        cc_cal_fini(&c);
    }
}

Test(calendar, bad_windows_and_dates_are_refused) {
    static const char *const bad[] = {"09:00-12:00, 11:00-13:00",
                                      "25:00-26:00",
                                      "09:00-09:00",
                                      "9:00-17:00",
                                      "09:00-17:00,",
                                      "09:00-17:00 10:00-11:00",
                                      "09:60-10:00",
                                      "24:00-01:00",
                                      "open"};
    static const char *const bad_dates[] = {"2026-02-29", "2026-13-01",
                                            "2026-00-10", "26-01-01",
                                            "2026-01-01 2026-01-02"};
    struct cc_calendar c;
    char err[256];
    size_t i;

    cc_cal_init(&c, zone("UTC"));
    cr_assert_eq(cc_cal_check(&c, err, sizeof(err)), CC_EINVAL);
    cr_assert(strstr(err, "no opening hours") != NULL);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(cc_cal_set_day(&c, 0, bad[i], err, sizeof(err)), CC_EINVAL,
                     "%s", bad[i]);
    for (i = 0; i < sizeof(bad_dates) / sizeof(bad_dates[0]); i++)
        cr_assert_eq(cc_cal_add_holidays(&c, bad_dates[i], err, sizeof(err)),
                     CC_EINVAL, "%s", bad_dates[i]);
    cr_assert_eq(c.nholidays, 0);
    cr_assert_eq(cc_cal_add_holidays(&c, "2028-02-29", err, sizeof(err)), 0);
    /* Monday night into Tuesday, over Tuesday's first window. */
    cr_assert_eq(cc_cal_set_day(&c, 0, "20:00-08:00", err, sizeof(err)), 0);
    cr_assert_eq(cc_cal_set_day(&c, 1, "07:00-09:00", err, sizeof(err)), 0);
    cr_assert_eq(cc_cal_check(&c, err, sizeof(err)), CC_EINVAL);
    cr_assert(strstr(err, "overlaps") != NULL, "%s", err);
    cc_cal_fini(&c);
}

/* For random instants a < b: the business time between them, added to a,
 * lands at or before b, and measures back to itself. */
Test(calendar, add_and_between_agree) {
    struct cc_calendar c;
    char err[256];
    unsigned i;

    office(&c, "2026-07-03, 2026-11-26");
    cr_assert_eq(cc_cal_set_day(&c, 6, "10:00-14:00", err, sizeof(err)), 0);
    srand(7);
    for (i = 0; i < 2000; i++) {
        uint64_t a = (uint64_t)utc(2026, 1, 1, 0, 0) * MS +
                     (uint64_t)(rand() % (365 * 24 * 60)) * 60 * MS;
        uint64_t b = a + (uint64_t)(rand() % (20 * 24 * 60)) * 60 * MS;
        uint64_t x = cc_cal_between(&c, a, b), due = cc_cal_add(&c, a, x);
        cr_assert_leq(due, b);
        cr_assert_eq(cc_cal_between(&c, a, due), x);
    }
    cc_cal_fini(&c);
}

/* A zone file with no transitions, only a footer rule. */
static size_t
footer_only(unsigned char *buf, size_t cap, int32_t std_off, const char *rule) {
    static const unsigned char body[10] = {0, 0, 0, 0, 0, 0, 'X', 'X', 'X', 0};
    size_t n = 0, r = strlen(rule);
    int part;

    cr_assert_lt(2 * (44 + 10) + r + 2, cap);
    for (part = 0; part < 2; part++) {
        memset(buf + n, 0, 44);
        memcpy(buf + n, "TZif2", 5);
        buf[n + 39] = 1; /* one type */
        buf[n + 43] = 4; /* four bytes of names */
        n += 44;
        memcpy(buf + n, body, sizeof(body));
        buf[n] = (unsigned char)((uint32_t)std_off >> 24);
        buf[n + 1] = (unsigned char)((uint32_t)std_off >> 16);
        buf[n + 2] = (unsigned char)((uint32_t)std_off >> 8);
        buf[n + 3] = (unsigned char)std_off;
        n += sizeof(body);
    }
    buf[n++] = '\n';
    memcpy(buf + n, rule, r);
    n += r;
    buf[n++] = '\n';
    return n;
}

/* POSIX TZ rules of every form, checked against glibc reading the same
 * string from TZ: Mm.w.d, Jn (no leap day), n (zero-based), negative
 * times and times past 24 h, quoted names, the southern hemisphere. */
Test(calendar, footer_rules_agree_with_the_c_library) {
    static const struct {
        const char *rule;
        int32_t std_off;
    } rules[] = {
        {"EST5EDT,M3.2.0,M11.1.0", -5 * H},
        {"<-02>2<-01>,M3.5.0/-1,M10.5.0/0", -2 * H},
        {"IST-2IDT,M3.4.4/26,M10.5.0", 2 * H},
        {"XXX3YYY,J60,J300", -3 * H},
        {"AAA-10BBB,59/1,300/3", 10 * H},
        {"AEST-10AEDT,M10.1.0,M4.1.0/3", 10 * H},
        {"NZST-12NZDT-13:00,M9.5.0,M4.1.0/3", 12 * H},
        {"<+0330>-3:30", (int32_t)(3.5 * H)},
    };
    unsigned char buf[256];
    char err[256];
    size_t i, n;
    int64_t t;

    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        struct cc_tz *z;
        n = footer_only(buf, sizeof(buf), rules[i].std_off, rules[i].rule);
        cr_assert_eq(cc_tz_parse(&z, "t", buf, n, err, sizeof(err)), 0,
                     "%s: %s", rules[i].rule, err);
        setenv("TZ", rules[i].rule, 1);
        tzset();
        for (t = utc(2020, 1, 1, 0, 0); t < utc(2041, 1, 1, 0, 0);
             t += 61 * 60) {
            time_t tt = (time_t)t;
            struct tm tm;
            localtime_r(&tt, &tm);
            cr_assert_eq(cc_tz_offset(z, t), tm.tm_gmtoff,
                         "%s at %lld: %d, libc %ld", rules[i].rule,
                         (long long)t, cc_tz_offset(z, t), tm.tm_gmtoff);
        }
        cc_tz_free(z);
    }
    /* Not rules: refused. */
    n = footer_only(buf, sizeof(buf), 0, "EST5EDT,M13.1.0,M11.1.0");
    cr_assert_eq(
        cc_tz_parse(&(struct cc_tz *){NULL}, "t", buf, n, err, sizeof(err)),
        CC_EINVAL);
    n = footer_only(buf, sizeof(buf), 0, "E5");
    cr_assert_eq(
        cc_tz_parse(&(struct cc_tz *){NULL}, "t", buf, n, err, sizeof(err)),
        CC_EINVAL);
}

/* The southern hemisphere's gap (October) and overlap (April). */
Test(calendar, southern_gaps_and_overlaps) {
    struct cc_tz *syd = zone("Australia/Sydney");
    int64_t day = cc_days_from_civil(2026, 10, 4) * 86400;

    /* 02:00 AEST -> 03:00 AEDT is 2026-10-03 16:00 UTC. */
    cr_assert_eq(cc_tz_to_utc(syd, day + 2 * H + 1800),
                 utc(2026, 10, 3, 16, 0));
    /* 02:30 on 2026-04-05 happens twice: the first is in AEDT. */
    day = cc_days_from_civil(2026, 4, 5) * 86400;
    cr_assert_eq(cc_tz_to_utc(syd, day + 2 * H + 1800),
                 utc(2026, 4, 4, 15, 30));
    cc_tz_free(syd);
}

Test(calendar, leap_second_zones_and_directories_are_refused) {
    struct cc_tz *z;
    char err[256];

    cr_assert_eq(cc_tz_load(&z, NULL, "right/UTC", err, sizeof(err)),
                 CC_EINVAL);
    cr_assert(strstr(err, "leap seconds") != NULL, "%s", err);
    cr_assert_eq(cc_tz_load(&z, NULL, "America", err, sizeof(err)), CC_EINVAL);
    cr_assert(strstr(err, "unknown time zone") != NULL, "%s", err);
}
