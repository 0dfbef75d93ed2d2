/* Two threads free the same large block at the same moment, thousands of
 * times, over sizes that go to the large cache, sizes that go to the page
 * heap, and a size mapped for itself (a direct block, 32 MiB and up).
 * Exactly one free of each pair may win; the other must be reported as a
 * double free (XMM_INVALID_FREE=warn counts it and goes on). Afterwards
 * the heap must still hand each block to one owner only. A direct block
 * freed twice at once used to be unmapped twice (the second munmap could
 * take a mapping made in between) and its descriptor given back twice. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define ROUNDS 3000
#define MIB ((size_t)1 << 20)

#define SIZES 5
static const size_t sizes[SIZES] = {300 * 1024, MIB, 2 * MIB, 3 * MIB, 40 * MIB};

/* Bytes the checks below fill: all of a large block, the first and last
 * pages of a direct one (64 of those would be 2.5 GiB). */
static void fill(unsigned char *block, size_t size, int value)
{
    if (size < 32 * MIB) {
        memset(block, value, size);
        return;
    }
    memset(block, value, 4096);
    memset(block + size - 4096, value, 4096);
}
static void *_Atomic target;
static atomic_int arrived, round_done;

static void *second_freer(void *unused)
{
    (void)unused;
    for (int round = 0; round < ROUNDS; round++) {
        while (atomic_load(&arrived) != 2 * round + 1)
            ; /* wait for the first thread to publish this round's block */
        void *block = atomic_load(&target);
        atomic_fetch_add(&arrived, 1);
        xmm_free(block);
        atomic_fetch_add(&round_done, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *mode = getenv("XMM_INVALID_FREE");
    if (!mode || strcmp(mode, "warn") != 0) {
        /* The mode is read at load time: run again with it set. */
        setenv("XMM_INVALID_FREE", "warn", 1);
        execv("/proc/self/exe", argv);
        return 1;
    }
    /* The reports go to stderr; keep the test's output readable. */
    int saved_stderr = dup(2);
    int null = open("/dev/null", 1);
    struct xmm_stats before, after;
    before.version = after.version = XMM_STATS_VERSION;
    xmm_stats_get(&before);
    pthread_t other;
    pthread_create(&other, NULL, second_freer, NULL);
    dup2(null, 2);
    for (int round = 0; round < ROUNDS; round++) {
        void *block = xmm_malloc(sizes[round % SIZES]);
        memset(block, 1, 4096);
        atomic_store(&target, block);
        atomic_fetch_add(&arrived, 1); /* publish */
        while (atomic_load(&arrived) != 2 * round + 2)
            ;
        xmm_free(block);
        while (atomic_load(&round_done) != round + 1)
            ;
    }
    pthread_join(other, NULL);
    dup2(saved_stderr, 2);
    xmm_stats_get(&after);
    CHECK(after.invalid_frees - before.invalid_frees == ROUNDS,
          "%d racing double frees, %llu reported", ROUNDS,
          (unsigned long long)(after.invalid_frees - before.invalid_frees));
    /* One owner per block: 64 live blocks, 12 or 13 of each size, distinct,
     * not overlapping, each keeping its own fill. */
    unsigned char *live[64];
    for (int i = 0; i < 64; i++) {
        live[i] = xmm_malloc(sizes[i % SIZES]);
        fill(live[i], sizes[i % SIZES], i + 1);
    }
    for (int i = 0; i < 64; i++) {
        size_t size = sizes[i % SIZES];
        CHECK(live[i][0] == (unsigned char)(i + 1) && live[i][size - 1] == (unsigned char)(i + 1),
              "block %d kept its bytes (another owner wrote it)", i);
        for (int j = 0; j < 64; j++)
            if (j != i)
                CHECK(live[j] + sizes[j % SIZES] <= live[i] || live[i] + size <= live[j],
                      "blocks %d and %d overlap", i, j);
    }
    for (int i = 0; i < 64; i++)
        xmm_free(live[i]);
    return check_summary("large double free");
}
