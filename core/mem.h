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

struct cc_mem_stats {
    uint64_t allocs;     /* calls that obtained memory from the system */
    uint64_t frees;      /* calls that returned it */
    uint64_t bytes_live; /* bytes currently held (malloc'd, incl. chunks) */
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
