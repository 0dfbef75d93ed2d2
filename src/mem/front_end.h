/*
 * front_end.h - the caches in front of the central layer.
 *
 * Two implementations behind one interface: per-CPU caches on restartable
 * sequences (cpu_cache.c) and per-thread caches (thread_cache.c), the
 * fallback where rseq is unavailable or disabled (XMM_RSEQ=0). front_end.c
 * owns the choice between them, their set-up, fork repair, release and
 * statistics; the two implementations do not call each other. A cache
 * holds, per size class, a stack of free objects of its own node only.
 */
#ifndef XMM_FRONT_END_H
#define XMM_FRONT_END_H

#include "base/base.h"
#include "ds/ds.h"
#if XMM_PER_CPU_CACHES
#include "rseq_percpu.h"
/* A slab is: word 0 the node, then one header word per class, then the
 * slots; the sections address classes as bytes (size_class < 128). */
_Static_assert(XMM_CLASS_COUNT <= XMM_SLAB_FIRST_SLOT, "class headers overlap the slots");
_Static_assert(XMM_CLASS_COUNT <= 128, "the sections take the class as a byte below 128");
_Static_assert(XMM_SLAB_WORDS - XMM_SLAB_FIRST_SLOT <= 0xffff,
               "slot indexes are 16-bit in a header");
#endif

struct xmm_cache_bin {
    void **slots;            /* slots[0 .. count) hold free objects */
    uint32_t count;
    uint32_t capacity;
};

struct xmm_thread_cache {
    struct xmm_cache_bin bins[XMM_CLASS_COUNT];
    int node;                        /* home node of every cached object */
    uint64_t refills, drains, cross_node_frees;
    struct xmm_thread_cache *next;   /* registry of all caches */
    struct xmm_thread_cache *next_free; /* recycled after thread exit */
};

/* xmm_thread.thread_cache: the calling thread's cache; NULL before its
 * first allocation. After the thread's exit destructor it points to a
 * cache with no capacity, so the fast path misses and the slow path goes
 * to the central layer directly. */

/* True once init phase 2 has set up the front end (thread-exit key, own
 * rseq areas): before, threads get no cache of their own. */
extern XMM_HIDDEN bool xmm_front_end_ready;

/* Slow paths (thread_cache.c). */
void *xmm_thread_cache_alloc_slow(unsigned size_class);
void xmm_thread_cache_free_slow(void *object, unsigned size_class, unsigned node);

/* The miss paths of a thread without an rseq area (front_end.c): it may
 * attach to the per-CPU caches now, else it uses its thread cache. */
void *xmm_front_alloc_slow(unsigned size_class);
void xmm_front_free_slow(void *object, unsigned size_class, unsigned node);

/* ---- per-CPU caches (cpu_cache.c) ---- */

/* xmm_thread.rseq_area: the calling thread's rseq area while it uses the
 * per-CPU caches (with rseq_index and cpu_slabs set with it). */
extern __thread bool xmm_rseq_attach_refused __attribute__((tls_model("initial-exec")));
extern XMM_HIDDEN char *xmm_cpu_slabs;
extern XMM_HIDDEN uint32_t xmm_rseq_index_offset; /* XMM_RSEQ_CPU_ID_OFFSET or _MM_CID_ */

/* Gives the calling thread an rseq area if the per-CPU caches are in use;
 * false means it uses a per-thread cache. */
bool xmm_cpu_cache_attach(void);
void *xmm_cpu_cache_alloc_slow(unsigned size_class);
void xmm_cpu_cache_free_slow(void *object, unsigned size_class, unsigned node, int push_result);
/* Set-up (phase 1: false if the process uses per-thread caches; phase 2),
 * fork repair and release of every CPU's cache (cpu_cache.c). */
bool xmm_cpu_cache_init_core(void);
void xmm_cpu_cache_init_hooks(void);
void xmm_cpu_cache_after_fork_child(void);
void xmm_cpu_cache_release(void);
bool xmm_cpu_cache_in_use(void);
const char *xmm_cpu_cache_detail(void);
/* rseq mode, for statistics and XMM_VERBOSE. */
const char *xmm_front_end_detail(void);

/* The index field of `area` (any thread's) the slabs are chosen by. */
XMM_INLINE const uint32_t *xmm_rseq_index(void *area)
{
    return (const uint32_t *)((char *)area + xmm_rseq_index_offset);
}

/* Allocation fast path: an object of `size_class` from the calling
 * thread's cache, or NULL on a miss (empty cache, no cache yet, XMM not yet
 * initialised: the tables then give class 0, whose caches are always
 * empty). Per-CPU: one TLS load and one rseq critical section (11
 * instructions) on a hit. Per-thread: one TLS load and a bin pop. */
XMM_INLINE void *xmm_front_try_alloc(unsigned size_class)
{
#if XMM_PER_CPU_CACHES
    void *area = xmm_thread.rseq_area;
    if (XMM_LIKELY(area != NULL))
        return xmm_rseq_pop(area, xmm_thread.rseq_index, xmm_thread.cpu_slabs, size_class);
#endif
    struct xmm_thread_cache *cache = xmm_thread.thread_cache;
    if (XMM_LIKELY(cache != NULL)) {
        struct xmm_cache_bin *bin = &cache->bins[size_class];
        if (XMM_LIKELY(bin->count))
            return bin->slots[--bin->count];
    }
    return NULL;
}

/* The miss path: refill from the central layer (XMM must be initialised). */
XMM_INLINE void *xmm_front_alloc_miss(unsigned size_class)
{
#if XMM_PER_CPU_CACHES
    if (xmm_thread.rseq_area)
        return xmm_cpu_cache_alloc_slow(size_class);
#endif
    return xmm_front_alloc_slow(size_class);
}

XMM_INLINE void *xmm_front_alloc(unsigned size_class)
{
    void *object = xmm_front_try_alloc(size_class);
    return XMM_LIKELY(object != NULL) ? object : xmm_front_alloc_miss(size_class);
}

/* Free fast path: a push when the object belongs to this cache's node and
 * the bin has room. The caller has checked the object (global/heap.h: a
 * live block, now tagged free). The _as form takes the class and home node
 * (from the page info, global/heap.h), the other the span. */
XMM_INLINE void xmm_front_free_as(void *object, unsigned size_class, unsigned node)
{
#if XMM_PER_CPU_CACHES
    void *area = xmm_thread.rseq_area;
    if (XMM_LIKELY(area != NULL)) {
        enum xmm_rseq_push_result result =
            xmm_rseq_push(area, xmm_thread.rseq_index, xmm_thread.cpu_slabs, size_class,
                          object, node);
        if (XMM_LIKELY(result == XMM_RSEQ_PUSHED))
            return;
        xmm_cpu_cache_free_slow(object, size_class, node, result);
        return;
    }
#endif
    struct xmm_thread_cache *cache = xmm_thread.thread_cache;
    if (XMM_LIKELY(cache != NULL && (int)node == cache->node)) {
        struct xmm_cache_bin *bin = &cache->bins[size_class];
        if (XMM_LIKELY(bin->count < bin->capacity)) {
            bin->slots[bin->count++] = object;
            return;
        }
    }
    xmm_front_free_slow(object, size_class, node);
}

XMM_INLINE void xmm_front_free(void *object, struct xmm_span *span)
{
    xmm_front_free_as(object, span->size_class, span->node);
}

/* Empties the calling thread's cache into the central layer. */
void xmm_thread_cache_flush_current(void);

/* Thread-exit destructor support; created once in init phase 2. */
int xmm_thread_cache_init(void);

/* What the front end knows without counting its hits (the hit paths write
 * no counter: docs/statistics.md). */
struct xmm_front_stats {
    uint64_t cached_objects[XMM_CLASS_COUNT];   /* free objects in caches now */
    uint64_t slow_allocations[XMM_CLASS_COUNT]; /* served by a miss path */
    uint64_t slow_frees[XMM_CLASS_COUNT];       /* taken by an overflow or home path */
    uint64_t cached_bytes;
    uint64_t refills, drains, cross_node_frees;
    uint64_t thread_caches;
    uint64_t rseq_restarts;           /* aborted critical sections */
};
/* Bytes of free objects in the cache of CPU (or concurrency id) `slab`;
 * 0 in per-thread mode. */
uint64_t xmm_cpu_cache_bytes(int slab);
int xmm_cpu_cache_slab_count(void);     /* 0 in per-thread mode */
int xmm_cpu_cache_slabs_in_use(void);   /* cpu_cache.c's side of it */

/* Add every cache's counters to `stats`. */
void xmm_thread_cache_stats(struct xmm_front_stats *stats);
void xmm_cpu_cache_stats(struct xmm_front_stats *stats);
/* Every cache's counters, of both kinds. */
void xmm_front_end_stats(struct xmm_front_stats *stats);

/* In a fork child: repairs the registry lock if its holder is gone. */
void xmm_thread_cache_after_fork_child(void);


/* Front end set-up (the per-CPU caches, when used, and the thread caches):
 * phase 1 of init (no malloc), phase 2 (may allocate), and the child side
 * of fork (no lock is held across fork; see global/init.c). */
int xmm_front_end_init_core(void);
void xmm_front_end_init_hooks(void);
void xmm_front_end_after_fork_child(void);
/* "per-cpu" or "per-thread". */
const char *xmm_front_end_name(void);

/* Moves cached objects to the central layer: every CPU's cache (per-CPU
 * mode) or the calling thread's (per-thread mode). */
void xmm_front_end_release_caches(void);

#endif
