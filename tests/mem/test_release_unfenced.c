/*
 * test_release_unfenced - a release of the per-CPU caches where the
 * kernel refuses membarrier (src/mem/cpu_cache.c: without its fence only
 * the calling thread's slab can be drained safely, release_current_slab;
 * every other slab's headers are locked and unlocked again without a
 * drain). The child runs under a seccomp filter that fails membarrier with
 * ENOSYS, installed before it starts, so XMM starts without it:
 *
 *   path     membarrier is refused in the child; a thread caches 100
 *            blocks of 64 B in its slab and waits while the main thread
 *            trims on another slab: the waiting thread's blocks stay
 *            cached (a fenced release drains them; the same case with
 *            membarrier, run as a control, shows them drained), and the
 *            trimming thread's own cache is emptied
 *   stress   4 threads (more than this machine's cores) cycle tagged
 *            blocks of six sizes while the main thread trims every
 *            millisecond: no block handed out twice or changed
 *
 * Skipped (77) without per-CPU caches, or where seccomp cannot be used.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "stats_snapshot.h"
#include "slab_index.h"
#include "trim_stress.h"
#include "xmm.h"

/* The filter: membarrier fails with ENOSYS, everything else runs. */
static int refuse_membarrier(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof *filter, .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
}

#define HELD 100
static void *held[HELD];
static int holder_state; /* 0 starting, 1 blocks cached, 2 may finish */
static int holder_slab = -1;

/* The CPUs the process may run on, before any pinning. */
static cpu_set_t allowed;

/* Pins the calling thread to the `nth` CPU of `allowed` (the last one if
 * there are fewer). */
static void pin_to_nth_cpu(int nth)
{
    cpu_set_t one;
    int chosen = -1, seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && seen <= nth; cpu++)
        if (CPU_ISSET(cpu, &allowed)) {
            chosen = cpu;
            seen++;
        }
    CPU_ZERO(&one);
    CPU_SET(chosen, &one);
    sched_setaffinity(0, sizeof one, &one);
}

/* Keeps its slab index while it waits: it runs (spins) on a CPU of its
 * own, so that the main thread, on another, has another index (a thread
 * that sleeps may give its mm_cid away). */
static void *holder(void *unused)
{
    (void)unused;
    pin_to_nth_cpu(1);
    for (int i = 0; i < HELD; i++)
        held[i] = malloc(64);
    for (int i = 0; i < HELD; i++)
        free(held[i]);
    holder_slab = slab_index();
    __atomic_store_n(&holder_state, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&holder_state, __ATOMIC_ACQUIRE) != 2)
        __builtin_ia32_pause();
    return NULL;
}

/* `fenced`: the control, with membarrier. */
static void path_case(bool fenced)
{
    long query = syscall(SYS_membarrier, 0 /* MEMBARRIER_CMD_QUERY */, 0, 0);
    if (fenced)
        CHECK(query >= 0, "membarrier answers in the control (%ld)", query);
    else
        CHECK(query == -1 && errno == ENOSYS, "membarrier is refused (%ld, errno %d)", query,
              errno);
    sched_getaffinity(0, sizeof allowed, &allowed);
    pin_to_nth_cpu(0);
    pthread_t thread;
    CHECKQ(pthread_create(&thread, NULL, holder, NULL) == 0, "holder started");
    while (!__atomic_load_n(&holder_state, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause(); /* running, as the holder: two indexes */
    /* This thread's own cache: 50 blocks of 4 KiB. */
    void *own[50];
    for (int i = 0; i < 50; i++)
        own[i] = malloc(4096);
    for (int i = 0; i < 50; i++)
        free(own[i]);
    int self = slab_index();
    uint64_t before = snapshot().bytes_cached;
    malloc_trim(0);
    uint64_t after = snapshot().bytes_cached;
    if (self == holder_slab || self < 0) {
        NOTE("the two threads share a slab index (%d): not checked", self);
    } else if (fenced) {
        CHECK(after < HELD * 64, "a fenced release drains every slab (%lu bytes cached of %lu)",
              (unsigned long)after, (unsigned long)before);
    } else {
        CHECK(after >= HELD * 64 && after < before,
              "the waiting thread's 64-byte blocks stay cached, the trimming thread's are "
              "drained (%lu bytes cached, %lu before)",
              (unsigned long)after, (unsigned long)before);
    }
    __atomic_store_n(&holder_state, 2, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
}

static unsigned long stress_bad;

static void *stress_worker(void *tag)
{
    tagged_size_rounds(4000, 40, 5, (uintptr_t)tag, &stress_bad);
    return NULL;
}

static void stress_case(void)
{
    unsigned trims = trim_stress_run(4, stress_worker);
    CHECK(stress_bad == 0, "%u trims without membarrier: %lu blocks handed out twice or changed",
          trims, stress_bad);
    CHECK(trims > 20, "the trims ran while the threads did (%u)", trims);
}

/* Runs this test again as `mode`, under the filter unless `fenced`. */
static int run_child(const char *mode, bool fenced)
{
    char *environment[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    return check_run_self_prepared(mode, environment, fenced ? NULL : refuse_membarrier);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        slab_index_init();
        if (!strcmp(argv[1], "path"))
            path_case(false);
        else if (!strcmp(argv[1], "path-fenced"))
            path_case(true);
        else if (!strcmp(argv[1], "stress"))
            stress_case();
        return check_summary(argv[1]);
    }
    if (strcmp(snapshot().front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", snapshot().front_end);
        return 77;
    }
    int status = run_child("path", false);
    if (status == 77) {
        NOTE("seccomp filters are not available here: skipped");
        return 77;
    }
    CHECK(status == 0, "path case (status %d)", status);
    CHECK(run_child("path-fenced", true) == 0, "path case with membarrier (the control)");
    CHECK(run_child("stress", false) == 0, "stress case");
    return check_summary("release_unfenced");
}
