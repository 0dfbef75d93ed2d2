/*
 * arena.h - address space from the kernel, per NUMA node, and the map from
 * any address to the allocator metadata that describes it.
 *
 * XMM maps two kinds of regions, each starting on a 2 MiB granule and
 * owning the granules it covers: arena chunks (4 to 64 MiB of pages for
 * spans, bound to one node) and direct mappings (one very large block).
 * The address map is a two-level radix tree over the granules of the
 * 47-bit user address space: a root of 8192 entries in the library's
 * zero-initialised data, each naming a leaf of 8192 entries (64 KiB,
 * covering 16 GiB) made on demand. A root entry holds its leaf as an
 * offset from a static empty leaf, so that a root entry never written
 * (before XMM is initialised, or where XMM never mapped) reads the empty
 * leaf: region_of is two dependent loads and no test, valid from the first
 * instruction of the process.
 *
 * A chunk starts on a 64 MiB boundary (XMM_CHUNK_MAX_SIZE), and its first
 * granule holds a guard and the page table: one xmm_page_info word per
 * page of the chunk (spans are cut from the second granule on). So the page info of
 * any chunk address is one load from an address computed from the pointer
 * alone (a mask and a shift), as mimalloc finds its page from its
 * segment's alignment. free() first asks a map with one byte per 64
 * MiB slot whether a chunk starts at the pointer's boundary, but the
 * answer only decides a branch: the CPU predicts it and loads the page
 * info in parallel, so the free path's dependent chain is the pointer,
 * the page word and the CPU slab. The
 * chunk's span map (which span holds each page) is in its descriptor.
 *
 * Chunks that are wholly free again go back to the kernel (trim, long
 * decay, or a failed mapping): their address space, not only their pages.
 * Their descriptors are kept for the next chunk, never unmapped, and a
 * page map index is masked to the largest chunk, so that a lock-free
 * reader holding a stale region pointer reads metadata, never beyond it.
 */
#ifndef XMM_ARENA_H
#define XMM_ARENA_H

#include "base/base.h"
#include "ds/ds.h"

enum xmm_region_kind {
    XMM_REGION_CHUNK = 1,   /* pages for spans */
    XMM_REGION_DIRECT = 2,  /* one block, mapped for itself */
};

struct xmm_region {
    uint8_t kind;
    uint8_t node;
    uint8_t huge;               /* THP requested for this region */
    uint8_t split;              /* a purge split its huge pages: small pages
                                   for good (xmm_arena_purge) */
    uint8_t grown;              /* a direct block realloc moved here to grow
                                   (global/alloc.c: its free raises the size
                                   from which realloc does so) */
    char *base;                 /* first byte (granule-aligned) */
    size_t size;                /* bytes from base: mapped, but for a chunk's
                                   hole (xmm_region_mapped_bytes) */
    struct xmm_region *next_free; /* recycled descriptors */
    void *sample;               /* a direct block: the heap profiler's record
                                   (global/profile.h) if it was sampled */
    uint64_t claim;             /* a direct block's generation: even while it
                                   is live, odd from its free's claim until
                                   the descriptor holds a new block */
    uint64_t grown_at_ns;       /* a grown block: when realloc's move into
                                   it was done (xmm_os_precise_now_ns; 0:
                                   not known) */
    uint64_t grow_cost_ns;      /* and how long that move took */
};

/* What free() needs to know of an allocator page, in one word: the size
 * class of the live small-object span that holds it (0: none: a free,
 * large or released page, or no chunk at all; byte 0), that span's node
 * (byte 1), the page's owner (byte 2, below) and the page's distance from
 * the span's first page (byte 3: small-object spans have at most
 * XMM_SMALL_SPAN_MAX_PAGES pages). A free reads this word from the chunk's
 * page table and never touches the span descriptor; the owner is in it so
 * that the free of an object below a cache line reads no second line. */
typedef uint32_t xmm_page_info;
#define XMM_PAGE_OWNER_FRESH 0xfe
#define XMM_PAGE_OWNER_SHARED 0xff
#define XMM_PAGE_INFO_OWNER_SHIFT 16
#define XMM_PAGE_INFO_OWNER_BITS ((uint32_t)0xff << XMM_PAGE_INFO_OWNER_SHIFT)
#define XMM_PAGE_INFO(size_class, node, page_in_span)                          \
    ((uint32_t)(size_class) | (uint32_t)(node) << 8 |                          \
     (uint32_t)XMM_PAGE_OWNER_FRESH << XMM_PAGE_INFO_OWNER_SHIFT | (uint32_t)(page_in_span) << 24)
#define XMM_PAGE_INFO_CLASS(info) ((info) & 0xffu)
#define XMM_PAGE_INFO_NODE(info) (((info) >> 8) & 0xffu)
#define XMM_PAGE_INFO_OWNER(info) (((info) >> XMM_PAGE_INFO_OWNER_SHIFT) & 0xffu)
#define XMM_PAGE_INFO_PAGE(info) ((info) >> 24)
_Static_assert(XMM_CLASS_COUNT <= 256 && XMM_MAX_NODES <= 256, "page info: class and node bytes");
_Static_assert(XMM_SMALL_SPAN_MAX_PAGES <= 256, "page info: a page's distance in a byte");

struct xmm_chunk {
    struct xmm_region region;
    uint32_t pages;             /* allocator pages in the chunk */
    struct xmm_chunk *next_in_heap; /* the node's chunks (page heap lock) */
    struct xmm_span *page_span[XMM_CHUNK_MAX_PAGES];
};

/* A chunk's first 2 MiB granule holds no span: a hole (not mapped), a
 * guard (PROT_NONE), then the page table at its end, sized for the
 * largest chunk (64 KiB: a 4-byte word per page). Chunks are often
 * mapped right below one another, and without the guard a write a few
 * bytes past the last block of the chunk below would land in the table
 * and forge a page word (a large block's interior then passes free() as
 * a small object). Spans
 * start on the next granule, so they sit on the huge-page grid as they did
 * before the table moved here (the kernel interleaves huge pages by their
 * place in it). The hole is given back at once: a write into it faults as
 * well, and it costs no address space under `ulimit -v` (the guard used
 * to fill it: 2 MiB of each chunk, which put a trivial program past 10
 * MiB). Another mapping may land in it; the guard, whole pages for
 * kernels with pages up to 64 KiB, still stands between that one and the
 * table. */
#define XMM_CHUNK_TABLE_OFFSET (XMM_GRANULE_SIZE - XMM_CHUNK_MAX_PAGES * sizeof(xmm_page_info))
#define XMM_CHUNK_GUARD_SIZE ((size_t)64 << 10)
#define XMM_CHUNK_HOLE_SIZE (XMM_CHUNK_TABLE_OFFSET - XMM_CHUNK_GUARD_SIZE)
#define XMM_CHUNK_FIRST_PAGE XMM_PAGES_PER_GRANULE

/* The bytes of `region` mapped from the kernel: all of a direct block's,
 * a chunk's but its hole. */
XMM_INLINE size_t xmm_region_mapped_bytes(const struct xmm_region *region)
{
    return region->size - (region->kind == XMM_REGION_CHUNK ? XMM_CHUNK_HOLE_SIZE : 0);
}
/* The most pages one span of a chunk can have. */
#define XMM_CHUNK_SPAN_MAX_PAGES (XMM_CHUNK_MAX_PAGES - XMM_CHUNK_FIRST_PAGE)

/* The page table of the chunk that would hold `bits`: past the guard at
 * its aligned start. */
XMM_INLINE xmm_page_info *xmm_chunk_table_of(uintptr_t bits)
{
    return (xmm_page_info *)((bits & ~(uintptr_t)(XMM_CHUNK_MAX_SIZE - 1)) + XMM_CHUNK_TABLE_OFFSET);
}

/* The page word of the page holding `address`, which must be in a chunk. */
XMM_INLINE xmm_page_info *xmm_page_word_of(const void *address)
{
    uintptr_t bits = (uintptr_t)address;
    return &xmm_chunk_table_of(bits)[(bits >> XMM_PAGE_SHIFT) & (XMM_CHUNK_MAX_PAGES - 1)];
}

/* The owner byte of a page's word, for spans of the classes smaller than
 * a cache line: FRESH when the span is made, then the low byte of the
 * index of the one CPU cache (mem/cpu_cache.c) that has taken objects of
 * this page from the central layer, or SHARED once a second one has. A
 * free on a CPU other than the owner sends the object to that CPU's
 * remote bin instead of the top of its cache (passive false sharing,
 * design.md). A page two caches refill from is SHARED rather than handed
 * back and forth: with the last refiller as owner, each one's own frees
 * would count as remote half the time. A hint: caches 256 apart share a
 * value (and those at 254 and 255 modulo 256 never own a page), and a
 * claim may lose to a rewrite of the word (a trim's restore); a wrong
 * hint only changes the bin an object goes to. Free takes it from the
 * page word it has read anyway; the slow paths load it here. */
XMM_INLINE uint8_t xmm_page_owner_load(const void *address)
{
    xmm_page_info info = __atomic_load_n(xmm_page_word_of(address), __ATOMIC_RELAXED);
    /* A word without a class (a trim cleared the page's: objects before the
     * cut may still be live) has no owner to keep away. */
    return XMM_PAGE_INFO_CLASS(info) ? (uint8_t)XMM_PAGE_INFO_OWNER(info) : XMM_PAGE_OWNER_SHARED;
}

/* A chunk is found by its region (the map, spare lists): region first. */
_Static_assert(offsetof(struct xmm_chunk, region) == 0, "a chunk starts with its region");

#define XMM_MAP_LEAF_BITS 13
#define XMM_MAP_ROOT_BITS (XMM_ADDRESS_BITS - XMM_GRANULE_SHIFT - XMM_MAP_LEAF_BITS)

/* A granule's entry: its region (NULL if none). */
struct xmm_map_entry {
    struct xmm_region *region;
};

/* Which 64 MiB slots of the user address space hold a chunk: byte i of
 * the map is 1 while a chunk starts at i << XMM_CHUNK_MAX_SHIFT (one chunk
 * at most per slot: chunks are that aligned and no larger). free() asks
 * it before it reads a page word at the masked pointer: one byte compare
 * in memory, no dependent load, no bit arithmetic (a bitmap took three
 * instructions more on the hit path). 2 MiB of zero-initialised data,
 * virtual: only the pages holding a set byte are written, and a byte of
 * a page never written reads the kernel's shared zero page. */
#define XMM_CHUNK_SLOTS ((size_t)1 << (XMM_ADDRESS_BITS - XMM_CHUNK_MAX_SHIFT))
extern XMM_HIDDEN uint8_t xmm_chunk_slots[XMM_CHUNK_SLOTS];

XMM_INLINE bool xmm_chunk_slot_used(uintptr_t bits)
{
    uintptr_t slot = bits >> XMM_CHUNK_MAX_SHIFT;
    if (XMM_UNLIKELY(slot >= XMM_CHUNK_SLOTS))
        return false;
#if defined(__x86_64__)
    /* The byte compared in memory: gcc does not fold an atomic load into
     * the compare (a load, a test and the branch: one instruction more on
     * every free). A plain x86 load has acquire order, and the page word
     * load that follows is behind this branch, so it is not issued first
     * (the compiler cannot hoist a load of an address it cannot prove
     * mapped). Volatile, so that each call reads the byte again, as an
     * atomic load would; ThreadSanitizer does not see asm, and an atomic
     * load would be race-free to it anyway. */
    bool unused;
    __asm__ __volatile__("cmpb $0, %[byte]" : "=@ccz"(unused) : [byte] "m"(xmm_chunk_slots[slot]));
    return !unused;
#else
    return __atomic_load_n(&xmm_chunk_slots[slot], __ATOMIC_ACQUIRE) != 0;
#endif
}

struct xmm_map_leaf {
    struct xmm_map_entry entries[(size_t)1 << XMM_MAP_LEAF_BITS];
};

/* The map's static part: root entry i names the leaf of granules
 * [i << LEAF_BITS, (i + 1) << LEAF_BITS) as a byte offset from `empty`
 * (0: the empty leaf itself). One object, so that the lookup addresses
 * the root and the leaf from one base register. */
struct xmm_address_map {
    uintptr_t root[(size_t)1 << XMM_MAP_ROOT_BITS];
    struct xmm_map_leaf empty;
};
extern XMM_HIDDEN struct xmm_address_map xmm_address_map;

/* Creates what the map needs beyond its static part (nothing today).
 * Returns 0. */
int xmm_arena_init(void);

/* The map entry of the granule of `address`. The root index is masked: an
 * address above the user space reads the entry of a user-space granule,
 * so callers reject such addresses first (xmm_region_of). */
XMM_INLINE struct xmm_map_entry *xmm_map_entry_of(uintptr_t bits)
{
    uintptr_t granule = bits >> XMM_GRANULE_SHIFT;
    uintptr_t root_index = (granule >> XMM_MAP_LEAF_BITS) & (((uintptr_t)1 << XMM_MAP_ROOT_BITS) - 1);
    uintptr_t leaf_offset = __atomic_load_n(&xmm_address_map.root[root_index], __ATOMIC_ACQUIRE);
    struct xmm_map_leaf *leaf = (struct xmm_map_leaf *)((char *)&xmm_address_map.empty + leaf_offset);
    return &leaf->entries[granule & (((uintptr_t)1 << XMM_MAP_LEAF_BITS) - 1)];
}

/* The region holding `address`, or NULL. Two loads; no lock; valid at any
 * time, before initialisation included. */
XMM_INLINE struct xmm_region *xmm_region_of(const void *address)
{
    uintptr_t bits = (uintptr_t)address;
    if (XMM_UNLIKELY(bits >> XMM_ADDRESS_BITS))
        return NULL;
    return __atomic_load_n(&xmm_map_entry_of(bits)->region, __ATOMIC_ACQUIRE);
}

/* The page info of the page holding `address` (0 when it is in no live
 * small-object span, or not XMM's); no lock; valid at any time. The
 * address must be in a 64 MiB slot where a chunk starts (the slot map
 * above), else 0: a pointer XMM never handed out is never used to read
 * memory. An address past the end of a smaller chunk, in its slot, reads
 * a table entry never written (0). The page word is loaded from the
 * masked pointer, so on a predicted branch it does not wait for the
 * slot map. A chunk given back to the kernel is unmapped after its byte
 * is cleared: an invalid free racing with that can read an unmapped table
 * (documented in design.md, "Known limits"). */
XMM_INLINE xmm_page_info xmm_page_info_of(const void *address)
{
    uintptr_t bits = (uintptr_t)address;
    if (XMM_UNLIKELY(!xmm_chunk_slot_used(bits)))
        return 0;
    return __atomic_load_n(xmm_page_word_of(address), __ATOMIC_ACQUIRE);
}

/* Sets the page info of the pages of `span` (a span of a chunk) from
 * `first_page` on: of a small-object span of `size_class` on its node,
 * with a FRESH owner, or none (0: size_class 0) when the span stops
 * being one, or for its tail when a trim cut objects back (central.c; a
 * free() of an address there takes the slow path, which checks it against
 * the span itself). */
void xmm_chunk_set_page_info(const struct xmm_span *span, unsigned size_class,
                             uint32_t first_page);
/* The same for the pages from `first_page` up to `end_page` (excluded):
 * a trim clears, and a refill restores, the page of each object it purged
 * whole (central.c). */
void xmm_chunk_set_page_range(const struct xmm_span *span, unsigned size_class,
                              uint32_t first_page, uint32_t end_page);

/* The span of the page holding `address` in `chunk` (NULL if none). The
 * index is masked: with a stale chunk pointer it still reads the chunk's
 * own map. */
XMM_INLINE struct xmm_span *xmm_chunk_span_of(struct xmm_chunk *chunk, const void *address)
{
    size_t page = (((uintptr_t)address - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT) &
                  (XMM_CHUNK_MAX_PAGES - 1);
    return __atomic_load_n(&chunk->page_span[page], __ATOMIC_ACQUIRE);
}

/* Points every page of [first_page, first_page + pages) of the chunk that
 * holds `span` to `span` (or, with `ends_only`, the first and last page). */
void xmm_chunk_set_pages(struct xmm_span *span, bool ends_only);

/* Maps a new chunk of `pages` allocator pages (a whole number of granules,
 * at most XMM_CHUNK_MAX_PAGES) for `node` with the node's placement policy
 * and registers it. NULL if the kernel refuses. Caller holds the node's
 * page heap lock. */
struct xmm_chunk *xmm_arena_new_chunk(int node, size_t pages);

/* Unregisters and unmaps a chunk none of whose pages is in use, and keeps
 * its descriptor for a later chunk. Its page map is cleared. Caller holds
 * the page heap lock of the chunk's node, and no span of it is listed. */
void xmm_arena_release_chunk(struct xmm_chunk *chunk);

/* Gives the pages of [start, start + length) of `chunk` back to the kernel
 * (XMM_PURGE's advice); 0 or -1. Under XMM_THP=auto, a purge that is not
 * made of whole huge pages of a chunk marked `huge` splits them, and
 * khugepaged would collapse the purged ranges back (max_ptes_none lets it
 * fill the holes with zeroes): so the chunk is advised MADV_NOHUGEPAGE
 * once and its flag cleared. It stays on small pages, and purged memory
 * stays purged. XMM_THP=always keeps its huge pages. Any thread, no lock
 * needed. */
int xmm_arena_purge(struct xmm_chunk *chunk, char *start, size_t length);

/* Blocks of this size and more, a size class's as well as large ones, take
 * their chunk off huge pages (xmm_arena_place_block): buffers, which a
 * program may write only the start of. rsync's 256 KiB buffers, a few KiB
 * of each written, took 198 MB under XMM with their chunks on huge pages,
 * against 11 MB under glibc and 13 MB with this rule (docs/design.md,
 * "Transparent huge pages"). */
#define XMM_ARENA_SPARSE_BLOCK_BYTES ((size_t)64 << 10)

/* A block of `block_bytes` (a large block, or an object of a new span) is
 * about to be placed in `chunk`. From XMM_ARENA_SPARSE_BLOCK_BYTES on,
 * under XMM_THP=auto, a
 * chunk marked `huge` leaves huge pages for good, as after a purge that
 * split them: such a block is touched by one owner, mostly once and often
 * sparsely (a buffer's two ends), and on a range that holds no page yet
 * (purged, or never touched) each first touch would fault in and zero a
 * whole 2 MiB page. On the benchmark VM, rounds of blocks of 1 MiB on
 * such ranges cost 100-430 us a block, and 0.5-0.75 us once on small
 * pages (bench/analysis.md, "batch1000 at 1 MiB"). The chunk's huge pages
 * already mapped stay. A chunk the kernel backs with huge pages without
 * being asked (transparent_hugepage/enabled `always`) is left to that
 * policy. Any thread, no lock needed. */
void xmm_arena_place_block(struct xmm_chunk *chunk, size_t block_bytes);

/* Under XMM_THP=auto, a chunk cut to its end asks for huge pages if at
 * least 3/4 of its span pages are resident (xmm_os_resident_bytes), unless a purge has
 * split them already; otherwise it stays on small pages. The page
 * heap does not call it for a chunk cut mostly into large blocks
 * (page_heap.c, cut_mostly_big). Nor does it advise an interleaved
 * chunk (XMM_NUMA=interleave): khugepaged would collapse its ranges onto
 * one node. Caller holds the page heap lock of the chunk's node. */
void xmm_arena_chunk_dense(struct xmm_chunk *chunk);

/* Maps a block of `size` bytes for itself (large requests), aligned to
 * `alignment`, with the node's policy; registers it with `sample` (the heap
 * profiler's record, or NULL) set before a free can find it. NULL on
 * failure. */
void *xmm_arena_map_direct(size_t size, size_t alignment, int node, void *sample);

/* Resizes a direct mapping to hold `size` bytes: in place when the pages
 * after it are free, else moved (mremap: page tables, not bytes) to a new
 * granule-aligned range; the region's base and size follow. false, the
 * block unchanged, when the kernel refuses. The caller owns the block. */
bool xmm_arena_resize_direct(struct xmm_region *region, size_t size);

/* The free of a direct block, in two steps, so that of two frees of one
 * block racing, one unmaps it and the other is reported (without the
 * claim both would unmap, the second perhaps a range mapped again in
 * between, and give the descriptor back twice). A free first reads the
 * block's generation: XMM_DIRECT_NOT_THIS if `region` does not hold
 * `block`; odd if another free has claimed it (a double free). Then it
 * claims it: one CAS of the generation from even to odd, which fails if
 * another free claimed it first, or if the descriptor has since been
 * reused (the generation moves on: even again, one more, only once the
 * new block is registered, as xmm_arena_map_direct returns it). Direct
 * blocks are 32 MiB and more: a CAS is nothing beside the munmap. */
#define XMM_DIRECT_NOT_THIS UINT64_MAX
uint64_t xmm_arena_direct_generation(const struct xmm_region *region, const void *block);
bool xmm_arena_claim_direct(struct xmm_region *region, uint64_t generation);
/* Unmaps a claimed direct block and forgets it (the map forgets the region
 * first: once the range is unmapped another thread may map there). */
void xmm_arena_unmap_direct(struct xmm_region *region);
/* Whether `ptr` was the base of one of the last 64 direct blocks unmapped
 * (a small ring, written with plain atomic stores). For the report only:
 * the range may have been mapped again since, by the program or another
 * library; ask it of a pointer that is in no XMM region. Lock-free. */
bool xmm_arena_unmapped_recently(const void *ptr);

/* In a fork child: repairs the direct-region lock if its holder is gone. */
void xmm_arena_after_fork_child(void);

/* Address space and chunk counts, for statistics. */
size_t xmm_arena_reserved_bytes(void);

/* Bytes of the arena's chunks now (every node), each chunk's whole range
 * (its unmapped hole included, unlike xmm_arena_reserved_bytes): the
 * heap's size as the background thread's start rule sees it (upkeep.h).
 * One load. */
size_t xmm_arena_chunk_bytes(void);

#endif
