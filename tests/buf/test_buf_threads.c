/* test_buf_threads.c - many more threads than CPUs getting, filling,
 * consuming, handing over and putting buffers for a few seconds. Every
 * byte is checked, also after yielding the CPU (so two threads handed the
 * same buffer would see each other's bytes), buffers cross threads through
 * an exchange (put by another thread than the one that got them), half the
 * threads use only their own pool, and the pools stay under the cap. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"
#include "xmm_buf.h"

void xmm_buf_test_thread_pool_only(bool enable); /* src/buf.c, hidden */

#ifndef TEST_SECONDS
#define TEST_SECONDS 2
#endif

/* A buffer and what it must hold: pattern bytes of `seed` from logical
 * offset `consumed` on, `length` of them. */
struct tracked {
    struct xmm_buf *buf;
    uint64_t seed;
    size_t consumed;
    size_t length;
};

static unsigned char pattern(uint64_t seed, size_t offset)
{
    return (unsigned char)((seed >> (offset % 7 * 8)) + offset);
}

#define EXCHANGE_SLOTS 16
static struct tracked exchange[EXCHANGE_SLOTS];
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;

static int stop;
static long operations;
/* Cleared in forked children: a worker of the parent may have held the
 * exchange's mutex at the fork. */
static bool exchange_enabled = true;

static bool verify(const struct tracked *item)
{
    const unsigned char *bytes = xmm_buf_data(item->buf);
    if (xmm_buf_len(item->buf) != item->length)
        return false;
    for (size_t i = 0; i < item->length; i++)
        if (bytes[i] != pattern(item->seed, item->consumed + i))
            return false;
    return true;
}

static size_t random_size(unsigned long long *random)
{
    unsigned long long roll = next_random(random) % 1000;
    if (roll < 700)
        return next_random(random) % 4096;
    if (roll < 950)
        return next_random(random) % (64 << 10);
    if (roll < 998)
        return next_random(random) % (1 << 20);
    return next_random(random) % XMM_BUF_MAX_CAPACITY;
}

/* Fills `item` with `total` pattern bytes in random pieces, starting from
 * a smaller buffer than needed half the time, so appends move it up. */
static void fill(struct tracked *item, size_t total, unsigned long long *random)
{
    unsigned char piece[2048];
    while (item->length < total) {
        size_t n = 1 + next_random(random) % sizeof(piece);
        if (n > total - item->length)
            n = total - item->length;
        for (size_t i = 0; i < n; i++)
            piece[i] = pattern(item->seed, item->consumed + item->length + i);
        if (xmm_buf_append(item->buf, piece, n) != 0) {
            CHECK(0, "append %zu: errno %d", n, errno);
            return;
        }
        item->length += n;
    }
}

/* Hands `item` over and takes what another thread left (or nothing). */
static struct tracked swap_through_exchange(struct tracked item, unsigned long long *random)
{
    size_t slot = next_random(random) % EXCHANGE_SLOTS;
    pthread_mutex_lock(&exchange_lock);
    struct tracked other = exchange[slot];
    exchange[slot] = item;
    pthread_mutex_unlock(&exchange_lock);
    return other;
}

static void one_round(unsigned long long *random, uint64_t seed)
{
    size_t total = random_size(random);
    bool start_small = next_random(random) & 1;
    struct tracked item = {xmm_buf_get(start_small ? 0 : total), seed, 0, 0};
    if (!item.buf) {
        CHECK(0, "get(%zu): errno %d", total, errno);
        return;
    }
    CHECK(xmm_buf_len(item.buf) == 0 && xmm_buf_capacity(item.buf) >= (start_small ? 0 : total),
          "a fresh buffer: length %zu, capacity %zu", xmm_buf_len(item.buf),
          xmm_buf_capacity(item.buf));
    fill(&item, total, random);
    size_t drop = item.length ? next_random(random) % (item.length + 1) : 0;
    CHECK(xmm_buf_consume(item.buf, drop) == 0, "consume %zu of %zu", drop, item.length);
    item.consumed += drop;
    item.length -= drop;
    if (next_random(random) % 4 == 0)
        xmm_buf_compact(item.buf);
    sched_yield(); /* let another thread, on this CPU, get and write */
    CHECK(verify(&item), "bytes changed under their owner (seed %llx)",
          (unsigned long long)seed);
    if (exchange_enabled && next_random(random) % 4 == 0) {
        item = swap_through_exchange(item, random);
        if (!item.buf)
            return;
        CHECK(verify(&item), "bytes of a handed-over buffer (seed %llx)",
              (unsigned long long)item.seed);
    }
    CHECK(xmm_buf_put(item.buf) == 0, "put: errno %d", errno);
    CHECK(xmm_buf_pool_bytes() <= xmm_buf_pool_limit(), "pool %zu above the cap %zu",
          xmm_buf_pool_bytes(), xmm_buf_pool_limit());
}

static void *worker(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    unsigned long long random = 0x9E3779B97F4A7C15ull * (id + 1);
    xmm_buf_test_thread_pool_only(id % 2 == 1);
    long rounds = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        one_round(&random, (id << 40) | (uint64_t)rounds);
        rounds++;
    }
    __atomic_fetch_add(&operations, rounds, __ATOMIC_RELAXED);
    return NULL;
}

/* With no other thread running: on each CPU in turn, five buffers put come
 * back from five gets in exactly the reverse order. A thread's own pool
 * keeps only four, so this fails if a CPU pool cannot be locked (say, a
 * fork handler left it locked). Needs room under the cap for them, which
 * there is while the pools hold at most half of it (unused credit is at
 * most a quarter); returns true, unchecked, otherwise. */
static bool every_cpu_pool_usable(void)
{
    if (xmm_buf_pool_bytes() > xmm_buf_pool_limit() / 2)
        return true;
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof(allowed), &allowed);
    bool usable = true;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        sched_setaffinity(0, sizeof(one), &one);
        struct xmm_buf *put_order[5], *got;
        for (int i = 0; i < 5; i++)
            put_order[i] = xmm_buf_get(0);
        for (int i = 0; i < 5; i++)
            xmm_buf_put(put_order[i]);
        for (int i = 4; i >= 0; i--) {
            usable &= (got = xmm_buf_get(0)) == put_order[i];
            put_order[i] = got;
        }
        for (int i = 0; i < 5; i++)
            xmm_buf_put(put_order[i]);
    }
    sched_setaffinity(0, sizeof(allowed), &allowed);
    return usable;
}

#if !defined(__SANITIZE_THREAD__) /* TSan does not support fork with threads */
/* A fork while the workers get and put: the child, alone with pools the
 * workers left mid-use, must find every CPU pool usable and keep to the
 * cap. Returns the child's exit status. */
static int fork_and_use_pools(void)
{
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        exchange_enabled = false;
        unsigned long long random = 77;
        for (int round = 0; round < 500; round++)
            one_round(&random, (uint64_t)round);
        CHECK(every_cpu_pool_usable(), "in a child forked during get/put");
        _exit(check_failed_count == 0 ? 0 : 1);
    }
    int status = -1;
    waitpid(child, &status, 0);
    return status;
}
#endif

/* Under ThreadSanitizer, XMM must run with per-thread caches. A block
 * freed by one thread and reused by another on the same CPU passes through
 * XMM's per-CPU cache with no atomic at all (rseq: the CPU orders it), so
 * TSan would report every such reuse as a race between the two owners (as
 * it does for tests/override/threads.c); XMM annotates the hand-offs of its
 * per-thread mode, which go through its central lists. The variable is
 * read when XMM starts, before main: hence the re-execution. */
static void use_per_thread_caches_under_tsan(char **argv)
{
#if defined(__SANITIZE_THREAD__)
    if (!getenv("XMM_RSEQ")) {
        setenv("XMM_RSEQ", "0", 1);
        execv("/proc/self/exe", argv);
        perror("execv");
        exit(2);
    }
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    use_per_thread_caches_under_tsan(argv);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(cpus > 2 ? 4 * cpus : 8);
    pthread_t *ids = calloc((size_t)threads, sizeof(*ids));
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)i);
    usleep(TEST_SECONDS * 500000);
#if !defined(__SANITIZE_THREAD__) /* TSan does not support fork with threads */
    for (int i = 0; i < 5; i++)
        CHECK(fork_and_use_pools() == 0, "a child forked during get/put failed");
#endif
    usleep(TEST_SECONDS * 500000);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    CHECK(every_cpu_pool_usable(), "after the run (and the forks)");
    for (int slot = 0; slot < EXCHANGE_SLOTS; slot++) {
        if (exchange[slot].buf) {
            CHECK(verify(&exchange[slot]), "bytes left in the exchange");
            xmm_buf_put(exchange[slot].buf);
        }
    }
    CHECK(xmm_buf_pool_bytes() <= xmm_buf_pool_limit(), "pool above the cap at the end");
    CHECK(operations > threads, "%ld rounds in %d threads", operations, threads);
    printf("test_buf_threads: %d threads on %ld CPUs, %ld rounds in %d s, %zu bytes pooled\n",
           threads, cpus, operations, TEST_SECONDS, xmm_buf_pool_bytes());
    free(ids);
    return check_summary("test_buf_threads");
}
