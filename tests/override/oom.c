/*
 * oom.c - running out of address space (ulimit -v, RLIMIT_AS).
 *
 * The kernel refuses mmap: every allocation function must then return NULL
 * with ENOMEM (posix_memalign: return ENOMEM), never crash; small requests
 * served from memory XMM already holds still succeed while large ones
 * fail; a failed realloc leaves its block alone; and after everything is
 * freed, large allocations succeed again.
 *
 * Two ways in, each in a child:
 *   "relative": fork, then setrlimit(RLIMIT_AS) to the current size + 512 MiB
 *   "from the start": RLIMIT_AS of 1 GiB set before exec, so XMM starts
 *                     under the limit (ulimit -v 1048576; ./program)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "xmm.h"
#include "testlib.h"

#define LARGE (40 * MIB)
#define MAX_BLOCKS 200000

static void *blocks[MAX_BLOCKS];
static size_t block_count;

static size_t address_space_now(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (status && fgets(line, sizeof line, status))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
            break;
    if (status)
        fclose(status);
    return kib * KIB;
}

/* Allocates blocks of `size` until one fails (or the table is full);
 * returns how many succeeded. Checks the failure is NULL + ENOMEM. */
static size_t allocate_until_null(size_t size)
{
    size_t got = 0;
    while (block_count < MAX_BLOCKS) {
        errno = 0;
        char *ptr = malloc(size);
        if (!ptr) {
            CHECK(errno == ENOMEM, "malloc(%zu) failed with ENOMEM after %zu blocks (errno %d)",
                  size, got, errno);
            return got;
        }
        ptr[0] = 1;
        ptr[size - 1] = 2;
        blocks[block_count++] = ptr;
        got++;
    }
    NOTE("stopped at %d blocks without a failure", MAX_BLOCKS);
    return got;
}

static void free_all(void)
{
    for (size_t i = 0; i < block_count; i++)
        free(blocks[i]);
    block_count = 0;
}

static void exhaust(const char *how)
{
    enum { WARM = 1000 };
    static void *warm[WARM];

    /* Small blocks first, so their size class has spans to come back to. */
    for (int i = 0; i < WARM; i++)
        warm[i] = malloc(64);
    for (int i = 0; i < WARM; i++)
        free(warm[i]);

    size_t large = allocate_until_null(LARGE);
    CHECK(large >= 2, "%s: %zu blocks of 40 MiB before the limit (>= 2)", how, large);

    /* Large requests fail now; small ones are served from what XMM holds. */
    size_t small_ok = 0;
    for (int i = 0; i < WARM; i++) {
        warm[i] = malloc(64);
        if (warm[i]) {
            memset(warm[i], 9, 64);
            small_ok++;
        }
    }
    CHECK(small_ok == WARM, "%s: while 40 MiB fails, %d mallocs of 64 B succeed (%zu did)", how,
          WARM, small_ok);
    errno = 0;
    void *ptr = malloc(LARGE);
    CHECK(ptr == NULL && errno == ENOMEM, "%s: malloc(40 MiB) still NULL, ENOMEM (errno %d)", how,
          errno);
    free(ptr);
    errno = 0;
    ptr = calloc(1, LARGE);
    CHECK(ptr == NULL && errno == ENOMEM, "%s: calloc(1, 40 MiB) NULL, ENOMEM (errno %d)", how,
          errno);
    free(ptr);
    errno = 0;
    ptr = aligned_alloc(2 * MIB, LARGE);
    CHECK(ptr == NULL && errno == ENOMEM, "%s: aligned_alloc(2 MiB, 40 MiB) NULL, ENOMEM (errno %d)",
          how, errno);
    free(ptr);
    ptr = NULL;
    int error = posix_memalign(&ptr, 4096, LARGE);
    CHECK(error == ENOMEM, "%s: posix_memalign(4096, 40 MiB) returns ENOMEM (got %d)", how, error);
    if (error == 0)
        free(ptr);
    errno = 0;
    ptr = xmm_malloc(LARGE);
    CHECK(ptr == NULL && errno == ENOMEM, "%s: xmm_malloc(40 MiB) NULL, ENOMEM", how);
    xmm_free(ptr);

    pattern_fill(warm[0], 64, 42);
    errno = 0;
    void *grown = realloc(warm[0], LARGE);
    CHECK(grown == NULL && errno == ENOMEM, "%s: realloc(64 B block, 40 MiB) NULL, ENOMEM", how);
    if (grown)
        warm[0] = grown;
    else
        CHECK(pattern_find(warm[0], 64, 42) == SIZE_MAX,
              "%s: the block is intact after the failed realloc", how);
    for (int i = 0; i < WARM; i++)
        free(warm[i]);

    /* Fill what is left with smaller and smaller blocks, each size until
     * NULL: no crash at any size. */
    static const size_t sizes[] = {4 * MIB, 256 * KIB, 16 * KIB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t got = allocate_until_null(sizes[i]);
        NOTE("%s: %zu more blocks of %zu bytes", how, got, sizes[i]);
    }
    CHECK(1, "%s: allocated until NULL at 40 MiB, 4 MiB, 256 KiB and 16 KiB: no crash", how);

    /* Everything back: large allocations work again. */
    free_all();
    xmm_release_memory();
    size_t again = allocate_until_null(LARGE);
    CHECK(again >= large / 2 && again >= 1,
          "%s: after freeing everything, %zu blocks of 40 MiB again (first time %zu)", how, again,
          large);
    free_all();
    ptr = malloc(100);
    CHECK(ptr != NULL, "%s: malloc(100) at the end", how);
    free(ptr);
}

/* Eight threads run into the limit at the same time, three times over:
 * the failure paths must be as thread-safe as the others. */
static atomic_ulong concurrent_bad_errno, concurrent_corrupt, concurrent_got;

static void *concurrent_exhaust(void *argument)
{
    enum { MAX = 400 };
    void *mine[MAX];
    size_t sizes[MAX];
    uint64_t state = (uint64_t)(uintptr_t)argument * 7919 + 1;
    for (int round = 0; round < 3; round++) {
        int count = 0;
        while (count < MAX) {
            size_t size = (random_next(&state) % 4 == 0) ? 6 * MIB : 200 * KIB + 24;
            errno = 0;
            mine[count] = malloc(size);
            if (!mine[count]) {
                if (errno != ENOMEM)
                    atomic_fetch_add(&concurrent_bad_errno, 1);
                /* Once the big ones fail, try small ones for a while. */
                if (size == 6 * MIB)
                    continue;
                break;
            }
            sizes[count] = size;
            pattern_fill(mine[count], 4096, pattern_seed(mine[count], size));
            ((char *)mine[count])[size - 1] = 7;
            count++;
        }
        atomic_fetch_add(&concurrent_got, (unsigned long)count);
        for (int i = 0; i < count; i++) {
            if (pattern_find(mine[i], 4096, pattern_seed(mine[i], sizes[i])) != SIZE_MAX ||
                ((char *)mine[i])[sizes[i] - 1] != 7)
                atomic_fetch_add(&concurrent_corrupt, 1);
            free(mine[i]);
        }
    }
    return NULL;
}

static void concurrent_limit(void)
{
    size_t now = address_space_now();
    /* Thread stacks count too: 8 x 8 MiB on top of the 256 MiB. */
    struct rlimit limit = {now + 320 * MIB, now + 320 * MIB};
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0, "setrlimit(RLIMIT_AS, size now + 320 MiB)");
    pthread_t threads[8];
    int started = 0;
    for (int i = 0; i < 8; i++)
        if (pthread_create(&threads[i], NULL, concurrent_exhaust, (void *)(uintptr_t)(i + 1)) == 0)
            started++;
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    CHECK(started >= 2, "%d threads started under the limit", started);
    CHECK(atomic_load(&concurrent_bad_errno) == 0 && atomic_load(&concurrent_corrupt) == 0,
          "%d threads ran into the limit together 3 times: every failure ENOMEM (%lu not), "
          "every block intact (%lu not), %lu blocks in all",
          started, atomic_load(&concurrent_bad_errno), atomic_load(&concurrent_corrupt),
          atomic_load(&concurrent_got));
    void *ptr = malloc(100);
    CHECK(ptr != NULL, "malloc(100) works after the threads freed everything");
    free(ptr);
}

static void relative_limit(void)
{
    size_t now = address_space_now();
    struct rlimit limit = {now + 512 * MIB, now + 512 * MIB};
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0, "setrlimit(RLIMIT_AS, %zu MiB now + 512 MiB)",
          now / MIB);
    exhaust("limit = size now + 512 MiB");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--limited") == 0) {
        exhaust("RLIMIT_AS 1 GiB from exec on");
        return check_summary("oom (limited from exec)");
    }
    expect_malloc_is_xmm();
    run_section("RLIMIT_AS set after start: current size + 512 MiB", relative_limit);
    run_section("8 threads against RLIMIT_AS at once", concurrent_limit);

    /* RLIMIT_AS set before exec: XMM initialises under the limit. */
    printf("---- RLIMIT_AS of 1 GiB set before exec\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit limit = {GIB, GIB};
        setrlimit(RLIMIT_AS, &limit);
        char *child_argv[] = {(char *)self_path(), "--limited", NULL};
        execv(child_argv[0], child_argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the program started under a 1 GiB RLIMIT_AS passes its checks (%s)",
          describe_status(status));
    return check_summary("oom");
}
