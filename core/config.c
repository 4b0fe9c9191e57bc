/*
 * The configuration table and its INI reader. See config.h.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

enum key_type {
    K_ADDR,
    K_SIZE,
    K_DURATION,
    K_UINT,
    K_ENUM,
    K_CHANNELS,
    K_TEXT,  /* free text, shorter than CC_TEXT_MAX */
    K_SECRET /* text that --check-config does not print */
};

struct key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def;
    uint64_t min, max;
    const char *const *choices; /* K_ENUM: NULL-terminated */
};

static const char *const io_choices[] = {"thread", "poll", NULL};
static const char *const bool_choices[] = {"false", "true", NULL};
static const char *const fsync_choices[] = {"always", "batch", "off", NULL};
static const char *const level_choices[] = {"error", "warn", "info", "debug",
                                            NULL};

#define OFF(f) offsetof(struct cc_config, f)
#define KIB ((uint64_t)1024)
#define MIB ((uint64_t)1024 * 1024)
#define DAY_MS (86400000ULL)

static const struct key keys[] = {
    {"server", "ingest", K_ADDR, OFF(ingest), "tcp://127.0.0.1:7400", 0, 0,
     NULL},
    {"server", "ingest_ack", K_ADDR, OFF(ingest_ack), "tcp://127.0.0.1:7401", 0,
     0, NULL},
    {"server", "alerts", K_ADDR, OFF(alerts), "tcp://127.0.0.1:7402", 0, 0,
     NULL},
    {"server", "callbacks", K_ADDR, OFF(callbacks), "tcp://127.0.0.1:7403", 0,
     0, NULL},
    {"server", "query", K_ADDR, OFF(query), "tcp://127.0.0.1:7404", 0, 0, NULL},
    {"server", "max_message", K_SIZE, OFF(max_message), "256KiB", 1 * KIB,
     64 * MIB, NULL},
    {"server", "ingest_io", K_ENUM, OFF(ingest_io), "thread", 0, 0, io_choices},
    {"server", "log_level", K_ENUM, OFF(log_level), "info", 0, 0,
     level_choices},
    {"server", "callback_backlog", K_UINT, OFF(callback_backlog), "100000", 1,
     10000000, NULL},
    {"server", "memory_reserve", K_SIZE, OFF(memory_reserve), "16MiB", 0,
     1024 * MIB, NULL},
    {"durability", "dir", K_TEXT, OFF(data_dir), "/var/lib/contactd", 0, 0,
     NULL},
    {"durability", "fsync", K_ENUM, OFF(fsync), "batch", 0, 0, fsync_choices},
    {"durability", "sync_interval", K_DURATION, OFF(sync_interval_ms), "2ms", 1,
     1000, NULL},
    {"durability", "sync_records", K_UINT, OFF(sync_records), "1000", 1,
     10000000, NULL},
    {"durability", "segment_size", K_SIZE, OFF(segment_size), "64MiB", 1 * MIB,
     1024 * MIB, NULL},
    {"durability", "max_unwritten", K_SIZE, OFF(max_unwritten), "64MiB",
     1 * MIB, 4096 * MIB, NULL},
    {"durability", "snapshot_interval", K_DURATION, OFF(snapshot_interval_ms),
     "5m", 0, 7 * 86400000ull, NULL},
    {"durability", "snapshot_records", K_UINT, OFF(snapshot_records), "1000000",
     0, 1000000000, NULL},
    {"alerts", "log", K_UINT, OFF(alert_log), "100000", 0, 10000000, NULL},
    {"ingest", "dedup_window", K_UINT, OFF(dedup_window), "1000000", 0,
     100000000, NULL},
    {"limits", "max_contacts", K_UINT, OFF(max_contacts), "2000000", 1,
     100000000, NULL},
    {"limits", "max_queues", K_UINT, OFF(max_queues), "1024", 1, 1000000, NULL},
    {"limits", "max_names", K_UINT, OFF(max_names), "100000", 16, 10000000,
     NULL},
    {"limits", "contact_idle", K_DURATION, OFF(contact_idle_ms), "3d", 60000,
     365 * DAY_MS, NULL},
    {"hold", "long", K_DURATION, OFF(hold_long_ms), "60s", 1000, 7 * DAY_MS,
     NULL},
    {"identity", "default_country", K_UINT, OFF(default_country), "1", 1, 999,
     NULL},
    {"identity", "max_identifiers", K_UINT, OFF(max_identifiers), "50", 2,
     10000, NULL},
    {"identity", "max_identities", K_UINT, OFF(max_identities), "4000000", 16,
     1000000000, NULL},
    {"conversation", "reopen_window", K_DURATION, OFF(reopen_window_ms), "72h",
     0, 365 * DAY_MS, NULL},
    {"conversation", "idle_close", K_DURATION, OFF(idle_close_ms), "7d", 60000,
     365 * DAY_MS, NULL},
    {"conversation", "repeat_window", K_DURATION, OFF(repeat_window_ms), "48h",
     0, 365 * DAY_MS, NULL},
    {"conversation", "max_conversations", K_UINT, OFF(max_conversations),
     "2000000", 1, 100000000, NULL},
    {"conversation", "thread_index", K_UINT, OFF(thread_index), "1000000", 0,
     100000000, NULL},
    {"service_level", "target", K_UINT, OFF(sl_target), "80", 1, 100, NULL},
    {"service_level", "window", K_DURATION, OFF(sl_window_ms), "30m", 60000,
     3600000, NULL},
    {"service_level", "hysteresis", K_UINT, OFF(sl_hysteresis), "5", 0, 50,
     NULL},
    {"service_level", "min_answered", K_UINT, OFF(sl_min_answered), "10", 1,
     1000000, NULL},
    {"service_level", "short_abandon", K_DURATION, OFF(short_abandon_ms), "5s",
     0, 600000, NULL},
    {"channels", "extra", K_CHANNELS, OFF(channels), "", 0, 0, NULL},
    {"ami", "enabled", K_ENUM, OFF(ami.enabled), "false", 0, 0, bool_choices},
    {"ami", "host", K_TEXT, OFF(ami.host), "127.0.0.1", 1, 0, NULL},
    {"ami", "port", K_UINT, OFF(ami.port), "5038", 1, 65535, NULL},
    {"ami", "username", K_TEXT, OFF(ami.username), "", 0, 0, NULL},
    {"ami", "secret", K_SECRET, OFF(ami.secret), "", 0, 0, NULL},
    {"ami", "channel", K_TEXT, OFF(ami.channel), "phone", 1, 0, NULL},
    {"ami", "keepalive", K_DURATION, OFF(ami.keepalive_ms), "20s", 1000,
     3600000, NULL},
    {"ami", "reconnect_min", K_DURATION, OFF(ami.reconnect_min_ms), "500ms", 10,
     3600000, NULL},
    {"ami", "reconnect_max", K_DURATION, OFF(ami.reconnect_max_ms), "30s", 10,
     3600000, NULL},
    {"ami", "withdraw_on_callback", K_ENUM, OFF(ami.withdraw), "true", 0, 0,
     bool_choices},
    {"ami", "moh_as_hold", K_ENUM, OFF(ami.moh_as_hold), "false", 0, 0,
     bool_choices},
    {"ami", "max_message", K_SIZE, OFF(ami.max_message), "64KiB", 1 * KIB,
     4 * MIB, NULL},
    {"http", "enabled", K_ENUM, OFF(http.enabled), "false", 0, 0, bool_choices},
    {"http", "listen", K_TEXT, OFF(http.listen), "127.0.0.1:7480", 1, 0, NULL},
    {"http", "max_body", K_SIZE, OFF(http.max_body), "1MiB", 1 * KIB, 64 * MIB,
     NULL},
    {"http", "max_header", K_SIZE, OFF(http.max_header), "32KiB", 4 * KIB,
     1 * MIB, NULL},
    {"http", "max_connections", K_UINT, OFF(http.max_connections), "256", 1,
     10000, NULL},
    {"http", "timeout", K_DURATION, OFF(http.timeout_ms), "30s", 1000, 3600000,
     NULL},
    {"http", "max_depth", K_UINT, OFF(http.max_depth), "32", 4, 1000, NULL},
    {"http.events", "enabled", K_ENUM, OFF(http.events), "true", 0, 0,
     bool_choices},
    {"http.events", "secret", K_SECRET, OFF(http.events_secret), "", 0, 0,
     NULL},
    {"http.chatwoot", "enabled", K_ENUM, OFF(http.chatwoot), "true", 0, 0,
     bool_choices},
    {"http.chatwoot", "secret", K_SECRET, OFF(http.chatwoot_secret), "", 0, 0,
     NULL},
    {"http.chatwoot", "channel", K_TEXT, OFF(http.chatwoot_channel), "chat", 1,
     0, NULL},
    {"http.x", "enabled", K_ENUM, OFF(http.x), "false", 0, 0, bool_choices},
    {"http.x", "consumer_secret", K_SECRET, OFF(http.x_secret), "", 0, 0, NULL},
    {"http.x", "account", K_TEXT, OFF(http.x_account), "", 0, 0, NULL},
    {"http.x", "channel", K_TEXT, OFF(http.x_channel), "social", 1, 0, NULL},
    {"http.messenger", "enabled", K_ENUM, OFF(http.messenger), "false", 0, 0,
     bool_choices},
    {"http.messenger", "app_secret", K_SECRET, OFF(http.messenger_secret), "",
     0, 0, NULL},
    {"http.messenger", "verify_token", K_SECRET, OFF(http.messenger_verify), "",
     0, 0, NULL},
    {"http.messenger", "channel", K_TEXT, OFF(http.messenger_channel), "social",
     1, 0, NULL},
    {"maildir", "enabled", K_ENUM, OFF(maildir.enabled), "false", 0, 0,
     bool_choices},
    {"maildir", "path", K_TEXT, OFF(maildir.path), "", 0, 0, NULL},
    {"maildir", "quarantine", K_TEXT, OFF(maildir.quarantine), "", 0, 0, NULL},
    {"maildir", "support", K_TEXT, OFF(maildir.support), "", 0, 0, NULL},
    {"maildir", "channel", K_TEXT, OFF(maildir.channel), "email", 1, 0, NULL},
    {"maildir", "max_message", K_SIZE, OFF(maildir.max_message), "10MiB",
     1 * KIB, 256 * MIB, NULL},
    {"maildir", "rescan", K_DURATION, OFF(maildir.rescan_ms), "60s", 1000,
     DAY_MS, NULL},
};

static int
parse_uint(const char *s, uint64_t *out, const char **rest) {
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return CC_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return CC_EINVAL;
    *out = v;
    *rest = end;
    return 0;
}

static int
mul_checked(uint64_t a, uint64_t b, uint64_t *out) {
    if (b != 0 && a > UINT64_MAX / b)
        return CC_EINVAL;
    *out = a * b;
    return 0;
}

int
cc_parse_duration(const char *s, uint64_t *ms) {
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *rest;
    uint64_t v;
    size_t i;

    if (parse_uint(s, &v, &rest) != 0)
        return CC_EINVAL;
    if (*rest == '\0')
        return v == 0 ? (*ms = 0, 0) : CC_EINVAL; /* a unit is required */
    for (i = 0; i < CC_ARRAY_SIZE(units); i++) {
        if (strcmp(rest, units[i].unit) == 0)
            return mul_checked(v, units[i].ms, ms);
    }
    return CC_EINVAL;
}

int
cc_parse_size(const char *s, uint64_t *bytes) {
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1 << 20}, {"GiB", 1 << 30}};
    const char *rest;
    uint64_t v;
    size_t i;

    if (parse_uint(s, &v, &rest) != 0)
        return CC_EINVAL;
    for (i = 0; i < CC_ARRAY_SIZE(units); i++) {
        if (strcmp(rest, units[i].unit) == 0)
            return mul_checked(v, units[i].mul, bytes);
    }
    return CC_EINVAL;
}

/* Stores v in *out if it lies in [min, max] (unit names what it counts in
 * the message); else writes the reason into why. */
static int
in_range(uint64_t v, uint64_t min, uint64_t max, const char *unit,
         uint64_t *out, char *why, size_t whylen) {
    if (v < min || v > max)
        return cc_errf(why, whylen, CC_EINVAL,
                       "out of range (%" PRIu64 " to %" PRIu64 "%s)", min, max,
                       unit);
    *out = v;
    return 0;
}

int
cc_parse_bounded(const char *value, bool duration, uint64_t min, uint64_t max,
                 uint64_t *out, char *why, size_t whylen) {
    const char *rest = "";
    uint64_t v;

    if (duration ? cc_parse_duration(value, &v) != 0
                 : parse_uint(value, &v, &rest) != 0 || *rest != '\0')
        return cc_errf(why, whylen, CC_EINVAL,
                       duration ? "expected a duration such as 250ms, 20s, "
                                  "5m, 4h or 2d"
                                : "expected a whole number");
    return in_range(v, min, max, duration ? " ms" : "", out, why, whylen);
}

/* Sets one key from its text; on error writes the reason into why. */
static int
set_key(struct cc_config *cfg, const struct key *k, const char *value,
        char *why, size_t whylen) {
    char *base = (char *)cfg + k->offset;
    uint64_t v = 0;
    int rc, i;

    switch (k->type) {
    case K_ADDR:
        if (strlen(value) >= CC_ADDR_MAX || strstr(value, "://") == NULL) {
            snprintf(why, whylen,
                     "expected an NNG address such as tcp://127.0.0.1:7400");
            return CC_EINVAL;
        }
        strcpy(base, value);
        return 0;
    case K_SIZE:
        if (cc_parse_size(value, &v) != 0) {
            snprintf(why, whylen, "expected a size such as 256KiB or 4MiB");
            return CC_EINVAL;
        }
        return in_range(v, k->min, k->max, " bytes", (uint64_t *)(void *)base,
                        why, whylen);
    case K_DURATION:
    case K_UINT:
        return cc_parse_bounded(value, k->type == K_DURATION, k->min, k->max,
                                (uint64_t *)(void *)base, why, whylen);
    case K_ENUM:
        for (i = 0; k->choices[i] != NULL; i++) {
            if (strcmp(value, k->choices[i]) == 0) {
                *(int *)(void *)base = i;
                return 0;
            }
        }
        snprintf(why, whylen, "expected one of:");
        for (i = 0; k->choices[i] != NULL; i++) {
            size_t used = strlen(why);
            snprintf(why + used, whylen - used, " %s", k->choices[i]);
        }
        return CC_EINVAL;
    case K_TEXT:
    case K_SECRET:
        if (strlen(value) >= CC_TEXT_MAX)
            return cc_errf(why, whylen, CC_EINVAL, "longer than %d bytes",
                           CC_TEXT_MAX - 1);
        if (k->min != 0 && value[0] == '\0')
            return cc_errf(why, whylen, CC_EINVAL, "must not be empty");
        strcpy(base, value);
        return 0;
    case K_CHANNELS: {
        struct cc_channels *ch = (struct cc_channels *)(void *)base;
        char buf[1024], *tok, *save = NULL;
        if (strlen(value) >= sizeof(buf)) {
            snprintf(why, whylen, "list too long");
            return CC_EINVAL;
        }
        cc_channels_init(ch);
        strcpy(buf, value);
        for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
             tok = strtok_r(NULL, ", \t", &save)) {
            rc = cc_channels_add(ch, tok);
            if (rc == CC_EEXIST) {
                snprintf(why, whylen, "channel '%s' named twice or built in",
                         tok);
                return CC_EINVAL;
            }
            if (rc != 0) {
                snprintf(why, whylen,
                         "channel '%s': names are at most 31 of a-z 0-9 _ -, "
                         "and at most 32 channels in all",
                         tok);
                return CC_EINVAL;
            }
        }
        return 0;
    }
    }
    return 0;
}

void
cc_config_defaults(struct cc_config *cfg) {
    char why[256];
    size_t i;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    cc_channels_init(&cfg->channels);
    for (i = 0; i < CC_ARRAY_SIZE(keys); i++) {
        rc = set_key(cfg, &keys[i], keys[i].def, why, sizeof(why));
        CC_ASSERT(rc == 0);
    }
    cc_sla_config_init(&cfg->sla);
    rc = cc_sla_config_finish(&cfg->sla, &cfg->channels, cfg->hold_long_ms,
                              NULL, why, sizeof(why));
    CC_ASSERT(rc == 0);
    cc_cb_config_init(&cfg->cb);
}

struct load_ctx {
    struct cc_config *cfg;
    const char *name;
    const char *text; /* string input, or NULL */
    FILE *file;       /* file input, or NULL */
    int line;         /* lines read so far */
    char *err;
    size_t errlen;
    bool failed;
};

static int
handler(void *user, const char *section, const char *name, const char *value) {
    struct load_ctx *c = user;
    char why[256];
    size_t i;
    int rc;

    if (c->failed)
        return 1; /* report the first error only */
    /* Sections read by their own modules. */
    rc = 1;
    if (strncmp(section, "sla.", 4) == 0 ||
        strncmp(section, "calendar.", 9) == 0)
        rc = cc_sla_config_set(&c->cfg->sla, section, name, value, c->line, why,
                               sizeof(why));
    else if (strcmp(section, "callback") == 0 ||
             strncmp(section, "callback.", 9) == 0)
        rc = cc_cb_config_set(&c->cfg->cb, section, name, value, c->line, why,
                              sizeof(why));
    if (rc == 0)
        return 1;
    if (rc != 1) {
        snprintf(c->err, c->errlen, "%s:%d: [%s] %s = %s: %s", c->name, c->line,
                 section, name, value, why);
        c->failed = true;
        return 0;
    }
    for (i = 0; i < CC_ARRAY_SIZE(keys); i++) {
        if (strcmp(keys[i].section, section) != 0 ||
            strcmp(keys[i].name, name) != 0)
            continue;
        if (set_key(c->cfg, &keys[i], value, why, sizeof(why)) != 0) {
            snprintf(c->err, c->errlen, "%s:%d: [%s] %s = %s: %s", c->name,
                     c->line, section, name, value, why);
            c->failed = true;
            return 0;
        }
        return 1;
    }
    snprintf(c->err, c->errlen, "%s:%d: [%s] %s: unknown key", c->name, c->line,
             section, name);
    c->failed = true;
    return 0;
}

/* inih reads line by line through this, which lets us count lines: the
 * handler runs right after the line holding its key was read. */
static char *
reader(char *buf, int size, void *stream) {
    struct load_ctx *c = stream;
    char *r;
    int i = 0;

    if (c->file != NULL) {
        r = fgets(buf, size, c->file);
    } else {
        if (*c->text == '\0')
            return NULL;
        while (i < size - 1 && c->text[i] != '\0' && c->text[i] != '\n')
            i++;
        if (c->text[i] == '\n' && i < size - 1)
            i++;
        memcpy(buf, c->text, (size_t)i);
        buf[i] = '\0';
        c->text += i;
        r = buf;
    }
    if (r != NULL)
        c->line++;
    return r;
}

/* Whether [http] listen = host:port binds only the loopback interface. */
static bool
listen_is_loopback(const char *listen) {
    return strncmp(listen, "127.", 4) == 0 ||
           strncmp(listen, "localhost:", 10) == 0 ||
           strncmp(listen, "[::1]:", 6) == 0;
}

static int
channel_known(const struct cc_config *cfg, const char *section,
              const char *name, char *why, size_t whylen) {
    struct cc_str n = {name, (uint32_t)strlen(name)};

    if (cc_channels_find(&cfg->channels, n) >= 0)
        return 0;
    return cc_errf(why, whylen, CC_EINVAL,
                   "[%s] channel = %s: not a channel (built in: phone, chat, "
                   "email, social; others go in [channels] extra)",
                   section, name);
}

/* What the adapters' sections must agree on, checked once all is read. */
static int
adapters_check(const struct cc_config *cfg, char *why, size_t whylen) {
    const struct cc_http_config *h = &cfg->http;
    int rc;

    if (cfg->ami.enabled) {
        if ((rc = channel_known(cfg, "ami", cfg->ami.channel, why, whylen)))
            return rc;
        if (cfg->ami.reconnect_min_ms > cfg->ami.reconnect_max_ms)
            return cc_errf(why, whylen, CC_EINVAL,
                           "[ami] reconnect_min is longer than reconnect_max");
    }
    if (cfg->maildir.enabled) {
        if ((rc = channel_known(cfg, "maildir", cfg->maildir.channel, why,
                                whylen)))
            return rc;
        if (cfg->maildir.path[0] == '\0')
            return cc_errf(why, whylen, CC_EINVAL,
                           "[maildir] is enabled without a path");
    }
    if (!h->enabled)
        return 0;
    if ((h->chatwoot &&
         (rc = channel_known(cfg, "http.chatwoot", h->chatwoot_channel, why,
                             whylen))) ||
        (h->x &&
         (rc = channel_known(cfg, "http.x", h->x_channel, why, whylen))) ||
        (h->messenger &&
         (rc = channel_known(cfg, "http.messenger", h->messenger_channel, why,
                             whylen))))
        return rc;
    if (h->x && h->x_secret[0] == '\0')
        return cc_errf(why, whylen, CC_EINVAL,
                       "[http.x] is enabled without consumer_secret: X signs "
                       "every request with it");
    if (h->messenger &&
        (h->messenger_secret[0] == '\0' || h->messenger_verify[0] == '\0'))
        return cc_errf(why, whylen, CC_EINVAL,
                       "[http.messenger] is enabled without app_secret and "
                       "verify_token");
    /* Anyone who can reach an unsigned endpoint can inject events: off
     * loopback, each endpoint that is on needs its secret. */
    if (!listen_is_loopback(h->listen) &&
        ((h->events && h->events_secret[0] == '\0') ||
         (h->chatwoot && h->chatwoot_secret[0] == '\0')))
        return cc_errf(why, whylen, CC_EINVAL,
                       "[http] listen = %s is reachable from other machines: "
                       "set [http.events] secret and [http.chatwoot] secret, "
                       "or enabled = false for those not used",
                       h->listen);
    return 0;
}

static int
load(struct load_ctx *c) {
    char why[512];
    int rc;

    /* The file's policies come first; the built-in ones follow them. */
    cc_sla_config_init(&c->cfg->sla);
    cc_cb_config_init(&c->cfg->cb);
    rc = ini_parse_stream(reader, c, handler, c);
    if (c->failed)
        return CC_EINVAL;
    if (rc > 0) {
        snprintf(c->err, c->errlen,
                 "%s:%d: syntax error (expected [section], key = value, or "
                 "a ';' or '#' comment; lines are at most 200 bytes)",
                 c->name, rc);
        return CC_EINVAL;
    }
    if (rc < 0) {
        snprintf(c->err, c->errlen, "%s: cannot read", c->name);
        return CC_EIO;
    }
    if (c->cfg->sl_window_ms % 60000 != 0) {
        snprintf(c->err, c->errlen,
                 "%s: [service_level] window: whole minutes, 1m to 60m",
                 c->name);
        return CC_EINVAL;
    }
    if (cc_sla_config_finish(&c->cfg->sla, &c->cfg->channels,
                             c->cfg->hold_long_ms, NULL, why,
                             sizeof(why)) != 0) {
        snprintf(c->err, c->errlen, "%s:%s", c->name, why);
        return CC_EINVAL;
    }
    if (cc_cb_config_finish(&c->cfg->cb, &c->cfg->sla, why, sizeof(why)) != 0) {
        snprintf(c->err, c->errlen, "%s:%s", c->name, why);
        return CC_EINVAL;
    }
    if (adapters_check(c->cfg, why, sizeof(why)) != 0) {
        snprintf(c->err, c->errlen, "%s: %s", c->name, why);
        return CC_EINVAL;
    }
    return 0;
}

int
cc_config_load(struct cc_config *cfg, const char *path, char *err,
               size_t errlen) {
    struct load_ctx c = {cfg, path, NULL, NULL, 0, err, errlen, false};
    int rc;

    c.file = fopen(path, "r");
    if (c.file == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return CC_EIO;
    }
    rc = load(&c);
    fclose(c.file);
    return rc;
}

int
cc_config_load_string(struct cc_config *cfg, const char *text, const char *name,
                      char *err, size_t errlen) {
    struct load_ctx c = {cfg, name, text, NULL, 0, err, errlen, false};
    return load(&c);
}

static void
write_duration(FILE *out, uint64_t ms) {
    if (ms != 0 && ms % 86400000 == 0)
        fprintf(out, "%" PRIu64 "d", ms / 86400000);
    else if (ms != 0 && ms % 3600000 == 0)
        fprintf(out, "%" PRIu64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        fprintf(out, "%" PRIu64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        fprintf(out, "%" PRIu64 "s", ms / 1000);
    else
        fprintf(out, "%" PRIu64 "ms", ms);
}

static void
write_stages(FILE *out, const char *key, const struct cc_sla_stage *st,
             uint8_t n) {
    uint8_t i;

    fprintf(out, "%s = ", key);
    for (i = 0; i < n; i++) {
        fputs(i ? ", " : "", out);
        if (st[i].kind == CC_STAGE_AFTER ||
            (st[i].kind == CC_STAGE_SHARE && strcmp(key, "escalate") == 0))
            fputc('+', out);
        if (st[i].kind == CC_STAGE_SHARE) {
            uint64_t v = st[i].v - (st[i].v > 1000 ? 1000 : 0);
            fprintf(out, "%" PRIu64 ".%" PRIu64 "%%", v / 10, v % 10);
        } else
            write_duration(out, st[i].v);
    }
    fputc('\n', out);
}

static void
write_policy(FILE *out, const struct cc_sla_policy *p, const char *prefix) {
    unsigned k;

    fprintf(out, "\n%s[%s]\n", prefix, p->section);
    for (k = 0; k < CC_CLOCKS; k++) {
        if (p->target[k] == 0)
            continue;
        fprintf(out, "%s%s = ", prefix, cc_clock_name(k));
        if (p->target[k] == CC_SLA_OFF)
            fputs("off", out);
        else
            write_duration(out, p->target[k]);
        fputc('\n', out);
    }
    if (p->warn_set && (p->nwarn != 0 || !p->builtin)) {
        fputs(prefix, out);
        write_stages(out, "warn", p->warn, p->nwarn);
    }
    if (p->escalate_set && !p->builtin) {
        fputs(prefix, out);
        write_stages(out, "escalate", p->escalate, p->nescalate);
    }
    if (p->calendar[0] != '\0')
        fprintf(out, "%scalendar = %s\n", prefix, p->calendar);
    if (p->queue[0] != '\0')
        fprintf(out, "%squeue = %s\n", prefix, p->queue);
    if (p->priority >= 0)
        fprintf(out, "%spriority = %d\n", prefix, (int)p->priority);
    /* The section's own name is the tag unless a match was given. */
    if (p->tag[0] != '\0' && !p->implicit_tag && !p->builtin)
        fprintf(out, "%stag = %s\n", prefix, p->tag);
}

static void
write_sla(const struct cc_sla_config *c, FILE *out) {
    static const char *const days[7] = {"mon", "tue", "wed", "thu",
                                        "fri", "sat", "sun"};
    uint32_t i, j;
    unsigned d;

    for (i = 0; i < c->ncalendars; i++) {
        const struct cc_sla_calendar *k = &c->calendars[i];
        fprintf(out, "\n[calendar.%s]\ntimezone = %s\n", k->name, k->timezone);
        for (d = 0; d < 7; d++) {
            fprintf(out, "%s = ", days[d]);
            if (k->cal.nwin[d] == 0)
                fputs("closed", out);
            for (j = 0; j < k->cal.nwin[d]; j++) {
                const struct cc_cal_window *w = &k->cal.win[d][j];
                fprintf(out, "%s%02u:%02u-%02u:%02u", j ? ", " : "",
                        w->start / 60, w->start % 60,
                        w->end == 1440 ? 24 : w->end / 60 % 24, w->end % 60);
            }
            fputc('\n', out);
        }
        if (k->cal.nholidays != 0) {
            fputs("holidays = ", out);
            for (j = 0; j < k->cal.nholidays; j++) {
                int64_t y;
                unsigned m, dd;
                cc_civil_from_days(k->cal.holidays[j], &y, &m, &dd);
                fprintf(out, "%s%04d-%02u-%02u", j ? ", " : "", (int)y, m, dd);
            }
            fputc('\n', out);
        }
    }
    for (i = 0; i < c->npolicies; i++)
        if (!c->policies[i].builtin)
            write_policy(out, &c->policies[i], "");
    fputs("\n; Built-in SLA policies, after those above:\n", out);
    for (i = 0; i < c->npolicies; i++)
        if (c->policies[i].builtin)
            write_policy(out, &c->policies[i], "; ");
}

void
cc_config_write(const struct cc_config *cfg, FILE *out) {
    const char *section = "";
    const char *base = (const char *)cfg;
    size_t i;
    uint32_t j;

    for (i = 0; i < CC_ARRAY_SIZE(keys); i++) {
        const struct key *k = &keys[i];
        const void *f = base + k->offset;
        uint64_t v = 0;
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        if (k->type == K_SECRET) {
            /* Not shown: the output is for reading and sharing. */
            fprintf(out, "%s%s = %s\n", *(const char *)f ? "; " : "", k->name,
                    *(const char *)f ? "(set, not shown)" : "");
            continue;
        }
        fprintf(out, "%s = ", k->name);
        if (k->type == K_SIZE || k->type == K_DURATION || k->type == K_UINT)
            memcpy(&v, f, sizeof(v));
        switch (k->type) {
        case K_ADDR:
        case K_TEXT:
            fputs((const char *)f, out);
            break;
        case K_SECRET:
            break;
        case K_SIZE:
            if (v % MIB == 0)
                fprintf(out, "%" PRIu64 "MiB", v / MIB);
            else if (v % KIB == 0)
                fprintf(out, "%" PRIu64 "KiB", v / KIB);
            else
                fprintf(out, "%" PRIu64, v);
            break;
        case K_DURATION:
            write_duration(out, v);
            break;
        case K_UINT:
            fprintf(out, "%" PRIu64, v);
            break;
        case K_ENUM:
            fputs(k->choices[*(const int *)f], out);
            break;
        case K_CHANNELS: {
            const struct cc_channels *ch = f;
            for (j = 4; j < ch->n; j++)
                fprintf(out, "%s%s", j > 4 ? ", " : "", ch->names[j]);
            break;
        }
        }
        fputc('\n', out);
    }
    cc_cb_config_write(&cfg->cb, out, write_duration);
    write_sla(&cfg->sla, out);
}
