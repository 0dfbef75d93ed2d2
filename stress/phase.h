/*
 * phase.h - one pattern run by every worker thread: the shared state of
 * the phase and each worker's private state.
 */
#ifndef STRESS_PHASE_H
#define STRESS_PHASE_H

#include "integrity.h"
#include "latency.h"
#include "options.h"
#include "ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct phase;

#define UNLIMITED_BUDGET UINT64_MAX

/* Owned by one thread. The published_* fields are copies the monitor
 * reads for the progress line. */
struct worker {
    int id;
    struct phase *phase;
    uint64_t rng;
    uint64_t serial;            /* allocations so far, part of each seed */
    uint64_t alloc_budget;      /* UNLIMITED_BUDGET: until the phase stops */
    uint64_t allocs;            /* blocks obtained: malloc, calloc, ... realloc */
    uint64_t frees;
    uint64_t checked;           /* blocks whose pattern was verified */
    int64_t live_bytes;         /* allocated minus freed by this thread */
    unsigned malloc_tick, free_tick, realloc_tick;
    struct histogram malloc_ns, free_ns, realloc_ns;
    uint64_t loop_end_ns;       /* when the timed loop ended */
    pthread_t thread;
    _Alignas(64) _Atomic uint64_t published_allocs;
    _Atomic int64_t published_live_bytes;
    _Atomic bool finished;
};

struct phase {
    const struct stress_options *options;
    enum pattern_id pattern;
    unsigned thread_count;
    uint64_t live_bytes_per_thread;
    double mean_size;           /* of options->sizes */
    uint64_t start_ns;
    atomic_bool stop;           /* time is up, a failure, or Ctrl-C */
    atomic_bool corrupt_now;    /* --corrupt: the next allocation corrupts */
    bool corrupt_enabled;       /* --corrupt and not yet done in this run */
    /* producer-consumer: producers are threads [0, producer_count). */
    unsigned producer_count;
    atomic_uint producers_done;
    /* producer-consumer: ring i is fed by producer i; server: ring i is
     * fed by thread i and drained by thread (i + 1) % thread_count. */
    struct block_ring *rings;
    unsigned ring_count;
    struct worker *workers;
    const int *cpus;            /* --pin: allowed CPUs */
    unsigned cpu_count;
    pthread_barrier_t start_line;
};

/* Whether the worker's loop should go on: no stop, budget left. */
static inline bool worker_running(const struct worker *worker)
{
    if (atomic_load_explicit(&worker->phase->stop, memory_order_relaxed))
        return false;
    return worker->allocs < worker->alloc_budget;
}

/* Instrumented allocator calls. Each validates what the allocator did
 * (alignment, usable size, zeroing, preserved contents, the pattern before
 * a free) and returns false after recording a failure, in which case the
 * block is left alone: after a corruption nothing is freed. */
bool worker_alloc(struct worker *worker, size_t size, struct block *block);
bool worker_free(struct worker *worker, struct block *block);
bool worker_realloc(struct worker *worker, struct block *block, size_t new_size);

/* Whether --corrupt has overwritten a byte yet in this run. */
bool corruption_was_injected(void);

#endif
