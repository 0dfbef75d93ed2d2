/*
 * cache_stats.h - what a front end's caches tell the statistics without
 * counting their hits (the hit paths write no counter: docs/statistics.md).
 * Shared by both kinds of cache (cpu_cache.h, thread_cache.h).
 */
#ifndef XMM_CACHE_STATS_H
#define XMM_CACHE_STATS_H

#include "base/base.h"
#include "ds/ds.h"

struct xmm_front_stats {
    uint64_t cached_objects[XMM_CLASS_COUNT];   /* free objects in caches now */
    uint64_t slow_allocations[XMM_CLASS_COUNT]; /* served by a miss path */
    uint64_t slow_frees[XMM_CLASS_COUNT];       /* taken by an overflow or home path */
    uint64_t cached_bytes;
    uint64_t refills, drains, cross_node_frees;
    uint64_t thread_caches;
    uint64_t rseq_restarts;           /* aborted critical sections */
};
#endif
