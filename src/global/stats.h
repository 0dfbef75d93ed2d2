/*
 * stats.h - statistics on demand, summed from per-cache and per-node
 * counters; printed into a fixed buffer and written with write(2).
 */
#ifndef XMM_STATS_H
#define XMM_STATS_H

#include "base/base.h"
#include "ds/ds.h"

struct xmm_stats;

/* Fills a full snapshot (the public struct). */
void xmm_stats_collect(struct xmm_stats *stats);

/* Prints to `fd` in "text" or "json". 0, or -1 for an unknown format. */
int xmm_stats_write(int fd, const char *format);

/* The program's name, as core_pattern's %e: the kernel's (/proc/self/comm,
 * at most 15 bytes), else the last part of argv[0]; '/' becomes '!'. */
void xmm_program_name(char *name, size_t size);

/* `pattern` with %p (process id), %e (program name) and %% (a '%') put in
 * `path`; false if it does not fit in `size` bytes. Never allocates. */
bool xmm_expand_path(const char *pattern, char *path, size_t size);

/* XMM_STATS at exit, XMM_STATS_SIGNAL; from init phase 2. */
void xmm_stats_install_hooks(void);

/* XMM_VERBOSE: nodes, CPUs per node, front end. */
void xmm_stats_print_topology(void);

/* Process-wide counters kept outside the front end (atomic, slow paths). */
/* (Large blocks are counted by the page heap, in shards by CPU.) */
struct xmm_heap_counters {
    uint64_t direct_allocations;
    uint64_t direct_bytes;
    uint64_t direct_frees;
    uint64_t failed_allocations;
    uint64_t direct_peak_count;     /* the most direct blocks live at once */
    uint64_t direct_peak_bytes;     /* the most bytes they held at once */
    /* Small requests the heap profiler sampled, each served as pages of
     * its own (alloc.c, alloc_sampled), still live, by size class: live
     * objects of their class that no cache or span holds. */
    uint64_t sampled_small_live[XMM_CLASS_COUNT];
};
extern XMM_HIDDEN struct xmm_heap_counters xmm_heap_counters;

/* Counts a direct block mapped (`blocks` 1) or resized in place (0) by
 * `bytes` more: the live figures and their peaks (malloc_stats' "max mmap"
 * lines). */
void xmm_heap_count_direct(uint64_t blocks, uint64_t bytes);

/* Init's fork handler: the child forgets the parent's pending request. */
void xmm_stats_after_fork_child(void);

#endif
