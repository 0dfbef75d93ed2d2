/*
 * fork.c - fork() while other threads allocate.
 *
 * Eight threads allocate and free in a loop (blocks checked before they
 * are freed); meanwhile the main thread forks again and again. Each child
 * (with a 20 s alarm, so a deadlocked allocator shows as SIGALRM) checks
 * and frees the blocks the main thread held at the fork, allocates and
 * frees many blocks of many sizes, then does the same from four new
 * threads, and exits 0 only if every block was intact. A child that hangs
 * in malloc because a lock was held at fork time by a thread that does
 * not exist in the child is the classic bug this catches.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "xmm.h"
#include "testlib.h"

#define WORKERS 8
/* At least MIN_FORKS, then more until FORK_SECONDS have passed, at most
 * MAX_FORKS: a fork costs from 50 ms to a second depending on the load. */
#define MIN_FORKS 10
#define MAX_FORKS 30
#define FORK_SECONDS 6.0
#define SLOTS 64

static atomic_int stop;
static atomic_ulong worker_errors, worker_operations;

static size_t random_size(uint64_t *state)
{
    uint64_t r = random_next(state);
    switch (r % 64) {
    case 0:
        return 32 * KIB + (size_t)(r >> 8) % (256 * KIB);
    case 1:
    case 2:
    case 3:
    case 4:
        return 1024 + (size_t)(r >> 8) % (31 * KIB);
    default:
        return 1 + (size_t)(r >> 8) % 512;
    }
}

/* Allocates and frees `operations` times with SLOTS live blocks; returns
 * the number of corrupted blocks found. `operations` 0: until `stop`. */
static unsigned long churn(uint64_t seed, unsigned long operations)
{
    void *ptrs[SLOTS] = {0};
    size_t sizes[SLOTS] = {0};
    uint64_t state = seed | 1;
    unsigned long errors = 0, done = 0;

    while (operations ? done < operations : !atomic_load_explicit(&stop, memory_order_relaxed)) {
        int slot = (int)(random_next(&state) % SLOTS);
        if (ptrs[slot]) {
            if (pattern_find(ptrs[slot], sizes[slot], pattern_seed(ptrs[slot], sizes[slot])) !=
                SIZE_MAX)
                errors++;
            free(ptrs[slot]);
        }
        sizes[slot] = random_size(&state);
        ptrs[slot] = malloc(sizes[slot]);
        if (!ptrs[slot]) {
            errors++;
            continue;
        }
        pattern_fill(ptrs[slot], sizes[slot], pattern_seed(ptrs[slot], sizes[slot]));
        done++;
        /* The parent's workers pause now and then: 8 busy threads on two
         * cores would otherwise starve the children. */
        if (!operations && done % 64 == 0)
            usleep(1000);
    }
    for (int slot = 0; slot < SLOTS; slot++) {
        if (!ptrs[slot])
            continue;
        if (pattern_find(ptrs[slot], sizes[slot], pattern_seed(ptrs[slot], sizes[slot])) != SIZE_MAX)
            errors++;
        free(ptrs[slot]);
    }
    if (!operations)
        atomic_fetch_add(&worker_operations, done);
    return errors;
}

static void *worker(void *argument)
{
    unsigned long errors = churn((uint64_t)(uintptr_t)argument * 0x9e3779b97f4a7c15ull, 0);
    atomic_fetch_add(&worker_errors, errors);
    return NULL;
}

static void *child_worker(void *argument)
{
    return (void *)(uintptr_t)churn((uint64_t)(uintptr_t)argument, 600);
}

/* The blocks the main thread holds across each fork. */
#define HELD 256
static void *held[HELD];
static size_t held_size[HELD];

static int child_main(int round)
{
    unsigned long errors = 0;

    alarm(20);
    /* Inherited blocks: intact, and freeable in the child. */
    for (int i = 0; i < HELD; i++) {
        if (pattern_find(held[i], held_size[i], pattern_seed(held[i], held_size[i])) != SIZE_MAX)
            errors++;
        free(held[i]);
    }
    errors += churn((uint64_t)round * 7919 + 1, 3000);
    pthread_t threads[4];
    int started = 0;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&threads[i], NULL, child_worker, (void *)(uintptr_t)(round * 4 + i + 1)) == 0)
            started++;
        else
            errors++;
    for (int i = 0; i < started; i++) {
        void *result;
        pthread_join(threads[i], &result);
        errors += (unsigned long)(uintptr_t)result;
    }
    /* A fork from the child too: the allocator must survive nesting. */
    pid_t grandchild = fork();
    if (grandchild == 0) {
        _exit(churn(3, 300) ? 1 : 0);
    }
    int status = 0;
    if (grandchild < 0 || waitpid(grandchild, &status, 0) < 0 || status != 0)
        errors++;
    return errors ? 1 : 0;
}

int main(void)
{
    pthread_t threads[WORKERS];
    uint64_t state = 12345;
    int ok_children = 0;
    char first_failure[128] = "";

    expect_malloc_is_xmm();
    for (int i = 0; i < HELD; i++) {
        held_size[i] = random_size(&state);
        held[i] = malloc(held_size[i]);
        pattern_fill(held[i], held_size[i], pattern_seed(held[i], held_size[i]));
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_create(&threads[i], NULL, worker, (void *)(uintptr_t)(i + 1));

    double start = now_seconds();
    int rounds = 0;
    for (int round = 0; round < MAX_FORKS &&
                        (round < MIN_FORKS || now_seconds() - start < FORK_SECONDS);
         round++) {
        rounds++;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0)
            _exit(child_main(round));
        int status = 0;
        if (pid < 0) {
            snprintf(first_failure, sizeof first_failure, "fork failed: %s", strerror(errno));
            continue;
        }
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok_children++;
        else if (!first_failure[0])
            snprintf(first_failure, sizeof first_failure, "child %d: %s%s", round,
                     describe_status(status),
                     WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? " (hung for 20 s)"
                     : WIFEXITED(status) && WEXITSTATUS(status) == 1 ? " (corrupted blocks)"
                                                                      : "");
        /* Change what the main thread holds between forks. */
        int i = (int)(random_next(&state) % HELD);
        free(held[i]);
        held_size[i] = random_size(&state);
        held[i] = malloc(held_size[i]);
        pattern_fill(held[i], held_size[i], pattern_seed(held[i], held_size[i]));
    }
    double elapsed = now_seconds() - start;
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(threads[i], NULL);

    CHECK(ok_children == rounds,
          "%d forks while %d threads allocate: every child (threads, nested fork) exits 0 "
          "(%d did; first failure: %s)",
          rounds, WORKERS, ok_children, first_failure[0] ? first_failure : "none");
    CHECK(atomic_load(&worker_errors) == 0,
          "the parent's %d threads found no corrupted block in %lu operations (%lu bad)", WORKERS,
          atomic_load(&worker_operations), atomic_load(&worker_errors));
    unsigned long bad_held = 0;
    for (int i = 0; i < HELD; i++) {
        if (pattern_find(held[i], held_size[i], pattern_seed(held[i], held_size[i])) != SIZE_MAX)
            bad_held++;
        free(held[i]);
    }
    CHECK(bad_held == 0, "the parent's held blocks are intact after the forks");
    NOTE("%d forks in %.1f s", rounds, elapsed);
    return check_summary("fork");
}
