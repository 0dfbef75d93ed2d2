/*
 * malloc_misc.c - the rest of the C allocation API and bad sizes.
 *
 * free_sized, malloc_trim, mallinfo, mallinfo2, malloc_stats, malloc_info;
 * glibc's internal names (__libc_malloc and the rest) allocate XMM's blocks;
 * impossible sizes give NULL and ENOMEM from every function; the statistics
 * count what a quiet single-threaded program does exactly; printing the
 * statistics does not allocate.
 */
#include <fcntl.h>

#include "xmm.h"
#include "testlib.h"
#include "stats_snapshot.h"

static void test_free_sized(void)
{
    static const size_t sizes[] = {0,    1,     8,      15,      16,      17,      100,
                                   1000, 4096,  20000,  70000,   300000,  2 * MIB, 40 * MIB};
    size_t good = 0, count = sizeof sizes / sizeof sizes[0];

    for (size_t i = 0; i < count; i++) {
        void *ptr = malloc(sizes[i]);
        if (!ptr)
            continue;
        memset(ptr, 7, sizes[i]);
        size_t usable = malloc_usable_size(ptr);
        struct xmm_stats before = snapshot();
        free_sized(ptr, sizes[i]);
        struct xmm_stats after = snapshot();
        /* bytes_in_use is exact (operation counts are estimates). */
        CHECK(after.bytes_in_use + usable == before.bytes_in_use,
              "free_sized(p, %zu) frees the block: bytes_in_use %llu -> %llu", sizes[i],
              (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
        good += after.bytes_in_use + usable == before.bytes_in_use;
    }
    CHECK(good == count, "free_sized at %zu sizes from 0 to 40 MiB", count);
    free_sized(NULL, 0);
    free_sized(NULL, 100);
    free_aligned_sized(NULL, 64, 100);
    CHECK(1, "free_sized(NULL, n) and free_aligned_sized(NULL, ..) are no-ops");

    /* Many blocks freed with their sizes, then reused. */
    enum { MANY = 5000 };
    static void *blocks[MANY];
    size_t bad = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < MANY; i++) {
            size_t size = 1 + (size_t)(i * 37 % 3000);
            blocks[i] = malloc(size);
            if (!blocks[i])
                bad++;
            else
                pattern_fill(blocks[i], size, pattern_seed(blocks[i], size));
        }
        for (int i = 0; i < MANY; i++) {
            size_t size = 1 + (size_t)(i * 37 % 3000);
            if (blocks[i] &&
                pattern_find(blocks[i], size, pattern_seed(blocks[i], size)) != SIZE_MAX)
                bad++;
            free_sized(blocks[i], size);
        }
    }
    CHECK(bad == 0, "3 rounds of %d blocks freed with free_sized and reused: intact", MANY);
}

/* Statistics in a quiet, single-threaded process are exact. */
static void test_stats_counting(void)
{
    enum { N = 1000 };
    static void *blocks[N];
    struct xmm_stats before = snapshot();
    CHECK(before.version == XMM_STATS_VERSION, "xmm_stats_get keeps version %u (got %u)",
          XMM_STATS_VERSION, before.version);
    CHECK(before.node_count >= 1 && (int)before.node_count == xmm_node_count(),
          "stats node_count %u == xmm_node_count() %d", before.node_count, xmm_node_count());
    CHECK(strcmp(before.front_end, "per-cpu") == 0 || strcmp(before.front_end, "per-thread") == 0,
          "front_end is \"per-cpu\" or \"per-thread\" (got \"%.16s\")", before.front_end);

    size_t usable_sum = 0;
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc((size_t)(i % 500) * 8 + 1);
        usable_sum += malloc_usable_size(blocks[i]);
    }
    struct xmm_stats middle = snapshot();
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    struct xmm_stats after = snapshot();
    CHECK(middle.bytes_in_use == before.bytes_in_use + usable_sum,
          "bytes_in_use grows by the %zu usable bytes: %llu -> %llu", usable_sum,
          (unsigned long long)before.bytes_in_use, (unsigned long long)middle.bytes_in_use);
    CHECK(after.bytes_in_use == before.bytes_in_use, "bytes_in_use back to %llu (got %llu)",
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);

    /* Each malloc-like function's block counts in bytes_in_use (exact). */
    struct {
        const char *name;
        void *ptr;
    } calls[6];
    before = snapshot();
    calls[0].name = "calloc";
    calls[0].ptr = calloc(3, 40);
    calls[1].name = "aligned_alloc";
    calls[1].ptr = aligned_alloc(256, 1000);
    calls[2].name = "posix_memalign";
    if (posix_memalign(&calls[2].ptr, 64, 64) != 0)
        calls[2].ptr = NULL;
    calls[3].name = "memalign";
    calls[3].ptr = memalign(4096, 10);
    calls[4].name = "valloc";
    calls[4].ptr = valloc(5000);
    calls[5].name = "strdup (inside libc)";
    calls[5].ptr = strdup("counted");
    after = snapshot();
    size_t usable_calls = 0;
    for (int i = 0; i < 6; i++)
        usable_calls += calls[i].ptr ? malloc_usable_size(calls[i].ptr) : 0;
    CHECK(after.bytes_in_use == before.bytes_in_use + usable_calls,
          "calloc, aligned_alloc, posix_memalign, memalign, valloc, strdup: their %zu usable "
          "bytes in use (%llu -> %llu)",
          usable_calls, (unsigned long long)before.bytes_in_use,
          (unsigned long long)after.bytes_in_use);
    for (int i = 0; i < 6; i++)
        free(calls[i].ptr);

    /* Large allocations are counted as such. */
    before = snapshot();
    void *large = malloc(48 * MIB);
    after = snapshot();
    CHECK(large && after.large_allocations == before.large_allocations + 1,
          "a 48 MiB malloc adds 1 to large_allocations (%llu -> %llu)",
          (unsigned long long)before.large_allocations, (unsigned long long)after.large_allocations);
    CHECK(after.bytes_reserved >= after.bytes_committed && after.bytes_committed >= 48 * MIB,
          "bytes_reserved %llu >= bytes_committed %llu >= 48 MiB",
          (unsigned long long)after.bytes_reserved, (unsigned long long)after.bytes_committed);
    free(large);

    errno = 0;
    CHECK(xmm_stats_get(NULL) == -1 && errno == EINVAL, "xmm_stats_get(NULL): -1, EINVAL");
}

/* xmm.h: xmm_stats_print never allocates. With the override active any
 * allocation (stdio's, say) would show in the counters. */
static void test_stats_print_does_not_allocate(void)
{
    int fd = open("/dev/null", O_WRONLY);
    struct xmm_stats before = snapshot();
    int text = xmm_stats_print(fd, "text");
    int json = xmm_stats_print(fd, "json");
    int null_format = xmm_stats_print(fd, NULL);
    struct xmm_stats after = snapshot();
    close(fd);
    CHECK(text == 0 && json == 0 && null_format == 0, "xmm_stats_print text/json/NULL return 0");
    CHECK(after.allocations == before.allocations && after.frees == before.frees &&
              after.bytes_in_use == before.bytes_in_use,
          "xmm_stats_print allocated nothing (allocations %llu -> %llu, in use %llu -> %llu)",
          (unsigned long long)before.allocations, (unsigned long long)after.allocations,
          (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
}

/* The "in use bytes" after `label` in malloc_stats' output. */
static size_t stats_in_use_after(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    at = at ? strstr(at, "in use bytes") : NULL;
    at = at ? strchr(at, '=') : NULL;
    return at ? (size_t)strtoull(at + 1, NULL, 10) : 0;
}

/* malloc_stats' output, read back from a file its stderr went to. */
static void capture_malloc_stats(char *text, size_t size)
{
    char path[] = "/tmp/xmm-malloc-stats-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    malloc_stats();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t length = pread(fd, text, size - 1, 0);
    text[length > 0 ? length : 0] = '\0';
    close(fd);
    unlink(path);
}

/* The size="N" of the first <total type="T" ...> after `from`. */
static size_t info_total(const char *from, const char *type)
{
    char key[64];
    snprintf(key, sizeof key, "<total type=\"%s\"", type);
    const char *at = from ? strstr(from, key) : NULL;
    at = at ? strstr(at, "size=\"") : NULL;
    return at ? (size_t)strtoull(at + 6, NULL, 10) : 0;
}

static void test_trim_and_info(void)
{
    enum { BLOCKS = 256 };
    static void *blocks[BLOCKS];

    /* 64 MiB in 256 KiB blocks, freed: free pages the trim can return. */
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(256 * KIB);
        if (blocks[i])
            memset(blocks[i], 1, 256 * KIB);
    }
    struct mallinfo2 full = mallinfo2();
    size_t resident_full = resident_bytes();
    /* Decay (XMM_DECAY_MS) may purge some of it between the frees and the
     * trim on a slow machine: what is measured is the drop from here. */
    struct xmm_stats live = snapshot();
    struct mallinfo narrow = mallinfo();
    for (int i = 0; i < BLOCKS; i++)
        free(blocks[i]);
    struct mallinfo2 emptied = mallinfo2();
    CHECK(full.uordblks >= 64 * MIB,
          "mallinfo2().uordblks %zu >= the 64 MiB in use", full.uordblks);
    CHECK(full.arena + full.hblkhd >= full.uordblks,
          "mallinfo2: arena %zu + hblkhd %zu >= uordblks %zu", full.arena, full.hblkhd,
          full.uordblks);
    CHECK((size_t)narrow.uordblks >= 64 * MIB, "mallinfo().uordblks %d >= 64 MiB",
          narrow.uordblks);
    CHECK(emptied.uordblks + 63 * MIB <= full.uordblks,
          "mallinfo2().uordblks drops by >= 63 MiB after the frees (%zu -> %zu)", full.uordblks,
          emptied.uordblks);

    struct xmm_stats before = snapshot();
    int trimmed = malloc_trim(0);
    struct xmm_stats after = snapshot();
    CHECK(trimmed == 1 || before.bytes_page_heap_free == 0,
          "malloc_trim(0) after freeing 64 MiB returns 1: memory released (got %d; %llu free "
          "unpurged bytes before)",
          trimmed, (unsigned long long)before.bytes_page_heap_free);
    CHECK(after.bytes_page_heap_free == 0,
          "no unpurged free pages left after malloc_trim (%llu bytes; %llu before)",
          (unsigned long long)after.bytes_page_heap_free,
          (unsigned long long)before.bytes_page_heap_free);
    CHECK(after.bytes_committed + 60 * MIB <= live.bytes_committed &&
              after.bytes_purged >= live.bytes_purged + 60 * MIB,
          "the freed 64 MiB went back to the kernel by the end of malloc_trim: committed %llu "
          "-> %llu, purged %llu -> %llu",
          (unsigned long long)live.bytes_committed, (unsigned long long)after.bytes_committed,
          (unsigned long long)live.bytes_purged, (unsigned long long)after.bytes_purged);
    size_t resident_trimmed = resident_bytes();
    CHECK(resident_trimmed + 48 * MIB <= resident_full,
          "the process's RSS fell by >= 48 MiB of the 64 MiB freed and trimmed: %zu -> %zu KiB",
          resident_full / KIB, resident_trimmed / KIB);
    /* Memory released is memory that still works. */
    size_t bad = 0;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(256 * KIB);
        if (!blocks[i]) {
            bad++;
            continue;
        }
        pattern_fill(blocks[i], 256 * KIB, i);
    }
    for (int i = 0; i < BLOCKS; i++) {
        if (blocks[i] && pattern_find(blocks[i], 256 * KIB, i) != SIZE_MAX)
            bad++;
        free(blocks[i]);
    }
    CHECK(bad == 0, "after malloc_trim the memory is allocated and written again");
    CHECK(malloc_trim(1 << 20) >= 0, "malloc_trim(1 MiB pad) returns 0 or 1");

    /* malloc_stats writes to stderr: something, and ends with a newline. */
    static char printed[1 << 18];
    capture_malloc_stats(printed, sizeof printed);
    size_t printed_length = strlen(printed);
    CHECK(printed_length > 0 && printed[printed_length - 1] == '\n',
          "malloc_stats printed %zu bytes to stderr", printed_length);

    char *text = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&text, &length);
    int result = malloc_info(0, stream);
    fclose(stream);
    CHECK(result == 0 && text && strncmp(text, "<malloc version=", 16) == 0 &&
              strstr(text, "</malloc>") != NULL,
          "malloc_info(0, ..) returns 0 and writes <malloc version=..>..</malloc> (%zu bytes)",
          length);
    free(text);
    stream = open_memstream(&text, &length);
    errno = 0;
    result = malloc_info(1, stream);
    int saved_errno = errno;
    fclose(stream);
    free(text);
    CHECK(result == -1 && saved_errno == EINVAL, "malloc_info(1, ..): -1, EINVAL as in glibc");
}

/* glibc's fields: uordblks is what the heap's blocks use, hblkhd what the
 * blocks with a mapping of their own hold, each block counted in one of
 * them; malloc_stats' totals add the two; malloc_info's totals cover its
 * heaps. A 48 MiB block (a mapping of its own) was counted in both. */
static void test_info_counts_each_block_once(void)
{
    struct mallinfo2 before = mallinfo2();
    char *heap_block = malloc(10 * MIB); /* the page heap's */
    char *mapped_block = malloc(48 * MIB);
    CHECKQ(heap_block && mapped_block, "malloc(10 MiB), malloc(48 MiB)");
    if (!heap_block || !mapped_block)
        return;
    memset(heap_block, 1, 10 * MIB);
    struct mallinfo2 during = mallinfo2();
    CHECK(during.hblks == before.hblks + 1 && during.hblkhd >= before.hblkhd + 48 * MIB,
          "the 48 MiB block counts as a mapping: hblks %zu -> %zu, hblkhd %zu -> %zu",
          before.hblks, during.hblks, before.hblkhd, during.hblkhd);
    size_t grown = during.uordblks - before.uordblks;
    CHECK(grown >= 10 * MIB && grown < 11 * MIB,
          "uordblks grows by the 10 MiB heap block alone, not the mapped one (%zu bytes)",
          grown);
    CHECK(during.arena >= during.uordblks, "arena %zu >= uordblks %zu", during.arena,
          during.uordblks);

    static char text[1 << 18];
    capture_malloc_stats(text, sizeof text);
    size_t arena_in_use = stats_in_use_after(text, "Arena 0:");
    size_t total_in_use = stats_in_use_after(text, "Total (incl. mmap):");
    CHECK(total_in_use >= arena_in_use + 48 * MIB,
          "malloc_stats: total in use %zu = arena 0's %zu + the mapped blocks", total_in_use,
          arena_in_use);

    char *info = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&info, &length);
    malloc_info(0, stream);
    fclose(stream);
    const char *heap = info ? strstr(info, "<heap nr=\"0\">") : NULL;
    const char *totals = info ? strstr(info, "</heap>") : NULL;
    while (totals && strstr(totals + 1, "</heap>"))
        totals = strstr(totals + 1, "</heap>");
    CHECK(heap && totals && info_total(totals, "rest") >= info_total(heap, "rest"),
          "malloc_info: the total's free bytes (rest, %zu) cover heap 0's (%zu)",
          info_total(totals, "rest"), info_total(heap, "rest"));
    CHECK(totals && info_total(totals, "mmap") >= 48 * MIB,
          "malloc_info: the mapped blocks' total is at least 48 MiB (%zu)",
          info_total(totals, "mmap"));
    free(info);
    free(mapped_block);
    free(heap_block);
}

/* The size="N" of the first <system type="T"/> after `from`. */
static size_t info_system(const char *from, const char *type)
{
    char key[64];
    snprintf(key, sizeof key, "<system type=\"%s\" size=\"", type);
    const char *at = from ? strstr(from, key) : NULL;
    return at ? (size_t)strtoull(at + strlen(key), NULL, 10) : 0;
}

/* The number after "label =" in malloc_stats' output. */
static size_t stats_value(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    at = at ? strchr(at, '=') : NULL;
    return at ? (size_t)strtoull(at + 1, NULL, 10) : 0;
}

/* glibc's "system" is what a heap got from the kernel and its "max" the
 * most it ever had; malloc_stats' "max mmap" lines are peaks of the
 * blocks with a mapping of their own. A heap holding 64 MiB of small
 * blocks said 0 (its current counted large blocks and free pages only),
 * and every max was the current value: 0 once a 300 MiB block was freed. */
static void test_info_system_and_peaks(void)
{
    enum { SMALL = 1000, COUNT = 64 * 1024 };
    static void *blocks[COUNT];
    for (int i = 0; i < COUNT; i++)
        blocks[i] = malloc(SMALL);
    char *mapped = malloc(300 * MIB);
    CHECKQ(blocks[COUNT - 1] && mapped, "64 MiB of 1000-byte blocks and a 300 MiB block");
    if (mapped)
        mapped[0] = 1;
    free(mapped);

    char *info = NULL;
    size_t length = 0;
    FILE *stream = open_memstream(&info, &length);
    malloc_info(0, stream);
    fclose(stream);
    size_t heaps_current = 0, heaps_max = 0;
    for (const char *heap = info; heap && (heap = strstr(heap, "<heap nr=")); heap++) {
        size_t current = info_system(heap, "current"), most = info_system(heap, "max");
        CHECK(most >= current, "malloc_info: a heap's max (%zu) is at least its current (%zu)",
              most, current);
        heaps_current += current;
        heaps_max += most;
    }
    CHECK(heaps_current >= 60 * MIB,
          "malloc_info: the heaps' system bytes (%zu) hold the 64 MiB of small blocks",
          heaps_current);
    const char *totals = info ? strstr(info, "</heap>") : NULL;
    while (totals && strstr(totals + 1, "</heap>"))
        totals = strstr(totals + 1, "</heap>");
    CHECK(totals && info_system(totals, "current") == heaps_current &&
              info_system(totals, "max") == heaps_max,
          "malloc_info: the total's system current %zu and max %zu are its heaps' (%zu, %zu)",
          info_system(totals, "current"), info_system(totals, "max"), heaps_current, heaps_max);
    free(info);

    static char text[1 << 18];
    capture_malloc_stats(text, sizeof text);
    size_t regions = stats_value(text, "max mmap regions"), bytes = stats_value(text, "max mmap bytes");
    CHECK(regions >= 1 && bytes >= 300 * MIB,
          "malloc_stats: max mmap regions %zu, bytes %zu after a 300 MiB block came and went",
          regions, bytes);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

static void test_bad_sizes(void)
{
    static const size_t impossible[] = {SIZE_MAX,
                                        SIZE_MAX - 1,
                                        SIZE_MAX - 15,
                                        SIZE_MAX - 4095,
                                        SIZE_MAX - 64 * MIB,
                                        SIZE_MAX / 2,
                                        (size_t)PTRDIFF_MAX + 1,
                                        (size_t)PTRDIFF_MAX,
                                        (size_t)1 << 47};
    for (size_t i = 0; i < sizeof impossible / sizeof impossible[0]; i++) {
        errno = 0;
        void *ptr = malloc(impossible[i]);
        CHECK(ptr == NULL && errno == ENOMEM, "malloc(%#zx): NULL, ENOMEM (got %p, errno %d)",
              impossible[i], ptr, errno);
        free(ptr);
        errno = 0;
        ptr = xmm_malloc(impossible[i]);
        CHECK(ptr == NULL && errno == ENOMEM, "xmm_malloc(%#zx): NULL, ENOMEM (errno %d)",
              impossible[i], errno);
        xmm_free(ptr);
    }
    static const size_t overflow[][2] = {{SIZE_MAX / 2 + 1, 2},
                                         {(size_t)1 << 32, (size_t)1 << 32},
                                         {SIZE_MAX, SIZE_MAX},
                                         {16, SIZE_MAX / 16 + 1}};
    for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
        errno = 0;
        void *ptr = xmm_alloc_array(overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM,
              "xmm_alloc_array(%#zx, %#zx) overflows: NULL, ENOMEM (errno %d)", overflow[i][0],
              overflow[i][1], errno);
        errno = 0;
        ptr = calloc(overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM, "calloc(%#zx, %#zx): NULL, ENOMEM (errno %d)",
              overflow[i][0], overflow[i][1], errno);
        errno = 0;
        ptr = reallocarray(NULL, overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM, "reallocarray(NULL, %#zx, %#zx): NULL, ENOMEM",
              overflow[i][0], overflow[i][1]);
    }
    /* After all that, allocation works as before. */
    void *ptr = malloc(100);
    CHECK(ptr != NULL && xmm_node_of(ptr) >= 0, "malloc works after the failures");
    free(ptr);
}

/* Under XMM_FREE_CHECK=deferred (tests/override/modes.sh) every hand-out
 * clears a block's second word, its pending mark (src/ds/free_object.h):
 * a block handed out between a double free and that free's check is then
 * told by the mark's absence. The malloc path does it out of line
 * (src/global/upkeep.h, XMM_TICK_BIAS); this checks every block of a
 * round that was freed and allocated again, whose program wrote neither
 * word since. In the default mode the second word is the program's. */
static void test_deferred_hand_out(void)
{
    const char *mode = getenv("XMM_FREE_CHECK");
    if (!mode || strcmp(mode, "deferred") != 0)
        return;
    enum { ROUND = 200 };
    static char *blocks[ROUND];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < ROUND; i++)
            blocks[i] = malloc(64);
        unsigned marked = 0;
        for (int i = 0; i < ROUND; i++)
            marked += ((volatile uint64_t *)blocks[i])[1] != 0;
        CHECK(marked == 0 || round == 0,
              "round %d: every block handed out again has its second word cleared (%u of %d "
              "kept a mark)", round, marked, ROUND);
        for (int i = 0; i < ROUND; i++)
            free(blocks[i]);
    }
}

/* glibc's exported internal names (glibc 2.36 declares none of them). */
void *__libc_malloc(size_t size);
void __libc_free(void *ptr);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t alignment, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

/* A tracer or hook library asks __libc_malloc for "the real malloc", and
 * the program frees with free: the block must be XMM's. Before, XMM did
 * not define these names, the block came from glibc's heap, and free
 * reported it as an invalid pointer and aborted. And the other way round:
 * __libc_free and __libc_realloc of XMM's blocks. */
static void test_libc_names(void)
{
    size_t sizes[] = {1, 24, 1000, 70000, 300000, 5 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        char *blocks[6] = {__libc_malloc(size), __libc_calloc(1, size),
                           __libc_realloc(NULL, size), __libc_memalign(64, size),
                           __libc_valloc(size), __libc_pvalloc(size)};
        for (int b = 0; b < 6; b++) {
            CHECK(blocks[b] && xmm_node_of(blocks[b]) != -1 &&
                      malloc_usable_size(blocks[b]) >= size,
                  "__libc_* allocator %d, %zu bytes: an XMM block (xmm_node_of %d)", b, size,
                  blocks[b] ? xmm_node_of(blocks[b]) : -1);
            if (blocks[b])
                memset(blocks[b], 0x5a, size);
        }
        CHECK(((uintptr_t)blocks[3] & 63) == 0, "__libc_memalign(64, %zu) aligned", size);
        blocks[0] = realloc(blocks[0], size * 2);
        CHECK(blocks[0] && (unsigned char)blocks[0][size - 1] == 0x5a,
              "realloc of __libc_malloc(%zu) keeps the bytes", size);
        for (int b = 0; b < 6; b++)
            free(blocks[b]);
        char *mine = malloc(size);
        memset(mine, 1, size);
        mine = __libc_realloc(mine, size + 100);
        CHECK(mine && mine[size - 1] == 1, "__libc_realloc of malloc(%zu)", size);
        __libc_free(mine);
    }
}

/* Consecutive mallocs of one size step up through memory, as glibc's and
 * the peers' do: a program that walks what it allocated in that order (a
 * list, a tree, CPython's objects) then has the hardware prefetcher ahead
 * of it. The caches handed each refill out from its top: 97% of
 * consecutive blocks lay below the one before, and walking 2 million
 * 24-byte nodes in allocation order took 5-6 times as long as under
 * glibc. */
static void test_hand_out_order(void)
{
    enum { COUNT = 20000 };
    static char *blocks[COUNT];
    const size_t sizes[] = {24, 48, 64, 256};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int down = 0;
        for (int i = 0; i < COUNT; i++) {
            blocks[i] = malloc(sizes[s]);
            if (i > 0 && blocks[i] < blocks[i - 1])
                down++;
        }
        CHECK(down <= COUNT / 20, "%zu-byte blocks: %d of %d consecutive mallocs below the one "
              "before (at most 5%%)", sizes[s], down, COUNT - 1);
        for (int i = 0; i < COUNT; i++)
            free(blocks[i]);
    }
}

int main(void)
{
    expect_malloc_is_xmm();
    run_section("consecutive mallocs step up through memory", test_hand_out_order);
    run_section("glibc's internal names: __libc_malloc and the rest", test_libc_names);
    run_section("free_sized", test_free_sized);
    run_section("statistics count exactly", test_stats_counting);
    run_section("xmm_stats_print does not allocate", test_stats_print_does_not_allocate);
    run_section("malloc_trim, mallinfo, malloc_stats, malloc_info", test_trim_and_info);
    run_section("mallinfo2, malloc_stats, malloc_info count each block once",
                test_info_counts_each_block_once);
    run_section("malloc_info's system sizes, malloc_stats' peaks",
                test_info_system_and_peaks);
    run_section("impossible sizes", test_bad_sizes);
    run_section("deferred check: hand-outs clear the mark", test_deferred_hand_out);
    return check_summary("malloc_misc");
}
