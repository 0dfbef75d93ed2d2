/*
 * page_heap.h - per-node heap of allocator pages: spans for the central
 * layer and for large allocations, split on demand, coalesced on free, and
 * returned to the kernel after the decay period (XMM_DECAY_MS).
 *
 * Each node's heap has one lock. It is taken on span-sized events only
 * (a new span for a size class, a large allocation or free), never per
 * small object.
 */
#ifndef XMM_PAGE_HEAP_H
#define XMM_PAGE_HEAP_H

#include "base/base.h"
#include "ds/ds.h"

/* Allocates a span of `pages` allocator pages from `node`, whose start is
 * aligned to `alignment` bytes (a power of two; XMM_PAGE_SIZE or less means
 * no constraint). The span's pages all map to it; `dirty` says whether it
 * may hold non-zero bytes. NULL if the kernel refuses memory even after
 * wholly free chunks were given back. A free span that fits is used
 * first, one whose pages may be resident before a purged one (of any
 * length). When the RSS grows (a purged span faulted in, fresh pages cut,
 * perhaps a new chunk mapped), free pages still resident beyond
 * XMM_PAGE_HEAP_GROWTH_SLACK are purged first, oldest first, at least as
 * many as it grows by. */
struct xmm_span *xmm_page_heap_alloc(int node, size_t pages, size_t alignment);

/* Free pages kept resident while the heap grows (per node): up to this,
 * the RSS grows without purging free ones (page_heap.c says why this
 * much). */
#define XMM_PAGE_HEAP_GROWTH_SLACK ((size_t)32 << 20)

/* Like xmm_page_heap_alloc (no alignment), but takes up to `max_pages`:
 * of the free span that serves the request (the smallest of at least
 * `pages` whose pages may be resident, else the smallest purged or never
 * written one), or, when none does, `max_pages` fresh pages. For a carver
 * run: the rests of runs, too short for the span their carver wanted
 * next, are free spans of a few pages that nothing wrote, and are cut
 * again rather than left beside fresh pages (on a chunk backed by huge
 * pages, they are resident all the same). A `max_pages` below `pages`
 * counts as `pages`, one above XMM_CHUNK_SPAN_MAX_PAGES as that bound. */
struct xmm_span *xmm_page_heap_alloc_upto(int node, size_t pages, size_t max_pages);
/* Like xmm_page_heap_alloc, without the retry after giving chunks back. */
struct xmm_span *xmm_page_heap_try_alloc(int node, size_t pages, size_t alignment);

/* Like xmm_page_heap_alloc, but only from free spans whose pages may still
 * be resident: NULL, and nothing cut, mapped or faulted in, when none
 * fits. For callers that can give resident pages back (the central
 * layer's empty spans) before the RSS grows. */
struct xmm_span *xmm_page_heap_alloc_resident(int node, size_t pages, size_t alignment);

/* Like xmm_page_heap_alloc_resident (no alignment), but takes up to
 * `max_pages` of the smallest resident free span of at least `pages`: for
 * a carver run, which then reuses holes shorter than a whole run. */
struct xmm_span *xmm_page_heap_alloc_resident_upto(int node, size_t pages, size_t max_pages);

/* Purges `node`'s free pages that are still resident, whole spans, oldest
 * first, until at least `bytes` went back (or none is left): before a
 * block is mapped for itself, so that memory freed by one size of blocks
 * is not kept beside new memory for another. Returns the bytes purged. */
size_t xmm_page_heap_purge_oldest(int node, size_t bytes);

/* Unmaps every chunk of every node whose pages have all been free for at
 * least `min_age_ns` (except the chunk each node is cutting from): the
 * address space goes back to the kernel, not only the memory. Returns the
 * bytes unmapped. Takes each node's lock in turn. */
size_t xmm_page_heap_release_chunks(uint64_t min_age_ns);

/* Returns a span (small or large, no longer referenced) to its node's heap.
 * Claims it first by a CAS of its kind out of SMALL or LARGE: false, and
 * nothing done, if it was not in use (free, cached, being resized: a double
 * free of a large block). Large blocks are accounted by the caller
 * (xmm_page_heap_note_large_free). Free spans of resident pages and long
 * ones of purged pages stay apart (page_heap.c, joins), so the heap knows
 * which it hands out. */
bool xmm_page_heap_free(struct xmm_span *span);

/* Returns a span its caller already claimed (kind XMM_SPAN_CACHED, see
 * large_cache.h) to its node's heap. */
void xmm_page_heap_free_claimed(struct xmm_span *span);

/* Cuts the first `pages` pages off `run`, an in-use span its caller owns
 * and longer than `pages`, as a span of their own: in use (kind
 * XMM_SPAN_LARGE, which the caller refines), with `run`'s node and
 * `dirty`; `run` keeps the pages after them. NULL, and `run` unchanged,
 * when no descriptor can be had or a signal handler interrupted this
 * thread inside the node's lock. For the central layer's carver runs: a
 * CPU's small spans cut one after another from pages of its own. */
struct xmm_span *xmm_page_heap_cut_front(struct xmm_span *run, size_t pages);
/* Only the run's owner calls it: nothing else writes a run's start and
 * length (free_neighbour reads them under the lock, after seeing its kind
 * is not FREE). */

/* Returns `span`, in use and owned by the caller, whose pages nobody
 * wrote since the page heap handed them out: they keep the `dirty` state
 * they had then (clean pages stay out of the resident counts and are not
 * purged again). For the rest of a carver run. */
void xmm_page_heap_free_unwritten(struct xmm_span *span);

/* Resizes an in-use large span in place to `pages`: shrinking frees its
 * tail; growing takes the free pages right after it (or uncut pages of its
 * chunk). false if that is not possible, or if the span is not in use (a
 * racing free claimed it); the span is then unchanged. While resizing, its
 * kind is XMM_SPAN_RESIZING, so a racing free fails its claim. */
bool xmm_page_heap_resize(struct xmm_span *span, size_t pages);

/* Returns to the kernel the free pages of every node that have been free
 * longer than the decay period (all of them if `everything`). Returns the
 * bytes purged. */
size_t xmm_page_heap_purge(bool everything);

/* Purges `node`'s decayed pages if the last purge is more than
 * XMM_DECAY_MS/2 old: for paths that do not enter the page heap (the large
 * cache), so that decay keeps pace with them. `now_ns`: the caller's read
 * of xmm_os_now_ns(). */
void xmm_page_heap_maintain(int node, uint64_t now_ns);

struct xmm_page_heap_stats {
    size_t free_bytes;       /* free pages, purged or not */
    size_t dirty_bytes;      /* free pages not yet purged */
    size_t purged_total;     /* bytes purged since start */
    size_t large_in_use;     /* bytes in large allocations */
    size_t large_cached;     /* freed large blocks kept for reuse (filled by stats.c) */
    uint64_t large_count;    /* large allocations made, sampled small requests too */
    uint64_t large_allocations; /* the program's large requests */
    uint64_t large_frees;    /* their frees */
    size_t reserved_bytes;   /* chunks mapped for this node */
    size_t reserved_peak_bytes; /* the most they ever were */
    size_t descriptor_bytes; /* free pages made span descriptors when the
                                kernel refused metadata a mapping */
};

/* Accounts a large allocation of `bytes` on `node`, and its free, in the
 * calling CPU's shard (no line shared with other CPUs). `requested`: a
 * large request of the program's, not a small one served as pages for the
 * heap profiler. Any thread, lock-free. */
void xmm_page_heap_note_large(int node, size_t bytes, bool requested);
void xmm_page_heap_note_large_free(int node, size_t bytes, bool requested);

void xmm_page_heap_stats(int node, struct xmm_page_heap_stats *stats);

/* Creates every node's heap (after xmm_numa_init). 0 or -1. */
int xmm_page_heap_init(void);

/* In a fork child: sets aside each node's heap whose lock was held by a
 * thread that is gone (see fork.c). */
void xmm_page_heap_after_fork_child(void);

#endif
