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

/* Prepares the tick's interval draw for xmm_tick_mean() (phase 1 of init,
 * after the configuration is read, before the first tick). */
void xmm_upkeep_init(void);

/* The next interval of a tick's countdown, in bytes: exponential with mean
 * xmm_tick_mean() (a Poisson process over the bytes a thread requests, as
 * TCMalloc's sampler draws them), at least 1 and at most 20 means, to
 * within 2e-6 of the mean. `state`: the caller's xorshift generator
 * (nonzero), advanced. After xmm_upkeep_init. */
int64_t xmm_upkeep_draw_interval(uint64_t *state);

/* The time-gated maintenance of one node's layers. Any thread. */
void xmm_upkeep_node(int node);

/* The allocation tick: a thread counts down the bytes of its small
 * requests, even all cache hits, from an interval drawn at random with mean
 * xmm_tick_mean() (XMM_TICK_BYTES, or the heap profiler's interval when
 * XMM_PROFILE is on); the request that crosses zero runs the tick. The tick
 * runs its node's upkeep (without it, a program whose allocations all hit
 * the caches after a burst of frees would never return that memory: no
 * slow path runs), and samples the request for the statistics: the
 * sampling of bytes as a Poisson process, TCMalloc's heap sampler's, with
 * each sample standing for 1 / (1 - e^(-size / mean)) requests of its
 * class. That is how the statistics count operations with no counter on
 * the hit path (docs/statistics.md). The same crossings are the heap
 * profiler's samples (profile.h). The fast path pays a TLS subtract and a
 * branch.
 *
 * The mean is 1 MiB (TCMalloc samples every 2 MiB, jemalloc's profiler
 * every 512 KiB). A tick costs about 25 ns (the countdown's branch
 * mispredicts once a tick: the intervals are random; then the draw and
 * the sample); going from 256 KiB to 1 MiB took 2.3 ns off a 32 KiB
 * malloc+free pair and 0.5 ns off a 4 KiB one, measured side by side
 * (bench/analysis.md, "the allocation tick"). Four times fewer samples double the estimates' relative error
 * for the same volume (docs/statistics.md). */
#define XMM_TICK_BYTES ((int64_t)1 << 20)

/* Under XMM_FREE_CHECK=deferred a thread's countdown word holds the bytes
 * to its tick minus XMM_TICK_BIAS, so that it is below zero at every
 * request: each malloc then leaves the inline path for the ticked one
 * (alloc.c), whose hand-out clears the block's pending mark, and the
 * inline path tests no option, as free's tests none (free_limit,
 * size_class.h). The tick takes the bias off before it compares. */
#define XMM_TICK_BIAS ((int64_t)1 << 62)

_Static_assert(20 * (int64_t)XMM_PROFILE_MAX_INTERVAL + 1 < ((int64_t)1 << 61),
               "a biased countdown restarts inside the biased range (at most 20 means)");

/* True when the countdown holds the bias and has not crossed it: the
 * request's tick is not due, under XMM_FREE_CHECK=deferred. Read from the
 * word alone (one add and a compare, no option): a biased countdown lies
 * in [-2^62, -2^61) until it crosses; an unbiased one (the default mode,
 * or a thread's first request under either) never goes below -2^61. */
XMM_INLINE bool xmm_upkeep_biased_not_due(void)
{
    return (uint64_t)(xmm_thread.tick_countdown + XMM_TICK_BIAS) < ((uint64_t)1 << 61);
}

/* The mean interval in force: XMM_TICK_BYTES, or XMM_PROFILE's interval.
 * Fixed at init (phase 1, before the first tick). */
XMM_INLINE int64_t xmm_tick_mean(void)
{
    return xmm_config.profile_interval ? (int64_t)xmm_config.profile_interval : XMM_TICK_BYTES;
}

/* What one sample of `size` bytes stands for, with intervals of mean
 * `mean`: 1 / (1 - e^(-size / mean)) requests of that size (a request is
 * sampled with probability 1 - e^(-size / mean)). */
double xmm_sample_weight(size_t size, int64_t mean);

/* `size`: the request that crossed the mark (a small one). true when the
 * heap profiler is on and the request is to be sampled (it is not on a
 * thread's first tick, which only starts its countdown). Under the bias
 * (above) most calls have not crossed it: false at once. */
bool xmm_upkeep_tick(size_t size);

/* A small request of `size` bytes made outside the inline fast path:
 * counted toward the tick the same way. true: sample it (as above). No
 * call while the bias holds (XMM_FREE_CHECK=deferred, tick not due). */
XMM_INLINE bool xmm_upkeep_count_request(size_t size)
{
    if (XMM_UNLIKELY((xmm_thread.tick_countdown -= (int64_t)size) < 0) &&
        !xmm_upkeep_biased_not_due())
        return xmm_upkeep_tick(size);
    return false;
}

/* A large request (above XMM_MAX_SMALL_SIZE), when the heap profiler is on:
 * counted down with the small ones, so that large blocks are sampled at
 * the same rate per byte. true: sample it. No statistics, no upkeep (the
 * large path runs its own). */
bool xmm_upkeep_count_large(size_t size);

/* What the ticks sampled for `size_class`: estimated requests and bytes. */
void xmm_upkeep_sampled(unsigned size_class, uint64_t *requests, uint64_t *bytes);

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

/* Before a block is mapped for itself (`size` bytes on `node`): the
 * node's unused memory goes back to the page heap (xmm_central_reclaim),
 * and at least `size` bytes of free pages still resident are purged,
 * oldest first (this node's, then others'), so that a phase of very large
 * blocks does not add to the memory an earlier phase freed. */
void xmm_upkeep_before_direct_map(int node, size_t size);

/* The decay thread runs every node's upkeep each upkeep period, so that a
 * program that stops calling malloc still gives memory back. It is
 * started (XMM_BACKGROUND):
 *   auto (default)  once the arena chunks pass XMM_BACKGROUND_HEAP_BYTES,
 *                   from an allocation slow path (the tick, a large
 *                   allocation) that holds no XMM lock, in a thread that
 *                   blocks no signal with a handler (so not from a signal
 *                   handler), not in a vfork child. A small program (ls, true) never
 *                   gets a thread.
 *   1               at init (phase 2);
 *   0               never: upkeep runs on allocation paths only.
 * A fork child has no thread: under auto and 1 it starts its own by the
 * auto rule (1: whatever the heap's size).
 * xmm_upkeep_start_background is init phase 2's part. */
#define XMM_BACKGROUND_HEAP_BYTES ((size_t)64 << 20)
void xmm_upkeep_start_background(void);
/* The rule's check, on slow paths: one load unless the thread is pending. */
void xmm_upkeep_consider_background(void);
/* Whether the thread has been started in this process (tests). */
bool xmm_upkeep_background_started(void);
/* Init's fork handler: the child has no thread. */
void xmm_upkeep_after_fork_child(void);

/* Starts a service thread (`body`, with NULL; the threads that serve
 * XMM_STATS_SIGNAL and XMM_PROFILE_SIGNAL: a handler only posts an event,
 * the thread waits for it and writes the report). true if it runs or
 * waits to (the caller installs its handler): a thread that cannot start
 * (a process limit, clone refused) is reported once and tried again as a
 * fork child's are, and a report asked for meanwhile is written at exit
 * at the latest. false: no room. A fork
 * child has none of its parent's threads: it starts each service again,
 * by the decay thread's rule (from a slow path, not in a vfork child, not
 * from a thread that blocks the service's own signal), so that a child that only execs or
 * sandboxes itself (unshare needs a single thread) gets no thread. A
 * signal that comes before waits in its event. At most two services. */
bool xmm_upkeep_start_service(void *(*body)(void *));

/* After setsid: a fork child starts the services it has not started yet
 * (xmm_upkeep_start_service) now, by their rule, rather than at an
 * allocation slow path that a daemon settling down may never make. */
void xmm_upkeep_session_started(void);

/* Whether XMM's threads should end now, because the program's have: main
 * called pthread_exit and every other thread left is one of XMM's. glibc
 * ends such a process (exit(0), atexit handlers included) when its last
 * thread returns; XMM's threads never returned and block every signal, so
 * the process stayed for good and only SIGKILL ended it. Each of XMM's
 * threads asks this at least once a second (/proc/self/stat, at most once
 * a second for the process) and returns once it is true. Not in a fork
 * child whose threads have not started again. */
bool xmm_upkeep_threads_should_end(void);
/* How long a service thread waits for its event before it asks. */
#define XMM_SERVICE_POLL_NS 1000000000ull

/* A service thread's body: serves each post of `event` with serve(), until
 * XMM's threads are to end. */
void xmm_upkeep_serve(struct xmm_os_event *event, void (*serve)(void));

#endif
