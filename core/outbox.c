/*
 * The outbox. See outbox.h.
 */
#include "outbox.h"

#include "mem.h"

#include <string.h>

void
cc_outbox_init(struct cc_outbox *ob) {
    memset(ob, 0, sizeof(*ob));
    msgpack_sbuffer_init(&ob->sb);
    msgpack_packer_init(&ob->pk, &ob->sb, msgpack_sbuffer_write);
}

void
cc_outbox_fini(struct cc_outbox *ob) {
    msgpack_sbuffer_destroy(&ob->sb);
    cc_free(ob->v, ob->cap * sizeof(*ob->v));
    memset(ob, 0, sizeof(*ob));
}

void
cc_outbox_begin(struct cc_outbox *ob, enum cc_out_kind kind,
                const char *topic) {
    ob->start = ob->sb.size;
    ob->kind = kind;
    if (kind == CC_OUT_ALERT)
        msgpack_sbuffer_write(&ob->sb, topic, strlen(topic) + 1);
}

void
cc_outbox_end(struct cc_outbox *ob) {
    struct cc_out *o;

    if (ob->n == ob->cap) {
        uint32_t ncap = ob->cap ? ob->cap * 2 : 64;
        struct cc_out *nv =
            cc_realloc(ob->v, ob->cap * sizeof(*ob->v), ncap * sizeof(*ob->v));
        CC_ASSERT(nv != NULL);
        ob->v = nv;
        ob->cap = ncap;
    }
    o = &ob->v[ob->n++];
    o->kind = (uint32_t)ob->kind;
    o->off = ob->start;
    o->len = (uint32_t)(ob->sb.size - ob->start);
}

void
cc_outbox_clear(struct cc_outbox *ob) {
    msgpack_sbuffer_clear(&ob->sb);
    ob->n = 0;
}
