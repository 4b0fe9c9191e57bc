/*
 * Counting allocator, object pools and blob size classes. See mem.h.
 */
#include "mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

static _Atomic uint64_t mem_allocs;
static _Atomic uint64_t mem_frees;
static _Atomic uint64_t mem_live;

void *
cc_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p != NULL) {
        atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&mem_live, n, memory_order_relaxed);
    }
    return p;
}

void *
cc_calloc(size_t count, size_t n) {
    void *p;
    if (n != 0 && count > SIZE_MAX / n)
        return NULL;
    p = calloc(count ? count : 1, n ? n : 1);
    if (p != NULL) {
        atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&mem_live, count * n, memory_order_relaxed);
    }
    return p;
}

void *
cc_realloc(void *p, size_t old_n, size_t new_n) {
    void *q = realloc(p, new_n ? new_n : 1);
    if (q == NULL)
        return NULL;
    atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
    if (p != NULL)
        atomic_fetch_add_explicit(&mem_frees, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mem_live, new_n, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mem_live, old_n, memory_order_relaxed);
    return q;
}

void
cc_free(void *p, size_t n) {
    if (p == NULL)
        return;
    free(p);
    atomic_fetch_add_explicit(&mem_frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mem_live, n, memory_order_relaxed);
}

char *
cc_strndup(const char *s, size_t n) {
    char *d = cc_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

#define HUGE_PAGE CC_HUGE_PAGE
/* From this size up a table gets its own mapping, rounded up to whole
 * huge pages: pool chunks are sized just under 2 MiB to fill one. */
#define TABLE_MAP_MIN ((size_t)1 << 20)

static size_t
table_bytes(size_t n) {
    return (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

/* Maps n bytes (whole huge pages) on a 2 MiB boundary, marked for
 * transparent huge pages, or returns NULL. Counts nothing. */
static void *
map_huge(size_t n) {
    char *p, *aligned;
    size_t head, tail;

    /* Map one huge page more than needed and trim, so the table starts on
     * a 2 MiB boundary where the kernel can back it with huge pages. */
    p = mmap(NULL, n + HUGE_PAGE, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    aligned = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
    head = (size_t)(aligned - p);
    tail = HUGE_PAGE - head;
    if (head != 0)
        munmap(p, head);
    if (tail != 0)
        munmap(aligned + n, tail);
    /* Advice only: without transparent huge pages it still works. */
    (void)madvise(aligned, n, MADV_HUGEPAGE);
    return aligned;
}

/* The reserve (see mem.h): a stack of faulted-in huge pages, each page's
 * first word linking to the next. */
static struct {
    pthread_mutex_t lock;
    void *top;
    uint64_t held, target, taken, missed;
    bool filling;
} reserve = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *
reserve_take(void) {
    void *p;

    pthread_mutex_lock(&reserve.lock);
    p = reserve.top;
    if (p != NULL) {
        reserve.top = *(void **)p;
        reserve.held--;
        reserve.taken++;
    } else if (reserve.target != 0) {
        reserve.missed++;
    }
    pthread_mutex_unlock(&reserve.lock);
    if (p != NULL)
        *(void **)p = NULL; /* zeroed, as a fresh mapping is */
    return p;
}

/* Unmaps held pages beyond keep; called with the lock held. */
static void
reserve_trim(uint64_t keep) {
    void *p;

    while (reserve.held > keep) {
        p = reserve.top;
        reserve.top = *(void **)p;
        reserve.held--;
        munmap(p, HUGE_PAGE);
        atomic_fetch_add_explicit(&mem_frees, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&mem_live, HUGE_PAGE, memory_order_relaxed);
    }
}

void
cc_mem_reserve_target(unsigned pages) {
    pthread_mutex_lock(&reserve.lock);
    reserve.target = pages;
    reserve_trim(pages);
    pthread_mutex_unlock(&reserve.lock);
}

bool
cc_mem_reserve_wanted(void) {
    bool want;

    pthread_mutex_lock(&reserve.lock);
    want = !reserve.filling && reserve.held < reserve.target;
    if (want)
        reserve.filling = true;
    pthread_mutex_unlock(&reserve.lock);
    return want;
}

/* Faults in the pages of a fresh mapping, so that the kernel does the
 * finding and zeroing now, in the calling thread. Returns 0, or -1 when
 * the kernel has no memory to give. */
static int
populate(void *p, size_t n) {
    volatile char *c = p;
    size_t i;

#ifdef MADV_POPULATE_WRITE
    if (madvise(p, n, MADV_POPULATE_WRITE) == 0)
        return 0;
    /* Only a kernel without the advice (before 5.14) gets the fallback:
     * touching memory the kernel just refused would summon the OOM
     * killer instead of an error. */
    if (errno != EINVAL)
        return -1;
#endif
    for (i = 0; i < n; i += 4096)
        c[i] = 0;
    return 0;
}

/* A huge page mapped and faulted in, or NULL. */
static void *
fresh_page(void) {
    void *p = map_huge(HUGE_PAGE);

    if (p != NULL && populate(p, HUGE_PAGE) != 0) {
        munmap(p, HUGE_PAGE);
        p = NULL;
    }
    return p;
}

/* Puts a fresh page on the stack; called with the lock held. */
static void
reserve_push(void *p) {
    atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mem_live, HUGE_PAGE, memory_order_relaxed);
    *(void **)p = reserve.top;
    reserve.top = p;
    reserve.held++;
}

int
cc_mem_reserve_prefill(unsigned pages, const atomic_int *stop) {
    unsigned i;
    void *p;

    for (i = 0; i < pages && !atomic_load(stop); i++) {
        if ((p = fresh_page()) == NULL)
            return CC_ENOMEM;
        pthread_mutex_lock(&reserve.lock);
        reserve_push(p);
        pthread_mutex_unlock(&reserve.lock);
    }
    return 0;
}

int
cc_mem_reserve_fill(void) {
    int rc = 0;
    void *p;

    pthread_mutex_lock(&reserve.lock);
    while (reserve.held < reserve.target) {
        /* The slow part runs unlocked: the engine may take meanwhile. */
        pthread_mutex_unlock(&reserve.lock);
        p = fresh_page();
        pthread_mutex_lock(&reserve.lock);
        if (p == NULL) {
            rc = CC_ENOMEM;
            break;
        }
        if (reserve.held >= reserve.target) {
            /* Lowered while this page was faulted in. */
            munmap(p, HUGE_PAGE);
            break;
        }
        reserve_push(p);
    }
    reserve.filling = false;
    pthread_mutex_unlock(&reserve.lock);
    return rc;
}

void
cc_mem_reserve_stats(struct cc_mem_reserve_stats *out) {
    pthread_mutex_lock(&reserve.lock);
    out->target = reserve.target;
    out->held = reserve.held;
    out->taken = reserve.taken;
    out->missed = reserve.missed;
    /* The reserve's pages enter and leave bytes_live under the lock. */
    out->bytes_outside = atomic_load_explicit(&mem_live, memory_order_relaxed) -
                         reserve.held * HUGE_PAGE;
    pthread_mutex_unlock(&reserve.lock);
}

void
cc_mem_reserve_release(void) {
    cc_mem_reserve_target(0);
}

void *
cc_alloc_table(size_t n) {
    void *p;

    if (n < TABLE_MAP_MIN)
        return cc_calloc(1, n);
    n = table_bytes(n);
    /* A single huge page (a pool chunk) comes from the reserve when it
     * has one; the reserve already counted it. */
    if (n == HUGE_PAGE && (p = reserve_take()) != NULL)
        return p;
    if ((p = map_huge(n)) == NULL)
        return NULL;
    atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mem_live, n, memory_order_relaxed);
    return p;
}

void
cc_free_table(void *p, size_t n) {
    if (p == NULL)
        return;
    if (n < TABLE_MAP_MIN) {
        cc_free(p, n);
        return;
    }
    n = table_bytes(n);
    munmap(p, n);
    atomic_fetch_add_explicit(&mem_frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&mem_live, n, memory_order_relaxed);
}

void
cc_mem_stats(struct cc_mem_stats *out) {
    out->allocs = atomic_load_explicit(&mem_allocs, memory_order_relaxed);
    out->frees = atomic_load_explicit(&mem_frees, memory_order_relaxed);
    out->bytes_live = atomic_load_explicit(&mem_live, memory_order_relaxed);
}

/* A chunk header, then per_chunk objects from CHUNK_HEAD bytes in. Large
 * chunks are mapped on 2 MiB boundaries, so their objects start on a cache
 * line: an object whose size is a multiple of 64 bytes touches no more
 * lines than it must. */
struct cc_pool_chunk {
    struct cc_pool_chunk *next;
    size_t bytes;
};
#define CHUNK_HEAD ((size_t)64)

static size_t
pool_obj_size(size_t obj_size) {
    const size_t a = sizeof(void *);
    size_t n = (obj_size + a - 1) / a * a;
    return n < a ? a : n;
}

void
cc_pool_init(struct cc_pool *p, size_t obj_size, size_t per_chunk) {
    memset(p, 0, sizeof(*p));
    p->obj_size = pool_obj_size(obj_size);
    p->per_chunk = per_chunk ? per_chunk : 64;
}

size_t
cc_pool_huge_chunk(size_t obj_size) {
    return (HUGE_PAGE - CHUNK_HEAD) / pool_obj_size(obj_size);
}

size_t
cc_pool_chunk_bytes(const struct cc_pool *p) {
    return CHUNK_HEAD + p->obj_size * p->per_chunk;
}

void
cc_pool_fini(struct cc_pool *p) {
    struct cc_pool_chunk *c = p->chunks, *n;
    while (c != NULL) {
        n = c->next;
        cc_free_table(c, c->bytes);
        c = n;
    }
    p->chunks = NULL;
    p->free_list = NULL;
    p->in_use = p->capacity = 0;
}

#ifdef CC_NO_POOLS
void *
cc_pool_get(struct cc_pool *p) {
    void *o = cc_calloc(1, p->obj_size);
    if (o != NULL)
        p->in_use++;
    return o;
}

void
cc_pool_put(struct cc_pool *p, void *obj) {
    if (obj == NULL)
        return;
    p->in_use--;
    cc_free(obj, p->obj_size);
}
#else
static int
pool_grow(struct cc_pool *p) {
    size_t bytes = cc_pool_chunk_bytes(p);
    struct cc_pool_chunk *c = cc_alloc_table(bytes);
    char *o;
    size_t i;

    if (c == NULL)
        return CC_ENOMEM;
    c->bytes = bytes;
    c->next = p->chunks;
    p->chunks = c;
    o = (char *)c + CHUNK_HEAD;
    /* Thread the new objects onto the free list, lowest address first. */
    for (i = p->per_chunk; i-- > 0;) {
        void **slot = (void **)(void *)(o + i * p->obj_size);
        *slot = p->free_list;
        p->free_list = slot;
    }
    p->capacity += p->per_chunk;
    return 0;
}

void *
cc_pool_get(struct cc_pool *p) {
    void **o;
    if (p->free_list == NULL && pool_grow(p) != 0)
        return NULL;
    o = p->free_list;
    p->free_list = *o;
    p->in_use++;
    memset(o, 0, p->obj_size);
    /* The next object handed out is the next on the list, freed long ago
     * and cold: start loading it now (its link, and every line its memset
     * will write; the largest pool object is 512 bytes). */
    if (p->free_list != NULL) {
        size_t off;
        for (off = 0; off < p->obj_size; off += 64)
            __builtin_prefetch((char *)p->free_list + off, 1);
    }
    return o;
}

void
cc_pool_put(struct cc_pool *p, void *obj) {
    if (obj == NULL)
        return;
    *(void **)obj = p->free_list;
    p->free_list = obj;
    p->in_use--;
}
#endif

/* Small steps where the engine's strings with their headers fall (up to
 * 256 bytes: a blob wastes at most a third of its class, and from 48 to 96
 * bytes, where most identifiers and contact entries are, at most a fifth);
 * one class of 512 above, where a blob can waste up to half. */
static const size_t blob_sizes[CC_BLOB_CLASSES] = {16, 32,  48,  64,  80,
                                                   96, 128, 192, 256, 512};

void
cc_blobs_init(struct cc_blobs *b) {
    int i;
    for (i = 0; i < CC_BLOB_CLASSES; i++)
        cc_pool_init(&b->cls[i], blob_sizes[i],
                     cc_pool_huge_chunk(blob_sizes[i]));
}

void
cc_blobs_fini(struct cc_blobs *b) {
    int i;
    for (i = 0; i < CC_BLOB_CLASSES; i++)
        cc_pool_fini(&b->cls[i]);
}

static int
blob_class(size_t n) {
    int i;
    for (i = 0; i < CC_BLOB_CLASSES; i++) {
        if (n <= blob_sizes[i])
            return i;
    }
    return -1;
}

void *
cc_blob_get(struct cc_blobs *b, size_t n) {
    int c = blob_class(n);
    return c < 0 ? cc_malloc(n) : cc_pool_get(&b->cls[c]);
}

size_t
cc_blob_size(size_t n) {
    int c = blob_class(n);
    if (n == 0)
        return 0;
    return c < 0 ? n : blob_sizes[c];
}

void
cc_blob_put(struct cc_blobs *b, void *p, size_t n) {
    int c = blob_class(n);
    if (c < 0)
        cc_free(p, n);
    else
        cc_pool_put(&b->cls[c], p);
}
