/* Restarted critical sections stay protected. A thread-directed POSIX
 * timer fires every 30 microseconds; its handler allocates and frees on
 * the same CPU's cache that the interrupted thread is using, so signals land
 * inside critical sections, including ones that are already restarting.
 * The kernel clears the rseq descriptor on abort: a restart that did not
 * re-arm it would run unprotected, and the next signal inside it would let
 * the handler and the thread take the same object. A table of live blocks
 * catches a block handed out twice or freed while not live.
 * The race it guards against was found by review with ptrace single-
 * stepping; on a quiet machine this test hit it within seconds, on a loaded
 * one it may not: it is a stress test, not a proof. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define SIZE 48
#define RING 16
#define KEEP 64

static unsigned char *live;  /* one byte per 16-byte unit of a 4 GiB window */
static uintptr_t window_base;
static const size_t window_units = ((size_t)1 << 32) / 16;
static volatile unsigned long duplicates, freed_not_live, out_of_window, handler_runs;
static void *ring[RING];
static unsigned ring_position;

static unsigned char *live_flag(void *block)
{
    uintptr_t address = (uintptr_t)block;
    if (address < window_base || (address - window_base) / 16 >= window_units) {
        out_of_window++;
        return NULL;
    }
    return &live[(address - window_base) / 16];
}

static void take(void *block)
{
    unsigned char *flag = live_flag(block);
    if (flag && __atomic_exchange_n(flag, 1, __ATOMIC_SEQ_CST))
        duplicates++;
}

static void give_back(void *block)
{
    unsigned char *flag = live_flag(block);
    if (flag && !__atomic_exchange_n(flag, 0, __ATOMIC_SEQ_CST))
        freed_not_live++;
    free(block);
}

static void on_timer(int signal_number)
{
    (void)signal_number;
    handler_runs++;
    void *block = malloc(SIZE);
    take(block);
    void *old = ring[ring_position % RING];
    ring[ring_position++ % RING] = block;
    if (old)
        give_back(old);
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    void *first = malloc(SIZE);
    window_base = ((uintptr_t)first & ~(((uintptr_t)1 << 26) - 1)) - ((uintptr_t)1 << 30);
    live = mmap(NULL, window_units, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    free(first);

    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_timer;
    action.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &action, NULL);
    struct sigevent event;
    memset(&event, 0, sizeof(event));
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGRTMIN;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    timer_create(CLOCK_MONOTONIC, &event, &timer);
    struct itimerspec every_30us = {{0, 30000}, {0, 30000}};
    timer_settime(timer, 0, &every_30us, NULL);

    void *keep[KEEP] = {0};
    unsigned long iterations = 0;
    time_t end = time(NULL) + seconds;
    while (time(NULL) < end && !duplicates && !freed_not_live) {
        for (int k = 0; k < 4096; k++, iterations++) {
            unsigned slot = iterations % KEEP;
            if (keep[slot])
                give_back(keep[slot]);
            keep[slot] = malloc(SIZE);
            take(keep[slot]);
        }
    }
    struct itimerspec off = {{0, 0}, {0, 0}};
    timer_settime(timer, 0, &off, NULL);
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    printf("%lu iterations, %lu signal handlers, %llu restarts, front end %s\n", iterations,
           handler_runs, (unsigned long long)stats.rseq_restarts, stats.front_end);
    CHECK(duplicates == 0, "%lu blocks handed out twice", duplicates);
    CHECK(freed_not_live == 0, "%lu blocks freed while not live", freed_not_live);
    CHECK(out_of_window == 0, "%lu blocks outside the tracked window", out_of_window);
    CHECK(handler_runs > 1000, "the timer interrupted the loop (%lu times)", handler_runs);
    return check_summary("rseq restart");
}
