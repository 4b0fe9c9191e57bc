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
cc_mp_read_int(struct cc_mp *m, int64_t *out) {
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
cc_mp_read_double(struct cc_mp *m, double *out) {
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
cc_mp_read_str(struct cc_mp *m, struct cc_str *out) {
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
cc_mp_read_array(struct cc_mp *m, uint32_t *count) {
    return read_container(m, count, 0x90, 0x9f, 0xdc, 0xdd, 1);
}

int
cc_mp_read_map(struct cc_mp *m, uint32_t *count) {
    return read_container(m, count, 0x80, 0x8f, 0xde, 0xdf, 2);
}

/* Skips raw payload bytes after a header of hdr bytes. */
static int
skip_bytes(struct cc_mp *m, size_t hdr, uint64_t n) {
    if ((uint64_t)(m->end - m->p) < hdr + n)
        return CC_EPROTO;
    m->p += hdr + n;
    return 0;
}

static int
skip_value(struct cc_mp *m, int depth) {
    const uint8_t *p = m->p;
    uint32_t n, i;
    uint8_t b;
    int rc;

    if (depth > CC_MP_MAX_DEPTH)
        return CC_EPROTO;
    NEED(m, 1);
    b = *p;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return skip_bytes(m, 1, 0);
    if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf) {
        rc = cc_mp_read_map(m, &n);
        if (rc)
            return rc;
        for (i = 0; i < 2 * (uint64_t)n; i++) {
            rc = skip_value(m, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd) {
        rc = cc_mp_read_array(m, &n);
        if (rc)
            return rc;
        for (i = 0; i < n; i++) {
            rc = skip_value(m, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf)
        return skip_bytes(m, 1, b & 0x1f);
    switch (b) {
    case 0xcc:
    case 0xd0:
        return skip_bytes(m, 2, 0);
    case 0xcd:
    case 0xd1:
        return skip_bytes(m, 3, 0);
    case 0xca:
    case 0xce:
    case 0xd2:
        return skip_bytes(m, 5, 0);
    case 0xcb:
    case 0xcf:
    case 0xd3:
        return skip_bytes(m, 9, 0);
    case 0xd4:
        return skip_bytes(m, 2, 1);
    case 0xd5:
        return skip_bytes(m, 2, 2);
    case 0xd6:
        return skip_bytes(m, 2, 4);
    case 0xd7:
        return skip_bytes(m, 2, 8);
    case 0xd8:
        return skip_bytes(m, 2, 16);
    case 0xc4:
    case 0xd9:
        NEED(m, 2);
        return skip_bytes(m, 2, p[1]);
    case 0xc5:
    case 0xda:
        NEED(m, 3);
        return skip_bytes(m, 3, be16(p + 1));
    case 0xc6:
    case 0xdb:
        NEED(m, 5);
        return skip_bytes(m, 5, be32(p + 1));
    case 0xc7:
        NEED(m, 3);
        return skip_bytes(m, 3, p[1]);
    case 0xc8:
        NEED(m, 4);
        return skip_bytes(m, 4, be16(p + 1));
    case 0xc9:
        NEED(m, 6);
        return skip_bytes(m, 6, be32(p + 1));
    }
    return CC_EPROTO; /* 0xc1 is never used */
}

int
cc_mp_skip(struct cc_mp *m) {
    const uint8_t *save = m->p;
    int rc = skip_value(m, 0);
    if (rc)
        m->p = save;
    return rc;
}
