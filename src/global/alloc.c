/*
 * alloc.c - the path of an allocation: size -> class -> front end, or the
 * page heap for large requests, or a mapping of its own for very large.
 */
#include <errno.h>
#include <string.h>

#include "backend/backend.h"
#include "mem/mem.h"
#include "alloc.h"
#include "free.h"
#include "init.h"
#include "stats.h"
#include "profile.h"
#include "ds/ds.h"


static void *fail_no_memory(void)
{
    __atomic_fetch_add(&xmm_heap_counters.failed_allocations, 1, __ATOMIC_RELAXED);
    errno = ENOMEM;
    return NULL;
}

static int current_node(void)
{
    return xmm_node_of_cpu(xmm_os_current_cpu());
}

/* A span for a large block: a cached one of the same page count, else one
 * from the page heap, after a miss has given the node's cache back to it
 * (see large_cache.h), and before the heap grows, the central layer's
 * empty spans (xmm_central_alloc_pages). */
static struct xmm_span *large_span(int node, size_t pages, size_t alignment)
{
    if (alignment <= XMM_PAGE_SIZE) {
        struct xmm_span *cached = xmm_large_cache_take(node, pages);
        if (cached)
            return cached;
    }
    /* A miss: the sizes cached are not the sizes asked for now. Give them
     * back before taking pages, so that they coalesce and serve this
     * request instead of staying resident beside new pages. */
    if (xmm_large_cache_maybe_holds(node))
        xmm_large_cache_flush(node);
    return xmm_central_alloc_pages(node, pages, alignment);
}

/* Whole pages for a block of `size` bytes: a mapping of its own when very
 * large (half a chunk or more, with the alignment slack), unmapped on
 * free; else a span from the node's page heap. `sample`: the heap
 * profiler's record of the block (NULL: not sampled), kept in its span or
 * region descriptor for its free. `zeroed` asks for zero-filled memory,
 * which fresh and purged pages already are. `sampled_class`: not 0, a
 * small request of that class (the one its tick counted) served as pages
 * because it was sampled, which takes a cached
 * span of its page count or pages from the page heap, without flushing
 * the large cache on a miss (a sample is no sign that the sizes cached are
 * out of use). `own_mapping`: a mapping of its own whatever the size
 * (realloc's growing buffers, xmm_heap_realloc). */
static void *alloc_pages(size_t size, size_t alignment, int node, bool zeroed,
                         struct xmm_profile_sample *sample, unsigned sampled_class,
                         bool own_mapping)
{
    if (size == 0) /* an aligned request for 0 bytes: still one real page */
        size = 1;
    if (size > PTRDIFF_MAX || alignment > PTRDIFF_MAX - size)
        return fail_no_memory();
    if (own_mapping || size + alignment >= XMM_DIRECT_MAP_THRESHOLD) {
        int saved_errno = errno;
        xmm_upkeep_before_direct_map(node, size);
        void *block = xmm_arena_map_direct(size, alignment, node, sample);
        /* The kernel refused the address space (ulimit -v): give back what
         * XMM holds unused, whole chunks included, and try once more. Not
         * for realloc's own mapping, which it only tries: a span will do.
         * A success leaves errno as the caller had it. */
        if (!block && !own_mapping && xmm_upkeep_release_address_space())
            block = xmm_arena_map_direct(size, alignment, node, sample);
        if (!block)
            return fail_no_memory();
        errno = saved_errno;
        xmm_heap_count_direct(1, xmm_align_up(size, xmm_os_page_size()));
        return block;
    }
    size_t pages = xmm_align_up(size, XMM_PAGE_SIZE) >> XMM_PAGE_SHIFT;
    struct xmm_span *span = NULL;
    if (sampled_class) {
        span = xmm_large_cache_take(node, pages);
        if (!span)
            span = xmm_page_heap_alloc(node, pages, alignment);
    } else {
        span = large_span(node, pages, alignment);
    }
    if (!span)
        return fail_no_memory();
    /* A big block's first touches must not fault in huge pages
     * (arena.h); a small size served as pages (sampled, or aligned to
     * more than a page) is judged by its size, as its class's spans are. */
    xmm_arena_place_block((struct xmm_chunk *)xmm_region_of(span->start), size);
    span->sample = sample;
    /* A small request sampled is a live object of its class, not a large
     * allocation (the tick counted the request in its class): its class
     * in the span, which no large span's free reads otherwise, tells
     * free_large so. A sampled calloc from 128 KiB is a large one. */
    span->size_class = (uint8_t)sampled_class;
    if (sampled_class)
        __atomic_fetch_add(&xmm_heap_counters.sampled_small_live[sampled_class], 1,
                           __ATOMIC_RELAXED);
    xmm_page_heap_note_large(node, xmm_span_bytes(span), !sampled_class);
    xmm_upkeep_node(node); /* decay keeps pace with large-block traffic too */
    xmm_upkeep_consider_background();
    /* Pages used before may hold free small objects' words (free_object.h)
     * at any object start, this block's first word included: cleared, as
     * a small block's is at its hand-out. Left there, a realloc that
     * shrank the block into a small one copied it over, and free() of that
     * block took the program's data for a free object (a double free,
     * reported: tests/override/malloc_realloc.c). */
    if (zeroed && span->dirty != XMM_PAGES_CLEAN)
        memset(span->start, 0, size);
    else if (span->dirty != XMM_PAGES_CLEAN)
        *(xmm_free_word *)span->start = 0;
    return span->start;
}

/* Large requests: pages; with the heap profiler on, counted down with the
 * small ones (upkeep.h), and sampled when they cross the mark. */
static void *alloc_large_as(size_t size, size_t alignment, int node, bool zeroed,
                            bool own_mapping)
{
    struct xmm_profile_sample *sample = NULL;
    if (XMM_UNLIKELY(xmm_profile_on()) && xmm_upkeep_count_large(size))
        sample = xmm_profile_record(size);
    void *block = alloc_pages(size, alignment, node, zeroed, sample, 0, own_mapping);
    if (XMM_UNLIKELY(sample != NULL) && !block)
        xmm_profile_forget(sample);
    return block;
}

static void *alloc_large(size_t size, size_t alignment, int node, bool zeroed)
{
    return alloc_large_as(size, alignment, node, zeroed, false);
}

/* A small request the tick chose for the heap profile (counted in
 * `size_class`): a block of whole
 * pages of its own (as TCMalloc serves its sampled objects), whose free
 * takes the large path and hands the record back; the free path of
 * ordinary small blocks never looks for samples. Its usable size is its
 * pages' (malloc_usable_size says more than the size class would give).
 * NULL when the sample cannot be taken (profile.h) or no pages are left:
 * the caller serves the request as usual. Alignments up to a page hold:
 * spans start on allocator pages. */
static void *alloc_sampled(size_t size, unsigned size_class, int node, bool zeroed)
{
    struct xmm_profile_sample *sample = xmm_profile_record(size);
    if (!sample)
        return NULL;
    int saved_errno = errno;
    void *block = alloc_pages(size, XMM_PAGE_SIZE, node, zeroed, sample, size_class, false);
    if (!block) {
        xmm_profile_forget(sample);
        errno = saved_errno;
    }
    return block;
}

/* A cached object without its free tag (alloc.h): reported; the caller
 * drops it. */
static void report_untagged(const void *object)
{
    xmm_report_bad_free("heap corruption: a free block was overwritten (a write after free, an "
                        "overflow of the block before it, or a second free after such a write), "
                        "not handed out:",
                        object);
}

void *xmm_heap_alloc_untagged(void *object, size_t size)
{
    report_untagged(object);
    return xmm_heap_alloc(size);
}

/* A small object of `size_class` from a cache or the central layer, given
 * to the program: its free tag checked (as on the inline path, alloc.h),
 * then its first word and its second, the pending mark (free_object.h),
 * cleared. An object without its tag is reported and another one taken
 * from the calling CPU's cache. */
static void *hand_out(void *object, unsigned size_class)
{
    if (XMM_UNLIKELY(object == NULL))
        return fail_no_memory();
    if (XMM_UNLIKELY(!xmm_free_object_may_be_free(object))) {
        report_untagged(object);
        return hand_out(xmm_front_alloc(size_class), size_class);
    }
    xmm_free_object_clear_block(object, size_class, xmm_config.free_deferred);
    return object;
}

static void *alloc_small(size_t size)
{
    unsigned size_class = xmm_size_to_class(size);
    return hand_out(xmm_front_alloc(size_class), size_class);
}

void *xmm_heap_alloc_slow(size_t size)
{
    if (XMM_UNLIKELY(!xmm_ensure_init()))
        return fail_no_memory();
    if (size <= XMM_MAX_SMALL_SIZE)
        return alloc_small(size);
    return alloc_large(size, XMM_PAGE_SIZE, current_node(), false);
}

void *xmm_heap_alloc(size_t size)
{
    return xmm_heap_alloc_inline(size);
}

void *xmm_heap_alloc_ticked(size_t size)
{
    /* Under XMM_FREE_CHECK=deferred most requests come here with no tick
     * due (the countdown's bias, upkeep.h): a pop, and the hand-out's
     * clear of both words, without the calls below. */
    if (xmm_upkeep_biased_not_due()) {
        unsigned size_class = xmm_size_to_class(size);
        void *object = xmm_front_try_alloc(size_class);
        if (XMM_LIKELY(object != NULL)) {
            if (XMM_UNLIKELY(!xmm_free_object_may_be_free(object)))
                return xmm_heap_alloc_untagged(object, size);
            xmm_free_object_clear_block(object, size_class, true);
            return object;
        }
        return alloc_small(size);
    }
    if (XMM_UNLIKELY(!xmm_ensure_init()))
        return fail_no_memory();
    if (XMM_UNLIKELY(xmm_upkeep_tick(size))) {
        void *block = alloc_sampled(size, xmm_size_to_class(size), current_node(), false);
        if (block)
            return block;
    }
    return alloc_small(size);
}

/* Zeroed requests of this size and more take whole pages, as a large block
 * does, so that pages already zero are not written: fresh and purged pages
 * stay untouched until the program writes them (glibc gets the same from
 * the top of its heap and from its own mappings, jemalloc and mimalloc from
 * their zeroed extents and pages). A class's object cannot say whether it
 * is fresh: a CPU's cache mixes fresh and reused ones. Python's start-up
 * callocs tables of 128 and 256 KiB that it mostly never writes; the
 * memset made all 384 KiB of them resident (bench/analysis.md, "Costs:
 * start-up footprint"). Not lower: freed pages go to the node's large
 * cache, shared by its CPUs, where a class's object stays in its CPU's
 * cache; two threads that calloc and free blocks in a loop then pass them
 * between CPUs, and took 1.64x the time at 64 KiB, 1.19x at 128 KiB and
 * 1.07x at 256 KiB (memset's share shrinks with the size). */
#define ZEROED_AS_PAGES_MIN ((size_t)128 << 10)

void *xmm_heap_alloc_zeroed(size_t size)
{
    if (XMM_UNLIKELY(!xmm_ensure_init()))
        return fail_no_memory();
    if (size < ZEROED_AS_PAGES_MIN) {
        if (XMM_UNLIKELY(xmm_upkeep_count_request(size))) {
            void *block = alloc_sampled(size, xmm_size_to_class(size), current_node(), true);
            if (block)
                return block;
        }
        void *object = alloc_small(size);
        return object ? memset(object, 0, size) : NULL;
    }
    return alloc_large(size, XMM_PAGE_SIZE, current_node(), true);
}

/* One object of a class from a given node, bypassing the caches (which
 * hold only the calling CPU's node). */
static void *alloc_small_on_node(unsigned size_class, int node)
{
    void *object;
    if (!xmm_central_refill(node, size_class, &object, 1, XMM_CENTRAL_NO_CARVER))
        return fail_no_memory();
    return hand_out(object, size_class);
}

/* Alignment up to the allocator page: the class of the size rounded up to
 * the alignment is itself a multiple of the alignment (classes between 2^k
 * and 2^(k+1) are multiples of 2^(k-3), see size_class.h), and spans start
 * on page boundaries, so every object of that class is aligned. */
void *xmm_heap_alloc_aligned(size_t alignment, size_t size, int node)
{
    if (XMM_UNLIKELY(!xmm_ensure_init()))
        return fail_no_memory();
    if (size > PTRDIFF_MAX)
        return fail_no_memory();
    if (alignment < 8)
        alignment = 8;
    size_t rounded = xmm_align_up(size ? size : 1, alignment);
    if (alignment <= XMM_PAGE_SIZE && rounded <= XMM_MAX_SMALL_SIZE) {
        unsigned size_class = xmm_size_to_class(rounded);
        if (XMM_UNLIKELY(xmm_upkeep_count_request(rounded))) {
            void *block =
                alloc_sampled(size, size_class, node < 0 ? current_node() : node, false);
            if (block)
                return block;
        }
        if (node < 0)
            return hand_out(xmm_front_alloc(size_class), size_class);
        return alloc_small_on_node(size_class, node);
    }
    return alloc_large(size, alignment, node < 0 ? current_node() : node, false);
}

void *xmm_heap_alloc_on_node(size_t size, int node)
{
    if (XMM_UNLIKELY(!xmm_ensure_init()))
        return fail_no_memory();
    if (size <= XMM_MAX_SMALL_SIZE) {
        if (XMM_UNLIKELY(xmm_upkeep_count_request(size))) {
            void *block = alloc_sampled(size, xmm_size_to_class(size), node, false);
            if (block)
                return block;
        }
        return alloc_small_on_node(xmm_size_to_class(size), node);
    }
    return alloc_large(size, XMM_PAGE_SIZE, node, false);
}

/* A large block that realloc must move to grow, from REALLOC_MAPPING_MIN
 * on, moves into a mapping of its own, as blocks of half a chunk and more
 * always have one: its later growth is by mremap, so a buffer grown a
 * little at a time to N bytes copies at most this once more, not at every
 * chunk it outgrows (a buffer grown 4 KiB at a time to 40 MiB was copied
 * at 10, 28 and 32 MiB: 70 MB copied into freshly faulted pages, and
 * peaked at twice its size resident). Below that size the copies are
 * small, and a block kept in the page heap reuses resident pages where a
 * mapping of its own is faulted in anew and unmapped at free. */
#define REALLOC_MAPPING_MIN (XMM_DIRECT_MAP_THRESHOLD / 8)

/* The size from which a growing block gets a mapping of its own now.
 * The free of such a mapping below the direct-map threshold raises it to
 * that mapping's size: the idea of glibc's dynamic mmap threshold, which
 * the free of an mmapped chunk raises to that chunk's size
 * (malloc/malloc.c). A program that grows buffers to some size, uses them
 * and frees them keeps getting mappings of that size, each given back to
 * the kernel by its free: sqlite3's buffers, doubled to 8 and 16 MiB a few
 * times a second, kept the page heap's freed pages resident beside them
 * when they stayed there; with mappings its peak RSS is 1.10x glibc's
 * instead of 1.22x (bench/analysis.md, "Peak RSS: frag, sqlite").
 *
 * A buffer freed soon after its move, within twice the time the move
 * took (the purge before the mapping, the mapping, faulting in and
 * copying), raises it to twice its size (at most the threshold)
 * instead, so that buffers of that size stay in the page heap from then
 * on: grown and dropped in a loop, each would otherwise fault in a fresh
 * mapping, which then costs as much as the buffer's whole life (bench/
 * micro realloc_growth/16777216, buffers doubled to 16 MiB and freed:
 * 80x the time with glibc's rule alone). Never lowered; one for the
 * process. */
static size_t realloc_mapping_from = REALLOC_MAPPING_MIN;

/* Whether `region`'s buffer was freed within twice the time its move took;
 * true when that cannot be told (a clock that could not be read), which
 * keeps such buffers in the page heap. The precise clock: a move of a few
 * MiB into fresh pages takes 1-2 ms on bare metal, less than the coarse
 * clock's tick. */
static bool freed_soon_after_move(const struct xmm_region *region)
{
    uint64_t now_ns = xmm_os_precise_now_ns();
    if (now_ns == 0 || region->grown_at_ns == 0 || now_ns < region->grown_at_ns)
        return true;
    return now_ns - region->grown_at_ns < 2 * region->grow_cost_ns;
}

void xmm_heap_note_own_mapping_freed(const struct xmm_region *region)
{
    size_t bytes = region->size;
    if (bytes + XMM_PAGE_SIZE >= XMM_DIRECT_MAP_THRESHOLD)
        return; /* a block that always has one */
    size_t raised = bytes;
    if (freed_soon_after_move(region))
        raised = bytes <= XMM_DIRECT_MAP_THRESHOLD / 2 ? 2 * bytes : XMM_DIRECT_MAP_THRESHOLD;
    size_t from = __atomic_load_n(&realloc_mapping_from, __ATOMIC_RELAXED);
    while (from < raised && !__atomic_compare_exchange_n(&realloc_mapping_from, &from, raised, true,
                                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* The new block for a large one of `usable` bytes growing to `target`:
 * one with a mapping of its own, or NULL (smaller, not growing, or no
 * address space: the caller takes a block as usual, errno as it was).
 * *started_ns: when the move began, before the purge that precedes a
 * mapping (xmm_upkeep_before_direct_map), which the move costs too. */
static void *grown_into_own_mapping(size_t usable, size_t target, uint64_t *started_ns)
{
    if (usable <= XMM_MAX_SMALL_SIZE || target <= usable ||
        target + XMM_PAGE_SIZE < __atomic_load_n(&realloc_mapping_from, __ATOMIC_RELAXED) ||
        target + XMM_PAGE_SIZE >= XMM_DIRECT_MAP_THRESHOLD)
        return NULL;
    *started_ns = xmm_os_precise_now_ns();
    int saved_errno = errno;
    void *block = alloc_large_as(target, XMM_PAGE_SIZE, current_node(), false, true);
    errno = saved_errno;
    if (block) /* not yet seen by any other thread */
        xmm_region_of(block)->grown = 1;
    return block;
}

/* Records the move into `block`, a grown mapping, begun at `started_ns`
 * and done now (its copy included), for the free's rule above; both
 * times 0 when a clock read failed. Before realloc returns the block. */
static void note_move_into_mapping(void *block, uint64_t started_ns)
{
    struct xmm_region *region = xmm_region_of(block);
    uint64_t done_ns = xmm_os_precise_now_ns();
    bool timed = started_ns != 0 && done_ns >= started_ns;
    region->grown_at_ns = timed ? done_ns : 0;
    region->grow_cost_ns = timed ? done_ns - started_ns : 0;
}

void *xmm_heap_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return xmm_heap_alloc(size);
    if (size == 0) {
        xmm_heap_free(ptr);
        return NULL;
    }
    const struct xmm_foreign_owner *owner = xmm_foreign_owner_of(ptr);
    if (XMM_UNLIKELY(owner != NULL))
        return owner->resize(ptr, size);
    size_t usable = xmm_heap_usable_size_for_realloc(ptr);
    if (usable == 0) {
        /* Reported as invalid or freed (XMM_INVALID_FREE=warn: the
         * process goes on); nothing is lost, and NULL says why. */
        errno = EINVAL;
        return NULL;
    }
    /* Stay in place when the block still fits and is not more than twice
     * what is now needed. Its alignment is always enough: every block of 16
     * usable bytes or more is 16-aligned (size_class.h). */
    if (size <= usable && (size >= usable / 2 || usable <= 16))
        return ptr;
    /* A block that grows gets an eighth more than asked for: a buffer grown
     * a little at a time (4 KiB steps to 40 MiB) then moves a logarithmic
     * number of times, not once per call. */
    size_t target = size;
    if (size > usable && usable > XMM_MAX_SMALL_SIZE && size < SIZE_MAX - size / 8)
        target = size + size / 8;
    /* Large blocks grow into the free pages after them and shrink by
     * giving back their tail: no copy, no new page faults. */
    if (usable > XMM_MAX_SMALL_SIZE && xmm_heap_resize_in_place(ptr, target))
        return ptr;
    /* Blocks with a mapping of their own stay one while they keep
     * REALLOC_MAPPING_MIN or more, and when they shrink to a large size:
     * mremap grows, moves or cuts the pages, never copies the bytes
     * (glibc does the same). */
    bool stays_mapped = target + XMM_PAGE_SIZE >= REALLOC_MAPPING_MIN ||
                        (target < usable && target > XMM_MAX_SMALL_SIZE);
    if (usable > XMM_MAX_SMALL_SIZE && stays_mapped && xmm_heap_has_own_mapping(ptr)) {
        void *remapped = xmm_heap_resize_direct(ptr, target);
        /* Refused (ulimit -v: a move needs the old and the new range at
         * once): without the headroom, then after giving back what XMM
         * holds unused. */
        if (!remapped && target > size)
            remapped = xmm_heap_resize_direct(ptr, size);
        if (!remapped && xmm_upkeep_release_address_space())
            remapped = xmm_heap_resize_direct(ptr, size);
        if (remapped)
            return remapped;
    }
    int saved_errno = errno;
    uint64_t move_started_ns = 0;
    void *moved = grown_into_own_mapping(usable, target, &move_started_ns);
    bool into_mapping = moved != NULL;
    if (!moved)
        moved = xmm_heap_alloc(target);
    if (!moved)
        moved = target > size ? xmm_heap_alloc(size) : NULL;
    if (!moved && size <= usable) {
        errno = saved_errno;
        return ptr; /* a shrink that found no smaller block: it still fits */
    }
    if (!moved)
        return NULL; /* the old block stays valid */
    memcpy(moved, ptr, size < usable ? size : usable);
    if (into_mapping)
        note_move_into_mapping(moved, move_started_ns);
    xmm_heap_free(ptr);
    return moved;
}

bool xmm_array_bytes(size_t count, size_t size, size_t *bytes)
{
    if (XMM_UNLIKELY(__builtin_mul_overflow(count, size, bytes))) {
        errno = ENOMEM;
        return false;
    }
    return true;
}

void *xmm_heap_calloc(size_t count, size_t size)
{
    size_t bytes;
    return xmm_array_bytes(count, size, &bytes) ? xmm_heap_alloc_zeroed(bytes) : NULL;
}

void *xmm_heap_alloc_array(size_t count, size_t size)
{
    size_t bytes;
    return xmm_array_bytes(count, size, &bytes) ? xmm_heap_alloc(bytes) : NULL;
}

void *xmm_heap_realloc_array(void *ptr, size_t count, size_t size)
{
    size_t bytes;
    return xmm_array_bytes(count, size, &bytes) ? xmm_heap_realloc(ptr, bytes) : NULL;
}
