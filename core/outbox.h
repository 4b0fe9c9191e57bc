/*
 * The outbox: what the engine wants sent, packed in order into one reusable
 * buffer. The shell drains it after each batch of work and then clears it;
 * the buffer keeps its memory, so steady traffic does not allocate. An alert
 * record is its topic in ASCII, a NUL byte and a MessagePack map; a callback
 * record is a MessagePack map. Not thread-safe.
 */
#ifndef CC_OUTBOX_H
#define CC_OUTBOX_H

#include "cc.h"

#include <msgpack.h>
#include <string.h>

enum cc_out_kind { CC_OUT_ALERT, CC_OUT_CALLBACK };

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
#define CC_PACK_INLINE static inline __attribute__((always_inline))
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
        d[0] = (char)(0xa0 | n); /* fixstr */
        memcpy(d + 1, s, n);
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
    char *d = cc_pack_room(pk, 9);
    size_t n, i;

    if (d == NULL) {
        msgpack_pack_uint64(pk, v);
        return;
    }
    if (v < 128) {
        d[0] = (char)v; /* positive fixint */
        cc_pack_commit(pk, 1);
        return;
    }
    if (v <= 0xff) {
        d[0] = (char)0xcc;
        n = 1;
    } else if (v <= 0xffff) {
        d[0] = (char)0xcd;
        n = 2;
    } else if (v <= 0xffffffffULL) {
        d[0] = (char)0xce;
        n = 4;
    } else {
        d[0] = (char)0xcf;
        n = 8;
    }
    for (i = 0; i < n; i++) /* big-endian */
        d[1 + i] = (char)(v >> (8 * (n - 1 - i)));
    cc_pack_commit(pk, 1 + n);
}

CC_PACK_INLINE void
cc_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v) {
    cc_pack_str(pk, key);
    cc_pack_u64(pk, v);
}

#endif
