/*
 * The MessagePack reader. See mp.h. Formats follow the MessagePack
 * specification: fixint/fixmap/fixarray/fixstr in the first byte, then
 * explicit 8/16/32-bit big-endian lengths.
 */
#include "mp.h"

#include <string.h>

static inline uint16_t
be16(const uint8_t *p) {
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t
be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static inline uint64_t
be64(const uint8_t *p) {
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

enum cc_mp_type
cc_mp_peek(const struct cc_mp *m) {
    uint8_t b;
    if (m->p >= m->end)
        return CC_MP_INVALID;
    b = *m->p;
    if (b <= 0x7f || b >= 0xe0)
        return CC_MP_INT;
    if (b <= 0x8f)
        return CC_MP_MAP;
    if (b <= 0x9f)
        return CC_MP_ARRAY;
    if (b <= 0xbf)
        return CC_MP_STR;
    switch (b) {
    case 0xc0:
        return CC_MP_NIL;
    case 0xc2:
    case 0xc3:
        return CC_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return CC_MP_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return CC_MP_EXT;
    case 0xca:
    case 0xcb:
        return CC_MP_FLOAT;
    case 0xcf:
        if (m->end - m->p >= 9 && be64(m->p + 1) > (uint64_t)INT64_MAX)
            return CC_MP_UINT;
        return CC_MP_INT;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return CC_MP_INT;
    case 0xd9:
    case 0xda:
    case 0xdb:
        return CC_MP_STR;
    case 0xdc:
    case 0xdd:
        return CC_MP_ARRAY;
    case 0xde:
    case 0xdf:
        return CC_MP_MAP;
    }
    return CC_MP_INVALID;
}

const char *
cc_mp_type_name(enum cc_mp_type t) {
    static const char *const names[] = {
        "nil",    "boolean", "integer", "integer",   "float",  "string",
        "binary", "array",   "map",     "extension", "invalid"};
    return (unsigned)t < CC_ARRAY_SIZE(names) ? names[t] : "invalid";
}

/* Makes sure n more bytes exist after the cursor. */
#define NEED(m, n)                                                             \
    do {                                                                       \
        if ((size_t)((m)->end - (m)->p) < (size_t)(n))                         \
            return CC_EPROTO;                                                  \
    } while (0)

int
cc_mp_read_nil(struct cc_mp *m) {
    NEED(m, 1);
    if (*m->p != 0xc0)
        return CC_EINVAL;
    m->p++;
    return 0;
}

int
cc_mp_read_bool(struct cc_mp *m, bool *out) {
    NEED(m, 1);
    if (*m->p != 0xc2 && *m->p != 0xc3)
        return CC_EINVAL;
    *out = *m->p == 0xc3;
    m->p++;
    return 0;
}

int
cc__mp_read_int(struct cc_mp *m, int64_t *out) {
    const uint8_t *p = m->p;
    uint8_t b;
    uint64_t u;

    NEED(m, 1);
    b = *p;
    if (b <= 0x7f) {
        *out = b;
        m->p++;
        return 0;
    }
    if (b >= 0xe0) {
        *out = (int8_t)b;
        m->p++;
        return 0;
    }
    switch (b) {
    case 0xcc:
        NEED(m, 2);
        *out = p[1];
        m->p += 2;
        return 0;
    case 0xcd:
        NEED(m, 3);
        *out = be16(p + 1);
        m->p += 3;
        return 0;
    case 0xce:
        NEED(m, 5);
        *out = be32(p + 1);
        m->p += 5;
        return 0;
    case 0xcf:
        NEED(m, 9);
        u = be64(p + 1);
        if (u > (uint64_t)INT64_MAX)
            return CC_EINVAL;
        *out = (int64_t)u;
        m->p += 9;
        return 0;
    case 0xd0:
        NEED(m, 2);
        *out = (int8_t)p[1];
        m->p += 2;
        return 0;
    case 0xd1:
        NEED(m, 3);
        *out = (int16_t)be16(p + 1);
        m->p += 3;
        return 0;
    case 0xd2:
        NEED(m, 5);
        *out = (int32_t)be32(p + 1);
        m->p += 5;
        return 0;
    case 0xd3:
        NEED(m, 9);
        *out = (int64_t)be64(p + 1);
        m->p += 9;
        return 0;
    }
    return CC_EINVAL;
}

int
cc__mp_read_double(struct cc_mp *m, double *out) {
    const uint8_t *p = m->p;
    int64_t i;
    int rc;

    NEED(m, 1);
    if (*p == 0xca) {
        uint32_t u;
        float f;
        NEED(m, 5);
        u = be32(p + 1);
        memcpy(&f, &u, 4);
        *out = f;
        m->p += 5;
        return 0;
    }
    if (*p == 0xcb) {
        uint64_t u;
        NEED(m, 9);
        u = be64(p + 1);
        memcpy(out, &u, 8);
        m->p += 9;
        return 0;
    }
    rc = cc_mp_read_int(m, &i);
    if (rc == 0)
        *out = (double)i;
    return rc;
}

int
cc__mp_read_str(struct cc_mp *m, struct cc_str *out) {
    const uint8_t *p = m->p;
    uint32_t n;
    size_t hdr;

    NEED(m, 1);
    if (*p >= 0xa0 && *p <= 0xbf) {
        n = *p & 0x1f;
        hdr = 1;
    } else if (*p == 0xd9) {
        NEED(m, 2);
        n = p[1];
        hdr = 2;
    } else if (*p == 0xda) {
        NEED(m, 3);
        n = be16(p + 1);
        hdr = 3;
    } else if (*p == 0xdb) {
        NEED(m, 5);
        n = be32(p + 1);
        hdr = 5;
    } else {
        return CC_EINVAL;
    }
    NEED(m, hdr + (size_t)n);
    out->p = (const char *)p + hdr;
    out->n = n;
    m->p += hdr + n;
    return 0;
}

static int
read_container(struct cc_mp *m, uint32_t *count, uint8_t fix_lo, uint8_t fix_hi,
               uint8_t b16, uint8_t b32, size_t per_elem) {
    const uint8_t *p = m->p;
    uint32_t n;
    size_t hdr;

    NEED(m, 1);
    if (*p >= fix_lo && *p <= fix_hi) {
        n = *p & 0x0f;
        hdr = 1;
    } else if (*p == b16) {
        NEED(m, 3);
        n = be16(p + 1);
        hdr = 3;
    } else if (*p == b32) {
        NEED(m, 5);
        n = be32(p + 1);
        hdr = 5;
    } else {
        return CC_EINVAL;
    }
    /* The cheapest element is one byte: a count that cannot fit in what
     * remains is a lie, whatever the sender intended. */
    if ((uint64_t)n * per_elem > (uint64_t)(m->end - p) - hdr)
        return CC_EPROTO;
    *count = n;
    m->p += hdr;
    return 0;
}

int
cc__mp_read_array(struct cc_mp *m, uint32_t *count) {
    return read_container(m, count, 0x90, 0x9f, 0xdc, 0xdd, 1);
}

int
cc__mp_read_map(struct cc_mp *m, uint32_t *count) {
    return read_container(m, count, 0x80, 0x8f, 0xde, 0xdf, 2);
}

/*
 * The extent of a scalar that is not a fixint or fixstr (skip_value()
 * handles those, and containers, itself): header bytes and payload bytes.
 * Returns -1 for 0xc1 and for a header cut short.
 */
static inline int
value_extent(const uint8_t *p, const uint8_t *end, size_t *hdr,
             uint64_t *payload) {
    uint8_t b = *p;
    size_t left = (size_t)(end - p);

    *payload = 0;
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
        *hdr = 1;
        return 0;
    }
    switch (b) {
    case 0xcc:
    case 0xd0:
        *hdr = 2;
        return 0;
    case 0xcd:
    case 0xd1:
        *hdr = 3;
        return 0;
    case 0xca:
    case 0xce:
    case 0xd2:
        *hdr = 5;
        return 0;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        *hdr = 9;
        return 0;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        *hdr = 2;
        *payload = 1u << (b - 0xd4);
        return 0;
    case 0xc4:
    case 0xd9:
    case 0xc7:
        if (left < 2)
            return -1;
        *hdr = b == 0xc7 ? 3 : 2;
        *payload = p[1];
        return 0;
    case 0xc5:
    case 0xda:
    case 0xc8:
        if (left < 3)
            return -1;
        *hdr = b == 0xc8 ? 4 : 3;
        *payload = be16(p + 1);
        return 0;
    case 0xc6:
    case 0xdb:
    case 0xc9:
        if (left < 5)
            return -1;
        *hdr = b == 0xc9 ? 6 : 5;
        *payload = be32(p + 1);
        return 0;
    }
    return -1; /* 0xc1 is never used */
}

/*
 * Skips one value without recursion: `left` counts the values still to
 * read at the current depth, and the stack keeps the counts of the
 * enclosing containers. This runs over every byte of every message before
 * anything in it is used, so it stays a tight loop.
 */
static int
skip_value(struct cc_mp *m) {
    uint64_t stack[CC_MP_MAX_DEPTH + 1];
    const uint8_t *p = m->p, *end = m->end;
    uint64_t left = 1, payload;
    unsigned depth = 0;
    uint32_t n;
    size_t hdr;
    uint8_t b;

    for (;;) {
        while (left == 0) {
            if (depth == 0) {
                m->p = p;
                return 0;
            }
            left = stack[--depth];
        }
        left--;
        if (p >= end)
            return CC_EPROTO;
        b = *p;
        /* The common cases first, without a call: fixstr, fixint. */
        if ((b & 0xe0) == 0xa0) {
            if ((size_t)(end - p) - 1 < (size_t)(b & 0x1f))
                return CC_EPROTO;
            p += 1 + (b & 0x1f);
            continue;
        }
        if (b <= 0x7f || b >= 0xe0) {
            p++;
            continue;
        }
        if (b <= 0x9f || b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
            bool is_map = b <= 0x8f || b >= 0xde;
            if (b <= 0x9f) {
                n = b & 0x0f;
                hdr = 1;
            } else if (b == 0xdc || b == 0xde) {
                if (end - p < 3)
                    return CC_EPROTO;
                n = be16(p + 1);
                hdr = 3;
            } else {
                if (end - p < 5)
                    return CC_EPROTO;
                n = be32(p + 1);
                hdr = 5;
            }
            p += hdr;
            if (n == 0)
                continue;
            /* Each element takes at least a byte: a count that cannot fit
             * in what is left is a lie. */
            if ((is_map ? 2 * (uint64_t)n : n) > (uint64_t)(end - p))
                return CC_EPROTO;
            /* The container's elements sit one level deeper. */
            if (depth >= CC_MP_MAX_DEPTH)
                return CC_EPROTO;
            stack[depth++] = left;
            left = is_map ? 2 * (uint64_t)n : n;
            continue;
        }
        if (value_extent(p, end, &hdr, &payload) != 0)
            return CC_EPROTO;
        if ((uint64_t)(end - p) < hdr + payload)
            return CC_EPROTO;
        p += hdr + payload;
    }
}

int
cc__mp_skip(struct cc_mp *m) {
    /* skip_value() moves m->p only when it succeeds. */
    return skip_value(m);
}
