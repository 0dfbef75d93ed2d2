/*
 * rseq_ownership.c - the per-CPU caches never index out of range and never
 * take an rseq registration that is not XMM's to take.
 *
 * Sections (the program re-executes itself for those that need their own
 * environment or sandbox):
 *   unregistered  threads unregister glibc's rseq area (cpu_id becomes -1),
 *             or also mark it as glibc marks a failed registration (-2),
 *             while __rseq_size stays non-zero; then they allocate and
 *             free: per-thread caches, not slab 0xffffffff.
 *   tunable   under GLIBC_TUNABLES=glibc.pthread.rseq=0, which leaves rseq
 *             registration to another component, XMM uses per-thread caches
 *             and the program's own rseq() registration succeeds, in the main
 *             thread and in a new thread; with XMM_RSEQ=own as well, XMM
 *             registers its own area (per-CPU caches).
 *   late      a thread unregisters glibc's area after its first
 *             allocation: with per-CPU caches it stops at its next miss,
 *             saying why (it ran on slab 0 unprotected, as the kernel
 *             leaves mm_cid 0 in an unregistered area, and handed blocks
 *             out twice beside the thread that has that index).
 *   hidden    /sys and /proc hidden (a mount namespace, when this runs as
 *             root) and the process started pinned to CPU 0: later allowed
 *             onto every CPU, it allocates on each one.
 */
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#include "xmm.h"
#include "testlib.h"

static const char *front_end(void)
{
    static struct xmm_stats stats;
    stats.version = XMM_STATS_VERSION;
    if (xmm_stats_get(&stats) != 0)
        return "?";
    return stats.front_end;
}

/* Allocates and frees blocks of many sizes, checking their contents.
 * Returns the number of bad blocks. */
static unsigned long churn(unsigned rounds)
{
    enum { LIVE = 64 };
    void *blocks[LIVE] = {0};
    size_t sizes[LIVE] = {0};
    uint64_t state = 77;
    unsigned long bad = 0;
    for (unsigned i = 0; i < rounds; i++) {
        int slot = (int)(random_next(&state) % LIVE);
        if (blocks[slot]) {
            bad += pattern_find(blocks[slot], sizes[slot], sizes[slot]) != SIZE_MAX;
            free(blocks[slot]);
        }
        sizes[slot] = 1 + random_next(&state) % 2048;
        blocks[slot] = malloc(sizes[slot]);
        if (!blocks[slot]) {
            bad++;
            continue;
        }
        pattern_fill(blocks[slot], sizes[slot], sizes[slot]);
    }
    for (int slot = 0; slot < LIVE; slot++)
        if (blocks[slot]) {
            bad += pattern_find(blocks[slot], sizes[slot], sizes[slot]) != SIZE_MAX;
            free(blocks[slot]);
        }
    return bad;
}

static void *churn_thread(void *unused)
{
    return (void *)(uintptr_t)churn(20000);
}

static unsigned long churn_in_threads(int count)
{
    pthread_t threads[8];
    unsigned long bad = 0;
    for (int i = 0; i < count; i++)
        pthread_create(&threads[i], NULL, churn_thread, NULL);
    for (int i = 0; i < count; i++) {
        void *result;
        pthread_join(threads[i], &result);
        bad += (unsigned long)(uintptr_t)result;
    }
    return bad;
}

/* ---- unregistered: a thread whose glibc rseq area the kernel does not fill ----- */

/* glibc marks a thread whose registration failed with cpu_id -2
 * (RSEQ_CPU_ID_REGISTRATION_FAILED) and leaves __rseq_size non-zero (glibc
 * 2.36 aborts such a thread instead, later versions let it run); the
 * kernel leaves -1 in an area that was unregistered, as a component that
 * takes rseq over from glibc does. Either way the area is glibc's by its
 * offset and size, but no CPU number is in it. Such a thread, before its
 * first allocation, must get a per-thread cache. */
static void *allocate_unregistered(void *marker)
{
    char *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    if (syscall(SYS_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, RSEQ_FLAG_UNREGISTER,
                0x53053053) != 0)
        return (void *)(uintptr_t)-1;
    int32_t *cpu_id = (int32_t *)(area + offsetof(struct rseq, cpu_id));
    int32_t seen = *cpu_id;
    if (marker)
        *cpu_id = -2; /* what glibc writes when registration fails */
    printf("thread with its glibc rseq area unregistered: cpu_id %d%s\n", (int)seen,
           marker ? ", set to -2" : "");
    fflush(stdout);
    return (void *)(uintptr_t)churn(20000);
}

static void test_unregistered(void)
{
    free(malloc(100)); /* the main thread starts in per-CPU mode if it can */
    if (__rseq_size == 0) {
        CHECK(1, "glibc registered no rseq area here: section skipped");
        return;
    }
    for (int marker = 0; marker < 2; marker++) {
        pthread_t threads[4];
        unsigned long bad = 0, refused = 0;
        for (int i = 0; i < 4; i++)
            pthread_create(&threads[i], NULL, allocate_unregistered,
                           marker ? (void *)1 : NULL);
        for (int i = 0; i < 4; i++) {
            void *result;
            pthread_join(threads[i], &result);
            if (result == (void *)(uintptr_t)-1)
                refused++;
            else
                bad += (unsigned long)(uintptr_t)result;
        }
        CHECK(refused == 0, "the kernel unregistered glibc's area in %lu of 4 threads",
              4 - refused);
        CHECK(bad == 0, "threads with cpu_id %d in glibc's area allocate and free (%lu bad blocks)",
              marker ? -2 : -1, bad);
    }
    CHECK(churn(20000) == 0, "the main thread still allocates and frees");
}

/* ---- late: unregistered after the first allocation --------------------------------- */

static int late_child(void)
{
    free(malloc(100)); /* attached */
    char *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    if (syscall(SYS_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, RSEQ_FLAG_UNREGISTER,
                0x53053053) != 0)
        return 77;
    /* Past every cache's capacity: misses are certain. */
    for (int i = 0; i < 200000; i++)
        free(malloc(64 + (size_t)(i % 64) * 64));
    void *kept[20000];
    for (int i = 0; i < 20000; i++)
        kept[i] = malloc(256);
    for (int i = 0; i < 20000; i++)
        free(kept[i]);
    return 0;
}

static void test_late(void)
{
    if (__rseq_size == 0 || strcmp(front_end(), "per-cpu") != 0) {
        CHECK(1, "no per-CPU caches here (%s): section skipped", front_end());
        return;
    }
    static struct child_result result;
    memset(&result, 0, sizeof result);
    char *argv[] = {(char *)self_path(), "late", NULL};
    run_child(argv, NULL, NULL, 60, &result);
    if (WIFEXITED(result.status) && WEXITSTATUS(result.status) == 77) {
        CHECK(1, "the kernel refused the unregistration: section skipped");
        return;
    }
    CHECK(WIFSIGNALED(result.status) && WTERMSIG(result.status) == SIGABRT &&
              strstr(result.err, "rseq area was unregistered after the thread first allocated"),
          "glibc's area unregistered after the first allocation: stops at the next miss, "
          "saying why (%s; err: %s)",
          describe_status(result.status), result.err);
}

/* ---- tunable: rseq left to the program ------------------------------------------ */

static __thread struct rseq own_area __attribute__((aligned(32)));

/* The program's own rseq registration of the calling thread. */
static int register_own_area(void)
{
    return (int)syscall(SYS_rseq, &own_area, sizeof own_area, 0, 0x53053053);
}

static int thread_registration;

static void *register_in_thread(void *unused)
{
    free(malloc(64));
    thread_registration = register_own_area() == 0 ? 0 : errno;
    free(malloc(64));
    return NULL;
}

/* Run in a child with GLIBC_TUNABLES=glibc.pthread.rseq=0 (and argv[2] the
 * expected front end). */
static int tunable_child(const char *expected_front_end, int expect_registration)
{
    free(malloc(100));
    unsigned long bad = churn(20000) + churn_in_threads(2);
    int main_registration = register_own_area() == 0 ? 0 : errno;
    pthread_t thread;
    pthread_create(&thread, NULL, register_in_thread, NULL);
    pthread_join(thread, NULL);
    bad += churn(1000);
    printf("front end %s, program's rseq(): main %s, thread %s, %lu bad blocks\n", front_end(),
           strerror(main_registration), strerror(thread_registration), bad);
    int ok = !strcmp(front_end(), expected_front_end) && bad == 0;
    if (expect_registration)
        ok = ok && main_registration == 0 && thread_registration == 0;
    return ok ? 0 : 1;
}

static void test_tunable(void)
{
    static const char *const cases[][3] = {
        {"XMM_RSEQ=1", "per-thread", "1"},
        {"XMM_RSEQ=own", "per-cpu", "0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static struct child_result result;
        memset(&result, 0, sizeof result);
        char *argv[] = {(char *)self_path(), "tunable", (char *)cases[i][1],
                        (char *)cases[i][2], NULL};
        const char *add[] = {"GLIBC_TUNABLES=glibc.pthread.rseq=0", cases[i][0], NULL};
        run_child(argv, NULL, add, 60, &result);
        CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0,
              "GLIBC_TUNABLES=glibc.pthread.rseq=0 %s: %s front end%s (%s; out: %s err: %s)",
              cases[i][0], cases[i][1],
              cases[i][2][0] == '1' ? ", the program registers its own rseq area" : "",
              describe_status(result.status), result.out, result.err);
    }
}

/* ---- hidden: no /sys, no /proc, pinned at start, then every CPU --------------------- */

static int hidden_child(void)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_CONF);
    FILE *possible = fopen("/sys/devices/system/cpu/possible", "r");
    printf("sysfs %s; %d CPUs configured as glibc sees it now\n",
           possible ? "visible" : "hidden", cpus);
    if (possible)
        fclose(possible);
    unsigned long bad = churn(5000);
    int visited = 0;
    for (int cpu = 0; cpu < 1024; cpu++) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            continue;
        visited++;
        bad += churn(5000) + churn_in_threads(2);
    }
    /* Then every CPU at once: threads running side by side get distinct
     * concurrency ids (mm_cid) as well as CPU numbers. */
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int cpu = 0; cpu < 1024; cpu++)
        CPU_SET(cpu, &all);
    sched_setaffinity(0, sizeof all, &all);
    bad += churn_in_threads(4) + churn_in_threads(8);
    printf("allocated on %d CPUs, %lu bad blocks, front end %s\n", visited, bad, front_end());
    return bad == 0 && visited >= 1 ? 0 : 1;
}

static void test_hidden(void)
{
    int online = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (getuid() != 0 || online < 2) {
        CHECK(1, "needs root and 2 CPUs (uid %d, %d CPUs): section skipped", (int)getuid(),
              online);
        return;
    }
    static struct child_result result;
    memset(&result, 0, sizeof result);
    char script[512];
    snprintf(script, sizeof script,
             "mount -t tmpfs none /sys && mount -t tmpfs none /proc && exec taskset -c 0 '%s' hidden",
             self_path());
    char *argv[] = {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                    script, NULL};
    run_child(argv, NULL, NULL, 120, &result);
    if (WIFEXITED(result.status) && WEXITSTATUS(result.status) != 0 &&
        strstr(result.err, "unshare:")) {
        CHECK(1, "no mount namespace here (%s): section skipped", result.err);
        return;
    }
    CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0,
          "sysfs and procfs hidden, started on CPU 0, then allocating on every CPU (%s; out: %s "
          "err: %s)",
          describe_status(result.status), result.out, result.err);
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "tunable"))
        return tunable_child(argv[2], argv[3][0] == '1');
    if (argc >= 2 && !strcmp(argv[1], "hidden"))
        return hidden_child();
    if (argc >= 2 && !strcmp(argv[1], "late"))
        return late_child();
    expect_malloc_is_xmm();
    run_section("threads whose glibc rseq area holds no CPU number", test_unregistered);
    run_section("glibc's rseq area unregistered after the first allocation", test_late);
    run_section("GLIBC_TUNABLES=glibc.pthread.rseq=0", test_tunable);
    run_section("sysfs and procfs hidden, CPUs allowed after start", test_hidden);
    return check_summary("rseq_ownership");
}
