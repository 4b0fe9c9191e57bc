/*
 * Allocation: every heap allocation in contactd goes through cc_malloc and
 * friends so that the counters below tell how much memory the daemon holds
 * and how many allocations the hot path makes. struct cc_pool hands out
 * fixed-size objects from chunks and keeps freed ones on a free list, so
 * that steady-state traffic allocates nothing. Builds with sanitizers
 * (CC_NO_POOLS) send every pool object to malloc so that use-after-free
 * stays visible. Not thread-safe: used from the loop thread only, except
 * the counters, which are updated atomically.
 */
#ifndef CC_MEM_H
#define CC_MEM_H

#include "cc.h"

#include <stdatomic.h>

struct cc_mem_stats {
    /* calls that obtained memory from the system (reserve pages included,
     * counted when faulted in, not when taken) */
    uint64_t allocs;
    uint64_t frees; /* calls that returned it */
    /* bytes currently held: malloc'd, chunks, the reserve's idle pages */
    uint64_t bytes_live;
};

void *cc_malloc(size_t n);
void *cc_calloc(size_t count, size_t n);
void *cc_realloc(void *p, size_t old_n, size_t new_n);
/* n must be the size that was asked for: the counters need it. */
void cc_free(void *p, size_t n);
char *cc_strndup(const char *s, size_t n);
/*
 * Zeroed memory for large tables that are read at random (hash tables,
 * pools): from 1 MiB up, mapped on a 2 MiB boundary in whole huge pages
 * and marked for transparent huge pages, so that a random lookup costs one
 * cache miss instead of a cache miss plus a page walk. Free with cc_free_table
 * and the same size.
 */
void *cc_alloc_table(size_t n);
void cc_free_table(void *p, size_t n);
void cc_mem_stats(struct cc_mem_stats *out);

/*
 * The reserve: huge pages mapped and faulted in ahead of need. A pool that
 * grows takes its chunk from here, so the thread that grows it does not
 * wait while the kernel (and, in a virtual machine, the host) finds and
 * zeroes 2 MiB: several milliseconds on a fresh VM. cc_mem_reserve_fill()
 * does that work and is meant for another thread (the daemon runs it on
 * libuv's thread pool when cc_mem_reserve_wanted() says so after a batch);
 * without it the reserve stays empty and growth maps memory on the spot,
 * as before. Only requests of one huge page are served (pool chunks, and
 * the rare table of 1 to 2 MiB); larger tables map their own. Its idle
 * pages count in cc_mem_stats(). Thread-safe. The reserve is zero-sized
 * until a target is set.
 */
#define CC_HUGE_PAGE ((size_t)2 << 20)

struct cc_mem_reserve_stats {
    uint64_t target; /* pages the reserve is kept at */
    uint64_t held;   /* pages ready now */
    uint64_t taken;  /* 2 MiB requests (pool chunks) served from it */
    uint64_t missed; /* 2 MiB requests mapped on the spot: it was empty */
    /* bytes_live less the held pages, read together with them */
    uint64_t bytes_outside;
};

/* Sets the pages to keep; held pages beyond it are unmapped. */
void cc_mem_reserve_target(unsigned pages);
/* True when the reserve holds fewer pages than its target and no fill is
 * already under way (a true answer claims the fill: call
 * cc_mem_reserve_fill() next, exactly once). */
bool cc_mem_reserve_wanted(void);
/* Maps and faults in pages until the reserve reaches its target; ends the
 * fill cc_mem_reserve_wanted() claimed. Returns 0 or CC_ENOMEM. */
int cc_mem_reserve_fill(void);
/* Maps and faults in up to pages more pages, whatever the target, for a
 * burst of growth known ahead (recovery restoring a snapshot), on a thread
 * of its own while the engine grows. Stops early once *stop is non-zero.
 * What is still held afterwards goes at the next cc_mem_reserve_target()
 * below it. 0 or CC_ENOMEM. */
int cc_mem_reserve_prefill(unsigned pages, const atomic_int *stop);
void cc_mem_reserve_stats(struct cc_mem_reserve_stats *out);
/* Unmaps what the reserve holds and sets its target to 0. */
void cc_mem_reserve_release(void);

struct cc_pool_chunk;

struct cc_pool {
    size_t obj_size;  /* rounded up to pointer alignment */
    size_t per_chunk; /* objects per chunk */
    void *free_list;
    struct cc_pool_chunk *chunks;
    uint64_t in_use;
    uint64_t capacity;
};

void cc_pool_init(struct cc_pool *p, size_t obj_size, size_t per_chunk);
/* The per_chunk that makes a chunk of obj_size objects fill one huge page
 * (header included), so that it maps as one and comes from the reserve. */
size_t cc_pool_huge_chunk(size_t obj_size);
/* The bytes one chunk of p takes, header included. */
size_t cc_pool_chunk_bytes(const struct cc_pool *p);
/* Frees every chunk; objects still in use become invalid. */
void cc_pool_fini(struct cc_pool *p);
/* Returns zeroed memory of obj_size bytes, or NULL when out of memory. */
void *cc_pool_get(struct cc_pool *p);
void cc_pool_put(struct cc_pool *p, void *obj);

/*
 * Variable-size blobs (strings kept by the engine) come from a small set of
 * size classes, each a cc_pool; larger ones go to cc_malloc.
 */
#define CC_BLOB_CLASSES 10
struct cc_blobs {
    struct cc_pool cls[CC_BLOB_CLASSES];
};
void cc_blobs_init(struct cc_blobs *b);
void cc_blobs_fini(struct cc_blobs *b);
void *cc_blob_get(struct cc_blobs *b, size_t n);
void cc_blob_put(struct cc_blobs *b, void *p, size_t n);
/* The memory a blob of n bytes really takes: its class's size (n above
 * the largest class, 0 for 0). For honest accounting. */
size_t cc_blob_size(size_t n);

#endif
