/*
 * errno_kept.c - a malloc, free, realloc or malloc_trim that succeeds
 * leaves errno as it was (glibc since 2.33 keeps it across free, and
 * POSIX.1-2024 requires it of free); one that fails sets ENOMEM.
 *
 * Each case runs this program again, with a sentinel (EXDEV) in errno
 * before every call:
 *   locked   under mlockall(MCL_CURRENT | MCL_FUTURE) with XMM_DECAY_MS=0
 *            (and with per-thread caches): blocks of 24 B - 20 MiB
 *            allocated, written and freed, then malloc_trim. The kernel
 *            refuses madvise on locked pages (EINVAL), and every purge of
 *            decay and trim asks it; before, about half the mallocs and a
 *            few frees left EINVAL (1,222 and 1 in 2,400 rounds). 800
 *            rounds here. Needs root (RLIMIT_MEMLOCK).
 *   limited  under RLIMIT_AS and under RLIMIT_DATA, what the process maps
 *            plus 300 MiB: blocks of 3000 B and 300 KB until malloc fails.
 *            A chunk the kernel refuses is retried smaller (page_heap.c,
 *            new_chunk), and a success after that left ENOMEM (10 of about
 *            80,000 successes). The failure itself sets ENOMEM, and after
 *            everything is freed a malloc succeeds, errno kept.
 *   growing  with the background thread allowed (XMM_BACKGROUND=1), the
 *            heap grown past the size that starts it, from inside malloc.
 */
#include <malloc.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "xmm.h"
#include "testlib.h"

#define SENTINEL EXDEV

/* Calls that succeeded but changed errno, by kind. */
struct changed {
    long mallocs, frees, reallocs, trims, successes;
};

static void *checked_malloc(size_t size, struct changed *changed)
{
    errno = SENTINEL;
    void *block = malloc(size);
    if (block) {
        changed->successes++;
        changed->mallocs += errno != SENTINEL;
    }
    return block;
}

static void checked_free(void *block, struct changed *changed)
{
    errno = SENTINEL;
    free(block);
    changed->frees += errno != SENTINEL;
}

static int report(const char *what, const struct changed *changed, bool also_ok)
{
    printf("%s: %ld successes; changed errno: %ld mallocs, %ld reallocs, %ld frees, %ld "
           "trims\n", what, changed->successes, changed->mallocs, changed->reallocs,
           changed->frees, changed->trims);
    bool kept = changed->mallocs + changed->reallocs + changed->frees + changed->trims == 0;
    return kept && also_ok ? 0 : 1;
}

static const size_t mixed_sizes[] = {24, 1000, 5000, 70000, 300000, 1 << 20, 5 << 20, 20 << 20};
#define MIXED (sizeof mixed_sizes / sizeof mixed_sizes[0])

/* Rounds of the mixed sizes: each allocated, grown, written and freed. */
static void churn_mixed(int rounds, struct changed *changed)
{
    for (int round = 0; round < rounds; round++) {
        size_t size = mixed_sizes[round % MIXED];
        char *block = checked_malloc(size, changed);
        if (!block)
            continue;
        memset(block, 1, size < 8192 ? size : 8192);
        errno = SENTINEL;
        char *grown = realloc(block, size + size / 2);
        if (grown) {
            changed->successes++;
            changed->reallocs += errno != SENTINEL;
            block = grown;
        }
        checked_free(block, changed);
    }
}

static int locked_child(void)
{
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
        printf("mlockall: %s\n", strerror(errno));
        return 77;
    }
    struct changed changed = {0};
    churn_mixed(800, &changed);
    errno = SENTINEL;
    malloc_trim(0);
    changed.trims += errno != SENTINEL;
    return report("locked", &changed, changed.successes >= 1300);
}

static int limited_child(int resource, size_t size)
{
    enum { MAX_BLOCKS = 200000 };
    static void *blocks[MAX_BLOCKS];
    long pages = mapped_pages();
    if (pages < 0)
        return 77;
    rlim_t limit = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)300 * MIB;
    struct rlimit rlimit = {limit, limit};
    if (setrlimit(resource, &rlimit) != 0)
        return 77;
    struct changed changed = {0};
    int got = 0;
    while (got < MAX_BLOCKS && (blocks[got] = checked_malloc(size, &changed)) != NULL)
        memset(blocks[got++], 1, size < 4096 ? size : 4096);
    int failure_errno = errno;
    for (int i = 0; i < got; i++)
        checked_free(blocks[i], &changed);
    errno = SENTINEL;
    malloc_trim(0);
    changed.trims += errno != SENTINEL;
    void *again = checked_malloc(size, &changed);
    printf("%d blocks of %zu B, then errno %d (%s); after the frees malloc %s\n", got, size,
           failure_errno, strerror(failure_errno), again ? "succeeds" : "fails");
    free(again);
    bool failed_right = got < MAX_BLOCKS && failure_errno == ENOMEM && again != NULL;
    return report(resource == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_DATA", &changed, failed_right);
}

static int growing_child(void)
{
    enum { BLOCKS = 96 };
    static void *blocks[BLOCKS];
    struct changed changed = {0};
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = checked_malloc(MIB, &changed);
        if (blocks[i])
            memset(blocks[i], 1, MIB);
    }
    for (int i = 0; i < BLOCKS; i++)
        checked_free(blocks[i], &changed);
    churn_mixed(200, &changed);
    return report("growing", &changed, changed.successes >= BLOCKS + 300);
}

static struct child_result result;

/* This program's `mode` in a child with the environment `add`. */
static void run_case(const char *mode, const char *argument, const char *const add[],
                     const char *what)
{
    char *argv[] = {(char *)self_path(), (char *)mode, (char *)argument, NULL};
    memset(&result, 0, sizeof result);
    run_child(argv, NULL, add, 120, &result);
    if (WIFEXITED(result.status) && WEXITSTATUS(result.status) == 77) {
        NOTE("%s: not possible here (%s): skipped", what, result.out);
        return;
    }
    CHECK(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 0,
          "%s: every success keeps errno (%s; out: %s err: %.200s)", what,
          describe_status(result.status), result.out, result.err);
}

static void test_locked(void)
{
    if (geteuid() != 0) {
        NOTE("not root: RLIMIT_MEMLOCK would refuse the mlockall; skipped");
        return;
    }
    static const char *const per_cpu[] = {"XMM_DECAY_MS=0", NULL};
    static const char *const per_thread[] = {"XMM_DECAY_MS=0", "XMM_RSEQ=0", NULL};
    run_case("locked", "", per_cpu, "mlockall, decay 0");
    run_case("locked", "", per_thread, "mlockall, decay 0, per-thread caches");
}

static void test_limited(void)
{
    static const char *const sizes[] = {"3000", "300000"};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "RLIMIT_AS, blocks of %s B until malloc fails", sizes[i]);
        run_case("limited_as", sizes[i], NULL, what);
        snprintf(what, sizeof what, "RLIMIT_DATA, blocks of %s B until malloc fails", sizes[i]);
        run_case("limited_data", sizes[i], NULL, what);
    }
}

static void test_growing(void)
{
    static const char *const background[] = {"XMM_BACKGROUND=1", NULL};
    run_case("growing", "", background, "96 MiB with the background thread");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "locked"))
        return locked_child();
    if (argc >= 3 && !strcmp(argv[1], "limited_as"))
        return limited_child(RLIMIT_AS, strtoull(argv[2], NULL, 10));
    if (argc >= 3 && !strcmp(argv[1], "limited_data"))
        return limited_child(RLIMIT_DATA, strtoull(argv[2], NULL, 10));
    if (argc >= 2 && !strcmp(argv[1], "growing"))
        return growing_child();
    expect_malloc_is_xmm();
    run_section("mlockall: purges the kernel refuses", test_locked);
    run_section("address-space and data limits: chunks refused, then smaller", test_limited);
    run_section("the background thread started from malloc", test_growing);
    return check_summary("errno_kept");
}
