/* example.h - what the examples share: a deterministic random generator,
 * a failure counter that turns into the exit status, and a leak check on
 * XMM's own statistics. */
#ifndef XMM_EXAMPLE_H
#define XMM_EXAMPLE_H
#include <stdint.h>
#include <stdio.h>

#include "xmm.h"

static int example_failures;

/* Reports a mismatch with the reference (the first 10 are printed). */
#define EXPECT(condition, ...)                                                 \
    do {                                                                       \
        if (!(condition) && example_failures++ < 10) {                         \
            fprintf(stderr, "%s:%d: mismatch: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* xorshift64*: the same sequence of operations on every run. */
static inline uint64_t example_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* XMM blocks live now: allocations minus frees. The examples are single-
 * threaded when they look, so the counters are exact. */
static inline int64_t example_live_blocks(void)
{
    struct xmm_stats stats = {.version = XMM_STATS_VERSION};
    xmm_stats_get(&stats);
    return (int64_t)(stats.allocations - stats.frees);
}
#endif
