/*
 * heap.h - the allocator's core entry points, shared by the public API
 * (api.c) and the malloc override (override.c).
 */
#ifndef XMM_HEAP_H
#define XMM_HEAP_H

#include "common.h"

/* Allocation on the calling CPU's node (node -1) or on `node`. NULL with
 * errno ENOMEM on failure. */
void *xmm_heap_alloc(size_t size);
void *xmm_heap_alloc_zeroed(size_t size);
void *xmm_heap_alloc_aligned(size_t alignment, size_t size, int node);
void *xmm_heap_alloc_on_node(size_t size, int node);
void *xmm_heap_realloc(void *ptr, size_t size);

/* Free of any block; `who` names the caller in error messages. */
void xmm_heap_free(void *ptr);

/* Usable size; 0 for NULL; reports an invalid pointer. */
size_t xmm_heap_usable_size(const void *ptr);

/* Home node, or -1 if XMM did not hand out `ptr`. */
int xmm_heap_node_of(const void *ptr);

/* Process-wide counters kept outside the front end (atomic, slow paths). */
struct xmm_heap_counters {
    uint64_t large_allocations;
    uint64_t direct_allocations;
    uint64_t direct_bytes;
    uint64_t large_frees;
    uint64_t direct_frees;
    uint64_t invalid_frees;
    uint64_t failed_allocations;
};
extern struct xmm_heap_counters xmm_heap_counters;

#endif
