/*
 * Definitions shared by every contactd module: error codes, assertions and
 * the small helpers (container_of, counted strings) the rest builds on.
 * Functions return 0 on success or a negative CC_E* code; cc_strerror()
 * names the code.
 */
#ifndef CC_H
#define CC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    CC_EINVAL = -1,  /* invalid argument or value */
    CC_ENOMEM = -2,  /* out of memory */
    CC_ENOENT = -3,  /* no such object */
    CC_EEXIST = -4,  /* object already exists */
    CC_ESTATE = -5,  /* not allowed in the current state */
    CC_ELIMIT = -6,  /* a configured limit was reached */
    CC_EPROTO = -7,  /* malformed input */
    CC_EIO = -8,     /* an I/O or socket call failed */
    CC_EAGAIN = -9,  /* try again later */
    CC_ETOOBIG = -10 /* input larger than allowed */
};

/* Returns a static, human-readable name for a CC_E* code. */
const char *cc_strerror(int err);

#define CC_CONTAINER_OF(ptr, type, field)                                      \
    ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

#define CC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define CC_LIKELY(x) __builtin_expect(!!(x), 1)
#define CC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CC_LIKELY(x) (x)
#define CC_UNLIKELY(x) (x)
#endif

/* CC_ASSERT guards programming errors, never input: it stays on in release
 * builds because a broken invariant in a long-running daemon must stop it
 * loudly rather than corrupt state. */
#define CC_ASSERT(cond)                                                        \
    do {                                                                       \
        if (CC_UNLIKELY(!(cond)))                                              \
            cc__assert_fail(#cond, __FILE__, __LINE__);                        \
    } while (0)

void cc__assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* A counted string that borrows its bytes from someone else's buffer. It is
 * not NUL-terminated. */
struct cc_str {
    const char *p;
    uint32_t n;
};

static inline bool
cc_str_eqn(struct cc_str a, struct cc_str b) {
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static inline int
cc_str_eq(struct cc_str a, const char *lit) {
    size_t i;
    for (i = 0; i < a.n; i++) {
        if (lit[i] != a.p[i] || lit[i] == '\0')
            return 0;
    }
    return lit[i] == '\0';
}

/* Whether n bytes at a and b are equal. In line and a word at a time,
 * the last word ending at the last byte: the keys compared on the hot path
 * (contact ids, identifiers, names, the customer map) are mostly short,
 * and a call to memcmp costs more than comparing them. */
static inline bool
cc_bytes_eq(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    uint64_t u, v;
    uint32_t s, t;
    size_t i;

    if (n >= 8) {
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&u, x + i, 8);
            memcpy(&v, y + i, 8);
            if (u != v)
                return false;
        }
        memcpy(&u, x + n - 8, 8);
        memcpy(&v, y + n - 8, 8);
        return u == v;
    }
    if (n >= 4) {
        memcpy(&s, x, 4);
        memcpy(&t, y, 4);
        if (s != t)
            return false;
        memcpy(&s, x + n - 4, 4);
        memcpy(&t, y + n - 4, 4);
        return s == t;
    }
    for (i = 0; i < n; i++) {
        if (x[i] != y[i])
            return false;
    }
    return true;
}

/* 64-bit hash of a byte string with a seed. Not cryptographic; the seed is
 * drawn at random by the daemon so that producers cannot aim collisions at
 * the tables. */
uint64_t cc_hash(const void *data, size_t len, uint64_t seed);

/* The finaliser of the SplitMix64 generator: a bijection of 64-bit values
 * that spreads every input bit over the output (distinct inputs, distinct
 * outputs: usable as a fingerprint of a 64-bit number). */
static inline uint64_t
cc_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Little-endian fields of the on-disk formats (journal, snapshots). */
static inline void
cc_put_le32(void *dst, uint32_t v) {
    unsigned char *p = dst;
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
cc_put_le64(void *dst, uint64_t v) {
    cc_put_le32(dst, (uint32_t)v);
    cc_put_le32((unsigned char *)dst + 4, (uint32_t)(v >> 32));
}

static inline uint32_t
cc_get_le32(const void *src) {
    const unsigned char *p = src;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t
cc_get_le64(const void *src) {
    return (uint64_t)cc_get_le32(src) |
           (uint64_t)cc_get_le32((const unsigned char *)src + 4) << 32;
}

/* Formats a reason into err (errlen bytes) and returns rc: the error
 * paths of the configuration readers in one line each. */
int cc_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes v in decimal at out (room for 20 digits, no NUL) and returns the
 * length: snprintf's result without its cost on the hot path. */
size_t cc_fmt_u64(char *out, uint64_t v);
/* The same for a signed value (room for 20 characters). */
size_t cc_fmt_i64(char *out, int64_t v);

/* The length of the UTF-8 sequence at p (at most n bytes), or 0 when it is
 * not a valid one (no overlong forms, surrogates or values past U+10FFFF,
 * as JSON parsers check). *cp receives the code point. */
size_t cc_utf8_seq(const unsigned char *p, size_t n, uint32_t *cp);

#endif
