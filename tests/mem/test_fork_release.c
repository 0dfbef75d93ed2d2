/*
 * test_fork_release - a fork that cuts a release of every CPU's cache
 * short hands no block out twice in the child (src/mem/cpu_cache.c,
 * xmm_cpu_cache_after_fork_child). The release locks every header, moves
 * each bin's objects to the central layer a transfer batch at a time and
 * unlocks; a child forked in the middle inherits headers still locked,
 * some half drained: their first batches are on the central stacks, and
 * the header still counts them. Reopened as they were, those objects
 * would be popped from the bin and refilled from the central layer too.
 *
 *   fork     two threads, pinned to two CPUs, each fill their cache with
 *            400 blocks of each of five sizes, then trim (malloc_trim: a
 *            release), in a loop, while the main thread forks; in each
 *            child two threads pinned to the same two CPUs (so that each
 *            reads a slab a worker filled, whether slabs go by CPU or by
 *            mm_cid) malloc 1,500 blocks of each size (more than a bin holds:
 *            they reach the central layer), write a tag into each block's
 *            first and last words, then check them all. A block handed
 *            out twice carries the other tag, or, freed twice, is
 *            reported by XMM, which aborts the child. A child that reopens
 *            the headers with their counts (the mutation this was tried
 *            against) fails 4-7 of 200 children here.
 *
 * Skipped (77) without per-CPU caches.
 */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define SECONDS 6.0
#define MINIMUM_FORKS 200
#define CHILD_BLOCKS 1500
#define FILL_BLOCKS 400
#define WORKERS 2
#define CHILD_MOST_BAD 100  /* exit status: the bad blocks, at most this */
#define CHILD_NO_THREAD 101 /* exit status: a thread could not start */

static const size_t sizes[] = {16, 48, 128, 720, 3072};
#define SIZE_COUNT (sizeof sizes / sizeof *sizes)

static int stop;

/* The first two CPUs this process may run on (the same one twice where
 * it may run on one only). */
static int worker_cpu[WORKERS];

static void choose_cpus(void)
{
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < WORKERS; cpu++)
        if (CPU_ISSET(cpu, &allowed))
            worker_cpu[found++] = cpu;
    for (int i = found; i < WORKERS; i++)
        worker_cpu[i] = worker_cpu[0];
}

static void pin_to(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
}

/* "exit N" or "signal N". */
static const char *describe(int status)
{
    static char text[32];
    if (WIFSIGNALED(status))
        snprintf(text, sizeof text, "signal %d", WTERMSIG(status));
    else
        snprintf(text, sizeof text, "exit %d", WEXITSTATUS(status));
    return text;
}

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Fills this thread's cache (FILL_BLOCKS blocks of each size malloc'd,
 * then freed: its bins hold several transfer batches), then trims, which
 * drains them a batch at a time. */
static void *fill_and_trim(void *worker)
{
    pin_to(worker_cpu[(uintptr_t)worker]);
    static __thread void *held[FILL_BLOCKS];
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        for (unsigned s = 0; s < SIZE_COUNT; s++) {
            for (int i = 0; i < FILL_BLOCKS; i++)
                held[i] = malloc(sizes[s]);
            for (int i = 0; i < FILL_BLOCKS; i++)
                free(held[i]);
        }
        malloc_trim(0);
    }
    return NULL;
}

/* One thread of the child: the number of its blocks missing, or whose
 * words were overwritten by another block's (handed out twice). */
static void *child_checks(void *worker)
{
    pin_to(worker_cpu[(uintptr_t)worker]);
    static __thread uintptr_t *held[CHILD_BLOCKS];
    uintptr_t bad = 0;
    for (unsigned s = 0; s < SIZE_COUNT; s++) {
        size_t last = sizes[s] / sizeof(uintptr_t) - 1;
        for (int i = 0; i < CHILD_BLOCKS; i++) {
            held[i] = malloc(sizes[s]);
            if (held[i])
                held[i][0] = held[i][last] = (uintptr_t)held + (uintptr_t)i * SIZE_COUNT + s;
        }
        for (int i = 0; i < CHILD_BLOCKS; i++) {
            uintptr_t tag = (uintptr_t)held + (uintptr_t)i * SIZE_COUNT + s;
            bad += !held[i] || held[i][0] != tag || held[i][last] != tag;
        }
        for (int i = 0; i < CHILD_BLOCKS; i++)
            free(held[i]);
    }
    return (void *)bad;
}

/* The child: WORKERS threads check at once, each on a worker's CPU, so
 * that each runs on a slab index of its own (a lone thread would have
 * mm_cid 0) and every slab a worker filled is read; exits with the number
 * of bad blocks (at most CHILD_MOST_BAD). A
 * block handed out twice and then freed twice may be reported by XMM
 * itself instead, which aborts the child. */
static void child_main(void)
{
    alarm(20);
    pthread_t threads[WORKERS];
    uintptr_t bad = 0;
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&threads[i], NULL, child_checks, (void *)(uintptr_t)i) != 0)
            _exit(CHILD_NO_THREAD);
    for (int i = 0; i < WORKERS; i++) {
        void *result;
        pthread_join(threads[i], &result);
        bad += (uintptr_t)result;
    }
    _exit(bad > CHILD_MOST_BAD ? CHILD_MOST_BAD : (int)bad);
}

static void fork_case(void)
{
    pthread_t workers[WORKERS];
    choose_cpus();
    for (int i = 0; i < WORKERS; i++)
        CHECKQ(pthread_create(&workers[i], NULL, fill_and_trim, (void *)(uintptr_t)i) == 0,
               "worker started");
    int forks = 0, failed = 0, bad_blocks = 0, first_status = 0;
    double start = now_seconds();
    while (forks < MINIMUM_FORKS || now_seconds() - start < SECONDS) {
        pid_t child = fork();
        if (child == 0)
            child_main();
        CHECKQ(child > 0, "fork");
        int status = 0;
        waitpid(child, &status, 0);
        forks++;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            if (!failed++)
                first_status = status;
            if (WIFEXITED(status) && WEXITSTATUS(status) <= CHILD_MOST_BAD)
                bad_blocks += WEXITSTATUS(status);
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i], NULL);
    CHECK(failed == 0,
          "%d forks during trims: every child's blocks are distinct (%d children failed, %d "
          "blocks handed out twice; first: %s; exit 101: no thread)",
          forks, failed, bad_blocks, failed ? describe(first_status) : "none");
}

int main(int argc, char **argv)
{
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    CHECKQ(xmm_stats_get(&stats) == 0, "xmm_stats_get");
    if (strcmp(stats.front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", stats.front_end);
        return 77;
    }
    if (argc > 1) {
        fork_case();
        return check_summary(argv[1]);
    }
    char *environment[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    CHECK(check_run_self("fork", environment) == 0, "fork case");
    return check_summary("fork_release");
}
