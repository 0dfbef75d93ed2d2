/* Two threads free the same large block at the same moment, thousands of
 * times, over sizes that go to the large cache and sizes that go to the
 * page heap. Exactly one free of each pair may win; the other must be
 * reported as a double free (XMM_INVALID_FREE=warn counts it and goes on).
 * Afterwards the heap must still hand each block to one owner only. */
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

static const size_t sizes[] = {300 * 1024, MIB, 2 * MIB, 3 * MIB};
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
        void *block = xmm_malloc(sizes[round % 4]);
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
    /* One owner per block: 16 live blocks of each size, all distinct and
     * not overlapping, each keeping its own fill. */
    unsigned char *live[64];
    for (int i = 0; i < 64; i++) {
        live[i] = xmm_malloc(sizes[i % 4]);
        memset(live[i], i + 1, sizes[i % 4]);
    }
    for (int i = 0; i < 64; i++) {
        size_t size = sizes[i % 4];
        CHECK(live[i][0] == (unsigned char)(i + 1) && live[i][size - 1] == (unsigned char)(i + 1),
              "block %d kept its bytes (another owner wrote it)", i);
        for (int j = 0; j < 64; j++)
            if (j != i)
                CHECK(live[j] + sizes[j % 4] <= live[i] || live[i] + size <= live[j],
                      "blocks %d and %d overlap", i, j);
    }
    for (int i = 0; i < 64; i++)
        xmm_free(live[i]);
    return check_summary("large double free");
}
