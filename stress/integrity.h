/*
 * integrity.h - filling blocks with a recognisable pattern, checking it,
 * and recording the first failure of the run.
 *
 * A block's pattern is derived from its address, size, owner thread and
 * the owner's allocation serial number, so a block handed out twice, a
 * stale write through a freed pointer, or a copy that realloc got wrong
 * all show up as a byte that does not match.
 */
#ifndef STRESS_INTEGRITY_H
#define STRESS_INTEGRITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Blocks up to this size are filled and checked completely. */
#define FULL_CHECK_LIMIT 4096
/* Larger blocks: this many bytes at each end, and one word per page. */
#define EDGE_BYTES 64
#define PAGE_STRIDE 4096

/* Thread id used for checks done by the main thread (final drain). */
#define MAIN_THREAD_ID (-1)

struct block {
    unsigned char *ptr;
    size_t size;            /* bytes requested */
    uint64_t seed;          /* of the fill pattern */
    int owner;              /* thread that allocated it */
};

uint64_t block_seed(const void *ptr, size_t size, int owner, uint64_t serial);

/* Writes the pattern of `seed` over the sampled bytes of a block. */
void block_fill(unsigned char *ptr, size_t size, uint64_t seed);

/* Checks the sampled bytes of a block of `size` bytes that lie below
 * `limit` against `seed`. Returns true when they match; otherwise stores
 * the first bad offset in *bad_offset. */
bool block_matches(const unsigned char *ptr, size_t size, size_t limit, uint64_t seed,
                   size_t *bad_offset);

/* Checks the sampled bytes of a fresh calloc block are zero. */
bool block_zeroed(const unsigned char *ptr, size_t size, size_t *bad_offset);

/* The byte the pattern of `seed` puts at `offset`. */
unsigned char pattern_byte(uint64_t seed, size_t offset);

/* The alignment C guarantees for an object of `size` bytes: the largest
 * power of two dividing it, at most 16. */
size_t required_alignment(size_t size);

/* ---- the run's verdict -------------------------------------------------- */

enum failure_kind {
    FAILURE_NONE,
    FAILURE_CORRUPTION,     /* a block's contents, alignment or size */
    FAILURE_ALLOCATION,     /* a request that should succeed returned NULL */
};

/* Records a corrupted byte (the first failure wins), prints it on stderr
 * and makes every worker stop. `during` says which check found it. */
void report_corruption(const struct block *block, int finder, size_t offset,
                       unsigned char found, unsigned char expected, const char *during);

/* Records another failure with a printf-style description. */
void report_failure(enum failure_kind kind, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

bool run_failed(void);
enum failure_kind failure_kind(void);
const char *failure_message(void);

/* "thread 3" or "the main thread", for messages. */
const char *thread_label(int id, char *buffer, size_t size);

#endif
