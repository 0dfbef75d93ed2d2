/*
 * override.c - the C allocation API, replacing glibc's malloc when XMM is
 * linked (-lxmm) or preloaded (LD_PRELOAD=libxmm.so). Semantics follow
 * glibc where the standards leave room (realloc(p, 0) frees and returns
 * NULL; memalign rounds a non-power-of-two alignment up).
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem/mem.h"
#include "global/global.h"
#include "backend/backend.h"
#include "xmm.h"

/* Not declared by glibc 2.36's headers. */
void *__libc_malloc(size_t size);
void __libc_free(void *ptr);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
void cfree(void *ptr);
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* The error return of vfork (platform/x86_64/override_vfork.S): called
 * with the parent's state already restored, it returns in vfork's place. */
int xmm_vfork_failed(int error);
int xmm_vfork_failed(int error)
{
    errno = error;
    return -1;
}

/* setsid(2), for a process whose malloc is XMM: a fork child that makes
 * a session of its own is often a daemon settling down (nginx's, redis's
 * and memcached's master: one fork, then setsid), which may never
 * allocate again; the services of XMM_STATS_SIGNAL and XMM_PROFILE_SIGNAL
 * it has not started yet start here, or its signals went unanswered until
 * it exited (nginx's master, found by the servers helper). The cost, with
 * those variables set: a child that calls setsid and then exec gets a
 * thread for nothing, and one that then unshares a user namespace (which
 * needs a single thread) fails with EINVAL (found in review). A double
 * fork's first child calls setsid, not the daemon it forks. glibc's
 * setsid is the system call alone; its daemon(3) calls it by an internal
 * name, which this does not see. */
XMM_EXPORT pid_t setsid(void)
{
    pid_t session = xmm_os_new_session();
    if (session >= 0)
        xmm_upkeep_session_started();
    return session;
}

XMM_EXPORT XMM_HOT_ENTRY void *malloc(size_t size)
{
    return xmm_heap_alloc_inline(size);
}

/* ---- blocks of glibc's malloc (see global/free.h) --------------------------- */

/* This library's own malloc, whatever the process binds "malloc" to. Only
 * its address is used (hence no need for malloc's attributes). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wmissing-attributes"
extern void *xmm_malloc_self(size_t size) __attribute__((alias("malloc"), visibility("hidden")));
#pragma GCC diagnostic pop

/* glibc's allocator under its own names, as the next object in the
 * lookup order after this library defines them (this library defines them
 * too, below); NULL under another C library, and XMM then reports foreign
 * pointers as always. */
typedef void (*libc_free_function)(void *);
typedef void *(*libc_realloc_function)(void *, size_t);

static struct xmm_foreign_owner glibc_owner;

enum { OWNER_UNKNOWN, OWNER_NONE, OWNER_GLIBC };
static int foreign_owner_state;

/* Decided at the first pointer XMM did not hand out, which is rare: XMM is
 * the process's malloc when the global symbol "malloc" is this library's
 * (preloaded, linked in). dlopen(NULL) and dlsym allocate nothing when
 * they find what they look for, and take only the loader's lock, which is
 * recursive (the case that needs this runs inside dlopen, in a
 * constructor). */
static const struct xmm_foreign_owner *foreign_owner(void)
{
    int state = __atomic_load_n(&foreign_owner_state, __ATOMIC_ACQUIRE);
    if (XMM_LIKELY(state != OWNER_UNKNOWN))
        return state == OWNER_GLIBC ? &glibc_owner : NULL;
    /* The program's own scope (RTLD_DEFAULT would search this library's,
     * which RTLD_DEEPBIND puts first). */
    void *program = dlopen(NULL, RTLD_NOW | RTLD_NOLOAD);
    void *global_malloc = program ? dlsym(program, "malloc") : NULL;
    void *next_usable_size = dlsym(RTLD_NEXT, "malloc_usable_size");
    void *next_free = dlsym(RTLD_NEXT, "__libc_free");
    void *next_realloc = dlsym(RTLD_NEXT, "__libc_realloc");
    state = OWNER_NONE;
    if (global_malloc && global_malloc != (void *)xmm_malloc_self && next_free &&
        next_realloc && next_usable_size) {
        glibc_owner.release = (libc_free_function)next_free;
        glibc_owner.resize = (libc_realloc_function)next_realloc;
        glibc_owner.measure = (size_t (*)(void *))next_usable_size;
        state = OWNER_GLIBC;
    }
    __atomic_store_n(&foreign_owner_state, state, __ATOMIC_RELEASE);
    return state == OWNER_GLIBC ? &glibc_owner : NULL;
}

/* global/free.h's finder: defined here, statically, so that it works
 * before any constructor runs (libnuma's, in a program linked with it, can
 * run before XMM's and free glibc's blocks through XMM). */
xmm_foreign_owner_finder xmm_heap_foreign_owner_finder = foreign_owner;

XMM_EXPORT XMM_HOT_ENTRY void free(void *ptr)
{
    xmm_heap_free_inline(ptr);
}

XMM_EXPORT void cfree(void *ptr)
{
    xmm_heap_free(ptr);
}

XMM_EXPORT void *calloc(size_t count, size_t size)
{
    return xmm_heap_calloc(count, size);
}

XMM_EXPORT void *realloc(void *ptr, size_t size)
{
    return xmm_heap_realloc(ptr, size);
}

XMM_EXPORT void *reallocarray(void *ptr, size_t count, size_t size)
{
    return xmm_heap_realloc_array(ptr, count, size);
}

XMM_EXPORT int posix_memalign(void **result, size_t alignment, size_t size)
{
    if (!xmm_is_power_of_two(alignment) || alignment % sizeof(void *) != 0)
        return EINVAL;
    int saved_errno = errno;
    void *block = xmm_heap_alloc_aligned(alignment, size, -1);
    errno = saved_errno; /* posix_memalign reports through its result only */
    if (!block)
        return ENOMEM;
    *result = block;
    return 0;
}

XMM_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    if (!xmm_is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return xmm_heap_alloc_aligned(alignment, size, -1);
}

XMM_EXPORT void *memalign(size_t alignment, size_t size)
{
    if (alignment > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (!xmm_is_power_of_two(alignment)) /* glibc rounds up */
        alignment = alignment < 2 ? 1 : (size_t)1 << (64 - __builtin_clzll(alignment));
    return xmm_heap_alloc_aligned(alignment, size, -1);
}

XMM_EXPORT void *valloc(size_t size)
{
    return xmm_heap_alloc_aligned(xmm_os_page_size(), size, -1);
}

XMM_EXPORT void *pvalloc(size_t size)
{
    size_t page = xmm_os_page_size();
    if (size > SIZE_MAX - page) {
        errno = ENOMEM;
        return NULL;
    }
    size_t rounded = size ? xmm_align_up(size, page) : page;
    return xmm_heap_alloc_aligned(page, rounded, -1);
}

/* glibc's internal names for its allocator, which it exports: a tracer or
 * a hook library that calls them for "the real malloc" gets XMM's blocks,
 * which the program's free then takes (tcmalloc and mimalloc export them
 * too). Before, free(__libc_malloc(n)) got a block of glibc's heap, which
 * XMM reported as an invalid free, and aborted. */
XMM_EXPORT void *__libc_malloc(size_t size)
{
    return xmm_heap_alloc(size);
}

XMM_EXPORT void __libc_free(void *ptr)
{
    xmm_heap_free(ptr);
}

XMM_EXPORT void *__libc_calloc(size_t count, size_t size)
{
    return xmm_heap_calloc(count, size);
}

XMM_EXPORT void *__libc_realloc(void *ptr, size_t size)
{
    return xmm_heap_realloc(ptr, size);
}

XMM_EXPORT void *__libc_memalign(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

XMM_EXPORT void *__libc_valloc(size_t size)
{
    return valloc(size);
}

XMM_EXPORT void *__libc_pvalloc(size_t size)
{
    return pvalloc(size);
}

XMM_EXPORT size_t malloc_usable_size(void *ptr)
{
    return xmm_heap_usable_size(ptr);
}

/* C23. The size could be checked against the block; XMM trusts its own
 * metadata instead, which is always right. */
/* C23: the size (and alignment) the block was asked for; checked against
 * the block's (global/free.c). */
XMM_EXPORT void free_sized(void *ptr, size_t size)
{
    xmm_heap_free_sized(ptr, size, 0, false, "free_sized()");
}

XMM_EXPORT void free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
    xmm_heap_free_sized(ptr, size, alignment, false, "free_aligned_sized()");
}

XMM_EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    return xmm_release_memory() > 0;
}

static struct mallinfo2 fill_mallinfo2(void)
{
    struct xmm_stats stats;
    struct mallinfo2 info;
    memset(&info, 0, sizeof(info));
    if (!xmm_ensure_init())
        return info;
    xmm_stats_collect(&stats);
    uint64_t direct = __atomic_load_n(&xmm_heap_counters.direct_bytes, __ATOMIC_RELAXED);
    info.arena = stats.bytes_committed > direct ? stats.bytes_committed - direct : 0;
    info.hblkhd = direct;
    info.hblks = __atomic_load_n(&xmm_heap_counters.direct_allocations, __ATOMIC_RELAXED) -
                 __atomic_load_n(&xmm_heap_counters.direct_frees, __ATOMIC_RELAXED);
    /* Each block in one field, as glibc counts them: the blocks with a
     * mapping of their own in hblkhd, the others in uordblks. */
    info.uordblks = stats.bytes_in_use > direct ? stats.bytes_in_use - direct : 0;
    info.fordblks = stats.bytes_cached + stats.bytes_central + stats.bytes_page_heap_free;
    info.keepcost = stats.bytes_page_heap_free;
    info.usmblks = 0;
    return info;
}

XMM_EXPORT struct mallinfo2 mallinfo2(void)
{
    return fill_mallinfo2();
}

static int clamp_int(size_t value)
{
    return value > 0x7fffffff ? 0x7fffffff : (int)value;
}

XMM_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 wide = fill_mallinfo2();
    struct mallinfo info;
    info.arena = clamp_int(wide.arena);
    info.ordblks = clamp_int(wide.ordblks);
    info.smblks = clamp_int(wide.smblks);
    info.hblks = clamp_int(wide.hblks);
    info.hblkhd = clamp_int(wide.hblkhd);
    info.usmblks = clamp_int(wide.usmblks);
    info.fsmblks = clamp_int(wide.fsmblks);
    info.uordblks = clamp_int(wide.uordblks);
    info.fordblks = clamp_int(wide.fordblks);
    info.keepcost = clamp_int(wide.keepcost);
    return info;
}

/* glibc prints per-arena totals to stderr; XMM prints its own table, which
 * starts with the same three totals. */
XMM_EXPORT void malloc_stats(void)
{
    if (!xmm_ensure_init())
        return;
    struct mallinfo2 info = fill_mallinfo2();
    xmm_report("Arena 0:\nsystem bytes     = %z\nin use bytes     = %z\n"
               "Total (incl. mmap):\nsystem bytes     = %z\nin use bytes     = %z\n"
               "max mmap regions = %z\nmax mmap bytes   = %z\n",
               info.arena, info.uordblks, info.arena + info.hblkhd, info.uordblks + info.hblkhd,
               (size_t)__atomic_load_n(&xmm_heap_counters.direct_peak_count, __ATOMIC_RELAXED),
               (size_t)__atomic_load_n(&xmm_heap_counters.direct_peak_bytes, __ATOMIC_RELAXED));
    xmm_stats_write(2, "text");
}

/* glibc's shape: <malloc version="1"><heap nr="N">...</heap>...<total/>.
 * One <heap> per NUMA node. A heap's "system" bytes are what it got from
 * the kernel, as glibc's (an arena's heap, grown by brk or mmap): its
 * chunks' bytes mapped, and the most they ever were; the total's are the
 * heaps' sums, without the blocks mapped for themselves (the "mmap"
 * total), as glibc's. Called from user code, so stdio is fine. */
XMM_EXPORT int malloc_info(int options, FILE *stream)
{
    if (options != 0) {
        errno = EINVAL;
        return -1;
    }
    if (!xmm_ensure_init())
        return -1;
    struct xmm_stats stats;
    xmm_stats_collect(&stats);
    struct mallinfo2 info = fill_mallinfo2();
    /* The total's free bytes: the heaps' (purged or not), and the free
     * objects and pages held beside them (bytes_page_heap_free counts the
     * heaps' unpurged pages, already in theirs). */
    unsigned long long free_total = stats.bytes_cached + stats.bytes_central +
                                    stats.bytes_page_heap_free;
    unsigned long long system_total = 0, system_most = 0;
    fprintf(stream, "<malloc version=\"1\">\n");
    for (int node = 0; node < (int)stats.node_count; node++) {
        struct xmm_page_heap_stats pages;
        xmm_page_heap_stats(node, &pages);
        if (pages.free_bytes > pages.dirty_bytes)
            free_total += pages.free_bytes - pages.dirty_bytes;
        system_total += pages.reserved_bytes;
        system_most += pages.reserved_peak_bytes;
        fprintf(stream,
                "<heap nr=\"%d\">\n<sizes>\n</sizes>\n"
                "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
                "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
                "<system type=\"current\" size=\"%zu\"/>\n"
                "<system type=\"max\" size=\"%zu\"/>\n"
                "<aspace type=\"total\" size=\"%zu\"/>\n"
                "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
                "</heap>\n",
                node, pages.free_bytes, pages.reserved_bytes, pages.reserved_peak_bytes,
                pages.reserved_bytes, pages.reserved_bytes);
    }
    fprintf(stream,
            "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
            "<total type=\"rest\" count=\"0\" size=\"%llu\"/>\n"
            "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n"
            "<system type=\"current\" size=\"%llu\"/>\n"
            "<system type=\"max\" size=\"%llu\"/>\n"
            "<aspace type=\"total\" size=\"%llu\"/>\n"
            "<aspace type=\"mprotect\" size=\"%llu\"/>\n"
            "</malloc>\n",
            free_total, (unsigned long long)info.hblks, (unsigned long long)info.hblkhd,
            system_total, system_most, system_total, system_total);
    return 0;
}
