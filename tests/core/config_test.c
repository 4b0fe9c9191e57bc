/*
 * Configuration parsing: units, defaults, and errors that name the file,
 * line, key and reason.
 */
#include <criterion/criterion.h>

#include "config.h"

TestSuite(config);

Test(config, durations) {
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"250ms", 250},   {"20s", 20000},    {"5m", 300000},
              {"4h", 14400000}, {"2d", 172800000}, {"0", 0}};
    static const char *const bad[] = {
        "", "20", "s", "5 m", "-1s", "1.5s", "3w", "99999999999999999999s"};
    uint64_t v;
    size_t i;

    for (i = 0; i < CC_ARRAY_SIZE(ok); i++) {
        cr_assert_eq(cc_parse_duration(ok[i].s, &v), 0, "%s", ok[i].s);
        cr_assert_eq(v, ok[i].ms, "%s", ok[i].s);
    }
    for (i = 0; i < CC_ARRAY_SIZE(bad); i++)
        cr_assert_neq(cc_parse_duration(bad[i], &v), 0, "'%s'", bad[i]);
}

Test(config, sizes) {
    uint64_t v;
    cr_assert_eq(cc_parse_size("256KiB", &v), 0);
    cr_assert_eq(v, 262144);
    cr_assert_eq(cc_parse_size("4MiB", &v), 0);
    cr_assert_eq(v, 4194304);
    cr_assert_eq(cc_parse_size("1GiB", &v), 0);
    cr_assert_eq(v, 1073741824);
    cr_assert_eq(cc_parse_size("65536", &v), 0);
    cr_assert_eq(v, 65536);
    cr_assert_neq(cc_parse_size("256KB", &v), 0);
    cr_assert_neq(cc_parse_size("lots", &v), 0);
}

Test(config, defaults_match_the_documented_keys) {
    struct cc_config c;
    cc_config_defaults(&c);
    cr_assert_str_eq(c.ingest, "tcp://127.0.0.1:7400");
    cr_assert_str_eq(c.ingest_ack, "tcp://127.0.0.1:7401");
    cr_assert_str_eq(c.alerts, "tcp://127.0.0.1:7402");
    cr_assert_str_eq(c.callbacks, "tcp://127.0.0.1:7403");
    cr_assert_str_eq(c.query, "tcp://127.0.0.1:7404");
    cr_assert_eq(c.max_message, 262144);
    cr_assert_eq(c.hold_long_ms, 60000);
    cr_assert_eq(c.ingest_io, CC_IO_THREAD);
    cr_assert_eq(c.channels.n, 4);
}

Test(config, file_values_override_defaults) {
    static const char text[] = "; comment\n"
                               "[server]\n"
                               "ingest = tcp://127.0.0.1:9400\n"
                               "max_message = 1MiB\n"
                               "ingest_io = poll\n"
                               "\n"
                               "[hold]\n"
                               "long = 90s ; inline comment\n"
                               "[channels]\n"
                               "extra = sms, whatsapp\n";
    struct cc_config c;
    char err[256] = "";

    cc_config_defaults(&c);
    cr_assert_eq(cc_config_load_string(&c, text, "t.conf", err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(c.ingest, "tcp://127.0.0.1:9400");
    cr_assert_eq(c.max_message, 1048576);
    cr_assert_eq(c.ingest_io, CC_IO_POLL);
    cr_assert_eq(c.hold_long_ms, 90000);
    cr_assert_eq(c.channels.n, 6);
    cr_assert_str_eq(c.channels.names[5], "whatsapp");
}

static void
expect_error(const char *text, const char *want) {
    struct cc_config c;
    char err[256] = "";
    cc_config_defaults(&c);
    cr_assert_eq(cc_config_load_string(&c, text, "t.conf", err, sizeof(err)),
                 CC_EINVAL, "accepted: %s", text);
    cr_assert(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
}

Test(config, errors_name_file_line_key_and_reason) {
    expect_error("[server]\n\nbogus = 1\n", "t.conf:3: [server] bogus: "
                                            "unknown key");
    expect_error("[hold]\nlong = 20\n", "t.conf:2: [hold] long = 20: "
                                        "expected a duration");
    expect_error("[hold]\nlong = 10ms\n", "out of range");
    expect_error("[server]\nmax_message = 12 parsecs\n", "expected a size");
    expect_error("[server]\ningest_io = magic\n", "expected one of: thread "
                                                  "poll");
    expect_error("[server]\ningest = localhost\n", "NNG address");
    expect_error("[nowhere]\nkey = 1\n", "[nowhere] key: unknown key");
    expect_error("[channels]\nextra = phone\n", "named twice or built in");
    expect_error("[channels]\nextra = Bad!\n", "channel 'Bad!'");
    expect_error("[server]\nthis line has no equals sign\n",
                 "t.conf:2: syntax error");
}

Test(config, missing_file_is_an_io_error) {
    struct cc_config c;
    char err[256];
    cc_config_defaults(&c);
    cr_assert_eq(
        cc_config_load(&c, "/nonexistent/contactd.conf", err, sizeof(err)),
        CC_EIO);
    cr_assert(strstr(err, "/nonexistent/contactd.conf") != NULL);
}

Test(config, written_config_reads_back_the_same) {
    struct cc_config a, b;
    char *buf = NULL, err[256] = "";
    size_t len = 0;
    FILE *f;

    cc_config_defaults(&a);
    cr_assert_eq(cc_config_load_string(&a,
                                       "[hold]\nlong = 1500ms\n[channels]\n"
                                       "extra = sms\n",
                                       "t", err, sizeof(err)),
                 0, "%s", err);
    f = open_memstream(&buf, &len);
    cc_config_write(&a, f);
    fclose(f);
    cc_config_defaults(&b);
    cr_assert_eq(cc_config_load_string(&b, buf, "w", err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
    free(buf);
}
