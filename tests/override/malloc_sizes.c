/*
 * malloc_sizes.c - malloc, malloc_usable_size and calloc at every size.
 *
 * Every size 0..70000 one by one: non-NULL, usable size >= size, the
 * alignment xmm.h promises (min(16, largest power of two dividing the
 * size)), every usable byte writable and still holding its pattern while
 * 64 later blocks are live (overlapping blocks would show). Then a sweep of
 * larger sizes to 64 MiB, a few of 1 GiB and more, and calloc: zero at
 * every size, also when the memory was just dirtied and freed, and
 * ENOMEM on overflow.
 */
#include "xmm.h"
#include "testlib.h"

#define SMALL_LIMIT 70000
#define RING 64

static void test_every_small_size(void)
{
    struct {
        void *ptr;
        size_t size, usable;
    } ring[RING] = {{0}};
    unsigned long null_count = 0, short_count = 0, misaligned = 0, corrupted = 0,
                  not_xmm = 0, usable_changed = 0, zero_duplicates = 0;

    for (size_t size = 0; size <= SMALL_LIMIT + RING; size++) {
        size_t slot = size % RING;
        if (ring[slot].ptr) {
            void *old = ring[slot].ptr;
            size_t at = pattern_find(old, ring[slot].usable,
                                     pattern_seed(old, ring[slot].size));
            if (at != SIZE_MAX && corrupted++ < 5)
                CHECKQ(0, "block of %zu bytes at %p intact while %d others were live: "
                          "byte %zu differs", ring[slot].size, old, RING, at);
            if (malloc_usable_size(old) != ring[slot].usable && usable_changed++ < 5)
                CHECKQ(0, "usable size of the %zu-byte block stayed %zu (now %zu)",
                       ring[slot].size, ring[slot].usable, malloc_usable_size(old));
            free(old);
            ring[slot].ptr = NULL;
        }
        if (size > SMALL_LIMIT)
            continue;
        void *ptr = malloc(size);
        if (!ptr) {
            if (null_count++ < 5)
                CHECKQ(0, "malloc(%zu) returned NULL (errno %d)", size, errno);
            continue;
        }
        size_t usable = malloc_usable_size(ptr);
        if (usable < size && short_count++ < 5)
            CHECKQ(0, "malloc_usable_size(malloc(%zu)) = %zu >= %zu", size, usable, size);
        if (!is_aligned(ptr, expected_alignment(size)) && misaligned++ < 5)
            CHECKQ(0, "malloc(%zu) = %p aligned to %zu", size, ptr, expected_alignment(size));
        if (size % 97 == 0 && xmm_node_of(ptr) < 0 && not_xmm++ < 5)
            CHECKQ(0, "xmm_node_of(malloc(%zu)) >= 0", size);
        if (usable < size)
            usable = size;
        pattern_fill(ptr, usable, pattern_seed(ptr, size));
        ring[slot].ptr = ptr;
        ring[slot].size = size;
        ring[slot].usable = usable;
    }
    CHECK(null_count == 0, "malloc(n) != NULL for every n in 0..%d (%lu NULL)", SMALL_LIMIT,
          null_count);
    CHECK(short_count == 0, "malloc_usable_size >= n for every n in 0..%d (%lu short)",
          SMALL_LIMIT, short_count);
    CHECK(misaligned == 0,
          "alignment min(16, largest power of 2 dividing n) for n in 0..%d (%lu misaligned)",
          SMALL_LIMIT, misaligned);
    CHECK(corrupted == 0, "every usable byte written and intact for n in 0..%d (%lu blocks bad)",
          SMALL_LIMIT, corrupted);
    CHECK(usable_changed == 0, "usable size stable while the block lives (%lu changed)",
          usable_changed);
    CHECK(not_xmm == 0, "every sampled block is an XMM block (%lu not)", not_xmm);

    /* malloc(0): a unique, freeable block each time. */
    void *zeros[64];
    for (int i = 0; i < 64; i++)
        zeros[i] = malloc(0);
    for (int i = 0; i < 64; i++)
        for (int j = i + 1; j < 64; j++)
            if (zeros[i] == NULL || zeros[i] == zeros[j])
                zero_duplicates++;
    CHECK(zero_duplicates == 0, "64 live malloc(0) blocks are non-NULL and distinct");
    for (int i = 0; i < 64; i++)
        free(zeros[i]);
    free(NULL);
    CHECK(1, "free(NULL) is a no-op");
}

/* Sizes from 64 KiB to 64 MiB: powers of two and their neighbours, with
 * eight blocks live at a time, every usable byte written and checked. */
static void test_large_sweep(void)
{
    size_t sizes[128];
    size_t count = 0;
    struct {
        void *ptr;
        size_t size, usable;
    } live[8] = {{0}};
    unsigned long failures = 0;

    for (int shift = 16; shift <= 26; shift++) {
        size_t power = (size_t)1 << shift;
        sizes[count++] = power - 1;
        sizes[count++] = power;
        sizes[count++] = power + 1;
        if (shift < 26)
            sizes[count++] = power + power / 2 + 16;
    }
    sizes[count++] = 64 * MIB - 4096;
    sizes[count++] = 3 * 7 * 11 * 13 * 17 * 19;

    for (size_t i = 0; i < count + 8; i++) {
        size_t slot = i % 8;
        if (live[slot].ptr) {
            size_t at = pattern_find(live[slot].ptr, live[slot].usable,
                                     pattern_seed(live[slot].ptr, live[slot].size));
            if (at != SIZE_MAX)
                failures++;
            CHECKQ(at == SIZE_MAX, "%zu-byte block intact with 7 others live (byte %zu)",
                   live[slot].size, at);
            free(live[slot].ptr);
            live[slot].ptr = NULL;
        }
        if (i >= count)
            continue;
        size_t size = sizes[i];
        void *ptr = malloc(size);
        CHECKQ(ptr != NULL, "malloc(%zu) != NULL (errno %d)", size, errno);
        if (!ptr) {
            failures++;
            continue;
        }
        size_t usable = malloc_usable_size(ptr);
        CHECKQ(usable >= size, "malloc_usable_size(malloc(%zu)) = %zu", size, usable);
        CHECKQ(is_aligned(ptr, expected_alignment(size)), "malloc(%zu) = %p aligned to %zu",
               size, ptr, expected_alignment(size));
        CHECKQ(xmm_node_of(ptr) >= 0, "xmm_node_of(malloc(%zu)) >= 0", size);
        if (usable < size || !is_aligned(ptr, expected_alignment(size)) || xmm_node_of(ptr) < 0)
            failures++;
        if (usable < size)
            usable = size;
        pattern_fill(ptr, usable, pattern_seed(ptr, size));
        live[slot].ptr = ptr;
        live[slot].size = size;
        live[slot].usable = usable;
    }
    CHECK(failures == 0, "%zu sizes from 64 KiB to 64 MiB: usable, aligned, written, intact",
          count);
}

/* A few blocks of 1 GiB and more, one at a time: the first and last MiB
 * written and checked, and one byte in every 4 MiB between (touching every
 * page would cost seconds of page faults and say little more). */
static void test_huge(void)
{
    static const size_t sizes[] = {GIB, GIB + 1, GIB + GIB / 2 + 7, 3 * GIB};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        unsigned char *ptr = malloc(size);
        CHECK(ptr != NULL, "malloc(%zu) (%.2f GiB) != NULL (errno %d)", size,
              (double)size / (double)GIB, errno);
        if (!ptr)
            continue;
        size_t usable = malloc_usable_size(ptr);
        CHECK(usable >= size, "malloc_usable_size = %zu >= %zu", usable, size);
        CHECK(xmm_node_of(ptr) >= 0, "xmm_node_of(huge block) = %d >= 0", xmm_node_of(ptr));
        uint64_t seed = pattern_seed(ptr, size);
        pattern_fill(ptr, MIB, seed);
        pattern_fill(ptr + usable - MIB, MIB, seed + 1);
        for (size_t at = MIB; at + MIB < usable; at += 4 * MIB + 4 * KIB)
            ptr[at] = (unsigned char)(at >> 12);
        size_t bad = SIZE_MAX;
        for (size_t at = MIB; at + MIB < usable; at += 4 * MIB + 4 * KIB)
            if (ptr[at] != (unsigned char)(at >> 12)) {
                bad = at;
                break;
            }
        CHECK(pattern_find(ptr, MIB, seed) == SIZE_MAX &&
                  pattern_find(ptr + usable - MIB, MIB, seed + 1) == SIZE_MAX && bad == SIZE_MAX,
              "%zu-byte block: first and last MiB and a byte every 4 MiB written and read back",
              size);
        free(ptr);
    }
}

static void test_calloc(void)
{
    unsigned long null_count = 0, dirty = 0, not_xmm = 0;

    /* Every size 0..70000: malloc the size, dirty every usable byte, free,
     * then calloc the same size (an allocator that reuses the block at
     * once must zero it). Alternate the factorisation of the request. */
    for (size_t size = 0; size <= SMALL_LIMIT; size++) {
        unsigned char *dirt = malloc(size);
        if (dirt) {
            memset(dirt, 0xa5, malloc_usable_size(dirt));
            free(dirt);
        }
        unsigned char *zero;
        switch (size % 3) {
        case 0:
            zero = calloc(1, size);
            break;
        case 1:
            zero = calloc(size, 1);
            break;
        default:
            zero = (size % 8 == 0) ? calloc(size / 8, 8) : calloc(size, 1);
            break;
        }
        if (!zero) {
            if (null_count++ < 5)
                CHECKQ(0, "calloc for %zu bytes != NULL (errno %d)", size, errno);
            continue;
        }
        size_t at = find_not_byte(zero, size, 0);
        if (at != SIZE_MAX && dirty++ < 5)
            CHECKQ(0, "calloc(%zu bytes) right after freeing a dirtied block: byte %zu is 0x%02x",
                   size, at, zero[at]);
        if (size % 101 == 0 && xmm_node_of(zero) < 0)
            not_xmm++;
        free(zero);
    }
    CHECK(null_count == 0, "calloc != NULL for every size 0..%d", SMALL_LIMIT);
    CHECK(dirty == 0, "calloc zeroed every size 0..%d, reused memory too (%lu dirty)",
          SMALL_LIMIT, dirty);
    CHECK(not_xmm == 0, "calloc blocks are XMM blocks");

    /* Large sizes, including ones that come back from a freed mapping. */
    static const size_t large[] = {128 * KIB, MIB + 17, 8 * MIB, 32 * MIB - 8, 32 * MIB + 8,
                                   100 * MIB};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        for (int round = 0; round < 2; round++) {
            unsigned char *dirt = malloc(large[i]);
            if (dirt) {
                memset(dirt, 0x5a, malloc_usable_size(dirt));
                free(dirt);
            }
            unsigned char *zero = calloc(large[i] / 8, 8);
            CHECKQ(zero != NULL, "calloc(%zu/8, 8) != NULL", large[i]);
            if (!zero)
                continue;
            size_t at = find_not_byte(zero, large[i] / 8 * 8, 0);
            CHECK(at == SIZE_MAX, "calloc of %zu bytes after a dirtied free, round %d: "
                                  "all zero (first non-zero byte: %zd)",
                  large[i], round, at == SIZE_MAX ? (ssize_t)-1 : (ssize_t)at);
            free(zero);
        }
    }

    /* Dirty many blocks of one class, free them all, calloc them all. */
    enum { MANY = 4096 };
    static void *blocks[MANY];
    for (size_t size = 48; size <= 12 * 1024; size *= 4) {
        for (int i = 0; i < MANY; i++) {
            blocks[i] = malloc(size);
            if (blocks[i])
                memset(blocks[i], 0xff, size);
        }
        for (int i = 0; i < MANY; i++)
            free(blocks[i]);
        unsigned long bad = 0;
        for (int i = 0; i < MANY; i++) {
            blocks[i] = calloc(1, size);
            if (!blocks[i] || find_not_byte(blocks[i], size, 0) != SIZE_MAX)
                bad++;
        }
        for (int i = 0; i < MANY; i++)
            free(blocks[i]);
        CHECK(bad == 0, "%d callocs of %zu bytes after %d dirtied frees: all zero (%lu bad)",
              MANY, size, MANY, bad);
    }

    /* Dirty memory freed and then returned to the kernel (malloc_trim):
     * whether the purge zeroes it (MADV_DONTNEED) or not (MADV_FREE, with
     * XMM_PURGE=free), calloc must hand out zeroes. */
    static const size_t trimmed_sizes[] = {64, 4000, 256 * KIB};
    for (size_t s = 0; s < sizeof trimmed_sizes / sizeof trimmed_sizes[0]; s++) {
        size_t size = trimmed_sizes[s], count = 48 * MIB / size;
        void **many = malloc(count * sizeof *many);
        for (size_t i = 0; i < count; i++) {
            many[i] = malloc(size);
            if (many[i])
                memset(many[i], 0x77, size);
        }
        for (size_t i = 0; i < count; i++)
            free(many[i]);
        malloc_trim(0);
        size_t bad = 0;
        for (size_t i = 0; i < count; i++) {
            many[i] = calloc(size, 1);
            if (!many[i] || find_not_byte(many[i], size, 0) != SIZE_MAX)
                bad++;
        }
        for (size_t i = 0; i < count; i++)
            free(many[i]);
        free(many);
        CHECK(bad == 0, "48 MiB of %zu-byte blocks dirtied, freed, trimmed, calloc'd again: "
                        "all zero (%zu of %zu dirty)",
              size, bad, count);
    }

    /* calloc(0, n) and calloc(n, 0): freeable, like malloc(0). */
    void *a = calloc(0, 16), *b = calloc(16, 0);
    CHECK(a != NULL && b != NULL && a != b, "calloc(0, 16) and calloc(16, 0) give blocks");
    free(a);
    free(b);

    /* Overflow of count * size: NULL and ENOMEM, never a short block. */
    static const size_t overflow[][2] = {
        {SIZE_MAX / 2 + 1, 2}, {2, SIZE_MAX / 2 + 1}, {(size_t)1 << 32, (size_t)1 << 32},
        {SIZE_MAX, SIZE_MAX}, {SIZE_MAX, 2}, {((size_t)1 << 62) + 1, 4},
        {SIZE_MAX / 16 + 1, 16}};
    for (size_t i = 0; i < sizeof overflow / sizeof overflow[0]; i++) {
        errno = 0;
        void *ptr = calloc(overflow[i][0], overflow[i][1]);
        CHECK(ptr == NULL && errno == ENOMEM, "calloc(%#zx, %#zx) overflows: NULL, ENOMEM "
                                              "(got %p, errno %d)",
              overflow[i][0], overflow[i][1], ptr, errno);
        free(ptr);
    }
    /* Products that do not overflow but are impossible. */
    errno = 0;
    void *ptr = calloc(1, SIZE_MAX);
    CHECK(ptr == NULL && errno == ENOMEM, "calloc(1, SIZE_MAX): NULL, ENOMEM (errno %d)", errno);
    errno = 0;
    ptr = calloc((size_t)1 << 20, (size_t)1 << 27); /* 128 TiB */
    CHECK(ptr == NULL && errno == ENOMEM, "calloc(1 Mi, 128 Mi) = 128 TiB: NULL, ENOMEM (errno %d)",
          errno);
}

/* TEST_ONLY=calloc runs only the calloc part (tests/override/modes.sh). */
static int wanted(const char *part)
{
    const char *only = getenv("TEST_ONLY");
    return !only || strcmp(only, part) == 0;
}

int main(void)
{
    double start = now_seconds();

    expect_malloc_is_xmm();
    if (wanted("small")) {
        test_every_small_size();
        NOTE("small sizes done at %.1f s", now_seconds() - start);
    }
    if (wanted("large")) {
        test_large_sweep();
        NOTE("large sweep done at %.1f s", now_seconds() - start);
        test_huge();
        NOTE("large sizes done at %.1f s", now_seconds() - start);
    }
    if (wanted("calloc")) {
        test_calloc();
        NOTE("calloc done at %.1f s", now_seconds() - start);
    }
    return check_summary("malloc_sizes");
}
