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
 * recycled before more are made (src/mem/thread_cache.c).
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "xmm.h"
#include "testlib.h"
#include "stats_snapshot.h"

enum { WAVES = 200, PER_WAVE = 4, BLOCKS = 64 };

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

int main(void)
{
    expect_malloc_is_xmm();
    pthread_key_create(&key, late_destructor);
    run_waves(10);
    struct xmm_stats start = snapshot();
    run_waves(WAVES);
    struct xmm_stats end = snapshot();
    NOTE("front end %.16s: %d threads; metadata %llu -> %llu bytes, cached %llu -> %llu",
         end.front_end, WAVES * PER_WAVE, (unsigned long long)start.metadata_bytes,
         (unsigned long long)end.metadata_bytes, (unsigned long long)start.bytes_cached,
         (unsigned long long)end.bytes_cached);
    CHECK(atomic_load(&failures) == 0, "the destructors' allocations worked (%d failed)",
          atomic_load(&failures));
    CHECK(end.metadata_bytes <= start.metadata_bytes + 32 * MIB,
          "metadata does not grow with the threads that lived: %llu -> %llu bytes after %d "
          "threads",
          (unsigned long long)start.metadata_bytes, (unsigned long long)end.metadata_bytes,
          WAVES * PER_WAVE);
    CHECK(end.bytes_cached <= start.bytes_cached + 4 * MIB,
          "the dead threads' caches do not keep their objects: cached %llu -> %llu bytes",
          (unsigned long long)start.bytes_cached, (unsigned long long)end.bytes_cached);
    return check_summary("thread_exit_late");
}
