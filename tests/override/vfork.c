/*
 * vfork.c - a vfork child that allocates never corrupts its parent.
 *
 * Worker threads keep many 48-byte blocks alive, each filled with a pattern
 * and checked before it is freed, on every CPU; meanwhile the main thread
 * vforks again and again, and each child allocates, writes, checks and
 * frees a few 48-byte blocks (the size the workers use, so that a child
 * running the parent thread's per-CPU critical sections unprotected would
 * hand out the workers' blocks) before _exit. POSIX leaves allocation in a
 * vfork child undefined; programs do it anyway, and glibc's, jemalloc's,
 * tcmalloc's and mimalloc's mallocs survive it.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "xmm.h"
#include "testlib.h"

#define WORKERS 4
#define LIVE 512
#define BLOCK 48
#define SECONDS 3.0

static atomic_int stop;
static atomic_ulong corrupted, operations;

static void *worker(void *argument)
{
    void *blocks[LIVE] = {0};
    uint64_t state = (uint64_t)(uintptr_t)argument * 0x9e3779b97f4a7c15ull + 1;
    unsigned long bad = 0, done = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        int slot = (int)(random_next(&state) % LIVE);
        if (blocks[slot]) {
            if (pattern_find(blocks[slot], BLOCK, pattern_seed(blocks[slot], BLOCK)) != SIZE_MAX)
                bad++;
            free(blocks[slot]);
        }
        blocks[slot] = malloc(BLOCK);
        if (blocks[slot])
            pattern_fill(blocks[slot], BLOCK, pattern_seed(blocks[slot], BLOCK));
        done++;
    }
    for (int slot = 0; slot < LIVE; slot++)
        if (blocks[slot]) {
            if (pattern_find(blocks[slot], BLOCK, pattern_seed(blocks[slot], BLOCK)) != SIZE_MAX)
                bad++;
            free(blocks[slot]);
        }
    atomic_fetch_add(&corrupted, bad);
    atomic_fetch_add(&operations, done);
    return NULL;
}

/* In the child: a few blocks of the workers' size, written and checked. */
static int child_allocates(void)
{
    void *blocks[8];
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        blocks[i] = malloc(BLOCK);
        if (!blocks[i])
            return 2;
        memset(blocks[i], 0xc5, BLOCK);
    }
    for (int i = 0; i < 8; i++) {
        if (find_not_byte(blocks[i], BLOCK, 0xc5) != SIZE_MAX)
            bad = 1;
        free(blocks[i]);
    }
    return bad;
}

int main(void)
{
    expect_malloc_is_xmm();
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    free(malloc(BLOCK)); /* the main thread is attached to the per-CPU caches */

    int children = 0, failed_children = 0, failed_vforks = 0;
    double start = now_seconds();
    while (now_seconds() - start < SECONDS) {
        pid_t pid = vfork();
        if (pid == 0)
            _exit(child_allocates());
        if (pid < 0) {
            failed_vforks++;
            continue;
        }
        int status = 0;
        waitpid(pid, &status, 0);
        children++;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed_children++;
        free(malloc(BLOCK)); /* the parent goes on with its own caches */
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);

    CHECK(failed_vforks == 0, "vfork() succeeds (%d failed)", failed_vforks);
    CHECK(children > 100 && failed_children == 0,
          "%d vfork children allocate, write and free 48-byte blocks (%d failed)", children,
          failed_children);
    CHECK(atomic_load(&corrupted) == 0,
          "%d threads kept their 48-byte blocks intact over %lu operations (%lu corrupted)",
          WORKERS, atomic_load(&operations), atomic_load(&corrupted));
    return check_summary("vfork");
}
