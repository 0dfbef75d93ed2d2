/*
 * alloc.h - the path of an allocation (alloc.c): the entry points the
 * public API and the malloc override call, and malloc's inline hit path.
 */
#ifndef XMM_ALLOC_H
#define XMM_ALLOC_H

#include "backend/backend.h"
#include "base/base.h"
#include "ds/ds.h"
#include "mem/mem.h"
#include "upkeep.h"

/* Allocation on the calling CPU's node (node -1) or on `node`. NULL with
 * errno ENOMEM on failure. */
void *xmm_heap_alloc(size_t size);
void *xmm_heap_alloc_zeroed(size_t size);
void *xmm_heap_alloc_aligned(size_t alignment, size_t size, int node);
void *xmm_heap_alloc_on_node(size_t size, int node);
void *xmm_heap_realloc(void *ptr, size_t size);

/* `region`, a block realloc moved into a mapping of its own, is being
 * freed (free.c): below the direct-map threshold, realloc's own mappings
 * may start higher from now on (alloc.c). Any thread. */
void xmm_heap_note_own_mapping_freed(const struct xmm_region *region);

/* count * size bytes into *bytes; false, with errno ENOMEM, when the
 * product overflows. The check of every array entry point below. */
bool xmm_array_bytes(size_t count, size_t size, size_t *bytes);

/* calloc, an array of `count` elements of `size` bytes, and reallocarray:
 * NULL with errno ENOMEM when count * size overflows. */
void *xmm_heap_calloc(size_t count, size_t size);
void *xmm_heap_alloc_array(size_t count, size_t size);
void *xmm_heap_realloc_array(void *ptr, size_t count, size_t size);

/* The slow path of the inline entry point below. */
void *xmm_heap_alloc_slow(size_t size);

/* The request that crosses the tick's mark (upkeep.h): ticks, then
 * allocates. Under XMM_FREE_CHECK=deferred every request (the countdown's
 * bias, upkeep.h): its hand-out clears the pending mark too. */
void *xmm_heap_alloc_ticked(size_t size);

/* `object`, popped from a cache for a request of `size`, has lost its free
 * tag (free_object.h): it was written after its free or by an overflow of
 * the block before it, or it is in a cache twice, a second free having
 * taken it for a live block after such a write, and its other copy was
 * handed out already. Reports it as heap corruption (an abort unless
 * XMM_INVALID_FREE=warn: the heap stays consistent, unlike a span's list
 * whose link was overwritten), drops it (never handed out; its span
 * counts it in use for good) and serves the request again. */
void *xmm_heap_alloc_untagged(void *object, size_t size);

/* malloc: the tick's countdown, size -> class (a table load) -> the front
 * end's pop, the block's free tag checked (free_object.h: bytes 4-5, one
 * compare), then its first word cleared. The check is what keeps a write
 * after free followed by a second free, which free() cannot tell from a
 * live block's, from handing the block out twice: the copy popped second
 * has lost its tag to the first one's hand-out. On a hit nothing else
 * runs: no init check (before init every cache misses), no call, no
 * counter, no option (under XMM_FREE_CHECK=deferred, whose hand-out also
 * clears the second word, the countdown sends every request to the
 * ticked path: upkeep.h). */
XMM_INLINE void *xmm_heap_alloc_inline(size_t size)
{
    /* Sizes up to 4 KiB first: one compare on their path, not two (the
     * 513-byte table by 8-byte steps; with it ending at 1 KiB, a 4 KiB
     * malloc+free pair took 7.13 ns, 6.82 with it: bench/micro, 5 rounds
     * alternating). */
    unsigned size_class;
    if (XMM_LIKELY(size <= XMM_SMALL_LOOKUP_MAX))
        size_class = xmm_class_by_8[(size + 7) >> 3];
    else if (size <= XMM_MAX_SMALL_SIZE)
        size_class = xmm_class_by_128[(size + 127) >> 7];
    else
        return xmm_heap_alloc_slow(size);
    if (XMM_UNLIKELY((xmm_thread.tick_countdown -= (int64_t)size) < 0))
        return xmm_heap_alloc_ticked(size);
    void *object = xmm_front_try_alloc(size_class);
    if (XMM_LIKELY(object != NULL)) {
        if (XMM_UNLIKELY(!xmm_free_object_may_be_free(object)))
            return xmm_heap_alloc_untagged(object, size);
        xmm_free_object_clear(object);
        return object;
    }
    return xmm_heap_alloc_slow(size);
}

#endif
