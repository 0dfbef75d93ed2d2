/*
 * heap.h - the allocator's core entry points, shared by the public API
 * (api.c) and the malloc override (override.c).
 */
#ifndef XMM_HEAP_H
#define XMM_HEAP_H

#include "backend/backend.h"
#include "base/base.h"
#include "mem/mem.h"
#include "ds/ds.h"
#include "upkeep.h"

/* Allocation on the calling CPU's node (node -1) or on `node`. NULL with
 * errno ENOMEM on failure. */
void *xmm_heap_alloc(size_t size);
void *xmm_heap_alloc_zeroed(size_t size);
void *xmm_heap_alloc_aligned(size_t alignment, size_t size, int node);
void *xmm_heap_alloc_on_node(size_t size, int node);
void *xmm_heap_realloc(void *ptr, size_t size);

/* Free of any block; `who` names the caller in error messages. */
void xmm_heap_free(void *ptr);

/* Resizes a large block in place (grow into free pages after it, shrink by
 * freeing its tail). true if `ptr` now holds `size` bytes. */
bool xmm_heap_resize_in_place(void *ptr, size_t size);

/* Usable size; 0 for NULL; reports an invalid pointer. */
size_t xmm_heap_usable_size(const void *ptr);

/* Home node, or -1 if XMM did not hand out `ptr`. */
int xmm_heap_node_of(const void *ptr);

/* Blocks of another allocator. When XMM is not the process's malloc (it
 * was loaded by dlopen, or a library bound to it with RTLD_DEEPBIND), the
 * process also has glibc's malloc, and a pointer in no XMM region most
 * likely is glibc's: the override layer (override.c) then provides its
 * owner's functions, and free, realloc and malloc_usable_size hand such a
 * pointer to them instead of reporting it. NULL when XMM is the process's
 * malloc (then such a pointer is a bug, reported), and in the core library
 * without the override (a weak symbol). Not for pointers inside XMM's
 * regions, which are always XMM's to judge. */
struct xmm_foreign_owner {
    void (*free)(void *ptr);
    void *(*realloc)(void *ptr, size_t size);
    size_t (*usable_size)(void *ptr);
};
const struct xmm_foreign_owner *xmm_override_foreign_owner(void) __attribute__((weak));

XMM_INLINE const struct xmm_foreign_owner *xmm_foreign_owner_of(const void *ptr)
{
    /* A direct mapping owns the whole granule of its last page in the map,
     * not the rest of it, where the kernel may map glibc's blocks. */
    const struct xmm_region *region = xmm_region_of(ptr);
    if ((region && (const char *)ptr < region->base + region->size) ||
        !xmm_override_foreign_owner)
        return NULL;
    return xmm_override_foreign_owner();
}

/* Slow paths of the inline entry points below. */
void *xmm_heap_alloc_slow(size_t size);
void xmm_heap_free_slow(void *ptr);


/* malloc: size -> class (a table load) -> the front end's pop. On a hit
 * nothing else runs: no init check (before init every cache misses), no
 * call. */
XMM_INLINE void *xmm_heap_alloc_inline(size_t size)
{
    if (XMM_LIKELY(size <= XMM_MAX_SMALL_SIZE)) {
        void *object = xmm_front_try_alloc(xmm_size_to_class(size));
        if (XMM_LIKELY(object != NULL)) {
            if (XMM_UNLIKELY(--xmm_upkeep_countdown < 0))
                xmm_upkeep_tick();
            return object;
        }
    }
    return xmm_heap_alloc_slow(size);
}

/* free: address -> region -> span (two loads through the maps), the
 * object-start check (a multiply), then the front end's push. Anything
 * unusual (NULL, large, direct, invalid) takes the slow path, which
 * classifies and reports. */
XMM_INLINE void xmm_heap_free_inline(void *ptr)
{
    struct xmm_region *region = xmm_region_of(ptr);
    if (XMM_LIKELY(region != NULL && region->kind == XMM_REGION_CHUNK)) {
        struct xmm_span *span = xmm_chunk_span_of((struct xmm_chunk *)region, ptr);
        if (XMM_LIKELY(span != NULL &&
                       __atomic_load_n(&span->kind, __ATOMIC_ACQUIRE) == XMM_SPAN_SMALL)) {
            size_t offset = (size_t)((char *)ptr - span->start);
            unsigned size_class = span->size_class;
            uint32_t index = xmm_class_object_index(size_class, offset);
            if (XMM_LIKELY((size_t)index * xmm_class_size(size_class) == offset &&
                           index < xmm_size_classes[size_class].objects)) {
                xmm_front_free(ptr, span);
                return;
            }
        }
    }
    xmm_heap_free_slow(ptr);
}

/* Process-wide counters kept outside the front end (atomic, slow paths). */
struct xmm_heap_counters {
    uint64_t large_allocations;
    uint64_t direct_allocations;
    uint64_t direct_bytes;
    uint64_t large_frees;
    uint64_t direct_frees;
    uint64_t failed_allocations;
};
extern struct xmm_heap_counters xmm_heap_counters;

#endif
