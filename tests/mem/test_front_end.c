/*
 * The front end under hostile scheduling, through malloc/free (run with
 * libxmm.so preloaded or linked):
 *   migrate   threads hop between CPUs with sched_setaffinity while they
 *             allocate and free;
 *   preempt   8x more threads than cores hammer one size class;
 *   signals   a 10 kHz setitimer storm interrupts critical sections, and
 *             the signal handler itself allocates;
 * each while blocks also travel between threads (cross-thread frees).
 * Every block is filled with a pattern from its address and size, checked
 * before it is freed; a side table of live addresses catches a block
 * handed out twice; a global count catches a lost one.
 *
 * Usage: test_front_end MODE SECONDS EXPECT
 *   EXPECT per-cpu:    the rseq fast path must have been taken;
 *   EXPECT per-thread: it must not have been (XMM_RSEQ=0, no rseq).
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define WORKING_SET 512
#define HANDOFF_SLOTS 1024
/* Live blocks are tracked exactly, one flag and one size per 8-byte unit of
 * a 1 GiB window around the heap (reserved, touched only where blocks
 * are); a block outside it is counted and left untracked. */
#define WINDOW_BYTES ((uintptr_t)1 << 30)
#define WINDOW_UNITS (WINDOW_BYTES / 8)

static _Atomic unsigned char *live;
static uint32_t *block_size; /* written by the block's owner only */
static uintptr_t window_base;
static atomic_long live_blocks, duplicates, corruptions, operations, untracked;
static atomic_int stop;
static _Atomic(void *) handoff[HANDOFF_SLOTS];
static int cpu_count;
static const char *mode;

static void *reserve(size_t bytes)
{
    /* Far below the heap (a hint, not MAP_FIXED), so that XMM's chunks,
     * which the kernel places top-down, stay next to each other. */
    static uintptr_t hint = (uintptr_t)1 << 44;
    void *memory = mmap((void *)hint, bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    hint += bytes;
    return memory;
}

static void setup_window(void)
{
    live = reserve(WINDOW_UNITS);
    block_size = reserve(WINDOW_UNITS * sizeof(uint32_t));
    /* XMM's chunks are mapped top-down, from the first one on: the window
     * reaches from just above the first block to 1 GiB below. */
    void *first = malloc(64);
    window_base = ((uintptr_t)first & ~(uintptr_t)((1 << 21) - 1)) + ((uintptr_t)64 << 20) -
                  WINDOW_BYTES;
    free(first);
}

/* The unit of `block`, or -1 outside the window. */
static long slot_of(void *block)
{
    uintptr_t address = (uintptr_t)block;
    if (address < window_base || address - window_base >= WINDOW_BYTES) {
        atomic_fetch_add(&untracked, 1);
        return -1;
    }
    return (long)((address - window_base) / 8);
}

static unsigned char pattern_byte(void *block, size_t size, size_t i)
{
    return (unsigned char)(((uintptr_t)block >> 4) ^ size ^ (i * 131));
}

static void fill(void *block, size_t size)
{
    unsigned char *bytes = block;
    for (size_t i = 0; i < size; i++)
        bytes[i] = pattern_byte(block, size, i);
}

static void *take_block(size_t size)
{
    void *block = malloc(size);
    if (!block)
        return NULL;
    long slot = slot_of(block);
    if (slot >= 0) {
        unsigned char expected = 0;
        if (!atomic_compare_exchange_strong(&live[slot], &expected, 1))
            atomic_fetch_add(&duplicates, 1);
        block_size[slot] = (uint32_t)size;
    }
    atomic_fetch_add(&live_blocks, 1);
    fill(block, size);
    return block;
}

static void give_block(void *block)
{
    long slot = slot_of(block);
    if (slot >= 0) {
        size_t size = block_size[slot];
        unsigned char *bytes = block;
        for (size_t i = 0; i < size; i++)
            if (bytes[i] != pattern_byte(block, size, i)) {
                atomic_fetch_add(&corruptions, 1);
                break;
            }
        atomic_store(&live[slot], 0);
    }
    atomic_fetch_sub(&live_blocks, 1);
    free(block);
}

static size_t pick_size(unsigned *seed)
{
    *seed = *seed * 1103515245 + 12345;
    if (!strcmp(mode, "preempt"))
        return 48; /* one class for everyone */
    unsigned r = *seed >> 8;
    if (r % 64 == 0)
        return 16384 + r % 70000;
    return 1 + r % 600;
}

static void hop_cpu(unsigned *seed)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)((*seed >> 10) % (unsigned)cpu_count), &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void *worker(void *argument)
{
    unsigned seed = (unsigned)(uintptr_t)argument * 7919u + 17;
    void *blocks[WORKING_SET] = {0};
    size_t sizes[WORKING_SET] = {0};
    long done = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        unsigned index = (seed >> 4) % WORKING_SET;
        if (blocks[index])
            give_block(blocks[index]);
        sizes[index] = pick_size(&seed);
        blocks[index] = take_block(sizes[index]);
        /* Cross-thread: swap a block with the hand-off table. */
        if ((seed >> 12) % 4 == 0 && blocks[index]) {
            unsigned slot = (seed >> 14) % HANDOFF_SLOTS;
            void *theirs = atomic_exchange(&handoff[slot], blocks[index]);
            if (theirs)
                give_block(theirs); /* allocated by another thread */
            blocks[index] = NULL;
        }
        if (!strcmp(mode, "migrate") && done % 64 == 0)
            hop_cpu(&seed);
        done++;
    }
    for (unsigned i = 0; i < WORKING_SET; i++)
        if (blocks[i])
            give_block(blocks[i]);
    atomic_fetch_add(&operations, done);
    return NULL;
}

/* The signal handler allocates too (not async-signal-safe in general; XMM
 * must still not lose or duplicate a block when a handler interrupts a
 * critical section of the same thread). */
static void on_timer(int signal_number)
{
    (void)signal_number;
    void *block = malloc(40);
    if (block) {
        memset(block, 0x5a, 40);
        free(block);
    }
}

static void start_signal_storm(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_timer;
    action.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &action, NULL);
    struct itimerval timer = {{0, 100}, {0, 100}}; /* 10 kHz */
    setitimer(ITIMER_REAL, &timer, NULL);
}

int main(int argc, char **argv)
{
    mode = argc > 1 ? argv[1] : "preempt";
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    const char *expect = argc > 3 ? argv[3] : NULL;
    cpu_count = (int)sysconf(_SC_NPROCESSORS_ONLN);
    setup_window();
    int threads = cpu_count * (strcmp(mode, "preempt") ? 4 : 8);
    if (!strcmp(mode, "signals"))
        start_signal_storm();
    pthread_t ids[1024];
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    struct timespec pause = {(time_t)seconds, (long)((seconds - (long)seconds) * 1e9)};
    while (nanosleep(&pause, &pause) != 0)
        ;
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (unsigned slot = 0; slot < HANDOFF_SLOTS; slot++) {
        void *block = atomic_exchange(&handoff[slot], NULL);
        if (block)
            give_block(block);
    }

    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    printf("%s: %d threads on %d CPUs, %ld operations, front end %s, %llu rseq operations, "
           "%llu restarts, %llu thread-cache operations\n",
           mode, threads, cpu_count, atomic_load(&operations), stats.front_end,
           (unsigned long long)stats.rseq_fast_path, (unsigned long long)stats.rseq_restarts,
           (unsigned long long)stats.rseq_fallback);
    CHECK(atomic_load(&operations) > 1000, "work was done");
    CHECK(atomic_load(&duplicates) == 0, "%ld blocks handed out twice", atomic_load(&duplicates));
    CHECK(atomic_load(&corruptions) == 0, "%ld blocks corrupted", atomic_load(&corruptions));
    CHECK(atomic_load(&live_blocks) == 0, "%ld blocks unaccounted", atomic_load(&live_blocks));
    CHECK(atomic_load(&untracked) * 100 <= atomic_load(&operations),
          "%ld block operations outside the tracked window", atomic_load(&untracked));
    if (expect && !strcmp(expect, "per-cpu")) {
        CHECK(!strcmp(stats.front_end, "per-cpu"), "front end is %s", stats.front_end);
        CHECK(stats.rseq_fast_path > (uint64_t)atomic_load(&operations),
              "the rseq fast path served most operations (%llu)",
              (unsigned long long)stats.rseq_fast_path);
    } else if (expect && !strcmp(expect, "per-thread")) {
        CHECK(!strcmp(stats.front_end, "per-thread"), "front end is %s", stats.front_end);
        CHECK(stats.rseq_fast_path == 0 && stats.rseq_fallback > 0, "thread caches were used");
    }
    /* Everything is free: draining every cache must leave no object
     * outside the central layer but what this thread and libc still hold. */
    xmm_release_memory();
    xmm_stats_get(&stats);
    CHECK(stats.bytes_cached < (1u << 20), "caches drained (%llu bytes left)",
          (unsigned long long)stats.bytes_cached);
    return check_summary(mode);
}
