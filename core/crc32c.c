/*
 * CRC-32C. See crc32c.h.
 *
 * Software: slicing-by-8 reads a little-endian word of 8 bytes and looks
 * each byte up in its own table (table k gives the CRC contribution of a
 * byte followed by k zero bytes), so that 8 bytes cost 8 independent loads
 * instead of 8 dependent steps. Hardware: the SSE4.2 crc32 instruction
 * computes the same reflected CRC 8 bytes at a time.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC_HAVE_SSE42 1
#include <nmmintrin.h>
#else
#define CRC_HAVE_SSE42 0
#endif

#define CRC_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init_once(void) {
    uint32_t i, c;
    int k;

    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ CRC_POLY : c >> 1;
        crc_table[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        c = crc_table[0][i];
        for (k = 1; k < 8; k++) {
            c = (c >> 8) ^ crc_table[0][c & 0xff];
            crc_table[k][i] = c;
        }
    }
#if CRC_HAVE_SSE42
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2") != 0;
#endif
}

static uint32_t
crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t w;

    /* Bytes one at a time up to an 8-byte boundary, so that the words
     * below are aligned loads. */
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        /* The byte order of the word matters: assemble it little-endian
         * so that the first byte is the lowest. */
        w = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
            (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
            (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    return crc;
}

uint32_t
cc_crc32c_sw(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc_once, crc_init_once);
    return ~crc_sw(~crc, p, n);
}

bool
cc_crc32c_hw_available(void) {
    pthread_once(&crc_once, crc_init_once);
    return crc_hw;
}

#if CRC_HAVE_SSE42
__attribute__((target("sse4.2"))) static uint32_t
crc_hw_run(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc, w;

    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    return (uint32_t)c;
}

uint32_t
cc_crc32c_hw(uint32_t crc, const void *p, size_t n) {
    return ~crc_hw_run(~crc, p, n);
}
#else
uint32_t
cc_crc32c_hw(uint32_t crc, const void *p, size_t n) {
    /* Never called: cc_crc32c_hw_available() is false here. */
    return cc_crc32c_sw(crc, p, n);
}
#endif

uint32_t
cc_crc32c(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc_once, crc_init_once);
#if CRC_HAVE_SSE42
    if (crc_hw)
        return ~crc_hw_run(~crc, p, n);
#endif
    return ~crc_sw(~crc, p, n);
}
