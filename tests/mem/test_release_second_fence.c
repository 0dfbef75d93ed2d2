/*
 * test_release_second_fence - a release of every CPU's cache whose second
 * membarrier fails (src/mem/cpu_cache.c, release_all_slabs). The first
 * fence lets the release drain every locked header; the second restarts
 * the sections that may still hold a drained header's old `current`. If
 * that second call fails, unlocking would let such a section pop a drained
 * object or commit a stale count, so the headers stay locked and empty
 * until the next release reopens them. The kernel's own reason for such a
 * failure is ENOMEM (its cpumask allocation); here a seccomp filter hands
 * every membarrier call to a supervising thread (SECCOMP_RET_USER_NOTIF),
 * which lets the calls through or fails the second fence of a release
 * with ENOMEM:
 *
 *   path     100 blocks of 64 B cached, then a release whose second fence
 *            fails: the caches hold nothing, and 100 more blocks freed
 *            stay out of them (their headers are still locked); the next
 *            release, with both fences, reopens them: 100 blocks freed
 *            are cached again
 *   stress   4 threads cycle tagged blocks of six sizes while the main
 *            thread trims every millisecond, the second fence of every
 *            other release failing (so that releases that lock, drain and
 *            unlock alternate with ones that leave the headers locked): no
 *            block handed out twice or changed, and every release made the
 *            fence calls it should
 *
 * The path case runs pinned to one CPU (the supervisor too): a thread
 * that moved to a slab no release has locked would cache its frees there.
 * It checks the slab index as well (a sleeping thread may get another
 * mm_cid), and notes instead of checking if it changed.
 *
 * Skipped (77) without per-CPU caches or membarrier's RSEQ commands (Linux
 * 5.10, which also has the user notifications' CONTINUE, 5.5), or where
 * seccomp user notifications cannot be used.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "stats_snapshot.h"
#include "slab_index.h"
#include "trim_stress.h"
#include "xmm.h"

/* ---- the supervisor: every membarrier call of the process, answered ---- */

static int listener = -1;
static int fail_second_fences;       /* 1: each release's second fence fails; 2: every
                                      * other release's */
static unsigned long fences_seen;    /* MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ calls */
static unsigned long fences_failed;

/* Installs the filter on the calling thread (and the threads it starts
 * after): membarrier goes to the listener, everything else runs. */
static int install_filter(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof *filter, .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    return listener >= 0 ? 0 : -1;
}

/* Releases come one at a time (release_lock) and each makes two fence
 * calls while none fails before its second: the even-numbered calls are
 * the second fences (the stress case checks the count). */
static bool fails(const struct seccomp_notif *call)
{
    if (call->data.args[0] != MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)
        return false;
    unsigned long seen = __atomic_add_fetch(&fences_seen, 1, __ATOMIC_SEQ_CST);
    int mode = __atomic_load_n(&fail_second_fences, __ATOMIC_SEQ_CST);
    if (seen % 2 == 0 && (mode == 1 || (mode == 2 && seen % 4 == 0))) {
        __atomic_add_fetch(&fences_failed, 1, __ATOMIC_SEQ_CST);
        return true;
    }
    return false;
}

/* A supervisor that cannot answer would leave the next membarrier
 * waiting for ever: the test fails at once instead. */
__attribute__((noreturn)) static void supervisor_failed(const char *call)
{
    char line[96];
    int length = snprintf(line, sizeof line, "FAIL the supervisor's %s: errno %d\n", call, errno);
    write(2, line, (size_t)length);
    _exit(2);
}

static void *supervise(void *unused)
{
    (void)unused;
    for (;;) {
        struct seccomp_notif call;
        memset(&call, 0, sizeof call);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &call) != 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            supervisor_failed("SECCOMP_IOCTL_NOTIF_RECV");
        }
        struct seccomp_notif_resp answer = {.id = call.id};
        if (fails(&call))
            answer.error = -ENOMEM;
        else
            answer.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &answer) != 0 && errno != ENOENT)
            supervisor_failed("SECCOMP_IOCTL_NOTIF_SEND");
    }
}

/* Pins the calling thread, and the threads it starts after, to the first
 * CPU it may run on. */
static void pin_to_first_cpu(void)
{
    cpu_set_t allowed, one;
    sched_getaffinity(0, sizeof allowed, &allowed);
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed)) {
            CPU_SET(cpu, &one);
            break;
        }
    CHECKQ(sched_setaffinity(0, sizeof one, &one) == 0, "pinned");
}

/* The filter and its supervisor; exits 77 where membarrier has no RSEQ
 * commands (asked before the filter: the supervisor needs CONTINUE, which
 * every kernel with them has) or the filter cannot be installed. */
static void start_supervisor(void)
{
    long query = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (query < 0 || !(query & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)) {
        NOTE("membarrier has no RSEQ commands here (%ld, errno %d): skipped", query, errno);
        exit(77);
    }
    if (install_filter() != 0) {
        NOTE("seccomp user notifications are not available (errno %d): skipped", errno);
        exit(77);
    }
    pthread_t thread;
    CHECKQ(pthread_create(&thread, NULL, supervise, NULL) == 0, "supervisor started");
    pthread_detach(thread);
    query = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    CHECKQ(query >= 0 && (query & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ),
           "membarrier answers through the supervisor (%ld)", query);
}

/* ---- the cases ------------------------------------------------------------ */

#define BLOCKS 100

/* Mallocs and frees BLOCKS blocks of 64 B, all held at once; false when
 * two of them were the same block. */
static bool cycle_blocks(void)
{
    static void *held[BLOCKS];
    bool distinct = true;
    for (int i = 0; i < BLOCKS; i++) {
        held[i] = malloc(64);
        memset(held[i], i, 64);
    }
    for (int i = 0; i < BLOCKS; i++)
        distinct &= ((unsigned char *)held[i])[63] == (unsigned char)i;
    for (int i = 0; i < BLOCKS; i++)
        free(held[i]);
    return distinct;
}

static void path_case(void)
{
    pin_to_first_cpu();
    start_supervisor();
    slab_index_init();
    cycle_blocks();
    uint64_t cached = snapshot().bytes_cached;
    CHECK(cached >= BLOCKS * 64, "100 blocks of 64 B freed are cached (%lu bytes)",
          (unsigned long)cached);

    int slab = slab_index();
    __atomic_store_n(&fail_second_fences, 1, __ATOMIC_SEQ_CST);
    unsigned long failed_before = __atomic_load_n(&fences_failed, __ATOMIC_SEQ_CST);
    malloc_trim(0);
    __atomic_store_n(&fail_second_fences, 0, __ATOMIC_SEQ_CST);
    CHECK(__atomic_load_n(&fences_failed, __ATOMIC_SEQ_CST) == failed_before + 1,
          "the release's second fence failed (%lu fences, %lu failed)", fences_seen,
          fences_failed);
    cached = snapshot().bytes_cached;
    CHECK(cached == 0, "the first fence drained every cache (%lu bytes cached)",
          (unsigned long)cached);
    CHECK(cycle_blocks(), "100 blocks malloc'd with the headers locked are distinct");
    cached = snapshot().bytes_cached;
    if (slab_index() != slab)
        NOTE("the slab index changed (%d to %d): the locked caches not checked", slab,
             slab_index());
    else
        CHECK(cached == 0, "frees miss the locked caches (%lu bytes cached): not reopened "
              "without the second fence", (unsigned long)cached);

    malloc_trim(0);
    CHECK(cycle_blocks(), "100 blocks malloc'd after the reopening release are distinct");
    cached = snapshot().bytes_cached;
    CHECK(cached >= BLOCKS * 64, "a release with both fences reopens the caches (%lu bytes "
          "cached)", (unsigned long)cached);
}

static unsigned long stress_bad;

static void *stress_worker(void *tag)
{
    tagged_size_rounds(8000, 40, 5, (uintptr_t)tag, &stress_bad);
    return NULL;
}

static void stress_case(void)
{
    start_supervisor();
    __atomic_store_n(&fail_second_fences, 2, __ATOMIC_SEQ_CST);
    unsigned trims = trim_stress_run(4, stress_worker);
    CHECK(stress_bad == 0,
          "%u trims, every other one's second fence failing: %lu blocks handed out twice or "
          "changed", trims, stress_bad);
    /* Only the trims release: each made both fence calls (none failed
     * its first), and every other one's second failed. */
    CHECK(trims > 20 && fences_seen == 2ul * trims && fences_failed == trims / 2,
          "the trims ran while the threads did, each with two fences, every other second one "
          "failing (%u trims, %lu fences, %lu failed)", trims, fences_seen, fences_failed);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "path"))
            path_case();
        else if (!strcmp(argv[1], "stress"))
            stress_case();
        return check_summary(argv[1]);
    }
    if (strcmp(snapshot().front_end, "per-cpu") != 0) {
        NOTE("no per-CPU caches here (%s): skipped", snapshot().front_end);
        return 77;
    }
    char *environment[] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0", NULL};
    int status = check_run_self("path", environment);
    if (status == 77) {
        NOTE("seccomp user notifications or membarrier are not available: skipped");
        return 77;
    }
    CHECK(status == 0, "path case (status %d)", status);
    CHECK(check_run_self("stress", environment) == 0, "stress case");
    return check_summary("release_second_fence");
}
