/* The large cache under oversubscription: 8x more threads than cores
 * allocate large blocks of a few sizes (cacheable and not), fill them with
 * their own pattern, hand half to a neighbour through a mailbox, and check
 * the pattern before freeing; another thread flushes and upkeeps the cache
 * meanwhile. A block handed to two owners, or changed while owned, fails
 * the test; at the end every large byte must be accounted free. Runs under
 * ThreadSanitizer too (make tsan). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "backend/backend.h"
#include "xmm.h"

#define MAX_THREADS 256
#define FILL 4096 /* bytes checked at each end of a block */

static const size_t sizes[] = {264 * 1024, 512 * 1024, 1 << 20, 2 << 20, 3 << 20};
static _Atomic(uintptr_t) mailbox[MAX_THREADS];
static atomic_long corruptions, blocks_done;
static atomic_int stop;
static int thread_count;

struct header {
    size_t size;
    unsigned owner;
};

static void fill(unsigned char *block, size_t size, unsigned owner)
{
    struct header header = {size, owner};
    memset(block + sizeof header, (int)(owner & 0xff), FILL - sizeof header);
    memset(block + size - FILL, (int)(owner & 0xff), FILL);
    memcpy(block, &header, sizeof header);
}

static void check_and_free(unsigned char *block)
{
    struct header header;
    memcpy(&header, block, sizeof header);
    unsigned char expected = (unsigned char)(header.owner & 0xff);
    int bad = 0;
    for (size_t i = sizeof header; i < FILL && !bad; i++)
        bad = block[i] != expected;
    for (size_t i = header.size - FILL; i < header.size && !bad; i++)
        bad = block[i] != expected;
    if (bad)
        atomic_fetch_add(&corruptions, 1);
    xmm_free(block);
}

static void *worker(void *argument)
{
    unsigned thread = (unsigned)(uintptr_t)argument;
    unsigned seed = thread * 2654435761u + 7;
    long done = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        seed = seed * 1103515245 + 12345;
        size_t size = sizes[(seed >> 16) % (sizeof sizes / sizeof sizes[0])];
        unsigned char *block = xmm_malloc(size);
        if (!block)
            continue;
        fill(block, size, thread);
        if ((seed >> 8) & 1) {
            /* To the neighbour; whatever was waiting there is freed here. */
            uintptr_t old = atomic_exchange(&mailbox[(thread + 1) % thread_count], (uintptr_t)block);
            if (old)
                check_and_free((unsigned char *)old);
        } else {
            check_and_free(block);
        }
        done++;
    }
    atomic_fetch_add(&blocks_done, done);
    return NULL;
}

static void *upkeeper(void *unused)
{
    (void)unused;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        for (int node = 0; node < xmm_nodes; node++) {
            xmm_large_cache_maintain(node, xmm_os_now_ns());
            xmm_large_cache_flush(node);
        }
        usleep(2000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    xmm_free(xmm_malloc(1));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    thread_count = (int)(cores > 0 ? cores : 1) * 8;
    if (thread_count > MAX_THREADS)
        thread_count = MAX_THREADS;
    pthread_t ids[MAX_THREADS], upkeep;
    for (int i = 0; i < thread_count; i++)
        pthread_create(&ids[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    pthread_create(&upkeep, NULL, upkeeper, NULL);
    struct timespec pause = {(time_t)seconds, (long)((seconds - (long)seconds) * 1e9)};
    nanosleep(&pause, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < thread_count; i++)
        pthread_join(ids[i], NULL);
    pthread_join(upkeep, NULL);
    for (int i = 0; i < thread_count; i++) {
        uintptr_t left = atomic_exchange(&mailbox[i], 0);
        if (left)
            check_and_free((unsigned char *)left);
    }
    printf("%d threads on %ld cores: %ld large blocks\n", thread_count, cores,
           atomic_load(&blocks_done));
    CHECK(atomic_load(&corruptions) == 0, "%ld blocks changed while owned",
          atomic_load(&corruptions));
    CHECK(atomic_load(&blocks_done) > 1000, "work was done");
    size_t in_use = 0;
    for (int node = 0; node < xmm_nodes; node++) {
        struct xmm_page_heap_stats stats;
        xmm_page_heap_stats(node, &stats);
        in_use += stats.large_in_use;
        xmm_large_cache_flush(node);
        CHECK(xmm_large_cache_bytes(node) == 0, "node %d cache empty after a flush", node);
    }
    CHECK(in_use == 0, "%zu large bytes still counted in use", in_use);
    return check_summary("large cache stress");
}
