/*
 * large_cache.h - recently freed large blocks, kept by size for exact reuse.
 *
 * A program that frees and allocates large blocks of the same size (I/O
 * buffers, vectors, per-request arenas) would take its node's page heap lock
 * twice per round and rewrite the block's page map entries each time. The
 * cache keeps freed blocks of up to XMM_LARGE_CACHE_MAX_BYTES on lock-free
 * stacks, one per page count and node: a hit is one stack pop, and the
 * block's page map entries still name its span.
 *
 * A cached span has kind XMM_SPAN_CACHED: for free() it is already freed (a
 * second free is reported), for the page heap it is in use (never
 * coalesced). Each size keeps about XMM_LARGE_CACHE_SLOT_BYTES (at least one
 * block); sizes not taken for one upkeep period go back to the page heap,
 * where decay applies; and a large allocation that misses gives the whole
 * node's cache back to the page heap first, so that cached blocks coalesce
 * and serve it rather than stay resident beside new pages (the cache is for
 * exact reuse).
 * Sits beside the central layer: it calls only the page heap.
 */
#ifndef XMM_LARGE_CACHE_H
#define XMM_LARGE_CACHE_H

#include "base/base.h"
#include "ds/ds.h"

#define XMM_LARGE_CACHE_MAX_BYTES ((size_t)2 << 20)
#define XMM_LARGE_CACHE_SLOT_BYTES ((size_t)4 << 20)

/* Sets up every node's cache (after xmm_numa_init). 0 or -1. */
int xmm_large_cache_init(void);

/* The free of a large block claims its span: one CAS of its kind from
 * XMM_SPAN_LARGE to XMM_SPAN_CACHED. false if the span was not in use (a
 * double free, or a free racing a resize): the caller reports it. Of two
 * racing frees, exactly one claims. */
bool xmm_large_cache_claim(struct xmm_span *span);

/* Keeps a claimed span for reuse. false if it is not kept (above 2 MiB, or
 * its size's slot is full): the caller gives it to the page heap with
 * xmm_page_heap_free_claimed. */
bool xmm_large_cache_keep(struct xmm_span *span);

/* A cached span of exactly `pages` pages on `node`, now XMM_SPAN_LARGE and
 * dirty, or NULL. Lock-free. */
struct xmm_span *xmm_large_cache_take(int node, size_t pages);

/* Whether `node`'s cache may hold spans (a hint, cheap to read; false means
 * empty unless a put is in progress). */
bool xmm_large_cache_maybe_holds(int node);

/* Bytes cached on `node`, approximately (for statistics). */
size_t xmm_large_cache_bytes(int node);

/* Gives every span cached on `node` back to the page heap. Returns bytes. */
size_t xmm_large_cache_flush(int node);

/* Upkeep, at most every XMM_DECAY_MS/2: sizes nobody took since the last
 * pass go back to the page heap. `now_ns`: the caller's read of
 * xmm_os_now_ns(). */
void xmm_large_cache_maintain(int node, uint64_t now_ns);

#endif
