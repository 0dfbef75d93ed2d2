/*
 * init.c - first-use initialisation, fork handlers, exit hook.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "arena.h"
#include "background.h"
#include "central.h"
#include "config.h"
#include "front_end.h"
#include "init.h"
#include "metadata.h"
#include "numa.h"
#include "large_cache.h"
#include "page_heap.h"
#include "size_class.h"
#include "stats.h"

int xmm_init_state;

/* Phase 1: raw system calls only (no malloc can happen here). */
static bool init_core(void)
{
    xmm_config_read();
    xmm_numa_init();
    xmm_size_classes_init();
    if (xmm_arena_init() != 0 || xmm_page_heap_init() != 0 || xmm_central_init() != 0 ||
        xmm_large_cache_init() != 0)
        return false;
    return xmm_front_end_init_core() == 0;
}

static void before_fork(void)
{
    xmm_front_end_before_fork(); /* first: a cache drain takes the others */
    xmm_thread_cache_lock_registry();
    xmm_metadata_lock();
    xmm_page_heap_lock_all();
}

static void after_fork_in_parent(void)
{
    xmm_page_heap_unlock_all();
    xmm_metadata_unlock();
    xmm_thread_cache_unlock_registry();
    xmm_front_end_after_fork_parent();
}

/* The child has one thread; the other threads' caches stay unused (their
 * objects are lost to the child, not corrupted). Locks are re-created
 * rather than unlocked: POSIX leaves unlocking in the child undefined for
 * some mutex types. */
static void after_fork_in_child(void)
{
    xmm_page_heap_reset_locks();
    xmm_metadata_reset_lock();
    xmm_thread_cache_reset_registry_lock();
    xmm_front_end_after_fork_child();
}

/* Phase 2: registrations that may allocate; the core serves them. */
static void init_hooks(void)
{
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    xmm_stats_install_hooks();
    xmm_front_end_init_hooks();
    xmm_background_start();
    if (xmm_config.verbose) {
        xmm_config_print();
        xmm_stats_print_topology();
    }
}

bool xmm_init_slow(void)
{
    int state = __atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE);
    if (state >= XMM_INIT_CORE)
        return true;
    if (state == XMM_INIT_NONE &&
        __atomic_compare_exchange_n(&xmm_init_state, &state, XMM_INIT_RUNNING, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        if (!init_core()) {
            __atomic_store_n(&xmm_init_state, XMM_INIT_NONE, __ATOMIC_RELEASE);
            return false;
        }
        __atomic_store_n(&xmm_init_state, XMM_INIT_CORE, __ATOMIC_RELEASE);
        init_hooks();
        __atomic_store_n(&xmm_init_state, XMM_INIT_COMPLETE, __ATOMIC_RELEASE);
        return true;
    }
    /* Another thread is in phase 1, which is short and cannot block on us. */
    while (__atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE) == XMM_INIT_RUNNING)
        sched_yield();
    return __atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE) >= XMM_INIT_CORE;
}

/* Initialise when the library loads, so that the first allocation of a
 * program does not pay for it, and so that threads created later find
 * everything ready. Calls from earlier constructors initialise on demand. */
__attribute__((constructor(101))) static void xmm_load(void)
{
    xmm_ensure_init();
}
