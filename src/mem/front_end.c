/*
 * front_end.c - the front end as one module: which caches a process and a
 * thread use, their set-up in the two phases of init, their repair in a
 * fork child, their release, and their statistics. The per-CPU caches
 * (cpu_cache.c) and the per-thread caches (thread_cache.c) each implement
 * one kind and never call each other; this file is where both meet.
 *
 * The process is in per-CPU mode when phase 1 found a usable rseq area and
 * could map the slabs. Even then, a thread whose area is not usable (its
 * registration failed, a vfork child, XMM_RSEQ=libc without glibc's area)
 * uses a per-thread cache: both kinds coexist.
 */
#include "base/base.h"
#include "front_end.h"

int xmm_front_end_init_core(void)
{
#if XMM_PER_CPU_CACHES
    xmm_cpu_cache_init_core();
#endif
    return 0;
}

void xmm_front_end_init_hooks(void)
{
    xmm_thread_cache_init();
#if XMM_PER_CPU_CACHES
    xmm_cpu_cache_init_hooks();
#endif
}

void xmm_front_end_after_fork_child(void)
{
    xmm_thread_cache_after_fork_child();
#if XMM_PER_CPU_CACHES
    xmm_cpu_cache_after_fork_child();
#endif
}

static bool per_cpu_mode(void)
{
#if XMM_PER_CPU_CACHES
    return xmm_cpu_cache_in_use();
#else
    return false;
#endif
}

const char *xmm_front_end_name(void)
{
    return per_cpu_mode() ? "per-cpu" : "per-thread";
}

const char *xmm_front_end_detail(void)
{
#if XMM_PER_CPU_CACHES
    return xmm_cpu_cache_detail();
#else
    return "per-thread caches (no rseq critical sections for this build)";
#endif
}

/* A thread without an rseq area: in per-CPU mode it attaches now if it
 * can (its first allocation), and then takes the per-CPU path. */
void *xmm_front_alloc_slow(unsigned size_class)
{
#if XMM_PER_CPU_CACHES
    if (xmm_cpu_cache_attach())
        return xmm_front_alloc(size_class);
#endif
    return xmm_thread_cache_alloc_slow(size_class);
}

void xmm_front_free_slow(void *object, unsigned size_class, unsigned node)
{
#if XMM_PER_CPU_CACHES
    if (xmm_cpu_cache_attach()) {
        xmm_front_free_as(object, xmm_front_page_info(object, size_class, node));
        return;
    }
#endif
    xmm_thread_cache_free_slow(object, size_class, node);
}

void xmm_front_end_release_caches(bool (*check_pending)(void *object, uint64_t tag))
{
    xmm_thread_cache_flush_current();
#if XMM_PER_CPU_CACHES
    xmm_cpu_cache_release(check_pending);
#else
    (void)check_pending;
#endif
}

void xmm_front_end_stats(struct xmm_front_stats *stats)
{
    xmm_thread_cache_stats(stats);
#if XMM_PER_CPU_CACHES
    xmm_cpu_cache_stats(stats);
#endif
}

int xmm_cpu_cache_slab_count(void)
{
#if XMM_PER_CPU_CACHES
    return xmm_cpu_cache_slabs_in_use();
#else
    return 0;
#endif
}

#if !XMM_PER_CPU_CACHES
uint64_t xmm_cpu_cache_bytes(int slab)
{
    (void)slab;
    return 0;
}
#endif
