/*
 * front_end.h - the caches in front of the central layer.
 *
 * Two implementations behind one interface: per-CPU caches on restartable
 * sequences (cpu_cache.h) and per-thread caches (thread_cache.h), the
 * fallback where rseq is unavailable or disabled (XMM_RSEQ=0). front_end.c
 * owns the choice between them, their set-up, fork repair, release and
 * statistics; the two implementations do not call each other, nor
 * front_end.c. The inline fast paths below are the hit paths of malloc and
 * free.
 */
#ifndef XMM_FRONT_END_H
#define XMM_FRONT_END_H

#include "base/base.h"
#include "backend/backend.h"
#include "ds/ds.h"
#include "cache_stats.h"
#include "cpu_cache.h"
#include "thread_cache.h"

/* The miss paths of a thread without an rseq area: it may attach to the
 * per-CPU caches now, else it uses its thread cache. */
void *xmm_front_alloc_slow(unsigned size_class);
void xmm_front_free_slow(void *object, unsigned size_class, unsigned node);

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
        return xmm_rseq_pop(area, xmm_thread.rseq_index, &xmm_cpu_slabs, size_class);
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

/* The page info a free passes on when it found the span another way (no
 * page word at hand): class and node, and for the classes below a cache
 * line the page's owner, loaded now. */
XMM_INLINE xmm_page_info xmm_front_page_info(const void *object, unsigned size_class,
                                             unsigned node)
{
    xmm_page_info info = XMM_PAGE_INFO(size_class, node, 0);
    if (size_class > XMM_SUBLINE_CLASSES)
        return info;
    return (info & ~XMM_PAGE_INFO_OWNER_BITS) |
           (uint32_t)xmm_page_owner_load(object) << XMM_PAGE_INFO_OWNER_SHIFT;
}

/* Free fast path: a push when the object belongs to this cache's node and
 * the bin has room. The caller has checked the object (global/free.h: a
 * live block, now tagged free). The _as form takes the object's page info
 * (backend/arena.h: its class, home node and owner, as global/free.h read
 * it; the page field is not used), the other the span.
 * Per-CPU, an object smaller than a cache line whose page another CPU's
 * cache owns goes to this CPU's remote bin (cpu_cache.h): one compare of
 * the class for every free, and for those classes the owner byte of the
 * page word (a shift, no load), from which the section picks the bin
 * (xmm_rseq_push_owned). */
XMM_INLINE void xmm_front_free_as(void *object, xmm_page_info info)
{
    unsigned size_class = XMM_PAGE_INFO_CLASS(info);
#if XMM_PER_CPU_CACHES
    void *area = xmm_thread.rseq_area;
    if (XMM_LIKELY(area != NULL)) {
        const uint32_t *index = xmm_thread.rseq_index;
        enum xmm_rseq_push_result result;
        /* The page info's bits 8-15 are the node, as the pushes want them. */
        if (size_class <= XMM_SUBLINE_CLASSES) {
            /* The section picks the bin. FRESH counts as SHARED: objects
             * of a page no CPU cache has claimed came from a thread cache
             * or straight from the central layer (alloc.c), and have no
             * owner to keep away. */
            result = xmm_rseq_push_owned(area, index, &xmm_cpu_slabs, size_class, object, info);
        } else {
            result = xmm_rseq_push(area, index, &xmm_cpu_slabs, size_class, object, info);
        }
        if (XMM_LIKELY(result == XMM_RSEQ_PUSHED))
            return;
        xmm_cpu_cache_free_slow(object, size_class, result);
        return;
    }
#endif
    unsigned node = XMM_PAGE_INFO_NODE(info);
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

/* Defers the free of `object` (global/free.h: a small block's start of
 * 16 bytes or more): marks it pending for this CPU's slot with `key` and
 * puts it there (xmm_rseq_swap_pending); returns the block that was there
 * (NULL: none), whose free the caller completes now, with *tag the slot's
 * part of its mark. With no slot to use (per-thread caches, or a slab
 * being released), returns `object` itself, unmarked, and *tag is
 * XMM_FRONT_NOT_DEFERRED. One rseq section. */
#define XMM_FRONT_NOT_DEFERRED (~(uint64_t)0)

XMM_INLINE void *xmm_front_defer_free(void *object, const uint64_t *key, uint64_t *tag)
{
#if XMM_PER_CPU_CACHES
    void *area = xmm_thread.rseq_area;
    if (XMM_LIKELY(area != NULL)) {
        _Static_assert(XMM_SLAB_TAG_REFUSED == XMM_FRONT_NOT_DEFERRED, "one value for both");
        return xmm_rseq_swap_pending(area, xmm_thread.rseq_index, &xmm_cpu_slabs, object, key, tag);
    }
#endif
    *tag = XMM_FRONT_NOT_DEFERRED;
    return object;
}

XMM_INLINE void xmm_front_free(void *object, struct xmm_span *span)
{
    xmm_front_free_as(object, xmm_front_page_info(object, span->size_class, span->node));
}

/* Front end set-up (the per-CPU caches, when used, and the thread caches):
 * phase 1 of init (no malloc), phase 2 (may allocate), and the child side
 * of fork (no lock is held across fork; see global/init.c). */
int xmm_front_end_init_core(void);
void xmm_front_end_init_hooks(void);
void xmm_front_end_after_fork_child(void);
/* "per-cpu" or "per-thread", and the rseq mode, for statistics and
 * XMM_VERBOSE. */
const char *xmm_front_end_name(void);
const char *xmm_front_end_detail(void);

/* Moves cached objects to the central layer: every CPU's cache (per-CPU
 * mode) or the calling thread's (per-thread mode). */
void xmm_front_end_release_caches(bool (*check_pending)(void *object, uint64_t tag));

/* Every cache's figures, of both kinds. */
void xmm_front_end_stats(struct xmm_front_stats *stats);
int xmm_cpu_cache_slab_count(void);     /* 0 in per-thread mode */

#endif
