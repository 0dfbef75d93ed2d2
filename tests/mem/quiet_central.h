/*
 * quiet_central.h - for tests that drive the central layer's calls
 * themselves (xmm_central_refill, xmm_central_drain, upkeep passes): the
 * process runs again without a background thread and with a decay period
 * no test reaches, so that only the test's own calls move batches, and
 * starts from an empty central layer.
 */
#ifndef XMM_TESTS_QUIET_CENTRAL_H
#define XMM_TESTS_QUIET_CENTRAL_H

#include <stdlib.h>
#include <unistd.h>

#include "mem/mem.h"
#include "xmm.h"

/* In the first run, re-executes the test with the quiet settings (and
 * exits 1 if it cannot); in the second, empties the caches and the
 * central layer and returns. */
static inline void run_with_quiet_central(int argc, char **argv)
{
    if (argc < 2) {
        setenv("XMM_BACKGROUND", "0", 1);
        setenv("XMM_DECAY_MS", "600000", 1);
        char *again[] = {argv[0], "run", NULL};
        execv("/proc/self/exe", again);
        exit(1);
    }
    xmm_free(xmm_malloc(1));
    xmm_release_cpu_caches();
    xmm_central_release_all();
}

#endif
