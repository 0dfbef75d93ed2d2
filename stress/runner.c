/*
 * runner.c - starting the workers of each phase, watching them (progress
 * line, timing, --corrupt trigger, Ctrl-C) and collecting their results.
 */
#include "runner.h"
#include "clock.h"
#include "harness_memory.h"
#include "patterns.h"
#include "phase.h"
#include "procfs.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MONITOR_TICK_NS 10000000ull        /* 10 ms: timing precision */
#define PROGRESS_EVERY_NS 250000000ull     /* redraw 4 times a second */
#define RING_CAPACITY 1024
#define WORKER_STACK_BYTES ((size_t)1 << 20)
/* --corrupt strikes this far into the phase, once the heap is busy. */
#define CORRUPT_AT_FRACTION 0.2

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signal_number)
{
    (void)signal_number;
    interrupted = 1;
}

/* What the progress line needs to know about the whole run. */
struct progress {
    bool shown;                 /* stderr is a terminal */
    unsigned phase_index, phase_count;
    uint64_t run_start_ns;
    double run_seconds;         /* 0 when --ops */
    uint64_t run_ops, ops_before_phase;
    uint64_t last_ns, last_allocs;
};

/* ---- CPUs for --pin ------------------------------------------------------- */

static int allowed_cpus[CPU_SETSIZE];
static unsigned allowed_cpu_count;

static void find_allowed_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &set))
            allowed_cpus[allowed_cpu_count++] = cpu;
}

static void pin_worker(const struct worker *worker)
{
    const struct phase *phase = worker->phase;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(phase->cpus[(unsigned)worker->id % phase->cpu_count], &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0 && worker->id == 0)
        fprintf(stderr, "xmm-stress: --pin: sched_setaffinity: %s\n", strerror(errno));
}

/* ---- workers -------------------------------------------------------------- */

static void *worker_main(void *argument)
{
    struct worker *worker = argument;
    struct phase *phase = worker->phase;
    if (phase->options->pin && phase->cpu_count)
        pin_worker(worker);
    pthread_barrier_wait(&phase->start_line);
    run_pattern(worker);
    atomic_store_explicit(&worker->finished, true, memory_order_release);
    return NULL;
}

/* Splits `ops` allocations over the threads that allocate. */
static uint64_t allocation_budget(const struct phase *phase, uint64_t ops, unsigned id)
{
    unsigned allocators = phase->pattern == PATTERN_PRODUCER_CONSUMER ? phase->producer_count
                                                                      : phase->thread_count;
    if (phase->options->ops == 0)
        return UNLIMITED_BUDGET;
    if (id >= allocators)
        return 0;
    return ops / allocators + (id < ops % allocators ? 1 : 0);
}

static void init_worker(struct phase *phase, struct worker *worker, int id, uint64_t ops)
{
    worker->id = id;
    worker->phase = phase;
    worker->rng = phase->options->seed * 0x2545F4914F6CDD1Dull + (uint64_t)(id + 1) * 7919 +
                  (uint64_t)phase->pattern * 104729;
    worker->alloc_budget = id == MAIN_THREAD_ID ? 0 : allocation_budget(phase, ops, (unsigned)id);
}

static void start_workers(struct phase *phase)
{
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, WORKER_STACK_BYTES);
    for (unsigned i = 0; i < phase->thread_count; i++) {
        int error = pthread_create(&phase->workers[i].thread, &attributes, worker_main,
                                   &phase->workers[i]);
        if (error) {
            fprintf(stderr, "xmm-stress: cannot start thread %u: %s\n", i, strerror(error));
            exit(1);
        }
    }
    pthread_attr_destroy(&attributes);
}

/* ---- the phase's shared state ----------------------------------------------- */

static void setup_phase(struct phase *phase, const struct stress_options *options,
                        enum pattern_id pattern, uint64_t ops)
{
    memset(phase, 0, sizeof *phase);
    phase->options = options;
    phase->pattern = pattern;
    phase->thread_count = options->threads;
    phase->live_bytes_per_thread = options->live_bytes / options->threads;
    phase->mean_size = sizes_mean(&options->sizes);
    phase->corrupt_enabled = options->corrupt;
    phase->producer_count = (options->threads + 1) / 2;
    phase->cpus = allowed_cpus;
    phase->cpu_count = allowed_cpu_count;
    phase->ring_count = pattern == PATTERN_SERVER ? phase->thread_count
                        : pattern == PATTERN_PRODUCER_CONSUMER ? phase->producer_count : 0;
    phase->rings = harness_map(phase->ring_count * sizeof *phase->rings);
    for (unsigned i = 0; i < phase->ring_count; i++)
        ring_init(&phase->rings[i], RING_CAPACITY);
    phase->workers = harness_map(phase->thread_count * sizeof *phase->workers);
    for (unsigned i = 0; i < phase->thread_count; i++)
        init_worker(phase, &phase->workers[i], (int)i, ops);
    pthread_barrier_init(&phase->start_line, NULL, phase->thread_count + 1);
}

static void teardown_phase(struct phase *phase)
{
    for (unsigned i = 0; i < phase->ring_count; i++)
        ring_destroy(&phase->rings[i]);
    harness_unmap(phase->rings, phase->ring_count * sizeof *phase->rings);
    harness_unmap(phase->workers, phase->thread_count * sizeof *phase->workers);
    pthread_barrier_destroy(&phase->start_line);
}

/* ---- watching the phase ------------------------------------------------------ */

static uint64_t published_allocs(const struct phase *phase, int64_t *live_bytes)
{
    uint64_t allocs = 0;
    int64_t live = 0;
    for (unsigned i = 0; i < phase->thread_count; i++) {
        allocs += atomic_load_explicit(&phase->workers[i].published_allocs, memory_order_relaxed);
        live += atomic_load_explicit(&phase->workers[i].published_live_bytes, memory_order_relaxed);
    }
    *live_bytes = live;
    return allocs;
}

static bool all_finished(const struct phase *phase)
{
    for (unsigned i = 0; i < phase->thread_count; i++)
        if (!atomic_load_explicit(&phase->workers[i].finished, memory_order_acquire))
            return false;
    return true;
}

static void format_remaining(const struct progress *progress, uint64_t allocs_done, double rate,
                             double elapsed, char *text, size_t size)
{
    double remaining = -1;
    if (progress->run_seconds > 0)
        remaining = progress->run_seconds - elapsed;
    else if (rate > 0 && progress->run_ops > allocs_done)
        remaining = (double)(progress->run_ops - allocs_done) / rate;
    if (remaining < 0)
        snprintf(text, size, "?");
    else
        snprintf(text, size, "%.1f s", remaining);
}

static void draw_progress(const struct phase *phase, struct progress *progress, uint64_t now)
{
    int64_t live_bytes;
    uint64_t allocs = published_allocs(phase, &live_bytes);
    double interval = ns_to_seconds(now - progress->last_ns);
    double rate = interval > 0 ? (double)(allocs - progress->last_allocs) / interval : 0;
    double elapsed = ns_to_seconds(now - progress->run_start_ns);
    char remaining[32];
    format_remaining(progress, progress->ops_before_phase + allocs, rate, elapsed, remaining,
                     sizeof remaining);
    fprintf(stderr, "\r[%u/%u %s] %.2f M allocs/s  live %.1f MiB  RSS %.1f MiB  "
            "elapsed %.1f s, remaining %s\033[K", progress->phase_index + 1, progress->phase_count,
            pattern_names[phase->pattern], rate / 1e6, (double)live_bytes / 1048576.0,
            (double)current_rss_bytes() / 1048576.0, elapsed, remaining);
    progress->last_ns = now;
    progress->last_allocs = allocs;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec pause = { .tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u) };
    nanosleep(&pause, NULL);
}

/* Waits for the phase to end (deadline, budgets spent, failure, Ctrl-C),
 * drawing progress and pulling the --corrupt trigger on the way. */
static void watch_phase(struct phase *phase, double seconds, struct progress *progress)
{
    uint64_t deadline = phase->start_ns + (uint64_t)(seconds * 1e9);
    uint64_t corrupt_at = phase->start_ns + (uint64_t)(seconds * CORRUPT_AT_FRACTION * 1e9);
    uint64_t next_draw = phase->start_ns + PROGRESS_EVERY_NS;
    progress->last_ns = phase->start_ns;
    progress->last_allocs = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (interrupted || run_failed() || (seconds > 0 && now >= deadline) || all_finished(phase))
            break;
        if (seconds > 0 && phase->corrupt_enabled && now >= corrupt_at)
            atomic_store_explicit(&phase->corrupt_now, true, memory_order_relaxed);
        if (progress->shown && now >= next_draw) {
            draw_progress(phase, progress, now);
            next_draw = now + PROGRESS_EVERY_NS;
        }
        sleep_ns(MONITOR_TICK_NS);
    }
    atomic_store_explicit(&phase->stop, true, memory_order_relaxed);
}

/* ---- results ------------------------------------------------------------------ */

/* Blocks still in rings when the workers stopped: checked and freed by the
 * main thread, so every block is verified once. */
static void drain_leftovers(struct phase *phase, struct worker *main_worker)
{
    for (unsigned i = 0; i < phase->ring_count; i++)
        drain_ring(main_worker, &phase->rings[i], SIZE_MAX);
}

static void add_worker(struct phase_result *result, const struct worker *worker)
{
    result->allocs += worker->allocs;
    result->frees += worker->frees;
    result->checked += worker->checked;
    histogram_merge(&result->malloc_ns, &worker->malloc_ns);
    histogram_merge(&result->free_ns, &worker->free_ns);
    histogram_merge(&result->realloc_ns, &worker->realloc_ns);
}

static void collect(struct phase *phase, const struct worker *main_worker,
                    struct phase_result *result)
{
    uint64_t end_ns = phase->start_ns;
    memset(result, 0, sizeof *result);
    result->pattern = phase->pattern;
    result->threads = phase->thread_count;
    for (unsigned i = 0; i < phase->thread_count; i++) {
        add_worker(result, &phase->workers[i]);
        if (phase->workers[i].loop_end_ns > end_ns)
            end_ns = phase->workers[i].loop_end_ns;
    }
    add_worker(result, main_worker);
    result->seconds = ns_to_seconds(end_ns - phase->start_ns);
    result->completed = !run_failed() && !interrupted;
    result->peak_rss_kib = peak_rss_kib();
}

static void run_phase(const struct stress_options *options, enum pattern_id pattern,
                      double seconds, uint64_t ops, struct progress *progress,
                      struct phase_result *result)
{
    static struct phase phase;
    static struct worker main_worker;
    setup_phase(&phase, options, pattern, ops);
    memset(&main_worker, 0, sizeof main_worker);
    init_worker(&phase, &main_worker, MAIN_THREAD_ID, 0);
    reset_peak_rss();
    start_workers(&phase);
    pthread_barrier_wait(&phase.start_line);
    phase.start_ns = now_ns();
    watch_phase(&phase, seconds, progress);
    for (unsigned i = 0; i < phase.thread_count; i++)
        pthread_join(phase.workers[i].thread, NULL);
    drain_leftovers(&phase, &main_worker);
    collect(&phase, &main_worker, result);
    teardown_phase(&phase);
}

static void catch_interrupts(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

void run_all(const struct stress_options *options, struct run_result *result)
{
    unsigned count = options->pattern_count;
    struct progress progress = {
        .shown = isatty(STDERR_FILENO),
        .phase_count = count,
        .run_start_ns = now_ns(),
        .run_seconds = options->seconds,
        .run_ops = options->ops,
    };
    find_allowed_cpus();
    catch_interrupts();
    result->options = options;
    result->seed = options->seed;
    for (unsigned i = 0; i < count && !run_failed() && !interrupted; i++) {
        uint64_t phase_ops = options->ops ? options->ops / count + (i < options->ops % count) : 0;
        progress.phase_index = i;
        run_phase(options, options->patterns[i], options->seconds / count, phase_ops, &progress,
                  &result->phases[i]);
        progress.ops_before_phase += result->phases[i].allocs;
        result->phase_count = i + 1;
    }
    result->interrupted = interrupted;
    if (progress.shown)
        fputs("\r\033[K", stderr);
}
