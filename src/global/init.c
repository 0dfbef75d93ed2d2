/*
 * init.c - first-use initialisation, fork handlers, exit hook; and the
 * allocator's locks, in one table.
 *
 * Fork. XMM holds no lock across fork(): its prepare handler takes none.
 * (It only asks the background thread's purge inside spans to let go of
 * the spans it holds, and waits a second at most: central.c, purge_stop.)
 * Taking the allocator's locks there (as glibc's own malloc does, but after
 * its stdio lock) deadlocks against a thread in fflush() that waits for a
 * FILE whose owner waits for XMM (glibc bug 19431's scenario), against a
 * fork() from a signal handler that interrupted XMM in the same thread, and
 * against lock orders inside XMM. The child repairs instead: every lock of
 * XMM records its holder (platform.h); in the child, a lock held by a
 * thread that no longer exists guards a structure that thread may have
 * left half-updated, which is set aside or rebuilt empty (its contents leak
 * in the child only); a lock held by the forking thread itself is left
 * alone, since the call it interrupted completes when the signal handler
 * returns. The lock-free layers (central, large cache, per-CPU slabs) are
 * consistent at every instant: a lost thread's claimed span or popped
 * batch only leaks, and the cold check it was running (central.c, one at
 * a time) is forgotten. Each repair is in the module that owns the lock:
 *
 * Every lock the allocator takes, in acquisition order: a thread holding a
 * lock takes only locks of a higher order, never one of the same or lower
 * order. No XMM lock is held while XMM waits on anything outside it.
 *
 *   order lock                        guards                         repair in the child
 *   1     release_lock (mem)          a drain of every CPU's cache   reopen locked slabs empty
 *   1     registry_lock (mem)         thread cache registry          none (one-store updates)
 *   2     page heap lock, per node    free lists, chunk being cut    new epoch, empty lists
 *         (backend; one at a time)
 *   3     profile lock (global)       sample records, stack table    a new, empty table
 *   4     descriptor_lock (backend)   spare region descriptors       drop the lists
 *   4     metadata_lock (backend)     metadata bump block            drop the block
 *
 * Who nests: a drain under release_lock gives spans back to the page heap
 * (1 -> 2); a new thread cache under registry_lock takes metadata (1 -> 4);
 * the page heap takes span, chunk and map-leaf descriptors (2 -> 4); the
 * heap profiler takes metadata for new stacks and records (3 -> 4), and
 * never holds its lock while it takes a sampled block's pages or gives
 * them back. descriptor_lock and metadata_lock are leaves. The page heap never calls
 * up: the central layer reclaims its empty spans into the page heap before
 * it asks it to grow (xmm_central_alloc_pages), holding no lock, never from
 * under a page heap lock. The pooled buffers (buf/)
 * only ever try their pool locks. The per-CPU caches, central layer and
 * large cache take no lock.
 *
 * Signal handlers. A handler that calls malloc or free after interrupting
 * XMM inside one of these locks on the same thread would wait for itself;
 * xmm_lock_acquire tells it instead (the lock knows its owner), and the
 * handler does without: an allocation that needs the lock fails (NULL,
 * ENOMEM), a span it frees is left to the interrupted holder, which frees
 * it before it unlocks (page_heap.c), upkeep and statistics skip. The
 * per-CPU and central paths take no lock at all, and a per-CPU operation a
 * handler interrupts restarts. A per-thread cache's bin is not safe to
 * re-enter (a handler between its load and store of the count may hand an
 * object out twice): with per-thread caches, as with glibc, allocating in
 * a handler that interrupted malloc is not supported.
 */
#include <sched.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "upkeep.h"
#include "mem/mem.h"
#include "base/base.h"
#include "init.h"
#include "ds/ds.h"
#include "profile.h"
#include "stats.h"

int xmm_init_state;

/* Phase 1: raw system calls only (no malloc can happen here). */
static bool init_core(void)
{
    xmm_config_read();
    xmm_upkeep_init();      /* the tick's mean is fixed from here */
    xmm_free_secret_init(); /* before any object is cut */
    xmm_numa_init();
    xmm_size_classes_init();
    if (xmm_config.free_deferred)
        xmm_class_starts_leave_free(XMM_FREE_DEFERRED_FIRST_CLASS);
    if (xmm_arena_init() != 0 || xmm_page_heap_init() != 0 || xmm_central_init() != 0 ||
        xmm_large_cache_init() != 0)
        return false;
    return xmm_front_end_init_core() == 0;
}

/* The child of fork(): each module repairs its own locks (table above). */
static void after_fork_in_child(void)
{
    xmm_metadata_after_fork_child();
    xmm_arena_after_fork_child();
    xmm_page_heap_after_fork_child();
    xmm_central_after_fork_child();
    xmm_profile_after_fork_child();
    xmm_stats_after_fork_child();
    xmm_front_end_after_fork_child();
    xmm_upkeep_after_fork_child();
}

/* Phase 2: registrations that may allocate; the core serves them. */
static void init_hooks(void)
{
    xmm_numa_load_binding();
    xmm_os_at_fork(xmm_central_before_fork, xmm_central_after_fork_parent, after_fork_in_child);
    xmm_stats_install_hooks();
    xmm_profile_init_hooks();
    xmm_front_end_init_hooks();
    xmm_upkeep_start_background();
    if (xmm_config.verbose) {
        xmm_config_print();
        xmm_stats_print_topology();
    }
}

/* Phase 1 then phase 2, by the thread that set XMM_INIT_RUNNING. */
static bool init_and_publish(void)
{
    if (!init_core()) {
        __atomic_store_n(&xmm_init_state, XMM_INIT_NONE, __ATOMIC_RELEASE);
        return false;
    }
    __atomic_store_n(&xmm_init_state, XMM_INIT_CORE, __ATOMIC_RELEASE);
    init_hooks();
    __atomic_store_n(&xmm_init_state, XMM_INIT_COMPLETE, __ATOMIC_RELEASE);
    return true;
}

/* The process whose thread runs phase 1. A fork child of a process that
 * was in phase 1 has lost the initialising thread: it must not wait for it. */
static int initialising_process;

bool xmm_init_slow(void)
{
    int state = __atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE);
    if (state >= XMM_INIT_CORE)
        return true;
    int self = xmm_os_process_id();
    if (state == XMM_INIT_NONE) {
        __atomic_store_n(&initialising_process, self, __ATOMIC_RELAXED);
        if (__atomic_compare_exchange_n(&xmm_init_state, &state, XMM_INIT_RUNNING, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return init_and_publish();
    }
    /* Another thread is in phase 1, which is short and cannot block on us.
     * In a fork child that thread does not exist: phase 1 starts over (what
     * the lost thread made leaks; phase 1 allocates only metadata). */
    while (__atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE) == XMM_INIT_RUNNING) {
        /* One thread of the child takes phase 1 on (the CAS), after
         * repairing what phase 1 can have held: the fork handler is not
         * registered yet. */
        int owner = __atomic_load_n(&initialising_process, __ATOMIC_RELAXED);
        if (owner != self && __atomic_compare_exchange_n(&initialising_process, &owner, self, false,
                                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            xmm_metadata_after_fork_child();
            return init_and_publish();
        }
        sched_yield();
    }
    return __atomic_load_n(&xmm_init_state, __ATOMIC_ACQUIRE) >= XMM_INIT_CORE;
}

/* Initialise when the library loads, so that the first allocation of a
 * program does not pay for it, and so that threads created later find
 * everything ready. Calls from earlier constructors initialise on demand. */
__attribute__((constructor(101))) static void xmm_load(void)
{
    xmm_ensure_init();
}
