/* test_slice.c - the typed helpers of xmm.h: slices and strings, including
 * every error path and that a failed call changes nothing. Linked with
 * libxmm-core.a, so malloc() here is the system's (a foreign pointer). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "xmm.h"

/* A slice that a failing call must leave byte for byte as it was. */
static struct xmm_slice sentinel_slice(void)
{
    struct xmm_slice slice;
    memset(&slice, 0xA5, sizeof(slice));
    return slice;
}

static void test_init(void)
{
    struct xmm_slice slice = sentinel_slice(), before = slice;
    CHECK(xmm_slice_init(NULL, 4, 0, 0) == -1 && errno == EINVAL, "NULL slice");
    CHECK(xmm_slice_init(&slice, 0, 0, 4) == -1 && errno == EINVAL, "elem_size 0");
    CHECK(xmm_slice_init(&slice, 4, 5, 4) == -1 && errno == EINVAL, "length > capacity");
    CHECK(xmm_slice_init(&slice, SIZE_MAX / 2, 0, 3) == -1 && errno == ENOMEM,
          "capacity * elem_size overflows");
    CHECK(xmm_slice_init(&slice, (size_t)1 << 47, 0, 1) == -1 && errno == ENOMEM,
          "128 TiB cannot be had");
    CHECK(!memcmp(&slice, &before, sizeof(slice)), "a failed init wrote the slice");

    CHECK(xmm_slice_init(&slice, 8, 0, 0) == 0 && slice.data == NULL && slice.capacity == 0,
          "capacity 0 allocates nothing");
    xmm_slice_free(&slice);

    CHECK(xmm_slice_init(&slice, sizeof(uint64_t), 10, 20) == 0, "init 10 of 20");
    CHECK(slice.length == 10 && slice.capacity == 20 && slice.elem_size == 8 && slice.data,
          "fields %zu %zu %zu", slice.length, slice.capacity, slice.elem_size);
    CHECK(xmm_usable_size(slice.data) >= 160, "block of %zu bytes", xmm_usable_size(slice.data));
    int zero = 1;
    for (size_t i = 0; i < 10; i++)
        zero &= *(uint64_t *)xmm_slice_at(&slice, i) == 0;
    CHECK(zero, "the first length elements are zeroed");
    xmm_slice_free(&slice);
}

static void test_at(void)
{
    struct xmm_slice slice;
    xmm_slice_init(&slice, sizeof(int), 3, 3);
    CHECK(xmm_slice_at(&slice, 0) == slice.data, "element 0");
    CHECK(xmm_slice_at(&slice, 2) == (char *)slice.data + 2 * sizeof(int), "element 2");
    errno = 0;
    CHECK(xmm_slice_at(&slice, 3) == NULL && errno == EINVAL, "index == length");
    errno = 0;
    CHECK(xmm_slice_at(&slice, SIZE_MAX) == NULL && errno == EINVAL, "index SIZE_MAX");
    errno = 0;
    CHECK(xmm_slice_at(NULL, 0) == NULL && errno == EINVAL, "NULL slice");
    xmm_slice_free(&slice);
}

static void test_growth(void)
{
    struct xmm_slice slice;
    xmm_slice_init(&slice, sizeof(uint32_t), 0, 0);
    for (uint32_t i = 0; i < 100000; i++) {
        size_t old_capacity = slice.capacity;
        if (xmm_slice_append(&slice, &i, 1) != 0) {
            CHECK(0, "append %u failed", i);
            break;
        }
        if (slice.capacity != old_capacity && old_capacity > 0)
            CHECK(slice.capacity >= 2 * old_capacity, "geometric: %zu -> %zu", old_capacity,
                  slice.capacity);
        CHECK(slice.capacity * slice.elem_size <= xmm_usable_size(slice.data),
              "capacity %zu beyond the block", slice.capacity);
    }
    int ordered = slice.length == 100000;
    for (uint32_t i = 0; ordered && i < 100000; i++)
        ordered = *(uint32_t *)xmm_slice_at(&slice, i) == i;
    CHECK(ordered, "100000 appended elements read back");
    xmm_slice_free(&slice);
}

/* 1000 bytes land in XMM's 1024-byte class: 24 bytes of slack, which an
 * append must use without moving the block. */
static void test_growth_in_place(void)
{
    struct xmm_slice slice;
    char bytes[1000];
    memset(bytes, 'x', sizeof(bytes));
    xmm_slice_init(&slice, 1, 0, 1000);
    void *block = slice.data;
    size_t usable = xmm_usable_size(block);
    CHECK(usable > 1000, "usable size %zu leaves slack", usable);
    xmm_slice_append(&slice, bytes, 1000);
    CHECK(slice.data == block && slice.capacity == 1000, "filled to the requested capacity");
    CHECK(xmm_slice_append(&slice, "0123456789", 10) == 0, "append into the slack");
    CHECK(slice.data == block, "grew in place");
    CHECK(slice.capacity == usable, "capacity %zu is the block's %zu", slice.capacity, usable);
    CHECK(!memcmp((char *)slice.data + 1000, "0123456789", 10), "appended bytes");
    xmm_slice_free(&slice);
}

/* Appending a slice to itself when that makes it move. */
static void test_append_from_itself(void)
{
    struct xmm_slice slice;
    xmm_slice_init(&slice, sizeof(int), 0, 64);
    for (int i = 0; i < 64; i++)
        xmm_slice_append(&slice, &i, 1);
    size_t full = slice.capacity; /* at least 64: the block may hold more */
    while (slice.length < full) {
        int filler = (int)slice.length;
        xmm_slice_append(&slice, &filler, 1);
    }
    void *old_block = slice.data;
    CHECK(xmm_slice_append(&slice, slice.data, full) == 0, "append to itself");
    CHECK(slice.data != old_block, "the block moved (so the source had to follow)");
    int same = slice.length == 2 * full;
    for (size_t i = 0; same && i < 2 * full; i++)
        same = *(int *)xmm_slice_at(&slice, i) == (int)(i % full);
    CHECK(same, "both halves are 0..%zu", full - 1);
    xmm_slice_free(&slice);
}

static void test_append_errors(void)
{
    struct xmm_slice slice;
    xmm_slice_init(&slice, 4, 1, 4);
    struct xmm_slice before = slice;
    int value = 7;
    CHECK(xmm_slice_append(&slice, NULL, 1) == -1 && errno == EINVAL, "NULL elements");
    CHECK(xmm_slice_append(&slice, NULL, 0) == 0, "nothing to append");
    CHECK(xmm_slice_append(&slice, &value, SIZE_MAX) == -1 && errno == ENOMEM,
          "length + count overflows");
    CHECK(xmm_slice_append(&slice, &value, SIZE_MAX / 2) == -1 && errno == ENOMEM,
          "count * elem_size overflows");
    CHECK(!memcmp(&slice, &before, sizeof(slice)), "failed appends changed the slice");
    struct xmm_slice unset = {0};
    CHECK(xmm_slice_append(&unset, &value, 1) == -1 && errno == EINVAL, "uninitialised");
    CHECK(xmm_slice_append(NULL, &value, 1) == -1 && errno == EINVAL, "NULL slice");
    xmm_slice_free(&slice);

    /* A huge element: the product overflows before anything is read. */
    xmm_slice_init(&slice, ((size_t)1 << 63) + 1, 0, 0);
    before = slice;
    CHECK(xmm_slice_append(&slice, &value, 2) == -1 && errno == ENOMEM, "huge elem_size x 2");
    /* One 128 TiB element fits in a size_t but in no address space. */
    xmm_slice_init(&slice, (size_t)1 << 47, 0, 0);
    before = slice;
    CHECK(xmm_slice_append(&slice, &value, 1) == -1 && errno == ENOMEM, "128 TiB element");
    CHECK(!memcmp(&slice, &before, sizeof(slice)), "failed growth changed the slice");
}

static void test_reserve_and_free(void)
{
    struct xmm_slice slice;
    xmm_slice_init(&slice, 16, 2, 2);
    CHECK(xmm_slice_reserve(&slice, 1) == 0 && slice.capacity == 2, "reserve below: no-op");
    CHECK(xmm_slice_reserve(&slice, 1000) == 0 && slice.capacity >= 1000 && slice.length == 2,
          "reserve 1000: capacity %zu", slice.capacity);
    struct xmm_slice before = slice;
    CHECK(xmm_slice_reserve(&slice, SIZE_MAX / 8) == -1 && errno == ENOMEM, "reserve overflow");
    CHECK(!memcmp(&slice, &before, sizeof(slice)), "failed reserve changed the slice");
    struct xmm_slice unset = {0};
    CHECK(xmm_slice_reserve(&unset, 1) == -1 && errno == EINVAL, "reserve uninitialised");

    xmm_slice_free(&slice);
    CHECK(!slice.data && !slice.length && !slice.capacity && slice.elem_size == 16,
          "freed slice is empty and keeps elem_size");
    char element[16] = "reused";
    CHECK(xmm_slice_append(&slice, element, 1) == 0 && !strcmp(xmm_slice_at(&slice, 0), "reused"),
          "a freed slice can be appended to");
    xmm_slice_free(&slice);
    xmm_slice_free(NULL);
}

/* Random appends of random counts against a plain array. */
static void test_random_against_reference(void)
{
    enum { TOTAL = 200000 };
    uint32_t *reference = malloc(TOTAL * sizeof(uint32_t));
    uint32_t chunk[64];
    size_t count = 0;
    unsigned long long seed = 42;
    struct xmm_slice slice;
    xmm_slice_init(&slice, sizeof(uint32_t), 0, 0);
    while (count < TOTAL - 64) {
        size_t n = next_random(&seed) % 64;
        for (size_t i = 0; i < n; i++)
            chunk[i] = reference[count + i] = (uint32_t)next_random(&seed);
        if (xmm_slice_append(&slice, chunk, n) != 0)
            break;
        count += n;
    }
    CHECK(slice.length == count, "length %zu, reference %zu", slice.length, count);
    CHECK(!memcmp(slice.data, reference, count * sizeof(uint32_t)), "contents differ");
    xmm_slice_free(&slice);
    free(reference);
}

/* ---- strings ------------------------------------------------------------- */

static void test_strcpy_into(void)
{
    char *block = xmm_malloc(16);
    size_t usable = xmm_usable_size(block);
    CHECK(xmm_strcpy_into(block, 16, "hello") == 0 && !strcmp(block, "hello"), "copy");
    CHECK(xmm_strcpy_into(block, 6, "world") == 0 && !strcmp(block, "world"), "exact fit");
    memset(block, '#', 16);
    CHECK(xmm_strcpy_into(block, 5, "world") == -1 && errno == ERANGE, "one byte short");
    CHECK(xmm_strcpy_into(block, 0, "") == -1 && errno == ERANGE, "block_size 0");
    int untouched = 1;
    for (int i = 0; i < 16; i++)
        untouched &= block[i] == '#';
    CHECK(untouched, "ERANGE wrote the block");
    CHECK(xmm_strcpy_into(block, usable + 1, "x") == -1 && errno == EINVAL,
          "block_size above the usable size");

    char on_stack[32];
    char *from_libc = malloc(32);
    CHECK(xmm_strcpy_into(on_stack, sizeof(on_stack), "x") == -1 && errno == EINVAL,
          "a stack array is not an XMM block");
    CHECK(xmm_strcpy_into(from_libc, 32, "x") == -1 && errno == EINVAL,
          "a libc block is not an XMM block");
    CHECK(xmm_strcpy_into(block + 1, 8, "x") == -1 && errno == EINVAL, "interior pointer");
    CHECK(xmm_strcpy_into(NULL, 8, "x") == -1 && errno == EINVAL, "NULL block");
    CHECK(xmm_strcpy_into(block, 8, NULL) == -1 && errno == EINVAL, "NULL text");
    free(from_libc);

    /* A long text is not read past what could fit. */
    size_t long_length = (size_t)1 << 20;
    char *long_text = xmm_malloc(long_length + 1);
    memset(long_text, 'a', long_length);
    long_text[long_length] = '\0';
    CHECK(xmm_strcpy_into(block, 16, long_text) == -1 && errno == ERANGE, "1 MiB into 16");
    xmm_free(long_text);

    strcpy(block, "abcdef");
    CHECK(xmm_strcpy_into(block, 16, block + 2) == 0 && !strcmp(block, "cdef"),
          "overlapping copy: %s", block);
    xmm_free(block);
}

static void test_strcat_into(void)
{
    char *block = xmm_malloc(16);
    xmm_strcpy_into(block, 16, "foo");
    CHECK(xmm_strcat_into(block, 16, "bar") == 0 && !strcmp(block, "foobar"), "cat");
    CHECK(xmm_strcat_into(block, 16, "123456789") == 0 && !strcmp(block, "foobar123456789"),
          "cat to exactly 16 bytes");
    CHECK(xmm_strcat_into(block, 16, "!") == -1 && errno == ERANGE &&
              !strcmp(block, "foobar123456789"),
          "one more does not fit, block unchanged");
    xmm_strcpy_into(block, 16, "ab");
    CHECK(xmm_strcat_into(block, 16, block) == 0 && !strcmp(block, "abab"), "cat to itself");
    memset(block, 'z', 16);
    CHECK(xmm_strcat_into(block, 16, "x") == -1 && errno == EINVAL, "no NUL in the block");
    CHECK(xmm_strcat_into(block, 17 + xmm_usable_size(block), "x") == -1 && errno == EINVAL,
          "block_size above the usable size");
    xmm_free(block);
}

static void test_strconcat_and_free(void)
{
    char *joined = xmm_strconcat("numa-", "aware");
    CHECK(joined && !strcmp(joined, "numa-aware"), "concat");
    CHECK(xmm_node_of(joined) >= 0 && xmm_usable_size(joined) >= 11, "an XMM block");
    xmm_string_free(joined);
    joined = xmm_strconcat("", "");
    CHECK(joined && joined[0] == '\0', "empty + empty");
    xmm_string_free(joined);
    errno = 0;
    CHECK(xmm_strconcat(NULL, "x") == NULL && errno == EINVAL, "NULL first");
    errno = 0;
    CHECK(xmm_strconcat("x", NULL) == NULL && errno == EINVAL, "NULL second");
    xmm_string_free(xmm_strdup("from strdup"));
    xmm_string_free(xmm_strndup("from strndup", 4));
    xmm_string_free(NULL);
}

int main(void)
{
    test_init();
    test_at();
    test_growth();
    test_growth_in_place();
    test_append_from_itself();
    test_append_errors();
    test_reserve_and_free();
    test_random_against_reference();
    test_strcpy_into();
    test_strcat_into();
    test_strconcat_and_free();
    return check_summary("test_slice");
}
