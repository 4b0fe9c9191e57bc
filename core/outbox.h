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

/* Packing helpers shared by everything that builds maps to send. */
static inline void
cc_pack_strn(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static inline void
cc_pack_str(msgpack_packer *pk, const char *s) {
    cc_pack_strn(pk, s, strlen(s));
}

static inline void
cc_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v) {
    cc_pack_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

#endif
