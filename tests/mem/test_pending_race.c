/*
 * test_pending_race.c - a block freed twice from two CPUs is reported
 * once and handed out once, under XMM_FREE_CHECK=deferred.
 *
 * free() then checks a block of 16 bytes or more at its CPU's next free (the
 * pending slot, src/global/free.h), so a block freed on CPU A and again on
 * CPU B before A's next free waits in both CPUs' slots. Each slot's free
 * marks the block for itself (its slab's index in the mark), so only one
 * of the two checks can pass, even when the two CPUs' next frees, which
 * run them, come at the same moment. A build without the slab's index in
 * the mark failed here 3 runs in 3 (of 50,000 rounds each: 2 to 5 blocks
 * handed out to both CPUs, or reports missing).
 *
 * Each round: thread A allocates a block and frees it; thread B frees it
 * again; then both free a spare block at once (completing the pending
 * frees on both CPUs) and each allocates one block of the size. The
 * child runs with XMM_INVALID_FREE=warn (its reports to /dev/null) and
 * checks that the two new blocks are never the same and that every round
 * was reported exactly once. Two more children: releases racing frees,
 * and a check that this mode defers at all (below).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "xmm.h"

enum { ROUNDS = 200000, SIZE = 32 };

static int cpus[2];
static void *volatile shared_block;
static void *got[2];
static unsigned long shared_rounds;
static int phase[2]; /* per thread: the round it has reached, step by step */

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void arrive(int self, int step)
{
    __atomic_store_n(&phase[self], step, __ATOMIC_RELEASE);
    while (__atomic_load_n(&phase[!self], __ATOMIC_ACQUIRE) < step)
        ;
}

static void *racer(void *argument)
{
    int self = (int)(intptr_t)argument;
    pin(cpus[self]);
    for (int round = 0; round < ROUNDS; round++) {
        int step = round * 4;
        void *spare = xmm_malloc(128);
        if (self == 0) {
            void *block = xmm_malloc(SIZE);
            shared_block = block;
            xmm_free(block);
        }
        arrive(self, step + 1);
        if (self == 1)
            xmm_free(shared_block); /* the double free, on the other CPU */
        arrive(self, step + 2);
        xmm_free(spare); /* both CPUs complete their pending frees now */
        got[self] = xmm_malloc(SIZE);
        arrive(self, step + 3);
        if (self == 0 && got[0] == got[1])
            shared_rounds++;
        arrive(self, step + 4);
        xmm_free(got[self]);
    }
    return NULL;
}

static int child(void)
{
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
        dup2(null, 2); /* one report a round */
    struct xmm_stats before = {.version = XMM_STATS_VERSION};
    struct xmm_stats after = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&before);
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, racer, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    xmm_release_cpu_caches(); /* completes what still waits in the slots */
    xmm_stats_get(&after);
    unsigned long long reported = after.invalid_frees - before.invalid_frees;
    CHECK(shared_rounds == 0, "%d rounds: the two CPUs never got the same block (%lu times)",
          ROUNDS, shared_rounds);
    CHECK(reported == ROUNDS, "every double free reported once: %llu reports for %d rounds",
          reported, ROUNDS);
    return check_summary("pending_race");
}

/* Releases racing frees: workers (more threads than CPUs) free and
 * allocate while the main thread releases every cache in a loop. A
 * release locks the slabs and fences; a free whose section restarts onto
 * a locked slab checks its block at once, and must not take the mark its
 * aborted try left for a freed block's (a build that kept that mark
 * reported a false double free here in 2 runs of 2). No free may be
 * reported. */
enum { WORKERS = 4, RELEASE_MS = 1500 };
static int stop_workers;

static void *churner(void *argument)
{
    unsigned long long state = (unsigned long long)(intptr_t)argument * 0x9e3779b97f4a7c15u + 1;
    void *kept[64] = {0};
    while (!__atomic_load_n(&stop_workers, __ATOMIC_ACQUIRE)) {
        unsigned slot = (unsigned)(next_random(&state) % 64);
        xmm_free(kept[slot]);
        kept[slot] = xmm_malloc(16 + next_random(&state) % 1000);
    }
    for (int i = 0; i < 64; i++)
        xmm_free(kept[i]);
    return NULL;
}

static int release_child(void)
{
    struct xmm_stats before = {.version = XMM_STATS_VERSION};
    struct xmm_stats after = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&before);
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&threads[i], NULL, churner, (void *)(intptr_t)i);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long releases = 0, elapsed_ms = 0;
    while (elapsed_ms < RELEASE_MS) {
        xmm_release_cpu_caches();
        releases++;
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    }
    __atomic_store_n(&stop_workers, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);
    xmm_stats_get(&after);
    CHECK(after.invalid_frees == before.invalid_frees,
          "%d threads freeing, %ld releases racing them: no free reported (%llu)", WORKERS,
          releases, (unsigned long long)(after.invalid_frees - before.invalid_frees));
    return check_summary("pending_race release");
}

/* The deferral is real: with per-CPU caches, a free leaves the block's
 * first word as the program left it (the check and the free tag wait in
 * the pending slot) until this CPU's next free, which tags it. The
 * default path never defers, so a build whose free did not reach the
 * deferred path in this mode fails the first check. Pinned, so that both
 * frees run on one CPU. */
static int deferral_child(void)
{
    pin(sched_getcpu());
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    if (strcmp(stats.front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): the deferral not checked", stats.front_end);
        return check_summary("pending_race deferral");
    }
    const uint64_t written = 0x0123456789abcdefu;
    volatile uint64_t *block = xmm_malloc(SIZE);
    void *next = xmm_malloc(SIZE);
    block[0] = written;
    xmm_free((void *)block);
    uint64_t after_free = block[0];
    xmm_free(next);
    uint64_t after_next = block[0];
    CHECK(after_free == written, "a free leaves the first word alone until the next (%#llx)",
          (unsigned long long)after_free);
    CHECK(after_next != written, "the next free on the CPU tags it free (%#llx)",
          (unsigned long long)after_next);
    return check_summary("pending_race deferral");
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "deferral"))
        return deferral_child();
    if (argc > 1 && !strcmp(argv[1], "release"))
        return release_child();
    if (argc > 1 && !strcmp(argv[1], "child")) {
        cpus[0] = atoi(getenv("RACE_CPU0"));
        cpus[1] = atoi(getenv("RACE_CPU1"));
        return child();
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) {
        NOTE("fewer than two CPUs: skipped");
        return 77;
    }
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            cpus[found++] = cpu;
    char cpu0[32], cpu1[32];
    snprintf(cpu0, sizeof cpu0, "RACE_CPU0=%d", cpus[0]);
    snprintf(cpu1, sizeof cpu1, "RACE_CPU1=%d", cpus[1]);
    char warn[] = "XMM_INVALID_FREE=warn", deferred[] = "XMM_FREE_CHECK=deferred";
    char *env[] = {warn, deferred, cpu0, cpu1, NULL};
    int status = check_run_self("child", env);
    CHECK(status == 0, "the race's child passed (status %d)", status);
    char *release_env[] = {warn, deferred, NULL};
    status = check_run_self("release", release_env);
    CHECK(status == 0, "the release race's child passed (status %d)", status);
    char *deferral_env[] = {deferred, NULL};
    status = check_run_self("deferral", deferral_env);
    CHECK(status == 0, "the deferral's child passed (status %d)", status);
    return check_summary("pending_race");
}
