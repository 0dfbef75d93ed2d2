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
/* On declarations of the library's own globals: -fvisibility=hidden covers
 * definitions only, and without this a -fPIC access to an extern variable
 * goes through the GOT (one load more on every fast path that reads it). */
#define XMM_HIDDEN __attribute__((visibility("hidden")))
/* On the entry points whose hit path is a few dozen instructions (malloc,
 * free): starting on a cache line, the hit path spans the fewest fetch
 * blocks whatever code other changes move in front of it. Without it the
 * 1-thread malloc+free rows moved by 5-7% from one unrelated commit to the
 * next; with it they ran 6.27-6.40 ns against 6.58-6.95 (bench/micro,
 * 5 rounds alternating, bench/analysis.md "micro: malloc_free"). */
#define XMM_HOT_ENTRY __attribute__((aligned(64)))
#define XMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define XMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define XMM_NOINLINE __attribute__((noinline))
#define XMM_INLINE static inline __attribute__((always_inline))
#define XMM_CACHE_LINE 64
#define XMM_CACHE_ALIGNED __attribute__((aligned(XMM_CACHE_LINE)))

/* Allocator pages: the unit of the page heap, of the page map and of a
 * refill's cut (central.c, cut_tail). The kernel's page size, so that a
 * refill's smallest cut faults in one kernel page: with 8 KiB pages each
 * size class a program touched held two, and a short program uses some
 * 30-60 classes (docs/design.md, "Allocator pages"; spans stay 8 KiB at
 * least, XMM_SPAN_MIN_BYTES). The page map's cost is 4 bytes of page word
 * and 8 of span pointer per page, touched only where spans are. */
#define XMM_PAGE_SHIFT 12
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

/* Raises `*mark` to `value` unless another thread raised it further: a
 * high-water mark (relaxed; any thread, lock-free, async-signal-safe). */
XMM_INLINE void xmm_raise_to(uint64_t *mark, uint64_t value)
{
    uint64_t seen = __atomic_load_n(mark, __ATOMIC_RELAXED);
    while (seen < value && !__atomic_compare_exchange_n(mark, &seen, value, true,
                                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

XMM_INLINE bool xmm_is_power_of_two(size_t value)
{
    return value != 0 && (value & (value - 1)) == 0;
}

/* Periodic work, one caller per period: true for the caller that finds
 * `period_ns` elapsed since *last_ns and moves it to `now` (a CAS, so
 * concurrent callers do not all do the work). A `now` read before another
 * caller moved *last_ns is older than it: not due (the difference would
 * wrap, and the CAS would move *last_ns back). */
XMM_INLINE bool xmm_turn_due(uint64_t *last_ns, uint64_t now, uint64_t period_ns)
{
    uint64_t last = __atomic_load_n(last_ns, __ATOMIC_RELAXED);
    return now >= last && now - last >= period_ns &&
           __atomic_compare_exchange_n(last_ns, &last, now, false, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

/* ---- the calling thread's state ------------------------------------------- */

struct xmm_thread_cache;

/* Everything the hit paths of malloc and free read per thread, in one TLS
 * block: a shared library reaches initial-exec TLS through a GOT load of
 * its offset, so one block costs the hit path one such load, not one per
 * variable. Each layer owns its fields. rseq_area stays first: the vfork
 * wrapper (platform/x86_64/override_vfork.S) saves and clears it at
 * offset 0. */
struct xmm_thread_state {
    void *rseq_area;                      /* mem: the area the per-CPU caches use */
    const uint32_t *rseq_index;           /* mem: its cpu_id or mm_cid field */
    struct xmm_thread_cache *thread_cache; /* mem: per-thread mode's cache */
    int64_t tick_countdown;               /* global: bytes to the allocation tick */
};
extern __thread struct xmm_thread_state xmm_thread __attribute__((tls_model("initial-exec")));

/* ---- diagnostics ---------------------------------------------------------- */

/* Formats `text` (with %p for a pointer and %z for a size_t, nothing else)
 * into a fixed buffer and writes it to stderr. Never allocates. */
void xmm_report(const char *text, ...);

/* Reports a broken invariant and aborts. */
_Noreturn void xmm_fatal(const char *text, ...);

/* Invariants, in two levels (mimalloc's debug levels are the model):
 *   xmm_assert           cheap (a compare on data at hand): on in debug
 *                        builds (-DXMM_DEBUG, `make test-debug`);
 *   xmm_assert_expensive walks a structure (a free list, a heap's lists):
 *                        only with -DXMM_DEBUG=2.
 * Release builds compile both to nothing; the condition must have no side
 * effect. A failure names the condition, the file and the line, and aborts. */
#ifndef XMM_DEBUG
#define XMM_DEBUG_LEVEL 0
#elif XMM_DEBUG + 0 >= 2
#define XMM_DEBUG_LEVEL 2
#else
#define XMM_DEBUG_LEVEL 1
#endif

#define XMM_ASSERT_STRING_(x) #x
#define XMM_ASSERT_STRING(x) XMM_ASSERT_STRING_(x)
#define xmm_assert_at_level(level, condition)                                      \
    do {                                                                           \
        if (XMM_DEBUG_LEVEL >= (level) && XMM_UNLIKELY(!(condition)))              \
            xmm_fatal("xmm: assertion failed: " #condition " (" __FILE__           \
                      ":" XMM_ASSERT_STRING(__LINE__) ")\n");                      \
    } while (0)
#if XMM_DEBUG_LEVEL >= 1
#define xmm_assert(condition) xmm_assert_at_level(1, condition)
#else
#define xmm_assert(condition) ((void)0)
#endif
#if XMM_DEBUG_LEVEL >= 2
#define xmm_assert_expensive(condition) xmm_assert_at_level(2, condition)
#else
#define xmm_assert_expensive(condition) ((void)0)
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
