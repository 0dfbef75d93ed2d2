/* realloc's mappings of their own (src/global/alloc.c): a large block
 * that cannot grow in place any more moves, from 4 MiB on, into a mapping
 * of its own, which mremap then grows without a copy. The free of such a
 * mapping raises the size from which later buffers get one: to its own
 * size when the program used the buffer a while (as glibc's dynamic mmap
 * threshold does), so that buffers grown to that size again get mappings
 * that their frees give back to the kernel; to twice it when the buffer
 * was freed soon after its move (a buffer grown and dropped in a loop),
 * so that those stay in the page heap and reuse resident pages. The
 * copies this saves are measured in bench/workloads/realloc-growth and
 * tests/override/malloc_realloc.c; here, where the block lives. Each case
 * runs in a process of its own: the size only ever rises. */
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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

static int grown_once_case(void)
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

    /* After the free of that mapping (about 31 MiB with its headroom; the
     * buffer lived through thousands of reallocs after its move), nothing
     * gets one below its size: these stay in the page heap. */
    for (int round = 0; round < 3; round++) {
        block = grow(12 * MIB, &moved, &mapped);
        CHECK(block != NULL && !xmm_heap_has_own_mapping(block) && !mapped,
              "round %d: after a %zu KiB mapping was freed, a buffer grown to 12 MiB stays "
              "in the page heap", round, usable >> 10);
        xmm_free(block);
    }
    return check_summary("realloc mappings: grown once");
}

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* A buffer doubled from 1 MiB to some size, as sqlite3 grows its largest
 * ones, and what happened on the way. */
struct doubled {
    char *block;
    size_t moved_big;     /* the size of its first move at 4 MiB or more (0: none) */
    bool mapped_after;    /* in a mapping of its own right after that move */
    double move_seconds;  /* how long that realloc took: at least the move */
};

static struct doubled double_up(size_t final)
{
    struct doubled result = {xmm_malloc(MIB), 0, false, 0};
    if (!result.block)
        return result;
    memset(result.block, 0x33, MIB);
    for (size_t size = 2 * MIB; size <= final; size *= 2) {
        double started = seconds_now();
        char *next = xmm_realloc(result.block, size);
        double took = seconds_now() - started;
        if (!next)
            return result;
        if (next != result.block && size >= 4 * MIB && !result.moved_big) {
            result.moved_big = size;
            result.mapped_after = xmm_heap_has_own_mapping(next);
            result.move_seconds = took;
        }
        result.block = next;
    }
    return result;
}

/* Buffers doubled to 8 MiB, each used for a while (four times as long as
 * its move took, 20 ms at least) and freed: every one that moves at 4 MiB
 * or more moves into a mapping of its own, the ones after the first too.
 * Fails where the first free raised the size to twice its own. */
static int kept_case(void)
{
    for (int round = 0; round < 3; round++) {
        struct doubled buffer = double_up(8 * MIB);
        char *block = buffer.block;
        CHECK(block != NULL, "round %d: a buffer doubled from 1 to 8 MiB", round);
        CHECK(buffer.moved_big != 0, "round %d: it moved at 4 MiB or more (at %zu KiB; chunks "
                                     "of 4 and 8 MiB cannot hold it grown)",
              round, buffer.moved_big >> 10);
        CHECK(buffer.mapped_after, "round %d: that move took it into a mapping of its own", round);
        const struct xmm_region *region = block ? xmm_region_of(block) : NULL;
        CHECK(region && region->grown && region->grown_at_ns != 0 && region->grow_cost_ns != 0,
              "round %d: the mapping is marked grown, with when its move ended and how long "
              "it took (%llu ns)", round,
              region ? (unsigned long long)region->grow_cost_ns : 0ULL);
        double use_seconds = buffer.move_seconds * 4 > 0.02 ? buffer.move_seconds * 4 : 0.02;
        struct timespec pause = {(time_t)use_seconds,
                                 (long)((use_seconds - (double)(time_t)use_seconds) * 1e9)};
        nanosleep(&pause, NULL);
        if (block)
            memset(block, 0x44, 8 * MIB);
        xmm_free(block);
    }
    return check_summary("realloc mappings: buffers kept a while");
}

/* Buffers doubled to 16 MiB and freed at once, round after round, as
 * bench/micro realloc_growth/16777216 does: the first free comes right
 * after the move, and from then on they stay in the page heap, where the
 * next one reuses resident pages instead of faulting in a fresh mapping.
 * Fails where every free raised the size to its own only. */
#define CASE_AGAIN 75

/* Times this thread was preempted so far. */
static long preemptions(void)
{
    struct rusage usage;
    return getrusage(RUSAGE_THREAD, &usage) == 0 ? usage.ru_nivcsw : 0;
}

static int dropped_case(void)
{
    for (int round = 0; round < 4; round++) {
        long preempted_before = preemptions();
        struct doubled buffer = double_up(16 * MIB);
        /* "At once" is judged by the clock (within twice the time the
         * move took, 1-2 ms): a thread preempted between the move and
         * the free freed it late, and the case runs again. */
        if (round == 0 && preemptions() != preempted_before) {
            xmm_free(buffer.block);
            return CASE_AGAIN;
        }
        CHECK(buffer.block != NULL, "round %d: a buffer doubled from 1 to 16 MiB", round);
        if (round == 0)
            CHECK(buffer.moved_big != 0 && buffer.mapped_after,
                  "round 0: it moved at 4 MiB or more (at %zu KiB) into a mapping of its own",
                  buffer.moved_big >> 10);
        else
            CHECK(!xmm_heap_has_own_mapping(buffer.block) && !buffer.mapped_after,
                  "round %d: after a buffer freed right after its move, it stays in the page "
                  "heap", round);
        xmm_free(buffer.block);
    }
    return check_summary("realloc mappings: buffers dropped at once");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "grown_once") == 0)
        return grown_once_case();
    if (argc > 1 && strcmp(argv[1], "kept") == 0)
        return kept_case();
    if (argc > 1 && strcmp(argv[1], "dropped") == 0)
        return dropped_case();
    CHECK(check_run_self("grown_once", NULL) == 0,
          "a buffer grown 4 KiB at a time to 28 MiB, shrunk, grown back and freed");
    CHECK(check_run_self("kept", NULL) == 0,
          "buffers doubled to 8 MiB and kept a while keep getting mappings of their own");
    int status = CASE_AGAIN, tries = 0;
    while (status == CASE_AGAIN && tries++ < 20)
        status = check_run_self("dropped", NULL);
    if (status == CASE_AGAIN)
        NOTE("dropped case: preempted in all %d tries (a loaded machine): not judged", tries);
    else
        CHECK(status == 0,
              "buffers doubled to 16 MiB and dropped at once stay in the page heap (%d tries)",
              tries);
    return check_summary("realloc mappings");
}
