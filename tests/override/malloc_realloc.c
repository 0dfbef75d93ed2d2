/*
 * malloc_realloc.c - realloc and reallocarray.
 *
 * Growing and shrinking across size classes and into large and directly
 * mapped sizes keeps the contents up to the smaller size; realloc(NULL, n)
 * allocates; realloc(p, 0) frees and returns NULL (glibc's semantics, which
 * xmm.h adopts); a failed realloc returns NULL with ENOMEM and leaves the
 * old block valid and unchanged; reallocarray checks for overflow.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "xmm.h"
#include "testlib.h"

/* Contents are checked against a seed that does not depend on the address
 * (the block may move); only the first `size` bytes were defined. */
static int resize_and_check(void **ptr, size_t *size, size_t new_size, uint64_t seed,
                            const char *how)
{
    void *old = *ptr;
    size_t keep = *size < new_size ? *size : new_size;

    errno = 0;
    void *moved = realloc(old, new_size);
    CHECKQ(moved != NULL, "%s: realloc(%zu -> %zu) != NULL (errno %d)", how, *size, new_size,
           errno);
    if (!moved)
        return 0;
    size_t at = pattern_find(moved, keep, seed);
    CHECKQ(at == SIZE_MAX, "%s: realloc(%zu -> %zu) kept the first %zu bytes (byte %zu differs)",
           how, *size, new_size, keep, at);
    size_t usable = malloc_usable_size(moved);
    CHECKQ(usable >= new_size, "%s: usable size %zu >= %zu after realloc", how, usable, new_size);
    CHECKQ(is_aligned(moved, expected_alignment(new_size)),
           "%s: realloc(%p of %zu bytes, %zu) = %p aligned to %zu", how, old, *size, new_size,
           moved, expected_alignment(new_size));
    CHECKQ(xmm_node_of(moved) >= 0, "%s: realloc(.., %zu) gives an XMM block", how, new_size);
    pattern_fill(moved, new_size, seed);
    *ptr = moved;
    *size = new_size;
    return at == SIZE_MAX && usable >= new_size && is_aligned(moved, expected_alignment(new_size));
}

static void test_ladder(void)
{
    static const size_t ladder[] = {
        0, 1, 7, 8, 15, 16, 17, 24, 32, 48, 64, 100, 128, 200, 256, 500, 512, 1000, 1024,
        2000, 4096, 5000, 8192, 10000, 16384, 32768, 40000, 65536, 70000, 131072,
        256 * 1024 + 1, MIB, MIB + 5, 4 * MIB, 16 * MIB - 1, 32 * MIB, 33 * MIB, 64 * MIB};
    const size_t steps = sizeof ladder / sizeof ladder[0];
    void *ptr = NULL;
    size_t size = 0, good = 0, total = 0;
    uint64_t seed = 0x1234;

    /* Up one rung at a time, then down, then big jumps both ways. */
    ptr = realloc(NULL, 0);
    CHECK(ptr != NULL, "realloc(NULL, 0) gives a block like malloc(0)");
    for (size_t i = 1; i < steps; i++, total++)
        good += resize_and_check(&ptr, &size, ladder[i], seed, "up");
    for (size_t i = steps - 1; i-- > 1; total++)
        good += resize_and_check(&ptr, &size, ladder[i], seed, "down");
    for (size_t i = 1; i < steps; i++) {
        good += resize_and_check(&ptr, &size, ladder[steps - i], seed, "jump down");
        good += resize_and_check(&ptr, &size, ladder[i], seed, "jump up");
        total += 2;
    }
    CHECK(good == total, "%zu reallocs up and down %zu sizes from 0 B to 64 MiB: contents kept, "
                         "usable size and alignment right (%zu good)",
          total, steps, good);
    free(ptr);

    /* Growing in place within the usable size, and tiny steps. */
    size = 1;
    ptr = malloc(size);
    pattern_fill(ptr, size, seed);
    good = total = 0;
    for (size_t next = 2; next <= 20000; next += 1 + next / 16, total++)
        good += resize_and_check(&ptr, &size, next, seed, "small steps");
    CHECK(good == total, "%zu reallocs growing by small steps to 20000 B", total);
    free(ptr);
}

/* Every small old size against every smaller or nearby new size that is
 * a multiple of 16: in-place shrinking and growing must still give the
 * alignment the new size is owed. */
static void test_in_place_alignment(void)
{
    size_t tried = 0, bad = 0;
    for (size_t old_size = 1; old_size <= 2048; old_size++) {
        for (size_t new_size = 16; new_size <= old_size + 64; new_size += 16) {
            unsigned char *ptr = malloc(old_size);
            if (!ptr)
                continue;
            ptr[0] = 0x42;
            unsigned char *moved = realloc(ptr, new_size);
            tried++;
            if (!moved || !is_aligned(moved, 16) || moved[0] != 0x42) {
                if (bad++ < 5)
                    CHECKQ(0, "realloc(%zu-byte block, %zu) = %p: 16-aligned, first byte kept",
                           old_size, new_size, (void *)moved);
            }
            free(moved ? moved : ptr);
        }
    }
    CHECK(bad == 0, "%zu reallocs from every size 1..2048 to multiples of 16 up to 64 B more: "
                    "16-aligned (%zu bad)",
          tried, bad);
}

/* Many live tiny blocks: millions of 16-byte objects, each holding its
 * index, freed in a scattered order. */
static void test_many_tiny(void)
{
    enum { COUNT = 3000000 };
    uint64_t **blocks = malloc(COUNT * sizeof *blocks);
    size_t bad = 0;
    if (!blocks) {
        CHECK(0, "malloc of the pointer table");
        return;
    }
    for (size_t i = 0; i < COUNT; i++) {
        blocks[i] = malloc(16);
        if (blocks[i]) {
            blocks[i][0] = i;
            blocks[i][1] = ~i;
        }
    }
    for (size_t i = 0; i < COUNT; i++)
        if (!blocks[i] || blocks[i][0] != i || blocks[i][1] != ~i)
            bad++;
    /* Free in a scattered order: a stride coprime with COUNT. */
    for (size_t k = 0, i = 0; k < COUNT; k++, i = (i + 1000003) % COUNT)
        free(blocks[i]);
    free(blocks);
    CHECK(bad == 0, "%d live 16-byte blocks, each keeping its index, freed in scattered order "
                    "(%zu bad)",
          COUNT, bad);
}

/* Many blocks resized at random, the others checked to be untouched. */
static void test_random_walk(void)
{
    enum { BLOCKS = 64, STEPS = 6000 };
    struct {
        void *ptr;
        size_t size;
        uint64_t seed;
    } blocks[BLOCKS] = {{0}};
    uint64_t random = 0x9e3779b97f4a7c15ull;
    size_t good = 0;

    for (int step = 0; step < STEPS; step++) {
        int i = (int)(random_next(&random) % BLOCKS);
        uint64_t r = random_next(&random);
        size_t bits = (size_t)(r % 22); /* up to 4 MiB */
        size_t new_size = (size_t)(random_next(&random) & (((size_t)1 << bits) - 1));
        if (blocks[i].ptr && (r >> 60) == 0) {
            size_t at = pattern_find(blocks[i].ptr, blocks[i].size, blocks[i].seed);
            CHECKQ(at == SIZE_MAX, "random walk: block %d of %zu bytes intact (byte %zu)", i,
                   blocks[i].size, at);
            free(blocks[i].ptr);
            blocks[i].ptr = NULL;
            good++;
            continue;
        }
        if (!blocks[i].ptr) {
            blocks[i].seed = r;
            blocks[i].size = 0;
        }
        if (new_size == 0)
            new_size = 1; /* realloc(p, 0) frees: tested on its own */
        good += resize_and_check(&blocks[i].ptr, &blocks[i].size, new_size, blocks[i].seed,
                                 "random walk");
    }
    for (int i = 0; i < BLOCKS; i++) {
        if (!blocks[i].ptr)
            continue;
        CHECKQ(pattern_find(blocks[i].ptr, blocks[i].size, blocks[i].seed) == SIZE_MAX,
               "random walk: block %d intact at the end", i);
        free(blocks[i].ptr);
    }
    CHECK(good == STEPS, "%d random reallocs and frees of 64 blocks up to 4 MiB (%zu good)",
          STEPS, good);
}

static void test_zero_and_null(void)
{
    struct xmm_stats before = {.version = XMM_STATS_VERSION},
                     after = {.version = XMM_STATS_VERSION};
    static const size_t sizes[] = {1, 100, 5000, 300000, 40 * MIB};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *ptr = realloc(NULL, sizes[i]);
        CHECK(ptr != NULL && malloc_usable_size(ptr) >= sizes[i] && xmm_node_of(ptr) >= 0,
              "realloc(NULL, %zu) allocates an XMM block", sizes[i]);
        if (!ptr)
            continue;
        memset(ptr, 1, sizes[i]);
        size_t usable = malloc_usable_size(ptr);
        xmm_stats_get(&before);
        errno = 0;
        void *result = realloc(ptr, 0);
        int saved_errno = errno;
        xmm_stats_get(&after);
        CHECK(result == NULL, "realloc(p of %zu bytes, 0) returns NULL (got %p, errno %d)",
              sizes[i], result, saved_errno);
        if (result) {
            free(result);
            continue;
        }
        /* It freed the block: the statistics say so (quiet, one thread). */
        CHECK(after.bytes_in_use + usable == before.bytes_in_use,
              "realloc(p, 0) released the %zu usable bytes: bytes_in_use %llu -> %llu", usable,
              (unsigned long long)before.bytes_in_use, (unsigned long long)after.bytes_in_use);
    }
}

/* A realloc that cannot succeed returns NULL, sets ENOMEM, and the old
 * block is still there, unchanged, and still freeable. */
static void test_failure_keeps_block(void)
{
    static const size_t old_sizes[] = {24, 1000, 70000, 4 * MIB, 100 * MIB};
    static const size_t impossible[] = {SIZE_MAX, SIZE_MAX - 8, SIZE_MAX - 4096,
                                        (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                                        /* 128 TiB: the whole user address space
                                         * of x86_64, so no mapping can hold it */
                                        (size_t)1 << 47};

    for (size_t i = 0; i < sizeof old_sizes / sizeof old_sizes[0]; i++) {
        size_t size = old_sizes[i];
        void *ptr = malloc(size);
        if (!ptr) {
            CHECK(0, "malloc(%zu)", size);
            continue;
        }
        size_t usable = malloc_usable_size(ptr);
        pattern_fill(ptr, size, 77 + size);
        for (size_t j = 0; j < sizeof impossible / sizeof impossible[0]; j++) {
            errno = 0;
            void *result = realloc(ptr, impossible[j]);
            int saved_errno = errno;
            CHECK(result == NULL && saved_errno == ENOMEM,
                  "realloc(%zu-byte block, %#zx): NULL, ENOMEM (got %p, errno %d)", size,
                  impossible[j], result, saved_errno);
            if (result) {
                ptr = result; /* should not happen; keep going safely */
                continue;
            }
            CHECK(pattern_find(ptr, size, 77 + size) == SIZE_MAX &&
                      malloc_usable_size(ptr) == usable,
                  "after the failed realloc the %zu-byte block is unchanged", size);
        }
        /* Still a normal block: it can grow and be freed. */
        void *grown = realloc(ptr, size * 2);
        CHECK(grown != NULL && pattern_find(grown, size, 77 + size) == SIZE_MAX,
              "the %zu-byte block still grows after failed reallocs", size);
        free(grown ? grown : ptr);
    }
}

static void test_reallocarray(void)
{
    unsigned int *array = reallocarray(NULL, 10, sizeof *array);
    CHECK(array != NULL && malloc_usable_size(array) >= 10 * sizeof *array,
          "reallocarray(NULL, 10, 4) allocates");
    if (!array)
        return;
    for (unsigned int i = 0; i < 10; i++)
        array[i] = i * 2654435761u;
    unsigned int *grown = reallocarray(array, 300000, sizeof *array);
    CHECK(grown != NULL, "reallocarray grows to 300000 elements");
    if (grown) {
        int same = 1;
        for (unsigned int i = 0; i < 10; i++)
            same &= grown[i] == i * 2654435761u;
        CHECK(same, "reallocarray kept the first 10 elements");
        for (unsigned int i = 0; i < 300000; i++)
            grown[i] = i;
        array = grown;
    }
    static const size_t overflow[][2] = {{SIZE_MAX / 2 + 1, 2},
                                         {(size_t)1 << 32, (size_t)1 << 32},
                                         {SIZE_MAX, SIZE_MAX},
                                         {3, SIZE_MAX / 3 + 1}};
    for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
        errno = 0;
        void *result = reallocarray(array, overflow[i][0], overflow[i][1]);
        CHECK(result == NULL && errno == ENOMEM,
              "reallocarray(p, %#zx, %#zx) overflows: NULL, ENOMEM (errno %d)", overflow[i][0],
              overflow[i][1], errno);
        if (result)
            array = result;
        errno = 0;
        result = reallocarray(NULL, overflow[i][0], overflow[i][1]);
        CHECK(result == NULL && errno == ENOMEM,
              "reallocarray(NULL, %#zx, %#zx) overflows: NULL, ENOMEM", overflow[i][0],
              overflow[i][1]);
        free(result);
    }
    int same = 1;
    for (unsigned int i = 0; i < 300000 && grown; i++)
        same &= array[i] == i;
    CHECK(same, "the array is unchanged after the overflowing reallocarrays");
    unsigned int *shrunk = reallocarray(array, 5, sizeof *array);
    CHECK(shrunk != NULL && shrunk[4] == (grown ? 4u : 4 * 2654435761u),
          "reallocarray shrinks keeping the contents");
    free(shrunk ? shrunk : array);
}

/* Blocks with a mapping of their own (32 MiB and up, or from 4 MiB when
 * realloc moved them there to grow) grow and shrink by
 * mremap: in place or moved without a copy. Whichever happens, the bytes
 * stay, the block stays XMM's (usable size, node, free), and a buffer
 * grown 4 KiB at a time moves a logarithmic number of times (an eighth of
 * headroom per growth), not once per call. */
static void test_direct_resize(void)
{
    size_t size = 30 * MIB;
    unsigned char *block = malloc(size);
    CHECK(block != NULL, "malloc(30 MiB)");
    if (!block)
        return;
    for (size_t i = 0; i < size; i += 4096)
        block[i] = (unsigned char)(i >> 12);
    bool intact = true, owned = true;
    unsigned moves = 0;
    for (size_t grown = size; grown <= 80 * MIB; grown += 4096) {
        unsigned char *next = realloc(block, grown);
        if (!next) {
            intact = false;
            break;
        }
        moves += next != block;
        block = next;
        block[grown - 1] = 0x5a;
        owned &= malloc_usable_size(block) >= grown && xmm_node_of(block) != -1;
    }
    for (size_t i = 0; i < size && intact; i += 4096)
        intact = block[i] == (unsigned char)(i >> 12);
    CHECK(intact, "30 MiB of contents kept while growing to 80 MiB in 4 KiB steps");
    CHECK(owned, "the block stays XMM's at every step (usable size, node)");
    CHECK(moves < 64, "it moved %u times in 12800 reallocs (headroom, not a move per call)",
          moves);
    unsigned char *shrunk = realloc(block, 33 * MIB);
    CHECK(shrunk != NULL && malloc_usable_size(shrunk) >= 33 * MIB &&
              malloc_usable_size(shrunk) < 40 * MIB && shrunk[4096] == 1,
          "shrinking to 33 MiB keeps the contents and gives the rest back (usable %zu)",
          shrunk ? malloc_usable_size(shrunk) : 0);
    if (shrunk)
        block = shrunk;
    struct xmm_stats before, after;
    xmm_stats_get(&before);
    size_t usable = malloc_usable_size(block);
    free(block);
    xmm_stats_get(&after);
    CHECK(before.bytes_in_use - after.bytes_in_use == usable,
          "freed: bytes_in_use down by its %zu usable bytes", usable);
}

/* A buffer grown 4 KiB at a time from nothing to `final` bytes, each step
 * written, as bench/workloads/realloc-growth does. Copying it at every
 * move costs O(N) in total only if the moves of the large sizes are not
 * copies: once a large block cannot grow in place any more, it moves
 * into a mapping of its own, which mremap then grows without a copy.
 * Seen from outside: the peak resident memory of the growth stays near
 * the final size. A copy to new pages holds both the old block and the
 * new one resident; the old code copied at about 10, 28 and 32 MiB on
 * the way to 40 MiB and peaked 105 MiB above where it started, the new
 * one about 63: the final 40 MiB, the one copy at 10 MiB, and the freed
 * span of that copy, resident until decay purges it. (Where a chunk has
 * room to grow the block in place to 28 MiB, the one copy is there, on
 * its way to a mapping at 32 MiB, and the peak about 70.)
 * The peak is read from VmHWM, reset first (clear_refs 5; where it cannot
 * be, the case is skipped). */
static void test_large_growth_copies(size_t final)
{
    malloc_trim(0); /* what earlier cases freed: not resident, not reused unseen */
    FILE *clear = fopen("/proc/self/clear_refs", "w");
    bool reset = clear && fputs("5", clear) >= 0;
    if (clear)
        reset &= fclose(clear) == 0;
    if (!reset) {
        printf("SKIP  growth to %zu MiB: VmHWM cannot be reset here\n", final / MIB);
        return;
    }
    size_t resident_kb = proc_kb("/proc/self/status", "VmRSS:");
    unsigned char *block = NULL;
    bool intact = true;
    for (size_t size = 4096; size <= final && intact; size += 4096) {
        unsigned char *next = realloc(block, size);
        intact = next != NULL && (size == 4096 || (next[0] == 0x11 && next[size - 4097] == 0x22));
        if (!next)
            break;
        block = next;
        memset(block + size - 4096, 0x22, 4096);
        block[0] = 0x11;
    }
    size_t peak_mib = (proc_kb("/proc/self/status", "VmHWM:") - resident_kb) >> 10;
    CHECK(intact, "a buffer grown 4 KiB at a time to %zu MiB keeps its bytes", final / MIB);
    CHECK(peak_mib <= 2 * (final / MIB),
          "growing it to %zu MiB peaked at %zu MiB resident above the start (at most 2x: "
          "the large moves are not copies)", final / MIB, peak_mib);
    free(block);
}

/* Resizing a direct block by mremap frees address ranges (a shrunk tail, a
 * moved-from range) that other threads map at once. The block must leave
 * the address map before its pages move: unregistered after, it wiped the
 * map entries of a block another thread had just mapped there, whose free
 * was then reported as invalid (an abort, 1 run in 8). Two threads resize,
 * two map and unmap 40 MiB blocks, for a second; every free must succeed. */
static atomic_int resize_race_stop;
static atomic_int resize_race_failures;

static void *resize_race_resizer(void *unused)
{
    (void)unused;
    char *block = malloc(80 * MIB);
    if (!block) {
        atomic_fetch_add(&resize_race_failures, 1);
        return NULL;
    }
    block[0] = 1;
    while (!atomic_load(&resize_race_stop)) {
        char *next = realloc(block, 35 * MIB);
        if (next)
            block = next;
        next = realloc(block, 80 * MIB);
        if (next)
            block = next;
        if (block[0] != 1)
            atomic_fetch_add(&resize_race_failures, 1);
    }
    free(block);
    return NULL;
}

static void *resize_race_mapper(void *unused)
{
    (void)unused;
    while (!atomic_load(&resize_race_stop)) {
        char *block = malloc(40 * MIB);
        if (block) {
            block[40 * MIB - 1] = 2;
            if (xmm_node_of(block) == -1)
                atomic_fetch_add(&resize_race_failures, 1);
            free(block);
        }
    }
    return NULL;
}

static void test_direct_resize_race(void)
{
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, i < 2 ? resize_race_resizer : resize_race_mapper, NULL);
    struct timespec second = {1, 0};
    nanosleep(&second, NULL);
    atomic_store(&resize_race_stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    CHECK(atomic_load(&resize_race_failures) == 0,
          "direct blocks resized while others are mapped and freed: every block stays XMM's");
}

/* Pages that held small objects keep their free words (free_object.h)
 * when the page heap hands them out again as a large block. realloc
 * shrinking such a block copied a stale word into the first word of a
 * small one, which then decoded as a free object's: free() reported a
 * double free and aborted the program, which had done nothing wrong
 * (every round, for 16-, 32- and 48-byte objects freed before 300 KB and
 * 1 MB blocks). A block of whole pages is handed out with its first word
 * cleared, as a small block is. Run in a child: the old code aborts. */
static void test_shrink_from_reused_pages(void)
{
    enum { SMALL_COUNT = 100000, ROUNDS = 500 };
    static void *small[SMALL_COUNT];
    static const size_t small_sizes[] = {16, 32, 48};
    static const size_t large_sizes[] = {300000, 1000000};
    int stale = 0, rounds = 0;
    for (size_t s = 0; s < sizeof small_sizes / sizeof small_sizes[0]; s++) {
        for (int i = 0; i < SMALL_COUNT; i++)
            small[i] = malloc(small_sizes[s]);
        for (int i = 0; i < SMALL_COUNT; i++)
            free(small[i]);
        for (size_t l = 0; l < sizeof large_sizes / sizeof large_sizes[0]; l++)
            for (int round = 0; round < ROUNDS; round++) {
                unsigned char *block = round % 2 ? malloc(large_sizes[l])
                                                 : aligned_alloc(8192, large_sizes[l]);
                if (!block)
                    continue;
                uint64_t first;
                memcpy(&first, block, sizeof first);
                stale += first != 0;
                block[0] = 'x'; /* the first byte only */
                unsigned char *shrunk = realloc(block, 24);
                if (shrunk && shrunk[0] == 'x')
                    rounds++;
                free(shrunk);
            }
    }
    CHECK(stale == 0, "blocks of whole pages start with their first word cleared (%d did not)",
          stale);
    CHECK(rounds == 6 * ROUNDS, "%d of %d blocks shrunk with realloc and freed", rounds,
          6 * ROUNDS);
}

int main(void)
{
    expect_malloc_is_xmm();
    run_section("shrinking a block of reused pages: no false double free",
                test_shrink_from_reused_pages);
    test_direct_resize_race();
    test_direct_resize();
    test_large_growth_copies(40 * MIB);
    test_ladder();
    test_in_place_alignment();
    test_many_tiny();
    test_random_walk();
    test_zero_and_null();
    test_failure_keeps_block();
    test_reallocarray();
    return check_summary("malloc_realloc");
}
