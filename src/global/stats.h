/*
 * stats.h - statistics on demand, summed from per-cache and per-node
 * counters; printed into a fixed buffer and written with write(2).
 */
#ifndef XMM_STATS_H
#define XMM_STATS_H

#include "base/base.h"

struct xmm_stats;

/* Fills a full snapshot (the public struct). */
void xmm_stats_collect(struct xmm_stats *stats);

/* Prints to `fd` in "text" or "json". 0, or -1 for an unknown format. */
int xmm_stats_write(int fd, const char *format);

/* XMM_STATS at exit, XMM_STATS_SIGNAL; from init phase 2. */
void xmm_stats_install_hooks(void);

/* XMM_VERBOSE: nodes, CPUs per node, front end. */
void xmm_stats_print_topology(void);

#endif
