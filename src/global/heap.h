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

/* count * size bytes into *bytes; false, with errno ENOMEM, when the
 * product overflows. The check of every array entry point below. */
bool xmm_array_bytes(size_t count, size_t size, size_t *bytes);

/* calloc, an array of `count` elements of `size` bytes, and reallocarray:
 * NULL with errno ENOMEM when count * size overflows. */
void *xmm_heap_calloc(size_t count, size_t size);
void *xmm_heap_alloc_array(size_t count, size_t size);
void *xmm_heap_realloc_array(void *ptr, size_t count, size_t size);

/* Free of any block; `who` names the caller in error messages. */
void xmm_heap_free(void *ptr);

/* Resizes a large block in place (grow into free pages after it, shrink by
 * freeing its tail). true if `ptr` now holds `size` bytes. */
bool xmm_heap_resize_in_place(void *ptr, size_t size);

/* Resizes a block with a mapping of its own (mremap: in place, or moved
 * without copying). Its new address, or NULL (the block unchanged) if
 * `ptr` is no such block or the kernel refuses. */
void *xmm_heap_resize_direct(void *ptr, size_t size);

/* Usable size; 0 for NULL; reports an invalid or freed pointer (and
 * returns 0). The realloc form reports it as realloc's. */
size_t xmm_heap_usable_size(const void *ptr);
size_t xmm_heap_usable_size_for_realloc(const void *ptr);

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


/* The request that crosses the tick's mark (upkeep.h): ticks, then
 * allocates. */
void *xmm_heap_alloc_ticked(size_t size);

/* malloc: the tick's countdown, size -> class (a table load) -> the front
 * end's pop, then the block's first word cleared (it held the free tag,
 * free_object.h). On a hit nothing else runs: no init check (before init
 * every cache misses), no call, no counter. */
XMM_INLINE void *xmm_heap_alloc_inline(size_t size)
{
    if (XMM_LIKELY(size <= XMM_MAX_SMALL_SIZE)) {
        if (XMM_UNLIKELY((xmm_thread.tick_countdown -= (int64_t)size) < 0))
            return xmm_heap_alloc_ticked(size);
        void *object = xmm_front_try_alloc(xmm_size_to_class(size));
        if (XMM_LIKELY(object != NULL)) {
            xmm_free_object_clear(object);
            return object;
        }
    }
    return xmm_heap_alloc_slow(size);
}

/* The page info (backend/arena.h) of `ptr` when it is a live small block:
 * an object start (a multiply) of a small-object span, not past its last
 * object, and not already free (the high half of its first word,
 * free_object.h; objects never handed out are marked free too). 0 for
 * anything else (NULL, large,
 * direct, invalid, already free), which the slow paths classify and
 * report. Three dependent loads to the page's info (root, leaf, page
 * word), one to the class's row; the span descriptor is not read. */
XMM_INLINE xmm_page_info xmm_live_small_block(const void *ptr)
{
    xmm_page_info info = xmm_page_info_of(ptr);
    unsigned size_class = XMM_PAGE_INFO_CLASS(info);
    if (XMM_UNLIKELY(size_class == 0))
        return 0;
    const struct xmm_size_class *row = &xmm_size_classes[size_class];
    uintptr_t start = (((uintptr_t)ptr >> XMM_PAGE_SHIFT) - XMM_PAGE_INFO_PAGE(info))
                      << XMM_PAGE_SHIFT;
    size_t offset = (uintptr_t)ptr - start;
    uint32_t index = (uint32_t)((offset * row->reciprocal) >> 40);
    /* A block that may be free goes to the slow path, which reads the whole
     * word to tell (and frees it after all if it is live). */
    if (XMM_UNLIKELY((size_t)index * row->size != offset || index >= row->objects ||
                     xmm_free_object_may_be_free(ptr, start)))
        return 0;
    return info;
}

/* free: the checks above, the free tag, then the front end's push. */
XMM_INLINE void xmm_heap_free_inline(void *ptr)
{
    xmm_page_info info = xmm_live_small_block(ptr);
    if (XMM_LIKELY(info != 0)) {
        xmm_free_object_set(ptr, NULL);
        xmm_front_free_as(ptr, XMM_PAGE_INFO_CLASS(info), XMM_PAGE_INFO_NODE(info));
        return;
    }
    xmm_heap_free_slow(ptr);
}

/* free_sized, sized and aligned operator delete: the free of a block the
 * caller says has `size` bytes (XMM_SIZE_UNKNOWN: not said) and
 * `alignment` (0: the default). A size of another size class than the
 * block's, or a misaligned block, is reported as an invalid free (`who`
 * names the call), and the block is left alone. `exact`: the size must be
 * the one asked for at allocation (C++); otherwise a size realloc kept the
 * block for is accepted too (free_sized). */
#define XMM_SIZE_UNKNOWN SIZE_MAX /* an aligned delete without a size */
void xmm_heap_free_sized(void *ptr, size_t size, size_t alignment, bool exact,
                         const char *who);

/* Sized operator delete, inline: a small block whose class is the one
 * operator new gave `size` (a table load and a compare more than free);
 * anything else through xmm_heap_free_sized. */
XMM_INLINE void xmm_heap_delete_sized_inline(void *ptr, size_t size)
{
    xmm_page_info info = xmm_live_small_block(ptr);
    if (XMM_LIKELY(info != 0 && size <= XMM_MAX_SMALL_SIZE &&
                   xmm_size_to_class(size < 16 ? 16 : size) == XMM_PAGE_INFO_CLASS(info))) {
        xmm_free_object_set(ptr, NULL);
        xmm_front_free_as(ptr, XMM_PAGE_INFO_CLASS(info), XMM_PAGE_INFO_NODE(info));
        return;
    }
    xmm_heap_free_sized(ptr, size, 0, true, "operator delete");
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
extern XMM_HIDDEN struct xmm_heap_counters xmm_heap_counters;

#endif
