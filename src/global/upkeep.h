/*
 * upkeep.h - keeping every layer in shape: the one module that runs the
 * layers' maintenance (central batches and empty spans, the large cache,
 * page heap decay and chunk release), whoever asks: the allocation tick,
 * a large allocation, the background thread, xmm_release_memory and
 * malloc_trim.
 *
 * Each layer's maintenance is gated by its own timestamp (one caller per
 * xmm_upkeep_period_ns), so calling xmm_upkeep_node often costs a clock
 * read and three compares.
 */
#ifndef XMM_UPKEEP_H
#define XMM_UPKEEP_H

#include "base/base.h"

/* The time-gated maintenance of one node's layers. Any thread. */
void xmm_upkeep_node(int node);

/* Upkeep tick: every XMM_UPKEEP_PERIOD allocations a thread makes, even all
 * cache hits, it runs the upkeep of its node. Without it, a program whose
 * allocations all hit the caches after a burst of frees would never return
 * that memory (no slow path runs). A TLS decrement and a branch on the
 * fast path. */
#define XMM_UPKEEP_PERIOD 4096
extern __thread int xmm_upkeep_countdown __attribute__((tls_model("initial-exec")));
void xmm_upkeep_tick(void);

/* Gives back everything unused now: every cache, batch, empty span, the
 * large caches, every free page (purged) and wholly free chunk (unmapped).
 * Returns the bytes purged. xmm_release_memory and malloc_trim. */
size_t xmm_upkeep_release_all(void);

/* Moves cached objects to the central layer: every CPU's cache (per-CPU
 * mode) or the calling thread's (per-thread). xmm_release_cpu_caches. */
void xmm_upkeep_release_caches(void);

/* Gives back what can be given without touching the caches (large caches,
 * wholly free chunks): when the kernel refused address space. true if an
 * address range was given back. */
bool xmm_upkeep_release_address_space(void);

/* XMM_BACKGROUND=1: starts the decay thread (init phase 2), which runs
 * every node's upkeep each upkeep period while the program is idle.
 * Otherwise upkeep runs on allocation paths only. */
void xmm_upkeep_start_background(void);

#endif
