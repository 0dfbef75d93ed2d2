/*
 * arena.h - address space from the kernel, per NUMA node, and the map from
 * any address to the allocator metadata that describes it.
 *
 * The address space is cut into 64 MiB granules. A flat map, one pointer
 * per granule of the 47-bit user address space (16 MiB of virtual memory,
 * touched only where XMM has memory), gives the region that owns an
 * address: an arena chunk (64 MiB of pages for spans, bound to one node)
 * or a direct mapping (one very large block). A chunk's page map gives the
 * span of each of its pages. So free(p) finds its span with three loads,
 * and a pointer XMM never handed out finds no region or no span.
 */
#ifndef XMM_ARENA_H
#define XMM_ARENA_H

#include "common.h"
#include "span.h"

enum xmm_region_kind {
    XMM_REGION_CHUNK = 1,   /* pages for spans */
    XMM_REGION_DIRECT = 2,  /* one block, mapped for itself */
};

struct xmm_region {
    uint8_t kind;
    uint8_t node;
    uint8_t huge;               /* THP requested for this region */
    char *base;                 /* first byte (granule-aligned) */
    size_t size;                /* bytes mapped */
    size_t requested;           /* direct region: bytes asked for */
    struct xmm_region *next_free; /* recycled direct descriptors */
};

struct xmm_chunk {
    struct xmm_region region;
    struct xmm_span *page_span[XMM_PAGES_PER_CHUNK];
};

#define XMM_GRANULE_COUNT ((size_t)1 << (XMM_ADDRESS_BITS - XMM_CHUNK_SHIFT))
extern struct xmm_region **xmm_region_map;

/* Creates the region map. Returns 0, or -1 if the kernel refused. */
int xmm_arena_init(void);

/* The region holding `address`, or NULL. One load; no lock. */
XMM_INLINE struct xmm_region *xmm_region_of(const void *address)
{
    uintptr_t bits = (uintptr_t)address;
    if (XMM_UNLIKELY(bits >> XMM_ADDRESS_BITS))
        return NULL;
    return __atomic_load_n(&xmm_region_map[bits >> XMM_CHUNK_SHIFT], __ATOMIC_ACQUIRE);
}

/* The span of the page holding `address` in `chunk` (NULL if none). */
XMM_INLINE struct xmm_span *xmm_chunk_span_of(struct xmm_chunk *chunk, const void *address)
{
    size_t page = ((uintptr_t)address - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    return __atomic_load_n(&chunk->page_span[page], __ATOMIC_ACQUIRE);
}

/* Points every page of [first_page, first_page + pages) of the chunk that
 * holds `span` to `span` (or, with `ends_only`, the first and last page). */
void xmm_chunk_set_pages(struct xmm_span *span, bool ends_only);

/* Maps a new 64 MiB chunk for `node` with the node's placement policy and
 * registers it. NULL if the kernel refuses. Caller holds the node's page
 * heap lock. */
struct xmm_chunk *xmm_arena_new_chunk(int node);

/* Maps a block of `size` bytes for itself (large requests), aligned to
 * `alignment`, with the node's policy; registers it. NULL on failure. */
void *xmm_arena_map_direct(size_t size, size_t alignment, int node);

/* Unmaps a direct block and forgets it. */
void xmm_arena_unmap_direct(struct xmm_region *region);

/* In a fork child: repairs the direct-region lock if its holder is gone. */
void xmm_arena_after_fork_child(void);

/* Address space and chunk counts, for statistics. */
size_t xmm_arena_reserved_bytes(void);

#endif
