/*
 * integrity.c - fill patterns, checks, and the first failure of the run.
 */
#include "integrity.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define GOLDEN 0x9E3779B97F4A7C15ull

uint64_t block_seed(const void *ptr, size_t size, int owner, uint64_t serial)
{
    uint64_t z = (uint64_t)(uintptr_t)ptr ^ (size * GOLDEN) ^ ((uint64_t)(uint32_t)owner << 48)
                 ^ (serial * 0xD6E8FEB86659FD93ull);
    z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 29);
}

/* The pattern word for the 8 bytes at word-aligned `offset`: cheap (one
 * multiply) and different at every offset, so a shifted copy is caught. */
static inline uint64_t pattern_word(uint64_t seed, size_t offset)
{
    return seed ^ ((uint64_t)offset * GOLDEN);
}

unsigned char pattern_byte(uint64_t seed, size_t offset)
{
    uint64_t word = pattern_word(seed, offset & ~(size_t)7);
    return (unsigned char)(word >> (8 * (offset & 7)));
}

size_t required_alignment(size_t size)
{
    size_t lowest_bit = size & -size;
    return lowest_bit == 0 || lowest_bit > 16 ? 16 : lowest_bit;
}

/* ---- which bytes are sampled ------------------------------------------------
 * A cursor walks the ranges of a block that carry the pattern: the whole
 * block up to FULL_CHECK_LIMIT, else both edges and a word per page (which
 * also proves every page is really there), clipped to a limit. */

struct range_cursor {
    size_t size, limit;
    size_t next_page;       /* offset of the next per-page word */
    int stage;              /* 0 head/whole, 1 pages, 2 tail, 3 done */
};

static bool clip(const struct range_cursor *cursor, size_t *from, size_t *to)
{
    if (*from >= cursor->limit)
        return false;
    if (*to > cursor->limit)
        *to = cursor->limit;
    return true;
}

static bool next_range(struct range_cursor *cursor, size_t *from, size_t *to)
{
    size_t size = cursor->size;
    while (cursor->stage < 3) {
        if (cursor->stage == 0) {
            cursor->stage = size <= FULL_CHECK_LIMIT ? 3 : 1;
            *from = 0;
            *to = size <= FULL_CHECK_LIMIT ? size : EDGE_BYTES;
        } else if (cursor->stage == 1) {
            size_t page = cursor->next_page;
            if (page + 8 > size - EDGE_BYTES) {
                cursor->stage = 2;
                continue;
            }
            cursor->next_page += PAGE_STRIDE;
            *from = page;
            *to = page + 8;
        } else {
            cursor->stage = 3;
            *from = size - EDGE_BYTES;
            *to = size;
        }
        if (clip(cursor, from, to))
            return true;
    }
    return false;
}

static void start_cursor(struct range_cursor *cursor, size_t size, size_t limit)
{
    cursor->size = size;
    cursor->limit = limit;
    cursor->next_page = PAGE_STRIDE;
    cursor->stage = 0;
}

/* ---- fill and check ----------------------------------------------------- */

static void fill_range(unsigned char *ptr, size_t from, size_t to, uint64_t seed)
{
    size_t offset = from;
    for (; offset < to && (offset & 7); offset++)
        ptr[offset] = pattern_byte(seed, offset);
    for (; offset + 8 <= to; offset += 8) {
        uint64_t word = pattern_word(seed, offset);
        memcpy(ptr + offset, &word, 8);
    }
    for (; offset < to; offset++)
        ptr[offset] = pattern_byte(seed, offset);
}

static bool bytes_match(const unsigned char *ptr, size_t from, size_t to, uint64_t seed,
                        size_t *bad_offset)
{
    for (size_t offset = from; offset < to; offset++) {
        if (ptr[offset] != pattern_byte(seed, offset)) {
            *bad_offset = offset;
            return false;
        }
    }
    return true;
}

static bool range_matches(const unsigned char *ptr, size_t from, size_t to, uint64_t seed,
                          size_t *bad_offset)
{
    size_t offset = from;
    size_t head_end = (from + 7) & ~(size_t)7;
    if (head_end > to)
        head_end = to;
    if (!bytes_match(ptr, offset, head_end, seed, bad_offset))
        return false;
    for (offset = head_end; offset + 8 <= to; offset += 8) {
        uint64_t word;
        memcpy(&word, ptr + offset, 8);
        if (word != pattern_word(seed, offset))
            return bytes_match(ptr, offset, offset + 8, seed, bad_offset);
    }
    return bytes_match(ptr, offset, to, seed, bad_offset);
}

void block_fill(unsigned char *ptr, size_t size, uint64_t seed)
{
    struct range_cursor cursor;
    size_t from, to;
    start_cursor(&cursor, size, size);
    while (next_range(&cursor, &from, &to))
        fill_range(ptr, from, to, seed);
}

bool block_matches(const unsigned char *ptr, size_t size, size_t limit, uint64_t seed,
                   size_t *bad_offset)
{
    struct range_cursor cursor;
    size_t from, to;
    start_cursor(&cursor, size, limit);
    while (next_range(&cursor, &from, &to))
        if (!range_matches(ptr, from, to, seed, bad_offset))
            return false;
    return true;
}

bool block_zeroed(const unsigned char *ptr, size_t size, size_t *bad_offset)
{
    struct range_cursor cursor;
    size_t from, to;
    start_cursor(&cursor, size, size);
    while (next_range(&cursor, &from, &to)) {
        for (size_t offset = from; offset < to; offset++) {
            if (ptr[offset]) {
                *bad_offset = offset;
                return false;
            }
        }
    }
    return true;
}

/* ---- the first failure ------------------------------------------------------
 * Workers race to report; the first one to claim `failure_claimed` writes
 * the message, then publishes the kind. Later reports are dropped: after
 * one corruption the heap cannot be trusted to tell us more. */

static atomic_bool failure_claimed;
static _Atomic enum failure_kind recorded_kind = FAILURE_NONE;
static char recorded_message[512];

const char *thread_label(int id, char *buffer, size_t size)
{
    if (id == MAIN_THREAD_ID)
        snprintf(buffer, size, "the main thread");
    else
        snprintf(buffer, size, "thread %d", id);
    return buffer;
}

void report_failure(enum failure_kind kind, const char *format, ...)
{
    va_list args;
    if (atomic_exchange(&failure_claimed, true))
        return;
    va_start(args, format);
    vsnprintf(recorded_message, sizeof recorded_message, format, args);
    va_end(args);
    fprintf(stderr, "xmm-stress: %s\n", recorded_message);
    atomic_store_explicit(&recorded_kind, kind, memory_order_release);
}

void report_corruption(const struct block *block, int finder, size_t offset,
                       unsigned char found, unsigned char expected, const char *during)
{
    char owner[32], finder_label[32];
    report_failure(FAILURE_CORRUPTION,
                   "CORRUPTION: block %p (size %zu, owner %s) found by %s %s: "
                   "byte %zu is 0x%02x, expected 0x%02x",
                   (void *)block->ptr, block->size, thread_label(block->owner, owner, sizeof owner),
                   thread_label(finder, finder_label, sizeof finder_label), during, offset,
                   found, expected);
}

bool run_failed(void)
{
    return atomic_load_explicit(&failure_claimed, memory_order_relaxed);
}

enum failure_kind failure_kind(void)
{
    return atomic_load_explicit(&recorded_kind, memory_order_acquire);
}

const char *failure_message(void)
{
    return failure_kind() == FAILURE_NONE ? NULL : recorded_message;
}
