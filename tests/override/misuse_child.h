/*
 * misuse_child.h - the child side of tests/override/heap_misuse.c (C) and of
 * tests/override/heap_misuse_cxx.cc (C++): what a child does before and after
 * its one misuse of the heap. Compiles as C and as C++ (no testlib.h: it is
 * C only).
 *
 * A child is the test program re-executed with `--case NAME`:
 *   misuse_child_begin(pin)   stdout line-buffered into a static buffer (no
 *                             malloc for it), an alarm, the process pinned
 *                             to the CPU it runs on (so that every free of
 *                             a single-threaded case meets the same per-CPU
 *                             cache), then "FRONT per-cpu|per-thread"
 *   misuse_announce(p)        "PTR 0x..." : the address the report must name
 *   misuse_hold(p, size)      a block the case keeps live: counted in the
 *                             checks below
 *   misuse_forged(p, size)    an address range no allocation may return
 *                             (the overflow cases); any allocation inside it
 *                             prints "RETURNED_FORGED 0x..."
 *   misuse_child_finish(size) reached only when the child survived its
 *                             misuse: "CONTINUED", then
 *     - DISTINCT ok|bad: enough blocks of `size` to go through every free
 *       object of its class (caches, central batches, span lists), their
 *       contents written and checked, none overlapping another or a held
 *       block: a block put twice on a free list shows up here;
 *     - when the parent asks (under XMM_INVALID_FREE=warn), CHURN ok|bad: a million
 *       allocations of random small sizes (a quarter of them of `size`),
 *       a working set of 4096 live blocks, each block's head and tail
 *       written with a pattern and checked before its free, and no address
 *       handed out while it is live (a hash set of live addresses);
 *     - INVALID_FREES n (xmm_stats invalid_frees at the end; before the
 *       checks it prints INVALID_FREES_AT_MISUSE n: what the misuse itself
 *       drew), DONE.
 */
#ifndef XMM_TEST_MISUSE_CHILD_H
#define XMM_TEST_MISUSE_CHILD_H

#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xmm.h"

#define MISUSE_UNUSED __attribute__((unused))

/* Through volatile pointers: the compiler must neither warn about nor
 * reason about the misuse. */
static void (*volatile misuse_free)(void *) = free;
static void *(*volatile misuse_realloc)(void *, size_t) = realloc;
static size_t (*volatile misuse_usable_size)(void *) = malloc_usable_size;

/* Exit status of a child whose set-up failed (not a verdict on XMM). */
#define MISUSE_SETUP_FAILED 3

/* Set by the child's main from its arguments (`--case NAME churn`): the
 * parent asks for the churn under XMM_INVALID_FREE=warn for the inputs XMM
 * must report (the controls and the undetected cases do without it). */
static int misuse_churn_wanted;

MISUSE_UNUSED static void misuse_setup_failed(const char *what)
{
    printf("SETUP %s\n", what);
    fflush(stdout);
    _exit(MISUSE_SETUP_FAILED);
}

MISUSE_UNUSED static void *misuse_malloc(size_t size)
{
    void *block = malloc(size);
    if (!block)
        misuse_setup_failed("malloc failed");
    return block;
}

MISUSE_UNUSED static int misuse_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

static void misuse_child_begin(int pin)
{
    static char out_buffer[16384];
    setvbuf(stdout, out_buffer, _IOLBF, sizeof out_buffer);
    alarm(25);
    if (pin) {
        int cpu = sched_getcpu();
        if (cpu >= 0)
            misuse_pin(cpu);
    }
    struct xmm_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.version = XMM_STATS_VERSION;
    xmm_stats_get(&stats);
    printf("FRONT %s\n", stats.front_end);
    fflush(stdout);
}

MISUSE_UNUSED static void misuse_announce(const void *ptr)
{
    printf("PTR %p\n", ptr);
    fflush(stdout);
}

/* ---- blocks the case keeps, and forbidden addresses ------------------------------ */

struct misuse_held {
    uintptr_t start;
    size_t size;
};
#define MISUSE_HELD_MAX 20000
static struct misuse_held misuse_held_blocks[MISUSE_HELD_MAX];
static size_t misuse_held_count;
static uintptr_t misuse_forged_start, misuse_forged_end;

MISUSE_UNUSED static void misuse_hold(void *ptr, size_t size)
{
    if (ptr && misuse_held_count < MISUSE_HELD_MAX) {
        misuse_held_blocks[misuse_held_count].start = (uintptr_t)ptr;
        misuse_held_blocks[misuse_held_count].size = size ? size : 1;
        misuse_held_count++;
    }
}

MISUSE_UNUSED static void misuse_forged(const void *ptr, size_t size)
{
    misuse_forged_start = (uintptr_t)ptr;
    misuse_forged_end = (uintptr_t)ptr + size;
    printf("FORGED %p\n", ptr);
    fflush(stdout);
}

/* true (and "RETURNED_FORGED" printed once) if `ptr` is in the forged range. */
static int misuse_is_forged(const void *ptr)
{
    static int printed;
    uintptr_t address = (uintptr_t)ptr;
    if (misuse_forged_end == 0 || address < misuse_forged_start || address >= misuse_forged_end)
        return 0;
    if (!printed) {
        printed = 1;
        printf("RETURNED_FORGED %p\n", ptr);
        fflush(stdout);
    }
    return 1;
}

/* ---- patterns -------------------------------------------------------------------- */

static uint64_t misuse_mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    x ^= x >> 33;
    return x;
}

static uint64_t misuse_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* The head (up to 64 bytes) and the tail (the last 8 bytes, when the block
 * has 72 or more) hold bytes derived from the block's address and size. */
static void misuse_fill(void *ptr, size_t size)
{
    unsigned char *bytes = (unsigned char *)ptr;
    uint64_t seed = misuse_mix((uint64_t)(uintptr_t)ptr ^ ((uint64_t)size << 40));
    size_t head = size < 64 ? size : 64;
    for (size_t i = 0; i < head; i++)
        bytes[i] = (unsigned char)(seed >> (8 * (i & 7))) ^ (unsigned char)i;
    if (size >= 72)
        for (size_t i = size - 8; i < size; i++)
            bytes[i] = (unsigned char)(seed >> (8 * (i & 7))) ^ 0xa5;
}

/* true if the head and tail still hold what misuse_fill wrote. */
static int misuse_intact(const void *ptr, size_t size)
{
    const unsigned char *bytes = (const unsigned char *)ptr;
    uint64_t seed = misuse_mix((uint64_t)(uintptr_t)ptr ^ ((uint64_t)size << 40));
    size_t head = size < 64 ? size : 64;
    for (size_t i = 0; i < head; i++)
        if (bytes[i] != ((unsigned char)(seed >> (8 * (i & 7))) ^ (unsigned char)i))
            return 0;
    if (size >= 72)
        for (size_t i = size - 8; i < size; i++)
            if (bytes[i] != ((unsigned char)(seed >> (8 * (i & 7))) ^ 0xa5))
                return 0;
    return 1;
}

static int misuse_compare_held(const void *a, const void *b)
{
    uintptr_t x = ((const struct misuse_held *)a)->start;
    uintptr_t y = ((const struct misuse_held *)b)->start;
    return x < y ? -1 : x > y;
}

/* ---- after the misuse ---------------------------------------------------------- */

#define MISUSE_REUSE_MAX 30000

/* Allocates enough blocks of `size` to take every free object of its class
 * and more; checks them against each other and against the held blocks.
 * Writes the verdict into `problem` (empty: fine). */
static void misuse_check_distinct(size_t size, char *problem, size_t problem_size)
{
    static void *blocks[MISUSE_REUSE_MAX];
    static struct misuse_held intervals[MISUSE_REUSE_MAX + MISUSE_HELD_MAX];
    size_t count = ((size_t)64 << 20) / (size ? size : 1);
    if (count > MISUSE_REUSE_MAX)
        count = MISUSE_REUSE_MAX;
    if (count < 64)
        count = 64;
    problem[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(size);
        if (!blocks[i]) {
            snprintf(problem, problem_size, "(allocation %zu of %zu bytes failed)", i, size);
            count = i;
            break;
        }
        if (misuse_is_forged(blocks[i]) && !problem[0])
            snprintf(problem, problem_size, "(malloc(%zu) returned the forged address %p)", size,
                     blocks[i]);
        misuse_fill(blocks[i], size);
    }
    for (size_t i = 0; i < count && !problem[0]; i++)
        if (!misuse_intact(blocks[i], size))
            snprintf(problem, problem_size,
                     "(block %p of %zu bytes overwritten: it overlaps another block)", blocks[i],
                     size);
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        intervals[total].start = (uintptr_t)blocks[i];
        intervals[total].size = size ? size : 1;
        total++;
    }
    for (size_t i = 0; i < misuse_held_count; i++)
        intervals[total++] = misuse_held_blocks[i];
    qsort(intervals, total, sizeof intervals[0], misuse_compare_held);
    for (size_t i = 1; i < total && !problem[0]; i++)
        if (intervals[i - 1].start + intervals[i - 1].size > intervals[i].start)
            snprintf(problem, problem_size,
                     "(%p handed out twice: [%p, +%zu) and [%p, +%zu) are both live)",
                     (void *)intervals[i].start, (void *)intervals[i - 1].start,
                     intervals[i - 1].size, (void *)intervals[i].start, intervals[i].size);
    /* A block handed out twice is not freed twice: that would be reported
     * as a double free of the test's own making. */
    if (!problem[0])
        for (size_t i = 0; i < count; i++)
            free(blocks[i]);
}

/* The live set of the churn: an open-addressing hash set of addresses. */
#define MISUSE_TABLE_SIZE 32768u
static uintptr_t misuse_table[MISUSE_TABLE_SIZE];

static unsigned misuse_slot_of(uintptr_t address)
{
    return (unsigned)(misuse_mix(address) & (MISUSE_TABLE_SIZE - 1));
}

/* false if `address` is already in the set. */
static int misuse_table_insert(uintptr_t address)
{
    unsigned i = misuse_slot_of(address);
    while (misuse_table[i]) {
        if (misuse_table[i] == address)
            return 0;
        i = (i + 1) & (MISUSE_TABLE_SIZE - 1);
    }
    misuse_table[i] = address;
    return 1;
}

static void misuse_table_remove(uintptr_t address)
{
    unsigned i = misuse_slot_of(address);
    while (misuse_table[i] && misuse_table[i] != address)
        i = (i + 1) & (MISUSE_TABLE_SIZE - 1);
    if (!misuse_table[i])
        return;
    misuse_table[i] = 0;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    unsigned hole = i, j = i;
    for (;;) {
        j = (j + 1) & (MISUSE_TABLE_SIZE - 1);
        if (!misuse_table[j])
            return;
        unsigned home = misuse_slot_of(misuse_table[j]);
        int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            misuse_table[hole] = misuse_table[j];
            misuse_table[j] = 0;
            hole = j;
        }
    }
}

static size_t misuse_random_size(uint64_t *state, size_t case_size)
{
    uint64_t r = misuse_random(state);
    unsigned pick = (unsigned)(r % 100);
    r >>= 8;
    if (pick < 25 && case_size && case_size <= ((size_t)256 << 10))
        return case_size;
    if (pick < 70)
        return 1 + (size_t)(r % 256);
    if (pick < 90)
        return 257 + (size_t)(r % (4096 - 256));
    if (pick < 98)
        return 4097 + (size_t)(r % (65536 - 4096));
    return 65537 + (size_t)(r % ((256u << 10) - 65536));
}

/* A million allocations with a working set of 4096 live blocks. */
static void misuse_churn(size_t case_size, char *problem, size_t problem_size)
{
    enum { SLOTS = 4096 };
    static void *live[SLOTS];
    static size_t live_size[SLOTS];
    const long operations = 1000000;
    uint64_t state = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);

    problem[0] = '\0';
    memset(misuse_table, 0, sizeof misuse_table);
    for (size_t i = 0; i < misuse_held_count; i++)
        misuse_table_insert(misuse_held_blocks[i].start);
    long done = 0;
    for (; done < operations && !problem[0]; done++) {
        unsigned slot = (unsigned)(misuse_random(&state) % SLOTS);
        if (live[slot]) {
            if (!misuse_intact(live[slot], live_size[slot])) {
                snprintf(problem, problem_size,
                         "(block %p of %zu bytes overwritten while live, after %ld operations)",
                         live[slot], live_size[slot], done);
                break;
            }
            misuse_table_remove((uintptr_t)live[slot]);
            free(live[slot]);
            live[slot] = NULL;
        }
        size_t size = misuse_random_size(&state, case_size);
        void *block = malloc(size);
        if (!block) {
            snprintf(problem, problem_size, "(malloc(%zu) failed after %ld operations)", size,
                     done);
            break;
        }
        if (misuse_is_forged(block)) {
            snprintf(problem, problem_size, "(malloc(%zu) returned the forged address %p)", size,
                     block);
            break;
        }
        if (!misuse_table_insert((uintptr_t)block)) {
            snprintf(problem, problem_size,
                     "(%p handed out while live, malloc(%zu), after %ld operations)", block,
                     size, done);
            break;
        }
        misuse_fill(block, size);
        live[slot] = block;
        live_size[slot] = size;
        if ((done & 65535) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > 15)
                break; /* a slow machine: what ran is the verdict */
        }
    }
    if (!problem[0])
        for (unsigned slot = 0; slot < SLOTS; slot++)
            if (live[slot]) {
                if (!misuse_intact(live[slot], live_size[slot]) && !problem[0])
                    snprintf(problem, problem_size, "(block %p of %zu bytes overwritten)",
                             live[slot], live_size[slot]);
                free(live[slot]);
                live[slot] = NULL;
            }
    printf("CHURN_OPERATIONS %ld\n", done);
}

static unsigned long long misuse_invalid_frees(void)
{
    struct xmm_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.version = XMM_STATS_VERSION;
    xmm_stats_get(&stats);
    return (unsigned long long)stats.invalid_frees;
}

static int misuse_child_finish(size_t size)
{
    char problem[256];
    /* Reports made by the misuse itself; any later one comes from the
     * checks below meeting a block the misuse left on a list twice. */
    printf("INVALID_FREES_AT_MISUSE %llu\n", misuse_invalid_frees());
    printf("CONTINUED\n");
    fflush(stdout);
    misuse_check_distinct(size, problem, sizeof problem);
    printf("DISTINCT %s %s\n", problem[0] ? "bad" : "ok", problem);
    fflush(stdout);
    if (misuse_churn_wanted) {
        misuse_churn(size, problem, sizeof problem);
        printf("CHURN %s %s\n", problem[0] ? "bad" : "ok", problem);
        fflush(stdout);
    }
    printf("INVALID_FREES %llu\nDONE\n", misuse_invalid_frees());
    fflush(stdout);
    return 0;
}

#endif /* XMM_TEST_MISUSE_CHILD_H */
