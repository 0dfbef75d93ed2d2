/* Page heap: spans split and coalesce; alignment; purge returns pages. */
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "xmm.h"

int main(void)
{
    xmm_free(xmm_malloc(1)); /* initialise */
    /* Three neighbours cut from fresh pages; freeing them in any order
     * must coalesce back into one span that a 3x request reuses. */
    struct xmm_span *a = xmm_page_heap_alloc(0, 10, 0);
    struct xmm_span *b = xmm_page_heap_alloc(0, 10, 0);
    struct xmm_span *c = xmm_page_heap_alloc(0, 10, 0);
    CHECK(a && b && c, "allocations");
    CHECK(b->start == a->start + 10 * XMM_PAGE_SIZE && c->start == b->start + 10 * XMM_PAGE_SIZE,
          "fresh spans are contiguous");
    char *first = a->start;
    memset(first, 0xab, 30 * XMM_PAGE_SIZE);
    xmm_page_heap_free(a);
    xmm_page_heap_free(c);
    xmm_page_heap_free(b); /* joins both neighbours */
    struct xmm_page_heap_stats stats;
    xmm_page_heap_stats(0, &stats);
    struct xmm_span *whole = xmm_page_heap_alloc(0, 30, 0);
    CHECK(whole && whole->start == first && whole->pages == 30, "coalesced span reused: %p vs %p",
          whole ? (void *)whole->start : NULL, (void *)first);
    CHECK(whole->dirty, "reused pages are known to be dirty");
    /* Split: a 5-page request from a free 30-page span keeps the rest free. */
    xmm_page_heap_free(whole);
    struct xmm_span *part = xmm_page_heap_alloc(0, 5, 0);
    struct xmm_span *rest = xmm_page_heap_alloc(0, 25, 0);
    CHECK(part && rest && part->start == first && rest->start == first + 5 * XMM_PAGE_SIZE,
          "split and reuse of the remainder");
    xmm_page_heap_free(part);
    xmm_page_heap_free(rest);
    /* Alignment well beyond the page: 1 MiB. */
    for (int i = 0; i < 8; i++) {
        struct xmm_span *aligned = xmm_page_heap_alloc(0, 3, 1 << 20);
        CHECK(aligned && ((uintptr_t)aligned->start & ((1 << 20) - 1)) == 0, "1 MiB aligned");
        CHECK(aligned->pages == 3, "aligned span keeps its length, slack returned");
        xmm_page_heap_free(aligned);
    }
    /* Purge everything: free pages become clean and read as zero. */
    size_t purged = xmm_page_heap_purge(true);
    CHECK(purged >= 30 * XMM_PAGE_SIZE, "purged %zu bytes", purged);
    xmm_page_heap_stats(0, &stats);
    CHECK(stats.dirty_bytes == 0, "nothing dirty after a full purge (%zu)", stats.dirty_bytes);
    struct xmm_span *again = xmm_page_heap_alloc(0, 30, 0);
    /* Not necessarily at `first` any more: purged, the span joined the
     * purged free spans beside it, and a request takes the best fit. */
    CHECK(again && !again->dirty, "purged span is clean");
    CHECK(again && ((unsigned char *)again->start)[100] == 0, "purged pages read as zero");
    xmm_page_heap_free(again);
    /* In-place resize: shrink gives the tail back (and a neighbour span can
     * then use it); grow takes the free pages after the span. */
    struct xmm_span *grower = xmm_page_heap_alloc(0, 8, 0);
    struct xmm_span *blocker = xmm_page_heap_alloc(0, 4, 0);
    CHECK(grower && blocker && blocker->start == grower->start + 8 * XMM_PAGE_SIZE, "neighbours");
    memset(grower->start, 0x5c, 8 * XMM_PAGE_SIZE);
    CHECK(!xmm_page_heap_resize(grower, 12), "cannot grow into an in-use neighbour");
    CHECK(grower->pages == 8, "a failed grow changes nothing");
    xmm_page_heap_free(blocker);
    CHECK(xmm_page_heap_resize(grower, 12), "grows into the freed neighbour");
    CHECK(grower->pages == 12 && ((unsigned char *)grower->start)[8 * XMM_PAGE_SIZE - 1] == 0x5c,
          "grown in place, contents kept");
    CHECK(xmm_page_heap_resize(grower, 3), "shrinks in place");
    struct xmm_span *reuse = xmm_page_heap_alloc(0, 9, 0);
    CHECK(reuse && reuse->start == grower->start + 3 * XMM_PAGE_SIZE,
          "the freed tail is reused at once");
    xmm_page_heap_free(reuse);
    xmm_page_heap_free(grower);
    /* Through realloc: a large block shrinks and grows without moving when
     * the pages after it are free (here: its own tail, freed by the
     * shrink). */
    char *block = xmm_malloc(900 << 10);
    memset(block, 0x7e, 300 << 10);
    char *cut = xmm_realloc(block, 300 << 10);
    CHECK(cut == block, "realloc shrank a large block in place (%p -> %p)", (void *)block,
          (void *)cut);
    char *grown = xmm_realloc(cut, 600 << 10);
    CHECK(grown == block, "realloc grew a large block in place (%p -> %p)", (void *)block,
          (void *)grown);
    CHECK(grown[(300 << 10) - 1] == 0x7e, "contents kept");
    char *shrunk = xmm_realloc(grown, 280 << 10);
    CHECK(shrunk == grown && xmm_usable_size(shrunk) < (300 << 10), "realloc shrank in place");
    xmm_free(shrunk);
    return check_summary("page heap");
}
