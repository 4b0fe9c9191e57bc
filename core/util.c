/*
 * Error names, the assertion handler and the hash function declared in
 * cc.h.
 */
#include "cc.h"

#include <string.h>

const char *
cc_strerror(int err) {
    switch (err) {
    case 0:
        return "success";
    case CC_EINVAL:
        return "invalid argument";
    case CC_ENOMEM:
        return "out of memory";
    case CC_ENOENT:
        return "not found";
    case CC_EEXIST:
        return "already exists";
    case CC_ESTATE:
        return "not allowed in this state";
    case CC_ELIMIT:
        return "limit reached";
    case CC_EPROTO:
        return "malformed input";
    case CC_EIO:
        return "I/O error";
    case CC_EAGAIN:
        return "try again";
    case CC_ETOOBIG:
        return "too large";
    }
    return "unknown error";
}

void
cc__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "contactd: assertion failed: %s (%s:%d)\n", expr, file,
            line);
    abort();
}

static inline uint64_t
mix64(uint64_t x) {
    /* The finaliser of the SplitMix64 generator: a bijection that spreads
     * every input bit over the output. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t
cc_hash(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (len + 1));
    uint64_t w;

    while (len >= 8) {
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
        p += 8;
        len -= 8;
    }
    /* The tail, little-endian, without a call to memcpy of a variable
     * length. */
    w = 0;
    switch (len) {
    case 7:
        w |= (uint64_t)p[6] << 48;
        /* fall through */
    case 6:
        w |= (uint64_t)p[5] << 40;
        /* fall through */
    case 5:
        w |= (uint64_t)p[4] << 32;
        /* fall through */
    case 4:
        w |= (uint64_t)p[3] << 24;
        /* fall through */
    case 3:
        w |= (uint64_t)p[2] << 16;
        /* fall through */
    case 2:
        w |= (uint64_t)p[1] << 8;
        /* fall through */
    case 1:
        w |= p[0];
    }
    return mix64(h ^ w ^ ((uint64_t)len << 56));
}

size_t
cc_fmt_u64(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t
cc_fmt_i64(char *out, int64_t v) {
    if (v >= 0)
        return cc_fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + cc_fmt_u64(out + 1, 0 - (uint64_t)v);
}
