/*
 * upkeep.c - the layers' maintenance, run from one place (see upkeep.h).
 *
 * The background thread takes only the per-node page heap locks, never a
 * lock of a fast path. A child of fork() has no such thread; its upkeep
 * continues on allocation paths.
 */
#include "base/base.h"
#include "backend/backend.h"
#include "mem/mem.h"
#include "upkeep.h"

__thread int xmm_upkeep_countdown __attribute__((tls_model("initial-exec")));

void xmm_upkeep_node(int node)
{
    xmm_central_maintain(node);
    xmm_large_cache_maintain(node);
    xmm_page_heap_maintain(node);
}

void xmm_upkeep_tick(void)
{
    xmm_upkeep_countdown = XMM_UPKEEP_PERIOD;
    xmm_upkeep_node(xmm_node_of_cpu(xmm_os_current_cpu()));
}

size_t xmm_upkeep_release_all(void)
{
    xmm_front_end_release_caches();
    xmm_central_release_all();
    for (int node = 0; node < xmm_nodes; node++)
        xmm_large_cache_flush(node);
    return xmm_page_heap_purge(true); /* also unmaps wholly free chunks */
}

void xmm_upkeep_release_caches(void)
{
    xmm_front_end_release_caches();
}

bool xmm_upkeep_release_address_space(void)
{
    for (int node = 0; node < xmm_nodes; node++)
        xmm_large_cache_flush(node);
    return xmm_page_heap_release_chunks(0) > 0;
}

/* The thread sleeps one upkeep period (at least 10 ms) between rounds. */
static void *background_loop(void *unused)
{
    uint64_t period_ns = xmm_upkeep_period_ns();
    if (period_ns < 10000000)
        period_ns = 10000000;
    for (;;) {
        xmm_os_sleep_ns(period_ns);
        for (int node = 0; node < xmm_nodes; node++)
            xmm_upkeep_node(node);
    }
    return NULL;
}

void xmm_upkeep_start_background(void)
{
    if (!xmm_config.background_thread)
        return;
    if (xmm_os_thread_start(background_loop, NULL) != 0)
        xmm_report("xmm: XMM_BACKGROUND=1: cannot start the decay thread; "
                   "decay runs on allocation slow paths\n");
}
