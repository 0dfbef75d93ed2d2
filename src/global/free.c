/*
 * free.c - the path of a free: address -> region -> span -> class, then the
 * front end (small), the page heap (large) or munmap (direct). Every step
 * is checked, so a pointer XMM did not hand out is reported, not followed.
 */
#include <errno.h>

#include "backend/backend.h"
#include "base/base.h"
#include "mem/mem.h"
#include "heap.h"
#include "ds/ds.h"

static void report_invalid(const void *ptr)
{
    xmm_report_bad_free("free(): invalid pointer (not allocated by xmm, or already freed)", ptr);
}

/* What XMM knows of `ptr`. */
struct block {
    struct xmm_region *region;
    struct xmm_span *span;  /* chunk blocks */
};

enum block_kind { BLOCK_INVALID, BLOCK_SMALL, BLOCK_LARGE, BLOCK_DIRECT, BLOCK_FREED_LARGE };

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
            if (XMM_UNLIKELY((size_t)index * xmm_class_size(size_class) != offset ||
                             index >= xmm_size_classes[size_class].objects))
                return BLOCK_INVALID;
            return BLOCK_SMALL;
        }
        if (ptr == span->start)
            return kind == XMM_SPAN_LARGE ? BLOCK_LARGE : BLOCK_FREED_LARGE;
        return BLOCK_INVALID;
    }
    if (region->kind == XMM_REGION_DIRECT && ptr == region->base)
        return BLOCK_DIRECT;
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
    xmm_page_heap_note_large_free(span->node, xmm_span_bytes(span));
    __atomic_fetch_add(&xmm_heap_counters.large_frees, 1, __ATOMIC_RELAXED);
    if (!xmm_large_cache_keep(span))
        xmm_page_heap_free_claimed(span);
}

void xmm_heap_free_slow(void *ptr)
{
    if (!ptr)
        return;
    struct block block;
    switch (find_block(ptr, &block)) {
    case BLOCK_SMALL:
        xmm_front_free(ptr, block.span);
        return;
    case BLOCK_LARGE:
        free_large(ptr, block.span);
        return;
    case BLOCK_DIRECT:
        __atomic_fetch_add(&xmm_heap_counters.direct_frees, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&xmm_heap_counters.direct_bytes, block.region->size, __ATOMIC_RELAXED);
        xmm_arena_unmap_direct(block.region);
        return;
    case BLOCK_FREED_LARGE:
        xmm_report_double_free(ptr);
        return;
    case BLOCK_INVALID: {
        const struct xmm_foreign_owner *owner = xmm_foreign_owner_of(ptr);
        if (owner)
            owner->free(ptr);
        else
            report_invalid(ptr);
        return;
    }
    }
}

size_t xmm_heap_usable_size(const void *ptr)
{
    if (!ptr)
        return 0;
    struct block block;
    switch (find_block(ptr, &block)) {
    case BLOCK_SMALL:
        return xmm_class_size(block.span->size_class);
    case BLOCK_LARGE:
        return xmm_span_bytes(block.span);
    case BLOCK_DIRECT:
        return block.region->size;
    default: {
        const struct xmm_foreign_owner *owner = xmm_foreign_owner_of(ptr);
        if (owner)
            return owner->usable_size((void *)ptr);
        xmm_report_bad_free("malloc_usable_size(): invalid pointer", ptr);
        return 0;
    }
    }
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
