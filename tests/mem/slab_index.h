/*
 * slab_index.h - for tests of the per-CPU caches: the calling thread's
 * slab index as XMM reads it from glibc's rseq area (cpu_id, or mm_cid
 * when XMM's statistics say "slabs by mm_cid"). Call slab_index_init()
 * once, with XMM initialised; slab_index() is then -1 when glibc has no
 * rseq area (the index is not readable here).
 */
#ifndef XMM_TEST_SLAB_INDEX_H
#define XMM_TEST_SLAB_INDEX_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

static bool slab_index_by_mm_cid;

__attribute__((unused)) static void slab_index_init(void)
{
    static char text[1 << 16];
    int fd = memfd_create("stats", 0);
    if (fd < 0 || xmm_stats_print(fd, "text") != 0 || lseek(fd, 0, SEEK_SET) != 0 ||
        read(fd, text, sizeof text - 1) < 0)
        NOTE("statistics not readable");
    if (fd >= 0)
        close(fd);
    slab_index_by_mm_cid = strstr(text, "slabs by mm_cid") != NULL;
}

__attribute__((unused)) static int slab_index(void)
{
    if (__rseq_size == 0)
        return -1;
    const unsigned char *area = (const unsigned char *)__builtin_thread_pointer() + __rseq_offset;
    uint32_t index;
    memcpy(&index, area + (slab_index_by_mm_cid ? 24 : 4), sizeof index);
    return (int)index;
}

#endif
