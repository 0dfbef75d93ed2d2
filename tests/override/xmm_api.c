/*
 * xmm_api.c - the xmm_* interface of include/xmm.h, function by function.
 *
 * Linked with libxmm-core.a: no malloc override, so the system malloc and
 * XMM live side by side in this process, as xmm.h allows ("they work
 * whether or not XMM also replaces malloc"). Each group of checks runs in a
 * forked section so one crash does not hide the rest.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "xmm.h"
#include "testlib.h"
#include "node_calls.h"
#include "stats_snapshot.h"

static int global_variable;

static void test_malloc_free(void)
{
    unsigned long bad = 0;
    enum { RING = 32 };
    void *ring[RING] = {0};
    size_t ring_size[RING] = {0};

    for (size_t size = 0; size <= 20000 + RING; size++) {
        size_t slot = size % RING;
        if (ring[slot]) {
            if (pattern_find(ring[slot], ring_size[slot], pattern_seed(ring[slot], ring_size[slot])) !=
                SIZE_MAX)
                bad++;
            xmm_free(ring[slot]);
            ring[slot] = NULL;
        }
        if (size > 20000)
            continue;
        void *ptr = xmm_malloc(size);
        if (!ptr || xmm_usable_size(ptr) < size || !is_aligned(ptr, expected_alignment(size)) ||
            xmm_node_of(ptr) < 0) {
            if (bad++ < 5)
                CHECKQ(0, "xmm_malloc(%zu) = %p: usable %zu, node %d", size, ptr,
                       ptr ? xmm_usable_size(ptr) : 0, ptr ? xmm_node_of(ptr) : -2);
            xmm_free(ptr);
            continue;
        }
        pattern_fill(ptr, size, pattern_seed(ptr, size));
        ring[slot] = ptr;
        ring_size[slot] = size;
    }
    CHECK(bad == 0, "xmm_malloc at every size 0..20000: usable, aligned, XMM block, intact (%lu bad)",
          bad);
    static const size_t large[] = {100000, MIB, 5 * MIB + 3, 33 * MIB, 80 * MIB};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        char *ptr = xmm_malloc(large[i]);
        CHECK(ptr && xmm_usable_size(ptr) >= large[i] && xmm_node_of(ptr) >= 0,
              "xmm_malloc(%zu): usable %zu", large[i], ptr ? xmm_usable_size(ptr) : 0);
        if (ptr) {
            pattern_fill(ptr, large[i], 5);
            CHECK(pattern_find(ptr, large[i], 5) == SIZE_MAX, "xmm_malloc(%zu) writable",
                  large[i]);
        }
        xmm_free(ptr);
    }
    void *a = xmm_malloc(0), *b = xmm_malloc(0);
    CHECK(a && b && a != b, "xmm_malloc(0) twice: two distinct blocks");
    xmm_free(a);
    xmm_free(b);
    xmm_free(NULL);
    CHECK(xmm_usable_size(NULL) == 0, "xmm_usable_size(NULL) == 0");
    errno = 0;
    void *ptr = xmm_malloc(SIZE_MAX);
    CHECK(ptr == NULL && errno == ENOMEM, "xmm_malloc(SIZE_MAX): NULL, ENOMEM");

    /* The system malloc works alongside, and its blocks are not XMM's. */
    void *system_block = malloc(100), *xmm_block = xmm_malloc(100);
    CHECK(system_block && xmm_block, "malloc and xmm_malloc side by side");
    errno = 0;
    int node = xmm_node_of(system_block);
    CHECK(node == -1 && errno == EINVAL,
          "xmm_node_of(block from the system malloc) = -1, EINVAL (got %d, errno %d)", node, errno);
    free(system_block);
    xmm_free(xmm_block);
}

static void test_calloc(void)
{
    unsigned long dirty = 0;
    for (size_t size = 0; size <= 20000; size += 1 + size / 64) {
        void *dirt = xmm_malloc(size);
        if (dirt)
            memset(dirt, 0xee, xmm_usable_size(dirt));
        xmm_free(dirt);
        unsigned char *zero = xmm_calloc(1, size);
        if (!zero || find_not_byte(zero, size, 0) != SIZE_MAX)
            dirty++;
        xmm_free(zero);
    }
    CHECK(dirty == 0, "xmm_calloc zeroes reused memory at sizes 0..20000 (%lu dirty)", dirty);
    for (size_t size = MIB; size <= 64 * MIB; size *= 4) {
        void *dirt = xmm_malloc(size);
        if (dirt)
            memset(dirt, 0xee, size);
        xmm_free(dirt);
        unsigned char *zero = xmm_calloc(size / 16, 16);
        CHECK(zero && find_not_byte(zero, size, 0) == SIZE_MAX,
              "xmm_calloc(%zu / 16, 16) after a dirtied free: zero", size);
        xmm_free(zero);
    }
    errno = 0;
    void *ptr = xmm_calloc(SIZE_MAX / 2 + 1, 2);
    CHECK(ptr == NULL && errno == ENOMEM, "xmm_calloc overflow: NULL, ENOMEM (errno %d)", errno);
    errno = 0;
    ptr = xmm_calloc((size_t)1 << 32, (size_t)1 << 32);
    CHECK(ptr == NULL && errno == ENOMEM, "xmm_calloc(2^32, 2^32): NULL, ENOMEM (errno %d)", errno);
}

static void test_realloc(void)
{
    static const size_t ladder[] = {1, 16, 17, 100, 1000, 5000, 70000, MIB, 40 * MIB, 3, 64, 100000};
    char *ptr = xmm_realloc(NULL, 10);
    size_t size = 10;
    CHECK(ptr != NULL && xmm_node_of(ptr) >= 0, "xmm_realloc(NULL, 10) allocates");
    pattern_fill(ptr, size, 99);
    size_t good = 0, count = sizeof ladder / sizeof ladder[0];
    for (size_t i = 0; i < count; i++) {
        char *moved = xmm_realloc(ptr, ladder[i]);
        size_t keep = size < ladder[i] ? size : ladder[i];
        if (moved && pattern_find(moved, keep, 99) == SIZE_MAX &&
            xmm_usable_size(moved) >= ladder[i]) {
            good++;
            pattern_fill(moved, ladder[i], 99);
            ptr = moved;
            size = ladder[i];
        } else {
            CHECK(0, "xmm_realloc(%zu -> %zu) kept the contents", size, ladder[i]);
            if (moved) {
                ptr = moved;
                size = 0;
            }
        }
    }
    CHECK(good == count, "xmm_realloc through %zu sizes keeps the contents", count);

    /* Failure keeps the block. */
    errno = 0;
    void *failed = xmm_realloc(ptr, SIZE_MAX - 64);
    CHECK(failed == NULL && errno == ENOMEM && pattern_find(ptr, size, 99) == SIZE_MAX,
          "xmm_realloc(p, SIZE_MAX - 64): NULL, ENOMEM, block unchanged");

    /* Size 0 frees and returns NULL. */
    size_t usable = xmm_usable_size(ptr);
    struct xmm_stats before = snapshot();
    errno = 0;
    void *result = xmm_realloc(ptr, 0);
    struct xmm_stats after = snapshot();
    CHECK(result == NULL, "xmm_realloc(p, 0) returns NULL");
    CHECK(after.bytes_in_use + usable == before.bytes_in_use,
          "xmm_realloc(p, 0) freed p (bytes_in_use %llu -> %llu)",
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
    if (result)
        xmm_free(result);
}

static void test_aligned_alloc(void)
{
    size_t good = 0, count = 0;
    for (size_t alignment = 1; alignment <= GIB; alignment <<= 1) {
        static const size_t sizes[] = {1, 100, 4096, 100000};
        for (size_t i = 0; i < 4; i++, count++) {
            void *ptr = xmm_aligned_alloc(alignment, sizes[i]);
            if (ptr && is_aligned(ptr, alignment) && xmm_usable_size(ptr) >= sizes[i] &&
                xmm_node_of(ptr) >= 0) {
                memset(ptr, 1, sizes[i]);
                good++;
            } else {
                CHECK(0, "xmm_aligned_alloc(%zu, %zu) = %p", alignment, sizes[i], ptr);
            }
            xmm_free(ptr);
        }
    }
    CHECK(good == count, "xmm_aligned_alloc: alignments 1 B..1 GiB x 4 sizes (%zu of %zu)", good,
          count);
    static const size_t bad[] = {0, 3, 24, 100, 4097, GIB + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *ptr = xmm_aligned_alloc(bad[i], 64);
        CHECK(ptr == NULL && errno == EINVAL, "xmm_aligned_alloc(%zu, 64): NULL, EINVAL (errno %d)",
              bad[i], errno);
        xmm_free(ptr);
    }
    errno = 0;
    void *ptr = xmm_aligned_alloc(4096, SIZE_MAX - 100);
    CHECK(ptr == NULL && errno == ENOMEM, "xmm_aligned_alloc(4096, SIZE_MAX - 100): NULL, ENOMEM");
}

static void test_arrays(void)
{
    uint32_t *array = xmm_alloc_array(sizeof(uint32_t), 1000);
    CHECK(array && xmm_usable_size(array) >= 4000 && is_aligned(array, 16),
          "xmm_alloc_array(4, 1000): 4000 usable bytes, 16-aligned");
    if (!array)
        return;
    for (uint32_t i = 0; i < 1000; i++)
        array[i] = i * 7;
    static const size_t overflow[][2] = {{SIZE_MAX / 2 + 1, 2},
                                         {(size_t)1 << 32, (size_t)1 << 32},
                                         {8, SIZE_MAX / 8 + 1}};
    for (size_t i = 0; i < 3; i++) {
        errno = 0;
        void *ptr = xmm_alloc_array(overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM, "xmm_alloc_array(%#zx, %#zx): NULL, ENOMEM",
              overflow[i][0], overflow[i][1]);
        errno = 0;
        ptr = xmm_realloc_array(array, overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM, "xmm_realloc_array(p, %#zx, %#zx): NULL, ENOMEM",
              overflow[i][0], overflow[i][1]);
    }
    int same = 1;
    for (uint32_t i = 0; i < 1000; i++)
        same &= array[i] == i * 7;
    CHECK(same, "the array is intact after the overflowing xmm_realloc_array calls");
    uint32_t *grown = xmm_realloc_array(array, sizeof(uint32_t), 500000);
    CHECK(grown != NULL, "xmm_realloc_array grows to 500000 elements");
    if (grown) {
        same = 1;
        for (uint32_t i = 0; i < 1000; i++)
            same &= grown[i] == i * 7;
        CHECK(same, "xmm_realloc_array kept the elements");
        array = grown;
    }
    uint32_t *fresh = xmm_realloc_array(NULL, 16, 10);
    CHECK(fresh && xmm_usable_size(fresh) >= 160, "xmm_realloc_array(NULL, 16, 10) allocates");
    xmm_free(fresh);
    xmm_free(array);
}

static void strndup_null_child(void)
{
    errno = 0;
    char *copy = xmm_strndup(NULL, 5);
    CHECK(copy == NULL && errno == EINVAL, "xmm_strndup(NULL, 5): NULL, EINVAL (got %p, errno %d)",
          (void *)copy, errno);
}

static void test_strings(void)
{
    const char *text = "hello, xmm";
    char *copy = xmm_strdup(text);
    CHECK(copy && copy != text && strcmp(copy, text) == 0 && xmm_node_of(copy) >= 0,
          "xmm_strdup copies into XMM memory");
    xmm_free(copy);
    char *empty = xmm_strdup("");
    CHECK(empty && empty[0] == '\0', "xmm_strdup(\"\") gives an empty string");
    xmm_free(empty);
    static char long_text[100001];
    memset(long_text, 'x', 100000);
    copy = xmm_strdup(long_text);
    CHECK(copy && strlen(copy) == 100000, "xmm_strdup of 100000 characters");
    xmm_free(copy);
    errno = 0;
    copy = xmm_strdup(NULL);
    CHECK(copy == NULL && errno == EINVAL, "xmm_strdup(NULL): NULL, EINVAL (errno %d)", errno);

    copy = xmm_strndup(text, 5);
    CHECK(copy && strcmp(copy, "hello") == 0, "xmm_strndup(text, 5) = \"hello\"");
    xmm_free(copy);
    copy = xmm_strndup(text, 1000);
    CHECK(copy && strcmp(copy, text) == 0, "xmm_strndup with max_length past the end copies all");
    xmm_free(copy);
    copy = xmm_strndup(text, 0);
    CHECK(copy && copy[0] == '\0', "xmm_strndup(text, 0) = \"\"");
    xmm_free(copy);
    /* Not NUL-terminated within max_length: must not read past it. */
    char *unterminated = xmm_malloc(4);
    memcpy(unterminated, "abcd", 4);
    copy = xmm_strndup(unterminated, 4);
    CHECK(copy && strcmp(copy, "abcd") == 0, "xmm_strndup of 4 bytes without a NUL terminates it");
    xmm_free(copy);
    xmm_free(unterminated);
    run_section("xmm_strndup(NULL, 5) (in a child: it may crash)", strndup_null_child);
}

static void test_pages(void)
{
    size_t page = xmm_page_size();
    CHECK(page == (size_t)sysconf(_SC_PAGESIZE), "xmm_page_size() %zu == sysconf %ld", page,
          sysconf(_SC_PAGESIZE));
    static const size_t counts[] = {1, 2, 3, 16, 255, 1024, 20000};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        for (int round = 0; round < 2; round++) {
            unsigned char *pages = xmm_alloc_pages(counts[i]);
            CHECK(pages && is_aligned(pages, page) && xmm_node_of(pages) >= 0 &&
                      find_not_byte(pages, counts[i] * page, 0) == SIZE_MAX,
                  "xmm_alloc_pages(%zu), round %d: page-aligned (%p), zeroed, an XMM block",
                  counts[i], round, (void *)pages);
            if (pages) {
                memset(pages, 0xab, counts[i] * page); /* dirty for round 2 */
                xmm_free_pages(pages, counts[i]);
            }
        }
    }
    errno = 0;
    void *pages = xmm_alloc_pages(0);
    CHECK(pages == NULL && errno == EINVAL, "xmm_alloc_pages(0): NULL, EINVAL (errno %d)", errno);
    errno = 0;
    pages = xmm_alloc_pages(SIZE_MAX / page + 1);
    CHECK(pages == NULL && errno == ENOMEM, "xmm_alloc_pages(SIZE_MAX / page + 1): NULL, ENOMEM "
                                            "(errno %d)",
          errno);
    errno = 0;
    pages = xmm_alloc_pages(SIZE_MAX);
    CHECK(pages == NULL && errno == ENOMEM, "xmm_alloc_pages(SIZE_MAX): NULL, ENOMEM (errno %d)",
          errno);
    /* Many small page runs live at once do not overlap. */
    enum { RUNS = 200 };
    static unsigned char *runs[RUNS];
    size_t bad = 0;
    for (int i = 0; i < RUNS; i++) {
        runs[i] = xmm_alloc_pages(1 + i % 5);
        if (runs[i])
            pattern_fill(runs[i], (1 + i % 5) * page, (uint64_t)i);
    }
    for (int i = 0; i < RUNS; i++) {
        if (!runs[i] || pattern_find(runs[i], (1 + i % 5) * page, (uint64_t)i) != SIZE_MAX)
            bad++;
        if (runs[i])
            xmm_free_pages(runs[i], 1 + i % 5);
    }
    CHECK(bad == 0, "%d live page runs of 1..5 pages: distinct, intact", RUNS);
}

static void test_numa(void)
{
    int count = xmm_node_count();
    CHECK(count >= 1, "xmm_node_count() = %d >= 1", count);
    void *ptr = xmm_malloc_on_node(1000, 0);
    CHECK(ptr != NULL && xmm_node_of(ptr) == 0, "xmm_malloc_on_node(1000, 0) gives a node 0 block "
                                                "(node %d)",
          ptr ? xmm_node_of(ptr) : -2);
    xmm_free(ptr);
    ptr = xmm_malloc_on_node(3 * MIB, 0);
    CHECK(ptr != NULL && xmm_node_of(ptr) == 0, "xmm_malloc_on_node(3 MiB, 0) on node 0");
    xmm_free(ptr);
    for (int node = 1; node < count; node++) {
        errno = 0;
        ptr = xmm_malloc_on_node(1000, node);
        CHECK((ptr && xmm_node_of(ptr) == node) || (!ptr && errno == EINVAL),
              "xmm_malloc_on_node(1000, %d): a block of node %d, or EINVAL if not allowed", node,
              node);
        xmm_free(ptr);
    }
    static const int bad[] = {-1, 999, 64, 1 << 30};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        ptr = xmm_malloc_on_node(100, bad[i]);
        CHECK(ptr == NULL && errno == EINVAL, "xmm_malloc_on_node(100, %d): NULL, EINVAL (errno %d)",
              bad[i], errno);
        xmm_free(ptr);
    }
    errno = 0;
    ptr = xmm_malloc_on_node(100, count);
    CHECK(ptr == NULL && errno == EINVAL, "xmm_malloc_on_node(100, node_count = %d): NULL, EINVAL",
          count);

    int local = 0;
    errno = 0;
    int node = xmm_node_of(&local);
    CHECK(node == -1 && errno == EINVAL, "xmm_node_of(stack address) = -1, EINVAL (got %d)", node);
    errno = 0;
    node = xmm_node_of(&global_variable);
    CHECK(node == -1 && errno == EINVAL, "xmm_node_of(global) = -1, EINVAL (got %d)", node);
    errno = 0;
    node = xmm_node_of(NULL);
    CHECK(node == -1 && errno == EINVAL, "xmm_node_of(NULL) = -1, EINVAL (got %d)", node);
    errno = 0;
    node = xmm_node_of((void *)(uintptr_t)0x12345670);
    CHECK(node == -1 && errno == EINVAL, "xmm_node_of(unmapped address) = -1, EINVAL (got %d)",
          node);
}

/* Pages purged inside spans that keep live blocks count in bytes_purged
 * too: xmm_release_memory returned 10.0 MiB here while bytes_purged grew
 * by 4.9 (found by a helper reading xmm.h). */
static void test_release_inside_spans(void)
{
    enum { COUNT = 4000, SIZE = 3000 };
    static char *blocks[COUNT];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = xmm_malloc(SIZE);
        if (blocks[i])
            memset(blocks[i], 1, SIZE);
    }
    for (int i = 0; i < COUNT; i++)
        if (i % 8) /* one in eight stays: the spans keep live blocks */
            xmm_free(blocks[i]);
    xmm_release_cpu_caches();
    struct xmm_stats before = snapshot();
    size_t released = xmm_release_memory();
    struct xmm_stats after = snapshot();
    CHECK(released >= 4 * MIB,
          "xmm_release_memory purged inside spans that keep a block in eight (%zu bytes)",
          released);
    CHECK(after.bytes_purged - before.bytes_purged >= released,
          "bytes_purged grew by at least what it returned (%llu, returned %zu)",
          (unsigned long long)(after.bytes_purged - before.bytes_purged), released);
    for (int i = 0; i < COUNT; i += 8)
        xmm_free(blocks[i]);
}

static void test_release(void)
{
    enum { BLOCKS = 128 };
    static void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = xmm_malloc(256 * KIB);
        if (blocks[i])
            memset(blocks[i], 1, 256 * KIB);
    }
    size_t resident_full = resident_bytes();
    /* Decay (XMM_DECAY_MS) may purge some of it before the release on a
     * slow machine: the release must make up the rest. */
    struct xmm_stats live = snapshot();
    for (int i = 0; i < BLOCKS; i++)
        xmm_free(blocks[i]);
    /* Small blocks to fill this CPU's cache. */
    for (int i = 0; i < BLOCKS; i++)
        blocks[i] = xmm_malloc(48);
    for (int i = 0; i < BLOCKS; i++)
        xmm_free(blocks[i]);

    struct xmm_stats before = snapshot();
    xmm_release_cpu_caches();
    struct xmm_stats emptied = snapshot();
    CHECK(emptied.bytes_cached == 0,
          "xmm_release_cpu_caches empties the caches of a single-threaded process (%llu bytes "
          "cached before, %llu after)",
          (unsigned long long)before.bytes_cached, (unsigned long long)emptied.bytes_cached);
    CHECK(emptied.bytes_purged == before.bytes_purged,
          "xmm_release_cpu_caches purges nothing (bytes_purged %llu -> %llu)",
          (unsigned long long)before.bytes_purged, (unsigned long long)emptied.bytes_purged);

    size_t released = xmm_release_memory();
    struct xmm_stats after = snapshot();
    CHECK(released + (emptied.bytes_purged - live.bytes_purged) >= 30 * MIB,
          "xmm_release_memory after freeing 32 MiB returns %zu (+ %llu purged by decay before) "
          ">= 30 MiB",
          released, (unsigned long long)(emptied.bytes_purged - live.bytes_purged));
    CHECK(after.bytes_purged >= emptied.bytes_purged + released,
          "bytes_purged grew by at least the returned count (%llu -> %llu, returned %zu)",
          (unsigned long long)emptied.bytes_purged, (unsigned long long)after.bytes_purged,
          released);
    CHECK(after.bytes_committed + released <= emptied.bytes_committed + 64 * KIB,
          "bytes_committed fell by about the returned count (%llu -> %llu)",
          (unsigned long long)emptied.bytes_committed, (unsigned long long)after.bytes_committed);
    CHECK(after.bytes_cached == 0, "no cached bytes after xmm_release_memory");
    size_t resident_released = resident_bytes();
    CHECK(resident_released + 24 * MIB <= resident_full,
          "the process's RSS fell by >= 24 MiB of the 32 MiB freed and released: %zu -> %zu KiB",
          resident_full / KIB, resident_released / KIB);
    size_t again = xmm_release_memory();
    CHECK(again == 0, "a second xmm_release_memory right away returns 0 (got %zu)", again);

    /* The memory comes back in use, zeroed where calloc asks. */
    size_t bad = 0;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = xmm_calloc(1, 256 * KIB);
        if (!blocks[i] || find_not_byte(blocks[i], 256 * KIB, 0) != SIZE_MAX)
            bad++;
    }
    for (int i = 0; i < BLOCKS; i++)
        xmm_free(blocks[i]);
    CHECK(bad == 0, "after the release, 32 MiB allocated again with xmm_calloc, zero");
}

static void test_stats(void)
{
    enum { N = 777 };
    static void *blocks[N];
    struct xmm_stats before = snapshot();
    CHECK(before.version == XMM_STATS_VERSION, "stats version %u", before.version);
    CHECK((int)before.node_count == xmm_node_count(), "stats node_count %u == xmm_node_count %d",
          before.node_count, xmm_node_count());
    size_t usable = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = xmm_malloc((size_t)(i % 300) + 1);
        usable += xmm_usable_size(blocks[i]);
    }
    struct xmm_stats middle = snapshot();
    for (int i = 0; i < N; i++)
        xmm_free(blocks[i]);
    struct xmm_stats after = snapshot();
    CHECK(middle.bytes_in_use - before.bytes_in_use == usable,
          "bytes_in_use grew by the %zu usable bytes (%llu -> %llu)", usable,
          (unsigned long long)before.bytes_in_use, (unsigned long long)middle.bytes_in_use);
    CHECK(after.bytes_in_use == before.bytes_in_use, "bytes_in_use back to %llu (%llu)",
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
    /* System malloc activity is not XMM's. */
    before = snapshot();
    void *system_block = malloc(1000);
    free(system_block);
    after = snapshot();
    CHECK(after.allocations == before.allocations && after.frees == before.frees &&
              after.bytes_in_use == before.bytes_in_use,
          "the system malloc does not touch XMM's counters");
    errno = 0;
    CHECK(xmm_stats_get(NULL) == -1 && errno == EINVAL, "xmm_stats_get(NULL): -1, EINVAL");
}

/* Runs xmm_stats_print(fd, format) into a temporary file; returns its
 * contents (static buffer) and the return value through `result`. */
static const char *print_to_file(const char *format, int *result, char *path, size_t path_size)
{
    static char contents[1 << 16];
    snprintf(path, path_size, "/tmp/xmm-stats-XXXXXX");
    int fd = mkstemp(path);
    errno = 0;
    *result = xmm_stats_print(fd, format);
    int saved_errno = errno;
    ssize_t length = pread(fd, contents, sizeof contents - 1, 0);
    contents[length > 0 ? length : 0] = '\0';
    close(fd);
    errno = saved_errno;
    return contents;
}

static void test_stats_print(void)
{
    char path[64];
    int result;
    const char *text = print_to_file("text", &result, path, sizeof path);
    CHECK(result == 0 && strlen(text) > 20, "xmm_stats_print(fd, \"text\") returns 0, writes %zu bytes",
          strlen(text));
    unlink(path);
    text = print_to_file(NULL, &result, path, sizeof path);
    CHECK(result == 0 && strlen(text) > 20, "xmm_stats_print(fd, NULL) writes text");
    unlink(path);
    text = print_to_file("xml", &result, path, sizeof path);
    CHECK(result == -1 && errno == EINVAL && text[0] == '\0',
          "xmm_stats_print(fd, \"xml\"): -1, EINVAL, nothing written");
    unlink(path);
    errno = 0;
    int printed = xmm_stats_print(-1, "text");
    CHECK(printed == -1 && errno == EBADF,
          "xmm_stats_print(-1, ..) fails: -1, errno EBADF (errno %d)", errno);
    errno = 0;
    printed = xmm_stats_print(-1, "json");
    CHECK(printed == -1 && errno == EBADF,
          "xmm_stats_print(-1, \"json\") fails: -1, errno EBADF (errno %d)", errno);

    text = print_to_file("json", &result, path, sizeof path);
    CHECK(result == 0 && text[0] == '{', "xmm_stats_print(fd, \"json\") returns 0, writes an object");
    if (access("/usr/bin/python3", X_OK) != 0) {
        NOTE("python3 missing: the JSON is not validated");
        unlink(path);
        return;
    }
    char command[256];
    snprintf(command, sizeof command, "python3 -m json.tool < %s > /dev/null 2>&1", path);
    int status = system(command);
    CHECK(status == 0, "the JSON output parses with python3 -m json.tool (status %d)", status);
    /* Its counters are the ones xmm_stats_get gives. */
    struct xmm_stats stats = snapshot();
    snprintf(command, sizeof command,
             "python3 -c 'import json,sys; d=json.load(open(\"%s\")); "
             "sys.exit(0 if json.dumps(d).find(\"allocations\") >= 0 else 1)'",
             path);
    status = system(command);
    CHECK(status == 0, "the JSON names \"allocations\" (xmm_stats_get says %llu)",
          (unsigned long long)stats.allocations);
    unlink(path);
}

/* tests/programs/sysfs_faked.sh runs this under XMM_NUMA=interleave on a
 * faked machine of two nodes; the NUMA VMs' on_node mode on real ones. */
static void test_node_calls(void)
{
    check_node_calls(-1);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "node_calls")) {
        test_node_calls();
        return check_summary("xmm_api node_calls");
    }
    run_section("xmm_current_node, xmm_buf_get, xmm_strcpy_into: this node", test_node_calls);
    run_section("xmm_malloc, xmm_free, xmm_usable_size, xmm_node_of", test_malloc_free);
    run_section("xmm_calloc", test_calloc);
    run_section("xmm_realloc", test_realloc);
    run_section("xmm_aligned_alloc", test_aligned_alloc);
    run_section("xmm_alloc_array, xmm_realloc_array", test_arrays);
    run_section("xmm_strdup, xmm_strndup", test_strings);
    run_section("xmm_page_size, xmm_alloc_pages, xmm_free_pages", test_pages);
    run_section("NUMA: xmm_node_count, xmm_malloc_on_node, xmm_node_of", test_numa);
    run_section("xmm_release_cpu_caches, xmm_release_memory", test_release);
    run_section("xmm_release_memory inside spans kept", test_release_inside_spans);
    run_section("xmm_stats_get", test_stats);
    run_section("xmm_stats_print", test_stats_print);
    return check_summary("xmm_api");
}
