/*
 * slab_map.h - for tests of the per-CPU caches: where the slabs are.
 *
 *   find_slabs()          sets `slabs` to the first slab's address and
 *                         `slab_total` to their number (NULL and 0 if
 *                         not found); call slab_index_init() first
 *   slab_at(index)        slab `index`'s words
 *   slab_resident(index)  pages of slab `index` in memory (mincore), -1
 *                         on error
 *
 * XMM maps the slabs as one anonymous mapping aligned to a slab, but the
 * kernel merges it with a neighbour of the same kind, and splits it where
 * slabs are bound to different nodes, so /proc/self/maps does not give
 * its bounds. find_slabs frees a block it just allocated, which puts the
 * block on top of a bin of the calling thread's slab, and looks for the
 * slab-aligned page whose slab holds it there (or in its pending slot,
 * under XMM_FREE_CHECK=deferred): that is slab slab_index(). It tries
 * again if the thread moved in between.
 *
 * A slab is all zero until its first use (src/mem/cpu_cache.c,
 * slab_in_use); then it starts with its node word, a header for every
 * bin, each locked or with begin <= current <= end in the slots, then
 * header words no bin uses, zero (platform/x86_64/rseq_percpu.h).
 */
#ifndef XMM_TEST_SLAB_MAP_H
#define XMM_TEST_SLAB_MAP_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "mem/cpu_cache.h"
#include "slab_index.h"

#define SLAB_BYTES ((size_t)1 << XMM_SLAB_SHIFT)
#define SLAB_PAGES (SLAB_BYTES / 4096)

static char *slabs;
static int slab_total;

__attribute__((unused)) static uint64_t *slab_at(int index)
{
    return (uint64_t *)(slabs + (size_t)index * SLAB_BYTES);
}

__attribute__((unused)) static int slab_resident(int index)
{
    static unsigned char vector[SLAB_PAGES];
    if (!slabs || mincore(slab_at(index), SLAB_BYTES, vector) != 0)
        return -1;
    int pages = 0;
    for (size_t page = 0; page < SLAB_PAGES; page++)
        pages += vector[page] & 1;
    return pages;
}

/* One slab per possible CPU (platform/linux.c reads the same file): the
 * highest number in /sys/devices/system/cpu/possible, plus one; 0 if
 * unreadable. */
static int possible_cpus(void)
{
    char text[256];
    int fd = open("/sys/devices/system/cpu/possible", O_RDONLY);
    ssize_t length = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (length <= 0)
        return 0;
    text[length] = '\0';
    int highest = -1;
    for (char *at = text; *at;) {
        if (*at < '0' || *at > '9') { /* '-' and ',' too: "0-1" is two numbers */
            at++;
            continue;
        }
        char *after;
        long number = strtol(at, &after, 10);
        if (number > highest)
            highest = (int)number;
        at = after;
    }
    return highest + 1;
}

/* A header as the sections leave it: 0 (not set up), locked, or
 * begin <= current <= end in the slots; *open says which. */
__attribute__((unused)) static bool header_plausible(uint64_t header, bool *open)
{
    uint64_t begin = header >> XMM_SLAB_BEGIN_SHIFT;
    uint64_t end_slot = (header >> XMM_SLAB_END_SHIFT) & 0xffff;
    uint64_t current = header & XMM_SLAB_CURRENT_MASK;
    *open = false;
    if (header == 0 || (header & XMM_SLAB_LOCKED_BITS) == XMM_SLAB_LOCKED_BITS)
        return true;
    *open = true;
    return begin >= XMM_SLAB_FIRST_SLOT && begin <= current && current <= end_slot;
}

/* A set-up slab at `words` (resident) whose bin tops or pending slot
 * hold `block`. */
static bool slab_holds(const uint64_t *words, uintptr_t block)
{
    if (words[0] >= 64)
        return false;
    bool found = words[XMM_SLAB_PENDING_WORD] == block;
    for (unsigned bin = 1; bin < XMM_CPU_BIN_COUNT; bin++) {
        uint64_t header = words[bin];
        bool open;
        if (!header_plausible(header, &open))
            return false;
        uint64_t current = header & XMM_SLAB_CURRENT_MASK;
        found |= open && current > header >> XMM_SLAB_BEGIN_SHIFT && words[current - 1] == block;
    }
    for (unsigned word = XMM_CPU_BIN_COUNT; word < XMM_SLAB_PENDING_WORD; word++)
        if (words[word] != 0)
            return false;
    return found;
}

/* The slab-aligned page in the mappings of /proc/self/maps that holds
 * `block` so; NULL if none. */
static char *slab_holding(uintptr_t block)
{
    static char maps[1 << 17];
    int fd = open("/proc/self/maps", O_RDONLY);
    ssize_t length = 0, got;
    while (fd >= 0 && length < (ssize_t)sizeof maps - 1 &&
           (got = read(fd, maps + length, sizeof maps - 1 - length)) > 0)
        length += got;
    if (fd >= 0)
        close(fd);
    maps[length] = '\0';
    for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *dash;
        uintptr_t start = strtoull(line, &dash, 16);
        uintptr_t end = strtoull(dash + 1, NULL, 16);
        if (*dash != '-' || !strstr(line, " rw"))
            continue;
        for (uintptr_t slab = (start + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1);
             slab + 4096 <= end; slab += SLAB_BYTES) {
            unsigned char resident;
            if (mincore((void *)slab, 4096, &resident) == 0 && (resident & 1) &&
                slab_holds((const uint64_t *)slab, block))
                return (char *)slab;
        }
    }
    return NULL;
}

__attribute__((unused)) static void find_slabs(void)
{
    for (int attempt = 0; attempt < 20 && !slabs; attempt++) {
        void *taken = malloc(64);
        uintptr_t block = (uintptr_t)taken;
        __asm__("" : "+r"(block)); /* an address to look for, not a pointer used after free */
        free(taken);
        int own = slab_index();
        char *slab = own >= 0 ? slab_holding(block) : NULL;
        if (slab && own == slab_index()) {
            slabs = slab - (size_t)own * SLAB_BYTES;
            slab_total = possible_cpus() > own ? possible_cpus() : own + 1;
        }
    }
}

#endif
