/*
 * thread_cache.h - per-thread caches: the front end where rseq is not used
 * (thread_cache.c). A cache holds, per size class, a stack of free objects
 * of its own node only. The inline fast paths are in front_end.h.
 */
#ifndef XMM_THREAD_CACHE_H
#define XMM_THREAD_CACHE_H

#include "base/base.h"
#include "ds/ds.h"
#include "cache_stats.h"

struct xmm_cache_bin {
    void **slots;            /* slots[0 .. count) hold free objects */
    uint32_t count;
    uint32_t capacity;       /* granted from the cache's budget (thread_cache.c) */
    uint32_t limit;          /* the most it may be granted: slots[0 .. limit) */
    uint32_t refills_started; /* refills of its slow start (thread_cache.c) */
};

/* xmm_thread.thread_cache (base/common.h): the calling thread's cache;
 * NULL before its first allocation. After the thread's exit destructor it
 * points to a cache with no capacity, so the fast path misses and the slow
 * path goes to the central layer directly. */
struct xmm_thread_cache {
    struct xmm_cache_bin bins[XMM_CLASS_COUNT];
    int node;                        /* home node of every cached object */
    uint64_t granted_bytes;          /* sum of the bins' capacity x size: at
                                        most XMM_THREAD_CACHE_SIZE */
    uint64_t refills, drains, cross_node_frees;
    struct xmm_thread_cache *next;   /* registry of all caches */
    struct xmm_thread_cache *next_free; /* recycled after thread exit */
    int owner_process, owner_thread; /* the thread using it; 0: none (recycled) */
    bool slots_purged;               /* recycled cold (thread_cache.c, purge_slots) */
};

/* Thread-exit destructor support, created once in init phase 2; from then
 * on threads get caches of their own. 0 or -1. */
int xmm_thread_cache_init(void);

/* Slow paths. */
void *xmm_thread_cache_alloc_slow(unsigned size_class);
void xmm_thread_cache_free_slow(void *object, unsigned size_class, unsigned node);

/* Empties the calling thread's cache into the central layer. */
void xmm_thread_cache_flush_current(void);

/* Adds every thread cache's figures to `stats`. */
void xmm_thread_cache_stats(struct xmm_front_stats *stats);

/* In a fork child: repairs the registry lock if its holder is gone. */
void xmm_thread_cache_after_fork_child(void);

#endif
