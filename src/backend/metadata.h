/*
 * metadata.h - memory for the allocator's own bookkeeping.
 *
 * Span descriptors, chunk page maps, transfer batches and thread caches
 * live here, in mappings separate from user memory: a buffer overflow in a
 * user block cannot reach them (but for span descriptors made of a chunk's
 * free pages when the kernel refuses metadata a mapping: page_heap.c,
 * descriptors_from_page). Metadata is never unmapped, which is what
 * makes stale reads by lock-free readers safe (see docs/design.md).
 */
#ifndef XMM_METADATA_H
#define XMM_METADATA_H

#include "base/base.h"

/* Returns `size` zeroed bytes aligned to `alignment` (<= 4096), or NULL if
 * the kernel refuses memory. Takes a lock: for slow paths only. */
void *xmm_metadata_alloc(size_t size, size_t alignment);

/* True when the calling thread holds the metadata lock (a signal handler
 * that interrupted xmm_metadata_alloc): an allocation fails then without
 * the kernel having refused anything. */
bool xmm_metadata_reentered(void);

/* Bytes of metadata mapped so far. */
size_t xmm_metadata_bytes(void);

/* In a fork child: if a thread that is gone held the lock, drops the block
 * it was cutting from and frees the lock (see fork.c). */
void xmm_metadata_after_fork_child(void);

#endif
