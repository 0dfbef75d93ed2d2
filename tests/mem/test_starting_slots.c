/*
 * test_starting_slots - every bin of a per-CPU slab starts in the slab's
 * first slots, shared by all bins, and moves to slots of its own the first
 * time it needs more (src/mem/cpu_cache.c, move_out; the section is
 * xmm_rseq_move_bin). A slab's pages are memory once written, so a
 * program that uses many classes a little keeps a few pages of slots, not
 * one page per class.
 *
 *   footprint  one pinned thread mallocs and frees 3 blocks of each of
 *              about 50 sizes from 8 B to 28 KiB: its slab has at most
 *              the starting slots' pages resident, plus one (before: one
 *              page per class used, 50 or more)
 *   moves      200 mallocs of 64 B move their bin at a refill of a whole
 *              batch; the 200 frees and mallocs after them need no drain
 *              or refill and return the same blocks. 20 blocks of 720 B
 *              freed in a row move their bin at the free that finds its
 *              starting slots full (16 objects copied), and every cached
 *              block comes back once
 *   release    malloc_trim puts every bin back in its starting slots,
 *              empty, and the next rounds move the bins again
 *   large      17 blocks of each of five sizes from 20 to 256 KiB, freed
 *              and taken again, by default and with XMM_CPU_CACHE_SIZE=1m:
 *              a bin never caches more than its first capacity, and no
 *              block is handed out twice or too small
 *   stress     4 threads (more than this machine's cores: preempted
 *              inside moves) cycle 40 blocks of each of six sizes, every
 *              block tagged and checked before its free, while the main
 *              thread trims every millisecond, so that bins move, are
 *              locked, drained, put back and move again under them
 *   signals    a timer every 30 us interrupts one thread with a handler
 *              that mallocs and frees blocks of the class the thread is
 *              moving (the handler's sections commit while the thread's
 *              move restarts); the thread trims every other round so
 *              that the bin moves again: no block is handed out twice
 *
 * Skipped (77) without per-CPU caches.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "check.h"
#include "stats_snapshot.h"
#include "mem/cpu_cache.h"
#include "slab_index.h"
#include "slab_map.h"
#include "trim_stress.h"
#include "xmm.h"

/* One past the last starting slot, and the pages they lie on. */
#define STARTING_END (XMM_SLAB_FIRST_SLOT + (XMM_CPU_BIN_COUNT - 1) * XMM_CPU_STARTING_SLOTS)
#define STARTING_PAGES ((STARTING_END * 8 + 4095) / 4096)

static uint64_t *slab_of_this_thread(void)
{
    int index = slab_index();
    CHECKQ(index >= 0 && slabs != NULL, "the slab of this thread (index %d) is found", index);
    return index >= 0 && slabs ? slab_at(index) : NULL;
}

static int resident_pages(const uint64_t *slab)
{
    return slab ? slab_resident((int)(((const char *)slab - slabs) / SLAB_BYTES)) : -1;
}

/* Bins of `slab` in their own slots now. */
static int bins_moved(const uint64_t *slab)
{
    int moved = 0;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        uint64_t header = __atomic_load_n(&slab[bin], __ATOMIC_RELAXED);
        uint64_t begin = header >> XMM_SLAB_BEGIN_SHIFT;
        moved += begin >= STARTING_END && begin != 0xffff; /* 0xffff: locked */
    }
    return moved;
}

static void pin_to_current_cpu(void)
{
    int cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu < 0 ? 0 : cpu, &set);
    CHECKQ(sched_setaffinity(0, sizeof set, &set) == 0, "pinned to CPU %d", cpu);
}

static void footprint_case(void)
{
    uint64_t *slab = slab_of_this_thread();
    int before = resident_pages(slab), sizes = 0;
    for (size_t size = 8; size <= 28 * 1024; size += size / 8 > 8 ? (size / 8) & ~(size_t)7 : 8) {
        void *blocks[3];
        for (int i = 0; i < 3; i++) {
            blocks[i] = malloc(size);
            CHECKQ(blocks[i] != NULL, "malloc(%zu)", size);
            if (blocks[i])
                memset(blocks[i], 0x5a, size < 16 ? size : 16);
        }
        for (int i = 0; i < 3; i++)
            free(blocks[i]);
        sizes++;
    }
    int after = resident_pages(slab);
    NOTE("%d sizes; slab pages resident: %d before, %d after (starting slots: %d pages)", sizes,
         before, after, (int)STARTING_PAGES);
    CHECK(sizes >= 45, "blocks of %d sizes were cached", sizes);
    CHECK(after >= 1 && after <= (int)STARTING_PAGES + 1,
          "the slab keeps them in at most %d pages (%d)", (int)STARTING_PAGES + 1, after);
    CHECK(bins_moved(slab) <= 1, "at most one bin left its starting slots (%d)",
          bins_moved(slab));
}

#define MOVED_BLOCKS 200
static void *moved[MOVED_BLOCKS];

/* True if each of `taken` (count) is one of `expected` (count), each
 * matched once: a block handed out twice, or a slot the move did not
 * copy, fails. */
static bool same_blocks(void *const *taken, void **expected, int count)
{
    int same = 0;
    for (int i = 0; i < count; i++)
        for (int j = 0; j < count; j++)
            if (taken[i] && taken[i] == expected[j]) {
                expected[j] = NULL;
                same++;
                break;
            }
    return same == count;
}

/* A move at a refill: MOVED_BLOCKS mallocs of 64 B refill whole batches
 * (32 objects) once the slow start is over, which do not fit in the
 * starting slots; the bin moves, empty. Then the frees of all of them
 * and as many mallocs need no drain or refill, and return the same
 * blocks. */
static void refill_move(const char *when)
{
    uint64_t *slab = slab_of_this_thread();
    int moved_before = bins_moved(slab);
    for (int i = 0; i < MOVED_BLOCKS; i++) {
        moved[i] = malloc(64);
        CHECKQ(moved[i] != NULL, "malloc(64)");
    }
    CHECK(bins_moved(slab) == moved_before + 1,
          "%s: the mallocs of 64 B moved their bin to its own slots (%d bins there, %d before)",
          when, bins_moved(slab), moved_before);
    struct xmm_stats before = snapshot();
    for (int i = 0; i < MOVED_BLOCKS; i++)
        free(moved[i]);
    struct xmm_stats freed = snapshot();
    CHECK(freed.cache_drains == before.cache_drains,
          "%s: %d frees of 64 B drained nothing (%llu drains)", when, MOVED_BLOCKS,
          (unsigned long long)(freed.cache_drains - before.cache_drains));
    CHECK(freed.bytes_cached - before.bytes_cached == MOVED_BLOCKS * 64,
          "%s: all %d blocks are cached (%llu bytes more)", when, MOVED_BLOCKS,
          (unsigned long long)(freed.bytes_cached - before.bytes_cached));
    void *again[MOVED_BLOCKS];
    for (int i = 0; i < MOVED_BLOCKS; i++)
        again[i] = malloc(64);
    struct xmm_stats taken = snapshot();
    CHECK(same_blocks(again, moved, MOVED_BLOCKS),
          "%s: the %d mallocs after them returned the same blocks", when, MOVED_BLOCKS);
    CHECK(taken.cache_refills == freed.cache_refills, "%s: without a refill (%llu)", when,
          (unsigned long long)(taken.cache_refills - freed.cache_refills));
    for (int i = 0; i < MOVED_BLOCKS; i++)
        free(again[i]);
}

/* A move at a free, with its starting slots full: FREE_MOVE_BLOCKS
 * mallocs of a class nothing else uses leave the rest of the slow start's
 * refills in the bin (1 + 2 + 4 + 8 + 16 objects taken, 11 left), within
 * its starting slots; the frees fill them, and the sixth moves the 16
 * objects there. Every cached object then comes back once, without a
 * refill: a slot the move did not copy would hand out a stale pointer
 * or none. */
#define FREE_MOVE_BLOCKS 20
#define FREE_MOVE_SIZE 720

static void free_move(const char *when)
{
    uint64_t *slab = slab_of_this_thread();
    uint64_t cached_before = snapshot().bytes_cached;
    int moved_before = bins_moved(slab);
    void *blocks[FREE_MOVE_BLOCKS];
    for (int i = 0; i < FREE_MOVE_BLOCKS; i++) {
        blocks[i] = malloc(FREE_MOVE_SIZE);
        CHECKQ(blocks[i] != NULL, "malloc(%d)", FREE_MOVE_SIZE);
    }
    size_t class_size = malloc_usable_size(blocks[0]); /* what bytes_cached counts */
    int moved_after_mallocs = bins_moved(slab);
    struct xmm_stats before = snapshot();
    for (int i = 0; i < FREE_MOVE_BLOCKS; i++)
        free(blocks[i]);
    struct xmm_stats freed = snapshot();
    CHECK(moved_before == moved_after_mallocs && bins_moved(slab) == moved_before + 1,
          "%s: the frees of %d B moved their bin (%d bins in their own slots, %d before)", when,
          FREE_MOVE_SIZE, bins_moved(slab), moved_before);
    CHECK(freed.cache_drains == before.cache_drains, "%s: and drained nothing (%llu drains)",
          when, (unsigned long long)(freed.cache_drains - before.cache_drains));
    int cached = (int)((freed.bytes_cached - cached_before) / class_size);
    CHECK(cached > FREE_MOVE_BLOCKS && cached <= 2 * FREE_MOVE_BLOCKS,
          "%s: the bin holds the %d blocks freed and the refills' rest (%d)", when,
          FREE_MOVE_BLOCKS, cached);
    if (cached <= FREE_MOVE_BLOCKS || cached > 2 * FREE_MOVE_BLOCKS)
        return;
    void *taken[2 * FREE_MOVE_BLOCKS];
    for (int i = 0; i < cached; i++)
        taken[i] = malloc(FREE_MOVE_SIZE);
    bool distinct = true, all_freed = true;
    for (int i = 0; i < cached; i++)
        for (int j = i + 1; j < cached; j++)
            distinct &= taken[i] != taken[j];
    /* The first FREE_MOVE_BLOCKS taken are the ones freed (a stack). */
    all_freed = same_blocks(taken, blocks, FREE_MOVE_BLOCKS);
    CHECK(distinct && all_freed && snapshot().cache_refills == freed.cache_refills,
          "%s: the %d mallocs after them returned every cached block once, without a refill",
          when, cached);
    for (int i = 0; i < cached; i++)
        free(taken[i]);
}

static void move_round(const char *when)
{
    refill_move(when);
    free_move(when);
}

/* Blocks of classes whose first capacity is below the starting slots'
 * 16 (XMM_CPU_CACHE_SIZE=1m: a bin of 256 KiB blocks starts with room for
 * 2): their starting slots hold no more than that either, so a move never
 * copies more objects than the bin's own slots have room for (it did:
 * the copy ran into the next class's slots, and malloc(256 KiB) returned
 * 240 KiB blocks, some handed out twice), and the cache holds no more of
 * them than its own slots would. */
#define LARGE_BLOCKS 17
static const size_t large_sizes[] = {20 << 10, 48 << 10, 100 << 10, 232 << 10, 256 << 10};
#define LARGE_SIZES (sizeof large_sizes / sizeof large_sizes[0])

static void large_case(void)
{
    static void *blocks[LARGE_SIZES][LARGE_BLOCKS];
    for (size_t size = 0; size < LARGE_SIZES; size++) {
        /* The bins emptied first: the refills of 17 large blocks may walk
         * the cold bins (cpu_cache.c, drain_cold_bins) and drain the
         * sizes before, which would hide this one's cached blocks. */
        malloc_trim(0);
        uint64_t cached_before = snapshot().bytes_cached;
        for (int i = 0; i < LARGE_BLOCKS; i++) {
            blocks[size][i] = malloc(large_sizes[size]);
            CHECKQ(blocks[size][i] != NULL, "malloc(%zu)", large_sizes[size]);
        }
        size_t class_size = malloc_usable_size(blocks[size][0]);
        /* 16 frees fill 16 starting slots, if the bin had them. */
        for (int i = 0; i < XMM_CPU_STARTING_SLOTS; i++)
            free(blocks[size][i]);
        uint64_t cached = (snapshot().bytes_cached - cached_before) / class_size;
        CHECK(cached < XMM_CPU_STARTING_SLOTS,
              "%zu KiB blocks: %llu of %d freed cached (the bin's first capacity, not all)",
              large_sizes[size] >> 10, (unsigned long long)cached, XMM_CPU_STARTING_SLOTS);
        for (int i = XMM_CPU_STARTING_SLOTS; i < LARGE_BLOCKS; i++)
            free(blocks[size][i]);
    }
    for (size_t size = 0; size < LARGE_SIZES; size++)
        for (int i = 0; i < LARGE_BLOCKS; i++) {
            blocks[size][i] = malloc(large_sizes[size]);
            CHECKQ(blocks[size][i] && malloc_usable_size(blocks[size][i]) >= large_sizes[size],
                   "malloc(%zu) returns a block of that size", large_sizes[size]);
        }
    int twice = 0;
    for (size_t a = 0; a < LARGE_SIZES * LARGE_BLOCKS; a++)
        for (size_t b = a + 1; b < LARGE_SIZES * LARGE_BLOCKS; b++)
            twice += (&blocks[0][0])[a] == (&blocks[0][0])[b];
    CHECK(twice == 0, "no block handed out twice (%d)", twice);
    for (size_t a = 0; a < LARGE_SIZES * LARGE_BLOCKS; a++)
        free((&blocks[0][0])[a]);
}

static void moves_case(void)
{
    move_round("first");
}

static void release_case(void)
{
    uint64_t *slab = slab_of_this_thread();
    move_round("before the trim");
    malloc_trim(0);
    CHECK(bins_moved(slab) == 0, "malloc_trim put every bin back in its starting slots (%d not)",
          bins_moved(slab));
    CHECK(snapshot().bytes_cached == 0, "and emptied them");
    move_round("after the trim");
}

#define STRESS_THREADS 4
#define STRESS_BLOCKS 40
#define STRESS_ROUNDS 100000
static const size_t stress_sizes[] = {16, 48, 64, 200, 1000, 3000};
#define STRESS_SIZES (sizeof stress_sizes / sizeof stress_sizes[0])
static unsigned long stress_bad;

static void *stress_worker(void *argument)
{
    void *held[STRESS_BLOCKS];
    unsigned long bad = 0;
    for (int round = 0; round < STRESS_ROUNDS; round++)
        bad += tagged_round(held, STRESS_BLOCKS, stress_sizes[round % STRESS_SIZES], 1,
                            (uintptr_t)argument);
    __atomic_fetch_add(&stress_bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

static void stress_case(void)
{
    unsigned trims = trim_stress_run(STRESS_THREADS, stress_worker);
    CHECK(stress_bad == 0, "%d threads, %u trims: %lu blocks handed out twice or changed",
          STRESS_THREADS, trims, stress_bad);
    CHECK(trims > 100, "the trims ran during the rounds (%u)", trims);
}

/* The signal case: blocks of 48 B, tagged by their holder (the thread
 * with its index, the handler with its own tag) and checked before each
 * free. */
#define SIGNAL_SIZE 48
#define SIGNAL_BLOCKS 40
#define HANDLER_TAG ((uintptr_t)0x6868686868680000u)
static volatile unsigned long signal_bad, handler_runs;

static void tag_block(void *block, uintptr_t tag)
{
    for (size_t word = 0; word < SIGNAL_SIZE / 8; word++)
        ((volatile uintptr_t *)block)[word] = tag;
}

static bool block_tagged(const void *block, uintptr_t tag)
{
    for (size_t word = 0; word < SIGNAL_SIZE / 8; word++)
        if (((const volatile uintptr_t *)block)[word] != tag)
            return false;
    return true;
}

/* A handler that interrupted XMM inside a lock gets NULL from malloc
 * (docs/design.md, "Signal handlers that allocate"): counted apart. */
static volatile unsigned long handler_refused;

static void on_timer(int signal_number)
{
    (void)signal_number;
    handler_runs++;
    void *blocks[4];
    for (int i = 0; i < 4; i++) {
        blocks[i] = malloc(SIGNAL_SIZE);
        if (blocks[i])
            tag_block(blocks[i], HANDLER_TAG + (uintptr_t)i);
        else
            handler_refused++;
    }
    for (int i = 0; i < 4; i++) {
        if (blocks[i] && !block_tagged(blocks[i], HANDLER_TAG + (uintptr_t)i))
            signal_bad++;
        free(blocks[i]);
    }
}

static void signals_case(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_timer;
    action.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &action, NULL);
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGRTMIN;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    CHECKQ(timer_create(CLOCK_MONOTONIC, &event, &timer) == 0, "timer_create");
    struct itimerspec every_30us = {{0, 30000}, {0, 30000}};
    timer_settime(timer, 0, &every_30us, NULL);
    void *held[SIGNAL_BLOCKS];
    unsigned long rounds = 0;
    /* At least 2 s, and on until the handlers have run and been served
     * enough (a loaded machine gives the thread less of its time, and a
     * timer's expiries merge while one is pending), at most 20 s. */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double seconds = (double)(now.tv_sec - start.tv_sec) +
                         (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        bool enough = handler_runs > 1000 && handler_runs * 4 - handler_refused > 4000;
        if (signal_bad || seconds >= 20 || (seconds >= 2 && enough))
            break;
        for (int i = 0; i < SIGNAL_BLOCKS; i++) {
            held[i] = malloc(SIGNAL_SIZE);
            if (held[i])
                tag_block(held[i], (uintptr_t)i << 8);
        }
        for (int i = 0; i < SIGNAL_BLOCKS; i++) {
            if (!held[i] || !block_tagged(held[i], (uintptr_t)i << 8))
                signal_bad++;
            free(held[i]);
        }
        if (++rounds % 2 == 0)
            malloc_trim(0);
    }
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(timer, 0, &off, NULL);
    CHECK(signal_bad == 0, "%lu rounds, %lu handlers: %lu blocks handed out twice or changed",
          rounds, handler_runs, signal_bad);
    /* What share of the handlers' mallocs is refused depends on how much
     * of the round time malloc_trim holds a lock, which depends on the
     * machine (37-54% seen): what the case needs is many handler
     * mallocs that got a block while the thread was between sections. */
    unsigned long handler_served = handler_runs * 4 - handler_refused;
    CHECK(handler_runs > 1000 && handler_served > 4000,
          "the timer interrupted the rounds (%lu times; %lu of the handlers' mallocs served, "
          "%lu refused)",
          handler_runs, handler_served, handler_refused);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        slab_index_init();
        if (strcmp(argv[1], "stress") != 0)
            pin_to_current_cpu();
        find_slabs();
        if (!strcmp(argv[1], "footprint"))
            footprint_case();
        else if (!strcmp(argv[1], "moves"))
            moves_case();
        else if (!strcmp(argv[1], "release"))
            release_case();
        else if (!strcmp(argv[1], "large"))
            large_case();
        else if (!strcmp(argv[1], "stress"))
            stress_case();
        else if (!strcmp(argv[1], "signals"))
            signals_case();
        return check_summary(argv[1]);
    }
    if (strcmp(snapshot().front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", snapshot().front_end);
        return 77;
    }
    /* Fresh processes; long decay and no background thread, so that only
     * malloc_trim releases. */
    char *common[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    CHECK(check_run_self("footprint", common) == 0, "footprint case");
    CHECK(check_run_self("moves", common) == 0, "moves case");
    CHECK(check_run_self("release", common) == 0, "release case");
    char *small_budget[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_CPU_CACHE_SIZE=1m",
                            NULL};
    CHECK(check_run_self("large", common) == 0, "large case");
    CHECK(check_run_self("large", small_budget) == 0, "large case, XMM_CPU_CACHE_SIZE=1m");
    CHECK(check_run_self("stress", common) == 0, "stress case");
    CHECK(check_run_self("signals", common) == 0, "signals case");
    return check_summary("starting_slots");
}
