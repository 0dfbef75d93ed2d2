/*
 * background.c - the optional decay thread (see background.h).
 *
 * Every XMM_DECAY_MS/2 (at least 10 ms) it runs the same upkeep the slow
 * paths run: release spans found empty, purge pages free for longer than
 * the decay period. It takes only the per-node page heap locks, never a
 * lock of a fast path. A child of fork() has no such thread; its decay
 * continues on slow paths.
 */
#include <pthread.h>
#include <time.h>

#include "background.h"
#include "central.h"
#include "config.h"
#include "numa.h"
#include "large_cache.h"
#include "page_heap.h"

static void *decay_loop(void *unused)
{
    uint64_t period_ms = xmm_config.decay_ms / 2;
    if (period_ms < 10)
        period_ms = 10;
    struct timespec period = {(time_t)(period_ms / 1000), (long)(period_ms % 1000) * 1000000};
    for (;;) {
        nanosleep(&period, NULL);
        for (int node = 0; node < xmm_nodes; node++) {
            xmm_central_maintain(node);
            xmm_large_cache_maintain(node);
        }
        xmm_page_heap_purge(false);
    }
    return NULL;
}

void xmm_background_start(void)
{
    if (!xmm_config.background_thread)
        return;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    if (pthread_create(&thread, &attributes, decay_loop, NULL) != 0)
        xmm_report("xmm: XMM_BACKGROUND=1: cannot start the decay thread; "
                   "decay runs on allocation slow paths\n");
    pthread_attr_destroy(&attributes);
}
