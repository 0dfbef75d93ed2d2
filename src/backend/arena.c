/*
 * arena.c - chunks and direct mappings, and the address map (see arena.h).
 */
#include <errno.h>
#include <string.h>

#include "arena.h"
#include "base/base.h"
#include "metadata.h"
#include "numa.h"

struct xmm_address_map xmm_address_map;

static size_t reserved_bytes;
static size_t chunk_bytes;
/* Guards the spare descriptors of direct regions and of chunks. A leaf
 * lock: nothing is taken under it. */
static struct xmm_lock descriptor_lock = XMM_LOCK_INITIALIZER;
static struct xmm_region *spare_direct_regions;
static struct xmm_region *spare_chunks; /* chunk descriptors, by their region */

int xmm_arena_init(void)
{
    return 0;
}

/* ---- the address map --------------------------------------------------------- */

/* The leaf for `granule`, made if it does not exist yet; NULL if metadata
 * cannot be had. Two threads may make one at once: one CAS wins, the other
 * leaf stays unused (metadata is never freed). */
static struct xmm_map_leaf *leaf_for(uintptr_t granule)
{
    uintptr_t *root_entry = &xmm_address_map.root[granule >> XMM_MAP_LEAF_BITS];
    uintptr_t offset = __atomic_load_n(root_entry, __ATOMIC_ACQUIRE);
    if (offset == 0) {
        struct xmm_map_leaf *fresh = xmm_metadata_alloc(sizeof(*fresh), 4096);
        if (!fresh)
            return NULL;
        uintptr_t fresh_offset = (uintptr_t)fresh - (uintptr_t)&xmm_address_map.empty;
        if (__atomic_compare_exchange_n(root_entry, &offset, fresh_offset, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            offset = fresh_offset;
    }
    return (struct xmm_map_leaf *)((char *)&xmm_address_map.empty + offset);
}

static size_t leaf_index(uintptr_t granule)
{
    return granule & (((uintptr_t)1 << XMM_MAP_LEAF_BITS) - 1);
}

uint8_t xmm_chunk_slots[XMM_CHUNK_SLOTS];

/* Sets or clears the slot byte of a chunk starting at `base`: set once the
 * chunk is mapped, cleared before it is unmapped, so a free that sees the
 * byte set finds the chunk's table mapped (but for the race in design.md,
 * "Known limits"). */
static void mark_chunk_slot(const char *base, bool used)
{
    uintptr_t slot = (uintptr_t)base >> XMM_CHUNK_MAX_SHIFT;
    xmm_assert(((uintptr_t)base & (XMM_CHUNK_MAX_SIZE - 1)) == 0 && slot < XMM_CHUNK_SLOTS);
    __atomic_store_n(&xmm_chunk_slots[slot], (uint8_t)used, __ATOMIC_RELEASE);
}

/* Points every granule of `region` to it (NULL: forgets it). false if a
 * leaf could not be made (nothing is then registered). */
static bool map_granules(struct xmm_region *region, struct xmm_region *value)
{
    uintptr_t first = (uintptr_t)region->base >> XMM_GRANULE_SHIFT;
    uintptr_t last = ((uintptr_t)region->base + region->size - 1) >> XMM_GRANULE_SHIFT;
    for (uintptr_t granule = first; granule <= last; granule++)
        if (!leaf_for(granule))
            return false;
    for (uintptr_t granule = first; granule <= last; granule++) {
        struct xmm_map_entry *entry = &leaf_for(granule)->entries[leaf_index(granule)];
        __atomic_store_n(&entry->region, value, __ATOMIC_RELEASE);
    }
    if (region->kind == XMM_REGION_CHUNK)
        mark_chunk_slot(region->base, value != NULL);
    return true;
}

static bool register_region(struct xmm_region *region)
{
    if (!map_granules(region, region))
        return false;
    __atomic_fetch_add(&reserved_bytes, xmm_region_mapped_bytes(region), __ATOMIC_RELAXED);
    return true;
}

static void unregister_region(struct xmm_region *region)
{
    map_granules(region, NULL); /* the leaves exist: it cannot fail */
    __atomic_fetch_sub(&reserved_bytes, xmm_region_mapped_bytes(region), __ATOMIC_RELAXED);
}

void xmm_chunk_set_pages(struct xmm_span *span, bool ends_only)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
    size_t first = ((uintptr_t)span->start - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    size_t last = first + span->pages - 1;
    xmm_assert(last < chunk->pages);
    if (ends_only) {
        __atomic_store_n(&chunk->page_span[first], span, __ATOMIC_RELEASE);
        __atomic_store_n(&chunk->page_span[last], span, __ATOMIC_RELEASE);
        return;
    }
    /* Four stores an iteration: the one-store loop ran at one or two cycles
     * a store depending on whether its 14 bytes of code crossed a 32-byte
     * fetch window, which any change elsewhere in the library could flip
     * (large blocks of 1 MiB: 137 or 176 us per 1000 malloc+free). */
    size_t page = first;
    for (; page + 4 <= last + 1; page += 4) {
        __atomic_store_n(&chunk->page_span[page], span, __ATOMIC_RELEASE);
        __atomic_store_n(&chunk->page_span[page + 1], span, __ATOMIC_RELEASE);
        __atomic_store_n(&chunk->page_span[page + 2], span, __ATOMIC_RELEASE);
        __atomic_store_n(&chunk->page_span[page + 3], span, __ATOMIC_RELEASE);
    }
    for (; page <= last; page++)
        __atomic_store_n(&chunk->page_span[page], span, __ATOMIC_RELEASE);
}

/* ---- chunks ------------------------------------------------------------------ */

void xmm_chunk_set_page_info(const struct xmm_span *span, unsigned size_class,
                             uint32_t first_page)
{
    xmm_chunk_set_page_range(span, size_class, first_page, span->pages);
}

void xmm_chunk_set_page_range(const struct xmm_span *span, unsigned size_class,
                              uint32_t first_page, uint32_t end_page)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
    xmm_page_info *table = xmm_chunk_table_of((uintptr_t)span->start);
    size_t first = ((uintptr_t)span->start - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    xmm_assert((char *)table == chunk->region.base + XMM_CHUNK_TABLE_OFFSET);
    xmm_assert(first >= XMM_CHUNK_FIRST_PAGE && first + span->pages <= chunk->pages);
    xmm_assert(size_class == 0 || span->pages <= XMM_SMALL_SPAN_MAX_PAGES);
    xmm_assert(end_page <= span->pages);
    for (uint32_t page = first_page; page < end_page; page++)
        __atomic_store_n(&table[first + page],
                         size_class ? XMM_PAGE_INFO(size_class, span->node, page) : 0,
                         __ATOMIC_RELEASE);
}

/* Transparent huge pages: chunks are granule (2 MiB) aligned. `always`
 * asks for huge pages from the start; `never` forbids them; `auto` asks
 * from the start for chunks mapped past XMM_THP_EAGER_BYTES, and starts
 * the first ones on the kernel's default, asking once such a chunk has
 * been cut to its end with 3/4 of it resident (dense: page_heap.c,
 * mostly_resident below). Under `auto` a chunk
 * leaves huge pages for good at a large block or a purge that would split
 * one (leave_huge_pages). */
/* The range of `region` that huge page advice is for: a chunk's mapping
 * from its table on (one area with the spans: advice from the spans' 2
 * MiB boundary would split it there, and the kernel interleaves huge
 * pages by their place in their area, so the grid of XMM_NUMA=interleave
 * would move by one), a direct block's whole mapping. */
static void huge_page_range(const struct xmm_region *region, char **start, size_t *size)
{
    size_t skip = region->kind == XMM_REGION_CHUNK ? XMM_CHUNK_TABLE_OFFSET : 0;
    *start = region->base + skip;
    *size = region->size - skip;
}

static int advise_region(const struct xmm_region *region, bool huge)
{
    char *start;
    size_t size;
    huge_page_range(region, &start, &size);
    return xmm_os_advise_huge(start, size, huge);
}

/* XMM_THP=auto: a chunk mapped once the process (every node together)
 * holds this much in chunks asks for huge pages from its first touch. A
 * program that never grows past it (`ls`, `sh`, a test) stays on small
 * pages; one that does gets its later chunks, most of its heap, on huge
 * pages before it has faulted them in 4 KiB at a time (bench/analysis.md,
 * "huge pages from the first touch, by default"). On one node the first
 * three chunks (4, 8 and 16 MiB) stay on the rule for dense chunks. */
#define XMM_THP_EAGER_BYTES ((size_t)16 << 20)

static bool wants_huge_pages_at_map(void)
{
    return xmm_config.thp == XMM_THP_ALWAYS ||
           (xmm_config.thp == XMM_THP_AUTO &&
            __atomic_load_n(&chunk_bytes, __ATOMIC_RELAXED) >= XMM_THP_EAGER_BYTES);
}

static void advise_huge_pages(struct xmm_region *region)
{
    if (wants_huge_pages_at_map())
        region->huge = advise_region(region, true) == 0;
    else if (xmm_config.thp == XMM_THP_NEVER)
        advise_region(region, false);
}

/* Spare descriptors: a list per kind, linked through the region's
 * next_free. A signal handler that interrupted this thread inside
 * descriptor_lock (xmm_lock_acquire false) takes no spare and keeps none:
 * it makes a new descriptor, or leaks one (a few bytes of metadata). */
static struct xmm_region *take_spare(struct xmm_region **spares)
{
    struct xmm_region *region = NULL;
    if (xmm_lock_acquire(&descriptor_lock)) {
        region = *spares;
        if (region)
            *spares = region->next_free;
        xmm_lock_release(&descriptor_lock);
    }
    return region;
}

static void give_back_spare(struct xmm_region **spares, struct xmm_region *region)
{
    if (!xmm_lock_acquire(&descriptor_lock))
        return;
    region->next_free = *spares;
    *spares = region;
    xmm_lock_release(&descriptor_lock);
}

static struct xmm_chunk *take_chunk_descriptor(void)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)take_spare(&spare_chunks);
    return chunk ? chunk : xmm_metadata_alloc(sizeof(*chunk), 64);
}

static void give_back_chunk_descriptor(struct xmm_chunk *chunk)
{
    give_back_spare(&spare_chunks, &chunk->region);
}

/* Unmaps a chunk's range but its hole, where another mapping may be. */
static void unmap_chunk_range(char *base, size_t size)
{
    xmm_os_unmap(base + XMM_CHUNK_HOLE_SIZE, size - XMM_CHUNK_HOLE_SIZE);
}

struct xmm_chunk *xmm_arena_new_chunk(int node, size_t pages)
{
    xmm_assert(pages % XMM_PAGES_PER_GRANULE == 0 && pages <= XMM_CHUNK_MAX_PAGES);
    size_t size = pages << XMM_PAGE_SHIFT;
    /* Aligned to the largest chunk (the page table is found by a mask),
     * less the hole at its start, which is not mapped (arena.h). */
    char *mapped = xmm_os_map_offset(size - XMM_CHUNK_HOLE_SIZE, XMM_CHUNK_MAX_SIZE,
                                     XMM_CHUNK_HOLE_SIZE);
    if (!mapped)
        return NULL;
    char *base = mapped - XMM_CHUNK_HOLE_SIZE;
    /* The guard before the page table; a chunk without it is not made,
     * and the first refusal is said (allocation fails with ENOMEM). */
    if (XMM_CHUNK_GUARD_SIZE % xmm_os_page_size() != 0 ||
        xmm_os_protect_none(mapped, XMM_CHUNK_GUARD_SIZE) != 0) {
        static int reported;
        if (!__atomic_exchange_n(&reported, 1, __ATOMIC_RELAXED))
            xmm_report("xmm: the kernel refused the guard pages of a new chunk (mprotect and "
                       "mmap with PROT_NONE); memory from new chunks fails\n");
        unmap_chunk_range(base, size);
        return NULL;
    }
    struct xmm_chunk *chunk = take_chunk_descriptor();
    if (!chunk) {
        unmap_chunk_range(base, size);
        return NULL;
    }
    chunk->region.kind = XMM_REGION_CHUNK;
    chunk->region.node = (uint8_t)node;
    chunk->region.huge = 0;
    chunk->region.split = 0;
    chunk->region.base = base;
    chunk->region.size = size;
    chunk->pages = (uint32_t)pages;
    chunk->next_in_heap = NULL;
    /* The table and the spans: mbind refuses a range with a hole. */
    xmm_numa_bind(base + XMM_CHUNK_TABLE_OFFSET, size - XMM_CHUNK_TABLE_OFFSET, node);
    advise_huge_pages(&chunk->region);
    if (!register_region(&chunk->region)) {
        unmap_chunk_range(base, size);
        give_back_chunk_descriptor(chunk);
        return NULL;
    }
    __atomic_fetch_add(&chunk_bytes, size, __ATOMIC_RELAXED);
    return chunk;
}

/* A chunk leaves huge pages for good: `split` is set before `huge` is
 * read, and xmm_arena_chunk_dense sets `huge` before it reads `split`
 * (sequentially consistent), so whichever of the two comes second sees
 * the other's store and the chunk ends advised MADV_NOHUGEPAGE. */
static void leave_huge_pages(struct xmm_chunk *chunk)
{
    __atomic_store_n(&chunk->region.split, 1, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&chunk->region.huge, 0, __ATOMIC_SEQ_CST))
        advise_region(&chunk->region, false);
}

/* Whether at least 3/4 of the chunk's span pages are resident. khugepaged
 * (its max_ptes_none is 511 by default) collapses a 2 MiB range advised
 * huge pages that holds a single small page, filling the rest with zeroes,
 * and it is woken as soon as a process first asks for huge pages: a chunk
 * advised while most of it was cut but not touched (clean spans cut object
 * by object, refills that start small) grew by up to 2 MiB per huge page
 * within milliseconds. `python3 -c pass` peaked at 10.8 MiB instead of 9.6
 * in two runs of three of a full `make bench` (bench/analysis.md, "Costs:
 * start-up footprint"). */
static bool mostly_resident(const struct xmm_chunk *chunk)
{
    char *spans = chunk->region.base + ((size_t)XMM_CHUNK_FIRST_PAGE << XMM_PAGE_SHIFT);
    size_t bytes = chunk->region.base + chunk->region.size - spans;
    return xmm_os_resident_bytes(spans, bytes) * 4 >= bytes * 3;
}

/* An interleaved chunk is never advised late: khugepaged puts a range it
 * collapses wholly on the node that held most of its small pages (the
 * lowest on a tie, which page-by-page interleaving always makes), so each
 * collapse moved 2 MiB onto node 0. In the 2-node VM of tests/numa, with
 * THP=madvise and a busy khugepaged, the small blocks of `interleave` lay
 * 1713 pages on node 0 and 850 on node 1. Chunks advised at the mapping
 * fault in huge pages interleaved 2 MiB at a time, and stay eligible. */
void xmm_arena_chunk_dense(struct xmm_chunk *chunk)
{
    if (xmm_config.thp != XMM_THP_AUTO || __atomic_load_n(&chunk->region.split, __ATOMIC_SEQ_CST) ||
        xmm_numa_interleave_width(chunk->region.node) > 1)
        return;
    if (!mostly_resident(chunk))
        return;
    if (advise_region(&chunk->region, true) != 0)
        return;
    __atomic_store_n(&chunk->region.huge, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&chunk->region.split, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&chunk->region.huge, 0, __ATOMIC_SEQ_CST))
        advise_region(&chunk->region, false);
}

void xmm_arena_place_block(struct xmm_chunk *chunk, size_t block_bytes)
{
    if (block_bytes >= XMM_ARENA_SPARSE_BLOCK_BYTES && xmm_config.thp == XMM_THP_AUTO &&
        __atomic_load_n(&chunk->region.huge, __ATOMIC_SEQ_CST))
        leave_huge_pages(chunk);
}

int xmm_arena_purge(struct xmm_chunk *chunk, char *start, size_t length)
{
    uintptr_t huge_mask = XMM_GRANULE_SIZE - 1; /* a granule is one huge page */
    /* XMM_THP=always asked for huge pages whatever they cost: kept. */
    if (xmm_config.thp == XMM_THP_AUTO && __atomic_load_n(&chunk->region.huge, __ATOMIC_SEQ_CST) &&
        (((uintptr_t)start | length) & huge_mask) != 0)
        leave_huge_pages(chunk);
    return xmm_os_purge(start, length, xmm_config.purge_lazy);
}

void xmm_arena_release_chunk(struct xmm_chunk *chunk)
{
    __atomic_fetch_sub(&chunk_bytes, chunk->region.size, __ATOMIC_RELAXED);
    unregister_region(&chunk->region);
    /* A descriptor reused for a chunk at the same address must not find
     * the old spans in its page map (the page heap coalesces by it). */
    memset(chunk->page_span, 0, (size_t)chunk->pages * sizeof(chunk->page_span[0]));
    unmap_chunk_range(chunk->region.base, chunk->region.size);
    give_back_chunk_descriptor(chunk);
}

/* ---- direct mappings --------------------------------------------------------- */

static struct xmm_region *take_direct_descriptor(void)
{
    struct xmm_region *region = take_spare(&spare_direct_regions);
    return region ? region : xmm_metadata_alloc(sizeof(*region), 64);
}

static void give_back_direct_descriptor(struct xmm_region *region)
{
    give_back_spare(&spare_direct_regions, region);
}

void *xmm_arena_map_direct(size_t size, size_t alignment, int node, void *sample)
{
    size_t page = xmm_os_page_size();
    if (size > SIZE_MAX - page)
        return NULL;
    size_t mapped = xmm_align_up(size, page);
    struct xmm_region *region = take_direct_descriptor();
    if (!region)
        return NULL;
    /* Granule alignment gives the mapping whole map entries of its own. */
    size_t granule_alignment = alignment > XMM_GRANULE_SIZE ? alignment : XMM_GRANULE_SIZE;
    char *base = xmm_os_map_accounted(mapped, granule_alignment);
    if (!base) {
        give_back_direct_descriptor(region);
        return NULL;
    }
    /* Claimed (odd) until it is registered: a late free of the block this
     * descriptor held before fails its claim meanwhile (arena.h). */
    uint64_t claim = __atomic_load_n(&region->claim, __ATOMIC_RELAXED) | 1;
    __atomic_store_n(&region->claim, claim, __ATOMIC_RELAXED);
    region->kind = XMM_REGION_DIRECT;
    region->node = (uint8_t)node;
    region->base = base;
    region->size = mapped;
    region->huge = 0;
    region->grown = 0;
    region->grown_at_ns = 0;
    region->grow_cost_ns = 0;
    region->sample = sample;
    xmm_numa_bind(base, mapped, node);
    if (!register_region(region)) {
        xmm_os_unmap(base, mapped);
        give_back_direct_descriptor(region);
        return NULL;
    }
    __atomic_store_n(&region->claim, claim + 1, __ATOMIC_RELEASE);
    return base;
}

/* Whether every granule of [base, base + size) has a leaf in the map (made
 * now if needed): so that registering the range cannot fail. */
static bool leaves_exist(const char *base, size_t size)
{
    /* Only user-space addresses have map entries (the root has none past). */
    if (size > ((uintptr_t)1 << XMM_ADDRESS_BITS) - (uintptr_t)base)
        return false;
    uintptr_t first = (uintptr_t)base >> XMM_GRANULE_SHIFT;
    uintptr_t last = ((uintptr_t)base + size - 1) >> XMM_GRANULE_SHIFT;
    for (uintptr_t granule = first; granule <= last; granule++)
        if (!leaf_for(granule))
            return false;
    return true;
}

bool xmm_arena_resize_direct(struct xmm_region *region, size_t size)
{
    size_t page = xmm_os_page_size();
    if (size > PTRDIFF_MAX || size > ((size_t)1 << XMM_ADDRESS_BITS))
        return false; /* no mapping can be that large: ENOMEM for the caller */
    size_t mapped = xmm_align_up(size, page);
    if (mapped == region->size)
        return true;
    char *old_base = region->base;
    size_t old_size = region->size;
    if (!leaves_exist(old_base, mapped > old_size ? mapped : old_size))
        return false;
    /* Out of the map before the pages move: once mremap has freed the old
     * range (or its tail), another thread may map there and register it,
     * and a late unregister would wipe that registration. */
    unregister_region(region);
    char *base = xmm_os_remap(old_base, old_size, mapped, NULL);
    if (!base) {
        /* Moved onto a granule-aligned range of its own: page tables move,
         * bytes do not. */
        char *to = xmm_os_map(mapped, XMM_GRANULE_SIZE);
        if (to && (!leaves_exist(to, mapped) ||
                   !(base = xmm_os_remap(old_base, old_size, mapped, to))))
            xmm_os_unmap(to, mapped);
    }
    if (base) {
        region->base = base;
        region->size = mapped;
    }
    register_region(region); /* its leaves exist: it cannot fail */
    return base != NULL;
}

/* The bases of the last direct blocks unmapped, for the report of a
 * second free (xmm_arena_unmapped_recently). */
#define RECENT_DIRECT_UNMAPS 64
static uintptr_t recent_direct_unmaps[RECENT_DIRECT_UNMAPS];
static unsigned recent_direct_unmap_next;

uint64_t xmm_arena_direct_generation(const struct xmm_region *region, const void *block)
{
    /* The generation first, then the base: a descriptor reused for a new
     * block between the two loads shows a generation the claim no longer
     * matches. */
    uint64_t claim = __atomic_load_n(&region->claim, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&region->base, __ATOMIC_ACQUIRE) != block)
        return XMM_DIRECT_NOT_THIS;
    return claim;
}

bool xmm_arena_claim_direct(struct xmm_region *region, uint64_t generation)
{
    return (generation & 1) == 0 &&
           __atomic_compare_exchange_n(&region->claim, &generation, generation | 1, false,
                                       __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

void xmm_arena_unmap_direct(struct xmm_region *region)
{
    xmm_assert(__atomic_load_n(&region->claim, __ATOMIC_RELAXED) & 1);
    unsigned slot = __atomic_fetch_add(&recent_direct_unmap_next, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&recent_direct_unmaps[slot % RECENT_DIRECT_UNMAPS], (uintptr_t)region->base,
                     __ATOMIC_RELAXED);
    unregister_region(region);
    xmm_os_unmap(region->base, region->size);
    region->kind = 0;
    give_back_direct_descriptor(region);
}

bool xmm_arena_unmapped_recently(const void *ptr)
{
    for (unsigned slot = 0; slot < RECENT_DIRECT_UNMAPS; slot++)
        if (__atomic_load_n(&recent_direct_unmaps[slot], __ATOMIC_RELAXED) == (uintptr_t)ptr)
            return ptr != NULL;
    return false;
}

size_t xmm_arena_reserved_bytes(void)
{
    return __atomic_load_n(&reserved_bytes, __ATOMIC_RELAXED);
}

size_t xmm_arena_chunk_bytes(void)
{
    return __atomic_load_n(&chunk_bytes, __ATOMIC_RELAXED);
}

/* The lock guards only the lists of spare descriptors: if its holder is
 * gone, the lists are dropped (the descriptors leak in the child). */
void xmm_arena_after_fork_child(void)
{
    if (xmm_lock_holder(&descriptor_lock) != XMM_LOCK_HELD_BY_OTHER)
        return;
    spare_direct_regions = NULL;
    spare_chunks = NULL;
    xmm_lock_reset(&descriptor_lock);
}
