/* Memory one use freed must serve the next before XMM takes more, and a
 * trim must reach free memory inside partly used spans (issue 16's size-mix
 * and idle-return costs). Each case runs in a child of its own, exec'd
 * with XMM_DECAY_MS=600000 and XMM_BACKGROUND=0, so that no timed decay
 * and no thread gives memory back: what is measured is the allocation and
 * free paths themselves, by resident memory (/proc/self/statm) and its
 * high-water mark (VmHWM), with generous margins.
 *   sizes     96 MiB of 64-byte blocks freed, then 96 MiB of 4 KiB blocks,
 *             then of 192 KiB blocks: each phase reuses the last one's
 *             memory (before: the spans stayed with their class until an
 *             upkeep pass, and every phase added its 96 MiB)
 *   direct    96 MiB of 1 MiB blocks freed, then 40 MiB blocks mapped for
 *             themselves: the freed pages are purged first
 *   drift     a sliding window of buffers whose size grows by a byte each
 *             time, 1 to 70,000 bytes twice over: the batches of classes
 *             passed by go back to their spans before the heap grows
 *             (before: each class kept up to 4 MiB of batches till an
 *             upkeep pass, 232 MiB), the CPU cache's bins of classes
 *             passed are drained (before: two batches stayed in each, 101
 *             MiB), and so are what carvers keep of them, whose spans
 *             pinned holes between the next classes' spans, and spans
 *             above 8 KiB are 128, 256 or 512 KiB, so that one class's
 *             freed spans fit the next class's (before: 51 MiB, then
 *             43), and batches parked in classes passed count toward the
 *             cold checks as spans asked for do (before: 43 MiB; now
 *             about 40)
 *   holes     XMM_THP=never: 64 MiB of 1000-byte blocks, 90% of them
 *             freed at random (about 43% of their 8 KiB spans whole),
 *             then 24 MiB of 2000-byte blocks: they take the freed spans,
 *             and the RSS grows by less than a quarter of them. Before,
 *             spans of 2 KiB blocks were 16 KiB (8 objects) and fitted
 *             only where two freed spans lay side by side (bench/
 *             workloads/frag.c; size_class.c, span_pages_for)
 *   burst     192 MiB of 256-byte blocks made, then after an upkeep pass
 *             freed, nothing after: the frees gave most spans back to the
 *             page heap themselves (a class refilled since the last pass
 *             keeps them for its next refills)
 *   trim      256 KiB blocks (two per span), every other one freed (the
 *             first or the second of each span), malloc_trim: RSS falls to
 *             the live half; the freed blocks are then allocated again,
 *             written and checked against the live ones
 *   trim-whole blocks of sizes from 640 bytes to 256 KiB, all but every
 *             7th freed, malloc_trim: no page wholly inside freed blocks
 *             stays resident for a block's first word (mincore), and the
 *             freed blocks come back distinct, the live ones intact
 *   first-touch  XMM_THP=never: one block of 100, 200, 400 and 1000 bytes
 *             and of 2, 3, 4, 5, 10, 20 and 64 KiB each, in a fresh
 *             process: the pages of the first words of up to three
 *             objects of its span past the first allocator page (those
 *             the span holds) are not resident
 *             (mincore): a clean span's objects are tagged as refills cut
 *             its pages (before: a new span wrote every object's first
 *             word; then spans of more than one 8 KiB page were cut a page
 *             at a time, and the classes up to 1 KiB, one-page spans,
 *             still tagged their 8 KiB whole); then 40 more blocks of each
 *             size come back distinct and keep what was written into them
 *   thp       XMM_THP=auto: chunks cut to their end ask for huge pages; a
 *             trim that splits them advises them MADV_NOHUGEPAGE, so that
 *             khugepaged cannot collapse purged ranges back (smaps VmFlags)
 *   thp-large XMM_THP=auto: a chunk cut mostly into large blocks stays on
 *             small pages (their first touch is what they cost)
 *   thp-reuse XMM_THP=auto: 1 MiB blocks placed on pages that decay purged,
 *             each written at its two ends, fault in small pages (before:
 *             their chunks were on huge pages, 2 MiB zeroed per block)
 *   thp-mixed XMM_THP=auto: a large block placed in a chunk of small
 *             blocks on huge pages takes the chunk off them
 *   thp-sparse XMM_THP=auto: a chunk cut to its end whose pages were
 *             mostly never touched (blocks of 64 KiB, only their first
 *             words written) does not ask for huge pages, which khugepaged
 *             would fill with zeroes (before: it asked, being cut to its end)
 *   thp-eager XMM_THP=auto: the first chunk does not ask for huge pages
 *             before it is cut to its end (a small program stays on small
 *             pages); a chunk mapped once 16 MiB of chunks exist asks at
 *             once, before it is cut to its end
 *   thp-medium XMM_THP=auto: past 16 MiB of chunks, blocks of 64-256 KiB
 *             written at one byte each take their chunks off huge pages
 *             and grow the RSS by their pages, not 2 MiB each */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "xmm.h"

#define MIB ((size_t)1 << 20)

static size_t status_kb(const char *key)
{
    return proc_kb("/proc/self/status", key);
}

static size_t resident_mib(void)
{
    return status_kb("VmRSS:") >> 10;
}

static size_t peak_mib(void)
{
    return status_kb("VmHWM:") >> 10;
}

/* `bytes` of blocks of `size`, every page written, chained through their
 * first word. */
static void **allocate(size_t size, size_t bytes)
{
    void **head = NULL;
    for (size_t done = 0; done < bytes; done += size) {
        void **block = malloc(size);
        if (!block)
            return head;
        memset(block, 0x5a, size);
        *block = head;
        head = block;
    }
    return head;
}

static void release(void **head)
{
    while (head) {
        void **next = *head;
        free(head);
        head = next;
    }
}

/* Bookkeeping arrays from mmap, outside the heap under test. */
static void *raw(size_t bytes)
{
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? NULL : memory;
}

static void sizes_case(void)
{
    size_t base = resident_mib();
    release(allocate(64, 96 * MIB));
    size_t first = peak_mib();
    NOTE("after 96 MiB of 64-byte blocks: peak %zu MiB (started at %zu)", first, base);
    release(allocate(4096, 96 * MIB));
    size_t second = peak_mib();
    release(allocate(192 << 10, 96 * MIB));
    size_t third = peak_mib();
    CHECK(second <= first + 24, "96 MiB of 4 KiB blocks next: peak %zu MiB, at most %zu + 24",
          second, first);
    CHECK(third <= first + 24, "96 MiB of 192 KiB blocks next: peak %zu MiB, at most %zu + 24",
          third, first);
}

/* A sliding window of zeroed buffers whose size grows by a byte with each
 * one, from 1 to 70,000 bytes, twice over (a parser's buffers, a Python
 * list of bytearrays): the window holds 250-500 buffers, at most 34 MiB
 * at the top sizes. Each class is used for a few hundred buffers and then
 * never again, so its freed blocks are memory the next classes should
 * get. */
static void drift_case(void)
{
    enum { WINDOW = 500, PASSES = 2, TOP = 70000 };
    size_t base = resident_mib();
    void *window[WINDOW + 1];
    int held = 0;
    for (long i = 0; i < (long)PASSES * TOP; i++) {
        window[held] = calloc(1, (size_t)(i % TOP) + 1);
        if (!window[held]) {
            CHECK(0, "calloc(%ld) failed", i % TOP + 1);
            return;
        }
        if (++held > WINDOW) {
            for (int j = 0; j < WINDOW / 2; j++)
                free(window[j]);
            memmove(window, window + WINDOW / 2, (size_t)(held - WINDOW / 2) * sizeof(void *));
            held -= WINDOW / 2;
        }
    }
    for (int j = 0; j < held; j++)
        free(window[j]);
    size_t peak = peak_mib();
    NOTE("drifting sizes, window of %d buffers (at most 34 MiB): peak %zu MiB (started at %zu)",
         WINDOW, peak, base);
    CHECK(peak <= base + 49, "drifting sizes: peak %zu MiB, at most %zu + 49", peak, base);
}

static void holes_case(void)
{
    enum { OLD_SIZE = 1000, NEW_SIZE = 2000, OLD_COUNT = (64 << 20) / 1024,
           NEW_COUNT = (24 << 20) / 2048 };
    static void *old_blocks[OLD_COUNT], *new_blocks[NEW_COUNT];
    for (int i = 0; i < OLD_COUNT; i++) {
        old_blocks[i] = malloc(OLD_SIZE);
        CHECKQ(old_blocks[i] != NULL, "malloc(%d)", OLD_SIZE);
        if (!old_blocks[i])
            return;
        memset(old_blocks[i], 1, OLD_SIZE);
    }
    uint64_t state = 88172645463325252ull;
    int kept = 0;
    for (int i = 0; i < OLD_COUNT; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        if (state % 10 == 0)
            old_blocks[kept++] = old_blocks[i];
        else
            free(old_blocks[i]);
    }
    size_t before = status_kb("VmRSS:");
    for (int i = 0; i < NEW_COUNT; i++) {
        new_blocks[i] = malloc(NEW_SIZE);
        CHECKQ(new_blocks[i] != NULL, "malloc(%d)", NEW_SIZE);
        if (!new_blocks[i])
            return;
        memset(new_blocks[i], 2, NEW_SIZE);
    }
    size_t after = status_kb("VmRSS:");
    size_t grown = after > before ? after - before : 0;
    NOTE("%d blocks of %d bytes kept of %d; %d blocks of %d bytes (%d KiB of spans) grew the "
         "RSS by %zu KiB", kept, OLD_SIZE, OLD_COUNT, NEW_COUNT, NEW_SIZE, NEW_COUNT * 2, grown);
    CHECK(grown * 4 < (size_t)NEW_COUNT * 2, "the %d KiB of 2000-byte blocks took the spans the "
          "1000-byte blocks left: the RSS grew by %zu KiB", NEW_COUNT * 2, grown);
    for (int i = 0; i < NEW_COUNT; i++)
        free(new_blocks[i]);
    for (int i = 0; i < kept; i++)
        free(old_blocks[i]);
}

static void direct_case(void)
{
    release(allocate(1 << 20, 96 * MIB));
    size_t first = peak_mib();
    void *blocks[3];
    for (int i = 0; i < 3; i++) {
        blocks[i] = malloc(40 * MIB);
        CHECK(blocks[i] != NULL, "a 40 MiB block");
        if (blocks[i])
            memset(blocks[i], 0x33, 40 * MIB);
    }
    size_t second = peak_mib();
    CHECK(second <= first + 48,
          "96 MiB of 1 MiB blocks freed, then 120 MiB mapped for itself: peak %zu MiB, "
          "at most %zu + 48", second, first);
    for (int i = 0; i < 3; i++)
        free(blocks[i]);
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&pause, NULL);
}

static void burst_case(void)
{
    enum { SIZE = 256 };
    size_t count = 192 * MIB / SIZE;
    void **blocks = raw(count * sizeof *blocks);
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(SIZE);
        memset(blocks[i], 1, SIZE);
    }
    /* The data is old by the time it goes: an upkeep pass (this case runs
     * with XMM_DECAY_MS=200, a pass every 100 ms, run by allocations of
     * another size) has seen no refill of its class since. */
    sleep_ms(150);
    release(allocate(64, 4 * MIB));
    /* Every other block first, then the rest: the spans are listed (some
     * of their objects free) when their last objects come back, so a free
     * makes them empty while they sit on their class's stack. */
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = pass; i < count; i += 2)
            free(blocks[i]);
    struct xmm_stats stats;
    CHECK(xmm_stats_get(&stats) == 0, "xmm_stats_get");
    CHECK(stats.bytes_central <= 64 * MIB,
          "192 MiB of 256-byte blocks freed, no call after: %zu MiB still in the central layer "
          "(at most 64)", (size_t)(stats.bytes_central / MIB));
    CHECK(stats.bytes_page_heap_free >= 128 * MIB,
          "the spans went back to the page heap: %zu MiB free there",
          (size_t)(stats.bytes_page_heap_free / MIB));
}

/* Allocates `again_count` blocks of `size` into `again`, each written
 * with 0x77; true when the live blocks of `blocks` (NULL where freed),
 * whose first and last bytes hold their index, are intact after that, and
 * the new ones too: distinct from the live ones and from each other. */
static int allocate_again_intact(char **blocks, size_t count, char **again, size_t again_count,
                                 size_t size)
{
    for (size_t i = 0; i < again_count; i++) {
        again[i] = malloc(size);
        memset(again[i], 0x77, size);
    }
    int intact = 1;
    for (size_t i = 0; i < count; i++)
        if (blocks[i] && (blocks[i][0] != (char)i || blocks[i][size - 1] != (char)i))
            intact = 0;
    for (size_t i = 0; i < again_count; i++)
        if (again[i][0] != 0x77 || again[i][size - 1] != 0x77)
            intact = 0;
    return intact;
}

static void trim_case(int freed_of_pair)
{
    enum { COUNT = 400, SIZE = 256 << 10 };
    char **blocks = raw(COUNT * sizeof *blocks);
    size_t base = resident_mib();
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(SIZE);
        memset(blocks[i], (char)i, SIZE);
    }
    /* Two objects per span, handed out one per refill in the order they
     * are cut: blocks 2k and 2k + 1 share a span. */
    int pairs = 0;
    for (int i = 0; i < COUNT; i += 2)
        pairs += blocks[i + 1] == blocks[i] + SIZE;
    CHECK(pairs >= COUNT / 2 - 2, "%d of %d pairs of blocks are neighbours (one span each)",
          pairs, COUNT / 2);
    int freed = 0;
    for (int i = freed_of_pair; i < COUNT; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
        freed++;
    }
    malloc_trim(0);
    size_t live = (size_t)(COUNT - freed) * SIZE / MIB;
    size_t after = resident_mib();
    NOTE("%d of %d blocks freed (the %s of each span)", freed, COUNT,
         freed_of_pair ? "second" : "first");
    CHECK(after <= base + live + 8,
          "after malloc_trim: %zu MiB resident, live %zu MiB (+ %zu at start, + 8)", after,
          live, base);
    /* The freed blocks again (the trim cut some back): distinct, and the
     * live ones intact. */
    char **again = raw(COUNT * sizeof *again);
    int intact = allocate_again_intact(blocks, COUNT, again, (size_t)freed, SIZE);
    CHECK(intact, "live blocks intact, the %d new ones distinct from them and each other",
          freed);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
    for (int i = 0; i < freed; i++)
        free(again[i]);
}

/* Whether the kernel page at `page` is resident (mincore). */
static int page_resident(uintptr_t page)
{
    unsigned char vector = 0;
    return mincore((void *)page, (size_t)sysconf(_SC_PAGESIZE), &vector) == 0 && (vector & 1);
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(char *const *)a, y = (uintptr_t)*(char *const *)b;
    return x < y ? -1 : x > y;
}

/* Blocks of `size` (about 4 MiB of them), all freed but every 7th (or
 * fewer, for blocks below 2 KiB), so that most spans keep a live block,
 * then malloc_trim. A kernel page
 * wholly inside freed blocks that holds a freed block's first word must
 * be given back: the trim purges such blocks whole, their free tag
 * included (before, it kept that page of every free block of a span in
 * use). The freed blocks are then allocated again: distinct from each
 * other and from the live ones, which stay intact. */
static void trim_whole_size(size_t size)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    size_t count = (4 * MIB) / size;
    char **blocks = raw(count * sizeof *blocks);
    char **freed = raw(count * sizeof *freed);
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(size);
        memset(blocks[i], (char)i, size);
    }
    /* Below a kernel page, fewer live blocks: a few per span still. */
    size_t keep_every = size < 16384 / 7 ? 16384 / size : 7;
    size_t freed_count = 0;
    for (size_t i = 0; i < count; i++)
        if (i % keep_every != 0) {
            freed[freed_count++] = blocks[i];
            free(blocks[i]);
            blocks[i] = NULL;
        }
    malloc_trim(0);
    /* A first word's page is wholly inside freed blocks when the freed
     * blocks around it, in address order, touch one another across it. */
    qsort(freed, freed_count, sizeof *freed, by_address);
    size_t examined = 0, resident = 0;
    for (size_t i = 0; i < freed_count; i++) {
        uintptr_t word_page = (uintptr_t)freed[i] & ~(page - 1);
        uintptr_t low = (uintptr_t)freed[i], high = (uintptr_t)freed[i] + size;
        for (size_t j = i; j > 0 && (uintptr_t)freed[j - 1] + size == low; j--)
            low = (uintptr_t)freed[j - 1];
        for (size_t j = i + 1; j < freed_count && (uintptr_t)freed[j] == high; j++)
            high += size;
        if (word_page < low || word_page + page > high)
            continue;
        examined++;
        resident += page_resident(word_page);
    }
    CHECK(examined >= freed_count / 4, "%zu-byte blocks: %zu of %zu freed blocks have their "
          "first word on a page wholly inside freed blocks", size, examined, freed_count);
    CHECK(resident * 50 <= examined, "%zu-byte blocks, after malloc_trim: %zu of those %zu "
          "first-word pages still resident (at most 2%%)", size, resident, examined);
    int intact = allocate_again_intact(blocks, count, freed, freed_count, size);
    CHECK(intact, "%zu-byte blocks: live ones intact, the %zu new ones distinct from them and "
          "each other", size, freed_count);
    for (size_t i = 0; i < count; i++)
        free(blocks[i]);
    for (size_t i = 0; i < freed_count; i++)
        free(freed[i]);
    munmap(blocks, count * sizeof *blocks);
    munmap(freed, count * sizeof *freed);
}

/* Sizes below a kernel page (several first words per page), between one
 * and two (blocks start anywhere in a page), and whole pages. */
/* XMM's allocator page (XMM_PAGE_SIZE, the kernel's): a clean span is cut
 * a whole one at a time. */
#define ALLOCATOR_PAGE ((size_t)4096)

/* The blocks of every size first_touch_size tried, freed at the end of
 * the case: freed at once, a size's empty spans went back to the page
 * heap, dirty, and the next size's span (of the same length: 16 KiB for
 * 3000 and 4096 bytes) was cut from them, not from clean pages. */
enum { FIRST_TOUCH_SIZES = 11, FIRST_TOUCH_MORE = 40 };
static char *first_touch_blocks[FIRST_TOUCH_SIZES * (FIRST_TOUCH_MORE + 1)];
static int first_touch_count, first_touch_sizes_tried;

/* One block of `size` (every class's span has more than one allocator
 * page) in a process that used none of its class before: the first
 * object of a span made of clean pages. */
static void first_touch_size(size_t size)
{
    char *first = malloc(size);
    CHECKQ(first != NULL, "malloc(%zu)", size);
    memset(first, 0x11, size);
    size_t stride = malloc_usable_size(first);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    CHECK((uintptr_t)first % ALLOCATOR_PAGE == 0, "%zu-byte blocks: the first is its span's "
          "first object (%p)", size, (void *)first);
    /* The pages of the first words of three objects from the first one
     * on the span's second allocator page (from object 2 on for objects
     * of a page or more: object 1's may share its page with the end of
     * the first block, which was written). The objects of the first
     * allocator page were cut with the first. The spans of these classes
     * hold 4 objects or more (from 576 bytes to 8 KiB) or 8 (the rest):
     * objects past the span's end are not looked at. */
    size_t from = (ALLOCATOR_PAGE + stride - 1) / stride;
    if (from < 2)
        from = 2;
    size_t span_objects = stride > 512 && stride <= 8192 ? 4 : 8;
    size_t to = from + 3 < span_objects ? from + 3 : span_objects;
    int resident = 0;
    for (size_t next = from; next < to; next++)
        resident += page_resident(((uintptr_t)first + next * stride) & ~(page - 1));
    CHECK(resident == 0, "%zu-byte blocks: the first words of %d of the objects %zu-%zu of "
          "the span are resident before any is handed out", size, resident, from, to - 1);
    enum { MORE = FIRST_TOUCH_MORE };
    char *more[MORE];
    int distinct = 1, intact = 1;
    for (int i = 0; i < MORE; i++) {
        more[i] = malloc(size);
        CHECKQ(more[i] != NULL, "malloc(%zu)", size);
        memset(more[i], i + 1, size);
        distinct &= more[i] != first;
        for (int j = 0; j < i; j++)
            distinct &= more[i] != more[j];
    }
    for (int i = 0; i < MORE; i++)
        intact &= more[i][0] == (char)(i + 1) && more[i][size - 1] == (char)(i + 1);
    intact &= first[0] == 0x11 && first[size - 1] == 0x11;
    CHECK(distinct && intact, "%zu-byte blocks: %d more come back distinct and intact", size,
          MORE);
    /* Kept until the case ends, while the array has room (a size added
     * to first_touch_case without FIRST_TOUCH_SIZES fails its count). */
    first_touch_sizes_tried++;
    for (int i = 0; i <= MORE; i++) {
        char *block = i < MORE ? more[i] : first;
        if (first_touch_count < (int)(sizeof first_touch_blocks / sizeof *first_touch_blocks))
            first_touch_blocks[first_touch_count++] = block;
        else
            free(block);
    }
}

static void first_touch_case(void)
{
    /* stdio's buffer for stdout would be the 4096-byte class's first
     * block, and the block the case takes the second of a span of 4. */
    setvbuf(stdout, NULL, _IONBF, 0);
    first_touch_size(100);
    first_touch_size(200);
    first_touch_size(400);
    first_touch_size(1000);
    first_touch_size(2048);
    first_touch_size(3000);
    first_touch_size(4096);
    first_touch_size(5000);
    first_touch_size(10000);
    first_touch_size(20000);
    first_touch_size(65536);
    CHECK(first_touch_sizes_tried == FIRST_TOUCH_SIZES,
          "%d sizes tried, FIRST_TOUCH_SIZES says %d", first_touch_sizes_tried,
          FIRST_TOUCH_SIZES);
    for (int i = 0; i < first_touch_count; i++)
        free(first_touch_blocks[i]);
}

static void trim_whole_case(void)
{
    static const size_t sizes[] = {640, 1536, 3072, 5120, 6144, 12288, 20480, 98304, 262144};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        trim_whole_size(sizes[i]);
}

/* The VmFlags line of the mapping that holds `address`, or "". */
static void vm_flags(const void *address, char *flags, size_t size)
{
    FILE *smaps = fopen("/proc/self/smaps", "r");
    char line[200];
    int inside = 0;
    flags[0] = 0;
    while (smaps && fgets(line, sizeof line, smaps)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' '))
            inside = (uintptr_t)address >= start && (uintptr_t)address < end;
        else if (inside && !strncmp(line, "VmFlags:", 8))
            snprintf(flags, size, "%.*s", (int)strcspn(line + 8, "\n"), line + 8);
    }
    if (smaps)
        fclose(smaps);
}

static int has_flag(const char *flags, const char *flag)
{
    char padded[8];
    snprintf(padded, sizeof padded, " %s", flag);
    return strstr(flags, padded) != NULL;
}

/* The kernel's transparent_hugepage/enabled setting, e.g. "[madvise]",
 * or "" if it cannot be read. */
static void thp_mode(char *mode, size_t size)
{
    FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    mode[0] = 0;
    if (thp) {
        if (!fgets(mode, (int)size, thp))
            mode[0] = 0;
        fclose(thp);
    }
}

static int thp_available(void)
{
    char mode[128];
    thp_mode(mode, sizeof mode);
    if (!mode[0] || strstr(mode, "[never]")) {
        NOTE("transparent huge pages unavailable here: case skipped");
        return 0;
    }
    return 1;
}

/* Of `count` blocks of 4 KiB made in a row (12000: 47 MiB), one that lies
 * in the second chunk (6 MiB of spans, after the first's 2 MiB), which its
 * blocks fill whole. The first chunk also holds the spans of the harness's
 * own blocks and the other CPU's carver run: about 3/4 of it is resident
 * when it is cut to its end, at the line where it would ask for huge pages
 * (arena.c, mostly_resident). */
static int in_second_chunk(int count)
{
    return count / 8;
}

/* `count` blocks of 4 KiB, written: the chunks they fill are cut to their
 * end with their pages resident, and under XMM_THP=auto ask for huge pages
 * (checked on the second). */
static char **pages_on_huge_chunks(int count)
{
    char **blocks = raw(count * sizeof *blocks);
    for (int i = 0; i < count; i++) {
        blocks[i] = malloc(4096);
        memset(blocks[i], 1, 4096);
    }
    /* The second chunk (8 MiB) was cut to its end long ago. */
    char flags[256];
    vm_flags(blocks[in_second_chunk(count)], flags, sizeof flags);
    CHECK(has_flag(flags, "hg"), "a chunk cut to its end asks for huge pages (VmFlags:%s)",
          flags);
    return blocks;
}

static void thp_case(void)
{
    if (!thp_available())
        return;
    enum { COUNT = 12000 };
    char **blocks = pages_on_huge_chunks(COUNT);
    char flags[256];
    for (int i = 0; i < COUNT; i++)
        if (i % 10) {
            free(blocks[i]);
            blocks[i] = NULL;
        }
    malloc_trim(0);
    _Static_assert(COUNT / 8 % 10 == 0, "the block checked is one kept");
    vm_flags(blocks[in_second_chunk(COUNT)], flags, sizeof flags);
    CHECK(has_flag(flags, "nh") && !has_flag(flags, "hg"),
          "after a trim split its huge pages: MADV_NOHUGEPAGE (VmFlags:%s)", flags);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

/* Blocks of 3 MiB fill chunk after chunk: each chunk is retired holding
 * large blocks only, and is not advised. A huge-page fault on such a block
 * costs its whole 2 MiB at once (on the benchmark VM, 1.4 ms each when the
 * host had taken the memory back: bench/analysis.md, "large"). */
static void thp_large_case(void)
{
    if (!thp_available())
        return;
    enum { COUNT = 48, SIZE = 3 << 20 };
    char *blocks[COUNT];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(SIZE);
        blocks[i][0] = 1;
    }
    int advised = 0;
    char flags[256];
    for (int i = 0; i < COUNT / 2; i++) {
        vm_flags(blocks[i], flags, sizeof flags);
        if (has_flag(flags, "hg")) {
            NOTE("block %d at %p: VmFlags:%s", i, (void *)blocks[i], flags);
            advised++;
        }
    }
    CHECK(advised == 0, "%d of the first %d 3 MiB blocks lie in chunks advised huge pages",
          advised, COUNT / 2);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

/* Blocks of 1 MiB are freed, all but one in eight, and decay purges the
 * free spans. Large blocks placed there again, each written at its two
 * ends as a buffer filled from both sides may be, must fault in what they
 * touch, not a huge page each: on the benchmark VM such a fault cost
 * 100-430 us a block (bench/analysis.md, "batch1000 at 1 MiB"). Before,
 * chunks cut mostly into blocks of less than 2 MiB were advised huge
 * pages, and the purged ranges faulted back in 2 MiB at a time. */
static void thp_reuse_case(void)
{
    if (!thp_available())
        return;
    enum { COUNT = 96, KEEP_EVERY = 8, LARGE = 32 };
    char *blocks[COUNT];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(MIB);
        blocks[i][0] = blocks[i][MIB - 1] = 1;
    }
    char flags[256];
    int advised = 0;
    for (int i = 0; i < COUNT; i++) {
        vm_flags(blocks[i], flags, sizeof flags);
        advised += has_flag(flags, "hg");
    }
    NOTE("%d of %d blocks of 1 MiB lie in chunks advised huge pages", advised, COUNT);
    for (int i = 0; i < COUNT; i++)
        if (i % KEEP_EVERY) {
            free(blocks[i]);
            blocks[i] = NULL;
        }
    /* Older than the decay period (200 ms here): the upkeep pass run by
     * the next large allocation purges them. */
    sleep_ms(300);
    release(allocate(1 << 20, 1));
    struct xmm_stats stats;
    int got = xmm_stats_get(&stats);
    CHECK(got == 0 && stats.bytes_purged >= 32 * MIB,
          "decay purged %zu MiB of the freed blocks' pages (at least 32)",
          (size_t)(stats.bytes_purged / MIB));
    size_t before = status_kb("VmRSS:"), huge_before = proc_kb("/proc/self/smaps_rollup", "AnonHugePages:");
    /* Another size than the freed blocks': no cached block of theirs. */
    enum { SIZE = (1 << 20) + (64 << 10) };
    char *large[LARGE];
    int on_huge = 0;
    for (int i = 0; i < LARGE; i++) {
        large[i] = malloc(SIZE);
        vm_flags(large[i], flags, sizeof flags);
        on_huge += has_flag(flags, "hg");
        large[i][0] = 1;
        large[i][SIZE - 1] = 1;
    }
    /* The RSS may also fall meanwhile (a decay pass purging the blocks
     * freed before, on a slow machine): no growth then, not a wrap. */
    size_t after = status_kb("VmRSS:");
    size_t grown_kb = after > before ? after - before : 0;
    NOTE("%d of %d new blocks in chunks still advised huge pages; AnonHugePages %zu kB, then "
         "%zu kB", on_huge, LARGE, huge_before, proc_kb("/proc/self/smaps_rollup", "AnonHugePages:"));
    /* Under the kernel's `always`, chunks XMM did not advise get huge
     * pages too: that is the policy the machine asked for. */
    char mode[128];
    thp_mode(mode, sizeof mode);
    if (strstr(mode, "[always]"))
        NOTE("transparent_hugepage/enabled is [always]: RSS grew %zu kB, not checked", grown_kb);
    else
        CHECK(grown_kb <= 8 * 1024,
              "%d blocks of 1 MiB + 64 KiB written at both ends: RSS grew %zu kB (at most 8 "
              "MiB; a huge page each would be %d MiB)",
              LARGE, grown_kb, LARGE * 2);
    for (int i = 0; i < LARGE; i++)
        free(large[i]);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

/* Chunks of 4 KiB blocks, cut to their end, ask for huge pages; most of
 * the blocks are freed, and a large block placed in the free spans takes
 * its chunk off huge pages (a 2 MiB fault for each of its ranges that
 * holds no page yet: thp-reuse). */
static void thp_mixed_case(void)
{
    if (!thp_available())
        return;
    enum { COUNT = 12288, KEEP_EVERY = 1024, LARGE = 8 };
    char **blocks = pages_on_huge_chunks(COUNT);
    char flags[256];
    for (int i = 0; i < COUNT; i++)
        if (i % KEEP_EVERY) {
            free(blocks[i]);
            blocks[i] = NULL;
        }
    xmm_release_cpu_caches();
    /* The kept blocks' chunks that ask for huge pages now. */
    int advised[COUNT / KEEP_EVERY];
    for (int k = 0; k < COUNT; k += KEEP_EVERY) {
        vm_flags(blocks[k], flags, sizeof flags);
        advised[k / KEEP_EVERY] = has_flag(flags, "hg");
    }
    int in_advised = 0, still_advised = 0;
    char *large[LARGE];
    for (int i = 0; i < LARGE; i++) {
        large[i] = malloc((1 << 20) + (64 << 10));
        large[i][0] = 1;
        /* Chunks are aligned to their largest size, 64 MiB, and smaller
         * ones are cut from its start: one chunk per 64 MiB slot. */
        for (int k = 0; k < COUNT; k += KEEP_EVERY)
            if ((((uintptr_t)large[i] ^ (uintptr_t)blocks[k]) >> 26) == 0 &&
                advised[k / KEEP_EVERY]) {
                in_advised++;
                break;
            }
        vm_flags(large[i], flags, sizeof flags);
        still_advised += has_flag(flags, "hg");
    }
    CHECK(in_advised > 0, "%d of %d large blocks placed in chunks that asked for huge pages",
          in_advised, LARGE);
    CHECK(still_advised == 0, "%d of %d large blocks lie in chunks still advised huge pages",
          still_advised, LARGE);
    for (int i = 0; i < LARGE; i++)
        free(large[i]);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

/* The first chunk cut to its end by blocks that are mostly untouched: a
 * chunk cut to its end is dense by its cut, not by its pages, and asking
 * for huge pages then would have khugepaged fill the untouched pages with
 * zeroes (max_ptes_none 511 by default). */
static void thp_sparse_case(void)
{
    if (!thp_available())
        return;
    enum { BLOCK = 64 << 10, COUNT = 48 }; /* 3 MiB: past the first chunk's 2 MiB */
    static char *blocks[COUNT];
    char flags[256];
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        CHECK(blocks[i] != NULL, "block %d of %d KiB", i, BLOCK >> 10);
        if (!blocks[i])
            return;
        blocks[i][BLOCK - 1] = 1; /* one more page of each: still sparse */
    }
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    int got = xmm_stats_get(&stats);
    CHECK(got == 0 && stats.bytes_reserved > 4 * MIB,
          "the first chunk was cut to its end: %zu KiB reserved",
          (size_t)(stats.bytes_reserved >> 10));
    vm_flags(blocks[0], flags, sizeof flags);
    CHECK(!has_flag(flags, "hg"), "a chunk cut to its end but mostly untouched does not ask "
          "for huge pages (VmFlags:%s)", flags);
    NOTE("AnonHugePages: %zu kB", proc_kb("/proc/self/smaps_rollup", "AnonHugePages:"));
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

/* A small program's heap stays on small pages; past 16 MiB of chunks a
 * new chunk asks for huge pages at once, so that its pages fault in 2 MiB
 * at a time from the start (bench/analysis.md, "huge pages from the first
 * touch, by default"). */
static void thp_eager_case(void)
{
    if (!thp_available())
        return;
    enum { BLOCK = 4096, COUNT = (40 << 20) / BLOCK };
    char flags[256];
    char *first = malloc(BLOCK);
    memset(first, 1, BLOCK);
    /* bytes_reserved: chunks less the unmapped hole at each one's start. */
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    int got = xmm_stats_get(&stats);
    CHECK(got == 0 && stats.bytes_reserved <= 4 * MIB, "one chunk so far: %zu KiB reserved",
          (size_t)(stats.bytes_reserved >> 10));
    vm_flags(first, flags, sizeof flags);
    CHECK(!has_flag(flags, "hg"), "the first chunk, not cut to its end, does not ask for "
          "huge pages (VmFlags:%s)", flags);
    char **blocks = raw(COUNT * sizeof *blocks);
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        memset(blocks[i], 1, BLOCK);
    }
    /* 40 MiB: chunks of 4, 8 and 16 MiB are cut to their end, and the
     * fourth (32 MiB, mapped at 28 MiB) holds the last 12 MiB or so. */
    stats.version = XMM_STATS_VERSION;
    got = xmm_stats_get(&stats);
    CHECK(got == 0 && stats.bytes_reserved >= 48 * MIB && stats.bytes_reserved <= 64 * MIB,
          "four chunks (60 MiB): %zu MiB reserved", (size_t)(stats.bytes_reserved / MIB));
    vm_flags(blocks[COUNT - 1], flags, sizeof flags);
    CHECK(has_flag(flags, "hg"), "a chunk mapped past 16 MiB of chunks asks for huge pages "
          "before it is cut to its end (VmFlags:%s)", flags);
    NOTE("AnonHugePages: %zu kB", proc_kb("/proc/self/smaps_rollup", "AnonHugePages:"));
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
    free(first);
}

/* Past 16 MiB of chunks, blocks of 64-256 KiB (size classes, not large
 * blocks) written at their first byte only, as buffers often are: their
 * spans take their chunk off huge pages before the first touch, so each
 * block costs the pages written, not a 2 MiB page each (rsync's 256 KiB
 * buffers: 198 MB under XMM, 11 MB under glibc, before). */
static void thp_medium_case(void)
{
    if (!thp_available())
        return;
    enum { BLOCK = 4096, COUNT = (40 << 20) / BLOCK, EACH = 64 };
    static const size_t sizes[] = {64 << 10, 128 << 10, 256 << 10};
    char flags[256];
    char **blocks = raw(COUNT * sizeof *blocks);
    for (int i = 0; i < COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        memset(blocks[i], 1, BLOCK);
    }
    vm_flags(blocks[COUNT - 1], flags, sizeof flags);
    CHECK(has_flag(flags, "hg"), "past 16 MiB of chunks, a chunk asks for huge pages (VmFlags:%s)",
          flags);
    size_t before = status_kb("VmRSS:");
    static char *medium[3][EACH];
    int advised = 0;
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < EACH; i++) {
            medium[s][i] = malloc(sizes[s]);
            medium[s][i][0] = 1;
        }
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < EACH; i++) {
            vm_flags(medium[s][i], flags, sizeof flags);
            advised += has_flag(flags, "hg");
        }
    size_t grown = status_kb("VmRSS:") - before;
    CHECK(advised == 0, "%d of %d blocks of 64-256 KiB lie in chunks advised huge pages",
          advised, 3 * EACH);
    /* 192 pages written (768 KiB); a 2 MiB page each would be 28 MiB. */
    CHECK(grown < 4096, "%d blocks of 64-256 KiB, each written at one byte, grew the RSS by "
          "%zu KiB", 3 * EACH, grown);
    NOTE("AnonHugePages: %zu kB", proc_kb("/proc/self/smaps_rollup", "AnonHugePages:"));
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < EACH; i++)
            free(medium[s][i]);
    for (int i = 0; i < COUNT; i++)
        free(blocks[i]);
}

static int run_case(const char *mode)
{
    if (!strcmp(mode, "sizes"))
        sizes_case();
    else if (!strcmp(mode, "direct"))
        direct_case();
    else if (!strcmp(mode, "burst"))
        burst_case();
    else if (!strcmp(mode, "trim-first"))
        trim_case(0);
    else if (!strcmp(mode, "trim-second"))
        trim_case(1);
    else if (!strcmp(mode, "trim-whole"))
        trim_whole_case();
    else if (!strcmp(mode, "first-touch"))
        first_touch_case();
    else if (!strcmp(mode, "drift"))
        drift_case();
    else if (!strcmp(mode, "holes"))
        holes_case();
    else if (!strcmp(mode, "thp"))
        thp_case();
    else if (!strcmp(mode, "thp-large"))
        thp_large_case();
    else if (!strcmp(mode, "thp-reuse"))
        thp_reuse_case();
    else if (!strcmp(mode, "thp-mixed"))
        thp_mixed_case();
    else if (!strcmp(mode, "thp-sparse"))
        thp_sparse_case();
    else if (!strcmp(mode, "thp-eager"))
        thp_eager_case();
    else if (!strcmp(mode, "thp-medium"))
        thp_medium_case();
    else
        CHECK(0, "unknown case %s", mode);
    return check_summary(mode);
}

/* Each case in a fresh process: long decay and no background thread, so
 * that only what the case does gives memory back. */
static int run_case_alone(const char *mode, char *extra, char *more)
{
    char *environment[5] = {"XMM_DECAY_MS=600000", "XMM_BACKGROUND=0"};
    int count = 2;
    if (extra)
        environment[count++] = extra;
    if (more)
        environment[count++] = more;
    environment[count] = NULL;
    return check_run_self(mode, environment);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_case(argv[1]);
    struct {
        const char *mode;
        char *extra, *more;
    } cases[] = {
        {"sizes", NULL, NULL},
        {"direct", NULL, NULL},
        {"drift", NULL, NULL},
        {"holes", "XMM_THP=never", NULL},
        {"burst", "XMM_DECAY_MS=200", NULL},
        {"trim-first", NULL, NULL},
        {"trim-second", NULL, NULL},
        {"trim-whole", NULL, NULL},
        {"first-touch", "XMM_THP=never", NULL},
        {"thp", "XMM_THP=auto", NULL},
        {"thp-large", "XMM_THP=auto", NULL},
        {"thp-reuse", "XMM_THP=auto", "XMM_DECAY_MS=200"},
        {"thp-mixed", "XMM_THP=auto", NULL},
        {"thp-sparse", "XMM_THP=auto", NULL},
        {"thp-eager", "XMM_THP=auto", NULL},
        {"thp-medium", "XMM_THP=auto", NULL},
    };
    int failures = 0, count = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < count; i++) {
        int status = run_case_alone(cases[i].mode, cases[i].extra, cases[i].more);
        if (status != 0)
            printf("FAIL case %s: exit %d\n", cases[i].mode, status);
        failures += status != 0;
    }
    printf("%d of %d reclaim cases failed\n", failures, count);
    return failures ? 1 : 0;
}
