/*
 * slice.c - the typed helpers of include/xmm.h: Go-like slices and string
 * copies into XMM blocks, on the public xmm_* API only.
 *
 * Every size computation is checked: a product or sum that overflows is
 * ENOMEM before anything is allocated or written, and a failed call leaves
 * its arguments as they were.
 */
#include <errno.h>
#include <string.h>

#include "library.h"

static int fail(int error)
{
    errno = error;
    return -1;
}

/* ---- slices ------------------------------------------------------------ */

/* `count` elements in bytes; false if that does not fit in a size_t. */
static bool bytes_for(const struct xmm_slice *slice, size_t count, size_t *bytes)
{
    return !__builtin_mul_overflow(count, slice->elem_size, bytes);
}

/* Elements the slice's block can hold: its usable size, which the size
 * class may make larger than what was asked for. */
static size_t block_capacity(const struct xmm_slice *slice)
{
    return slice->data ? xmm_usable_size(slice->data) / slice->elem_size : 0;
}

/* Ensures room for `needed` elements, reallocating to `target` (>= needed)
 * elements when the block's own slack is not enough. If `target` overflows
 * in bytes, `needed` is tried instead: doubling must not turn a request
 * that fits into an ENOMEM. */
static int grow(struct xmm_slice *slice, size_t needed, size_t target)
{
    if (needed <= slice->capacity)
        return 0;
    size_t in_block = block_capacity(slice);
    if (needed <= in_block) {
        slice->capacity = in_block; /* in place: the block already had room */
        return 0;
    }
    size_t bytes;
    if (!bytes_for(slice, target, &bytes) && !bytes_for(slice, needed, &bytes))
        return fail(ENOMEM);
    void *grown = xmm_realloc(slice->data, bytes);
    if (!grown)
        return fail(ENOMEM); /* xmm_realloc kept the old block */
    slice->data = grown;
    slice->capacity = xmm_usable_size(grown) / slice->elem_size;
    return 0;
}

XMM_EXPORT int xmm_slice_init(struct xmm_slice *slice, size_t elem_size, size_t length,
                              size_t capacity)
{
    if (!slice || elem_size == 0 || length > capacity)
        return fail(EINVAL);
    struct xmm_slice fresh = {NULL, length, capacity, elem_size};
    size_t bytes;
    if (!bytes_for(&fresh, capacity, &bytes))
        return fail(ENOMEM);
    if (capacity > 0) {
        fresh.data = xmm_malloc(bytes);
        if (!fresh.data)
            return -1; /* ENOMEM from xmm_malloc */
        memset(fresh.data, 0, length * elem_size); /* length <= capacity: no overflow */
    }
    *slice = fresh;
    return 0;
}

XMM_EXPORT int xmm_slice_reserve(struct xmm_slice *slice, size_t capacity)
{
    if (!slice || slice->elem_size == 0)
        return fail(EINVAL);
    return grow(slice, capacity, capacity);
}

/* Offset of `address` in the slice's block, or SIZE_MAX if it lies
 * outside: an append from the slice into itself must follow the block when
 * growth moves it. */
static size_t offset_in_block(const struct xmm_slice *slice, const void *address)
{
    uintptr_t offset = (uintptr_t)address - (uintptr_t)slice->data;
    if (!slice->data || offset >= slice->capacity * slice->elem_size)
        return SIZE_MAX;
    return offset;
}

XMM_EXPORT int xmm_slice_append(struct xmm_slice *slice, const void *elements, size_t count)
{
    if (!slice || slice->elem_size == 0 || (count > 0 && !elements))
        return fail(EINVAL);
    if (count == 0)
        return 0;
    size_t needed;
    if (__builtin_add_overflow(slice->length, count, &needed))
        return fail(ENOMEM);
    size_t doubled = slice->capacity > SIZE_MAX / 2 ? needed : slice->capacity * 2;
    size_t source_offset = offset_in_block(slice, elements);
    if (grow(slice, needed, doubled > needed ? doubled : needed) != 0)
        return -1;
    const char *source = source_offset == SIZE_MAX ? elements
                                                   : (const char *)slice->data + source_offset;
    /* needed <= capacity now, so these products fit. */
    memmove((char *)slice->data + slice->length * slice->elem_size, source,
            count * slice->elem_size);
    slice->length = needed;
    return 0;
}

XMM_EXPORT void *xmm_slice_at(const struct xmm_slice *slice, size_t index)
{
    if (!slice || index >= slice->length) {
        errno = EINVAL;
        return NULL;
    }
    return (char *)slice->data + index * slice->elem_size;
}

XMM_EXPORT void xmm_slice_free(struct xmm_slice *slice)
{
    if (!slice)
        return;
    xmm_free(slice->data);
    slice->data = NULL;
    slice->length = 0;
    slice->capacity = 0;
}

/* ---- strings ----------------------------------------------------------- */

/* Checks that the caller's `block_size` bytes at `block` lie in one XMM
 * block that starts at `block`. xmm_node_of is asked first because it
 * answers -1 for a foreign pointer, where xmm_usable_size would report it
 * as an invalid free (and abort). */
static int check_block(const char *block, size_t block_size, const char *text)
{
    if (!block || !text || xmm_node_of(block) == -1) /* -2: interleaved, XMM's */
        return fail(EINVAL);
    if (block_size > xmm_usable_size(block))
        return fail(EINVAL);
    return 0;
}

XMM_EXPORT int xmm_strcpy_into(char *block, size_t block_size, const char *text)
{
    if (check_block(block, block_size, text) != 0)
        return -1;
    /* strnlen: never reads more of `text` than could fit. */
    size_t length = strnlen(text, block_size);
    if (length >= block_size)
        return fail(ERANGE);
    memmove(block, text, length + 1); /* text may lie inside the block */
    return 0;
}

XMM_EXPORT int xmm_strcat_into(char *block, size_t block_size, const char *text)
{
    if (check_block(block, block_size, text) != 0)
        return -1;
    size_t used = strnlen(block, block_size);
    if (used == block_size)
        return fail(EINVAL); /* no terminated string to append to */
    size_t room = block_size - used;
    size_t length = strnlen(text, room);
    if (length >= room)
        return fail(ERANGE);
    memmove(block + used, text, length + 1);
    return 0;
}

XMM_EXPORT char *xmm_strconcat(const char *first, const char *second)
{
    if (!first || !second) {
        errno = EINVAL;
        return NULL;
    }
    size_t first_length = strlen(first);
    size_t second_length = strlen(second);
    size_t bytes;
    if (__builtin_add_overflow(first_length, second_length, &bytes) ||
        __builtin_add_overflow(bytes, 1, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    char *joined = xmm_malloc(bytes);
    if (!joined)
        return NULL;
    memcpy(joined, first, first_length);
    memcpy(joined + first_length, second, second_length + 1);
    return joined;
}

XMM_EXPORT void xmm_string_free(char *string)
{
    xmm_free(string);
}
