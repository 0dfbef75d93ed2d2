/* realloc's mappings of their own (src/global/alloc.c): a large block
 * that cannot grow in place any more moves, from 4 MiB on, into a mapping
 * of its own, which mremap then grows without a copy; and once such a
 * mapping is freed, later buffers grown to that size stay in the page
 * heap (the size from which they get one rises: a program that grows and
 * frees buffers again and again keeps reusing resident pages). The copies
 * this saves are measured in bench/workloads/realloc-growth and
 * tests/override/malloc_realloc.c; here, where the block lives. */
#include <stdbool.h>
#include <string.h>

#include "check.h"
#include "global/alloc.h"
#include "global/free.h"
#include "xmm.h"

#define MIB ((size_t)1 << 20)

/* A buffer grown 4 KiB at a time to `final` bytes, each step written.
 * *moved_big: the size of its first move at 4 MiB or more (0: none);
 * *mapped_after: whether it had a mapping of its own right after it. */
static char *grow(size_t final, size_t *moved_big, bool *mapped_after)
{
    char *block = NULL;
    *moved_big = 0;
    *mapped_after = false;
    for (size_t size = 4096; size <= final; size += 4096) {
        char *next = xmm_realloc(block, size);
        if (!next)
            return block;
        if (block && next != block && size >= 4 * MIB + 4096 && !*moved_big) {
            *moved_big = size;
            *mapped_after = xmm_heap_has_own_mapping(next);
        }
        block = next;
        memset(block + size - 4096, 0x5a, 4096);
    }
    return block;
}

int main(void)
{
    size_t moved;
    bool mapped;
    /* Grown to 28 MiB (with its eighth of headroom still below the 32 MiB
     * from which every block has a mapping of its own), a buffer outgrows
     * the space after it in a chunk somewhere: then it moves into a
     * mapping of its own. */
    char *block = grow(28 * MIB, &moved, &mapped);
    CHECK(block != NULL, "a buffer grows 4 KiB at a time to 28 MiB");
    CHECK(moved != 0, "it moved at least once at 4 MiB or more (first at %zu KiB)",
          moved >> 10);
    CHECK(mapped, "that move took it into a mapping of its own");
    CHECK(xmm_heap_has_own_mapping(block), "it ends in one, grown by mremap");
    size_t usable = xmm_usable_size(block);
    bool intact = true;
    for (size_t at = 0; at < 28 * MIB; at += 4096)
        intact &= block[at] == 0x5a;
    CHECK(intact, "every page written on the way is intact");

    /* Shrunk to a large size below 4 MiB, it keeps its mapping (mremap
     * cuts the tail, no copy), and grows back the same way. */
    char *shrunk = xmm_realloc(block, MIB);
    CHECK(shrunk == block && xmm_heap_has_own_mapping(shrunk) && shrunk[MIB - 4096] == 0x5a,
          "shrunk to 1 MiB, it stays where it is, in its mapping, bytes kept");
    block = shrunk ? shrunk : block;
    char *regrown = xmm_realloc(block, 28 * MIB);
    CHECK(regrown != NULL && xmm_heap_has_own_mapping(regrown) && regrown[0] == 0x5a,
          "grown back to 28 MiB, it is still in a mapping of its own");
    block = regrown ? regrown : block;
    usable = xmm_usable_size(block);
    xmm_free(block);

    /* After the free of that mapping (about 31 MiB with its headroom),
     * nothing gets one below twice its size: these stay in the page heap. */
    for (int round = 0; round < 3; round++) {
        block = grow(12 * MIB, &moved, &mapped);
        CHECK(block != NULL && !xmm_heap_has_own_mapping(block) && !mapped,
              "round %d: after a %zu KiB mapping was freed, a buffer grown to 12 MiB stays "
              "in the page heap", round, usable >> 10);
        xmm_free(block);
    }
    return check_summary("realloc mappings");
}
