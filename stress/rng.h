/*
 * rng.h - a small, fast per-thread random number generator (splitmix64).
 *
 * Each worker owns its state, so drawing a size or a slot never touches a
 * shared cache line; the quality is ample for choosing workloads.
 */
#ifndef STRESS_RNG_H
#define STRESS_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound), without the bias of a modulo. */
static inline uint64_t rng_below(uint64_t *state, uint64_t bound)
{
    return (uint64_t)(((unsigned __int128)rng_next(state) * bound) >> 64);
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * 0x1p-53;
}

#endif
