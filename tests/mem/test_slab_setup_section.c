/*
 * test_slab_setup_section - the critical section that sets up a per-CPU
 * slab on its first use (xmm_rseq_set_up_slab, platform/x86_64/
 * rseq_percpu.h), run on slabs of this test's own, against a thread that
 * does what a release does to headers meanwhile: lock every header that
 * is not 0 with a compare-and-swap (src/mem/cpu_cache.c, lock_header).
 *
 * One thread sets up a slab, round after round (every slab zeroed
 * between rounds) for 2 s and on until 500 restarts (20 s at most),
 * while a timer every 10 us aborts its sections (20 restarts at least:
 * the emulated NUMA VM's timer gives few) and a second thread, on the
 * other core or preempting it on the same one, locks every header it
 * finds set. After each round:
 *   - every lock the locker took is still there: the set-up stores only
 *     over zero headers, so no restart undoes a lock;
 *   - every header is 0, its set-up value, or locked; the slab the
 *     section reported is set up completely;
 *   - whenever the locker saw a header set, the slab's node word was
 *     already in place (the section stores it first).
 * And a section that finds the thread on another slab than the one it
 * was given writes nothing.
 *
 * Skipped (77) where glibc registered no rseq area.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "rseq_percpu.h"

#define BINS 101 /* headers 1..100, as many as XMM's bins */
#define SLAB_BYTES ((size_t)1 << XMM_SLAB_SHIFT)
#define LOCKED(current) ((uint64_t)(current) | XMM_SLAB_LOCKED_BITS)

static char *test_slabs;
static int slab_count;
static uint64_t headers[BINS];
static uint64_t *slab(int index)
{
    return (uint64_t *)(test_slabs + (size_t)index * SLAB_BYTES);
}
static uint64_t node_of(int index)
{
    return (uint64_t)(index % 7) + 1; /* never 0: a node word left out shows */
}

/* The locker's state: RUN while a round runs, PARK to stop (it answers
 * with `parked`). */
enum { PARK, RUN, DONE };
static int phase = PARK;
static int parked;
static unsigned char (*locked_by_locker)[BINS]; /* per slab, per header */
static unsigned long locks_taken, node_missing;

static void *locker(void *unused)
{
    (void)unused;
    for (;;) {
        int now = __atomic_load_n(&phase, __ATOMIC_ACQUIRE);
        if (now == DONE)
            return NULL;
        if (now == PARK) {
            __atomic_store_n(&parked, 1, __ATOMIC_RELEASE);
            sched_yield();
            continue;
        }
        for (int index = 0; index < slab_count; index++)
            for (unsigned bin = 1; bin < BINS; bin++) {
                uint64_t *header = &slab(index)[bin];
                uint64_t value = __atomic_load_n(header, __ATOMIC_ACQUIRE);
                if (value == 0 || (value & XMM_SLAB_LOCKED_BITS) == XMM_SLAB_LOCKED_BITS)
                    continue;
                if (__atomic_load_n(&slab(index)[0], __ATOMIC_ACQUIRE) != node_of(index))
                    node_missing++;
                if (__atomic_compare_exchange_n(header, &value, LOCKED(value & 0xffffffffu), false,
                                                __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                    locked_by_locker[index][bin] = 1;
                    locks_taken++;
                }
            }
    }
}

static void park_locker(void)
{
    __atomic_store_n(&parked, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&phase, PARK, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&parked, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void on_timer(int signal_number)
{
    (void)signal_number;
}

/* Round results: headers that are none of 0, set-up value, lock; locks
 * lost; slabs reported set up with a header or node word missing. */
static unsigned long torn, locks_lost, incomplete;

static void check_round(int set_up)
{
    for (int index = 0; index < slab_count; index++) {
        uint64_t *words = slab(index);
        bool any = false;
        for (unsigned bin = 1; bin < BINS; bin++) {
            uint64_t value = words[bin];
            bool locked = value == LOCKED(headers[bin] & 0xffffffffu);
            any |= value != 0;
            if (value != 0 && value != headers[bin] && !locked)
                torn++;
            if (locked_by_locker[index][bin] && !locked)
                locks_lost++;
            if (index == set_up && value == 0)
                incomplete++;
        }
        if ((any || index == set_up) && words[0] != node_of(index))
            incomplete++;
    }
}

static void zero_slabs(void)
{
    for (int index = 0; index < slab_count; index++)
        memset(slab(index), 0, BINS * sizeof(uint64_t));
    memset(locked_by_locker, 0, (size_t)slab_count * BINS);
}

int main(void)
{
    if (__rseq_size == 0) {
        NOTE("no rseq area registered by glibc: skipped");
        return 77;
    }
    /* A slab for every CPU number the kernel may write into the area: the
     * section writes the slab of whatever CPU the thread is on. */
    slab_count = (int)sysconf(_SC_NPROCESSORS_CONF);
    if (slab_count < 1)
        slab_count = 1;
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    const uint32_t *index = (const uint32_t *)((char *)area + 4); /* cpu_id */
    test_slabs = mmap(NULL, (size_t)slab_count * SLAB_BYTES, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    locked_by_locker = mmap(NULL, (size_t)slab_count * BINS, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECKQ(test_slabs != MAP_FAILED && locked_by_locker != MAP_FAILED, "slabs mapped");
    if (test_slabs == MAP_FAILED || locked_by_locker == MAP_FAILED)
        return check_summary("slab_setup_section");
    for (unsigned bin = 1; bin < BINS; bin++) {
        uint64_t begin = XMM_SLAB_FIRST_SLOT + 16 * bin;
        headers[bin] = begin | (begin + 16) << XMM_SLAB_END_SHIFT | begin << XMM_SLAB_BEGIN_SHIFT;
    }

    /* Another slab than this thread's: nothing written. */
    uint32_t here = __atomic_load_n(index, __ATOMIC_RELAXED);
    uint32_t other = slab_count > 1 ? (here + 1) % (uint32_t)slab_count : here + 1;
    bool refused = !xmm_rseq_set_up_slab(area, index, test_slabs, other, node_of((int)other),
                                         headers, BINS);
    bool untouched = other >= (uint32_t)slab_count ||
                     (slab((int)other)[0] == 0 && slab((int)other)[1] == 0);
    CHECK(refused && untouched, "a section on another slab than the one given writes nothing");

    struct sigaction action = {.sa_handler = on_timer, .sa_flags = SA_RESTART};
    sigaction(SIGRTMIN, &action, NULL);
    struct sigevent event = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN};
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    CHECKQ(timer_create(CLOCK_MONOTONIC, &event, &timer) == 0, "timer created");
    struct itimerspec every = {{0, 10000}, {0, 10000}};
    timer_settime(timer, 0, &every, NULL);

    pthread_t thread;
    CHECKQ(pthread_create(&thread, NULL, locker, NULL) == 0, "locker started");
    uint64_t restarts_before = __atomic_load_n(&xmm_rseq_restart_count, __ATOMIC_RELAXED);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long rounds = 0, moved = 0, locked_rounds = 0;
    long elapsed_ns;
    do {
        park_locker();
        zero_slabs();
        unsigned long locks_at_start = locks_taken; /* the locker is parked */
        __atomic_store_n(&phase, RUN, __ATOMIC_RELEASE);
        int set_up = -1;
        while (set_up < 0) {
            uint32_t expected = __atomic_load_n(index, __ATOMIC_RELAXED);
            if (expected >= (uint32_t)slab_count) { /* the section would write past them */
                NOTE("CPU %u beyond the %d CPUs sysconf counts: skipped", expected, slab_count);
                return 77;
            }
            if (xmm_rseq_set_up_slab(area, index, test_slabs, expected, node_of((int)expected),
                                     headers, BINS))
                set_up = (int)expected;
            else
                moved++;
        }
        /* Let the locker lock what it finds, then stop it and check. */
        for (volatile int spin = 0; spin < 200; spin++)
            ;
        park_locker();
        check_round(set_up);
        rounds++;
        locked_rounds += locks_taken > locks_at_start;
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed_ns = (now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec);
        /* At least 2 s, and on until 500 restarts and 100 rounds in which
         * the locker ran (a loaded machine runs fewer rounds, and the
         * locker finds the CPU in fewer of them: pinned to one CPU, it
         * locked in 100 rounds of 20,965), for 20 s at most. */
    } while (elapsed_ns < 2000000000L ||
             ((__atomic_load_n(&xmm_rseq_restart_count, __ATOMIC_RELAXED) - restarts_before < 500 ||
               locked_rounds < 100) &&
              elapsed_ns < 20000000000L));
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(timer, 0, &off, NULL);
    __atomic_store_n(&phase, DONE, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    uint64_t restarts = __atomic_load_n(&xmm_rseq_restart_count, __ATOMIC_RELAXED) - restarts_before;

    NOTE("%lu rounds, %lu restarts, %lu sections on a slab the thread had left, %lu locks taken "
         "in %lu rounds",
         rounds, (unsigned long)restarts, moved, locks_taken, locked_rounds);
    CHECK(restarts >= 20, "the timer aborted sections (%lu restarts)", (unsigned long)restarts);
    CHECK(locked_rounds >= 20, "the locker locked headers while they were set up (%lu locks, "
          "in %lu rounds of %lu)",
          locks_taken, locked_rounds, rounds);
    CHECK(locks_lost == 0, "no restart undid a lock (%lu lost)", locks_lost);
    CHECK(torn == 0, "every header 0, set up or locked (%lu not)", torn);
    CHECK(incomplete == 0, "each slab reported set up has its node word and every header (%lu "
          "missing)", incomplete);
    CHECK(node_missing == 0, "no header set before its slab's node word (%lu)", node_missing);
    return check_summary("slab_setup_section");
}
