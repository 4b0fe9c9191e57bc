/*
 * What the benchmarks that run the real contactd share. See benchd.h.
 */
#include "benchd.h"

#include <arpa/inet.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
free_port(void) {
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* The figure at path ("engine/events/accepted") of a stats reply, or 0. */
static int64_t
stat_at(const msgpack_object *o, const char *path) {
    while (o != NULL && *path) {
        const char *e = strchr(path, '/');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        const msgpack_object *next = NULL;
        uint32_t i;
        for (i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
                !memcmp(k->via.str.ptr, path, n))
                next = &o->via.map.ptr[i].val;
        }
        o = next;
        path += n + (e != NULL);
    }
    return o != NULL && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER
               ? (int64_t)o->via.u64
               : 0;
}

int64_t
stats_sum(const char *query_addr, const char *const *paths, unsigned n) {
    static const char q[] = "\x81\xa1q\xa5stats";
    nng_socket s;
    char *buf;
    size_t len;
    int64_t sum = -1;
    unsigned i;

    if (nng_req0_open(&s) != 0)
        return -1;
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 2000);
    if (nng_dial(s, query_addr, NULL, 0) == 0 &&
        nng_send(s, (void *)q, sizeof(q) - 1, 0) == 0 &&
        nng_recv(s, &buf, &len, NNG_FLAG_ALLOC) == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, buf, len, NULL) == MSGPACK_UNPACK_SUCCESS) {
            sum = 0;
            for (i = 0; i < n; i++)
                sum += stat_at(&u.data, paths[i]);
        }
        msgpack_unpacked_destroy(&u);
        nng_free(buf, len);
    }
    nng_close(s);
    return sum;
}

int64_t
stats_done(const char *query_addr) {
    static const char *const done[] = {"engine/events/accepted",
                                       "engine/events/duplicates",
                                       "engine/events/rejected"};
    return stats_sum(query_addr, done, 3);
}

pid_t
start_contactd(const char *bin, const char *conf, const char *query) {
    pid_t pid = fork();
    int i;

    if (pid == 0) {
        execl(bin, "contactd", "--config", conf, (char *)NULL);
        _exit(127);
    }
    /* Up when its query socket answers (5 s at most). */
    for (i = 0; i < 100 && stats_done(query) < 0; i++)
        nng_msleep(50);
    return pid;
}
