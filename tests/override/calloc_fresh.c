/*
 * calloc_fresh.c - calloc does not write pages that are already zero.
 *
 * A program that callocs a table and writes a little of it (Python's
 * start-up callocs tables of 128 and 256 KiB) should not find the whole
 * table resident: pages fresh from the kernel are zero, and glibc,
 * jemalloc and mimalloc leave them untouched. XMM serves zeroed requests
 * from 128 KiB on as whole pages, whose span knows whether they are clean
 * (alloc.c, ZEROED_AS_PAGES_MIN).
 *
 * In a child with XMM_THP=never, so that no huge page makes a block's
 * untouched pages resident with its neighbours': right after start, for
 * sizes from 128 KiB to 256 KiB, each block's pages are counted with
 * mincore (before anything reads them: a read maps the zero page, which
 * mincore counts), then every byte is checked zero. Then the same sizes
 * again after writing and freeing a block of each (those pages are dirty:
 * they must read zero as well), on pages the page heap took back dirty
 * from large blocks (and purged), and sizes just below the threshold.
 * The child runs again under XMM_PURGE=free, whose purged pages may keep
 * their bytes.
 */
#include <stdbool.h>
#include <sys/mman.h>

#include "xmm.h"
#include "testlib.h"

static const size_t fresh_sizes[] = {128 * KIB, 128 * KIB + 8, 150000, 200 * KIB, 256 * KIB};
#define SIZE_COUNT (sizeof fresh_sizes / sizeof fresh_sizes[0])

/* Pages of [block, block + size) that have a page table entry. */
static size_t resident_pages(const void *block, size_t size, size_t *pages)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)block & ~(uintptr_t)(page - 1);
    uintptr_t end = ((uintptr_t)block + size + page - 1) & ~(uintptr_t)(page - 1);
    static unsigned char vector[1024];
    *pages = (end - start) / page;
    if (*pages > sizeof vector || mincore((void *)start, end - start, vector) != 0)
        return SIZE_MAX;
    size_t resident = 0;
    for (size_t i = 0; i < *pages; i++)
        resident += vector[i] & 1;
    return resident;
}

static size_t first_nonzero(const unsigned char *block, size_t size)
{
    for (size_t i = 0; i < size; i++)
        if (block[i])
            return i;
    return SIZE_MAX;
}

static void fresh_blocks_stay_untouched(void)
{
    void *blocks[SIZE_COUNT];
    size_t resident[SIZE_COUNT], pages[SIZE_COUNT];
    /* calloc all of them before looking: nothing in between touches them. */
    for (size_t i = 0; i < SIZE_COUNT; i++)
        blocks[i] = calloc(1, fresh_sizes[i]);
    for (size_t i = 0; i < SIZE_COUNT; i++)
        resident[i] = blocks[i] ? resident_pages(blocks[i], fresh_sizes[i], &pages[i]) : SIZE_MAX;
    for (size_t i = 0; i < SIZE_COUNT; i++) {
        CHECK(blocks[i] != NULL, "calloc(1, %zu) != NULL", fresh_sizes[i]);
        if (!blocks[i])
            continue;
        /* A block that shares its first or last page with another may
         * find that page resident: at most one page at each end. */
        CHECK(resident[i] <= 2, "calloc(1, %zu) on fresh memory: %zu of its %zu pages resident "
                                "(at most 2: the ends it may share)",
              fresh_sizes[i], resident[i], pages[i]);
        CHECK(first_nonzero(blocks[i], fresh_sizes[i]) == SIZE_MAX,
              "calloc(1, %zu) on fresh memory reads zero", fresh_sizes[i]);
        CHECK(malloc_usable_size(blocks[i]) >= fresh_sizes[i], "its usable size %zu >= %zu",
              malloc_usable_size(blocks[i]), fresh_sizes[i]);
    }
    for (size_t i = 0; i < SIZE_COUNT; i++)
        free(blocks[i]);
}

/* Blocks written and freed, then calloc'd again: the pages they get may
 * be those just dirtied, and must read zero. */
static void dirty_blocks_are_cleared(void)
{
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < SIZE_COUNT; i++) {
            /* Odd rounds: the dirty block is itself calloc'd (pages that
             * its free keeps for exact reuse). */
            unsigned char *dirty = round % 2 ? calloc(1, fresh_sizes[i]) : malloc(fresh_sizes[i]);
            CHECKQ(dirty != NULL, "a block of %zu bytes to dirty", fresh_sizes[i]);
            if (!dirty)
                continue;
            memset(dirty, 0xa5, malloc_usable_size(dirty));
            free(dirty);
            unsigned char *zero = calloc(fresh_sizes[i], 1);
            CHECKQ(zero != NULL, "calloc(%zu, 1) after a dirtied free", fresh_sizes[i]);
            if (!zero)
                continue;
            size_t at = first_nonzero(zero, fresh_sizes[i]);
            CHECKQ(at == SIZE_MAX, "calloc(%zu, 1) after a dirtied free, round %d: byte %zu is 0x%02x",
                   fresh_sizes[i], round, at, at == SIZE_MAX ? 0 : zero[at]);
            free(zero);
        }
    }
    CHECK(1, "3 rounds of %zu sizes: calloc after a dirtied free reads zero", SIZE_COUNT);
}

/* Large blocks written and freed, then callocs that miss the large cache:
 * the miss gives the cache back to the page heap, whose dirty pages the
 * callocs then take. With `release`, xmm_release_memory purges them first
 * (under XMM_PURGE=free with MADV_FREE: they may keep their bytes, and
 * must still be cleared). */
static void page_heap_pages_cleared(bool release)
{
    unsigned long bad = 0, checked = 0;
    for (int round = 0; round < 4; round++) {
        for (size_t big = 1 * MIB; big <= 2 * MIB; big += 512 * KIB) {
            unsigned char *dirty = malloc(big);
            CHECKQ(dirty != NULL, "malloc(%zu)", big);
            if (!dirty)
                continue;
            memset(dirty, 0x3c, big);
            free(dirty);
        }
        if (release)
            xmm_release_memory();
        for (size_t i = 0; i < SIZE_COUNT; i++) {
            unsigned char *zero = calloc(1, fresh_sizes[i]);
            CHECKQ(zero != NULL, "calloc(1, %zu)", fresh_sizes[i]);
            if (!zero)
                continue;
            checked++;
            size_t at = first_nonzero(zero, fresh_sizes[i]);
            if (at != SIZE_MAX && bad++ < 5)
                CHECKQ(0, "calloc(1, %zu) on the page heap's dirty pages%s: byte %zu is 0x%02x",
                       fresh_sizes[i], release ? " (released first)" : "", at, zero[at]);
            free(zero);
        }
    }
    CHECK(bad == 0 && checked == 4 * SIZE_COUNT,
          "%lu callocs after 1-2 MiB blocks were written and freed%s: all zero (%lu not)",
          checked, release ? ", then released" : "", bad);
}

/* Below the threshold calloc takes a class's object (possibly reused)
 * and clears it. */
static void below_threshold_cleared(void)
{
    size_t size = 128 * KIB - 1;
    unsigned char *dirty = malloc(size);
    memset(dirty, 0x5a, size);
    free(dirty);
    unsigned char *zero = calloc(1, size);
    CHECK(zero && first_nonzero(zero, size) == SIZE_MAX,
          "calloc(1, %zu) right after a dirtied free of that size reads zero", size);
    free(zero);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "fresh") == 0) {
        fresh_blocks_stay_untouched();
        dirty_blocks_are_cleared();
        page_heap_pages_cleared(false);
        page_heap_pages_cleared(true);
        below_threshold_cleared();
        return check_summary("calloc_fresh (child)");
    }
    expect_malloc_is_xmm();
    char *small_pages[] = {"XMM_THP=never", NULL};
    int status = check_run_self("fresh", small_pages);
    CHECK(status == 0, "the checks pass in a child with XMM_THP=never (status %d)", status);
    char *lazy_purge[] = {"XMM_THP=never", "XMM_PURGE=free", NULL};
    status = check_run_self("fresh", lazy_purge);
    CHECK(status == 0, "and with XMM_PURGE=free (MADV_FREE) as well (status %d)", status);
    return check_summary("calloc_fresh");
}
