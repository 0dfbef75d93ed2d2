/*
 * early_preload.c - libxmm-test-early.so: a library whose constructor
 * (priority 101) allocates before main. Loaded with
 * LD_PRELOAD="libxmm.so libxmm-test-early.so" by tests/override/early.c, which
 * reads `xmm_test_early_preload` to see how it went. Its constructor may
 * well run before libxmm.so's own: it does not depend on libxmm.so.
 */
#include "early_common.h"

__attribute__((visibility("default"))) struct early_result xmm_test_early_preload;

__attribute__((constructor(101))) static void early_preload_constructor(void)
{
    early_allocations(&xmm_test_early_preload);
}
