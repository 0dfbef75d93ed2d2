/*
 * common.h - constants and helpers shared by every layer of XMM.
 */
#ifndef XMM_COMMON_H
#define XMM_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

#define XMM_EXPORT __attribute__((visibility("default")))
#define XMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define XMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define XMM_NOINLINE __attribute__((noinline))
#define XMM_INLINE static inline __attribute__((always_inline))
#define XMM_CACHE_LINE 64
#define XMM_CACHE_ALIGNED __attribute__((aligned(XMM_CACHE_LINE)))

/* Allocator pages: the unit of the page heap and of the page map. 8 KiB
 * keeps the page map small (one pointer per 8 KiB) while the kernel's
 * 4 KiB pages remain the unit of xmm_alloc_pages and of purging. */
#define XMM_PAGE_SHIFT 13
#define XMM_PAGE_SIZE ((size_t)1 << XMM_PAGE_SHIFT)

/* Granules: the unit of the address map (arena.h). Every region XMM maps,
 * a chunk or a block mapped for itself, starts on a granule boundary and
 * owns every granule it covers. 2 MiB: a huge page, and little enough
 * alignment slack that a small process fits a tight `ulimit -v`. */
#define XMM_GRANULE_SHIFT 21
#define XMM_GRANULE_SIZE ((size_t)1 << XMM_GRANULE_SHIFT)

/* Arena chunks: address space taken from the kernel for spans, a whole
 * number of granules. A node's first chunk is small (a program that
 * allocates little reserves little); each next one doubles, up to the
 * largest, which also bounds a span. */
#define XMM_CHUNK_MIN_SIZE ((size_t)4 << 20)
#define XMM_CHUNK_MAX_SHIFT 26
#define XMM_CHUNK_MAX_SIZE ((size_t)1 << XMM_CHUNK_MAX_SHIFT)
#define XMM_CHUNK_MAX_PAGES (XMM_CHUNK_MAX_SIZE >> XMM_PAGE_SHIFT)
#define XMM_PAGES_PER_GRANULE (XMM_GRANULE_SIZE >> XMM_PAGE_SHIFT)

/* User-space addresses on x86_64 have 47 bits (48 with 5-level paging only
 * when asked for with a hint, which XMM never gives). */
#define XMM_ADDRESS_BITS 47

/* Requests above this go straight to the kernel with their own mapping. */
#define XMM_DIRECT_MAP_THRESHOLD (XMM_CHUNK_MAX_SIZE / 2)

XMM_INLINE size_t xmm_align_up(size_t value, size_t alignment)
{
    return (value + alignment - 1) & ~(alignment - 1);
}

XMM_INLINE bool xmm_is_power_of_two(size_t value)
{
    return value != 0 && (value & (value - 1)) == 0;
}

/* Periodic work, one caller per period: true for the caller that finds
 * `period_ns` elapsed since *last_ns and moves it to `now` (a CAS, so
 * concurrent callers do not all do the work). */
XMM_INLINE bool xmm_turn_due(uint64_t *last_ns, uint64_t now, uint64_t period_ns)
{
    uint64_t last = __atomic_load_n(last_ns, __ATOMIC_RELAXED);
    return now - last >= period_ns &&
           __atomic_compare_exchange_n(last_ns, &last, now, false, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

/* ---- diagnostics ---------------------------------------------------------- */

/* Formats `text` (with %p for a pointer and %z for a size_t, nothing else)
 * into a fixed buffer and writes it to stderr. Never allocates. */
void xmm_report(const char *text, ...);

/* Reports a broken invariant and aborts. */
_Noreturn void xmm_fatal(const char *text, ...);

#ifdef XMM_DEBUG
#define xmm_assert(condition)                                                  \
    do {                                                                       \
        if (XMM_UNLIKELY(!(condition)))                                        \
            xmm_fatal("xmm: assertion failed: " #condition " (" __FILE__ ")\n"); \
    } while (0)
#else
#define xmm_assert(condition) ((void)0)
#endif

/* The per-CPU front end needs the x86_64 rseq assembly. ThreadSanitizer
 * builds leave it out: TSan cannot see the hand-off of objects through a
 * CPU's cache, and reports every such reuse as a race; they test the
 * per-thread front end and the lock-free central layer instead. */
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define XMM_PER_CPU_CACHES 1
#else
#define XMM_PER_CPU_CACHES 0
#endif

/* ThreadSanitizer cannot see CK's inline-assembly atomics; the lock-free
 * layers tell it about the happens-before they provide. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *address);
void __tsan_release(void *address);
#define xmm_tsan_acquire(address) __tsan_acquire((void *)(address))
#define xmm_tsan_release(address) __tsan_release((void *)(address))
#else
#define xmm_tsan_acquire(address) ((void)0)
#define xmm_tsan_release(address) ((void)0)
#endif

#endif /* XMM_COMMON_H */
