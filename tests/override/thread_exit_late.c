/*
 * thread_exit_late.c - threads whose first allocation comes in the last
 * round of their pthread key destructors.
 *
 * Each thread only sets a key; its destructor sets the key again until
 * the last round glibc runs (PTHREAD_DESTRUCTOR_ITERATIONS), and there
 * allocates and frees 64 blocks: the thread's first allocation. With
 * per-thread caches (tests/override/modes.sh runs this with XMM_RSEQ=0)
 * that makes the thread's cache, whose exit key is set too late to run:
 * the cache, its objects and its slot arrays were never recycled, 60-70
 * KB of memory and 260 KB of metadata a thread, for good (876 MB of RSS
 * after 15,000 threads). Caches whose thread is gone are now found and
 * recycled before more are made (src/mem/thread_cache.c). Threads run
 * four at a time: while one sweeps, the others must not make caches of
 * their own (they did, until a review of churning threads found
 * metadata growing by 0.8 KB a thread).
 *
 * Two cases where the owner a cache records is not the thread that uses
 * it, found in review of that sweep, each in a child:
 *   vfork    a thread vforks a child whose malloc is its thread's first:
 *            the child (on its parent thread's TLS) made the cache, as
 *            its owner, for the parent thread; once the child was gone,
 *            a sweep recycled it under the parent thread, and another
 *            thread took it (double frees reported, per-thread caches; a
 *            recycled list that looped, per-CPU ones). Then both churn
 *            checked blocks.
 *   fork     a parent whose 60 threads hold caches forks and lets them
 *            go; the child's 70 threads allocate, all at once, and exit: the child's sweep took the
 *            parent's caches, which it had never counted, and the count
 *            of caches in use wrapped below zero, leaving every thread a
 *            budget of nothing (2M malloc/free pairs 34 times slower).
 *            The child checks that a new thread's cache keeps blocks.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <sys/wait.h>

#include "xmm.h"
#include "testlib.h"
#include "stats_snapshot.h"

enum { WARM_WAVES = 500, WAVES = 5000, PER_WAVE = 4, BLOCKS = 64 };

static pthread_key_t key;
static atomic_int failures;

static void late_destructor(void *value)
{
    long round = (long)(intptr_t)value;
    if (round >= PTHREAD_DESTRUCTOR_ITERATIONS) {
        void *blocks[BLOCKS];
        for (int i = 0; i < BLOCKS; i++) {
            blocks[i] = malloc(16 + (size_t)i * 40);
            if (blocks[i])
                memset(blocks[i], 1, 16);
            else
                atomic_fetch_add(&failures, 1);
        }
        for (int i = 0; i < BLOCKS; i++)
            free(blocks[i]);
        return;
    }
    pthread_setspecific(key, (void *)(intptr_t)(round + 1));
}

static void *set_key_only(void *unused)
{
    (void)unused;
    pthread_setspecific(key, (void *)(intptr_t)1);
    return NULL;
}

static void run_waves(int waves)
{
    for (int wave = 0; wave < waves; wave++) {
        pthread_t threads[PER_WAVE];
        for (int i = 0; i < PER_WAVE; i++)
            pthread_create(&threads[i], NULL, set_key_only, NULL);
        for (int i = 0; i < PER_WAVE; i++)
            pthread_join(threads[i], NULL);
    }
}

enum { HOLDERS = 62, CHURNERS = 4, CHURN_ROUNDS = 8000000, CHURN_BLOCKS = 64 };

static atomic_long corrupted;
static atomic_int go, holders_ready, release_holders;

/* Blocks of 48 bytes tagged and checked, CHURN_ROUNDS times. */
static void churn(unsigned char tag)
{
    unsigned char *blocks[CHURN_BLOCKS] = {0};
    for (long round = 0; round < CHURN_ROUNDS; round++) {
        int i = (int)(round % CHURN_BLOCKS);
        if (blocks[i]) {
            for (int k = 0; k < 48; k++)
                if (blocks[i][k] != tag) {
                    atomic_fetch_add(&corrupted, 1);
                    break;
                }
            free(blocks[i]);
        }
        blocks[i] = malloc(48);
        if (blocks[i])
            memset(blocks[i], tag, 48);
    }
    for (int i = 0; i < CHURN_BLOCKS; i++)
        free(blocks[i]);
}

static void wait_for(atomic_int *flag)
{
    while (!atomic_load(flag))
        sched_yield();
}

static void *vfork_first(void *tag)
{
    pid_t pid = vfork();
    if (pid == 0) {
        free(malloc(48)); /* this thread's first allocation */
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    wait_for(&go);
    churn((unsigned char)(uintptr_t)tag);
    return NULL;
}

static void *hold_a_cache(void *unused)
{
    (void)unused;
    free(malloc(48));
    atomic_fetch_add(&holders_ready, 1);
    wait_for(&release_holders);
    return NULL;
}

static void *churn_newcomer(void *tag)
{
    wait_for(&go);
    churn((unsigned char)(uintptr_t)tag);
    return NULL;
}

/* One thread's first malloc in a vfork child (its cache, for it); then
 * enough threads holding caches that the next cache taken sweeps (64 in
 * use); then churners, the first of which took the vfork child's cache
 * from that sweep, churn beside the vforker, which still uses it. */
static void case_vfork(void)
{
    pthread_t vforker, holders[HOLDERS], churners[CHURNERS];
    pthread_create(&vforker, NULL, vfork_first, (void *)(uintptr_t)0xaa);
    for (int i = 0; i < HOLDERS; i++)
        pthread_create(&holders[i], NULL, hold_a_cache, NULL);
    while (atomic_load(&holders_ready) < HOLDERS)
        sched_yield();
    for (int i = 0; i < CHURNERS; i++)
        pthread_create(&churners[i], NULL, churn_newcomer, (void *)(uintptr_t)(0x10 + i));
    atomic_store(&go, 1);
    for (int i = 0; i < CHURNERS; i++)
        pthread_join(churners[i], NULL);
    pthread_join(vforker, NULL);
    atomic_store(&release_holders, 1);
    for (int i = 0; i < HOLDERS; i++)
        pthread_join(holders[i], NULL);
    CHECK(atomic_load(&corrupted) == 0,
          "a thread whose first malloc was in a vfork child churned beside %d new threads "
          "(and %d holding caches): %ld blocks changed", CHURNERS, HOLDERS,
          atomic_load(&corrupted));
}

static pthread_barrier_t holding;

static void *hold_until_released(void *unused)
{
    (void)unused;
    free(malloc(100));
    pthread_barrier_wait(&holding); /* every cache taken */
    pthread_barrier_wait(&holding); /* the fork done */
    return NULL;
}

static pthread_barrier_t child_holding;

static void *allocate_and_hold(void *unused)
{
    (void)unused;
    free(malloc(100));
    pthread_barrier_wait(&child_holding); /* all hold caches at once */
    return NULL;
}

/* Four rounds of 200 blocks of 64 bytes, freed: the bytes the calling
 * thread's cache holds then, in `kept` (none when its budget is none: the
 * objects go back to the central layer one at a time). */
static void *cycle_blocks(void *kept)
{
    void *blocks[200];
    uint64_t before = snapshot().bytes_cached;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 200; i++)
            blocks[i] = malloc(64);
        for (int i = 0; i < 200; i++)
            free(blocks[i]);
    }
    uint64_t after = snapshot().bytes_cached;
    *(uint64_t *)kept = after > before ? after - before : 0;
    return NULL;
}

static void case_fork(void)
{
    enum { PARENT_THREADS = 60, CHILD_THREADS = 70 };
    pthread_barrier_init(&holding, NULL, PARENT_THREADS + 1);
    pthread_t threads[CHILD_THREADS];
    for (int i = 0; i < PARENT_THREADS; i++)
        pthread_create(&threads[i], NULL, hold_until_released, NULL);
    pthread_barrier_wait(&holding);
    int parent_done[2];
    CHECKQ(pipe(parent_done) == 0, "pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* Once the parent's threads are gone, the child's own make it
         * sweep (64 caches in use). */
        char byte;
        close(parent_done[1]);
        if (read(parent_done[0], &byte, 1) != 1)
            _exit(2);
        pthread_barrier_init(&child_holding, NULL, CHILD_THREADS + 1);
        for (int i = 0; i < CHILD_THREADS; i++)
            pthread_create(&threads[i], NULL, allocate_and_hold, NULL);
        pthread_barrier_wait(&child_holding);
        for (int i = 0; i < CHILD_THREADS; i++)
            pthread_join(threads[i], NULL);
        uint64_t kept = 0;
        pthread_t last;
        pthread_create(&last, NULL, cycle_blocks, &kept);
        pthread_join(last, NULL);
        _exit(kept > 0 ? 0 : 1);
    }
    close(parent_done[0]);
    pthread_barrier_wait(&holding);
    for (int i = 0; i < PARENT_THREADS; i++)
        pthread_join(threads[i], NULL);
    CHECKQ(write(parent_done[1], "", 1) == 1, "the child told");
    close(parent_done[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "a fork child of %d threads' parent: after %d of its own came and went, a new "
          "thread's cache keeps blocks (child status %#x)",
          PARENT_THREADS, CHILD_THREADS, status);
}

int main(void)
{
    expect_malloc_is_xmm();
    run_section("vfork children whose malloc is their thread's first", case_vfork);
    run_section("a fork child's threads come and go", case_fork);
    pthread_key_create(&key, late_destructor);
    /* Past the first sweeps: the caches the threads take (at most about
     * SWEEP_FIRST plus the threads alive) are made by then. */
    run_waves(WARM_WAVES);
    struct xmm_stats start = snapshot();
    run_waves(WAVES);
    struct xmm_stats end = snapshot();
    NOTE("front end %.16s: %d threads; metadata %llu -> %llu bytes, cached %llu -> %llu",
         end.front_end, WAVES * PER_WAVE, (unsigned long long)start.metadata_bytes,
         (unsigned long long)end.metadata_bytes, (unsigned long long)start.bytes_cached,
         (unsigned long long)end.bytes_cached);
    CHECK(atomic_load(&failures) == 0, "the destructors' allocations worked (%d failed)",
          atomic_load(&failures));
    /* 2 MiB: eight caches' slot arrays. Before, a thread that found the
     * recycled list empty while another thread's sweep was giving the
     * orphans back (the registry lock released) made a new cache: 0.8 KB
     * of metadata a thread that lived, 16 MB for these 20,000. */
    CHECK(end.metadata_bytes <= start.metadata_bytes + 2 * MIB,
          "metadata does not grow with the threads that lived: %llu -> %llu bytes after %d "
          "more threads",
          (unsigned long long)start.metadata_bytes, (unsigned long long)end.metadata_bytes,
          WAVES * PER_WAVE);
    CHECK(end.bytes_cached <= start.bytes_cached + 4 * MIB,
          "the dead threads' caches do not keep their objects: cached %llu -> %llu bytes",
          (unsigned long long)start.bytes_cached, (unsigned long long)end.bytes_cached);
    return check_summary("thread_exit_late");
}
