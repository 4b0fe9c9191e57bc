/*
 * A zero-copy MessagePack reader for untrusted input. A struct cc_mp walks a
 * buffer it borrows; strings it returns point into that buffer. Every length
 * a header declares is checked against the bytes that remain before it is
 * used, so a 5-byte header claiming four billion elements costs nothing:
 * the reader fails with CC_EPROTO instead. Nothing here allocates.
 *
 * Decoding what we receive is the hot path, and building msgpack-c's object
 * tree in a zone for every message would allocate and walk each event twice;
 * everything contactd sends is packed with msgpack-c's packer.
 */
#ifndef CC_MP_H
#define CC_MP_H

#include "cc.h"

#include <stdbool.h>

enum cc_mp_type {
    CC_MP_NIL,
    CC_MP_BOOL,
    CC_MP_INT,   /* any integer that fits int64_t */
    CC_MP_UINT,  /* an unsigned integer above INT64_MAX */
    CC_MP_FLOAT, /* float32 or float64 */
    CC_MP_STR,
    CC_MP_BIN,
    CC_MP_ARRAY,
    CC_MP_MAP,
    CC_MP_EXT,
    CC_MP_INVALID /* a byte no MessagePack type starts with (0xc1) */
};

/* The deepest nesting cc_mp_skip() accepts. */
#define CC_MP_MAX_DEPTH 32

struct cc_mp {
    const uint8_t *p;
    const uint8_t *end;
    const uint8_t *start;
};

static inline void
cc_mp_init(struct cc_mp *m, const void *buf, size_t len) {
    m->start = m->p = buf;
    m->end = m->p + len;
}

static inline size_t
cc_mp_offset(const struct cc_mp *m) {
    return (size_t)(m->p - m->start);
}

static inline size_t
cc_mp_left(const struct cc_mp *m) {
    return (size_t)(m->end - m->p);
}

/* The type of the next value, or CC_MP_INVALID at the end of the buffer. */
enum cc_mp_type cc_mp_peek(const struct cc_mp *m);
/* Human name of a type, for error messages ("string", "integer", ...). */
const char *cc_mp_type_name(enum cc_mp_type t);

/*
 * Readers consume one value of the named type. They return 0, CC_EINVAL when
 * the next value has another type (nothing consumed), or CC_EPROTO when the
 * buffer is truncated or a declared length cannot fit in what is left.
 */
int cc_mp_read_nil(struct cc_mp *m);
int cc_mp_read_bool(struct cc_mp *m, bool *out);
static inline int cc_mp_read_int(struct cc_mp *m, int64_t *out);
/* Accepts integers and floats. */
static inline int cc_mp_read_double(struct cc_mp *m, double *out);
static inline int cc_mp_read_str(struct cc_mp *m, struct cc_str *out);
/* Reads an array or map header. Each element takes at least one byte (two
 * per map entry), so counts larger than what remains fail. */
static inline int cc_mp_read_array(struct cc_mp *m, uint32_t *count);
static inline int cc_mp_read_map(struct cc_mp *m, uint32_t *count);
/* Skips one complete value of any type, nested at most CC_MP_MAX_DEPTH. */
static inline int cc_mp_skip(struct cc_mp *m);

/* The out-of-line readers behind the inline ones below. */
int cc__mp_read_str(struct cc_mp *m, struct cc_str *out);
int cc__mp_read_map(struct cc_mp *m, uint32_t *count);
int cc__mp_read_array(struct cc_mp *m, uint32_t *count);
int cc__mp_read_int(struct cc_mp *m, int64_t *out);
int cc__mp_read_double(struct cc_mp *m, double *out);
int cc__mp_skip(struct cc_mp *m);

/*
 * The inline readers hand what they call out of line a copy of the reader
 * and of the result, never their own addresses: a decoder that keeps its
 * reader and results in local variables then keeps them in registers
 * instead of storing and reloading the cursor around every value. Each
 * out-of-line reader moves the cursor and writes the result only when it
 * succeeds.
 */
#define CC__MP_VIA_COPY(m, fn, type, out)                                      \
    do {                                                                       \
        struct cc_mp t_ = *(m);                                                \
        type v_;                                                               \
        int rc_ = fn(&t_, &v_);                                                \
        if (rc_ == 0) {                                                        \
            *(out) = v_;                                                       \
            (m)->p = t_.p;                                                     \
        }                                                                      \
        return rc_;                                                            \
    } while (0)

static inline int
cc_mp_read_double(struct cc_mp *m, double *out) {
    CC__MP_VIA_COPY(m, cc__mp_read_double, double, out);
}

static inline int
cc_mp_read_array(struct cc_mp *m, uint32_t *count) {
    CC__MP_VIA_COPY(m, cc__mp_read_array, uint32_t, count);
}

static inline int
cc_mp_skip(struct cc_mp *m) {
    struct cc_mp t = *m;
    int rc = cc__mp_skip(&t);
    if (rc == 0)
        m->p = t.p;
    return rc;
}

/* Event times are uint 64 (0xcf) and small numbers positive fixints: read
 * those in line, the rest through cc__mp_read_int(). */
static inline int
cc_mp_read_int(struct cc_mp *m, int64_t *out) {
    if (m->p < m->end && *m->p <= 0x7f) {
        *out = *m->p++;
        return 0;
    }
    if (m->end - m->p >= 9 && *m->p == 0xcf) {
        uint64_t u = 0;
        int i;
        for (i = 1; i <= 8; i++)
            u = u << 8 | m->p[i];
        if (u > (uint64_t)INT64_MAX)
            return CC_EINVAL;
        *out = (int64_t)u;
        m->p += 9;
        return 0;
    }
    CC__MP_VIA_COPY(m, cc__mp_read_int, int64_t, out);
}

/* Keys and most values are short strings and events are small maps: those
 * one-byte headers are read inline, everything else out of line. */
static inline int
cc_mp_read_str(struct cc_mp *m, struct cc_str *out) {
    if (m->p < m->end && (*m->p & 0xe0) == 0xa0) {
        uint32_t n = *m->p & 0x1f;
        if ((size_t)(m->end - m->p) - 1 < n)
            return CC_EPROTO;
        out->p = (const char *)m->p + 1;
        out->n = n;
        m->p += 1 + n;
        return 0;
    }
    CC__MP_VIA_COPY(m, cc__mp_read_str, struct cc_str, out);
}

static inline int
cc_mp_read_map(struct cc_mp *m, uint32_t *count) {
    if (m->p < m->end && (*m->p & 0xf0) == 0x80) {
        uint32_t n = *m->p & 0x0f;
        /* Each entry takes at least two bytes. */
        if ((size_t)(m->end - m->p) - 1 < 2 * (size_t)n)
            return CC_EPROTO;
        *count = n;
        m->p++;
        return 0;
    }
    CC__MP_VIA_COPY(m, cc__mp_read_map, uint32_t, count);
}

#endif
