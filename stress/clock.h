/*
 * clock.h - monotonic time in nanoseconds.
 */
#ifndef STRESS_CLOCK_H
#define STRESS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static inline double ns_to_seconds(uint64_t ns)
{
    return (double)ns / 1e9;
}

#endif
