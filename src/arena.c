/*
 * arena.c - chunks and direct mappings, and the region map (see arena.h).
 */
#include <errno.h>

#include "arena.h"
#include "config.h"
#include "metadata.h"
#include "numa.h"

struct xmm_region **xmm_region_map;

static size_t reserved_bytes;
static struct xmm_lock direct_lock = XMM_LOCK_INITIALIZER;
static struct xmm_region *free_direct_regions;

int xmm_arena_init(void)
{
    xmm_region_map = xmm_os_map(XMM_GRANULE_COUNT * sizeof(*xmm_region_map), 4096);
    return xmm_region_map ? 0 : -1;
}

static void register_region(struct xmm_region *region)
{
    uintptr_t first = (uintptr_t)region->base >> XMM_CHUNK_SHIFT;
    uintptr_t last = ((uintptr_t)region->base + region->size - 1) >> XMM_CHUNK_SHIFT;
    for (uintptr_t granule = first; granule <= last; granule++)
        __atomic_store_n(&xmm_region_map[granule], region, __ATOMIC_RELEASE);
    __atomic_fetch_add(&reserved_bytes, region->size, __ATOMIC_RELAXED);
}

static void unregister_region(struct xmm_region *region)
{
    uintptr_t first = (uintptr_t)region->base >> XMM_CHUNK_SHIFT;
    uintptr_t last = ((uintptr_t)region->base + region->size - 1) >> XMM_CHUNK_SHIFT;
    for (uintptr_t granule = first; granule <= last; granule++)
        __atomic_store_n(&xmm_region_map[granule], NULL, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&reserved_bytes, region->size, __ATOMIC_RELAXED);
}

void xmm_chunk_set_pages(struct xmm_span *span, bool ends_only)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
    size_t first = ((uintptr_t)span->start - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    size_t last = first + span->pages - 1;
    if (ends_only) {
        __atomic_store_n(&chunk->page_span[first], span, __ATOMIC_RELEASE);
        __atomic_store_n(&chunk->page_span[last], span, __ATOMIC_RELEASE);
        return;
    }
    for (size_t page = first; page <= last; page++)
        __atomic_store_n(&chunk->page_span[page], span, __ATOMIC_RELEASE);
}

/* Transparent huge pages: chunks are 2 MiB-aligned (they are 64 MiB-aligned).
 * `always` asks for huge pages from the start; `never` forbids them; `auto`
 * starts chunks on the kernel's default and asks for huge pages once a chunk
 * has been cut to its end (dense), see page_heap.c. */
static void advise_huge_pages(struct xmm_region *region)
{
    if (xmm_config.thp == XMM_THP_ALWAYS)
        region->huge = xmm_os_advise_huge(region->base, region->size, true) == 0;
    else if (xmm_config.thp == XMM_THP_NEVER)
        xmm_os_advise_huge(region->base, region->size, false);
}

struct xmm_chunk *xmm_arena_new_chunk(int node)
{
    char *base = xmm_os_map(XMM_CHUNK_SIZE, XMM_CHUNK_SIZE);
    if (!base)
        return NULL;
    struct xmm_chunk *chunk = xmm_metadata_alloc(sizeof(*chunk), 64);
    if (!chunk) {
        xmm_os_unmap(base, XMM_CHUNK_SIZE);
        return NULL;
    }
    chunk->region.kind = XMM_REGION_CHUNK;
    chunk->region.node = (uint8_t)node;
    chunk->region.base = base;
    chunk->region.size = XMM_CHUNK_SIZE;
    xmm_numa_bind(base, XMM_CHUNK_SIZE, node);
    advise_huge_pages(&chunk->region);
    register_region(&chunk->region);
    return chunk;
}

static struct xmm_region *take_direct_descriptor(void)
{
    xmm_lock_acquire(&direct_lock);
    struct xmm_region *region = free_direct_regions;
    if (region)
        free_direct_regions = region->next_free;
    xmm_lock_release(&direct_lock);
    if (!region)
        region = xmm_metadata_alloc(sizeof(*region), 64);
    return region;
}

static void give_back_direct_descriptor(struct xmm_region *region)
{
    xmm_lock_acquire(&direct_lock);
    region->next_free = free_direct_regions;
    free_direct_regions = region;
    xmm_lock_release(&direct_lock);
}

void *xmm_arena_map_direct(size_t size, size_t alignment, int node)
{
    size_t page = xmm_os_page_size();
    if (size > SIZE_MAX - page)
        return NULL;
    size_t mapped = xmm_align_up(size, page);
    struct xmm_region *region = take_direct_descriptor();
    if (!region)
        return NULL;
    /* Granule alignment gives the mapping whole map entries of its own. */
    size_t granule_alignment = alignment > XMM_CHUNK_SIZE ? alignment : XMM_CHUNK_SIZE;
    char *base = xmm_os_map_accounted(mapped, granule_alignment);
    if (!base) {
        give_back_direct_descriptor(region);
        return NULL;
    }
    region->kind = XMM_REGION_DIRECT;
    region->node = (uint8_t)node;
    region->base = base;
    region->size = mapped;
    region->requested = size;
    region->huge = 0;
    xmm_numa_bind(base, mapped, node);
    register_region(region);
    return base;
}

void xmm_arena_unmap_direct(struct xmm_region *region)
{
    unregister_region(region);
    xmm_os_unmap(region->base, region->size);
    region->kind = 0;
    give_back_direct_descriptor(region);
}

size_t xmm_arena_reserved_bytes(void)
{
    return __atomic_load_n(&reserved_bytes, __ATOMIC_RELAXED);
}

/* The lock guards only the list of spare direct-region descriptors: if its
 * holder is gone, the list is dropped (the descriptors leak in the child). */
void xmm_arena_after_fork_child(void)
{
    if (xmm_lock_holder(&direct_lock) != XMM_LOCK_HELD_BY_OTHER)
        return;
    free_direct_regions = NULL;
    xmm_lock_reset(&direct_lock);
}
