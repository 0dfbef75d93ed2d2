/*
 * system_stub.c - stand-ins for the xmm_* functions the malloc API tests
 * call, so that those tests can be built against the system allocator
 * (`make -f Makefile -f tests/override/build.mk api-system`) to debug the tests
 * themselves. Never part of a real test run: a test built with this stub
 * checks glibc, not XMM, and some of its checks (the invalid-free message,
 * EINVAL from aligned_alloc) are expected to fail there.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xmm.h"

int xmm_node_of(const void *ptr)
{
    if (!ptr) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

size_t xmm_usable_size(const void *ptr)
{
    return ptr ? malloc_usable_size((void *)ptr) : 0;
}

void *xmm_alloc_array(size_t elem_size, size_t count)
{
    size_t total;
    if (__builtin_mul_overflow(elem_size, count, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return malloc(total);
}

int xmm_stats_get(struct xmm_stats *stats)
{
    if (!stats) {
        errno = EINVAL;
        return -1;
    }
    struct mallinfo2 info = mallinfo2();
    memset(stats, 0, sizeof *stats);
    stats->version = XMM_STATS_VERSION;
    stats->bytes_in_use = info.uordblks + info.hblkhd;
    return 0;
}

int xmm_stats_print(int fd, const char *format)
{
    static const char text[] = "system allocator\n", json[] = "{\"system\": true}\n";
    if (format && strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        errno = EINVAL;
        return -1;
    }
    if (format && strcmp(format, "json") == 0)
        return write(fd, json, sizeof json - 1) < 0 ? -1 : 0;
    return write(fd, text, sizeof text - 1) < 0 ? -1 : 0;
}

int xmm_node_count(void)
{
    return 1;
}

void free_sized(void *ptr, size_t size)
{
    (void)size;
    free(ptr);
}

void free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
    (void)alignment;
    (void)size;
    free(ptr);
}

void *xmm_malloc(size_t size)
{
    return malloc(size);
}

void xmm_free(void *ptr)
{
    free(ptr);
}

size_t xmm_release_memory(void)
{
    malloc_trim(0);
    return 0;
}

void xmm_release_cpu_caches(void)
{
}
