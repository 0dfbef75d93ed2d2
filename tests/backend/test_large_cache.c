/* Large cache: a freed large block is reused for the same size without the
 * page heap; calloc still gets zeros; each size keeps a bounded number;
 * before the page heap would grow, the cache gives its blocks back (so they
 * coalesce and serve other sizes); idle sizes go back at upkeep; a second
 * free of a cached block is seen as a double free. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "check.h"
#include "xmm.h"

#define MIB ((size_t)1 << 20)

static struct xmm_span *span_of(void *block)
{
    struct xmm_chunk *chunk = (struct xmm_chunk *)xmm_region_of(block);
    return xmm_chunk_span_of(chunk, block);
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

int main(void)
{
    xmm_free(xmm_malloc(1));

    /* First, fresh blocks cut side by side (chunks are small at first, so
     * the first blocks may come from the ends of two chunks: those are set
     * aside until the end). Before the page heap grows, it gets the cache
     * back: blocks freed into the cache then serve, joined, a request of
     * another size. */
    char *cut[64];
    int cuts = 0, first = -1;
    while (cuts < 64 && first < 0) {
        cut[cuts++] = xmm_malloc(MIB);
        if (cuts >= 4 && cut[cuts - 3] == cut[cuts - 4] + MIB &&
            cut[cuts - 2] == cut[cuts - 4] + 2 * MIB && cut[cuts - 1] == cut[cuts - 4] + 3 * MIB)
            first = cuts - 4;
    }
    CHECK(first >= 0, "four fresh 1 MiB blocks are neighbours");
    if (first < 0)
        return check_summary("large cache");
    char *run[4];
    for (int i = 0; i < 4; i++)
        run[i] = cut[first + i];
    int node = span_of(run[0])->node;
    for (int i = 0; i < 4; i++)
        xmm_free(run[i]);
    CHECK(xmm_large_cache_bytes(node) == 4 * MIB, "all four cached (%zu)",
          xmm_large_cache_bytes(node));
    struct xmm_page_heap_stats before, after;
    xmm_page_heap_stats(node, &before);
    char *big = xmm_malloc(3 * MIB + 512 * 1024);
    xmm_page_heap_stats(node, &after);
    CHECK(big == run[0], "a 3.5 MiB block takes the flushed, coalesced blocks (%p vs %p)",
          (void *)big, (void *)run[0]);
    CHECK(xmm_large_cache_bytes(node) == 0, "the cache was flushed");
    CHECK(after.reserved_bytes == before.reserved_bytes, "no new chunk mapped");
    xmm_free(big);


    /* Reuse: same size, same block, nothing left cached. */
    char *block = xmm_malloc(MIB);
    memset(block, 0x5a, MIB);
    xmm_free(block);
    CHECK(span_of(block)->kind == XMM_SPAN_CACHED, "a freed 1 MiB block is cached");
    CHECK(xmm_large_cache_bytes(node) == MIB, "1 MiB cached (%zu)", xmm_large_cache_bytes(node));
    char *again = xmm_malloc(MIB);
    CHECK(again == block, "the cached block is reused (%p vs %p)", (void *)again, (void *)block);
    CHECK(span_of(again)->kind == XMM_SPAN_LARGE, "in use again");
    CHECK(xmm_large_cache_bytes(node) == 0, "nothing cached after reuse");
    xmm_free(again);

    /* calloc of a cached (dirty) block clears it. */
    unsigned char *zeroed = xmm_calloc(1, MIB);
    CHECK(zeroed == (unsigned char *)block, "calloc reuses the cached block");
    size_t nonzero = 0;
    for (size_t i = 0; i < MIB; i++)
        nonzero += zeroed[i] != 0;
    CHECK(nonzero == 0, "calloc from the cache is zero-filled (%zu bytes were not)", nonzero);
    xmm_free(zeroed);

    /* Bounded per size: ten 1 MiB blocks freed, at most 4 MiB kept; the
     * rest goes to the page heap. */
    void *blocks[10];
    for (int i = 0; i < 10; i++)
        blocks[i] = xmm_malloc(MIB);
    for (int i = 0; i < 10; i++)
        xmm_free(blocks[i]);
    size_t cached = xmm_large_cache_bytes(node);
    CHECK(cached >= MIB && cached <= 4 * MIB + MIB, "1 MiB slot bounded: %zu cached", cached);
    xmm_release_memory();
    CHECK(xmm_large_cache_bytes(node) == 0, "xmm_release_memory empties the cache");

    /* Upkeep: a size nobody takes goes back to the page heap. */
    void *idle = xmm_malloc(768 * 1024);
    xmm_free(idle);
    CHECK(xmm_large_cache_bytes(node) >= 768 * 1024, "768 KiB cached");
    /* Upkeep runs at most every XMM_DECAY_MS/2 (default 500 ms). */
    for (int waited = 0; waited < 5000 && span_of(idle)->kind != XMM_SPAN_FREE; waited += 50) {
        sleep_ms(50);
        xmm_large_cache_maintain(node, xmm_os_now_ns());
    }
    CHECK(span_of(idle)->kind == XMM_SPAN_FREE, "an idle cached block returns to the page heap");

    /* Double free: the block's span is CACHED, so the page heap refuses it
     * (free() reports it; here, the layer answer). */
    void *twice = xmm_malloc(MIB);
    xmm_free(twice);
    struct xmm_span *span = span_of(twice);
    CHECK(span->kind == XMM_SPAN_CACHED, "cached");
    CHECK(!xmm_large_cache_claim(span), "a cached span cannot be claimed twice");
    CHECK(!xmm_page_heap_free(span), "nor freed to the page heap");
    CHECK(!xmm_page_heap_resize(span, span->pages + 1), "nor resized");
    CHECK(span->kind == XMM_SPAN_CACHED, "and stays cached");

    /* Aligned requests beyond a page do not take cached blocks blindly. */
    void *aligned = xmm_aligned_alloc(2 * MIB, MIB);
    CHECK(aligned && ((uintptr_t)aligned & (2 * MIB - 1)) == 0, "2 MiB alignment kept");
    xmm_free(aligned);
    for (int i = 0; i < first; i++)
        xmm_free(cut[i]);
    return check_summary("large cache");
}
