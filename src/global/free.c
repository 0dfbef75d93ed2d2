/*
 * free.c - the path of a free: address -> region -> span -> class, then the
 * front end (small), the page heap (large) or munmap (direct). Every step
 * is checked, so a pointer XMM did not hand out is reported, not followed.
 */
#include <errno.h>

#include "backend/backend.h"
#include "base/base.h"
#include "mem/mem.h"
#include "alloc.h"
#include "free.h"
#include "stats.h"
#include "profile.h"
#include "ds/ds.h"

static void report_invalid(const void *ptr)
{
    xmm_report_bad_free("free(): invalid pointer (not allocated by xmm, or already freed)", ptr);
}

/* "<who>: <what> <ptr>", through the one invalid-free report (base/). */
static void report_with(const char *who, const char *what, const void *ptr)
{
    char line[160];
    struct xmm_text text = {line, sizeof line, 0};
    xmm_text_format(&text, "%s: %s", who, what);
    xmm_report_bad_free(line, ptr);
}

static void report_freed(const char *who, const void *ptr)
{
    report_with(who, "pointer already freed", ptr);
}

static void report_not_allocated(const char *who, const void *ptr)
{
    report_with(who, "invalid pointer (not allocated by xmm)", ptr);
}


/* What XMM knows of `ptr`. */
struct block {
    struct xmm_region *region;
    struct xmm_span *span;  /* chunk blocks */
    uint64_t generation;    /* direct blocks (xmm_arena_claim_direct) */
};

enum block_kind {
    BLOCK_INVALID,
    BLOCK_SMALL,
    BLOCK_LARGE,
    BLOCK_DIRECT,
    BLOCK_FREED_SMALL, /* free already: in a cache, a batch or its span's list */
    BLOCK_FREED_LARGE, /* a large block free already, or a direct one claimed */
};

/* True when `ptr`, a small block of `span` whose word is not a free
 * object's, has the pending mark: its free is pending, or done (the mark
 * stays until the next hand-out). 8-byte blocks have no room for it. */
static bool is_pending(const void *ptr, const struct xmm_span *span)
{
    return xmm_config.free_deferred && span->size_class >= XMM_FREE_DEFERRED_FIRST_CLASS &&
           xmm_free_object_is_marked(ptr);
}

/* Classifies `ptr`: only the exact start of a live block is valid. */
static enum block_kind find_block(const void *ptr, struct block *block)
{
    struct xmm_region *region = xmm_region_of(ptr);
    block->region = region;
    block->span = NULL;
    if (XMM_UNLIKELY(!region))
        return BLOCK_INVALID;
    if (XMM_LIKELY(region->kind == XMM_REGION_CHUNK)) {
        struct xmm_span *span = xmm_chunk_span_of((struct xmm_chunk *)region, ptr);
        block->span = span;
        if (XMM_UNLIKELY(!span))
            return BLOCK_INVALID;
        uint8_t kind = __atomic_load_n(&span->kind, __ATOMIC_ACQUIRE);
        if (XMM_LIKELY(kind == XMM_SPAN_SMALL)) {
            size_t offset = (size_t)((const char *)ptr - span->start);
            unsigned size_class = span->size_class;
            uint32_t index = xmm_class_object_index(size_class, offset);
            /* The objects a trim purged whole, loaded before `carved`: a
             * trim that cuts such an object back into the tail lowers
             * `carved` before it drops the object's bit, so a free that
             * finds the bit gone finds the object past `carved`. */
            uint64_t purged = __atomic_load_n(&span->purged, __ATOMIC_ACQUIRE);
            /* Not an object start, or an object never cut from the span
             * (so never handed out): no block of XMM's. `carved` with
             * acquire: a cut tags its objects before it stores `carved`
             * (central.c, cut_tail), so an object found below it is found
             * with its tag. */
            if (XMM_UNLIKELY((size_t)index * xmm_class_size(size_class) != offset ||
                             index >= __atomic_load_n(&span->carved, __ATOMIC_ACQUIRE)))
                return BLOCK_INVALID;
            /* Purged whole by a trim (its first word reads zero, as a live
             * block's does): free, found in the span (central.c); its page
             * word sent this free here. */
            if (index < 64 && (purged >> index & 1))
                return BLOCK_FREED_SMALL;
            if (xmm_free_object_is_free(ptr, span->start, xmm_span_bytes(span)) ||
                is_pending(ptr, span))
                return BLOCK_FREED_SMALL;
            return BLOCK_SMALL;
        }
        if (kind != XMM_SPAN_RUN && ptr == span->start)
            return kind == XMM_SPAN_LARGE ? BLOCK_LARGE : BLOCK_FREED_LARGE;
        return BLOCK_INVALID;
    }
    if (region->kind == XMM_REGION_DIRECT) {
        block->generation = xmm_arena_direct_generation(region, ptr);
        if (block->generation == XMM_DIRECT_NOT_THIS)
            return BLOCK_INVALID;
        return block->generation & 1 ? BLOCK_FREED_LARGE : BLOCK_DIRECT;
    }
    return BLOCK_INVALID;
}

void xmm_heap_free(void *ptr)
{
    xmm_heap_free_inline(ptr);
}

/* Claims the span (one CAS: a second free of the block, even racing, fails
 * it and is reported), then keeps it in the large cache when its size has
 * room, else gives it back to the page heap. */
static void free_large(void *ptr, struct xmm_span *span)
{
    if (!xmm_large_cache_claim(span)) {
        xmm_report_double_free(ptr);
        return;
    }
    /* A sampled block (the claim makes this thread the only reader): its
     * record leaves the heap profile, and the span leaves with NULL. A
     * small request sampled is a live object of its class, not a large
     * allocation (alloc_pages): its span says which class. */
    unsigned sampled_class = 0;
    if (XMM_UNLIKELY(span->sample != NULL)) {
        xmm_profile_forget(span->sample);
        span->sample = NULL;
        sampled_class = span->size_class;
        span->size_class = 0;
        if (sampled_class)
            __atomic_fetch_sub(&xmm_heap_counters.sampled_small_live[sampled_class], 1,
                               __ATOMIC_RELAXED);
    }
    xmm_page_heap_note_large_free(span->node, xmm_span_bytes(span), !sampled_class);
    if (!xmm_large_cache_keep(span))
        xmm_page_heap_free_claimed(span);
}

/* Claims the block (a second free, even racing, fails the claim and is
 * reported), then unmaps it. */
static void free_direct(void *ptr, struct xmm_region *region, uint64_t generation)
{
    if (!xmm_arena_claim_direct(region, generation)) {
        xmm_report_double_free(ptr);
        return;
    }
    void *sample = __atomic_exchange_n(&region->sample, NULL, __ATOMIC_ACQ_REL);
    if (XMM_UNLIKELY(sample != NULL))
        xmm_profile_forget(sample);
    __atomic_fetch_add(&xmm_heap_counters.direct_frees, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&xmm_heap_counters.direct_bytes, region->size, __ATOMIC_RELAXED);
    if (region->grown)
        xmm_heap_note_own_mapping_freed(region);
    xmm_arena_unmap_direct(region);
}

static void free_classified(void *ptr)
{
    if (!ptr)
        return;
    struct block block;
    switch (find_block(ptr, &block)) {
    case BLOCK_SMALL:
        xmm_free_object_set(ptr, NULL);
        xmm_front_free(ptr, block.span);
        return;
    case BLOCK_LARGE:
        free_large(ptr, block.span);
        return;
    case BLOCK_DIRECT:
        free_direct(ptr, block.region, block.generation);
        return;
    case BLOCK_FREED_SMALL:
    case BLOCK_FREED_LARGE:
        xmm_report_double_free(ptr);
        return;
    case BLOCK_INVALID: {
        const struct xmm_foreign_owner *owner = xmm_foreign_owner_of(ptr);
        if (owner)
            owner->release(ptr);
        else if (xmm_arena_unmapped_recently(ptr))
            xmm_report_double_free(ptr); /* a direct block, unmapped by its first free */
        else
            report_invalid(ptr);
        return;
    }
    }
}

/* The free of `ptr`, a small block's start of 16 bytes or more, under
 * XMM_FREE_CHECK=deferred: its check deferred by one free (docs/design.md,
 * "The path of a free"). One rseq section marks the block pending for
 * this CPU (a store into its second word, which does not hold up the
 * instructions after it as a load of a cold block would) and swaps it
 * into the CPU's pending slot; the block that was there is checked,
 * tagged free and pushed, its line brought in by its own free's store
 * meanwhile. A block is pushed only after its check, so none is handed
 * out twice; a double free is reported one free on that CPU later than it
 * happens (back to back: at once). Without a pending slot (per-thread
 * caches, a slab being released) the check is at once, of the free tag
 * and of the pending mark (a block freed and not handed out since has
 * one). Reached through xmm_heap_free_slow (free.h). */
static void free_deferred(void *ptr, xmm_page_info info)
{
    uint64_t tag;
    void *complete = xmm_front_defer_free(ptr, &xmm_free_pending_secret, &tag);
    if (XMM_LIKELY(tag != XMM_FRONT_NOT_DEFERRED)) {
        if (XMM_UNLIKELY(complete == ptr))
            xmm_heap_free_pending_again(ptr);
        else if (complete)
            xmm_heap_free_pending(complete, tag);
        return;
    }
    if (XMM_UNLIKELY(xmm_free_object_may_be_free(ptr) || xmm_free_object_is_marked(ptr))) {
        free_classified(ptr);
        return;
    }
    xmm_free_object_set(ptr, NULL);
    xmm_front_free_as(ptr, info);
}

XMM_HOT_ENTRY void xmm_heap_free_slow(void *ptr)
{
    if (XMM_UNLIKELY(xmm_config.free_deferred)) {
        xmm_page_info info = xmm_small_block_of(ptr);
        if (info != 0 && XMM_PAGE_INFO_CLASS(info) >= XMM_FREE_DEFERRED_FIRST_CLASS) {
            free_deferred(ptr, info);
            return;
        }
    }
    free_classified(ptr);
}

void xmm_heap_free_pending_again(void *object)
{
    xmm_report_double_free(object);
}

/* A pending block, taken from the slot tagged `tag`, that is not as its
 * free left it. Free already (its word decodes into its span): a double
 * free. Without that slot's mark: a malloc handed it out between its
 * second free and this check, or a free on another CPU marked it for its
 * own slot (double frees both), or the program wrote it after freeing it;
 * reported. With the mark and bytes 4-5 that only looked like a free
 * object's (the program's data): freed after all. */
static bool check_pending_slow(void *object, uint64_t tag, struct block *found)
{
    enum block_kind kind = find_block(object, found);
    if (kind != BLOCK_SMALL && kind != BLOCK_FREED_SMALL) {
        report_invalid(object);
        return false;
    }
    const struct xmm_span *span = found->span;
    if (xmm_free_object_is_free(object, span->start, xmm_span_bytes(span))) {
        xmm_report_double_free(object);
        return false;
    }
    if (((xmm_free_word *)object)[1] != xmm_free_pending_mark(object, tag)) {
        report_with("free()", "double free (the block was handed out again, or freed on another "
                    "CPU too) or write after free of", object);
        return false;
    }
    xmm_free_object_set(object, NULL);
    return true;
}

bool xmm_heap_check_pending(void *object, uint64_t tag)
{
    struct block block;
    if (XMM_LIKELY(xmm_small_block_of(object) != 0 && xmm_free_object_pending_intact(object, tag))) {
        xmm_free_object_set(object, NULL);
        return true;
    }
    return check_pending_slow(object, tag, &block);
}

void xmm_heap_free_pending_slow(void *object, uint64_t tag)
{
    struct block block;
    if (check_pending_slow(object, tag, &block))
        xmm_front_free(object, block.span);
}

/* The usable size of a live block; 0, after a report naming `who`, for a
 * pointer that is not one. */
static size_t usable_size(const void *ptr, const char *who)
{
    /* A live small block passes free's checks: the page word tells its
     * class, without the chunk's span map and the span descriptor, two
     * cache misses on a large heap (realloc in bench/workloads/churn). */
    xmm_page_info info = xmm_live_small_block(ptr);
    if (XMM_LIKELY(info != 0))
        return xmm_class_size(XMM_PAGE_INFO_CLASS(info));
    struct block block;
    switch (find_block(ptr, &block)) {
    case BLOCK_SMALL:
        return xmm_class_size(block.span->size_class);
    case BLOCK_LARGE:
        return xmm_span_bytes(block.span);
    case BLOCK_DIRECT:
        return block.region->size;
    case BLOCK_FREED_SMALL:
    case BLOCK_FREED_LARGE:
        report_freed(who, ptr);
        return 0;
    case BLOCK_INVALID:
        break;
    }
    const struct xmm_foreign_owner *owner = xmm_foreign_owner_of(ptr);
    if (owner)
        return owner->measure((void *)ptr);
    if (xmm_arena_unmapped_recently(ptr))
        report_freed(who, ptr);
    else
        report_not_allocated(who, ptr);
    return 0;
}

size_t xmm_heap_usable_size(const void *ptr)
{
    return ptr ? usable_size(ptr, "malloc_usable_size()") : 0;
}

size_t xmm_heap_usable_size_for_realloc(const void *ptr)
{
    return usable_size(ptr, "realloc()");
}

size_t xmm_heap_usable_size_as(const void *ptr, const char *who)
{
    return ptr ? usable_size(ptr, who) : 0;
}

/* ---- sized frees ------------------------------------------------------------ */

/* Whether a block of `usable` bytes (of small class `block_class`, or 0
 * for a large or direct block, whose sizes go by `granule`) is what a
 * request of `size` bytes and `alignment` (0: default) got. The C++ forms
 * (`exact`) must name the size given to new; free_sized may also name a
 * size given to realloc, which keeps a block in place down to half its
 * size (global/alloc.c). */
static bool size_matches(size_t size, size_t alignment, size_t usable, unsigned block_class,
                         size_t granule, bool exact)
{
    if (size > usable)
        return false;
    size_t request = size ? size : 1;
    if (block_class != 0) {
        /* The class the allocation chose (global/alloc.c, override_cxx.c). */
        size_t rounded = request;
        if (alignment)
            rounded = xmm_align_up(request, alignment < 8 ? 8 : alignment);
        else if (exact && rounded < 16)
            rounded = 16; /* operator new's smallest block */
        if (rounded <= XMM_MAX_SMALL_SIZE && xmm_size_to_class(rounded) == block_class)
            return true;
    } else if (xmm_align_up(request, granule) == usable) {
        return true; /* large and direct blocks: whole pages of the size */
    }
    return !exact && (size >= usable / 2 || usable <= 16);
}

void xmm_heap_free_sized(void *ptr, size_t size, size_t alignment, bool exact,
                         const char *who)
{
    if (!ptr)
        return;
    if (alignment && ((uintptr_t)ptr & (alignment - 1))) {
        report_with(who, "the block is not aligned as the call says", ptr);
        return;
    }
    if (size == XMM_SIZE_UNKNOWN) {
        xmm_heap_free_inline(ptr);
        return;
    }
    struct block block;
    enum block_kind kind = find_block(ptr, &block);
    if (kind == BLOCK_FREED_SMALL || kind == BLOCK_FREED_LARGE) {
        /* Reported here, in the caller's name: the free below would, under
         * XMM_FREE_CHECK=deferred, put the block in the CPU's pending slot,
         * which only a plain free completes, so a program that keeps to
         * sized deletes never got the report (a misuse audit). */
        report_with(who, "double free of", ptr);
        return;
    }
    size_t usable = 0, granule = XMM_PAGE_SIZE;
    unsigned block_class = 0;
    if (kind == BLOCK_SMALL) {
        block_class = block.span->size_class;
        usable = xmm_class_size(block_class);
    } else if (kind == BLOCK_LARGE) {
        /* A small request the heap profiler sampled has pages of its own
         * but stands for its class (free_large): a C++ delete is judged by
         * that class, else any size up to a page passed (found by a helper
         * with XMM_PROFILE=64k: wrong sizes of sampled blocks went
         * unreported). Not free_sized, which may name a size that realloc
         * kept in place within the page (alloc.c). */
        block_class = exact ? block.span->size_class : 0;
        usable = block_class ? xmm_class_size(block_class) : xmm_span_bytes(block.span);
    } else if (kind == BLOCK_DIRECT) {
        usable = block.region->size;
        granule = xmm_os_page_size();
    }
    if (usable && !size_matches(size, alignment, usable, block_class, granule, exact)) {
        /* What legacy C++ that glibc runs most often does wrong (undefined
         * behaviour, caught here because the sized delete passes the
         * static type's size), and the switch that lets it run on. */
        report_with(who, exact ? "the size does not match the block's (a delete through a base "
                                 "class without a virtual destructor? XMM_INVALID_FREE=warn "
                                 "goes on)"
                               : "the size does not match the block's",
                    ptr);
        return;
    }
    xmm_heap_free_inline(ptr);
}

int xmm_heap_node_of(const void *ptr)
{
    struct block block;
    switch (find_block(ptr, &block)) {
    case BLOCK_SMALL:
    case BLOCK_LARGE:
        return block.span->node;
    case BLOCK_DIRECT:
        return block.region->node;
    default:
        errno = EINVAL;
        return -1;
    }
}

bool xmm_heap_resize_in_place(void *ptr, size_t size)
{
    struct block block;
    if (find_block(ptr, &block) != BLOCK_LARGE || size <= XMM_MAX_SMALL_SIZE ||
        size + XMM_PAGE_SIZE >= XMM_DIRECT_MAP_THRESHOLD)
        return false;
    size_t pages = xmm_align_up(size, XMM_PAGE_SIZE) >> XMM_PAGE_SHIFT;
    if (!xmm_page_heap_resize(block.span, pages))
        return false;
    return true;
}

bool xmm_heap_has_own_mapping(const void *ptr)
{
    struct block block;
    return find_block(ptr, &block) == BLOCK_DIRECT;
}

void *xmm_heap_resize_direct(void *ptr, size_t size)
{
    struct block block;
    if (find_block(ptr, &block) != BLOCK_DIRECT)
        return NULL;
    size_t before = block.region->size;
    if (!xmm_arena_resize_direct(block.region, size))
        return NULL;
    size_t after = block.region->size;
    if (after > before)
        xmm_heap_count_direct(0, after - before);
    else
        __atomic_fetch_sub(&xmm_heap_counters.direct_bytes, before - after, __ATOMIC_RELAXED);
    return block.region->base;
}

/* None in the core library; the malloc override links a definition of its
 * own in (override.c), so that the finder is there before any constructor
 * runs: a library whose constructor runs before XMM's (libnuma, in a
 * program that links it) may free glibc's blocks through XMM. */
__attribute__((weak)) xmm_foreign_owner_finder xmm_heap_foreign_owner_finder;
