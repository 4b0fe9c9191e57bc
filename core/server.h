/*
 * The server: the I/O shell around the engine. It owns the libuv loop, the
 * NNG sockets of the wire contract, the real clock and the signals. Every
 * engine call happens on the loop thread; NNG's threads only receive
 * messages and hand them over (see docs/design.md).
 */
#ifndef CC_SERVER_H
#define CC_SERVER_H

#include "config.h"

struct cc_server;

/*
 * Creates the server and binds every socket. config_path (may be NULL) is
 * re-read on SIGHUP. On failure returns a CC_E* code and writes the reason
 * into err.
 */
int cc_server_new(struct cc_server **out, const struct cc_config *cfg,
                  const char *config_path, char *err, size_t errlen);
/* Runs the loop until SIGINT or SIGTERM, then drains: messages already
 * received are applied and answered, and what the engine emitted is sent.
 * Returns 0 after a clean stop. */
int cc_server_run(struct cc_server *s);
/* Closes sockets and frees everything. */
void cc_server_free(struct cc_server *s);

#endif
