/*
 * SLA policies from the configuration: the built-in defaults, first match
 * wins in the order written, stages in both forms and escalations, and
 * policies refused with file, line and reason.
 */
#include <criterion/criterion.h>

#include "config.h"
#include "sla.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(sla);

static struct cc_sla_applied
applied(const struct cc_config *c, const char *channel, const char *queue,
        int32_t priority, const char *tag, enum cc_clock k) {
    struct cc_str t = {tag, tag ? (uint32_t)strlen(tag) : 0};
    struct cc_sla_subject s = {
        channel,
        {queue ? queue : "", queue ? (uint32_t)strlen(queue) : 0},
        priority,
        &t,
        tag ? 1 : 0};
    struct cc_sla_applied a;
    cc_sla_apply(&c->sla, &s, k, &a);
    return a;
}

static void
load(struct cc_config *c, const char *text) {
    char err[512] = "";
    cc_config_defaults(c);
    cr_assert_eq(cc_config_load_string(c, text, "t.conf", err, sizeof(err)), 0,
                 "%s", err);
}

Test(sla, built_in_defaults) {
    struct cc_config *c = calloc(1, sizeof(*c));
    struct cc_sla_applied a;

    cc_config_defaults(c);
    a = applied(c, "phone", NULL, -1, NULL, CC_CLOCK_ANSWER);
    cr_assert_eq(a.target, 20000);
    cr_assert_eq(a.nwarn, 1);
    cr_assert_eq(cc_sla_stage_at(&a.warn[0], a.target), 16000);
    cr_assert_eq(a.nescalate, 0);
    cr_assert_null(a.calendar);
    cr_assert_eq(
        applied(c, "chat", NULL, -1, NULL, CC_CLOCK_FIRST_RESPONSE).target,
        60000);
    cr_assert_eq(
        applied(c, "chat", NULL, -1, NULL, CC_CLOCK_NEXT_RESPONSE).target,
        120000);
    cr_assert_eq(
        applied(c, "email", NULL, -1, NULL, CC_CLOCK_FIRST_RESPONSE).target,
        4 * 3600000);
    cr_assert_eq(
        applied(c, "social", NULL, -1, NULL, CC_CLOCK_FIRST_RESPONSE).target,
        3600000);
    cr_assert_eq(
        applied(c, "social", NULL, -1, "complaint", CC_CLOCK_FIRST_RESPONSE)
            .target,
        30 * 60000);
    cr_assert_eq(
        applied(c, "email", NULL, -1, NULL, CC_CLOCK_RESOLUTION).target,
        24 * 3600000);
    /* The hold clock takes [hold] long. */
    cr_assert_eq(applied(c, "phone", NULL, -1, NULL, CC_CLOCK_HOLD).target,
                 60000);
    /* No policy sets email's answer clock: none runs. */
    a = applied(c, "email", NULL, -1, NULL, CC_CLOCK_ANSWER);
    cr_assert_eq(a.target, CC_SLA_OFF);
    cr_assert_null(a.by);
    free(c);
}

static const char policies[] = "[hold]\n"
                               "long = 90s\n"
                               "[calendar.support]\n"
                               "timezone = Europe/Berlin\n"
                               "mon = 09:00-17:00\n"
                               "tue = 09:00-17:00\n"
                               "holidays = 2026-12-25\n"
                               "[sla.chat.vip]\n"
                               "first_response = 30s\n"
                               "warn = 50%, 10s\n"
                               "escalate = +50%, +1h\n"
                               "[sla.chat]\n"
                               "first_response = 60s\n"
                               "next_response = 2m\n"
                               "warn = 50%, 80%\n"
                               "calendar = support\n"
                               "[sla.any.billing]\n"
                               "queue = billing\n"
                               "priority = 1\n"
                               "resolution = 4h\n"
                               "[sla.social.vip]\n"
                               "tag = gold\n"
                               "first_response = 10m\n"
                               "[sla.email]\n"
                               "resolution = off\n";

Test(sla, first_matching_policy_wins_in_the_order_written) {
    struct cc_config *c = calloc(1, sizeof(*c));
    struct cc_sla_applied a;

    load(c, policies);
    a = applied(c, "chat", NULL, -1, "vip", CC_CLOCK_FIRST_RESPONSE);
    cr_assert_eq(a.target, 30000);
    cr_assert_str_eq(a.by->section, "sla.chat.vip");
    cr_assert_eq(a.nwarn, 2);
    cr_assert_eq(cc_sla_stage_at(&a.warn[0], a.target), 15000);
    cr_assert_eq(cc_sla_stage_at(&a.warn[1], a.target), 20000);
    cr_assert_eq(a.nescalate, 2);
    cr_assert_eq(cc_sla_stage_at(&a.escalate[0], a.target), 45000);
    cr_assert_eq(cc_sla_stage_at(&a.escalate[1], a.target), 3630000);
    /* The vip policy names no calendar: the next matching one's. */
    cr_assert_str_eq(a.calendar, "support");

    a = applied(c, "chat", NULL, -1, NULL, CC_CLOCK_FIRST_RESPONSE);
    cr_assert_eq(a.target, 60000);
    cr_assert_eq(cc_sla_stage_at(&a.warn[1], a.target), 48000);
    cr_assert_eq(a.nescalate, 0);
    /* A clock the chat policy leaves alone takes the built-in target,
     * and still the chat policy's warnings and calendar. */
    a = applied(c, "chat", NULL, -1, NULL, CC_CLOCK_RESOLUTION);
    cr_assert_eq(a.target, 24 * 3600000);
    cr_assert_str_eq(a.by->section, "sla.any");
    cr_assert_eq(a.nwarn, 2);
    cr_assert_str_eq(a.calendar, "support");
    /* A VIP chat's next response: the chat target, the VIP warnings. */
    a = applied(c, "chat", NULL, -1, "vip", CC_CLOCK_NEXT_RESPONSE);
    cr_assert_eq(a.target, 120000);
    cr_assert_eq(cc_sla_stage_at(&a.warn[1], a.target), 110000);
    /* Email's own policies set no calendar or warnings: the defaults. */
    a = applied(c, "email", NULL, -1, NULL, CC_CLOCK_FIRST_RESPONSE);
    cr_assert_null(a.calendar);
    cr_assert_eq(a.nwarn, 1);

    /* The billing policy needs both its queue and its priority. */
    cr_assert_eq(
        applied(c, "phone", "billing", 1, NULL, CC_CLOCK_RESOLUTION).target,
        4 * 3600000);
    cr_assert_eq(
        applied(c, "phone", "billing", 2, NULL, CC_CLOCK_RESOLUTION).target,
        24 * 3600000);
    cr_assert_eq(
        applied(c, "phone", "sales", 1, "billing", CC_CLOCK_RESOLUTION).target,
        24 * 3600000);
    /* An explicit tag replaces the section's name. */
    cr_assert_eq(
        applied(c, "social", NULL, -1, "gold", CC_CLOCK_FIRST_RESPONSE).target,
        600000);
    cr_assert_eq(
        applied(c, "social", NULL, -1, "vip", CC_CLOCK_FIRST_RESPONSE).target,
        3600000);
    /* "off" stops the search: no clock. */
    cr_assert_eq(
        applied(c, "email", NULL, -1, NULL, CC_CLOCK_RESOLUTION).target,
        CC_SLA_OFF);
    cr_assert_eq(applied(c, "phone", NULL, -1, NULL, CC_CLOCK_HOLD).target,
                 90000);
    free(c);
}

Test(sla, written_policies_read_back_the_same) {
    struct cc_config *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    static const char *const channels[] = {"phone", "chat", "email", "social"};
    static const char *const tags[] = {NULL, "vip", "gold", "complaint",
                                       "billing"};
    char *buf = NULL, err[512] = "";
    size_t len = 0, i, j;
    unsigned k;
    FILE *f;

    load(a, policies);
    f = open_memstream(&buf, &len);
    cc_config_write(a, f);
    fclose(f);
    cc_config_defaults(b);
    cr_assert_eq(cc_config_load_string(b, buf, "w", err, sizeof(err)), 0,
                 "%s\n%s", err, buf);
    cr_assert_eq(a->sla.npolicies, b->sla.npolicies, "%s", buf);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 5; j++)
            for (k = 0; k < CC_CLOCKS; k++) {
                struct cc_sla_applied x, y;
                x = applied(a, channels[i], "billing", 1, tags[j], k);
                y = applied(b, channels[i], "billing", 1, tags[j], k);
                cr_assert_eq(x.target, y.target);
                cr_assert_eq(x.nwarn, y.nwarn);
                cr_assert_eq(x.nescalate, y.nescalate);
                cr_assert(x.nwarn == 0 ||
                          memcmp(x.warn, y.warn, x.nwarn * sizeof(*x.warn)) ==
                              0);
                cr_assert(x.nescalate == 0 ||
                          memcmp(x.escalate, y.escalate,
                                 x.nescalate * sizeof(*x.escalate)) == 0);
                cr_assert((x.calendar == NULL) == (y.calendar == NULL));
            }
    cr_assert_eq(memcmp(&a->sla.calendars[0].cal, &b->sla.calendars[0].cal,
                        sizeof(a->sla.calendars[0].cal)),
                 0);
    free(buf);
    free(a);
    free(b);
}

/* Each bad policy stops the load with the file, the line and why. */
Test(sla, bad_policies_are_refused_with_file_line_and_reason) {
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[sla.chat]\nwarn = 120%\n", "t.conf:2: [sla.chat] warn = 120%"},
        {"[sla.chat]\nwarn = 100%\n", "at or after its breach"},
        {"[sla.chat]\nfirst_response = 5m\nwarn = 10m\n",
         "t.conf:2: [sla.chat] a warning"},
        {"[sla.chat]\nfirst_response = -5m\n", "t.conf:2:"},
        {"[sla.chat]\nfirst_response = 0\n", "expected a duration"},
        {"[sla.chat]\nescalate = 50%\n", "+50%"},
        {"[sla.fax]\nanswer = 20s\n", "unknown channel 'fax'"},
        {"[sla.Chat]\nanswer = 20s\n", "[sla.CHANNEL]"},
        {"[sla.chat]\nspeed = 20s\n", "unknown key"},
        {"[sla.chat]\ncalendar = nights\n", "calendar 'nights' is not defined"},
        {"[calendar.c]\ntimezone = Mars/Olympus_Mons\nmon = 09:00-17:00\n",
         "t.conf:2: [calendar.c] unknown time zone"},
        {"[calendar.c]\nmon = 09:00-17:00\n", "timezone is required"},
        {"[calendar.c]\ntimezone = UTC\nmon = 09:00-12:00, 11:00-13:00\n",
         "t.conf:3: [calendar.c] mon = 09:00-12:00, 11:00-13:00: mon: "
         "windows"},
        {"[calendar.c]\ntimezone = UTC\n", "no opening hours"},
        {"[calendar.c]\ntimezone = UTC\nmon = 9-5\n", "not a window"},
        {"[sla.chat]\nescalate = +400d\n", "+365d"},
        {"[sla.chat]\npriority = 10\n", "from 0 to 9"},
    };
    struct cc_config *c = calloc(1, sizeof(*c));
    char err[512];
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cc_config_defaults(c);
        err[0] = '\0';
        cr_assert_eq(
            cc_config_load_string(c, bad[i].text, "t.conf", err, sizeof(err)),
            CC_EINVAL, "accepted: %s", bad[i].text);
        cr_assert(strstr(err, bad[i].want) != NULL, "%s: got \"%s\"",
                  bad[i].text, err);
    }
    /* An extra channel may have policies. */
    cc_config_defaults(c);
    cr_assert_eq(cc_config_load_string(c,
                                       "[sla.sms]\nfirst_response = 5m\n"
                                       "[channels]\nextra = sms\n",
                                       "t.conf", err, sizeof(err)),
                 0, "%s", err);
    free(c);
}
