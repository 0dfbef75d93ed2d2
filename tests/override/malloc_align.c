/*
 * malloc_align.c - posix_memalign, aligned_alloc, memalign, valloc, pvalloc
 * and free_aligned_sized.
 *
 * Every power-of-two alignment from 1 B to 1 GiB with sizes around it;
 * EINVAL for alignments that are not powers of two (and, for
 * posix_memalign, below sizeof(void *)); page alignment for valloc and
 * page-rounded usable size for pvalloc; ENOMEM when size plus alignment
 * overflows.
 */
#include <immintrin.h>

#include "xmm.h"
#include "testlib.h"

static size_t page_size;

/* Checks one aligned block: non-NULL, aligned, usable, an XMM block, and
 * its bytes writable (all of them up to 1 MiB, else the first and last
 * 64 KiB). Returns 1 if all held. */
static int check_aligned_block(const char *function, void *ptr, size_t alignment, size_t size)
{
    if (!ptr) {
        CHECKQ(0, "%s(alignment %zu, size %zu) != NULL (errno %d)", function, alignment, size,
               errno);
        return 0;
    }
    size_t usable = malloc_usable_size(ptr);
    int good = 1;
    CHECKQ(is_aligned(ptr, alignment), "%s(alignment %zu, size %zu) = %p is aligned", function,
           alignment, size, ptr);
    CHECKQ(is_aligned(ptr, expected_alignment(size)),
           "%s(alignment %zu, size %zu) = %p also has malloc's alignment for the size",
           function, alignment, size, ptr);
    CHECKQ(usable >= size, "%s(alignment %zu, size %zu): usable %zu", function, alignment, size,
           usable);
    CHECKQ(xmm_node_of(ptr) >= 0, "%s(alignment %zu, size %zu) is an XMM block", function,
           alignment, size);
    good = is_aligned(ptr, alignment) && is_aligned(ptr, expected_alignment(size)) &&
           usable >= size && xmm_node_of(ptr) >= 0;
    if (usable < size)
        usable = size;
    uint64_t seed = pattern_seed(ptr, size);
    if (usable <= MIB) {
        pattern_fill(ptr, usable, seed);
        good &= pattern_find(ptr, usable, seed) == SIZE_MAX;
    } else {
        unsigned char *bytes = ptr;
        pattern_fill(bytes, 64 * KIB, seed);
        pattern_fill(bytes + usable - 64 * KIB, 64 * KIB, seed);
        good &= pattern_find(bytes, 64 * KIB, seed) == SIZE_MAX &&
                pattern_find(bytes + usable - 64 * KIB, 64 * KIB, seed) == SIZE_MAX;
    }
    return good;
}

/* The sizes tried with `alignment`: small, around the alignment, not too
 * large to keep the test fast, and 0. */
static size_t sizes_for(size_t alignment, size_t sizes[8])
{
    size_t count = 0;
    sizes[count++] = 1;
    sizes[count++] = 100;
    sizes[count++] = alignment;
    if (alignment <= 64 * MIB) {
        sizes[count++] = alignment + 1;
        sizes[count++] = alignment / 2 + 8;
        sizes[count++] = 3 * alignment + 48;
    } else {
        sizes[count++] = 4096;
    }
    sizes[count++] = 0; /* last: a failure there hides nothing */
    return count;
}

/* One function at one alignment, all its sizes: run in its own child so
 * that an abort at one alignment does not hide the others. */
enum aligned_function { POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN };
static const char *const function_names[] = {"posix_memalign", "aligned_alloc", "memalign"};
static enum aligned_function current_function;
static size_t current_alignment;

static void test_one_alignment(void)
{
    size_t alignment = current_alignment, sizes[8], count = sizes_for(alignment, sizes);
    const char *name = function_names[current_function];
    size_t good = 0;

    for (size_t i = 0; i < count; i++) {
        void *ptr = NULL;
        errno = 0;
        if (current_function == POSIX_MEMALIGN) {
            ptr = (void *)1;
            int error = posix_memalign(&ptr, alignment, sizes[i]);
            CHECKQ(error == 0, "posix_memalign(%zu, %zu) returns 0 (got %d)", alignment,
                   sizes[i], error);
            if (error != 0)
                continue;
        } else if (current_function == ALIGNED_ALLOC) {
            ptr = aligned_alloc(alignment, sizes[i]);
        } else {
            ptr = memalign(alignment, sizes[i]);
        }
        good += check_aligned_block(name, ptr, alignment, sizes[i]);
        /* C23: a block from aligned_alloc may go to free_aligned_sized. */
        if (current_function == ALIGNED_ALLOC && ptr && i % 2 == 0)
            free_aligned_sized(ptr, alignment, sizes[i]);
        else
            free(ptr);
    }
    CHECK(good == count, "%s at alignment %zu: sizes 0, 1, 100 and around the alignment: "
                         "aligned, usable, writable (%zu of %zu)%s",
          name, alignment, good, count,
          current_function == ALIGNED_ALLOC ? ", half freed with free_aligned_sized" : "");
}

static void test_alignments(enum aligned_function function)
{
    char name[64];
    for (size_t alignment = function == POSIX_MEMALIGN ? sizeof(void *) : 1; alignment <= GIB;
         alignment <<= 1) {
        current_function = function;
        current_alignment = alignment;
        snprintf(name, sizeof name, "%s, alignment %zu", function_names[function], alignment);
        run_section(name, test_one_alignment);
    }
}

static void test_posix_memalign(void)
{
    static const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4095, 12288, MIB + 8,
                                 GIB - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *ptr = NULL;
        int error = posix_memalign(&ptr, bad[i], 64);
        CHECK(error == EINVAL, "posix_memalign(alignment %zu, 64) returns EINVAL (got %d)",
              bad[i], error);
        if (error == 0)
            free(ptr);
    }

    void *ptr = NULL;
    int error = posix_memalign(&ptr, 64, SIZE_MAX);
    CHECK(error == ENOMEM, "posix_memalign(64, SIZE_MAX) returns ENOMEM (got %d)", error);
    error = posix_memalign(&ptr, GIB, SIZE_MAX - GIB / 2);
    CHECK(error == ENOMEM, "posix_memalign(1 GiB, SIZE_MAX - 512 MiB) returns ENOMEM (got %d)",
          error);
    error = posix_memalign(&ptr, 4096, (size_t)PTRDIFF_MAX + 1);
    CHECK(error == ENOMEM, "posix_memalign(4096, PTRDIFF_MAX + 1) returns ENOMEM (got %d)", error);

    /* Many live blocks of one alignment: distinct and not overlapping. */
    enum { MANY = 2000 };
    static void *blocks[MANY];
    size_t bad_blocks = 0;
    for (int i = 0; i < MANY; i++) {
        if (posix_memalign(&blocks[i], 64, 80) != 0) {
            blocks[i] = NULL;
            bad_blocks++;
            continue;
        }
        if (!is_aligned(blocks[i], 64))
            bad_blocks++;
        pattern_fill(blocks[i], 80, pattern_seed(blocks[i], 80));
    }
    for (int i = 0; i < MANY; i++) {
        if (blocks[i] && pattern_find(blocks[i], 80, pattern_seed(blocks[i], 80)) != SIZE_MAX)
            bad_blocks++;
        free(blocks[i]);
    }
    CHECK(bad_blocks == 0, "%d live posix_memalign(64, 80) blocks: aligned, not overlapping", MANY);
}

static void test_aligned_alloc(void)
{
    static const size_t bad[] = {0, 3, 12, 24, 48, 100, 4095, 12288, MIB + 8, GIB - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        void *ptr = aligned_alloc(bad[i], 64);
        CHECK(ptr == NULL && errno == EINVAL,
              "aligned_alloc(alignment %zu, 64): NULL, EINVAL (got %p, errno %d)", bad[i], ptr,
              errno);
        free(ptr);
    }

    errno = 0;
    void *ptr = aligned_alloc(GIB, SIZE_MAX - GIB / 2);
    CHECK(ptr == NULL && errno == ENOMEM,
          "aligned_alloc(1 GiB, SIZE_MAX - 512 MiB): NULL, ENOMEM (errno %d)", errno);
    errno = 0;
    ptr = aligned_alloc(64, SIZE_MAX - 10);
    CHECK(ptr == NULL && errno == ENOMEM, "aligned_alloc(64, SIZE_MAX - 10): NULL, ENOMEM (errno %d)",
          errno);
    /* A power of two no mapping can honour: fails cleanly. Through a
     * volatile, so that the compiler does not judge the constant against
     * the header's alloc_align attribute (clang warns past 2^32). */
    volatile size_t huge_alignment = (size_t)1 << 62;
    errno = 0;
    ptr = aligned_alloc(huge_alignment, 16);
    CHECK(ptr == NULL && (errno == ENOMEM || errno == EINVAL),
          "aligned_alloc(2^62, 16): NULL with ENOMEM or EINVAL (got %p, errno %d)", ptr, errno);
    errno = 0;
    huge_alignment = (size_t)1 << 63;
    ptr = aligned_alloc(huge_alignment, 16);
    CHECK(ptr == NULL && (errno == ENOMEM || errno == EINVAL),
          "aligned_alloc(2^63, 16): NULL with ENOMEM or EINVAL (got %p, errno %d)", ptr, errno);
}

static void test_memalign(void)
{
    /* Not a power of two: glibc rounds the alignment up; failing with
     * EINVAL is the other reasonable answer. Anything else is wrong. */
    static const size_t odd[] = {24, 48, 100, 12288};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        size_t power = 1;
        while (power < odd[i])
            power <<= 1;
        errno = 0;
        void *ptr = memalign(odd[i], 64);
        CHECK((ptr == NULL && errno == EINVAL) || (ptr != NULL && is_aligned(ptr, power)),
              "memalign(%zu, 64): EINVAL, or aligned to %zu (got %p, errno %d)", odd[i], power,
              ptr, errno);
        free(ptr);
    }
    errno = 0;
    void *ptr = memalign(4096, SIZE_MAX - 4000);
    CHECK(ptr == NULL && errno == ENOMEM, "memalign(4096, SIZE_MAX - 4000): NULL, ENOMEM (errno %d)",
          errno);
}

static void test_valloc_pvalloc(void)
{
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 8191, 8193, 100000, 10 * MIB + 1};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t size = sizes[i];
        void *ptr = valloc(size);
        CHECK(check_aligned_block("valloc", ptr, page_size, size),
              "valloc(%zu) is page-aligned (%p), usable, writable", size, ptr);
        free(ptr);

        size_t rounded = (size + page_size - 1) / page_size * page_size;
        ptr = pvalloc(size);
        CHECK(check_aligned_block("pvalloc", ptr, page_size, rounded),
              "pvalloc(%zu) is page-aligned (%p) with %zu usable bytes >= %zu (the size rounded "
              "up to pages), all writable",
              size, ptr, ptr ? malloc_usable_size(ptr) : 0, rounded);
        free(ptr);
    }
    errno = 0;
    void *ptr = valloc(SIZE_MAX);
    CHECK(ptr == NULL && errno == ENOMEM, "valloc(SIZE_MAX): NULL, ENOMEM (errno %d)", errno);
    errno = 0;
    ptr = valloc(SIZE_MAX - page_size);
    CHECK(ptr == NULL && errno == ENOMEM, "valloc(SIZE_MAX - page): NULL, ENOMEM (errno %d)",
          errno);
    /* Rounding SIZE_MAX - 100 up to a page overflows. */
    errno = 0;
    ptr = pvalloc(SIZE_MAX - 100);
    CHECK(ptr == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX - 100): NULL, ENOMEM (got %p, errno %d)",
          ptr, errno);
    errno = 0;
    ptr = pvalloc(SIZE_MAX);
    CHECK(ptr == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX): NULL, ENOMEM (got %p, errno %d)", ptr,
          errno);
}

/* Aligned blocks behave as ordinary blocks afterwards: realloc keeps the
 * contents, usable size is right, and freeing works from another size
 * class. */
static void test_aligned_then_realloc(void)
{
    size_t good = 0, tried = 0;

    for (size_t alignment = 32; alignment <= 4 * MIB; alignment <<= 2) {
        void *ptr = aligned_alloc(alignment, 200);
        if (!ptr) {
            CHECK(0, "aligned_alloc(%zu, 200)", alignment);
            continue;
        }
        pattern_fill(ptr, 200, alignment);
        void *moved = realloc(ptr, 300000);
        tried++;
        if (moved && pattern_find(moved, 200, alignment) == SIZE_MAX)
            good++;
        free(moved ? moved : ptr);
    }
    CHECK(good == tried, "realloc of aligned blocks keeps their contents (%zu of %zu)", good, tried);
}

/* C17 7.22.3: malloc's result suits any type with fundamental alignment
 * whose size fits. A struct of one __m128 and a flexible array needs 16
 * bytes of alignment at any size above 16; it is written here with an
 * aligned store, which faults on an 8-byte-aligned block. Every size from
 * 9 to 1024 bytes, many blocks each (consecutive blocks of a size class
 * alternate between the two 8-byte phases if the class is not a multiple
 * of 16), through malloc, calloc and realloc. */
struct vector_record {
    __m128 value;
    char tail[];
};

static void test_fundamental_alignment(void)
{
    enum { BLOCKS = 32 };
    size_t misaligned = 0, tried = 0;
    void *blocks[BLOCKS];

    for (size_t size = 9; size <= 1024; size++) {
        for (int i = 0; i < BLOCKS; i++) {
            blocks[i] = (i % 3 == 0) ? malloc(size) : (i % 3 == 1) ? calloc(1, size)
                                                                   : realloc(NULL, size);
            tried++;
            if (!blocks[i] || !is_aligned(blocks[i], 16)) {
                if (misaligned++ < 5)
                    CHECKQ(0, "block %d of %zu bytes = %p is 16-byte aligned", i, size, blocks[i]);
                continue;
            }
            if (size >= sizeof(struct vector_record) + 4) {
                struct vector_record *record = blocks[i];
                _mm_store_ps((float *)&record->value, _mm_set1_ps((float)size));
                record->tail[3] = 'x';
            }
        }
        for (int i = 0; i < BLOCKS; i++)
            if (blocks[i] && is_aligned(blocks[i], 16))
                free(blocks[i]);
    }
    CHECK(misaligned == 0, "%zu of %zu blocks of 9-1024 bytes are not 16-byte aligned", misaligned,
          tried);
}

int main(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    expect_malloc_is_xmm();
    run_section("16-byte alignment from 9 bytes up, aligned SSE stores", test_fundamental_alignment);
    test_alignments(POSIX_MEMALIGN);
    run_section("posix_memalign: bad alignments, overflow, many blocks", test_posix_memalign);
    test_alignments(ALIGNED_ALLOC);
    run_section("aligned_alloc: bad alignments, overflow", test_aligned_alloc);
    test_alignments(MEMALIGN);
    run_section("memalign: odd alignments, overflow", test_memalign);
    run_section("valloc and pvalloc", test_valloc_pvalloc);
    run_section("realloc of aligned blocks", test_aligned_then_realloc);
    return check_summary("malloc_align");
}
