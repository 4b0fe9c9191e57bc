/*
 * Error names, the assertion handler, the hash function and the error
 * formatter declared in cc.h.
 */
#include "cc.h"

#include <stdarg.h>
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
load64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t
load32(const unsigned char *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* The full 128-bit product of a and b, its halves folded together: one
 * multiplication mixes 16 bytes of input. */
static inline uint64_t
fold(uint64_t a, uint64_t b) {
#ifdef __SIZEOF_INT128__
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    return cc_mix64(a) ^ cc_mix64(b + 0x9e3779b97f4a7c15ULL);
#endif
}

/* Keys here are short (ids, phone numbers, addresses): up to 16 bytes are
 * read as two overlapping words with no loop and no byte-wise tail; longer
 * keys take 16 bytes per multiplication, and their last 16 bytes are read
 * as two words ending at the last byte. The length goes into the final
 * mix, so overlapping reads of different lengths do not collide. */
uint64_t
cc_hash(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    const uint64_t s = seed ^ 0x9e3779b97f4a7c15ULL;
    uint64_t a, b, h = seed * 0xc2b2ae3d27d4eb4fULL;
    size_t n = len;

    if (n <= 16) {
        if (n >= 8) {
            a = load64(p);
            b = load64(p + n - 8);
        } else if (n >= 4) {
            a = load32(p);
            b = load32(p + n - 4);
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        while (n > 16) {
            h = fold(load64(p) ^ s, load64(p + 8) ^ h);
            p += 16;
            n -= 16;
        }
        a = load64(p + n - 16);
        b = load64(p + n - 8);
    }
    return cc_mix64(fold(a ^ s, b ^ h) ^ len);
}

size_t
cc_fmt_u64(char *out, uint64_t v) {
    static const char pairs[201] = "00010203040506070809"
                                   "10111213141516171819"
                                   "20212223242526272829"
                                   "30313233343536373839"
                                   "40414243444546474849"
                                   "50515253545556575859"
                                   "60616263646566676869"
                                   "70717273747576777879"
                                   "80818283848586878889"
                                   "90919293949596979899";
    size_t n = 1, i;
    uint64_t t;

    for (t = v; t >= 10; t /= 10)
        n++;
    /* Two digits a division, from the last. */
    i = n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        out[--i] = pairs[2 * r + 1];
        out[--i] = pairs[2 * r];
    }
    if (v >= 10) {
        out[--i] = pairs[2 * v + 1];
        out[--i] = pairs[2 * v];
    } else {
        out[--i] = (char)('0' + v);
    }
    return n;
}

size_t
cc_fmt_i64(char *out, int64_t v) {
    if (v >= 0)
        return cc_fmt_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + cc_fmt_u64(out + 1, 0 - (uint64_t)v);
}

int
cc_errf(char *err, size_t errlen, int rc, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

size_t
cc_utf8_seq(const unsigned char *p, size_t n, uint32_t *cp) {
    uint32_t c = p[0], min;
    size_t len, i;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}
