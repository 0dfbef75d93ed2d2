/* The page heap knows which free pages are resident: free spans of
 * resident pages and long free spans of purged ones stay apart.
 *
 *   apart    a freed resident span does not join a long purged neighbour;
 *            once purged too, it joins it. A short one (256 KiB at most)
 *            joins.
 *   growth   the purge before the heap grows purges the oldest resident
 *            span; purged, that span joins its purged neighbours, but
 *            never the span the request is served from (which was off
 *            the lists and claimed before the purge).
 *   aligned  a block aligned to 2 MiB, allocated and freed in a loop, is
 *            served from the same pages each time, though the pieces its
 *            alignment cut off stay apart from it.
 *   descriptor  an aligned request that needs a descriptor for the piece
 *            before its aligned start, and gets none, fails, rather than
 *            hand out an unaligned block.
 *
 * Each case runs in a process of its own, on small pages (XMM_THP=never):
 * a first touch must fault in one page, not a huge page around it, and
 * a purge never keeps whole huge pages. */
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "xmm.h"

#define PAGES(n) ((size_t)(n) * XMM_PAGE_SIZE)

static size_t dirty_bytes(void)
{
    struct xmm_page_heap_stats stats;
    xmm_page_heap_stats(0, &stats);
    return stats.dirty_bytes;
}

/* Spans of `first` and `second` pages, the second right after the first,
 * and a page in use after them: cut in order from one span. */
static bool neighbours(size_t first, size_t second, struct xmm_span **a, struct xmm_span **b,
                       struct xmm_span **blocker)
{
    struct xmm_span *whole = xmm_page_heap_alloc(0, first + second + 1, 0);
    if (!whole)
        return false;
    char *start = whole->start;
    *a = xmm_page_heap_cut_front(whole, first);
    *b = xmm_page_heap_cut_front(whole, second);
    *blocker = whole;
    return *a && *b && (*a)->start == start && (*b)->start == start + PAGES(first) &&
           whole->start == start + PAGES(first + second) && whole->pages == 1;
}

static void check_apart(void)
{
    struct xmm_span *touched, *purged, *blocker;
    bool ok = neighbours(300, 300, &touched, &purged, &blocker);
    CHECK(ok, "apart: two neighbours of 300 pages");
    if (!ok)
        return;
    char *start = touched->start;
    memset(start, 0x33, PAGES(300));
    xmm_page_heap_free(purged);
    xmm_page_heap_purge(true); /* the second: purged, clean */
    size_t dirty_before = dirty_bytes();
    xmm_page_heap_free(touched);
    CHECK(dirty_bytes() - dirty_before == PAGES(300), "apart: 300 pages count resident, not 600");
    struct xmm_span *joined = xmm_page_heap_alloc_resident(0, 600, 0);
    CHECK(joined == NULL, "apart: no resident span of 600 pages (the two did not join)");
    if (joined)
        xmm_page_heap_free(joined);
    xmm_page_heap_purge(true);
    struct xmm_span *whole = xmm_page_heap_alloc(0, 600, 0);
    CHECK(whole && whole->start == start && whole->dirty == XMM_PAGES_CLEAN,
          "apart: once purged, the two join into one clean span of 600 pages");
    if (whole)
        xmm_page_heap_free(whole);
    xmm_page_heap_free(blocker);
    xmm_page_heap_purge(true);
    /* A short piece that is not resident (up to 256 KiB: the rest of a
     * carver run, a purged hole) does join a resident neighbour, so that
     * holes between spans still coalesce. */
    struct xmm_span *big, *hole;
    ok = neighbours(300, 32, &big, &hole, &blocker);
    CHECK(ok, "apart: a span of 300 pages and one of 32 after it");
    if (!ok)
        return;
    start = big->start;
    memset(start, 0x44, PAGES(300));
    xmm_page_heap_free(hole);
    xmm_page_heap_purge(true); /* the hole: purged, clean */
    xmm_page_heap_free(big);
    joined = xmm_page_heap_alloc_resident(0, 332, 0);
    CHECK(joined && joined->start == start, "apart: the 32 purged pages joined the resident 300");
    if (joined)
        xmm_page_heap_free(joined);
    xmm_page_heap_free(blocker);
}

/* Layout: R (64 pages, touched) S (250, purged) then spans of 100
 * touched pages, each followed by one page in use, until more than the
 * growth slack is resident and free. No resident span holds 250 pages (a
 * piece joined with a short clean one, the rest of a chunk, at most 164),
 * so a request for 250 is served from S (the only free span of exactly
 * that length), and grows the RSS: the purge before it purges R first
 * (the oldest), and R, purged, joins its clean neighbours. */
static void check_growth(void)
{
    struct xmm_span *r, *s, *blocker;
    bool ok = neighbours(64, 250, &r, &s, &blocker);
    CHECK(ok, "growth: R and S neighbours");
    if (!ok)
        return;
    char *r_start = r->start, *s_start = s->start;
    enum { MAX_PIECES = 1024 };
    static struct xmm_span *pieces[MAX_PIECES], *blockers[MAX_PIECES];
    size_t count = 0;
    while (count < MAX_PIECES && PAGES(100) * count < XMM_PAGE_HEAP_GROWTH_SLACK + (8 << 20)) {
        blockers[count] = xmm_page_heap_alloc(0, 101, 0);
        pieces[count] = blockers[count] ? xmm_page_heap_cut_front(blockers[count], 100) : NULL;
        if (!pieces[count])
            break;
        memset(pieces[count]->start, 0x77, PAGES(100));
        count++;
    }
    CHECK(PAGES(100) * count >= XMM_PAGE_HEAP_GROWTH_SLACK + (8 << 20),
          "growth: %zu MiB in spans of 100 pages", PAGES(100) * count >> 20);
    memset(r_start, 0x11, PAGES(64));
    xmm_page_heap_free(s);
    xmm_page_heap_purge(true); /* S: purged, clean */
    xmm_page_heap_free(r);     /* the oldest resident free span */
    for (size_t i = 0; i < count; i++)
        xmm_page_heap_free(pieces[i]);
    struct xmm_span *served = xmm_page_heap_alloc(0, 250, 0);
    CHECK(served && served->start == s_start && served->pages == 250,
          "growth: 250 pages served from S, whole, while R was purged beside it");
    CHECK(xmm_os_resident_bytes(r_start, PAGES(64)) == 0,
          "growth: R, the oldest resident free span, was purged before the RSS grew");
    xmm_page_heap_purge(true);
    struct xmm_span *again = xmm_page_heap_alloc(0, 64, 0);
    CHECK(again && again->start == r_start && again->dirty == XMM_PAGES_CLEAN,
          "growth: R is a free clean span of its own again");
    if (again)
        xmm_page_heap_free(again);
    if (served)
        xmm_page_heap_free(served);
    for (size_t i = 0; i < count; i++)
        xmm_page_heap_free(blockers[i]);
    xmm_page_heap_free(blocker);
    xmm_page_heap_purge(true);
}

/* A block aligned to 2 MiB, allocated and freed again and again: the
 * pieces its alignment cuts off are purged or were never touched, and
 * stay apart from it once it is freed (resident); the next request must
 * still find it, not cut fresh pages every time. */
static void check_aligned(void)
{
    struct xmm_page_heap_stats before, after;
    char *first = NULL;
    bool same = true;
    xmm_page_heap_stats(0, &before);
    for (int i = 0; i < 2000; i++) {
        struct xmm_span *block = xmm_page_heap_alloc(0, 16, (size_t)2 << 20);
        if (!block) {
            same = false;
            break;
        }
        memset(block->start, 0x66, PAGES(16));
        if (!first)
            first = block->start;
        same &= block->start == first;
        xmm_page_heap_free(block);
    }
    xmm_page_heap_stats(0, &after);
    CHECK(same, "aligned: 2000 blocks of 16 pages aligned to 2 MiB, each at the first's address");
    CHECK(after.reserved_bytes - before.reserved_bytes <= ((size_t)64 << 20),
          "aligned: the heap reserved %zu MiB more for them",
          (after.reserved_bytes - before.reserved_bytes) >> 20);
}

/* Descriptors on demand: the build links this test with
 * -Wl,--wrap=xmm_metadata_alloc, so every call the page heap makes for
 * new metadata comes here first. */
void *__real_xmm_metadata_alloc(size_t size, size_t alignment);
void *__wrap_xmm_metadata_alloc(size_t size, size_t alignment);
bool __real_xmm_metadata_reentered(void);
bool __wrap_xmm_metadata_reentered(void);
static bool metadata_refused, metadata_reentered;

void *__wrap_xmm_metadata_alloc(size_t size, size_t alignment)
{
    return metadata_refused ? NULL : __real_xmm_metadata_alloc(size, alignment);
}

/* A signal handler inside the metadata lock, as the heap sees it: its
 * metadata fails without a refusal, and no free page becomes descriptors. */
bool __wrap_xmm_metadata_reentered(void)
{
    return metadata_reentered || __real_xmm_metadata_reentered();
}

/* An aligned request served from a free span whose aligned start lies
 * inside it, when no descriptor can be had for the piece before that
 * start (metadata exhausted): NULL, or an aligned block; never the
 * span's own unaligned start (which the heap once handed out, with the
 * piece after listed free over pages in use). The free span R starts 100
 * pages before a 2 MiB boundary. */
static void check_no_descriptor(void)
{
    size_t align = (size_t)2 << 20, align_pages = align / XMM_PAGE_SIZE;
    struct xmm_span *whole = xmm_page_heap_alloc(0, 1024, 0);
    struct xmm_span *spare = xmm_page_heap_alloc(0, 2048, 0); /* cut into pages below */
    CHECK(whole && spare, "descriptor: spans of 1024 and 2048 pages");
    if (!whole || !spare)
        return;
    size_t to_boundary = (((uintptr_t)whole->start + align - 1) & ~(uintptr_t)(align - 1)) -
                         (uintptr_t)whole->start;
    size_t boundary = to_boundary / XMM_PAGE_SIZE;
    size_t front = boundary >= 100 ? boundary - 100 : boundary + align_pages - 100;
    struct xmm_span *before = front ? xmm_page_heap_cut_front(whole, front) : NULL;
    CHECK(!front || before, "descriptor: %zu pages cut off the front", front);
    char *r_start = whole->start;
    xmm_page_heap_free(whole); /* R: free, 100 pages before the boundary */
    /* Every descriptor the heap holds spare goes, one page at a time, and
     * no more metadata comes: as in a signal handler inside the metadata
     * lock, where no free page becomes descriptors (the case below). */
    metadata_refused = metadata_reentered = true;
    enum { MAX_CUTS = 2047 };
    static struct xmm_span *cuts[MAX_CUTS];
    size_t cut = 0;
    while (cut < MAX_CUTS && (cuts[cut] = xmm_page_heap_cut_front(spare, 1)) != NULL)
        cut++;
    CHECK(cut < MAX_CUTS, "descriptor: the heap ran out of descriptors after %zu", cut);
    struct xmm_span *aligned = xmm_page_heap_alloc(0, 16, align);
    CHECK(!aligned || ((uintptr_t)aligned->start & (align - 1)) == 0,
          "descriptor: without a descriptor, NULL or an aligned block (%p, R at %p)",
          aligned ? (void *)aligned->start : NULL, (void *)r_start);
    metadata_refused = metadata_reentered = false;
    if (aligned)
        xmm_page_heap_free(aligned);
    struct xmm_span *again = xmm_page_heap_alloc(0, 16, align);
    CHECK(again && again->start == r_start + PAGES(100),
          "descriptor: with descriptors again, R serves the request at its aligned page");
    if (again)
        xmm_page_heap_free(again);
    for (size_t i = 0; i < cut; i++)
        xmm_page_heap_free(cuts[i]);
    xmm_page_heap_free(spare);
    if (before)
        xmm_page_heap_free(before);
}

/* The kernel refuses metadata every mapping (ulimit -v) while the heap
 * holds free pages: free pages become descriptors, 32 to a page, so that
 * spans can still be split. 2047 spans of one page cut off a run, then an
 * aligned request: all served, from about 64 pages of descriptors. Before,
 * the cuts stopped at the spare descriptors' end, and a split without a
 * descriptor for its tail handed out the whole free span. */
static void check_descriptor_pages(void)
{
    struct xmm_span *spare = xmm_page_heap_alloc(0, 2048, 0);
    struct xmm_span *room = xmm_page_heap_alloc(0, 1024, 0);
    CHECK(spare && room, "descriptor pages: spans of 2048 and 1024 pages");
    if (!spare || !room)
        return;
    xmm_page_heap_free(room); /* free pages to make descriptors of */
    struct xmm_page_heap_stats before, after;
    xmm_page_heap_stats(0, &before);
    metadata_refused = true;
    enum { CUTS = 2047 };
    static struct xmm_span *cuts[CUTS];
    size_t cut = 0;
    while (cut < CUTS && (cuts[cut] = xmm_page_heap_cut_front(spare, 1)) != NULL)
        cut++;
    struct xmm_span *aligned = xmm_page_heap_alloc(0, 16, (size_t)2 << 20);
    xmm_page_heap_stats(0, &after);
    metadata_refused = false;
    CHECK(cut == CUTS, "descriptor pages: %zu of %d spans cut with metadata refused", cut, CUTS);
    CHECK(aligned && aligned->pages == 16 && ((uintptr_t)aligned->start & ((2u << 20) - 1)) == 0,
          "descriptor pages: then an aligned block of exactly 16 pages (%zu pages at %p)",
          aligned ? (size_t)aligned->pages : 0, aligned ? (void *)aligned->start : NULL);
    size_t made = (after.descriptor_bytes - before.descriptor_bytes) / XMM_PAGE_SIZE;
    CHECK(made >= 1 && made <= CUTS / 32 + 4,
          "descriptor pages: %zu free pages became descriptors (32 each)", made);
    CHECK(before.free_bytes - after.free_bytes == made * XMM_PAGE_SIZE +
                                                      (aligned ? PAGES(16) : 0),
          "descriptor pages: the free pages went down by those pages and the block's "
          "(%zu -> %zu bytes)", before.free_bytes, after.free_bytes);
    if (aligned)
        xmm_page_heap_free(aligned);
    for (size_t i = 0; i < cut; i++)
        xmm_page_heap_free(cuts[i]);
    xmm_page_heap_free(spare);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } cases[] = {{"apart", check_apart},
                 {"growth", check_growth},
                 {"aligned", check_aligned},
                 {"descriptor", check_no_descriptor},
                 {"descriptor_pages", check_descriptor_pages}};
    size_t count = sizeof cases / sizeof cases[0];
    if (argc > 1) {
        /* One case, in a process of its own: a fresh heap, whose first
         * spans are cut from fresh pages one after another. */
        xmm_free(xmm_malloc(1)); /* initialise */
        for (size_t i = 0; i < count; i++)
            if (!strcmp(argv[1], cases[i].name))
                cases[i].run();
        return check_summary(argv[1]);
    }
    char *environment[] = {"XMM_THP=never", NULL};
    for (size_t i = 0; i < count; i++) {
        int status = check_run_self(cases[i].name, environment);
        CHECK(status == 0, "case %s: exit status %d", cases[i].name, status);
    }
    return check_summary("page_heap_residency");
}
