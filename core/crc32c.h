/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * the journal's records and segment headers. One entry point picks, once
 * per process, the SSE4.2 crc32 instruction when the CPU has it and
 * software slicing-by-8 otherwise; both give the same values, and both are
 * exported so that the tests can compare them. Thread-safe: the tables are
 * built and the path chosen under pthread_once.
 */
#ifndef CC_CRC32C_H
#define CC_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The CRC-32C of n bytes at p, continuing from crc: start with 0, and pass
 * the result of one call as crc of the next to checksum data given in
 * pieces (cc_crc32c(cc_crc32c(0, a, na), b, nb) is the CRC of a then b).
 * The usual pre- and post-inversion are done inside: "123456789" gives
 * 0xE3069283.
 */
uint32_t cc_crc32c(uint32_t crc, const void *p, size_t n);

/* The software path (slicing-by-8), on every CPU. */
uint32_t cc_crc32c_sw(uint32_t crc, const void *p, size_t n);
/* Whether cc_crc32c_hw() may be called: an x86-64 CPU with SSE4.2. */
bool cc_crc32c_hw_available(void);
/* The crc32 instruction path; only when cc_crc32c_hw_available(). */
uint32_t cc_crc32c_hw(uint32_t crc, const void *p, size_t n);

#endif
