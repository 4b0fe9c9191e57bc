/*
 * The outbox: what the engine wants sent, packed in order into one reusable
 * buffer. The shell drains it after each batch of work and then clears it;
 * the buffer keeps its memory, so steady traffic does not allocate. An alert
 * record is its topic in ASCII, a NUL byte and a MessagePack map; a callback
 * or notice record is a MessagePack map. Not thread-safe.
 */
#ifndef CC_OUTBOX_H
#define CC_OUTBOX_H

#include "cc.h"

#include <msgpack.h>
#include <string.h>

/* CC_OUT_NOTICE: for the shell itself, not sent anywhere: a map whose
 * "type" says what (queue.withdraw: a caller who accepted a callback is to
 * leave the native queue, for the adapter of its channel). */
enum cc_out_kind { CC_OUT_ALERT, CC_OUT_CALLBACK, CC_OUT_NOTICE };

struct cc_out {
    uint32_t kind;
    uint32_t len;
    size_t off;
};

struct cc_outbox {
    msgpack_sbuffer sb;
    msgpack_packer pk; /* packs into sb */
    struct cc_out *v;
    uint32_t n, cap;
    size_t start; /* offset of the record being written */
    int kind;
};

/*
 * A msgpack_packer write callback for a msgpack_sbuffer, with the same
 * contract as msgpack_sbuffer_write() (the buffer stays one that
 * msgpack_sbuffer_destroy() frees) but cheaper for the many short pieces a
 * map is packed from: no call into the library, short pieces copied in
 * line.
 */
int cc_sbuffer_write(void *data, const char *buf, size_t len);

void cc_outbox_init(struct cc_outbox *ob);
void cc_outbox_fini(struct cc_outbox *ob);
/* Starts a record; for alerts, writes "topic\0". Pack the map into &ob->pk
 * and then call cc_outbox_end(). */
void cc_outbox_begin(struct cc_outbox *ob, enum cc_out_kind kind,
                     const char *topic);
void cc_outbox_end(struct cc_outbox *ob);
static inline const char *
cc_outbox_data(const struct cc_outbox *ob, const struct cc_out *o) {
    return ob->sb.data + o->off;
}
void cc_outbox_clear(struct cc_outbox *ob);

/* The packing helpers are always inlined, so that a literal key's length
 * is known when compiling. */
#define CC_PACK_INLINE static inline __attribute__((always_inline))
/* ---- packing into reserved room -------------------------------------------
 * The records written on every few events (an alert with a conversation's
 * context) hold dozens of values: one checked packer call per value costs
 * more than its bytes. Such a record reserves, once, room for the most it
 * can take, writes with the unchecked cc_w_* helpers (each returns the
 * position after what it wrote) and commits what it wrote. The bytes are
 * those msgpack-c writes for the same values (tests/core/util_test.c). */

/* Room for max bytes at the end of pk's buffer, grown if need be (failing
 * to is fatal, as everywhere the engine packs). Packers that write with
 * another callback get room in a scratch buffer of the thread's, handed to
 * their callback by cc_pack_finish(). */
char *cc_pack_reserve(msgpack_packer *pk, size_t max);
void cc__pack_finish_other(msgpack_packer *pk, char *end);

/* Ends a reserved write at end, at most max bytes after the start. */
CC_PACK_INLINE void
cc_pack_finish(msgpack_packer *pk, char *end) {
    msgpack_sbuffer *sb = pk->data;
    if (pk->callback != cc_sbuffer_write) {
        cc__pack_finish_other(pk, end);
        return;
    }
    CC_ASSERT(end >= sb->data + sb->size && end <= sb->data + sb->alloc);
    sb->size = (size_t)(end - sb->data);
}

/* Copies n bytes, n known small, without a call: two overlapping words. */
CC_PACK_INLINE void
cc_w_copy(char *d, const char *s, size_t n) {
    uint64_t a, b;
    uint32_t x, y;

    if (n >= 16) {
        memcpy(d, s, n);
    } else if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        memcpy(d, &x, 4);
        memcpy(d + n - 4, &y, 4);
    } else if (n != 0) {
        d[0] = s[0];
        d[n >> 1] = s[n >> 1];
        d[n - 1] = s[n - 1];
    }
}

/* Writes v big-endian in n bytes. */
CC_PACK_INLINE char *
cc_w_be(char *d, uint64_t v, unsigned n) {
    unsigned i;
    for (i = 0; i < n; i++)
        d[i] = (char)(v >> (8 * (n - 1 - i)));
    return d + n;
}

CC_PACK_INLINE char *
cc_w_strhdr(char *d, size_t n) {
    if (n < 32) {
        *d = (char)(0xa0 | n);
        return d + 1;
    }
    if (n < 256) {
        *d = (char)0xd9;
        return cc_w_be(d + 1, n, 1);
    }
    if (n < 65536) {
        *d = (char)0xda;
        return cc_w_be(d + 1, n, 2);
    }
    *d = (char)0xdb;
    return cc_w_be(d + 1, n, 4);
}

/* The most a string of n bytes takes. */
#define CC_W_STR_MAX(n) ((size_t)(n) + 5)

CC_PACK_INLINE char *
cc_w_str(char *d, const char *s, size_t n) {
    d = cc_w_strhdr(d, n);
    cc_w_copy(d, s, n);
    return d + n;
}

/* A string literal, such as a key: its length is known when compiled. */
#define cc_w_lit(d, lit) cc_w_litn((d), "" lit, sizeof(lit) - 1)
CC_PACK_INLINE char *
cc_w_litn(char *d, const char *s, size_t n) {
    d = cc_w_strhdr(d, n);
    memcpy(d, s, n);
    return d + n;
}

CC_PACK_INLINE char *
cc_w_nil(char *d) {
    *d = (char)0xc0;
    return d + 1;
}

CC_PACK_INLINE char *
cc_w_bool(char *d, bool v) {
    *d = v ? (char)0xc3 : (char)0xc2;
    return d + 1;
}

/* The most any number takes. */
#define CC_W_NUM_MAX 9

CC_PACK_INLINE char *
cc_w_u64(char *d, uint64_t v) {
    if (v < 128) {
        *d = (char)v; /* positive fixint */
        return d + 1;
    }
    if (v <= 0xff) {
        *d = (char)0xcc;
        return cc_w_be(d + 1, v, 1);
    }
    if (v <= 0xffff) {
        *d = (char)0xcd;
        return cc_w_be(d + 1, v, 2);
    }
    if (v <= 0xffffffffULL) {
        *d = (char)0xce;
        return cc_w_be(d + 1, v, 4);
    }
    *d = (char)0xcf;
    return cc_w_be(d + 1, v, 8);
}

CC_PACK_INLINE char *
cc_w_i64(char *d, int64_t v) {
    if (v >= 0)
        return cc_w_u64(d, (uint64_t)v);
    if (v >= -32) {
        *d = (char)(uint8_t)(int8_t)v; /* negative fixint */
        return d + 1;
    }
    if (v >= INT8_MIN) {
        *d = (char)0xd0;
        return cc_w_be(d + 1, (uint64_t)v, 1);
    }
    if (v >= INT16_MIN) {
        *d = (char)0xd1;
        return cc_w_be(d + 1, (uint64_t)v, 2);
    }
    if (v >= INT32_MIN) {
        *d = (char)0xd2;
        return cc_w_be(d + 1, (uint64_t)v, 4);
    }
    *d = (char)0xd3;
    return cc_w_be(d + 1, (uint64_t)v, 8);
}

CC_PACK_INLINE char *
cc_w_double(char *d, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    *d = (char)0xcb;
    return cc_w_be(d + 1, bits, 8);
}

/* Map and array headers: n pairs or n values follow. fix is the fixmap or
 * fixarray base; code16 the 16-bit form, code16 + 1 the 32-bit one. */
CC_PACK_INLINE char *
cc_w_count(char *d, uint32_t n, unsigned fix, unsigned code16) {
    if (n < 16) {
        *d = (char)(fix | n);
        return d + 1;
    }
    if (n < 65536) {
        *d = (char)code16;
        return cc_w_be(d + 1, n, 2);
    }
    *d = (char)(code16 + 1);
    return cc_w_be(d + 1, n, 4);
}

CC_PACK_INLINE char *
cc_w_map(char *d, uint32_t n) {
    return cc_w_count(d, n, 0x80, 0xde);
}

CC_PACK_INLINE char *
cc_w_array(char *d, uint32_t n) {
    return cc_w_count(d, n, 0x90, 0xdc);
}

/* A literal key and an unsigned value. */
#define cc_w_kv_u64(d, lit, v) cc_w_u64(cc_w_lit((d), lit), (v))

/* A prefix of at most 11 bytes and a decimal number as one string
 * ("cv-17"): at most 31 bytes, a fixstr. */
CC_PACK_INLINE char *
cc_w_prefixed_u64(char *d, const char *prefix, size_t pn, uint64_t v) {
    char *p = d + 1;
    size_t n;
    CC_ASSERT(pn <= 11);
    memcpy(p, prefix, pn);
    n = pn + cc_fmt_u64(p + pn, v);
    *d = (char)(0xa0 | n); /* at most 3 + 20 bytes: a fixstr */
    return p + n;
}

/*
 * Packing helpers shared by everything that builds maps to send. A map is
 * packed from many short pieces, and msgpack-c hands each piece to the
 * packer's callback through a pointer. When the packer writes into a
 * msgpack_sbuffer through cc_sbuffer_write() (the outbox, the replies) and
 * the buffer has room, these write the piece in place instead: a string's
 * header with its bytes, an integer in its shortest form, exactly as
 * msgpack-c would encode them. Otherwise they go through the callback.
 * Always inlined, so that a literal key's length is known when compiling.
 */
CC_PACK_INLINE char *
cc_pack_room(msgpack_packer *pk, size_t n) {
    msgpack_sbuffer *sb;
    if (pk->callback != cc_sbuffer_write)
        return NULL;
    sb = pk->data;
    return sb->alloc - sb->size >= n ? sb->data + sb->size : NULL;
}

CC_PACK_INLINE void
cc_pack_commit(msgpack_packer *pk, size_t n) {
    ((msgpack_sbuffer *)pk->data)->size += n;
}

CC_PACK_INLINE void
cc_pack_strn(msgpack_packer *pk, const char *s, size_t n) {
    char *d;
    if (n < 32 && (d = cc_pack_room(pk, n + 1)) != NULL) {
        cc_w_str(d, s, n);
        cc_pack_commit(pk, n + 1);
        return;
    }
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

CC_PACK_INLINE void
cc_pack_str(msgpack_packer *pk, const char *s) {
    cc_pack_strn(pk, s, strlen(s));
}

CC_PACK_INLINE void
cc_pack_u64(msgpack_packer *pk, uint64_t v) {
    char *d = cc_pack_room(pk, CC_W_NUM_MAX);

    if (d == NULL) {
        msgpack_pack_uint64(pk, v);
        return;
    }
    cc_pack_commit(pk, (size_t)(cc_w_u64(d, v) - d));
}

CC_PACK_INLINE void
cc_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v) {
    cc_pack_str(pk, key);
    cc_pack_u64(pk, v);
}

#endif
