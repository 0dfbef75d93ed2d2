/*
 * free.h - the path of a free (free.c): the entry points the public API
 * and the malloc override call, the checks of a pointer, and free's inline
 * hit path.
 */
#ifndef XMM_FREE_H
#define XMM_FREE_H

#include "backend/backend.h"
#include "base/base.h"
#include "ds/ds.h"
#include "mem/mem.h"

/* Free of any block; `who` names the caller in error messages. */
void xmm_heap_free(void *ptr);

/* Resizes a large block in place (grow into free pages after it, shrink by
 * freeing its tail). true if `ptr` now holds `size` bytes. */
bool xmm_heap_resize_in_place(void *ptr, size_t size);

/* True when `ptr` is a block with a mapping of its own (a direct block). */
bool xmm_heap_has_own_mapping(const void *ptr);

/* Resizes a block with a mapping of its own (mremap: in place, or moved
 * without copying). Its new address, or NULL (the block unchanged) if
 * `ptr` is no such block or the kernel refuses. */
void *xmm_heap_resize_direct(void *ptr, size_t size);

/* Usable size; 0 for NULL; reports an invalid or freed pointer (and
 * returns 0). The realloc form reports it as realloc's, the last in the
 * name `who` ("xmm_free_pages()"). */
size_t xmm_heap_usable_size(const void *ptr);
size_t xmm_heap_usable_size_for_realloc(const void *ptr);
size_t xmm_heap_usable_size_as(const void *ptr, const char *who);

/* Home node, or -1 if XMM did not hand out `ptr`. */
int xmm_heap_node_of(const void *ptr);

/* Blocks of another allocator. When XMM is not the process's malloc (it
 * was loaded by dlopen, or a library bound to it with RTLD_DEEPBIND), the
 * process also has glibc's malloc, and a pointer in no XMM region most
 * likely is glibc's: free, realloc and malloc_usable_size hand such a
 * pointer to its owner's functions instead of reporting it. The finder of
 * that owner is a variable the malloc override defines (override.c: a
 * link-time definition, like malloc itself, so it is there before any
 * constructor); it answers NULL when XMM is the process's malloc (then
 * such a pointer is a bug, reported). The core library without the
 * override has none. Not for pointers inside XMM's regions, which are
 * always XMM's to judge. */
struct xmm_foreign_owner {
    void (*release)(void *ptr);                    /* its free */
    void *(*resize)(void *ptr, size_t size);       /* its realloc */
    size_t (*measure)(void *ptr);                  /* its malloc_usable_size */
};
typedef const struct xmm_foreign_owner *(*xmm_foreign_owner_finder)(void);
extern XMM_HIDDEN xmm_foreign_owner_finder xmm_heap_foreign_owner_finder;

XMM_INLINE const struct xmm_foreign_owner *xmm_foreign_owner_of(const void *ptr)
{
    /* A direct mapping owns the whole granule of its last page in the map,
     * not the rest of it, and a chunk its first granule, not the hole at
     * its start (backend/arena.h): the kernel may map glibc's blocks in
     * either. */
    const struct xmm_region *region = xmm_region_of(ptr);
    xmm_foreign_owner_finder finder = xmm_heap_foreign_owner_finder;
    bool in_hole = region && region->kind == XMM_REGION_CHUNK &&
                   (const char *)ptr < region->base + XMM_CHUNK_HOLE_SIZE;
    if ((region && !in_hole && (const char *)ptr < region->base + region->size) || !finder)
        return NULL;
    return finder();
}

/* The slow path of the inline entry points below: under
 * XMM_FREE_CHECK=deferred, first the deferred free of a block of 16 bytes
 * or more (free.c); then every other case, classified and freed or
 * reported. */
void xmm_heap_free_slow(void *ptr);

/* xmm_small_block_of: the page info (backend/arena.h) of `ptr` when it
 * is the start of a small block: an object start of a small-object span,
 * not past its last object (one multiply and compare, size_class.h). 0
 * for anything else (NULL, large, direct, invalid), which the slow paths
 * classify and report. The page word is one load from the masked pointer
 * (the map check beside it decides a branch), then the loads of the
 * class's two start words; neither the span descriptor nor the block is
 * read. xmm_small_block_tested(ptr, true) is free()'s own test: 0 also
 * for the classes whose free XMM_FREE_CHECK=deferred defers
 * (size_class.h). */
XMM_INLINE xmm_page_info xmm_small_block_tested(const void *ptr, bool free_hit)
{
    xmm_page_info info = xmm_page_info_of(ptr);
    unsigned size_class = XMM_PAGE_INFO_CLASS(info); /* 0: refused below */
    uint64_t offset = ((uintptr_t)ptr & (XMM_PAGE_SIZE - 1)) +
                      ((uint64_t)XMM_PAGE_INFO_PAGE(info) << XMM_PAGE_SHIFT);
    if (XMM_UNLIKELY(free_hit ? !xmm_class_is_free_hit(size_class, offset)
                              : !xmm_class_is_object_start(size_class, offset)))
        return 0;
    /* Class 0 failed the start test, so info is not 0: said, so that the
     * callers' test of it costs no instruction. */
    if (info == 0)
        __builtin_unreachable();
    return info;
}

XMM_INLINE xmm_page_info xmm_small_block_of(const void *ptr)
{
    return xmm_small_block_tested(ptr, false);
}

/* xmm_small_block_of, for a block that is also live: not free already
 * (bytes 4-5 of its first word, free_object.h; objects never handed out
 * are marked free too) and, under XMM_FREE_CHECK=deferred, from 16 bytes
 * on, without the pending mark (its free pending, or done). A block that may be free goes to the slow
 * path, which reads the whole word to tell. */
XMM_INLINE xmm_page_info xmm_live_small_block(const void *ptr)
{
    xmm_page_info info = xmm_small_block_of(ptr);
    if (XMM_UNLIKELY(info == 0 || xmm_free_object_may_be_free(ptr) ||
                     (xmm_config.free_deferred &&
                      XMM_PAGE_INFO_CLASS(info) >= XMM_FREE_DEFERRED_FIRST_CLASS &&
                      xmm_free_object_is_marked(ptr))))
        return 0;
    return info;
}

/* A pending free that is not as its free left it, and a second free of a
 * block still pending in this CPU's slot: confirmed and reported, or
 * freed (free.c). */
void xmm_heap_free_pending_slow(void *object, uint64_t tag);
void xmm_heap_free_pending_again(void *object);

/* The check of a block taken from the pending slot tagged `tag` by a
 * release of the caches (xmm_front_end_release_caches): tagged free
 * (true), or reported (false). */
bool xmm_heap_check_pending(void *object, uint64_t tag);

/* Completes the free of `object`, taken from the pending slot tagged
 * `tag`: checked (xmm_small_block_of again: a block freed twice may lie
 * in a span reused or a chunk given back since; then one load of the line
 * its free's store brought in), tagged free, pushed onto this CPU's
 * cache. */
XMM_INLINE void xmm_heap_free_pending(void *object, uint64_t tag)
{
    xmm_page_info info = xmm_small_block_of(object);
    if (XMM_UNLIKELY(info == 0 || !xmm_free_object_pending_intact(object, tag))) {
        xmm_heap_free_pending_slow(object, tag);
        return;
    }
    xmm_free_object_set(object, NULL);
    xmm_front_free_as(object, info);
}

/* free: the block's start checked from the page table, then its first
 * word's bytes 4-5 (not the free tag: not free already), the free tag
 * written and the block pushed onto this CPU's or thread's cache. Under
 * XMM_FREE_CHECK=deferred, blocks of 16 bytes and more fail the start
 * test here (free_limit, size_class.h) and the slow path defers their
 * check, so the default path tests no option. */
XMM_INLINE void xmm_heap_free_inline(void *ptr)
{
    xmm_page_info info = xmm_small_block_tested(ptr, true);
    if (XMM_LIKELY(info != 0)) {
        if (XMM_UNLIKELY(xmm_free_object_may_be_free(ptr))) {
            xmm_heap_free_slow(ptr);
            return;
        }
        xmm_free_object_set(ptr, NULL);
        xmm_front_free_as(ptr, info);
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
        xmm_front_free_as(ptr, info);
        return;
    }
    xmm_heap_free_sized(ptr, size, 0, true, "operator delete");
}

#endif
