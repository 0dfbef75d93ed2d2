/*
 * backend/ - layer 3: memory from the kernel, by node. The address map,
 * chunks and direct mappings (arena.h), allocator metadata (metadata.h),
 * NUMA topology and binding (numa.h), the per-node page heap of spans
 * (page_heap.h), the cache of large spans (large_cache.h). Depends on ds/
 * and base/.
 *
 * This header is the layer's interface: files outside backend/ include it,
 * never the headers it includes.
 */
#ifndef XMM_BACKEND_H
#define XMM_BACKEND_H

#include "arena.h"
#include "large_cache.h"
#include "metadata.h"
#include "numa.h"
#include "page_heap.h"

#endif
