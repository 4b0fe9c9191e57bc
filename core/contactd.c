/*
 * contactd: the daemon's command line. Reads the configuration (embedded
 * defaults, then --config FILE), then runs the server until SIGINT or
 * SIGTERM.
 *
 * Exit status: 0 after a clean stop or a successful --check-config, 1 for a
 * configuration error, 2 for a usage error, 3 when the server cannot start
 * (for example an address already in use, or a damaged journal). --repair
 * exits 0 when the journal was clean or has been cut, 3 when it could not
 * be repaired.
 */
#include "config.h"
#include "durable.h"
#include "journal.h"
#include "log.h"
#include "server.h"

#include <signal.h>
#include <string.h>

static void
usage(FILE *out) {
    fputs("usage: contactd [--config FILE] [--check-config] [--repair] "
          "[--version] [--help]\n"
          "\n"
          "Real-time multichannel contact-center event processor.\n"
          "\n"
          "  -c, --config FILE   read FILE over the embedded defaults\n"
          "      --check-config  validate the configuration, print the "
          "effective\n"
          "                      settings and exit\n"
          "      --repair        cut the journal at its first damaged "
          "record,\n"
          "                      after printing what that drops, and exit\n"
          "  -V, --version       print the version and exit\n"
          "  -h, --help          print this help and exit\n"
          "\n"
          "Signals: SIGINT/SIGTERM drain and stop; SIGHUP reloads FILE.\n"
          "Every key and its default: conf/contactd.conf.\n",
          out);
}

/* --repair: cuts the journal at its first bad record. */
static int
repair_journal(const struct cc_config *cfg) {
    static char report[65536];
    char dir[CC_TEXT_MAX + 16];
    int rc;

    if (cfg->data_dir[0] == '\0') {
        fprintf(stderr, "contactd: --repair: [durability] dir is empty: "
                        "there is no journal\n");
        return 3;
    }
    if (cc_durable_journal_dir(cfg, dir, sizeof(dir)) != 0) {
        fprintf(stderr, "contactd: --repair: [durability] dir too long\n");
        return 3;
    }
    rc = cc_journal_repair(dir, report, sizeof(report));
    fputs(report, rc >= 0 ? stdout : stderr);
    if (report[0] != '\0' && report[strlen(report) - 1] != '\n')
        fputc('\n', rc >= 0 ? stdout : stderr);
    return rc >= 0 ? 0 : 3;
}

int
main(int argc, char **argv) {
    struct cc_config cfg;
    struct cc_server *srv = NULL;
    const char *path = NULL;
    char err[512];
    int check = 0, repair = 0, i, rc;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (++i == argc) {
                fprintf(stderr, "contactd: %s needs a file name\n",
                        argv[i - 1]);
                return 2;
            }
            path = argv[i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--repair") == 0) {
            repair = 1;
        } else if (strcmp(argv[i], "-V") == 0 ||
                   strcmp(argv[i], "--version") == 0) {
            printf("contactd %s (wire protocol 1)\n", CC_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 ||
                   strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "contactd: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    cc_config_defaults(&cfg);
    if (path != NULL && cc_config_load(&cfg, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "contactd: config error: %s\n", err);
        return 1;
    }
    if (check) {
        printf("# configuration OK (%s)\n", path ? path : "embedded defaults");
        cc_config_write(&cfg, stdout);
        return 0;
    }

    if (repair)
        return repair_journal(&cfg);
    /* A write past a file-size limit fails with EFBIG, which the journal
     * reports like a full disk, instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    rc = cc_server_new(&srv, &cfg, path, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "contactd: cannot start: %s\n", err);
        cc_server_free(srv);
        return 3;
    }
    rc = cc_server_run(srv);
    cc_server_free(srv);
    return rc == 0 ? 0 : 3;
}
