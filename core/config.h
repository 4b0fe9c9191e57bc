/*
 * Configuration: an INI file read with libinih over embedded defaults, so
 * contactd runs with no file at all. One table in config.c lists every key
 * with its type, default and limits; parsing, validation and
 * --check-config's output all come from it, and conf/contactd.conf
 * documents the same keys. Unknown keys and bad values are errors that name
 * the file, line, key and reason.
 */
#ifndef CC_CONFIG_H
#define CC_CONFIG_H

#include "cbconfig.h"
#include "cc.h"
#include "event.h"
#include "sla.h"

#include <stdbool.h>

#define CC_ADDR_MAX 256

enum cc_ingest_io {
    CC_IO_THREAD, /* a receiving thread hands batches to the loop */
    CC_IO_POLL    /* uv_poll on NNG's receive descriptor */
};

#define CC_TEXT_MAX 256

/* [ami]: the Asterisk Manager Interface client (channels/phone). */
struct cc_ami_config {
    int enabled;
    char host[CC_TEXT_MAX];
    uint64_t port;
    char username[CC_TEXT_MAX];
    char secret[CC_TEXT_MAX];
    char channel[CC_TEXT_MAX]; /* the channel its events carry */
    uint64_t keepalive_ms;     /* a Ping after this much silence */
    uint64_t reconnect_min_ms, reconnect_max_ms;
    int withdraw;         /* QueueWithdrawCaller when a callback is accepted */
    int moh_as_hold;      /* MusicOnHoldStart/Stop on a connected call: hold */
    uint64_t max_message; /* bytes of one AMI message */
};

/* [http] and its endpoints: webhooks (channels/chat, channels/social). */
struct cc_http_config {
    int enabled;
    char listen[CC_TEXT_MAX]; /* host:port */
    uint64_t max_body, max_header, max_connections, timeout_ms, max_depth;
    /* [http.events]: our events as JSON */
    int events;
    char events_secret[CC_TEXT_MAX];
    /* [http.chatwoot] */
    int chatwoot;
    char chatwoot_secret[CC_TEXT_MAX];
    char chatwoot_channel[CC_TEXT_MAX];
    /* [http.x]: the Account Activity API */
    int x;
    char x_secret[CC_TEXT_MAX];  /* the app's consumer secret */
    char x_account[CC_TEXT_MAX]; /* the support account's user id */
    char x_channel[CC_TEXT_MAX];
    /* [http.messenger]: Facebook Messenger and Instagram */
    int messenger;
    char messenger_secret[CC_TEXT_MAX]; /* the app secret */
    char messenger_verify[CC_TEXT_MAX]; /* hub.verify_token */
    char messenger_channel[CC_TEXT_MAX];
};

/* [maildir]: the support mailbox (channels/email). */
struct cc_maildir_config {
    int enabled;
    char path[CC_TEXT_MAX];
    char quarantine[CC_TEXT_MAX];
    char support[CC_TEXT_MAX]; /* the support team's addresses, ", " list */
    char channel[CC_TEXT_MAX];
    uint64_t max_message;
    uint64_t rescan_ms; /* a full scan of new/ as a safety net */
};

enum cc_log_level { CC_LOG_ERROR, CC_LOG_WARN, CC_LOG_INFO, CC_LOG_DEBUG };

/* [durability] fsync: when what the journal wrote is made durable. */
enum cc_fsync {
    CC_FSYNC_ALWAYS, /* a sync as soon as records are written */
    CC_FSYNC_BATCH,  /* a sync every sync_interval or sync_records */
    CC_FSYNC_OFF     /* never: the page cache decides (not power-safe) */
};

struct cc_config {
    /* [server] */
    char ingest[CC_ADDR_MAX];
    char ingest_ack[CC_ADDR_MAX];
    char alerts[CC_ADDR_MAX];
    char callbacks[CC_ADDR_MAX];
    char query[CC_ADDR_MAX];
    uint64_t max_message;
    int ingest_io;
    int log_level;
    uint64_t callback_backlog;
    uint64_t memory_reserve;
    /* [durability]: the journal and snapshots under dir ("": none) */
    char data_dir[CC_TEXT_MAX];
    int fsync;
    uint64_t sync_interval_ms;
    uint64_t sync_records;
    uint64_t segment_size;
    uint64_t max_unwritten;
    uint64_t snapshot_interval_ms; /* 0: none but at shutdown */
    uint64_t snapshot_records;     /* 0: no count trigger */
    /* [alerts] */
    uint64_t alert_log; /* alerts kept for {"q":"alerts","since":N} */
    /* [ingest] */
    uint64_t dedup_window;
    /* [limits] */
    uint64_t max_contacts;
    uint64_t max_queues;
    uint64_t max_names;
    uint64_t contact_idle_ms;
    /* [hold] */
    uint64_t hold_long_ms;
    /* [identity] */
    uint64_t default_country;
    uint64_t max_identifiers;
    uint64_t max_identities;
    /* [conversation] */
    uint64_t reopen_window_ms;
    uint64_t idle_close_ms;
    uint64_t repeat_window_ms;
    uint64_t max_conversations;
    uint64_t thread_index;
    /* [service_level] */
    uint64_t sl_target;       /* percent */
    uint64_t sl_window_ms;    /* whole minutes, 1 to 60 */
    uint64_t sl_hysteresis;   /* percentage points */
    uint64_t sl_min_answered; /* answers in the window before it alerts */
    uint64_t short_abandon_ms;
    /* [channels] */
    struct cc_channels channels;
    /* [sla.*] and [calendar.*], built-in policies last */
    struct cc_sla_config sla;
    /* [callback] and [callback.queue.*] */
    struct cc_cb_config cb;
    /* the channel adapters */
    struct cc_ami_config ami;
    struct cc_http_config http;
    struct cc_maildir_config maildir;
};

/* Fills cfg with the embedded defaults. */
void cc_config_defaults(struct cc_config *cfg);

/*
 * Reads path over the defaults. On error returns CC_EINVAL (or CC_EIO when
 * the file cannot be read) and writes "FILE:LINE: [section] key: reason"
 * into err.
 */
int cc_config_load(struct cc_config *cfg, const char *path, char *err,
                   size_t errlen);
/* The same from a string; name stands for the file in messages. */
int cc_config_load_string(struct cc_config *cfg, const char *text,
                          const char *name, char *err, size_t errlen);

/* Writes the effective configuration as INI text. */
void cc_config_write(const struct cc_config *cfg, FILE *out);

/* "250ms", "20s", "5m", "4h", "2d" to milliseconds. */
int cc_parse_duration(const char *s, uint64_t *ms);
/* A duration (ms) or a whole number that must lie in [min, max]: 0, or
 * CC_EINVAL with the reason in why. */
int cc_parse_bounded(const char *value, bool duration, uint64_t min,
                     uint64_t max, uint64_t *out, char *why, size_t whylen);
/* "65536", "256KiB", "4MiB", "1GiB" to bytes. */
int cc_parse_size(const char *s, uint64_t *bytes);

#endif
