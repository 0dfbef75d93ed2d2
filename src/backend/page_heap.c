/*
 * page_heap.c - spans of pages per node (see page_heap.h).
 *
 * Free spans sit in lists by length (1 .. 256 pages exactly, one list for
 * longer ones, best fit). Only the first and last page of a free span map
 * to it, which is all coalescing needs; an in-use span maps every page.
 * Fresh pages are cut from the node's current chunk; the tail of an
 * exhausted chunk becomes a free span.
 */
#include <errno.h>
#include <string.h>

#include "arena.h"
#include "base/base.h"
#include "metadata.h"
#include "numa.h"
#include "page_heap.h"

/* Free spans up to 1 MiB have a list per length; longer ones share list 0. */
#define EXACT_LISTS (((size_t)1 << 20) >> XMM_PAGE_SHIFT)
#define HUGE_PAGE_SIZE ((size_t)2 << 20)


/* Free pages that may still be resident and are worth purging. */
static bool holds_resident(const struct xmm_span *span)
{
    return span->dirty == XMM_PAGES_DIRTY || span->dirty == XMM_PAGES_INTERIOR_PURGED;
}


/* What every large allocation and free counts, in shards by CPU. One
 * shared line updated by each of them made two threads that allocate and
 * free large blocks (bench/micro malloc_free/1048576 with 2 threads) pass
 * it back and forth; each shard is a line of its own, and statistics sum
 * them (large_tally_sum). `bytes` may wrap in one shard (a block freed on
 * another CPU than it was allocated on): only the sum means anything. */
#define LARGE_TALLY_SHARDS 16

struct large_tally {
    uint64_t bytes;       /* in large allocations */
    uint64_t count;       /* large allocations made, sampled small ones too */
    uint64_t allocations; /* ... the program's large requests only */
    uint64_t frees;       /* ... and their frees */
} XMM_CACHE_ALIGNED;

struct page_heap {
    struct xmm_lock lock;
    int node;
    uint32_t epoch;                               /* see xmm_page_heap_after_fork_child */
    /* [1]: spans that hold resident pages, [0]: purged ones; [..][0]:
     * longer than 128 pages */
    struct xmm_span *free_lists[2][EXACT_LISTS + 1];
    struct xmm_span *oldest, *newest;             /* free spans holding resident
                                                     pages, by when they were listed */
    struct xmm_chunk *current;                    /* chunk being cut, or NULL */
    size_t next_page;                             /* first unused page of it */
    size_t held_pages;                            /* pages after its table left
                                                     uncut until it is retired */
    size_t big_cut_pages;                         /* pages of it cut in spans of
                                                     large blocks */
    unsigned chunks_made;
    struct xmm_chunk *chunks;                     /* every chunk of the node */
    size_t chunk_bytes;                           /* their bytes mapped */
    size_t chunk_bytes_peak;                      /* the most they ever were */
    size_t next_chunk_pages;                      /* size of the next chunk */
    struct xmm_span *deferred;                    /* freed by signal handlers, see heap_unlock */
    struct xmm_span *spare_descriptors;           /* linked through `next` */
    size_t descriptor_pages;                      /* free pages made descriptors
                                                     (descriptors_from_page) */
    char *descriptor_page;                        /* the last of them */
    size_t free_pages;
    size_t dirty_pages;
    size_t purged_bytes;
    uint64_t last_purge_ns;
    struct large_tally large[LARGE_TALLY_SHARDS];
} XMM_CACHE_ALIGNED;

static struct page_heap *heaps;

/* The calling CPU's shard of `heap`'s large tally. */
static struct large_tally *large_tally_here(struct page_heap *heap)
{
    return &heap->large[(unsigned)xmm_os_current_cpu() % LARGE_TALLY_SHARDS];
}

int xmm_page_heap_init(void)
{
    heaps = xmm_metadata_alloc(sizeof(*heaps) * (size_t)xmm_nodes, XMM_CACHE_LINE);
    if (!heaps)
        return -1;
    for (int node = 0; node < xmm_nodes; node++) {
        heaps[node].node = node;
        heaps[node].next_chunk_pages = XMM_CHUNK_MIN_SIZE >> XMM_PAGE_SHIFT;
    }
    return 0;
}

/* ---- the lock ----------------------------------------------------------------- */

static void free_locked(struct page_heap *heap, struct xmm_chunk *chunk, struct xmm_span *span,
                        uint64_t now);

/* The heap's lock; false in a signal handler that interrupted this thread
 * inside it (see xmm_lock_acquire): the handler must do without. */
static bool heap_lock(struct page_heap *heap)
{
    return xmm_lock_acquire(&heap->lock);
}

/* Before it lets go, the holder frees the spans that signal handlers it
 * was interrupted by could not free themselves (free_and_purge). One may
 * be pushed after the last look: it waits for the next unlock. */
static void heap_unlock(struct page_heap *heap)
{
    struct xmm_span *span;
    while ((span = __atomic_exchange_n(&heap->deferred, NULL, __ATOMIC_ACQUIRE))) {
        uint64_t now = xmm_os_now_ns();
        while (span) {
            struct xmm_span *next = span->next;
            span->next = NULL; /* free_locked lists it */
            free_locked(heap, (struct xmm_chunk *)xmm_region_of(span->start), span, now);
            span = next;
        }
    }
    xmm_lock_release(&heap->lock);
}

/* ---- descriptors ------------------------------------------------------------ */

static bool descriptors_from_free_span(struct page_heap *heap);
static struct xmm_span *free_neighbour(const struct page_heap *heap, struct xmm_chunk *chunk,
                                       struct xmm_span *span, bool after);

static struct xmm_span *new_descriptor(struct page_heap *heap)
{
    struct xmm_span *span = heap->spare_descriptors;
    if (!span) {
        span = xmm_metadata_alloc(sizeof(*span), XMM_CACHE_LINE);
        /* The kernel refused metadata a mapping: a free page of the heap
         * becomes descriptors (descriptors_from_page). */
        if (!span && !xmm_metadata_reentered() && descriptors_from_free_span(heap))
            span = heap->spare_descriptors;
        if (!span)
            return NULL;
    }
    if (span == heap->spare_descriptors)
        heap->spare_descriptors = span->next;
    /* Fields a lock-free reader may look at keep a defined value; the rest
     * is reset. */
    span->previous = span->next = NULL;
    span->free_list = NULL;
    __atomic_store_n(&span->state, 0, __ATOMIC_RELAXED);
    span->carved = 0;
    span->tail_purged = 0;
    span->purged = 0;
    span->size_class = 0;
    span->node = (uint8_t)heap->node;
    return span;
}

/* Descriptors are recycled, never unmapped: a stale pointer to one (from a
 * lock-free stack or a stale page map entry) stays readable. */
static void retire_descriptor(struct page_heap *heap, struct xmm_span *span)
{
    __atomic_store_n(&span->kind, XMM_SPAN_FREE, __ATOMIC_RELEASE);
    span->pages = 0;
    span->next = heap->spare_descriptors;
    heap->spare_descriptors = span;
}

/* ---- free lists ---------------------------------------------------------------- */

static size_t list_index(size_t pages)
{
    return pages <= EXACT_LISTS ? pages : 0;
}

/* The free spans that hold resident pages, in the order they were listed:
 * what a purge before growth gives back first (purge_for_growth). */
static void resident_append(struct page_heap *heap, struct xmm_span *span)
{
    span->older = heap->newest;
    span->newer = NULL;
    if (heap->newest)
        heap->newest->newer = span;
    else
        heap->oldest = span;
    heap->newest = span;
}

static void resident_unlink(struct page_heap *heap, struct xmm_span *span)
{
    if (span->older)
        span->older->newer = span->newer;
    else
        heap->oldest = span->newer;
    if (span->newer)
        span->newer->older = span->older;
    else
        heap->newest = span->older;
    span->older = span->newer = NULL;
}

/* The list a free span belongs on: by length, and apart whether its pages
 * may still be resident, so that requests take resident memory first. */
static struct xmm_span **list_head(struct page_heap *heap, const struct xmm_span *span)
{
    return &heap->free_lists[holds_resident(span)][list_index(span->pages)];
}

static void list_insert(struct page_heap *heap, struct xmm_span *span)
{
    xmm_assert(span->pages > 0 && span->kind == XMM_SPAN_FREE);
    xmm_assert(span->previous == NULL && span->next == NULL);
    struct xmm_span **head = list_head(heap, span);
    span->epoch = heap->epoch;
    span->previous = NULL;
    span->next = *head;
    if (*head)
        (*head)->previous = span;
    *head = span;
    heap->free_pages += span->pages;
    if (holds_resident(span)) {
        heap->dirty_pages += span->pages;
        resident_append(heap, span);
    }
}

static void list_remove(struct page_heap *heap, struct xmm_span *span)
{
    xmm_assert(heap->free_pages >= span->pages);
    xmm_assert(span->previous || *list_head(heap, span) == span);
    if (span->previous)
        span->previous->next = span->next;
    else
        *list_head(heap, span) = span->next;
    if (span->next)
        span->next->previous = span->previous;
    span->previous = span->next = NULL;
    heap->free_pages -= span->pages;
    if (holds_resident(span)) {
        heap->dirty_pages -= span->pages;
        resident_unlink(heap, span);
    }
}

static size_t pages_to_alignment(const struct xmm_span *span, size_t alignment)
{
    uintptr_t start = (uintptr_t)span->start;
    return (xmm_align_up(start, alignment) - start) >> XMM_PAGE_SHIFT;
}

/* An aligned request looks at this many free spans at most among those
 * shorter than the request and its slack (find_aligned; the spans of the
 * list of long ones count, candidates or not). */
#define ALIGNED_SEARCH_MAX_SPANS 64

/* A free span on `lists` shorter than `pages` plus the slack of
 * `alignment` that still holds `pages` from an aligned start, or NULL.
 * Without it, the free of a block aligned to 2 MiB leaves it beside the
 * pieces its alignment cut off, which are purged or were never touched
 * and so stay apart from it (joins): the same request again found no
 * span of its length plus slack, and cut fresh pages every time (a loop
 * of 64 KiB blocks aligned to 2 MiB mapped 1189 MiB in 200,000 rounds). */
static struct xmm_span *find_aligned(struct xmm_span *const *lists, size_t pages,
                                     size_t alignment)
{
    size_t shortest_sure = pages + (alignment >> XMM_PAGE_SHIFT) - 1;
    unsigned looked = 0;
    for (size_t length = pages; length < shortest_sure; length++) {
        const struct xmm_span *span = lists[list_index(length)];
        if (length > EXACT_LISTS) /* list 0: spans of every longer length */
            length = shortest_sure;
        for (; span; span = span->next) {
            if (span->pages < shortest_sure && span->pages >= pages &&
                pages_to_alignment(span, alignment) + pages <= span->pages)
                return (struct xmm_span *)span;
            if (++looked == ALIGNED_SEARCH_MAX_SPANS)
                return NULL;
        }
    }
    return NULL;
}

/* The smallest free span of at least `pages` (and the slack of
 * `alignment`, unless a shorter one holds `pages` aligned) whose pages
 * may be resident, else (unless `resident_only`) the smallest purged one,
 * or NULL. Resident memory first, even a longer span than a purged one
 * that fits: taking purged pages while resident free ones wait would add
 * to the RSS what the request needs (a page fault each) and keep the rest
 * until decay. */
static struct xmm_span *find_free(struct page_heap *heap, size_t pages, size_t alignment,
                                  bool resident_only)
{
    size_t wanted = pages;
    if (alignment > XMM_PAGE_SIZE)
        wanted += (alignment >> XMM_PAGE_SHIFT) - 1;
    for (int resident = 1; resident >= (resident_only ? 1 : 0); resident--) {
        struct xmm_span **lists = heap->free_lists[resident];
        if (wanted > pages) {
            struct xmm_span *aligned = find_aligned(lists, pages, alignment);
            if (aligned)
                return aligned;
        }
        for (size_t length = wanted; length <= EXACT_LISTS; length++)
            if (lists[length])
                return lists[length];
        struct xmm_span *best = NULL;
        for (struct xmm_span *span = lists[0]; span; span = span->next)
            if (span->pages >= wanted && (!best || span->pages < best->pages))
                best = span;
        if (best)
            return best;
    }
    return NULL;
}

/* ---- descriptors from free pages ---------------------------------------------- */

/* Turns `page` (an allocator page of a chunk of this heap, in no span any
 * more, `dirty` as its span was) into spare descriptors, for good: its
 * page map entry and page info are cleared first, so that no span joins
 * across it and a free() of an address in it is reported as invalid, and
 * its chunk is never wholly free again (chunk_is_free), so never unmapped
 * under a stale descriptor pointer. Metadata has dedicated mappings
 * (metadata.c); this is for when the kernel refuses one (ulimit -v, the
 * program's own mappings having taken the room left) while the heap holds
 * free pages: without descriptors no free span could be split, and a
 * request for two pages took a whole free span of hundreds of MiB, which
 * a small-object class then kept (tests/override/limits.c, "descriptors").
 * Caller holds the lock. */
static void descriptors_from_page(struct page_heap *heap, struct xmm_span *owner, char *page,
                                  enum xmm_span_pages dirty)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(page);
    size_t index = ((uintptr_t)page - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    uint32_t in_owner = (uint32_t)((page - owner->start) >> XMM_PAGE_SHIFT);
    xmm_chunk_set_page_range(owner, 0, in_owner, in_owner + 1);
    __atomic_store_n(&chunk->page_span[index], NULL, __ATOMIC_RELEASE);
    if (dirty != XMM_PAGES_CLEAN)
        memset(page, 0, XMM_PAGE_SIZE); /* as metadata's fresh memory is */
    for (size_t offset = 0; offset + sizeof(struct xmm_span) <= XMM_PAGE_SIZE;
         offset += sizeof(struct xmm_span))
        retire_descriptor(heap, (struct xmm_span *)(page + offset));
    heap->descriptor_pages++;
    heap->descriptor_page = page;
}

/* A listed free span of two pages or more right after (*front) or right
 * before the last page made descriptors, or NULL: the next such page is
 * taken beside it, so that they gather in the chunks they already pin. */
static struct xmm_span *free_span_beside_descriptors(struct page_heap *heap, bool *front)
{
    if (!heap->descriptor_page)
        return NULL;
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(heap->descriptor_page);
    struct xmm_span page = {.start = heap->descriptor_page, .pages = 1};
    for (int after = 1; after >= 0; after--) {
        struct xmm_span *span = free_neighbour(heap, chunk, &page, after);
        if (span && span->pages >= 2) {
            *front = after;
            return span;
        }
    }
    return NULL;
}

/* descriptors_from_page on an end page of a listed free span of two pages
 * or more: beside the last descriptor page if one is free, else the last
 * page of the smallest such span (resident ones first: the page is
 * written now). false if the heap has none. Caller holds the lock. */
static bool descriptors_from_free_span(struct page_heap *heap)
{
    bool front = false;
    struct xmm_span *span = free_span_beside_descriptors(heap, &front);
    if (!span)
        span = find_free(heap, 2, 0, false);
    if (!span)
        return false;
    list_remove(heap, span);
    char *page = front ? span->start : span->start + xmm_span_bytes(span) - XMM_PAGE_SIZE;
    descriptors_from_page(heap, span, page, span->dirty);
    if (front)
        span->start += XMM_PAGE_SIZE;
    span->pages--;
    xmm_chunk_set_pages(span, true);
    list_insert(heap, span);
    return true;
}

/* ---- fresh pages from chunks ------------------------------------------------------ */

static struct xmm_span *make_free_span(struct page_heap *heap, char *start, size_t pages,
                                       enum xmm_span_pages dirty)
{
    struct xmm_span *span = new_descriptor(heap);
    if (!span)
        return NULL;
    span->start = start;
    span->pages = (uint32_t)pages;
    __atomic_store_n(&span->kind, XMM_SPAN_FREE, __ATOMIC_RELEASE);
    span->dirty = dirty;
    span->freed_at_ns = xmm_os_now_ns();
    xmm_chunk_set_pages(span, true);
    return span;
}

/* Maps the node's next chunk, large enough for `pages`: chunks double from
 * XMM_CHUNK_MIN_SIZE to XMM_CHUNK_MAX_SIZE, so that a process reserves
 * address space in proportion to what it uses. */
static struct xmm_chunk *new_chunk(struct page_heap *heap, size_t pages)
{
    size_t chunk_pages = heap->next_chunk_pages;
    /* The first granule holds the guard and the page table (arena.h);
     * alloc_pages bounds `pages`. */
    size_t needed = xmm_align_up(pages + XMM_CHUNK_FIRST_PAGE, XMM_PAGES_PER_GRANULE);
    if (needed > chunk_pages)
        chunk_pages = needed;
    /* Interleaved: a whole power of two of granules for spans, besides the
     * table's, so that each node's huge pages come in equal numbers (the
     * kernel interleaves them by address; the table's granule would
     * otherwise be one node's share missing from every chunk). */
    if (xmm_numa_interleave_width(heap->node) > 1 && chunk_pages < XMM_CHUNK_MAX_PAGES)
        chunk_pages += XMM_PAGES_PER_GRANULE;
    struct xmm_chunk *chunk = xmm_arena_new_chunk(heap->node, chunk_pages);
    /* Refused (`ulimit -v`, overcommit): the smallest chunk that serves
     * the request may still fit, and the next one is not made larger. */
    if (!chunk && chunk_pages > needed) {
        chunk = xmm_arena_new_chunk(heap->node, needed);
        if (!chunk)
            return NULL;
    } else if (!chunk) {
        return NULL;
    } else if (heap->next_chunk_pages < XMM_CHUNK_MAX_PAGES) {
        heap->next_chunk_pages *= 2;
    }
    chunk->next_in_heap = heap->chunks;
    heap->chunks = chunk;
    heap->chunk_bytes += xmm_region_mapped_bytes(&chunk->region);
    if (heap->chunk_bytes > heap->chunk_bytes_peak)
        heap->chunk_bytes_peak = heap->chunk_bytes;
    return chunk;
}

static struct xmm_span *free_neighbour(const struct page_heap *heap, struct xmm_chunk *chunk,
                                       struct xmm_span *span, bool after);

/* A free span whose pages are not resident, of at most this many pages,
 * joins a resident neighbour (and then counts as resident): the rest of a
 * carver run, a purged hole the size of a span. Longer ones stay apart. */
#define JOIN_NOT_RESIDENT_MAX_PAGES (((size_t)256 << 10) >> XMM_PAGE_SHIFT)

/* True when free span `neighbour` may join `span`. Spans of resident
 * pages and spans of purged or never-touched pages join only when the
 * latter is short (JOIN_NOT_RESIDENT_MAX_PAGES, and `mixed`), as jemalloc
 * keeps its dirty, muzzy and retained extents apart. A joined span has
 * one state: a resident one joined with megabytes that are not counts
 * them resident, so the purge before growth (purge_for_growth) thinks
 * the slack full and purges, or thinks it used and does not, and requests
 * that take resident pages first fault in the purged part while resident
 * free pages elsewhere wait for decay (a probe of sqlite's heap found an
 * 18 MiB free span with 4578 of its 7421 pages resident, and new spans
 * cut from one with 226 of 2342). Kept apart, with the growth slack at
 * 32 MiB, the `large` and `size-mix` benchmarks peaked 12% lower
 * (bench/analysis.md, "Peak RSS: large"). Short pieces join, so
 * that holes between spans still coalesce into spans other classes can
 * use: with none joining, size-drift peaked at 58 MiB instead of 44. A
 * clean span (reads zero) joins only clean ones among those not
 * resident, so that calloc still knows it; purged pages that may read
 * old bytes join any. */
static bool joins(const struct xmm_span *span, const struct xmm_span *neighbour, bool mixed)
{
    bool resident = holds_resident(span);
    if (resident != holds_resident(neighbour))
        return mixed && (resident ? neighbour : span)->pages <= JOIN_NOT_RESIDENT_MAX_PAGES;
    if (resident)
        return true;
    return span->dirty == XMM_PAGES_PURGED_NOT_ZERO || neighbour->dirty == XMM_PAGES_CLEAN;
}

/* Joins `span` (free, off the lists) with the free neighbours it may join
 * (joins; `mixed`: also across residency, which a purge must not do: the
 * resident neighbour it would take may be the next span it purges). A
 * resident span ages from its oldest resident part: re-stamping it on
 * every join would let a program that keeps splitting and re-freeing one
 * large free span keep it resident forever. */
static void join_neighbours(struct page_heap *heap, struct xmm_chunk *chunk,
                            struct xmm_span *span, bool mixed)
{
    for (int after = 0; after <= 1; after++) {
        struct xmm_span *neighbour = free_neighbour(heap, chunk, span, after);
        if (!neighbour || !joins(span, neighbour, mixed))
            continue;
        if (holds_resident(neighbour)) {
            if (!holds_resident(span)) {
                span->dirty = XMM_PAGES_DIRTY;
                span->freed_at_ns = neighbour->freed_at_ns;
            } else {
                if (neighbour->freed_at_ns < span->freed_at_ns)
                    span->freed_at_ns = neighbour->freed_at_ns;
                /* DIRTY joined with INTERIOR_PURGED: DIRTY, so that
                 * routine decay purges the joined span's resident pages
                 * (it passes over an INTERIOR_PURGED one until it is four
                 * periods old, purge_range). */
                if (neighbour->dirty != span->dirty)
                    span->dirty = XMM_PAGES_DIRTY;
            }
        }
        list_remove(heap, neighbour);
        if (!after)
            span->start = neighbour->start;
        span->pages += neighbour->pages;
        retire_descriptor(heap, neighbour);
    }
    xmm_chunk_set_pages(span, true);
}

/* The granules rotate_interleaved_start left uncut become a free span,
 * joined with the free span after them when that one was never touched
 * either. */
static void list_held_pages(struct page_heap *heap, struct xmm_chunk *chunk)
{
    char *head = chunk->region.base + ((size_t)XMM_CHUNK_FIRST_PAGE << XMM_PAGE_SHIFT);
    struct xmm_span *held = make_free_span(heap, head, heap->held_pages, XMM_PAGES_CLEAN);
    if (!held)
        return;
    join_neighbours(heap, chunk, held, true);
    list_insert(heap, held);
}

/* Spans longer than any small-object span hold large blocks, each touched
 * by one owner, mostly once through and often sparsely (a buffer's ends):
 * huge pages save them few TLB misses, and a huge-page fault costs the
 * whole 2 MiB at once (on the benchmark VM, after the host took the memory
 * back, 1.4 ms per fault; the large workload ran 1.7x slower, and rounds
 * of 1 MiB blocks 1000x slower: bench/analysis.md, "large" and "batch1000
 * at 1 MiB"). A chunk cut mostly into such spans is left on small pages. */
static bool cut_mostly_big(const struct page_heap *heap)
{
    size_t cut_pages = heap->next_page - XMM_CHUNK_FIRST_PAGE - heap->held_pages;
    return heap->big_cut_pages * 2 > cut_pages;
}

static void note_cut(struct page_heap *heap, size_t span_pages, size_t cut_pages)
{
    if (span_pages > XMM_SMALL_SPAN_MAX_PAGES)
        heap->big_cut_pages += cut_pages;
    heap->next_page += cut_pages;
}

/* The current chunk is done with: under XMM_THP=auto a chunk cut to the
 * end is dense and may now be backed by huge pages (khugepaged collapses
 * it; sparse chunks stay on small pages, where purging frees memory at
 * 4 KiB grain), unless it was cut mostly into large blocks; its uncut
 * tail becomes an ordinary free span. */
static void retire_current_chunk(struct page_heap *heap)
{
    struct xmm_chunk *chunk = heap->current;
    if (!chunk)
        return;
    if (!cut_mostly_big(heap))
        xmm_arena_chunk_dense(chunk);
    if (heap->held_pages) {
        list_held_pages(heap, chunk);
        heap->held_pages = 0;
    }
    if (heap->next_page < chunk->pages) {
        char *tail = chunk->region.base + (heap->next_page << XMM_PAGE_SHIFT);
        struct xmm_span *rest = make_free_span(heap, tail, chunk->pages - heap->next_page, XMM_PAGES_CLEAN);
        if (rest)
            list_insert(heap, rest);
    }
    heap->current = NULL;
}

/* Chunks start on 64 MiB boundaries (arena.h), so under an interleave
 * policy (the kernel picks a page's node from its address) the first huge
 * pages of every chunk, the part a small heap uses most, would be on the
 * same node. The interleaved heap cuts its n-th chunk from n granules
 * further on (n modulo the nodes); the pages skipped join the free lists
 * when the chunk is retired. */
static void rotate_interleaved_start(struct page_heap *heap, size_t pages)
{
    unsigned width = (unsigned)xmm_numa_interleave_width(heap->node);
    if (width <= 1)
        return;
    size_t skip = (size_t)(heap->chunks_made++ % width) * XMM_PAGES_PER_GRANULE;
    if (skip && heap->next_page + skip + pages <= heap->current->pages) {
        heap->held_pages = skip;
        heap->next_page += skip;
    }
}

/* Cuts `pages` never-used pages from the current chunk, mapping a new
 * chunk when it is too short. The returned span is free-shaped and clean. */
static struct xmm_span *cut_fresh(struct page_heap *heap, size_t pages)
{
    if (!heap->current || heap->next_page + pages > heap->current->pages) {
        struct xmm_chunk *chunk = new_chunk(heap, pages);
        if (!chunk)
            return NULL;
        retire_current_chunk(heap);
        heap->current = chunk;
        heap->next_page = XMM_CHUNK_FIRST_PAGE; /* after the page table */
        heap->big_cut_pages = 0;
        rotate_interleaved_start(heap, pages);
    }
    char *start = heap->current->region.base + (heap->next_page << XMM_PAGE_SHIFT);
    struct xmm_span *span = make_free_span(heap, start, pages, XMM_PAGES_CLEAN);
    if (span)
        note_cut(heap, pages, pages);
    return span;
}

/* Lists `piece`, cut off a span being handed out, joined with the free
 * neighbours it may join: the pieces an alignment cuts off join the free
 * spans beside them, instead of staying apart for good. */
static void list_piece(struct page_heap *heap, struct xmm_span *piece)
{
    join_neighbours(heap, (struct xmm_chunk *)xmm_region_of(piece->start), piece, true);
    list_insert(heap, piece);
}

/* Splits `span` (off the lists, no longer free) so that it keeps exactly
 * `pages` pages from `offset` pages into it; the pieces before and after
 * go back to the free lists. false, and `span` unchanged, when the piece
 * before gets no descriptor (metadata exhausted: ulimit -v, or a signal
 * handler inside the metadata lock): a span that kept it would start
 * before the aligned address, and the caller would hand out that start.
 * Without a descriptor for the piece after, its last page becomes
 * descriptors (descriptors_from_page) and it is split off; in a signal
 * handler inside the metadata lock, the span keeps it: longer than asked
 * for, nothing lost. */
static bool trim_span(struct page_heap *heap, struct xmm_span *span, size_t offset,
                      size_t pages)
{
    size_t after = span->pages - offset - pages;
    if (offset) {
        struct xmm_span *before = make_free_span(heap, span->start, offset, span->dirty);
        if (!before)
            return false;
        before->freed_at_ns = span->freed_at_ns;
        list_piece(heap, before);
        span->start += offset << XMM_PAGE_SHIFT;
        span->pages -= (uint32_t)offset;
    }
    if (after) {
        char *tail_start = span->start + ((size_t)pages << XMM_PAGE_SHIFT);
        struct xmm_span *tail = make_free_span(heap, tail_start, after, span->dirty);
        if (!tail && !xmm_metadata_reentered()) {
            /* No descriptor, and no other free span to make some of: the
             * tail's last page becomes them. A span that kept the tail
             * would be longer than asked for, which a large block takes
             * in its stride, but a small-object class would keep it all
             * for a span of a few objects. */
            after--;
            descriptors_from_page(heap, span, tail_start + ((size_t)after << XMM_PAGE_SHIFT),
                                  span->dirty);
            span->pages = (uint32_t)(pages + after);
            tail = after ? make_free_span(heap, tail_start, after, span->dirty) : NULL;
            if (!after)
                span->pages = (uint32_t)pages;
        }
        if (tail) {
            span->pages = (uint32_t)pages;
            tail->freed_at_ns = span->freed_at_ns;
            list_piece(heap, tail);
        }
    }
    return true;
}

static void purge_decayed(struct page_heap *heap, uint64_t now, bool everything);

struct xmm_span *xmm_page_heap_alloc(int node, size_t pages, size_t alignment)
{
    int saved_errno = errno;
    struct xmm_span *span = xmm_page_heap_try_alloc(node, pages, alignment);
    /* The kernel refused a chunk (ulimit -v, overcommit): wholly free
     * chunks of every node go back first, and the request tries again; if
     * it succeeds, the refusal's errno is not the caller's. */
    if (!span && xmm_page_heap_release_chunks(0)) {
        span = xmm_page_heap_try_alloc(node, pages, alignment);
        if (span)
            errno = saved_errno;
    }
    return span;
}

static size_t purge_for_growth(struct page_heap *heap, size_t pages, size_t keep_pages, bool full);

/* Free pages kept resident while the heap grows (per node), in pages.
 * XMM_PAGE_HEAP_GROWTH_SLACK is 32 MiB: large enough for a program that
 * cycles through blocks of many sizes to keep its free pool (the `large`
 * benchmark, blocks of 64 KiB - 16 MiB, took 30% longer with 8 MiB,
 * and 1.2-1.9x the time with 16: purged spans were faulted in again),
 * small beside the phases of `size-mix` (150 MiB each) that the purge is
 * for. It was
 * 64 MiB while free spans of resident and purged pages joined, and the
 * count of resident free pages took in purged ones. */
#define GROWTH_SLACK_PAGES (XMM_PAGE_HEAP_GROWTH_SLACK >> XMM_PAGE_SHIFT)
/* A purge before growth passes over at most this many spans it cannot
 * purge (purge_for_growth). */
#define GROWTH_PURGE_MAX_SKIPPED 64
/* A purge before growth gives back at least this much at once, so that a
 * heap growing span by span pays one madvise per MiB, not one per span. */
#define GROWTH_PURGE_MIN_PAGES (((size_t)1 << 20) >> XMM_PAGE_SHIFT)

/* `may_grow`: purged free spans may be used, and fresh pages cut (and a
 * chunk mapped) when no free span fits; before either, free pages beyond
 * GROWTH_SLACK_PAGES that are still resident are purged, oldest first, at
 * least as many as the RSS grows by: pages that could not serve this
 * request are given back rather than kept beside new ones. Without it:
 * only resident free spans. */
static struct xmm_span *alloc_pages_upto(int node, size_t pages, size_t max_pages,
                                        size_t alignment, bool may_grow);

static struct xmm_span *alloc_pages(int node, size_t pages, size_t alignment, bool may_grow)
{
    return alloc_pages_upto(node, pages, pages, alignment, may_grow);
}

/* alloc_pages, taking up to `max_pages` (alignment 0 only) of the free span
 * that serves the request, or as many fresh pages. */
static struct xmm_span *alloc_pages_upto(int node, size_t pages, size_t max_pages,
                                        size_t alignment, bool may_grow)
{
    struct page_heap *heap = &heaps[node];
    size_t slack = alignment > XMM_PAGE_SIZE ? (alignment >> XMM_PAGE_SHIFT) - 1 : 0;
    size_t wanted = pages + slack;
    if (wanted > XMM_CHUNK_SPAN_MAX_PAGES || !heap_lock(heap))
        return NULL;
    if (slack || max_pages < pages)
        max_pages = pages;
    else if (max_pages > XMM_CHUNK_SPAN_MAX_PAGES)
        max_pages = XMM_CHUNK_SPAN_MAX_PAGES;
    size_t at_least = wanted > GROWTH_PURGE_MIN_PAGES ? wanted : GROWTH_PURGE_MIN_PAGES;
    struct xmm_span *span = find_free(heap, pages, alignment, !may_grow);
    if (span) {
        list_remove(heap, span);
        /* Off the lists and no longer free before the purge: a span it
         * purges joins its free neighbours (mark_purged), and must not
         * take this one. */
        __atomic_store_n(&span->kind, XMM_SPAN_CACHED, __ATOMIC_RELEASE);
        /* Purged pages fault in as fresh ones do: the RSS grows the same. */
        if (!holds_resident(span) && heap->dirty_pages > GROWTH_SLACK_PAGES)
            purge_for_growth(heap, at_least, GROWTH_SLACK_PAGES, false);
    } else if (may_grow) {
        if (heap->dirty_pages > GROWTH_SLACK_PAGES)
            purge_for_growth(heap, at_least, GROWTH_SLACK_PAGES, false);
        /* Fresh pages: all of `max_pages` (a carver run's length). */
        span = cut_fresh(heap, slack ? wanted : max_pages);
        if (span) /* not free: the pieces trim_span cuts off must not join it */
            __atomic_store_n(&span->kind, XMM_SPAN_CACHED, __ATOMIC_RELEASE);
    }
    if (span) {
        size_t offset = slack ? pages_to_alignment(span, alignment) : 0;
        if (max_pages > pages)
            pages = span->pages < max_pages ? span->pages : max_pages;
        if (trim_span(heap, span, offset, pages)) {
            /* In use; the caller refines it. */
            __atomic_store_n(&span->kind, XMM_SPAN_LARGE, __ATOMIC_RELEASE);
            xmm_chunk_set_pages(span, false);
        } else {
            __atomic_store_n(&span->kind, XMM_SPAN_FREE, __ATOMIC_RELEASE);
            list_insert(heap, span); /* as it was: free, its ends mapped */
            span = NULL;
        }
    }
    uint64_t now = xmm_os_now_ns();
    if (now - __atomic_load_n(&heap->last_purge_ns, __ATOMIC_RELAXED) >
        xmm_upkeep_period_ns())
        purge_decayed(heap, now, false);
    heap_unlock(heap);
    return span;
}

struct xmm_span *xmm_page_heap_try_alloc(int node, size_t pages, size_t alignment)
{
    return alloc_pages(node, pages, alignment, true);
}

struct xmm_span *xmm_page_heap_alloc_upto(int node, size_t pages, size_t max_pages)
{
    struct xmm_span *span = alloc_pages_upto(node, pages, max_pages, 0, true);
    if (!span && xmm_page_heap_release_chunks(0))
        span = alloc_pages_upto(node, pages, max_pages, 0, true);
    return span;
}

struct xmm_span *xmm_page_heap_alloc_resident_upto(int node, size_t pages, size_t max_pages)
{
    return alloc_pages_upto(node, pages, max_pages, 0, false);
}

struct xmm_span *xmm_page_heap_alloc_resident(int node, size_t pages, size_t alignment)
{
    return alloc_pages(node, pages, alignment, false);
}

/* ---- free and coalesce ------------------------------------------------------------ */

/* The free span that ends right before `span` or starts right after it, in
 * the same chunk, or NULL. */
static struct xmm_span *free_neighbour(const struct page_heap *heap, struct xmm_chunk *chunk,
                                       struct xmm_span *span, bool after)
{
    size_t first = ((uintptr_t)span->start - (uintptr_t)chunk->region.base) >> XMM_PAGE_SHIFT;
    size_t page = after ? first + span->pages : first - 1;
    if ((!after && first == XMM_CHUNK_FIRST_PAGE) || (after && page >= chunk->pages))
        return NULL;
    struct xmm_span *neighbour = chunk->page_span[page];
    /* kind is read atomically: new_span publishes it outside this lock. */
    if (!neighbour || __atomic_load_n(&neighbour->kind, __ATOMIC_ACQUIRE) != XMM_SPAN_FREE ||
        neighbour->pages == 0 || neighbour->epoch != heap->epoch)
        return NULL; /* not free, or on the lists of a heap a fork child set aside */
    char *expected = after ? span->start + xmm_span_bytes(span)
                           : span->start - xmm_span_bytes(neighbour);
    return neighbour->start == expected ? neighbour : NULL;
}

#if XMM_DEBUG_LEVEL >= 2
/* Every listed span is free, of its list's length, linked both ways, and
 * the lists add up to the heap's free page count. */
static bool lists_consistent(const struct page_heap *heap)
{
    size_t pages = 0;
    for (int resident = 0; resident < 2; resident++)
        for (size_t list = 0; list <= EXACT_LISTS; list++)
            for (const struct xmm_span *span = heap->free_lists[resident][list]; span;
                 span = span->next) {
                if (span->kind != XMM_SPAN_FREE || list_index(span->pages) != list ||
                    holds_resident(span) != resident ||
                    (span->next && span->next->previous != span))
                    return false;
                pages += span->pages;
            }
    return pages == heap->free_pages;
}
#endif

/* Frees pages nobody wrote (a carver run's rest), joined with the free
 * neighbours it may join (joins: clean ones, and a resident one when it
 * is short). Caller holds the lock. */
static void free_clean_locked(struct page_heap *heap, struct xmm_chunk *chunk,
                              struct xmm_span *span, uint64_t now)
{
    __atomic_store_n(&span->kind, XMM_SPAN_FREE, __ATOMIC_RELEASE);
    span->size_class = 0;
    span->freed_at_ns = now;
    join_neighbours(heap, chunk, span, true);
    list_insert(heap, span);
    xmm_assert_expensive(lists_consistent(heap));
}

/* Puts a span that is out of the lists back, joined with its free
 * neighbours. Caller holds the lock. */
static void free_locked(struct page_heap *heap, struct xmm_chunk *chunk, struct xmm_span *span,
                        uint64_t now)
{
    __atomic_store_n(&span->kind, XMM_SPAN_FREE, __ATOMIC_RELEASE);
    span->size_class = 0;
    span->dirty = XMM_PAGES_DIRTY;
    span->freed_at_ns = now;
    join_neighbours(heap, chunk, span, true);
    list_insert(heap, span);
    xmm_assert_expensive(lists_consistent(heap));
}

/* Takes the lock, frees, and runs decay if due. A signal handler that
 * interrupted this thread inside the lock cannot take it: it leaves the
 * span (claimed, so nothing else touches it) to the interrupted holder,
 * which frees it before it unlocks. */
static void free_and_purge(struct xmm_span *span)
{
    struct page_heap *heap = &heaps[span->node];
    if (!heap_lock(heap)) {
        struct xmm_span *head = __atomic_load_n(&heap->deferred, __ATOMIC_RELAXED);
        do {
            span->next = head;
        } while (!__atomic_compare_exchange_n(&heap->deferred, &head, span, true,
                                              __ATOMIC_RELEASE, __ATOMIC_RELAXED));
        return;
    }
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
    uint64_t now = xmm_os_now_ns();
    free_locked(heap, chunk, span, now);
    if (now - __atomic_load_n(&heap->last_purge_ns, __ATOMIC_RELAXED) >
        xmm_upkeep_period_ns())
        purge_decayed(heap, now, false);
    heap_unlock(heap);
}

void xmm_page_heap_free_claimed(struct xmm_span *span)
{
    xmm_assert(__atomic_load_n(&span->kind, __ATOMIC_ACQUIRE) == XMM_SPAN_CACHED);
    free_and_purge(span);
}

bool xmm_page_heap_free(struct xmm_span *span)
{
    /* The claim is a CAS out of "in use", without the lock: of two frees
     * of one block, or a free racing a cache put or a resize, exactly one
     * wins; the others see it claimed and report. */
    uint8_t kind = __atomic_load_n(&span->kind, __ATOMIC_ACQUIRE);
    do {
        if (kind != XMM_SPAN_SMALL && kind != XMM_SPAN_LARGE)
            return false;
    } while (!__atomic_compare_exchange_n(&span->kind, &kind, XMM_SPAN_CACHED, false,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    free_and_purge(span);
    return true;
}

/* Shrinks an in-use span to `pages`, freeing its tail. */
static bool shrink_locked(struct page_heap *heap, struct xmm_chunk *chunk, struct xmm_span *span,
                          size_t pages)
{
    char *tail_start = span->start + (pages << XMM_PAGE_SHIFT);
    struct xmm_span *tail = make_free_span(heap, tail_start, span->pages - pages, XMM_PAGES_DIRTY);
    if (!tail)
        return false;
    __atomic_fetch_sub(&large_tally_here(heap)->bytes, xmm_span_bytes(tail), __ATOMIC_RELAXED);
    span->pages = (uint32_t)pages;
    xmm_chunk_set_pages(span, true); /* its last page moved */
    free_locked(heap, chunk, tail, xmm_os_now_ns());
    return true;
}

/* Grows an in-use span to `pages` from a free right-hand neighbour, or from
 * the chunk's uncut pages when the span ends where cutting stopped. */
static bool grow_locked(struct page_heap *heap, struct xmm_chunk *chunk, struct xmm_span *span,
                        size_t pages)
{
    size_t extra = pages - span->pages;
    char *end = span->start + xmm_span_bytes(span);
    struct xmm_span *after = free_neighbour(heap, chunk, span, true);
    if (after && after->pages >= extra) {
        list_remove(heap, after);
        if (after->pages > extra) {
            after->start += extra << XMM_PAGE_SHIFT;
            after->pages -= (uint32_t)extra;
            xmm_chunk_set_pages(after, true);
            list_insert(heap, after);
        } else {
            retire_descriptor(heap, after);
        }
    } else if (heap->current == chunk &&
               end == chunk->region.base + (heap->next_page << XMM_PAGE_SHIFT) &&
               heap->next_page + extra <= chunk->pages) {
        note_cut(heap, pages, extra);
    } else {
        return false;
    }
    span->pages = (uint32_t)pages;
    __atomic_fetch_add(&large_tally_here(heap)->bytes, extra << XMM_PAGE_SHIFT, __ATOMIC_RELAXED);
    xmm_chunk_set_pages(span, false);
    return true;
}

bool xmm_page_heap_resize(struct xmm_span *span, size_t pages)
{
    if (pages == 0 || pages > XMM_CHUNK_SPAN_MAX_PAGES)
        return false;
    /* Claimed for the resize: a free racing with it (a program bug) fails
     * its own claim and is reported, instead of caching or freeing a span
     * whose length is changing. */
    uint8_t in_use = XMM_SPAN_LARGE;
    if (!__atomic_compare_exchange_n(&span->kind, &in_use, XMM_SPAN_RESIZING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return false;
    bool resized = true;
    if (pages != span->pages) {
        struct page_heap *heap = &heaps[span->node];
        struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(span->start);
        if (heap_lock(heap)) {
            resized = pages < span->pages ? shrink_locked(heap, chunk, span, pages)
                                          : grow_locked(heap, chunk, span, pages);
            heap_unlock(heap);
        } else {
            resized = false; /* a signal handler inside the lock: realloc moves */
        }
    }
    __atomic_store_n(&span->kind, XMM_SPAN_LARGE, __ATOMIC_RELEASE);
    return resized;
}

struct xmm_span *xmm_page_heap_cut_front(struct xmm_span *run, size_t pages)
{
    xmm_assert(pages > 0 && pages < run->pages);
    struct page_heap *heap = &heaps[run->node];
    if (!heap_lock(heap))
        return NULL;
    struct xmm_span *span = new_descriptor(heap);
    if (span) {
        span->start = run->start;
        span->pages = (uint32_t)pages;
        span->dirty = run->dirty;
        span->sample = NULL;
        __atomic_store_n(&span->kind, XMM_SPAN_LARGE, __ATOMIC_RELEASE);
        run->start += pages << XMM_PAGE_SHIFT;
        run->pages -= (uint32_t)pages;
        /* The run's other pages map to it already. */
        xmm_chunk_set_pages(span, false);
    }
    heap_unlock(heap);
    return span;
}

void xmm_page_heap_free_unwritten(struct xmm_span *span)
{
    struct page_heap *heap = &heaps[span->node];
    if (!holds_resident(span) && heap_lock(heap)) {
        free_clean_locked(heap, (struct xmm_chunk *)xmm_region_of(span->start), span,
                          xmm_os_now_ns());
        heap_unlock(heap);
        return;
    }
    /* Dirty pages, or a signal handler inside the lock: an ordinary free
     * (deferred to the lock's holder if need be), claimed straight from
     * RUN, so that a stray free() of the span's start never sees a large
     * block in between. */
    uint8_t run = XMM_SPAN_RUN;
    bool claimed = __atomic_compare_exchange_n(&span->kind, &run, XMM_SPAN_CACHED, false,
                                               __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    xmm_assert(claimed);
    (void)claimed;
    free_and_purge(span);
}

/* ---- purge ---------------------------------------------------------------------- */

/* The part of a free span to purge. On small pages: all of it. On a chunk
 * backed by huge pages, routine decay purges only the whole 2 MiB pages
 * inside the span, so that it never splits a huge page that still holds
 * live data; pages idle for four decay periods (and an explicit trim) are
 * returned in full, since by then splitting is worth the memory. */
static bool purge_range(const struct xmm_span *span, bool full, char **start, size_t *length)
{
    *start = span->start;
    *length = xmm_span_bytes(span);
    struct xmm_region *region = xmm_region_of(span->start);
    if (full || !region || !__atomic_load_n(&region->huge, __ATOMIC_RELAXED))
        return true;
    if (span->dirty == XMM_PAGES_INTERIOR_PURGED)
        return false;
    uintptr_t first = xmm_align_up((uintptr_t)span->start, HUGE_PAGE_SIZE);
    uintptr_t end = ((uintptr_t)span->start + *length) & ~(uintptr_t)(HUGE_PAGE_SIZE - 1);
    if (end <= first)
        return false;
    *start = (char *)first;
    *length = end - first;
    return true;
}

/* A listed free span whose pages all went back: no longer resident, so it
 * moves to the purged lists. */
static void mark_purged(struct page_heap *heap, struct xmm_span *span)
{
    list_remove(heap, span);
    /* MADV_FREE leaves the old bytes until the kernel needs the memory:
     * purged, but calloc must still clear it. */
    span->dirty = xmm_config.purge_lazy ? XMM_PAGES_PURGED_NOT_ZERO : XMM_PAGES_CLEAN;
    join_neighbours(heap, (struct xmm_chunk *)xmm_region_of(span->start), span, false);
    list_insert(heap, span);
}

/* Purges the part of `span` (listed, resident) that purge_range gives
 * (`full`: all of it). Caller holds the lock. Returns the bytes purged. */
static size_t purge_span(struct page_heap *heap, struct xmm_span *span, bool full)
{
    char *start;
    size_t length;
    if (!purge_range(span, full, &start, &length) ||
        xmm_arena_purge((struct xmm_chunk *)xmm_region_of(span->start), start, length) != 0)
        return 0;
    heap->purged_bytes += length;
    if (length == xmm_span_bytes(span)) {
        mark_purged(heap, span);
    } else {
        /* Still counted dirty: its ends may be resident, and calloc
         * must not assume zeroes. */
        span->dirty = XMM_PAGES_INTERIOR_PURGED;
    }
    return length;
}

/* Purges resident free spans, oldest first, until `pages` pages went back
 * or no more than `keep_pages` stay resident. `full`: whole spans; else,
 * on a chunk of huge pages, only the whole huge pages inside each span
 * (purge_range), as decay does: purging part of one puts the chunk on
 * small pages for good (arena.h), and `frag`, whose heap the purge before
 * growth cut into such parts once its slack was 32 MiB, faulted 2.5 times
 * as often and took three times the user time on TLB misses. Caller holds
 * the lock. Returns the pages purged. */
static size_t purge_for_growth(struct page_heap *heap, size_t pages, size_t keep_pages, bool full)
{
    size_t purged = 0, visits = 0;
    struct xmm_span *span = heap->oldest;
    while (span && purged < pages && heap->dirty_pages > keep_pages) {
        struct xmm_span *newer = span->newer;
        size_t bytes = purge_span(heap, span, full);
        if (bytes == 0 && !full) {
            /* No whole huge page inside: to the back, so that the next
             * walk starts with others; and a bounded walk, since a heap
             * of many short spans on huge pages would be walked whole at
             * every growth. */
            resident_unlink(heap, span);
            resident_append(heap, span);
            if (++visits == GROWTH_PURGE_MAX_SKIPPED)
                break;
        }
        purged += bytes >> XMM_PAGE_SHIFT;
        span = newer;
    }
    return purged;
}

size_t xmm_page_heap_purge_oldest(int node, size_t bytes)
{
    struct page_heap *heap = &heaps[node];
    if (!heap_lock(heap))
        return 0;
    size_t pages =
        purge_for_growth(heap, xmm_align_up(bytes, XMM_PAGE_SIZE) >> XMM_PAGE_SHIFT, 0, true);
    heap_unlock(heap);
    return pages << XMM_PAGE_SHIFT;
}

/* Purges the spans of one resident list free for a decay period (all of
 * them if `everything`); those free for four, in full. */
static void purge_list(struct page_heap *heap, struct xmm_span *span, uint64_t now,
                       bool everything)
{
    uint64_t decay_ns = xmm_decay_period_ns();
    for (struct xmm_span *next; span; span = next) {
        next = span->next; /* mark_purged moves the span to another list */
        uint64_t age = now > span->freed_at_ns ? now - span->freed_at_ns : 0;
        if (holds_resident(span) && (everything || age >= decay_ns))
            purge_span(heap, span, everything || age >= 4 * decay_ns);
    }
}

/* ---- giving chunks back --------------------------------------------------------- */

/* True if every page of `chunk` is in a free span of this heap's epoch
 * that has been free for `min_age_ns` at least. Free spans map their first
 * page, so the walk goes span by span. */
static bool chunk_is_free(const struct page_heap *heap, const struct xmm_chunk *chunk,
                          uint64_t now, uint64_t min_age_ns)
{
    for (size_t page = XMM_CHUNK_FIRST_PAGE; page < chunk->pages;) {
        const struct xmm_span *span = chunk->page_span[page];
        if (!span || __atomic_load_n(&span->kind, __ATOMIC_ACQUIRE) != XMM_SPAN_FREE ||
            span->epoch != heap->epoch || span->pages == 0 ||
            span->start != chunk->region.base + (page << XMM_PAGE_SHIFT) ||
            span->freed_at_ns > now || now - span->freed_at_ns < min_age_ns)
            return false;
        page += span->pages;
    }
    return true;
}

/* Takes every free span of a wholly free chunk off the lists and gives the
 * chunk's address space back to the kernel. */
static void release_chunk(struct page_heap *heap, struct xmm_chunk *chunk)
{
    for (size_t page = XMM_CHUNK_FIRST_PAGE; page < chunk->pages;) {
        struct xmm_span *span = chunk->page_span[page];
        page += span->pages;
        /* Resident pages go back with the mapping: they count as purged. */
        if (holds_resident(span))
            heap->purged_bytes += xmm_span_bytes(span);
        list_remove(heap, span);
        retire_descriptor(heap, span);
    }
    heap->chunk_bytes -= xmm_region_mapped_bytes(&chunk->region);
    xmm_arena_release_chunk(chunk);
}

/* Releases the heap's wholly free chunks (not the one being cut) that have
 * been free for `min_age_ns`. Caller holds the lock. Returns the bytes. */
static size_t release_free_chunks(struct page_heap *heap, uint64_t now, uint64_t min_age_ns)
{
    size_t released = 0;
    struct xmm_chunk **link = &heap->chunks;
    while (*link) {
        struct xmm_chunk *chunk = *link;
        if (chunk == heap->current || !chunk_is_free(heap, chunk, now, min_age_ns)) {
            link = &chunk->next_in_heap;
            continue;
        }
        *link = chunk->next_in_heap;
        released += chunk->region.size;
        release_chunk(heap, chunk);
    }
    return released;
}

size_t xmm_page_heap_release_chunks(uint64_t min_age_ns)
{
    size_t released = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        struct page_heap *heap = &heaps[node];
        if (!heap_lock(heap))
            continue;
        released += release_free_chunks(heap, xmm_os_now_ns(), min_age_ns);
        heap_unlock(heap);
    }
    return released;
}

/* Decay: pages free for the decay period are purged (their memory goes
 * back); whole chunks free for four periods are unmapped (their address
 * space goes back too, which a process under `ulimit -v` may need for its
 * next large block). */
static void purge_decayed(struct page_heap *heap, uint64_t now, bool everything)
{
    __atomic_store_n(&heap->last_purge_ns, now, __ATOMIC_RELAXED);
    release_free_chunks(heap, now, everything ? 0 : 4 * xmm_decay_period_ns());
    if (heap->dirty_pages == 0)
        return;
    for (size_t list = 0; list <= EXACT_LISTS; list++)
        purge_list(heap, heap->free_lists[1][list], now, everything);
}

void xmm_page_heap_maintain(int node, uint64_t now_ns)
{
    struct page_heap *heap = &heaps[node];
    /* One caller per period takes the lock; the others go on. */
    if (!xmm_turn_due(&heap->last_purge_ns, now_ns, xmm_upkeep_period_ns()))
        return;
    if (!heap_lock(heap))
        return;
    purge_decayed(heap, now_ns, false);
    heap_unlock(heap);
}

size_t xmm_page_heap_purge(bool everything)
{
    size_t total = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        struct page_heap *heap = &heaps[node];
        if (!heap_lock(heap))
            continue;
        size_t before = heap->purged_bytes;
        purge_decayed(heap, xmm_os_now_ns(), everything);
        total += heap->purged_bytes - before;
        heap_unlock(heap);
    }
    return total;
}

/* ---- statistics and fork ------------------------------------------------------------ */

void xmm_page_heap_note_large(int node, size_t bytes, bool requested)
{
    struct large_tally *tally = large_tally_here(&heaps[node]);
    __atomic_fetch_add(&tally->bytes, bytes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&tally->count, 1, __ATOMIC_RELAXED);
    if (requested)
        __atomic_fetch_add(&tally->allocations, 1, __ATOMIC_RELAXED);
}

void xmm_page_heap_note_large_free(int node, size_t bytes, bool requested)
{
    struct large_tally *tally = large_tally_here(&heaps[node]);
    __atomic_fetch_sub(&tally->bytes, bytes, __ATOMIC_RELAXED);
    if (requested) /* release: a sum that sees this free sees its allocation */
        __atomic_fetch_add(&tally->frees, 1, __ATOMIC_RELEASE);
}

/* The large tally's sums into `stats`. Lock-free. The shards are read one
 * after another while other CPUs update them: a block allocated in a
 * shard already read and freed in one not yet read would make the sum of
 * bytes negative for that moment, so it is summed signed and clamped at
 * 0 (exact when no thread allocates); frees are read before allocations,
 * so that they never exceed them. */
static void large_tally_sum(struct page_heap *heap, struct xmm_page_heap_stats *stats)
{
    int64_t bytes = 0;
    for (unsigned shard = 0; shard < LARGE_TALLY_SHARDS; shard++) {
        const struct large_tally *tally = &heap->large[shard];
        bytes += (int64_t)__atomic_load_n(&tally->bytes, __ATOMIC_RELAXED);
        stats->large_frees += __atomic_load_n(&tally->frees, __ATOMIC_ACQUIRE);
    }
    for (unsigned shard = 0; shard < LARGE_TALLY_SHARDS; shard++) {
        const struct large_tally *tally = &heap->large[shard];
        stats->large_count += __atomic_load_n(&tally->count, __ATOMIC_RELAXED);
        stats->large_allocations += __atomic_load_n(&tally->allocations, __ATOMIC_RELAXED);
    }
    stats->large_in_use = bytes > 0 ? (size_t)bytes : 0;
}

void xmm_page_heap_stats(int node, struct xmm_page_heap_stats *stats)
{
    struct page_heap *heap = &heaps[node];
    memset(stats, 0, sizeof(*stats));
    large_tally_sum(heap, stats); /* needs no lock: also from a signal handler */
    if (!heap_lock(heap))
        return; /* a signal handler inside the lock: no page figures */
    stats->free_bytes = heap->free_pages << XMM_PAGE_SHIFT;
    stats->dirty_bytes = heap->dirty_pages << XMM_PAGE_SHIFT;
    stats->purged_total = heap->purged_bytes;
    stats->reserved_bytes = heap->chunk_bytes;
    stats->reserved_peak_bytes = heap->chunk_bytes_peak;
    stats->descriptor_bytes = heap->descriptor_pages << XMM_PAGE_SHIFT;
    heap_unlock(heap);
}

/* A fork child whose heap lock was held by a thread that is gone: that
 * thread was half-way through an update of the free lists, the chunk being
 * cut or the spare descriptors, so none of them can be trusted. They are
 * set aside, not repaired: the heap starts empty under a new epoch, its
 * free pages and the uncut rest of its chunk leak in the child, and spans
 * in use (which the lost thread was not touching) stay valid and come back
 * through free as usual. A span freed later never coalesces with a free
 * neighbour of the old epoch (free_neighbour), whose list links belong to
 * the old lists. Counters of pages keep their totals in the parent's
 * sense; only what the empty lists hold is reset. */
void xmm_page_heap_after_fork_child(void)
{
    for (int node = 0; node < xmm_nodes; node++) {
        struct page_heap *heap = &heaps[node];
        if (xmm_lock_holder(&heap->lock) != XMM_LOCK_HELD_BY_OTHER)
            continue;
        heap->epoch++;
        memset(heap->free_lists, 0, sizeof(heap->free_lists));
        heap->oldest = heap->newest = NULL;
        heap->current = NULL;
        heap->next_page = 0;
        heap->held_pages = 0;
        heap->spare_descriptors = NULL;
        heap->free_pages = 0;
        heap->dirty_pages = 0;
        xmm_lock_reset(&heap->lock);
    }
}
