/*
 * stats_snapshot.h - the statistics of the moment, for tests that compare
 * counters before and after what they do (include after check.h). A
 * failed xmm_stats_get counts as a failed check, and the snapshot then
 * reads all zero but its version.
 */
#ifndef XMM_TEST_STATS_SNAPSHOT_H
#define XMM_TEST_STATS_SNAPSHOT_H

#include "xmm.h"

__attribute__((unused)) static struct xmm_stats snapshot(void)
{
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    CHECKQ(xmm_stats_get(&stats) == 0, "xmm_stats_get");
    return stats;
}

#endif
