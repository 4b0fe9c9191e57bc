/*
 * Helpers shared by the tests: building MessagePack events with msgpack-c's
 * packer, reading fields back out of packed maps, and files.
 */
#ifndef CC_TESTUTIL_H
#define CC_TESTUTIL_H

#include "engine.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

struct tb {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static inline void
tb_init(struct tb *t) {
    msgpack_sbuffer_init(&t->sb);
    msgpack_packer_init(&t->pk, &t->sb, msgpack_sbuffer_write);
}

static inline void
tb_reset(struct tb *t) {
    msgpack_sbuffer_clear(&t->sb);
}

static inline void
tb_fini(struct tb *t) {
    msgpack_sbuffer_destroy(&t->sb);
}

static inline void
tb_str(struct tb *t, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(&t->pk, n);
    msgpack_pack_str_body(&t->pk, s, n);
}

static inline void
tb_kv_str(struct tb *t, const char *k, const char *v) {
    tb_str(t, k);
    tb_str(t, v);
}

static inline void
tb_kv_int(struct tb *t, const char *k, int64_t v) {
    tb_str(t, k);
    msgpack_pack_int64(&t->pk, v);
}

/*
 * Packs one event map: id, ts, channel, type, contact (when not NULL) and,
 * when phone is not NULL, a customer map with that phone number.
 */
static inline void
tb_event(struct tb *t, const char *id, int64_t ts, const char *channel,
         const char *type, const char *contact, const char *phone) {
    msgpack_pack_map(&t->pk, 4 + (contact != NULL) + (phone != NULL));
    tb_kv_str(t, "id", id);
    tb_kv_int(t, "ts", ts);
    tb_kv_str(t, "channel", channel);
    tb_kv_str(t, "type", type);
    if (contact != NULL)
        tb_kv_str(t, "contact", contact);
    if (phone != NULL) {
        tb_str(t, "customer");
        msgpack_pack_map(&t->pk, 1);
        tb_kv_str(t, "phone", phone);
    }
}

/* Packs an agent.status event, with `queues` (nq of them) when nq >= 0. */
static inline void
tb_agent_status(struct tb *t, const char *id, int64_t ts, const char *agent,
                const char *state, const char *const *queues, int nq) {
    int i;

    msgpack_pack_map(&t->pk, 6 + (nq >= 0));
    tb_kv_str(t, "id", id);
    tb_kv_int(t, "ts", ts);
    tb_kv_str(t, "channel", "phone");
    tb_kv_str(t, "type", "agent.status");
    tb_kv_str(t, "agent", agent);
    tb_kv_str(t, "state", state);
    if (nq >= 0) {
        tb_str(t, "queues");
        msgpack_pack_array(&t->pk, (uint32_t)nq);
        for (i = 0; i < nq; i++)
            tb_str(t, queues[i]);
    }
}

/* Finds key in a packed map (top level) and returns its object, borrowing
 * the unpacked zone. */
static inline bool
tmap_get(const msgpack_object *map, const char *key, msgpack_object *out) {
    uint32_t i;
    size_t n = strlen(key);
    if (map->type != MSGPACK_OBJECT_MAP)
        return false;
    for (i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            memcmp(kv->key.via.str.ptr, key, n) == 0) {
            *out = kv->val;
            return true;
        }
    }
    return false;
}

/* Follows a path of keys separated by '/'; returns the integer or -1. */
static inline int64_t
tmap_int(const msgpack_object *map, const char *path) {
    char buf[256], *tok, *save = NULL;
    msgpack_object cur = *map, next;
    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, "/", &save); tok;
         tok = strtok_r(NULL, "/", &save)) {
        if (!tmap_get(&cur, tok, &next))
            return -1;
        cur = next;
    }
    if (cur.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)cur.via.u64;
    if (cur.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return cur.via.i64;
    return -1;
}

/* True when the map's key holds the string want. */
static inline bool
tmap_str_is(const msgpack_object *map, const char *key, const char *want) {
    msgpack_object v;
    size_t n = strlen(want);
    return tmap_get(map, key, &v) && v.type == MSGPACK_OBJECT_STR &&
           v.via.str.size == n && memcmp(v.via.str.ptr, want, n) == 0;
}

/* True when the map's key holds true. */
static inline bool
tmap_is_true(const msgpack_object *map, const char *key) {
    msgpack_object v;
    return tmap_get(map, key, &v) && v.type == MSGPACK_OBJECT_BOOLEAN &&
           v.via.boolean;
}

/* True when the map's key holds nil. */
static inline bool
tmap_is_nil(const msgpack_object *map, const char *key) {
    msgpack_object v;
    return tmap_get(map, key, &v) && v.type == MSGPACK_OBJECT_NIL;
}

/* A number in the engine's stats at a path of keys separated by '/'
 * (tmap_int()), or INT64_MIN when the stats do not unpack. */
static inline int64_t
tstat_int(const struct cc_engine *e, const char *path) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    int64_t v = INT64_MIN;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cc_engine_pack_stats(e, &pk);
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, sb.data, sb.size, NULL) ==
        MSGPACK_UNPACK_SUCCESS)
        v = tmap_int(&u.data, path);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return v;
}

/* Reads a whole file into a malloc'd buffer (NUL-terminated). */
static inline char *
read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

/* The size of a file, in bytes. */
static inline uint64_t
file_size(const char *path) {
    struct stat st;

    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (uint64_t)st.st_size;
}

static int
remove_entry(const char *path, const struct stat *st, int flag,
             struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a folder and all it holds (a test's temporary folder). */
static inline void
remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
