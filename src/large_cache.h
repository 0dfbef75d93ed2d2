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
 * where decay applies; and before the page heap grows, the whole node's
 * cache goes back to it, so cached blocks never make the heap map memory.
 * Sits beside the central layer: it calls only the page heap.
 */
#ifndef XMM_LARGE_CACHE_H
#define XMM_LARGE_CACHE_H

#include "common.h"
#include "span.h"

#define XMM_LARGE_CACHE_MAX_BYTES ((size_t)2 << 20)
#define XMM_LARGE_CACHE_SLOT_BYTES ((size_t)4 << 20)

/* Sets up every node's cache (after xmm_numa_init). 0 or -1. */
int xmm_large_cache_init(void);

/* Keeps a just-freed large span (kind XMM_SPAN_LARGE, not aligned beyond a
 * page) for reuse. false if it is not kept: too big, its size's slot is
 * full, or the span is not in use (a double free; the caller's page heap
 * free then reports it). */
bool xmm_large_cache_put(struct xmm_span *span);

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
 * pass go back to the page heap. */
void xmm_large_cache_maintain(int node);

#endif
