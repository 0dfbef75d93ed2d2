/*
 * runner.h - running the phases (one per pattern in --pattern) and
 * collecting what each measured.
 */
#ifndef STRESS_RUNNER_H
#define STRESS_RUNNER_H

#include "latency.h"
#include "options.h"

#include <stdbool.h>
#include <stdint.h>

struct phase_result {
    enum pattern_id pattern;
    unsigned threads;
    double seconds;             /* until the last worker's loop ended */
    bool completed;             /* not cut short by a failure or Ctrl-C */
    uint64_t allocs, frees, checked;
    uint64_t peak_rss_kib;
    struct histogram malloc_ns, free_ns, realloc_ns;
};

struct run_result {
    const struct stress_options *options;
    const char *allocator;      /* "glibc", "xmm" or the path given */
    const char *library;        /* the preloaded file, "" for glibc */
    uint64_t seed;
    struct phase_result phases[PATTERN_LIST_MAX];
    unsigned phase_count;
    bool interrupted;           /* stopped early by SIGINT or SIGTERM */
};

/* Runs every phase in turn, stopping early after a failure. */
void run_all(const struct stress_options *options, struct run_result *result);

#endif
