/* The allocator's lock (platform.h, struct xmm_lock): mutual exclusion and
 * no lost wake-up with four times more threads than CPUs, for long enough
 * that holders are preempted inside the lock and waiters sleep on the
 * futex; its owner as a fork child sees it; and a signal handler that
 * interrupted the holder is told, instead of waiting for itself. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"

#define SECONDS 2.0

static struct xmm_lock lock = XMM_LOCK_INITIALIZER;
static long counter;              /* plain: only ever changed under the lock */
static atomic_int inside;         /* threads inside the lock right now */
static atomic_long overlaps, acquisitions;
static atomic_int stop;

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void *contend(void *argument)
{
    long mine = 0;
    unsigned spin = (unsigned)(uintptr_t)argument;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (!xmm_lock_acquire(&lock)) {
            atomic_fetch_add(&overlaps, 1000000); /* never: not re-entered */
            continue;
        }
        if (atomic_fetch_add(&inside, 1) != 0)
            atomic_fetch_add(&overlaps, 1);
        counter++;
        /* Hold it a while now and then, so that waiters go to sleep and
         * holders get preempted inside. */
        for (unsigned i = 0; i < (mine % 64 == 0 ? 2000 + spin : 10); i++)
            __asm__ __volatile__("" ::: "memory");
        atomic_fetch_sub(&inside, 1);
        xmm_lock_release(&lock);
        mine++;
    }
    atomic_fetch_add(&acquisitions, mine);
    return NULL;
}

static void test_exclusion(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cpus * 4 < 8 ? 8 : cpus * 4);
    if (threads > 64)
        threads = 64;
    pthread_t ids[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, contend, (void *)(uintptr_t)(i * 37));
    double start = now_seconds();
    while (now_seconds() - start < SECONDS)
        usleep(10000);
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL); /* a lost wake-up hangs here */
    CHECK(atomic_load(&overlaps) == 0, "%ld times two threads were inside at once",
          atomic_load(&overlaps));
    CHECK(counter == atomic_load(&acquisitions), "counter %ld == %ld acquisitions", counter,
          atomic_load(&acquisitions));
    CHECK(xmm_lock_holder(&lock) == XMM_LOCK_FREE, "free at the end");
    printf("%d threads on %ld CPUs: %ld acquisitions in %.1f s\n", threads, cpus, counter, SECONDS);
}

/* ---- fork: the child tells its own lock from a lost thread's ------------------ */

static struct xmm_lock held_by_other = XMM_LOCK_INITIALIZER;
static atomic_int other_holds;
static atomic_int release_other;

static void *hold_other(void *unused)
{
    (void)unused;
    if (!xmm_lock_acquire(&held_by_other))
        return NULL;
    atomic_store(&other_holds, 1);
    while (!atomic_load(&release_other))
        usleep(1000);
    xmm_lock_release(&held_by_other);
    return NULL;
}

static void test_fork_holders(void)
{
    struct xmm_lock mine = XMM_LOCK_INITIALIZER;
    pthread_t other;
    pthread_create(&other, NULL, hold_other, NULL);
    while (!atomic_load(&other_holds))
        usleep(1000);
    CHECK(xmm_lock_acquire(&mine), "take a lock");
    CHECK(xmm_lock_holder(&mine) == XMM_LOCK_HELD_BY_CALLER, "held by the caller");
    CHECK(xmm_lock_holder(&held_by_other) == XMM_LOCK_HELD_BY_OTHER, "held by the other thread");
    pid_t child = fork();
    if (child == 0) {
        int ok = xmm_lock_holder(&mine) == XMM_LOCK_HELD_BY_CALLER &&
                 xmm_lock_holder(&held_by_other) == XMM_LOCK_HELD_BY_OTHER;
        xmm_lock_reset(&held_by_other);
        ok = ok && xmm_lock_acquire(&held_by_other); /* repaired: no wait */
        xmm_lock_release(&held_by_other);
        xmm_lock_release(&mine);
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    alarm(20);
    waitpid(child, &status, 0);
    alarm(0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the fork child sees the forking thread's lock as its own, the lost thread's as "
          "another's, and can repair the latter (status %d)",
          status);
    xmm_lock_release(&mine);
    atomic_store(&release_other, 1);
    pthread_join(other, NULL);
}

/* ---- a signal handler that interrupted the holder ---------------------------- */

static struct xmm_lock signal_lock = XMM_LOCK_INITIALIZER;
static volatile sig_atomic_t handler_result = -1;

static void on_signal(int signal_number)
{
    (void)signal_number;
    bool taken = xmm_lock_acquire(&signal_lock);
    if (taken)
        xmm_lock_release(&signal_lock);
    handler_result = taken;
}

static void test_signal_reentry(void)
{
    signal(SIGUSR1, on_signal);
    CHECK(xmm_lock_acquire(&signal_lock), "take the lock");
    raise(SIGUSR1); /* the handler runs now, inside the lock */
    CHECK(handler_result == 0, "the handler is told the lock is its own thread's (%d)",
          (int)handler_result);
    xmm_lock_release(&signal_lock);
    raise(SIGUSR1);
    CHECK(handler_result == 1, "outside the lock the handler takes it (%d)", (int)handler_result);
}

int main(void)
{
    alarm(120); /* a lost wake-up would hang */
    test_exclusion();
    test_fork_holders();
    test_signal_reentry();
    return check_summary("lock");
}
