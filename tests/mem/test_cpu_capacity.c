/*
 * test_cpu_capacity - per-CPU bins grow on malloc misses (cpu_cache.c,
 * grow_capacity), within XMM_CPU_CACHE_SIZE, and a release sets them back.
 *
 * One thread pinned to one CPU allocates 1000 blocks of 1 KiB and frees
 * them, round after round (bench/micro's batch1000/1024). A 1 KiB bin
 * starts at 128 objects, so at first every round refills and drains
 * through the central layer about 27 times each way:
 *
 *   default  after a few rounds the bin holds the whole round: the last
 *            rounds miss at most twice each (before: 48 times, always);
 *            no block is handed out twice within a round
 *   4k       the same with 1000 blocks of 4 KiB (batch1000/4096): the
 *            slab's slots are shared so that every class up to 4 KiB can
 *            grow past 1000 objects (before: the 4 KiB bin stopped at 339
 *            slots, and every round missed about 40 times)
 *   16m      the default and 4k cases with XMM_CPU_CACHE_SIZE=16m: a
 *            larger budget never leaves a bin less room than the default
 *            (before: the slots were laid out for the whole budget, the
 *            growth level fell to 734 objects, and every round of 1 KiB
 *            or 4 KiB blocks missed 12-20 times)
 *   budget   XMM_CPU_CACHE_SIZE=256k: the bin's capacity, its first 64
 *            objects included, stays within 256 KiB, so the cache never
 *            holds more than 256 KiB plus a batch in flight
 *   bounded  the whole budget bounds what a CPU caches: rounds of 40,000
 *            blocks of 16-512 bytes (every class of the range in turn,
 *            as xmalloc's producers draw them), allocated and then freed,
 *            keep every bin of the range moved out of its starting slots
 *            and growing; the cache never holds more than
 *            XMM_CPU_CACHE_SIZE (4 MiB here) and a batch in flight
 *            (before: the budget bounded only the growth, and the first
 *            capacities came on top: 5.0 MiB cached; now 3.9)
 *   release  malloc_trim empties the caches and sets the bins back to
 *            their first capacity: the next round misses again
 *   stress   4 threads (more than this machine's cores, so preempted
 *            inside sections and grows) cycle 300 blocks of 1 KiB each,
 *            writing a tag into every block and checking it before the
 *            free, while the main thread trims every millisecond (bins
 *            grow and are locked, drained and reset under them): no block
 *            is handed to two threads at once or changed under its owner
 *   slow-start  a class's refills start at one object and double, up to
 *            its batch (cpu_cache.c, refill_count): after the first
 *            malloc of a class nothing of it is cached (before: the rest
 *            of a whole batch, 31 blocks of 1.5 KiB), after 31 mallocs
 *            still nothing, and the 32nd brings a whole batch; at 20 KiB
 *            (batch 6) the seventh malloc does. A release starts the
 *            slow start again. Also run on per-thread caches
 *            (XMM_RSEQ=0), whose refills start the same way.
 *   cold-bins  the bins of eight classes of 20-64 KiB are filled (a
 *            dozen blocks each, allocated and freed: over 1 MiB cached),
 *            then 600 blocks of 16 KiB are allocated and kept: 9.4 MiB of
 *            refills of another class, past the 4 MiB budget twice. The
 *            bins no refill touched meanwhile are drained (cpu_cache.c,
 *            drain_cold_bins): at most what was cached before the eight
 *            classes plus a batch of 16 KiB blocks stays (before: every
 *            block of the eight classes stayed, each pinning its span)
 *   stress-shift  4 threads, XMM_CPU_CACHE_SIZE=1m (a cold walk every MiB
 *            of refills), each moving every 20 rounds of 300 tagged
 *            blocks to the next of 8 classes of 256 B-4 KiB, the threads
 *            a class apart: bins move out (counted against the budget),
 *            grow, go cold and are drained by the cold-bin walk while the
 *            other thread on their CPU pushes to and pops from them (a
 *            build that counted them saw 77,740 walks in a run of 1.9 s);
 *            then the same with a trim every millisecond, whose releases
 *            reset the count under the moves and grows: no block is
 *            handed to two threads at once or changed under its owner
 *   stress-small  the same with blocks of 48 bytes, every word tagged: a
 *            class below a cache line, whose refills claim page owners
 *            (compare-and-swaps of the page word) and whose frees pick a
 *            remote bin from it, while the trims clear and restore page
 *            words of span tails under them
 *
 * Skipped (77) without per-CPU caches.
 */
#include <malloc.h>
#include <pthread.h>
#include <time.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "stats_snapshot.h"
#include "trim_stress.h"
#include "xmm.h"

#define BLOCKS 1000
#define SIZE 1024

static size_t block_size = SIZE;

static void *blocks[BLOCKS];

/* One round; returns the refills and drains it took. */
static uint64_t round_misses(void)
{
    struct xmm_stats before = snapshot();
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(block_size);
        CHECKQ(blocks[i] != NULL, "malloc(%zu)", block_size);
        memset(blocks[i], i & 0xff, 64);
    }
    for (int i = 0; i < BLOCKS; i++)
        CHECKQ(((unsigned char *)blocks[i])[63] == (i & 0xff), "block %d keeps its bytes", i);
    /* Distinct blocks (no qsort: glibc's allocates a buffer). */
    bool twice = false;
    for (int i = 0; i < BLOCKS; i++)
        for (int j = i + 1; j < BLOCKS; j++)
            twice |= blocks[i] == blocks[j];
    CHECKQ(!twice, "no block handed out twice in a round");
    for (int i = 0; i < BLOCKS; i++)
        free(blocks[i]);
    struct xmm_stats after = snapshot();
    return (after.cache_refills - before.cache_refills) + (after.cache_drains - before.cache_drains);
}

static void pin_to_current_cpu(void)
{
    int cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu < 0 ? 0 : cpu, &set);
    CHECKQ(sched_setaffinity(0, sizeof set, &set) == 0, "pinned to CPU %d", cpu);
}

static void default_case(void)
{
    uint64_t first = round_misses(), last = 0;
    for (int round = 0; round < 40; round++)
        last = round_misses();
    CHECK(first >= 20, "the first round goes through the central layer (%llu misses)",
          (unsigned long long)first);
    CHECK(last <= 2, "after 40 rounds the bin holds a round (%llu misses, first round %llu)",
          (unsigned long long)last, (unsigned long long)first);
}

static void page_size_case(void)
{
    block_size = 4096;
    default_case();
}

static void budget_case(void)
{
    /* Objects of other classes (start-up) stay as they are. */
    uint64_t others = snapshot().bytes_cached, most_cached = 0;
    for (int round = 0; round < 40; round++) {
        round_misses();
        uint64_t cached = snapshot().bytes_cached - others;
        most_cached = cached > most_cached ? cached : most_cached;
    }
    uint64_t bound = 32 * SIZE + (256 << 10);
    CHECK(most_cached <= bound, "XMM_CPU_CACHE_SIZE=256k: at most %llu bytes cached (%llu)",
          (unsigned long long)bound, (unsigned long long)most_cached);
    CHECK(most_cached > 64 * SIZE, "the bin did grow past its first 64 objects (%llu bytes)",
          (unsigned long long)most_cached);
}

#define BOUNDED_BLOCKS 40000
#define BOUNDED_ROUNDS 20

static void bounded_case(void)
{
    static void *held[BOUNDED_BLOCKS];
    uint64_t most_cached = 0;
    for (int round = 0; round < BOUNDED_ROUNDS; round++) {
        for (int i = 0; i < BOUNDED_BLOCKS; i++) {
            size_t size = 16 + (size_t)(i % 32) * 16;
            held[i] = malloc(size);
            CHECKQ(held[i] != NULL, "malloc(%zu)", size);
            memset(held[i], 1, 16);
        }
        for (int i = 0; i < BOUNDED_BLOCKS; i++)
            free(held[i]);
        uint64_t cached = snapshot().bytes_cached;
        most_cached = cached > most_cached ? cached : most_cached;
    }
    uint64_t budget = 4 << 20, bound = budget + (64 << 10);
    CHECK(most_cached <= bound, "XMM_CPU_CACHE_SIZE=4m bounds the cache: at most %llu bytes "
          "cached (%llu)", (unsigned long long)bound, (unsigned long long)most_cached);
    CHECK(most_cached >= budget - budget / 8, "the bins did fill and grow (%llu bytes cached)",
          (unsigned long long)most_cached);
}

static void release_case(void)
{
    for (int round = 0; round < 40; round++)
        round_misses();
    uint64_t grown = round_misses();
    malloc_trim(0);
    CHECK(snapshot().bytes_cached == 0, "malloc_trim empties the caches");
    uint64_t after_trim = round_misses();
    CHECK(grown <= 2 && after_trim >= 20,
          "after the trim the bin is back at its first capacity (%llu misses, %llu before)",
          (unsigned long long)after_trim, (unsigned long long)grown);
}

/* Mallocs `count` blocks of `size` (kept: stored where the compiler must
 * assume they are read, or clang drops the mallocs) and returns the bytes
 * cached after them, less `cached_before`. Nothing here prints: stdio's
 * buffer is one more block, from the caches. */
static void *kept[128];
static int kept_count;

static uint64_t cached_after_mallocs(size_t size, int count, uint64_t cached_before)
{
    for (int i = 0; i < count; i++) {
        void *block = malloc(size);
        if (!block || kept_count == (int)(sizeof kept / sizeof kept[0]))
            return UINT64_MAX;
        memset(block, 0x5a, size);
        kept[kept_count++] = block;
    }
    __asm__ __volatile__("" : : "r"(kept) : "memory");
    return snapshot().bytes_cached - cached_before;
}

/* The refills of a class a fresh process has not used: 1, 2, 4, 8 and
 * 16 objects, then whole batches of `batch`. */
static void check_slow_start(size_t size, unsigned batch, const char *when)
{
    unsigned started = 0, refill = 1;
    while (refill < batch) { /* the slow start's refills, the first one's included */
        started += refill;
        refill *= 2;
    }
    uint64_t before = snapshot().bytes_cached;
    uint64_t first = cached_after_mallocs(size, 1, before);
    uint64_t through = cached_after_mallocs(size, (int)started - 1, before);
    uint64_t whole = cached_after_mallocs(size, 1, before);
    CHECK(first == 0, "%s: the first malloc of %zu bytes caches nothing more (%llu bytes)",
          when, size, (unsigned long long)first);
    CHECK(through == 0, "%s: %u mallocs of %zu bytes used up the slow start's refills "
          "exactly (%llu bytes cached)", when, started, size, (unsigned long long)through);
    CHECK(whole >= (uint64_t)(batch - 1) * size && whole <= (uint64_t)batch * size,
          "%s: the next refill of %zu bytes is a whole batch of %u (%llu bytes cached)", when,
          size, batch, (unsigned long long)whole);
}

static void slow_start_case(void)
{
    /* Classes nothing before main uses: 1536 and 20480 bytes, batches
     * of 32 and 6 (128 KiB of objects, at most 32). */
    check_slow_start(1500, 32, "fresh");
    check_slow_start(20000, 6, "fresh");
    if (strcmp(snapshot().front_end, "per-cpu") == 0) {
        malloc_trim(0);
        check_slow_start(1500, 32, "after malloc_trim");
    }
}

#define COLD_CLASSES 8
#define COLD_BLOCKS 12
#define HOT_BLOCKS 600
#define HOT_SIZE 16000

static void cold_bins_case(void)
{
    static const size_t cold_sizes[COLD_CLASSES] = {20000, 24000, 28000, 32000,
                                                    40000, 48000, 56000, 64000};
    static void *cold[COLD_BLOCKS], *hot[HOT_BLOCKS];
    uint64_t before = snapshot().bytes_cached;
    for (int c = 0; c < COLD_CLASSES; c++) {
        for (int i = 0; i < COLD_BLOCKS; i++) {
            cold[i] = malloc(cold_sizes[c]);
            CHECKQ(cold[i] != NULL, "malloc(%zu)", cold_sizes[c]);
            memset(cold[i], 1, 64);
        }
        for (int i = 0; i < COLD_BLOCKS; i++)
            free(cold[i]);
    }
    uint64_t filled = snapshot().bytes_cached;
    for (int i = 0; i < HOT_BLOCKS; i++) {
        hot[i] = malloc(HOT_SIZE);
        CHECKQ(hot[i] != NULL, "malloc(%d)", HOT_SIZE);
        memset(hot[i], 2, 64);
    }
    __asm__ __volatile__("" : : "r"(hot) : "memory");
    uint64_t after = snapshot().bytes_cached;
    for (int i = 0; i < HOT_BLOCKS; i++)
        free(hot[i]);
    CHECK(filled >= before + (1 << 20), "the eight classes' bins hold their blocks "
          "(%llu bytes cached, %llu before)", (unsigned long long)filled,
          (unsigned long long)before);
    uint64_t bound = before + 8 * 16384;
    CHECK(after <= bound, "after 9.4 MiB of refills of another class the cold bins are "
          "drained: %llu bytes cached, at most %llu (%llu with them filled)",
          (unsigned long long)after, (unsigned long long)bound, (unsigned long long)filled);
}

#define STRESS_THREADS 4
#define STRESS_BLOCKS 300
#define STRESS_ROUNDS 20000

static unsigned long stress_bad;
static size_t stress_size = SIZE;

/* Words apart that the stress tags: every word of a small block. */
static size_t stress_step(void)
{
    return stress_size > 128 ? 16 : 1;
}

static void *stress_worker(void *argument)
{
    void *held[STRESS_BLOCKS];
    unsigned long bad = 0;
    for (int round = 0; round < STRESS_ROUNDS; round++)
        bad += tagged_round(held, STRESS_BLOCKS, stress_size, stress_step(),
                            (uintptr_t)argument);
    __atomic_fetch_add(&stress_bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

static void stress_case(void)
{
    unsigned trims = trim_stress_run(STRESS_THREADS, stress_worker);
    CHECK(stress_bad == 0, "%d threads, %u trims: %lu blocks handed out twice or changed",
          STRESS_THREADS, trims, stress_bad);
    CHECK(trims > 10, "the trims ran during the rounds (%u)", trims);
}

#define SHIFT_PHASE 20

/* Rounds of each thread: fewer under trims, each of which empties every
 * cache (about 2 s either way here). */
static int shift_rounds = 100000;

static void *shift_worker(void *argument)
{
    static const size_t sizes[] = {256, 384, 512, 768, 1024, 1536, 2048, 4096};
    const unsigned classes = sizeof sizes / sizeof *sizes;
    uintptr_t tag = (uintptr_t)argument;
    unsigned first = (unsigned)(tag >> 40);
    void *held[STRESS_BLOCKS];
    unsigned long bad = 0;
    for (int round = 0; round < shift_rounds; round++) {
        size_t size = sizes[(first + (unsigned)round / SHIFT_PHASE) % classes];
        bad += tagged_round(held, STRESS_BLOCKS, size, 16, tag + (uintptr_t)round);
    }
    __atomic_fetch_add(&stress_bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

static void stress_shift_case(void)
{
    pthread_t threads[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++)
        CHECKQ(pthread_create(&threads[i], NULL, shift_worker,
                              (void *)(0x5a5a0000u + ((uintptr_t)i << 40))) == 0,
               "thread started");
    for (int i = 0; i < STRESS_THREADS; i++)
        pthread_join(threads[i], NULL);
    CHECK(stress_bad == 0, "%d threads shifting classes: %lu blocks handed out twice or "
          "changed", STRESS_THREADS, stress_bad);
    shift_rounds = 10000;
    unsigned trims = trim_stress_run(STRESS_THREADS, shift_worker);
    CHECK(stress_bad == 0, "%d threads shifting classes, %u trims: %lu blocks handed out "
          "twice or changed", STRESS_THREADS, trims, stress_bad);
    CHECK(trims > 10, "the trims ran during the rounds (%u)", trims);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strncmp(argv[1], "stress", 6) != 0)
            pin_to_current_cpu();
        if (!strcmp(argv[1], "default"))
            default_case();
        else if (!strcmp(argv[1], "4k"))
            page_size_case();
        else if (!strcmp(argv[1], "budget"))
            budget_case();
        else if (!strcmp(argv[1], "bounded"))
            bounded_case();
        else if (!strcmp(argv[1], "release"))
            release_case();
        else if (!strcmp(argv[1], "slow-start"))
            slow_start_case();
        else if (!strcmp(argv[1], "cold-bins"))
            cold_bins_case();
        else if (!strcmp(argv[1], "stress"))
            stress_case();
        else if (!strcmp(argv[1], "stress-shift"))
            stress_shift_case();
        else if (!strcmp(argv[1], "stress-small")) {
            stress_size = 48;
            stress_case();
        }
        return check_summary(argv[1]);
    }
    if (strcmp(snapshot().front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", snapshot().front_end);
        return 77;
    }
    /* Fresh processes: no other test's objects or grown bins; long decay
     * and no background thread, so that only malloc_trim releases. */
    char *common[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    char *budget[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_CPU_CACHE_SIZE=256k",
                      NULL};
    char *large[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_CPU_CACHE_SIZE=16m",
                     NULL};
    CHECK(check_run_self("default", common) == 0, "default case");
    CHECK(check_run_self("4k", common) == 0, "4 KiB case");
    CHECK(check_run_self("default", large) == 0, "XMM_CPU_CACHE_SIZE=16m, 1 KiB case");
    CHECK(check_run_self("4k", large) == 0, "XMM_CPU_CACHE_SIZE=16m, 4 KiB case");
    CHECK(check_run_self("budget", budget) == 0, "budget case");
    CHECK(check_run_self("release", common) == 0, "release case");
    char *per_thread[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_RSEQ=0", NULL};
    CHECK(check_run_self("slow-start", common) == 0, "slow start");
    CHECK(check_run_self("slow-start", per_thread) == 0, "slow start, per-thread caches");
    /* The walk is due at each XMM_CPU_CACHE_SIZE of refills: 4 MiB here
     * whatever the caller's environment says. */
    char *cold[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_CPU_CACHE_SIZE=4m", NULL};
    CHECK(check_run_self("cold-bins", cold) == 0, "cold bins drained");
    CHECK(check_run_self("bounded", cold) == 0, "the budget bounds the cache");
    CHECK(check_run_self("stress", common) == 0, "stress case");
    CHECK(check_run_self("stress-small", common) == 0, "stress case, 48-byte blocks");
    char *shift[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", "XMM_CPU_CACHE_SIZE=1m", NULL};
    CHECK(check_run_self("stress-shift", shift) == 0, "stress case, classes shifting");
    return check_summary("cpu_capacity");
}
