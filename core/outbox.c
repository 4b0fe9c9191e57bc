/*
 * The outbox. See outbox.h.
 */
#include "outbox.h"

#include "mem.h"

#include <string.h>

#include <stdlib.h>

/* Out of line: rare. Doubles like msgpack's own buffer, with realloc so
 * that msgpack_sbuffer_destroy() can free the result. */
static int
sbuffer_grow(msgpack_sbuffer *sb, size_t len) {
    size_t ncap = sb->alloc ? sb->alloc : MSGPACK_SBUFFER_INIT_SIZE;
    char *p;

    while (ncap - sb->size < len) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    p = realloc(sb->data, ncap);
    if (p == NULL)
        return -1;
    sb->data = p;
    sb->alloc = ncap;
    return 0;
}

int
cc_sbuffer_write(void *data, const char *buf, size_t len) {
    msgpack_sbuffer *sb = data;
    char *d;

    if (sb->alloc - sb->size < len && sbuffer_grow(sb, len) != 0)
        return -1;
    d = sb->data + sb->size;
    if (len <= 8) {
        size_t i;
        for (i = 0; i < len; i++)
            d[i] = buf[i];
    } else {
        memcpy(d, buf, len);
    }
    sb->size += len;
    return 0;
}

/* Where packers that do not write with cc_sbuffer_write (msgpack-c's own
 * sbuffer writer, say: queries from tests and contactctl) get their room;
 * cc__pack_finish_other() then hands what was written to their callback.
 * One per thread, reused, as large as the largest record it took (a full
 * conversation context: tens of kilobytes) and kept until the process
 * ends. Not re-entrant: no callback may pack through it. */
static _Thread_local msgpack_sbuffer scratch;

char *
cc_pack_reserve(msgpack_packer *pk, size_t max) {
    msgpack_sbuffer *sb = pk->data;

    if (pk->callback != cc_sbuffer_write) {
        sb = &scratch;
        sb->size = 0;
    }
    if (sb->alloc - sb->size < max && sbuffer_grow(sb, max) != 0)
        cc__assert_fail("room to pack a record (out of memory)", __FILE__,
                        __LINE__);
    return sb->data + sb->size;
}

void
cc__pack_finish_other(msgpack_packer *pk, char *end) {
    CC_ASSERT(end >= scratch.data && end <= scratch.data + scratch.alloc);
    (void)pk->callback(pk->data, scratch.data, (size_t)(end - scratch.data));
}

void
cc_outbox_init(struct cc_outbox *ob) {
    memset(ob, 0, sizeof(*ob));
    msgpack_sbuffer_init(&ob->sb);
    msgpack_packer_init(&ob->pk, &ob->sb, cc_sbuffer_write);
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
        cc_sbuffer_write(&ob->sb, topic, strlen(topic) + 1);
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
