/*
 * thread_exit.c - threads that come and go.
 *
 * 480 short-lived threads, 8 at a time: each allocates, frees part of what
 * it allocated (so its cache holds objects when it exits), hands the rest to
 * the main thread, and exits; its pthread_key destructor, which runs after
 * the thread's own code and possibly after XMM's per-thread teardown,
 * mallocs, frees and keeps a block for main. Main checks and frees
 * everything. Then:
 *   - every block was intact, and the destructors' allocations worked;
 *   - bytes_in_use is back where it started (nothing lost with the threads);
 *   - after xmm_release_cpu_caches no cached bytes are left (a dead thread's
 *     cache must not be stranded);
 *   - the memory XMM keeps does not grow with the number of threads that
 *     lived (committed bytes after round 10 and after round 60 are close).
 * Then 1000 threads alive at once (a thread-per-connection server), each
 * allocating and freeing across ten classes, exit: the memory resident
 * after them (and malloc_trim) stays within 16 MiB of before. Their
 * per-thread caches' slot arrays stayed resident, about 40 KB a thread
 * (XMM_RSEQ=0: tests/override/modes.sh; the per-CPU mode makes no
 * caches). The threads run on stacks of the test's own, unmapped after,
 * so that glibc's cache of thread stacks is not counted.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "xmm.h"
#include "testlib.h"
#include "stats_snapshot.h"

#define ROUNDS 60
#define PER_ROUND 8
#define BLOCKS 200

struct handed {
    void *ptr;
    size_t size;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct handed handed[PER_ROUND * BLOCKS];
static size_t handed_count;
static void *from_destructors[ROUNDS * PER_ROUND];
static size_t destructor_count, destructor_failures;
static pthread_key_t key;

/* Runs at thread exit, after the thread function returned. */
static void key_destructor(void *value)
{
    free(value); /* a block the thread allocated */
    void *scratch[16];
    int failed = 0;
    for (int i = 0; i < 16; i++) {
        scratch[i] = malloc(24 + (size_t)i * 100);
        if (!scratch[i])
            failed = 1;
        else
            memset(scratch[i], i, 24 + (size_t)i * 100);
    }
    for (int i = 0; i < 16; i++)
        free(scratch[i]);
    char *kept = malloc(300);
    if (kept)
        memset(kept, 0x3c, 300);
    pthread_mutex_lock(&lock);
    if (failed || !kept)
        destructor_failures++;
    if (kept)
        from_destructors[destructor_count++] = kept;
    pthread_mutex_unlock(&lock);
}

static void *thread_main(void *argument)
{
    uint64_t state = (uint64_t)(uintptr_t)argument * 0x9e3779b97f4a7c15ull | 1;
    struct handed mine[BLOCKS];

    pthread_setspecific(key, malloc(1000));
    for (int i = 0; i < BLOCKS; i++) {
        uint64_t r = random_next(&state);
        mine[i].size = r % 10 == 0 ? 4096 + (size_t)(r >> 20) % (60 * KIB) : 1 + (size_t)(r >> 20) % 2000;
        mine[i].ptr = malloc(mine[i].size);
        if (mine[i].ptr)
            pattern_fill(mine[i].ptr, mine[i].size, pattern_seed(mine[i].ptr, mine[i].size));
    }
    /* Free every other block here: the thread's cache is not empty when
     * the thread ends. */
    for (int i = 0; i < BLOCKS; i += 2)
        free(mine[i].ptr);
    pthread_mutex_lock(&lock);
    for (int i = 1; i < BLOCKS; i += 2)
        handed[handed_count++] = mine[i];
    pthread_mutex_unlock(&lock);
    return NULL;
}

#define WAVE_THREADS 1000
#define WAVE_STACK ((size_t)64 << 10)
static pthread_barrier_t wave_alive;

static void *wave_thread(void *unused)
{
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = malloc((size_t)16 << (i % 10));
        if (blocks[i])
            memset(blocks[i], 1, 16);
    }
    for (int i = 0; i < 64; i++)
        free(blocks[i]);
    pthread_barrier_wait(&wave_alive);
    return NULL;
}

static long resident_kib(void)
{
    long pages = 0, resident = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (!statm)
        return -1;
    if (fscanf(statm, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(statm);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* 1000 threads at once on stacks of our own; what stays resident after. */
static void test_wave(void)
{
    static pthread_t threads[WAVE_THREADS];
    static void *stacks[WAVE_THREADS];
    malloc_trim(0);
    long before = resident_kib();
    pthread_barrier_init(&wave_alive, NULL, WAVE_THREADS + 1);
    int started = 0;
    for (; started < WAVE_THREADS; started++) {
        pthread_attr_t attributes;
        stacks[started] = mmap(NULL, WAVE_STACK, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stacks[started] == MAP_FAILED)
            break;
        pthread_attr_init(&attributes);
        pthread_attr_setstack(&attributes, stacks[started], WAVE_STACK);
        int error = pthread_create(&threads[started], &attributes, wave_thread, NULL);
        pthread_attr_destroy(&attributes);
        if (error) {
            munmap(stacks[started], WAVE_STACK);
            break;
        }
    }
    if (started < WAVE_THREADS) {
        /* Let those that started go: the barrier waits for all. */
        CHECK(0, "1000 threads at once: only %d started", started);
        _exit(1);
    }
    pthread_barrier_wait(&wave_alive);
    for (int i = 0; i < WAVE_THREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < WAVE_THREADS; i++)
        munmap(stacks[i], WAVE_STACK);
    pthread_barrier_destroy(&wave_alive);
    malloc_trim(0);
    long after = resident_kib();
    CHECK(before > 0 && after > 0 && after - before <= 16 * 1024,
          "1000 threads at once, each through ten classes, exited: %ld KiB more resident "
          "after them (%ld -> %ld KiB, at most 16 MiB)",
          after - before, before, after);
}

int main(void)
{
    size_t bad_blocks = 0, null_blocks = 0;
    struct xmm_stats start, after_round_10 = {0};

    expect_malloc_is_xmm();
    pthread_key_create(&key, key_destructor);
    /* A first round of threads, not measured: glibc keeps some per-thread
     * allocations (DTVs of cached thread stacks) for reuse. */
    for (int i = 0; i < PER_ROUND; i++) {
        pthread_t thread;
        pthread_create(&thread, NULL, thread_main, (void *)(uintptr_t)(1000 + i));
        pthread_join(thread, NULL);
    }
    for (size_t i = 0; i < handed_count; i++)
        free(handed[i].ptr);
    handed_count = 0;
    for (size_t i = 0; i < destructor_count; i++)
        free(from_destructors[i]);
    destructor_count = 0;
    xmm_release_cpu_caches();
    start = snapshot();

    for (int round = 0; round < ROUNDS; round++) {
        pthread_t threads[PER_ROUND];
        for (int i = 0; i < PER_ROUND; i++)
            pthread_create(&threads[i], NULL, thread_main,
                           (void *)(uintptr_t)(round * PER_ROUND + i + 1));
        for (int i = 0; i < PER_ROUND; i++)
            pthread_join(threads[i], NULL);
        /* The threads are gone; their blocks are freed by main. */
        for (size_t i = 0; i < handed_count; i++) {
            if (!handed[i].ptr) {
                null_blocks++;
                continue;
            }
            if (pattern_find(handed[i].ptr, handed[i].size,
                             pattern_seed(handed[i].ptr, handed[i].size)) != SIZE_MAX)
                bad_blocks++;
            free(handed[i].ptr);
        }
        handed_count = 0;
        if (round == 9) {
            xmm_release_memory();
            after_round_10 = snapshot();
        }
    }
    size_t kept_bad = 0;
    for (size_t i = 0; i < destructor_count; i++) {
        if (find_not_byte(from_destructors[i], 300, 0x3c) != SIZE_MAX || xmm_node_of(from_destructors[i]) < 0)
            kept_bad++;
        free(from_destructors[i]);
    }

    CHECK(null_blocks == 0 && bad_blocks == 0,
          "%d threads: the %d blocks each handed to main are intact (%zu bad, %zu NULL)",
          ROUNDS * PER_ROUND, BLOCKS / 2, bad_blocks, null_blocks);
    CHECK(destructor_count == ROUNDS * PER_ROUND && destructor_failures == 0 && kept_bad == 0,
          "pthread_key destructors at thread exit: free, 16 mallocs and frees, a kept block "
          "(%zu of %d ran, %zu failed, %zu kept blocks bad)",
          destructor_count, ROUNDS * PER_ROUND, destructor_failures, kept_bad);

    xmm_release_cpu_caches();
    struct xmm_stats end = snapshot();
    CHECK(end.bytes_in_use <= start.bytes_in_use + 64 * KIB,
          "bytes_in_use back to where it started: %llu -> %llu",
          (unsigned long long)start.bytes_in_use, (unsigned long long)end.bytes_in_use);
    CHECK(end.bytes_cached == 0,
          "no cached bytes left after xmm_release_cpu_caches: the dead threads' caches were "
          "returned (%llu bytes cached, front end %.16s)",
          (unsigned long long)end.bytes_cached, end.front_end);
    xmm_release_memory();
    end = snapshot();
    CHECK(end.bytes_committed <= after_round_10.bytes_committed + 4 * MIB,
          "memory kept does not grow with the threads that lived: committed %llu after 80 "
          "threads, %llu after %d",
          (unsigned long long)after_round_10.bytes_committed,
          (unsigned long long)end.bytes_committed, ROUNDS * PER_ROUND);
    /* Metadata is mapped 1 MiB at a time and cut by a bump pointer (an
     * allocation that does not fit a block's rest leaves it unused), and
     * after round 10 it takes zero, one or, once seen, two more blocks:
     * 2 -> 4 MiB in the test matrix of 2026-12-05 (per-thread caches, on
     * a loaded machine), +1 MiB at most in ten runs with 2400 threads
     * instead of 480, so not growing with the threads. Which allocation
     * takes the second block was not identified. A thread cache leaked
     * per thread (about 220 KiB each by its bins' limits) would add some
     * 100 MiB. */
    CHECK(end.metadata_bytes <= after_round_10.metadata_bytes + 2 * MIB,
          "metadata does not grow with the threads: %llu -> %llu bytes",
          (unsigned long long)after_round_10.metadata_bytes,
          (unsigned long long)end.metadata_bytes);
    test_wave();
    return check_summary("thread_exit");
}
