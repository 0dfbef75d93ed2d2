/*
 * test_thread_budget - per-thread caches (the front end without rseq) keep
 * at most XMM_THREAD_CACHE_SIZE each, and all threads together share a
 * bounded total (src/mem/thread_cache.c, "capacity").
 *
 * Each worker allocates and frees 16 blocks of each of 64 sizes (16 bytes
 * to 32 KiB, most of the size classes), then idles with nothing live,
 * while the main thread reads xmm_stats: the bytes the caches hold must
 * stay within the budgets. Before the budget bounded a cache, each class
 * a thread had touched kept up to two batches (256 KiB for the larger
 * classes): 4.7 MiB a thread whatever the variable said, 918 MiB for 200
 * idle threads.
 *
 * Then the main thread cycles 1000 blocks of 16 bytes (all allocated, then
 * all freed) 10 times: within the budget, its bin holds them all, so after
 * the first rounds no round refills from the central layer. Before, a bin
 * held at most 256 objects, and each round made some 24 refills and 24
 * drains: two threads doing this on two cores each took 2-7 times as long
 * a round as one alone (bench/analysis.md, "batch1000 with four threads on
 * two cores").
 *
 * Runs itself again with XMM_RSEQ=0 and XMM_THREAD_CACHE_SIZE=256k.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define KIB ((size_t)1024)
#define BUDGET (256 * KIB)
#define SIZES 64
#define BLOCKS 16

static pthread_barrier_t cycled, leave;
static unsigned overwritten; /* blocks another owner wrote */

static size_t size_of(int k)
{
    return k < 32 ? (size_t)(k + 1) * 16 : (size_t)(k - 31) * KIB;
}

static void *worker(void *unused)
{
    (void)unused;
    for (int k = 0; k < SIZES; k++) {
        unsigned char *blocks[BLOCKS];
        for (int i = 0; i < BLOCKS; i++) {
            blocks[i] = malloc(size_of(k));
            memset(blocks[i], i + 1, size_of(k));
        }
        for (int i = 0; i < BLOCKS; i++) {
            if (blocks[i][0] != i + 1 || blocks[i][size_of(k) - 1] != i + 1)
                __atomic_fetch_add(&overwritten, 1, __ATOMIC_RELAXED);
            free(blocks[i]);
        }
    }
    pthread_barrier_wait(&cycled);
    pthread_barrier_wait(&leave);
    return NULL;
}

/* Starts `count` workers, waits until each has cycled and idles, and
 * returns the bytes the caches hold then. */
static double cached_with_idle_workers(int count)
{
    pthread_t *threads = malloc(count * sizeof *threads);
    pthread_barrier_init(&cycled, NULL, count + 1);
    pthread_barrier_init(&leave, NULL, count + 1);
    for (int i = 0; i < count; i++)
        pthread_create(&threads[i], NULL, worker, NULL);
    pthread_barrier_wait(&cycled);
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    pthread_barrier_wait(&leave);
    for (int i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&cycled);
    pthread_barrier_destroy(&leave);
    free(threads);
    CHECK(strcmp(stats.front_end, "per-thread") == 0, "per-thread caches in use (%s)", stats.front_end);
    return (double)stats.bytes_cached;
}

#define CYCLED 1000

static void cycle_blocks(int rounds)
{
    static void *blocks[CYCLED];
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < CYCLED; i++) {
            blocks[i] = malloc(16);
            CHECKQ(blocks[i] != NULL, "malloc(16)");
        }
        for (int i = 0; i < CYCLED; i++)
            free(blocks[i]);
    }
}

static uint64_t refills_so_far(void)
{
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    CHECKQ(xmm_stats_get(&stats) == 0, "xmm_stats_get");
    return stats.cache_refills;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *rseq = getenv("XMM_RSEQ");
    if (!rseq || strcmp(rseq, "0") != 0) {
        setenv("XMM_RSEQ", "0", 1);
        setenv("XMM_THREAD_CACHE_SIZE", "256k", 1);
        execv("/proc/self/exe", argv);
        return 1;
    }
    /* One idle worker: its cache and the main thread's, each within the
     * budget; and it does cache (its frees were not all sent back). */
    double one = cached_with_idle_workers(1);
    CHECK(one <= 2.0 * BUDGET, "one idle thread: %.0f KiB cached, at most 2 x %zu KiB", one / KIB,
          BUDGET / KIB);
    CHECK(one >= BUDGET / 4, "one idle thread: its cache holds objects (%.0f KiB)", one / KIB);

    /* 64 idle workers, more threads than cores: every cache within its
     * budget, and the budgets shrinking as caches multiply (16 budgets
     * shared by those in use). Even if the workers ran one after another,
     * each keeping the budget it had then: 16 x 256 KiB for the first 16,
     * then 4 MiB / k for the k-th: 9.4 MiB in all. */
    double many = cached_with_idle_workers(64);
    CHECK(many <= 10.0 * KIB * KIB, "64 idle threads: %.1f MiB cached, at most 10 MiB",
          many / KIB / KIB);
    CHECK(many < 64.0 * BUDGET, "64 idle threads: less than 64 whole budgets (%.1f MiB)",
          many / KIB / KIB);
    CHECK(overwritten == 0, "every block kept its bytes (%u overwritten)", overwritten);

    cycle_blocks(3);
    uint64_t refills = refills_so_far();
    cycle_blocks(10);
    refills = refills_so_far() - refills;
    CHECK(refills == 0, "10 rounds of %d blocks of 16 bytes, after 3: %llu refills (the bin "
          "holds them all)", CYCLED, (unsigned long long)refills);
    return check_summary("thread cache budget");
}
