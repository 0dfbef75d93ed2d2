/*
 * api.c - XMM's own interface (include/xmm.h).
 */
#include <errno.h>
#include <string.h>

#include "global/global.h"
#include "backend/backend.h"
#include "xmm.h"

XMM_EXPORT void *xmm_malloc(size_t size)
{
    return xmm_heap_alloc(size);
}

XMM_EXPORT void xmm_free(void *ptr)
{
    xmm_heap_free(ptr);
}

XMM_EXPORT void *xmm_calloc(size_t count, size_t size)
{
    return xmm_heap_calloc(count, size);
}

XMM_EXPORT void *xmm_realloc(void *ptr, size_t size)
{
    return xmm_heap_realloc(ptr, size);
}

XMM_EXPORT void *xmm_aligned_alloc(size_t alignment, size_t size)
{
    if (!xmm_is_power_of_two(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    return xmm_heap_alloc_aligned(alignment, size, -1);
}

XMM_EXPORT size_t xmm_usable_size(const void *ptr)
{
    return xmm_heap_usable_size(ptr);
}

XMM_EXPORT void *xmm_alloc_array(size_t elem_size, size_t count)
{
    return xmm_heap_alloc_array(count, elem_size);
}

XMM_EXPORT void *xmm_realloc_array(void *ptr, size_t elem_size, size_t count)
{
    return xmm_heap_realloc_array(ptr, count, elem_size);
}

XMM_EXPORT char *xmm_strdup(const char *text)
{
    if (!text) {
        errno = EINVAL;
        return NULL;
    }
    size_t length = strlen(text);
    char *copy = xmm_heap_alloc(length + 1);
    return copy ? memcpy(copy, text, length + 1) : NULL;
}

XMM_EXPORT char *xmm_strndup(const char *text, size_t max_length)
{
    if (!text) {
        errno = EINVAL;
        return NULL;
    }
    size_t length = strnlen(text, max_length);
    char *copy = xmm_heap_alloc(length + 1);
    if (!copy)
        return NULL;
    memcpy(copy, text, length);
    copy[length] = '\0';
    return copy;
}

XMM_EXPORT size_t xmm_page_size(void)
{
    return xmm_os_page_size();
}

XMM_EXPORT void *xmm_alloc_pages(size_t count)
{
    size_t page = xmm_os_page_size();
    size_t bytes;
    if (count == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!xmm_array_bytes(count, page, &bytes))
        return NULL;
    void *pages = xmm_heap_alloc_aligned(page, bytes, -1);
    return pages ? memset(pages, 0, bytes) : NULL;
}

XMM_EXPORT void xmm_free_pages(void *pages, size_t count)
{
    if (!pages)
        return;
    size_t usable = xmm_heap_usable_size_as(pages, "xmm_free_pages()");
    if (!usable)
        return; /* reported */
    /* The usable size xmm_alloc_pages(count) gives: its bytes' size class,
     * or the bytes themselves (whole pages: a large block, or a small one
     * the heap profiler sampled). Any other count is a mismatch: 12.5% of
     * slack and a page, as before, took 1 page for a block of 2, and 36
     * for one of 40. */
    size_t bytes;
    size_t page = xmm_os_page_size();
    bool overflow = __builtin_mul_overflow(count, page, &bytes);
    size_t class_usable = !overflow && bytes <= XMM_MAX_SMALL_SIZE
                              ? xmm_class_size(xmm_size_to_class(bytes))
                              : bytes;
    if (overflow || count == 0 || (usable != bytes && usable != class_usable) ||
        ((uintptr_t)pages & (page - 1))) {
        xmm_report_bad_free("xmm_free_pages(): count does not match the allocation of", pages);
        return;
    }
    xmm_heap_free(pages);
}

XMM_EXPORT void *xmm_malloc_on_node(size_t size, int node)
{
    if (!xmm_ensure_init()) {
        errno = ENOMEM;
        return NULL;
    }
    if (!xmm_node_is_usable(node)) {
        errno = EINVAL;
        return NULL;
    }
    return xmm_heap_alloc_on_node(size, node);
}

XMM_EXPORT int xmm_node_of(const void *ptr)
{
    if (!ptr || !xmm_ensure_init()) {
        errno = EINVAL;
        return -1;
    }
    int node = xmm_heap_node_of(ptr);
    return node >= 0 && node == xmm_interleaved_node ? XMM_NODE_INTERLEAVED : node;
}

XMM_EXPORT int xmm_node_count(void)
{
    xmm_ensure_init();
    return xmm_real_nodes;
}

XMM_EXPORT int xmm_current_node(void)
{
    xmm_ensure_init();
    return xmm_numa_real_node_of_cpu(xmm_os_current_cpu());
}

XMM_EXPORT int xmm_cpu_count(void)
{
    xmm_ensure_init();
    int cpus = xmm_topology.cpu_count;
    return cpus > 0 ? cpus : 1;
}

XMM_EXPORT void xmm_release_cpu_caches(void)
{
    if (xmm_ensure_init())
        xmm_upkeep_release_caches();
}

XMM_EXPORT size_t xmm_release_memory(void)
{
    if (!xmm_ensure_init())
        return 0;
    return xmm_upkeep_release_all();
}

XMM_EXPORT int xmm_stats_get(struct xmm_stats *stats)
{
    if (!stats) {
        errno = EINVAL;
        return -1;
    }
    if (!xmm_ensure_init()) {
        errno = ENOMEM;
        return -1;
    }
    xmm_stats_collect(stats);
    return 0;
}

XMM_EXPORT int xmm_stats_print(int fd, const char *format)
{
    if (!xmm_ensure_init()) {
        errno = ENOMEM;
        return -1;
    }
    return xmm_stats_write(fd, format);
}

XMM_EXPORT int xmm_profile_dump(const char *path)
{
    if (!xmm_ensure_init()) {
        errno = ENOMEM;
        return -1;
    }
    return xmm_profile_write(path);
}
